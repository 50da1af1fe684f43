//! Windows: `CreateMutexW` / `CreateSemaphoreW` / `CreateEventW` and their `Open*W`,
//! `WaitForSingleObject`, the `Nt*BasicInformation` queries, and a named one-page
//! section holding one shared word (the mutex's consistency flag).
//!
//! Timeouts are `WaitForSingleObject` with the timeout in milliseconds rounded up (so
//! a non-zero timeout never becomes a zero-time poll), and never `INFINITE` for a
//! finite timeout (longer ones wait in rounds until the deadline).
//!
//! # Safety
//!
//! The Win32 and ntdll calls on kernel objects; each `unsafe` block says why it is
//! sound. Handles are owned by [`OwnedHandle`] as soon as they are returned.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::AtomicU32;

use windows_sys::Win32::Foundation::{
    GetLastError, SetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, ERROR_PATH_NOT_FOUND, HANDLE, INVALID_HANDLE_VALUE, WAIT_ABANDONED,
    WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Memory::{FILE_MAP_READ, FILE_MAP_WRITE};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, CreateSemaphoreW, OpenEventW, OpenMutexW, OpenSemaphoreW,
    ReleaseMutex, ReleaseSemaphore, ResetEvent, SetEvent, WaitForMultipleObjects,
    WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE, MUTEX_MODIFY_STATE, SEMAPHORE_MODIFY_STATE,
};

use super::{Fail, Signalled, WaitFail};
use crate::deadline::Deadline;
use crate::sys::{self, Namespace, Security};

// ---------------------------------------------------------------------------------
// ntdll queries (documented in the WDK, implemented by Wine)

const STATUS_SUCCESS: i32 = 0;
const QUERY_STATE: u32 = 0x0001; // MUTANT_/SEMAPHORE_/EVENT_QUERY_STATE

/// `MUTANT_BASIC_INFORMATION`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct MutantInfo {
    /// 1 free, <= 0 held (recursion depth).
    pub(crate) current_count: i32,
    /// Whether the calling thread holds it.
    pub(crate) owned_by_caller: u8,
    /// Whether its holder died holding it and nobody has taken it since.
    pub(crate) abandoned_state: u8,
}

/// `SEMAPHORE_BASIC_INFORMATION`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct SemaphoreInfo {
    pub(crate) current_count: i32,
    pub(crate) maximum_count: i32,
}

/// `EVENT_BASIC_INFORMATION`.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct EventInfo {
    /// 0 NotificationEvent (manual reset), 1 SynchronizationEvent (auto reset).
    pub(crate) event_type: i32,
    pub(crate) event_state: i32,
}

#[link(name = "ntdll")]
extern "system" {
    fn NtQueryMutant(h: HANDLE, class: i32, info: *mut c_void, len: u32, ret: *mut u32) -> i32;
    fn NtQuerySemaphore(h: HANDLE, class: i32, info: *mut c_void, len: u32, ret: *mut u32) -> i32;
    fn NtQueryEvent(h: HANDLE, class: i32, info: *mut c_void, len: u32, ret: *mut u32) -> i32;
}

type NtQuery = unsafe extern "system" fn(HANDLE, i32, *mut c_void, u32, *mut u32) -> i32;

/// Runs one of the `Nt*BasicInformation` queries (class 0) on `h` into a `T`.
///
/// # Safety
/// `query` must be the query for `h`'s object type and `T` its basic information
/// struct (`#[repr(C)]`, valid for any bytes).
unsafe fn nt_query<T: Default>(query: NtQuery, h: &OwnedHandle) -> Option<T> {
    let mut info = T::default();
    let len = u32::try_from(size_of::<T>()).ok()?;
    // SAFETY: `h` is live; `info` is writable for `len` bytes; per the caller, `T` is
    // the struct this query fills.
    let status = unsafe {
        query(
            h.as_raw_handle(),
            0,
            ptr::from_mut(&mut info).cast(),
            len,
            ptr::null_mut(),
        )
    };
    (status == STATUS_SUCCESS).then_some(info)
}

// ---------------------------------------------------------------------------------
// names and errors

/// `Local\NAME` as NUL-terminated UTF-16.
fn local(name: &str) -> Vec<u16> {
    sys::wide(&format!("{}{name}", Namespace::Local.prefix()))
}

fn last_error() -> u32 {
    // SAFETY: reads this thread's last error; no preconditions.
    unsafe { GetLastError() }
}

fn os_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(code).unwrap_or(-1))
}

/// What kind of kernel object has `name` (`None`: none of ours, e.g. a section).
pub(crate) fn kind_of(name: &str) -> Option<&'static str> {
    let w = local(name);
    let opens: [(
        &'static str,
        unsafe extern "system" fn(u32, i32, *const u16) -> HANDLE,
    ); 3] = [
        ("mutex", OpenMutexW),
        ("semaphore", OpenSemaphoreW),
        ("event", OpenEventW),
    ];
    for (kind, open) in opens {
        // SAFETY: `w` is NUL-terminated UTF-16 that outlives the call.
        let h = unsafe { open(SYNCHRONIZE, 0, w.as_ptr()) };
        if !h.is_null() {
            // SAFETY: a fresh handle, closed here.
            drop(unsafe { OwnedHandle::from_raw_handle(h) });
            return Some(kind);
        }
    }
    None
}

fn classify(name: &str, code: u32, exclusive: bool) -> Fail {
    match code {
        ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => Fail::NotFound,
        // A create of an existing name of another type (or, exclusive, of ours).
        ERROR_INVALID_HANDLE if exclusive => Fail::Exists,
        ERROR_INVALID_HANDLE => Fail::OtherKind(kind_of(name)),
        ERROR_ACCESS_DENIED => Fail::Denied(os_error(code)),
        _ => Fail::Os(os_error(code)),
    }
}

// ---------------------------------------------------------------------------------
// objects

/// What to create.
#[derive(Debug, Clone, Copy)]
pub(crate) enum New {
    /// A mutex, owned by the calling thread if `owned`.
    Mutex { owned: bool },
    /// A semaphore.
    Semaphore { initial: i32, max: i32 },
    /// An event.
    Event { manual: bool, set: bool },
}

/// Which kind to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Mutex,
    Semaphore,
    Event,
}

/// A named (or unnamed) Win32 mutex, semaphore or event.
#[derive(Debug)]
pub(crate) struct Kobj(OwnedHandle);

impl Kobj {
    /// Creates `Local\NAME` (`None`: unnamed), or opens it if it exists (then the
    /// second value is true) unless `exclusive`. `mode`: its DACL, as for segments
    /// (owner-only, plus Everyone wait+signal for write bits, wait for read bits);
    /// `None` for the default.
    pub(crate) fn create(
        name: Option<&str>,
        new: New,
        mode: Option<u32>,
        exclusive: bool,
    ) -> Result<(Self, bool), Fail> {
        let security = mode
            .map(|m| Security::for_mode_with(m, "GRGWGX", "GRGX"))
            .transpose()
            .map_err(Fail::Security)?;
        let sa: Option<SECURITY_ATTRIBUTES> = security.as_ref().map(Security::attributes);
        let sa_ptr = sa.as_ref().map_or(ptr::null(), ptr::from_ref);
        let w = name.map(local);
        let w_ptr = w.as_ref().map_or(ptr::null(), |w| w.as_ptr());
        // SAFETY: clears the last error so that success without ERROR_ALREADY_EXISTS
        // reads as "created".
        unsafe { SetLastError(0) };
        // SAFETY: `sa` (with the descriptor `security` owns) and `w` outlive the call;
        // `w` is NUL-terminated or null (unnamed).
        let raw = unsafe {
            match new {
                New::Mutex { owned } => CreateMutexW(sa_ptr, i32::from(owned), w_ptr),
                New::Semaphore { initial, max } => CreateSemaphoreW(sa_ptr, initial, max, w_ptr),
                New::Event { manual, set } => {
                    CreateEventW(sa_ptr, i32::from(manual), i32::from(set), w_ptr)
                }
            }
        };
        let code = last_error();
        if raw.is_null() {
            return Err(classify(name.unwrap_or(""), code, exclusive));
        }
        // SAFETY: a non-null return is a fresh handle that nothing else owns.
        let h = Self(unsafe { OwnedHandle::from_raw_handle(raw) });
        let existed = code == ERROR_ALREADY_EXISTS;
        if existed && exclusive {
            return Err(Fail::Exists);
        }
        Ok((h, existed))
    }

    /// Opens `Local\NAME` to wait on, signal and query it.
    pub(crate) fn open(name: &str, which: Which) -> Result<Self, Fail> {
        let access = match which {
            Which::Mutex => SYNCHRONIZE | MUTEX_MODIFY_STATE,
            Which::Semaphore => SYNCHRONIZE | SEMAPHORE_MODIFY_STATE | QUERY_STATE,
            Which::Event => SYNCHRONIZE | EVENT_MODIFY_STATE | QUERY_STATE,
        };
        Self::open_with(name, which, access).map_err(|code| classify(name, code, false))
    }

    /// Opens `Local\NAME` to look at it only (query rights); `None` if there is no
    /// such object of that kind.
    pub(crate) fn open_query(name: &str, which: Which) -> Option<Self> {
        Self::open_with(name, which, SYNCHRONIZE | QUERY_STATE).ok()
    }

    fn open_with(name: &str, which: Which, access: u32) -> Result<Self, u32> {
        let w = local(name);
        // SAFETY: `w` is NUL-terminated UTF-16 that outlives the call.
        let raw = unsafe {
            match which {
                Which::Mutex => OpenMutexW(access, 0, w.as_ptr()),
                Which::Semaphore => OpenSemaphoreW(access, 0, w.as_ptr()),
                Which::Event => OpenEventW(access, 0, w.as_ptr()),
            }
        };
        if raw.is_null() {
            return Err(last_error());
        }
        // SAFETY: a non-null return is a fresh handle that nothing else owns.
        Ok(Self(unsafe { OwnedHandle::from_raw_handle(raw) }))
    }

    /// The handle (for tests of its security descriptor).
    #[cfg(test)]
    pub(crate) fn handle(&self) -> &OwnedHandle {
        &self.0
    }

    /// `WaitForSingleObject` until `deadline`, in rounds of at most `INFINITE - 1`
    /// ms.
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<Signalled, WaitFail> {
        loop {
            let ms = wait_ms(deadline);
            // SAFETY: the handle is live and waitable, borrowed for the call.
            match unsafe { WaitForSingleObject(self.0.as_raw_handle(), ms) } {
                WAIT_OBJECT_0 => return Ok(Signalled::Yes),
                WAIT_ABANDONED => return Ok(Signalled::Abandoned),
                WAIT_TIMEOUT => {
                    if ms != INFINITE && deadline.passed() {
                        return Err(WaitFail::TimedOut);
                    }
                }
                _ => return Err(WaitFail::Os(io::Error::last_os_error())),
            }
        }
    }

    /// Releases a mutex this thread holds (a failure, not the owner, is ignored).
    pub(crate) fn release_mutex(&self) {
        // SAFETY: the handle is a live mutex handle.
        unsafe { ReleaseMutex(self.0.as_raw_handle()) };
    }

    /// Adds a unit to a semaphore; false at its maximum (`ERROR_TOO_MANY_POSTS`, the
    /// only failure a handle with `SEMAPHORE_MODIFY_STATE` can see).
    pub(crate) fn release_semaphore(&self) -> bool {
        // SAFETY: the handle is a live semaphore handle; the previous count is not asked.
        unsafe { ReleaseSemaphore(self.0.as_raw_handle(), 1, ptr::null_mut()) != 0 }
    }

    /// Adds `n` units to a semaphore (fewer never: at its maximum, none); false then.
    pub(crate) fn release_semaphore_by(&self, n: i32) -> bool {
        // SAFETY: the handle is a live semaphore handle; the previous count is not asked.
        unsafe { ReleaseSemaphore(self.0.as_raw_handle(), n, ptr::null_mut()) != 0 }
    }

    /// Sets an event.
    pub(crate) fn set_event(&self) {
        // SAFETY: the handle is a live event handle with EVENT_MODIFY_STATE.
        unsafe { SetEvent(self.0.as_raw_handle()) };
    }

    /// Resets an event.
    pub(crate) fn reset_event(&self) {
        // SAFETY: as for `set_event`.
        unsafe { ResetEvent(self.0.as_raw_handle()) };
    }

    /// A mutex's state (`None` if the OS does not say).
    pub(crate) fn mutant(&self) -> Option<MutantInfo> {
        // SAFETY: NtQueryMutant on a mutex handle fills a MUTANT_BASIC_INFORMATION;
        // on another kind it fails (STATUS_OBJECT_TYPE_MISMATCH) and writes nothing.
        unsafe { nt_query(NtQueryMutant, &self.0) }
    }

    /// A semaphore's state.
    pub(crate) fn semaphore(&self) -> Option<SemaphoreInfo> {
        // SAFETY: as for `mutant`, for NtQuerySemaphore.
        unsafe { nt_query(NtQuerySemaphore, &self.0) }
    }

    /// An event's state.
    pub(crate) fn event(&self) -> Option<EventInfo> {
        // SAFETY: as for `mutant`, for NtQueryEvent.
        unsafe { nt_query(NtQueryEvent, &self.0) }
    }
}

/// The most objects one [`wait_any`] takes (`MAXIMUM_WAIT_OBJECTS`).
pub(crate) const WAIT_ANY_MAX: usize = 64;

/// `WaitForMultipleObjects` (wait for any) on up to [`WAIT_ANY_MAX`] objects until
/// `deadline`: the index of one that was signalled (a semaphore's unit or an
/// auto-reset event's signal is taken, a mutex is now ours), the lowest if several.
pub(crate) fn wait_any(objs: &[&Kobj], deadline: Deadline) -> Result<(usize, Signalled), WaitFail> {
    let handles: Vec<HANDLE> = objs.iter().map(|o| o.0.as_raw_handle()).collect();
    let n = u32::try_from(handles.len().min(WAIT_ANY_MAX)).unwrap_or(0);
    loop {
        let ms = wait_ms(deadline);
        // SAFETY: `handles` holds `n` live waitable handles (each borrowed from a
        // `Kobj` in `objs`, alive for the call), none twice (the caller's duty;
        // otherwise the call fails with ERROR_INVALID_PARAMETER, no harm done).
        let r = unsafe { WaitForMultipleObjects(n, handles.as_ptr(), 0, ms) };
        if (WAIT_OBJECT_0..WAIT_OBJECT_0 + n).contains(&r) {
            return Ok(((r - WAIT_OBJECT_0) as usize, Signalled::Yes));
        }
        if (WAIT_ABANDONED..WAIT_ABANDONED + n).contains(&r) {
            return Ok(((r - WAIT_ABANDONED) as usize, Signalled::Abandoned));
        }
        if r == WAIT_TIMEOUT {
            if ms != INFINITE && deadline.passed() {
                return Err(WaitFail::TimedOut);
            }
            continue;
        }
        return Err(WaitFail::Os(io::Error::last_os_error()));
    }
}

/// The milliseconds to pass to a wait for what is left of `deadline`: rounded up,
/// below `INFINITE`. No deadline: `INFINITE`.
pub(crate) fn wait_ms(deadline: Deadline) -> u32 {
    let Some(left) = deadline.left() else {
        return INFINITE;
    };
    let ms = left.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).map_or(INFINITE - 1, |m| m.min(INFINITE - 1))
}

// ---------------------------------------------------------------------------------
// a shared word beside an object

const FLAG_SIZE: usize = 4096;

/// A named one-page section `Local\NAME` holding one shared word.
#[derive(Debug)]
pub(crate) struct SharedWord {
    // Declared first: unmapped before the section handle closes.
    map: sys::Mapping,
    _section: OwnedHandle,
}

impl SharedWord {
    /// Creates or opens it read-write, with the DACL of `mode`; true if it existed.
    pub(crate) fn open_or_create(name: &str, mode: u32) -> io::Result<(Self, bool)> {
        let security = Security::for_mode(mode)?;
        let sa = security.attributes();
        let (section, existed) = sys::create_section(
            INVALID_HANDLE_VALUE,
            Some(&sa),
            FLAG_SIZE as u64,
            Some(&local(name)),
        )?;
        let map = sys::map_raw(
            section.as_raw_handle(),
            FILE_MAP_READ | FILE_MAP_WRITE,
            0,
            FLAG_SIZE,
        )?;
        Ok((
            Self {
                map,
                _section: section,
            },
            existed,
        ))
    }

    /// Opens it read-only, if it exists.
    pub(crate) fn open_read(name: &str) -> Option<Self> {
        let section = sys::open_section(FILE_MAP_READ, &local(name)).ok()??;
        let map = sys::map_raw(section.as_raw_handle(), FILE_MAP_READ, 0, FLAG_SIZE).ok()?;
        Some(Self {
            map,
            _section: section,
        })
    }

    /// The word (only read, for one opened read-only).
    pub(crate) fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is FLAG_SIZE bytes, page-aligned, shared, and lives as
        // long as `self`; an AtomicU32 is valid for any bytes and only accessed
        // atomically (and only loaded through a read-only mapping).
        unsafe { &*self.map.ptr().as_ptr().cast::<AtomicU32>() }
    }

    /// The section handle (for tests of its security descriptor).
    #[cfg(test)]
    pub(crate) fn handle(&self) -> &OwnedHandle {
        &self._section
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn wait_ms_rounds_up_and_never_means_infinite() {
        assert_eq!(wait_ms(Deadline::Never), INFINITE);
        let soon = Instant::now() + Duration::from_micros(10);
        assert!(wait_ms(Deadline::At(soon)) <= 1);
        let far = Instant::now() + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(wait_ms(Deadline::At(far)), INFINITE - 1);
        let half = Instant::now() + Duration::from_micros(1500);
        assert!(matches!(wait_ms(Deadline::At(half)), 1 | 2));
    }

    #[test]
    fn unnamed_event_wakes_a_waiter() {
        let (e, existed) = Kobj::create(
            None,
            New::Event {
                manual: false,
                set: false,
            },
            None,
            false,
        )
        .unwrap();
        assert!(!existed);
        assert!(matches!(e.wait(Deadline::Now), Err(WaitFail::TimedOut)));
        e.set_event();
        assert_eq!(e.wait(Deadline::Never).unwrap(), Signalled::Yes);
    }
}
