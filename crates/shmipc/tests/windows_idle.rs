//! Windows: a blocked wait sleeps in the kernel. A consumer blocked in a receive (and
//! a thread blocked on an in-segment semaphore) for 4 s, until its timeout, uses
//! under 1 % of a CPU, as the OS counts it (`GetProcessTimes`), and the next wait
//! wakes when the message is sent (the unit is posted). Before the doorbells of `sys/wait/windows.rs`, such a waiter
//! polled every 200 µs: 10-30 ms of CPU a second under Wine, against a fixed
//! 10-20 ms for the whole wait with the doorbells (Wine counts CPU in 10 ms ticks,
//! so the window is long enough that the fixed cost of starting the wait stays
//! well under the limit while a poller's cost, which grows with the window, does
//! not).
#![cfg(windows)]

mod common;

use std::ffi::c_void;
use std::time::Duration;

use common::{arg, say, Cleanup, Peer};
use shmipc::channel::spsc::{Consumer, Producer};
use shmipc::channel::RecvError;
use shmipc::sync::Semaphore;
use shmipc::{Access, Segment};

const LONG: Duration = Duration::from_secs(60);
/// How long the blocked child is watched.
const WATCH: Duration = Duration::from_secs(4);

#[link(name = "kernel32")]
extern "system" {
    fn GetCurrentProcess() -> *mut c_void;
    fn GetProcessTimes(
        h: *mut c_void,
        created: *mut [u32; 2],
        exited: *mut [u32; 2],
        kernel: *mut [u32; 2],
        user: *mut [u32; 2],
    ) -> i32;
}

/// CPU time (kernel + user) this process has used so far, as Windows counts it.
fn cpu_time() -> Duration {
    let (mut c, mut e, mut k, mut u) = ([0u32; 2], [0u32; 2], [0u32; 2], [0u32; 2]);
    // SAFETY: the current-process pseudo-handle needs no closing; the out pointers
    // are valid FILETIME-sized buffers.
    let ok = unsafe { GetProcessTimes(GetCurrentProcess(), &mut c, &mut e, &mut k, &mut u) };
    assert!(ok != 0, "GetProcessTimes");
    let t = |f: [u32; 2]| u64::from(f[1]) << 32 | u64::from(f[0]);
    Duration::from_nanos((t(k) + t(u)) * 100)
}

/// In the child: runs `wait`, a wait under test that nothing ends before its
/// [`WATCH`] timeout (so the measured period is the blocked wait itself), and says
/// the CPU this process used meanwhile (`CPU <nanoseconds>`).
fn measure(wait: impl FnOnce()) {
    let before = cpu_time();
    wait();
    say(&format!("CPU {}", (cpu_time() - before).as_nanos()));
}

/// In the parent: the child's figure, checked.
fn assert_idle(peer: &mut Peer, what: &str) {
    let used = Duration::from_nanos(peer.expect("CPU").parse().unwrap());
    eprintln!("{what}: {used:?} of CPU in {WATCH:?}");
    assert!(
        used < WATCH / 100,
        "{what}: a waiter blocked for {WATCH:?} used {used:?} of CPU (over 1 %)"
    );
}

#[test]
fn blocked_waiters_sleep_in_the_kernel() {
    if let Some(role) = common::role() {
        match role.as_str() {
            "recv" => {
                let mut rx = Consumer::open(&arg("NAME")).unwrap();
                measure(|| {
                    let r = rx.recv_timeout(WATCH).map(|s| s.to_vec());
                    assert_eq!(r, Err(RecvError::Empty), "nothing was sent yet");
                });
                let got = rx.recv_timeout(LONG).map(|s| s.to_vec());
                say(&format!("GOT {}", String::from_utf8_lossy(&got.unwrap())));
            }
            "sem" => {
                let seg = Segment::open(&arg("NAME"), Access::ReadWrite).unwrap();
                let view = seg.map_all().unwrap();
                let sem = Semaphore::open_at(&view, 0).unwrap();
                measure(|| {
                    let r = sem.wait_timeout(WATCH);
                    assert!(r.is_err(), "nothing was posted yet: {r:?}");
                });
                sem.wait_timeout(LONG).unwrap();
                say("GOT unit");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    const TEST: &str = "blocked_waiters_sleep_in_the_kernel";

    // A channel receive.
    let name = Cleanup::new("idle-spsc");
    let mut tx = Producer::create(name.name(), 8, 64).unwrap();
    let mut child = Peer::role(TEST, "recv", &[("NAME", name.name())]);
    assert_idle(&mut child, "spsc recv");
    tx.send(b"hello").unwrap();
    assert_eq!(child.expect("GOT"), "hello");
    child.finish();

    // An in-segment semaphore.
    let name = Cleanup::new("idle-sem");
    let seg = Segment::create(name.name(), 4096).unwrap();
    let view = seg.map_all().unwrap();
    let sem = Semaphore::init_at(&view, 0, 0, 1).unwrap();
    let mut child = Peer::role(TEST, "sem", &[("NAME", name.name())]);
    assert_idle(&mut child, "semaphore wait");
    sem.post().unwrap();
    assert_eq!(child.expect("GOT"), "unit");
    child.finish();
}
