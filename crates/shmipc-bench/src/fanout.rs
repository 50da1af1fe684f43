//! The `fanout` suite: one publisher process, 1 and 3 subscriber processes, every
//! sample delivered to every subscriber, nothing lost.
//!
//! * The publisher writes every byte of every payload in place (a `memset` of the
//!   sample's number, then the number itself in the first 8 bytes), into memory the
//!   contender loans it; every subscriber reads every byte of every sample in place
//!   (a sum of its 8-byte words), checks the number, and at the end reports its sum,
//!   which the harness compares with the one the publisher's bytes give.
//! * Contenders: `floor-fanout` (the simplest shared-memory hand-off: a ring of
//!   buffers with one atomic flag per reader and buffer), `shmipc-pubsub` (block
//!   mode, loaned samples, `Sample`s read in place), `iceoryx2` (loaned slices,
//!   `RetryUntilDelivered`, samples read in place). All three queue the same number
//!   of samples (`throughput::slots_for`) and wait the same way (poll, spin, yield:
//!   with more processes than CPUs a spinning waiter must give its CPU away).
//! * A cell is one contender, payload and subscriber count: the harness starts the
//!   publisher and the subscribers (each this binary with `--role fanout-child`),
//!   waits until all are attached, then times from its "go" to the last
//!   subscriber's "done" (process start and channel set-up are not timed).
//!   `per_sec` is samples delivered to every subscriber per second.
//! * Rounds interleave the contenders cell by cell; the figures are medians over
//!   rounds of `per_sec` and of the per-round ratios to iceoryx2 and to the floor.
//!
//! No CPU pinning here: four processes share whatever CPUs there are.
#![allow(unsafe_code)] // In-place writes and reads of loaned memory (see each SAFETY).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::throughput::slots_for;
use crate::Result;

/// Payloads of the suite.
pub const PAYLOADS: [usize; 4] = [64, 4096, 65536, 1 << 20];
/// Subscriber counts of the suite.
pub const SUBSCRIBERS: [usize; 2] = [1, 3];
/// Contenders, the floor first.
pub const CONTENDERS: [&str; 3] = ["floor-fanout", "shmipc-pubsub", "iceoryx2"];
/// How long a child may take for anything before the cell fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// One figure of the suite.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Always "fanout".
    pub suite: &'static str,
    /// The contender.
    pub name: &'static str,
    /// Payload bytes.
    pub payload: usize,
    /// Subscriber processes.
    pub subscribers: usize,
    /// Samples delivered to every subscriber per second (median over rounds).
    pub per_sec: f64,
    /// Median over rounds of `per_sec / iceoryx2's per_sec` in the same round.
    pub ratio_to_iceoryx2: f64,
    /// Median over rounds of `per_sec / floor-fanout's per_sec` in the same round.
    pub ratio_to_floor: f64,
    /// Rounds measured.
    pub rounds: usize,
}

/// Samples per cell: about `bytes` worth, 100 to 200 000.
fn count_for(payload: usize, bytes: usize) -> u64 {
    (bytes / payload).clamp(100, 200_000) as u64
}

/// The publisher's bytes of sample `seq`.
#[inline]
fn fill(buf: &mut [u8], seq: u64) {
    buf.fill(seq as u8);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

/// A subscriber's read of every byte: the wrapping sum of the 8-byte words.
#[inline]
fn sum(buf: &[u8]) -> u64 {
    let mut s = 0u64;
    for w in buf.chunks_exact(8) {
        s = s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    }
    s
}

/// What every subscriber's sum must be.
fn expected_sum(payload: usize, count: u64) -> u64 {
    let mut buf = vec![0u8; payload];
    let mut total = 0u64;
    for seq in 1..=count {
        fill(&mut buf, seq);
        total = total.wrapping_add(sum(&buf));
    }
    total
}

/// Poll-wait: spin a little, then give the CPU away; fails after [`PATIENCE`].
struct Waiter {
    n: u32,
    since: Option<Instant>,
}

impl Waiter {
    fn new() -> Self {
        Self { n: 0, since: None }
    }
    #[inline]
    fn wait(&mut self, what: &str) -> Result<()> {
        self.n = self.n.wrapping_add(1);
        if !self.n.is_multiple_of(64) {
            std::hint::spin_loop();
            return Ok(());
        }
        std::thread::yield_now();
        if self.n.is_multiple_of(4096) {
            let since = *self.since.get_or_insert_with(Instant::now);
            if since.elapsed() > PATIENCE {
                return Err(format!("fanout: waited {PATIENCE:?} for {what}").into());
            }
        }
        Ok(())
    }
}

/// What a child is told: `role,contender,payload,subscribers,count,depth,name,index`.
#[derive(Debug, Clone)]
struct Spec {
    publisher: bool,
    contender: String,
    payload: usize,
    subscribers: usize,
    count: u64,
    depth: usize,
    name: String,
    index: usize,
}

impl Spec {
    fn encode(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{}",
            if self.publisher { "pub" } else { "sub" },
            self.contender,
            self.payload,
            self.subscribers,
            self.count,
            self.depth,
            self.name,
            self.index
        )
    }

    fn decode(s: &str) -> Result<Self> {
        let f: Vec<&str> = s.split(',').collect();
        if f.len() != 8 {
            return Err(format!("fanout: bad child spec {s:?}").into());
        }
        Ok(Self {
            publisher: f[0] == "pub",
            contender: f[1].to_owned(),
            payload: f[2].parse()?,
            subscribers: f[3].parse()?,
            count: f[4].parse()?,
            depth: f[5].parse()?,
            name: f[6].to_owned(),
            index: f[7].parse()?,
        })
    }
}

// ---------------------------------------------------------------- children

/// `--role fanout-child`: one publisher or subscriber of one cell. Prints
/// "ready" once attached, waits for "go" on stdin (publisher), runs, prints
/// "done SUM".
pub fn child(spec: &str) -> Result<()> {
    let spec = Spec::decode(spec)?;
    let mut out = std::io::stdout().lock();
    let mut go = || -> Result<()> {
        writeln!(out, "ready")?;
        out.flush()?;
        if spec.publisher {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
        }
        Ok(())
    };
    let total = match spec.contender.as_str() {
        "floor-fanout" => floor(&spec, &mut go)?,
        "shmipc-pubsub" => shmipc_pubsub(&spec, &mut go)?,
        "iceoryx2" => iceoryx2(&spec, &mut go)?,
        other => return Err(format!("fanout: no contender {other}").into()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "done {total}")?;
    out.flush()?;
    Ok(())
}

/// Publishers: keep everything attached and mapped until the harness has seen
/// every subscriber finish.
fn wait_quit() -> Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

/// Checks the number a subscriber found.
#[inline]
fn check(buf: &[u8], want: u64) -> Result<()> {
    let got = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
    if got != want || buf.len() < 8 {
        return Err(format!("fanout: sample carries number {got}, expected {want}").into());
    }
    Ok(())
}

/// The floor: `depth` buffers, and for each buffer one flag per reader (its own
/// cache line): 0 free, else the number of the sample the reader is to read.
fn floor(spec: &Spec, go: &mut dyn FnMut() -> Result<()>) -> Result<u64> {
    let n = spec.subscribers;
    let flags = spec.depth * n * 64;
    let bufs = (flags + 4095) & !4095;
    let len = bufs + spec.depth * spec.payload;
    let seg = if spec.publisher {
        shmipc::Segment::create(&spec.name, len as u64)?
    } else {
        shmipc::Segment::open(&spec.name, shmipc::Access::ReadWrite)?
    };
    let view = seg.map_all()?;
    if view.len() < len {
        return Err("fanout floor: segment too small".into());
    }
    let mut flag_refs: Vec<&AtomicU64> = Vec::with_capacity(spec.depth * n);
    for i in 0..spec.depth * n {
        flag_refs.push(view.atomic_u64(i * 64)?);
    }
    let base = view.as_mut_ptr();
    let buf = |slot: usize| -> *mut u8 {
        // SAFETY: `bufs + slot * payload + payload <= len <= view.len()`: in the mapping.
        unsafe { base.add(bufs + slot * spec.payload) }
    };
    go()?;
    let mut total = 0u64;
    if spec.publisher {
        for seq in 1..=spec.count {
            let slot = (seq as usize) % spec.depth;
            let mut w = Waiter::new();
            for r in 0..n {
                // Acquire pairs with the reader's Release store of 0.
                while flag_refs[slot * n + r].load(Ordering::Acquire) != 0 {
                    w.wait("floor readers")?;
                }
            }
            // SAFETY: every reader's flag of this buffer is 0: no reader touches it
            // until we set the flags below.
            let b = unsafe { std::slice::from_raw_parts_mut(buf(slot), spec.payload) };
            fill(b, seq);
            for r in 0..n {
                // Release pairs with the reader's Acquire load.
                flag_refs[slot * n + r].store(seq, Ordering::Release);
            }
        }
        wait_quit()?;
    } else {
        let r = spec.index;
        for seq in 1..=spec.count {
            let slot = (seq as usize) % spec.depth;
            let flag = flag_refs[slot * n + r];
            let mut w = Waiter::new();
            while flag.load(Ordering::Acquire) != seq {
                w.wait("the floor writer")?;
            }
            // SAFETY: our flag says the buffer holds sample `seq` for us; the writer
            // does not touch it until we clear the flag.
            let b = unsafe { std::slice::from_raw_parts(buf(slot), spec.payload) };
            check(b, seq)?;
            total = total.wrapping_add(sum(b));
            flag.store(0, Ordering::Release);
        }
    }
    Ok(total)
}

fn shmipc_pubsub(spec: &Spec, go: &mut dyn FnMut() -> Result<()>) -> Result<u64> {
    use shmipc::channel::pubsub::{Options, Overflow, Subscriber};
    use shmipc::channel::{RecvError, TrySendError};
    let mut total = 0u64;
    if spec.publisher {
        let mut p = Options::new()
            .capacity(spec.depth)
            .slot_size(spec.payload)
            .max_subscribers(spec.subscribers)
            .max_held(1)
            .overflow(Overflow::Block)
            .create_publisher(&spec.name)?;
        go()?;
        let mut w = Waiter::new();
        while p.subscribers() < spec.subscribers {
            w.wait("shmipc subscribers")?;
        }
        for seq in 1..=spec.count {
            let mut w = Waiter::new();
            loop {
                match p.try_loan(spec.payload) {
                    Ok(mut loan) => {
                        fill(&mut loan, seq);
                        loan.send();
                        break;
                    }
                    Err(TrySendError::Full(())) => w.wait("shmipc room")?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        wait_quit()?;
    } else {
        let s = Subscriber::open(&spec.name)?;
        go()?;
        for seq in 1..=spec.count {
            let mut w = Waiter::new();
            loop {
                match s.try_recv() {
                    Ok(sample) => {
                        check(&sample, seq)?;
                        total = total.wrapping_add(sum(&sample));
                        break;
                    }
                    Err(RecvError::Empty) => w.wait("shmipc samples")?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(total)
}

fn iceoryx2(spec: &Spec, go: &mut dyn FnMut() -> Result<()>) -> Result<u64> {
    use iceoryx2::prelude::*;
    let node = crate::iceoryx::new_node()?;
    let name = ServiceName::new(&spec.name)?;
    let builder = node.service_builder(&name).publish_subscribe::<[u8]>();
    let service = if spec.publisher {
        builder
            .max_publishers(1)
            .max_subscribers(spec.subscribers)
            .max_nodes(spec.subscribers + 1)
            .history_size(0)
            .subscriber_max_buffer_size(spec.depth)
            .subscriber_max_borrowed_samples(1)
            .enable_safe_overflow(false)
            .create()?
    } else {
        builder.open()?
    };
    let mut total = 0u64;
    if spec.publisher {
        let p = service
            .publisher_builder()
            .initial_max_slice_len(spec.payload)
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()?;
        go()?;
        for seq in 1..=spec.count {
            let mut sample = p.loan_slice_uninit(spec.payload)?;
            let b = sample.payload_mut();
            // SAFETY: `b` is the loaned slice of `payload` bytes; we write every byte
            // (MaybeUninit<u8> has the layout of u8) before `assume_init`.
            let sample = unsafe {
                let bytes = std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len());
                fill(bytes, seq);
                sample.assume_init()
            };
            if sample.send()? != spec.subscribers {
                return Err("iceoryx2: a sample did not reach every subscriber".into());
            }
        }
        wait_quit()?;
    } else {
        let s = service
            .subscriber_builder()
            .buffer_size(spec.depth)
            .create()?;
        go()?;
        for seq in 1..=spec.count {
            let mut w = Waiter::new();
            loop {
                if let Some(sample) = s.receive()? {
                    let b = sample.payload();
                    check(b, seq)?;
                    total = total.wrapping_add(sum(b));
                    break;
                }
                w.wait("iceoryx2 samples")?;
            }
        }
    }
    Ok(total)
}

// ---------------------------------------------------------------- harness

struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: BufReader<ChildStdout>,
}

impl Kid {
    fn spawn(spec: &Spec) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--role", "fanout-child", "--fanout-spec", &spec.encode()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().ok_or("fanout: no child stdout")?);
        Ok(Self {
            child,
            stdin,
            lines,
        })
    }

    fn expect(&mut self, what: &str) -> Result<String> {
        let mut line = String::new();
        self.lines.read_line(&mut line)?;
        if !line.starts_with(what) {
            return Err(format!("fanout: a child said {line:?}, expected {what:?}").into());
        }
        Ok(line.trim().to_owned())
    }

    fn say(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or("fanout: no child stdin")?;
        writeln!(stdin, "{text}")?;
        stdin.flush()?;
        Ok(())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One cell: samples per second delivered to every subscriber.
fn cell(
    contender: &str,
    payload: usize,
    subscribers: usize,
    count: u64,
    want: u64,
    tag: &str,
) -> Result<f64> {
    let name = format!("fo-{}-{tag}", std::process::id());
    let base = Spec {
        publisher: true,
        contender: contender.to_owned(),
        payload,
        subscribers,
        count,
        depth: slots_for(payload),
        name: name.clone(),
        index: 0,
    };
    let mut publisher = Kid::spawn(&base)?;
    publisher.expect("ready")?;
    let mut subs = Vec::new();
    for index in 0..subscribers {
        let mut k = Kid::spawn(&Spec {
            publisher: false,
            index,
            ..base.clone()
        })?;
        k.expect("ready")?;
        subs.push(k);
    }
    let t = Instant::now();
    publisher.say("go")?;
    for s in &mut subs {
        let done = s.expect("done")?;
        let got: u64 = done.trim_start_matches("done ").parse()?;
        if got != want {
            return Err(format!(
                "fanout {contender} {payload} B: a subscriber's sum is {got}, expected {want}"
            )
            .into());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    publisher.say("quit")?;
    let _ = publisher.expect("done");
    drop(subs);
    drop(publisher);
    let _ = shmipc::Segment::remove(&name);
    Ok(count as f64 / secs)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the suite: `rounds` interleaved rounds of about `bytes` per cell.
pub fn run(rounds: usize, bytes: usize, mut progress: impl FnMut(String)) -> Result<Vec<Row>> {
    // per (payload, subs): per contender: per round per_sec
    let mut got: Vec<Vec<Vec<f64>>> =
        vec![vec![Vec::new(); CONTENDERS.len()]; PAYLOADS.len() * SUBSCRIBERS.len()];
    let mut n = 0;
    for round in 0..rounds {
        for (pi, &payload) in PAYLOADS.iter().enumerate() {
            let count = count_for(payload, bytes);
            let want = expected_sum(payload, count);
            for (si, &subscribers) in SUBSCRIBERS.iter().enumerate() {
                for (ci, c) in CONTENDERS.iter().enumerate() {
                    n += 1;
                    let r = cell(c, payload, subscribers, count, want, &n.to_string())?;
                    got[pi * SUBSCRIBERS.len() + si][ci].push(r);
                    progress(format!(
                        "round {} fanout {c} {payload} B x{subscribers}",
                        round + 1
                    ));
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (pi, &payload) in PAYLOADS.iter().enumerate() {
        for (si, &subscribers) in SUBSCRIBERS.iter().enumerate() {
            let cells = &got[pi * SUBSCRIBERS.len() + si];
            for (ci, &name) in CONTENDERS.iter().enumerate() {
                let ratio = |other: usize| {
                    let mut v: Vec<f64> = (0..cells[ci].len())
                        .map(|r| cells[ci][r] / cells[other][r])
                        .collect();
                    median(&mut v)
                };
                rows.push(Row {
                    suite: "fanout",
                    name,
                    payload,
                    subscribers,
                    per_sec: median(&mut cells[ci].clone()),
                    ratio_to_iceoryx2: ratio(2),
                    ratio_to_floor: ratio(0),
                    rounds,
                });
            }
        }
    }
    Ok(rows)
}

/// The suite's table.
pub fn table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "\nfanout (one publisher, N subscriber processes, block mode, nothing lost; samples/s to every subscriber, medians over {} rounds)",
        rows.first().map_or(0, |r| r.rounds)
    )?;
    writeln!(
        out,
        "{:<15} {:>8} {:>4} {:>14} {:>10} {:>10} {:>11}",
        "contender", "payload", "subs", "samples/s", "GB/s/sub", "x iceoryx2", "x floor"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<15} {:>8} {:>4} {:>14.0} {:>10.2} {:>10.2} {:>11.2}",
            r.name,
            r.payload,
            r.subscribers,
            r.per_sec,
            r.per_sec * r.payload as f64 / 1e9,
            r.ratio_to_iceoryx2,
            r.ratio_to_floor
        )?;
    }
    Ok(())
}
