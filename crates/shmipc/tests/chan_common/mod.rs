//! Helpers shared by the channel tests: child processes that are this test binary
//! re-run with a role, unique names that are removed even on failure, and a
//! deterministic message generator with a checksum.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[path = "../common/spawn.rs"]
#[allow(dead_code)]
mod spawn;
use spawn::spawn_retrying;

pub const ROLE: &str = "SHMIPC_CHAN_ROLE";
pub const NAME: &str = "SHMIPC_CHAN_NAME";
pub const COUNT: &str = "SHMIPC_CHAN_COUNT";

/// A unique channel name, removed when the guard drops.
pub struct Name(pub String);

impl Name {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        Self(format!(
            "tc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmipc::Segment::remove(&self.0);
    }
}

/// A child process that is killed if the test fails before waiting for it.
pub struct Kid(pub Option<Child>);

impl Kid {
    /// Re-runs this test binary, running only `entry` (a `#[test]` that acts on
    /// `ROLE`), with the given role and environment.
    pub fn spawn(entry: &str, role: &str, name: &str, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(NAME, name)
            .stdout(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self(Some(spawn_retrying(&mut cmd, role)))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits (bounded) and asserts success.
    pub fn join(mut self, limit: Duration) {
        let mut c = self.0.take().expect("child");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = c.try_wait().expect("try_wait") {
                assert!(st.success(), "child failed: {st}");
                return;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("child did not finish within {limit:?}");
            }
            std::thread::yield_now();
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().expect("kill");
            c.wait().expect("wait");
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` until true or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// How many messages a stress test sends: `debug` in a debug build, `release`
/// in a release build, or `SHMIPC_STRESS_N`.
pub fn stress_count(debug: u64, release: u64) -> u64 {
    std::env::var("SHMIPC_STRESS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            debug
        } else {
            release
        })
}

/// xorshift64*: the same sizes on both sides from the same seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Fills `buf` (at least 16 bytes) as message `seq`: the sequence number, bytes
/// derived from it, and a checksum of everything before it in the last 8 bytes.
pub fn fill(buf: &mut [u8], seq: u64) {
    let n = buf.len();
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..n - 8].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    let sum = fnv(&buf[..n - 8]);
    buf[n - 8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a message made by [`fill`]; returns its sequence number.
pub fn check(buf: &[u8]) -> Result<u64, String> {
    let n = buf.len();
    if n < 16 {
        return Err(format!("message of {n} bytes is too short"));
    }
    let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let sum = u64::from_le_bytes(buf[n - 8..].try_into().unwrap());
    if fnv(&buf[..n - 8]) != sum {
        return Err(format!("message {seq} ({n} bytes) is torn: bad checksum"));
    }
    Ok(seq)
}
