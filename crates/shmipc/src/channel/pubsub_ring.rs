//! The publish/subscribe ring, as pure memory logic (no system calls) for loom and
//! miri.
//!
//! # Algorithm
//!
//! One writer, any number of readers, each with its own cursor: a ring of
//! `capacity` slots where message `n` lives in slot `n & (capacity - 1)`, guarded by
//! a per-slot *sequence lock* (Lamport 1977; Boehm, "Can seqlocks get along with
//! programming language memory models?", MSPC 2012, whose fence placement this
//! follows):
//!
//! * Writer of message `n`: `stamp = 2n+1` (odd: being written), **fence(Release)**,
//!   payload and length with Relaxed atomic stores, `stamp = 2n+2` with **Release**,
//!   then `head = n+1` with **Release**.
//! * Reader of message `m`: `s1 = stamp` with **Acquire** (pairs with the writer's
//!   Release of `2m+2`); if `s1 == 2m+2`, copy length and payload with Relaxed atomic
//!   loads, **fence(Acquire)** (pairs with the writer's fence(Release) after its odd
//!   mark), reload the stamp: unchanged means the copy is whole; changed means the
//!   writer came round and overwrote it during the copy, so it is dropped as lost.
//!   `s1 < 2m+2` means "not yet"; `s1 > 2m+2` means the slot already holds a later
//!   message: the reader lost message `m` and jumps to the oldest message that can
//!   still be in the ring (from `head`, loaded with **Acquire**), counting the loss.
//!
//! Every payload access is an atomic word access on both sides, so a reader that
//! races with the writer over an overwritten slot is never a data race; it only
//! copies bytes it then throws away. Whether the writer waits for slow readers
//! (block) or overwrites them is the endpoint's business (`pubsub.rs`); the
//! sequence lock makes both safe.

use super::shim::{fence, AtomicU64, Ordering};
use super::Corrupt;

/// Where the shared words of one ring are.
pub(crate) trait PubSubSlots {
    /// Slot `slot`'s stamp (`slot < capacity`).
    fn stamp(&self, slot: usize) -> &AtomicU64;
    /// Slot `slot`'s message length.
    fn len(&self, slot: usize) -> &AtomicU64;
    /// Payload word `i` of slot `slot` (`i < words`).
    fn word(&self, slot: usize, i: usize) -> &AtomicU64;
    /// Messages published so far.
    fn head(&self) -> &AtomicU64;
}

/// Ring dimensions, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Slots, a power of two in `2..=2^31`.
    pub(crate) capacity: u64,
    /// Largest payload in bytes; a slot has `ceil(max_len / 8)` words.
    pub(crate) max_len: u32,
}

impl Geometry {
    #[inline]
    pub(crate) fn slot(&self, seq: u64) -> usize {
        (seq & (self.capacity - 1)) as usize
    }
}

/// The publisher's private state.
#[derive(Debug)]
pub(crate) struct PublisherCore {
    geo: Geometry,
    head: u64,
}

impl PublisherCore {
    /// Starts, or restarts after a publisher died, at the first message not yet
    /// complete: `head`, or one past it if the dead publisher finished that message
    /// but not the `head` store.
    pub(crate) fn attach(geo: Geometry, slots: &impl PubSubSlots) -> Self {
        // Acquire pairs with the Release store of `head` in `write`.
        let mut head = slots.head().load(Ordering::Acquire);
        let s = slots.stamp(geo.slot(head)).load(Ordering::Acquire);
        if s == done(head) {
            head = head.wrapping_add(1);
        }
        Self { geo, head }
    }

    /// The number the next message will have.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Whether writing the next message would overwrite one that a reader at
    /// `cursor` has not read. Cursors outside the last ring's worth of messages
    /// (stale, or garbage from a hostile process) never block.
    pub(crate) fn blocks(&self, cursor: u64) -> bool {
        let behind = self.head.wrapping_sub(cursor);
        behind >= self.geo.capacity && behind <= 2 * self.geo.capacity
    }

    /// Writes and publishes the next message (`data.len() <= max_len`).
    pub(crate) fn write(&mut self, slots: &impl PubSubSlots, data: &[u8]) {
        debug_assert!(data.len() <= self.geo.max_len as usize);
        let n = self.head;
        let slot = self.geo.slot(n);
        let stamp = slots.stamp(slot);
        stamp.store(done(n).wrapping_sub(1), Ordering::Relaxed);
        // Release fence: the odd mark is ordered before the payload stores below;
        // pairs with the reader's fence(Acquire) before its second stamp load.
        fence(Ordering::Release);
        let mut chunks = data.chunks_exact(8);
        let mut i = 0;
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            slots
                .word(slot, i)
                .store(u64::from_le_bytes(w), Ordering::Relaxed);
            i += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            slots
                .word(slot, i)
                .store(u64::from_le_bytes(w), Ordering::Relaxed);
        }
        slots.len(slot).store(data.len() as u64, Ordering::Relaxed);
        // Release pairs with the reader's Acquire load of the stamp.
        stamp.store(done(n), Ordering::Release);
        // Release pairs with the Acquire loads of `head` (late joiners, lost jumps).
        slots.head().store(n.wrapping_add(1), Ordering::Release);
        self.head = n.wrapping_add(1);
    }
}

/// The stamp of a slot that holds message `n` complete.
#[inline]
pub(crate) fn done(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(2)
}

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// No new message.
    Empty,
    /// A message was copied into the buffer; `lost` messages before it (since the
    /// last message returned) were overwritten before this reader got to them.
    Got {
        /// Messages skipped just before this one.
        lost: u64,
    },
}

/// One reader's private state.
#[derive(Debug)]
pub(crate) struct SubscriberCore {
    geo: Geometry,
    cursor: u64,
    /// Messages skipped and not yet reported with a message.
    lost: u64,
}

impl SubscriberCore {
    /// Starts at the newest message still to come, or up to `history` (at most
    /// `capacity - 1`) messages back.
    pub(crate) fn attach(geo: Geometry, slots: &impl PubSubSlots, history: u64) -> Self {
        // Acquire pairs with the Release store of `head` in `write`.
        let head = slots.head().load(Ordering::Acquire);
        let back = history.min(geo.capacity - 1).min(head);
        Self {
            geo,
            cursor: head - back,
            lost: 0,
        }
    }

    /// The number of the next message this reader wants.
    pub(crate) fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Whether the next message is there, or was overwritten (a read would then
    /// report it lost and move on): consumes nothing.
    pub(crate) fn has_next(&self, slots: &impl PubSubSlots) -> bool {
        let m = self.cursor;
        // Acquire pairs with the writer's Release store of `done(m)`.
        let s = slots.stamp(self.geo.slot(m)).load(Ordering::Acquire);
        s.wrapping_sub(done(m)) as i64 >= 0
    }

    /// Copies the next message into `buf` (replacing its contents).
    pub(crate) fn read(
        &mut self,
        slots: &impl PubSubSlots,
        buf: &mut Vec<u8>,
    ) -> Result<Read, Corrupt> {
        // Each turn either returns or jumps forward past lost messages; a writer
        // lapping this reader without pause could keep it here, so bound it.
        for _ in 0..16 {
            let m = self.cursor;
            let slot = self.geo.slot(m);
            let stamp = slots.stamp(slot);
            // Acquire pairs with the writer's Release store of `done(m)`.
            let s1 = stamp.load(Ordering::Acquire);
            let ahead = s1.wrapping_sub(done(m)) as i64;
            if ahead < 0 {
                // Not written yet (an older lap's stamp, or being written).
                return Ok(Read::Empty);
            }
            if ahead == 0 {
                let len = slots.len(slot).load(Ordering::Relaxed);
                let fits = len <= u64::from(self.geo.max_len);
                if fits {
                    buf.clear();
                    let len = len as usize;
                    let mut i = 0;
                    while buf.len() < len {
                        let w = slots.word(slot, i).load(Ordering::Relaxed).to_le_bytes();
                        let take = (len - buf.len()).min(8);
                        buf.extend_from_slice(&w[..take]);
                        i += 1;
                    }
                }
                // Acquire fence: pairs with the writer's Release fence after its odd
                // mark, so a writer that started overwriting during the copy shows
                // in the second load.
                fence(Ordering::Acquire);
                if stamp.load(Ordering::Relaxed) == s1 {
                    if !fits {
                        return Err(Corrupt {
                            what: "message length (larger than a slot)",
                            value: len,
                        });
                    }
                    self.cursor = m.wrapping_add(1);
                    let lost = std::mem::take(&mut self.lost);
                    return Ok(Read::Got { lost });
                }
            }
            // Overwritten before or while we read it: jump to the oldest message
            // that can still be whole. Messages below `head - (capacity - 1)` have
            // had their slot reused by a complete message, so they are surely lost.
            // `head` may be older than the stamp we saw (the writer's odd mark is
            // Relaxed, so it carries no synchronization; miri found this): then we
            // only skip message `m`, which we saw overwritten, and look again.
            // Acquire pairs with the writer's Release store of `head`.
            let head = slots.head().load(Ordering::Acquire);
            let oldest = head.wrapping_sub(self.geo.capacity - 1);
            let next = if oldest.wrapping_sub(m) as i64 > 0 {
                oldest
            } else {
                m.wrapping_add(1)
            };
            self.lost = self.lost.wrapping_add(next.wrapping_sub(m));
            self.cursor = next;
        }
        Ok(Read::Empty)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Heap {
        capacity: usize,
        words: usize,
        /// head, then per slot: stamp, len, payload words.
        mem: Box<[AtomicU64]>,
    }

    impl Heap {
        fn new(capacity: usize, words: usize) -> Self {
            Self {
                capacity,
                words,
                mem: (0..1 + capacity * (2 + words))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            }
        }
        fn base(&self, slot: usize) -> usize {
            assert!(slot < self.capacity);
            1 + slot * (2 + self.words)
        }
    }

    impl PubSubSlots for Heap {
        fn stamp(&self, slot: usize) -> &AtomicU64 {
            &self.mem[self.base(slot)]
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.mem[self.base(slot) + 1]
        }
        fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
            assert!(i < self.words);
            &self.mem[self.base(slot) + 2 + i]
        }
        fn head(&self) -> &AtomicU64 {
            &self.mem[0]
        }
    }

    fn geo(capacity: u64) -> Geometry {
        Geometry {
            capacity,
            max_len: 16,
        }
    }

    fn msg(n: u64) -> Vec<u8> {
        let mut v = n.to_le_bytes().to_vec();
        v.extend_from_slice(&(!n).to_le_bytes()[..(n % 9) as usize]);
        v
    }

    #[test]
    fn reads_in_order_and_counts_overwritten() {
        let h = Heap::new(4, 2);
        let mut p = PublisherCore::attach(geo(4), &h);
        let mut s = SubscriberCore::attach(geo(4), &h, 0);
        let mut buf = Vec::new();
        assert_eq!(s.read(&h, &mut buf), Ok(Read::Empty));
        for n in 0..3 {
            p.write(&h, &msg(n));
        }
        for n in 0..3 {
            assert_eq!(s.read(&h, &mut buf), Ok(Read::Got { lost: 0 }));
            assert_eq!(buf, msg(n));
        }
        // Lapped: 10 written while it slept; it gets the newest capacity-1.
        for n in 3..13 {
            p.write(&h, &msg(n));
        }
        assert_eq!(s.read(&h, &mut buf), Ok(Read::Got { lost: 7 }));
        assert_eq!(buf, msg(10));
        // A late joiner with history 2 gets the two newest.
        let mut late = SubscriberCore::attach(geo(4), &h, 2);
        late.read(&h, &mut buf).unwrap();
        assert_eq!(buf, msg(11));
        // A restarted publisher continues the numbering.
        assert_eq!(PublisherCore::attach(geo(4), &h).head(), 13);
    }

    #[test]
    fn corrupt_length_is_an_error() {
        let h = Heap::new(2, 2);
        let mut p = PublisherCore::attach(geo(2), &h);
        let mut s = SubscriberCore::attach(geo(2), &h, 0);
        p.write(&h, b"x");
        h.len(0).store(1000, Ordering::Relaxed);
        assert!(s.read(&h, &mut Vec::new()).is_err());
    }

    /// A writer lapping a reader over a tiny ring: whatever the reader returns is
    /// whole and in order, and returned + lost accounts for every message.
    /// Runs under miri.
    #[test]
    fn threads_never_see_torn_messages() {
        let total: u64 = if cfg!(miri) { 300 } else { 200_000 };
        let h = Arc::new(Heap::new(2, 2));
        let h2 = Arc::clone(&h);
        let mut s = SubscriberCore::attach(geo(2), &*h, 0);
        let t = std::thread::spawn(move || {
            let mut p = PublisherCore::attach(geo(2), &*h2);
            for n in 0..total {
                p.write(&*h2, &msg(n));
            }
        });
        let mut buf = Vec::new();
        let mut accounted = 0u64;
        let mut last: Option<u64> = None;
        while accounted < total {
            match s.read(&*h, &mut buf).unwrap() {
                Read::Empty => std::thread::yield_now(),
                Read::Got { lost } => {
                    let n = u64::from_le_bytes(buf[..8].try_into().unwrap());
                    assert_eq!(buf, msg(n), "torn message");
                    assert!(last.is_none_or(|l| n > l), "out of order");
                    assert_eq!(n, accounted + lost, "lost count wrong");
                    accounted = n + 1;
                    last = Some(n);
                }
            }
        }
        t.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct LoomRing {
        head: AtomicU64,
        /// per slot: stamp, len, one payload word
        mem: Vec<AtomicU64>,
    }

    impl PubSubSlots for LoomRing {
        fn stamp(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 3]
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 3 + 1]
        }
        fn word(&self, slot: usize, _i: usize) -> &AtomicU64 {
            &self.mem[slot * 3 + 2]
        }
        fn head(&self) -> &AtomicU64 {
            &self.head
        }
    }

    /// Every interleaving of a writer putting three messages through a two-slot
    /// ring and a reader polling it: a message returned is never torn (its payload
    /// matches its number and length), numbers only grow, and lost counts add up.
    #[test]
    fn pubsub_ring_never_returns_torn_data() {
        loom::model(|| {
            let geo = Geometry {
                capacity: 2,
                max_len: 8,
            };
            let ring = Arc::new(LoomRing {
                head: AtomicU64::new(0),
                mem: (0..6).map(|_| AtomicU64::new(0)).collect(),
            });
            let mut s = SubscriberCore::attach(geo, &*ring, 0);
            let r2 = Arc::clone(&ring);
            let t = loom::thread::spawn(move || {
                let mut p = PublisherCore::attach(geo, &*r2);
                for n in 0..3u64 {
                    // Length and payload both derive from n: a mix is detectable.
                    let data = (100 + n).to_le_bytes();
                    p.write(&*r2, &data[..(n as usize + 1)]);
                }
            });
            let mut buf = Vec::new();
            let mut next = 0u64;
            for _ in 0..3 {
                if let Read::Got { lost } = s.read(&*ring, &mut buf).unwrap() {
                    let n = next + lost;
                    let data = (100 + n).to_le_bytes();
                    assert_eq!(buf, &data[..(n as usize + 1)]);
                    next = n + 1;
                }
            }
            t.join().unwrap();
        });
    }
}
