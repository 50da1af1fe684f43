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

/// Wakes the reactor's process-private control word.
pub(super) fn wake_private(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, 1);
}

/// `futex_waitv(2)` on the reactor's control word (process-private) and `words`
/// (shared; `(address, expected)`), until woken or `until` (see `reactor.rs`).
/// The addresses are only handed to the kernel, which reports a bad one as `EFAULT`.
pub(super) fn wait_many(
    ctl: &AtomicU32,
    ctl_seen: u32,
    words: &[(usize, u32)],
    until: Option<std::time::Instant>,
) -> super::reactor::Many {
    use super::reactor::Many;
    let mut waits = [const { futex::Wait::new() }; super::reactor::GROUP + 1];
    let n = words.len().min(super::reactor::GROUP);
    for (w, &(addr, expected)) in waits.iter_mut().zip(&words[..n]) {
        w.val = u64::from(expected);
        w.uaddr = futex::WaitPtr::new(addr as *mut std::ffi::c_void);
        w.flags = futex::WaitFlags::SIZE_U32;
    }
    waits[n].val = u64::from(ctl_seen);
    waits[n].uaddr = futex::WaitPtr::new(std::ptr::from_ref(ctl).cast_mut().cast());
    waits[n].flags = futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE;
    // An absolute CLOCK_MONOTONIC deadline (the clock `Instant` reads on Linux).
    let ts = until.map(|u| {
        let left = u.saturating_duration_since(std::time::Instant::now());
        let now = clock_gettime(ClockId::Monotonic);
        let mut sec = now
            .tv_sec
            .saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX));
        let mut nsec = now.tv_nsec + i64::from(left.subsec_nanos());
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.saturating_add(1);
        }
        futex::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    });
    match futex::waitv(
        &waits[..=n],
        futex::WaitvFlags::empty(),
        ts.as_ref(),
        ClockId::Monotonic,
    ) {
        Ok(i) if i == n => Many::Control,
        Ok(i) => Many::Woken(i),
        Err(Errno::TIMEDOUT) => Many::TimedOut,
        Err(Errno::INTR) => Many::Control,
        Err(Errno::NOSYS) => Many::Unsupported,
        // AGAIN: some value differed at entry; FAULT: a stale address.
        Err(_) => Many::Some,
    }
}
