//! Subscribes to a pubsub topic on a current-thread tokio runtime and prints each
//! message as a line (as `shmipc sub` does), while a tokio interval ticks: the
//! runtime is never blocked by the wait.
//!
//! `cargo run --release -p shmipc --example async_subscriber -- TOPIC COUNT`
//!
//! Exits 0 after COUNT messages; the tick count goes to stderr at exit.

use std::time::Duration;

use shmipc::channel::pubsub::{Options, Overflow, Sample};
use shmipc::channel::RecvError;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(topic), Some(count)) = (args.next(), args.next()) else {
        return Err("usage: async_subscriber TOPIC COUNT".into());
    };
    let count: u64 = count
        .parse()
        .map_err(|_| format!("COUNT `{count}` is not a number of messages"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        let sub = Options::default().create_or_open_subscriber(&topic)?;
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        let mut ticks = 0u64;
        let mut received = 0u64;
        // One receive in flight across the ticks, not a new one per turn of the
        // loop: a receive that waits keeps its place (and its one announcement to
        // the publisher) while the ticks come and go.
        let mut next = std::pin::pin!(sub.recv_async());
        while received < count {
            tokio::select! {
                _ = ticker.tick() => ticks += 1,
                got = &mut next => {
                    // The sample is read in place; it is released when dropped.
                    let sample = match got {
                        Ok(sample) => sample,
                        // No publisher now (none yet, or it left and everything it
                        // sent was read): look again soon, as `shmipc sub` does.
                        Err(RecvError::Disconnected) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            next.set(sub.recv_async());
                            continue;
                        }
                        Err(e) => return Err(format!("topic `{topic}`: {e}").into()),
                    };
                    print(&topic, &sample, sub.overflow());
                    drop(sample);
                    received += 1;
                    next.set(sub.recv_async());
                }
            }
        }
        eprintln!("ticks: {ticks}");
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// Prints a sample as `shmipc sub` does: a warning for messages lost before it
/// (to stderr), with the reason its topic allows, then the message as one line.
fn print(topic: &str, sample: &Sample<'_>, overflow: Overflow) {
    let lost = sample.lost();
    if lost > 0 {
        let why = match overflow {
            Overflow::Overwrite => "they were overwritten before this subscriber read them (it is slower than the publisher)",
            // A lossless topic keeps what a live subscriber has not read: a loss
            // means something other than shmipc changed its memory, or this
            // subscriber was taken for dead (stopped for a long time).
            _ => "the topic is lossless, so its memory was changed by something other than shmipc, or this subscriber was taken for dead",
        };
        eprintln!(
            "async_subscriber: lost {lost} message{} on topic `{topic}` before the next one: {why}",
            if lost == 1 { "" } else { "s" },
        );
    }
    println!("{}", escape(&String::from_utf8_lossy(sample)));
}

/// One line for people, as `shmipc sub` prints it: control characters but tab
/// escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}
