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
            let mut sub = Subscriber::open(&name).expect("subscribe");
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
            let mut publisher = Publisher::open(&name).expect("publish");
            let mut buf = [0u8; 32];
            for seq in count.. {
                fill(&mut buf, seq);
                publisher.send_timeout(&buf, LIMIT).expect("send");
                if seq % 64 == 0 {
                    std::thread::yield_now();
                }
            }
        }
        "stalled-subscriber" => {
            // Subscribes, reads one message, then stops reading until killed.
            let mut sub = Subscriber::open(&name).expect("subscribe");
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
    let mut watcher = Subscriber::open(&name.0).unwrap();
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
                assert_eq!((got.lost, check(&got.data).unwrap()), (0, seq));
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
        assert_eq!((got.lost, check(&got.data).unwrap()), (0, seq));
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
    let mut sub = opts.create_or_open_subscriber(&name.0).unwrap();
    let kid = Kid::spawn(ENTRY, "endless-publisher", &name.0, &[(COUNT, "0".into())]);
    for seq in 0..1000 {
        let m = sub.recv_timeout(LIMIT).unwrap();
        assert_eq!((m.lost, check(&m.data).unwrap()), (0, seq));
    }
    kid.kill();
    let mut next = 1000;
    loop {
        match sub.recv_timeout(LIMIT) {
            Ok(m) => {
                assert_eq!(check(&m.data).unwrap(), next);
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
            first = Some(check(&m.data).unwrap());
            true
        }
        Err(RecvError::Empty | RecvError::Disconnected) => false,
        Err(e) => panic!("{e}"),
    }));
    assert_eq!(first, Some(7000));
    for seq in 7001..7100 {
        let m = sub.recv_timeout(LIMIT).unwrap();
        assert_eq!((m.lost, check(&m.data).unwrap()), (0, seq));
    }
    kid.kill();
}

#[test]
fn joining_rules_and_history() {
    let name = Name::new("ps-join");
    let mut publisher = Options::new()
        .capacity(8)
        .slot_size(16)
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
    let mut fresh = Subscriber::open(&name.0).unwrap();
    let mut late = Subscriber::open_with_history(&name.0, 3).unwrap();
    let mut greedy = Subscriber::open_with_history(&name.0, 1000).unwrap();
    assert_eq!(fresh.try_recv(), Err(RecvError::Empty));
    assert_eq!(late.try_recv().unwrap().data, [17]);
    assert_eq!(greedy.try_recv().unwrap().data, [13]); // capacity - 1 back
    publisher.send(&[20]).unwrap();
    assert_eq!(fresh.recv().unwrap().data, [20]);
    // Overwrite: a subscriber that sleeps through 20 messages is told.
    for i in 21..41u8 {
        publisher.send(&[i]).unwrap();
    }
    let m = fresh.recv().unwrap();
    assert_eq!((m.lost, m.data), (13, vec![34]));
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
    assert_eq!((m.lost, m.data), (16, vec![34]));
    let mut rest = Vec::new();
    while let Ok(m) = late.try_recv() {
        rest.push(m.data[0]);
    }
    assert_eq!(rest, [35, 36, 37, 38, 39, 40]);
    assert_eq!(late.try_recv(), Err(RecvError::Disconnected));
}
