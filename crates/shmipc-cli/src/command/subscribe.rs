//! `shmipc sub TOPIC [--count N] [--timeout DUR] [--history N] [--json] [creation options]`

use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use shmipc::channel::pubsub::{Overflow, Sample, Subscriber};
use shmipc::channel::RecvError;

use super::topic;
use crate::cli::SubArgs;
use crate::output::{self, Result};
use crate::units;

/// Longest pause between looks while the topic has no publisher (a receive then
/// returns at once rather than sleeping until a message comes).
const NO_PUBLISHER_POLL: Duration = Duration::from_millis(10);

/// How often a `sub` with no publisher looks whether its topic's name still names
/// the topic it reads.
const NAME_CHECK: Duration = Duration::from_secs(1);

/// An error when the name no longer names the topic this `sub` reads. A topic
/// removed (`shmipc rm`) while `sub` runs lives on for it, but every later `pub`
/// makes or finds another topic under the name: without this look the `sub`
/// waited deaf for ever, or timed out asking whether anything publishes. The
/// library compares the object itself (Linux: device and inode), so a name
/// removed and made again at any time, before the first look included, is
/// noticed. Where the OS cannot tell (macOS), only a name that is gone is.
fn check_named(sub: &Subscriber, name: &str) -> Result {
    let Some(what) = super::object::removed(sub.is_still_named(), name) else {
        return Ok(());
    };
    Err(format!(
        "topic `{name}` was removed (`{rm}`) while this sub read it{what}: nothing published under the name reaches this sub any more; start `{sub}` again", rm = crate::output::suggest("rm", name), sub = crate::output::suggest("sub", name))
    .into())
}

pub fn run(args: &SubArgs) -> Result {
    let name = &args.topic;
    topic::check_kind(name)?;
    let options = topic::options(&args.create);
    options.validate(name).map_err(|e| topic::error(e, name))?;
    if args.count == Some(0) {
        // Nothing to receive: neither create the topic nor attach to it (a bad
        // name was refused before this, by `command::run`).
        return Ok(());
    }
    let (sub, _) = topic::open_or_create(
        || Subscriber::open_with_history(name, args.history),
        || options.create_or_open_subscriber_with_history(name, args.history),
    )
    .map_err(|e| topic::error(e, name))?;
    let mut out = Out::new();
    let r = receive(args, &sub, &mut out);
    // Whatever happened, what was received is printed.
    let flushed = out.flush();
    r.and(flushed)
}

fn receive(args: &SubArgs, sub: &Subscriber, out: &mut Out) -> Result {
    let name = &args.topic;
    let mut received = 0u64;
    let mut pause = Duration::from_millis(1);
    let mut deadline = args.timeout.map(|t| Instant::now() + t);
    let mut next_check = Instant::now() + NAME_CHECK;
    loop {
        if args.count.is_some_and(|n| received >= n) {
            return Ok(());
        }
        // What is there already is taken without waiting; before waiting (for
        // this publisher or, gone, the next one), what was printed is flushed,
        // so a reader never waits for a line that came.
        let got = match sub.try_recv() {
            Ok(sample) => Ok(sample),
            Err(e) => {
                out.flush()?;
                // Nobody reads our output any more: stop, rather than hold a
                // subscriber's place until the next message shows it.
                if out.reader_gone() {
                    return Err(output::stdout_error(std::io::ErrorKind::BrokenPipe.into()));
                }
                match e {
                    RecvError::Empty => {
                        // In slices, to look at the name now and then.
                        let now = Instant::now();
                        let until = deadline.map_or(now + NAME_CHECK, |d| d.min(now + NAME_CHECK));
                        sub.recv_timeout(until.saturating_duration_since(now))
                    }
                    e => Err(e),
                }
            }
        };
        match got {
            Ok(sample) => {
                pause = Duration::from_millis(1);
                print(args, out, &sample, sub.overflow())?;
                received += 1;
                deadline = args.timeout.map(|t| Instant::now() + t);
            }
            Err(RecvError::Empty) => {
                if let (Some(d), Some(t)) = (deadline, args.timeout) {
                    if Instant::now() >= d {
                        return Err(timed_out(args, name, t, received));
                    }
                }
                // A live publisher on the removed topic still reaches this sub.
                if Instant::now() >= next_check && !sub.publisher_present() {
                    check_named(sub, name)?;
                    next_check = Instant::now() + NAME_CHECK;
                }
            }
            // The publisher left (or died) and everything it sent has been read:
            // wait for the next one, looking now and then.
            Err(RecvError::Disconnected) => {
                if Instant::now() >= next_check {
                    check_named(sub, name)?;
                    next_check = Instant::now() + NAME_CHECK;
                }
                let mut nap = pause;
                if let Some(d) = deadline {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(timed_out(
                            args,
                            name,
                            args.timeout.unwrap_or_default(),
                            received,
                        ));
                    }
                    nap = nap.min(left);
                }
                std::thread::sleep(nap);
                pause = (pause * 2).min(NO_PUBLISHER_POLL);
            }
            Err(e) => return Err(format!("topic `{name}`: {e}").into()),
        }
    }
}

/// Stdout, flushed after every message when it is a terminal, else in batches.
struct Out {
    w: BufWriter<Stdout>,
    terminal: bool,
}

impl Out {
    fn new() -> Self {
        let stdout = std::io::stdout();
        Self {
            terminal: stdout.is_terminal(),
            w: BufWriter::with_capacity(64 * 1024, stdout),
        }
    }

    fn line(&mut self, text: &str) -> Result {
        self.w
            .write_all(text.as_bytes())
            .and_then(|()| self.w.write_all(b"\n"))
            .and_then(|()| {
                if self.terminal {
                    self.w.flush()
                } else {
                    Ok(())
                }
            })
            .map_err(output::stdout_error)
    }

    fn flush(&mut self) -> Result {
        self.w.flush().map_err(output::stdout_error)
    }

    /// Whether stdout is a pipe or Unix socket whose reading end is closed
    /// (`shmipc sub T | head -1` once `head` has exited): a write would fail with
    /// `EPIPE`, but nothing is written while no message comes. `poll` reports it
    /// as `POLLERR` or `POLLHUP` without writing (so does a terminal that hung
    /// up; a file never). `POLLOUT` is asked for: macOS reports a closed pipe
    /// only for the events asked for. (A FIFO whose reader reopens it ends the
    /// `sub` in the gap between readers.)
    #[cfg(unix)]
    fn reader_gone(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use std::os::fd::AsFd;

        let stdout = std::io::stdout();
        let fd = stdout.as_fd();
        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0)
            && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
    }

    /// Elsewhere a closed reader is noticed at the next write.
    #[cfg(not(unix))]
    fn reader_gone(&self) -> bool {
        false
    }
}

fn timed_out(args: &SubArgs, name: &str, t: Duration, received: u64) -> crate::output::Error {
    let so_far = match (args.count, received) {
        (Some(n), r) => format!(" ({r} of {n} messages received)"),
        (None, 0) => String::new(),
        (None, 1) => " (1 message received before)".to_owned(),
        (None, r) => format!(" ({r} messages received before)"),
    };
    format!(
        "no message on topic `{name}` for {}{so_far}: is anything publishing? (`{info}` shows its publisher); wait longer with --timeout",
        units::human_duration(t), info = crate::output::suggest("info", name))
    .into()
}

fn print(args: &SubArgs, out: &mut Out, sample: &Sample<'_>, overflow: Overflow) -> Result {
    let (msg, seq, lost) = (&sample[..], sample.seq(), sample.lost());
    if args.json {
        let text = std::str::from_utf8(msg).ok();
        let line = json!({
            "seq": seq,
            "lost": lost,
            "len": msg.len(),
            "text": text,
            "hex": if text.is_some() { None } else { Some(hex(msg)) },
        });
        return out.line(&crate::report::bidi_escaped(line.to_string()));
    }
    if lost > 0 {
        // In order with the lines around it.
        out.flush()?;
        let s = if lost == 1 { "" } else { "s" };
        let topic = &args.topic;
        output::warn(if overflow == Overflow::Block {
            // A lossless topic's publisher never frees what a live subscriber
            // has not read: something else changed the topic's memory, or this
            // subscriber was taken for dead.
            format!(
                "lost {lost} message{s} on topic `{topic}` before the next one, although the topic is lossless: its shared memory was changed by something other than shmipc (or this subscriber was taken for dead); check what else writes to it"
            )
        } else {
            format!(
                "lost {lost} message{s} on topic `{topic}` before the next one: they were overwritten before this subscriber read them (it is slower than the publisher; a larger --capacity helps, or a lossless topic: one created without --overwrite)"
            )
        });
    }
    out.line(&escape(&String::from_utf8_lossy(msg)))
}

/// One line for people: control characters but tab, and bidirectional-text
/// controls, escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if output::is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
