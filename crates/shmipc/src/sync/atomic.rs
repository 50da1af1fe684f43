//! The atomics the lock state machines use: `core`'s, or `loom`'s under `cfg(loom)`
//! so that the model checker can explore every interleaving (as crossbeam-utils does).
//!
//! Only the pure state machines (`raw.rs`) and the OS wait (`wait.rs`) go through this
//! shim; the glue that places them in a [`View`](crate::View) needs `core`'s atomics
//! (their layout is the shared-memory layout) and is not built under loom.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One step of a spin-wait: a CPU hint, or a scheduling point for loom.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
