//! Linux: a shared futex (no `FUTEX_PRIVATE_FLAG`, so the kernel keys the wait on the
//! physical page and processes that map the same segment wake each other),
//! `membarrier(2)` for the asymmetric fence, `CLOCK_MONOTONIC_COARSE` for the cheap
//! clock.

use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::{futex, membarrier, MembarrierCommand};
use rustix::time::{clock_gettime, ClockId};

use super::Wake;
use crate::shim::AtomicU32;

/// The wait sleeps in the kernel.
pub(super) const NATIVE: bool = true;

pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    // Shared (no PRIVATE flag): the wait is keyed on the page, across processes.
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Err(Errno::TIMEDOUT) => Wake::TimedOut,
        // Ok: woken; AGAIN: the value had changed; INTR: a signal. Re-check.
        _ => Wake::Maybe,
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), n.min(i32::MAX.unsigned_abs())).unwrap_or(0)
}

/// Registers this process for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`; false if refused.
pub(crate) fn register_heavy_barrier() -> bool {
    membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
}

/// A full barrier on every CPU running a registered process; false if refused.
pub(crate) fn heavy_barrier() -> bool {
    membarrier(MembarrierCommand::GlobalExpedited).is_ok()
}

/// `CLOCK_MONOTONIC_COARSE`: a vDSO read of the last tick (~6 ns here, against ~24 ns
/// for `Instant::now`), at scheduler-tick resolution (1-4 ms).
#[inline]
pub(crate) fn coarse_now() -> Duration {
    let ts = clock_gettime(ClockId::MonotonicCoarse);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}
