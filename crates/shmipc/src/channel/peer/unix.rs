//! Unixes other than Linux: no portable start time, so only existence is checked
//! (`kill(pid, 0)`); a reused process id is mistaken for the peer.

use super::Probe;

pub(super) fn probe(pid: u32) -> Probe {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Probe::Gone;
    };
    // EPERM means it exists but belongs to someone else.
    match rustix::process::test_kill_process(p) {
        Err(rustix::io::Errno::SRCH) => Probe::Gone,
        _ => Probe::Unknown,
    }
}
