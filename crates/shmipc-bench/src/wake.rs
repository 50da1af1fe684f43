//! The `wake` suite (`shmipc-bench --only wake`): round trips in which the receiver
//! is **asleep** when the message is sent.
//!
//! Before each round trip the client (this process, CPU 0) busy-waits [`PAUSE`]
//! (longer than any receiver's spin, and than the guest kernel's halt-polling), so the server (the peer, CPU 1) has gone to
//! sleep in its receive; then it times one round trip: send 8 bytes, the server
//! wakes, sends them back, the client receives them (with the same mechanism's
//! blocking receive). Contenders, interleaved round by round (A B C D A B C D …):
//!
//! * `eventfd` (the floor): two eventfds, blocking `read`/`write`;
//! * `shmipc-blocking`: two spsc channels, blocking `recv` (spin 20 µs, then futex);
//! * `shmipc-async`: the server awaits `recv_async` on a current-thread tokio
//!   runtime (woken through the reactor thread);
//! * `tokio-unix-socket`: the server reads a Unix stream socket on a current-thread
//!   tokio runtime (epoll); the client uses the same socket blocking.
//!
//! Each cell's figure is the median round trip of the round; the table gives the
//! median over rounds and its ratio to `eventfd` of the same rounds.

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
pub const CONTENDERS: [&str; 4] = [
    "eventfd",
    "shmipc-blocking",
    "shmipc-async",
    "tokio-unix-socket",
];

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

/// The client's end of every contender.
struct Client {
    to: OwnedFd,
    from: OwnedFd,
    out: Producer,
    back: Consumer,
    sock: UnixStream,
}

impl Client {
    fn round_trip(&mut self, which: &str, seq: u64) -> Result<()> {
        match which {
            "eventfd" => {
                write_u64(&self.to, seq)?;
                let got = read_u64(&self.from)?;
                check(got, seq)
            }
            "shmipc-blocking" | "shmipc-async" => {
                self.out.send(&seq.to_le_bytes())?;
                let s = self.back.recv()?;
                check(u64::from_le_bytes(s[..8].try_into()?), seq)
            }
            "tokio-unix-socket" => {
                self.sock.write_all(&seq.to_le_bytes())?;
                let mut b = [0u8; 8];
                self.sock.read_exact(&mut b)?;
                check(u64::from_le_bytes(b), seq)
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
        .args(if pinned { vec!["--pin", "1"] } else { vec![] })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    drop(peer_sock);
    let mut cin = child.stdin.take().ok_or("peer stdin")?;
    let mut cout = BufReader::new(child.stdout.take().ok_or("peer stdout")?);
    let mut line = String::new();
    cout.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("wake peer said {line:?}").into());
    }
    let mut c = Client {
        to,
        from,
        out,
        back,
        sock,
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
    writeln!(cin, "quit")?;
    drop(cin);
    child.wait()?;
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
        "  shmipc-async / tokio-unix-socket: {:.2} (goal <= 1.0); shmipc-blocking / eventfd: {:.2} (goal <= 1.1); shmipc-async / eventfd: {:.2} (goal <= 1.3)",
        ratio(2, 3),
        ratio(1, 0),
        ratio(2, 0)
    );
    Ok(())
}

/// The peer: serves each contender's round trips as the harness asks.
pub fn peer(prefix: &str, fds: &[i32], cpu: Option<usize>) -> Result<()> {
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
