//! Which process holds an endpoint, and whether it still lives.
//!
//! An endpoint registers itself by storing its process's *token* (its endpoint
//! identity from `sys::liveness`: `process_token`) in the segment; a peer is alive
//! while `sys::liveness::process_alive` says so, asked on the channel's own
//! segment (its [`Scope`]). Linux: a random nonce whose byte of the channel's
//! segment the process holds an open-file-description lock on, released by the
//! kernel when the process dies (any PID namespace, no pid compared; only users
//! who can open the channel can lock its bytes); Windows: process id and
//! creation time; other Unixes: `kill(pid, 0)`. A killed endpoint clears nothing
//! and is recognised as dead; nothing stays locked. Conservative: a peer whose
//! liveness cannot be proven gone counts as alive.
//!
//! Token 0 means "nobody".

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sys::wait::coarse_now;

pub(crate) use crate::sys::liveness::{
    is_me, process_alive as alive, process_token as me, token_pid as pid, Scope,
};

/// How long a thread trusts that a process it found alive still is, in
/// [`Place::gone`]: a WaitSet re-checks the peers of all its idle members at the end
/// of each slice, often many channels of one peer process, and pays one system
/// call per peer process and sweep instead of one per member. A death is noticed at
/// most this much later.
pub(crate) const ALIVE_FOR: Duration = Duration::from_millis(2);

/// `alive(scope, tok)`, answered from this thread's last few "alive" answers
/// younger than [`ALIVE_FOR`] (a "dead" answer is final and never needs a cache).
/// The cache is keyed by identity alone: an identity alive on one object a moment
/// ago but gone from this one is noticed at most [`ALIVE_FOR`] later, the same
/// conservative error (a wrong "alive" only delays).
fn alive_recently(scope: Scope<'_>, tok: u64) -> bool {
    const N: usize = 4;
    thread_local! {
        static SEEN: Cell<[(u64, Duration); N]> = const { Cell::new([(0, Duration::ZERO); N]) };
    }
    let now = coarse_now();
    let mut seen = SEEN.with(Cell::get);
    if seen
        .iter()
        .any(|&(t, at)| t == tok && now.saturating_sub(at) < ALIVE_FOR)
    {
        return true;
    }
    let alive = alive(scope, tok);
    if alive {
        // Replace this token's entry, or the oldest.
        let i = seen
            .iter()
            .position(|&(t, _)| t == tok)
            .unwrap_or_else(|| (0..N).min_by_key(|&i| seen[i].1).unwrap_or(0));
        seen[i] = (tok, now);
        SEEN.with(|c| c.set(seen));
    }
    alive
}

/// One endpoint's place in the segment: its token, and how many endpoints have
/// ever attached there (so "never had a peer" and "the peer left" differ), and the
/// segment, where liveness is proven and asked.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) token: &'a AtomicU64,
    pub(crate) attaches: &'a AtomicU64,
    pub(crate) scope: Scope<'a>,
}

/// What a claim found in the place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Ours now.
    Taken,
    /// A live process holds it.
    Held(u32),
}

impl Place<'_> {
    /// Takes the place if it is free or its holder is dead. Bounded: a hostile
    /// process flipping the word cannot keep us here.
    pub(crate) fn claim(&self) -> Claim {
        let me = me(self.scope);
        for _ in 0..1000 {
            // Acquire pairs with the Release of a previous holder's `leave`, so what
            // it wrote before leaving is visible to us.
            let cur = self.token.load(Ordering::Acquire);
            if cur != 0 && alive(self.scope, cur) {
                return Claim::Held(pid(cur));
            }
            if self
                .token
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.attaches.fetch_add(1, Ordering::AcqRel);
                return Claim::Taken;
            }
        }
        Claim::Held(pid(self.token.load(Ordering::Relaxed)))
    }

    /// Gives the place up, if still ours. Release: everything this endpoint did
    /// (its last messages) happens before a peer sees the place empty.
    pub(crate) fn leave(&self) {
        let cur = self.token.load(Ordering::Relaxed);
        if is_me(cur) {
            let _ = self
                .token
                .compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    /// True once an endpoint has attached and none is attached and alive now.
    /// Costs a system call when the place is held by another process (unless this
    /// thread saw that process alive within [`ALIVE_FOR`]): rate-limit it.
    pub(crate) fn gone(&self) -> bool {
        let tok = self.token.load(Ordering::Acquire);
        if tok == 0 {
            return self.attaches.load(Ordering::Acquire) > 0;
        }
        !alive_recently(self.scope, tok)
    }

    /// True once an endpoint has attached and none is attached now (cheap: does not
    /// check that a holder is alive).
    pub(crate) fn left(&self) -> bool {
        self.token.load(Ordering::Acquire) == 0 && self.attaches.load(Ordering::Acquire) > 0
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn claim_and_leave() {
        let t = AtomicU64::new(0);
        let a = AtomicU64::new(0);
        let seg = crate::Segment::options()
            .size(4096)
            .create_unnamed()
            .unwrap();
        let p = Place {
            token: &t,
            attaches: &a,
            scope: seg.liveness(),
        };
        assert!(!p.gone());
        assert_eq!(p.claim(), Claim::Taken);
        assert_eq!(p.claim(), Claim::Held(std::process::id()));
        assert!(!p.gone());
        p.leave();
        assert!(p.gone() && p.left());
        // A dead holder's place is taken over.
        t.store(u64::from(u32::MAX - 1) << 32 | 5, Ordering::Relaxed);
        assert_eq!(p.claim(), Claim::Taken);
    }
}
