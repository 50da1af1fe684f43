//! Sleeping on a 32-bit word in shared memory until another process changes it, and
//! waking such sleepers; plus the two helpers of the channels' sleep path (the
//! asymmetric fence and a cheap clock).
//!
//! One file per OS, picked here, each exporting the same items:
//! * `wait(word, expected, timeout) -> Wake`, `wake(word, n) -> usize`;
//! * `register_heavy_barrier() -> bool`, `heavy_barrier() -> bool` (see
//!   `channel/notify.rs`: membarrier on Linux, unavailable elsewhere);
//! * `coarse_now() -> Duration` (a monotonic stamp at tick resolution).
//!
//! | OS | wait on a word across processes |
//! |----|----|
//! | Linux | `futex(FUTEX_WAIT/FUTEX_WAKE)` without `FUTEX_PRIVATE_FLAG`: keyed on the page |
//! | macOS | `__ulock_wait(UL_COMPARE_AND_WAIT_SHARED)` (what libc++'s `atomic::wait` uses) |
//! | Windows | a named kernel semaphore per waited word (a doorbell; see `windows.rs`); a bounded sleep-poll for words outside named segments |
//! | others | a bounded sleep-poll |
//! | `cfg(loom)` | a loom condition variable (a lost wake-up is a deadlock in the model) |
//!
//! Callers never trust a wake-up: they re-check their condition in a loop with a
//! deadline, so spurious and lost wake-ups cost time, never correctness. Under
//! `cfg(loom)` a wait with a deadline is a scheduling point that reports `TimedOut`
//! (so the callers' timeout paths are explored).

use crate::deadline::Deadline;
use crate::shim::AtomicU32;

#[cfg(loom)]
#[path = "loom.rs"]
mod imp;

#[cfg(all(target_os = "linux", not(loom)))]
#[path = "linux.rs"]
mod imp;

#[cfg(all(target_os = "macos", not(loom)))]
#[path = "macos.rs"]
mod imp;

#[cfg(all(windows, not(loom)))]
#[path = "windows.rs"]
mod imp;

#[cfg(all(not(any(target_os = "linux", target_os = "macos", windows)), not(loom)))]
#[path = "unsupported.rs"]
mod imp;

/// The reactor behind async waits and the WaitSet (`futex_waitv` on Linux).
#[cfg(not(loom))]
pub(crate) mod reactor;

/// The portable stand-ins that OS files without a native form re-export.
#[allow(dead_code)]
mod fallback;

#[allow(unused_imports)] // under loom the channel helpers are not used
pub(crate) use imp::{coarse_now, heavy_barrier, register_heavy_barrier};

/// Tells the waits that a view of `handle`'s segment is mapped at `base`, `len`
/// bytes from `offset` in the segment: on Windows words in it get kernel doorbells
/// from now on (`windows.rs`); elsewhere there is nothing to do. Called by the
/// layer that maps views (`view.rs`), so that the shared-memory backend needs
/// nothing of `wait`.
#[allow(unused_variables)]
pub(crate) fn view_mapped(base: *const u8, len: usize, handle: &crate::sys::Handle, offset: u64) {
    #[cfg(all(windows, not(loom)))]
    imp::register_mapping(
        base,
        len,
        std::os::windows::io::AsRawHandle::as_raw_handle(&handle.section()),
        offset,
    );
}

/// Tells the waits that the view mapped at `base` is about to be unmapped (its
/// doorbells go with it); call before unmapping.
#[allow(unused_variables)]
pub(crate) fn view_unmapping(base: *const u8) {
    #[cfg(all(windows, not(loom)))]
    imp::unregister_mapping(base);
}

/// Set when a heavy barrier run by an async waiter failed (its slices are then short).
#[cfg(not(loom))]
static HEAVY_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The heavy barrier of an async or WaitSet sleeper (see `channel/notify.rs`),
/// remembering a failure for [`heavy_barrier_failed`]; whether it ran.
#[cfg(not(loom))]
pub(crate) fn heavy_barrier_checked() -> bool {
    let ran = heavy_barrier();
    if !ran {
        HEAVY_FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    ran
}

/// Whether a heavy barrier has failed in this process.
#[cfg(not(loom))]
pub(crate) fn heavy_barrier_failed() -> bool {
    HEAVY_FAILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// What ended a wait. Either way the caller re-checks its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, interrupted, or the word no longer held `expected`.
    Maybe,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> Wake {
    let timeout = match deadline.left() {
        None => None,
        Some(left) if left.is_zero() => return Wake::TimedOut,
        Some(left) => Some(left),
    };
    imp::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many woke
/// (where the OS says).
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    imp::wake(word, n)
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    imp::wake(word, u32::MAX)
}

/// Whether this OS has the asymmetric fence (`heavy_barrier`): where it has not,
/// no ringer ever skips its fence.
pub(crate) const HEAVY_BARRIER: bool = cfg!(all(target_os = "linux", not(loom)));

/// Whether this OS's wait sleeps in the kernel until woken (rather than polling).
#[allow(dead_code)]
pub(crate) const NATIVE: bool = imp::NATIVE;

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn times_out_when_nothing_changes() {
        let w = AtomicU32::new(7);
        let deadline = Instant::now() + Duration::from_millis(20);
        while wait(&w, 7, Deadline::At(deadline)) != Wake::TimedOut {}
        assert!(Instant::now() >= deadline);
        assert_eq!(wait(&w, 7, Deadline::Now), Wake::TimedOut);
    }

    #[test]
    fn returns_at_once_when_value_differs() {
        let w = AtomicU32::new(1);
        assert_eq!(
            wait(&w, 2, Deadline::after(Duration::from_secs(5))),
            Wake::Maybe
        );
    }

    #[test]
    fn wakes_a_sleeping_thread() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            let deadline = Deadline::after(Duration::from_secs(10));
            while w2.load(Ordering::Acquire) == 0 {
                if wait(&w2, 0, deadline) == Wake::TimedOut {
                    return false;
                }
            }
            true
        });
        w.store(1, Ordering::Release);
        wake_all(&w);
        assert!(t.join().unwrap());
    }

    #[test]
    fn coarse_clock_moves_forward() {
        let a = coarse_now();
        let b = coarse_now();
        assert!(b >= a);
    }
}
