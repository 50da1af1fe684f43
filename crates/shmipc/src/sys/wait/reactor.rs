//! The reactor: one mechanism per process that turns "this shared word changed" into
//! [`Waker::wake`], for every async wait and every [`WaitSet`](crate::WaitSet) of the
//! process.
//!
//! # Why a reactor thread on `futex_waitv`
//!
//! Every blocking wait in shmipc sleeps on a 32-bit word in shared memory (a bell's
//! `seq`, a mutex's `seq`, a semaphore's count, an event's state) and the other side
//! wakes it with `futex_wake` (see [`super`]). An async form must be woken by the
//! *same* wake, or every sender would need to know about every kind of waiter. The
//! choices were:
//!
//! * an eventfd per channel registered with the executor: the sender would have to
//!   write every receiver's eventfd (file descriptors do not live in shared memory:
//!   each would need `pidfd_getfd` or a socket to pass it), a second protocol beside
//!   the futex; and the library would need to know the executor (tokio's `AsyncFd`),
//!   which the brief keeps out of its dependencies;
//! * a thread per waiting future, blocked in `futex_wait`: 1 000 waits, 1 000 threads;
//! * **one thread per 127 waits, blocked in `futex_waitv(2)`** (Linux 5.16+: sleep on
//!   up to 128 futexes at once, wake on any): the senders do not change at all, the
//!   library stays runtime-free (plain [`Waker`]s), and 1 000 waits cost 8 threads.
//!
//! We take the third. A group holds up to [`GROUP`] registrations and one thread; the
//! 128th word of its `futex_waitv` call is a process-private *control word* that a new
//! registration bumps (and wakes, if the thread sleeps) so that the thread re-reads
//! its list. Groups are created on demand and their threads live as long as the
//! process (an idle one sleeps on its control word alone). A forked child, which
//! inherits the list but not the threads, starts a list of its own.
//!
//! # No lost wake-up
//!
//! A registration is one-shot: `(word, expected, recheck, waker)`. The registrant has
//! already done its half of the word's protocol (e.g. a bell's `sleepers += 1` and the
//! heavy barrier, then read `seq` as `expected`, then re-checked its condition and
//! found it false). Then:
//!
//! * if the word changes before the reactor's `futex_waitv` starts, the kernel
//!   compares `expected` with the word at entry and returns `EAGAIN`; the reactor then
//!   wakes every waker of that call (it cannot tell which word moved without reading
//!   it, see below);
//! * if it changes after, the sender's `futex_wake` (which follows its change, by each
//!   protocol) wakes the call, which returns the index of the woken word; the reactor
//!   wakes that waker.
//! * A registration made while the thread already sleeps bumps the control word, whose
//!   own `expected` was read under the group lock before the registration could be
//!   added: the call returns at once and the reactor rebuilds its list.
//!
//! So a waker is woken at the latest when its word's wake is sent, or at `recheck`
//! (the end of the waiter's slice, when it re-checks its peer's liveness, as the
//! blocking forms do), whichever is first. A woken future always re-checks its
//! condition and re-registers if still not ready: spurious wakes cost a poll.
//!
//! # Soundness: the reactor never reads the words
//!
//! Registrations hold the address of a word in somebody's mapping. A dropped
//! [`Registration`] is removed under the group lock, but a *leaked* one
//! (`mem::forget` of a future, which safe code may do) is not, and its mapping may be
//! gone. So the reactor never dereferences those addresses: only the kernel reads them,
//! in `futex_waitv`, where a bad address is an `EFAULT` (then every waker of the call
//! is woken, which also drops the stale one-shot entry), never a fault in this process.
//!
//! # Elsewhere
//!
//! Windows: a word in a named segment has a *doorbell* (a named semaphore and a shared
//! count of its sleepers, see `windows.rs`). [`register`] runs the sleeper's half of
//! the doorbell protocol in the registering thread (count, then re-read the word: if
//! it moved, the waker is woken at once), and a group is one thread blocked in
//! `WaitForMultipleObjects` on the distinct doorbells of its up to 63 registrations
//! and its control event (64 handles, the call's limit). A signalled doorbell gave the
//! thread one unit: it wakes that doorbell's registrations (the others of them take
//! their counts back, or absorb the units a waker released for them); a unit taken
//! for nobody (its registration was dropped meanwhile) is put back. So a pending
//! future or a WaitSet sleeps in the kernel, and an idle registration costs nothing.
//! Words without a doorbell (in unnamed segments; the named kernel objects, which
//! have no word) are re-polled every [`POLL`] (1 ms).
//!
//! Without `futex_waitv` or doorbells (macOS, other Unixes, Linux older than 5.16
//! where the call returns `ENOSYS`) the reactor falls back to *polling*: each group's
//! thread wakes every registered waker every [`POLL`] (1 ms) and the futures
//! re-check. It is correct (every waiter re-checks) and bounded (a wake-up is at most
//! 1 ms late), but it costs a poll per waiter per millisecond.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::shim::AtomicU32;

/// Registrations per group (one `futex_waitv` call takes 128 words, one
/// `WaitForMultipleObjects` 64 handles; the last is the group's control word or
/// event).
pub(crate) const GROUP: usize = if cfg!(windows) { 63 } else { 127 };

/// The fallback's poll period (see the module doc).
pub(crate) const POLL: Duration = Duration::from_millis(1);

/// A registered wait, removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    /// `None`: fired at once (the word had moved).
    group: Option<Arc<Group>>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(group) = &self.group else { return };
        let mut st = group.lock();
        if let Some(i) = st.entries.iter().position(|e| e.key == self.key) {
            let _e = st.entries.swap_remove(i);
            #[cfg(windows)]
            if let Some((bell, token)) = &_e.bell {
                leave(bell, *token);
            }
        }
        // No need to wake the thread: a stale word in its current call costs nothing
        // (see the module doc), and it rebuilds its list at its next return.
    }
}

/// A doorbell registration that ends without its unit: take the count back, or
/// absorb the unit a waker released (or will release) for it.
#[cfg(windows)]
fn leave(bell: &super::imp::Doorbell, token: u32) {
    if !bell.take_back(token) {
        bell.absorb();
    }
}

/// Registers a one-shot wait: `waker` is woken once `word` may no longer hold
/// `expected` (a `futex_wake` on it, or its value differing when the reactor starts
/// sleeping), or at `recheck`, whichever is first. The caller must already have done
/// its half of the word's wake-up protocol (module doc).
pub(crate) fn register(
    word: &AtomicU32,
    expected: u32,
    recheck: Instant,
    waker: &Waker,
) -> Registration {
    #[cfg(windows)]
    let (bell, recheck) = match super::imp::arm(word, expected) {
        super::imp::Armed::Changed => {
            waker.wake_by_ref();
            return Registration {
                group: None,
                key: 0,
            };
        }
        super::imp::Armed::Bell(b, token) => (Some((b, token)), recheck),
        super::imp::Armed::NoBell => (None, recheck.min(Instant::now() + POLL)),
    };
    let entry = move |key| Entry {
        key,
        addr: std::ptr::from_ref(word) as usize,
        expected,
        recheck,
        waker: waker.clone(),
        #[cfg(windows)]
        bell,
    };
    let groups = groups();
    let mut guard = groups
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A forked child inherits the list but not the threads: start afresh.
    let pid = std::process::id();
    if guard.0 != pid {
        *guard = (pid, Vec::new());
    }
    let all = &mut guard.1;
    for g in all.iter() {
        let mut st = g.lock();
        if st.entries.len() < GROUP {
            let key = st.next_key;
            st.next_key += 1;
            st.entries.push(entry(key));
            g.poke(&mut st);
            return Registration {
                group: Some(Arc::clone(g)),
                key,
            };
        }
    }
    let g = Group::spawn();
    let key = {
        let mut st = g.lock();
        let key = st.next_key;
        st.next_key += 1;
        st.entries.push(entry(key));
        g.poke(&mut st);
        key
    };
    all.push(Arc::clone(&g));
    Registration {
        group: Some(g),
        key,
    }
}

/// How many reactor threads run now (for tests and docs).
#[allow(dead_code)]
pub(crate) fn threads() -> usize {
    groups()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .1
        .len()
}

/// How many registrations wait on a doorbell now (Windows; for tests).
#[cfg(all(test, windows))]
pub(crate) fn doorbell_entries() -> usize {
    groups()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .1
        .iter()
        .map(|g| g.lock().entries.iter().filter(|e| e.bell.is_some()).count())
        .sum()
}

/// The groups, with the id of the process whose threads serve them.
fn groups() -> &'static Mutex<(u32, Vec<Arc<Group>>)> {
    static GROUPS: OnceLock<Mutex<(u32, Vec<Arc<Group>>)>> = OnceLock::new();
    GROUPS.get_or_init(|| Mutex::new((std::process::id(), Vec::new())))
}

/// Set once `futex_waitv` is found missing: every group polls from then on.
static POLLING: AtomicBool = AtomicBool::new(!cfg!(any(target_os = "linux", windows)));

#[derive(Debug)]
struct Entry {
    key: u64,
    /// The word's address: handed to the kernel, never dereferenced here.
    addr: usize,
    expected: u32,
    recheck: Instant,
    waker: Waker,
    /// Windows: the word's doorbell and this sleeper's token (`None`: polled).
    #[cfg(windows)]
    bell: Option<(Arc<super::imp::Doorbell>, u32)>,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    next_key: u64,
    /// The thread is in (or about to enter) its wait and must be poked for a new entry.
    sleeping: bool,
}

#[derive(Debug)]
struct Group {
    state: Mutex<State>,
    /// Process-private control word: bumped by every registration.
    ctl: AtomicU32,
    /// Windows: the control event (auto-reset), set by a registration while the
    /// thread sleeps; `None` if it could not be made (the group polls).
    #[cfg(windows)]
    ctl_event: Option<crate::sys::kobj::Kobj>,
}

impl Group {
    fn spawn() -> Arc<Self> {
        let g = Arc::new(Self {
            state: Mutex::new(State::default()),
            ctl: AtomicU32::new(0),
            #[cfg(windows)]
            ctl_event: crate::sys::kobj::Kobj::create(
                None,
                crate::sys::kobj::New::Event {
                    manual: false,
                    set: false,
                },
                None,
                false,
            )
            .ok()
            .map(|(k, _)| k),
        });
        let g2 = Arc::clone(&g);
        // A thread that cannot be spawned leaves its registrations to their
        // `recheck`... which nobody would fire: treat it as fatal, as std does for
        // its own helper threads.
        std::thread::Builder::new()
            .name("shmipc-reactor".into())
            .spawn(move || g2.run())
            .expect("shmipc: cannot spawn the reactor thread for async waits");
        g
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells the thread its list changed (under the lock).
    fn poke(&self, st: &mut State) {
        self.ctl.fetch_add(1, Ordering::Release);
        if st.sleeping {
            st.sleeping = false;
            #[cfg(windows)]
            if let Some(e) = &self.ctl_event {
                e.set_event();
            }
            #[cfg(not(windows))]
            super::imp::wake_private(&self.ctl);
        }
    }

    fn run(&self) {
        #[cfg(windows)]
        if let Some(ctl) = &self.ctl_event {
            self.run_doorbells(ctl);
        }
        let mut words: Vec<(usize, u32)> = Vec::with_capacity(GROUP);
        let mut keys: Vec<u64> = Vec::with_capacity(GROUP);
        let mut fire: Vec<Waker> = Vec::new();
        loop {
            let (ctl_seen, until) = {
                let mut st = self.lock();
                let now = Instant::now();
                let polling = POLLING.load(Ordering::Relaxed);
                // Fire every entry whose recheck is due (all of them when polling).
                let mut i = 0;
                while i < st.entries.len() {
                    if polling || st.entries[i].recheck <= now {
                        fire.push(st.entries.swap_remove(i).waker);
                    } else {
                        i += 1;
                    }
                }
                words.clear();
                keys.clear();
                let mut until: Option<Instant> = None;
                for e in &st.entries {
                    words.push((e.addr, e.expected));
                    keys.push(e.key);
                    until = Some(until.map_or(e.recheck, |u| u.min(e.recheck)));
                }
                st.sleeping = true;
                (self.ctl.load(Ordering::Acquire), until)
            };
            for w in fire.drain(..) {
                w.wake();
            }
            if POLLING.load(Ordering::Relaxed) {
                let nap = until.map_or(POLL, |u| {
                    u.saturating_duration_since(Instant::now()).min(POLL)
                });
                std::thread::sleep(nap);
                continue;
            }
            match super::imp::wait_many(&self.ctl, ctl_seen, &words, until) {
                Many::Control | Many::TimedOut => {}
                Many::Woken(i) => self.fire(&keys[i..=i]),
                Many::Some => {
                    if self.ctl.load(Ordering::Acquire) == ctl_seen {
                        self.fire(&keys);
                    }
                }
                Many::Unsupported => {
                    POLLING.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// Windows: the group's loop on its doorbells and control event (module doc).
    #[cfg(windows)]
    fn run_doorbells(&self, ctl: &crate::sys::kobj::Kobj) -> ! {
        use crate::deadline::Deadline;
        use crate::sys::kobj::{wait_any, WaitFail};
        let mut bells: Vec<Arc<super::imp::Doorbell>> = Vec::with_capacity(GROUP);
        let mut fire: Vec<Waker> = Vec::new();
        loop {
            let until = {
                let mut st = self.lock();
                let now = Instant::now();
                let mut i = 0;
                while i < st.entries.len() {
                    if st.entries[i].recheck <= now {
                        let e = st.entries.swap_remove(i);
                        if let Some((bell, token)) = &e.bell {
                            leave(bell, *token);
                        }
                        fire.push(e.waker);
                    } else {
                        i += 1;
                    }
                }
                bells.clear();
                let mut until: Option<Instant> = None;
                for e in &st.entries {
                    if let Some((b, _)) = &e.bell {
                        if !bells.iter().any(|x| Arc::ptr_eq(x, b)) {
                            bells.push(Arc::clone(b));
                        }
                    }
                    until = Some(until.map_or(e.recheck, |u| u.min(e.recheck)));
                }
                st.sleeping = true;
                until
            };
            for w in fire.drain(..) {
                w.wake();
            }
            let mut objs = Vec::with_capacity(bells.len() + 1);
            objs.push(ctl);
            objs.extend(bells.iter().map(|b| b.kobj()));
            let deadline = until.map_or(Deadline::Never, Deadline::At);
            match wait_any(&objs, deadline) {
                Ok((0, _)) | Err(WaitFail::TimedOut) => {}
                Ok((i, _)) => self.fire_bell(&bells[i - 1]),
                Err(WaitFail::Os(_)) => {
                    // Never spin on a failing wait: a poll's worth, then every
                    // entry re-checks.
                    std::thread::sleep(POLL);
                    let mut st = self.lock();
                    st.sleeping = false;
                    for e in st.entries.drain(..) {
                        if let Some((bell, token)) = &e.bell {
                            leave(bell, *token);
                        }
                        fire.push(e.waker);
                    }
                }
            }
        }
    }

    /// Windows: `bell` gave this thread one unit: it is the first of its entries'
    /// (woken); the others are woken too and leave (module doc). A unit taken for
    /// no entry goes back.
    #[cfg(windows)]
    fn fire_bell(&self, bell: &Arc<super::imp::Doorbell>) {
        let mut wakers = Vec::new();
        {
            let mut st = self.lock();
            st.sleeping = false;
            let mut first = true;
            let mut i = 0;
            while i < st.entries.len() {
                let mine = st.entries[i]
                    .bell
                    .as_ref()
                    .is_some_and(|(b, _)| Arc::ptr_eq(b, bell));
                if mine {
                    let e = st.entries.swap_remove(i);
                    if !first {
                        if let Some((b, token)) = &e.bell {
                            leave(b, *token);
                        }
                    }
                    first = false;
                    wakers.push(e.waker);
                } else {
                    i += 1;
                }
            }
            if first {
                bell.give_back();
            }
        }
        for w in wakers {
            w.wake();
        }
    }

    /// Wakes (and removes) the entries with these keys that are still registered.
    fn fire(&self, keys: &[u64]) {
        let mut wakers = Vec::new();
        {
            let mut st = self.lock();
            st.sleeping = false;
            let mut i = 0;
            while i < st.entries.len() {
                if keys.contains(&st.entries[i].key) {
                    wakers.push(st.entries.swap_remove(i).waker);
                } else {
                    i += 1;
                }
            }
        }
        for w in wakers {
            w.wake();
        }
    }
}

/// What ended a `wait_many`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // each OS uses some
pub(crate) enum Many {
    /// The control word was woken (or changed).
    Control,
    /// The word at this index was woken.
    Woken(usize),
    /// Some word (unknown which: a value mismatch at entry, a bad address, a signal)
    /// may have changed.
    Some,
    /// The deadline passed.
    TimedOut,
    /// This OS (or kernel) has no wait on many words: poll.
    Unsupported,
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// More waits than one group holds: every one is woken by its own word's wake,
    /// long before its recheck.
    #[test]
    fn wakes_every_waiter_across_groups() {
        const N: usize = 3 * GROUP + 5;
        let words: Vec<AtomicU32> = (0..N).map(|_| AtomicU32::new(0)).collect();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let far = Instant::now() + Duration::from_secs(3600);
        let regs: Vec<Registration> = words.iter().map(|w| register(w, 0, far, &waker)).collect();
        // One reactor thread per group where the kernel waits on many words (Linux);
        // elsewhere the fallback polls without group threads.
        if cfg!(target_os = "linux") {
            assert!(threads() >= N.div_ceil(GROUP));
        }
        for w in &words {
            w.store(1, Ordering::Release);
            super::super::wake_all(w);
        }
        wait_for("every waker", || count.0.load(Ordering::SeqCst) >= N);
        drop(regs);
    }

    /// Windows: a pending receive on a channel (a named segment) waits on its word's
    /// doorbell, not by polling, and the send's wake-up reaches it.
    #[cfg(windows)]
    #[test]
    fn a_pending_receive_waits_on_the_doorbell() {
        use crate::channel::spsc::{Consumer, Producer};
        use std::future::Future;
        let name = format!("reactor-bell-{}", std::process::id());
        let mut c = Consumer::create(&name, 2, 8).unwrap();
        let mut p = Producer::open(&name).unwrap();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = std::task::Context::from_waker(&waker);
        {
            let mut f = std::pin::pin!(c.recv_async());
            assert!(f.as_mut().poll(&mut cx).is_pending());
            // (Other tests of this binary may wait on doorbells too: at least ours.)
            assert!(
                doorbell_entries() >= 1,
                "the receive does not wait on a doorbell"
            );
            p.send(b"hi").unwrap();
            wait_for("the receive's wake-up", || {
                count.0.load(Ordering::SeqCst) >= 1
            });
            let got = match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(r) => r.map(|s| s.to_vec()),
                std::task::Poll::Pending => panic!("not ready after its wake-up"),
            };
            assert_eq!(got.unwrap(), b"hi");
        }
    }

    /// A dropped registration is not woken; a recheck fires by itself.
    #[test]
    fn drop_deregisters_and_recheck_fires() {
        let word = AtomicU32::new(0);
        let far = Instant::now() + Duration::from_secs(3600);
        let dropped = Arc::new(Count(AtomicUsize::new(0)));
        let reg = register(&word, 0, far, &Waker::from(Arc::clone(&dropped)));
        drop(reg);
        word.store(1, Ordering::Release);
        super::super::wake_all(&word);
        // A second waiter whose recheck fires on its own; the reactor has passed
        // the first one's change by then.
        let timed = Arc::new(Count(AtomicUsize::new(0)));
        let other = AtomicU32::new(0);
        let _reg2 = register(
            &other,
            0,
            Instant::now() + Duration::from_millis(5),
            &Waker::from(Arc::clone(&timed)),
        );
        wait_for("the recheck", || timed.0.load(Ordering::SeqCst) == 1);
        assert_eq!(
            dropped.0.load(Ordering::SeqCst),
            0,
            "a dropped waiter was woken"
        );
    }
}
