//! `shmipc-bridge-bench`: samples/s and round-trip latency through
//! shmipc → bridge → zenoh → bridge → shmipc, against zenoh's own pub/sub between two
//! processes, over the same loopback TCP, interleaved round by round (medians).
//!
//! ```text
//! cargo run --release --manifest-path crates/shmipc-bridge/Cargo.toml \
//!     --bin shmipc-bridge-bench -- [--rounds 5]
//! ```
//!
//! The zenoh side: this process puts, a child process (this binary in the
//! `zenoh-peer` role) receives with callbacks, echoes pings and says when the last
//! sample of a burst came. The bridge side: this process publishes and subscribes on
//! shmipc topics (one thread echoes pings), two `shmipc-bridge --lossless` processes
//! carry them. Every contender copies every byte in and out once.

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

fn config(listen: Option<&str>, connect: Option<&str>) -> zenoh::Config {
    let mut c = zenoh::Config::default();
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
            let data = sample.payload().to_bytes().into_owned();
            pong.put(data).wait().expect("put pong");
        })
        .wait()
        .expect("ping");
    let _tp = s
        .declare_subscriber("bench/z/tp")
        .callback(move |sample| {
            let b = sample.payload().to_bytes();
            let data = b.to_vec(); // read every byte, as a shmipc subscriber does
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

fn msg(size: usize, idx: u64, n: u64) -> Vec<u8> {
    let mut v = vec![0xa5u8; size.max(16)];
    v[..8].copy_from_slice(&idx.to_le_bytes());
    v[8..16].copy_from_slice(&n.to_le_bytes());
    v
}

fn topic_options() -> Options {
    Options::new()
        .capacity(256)
        .slot_size(SLOT)
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
    _bridges: [Kill; 2],
    stop: Arc<AtomicBool>,
    tp: Publisher,
    ping: Publisher,
    pong: Subscriber,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Bridged {
    fn start(bridge: &PathBuf) -> Self {
        let id = std::process::id();
        let t = |n: &str| format!("bb-{n}-{id}");
        let o = topic_options();
        let tp = o.create_publisher(&t("tp-a")).expect("tp-a");
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
            format!("bench/b/ping={}", t("ping-b")),
            "--export".into(),
            format!("{}=bench/b/pong", t("pong-b")),
        ]);
        // The bridges attach: a sample published before would find no subscriber.
        let end = Instant::now() + Duration::from_secs(60);
        while !(tp.subscribers() > 0
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
        let s1 = stop.clone();
        threads.push(std::thread::spawn(move || {
            let (sub, mut buf) = (tp_b, Vec::with_capacity(SLOT));
            while !s1.load(Ordering::Relaxed) {
                if sub
                    .recv_into_timeout(&mut buf, Duration::from_millis(100))
                    .is_ok()
                {
                    let idx = u64::from_le_bytes(buf[..8].try_into().expect("8"));
                    let n = u64::from_le_bytes(buf[8..16].try_into().expect("8"));
                    if idx + 1 == n {
                        let _ = tx.send(());
                    }
                }
            }
        }));
        let s2 = stop.clone();
        threads.push(std::thread::spawn(move || {
            let (sub, mut publ, mut buf) = (ping_b, pong_b, Vec::with_capacity(SLOT));
            while !s2.load(Ordering::Relaxed) {
                if sub
                    .recv_into_timeout(&mut buf, Duration::from_millis(100))
                    .is_ok()
                {
                    publ.send(&buf).expect("echo");
                }
            }
        }));
        Self {
            _bridges: [a, b],
            stop,
            tp,
            ping,
            pong,
            done,
            threads,
        }
    }

    fn throughput(&mut self, size: usize, n: u64) -> f64 {
        let t = Instant::now();
        for i in 0..n {
            self.tp.send(&msg(size, i, n)).expect("send");
        }
        self.done
            .recv_timeout(Duration::from_secs(300))
            .expect("the burst never arrived");
        n as f64 / t.elapsed().as_secs_f64()
    }

    fn rtt(&mut self, size: usize, n: u64) -> Duration {
        let mut buf = Vec::with_capacity(SLOT);
        let t = Instant::now();
        for i in 0..n {
            self.ping.send(&msg(size, i, n)).expect("send");
            self.pong
                .recv_into_timeout(&mut buf, Duration::from_secs(60))
                .expect("pong");
            assert_eq!(buf.len(), size.max(16));
        }
        t.elapsed() / n as u32
    }
}

impl Drop for Bridged {
    fn drop(&mut self) {
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
        zenoh_peer(args.get(1).expect("zenoh-peer ENDPOINT"));
        return;
    }
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|r| r.parse().expect("--rounds N"))
        .unwrap_or(5);
    let bridge = std::env::current_exe()
        .expect("exe")
        .with_file_name("shmipc-bridge");
    assert!(
        bridge.exists(),
        "{} missing: build the crate first",
        bridge.display()
    );
    let z = Zenoh::start();
    let mut b = Bridged::start(&bridge);
    // Warm both paths up (connections, routes, pages).
    z.rtt(64, 100);
    b.rtt(64, 100);
    z.throughput(64, 1000);
    b.throughput(64, 1000);
    println!("size    path    samples/s      rtt");
    for (size, n_tp, n_rtt) in [(64usize, 50_000u64, 2_000u64), (65536, 5_000, 500)] {
        let (mut ztp, mut btp, mut zrtt, mut brtt) = (vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            // Alternate who goes first.
            if r % 2 == 0 {
                ztp.push(z.throughput(size, n_tp));
                btp.push(b.throughput(size, n_tp));
                zrtt.push(z.rtt(size, n_rtt));
                brtt.push(b.rtt(size, n_rtt));
            } else {
                btp.push(b.throughput(size, n_tp));
                ztp.push(z.throughput(size, n_tp));
                brtt.push(b.rtt(size, n_rtt));
                zrtt.push(z.rtt(size, n_rtt));
            }
            eprintln!(
                "round {r} size {size}: zenoh {:.0}/s {:?}, bridge {:.0}/s {:?}",
                ztp[r], zrtt[r], btp[r], brtt[r]
            );
        }
        let (zt, bt, zr, br) = (median(ztp), median(btp), median(zrtt), median(brtt));
        println!("{size:<7} zenoh   {zt:>10.0}   {zr:>9.1?}");
        println!("{size:<7} bridge  {bt:>10.0}   {br:>9.1?}");
        println!(
            "{size:<7} ratio   {:>10.2}x  {:>8.2}x   (bridge/zenoh; goals >= 0.9x, <= 1.2x)",
            bt / zt,
            br.as_secs_f64() / zr.as_secs_f64()
        );
    }
}
