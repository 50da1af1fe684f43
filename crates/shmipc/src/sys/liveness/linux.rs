//! Linux: ids and start times from `/proc`, fork detection by `pthread_atfork`.
//!
//! A lock owner is a thread, named by its thread id **and its start time** (field 22
//! of `/proc/TID/stat`, in clock ticks since boot), packed into 63 bits:
//!
//! ```text
//! bits 62..41  thread id (pid_max is at most 2^22)
//! bits 40..0   start time in ticks (USER_HZ = 100: 697 years)
//! ```
//!
//! A thread id alone is fooled by reuse: the kernel hands a dead thread's id to a new
//! process. Two threads with the same id *and* the same start tick cannot exist
//! unless the whole id space is cycled within one 10 ms tick, which the kernel cannot
//! do. A thread is dead when `/proc/TID` is gone, is a zombie (`Z`/`X`: killed and
//! not yet reaped), or belongs to a thread that started at another tick. Where
//! `/proc` hides other users' processes (`hidepid`), an owner that cannot be read is
//! asked about with `kill(tid, 0)`: gone means dead, anything else alive.
//!
//! A process (an endpoint) is its pid and start time, read the same way.
//!
//! Thread ids and boot-relative start times mean something only inside one PID and
//! time namespace ([`namespaces`]).
//!
//! # Safety
//!
//! One FFI call, `pthread_atfork`, whose handler only does an atomic add.
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::unix::kill0;
use super::{Liveness, Probe};

/// Lock owners can be named and checked here.
pub(crate) const SUPPORTED: bool = true;

const TID_BITS: u32 = 22;
const START_BITS: u32 = 41;
const START_MASK: u64 = (1 << START_BITS) - 1;
const TID_MASK: u64 = (1 << TID_BITS) - 1;

// ---------------------------------------------------------------------------------
// fork detection

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK_REGISTERED: OnceLock<bool> = OnceLock::new();

extern "C" fn bump_fork_generation() {
    // Async-signal-safe: one atomic add, in the child right after fork.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in every forked child (`None` if the `pthread_atfork`
/// handler could not be registered: then nothing may be cached across a fork).
pub(crate) fn fork_generation() -> Option<u64> {
    let registered = *ATFORK_REGISTERED.get_or_init(|| {
        // SAFETY: `pthread_atfork` takes three optional `extern "C" fn()` handlers;
        // ours lives for the whole program and only does an atomic add.
        unsafe { libc::pthread_atfork(None, None, Some(bump_fork_generation)) == 0 }
    });
    registered.then(|| FORK_GENERATION.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------
// /proc

/// The state (field 3) and start time (field 22) of a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses: fields are counted from
/// the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn read_stat(id: u32) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/{id}/stat"))
}

// ---------------------------------------------------------------------------------
// lock owners

/// This thread's owner id, read from `/proc/thread-self/stat`.
pub(super) fn compute_owner() -> io::Result<u64> {
    let tid = u64::try_from(rustix::thread::gettid().as_raw_nonzero().get())
        .map_err(|_| io::Error::other("negative thread id"))?;
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let (_, start) = parse_stat(&stat)
        .ok_or_else(|| io::Error::other("unexpected format of /proc/thread-self/stat"))?;
    encode(tid, start).ok_or_else(|| {
        io::Error::other("thread id above 2^22 (pid_max is larger than Linux allows)")
    })
}

fn encode(tid: u64, start: u64) -> Option<u64> {
    if tid == 0 || tid > TID_MASK {
        return None;
    }
    Some(tid << START_BITS | (start & START_MASK))
}

/// Whether the thread `id` names still runs. `Dead` only when that is certain.
pub(crate) fn owner_liveness(id: u64) -> Liveness {
    let Some(tid) = owner_thread(id) else {
        return Liveness::Dead; // id 0 in the tid bits: garbage, nobody holds it
    };
    let start = id & START_MASK;
    match read_stat(tid) {
        Ok(stat) => match parse_stat(&stat) {
            Some(('Z' | 'X' | 'x', _)) => Liveness::Dead,
            Some((_, s)) if s & START_MASK != start => Liveness::Dead,
            Some(_) | None => Liveness::Alive,
        },
        // Gone, or hidden from us (`hidepid`): ask the kernel directly.
        Err(e) if e.kind() == io::ErrorKind::NotFound => match kill0(tid) {
            Probe::Gone => Liveness::Dead,
            _ => Liveness::Alive,
        },
        Err(_) => Liveness::Alive,
    }
}

/// The thread id in an owner id (`None` for garbage with no thread id).
pub(crate) fn owner_thread(id: u64) -> Option<u32> {
    u32::try_from(id >> START_BITS & TID_MASK)
        .ok()
        .filter(|&t| t != 0)
}

/// This process's PID and time namespaces (inode numbers; 0 where the kernel has
/// none).
pub(crate) fn namespaces() -> [u64; 2] {
    let ino = |p: &str| rustix::fs::stat(p).map_or(0, |st| st.st_ino);
    [ino("/proc/self/ns/pid"), ino("/proc/self/ns/time")]
}

// ---------------------------------------------------------------------------------
// processes

/// A process's start time (field 22 of `/proc/PID/stat`, clock ticks since boot).
/// Without `/proc` mounted, only existence is known (`kill(pid, 0)`).
pub(super) fn probe(pid: u32) -> Probe {
    match read_stat(pid) {
        // A zombie keeps its start time: it counts as alive until reaped (a
        // process whose main thread exited shows `Z` while its threads run).
        Ok(stat) => parse_stat(&stat).map_or(Probe::Unknown, |(_, start)| Probe::Started(start)),
        // With /proc mounted, a missing entry means the process is gone.
        Err(_) if std::path::Path::new("/proc/self/stat").exists() => Probe::Gone,
        Err(_) => kill0(pid),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "4242 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 999 20 21";
        assert_eq!(parse_stat(line), Some(('S', 999)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 1 2"), None);
    }

    #[test]
    fn an_unused_thread_id_is_dead() {
        // A thread id nobody has (above the default pid_max, below 2^22).
        assert_eq!(
            owner_liveness(encode(4_194_000, 5).unwrap()),
            Liveness::Dead
        );
    }
}
