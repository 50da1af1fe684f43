//! The `wake` suite (`shmipc-bench --only wake`): round trips in which the receiver
//! is **asleep** when the message is sent.
//!
//! Before each round trip the client (this process, CPU 0) busy-waits [`PAUSE`]
//! (longer than any receiver's spin, and than the guest kernel's halt-polling), so
//! the server (the peer, CPU 1) has gone to sleep in its receive; then it times one
//! round trip: send 8 bytes, the server wakes, sends them back with the same
//! mechanism, and the client, which **spins** for the reply in every contender (a
//! non-blocking read or `try_recv` in a loop), takes them. So each round trip holds
//! exactly one wake-up of a sleeping receiver, the server's, and the contenders
//! differ only in it and in their own send and receive calls. (Until this was so,
//! the client blocked in `read` for eventfd's reply, a second sleeping wake-up,
//! while shmipc's client spun 20 µs first: eventfd paid for two wake-ups and
//! shmipc-async came out at 0.6-0.8x of it.) Contenders, interleaved round by
//! round (A B C D E A B C D E …):
//!
//! * `eventfd` (the floor): two eventfds; the server blocks in `read`;
//! * `shmipc-blocking`: two spsc channels; the server blocks in `recv` (spin 20 µs,
//!   then futex);
//! * `shmipc-async`: the server awaits `recv_async` on a current-thread tokio
//!   runtime (woken through the reactor thread);
//! * `tokio-unix-socket`: the server reads a Unix stream socket on a current-thread
//!   tokio runtime (epoll);
//! * `iceoryx2`: an iceoryx2 publish-subscribe service each way plus an event
//!   service; the client publishes and notifies, the server blocks in the
//!   listener's `blocking_wait`, then takes the sample and publishes the reply.
//!
//! Each cell's figure is the median round trip of the round; the table gives the
//! median over rounds and its ratio to `eventfd` of the same rounds.
//!
//! Then, the cost of an idle [`WaitSet`](shmipc::WaitSet): this process waits
//! [`IDLE_FOR`] on a set of 1 and of 1 000 spsc consumers whose producers the peer
//! holds and never writes, and reports its CPU time (all its threads, the reactor's
//! included) as a share of one CPU.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{eventfd, EventfdFlags};
use shmipc::channel::spsc::{Consumer, Producer};

use crate::cli::Args;
use crate::peer::pin;
use crate::stats::median;
use crate::Result;

/// How long the client waits before each send (the receiver is asleep by then).
///
/// 1 ms, not the 200 µs first tried: these guests idle through `cpuidle-haltpoll`,
/// which keeps polling for up to 200 µs (adaptively) before it halts the vCPU, so a
/// 200 µs pause sometimes found a receiver's vCPU still polling, and favoured the
/// contenders whose receiver went idle last (shmipc-async measured 0.55x eventfd
/// that way). Past 200 µs every receiver's vCPU has halted.
pub const PAUSE: Duration = Duration::from_millis(1);

/// The contenders, in running order; the first is the floor.
pub const CONTENDERS: [&str; 5] = [
    "eventfd",
    "shmipc-blocking",
    "shmipc-async",
    "tokio-unix-socket",
    "iceoryx2",
];

/// What each contender is, for `--list`.
pub const ABOUT: [&str; 5] = [
    "two eventfds; the server blocks in read (the floor)",
    "two spsc channels; the server blocks in recv",
    "two spsc channels; the server awaits recv_async (tokio current-thread)",
    "a Unix stream socket; the server reads it on tokio current-thread (epoll)",
    "iceoryx2 pub/sub each way + an event; the server blocks in the listener",
];

/// How long each idle-WaitSet measurement waits.
pub const IDLE_FOR: Duration = Duration::from_secs(2);

/// The idle-WaitSet sizes measured.
pub const IDLE_SIZES: [usize; 2] = [1, 1000];

/// Whether the arguments ask for this suite.
pub fn wanted(args: &Args) -> bool {
    args.only.iter().any(|o| o == "wake")
}

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Spins on a non-blocking eventfd until it has a value.
fn spin_read_u64(fd: &OwnedFd) -> Result<u64> {
    let mut b = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut b) {
            Ok(8) => return Ok(u64::from_ne_bytes(b)),
            Ok(_) => return Err("short eventfd read".into()),
            Err(rustix::io::Errno::AGAIN) => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

fn read_u64(fd: &OwnedFd) -> Result<u64> {
    let mut b = [0u8; 8];
    let n = rustix::io::read(fd, &mut b)?;
    if n != 8 {
        return Err("short eventfd read".into());
    }
    Ok(u64::from_ne_bytes(b))
}

fn write_u64(fd: &OwnedFd, v: u64) -> Result<()> {
    rustix::io::write(fd, &v.to_ne_bytes())?;
    Ok(())
}

/// The client's end of every contender (every reply is spun for: module doc).
struct Client {
    to: OwnedFd,
    /// Non-blocking (the client spins on it).
    from: OwnedFd,
    out: Producer,
    back: Consumer,
    /// Non-blocking (the client spins on it).
    sock: UnixStream,
    iox: iox::Client,
}

impl Client {
    fn round_trip(&mut self, which: &str, seq: u64) -> Result<()> {
        match which {
            "eventfd" => {
                write_u64(&self.to, seq)?;
                let got = spin_read_u64(&self.from)?;
                check(got, seq)
            }
            "shmipc-blocking" | "shmipc-async" => {
                self.out.send(&seq.to_le_bytes())?;
                loop {
                    match self.back.try_recv() {
                        Ok(s) => return check(u64::from_le_bytes(s[..8].try_into()?), seq),
                        Err(shmipc::channel::RecvError::Empty) => std::hint::spin_loop(),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            "tokio-unix-socket" => {
                let msg = seq.to_le_bytes();
                let mut sent = 0;
                while sent < msg.len() {
                    match self.sock.write(&msg[sent..]) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let mut b = [0u8; 8];
                let mut got = 0;
                while got < b.len() {
                    match self.sock.read(&mut b[got..]) {
                        Ok(0) => return Err("wake peer closed its socket".into()),
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::hint::spin_loop();
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                check(u64::from_le_bytes(b), seq)
            }
            "iceoryx2" => {
                let got = self.iox.round_trip(seq)?;
                check(got, seq)
            }
            other => Err(format!("unknown wake contender {other}").into()),
        }
    }
}

fn check(got: u64, want: u64) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(format!("reply carries {got}, expected {want}").into())
    }
}

/// The wake peer, killed and reaped when dropped: on an error path too, so that
/// nothing of the run outlives the harness's cleanup.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the suite and prints its table.
pub fn run(args: &Args) -> Result<()> {
    let rounds = args
        .rounds
        .map_or(if args.quick { 5 } else { 10 }, |r| r.max(5)) as usize;
    let per = if args.tiny {
        20
    } else if args.quick {
        300
    } else {
        1000
    };
    let pinned = std::thread::available_parallelism().map_or(1, usize::from) >= 2 && pin(0).is_ok();
    let prefix = format!("shmipc-wake-{}", std::process::id());
    // Eventfds and one socket end are inherited by the peer (no CLOEXEC).
    let to = eventfd(0, EventfdFlags::empty())?;
    let from = eventfd(0, EventfdFlags::empty())?;
    let (sock, peer_sock) = UnixStream::pair()?;
    rustix::io::fcntl_setfd(&peer_sock, rustix::io::FdFlags::empty())?;
    // This end creates both channels; the peer opens the other ends.
    let back = Consumer::create(&format!("{prefix}-back"), 64, 64)?;
    let out = Producer::create(&format!("{prefix}-out"), 64, 64)?;
    let mut iox = iox::Client::create(&prefix)?;
    // The idle WaitSet's members: this end consumes, the peer holds the producers.
    let idle_max = IDLE_SIZES.iter().copied().max().unwrap_or(0);
    let mut idle: Vec<Consumer> = (0..idle_max)
        .map(|i| Consumer::create(&format!("{prefix}-idle-{i}"), 2, 8))
        .collect::<std::result::Result<_, _>>()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--role",
            "wake-peer",
            "--prefix",
            &prefix,
            "--fds",
            &to.as_raw_fd().to_string(),
            "--fds",
            &from.as_raw_fd().to_string(),
            "--fds",
            &peer_sock.as_raw_fd().to_string(),
        ])
        .args(["--idle", &idle_max.to_string()])
        .args(if pinned { vec!["--pin", "1"] } else { vec![] })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map(Reaped)?;
    drop(peer_sock);
    // The client spins for replies (module doc). `from`'s open file description is
    // shared with the peer, which only writes it (a non-blocking eventfd write
    // fails only on counter overflow); the socket end is the client's own.
    rustix::fs::fcntl_setfl(&from, rustix::fs::OFlags::NONBLOCK)?;
    sock.set_nonblocking(true)?;
    let mut cin = child.0.stdin.take().ok_or("peer stdin")?;
    let mut cout = BufReader::new(child.0.stdout.take().ok_or("peer stdout")?);
    let mut line = String::new();
    cout.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("wake peer said {line:?}").into());
    }
    iox.connect()?;
    let mut c = Client {
        to,
        from,
        out,
        back,
        sock,
        iox,
    };
    let mut seq = 0u64;
    // cells[contender][round] = median round trip of the round, ns.
    let mut cells = vec![Vec::new(); CONTENDERS.len()];
    for _round in 0..rounds {
        for (k, which) in CONTENDERS.iter().enumerate() {
            writeln!(cin, "{which} {per}")?;
            cin.flush()?;
            let mut rts = Vec::with_capacity(per);
            for i in 0..per + 10 {
                spin_for(PAUSE);
                seq += 1;
                let t = Instant::now();
                c.round_trip(which, seq)?;
                let dt = t.elapsed().as_nanos() as f64;
                if i >= 10 {
                    rts.push(dt);
                }
            }
            line.clear();
            cout.read_line(&mut line)?;
            if line.trim() != "done" {
                return Err(format!("wake peer said {line:?} after {which}").into());
            }
            cells[k].push(median(&rts));
        }
    }
    // The idle WaitSet (the peer holds every producer meanwhile).
    let mut idle_cpu = Vec::new();
    for &n in &IDLE_SIZES {
        idle_cpu.push((n, idle_wait(&mut idle[..n])?));
    }
    writeln!(cin, "quit")?;
    drop(cin);
    child.0.wait()?;
    drop(idle);
    let floor: Vec<f64> = cells[0].clone();
    println!(
        "wake (receiver asleep: the sender waits {} µs before each send; round trip, 8 B; {rounds} rounds x {per}; pinned: {pinned})",
        PAUSE.as_micros()
    );
    println!(
        "  {:<20} {:>12} {:>10}",
        "contender", "median µs", "x eventfd"
    );
    for (k, which) in CONTENDERS.iter().enumerate() {
        let ratios: Vec<f64> = cells[k].iter().zip(&floor).map(|(a, f)| a / f).collect();
        println!(
            "  {:<20} {:>12.1} {:>10.2}",
            which,
            median(&cells[k]) / 1000.0,
            median(&ratios)
        );
    }
    let ratio = |a: usize, b: usize| {
        let r: Vec<f64> = cells[a].iter().zip(&cells[b]).map(|(x, y)| x / y).collect();
        median(&r)
    };
    println!(
        "  shmipc-async / tokio-unix-socket: {:.2} (goal <= 1.0); shmipc-blocking / eventfd: {:.2} (goal <= 1.1); shmipc-async / eventfd: {:.2} (goal <= 1.3); shmipc-blocking / iceoryx2: {:.2}",
        ratio(2, 3),
        ratio(1, 0),
        ratio(2, 0),
        ratio(1, 4)
    );
    println!(
        "idle WaitSet (spsc consumers whose live producers never write; this process's CPU time while it waits {} s):",
        IDLE_FOR.as_secs()
    );
    for (n, share) in idle_cpu {
        println!("  {n:>5} members: {:>6.2} % of one CPU", share * 100.0);
    }
    Ok(())
}

/// This process's CPU time (every thread).
fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Waits [`IDLE_FOR`] on a WaitSet of `members` (none gets a message); the share of
/// one CPU this process used meanwhile.
fn idle_wait(members: &mut [Consumer]) -> Result<f64> {
    let mut set = shmipc::WaitSet::new();
    let mut refs: Vec<&mut dyn shmipc::Waitable> = members
        .iter_mut()
        .map(|c| c as &mut dyn shmipc::Waitable)
        .collect();
    // A first short wait registers the reactor's threads (not counted).
    let _ = set.wait(&mut refs, Some(Duration::from_millis(50)));
    let (c0, t0) = (cpu_time(), Instant::now());
    let ready = set.wait(&mut refs, Some(IDLE_FOR)).len();
    let (c1, t1) = (cpu_time(), Instant::now());
    if ready != 0 {
        return Err(format!("idle WaitSet: {ready} members ready, expected none").into());
    }
    Ok((c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64())
}

/// The peer: serves each contender's round trips as the harness asks.
pub fn peer(prefix: &str, fds: &[i32], cpu: Option<usize>, idle: usize) -> Result<()> {
    if let Some(cpu) = cpu {
        pin(cpu)?;
    }
    let [to, from, sock] = fds else {
        return Err("wake peer: expected 3 descriptors".into());
    };
    // SAFETY: the harness passed these descriptor numbers, inherited open (no
    // CLOEXEC), and nothing else in this process owns them.
    let (to, from, sock) = unsafe {
        (
            OwnedFd::from_raw_fd(*to),
            OwnedFd::from_raw_fd(*from),
            OwnedFd::from_raw_fd(*sock),
        )
    };
    let std_sock = UnixStream::from(sock);
    let mut inp = Consumer::open(&format!("{prefix}-out"))?;
    let mut back = Producer::open(&format!("{prefix}-back"))?;
    let iox = iox::Server::open(prefix)?;
    let _idle: Vec<Producer> = (0..idle)
        .map(|i| Producer::open(&format!("{prefix}-idle-{i}")))
        .collect::<std::result::Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    std_sock.set_nonblocking(true)?;
    let mut tsock = {
        let _g = rt.enter();
        tokio::net::UnixStream::from_std(std_sock)?
    };
    let stdout = std::io::stdout();
    println!("ready");
    stdout.lock().flush()?;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut it = line.split_whitespace();
        let (Some(which), Some(n)) = (it.next(), it.next()) else {
            break;
        };
        let n: usize = n.parse::<usize>()? + 10;
        match which {
            "eventfd" => {
                for _ in 0..n {
                    let v = read_u64(&to)?;
                    write_u64(&from, v)?;
                }
            }
            "shmipc-blocking" => {
                for _ in 0..n {
                    let s = inp.recv()?;
                    let v: [u8; 8] = s[..8].try_into()?;
                    drop(s);
                    back.send(&v)?;
                }
            }
            "shmipc-async" => rt.block_on(async {
                for _ in 0..n {
                    let s = inp.recv_async().await?;
                    let v: [u8; 8] = s[..8].try_into()?;
                    drop(s);
                    back.send(&v)?;
                }
                Ok::<(), crate::Error>(())
            })?,
            "iceoryx2" => {
                for _ in 0..n {
                    iox.serve()?;
                }
            }
            "tokio-unix-socket" => rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                for _ in 0..n {
                    let mut b = [0u8; 8];
                    tsock.read_exact(&mut b).await?;
                    tsock.write_all(&b).await?;
                }
                Ok::<(), crate::Error>(())
            })?,
            other => return Err(format!("unknown wake contender {other}").into()),
        }
        println!("done");
        stdout.lock().flush()?;
    }
    Ok(())
}

/// The iceoryx2 contender: a `u64` publish-subscribe service each way and an event
/// service that the client notifies after each publish.
mod iox {
    use iceoryx2::port::listener::Listener;
    use iceoryx2::port::notifier::Notifier;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::prelude::*;

    use crate::Result;

    type Svc = ipc::Service;

    fn node() -> Result<Node<Svc>> {
        crate::iceoryx::new_node()
    }

    fn pubsub(
        node: &Node<Svc>,
        name: &str,
    ) -> Result<iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, u64, ()>> {
        Ok(node
            .service_builder(&ServiceName::new(name)?)
            .publish_subscribe::<u64>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(1)
            .open_or_create()?)
    }

    fn event(
        node: &Node<Svc>,
        name: &str,
    ) -> Result<iceoryx2::service::port_factory::event::PortFactory<Svc>> {
        Ok(node
            .service_builder(&ServiceName::new(name)?)
            .event()
            .open_or_create()?)
    }

    /// The client's ports (ports first: dropped before the services and node).
    pub struct Client {
        publisher: Publisher<Svc, u64, ()>,
        subscriber: Option<Subscriber<Svc, u64, ()>>,
        notifier: Notifier<Svc>,
        prefix: String,
        _node: Node<Svc>,
    }

    impl Client {
        pub fn create(prefix: &str) -> Result<Self> {
            let node = node()?;
            let ping = pubsub(&node, &format!("{prefix}-iox-ping"))?;
            let ev = event(&node, &format!("{prefix}-iox-ev"))?;
            Ok(Self {
                publisher: ping.publisher_builder().create()?,
                subscriber: None,
                notifier: ev.notifier_builder().create()?,
                prefix: prefix.to_owned(),
                _node: node,
            })
        }

        /// Opens the reply service (after the peer created its publisher's).
        pub fn connect(&mut self) -> Result<()> {
            let pong = pubsub(&self._node, &format!("{}-iox-pong", self.prefix))?;
            self.subscriber = Some(pong.subscriber_builder().buffer_size(1).create()?);
            Ok(())
        }

        /// Publishes `seq`, notifies, spins for the reply.
        pub fn round_trip(&mut self, seq: u64) -> Result<u64> {
            let sub = self.subscriber.as_ref().ok_or("iceoryx2: not connected")?;
            if self.publisher.send_copy(seq)? == 0 {
                return Err("iceoryx2: the sample reached no subscriber".into());
            }
            self.notifier.notify()?;
            loop {
                if let Some(s) = sub.receive()? {
                    return Ok(*s.payload());
                }
                std::hint::spin_loop();
            }
        }
    }

    /// The server's ports.
    pub struct Server {
        subscriber: Subscriber<Svc, u64, ()>,
        publisher: Publisher<Svc, u64, ()>,
        listener: Listener<Svc>,
        _node: Node<Svc>,
    }

    impl Server {
        pub fn open(prefix: &str) -> Result<Self> {
            let node = node()?;
            let ping = pubsub(&node, &format!("{prefix}-iox-ping"))?;
            let pong = pubsub(&node, &format!("{prefix}-iox-pong"))?;
            let ev = event(&node, &format!("{prefix}-iox-ev"))?;
            Ok(Self {
                subscriber: ping.subscriber_builder().buffer_size(1).create()?,
                publisher: pong.publisher_builder().create()?,
                listener: ev.listener_builder().create()?,
                _node: node,
            })
        }

        /// Sleeps in the listener until notified, then echoes the sample.
        pub fn serve(&self) -> Result<()> {
            loop {
                if let Some(s) = self.subscriber.receive()? {
                    let v = *s.payload();
                    drop(s);
                    if self.publisher.send_copy(v)? == 0 {
                        return Err("iceoryx2: the reply reached no subscriber".into());
                    }
                    return Ok(());
                }
                self.listener.blocking_wait(|_| {})?;
            }
        }
    }
}
