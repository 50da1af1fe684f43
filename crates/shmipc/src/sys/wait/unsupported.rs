//! OSes without a cross-process wait on a word: a bounded sleep-poll.

pub(crate) use super::fallback::{coarse_now, heavy_barrier, register_heavy_barrier};
pub(super) use super::fallback::{poll_wait as wait, poll_wake as wake};

/// The wait polls.
pub(super) const NATIVE: bool = false;
pub(super) use super::fallback::{wait_many, wake_private};
