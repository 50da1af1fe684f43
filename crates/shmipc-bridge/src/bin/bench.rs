//! `shmipc-bridge-bench`: samples/s and round-trip latency through
//! shmipc → bridge → zenoh → bridge → shmipc, against zenoh's own pub/sub between two
//! processes, over the same loopback TCP, interleaved round by round (medians).
//!
//! ```text
//! cargo run --release --manifest-path crates/shmipc-bridge/Cargo.toml \
//!     --bin shmipc-bridge-bench -- [--rounds 5] [--bridge NAME=PATH[,ARG...]]...
//! ```
//!
//! Each `--bridge` is one more bridged contender, run side by side with the others
//! and zenoh, round by round in rotating order: e.g. a copy of the binary from before
//! a change against the new one, or `--spin-us` settings (`ARG`s are added to both
//! bridges' command lines). It prints medians, and the median of the per-round
//! ratios to zenoh. `--only zenoh|bridge [--size BYTES] [--what tp|rtt] [--secs S]`
//! runs one contender alone, repeatedly, for profiling (`perf record`, `perf stat`).
//! `--zenoh KEY=VALUE` (repeatable) sets a zenoh configuration entry of the zenoh
//! contender; give the bridges the same (`--bridge NAME=PATH,--zenoh,KEY=VALUE`) to
//! compare like with like.
//!
//! The zenoh side: this process puts, a child process (this binary in the
//! `zenoh-peer` role) receives with callbacks, echoes pings and says when the last
//! sample of a burst came. The bridge side: this process publishes and subscribes on
//! shmipc topics (one thread echoes pings), two `shmipc-bridge --lossless` processes
//! carry them. Each side's applications use their system the fast way: the zenoh
//! sender puts a buffer of its own, its echo puts the received payload as it is (no
//! copy), its receivers read the payload in place; the shmipc sender fills a loaned
//! chunk in place, its receivers read samples in place, and its echo copies the
//! sample into a loan of the other topic (the one copy a shmipc echo needs). Small
//! samples (up to 1 KiB) stream through topics of their own, with 1 KiB slots and a
//! ring of 1024 (`small_topic_options`), as an application streaming small samples
//! would size them; the round trips and 64 KiB samples use 256 slots of 64 KiB.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmipc::channel::pubsub::{Options, Overflow, Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

const SLOT: usize = 65536;

const USAGE: &str = "usage: shmipc-bridge-bench [--rounds N] [--bridge NAME=PATH[,ARG...]]... \
[--zenoh KEY=VALUE]... [--only zenoh|bridge [--size BYTES] [--what tp|rtt|both] [--secs S]]";

/// A bad command line: says what, and how it is used, and exits 2.
fn usage(what: &str) -> ! {
    eprintln!("shmipc-bridge-bench: {what}\n{USAGE}");
    std::process::exit(2)
}

/// `value` parsed for option `name`, or a clear exit.
fn parsed<T: std::str::FromStr>(name: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("{name} {value:?}: not a valid number")))
}

/// zenoh configuration entries (`--zenoh KEY=VALUE`) for the zenoh contender's two
/// sessions; a bridge contender gets the same through its own arguments
/// (`--bridge NAME=PATH,--zenoh,KEY=VALUE`), so that both run one configuration.
static SETTINGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn config(listen: Option<&str>, connect: Option<&str>) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    for kv in SETTINGS.get().map_or(&[][..], Vec::as_slice) {
        let (k, v) = kv.split_once('=').expect("--zenoh KEY=VALUE");
        c.insert_json5(k, v)
            .unwrap_or_else(|e| panic!("--zenoh {kv}: {e}"));
    }
    c.insert_json5("mode", "\"peer\"").expect("mode");
    c.insert_json5("scouting/multicast/enabled", "false")
        .expect("scouting");
    if let Some(l) = listen {
        c.insert_json5("listen/endpoints", &format!("[\"{l}\"]"))
            .expect("listen");
    }
    if let Some(l) = connect {
        c.insert_json5("connect/endpoints", &format!("[\"{l}\"]"))
            .expect("connect");
    }
    c
}

/// The receiving zenoh process: echoes `bench/z/ping` to `bench/z/pong`; on the last
/// sample of a burst on `bench/z/tp` (its first 8 bytes: index, next 8: count) puts
/// `bench/z/done`. Runs until stdin closes.
fn zenoh_peer(connect: &str) {
    let s = zenoh::open(config(None, Some(connect)))
        .wait()
        .expect("zenoh open");
    let pong = s
        .declare_publisher("bench/z/pong")
        .congestion_control(CongestionControl::Block)
        .wait()
        .expect("pong");
    let done = s
        .declare_publisher("bench/z/done")
        .congestion_control(CongestionControl::Block)
        .wait()
        .expect("done");
    let _ping = s
        .declare_subscriber("bench/z/ping")
        .callback(move |sample| {
            // Echoed as received: zenoh's payloads are shared, not copied.
            pong.put(sample.payload().clone()).wait().expect("put pong");
        })
        .wait()
        .expect("ping");
    let _tp = s
        .declare_subscriber("bench/z/tp")
        .callback(move |sample| {
            // Read in place, as a shmipc sample is: the header from the first of
            // the payload's slices (a fragmented sample comes as several; joining
            // them would copy it).
            let payload = sample.payload();
            let data = match payload.slices().next() {
                Some(first) if first.len() >= 16 => std::borrow::Cow::Borrowed(first),
                _ => payload.to_bytes(),
            };
            let idx = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
            let n = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
            if idx + 1 == n {
                done.put(vec![1u8]).wait().expect("put done");
            }
        })
        .wait()
        .expect("tp");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A message as zenoh's applications send it: a buffer of their own.
fn msg(size: usize, idx: u64, n: u64) -> Vec<u8> {
    let mut v = vec![0xa5u8; size.max(16)];
    v[..8].copy_from_slice(&idx.to_le_bytes());
    v[8..16].copy_from_slice(&n.to_le_bytes());
    v
}

/// Writes message `idx` of `n` into `buf` (in place: a shmipc loan).
fn write_msg(buf: &mut [u8], idx: u64, n: u64) {
    buf[16..].fill(0xa5);
    buf[..8].copy_from_slice(&idx.to_le_bytes());
    buf[8..16].copy_from_slice(&n.to_le_bytes());
}

fn topic_options() -> Options {
    Options::new()
        .capacity(256)
        .slot_size(SLOT)
        .overflow(Overflow::Block)
}

/// Samples up to this size go through topics of their own, with slots this large.
const SMALL_SLOT: usize = 1024;

/// The small samples' throughput topics: as an application streaming small samples
/// would make them, slots of their size and a deeper ring. 256 slots hold 16 KiB of
/// 64-byte samples where zenoh's own pipeline queues several 64 KiB batches, and
/// kept the bridged 64 B throughput at 0.67-0.72x of zenoh's here; 1024 slots (64
/// KiB of 64 B samples) measured 0.93-1.10x in alternating runs, 4096 about the same. (A deeper ring of 64 KiB slots
/// cycles more memory than the caches hold: 1024 of them measured 0.69-0.88x where
/// 256 measured 0.89-0.90x at 64 KiB, so the large samples keep theirs.)
fn small_topic_options() -> Options {
    Options::new()
        .capacity(1024)
        .slot_size(SMALL_SLOT)
        .overflow(Overflow::Block)
}

struct Zenoh {
    _child: Kill,
    _session: zenoh::Session,
    tp: zenoh::pubsub::Publisher<'static>,
    ping: zenoh::pubsub::Publisher<'static>,
    pong: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    done: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
}

impl Zenoh {
    fn start() -> Self {
        let ep = format!("tcp/127.0.0.1:{}", free_port());
        let session = zenoh::open(config(Some(&ep), None))
            .wait()
            .expect("zenoh open");
        let child = Command::new(std::env::current_exe().expect("exe"))
            .args(["zenoh-peer", &ep])
            .args(SETTINGS.get().map_or(&[][..], Vec::as_slice))
            .stdin(Stdio::piped())
            .spawn()
            .expect("start the zenoh peer");
        let block = |k: &'static str| {
            session
                .declare_publisher(k)
                .congestion_control(CongestionControl::Block)
                .wait()
                .expect("publisher")
        };
        let (tp, ping) = (block("bench/z/tp"), block("bench/z/ping"));
        let pong = session
            .declare_subscriber("bench/z/pong")
            .wait()
            .expect("pong");
        let done = session
            .declare_subscriber("bench/z/done")
            .wait()
            .expect("done");
        let end = Instant::now() + Duration::from_secs(60);
        while !(tp.matching_status().wait().expect("m").matching()
            && ping.matching_status().wait().expect("m").matching())
        {
            assert!(Instant::now() < end, "the zenoh peer never subscribed");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            _child: Kill(child),
            _session: session,
            tp,
            ping,
            pong,
            done,
        }
    }

    fn throughput(&self, size: usize, n: u64) -> f64 {
        let t = Instant::now();
        for i in 0..n {
            self.tp.put(msg(size, i, n)).wait().expect("put");
        }
        self.done.recv().expect("done");
        n as f64 / t.elapsed().as_secs_f64()
    }

    fn rtt(&self, size: usize, n: u64) -> Duration {
        let t = Instant::now();
        for i in 0..n {
            self.ping.put(msg(size, i, n)).wait().expect("put");
            let s = self.pong.recv().expect("pong");
            assert_eq!(s.payload().len(), size.max(16));
        }
        t.elapsed() / n as u32
    }
}

struct Bridged {
    bridges: Vec<Kill>,
    stop: Arc<AtomicBool>,
    tp: Publisher,
    /// For samples up to [`SMALL_SLOT`] bytes.
    tp_small: Publisher,
    ping: Publisher,
    pong: Subscriber,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Bridged {
    fn start(bridge: &PathBuf, extra: &[String]) -> Self {
        // Unique per contender: several run side by side in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = std::process::id();
        let nth = NEXT.fetch_add(1, Ordering::Relaxed);
        let t = |n: &str| format!("bb-{n}-{id}-{nth}");
        let o = topic_options();
        let tp = o.create_publisher(&t("tp-a")).expect("tp-a");
        let small = small_topic_options();
        let tp_small = small.create_publisher(&t("tps-a")).expect("tps-a");
        let tps_b = small.create_or_open_subscriber(&t("tps-b")).expect("tps-b");
        let ping = o.create_publisher(&t("ping-a")).expect("ping-a");
        let pong = o.create_or_open_subscriber(&t("pong-a")).expect("pong-a");
        let tp_b = o.create_or_open_subscriber(&t("tp-b")).expect("tp-b");
        let ping_b = o.create_or_open_subscriber(&t("ping-b")).expect("ping-b");
        let pong_b = o.create_publisher(&t("pong-b")).expect("pong-b");
        let ep = format!("tcp/127.0.0.1:{}", free_port());
        let run = |args: Vec<String>| {
            Kill(
                Command::new(bridge)
                    .args(args)
                    .args(["--lossless", "--stats", "0"])
                    .args(extra)
                    .env(
                        "RUST_LOG",
                        std::env::var("SHMIPC_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
                    )
                    .spawn()
                    .expect("start shmipc-bridge"),
            )
        };
        let a = run(vec![
            "--listen".into(),
            ep.clone(),
            "--export".into(),
            format!("{}=bench/b/tp", t("tp-a")),
            "--export".into(),
            format!("{}=bench/b/tps", t("tps-a")),
            "--export".into(),
            format!("{}=bench/b/ping", t("ping-a")),
            "--import".into(),
            format!("bench/b/pong={}", t("pong-a")),
        ]);
        let b = run(vec![
            "--connect".into(),
            ep,
            "--import".into(),
            format!("bench/b/tp={}", t("tp-b")),
            "--import".into(),
            format!("bench/b/tps={}", t("tps-b")),
            "--import".into(),
            format!("bench/b/ping={}", t("ping-b")),
            "--export".into(),
            format!("{}=bench/b/pong", t("pong-b")),
        ]);
        // The bridges attach: a sample published before would find no subscriber.
        let end = Instant::now() + Duration::from_secs(60);
        while !(tp.subscribers() > 0
            && tp_small.subscribers() > 0
            && tps_b.publisher_present()
            && ping.subscribers() > 0
            && pong_b.subscribers() > 0
            && pong.publisher_present()
            && tp_b.publisher_present()
            && ping_b.publisher_present())
        {
            assert!(Instant::now() < end, "the bridges never attached");
            std::thread::sleep(Duration::from_millis(10));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        for sub in [tp_b, tps_b] {
            let (stop, tx) = (stop.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Read in place, as zenoh's subscriber reads its payload.
                    if let Ok(buf) = sub.recv_timeout(Duration::from_millis(100)) {
                        let idx = u64::from_le_bytes(buf[..8].try_into().expect("8"));
                        let n = u64::from_le_bytes(buf[8..16].try_into().expect("8"));
                        if idx + 1 == n {
                            let _ = tx.send(());
                        }
                    }
                }
            }));
        }
        let s2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            let (sub, mut publ) = (ping_b, pong_b);
            while !s2.load(Ordering::Relaxed) {
                if let Ok(got) = sub.recv_timeout(Duration::from_millis(100)) {
                    // One copy, from the sample into the loan (another topic's
                    // chunk): zenoh's responder puts its payload without one.
                    let mut loan = publ.loan(got.len()).expect("echo");
                    loan.copy_from_slice(&got);
                    drop(got);
                    loan.send();
                }
            }
        }));
        Self {
            bridges: vec![a, b],
            stop,
            tp,
            tp_small,
            ping,
            pong,
            done,
            threads,
        }
    }

    fn throughput(&mut self, size: usize, n: u64) -> f64 {
        let t = Instant::now();
        let publ = if size.max(16) <= SMALL_SLOT {
            &mut self.tp_small
        } else {
            &mut self.tp
        };
        for i in 0..n {
            // Written in place, as zenoh's sender fills its own buffer.
            let mut loan = publ.loan(size.max(16)).expect("loan");
            write_msg(&mut loan, i, n);
            loan.send();
        }
        self.done
            .recv_timeout(Duration::from_secs(300))
            .expect("the burst never arrived");
        n as f64 / t.elapsed().as_secs_f64()
    }

    fn rtt(&mut self, size: usize, n: u64) -> Duration {
        let t = Instant::now();
        for i in 0..n {
            let mut loan = self.ping.loan(size.max(16)).expect("loan");
            write_msg(&mut loan, i, n);
            loan.send();
            let got = self
                .pong
                .recv_timeout(Duration::from_secs(60))
                .expect("pong");
            assert_eq!(got.len(), size.max(16));
        }
        t.elapsed() / n as u32
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
        // The bridges go first (killed and reaped), so that this process closes each
        // topic last and it is removed with it (nothing left in /dev/shm).
        self.bridges.clear();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("zenoh-peer") {
        let _ = SETTINGS.set(args[2..].to_vec());
        zenoh_peer(args.get(1).expect("zenoh-peer ENDPOINT"));
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let known = [
        "--rounds", "--bridge", "--zenoh", "--only", "--size", "--what", "--secs",
    ];
    let mut i = 0;
    while i < args.len() {
        if !known.contains(&args[i].as_str()) {
            usage(&format!("unknown argument {:?}", args[i]));
        }
        if args.get(i + 1).is_none() {
            usage(&format!("{} needs a value", args[i]));
        }
        i += 2;
    }
    let _ = SETTINGS.set(
        args.iter()
            .enumerate()
            .filter(|(_, a)| *a == "--zenoh")
            .map(|(i, _)| args[i + 1].clone())
            .collect(),
    );
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|r| parsed("--rounds", r))
        .unwrap_or(5);
    if rounds == 0 {
        usage("--rounds: at least 1");
    }
    // For profiling one contender alone: `--only zenoh|bridge`, `--size 64|65536`,
    // `--secs S` (repeat that contender's throughput burst for S seconds).
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = opt("--only");
    if let Some(o) = only.as_deref().filter(|o| !["zenoh", "bridge"].contains(o)) {
        usage(&format!("--only {o:?}: zenoh or bridge"));
    }
    let only_size: Option<usize> = opt("--size").map(|s| parsed("--size", &s));
    if only_size.is_some_and(|s| s > SLOT) {
        usage(&format!(
            "--size: at most {SLOT} bytes (the topics' slot size)"
        ));
    }
    let secs: f64 = opt("--secs").map_or(0.0, |s| parsed("--secs", &s));
    if !(0.0..=86_400.0).contains(&secs) {
        usage("--secs: from 0 to 86400");
    }
    let what = opt("--what").unwrap_or_else(|| "both".into());
    if !["tp", "rtt", "both"].contains(&what.as_str()) {
        usage(&format!("--what {what:?}: tp, rtt or both"));
    }
    let (do_tp, do_rtt) = (what != "rtt", what != "tp");
    // Bridge contenders: `--bridge NAME=PATH[,ARG...]`, repeated (e.g. the binary
    // before and after a change, or other settings, in the same interleaved run);
    // default: this binary's sibling `shmipc-bridge` with its defaults.
    let mut bridges: Vec<(String, PathBuf, Vec<String>)> = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--bridge")
        .map(|(i, _)| {
            let spec = &args[i + 1];
            let Some((name, rest)) = spec.split_once('=') else {
                usage(&format!("--bridge {spec:?}: NAME=PATH[,ARG...]"))
            };
            let mut parts = rest.split(',').map(str::to_owned);
            let path = PathBuf::from(parts.next().unwrap_or_default());
            (name.to_owned(), path, parts.collect())
        })
        .collect();
    if bridges.is_empty() {
        let sibling = std::env::current_exe()
            .expect("exe")
            .with_file_name("shmipc-bridge");
        bridges.push(("bridge".into(), sibling, vec![]));
    }
    for (name, path, _) in &bridges {
        if !path.is_file() {
            eprintln!(
                "shmipc-bridge-bench: bridge {name:?}: {} is not there; build it first \
                 (cargo build --release --manifest-path crates/shmipc-bridge/Cargo.toml)",
                path.display()
            );
            std::process::exit(1);
        }
    }
    if let Some(only) = only {
        let size = only_size.unwrap_or(64);
        let (n_tp, n_rtt) = if size > 4096 {
            (5_000, 500)
        } else {
            (50_000, 2_000)
        };
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut tp = vec![];
        let mut rtt = vec![];
        match only.as_str() {
            "zenoh" => {
                let z = Zenoh::start();
                z.rtt(size, 100);
                loop {
                    if do_tp {
                        tp.push(z.throughput(size, n_tp));
                    }
                    if do_rtt {
                        rtt.push(z.rtt(size, n_rtt));
                    }
                    if Instant::now() >= end {
                        break;
                    }
                }
            }
            "bridge" => {
                let mut b = Bridged::start(&bridges[0].1, &bridges[0].2);
                b.rtt(size, 100);
                loop {
                    if do_tp {
                        tp.push(b.throughput(size, n_tp));
                    }
                    if do_rtt {
                        rtt.push(b.rtt(size, n_rtt));
                    }
                    if Instant::now() >= end {
                        break;
                    }
                }
            }
            o => panic!("--only {o}: zenoh or bridge"),
        }
        println!(
            "{only} {size} B: {} bursts, median {:.0} samples/s, rtt {:.1?}",
            tp.len().max(rtt.len()),
            if tp.is_empty() { 0.0 } else { median(tp) },
            if rtt.is_empty() {
                Duration::ZERO
            } else {
                median(rtt)
            }
        );
        return;
    }
    let z = Zenoh::start();
    let mut bs: Vec<Bridged> = bridges
        .iter()
        .map(|(_, path, extra)| Bridged::start(path, extra))
        .collect();
    // Warm every path up (connections, routes, pages).
    z.rtt(64, 100);
    z.throughput(64, 1000);
    for b in &mut bs {
        b.rtt(64, 100);
        b.throughput(64, 1000);
    }
    let k = bs.len();
    println!("size    path          samples/s        rtt   ratio tp  ratio rtt  (median of per-round ratios to zenoh; goals >= 0.9x, <= 1.2x)");
    for (size, n_tp, n_rtt) in [(64usize, 50_000u64, 2_000u64), (65536, 5_000, 500)] {
        // Per contender (0: zenoh, then the bridges): throughputs and round trips.
        let mut tp = vec![vec![]; k + 1];
        let mut rtt = vec![vec![]; k + 1];
        for r in 0..rounds {
            // Rotate who goes first, round by round.
            let order: Vec<usize> = (0..=k).map(|i| (i + r) % (k + 1)).collect();
            for &c in &order {
                tp[c].push(if c == 0 {
                    z.throughput(size, n_tp)
                } else {
                    bs[c - 1].throughput(size, n_tp)
                });
            }
            for &c in &order {
                rtt[c].push(if c == 0 {
                    z.rtt(size, n_rtt)
                } else {
                    bs[c - 1].rtt(size, n_rtt)
                });
            }
            let line: Vec<String> = (0..=k)
                .map(|c| {
                    let name = if c == 0 { "zenoh" } else { &bridges[c - 1].0 };
                    format!("{name} {:.0}/s {:.1?}", tp[c][r], rtt[c][r])
                })
                .collect();
            eprintln!("round {r} size {size}: {}", line.join(", "));
        }
        for c in 0..=k {
            let name = if c == 0 { "zenoh" } else { &bridges[c - 1].0 };
            let ratio_tp: Vec<f64> = tp[c].iter().zip(&tp[0]).map(|(b, z)| b / z).collect();
            let ratio_rtt: Vec<f64> = rtt[c]
                .iter()
                .zip(&rtt[0])
                .map(|(b, z)| b.as_secs_f64() / z.as_secs_f64())
                .collect();
            println!(
                "{size:<7} {name:<12} {:>10.0}   {:>9.1?}   {:>6.2}x   {:>6.2}x",
                median(tp[c].clone()),
                median(rtt[c].clone()),
                median(ratio_tp),
                median(ratio_rtt),
            );
        }
    }
}
