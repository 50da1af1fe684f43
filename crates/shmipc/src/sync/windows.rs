//! Windows: who holds an in-segment lock and whether that thread lives, and the
//! named objects as Win32 named kernel objects.
//!
//! # In-segment objects ([`Mutex::init_at`](super::Mutex::init_at) and the others)
//!
//! Kernel objects cannot live in shared memory, so the in-segment objects run the
//! same lock-word state machines as on Linux (`raw.rs`). An owner is a thread, named
//! by its thread id **and its creation time** (`GetThreadTimes`), packed in 63 bits:
//!
//! ```text
//! bits 62..31  thread id (a DWORD)
//! bits 30..0   creation time in 100 ns units (FILETIME), modulo 2^31 (214.7 s)
//! ```
//!
//! A thread is dead when no thread has that id any more (`OpenThread` fails with
//! `ERROR_INVALID_PARAMETER`), when the thread with that id has exited (its handle is
//! signalled), or when it was created at another time (the id was reused). Anything
//! else (access denied, a failed query) counts as alive: a wrong "dead" would let two
//! threads in, a wrong "alive" only makes a waiter wait. Two threads with the same id
//! whose creation times agree modulo 2^31 × 100 ns only delay a waiter until the second
//! one exits, they cannot let two in.
//!
//! Waiting uses the portable sleep-poll of `wait.rs`, since `WaitOnAddress` does not
//! cross processes: a sleeper looks at the word every 200 µs (every timer tick, 1 to
//! 15.6 ms, on Windows hosts whose sleeps are tick-bound), so an in-segment hand-off
//! between processes costs up to that, where a Linux futex hand-off costs microseconds.
//! The uncontended paths (one CAS to lock, one swap to unlock) are the same as on
//! Linux. Use the named objects where wake-up latency matters.
//!
//! # Named objects ([`NamedMutex`](super::NamedMutex) and the others)
//!
//! They are Win32 named kernel objects, `Local\NAME` like segments, so programs that
//! call `OpenMutexW` / `OpenEventW` / `OpenSemaphoreW` directly share them:
//!
//! * mutex: `CreateMutexW`; a holder that died (`WAIT_ABANDONED`) is reported as
//!   `OwnerDied` with the guard. Windows tells only the first locker after a death;
//!   to keep the portable rule (every locker hears `OwnerDied` until one calls
//!   `mark_consistent`, and a guard dropped while panicking marks the data
//!   inconsistent), each mutex has a one-page companion section
//!   `Local\.shmipc-sync-NAME` holding that flag, written only by the holder. A
//!   program that locks the mutex through the Win32 API ignores the flag (and hears
//!   of a death only if it is the first locker after it, as Win32 always did).
//!   Windows mutexes are recursive; shmipc's are not: a thread that locks a mutex it
//!   holds gets `WouldDeadlock` (`try_lock`: `WouldBlock`), as on every OS. It asks
//!   the kernel (`NtQueryMutant`, "owned by caller") only when this thread holds a
//!   native mutex guard already, so the common path is one wait.
//! * semaphore: `CreateSemaphoreW` with the maximum (at most `i32::MAX` here);
//!   `value` and the maximum of an opened one come from `NtQuerySemaphore`.
//! * event: `CreateEventW`, manual or auto reset; `is_set` and the reset mode of an
//!   opened one come from `NtQueryEvent` (a wait would consume an auto-reset event).
//!
//! Timeouts are `WaitForSingleObject` with the timeout in milliseconds rounded up (so
//! a non-zero timeout never becomes a zero-time poll), and never `INFINITE` for a
//! finite timeout (longer ones wait in rounds until the deadline). Lifetime is native:
//! an object goes with its last handle, even when its holders are killed; asking for
//! [`Persistence::UntilRemoved`] is a `Create` error saying so, as for segments.
//! Permissions: owner-only DACL by default, as segments (`sys::Security`), with
//! Everyone allowed to wait and signal for group/other write bits (read bits: wait).
//!
//! # Safety
//!
//! This module holds the Win32 calls of the sync layer; each `unsafe` block says why it
//! is sound. Handles are owned by [`OwnedHandle`] as soon as they are returned.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    GetLastError, SetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_HANDLE, ERROR_PATH_NOT_FOUND, ERROR_TOO_MANY_POSTS, HANDLE, INVALID_HANDLE_VALUE,
    WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Memory::{FILE_MAP_READ, FILE_MAP_WRITE};
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateMutexW, CreateSemaphoreW, OpenEventW, OpenMutexW, OpenSemaphoreW,
    ReleaseMutex, ReleaseSemaphore, ResetEvent, SetEvent, WaitForSingleObject, EVENT_MODIFY_STATE,
    INFINITE, MUTEX_MODIFY_STATE, SEMAPHORE_MODIFY_STATE,
};

use crate::error::{CreateError, OpenError};
use crate::inspect::ObjectState;
use crate::layout::Kind;
use crate::name::{Name, RESERVED_PREFIX};
use crate::segment::{Disposition, Persistence};
use crate::sys::{self, Namespace, Security};

use super::error::ObjectError;
use super::named::{How, ObjectOptions};
use super::raw::Acquired;
use super::EventReset;

/// Named objects are kernel objects here ([`NativeMutex`] and the others), not
/// segments holding lock words.
pub(crate) const NATIVE_NAMED: bool = true;

thread_local! {
    /// How many native mutex guards this thread holds (to skip the recursion query).
    static NATIVE_HELD: Cell<u32> = const { Cell::new(0) };
}

// ---------------------------------------------------------------------------------
// ntdll queries (documented in the WDK, implemented by Wine)

const STATUS_SUCCESS: i32 = 0;
const QUERY_STATE: u32 = 0x0001; // MUTANT_/SEMAPHORE_/EVENT_QUERY_STATE

#[repr(C)]
#[derive(Default)]
struct MutantBasicInformation {
    current_count: i32,
    owned_by_caller: u8,
    abandoned_state: u8,
}

#[repr(C)]
#[derive(Default)]
struct SemaphoreBasicInformation {
    current_count: i32,
    maximum_count: i32,
}

#[repr(C)]
#[derive(Default)]
struct EventBasicInformation {
    event_type: i32, // 0 NotificationEvent (manual), 1 SynchronizationEvent (auto)
    event_state: i32,
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
// naming, errors, waiting

fn object_name(name: &Name) -> Vec<u16> {
    sys::wide(&format!("{}{}", Namespace::Local.prefix(), name.as_str()))
}

fn flag_name(name: &Name) -> Vec<u16> {
    sys::wide(&format!(
        "{}{RESERVED_PREFIX}sync-{}",
        Namespace::Local.prefix(),
        name.as_str()
    ))
}

fn last_error_code() -> u32 {
    // SAFETY: no preconditions.
    unsafe { GetLastError() }
}

fn os_error(code: u32) -> io::Error {
    io::Error::from_raw_os_error(i32::try_from(code).unwrap_or(-1))
}

/// What kind of kernel object has `name`, for the "not a {kind}" error.
fn kind_of(name: &Name) -> String {
    let w = object_name(name);
    let opens: [(
        &str,
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
            return kind.to_owned();
        }
    }
    "kernel object of another type (a segment's section?)".to_owned()
}

fn validate(name: &str, how: How) -> Result<Name, ObjectError> {
    Name::new(name).map_err(|e| match how {
        How::Open => ObjectError::Open(OpenError::InvalidName(e)),
        How::Create | How::CreateOrOpen => ObjectError::Create(CreateError::InvalidName(e)),
    })
}

const HINT_PERSIST: &str = ": Windows removes a named kernel object with its last handle; \
keep a holder while it is in use";

/// Refuses `UntilRemoved` where this call may create.
fn check_persistence(
    name: &Name,
    how: How,
    opts: &ObjectOptions,
    what: &'static str,
) -> Result<(), ObjectError> {
    if how != How::Open && opts.persistence == Persistence::UntilRemoved {
        return Err(ObjectError::Create(CreateError::Unsupported {
            name: name.to_string(),
            what,
            hint: HINT_PERSIST,
        }));
    }
    Ok(())
}

/// The DACL of a named object: owner-only, plus Everyone wait+signal (write bits) or
/// wait (read bits).
fn security(name: &Name, mode: u32) -> Result<Security, ObjectError> {
    Security::for_mode_with(mode, "GRGWGX", "GRGX").map_err(|source| {
        ObjectError::Create(CreateError::Os {
            name: name.to_string(),
            op: "building the security descriptor",
            source,
        })
    })
}

/// The result of a `Create*W` call: a handle and whether the object existed.
fn created(raw: HANDLE, code: u32) -> Option<(OwnedHandle, bool)> {
    if raw.is_null() {
        return None;
    }
    // SAFETY: a non-null return is a fresh handle that nothing else owns.
    let h = unsafe { OwnedHandle::from_raw_handle(raw) };
    Some((h, code == ERROR_ALREADY_EXISTS))
}

/// Maps a failed `Create*W` (`code`) to an error.
fn create_failed(name: &Name, kind: &'static str, how: How, code: u32) -> ObjectError {
    let n = name.to_string();
    match code {
        ERROR_INVALID_HANDLE if how == How::Create => {
            ObjectError::Create(CreateError::AlreadyExists { name: n })
        }
        ERROR_INVALID_HANDLE => ObjectError::Invalid {
            kind,
            source: crate::LayoutError::Kind {
                found: kind_of(name),
                expected: kind,
            },
        },
        ERROR_ACCESS_DENIED => ObjectError::Create(CreateError::PermissionDenied {
            name: n,
            source: os_error(code),
        }),
        _ => ObjectError::Create(CreateError::Os {
            name: n,
            op: "creating the named kernel object",
            source: os_error(code),
        }),
    }
}

/// Maps a failed `Open*W` (`code`) to an error.
fn open_failed(name: &Name, kind: &'static str, code: u32) -> ObjectError {
    let n = name.to_string();
    match code {
        ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND => {
            ObjectError::Open(OpenError::NotFound { name: n })
        }
        ERROR_INVALID_HANDLE => ObjectError::Invalid {
            kind,
            source: crate::LayoutError::Kind {
                found: kind_of(name),
                expected: kind,
            },
        },
        ERROR_ACCESS_DENIED => ObjectError::Open(OpenError::PermissionDenied {
            name: n,
            source: os_error(code),
        }),
        _ => ObjectError::Open(OpenError::Os {
            name: n,
            op: "opening the named kernel object",
            source: os_error(code),
        }),
    }
}

/// Creates (`Create*W` through `create`) and/or opens (`Open*W` through `open`).
/// Returns the handle and what happened.
fn get_handle(
    name: &Name,
    kind: &'static str,
    how: How,
    create: impl FnOnce() -> HANDLE,
    open: impl FnOnce() -> HANDLE,
) -> Result<(OwnedHandle, Disposition), ObjectError> {
    if how == How::Open {
        let raw = open();
        if raw.is_null() {
            return Err(open_failed(name, kind, last_error_code()));
        }
        // SAFETY: a non-null return is a fresh handle that nothing else owns.
        return Ok((
            unsafe { OwnedHandle::from_raw_handle(raw) },
            Disposition::Opened,
        ));
    }
    // SAFETY: clears the last error so that success without ERROR_ALREADY_EXISTS
    // reads as "created".
    unsafe { SetLastError(0) };
    let raw = create();
    let code = last_error_code();
    match created(raw, code) {
        None => Err(create_failed(name, kind, how, code)),
        Some((_, true)) if how == How::Create => {
            Err(ObjectError::Create(CreateError::AlreadyExists {
                name: name.to_string(),
            }))
        }
        Some((h, existed)) => Ok((
            h,
            if existed {
                Disposition::Opened
            } else {
                Disposition::Created
            },
        )),
    }
}

/// Why a native wait did not acquire.
#[derive(Debug)]
pub(crate) enum NativeWaitError {
    /// The timeout passed.
    TimedOut,
    /// This thread holds the mutex already (shmipc mutexes are not recursive).
    WouldDeadlock,
    /// The wait failed.
    Os(io::Error),
}

/// The milliseconds to pass to a wait for what is left of `deadline`: rounded up,
/// below `INFINITE`. `None`: no deadline (`INFINITE`).
fn wait_ms(deadline: Option<Instant>) -> u32 {
    let Some(d) = deadline else { return INFINITE };
    let left = d.saturating_duration_since(Instant::now());
    let ms = left.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).map_or(INFINITE - 1, |m| m.min(INFINITE - 1))
}

/// `WaitForSingleObject` until `deadline` (`None`: for ever), in rounds of at most
/// `INFINITE - 1` ms. Returns the wait result other than `WAIT_TIMEOUT`.
fn wait_handle(h: &OwnedHandle, deadline: Option<Instant>) -> Result<u32, NativeWaitError> {
    loop {
        let ms = wait_ms(deadline);
        // SAFETY: `h` is a live waitable handle borrowed for the call.
        let r = unsafe { WaitForSingleObject(h.as_raw_handle(), ms) };
        match r {
            WAIT_TIMEOUT => {
                if deadline.is_none_or(|d| Instant::now() >= d) && ms != INFINITE {
                    return Err(NativeWaitError::TimedOut);
                }
            }
            WAIT_OBJECT_0 | WAIT_ABANDONED => return Ok(r),
            _ => return Err(NativeWaitError::Os(io::Error::last_os_error())),
        }
    }
}

fn deadline_of(timeout: Option<Duration>) -> Option<Instant> {
    // A timeout too long to represent waits for ever, as std does.
    timeout.and_then(|t| Instant::now().checked_add(t))
}

// ---------------------------------------------------------------------------------
// mutex

const INCONSISTENT: u32 = 1;
const FLAG_SIZE: usize = 4096;

/// The mutex's companion section: one shared word, [`INCONSISTENT`] or 0.
struct Flag {
    // Declared first: unmapped before the section handle closes.
    map: sys::Mapping,
    _section: OwnedHandle,
}

impl Flag {
    fn open_or_create(name: &Name, mode: u32) -> Result<(Self, bool), ObjectError> {
        let os = |op: &'static str| {
            move |source: io::Error| {
                ObjectError::Open(OpenError::Os {
                    name: name.to_string(),
                    op,
                    source,
                })
            }
        };
        let security = Security::for_mode(mode).map_err(os("building the security descriptor"))?;
        let sa = security.attributes();
        let (section, existed) = sys::create_section(
            INVALID_HANDLE_VALUE,
            Some(&sa),
            FLAG_SIZE as u64,
            Some(&flag_name(name)),
        )
        .map_err(os("CreateFileMappingW (the mutex's consistency flag)"))?;
        let map = sys::map_raw(
            section.as_raw_handle(),
            FILE_MAP_READ | FILE_MAP_WRITE,
            0,
            FLAG_SIZE,
        )
        .map_err(os("MapViewOfFile (the mutex's consistency flag)"))?;
        Ok((
            Self {
                map,
                _section: section,
            },
            existed,
        ))
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the mapping is FLAG_SIZE bytes, page-aligned, shared and writable,
        // and lives as long as `self`; an AtomicU32 is valid for any bytes and only
        // accessed atomically.
        unsafe { &*self.map.ptr().as_ptr().cast::<AtomicU32>() }
    }
}

/// A named Win32 mutex with its consistency flag.
pub(crate) struct NativeMutex {
    // Declared first: the flag section closes before the mutex, so that a creator
    // that finds the mutex new also finds no old flag (see `get`).
    flag: Flag,
    handle: OwnedHandle,
}

impl NativeMutex {
    pub(crate) fn get(
        name: &str,
        how: How,
        opts: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        const KIND: &str = "mutex";
        let name = validate(name, how)?;
        check_persistence(
            &name,
            how,
            opts,
            "a named mutex that outlives its last handle",
        )?;
        let w = object_name(&name);
        let security = if how == How::Open {
            None
        } else {
            Some(security(&name, opts.mode)?)
        };
        let sa = security.as_ref().map(Security::attributes);
        let (handle, disp) = get_handle(
            &name,
            KIND,
            how,
            // SAFETY: `sa` and `w` outlive the call; `w` is NUL-terminated. Created
            // owned by this thread, so nobody locks it before its flag is reset.
            || unsafe {
                CreateMutexW(
                    sa.as_ref().map_or(ptr::null(), ptr::from_ref),
                    1,
                    w.as_ptr(),
                )
            },
            // SAFETY: as above.
            || unsafe { OpenMutexW(SYNCHRONIZE | MUTEX_MODIFY_STATE, 0, w.as_ptr()) },
        )?;
        let flag = Flag::open_or_create(&name, opts.mode);
        if disp == Disposition::Created {
            // SAFETY: this thread owns the new mutex (created with initial owner).
            let release = || unsafe { ReleaseMutex(handle.as_raw_handle()) };
            match flag {
                Ok((flag, _)) => {
                    // A flag left by a previous mutex of this name (its last holder
                    // was still closing): this mutex starts consistent.
                    flag.word().store(0, Ordering::Relaxed);
                    release();
                    return Ok((Self { flag, handle }, disp));
                }
                Err(e) => {
                    release();
                    return Err(e);
                }
            }
        }
        Ok((
            Self {
                flag: flag?.0,
                handle,
            },
            disp,
        ))
    }

    /// Whether this thread owns it already (asked only if it holds some native guard).
    fn owned_by_me(&self) -> bool {
        if NATIVE_HELD.with(Cell::get) == 0 {
            return false;
        }
        // SAFETY: NtQueryMutant on a mutex handle fills a MUTANT_BASIC_INFORMATION.
        let info: Option<MutantBasicInformation> = unsafe { nt_query(NtQueryMutant, &self.handle) };
        info.is_some_and(|i| i.owned_by_caller != 0)
    }

    /// Locks, waiting up to `timeout` (`None`: for ever; zero: one look).
    pub(crate) fn lock(&self, timeout: Option<Duration>) -> Result<Acquired, NativeWaitError> {
        if self.owned_by_me() {
            return Err(NativeWaitError::WouldDeadlock);
        }
        let r = wait_handle(&self.handle, deadline_of(timeout))?;
        NATIVE_HELD.with(|n| n.set(n.get() + 1));
        // Relaxed: only holders write the flag, and the wait ordered us after the
        // previous holder's release.
        let flag = self.flag.word();
        Ok(if r == WAIT_ABANDONED {
            flag.store(INCONSISTENT, Ordering::Relaxed);
            Acquired::Recovered
        } else if flag.load(Ordering::Relaxed) != 0 {
            Acquired::Inconsistent
        } else {
            Acquired::Clean
        })
    }

    /// Releases it (on the thread that locked it: the guard is not `Send`).
    pub(crate) fn unlock(&self) {
        NATIVE_HELD.with(|n| n.set(n.get().saturating_sub(1)));
        // SAFETY: `handle` is live and this thread owns the mutex (the guard's
        // thread). A failure (not owner) cannot happen through the guard.
        unsafe { ReleaseMutex(self.handle.as_raw_handle()) };
    }

    pub(crate) fn mark_consistent(&self) {
        self.flag.word().store(0, Ordering::Relaxed);
    }

    pub(crate) fn mark_inconsistent(&self) {
        self.flag.word().store(INCONSISTENT, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------
// semaphore

/// A named Win32 semaphore.
pub(crate) struct NativeSemaphore {
    handle: OwnedHandle,
    max: u32,
}

impl NativeSemaphore {
    /// Creates and/or opens; `params` (initial, max) are checked by the caller
    /// (`1 <= max`, `initial <= max`).
    pub(crate) fn get(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(u32, u32)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        const KIND: &str = "semaphore";
        let name = validate(name, how)?;
        check_persistence(
            &name,
            how,
            opts,
            "a named semaphore that outlives its last handle",
        )?;
        let (initial, max) = params.unwrap_or((0, 1));
        let (Ok(initial), Ok(max)) = (i32::try_from(initial), i32::try_from(max)) else {
            return Err(ObjectError::InvalidParameter {
                kind: KIND,
                what: "maximum",
                reason: "a Windows semaphore counts to at most 2147483647: lower the maximum",
            });
        };
        let w = object_name(&name);
        let security = if how == How::Open {
            None
        } else {
            Some(security(&name, opts.mode)?)
        };
        let sa = security.as_ref().map(Security::attributes);
        let (handle, disp) = get_handle(
            &name,
            KIND,
            how,
            // SAFETY: `sa` and `w` outlive the call; `w` is NUL-terminated.
            || unsafe {
                CreateSemaphoreW(
                    sa.as_ref().map_or(ptr::null(), ptr::from_ref),
                    initial,
                    max,
                    w.as_ptr(),
                )
            },
            // SAFETY: as above.
            || unsafe {
                OpenSemaphoreW(
                    SYNCHRONIZE | SEMAPHORE_MODIFY_STATE | QUERY_STATE,
                    0,
                    w.as_ptr(),
                )
            },
        )?;
        let found = Self::query(&handle)
            .and_then(|i| u32::try_from(i.maximum_count).ok())
            .ok_or_else(|| {
                ObjectError::Open(OpenError::Os {
                    name: name.to_string(),
                    op: "NtQuerySemaphore",
                    source: io::Error::other("cannot read the semaphore's maximum"),
                })
            })?;
        if let Some((_, want)) = params.filter(|(_, m)| *m != found) {
            return Err(ObjectError::Invalid {
                kind: KIND,
                source: crate::LayoutError::Mismatch {
                    kind: KIND,
                    what: "maximum",
                    found: found.into(),
                    expected: want.into(),
                },
            });
        }
        Ok((Self { handle, max: found }, disp))
    }

    fn query(h: &OwnedHandle) -> Option<SemaphoreBasicInformation> {
        // SAFETY: NtQuerySemaphore on a semaphore handle fills that struct.
        unsafe { nt_query(NtQuerySemaphore, h) }
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// The count now (0 if the OS does not say).
    pub(crate) fn value(&self) -> u32 {
        Self::query(&self.handle)
            .and_then(|i| u32::try_from(i.current_count).ok())
            .unwrap_or(0)
    }

    /// Adds a unit; `Err(())` at the maximum.
    pub(crate) fn post(&self) -> Result<(), ()> {
        // SAFETY: `handle` is a live semaphore handle; the previous count is not asked.
        let ok = unsafe { ReleaseSemaphore(self.handle.as_raw_handle(), 1, ptr::null_mut()) };
        // The only failure a handle opened with SEMAPHORE_MODIFY_STATE can see is a
        // post beyond the maximum (ERROR_TOO_MANY_POSTS); anything else is reported
        // as that too rather than as a unit added.
        if ok == 0 {
            debug_assert_eq!(last_error_code(), ERROR_TOO_MANY_POSTS);
            return Err(());
        }
        Ok(())
    }

    /// Takes a unit, waiting up to `timeout` (`None`: for ever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<(), NativeWaitError> {
        wait_handle(&self.handle, deadline_of(timeout)).map(drop)
    }
}

// ---------------------------------------------------------------------------------
// event

/// A named Win32 event.
pub(crate) struct NativeEvent {
    handle: OwnedHandle,
    reset: EventReset,
}

impl NativeEvent {
    pub(crate) fn get(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(EventReset, bool)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        const KIND: &str = "event";
        let name = validate(name, how)?;
        check_persistence(
            &name,
            how,
            opts,
            "a named event that outlives its last handle",
        )?;
        let (reset, set) = params.unwrap_or((EventReset::Manual, false));
        let w = object_name(&name);
        let security = if how == How::Open {
            None
        } else {
            Some(security(&name, opts.mode)?)
        };
        let sa = security.as_ref().map(Security::attributes);
        let (handle, disp) = get_handle(
            &name,
            KIND,
            how,
            // SAFETY: `sa` and `w` outlive the call; `w` is NUL-terminated.
            || unsafe {
                CreateEventW(
                    sa.as_ref().map_or(ptr::null(), ptr::from_ref),
                    i32::from(reset == EventReset::Manual),
                    i32::from(set),
                    w.as_ptr(),
                )
            },
            // SAFETY: as above.
            || unsafe {
                OpenEventW(
                    SYNCHRONIZE | EVENT_MODIFY_STATE | QUERY_STATE,
                    0,
                    w.as_ptr(),
                )
            },
        )?;
        let found = match Self::query(&handle).map(|i| i.event_type) {
            Some(0) => EventReset::Manual,
            Some(1) => EventReset::Auto,
            _ => {
                return Err(ObjectError::Open(OpenError::Os {
                    name: name.to_string(),
                    op: "NtQueryEvent",
                    source: io::Error::other("cannot read the event's reset mode"),
                }))
            }
        };
        if let Some((want, _)) = params.filter(|(r, _)| *r != found) {
            let code = |r: EventReset| u64::from(r == EventReset::Auto);
            return Err(ObjectError::Invalid {
                kind: KIND,
                source: crate::LayoutError::Mismatch {
                    kind: KIND,
                    what: "reset mode (0 manual, 1 auto)",
                    found: code(found),
                    expected: code(want),
                },
            });
        }
        Ok((
            Self {
                handle,
                reset: found,
            },
            disp,
        ))
    }

    fn query(h: &OwnedHandle) -> Option<EventBasicInformation> {
        // SAFETY: NtQueryEvent on an event handle fills that struct.
        unsafe { nt_query(NtQueryEvent, h) }
    }

    pub(crate) fn reset_mode(&self) -> EventReset {
        self.reset
    }

    pub(crate) fn is_set(&self) -> bool {
        Self::query(&self.handle).is_some_and(|i| i.event_state != 0)
    }

    pub(crate) fn set(&self) {
        // SAFETY: `handle` is a live event handle with EVENT_MODIFY_STATE.
        unsafe { SetEvent(self.handle.as_raw_handle()) };
    }

    pub(crate) fn reset(&self) {
        // SAFETY: as for `set`.
        unsafe { ResetEvent(self.handle.as_raw_handle()) };
    }

    /// Waits until set (auto: and takes it), up to `timeout` (`None`: for ever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<(), NativeWaitError> {
        wait_handle(&self.handle, deadline_of(timeout)).map(drop)
    }
}

// ---------------------------------------------------------------------------------
// inspect (read-only: opens with query rights, takes nothing, creates nothing)

fn open_for_query(open: impl FnOnce() -> HANDLE) -> Option<OwnedHandle> {
    let raw = open();
    // SAFETY: a non-null return is a fresh handle that nothing else owns.
    (!raw.is_null()).then(|| unsafe { OwnedHandle::from_raw_handle(raw) })
}

/// The kind and state of the named kernel object `name`, if it is a mutex, a
/// semaphore or an event. A mutex's holder is not named by Windows: `owner_thread`
/// is `None`, and a held mutex's owner is alive (a dead one's mutex is abandoned,
/// which reads as unlocked and inconsistent).
pub(crate) fn inspect_named(name: &str) -> Option<(Kind, ObjectState)> {
    let name = Name::new(name).ok()?;
    let w = object_name(&name);
    if let Some(h) = open_for_query(|| {
        // SAFETY: `w` is NUL-terminated UTF-16 that outlives the call.
        unsafe { OpenSemaphoreW(SYNCHRONIZE | QUERY_STATE, 0, w.as_ptr()) }
    }) {
        let i = NativeSemaphore::query(&h)?;
        let state = ObjectState::Semaphore {
            value: u32::try_from(i.current_count).ok()?,
            max: u32::try_from(i.maximum_count).ok()?,
        };
        return Some((Kind::Semaphore, state));
    }
    if let Some(h) = open_for_query(|| {
        // SAFETY: `w` is NUL-terminated UTF-16 that outlives the call.
        unsafe { OpenEventW(SYNCHRONIZE | QUERY_STATE, 0, w.as_ptr()) }
    }) {
        let i = NativeEvent::query(&h)?;
        let reset = match i.event_type {
            0 => EventReset::Manual,
            1 => EventReset::Auto,
            _ => return None,
        };
        let state = ObjectState::Event {
            set: i.event_state != 0,
            reset,
        };
        return Some((Kind::Event, state));
    }
    let h = open_for_query(|| {
        // SAFETY: `w` is NUL-terminated UTF-16 that outlives the call.
        unsafe { OpenMutexW(SYNCHRONIZE | QUERY_STATE, 0, w.as_ptr()) }
    })?;
    // SAFETY: NtQueryMutant on a mutex handle fills a MUTANT_BASIC_INFORMATION.
    let i: MutantBasicInformation = unsafe { nt_query(NtQueryMutant, &h) }?;
    let locked = i.current_count <= 0;
    let flag_set = sys::open_section(FILE_MAP_READ, &flag_name(&name))
        .ok()
        .flatten()
        .and_then(|s| sys::map_raw(s.as_raw_handle(), FILE_MAP_READ, 0, FLAG_SIZE).ok())
        .is_some_and(|m| {
            // SAFETY: a FLAG_SIZE read-only mapping, page-aligned, alive for the
            // closure; the word is read atomically.
            let word = unsafe { &*m.ptr().as_ptr().cast::<AtomicU32>() };
            word.load(Ordering::Relaxed) != 0
        });
    let state = ObjectState::Mutex {
        locked,
        owner_thread: None,
        owner_alive: locked.then_some(true),
        consistent: i.abandoned_state == 0 && !flag_set,
    };
    Some((Kind::Mutex, state))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn named_objects_are_owner_only_unless_the_mode_says_otherwise() {
        let sid = sys::user_sid().unwrap();
        let name = format!("u-sync-dacl-{}", std::process::id());
        let (m, _) = NativeMutex::get(&name, How::Create, &ObjectOptions::new()).unwrap();
        let dacl = sys::tests::dacl_of(&m.handle);
        assert!(dacl.starts_with("D:P"), "{dacl}");
        assert_eq!(dacl.matches("(A;").count(), 1, "{dacl}");
        assert!(dacl.contains(&sid) && !dacl.contains(";WD)"), "{dacl}");
        // The consistency flag is protected the same way.
        assert_eq!(sys::tests::dacl_of(&m.flag._section), dacl);

        let shared = ObjectOptions::new().mode(0o666);
        let name = format!("u-sync-dacl-ev-{}", std::process::id());
        let (e, _) =
            NativeEvent::get(&name, How::Create, &shared, Some((EventReset::Auto, false))).unwrap();
        let dacl = sys::tests::dacl_of(&e.handle);
        assert_eq!(dacl.matches("(A;").count(), 2, "{dacl}");
        assert!(dacl.contains(";WD)"), "{dacl}");
    }

    #[test]
    fn wait_ms_rounds_up_and_never_means_infinite() {
        assert_eq!(wait_ms(None), INFINITE);
        let soon = Instant::now() + Duration::from_micros(10);
        assert!(wait_ms(Some(soon)) <= 1);
        let far = Instant::now() + Duration::from_secs(100 * 24 * 3600);
        assert_eq!(wait_ms(Some(far)), INFINITE - 1);
        let half = Instant::now() + Duration::from_micros(1500);
        assert!(matches!(wait_ms(Some(half)), 1 | 2));
    }
}
