//! The atomics the ring algorithms use: `std`'s normally, loom's when the crate is
//! built with `--cfg loom` for its unit tests, so that the same ring code is model
//! checked (crossbeam-utils does the same).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shmipc --lib --release channel::`

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;

/// One turn of a short wait for another thread's step: a spin hint, and every so
/// often the rest of the time slice (loom: a yield to the model's scheduler).
#[inline]
pub(crate) fn spin_yield() {
    #[cfg(all(loom, test))]
    loom::thread::yield_now();
    #[cfg(not(all(loom, test)))]
    {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}
