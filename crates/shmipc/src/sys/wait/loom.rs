//! Under `cfg(loom)`: one loom condition variable stands for the kernel's futex queue.

use std::time::Duration;

use loom::sync::{Condvar, Mutex};

use super::Wake;
use crate::shim::{AtomicU32, Ordering};

pub(crate) use super::fallback::{coarse_now, heavy_barrier, register_heavy_barrier};

/// A model of a kernel wait.
pub(super) const NATIVE: bool = true;

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
