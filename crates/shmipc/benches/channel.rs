//! First latency and throughput figures for the channels, as ratios to floors
//! measured side by side in the same run (see `shared/notes/measuring-here.md`):
//!
//! * round trip of a 64-byte message (spsc, pubsub) vs a raw `AtomicU64` ping-pong
//!   in a segment;
//! * spsc throughput of 64-byte messages and of 1 MiB messages (copied in by the
//!   producer and out by the consumer) vs a single-process `memcpy` of the same size.
//!
//! Two processes pinned to CPUs 0 and 1; every round runs every contender once
//! (A B C … A B C …) and the medians of the per-round ratios are reported. A round
//! trip figure is itself the median of batches of 2000, so that a batch during which
//! the shared host took a CPU away does not count.
//!
//! `cargo bench -p shmipc --bench channel` (env `ROUNDS`, default 7; `QUICK=1` for
//! a short smoke run).

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmipc::channel::pubsub::{self, Publisher, Subscriber};
use shmipc::channel::spsc::{Consumer, Options, Producer};
use shmipc::Segment;

const ROLE: &str = "SHMIPC_BENCH_ROLE";
const NAME: &str = "SHMIPC_BENCH_NAME";
const COUNT: &str = "SHMIPC_BENCH_COUNT";
const MIB: usize = 1 << 20;

#[cfg(not(target_os = "linux"))]
fn pin(_cpu: usize) {}

#[cfg(target_os = "linux")]
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin to CPU {cpu}: {e}");
    }
}

fn quick() -> bool {
    std::env::var_os("QUICK").is_some()
}

fn n(full: u64) -> u64 {
    if quick() {
        (full / 20).max(10)
    } else {
        full
    }
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static C: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench-{tag}-{}-{}",
        std::process::id(),
        C.fetch_add(1, Ordering::Relaxed)
    )
}

struct Kid(std::process::Child);

impl Kid {
    fn spawn(role: &str, name: &str, count: u64) -> Self {
        let child = Command::new(std::env::current_exe().expect("exe"))
            .env(ROLE, role)
            .env(NAME, name)
            .env(COUNT, count.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        Self(child)
    }
    fn join(mut self) {
        let st = self.0.wait().expect("wait");
        assert!(st.success(), "bench child failed: {st}");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spins until `cond`, panicking after 30 s (a dead peer must not hang the bench).
#[inline]
fn spin_until(mut cond: impl FnMut() -> bool) {
    let mut i = 0u32;
    let start = Instant::now();
    while !cond() {
        std::hint::spin_loop();
        i = i.wrapping_add(1);
        if i % (1 << 20) == 0 && start.elapsed() > Duration::from_secs(30) {
            panic!("peer stopped answering");
        }
    }
}

/// Round trips are timed in batches of `BATCH`; a contender's figure is the median
/// batch, so that a batch in which the host or another process took a CPU away does
/// not count (the machine is shared).
const BATCH: u64 = 2_000;

/// Runs `one` (one round trip, given its index) `count + warm` times; returns the
/// median nanoseconds per round trip over the timed batches.
fn timed(count: u64, mut one: impl FnMut(u64)) -> f64 {
    let warm = count / 10;
    for i in 0..warm {
        one(i);
    }
    let mut per = Vec::new();
    let mut i = warm;
    while i < warm + count {
        let start = Instant::now();
        for _ in 0..BATCH {
            one(i);
            i += 1;
        }
        per.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    median(&mut per)
}

/// `count` rounded up to whole batches, plus the warm-up: what the child answers.
fn total(count: u64) -> u64 {
    count / 10 + count.div_ceil(BATCH) * BATCH
}

// ---- raw AtomicU64 ping-pong: the floor ----

fn raw_word(seg: &Segment) -> (&AtomicU64, shmipc::View) {
    let view = seg.map_all().expect("map");
    let p: *const AtomicU64 = view.atomic_u64(0).expect("atomic");
    // SAFETY: the view is returned alongside and outlives every use in callers.
    (unsafe { &*p }, view)
}

/// Nanoseconds per round trip.
fn raw_rtt(count: u64) -> f64 {
    let name = unique("raw");
    let seg = Segment::create(&name, 4096).expect("segment");
    let (w, _view) = raw_word(&seg);
    let kid = Kid::spawn("raw", &name, total(count));
    let t = timed(count, |i| {
        w.store(2 * i + 1, Ordering::Release);
        spin_until(|| w.load(Ordering::Acquire) == 2 * i + 2);
    });
    kid.join();
    t
}

/// A raw one-cache-line message ping-pong: seven payload words, then the flag
/// word, in one line each way (what any message passing must at least do).
fn raw_line_rtt(count: u64) -> f64 {
    let name = unique("rawline");
    let seg = Segment::create(&name, 4096).expect("segment");
    let view = seg.map_all().expect("map");
    let kid = Kid::spawn("raw-line", &name, total(count));
    let t = timed(count, |i| {
        line_send(&view, 0, i);
        line_wait(&view, 128, i);
    });
    kid.join();
    t
}

fn line_send(view: &shmipc::View, off: usize, i: u64) {
    for k in 1..8 {
        view.atomic_u64(off + 8 * k)
            .expect("atomic")
            .store(i ^ k as u64, Ordering::Relaxed);
    }
    view.atomic_u64(off)
        .expect("atomic")
        .store(i + 1, Ordering::Release);
}

fn line_wait(view: &shmipc::View, off: usize, i: u64) {
    let flag = view.atomic_u64(off).expect("atomic");
    spin_until(|| flag.load(Ordering::Acquire) == i + 1);
    for k in 1..8 {
        black_box(
            view.atomic_u64(off + 8 * k)
                .expect("atomic")
                .load(Ordering::Relaxed),
        );
    }
}

fn raw_line_child(name: &str, count: u64) {
    let seg = Segment::open(name, shmipc::Access::ReadWrite).expect("open");
    let view = seg.map_all().expect("map");
    for i in 0..count {
        line_wait(&view, 0, i);
        line_send(&view, 128, i);
    }
}

fn raw_child(name: &str, count: u64) {
    let seg = Segment::open(name, shmipc::Access::ReadWrite).expect("open");
    let (w, _view) = raw_word(&seg);
    for i in 0..count {
        spin_until(|| w.load(Ordering::Acquire) == 2 * i + 1);
        w.store(2 * i + 2, Ordering::Release);
    }
}

// ---- spsc ----

fn spsc_rtt(size: usize, count: u64) -> f64 {
    let (a, b) = (unique("rtt-a"), unique("rtt-b"));
    let opts = Options::new().capacity(64).slot_size(size);
    let mut tx = opts.create_producer(&a).expect("a");
    let mut rx = opts.create_consumer(&b).expect("b");
    let kid = Kid::spawn("spsc-echo", &format!("{a},{b}"), total(count));
    let msg = vec![7u8; size];
    let t = timed(count, |_| {
        tx.send(&msg).expect("send");
        black_box(rx.recv().expect("recv")[0]);
    });
    kid.join();
    t
}

fn spsc_echo(names: &str, count: u64) {
    let (a, b) = names.split_once(',').expect("names");
    let mut rx = Consumer::open(a).expect("open a");
    let mut tx = Producer::open(b).expect("open b");
    for _ in 0..count {
        let s = rx.recv().expect("recv");
        let mut l = tx.loan(s.len()).expect("loan");
        l.copy_from_slice(&s);
        // Send before handing the sample back: the reply goes out first.
        l.send();
        drop(s);
    }
}

fn pubsub_rtt(size: usize, count: u64) -> f64 {
    let (a, b) = (unique("ps-a"), unique("ps-b"));
    let opts = pubsub::Options::new()
        .capacity(64)
        .slot_size(size)
        .max_subscribers(4);
    let mut tx = opts.create_publisher(&a).expect("a");
    let rx = opts.create_or_open_subscriber(&b).expect("b");
    let kid = Kid::spawn("pubsub-echo", &format!("{a},{b}"), total(count));
    // The echo must have subscribed before the first message.
    spin_until(|| tx.subscribers() == 1);
    let msg = vec![7u8; size];
    let mut buf = Vec::with_capacity(64);
    let t = timed(count, |_| {
        tx.send(&msg).expect("send");
        rx.recv_into(&mut buf).expect("recv");
        black_box(buf[0]);
    });
    kid.join();
    t
}

fn pubsub_echo(names: &str, count: u64) {
    let (a, b) = names.split_once(',').expect("names");
    let rx = Subscriber::open(a).expect("open a");
    let mut tx = Publisher::open(b).expect("open b");
    let mut buf = Vec::with_capacity(64);
    for _ in 0..count {
        rx.recv_into(&mut buf).expect("recv");
        tx.send(&buf).expect("send");
    }
}

/// Messages (of `size` bytes) per second through spsc, copied in and out.
fn spsc_throughput(size: usize, count: u64) -> f64 {
    let (a, b) = (unique("tp-a"), unique("tp-b"));
    let cap = if size >= MIB { 8 } else { 1024 };
    let mut tx = Options::new()
        .capacity(cap)
        .slot_size(size)
        .create_producer(&a)
        .expect("a");
    let mut done = Options::new()
        .capacity(1)
        .slot_size(8)
        .create_consumer(&b)
        .expect("b");
    let kid = Kid::spawn("spsc-sink", &format!("{a},{b},{size}"), count);
    let src = vec![3u8; size];
    // Wait for the sink to attach (its "ready" message) before timing.
    drop(done.recv().expect("ready"));
    let start = Instant::now();
    for _ in 0..count {
        tx.send(&src).expect("send");
    }
    drop(done.recv().expect("done"));
    let t = start.elapsed();
    kid.join();
    count as f64 / t.as_secs_f64()
}

fn spsc_sink(spec: &str, count: u64) {
    let mut it = spec.split(',');
    let (a, b) = (it.next().expect("a"), it.next().expect("b"));
    let size: usize = it.next().and_then(|s| s.parse().ok()).expect("size");
    let mut rx = Consumer::open(a).expect("open a");
    let mut done = Producer::open(b).expect("open b");
    let mut dst = vec![0u8; size];
    done.send(b"ready").expect("ready");
    for _ in 0..count {
        let s = rx.recv().expect("recv");
        dst[..s.len()].copy_from_slice(&s);
        black_box(&dst);
    }
    done.send(b"done").expect("done");
}

/// Copies of `size` bytes per second in one process.
fn memcpy_rate(size: usize, count: u64) -> f64 {
    let src = vec![3u8; size];
    let mut dst = vec![0u8; size];
    dst.copy_from_slice(&src); // fault the pages in before timing
    let start = Instant::now();
    for _ in 0..count {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        pin(1);
        let name = std::env::var(NAME).expect("name");
        let count: u64 = std::env::var(COUNT)
            .ok()
            .and_then(|c| c.parse().ok())
            .expect("count");
        match role.as_str() {
            "raw" => raw_child(&name, count),
            "raw-line" => raw_line_child(&name, count),
            "spsc-echo" => spsc_echo(&name, count),
            "spsc-sink" => spsc_sink(&name, count),
            "pubsub-echo" => pubsub_echo(&name, count),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    pin(0);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick() { 3 } else { 7 });
    let mut rows: Vec<[f64; 9]> = Vec::new();
    let mut small: Vec<[f64; 2]> = Vec::new();
    println!(
        "round  raw_rtt_ns  spsc_rtt_ns  ratio  pubsub_rtt_ns  ratio | spsc64_Mmsg/s  memcpy64_Mop/s  ratio | spsc1M_GB/s  memcpy1M_GB/s  ratio"
    );
    for r in 0..rounds {
        let raw = raw_rtt(n(200_000));
        let spsc = spsc_rtt(64, n(200_000));
        let ps = pubsub_rtt(64, n(200_000));
        // One-line messages: 56 B + the 8 B stamp, 48 B + the 16 B slot header.
        let spsc56 = spsc_rtt(56, n(200_000));
        let ps48 = pubsub_rtt(48, n(200_000));
        let raw2 = raw_rtt(n(200_000));
        let rline = raw_line_rtt(n(200_000));
        println!(
            "       raw one-line message ping-pong (7 words + flag): {rline:.1} ns ({:.2} x raw)",
            rline / raw
        );
        println!(
            "       one-line messages: spsc 56 B {spsc56:.1} ns ({:.2} x raw), pubsub 48 B {ps48:.1} ns ({:.2} x raw); raw again {raw2:.1} ns",
            spsc56 / raw,
            ps48 / raw
        );
        small.push([spsc56 / raw, ps48 / raw]);
        let rtt_only = std::env::var_os("RTT_ONLY").is_some();
        let tp64 = if rtt_only {
            1.0
        } else {
            spsc_throughput(64, n(2_000_000))
        };
        let mc64 = memcpy_rate(64, n(20_000_000));
        let tp1m = if rtt_only {
            1.0
        } else {
            spsc_throughput(MIB, n(2_000)) * MIB as f64
        };
        let mc1m = memcpy_rate(MIB, n(2_000)) * MIB as f64;
        let row = [
            raw,
            spsc,
            spsc / raw,
            tp64 / mc64,
            tp1m / mc1m,
            tp64,
            tp1m,
            ps,
            ps / raw,
        ];
        println!(
            "{r:>5}  {raw:>10.1}  {spsc:>11.1}  {:>5.2}  {ps:>13.1}  {:>5.2} | {:>13.1}  {:>14.1}  {:>5.3} | {:>11.2}  {:>13.2}  {:>5.3}",
            row[2],
            row[8],
            tp64 / 1e6,
            mc64 / 1e6,
            row[3],
            tp1m / 1e9,
            mc1m / 1e9,
            row[4]
        );
        rows.push(row);
    }
    let col = |i: usize| median(&mut rows.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!();
    println!("medians over {rounds} rounds (CPU 0 <-> CPU 1):");
    println!(
        "  64 B round trip: raw ping-pong {:.1} ns, spsc {:.1} ns, spsc/raw ratio {:.2} (goal <= 1.5)",
        col(0),
        col(1),
        col(2)
    );
    println!(
        "  64 B round trip: pubsub {:.1} ns, pubsub/raw ratio {:.2}",
        col(7),
        col(8)
    );
    let scol = |i: usize| median(&mut small.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!(
        "  one-cache-line round trip / raw: spsc 56 B {:.2}, pubsub 48 B {:.2}",
        scol(0),
        scol(1)
    );
    println!(
        "  64 B throughput: spsc {:.1} M msg/s = {:.3} x single-process 64 B memcpy rate",
        col(5) / 1e6,
        col(3)
    );
    println!(
        "  1 MiB throughput: spsc {:.2} GB/s (copy in + copy out) = {:.3} x single-process 1 MiB memcpy",
        col(6) / 1e9,
        col(4)
    );
}
