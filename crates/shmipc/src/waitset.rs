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
//!    Linux; per 63 waits in `WaitForMultipleObjects` on the words' doorbells on
//!    Windows) and return `Pending`.
//!
//! No lost wake-up: the announcement comes before the value is read and the condition
//! re-checked, exactly as in the blocking forms, so a waker either sees the
//! announcement (and changes the word, then wakes it: the reactor either finds the
//! value changed when it starts sleeping, or is woken) or made the condition true
//! before our re-check (and we do not sleep). `recheck` is the blocking forms' slice:
//! at its end the future is polled again, which re-checks the peer's liveness, so a
//! peer's death gives `Disconnected` / `OwnerDied` within the blocking forms' bound.
//! A channel future polled again keeps the bell announcement it made, while no
//! ringer has taken it (`channel/notify.rs`): step 2 is then only the re-check, with
//! no new count and no heavy barrier.
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
//! ready with the same reactor, each with a waker of its own, and parks the calling
//! thread until one is woken or the timeout passes; it returns the indices of the
//! ready members. Only the members whose registration fired are announced, armed
//! and registered again; the others keep their announcement and registration, and
//! at the end of their slice (their peer's liveness is due) the set re-arms them in
//! place on its own timer, without a new registration or heavy barrier. So an idle
//! member costs one arm per slice and nothing in the reactor. It is level-triggered
//! and consumes nothing: call the member's `try_*` afterwards. 1 000 members cost 8
//! reactor threads on Linux, not 1 000.
//!
//! A bell's announcement carries a token (the bell's epoch, `channel/notify.rs`),
//! so that one sleeper taking its announcement back never takes another's.

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
    /// A bell's `sleepers` and the epoch the count was added in: decrement unless
    /// a ringer zeroed the count since (`channel/notify.rs`).
    Bell(&'a AtomicU32, u32),
    /// A `waiters` count: always decrement.
    Waiters(&'a AtomicU32),
}

impl Sleep<'_> {
    /// Takes back the announcement.
    pub(crate) fn undo(&self) {
        undo(self.undo);
    }
}

pub(crate) fn undo(undo: Undo<'_>) {
    match undo {
        Undo::Nothing => {}
        Undo::Bell(s, epoch) => take_back(s, epoch),
        Undo::Waiters(w) => {
            let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }
}

/// The count bits of a bell's `sleepers` (the rest is the epoch; see `channel/notify.rs`).
pub(crate) const COUNT: u32 = 0xffff;
/// One epoch step in a bell's `sleepers`.
pub(crate) const EPOCH: u32 = COUNT + 1;

/// `sleepers` with its count zeroed and its epoch bumped.
#[inline]
pub(crate) fn next_epoch(v: u32) -> u32 {
    (v & !COUNT).wrapping_add(EPOCH)
}

/// Takes back one count announced in `epoch`, unless a ringer zeroed it since.
pub(crate) fn take_back(sleepers: &AtomicU32, epoch: u32) {
    let _ = sleepers.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        (v / EPOCH == epoch && v & COUNT != 0).then(|| v - 1)
    });
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
        /// Returns whether a heavy barrier must follow before arming, and a token
        /// for [`Sealed::arm`] (a bell's epoch; 0 where unused).
        fn announce(&mut self) -> (bool, u32);
        /// Reads the word, re-checks readiness (consuming nothing), and says whether
        /// to sleep. May run the costly peer-liveness check when due.
        fn arm(&mut self, token: u32) -> super::Arm<'_>;
        /// Takes back the announcement of an arm that said `Sleep` (an arm that
        /// said `Ready` took it back itself).
        fn disarm(&mut self, token: u32);
    }
}

/// Something a [`WaitSet`] can wait on: channel receivers and sync objects.
///
/// Sealed: implemented by the library's types only.
pub trait Waitable: sealed::Sealed {}

impl<T: sealed::Sealed + ?Sized> Waitable for T {}

/// One-shot registration state kept in a future between polls, and the bell
/// announcement it sleeps under (`Bell::poll_async` in `channel/notify.rs`).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    reg: Option<Registration>,
    pub(crate) held: Option<Held>,
}

/// A bell announcement a future made and has not taken back: which bell (the
/// address of its `sleepers` word, only compared), the token, the bell's `seq` as
/// read after the count, and whether the heavy barrier backs it (where there is
/// one; only then may it stand).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) bell: usize,
    pub(crate) token: u32,
    pub(crate) seen: u32,
    pub(crate) backed: bool,
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

    /// Drops the registration (the future completed or is polled again); a held
    /// announcement stays (the next poll decides whether it still stands).
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

/// What the members' wakers share with the waiting thread.
struct Shared {
    thread: Thread,
    /// Indices of the members whose registration fired, not yet looked at.
    fired: std::sync::Mutex<Vec<usize>>,
    any: AtomicBool,
}

/// One member's waker: records which member fired and unparks the waiting thread.
struct MemberWake {
    idx: usize,
    shared: Arc<Shared>,
}

impl Wake for MemberWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.shared
            .fired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(self.idx);
        self.shared.any.store(true, Ordering::Release);
        self.shared.thread.unpark();
    }
}

/// A sleeping member: its registration, what it sleeps on, its announcement's
/// token, and when to look at it again.
struct Slot {
    reg: Registration,
    addr: usize,
    expected: u32,
    token: u32,
    recheck_at: Instant,
}

/// How far ahead a WaitSet registration's reactor timer is set: the set runs the
/// members' rechecks itself, on one timer (see [`WaitSet::wait`]).
const FAR: Duration = Duration::from_secs(24 * 3600);

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
    ///
    /// Cost while it sleeps: every member is announced, armed and registered once;
    /// after that only the members whose word was woken are armed again. At the end
    /// of each member's slice (10 ms for channels, where the peer's liveness is
    /// due) the set re-checks it in place, without a new announcement, heavy
    /// barrier or registration, all on one timer of the calling thread.
    pub fn wait(
        &mut self,
        members: &mut [&mut dyn Waitable],
        timeout: Option<Duration>,
    ) -> &[usize] {
        let deadline = timeout.map_or(Deadline::Never, Deadline::after);
        self.ready.clear();
        let shared = Arc::new(Shared {
            thread: std::thread::current(),
            fired: std::sync::Mutex::new(Vec::new()),
            any: AtomicBool::new(false),
        });
        let wakers: Vec<Waker> = (0..members.len())
            .map(|idx| {
                Waker::from(Arc::new(MemberWake {
                    idx,
                    shared: Arc::clone(&shared),
                }))
            })
            .collect();
        let mut slots: Vec<Option<Slot>> = members.iter().map(|_| None).collect();
        // Members to announce and arm afresh: all of them first, then the fired.
        let mut todo: Vec<usize> = (0..members.len()).collect();
        let mut tokens: Vec<u32> = Vec::with_capacity(members.len());
        loop {
            tokens.clear();
            let mut heavy = false;
            for &i in &todo {
                if let Some(s) = slots[i].take() {
                    drop(s.reg);
                    members[i].disarm(s.token);
                }
                let (h, t) = members[i].announce();
                heavy |= h;
                tokens.push(t);
            }
            if heavy {
                crate::sys::wait::heavy_barrier_checked();
            }
            let now = Instant::now();
            for (&i, &token) in todo.iter().zip(&tokens) {
                match members[i].arm(token) {
                    Arm::Ready => self.ready.push(i),
                    Arm::Sleep(s) => {
                        let reg = reactor::register(s.word, s.expected, now + FAR, &wakers[i]);
                        slots[i] = Some(Slot {
                            reg,
                            addr: std::ptr::from_ref(s.word) as usize,
                            expected: s.expected,
                            token,
                            recheck_at: now + s.recheck,
                        });
                    }
                }
            }
            todo.clear();
            if !self.ready.is_empty() || deadline.passed() {
                break;
            }
            // Sleep until a member fires, the first recheck, or the deadline.
            let next = slots.iter().flatten().map(|s| s.recheck_at).min();
            while !shared.any.swap(false, Ordering::AcqRel) {
                let now = Instant::now();
                let left = match (deadline.left(), next) {
                    (None, None) => None,
                    (Some(d), None) => Some(d),
                    (d, Some(n)) => {
                        let n = n.saturating_duration_since(now);
                        Some(d.map_or(n, |d| d.min(n)))
                    }
                };
                match left {
                    None => std::thread::park(),
                    Some(left) if left.is_zero() => break,
                    Some(left) => std::thread::park_timeout(left),
                }
            }
            todo.append(
                &mut shared
                    .fired
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            todo.sort_unstable();
            todo.dedup();
            todo.retain(|&i| slots[i].is_some());
            let mut queued = vec![false; slots.len()];
            for &i in &todo {
                queued[i] = true;
            }
            // Rechecks due: arm again in place (the announcement stands).
            let now = Instant::now();
            for (i, slot) in slots.iter_mut().enumerate() {
                let Some(s) = slot else { continue };
                if s.recheck_at > now || queued[i] {
                    continue;
                }
                match members[i].arm(s.token) {
                    // The arm took the announcement back.
                    Arm::Ready => {
                        *slot = None;
                        self.ready.push(i);
                    }
                    Arm::Sleep(n) => {
                        if std::ptr::from_ref(n.word) as usize == s.addr && n.expected == s.expected
                        {
                            s.recheck_at = now + n.recheck;
                        } else {
                            todo.push(i);
                        }
                    }
                }
            }
            if !self.ready.is_empty() {
                break;
            }
            if deadline.passed() && todo.is_empty() {
                break;
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(s) = slot.take() {
                drop(s.reg);
                members[i].disarm(s.token);
            }
        }
        self.ready.sort_unstable();
        &self.ready
    }
}
