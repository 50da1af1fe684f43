//! Windows: `WaitOnAddress` does not cross processes, so a wait on a word in shared
//! memory is a bounded sleep-poll here. The objects that must sleep in the kernel
//! pair their word with a named kernel object instead (`sys/kobj`).

pub(crate) use super::fallback::{coarse_now, heavy_barrier, register_heavy_barrier};
pub(super) use super::fallback::{poll_wait as wait, poll_wake as wake};

/// The wait polls.
pub(super) const NATIVE: bool = false;
