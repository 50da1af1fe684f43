//! The peer process: this binary re-run with `--role peer`, pinned to CPU 1, driven
//! by one-line commands on its stdin, answering on its stdout.
//!
//! Commands (harness -> peer) and answers (peer -> harness):
//!
//! * `setup-lat NAME` / `setup-tp NAME`: set up the peer's end -> `ok`
//! * `lat NAME LEN`: echo `LEN`-byte round trips until the STOP message -> `done N`
//! * `tp NAME LEN COUNT`: produce `COUNT` messages of `LEN` bytes -> `done COUNT`
//! * `quit`: exit.
//!
//! Any failure answers `err MESSAGE` (and the harness stops). If the harness dies, the
//! peer's stdin closes and it exits; a wait for a dead harness inside a contender
//! ends after `spin::PATIENCE` (or when the kernel object's other end closes).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::RawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::ctx::Ctx;
use crate::{latency, throughput, Error, Result};

/// Pins the calling process to `cpu`; says why not if it cannot.
pub fn pin(cpu: usize) -> std::result::Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}

/// The harness's handle on the peer.
#[derive(Debug)]
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    quit: bool,
}

impl Peer {
    /// Starts the peer and waits for its greeting.
    pub fn spawn(ctx: &Ctx, pin_cpu: Option<usize>) -> Result<Peer> {
        let exe = std::env::current_exe()?;
        let fds: Vec<String> = ctx.raw_fds().iter().map(i32::to_string).collect();
        let mut cmd = Command::new(exe);
        cmd.arg("--role")
            .arg("peer")
            .arg("--prefix")
            .arg(&ctx.prefix)
            .arg("--fds")
            .arg(fds.join(","));
        if let Some(cpu) = pin_cpu {
            cmd.arg("--pin").arg(cpu.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the peer process: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the peer process has no stdin/stdout pipe".into());
        };
        let mut peer = Peer {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            quit: false,
        };
        let hello = peer.answer()?;
        if !hello.starts_with("hello") {
            return Err(format!("the peer greeted with {hello:?}").into());
        }
        Ok(peer)
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("the peer process is gone ({e})").into())
    }

    /// Reads one answer; `err ...` and end of file become errors.
    pub fn answer(&mut self) -> Result<String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line)?;
        if n == 0 {
            let status = self.child.wait()?;
            return Err(format!("the peer process exited ({status})").into());
        }
        let line = line.trim_end().to_string();
        match line.strip_prefix("err ") {
            Some(msg) => Err(format!("peer: {msg}").into()),
            None => Ok(line),
        }
    }

    /// Sends a command and expects an answer starting with `want`.
    pub fn call(&mut self, line: &str, want: &str) -> Result<String> {
        self.send(line)?;
        let a = self.answer()?;
        if !a.starts_with(want) {
            return Err(format!("peer answered {a:?} to {line:?}").into());
        }
        Ok(a)
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Tells the peer to exit and waits for it.
    pub fn quit(mut self) -> Result<()> {
        self.send("quit")?;
        let status = self.child.wait()?;
        self.quit = true;
        if !status.success() {
            return Err(format!("the peer process exited with {status}").into());
        }
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if !self.quit {
            // An error ended the run: end the peer we started, by its handle.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The peer's main loop.
pub fn main(prefix: String, fds: &[RawFd], pin_cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = pin_cpu {
        pin(cpu)?;
    }
    let mut ctx = Ctx::server(prefix, fds)?;
    let mut lat: HashMap<String, Box<dyn latency::RoundTrip>> = HashMap::new();
    let mut tp: HashMap<String, Box<dyn throughput::Stream>> = HashMap::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    writeln!(out, "hello {}", std::process::id())?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            return Ok(());
        }
        let answer = match command(&mut ctx, &mut lat, &mut tp, &words) {
            Ok(a) => a,
            Err(e) => format!("err {}", one_line(&e)),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}

fn one_line(e: &Error) -> String {
    e.to_string().replace('\n', " ")
}

fn num<T: std::str::FromStr>(w: Option<&&str>, what: &str) -> Result<T> {
    w.and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("missing or bad {what}").into())
}

fn command(
    ctx: &mut Ctx,
    lat: &mut HashMap<String, Box<dyn latency::RoundTrip>>,
    tp: &mut HashMap<String, Box<dyn throughput::Stream>>,
    words: &[&str],
) -> Result<String> {
    let name = words.get(1).copied().unwrap_or_default();
    match words.first().copied() {
        Some("setup-lat") => {
            let c = latency::CONTENDERS
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("no latency contender {name}"))?;
            let open = c.open.ok_or_else(|| format!("{name} is not wired"))?;
            lat.insert(name.to_string(), open(ctx)?);
            Ok("ok".into())
        }
        Some("setup-tp") => {
            let c = throughput::CONTENDERS
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| format!("no throughput contender {name}"))?;
            let open = c.open.ok_or_else(|| format!("{name} is not wired"))?;
            tp.insert(name.to_string(), open(ctx)?);
            Ok("ok".into())
        }
        Some("lat") => {
            let len: usize = num(words.get(2), "length")?;
            if !(8..=latency::MAX_PAYLOAD).contains(&len) {
                return Err(format!("length {len} is outside 8..={}", latency::MAX_PAYLOAD).into());
            }
            let ep = lat
                .get_mut(name)
                .ok_or_else(|| format!("{name} is not set up"))?;
            let n = ep.serve(len)?;
            Ok(format!("done {n}"))
        }
        Some("tp") => {
            let len: usize = num(words.get(2), "length")?;
            let count: u64 = num(words.get(3), "count")?;
            if !(8..=throughput::MAX_PAYLOAD).contains(&len) {
                return Err(
                    format!("length {len} is outside 8..={}", throughput::MAX_PAYLOAD).into(),
                );
            }
            let ep = tp
                .get_mut(name)
                .ok_or_else(|| format!("{name} is not set up"))?;
            ep.begin(len)?;
            ep.produce(len, count)?;
            Ok(format!("done {count}"))
        }
        _ => Err(format!("unknown command {words:?}").into()),
    }
}
