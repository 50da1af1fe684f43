//! `shmipc-bridge`: carries shmipc pubsub topics between hosts over zenoh.
//!
//! ```text
//! shmipc-bridge [--listen ENDPOINT]... [--connect ENDPOINT]... [--scout]
//!               [--export TOPIC[=KEY]]... [--import KEY[=TOPIC]]... [--lossless]
//! ```
//!
//! `local.rs` is the only module that uses shmipc, `wire.rs` what travels with each
//! sample, `bridge.rs` the zenoh side and the threads.

mod bridge;
mod local;
mod wire;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// Carries shmipc pubsub topics between hosts over zenoh.
///
/// Each `--export` subscribes to a local topic and puts every sample to a zenoh key;
/// each `--import` subscribes to a zenoh key and publishes every sample on a local
/// topic (the bridge is then that topic's one publisher). Topics are created where
/// missing. zenoh's own clients read and put one zenoh sample per shmipc sample on
/// KEY; between bridges samples travel packed, many to a zenoh message, on
/// KEY/@shmipc. Logs (connections, per-topic rates, gaps) go to stderr; RUST_LOG
/// filters them (default `info`).
#[derive(Debug, Parser)]
#[command(name = "shmipc-bridge", version)]
struct Args {
    /// Listen for zenoh peers at ENDPOINT (a zenoh locator, e.g. tcp/0.0.0.0:7447).
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    listen: Vec<String>,
    /// Connect to a zenoh peer at ENDPOINT (retried until it answers, and after it
    /// goes away).
    #[arg(long, value_name = "ENDPOINT", value_parser = parse_endpoint)]
    connect: Vec<String>,
    /// Find peers by UDP multicast scouting too (off: explicit endpoints only).
    #[arg(long)]
    scout: bool,
    /// Put every sample of local TOPIC to zenoh KEY (default shmipc/TOPIC).
    #[arg(long, value_name = "TOPIC[=KEY]", value_parser = parse_export)]
    export: Vec<(String, String)>,
    /// Publish every sample of zenoh KEY on local TOPIC (default: KEY's last element).
    #[arg(long, value_name = "KEY[=TOPIC]", value_parser = parse_import)]
    import: Vec<(String, String)>,
    /// Lossless and in order: reliable zenoh delivery with blocking congestion control,
    /// topics created in block mode, and backpressure from the slowest subscriber
    /// back to the publisher. Without it, nothing waits and losses are reported.
    #[arg(long)]
    lossless: bool,
    /// Slots of a topic the bridge creates.
    #[arg(long, value_name = "N", default_value_t = 256)]
    capacity: usize,
    /// Largest sample of a topic the bridge creates, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    slot_size: usize,
    /// Subscriber places of a topic the bridge creates.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_subscribers: usize,
    /// After each sample, an export keeps polling its topic this long (yielding the
    /// CPU between polls) before it sleeps: a stream with samples closer together
    /// finds it awake, saving a cross-process wake-up (tens of µs) per sample; a
    /// sparse one costs up to this much CPU time per sample. 0: sleep at once.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 1000)]
    spin_us: u64,
    /// Sets one entry of the zenoh configuration, after the bridge's own (KEY is its
    /// path in zenoh's configuration file, VALUE JSON5), e.g.
    /// `transport/link/tx/queue/batching/time_limit=2`. Repeatable.
    #[arg(long = "zenoh", value_name = "KEY=VALUE", value_parser = parse_zenoh_setting)]
    zenoh: Vec<(String, String)>,
    /// Seconds between rate logs (0: none).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    stats: f64,
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    let ep: zenoh::config::EndPoint = s.parse().map_err(|_| {
        format!("`{s}` is not a zenoh endpoint: write tcp/ADDRESS:PORT, e.g. tcp/192.0.2.1:7447")
    })?;
    if ep.protocol().as_str() != "tcp" {
        return Err(format!(
            "`{s}`: only tcp endpoints are built into shmipc-bridge (tcp/ADDRESS:PORT)"
        ));
    }
    Ok(s.to_owned())
}

fn parse_zenoh_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!(
            "`{s}`: write KEY=VALUE, a path in zenoh's configuration and a JSON5 value, \
             e.g. transport/link/tx/batch_size=8192"
        )),
    }
}

fn parse_export(s: &str) -> Result<(String, String), String> {
    let (topic, key) = match s.split_once('=') {
        Some((t, k)) => (t.to_owned(), k.to_owned()),
        None => (s.to_owned(), format!("shmipc/{s}")),
    };
    check_topic(&topic)?;
    check_key(&key)?;
    Ok((topic, key))
}

fn parse_import(s: &str) -> Result<(String, String), String> {
    let (key, topic) = match s.split_once('=') {
        Some((k, t)) => (k.to_owned(), t.to_owned()),
        None => {
            let last = s.rsplit('/').next().unwrap_or(s);
            (s.to_owned(), last.to_owned())
        }
    };
    check_key(&key)?;
    if topic.contains('*') || topic.contains('$') {
        return Err(format!(
            "`{key}` ends in a wildcard: name the local topic (--import {key}=TOPIC)"
        ));
    }
    check_topic(&topic)?;
    Ok((key, topic))
}

fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.contains('/') || topic.contains('\\') || topic == ".." {
        return Err(format!(
            "`{topic}` is not a topic name: use a non-empty name without path separators"
        ));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), String> {
    zenoh::key_expr::KeyExpr::try_from(key)
        .map(|_| ())
        .map_err(|e| format!("`{key}` is not a zenoh key expression: {e}"))
}

/// Free memory glibc keeps at the top of a heap before it hands it back to the
/// kernel (its default: 128 KiB, raised with the largest block freed from `mmap`).
///
/// zenoh receives into buffers of one batch (64 KiB by default), and a message that
/// arrives in fragments (a packed put of several 64 KiB samples) holds one buffer per
/// fragment until it is whole: each put allocates and frees a few hundred KiB on a
/// receive thread's heap. At glibc's default the free trims that heap
/// (`madvise(MADV_DONTNEED)`: a TLB shootdown across CPUs) and the next put faults
/// the pages back in and zeroes them: 450-1200 `madvise` calls a second at 64 KiB
/// samples, and in alternating runs here 64 KiB throughput through two bridges rose
/// from 0.80x to 0.92x of zenoh's own with these settings (BENCH.md, sixth round).
/// The cost: up to this much freed memory per heap stays with the process (a
/// thread's heap is at most 64 MiB, so those are in effect never trimmed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const KEEP_FREED: libc::c_int = 64 << 20;

/// Blocks from this size up get their own `mmap` (and `munmap` when freed). Setting
/// [`KEEP_FREED`] turns off glibc's own adjustment of this threshold (which follows
/// the largest block freed, up to 32 MiB on 64-bit), so it is set too, to that
/// adjustment's ceiling, or every block over 128 KiB would be mapped, faulted in and
/// unmapped each time (4 MiB measured 0.89x of zenoh's 64 KiB throughput where 32
/// MiB measured 0.95x, alternating runs).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING_FROM: libc::c_int = 32 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // The user's own tuning (the environment variables, or glibc's tunables) wins.
    let tuned = std::env::vars_os().any(|(k, v)| {
        let k = k.to_string_lossy();
        k.starts_with("MALLOC_") && k.ends_with("_THRESHOLD_")
            || k == "GLIBC_TUNABLES" && v.to_string_lossy().contains("glibc.malloc.")
    });
    if tuned {
        return;
    }
    // SAFETY: `mallopt` only sets allocator tuning parameters (it takes the arenas'
    // locks itself); it is called first thing in `main`, before this process starts
    // any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP_FREED);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if args.export.is_empty() && args.import.is_empty() {
        tracing::warn!("nothing to bridge: give --export or --import");
    }
    let Ok(stats) = Duration::try_from_secs_f64(args.stats) else {
        eprintln!(
            "shmipc-bridge: --stats {} is not a number of seconds >= 0 that fits a duration \
             (0 turns the rate lines off)",
            args.stats
        );
        return ExitCode::from(2);
    };
    let plan = bridge::Plan {
        listen: args.listen,
        connect: args.connect,
        scout: args.scout,
        exports: args.export,
        imports: args.import,
        topics: local::TopicSettings {
            lossless: args.lossless,
            capacity: args.capacity,
            slot_size: args.slot_size,
            max_subscribers: args.max_subscribers,
        },
        stats,
        spin: Duration::from_micros(args.spin_us),
        zenoh: args.zenoh,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    if let Err(e) = ctrlc::set_handler(move || s.store(true, Ordering::Relaxed)) {
        eprintln!("shmipc-bridge: cannot handle Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    match bridge::run(&plan, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmipc-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_and_import_defaults() {
        let p = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(parse_export("news"), Ok(p("news", "shmipc/news")));
        assert_eq!(parse_export("news=a/b"), Ok(p("news", "a/b")));
        assert_eq!(parse_import("a/b/news"), Ok(p("a/b/news", "news")));
        assert_eq!(parse_import("a/*=news"), Ok(p("a/*", "news")));
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        assert!(parse_import("a/*").unwrap_err().contains("wildcard"));
        assert!(parse_export("news=a//b")
            .unwrap_err()
            .contains("not a zenoh key"));
        assert!(parse_export("=k").unwrap_err().contains("not a topic name"));
        assert!(parse_import("k=x/y")
            .unwrap_err()
            .contains("not a topic name"));
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(parse_endpoint("tcp/127.0.0.1:7447").is_ok());
        assert!(parse_endpoint("bogus")
            .unwrap_err()
            .contains("not a zenoh endpoint"));
        assert!(parse_endpoint("udp/127.0.0.1:7447")
            .unwrap_err()
            .contains("only tcp"));
    }

    #[test]
    fn cli_parses() {
        let a = Args::try_parse_from([
            "shmipc-bridge",
            "--listen",
            "tcp/127.0.0.1:7447",
            "--export",
            "news",
            "--import",
            "x/y",
            "--lossless",
            "--zenoh",
            "transport/link/tx/batch_size=8192",
        ])
        .expect("parses");
        assert!(a.lossless && !a.scout);
        assert_eq!(
            a.zenoh,
            vec![("transport/link/tx/batch_size".to_owned(), "8192".to_owned())]
        );
        assert!(parse_zenoh_setting("batch_size")
            .unwrap_err()
            .contains("KEY=VALUE"));
        assert_eq!(a.import, vec![("x/y".to_owned(), "y".to_owned())]);
    }
}
