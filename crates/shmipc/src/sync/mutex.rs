//! [`Mutex`] (in a segment at an offset), [`NamedMutex`] (a named object of its own)
//! and their [`MutexGuard`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::deadline::Deadline;

use crate::layout::{self, Kind, LayoutError};
use crate::segment::Disposition;
use crate::view::View;

use super::error::{LockError, LockTimeoutError, ObjectError, TryLockError};
use super::imp::{self, NativeMutex, NativeWaitError};
use super::named::{self, How, ObjectOptions, PATIENCE};
use super::raw::{Acquired, MutexWords, CONTENDED, FIRST_SLICE, MAX_SLICE};
use super::region::{self, Placed, OBJECT_ALIGN, OBJECT_SIZE};
use super::Liveness;
use crate::sys::liveness::ProcessStamp;
use crate::sys::wait::reactor;
use crate::waitset::{self, Arm, Sleep, SyncWait, Undo};
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

const KIND: &str = "mutex";

/// Asks whether a holder lives, on the object of `scope`.
fn probe<'s>(scope: &'s imp::Scope<'_>) -> impl Fn(u64) -> Liveness + 's {
    move |id| imp::liveness(*scope, id)
}

/// An inter-process mutex placed in a segment at an offset, for guarding your own
/// data there (or for channels). It protects no Rust value: hold its guard while you
/// read and write the shared bytes through the [`View`].
///
/// ```
/// use shmipc::Segment;
/// use shmipc::sync::{LockError, Mutex};
/// let seg = Segment::options().size(4096).create_unnamed()?;
/// let view = seg.map_all()?;
/// let m = Mutex::init_at(&view, 0)?;          // another process: Mutex::open_at
/// let counter = Mutex::SIZE;                  // our data, after the mutex
/// let guard = match m.lock() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(g)) => {
///         // A holder died inside: repair the data, then say so.
///         g.mark_consistent();
///         g
///     }
///     Err(e) => return Err(e.to_string().into()),
/// };
/// let n: u64 = view.read_pod(counter)?;
/// view.write_pod(counter, &(n + 1))?;
/// drop(guard);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A holder that dies (even by SIGKILL) does not block anyone: the next locker, or a
/// waiter already asleep (within 100 ms), takes the lock over and gets
/// [`LockError::OwnerDied`] with the guard. See the [module doc](super) for how the
/// owner is identified and what "consistent" means.
#[derive(Clone, Copy)]
pub struct Mutex<'a> {
    inner: Inner<'a>,
}

/// What a [`Mutex`] (and its guard) works on: lock words in shared memory, or (for
/// a named mutex on Windows) a kernel mutex.
#[derive(Clone, Copy)]
enum Inner<'a> {
    /// The words, and the object whose liveness bytes their owners hold.
    Words(&'a MutexWords, imp::Scope<'a>),
    Native(&'a NativeMutex),
}

impl fmt::Debug for Mutex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex").finish_non_exhaustive()
    }
}

impl<'a> Mutex<'a> {
    /// Bytes a mutex occupies in a segment (its header and its words).
    pub const SIZE: usize = OBJECT_SIZE;
    /// Alignment its offset needs.
    pub const ALIGN: usize = OBJECT_ALIGN;

    /// Writes a new, unlocked mutex at `offset` of `view` (its header last, so that
    /// an opener never sees half of it).
    ///
    /// Only one process initialises; the others [`open_at`](Self::open_at). Calling
    /// it on a mutex in use breaks it.
    ///
    /// # Errors
    /// [`ObjectError::NotWritable`], [`ObjectError::Misaligned`],
    /// [`ObjectError::Invalid`] (too small), [`ObjectError::Unsupported`].
    pub fn init_at(view: &'a View, offset: usize) -> Result<Self, ObjectError> {
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &MutexWords = region::words(view, offset, KIND)?;
        words.init();
        let inner = Inner::Words(words, view.liveness());
        let [domain, spare] = imp::namespaces();
        layout::init(view, offset, Kind::Mutex, [domain, spare, 0, 0])
            .map_err(|e| ObjectError::placed(KIND, view, offset, LayoutError::Access(e)))?;
        Ok(Self { inner })
    }

    /// Opens the mutex another process initialised at `offset` of `view`, after
    /// checking its header (waiting up to 2 s for a creator still writing it).
    ///
    /// # Errors
    /// [`ObjectError::Invalid`] for garbage, another kind or version;
    /// [`ObjectError::ForeignNamespace`]; as [`init_at`](Self::init_at).
    pub fn open_at(view: &'a View, offset: usize) -> Result<Self, ObjectError> {
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &MutexWords = region::words(view, offset, KIND)?;
        let header = layout::expect(view, offset, Kind::Mutex, PATIENCE)
            .map_err(|source| ObjectError::placed(KIND, view, offset, source))?;
        let ours = imp::namespaces();
        for (theirs, ours) in header.params[..2].iter().zip(ours) {
            if *theirs != 0 && ours != 0 && *theirs != ours {
                return Err(ObjectError::ForeignNamespace);
            }
        }
        Ok(Self {
            inner: Inner::Words(words, view.liveness()),
        })
    }

    fn guard(&self) -> MutexGuard<'a> {
        MutexGuard {
            inner: self.inner,
            taken_in: ProcessStamp::now(),
            _not_send: PhantomData,
        }
    }

    /// Locks, waiting as long as a live thread holds it.
    ///
    /// Not recursive, on every OS: locking it again from the thread that holds it
    /// returns [`LockError::WouldDeadlock`] at once (a Windows kernel mutex would
    /// let the thread in twice; shmipc refuses there too).
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (with the guard: the lock *is* held) when a holder
    /// died inside; [`LockError::WouldDeadlock`]; [`LockError::Os`] if this thread's
    /// identity cannot be read or the OS wait fails.
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'a>, LockError<'a>> {
        let acquired = match self.inner {
            Inner::Words(words, scope) => {
                let me = imp::current_owner(scope).map_err(LockError::Os)?;
                if let Some(a) = words.try_lock_fast(me) {
                    a
                } else if words.held_by(me) {
                    return Err(LockError::WouldDeadlock);
                } else {
                    loop {
                        // Without a deadline it never times out; the loop only
                        // satisfies the type.
                        if let Ok(a) = words.lock(me, Deadline::Never, Some(&probe(&scope))) {
                            break a;
                        }
                    }
                }
            }
            Inner::Native(n) => loop {
                match n.lock(None) {
                    Ok(a) => break a,
                    Err(NativeWaitError::TimedOut) => {}
                    Err(NativeWaitError::WouldDeadlock) => return Err(LockError::WouldDeadlock),
                    Err(NativeWaitError::Os(e)) => return Err(LockError::Os(e)),
                }
            },
        };
        match acquired {
            Acquired::Clean => Ok(self.guard()),
            Acquired::Inconsistent | Acquired::Recovered => Err(LockError::OwnerDied(self.guard())),
        }
    }

    /// Locks if that needs no waiting (or takes over from a dead holder).
    ///
    /// When the lock is held, this asks the OS whether the holder lives (a system
    /// call, some microseconds): poll with [`lock_timeout`](Self::lock_timeout)
    /// rather than a `try_lock` loop.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] if a live thread holds it; otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'a>, TryLockError<'a>> {
        let acquired = match self.inner {
            Inner::Words(words, scope) => {
                let me = imp::current_owner(scope).map_err(TryLockError::Os)?;
                words.try_lock(me, Some(&probe(&scope)))
            }
            Inner::Native(n) => match n.lock(Some(Duration::ZERO)) {
                Ok(a) => Some(a),
                Err(NativeWaitError::TimedOut | NativeWaitError::WouldDeadlock) => None,
                Err(NativeWaitError::Os(e)) => return Err(TryLockError::Os(e)),
            },
        };
        match acquired {
            Some(Acquired::Clean) => Ok(self.guard()),
            Some(_) => Err(TryLockError::OwnerDied(self.guard())),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] if a live thread held it throughout;
    /// [`LockTimeoutError::WouldDeadlock`] (at once) if this thread holds it;
    /// otherwise as [`lock`](Self::lock).
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'a>, LockTimeoutError<'a>> {
        let acquired = match self.inner {
            Inner::Words(words, scope) => {
                let me = imp::current_owner(scope).map_err(LockTimeoutError::Os)?;
                if let Some(a) = words.try_lock_fast(me) {
                    a
                } else if words.held_by(me) {
                    return Err(LockTimeoutError::WouldDeadlock);
                } else {
                    let deadline = Deadline::after(timeout);
                    words
                        .lock(me, deadline, Some(&probe(&scope)))
                        .map_err(|_| LockTimeoutError::Timeout(timeout))?
                }
            }
            Inner::Native(n) => n.lock(Some(timeout)).map_err(|e| match e {
                NativeWaitError::TimedOut => LockTimeoutError::Timeout(timeout),
                NativeWaitError::WouldDeadlock => LockTimeoutError::WouldDeadlock,
                NativeWaitError::Os(e) => LockTimeoutError::Os(e),
            })?,
        };
        match acquired {
            Acquired::Clean => Ok(self.guard()),
            Acquired::Inconsistent | Acquired::Recovered => {
                Err(LockTimeoutError::OwnerDied(self.guard()))
            }
        }
    }
}

/// Async lock (see `crate::waitset`).
impl<'a> Mutex<'a> {
    /// Locks, as a future: [`Mutex::lock`] without blocking a thread.
    ///
    /// The guard is not `Send` (see [`MutexGuard`]): the lock belongs to the thread
    /// that polled the future to completion, so hold it on that thread (a
    /// current-thread runtime, a `LocalSet`, or drop it before the next `.await` on
    /// a work-stealing runtime). Unlike [`Mutex::lock`] it never reports
    /// `WouldDeadlock`: another task of the same thread may hold the lock, and the
    /// future waits for it (a task that awaits a lock it holds waits for ever, as
    /// with any async mutex).
    ///
    /// Cancel-safe: the lock is taken only when the future completes; a future
    /// dropped while asleep passes on a wake-up it may have been given. A holder
    /// that dies is detected as in the blocking form (its thread is probed at the
    /// end of each slice, 1 ms doubling to 100 ms).
    ///
    /// # Errors
    /// As [`Mutex::lock`], without `WouldDeadlock`.
    pub async fn lock_async(&self) -> Result<MutexGuard<'a>, LockError<'a>> {
        let this = *self;
        let mut state = SyncWait::default();
        let mut slice = FIRST_SLICE;
        let mut probe_at = Instant::now() + slice;
        let acquired = std::future::poll_fn(|cx| loop {
            state.settle();
            let got = match this.inner {
                Inner::Words(words, scope) => {
                    let me = match imp::current_owner(scope) {
                        Ok(me) => me,
                        Err(e) => return Poll::Ready(Err(LockError::Os(e))),
                    };
                    let now = Instant::now();
                    if now >= probe_at {
                        // End of a slice: may the holder be dead? (A system call.)
                        slice = (slice * 2).min(MAX_SLICE);
                        probe_at = now + slice;
                        words.try_lock(me, Some(&probe(&scope)))
                    } else {
                        words.try_lock_fast(me)
                    }
                }
                Inner::Native(n) => match n.lock(Some(Duration::ZERO)) {
                    Ok(a) => Some(a),
                    Err(NativeWaitError::TimedOut | NativeWaitError::WouldDeadlock) => None,
                    Err(NativeWaitError::Os(e)) => return Poll::Ready(Err(LockError::Os(e))),
                },
            };
            if let Some(a) = got {
                return Poll::Ready(Ok(a));
            }
            let arm = match this.inner {
                Inner::Words(words, _) => arm_words(words, probe_at),
                Inner::Native(_) => Arm::Sleep(Sleep {
                    word: &waitset::NEVER,
                    expected: 0,
                    recheck: reactor::POLL,
                    undo: Undo::Nothing,
                }),
            };
            match arm {
                Arm::Ready => {}
                Arm::Sleep(s) => {
                    state.sleep(s, cx);
                    return Poll::Pending;
                }
            }
        })
        .await?;
        match acquired {
            Acquired::Clean => Ok(self.guard()),
            Acquired::Inconsistent | Acquired::Recovered => Err(LockError::OwnerDied(self.guard())),
        }
    }
}

/// Announces (sets CONTENDED, so the unlocker wakes `seq`) and arms: the protocol of
/// `MutexWords::lock_contended`, one step.
fn arm_words(words: &MutexWords, recheck_at: Instant) -> Arm<'_> {
    let mut state = words.owner.load(Ordering::Relaxed);
    loop {
        if state & !CONTENDED == 0 {
            return Arm::Ready;
        }
        if state & CONTENDED != 0 {
            break;
        }
        match words.owner.compare_exchange(
            state,
            state | CONTENDED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(s) => state = s,
        }
    }
    // Event count: read `seq`, re-check (Acquire pairs with the unlocker's Release
    // increment).
    let seq = words.seq.load(Ordering::Acquire);
    if words.owner.load(Ordering::Relaxed) & !CONTENDED == 0 {
        return Arm::Ready;
    }
    Arm::Sleep(Sleep {
        word: &words.seq,
        expected: seq,
        recheck: recheck_at.saturating_duration_since(Instant::now()),
        undo: Undo::Nothing,
    })
}

impl<'a> Mutex<'a> {
    /// The WaitSet's arm: ready while unlocked or its holder is dead (a `try_lock`
    /// then takes it over).
    fn arm_for_set(self) -> Arm<'a> {
        match self.inner {
            Inner::Words(words, scope) => {
                let holder = words.owner.load(Ordering::Relaxed) & !CONTENDED;
                if holder != 0 && imp::liveness(scope, holder) == Liveness::Dead {
                    return Arm::Ready;
                }
                arm_words(words, Instant::now() + MAX_SLICE)
            }
            Inner::Native(_) => Arm::Sleep(Sleep {
                word: &waitset::NEVER,
                expected: 0,
                recheck: reactor::POLL,
                undo: Undo::Nothing,
            }),
        }
    }
}

/// The WaitSet protocol (see [`Mutex::arm_for_set`]).
impl waitset::sealed::Sealed for Mutex<'_> {
    fn announce(&mut self) -> (bool, u32) {
        (false, 0)
    }
    fn disarm(&mut self, _: u32) {}
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.arm_for_set()
    }
}

impl waitset::sealed::Sealed for NamedMutex {
    fn announce(&mut self) -> (bool, u32) {
        (false, 0)
    }
    fn disarm(&mut self, _: u32) {}
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.as_mutex().arm_for_set()
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped.
///
/// Not `Send`, on every OS: the lock belongs to the thread that took it and is
/// released on that thread (a Windows kernel mutex can only be released by its
/// owning thread; a thread that ends while holding it counts as a dead owner).
///
/// Nor does it travel through `fork()`: a forked child gets a copy of the guard but
/// not the lock, which its parent still holds. Dropping the copy in the child
/// leaves the lock alone (and [`mark_consistent`](Self::mark_consistent) there
/// does nothing), so the parent's critical section is never opened under it.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a> {
    inner: Inner<'a>,
    /// The process that took the lock: only it may release it.
    taken_in: ProcessStamp,
    _not_send: PhantomData<*const ()>,
}

impl MutexGuard<'_> {
    /// Whether this process took the lock (not a child forked while it was held).
    #[inline]
    fn holds(&self) -> bool {
        self.taken_in == ProcessStamp::now()
    }
}

impl fmt::Debug for MutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutexGuard").finish_non_exhaustive()
    }
}

impl MutexGuard<'_> {
    /// Declares the protected data consistent again after an
    /// [`OwnerDied`](LockError::OwnerDied) (`pthread_mutex_consistent`). Until a
    /// holder calls it, every later locker gets `OwnerDied` too.
    #[doc(alias = "pthread_mutex_consistent")]
    pub fn mark_consistent(&self) {
        if !self.holds() {
            return;
        }
        match self.inner {
            Inner::Words(w, _) => w.mark_consistent(),
            Inner::Native(n) => n.mark_consistent(),
        }
    }
}

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.holds() {
            // A forked child's copy: the lock is its parent's, still held.
            return;
        }
        let panicking = std::thread::panicking();
        match self.inner {
            Inner::Words(w, _) => {
                if panicking {
                    // Like std's poisoning: the data may be half-updated.
                    w.mark_inconsistent();
                }
                w.unlock();
            }
            Inner::Native(n) => {
                if panicking {
                    n.mark_inconsistent();
                }
                n.unlock();
            }
        }
    }
}

/// A named inter-process mutex (Win32 `CreateMutex`), with the same names,
/// permissions and lifetime as a [`Segment`](crate::Segment): on Windows the kernel
/// mutex `Local\NAME` itself (shared with programs that call `OpenMutexW`), elsewhere
/// a small segment of its own holding the lock words.
///
/// ```
/// use shmipc::sync::NamedMutex;
/// # let name = format!("doc-named-mutex-{}", std::process::id());
/// let (m, _created) = NamedMutex::create_or_open(&name)?;
/// {
///     let _guard = m.lock().or_else(|e| match e {
///         shmipc::sync::LockError::OwnerDied(g) => { g.mark_consistent(); Ok(g) }
///         e => Err(e.to_string()),
///     })?;
///     // ... critical section across processes ...
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NamedMutex {
    inner: Named,
    name: String,
}

enum Named {
    Segment(Placed<MutexWords>),
    Native(NativeMutex),
}

impl fmt::Debug for NamedMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedMutex")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NamedMutex {
    /// Creates a named mutex (owner-only, dies with its last holder); fails if the
    /// name exists.
    ///
    /// # Errors
    /// [`ObjectError::Create`] (e.g. the name exists), [`ObjectError::Unsupported`].
    #[doc(alias = "CreateMutex")]
    #[doc(alias = "CreateMutexW")]
    pub fn create(name: &str) -> Result<Self, ObjectError> {
        Self::create_with(name, &ObjectOptions::default())
    }

    /// Creates a named mutex with these permissions and lifetime.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_with(name: &str, opts: &ObjectOptions) -> Result<Self, ObjectError> {
        Self::get(name, How::Create, opts).map(|(m, _)| m)
    }

    /// Opens an existing named mutex.
    ///
    /// # Errors
    /// [`ObjectError::Open`] (e.g. not found), [`ObjectError::Invalid`] if the name
    /// holds something else.
    #[doc(alias = "OpenMutex")]
    pub fn open(name: &str) -> Result<Self, ObjectError> {
        Self::get(name, How::Open, &ObjectOptions::default()).map(|(m, _)| m)
    }

    /// Creates the named mutex or opens it, and says which.
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`open`](Self::open).
    pub fn create_or_open(name: &str) -> Result<(Self, Disposition), ObjectError> {
        Self::get(name, How::CreateOrOpen, &ObjectOptions::default())
    }

    /// As [`create_or_open`](Self::create_or_open), with these permissions and
    /// lifetime for creating.
    ///
    /// # Errors
    /// As [`create_or_open`](Self::create_or_open).
    pub fn create_or_open_with(
        name: &str,
        opts: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::get(name, How::CreateOrOpen, opts)
    }

    fn get(name: &str, how: How, opts: &ObjectOptions) -> Result<(Self, Disposition), ObjectError> {
        Self::get_in(name, how, opts).map_err(|e| e.of_named(name))
    }

    fn get_in(
        name: &str,
        how: How,
        opts: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        if imp::NATIVE_NAMED {
            let (native, disp) = NativeMutex::get(name, how, opts)?;
            return Ok((
                Self {
                    inner: Named::Native(native),
                    name: name.to_owned(),
                },
                disp,
            ));
        }
        let (view, disp) = named::segment(name, how, opts, KIND, |view| {
            Mutex::init_at(view, 0).map(|_| ())
        })?;
        if disp == Disposition::Opened {
            Mutex::open_at(&view, 0)?;
        }
        Ok((
            Self {
                inner: Named::Segment(Placed::new(view, 0, KIND)?),
                name: name.to_owned(),
            },
            disp,
        ))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mutex itself (for code written against [`Mutex`]).
    pub fn as_mutex(&self) -> Mutex<'_> {
        Mutex {
            inner: match &self.inner {
                Named::Segment(p) => Inner::Words(p.get(), p.view().liveness()),
                Named::Native(n) => Inner::Native(n),
            },
        }
    }

    /// As [`Mutex::lock`].
    ///
    /// # Errors
    /// As [`Mutex::lock`].
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_>, LockError<'_>> {
        self.as_mutex().lock()
    }

    /// As [`Mutex::try_lock`].
    ///
    /// # Errors
    /// As [`Mutex::try_lock`].
    #[inline]
    pub fn try_lock(&self) -> Result<MutexGuard<'_>, TryLockError<'_>> {
        self.as_mutex().try_lock()
    }

    /// As [`Mutex::lock_async`].
    ///
    /// # Errors
    /// As [`Mutex::lock_async`].
    pub async fn lock_async(&self) -> Result<MutexGuard<'_>, LockError<'_>> {
        self.as_mutex().lock_async().await
    }

    /// As [`Mutex::lock_timeout`].
    ///
    /// # Errors
    /// As [`Mutex::lock_timeout`].
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_>, LockTimeoutError<'_>> {
        self.as_mutex().lock_timeout(timeout)
    }
}
