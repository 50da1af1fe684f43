//! Linux: a process's start time is field 22 of `/proc/PID/stat` (clock ticks since
//! boot). Without `/proc` mounted, only existence is known (`kill(pid, 0)`).

use super::Probe;

pub(super) fn probe(pid: u32) -> Probe {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => start_time(&stat).map_or(Probe::Unknown, Probe::Started),
        // With /proc mounted, a missing entry means the process is gone.
        Err(_) if std::path::Path::new("/proc/self/stat").exists() => Probe::Gone,
        Err(_) => kill0(pid),
    }
}

fn start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')':
    // the fields after the last ')' start with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

fn kill0(pid: u32) -> Probe {
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
