//! [`Event`] (in a segment at an offset) and [`NamedEvent`], manual or auto reset.

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

use super::error::{ObjectError, WaitTimeoutError};
use super::imp::{self, NativeEvent};
use super::named::{self, How, ObjectOptions, PATIENCE};
use super::raw::{EventWords, MAX_SLICE, SET};
use super::region::{self, Placed, OBJECT_ALIGN, OBJECT_SIZE};

pub use crate::vocab::EventReset;

const KIND: &str = "event";

impl EventReset {
    fn code(self) -> u64 {
        match self {
            Self::Manual => 0,
            Self::Auto => 1,
        }
    }
}

/// An inter-process event placed in a segment at an offset.
///
/// A manual-reset `set` releases everyone waiting at that moment, even if `reset`
/// follows at once (Win32 semantics); waiters that arrive later wait for the next
/// `set`. An auto-reset `set` releases exactly one waiter.
///
/// ```
/// use shmipc::Segment;
/// use shmipc::sync::{Event, EventReset};
/// let seg = Segment::options().size(4096).create_unnamed()?;
/// let view = seg.map_all()?;
/// let ev = Event::init_at(&view, 0, EventReset::Auto, false)?; // others: open_at
/// ev.set();
/// ev.wait();            // takes it: auto reset
/// assert!(!ev.is_set());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct Event<'a> {
    inner: Inner<'a>,
}

/// Words in shared memory (with the reset mode), or a Windows kernel event.
#[derive(Clone, Copy)]
enum Inner<'a> {
    Words(&'a EventWords, EventReset),
    Native(&'a NativeEvent),
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("reset", &self.reset_mode())
            .field("set", &self.is_set())
            .finish()
    }
}

impl<'a> Event<'a> {
    /// Bytes an event occupies in a segment.
    pub const SIZE: usize = OBJECT_SIZE;
    /// Alignment its offset needs.
    pub const ALIGN: usize = OBJECT_ALIGN;

    /// Writes a new event at `offset`.
    ///
    /// # Errors
    /// As [`Mutex::init_at`](super::Mutex::init_at).
    pub fn init_at(
        view: &'a View,
        offset: usize,
        reset: EventReset,
        initially_set: bool,
    ) -> Result<Self, ObjectError> {
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &EventWords = region::words(view, offset, KIND)?;
        words.init(initially_set);
        let inner = Inner::Words(words, reset);
        layout::init(view, offset, Kind::Event, [reset.code(), 0, 0, 0])
            .map_err(|e| ObjectError::placed(KIND, view, offset, LayoutError::Access(e)))?;
        Ok(Self { inner })
    }

    /// Opens the event another process initialised at `offset`.
    ///
    /// # Errors
    /// As [`Mutex::open_at`](super::Mutex::open_at).
    pub fn open_at(view: &'a View, offset: usize) -> Result<Self, ObjectError> {
        if !imp::SUPPORTED {
            return Err(ObjectError::Unsupported { kind: KIND });
        }
        let words: &EventWords = region::words(view, offset, KIND)?;
        let header = layout::expect(view, offset, Kind::Event, PATIENCE)
            .map_err(|source| ObjectError::placed(KIND, view, offset, source))?;
        let reset = match header.params[0] {
            0 => EventReset::Manual,
            1 => EventReset::Auto,
            found => {
                return Err(ObjectError::placed(
                    KIND,
                    view,
                    offset,
                    LayoutError::Corrupt {
                        kind: KIND,
                        what: "reset mode (not 0 manual, 1 auto)",
                        found,
                    },
                ))
            }
        };
        Ok(Self {
            inner: Inner::Words(words, reset),
        })
    }

    /// How it resets.
    pub fn reset_mode(&self) -> EventReset {
        match self.inner {
            Inner::Words(_, reset) => reset,
            Inner::Native(n) => n.reset_mode(),
        }
    }

    fn auto(&self) -> bool {
        self.reset_mode() == EventReset::Auto
    }

    /// Whether it is set now (a snapshot).
    pub fn is_set(&self) -> bool {
        match self.inner {
            Inner::Words(w, _) => w.is_set(self.auto()),
            Inner::Native(n) => n.is_set(),
        }
    }

    /// Sets it: releases every waiter (manual) or one (auto) (`SetEvent`).
    #[doc(alias = "SetEvent")]
    pub fn set(&self) {
        match self.inner {
            Inner::Words(w, _) => w.set(self.auto()),
            Inner::Native(n) => n.set(),
        }
    }

    /// Clears it (`ResetEvent`).
    #[doc(alias = "ResetEvent")]
    pub fn reset(&self) {
        match self.inner {
            Inner::Words(w, _) => w.reset(),
            Inner::Native(n) => n.reset(),
        }
    }

    /// Waits until it is set (auto reset: and resets it).
    pub fn wait(&self) {
        match self.inner {
            Inner::Words(w, _) => while w.wait(self.auto(), Deadline::Never, true).is_err() {},
            Inner::Native(n) => while n.wait(None).is_err() {},
        }
    }

    /// Waits at most `timeout` for it to be set.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`] if it was not set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        let timed_out = WaitTimeoutError::Timeout(timeout);
        match self.inner {
            Inner::Words(w, _) => w
                .wait(self.auto(), Deadline::after(timeout), true)
                .map_err(|_| timed_out),
            // A failed wait (cannot be: the handle is ours) reads as a timeout.
            Inner::Native(n) => n.wait(Some(timeout)).map_err(|_| timed_out),
        }
    }
}

/// Async waits (see `crate::waitset`).
impl<'a> Event<'a> {
    /// Waits until it is set (auto reset: and resets it), as a future:
    /// [`Event::wait`] without blocking a thread. A manual-reset waiter also returns
    /// when a `set` came and went (a new generation), as the blocking form does.
    ///
    /// Cancel-safe: an auto-reset event is only taken when the future completes; a
    /// future dropped while asleep takes back its announcement and passes on a
    /// wake-up it may have been given.
    pub async fn wait_async(&self) {
        let this = *self;
        let auto = self.auto();
        let start = match self.inner {
            Inner::Words(w, _) => w.state.load(Ordering::Acquire),
            Inner::Native(_) => 0,
        };
        let mut state = SyncWait::default();
        std::future::poll_fn(|cx| loop {
            // Tried while still counted as a waiter (the last poll's announcement):
            // a `set` racing this poll owes it a release rather than seeing nobody.
            let passed = match this.inner {
                Inner::Words(w, _) => w.try_pass(auto, start),
                Inner::Native(n) => n.wait(Some(Duration::ZERO)).is_ok(),
            };
            state.settle();
            if passed {
                return Poll::Ready(());
            }
            this.announce_words();
            match this.arm_words(Some(start)) {
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

    /// `start`: a waiter's first state (a new generation also releases it).
    fn arm_words(&self, start: Option<u32>) -> Arm<'a> {
        match self.inner {
            Inner::Words(w, _) => {
                // The RMW read of `EventWords`' doc.
                let seen = w.state.fetch_add(0, Ordering::AcqRel);
                let undo = Undo::Waiters(&w.waiters);
                let moved = start.is_some_and(|s| s >> 1 != seen >> 1);
                let owed = self.auto() && w.owed.load(Ordering::SeqCst) != 0;
                if seen & SET != 0 || owed || (moved && !self.auto()) {
                    waitset::undo(undo);
                    return Arm::Ready;
                }
                Arm::Sleep(Sleep {
                    word: &w.state,
                    expected: seen,
                    recheck: MAX_SLICE,
                    undo,
                })
            }
            Inner::Native(n) => {
                if n.is_set() {
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

/// The WaitSet protocol: ready while set.
impl waitset::sealed::Sealed for Event<'_> {
    fn announce(&mut self) -> (bool, u32) {
        self.announce_words();
        (false, 0)
    }
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.arm_words(None)
    }
    fn disarm(&mut self, _: u32) {
        self.disarm_words();
    }
}

impl waitset::sealed::Sealed for NamedEvent {
    fn announce(&mut self) -> (bool, u32) {
        self.as_event().announce_words();
        (false, 0)
    }
    fn arm(&mut self, _: u32) -> Arm<'_> {
        self.as_event().arm_words(None)
    }
    fn disarm(&mut self, _: u32) {
        self.as_event().disarm_words();
    }
}

impl NamedEvent {
    /// As [`Event::wait_async`].
    pub async fn wait_async(&self) {
        self.as_event().wait_async().await;
    }
}

/// A named event (Win32 `CreateEvent`), with the names, permissions and lifetime
/// of a [`Segment`](crate::Segment): on Windows the kernel event `Local\NAME`,
/// elsewhere a small segment of its own.
///
/// ```
/// use shmipc::sync::{EventReset, NamedEvent};
/// # let name = format!("doc-named-event-{}", std::process::id());
/// let (ev, _) = NamedEvent::create_or_open(&name, EventReset::Manual, false)?;
/// ev.set();
/// ev.wait_timeout(std::time::Duration::from_secs(1))?;
/// assert!(ev.is_set()); // manual: stays set
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NamedEvent {
    inner: Named,
    name: String,
}

enum Named {
    Segment(Placed<EventWords>, EventReset),
    Native(NativeEvent),
}

impl fmt::Debug for NamedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedEvent")
            .field("name", &self.name)
            .field("event", &self.as_event())
            .finish()
    }
}

impl NamedEvent {
    /// Creates a named event; fails if the name exists.
    ///
    /// # Errors
    /// As [`NamedMutex::create`](super::NamedMutex::create).
    #[doc(alias = "CreateEvent")]
    #[doc(alias = "CreateEventW")]
    pub fn create(name: &str, reset: EventReset, initially_set: bool) -> Result<Self, ObjectError> {
        Self::create_with(name, reset, initially_set, &ObjectOptions::default())
    }

    /// Creates a named event with these permissions and lifetime.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn create_with(
        name: &str,
        reset: EventReset,
        initially_set: bool,
        opts: &ObjectOptions,
    ) -> Result<Self, ObjectError> {
        Self::get(name, How::Create, opts, Some((reset, initially_set))).map(|(e, _)| e)
    }

    /// Opens an existing named event (its reset mode is the creator's).
    ///
    /// # Errors
    /// As [`NamedMutex::open`](super::NamedMutex::open).
    #[doc(alias = "OpenEvent")]
    pub fn open(name: &str) -> Result<Self, ObjectError> {
        Self::get(name, How::Open, &ObjectOptions::default(), None).map(|(e, _)| e)
    }

    /// Creates the named event or opens it, and says which. An existing one must
    /// have the same reset mode.
    ///
    /// # Errors
    /// As [`create`](Self::create) and [`open`](Self::open); [`ObjectError::Invalid`]
    /// with [`LayoutError::Mismatch`] for another reset mode.
    pub fn create_or_open(
        name: &str,
        reset: EventReset,
        initially_set: bool,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::create_or_open_with(name, reset, initially_set, &ObjectOptions::default())
    }

    /// As [`create_or_open`](Self::create_or_open), with options for creating.
    ///
    /// # Errors
    /// As [`create_or_open`](Self::create_or_open).
    pub fn create_or_open_with(
        name: &str,
        reset: EventReset,
        initially_set: bool,
        opts: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::get(name, How::CreateOrOpen, opts, Some((reset, initially_set)))
    }

    fn get(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(EventReset, bool)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        Self::get_in(name, how, opts, params).map_err(|e| e.of_named(name))
    }

    fn get_in(
        name: &str,
        how: How,
        opts: &ObjectOptions,
        params: Option<(EventReset, bool)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        if imp::NATIVE_NAMED {
            let (native, disp) = NativeEvent::get(name, how, opts, params)?;
            return Ok((
                Self {
                    inner: Named::Native(native),
                    name: name.to_owned(),
                },
                disp,
            ));
        }
        let (view, disp) = named::segment(name, how, opts, KIND, |view| match params {
            Some((reset, set)) => Event::init_at(view, 0, reset, set).map(drop),
            None => Err(ObjectError::Unsupported { kind: KIND }),
        })?;
        let reset = match (disp, params) {
            // Initialised before it was named.
            (Disposition::Created, Some((reset, _))) => reset,
            (_, want) => {
                let found = Event::open_at(&view, 0)?.reset_mode();
                if let Some((reset, _)) = want.filter(|(r, _)| *r != found) {
                    return Err(ObjectError::named(
                        KIND,
                        name,
                        LayoutError::Mismatch {
                            kind: KIND,
                            what: "reset mode (0 manual, 1 auto)",
                            found: found.code(),
                            expected: reset.code(),
                        },
                    ));
                }
                found
            }
        };
        Ok((
            Self {
                inner: Named::Segment(Placed::new(view, 0, KIND)?, reset),
                name: name.to_owned(),
            },
            disp,
        ))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the name still names this very event: `Some(false)` once it was
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

    /// The event itself.
    pub fn as_event(&self) -> Event<'_> {
        Event {
            inner: match &self.inner {
                Named::Segment(p, reset) => Inner::Words(p.get(), *reset),
                Named::Native(n) => Inner::Native(n),
            },
        }
    }

    /// As [`Event::reset_mode`].
    pub fn reset_mode(&self) -> EventReset {
        self.as_event().reset_mode()
    }

    /// As [`Event::is_set`].
    pub fn is_set(&self) -> bool {
        self.as_event().is_set()
    }

    /// As [`Event::set`].
    pub fn set(&self) {
        self.as_event().set();
    }

    /// As [`Event::reset`].
    pub fn reset(&self) {
        self.as_event().reset();
    }

    /// As [`Event::wait`].
    pub fn wait(&self) {
        self.as_event().wait();
    }

    /// As [`Event::wait_timeout`].
    ///
    /// # Errors
    /// As [`Event::wait_timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitTimeoutError> {
        self.as_event().wait_timeout(timeout)
    }
}
