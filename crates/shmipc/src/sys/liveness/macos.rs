//! macOS: no thread start times here yet, so lock owners cannot be checked (the
//! synchronization objects are unsupported); a process is known by existence only
//! (`kill(pid, 0)`): a reused process id is mistaken for the peer.

use std::io;

use super::unix::kill0;
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

/// No namespaces to compare.
pub(crate) fn namespaces() -> [u64; 2] {
    [0, 0]
}

/// Existence only.
pub(super) fn probe(pid: u32) -> Probe {
    kill0(pid)
}

/// No fork handler registered here: identities are cached per process id.
pub(crate) fn fork_generation() -> Option<u64> {
    None
}

pub(crate) use super::pid_token::{process_id, process_identity, process_liveness};
