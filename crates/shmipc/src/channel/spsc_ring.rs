//! The single-producer single-consumer ring, as pure memory logic (no system calls),
//! so that loom and miri can check it in one process over a heap buffer.
//!
//! # Algorithm
//!
//! A bounded ring of `capacity` fixed-size slots (a power of two), each with a 64-bit
//! *stamp* in the same cache line as the first bytes of its payload. It is the
//! FastForward queue (Giacomoni, Moseley, Vachharajani, PPoPP 2008) with Vyukov's
//! per-slot sequence numbers in place of FastForward's NULL marker, plus Lamport's
//! consumer index (as in `rtrb` and crossbeam's `ArrayQueue`) to hand slots back:
//!
//! * Message number `seq` (counting from 0) lives in slot `seq & (capacity - 1)`.
//! * The producer publishes it by storing the stamp `len << 32 | tag(seq)` with
//!   **Release** after writing the payload; the consumer polls the stamp of the slot
//!   it expects with **Acquire** (pairs with that Release), so the message and its
//!   "ready" signal travel in one cache line: one miss per small message.
//!   `tag(seq)` is the low 32 bits of `seq + 1`; a stamp left from an earlier lap
//!   carries another tag, since `capacity <= 2^31`.
//! * The consumer hands a slot back by storing the count of messages it has finished
//!   with (`tail`) with **Release** after the last read of the payload; the producer
//!   loads `tail` with **Acquire** (pairs with it) before reusing a slot, and only when
//!   its cached copy says the ring is full, so `tail`'s cache line stays with the
//!   consumer while the ring has room.
//!
//! * The consumer also notes every message it finishes with (`resume`, when the ring
//!   has that word: spsc channels do, rpc response rings do not) in a cache line of
//!   its own that only the next consumer reads: `tail` is stored in batches, and a
//!   consumer that dies would otherwise have its successor receive again what it had
//!   finished with since its last batch. The successor starts at `resume` when every
//!   message between `tail` and it is published (so a correct consumer could have
//!   finished with them), else at `tail` (a stale or hostile `resume`: deliver again
//!   rather than skip).
//!
//! Neither side trusts the other: a `tail` that is ahead of the producer or more than
//! a ring behind it, and a stamp whose length exceeds the slot, are reported as
//! [`Corrupt`] rather than used.
#![allow(unsafe_code)]

use super::shim::{AtomicU64, Ordering};
use super::Corrupt;

/// Where the shared words of one ring are. Implemented over a shared-memory segment
/// and, in tests, over heap memory or loom atomics.
pub(crate) trait SpscSlots {
    /// The stamp of slot `slot`; the caller guarantees `slot < capacity`.
    fn stamp(&self, slot: usize) -> &AtomicU64;
    /// The consumer's count of released messages.
    fn tail(&self) -> &AtomicU64;
    /// The consumer's count of messages it has finished with, stored per message
    /// for its successor (module doc); `None` where the ring has no such word.
    #[inline]
    fn resume(&self) -> Option<&AtomicU64> {
        None
    }
}

/// The tag a slot's stamp carries for message `seq`.
#[inline]
pub(crate) fn tag(seq: u64) -> u32 {
    // Truncation intended: the tag is the low 32 bits.
    seq.wrapping_add(1) as u32
}

/// The stamp that publishes message `seq` of `len` bytes.
#[inline]
pub(crate) fn stamp(seq: u64, len: u32) -> u64 {
    (u64::from(len) << 32) | u64::from(tag(seq))
}

/// Ring dimensions, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Slots, a power of two in `1..=2^31`.
    pub(crate) capacity: u64,
    /// Largest payload of one message, in bytes.
    pub(crate) max_len: u32,
}

impl Geometry {
    #[inline]
    fn slot(&self, seq: u64) -> usize {
        // `capacity <= 2^31` so the index fits any usize of 32 bits or more.
        (seq & (self.capacity - 1)) as usize
    }
}

/// The producer's private state: the next message number and its last look at the
/// consumer's `tail`.
#[derive(Debug)]
pub(crate) struct ProducerCore {
    geo: Geometry,
    head: u64,
    cached_tail: u64,
}

impl ProducerCore {
    /// Starts (or restarts, after a producer died) at the first message not yet
    /// published: scans from the consumer's `tail` over the published stamps.
    pub(crate) fn attach(geo: Geometry, slots: &impl SpscSlots) -> Self {
        // Acquire pairs with the consumer's Release in `ConsumerCore::release`.
        let tail = slots.tail().load(Ordering::Acquire);
        let mut head = tail;
        // At most `capacity` messages can be waiting; a hostile writer cannot make
        // this loop longer.
        while head.wrapping_sub(tail) < geo.capacity {
            let s = slots.stamp(geo.slot(head)).load(Ordering::Relaxed);
            if s as u32 != tag(head) {
                break;
            }
            head = head.wrapping_add(1);
        }
        Self {
            geo,
            head,
            cached_tail: tail,
        }
    }

    /// The number the next published message will have.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The slot for the next message if the ring has room: the producer alone may
    /// write its payload until [`ProducerCore::publish`].
    #[inline]
    pub(crate) fn try_reserve(&mut self, slots: &impl SpscSlots) -> Result<Option<usize>, Corrupt> {
        if self.head.wrapping_sub(self.cached_tail) >= self.geo.capacity {
            // Acquire pairs with the consumer's Release in `release`: its reads of
            // the slot we are about to overwrite happened before.
            let tail = slots.tail().load(Ordering::Acquire);
            let used = self.head.wrapping_sub(tail);
            if used > self.geo.capacity {
                return Err(Corrupt {
                    what: "consumer position (ahead of the producer or a lap behind)",
                    value: tail,
                });
            }
            self.cached_tail = tail;
            if used == self.geo.capacity {
                return Ok(None);
            }
        }
        Ok(Some(self.geo.slot(self.head)))
    }

    /// Publishes the reserved slot as a message of `len` bytes (`len <= max_len`).
    #[inline]
    pub(crate) fn publish(&mut self, slots: &impl SpscSlots, len: u32) {
        debug_assert!(len <= self.geo.max_len);
        let slot = self.geo.slot(self.head);
        // Release pairs with the consumer's Acquire in `peek`: the payload written
        // before is visible to a consumer that sees this stamp.
        slots
            .stamp(slot)
            .store(stamp(self.head, len), Ordering::Release);
        self.head = self.head.wrapping_add(1);
    }
}

/// The consumer's private state: the next message number.
#[derive(Debug)]
pub(crate) struct ConsumerCore {
    geo: Geometry,
    tail: u64,
    /// The `tail` last stored in shared memory.
    published: u64,
    /// Store `tail` every this many releases (and whenever the ring is found
    /// empty, see `flush`), so that its cache line does not travel per message.
    batch: u64,
}

impl ConsumerCore {
    /// Starts (or restarts) after the last message the last consumer finished with.
    pub(crate) fn attach(geo: Geometry, slots: &impl SpscSlots, batch: u64) -> Self {
        // Relaxed: only this consumer writes `tail`; the stamps carry the data.
        let tail = slots.tail().load(Ordering::Relaxed);
        let start = slots
            .resume()
            .map_or(tail, |r| Self::resume_point(geo, slots, tail, r));
        Self {
            geo,
            tail: start,
            // The slots up to `start` go back to the producer at the first flush.
            published: tail,
            batch: batch.clamp(1, geo.capacity),
        }
    }

    /// Where a new consumer starts: the last one's `resume` if every message from
    /// `tail` up to it is published, else `tail` (module doc).
    #[cold]
    fn resume_point(geo: Geometry, slots: &impl SpscSlots, tail: u64, resume: &AtomicU64) -> u64 {
        // Acquire pairs with the Release store in `release`.
        let to = resume.load(Ordering::Acquire);
        let ahead = to.wrapping_sub(tail);
        if ahead == 0 || ahead > geo.capacity {
            return tail;
        }
        let mut seq = tail;
        while seq != to {
            // Relaxed: only the tag is compared; nothing of the payload is read.
            if slots.stamp(geo.slot(seq)).load(Ordering::Relaxed) as u32 != tag(seq) {
                return tail;
            }
            seq = seq.wrapping_add(1);
        }
        to
    }

    /// The next message's slot and length if it has been published.
    #[inline]
    pub(crate) fn peek(&self, slots: &impl SpscSlots) -> Result<Option<(usize, u32)>, Corrupt> {
        let slot = self.geo.slot(self.tail);
        // Acquire pairs with the producer's Release in `publish`.
        let s = slots.stamp(slot).load(Ordering::Acquire);
        if s as u32 != tag(self.tail) {
            return self.check_empty(slots);
        }
        let len = (s >> 32) as u32;
        if len > self.geo.max_len {
            return Err(Corrupt {
                what: "message length (larger than a slot)",
                value: u64::from(len),
            });
        }
        Ok(Some((slot, len)))
    }

    /// The slow path of `peek` when our slot's stamp does not name our message: a
    /// later message published (the producer publishes in order, Release) while
    /// ours is not is a corrupt stamp, reported rather than waited on for ever.
    #[cold]
    fn check_empty(&self, slots: &impl SpscSlots) -> Result<Option<(usize, u32)>, Corrupt> {
        let next = self.tail.wrapping_add(1);
        // Acquire pairs with the producer's Release in `publish` of message `next`,
        // which comes after its publication of ours.
        let later = slots.stamp(self.geo.slot(next)).load(Ordering::Acquire);
        if later as u32 != tag(next) {
            return Ok(None);
        }
        let s = slots
            .stamp(self.geo.slot(self.tail))
            .load(Ordering::Acquire);
        if s as u32 == tag(self.tail) {
            // Published in between: the caller peeks again.
            return Ok(None);
        }
        Err(Corrupt {
            what: "spsc slot stamp (a later message is published, this one is not)",
            value: s,
        })
    }

    /// Hands the peeked slot back to the producer; the caller has finished every
    /// read of its payload.
    /// Returns whether `tail` was stored (then the producer may be rung).
    #[inline]
    pub(crate) fn release(&mut self, slots: &impl SpscSlots) -> bool {
        self.tail = self.tail.wrapping_add(1);
        if let Some(resume) = slots.resume() {
            // Release pairs with the Acquire load in `resume_point` (a successor's).
            resume.store(self.tail, Ordering::Release);
        }
        if self.tail.wrapping_sub(self.published) >= self.batch {
            self.flush(slots)
        } else {
            false
        }
    }

    /// Stores `tail` if releases are pending; call when the ring is found empty
    /// (the producer may be waiting for those slots) and when leaving. Returns
    /// whether it stored.
    #[inline]
    pub(crate) fn flush(&mut self, slots: &impl SpscSlots) -> bool {
        if self.published == self.tail {
            return false;
        }
        self.published = self.tail;
        // Release pairs with the producer's Acquire in `try_reserve`/`attach`.
        slots.tail().store(self.tail, Ordering::Release);
        true
    }

    /// The number of the next message to read.
    pub(crate) fn position(&self) -> u64 {
        self.tail
    }

    /// The slot of the next message to read.
    pub(crate) fn next_slot(&self) -> usize {
        self.geo.slot(self.tail)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A ring over one heap allocation, addressed by raw offsets like the segment.
    struct Heap {
        words: Box<[AtomicU64]>,
        capacity: usize,
        payload: Box<[std::cell::UnsafeCell<u64>]>,
    }
    // SAFETY: the payload cells are only touched by the side the ring protocol gives
    // them to (the tests below follow it); everything else is atomic.
    unsafe impl Sync for Heap {}

    impl Heap {
        fn new(capacity: usize) -> Self {
            Self {
                words: (0..=capacity).map(|_| AtomicU64::new(0)).collect(),
                capacity,
                payload: (0..capacity)
                    .map(|_| std::cell::UnsafeCell::new(0))
                    .collect(),
            }
        }
    }

    impl SpscSlots for Heap {
        fn stamp(&self, slot: usize) -> &AtomicU64 {
            &self.words[slot]
        }
        fn tail(&self) -> &AtomicU64 {
            &self.words[self.capacity]
        }
    }

    fn geo(capacity: u64) -> Geometry {
        Geometry {
            capacity,
            max_len: 8,
        }
    }

    #[test]
    fn fills_drains_and_reports_full() {
        let h = Heap::new(4);
        let mut p = ProducerCore::attach(geo(4), &h);
        let mut c = ConsumerCore::attach(geo(4), &h, 1);
        assert_eq!(c.peek(&h), Ok(None));
        for i in 0..4 {
            assert_eq!(p.try_reserve(&h), Ok(Some(i)));
            p.publish(&h, 8);
        }
        assert_eq!(p.try_reserve(&h), Ok(None));
        assert_eq!(c.peek(&h), Ok(Some((0, 8))));
        c.release(&h);
        assert_eq!(p.try_reserve(&h), Ok(Some(0)));
        // A restarted producer finds the three waiting messages.
        let p2 = ProducerCore::attach(geo(4), &h);
        assert_eq!(p2.head(), 4);
    }

    /// A heap ring with the successor's `resume` word.
    struct WithResume(Heap, AtomicU64);

    impl SpscSlots for WithResume {
        fn stamp(&self, slot: usize) -> &AtomicU64 {
            self.0.stamp(slot)
        }
        fn tail(&self) -> &AtomicU64 {
            self.0.tail()
        }
        fn resume(&self) -> Option<&AtomicU64> {
            Some(&self.1)
        }
    }

    #[test]
    fn a_successor_starts_after_what_was_finished_unless_resume_is_unproven() {
        let h = WithResume(Heap::new(8), AtomicU64::new(0));
        let mut p = ProducerCore::attach(geo(8), &h);
        for _ in 0..5 {
            p.try_reserve(&h).unwrap().unwrap();
            p.publish(&h, 1);
        }
        // A consumer finishes with 3 in batches of 4, then "dies" (no flush).
        let mut c = ConsumerCore::attach(geo(8), &h, 4);
        for _ in 0..3 {
            c.peek(&h).unwrap().unwrap();
            assert!(!c.release(&h));
        }
        assert_eq!(h.tail().load(Ordering::Relaxed), 0);
        let mut next = ConsumerCore::attach(geo(8), &h, 4);
        assert_eq!(next.position(), 3);
        // Its first release hands the 3 slots back too.
        next.peek(&h).unwrap().unwrap();
        assert!(next.release(&h));
        assert_eq!(h.tail().load(Ordering::Relaxed), 4);
        // A `resume` past what is published, behind `tail` or a lap ahead is not
        // trusted: the successor starts at `tail` (delivers again, skips nothing).
        for bad in [6, 3, 0, 4 + 8, u64::MAX] {
            h.1.store(bad, Ordering::Relaxed);
            assert_eq!(ConsumerCore::attach(geo(8), &h, 4).position(), 4, "{bad}");
        }
        h.1.store(5, Ordering::Relaxed);
        assert_eq!(ConsumerCore::attach(geo(8), &h, 4).position(), 5);
    }

    #[test]
    fn refuses_corrupt_tail_and_length() {
        let h = Heap::new(2);
        let mut p = ProducerCore::attach(geo(2), &h);
        p.try_reserve(&h).unwrap();
        p.publish(&h, 1);
        p.try_reserve(&h).unwrap();
        p.publish(&h, 1);
        h.tail().store(99, Ordering::Relaxed);
        assert!(p.try_reserve(&h).is_err());
        h.tail().store(0, Ordering::Relaxed);
        let c = ConsumerCore::attach(geo(2), &h, 1);
        h.stamp(0).store(stamp(0, 9), Ordering::Relaxed);
        assert!(c.peek(&h).is_err());
    }

    /// Two threads over a heap ring: every message arrives once, in order, whole.
    /// Runs under miri (`cargo +nightly miri test -p shmipc --lib channel::spsc_ring`).
    #[test]
    fn threads_pass_messages_in_order() {
        let n: u64 = if cfg!(miri) { 200 } else { 100_000 };
        let h = Arc::new(Heap::new(4));
        let h2 = Arc::clone(&h);
        let t = std::thread::spawn(move || {
            let mut p = ProducerCore::attach(geo(4), &*h2);
            for i in 0..n {
                let slot = loop {
                    if let Some(s) = p.try_reserve(&*h2).unwrap() {
                        break s;
                    }
                    std::thread::yield_now();
                };
                // SAFETY: the ring gives this slot to the producer until `publish`.
                unsafe { *h2.payload[slot].get() = i * 3 };
                p.publish(&*h2, 8);
            }
        });
        let mut c = ConsumerCore::attach(geo(4), &*h, 2);
        for i in 0..n {
            let (slot, len) = loop {
                if let Some(x) = c.peek(&*h).unwrap() {
                    break x;
                }
                c.flush(&*h);
                std::thread::yield_now();
            };
            assert_eq!(len, 8);
            // SAFETY: the ring gives this published slot to the consumer until `release`.
            assert_eq!(unsafe { *h.payload[slot].get() }, i * 3);
            c.release(&*h);
        }
        t.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    struct LoomRing {
        stamps: Vec<AtomicU64>,
        tail: AtomicU64,
        payload: Vec<UnsafeCell<u64>>,
    }

    impl SpscSlots for LoomRing {
        fn stamp(&self, slot: usize) -> &AtomicU64 {
            &self.stamps[slot]
        }
        fn tail(&self) -> &AtomicU64 {
            &self.tail
        }
    }

    /// loom explores every interleaving (and weak-memory outcome) of a producer
    /// pushing three messages through a two-slot ring: they arrive in order and the
    /// payload accesses never race (loom's `UnsafeCell` checks that).
    #[test]
    fn spsc_ring_is_race_free() {
        loom::model(|| {
            let geo = Geometry {
                capacity: 2,
                max_len: 8,
            };
            let ring = Arc::new(LoomRing {
                stamps: (0..2).map(|_| AtomicU64::new(0)).collect(),
                tail: AtomicU64::new(0),
                payload: (0..2).map(|_| UnsafeCell::new(0)).collect(),
            });
            let r2 = Arc::clone(&ring);
            let t = loom::thread::spawn(move || {
                let mut p = ProducerCore::attach(geo, &*r2);
                for i in 0..3u64 {
                    let slot = loop {
                        if let Some(s) = p.try_reserve(&*r2).unwrap() {
                            break s;
                        }
                        loom::thread::yield_now();
                    };
                    // SAFETY: the slot belongs to the producer until `publish`
                    // (loom reports a race if not).
                    r2.payload[slot].with_mut(|p| unsafe { *p = 10 + i });
                    p.publish(&*r2, 8);
                }
            });
            let mut c = ConsumerCore::attach(geo, &*ring, 2);
            for i in 0..3u64 {
                let (slot, _) = loop {
                    if let Some(x) = c.peek(&*ring).unwrap() {
                        break x;
                    }
                    c.flush(&*ring);
                    loom::thread::yield_now();
                };
                // SAFETY: the published slot belongs to the consumer until `release`.
                let v = ring.payload[slot].with(|p| unsafe { *p });
                assert_eq!(v, 10 + i);
                c.release(&*ring);
            }
            t.join().unwrap();
        });
    }
}
