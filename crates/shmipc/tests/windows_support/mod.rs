//! Helpers for `tests/windows.rs`: unique names, child processes of this test binary
//! (re-run with a role), and bounded waits on conditions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that tells a re-run test binary which role to play.
pub const ROLE: &str = "SHMIPC_WIN_ROLE";

/// How long any wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A name no other test (in this process or another) uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "w-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// This test binary, re-run to play `role` (it runs only the `child_role` test).
pub fn child(role: &str, env: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The lines a child prints, read on a thread so that waiting for one is bounded.
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    pub fn of(child: &mut Child) -> Self {
        let out = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    /// The next line that contains `prefix` (libtest prints on the same line; other
    /// lines are skipped);
    /// panics if none comes within [`PATIENCE`].
    pub fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(prefix) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "no line with {prefix:?} from the child ({e}); it printed:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}

/// Waits for `child` to exit; kills it and panics if it takes longer than [`PATIENCE`].
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    use wait_timeout::ChildExt;
    // `wait_timeout` closes the child's stdin, as `Child::wait` does; keep it open.
    let stdin = child.stdin.take();
    let exited = child.wait_timeout(PATIENCE).expect("waiting for the child");
    child.stdin = stdin;
    if let Some(status) = exited {
        return status;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("child did not exit within {PATIENCE:?}");
}

/// Polls `cond` until it holds; panics with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
