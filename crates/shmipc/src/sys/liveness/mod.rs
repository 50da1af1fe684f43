//! Who this thread and this process are, and whether the thread or process a word in
//! shared memory names still lives. One implementation of each, per OS, picked here:
//!
//! * **lock owners** (threads): [`current_owner`] is a 63-bit identity of this
//!   thread; [`owner_liveness`] asks the kernel about one; [`owner_thread`] shows
//!   its thread id where it means something here;
//! * **endpoints** (processes): [`process_token`], [`process_alive`], [`token_pid`];
//! * a [`Scope`]: the object a holder proves itself alive on and an asker asks
//!   about (a segment handle and its [`Anchor`]; on Linux the proof is a lock on
//!   the object's own file, so only those who can open the object can touch it);
//! * **fork detection**: `fork_generation`, bumped in every forked child by one
//!   `pthread_atfork` handler, so that cached identities are drawn again there,
//!   and [`ProcessStamp`] on it, for what a forked child must leave alone;
//! * [`namespaces`]: what an object records so that an opener that cannot judge its
//!   creator's liveness refuses it (0 where anything goes).
//!
//! | OS | identity | alive while |
//! |----|----|----|
//! | Linux | random nonce (+ id, namespace tag) | the kernel holds its `F_OFD_SETLK` byte lock on the object's own file: any PID namespace, immune to pid reuse, out of reach of users who cannot open the object |
//! | Windows | thread/process id + creation time | `OpenThread`/`OpenProcess` finds it unexited with that creation time |
//! | macOS | process id | `kill(pid, 0)` finds it (owners: unsupported) |
//!
//! Every answer is conservative: `Dead` only when that is certain (a wrong "dead"
//! would let two processes into a critical section; a wrong "alive" only makes a
//! waiter wait for its timeout).
//!
//! Items every OS file exports: `SUPPORTED`, `Anchor`, `Scope`, `current_owner`,
//! `owner_liveness`, `owner_thread`, `namespaces`, `process_identity`,
//! `hold_process`, `is_process`, `process_liveness`, `process_id` (OSes whose
//! identities need no object get the scoped ones from `unscoped.rs`, built on
//! their `compute_owner`, `fork_generation`, `owner_liveness_of` and
//! `process_liveness_of`).

use std::io;

#[cfg(target_os = "macos")]
mod unix;

/// The object-scoped half for OSes whose identities need no object.
#[cfg(not(target_os = "linux"))]
mod unscoped;

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
pub(crate) use imp::{namespaces, owner_thread, Anchor, Scope, SUPPORTED};

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

/// This thread's owner id (never 0, bit 63 clear), computed once per thread (and
/// again in a forked child, which is a new thread with the same memory), and
/// proven alive on the object of `scope` before it is returned (so that it can be
/// written into the object's lock words).
///
/// # Errors
/// If the OS does not say who this thread is, or (Linux) its liveness byte cannot
/// be locked on the object (`/proc` not mounted, no descriptors left).
#[inline]
pub(crate) fn current_owner(scope: Scope<'_>) -> io::Result<u64> {
    imp::current_owner(scope)
}

/// Whether the thread `id` names still runs, asked on the object of `scope`.
pub(crate) fn owner_liveness(scope: Scope<'_>, id: u64) -> Liveness {
    imp::owner_liveness(scope, id)
}

// ---------------------------------------------------------------------------------
// fork detection

/// Which process this is, comparable without a system call where possible: the
/// fork generation (bumped in every forked child by the OS file's one
/// `pthread_atfork` handler), or the process id where there is none. Something
/// that belongs to the process that made it (a lock it took, a segment it must
/// close) records one, and does nothing in a forked child whose stamp differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProcessStamp {
    ForkGeneration(u64),
    Pid(u32),
}

impl ProcessStamp {
    /// This process's stamp.
    #[inline]
    pub(crate) fn now() -> Self {
        match imp::fork_generation() {
            Some(g) => Self::ForkGeneration(g),
            None => Self::Pid(std::process::id()),
        }
    }
}

// ---------------------------------------------------------------------------------
// processes

/// This process's endpoint identity on the object of `scope` (never 0), proven
/// alive there before it is returned (so that it can be written into the object).
pub(crate) fn process_token(scope: Scope<'_>) -> u64 {
    imp::hold_process(scope, imp::process_identity())
}

/// Whether `tok` is this process's endpoint identity (as [`process_token`] gave
/// it on any object).
pub(crate) fn is_me(tok: u64) -> bool {
    tok != 0 && imp::is_process(tok, imp::process_identity())
}

/// Whether the process an endpoint identity names is alive, asked on the object
/// of `scope`. 0 is nobody.
pub(crate) fn process_alive(scope: Scope<'_>, tok: u64) -> bool {
    tok != 0 && (is_me(tok) || imp::process_liveness(scope, tok) == Liveness::Alive)
}

/// The process id in an endpoint identity, for people; 0 where it means nothing
/// here (another PID namespace, or garbage).
pub(crate) fn token_pid(tok: u64) -> u32 {
    imp::process_id(tok).unwrap_or(0)
}

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;
    use crate::Segment;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const SEG_ENV: &str = "SHMIPC_LIVENESS_CHILD";

    fn segment() -> (Segment, String) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "shmipc-liveness-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        (Segment::create(&name, 4096).unwrap(), name)
    }

    /// Runs this test binary as a child that opens segment `name`, prints its
    /// endpoint identity and a thread's owner identity there (and the pid of a
    /// forked grandchild on Unix), then waits to be killed (see `child_body`).
    fn child(name: &str) -> (std::process::Child, u64, u64, u32) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sys::liveness::tests::child_body", "--nocapture"])
            .env(SEG_ENV, name)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let got = loop {
            let line = lines
                .next()
                .expect("the child prints its identity")
                .unwrap();
            if let Some(t) = line.strip_prefix("identity=") {
                let v: Vec<u64> = t.split(',').map(|x| x.trim().parse().unwrap()).collect();
                break v;
            }
        };
        (child, got[0], got[1], u32::try_from(got[2]).unwrap())
    }

    /// Not a test on its own: the body of the child above.
    #[test]
    fn child_body() {
        if let Some(name) = std::env::var_os(SEG_ENV) {
            let seg = Segment::open(name.to_str().unwrap(), crate::Access::ReadWrite).unwrap();
            let scope = seg.liveness();
            let tok = process_token(scope);
            let owner = if SUPPORTED {
                current_owner(scope).unwrap()
            } else {
                0
            };
            // A forked child must not keep our identities alive after we die.
            #[cfg(target_os = "linux")]
            let grandchild = crate::sys::liveness::imp::tests::fork_sleeper();
            #[cfg(not(target_os = "linux"))]
            let grandchild = 0u32;
            println!("identity={tok},{owner},{grandchild}");
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn my_process_is_alive_and_a_killed_one_is_not() {
        let (seg, name) = segment();
        let scope = seg.liveness();
        let me = process_token(scope);
        assert!(process_alive(scope, me));
        assert!(is_me(me));
        assert_ne!(me, 0);
        assert!(!process_alive(scope, 0));
        assert_eq!(token_pid(me), std::process::id());
        let (mut child, tok, owner, grandchild) = child(&name);
        assert!(process_alive(scope, tok), "a running child is alive");
        assert!(!is_me(tok));
        assert_eq!(token_pid(tok), child.id());
        if SUPPORTED {
            assert_eq!(owner_liveness(scope, owner), Liveness::Alive);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !process_alive(scope, tok),
            "a killed child is dead, though its forked child lives"
        );
        if SUPPORTED {
            assert_eq!(owner_liveness(scope, owner), Liveness::Dead);
        }
        #[cfg(target_os = "linux")]
        crate::sys::liveness::imp::tests::kill(grandchild);
        let _ = grandchild;
        drop(child);
        assert!(!process_alive(scope, tok), "a killed child is dead");
    }

    #[test]
    fn my_thread_is_alive_and_others_are_not() {
        if !SUPPORTED {
            return;
        }
        let (seg, name) = segment();
        let scope = seg.liveness();
        let me = current_owner(scope).unwrap();
        assert_eq!(current_owner(scope).unwrap(), me);
        assert_eq!(owner_liveness(scope, me), Liveness::Alive);
        assert_eq!(owner_liveness(scope, 0), Liveness::Dead);
        let other =
            std::thread::scope(|s| s.spawn(|| current_owner(scope).unwrap()).join()).unwrap();
        assert_ne!(other, me);
        // That thread has exited.
        assert_eq!(owner_liveness(scope, other), Liveness::Dead);
        // Another handle of the same object (read-only) sees the same.
        let again = Segment::open(&name, crate::Access::Read).unwrap();
        let other_scope = again.liveness();
        assert_eq!(owner_liveness(other_scope, me), Liveness::Alive);
        assert_eq!(owner_liveness(other_scope, other), Liveness::Dead);
    }
}
