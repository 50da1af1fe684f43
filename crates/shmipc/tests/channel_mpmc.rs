//! mpmc queues across real processes: two producers and two consumers, every
//! message exactly once and intact; a producer killed mid-stream.

mod chan_common;

use std::sync::atomic::Ordering;
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
        // Loans, sends, drops loans unsent and holds them across yields, until killed.
        "storm-producer" => {
            let mut tx = Producer::open(&name).expect("open producer");
            let mut rng = Rng::new(u64::from(std::process::id()));
            for seq in 0.. {
                let len = 16 + (rng.next() % (SLOT as u64 - 15)) as usize;
                let Ok(mut loan) = tx.loan_timeout(len, Duration::from_millis(20)) else {
                    continue;
                };
                fill(&mut loan, seq);
                match rng.next() % 8 {
                    0 => drop(loan),
                    1 => {
                        std::thread::yield_now();
                        loan.send().expect("send");
                    }
                    _ => loan.send().expect("send"),
                }
            }
        }
        // Receives and holds up to three samples at a time, checking each stays
        // intact while held, until killed.
        "storm-consumer" => {
            let rx = Consumer::open(&name).expect("open consumer");
            let mut rng = Rng::new(u64::from(std::process::id()));
            let mut held = std::collections::VecDeque::new();
            loop {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok(s) => {
                        let v = check(&s).expect("intact");
                        held.push_back((s, v));
                    }
                    Err(_) => {
                        held.clear();
                    }
                }
                while held.len() > (rng.next() % 4) as usize {
                    let (s, v) = held.pop_front().unwrap();
                    assert_eq!(check(&s), Ok(v), "a held sample changed");
                }
            }
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
    let rx = Options::new()
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
    let rx = Consumer::open(&name.0).unwrap();
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
    let rx = Consumer::open(&name.0).unwrap();
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

/// Producers and consumers SIGKILLed at random moments (with loans out, samples
/// held, cancelled loans queued): the queue goes on, every message received is
/// intact, and once everyone is gone and the queue drained, every slot is free
/// again (a crash never leaks one).
#[test]
fn kill_storm_never_leaks_a_slot() {
    let name = Name::new("mpmc-storm");
    let rounds = stress_count(40, 200);
    let rx = Options::new()
        .capacity(8)
        .slot_size(SLOT)
        .max_endpoints(16)
        .create_consumer(&name.0)
        .unwrap();
    let roles = [
        "storm-producer",
        "storm-producer",
        "storm-consumer",
        "storm-consumer",
    ];
    let spawn = |role: &str| Kid::spawn(ENTRY, role, &name.0, &[]);
    let mut kids: Vec<Kid> = roles.iter().map(|r| spawn(r)).collect();
    let mut rng = Rng::new(7);
    let mut got = 0u64;
    for _ in 0..rounds {
        // A random moment: after a random number of messages through this
        // consumer (or a quiet spell).
        for _ in 0..1 + rng.next() % 20 {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(s) => {
                    check(&s).expect("intact");
                    got += 1;
                }
                Err(RecvError::Empty | RecvError::Disconnected) => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        let k = (rng.next() % roles.len() as u64) as usize;
        std::mem::replace(&mut kids[k], spawn(roles[k])).kill();
    }
    for kid in kids {
        kid.kill();
    }
    assert!(got > 0, "nothing came through");
    // Drain: dead producers' loans are skipped, cancelled loans freed.
    loop {
        match rx.try_recv() {
            Ok(s) => {
                check(&s).expect("intact");
            }
            Err(RecvError::Empty | RecvError::Disconnected) => break,
            Err(e) => panic!("drain: {e}"),
        }
    }
    let mut tx = Producer::open(&name.0).unwrap();
    assert_eq!(tx.free_slots(), tx.capacity(), "slots leaked");
    // And the queue still works end to end.
    tx.send(b"after the storm").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"after the storm");
}

/// A slot whose state is two or more laps ahead of the dequeue position that
/// names it (only a consumer that moved the position past it could have made it
/// one lap ahead, none two) is reported: the consumer does not spin over it and
/// call the queue empty for ever (the old ring's failure, found by the
/// mpmc_consumer fuzz target).
#[test]
fn slot_state_laps_ahead_of_dequeue_position_is_reported() {
    let name = Name::new("mpmc-seq-ahead");
    let mut tx = Options::new()
        .capacity(8)
        .slot_size(16)
        .max_endpoints(4)
        .create_producer(&name.0)
        .unwrap();
    let rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"one");
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    // The dequeue position is 1: its slot's state (turn 0, free) is 0.
    let state = view.atomic_u64(slot_state(1)).unwrap();
    assert_eq!(state.load(Ordering::SeqCst), 0);
    state.store(2 << TURN_SHIFT, Ordering::SeqCst);
    let e = rx.try_recv().unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
    let e = rx.recv_timeout(LIMIT).unwrap_err();
    assert!(matches!(e, RecvError::Corrupt(_)), "{e}");
}

/// The producer's side of the same: a slot laps ahead of the enqueue position
/// that names it is reported, not taken for a full queue for ever.
#[test]
fn slot_state_laps_ahead_of_enqueue_position_is_reported() {
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
    // The enqueue position is 1; its slot is free for it in turn 0.
    let state = view.atomic_u64(slot_state(1)).unwrap();
    assert_eq!(state.load(Ordering::SeqCst), 0);
    state.store(2 << TURN_SHIFT, Ordering::SeqCst);
    let e = tx.try_send(b"two").unwrap_err();
    assert!(matches!(e, TrySendError::Corrupt(_)), "{e}");
    let e = tx.send_timeout(b"two", LIMIT).unwrap_err();
    assert!(matches!(e, SendError::Corrupt(_)), "{e}");
}

/// One lap ahead is what a position lagging behind the claim or take that moved
/// its slot on looks like, so both sides help the position past it: the queue
/// is not deaf (nothing spins over it, and every message sent after it arrives,
/// in order, through the laps that reuse the slot).
#[test]
fn slot_state_a_lap_ahead_is_passed_not_deaf() {
    let name = Name::new("mpmc-lap-ahead");
    let mut tx = Options::new()
        .capacity(8)
        .slot_size(16)
        .max_endpoints(4)
        .create_producer(&name.0)
        .unwrap();
    let rx = Consumer::open(&name.0).unwrap();
    tx.send(b"one").unwrap();
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), b"one");
    let seg = shmipc::Segment::open(&name.0, shmipc::Access::ReadWrite).unwrap();
    let view = seg.map_all().unwrap();
    let state = view.atomic_u64(slot_state(1)).unwrap();
    state.store(1 << TURN_SHIFT, Ordering::SeqCst);
    assert!(matches!(rx.try_recv(), Err(RecvError::Empty)));
    for i in 0..20u8 {
        tx.send_timeout(&[i; 4], LIMIT).unwrap();
        assert_eq!(rx.recv_timeout(LIMIT).unwrap(), [i; 4]);
    }
}

/// Where slot `i`'s state word is, for a queue of 4 endpoints and 16-byte slots
/// (mpmc.rs layout: records from 384, 32 bytes each; slots from 512, a 64-byte
/// header with the state first, then the payload lined up to 64).
fn slot_state(i: usize) -> usize {
    512 + i * 128
}

/// A slot state's turn (its lap) is above the phase and endpoint bits
/// (mpmc_ring.rs).
const TURN_SHIFT: u32 = 19;
