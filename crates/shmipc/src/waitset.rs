//! Async waits and the [`WaitSet`]: every wait as a plain [`Future`] (any executor,
//! no runtime in the library), and one thread blocked on many objects at once.
//!
//! # How an async wait works
//!
//! Each waitable thing (a channel receiver, a sync object) sleeps, in its blocking
//! form, on a 32-bit word in shared memory with a protocol that makes a waker's
//! `futex_wake` reach every sleeper that announced itself (a bell's `sleepers`, a
//! semaphore's `waiters`, a mutex's CONTENDED bit). The async form runs the same
//! protocol, in three steps per poll:
//!
//! 1. the kind's non-blocking try-call (`try_recv`, `try_wait`, `try_lock`): done if
//!    it succeeds or fails for good (`Disconnected`, `OwnerDied`, …);
//! 2. *announce* (the sleeper's half: `sleepers += 1`, the heavy barrier; or
//!    `waiters += 1`; or set CONTENDED), then *arm*: read the word's value and re-check
//!    the condition without consuming anything. Ready: go to 1;
//! 3. register `(word, value, recheck, waker)` with the process's reactor
//!    (`sys/wait/reactor.rs`: a thread per 127 waits sleeping in `futex_waitv` on
//!    Linux) and return `Pending`.
//!
//! No lost wake-up: the announcement comes before the value is read and the condition
//! re-checked, exactly as in the blocking forms, so a waker either sees the
//! announcement (and changes the word, then wakes it: the reactor either finds the
//! value changed when it starts sleeping, or is woken) or made the condition true
//! before our re-check (and we do not sleep). `recheck` is the blocking forms' slice:
//! at its end the future is polled again, which re-checks the peer's liveness, so a
//! peer's death gives `Disconnected` / `OwnerDied` within the blocking forms' bound.
//!
//! # Cancel safety
//!
//! Nothing is taken before the future completes: a message is only consumed by the
//! try-call that completes it; a lock or unit is only taken by the try-call that
//! returns it. Dropping a pending future drops its registration (removed from the
//! reactor under its lock) and takes back its announcement (semaphore/event
//! `waiters`); a bell's `sleepers` count is left for the next sender to zero (it
//! costs that sender one `futex_wake`). Where a wake-one may have been spent on the
//! dropped future (mutex, semaphore, auto-reset event), the drop passes it on.
//!
//! # The WaitSet
//!
//! [`WaitSet::wait`] announces and arms every member, then registers the ones not
//! ready with the same reactor and parks the calling thread until one is woken or
//! the timeout passes; it returns the indices of the ready members. It is
//! level-triggered and consumes nothing: call the member's `try_*` afterwards. 1 000
//! members cost 8 reactor threads on Linux, not 1 000.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::shim::AtomicU32;
use crate::sys::wait::reactor::{self, Registration};

/// A waiter's pre-sleep state: the word to sleep on and its value, when to look
/// again, and how to take back the announcement.
#[derive(Debug)]
pub struct Sleep<'a> {
    pub(crate) word: &'a AtomicU32,
    pub(crate) expected: u32,
    pub(crate) recheck: Duration,
    pub(crate) undo: Undo<'a>,
}

/// How to take back an announcement.
#[derive(Debug, Clone, Copy)]
pub enum Undo<'a> {
    /// Nothing to take back (a bit the waker clears, e.g. CONTENDED).
    Nothing,
    /// A bell's `sleepers`: decrement unless a ringer already zeroed it (it did if
    /// the word moved).
    Bell(&'a AtomicU32),
    /// A `waiters` count: always decrement.
    Waiters(&'a AtomicU32),
}

impl Sleep<'_> {
    /// Takes back the announcement.
    pub(crate) fn undo(&self) {
        undo(self.undo, self.word, self.expected);
    }
}

pub(crate) fn undo(undo: Undo<'_>, word: &AtomicU32, expected: u32) {
    match undo {
        Undo::Nothing => {}
        Undo::Bell(s) => {
            if word.load(Ordering::Relaxed) == expected {
                let _ = s.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
            }
        }
        Undo::Waiters(w) => {
            let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }
}

/// The result of arming.
#[derive(Debug)]
pub enum Arm<'a> {
    /// Ready now (the announcement is already taken back).
    Ready,
    /// Not ready: sleep on this.
    Sleep(Sleep<'a>),
}

pub(crate) mod sealed {
    /// The wait protocol of one waitable kind (see the module doc).
    pub trait Sealed {
        /// Announces an intent to sleep (the sleeper's half of the protocol).
        /// Returns whether a heavy barrier must follow before arming.
        fn announce(&mut self) -> bool;
        /// Reads the word, re-checks readiness (consuming nothing), and says whether
        /// to sleep. May run the costly peer-liveness check when due.
        fn arm(&mut self) -> super::Arm<'_>;
    }
}

/// Something a [`WaitSet`] can wait on: channel receivers and sync objects.
///
/// Sealed: implemented by the library's types only.
pub trait Waitable: sealed::Sealed {}

impl<T: sealed::Sealed + ?Sized> Waitable for T {}

/// Announce, one heavy barrier if needed, arm.
pub(crate) fn announce_and_arm<W: sealed::Sealed + ?Sized>(w: &mut W) -> Arm<'_> {
    if w.announce() {
        crate::sys::wait::heavy_barrier_checked();
    }
    w.arm()
}

/// One-shot registration state kept in a future between polls.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    reg: Option<Registration>,
}

impl Pending {
    /// Registers `s` for `cx`'s waker (replacing an earlier registration).
    pub(crate) fn register(&mut self, s: &Sleep<'_>, cx: &Context<'_>) {
        self.reg = None;
        self.reg = Some(reactor::register(
            s.word,
            s.expected,
            Instant::now() + s.recheck,
            cx.waker(),
        ));
    }

    /// Drops the registration (the future completed or is polled again).
    pub(crate) fn clear(&mut self) {
        self.reg = None;
    }
}

/// The state of a sync object's wait future between polls: its registration and
/// announcement, taken back when it completes or is dropped; a drop while asleep
/// passes a possibly spent wake-one on to the next sleeper.
#[derive(Debug, Default)]
pub(crate) struct SyncWait<'a> {
    pending: Pending,
    sleep: Option<Sleep<'a>>,
}

impl<'a> SyncWait<'a> {
    /// Goes to sleep on `s` (registered for `cx`).
    pub(crate) fn sleep(&mut self, s: Sleep<'a>, cx: &Context<'_>) {
        self.settle();
        self.pending.register(&s, cx);
        self.sleep = Some(s);
    }

    /// Drops the registration and takes back the announcement.
    pub(crate) fn settle(&mut self) {
        self.pending.clear();
        if let Some(s) = self.sleep.take() {
            s.undo();
        }
    }
}

impl Drop for SyncWait<'_> {
    fn drop(&mut self) {
        self.pending.clear();
        if let Some(s) = self.sleep.take() {
            s.undo();
            // We may have been the one a wake-one chose: pass it on.
            crate::sys::wait::wake(s.word, 1);
        }
    }
}

/// A word nobody changes: what waits without a shared word (Windows kernel objects)
/// sleep on, so that the reactor re-polls them every `recheck`.
pub(crate) static NEVER: AtomicU32 = AtomicU32::new(0);

/// Blocks one thread on many channels and sync objects at once.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use shmipc::channel::pubsub;
/// use shmipc::WaitSet;
///
/// let mut a = pubsub::Subscriber::open("topic-a")?;
/// let mut b = pubsub::Subscriber::open("topic-b")?;
/// let mut set = WaitSet::new();
/// let ready = set.wait(&mut [&mut a, &mut b], Some(Duration::from_secs(1)));
/// println!("ready: {ready:?}"); // e.g. [1]: b has a message; call b.try_recv()
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct WaitSet {
    ready: Vec<usize>,
}

/// Unparks the waiting thread.
struct Unpark {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl WaitSet {
    /// An empty set (it holds only reusable buffers; the members are passed to each
    /// [`wait`](Self::wait)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks until at least one of `members` is ready (a channel has a message or
    /// its peer is gone, a semaphore has a unit, an event is set, a mutex is free or
    /// its owner died), or `timeout` passes (`None`: for ever). Returns the indices
    /// of the ready members, in order; empty on timeout.
    ///
    /// Consumes nothing (level-triggered): receive or take with the member's `try_*`
    /// afterwards; another thread or process may have taken it first, so expect
    /// `Empty`/`WouldBlock` sometimes.
    pub fn wait(
        &mut self,
        members: &mut [&mut dyn Waitable],
        timeout: Option<Duration>,
    ) -> &[usize] {
        let deadline = timeout.map_or(Deadline::Never, Deadline::after);
        loop {
            self.ready.clear();
            let mut heavy = false;
            for m in members.iter_mut() {
                heavy |= m.announce();
            }
            if heavy {
                crate::sys::wait::heavy_barrier_checked();
            }
            let unpark = Arc::new(Unpark {
                thread: std::thread::current(),
                woken: AtomicBool::new(false),
            });
            let waker = Waker::from(Arc::clone(&unpark));
            let mut sleeps = Vec::with_capacity(members.len());
            for (i, m) in members.iter_mut().enumerate() {
                match m.arm() {
                    Arm::Ready => self.ready.push(i),
                    Arm::Sleep(s) => sleeps.push(s),
                }
            }
            if !self.ready.is_empty() || deadline.passed() {
                for s in &sleeps {
                    s.undo();
                }
                return &self.ready;
            }
            let now = Instant::now();
            let regs: Vec<Registration> = sleeps
                .iter()
                .map(|s| reactor::register(s.word, s.expected, now + s.recheck, &waker))
                .collect();
            while !unpark.woken.load(Ordering::Acquire) {
                match deadline.left() {
                    None => std::thread::park(),
                    Some(left) if left.is_zero() => break,
                    Some(left) => std::thread::park_timeout(left),
                }
            }
            drop(regs);
            for s in &sleeps {
                s.undo();
            }
        }
    }
}
