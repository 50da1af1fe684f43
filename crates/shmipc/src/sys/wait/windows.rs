//! Windows: `WaitOnAddress` does not cross processes, so a wait on a word in shared
//! memory sleeps on a **doorbell**: a named kernel semaphore per waited word, with
//! a shared count of its sleepers beside it, named after the word's place (the
//! section's kernel name and the word's offset in it), so that every process that
//! maps the segment finds the same doorbell. The word stays the source of truth;
//! the doorbell only carries wake-ups.
//!
//! # Finding the doorbell
//!
//! Every view of a segment (`view.rs`) is registered here with its section's
//! kernel name (`NtQueryObject`) and its offset in the section; a word's doorbell is
//! `Local\.shmipc-bell-H-O` (a semaphore) and `Local\.shmipc-bellc-H-O` (a one-page
//! section holding the sleeper count), H a hash of the section's name and O the
//! word's offset in the section. A word in a view of an unnamed section (or not in
//! a registered view) has no doorbell: its waits fall back to a bounded sleep-poll.
//! Each process opens a word's doorbell once and keeps it with the view.
//!
//! # No lost wake-ups
//!
//! Sleeper: `count += 1` (SeqCst RMW), re-load the word (SeqCst); if it no longer
//! holds `expected`, take the count back and return; else wait on the semaphore.
//! Waker: the caller changed the word; `fence(SeqCst)`, load `count`; if non-zero,
//! take `k = min(count, n)` off it (CAS) and release the semaphore `k` times.
//!
//! The count word holds the count in its low 16 bits and an epoch in its high 16
//! bits, bumped by every waker's CAS; a sleeper takes its count back only in the
//! epoch it added it in (as a channel bell's `sleepers`, `channel/notify.rs`), so
//! it never takes a count a later sleeper added. Where a waker took fewer than all
//! (a wake-one), the others' counts stay after they leave: a later waker releases
//! units for them, which cost a spurious wake-up each, never a late one.
//!
//! The sleeper's increment and the waker's fence are in the single total order of
//! SeqCst operations (the Dekker pattern, as in `channel/notify.rs`): either the
//! sleeper's re-load sees the new word and it does not sleep, or the waker sees its
//! count and releases a unit. A released unit stays in the semaphore until taken,
//! so a sleeper that has not reached `WaitForSingleObject` yet still wakes at once:
//! unlike a futex, the kernel object remembers the wake. Residual case: a sleeper
//! that times out after a waker took its count leaves a unit (a later sleeper wakes
//! spuriously and re-checks). Every caller sleeps in slices of at most 100 ms and
//! re-checks, so these cost time, never correctness; a hostile process can cause
//! the same, no more.
//!
//! # Async waits and the WaitSet
//!
//! The reactor (`reactor.rs`) runs the sleeper's half in the registering thread
//! ([`arm`]: count, re-load the word), then one thread per 63 registrations waits
//! on their doorbells and its control event with `WaitForMultipleObjects`, and
//! wakes the registrations of the doorbell that was signalled.
//!
//! # Safety
//!
//! One ntdll call, `NtQueryObject(ObjectNameInformation)`, into a buffer of ours.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use windows_sys::Win32::Foundation::{HANDLE, UNICODE_STRING};

use super::fallback::{poll_wait, poll_wake};
use super::Wake;
use crate::deadline::Deadline;
use crate::shim::AtomicU32;
use crate::sys::kobj::{Kobj, New, SharedWord, WaitFail};

pub(crate) use super::fallback::{coarse_now, heavy_barrier, register_heavy_barrier};

/// The wait sleeps in the kernel (for words in named segments).
pub(super) const NATIVE: bool = true;

// ---------------------------------------------------------------------------------
// the registry of mapped views

/// One mapped view of a named section.
struct Range {
    base: usize,
    len: usize,
    /// A hash of the section's kernel name.
    section: u64,
    /// The view's offset in the section.
    offset: u64,
    /// The doorbells of the words waited on in this view, by offset in the section.
    bells: Mutex<HashMap<u64, Arc<Doorbell>>>,
}

static VIEWS: RwLock<Vec<Arc<Range>>> = RwLock::new(Vec::new());

#[link(name = "ntdll")]
extern "system" {
    fn NtQueryObject(h: HANDLE, class: i32, info: *mut c_void, len: u32, ret: *mut u32) -> i32;
}

/// The kernel name of the object `h` (`None`: unnamed, or the OS did not say).
fn object_name(h: HANDLE) -> Option<Vec<u16>> {
    const OBJECT_NAME_INFORMATION: i32 = 1;
    let mut buf = vec![0u64; 256]; // 2 KiB, aligned for UNICODE_STRING
    let len = u32::try_from(buf.len() * 8).ok()?;
    // SAFETY: `h` is a live handle borrowed for the call; `buf` is writable for
    // `len` bytes and aligned for the OBJECT_NAME_INFORMATION written there.
    let status = unsafe {
        NtQueryObject(
            h,
            OBJECT_NAME_INFORMATION,
            buf.as_mut_ptr().cast(),
            len,
            std::ptr::null_mut(),
        )
    };
    if status != 0 {
        return None;
    }
    // SAFETY: on success the buffer starts with a UNICODE_STRING whose `Buffer`
    // points inside `buf` (or is null when `Length` is 0).
    let name = unsafe { &*buf.as_ptr().cast::<UNICODE_STRING>() };
    let n = usize::from(name.Length) / 2;
    if n == 0 || name.Buffer.is_null() {
        return None;
    }
    // SAFETY: `Buffer` holds `Length` bytes of UTF-16 inside `buf`, alive here.
    Some(unsafe { std::slice::from_raw_parts(name.Buffer, n) }.to_vec())
}

/// FNV-1a, 64 bits.
fn hash(words: &[u16]) -> u64 {
    words.iter().fold(0xcbf2_9ce4_8422_2325, |h, &w| {
        (h ^ u64::from(w)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Registers a view of `section` mapped at `base` for `len` bytes from `offset`, so
/// that words in it get doorbells (through `view_mapped`, by the layer that maps views).
pub(crate) fn register_mapping(base: *const u8, len: usize, section: HANDLE, offset: u64) {
    let Some(name) = object_name(section) else {
        return; // unnamed: its waits poll
    };
    let range = Arc::new(Range {
        base: base as usize,
        len,
        section: hash(&name),
        offset,
        bells: Mutex::new(HashMap::new()),
    });
    let mut gone = Vec::new();
    if let Ok(mut views) = VIEWS.write() {
        // A stale entry at this address (its unmapping raced ours): replace it.
        if let Some(i) = views.iter().position(|r| r.base == range.base) {
            gone.push(views.swap_remove(i));
        }
        views.push(range);
    }
    // Dropped after the lock is released: closing its doorbells takes system calls.
    drop(gone);
}

/// Forgets the view mapped at `base` (called before it is unmapped).
pub(crate) fn unregister_mapping(base: *const u8) {
    let mut gone = None;
    if let Ok(mut views) = VIEWS.write() {
        if let Some(i) = views.iter().position(|r| r.base == base as usize) {
            gone = Some(views.swap_remove(i));
        }
    }
    // Dropped after the lock is released: closing its doorbells takes system calls.
    drop(gone);
}

/// The doorbell of `word`, if it lies in a registered view.
fn doorbell(word: &AtomicU32) -> Option<Arc<Doorbell>> {
    let addr = word.as_ptr() as usize;
    let range = VIEWS
        .read()
        .ok()?
        .iter()
        .find(|r| addr >= r.base && addr - r.base < r.len)
        .cloned()?;
    let at = range.offset + u64::try_from(addr - range.base).ok()?;
    let mut bells = range.bells.lock().ok()?;
    if let Some(b) = bells.get(&at) {
        return Some(Arc::clone(b));
    }
    let b = Arc::new(Doorbell::open(range.section, at)?);
    bells.insert(at, Arc::clone(&b));
    Some(b)
}

// ---------------------------------------------------------------------------------
// doorbells

/// A word's doorbell: a named semaphore and the shared count of its sleepers.
pub(super) struct Doorbell {
    sem: Kobj,
    count: SharedWord,
}

/// The count bits of a doorbell's count word (the rest is the epoch).
const COUNT: u32 = 0xffff;
/// One epoch step.
const EPOCH: u32 = COUNT + 1;

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbell").finish_non_exhaustive()
    }
}

/// What [`arm`] found.
pub(super) enum Armed {
    /// The word no longer holds the expected value: ready now.
    Changed,
    /// Counted as a sleeper of this doorbell, with this token (its epoch).
    Bell(Arc<Doorbell>, u32),
    /// The word has no doorbell (unnamed segment, process memory): poll it.
    NoBell,
}

/// The sleeper's half of the doorbell protocol, for the reactor (module doc).
pub(super) fn arm(word: &AtomicU32, expected: u32) -> Armed {
    let Some(bell) = doorbell(word) else {
        return Armed::NoBell;
    };
    let token = bell.announce();
    if word.load(Ordering::SeqCst) != expected {
        bell.take_back(token);
        return Armed::Changed;
    }
    Armed::Bell(bell, token)
}

impl Doorbell {
    fn open(section: u64, at: u64) -> Option<Self> {
        let tag = format!("{section:016x}-{at:x}");
        // Everyone who can map the segment may ring and wait (the segment's own
        // DACL already decides who gets that far).
        let (sem, _) = Kobj::create(
            Some(&format!(".shmipc-bell-{tag}")),
            New::Semaphore {
                initial: 0,
                max: i32::MAX,
            },
            Some(0o666),
            false,
        )
        .ok()?;
        let (count, _) = SharedWord::open_or_create(&format!(".shmipc-bellc-{tag}"), 0o666).ok()?;
        Some(Self { sem, count })
    }

    /// Counts a sleeper (SeqCst RMW: the sleeper's half of the Dekker pattern);
    /// returns its token.
    fn announce(&self) -> u32 {
        self.count.word().fetch_add(1, Ordering::SeqCst) / EPOCH
    }

    /// Takes back a count added with `token`, unless a waker took counts since;
    /// true if taken back (false: a unit was or will be released for it).
    pub(super) fn take_back(&self, token: u32) -> bool {
        self.count
            .word()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v / EPOCH == token && v & COUNT != 0).then(|| v - 1)
            })
            .is_ok()
    }

    /// The semaphore, to wait on.
    pub(super) fn kobj(&self) -> &Kobj {
        &self.sem
    }

    /// Takes a unit released for a sleeper that left, if it is there.
    pub(super) fn absorb(&self) {
        let _ = self.sem.wait(Deadline::Now);
    }

    /// Puts back a unit taken for nobody (its sleeper left meanwhile).
    pub(super) fn give_back(&self) {
        self.sem.release_semaphore();
    }
}

pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Wake {
    let Some(bell) = doorbell(word) else {
        return poll_wait(word, expected, timeout);
    };
    // SeqCst RMW then SeqCst load: the sleeper's half of the Dekker pattern.
    let token = bell.announce();
    if word.load(Ordering::SeqCst) != expected {
        bell.take_back(token);
        return Wake::Maybe;
    }
    let deadline = timeout.map_or(Deadline::Never, Deadline::after);
    match bell.sem.wait(deadline) {
        Ok(_) => Wake::Maybe, // the waker took our count
        Err(WaitFail::TimedOut) => {
            bell.take_back(token);
            Wake::TimedOut
        }
        Err(WaitFail::Os(_)) => {
            bell.take_back(token);
            // Never spin on a broken doorbell: sleep a poll's worth instead.
            poll_wait(word, expected, timeout)
        }
    }
}

pub(super) fn wake(word: &AtomicU32, n: u32) -> usize {
    // The waker's half: the caller changed the word; SeqCst fence, then the count.
    fence(Ordering::SeqCst);
    let Some(bell) = doorbell(word) else {
        return poll_wake(word, n);
    };
    let count = bell.count.word();
    let mut v = count.load(Ordering::Relaxed);
    while v & COUNT != 0 {
        let k = (v & COUNT).min(n);
        // Take k, and start a new epoch (module doc).
        let new = (v & !COUNT).wrapping_add(EPOCH) | ((v & COUNT) - k);
        match count.compare_exchange(v, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                bell.sem
                    .release_semaphore_by(i32::try_from(k).unwrap_or(i32::MAX));
                return usize::try_from(k).unwrap_or(usize::MAX);
            }
            Err(now) => v = now,
        }
    }
    0
}

pub(super) use super::fallback::wait_many;
