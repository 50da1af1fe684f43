//! Helpers for the end-to-end tests: run the real `shmipc` binary, unique names,
//! cleanup guards, and waiting on conditions with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long any awaited event may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn shmipc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmipc"))
}

/// Runs `shmipc ARGS` with no stdin.
pub fn run(args: &[&str]) -> Output {
    shmipc()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running shmipc")
}

/// Starts `shmipc ARGS` with stdin, stdout and stderr piped.
pub fn spawn_piped(args: &[&str]) -> std::process::Child {
    shmipc()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running shmipc")
}

/// Runs `shmipc ARGS` with `input` on stdin.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = spawn_piped(args);
    let mut stdin = child.stdin.take().expect("piped stdin");
    // The command may stop reading early (data too large): ignore a broken pipe.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("waiting for shmipc")
}

/// Stdout of a run that must succeed (with an empty stderr).
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert_success(&out, args);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "shmipc {args:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "shmipc {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a failure with exit code `code` and exactly one line `shmipc: …` on
/// stderr; returns that line.
pub fn assert_fails(out: &Output, code: i32, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "shmipc {args:?}: want exit code {code}; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "shmipc {args:?}: want one line on stderr, got {stderr:?}"
    );
    assert!(
        lines[0].starts_with("shmipc: ") && lines[0].len() > "shmipc: ".len() + 10,
        "shmipc {args:?}: stderr line {:?}",
        lines[0]
    );
    assert!(
        !stderr.contains("panicked"),
        "shmipc {args:?} panicked: {stderr}"
    );
    lines[0].to_owned()
}

/// A name no other test (in this or another process) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "cli-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where Linux keeps a named segment.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(name)
}

/// Whether anything under `name` is left in /dev/shm (a stale segment included).
pub fn left_behind(name: &str) -> bool {
    shm_path(name).symlink_metadata().is_ok()
}

/// Removes the segment when dropped, so a failing test leaves nothing behind.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = shmipc::Segment::remove(&self.0);
    }
}

/// A running child that is killed and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `shmipc ARGS` with stdout piped and a channel of its stdout lines.
pub fn spawn_lines(args: &[&str]) -> (Running, Receiver<String>) {
    let mut child = shmipc()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting shmipc");
    let stdout = child.stdout.take().expect("piped stdout");
    (Running(child), lines_of(stdout))
}

/// A channel of the lines a child prints.
pub fn lines_of(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line, waiting at most [`PATIENCE`].
pub fn next_line(lines: &Receiver<String>) -> String {
    lines
        .recv_timeout(PATIENCE)
        .expect("the command printed no line in time")
}

/// Waits until the child exits, at most [`PATIENCE`].
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    use wait_timeout::ChildExt;
    // `wait_timeout` closes the child's stdin, as `Child::wait` does; a test may
    // still need it open while the child exits (e.g. one killed by a signal).
    let stdin = child.stdin.take();
    let status = child
        .wait_timeout(PATIENCE)
        .expect("waiting for the child")
        .unwrap_or_else(|| panic!("the child did not exit within {PATIENCE:?}"));
    child.stdin = stdin;
    status
}

/// Everything the (exited) child wrote to its piped stderr.
pub fn stderr_text(child: &mut Child) -> String {
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("a piped stderr"), &mut err)
        .expect("read the child's stderr");
    err
}

/// Parses JSON output.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Waits until `cond` holds, at most [`PATIENCE`]; panics naming `what` otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "waited {PATIENCE:?} for {what} in vain"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
