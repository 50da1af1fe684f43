//! macOS: `__ulock_wait` / `__ulock_wake` with `UL_COMPARE_AND_WAIT_SHARED`, the
//! kernel's address wait keyed on the memory object (so it crosses processes that
//! map the same segment). libc++ (`std::atomic::wait`) and Rust's std (before
//! `os_sync_wait_on_address`, macOS 14.4) use the same calls; they are in libSystem
//! on every macOS since 10.12.
//!
//! # Safety
//!
//! The two FFI calls of the wait; each passes the address of a live `AtomicU32`,
//! which the kernel only reads (compare) or uses as a key (wake).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::time::Duration;

use super::Wake;
use crate::shim::AtomicU32;

pub(crate) use super::fallback::{coarse_now, heavy_barrier, register_heavy_barrier};

/// The wait sleeps in the kernel.
pub(super) const NATIVE: bool = true;

const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
const ULF_WAKE_ALL: u32 = 0x0000_0100;
const ULF_NO_ERRNO: u32 = 0x0100_0000;
const ETIMEDOUT: c_int = 60;

extern "C" {
    fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> c_int;
    fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> c_int;
}

pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    // 0 means "no timeout"; a longer timeout than fits waits a round and re-checks.
    let us = match timeout {
        None => 0,
        Some(t) => u32::try_from(t.as_micros()).unwrap_or(u32::MAX).max(1),
    };
    // SAFETY: `word` is a live AtomicU32 for the call; the kernel compares it with
    // `expected` and sleeps, keyed on its address; no memory is written.
    let rc = unsafe {
        __ulock_wait(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
            word.as_ptr().cast(),
            u64::from(expected),
            us,
        )
    };
    if rc == -ETIMEDOUT {
        Wake::TimedOut
    } else {
        // Woken, changed (EFAULT/EINTR/…): the caller re-checks.
        Wake::Maybe
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) -> usize {
    let all = if n > 1 { ULF_WAKE_ALL } else { 0 };
    // SAFETY: `word` is a live AtomicU32; its address is only a key here.
    let rc = unsafe {
        __ulock_wake(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | all,
            word.as_ptr().cast(),
            0,
        )
    };
    usize::from(rc == 0)
}
pub(super) use super::fallback::{wait_many, wake_private};
