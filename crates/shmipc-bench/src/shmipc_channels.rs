//! The shmipc channel contenders.
//!
//! * `shmipc-spsc` (latency): per payload size a pair of spsc channels
//!   `spsc-ping-<len>` and `spsc-pong-<len>`, [`LAT_CAPACITY`] slots of exactly `len`
//!   bytes each. The client creates both (producer of `ping`, consumer of `pong`);
//!   the server opens both the other way round. Sending: loan a slot of `len` bytes,
//!   copy the message into it, send. Receiving: spin (`spin::Spinner`) on
//!   `try_recv`, copy the whole sample out, drop it (hands the slot back).
//! * `shmipc-spsc-blocking`: the same channels (own names), receiving with the
//!   channel's blocking `recv`: it spins for about 20 µs (`notify.rs`), then sleeps
//!   on the futex; the sender's `send` skips the wake-up system call while nobody
//!   sleeps. So it sleeps only when the peer is slower than the spin phase.
//! * `shmipc-pubsub`: per payload size two pubsub channels with one subscriber each
//!   (`Overflow::Block`, so nothing is lost). Pubsub copies by design (a sequence
//!   lock per slot, atomic word copies, no loans): `send` copies the message in,
//!   `try_recv_into` copies it into this end's buffer, and that is copied into the
//!   caller's buffer (one copy more on the receiving side than the other rows).
//! * `shmipc-mpmc`: per payload size two mpmc queues (`mpmc-ping-<len>`,
//!   `mpmc-pong-<len>`), one producer and one consumer on each: loan, copy in,
//!   send; spin on `try_recv`, copy the sample out, drop it.
//! * `shmipc-rpc`: per payload size one rpc channel: the client loans a request,
//!   copies the message in and sends it, then spins on `try_recv_response`; the
//!   server spins on `try_recv`, copies the request out, loans a response, copies
//!   it back in and sends it. (The client side creates the channel as a server and
//!   hands over to the peer's server at set-up.)
//! * `shmipc-spsc` (throughput): per payload size one spsc channel of
//!   `throughput::slots_for(len)` slots of `len` bytes, created by the client (the
//!   consumer) at set-up and opened by the peer (the producer). The producer loans,
//!   copies, sends (`loan` waits while the ring is full: spin, then futex); the
//!   consumer spins on `try_recv` and copies each sample out.
//!
//! Every shared object name comes from `ctx.name(..)`, unique to the run and removed
//! with it.

use std::time::Duration;

use shmipc::channel::pubsub::{self, Overflow};
use shmipc::channel::spsc::{self, Consumer, Producer};
use shmipc::channel::RecvError;
use shmipc::channel::{mpmc, rpc};

use crate::ctx::{Ctx, Side};
use crate::spin::Spinner;
use crate::throughput::{self, slots_for, Stream};
use crate::{latency, Result};

/// Slots of each latency channel: a few, so that the producer seldom has to load
/// the consumer's position (a round trip never has more than one message in flight).
pub const LAT_CAPACITY: usize = 8;

/// `shmipc-spsc` round trip (spinning).
pub const SPSC_ROUND_TRIP: Option<latency::OpenFn> = Some(open_spsc);

/// `shmipc-pubsub` round trip (spinning).
pub const PUBSUB_ROUND_TRIP: Option<latency::OpenFn> = Some(open_pubsub);

/// `shmipc-mpmc` round trip (spinning).
pub const MPMC_ROUND_TRIP: Option<latency::OpenFn> = Some(open_mpmc);

/// `shmipc-rpc` round trip (spinning).
pub const RPC_ROUND_TRIP: Option<latency::OpenFn> = Some(open_rpc);

/// `shmipc-spsc-blocking` round trip (sleeping waits).
pub const SPSC_BLOCKING_ROUND_TRIP: Option<latency::OpenFn> = Some(open_spsc_blocking);

/// `shmipc-spsc` stream (zero-copy loans) for the throughput suite.
pub const SPSC_STREAM: Option<throughput::OpenFn> = Some(open_spsc_stream);

fn index_of(payloads: &[usize], len: usize, what: &str) -> Result<usize> {
    payloads
        .iter()
        .position(|&l| l == len)
        .ok_or_else(|| format!("{what}: no channel for {len}-byte messages").into())
}

/// Loans a slot of `msg.len()` bytes (waiting while the ring is full), copies `msg`
/// into it and sends it.
#[inline]
fn spsc_send(tx: &mut Producer, msg: &[u8]) -> Result<()> {
    let mut loan = tx.loan(msg.len())?;
    loan.copy_from_slice(msg);
    loan.send();
    Ok(())
}

/// Copies a sample of exactly `buf.len()` bytes into `buf`.
#[inline]
fn take(sample: &[u8], buf: &mut [u8]) -> Result<()> {
    if sample.len() != buf.len() {
        return Err(format!(
            "shmipc: received {} bytes, expected {}",
            sample.len(),
            buf.len()
        )
        .into());
    }
    buf.copy_from_slice(sample);
    Ok(())
}

/// Spins on `try_recv` until a message comes, and copies it into `buf`.
#[inline]
fn spsc_spin_recv(rx: &mut Consumer, buf: &mut [u8], what: &'static str) -> Result<()> {
    let mut spinner = Spinner::new(what);
    loop {
        match rx.try_recv() {
            Ok(sample) => return take(&sample, buf),
            Err(RecvError::Empty) => spinner.tick()?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits with the blocking `recv` (spin, then futex) and copies the message into `buf`.
#[inline]
fn spsc_block_recv(rx: &mut Consumer, buf: &mut [u8]) -> Result<()> {
    let sample = rx.recv()?;
    take(&sample, buf)
}

// ---------------------------------------------------------------- spsc round trip

#[derive(Debug)]
struct SpscRoundTrip {
    /// One (sender, receiver) pair per entry of `latency::PAYLOADS`.
    ends: Vec<(Producer, Consumer)>,
    blocking: bool,
    current: usize,
}

fn open_spsc_pairs(
    ctx: &mut Ctx,
    tag: &str,
    blocking: bool,
) -> Result<Box<dyn latency::RoundTrip>> {
    let mut ends = Vec::new();
    for len in latency::PAYLOADS {
        let ping = ctx.name(&format!("{tag}-ping-{len}"));
        let pong = ctx.name(&format!("{tag}-pong-{len}"));
        let opts = spsc::Options::new().capacity(LAT_CAPACITY).slot_size(len);
        ends.push(match ctx.side {
            Side::Client => (opts.create_producer(&ping)?, opts.create_consumer(&pong)?),
            Side::Server => (Producer::open(&pong)?, Consumer::open(&ping)?),
        });
    }
    Ok(Box::new(SpscRoundTrip {
        ends,
        blocking,
        current: 0,
    }))
}

/// This process's end of `shmipc-spsc`.
pub fn open_spsc(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    open_spsc_pairs(ctx, "spsc", false)
}

/// This process's end of `shmipc-spsc-blocking`.
pub fn open_spsc_blocking(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    open_spsc_pairs(ctx, "spsc-blk", true)
}

impl SpscRoundTrip {
    /// The channel pair for messages of `len` bytes.
    #[inline]
    fn pair(&mut self, len: usize) -> Result<&mut (Producer, Consumer)> {
        if latency::PAYLOADS.get(self.current) != Some(&len) {
            self.current = index_of(&latency::PAYLOADS, len, "shmipc-spsc")?;
        }
        Ok(&mut self.ends[self.current])
    }
}

impl latency::RoundTrip for SpscRoundTrip {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        let blocking = self.blocking;
        let (tx, rx) = self.pair(msg.len())?;
        spsc_send(tx, msg)?;
        if blocking {
            spsc_block_recv(rx, reply)
        } else {
            spsc_spin_recv(rx, reply, "shmipc-spsc's reply")
        }
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        let blocking = self.blocking;
        let (tx, rx) = self.pair(buf.len())?;
        if blocking {
            spsc_block_recv(rx, buf)?;
        } else {
            spsc_spin_recv(rx, buf, "shmipc-spsc's ping")?;
        }
        spsc_send(tx, buf)
    }
}

// ---------------------------------------------------------------- pubsub round trip

#[derive(Debug)]
struct PubSubRoundTrip {
    /// One (publisher, subscriber) pair per entry of `latency::PAYLOADS`.
    ends: Vec<(pubsub::Publisher, pubsub::Subscriber)>,
    current: usize,
}

/// This process's end of `shmipc-pubsub`.
pub fn open_pubsub(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    let mut ends = Vec::new();
    for len in latency::PAYLOADS {
        let ping = ctx.name(&format!("ps-ping-{len}"));
        let pong = ctx.name(&format!("ps-pong-{len}"));
        let opts = pubsub::Options::new()
            .capacity(LAT_CAPACITY)
            .slot_size(len)
            .max_subscribers(1)
            .overflow(Overflow::Block);
        ends.push(match ctx.side {
            // The client creates both channels; the server's subscriber joins
            // during set-up, before the first message.
            Side::Client => (
                opts.create_publisher(&ping)?,
                opts.create_or_open_subscriber(&pong)?,
            ),
            Side::Server => (
                pubsub::Publisher::open(&pong)?,
                pubsub::Subscriber::open(&ping)?,
            ),
        });
    }
    Ok(Box::new(PubSubRoundTrip { ends, current: 0 }))
}

impl PubSubRoundTrip {
    #[inline]
    fn select(&mut self, len: usize) -> Result<usize> {
        if latency::PAYLOADS.get(self.current) != Some(&len) {
            self.current = index_of(&latency::PAYLOADS, len, "shmipc-pubsub")?;
        }
        Ok(self.current)
    }

    #[inline]
    fn recv(&mut self, i: usize, out: &mut [u8], what: &'static str) -> Result<()> {
        let sub = &self.ends[i].1;
        let mut spinner = Spinner::new(what);
        loop {
            // The sample is read in place and copied straight out.
            match sub.try_recv() {
                Ok(s) if s.lost() == 0 => return take(&s, out),
                Ok(s) => {
                    return Err(format!("shmipc-pubsub: lost {} messages", s.lost()).into());
                }
                Err(RecvError::Empty) => spinner.tick()?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl latency::RoundTrip for PubSubRoundTrip {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        let i = self.select(msg.len())?;
        self.ends[i].0.send(msg)?;
        self.recv(i, reply, "shmipc-pubsub's reply")
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        let i = self.select(buf.len())?;
        self.recv(i, buf, "shmipc-pubsub's ping")?;
        self.ends[i].0.send(buf)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- mpmc round trip

#[derive(Debug)]
struct MpmcRoundTrip {
    /// One (producer, consumer) pair per entry of `latency::PAYLOADS`.
    ends: Vec<(mpmc::Producer, mpmc::Consumer)>,
    current: usize,
}

/// This process's end of `shmipc-mpmc`.
pub fn open_mpmc(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    let mut ends = Vec::new();
    for len in latency::PAYLOADS {
        let ping = ctx.name(&format!("mpmc-ping-{len}"));
        let pong = ctx.name(&format!("mpmc-pong-{len}"));
        let opts = mpmc::Options::new()
            .capacity(LAT_CAPACITY)
            .slot_size(len)
            .max_endpoints(2);
        ends.push(match ctx.side {
            Side::Client => (opts.create_producer(&ping)?, opts.create_consumer(&pong)?),
            Side::Server => (mpmc::Producer::open(&pong)?, mpmc::Consumer::open(&ping)?),
        });
    }
    Ok(Box::new(MpmcRoundTrip { ends, current: 0 }))
}

impl MpmcRoundTrip {
    #[inline]
    fn select(&mut self, len: usize) -> Result<usize> {
        if latency::PAYLOADS.get(self.current) != Some(&len) {
            self.current = index_of(&latency::PAYLOADS, len, "shmipc-mpmc")?;
        }
        Ok(self.current)
    }

    #[inline]
    fn send(&mut self, i: usize, msg: &[u8]) -> Result<()> {
        let mut loan = self.ends[i].0.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send()?;
        Ok(())
    }

    #[inline]
    fn recv(&mut self, i: usize, out: &mut [u8], what: &'static str) -> Result<()> {
        let rx = &self.ends[i].1;
        let mut spinner = Spinner::new(what);
        loop {
            match rx.try_recv() {
                Ok(s) => return take(&s, out),
                Err(RecvError::Empty) => spinner.tick()?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl latency::RoundTrip for MpmcRoundTrip {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        let i = self.select(msg.len())?;
        self.send(i, msg)?;
        self.recv(i, reply, "shmipc-mpmc's reply")
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        let i = self.select(buf.len())?;
        self.recv(i, buf, "shmipc-mpmc's ping")?;
        self.send(i, buf)
    }
}

// ---------------------------------------------------------------- rpc round trip

enum RpcEnd {
    Client(rpc::Client),
    Server(rpc::Server),
}

impl std::fmt::Debug for RpcEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcEnd::Client(c) => c.fmt(f),
            RpcEnd::Server(s) => s.fmt(f),
        }
    }
}

#[derive(Debug)]
struct RpcRoundTrip {
    /// One end per entry of `latency::PAYLOADS`.
    ends: Vec<RpcEnd>,
    current: usize,
}

/// This process's end of `shmipc-rpc`.
pub fn open_rpc(ctx: &mut Ctx) -> Result<Box<dyn latency::RoundTrip>> {
    let mut ends = Vec::new();
    for len in latency::PAYLOADS {
        let name = ctx.name(&format!("rpc-{len}"));
        ends.push(match ctx.side {
            Side::Client => {
                // Create the channel, keep it with a client, hand the server
                // place over to the peer.
                let server = rpc::Options::new()
                    .capacity(LAT_CAPACITY)
                    .responses(LAT_CAPACITY)
                    .slot_size(len)
                    .max_clients(1)
                    .create_server(&name)?;
                let client = rpc::Client::open(&name)?;
                drop(server);
                RpcEnd::Client(client)
            }
            Side::Server => RpcEnd::Server(rpc::Server::open(&name)?),
        });
    }
    Ok(Box::new(RpcRoundTrip { ends, current: 0 }))
}

impl RpcRoundTrip {
    #[inline]
    fn select(&mut self, len: usize) -> Result<usize> {
        if latency::PAYLOADS.get(self.current) != Some(&len) {
            self.current = index_of(&latency::PAYLOADS, len, "shmipc-rpc")?;
        }
        Ok(self.current)
    }
}

impl latency::RoundTrip for RpcRoundTrip {
    #[inline]
    fn ping(&mut self, msg: &[u8], reply: &mut [u8]) -> Result<()> {
        let i = self.select(msg.len())?;
        let RpcEnd::Client(client) = &mut self.ends[i] else {
            return Err("shmipc-rpc: the peer end does not call".into());
        };
        let mut loan = client.loan_request(msg.len())?;
        loan.copy_from_slice(msg);
        let id = loan.send()?;
        let mut spinner = Spinner::new("shmipc-rpc's response");
        loop {
            match client.try_recv_response() {
                Ok(r) if r.id() == id => return take(&r, reply),
                Ok(_) => {}
                Err(RecvError::Empty) => spinner.tick()?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    #[inline]
    fn pong(&mut self, buf: &mut [u8]) -> Result<()> {
        let i = self.select(buf.len())?;
        let RpcEnd::Server(server) = &self.ends[i] else {
            return Err("shmipc-rpc: the client end does not serve".into());
        };
        let mut spinner = Spinner::new("shmipc-rpc's request");
        let req = loop {
            match server.try_recv() {
                Ok(r) => break r,
                Err(RecvError::Empty) => spinner.tick()?,
                Err(e) => return Err(e.into()),
            }
        };
        take(&req, buf)?;
        let mut loan = server.loan_response(&req, buf.len(), Duration::from_secs(10))?;
        loan.copy_from_slice(buf);
        loan.send()?;
        Ok(())
    }
}

// ---------------------------------------------------------------- spsc stream

enum End {
    Tx(Producer),
    Rx(Consumer),
}

#[derive(Debug)]
struct SpscStream {
    /// One end per entry of `throughput::PAYLOADS`.
    ends: Vec<End>,
    current: usize,
}

impl std::fmt::Debug for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Tx(p) => p.fmt(f),
            End::Rx(c) => c.fmt(f),
        }
    }
}

/// This process's end of the `shmipc-spsc` throughput contender: the client
/// consumes, the peer produces.
pub fn open_spsc_stream(ctx: &mut Ctx) -> Result<Box<dyn Stream>> {
    let mut ends = Vec::new();
    for len in throughput::PAYLOADS {
        let name = ctx.name(&format!("spsc-stream-{len}"));
        ends.push(match ctx.side {
            Side::Client => End::Rx(
                spsc::Options::new()
                    .capacity(slots_for(len))
                    .slot_size(len)
                    .create_consumer(&name)?,
            ),
            Side::Server => End::Tx(Producer::open(&name)?),
        });
    }
    Ok(Box::new(SpscStream { ends, current: 0 }))
}

impl Stream for SpscStream {
    fn begin(&mut self, len: usize) -> Result<()> {
        self.current = index_of(&throughput::PAYLOADS, len, "shmipc-spsc stream")?;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        match &mut self.ends[self.current] {
            End::Tx(tx) => spsc_send(tx, msg),
            End::Rx(_) => Err("shmipc-spsc stream: the client end does not send".into()),
        }
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        match &mut self.ends[self.current] {
            End::Rx(rx) => spsc_spin_recv(rx, buf, "shmipc-spsc's stream"),
            End::Tx(_) => Err("shmipc-spsc stream: the peer end does not receive".into()),
        }
    }
}
