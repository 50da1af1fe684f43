//! OSes without a liveness backend: no owner identity; every peer counts as alive
//! (a dead peer then goes unnoticed until its place is cleared).

use std::io;

use super::{Liveness, Probe};

/// Lock owners cannot be checked here.
pub(crate) const SUPPORTED: bool = false;

/// No owner identity here.
pub(super) fn compute_owner() -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Never called (no object can be opened), but conservative: alive.
pub(crate) fn owner_liveness(_id: u64) -> Liveness {
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

/// Nothing to ask.
pub(super) fn probe(_pid: u32) -> Probe {
    Probe::Unknown
}

/// No fork detection here.
pub(crate) fn fork_generation() -> Option<u64> {
    None
}

pub(crate) use super::pid_token::{process_id, process_identity, process_liveness};
