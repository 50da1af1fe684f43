//! Request/response between many [`Client`]s and one [`Server`], with a
//! correlation id per request.
//!
//! ```
//! use shmipc::channel::rpc::{Client, Server};
//! use std::time::Duration;
//! # let name = format!("doc-rpc-{}", std::process::id());
//! let mut server = Server::create(&name, 64, 256)?; // 64 queued requests of <= 256 bytes
//! let mut client = Client::open(&name)?;            // usually another process
//! let id = client.send_request(b"2+2")?;
//! let req = server.recv()?;
//! server.respond(&req, b"4")?;
//! assert_eq!(client.recv_response(id, Duration::from_secs(5))?, b"4");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Requests travel in one Vyukov queue (`mpmc_ring.rs`: clients produce, the server
//! consumes), each prefixed with the client's place and the request's id; each
//! client has its own response ring (`spsc_ring.rs`: the server produces, the
//! client consumes). An id is the client place's attach generation (high 32 bits)
//! and a counter, so a response meant for an earlier holder of the same place, or
//! for a call that timed out, is recognised and dropped, never taken for another.
//!
//! A client whose server left or died gets [`RecvError::Disconnected`] /
//! [`SendError::Disconnected`]; a server responding to a client that left or died
//! gets `Disconnected` and goes on. Requests of a client that died while sending
//! are reclaimed as in mpmc.
//!
//! # Layout of the segment
//!
//! ```text
//!   0  layout header (kind rpc; params: request capacity | max clients << 32,
//!      slot size, response capacity, 0)
//!  64  server token, attaches
//! 128  request enqueue position; 192 dequeue position   (own cache lines)
//! 256  request bell (server sleeps); 320 request-space bell (clients sleep)
//! 384  client records, 256 bytes each: token, attaches | response tail (own line)
//!      | response bell (client sleeps) | response-space bell (server sleeps)
//!  R   request slots: seq, length, owner, payload words (client u64, id u64, data)
//!  P   response rings, one per client place: stamp, payload (id u64, data)
//! ```

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::layout::{Kind, LayoutError};
use crate::segment::Persistence;

use super::mpmc_ring::{self, MpmcSlots, Pop, Push};
use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::shared::{self, line_up, Common, How, Mapped, MsgType, Words};
use super::shim::AtomicU64;
use super::spsc_ring::{self, ConsumerCore, ProducerCore, SpscSlots};
use super::{ChannelError, Corrupt, RecvError, SendError, TrySendError};

const OFF_SERVER: usize = 64;
const OFF_ENQ: usize = 128;
const OFF_DEQ: usize = 192;
const OFF_REQ_BELL: usize = 256;
const OFF_REQ_SPACE_BELL: usize = 320;
const OFF_CLIENTS: usize = 384;
const CLIENT_LEN: usize = 256;
const REQ_HEADER: usize = 24;
/// Client place and request id before the request's bytes.
const REQ_PREFIX: usize = 16;
/// Request id before the response's bytes.
const RESP_PREFIX: usize = 8;
const MAX_SLOT: u64 = 1 << 30;
const MAX_CAPACITY: u64 = 1 << 24;
const MAX_CLIENTS: u64 = 1 << 12;
const PEER_CHECK: Duration = Duration::from_millis(10);

/// Settings for creating an rpc channel.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    capacity: u64,
    slot_size: u64,
    max_clients: u64,
    responses: u64,
    common: Common,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: 64 queued requests and 8 queued responses per client, of up to
    /// 1024 bytes, 16 clients.
    pub fn new() -> Self {
        Self {
            capacity: 64,
            slot_size: 1024,
            max_clients: 16,
            responses: 8,
            common: Common::default(),
        }
    }

    /// Requests that may wait for the server, rounded up to a power of two.
    pub fn capacity(mut self, requests: usize) -> Self {
        self.capacity = requests as u64;
        self
    }

    /// Largest request or response in bytes.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes as u64;
        self
    }

    /// Most clients at a time.
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n as u64;
        self
    }

    /// Responses that may wait for each client, rounded up to a power of two.
    pub fn responses(mut self, n: usize) -> Self {
        self.responses = n as u64;
        self
    }

    /// Unix permission bits of the segment (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.common.mode = mode;
        self
    }

    /// How long the channel lives (default: until its last holder closes or dies).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.common.persistence = persistence;
        self
    }

    /// Creates the channel and attaches as its server.
    ///
    /// # Errors
    /// [`ChannelError::Create`], [`ChannelError::InvalidParameter`].
    pub fn create_server(&self, name: &str) -> Result<Server, ChannelError> {
        Server::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the channel or opens it, and attaches as its server.
    ///
    /// # Errors
    /// As [`Options::create_server`] and [`Server::open`].
    pub fn create_or_open_server(&self, name: &str) -> Result<Server, ChannelError> {
        Server::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    capacity: u64,
    slot_size: u64,
    max_clients: u64,
    responses: u64,
}

/// Offsets and sizes derived from the parameters.
#[derive(Debug, Clone, Copy)]
struct Geo {
    req_slots: u64,
    req_stride: u64,
    resp_rings: u64,
    resp_stride: u64,
    size: u64,
}

impl Params {
    fn geo(&self) -> Option<Geo> {
        let clients_end =
            (OFF_CLIENTS as u64).checked_add(self.max_clients.checked_mul(CLIENT_LEN as u64)?)?;
        let req_slots = clients_end.checked_add(127)? & !127;
        let req_words = self.slot_size.checked_add(REQ_PREFIX as u64 + 7)? / 8;
        let req_stride = line_up((REQ_HEADER as u64).checked_add(req_words.checked_mul(8)?)?)?;
        let resp_rings = req_stride
            .checked_mul(self.capacity)?
            .checked_add(req_slots)?;
        let resp_stride = line_up(self.slot_size.checked_add(8 + RESP_PREFIX as u64)?)?;
        let size = resp_stride
            .checked_mul(self.responses)?
            .checked_mul(self.max_clients)?
            .checked_add(resp_rings)?;
        (size <= isize::MAX as u64).then_some(Geo {
            req_slots,
            req_stride,
            resp_rings,
            resp_stride,
            size,
        })
    }

    fn check(&self) -> Result<Geo, (&'static str, u64, &'static str)> {
        if self.capacity < 1 || self.capacity > MAX_CAPACITY || !self.capacity.is_power_of_two() {
            return Err((
                "capacity",
                self.capacity,
                "it must be a power of two from 2 to 2^24",
            ));
        }
        if self.responses < 1 || self.responses > MAX_CAPACITY || !self.responses.is_power_of_two()
        {
            return Err((
                "responses",
                self.responses,
                "it must be a power of two from 1 to 2^24",
            ));
        }
        if self.slot_size > MAX_SLOT {
            return Err(("slot size", self.slot_size, "it must be at most 2^30 bytes"));
        }
        if self.max_clients == 0 || self.max_clients > MAX_CLIENTS {
            return Err(("max clients", self.max_clients, "it must be 1 to 4096"));
        }
        self.geo().ok_or((
            "capacity x slot size",
            self.capacity,
            "the channel would not fit in memory",
        ))
    }
}

#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    p: Params,
    g: Geo,
}

impl Chan {
    fn get(name: &str, how: How, o: &Options) -> Result<Self, ChannelError> {
        let invalid = |(what, value, reason)| ChannelError::InvalidParameter {
            name: name.to_owned(),
            what,
            value,
            reason,
        };
        let want = Params {
            capacity: o.capacity.next_power_of_two().max(2),
            slot_size: o.slot_size,
            max_clients: o.max_clients,
            responses: o.responses.next_power_of_two(),
        };
        let g0 = want.check().map_err(invalid)?;
        let params = [
            want.capacity | (want.max_clients << 32),
            want.slot_size,
            want.responses,
            0,
        ];
        let init = |view: &crate::view::View| {
            for i in 0..want.capacity {
                let off = g0.req_slots + i * g0.req_stride;
                view.atomic_u64(off as usize)?.store(i, Ordering::Relaxed);
            }
            Ok(())
        };
        let (map, header) = shared::get(name, how, Kind::Rpc, &o.common, g0.size, params, init)?;
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let [p0, slot_size, responses, zero] = header.params;
        let found = Params {
            capacity: p0 & 0xffff_ffff,
            slot_size,
            max_clients: p0 >> 32,
            responses,
        };
        let bad = |what, value| {
            layout(LayoutError::Mismatch {
                kind: "rpc",
                what,
                found: value,
                expected: 0,
            })
        };
        if zero != MsgType::BYTES.hash {
            return Err(bad("reserved parameter", zero));
        }
        let g = found.check().map_err(|(what, value, _)| bad(what, value))?;
        if found.capacity < 2 {
            return Err(bad("capacity", found.capacity));
        }
        let len = usize::try_from(g.size).map_err(|_| bad("size", g.size))?;
        if len > map.view.len() {
            return Err(layout(LayoutError::TooSmall {
                what: "rpc channel",
                len: map.view.len(),
                need: len,
            }));
        }
        let words = Words::new(&map.view, len).ok_or_else(|| bad("segment access", 0))?;
        Ok(Self {
            map,
            words,
            p: found,
            g,
        })
    }

    fn req_geo(&self) -> mpmc_ring::Geometry {
        mpmc_ring::Geometry {
            capacity: self.p.capacity,
            max_len: (self.p.slot_size + REQ_PREFIX as u64) as u32,
        }
    }

    fn resp_geo(&self) -> spsc_ring::Geometry {
        spsc_ring::Geometry {
            capacity: self.p.responses,
            max_len: (self.p.slot_size + RESP_PREFIX as u64) as u32,
        }
    }

    fn server(&self) -> Place<'_> {
        Place {
            token: self.words.u64(OFF_SERVER),
            attaches: self.words.u64(OFF_SERVER + 8),
            scope: self.map.view.liveness(),
        }
    }

    fn client(&self, i: usize) -> Place<'_> {
        let off = OFF_CLIENTS + i * CLIENT_LEN;
        Place {
            token: self.words.u64(off),
            attaches: self.words.u64(off + 8),
            scope: self.map.view.liveness(),
        }
    }

    fn bell(&self, off: usize) -> Bell<'_> {
        Bell {
            seq: self.words.u32(off),
            sleepers: self.words.u32(off + 4),
        }
    }

    fn resp_bell(&self, client: usize) -> Bell<'_> {
        self.bell(OFF_CLIENTS + client * CLIENT_LEN + 128)
    }

    fn resp_space_bell(&self, client: usize) -> Bell<'_> {
        self.bell(OFF_CLIENTS + client * CLIENT_LEN + 192)
    }

    fn resp(&self, client: usize) -> Resp<'_> {
        Resp { chan: self, client }
    }

    fn resp_payload(&self, client: usize, slot: usize, len: usize) -> *mut u8 {
        let off = self.g.resp_rings as usize
            + (client * self.p.responses as usize + slot) * self.g.resp_stride as usize
            + 8;
        self.words.bytes(off, len)
    }

    fn req_off(&self, slot: usize) -> usize {
        self.g.req_slots as usize + slot * self.g.req_stride as usize
    }
}

impl MpmcSlots for Chan {
    fn seq(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.req_off(slot))
    }
    fn len(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.req_off(slot) + 8)
    }
    fn owner(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.req_off(slot) + 16)
    }
    fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.words.u64(self.req_off(slot) + REQ_HEADER + 8 * i)
    }
    fn enqueue_pos(&self) -> &AtomicU64 {
        self.words.u64(OFF_ENQ)
    }
    fn dequeue_pos(&self) -> &AtomicU64 {
        self.words.u64(OFF_DEQ)
    }
}

/// One client's response ring.
struct Resp<'a> {
    chan: &'a Chan,
    client: usize,
}

impl SpscSlots for Resp<'_> {
    fn stamp(&self, slot: usize) -> &AtomicU64 {
        let c = self.chan;
        let off = c.g.resp_rings as usize
            + (self.client * c.p.responses as usize + slot) * c.g.resp_stride as usize;
        c.words.u64(off)
    }
    fn tail(&self) -> &AtomicU64 {
        self.chan
            .words
            .u64(OFF_CLIENTS + self.client * CLIENT_LEN + 64)
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's place (for [`Server::respond`]).
    pub client: u32,
    /// The request's correlation id.
    pub id: u64,
    /// The request.
    pub data: Vec<u8>,
}

/// The serving end of an rpc channel.
pub struct Server {
    chan: Chan,
    /// Per client place: the attach generation our response producer follows.
    responders: Vec<Option<(u64, ProducerCore)>>,
    peer_check: Every,
    buf: Vec<u8>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::Server")
            .field("name", &self.chan.map.name)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Creates a channel for `capacity` queued requests of up to `slot_size` bytes
    /// (see [`Options`]) and attaches as its server.
    ///
    /// # Errors
    /// As [`Options::create_server`].
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_server(name)
    }

    /// Opens an existing channel and attaches as its server (e.g. after the
    /// previous server died).
    ///
    /// # Errors
    /// [`ChannelError::Open`], [`ChannelError::Layout`], [`ChannelError::Busy`]
    /// while a live server holds it.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        if let Claim::Held(pid) = chan.server().claim() {
            return Err(ChannelError::Busy {
                name: chan.map.name.clone(),
                role: "server",
                pid,
            });
        }
        Ok(Self {
            responders: (0..chan.p.max_clients).map(|_| None).collect(),
            chan,
            peer_check: Every::new(PEER_CHECK),
            buf: Vec::new(),
        })
    }

    fn attempt(&mut self, deep: bool) -> Option<Result<Request, RecvError>> {
        let geo = self.chan.req_geo();
        let got = match mpmc_ring::pop(geo, &self.chan, &mut self.buf) {
            Err(c) => return Some(Err(c.into())),
            Ok(Pop::Got) => true,
            Ok(Pop::Stall(owner))
                if deep && owner != 0 && !peer::alive(self.chan.map.view.liveness(), owner) =>
            {
                match mpmc_ring::reclaim(geo, &self.chan, owner, &mut self.buf) {
                    Ok(Pop::Got) => true,
                    Ok(_) => false,
                    Err(c) => return Some(Err(c.into())),
                }
            }
            Ok(_) => false,
        };
        if !got {
            return None;
        }
        self.chan.bell(OFF_REQ_SPACE_BELL).ring();
        if self.buf.len() < REQ_PREFIX {
            return Some(Err(RecvError::Corrupt(Corrupt {
                what: "request length (shorter than its header)",
                value: self.buf.len() as u64,
            })));
        }
        let client = u64::from_le_bytes(self.buf[..8].try_into().unwrap_or_default());
        let id = u64::from_le_bytes(self.buf[8..16].try_into().unwrap_or_default());
        if client >= self.chan.p.max_clients {
            return Some(Err(RecvError::Corrupt(Corrupt {
                what: "request's client place",
                value: client,
            })));
        }
        Some(Ok(Request {
            client: client as u32,
            id,
            data: self.buf[REQ_PREFIX..].to_vec(),
        }))
    }

    fn recv_with(&mut self, deadline: Option<Option<Instant>>) -> Result<Request, RecvError> {
        if let Some(r) = self.attempt(false) {
            return r;
        }
        let Some(deadline) = deadline else {
            return self.attempt(true).unwrap_or(Err(RecvError::Empty));
        };
        let words = self.chan.words;
        let bell = Bell {
            seq: words.u32(OFF_REQ_BELL),
            sleepers: words.u32(OFF_REQ_BELL + 4),
        };
        bell.wait_for(deadline, |deep| self.attempt(deep))
            .unwrap_or(Err(RecvError::Empty))
    }

    /// The next request, without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Corrupt`].
    pub fn try_recv(&mut self) -> Result<Request, RecvError> {
        self.recv_with(None)
    }

    /// The next request, waiting as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Corrupt`].
    pub fn recv(&mut self) -> Result<Request, RecvError> {
        self.recv_with(Some(None))
    }

    /// The next request, as a future: [`Server::recv`] without blocking a thread.
    ///
    /// Cancel-safe: a request is taken only when the future completes.
    ///
    /// # Errors
    /// As [`Server::recv`].
    pub async fn recv_async(&mut self) -> Result<Request, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell = Bell {
                seq: words.u32(OFF_REQ_BELL),
                sleepers: words.u32(OFF_REQ_BELL + 4),
            };
            bell.poll_async(&mut pending, cx, || match self.recv_with(None) {
                Err(RecvError::Empty) => None,
                r => Some(r),
            })
        })
        .await
    }

    /// The next request, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Server::try_recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Request, RecvError> {
        self.recv_with(Some(Some(Instant::now() + timeout)))
    }

    /// Sends the response to `req`, waiting up to `timeout` for room in the
    /// client's response ring.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the client left or died (or its place has a
    /// new holder); [`SendError::Timeout`] if it does not read its responses;
    /// [`SendError::TooLarge`]; [`SendError::Corrupt`].
    pub fn respond_timeout(
        &mut self,
        req: &Request,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        if data.len() as u64 > self.chan.p.slot_size {
            return Err(SendError::TooLarge {
                len: data.len(),
                max: self.chan.p.slot_size as usize,
            });
        }
        let c = req.client as usize;
        if c >= self.responders.len() {
            return Err(SendError::Disconnected(()));
        }
        let place = self.chan.client(c);
        // The client holding the place now must be the one that asked.
        let generation = place.attaches.load(Ordering::Acquire);
        if place.token.load(Ordering::Acquire) == 0 || (req.id >> 32) != (generation & 0xffff_ffff)
        {
            return Err(SendError::Disconnected(()));
        }
        let geo = self.chan.resp_geo();
        let chan = &self.chan;
        let core = match &mut self.responders[c] {
            Some((g, core)) if *g == generation => core,
            other => {
                let core = ProducerCore::attach(geo, &chan.resp(c));
                &mut other.insert((generation, core)).1
            }
        };
        let deadline = Instant::now() + timeout;
        let peer_check = &mut self.peer_check;
        let slot = match core.try_reserve(&chan.resp(c))? {
            Some(s) => s,
            None => chan
                .resp_space_bell(c)
                .wait_for(Some(deadline), |deep| {
                    match core.try_reserve(&chan.resp(c)) {
                        Ok(Some(s)) => Some(Ok(s)),
                        Err(e) => Some(Err(SendError::Corrupt(e))),
                        Ok(None) => (place.left() || (deep && peer_check.due() && place.gone()))
                            .then_some(Err(SendError::Disconnected(()))),
                    }
                })
                .unwrap_or(Err(SendError::Timeout(())))?,
        };
        let len = RESP_PREFIX + data.len();
        let p = chan.resp_payload(c, slot, len);
        // SAFETY: `p` covers `len` bytes of a response slot inside the mapping
        // (`Words::bytes` checked); the spsc protocol gives the reserved slot to
        // this server until `publish`; raw copies, no references.
        unsafe {
            std::ptr::copy_nonoverlapping(req.id.to_le_bytes().as_ptr(), p, RESP_PREFIX);
            std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(RESP_PREFIX), data.len());
        }
        core.publish(&chan.resp(c), len as u32);
        chan.resp_bell(c).ring();
        Ok(())
    }

    /// Sends the response to `req`, waiting up to a second for room.
    ///
    /// # Errors
    /// As [`Server::respond_timeout`].
    pub fn respond(&mut self, req: &Request, data: &[u8]) -> Result<(), SendError> {
        self.respond_timeout(req, data, Duration::from_secs(1))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.chan.server().leave();
        for c in 0..self.chan.p.max_clients as usize {
            if self.chan.client(c).token.load(Ordering::Relaxed) != 0 {
                self.chan.resp_bell(c).ring_always();
            }
        }
    }
}

/// A calling end of an rpc channel.
pub struct Client {
    chan: Chan,
    index: usize,
    generation: u64,
    next: u32,
    core: ConsumerCore,
    peer_check: Every,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::Client")
            .field("name", &self.chan.map.name)
            .field("place", &self.index)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens an existing rpc channel and takes a client place.
    ///
    /// # Errors
    /// [`ChannelError::Open`], [`ChannelError::Layout`], [`ChannelError::Full`] when
    /// every client place is held by a live process.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        let chan = Chan::get(name, How::Open, &Options::new())?;
        let Some(index) =
            (0..chan.p.max_clients as usize).find(|&i| chan.client(i).claim() == Claim::Taken)
        else {
            return Err(ChannelError::Full {
                name: chan.map.name.clone(),
                max: chan.p.max_clients as u32,
            });
        };
        let generation = chan.client(index).attaches.load(Ordering::Acquire) & 0xffff_ffff;
        let mut core = ConsumerCore::attach(chan.resp_geo(), &chan.resp(index), 1);
        // Responses left for an earlier holder of this place are not ours: drop
        // them, so the server has room at once (a late one is dropped by its id).
        for _ in 0..chan.p.responses {
            match core.peek(&chan.resp(index)) {
                Ok(Some(_)) => {
                    core.release(&chan.resp(index));
                }
                _ => break,
            }
        }
        Ok(Self {
            chan,
            index,
            generation,
            next: 0,
            core,
            peer_check: Every::new(PEER_CHECK),
        })
    }

    /// Whether a live server is attached now (a client may start before its
    /// server: calls fail with `Disconnected` until one is).
    pub fn server_present(&self) -> bool {
        let tok = self.chan.server().token.load(Ordering::Acquire);
        tok != 0 && peer::alive(self.chan.map.view.liveness(), tok)
    }

    fn server_gone(&mut self, deep: bool) -> bool {
        let place = self.chan.server();
        place.left() || (deep && self.peer_check.due() && place.gone())
    }

    /// Queues a request without waiting; returns its id.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`] (no server),
    /// [`TrySendError::TooLarge`].
    pub fn try_send_request(&mut self, data: &[u8]) -> Result<u64, TrySendError> {
        self.send_with(data, None).map_err(|e| match e {
            SendError::Timeout(()) => TrySendError::Full(()),
            SendError::Disconnected(()) => TrySendError::Disconnected(()),
            SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
            SendError::Corrupt(c) => TrySendError::Corrupt(c),
        })
    }

    /// Queues a request, waiting for room as long as it takes; returns its id.
    ///
    /// # Errors
    /// As [`Client::try_send_request`], without `Full`.
    pub fn send_request(&mut self, data: &[u8]) -> Result<u64, SendError> {
        self.send_with(data, Some(None))
    }

    fn send_with(
        &mut self,
        data: &[u8],
        deadline: Option<Option<Instant>>,
    ) -> Result<u64, SendError> {
        if data.len() as u64 > self.chan.p.slot_size {
            return Err(SendError::TooLarge {
                len: data.len(),
                max: self.chan.p.slot_size as usize,
            });
        }
        if self.server_gone(false) {
            return Err(SendError::Disconnected(()));
        }
        let id = (self.generation << 32) | u64::from(self.next);
        let mut msg = Vec::with_capacity(REQ_PREFIX + data.len());
        msg.extend_from_slice(&(self.index as u64).to_le_bytes());
        msg.extend_from_slice(&id.to_le_bytes());
        msg.extend_from_slice(data);
        let geo = self.chan.req_geo();
        let attempt = |this: &mut Self, deep: bool| match mpmc_ring::push(
            geo,
            &this.chan,
            peer::me(this.chan.map.view.liveness()),
            &msg,
        ) {
            Push::Done => Some(Ok(())),
            Push::Reclaimed => Some(Err(SendError::Corrupt(Corrupt {
                what: "request slot reclaimed from a live client",
                value: u64::from(std::process::id()),
            }))),
            Push::Full => this
                .server_gone(deep)
                .then_some(Err(SendError::Disconnected(()))),
        };
        let r = match attempt(self, false) {
            Some(r) => r,
            None => match deadline {
                None => attempt(self, true).unwrap_or(Err(SendError::Timeout(()))),
                Some(deadline) => {
                    let words = self.chan.words;
                    let bell = Bell {
                        seq: words.u32(OFF_REQ_SPACE_BELL),
                        sleepers: words.u32(OFF_REQ_SPACE_BELL + 4),
                    };
                    bell.wait_for(deadline, |deep| attempt(self, deep))
                        .unwrap_or(Err(SendError::Timeout(())))
                }
            },
        };
        r?;
        self.next = self.next.wrapping_add(1);
        self.chan.bell(OFF_REQ_BELL).ring();
        Ok(id)
    }

    /// Reads responses until the one for `id` comes (dropping responses to
    /// earlier requests that were given up), waiting up to `timeout`.
    ///
    /// # Errors
    /// [`RecvError::Empty`] if it does not come in time; [`RecvError::Disconnected`]
    /// if the server left or died; [`RecvError::Corrupt`].
    pub fn recv_response(&mut self, id: u64, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (got, data) = self.next_response(Some(deadline))?;
            if got == id {
                return Ok(data);
            }
        }
    }

    /// As [`Client::recv_response`], as a future, without a timeout (wrap it in your
    /// runtime's timeout).
    ///
    /// Cancel-safe: a response is taken only when the future completes (responses
    /// to other ids read on the way are dropped, as the blocking form does).
    ///
    /// # Errors
    /// [`RecvError::Disconnected`] if the server left or died; [`RecvError::Corrupt`].
    pub async fn recv_response_async(&mut self, id: u64) -> Result<Vec<u8>, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell_off = OFF_CLIENTS + self.index * CLIENT_LEN + 128;
            let bell = Bell {
                seq: words.u32(bell_off),
                sleepers: words.u32(bell_off + 4),
            };
            bell.poll_async(&mut pending, cx, || loop {
                match self.next_response(None) {
                    Err(RecvError::Empty) => return None,
                    Ok((got, data)) if got == id => return Some(Ok(data)),
                    Ok(_) => {}
                    Err(e) => return Some(Err(e)),
                }
            })
        })
        .await
    }

    /// The next response (id, bytes), without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`], [`RecvError::Corrupt`].
    pub fn try_recv_response(&mut self) -> Result<(u64, Vec<u8>), RecvError> {
        self.next_response(None)
    }

    fn next_response(&mut self, deadline: Option<Instant>) -> Result<(u64, Vec<u8>), RecvError> {
        let ring = self.chan.resp(self.index);
        let found = match self.core.peek(&ring)? {
            Some(x) => Some(x),
            None => {
                let words = self.chan.words;
                let bell_off = OFF_CLIENTS + self.index * CLIENT_LEN + 128;
                let bell = Bell {
                    seq: words.u32(bell_off),
                    sleepers: words.u32(bell_off + 4),
                };
                let Self {
                    chan,
                    core,
                    peer_check,
                    index,
                    ..
                } = self;
                let ring = chan.resp(*index);
                let place = chan.server();
                let mut poll =
                    |deep: bool| match core.peek(&ring) {
                        Ok(Some(x)) => Some(Ok(x)),
                        Err(c) => Some(Err(RecvError::Corrupt(c))),
                        Ok(None) => (place.left() || (deep && peer_check.due() && place.gone()))
                            .then(|| match core.peek(&ring) {
                                Ok(Some(x)) => Ok(x),
                                Ok(None) => Err(RecvError::Disconnected),
                                Err(c) => Err(RecvError::Corrupt(c)),
                            }),
                    };
                let r = match deadline {
                    None => poll(true),
                    Some(d) => bell.wait_for(Some(d), poll),
                };
                Some(r.unwrap_or(Err(RecvError::Empty))?)
            }
        };
        let Some((slot, len)) = found else {
            return Err(RecvError::Empty);
        };
        let len = len as usize;
        let ring = self.chan.resp(self.index);
        if len < RESP_PREFIX {
            let _ = self.core.release(&ring);
            return Err(RecvError::Corrupt(Corrupt {
                what: "response length (shorter than its header)",
                value: len as u64,
            }));
        }
        let p = self.chan.resp_payload(self.index, slot, len);
        let mut out = vec![0u8; len];
        // SAFETY: `p` covers `len` (<= slot, checked by `peek`) bytes of a published
        // response slot inside the mapping; the server does not write it until we
        // release it below; a raw copy into our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), len) };
        let _ = self.core.release(&ring);
        self.chan.resp_space_bell(self.index).ring();
        let id = u64::from_le_bytes(out[..RESP_PREFIX].try_into().unwrap_or_default());
        out.drain(..RESP_PREFIX);
        Ok((id, out))
    }

    /// Sends a request and waits up to `timeout` for its response.
    ///
    /// # Errors
    /// As [`Client::send_request`] (as `RecvError::Disconnected`,
    /// `RecvError::Corrupt`, or `Empty` for a full queue) and
    /// [`Client::recv_response`].
    pub fn call(&mut self, data: &[u8], timeout: Duration) -> Result<Vec<u8>, RecvError> {
        let id = match self.send_request(data) {
            Ok(id) => id,
            Err(SendError::Disconnected(())) => return Err(RecvError::Disconnected),
            Err(SendError::Corrupt(c)) => return Err(RecvError::Corrupt(c)),
            Err(SendError::TooLarge { len, max }) => {
                return Err(RecvError::BufferTooSmall { len, buf: max })
            }
            Err(SendError::Timeout(())) => return Err(RecvError::Empty),
        };
        self.recv_response(id, timeout)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.chan.client(self.index).leave();
        self.chan.resp_space_bell(self.index).ring_always();
    }
}
