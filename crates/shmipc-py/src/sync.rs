//! `shmipc.Mutex`, `shmipc.Semaphore`, `shmipc.Event`: named inter-process
//! synchronization that survives a dead holder.
//!
//! # Safety
//!
//! A Rust `MutexGuard` borrows its `NamedMutex` and is not `Send`. A Python lock is
//! taken in `acquire` and let go in a later `release` call, so the guard is kept in
//! the Python object beside the mutex it borrows: the mutex sits in an `Arc` that
//! the object never replaces, and every guard is dropped (or forgotten) before it.
//! Guards only ever run on the thread that locked: `Python::detach` runs its
//! closure on the calling thread, and `release` drops only the calling thread's
//! guard.
#![allow(unsafe_code)]

use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::thread::{self, ThreadId};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use shmipc::sync::{
    EventReset, LockTimeoutError, MutexGuard, NamedEvent, NamedMutex, NamedSemaphore,
    WaitTimeoutError,
};
use shmipc::Disposition;

use crate::args;
use crate::errors::{self, OwnerDied};
use crate::wait::{slices, Timeout};

fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A guard made `'static` and movable into a GIL-released closure and back; see the
/// module's safety note.
struct Held {
    thread: ThreadId,
    /// The process that locked. A child forked while this is held copies the
    /// record (and keeps the thread id) but not the lock: it must neither see
    /// the lock as its own nor unlock the parent's critical section.
    pid: u32,
    guard: MutexGuard<'static>,
}

impl Held {
    /// Whether the calling thread of this process took it.
    fn mine(&self, me: ThreadId) -> bool {
        self.thread == me && self.pid == std::process::id()
    }
}

// SAFETY: a `Held` only moves between the calling thread and `Python::detach`'s
// closure, which runs on that same thread; `release` drops it only on `thread`, and
// `Drop for Mutex` forgets the guards of other threads instead of dropping them.
unsafe impl Send for Held {}

/// How one slice of `acquire` ended.
enum Slice {
    Locked(Held),
    OwnerDied(Held),
    Timeout,
    Failed(PyErrKind),
}

enum PyErrKind {
    WouldDeadlock,
    Os(String),
}

/// A named inter-process mutex (Win32 ``CreateMutex``). ``Mutex(name)`` creates it
/// if the name is free and opens it if it exists (``created`` tells which).
///
/// If a holder dies inside (even by SIGKILL), the next ``acquire`` takes the lock
/// over and raises ``shmipc.OwnerDied`` **with the lock held**: repair the shared
/// data, then call ``mark_consistent()`` and ``release()``. Not recursive; owned by
/// the thread that acquired it (only that thread may release it).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Mutex {
    // Declared (and dropped, see `Drop`) before the mutex they borrow.
    held: StdMutex<Vec<Held>>,
    m: Arc<NamedMutex>,
    #[pyo3(get)]
    created: bool,
}

impl Drop for Mutex {
    fn drop(&mut self) {
        let me = thread::current().id();
        for h in lock(&self.held).drain(..) {
            if h.mine(me) {
                drop(h.guard);
            } else {
                // Unlocking belongs to the thread that locked (a Windows kernel
                // mutex cannot be released elsewhere); that thread's end makes the
                // next locker see a dead owner. In a forked child the lock is the
                // parent's, which goes on holding it.
                std::mem::forget(h.guard);
            }
        }
    }
}

impl Mutex {
    fn wrap(m: NamedMutex, created: bool) -> Self {
        Self {
            held: StdMutex::new(Vec::new()),
            m: Arc::new(m),
            created,
        }
    }

    fn mutex(&self) -> &'static NamedMutex {
        // SAFETY: `self.m` is never replaced, and every guard borrowing through this
        // reference is dropped or forgotten (`Drop for Mutex`, `release`) before
        // `self.m` drops; the reference never escapes this object otherwise.
        unsafe { &*Arc::as_ptr(&self.m) }
    }
}

#[pymethods]
impl Mutex {
    #[new]
    fn py_new(py: Python<'_>, #[pyo3(from_py_with = args::name)] name: String) -> PyResult<Self> {
        let name = name.as_str();
        let (m, d) = py
            .detach(|| NamedMutex::create_or_open(name))
            .map_err(errors::object)?;
        Ok(Self::wrap(m, d == Disposition::Created))
    }

    /// Creates the mutex; ``FileExistsError`` if the name is taken.
    #[classmethod]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let m = py
            .detach(|| NamedMutex::create(name))
            .map_err(errors::object)?;
        Ok(Self::wrap(m, true))
    }

    /// Opens an existing mutex; ``FileNotFoundError`` if there is none.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let m = py
            .detach(|| NamedMutex::open(name))
            .map_err(errors::object)?;
        Ok(Self::wrap(m, false))
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        self.m.name()
    }

    /// Takes the lock, waiting at most ``timeout`` seconds (``None``: for ever;
    /// the GIL is released and Ctrl-C interrupts). Returns ``True``.
    ///
    /// Raises ``TimeoutError`` when a live holder kept it; ``shmipc.OwnerDied``
    /// (the lock is then held) when the holder died inside; ``shmipc.Error`` if
    /// this thread holds it already.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let t = Timeout::new(timeout)?;
        let m = self.mutex();
        let me = thread::current().id();
        let pid = std::process::id();
        let got = slices(py, t, |slice: Duration| {
            let s = match m.lock_timeout(slice) {
                Ok(guard) => Slice::Locked(Held {
                    thread: me,
                    pid,
                    guard,
                }),
                Err(LockTimeoutError::OwnerDied(guard)) => Slice::OwnerDied(Held {
                    thread: me,
                    pid,
                    guard,
                }),
                Err(LockTimeoutError::Timeout(_)) => Slice::Timeout,
                Err(LockTimeoutError::WouldDeadlock) => Slice::Failed(PyErrKind::WouldDeadlock),
                Err(e) => Slice::Failed(PyErrKind::Os(e.to_string())),
            };
            match s {
                Slice::Timeout => None,
                s => Some(s),
            }
        })?;
        match got {
            None | Some(Slice::Timeout) => Err(errors::timeout(
                &format!("mutex `{}` (a live process holds it)", self.m.name()),
                t.secs(),
            )),
            Some(Slice::Locked(h)) => {
                lock(&self.held).push(h);
                Ok(true)
            }
            Some(Slice::OwnerDied(h)) => {
                lock(&self.held).push(h);
                Err(OwnerDied::new_err(format!(
                    "the previous owner of mutex `{}` died while holding it: the lock is held now; repair the shared data, then call mark_consistent() and release()",
                    self.m.name()
                )))
            }
            // Python's words: a guard is Rust's.
            Some(Slice::Failed(PyErrKind::WouldDeadlock)) => Err(errors::Error::new_err(format!(
                "this thread holds the mutex already (`{}` is not recursive): call release() first (or leave its `with` block)",
                self.m.name()
            ))),
            Some(Slice::Failed(PyErrKind::Os(m))) => Err(PyOSError::new_err(m)),
        }
    }

    /// Lets go of the lock (only the thread that acquired it may).
    fn release(&self) -> PyResult<()> {
        let me = thread::current().id();
        let h = {
            let mut held = lock(&self.held);
            let i = held.iter().position(|h| h.mine(me)).ok_or_else(|| {
                PyRuntimeError::new_err(format!(
                    "release of mutex `{}`: this thread of this process does not hold it (a child forked while the parent held it does not hold it either)",
                    self.m.name()
                ))
            })?;
            held.swap_remove(i)
        };
        drop(h.guard);
        Ok(())
    }

    /// After ``OwnerDied``: declares the protected data repaired. Until a holder
    /// calls it, every later locker gets ``OwnerDied`` too.
    fn mark_consistent(&self) -> PyResult<()> {
        let me = thread::current().id();
        let held = lock(&self.held);
        let h = held.iter().find(|h| h.mine(me)).ok_or_else(|| {
            PyRuntimeError::new_err(format!(
                "mark_consistent on mutex `{}`: this thread of this process does not hold it (acquire it first)",
                self.m.name()
            ))
        })?;
        h.guard.mark_consistent();
        Ok(())
    }

    /// Whether the calling thread holds it.
    fn held(&self) -> bool {
        let me = thread::current().id();
        lock(&self.held).iter().any(|h| h.mine(me))
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().acquire(slf.py(), None)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Mutex name={:?}>", self.m.name())
    }
}

/// A named counting semaphore (Win32 ``CreateSemaphore``). ``Semaphore(name,
/// initial=0, maximum=2**31-1)`` creates it if the name is free and opens it if it
/// exists (then its own counts apply).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Semaphore {
    s: NamedSemaphore,
    #[pyo3(get)]
    created: bool,
}

const SEM_MAX: u32 = i32::MAX as u32;

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (name, initial=0, maximum=SEM_MAX))]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::initial)] initial: u32,
        #[pyo3(from_py_with = args::maximum)] maximum: u32,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let (s, d) = py
            .detach(|| NamedSemaphore::create_or_open(name, initial, maximum))
            .map_err(errors::object)?;
        Ok(Self {
            s,
            created: d == Disposition::Created,
        })
    }

    /// Creates the semaphore; ``FileExistsError`` if the name is taken.
    #[classmethod]
    #[pyo3(signature = (name, initial=0, maximum=SEM_MAX))]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::initial)] initial: u32,
        #[pyo3(from_py_with = args::maximum)] maximum: u32,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let s = py
            .detach(|| NamedSemaphore::create(name, initial, maximum))
            .map_err(errors::object)?;
        Ok(Self { s, created: true })
    }

    /// Opens an existing semaphore; ``FileNotFoundError`` if there is none.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let s = py
            .detach(|| NamedSemaphore::open(name))
            .map_err(errors::object)?;
        Ok(Self { s, created: false })
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        self.s.name()
    }

    /// Units available now.
    #[getter]
    fn value(&self) -> u32 {
        self.s.value()
    }

    /// The most units it holds.
    #[getter]
    fn maximum(&self) -> u32 {
        self.s.max()
    }

    /// Takes a unit, waiting at most ``timeout`` seconds (``None``: for ever; the
    /// GIL is released and Ctrl-C interrupts). ``TimeoutError`` if none came.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let t = Timeout::new(timeout)?;
        let s = &self.s;
        let got = slices(py, t, |slice| match s.wait_timeout(slice) {
            Ok(()) => Some(()),
            Err(WaitTimeoutError::Timeout(_)) => None,
            Err(_) => None,
        })?;
        got.map(|()| true).ok_or_else(|| {
            errors::timeout(&format!("a unit of semaphore `{}`", s.name()), t.secs())
        })
    }

    /// Adds a unit (waking one waiter); ``ValueError`` above the maximum.
    fn release(&self) -> PyResult<()> {
        self.s.post().map_err(errors::post)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().acquire(slf.py(), None)?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmipc.Semaphore name={:?} value={}>",
            self.s.name(),
            self.s.value()
        )
    }
}

/// A named event (Win32 ``CreateEvent``). ``Event(name, manual_reset=True,
/// initially_set=False)`` creates it if the name is free and opens it if it exists.
/// A manual-reset event stays set until ``reset()``; an auto-reset one lets one
/// waiter through per ``set()``.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Event {
    e: NamedEvent,
    #[pyo3(get)]
    created: bool,
}

fn reset_mode(manual_reset: bool) -> EventReset {
    if manual_reset {
        EventReset::Manual
    } else {
        EventReset::Auto
    }
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (name, manual_reset=true, initially_set=false))]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        manual_reset: bool,
        initially_set: bool,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let (e, d) = py
            .detach(|| NamedEvent::create_or_open(name, reset_mode(manual_reset), initially_set))
            .map_err(errors::object)?;
        Ok(Self {
            e,
            created: d == Disposition::Created,
        })
    }

    /// Creates the event; ``FileExistsError`` if the name is taken.
    #[classmethod]
    #[pyo3(signature = (name, manual_reset=true, initially_set=false))]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        manual_reset: bool,
        initially_set: bool,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let e = py
            .detach(|| NamedEvent::create(name, reset_mode(manual_reset), initially_set))
            .map_err(errors::object)?;
        Ok(Self { e, created: true })
    }

    /// Opens an existing event; ``FileNotFoundError`` if there is none.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let e = py
            .detach(|| NamedEvent::open(name))
            .map_err(errors::object)?;
        Ok(Self { e, created: false })
    }

    /// The name.
    #[getter]
    fn name(&self) -> &str {
        self.e.name()
    }

    /// Whether it is manual-reset.
    #[getter]
    fn manual_reset(&self) -> bool {
        self.e.reset_mode() == EventReset::Manual
    }

    /// Sets it: releases every waiter (manual reset) or one (auto reset).
    fn set(&self) {
        self.e.set();
    }

    /// Unsets it.
    fn reset(&self) {
        self.e.reset();
    }

    /// Unsets it (``threading.Event`` spelling).
    fn clear(&self) {
        self.e.reset();
    }

    /// Whether it is set now.
    fn is_set(&self) -> bool {
        self.e.is_set()
    }

    /// Waits until it is set, at most ``timeout`` seconds (``None``: for ever; the
    /// GIL is released and Ctrl-C interrupts). ``TimeoutError`` if it was not set.
    /// Returns ``True``.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let t = Timeout::new(timeout)?;
        let e = &self.e;
        let got = slices(py, t, |slice| e.wait_timeout(slice).ok())?;
        got.map(|()| true)
            .ok_or_else(|| errors::timeout(&format!("event `{}` to be set", e.name()), t.secs()))
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmipc.Event name={:?} set={}>",
            self.e.name(),
            self.e.is_set()
        )
    }
}
