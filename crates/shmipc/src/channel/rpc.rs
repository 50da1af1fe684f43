//! Request/response between many [`Client`]s and one [`Server`], with a
//! correlation id per request; requests and responses are zero-copy samples.
//!
//! ```
//! use shmipc::channel::rpc::{Client, Server};
//! use std::time::Duration;
//! # let name = format!("doc-rpc-{}", std::process::id());
//! let server = Server::create(&name, 64, 256)?; // 64 queued requests of <= 256 bytes
//! let mut client = Client::open(&name)?;        // usually another process
//!
//! let mut loan = client.loan_request(3)?; // a request slot, written in place
//! loan.copy_from_slice(b"2+2");
//! let id = loan.send()?;
//!
//! let req = server.recv()?; // read in place
//! let mut answer = server.loan_response(&req, 1, Duration::from_secs(1))?;
//! answer[0] = b'0' + (req[0] - b'0') + (req[2] - b'0');
//! answer.send()?;
//! drop(req); // the request slot goes back to the clients
//!
//! let response = client.recv_response(id, Duration::from_secs(5))?; // in place
//! assert_eq!(&*response, b"4");
//! drop(response);
//!
//! // The copying conveniences:
//! let id = client.send_request(b"3+3")?;
//! let req = server.recv()?;
//! server.respond(&req, b"6")?;
//! assert_eq!(client.recv_response(id, Duration::from_secs(5))?.to_vec(), b"6");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Requests travel in one queue of loaned slots (`mpmc_ring.rs`: clients produce,
//! the server consumes, exactly as in [`mpmc`](super::mpmc)); each request slot
//! starts with the client's place and the request's id, written by the library.
//! Each client has its own response ring (`spsc_ring.rs`: the server loans a slot,
//! the client reads it in place). An id is the client place's attach generation
//! (high 32 bits) and a counter, so a response meant for an earlier holder of the
//! same place, or for a call that timed out, is recognised and dropped, never
//! taken for another.
//!
//! No slot is written while its reader holds it: a request slot is the server's
//! from its take to the drop of the [`Request`] (the state-word protocol of
//! [`mpmc`](super::mpmc)); a response slot is the client's from the moment its
//! stamp is published until the [`Response`] drops and the client's position moves
//! past it (the spsc protocol: the server reserves a slot only behind that
//! position). The server lends one response slot per client at a time. A request
//! the server holds keeps its slot: the request queue's capacity counts requests
//! waiting and requests held (answer by [`Request::caller`] after dropping one to
//! free its slot early).
//!
//! A client whose server left or died gets [`CallError::ServerGone`] (from a call,
//! a send or a wait for a response; [`TrySendError::Disconnected`] from a `try_`
//! send); a server responding to a client that left or died
//! gets `Disconnected` and goes on. A client killed with a request loaned has it
//! skipped; a server killed holding requests has their slots freed by the next
//! client that needs them (or the next server); nothing is lost to a crash. What a
//! hostile peer can do to a reader is what it can do to an [`mpmc`](super::mpmc)
//! sample: change the bytes under it, never make shmipc read out of bounds, panic
//! or hang (every position, state, length and client place is validated).
//!
//! # Layout of the segment
//!
//! The `#[repr(C)]` structs `Control` (the first 384 bytes, layout header
//! included) and `ClientRecord` (in this file), with `mpmc::SlotHeader` and
//! `spsc::SlotHeader` for the slots, checked by the compiler:
//!
//! ```text
//!   0  layout header (kind rpc; params: request capacity | max clients << 32,
//!      slot size, response capacity, 0)
//!  64  server token, attaches
//! 128  request enqueue position; 192 dequeue position   (own cache lines)
//! 256  request bell (server sleeps); 320 request-space bell (clients sleep)
//! 384  ClientRecord per client, 256 bytes: token, attaches | response tail (own
//!      line) | response bell (client sleeps) | response-space bell (server sleeps)
//!  R   request slots: mpmc SlotHeader (state, length; 64 bytes), then the payload
//!      at +64: client u64, id u64, data
//!  P   response rings, one per client place: spsc SlotHeader (stamp), payload
//!      (id u64, data)
//! ```
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::mem::offset_of;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytemuck::Pod;

use crate::deadline::Deadline;
use crate::layout::{Header, HeaderWords, Kind, LayoutError};
use crate::segment::Persistence;

use super::mpmc_ring::{self, Found, MpmcSlots, Owned};
use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::shared::{self, line_up, Bad, BellWords, Common, How, Mapped, PeerWords, Rule, Words};
use super::shim::AtomicU64;
use super::spsc_ring::{self, ConsumerCore, ProducerCore, SpscSlots};
use super::{CallError, ChannelError, Corrupt, RecvError, SendError, TrySendError};

/// The words before the client records. Fields that different sides write sit on
/// their own cache lines.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Control {
    /// The layout header (`layout.rs`).
    pub(crate) header: HeaderWords,
    /// The server's registration.
    pub(crate) server: PeerWords,
    _server_line: [u64; 6],
    /// Next request position a client claims.
    pub(crate) enqueue_pos: u64,
    _enq_line: [u64; 7],
    /// Next request position the server takes.
    pub(crate) dequeue_pos: u64,
    _deq_line: [u64; 7],
    /// Bell the server sleeps on (requests).
    pub(crate) req_bell: BellWords,
    _req_line: [u32; 14],
    /// Bell clients sleep on (room for requests).
    pub(crate) req_space_bell: BellWords,
    _req_space_line: [u32; 14],
}

/// One client place: its registration and its response ring's control words,
/// each on its own cache line.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ClientRecord {
    /// The client's registration.
    pub(crate) peer: PeerWords,
    _peer_line: [u64; 6],
    /// Responses the client has finished with (`spsc_ring.rs`'s tail).
    pub(crate) resp_tail: u64,
    _tail_line: [u64; 7],
    /// Bell the client sleeps on (responses).
    pub(crate) resp_bell: BellWords,
    _resp_line: [u32; 14],
    /// Bell the server sleeps on (room for responses).
    pub(crate) resp_space_bell: BellWords,
    _resp_space_line: [u32; 14],
}

const _: () = {
    assert!(size_of::<Control>() == 384);
    assert!(offset_of!(Control, server) == 64);
    assert!(offset_of!(Control, enqueue_pos) == 128);
    assert!(offset_of!(Control, dequeue_pos) == 192);
    assert!(offset_of!(Control, req_bell) == 256);
    assert!(offset_of!(Control, req_space_bell) == 320);
    assert!(size_of::<ClientRecord>() == 256);
    assert!(offset_of!(ClientRecord, peer) == 0);
    assert!(offset_of!(ClientRecord, resp_tail) == 64);
    assert!(offset_of!(ClientRecord, resp_bell) == 128);
    assert!(offset_of!(ClientRecord, resp_space_bell) == 192);
};

/// Where the client records start.
pub(crate) const CLIENTS_AT: usize = size_of::<Control>();
/// Bytes of a client record.
pub(crate) const CLIENT_LEN: usize = size_of::<ClientRecord>();
/// State and length words before a request's payload (`mpmc::SlotHeader`).
pub(crate) const REQ_HEADER: usize = super::mpmc::SLOT_HEADER;
/// The stamp before a response's payload (`spsc::SlotHeader`).
const RESP_HEADER: usize = super::spsc::STAMP_LEN;
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

    /// Unix permission bits of the segment: read/write bits within `0o666` (default
    /// `0o600`); any other bit is refused at create time (`CreateError::InvalidMode`).
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

/// Capacity: requests that may wait for the server.
const CAPACITY: Rule = Rule {
    what: "capacity",
    header: "capacity",
    reason: "it must be a power of two from 2 to 2^24",
    min: 2,
    max: MAX_CAPACITY,
    pow2: true,
};

/// Responses that may wait for each client.
const RESPONSES: Rule = Rule {
    what: "responses",
    header: "responses",
    reason: "it must be a power of two from 1 to 2^24",
    min: 1,
    max: MAX_CAPACITY,
    pow2: true,
};

/// Slot size: the largest request or response.
const SLOT_SIZE: Rule = Rule {
    what: "slot size",
    header: "slot size",
    reason: "it must be at most 2^30 bytes",
    min: 0,
    max: MAX_SLOT,
    pow2: false,
};

/// Client places.
const CLIENTS: Rule = Rule {
    what: "max clients",
    header: "max clients",
    reason: "it must be 1 to 4096",
    min: 1,
    max: MAX_CLIENTS,
    pow2: false,
};

/// The layout parameters of an rpc channel (header words 0 to 2; word 3 is
/// reserved, zero). Checked by [`Params::check`] alone, for a creator's options
/// and for a header ([`validate`]): a creator cannot make what an opener refuses,
/// and `shmipc info` refuses what an opener does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) max_clients: u64,
    pub(crate) responses: u64,
}

/// Offsets and sizes derived from the parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geo {
    req_slots: u64,
    req_stride: u64,
    resp_rings: u64,
    resp_stride: u64,
    /// Bytes of the whole channel.
    pub(crate) size: u64,
}

impl Params {
    /// From a creator's options (capacity and responses rounded up to powers of
    /// two).
    fn of_options(o: &Options) -> Result<(Self, Geo), Bad> {
        let p = Self {
            capacity: CAPACITY.option(o.capacity)?,
            slot_size: o.slot_size,
            max_clients: o.max_clients,
            responses: RESPONSES.option(o.responses)?,
        };
        Ok((p, p.check()?))
    }

    fn geo(&self) -> Option<Geo> {
        let clients_end =
            (CLIENTS_AT as u64).checked_add(self.max_clients.checked_mul(CLIENT_LEN as u64)?)?;
        let req_slots = clients_end.checked_add(127)? & !127;
        let req_stride = (REQ_HEADER as u64)
            .checked_add(line_up(self.slot_size.checked_add(REQ_PREFIX as u64)?)?)?;
        let resp_rings = req_stride
            .checked_mul(self.capacity)?
            .checked_add(req_slots)?;
        let resp_stride = line_up(
            self.slot_size
                .checked_add((RESP_HEADER + RESP_PREFIX) as u64)?,
        )?;
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

    /// Checks every parameter against its rule, and lays the channel out.
    fn check(&self) -> Result<Geo, Bad> {
        CAPACITY.check(self.capacity)?;
        RESPONSES.check(self.responses)?;
        SLOT_SIZE.check(self.slot_size)?;
        CLIENTS.check(self.max_clients)?;
        self.geo().ok_or(Bad {
            what: "capacity x slot size",
            header: "capacity x slot size",
            reason: "the channel would not fit in memory",
            value: self.capacity,
        })
    }

    /// The header's parameters.
    fn pack(&self) -> [u64; 4] {
        [
            self.capacity | (self.max_clients << 32),
            self.slot_size,
            self.responses,
            0,
        ]
    }
}

/// Validates an rpc header's parameters (its reserved word zero) and that `len`
/// bytes (of the segment, from the channel's start) hold the layout they
/// describe: the one check of an opening endpoint and of `shmipc info`
/// (`channel::inspect`).
///
/// # Errors
/// [`LayoutError::Mismatch`] naming the parameter out of range,
/// [`LayoutError::TooSmall`] for a segment too small for them.
pub(crate) fn validate(
    [p0, slot_size, responses, reserved]: [u64; 4],
    len: usize,
) -> Result<(Params, Geo), LayoutError> {
    let bad = |b: Bad| b.layout(Kind::Rpc);
    if reserved != 0 {
        return Err(bad(Bad::header("reserved parameter", reserved)));
    }
    let p = Params {
        capacity: p0 & 0xffff_ffff,
        slot_size,
        max_clients: p0 >> 32,
        responses,
    };
    let g = p.check().map_err(bad)?;
    shared::fits("rpc channel", g.size, len)?;
    Ok((p, g))
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
        let (want, g0) = Params::of_options(o).map_err(|b| b.invalid(name))?;
        // Request slots start free in turn 0: all zero bits, as created.
        const _: () = assert!(mpmc_ring::INIT == 0);
        let (map, header) = shared::get(
            name,
            how,
            Kind::Rpc,
            &o.common,
            g0.size,
            want.pack(),
            |_| Ok(()),
        )?;
        Self::checked(name, map, header, o)
    }

    /// For `channel::fuzzing`: the same checks as an open, over `map` again.
    fn again(map: &Mapped, opts: &Options) -> Result<Self, ChannelError> {
        let (map, header) = map.again(Kind::Rpc)?;
        let name = map.name.clone();
        Self::checked(&name, map, header, opts)
    }

    /// Validates a mapped channel's header parameters and extent.
    fn checked(
        name: &str,
        map: Mapped,
        header: Header,
        _o: &Options,
    ) -> Result<Self, ChannelError> {
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let (p, g) = validate(header.params, map.view.len()).map_err(layout)?;
        // Its pages have memory before anything is written through the mapping.
        map.back_holes(g.size).map_err(layout)?;
        let words = map.words(Kind::Rpc, g.size).map_err(layout)?;
        Ok(Self { map, words, p, g })
    }

    fn req_geo(&self) -> mpmc_ring::Geometry {
        mpmc_ring::Geometry {
            capacity: self.p.capacity,
            max_len: (self.p.slot_size + REQ_PREFIX as u64) as u32,
            endpoints: self.p.max_clients + 1,
        }
    }

    /// The server's endpoint in the request queue (clients are their places).
    fn server_ep(&self) -> u64 {
        self.p.max_clients
    }

    /// Whether request-queue endpoint `ep` is gone (place free or holder dead).
    /// Costs a liveness check: rate-limit it.
    fn dead(&self, ep: u64) -> bool {
        let place = if ep == self.server_ep() {
            self.server()
        } else {
            self.client(ep as usize)
        };
        let tok = place.token.load(Ordering::Acquire);
        tok == 0 || !peer::alive(place.scope, tok)
    }

    /// Resolves request slots owned by `ep`'s dead previous holder (call right
    /// after claiming its place, before using it).
    fn adopt(&self, ep: u64) {
        if mpmc_ring::scan(self.req_geo(), self, |e| e == ep).reclaimed > 0 {
            self.req_bell().ring();
            self.req_space_bell().ring();
        }
    }

    /// A request slot's payload (`len <= slot size + prefix`).
    fn req_payload(&self, slot: usize, len: usize) -> *mut u8 {
        self.words.bytes(self.req_off(slot) + REQ_HEADER, len)
    }

    fn resp_geo(&self) -> spsc_ring::Geometry {
        spsc_ring::Geometry {
            capacity: self.p.responses,
            max_len: (self.p.slot_size + RESP_PREFIX as u64) as u32,
        }
    }

    fn server(&self) -> Place<'_> {
        self.words
            .place(offset_of!(Control, server), self.map.view.liveness())
    }

    fn client(&self, i: usize) -> Place<'_> {
        self.words.place(
            client_off(i) + offset_of!(ClientRecord, peer),
            self.map.view.liveness(),
        )
    }

    fn req_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, req_bell))
    }

    fn req_space_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, req_space_bell))
    }

    fn resp_bell(&self, client: usize) -> Bell<'_> {
        self.words
            .bell(client_off(client) + offset_of!(ClientRecord, resp_bell))
    }

    fn resp_space_bell(&self, client: usize) -> Bell<'_> {
        self.words
            .bell(client_off(client) + offset_of!(ClientRecord, resp_space_bell))
    }

    fn resp(&self, client: usize) -> Resp<'_> {
        Resp { chan: self, client }
    }

    fn resp_payload(&self, client: usize, slot: usize, len: usize) -> *mut u8 {
        let off = self.g.resp_rings as usize
            + (client * self.p.responses as usize + slot) * self.g.resp_stride as usize
            + RESP_HEADER;
        self.words.bytes(off, len)
    }

    fn req_off(&self, slot: usize) -> usize {
        self.g.req_slots as usize + slot * self.g.req_stride as usize
    }
}

impl MpmcSlots for Chan {
    fn state(&self, slot: usize) -> &AtomicU64 {
        self.words
            .u64(self.req_off(slot) + offset_of!(super::mpmc::SlotHeader, state))
    }
    fn len(&self, slot: usize) -> &AtomicU64 {
        self.words
            .u64(self.req_off(slot) + offset_of!(super::mpmc::SlotHeader, len))
    }
    fn enqueue_pos(&self) -> &AtomicU64 {
        self.words.u64(offset_of!(Control, enqueue_pos))
    }
    fn dequeue_pos(&self) -> &AtomicU64 {
        self.words.u64(offset_of!(Control, dequeue_pos))
    }
}

/// Where client record `i` starts.
#[inline]
fn client_off(i: usize) -> usize {
    CLIENTS_AT + i * CLIENT_LEN
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
        c.words
            .u64(off + offset_of!(super::spsc::SlotHeader, stamp))
    }
    fn tail(&self) -> &AtomicU64 {
        self.chan
            .words
            .u64(client_off(self.client) + offset_of!(ClientRecord, resp_tail))
    }
}

/// A blocking request send's failure on channel `name` in rpc terms (a channel's
/// "receiving side" is the server here), as a [`CallError`]; `timeout` is the
/// caller's (`Duration::MAX`: none, and then the queue never times out).
fn request_error(name: &str, e: SendError, timeout: Duration) -> CallError {
    let name = name.to_owned();
    match e {
        // Only a wait for room in the request queue times out here.
        SendError::Timeout(()) => CallError::QueueFull { name, timeout },
        SendError::Disconnected(()) => CallError::ServerGone { name },
        SendError::TooLarge { len, max } => CallError::TooLarge { name, len, max },
        SendError::Corrupt(source) => CallError::Corrupt { name, source },
    }
}

fn try_error(e: SendError) -> TrySendError {
    match e {
        SendError::Timeout(()) => TrySendError::Full(()),
        SendError::Disconnected(()) => TrySendError::Disconnected(()),
        SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
        SendError::Corrupt(c) => TrySendError::Corrupt(c),
    }
}

/// Who asked a request: enough to answer it after the [`Request`] is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The client's place.
    pub client: u32,
    /// The request's correlation id.
    pub id: u64,
}

impl From<&Request<'_>> for Caller {
    fn from(r: &Request<'_>) -> Self {
        r.caller()
    }
}

/// The server's side of one client's response ring.
#[derive(Debug)]
struct Responder {
    /// The attach generation of the client this core follows.
    generation: u64,
    core: ProducerCore,
    /// A response loan is out for this client.
    loaned: bool,
}

/// The serving end of an rpc channel.
pub struct Server {
    chan: Chan,
    /// Per client place (borrowed only inside a call, never across user code).
    responders: RefCell<Vec<Option<Responder>>>,
    peer_check: RefCell<Every>,
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
        chan.adopt(chan.server_ep());
        Ok(Self {
            responders: RefCell::new((0..chan.p.max_clients).map(|_| None).collect()),
            chan,
            peer_check: RefCell::new(Every::new(PEER_CHECK)),
        })
    }

    /// Largest request or response, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.p.slot_size as usize
    }

    /// Request slots free now, after giving back those that clients which died
    /// still own (and, with no request queued or held, the request capacity:
    /// a crash never loses a slot). A scan: not for the data path.
    pub fn free_request_slots(&self) -> usize {
        let mut memo: Vec<Option<bool>> = vec![None; self.chan.p.max_clients as usize + 1];
        let c = mpmc_ring::scan(self.chan.req_geo(), &self.chan, |ep| {
            *memo[ep as usize].get_or_insert_with(|| self.chan.dead(ep))
        });
        if c.reclaimed > 0 {
            self.chan.req_space_bell().ring();
        }
        c.free as usize
    }

    fn request(&self, o: Owned) -> Result<Request<'_>, RecvError> {
        let bad = |what, value| {
            let _ = mpmc_ring::release(self.chan.req_geo(), &self.chan, self.chan.server_ep(), o);
            self.chan.req_space_bell().ring();
            Err(RecvError::Corrupt(Corrupt { what, value }))
        };
        let len = o.len as usize;
        if len < REQ_PREFIX {
            return bad("request length (shorter than its header)", o.len);
        }
        let p = self.chan.req_payload(o.slot, len);
        let mut prefix = [0u8; REQ_PREFIX];
        // SAFETY: `p` covers `len >= REQ_PREFIX` bytes of the request slot inside
        // the mapping (`Words::bytes` checked); the slot is this server's until
        // released (`mpmc_ring::take`); a raw copy into our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(p, prefix.as_mut_ptr(), REQ_PREFIX) };
        let client = u64::from_le_bytes(prefix[..8].try_into().unwrap_or_default());
        let id = u64::from_le_bytes(prefix[8..].try_into().unwrap_or_default());
        if client >= self.chan.p.max_clients {
            return bad("request's client place", client);
        }
        Ok(Request {
            server: self,
            owned: o,
            // SAFETY: in range: `REQ_PREFIX <= len` bytes of the slot (above).
            ptr: unsafe { p.add(REQ_PREFIX) },
            len: len - REQ_PREFIX,
            caller: Caller {
                client: client as u32,
                id,
            },
        })
    }

    fn attempt(&self, deep: bool) -> Option<Result<Request<'_>, RecvError>> {
        let chan = &self.chan;
        let found = mpmc_ring::take(chan.req_geo(), chan, chan.server_ep(), |ep| {
            deep && chan.dead(ep)
        });
        match found {
            Err(c) => Some(Err(c.into())),
            Ok(Found::Got(o)) => Some(self.request(o)),
            Ok(Found::Freed) => {
                chan.req_space_bell().ring();
                None
            }
            Ok(Found::None) => None,
        }
    }

    fn recv_with(&self, deadline: Deadline) -> Result<Request<'_>, RecvError> {
        if let Some(r) = self.attempt(false) {
            return r;
        }
        if deadline == Deadline::Now {
            return self.attempt(true).unwrap_or(Err(RecvError::Empty));
        };
        self.chan
            .req_bell()
            .wait_for(deadline, |deep| self.attempt(deep))
            .unwrap_or(Err(RecvError::Empty))
    }

    /// The next request, read in place, without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Corrupt`].
    pub fn try_recv(&self) -> Result<Request<'_>, RecvError> {
        self.recv_with(Deadline::Now)
    }

    /// The next request, read in place, waiting as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Corrupt`].
    pub fn recv(&self) -> Result<Request<'_>, RecvError> {
        self.recv_with(Deadline::Never)
    }

    /// The next request, as a future: [`Server::recv`] without blocking a thread.
    ///
    /// Cancel-safe: a request is taken only by the poll that completes the future.
    /// The future borrows the server, which is not `Sync`, so it is not `Send`.
    ///
    /// # Errors
    /// As [`Server::recv`].
    pub async fn recv_async(&self) -> Result<Request<'_>, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            self.chan
                .req_bell()
                .poll_async(&mut pending, cx, || self.attempt(true))
        })
        .await
    }

    /// The next request, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Server::try_recv`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Request<'_>, RecvError> {
        self.recv_with(Deadline::after(timeout))
    }

    /// Loans a slot of `to`'s response ring for a response of `len` bytes, waiting
    /// up to `timeout` for room: write it in place, then [`ResponseLoan::send`].
    /// One response loan per client at a time (a second one waits like a full
    /// ring).
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the client left or died (or its place has a
    /// new holder); [`SendError::Timeout`] if it does not read its responses;
    /// [`SendError::TooLarge`]; [`SendError::Corrupt`].
    pub fn loan_response(
        &self,
        to: impl Into<Caller>,
        len: usize,
        timeout: Duration,
    ) -> Result<ResponseLoan<'_>, SendError> {
        let to = to.into();
        if len as u64 > self.chan.p.slot_size {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size(),
            });
        }
        let c = to.client as usize;
        if c >= self.chan.p.max_clients as usize {
            return Err(SendError::Disconnected(()));
        }
        let chan = &self.chan;
        let place = chan.client(c);
        // The client holding the place now must be the one that asked.
        let generation = place.attaches.load(Ordering::Acquire);
        if place.token.load(Ordering::Acquire) == 0 || (to.id >> 32) != (generation & 0xffff_ffff) {
            return Err(SendError::Disconnected(()));
        }
        let geo = chan.resp_geo();
        let reserve = || -> Result<Option<usize>, Corrupt> {
            let mut rs = self.responders.borrow_mut();
            let r = match &mut rs[c] {
                Some(r) if r.generation == generation => r,
                other => other.insert(Responder {
                    generation,
                    core: ProducerCore::attach(geo, &chan.resp(c)),
                    loaned: false,
                }),
            };
            if r.loaned {
                return Ok(None);
            }
            let slot = r.core.try_reserve(&chan.resp(c))?;
            r.loaned = slot.is_some();
            Ok(slot)
        };
        let slot = match reserve()? {
            Some(s) => s,
            None => chan
                .resp_space_bell(c)
                .wait_for(Deadline::after(timeout), |deep| match reserve() {
                    Ok(Some(s)) => Some(Ok(s)),
                    Err(e) => Some(Err(SendError::Corrupt(e))),
                    Ok(None) => (place.left()
                        || (deep && self.peer_check.borrow_mut().due() && place.gone()))
                    .then_some(Err(SendError::Disconnected(()))),
                })
                .unwrap_or(Err(SendError::Timeout(())))?,
        };
        let p = chan.resp_payload(c, slot, RESP_PREFIX + len);
        // SAFETY: `p` covers the prefix of the reserved response slot inside the
        // mapping (`Words::bytes` checked); the spsc protocol gives the reserved
        // slot to this server until `publish`; a raw copy.
        unsafe { std::ptr::copy_nonoverlapping(to.id.to_le_bytes().as_ptr(), p, RESP_PREFIX) };
        Ok(ResponseLoan {
            server: self,
            client: c,
            generation,
            // SAFETY: in range: `RESP_PREFIX + len` bytes were checked above.
            ptr: unsafe { p.add(RESP_PREFIX) },
            len,
        })
    }

    /// Sends a copy of `data` as the response to `to`, waiting up to `timeout` for
    /// room in the client's response ring.
    ///
    /// # Errors
    /// As [`Server::loan_response`].
    pub fn respond_timeout(
        &self,
        to: impl Into<Caller>,
        data: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        let mut loan = self.loan_response(to, data.len(), timeout)?;
        loan.copy_from_slice(data);
        loan.send()
    }

    /// Sends a copy of `data` as the response to `to`, waiting up to a second for
    /// room.
    ///
    /// # Errors
    /// As [`Server::loan_response`].
    pub fn respond(&self, to: impl Into<Caller>, data: &[u8]) -> Result<(), SendError> {
        self.respond_timeout(to, data, Duration::from_secs(1))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Requests and loans borrow the server: none is out now.
        self.chan.server().leave();
        for c in 0..self.chan.p.max_clients as usize {
            if self.chan.client(c).token.load(Ordering::Relaxed) != 0 {
                self.chan.resp_bell(c).ring_always();
            }
        }
    }
}

/// A request as the server received it, read in place in the channel's shared
/// memory: derefs to the request's bytes. Its slot stays the server's (no correct
/// client writes it) until it is dropped.
pub struct Request<'a> {
    server: &'a Server,
    owned: Owned,
    ptr: *const u8,
    len: usize,
    caller: Caller,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::Request")
            .field("caller", &self.caller)
            .field("data", &self.deref())
            .finish()
    }
}

impl Request<'_> {
    /// The client's place.
    pub fn client(&self) -> u32 {
        self.caller.client
    }

    /// The request's correlation id.
    pub fn id(&self) -> u64 {
        self.caller.id
    }

    /// Who asked (to answer after dropping the request).
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// The request as a `T`, if it is exactly `size_of::<T>()` bytes (request
    /// bytes are 16-byte aligned).
    pub fn pod<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the request's bytes out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Request<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` bytes inside the request slot's payload
        // (length checked against the slot by `mpmc_ring::take`, prefix by
        // `Server::request`); the slot's state word names the server as its reader
        // until this request drops, and no correct client writes it then
        // (`mpmc_ring.rs`); see the module doc for a hostile one.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for Request<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

bytes_eq!(Request);

impl Drop for Request<'_> {
    fn drop(&mut self) {
        let chan = &self.server.chan;
        let _ = mpmc_ring::release(chan.req_geo(), chan, chan.server_ep(), self.owned);
        chan.req_space_bell().ring();
    }
}

/// A response slot loaned to the server: write the response in place, then
/// [`ResponseLoan::send`] it. Dropped unsent, nothing is sent.
pub struct ResponseLoan<'a> {
    server: &'a Server,
    client: usize,
    generation: u64,
    ptr: *mut u8,
    len: usize,
}

impl fmt::Debug for ResponseLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::ResponseLoan")
            .field("client", &self.client)
            .field("len", &self.len)
            .finish()
    }
}

impl ResponseLoan<'_> {
    /// Sends the response to its client (nothing is copied).
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the client's place changed hands meanwhile.
    pub fn send(self) -> Result<(), SendError> {
        let this = std::mem::ManuallyDrop::new(self);
        let chan = &this.server.chan;
        let mut rs = this.server.responders.borrow_mut();
        match &mut rs[this.client] {
            Some(r) if r.generation == this.generation && r.loaned => {
                r.loaned = false;
                r.core
                    .publish(&chan.resp(this.client), (RESP_PREFIX + this.len) as u32);
                chan.resp_bell(this.client).ring();
                Ok(())
            }
            _ => Err(SendError::Disconnected(())),
        }
    }

    /// Shortens the response to `len` bytes (no effect if longer than it is).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The response as a `T`, if it is exactly `size_of::<T>()` bytes (response
    /// bytes are 16-byte aligned).
    pub fn pod_mut<T: Pod>(&mut self) -> Option<&mut T> {
        bytemuck::try_from_bytes_mut(&mut self[..]).ok()
    }
}

impl Deref for ResponseLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` covers `len` bytes of the reserved response slot inside the
        // mapping (checked in `loan_response`); the spsc protocol keeps the client
        // off it until `send` publishes it, and `loaned` keeps a second loan of this
        // server off it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for ResponseLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the mapping is read-write (`Words::new` checked).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ResponseLoan<'_> {
    fn drop(&mut self) {
        if let Some(r) = &mut self.server.responders.borrow_mut()[self.client] {
            if r.generation == self.generation {
                r.loaned = false;
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
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        let Some(index) =
            (0..chan.p.max_clients as usize).find(|&i| chan.client(i).claim() == Claim::Taken)
        else {
            return Err(ChannelError::Full {
                name: chan.map.name.clone(),
                max: chan.p.max_clients as u32,
            });
        };
        chan.adopt(index as u64);
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
        let server = self.chan.server();
        let tok = server.token.load(Ordering::Acquire);
        tok != 0 && peer::alive(server.scope, tok)
    }

    /// Largest request or response, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.p.slot_size as usize
    }

    fn server_gone(&mut self, deep: bool) -> bool {
        let place = self.chan.server();
        place.left() || (deep && self.peer_check.due() && place.gone())
    }

    fn attempt(&mut self, deep: bool) -> Option<Result<Owned, SendError>> {
        let chan = &self.chan;
        let found = mpmc_ring::claim(chan.req_geo(), chan, self.index as u64, |ep| {
            deep && chan.dead(ep)
        });
        match found {
            Ok(Found::Got(o)) => Some(Ok(o)),
            Err(c) => Some(Err(SendError::Corrupt(c))),
            Ok(found) => {
                if found == Found::Freed {
                    chan.req_space_bell().ring();
                }
                self.server_gone(deep)
                    .then_some(Err(SendError::Disconnected(())))
            }
        }
    }

    /// Claims a request slot for `len` bytes, waiting until `deadline`.
    fn claim(&mut self, len: usize, deadline: Deadline) -> Result<Owned, SendError> {
        if len as u64 > self.chan.p.slot_size {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size(),
            });
        }
        if self.server_gone(false) {
            return Err(SendError::Disconnected(()));
        }
        match self.attempt(false) {
            Some(r) => r,
            None => match deadline {
                Deadline::Now => self.attempt(true).unwrap_or(Err(SendError::Timeout(()))),
                deadline => {
                    let words = self.chan.words;
                    let bell = words.bell(offset_of!(Control, req_space_bell));
                    bell.wait_for(deadline, |deep| self.attempt(deep))
                        .unwrap_or(Err(SendError::Timeout(())))
                }
            },
        }
    }

    /// Loans a request slot for `len` bytes, waiting until `deadline`; a failure
    /// is told as `error` words it (given the channel's name).
    fn loan_with<E>(
        &mut self,
        len: usize,
        deadline: Deadline,
        error: impl FnOnce(&str, SendError) -> E,
    ) -> Result<RequestLoan<'_>, E> {
        let owned = match self.claim(len, deadline) {
            Ok(owned) => owned,
            Err(e) => return Err(error(&self.chan.map.name, e)),
        };
        let id = (self.generation << 32) | u64::from(self.next);
        let p = self.chan.req_payload(owned.slot, REQ_PREFIX + len);
        let mut prefix = [0u8; REQ_PREFIX];
        prefix[..8].copy_from_slice(&(self.index as u64).to_le_bytes());
        prefix[8..].copy_from_slice(&id.to_le_bytes());
        // SAFETY: `p` covers `REQ_PREFIX + len` bytes of the loaned request slot
        // inside the mapping (`Words::bytes` checked); the slot's state word names
        // this client as its writer (`mpmc_ring::claim`); a raw copy.
        unsafe { std::ptr::copy_nonoverlapping(prefix.as_ptr(), p, REQ_PREFIX) };
        Ok(RequestLoan {
            // SAFETY: in range, as above.
            ptr: unsafe { p.add(REQ_PREFIX) },
            client: self,
            owned,
            len,
            id,
        })
    }

    /// Loans a request slot for a request of `len` bytes, waiting as long as it
    /// takes for one: write it in place, then [`RequestLoan::send`]. The bytes are
    /// those of an earlier request or zero (overwrite what you send).
    ///
    /// # Errors
    /// [`CallError::ServerGone`] (no server: it left or died, or none has started),
    /// [`CallError::TooLarge`], [`CallError::Corrupt`].
    pub fn loan_request(&mut self, len: usize) -> Result<RequestLoan<'_>, CallError> {
        self.loan_with(len, Deadline::Never, |name, e| {
            request_error(name, e, Duration::MAX)
        })
    }

    /// As [`Client::loan_request`], without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`],
    /// [`TrySendError::TooLarge`], [`TrySendError::Corrupt`].
    pub fn try_loan_request(&mut self, len: usize) -> Result<RequestLoan<'_>, TrySendError> {
        self.loan_with(len, Deadline::Now, |_, e| try_error(e))
    }

    /// As [`Client::loan_request`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Client::loan_request`], and [`CallError::QueueFull`] if the request
    /// queue stays full.
    pub fn loan_request_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<RequestLoan<'_>, CallError> {
        self.loan_with(len, Deadline::after(timeout), |name, e| {
            request_error(name, e, timeout)
        })
    }

    /// Queues a copy of `data` as a request without waiting; returns its id.
    ///
    /// # Errors
    /// As [`Client::try_loan_request`].
    pub fn try_send_request(&mut self, data: &[u8]) -> Result<u64, TrySendError> {
        let mut loan = self.try_loan_request(data.len())?;
        loan.copy_from_slice(data);
        loan.send().map_err(try_error)
    }

    /// Queues a copy of `data` as a request, waiting for room as long as it
    /// takes; returns its id.
    ///
    /// # Errors
    /// As [`Client::loan_request`].
    pub fn send_request(&mut self, data: &[u8]) -> Result<u64, CallError> {
        let mut loan = self.loan_request(data.len())?;
        loan.copy_from_slice(data);
        let sent = loan.send();
        sent.map_err(|e| request_error(&self.chan.map.name, e, Duration::MAX))
    }

    /// The next response in place (any id), without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`], [`RecvError::Corrupt`].
    pub fn try_recv_response(&mut self) -> Result<Response<'_>, RecvError> {
        let (slot, len, id) = self.next_response(Deadline::Now)?;
        Ok(self.response(slot, len, id))
    }

    /// Reads responses until the one for `id` comes (dropping responses to
    /// earlier requests that were given up), waiting up to `timeout`; the
    /// response is read in place.
    ///
    /// # Errors
    /// [`CallError::Timeout`] if it does not come in time; [`CallError::ServerGone`]
    /// if the server left or died; [`CallError::Corrupt`].
    pub fn recv_response(&mut self, id: u64, timeout: Duration) -> Result<Response<'_>, CallError> {
        let (slot, len) = self
            .wait_response(id, Deadline::after(timeout))
            .map_err(|e| self.call_error(e, timeout))?;
        Ok(self.response(slot, len, id))
    }

    /// Waits until `deadline` for the response to `id` (its slot and data length),
    /// dropping the others; in a channel's terms.
    fn wait_response(&mut self, id: u64, deadline: Deadline) -> Result<(usize, usize), RecvError> {
        loop {
            let (slot, len, got) = self.next_response(deadline)?;
            if got == id {
                return Ok((slot, len));
            }
            self.release_response();
        }
    }

    /// A channel's error, as what it means to a caller that waited `timeout`.
    fn call_error(&self, e: RecvError, timeout: Duration) -> CallError {
        let name = self.chan.map.name.clone();
        match e {
            RecvError::Disconnected => CallError::ServerGone { name },
            RecvError::Corrupt(source) => CallError::Corrupt { name, source },
            // Empty: nothing came in time. (A response is never too large for the
            // client's buffer, nor held beyond a bound: it is read in place.)
            _ => CallError::Timeout { name, timeout },
        }
    }

    /// As [`Client::recv_response`], as a future, without a timeout (wrap it in your
    /// runtime's timeout).
    ///
    /// Cancel-safe: a response is taken only when the future completes (responses
    /// to other ids read on the way are dropped, as the blocking form does).
    ///
    /// # Errors
    /// [`CallError::ServerGone`] if the server left or died; [`CallError::Corrupt`].
    pub async fn recv_response_async(&mut self, id: u64) -> Result<Response<'_>, CallError> {
        let mut pending = crate::waitset::Pending::default();
        let (slot, len) = std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell = words.bell(client_off(self.index) + offset_of!(ClientRecord, resp_bell));
            bell.poll_async(&mut pending, cx, || loop {
                match self.next_response(Deadline::Now) {
                    Err(RecvError::Empty) => return None,
                    Ok((slot, len, got)) if got == id => return Some(Ok((slot, len))),
                    Ok(_) => self.release_response(),
                    Err(e) => return Some(Err(e)),
                }
            })
        })
        .await
        .map_err(|e| self.call_error(e, Duration::MAX))?;
        Ok(self.response(slot, len, id))
    }

    fn response(&mut self, slot: usize, len: usize, id: u64) -> Response<'_> {
        let p = self.chan.resp_payload(self.index, slot, RESP_PREFIX + len);
        Response {
            // SAFETY: in range: `RESP_PREFIX + len` bytes were checked by
            // `resp_payload`.
            ptr: unsafe { p.add(RESP_PREFIX) },
            client: self,
            len,
            id,
        }
    }

    fn release_response(&mut self) {
        let _ = self.core.release(&self.chan.resp(self.index));
        self.chan.resp_space_bell(self.index).ring();
    }

    /// The next response's (slot, data length, id), not released.
    fn next_response(&mut self, deadline: Deadline) -> Result<(usize, usize, u64), RecvError> {
        let ring = self.chan.resp(self.index);
        let found = match self.core.peek(&ring)? {
            Some(x) => Some(x),
            None => {
                let words = self.chan.words;
                let bell = words.bell(client_off(self.index) + offset_of!(ClientRecord, resp_bell));
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
                    Deadline::Now => poll(true),
                    d => bell.wait_for(d, poll),
                };
                Some(r.unwrap_or(Err(RecvError::Empty))?)
            }
        };
        let Some((slot, len)) = found else {
            return Err(RecvError::Empty);
        };
        let len = len as usize;
        if len < RESP_PREFIX {
            self.release_response();
            return Err(RecvError::Corrupt(Corrupt {
                what: "response length (shorter than its header)",
                value: len as u64,
            }));
        }
        let p = self.chan.resp_payload(self.index, slot, len);
        let mut id = [0u8; RESP_PREFIX];
        // SAFETY: `p` covers `len >= RESP_PREFIX` bytes (<= slot, checked by `peek`)
        // of a published response slot inside the mapping; the server does not
        // write it until we release it; a raw copy into our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(p, id.as_mut_ptr(), RESP_PREFIX) };
        Ok((slot, len - RESP_PREFIX, u64::from_le_bytes(id)))
    }

    /// Sends a copy of `data` as a request and waits for its response (read in
    /// place), up to `timeout` in all (waiting for room in a full request queue
    /// included).
    ///
    /// # Errors
    /// As [`Client::recv_response`], [`CallError::QueueFull`] when the request
    /// queue stayed full (nothing was sent), and [`CallError::TooLarge`].
    pub fn call(&mut self, data: &[u8], timeout: Duration) -> Result<Response<'_>, CallError> {
        let deadline = Deadline::after(timeout);
        let mut loan = self.loan_with(data.len(), deadline, |name, e| {
            request_error(name, e, timeout)
        })?;
        loan.copy_from_slice(data);
        let sent = loan.send();
        let id = sent.map_err(|e| request_error(&self.chan.map.name, e, timeout))?;
        let (slot, len) = self
            .wait_response(id, deadline)
            .map_err(|e| self.call_error(e, timeout))?;
        Ok(self.response(slot, len, id))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Loans and responses borrow the client: none is out now.
        self.chan.client(self.index).leave();
        self.chan.resp_space_bell(self.index).ring_always();
    }
}

/// A request slot loaned to a client: write the request in place, then
/// [`RequestLoan::send`] it. Dropped unsent, the slot is skipped by the server.
pub struct RequestLoan<'a> {
    client: &'a mut Client,
    owned: Owned,
    ptr: *mut u8,
    len: usize,
    id: u64,
}

impl fmt::Debug for RequestLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::RequestLoan")
            .field("id", &self.id)
            .field("len", &self.len)
            .finish()
    }
}

impl RequestLoan<'_> {
    /// The id the request will have.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues the request for the server (nothing is copied); returns its id.
    ///
    /// # Errors
    /// [`SendError::Corrupt`] if the slot was taken from this client (corrupt
    /// memory or a hostile peer; the request is lost).
    pub fn send(self) -> Result<u64, SendError> {
        let mut this = std::mem::ManuallyDrop::new(self);
        let chan = &this.client.chan;
        let r = mpmc_ring::publish(
            chan.req_geo(),
            chan,
            this.client.index as u64,
            this.owned,
            (REQ_PREFIX + this.len) as u64,
        );
        chan.req_bell().ring();
        r.map_err(SendError::Corrupt)?;
        this.client.next = this.client.next.wrapping_add(1);
        Ok(this.id)
    }

    /// Shortens the request to `len` bytes (no effect if longer than it is).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The request as a `T`, if it is exactly `size_of::<T>()` bytes (request
    /// bytes are 16-byte aligned).
    pub fn pod_mut<T: Pod>(&mut self) -> Option<&mut T> {
        bytemuck::try_from_bytes_mut(&mut self[..]).ok()
    }
}

impl Deref for RequestLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` covers `len` bytes of the loaned request slot inside the
        // mapping (checked in `loan_with`); the slot's state word names this client
        // as its writer until `send`, and the loan borrows the client mutably.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for RequestLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the mapping is read-write (`Words::new` checked).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for RequestLoan<'_> {
    fn drop(&mut self) {
        let chan = &self.client.chan;
        mpmc_ring::cancel(chan.req_geo(), chan, self.client.index as u64, self.owned);
        chan.req_bell().ring();
    }
}

/// A response read in place in the client's response ring: derefs to the
/// response's bytes. The slot stays the client's until it is dropped.
pub struct Response<'a> {
    client: &'a mut Client,
    ptr: *const u8,
    len: usize,
    id: u64,
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rpc::Response")
            .field("id", &self.id)
            .field("data", &self.deref())
            .finish()
    }
}

impl Response<'_> {
    /// The id of the request answered.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The response as a `T`, if it is exactly `size_of::<T>()` bytes (response
    /// bytes are 16-byte aligned).
    pub fn pod<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the response's bytes out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Response<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` covers `len` bytes of a published response slot inside the
        // mapping (length checked by `ConsumerCore::peek` and `next_response`); the
        // spsc protocol keeps the server from reserving it until the client's
        // position moves past it, which happens when this response drops.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for Response<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

bytes_eq!(Response);

impl Drop for Response<'_> {
    fn drop(&mut self) {
        self.client.release_response();
    }
}

/// For `channel::fuzzing`: endpoints over one mapping made once per process,
/// through every check an open makes (`Mapped::again`).
impl Server {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }

    pub(super) fn fuzz_mapped(&self) -> &Mapped {
        &self.chan.map
    }
}

impl Client {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }
}
