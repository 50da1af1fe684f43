//! spsc channels across real processes: stress with checksums, peers killed with
//! SIGKILL, exclusivity, header checks, and corrupt shared memory.

mod chan_common;

use std::time::Duration;

use chan_common::*;
use shmipc::channel::spsc::{Consumer, Options, Producer, TypedConsumer, TypedProducer};
use shmipc::channel::{ChannelError, RecvError, SendError, TrySendError};
use shmipc::{Access, LayoutError, Segment};

const ENTRY: &str = "child_entry";
const LIMIT: Duration = Duration::from_secs(60);
const SLOT: usize = 256;

fn env_name() -> String {
    std::env::var(NAME).expect("name")
}

fn env_count() -> u64 {
    std::env::var(COUNT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sizes of message `seq` in the stress test.
fn size_of_msg(rng: &mut Rng) -> usize {
    16 + (rng.next() % (SLOT as u64 - 15)) as usize
}

/// Not a test on its own: the body of the child processes.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let name = env_name();
    match role.as_str() {
        "stress-producer" => {
            let n = env_count();
            let mut tx = Producer::open(&name).expect("open producer");
            let mut rng = Rng::new(7);
            let mut buf = vec![0u8; SLOT];
            for seq in 0..n {
                let len = size_of_msg(&mut rng);
                if seq % 2 == 0 {
                    let mut loan = tx.loan(len).expect("loan");
                    fill(&mut loan, seq);
                    loan.send();
                } else {
                    fill(&mut buf[..len], seq);
                    tx.send(&buf[..len]).expect("send");
                }
            }
        }
        "endless-producer" => {
            let start = env_count();
            let mut tx = Producer::open(&name).expect("open producer");
            let mut buf = [0u8; 32];
            for seq in start.. {
                fill(&mut buf, seq);
                if tx.send_timeout(&buf, LIMIT).is_err() {
                    std::process::exit(3);
                }
            }
        }
        "slow-consumer" => {
            // Receives, checking order, until killed.
            let mut rx = Consumer::open(&name).expect("open consumer");
            let mut next = None;
            loop {
                let s = rx.recv_timeout(LIMIT).expect("recv");
                let seq = check(&s).expect("intact");
                if let Some(n) = next {
                    assert_eq!(seq, n, "out of order");
                }
                next = Some(seq + 1);
            }
        }
        "resumed-consumer" => {
            // Receives `COUNT` messages in order from whatever comes first.
            let n = env_count();
            let mut rx = Consumer::open(&name).expect("open consumer");
            let first = check(&rx.recv_timeout(LIMIT).expect("recv")).expect("intact");
            for i in 1..n {
                let s = rx.recv_timeout(LIMIT).expect("recv");
                assert_eq!(check(&s).expect("intact"), first + i, "lost or reordered");
            }
        }
        "take-then-die" => {
            // Finishes with `COUNT` messages, is reading the next one, and dies
            // there (exits without closing: the kernel releases its liveness lock
            // as at a SIGKILL, and nothing of the consumer's drop runs).
            let mut rx = Consumer::open(&name).expect("open consumer");
            for seq in 0..env_count() {
                let s = rx.recv_timeout(LIMIT).expect("recv");
                assert_eq!(check(&s).expect("intact"), seq);
            }
            let held = rx.recv_timeout(LIMIT).expect("recv");
            std::mem::forget(held);
            std::mem::forget(rx);
            std::process::exit(0);
        }
        "hold-producer" => {
            let _tx = Producer::open(&name).expect("open producer");
            // Stay alive until killed.
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn stress_across_processes() {
    let name = Name::new("stress");
    let n = stress_count(200_000, 2_000_000);
    let mut rx = Consumer::create(&name.0, 64, SLOT).unwrap();
    let kid = Kid::spawn(ENTRY, "stress-producer", &name.0, &[(COUNT, n.to_string())]);
    let mut rng = Rng::new(7);
    for seq in 0..n {
        let s = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("message {seq}: {e}"));
        assert_eq!(
            s.len(),
            size_of_msg(&mut rng),
            "message {seq}: wrong length"
        );
        assert_eq!(check(&s).unwrap(), seq, "lost, duplicated or reordered");
    }
    // The producer leaves: Disconnected once drained, never a phantom message.
    assert_eq!(
        rx.recv_timeout(LIMIT).map(|s| s.len()),
        Err(RecvError::Disconnected)
    );
    kid.join(LIMIT);
}

#[test]
fn killed_producer_disconnects_and_a_new_one_is_picked_up() {
    let name = Name::new("kill-p");
    let mut rx = Consumer::create(&name.0, 16, 64).unwrap();
    let kid = Kid::spawn(ENTRY, "endless-producer", &name.0, &[(COUNT, "0".into())]);
    for seq in 0..1000 {
        assert_eq!(check(&rx.recv_timeout(LIMIT).unwrap()).unwrap(), seq);
    }
    kid.kill();
    let mut next = 1000;
    loop {
        match rx.recv_timeout(LIMIT) {
            Ok(s) => {
                assert_eq!(check(&s).unwrap(), next);
                next += 1;
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("expected Disconnected, got {e}"),
        }
    }
    // A restarted producer is picked up by the same consumer.
    // Until it attaches, receives keep saying Disconnected.
    let kid = Kid::spawn(
        ENTRY,
        "endless-producer",
        &name.0,
        &[(COUNT, "5000".into())],
    );
    let mut first = None;
    assert!(wait_until(LIMIT, || match rx.try_recv() {
        Ok(s) => {
            first = Some(check(&s).unwrap());
            true
        }
        Err(RecvError::Empty | RecvError::Disconnected) => false,
        Err(e) => panic!("{e}"),
    }));
    assert_eq!(first, Some(5000));
    for seq in 5001..5100 {
        assert_eq!(check(&rx.recv_timeout(LIMIT).unwrap()).unwrap(), seq);
    }
    kid.kill();
}

#[test]
fn killed_consumer_is_noticed_and_a_new_one_resumes() {
    let name = Name::new("kill-c");
    let mut tx = Producer::create(&name.0, 8, 64).unwrap();
    let kid = Kid::spawn(ENTRY, "slow-consumer", &name.0, &[]);
    let mut buf = [0u8; 32];
    let mut seq = 0;
    // Send until the consumer has taken a good number.
    while seq < 2000 {
        fill(&mut buf, seq);
        tx.send_timeout(&buf, LIMIT).unwrap();
        seq += 1;
    }
    kid.kill();
    // The ring fills; then the dead consumer is noticed.
    loop {
        fill(&mut buf, seq);
        match tx.send_timeout(&buf, LIMIT) {
            Ok(()) => seq += 1,
            Err(SendError::Disconnected(())) => break,
            Err(e) => panic!("expected Disconnected, got {e}"),
        }
    }
    // A new consumer resumes with what is in the ring, in order, then new messages.
    let kid = Kid::spawn(ENTRY, "resumed-consumer", &name.0, &[(COUNT, "100".into())]);
    assert!(wait_until(LIMIT, || tx.consumer_present()));
    assert!(wait_until(LIMIT, || {
        fill(&mut buf, seq);
        match tx.try_send(&buf) {
            Ok(()) => {
                seq += 1;
                false
            }
            Err(TrySendError::Full(())) => false,
            Err(TrySendError::Disconnected(())) => true, // the child finished
            Err(e) => panic!("{e}"),
        }
    }));
    kid.join(LIMIT);
}

/// A consumer that dies gives its successor only what it had not finished with:
/// the message it was reading again, never the ones it had received and dropped
/// (which its hand-back of slots in batches had not yet handed back).
#[test]
fn a_dead_consumers_finished_messages_are_not_delivered_again() {
    let name = Name::new("redeliver");
    // 256 slots: the consumer hands slots back 16 at a time.
    let mut tx = Producer::create(&name.0, 256, 64).unwrap();
    let mut buf = [0u8; 32];
    for seq in 0..40 {
        fill(&mut buf, seq);
        tx.send_timeout(&buf, LIMIT).unwrap();
    }
    // It finishes with 0..10 and dies reading 10.
    Kid::spawn(ENTRY, "take-then-die", &name.0, &[(COUNT, "10".into())]).join(LIMIT);
    let mut rx = Consumer::open(&name.0).unwrap();
    for seq in 10..40 {
        let s = rx.recv_timeout(LIMIT).unwrap();
        assert_eq!(
            check(&s).unwrap(),
            seq,
            "the new consumer got a message the dead one had finished with"
        );
    }
    assert_eq!(rx.try_recv().map(|s| s.len()), Err(RecvError::Empty));
    // The slots it had finished with went back to the producer: the ring takes
    // a whole capacity again once the new consumer has drained it.
    for seq in 40..40 + 256 {
        fill(&mut buf, seq);
        tx.try_send(&buf).unwrap();
    }
}

#[test]
fn one_producer_at_a_time() {
    let name = Name::new("excl");
    let rx = Consumer::create(&name.0, 4, 16).unwrap();
    let kid = Kid::spawn(ENTRY, "hold-producer", &name.0, &[]);
    assert!(wait_until(LIMIT, || rx.producer_present()));
    assert!(matches!(
        Producer::open(&name.0),
        Err(ChannelError::Busy { role: "producer", pid, .. }) if pid == kid.pid()
    ));
    // In this process too.
    assert!(matches!(
        Consumer::open(&name.0),
        Err(ChannelError::Busy {
            role: "consumer",
            ..
        })
    ));
    kid.kill();
    // Its death frees the place.
    let _tx = Producer::open(&name.0).unwrap();
    drop(rx);
}

#[test]
fn open_checks_kind_and_type() {
    let name = Name::new("types");
    let _tx = TypedProducer::<u64>::create(&name.0, 8).unwrap();
    let e = Consumer::open(&name.0).unwrap_err();
    assert!(
        matches!(
            e,
            ChannelError::Layout {
                source: LayoutError::Mismatch { .. },
                ..
            }
        ),
        "{e}"
    );
    let e = TypedConsumer::<[u32; 2]>::open(&name.0).unwrap_err();
    assert!(matches!(e, ChannelError::Layout { .. }), "{e}");
    let mut rx = TypedConsumer::<u64>::open(&name.0).unwrap();
    assert_eq!(rx.try_recv(), Err(RecvError::Empty));
    assert!(matches!(
        Producer::open("tc-no-such-channel-x"),
        Err(ChannelError::Open(_))
    ));
    // A plain segment is not a channel.
    let plain = Name::new("plain");
    let seg = Segment::create(&plain.0, 4096).unwrap();
    seg.map_all().unwrap().write_at(0, &[0x5a; 64]).unwrap();
    let e = Consumer::open(&plain.0).unwrap_err();
    assert!(
        matches!(
            e,
            ChannelError::Layout {
                source: LayoutError::NotShmipc,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        Options::new()
            .capacity(0)
            .create_producer(&Name::new("zero").0),
        Err(ChannelError::InvalidParameter { .. })
    ));
}

#[test]
fn typed_round_trip_zero_copy() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Tick {
        seq: u64,
        price: f64,
    }
    let name = Name::new("typed");
    let mut tx = TypedProducer::<Tick>::create(&name.0, 4).unwrap();
    let mut rx = TypedConsumer::<Tick>::open(&name.0).unwrap();
    for i in 0..10u64 {
        let mut loan = tx.loan().unwrap();
        *loan = Tick {
            seq: i,
            price: i as f64 / 2.0,
        };
        loan.send();
        assert_eq!(rx.recv_ref().unwrap().seq, i);
    }
    tx.send(Tick {
        seq: 99,
        price: 1.0,
    })
    .unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().seq, 99);
    for i in 0..4 {
        tx.try_send(Tick { seq: i, price: 0.0 }).unwrap();
    }
    assert!(
        matches!(tx.try_send(Tick { seq: 9, price: 0.0 }), Err(TrySendError::Full(t)) if t.seq == 9)
    );
    drop(tx);
    for i in 0..4 {
        assert_eq!(rx.recv().unwrap().seq, i);
    }
    assert_eq!(rx.recv(), Err(RecvError::Disconnected));
}

#[test]
fn bytes_api_edges() {
    let name = Name::new("edges");
    let mut tx = Producer::create(&name.0, 3, 100).unwrap();
    assert_eq!(tx.capacity(), 4);
    let mut rx = Consumer::open(&name.0).unwrap();
    assert!(matches!(
        tx.try_send(&[0; 101]),
        Err(TrySendError::TooLarge { len: 101, max: 100 })
    ));
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Empty)
    ));
    tx.send(b"").unwrap();
    assert_eq!(rx.try_recv().unwrap().len(), 0);
    // A dropped loan sends nothing.
    {
        let _unsent = tx.try_loan(10).unwrap();
    }
    let mut loan = tx.try_loan(10).unwrap();
    loan[..3].copy_from_slice(b"abc");
    loan.truncate(3);
    loan.send();
    assert_eq!(&*rx.try_recv().unwrap(), b"abc");
    // A consumer that left makes sends fail.
    drop(rx);
    assert!(matches!(
        tx.try_send(b"x"),
        Err(TrySendError::Disconnected(()))
    ));
    // A new consumer may attach.
    let mut rx = Consumer::open(&name.0).unwrap();
    tx.send(b"again").unwrap();
    assert_eq!(rx.recv().unwrap().to_vec(), b"again");
    // Copying forms.
    let mut buf = vec![9; 50];
    tx.send(b"copy").unwrap();
    rx.try_recv_into(&mut buf).unwrap();
    assert_eq!(buf, b"copy");
    tx.send(b"vec").unwrap();
    assert_eq!(rx.recv_vec().unwrap(), b"vec");
    assert_eq!(
        rx.recv_into_timeout(&mut buf, Duration::from_millis(5)),
        Err(RecvError::Empty)
    );
}

#[test]
fn corrupt_memory_gives_errors_not_panics() {
    let name = Name::new("corrupt");
    let mut tx = Producer::create(&name.0, 4, 32).unwrap();
    let mut rx = Consumer::open(&name.0).unwrap();
    let raw = Segment::open(&name.0, Access::ReadWrite)
        .unwrap()
        .map_all()
        .unwrap();
    // A stamp with the right tag and a huge length.
    raw.write_pod(384, &((1u64 << 40) | 1)).unwrap();
    assert!(matches!(rx.try_recv(), Err(RecvError::Corrupt(_))));
    raw.write_pod(384, &0u64).unwrap();
    // A tail far ahead of the producer.
    tx.try_send(b"1234").unwrap();
    for _ in 0..3 {
        tx.try_send(b"1234").unwrap();
    }
    raw.write_pod(128, &u64::MAX).unwrap();
    assert!(matches!(tx.try_send(b"x"), Err(TrySendError::Corrupt(_))));
    // Garbage capacity in the header: refused at open.
    raw.write_pod(24, &3u64).unwrap();
    assert!(matches!(
        Consumer::open(&name.0),
        Err(ChannelError::Layout { .. })
    ));
}

/// A corrupted slot stamp with later messages published behind it is reported,
/// never a consumer waiting for ever (the class of issue 10's deaf subscriber).
#[test]
fn corrupt_stamp_is_reported_not_waited_on() {
    let name = Name::new("spsc-corrupt");
    let mut tx = Producer::create(&name.0, 4, 32).unwrap();
    let mut rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // 384: the first slot's stamp (spsc.rs layout).
    view.atomic_u64(384)
        .unwrap()
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let e = rx.recv_vec().unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
}
