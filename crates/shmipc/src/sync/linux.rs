//! Linux: who holds a lock, and whether that thread still lives.
//!
//! An owner is a thread, named by its thread id **and its start time** (field 22 of
//! `/proc/TID/stat`, in clock ticks since boot), packed into 63 bits:
//!
//! ```text
//! bits 62..41  thread id (pid_max is at most 2^22)
//! bits 40..0   start time in ticks (USER_HZ = 100: 697 years)
//! ```
//!
//! A thread id alone is fooled by reuse: the kernel hands a dead thread's id to a new
//! process. Two threads with the same id *and* the same start tick cannot exist
//! unless the whole id space is cycled within one 10 ms tick, which the kernel cannot
//! do. A thread is dead when `/proc/TID` is gone, is a zombie (`Z`/`X`: a process
//! killed and not yet reaped), or belongs to a thread that started at another tick.
//!
//! Where `/proc` hides other users' processes (`hidepid`), an owner that cannot be
//! read is asked about with `kill(tid, 0)`: gone means dead, anything else alive, so
//! a hidden process that reused a dead owner's id delays waiters (to their timeout)
//! rather than letting two in.
//!
//! Thread ids and boot-relative start times mean something only inside one PID and
//! time namespace, so each object records its creator's namespaces and an opener
//! from another one is refused ([`namespaces`]).
//!
//! The identity is computed once per thread (one read of `/proc/thread-self/stat`)
//! and cached in a thread-local; a `pthread_atfork` child handler clears the cache,
//! since a forked child is a new thread with the same cached bytes.
//!
//! # Safety
//!
//! This module holds the one FFI call of the sync layer, `pthread_atfork`, whose
//! handler only writes a `Cell` in this thread's TLS (no allocation, no locks).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use rustix::io::Errno;
use rustix::process::Pid;

use super::Liveness;

// Named objects are segments holding lock words here.
#[cfg(not(loom))]
pub(crate) use super::native_none::{
    inspect_named, NativeEvent, NativeMutex, NativeSemaphore, NativeWaitError, NATIVE_NAMED,
};

/// Whether this OS has the synchronization objects.
pub(crate) const SUPPORTED: bool = true;

const TID_BITS: u32 = 22;
const START_BITS: u32 = 41;
const START_MASK: u64 = (1 << START_BITS) - 1;
const TID_MASK: u64 = (1 << TID_BITS) - 1;

thread_local! {
    /// This thread's owner id, 0 until computed (and again after `fork`).
    static ME: Cell<u64> = const { Cell::new(0) };
}

static ATFORK: Once = Once::new();
/// Whether the fork handler is registered, so that the cache may be used.
static CACHE_OK: AtomicBool = AtomicBool::new(false);

extern "C" fn forget_identity_in_child() {
    // A forked child runs only the forking thread, and it is not the parent's thread.
    ME.with(|me| me.set(0));
}

/// This thread's owner id (never 0, bit 63 clear).
///
/// # Errors
/// If `/proc/thread-self/stat` cannot be read (procfs not mounted).
#[inline]
pub(crate) fn current_owner() -> io::Result<u64> {
    let id = ME.with(Cell::get);
    if id != 0 {
        return Ok(id);
    }
    compute_owner()
}

#[cold]
fn compute_owner() -> io::Result<u64> {
    ATFORK.call_once(|| {
        // SAFETY: `pthread_atfork` takes three optional `extern "C" fn()` handlers;
        // ours is a plain function that lives for the whole program and only touches
        // this thread's TLS.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget_identity_in_child)) };
        // Without the handler (ENOMEM) a forked child would reuse its parent's id:
        // then compute the id every time instead of caching it.
        CACHE_OK.store(rc == 0, Ordering::Relaxed);
    });
    let tid = u64::try_from(rustix::thread::gettid().as_raw_nonzero().get())
        .map_err(|_| io::Error::other("negative thread id"))?;
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    let (state, start) = parse_stat(&stat)
        .ok_or_else(|| io::Error::other("unexpected format of /proc/thread-self/stat"))?;
    debug_assert!(state != 'Z');
    let id = encode(tid, start).ok_or_else(|| {
        io::Error::other("thread id above 2^22 (pid_max is larger than Linux allows)")
    })?;
    if CACHE_OK.load(Ordering::Relaxed) {
        ME.with(|me| me.set(id));
    }
    Ok(id)
}

fn encode(tid: u64, start: u64) -> Option<u64> {
    if tid == 0 || tid > TID_MASK {
        return None;
    }
    Some(tid << START_BITS | (start & START_MASK))
}

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

/// Whether the thread `id` names still runs. `Dead` only when that is certain: a
/// wrong `Dead` would let two processes into the critical section, a wrong `Alive`
/// only makes a waiter wait for its timeout.
pub(crate) fn liveness(id: u64) -> Liveness {
    let tid = id >> START_BITS & TID_MASK;
    let start = id & START_MASK;
    let Some(pid) = i32::try_from(tid).ok().and_then(Pid::from_raw) else {
        return Liveness::Dead; // id 0 in the tid bits: garbage, nobody holds it
    };
    match std::fs::read_to_string(format!("/proc/{tid}/stat")) {
        Ok(stat) => match parse_stat(&stat) {
            Some(('Z' | 'X' | 'x', _)) => Liveness::Dead,
            Some((_, s)) if s & START_MASK != start => Liveness::Dead,
            Some(_) => Liveness::Alive,
            None => Liveness::Alive,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Gone, or hidden from us (`hidepid`): ask the kernel directly.
            match rustix::process::test_kill_process(pid) {
                Err(Errno::SRCH) => Liveness::Dead,
                _ => Liveness::Alive,
            }
        }
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
/// none), recorded by creators and compared by openers.
pub(crate) fn namespaces() -> [u64; 2] {
    let ino = |p: &str| rustix::fs::stat(p).map_or(0, |st| st.st_ino);
    [ino("/proc/self/ns/pid"), ino("/proc/self/ns/time")]
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
    fn me_is_alive_and_others_are_not() {
        let me = current_owner().unwrap();
        assert_eq!(current_owner().unwrap(), me);
        assert_eq!(liveness(me), Liveness::Alive);
        // Same thread id, another start tick: a reused id.
        assert_eq!(liveness(me ^ 1), Liveness::Dead);
        assert_eq!(liveness(0), Liveness::Dead);
        // A thread id nobody has (above the default pid_max, below 2^22).
        assert_eq!(liveness(encode(4_194_000, 5).unwrap()), Liveness::Dead);
        let other = std::thread::spawn(|| current_owner().unwrap())
            .join()
            .unwrap();
        assert_ne!(other, me);
        // That thread has exited and been reaped.
        assert_eq!(liveness(other), Liveness::Dead);
    }
}
