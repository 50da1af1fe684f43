//! Bounded multi-producer multi-consumer queues of zero-copy samples: any number
//! of [`Producer`]s and [`Consumer`]s (up to a bound of endpoints fixed at
//! creation); each message goes to exactly one consumer.
//!
//! A producer *loans* a slot of the queue's shared memory, writes the message in
//! place and sends it; a consumer receives a [`Sample`] that reads the slot in
//! place and gives it back when dropped. Nothing is copied by the channel. The
//! copying forms (`send(&[u8])`, `recv_into`) are conveniences on top.
//!
//! ```
//! use shmipc::channel::mpmc::{Consumer, Options, Producer};
//! # let name = format!("doc-mpmc-{}", std::process::id());
//! let mut p1 = Options::new().capacity(64).slot_size(32).create_producer(&name)?;
//! let mut p2 = Producer::open(&name)?;
//! let worker = Consumer::open(&name)?; // usually other processes
//!
//! let mut loan = p1.loan(5)?; // a slot of shared memory, ours alone
//! loan.copy_from_slice(b"job 1"); // or fill it in place
//! loan.send()?; // its position goes to the consumers
//! p2.send(b"job 2")?; // the copying convenience
//!
//! let job = worker.recv()?; // read in place: `&*job` points into the slot
//! assert_eq!(&*job, b"job 1");
//! drop(job); // the slot goes back to the producers
//!
//! // Plain-data types in place:
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Job { id: u64, cost: f64 }
//! let mut loan = p1.loan_pod::<Job>()?;
//! *loan.pod_mut::<Job>().unwrap() = Job { id: 3, cost: 1.5 };
//! loan.send()?;
//! let mut buf = Vec::new();
//! worker.recv_into(&mut buf)?; // copies "job 2" out and releases its slot
//! assert_eq!(buf, b"job 2");
//! assert_eq!(worker.recv()?.pod::<Job>().unwrap().id, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * **Order and room.** Messages leave in the order their loans were taken. The
//!   queue has [`Options::capacity`] slots, shared by messages waiting and samples
//!   held: a consumer that keeps a sample keeps its slot, and once producers have
//!   gone round the ring to it they wait (`loan` blocks, `try_loan` is `Full`).
//!   A loan holds its position too: consumers wait for it, so send or drop loans
//!   promptly (a dropped loan is skipped, never delivered).
//! * **Peer death.** A consumer's receives return [`RecvError::Disconnected`] once
//!   producers have attached, none is attached and alive, and the queue is empty;
//!   a producer's loans fail with `Disconnected` when the queue is full and no
//!   consumer is left. A producer killed with a loan has its slot skipped by the
//!   consumer that reaches it; a consumer killed holding samples has their slots
//!   freed by the producer that needs them next (or by [`Producer::free_slots`]);
//!   an endpoint that takes over a dead one's record first resolves every slot the
//!   dead one owned. No slot is ever lost to a crash.
//! * **Sizes.** A slot holds up to [`Options::slot_size`] bytes; a larger loan
//!   fails with [`SendError::TooLarge`] naming both sizes. Payloads are 64-byte
//!   aligned, so any `bytemuck::Pod` type of alignment up to 64 can be loaned.
//!
//! # Why a slot is never written while a consumer reads it
//!
//! Each slot has one state word that names its lap, its phase (free, loaned,
//! published, taken) and its owner; every change of owner is one compare-and-swap
//! on it (Vyukov's bounded queue with the slot as the sample: `mpmc_ring.rs`).
//! A producer writes a slot only while the word says *loaned to it*, which it
//! reaches only from *free*; a slot becomes free again only by its consumer's
//! release (dropping the [`Sample`]) or, if that consumer is dead (proven by the
//! kernel, see `peer.rs`), by a reclaim. So a sample's bytes are never written by a
//! correct producer while the sample lives.
//!
//! # What a buggy or hostile peer can and cannot do to a reader
//!
//! A [`Sample`] is a `&[u8]` (or `&T` of a `bytemuck::Pod` type) over shared memory.
//! A process that maps the segment and ignores the protocol can write those bytes
//! while you read them: you may then see any bytes, even bytes that change between
//! two reads. It cannot make shmipc read or write outside the segment, hand you a
//! sample longer than a slot, panic, loop forever or wait past your timeout: every
//! position, state, owner and length read from the shared memory is validated, and
//! an impossible one is [`RecvError::Corrupt`]. Validate what you parse out of a
//! sample as you would data from a socket; copy it ([`Consumer::recv_into`]) if you
//! must be sure it does not change.
//!
//! It can stall the queue: a head slot marked *loaned* to a live endpoint is what a
//! slow producer's loan legitimately looks like, and the queue is FIFO, so receives
//! then wait (and time out) as they would with nothing sent; they never wait past
//! their timeout, and the stall ends when that endpoint dies or sends.
//!
//! # Layout of the segment
//!
//! The `#[repr(C)]` structs `Control` (the first 384 bytes, layout header
//! included), `Record` and `SlotHeader` (in this file), checked by the compiler:
//!
//! ```text
//!   0  layout header (kind mpmc; params: capacity | max endpoints << 32, slot size,
//!      type size | align << 32, type hash)
//!  64  enqueue position, dequeue position (own cache lines), data bell
//!      (consumers sleep), space bell (producers sleep), producers and consumers
//!      ever attached
//! 384  Record per endpoint, 32 bytes: token, attaches, role (1 producer, 2 consumer)
//!  S   slots (S 128-aligned), stride 64 + slot size rounded up to 64:
//!      SlotHeader (state, length), then the payload at +64
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

use super::mpmc_ring::{self, Found, Geometry, MpmcSlots, Owned};
use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::shared::{self, line_up, Bad, BellWords, Common, How, Mapped, MsgType, Rule, Words};
use super::shim::AtomicU64;
use super::{ChannelError, RecvError, SendError, TrySendError};

/// The words after the layout header. Fields that different sides write sit on
/// their own cache lines.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Control {
    /// The layout header (`layout.rs`).
    pub(crate) header: HeaderWords,
    /// Next position a producer claims (a hint every producer moves on).
    pub(crate) enqueue_pos: u64,
    _enq_line: [u64; 7],
    /// Next position a consumer takes (a hint every consumer moves on).
    pub(crate) dequeue_pos: u64,
    _deq_line: [u64; 7],
    /// Bell consumers sleep on: seq, sleepers.
    pub(crate) data_bell: BellWords,
    _data_line: [u32; 14],
    /// Bell producers sleep on: seq, sleepers.
    pub(crate) space_bell: BellWords,
    _space_line: [u32; 14],
    /// Producers ever attached.
    pub(crate) producers_ever: u64,
    /// Consumers ever attached.
    pub(crate) consumers_ever: u64,
    _ever_line: [u64; 6],
}

/// One endpoint's record.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Record {
    /// Holder's liveness token (0: free).
    pub(crate) token: u64,
    /// Holders ever.
    pub(crate) attaches: u64,
    /// [`ROLE_PRODUCER`] or [`ROLE_CONSUMER`].
    pub(crate) role: u64,
    _pad: u64,
}

/// The words before each slot's payload.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SlotHeader {
    /// Lap, phase and owner (`mpmc_ring.rs`).
    pub(crate) state: u64,
    /// Payload bytes of a published message.
    pub(crate) len: u64,
    _pad: [u64; 6],
}

const _: () = {
    assert!(size_of::<Control>() == 384);
    assert!(offset_of!(Control, enqueue_pos) == 64);
    assert!(offset_of!(Control, dequeue_pos) == 128);
    assert!(offset_of!(Control, data_bell) == 192);
    assert!(offset_of!(Control, space_bell) == 256);
    assert!(offset_of!(Control, producers_ever) == 320);
    assert!(size_of::<Record>() == 32);
    assert!(size_of::<SlotHeader>() == 64);
};

/// Where the endpoint records start.
pub(crate) const RECORDS_AT: usize = size_of::<Control>();
pub(crate) const RECORD_LEN: usize = size_of::<Record>();
pub(crate) const SLOT_HEADER: usize = size_of::<SlotHeader>();
const MAX_SLOT: u64 = 1 << 31;
const MAX_CAPACITY: u64 = 1 << 31;
const MAX_ENDPOINTS: u64 = mpmc_ring::MAX_ENDPOINTS;
const PEER_CHECK: Duration = Duration::from_millis(10);
pub(crate) const ROLE_PRODUCER: u64 = 1;
pub(crate) const ROLE_CONSUMER: u64 = 2;

/// Settings for creating an mpmc queue.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    capacity: u64,
    slot_size: u64,
    max_endpoints: u64,
    common: Common,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: 256 slots of 1024 bytes, 64 endpoints.
    pub fn new() -> Self {
        Self {
            capacity: 256,
            slot_size: 1024,
            max_endpoints: 64,
            common: Common::default(),
        }
    }

    /// Slots, rounded up to a power of two (2 to 2^31).
    pub fn capacity(mut self, slots: usize) -> Self {
        self.capacity = slots as u64;
        self
    }

    /// Largest message in bytes (at most 2^31).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes as u64;
        self
    }

    /// Most producers and consumers attached at a time, together (1 to 65536).
    pub fn max_endpoints(mut self, n: usize) -> Self {
        self.max_endpoints = n as u64;
        self
    }

    /// Unix permission bits of the segment: read/write bits within `0o666` (default
    /// `0o600`); any other bit is refused at create time (`CreateError::InvalidMode`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.common.mode = mode;
        self
    }

    /// How long the queue lives (default: until its last holder closes or dies).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.common.persistence = persistence;
        self
    }

    /// Creates the queue and attaches a producer.
    ///
    /// # Errors
    /// [`ChannelError::Create`], [`ChannelError::InvalidParameter`].
    pub fn create_producer(&self, name: &str) -> Result<Producer, ChannelError> {
        Producer::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the queue and attaches a consumer.
    ///
    /// # Errors
    /// As [`Options::create_producer`].
    pub fn create_consumer(&self, name: &str) -> Result<Consumer, ChannelError> {
        Consumer::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the queue or opens it, and attaches a producer.
    ///
    /// # Errors
    /// As [`Options::create_producer`] and [`Producer::open`].
    pub fn create_or_open_producer(&self, name: &str) -> Result<Producer, ChannelError> {
        Producer::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }

    /// Creates the queue or opens it, and attaches a consumer.
    ///
    /// # Errors
    /// As [`Options::create_producer`] and [`Consumer::open`].
    pub fn create_or_open_consumer(&self, name: &str) -> Result<Consumer, ChannelError> {
        Consumer::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }
}

/// Capacity: slots in the queue.
const CAPACITY: Rule = Rule {
    what: "capacity",
    header: "capacity (not a power of two from 2 to 2^31)",
    reason: "it must be 1 to 2^31 slots",
    min: 2,
    max: MAX_CAPACITY,
    pow2: true,
};

/// Slot size: the largest message.
const SLOT_SIZE: Rule = Rule {
    what: "slot size",
    header: "slot size (over 2^31)",
    reason: "it must be at most 2^31 bytes",
    min: 0,
    max: MAX_SLOT,
    pow2: false,
};

/// Endpoint records: producers and consumers together.
const ENDPOINTS: Rule = Rule {
    what: "max endpoints",
    header: "max endpoints (not 1 to 65536)",
    reason: "it must be 1 to 65536",
    min: 1,
    max: MAX_ENDPOINTS,
    pow2: false,
};

/// The layout parameters of an mpmc queue (header words 0 and 1; 2 and 3, the
/// message type, are those of bytes). Checked by [`Params::check`] alone, for a
/// creator's options and for a header ([`validate`]): a creator cannot make what
/// an opener refuses, and `shmipc info` refuses what an opener does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) max_endpoints: u64,
}

/// Where the parts of an mpmc segment are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Offset of the slots.
    slots: u64,
    /// Bytes from one slot to the next.
    stride: u64,
    /// Bytes of the whole queue.
    pub(crate) size: u64,
}

impl Params {
    /// From a creator's options (capacity rounded up to a power of two).
    fn of_options(o: &Options) -> Result<(Self, Sizes), Bad> {
        let p = Self {
            capacity: CAPACITY.option(o.capacity)?,
            slot_size: o.slot_size,
            max_endpoints: o.max_endpoints,
        };
        Ok((p, p.check()?))
    }

    /// Checks every parameter against its rule, and lays the queue out.
    fn check(&self) -> Result<Sizes, Bad> {
        CAPACITY.check(self.capacity)?;
        SLOT_SIZE.check(self.slot_size)?;
        ENDPOINTS.check(self.max_endpoints)?;
        self.sizes().ok_or(Bad {
            what: "capacity x slot size",
            header: "queue size",
            reason: "the queue would not fit in memory",
            value: self.capacity,
        })
    }

    /// The layout; None on overflow.
    fn sizes(&self) -> Option<Sizes> {
        let recs =
            (RECORDS_AT as u64).checked_add(self.max_endpoints.checked_mul(RECORD_LEN as u64)?)?;
        let slots = recs.checked_add(127)? & !127;
        let stride = (SLOT_HEADER as u64).checked_add(line_up(self.slot_size)?)?;
        let size = stride.checked_mul(self.capacity)?.checked_add(slots)?;
        (size <= isize::MAX as u64).then_some(Sizes {
            slots,
            stride,
            size,
        })
    }

    /// The header's parameters.
    fn pack(&self) -> [u64; 4] {
        let msg = MsgType::BYTES;
        [
            self.capacity | (self.max_endpoints << 32),
            self.slot_size,
            msg.packed(),
            msg.hash,
        ]
    }
}

/// Validates an mpmc header's parameters (its message type words those of bytes)
/// and that `len` bytes (of the segment, from the queue's start) hold the layout
/// they describe: the one check of an opening endpoint and of `shmipc info`
/// (`channel::inspect`).
///
/// # Errors
/// [`LayoutError::Mismatch`] naming the parameter out of range,
/// [`LayoutError::TooSmall`] for a segment too small for them.
pub(crate) fn validate(
    [p0, slot_size, packed, hash]: [u64; 4],
    len: usize,
) -> Result<(Params, Sizes), LayoutError> {
    MsgType::BYTES.check(Kind::Mpmc, packed, hash)?;
    let p = Params {
        capacity: p0 & 0xffff_ffff,
        slot_size,
        max_endpoints: p0 >> 32,
    };
    let s = p.check().map_err(|b| b.layout(Kind::Mpmc))?;
    shared::fits("mpmc queue", s.size, len)?;
    Ok((p, s))
}

#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    geo: Geometry,
    slots: usize,
    stride: usize,
}

impl Chan {
    fn get(name: &str, how: How, opts: &Options) -> Result<Self, ChannelError> {
        let (p, sizes) = Params::of_options(opts).map_err(|b| b.invalid(name))?;
        // Every slot starts free in turn 0 (`mpmc_ring::INIT`, all zero bits): the
        // new segment is zeroed already.
        const _: () = assert!(mpmc_ring::INIT == 0);
        let (map, header) = shared::get(
            name,
            how,
            Kind::Mpmc,
            &opts.common,
            sizes.size,
            p.pack(),
            |_| Ok(()),
        )?;
        Self::checked(name, map, header, opts)
    }

    /// For `channel::fuzzing`: the same checks as an open, over `map` again.
    fn again(map: &Mapped, opts: &Options) -> Result<Self, ChannelError> {
        let (map, header) = map.again(Kind::Mpmc)?;
        let name = map.name.clone();
        Self::checked(&name, map, header, opts)
    }

    /// Validates a mapped channel's header parameters and extent.
    fn checked(
        name: &str,
        map: Mapped,
        header: Header,
        _opts: &Options,
    ) -> Result<Self, ChannelError> {
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let (found, s) = validate(header.params, map.view.len()).map_err(layout)?;
        // Its pages have memory before anything is written through the mapping.
        map.back_holes(s.size).map_err(layout)?;
        let words = map.words(Kind::Mpmc, s.size).map_err(layout)?;
        Ok(Self {
            map,
            words,
            geo: Geometry {
                capacity: found.capacity,
                max_len: found.slot_size as u32,
                endpoints: found.max_endpoints,
            },
            slots: s.slots as usize,
            stride: s.stride as usize,
        })
    }

    fn record(&self, i: usize) -> (Place<'_>, &AtomicU64) {
        let off = RECORDS_AT + i * RECORD_LEN;
        (
            Place {
                token: self.words.u64(off + offset_of!(Record, token)),
                attaches: self.words.u64(off + offset_of!(Record, attaches)),
                scope: self.map.view.liveness(),
            },
            self.words.u64(off + offset_of!(Record, role)),
        )
    }

    fn ever(&self, role: u64) -> &AtomicU64 {
        self.words.u64(if role == ROLE_PRODUCER {
            offset_of!(Control, producers_ever)
        } else {
            offset_of!(Control, consumers_ever)
        })
    }

    /// Takes a free endpoint record for `role`, then resolves the slots a dead
    /// previous holder of the record owned (before this endpoint owns any, so
    /// that they are never mistaken for ours).
    fn register(&self, role: u64) -> Result<usize, ChannelError> {
        for i in 0..self.geo.endpoints as usize {
            let (place, r) = self.record(i);
            if place.claim() == Claim::Taken {
                r.store(role, Ordering::Release);
                let c = mpmc_ring::scan(self.geo, self, |ep| ep == i as u64);
                if c.reclaimed > 0 {
                    self.bell(offset_of!(Control, data_bell)).ring();
                    self.bell(offset_of!(Control, space_bell)).ring();
                }
                self.ever(role).fetch_add(1, Ordering::AcqRel);
                return Ok(i);
            }
        }
        Err(ChannelError::Full {
            name: self.map.name.clone(),
            max: self.geo.endpoints as u32,
        })
    }

    /// Whether the holder of record `ep` (`< endpoints`) is gone: the record is
    /// free, or its holder is dead. Costs a liveness check: rate-limit it.
    fn dead(&self, ep: u64) -> bool {
        let place = self.record(ep as usize).0;
        let tok = place.token.load(Ordering::Acquire);
        tok == 0 || !peer::alive(place.scope, tok)
    }

    /// True when endpoints of `role` have attached and none is attached and alive.
    /// Costs a scan of the records and a liveness check each: rate-limit it.
    fn all_gone(&self, role: u64) -> bool {
        if self.ever(role).load(Ordering::Acquire) == 0 {
            return false;
        }
        self.live(role) == 0
    }

    /// Live endpoints of `role` attached now (a scan, with a liveness check each).
    fn live(&self, role: u64) -> usize {
        (0..self.geo.endpoints as usize)
            .filter(|&i| {
                let (place, r) = self.record(i);
                let tok = place.token.load(Ordering::Acquire);
                tok != 0 && r.load(Ordering::Acquire) == role && peer::alive(place.scope, tok)
            })
            .count()
    }

    fn bell(&self, off: usize) -> Bell<'_> {
        self.words.bell(off)
    }

    fn data_bell(&self) -> Bell<'_> {
        self.bell(offset_of!(Control, data_bell))
    }

    fn space_bell(&self) -> Bell<'_> {
        self.bell(offset_of!(Control, space_bell))
    }

    #[inline]
    fn slot_off(&self, slot: usize) -> usize {
        self.slots + slot * self.stride
    }

    /// The payload of `slot` (`< capacity`), `len` (`<= slot size`) bytes.
    #[inline]
    fn payload(&self, slot: usize, len: usize) -> *mut u8 {
        self.words.bytes(self.slot_off(slot) + SLOT_HEADER, len)
    }

    /// Resolves the slots of dead endpoints and counts the free ones.
    fn census(&self) -> mpmc_ring::Census {
        let mut memo: Vec<Option<bool>> = vec![None; self.geo.endpoints as usize];
        let c = mpmc_ring::scan(self.geo, self, |ep| {
            *memo[ep as usize].get_or_insert_with(|| self.dead(ep))
        });
        if c.reclaimed > 0 {
            self.data_bell().ring();
            self.space_bell().ring();
        }
        c
    }
}

impl MpmcSlots for Chan {
    #[inline]
    fn state(&self, slot: usize) -> &AtomicU64 {
        self.words
            .u64(self.slot_off(slot) + offset_of!(SlotHeader, state))
    }
    #[inline]
    fn len(&self, slot: usize) -> &AtomicU64 {
        self.words
            .u64(self.slot_off(slot) + offset_of!(SlotHeader, len))
    }
    #[inline]
    fn enqueue_pos(&self) -> &AtomicU64 {
        self.words.u64(offset_of!(Control, enqueue_pos))
    }
    #[inline]
    fn dequeue_pos(&self) -> &AtomicU64 {
        self.words.u64(offset_of!(Control, dequeue_pos))
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

/// A producing end of an mpmc queue.
pub struct Producer {
    chan: Chan,
    index: usize,
    peer_check: Every,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Producer")
            .field("name", &self.chan.map.name)
            .field("index", &self.index)
            .finish()
    }
}

impl Producer {
    /// Live producers attached now.
    pub fn producers(&self) -> usize {
        self.chan.live(ROLE_PRODUCER)
    }

    /// Live consumers attached now.
    pub fn consumers(&self) -> usize {
        self.chan.live(ROLE_CONSUMER)
    }

    /// Creates a queue of `capacity` slots of `slot_size` bytes (see [`Options`])
    /// and attaches a producer.
    ///
    /// # Errors
    /// As [`Options::create_producer`].
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_producer(name)
    }

    /// Opens an existing queue and attaches a producer.
    ///
    /// # Errors
    /// [`ChannelError::Open`], [`ChannelError::Layout`], [`ChannelError::Full`]
    /// when every endpoint record is taken.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        let index = chan.register(ROLE_PRODUCER)?;
        Ok(Self {
            chan,
            index,
            peer_check: Every::new(PEER_CHECK),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// Slots in the queue.
    pub fn capacity(&self) -> usize {
        self.chan.geo.capacity as usize
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    /// Slots free for a loan now, after giving back those that endpoints which
    /// died (or forgot a loan or a sample) still own. With no message queued,
    /// nothing loaned and nothing held, this is [`Producer::capacity`]: a crash
    /// never loses a slot. A scan of the queue: not for the data path.
    pub fn free_slots(&mut self) -> usize {
        self.chan.census().free as usize
    }

    fn attempt(&mut self, deep: bool) -> Option<Result<Owned, SendError>> {
        let chan = &self.chan;
        let me = self.index as u64;
        match mpmc_ring::claim(chan.geo, chan, me, |ep| deep && chan.dead(ep)) {
            Ok(Found::Got(o)) => Some(Ok(o)),
            Err(c) => Some(Err(SendError::Corrupt(c))),
            Ok(found) => {
                if found == Found::Freed {
                    chan.space_bell().ring();
                }
                (deep && self.peer_check.due() && chan.all_gone(ROLE_CONSUMER))
                    .then_some(Err(SendError::Disconnected(())))
            }
        }
    }

    fn loan_with(&mut self, len: usize, deadline: Deadline) -> Result<Loan<'_>, SendError> {
        if len > self.slot_size() {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size(),
            });
        }
        let owned = match self.attempt(false) {
            Some(r) => r?,
            None => match deadline {
                Deadline::Now => self.attempt(true).unwrap_or(Err(SendError::Timeout(())))?,
                deadline => {
                    // A copy of the word accessor, so the bell does not borrow `self`.
                    let words = self.chan.words;
                    let bell = words.bell(offset_of!(Control, space_bell));
                    bell.wait_for(deadline, |deep| self.attempt(deep))
                        .unwrap_or(Err(SendError::Timeout(())))?
                }
            },
        };
        Ok(Loan {
            producer: self,
            owned,
            len,
        })
    }

    /// Loans a slot for a message of `len` bytes, waiting as long as it takes for
    /// one. The loan's bytes are those of an earlier message or zero (never
    /// uninitialised memory, never cleared for you: overwrite what you send).
    ///
    /// # Errors
    /// [`SendError::TooLarge`] naming both sizes, [`SendError::Disconnected`]
    /// (full, and no consumer left), [`SendError::Corrupt`].
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::Never)
    }

    /// As [`Producer::loan`], without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`],
    /// [`TrySendError::TooLarge`], [`TrySendError::Corrupt`].
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, TrySendError> {
        self.loan_with(len, Deadline::Now).map_err(try_error)
    }

    /// As [`Producer::loan`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::loan`], and [`SendError::Timeout`].
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::after(timeout))
    }

    /// Loans a slot sized for one `T` (write it with [`Loan::pod_mut`]).
    ///
    /// # Errors
    /// As [`Producer::loan`].
    pub fn loan_pod<T: Pod>(&mut self) -> Result<Loan<'_>, SendError> {
        self.loan(size_of::<T>())
    }

    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_loan`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let mut loan = self.try_loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send().map_err(try_error)
    }

    /// Sends a copy of `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::loan`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send()
    }

    /// Sends a copy of `msg`, waiting for room up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::loan_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let mut loan = self.loan_timeout(msg.len(), timeout)?;
        loan.copy_from_slice(msg);
        loan.send()
    }
}

/// Async loans and sends: the try-call plus an async wait on the space bell.
impl Producer {
    /// Loans a slot as a future: [`Producer::loan`] without blocking a thread.
    ///
    /// Cancel-safe: a slot is loaned only by the poll that completes the future;
    /// dropping it while pending holds nothing.
    ///
    /// # Errors
    /// As [`Producer::loan`].
    pub async fn loan_async(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        if len > self.slot_size() {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size(),
            });
        }
        let mut pending = crate::waitset::Pending::default();
        let owned = std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell = words.bell(offset_of!(Control, space_bell));
            bell.poll_async(&mut pending, cx, || self.attempt(true))
        })
        .await?;
        Ok(Loan {
            producer: self,
            owned,
            len,
        })
    }

    /// Sends a copy of `msg`, waiting for room as a future: [`Producer::send`]
    /// without blocking a thread.
    ///
    /// Cancel-safe: the message is queued only when the future completes; dropping
    /// it while pending queues nothing.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut loan = self.loan_async(msg.len()).await?;
        loan.copy_from_slice(msg);
        loan.send()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Loans borrow the producer: none is out now.
        self.chan.record(self.index).0.leave();
        self.chan.data_bell().ring_always();
    }
}

/// A slot loaned to a producer: write the message in place, then [`Loan::send`]
/// it. While the loan lives, the queue gives this slot to this producer alone.
/// Dropped unsent, the slot is skipped by the consumers (nothing is delivered)
/// and comes back free.
pub struct Loan<'a> {
    producer: &'a mut Producer,
    owned: Owned,
    len: usize,
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Loan")
            .field("slot", &self.owned.slot)
            .field("len", &self.len)
            .finish()
    }
}

impl Loan<'_> {
    /// Sends the message to the consumers (by position: nothing is copied).
    ///
    /// # Errors
    /// [`SendError::Corrupt`] if the slot was taken from this producer (only a
    /// hostile peer or corrupt memory does that; the message is lost).
    #[inline]
    pub fn send(self) -> Result<(), SendError> {
        let this = std::mem::ManuallyDrop::new(self);
        let chan = &this.producer.chan;
        let r = mpmc_ring::publish(
            chan.geo,
            chan,
            this.producer.index as u64,
            this.owned,
            this.len as u64,
        );
        chan.data_bell().ring();
        r.map_err(SendError::Corrupt)
    }

    /// Shortens the message to `len` bytes (no effect if longer than it is).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The message as a `T`, if it is exactly `size_of::<T>()` bytes (payloads are
    /// 64-byte aligned, so any `T` of alignment up to 64 fits).
    pub fn pod_mut<T: Pod>(&mut self) -> Option<&mut T> {
        bytemuck::try_from_bytes_mut(&mut self[..]).ok()
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = self.producer.chan.payload(self.owned.slot, self.len);
        // SAFETY: `payload` checked that `len` bytes at the slot's payload lie in the
        // mapping (`len <= slot size`, checked by `loan_with`). The slot's state
        // word names this producer as its writer (`mpmc_ring::claim`): no consumer
        // reads it and no other producer writes it until `send`; the loan borrows
        // the producer mutably, so nothing else in this process touches it.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self.producer.chan.payload(self.owned.slot, self.len);
        // SAFETY: as in `deref`; the mapping is read-write (`Words::new` checked).
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let chan = &self.producer.chan;
        mpmc_ring::cancel(chan.geo, chan, self.producer.index as u64, self.owned);
        // A consumer waiting at this position skips it now.
        chan.data_bell().ring();
    }
}

/// A consuming end of an mpmc queue.
pub struct Consumer {
    chan: Chan,
    index: usize,
    peer_check: RefCell<Every>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Consumer")
            .field("name", &self.chan.map.name)
            .field("index", &self.index)
            .finish()
    }
}

impl Consumer {
    /// Live producers attached now.
    pub fn producers(&self) -> usize {
        self.chan.live(ROLE_PRODUCER)
    }

    /// Live consumers attached now.
    pub fn consumers(&self) -> usize {
        self.chan.live(ROLE_CONSUMER)
    }

    /// Creates a queue (see [`Producer::create`]) and attaches a consumer.
    ///
    /// # Errors
    /// As [`Options::create_consumer`].
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_consumer(name)
    }

    /// Opens an existing queue and attaches a consumer.
    ///
    /// # Errors
    /// As [`Producer::open`].
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        let index = chan.register(ROLE_CONSUMER)?;
        Ok(Self {
            chan,
            index,
            peer_check: RefCell::new(Every::new(PEER_CHECK)),
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    fn sample(&self, o: Owned) -> Sample<'_> {
        Sample {
            cons: self,
            ptr: self.chan.payload(o.slot, o.len as usize),
            owned: o,
        }
    }

    fn attempt(&self, deep: bool) -> Option<Result<Sample<'_>, RecvError>> {
        let chan = &self.chan;
        let me = self.index as u64;
        let take = || mpmc_ring::take(chan.geo, chan, me, |ep| deep && chan.dead(ep));
        match take() {
            Ok(Found::Got(o)) => return Some(Ok(self.sample(o))),
            Err(c) => return Some(Err(RecvError::Corrupt(c))),
            Ok(Found::Freed) => chan.space_bell().ring(),
            Ok(Found::None) => {}
        }
        if deep && self.peer_check.borrow_mut().due() && chan.all_gone(ROLE_PRODUCER) {
            // Look once more: the last producer may have sent just before leaving.
            return Some(match take() {
                Ok(Found::Got(o)) => Ok(self.sample(o)),
                Ok(_) => Err(RecvError::Disconnected),
                Err(c) => Err(RecvError::Corrupt(c)),
            });
        }
        None
    }

    fn next(&self, deadline: Deadline) -> Result<Sample<'_>, RecvError> {
        if let Some(r) = self.attempt(false) {
            return r;
        }
        if deadline == Deadline::Now {
            return self.attempt(true).unwrap_or(Err(RecvError::Empty));
        };
        self.chan
            .data_bell()
            .wait_for(deadline, |deep| self.attempt(deep))
            .unwrap_or(Err(RecvError::Empty))
    }

    /// The next message, read in place, without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`] (producers attached, none
    /// is left, and the queue is empty), [`RecvError::Corrupt`].
    pub fn try_recv(&self) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::Now)
    }

    /// The next message, read in place, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], without `Empty`.
    pub fn recv(&self) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::Never)
    }

    /// The next message, read in place, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`]; `Empty` when nothing came in time.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::after(timeout))
    }

    /// Copies the next message into `buf` (replacing its contents) and releases
    /// its slot, without waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    pub fn try_recv_into(&self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        copy(self.try_recv()?, buf);
        Ok(())
    }

    /// As [`Consumer::try_recv_into`], waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv_into(&self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        copy(self.recv()?, buf);
        Ok(())
    }

    /// As [`Consumer::try_recv_into`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    pub fn recv_into_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        copy(self.recv_timeout(timeout)?, buf);
        Ok(())
    }
}

fn copy(s: Sample<'_>, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&s);
}

/// Async receives: the try-call plus an async wait on the data bell.
impl Consumer {
    /// The next message, read in place, as a future: [`Consumer::recv`] without
    /// blocking a thread.
    ///
    /// Cancel-safe: a message is taken only by the poll that completes the future;
    /// dropping it while pending takes nothing (another consumer gets the message).
    ///
    /// The future borrows the consumer, which is `Send` but not `Sync`, so it is
    /// not `Send`: await it on a current-thread runtime or a local task set, or use
    /// [`Consumer::recv_into_async`], whose future is.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv_async(&self) -> Result<Sample<'_>, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            self.chan
                .data_bell()
                .poll_async(&mut pending, cx, || self.attempt(true))
        })
        .await
    }

    /// As [`Consumer::recv_into`], as a future: the message is copied into `buf`
    /// (replacing its contents) and its slot released when it completes.
    ///
    /// Takes `&mut self` so that the future is `Send` (for multi-threaded
    /// runtimes); cancel-safe like [`Consumer::recv_async`].
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let this = &mut *self;
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(move |cx| {
            let words = this.chan.words;
            let bell = words.bell(offset_of!(Control, data_bell));
            bell.poll_async(&mut pending, cx, || {
                this.attempt(true).map(|r| r.map(|s| copy(s, buf)))
            })
        })
        .await
    }
}

/// The WaitSet protocol: sleep on the data bell (see `crate::waitset`).
impl crate::waitset::sealed::Sealed for Consumer {
    fn announce(&mut self) -> (bool, u32) {
        (true, self.chan.data_bell().announce())
    }

    fn disarm(&mut self, token: u32) {
        self.chan.data_bell().take_back(token);
    }

    /// Ready when a take would find something (`mpmc_ring::head`: a message, a
    /// slot to skip, words to report), the head's loan is a dead producer's, or
    /// every producer is gone.
    fn arm(&mut self, token: u32) -> crate::waitset::Arm<'_> {
        let chan = &self.chan;
        let check = &self.peer_check;
        chan.data_bell().arm(token, || {
            let loaned = match mpmc_ring::head(chan.geo, chan) {
                mpmc_ring::Head::Ready => return true,
                mpmc_ring::Head::Empty => None,
                mpmc_ring::Head::Loaned(ep) => Some(ep),
            };
            let mut check = check.borrow_mut();
            if check.due()
                && (loaned.is_some_and(|ep| chan.dead(ep)) || chan.all_gone(ROLE_PRODUCER))
            {
                // Let the receive that follows look at once.
                check.force();
                true
            } else {
                false
            }
        })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Samples borrow the consumer: none is held now.
        self.chan.record(self.index).0.leave();
        self.chan.space_bell().ring_always();
    }
}

/// A received message, read in place in the queue's shared memory. Its slot stays
/// this consumer's (no correct producer writes it) until the sample is dropped;
/// see the module doc for what a hostile peer can do.
pub struct Sample<'a> {
    cons: &'a Consumer,
    ptr: *const u8,
    owned: Owned,
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Sample")
            .field("slot", &self.owned.slot)
            .field("bytes", &self.deref())
            .finish()
    }
}

impl Sample<'_> {
    /// The message as a `T`, if it is exactly `size_of::<T>()` bytes.
    pub fn pod<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the message out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Sample<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at the `len` (<= slot size, checked by
        // `mpmc_ring::take`) payload bytes of a slot inside the mapping
        // (`Words::bytes` checked). The slot's state word names this consumer as
        // its reader until this sample drops, and no correct producer writes a
        // slot in that state (`mpmc_ring.rs`); what an incorrect one can do is
        // documented on the module (the zero-copy contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.owned.len as usize) }
    }
}

impl AsRef<[u8]> for Sample<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

bytes_eq!(Sample);

impl Drop for Sample<'_> {
    #[inline]
    fn drop(&mut self) {
        let chan = &self.cons.chan;
        // An error means the slot was taken from us (corrupt memory): nothing to
        // give back.
        let _ = mpmc_ring::release(chan.geo, chan, self.cons.index as u64, self.owned);
        chan.space_bell().ring();
    }
}

/// For `channel::fuzzing`: endpoints over one mapping made once per process,
/// through every check an open makes (`Mapped::again`).
impl Producer {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }

    pub(super) fn fuzz_mapped(&self) -> &Mapped {
        &self.chan.map
    }

    /// Where the slots start.
    pub(super) fn fuzz_slots_at(&self) -> usize {
        self.chan.slots
    }
}

impl Consumer {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }
}
