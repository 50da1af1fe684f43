//! What every Unix can tell about a process id: whether it exists (`kill(pid, 0)`).

use rustix::io::Errno;
use rustix::process::{test_kill_process, Pid};

use super::Probe;

/// `kill(pid, 0)`: `Gone` if no such process, `Unknown` otherwise (EPERM means it
/// exists but belongs to someone else). A zombie exists until reaped.
pub(super) fn kill0(pid: u32) -> Probe {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Probe::Gone;
    };
    match test_kill_process(p) {
        Err(Errno::SRCH) => Probe::Gone,
        _ => Probe::Unknown,
    }
}
