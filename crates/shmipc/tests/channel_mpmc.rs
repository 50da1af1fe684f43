//! mpmc queues across real processes: two producers and two consumers, every
//! message exactly once and intact; a producer killed mid-stream.

mod chan_common;

use std::time::Duration;

use chan_common::*;
use shmipc::channel::mpmc::{Consumer, Options, Producer};
use shmipc::channel::{ChannelError, RecvError, SendError, TrySendError};

const ENTRY: &str = "child_entry";
const LIMIT: Duration = Duration::from_secs(60);
const SLOT: usize = 96;
const PRODUCER_ID: &str = "SHMIPC_CHAN_PRODUCER";
const OUT: &str = "SHMIPC_CHAN_OUT";

/// Message `seq` of producer `p`: the sequence number carries the producer in its
/// top byte.
fn tagged(p: u64, seq: u64) -> u64 {
    (p << 56) | seq
}

/// Receives until Disconnected; returns (count, sum of tagged numbers).
fn drain(rx: &mut Consumer) -> (u64, u64) {
    let mut last = [None::<u64>; 256];
    let (mut count, mut sum) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        match rx.recv_into_timeout(&mut buf, LIMIT) {
            Ok(()) => {
                let t = check(&buf).expect("intact");
                let p = (t >> 56) as usize;
                if let Some(l) = last[p] {
                    assert!(t > l, "producer {p}: {t:#x} after {l:#x}");
                }
                last[p] = Some(t);
                count += 1;
                sum = sum.wrapping_add(t);
            }
            Err(RecvError::Disconnected) => return (count, sum),
            Err(e) => panic!("recv: {e}"),
        }
    }
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
        "producer" => {
            let p: u64 = std::env::var(PRODUCER_ID).unwrap().parse().unwrap();
            let mut tx = Producer::open(&name).expect("open producer");
            // Start together: a consumer must not see every producer gone (and a
            // consumer not attached yet miss everything) while one is still starting.
            let want: usize = std::env::var("SHMIPC_CHAN_PEERS").map_or(1, |v| v.parse().unwrap());
            assert!(wait_until(LIMIT, || tx.producers() >= want && tx.consumers() >= want));
            let mut rng = Rng::new(p + 3);
            let mut buf = [0u8; SLOT];
            for seq in 0..count {
                let len = 16 + (rng.next() % (SLOT as u64 - 15)) as usize;
                fill(&mut buf[..len], tagged(p, seq));
                tx.send_timeout(&buf[..len], LIMIT).expect("send");
            }
        }
        "consumer" => {
            let mut rx = Consumer::open(&name).expect("open consumer");
            let (n, sum) = drain(&mut rx);
            std::fs::write(std::env::var(OUT).unwrap(), format!("{n} {sum}")).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_producers_two_consumers_exactly_once() {
    let name = Name::new("mpmc");
    let n = stress_count(50_000, 500_000);
    let mut rx = Options::new()
        .capacity(16)
        .slot_size(SLOT)
        .create_consumer(&name.0)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b");
    let other = Kid::spawn(
        ENTRY,
        "consumer",
        &name.0,
        &[(OUT, out.display().to_string())],
    );
    let producers: Vec<Kid> = (1..=2)
        .map(|p| {
            Kid::spawn(
                ENTRY,
                "producer",
                &name.0,
                &[
                    (COUNT, n.to_string()),
                    (PRODUCER_ID, p.to_string()),
                    ("SHMIPC_CHAN_PEERS", "2".into()),
                ],
            )
        })
        .collect();
    let (mine, my_sum) = drain(&mut rx);
    for p in producers {
        p.join(LIMIT);
    }
    other.join(LIMIT);
    let text = std::fs::read_to_string(&out).unwrap();
    let (theirs, their_sum) = text.split_once(' ').unwrap();
    let theirs: u64 = theirs.parse().unwrap();
    let their_sum: u64 = their_sum.parse().unwrap();
    assert_eq!(mine + theirs, 2 * n, "lost or duplicated messages");
    let expected = (1..=2u64)
        .flat_map(|p| (0..n).map(move |s| tagged(p, s)))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(my_sum.wrapping_add(their_sum), expected, "wrong messages");
    assert!(
        mine > 0 && theirs > 0,
        "one consumer got nothing ({mine}, {theirs})"
    );
}

#[test]
fn killed_producer_counts_as_gone() {
    let name = Name::new("mpmc-kill");
    let mut rx = Options::new()
        .capacity(8)
        .slot_size(SLOT)
        .create_consumer(&name.0)
        .unwrap();
    let endless = Kid::spawn(
        ENTRY,
        "producer",
        &name.0,
        &[(COUNT, u64::MAX.to_string()), (PRODUCER_ID, "1".into())],
    );
    let mut buf = Vec::new();
    for _ in 0..1000 {
        rx.recv_into_timeout(&mut buf, LIMIT).unwrap();
        check(&buf).unwrap();
    }
    endless.kill();
    loop {
        match rx.recv_into_timeout(&mut buf, LIMIT) {
            Ok(()) => {
                check(&buf).unwrap();
            }
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("expected Disconnected, got {e}"),
        }
    }
    // The queue works on with a new producer.
    let mut tx = Producer::open(&name.0).unwrap();
    tx.send(b"after").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"after");
}

#[test]
fn bounds_and_errors() {
    let name = Name::new("mpmc-edges");
    let mut tx = Options::new()
        .capacity(2)
        .slot_size(8)
        .max_endpoints(2)
        .create_producer(&name.0)
        .unwrap();
    let mut rx = Consumer::open(&name.0).unwrap();
    assert!(matches!(
        Producer::open(&name.0),
        Err(ChannelError::Full { max: 2, .. })
    ));
    assert_eq!(rx.try_recv(), Err(RecvError::Empty));
    tx.try_send(b"a").unwrap();
    tx.try_send(b"bb").unwrap();
    assert_eq!(tx.try_send(b"c"), Err(TrySendError::Full(())));
    assert!(matches!(
        tx.try_send(&[0; 9]),
        Err(TrySendError::TooLarge { len: 9, max: 8 })
    ));
    assert_eq!(rx.try_recv().unwrap(), b"a");
    assert_eq!(rx.recv().unwrap(), b"bb");
    drop(tx);
    assert_eq!(rx.recv_timeout(LIMIT), Err(RecvError::Disconnected));
}

/// A corrupted shared index is reported, never a consumer waiting for ever on an
/// "empty" queue (the class of issue 10's deaf pubsub subscriber).
#[test]
fn corrupt_dequeue_position_is_reported() {
    let name = Name::new("mpmc-corrupt");
    let mut tx = Options::new()
        .capacity(8)
        .slot_size(16)
        .create_producer(&name.0)
        .unwrap();
    let mut rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"one");
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // 128: the dequeue position (mpmc.rs layout).
    view.atomic_u64(128)
        .unwrap()
        .fetch_add(1 << 62, std::sync::atomic::Ordering::SeqCst);
    let e = rx.recv_timeout(LIMIT).unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
}

/// A slot whose sequence is ahead of the dequeue position that names it (a lap
/// or more, as only a consumer that moved the position past it could have made
/// it) is reported: the consumer does not spin over it and call the queue empty
/// for ever (found by the mpmc_consumer fuzz target).
#[test]
fn slot_sequence_ahead_of_dequeue_position_is_reported() {
    let name = Name::new("mpmc-seq-ahead");
    let mut tx = Options::new()
        .capacity(8)
        .slot_size(16)
        .max_endpoints(4)
        .create_producer(&name.0)
        .unwrap();
    let mut rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"one");
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // Slots from 384 + 4 x 32 = 512, 64 bytes each, `seq` first (mpmc.rs
    // layout); the dequeue position is 1: its slot's seq 1 means free, 2 a
    // message; 1 + 8 (the next lap's) is impossible while the position is 1.
    let seq = view.atomic_u64(512 + 64).unwrap();
    assert_eq!(seq.load(std::sync::atomic::Ordering::SeqCst), 1);
    seq.store(1 + 8 + 1, std::sync::atomic::Ordering::SeqCst);
    let e = rx.try_recv().unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
    let e = rx.recv_timeout(LIMIT).unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
}

/// The producer's side of the same: a slot ahead of the enqueue position that
/// names it is reported, not taken for a full queue for ever.
#[test]
fn slot_sequence_ahead_of_enqueue_position_is_reported() {
    let name = Name::new("mpmc-seq-ahead-tx");
    let mut tx = Options::new()
        .capacity(8)
        .slot_size(16)
        .max_endpoints(4)
        .create_producer(&name.0)
        .unwrap();
    let _rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // The enqueue position is 1; its slot (layout above) is free for it at seq 1.
    let seq = view.atomic_u64(512 + 64).unwrap();
    assert_eq!(seq.load(std::sync::atomic::Ordering::SeqCst), 1);
    seq.store(1 + 8, std::sync::atomic::Ordering::SeqCst);
    let e = tx.try_send(b"two").unwrap_err();
    assert!(matches!(e, TrySendError::Corrupt(_)), "{e}");
    let e = tx.send_timeout(b"two", LIMIT).unwrap_err();
    assert!(matches!(e, SendError::Corrupt(_)), "{e}");
}
