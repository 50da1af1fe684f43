//! Sleeping on a 32-bit word in shared memory until another process changes it.
//!
//! Linux: `futex(FUTEX_WAIT/FUTEX_WAKE)` *without* `FUTEX_PRIVATE_FLAG`, so the kernel
//! keys the wait on the physical page and processes that map the same segment wake
//! each other. Elsewhere (until a native wait is added) a bounded sleep-poll stands
//! in: correct, since every caller re-checks its condition, but slower.
//!
//! Callers never trust a wake-up: they re-check their condition in a loop with a
//! deadline, so spurious and lost wake-ups cost time, never correctness.
//!
//! Under `cfg(loom)` a wait with a deadline is a scheduling point that reports
//! `TimedOut` (so the callers' timeout paths are explored), and a wait without one
//! blocks on a loom condition variable until a wake, so that a lost wake-up shows up
//! as a deadlock in the model.

use std::time::{Duration, Instant};

use super::atomic::AtomicU32;

/// What ended a wait. Either way the caller re-checks its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, interrupted, or the word no longer held `expected`.
    Maybe,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until woken or `deadline`.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    let timeout = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Wake::TimedOut,
        },
    };
    imp::wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many woke
/// (where the OS says).
pub(crate) fn wake(word: &AtomicU32, n: u32) -> usize {
    imp::wake(word, n)
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake_all(word: &AtomicU32) -> usize {
    imp::wake(word, u32::MAX)
}

#[cfg(loom)]
mod imp {
    use super::*;
    use crate::sync::atomic::Ordering;
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        /// One futex queue for every word: wakes are broadcast, callers re-check.
        static ref QUEUE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    /// With a timeout: a scheduling point that reports `TimedOut`, so the callers'
    /// timeout paths run. Without: blocks like a futex until a wake, so that a lost
    /// wake-up shows as a deadlock in the model.
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        if timeout.is_some() {
            loom::thread::yield_now();
            return Wake::TimedOut;
        }
        let (lock, cv) = &*QUEUE;
        let g = lock.lock().unwrap();
        // The kernel compares and queues under its bucket lock; so do we.
        if word.load(Ordering::SeqCst) != expected {
            return Wake::Maybe;
        }
        drop(cv.wait(g).unwrap());
        Wake::Maybe
    }

    pub(super) fn wake(_word: &AtomicU32, _n: u32) -> usize {
        let (lock, cv) = &*QUEUE;
        let _g = lock.lock().unwrap();
        cv.notify_all();
        0
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use super::*;
    use rustix::io::Errno;
    use rustix::thread::futex;

    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let ts = timeout.map(|d| futex::Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        // Shared (no PRIVATE flag): the wait is keyed on the page, across processes.
        match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
            Err(Errno::TIMEDOUT) => Wake::TimedOut,
            // Ok: woken; AGAIN: the value had changed; INTR: a signal. Re-check.
            _ => Wake::Maybe,
        }
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) -> usize {
        futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32)).unwrap_or(0)
    }
}

#[cfg(all(not(target_os = "linux"), not(loom)))]
mod imp {
    use super::*;
    use crate::sync::atomic::Ordering;

    /// No cross-process address wait here yet: poll with a short sleep.
    pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
        let nap = Duration::from_micros(200);
        if word.load(Ordering::Acquire) != expected {
            return Wake::Maybe;
        }
        match timeout {
            Some(t) if t <= nap => {
                std::thread::sleep(t);
                Wake::TimedOut
            }
            _ => {
                std::thread::sleep(nap);
                Wake::Maybe
            }
        }
    }

    pub(super) fn wake(_word: &AtomicU32, _n: u32) -> usize {
        0
    }
}

#[cfg(all(test, not(miri), not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn times_out_when_nothing_changes() {
        let w = AtomicU32::new(7);
        let deadline = Instant::now() + Duration::from_millis(20);
        while wait(&w, 7, Some(deadline)) != Wake::TimedOut {}
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn returns_at_once_when_value_differs() {
        let w = AtomicU32::new(1);
        assert_eq!(
            wait(&w, 2, Some(Instant::now() + Duration::from_secs(5))),
            Wake::Maybe
        );
    }

    #[test]
    fn wakes_a_sleeping_thread() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&w);
        let t = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while w2.load(Ordering::Acquire) == 0 {
                if wait(&w2, 0, Some(deadline)) == Wake::TimedOut {
                    return false;
                }
            }
            true
        });
        w.store(1, Ordering::Release);
        wake_all(&w);
        assert!(t.join().unwrap());
    }
}
