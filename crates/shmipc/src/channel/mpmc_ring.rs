//! The bounded multi-producer multi-consumer queue of loaned slots, as pure memory
//! logic for loom and miri. Used by `mpmc` (producers and consumers) and by `rpc`'s
//! request queue (clients produce, the server consumes).
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue (1024cores.net, "Bounded MPMC queue"; the
//! design of crossbeam's `ArrayQueue`) with the slot *being* the sample: a producer
//! loans a slot, writes the payload in place and publishes it; a consumer takes the
//! slot, reads the payload in place and releases it. Each slot has one word,
//! `state`, that says in a single atomic value which lap (*turn*) of the ring it
//! is in, its *phase* and which endpoint owns it:
//!
//! ```text
//!   state = turn << 19 | phase << 17 | endpoint      (turn modulo 2^45)
//!   FREE     position turn*capacity+slot may be claimed by a producer
//!   WRITING  a producer (endpoint) holds the loan and writes the payload
//!   READY    published (endpoint field 0), or cancelled (endpoint field VOID)
//!   TAKEN    a consumer (endpoint) reads the payload in place
//! ```
//!
//! * **Claim** (producer at enqueue position `pos`, turn `t`): CAS `state` from
//!   `(t, FREE)` to `(t, WRITING, me)` (**AcqRel**: pairs with the Release of the
//!   consumer that freed the slot, so its reads are done before we write), then
//!   move `enqueue_pos` from `pos` to `pos + 1` (a CAS any producer may do: one
//!   that finds the slot already claimed for `pos` *helps* it forward).
//! * **Publish**: store the length, CAS `(t, WRITING, me)` to `(t, READY)`
//!   (**Release**, pairs with the consumer's Acquire). **Cancel** (a loan dropped
//!   unsent): CAS to `(t, READY, VOID)`: consumers free it without delivering it.
//! * **Take** (consumer at dequeue position `pos`): CAS `(t, READY)` to
//!   `(t, TAKEN, me)` (**AcqRel**: sees the payload), help `dequeue_pos` forward.
//! * **Release**: CAS `(t, TAKEN, me)` to `(t + 1, FREE)` (**Release**).
//!
//! Positions are hints that anyone moves forward by one after seeing the slot's
//! state show that the position was claimed: what a slot holds and who owns it is
//! decided by the CAS on its `state` alone.
//!
//! # Why a slot is never written while a reader holds it
//!
//! A producer writes a slot's payload only while the slot's state is `(t,
//! WRITING, itself)`, which it reaches by one CAS from `(t, FREE)`. A consumer
//! reads it only while the state is `(t, TAKEN, itself)`. The state leaves
//! `TAKEN` only by the consumer's own release (a CAS to `(t + 1, FREE)`), or by
//! a reclaim of a *dead* consumer's hold (below). So no correct producer writes a
//! slot between a consumer's take and its release.
//!
//! # Crash robustness
//!
//! Ownership is recorded by the same CAS that claims the slot, so there is no
//! instant at which a slot is claimed but its owner unknown. Endpoints are record
//! indices; the caller says whether the process holding a record is dead
//! (kernel-proven, see `peer.rs`). Then:
//!
//! * a dead producer's `(t, WRITING, ep)` is taken and released by the consumer
//!   that waits at that position (the message was never sent);
//! * a dead consumer's `(t, TAKEN, ep)` is freed by the producer that needs the
//!   slot for the next lap (or by [`scan`]);
//! * a process that claims a record whose previous holder died [`scan`]s the ring
//!   for states naming the record *before* it uses it, and resolves them (so a
//!   record reused by a live process never makes a dead one's slot look live).
//!
//! Every transition is a CAS from the exact state seen, so two processes that
//! both decide to reclaim the same slot do it once. A producer that was presumed
//! dead but is not (impossible with kernel liveness; possible with a hostile
//! peer) fails to publish: [`publish`] reports it.
//!
//! # Trust
//!
//! A state whose turn is neither the expected one nor one lap either side (when
//! the position did not move meanwhile), an endpoint beyond the records, or a
//! length beyond the slot is [`Corrupt`]. Every loop is bounded, so a hostile
//! process flipping words cannot trap a caller.

use super::shim::{AtomicU64, Ordering};
use super::Corrupt;

const EP_BITS: u32 = 17;
const PHASE_SHIFT: u32 = EP_BITS;
const TURN_SHIFT: u32 = EP_BITS + 2;
const EP_MASK: u64 = (1 << EP_BITS) - 1;
const TURN_MASK: u64 = (1 << (64 - TURN_SHIFT)) - 1;
/// Endpoint field of a cancelled message (above every endpoint index).
const VOID: u64 = 1 << 16;
/// Endpoints (record indices) are below this.
pub(crate) const MAX_ENDPOINTS: u64 = 1 << 16;

const FREE: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;
const TAKEN: u64 = 3;

/// Where the shared words of one queue are.
pub(crate) trait MpmcSlots {
    fn state(&self, slot: usize) -> &AtomicU64;
    fn len(&self, slot: usize) -> &AtomicU64;
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
    /// Endpoint records (`1..=MAX_ENDPOINTS`).
    pub(crate) endpoints: u64,
}

impl Geometry {
    #[inline]
    fn slot(&self, pos: u64) -> usize {
        (pos & (self.capacity - 1)) as usize
    }
    #[inline]
    fn turn(&self, pos: u64) -> u64 {
        (pos >> self.capacity.trailing_zeros()) & TURN_MASK
    }
}

/// The initial state word of every slot (turn 0, free).
pub(crate) const INIT: u64 = 0;

#[inline]
fn pack(turn: u64, phase: u64, ep: u64) -> u64 {
    ((turn & TURN_MASK) << TURN_SHIFT) | (phase << PHASE_SHIFT) | ep
}

#[inline]
fn unpack(s: u64) -> (u64, u64, u64) {
    (s >> TURN_SHIFT, (s >> PHASE_SHIFT) & 3, s & EP_MASK)
}

#[inline]
fn next(turn: u64) -> u64 {
    turn.wrapping_add(1) & TURN_MASK
}

#[inline]
fn prev(turn: u64) -> u64 {
    turn.wrapping_sub(1) & TURN_MASK
}

/// A slot owned by the caller: loaned (producer) or taken (consumer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owned {
    pub(crate) pos: u64,
    pub(crate) slot: usize,
    /// The payload length (taken slots; 0 for loans).
    pub(crate) len: u64,
}

/// What a claim or take found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Got(Owned),
    /// Producer: no free slot. Consumer: nothing published.
    None,
    /// Slots were given back (dead owners, cancelled messages) and nothing was
    /// got: ring the other side's bell, then try again.
    Freed,
}

/// How many times a loop may lose to other endpoints before reporting contention
/// as full/empty (a hostile process flipping words cannot trap us).
const RETRIES: usize = 1 << 12;

fn corrupt_state(s: u64) -> Corrupt {
    Corrupt {
        what: "mpmc slot state (impossible turn for the queue position)",
        value: s,
    }
}

fn check_ep(geo: Geometry, s: u64) -> Result<u64, Corrupt> {
    let ep = s & EP_MASK;
    if ep < geo.endpoints {
        Ok(ep)
    } else {
        Err(Corrupt {
            what: "mpmc slot owner (beyond the endpoint records)",
            value: s,
        })
    }
}

/// Whether the positions are impossible: `deq` (just read, and unchanged since
/// `enq` was read) further from `enq` than the claims, loans in flight and
/// lagging helpers allow. (A slot's turn is kept modulo 2^45, so a position moved
/// by a multiple of that would otherwise look right.)
fn apart(geo: Geometry, enq: u64, deq: u64) -> bool {
    let d = enq.wrapping_sub(deq) as i64;
    let slack = geo.endpoints as i64 + 1;
    d > geo.capacity as i64 + slack || d < -slack
}

/// Checks the positions before reporting "nothing" at `pos` of `at`.
fn settled(
    geo: Geometry,
    q: &impl MpmcSlots,
    at: &AtomicU64,
    pos: u64,
    deq_side: bool,
) -> Result<(), Corrupt> {
    let (enq, deq) = if deq_side {
        (q.enqueue_pos().load(Ordering::Acquire), pos)
    } else {
        (pos, q.dequeue_pos().load(Ordering::Acquire))
    };
    if apart(geo, enq, deq) && at.load(Ordering::Acquire) == pos {
        return Err(Corrupt {
            what: if deq_side {
                "mpmc dequeue position (impossible given the enqueue position)"
            } else {
                "mpmc enqueue position (impossible given the dequeue position)"
            },
            value: pos,
        });
    }
    Ok(())
}

/// Moves `at` from `pos` to `pos + 1` unless someone did already. Release (and
/// Acquire loads of the positions): whoever reads the new position also sees the
/// slot state that justified the move (the claim or take of `pos`), so a
/// position is never ahead of the states a reader sees (loom found the Relaxed
/// version reporting a stale free slot as corrupt).
#[inline]
fn help(at: &AtomicU64, pos: u64) {
    let _ = at.compare_exchange(
        pos,
        pos.wrapping_add(1),
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// Producer `me` claims a free slot for a loan. `dead(ep)` says whether endpoint
/// `ep`'s holder is dead (a dead consumer's held slot is then freed); make it
/// return false to skip the (costly) check.
pub(crate) fn claim(
    geo: Geometry,
    q: &impl MpmcSlots,
    me: u64,
    mut dead: impl FnMut(u64) -> bool,
) -> Result<Found, Corrupt> {
    let enq = q.enqueue_pos();
    let mut freed = false;
    for _ in 0..RETRIES {
        let pos = enq.load(Ordering::Acquire);
        let (slot, t) = (geo.slot(pos), geo.turn(pos));
        let st = q.state(slot);
        // Acquire pairs with the Release that put the slot in this state.
        let s = st.load(Ordering::Acquire);
        let (turn, phase, _) = unpack(s);
        if turn == t {
            if phase == FREE {
                if st
                    .compare_exchange(s, pack(t, WRITING, me), Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    help(enq, pos);
                    return Ok(Found::Got(Owned { pos, slot, len: 0 }));
                }
            } else {
                // Claimed for `pos` already: help the position on.
                help(enq, pos);
            }
        } else if turn == prev(t) {
            match phase {
                // Held by a consumer from the last lap: free it if the consumer
                // died (its release would have done the same).
                TAKEN if dead(check_ep(geo, s)?) => {
                    if st
                        .compare_exchange(s, pack(t, FREE, 0), Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        freed = true;
                    }
                }
                // Last lap's message not consumed yet, or still held: full.
                WRITING | READY | TAKEN => {
                    settled(geo, q, enq, pos, false)?;
                    return Ok(if freed { Found::Freed } else { Found::None });
                }
                // Free for the last lap, yet the position passed it.
                _ => {
                    if enq.load(Ordering::Acquire) == pos {
                        return Err(corrupt_state(s));
                    }
                }
            }
        } else if turn == next(t) {
            // The slot went round already: `pos` was claimed and consumed.
            help(enq, pos);
        } else if enq.load(Ordering::Acquire) == pos {
            return Err(corrupt_state(s));
        }
    }
    Ok(if freed { Found::Freed } else { Found::None })
}

/// Publishes the loaned slot with `len` bytes written (`len <= max_len`).
///
/// # Errors
/// The slot is no longer this producer's loan (another process reclaimed it,
/// believing this one dead, or the word was overwritten).
pub(crate) fn publish(
    geo: Geometry,
    q: &impl MpmcSlots,
    me: u64,
    o: Owned,
    len: u64,
) -> Result<(), Corrupt> {
    let t = geo.turn(o.pos);
    q.len(o.slot).store(len, Ordering::Relaxed);
    // Release pairs with the consumer's Acquire (its take CAS): payload and length
    // are written before it reads them.
    q.state(o.slot)
        .compare_exchange(
            pack(t, WRITING, me),
            pack(t, READY, 0),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .map(|_| ())
        .map_err(|s| Corrupt {
            what: "mpmc slot state (a loaned slot was taken from this live producer)",
            value: s,
        })
}

/// Gives a loaned slot back unsent: its position is consumed as an empty message.
pub(crate) fn cancel(geo: Geometry, q: &impl MpmcSlots, me: u64, o: Owned) {
    let t = geo.turn(o.pos);
    let _ = q.state(o.slot).compare_exchange(
        pack(t, WRITING, me),
        pack(t, READY, VOID),
        Ordering::Release,
        Ordering::Relaxed,
    );
}

/// Consumer `me` takes the next published message. `dead(ep)` as in [`claim`]: a
/// dead producer's unpublished loan at the head is dropped.
pub(crate) fn take(
    geo: Geometry,
    q: &impl MpmcSlots,
    me: u64,
    mut dead: impl FnMut(u64) -> bool,
) -> Result<Found, Corrupt> {
    let deq = q.dequeue_pos();
    let mut freed = false;
    let none = |freed| if freed { Found::Freed } else { Found::None };
    for _ in 0..RETRIES {
        let pos = deq.load(Ordering::Acquire);
        let (slot, t) = (geo.slot(pos), geo.turn(pos));
        let st = q.state(slot);
        // Acquire pairs with the Release that put the slot in this state.
        let s = st.load(Ordering::Acquire);
        let (turn, phase, ep) = unpack(s);
        if turn == t {
            match phase {
                READY => {
                    if st
                        .compare_exchange(
                            s,
                            pack(t, TAKEN, me),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    help(deq, pos);
                    let o = Owned { pos, slot, len: 0 };
                    if ep == VOID {
                        release(geo, q, me, o)?;
                        freed = true;
                        continue;
                    }
                    if ep != 0 {
                        let _ = release(geo, q, me, o);
                        return Err(Corrupt {
                            what: "mpmc slot state (published with an owner)",
                            value: s,
                        });
                    }
                    let len = q.len(slot).load(Ordering::Relaxed);
                    if len > u64::from(geo.max_len) {
                        let _ = release(geo, q, me, o);
                        return Err(Corrupt {
                            what: "mpmc message length (larger than a slot)",
                            value: len,
                        });
                    }
                    return Ok(Found::Got(Owned { len, ..o }));
                }
                WRITING => {
                    if !dead(check_ep(geo, s)?) {
                        settled(geo, q, deq, pos, true)?;
                        return Ok(none(freed));
                    }
                    // The producer died with the loan: the message was never sent.
                    if st
                        .compare_exchange(
                            s,
                            pack(t, TAKEN, me),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        help(deq, pos);
                        release(geo, q, me, Owned { pos, slot, len: 0 })?;
                        freed = true;
                    }
                }
                TAKEN => help(deq, pos),
                _ => {
                    settled(geo, q, deq, pos, true)?;
                    return Ok(none(freed));
                }
            }
        } else if turn == prev(t) {
            // Last lap's message is still held: nothing at `pos` yet. Anything
            // else means the dequeue position passed a message never taken.
            if phase == TAKEN {
                settled(geo, q, deq, pos, true)?;
                return Ok(none(freed));
            }
            if deq.load(Ordering::Acquire) == pos {
                return Err(corrupt_state(s));
            }
        } else if turn == next(t) {
            help(deq, pos);
        } else if deq.load(Ordering::Acquire) == pos {
            return Err(corrupt_state(s));
        }
    }
    Ok(none(freed))
}

/// What a consumer would find at the head, consuming nothing (the WaitSet and
/// async re-check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    /// A take would find something to do (a message, a slot to skip or report).
    Ready,
    /// Nothing published at the head.
    Empty,
    /// The head is loaned to producer `ep` (ready if it is dead).
    Loaned(u64),
}

/// Looks at the head without taking: exactly the cases where [`take`] (with no
/// owner dead) returns nothing are not ready.
pub(crate) fn head(geo: Geometry, q: &impl MpmcSlots) -> Head {
    let pos = q.dequeue_pos().load(Ordering::Acquire);
    let t = geo.turn(pos);
    let (turn, phase, ep) = unpack(q.state(geo.slot(pos)).load(Ordering::Acquire));
    match (turn == t, phase) {
        (true, FREE) => Head::Empty,
        (true, WRITING) if ep < geo.endpoints => Head::Loaned(ep),
        (false, TAKEN) if turn == prev(t) => Head::Empty,
        _ => Head::Ready,
    }
}

/// Releases a taken slot for the next lap.
///
/// # Errors
/// The slot is no longer this consumer's (another process freed it, believing
/// this one dead, or the word was overwritten).
pub(crate) fn release(geo: Geometry, q: &impl MpmcSlots, me: u64, o: Owned) -> Result<(), Corrupt> {
    let t = geo.turn(o.pos);
    // Release pairs with the next producer's claim (AcqRel): our reads of the
    // payload are done before it writes.
    q.state(o.slot)
        .compare_exchange(
            pack(t, TAKEN, me),
            pack(next(t), FREE, 0),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .map(|_| ())
        .map_err(|s| Corrupt {
            what: "mpmc slot state (a held slot was taken from this live consumer)",
            value: s,
        })
}

/// What a [`scan`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Census {
    /// Slots free for a producer.
    pub(crate) free: u64,
    /// Slots given back by this scan.
    pub(crate) reclaimed: u64,
}

/// Resolves every slot owned by an endpoint for which `orphan(ep)` is true (dead,
/// or the caller's own record just claimed from a dead holder): a loan becomes a
/// cancelled message, a held slot is freed. Counts free slots.
pub(crate) fn scan(
    geo: Geometry,
    q: &impl MpmcSlots,
    mut orphan: impl FnMut(u64) -> bool,
) -> Census {
    let mut c = Census::default();
    for slot in 0..geo.capacity as usize {
        let st = q.state(slot);
        let s = st.load(Ordering::Acquire);
        let (turn, phase, ep) = unpack(s);
        let to = match phase {
            WRITING if ep < geo.endpoints && orphan(ep) => pack(turn, READY, VOID),
            TAKEN if ep < geo.endpoints && orphan(ep) => pack(next(turn), FREE, 0),
            FREE => {
                c.free += 1;
                continue;
            }
            _ => continue,
        };
        if st
            .compare_exchange(s, to, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            c.reclaimed += 1;
            c.free += u64::from(phase == TAKEN);
        }
    }
    c
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Per slot: state, len, payload word.
    struct Heap {
        capacity: usize,
        mem: Box<[AtomicU64]>,
    }

    impl Heap {
        fn new(capacity: usize) -> Self {
            Self {
                capacity,
                mem: (0..2 + capacity * 3).map(|_| AtomicU64::new(0)).collect(),
            }
        }
        fn word(&self, slot: usize) -> &AtomicU64 {
            &self.mem[2 + slot * 3 + 2]
        }
    }

    impl MpmcSlots for Heap {
        fn state(&self, slot: usize) -> &AtomicU64 {
            assert!(slot < self.capacity);
            &self.mem[2 + slot * 3]
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.mem[2 + slot * 3 + 1]
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
        endpoints: 8,
    };

    fn alive(_: u64) -> bool {
        false
    }

    fn send(q: &Heap, me: u64, v: u64) -> bool {
        match claim(GEO, q, me, alive).unwrap() {
            Found::Got(o) => {
                q.word(o.slot).store(v, Ordering::Relaxed);
                publish(GEO, q, me, o, 8).unwrap();
                true
            }
            _ => false,
        }
    }

    fn recv(q: &Heap, me: u64) -> Option<u64> {
        match take(GEO, q, me, alive).unwrap() {
            Found::Got(o) => {
                let v = q.word(o.slot).load(Ordering::Relaxed);
                release(GEO, q, me, o).unwrap();
                Some(v)
            }
            _ => None,
        }
    }

    #[test]
    fn fifo_full_empty_cancel_and_holds() {
        let q = Heap::new(4);
        assert_eq!(recv(&q, 1), None);
        for round in 0..3u64 {
            for i in 0..4 {
                assert!(send(&q, 2, round * 10 + i));
            }
            assert!(!send(&q, 2, 99), "full");
            for i in 0..4 {
                assert_eq!(recv(&q, 1), Some(round * 10 + i));
            }
        }
        // A cancelled loan is skipped.
        let Found::Got(o) = claim(GEO, &q, 2, alive).unwrap() else {
            panic!()
        };
        cancel(GEO, &q, 2, o);
        assert!(send(&q, 2, 7));
        assert_eq!(recv(&q, 1), Some(7));
        // A held slot keeps its lap: producers fill the others, then wait.
        assert!(send(&q, 2, 8));
        let Found::Got(held) = take(GEO, &q, 1, alive).unwrap() else {
            panic!()
        };
        for i in 0..3 {
            assert!(send(&q, 2, 20 + i));
        }
        assert!(!send(&q, 2, 99), "the held slot is not reused");
        assert_eq!(q.word(held.slot).load(Ordering::Relaxed), 8);
        release(GEO, &q, 1, held).unwrap();
        assert!(send(&q, 2, 23));
        for i in 0..4 {
            assert_eq!(recv(&q, 1), Some(20 + i));
        }
        assert_eq!(scan(GEO, &q, |_| false).free, 4);
    }

    #[test]
    fn dead_owners_are_reclaimed() {
        let q = Heap::new(4);
        let dead3 = |ep| ep == 3;
        // A producer (3) died with a loan at the head; one published behind it.
        let Found::Got(_lost) = claim(GEO, &q, 3, alive).unwrap() else {
            panic!()
        };
        assert!(send(&q, 2, 5));
        assert_eq!(take(GEO, &q, 1, alive), Ok(Found::None), "live owner: wait");
        let Found::Got(o) = take(GEO, &q, 1, dead3).unwrap() else {
            panic!()
        };
        assert_eq!(q.word(o.slot).load(Ordering::Relaxed), 5);
        release(GEO, &q, 1, o).unwrap();
        // A consumer (3) died holding; producers free its slot on the next lap.
        assert!(send(&q, 2, 6));
        let Found::Got(_held) = take(GEO, &q, 3, alive).unwrap() else {
            panic!()
        };
        for i in 0..3 {
            assert!(send(&q, 2, i));
        }
        assert_eq!(
            claim(GEO, &q, 2, alive),
            Ok(Found::None),
            "live holder: full"
        );
        let Found::Got(o) = claim(GEO, &q, 2, dead3).unwrap() else {
            panic!()
        };
        q.word(o.slot).store(3, Ordering::Relaxed);
        publish(GEO, &q, 2, o, 8).unwrap();
        for i in 0..4 {
            assert_eq!(recv(&q, 1), Some(i));
        }
        // Scan: a dead loan becomes a cancelled message, a dead hold is freed.
        let Found::Got(_) = claim(GEO, &q, 3, alive).unwrap() else {
            panic!()
        };
        let c = scan(GEO, &q, dead3);
        assert_eq!((c.free, c.reclaimed), (3, 1));
        assert_eq!(recv(&q, 1), None);
        assert_eq!(scan(GEO, &q, |_| false).free, 4);
    }

    #[test]
    fn corrupt_words_are_reported() {
        let q = Heap::new(4);
        assert!(send(&q, 2, 1));
        q.dequeue_pos().store(1 << 20, Ordering::Relaxed);
        assert!(
            take(GEO, &q, 1, alive).is_err(),
            "dequeue position far ahead"
        );
        // A whole number of 2^45 turns away: the slot looks right, the positions
        // do not.
        q.dequeue_pos().store(1 << 62, Ordering::Relaxed);
        assert!(recv(&q, 1).is_some());
        q.dequeue_pos().store(1 << 62, Ordering::Relaxed);
        let _ = take(GEO, &q, 1, alive);
        assert!(
            take(GEO, &q, 1, alive).is_err(),
            "dequeue position 2^62 ahead"
        );
        q.enqueue_pos().store(1 << 62, Ordering::Relaxed);
        q.dequeue_pos().store(0, Ordering::Relaxed);
        for _ in 0..4 {
            let _ = claim(GEO, &q, 2, alive);
        }
        assert!(
            claim(GEO, &q, 2, alive).is_err(),
            "enqueue position 2^62 ahead"
        );
        q.enqueue_pos().store(1, Ordering::Relaxed);
        q.state(0).store(pack(0, WRITING, 1000), Ordering::Relaxed);
        assert!(
            take(GEO, &q, 1, |_| true).is_err(),
            "owner beyond the records"
        );
        q.state(0).store(pack(0, READY, 0), Ordering::Relaxed);
        q.len(0).store(1 << 40, Ordering::Relaxed);
        assert!(take(GEO, &q, 1, alive).is_err(), "length");
        q.enqueue_pos().store(u64::MAX - 2, Ordering::Relaxed);
        let _ = claim(GEO, &q, 2, alive);
        for s in [u64::MAX, 1 << 63, 12345] {
            q.state(1).store(s, Ordering::Relaxed);
            q.enqueue_pos().store(1, Ordering::Relaxed);
            q.dequeue_pos().store(1, Ordering::Relaxed);
            let _ = claim(GEO, &q, 2, |_| true);
            let _ = take(GEO, &q, 1, |_| true);
            let _ = scan(GEO, &q, |_| true);
        }
    }

    /// The old (sequence-number) ring spun over a slot a lap ahead of the position
    /// naming it and then called the queue empty (full) for ever. Here one lap
    /// ahead is what a lagging position looks like, and both sides help the
    /// position past it, in every phase: the queue goes on and nothing sent after
    /// it is lost, through the laps that reuse the slot (its owner, if it names
    /// one, dead: a live one's loan or hold would stall the queue, by design). Two
    /// or more laps ahead, with the position unmoved, is corrupt.
    #[test]
    fn a_slot_laps_ahead_is_passed_or_corrupt_never_deaf() {
        let dead5 = |ep| ep == 5;
        // A free slot, a dead producer's loan, a cancelled message, a dead
        // consumer's hold.
        for (phase, ep) in [(FREE, 0), (WRITING, 5), (READY, VOID), (TAKEN, 5)] {
            let q = Heap::new(4);
            assert!(send(&q, 2, 1));
            assert_eq!(recv(&q, 1), Some(1));
            // Both positions are 1 (turn 0); its slot jumps a lap.
            q.state(1).store(pack(1, phase, ep), Ordering::Relaxed);
            assert!(
                matches!(take(GEO, &q, 1, dead5), Ok(Found::None | Found::Freed)),
                "phase {phase}"
            );
            for v in 10..20 {
                let o = loop {
                    match claim(GEO, &q, 2, dead5).unwrap() {
                        Found::Got(o) => break o,
                        Found::Freed => continue,
                        Found::None => panic!("phase {phase}: full for ever"),
                    }
                };
                q.word(o.slot).store(v, Ordering::Relaxed);
                publish(GEO, &q, 2, o, 8).unwrap();
                let o = loop {
                    match take(GEO, &q, 1, dead5).unwrap() {
                        Found::Got(o) => break o,
                        Found::Freed => continue,
                        Found::None => panic!("phase {phase}: deaf"),
                    }
                };
                assert_eq!(q.word(o.slot).load(Ordering::Relaxed), v, "phase {phase}");
                release(GEO, &q, 1, o).unwrap();
            }
        }
        for turns in [2, 3, TURN_MASK] {
            let q = Heap::new(4);
            assert!(send(&q, 2, 1));
            assert_eq!(recv(&q, 1), Some(1));
            q.state(1).store(pack(turns, FREE, 0), Ordering::Relaxed);
            assert!(take(GEO, &q, 1, alive).is_err(), "{turns} laps: take");
            assert!(claim(GEO, &q, 2, alive).is_err(), "{turns} laps: claim");
        }
    }

    /// Two producers, two consumers over a tiny queue, consumers holding a sample
    /// across the next take: every message exactly once, each producer's in
    /// order, and a held slot never rewritten. Runs under miri.
    #[test]
    fn threads_exactly_once_and_holds_stay() {
        let per: u64 = if cfg!(miri) { 50 } else { 50_000 };
        let q = Arc::new(Heap::new(4));
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..per {
                        while !send(&q, 4 + p, (p << 32) | i) {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2u64)
            .map(|c| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut held: Option<(Owned, u64)> = None;
                    while (got.len() as u64) < per {
                        match take(GEO, &*q, 1 + c, alive).unwrap() {
                            Found::Got(o) => {
                                let v = q.word(o.slot).load(Ordering::Relaxed);
                                got.push(v);
                                if let Some((h, hv)) = held.replace((o, v)) {
                                    assert_eq!(q.word(h.slot).load(Ordering::Relaxed), hv);
                                    release(GEO, &*q, 1 + c, h).unwrap();
                                }
                            }
                            _ => {
                                if let Some((h, _)) = held.take() {
                                    release(GEO, &*q, 1 + c, h).unwrap();
                                }
                                std::thread::yield_now();
                            }
                        }
                    }
                    if let Some((h, _)) = held {
                        release(GEO, &*q, 1 + c, h).unwrap();
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
        assert_eq!(scan(GEO, &*q, |_| false).free, 4);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct LoomQ {
        enq: AtomicU64,
        deq: AtomicU64,
        /// per slot: state, len (the "payload": the message's value)
        mem: Vec<AtomicU64>,
    }

    impl MpmcSlots for LoomQ {
        fn state(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 2]
        }
        fn len(&self, slot: usize) -> &AtomicU64 {
            &self.mem[slot * 2 + 1]
        }
        fn enqueue_pos(&self) -> &AtomicU64 {
            &self.enq
        }
        fn dequeue_pos(&self) -> &AtomicU64 {
            &self.deq
        }
    }

    const GEO: Geometry = Geometry {
        capacity: 2,
        max_len: u32::MAX,
        endpoints: 4,
    };

    fn queue() -> Arc<LoomQ> {
        Arc::new(LoomQ {
            enq: AtomicU64::new(0),
            deq: AtomicU64::new(0),
            mem: (0..4).map(|_| AtomicU64::new(INIT)).collect(),
        })
    }

    /// Takes, holding each message across a yield, until `n` have come.
    fn take_all(q: &LoomQ, n: usize) -> Vec<u64> {
        let mut got = Vec::new();
        while got.len() < n {
            match take(GEO, q, 3, |_| false).unwrap() {
                Found::Got(o) => {
                    let v1 = q.len(o.slot).load(Ordering::Relaxed);
                    loom::thread::yield_now();
                    let v2 = q.len(o.slot).load(Ordering::Relaxed);
                    assert_eq!(v1, v2, "held slot rewritten");
                    got.push(v1);
                    release(GEO, q, 3, o).unwrap();
                }
                _ => loom::thread::yield_now(),
            }
        }
        got
    }

    fn produce(q: &LoomQ, p: u64, v: u64) {
        let o = loop {
            match claim(GEO, q, p, |_| false).unwrap() {
                Found::Got(o) => break o,
                _ => loom::thread::yield_now(),
            }
        };
        if v == 0 {
            cancel(GEO, q, p, o);
        } else {
            publish(GEO, q, p, o, v).unwrap();
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut model = loom::model::Builder::new();
        if model.preemption_bound.is_none() {
            model.preemption_bound = Some(3);
        }
        model.check(f);
    }

    /// Two producers race a loan each into a two-slot queue while a consumer takes
    /// them: both arrive once, intact. (Preemptions bounded to 3, as loom's own
    /// docs advise for tests of this size.)
    #[test]
    fn mpmc_two_producers() {
        model(|| {
            let q = queue();
            let ts: Vec<_> = (1..=2u64)
                .map(|p| {
                    let q = Arc::clone(&q);
                    loom::thread::spawn(move || produce(&q, p, 100 * p))
                })
                .collect();
            let mut got = take_all(&q, 2);
            got.sort_unstable();
            assert_eq!(got, [100, 200]);
            for t in ts {
                t.join().unwrap();
            }
        });
    }

    /// A producer cancels a loan, then sends three messages through the two-slot
    /// queue (so slots are reused) while the consumer holds each one it takes
    /// across a yield: the cancelled one never arrives, the others arrive in order,
    /// and a held slot is never rewritten.
    #[test]
    fn mpmc_cancel_and_holds() {
        model(|| {
            let q = queue();
            let q2 = Arc::clone(&q);
            let t = loom::thread::spawn(move || {
                for v in [0, 1, 2, 3] {
                    produce(&q2, 1, v);
                }
            });
            assert_eq!(take_all(&q, 3), [1, 2, 3]);
            t.join().unwrap();
        });
    }

    /// A consumer "dies" holding a slot while a producer fills the queue; the
    /// producer, told the holder is dead, frees the slot exactly once, racing a
    /// scan by the process that took the dead consumer's record over.
    #[test]
    fn mpmc_dead_holder_reclaimed_once() {
        model(|| {
            let q = queue();
            // Consumer 3 takes message 1 and dies holding it.
            let Found::Got(o) = claim(GEO, &*q, 1, |_| false).unwrap() else {
                panic!()
            };
            publish(GEO, &*q, 1, o, 1).unwrap();
            let Found::Got(_dead) = take(GEO, &*q, 3, |_| false).unwrap() else {
                panic!()
            };
            let q2 = Arc::clone(&q);
            let scanner = loom::thread::spawn(move || scan(GEO, &*q2, |ep| ep == 3).reclaimed);
            let mut sent = 0;
            while sent < 2 {
                match claim(GEO, &*q, 1, |ep| ep == 3).unwrap() {
                    Found::Got(o) => {
                        publish(GEO, &*q, 1, o, 10 + sent).unwrap();
                        sent += 1;
                    }
                    _ => loom::thread::yield_now(),
                }
            }
            let by_scan = scanner.join().unwrap();
            assert!(by_scan <= 1);
            let mut got = Vec::new();
            while let Found::Got(o) = take(GEO, &*q, 2, |_| false).unwrap() {
                got.push(q.len(o.slot).load(Ordering::Relaxed));
                release(GEO, &*q, 2, o).unwrap();
            }
            assert_eq!(got, [10, 11]);
            assert_eq!(scan(GEO, &*q, |_| false).free, 2);
        });
    }
}
