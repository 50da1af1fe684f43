//! Cross-process tests of the synchronization objects. Children are this test binary
//! re-run with a role (`SHMIPC_SYNC_ROLE`); they report through their stdout (a line
//! per event) and their exit code. Nothing here sleeps: the parent blocks on pipes,
//! on `wait()`, or on the objects under test, always with a timeout.
//!
//! Runs on Linux and, under Wine, on Windows (`ci/windows.sh`), where `Child::kill`
//! is `TerminateProcess`, the named objects are kernel objects and the in-segment
//! ones poll (see `sync/windows.rs`).
#![cfg(all(any(target_os = "linux", windows), not(loom)))]

#[path = "common/spawn.rs"]
#[allow(dead_code)]
mod spawn;

use std::env;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmipc::sync::{
    Event, EventReset, LockError, LockTimeoutError, Mutex, NamedEvent, NamedMutex, NamedSemaphore,
    ObjectError, PostError, Semaphore, TryLockError, TryWaitError, WaitTimeoutError,
};
use shmipc::{Access, LayoutError, Segment};

const ROLE: &str = "SHMIPC_SYNC_ROLE";
const LONG: Duration = Duration::from_secs(30);

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-sync-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child running `role` with `args` in its environment, stdout piped.
fn spawn(role: &str, args: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env::current_exe().expect("test binary path"));
    cmd.args([
        "--exact",
        "child_role",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE, role)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(k, v);
    }
    spawn::spawn_retrying(&mut cmd, "a child")
}

/// Kills the children left when a test fails half-way.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads the child's lines until `marker` (panics at EOF: the child died first).
fn expect_line(out: &mut BufReader<ChildStdout>, marker: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("reading a child's stdout");
        assert!(n > 0, "child exited before printing {marker}");
        if line.trim() == marker {
            return;
        }
    }
}

fn say(marker: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{marker}").unwrap();
    out.flush().unwrap();
}

fn arg(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

fn num(name: &str) -> u64 {
    arg(name).parse().expect("numeric argument")
}

/// Layout of the test segment: a mutex, a u64 counter, then a start gate (children
/// ready, and the parent's go) so that the counting processes overlap.
const COUNTER: usize = Mutex::SIZE;
const READY: usize = COUNTER + 8;
const GO: usize = COUNTER + 12;

/// Polls `cond` (yielding) until it holds; false at the deadline.
fn poll_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + LONG;
    while !cond() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

fn take<'a>(
    r: Result<shmipc::sync::MutexGuard<'a>, LockError<'a>>,
) -> shmipc::sync::MutexGuard<'a> {
    match r {
        Ok(g) => g,
        Err(LockError::OwnerDied(g)) => {
            g.mark_consistent();
            g
        }
        Err(e) => panic!("lock: {e}"),
    }
}

/// The entry point of every child; a no-op in the parent's test run.
#[test]
fn child_role() {
    let Ok(role) = env::var(ROLE) else { return };
    let code = match role.as_str() {
        "count" => {
            let seg = Segment::open(&arg("SEG"), Access::ReadWrite).unwrap();
            let view = seg.map_all().unwrap();
            let m = Mutex::open_at(&view, 0).unwrap();
            view.atomic_u32(READY)
                .unwrap()
                .fetch_add(1, Ordering::SeqCst);
            let go = view.atomic_u32(GO).unwrap();
            assert!(poll_until(|| go.load(Ordering::SeqCst) != 0), "no go");
            for _ in 0..num("N") {
                let g = m.lock().expect("nobody dies in this test");
                // A plain read-modify-write: only the lock keeps it exact.
                let n: u64 = view.read_pod(COUNTER).unwrap();
                view.write_pod(COUNTER, &(n + 1)).unwrap();
                drop(g);
            }
            0
        }
        "die-inside" => {
            let seg = Segment::open(&arg("SEG"), Access::ReadWrite).unwrap();
            let view = seg.map_all().unwrap();
            let m = Mutex::open_at(&view, 0).unwrap();
            let _g = take(m.lock());
            let n: u64 = view.read_pod(COUNTER).unwrap();
            view.write_pod(COUNTER, &(n + 1)).unwrap();
            say("INSIDE");
            loop {
                std::thread::park(); // killed here, holding the lock
            }
        }
        "wait-lock" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            say("WAITING");
            let code = match m.lock_timeout(LONG) {
                Err(LockTimeoutError::OwnerDied(g)) => {
                    g.mark_consistent();
                    say("OWNER_DIED");
                    0
                }
                Ok(_) => 1,
                Err(LockTimeoutError::Timeout(_)) => 2,
                Err(e) => panic!("{e}"),
            };
            code
        }
        "hold-named" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            let _g = take(m.lock());
            say("INSIDE");
            loop {
                std::thread::park();
            }
        }
        "produce" => {
            let s = NamedSemaphore::open(&arg("NAME")).unwrap();
            for _ in 0..num("N") {
                s.post().unwrap();
            }
            0
        }
        "consume" => {
            let s = NamedSemaphore::open(&arg("NAME")).unwrap();
            for _ in 0..num("N") {
                if s.wait_timeout(LONG).is_err() {
                    std::process::exit(2);
                }
            }
            0
        }
        "event-wait" => {
            let ev = NamedEvent::open(&arg("NAME")).unwrap();
            let woken = NamedSemaphore::open(&arg("WOKEN")).unwrap();
            say("READY");
            match ev.wait_timeout(LONG) {
                Ok(()) => {
                    woken.post().unwrap();
                    0
                }
                Err(_) => 2,
            }
        }
        other => panic!("unknown role {other}"),
    };
    std::process::exit(code);
}

fn counter_segment(tag: &str) -> (Segment, String) {
    let name = unique(tag);
    let seg = Segment::create(&name, 4096).unwrap();
    {
        let view = seg.map_all().unwrap();
        Mutex::init_at(&view, 0).unwrap();
        view.fill(COUNTER, 16, 0).unwrap();
    }
    (seg, name)
}

#[test]
fn four_processes_count_exactly_under_one_mutex() {
    const PROCS: u64 = 4;
    const N: u64 = 100_000;
    let (seg, name) = counter_segment("count");
    let n = N.to_string();
    let mut kids = Reaper(
        (0..PROCS)
            .map(|_| spawn("count", &[("SEG", &name), ("N", &n)]))
            .collect(),
    );
    let view = seg.map_all().unwrap();
    let ready = view.atomic_u32(READY).unwrap();
    assert!(poll_until(|| ready.load(Ordering::SeqCst) == PROCS as u32));
    view.atomic_u32(GO).unwrap().store(1, Ordering::SeqCst);
    for c in &mut kids.0 {
        assert!(c.wait().unwrap().success(), "a counting child failed");
    }
    let total: u64 = seg.map_all().unwrap().read_pod(COUNTER).unwrap();
    assert_eq!(total, PROCS * N);
}

#[test]
fn holder_killed_inside_100_times_is_recovered_every_time() {
    let (seg, name) = counter_segment("kill");
    let view = seg.map_all().unwrap();
    let m = Mutex::open_at(&view, 0).unwrap();
    for round in 0..100u64 {
        let mut kids = Reaper(vec![spawn("die-inside", &[("SEG", &name)])]);
        let mut out = BufReader::new(kids.0[0].stdout.take().unwrap());
        expect_line(&mut out, "INSIDE");
        kids.0[0].kill().unwrap();
        if round % 2 == 0 {
            // Reaped before we lock: the thread is gone.
            kids.0[0].wait().unwrap();
        } // else: Linux: still a zombie while we lock; Windows: the process object
          // may still be there (our handle keeps it), its threads are signalled.
        match m.lock_timeout(LONG) {
            Err(LockTimeoutError::OwnerDied(g)) => {
                let n: u64 = view.read_pod(COUNTER).unwrap();
                assert_eq!(n, round + 1, "round {round}: completed increments");
                g.mark_consistent();
            }
            Ok(_) => panic!("round {round}: the lock did not report the dead owner"),
            Err(e) => panic!("round {round}: {e}"),
        }
        // Marked consistent: the next lock is clean.
        drop(m.try_lock().expect("clean after mark_consistent"));
    }
}

#[test]
fn sleeping_waiter_notices_owner_death() {
    let name = unique("sleeper");
    let _m = NamedMutex::create(&name).unwrap();
    let mut kids = Reaper(vec![spawn("hold-named", &[("NAME", &name)])]);
    let mut holder = BufReader::new(kids.0[0].stdout.take().unwrap());
    expect_line(&mut holder, "INSIDE");
    kids.0.push(spawn("wait-lock", &[("NAME", &name)]));
    let mut waiter = BufReader::new(kids.0[1].stdout.take().unwrap());
    expect_line(&mut waiter, "WAITING");
    kids.0[0].kill().unwrap();
    expect_line(&mut waiter, "OWNER_DIED");
    assert!(kids.0[1].wait().unwrap().success());
}

#[test]
fn every_timeout_form_times_out() {
    let name = unique("timeouts");
    let m = NamedMutex::create(&name).unwrap();
    let mut kids = Reaper(vec![spawn("hold-named", &[("NAME", &name)])]);
    let mut holder = BufReader::new(kids.0[0].stdout.take().unwrap());
    expect_line(&mut holder, "INSIDE");
    let short = Duration::from_millis(30);
    assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
    assert!(matches!(
        m.lock_timeout(short),
        Err(LockTimeoutError::Timeout(d)) if d == short
    ));
    // Zero timeout: one look.
    assert!(matches!(
        m.lock_timeout(Duration::ZERO),
        Err(LockTimeoutError::Timeout(_))
    ));
    kids.0[0].kill().unwrap();
    kids.0[0].wait().unwrap();
    assert!(matches!(m.try_lock(), Err(TryLockError::OwnerDied(_))));

    let sem = NamedSemaphore::create(&unique("timeouts-sem"), 0, 4).unwrap();
    assert_eq!(sem.try_wait(), Err(TryWaitError::WouldBlock));
    assert_eq!(
        sem.wait_timeout(short),
        Err(WaitTimeoutError::Timeout(short))
    );
    for reset in [EventReset::Manual, EventReset::Auto] {
        let ev = NamedEvent::create(&unique("timeouts-ev"), reset, false).unwrap();
        assert_eq!(
            ev.wait_timeout(short),
            Err(WaitTimeoutError::Timeout(short))
        );
        ev.set();
        ev.reset();
        assert_eq!(
            ev.wait_timeout(short),
            Err(WaitTimeoutError::Timeout(short))
        );
    }
}

#[test]
fn semaphore_producers_and_consumers_lose_nothing() {
    const N: u64 = 20_000;
    let name = unique("sem");
    let sem = NamedSemaphore::create(&name, 0, 1_000_000).unwrap();
    let n = N.to_string();
    let mut kids = Reaper(vec![
        spawn("consume", &[("NAME", &name), ("N", &n)]),
        spawn("consume", &[("NAME", &name), ("N", &n)]),
        spawn("produce", &[("NAME", &name), ("N", &n)]),
        spawn("produce", &[("NAME", &name), ("N", &n)]),
    ]);
    for c in &mut kids.0 {
        assert!(c.wait().unwrap().success(), "a producer or consumer failed");
    }
    assert_eq!(sem.value(), 0, "extra posts");
    assert_eq!(sem.try_wait(), Err(TryWaitError::WouldBlock));
}

fn event_waiters(reset: EventReset, waiters: usize) -> (NamedEvent, NamedSemaphore, Reaper) {
    let name = unique("ev");
    let woken_name = unique("ev-woken");
    let ev = NamedEvent::create(&name, reset, false).unwrap();
    let woken = NamedSemaphore::create(&woken_name, 0, 100).unwrap();
    let mut kids = Reaper(
        (0..waiters)
            .map(|_| spawn("event-wait", &[("NAME", &name), ("WOKEN", &woken_name)]))
            .collect(),
    );
    for c in &mut kids.0 {
        expect_line(&mut BufReader::new(c.stdout.take().unwrap()), "READY");
    }
    (ev, woken, kids)
}

#[test]
fn auto_reset_event_releases_one_waiter_per_set() {
    let (ev, woken, mut kids) = event_waiters(EventReset::Auto, 3);
    for _ in 0..3 {
        ev.set();
        woken.wait_timeout(LONG).expect("a waiter should wake");
        // Exactly one per set: no second waiter comes out of the same set.
        assert!(woken.try_wait().is_err(), "one set released two waiters");
    }
    for c in &mut kids.0 {
        assert!(c.wait().unwrap().success());
    }
    assert!(!ev.is_set(), "the last waiter should have reset it");
    assert_eq!(woken.value(), 0);
}

/// Whether every thread of process `pid` is asleep (Linux: `/proc`): a waiter
/// child, once it said READY, is then in its wait (the test harness's main thread
/// sleeps in a join meanwhile).
#[cfg(target_os = "linux")]
fn all_asleep(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            return false;
        };
        match stat.rsplit_once(')') {
            Some((_, rest)) if rest.trim_start().starts_with('S') => any = true,
            _ => return false,
        }
    }
    any
}

/// Two sets of an auto-reset event, back to back, while two waiters sleep release
/// both, as `SetEvent` does: a set that comes before the first woken waiter has run
/// and taken the event is a second release, not a no-op on an event already set
/// (a hostile pass: 4 `shmipc event wait`s, 4 racing `shmipc event set`s released
/// 3, and the fourth waiter timed out with the event unset).
#[cfg(target_os = "linux")]
#[test]
fn auto_reset_event_sets_racing_a_woken_waiter_release_one_each() {
    let (ev, woken, mut kids) = event_waiters(EventReset::Auto, 2);
    for c in &kids.0 {
        let pid = c.id();
        assert!(poll_until(|| all_asleep(pid)), "waiter {pid} never slept");
    }
    ev.set();
    ev.set();
    for n in 0..2 {
        woken
            .wait_timeout(LONG)
            .unwrap_or_else(|_| panic!("2 sets, 2 sleeping waiters: only {n} released"));
    }
    for c in &mut kids.0 {
        assert!(c.wait().unwrap().success());
    }
    assert!(!ev.is_set(), "each set was taken by its waiter");
}

#[test]
fn manual_reset_event_releases_every_waiter() {
    let (ev, woken, mut kids) = event_waiters(EventReset::Manual, 3);
    ev.set();
    for _ in 0..3 {
        woken.wait_timeout(LONG).expect("every waiter should wake");
    }
    for c in &mut kids.0 {
        assert!(c.wait().unwrap().success());
    }
    assert!(ev.is_set(), "manual reset: stays set");
    ev.reset();
    assert!(!ev.is_set());
}

/// A parameter no shmipc writes (a semaphore's maximum 0, an event's reset mode 7)
/// is called damaged, with what to do: not a "different parameter" to open it with,
/// which the opener never gave.
#[cfg_attr(
    windows,
    ignore = "Windows: a named semaphore or event is a kernel object, not a segment to scribble"
)]
#[test]
fn an_impossible_header_parameter_is_called_corrupt() {
    for (kind, value) in [("semaphore", 0u64), ("semaphore", 1 << 40), ("event", 7)] {
        let name = unique("corrupt-param");
        let _keep = if kind == "semaphore" {
            Ok(NamedSemaphore::create(&name, 0, 3).unwrap())
        } else {
            Err(NamedEvent::create(&name, EventReset::Manual, false).unwrap())
        };
        // The first parameter word, after magic, version, kind and state.
        let seg = Segment::open(&name, Access::ReadWrite).unwrap();
        seg.map_all().unwrap().write_pod(24, &value).unwrap();
        let e = if kind == "semaphore" {
            NamedSemaphore::open(&name).unwrap_err()
        } else {
            NamedEvent::open(&name).unwrap_err()
        };
        let text = e.to_string();
        assert!(
            text.contains("damaged")
                && text.contains(&value.to_string())
                && text.contains("remove it")
                && !text.contains("different")
                && !text.contains("expected"),
            "{kind} {value}: {text}"
        );
    }
}

#[test]
fn headers_refuse_garbage_and_misuse() {
    let seg = Segment::options().size(4096).create_unnamed().unwrap();
    let view = seg.map_all().unwrap();
    view.fill(0, 4096, 0xAB).unwrap();
    assert!(matches!(
        Mutex::open_at(&view, 0),
        Err(ObjectError::Invalid {
            source: LayoutError::NotShmipc,
            ..
        })
    ));
    assert!(matches!(
        Semaphore::open_at(&view, 512),
        Err(ObjectError::Invalid { .. })
    ));
    Event::init_at(&view, 1024, EventReset::Manual, false).unwrap();
    assert!(matches!(
        Mutex::open_at(&view, 1024),
        Err(ObjectError::Invalid {
            source: LayoutError::Kind { .. },
            ..
        })
    ));
    assert!(matches!(
        Mutex::init_at(&view, 4),
        Err(ObjectError::Misaligned { .. })
    ));
    assert!(matches!(
        Mutex::init_at(&view, 4096 - 64),
        Err(ObjectError::Invalid {
            source: LayoutError::TooSmall { .. },
            ..
        })
    ));
    assert!(matches!(
        Mutex::init_at(&view, usize::MAX - 7),
        Err(ObjectError::Invalid { .. })
    ));
    let ro = seg.map_with(0, 0, Access::Read).unwrap();
    assert!(matches!(
        Mutex::open_at(&ro, 0),
        Err(ObjectError::NotWritable { .. })
    ));
    let cow = seg.map_with(0, 0, Access::CopyOnWrite).unwrap();
    assert!(matches!(
        Mutex::init_at(&cow, 0),
        Err(ObjectError::NotWritable { .. })
    ));
    assert!(matches!(
        Semaphore::init_at(&view, 0, 5, 4),
        Err(ObjectError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Semaphore::init_at(&view, 0, 0, 0),
        Err(ObjectError::InvalidParameter { .. })
    ));

    // A named object over a plain segment of garbage.
    let name = unique("garbage");
    let plain = Segment::create(&name, 4096).unwrap();
    plain.map_all().unwrap().fill(0, 4096, 0x5A).unwrap();
    assert!(matches!(
        NamedSemaphore::open(&name),
        Err(ObjectError::Invalid { .. })
    ));
    drop(plain);

    // Same name, other parameters.
    let name = unique("mismatch");
    let _s = NamedSemaphore::create(&name, 0, 3).unwrap();
    assert!(matches!(
        NamedSemaphore::create_or_open(&name, 0, 4),
        Err(ObjectError::Invalid {
            source: LayoutError::Mismatch { .. },
            ..
        })
    ));
    assert!(matches!(
        NamedEvent::open(&name),
        Err(ObjectError::Invalid {
            source: LayoutError::Kind { .. },
            ..
        })
    ));
    let name = unique("mismatch-ev");
    let _e = NamedEvent::create(&name, EventReset::Auto, false).unwrap();
    assert!(matches!(
        NamedEvent::create_or_open(&name, EventReset::Manual, false),
        Err(ObjectError::Invalid {
            source: LayoutError::Mismatch { .. },
            ..
        })
    ));
}

#[test]
fn garbage_in_the_lock_word_is_a_dead_owner() {
    let seg = Segment::options().size(4096).create_unnamed().unwrap();
    let view = seg.map_all().unwrap();
    let m = Mutex::init_at(&view, 0).unwrap();
    // The owner word follows the 64-byte header: garbage from a hostile peer.
    for garbage in [u64::MAX, 1, 0x8000_0000_0000_0000, 0x1234_5678_9abc_def0] {
        view.atomic_u64(64)
            .unwrap()
            .store(garbage, Ordering::SeqCst);
        match m.lock_timeout(LONG) {
            Ok(g) => {
                // Only a stray CONTENDED bit with no owner reads as free.
                assert_eq!(garbage, 0x8000_0000_0000_0000);
                drop(g);
            }
            Err(LockTimeoutError::OwnerDied(g)) => g.mark_consistent(),
            Err(e) => panic!("{garbage:#x}: {e}"),
        }
    }
    drop(m.lock().expect("clean again"));
}

#[test]
fn semaphore_refuses_posts_beyond_its_maximum() {
    let s = NamedSemaphore::create(&unique("max"), 1, 3).unwrap();
    s.post().unwrap();
    s.post().unwrap();
    assert_eq!(s.post(), Err(PostError::Full { max: 3 }));
    assert_eq!(s.value(), 3);
    for _ in 0..3 {
        s.try_wait().unwrap();
    }
    assert!(s.try_wait().is_err());
}

#[test]
fn named_objects_live_like_segments() {
    let name = unique("life");
    let m = NamedMutex::create(&name).unwrap();
    // Elsewhere a named object is a segment (Windows: a kernel mutex, whose DACL is
    // checked in tests/windows.rs).
    #[cfg(not(windows))]
    assert_eq!(Segment::info(&name).unwrap().mode, Some(0o600));
    assert!(matches!(
        NamedMutex::create(&name),
        Err(ObjectError::Create(_))
    ));
    let (again, disp) = NamedMutex::create_or_open(&name).unwrap();
    assert_eq!(disp, shmipc::Disposition::Opened);
    // One lock for both handles.
    let g = m.lock().unwrap();
    assert!(matches!(again.try_lock(), Err(TryLockError::WouldBlock)));
    drop(g);
    drop(again.try_lock().unwrap());
    drop((m, again));
    assert!(matches!(NamedMutex::open(&name), Err(ObjectError::Open(_))));
}

#[test]
fn panicking_holder_marks_the_data_inconsistent() {
    let name = unique("panic");
    let m = NamedMutex::create(&name).unwrap();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = m.lock().unwrap();
            panic!("inside the critical section");
        })
        .join()
    });
    assert!(r.is_err());
    match m.lock() {
        Err(LockError::OwnerDied(g)) => drop(g), // not marked: stays inconsistent
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    match m.lock() {
        Err(LockError::OwnerDied(g)) => g.mark_consistent(),
        other => panic!("expected OwnerDied again, got {other:?}"),
    }
    drop(m.lock().expect("consistent now"));
}

#[test]
fn thread_that_exits_holding_the_lock_is_a_dead_owner() {
    let name = unique("leak");
    let m = NamedMutex::create(&name).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(m.lock().unwrap()));
    });
    assert!(matches!(
        m.lock_timeout(LONG),
        Err(LockTimeoutError::OwnerDied(_))
    ));
}

#[test]
fn relocking_from_the_holding_thread_is_refused_not_a_hang() {
    let seg = Segment::options().size(4096).create_unnamed().unwrap();
    let view = seg.map_all().unwrap();
    let placed = Mutex::init_at(&view, 0).unwrap();
    let named = NamedMutex::create(&unique("relock")).unwrap();
    let other = NamedMutex::open(named.name()).unwrap();
    for m in [placed, named.as_mutex()] {
        let g = m.lock().unwrap();
        assert!(matches!(m.lock(), Err(LockError::WouldDeadlock)));
        assert!(matches!(
            m.lock_timeout(LONG),
            Err(LockTimeoutError::WouldDeadlock)
        ));
        assert!(matches!(m.try_lock(), Err(TryLockError::WouldBlock)));
        drop(g);
        drop(m.try_lock().expect("free again after the refused relocks"));
    }
    // Through a second handle of the same named mutex too (one object).
    let g = named.lock().unwrap();
    assert!(matches!(other.lock(), Err(LockError::WouldDeadlock)));
    assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    drop(g);
    drop(other.lock().unwrap());
}

/// What another thread of this process gets from `try_lock` on `m` (a guard is not
/// `Send`, so it is dropped there).
#[cfg(target_os = "linux")]
fn try_from_another_thread(m: &Mutex<'_>) -> String {
    std::thread::scope(|s| {
        s.spawn(|| match m.try_lock() {
            Ok(_) => "Ok (taken)".to_owned(),
            Err(e) => format!("{e:?}"),
        })
        .join()
        .unwrap()
    })
}

/// A forked child gets a copy of its parent's guard, not the lock: dropping that
/// copy (and marking it consistent) in the child must leave the parent's lock
/// held, in a segment and as a named mutex alike.
#[cfg(target_os = "linux")]
#[test]
fn a_guard_dropped_in_a_forked_child_leaves_the_parents_lock_held() {
    let seg = Segment::options().size(4096).create_unnamed().unwrap();
    let view = seg.map_all().unwrap();
    let placed = Mutex::init_at(&view, 0).unwrap();
    let named = NamedMutex::create(&unique("fork-guard")).unwrap();
    for m in [placed, named.as_mutex()] {
        let guard = m.lock().unwrap();
        // SAFETY: the child (of a multi-threaded process) does only what is
        // async-signal-safe: it drops its copy of the guard (atomic loads and
        // stores on the lock words, at most a futex wake) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            guard.mark_consistent();
            drop(guard);
            // SAFETY: ends the child at once, running none of the parent's code.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed: {status:#x}"
        );
        assert_eq!(
            try_from_another_thread(&m),
            "WouldBlock",
            "a forked child's drop of a copied guard unlocked its parent's lock"
        );
        drop(guard);
        assert_eq!(try_from_another_thread(&m), "Ok (taken)");
    }
}

/// An object that cannot be used is named in its error (its name, or where it was
/// placed), with the right article for the kind asked for.
#[test]
fn an_unusable_object_is_named_in_its_error() {
    let plain = unique("plain10");
    let _seg = Segment::create(&plain, 10).unwrap();
    let e = NamedMutex::open(&plain).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("`{plain}` is not a usable shmipc mutex: ")),
        "{e}"
    );
    let e = NamedMutex::create_or_open(&plain).unwrap_err().to_string();
    assert!(e.contains(&format!("`{plain}`")), "{e}");

    let mutex = unique("a-mutex");
    let _m = NamedMutex::create(&mutex).unwrap();
    let e = NamedEvent::open(&mutex).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("`{mutex}` is not a usable shmipc event: ")),
        "{e}"
    );
    assert!(e.contains("use the name of an event,"), "{e}");
    let e = NamedSemaphore::open(&mutex).unwrap_err().to_string();
    assert!(e.contains("use the name of a semaphore,"), "{e}");

    // Placed in a view: where, in which segment.
    let placed = unique("placed");
    let seg = Segment::create(&placed, 4096).unwrap();
    let view = seg.map_all().unwrap();
    Event::init_at(&view, 1024, EventReset::Manual, false).unwrap();
    let e = Mutex::open_at(&view, 1024).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "offset 1024 of segment `{placed}` is not a usable shmipc mutex: "
        )),
        "{e}"
    );
    let unnamed = Segment::options().size(4096).create_unnamed().unwrap();
    let garbage = unnamed.map_all().unwrap();
    garbage.fill(0, 4096, 0xAB).unwrap();
    let e = Mutex::open_at(&garbage, 0).unwrap_err().to_string();
    assert!(
        e.starts_with("offset 0 of an unnamed segment is not a usable shmipc mutex: "),
        "{e}"
    );
}
