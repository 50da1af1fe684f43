//! Windows: `OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE)`, then
//! `WaitForSingleObject(h, 0)` (signalled once the process has exited, however it
//! ended, `TerminateProcess` included) and `GetProcessTimes` (its creation time, in
//! 100 ns units since 1601).
//!
//! A process id stays taken while any handle to the process object is open, even
//! after the process exits; the wait tells such a process apart from a live one.
//! Once the last handle closes, the id can be reused, and the creation time tells
//! the newcomer apart. `OpenProcess` failing with `ERROR_INVALID_PARAMETER` means no
//! process has that id. A process of another user may refuse `SYNCHRONIZE`: then
//! the exit code is asked instead (`STILL_ACTIVE` while it runs).
//!
//! # Safety
//!
//! The Win32 calls of the channel layer's liveness check; each `unsafe` block says
//! why it is sound. A handle is owned by [`OwnedHandle`] as soon as it is returned.
#![allow(unsafe_code)]

use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, STILL_ACTIVE,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, WaitForSingleObject, PROCESS_ACCESS_RIGHTS,
    PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
};

use super::Probe;

pub(super) fn probe(pid: u32) -> Probe {
    match open(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE) {
        Ok(h) => {
            // SAFETY: `h` is a live process handle with SYNCHRONIZE access; a zero
            // timeout only polls.
            match unsafe { WaitForSingleObject(h.as_raw_handle(), 0) } {
                WAIT_OBJECT_0 => Probe::Gone,
                WAIT_TIMEOUT => started(&h),
                _ => Probe::Unknown,
            }
        }
        Err(ERROR_ACCESS_DENIED) => match open(pid, PROCESS_QUERY_LIMITED_INFORMATION) {
            Ok(h) => {
                let mut code = 0u32;
                // SAFETY: a live process handle with query access; `code` is a
                // valid out pointer.
                let ok = unsafe { GetExitCodeProcess(h.as_raw_handle(), &mut code) } != 0;
                // STILL_ACTIVE is a positive NTSTATUS (259): the cast is exact.
                if ok && code != STILL_ACTIVE as u32 {
                    Probe::Gone
                } else {
                    started(&h)
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
fn open(pid: u32, access: PROCESS_ACCESS_RIGHTS) -> Result<OwnedHandle, u32> {
    // SAFETY: plain call with no pointers; the result is a new handle or null.
    let raw = unsafe { OpenProcess(access, 0, pid) };
    if raw.is_null() {
        // SAFETY: reads this thread's last error, set by the failed call above.
        return Err(unsafe { GetLastError() });
    }
    // SAFETY: `raw` is a handle just returned to us and owned by nobody else.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// The process's creation time, or `Unknown` if the OS does not say.
fn started(h: &OwnedHandle) -> Probe {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
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
    if !ok {
        return Probe::Unknown;
    }
    Probe::Started(u64::from(created.dwLowDateTime) | (u64::from(created.dwHighDateTime) << 32))
}
