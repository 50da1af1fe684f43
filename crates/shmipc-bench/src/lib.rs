//! `shmipc-bench`: shmipc side by side with the hardware floor, iceoryx2 and the
//! kernel's IPC, as ratios measured in the same run.
//!
//! # Method
//!
//! On the two-vCPU machines this project runs on, an absolute time means little: the
//! host moves the two vCPUs, and the same test swings 2-10x between minutes (see
//! `shared/notes/measuring-here.md`). So:
//!
//! * every two-process contender runs between this process, pinned to CPU 0, and a
//!   peer (this same binary re-run with the hidden `--role peer`), pinned to CPU 1;
//! * the contenders are interleaved round by round (A B C … A B C …), at least five
//!   rounds, and every figure is also given as a ratio to the floor measured in the same
//!   round (the median of the per-round ratios);
//! * clocks tick in ~10 ns steps here, so the harness times *batches* (of round trips,
//!   messages or segment operations) and reports the median and the 99th percentile of
//!   the per-batch means, not of single messages;
//! * before each suite in each round a short floor probe (8-byte round trip) says
//!   whether the host keeps the vCPUs near (< 250 ns) or far; every figure carries the
//!   placement of its rounds;
//! * the sender writes the whole payload and the receiver copies the whole payload out,
//!   for every contender (the first 8 bytes carry a sequence number that is checked).
//!
//! # Suites
//!
//! * `latency`: round trips at 8 B, 64 B, 4 KiB, 64 KiB ([`latency`]).
//! * `throughput`: messages/s at 64 B, bytes/s at 4 KiB, 64 KiB, 1 MiB ([`throughput`]).
//! * `fanout`: one publisher, 1 and 3 subscriber processes, samples/s delivered to
//!   every subscriber at 64 B, 4 KiB, 64 KiB, 1 MiB ([`fanout`]; its own method).
//! * `segment`: create+map+unmap+remove and open+map+unmap, shmipc against the bare
//!   system calls ([`segment_ops`]).
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod ctx;
#[cfg(target_os = "linux")]
pub mod fanout;
#[cfg(target_os = "linux")]
mod iceoryx;
#[cfg(target_os = "linux")]
pub mod latency;
#[cfg(target_os = "linux")]
mod mapped;
#[cfg(target_os = "linux")]
mod peer;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod run;
#[cfg(target_os = "linux")]
pub mod segment_ops;
#[cfg(target_os = "linux")]
mod shmipc_channels;
#[cfg(target_os = "linux")]
mod spin;
#[cfg(target_os = "linux")]
mod stats;
#[cfg(target_os = "linux")]
pub mod throughput;
#[cfg(target_os = "linux")]
mod wake;

/// Errors of the harness: a message that says what failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The harness's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Entry point of the `shmipc-bench` binary.
#[cfg(target_os = "linux")]
pub fn main() -> std::process::ExitCode {
    run::main()
}

/// Entry point of the `shmipc-bench` binary.
#[cfg(not(target_os = "linux"))]
pub fn main() -> std::process::ExitCode {
    eprintln!("shmipc-bench: runs on Linux only for now (eventfd, CPU pinning, iceoryx2 setup)");
    std::process::ExitCode::FAILURE
}
