//! No way to ask about another process here: every peer counts as alive (a dead
//! peer then goes unnoticed until its place is cleared).

use super::Probe;

pub(super) fn probe(_pid: u32) -> Probe {
    Probe::Unknown
}
