//! `shmipc demo`: the seed's Process 1 and Process 2, run for real as two OS
//! processes (this executable started twice, with the hidden verbs
//! `demo-process1` / `demo-process2`).
//!
//! With Win32 semantics the segment dies with its last holder, so Process 1 must
//! hold it until Process 2 has read it. The demo (the parent) coordinates over
//! pipes, never by sleeping: Process 1 prints a ready line on stdout once the
//! message is written, and holds the segment until its stdin closes; the parent
//! starts Process 2 after the ready line and closes Process 1's stdin after
//! Process 2 has exited. If the parent dies, Process 1's stdin closes too, so
//! Process 1 never outlives the demo.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shmipc::{Access, OpenError, Segment};

use crate::cli::{DemoArgs, RoleArgs};
use crate::output::{self, Result};
use crate::units::human_duration;

/// The seed's segment size and message.
const SIZE: u64 = 1024;
const MESSAGE: &str = "Hello from Process 1";
/// What Process 1 prints once the message is written and it holds the segment.
const READY: &str = "shmipc-demo: ready";
/// How long a peer gets to exit after it was told to, before it is killed.
const GRACE: Duration = Duration::from_secs(2);

pub fn run(args: &DemoArgs) -> Result {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("MyFileMapping-{}", std::process::id()));
    let deadline = Instant::now() + args.timeout;
    let late = |what: &str| {
        format!(
            "demo: {what} within {}: the machine may be overloaded; try a longer --timeout",
            human_duration(args.timeout)
        )
    };
    let exe = std::env::current_exe()
        .map_err(|e| format!("demo: cannot find this program to run Process 1 and 2: {e}"))?;

    output::line(format!(
        "Demo: Process 1 and Process 2 are two separate processes sharing segment `{name}`"
    ))?;
    let mut p1 = Peer::spawn(&exe, "demo-process1", &name, Stdio::piped())?;
    let lines = p1.lines()?;
    // Relay Process 1's story until it holds the segment with the message in it.
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line == READY => break,
            Ok(line) => output::line(line)?,
            Err(RecvTimeoutError::Disconnected) => return Err(p1.failure(deadline).into()),
            Err(RecvTimeoutError::Timeout) => {
                return Err(late("Process 1 did not create and write the segment").into())
            }
        }
    }

    let mut p2 = Peer::spawn(&exe, "demo-process2", &name, Stdio::inherit())?;
    if !p2.wait(deadline)? {
        return Err(late("Process 2 did not finish").into());
    }
    if !p2.succeeded() {
        return Err(p2.failure(deadline).into());
    }

    // Process 2 has read the message: let Process 1 close its view and handle.
    p1.release();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => output::line(line)?,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                return Err(late("Process 1 did not close the segment").into())
            }
        }
    }
    if !p1.wait(deadline)? {
        return Err(late("Process 1 did not exit").into());
    }
    if !p1.succeeded() {
        return Err(p1.failure(deadline).into());
    }

    let left = match Segment::info(&name) {
        Ok(_) => true,
        Err(OpenError::NotFound { .. }) => Path::new("/dev/shm").join(&name).exists(),
        Err(e) => return Err(e.into()),
    };
    if left {
        return Err(format!(
            "demo: segment `{name}` is still there after its last holder closed it, which is a bug in shmipc: remove it with `{rm}`", rm = crate::output::suggest("rm", &name))
        .into());
    }
    output::line(format!(
        "Demo: Process 1 was the last holder, so segment `{name}` is gone: nothing is left behind"
    ))
}

/// Process 1: creates the segment, writes the message, holds it until released.
pub fn process1(args: &RoleArgs) -> Result {
    let name = &args.name;
    // Released when the demo closes our stdin (or dies), or by Ctrl-C / SIGTERM,
    // so that the segment is always closed, never left stale.
    let (release, released) = mpsc::channel::<()>();
    let on_signal = release.clone();
    ctrlc::set_handler(move || {
        let _ = on_signal.send(());
    })?;

    // CreateFileMapping(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 1024, name)
    let mapping = Segment::create(name, SIZE)?;
    // MapViewOfFile(hFileMapping, FILE_MAP_WRITE, 0, 0, 1024)
    let view = mapping.map(0, 1024)?;
    // strcpy_s(pData, 1024, "Hello from Process 1")
    view.write_at(0, format!("{MESSAGE}\0").as_bytes())?;
    output::line(format!(
        "Process 1: created segment `{name}` ({SIZE} bytes of system memory) and mapped a view of it"
    ))?;
    output::line(format!(
        "Process 1: wrote \"{MESSAGE}\" and holds the segment until Process 2 has read it"
    ))?;
    output::line(READY)?;

    thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = release.send(());
    });
    let _ = released.recv();
    // UnmapViewOfFile(pMapView); CloseHandle(hFileMapping)
    drop(view);
    drop(mapping);
    output::line("Process 1: unmapped its view and closed its handle")
}

/// Process 2: opens the segment read-only and prints the message.
pub fn process2(args: &RoleArgs) -> Result {
    let name = &args.name;
    // OpenFileMapping(FILE_MAP_READ, FALSE, name)
    let mapping = Segment::open(name, Access::Read)?;
    // MapViewOfFile(hFileMapping, FILE_MAP_READ, 0, 0, 1024)
    let view = mapping.map(0, 1024)?;
    let mut data = [0u8; 1024];
    view.read_at(0, &mut data)?;
    let text = data.split(|&b| b == 0).next().unwrap_or_default();
    output::line(format!(
        "Process 2: opened segment `{name}` read-only and mapped a view of its {} bytes",
        view.len()
    ))?;
    // cout << "Received message from Process 1: " << pData << endl;
    output::line(format!(
        "Received message from Process 1: {}",
        String::from_utf8_lossy(text)
    ))?;
    // UnmapViewOfFile(pMapView); CloseHandle(hFileMapping)
    drop(view);
    drop(mapping);
    output::line("Process 2: unmapped its view and closed its handle")
}

/// A child running one of the roles. Dropping it releases the child, waits a little,
/// and kills it if it is still there, so no error path leaves a process behind.
struct Peer {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
}

impl Peer {
    fn spawn(exe: &Path, role: &str, name: &str, stdout: Stdio) -> Result<Self> {
        let label = if role.ends_with('1') {
            "Process 1"
        } else {
            "Process 2"
        };
        let mut child = Command::new(exe)
            .args([role, "--", name])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("demo: cannot start {label}: {e}"))?;
        // Read stderr as it comes, so a chatty child never blocks on a full pipe.
        let stderr = child.stderr.take().map(|mut pipe| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Ok(Self {
            label,
            stdin: child.stdin.take(),
            child,
            stderr,
        })
    }

    /// The child's stdout lines; the channel closes at its end of output.
    fn lines(&mut self) -> Result<Receiver<String>> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or("demo: Process 1's output is not a pipe")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// Closes the child's stdin: Process 1 takes that as "let go".
    fn release(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for the child to exit until `deadline`; false if it is still running.
    fn wait(&mut self, deadline: Instant) -> Result<bool> {
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn succeeded(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(s)) if s.success())
    }

    /// Why the child failed, in one line: its own one-line error where it gave one.
    fn failure(&mut self, deadline: Instant) -> String {
        let label = self.label;
        if !matches!(self.wait(deadline), Ok(true)) {
            return format!("demo: {label} stopped talking but did not exit");
        }
        let said = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let said = said
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.strip_prefix("shmipc: ").unwrap_or(l).to_owned());
        match (said, self.child.try_wait()) {
            (Some(said), _) => format!("demo: {label} failed: {said}"),
            (None, Ok(Some(status))) => format!("demo: {label} failed ({status})"),
            (None, _) => format!("demo: {label} failed"),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.release();
        if matches!(self.wait(Instant::now() + GRACE), Ok(true)) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
