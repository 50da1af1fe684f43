//! Who this thread and this process are, and whether the thread or process a word in
//! shared memory names still lives. One implementation of each, per OS, picked here:
//!
//! * **lock owners** (threads): [`current_owner`] packs this thread's id and start
//!   time into 63 bits; [`owner_liveness`] asks the OS about such an id; the
//!   encoding is the OS file's (Linux: `/proc/TID/stat`; Windows: `GetThreadTimes`);
//! * **endpoints** (processes): [`process_token`] is this process's pid and the low
//!   32 bits of its start time; [`process_alive`] asks about a token (Linux:
//!   `/proc/PID/stat`; Windows: `OpenProcess` + `GetProcessTimes`; other Unixes:
//!   `kill(pid, 0)` only);
//! * **fork detection**: [`fork_generation`], bumped in every forked child by one
//!   `pthread_atfork` handler, so that cached identities are recomputed there;
//! * [`namespaces`]: the PID and time namespaces these ids mean something in.
//!
//! Every answer is conservative: `Dead` only when that is certain (a wrong "dead"
//! would let two processes into a critical section; a wrong "alive" only makes a
//! waiter wait for its timeout).
//!
//! Items every OS file exports: `SUPPORTED`, `compute_owner`, `owner_liveness`,
//! `owner_thread`, `namespaces`, `probe`, `fork_generation`.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(unix)]
mod unix;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "unsupported.rs"]
mod imp;

pub(crate) use imp::{fork_generation, namespaces, owner_liveness, owner_thread, SUPPORTED};

/// What the OS says about an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs (or cannot be proven dead).
    Alive,
    /// It is certainly gone: it can never unlock.
    Dead,
}

/// What the OS says about a process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A process with that id runs, and started at this time (OS units).
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    Started(u64),
    /// No process with that id runs (none exists, or it has exited).
    Gone,
    /// One may run; its start time is unknown (only the id can be compared).
    #[cfg_attr(windows, allow(dead_code))]
    Unknown,
}

// ---------------------------------------------------------------------------------
// lock owners

thread_local! {
    /// This thread's owner id and the fork generation it was computed in (0: none).
    static ME: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

/// This thread's owner id (never 0, bit 63 clear), computed once per thread (and
/// again in a forked child, which is a new thread with the same memory).
///
/// # Errors
/// If the OS does not say who this thread is (Linux: `/proc` not mounted).
#[inline]
pub(crate) fn current_owner() -> io::Result<u64> {
    let generation = fork_generation();
    let (g, id) = ME.with(Cell::get);
    if id != 0 && Some(g) == generation {
        return Ok(id);
    }
    let id = imp::compute_owner()?;
    if let Some(g) = generation {
        ME.with(|me| me.set((g, id)));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------
// processes

/// The token of `pid` started at `start`.
pub(crate) fn token(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << 32) | (start & 0xffff_ffff)
}

/// The process id in a token.
pub(crate) fn token_pid(token: u64) -> u32 {
    u32::try_from(token >> 32).unwrap_or(0)
}

/// This process's token (never 0): its pid and the low bits of its start time.
/// Cached per fork generation (or per pid where forks cannot be told).
pub(crate) fn process_token() -> u64 {
    static ME: AtomicU64 = AtomicU64::new(0);
    static GEN: AtomicU64 = AtomicU64::new(u64::MAX);
    let generation = fork_generation();
    let cached = ME.load(Ordering::Relaxed);
    match generation {
        Some(g) if cached != 0 && GEN.load(Ordering::Relaxed) == g => return cached,
        None if cached != 0 && token_pid(cached) == std::process::id() => return cached,
        _ => {}
    }
    let pid = std::process::id();
    let start = match imp::probe(pid) {
        Probe::Started(t) => t,
        Probe::Gone | Probe::Unknown => 0,
    };
    let tok = token(pid, start);
    // Two stores, not one: a racing reader may pair a new token with an old
    // generation and recompute; it never returns another process's token, since
    // the generation is stored after the token (and read before it).
    ME.store(tok, Ordering::Relaxed);
    GEN.store(generation.unwrap_or(u64::MAX), Ordering::Relaxed);
    tok
}

/// Whether the process a token names is alive. Token 0 and pid 0 are not.
pub(crate) fn process_alive(tok: u64) -> bool {
    let pid = token_pid(tok);
    if tok == 0 || pid == 0 {
        return false;
    }
    if tok == process_token() {
        return true;
    }
    match imp::probe(pid) {
        Probe::Started(start) => token(pid, start) == tok,
        Probe::Gone => false,
        Probe::Unknown => true,
    }
}

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::imp::probe;
    use super::*;

    /// A process that exits at once: this test binary listing no tests.
    fn short_lived() -> std::process::Command {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--list", "--exact", "no-such-test"])
            .stdout(std::process::Stdio::null());
        cmd
    }

    fn start_of(pid: u32) -> u64 {
        match probe(pid) {
            Probe::Started(t) => t,
            _ => 0,
        }
    }

    #[test]
    fn my_process_is_alive_and_others_are_not() {
        assert!(process_alive(process_token()));
        assert_ne!(process_token(), 0);
        assert!(!process_alive(0));
        // Same pid, another start time: a reused pid.
        let known = matches!(probe(std::process::id()), Probe::Started(_));
        assert!(!process_alive(process_token() ^ 1) || !known);
        // A child that exited and was reaped.
        let mut child = short_lived().spawn().unwrap();
        let pid = child.id();
        let start = start_of(pid);
        child.wait().unwrap();
        drop(child);
        assert!(!process_alive(token(pid, start)));
    }

    #[test]
    fn killed_child_is_dead_while_its_handle_is_open() {
        // A child killed (SIGKILL, TerminateProcess) while it runs: dead as soon as
        // it is reaped, even though on Windows `child` still holds a handle to the
        // process object, so that its id is not free yet.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sys::liveness::tests::sleeper", "--nocapture"])
            .env("SHMIPC_LIVENESS_SLEEPER", "1")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        if cfg!(any(target_os = "linux", windows)) {
            assert!(
                matches!(probe(pid), Probe::Started(_)),
                "the OS tells another process's start time"
            );
        }
        let tok = token(pid, start_of(pid));
        assert!(process_alive(tok), "a running child is alive");
        if cfg!(any(target_os = "linux", windows)) {
            // Another process under the same id (a reused id) is not the child.
            assert!(!process_alive(token(pid, start_of(pid) + 1)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(tok), "a killed child is dead");
        drop(child);
        assert!(!process_alive(tok), "a killed child is dead");
    }

    /// Not a test on its own: the body of the child above, which waits to be killed.
    #[test]
    fn sleeper() {
        if std::env::var_os("SHMIPC_LIVENESS_SLEEPER").is_some() {
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn my_thread_is_alive_and_others_are_not() {
        if !SUPPORTED {
            return;
        }
        let me = current_owner().unwrap();
        assert_eq!(current_owner().unwrap(), me);
        assert_eq!(owner_liveness(me), Liveness::Alive);
        // Same thread id, another start time: a reused id.
        assert_eq!(owner_liveness(me ^ 1), Liveness::Dead);
        assert_eq!(owner_liveness(0), Liveness::Dead);
        let other = std::thread::spawn(|| current_owner().unwrap())
            .join()
            .unwrap();
        assert_ne!(other, me);
        // That thread has exited and been reaped.
        assert_eq!(owner_liveness(other), Liveness::Dead);
    }
}
