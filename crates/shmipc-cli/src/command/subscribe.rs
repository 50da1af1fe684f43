//! `shmipc sub TOPIC [--count N] [--timeout DUR] [--history N] [--json] [creation options]`

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use shmipc::channel::pubsub::Subscriber;
use shmipc::channel::RecvError;

use super::topic;
use crate::cli::SubArgs;
use crate::output::{self, Result};
use crate::units;

/// Longest pause between looks while the topic has no publisher (a receive then
/// returns at once rather than sleeping until a message comes).
const NO_PUBLISHER_POLL: Duration = Duration::from_millis(10);

pub fn run(args: &SubArgs) -> Result {
    let name = &args.topic;
    topic::check_kind(name)?;
    let options = topic::options(&args.create).history(args.history);
    let mut sub = topic::open_or_create(
        || Subscriber::open_with_history(name, args.history),
        || options.create_or_open_subscriber(name),
    )
    .map_err(|e| topic::error(e, name))?;
    let mut received = 0u64;
    let mut buf = Vec::new();
    let mut pause = Duration::from_millis(1);
    let mut deadline = args.timeout.map(|t| Instant::now() + t);
    loop {
        if args.count.is_some_and(|n| received >= n) {
            return Ok(());
        }
        let got = match deadline {
            None => sub.recv_into(&mut buf),
            Some(d) => sub.recv_into_timeout(&mut buf, d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(lost) => {
                pause = Duration::from_millis(1);
                print(args, &sub, &buf, lost)?;
                received += 1;
                deadline = args.timeout.map(|t| Instant::now() + t);
            }
            Err(RecvError::Empty) => {
                if let (Some(d), Some(t)) = (deadline, args.timeout) {
                    if Instant::now() >= d {
                        return Err(timed_out(args, name, t, received));
                    }
                }
            }
            // The publisher left (or died) and everything it sent has been read:
            // wait for the next one, looking now and then.
            Err(RecvError::Disconnected) => {
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

fn timed_out(args: &SubArgs, name: &str, t: Duration, received: u64) -> crate::output::Error {
    let so_far = match (args.count, received) {
        (Some(n), r) => format!(" ({r} of {n} messages received)"),
        (None, 0) => String::new(),
        (None, r) => format!(" ({r} messages received before)"),
    };
    format!(
        "no message on topic `{name}` for {}{so_far}: is anything publishing? (`shmipc info {name}` shows its publisher); wait longer with --timeout",
        units::human_duration(t)
    )
    .into()
}

fn print(args: &SubArgs, sub: &Subscriber, msg: &[u8], lost: u64) -> Result {
    let seq = sub.next_seq().wrapping_sub(1);
    if args.json {
        let text = std::str::from_utf8(msg).ok();
        let line = json!({
            "seq": seq,
            "lost": lost,
            "len": msg.len(),
            "text": text,
            "hex": if text.is_some() { None } else { Some(hex(msg)) },
        });
        return output::line(line.to_string());
    }
    if lost > 0 {
        output::warn(format!(
            "lost {lost} message{} on topic `{}` before the next one: they were overwritten before this subscriber read them (it is slower than the publisher; a larger --capacity helps)",
            if lost == 1 { "" } else { "s" },
            args.topic
        ));
    }
    output::line(escape(&String::from_utf8_lossy(msg)))
}

/// One line for people: control characters but tab escaped.
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
