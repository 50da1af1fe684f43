//! OSes without a backend for the synchronization objects yet: creating or opening
//! one returns an `Unsupported` error. The state machines build everywhere.

use std::io;

use super::Liveness;

// Named objects are segments holding lock words here.
#[cfg(not(loom))]
pub(crate) use super::native_none::{
    inspect_named, NativeEvent, NativeMutex, NativeSemaphore, NativeWaitError, NATIVE_NAMED,
};

/// Whether this OS has the synchronization objects.
pub(crate) const SUPPORTED: bool = false;

/// No owner identity here.
///
/// # Errors
/// Always: unsupported.
pub(crate) fn current_owner() -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Never called (no object can be opened), but conservative: alive.
pub(crate) fn liveness(_id: u64) -> Liveness {
    Liveness::Alive
}

/// No owner ids here.
pub(crate) fn owner_thread(_id: u64) -> Option<u32> {
    None
}

/// No namespaces.
pub(crate) fn namespaces() -> [u64; 2] {
    [0, 0]
}
