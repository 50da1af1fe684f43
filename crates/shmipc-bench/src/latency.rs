//! Round-trip latency: the client (the harness) sends a payload, the server (the
//! peer) copies it out and sends it back, the client copies the reply out.
//!
//! Every contender implements [`RoundTrip`]; [`CONTENDERS`] lists them in the order
//! they run in each round. The shmipc channel rows are there with `open: None` until
//! the channels land: wiring one is one function in `shmipc_channels.rs`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::{Duration, Instant};

use crate::ctx::{fd, Ctx, Side};
use crate::mapped::Mapped;
use crate::{iceoryx, shmipc_channels, spin, Result};

/// The payload sizes of the suite.
pub const PAYLOADS: [usize; 4] = [8, 64, 4096, 65536];
/// The largest payload.
pub const MAX_PAYLOAD: usize = 65536;
/// The sequence number that ends a server's echo loop.
pub const STOP: u64 = u64::MAX;

/// Writes the sequence number into a message's first 8 bytes.
#[inline]
pub fn put_seq(msg: &mut [u8], seq: u64) {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Reads the sequence number from a message's first 8 bytes.
#[inline]
pub fn get_seq(msg: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&msg[..8]);
    u64::from_le_bytes(b)
}

#[inline]
fn check_seq(msg: &[u8], want: u64) -> Result<()> {
    let got = get_seq(msg);
    if got != want {
        return Err(format!("reply carries sequence number {got}, expected {want}").into());
    }
    Ok(())
}

/// A message of `len` bytes (at least 8) filled with a pattern.
pub fn message(len: usize) -> Vec<u8> {
    (0..len.max(8)).map(|i| (i % 251) as u8).collect()
}

/// One end of a round-trip contender.
pub trait RoundTrip {
    /// Client: sends all of `msg`, waits for the echo, copies all of it into `reply`
    /// (`reply.len() == msg.len()`).
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()>;

    /// Server: waits for one message of `buf.len()` bytes, copies all of it into
    /// `buf`, and sends all of `buf` back.
    fn pong(&mut self, buf: &mut [u8]) -> Result<()>;

    /// Client: `n` round trips numbered from `*seq + 1`, each reply checked.
    /// (A provided method: the loop calls `ping` without dynamic dispatch.)
    fn batch(&mut self, out: &mut [u8], back: &mut [u8], seq: &mut u64, n: u64) -> Result<()> {
        for _ in 0..n {
            *seq += 1;
            put_seq(out, *seq);
            self.ping(out, back)?;
            check_seq(back, *seq)?;
        }
        Ok(())
    }

    /// Client: ends the server's echo loop.
    fn stop(&mut self, out: &mut [u8], back: &mut [u8]) -> Result<()> {
        put_seq(out, STOP);
        self.ping(out, back)?;
        check_seq(back, STOP)
    }

    /// Server: echoes messages of `len` bytes until the one numbered [`STOP`];
    /// returns how many it echoed.
    fn serve(&mut self, len: usize) -> Result<u64> {
        let mut buf = vec![0u8; len];
        let mut n = 0;
        loop {
            self.pong(&mut buf)?;
            n += 1;
            if get_seq(&buf) == STOP {
                return Ok(n);
            }
        }
    }
}

/// Sets up this process's end of a contender.
pub type OpenFn = fn(&mut Ctx) -> Result<Box<dyn RoundTrip>>;

/// A latency contender.
#[derive(Debug, Clone, Copy)]
pub struct Contender {
    /// Its name in tables, JSON and `--only`.
    pub name: &'static str,
    /// Its set-up; `None` while it is not wired into this build.
    pub open: Option<OpenFn>,
    /// One line on what it measures.
    pub about: &'static str,
}

/// The latency contenders, in running order. The first is the floor.
pub const CONTENDERS: [Contender; 10] = [
    Contender {
        name: "floor",
        open: Some(open_floor),
        about: "AtomicU64 ping-pong in a shmipc segment + payload copies: the hardware's limit",
    },
    // ---- shmipc channels: wire each in shmipc_channels.rs once the channels land ----
    Contender {
        name: "shmipc-spsc",
        open: shmipc_channels::SPSC_ROUND_TRIP,
        about: "two shmipc spsc channels, spinning receive",
    },
    Contender {
        name: "shmipc-pubsub",
        open: shmipc_channels::PUBSUB_ROUND_TRIP,
        about: "two shmipc pubsub channels (one subscriber each), spinning receive",
    },
    Contender {
        name: "shmipc-mpmc",
        open: shmipc_channels::MPMC_ROUND_TRIP,
        about: "two shmipc mpmc queues (one producer, one consumer each), loaned, spinning receive",
    },
    Contender {
        name: "shmipc-rpc",
        open: shmipc_channels::RPC_ROUND_TRIP,
        about: "one shmipc rpc channel: request and response loaned and read in place, spinning",
    },
    Contender {
        name: "shmipc-spsc-blocking",
        open: shmipc_channels::SPSC_BLOCKING_ROUND_TRIP,
        about: "two shmipc spsc channels, blocking (sleeping) receive",
    },
    // ---- peers ----
    Contender {
        name: "iceoryx2",
        open: Some(iceoryx::open_round_trip),
        about: "iceoryx2 ipc publish-subscribe both ways, loaned slices, spinning receive",
    },
    Contender {
        name: "eventfd",
        open: Some(open_eventfd),
        about: "two blocking eventfds + payload through a shmipc segment",
    },
    Contender {
        name: "unix-socket",
        open: Some(open_unix_socket),
        about: "socketpair(AF_UNIX, SOCK_STREAM), payload through the socket",
    },
    Contender {
        name: "pipe",
        open: Some(open_pipe),
        about: "two pipes, payload through the pipes",
    },
];

/// The smallest power-of-two batch of round trips that takes at least `target`
/// (these round trips also warm up the path).
pub fn calibrate(
    ep: &mut dyn RoundTrip,
    out: &mut [u8],
    back: &mut [u8],
    seq: &mut u64,
    target: Duration,
) -> Result<u64> {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        ep.batch(out, back, seq, n)?;
        if t.elapsed() >= target || n >= 1 << 20 {
            return Ok(n);
        }
        n *= 2;
    }
}

/// `batches` timed batches of `batch` round trips each, after one untimed warm-up
/// batch; returns the mean round trip of each batch, in ns.
pub fn measure(
    ep: &mut dyn RoundTrip,
    out: &mut [u8],
    back: &mut [u8],
    seq: &mut u64,
    batch: u64,
    batches: usize,
) -> Result<Vec<f64>> {
    ep.batch(out, back, seq, batch)?;
    let mut means = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        ep.batch(out, back, seq, batch)?;
        means.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    Ok(means)
}

// ---------------------------------------------------------------- floor

const FLOOR_PING: usize = 0;
const FLOOR_PONG: usize = 1;
/// Offsets: ping and pong counters on separate cache-line pairs, then one payload
/// area per direction, page-aligned.
const OFF_PING: usize = 0;
const OFF_PONG: usize = 128;
const OFF_A: usize = 4096;
const OFF_B: usize = OFF_A + MAX_PAYLOAD;
const PAYLOAD_SEG_LEN: usize = OFF_B + MAX_PAYLOAD;

/// The floor: the client copies the payload into area A and bumps `ping`; the server
/// spins on `ping`, copies A out, copies it into B and sets `pong`; the client spins
/// on `pong` and copies B out. Release on each store pairs with Acquire on the
/// other side's load, so the payload copy is visible before the counter is.
#[derive(Debug)]
struct Floor {
    m: Mapped<2>,
    /// Client: the last turn sent. Server: the last turn answered.
    turn: u64,
}

fn open_floor(ctx: &mut Ctx) -> Result<Box<dyn RoundTrip>> {
    let m = Mapped::open(ctx, "floor", PAYLOAD_SEG_LEN, [OFF_PING, OFF_PONG])?;
    Ok(Box::new(Floor { m, turn: 0 }))
}

impl RoundTrip for Floor {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        self.m.view().write_at(OFF_A, msg)?;
        self.turn += 1;
        let turn = self.turn;
        self.m.atomic(FLOOR_PING).store(turn, Release);
        let pong = self.m.atomic(FLOOR_PONG);
        spin::until("the floor's pong", || pong.load(Acquire) == turn)?;
        self.m.view().read_at(OFF_B, reply)?;
        Ok(())
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        let ping = self.m.atomic(FLOOR_PING);
        let last = self.turn;
        let mut turn = last;
        spin::until("the floor's ping", || {
            turn = ping.load(Acquire);
            turn != last
        })?;
        self.m.view().read_at(OFF_A, buf)?;
        self.m.view().write_at(OFF_B, buf)?;
        self.turn = turn;
        self.m.atomic(FLOOR_PONG).store(turn, Release);
        Ok(())
    }
}

// ---------------------------------------------------------------- eventfd

/// Payload through a shared segment (areas A and B as in the floor), wake-ups through
/// two blocking eventfds. The eventfd write/read pair orders the payload copy.
#[derive(Debug)]
struct EventFd {
    m: Mapped<0>,
    ping: OwnedFd,
    pong: OwnedFd,
}

fn open_eventfd(ctx: &mut Ctx) -> Result<Box<dyn RoundTrip>> {
    let m = Mapped::open(ctx, "eventfd", PAYLOAD_SEG_LEN, [])?;
    let ping = ctx.take_fd(fd::EFD_PING)?;
    let pong = ctx.take_fd(fd::EFD_PONG)?;
    Ok(Box::new(EventFd { m, ping, pong }))
}

fn efd_signal(fd: &OwnedFd) -> Result<()> {
    loop {
        match rustix::io::write(fd, &1u64.to_ne_bytes()) {
            Ok(8) => return Ok(()),
            Ok(n) => return Err(format!("eventfd write wrote {n} bytes").into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("eventfd write: {e}").into()),
        }
    }
}

fn efd_wait(fd: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut b) {
            Ok(8) => return Ok(()),
            Ok(n) => return Err(format!("eventfd read returned {n} bytes").into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("eventfd read: {e}").into()),
        }
    }
}

impl RoundTrip for EventFd {
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        self.m.view().write_at(OFF_A, msg)?;
        efd_signal(&self.ping)?;
        efd_wait(&self.pong)?;
        self.m.view().read_at(OFF_B, reply)?;
        Ok(())
    }

    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        efd_wait(&self.ping)?;
        self.m.view().read_at(OFF_A, buf)?;
        self.m.view().write_at(OFF_B, buf)?;
        efd_signal(&self.pong)
    }
}

// ---------------------------------------------------------------- byte streams

/// Payload through a byte stream each way (`tx` then `rx` on the client, `rx` then
/// `tx` on the server).
#[derive(Debug)]
struct Streams<T> {
    tx: T,
    rx: T,
}

impl<T: Read + Write> RoundTrip for Streams<T> {
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        self.tx.write_all(msg)?;
        self.rx.read_exact(reply)?;
        Ok(())
    }

    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        self.rx.read_exact(buf)?;
        self.tx.write_all(buf)?;
        Ok(())
    }
}

fn open_pipe(ctx: &mut Ctx) -> Result<Box<dyn RoundTrip>> {
    let (tx, rx) = match ctx.side {
        Side::Client => (fd::PIPE_PING_W, fd::PIPE_PONG_R),
        Side::Server => (fd::PIPE_PONG_W, fd::PIPE_PING_R),
    };
    Ok(Box::new(Streams {
        tx: File::from(ctx.take_fd(tx)?),
        rx: File::from(ctx.take_fd(rx)?),
    }))
}

fn open_unix_socket(ctx: &mut Ctx) -> Result<Box<dyn RoundTrip>> {
    let i = match ctx.side {
        Side::Client => fd::SOCK_CLIENT,
        Side::Server => fd::SOCK_SERVER,
    };
    let sock = UnixStream::from(ctx.take_fd(i)?);
    Ok(Box::new(Streams {
        tx: sock.try_clone()?,
        rx: sock,
    }))
}
