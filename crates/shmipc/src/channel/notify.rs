//! Spin (the first microseconds back to back, then yielding the CPU between polls),
//! then sleep on the futex; and the sender's side that skips the wake system call
//! when nobody sleeps.
//!
//! Each direction of a channel has a *bell*: two 32-bit words in their own cache
//! line, `seq` (the futex word, bumped by every ring that wakes) and `sleepers`: in
//! its low 16 bits how many are about to sleep or sleeping, in its high 16 bits an
//! *epoch* that every ringer bumps when it zeroes the count.
//!
//! # Taking back an announcement
//!
//! A sleeper that stops waiting without being rung (its slice ended, its future
//! completed without a ring) takes its count back, but only if the epoch is still
//! the one its increment saw: once a ringer has zeroed the count, the count left belongs to
//! sleepers that announced after it, and taking one of theirs would let the next
//! ringer skip its wake while they sleep (they would wake only at the end of their
//! slice). The epoch is the sleeper's token ([`Bell::announce`] returns it); it wraps
//! after 65 536 zeroing rings, which could only make one such late wake-up possible
//! again.
//!
//! # No lost wake-ups
//!
//! Sleeper: `sleepers += 1` (SeqCst RMW), `seen = seq`, re-check the condition
//! (e.g. the slot's stamp), then `futex_wait(seq, seen)`.
//! Ringer: make the condition true (e.g. store the stamp), `fence(SeqCst)`, load
//! `sleepers`; if its count is non-zero, zero it (and bump the epoch, one CAS), and
//! if that found sleepers, `seq += 1` and `futex_wake` all.
//!
//! The sleeper's increment and the ringer's fence are both in the single total order
//! of SeqCst operations (the Dekker pattern). If the ringer's fence comes first, the
//! sleeper's re-check (after its SeqCst RMW) sees the condition and does not sleep.
//! Otherwise the ringer sees `sleepers > 0` and bumps `seq` and wakes: the sleeper
//! either is already in `futex_wait` (woken) or enters it with a `seen` that no
//! longer matches (the kernel returns at once). Residual cases the C++ model does
//! not rule out on paper (the sleeper reading `seen` after the bump), and sleepers
//! of a multi-waiter bell whose count another sleeper took back, cannot last: every
//! sleep is cut into slices of [`SLICE`], after which the sleeper re-checks the
//! condition and its peer's liveness.
//!
//! Cost: while nobody sleeps a ring is one fence and one load of a line nobody
//! writes, no system call. The ringer that finds sleepers zeroes the count, so only
//! the first ring after a sleeper went to sleep pays for `futex_wake` (about 0.3-0.4
//! µs here), not every message sent during the ~20 µs the sleeper takes to wake.
//! A hostile process can only cause spurious or missed wake-ups of bounded length.
//!
//! # Asymmetric fences (Linux)
//!
//! The ringer's `fence(SeqCst)` is on every message's path and costs a full drain
//! of the store buffer, i.e. waiting for the cache line just written to arrive
//! (measured: it caps a stream of small messages at a few million per second). On
//! Linux the ringer's process registers with
//! `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)` when an endpoint attaches;
//! from then on its fence is only a compiler fence, and the *sleeper*, which is
//! about to sleep anyway, pays instead: after its SeqCst increment it calls
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which runs a full memory barrier
//! on every CPU running a registered process before it returns. This is the
//! pattern of membarrier(2)'s own example (fast path: store, compiler barrier,
//! load; slow path: store, membarrier, load), as in liburcu and Folly's
//! `asymmetricHeavyBarrier`: either the ringer's load sees the sleeper's count, or
//! the sleeper's re-check sees the ringer's store. Where registration fails (other
//! OSes, old kernels, seccomp) the ringer keeps its real fence; where the heavy
//! barrier fails, a sleep after it is short ([`SHORT_SLICE`]).
//!
//! # The first sleep goes without the heavy barrier
//!
//! The heavy barrier is an inter-processor interrupt to every CPU running a
//! registered process, and the sleeper waits for all of them: on a virtual machine
//! each is a VM exit on the other vCPU, which is usually running the very thread the
//! sleeper waits for (a peer process, a bridge, a network stack). Measured on a
//! 2-vCPU guest (`shmipc-bridge-bench`, a ping-pong through two bridges and zenoh,
//! where each round trip put two sleepers to sleep): removing it cut the round trip
//! by 10-20 %. So a blocking wait's *first* sleep ([`Bell::wait_for`]) skips it and
//! sleeps at most [`FIRST_SLICE`]; the second sleep runs it, and so does any sleep
//! after a wake-up or after a ringer took the announcement. A ringer that races the first sleep's announcement (its store still in its
//! store buffer while its load of `sleepers` reads the count from before the
//! increment: a window of the store's drain, well under a microsecond) finds no
//! sleeper and skips the wake, and the sleeper sees the message when its first slice
//! ends: late by about [`FIRST_SLICE`] at most (plus the timer's slack and the
//! wake-up), never lost. A wait that a message ends
//! within [`FIRST_SLICE`] (a request answered, a steady stream) runs no barrier at
//! all; a longer one runs one, [`FIRST_SLICE`] in, off the path of any message,
//! and no more: at the end of each later slice, an announcement that no ringer has
//! taken since the barrier (the epoch is the one it was made in) still stands, so
//! the sleeper checks the condition and its peer and sleeps on, without announcing
//! again (an idle receiver ran the barrier once per 10 ms slice before).
//! An async future keeps its announcement the same way between polls
//! ([`Bell::poll_async`]): re-polled at the end of its slice, or woken for
//! nothing, it sleeps on under the announcement while that stands, so an idle
//! future runs the barrier once too (one idle `recv_async` over 3 s: one
//! barrier, where it ran one per 10 ms slice, 290, before), and it holds one
//! count at most. A future dropped while pending leaves its count for the next
//! ringer, and a new future announces afresh: keep one receive in flight across a
//! `select!` loop's turns rather than a new one per turn. The WaitSet re-arms its
//! members in place (`crate::waitset`).

use std::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::sys::wait::{
    coarse_now, heavy_barrier, register_heavy_barrier, wait, wake_all, Wake, HEAVY_BARRIER,
};
use std::task::{Context, Poll};

use crate::waitset::{self, next_epoch, take_back, Arm, Held, Pending, Sleep, Undo, COUNT, EPOCH};

/// Longest single sleep before re-checking the condition and the peer's liveness.
///
/// Windows: 100 ms, as a mutex waiter's longest slice. There every slice's end
/// costs several kernel calls (the wait, and the peer's liveness: `OpenProcess`, its
/// state and times; each a wineserver round trip under Wine), while a wake-up never
/// needs it (the doorbell of `sys::wait` carries it): 10 slices a second keep a
/// blocked receiver far under 1 % of a CPU (`tests/windows_idle.rs`), and a dead
/// peer is still noticed within 100 ms.
pub(crate) const SLICE: Duration = Duration::from_millis(if cfg!(windows) { 100 } else { 10 });
/// A sleep after a heavy barrier that failed (see the module doc): the delay a
/// wake-up missed by a fence-less ringer can cost at most.
pub(crate) const SHORT_SLICE: Duration = Duration::from_micros(200);
/// Longest first sleep of a blocking wait, which skips the heavy barrier (see the
/// module doc): about the most a wake-up that raced the announcement can be late by.
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(1);

/// Whether this process's ringers may skip their fence: 0 not asked yet, 1 yes
/// (registered for global expedited membarrier), 2 no.
static LIGHT: AtomicU8 = AtomicU8::new(0);

/// Registers this process for asymmetric fences, once; call when an endpoint
/// attaches (a system call, kept off the data path).
pub(crate) fn prepare() {
    if LIGHT.load(Ordering::Relaxed) == 0 {
        let ok = register_heavy_barrier();
        LIGHT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    }
}

/// The ringer's side of the Dekker pattern.
#[inline]
fn light_fence() {
    if LIGHT.load(Ordering::Relaxed) == 1 {
        // The sleeper's membarrier stands in for our half (module doc).
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// How long a blocking receive spins before it sleeps (a blocked wake-up costs
/// about 20 µs on the target machines, so spinning less than that is cheap).
pub(crate) const SPIN: Duration = Duration::from_micros(20);

/// How long of [`SPIN`] a blocking call polls back to back; for the rest it yields
/// the CPU between polls. A peer answering within a few microseconds (a ping-pong,
/// a consumer keeping up) is caught by the back-to-back polls; a longer wait is one
/// where the peer is doing real work, and on a machine with more runnable threads
/// than CPUs (a pipeline of processes: publisher, bridge, network stack,
/// subscriber) a thread that spins there takes its CPU from the very threads it is
/// waiting for. With nothing else runnable the yield returns at once (a system
/// call, a few hundred ns), so an idle machine loses next to nothing.
pub(crate) const SPIN_EAGER: Duration = Duration::from_micros(2);

/// One direction's bell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bell<'a> {
    pub(crate) seq: &'a AtomicU32,
    pub(crate) sleepers: &'a AtomicU32,
}

impl<'a> Bell<'a> {
    /// Wakes every sleeper, if any; call after making the condition true.
    #[inline]
    pub(crate) fn ring(&self) {
        // SeqCst fence, or its asymmetric stand-in: see the module doc (pairs with
        // the sleeper's SeqCst RMW and heavy barrier).
        light_fence();
        if self.sleepers.load(Ordering::Relaxed) & COUNT != 0 {
            self.ring_slow();
        }
    }

    #[cold]
    fn ring_slow(&self) {
        let found = self
            .sleepers
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v & COUNT != 0).then(|| next_epoch(v))
            })
            .is_ok();
        if found {
            self.seq.fetch_add(1, Ordering::Release);
            wake_all(self.seq);
        }
    }

    /// Wakes every sleeper unconditionally (e.g. when an endpoint leaves).
    pub(crate) fn ring_always(&self) {
        fence(Ordering::SeqCst);
        let _ = self
            .sleepers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(next_epoch(v))
            });
        self.seq.fetch_add(1, Ordering::Release);
        wake_all(self.seq);
    }

    /// The async/WaitSet sleeper's announcement (the first step of `wait_for`'s
    /// sleep phase); the caller runs the heavy barrier after it
    /// (`sys::wait::heavy_barrier_checked`), then [`Bell::arm`] with the token
    /// returned here (the epoch the count was added in).
    pub(crate) fn announce(&self) -> u32 {
        // SeqCst RMW: the sleeper's half of the Dekker pattern (module doc). The
        // count saturates rather than carry into the epoch: a carry would look like
        // a ringer's zeroing without its `seq` bump and wake, and silently drop every
        // count (and standing announcement) there. Counts that are never taken back
        // can pile up: a future dropped while pending leaves its count for the next
        // ringer, so a loop that makes a new receive future every 10 ms on an idle
        // channel would reach the carry in about 11 minutes. At the cap the count is
        // non-zero already, so every ringer rings: the one the sleeper would have
        // added is not needed (its take-back only removes one of the piled-up
        // counts, 65 535 of them).
        #[cfg(all(test, not(miri), not(loom)))]
        tests::ANNOUNCED.with(|n| n.set(n.get() + 1));
        match self
            .sleepers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                (v & COUNT != COUNT).then_some(v + 1)
            }) {
            Ok(v) | Err(v) => v / EPOCH,
        }
    }

    /// Takes back an announcement made with `token` (see [`take_back`]).
    pub(crate) fn take_back(&self, token: u32) {
        take_back(self.sleepers, token);
    }

    /// Reads `seq`, then re-checks `ready` (which must consume nothing): ready, or
    /// where to sleep (see `crate::waitset`). `token`: what [`Bell::announce`]
    /// returned.
    pub(crate) fn arm<'b>(&self, token: u32, ready: impl FnOnce() -> bool) -> Arm<'b>
    where
        'a: 'b,
    {
        let seen = self.seq.load(Ordering::Acquire);
        let undo = Undo::Bell(self.sleepers, token);
        if ready() {
            waitset::undo(undo);
            return Arm::Ready;
        }
        let recheck = if crate::sys::wait::heavy_barrier_failed() && HEAVY_BARRIER {
            SHORT_SLICE
        } else {
            SLICE
        };
        Arm::Sleep(Sleep {
            word: self.seq,
            expected: seen,
            recheck,
            undo,
        })
    }

    /// One poll of the async form of [`Bell::wait_for`]: `attempt` is the kind's
    /// non-blocking try-call (`None`: would block; it may consume, since its result
    /// completes the future). Try; announce, heavy barrier, read `seq`, try again;
    /// else register for `cx` with the reactor and return `Pending` (see
    /// `crate::waitset` for why no wake-up is lost).
    ///
    /// The announcement is kept in `pending` between polls: a future re-polled at
    /// the end of its slice (its peer's liveness is due), or woken for nothing,
    /// whose announcement still stands (the epoch it was made in, no ring since:
    /// as a blocking wait's, see the module doc) sleeps on under it, without a new
    /// count or heavy barrier. So an idle future runs the barrier once, not at
    /// every slice. One the barrier did not back (it failed) is taken back and made
    /// again, barrier and all, at each poll. Either way the future holds one count
    /// at most, and the poll that completes takes it back. Dropping the future
    /// drops the registration; its count is left for the next ringer to zero (one
    /// `futex_wake` for nobody).
    pub(crate) fn poll_async<R>(
        &self,
        pending: &mut Pending,
        cx: &Context<'_>,
        mut attempt: impl FnMut() -> Option<R>,
    ) -> Poll<R> {
        pending.clear();
        let held = pending.held.take().filter(|h| h.bell == self.address());
        if let Some(r) = attempt() {
            if let Some(h) = held {
                take_back(self.sleepers, h.token);
            }
            return Poll::Ready(r);
        }
        let stands = held.filter(|h| {
            let v = self.sleepers.load(Ordering::Relaxed);
            h.backed
                && v / EPOCH == h.token
                && v & COUNT != 0
                && self.seq.load(Ordering::Acquire) == h.seen
        });
        let (token, seen, backed) = match (stands, held) {
            // The attempt above was the re-check: any ring since the barrier moved
            // `seq` off `seen`, and the reactor then fires at once.
            (Some(h), _) => (h.token, h.seen, true),
            (None, h) => {
                if let Some(h) = h {
                    // Zeroed by a ringer (then this is a no-op), or one the barrier
                    // did not back: taken back before the new one.
                    take_back(self.sleepers, h.token);
                }
                let token = self.announce();
                // `seq` right after the count: a ring during the barrier then moves
                // it off `seen` (the reactor fires at once) rather than taking the
                // count unseen, should another receiver take its message first.
                let seen = self.seq.load(Ordering::Acquire);
                let ran = crate::sys::wait::heavy_barrier_checked();
                if let Some(r) = attempt() {
                    take_back(self.sleepers, token);
                    return Poll::Ready(r);
                }
                // Where there is no heavy barrier the ringers keep their fence, and
                // the announcement stands as well.
                (token, seen, ran || !HEAVY_BARRIER)
            }
        };
        let recheck = if crate::sys::wait::heavy_barrier_failed() && HEAVY_BARRIER {
            SHORT_SLICE
        } else {
            SLICE
        };
        let sleep = Sleep {
            word: self.seq,
            expected: seen,
            recheck,
            undo: Undo::Bell(self.sleepers, token),
        };
        pending.register(&sleep, cx);
        pending.held = Some(Held {
            bell: self.address(),
            token,
            seen,
            backed,
        });
        Poll::Pending
    }

    /// Which bell this is, for comparison only.
    fn address(&self) -> usize {
        std::ptr::from_ref(self.sleepers) as usize
    }

    /// Waits until `poll` returns `Some`, or `deadline` passes (`None` is
    /// returned). `poll(true)` is asked after every sleep slice and once more when
    /// the deadline has passed: it may then do costly checks (is the peer alive?).
    /// A deadline passed on entry (a zero timeout) costs two polls and nothing else.
    pub(crate) fn wait_for<R>(
        &self,
        deadline: impl Into<Deadline>,
        mut poll: impl FnMut(bool) -> Option<R>,
    ) -> Option<R> {
        let deadline: Deadline = deadline.into();
        // What the wait is for may be there already: no clock read for it.
        if let Some(r) = poll(false) {
            return Some(r);
        }
        // A deadline already passed (a zero timeout) ends the wait with one last,
        // deep poll: no spinning, no sleeper count, no barrier.
        if deadline.passed() {
            return poll(true);
        }
        // Spin phase: the peer is likely busy on the other CPU. The first
        // [`SPIN_EAGER`] polls back to back; after that each poll gives the CPU to
        // any other runnable thread first (see [`SPIN_EAGER`]).
        let start = Instant::now();
        let mut i: u32 = 0;
        let mut polite = false;
        loop {
            if let Some(r) = poll(false) {
                return Some(r);
            }
            i = i.wrapping_add(1);
            if polite {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            if polite || i % 64 == 0 {
                let spun = Instant::now().duration_since(start);
                if deadline.passed() {
                    return poll(true);
                }
                if spun >= SPIN {
                    break;
                }
                polite = spun >= SPIN_EAGER;
            }
        }
        // Sleep phase.
        let mut first = true;
        // An announcement that the heavy barrier backs and that no ringer has taken
        // since (its token and `seq` then): still in force after a slice timed out.
        let mut standing: Option<(u32, u32)> = None;
        loop {
            let (token, seen, heavy_done) = match standing.take() {
                Some((token, seen)) => (token, seen, true),
                None => {
                    // SeqCst RMW, then the heavy barrier: see the module doc; the
                    // first sleep goes without it, and so sleeps at most FIRST_SLICE.
                    let token = self.announce();
                    // `seq` before the barrier, as in `poll_async`.
                    let seen = self.seq.load(Ordering::Acquire);
                    let heavy_done = !first && heavy_barrier();
                    (token, seen, heavy_done)
                }
            };
            if let Some(r) = poll(true) {
                take_back(self.sleepers, token);
                return Some(r);
            }
            if deadline.passed() {
                take_back(self.sleepers, token);
                return None;
            }
            // A short slice only where a ringer may have skipped its fence (it
            // registered for the asymmetric fence, which only Linux offers).
            let slice = match (first, !heavy_done && HEAVY_BARRIER) {
                (_, false) => SLICE,
                (true, true) => FIRST_SLICE,
                (false, true) => SHORT_SLICE,
            };
            first = false;
            let until = deadline.capped(slice);
            if wait(self.seq, seen, until) == Wake::TimedOut {
                let v = self.sleepers.load(Ordering::Relaxed);
                if heavy_done && v / EPOCH == token && v & COUNT != 0 {
                    // The epoch our count was added in: no ringer has zeroed it since
                    // the barrier. Any ring after our announcement moves `seq` off
                    // `seen` (the futex returns at once, or its wake comes), so the
                    // announcement stands: the next slice needs no new one nor a new
                    // barrier, and an idle wait runs the barrier once, not once a
                    // slice. (Were our count gone for another reason, an epoch wrap,
                    // the deep poll at every slice's end bounds the cost to a slice.)
                    standing = Some((token, seen));
                } else {
                    // Not woken: our count may still be there.
                    take_back(self.sleepers, token);
                }
            } else if let Some(r) = poll(false) {
                // Woken with the condition true: take it at once, without a new
                // announcement and heavy barrier on the wake-up's path. (The
                // ringer zeroed our count; if the wake-up was spurious, the epoch
                // says whether the count is still ours to take back.)
                take_back(self.sleepers, token);
                return Some(r);
            }
            // Woken: the ringer zeroed the count; the next turn registers again.
        }
    }
}

/// A rate limiter for costly peer checks.
///
/// `due` is on the path of every empty `try_recv`, i.e. inside callers' spin
/// loops, so it reads the coarse monotonic clock (`sys::wait::coarse_now`; Linux:
/// `CLOCK_MONOTONIC_COARSE`, a vDSO read of the last tick, ~6 ns here, against
/// ~24 ns for `Instant::now`, which was three quarters of an empty poll). Its resolution is one scheduler tick
/// (1-4 ms), fine for a period of milliseconds.
#[derive(Debug)]
pub(crate) struct Every {
    last: Option<Duration>,
    period: Duration,
}

impl Every {
    pub(crate) const fn new(period: Duration) -> Self {
        Self { last: None, period }
    }

    /// Makes the next [`Every::due`] true (a check found something and the caller's
    /// next look must confirm it).
    pub(crate) fn force(&mut self) {
        self.last = None;
    }

    /// True at most once per period (and at the first call).
    #[inline]
    pub(crate) fn due(&mut self) -> bool {
        let now = coarse_now();
        match self.last {
            Some(t) if now.saturating_sub(t) < self.period => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;

    thread_local! {
        /// Announcements made by this thread (each test runs on a thread of its own).
        pub(super) static ANNOUNCED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// A sleeper that stops waiting after a ringer zeroed its count (its slice
    /// ended, its future was dropped) must not take the count of a sleeper that
    /// announced after that ring: the next ringer would skip its wake-up.
    #[test]
    fn a_late_take_back_leaves_a_newer_sleepers_count() {
        let seq = AtomicU32::new(0);
        let sleepers = AtomicU32::new(0);
        let bell = Bell {
            seq: &seq,
            sleepers: &sleepers,
        };
        let a = bell.announce();
        bell.ring(); // zeroes A's count, moves `seq`
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 0);
        let b = bell.announce();
        bell.take_back(a); // A gives up late
        assert_eq!(
            sleepers.load(Ordering::Relaxed) & COUNT,
            1,
            "a stale take-back removed another sleeper's announcement"
        );
        // B is still announced: the next ring wakes it.
        let before = seq.load(Ordering::Relaxed);
        bell.ring();
        assert_ne!(seq.load(Ordering::Relaxed), before);
        bell.take_back(b); // already zeroed: nothing to take
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 0);
        // Within one epoch a take-back is exact.
        let c = bell.announce();
        let d = bell.announce();
        bell.take_back(c);
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 1);
        bell.take_back(d);
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 0);
    }

    /// Announcements pile up (futures re-polled or dropped while pending never take
    /// theirs back), but never carry into the epoch, which only ringers move: a
    /// carry zeroed the count without a wake-up.
    #[test]
    fn piled_up_announcements_saturate_and_keep_the_epoch() {
        let seq = AtomicU32::new(0);
        let sleepers = AtomicU32::new(3 * EPOCH + COUNT - 2);
        let bell = Bell {
            seq: &seq,
            sleepers: &sleepers,
        };
        for _ in 0..5 {
            assert_eq!(bell.announce(), 3);
        }
        assert_eq!(sleepers.load(Ordering::Relaxed), 3 * EPOCH + COUNT);
        // Still a count: a ringer finds it, zeroes it with a new epoch, and wakes.
        bell.ring();
        assert_eq!(sleepers.load(Ordering::Relaxed), 4 * EPOCH);
        assert_eq!(seq.load(Ordering::Relaxed), 1);
    }

    /// The same through the async path: a dropped pending sleeper's undo after a
    /// ring leaves a later sleeper's announcement alone.
    #[test]
    fn a_dropped_async_sleeper_keeps_a_newer_announcement() {
        let seq = AtomicU32::new(0);
        let sleepers = AtomicU32::new(0);
        let bell = Bell {
            seq: &seq,
            sleepers: &sleepers,
        };
        let ta = bell.announce();
        let Arm::Sleep(a) = bell.arm(ta, || false) else {
            panic!("nothing is ready")
        };
        // A ringer between its zeroing and its `seq` bump: `seq` has not moved
        // yet, which the old take-back (guarded by `seq`) could not tell apart.
        sleepers.store(
            next_epoch(sleepers.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        let tb = bell.announce();
        a.undo();
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 1);
        bell.take_back(tb);
        assert_eq!(sleepers.load(Ordering::Relaxed) & COUNT, 0);
    }

    /// A waker that counts its wake-ups and unparks the test's thread.
    struct Counted {
        woken: std::sync::atomic::AtomicUsize,
        thread: std::thread::Thread,
    }

    impl std::task::Wake for Counted {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.woken.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    /// An idle future re-polled (its slice ended, or a spurious wake-up) sleeps on
    /// under the announcement it made: no new count piles up, the epoch stays, and
    /// a ring still reaches it. The poll that completes takes its count back.
    #[test]
    fn an_idle_future_keeps_one_announcement_and_is_still_rung() {
        let seq = AtomicU32::new(0);
        let sleepers = AtomicU32::new(0);
        let bell = Bell {
            seq: &seq,
            sleepers: &sleepers,
        };
        let counted = std::sync::Arc::new(Counted {
            woken: 0.into(),
            thread: std::thread::current(),
        });
        let waker = std::task::Waker::from(counted.clone());
        let cx = Context::from_waker(&waker);
        let mut pending = Pending::default();
        let announced = ANNOUNCED.with(std::cell::Cell::get);
        for _ in 0..50 {
            assert!(bell
                .poll_async(&mut pending, &cx, || None::<()>)
                .is_pending());
        }
        assert_eq!(
            sleepers.load(Ordering::Relaxed),
            1,
            "re-polls piled up counts (or moved the epoch)"
        );
        // Where the heavy barrier runs (not under seccomp, say), the first
        // announcement stands: no new one, so no new barrier either.
        if pending.held.is_some_and(|h| h.backed) {
            assert_eq!(
                ANNOUNCED.with(std::cell::Cell::get) - announced,
                1,
                "re-polls announced (and ran the barrier) again"
            );
        }
        // A ring reaches the registration made under the standing announcement.
        bell.ring();
        let end = Instant::now() + Duration::from_secs(10);
        while counted.woken.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < end, "the ring never woke the future");
            std::thread::park_timeout(Duration::from_millis(10));
        }
        assert_eq!(
            sleepers.load(Ordering::Relaxed),
            EPOCH,
            "the ringer took the count"
        );
        // ... and moved `seq` off the value the registration sleeps on (so the
        // reactor fires now, not at the slice's end).
        let held = pending
            .held
            .expect("a pending future holds its announcement");
        assert_ne!(seq.load(Ordering::Relaxed), held.seen);
        // Polled after the ring: announces afresh, in the new epoch.
        assert!(bell
            .poll_async(&mut pending, &cx, || None::<()>)
            .is_pending());
        assert_eq!(sleepers.load(Ordering::Relaxed), EPOCH + 1);
        assert!(bell
            .poll_async(&mut pending, &cx, || None::<()>)
            .is_pending());
        assert_eq!(sleepers.load(Ordering::Relaxed), EPOCH + 1);
        // Ready without a ring (e.g. the peer died): the count goes with it.
        assert_eq!(
            bell.poll_async(&mut pending, &cx, || Some(7)),
            Poll::Ready(7)
        );
        assert_eq!(sleepers.load(Ordering::Relaxed), EPOCH);
        assert!(pending.held.is_none());
    }

    /// A held announcement a ringer zeroed, or one of another bell, is not slept
    /// under: the future announces again on its own bell.
    #[test]
    fn a_future_announces_again_once_its_announcement_is_gone() {
        let (seq, sleepers) = (AtomicU32::new(0), AtomicU32::new(0));
        let bell = Bell {
            seq: &seq,
            sleepers: &sleepers,
        };
        let waker = std::task::Waker::from(std::sync::Arc::new(Counted {
            woken: 0.into(),
            thread: std::thread::current(),
        }));
        let cx = Context::from_waker(&waker);
        let mut pending = Pending::default();
        assert!(bell
            .poll_async(&mut pending, &cx, || None::<()>)
            .is_pending());
        // A ringer between its zeroing and its `seq` bump: the count is gone.
        sleepers.store(
            next_epoch(sleepers.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        assert!(bell
            .poll_async(&mut pending, &cx, || None::<()>)
            .is_pending());
        assert_eq!(
            sleepers.load(Ordering::Relaxed),
            EPOCH + 1,
            "slept without a count"
        );
        // The same future state polled on another bell: announces there, and leaves
        // the first bell's count (it cannot tell whose it is).
        let (seq2, sleepers2) = (AtomicU32::new(0), AtomicU32::new(0));
        let other = Bell {
            seq: &seq2,
            sleepers: &sleepers2,
        };
        assert!(other
            .poll_async(&mut pending, &cx, || None::<()>)
            .is_pending());
        assert_eq!(sleepers2.load(Ordering::Relaxed), 1);
        assert_eq!(sleepers.load(Ordering::Relaxed), EPOCH + 1);
    }
}
