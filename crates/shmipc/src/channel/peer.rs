//! Which process holds an endpoint, and whether it still lives.
//!
//! An endpoint registers itself by storing a *token* in the segment: its process id
//! in the high 32 bits and the low 32 bits of the process's start time (Linux:
//! field 22 of `/proc/PID/stat`, in clock ticks since boot) in the low 32 bits.
//! A peer is alive while a process with that id exists *and* started at that time,
//! so a SIGKILLed endpoint (which clears nothing) is recognised as dead, and a new
//! process that got the same id later is not mistaken for it. No cleanup is needed
//! on death and nothing stays locked. Limits: both processes must see the same pid
//! namespace (not across containers with separate namespaces); without `/proc`
//! (other Unixes) only the process id is compared (`kill(pid, 0)`). Windows: the
//! process's creation time (`GetProcessTimes`, 100 ns units), and a process that has
//! exited (its handle signalled) is dead.
//!
//! Token 0 means "nobody".

use std::sync::atomic::{AtomicU64, Ordering};

/// This process's token (never 0). Cached per process id, so a child made by
/// `fork` (which inherits the cache) computes its own.
pub(crate) fn me() -> u64 {
    static ME: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let cached = ME.load(Ordering::Relaxed);
    if cached != 0 && self::pid(cached) == pid {
        return cached;
    }
    let tok = token(pid, start_time(pid).unwrap_or(0));
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
    match start_time(pid) {
        Some(start) => token(pid, start) == tok,
        None => exists_without_proc(pid),
    }
}

#[cfg(target_os = "linux")]
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')':
    // the fields after the last ')' start with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(windows)]
fn start_time(pid: u32) -> Option<u64> {
    crate::sys::process_start_time(pid).ok().flatten()
}

#[cfg(not(any(target_os = "linux", windows)))]
fn start_time(_pid: u32) -> Option<u64> {
    None
}

#[cfg(all(target_os = "linux", unix))]
fn exists_without_proc(pid: u32) -> bool {
    // `/proc/PID/stat` missing: on Linux with /proc mounted the process is gone.
    if std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    kill0(pid)
}

#[cfg(all(not(target_os = "linux"), unix))]
fn exists_without_proc(pid: u32) -> bool {
    kill0(pid)
}

#[cfg(unix)]
fn kill0(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but belongs to someone else.
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(windows)]
fn exists_without_proc(pid: u32) -> bool {
    // No start time: gone or exited (dead), unless the OS would not say (alive).
    !matches!(crate::sys::process_start_time(pid), Ok(None))
}

#[cfg(not(any(unix, windows)))]
fn exists_without_proc(_pid: u32) -> bool {
    // No way to tell here yet: assume alive (a peer's death then goes unnoticed
    // until it clears its registration).
    true
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

    #[test]
    fn me_is_alive_and_others_are_not() {
        assert!(alive(me()));
        assert_ne!(me(), 0);
        assert!(!alive(0));
        // Same pid, another start time: a reused pid.
        assert!(!alive(me() ^ 1) || start_time(std::process::id()).is_none());
        // A child that exited.
        // This test binary, listing its tests: a process that exits at once, everywhere.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        assert!(!alive(token(pid, start.unwrap_or(0))));
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
