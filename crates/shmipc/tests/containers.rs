//! Objects shared between a process in a new PID namespace (a container sharing the
//! host's `/dev/shm`, as `unshare --pid --fork --mount-proc` makes one) and one
//! outside, both ways: a mutex whose holder is SIGKILLed on either side is taken over
//! with `OwnerDied`, a channel whose producer is killed on either side reads as
//! `Disconnected`, and `inspect` never calls a live holder in another namespace dead
//! nor shows its foreign thread id.
//!
//! The namespaced side is this test binary run under `unshare --pid --fork
//! --mount-proc --kill-child` (so that killing `unshare` SIGKILLs the namespace's
//! init, our child). Needs root (or user namespaces); skipped with a message where
//! `unshare` is missing or refused.
#![cfg(all(target_os = "linux", not(loom)))]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{arg, say, Cleanup, Peer};
use shmipc::channel::spsc::{Consumer, Producer};
use shmipc::channel::RecvError;
use shmipc::sync::{LockError, LockTimeoutError, NamedMutex};
use shmipc::{inspect, Contents, ObjectState};

const LONG: Duration = Duration::from_secs(30);

/// Whether this machine lets us make a PID namespace; says why not otherwise.
fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: `unshare --pid --fork --mount-proc` is missing or not permitted here (needs root or user namespaces)");
    }
    ok
}

/// This test binary in `role`, in a new PID namespace (`inside`) or not.
fn peer(test: &str, role: &str, inside: bool, args: &[(&str, &str)]) -> Peer {
    if !inside {
        return Peer::role(test, role, args);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(common::ROLE_ENV, role);
    for (k, v) in args {
        cmd.env(format!("{}{k}", common::ARG_ENV_PREFIX), v);
    }
    Peer::spawn(cmd, &format!("{test}/{role} (new PID namespace)"))
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

/// The children's roles (a no-op in the parent's run).
fn child_roles() -> bool {
    let Some(role) = common::role() else {
        return false;
    };
    match role.as_str() {
        "hold" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            let _g = take(m.lock());
            say(&format!("INSIDE {}", std::process::id()));
            loop {
                std::thread::park(); // killed here, holding the lock
            }
        }
        "wait-lock" => {
            let m = NamedMutex::open(&arg("NAME")).unwrap();
            say("WAITING");
            match m.lock_timeout(LONG) {
                Err(LockTimeoutError::OwnerDied(g)) => {
                    g.mark_consistent();
                    say("OWNER_DIED");
                }
                Ok(_) => say("CLEAN"),
                Err(e) => say(&format!("ERROR {e}")),
            };
        }
        "produce" => {
            let mut tx = Producer::open(&arg("NAME")).unwrap();
            tx.send(b"hello").unwrap();
            say("SENT");
            loop {
                std::thread::park(); // killed here, attached
            }
        }
        "consume" => {
            let mut rx = Consumer::create(&arg("NAME"), 8, 64).unwrap();
            say("OPEN");
            let got = rx.recv_timeout(LONG).map(|s| s.to_vec());
            assert_eq!(got.as_deref(), Ok(&b"hello"[..]));
            match rx.recv_timeout(LONG) {
                Err(RecvError::Disconnected) => say("DISCONNECTED"),
                other => say(&format!("UNEXPECTED {:?}", other.map(|s| s.to_vec()))),
            };
        }
        other => panic!("unknown role {other}"),
    }
    true
}

/// A mutex locked inside and killed there is taken over outside, and the other way
/// round; while the holder lives, `inspect` calls it alive.
#[test]
fn mutex_owner_death_is_seen_across_pid_namespaces() {
    if child_roles() || !can_unshare() {
        return;
    }
    const TEST: &str = "mutex_owner_death_is_seen_across_pid_namespaces";
    for holder_inside in [true, false] {
        let name = Cleanup::new("ns-mutex");
        let (m, _) = NamedMutex::create_or_open(name.name()).unwrap();
        let mut holder = peer(TEST, "hold", holder_inside, &[("NAME", name.name())]);
        let line = holder.expect("INSIDE");
        if holder_inside {
            // The namespace's init is pid 1 in there; never shown as a pid here.
            assert_eq!(line.trim(), "1", "{line}");
        }
        let state = inspect(name.name()).unwrap();
        let Contents::Object {
            state:
                Some(ObjectState::Mutex {
                    locked,
                    owner_thread,
                    owner_alive,
                    ..
                }),
            ..
        } = state
        else {
            panic!("not a mutex state: {state:?}");
        };
        assert!(locked);
        assert_eq!(owner_alive, Some(true), "a live holder is alive");
        if holder_inside {
            assert_eq!(owner_thread, None, "a foreign thread id is not shown");
        } else {
            // A thread of the holder (the test harness runs tests on threads).
            assert!(owner_thread.is_some_and(|t| t != 0));
        }
        // The waiter on the other side of the namespace boundary.
        let mut waiter = peer(TEST, "wait-lock", !holder_inside, &[("NAME", name.name())]);
        waiter.expect("WAITING");
        holder.kill();
        waiter.expect("OWNER_DIED");
        waiter.finish();
        // And here: the lock is free and consistent again.
        drop(m.lock_timeout(LONG).expect("free after the waiter left"));
    }
}

/// A channel works across the boundary both ways; a killed producer on either side
/// reads as `Disconnected` on the other.
#[test]
fn channel_peer_death_is_seen_across_pid_namespaces() {
    if child_roles() || !can_unshare() {
        return;
    }
    const TEST: &str = "channel_peer_death_is_seen_across_pid_namespaces";
    for producer_inside in [true, false] {
        let name = Cleanup::new("ns-spsc");
        // The consumer creates the channel; the producer on the other side opens it.
        let mut consumer = peer(TEST, "consume", !producer_inside, &[("NAME", name.name())]);
        consumer.expect("OPEN");
        let mut producer = peer(TEST, "produce", producer_inside, &[("NAME", name.name())]);
        producer.expect("SENT");
        // A live producer: in another namespace shown as such (pid 0), not by its
        // foreign pid; here by its pid.
        let Contents::Object {
            state: Some(ObjectState::Spsc {
                producer: shown, ..
            }),
            ..
        } = inspect(name.name()).unwrap()
        else {
            panic!("not an spsc state");
        };
        let expected = if producer_inside { 0 } else { producer.id() };
        assert_eq!(shown, Some(expected));
        producer.kill();
        consumer.expect("DISCONNECTED");
        consumer.finish();
    }
}
