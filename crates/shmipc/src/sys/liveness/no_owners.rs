//! For OSes where lock owners cannot be named and checked (the synchronization
//! objects are unsupported there): the owner half of the interface, as stubs that
//! say so.

use std::io;

use super::Liveness;

/// Lock owners cannot be checked here.
pub(crate) const SUPPORTED: bool = false;

/// No owner identity here.
pub(crate) fn compute_owner() -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Never called (no object can be opened), but conservative: alive.
pub(crate) fn owner_liveness_of(_id: u64) -> Liveness {
    Liveness::Alive
}

/// No owner ids here.
pub(crate) fn owner_thread(_id: u64) -> Option<u32> {
    None
}

/// No namespaces to compare.
pub(crate) fn namespaces() -> [u64; 2] {
    [0, 0]
}

/// No fork handler registered here: identities are cached per process id.
pub(crate) fn fork_generation() -> Option<u64> {
    None
}
