//! Windows: the named objects as Win32 named kernel objects (`sys::kobj`).
//!
//! # In-segment objects ([`Mutex::init_at`](super::Mutex::init_at) and the others)
//!
//! Kernel objects cannot live in shared memory, so the in-segment objects run the
//! same lock-word state machines as on Linux (`raw.rs`), with owners named by
//! `sys::liveness` (thread id + creation time). `WaitOnAddress` does not cross
//! processes, so a sleeper sleeps on a named kernel semaphore per waited word (a
//! doorbell, `sys::wait`), found by every process from the segment's name and the
//! word's offset; the lock word stays the source of truth. The uncontended paths
//! (one CAS to lock, one swap to unlock) are the same as on Linux, and an unlock
//! makes the wake call only when a waiter may sleep. Words in unnamed segments have
//! no doorbell and fall back to a 200 µs sleep-poll.
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
//! Lifetime is native: an object goes with its last handle, even when its holders
//! are killed; asking for [`Persistence::UntilRemoved`] is a `Create` error saying
//! so, as for segments. Permissions: owner-only DACL by default, as segments, with
//! Everyone allowed to wait and signal for group/other write bits (read bits: wait).

use std::cell::Cell;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::{CreateError, OpenError};
use crate::layout::Kind;
use crate::name::{Name, RESERVED_PREFIX};
use crate::segment::{Disposition, Persistence};
use crate::sys::kobj::{Fail, Kobj, New, SharedWord, Signalled, WaitFail, Which};
use crate::vocab::ObjectState;

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
// naming, errors, waiting

fn flag_name(name: &Name) -> String {
    format!("{RESERVED_PREFIX}sync-{}", name.as_str())
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

/// Maps a failed create or open of a `kind` named `name` to the public error.
fn failed(name: &Name, kind: &'static str, how: How, fail: Fail) -> ObjectError {
    let n = name.to_string();
    let creating = how != How::Open;
    match fail {
        Fail::NotFound => ObjectError::Open(OpenError::NotFound { name: n }),
        Fail::Exists => ObjectError::Create(CreateError::AlreadyExists { name: n }),
        Fail::OtherKind(found) => ObjectError::named(
            kind,
            &n,
            crate::LayoutError::Kind {
                found: found
                    .unwrap_or("kernel object of another type (a segment's section?)")
                    .to_owned(),
                expected: kind,
            },
        ),
        Fail::Denied(source) if creating => {
            ObjectError::Create(CreateError::PermissionDenied { name: n, source })
        }
        Fail::Denied(source) => ObjectError::Open(OpenError::PermissionDenied { name: n, source }),
        Fail::Security(source) => ObjectError::Create(CreateError::Os {
            name: n,
            op: "building the security descriptor",
            source,
        }),
        Fail::Os(source) if creating => ObjectError::Create(CreateError::Os {
            name: n,
            op: "creating the named kernel object",
            source,
        }),
        Fail::Os(source) => ObjectError::Open(OpenError::Os {
            name: n,
            op: "opening the named kernel object",
            source,
        }),
    }
}

/// Creates and/or opens the object, as `how` says.
fn get(
    name: &Name,
    kind: &'static str,
    how: How,
    opts: &ObjectOptions,
    new: New,
    which: Which,
) -> Result<(Kobj, Disposition), ObjectError> {
    if how != How::Open {
        // As a segment's mode is (`SegmentOptions::mode`).
        crate::segment::check_mode(name.as_str(), opts.mode).map_err(ObjectError::Create)?;
    }
    let got = if how == How::Open {
        Kobj::open(name.as_str(), which).map(|h| (h, Disposition::Opened))
    } else {
        Kobj::create(
            Some(name.as_str()),
            new,
            Some(opts.mode),
            how == How::Create,
        )
        .map(|(h, existed)| {
            let disp = if existed {
                Disposition::Opened
            } else {
                Disposition::Created
            };
            (h, disp)
        })
    };
    got.map_err(|f| failed(name, kind, how, f))
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

/// Waits for `h` up to `timeout` (`None`: for ever).
fn wait(h: &Kobj, timeout: Option<Duration>) -> Result<Signalled, NativeWaitError> {
    let deadline = timeout.map_or(Deadline::Never, Deadline::after);
    h.wait(deadline).map_err(|e| match e {
        WaitFail::TimedOut => NativeWaitError::TimedOut,
        WaitFail::Os(e) => NativeWaitError::Os(e),
    })
}

// ---------------------------------------------------------------------------------
// mutex

const INCONSISTENT: u32 = 1;

/// A named Win32 mutex with its consistency flag.
pub(crate) struct NativeMutex {
    // Declared first: the flag section closes before the mutex, so that a creator
    // that finds the mutex new also finds no old flag (see `get`).
    flag: SharedWord,
    handle: Kobj,
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
        // Created owned by this thread, so nobody locks it before its flag is reset.
        let (handle, disp) = get(
            &name,
            KIND,
            how,
            opts,
            New::Mutex { owned: true },
            Which::Mutex,
        )?;
        let flag = SharedWord::open_or_create(&flag_name(&name), opts.mode).map_err(|source| {
            ObjectError::Open(OpenError::Os {
                name: name.to_string(),
                op: "CreateFileMappingW (the mutex's consistency flag)",
                source,
            })
        });
        if disp == Disposition::Created {
            // This thread owns the new mutex (created with initial owner).
            let r = flag.map(|(flag, _)| {
                // A flag left by a previous mutex of this name (its last holder was
                // still closing): this mutex starts consistent.
                flag.word().store(0, Ordering::Relaxed);
                flag
            });
            handle.release_mutex();
            return Ok((Self { flag: r?, handle }, disp));
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
        self.handle.mutant().is_some_and(|i| i.owned_by_caller != 0)
    }

    /// Locks, waiting up to `timeout` (`None`: for ever; zero: one look).
    pub(crate) fn lock(&self, timeout: Option<Duration>) -> Result<Acquired, NativeWaitError> {
        if self.owned_by_me() {
            return Err(NativeWaitError::WouldDeadlock);
        }
        let r = wait(&self.handle, timeout)?;
        NATIVE_HELD.with(|n| n.set(n.get() + 1));
        // Relaxed: only holders write the flag, and the wait ordered us after the
        // previous holder's release.
        let flag = self.flag.word();
        Ok(if r == Signalled::Abandoned {
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
        self.handle.release_mutex();
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
    handle: Kobj,
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
        let (handle, disp) = get(
            &name,
            KIND,
            how,
            opts,
            New::Semaphore { initial, max },
            Which::Semaphore,
        )?;
        let found = handle
            .semaphore()
            .and_then(|i| u32::try_from(i.maximum_count).ok())
            .ok_or_else(|| {
                ObjectError::Open(OpenError::Os {
                    name: name.to_string(),
                    op: "NtQuerySemaphore",
                    source: io::Error::other("cannot read the semaphore's maximum"),
                })
            })?;
        if let Some((_, want)) = params.filter(|(_, m)| *m != found) {
            return Err(ObjectError::named(
                KIND,
                name.as_ref(),
                crate::LayoutError::Mismatch {
                    kind: KIND,
                    what: "maximum",
                    found: found.into(),
                    expected: want.into(),
                },
            ));
        }
        Ok((Self { handle, max: found }, disp))
    }

    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// The count now (0 if the OS does not say).
    pub(crate) fn value(&self) -> u32 {
        self.handle
            .semaphore()
            .and_then(|i| u32::try_from(i.current_count).ok())
            .unwrap_or(0)
    }

    /// Adds a unit; `Err(())` at the maximum.
    pub(crate) fn post(&self) -> Result<(), ()> {
        if self.handle.release_semaphore() {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Takes a unit, waiting up to `timeout` (`None`: for ever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<(), NativeWaitError> {
        wait(&self.handle, timeout).map(drop)
    }
}

// ---------------------------------------------------------------------------------
// event

/// A named Win32 event.
pub(crate) struct NativeEvent {
    handle: Kobj,
    reset: EventReset,
}

fn reset_of(event_type: i32) -> Option<EventReset> {
    match event_type {
        0 => Some(EventReset::Manual),
        1 => Some(EventReset::Auto),
        _ => None,
    }
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
        let new = New::Event {
            manual: reset == EventReset::Manual,
            set,
        };
        let (handle, disp) = get(&name, KIND, how, opts, new, Which::Event)?;
        let Some(found) = handle.event().and_then(|i| reset_of(i.event_type)) else {
            return Err(ObjectError::Open(OpenError::Os {
                name: name.to_string(),
                op: "NtQueryEvent",
                source: io::Error::other("cannot read the event's reset mode"),
            }));
        };
        if let Some((want, _)) = params.filter(|(r, _)| *r != found) {
            let code = |r: EventReset| u64::from(r == EventReset::Auto);
            return Err(ObjectError::named(
                KIND,
                name.as_ref(),
                crate::LayoutError::Mismatch {
                    kind: KIND,
                    what: "reset mode (0 manual, 1 auto)",
                    found: code(found),
                    expected: code(want),
                },
            ));
        }
        Ok((
            Self {
                handle,
                reset: found,
            },
            disp,
        ))
    }

    pub(crate) fn reset_mode(&self) -> EventReset {
        self.reset
    }

    pub(crate) fn is_set(&self) -> bool {
        self.handle.event().is_some_and(|i| i.event_state != 0)
    }

    pub(crate) fn set(&self) {
        self.handle.set_event();
    }

    pub(crate) fn reset(&self) {
        self.handle.reset_event();
    }

    /// Waits until set (auto: and takes it), up to `timeout` (`None`: for ever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<(), NativeWaitError> {
        wait(&self.handle, timeout).map(drop)
    }
}

// ---------------------------------------------------------------------------------
// inspect (read-only: opens with query rights, takes nothing, creates nothing)

/// The kind and state of the named kernel object `name`, if it is a mutex, a
/// semaphore or an event. A mutex's holder is not named by Windows: `owner_thread`
/// is `None`, and a held mutex's owner is alive (a dead one's mutex is abandoned,
/// which reads as unlocked and inconsistent).
pub(crate) fn inspect_named(name: &str) -> Option<(Kind, ObjectState)> {
    let name = Name::new(name).ok()?;
    if let Some(h) = Kobj::open_query(name.as_str(), Which::Semaphore) {
        let i = h.semaphore()?;
        let state = ObjectState::Semaphore {
            value: u32::try_from(i.current_count).ok()?,
            max: u32::try_from(i.maximum_count).ok()?,
        };
        return Some((Kind::Semaphore, state));
    }
    if let Some(h) = Kobj::open_query(name.as_str(), Which::Event) {
        let i = h.event()?;
        let state = ObjectState::Event {
            set: i.event_state != 0,
            reset: reset_of(i.event_type)?,
        };
        return Some((Kind::Event, state));
    }
    let h = Kobj::open_query(name.as_str(), Which::Mutex)?;
    let i = h.mutant()?;
    let locked = i.current_count <= 0;
    let flag_set = SharedWord::open_read(&flag_name(&name))
        .is_some_and(|w| w.word().load(Ordering::Relaxed) != 0);
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
    use crate::sys;

    #[test]
    fn named_objects_are_owner_only_unless_the_mode_says_otherwise() {
        let sid = sys::user_sid().unwrap();
        let name = format!("u-sync-dacl-{}", std::process::id());
        let (m, _) = NativeMutex::get(&name, How::Create, &ObjectOptions::new()).unwrap();
        let dacl = sys::tests::dacl_of(m.handle.handle());
        assert!(dacl.starts_with("D:P"), "{dacl}");
        assert_eq!(dacl.matches("(A;").count(), 1, "{dacl}");
        assert!(dacl.contains(&sid) && !dacl.contains(";WD)"), "{dacl}");
        // The consistency flag is protected the same way.
        assert_eq!(sys::tests::dacl_of(m.flag.handle()), dacl);

        let shared = ObjectOptions::new().mode(0o666);
        let name = format!("u-sync-dacl-ev-{}", std::process::id());
        let (e, _) =
            NativeEvent::get(&name, How::Create, &shared, Some((EventReset::Auto, false))).unwrap();
        let dacl = sys::tests::dacl_of(e.handle.handle());
        assert_eq!(dacl.matches("(A;").count(), 2, "{dacl}");
        assert!(dacl.contains(";WD)"), "{dacl}");
    }
}
