//! OSes without a liveness backend: no owner identity; every peer counts as alive
//! (a dead peer then goes unnoticed until its place is cleared).

use super::Probe;

pub(crate) use super::no_owners::{
    compute_owner, fork_generation, namespaces, owner_liveness_of, owner_thread, SUPPORTED,
};
pub(crate) use super::pid_token::{process_id, process_identity, process_liveness_of};
pub(crate) use super::unscoped::{
    current_owner, hold_process, is_process, owner_liveness, process_liveness, Anchor, Scope,
};

/// Nothing to ask.
pub(super) fn probe(_pid: u32) -> Probe {
    Probe::Unknown
}
