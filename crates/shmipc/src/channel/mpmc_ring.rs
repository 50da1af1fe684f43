//! The bounded multi-producer multi-consumer queue, as pure memory logic for loom
//! and miri.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (1024cores.net, "Bounded MPMC queue"; the
//! design of crossbeam's `ArrayQueue`): each slot carries a sequence number `seq`.
//!
//! * Slot of position `pos` is free for a producer when `seq == pos`. A producer
//!   claims position `pos` by a CAS of `enqueue_pos` from `pos` to `pos + 1`
//!   (after an **Acquire** load of `seq`, which pairs with the consumer's Release
//!   store that freed the slot), records itself in the slot's `owner`, writes the
//!   length and payload (Relaxed atomic words), and publishes with a **Release**
//!   CAS of `seq` from `pos` to `pos + 1`.
//! * A consumer claims a slot with `seq == pos + 1` (**Acquire**, pairs with that
//!   Release) by a CAS of `dequeue_pos`, copies the message out, clears `owner` and
//!   frees the slot for the next lap with a **Release** store of `seq = pos +
//!   capacity`.
//!
//! Crash safety beyond Vyukov: a producer that dies between its claim and its
//! publish would stall every consumer at that slot. A consumer that finds the slot
//! it waits for claimed (`enqueue_pos > pos`) but unpublished, whose recorded owner
//! is a dead process, reclaims it: it takes the dequeue position and CASes `seq`
//! from `pos` to `pos + capacity`, dropping the never-sent message. The producer's
//! publish is a CAS, so a producer that was only presumed dead fails to publish
//! rather than overwrite. (A producer that dies in the two instructions between
//! its claim and recording itself leaves `owner == 0`; that slot is reported as
//! [`Stall`] instead of guessed at.)
//!
//! Payloads are atomic words on both sides, so even a reclaim racing a presumed
//! dead writer is never a data race.

use super::shim::{AtomicU64, Ordering};
use super::Corrupt;

/// Where the shared words of one queue are.
pub(crate) trait MpmcSlots {
    fn seq(&self, slot: usize) -> &AtomicU64;
    fn len(&self, slot: usize) -> &AtomicU64;
    fn owner(&self, slot: usize) -> &AtomicU64;
    fn word(&self, slot: usize, i: usize) -> &AtomicU64;
    fn enqueue_pos(&self) -> &AtomicU64;
    fn dequeue_pos(&self) -> &AtomicU64;
}

/// Queue dimensions, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Slots, a power of two in `2..=2^31`.
    pub(crate) capacity: u64,
    /// Largest payload in bytes.
    pub(crate) max_len: u32,
}

impl Geometry {
    #[inline]
    fn slot(&self, pos: u64) -> usize {
        (pos & (self.capacity - 1)) as usize
    }
}

/// What a push found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Done,
    Full,
    /// A consumer reclaimed the slot, believing this producer dead.
    Reclaimed,
    /// The queue's words are impossible.
    Corrupt(Corrupt),
}

/// What a pop found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pop {
    /// A message was copied into the buffer.
    Got,
    Empty,
    /// The next message is claimed by a producer that has not published it; its
    /// recorded owner (0 = none recorded).
    Stall(u64),
}

/// How many times a CAS loop may lose to other endpoints before reporting
/// contention as full/empty (a hostile process flipping words cannot trap us).
const RETRIES: usize = 1 << 12;

/// Pushes `data` (`len <= max_len`) as producer `me` (a non-zero token).
pub(crate) fn push(geo: Geometry, q: &impl MpmcSlots, me: u64, data: &[u8]) -> Push {
    let enq = q.enqueue_pos();
    let mut pos = enq.load(Ordering::Relaxed);
    let mut claimed = None;
    for _ in 0..RETRIES {
        let slot = geo.slot(pos);
        // Acquire pairs with the consumer's Release store freeing the slot.
        let seq = q.seq(slot).load(Ordering::Acquire);
        let dif = seq.wrapping_sub(pos) as i64;
        if dif == 0 {
            match enq.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    claimed = Some(pos);
                    break;
                }
                Err(now) => pos = now,
            }
        } else if dif < 0 {
            return Push::Full;
        } else {
            // The slot is ahead of `pos`: a producer claimed `pos` (its enqueue
            // CAS comes before the Release store of `seq` our Acquire load saw,
            // directly or through the consumers of later laps), so the enqueue
            // position has moved past it. Unmoved, it is corrupt: spinning over
            // it would make a "full" queue for ever.
            let now = enq.load(Ordering::Relaxed);
            if now == pos {
                return Push::Corrupt(Corrupt {
                    what: "mpmc slot sequence (ahead of the enqueue position)",
                    value: seq,
                });
            }
            pos = now;
        }
    }
    let Some(pos) = claimed else {
        return Push::Full;
    };
    let slot = geo.slot(pos);
    q.owner(slot).store(me, Ordering::Relaxed);
    for (i, c) in data.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        q.word(slot, i)
            .store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
    q.len(slot).store(data.len() as u64, Ordering::Relaxed);
    // Release pairs with the consumer's Acquire load of `seq`; a CAS, so that a
    // slot reclaimed meanwhile is not published over.
    match q.seq(slot).compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::Release,
        Ordering::Relaxed,
    ) {
        Ok(_) => Push::Done,
        Err(_) => Push::Reclaimed,
    }
}

/// Pops the next message into `buf`.
pub(crate) fn pop(geo: Geometry, q: &impl MpmcSlots, buf: &mut Vec<u8>) -> Result<Pop, Corrupt> {
    let deq = q.dequeue_pos();
    let mut pos = deq.load(Ordering::Relaxed);
    for _ in 0..RETRIES {
        let slot = geo.slot(pos);
        // Acquire pairs with the producer's Release CAS publishing the slot.
        let seq = q.seq(slot).load(Ordering::Acquire);
        let dif = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
        if dif == 0 {
            match deq.compare_exchange_weak(
                pos,
                pos.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take(geo, q, slot, pos, buf).map(|()| Pop::Got),
                Err(now) => pos = now,
            }
        } else if dif < 0 {
            // Free (empty), or claimed and not yet published.
            let enq = q.enqueue_pos().load(Ordering::Relaxed);
            let ahead = enq.wrapping_sub(pos);
            // The queue holds at most `capacity` claimed positions past the
            // dequeue position: anything else with the dequeue position unchanged
            // (so not a stale read) is corrupt, not an empty queue to wait on.
            if ahead > geo.capacity && deq.load(Ordering::Relaxed) == pos {
                return Err(Corrupt {
                    what: "mpmc dequeue position (impossible given the enqueue position and the capacity)",
                    value: pos,
                });
            }
            let claimed = ahead as i64 > 0;
            if seq == pos && claimed {
                return Ok(Pop::Stall(q.owner(slot).load(Ordering::Relaxed)));
            }
            return Ok(Pop::Empty);
        } else {
            // The slot is a lap or more ahead: a consumer took position `pos`
            // (its dequeue CAS comes before its Release store of `seq`, which our
            // Acquire load saw), so the dequeue position has moved past `pos`.
            // Unmoved, it is corrupt: spinning over it would make an "empty"
            // queue for ever.
            let now = deq.load(Ordering::Relaxed);
            if now == pos {
                return Err(Corrupt {
                    what: "mpmc slot sequence (a lap ahead of the dequeue position)",
                    value: seq,
                });
            }
            pos = now;
        }
    }
    Ok(Pop::Empty)
}

fn take(
    geo: Geometry,
    q: &impl MpmcSlots,
    slot: usize,
    pos: u64,
    buf: &mut Vec<u8>,
) -> Result<(), Corrupt> {
    let len = q.len(slot).load(Ordering::Relaxed);
    let fits = len <= u64::from(geo.max_len);
    buf.clear();
    if fits {
        let mut i = 0;
        while buf.len() < len as usize {
            let w = q.word(slot, i).load(Ordering::Relaxed).to_le_bytes();
            let n = (len as usize - buf.len()).min(8);
            buf.extend_from_slice(&w[..n]);
            i += 1;
        }
    }
    q.owner(slot).store(0, Ordering::Relaxed);
    // Release pairs with the producer's Acquire load of `seq` next lap: our reads
    // are done before it writes.
    q.seq(slot)
        .store(pos.wrapping_add(geo.capacity), Ordering::Release);
    if fits {
        Ok(())
    } else {
        Err(Corrupt {
            what: "message length (larger than a slot)",
            value: len,
        })
    }
}

/// Drops the claimed-but-unpublished message at the head of the queue, whose
/// producer (`owner`) is dead: only a dead process's claim may be reclaimed, since
/// a live one could still write the slot's payload. If the producer published it
/// after all, the message is popped into `buf` instead.
pub(crate) fn reclaim(
    geo: Geometry,
    q: &impl MpmcSlots,
    owner: u64,
    buf: &mut Vec<u8>,
) -> Result<Pop, Corrupt> {
    let deq = q.dequeue_pos();
    let pos = deq.load(Ordering::Relaxed);
    let slot = geo.slot(pos);
    if q.seq(slot).load(Ordering::Acquire) != pos || q.owner(slot).load(Ordering::Relaxed) != owner
    {
        return Ok(Pop::Empty);
    }
    if deq
        .compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return Ok(Pop::Empty);
    }
    // We own the dequeue position. Free the slot for the next lap (Release pairs
    // with the next producer's Acquire load of `seq`), unless it was published
    // meanwhile (Acquire on failure pairs with the publishing Release CAS): then
    // the message was sent and is delivered.
    match q.seq(slot).compare_exchange(
        pos,
        pos.wrapping_add(geo.capacity),
        Ordering::Release,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            q.owner(slot).store(0, Ordering::Relaxed);
            Ok(Pop::Empty)
        }
        Err(seq) if seq == pos.wrapping_add(1) => take(geo, q, slot, pos, buf).map(|()| Pop::Got),
        Err(seq) => Err(Corrupt {
            what: "slot sequence (changed under a reclaim)",
            value: seq,
        }),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Heap {
        capacity: usize,
        mem: Box<[AtomicU64]>,
    }

    const WORDS: usize = 2;

    impl Heap {
        fn new(capacity: usize) -> Self {
            let mem: Box<[AtomicU64]> = (0..2 + capacity * (3 + WORDS))
                .map(|_| AtomicU64::new(0))
                .collect();
            for i in 0..capacity {
                mem[2 + i * (3 + WORDS)].store(i as u64, Ordering::Relaxed);
            }
            Self { capacity, mem }
        }
        fn at(&self, slot: usize, k: usize) -> &AtomicU64 {
            assert!(slot < self.capacity);
            &self.mem[2 + slot * (3 + WORDS) + k]
        }
    }

    impl MpmcSlots for Heap {
        fn seq(&self, slot: usize) -> &AtomicU64 {
            self.at(slot, 0)
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            self.at(slot, 1)
        }
        fn owner(&self, slot: usize) -> &AtomicU64 {
            self.at(slot, 2)
        }
        fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
            assert!(i < WORDS);
            self.at(slot, 3 + i)
        }
        fn enqueue_pos(&self) -> &AtomicU64 {
            &self.mem[0]
        }
        fn dequeue_pos(&self) -> &AtomicU64 {
            &self.mem[1]
        }
    }

    const GEO: Geometry = Geometry {
        capacity: 4,
        max_len: 16,
    };

    #[test]
    fn fifo_full_empty_and_reclaim() {
        let q = Heap::new(4);
        let mut buf = Vec::new();
        assert_eq!(pop(GEO, &q, &mut buf), Ok(Pop::Empty));
        for i in 0..4u8 {
            assert_eq!(push(GEO, &q, 7, &[i; 9]), Push::Done);
        }
        assert_eq!(push(GEO, &q, 7, b"x"), Push::Full);
        for i in 0..4u8 {
            assert_eq!(pop(GEO, &q, &mut buf), Ok(Pop::Got));
            assert_eq!(buf, [i; 9]);
        }
        // A producer that claimed a slot and "died" before publishing.
        q.enqueue_pos().store(5, Ordering::Relaxed);
        q.owner(0).store(99, Ordering::Relaxed);
        assert_eq!(pop(GEO, &q, &mut buf), Ok(Pop::Stall(99)));
        assert_eq!(reclaim(GEO, &q, 99, &mut buf), Ok(Pop::Empty));
        assert_eq!(pop(GEO, &q, &mut buf), Ok(Pop::Empty));
        assert_eq!(push(GEO, &q, 7, b"next"), Push::Done);
        assert_eq!(pop(GEO, &q, &mut buf), Ok(Pop::Got));
        assert_eq!(buf, b"next");
    }

    /// Two producers, two consumers over a tiny queue: every message exactly once,
    /// and each producer's messages in order. Runs under miri.
    #[test]
    fn threads_exactly_once() {
        let per: u64 = if cfg!(miri) { 50 } else { 50_000 };
        let q = Arc::new(Heap::new(4));
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..per {
                        let v = (p << 32 | i).to_le_bytes();
                        while push(GEO, &*q, p + 1, &v) != Push::Done {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = Vec::new();
                    while (got.len() as u64) < per {
                        match pop(GEO, &*q, &mut buf).unwrap() {
                            Pop::Got => got.push(u64::from_le_bytes(buf[..8].try_into().unwrap())),
                            _ => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            for p in 0..2u64 {
                let mine: Vec<u64> = got.iter().copied().filter(|v| v >> 32 == p).collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "reordered");
            }
            all.extend(got);
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, 2 * per, "lost or duplicated");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct LoomQ {
        enq: AtomicU64,
        deq: AtomicU64,
        /// per slot: seq, len, owner, one word
        mem: Vec<AtomicU64>,
    }

    impl MpmcSlots for LoomQ {
        fn seq(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 4]
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 4 + 1]
        }
        fn owner(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 4 + 2]
        }
        fn word(&self, slot: usize, _i: usize) -> &AtomicU64 {
            &self.mem[slot * 4 + 3]
        }
        fn enqueue_pos(&self) -> &AtomicU64 {
            &self.enq
        }
        fn dequeue_pos(&self) -> &AtomicU64 {
            &self.deq
        }
    }

    /// Two producers race one message each into a two-slot queue while a consumer
    /// pops: both arrive once, intact. (Preemptions bounded to 3, as loom's own
    /// docs advise for tests of this size; the full space does not finish.)
    #[test]
    fn mpmc_two_producers() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let geo = Geometry {
                capacity: 2,
                max_len: 8,
            };
            let q = Arc::new(LoomQ {
                enq: AtomicU64::new(0),
                deq: AtomicU64::new(0),
                mem: (0..8)
                    .map(|i| AtomicU64::new(if i % 4 == 0 { (i / 4) as u64 } else { 0 }))
                    .collect(),
            });
            let ts: Vec<_> = (1..=2u64)
                .map(|p| {
                    let q = Arc::clone(&q);
                    loom::thread::spawn(move || {
                        assert_eq!(push(geo, &*q, p, &(100 * p).to_le_bytes()), Push::Done);
                    })
                })
                .collect();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            while got.len() < 2 {
                match pop(geo, &*q, &mut buf).unwrap() {
                    Pop::Got => got.push(u64::from_le_bytes(buf[..8].try_into().unwrap())),
                    _ => loom::thread::yield_now(),
                }
            }
            got.sort_unstable();
            assert_eq!(got, [100, 200]);
            for t in ts {
                t.join().unwrap();
            }
        });
    }
}
