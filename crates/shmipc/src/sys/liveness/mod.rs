//! Who this thread and this process are, and whether the thread or process a word in
//! shared memory names still lives. One implementation of each, per OS, picked here:
//!
//! * **lock owners** (threads): [`current_owner`] is a 63-bit identity of this
//!   thread; [`owner_liveness`] asks the kernel about one; [`owner_thread`] shows
//!   its thread id where it means something here;
//! * **endpoints** (processes): [`process_token`], [`process_alive`], [`token_pid`];
//! * **fork detection**: [`fork_generation`], bumped in every forked child by one
//!   `pthread_atfork` handler, so that cached identities are drawn again there;
//! * [`namespaces`]: what an object records so that an opener that cannot judge its
//!   creator's liveness refuses it (0 where anything goes).
//!
//! | OS | identity | alive while |
//! |----|----|----|
//! | Linux | random nonce (+ id, namespace tag) | the kernel holds its `F_OFD_SETLK` byte lock in `/dev/shm/.shmipc-liveness`: any PID namespace, immune to pid reuse |
//! | Windows | thread/process id + creation time | `OpenThread`/`OpenProcess` finds it unexited with that creation time |
//! | macOS | process id | `kill(pid, 0)` finds it (owners: unsupported) |
//!
//! Every answer is conservative: `Dead` only when that is certain (a wrong "dead"
//! would let two processes into a critical section; a wrong "alive" only makes a
//! waiter wait for its timeout).
//!
//! Items every OS file exports: `SUPPORTED`, `compute_owner`, `owner_liveness`,
//! `owner_thread`, `namespaces`, `fork_generation`, `process_identity`,
//! `process_liveness`, `process_id`.

use std::cell::Cell;
use std::io;

#[cfg(target_os = "macos")]
mod unix;

/// Identities made of a process id and its start time, for OSes whose kernel has
/// no lock that outlives pids (Windows, macOS, others).
#[cfg(not(target_os = "linux"))]
mod pid_token;

/// The owner half for OSes that cannot check lock owners.
#[cfg(not(any(target_os = "linux", windows)))]
mod no_owners;

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

#[cfg(all(test, target_os = "linux"))]
pub(crate) use imp::current_tid;
#[cfg(target_os = "linux")]
pub(crate) use imp::FILE_NAME;
pub(crate) use imp::{fork_generation, namespaces, owner_liveness, owner_thread, SUPPORTED};

/// What the OS says about an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs (or cannot be proven dead).
    Alive,
    /// It is certainly gone: it can never unlock.
    Dead,
}

/// What the OS says about a process id (where identities are pids).
#[cfg(not(target_os = "linux"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A process with that id runs, and started at this time (OS units).
    #[cfg_attr(not(windows), allow(dead_code))]
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

/// This process's endpoint identity (never 0).
pub(crate) fn process_token() -> u64 {
    imp::process_identity()
}

/// Whether the process an endpoint identity names is alive. 0 is nobody.
pub(crate) fn process_alive(tok: u64) -> bool {
    tok != 0 && (tok == process_token() || imp::process_liveness(tok) == Liveness::Alive)
}

/// The process id in an endpoint identity, for people; 0 where it means nothing
/// here (another PID namespace, or garbage).
pub(crate) fn token_pid(tok: u64) -> u32 {
    imp::process_id(tok).unwrap_or(0)
}

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Runs this test binary as a child that prints its endpoint identity and then
    /// waits to be killed (see `child`).
    fn child() -> (std::process::Child, u64) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sys::liveness::tests::child_body", "--nocapture"])
            .env("SHMIPC_LIVENESS_CHILD", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let tok = loop {
            let line = lines
                .next()
                .expect("the child prints its identity")
                .unwrap();
            if let Some(t) = line.strip_prefix("identity=") {
                break t.trim().parse().unwrap();
            }
        };
        (child, tok)
    }

    /// Not a test on its own: the body of the child above.
    #[test]
    fn child_body() {
        if std::env::var_os("SHMIPC_LIVENESS_CHILD").is_some() {
            println!("identity={}", process_token());
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn my_process_is_alive_and_a_killed_one_is_not() {
        assert!(process_alive(process_token()));
        assert_ne!(process_token(), 0);
        assert!(!process_alive(0));
        assert_eq!(token_pid(process_token()), std::process::id());
        let (mut child, tok) = child();
        assert!(process_alive(tok), "a running child is alive");
        assert_eq!(token_pid(tok), child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!process_alive(tok), "a killed child is dead");
        drop(child);
        assert!(!process_alive(tok), "a killed child is dead");
    }

    #[test]
    fn my_thread_is_alive_and_others_are_not() {
        if !SUPPORTED {
            return;
        }
        let me = current_owner().unwrap();
        assert_eq!(current_owner().unwrap(), me);
        assert_eq!(owner_liveness(me), Liveness::Alive);
        assert_eq!(owner_liveness(0), Liveness::Dead);
        let other = std::thread::spawn(|| current_owner().unwrap())
            .join()
            .unwrap();
        assert_ne!(other, me);
        // That thread has exited.
        assert_eq!(owner_liveness(other), Liveness::Dead);
    }
}
