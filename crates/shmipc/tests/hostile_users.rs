//! A hostile second user against the liveness of lock owners and channel endpoints
//! (DESIGN.md "Soundness and trust": an attacker may disturb only objects it can
//! already open, and never make a live owner look dead):
//!
//! * (a) a user who cannot open our objects read-locks every byte of every file in
//!   `/dev/shm` it can open (shmipc's former liveness file included, made by it
//!   if missing): a killed owner must still be seen dead (`OwnerDied`,
//!   `Disconnected`);
//! * (b) a user who creates shmipc's (former) liveness file first and removes it
//!   while a lock is held must not make the live holder look dead to a process
//!   started later (liveness now lives on each object's own file, which such a
//!   user cannot open; the case stays as a guard);
//! * (c) shmipc's own files in `/dev/shm` are neither listed as objects nor
//!   collected as stale segments;
//! * (d) as (a), against a mutex placed in our own segment (`Mutex::init_at`), a
//!   publish-subscribe publisher, and holders that forked a child before dying
//!   (the child, alive, must not keep its dead parent looking alive).
//!
//! What a user who *can* open an object (its mode lets it read) can do to its
//! liveness is a participant's power, described in `sys/liveness/linux.rs`.
//!
//! Each scenario runs as root in a private mount namespace with an empty tmpfs on
//! `/dev/shm` (`unshare --mount`), so that the attacks never touch the machine's
//! shared memory; the attacker is this test binary run as `nobody` (`setpriv`).
//! Skipped with a message where that is not possible (not root, no `unshare` or
//! `setpriv`).
#![cfg(all(target_os = "linux", not(loom)))]

mod common;

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{arg, hear, say, Peer};
use shmipc::channel::pubsub;
use shmipc::channel::spsc::{Consumer, Producer};
use shmipc::channel::RecvError;
use shmipc::sync::{LockTimeoutError, Mutex, NamedMutex, ObjectOptions, TryLockError};
use shmipc::{Access, Persistence, Segment};

const LONG: Duration = Duration::from_secs(30);
const LIVENESS_FILE: &str = "/dev/shm/.shmipc-liveness";
/// Set in the scenario process, which runs in the private mount namespace.
const ISOLATED_ENV: &str = "SHMIPC_TEST_ISOLATED_SHM";

/// Whether we can make a private `/dev/shm` and drop to `nobody`; says why not.
fn can_isolate() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (a private /dev/shm and a second user)");
        return false;
    }
    let ok = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o mode=1777 tmpfs /dev/shm && setpriv --reuid=nobody --regid=nogroup --clear-groups true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: `unshare --mount` + tmpfs or `setpriv` is missing or refused here");
    }
    ok
}

/// This test binary's `test`, re-run as root in a private mount namespace whose
/// `/dev/shm` is a fresh tmpfs; it plays the scenario (the role `scenario`).
fn isolated(test: &str) -> Option<Peer> {
    if !can_isolate() {
        return None;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec \"$@\"")
        .arg("sh")
        .arg(exe)
        .args(TEST_ARGS)
        .arg(test)
        .env(common::ROLE_ENV, "scenario")
        .env(ISOLATED_ENV, "1");
    Some(Peer::spawn(
        cmd,
        &format!("{test}/scenario (private /dev/shm)"),
    ))
}

/// How this test binary runs one test in a child (ignored ones too).
const TEST_ARGS: [&str; 4] = [
    "--exact",
    "--nocapture",
    "--test-threads=1",
    "--include-ignored",
];

/// This test binary's `test` in `role`, run as `nobody`.
fn attacker(test: &str, role: &str) -> Peer {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(exe)
        .args(TEST_ARGS)
        .arg(test)
        .env(common::ROLE_ENV, role);
    Peer::spawn(cmd, &format!("{test}/{role} (as nobody)"))
}

/// This test binary's `test` in `role` (as root, like the scenario).
fn child(test: &str, role: &str, name: &str) -> Peer {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(TEST_ARGS)
        .arg(test)
        .env(common::ROLE_ENV, role)
        .env(format!("{}NAME", common::ARG_ENV_PREFIX), name);
    Peer::spawn(cmd, &format!("{test}/{role}"))
}

/// Read-locks (`F_OFD_SETLK`) every byte of `path` through a descriptor that is
/// kept open for the rest of the process. Errors (not openable) are `false`.
fn lock_every_byte(path: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: `struct flock` is plain data; all zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = 0;
    fl.l_len = 0; // to the end of every possible file
                  // SAFETY: `file` is open; `fl` is a valid `struct flock` for the call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    std::mem::forget(file); // keeps the description, and its lock, until we exit
    rc == 0
}

/// Forks a child that sleeps until killed (it shares all our descriptions);
/// returns its pid. Its parent is a role process, which exits soon after.
fn fork_sleeper() -> i32 {
    // SAFETY: the child only calls `pause`, async-signal-safe, in a loop.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        loop {
            // SAFETY: no preconditions.
            unsafe { libc::pause() };
        }
    }
    pid
}

/// SIGKILLs the process `pid` (not our child) and waits until it has exited.
fn kill_and_wait_gone(pid: i32) {
    let p = rustix::process::Pid::from_raw(pid).expect("a pid");
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    common::wait_until("a killed grandchild to exit", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
            st.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    });
}

/// Runs `test`: in the test's own run, its scenario in a private /dev/shm; in a
/// child, that child's role.
fn run(test: &str, scenario: fn()) {
    match common::role().as_deref() {
        Some("scenario") => {
            assert!(
                std::env::var_os(ISOLATED_ENV).is_some(),
                "only in a private /dev/shm"
            );
            scenario();
        }
        Some(role) => play(role),
        None => {
            if let Some(s) = isolated(test) {
                s.finish();
            }
        }
    }
}

/// The children's roles.
fn play(role: &str) {
    match role {
        // nobody: read-locks everything it can open in /dev/shm (after making
        // shmipc's former liveness file, world-readable, if nobody has), then waits.
        "lock-everything" => {
            rustix::process::umask(rustix::fs::Mode::empty());
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(LIVENESS_FILE);
            let mut n = 0;
            for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
                if lock_every_byte(&e.path()) {
                    n += 1;
                }
            }
            say(&format!("LOCKED {n}"));
            let _ = hear();
        }
        // nobody: creates shmipc's liveness file, world-readable and writable.
        "squat" => {
            rustix::process::umask(rustix::fs::Mode::empty());
            std::fs::File::create(LIVENESS_FILE).unwrap();
            say("CREATED");
        }
        // nobody: removes it again (it owns it: the sticky /dev/shm lets it).
        "unlink" => {
            std::fs::remove_file(LIVENESS_FILE).unwrap();
            say("REMOVED");
        }
        "hold" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            let _g = m.lock().unwrap();
            say("HELD");
            let _ = hear(); // holds until told (or killed)
        }
        "try-lock" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            match m.try_lock() {
                Ok(_) => say("ENTERED"),
                Err(TryLockError::OwnerDied(_)) => say("TOOK_OVER"),
                Err(TryLockError::WouldBlock) => say("BLOCKED"),
                Err(e) => say(&format!("ERROR {e}")),
            };
        }
        // A persistent mutex, locked once, and a channel attached to and left.
        "make-lock-and-attach" => {
            let opts = ObjectOptions::new().persistence(Persistence::UntilRemoved);
            let m = NamedMutex::create_with(&arg("NAME"), &opts).unwrap();
            drop(m.lock().unwrap());
            let chan = format!("{}-chan", arg("NAME"));
            let _rx = Consumer::create(&chan, 8, 64).unwrap();
            let mut tx = Producer::open(&chan).unwrap();
            tx.send(b"x").unwrap();
            say("DONE");
        }
        "produce" => {
            let mut tx = Producer::open(&arg("NAME")).unwrap();
            tx.send(b"hello").unwrap();
            say("SENT");
            let _ = hear();
        }
        // A mutex at offset 0 of the segment NAME, locked; then a forked child
        // that outlives us (it prints its pid), holding our descriptors.
        "hold-in-segment-and-fork" => {
            let seg = Segment::open(&arg("NAME"), Access::ReadWrite).unwrap();
            let view = seg.map_all().unwrap();
            let m = Mutex::open_at(&view, 0).unwrap();
            let _g = m.lock().unwrap();
            say(&format!("HELD {}", fork_sleeper()));
            let _ = hear();
        }
        "publish-and-fork" => {
            let mut tx = pubsub::Publisher::open(&arg("NAME")).unwrap();
            tx.send(b"news").unwrap();
            say(&format!("SENT {}", fork_sleeper()));
            let _ = hear();
        }
        other => panic!("unknown role {other}"),
    }
}

// ---------------------------------------------------------------------------------
// (a)

const TEST_A: &str = "a_user_who_cannot_open_our_objects_cannot_hide_their_dead_owners";

/// (a) inside the private /dev/shm.
fn scenario_a() {
    // Our objects (owner-only), and a first lock so that any file liveness needs
    // exists before the attacker looks.
    let mutex_name = common::unique_name("hostile-a-mutex");
    let chan_name = common::unique_name("hostile-a-chan");
    let m = NamedMutex::create(&mutex_name).unwrap();
    drop(m.lock().unwrap());
    let mut rx = Consumer::create(&chan_name, 8, 64).unwrap();

    let mut evil = attacker(TEST_A, "lock-everything");
    let n = evil.expect("LOCKED");
    eprintln!("the attacker read-locked every byte of {n} file(s) in /dev/shm");

    // A holder and a producer are killed; both must be seen dead.
    let mut holder = child(TEST_A, "hold", &mutex_name);
    holder.expect("HELD");
    holder.kill();
    match m.lock_timeout(LONG) {
        Err(LockTimeoutError::OwnerDied(g)) => g.mark_consistent(),
        Ok(_) => panic!("the killed holder's lock came back clean"),
        Err(e) => panic!("a killed holder's mutex must be taken over despite the attacker: {e}"),
    }
    let mut producer = child(TEST_A, "produce", &chan_name);
    producer.expect("SENT");
    producer.kill();
    assert_eq!(
        rx.recv_timeout(LONG).map(|s| s.to_vec()).as_deref(),
        Ok(&b"hello"[..])
    );
    match rx.recv_timeout(LONG) {
        Err(RecvError::Disconnected) => {}
        other => panic!(
            "a killed producer must be seen gone despite the attacker, got {:?}",
            other.map(|s| s.to_vec())
        ),
    }
    evil.finish();
}

/// (a): a user that can open none of our objects read-locks every byte of every
/// file in /dev/shm it can open; a killed mutex holder and a killed producer are
/// still seen dead.
#[test]
fn a_user_who_cannot_open_our_objects_cannot_hide_their_dead_owners() {
    run(TEST_A, scenario_a);
}

// ---------------------------------------------------------------------------------
// (b)

const TEST_B: &str = "a_user_who_made_the_liveness_file_cannot_make_a_live_owner_look_dead";

/// (b) inside the private /dev/shm.
fn scenario_b() {
    let mut squat = attacker(TEST_B, "squat");
    squat.expect("CREATED");
    squat.finish();

    let name = common::unique_name("hostile-b-mutex");
    let _m = NamedMutex::create(&name).unwrap();
    let mut holder = child(TEST_B, "hold", &name);
    holder.expect("HELD");

    let mut unlink = attacker(TEST_B, "unlink");
    unlink.expect("REMOVED");
    unlink.finish();

    // A process started now, while the holder lives and holds the lock.
    let mut late = child(TEST_B, "try-lock", &name);
    let verdict = late.next_line();
    late.finish();
    assert_eq!(
        verdict, "BLOCKED",
        "a live holder was judged dead after another user removed the liveness file"
    );
    holder.finish();
}

/// (b): another user creates shmipc's liveness file before anyone, and removes it
/// while a holder holds a mutex: a process started afterwards must not take the
/// live holder's lock over.
#[test]
fn a_user_who_made_the_liveness_file_cannot_make_a_live_owner_look_dead() {
    run(TEST_B, scenario_b);
}

// ---------------------------------------------------------------------------------
// (c)

const TEST_C: &str = "shmipc_internal_files_are_not_listed_or_collected";

/// (c) inside the private /dev/shm.
fn scenario_c() {
    // Objects used by processes that have all exited (this one uses none, so that
    // nothing of shmipc's is held when gc looks).
    let mutex_name = common::unique_name("hostile-c-mutex");
    let mut maker = child(TEST_C, "make-lock-and-attach", &mutex_name);
    maker.expect("DONE");
    maker.finish();

    let _cleanup = common::Cleanup::guard(&mutex_name);
    // Everything here is old enough for gc to judge (past any grace period).
    let old = SystemTime::now() - Duration::from_secs(7200);
    let mut files = Vec::new();
    for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
        std::fs::File::open(e.path())
            .and_then(|f| f.set_modified(old))
            .unwrap();
        files.push(e.file_name().to_string_lossy().into_owned());
    }
    eprintln!("/dev/shm holds {files:?}");

    let mut listed: Vec<String> = Segment::list()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        std::slice::from_ref(&mutex_name),
        "only our objects are listed"
    );
    let stale = Segment::collect_garbage(true).unwrap();
    assert!(
        stale.is_empty(),
        "gc would remove {stale:?}, which are not stale objects"
    );
}

/// (c): after mutexes and channels were used, listing shows only the objects and
/// a garbage collection (dry run) finds nothing to remove: shmipc's own files in
/// /dev/shm are not objects.
#[test]
fn shmipc_internal_files_are_not_listed_or_collected() {
    run(TEST_C, scenario_c);
}

// ---------------------------------------------------------------------------------
// (d)

const TEST_D: &str =
    "a_user_who_cannot_open_our_objects_cannot_hide_dead_segment_mutex_owners_or_publishers";

/// (d) inside the private /dev/shm.
fn scenario_d() {
    // A mutex in a segment of our own (owner-only), and a publish-subscribe
    // channel whose subscriber we are.
    let seg_name = common::unique_name("hostile-d-seg");
    let chan_name = common::unique_name("hostile-d-pubsub");
    let seg = Segment::create(&seg_name, 4096).unwrap();
    let view = seg.map_all().unwrap();
    let m = Mutex::init_at(&view, 0).unwrap();
    drop(m.lock().unwrap());
    let sub = pubsub::Options::new()
        .capacity(8)
        .slot_size(64)
        .create_or_open_subscriber(&chan_name)
        .unwrap();

    let mut evil = attacker(TEST_D, "lock-everything");
    let n = evil.expect("LOCKED");
    eprintln!("the attacker read-locked every byte of {n} file(s) in /dev/shm");

    // The holder forks a child that lives on; the holder is killed.
    let mut holder = child(TEST_D, "hold-in-segment-and-fork", &seg_name);
    let grandchild: i32 = holder.expect("HELD").trim().parse().unwrap();
    holder.kill();
    let took_over = match m.lock_timeout(LONG) {
        Err(LockTimeoutError::OwnerDied(g)) => {
            g.mark_consistent();
            Ok(())
        }
        Ok(_) => Err("the killed holder's lock came back clean".to_owned()),
        Err(e) => Err(format!(
            "a killed holder's mutex must be taken over despite the attacker and the holder's live forked child: {e}"
        )),
    };
    kill_and_wait_gone(grandchild);
    took_over.unwrap();

    let mut publisher = child(TEST_D, "publish-and-fork", &chan_name);
    let grandchild: i32 = publisher.expect("SENT").trim().parse().unwrap();
    publisher.kill();
    let got = sub.recv_timeout(LONG).map(|s| s.to_vec());
    let then = sub.recv_timeout(LONG).map(|s| s.to_vec());
    kill_and_wait_gone(grandchild);
    assert_eq!(got.as_deref(), Ok(&b"news"[..]));
    match then {
        Err(RecvError::Disconnected) => {}
        other => panic!(
            "a killed publisher must be seen gone despite the attacker and its live forked child, got {other:?}"
        ),
    }
    evil.finish();
}

/// (d): as (a), against a mutex placed in our own segment and a publish-subscribe
/// publisher, whose killed processes each leave a forked child alive: the
/// killed holder and publisher are still seen dead.
#[test]
fn a_user_who_cannot_open_our_objects_cannot_hide_dead_segment_mutex_owners_or_publishers() {
    run(TEST_D, scenario_d);
}
