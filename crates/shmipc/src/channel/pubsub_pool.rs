//! The publish/subscribe sample pool, as pure memory logic (no system calls) for
//! loom and miri.
//!
//! # Shape
//!
//! * A **pool** of `chunks` fixed-size chunks. Chunk `k` has two words, `seq` (which
//!   message it holds, see below) and `len`, and `chunk_size` payload bytes.
//! * A **ring of entries**: message `n` is published by storing its chunk index
//!   and a tag of `n` in entry `n % capacity`, then `head = n + 1`. A subscriber
//!   finds the next message by its entry's tag alone (one cache line from the
//!   publisher); `head` is read only when there is nothing new, to validate it.
//! * Per subscriber record: a `cursor` (the next message it will take; moved by the
//!   subscriber, and forward past messages it has not started, by an overwriting
//!   publisher) and `max_held` **hold slots**, each 0 or `n + 1` for a message `n`
//!   whose chunk the subscriber reads in place.
//!
//! The publisher alone hands out chunks: it keeps the free list, the messages in the
//! ring (`inflight`) and the messages out of the ring that may still be held
//! (`retired`) in private memory, so nothing a peer writes can make it hand out a
//! chunk twice. A restarted publisher rebuilds these lists from the shared words
//! ([`PublisherCore::attach`]), validating each.
//!
//! # Why a chunk is never written while a reader holds it
//!
//! The publisher writes a chunk only between taking it off its free list and
//! publishing it. A chunk goes on the free list only in [`PublisherCore::reclaim`],
//! for a message `m` that is *retired* (every registered subscriber's cursor is past
//! `m`, and it is older than the kept history) and that no hold slot names. Taking a
//! message and freeing it race on two words, in the Dekker pattern:
//!
//! * subscriber: `hold = m + 1`; cursor CAS `m -> m + 1` (so it *started reading*
//!   `m`); **fence(SeqCst)**; load `seq` of the chunk: `seq == m` means the hold is
//!   good; anything else means the chunk was freed (the message is lost to this
//!   reader) or is being freed (`m | FREEING`: wait for the publisher's verdict).
//! * publisher: `seq = m | FREEING`; **fence(SeqCst)**; load every hold slot of
//!   every subscriber place that is taken; a hold on `m` found: `seq = m` again (kept);
//!   none: `seq = FREE`, onto the free list.
//!
//! The two fences are in one total order, so either the publisher's loads see the
//! hold (the chunk stays), or the subscriber's load sees `FREEING`/`FREE` (it does
//! not read the chunk). A hold is dropped (`hold = 0`, Release) when the sample is
//! released; the next reclaim then frees the chunk. A place whose holder is dead is
//! skipped by the hold scan (its holds release with it); a place is cleared by the
//! process that claims it next before that process holds anything.
//!
//! In overwrite mode the publisher makes room by moving a lagging subscriber's
//! cursor forward with a CAS; a subscriber takes a message with a CAS on the same
//! word, so a message is either taken (and then held, never reclaimed from under
//! the reader) or skipped (and counted as lost by the subscriber, which sees its
//! cursor jump).
//!
//! # What sizes the pool
//!
//! At most `capacity` messages are in the ring, at most `max_subscribers * max_held`
//! retired ones are held, and the publisher loans one chunk at a time; the pool has
//! one chunk more than these, so a loan never waits for a chunk once reclaim has run
//! (only for ring room, in block mode).

use std::cell::Cell;
use std::collections::VecDeque;

use super::shim::{fence, spin_yield, AtomicU64, Ordering};
use super::Corrupt;

/// `seq` of a chunk on the free list or loaned.
pub(crate) const FREE: u64 = u64::MAX;
/// Bit set in `seq` while the publisher decides whether the chunk may be freed.
pub(crate) const FREEING: u64 = 1 << 63;
/// No correct channel numbers a message this high (at a billion messages a second
/// it takes 146 years); a larger `head` is corrupt.
pub(crate) const MAX_SEQ: u64 = 1 << 62;

/// Where the shared words are.
pub(crate) trait PoolMem {
    /// Messages published so far.
    fn head(&self) -> &AtomicU64;
    /// Entry `i < capacity`: the chunk of the message numbered `i` modulo capacity.
    fn entry(&self, i: usize) -> &AtomicU64;
    /// Chunk `k`'s message number (or [`FREE`], or `n | FREEING`).
    fn seq(&self, k: usize) -> &AtomicU64;
    /// Chunk `k`'s payload length.
    fn len(&self, k: usize) -> &AtomicU64;
    /// Subscriber place `s`'s token (0: free).
    fn token(&self, s: usize) -> &AtomicU64;
    /// Subscriber place `s`'s cursor.
    fn cursor(&self, s: usize) -> &AtomicU64;
    /// Subscriber place `s`'s hold slot `j`.
    fn hold(&self, s: usize, j: usize) -> &AtomicU64;
}

/// Pool and ring dimensions, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Ring entries, a power of two in `2..=2^31`.
    pub(crate) capacity: u64,
    /// Chunks in the pool.
    pub(crate) chunks: u32,
    /// Largest payload of a chunk, in bytes.
    pub(crate) chunk_size: u32,
    /// Subscriber places.
    pub(crate) max_subscribers: u32,
    /// Hold slots per subscriber (1 to 64).
    pub(crate) max_held: u32,
    /// Messages the publisher keeps for late joiners (at most `capacity - 1`).
    pub(crate) keep: u64,
}

impl Geometry {
    /// The pool size that never runs dry (module doc), or None on overflow.
    pub(crate) fn chunks_for(capacity: u64, max_subscribers: u64, max_held: u64) -> Option<u32> {
        let n = max_subscribers
            .checked_mul(max_held)?
            .checked_add(capacity)?
            .checked_add(1)?;
        u32::try_from(n).ok()
    }

    #[inline]
    fn entry_of(&self, seq: u64) -> usize {
        (seq & (self.capacity - 1)) as usize
    }
}

/// The publisher's private state.
#[derive(Debug)]
pub(crate) struct PublisherCore {
    geo: Geometry,
    head: u64,
    free: Vec<u32>,
    /// Messages in the ring, oldest first: (number, chunk).
    inflight: VecDeque<(u64, u32)>,
    /// Messages out of the ring whose chunks a subscriber may hold.
    retired: Vec<(u64, u32)>,
    /// Scratch for `reclaim`'s hold scan, kept so that a reclaim never allocates.
    held: Vec<u64>,
}

impl PublisherCore {
    /// Starts, or restarts after a publisher died, from the shared words: the
    /// messages still in the ring stay there, chunks marked free (including those a
    /// dead publisher had loaned) are free, every other chunk is freed by the next
    /// [`PublisherCore::reclaim`] unless a subscriber holds it.
    ///
    /// # Errors
    /// `head` is beyond any count a channel reaches.
    pub(crate) fn attach(geo: Geometry, mem: &impl PoolMem) -> Result<Self, Corrupt> {
        // Acquire pairs with the Release store of `head` in `publish`.
        let head = mem.head().load(Ordering::Acquire);
        if head >= MAX_SEQ {
            return Err(Corrupt {
                what: "pubsub head (messages published)",
                value: head,
            });
        }
        let chunks = geo.chunks as usize;
        let mut claimed = vec![false; chunks];
        let mut inflight = VecDeque::new();
        // A publisher that died between storing message `head`'s entry and `head`
        // published it (a subscriber may have taken it by its entry): count it.
        let mut head = head;
        let e = mem.entry(geo.entry_of(head)).load(Ordering::Acquire);
        let k = e & 0xffff_ffff;
        if e >> 32 == tag(head)
            && k < u64::from(geo.chunks)
            && mem.seq(k as usize).load(Ordering::Acquire) == head
        {
            head += 1;
            mem.head().store(head, Ordering::Release);
        }
        for n in head.saturating_sub(geo.capacity)..head {
            let e = mem.entry(geo.entry_of(n)).load(Ordering::Acquire);
            let k = e & 0xffff_ffff;
            if let Some(ku) = usize::try_from(k)
                .ok()
                .filter(|&k| k < chunks && e >> 32 == tag(n))
            {
                if !claimed[ku] && mem.seq(ku).load(Ordering::Acquire) == n {
                    claimed[ku] = true;
                    inflight.push_back((n, ku as u32));
                }
            }
        }
        let mut free = Vec::new();
        let mut retired = Vec::new();
        for k in (0..chunks).rev() {
            if claimed[k] {
                continue;
            }
            let s = mem.seq(k).load(Ordering::Acquire);
            if s == FREE {
                free.push(k as u32);
            } else {
                retired.push((s & !FREEING, k as u32));
            }
        }
        Ok(Self {
            geo,
            head,
            free,
            inflight,
            retired,
            held: Vec::new(),
        })
    }

    /// The number the next message will have.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Takes a chunk off the free list.
    pub(crate) fn take(&mut self) -> Option<u32> {
        self.free.pop()
    }

    /// Gives back a loaned chunk that was not published.
    pub(crate) fn put_back(&mut self, k: u32) {
        self.free.push(k);
    }

    /// Whether a cursor `c` of a registered subscriber stands in the way of
    /// publishing the next message (it has not started the message whose entry the
    /// next one reuses). Cursors outside the possible range (garbage) never do.
    pub(crate) fn blocks(&self, c: u64) -> bool {
        let behind = self.head.wrapping_sub(c);
        behind >= self.geo.capacity && behind <= 2 * self.geo.capacity
    }

    /// The cursor an overwriting publisher moves a blocking cursor to: the oldest
    /// message the ring keeps after the next one is published.
    pub(crate) fn oldest_after_next(&self) -> u64 {
        (self.head + 1).saturating_sub(self.geo.capacity)
    }

    /// Publishes loaned chunk `k` holding `len` bytes as the next message. The
    /// caller made room: no registered subscriber's cursor [`blocks`](Self::blocks).
    pub(crate) fn publish(&mut self, mem: &impl PoolMem, k: u32, len: u64) {
        let n = self.head;
        let ku = k as usize;
        mem.len(ku).store(len, Ordering::Relaxed);
        // Release: the payload and length are written before a subscriber that
        // loads this number (Acquire, in `take`) reads them.
        mem.seq(ku).store(n, Ordering::Release);
        mem.entry(self.geo.entry_of(n))
            .store(u64::from(k) | (tag(n) << 32), Ordering::Release);
        // Release pairs with the subscribers' Acquire load of `head`.
        mem.head().store(n + 1, Ordering::Release);
        self.head = n + 1;
        self.inflight.push_back((n, k));
    }

    /// Retires the messages that no registered subscriber can take any more and
    /// frees the chunks of retired messages nobody holds (module doc). `respect`
    /// says whether a taken place's token is of a live holder (a place of a dead
    /// holder is ignored: its holds and cursor release with it). Returns the
    /// chunks now free.
    pub(crate) fn reclaim(&mut self, mem: &impl PoolMem, respect: impl Fn(u64) -> bool) -> usize {
        let geo = self.geo;
        let mut bound = self.head.saturating_sub(geo.keep);
        for s in 0..geo.max_subscribers as usize {
            let tok = mem.token(s).load(Ordering::Acquire);
            if tok == 0 || !respect(tok) {
                continue;
            }
            // Acquire pairs with the subscriber's cursor CAS (AcqRel), so its hold
            // store before the CAS is visible to the hold scan below.
            let c = mem.cursor(s).load(Ordering::Acquire);
            // Only cursors in the window a live subscriber can be in (at most two
            // rings behind, as in `blocks`) hold messages back: a corrupt cursor
            // far behind must not stop every chunk from coming back. Ignoring it is
            // safe: the `seq` re-check after the fence in `take` still protects a
            // reader whose cursor is not counted here.
            if c <= self.head && self.head - c <= 2 * geo.capacity {
                bound = bound.min(c);
            }
        }
        while let Some(&(n, k)) = self.inflight.front() {
            if n >= bound {
                break;
            }
            self.inflight.pop_front();
            self.retired.push((n, k));
        }
        if self.retired.is_empty() {
            return self.free.len();
        }
        for &(m, k) in &self.retired {
            mem.seq(k as usize).store(m | FREEING, Ordering::Relaxed);
        }
        // SeqCst fence: the Dekker partner of the subscriber's fence in `take`
        // (module doc): our FREEING marks or their holds are seen by the other side.
        fence(Ordering::SeqCst);
        let mut held = std::mem::take(&mut self.held);
        held.clear();
        for s in 0..geo.max_subscribers as usize {
            let tok = mem.token(s).load(Ordering::Acquire);
            if tok == 0 || !respect(tok) {
                continue;
            }
            for j in 0..geo.max_held as usize {
                let h = mem.hold(s, j).load(Ordering::Acquire);
                if h != 0 {
                    held.push(h - 1);
                }
            }
        }
        held.sort_unstable();
        let free = &mut self.free;
        self.retired.retain(|&(m, k)| {
            let seq = mem.seq(k as usize);
            if held.binary_search(&m).is_ok() {
                // Release: the subscriber waiting in `take` sees its chunk kept.
                seq.store(m, Ordering::Release);
                true
            } else {
                seq.store(FREE, Ordering::Relaxed);
                free.push(k);
                false
            }
        });
        self.held = held;
        self.free.len()
    }
}

/// What a take found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Nothing new.
    Empty,
    /// Every hold slot is in use: release a sample first.
    Full,
    /// Message `seq` in chunk `chunk`, `len` bytes, held in hold slot `slot`;
    /// `lost` messages before it (since the last one taken) were skipped.
    Got {
        seq: u64,
        chunk: u32,
        len: u64,
        slot: u32,
        lost: u64,
    },
}

/// One subscriber's private state (cells, so that samples held at once can each
/// release their hold through a shared reference).
#[derive(Debug)]
pub(crate) struct SubscriberCore {
    geo: Geometry,
    place: usize,
    /// The next message this subscriber expects (its cursor as it last saw it).
    next: Cell<u64>,
    /// Messages skipped and not reported yet.
    lost: Cell<u64>,
    /// Hold slots in use (bit `j`).
    used: Cell<u64>,
}

impl SubscriberCore {
    /// Joins at place `place` (already claimed, its holds cleared), starting at the
    /// newest message to come or up to `history` messages back (at most what the
    /// publisher keeps). Publishes the cursor before returning.
    pub(crate) fn attach(
        geo: Geometry,
        mem: &impl PoolMem,
        place: usize,
        history: u64,
    ) -> Result<Self, Corrupt> {
        // The place is ours, but until our cursor is stored the publisher sees the
        // previous holder's (which it ignores when far behind) and may publish
        // on: store, and start again if it got more than half a ring ahead. After
        // that the publisher sees our cursor at its next scan of the cursors,
        // which comes within half a ring (`Publisher::make_room`).
        let mut start = 0;
        for _ in 0..1000 {
            // Acquire pairs with the Release store of `head` in `publish`.
            let head = mem.head().load(Ordering::Acquire);
            if head >= MAX_SEQ {
                return Err(Corrupt {
                    what: "pubsub head (messages published)",
                    value: head,
                });
            }
            start = head - history.min(geo.keep).min(head);
            mem.cursor(place).store(start, Ordering::SeqCst);
            let now = mem.head().load(Ordering::SeqCst);
            if now.wrapping_sub(start) <= geo.capacity / 2 {
                break;
            }
        }
        Ok(Self {
            geo,
            place,
            next: Cell::new(start),
            lost: Cell::new(0),
            used: Cell::new(0),
        })
    }

    /// The number of the next message this subscriber will take.
    pub(crate) fn next(&self) -> u64 {
        self.next.get()
    }

    /// Hold slots in use now.
    pub(crate) fn held(&self) -> u32 {
        self.used.get().count_ones()
    }

    /// Whether [`take`](Self::take) would find something other than `Empty`: the
    /// next message is there, or our cursor was moved on by an overwriting
    /// publisher (a take then reports the skipped messages lost with the next
    /// one), or the shared words need a closer look (a joiner more than a ring
    /// behind, or corruption, which the take reports). Consumes nothing (the async
    /// and WaitSet re-check before sleeping).
    pub(crate) fn has_next(&self, mem: &impl PoolMem) -> bool {
        let geo = self.geo;
        // Acquire pairs with the overwriting publisher's cursor CAS (AcqRel).
        let c = mem.cursor(self.place).load(Ordering::Acquire);
        if c != self.next.get() {
            return true;
        }
        // Acquire pairs with the Release store of the entry in `publish`.
        let e = mem.entry(geo.entry_of(c)).load(Ordering::Acquire);
        if e >> 32 == tag(c) {
            return true;
        }
        // As in `check_head`: `head == c` (nothing new) or `head == c + 1` (we took
        // the last message by its entry before `head` landed) is empty; any other
        // gap is for `take` to sort out.
        // Acquire pairs with the Release store of `head` in `publish`.
        let gap = mem.head().load(Ordering::Acquire).wrapping_sub(c);
        gap != 0 && gap != u64::MAX
    }

    /// Takes the next message and holds its chunk.
    ///
    /// # Errors
    /// A shared index impossible given the others (a `head` more than two rings
    /// ahead of the cursor, or behind it; a cursor moved back; a chunk index or
    /// length out of range).
    pub(crate) fn take(&self, mem: &impl PoolMem) -> Result<Take, Corrupt> {
        let geo = self.geo;
        let cursor = mem.cursor(self.place);
        // Each turn takes a message or moves past at least one; a publisher lapping
        // this reader without pause could keep it here, so bound it.
        for _ in 0..64 {
            let c = cursor.load(Ordering::Acquire);
            let expected = self.next.get();
            // A cursor at or past MAX_SEQ is impossible (the publisher never gets
            // there) and would overflow `c + 1` below: corrupt, and `next` keeps
            // its last good value.
            if c < expected || c - expected > MAX_SEQ || c >= MAX_SEQ {
                return Err(Corrupt {
                    what: "pubsub subscriber cursor (moved back, or past any message)",
                    value: c,
                });
            }
            self.lost.set(self.lost.get().saturating_add(c - expected));
            self.next.set(c);
            // Fast path: the entry names message `c` (its tag) once it is published.
            // Acquire pairs with the Release store of the entry in `publish`.
            let e = mem.entry(geo.entry_of(c)).load(Ordering::Acquire);
            if e >> 32 != tag(c) {
                // Not published yet, a ring or more behind (a joiner), or corrupt:
                // `head` tells which.
                match self.check_head(mem, c)? {
                    Gap::Empty => return Ok(Take::Empty),
                    Gap::Again => continue,
                }
            }
            let k = e & 0xffff_ffff;
            let used = self.used.get();
            let slot = (!used).trailing_zeros();
            if slot >= geo.max_held {
                return Ok(Take::Full);
            }
            let hold = mem.hold(self.place, slot as usize);
            hold.store(c + 1, Ordering::Relaxed);
            // AcqRel: the hold store above is visible to a publisher that sees the
            // new cursor (Acquire, in `reclaim`).
            if cursor
                .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The publisher moved us on (overwrite): count it and look again.
                hold.store(0, Ordering::Release);
                continue;
            }
            self.next.set(c + 1);
            // SeqCst fence: the Dekker partner of the publisher's in `reclaim`.
            fence(Ordering::SeqCst);
            let Some(ku) = usize::try_from(k).ok().filter(|&k| k < geo.chunks as usize) else {
                hold.store(0, Ordering::Release);
                return Err(Corrupt {
                    what: "pubsub ring entry (chunk index beyond the pool)",
                    value: k,
                });
            };
            // Acquire pairs with the Release store of `seq` in `publish` (payload
            // and length visible) or in `reclaim` (kept).
            let mut s = mem.seq(ku).load(Ordering::Acquire);
            let mut spins = 0u32;
            while s == c | FREEING && spins < 100_000 {
                // The publisher is deciding (module doc); its verdict is quick.
                spin_yield();
                spins += 1;
                s = mem.seq(ku).load(Ordering::Acquire);
            }
            if s != c {
                // Freed before we held it (we joined behind the publisher's back,
                // or its decision did not come: it died mid-reclaim): lost.
                hold.store(0, Ordering::Release);
                self.lost.set(self.lost.get().saturating_add(1));
                continue;
            }
            let len = mem.len(ku).load(Ordering::Relaxed);
            if len > u64::from(geo.chunk_size) {
                hold.store(0, Ordering::Release);
                return Err(Corrupt {
                    what: "pubsub sample length (larger than a chunk)",
                    value: len,
                });
            }
            self.used.set(used | (1 << slot));
            return Ok(Take::Got {
                seq: c,
                chunk: ku as u32,
                len,
                slot,
                lost: self.lost.replace(0),
            });
        }
        Ok(Take::Empty)
    }

    /// The slow path of `take` when the entry of message `c` (our cursor) does not
    /// name it: validates `head` against the cursor and the capacity.
    #[cold]
    fn check_head(&self, mem: &impl PoolMem, c: u64) -> Result<Gap, Corrupt> {
        let geo = self.geo;
        let cursor = mem.cursor(self.place);
        // Acquire pairs with the Release store of `head` in `publish`.
        let head = mem.head().load(Ordering::Acquire);
        let gap = head.wrapping_sub(c);
        // `c == head + 1`: we took the last message by its entry before the
        // publisher's `head` store (which comes after the entry's) landed.
        if gap == 0 || gap == u64::MAX {
            return Ok(Gap::Empty);
        }
        // Or we were descheduled between the loads while an overwriting publisher
        // moved us on: then the cursor changed (it does so before any message a
        // ring ahead of it is published). Look again.
        let moved = || cursor.load(Ordering::Acquire) != c;
        // A registered subscriber is at most a ring behind; one that joined since
        // the publisher's last scan at most two (see `attach`).
        if gap > 2 * geo.capacity || head >= MAX_SEQ {
            if moved() {
                return Ok(Gap::Again);
            }
            return Err(Corrupt {
                what: "pubsub head (impossible given this subscriber's cursor and the ring's capacity)",
                value: head,
            });
        }
        if gap > geo.capacity {
            // Joined while the publisher did not see it: skip to the ring.
            let _ = cursor.compare_exchange(
                c,
                head - geo.capacity,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return Ok(Gap::Again);
        }
        // `head` says message `c` is published: its entry was stored before `head`
        // (Release/Acquire), and is not reused before our cursor moves. A tag that
        // still does not match with the cursor unchanged is corrupt.
        let e = mem.entry(geo.entry_of(c)).load(Ordering::Acquire);
        if e >> 32 == tag(c) || moved() {
            return Ok(Gap::Again);
        }
        Err(Corrupt {
            what: "pubsub ring entry (does not hold the message head says is published)",
            value: e,
        })
    }

    /// Releases hold slot `slot` (the sample is dropped).
    pub(crate) fn release(&self, mem: &impl PoolMem, slot: u32) {
        // Release: our reads of the chunk happen before the publisher, seeing the
        // slot empty (Acquire in `reclaim`), frees and rewrites it.
        mem.hold(self.place, slot as usize)
            .store(0, Ordering::Release);
        self.used.set(self.used.get() & !(1 << slot));
    }

    /// Releases every hold (leaving the channel).
    #[cfg(test)]
    pub(crate) fn release_all(&self, mem: &impl PoolMem) {
        for j in 0..self.geo.max_held as usize {
            mem.hold(self.place, j).store(0, Ordering::Release);
        }
        self.used.set(0);
    }

    /// Marks hold slots `mask` free again: their holds were released elsewhere
    /// (by owned samples, on any thread), after which they may be reused.
    pub(crate) fn returned(&self, mask: u64) {
        self.used.set(self.used.get() & !mask);
    }
}

/// What `check_head` found.
enum Gap {
    /// Nothing new.
    Empty,
    /// Look again (the cursor moved, or the entry is there now).
    Again,
}

/// The tag of message `n` in its ring entry: the low 32 bits of `n + 1` (an entry
/// holds `chunk | tag << 32`; 0 never names a message of the current lap, since the
/// entry of message `n` last held message `n - capacity` at most).
#[inline]
pub(crate) fn tag(n: u64) -> u64 {
    n.wrapping_add(1) & 0xffff_ffff
}

/// Clears a place's hold slots; called by the process that just claimed it, before
/// it holds anything (the previous holder is dead or gone).
pub(crate) fn clear_place(geo: &Geometry, mem: &impl PoolMem, place: usize) {
    for j in 0..geo.max_held as usize {
        mem.hold(place, j).store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Shared words on the heap: head, entries, chunk seq/len, places.
    struct Heap {
        geo: Geometry,
        head: AtomicU64,
        entries: Vec<AtomicU64>,
        seqs: Vec<AtomicU64>,
        lens: Vec<AtomicU64>,
        /// per place: token, cursor, holds
        places: Vec<AtomicU64>,
    }

    impl Heap {
        fn new(geo: Geometry) -> Self {
            let words = |n: usize, v: u64| (0..n).map(|_| AtomicU64::new(v)).collect();
            Self {
                geo,
                head: AtomicU64::new(0),
                entries: words(geo.capacity as usize, 0),
                seqs: words(geo.chunks as usize, FREE),
                lens: words(geo.chunks as usize, 0),
                places: words(
                    geo.max_subscribers as usize * (2 + geo.max_held as usize),
                    0,
                ),
            }
        }
        fn place(&self, s: usize) -> usize {
            s * (2 + self.geo.max_held as usize)
        }
    }

    impl PoolMem for Heap {
        fn head(&self) -> &AtomicU64 {
            &self.head
        }
        fn entry(&self, i: usize) -> &AtomicU64 {
            &self.entries[i]
        }
        fn seq(&self, k: usize) -> &AtomicU64 {
            &self.seqs[k]
        }
        fn len(&self, k: usize) -> &AtomicU64 {
            &self.lens[k]
        }
        fn token(&self, s: usize) -> &AtomicU64 {
            &self.places[self.place(s)]
        }
        fn cursor(&self, s: usize) -> &AtomicU64 {
            &self.places[self.place(s) + 1]
        }
        fn hold(&self, s: usize, j: usize) -> &AtomicU64 {
            assert!(j < self.geo.max_held as usize);
            &self.places[self.place(s) + 2 + j]
        }
    }

    fn geo(capacity: u64, subs: u32, held: u32, keep: u64) -> Geometry {
        Geometry {
            capacity,
            chunks: Geometry::chunks_for(capacity, u64::from(subs), u64::from(held)).unwrap(),
            chunk_size: u32::MAX,
            max_subscribers: subs,
            max_held: held,
            keep,
        }
    }

    /// Publishes `n` as an 8-byte payload kept in `len` (the heap has no payload).
    fn send(p: &mut PublisherCore, h: &Heap, n: u64, overwrite: bool) {
        for s in 0..h.geo.max_subscribers as usize {
            if h.token(s).load(Ordering::Relaxed) == 0 {
                continue;
            }
            let c = h.cursor(s).load(Ordering::Relaxed);
            if p.blocks(c) {
                assert!(overwrite, "no room");
                let _ = h.cursor(s).compare_exchange(
                    c,
                    p.oldest_after_next(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
        }
        let k = match p.take() {
            Some(k) => k,
            None => {
                p.reclaim(h, |_| true);
                p.take().expect("the pool never runs dry")
            }
        };
        h.seq(k as usize).store(FREE, Ordering::Relaxed);
        p.publish(h, k, n);
    }

    fn join(h: &Heap, s: usize, history: u64) -> SubscriberCore {
        h.token(s).store(1, Ordering::Relaxed);
        clear_place(&h.geo, h, s);
        SubscriberCore::attach(h.geo, h, s, history).unwrap()
    }

    #[test]
    fn holds_keep_chunks_and_the_pool_never_leaks() {
        let g = geo(4, 2, 2, 0);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        let a = join(&h, 0, 0);
        let b = join(&h, 1, 0);
        send(&mut p, &h, 100, false);
        let Take::Got {
            chunk, slot, len, ..
        } = a.take(&h).unwrap()
        else {
            panic!()
        };
        assert_eq!(len, 100);
        // b takes and releases; a still holds: reclaim must not free it.
        let Take::Got { slot: sb, .. } = b.take(&h).unwrap() else {
            panic!()
        };
        b.release(&h, sb);
        for n in 0..20 {
            send(&mut p, &h, n, true);
            assert_ne!(p.free.last().copied(), Some(chunk));
            assert_eq!(h.seq(chunk as usize).load(Ordering::Relaxed), 0);
        }
        // a was overwritten past while holding: the next take reports the loss.
        match a.take(&h).unwrap() {
            Take::Got { lost, .. } => assert!(lost > 0),
            t => panic!("{t:?}"),
        }
        a.release_all(&h);
        b.release_all(&h);
        h.token(0).store(0, Ordering::Relaxed);
        h.token(1).store(0, Ordering::Relaxed);
        assert_eq!(p.reclaim(&h, |_| true), g.chunks as usize);
        let _ = slot;
    }

    #[test]
    fn hold_bound_history_and_restart() {
        let g = geo(8, 1, 2, 3);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        for n in 0..10 {
            send(&mut p, &h, n, false);
        }
        let s = join(&h, 0, 100);
        let Take::Got { seq, .. } = s.take(&h).unwrap() else {
            panic!()
        };
        assert_eq!(seq, 7, "three kept for late joiners");
        assert!(matches!(s.take(&h).unwrap(), Take::Got { seq: 8, .. }));
        assert_eq!(s.take(&h).unwrap(), Take::Full);
        // A restarted publisher (one loan lost with the dead one) frees every chunk
        // nobody holds and keeps the held ones.
        let lost_loan = p.take().unwrap();
        let _ = lost_loan;
        let mut p2 = PublisherCore::attach(g, &h).unwrap();
        assert_eq!(p2.head(), 10);
        s.release_all(&h);
        h.token(0).store(0, Ordering::Relaxed);
        assert_eq!(p2.reclaim(&h, |_| true), g.chunks as usize - 3);
    }

    /// `has_next` (the async re-check) says exactly whether the take that follows
    /// finds something, consumes nothing, and sees an overwriting publisher's skip.
    #[test]
    fn has_next_agrees_with_take_and_consumes_nothing() {
        let g = geo(4, 2, 4, 0);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        let s = join(&h, 0, 0);
        assert!(!s.has_next(&h), "nothing published");
        send(&mut p, &h, 0, false);
        assert!(s.has_next(&h));
        assert!(s.has_next(&h), "asking twice consumes nothing");
        assert_eq!(s.next(), 0);
        let Take::Got { seq: 0, slot, .. } = s.take(&h).unwrap() else {
            panic!()
        };
        s.release(&h, slot);
        assert!(!s.has_next(&h), "taken");
        // Overwritten past: the skip is news (reported lost with the next message).
        for n in 1..10 {
            send(&mut p, &h, n, true);
        }
        assert!(s.has_next(&h));
        let Take::Got { lost, slot, .. } = s.take(&h).unwrap() else {
            panic!()
        };
        assert!(lost > 0);
        s.release(&h, slot);
        // Drain, checking agreement at every step.
        loop {
            let ready = s.has_next(&h);
            match s.take(&h).unwrap() {
                Take::Got { slot, .. } => {
                    assert!(ready, "a message has_next did not see");
                    s.release(&h, slot);
                }
                Take::Empty => {
                    assert!(!ready, "has_next saw a message take did not");
                    break;
                }
                Take::Full => panic!("holds released"),
            }
        }
        // The last message's `head` store in flight: empty, as for `take`.
        let c = s.next();
        h.head.store(c - 1, Ordering::Relaxed);
        assert!(!s.has_next(&h));
        assert_eq!(s.take(&h), Ok(Take::Empty));
        h.head.store(c, Ordering::Relaxed);
        // A corrupt head is for `take` to report: ready, not a sleep for ever.
        h.head.store(c + (1 << 40), Ordering::Relaxed);
        assert!(s.has_next(&h));
        assert!(s.take(&h).is_err());
    }

    #[test]
    fn corrupt_head_is_reported_not_waited_on() {
        let g = geo(4, 1, 4, 0);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        let s = join(&h, 0, 0);
        for n in 0..4 {
            send(&mut p, &h, n, false);
        }
        assert!(matches!(s.take(&h), Ok(Take::Got { seq: 0, .. })));
        // Published messages are taken by their entries; the head is checked when
        // there is nothing more (where a deaf subscriber would wait).
        h.head.fetch_add(1 << 62, Ordering::Relaxed);
        assert!(matches!(s.take(&h), Ok(Take::Got { seq: 1, .. })));
        h.entries[2].store(0, Ordering::Relaxed);
        let e = s.take(&h).unwrap_err();
        assert!(e.what.contains("head"), "head 2^62 ahead: {e:?}");
        // One behind the cursor is the last message's `head` store in flight...
        h.head.store(1, Ordering::Relaxed);
        assert_eq!(s.take(&h), Ok(Take::Empty));
        // ...two is corrupt.
        h.head.store(0, Ordering::Relaxed);
        assert!(s.take(&h).is_err(), "head behind the cursor");
        h.head.store(4, Ordering::Relaxed);
        let e = s.take(&h).unwrap_err();
        assert!(e.what.contains("entry"), "entry without its message: {e:?}");
        h.entries[2].store((tag(2) << 32) | 0xffff_fff0, Ordering::Relaxed);
        let e = s.take(&h).unwrap_err();
        assert!(e.what.contains("beyond the pool"), "{e:?}");
        // A restarted publisher refuses an impossible head.
        h.head.store(1 << 62, Ordering::Relaxed);
        assert!(PublisherCore::attach(g, &h).is_err());
    }

    /// A hostile peer walking a subscriber's cursor up towards `u64::MAX` (each step
    /// within `MAX_SEQ` of the last) gets `Corrupt` every time, never a sample of a
    /// free chunk or an overflow.
    #[test]
    fn cursor_walked_to_the_top_is_corrupt() {
        let g = geo(4, 1, 2, 0);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        let s = join(&h, 0, 0);
        send(&mut p, &h, 7, false);
        let mut c = 0u64;
        for _ in 0..3 {
            c += MAX_SEQ;
            h.cursor(0).store(c, Ordering::Relaxed);
            assert!(s.take(&h).is_err(), "cursor {c:#x}");
        }
        for c in [u64::MAX, u64::MAX - 5, MAX_SEQ] {
            h.cursor(0).store(c, Ordering::Relaxed);
            assert!(s.take(&h).is_err(), "cursor {c:#x}");
        }
    }

    /// A corrupt cursor far behind `head` does not stop chunks from coming back:
    /// the publisher keeps publishing in overwrite mode.
    #[test]
    fn a_cursor_far_behind_never_starves_the_pool() {
        let g = geo(4, 2, 2, 0);
        let h = Heap::new(g);
        let mut p = PublisherCore::attach(g, &h).unwrap();
        let _s = join(&h, 0, 0);
        for n in 0..20 {
            send(&mut p, &h, n, true);
        }
        h.cursor(0).store(0, Ordering::Relaxed);
        for n in 20..200 {
            send(&mut p, &h, n, true);
        }
    }

    /// A publisher overwriting two subscribers that hold samples while it reclaims:
    /// a held chunk always holds the message taken, and every message is taken or
    /// counted lost. Runs under miri.
    #[test]
    fn threads_never_read_a_reclaimed_chunk() {
        let total: u64 = if cfg!(miri) { 200 } else { 100_000 };
        let g = geo(2, 2, 2, 0);
        let h = Arc::new(Heap::new(g));
        let subs: Vec<_> = (0..2).map(|s| join(&h, s, 0)).collect();
        let h2 = Arc::clone(&h);
        let t = std::thread::spawn(move || {
            let mut p = PublisherCore::attach(g, &*h2).unwrap();
            for n in 0..total {
                send(&mut p, &h2, n, true);
            }
        });
        let mut accounted = [0u64; 2];
        let mut held: Vec<(usize, u32, u32, u64)> = Vec::new();
        while accounted.iter().any(|&a| a < total) {
            for (i, s) in subs.iter().enumerate() {
                match s.take(&*h).unwrap() {
                    Take::Got {
                        seq,
                        chunk,
                        len,
                        slot,
                        lost,
                    } => {
                        assert_eq!(len, seq, "chunk does not hold the message taken");
                        assert_eq!(seq, accounted[i] + lost, "lost count wrong");
                        accounted[i] = seq + 1;
                        held.push((i, chunk, slot, seq));
                    }
                    Take::Full | Take::Empty => std::thread::yield_now(),
                }
            }
            // Release the oldest holds after checking they were never rewritten.
            while held.len() > 2 {
                let (i, chunk, slot, seq) = held.remove(0);
                assert_eq!(h.len(chunk as usize).load(Ordering::Relaxed), seq);
                subs[i].release(&*h, slot);
            }
        }
        t.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct LoomMem {
        head: AtomicU64,
        /// entries (2), seq (chunks), len (chunks), token, cursor, hold
        w: Vec<AtomicU64>,
        chunks: usize,
    }

    impl PoolMem for LoomMem {
        fn head(&self) -> &AtomicU64 {
            &self.head
        }
        fn entry(&self, i: usize) -> &AtomicU64 {
            &self.w[i]
        }
        fn seq(&self, k: usize) -> &AtomicU64 {
            &self.w[2 + k]
        }
        fn len(&self, k: usize) -> &AtomicU64 {
            &self.w[2 + self.chunks + k]
        }
        fn token(&self, _s: usize) -> &AtomicU64 {
            &self.w[2 + 2 * self.chunks]
        }
        fn cursor(&self, _s: usize) -> &AtomicU64 {
            &self.w[3 + 2 * self.chunks]
        }
        fn hold(&self, _s: usize, _j: usize) -> &AtomicU64 {
            &self.w[4 + 2 * self.chunks]
        }
    }

    /// Every interleaving (up to three preemptions) of an overwriting publisher that
    /// sends four messages through a two-entry ring and a three-chunk pool (so
    /// chunks are reused, and the publisher sometimes waits for one), reclaiming as
    /// it goes, and a subscriber that takes and holds them one at a time: the chunk a subscriber holds is never handed
    /// out again while held (its `len`, the message number, stays), and numbers
    /// only grow.
    #[test]
    fn pubsub_pool_never_frees_a_held_chunk() {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut model = loom::model::Builder::new();
        if model.preemption_bound.is_none() {
            model.preemption_bound = Some(3);
        }
        model.check(|| {
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let geo = Geometry {
                capacity: 2,
                chunks: 3,
                chunk_size: u32::MAX,
                max_subscribers: 1,
                max_held: 1,
                keep: 0,
            };
            let chunks = geo.chunks as usize;
            let mem = Arc::new(LoomMem {
                head: AtomicU64::new(0),
                w: (0..5 + 2 * chunks)
                    .map(|i| {
                        AtomicU64::new(if (2..2 + chunks).contains(&i) {
                            FREE
                        } else {
                            0
                        })
                    })
                    .collect(),
                chunks,
            });
            mem.token(0).store(1, Ordering::Relaxed);
            let s = SubscriberCore::attach(geo, &*mem, 0, 0).unwrap();
            let m2 = Arc::clone(&mem);
            let t = loom::thread::spawn(move || {
                let mut p = PublisherCore::attach(geo, &*m2).unwrap();
                for n in 0..4u64 {
                    let c = m2.cursor(0).load(Ordering::Acquire);
                    if p.blocks(c) {
                        let _ = m2.cursor(0).compare_exchange(
                            c,
                            p.oldest_after_next(),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                    // One chunk fewer than the pool needs never to wait: the
                    // publisher waits for a release now and then.
                    let k = loop {
                        if let Some(k) = p.take() {
                            break k;
                        }
                        p.reclaim(&*m2, |_| true);
                        if let Some(k) = p.take() {
                            break k;
                        }
                        loom::thread::yield_now();
                    };
                    // The "payload": written while loaned, must not change under a
                    // reader.
                    m2.len(k as usize).store(100 + n, Ordering::Relaxed);
                    p.publish(&*m2, k, 100 + n);
                    p.reclaim(&*m2, |_| true);
                }
            });
            // Until the last message: each one held across a yield, checked
            // before and after.
            let mut next = 0;
            while next < 4 {
                match s.take(&*mem).unwrap() {
                    Take::Got {
                        seq,
                        chunk,
                        slot,
                        lost,
                        ..
                    } => {
                        assert_eq!(seq, next + lost);
                        next = seq + 1;
                        let v1 = mem.len(chunk as usize).load(Ordering::Relaxed);
                        loom::thread::yield_now();
                        let v2 = mem.len(chunk as usize).load(Ordering::Relaxed);
                        assert_eq!((v1, v2), (100 + seq, 100 + seq), "held chunk rewritten");
                        s.release(&*mem, slot);
                    }
                    _ => loom::thread::yield_now(),
                }
            }
            t.join().unwrap();
        });
        assert!(RUNS.load(std::sync::atomic::Ordering::Relaxed) > 1);
    }
}
