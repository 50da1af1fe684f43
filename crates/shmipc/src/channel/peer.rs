//! Which process holds an endpoint, and whether it still lives.
//!
//! An endpoint registers itself by storing a *token* in the segment: its process id
//! in the high 32 bits and the low 32 bits of the process's start time in the low
//! 32 bits. A peer is alive while a process with that id exists, has not exited,
//! *and* started at that time, so a killed endpoint (which clears nothing) is
//! recognised as dead, and a new process that got the same id later is not
//! mistaken for it. No cleanup is needed on death and nothing stays locked.
//!
//! The OS is asked in one file per OS, picked here (each exports `probe`):
//! * Linux: field 22 of `/proc/PID/stat` (clock ticks since boot); both processes
//!   must see the same pid namespace (not across containers with separate ones);
//! * Windows: `OpenProcess` + `WaitForSingleObject(h, 0)` + `GetProcessTimes`
//!   (survives `TerminateProcess` and id reuse);
//! * other Unixes: only existence (`kill(pid, 0)`): a reused id fools it;
//! * elsewhere: every peer counts as alive.
//!
//! Token 0 means "nobody".

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg_attr(target_os = "linux", path = "peer/linux.rs")]
#[cfg_attr(all(unix, not(target_os = "linux")), path = "peer/unix.rs")]
#[cfg_attr(windows, path = "peer/windows.rs")]
#[cfg_attr(not(any(unix, windows)), path = "peer/unsupported.rs")]
mod os;

/// What the OS says about a process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// A process with that id runs, and started at this time (OS units).
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    Started(u64),
    /// No process with that id runs (none exists, or it has exited).
    Gone,
    /// One may run; its start time is unknown (only the id can be compared).
    Unknown,
}

/// This process's token (never 0). Cached per process id, so a child made by
/// `fork` (which inherits the cache) computes its own.
pub(crate) fn me() -> u64 {
    static ME: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let cached = ME.load(Ordering::Relaxed);
    if cached != 0 && self::pid(cached) == pid {
        return cached;
    }
    let start = match os::probe(pid) {
        Probe::Started(t) => t,
        Probe::Gone | Probe::Unknown => 0,
    };
    let tok = token(pid, start);
    ME.store(tok, Ordering::Relaxed);
    tok
}

fn token(pid: u32, start: u64) -> u64 {
    (u64::from(pid) << 32) | (start & 0xffff_ffff)
}

/// The process id in a token.
pub(crate) fn pid(token: u64) -> u32 {
    (token >> 32) as u32
}

/// Whether the process a token names is alive. Token 0 and pid 0 are not.
pub(crate) fn alive(tok: u64) -> bool {
    let pid = pid(tok);
    if tok == 0 || pid == 0 {
        return false;
    }
    if tok == me() {
        return true;
    }
    match os::probe(pid) {
        Probe::Started(start) => token(pid, start) == tok,
        Probe::Gone => false,
        Probe::Unknown => true,
    }
}

/// One endpoint's place in the segment: its token, and how many endpoints have
/// ever attached there (so "never had a peer" and "the peer left" differ).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) token: &'a AtomicU64,
    pub(crate) attaches: &'a AtomicU64,
}

/// What a claim found in the place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Ours now.
    Taken,
    /// A live process holds it.
    Held(u32),
}

impl Place<'_> {
    /// Takes the place if it is free or its holder is dead. Bounded: a hostile
    /// process flipping the word cannot keep us here.
    pub(crate) fn claim(&self) -> Claim {
        let me = me();
        for _ in 0..1000 {
            // Acquire pairs with the Release of a previous holder's `leave`, so what
            // it wrote before leaving is visible to us.
            let cur = self.token.load(Ordering::Acquire);
            if cur != 0 && alive(cur) {
                return Claim::Held(pid(cur));
            }
            if self
                .token
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.attaches.fetch_add(1, Ordering::AcqRel);
                return Claim::Taken;
            }
        }
        Claim::Held(pid(self.token.load(Ordering::Relaxed)))
    }

    /// Gives the place up, if still ours. Release: everything this endpoint did
    /// (its last messages) happens before a peer sees the place empty.
    pub(crate) fn leave(&self) {
        let _ = self
            .token
            .compare_exchange(me(), 0, Ordering::Release, Ordering::Relaxed);
    }

    /// True once an endpoint has attached and none is attached and alive now.
    /// Costs a file read when the place is held by another process: rate-limit it.
    pub(crate) fn gone(&self) -> bool {
        let tok = self.token.load(Ordering::Acquire);
        if tok == 0 {
            return self.attaches.load(Ordering::Acquire) > 0;
        }
        !alive(tok)
    }

    /// True once an endpoint has attached and none is attached now (cheap: does not
    /// check that a holder is alive).
    pub(crate) fn left(&self) -> bool {
        self.token.load(Ordering::Acquire) == 0 && self.attaches.load(Ordering::Acquire) > 0
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    /// A process that exits at once: this test binary listing no tests.
    fn short_lived() -> std::process::Command {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--list", "--exact", "no-such-test"])
            .stdout(std::process::Stdio::null());
        cmd
    }

    fn start_of(pid: u32) -> u64 {
        match os::probe(pid) {
            Probe::Started(t) => t,
            _ => 0,
        }
    }

    #[test]
    fn me_is_alive_and_others_are_not() {
        assert!(alive(me()));
        assert_ne!(me(), 0);
        assert!(!alive(0));
        // Same pid, another start time: a reused pid.
        let known = matches!(os::probe(std::process::id()), Probe::Started(_));
        assert!(!alive(me() ^ 1) || !known);
        // A child that exited and was reaped.
        let mut child = short_lived().spawn().unwrap();
        let pid = child.id();
        let start = start_of(pid);
        child.wait().unwrap();
        drop(child);
        assert!(!alive(token(pid, start)));
    }

    #[test]
    fn killed_child_is_dead_while_its_handle_is_open() {
        // A child killed (SIGKILL, TerminateProcess) while it runs: dead as soon as
        // it is reaped, even though on Windows `child` still holds a handle to the
        // process object, so that its id is not free yet.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "channel::peer::tests::sleeper", "--nocapture"])
            .env("SHMIPC_PEER_SLEEPER", "1")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        if cfg!(any(target_os = "linux", windows)) {
            assert!(
                matches!(os::probe(pid), Probe::Started(_)),
                "the OS tells another process's start time"
            );
        }
        let tok = token(pid, start_of(pid));
        assert!(alive(tok), "a running child is alive");
        if cfg!(any(target_os = "linux", windows)) {
            // Another process under the same id (a reused id) is not the child.
            assert!(!alive(token(pid, start_of(pid) + 1)));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!alive(tok), "a killed child is dead");
        drop(child);
        assert!(!alive(tok), "a killed child is dead");
    }

    /// Not a test on its own: the body of the child above, which waits to be killed.
    #[test]
    fn sleeper() {
        if std::env::var_os("SHMIPC_PEER_SLEEPER").is_some() {
            loop {
                std::thread::park();
            }
        }
    }

    #[test]
    fn claim_and_leave() {
        let t = AtomicU64::new(0);
        let a = AtomicU64::new(0);
        let p = Place {
            token: &t,
            attaches: &a,
        };
        assert!(!p.gone());
        assert_eq!(p.claim(), Claim::Taken);
        assert_eq!(p.claim(), Claim::Held(std::process::id()));
        assert!(!p.gone());
        p.leave();
        assert!(p.gone() && p.left());
        // A dead holder's place is taken over.
        t.store(token(u32::MAX - 1, 5), Ordering::Relaxed);
        assert_eq!(p.claim(), Claim::Taken);
    }
}
