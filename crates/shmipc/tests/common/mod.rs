//! Helpers shared by the integration tests: unique names, a guard that removes a
//! segment on drop, child processes that are this test binary re-run with a role,
//! and waiting for a condition with a deadline.
//!
//! # Child processes
//!
//! A multi-process test starts with
//!
//! ```ignore
//! if let Some(role) = common::role() { match role.as_str() { ... } return; }
//! ```
//!
//! and the parent runs `Peer::role("test_name", "role", &[("KEY", "value")])`, which
//! re-runs this test binary as `--exact test_name --nocapture` with
//! `SHMIPC_TEST_ROLE=role` and `SHMIPC_TEST_KEY=value` in the environment. Parent and
//! child talk in lines: the child [`say`]s on stdout (lines carry a marker, so the
//! harness's own output is ignored) and [`hear`]s on stdin; the parent [`Peer::expect`]s
//! and [`Peer::send`]s. A child whose stdin closes (the parent died or dropped it)
//! finishes. Every wait has a deadline, so a stuck child fails the test instead of
//! hanging it.
#![allow(dead_code)]

pub mod spawn;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shmipc::{ListError, Segment};

/// Environment variable that tells a re-run test binary which role to play.
pub const ROLE_ENV: &str = "SHMIPC_TEST_ROLE";
/// Prefix of the other variables a parent passes to a child (`SHMIPC_TEST_<KEY>`).
pub const ARG_ENV_PREFIX: &str = "SHMIPC_TEST_";
/// Every segment the tests make starts with this, so leftovers are easy to find.
pub const NAME_PREFIX: &str = "shmipc-test-";
/// Marks the lines of the parent/child protocol in a child's stdout.
const MARKER: &str = "@shmipc ";
/// How long any single wait in a test may take before the test fails. Generous:
/// a loaded two-core CI machine is slow, and this only bounds a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------
// names

/// A name no other test (in this or another process) uses: tag, pid and a counter.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{NAME_PREFIX}{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the named segment when dropped (also when the test panics), so a failed
/// test leaves nothing behind. Removing a name that is already gone is fine.
#[derive(Debug)]
pub struct Cleanup {
    name: String,
}

impl Cleanup {
    /// A fresh unique name with its guard.
    pub fn new(tag: &str) -> Self {
        Self {
            name: unique_name(tag),
        }
    }

    /// Guards a name chosen elsewhere.
    pub fn guard(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// The guarded name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.name);
    }
}

/// Whether `Segment::list()` lists `name`; `None` where the OS cannot list.
pub fn listed(name: &str) -> Option<bool> {
    match Segment::list() {
        Ok(all) => Some(all.iter().any(|s| s.name == name)),
        Err(ListError::Unsupported { .. }) => None,
        Err(e) => panic!("Segment::list failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------
// waiting

/// Polls `cond` until it holds; panics, naming `what`, if it does not within
/// [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    let mut spins = 0u32;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        spins += 1;
        if spins < 100 {
            thread::yield_now();
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

// ---------------------------------------------------------------------------------
// the child's side

/// The role this process plays, if it is a child started by [`Peer::role`].
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A value the parent passed with [`Peer::role`] (`SHMIPC_TEST_<key>`).
pub fn arg(key: &str) -> String {
    let var = format!("{ARG_ENV_PREFIX}{key}");
    std::env::var(&var).unwrap_or_else(|_| panic!("the parent did not pass {var}"))
}

/// Tells the parent one line.
pub fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    // A line of its own, whatever the harness printed before it.
    writeln!(out, "\n{MARKER}{msg}").expect("writing to the parent");
    out.flush().expect("writing to the parent");
}

/// The next line from the parent, or `None` once it closed our stdin.
pub fn hear() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end().to_owned()),
    }
}

/// Waits for the parent to say exactly `word`; panics if it says something else or
/// goes away.
pub fn hear_exactly(word: &str) {
    match hear() {
        Some(w) if w == word => {}
        other => panic!("child expected `{word}` from the parent, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// the parent's side

/// A child process that talks the line protocol. Killed (and reaped) on drop if it
/// is still running, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct Peer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Peer {
    /// Re-runs this test binary with only `test` (its exact name) in the role `role`,
    /// passing each `(key, value)` as `SHMIPC_TEST_<key>`.
    pub fn role(test: &str, role: &str, args: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, role);
        for (k, v) in args {
            cmd.env(format!("{ARG_ENV_PREFIX}{k}"), v);
        }
        Self::spawn(cmd, &format!("{test}/{role}"))
    }

    /// Starts any command that talks the line protocol (e.g. a Python script).
    pub fn spawn(mut cmd: Command, label: &str) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn::spawn_retrying(&mut cmd, label);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(MARKER) {
                    if tx.send(line[at + MARKER.len()..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            label: label.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
            status: None,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let err = self.stderr.lock().unwrap().clone();
        panic!(
            "child {}: {what} (exit: {status:?})\n--- its stderr ---\n{err}--- end ---",
            self.label
        );
    }

    /// The child's next protocol line.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => self.fail("said nothing before the deadline"),
            Err(RecvTimeoutError::Disconnected) => {
                self.fail("ended without saying the next line (wrong test name?)")
            }
        }
    }

    /// Waits for a line starting with `word` and returns the rest of it (trimmed).
    /// Any other line fails the test.
    pub fn expect(&mut self, word: &str) -> String {
        let line = self.next_line();
        match line.strip_prefix(word) {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim().to_owned(),
            _ => self.fail(&format!("said `{line}` where `{word}` was expected")),
        }
    }

    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let ok = self
            .stdin
            .as_mut()
            .is_some_and(|s| writeln!(s, "{line}").and_then(|()| s.flush()).is_ok());
        if !ok {
            self.fail(&format!("could not be sent `{line}`"));
        }
    }

    /// Waits (with a deadline) for the child to exit after closing its stdin.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        self.stdin = None;
        use wait_timeout::ChildExt;
        match self.child.wait_timeout(PATIENCE) {
            Ok(Some(s)) => {
                self.status = Some(s);
                s
            }
            Ok(None) => self.fail("did not exit before the deadline"),
            Err(e) => self.fail(&format!("could not be waited for: {e}")),
        }
    }

    /// Closes the child's stdin, waits for it to exit and fails the test unless it
    /// succeeded.
    pub fn finish(mut self) {
        let status = self.wait();
        if !status.success() {
            let err = self.stderr.lock().unwrap().clone();
            panic!(
                "child {} failed ({status})\n--- its stderr ---\n{err}--- end ---",
                self.label
            );
        }
    }

    /// As [`Peer::finish`], then also waits until every process that shares the
    /// child's stderr (e.g. helpers it started) has closed it, and returns what
    /// was written there.
    pub fn finish_with_stderr(mut self) -> String {
        let status = self.wait();
        let reader = self.stderr_reader.take().expect("stderr reader");
        wait_until("the child's stderr to close", || reader.is_finished());
        let err = self.stderr.lock().unwrap().clone();
        assert!(
            status.success(),
            "child {} failed ({status})\n--- its stderr ---\n{err}--- end ---",
            self.label
        );
        err
    }

    /// Kills the child (SIGKILL on Unix, `TerminateProcess` on Windows) and reaps it:
    /// when this returns, the OS has closed everything the child held.
    pub fn kill(mut self) {
        self.kill_in_place();
    }

    fn kill_in_place(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill_in_place();
    }
}

// ---------------------------------------------------------------------------------
// small conversions for the line protocol

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower-case hex; panics on malformed input.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex `{s}`");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A deterministic byte pattern, different per `seed`, for checking copies.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The text up to the first NUL, as the seed's reader prints it.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
