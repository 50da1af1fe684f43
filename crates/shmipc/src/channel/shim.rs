//! The ring algorithms' atomics: the crate's one loom shim (`crate::shim`), so that
//! the same ring code is model checked.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shmipc --lib --release channel::`

pub(crate) use crate::shim::{fence, AtomicU64, Ordering};

/// One turn of a short wait for another thread's step: a spin hint, and every so
/// often the rest of the time slice (loom: a yield to the model's scheduler).
#[inline]
pub(crate) fn spin_yield() {
    crate::shim::spin_loop();
    #[cfg(not(loom))]
    std::thread::yield_now();
}
