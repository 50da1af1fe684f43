//! pubsub channels across real processes: stress with checksums in both overflow
//! modes, subscribers and publishers killed with SIGKILL, joining rules.

mod chan_common;

use std::time::Duration;

use chan_common::*;
use shmipc::channel::pubsub::{Options, Overflow, Publisher, Subscriber};
use shmipc::channel::spsc;
use shmipc::channel::{ChannelError, RecvError, SendError, TrySendError};
use shmipc::LayoutError;

const ENTRY: &str = "child_entry";
const LIMIT: Duration = Duration::from_secs(60);
const SLOT: usize = 200;
const LOSSLESS: &str = "SHMIPC_CHAN_LOSSLESS";

fn msg_len(rng: &mut Rng) -> usize {
    16 + (rng.next() % (SLOT as u64 - 15)) as usize
}

/// Not a test on its own: the body of the child processes.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = std::env::var(NAME).expect("name");
    let count: u64 = std::env::var(COUNT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    match role.as_str() {
        "checking-subscriber" => {
            // Everything until Disconnected: intact, in order, losses accounted.
            let lossless = std::env::var_os(LOSSLESS).is_some();
            let sub = Subscriber::open(&name).expect("subscribe");
            let mut buf = Vec::new();
            let mut next = 0u64;
            let mut lost_total = 0u64;
            loop {
                match sub.recv_into_timeout(&mut buf, LIMIT) {
                    Ok(lost) => {
                        let seq = check(&buf).expect("intact");
                        assert_eq!(seq, next + lost, "lost count does not add up");
                        if lossless {
                            assert_eq!(lost, 0, "lost messages in block mode");
                        }
                        lost_total += lost;
                        next = seq + 1;
                    }
                    Err(RecvError::Disconnected) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            assert_eq!(next, count, "did not reach the last message");
            eprintln!("subscriber: {count} accounted, {lost_total} lost");
        }
        "endless-publisher" => {
            // Loans and fills in place (a kill may land inside a loan).
            let mut publisher = Publisher::open(&name).expect("publish");
            let first = if count == u64::MAX {
                publisher.next_seq()
            } else {
                count
            };
            for seq in first.. {
                let mut loan = publisher.loan_timeout(32, LIMIT).expect("loan");
                fill(&mut loan, seq);
                loan.send();
                if seq % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        }
        "holding-subscriber" => {
            // Holds up to its bound of samples at once, in a random pattern, and
            // checks each one again just before releasing it: a chunk rewritten
            // while held fails here (the child then exits on its own, which the
            // parent notices).
            let sub = Subscriber::open(&name).expect("subscribe");
            let mut rng = Rng::new(u64::from(std::process::id()));
            let mut held = std::collections::VecDeque::new();
            loop {
                match sub.recv_timeout(LIMIT) {
                    Ok(s) => {
                        let seq = check(&s).expect("intact when received");
                        held.push_back((seq, s));
                    }
                    Err(RecvError::Disconnected) => {
                        // Wait for the next publisher.
                        held.clear();
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => panic!("recv: {e}"),
                }
                let keep = (rng.next() % sub.max_held() as u64) as usize;
                while held.len() > keep {
                    let (seq, s) = held.pop_front().unwrap();
                    assert_eq!(check(&s), Ok(seq), "a held sample changed");
                }
            }
        }
        "loaning-publisher" => {
            // Takes a loan, says so on stdout's place (exit code of a sibling is not
            // available): publishes one message, then holds a loan until killed.
            let mut publisher = Publisher::open(&name).expect("publish");
            let mut buf = [0u8; 32];
            fill(&mut buf, publisher.next_seq());
            publisher.send(&buf).expect("send");
            let _loan = publisher.loan(16).expect("loan");
            loop {
                std::thread::park();
            }
        }
        "stalled-subscriber" => {
            // Subscribes, reads one message, then stops reading until killed.
            let sub = Subscriber::open(&name).expect("subscribe");
            let _ = sub.recv_timeout(LIMIT).expect("first");
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn stress(overflow: Overflow, n: u64) {
    let name = Name::new(&format!("ps-{overflow:?}"));
    let mut publisher = Options::new()
        .capacity(32)
        .slot_size(SLOT)
        .max_subscribers(4)
        .overflow(overflow)
        .create_publisher(&name.0)
        .unwrap();
    let mut env = vec![(COUNT, n.to_string())];
    if overflow == Overflow::Block {
        env.push((LOSSLESS, "1".into()));
    }
    let kids: Vec<Kid> = (0..2)
        .map(|_| Kid::spawn(ENTRY, "checking-subscriber", &name.0, &env))
        .collect();
    assert!(wait_until(LIMIT, || publisher.subscribers() == 2));
    let mut rng = Rng::new(11);
    let mut buf = [0u8; SLOT];
    for seq in 0..n {
        let len = msg_len(&mut rng);
        fill(&mut buf[..len], seq);
        publisher.send_timeout(&buf[..len], LIMIT).unwrap();
    }
    drop(publisher);
    for k in kids {
        k.join(LIMIT);
    }
}

#[test]
fn stress_block_mode_loses_nothing() {
    stress(Overflow::Block, stress_count(100_000, 1_000_000));
}

#[test]
fn stress_overwrite_mode_accounts_for_every_loss() {
    stress(Overflow::Overwrite, stress_count(100_000, 1_000_000));
}

#[test]
fn killed_subscriber_is_reaped_and_the_publisher_goes_on() {
    let name = Name::new("ps-kill-sub");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(64)
        .max_subscribers(2)
        .overflow(Overflow::Block)
        .create_publisher(&name.0)
        .unwrap();
    let watcher = Subscriber::open(&name.0).unwrap();
    let stalled = Kid::spawn(ENTRY, "stalled-subscriber", &name.0, &[]);
    assert!(wait_until(LIMIT, || publisher.subscribers() == 2));
    // No room for a third.
    assert!(matches!(
        Subscriber::open(&name.0),
        Err(ChannelError::Full { max: 2, .. })
    ));
    let mut buf = [0u8; 32];
    // The stalled subscriber holds the ring: the publisher fills it and waits.
    let mut seq = 0;
    loop {
        fill(&mut buf, seq);
        match publisher.try_send(&buf) {
            Ok(()) => {
                let got = watcher.recv_timeout(LIMIT).unwrap();
                assert_eq!((got.lost(), check(&got).unwrap()), (0, seq));
                seq += 1;
            }
            Err(TrySendError::Full(())) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        seq <= 9,
        "the stalled subscriber did not hold the publisher"
    );
    stalled.kill();
    // Now the publisher notices the death, frees the place and goes on.
    for _ in 0..100 {
        fill(&mut buf, seq);
        publisher.send_timeout(&buf, LIMIT).unwrap();
        let got = watcher.recv_timeout(LIMIT).unwrap();
        assert_eq!((got.lost(), check(&got).unwrap()), (0, seq));
        seq += 1;
    }
    assert_eq!(publisher.subscribers(), 1);
    let _again = Subscriber::open(&name.0).unwrap();
}

#[test]
fn killed_publisher_disconnects_and_a_new_one_is_picked_up() {
    let name = Name::new("ps-kill-pub");
    let opts = Options::new()
        .capacity(16)
        .slot_size(64)
        .overflow(Overflow::Block);
    let sub = opts.create_or_open_subscriber(&name.0).unwrap();
    let kid = Kid::spawn(ENTRY, "endless-publisher", &name.0, &[(COUNT, "0".into())]);
    for seq in 0..1000 {
        let m = sub.recv_timeout(LIMIT).unwrap();
        assert_eq!((m.lost(), check(&m).unwrap()), (0, seq));
    }
    kid.kill();
    let mut next = 1000;
    loop {
        match sub.recv_timeout(LIMIT) {
            Ok(m) => {
                assert_eq!(check(&m).unwrap(), next);
                next += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("expected Disconnected, got {e}"),
        }
    }
    let kid = Kid::spawn(
        ENTRY,
        "endless-publisher",
        &name.0,
        &[(COUNT, "7000".into())],
    );
    let mut first = None;
    assert!(wait_until(LIMIT, || match sub.try_recv() {
        Ok(m) => {
            first = Some(check(&m).unwrap());
            true
        }
        Err(RecvError::Empty | RecvError::Disconnected) => false,
        Err(e) => panic!("{e}"),
    }));
    assert_eq!(first, Some(7000));
    for seq in 7001..7100 {
        let m = sub.recv_timeout(LIMIT).unwrap();
        assert_eq!((m.lost(), check(&m).unwrap()), (0, seq));
    }
    kid.kill();
}

#[test]
fn joining_rules_and_history() {
    let name = Name::new("ps-join");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(16)
        .history(7)
        .create_publisher(&name.0)
        .unwrap();
    assert!(matches!(
        Publisher::open(&name.0),
        Err(ChannelError::Busy {
            role: "publisher",
            ..
        })
    ));
    for i in 0..20u8 {
        publisher.send(&[i]).unwrap();
    }
    let fresh = Subscriber::open(&name.0).unwrap();
    let late = Subscriber::open_with_history(&name.0, 3).unwrap();
    let greedy = Subscriber::open_with_history(&name.0, 1000).unwrap();
    assert!(matches!(fresh.try_recv(), Err(RecvError::Empty)));
    assert_eq!(*late.try_recv().unwrap(), [17]);
    assert_eq!(*greedy.try_recv().unwrap(), [13]); // the 7 kept (capacity - 1)
    publisher.send(&[20]).unwrap();
    assert_eq!(*fresh.recv().unwrap(), [20]);
    // Overwrite: a subscriber that sleeps through 20 messages is told.
    for i in 21..41u8 {
        publisher.send(&[i]).unwrap();
    }
    let m = fresh.recv().unwrap();
    assert_eq!((m.lost(), &*m), (12, &[33][..]));
    assert!(matches!(
        publisher.try_send(&[0; 17]),
        Err(TrySendError::TooLarge { len: 17, max: 16 })
    ));
    assert!(matches!(
        publisher.send(&[0; 17]),
        Err(SendError::TooLarge { .. })
    ));
    // Another kind of channel is refused.
    let other = Name::new("ps-spsc");
    let _c = spsc::Consumer::create(&other.0, 4, 16).unwrap();
    assert!(matches!(
        Subscriber::open(&other.0),
        Err(ChannelError::Layout {
            source: LayoutError::Kind { .. },
            ..
        })
    ));
    drop(publisher);
    // Everything left is still delivered before Disconnected.
    let m = late.recv().unwrap();
    assert_eq!((m.lost(), &*m), (15, &[33][..]));
    let mut rest = Vec::new();
    while let Ok(m) = late.try_recv() {
        rest.push(m[0]);
    }
    assert_eq!(rest, [34, 35, 36, 37, 38, 39, 40]);
    assert!(matches!(late.try_recv(), Err(RecvError::Disconnected)));
}

/// `create_or_open_*` on an existing channel opens it with its own parameters,
/// whatever sizes the caller would have created it with.
#[test]
fn create_or_open_keeps_the_existing_parameters() {
    let name = Name::new("ps-coo");
    let publisher = Options::new()
        .capacity(8)
        .slot_size(64)
        .create_publisher(&name.0)
        .unwrap();
    let bigger = Options::new().capacity(1024).slot_size(4096);
    let subscriber = bigger.create_or_open_subscriber(&name.0).unwrap();
    assert_eq!(subscriber.slot_size(), 64);
    assert_eq!(publisher.slot_size(), 64);
}

/// Loans, typed samples, samples held at once and their bound, sizes, and the
/// copying conveniences.
#[test]
fn loans_samples_holds_and_sizes() {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, PartialEq, Debug)]
    #[repr(C)]
    struct Frame {
        id: u64,
        px: [u64; 7],
    }
    let name = Name::new("ps-loan");
    let mut publisher = Options::new()
        .capacity(4)
        .slot_size(64)
        .max_subscribers(2)
        .max_held(3)
        .overflow(Overflow::Block)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    assert_eq!(publisher.pool_chunks(), 4 + 2 * 3 + 1);
    let mut loan = publisher.loan_pod::<Frame>().unwrap();
    *loan.pod_mut::<Frame>().unwrap() = Frame { id: 7, px: [9; 7] };
    loan.send();
    for i in 0..3u8 {
        let mut loan = publisher.loan(3).unwrap();
        loan.copy_from_slice(&[i; 3]);
        loan.send();
    }
    // Three held at once, read in place; the fourth is refused, stays queued.
    let a = sub.try_recv().unwrap();
    assert_eq!(a.pod::<Frame>(), Some(&Frame { id: 7, px: [9; 7] }));
    let b = sub.try_recv().unwrap();
    let c = sub.try_recv().unwrap();
    assert_eq!(
        (&*b, &*c, b.seq(), c.seq()),
        (&[0u8; 3][..], &[1u8; 3][..], 1, 2)
    );
    assert_eq!(sub.held(), 3);
    let e = sub.try_recv().unwrap_err();
    assert!(matches!(e, RecvError::TooManyHeld { max: 3 }), "{e}");
    assert!(e.to_string().contains("holds 3 samples"), "{e}");
    drop(b);
    assert_eq!(&*sub.try_recv().unwrap(), &[2u8; 3]);
    drop((a, c));
    // A loan larger than a chunk names both sizes.
    let e = publisher.loan(65).unwrap_err();
    assert!(matches!(e, SendError::TooLarge { len: 65, max: 64 }));
    assert!(
        e.to_string().contains("65") && e.to_string().contains("64"),
        "{e}"
    );
    assert!(matches!(
        publisher.try_send(&[0; 65]),
        Err(TrySendError::TooLarge { len: 65, max: 64 })
    ));
    // A loan dropped unsent goes back to the pool.
    drop(publisher.loan(10).unwrap());
    // Copying forms.
    publisher.send(b"copy").unwrap();
    let mut buf = Vec::new();
    assert_eq!(sub.recv_into(&mut buf).unwrap(), 0);
    assert_eq!(buf, b"copy");
    // Everything released: with the subscriber gone, the whole pool is free.
    drop(sub);
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
}

/// Large chunks are reused warm: with a subscriber keeping up, the publisher
/// loans the chunk freed last rather than cycling through the whole pool (which
/// for 1 MiB chunks is a working set past the caches and page faults per chunk).
/// That holds for messages of a page or more; a small message touches a line of
/// its chunk, and skips the reclaim scan per loan that the reuse costs.
#[test]
fn large_chunks_are_reused_not_cycled() {
    let name = Name::new("ps-warm");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(64 * 1024)
        .overflow(Overflow::Block)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    assert!(publisher.pool_chunks() > 40, "the default pool is large");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40u8 {
        let mut loan = publisher.loan(8 * 1024).unwrap();
        seen.insert(loan.as_ptr() as usize);
        loan.fill(i);
        loan.send();
        let s = sub.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(s[0], i);
    }
    assert!(
        seen.len() <= 2,
        "40 messages read one by one used {} distinct chunks",
        seen.len()
    );
}

/// Overwrite mode takes back only samples a subscriber has not started: one it
/// holds keeps its bytes while the publisher laps the ring many times, and the
/// messages it skipped are counted.
#[test]
fn overwrite_never_takes_a_held_sample() {
    let name = Name::new("ps-ow-held");
    let mut publisher = Options::new()
        .capacity(4)
        .slot_size(32)
        .max_subscribers(1)
        .max_held(2)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    let mut buf = [0u8; 32];
    fill(&mut buf, 0);
    publisher.send(&buf).unwrap();
    let held = sub.try_recv().unwrap();
    for seq in 1..1000 {
        fill(&mut buf, seq);
        publisher.try_send(&buf).unwrap();
        assert_eq!(check(&held), Ok(0), "held sample rewritten at {seq}");
    }
    let next = sub.try_recv().unwrap();
    assert_eq!(check(&next), Ok(next.seq()));
    assert_eq!(next.seq(), 1000 - 4, "the ring keeps the newest capacity");
    assert_eq!(next.lost(), next.seq() - 1);
    drop((held, next));
    drop(sub);
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
}

/// An owned sample ([`Sample::detach`]) keeps its chunk like a sample: it is
/// `'static + Send + Sync`, its bytes survive the publisher lapping the ring many
/// times, it counts against `max_held`, and its hold comes back (to this subscriber,
/// for the next receive) when it is dropped on another thread.
#[test]
fn owned_samples_hold_their_chunk_across_threads() {
    fn owned<T: Send + Sync + 'static>(_: &T) {}
    let name = Name::new("ps-owned");
    let mut publisher = Options::new()
        .capacity(4)
        .slot_size(32)
        .max_subscribers(1)
        .max_held(2)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    let mut buf = [0u8; 32];
    for seq in 0..2 {
        fill(&mut buf, seq);
        publisher.send(&buf).unwrap();
    }
    let a = sub.try_recv().unwrap().detach();
    owned(&a);
    let b = sub.try_recv().unwrap().detach();
    assert_eq!((a.seq(), b.seq()), (0, 1));
    assert_eq!(sub.held(), 2);
    for seq in 2..1000 {
        fill(&mut buf, seq);
        publisher.try_send(&buf).unwrap();
    }
    assert!(
        matches!(sub.try_recv(), Err(RecvError::TooManyHeld { max: 2 })),
        "two owned samples fill max_held 2"
    );
    // Read and dropped on another thread: its chunk goes back to the pool, and the
    // subscriber sees the slot come back.
    let free = publisher.free_chunks();
    let a = std::thread::spawn(move || {
        assert_eq!(check(&a), Ok(0), "owned sample rewritten");
        a.seq()
    });
    assert_eq!(a.join().unwrap(), 0);
    assert_eq!(
        publisher.free_chunks(),
        free + 1,
        "the owned sample's chunk"
    );
    assert_eq!(sub.held(), 1);
    let next = sub.try_recv().unwrap();
    assert_eq!(next.seq(), 1000 - 4);
    assert_eq!(check(&next), Ok(next.seq()));
    assert_eq!(check(&b), Ok(1), "owned sample rewritten");
    drop((next, b));
    assert_eq!(sub.held(), 0);
    drop(sub);
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
}

/// A subscriber dropped while an owned sample of it lives stays joined (the
/// sample's chunk is still its hold) until the sample is dropped, then leaves.
#[test]
fn owned_sample_outlives_its_subscriber() {
    let name = Name::new("ps-owned-outlives");
    let mut publisher = Options::new()
        .capacity(4)
        .slot_size(32)
        .overflow(Overflow::Overwrite)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    let mut buf = [0u8; 32];
    fill(&mut buf, 0);
    publisher.send(&buf).unwrap();
    let owned = sub.recv_timeout(Duration::from_secs(10)).unwrap().detach();
    drop(sub);
    assert_eq!(
        publisher.subscribers(),
        1,
        "still joined through its sample"
    );
    for seq in 1..100 {
        fill(&mut buf, seq);
        publisher.try_send(&buf).unwrap();
        assert_eq!(check(&owned), Ok(0), "owned sample rewritten at {seq}");
    }
    assert_ne!(publisher.free_chunks(), publisher.pool_chunks());
    drop(owned);
    assert_eq!(publisher.subscribers(), 0, "left with its last sample");
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
}

/// Many owned samples handed to another thread, which checks and drops them,
/// while the publisher overwrites as fast as it can: no sample is ever rewritten
/// under its owner, and every hold comes back.
#[test]
fn owned_samples_dropped_elsewhere_under_overwrite() {
    let name = Name::new("ps-owned-stress");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(64)
        .max_subscribers(1)
        .max_held(4)
        .overflow(Overflow::Overwrite)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<shmipc::channel::pubsub::OwnedSample>(2);
    let checker = std::thread::spawn(move || {
        let mut n = 0u64;
        for s in rx {
            for _ in 0..10 {
                assert_eq!(check(&s), Ok(s.seq()), "owned sample rewritten");
                std::hint::spin_loop();
            }
            n += 1;
        }
        n
    });
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut received = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = [0u8; 64];
            for seq in 0..200_000u64 {
                fill(&mut buf, seq);
                // Overwrite mode: full only for the moment a cursor is contended.
                while let Err(e) = publisher.try_send(&buf) {
                    assert!(matches!(e, TrySendError::Full(())), "{e}");
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the publisher stayed full"
                    );
                    std::thread::yield_now();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        loop {
            match sub.try_recv() {
                Ok(s) => {
                    assert_eq!(check(&s), Ok(s.seq()));
                    tx.send(s.detach()).unwrap();
                    received += 1;
                }
                Err(RecvError::Empty | RecvError::TooManyHeld { .. }) => {
                    if stop.load(std::sync::atomic::Ordering::Acquire) && sub.held() == 0 {
                        break;
                    }
                    // The checker drops what it got: the holds come back by then.
                    assert!(
                        std::time::Instant::now() < deadline,
                        "holds never came back: {} held",
                        sub.held()
                    );
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    drop(tx);
    assert_eq!(checker.join().unwrap(), received);
    assert!(received > 0);
    assert_eq!(sub.held(), 0);
    drop(sub);
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
}

/// A corrupted shared index is reported, never a silently deaf subscriber
/// (issue: `head` + 2^62 made `sub` print nothing, forever).
#[test]
fn corrupt_head_is_reported() {
    let name = Name::new("ps-corrupt");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(16)
        .create_publisher(&name.0)
        .unwrap();
    let sub = Subscriber::open(&name.0).unwrap();
    publisher.send(b"one").unwrap();
    assert_eq!(&*sub.recv().unwrap(), b"one");
    let raw = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = raw.map_all().unwrap();
    let head = view.atomic_u64(128).unwrap();
    head.fetch_add(1 << 62, std::sync::atomic::Ordering::SeqCst);
    let e = sub.recv_timeout(LIMIT).unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("head"), "{e}");
    // A new publisher refuses it too.
    drop(publisher);
    assert!(matches!(
        Publisher::open(&name.0),
        Err(ChannelError::Corrupt { .. })
    ));
}

/// A publisher killed while it holds a loan: the next one gets the chunk back.
#[test]
fn killed_publishers_loan_returns_to_the_pool() {
    let name = Name::new("ps-kill-loan");
    let sub = Options::new()
        .capacity(4)
        .slot_size(32)
        .max_subscribers(1)
        .max_held(1)
        .overflow(Overflow::Block)
        .create_or_open_subscriber(&name.0)
        .unwrap();
    let kid = Kid::spawn(ENTRY, "loaning-publisher", &name.0, &[]);
    let first = sub.recv_timeout(LIMIT).unwrap();
    assert_eq!(check(&first), Ok(0));
    // The child sent, then loaned: it holds one chunk, we hold another.
    kid.kill();
    let mut publisher = Publisher::open(&name.0).unwrap();
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks() - 1);
    drop(first);
    assert_eq!(publisher.free_chunks(), publisher.pool_chunks());
    publisher.send(b"again").unwrap();
    assert_eq!(&*sub.recv_timeout(LIMIT).unwrap(), b"again");
}

/// Publishers and holding subscribers killed by SIGKILL at random moments, over
/// and over: no subscriber ever sees a torn or rewritten sample, and at the end,
/// with everyone dead, every chunk of the pool is free again.
fn kill_storm(overflow: Overflow, rounds: u64) {
    let name = Name::new(&format!("ps-storm-{overflow:?}"));
    let opts = Options::new()
        .capacity(8)
        .slot_size(32)
        .max_subscribers(4)
        .max_held(3)
        .overflow(overflow);
    let watcher = opts.create_or_open_subscriber(&name.0).unwrap();
    // A plain holder keeps the channel while every endpoint is dead (on every OS:
    // Windows has no kernel persistence for memory segments).
    let _holder = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let spawn_pub = || {
        Kid::spawn(
            ENTRY,
            "endless-publisher",
            &name.0,
            &[(COUNT, u64::MAX.to_string())],
        )
    };
    let spawn_sub = || Kid::spawn(ENTRY, "holding-subscriber", &name.0, &[]);
    let mut publisher = spawn_pub();
    let mut subs = vec![spawn_sub(), spawn_sub()];
    let mut rng = Rng::new(0x5eed ^ rounds);
    let alive = |k: &mut Kid| {
        if let Some(st) = k.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("a child exited on its own ({st}): it found a bad sample");
        }
    };
    let mut next = None::<u64>;
    for round in 0..rounds {
        // Let a random number of messages through (the watcher checks them).
        let want = 1 + rng.next() % 40;
        let mut seen = 0;
        assert!(
            wait_until(LIMIT, || {
                match watcher.try_recv() {
                    Ok(s) => {
                        let seq = check(&s).expect("intact");
                        if let Some(n) = next {
                            assert!(seq >= n, "went back: {seq} < {n}");
                            if overflow == Overflow::Block {
                                assert_eq!(seq, n + s.lost(), "lost count");
                            }
                        }
                        next = Some(seq + 1);
                        seen += 1;
                    }
                    Err(RecvError::Empty | RecvError::Disconnected) => {}
                    Err(e) => panic!("watcher: {e}"),
                }
                seen >= want
            }),
            "round {round}: no progress"
        );
        alive(&mut publisher);
        for s in &mut subs {
            alive(s);
        }
        match rng.next() % 3 {
            0 => {
                std::mem::replace(&mut publisher, Kid(None)).kill();
                publisher = spawn_pub();
            }
            r => {
                let i = (r as usize - 1) % subs.len();
                std::mem::replace(&mut subs[i], spawn_sub()).kill();
            }
        }
    }
    publisher.kill();
    for s in subs {
        s.kill();
    }
    drop(watcher);
    let mut last = Publisher::open(&name.0).unwrap();
    assert_eq!(
        last.free_chunks(),
        last.pool_chunks(),
        "chunks leaked after {rounds} kills"
    );
}

#[test]
fn kill_storm_block_never_leaks_a_chunk() {
    kill_storm(Overflow::Block, stress_count(60, 300));
}

#[test]
fn kill_storm_overwrite_never_leaks_a_chunk() {
    kill_storm(Overflow::Overwrite, stress_count(60, 300));
}

/// Header parameters rewritten under a running publisher (found by the
/// `pubsub_subscriber` fuzz target): a subscriber attaching afterwards lays the
/// ring and the pool out by the new ones and never meets a message the publisher
/// sends by the old ones. The publisher reports it instead of publishing to a
/// deaf subscriber.
#[test]
fn header_parameters_rewritten_under_the_publisher_are_reported() {
    let name = Name::new("pubsub-params");
    let mut publisher = Options::new()
        .capacity(4)
        .slot_size(24)
        .max_subscribers(2)
        .create_publisher(&name.0)
        .unwrap();
    publisher.send(b"before").unwrap();
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // 24: the first parameter word (capacity | max subscribers << 32), layout.rs.
    view.atomic_u64(24)
        .unwrap()
        .store(8 | (2 << 32), std::sync::atomic::Ordering::SeqCst);
    let e = publisher.try_send(b"after").unwrap_err();
    assert!(matches!(e, TrySendError::Corrupt(_)), "{e}");
    let e = publisher.send_timeout(b"after", LIMIT).unwrap_err();
    assert!(matches!(e, SendError::Corrupt(_)), "{e}");
}
