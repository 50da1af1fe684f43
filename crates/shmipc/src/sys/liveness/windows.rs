//! Windows: thread and process ids with their creation times.
//!
//! A lock owner is a thread, named by its thread id **and its creation time**
//! (`GetThreadTimes`), packed in 63 bits:
//!
//! ```text
//! bits 62..31  thread id (a DWORD)
//! bits 30..0   creation time in 100 ns units (FILETIME), modulo 2^31 (214.7 s)
//! ```
//!
//! A thread is dead when no thread has that id any more (`OpenThread` fails with
//! `ERROR_INVALID_PARAMETER`), when the thread with that id has exited (its handle is
//! signalled), or when it was created at another time (the id was reused). Anything
//! else (access denied, a failed query) counts as alive. Two threads with the same id
//! whose creation times agree modulo 2^31 × 100 ns only delay a waiter until the second
//! one exits, they cannot let two in.
//!
//! A process: `OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE)`, then
//! `WaitForSingleObject(h, 0)` (signalled once the process has exited, however it
//! ended, `TerminateProcess` included) and `GetProcessTimes` (its creation time). A
//! process id stays taken while any handle to the process object is open, even after
//! the process exits; the wait tells such a process apart from a live one. Once the
//! last handle closes, the id can be reused, and the creation time tells the newcomer
//! apart. A process of another user may refuse `SYNCHRONIZE`: then the exit code is
//! asked instead (`STILL_ACTIVE` while it runs).
//!
//! # Safety
//!
//! The Win32 calls of the liveness checks; each `unsafe` block says why it is
//! sound. A handle is owned by [`OwnedHandle`] as soon as it is returned.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, HANDLE, STILL_ACTIVE,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Threading::{
    GetCurrentThread, GetCurrentThreadId, GetExitCodeProcess, GetProcessTimes, GetThreadTimes,
    OpenProcess, OpenThread, WaitForSingleObject, PROCESS_ACCESS_RIGHTS,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, THREAD_QUERY_LIMITED_INFORMATION,
};

use super::{Liveness, Probe};

pub(crate) use super::pid_token::{process_id, process_identity, process_liveness_of};
pub(crate) use super::unscoped::{
    current_owner, hold_process, is_process, owner_liveness, process_liveness, Anchor, Scope,
};

/// Lock owners can be named and checked here.
pub(crate) const SUPPORTED: bool = true;

const TIME_BITS: u32 = 31;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

const ZERO: FILETIME = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
};

fn filetime(ft: FILETIME) -> u64 {
    u64::from(ft.dwHighDateTime) << 32 | u64::from(ft.dwLowDateTime)
}

fn last_error() -> u32 {
    // SAFETY: reads this thread's last error; no preconditions.
    unsafe { GetLastError() }
}

/// No fork on Windows.
pub(crate) fn fork_generation() -> Option<u64> {
    Some(0)
}

// ---------------------------------------------------------------------------------
// lock owners

/// The creation time of the thread `h` (100 ns units since 1601).
fn thread_created(h: HANDLE) -> io::Result<u64> {
    let (mut created, mut exited, mut kernel, mut user) = (ZERO, ZERO, ZERO, ZERO);
    // SAFETY: `h` is a live thread handle (or the current-thread pseudo-handle)
    // borrowed for the call; the four out pointers are valid FILETIMEs.
    let ok = unsafe { GetThreadTimes(h, &mut created, &mut exited, &mut kernel, &mut user) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(filetime(created))
}

fn encode(tid: u32, created: u64) -> u64 {
    u64::from(tid) << TIME_BITS | (created & TIME_MASK)
}

/// This thread's owner id.
pub(super) fn compute_owner() -> io::Result<u64> {
    // SAFETY: no preconditions; returns this thread's id.
    let tid = unsafe { GetCurrentThreadId() };
    if tid == 0 {
        return Err(io::Error::other("thread id 0"));
    }
    // SAFETY: the pseudo-handle of the current thread needs no closing.
    let created = thread_created(unsafe { GetCurrentThread() })?;
    Ok(encode(tid, created))
}

/// Whether the thread `id` names still runs. `Dead` only when that is certain.
pub(crate) fn owner_liveness_of(id: u64) -> Liveness {
    let Some(tid) = owner_thread(id) else {
        return Liveness::Dead; // bit 63 set, beyond a DWORD, or 0: garbage
    };
    // SAFETY: plain call; a null return is handled below.
    let raw = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, 0, tid) };
    if raw.is_null() {
        // No thread has this id: its owner is gone. Anything else (access denied to
        // another user's thread): conservatively alive.
        return if last_error() == ERROR_INVALID_PARAMETER {
            Liveness::Dead
        } else {
            Liveness::Alive
        };
    }
    // SAFETY: a non-null return is a fresh thread handle that nothing else owns.
    let thread = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: `thread` is live; a zero timeout only polls its state.
    if unsafe { WaitForSingleObject(thread.as_raw_handle(), 0) } == WAIT_OBJECT_0 {
        return Liveness::Dead; // exited (its object lingers while handles remain)
    }
    match thread_created(thread.as_raw_handle()) {
        Ok(created) if created & TIME_MASK != id & TIME_MASK => Liveness::Dead,
        _ => Liveness::Alive,
    }
}

/// The thread id in an owner id (`None` for garbage with no thread id).
pub(crate) fn owner_thread(id: u64) -> Option<u32> {
    u32::try_from(id >> TIME_BITS).ok().filter(|&t| t != 0)
}

/// No PID or time namespaces to compare here.
pub(crate) fn namespaces() -> [u64; 2] {
    [0, 0]
}

// ---------------------------------------------------------------------------------
// processes

pub(super) fn probe(pid: u32) -> Probe {
    match open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE) {
        Ok(h) => {
            // SAFETY: `h` is a live process handle with SYNCHRONIZE access; a zero
            // timeout only polls.
            match unsafe { WaitForSingleObject(h.as_raw_handle(), 0) } {
                WAIT_OBJECT_0 => Probe::Gone,
                WAIT_TIMEOUT => process_started(&h),
                _ => Probe::Unknown,
            }
        }
        Err(ERROR_ACCESS_DENIED) => match open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION) {
            Ok(h) => {
                let mut code = 0u32;
                // SAFETY: a live process handle with query access; `code` is a
                // valid out pointer.
                let ok = unsafe { GetExitCodeProcess(h.as_raw_handle(), &mut code) } != 0;
                if ok && i64::from(code) != i64::from(STILL_ACTIVE) {
                    Probe::Gone
                } else {
                    process_started(&h)
                }
            }
            Err(ERROR_INVALID_PARAMETER) => Probe::Gone,
            Err(_) => Probe::Unknown,
        },
        Err(ERROR_INVALID_PARAMETER) => Probe::Gone,
        Err(_) => Probe::Unknown,
    }
}

/// Opens process `pid`; the Win32 error code on failure.
fn open_process(pid: u32, access: PROCESS_ACCESS_RIGHTS) -> Result<OwnedHandle, u32> {
    // SAFETY: plain call with no pointers; the result is a new handle or null.
    let raw = unsafe { OpenProcess(access, 0, pid) };
    if raw.is_null() {
        return Err(last_error());
    }
    // SAFETY: `raw` is a handle just returned to us and owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// The process's creation time, or `Unknown` if the OS does not say.
fn process_started(h: &OwnedHandle) -> Probe {
    let (mut created, mut exited, mut kernel, mut user) = (ZERO, ZERO, ZERO, ZERO);
    // SAFETY: a live process handle with query access; four valid out pointers.
    let ok = unsafe {
        GetProcessTimes(
            h.as_raw_handle(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    } != 0;
    if ok {
        Probe::Started(filetime(created))
    } else {
        Probe::Unknown
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn garbage_owner_ids_are_dead() {
        assert_eq!(owner_liveness_of(u64::MAX), Liveness::Dead);
        assert_eq!(owner_liveness_of(0x1234_5678_9abc_def0), Liveness::Dead);
        assert_eq!(owner_liveness_of(u64::MAX >> 1), Liveness::Dead);
    }
}
