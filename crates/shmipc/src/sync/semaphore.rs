//! [`Semaphore`] (in a segment at an offset) and [`NamedSemaphore`].

use std::fmt;
use std::time::Duration;

use crate::deadline::Deadline;
use crate::sys::wait::reactor;
use crate::waitset::{self, Arm, Sleep, SyncWait, Undo};
use std::sync::atomic::Ordering;
use std::task::Poll;

use crate::layout::{self, Kind, LayoutError};
use crate::segment::Disposition;
use crate::view::View;

use super::error::{ObjectError, PostError, TryWaitError, WaitTimeoutError};
use super::imp::{self, NativeSemaphore};
use super::named::{self, How, ObjectOptions, PATIENCE};
use super::raw::SemaphoreWords;
use super::raw::MAX_SLICE;
use super::region::{self, Placed, OBJECT_ALIGN, OBJECT_SIZE};

const KIND: &str = "semaphore";

/// A counting inter-process semaphore with a maximum, placed in a segment at an
/// offset.
///
/// `post` adds a unit (an error beyond the maximum), `wait` takes one. A process
/// that dies after taking a unit does not give it back (as with POSIX semaphores).
/// A waiter that dies while waiting stays counted as a possible sleeper for good:
/// every later `post` then makes the wake system call even when nobody sleeps (a
/// system call per post, never a lost or extra unit) until the semaphore is made
/// anew. (Nothing tells a dead waiter's count from a live one's about to sleep, so
/// it is not corrected.)
///
/// ```
/// use shmipc::Segment;
/// use shmipc::sync::Semaphore;
/// let seg = Segment::options().size(4096).create_unnamed()?;
/// let view = seg.map_all()?;
/// let sem = Semaphore::init_at(&view, 0, 0, 10)?; // others: Semaphore::open_at
/// sem.post()?;
/// sem.wait();
/// assert!(sem.try_wait().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Semaphore<'a> {
    inner: Inner<'a>,
}

/// Words in shared memory (with the maximum), or a Windows kernel semaphore.
#[derive(Clone, Copy)]
enum Inner<'a> {
    Words(&'a SemaphoreWords, u32),
    Native(&'a NativeSemaphore),
}

impl fmt::Debug for Semaphore<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("max", &self.max())
            .finish()
    }
}

impl<'a> Semaphore<'a> {
    /// Bytes a semaphore occupies in a segment.
    pub const SIZE: usize = OBJECT_SIZE;
    /// Alignment its offset needs.
    pub const ALIGN: usize = OBJECT_ALIGN;

    /// Writes a new semaphore with `initial` units and at most `max` at `offset`.
    ///
    /// # Errors
    /// [`ObjectError::InvalidParameter`] unless `1 <= max` and `initial <= max`; as
    /// [`Mutex::init_at`](super::Mutex::init_at).
    pub fn init_at(
        view: &'a View,
        offset: usize,
        initial: u32,
        max: u32,
    ) -> Result<Self, ObjectError> {
        check_params(initial, max)?;
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &SemaphoreWords = region::words(view, offset, KIND)?;
        words.init(initial);
        let inner = Inner::Words(words, max);
        layout::init(view, offset, Kind::Semaphore, [u64::from(max), 0, 0, 0])
            .map_err(|e| ObjectError::placed(KIND, view, offset, LayoutError::Access(e)))?;
        Ok(Self { inner })
    }

    /// Opens the semaphore another process initialised at `offset`.
    ///
    /// # Errors
    /// As [`Mutex::open_at`](super::Mutex::open_at).
    pub fn open_at(view: &'a View, offset: usize) -> Result<Self, ObjectError> {
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &SemaphoreWords = region::words(view, offset, KIND)?;
        let header = layout::expect(view, offset, Kind::Semaphore, PATIENCE)
            .map_err(|source| ObjectError::placed(KIND, view, offset, source))?;
        let max = u32::try_from(header.params[0])
            .ok()
            .filter(|m| *m >= 1)
            .ok_or_else(|| {
                ObjectError::placed(
                    KIND,
                    view,
                    offset,
                    LayoutError::Corrupt {
                        kind: KIND,
                        what: "maximum (not 1 to 2^32 - 1)",
                        found: header.params[0],
                    },
                )
            })?;
        Ok(Self {
            inner: Inner::Words(words, max),
        })
    }

    /// The maximum count.
    pub fn max(&self) -> u32 {
        match self.inner {
            Inner::Words(_, max) => max,
            Inner::Native(n) => n.max(),
        }
    }

    /// The current count (a snapshot, stale at once).
    pub fn value(&self) -> u32 {
        match self.inner {
            Inner::Words(w, _) => w.value(),
            Inner::Native(n) => n.value(),
        }
    }

    /// Adds a unit and wakes one waiter, if any (`sem_post`, `ReleaseSemaphore`).
    ///
    /// # Errors
    /// [`PostError::Full`] if the count is at the maximum.
    #[doc(alias = "sem_post")]
    #[doc(alias = "ReleaseSemaphore")]
    pub fn post(&self) -> Result<(), PostError> {
        let full = PostError::Full { max: self.max() };
        match self.inner {
            Inner::Words(w, max) => w.post(max).map_err(|_| full),
            Inner::Native(n) => n.post().map_err(|()| full),
        }
    }

    /// Takes a unit, waiting as long as it takes (`sem_wait`).
    #[doc(alias = "sem_wait")]
    pub fn wait(&self) {
        match self.inner {
            Inner::Words(w, _) => while w.wait(Deadline::Never, true).is_err() {},
            // A wait that fails (a handle closed under us cannot be: we hold it)
            // is retried.
            Inner::Native(n) => while n.wait(None).is_err() {},
        }
    }

    /// Takes a unit if one is there.
    ///
    /// # Errors
    /// [`TryWaitError::WouldBlock`] if the count is 0.
    pub fn try_wait(&self) -> Result<(), TryWaitError> {
        let took = match self.inner {
            Inner::Words(w, _) => w.try_wait(),
            Inner::Native(n) => n.wait(Some(Duration::ZERO)).is_ok(),
        };
        if took {
            Ok(())
        } else {
            Err(TryWaitError::WouldBlock)
        }
    }

    /// Takes a unit, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`] if none came in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        let timed_out = WaitTimeoutError::Timeout(timeout);
        match self.inner {
            Inner::Words(w, _) => {
                if w.try_wait() {
                    return Ok(());
                }
                w.wait(Deadline::after(timeout), true)
                    .map_err(|_| timed_out)
            }
            // A failed wait (cannot be: the handle is ours) reads as a timeout.
            Inner::Native(n) => n.wait(Some(timeout)).map_err(|_| timed_out),
        }
    }
}

/// Async waits (see `crate::waitset`).
impl<'a> Semaphore<'a> {
    /// Takes a unit, as a future: [`Semaphore::wait`] without blocking a thread.
    ///
    /// Cancel-safe: a unit is taken only when the future completes; a future dropped
    /// while asleep takes back its announcement and passes on a wake-up it may have
    /// been given.
    pub async fn wait_async(&self) {
        let this = *self;
        let mut state = SyncWait::default();
        std::future::poll_fn(|cx| loop {
            state.settle();
            if this.try_wait().is_ok() {
                return Poll::Ready(());
            }
            this.announce_words();
            match this.arm_words() {
                Arm::Ready => {}
                Arm::Sleep(s) => {
                    state.sleep(s, cx);
                    return Poll::Pending;
                }
            }
        })
        .await;
    }

    fn announce_words(&self) {
        if let Inner::Words(w, _) = self.inner {
            w.waiters.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn disarm_words(&self) {
        if let Inner::Words(w, _) = self.inner {
            waitset::undo(Undo::Waiters(&w.waiters));
        }
    }

    fn arm_words(&self) -> Arm<'a> {
        match self.inner {
            Inner::Words(w, _) => {
                // The RMW read of `SemaphoreWords`' doc.
                let seen = w.count.fetch_add(0, Ordering::AcqRel);
                let undo = Undo::Waiters(&w.waiters);
                if seen != 0 {
                    waitset::undo(undo);
                    return Arm::Ready;
                }
                Arm::Sleep(Sleep {
                    word: &w.count,
                    expected: 0,
                    recheck: MAX_SLICE,
                    undo,
                })
            }
            Inner::Native(n) => {
                if n.value() != 0 {
                    return Arm::Ready;
                }
                Arm::Sleep(Sleep {
                    word: &waitset::NEVER,
                    expected: 0,
                    recheck: reactor::POLL,
                    undo: Undo::Nothing,
                })
            }
        }
    }
}

/// The WaitSet protocol: ready while the count is not 0.
impl waitset::sealed::Sealed for Semaphore<'_> {
    fn announce(&mut self) -> (bool, u32) {
        self.announce_words();
        (false, 0)
    }
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.arm_words()
    }
    fn disarm(&mut self, _: u32) {
        self.disarm_words();
    }
}

impl waitset::sealed::Sealed for NamedSemaphore {
    fn announce(&mut self) -> (bool, u32) {
        self.as_semaphore().announce_words();
        (false, 0)
    }
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.as_semaphore().arm_words()
    }
    fn disarm(&mut self, _: u32) {
        self.as_semaphore().disarm_words();
    }
}

impl NamedSemaphore {
    /// As [`Semaphore::wait_async`].
    pub async fn wait_async(&self) {
        self.as_semaphore().wait_async().await;
    }
}

fn check_params(initial: u32, max: u32) -> Result<(), ObjectError> {
    if max == 0 {
        return Err(ObjectError::InvalidParameter {
            kind: KIND,
            what: "maximum 0",
            reason: "a semaphore needs a maximum of at least 1",
        });
    }
    if initial > max {
        return Err(ObjectError::InvalidParameter {
            kind: KIND,
            what: "initial count",
            reason: "it exceeds the maximum: lower it or raise the maximum",
        });
    }
    Ok(())
}

/// A named counting semaphore (Win32 `CreateSemaphore`), with the names,
/// permissions and lifetime of a [`Segment`](crate::Segment): on Windows the kernel
/// semaphore `Local\NAME` (its maximum at most `i32::MAX`), elsewhere a small
/// segment of its own.
///
/// ```
/// use shmipc::sync::NamedSemaphore;
/// # let name = format!("doc-named-sem-{}", std::process::id());
/// let (sem, _) = NamedSemaphore::create_or_open(&name, 0, 100)?;
/// sem.post()?;
/// sem.wait_timeout(std::time::Duration::from_secs(1))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NamedSemaphore {
    inner: Named,
    name: String,
}

enum Named {
    Segment(Placed<SemaphoreWords>, u32),
    Native(NativeSemaphore),
}

impl fmt::Debug for NamedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSemaphore")
            .field("name", &self.name)
            .field("sem", &self.as_semaphore())
            .finish()
    }
}

impl NamedSemaphore {
    /// Creates a named semaphore; fails if the name exists.
    ///
    /// # Errors
    /// As [`NamedMutex::create`](super::NamedMutex::create), and
    /// [`ObjectError::InvalidParameter`].
    #[doc(alias = "CreateSemaphore")]
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, initial: u32, max: u32) -> Result<Self, ObjectError> {
        Self::create_with(name, initial, max, &ObjectOptions::default())
    }

    /// Creates a named semaphore with these permissions and lifetime.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_with(
        name: &str,
        initial: u32,
        max: u32,
        opts: &ObjectOptions,
    ) -> Result<Self, ObjectError> {
        Self::get(name, How::Create, opts, Some((initial, max))).map(|(s, _)| s)
    }

    /// Opens an existing named semaphore.
    ///
    /// # Errors
    /// As [`NamedMutex::open`](super::NamedMutex::open).
    #[doc(alias = "OpenSemaphore")]
    pub fn open(name: &str) -> Result<Self, ObjectError> {
        Self::get(name, How::Open, &ObjectOptions::default(), None).map(|(s, _)| s)
    }

    /// Creates the named semaphore or opens it, and says which. An existing one must
    /// have the same maximum.
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`open`](Self::open); [`ObjectError::Invalid`]
    /// with [`LayoutError::Mismatch`] for another maximum.
    pub fn create_or_open(
        name: &str,
        initial: u32,
        max: u32,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::create_or_open_with(name, initial, max, &ObjectOptions::default())
    }

    /// As [`create_or_open`](Self::create_or_open), with options for creating.
    ///
    /// # Errors
    /// As [`create_or_open`](Self::create_or_open).
    pub fn create_or_open_with(
        name: &str,
        initial: u32,
        max: u32,
        opts: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::get(name, How::CreateOrOpen, opts, Some((initial, max)))
    }

    fn get(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(u32, u32)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::get_in(name, how, opts, params).map_err(|e| e.of_named(name))
    }

    fn get_in(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(u32, u32)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        if let Some((initial, max)) = params {
            check_params(initial, max)?;
        }
        if imp::NATIVE_NAMED {
            let (native, disp) = NativeSemaphore::get(name, how, opts, params)?;
            return Ok((
                Self {
                    inner: Named::Native(native),
                    name: name.to_owned(),
                },
                disp,
            ));
        }
        let (view, disp) = named::segment(name, how, opts, KIND, |view| match params {
            Some((initial, max)) => Semaphore::init_at(view, 0, initial, max).map(drop),
            None => Err(ObjectError::Unsupported { kind: KIND }),
        })?;
        let max = match (disp, params) {
            // Initialised (and checked) before it was named.
            (Disposition::Created, Some((_, max))) => max,
            (_, want) => {
                let found = Semaphore::open_at(&view, 0)?.max();
                if let Some((_, max)) = want.filter(|(_, m)| *m != found) {
                    return Err(ObjectError::named(
                        KIND,
                        name,
                        LayoutError::Mismatch {
                            kind: KIND,
                            what: "maximum",
                            found: found.into(),
                            expected: max.into(),
                        },
                    ));
                }
                found
            }
        };
        Ok((
            Self {
                inner: Named::Segment(Placed::new(view, 0, KIND)?, max),
                name: name.to_owned(),
            },
            disp,
        ))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the name still names this very semaphore: `Some(false)` once it was
    /// removed ([`Segment::remove`](crate::Segment::remove)), even where another
    /// object has taken the name since, which openers of the name then reach
    /// instead of this one. Windows answers `Some(true)`: a kernel object's name
    /// goes only with its last handle. See
    /// [`Segment::is_still_named`](crate::Segment::is_still_named).
    pub fn is_still_named(&self) -> Option<bool> {
        match &self.inner {
            Named::Segment(p, _) => p.view().is_still_named(),
            Named::Native(_) => Some(true),
        }
    }

    /// The semaphore itself.
    pub fn as_semaphore(&self) -> Semaphore<'_> {
        Semaphore {
            inner: match &self.inner {
                Named::Segment(p, max) => Inner::Words(p.get(), *max),
                Named::Native(n) => Inner::Native(n),
            },
        }
    }

    /// As [`Semaphore::max`].
    pub fn max(&self) -> u32 {
        self.as_semaphore().max()
    }

    /// As [`Semaphore::value`].
    pub fn value(&self) -> u32 {
        self.as_semaphore().value()
    }

    /// As [`Semaphore::post`].
    ///
    /// # Errors
    /// As [`Semaphore::post`].
    pub fn post(&self) -> Result<(), PostError> {
        self.as_semaphore().post()
    }

    /// As [`Semaphore::wait`].
    pub fn wait(&self) {
        self.as_semaphore().wait();
    }

    /// As [`Semaphore::try_wait`].
    ///
    /// # Errors
    /// As [`Semaphore::try_wait`].
    pub fn try_wait(&self) -> Result<(), TryWaitError> {
        self.as_semaphore().try_wait()
    }

    /// As [`Semaphore::wait_timeout`].
    ///
    /// # Errors
    /// As [`Semaphore::wait_timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        self.as_semaphore().wait_timeout(timeout)
    }
}
