//! Portable stand-ins for OSes without a cross-process wait on a word, or without
//! the channels' asymmetric fence.

use std::time::{Duration, Instant};

use super::Wake;
use crate::shim::{AtomicU32, Ordering};

/// How long one poll sleeps.
const NAP: Duration = Duration::from_micros(200);

/// No cross-process address wait: look at the word, then sleep a short while. Correct
/// (every caller re-checks its condition), but a wake-up is up to [`NAP`] late and a
/// sleeper wakes 5 000 times a second.
pub(crate) fn poll_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    if word.load(Ordering::Acquire) != expected {
        return Wake::Maybe;
    }
    match timeout {
        Some(t) if t <= NAP => {
            std::thread::sleep(t);
            Wake::TimedOut
        }
        _ => {
            std::thread::sleep(NAP);
            Wake::Maybe
        }
    }
}

/// Nothing to wake: sleepers poll.
pub(crate) fn poll_wake(_word: &AtomicU32, _n: u32) -> usize {
    0
}

/// No asymmetric fence here: ringers keep their real fence.
pub(crate) fn register_heavy_barrier() -> bool {
    false
}

/// No asymmetric fence here.
pub(crate) fn heavy_barrier() -> bool {
    false
}

/// A cheap monotonic time stamp (since an arbitrary origin).
pub(crate) fn coarse_now() -> Duration {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// No wait on many words: the reactor polls.
#[cfg(not(loom))]
pub(crate) fn wait_many(
    _ctl: &AtomicU32,
    _ctl_seen: u32,
    _words: &[(usize, u32)],
    _until: Option<Instant>,
) -> super::reactor::Many {
    super::reactor::Many::Unsupported
}

/// Nothing to wake: the reactor polls.
#[cfg(not(loom))]
pub(crate) fn wake_private(_word: &AtomicU32) {}
