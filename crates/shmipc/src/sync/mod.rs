//! Inter-process synchronization.
//!
//! * [`wait`]: the OS wait on a 32-bit word in shared memory (futex without
//!   `FUTEX_PRIVATE_FLAG` on Linux), kept apart from the lock state machines that use it.

#[allow(dead_code)] // used by the lock and channel layers
pub(crate) mod wait;
