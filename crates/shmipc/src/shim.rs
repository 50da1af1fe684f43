//! The one loom shim: the atomics of the lock state machines (`sync/raw.rs`), the
//! channel rings (`channel/*_ring.rs`) and the OS wait (`sys/wait`) are `core`'s, or
//! `loom`'s under `cfg(loom)`, so that the model checker explores every
//! interleaving of the same code production runs (as crossbeam-utils does).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shmipc --lib --release sync::` (or `channel::`)
//!
//! The glue that places these words in a [`View`](crate::View) needs `core`'s
//! atomics (their layout is the shared-memory layout) and is not built under loom.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// One step of a spin-wait: a CPU hint, or a scheduling point for loom.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
