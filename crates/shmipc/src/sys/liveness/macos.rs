//! macOS: no thread start times here yet, so lock owners cannot be checked (the
//! synchronization objects are unsupported); a process is known by existence only
//! (`kill(pid, 0)`): a reused process id is mistaken for the peer.

use super::unix::kill0;
use super::Probe;

pub(crate) use super::no_owners::{
    compute_owner, fork_generation, namespaces, owner_liveness_of, owner_thread, SUPPORTED,
};
pub(crate) use super::pid_token::{process_id, process_identity, process_liveness_of};
pub(crate) use super::unscoped::{
    current_owner, hold_process, is_process, owner_liveness, process_liveness, Anchor, Scope,
};

/// Existence only.
pub(super) fn probe(pid: u32) -> Probe {
    kill0(pid)
}
