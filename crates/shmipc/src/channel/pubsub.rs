//! Publish/subscribe channels with zero-copy samples: one [`Publisher`], up to a
//! bound of [`Subscriber`]s fixed at creation, each with its own cursor.
//!
//! The publisher *loans* a chunk of the channel's shared memory, writes the sample
//! in place and sends it; every subscriber receives a [`Sample`] that reads the same
//! bytes in place (no copy by the channel), and the chunk goes back to the pool
//! when the last subscriber that received it drops its sample.
//!
//! ```
//! use shmipc::channel::pubsub::{Options, Overflow, Subscriber};
//! # let name = format!("doc-pubsub-{}", std::process::id());
//! let mut publisher = Options::new()
//!     .capacity(64)
//!     .slot_size(4096)
//!     .overflow(Overflow::Block)
//!     .create_publisher(&name)?;
//! let a = Subscriber::open(&name)?; // usually other processes
//! let b = Subscriber::open(&name)?;
//!
//! let mut loan = publisher.loan(5)?; // a chunk of shared memory, ours alone
//! loan.copy_from_slice(b"frame"); // or fill it in place: a camera, a decoder...
//! loan.send(); // its offset goes to every subscriber
//!
//! let sa = a.recv()?; // read in place: `&*sa` points into the chunk
//! let sb = b.recv()?;
//! assert_eq!((&*sa, &*sb), (&b"frame"[..], &b"frame"[..]));
//! drop((sa, sb)); // the last release returns the chunk to the pool
//!
//! // Plain-data types in place, and the copying conveniences:
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Tick { price: f64, qty: u64 }
//! let mut loan = publisher.loan_pod::<Tick>()?;
//! *loan.pod_mut::<Tick>().unwrap() = Tick { price: 1.5, qty: 3 };
//! loan.send();
//! assert_eq!(a.recv()?.pod::<Tick>().unwrap().qty, 3);
//! publisher.send(b"copied in")?;
//! let mut buf = Vec::new();
//! a.recv_into(&mut buf)?; // the Tick sample above was dropped: its hold is free
//! assert_eq!(buf, b"copied in");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * **Overflow.** [`Overflow::Block`]: the publisher waits (in `loan`) until every
//!   live subscriber has *started* the message whose ring entry the next one reuses.
//!   [`Overflow::Overwrite`]: the publisher never waits; it moves a lagging
//!   subscriber past the oldest messages it has not started (never one it holds) and
//!   the subscriber is told how many it lost ([`Sample::lost`]).
//! * **History.** The publisher keeps the last [`Options::history`] messages for
//!   late joiners ([`Subscriber::open_with_history`]).
//! * **Holding.** A subscriber may hold up to [`Options::max_held`] samples at once;
//!   receiving one more is [`RecvError::TooManyHeld`]. Held samples never stop the
//!   publisher: the pool has a chunk for every message in the ring, every hold and
//!   the loan.
//! * **Peer death.** A subscriber that dies (even by SIGKILL) has its place, its
//!   queued messages and its held samples given back when the publisher notices
//!   (within milliseconds when it matters); a publisher that dies leaves its loan
//!   free for the next one, which picks up the numbering, the ring and the pool
//!   where it stopped; subscribers' receives return [`RecvError::Disconnected`] once
//!   they have read everything the dead one sent, and messages again when a new
//!   one publishes.
//! * **Sizes.** A chunk holds up to [`Options::slot_size`] bytes; a larger loan fails
//!   with [`SendError::TooLarge`] naming both sizes.
//!
//! # What a buggy or hostile peer can and cannot do to a reader
//!
//! A [`Sample`] is a `&[u8]` (or `&T` of a `bytemuck::Pod` type) over shared memory.
//! The protocol guarantees that no *correct* publisher writes a chunk while any
//! subscriber holds it (`pubsub_pool.rs` explains why). A process that maps the
//! segment and ignores the protocol can still write those bytes while you read
//! them: you may then see any bytes, even bytes that change between two reads. It
//! cannot make shmipc read or write outside the segment, hand you a sample longer
//! than a chunk, panic, loop forever or wait past your timeout: every index, count
//! and length read from the shared memory is validated first, and an impossible
//! one is [`RecvError::Corrupt`] (never a silently deaf subscriber). Validate what
//! you parse out of a sample as you would data from a socket; if you must be sure
//! the bytes do not change under you, copy them ([`Subscriber::recv_into`]).
//!
//! # Layout of the segment
//!
//! The `#[repr(C)]` structs `Control` (the first 320 bytes, layout header
//! included), `SubRecord` and `ChunkHeader` (in this file), checked by the
//! compiler:
//!
//! ```text
//!   0  layout header (kind pubsub; params: capacity | max subscribers << 32,
//!      chunk size | overflow << 32 | max held << 40 | kept history << 48,
//!      type size | align << 32, type hash)
//!  64  publisher token, attaches
//! 128  head: messages published                       (publisher writes)
//! 192  data bell: seq, sleepers                       (subscribers sleep)
//! 256  space bell: seq, sleepers                      (publisher sleeps)
//! 320  subscriber records, R bytes each (a multiple of 64): SubRecord (token,
//!      attaches, cursor), then max-held hold slots
//!  E   ring entries: capacity words, the chunk of message n at n % capacity
//!  C   chunks (C page-aligned), stride 64 + chunk size rounded up to 64:
//!      ChunkHeader (seq, len), then the payload at +64
//! ```
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fmt;
use std::mem::offset_of;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use crate::deadline::Deadline;
use crate::layout::{Header, HeaderWords, Kind, LayoutError};
use crate::segment::Persistence;

use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::pubsub_pool::{self, Geometry, PoolMem, PublisherCore, SubscriberCore, Take, FREE};
use super::shared::{
    self, line_up, Bad, BellWords, Common, How, Mapped, MsgType, PeerWords, Rule, Words,
};
use super::shim::AtomicU64;
use super::{ChannelError, Corrupt, RecvError, SendError, TrySendError};

/// The words before the subscriber records. Fields that different sides write
/// sit on their own cache lines.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Control {
    /// The layout header (`layout.rs`).
    pub(crate) header: HeaderWords,
    /// The publisher's registration.
    pub(crate) publisher: PeerWords,
    _publisher_line: [u64; 6],
    /// Messages published (the publisher writes it).
    pub(crate) head: u64,
    _head_line: [u64; 7],
    /// Bell subscribers sleep on.
    pub(crate) data_bell: BellWords,
    _data_line: [u32; 14],
    /// Bell the publisher sleeps on.
    pub(crate) space_bell: BellWords,
    _space_line: [u32; 14],
}

/// The fixed words of a subscriber record; its hold slots (one `u64` each) follow,
/// and the record is padded to a multiple of 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SubRecord {
    /// The subscriber's registration.
    pub(crate) peer: PeerWords,
    /// The next message it reads.
    pub(crate) cursor: u64,
}

/// The words before each chunk's payload.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkHeader {
    /// Which message the chunk holds (`pubsub_pool.rs`).
    seq: u64,
    /// Payload bytes.
    len: u64,
    _pad: [u64; 6],
}

const _: () = {
    assert!(size_of::<Control>() == 320);
    assert!(offset_of!(Control, publisher) == 64);
    assert!(offset_of!(Control, head) == 128);
    assert!(offset_of!(Control, data_bell) == 192);
    assert!(offset_of!(Control, space_bell) == 256);
    assert!(size_of::<SubRecord>() == 24);
    assert!(offset_of!(SubRecord, peer) == 0);
    assert!(offset_of!(SubRecord, cursor) == 16);
    assert!(size_of::<ChunkHeader>() == 64);
    assert!(offset_of!(ChunkHeader, seq) == 0);
    assert!(offset_of!(ChunkHeader, len) == 8);
};

/// Where the subscriber records start.
pub(crate) const SUBS_AT: usize = size_of::<Control>();
/// Bytes of a subscriber record before its hold slots.
const REC_FIXED: usize = size_of::<SubRecord>();
const CHUNK_HEADER: usize = size_of::<ChunkHeader>();
const MAX_SLOT: u64 = 1 << 31;
const MAX_CAPACITY: u64 = 1 << 31;
const MAX_SUBSCRIBERS: u64 = 1024;
const MAX_HELD: u64 = 64;
const MAX_KEEP: u64 = 0xffff;
const PEER_CHECK: Duration = Duration::from_millis(10);

pub use crate::vocab::Overflow;

/// Settings for creating a pubsub channel.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    capacity: u64,
    slot_size: u64,
    max_subscribers: u64,
    max_held: u64,
    overflow: Overflow,
    history: u64,
    common: Common,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: a ring of 256 messages, chunks of 1024 bytes, 16 subscribers
    /// holding up to 4 samples each, overwrite, no history.
    pub fn new() -> Self {
        Self {
            capacity: 256,
            slot_size: 1024,
            max_subscribers: 16,
            max_held: 4,
            overflow: Overflow::Overwrite,
            history: 0,
            common: Common::default(),
        }
    }

    /// Messages the ring holds, rounded up to a power of two (2 to 2^31).
    pub fn capacity(mut self, slots: usize) -> Self {
        self.capacity = slots as u64;
        self
    }

    /// Largest sample (a chunk's payload) in bytes (at most 2^31).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes as u64;
        self
    }

    /// Most subscribers at a time (1 to 1024).
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n as u64;
        self
    }

    /// Most samples one subscriber may hold at once (1 to 64). The pool has
    /// `capacity + max_subscribers * max_held + 1` chunks.
    pub fn max_held(mut self, n: usize) -> Self {
        self.max_held = n as u64;
        self
    }

    /// What a full ring does to the publisher.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Messages the publisher keeps for late joiners (at most capacity - 1 and
    /// 65535; default 0), who ask for them with
    /// [`Subscriber::open_with_history`]. Kept messages live in the ring: they cost
    /// no extra memory and never hold the publisher up.
    pub fn history(mut self, messages: usize) -> Self {
        self.history = messages as u64;
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

    /// Creates the channel and attaches as its publisher.
    ///
    /// # Errors
    /// [`ChannelError::Create`] if the name exists or is invalid,
    /// [`ChannelError::InvalidParameter`] for bad sizes.
    pub fn create_publisher(&self, name: &str) -> Result<Publisher, ChannelError> {
        Publisher::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the channel or opens it (then its own parameters apply) and attaches
    /// as its publisher.
    ///
    /// # Errors
    /// As [`Options::create_publisher`] and [`Publisher::open`].
    pub fn create_or_open_publisher(&self, name: &str) -> Result<Publisher, ChannelError> {
        Publisher::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }

    /// Creates the channel or opens it and attaches as a subscriber, starting with
    /// the next message published.
    ///
    /// # Errors
    /// As [`Options::create_publisher`] and [`Subscriber::open`].
    pub fn create_or_open_subscriber(&self, name: &str) -> Result<Subscriber, ChannelError> {
        self.create_or_open_subscriber_with_history(name, 0)
    }

    /// As [`Options::create_or_open_subscriber`], starting up to `history`
    /// messages back if the publisher kept them.
    ///
    /// # Errors
    /// As [`Options::create_or_open_subscriber`].
    pub fn create_or_open_subscriber_with_history(
        &self,
        name: &str,
        history: usize,
    ) -> Result<Subscriber, ChannelError> {
        Subscriber::attach(Chan::get(name, How::CreateOrOpen, self)?, history as u64)
    }

    /// Checks the settings without creating anything.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] naming the setting out of range.
    pub fn validate(&self, name: &str) -> Result<(), ChannelError> {
        self.params(name).map(|_| ())
    }

    fn params(&self, name: &str) -> Result<Params, ChannelError> {
        let invalid = |b: Bad| b.invalid(name);
        let capacity = CAPACITY.option(self.capacity).map_err(invalid)?;
        let p = Params {
            capacity,
            slot_size: self.slot_size,
            max_subscribers: self.max_subscribers,
            max_held: self.max_held,
            overflow: self.overflow,
            keep: self.history.min(capacity - 1).min(MAX_KEEP),
        };
        p.check().map_err(invalid)?;
        Ok(p)
    }
}

/// Capacity: messages in the ring.
const CAPACITY: Rule = Rule {
    what: "capacity",
    header: "capacity (not a power of two from 2 to 2^31)",
    reason: "it must be 1 to 2^31 messages",
    min: 2,
    max: MAX_CAPACITY,
    pow2: true,
};

/// Slot size: the largest sample.
const SLOT_SIZE: Rule = Rule {
    what: "slot size",
    header: "slot size (over 2^31)",
    reason: "it must be at most 2^31 bytes",
    min: 0,
    max: MAX_SLOT,
    pow2: false,
};

/// Subscriber places.
const SUBSCRIBERS: Rule = Rule {
    what: "max subscribers",
    header: "max subscribers (not 1 to 1024)",
    reason: "it must be 1 to 1024",
    min: 1,
    max: MAX_SUBSCRIBERS,
    pow2: false,
};

/// Samples one subscriber may hold.
const HELD: Rule = Rule {
    what: "max held samples",
    header: "max held samples (not 1 to 64)",
    reason: "it must be 1 to 64",
    min: 1,
    max: MAX_HELD,
    pow2: false,
};

/// The layout parameters of a pubsub channel (header words 0 and 1; 2 and 3, the
/// message type, are those of bytes). Checked by [`Params::check`] alone, for a creator's options
/// and for a header ([`validate`]): a creator cannot make what an opener refuses,
/// and `shmipc info` refuses what an opener does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) max_subscribers: u64,
    pub(crate) max_held: u64,
    pub(crate) overflow: Overflow,
    pub(crate) keep: u64,
}

/// Where the parts of a pubsub segment are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    /// Bytes of a subscriber record.
    pub(crate) rec: u64,
    entries: u64,
    chunks_off: u64,
    stride: u64,
    chunks: u32,
    /// Bytes of the whole channel.
    pub(crate) size: u64,
}

impl Params {
    /// The layout; None on overflow.
    fn sizes(&self) -> Option<Sizes> {
        let rec = line_up((REC_FIXED as u64).checked_add(self.max_held.checked_mul(8)?)?)?;
        let entries = (SUBS_AT as u64).checked_add(self.max_subscribers.checked_mul(rec)?)?;
        let chunks_off = entries
            .checked_add(self.capacity.checked_mul(8)?)?
            .checked_add(4095)?
            & !4095;
        let stride = (CHUNK_HEADER as u64).checked_add(line_up(self.slot_size)?)?;
        let chunks = Geometry::chunks_for(self.capacity, self.max_subscribers, self.max_held)?;
        let size = stride
            .checked_mul(u64::from(chunks))?
            .checked_add(chunks_off)?;
        (size <= isize::MAX as u64).then_some(Sizes {
            rec,
            entries,
            chunks_off,
            stride,
            chunks,
            size,
        })
    }

    /// Checks every parameter against its rule, and lays the channel out.
    fn check(&self) -> Result<Sizes, Bad> {
        CAPACITY.check(self.capacity)?;
        SLOT_SIZE.check(self.slot_size)?;
        SUBSCRIBERS.check(self.max_subscribers)?;
        HELD.check(self.max_held)?;
        if self.keep >= self.capacity {
            return Err(Bad::header(
                "kept history (not below the capacity)",
                self.keep,
            ));
        }
        self.sizes().ok_or(Bad {
            what: "capacity x slot size",
            header: "pool size",
            reason: "the pool would not fit in memory",
            value: self.capacity,
        })
    }

    fn pack(&self) -> [u64; 4] {
        let msg = MsgType::BYTES;
        let overflow = match self.overflow {
            Overflow::Overwrite => 0u64,
            Overflow::Block => 1,
        };
        [
            self.capacity | (self.max_subscribers << 32),
            self.slot_size | (overflow << 32) | (self.max_held << 40) | (self.keep << 48),
            msg.packed(),
            msg.hash,
        ]
    }

    /// Reads the parameters of a header (unchecked: [`Params::check`]).
    fn unpack([p0, p1, ..]: [u64; 4]) -> Result<Self, Bad> {
        let overflow = match (p1 >> 32) & 0xff {
            0 => Overflow::Overwrite,
            1 => Overflow::Block,
            v => return Err(Bad::header("overflow policy", v)),
        };
        Ok(Self {
            capacity: p0 & 0xffff_ffff,
            slot_size: p1 & 0xffff_ffff,
            max_subscribers: p0 >> 32,
            max_held: (p1 >> 40) & 0xff,
            overflow,
            keep: p1 >> 48,
        })
    }
}

/// Validates a pubsub header's parameters (its message type words those of
/// bytes) and that `len` bytes (of the segment, from the channel's start) hold the
/// layout they describe: the one check of an opening endpoint and of `shmipc info`
/// (`channel::inspect`).
///
/// # Errors
/// [`LayoutError::Mismatch`] naming the parameter out of range,
/// [`LayoutError::TooSmall`] for a segment too small for them.
pub(crate) fn validate(params: [u64; 4], len: usize) -> Result<(Params, Sizes), LayoutError> {
    let [.., packed, hash] = params;
    MsgType::BYTES.check(Kind::PubSub, packed, hash)?;
    let bad = |b: Bad| b.layout(Kind::PubSub);
    let p = Params::unpack(params).map_err(bad)?;
    let s = p.check().map_err(bad)?;
    shared::fits("pubsub pool", s.size, len)?;
    Ok((p, s))
}

/// A mapped and validated pubsub segment.
#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    /// The header parameters this endpoint's geometry comes from.
    params: [u64; 4],
    geo: Geometry,
    overflow: Overflow,
    rec: usize,
    entries: usize,
    chunks_off: usize,
    stride: usize,
}

impl Chan {
    fn get(name: &str, how: How, opts: &Options) -> Result<Self, ChannelError> {
        let params = opts.params(name)?;
        let create = params.sizes();
        let size = if how == How::Open {
            0
        } else {
            create.map_or(0, |s| s.size)
        };
        let (map, header) = shared::get(
            name,
            how,
            Kind::PubSub,
            &opts.common,
            size,
            params.pack(),
            |view| {
                // Every chunk starts free.
                let Some(s) = create else { return Ok(()) };
                for k in 0..u64::from(s.chunks) {
                    let off = s.chunks_off + k * s.stride;
                    view.write_at(off as usize, &FREE.to_le_bytes())?;
                }
                Ok(())
            },
        )?;
        Self::checked(name, map, header, opts)
    }

    /// For `channel::fuzzing`: the same checks as an open, over `map` again.
    fn again(map: &Mapped, opts: &Options) -> Result<Self, ChannelError> {
        let (map, header) = map.again(Kind::PubSub)?;
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
        let words = map.words(Kind::PubSub, s.size).map_err(layout)?;
        Ok(Self {
            map,
            words,
            params: header.params,
            geo: Geometry {
                capacity: found.capacity,
                chunks: s.chunks,
                chunk_size: found.slot_size as u32,
                max_subscribers: found.max_subscribers as u32,
                max_held: found.max_held as u32,
                keep: found.keep,
            },
            overflow: found.overflow,
            rec: s.rec as usize,
            entries: s.entries as usize,
            chunks_off: s.chunks_off as usize,
            stride: s.stride as usize,
        })
    }

    /// The header parameters now, if they differ from those this endpoint
    /// attached with: an endpoint attaching now would lay the ring and the pool out
    /// otherwise, and its messages would never meet ours.
    fn params_changed(&self) -> Option<u64> {
        (0..4).find_map(|i| {
            let now = self
                .words
                .u64(offset_of!(Control, header) + offset_of!(HeaderWords, params) + 8 * i)
                .load(Ordering::Relaxed);
            (now != self.params[i]).then_some(now)
        })
    }

    fn publisher(&self) -> Place<'_> {
        self.words
            .place(offset_of!(Control, publisher), self.map.view.liveness())
    }

    /// Where subscriber record `s` starts.
    #[inline]
    fn sub_off(&self, s: usize) -> usize {
        SUBS_AT + s * self.rec
    }

    fn subscriber(&self, i: usize) -> Place<'_> {
        self.words.place(
            self.sub_off(i) + offset_of!(SubRecord, peer),
            self.map.view.liveness(),
        )
    }

    fn data_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, data_bell))
    }

    fn space_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, space_bell))
    }

    /// The payload of chunk `k` (`k < chunks`, `len <= chunk size`).
    #[inline]
    fn payload(&self, k: u32, len: usize) -> *mut u8 {
        self.words.bytes(
            self.chunks_off + k as usize * self.stride + CHUNK_HEADER,
            len,
        )
    }

    /// Live subscribers now (a SIGKILLed one counts until noticed).
    fn subscribers(&self) -> usize {
        (0..self.geo.max_subscribers as usize)
            .filter(|&i| self.subscriber(i).token.load(Ordering::Relaxed) != 0)
            .count()
    }
}

impl PoolMem for Chan {
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.words.u64(offset_of!(Control, head))
    }
    #[inline]
    fn entry(&self, i: usize) -> &AtomicU64 {
        self.words.u64(self.entries + 8 * i)
    }
    #[inline]
    fn seq(&self, k: usize) -> &AtomicU64 {
        self.words
            .u64(self.chunks_off + k * self.stride + offset_of!(ChunkHeader, seq))
    }
    #[inline]
    fn len(&self, k: usize) -> &AtomicU64 {
        self.words
            .u64(self.chunks_off + k * self.stride + offset_of!(ChunkHeader, len))
    }
    #[inline]
    fn token(&self, s: usize) -> &AtomicU64 {
        self.words
            .u64(self.sub_off(s) + offset_of!(SubRecord, peer) + offset_of!(PeerWords, token))
    }
    #[inline]
    fn cursor(&self, s: usize) -> &AtomicU64 {
        self.words
            .u64(self.sub_off(s) + offset_of!(SubRecord, cursor))
    }
    #[inline]
    fn hold(&self, s: usize, j: usize) -> &AtomicU64 {
        self.words.u64(self.sub_off(s) + REC_FIXED + 8 * j)
    }
}

/// The publishing end of a pubsub channel.
pub struct Publisher {
    chan: Chan,
    core: PublisherCore,
    /// Messages up to this number may be published without looking at the
    /// subscribers' cursors again.
    free_until: u64,
    peer_check: Every,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.chan.map.name)
            .field("capacity", &self.chan.geo.capacity)
            .field("slot_size", &self.chan.geo.chunk_size)
            .field("overflow", &self.chan.overflow)
            .field("next", &self.core.head())
            .finish()
    }
}

impl Publisher {
    /// Creates a channel of `capacity` messages of up to `slot_size` bytes
    /// (overwrite mode, 16 subscribers; see [`Options`]) and attaches as its
    /// publisher.
    ///
    /// # Errors
    /// As [`Options::create_publisher`].
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_publisher(name)
    }

    /// Opens an existing byte pubsub channel and attaches as its publisher.
    ///
    /// # Errors
    /// [`ChannelError::Open`] if it does not exist, [`ChannelError::Layout`] if it is
    /// not a byte pubsub channel, [`ChannelError::Busy`] if a live publisher holds it,
    /// [`ChannelError::Corrupt`] if its message count is impossible.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        if let Claim::Held(pid) = chan.publisher().claim() {
            return Err(ChannelError::Busy {
                name: chan.map.name.clone(),
                role: "publisher",
                pid,
            });
        }
        let core = match PublisherCore::attach(chan.geo, &chan) {
            Ok(c) => c,
            Err(source) => {
                chan.publisher().leave();
                return Err(ChannelError::Corrupt {
                    name: chan.map.name.clone(),
                    source,
                });
            }
        };
        let mut p = Self {
            free_until: core.head(),
            chan,
            core,
            peer_check: Every::new(PEER_CHECK),
        };
        p.reclaim(true);
        Ok(p)
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// Messages the ring holds.
    pub fn capacity(&self) -> usize {
        self.chan.geo.capacity as usize
    }

    /// Largest sample, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.chunk_size as usize
    }

    /// The overflow policy the channel was created with.
    pub fn overflow(&self) -> Overflow {
        self.chan.overflow
    }

    /// Live subscribers now (a SIGKILLed one counts until noticed).
    pub fn subscribers(&self) -> usize {
        self.chan.subscribers()
    }

    /// Whether the channel's name still names the channel this publisher
    /// publishes on: `Some(false)` once it was removed, even where a new channel
    /// has taken the name since (subscribers that open the name then read that
    /// one, never what this publisher sends). `None` where the OS cannot tell; see
    /// [`Segment::is_still_named`](crate::Segment::is_still_named).
    pub fn is_still_named(&self) -> Option<bool> {
        self.chan.map.view.is_still_named()
    }

    /// The number the next message will have (messages are numbered from 0 in
    /// publishing order since the channel was created; a new publisher goes on).
    pub fn next_seq(&self) -> u64 {
        self.core.head()
    }

    /// Chunks in the pool.
    pub fn pool_chunks(&self) -> usize {
        self.chan.geo.chunks as usize
    }

    /// Frees every chunk no subscriber can still take or holds (dead subscribers'
    /// places are given back first) and returns the chunks now free: with no
    /// subscriber and no history, the whole pool ([`Publisher::pool_chunks`]).
    pub fn free_chunks(&mut self) -> usize {
        self.reclaim(true)
    }

    /// Frees what can be freed; with `reap`, first gives back the places of dead
    /// subscribers (their holds and cursors then stop counting).
    fn reclaim(&mut self, reap: bool) -> usize {
        if reap {
            for i in 0..self.chan.geo.max_subscribers as usize {
                let place = self.chan.subscriber(i);
                let tok = place.token.load(Ordering::Acquire);
                if tok != 0 && !peer::alive(place.scope, tok) {
                    // Dead: free its place (unless it changed hands meanwhile).
                    let _ =
                        place
                            .token
                            .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
        self.core.reclaim(&self.chan, |_| true)
    }

    /// Whether the next message may be published: in block mode, no live
    /// subscriber has still to start the message whose entry it reuses (with
    /// `reap`, dead ones that hold it up are given back); in overwrite mode, such
    /// subscribers are moved on. Rescans the cursors when the cached bound is
    /// reached, and at least every half ring so that a subscriber that joined since
    /// is taken into account.
    fn make_room(&mut self, reap: bool) -> bool {
        let head = self.core.head();
        if head < self.free_until {
            return true;
        }
        let cap = self.chan.geo.capacity;
        let mut until = head.wrapping_add((cap / 2).max(1));
        let mut blocked = false;
        for i in 0..self.chan.geo.max_subscribers as usize {
            let place = self.chan.subscriber(i);
            let tok = place.token.load(Ordering::Acquire);
            if tok == 0 {
                continue;
            }
            let cursor = self.chan.cursor(i);
            // Acquire pairs with the subscriber's cursor CAS (AcqRel).
            let mut c = cursor.load(Ordering::Acquire);
            if self.core.blocks(c) {
                if self.chan.overflow == Overflow::Overwrite {
                    // Skip it past messages it has not started; it counts them as
                    // lost. A failed CAS means it took one meanwhile: look again.
                    for _ in 0..4 {
                        if !self.core.blocks(c) {
                            break;
                        }
                        match cursor.compare_exchange(
                            c,
                            self.core.oldest_after_next(),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                c = self.core.oldest_after_next();
                                break;
                            }
                            Err(now) => c = now,
                        }
                    }
                    if self.core.blocks(c) {
                        blocked = true;
                        continue;
                    }
                } else if reap && !peer::alive(self.chan.map.view.liveness(), tok) {
                    let _ =
                        place
                            .token
                            .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed);
                    continue;
                } else {
                    blocked = true;
                    continue;
                }
            }
            if head.wrapping_sub(c) < cap {
                until = until.min(c.wrapping_add(cap));
            }
        }
        if blocked {
            return false;
        }
        self.free_until = until;
        true
    }

    /// Room for the next message of `len` bytes and a free chunk, or None.
    fn ready(&mut self, reap: bool, len: usize) -> Option<u32> {
        if !self.make_room(reap) {
            return None;
        }
        // Large chunks: reclaim before taking, so that the chunk freed last (its
        // pages mapped and warm in both processes' caches) is loaned next (the free
        // list is LIFO). Reclaiming only when the free list runs dry cycles through
        // every chunk of the pool instead (73 MiB for 1 MiB chunks with the default
        // 16 subscribers x 4 held + capacity 8 + 1): a working set far past the
        // caches, and first-touch page faults on both sides for each of them. The
        // scan (subscriber places and holds) is noise next to such a chunk; small
        // chunks keep the cheaper reclaim-when-dry. So do small messages in large
        // chunks: they touch a line or two of a chunk, not its pages, and a scan per
        // message would be most of their cost.
        if self.chan.geo.chunk_size >= EAGER_RECLAIM_CHUNK && len >= EAGER_RECLAIM_LEN {
            self.reclaim(reap);
        }
        if let Some(k) = self.core.take() {
            return Some(k);
        }
        self.reclaim(reap);
        self.core.take()
    }

    fn loan_with(&mut self, len: usize, deadline: Deadline) -> Result<Loan<'_>, SendError> {
        if len > self.slot_size() {
            return Err(SendError::TooLarge {
                len,
                max: self.slot_size(),
            });
        }
        // Four words on a line nobody writes: a subscriber that attached after
        // something rewrote them would be deaf to everything we publish.
        if let Some(value) = self.chan.params_changed() {
            return Err(SendError::Corrupt(Corrupt {
                what: "pubsub header parameters (changed since the publisher attached)",
                value,
            }));
        }
        let chunk = match self.ready(false, len) {
            Some(k) => k,
            None => {
                let reap_now = self.peer_check.due();
                match self.ready(reap_now, len) {
                    Some(k) => k,
                    None => {
                        if deadline == Deadline::Now {
                            return Err(SendError::Timeout(()));
                        };
                        // A copy of the word accessor, so the bell does not borrow `self`.
                        let words = self.chan.words;
                        let bell = words.bell(offset_of!(Control, space_bell));
                        let got = bell.wait_for(deadline, |deep| {
                            let reap = deep && self.peer_check.due();
                            self.ready(reap, len)
                        });
                        got.ok_or(SendError::Timeout(()))?
                    }
                }
            }
        };
        Ok(Loan {
            publisher: self,
            chunk,
            len,
        })
    }

    /// Loans a chunk for a sample of `len` bytes, waiting as long as it takes for
    /// room in block mode. The loan's bytes are those of an earlier sample (never
    /// uninitialised memory, never zeroed: overwrite what you send).
    ///
    /// # Errors
    /// [`SendError::TooLarge`] naming both sizes.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::Never)
    }

    /// As [`Publisher::loan`], without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] (block mode: a live subscriber has not started the
    /// oldest message), [`TrySendError::TooLarge`].
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, TrySendError> {
        self.loan_with(len, Deadline::Now).map_err(try_error)
    }

    /// As [`Publisher::loan`], waiting up to `timeout`.
    ///
    /// # Errors
    /// [`SendError::Timeout`], [`SendError::TooLarge`].
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::after(timeout))
    }

    /// Loans a chunk sized for one `T` (write it with [`Loan::pod_mut`]).
    ///
    /// # Errors
    /// As [`Publisher::loan`].
    pub fn loan_pod<T: Pod>(&mut self) -> Result<Loan<'_>, SendError> {
        self.loan(size_of::<T>())
    }

    /// Publishes a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Publisher::try_loan`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let mut loan = self.try_loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
    }

    /// Publishes a copy of `msg`, waiting as long as it takes in block mode.
    ///
    /// # Errors
    /// [`SendError::TooLarge`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
    }

    /// Publishes a copy of `msg`, waiting up to `timeout` in block mode.
    ///
    /// # Errors
    /// [`SendError::Timeout`], [`SendError::TooLarge`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let mut loan = self.loan_timeout(msg.len(), timeout)?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
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

impl Chan {
    fn cursor(&self, i: usize) -> &AtomicU64 {
        PoolMem::cursor(self, i)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.chan.publisher().leave();
        self.chan.data_bell().ring_always();
    }
}

/// Chunk size from which the publisher reclaims before every loan (see
/// `Publisher::ready`), reusing the warmest chunk rather than cycling the pool.
const EAGER_RECLAIM_CHUNK: u32 = 64 * 1024;
/// Message size from which that eager reclaim applies (a page: smaller messages
/// touch too little of a chunk for its warmth to matter).
const EAGER_RECLAIM_LEN: usize = 4096;

/// A chunk loaned to the publisher: write the sample in place, then
/// [`Loan::send`] it. While the loan lives, the pool gives this chunk to this
/// process alone. Dropped unsent, the chunk goes back to the pool.
pub struct Loan<'a> {
    publisher: &'a mut Publisher,
    chunk: u32,
    len: usize,
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan")
            .field("chunk", &self.chunk)
            .field("len", &self.len)
            .finish()
    }
}

impl Loan<'_> {
    /// Publishes the sample to every subscriber (by offset: nothing is copied).
    #[inline]
    pub fn send(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        let (chunk, len) = (this.chunk, this.len as u64);
        let p = &mut *this.publisher;
        // Overwrite mode: move lagging subscribers on (never fails there; block
        // mode made room when loaning, and cursors only move forward).
        if !p.make_room(false) {
            let _ = p.make_room(true);
        }
        p.core.publish(&p.chan, chunk, len);
        p.chan.data_bell().ring();
    }

    /// Shortens the sample to `len` bytes (no effect if longer than it is).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The sample as a `T`, if it is exactly `size_of::<T>()` bytes (chunks are
    /// 64-byte aligned, so any `T` of alignment up to 64 fits).
    pub fn pod_mut<T: Pod>(&mut self) -> Option<&mut T> {
        bytemuck::try_from_bytes_mut(&mut self[..]).ok()
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let p = self.publisher.chan.payload(self.chunk, self.len);
        // SAFETY: `payload` checked that `len` bytes at the chunk's payload lie in
        // the mapping (`len <= chunk size`, checked by `loan_with`). The pool gives a
        // chunk off the publisher's private free list to this loan alone: no
        // subscriber holds it (`pubsub_pool.rs`), and the loan borrows the publisher
        // mutably, so nothing else in this process touches it.
        unsafe { std::slice::from_raw_parts(p, self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let p = self.publisher.chan.payload(self.chunk, self.len);
        // SAFETY: as in `deref`; the mapping is read-write (`Words::new` checked).
        unsafe { std::slice::from_raw_parts_mut(p, self.len) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        self.publisher.core.put_back(self.chunk);
    }
}

/// A subscribing end of a pubsub channel.
pub struct Subscriber {
    joined: Arc<Joined>,
    core: SubscriberCore,
    peer_check: RefCell<Every>,
}

/// What a subscriber shares with its [`OwnedSample`]s: the mapping and the place it
/// joined at, left when the last of them is dropped.
struct Joined {
    chan: Chan,
    index: usize,
    /// Hold slots (bit `j`) that owned samples released, not yet seen by the
    /// subscriber (its own record of the slots in use is not shared).
    returned: std::sync::atomic::AtomicU64,
}

impl Drop for Joined {
    fn drop(&mut self) {
        // Neither a sample nor an owned sample is held now (each keeps the
        // subscriber or this alive).
        pubsub_pool::clear_place(&self.chan.geo, &self.chan, self.index);
        self.chan.subscriber(self.index).leave();
        // A publisher waiting on this subscriber may go on.
        self.chan.space_bell().ring_always();
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.joined.chan.map.name)
            .field("index", &self.joined.index)
            .field("next", &self.core.next())
            .finish()
    }
}

impl Subscriber {
    /// Opens an existing byte pubsub channel and subscribes, starting with the next
    /// message published.
    ///
    /// # Errors
    /// [`ChannelError::Open`], [`ChannelError::Layout`], and [`ChannelError::Full`]
    /// when every subscriber place is taken by a live process.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::open_with_history(name, 0)
    }

    /// As [`Subscriber::open`], starting up to `history` messages back if the
    /// publisher keeps them ([`Options::history`]).
    ///
    /// # Errors
    /// As [`Subscriber::open`].
    pub fn open_with_history(name: &str, history: usize) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?, history as u64)
    }

    fn attach(chan: Chan, history: u64) -> Result<Self, ChannelError> {
        let Some(index) = (0..chan.geo.max_subscribers as usize)
            .find(|&i| chan.subscriber(i).claim() == Claim::Taken)
        else {
            return Err(ChannelError::Full {
                name: chan.map.name.clone(),
                max: chan.geo.max_subscribers,
            });
        };
        // The previous holder of the place is dead or gone: its holds are ours to
        // clear, before we hold anything (pubsub_pool.rs).
        pubsub_pool::clear_place(&chan.geo, &chan, index);
        let core = match SubscriberCore::attach(chan.geo, &chan, index, history) {
            Ok(c) => c,
            Err(source) => {
                chan.subscriber(index).leave();
                return Err(ChannelError::Corrupt {
                    name: chan.map.name.clone(),
                    source,
                });
            }
        };
        Ok(Self {
            joined: Arc::new(Joined {
                chan,
                index,
                returned: std::sync::atomic::AtomicU64::new(0),
            }),
            core,
            peer_check: RefCell::new(Every::new(PEER_CHECK)),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.joined.chan.map.name
    }

    /// The overflow policy the channel was created with.
    pub fn overflow(&self) -> Overflow {
        self.joined.chan.overflow
    }

    /// The number of the next message this subscriber will receive: messages are
    /// numbered from 0 in the order published since the channel was created.
    pub fn next_seq(&self) -> u64 {
        self.core.next()
    }

    /// Largest sample, in bytes.
    pub fn slot_size(&self) -> usize {
        self.joined.chan.geo.chunk_size as usize
    }

    /// Most samples this subscriber may hold at once.
    pub fn max_held(&self) -> usize {
        self.joined.chan.geo.max_held as usize
    }

    /// Samples this subscriber holds now (its [`OwnedSample`]s included).
    pub fn held(&self) -> usize {
        self.collect_returned();
        self.core.held() as usize
    }

    /// Frees for reuse the hold slots that owned samples released; whether there
    /// were any.
    fn collect_returned(&self) -> bool {
        // Acquire pairs with the Release in `OwnedSample::drop`: its release of the
        // hold comes before our next store to that slot.
        let mask = self
            .joined
            .returned
            .swap(0, std::sync::atomic::Ordering::Acquire);
        self.core.returned(mask);
        mask != 0
    }

    /// Whether a live publisher is attached now.
    pub fn publisher_present(&self) -> bool {
        let tok = self.joined.chan.publisher().token.load(Ordering::Acquire);
        tok != 0 && peer::alive(self.joined.chan.map.view.liveness(), tok)
    }

    /// Whether the channel's name still names the channel this subscriber reads:
    /// `Some(false)` once it was removed, even where a new channel has taken the
    /// name since (publishers that open the name then reach that one, never this
    /// subscriber). `None` where the OS cannot tell; see
    /// [`Segment::is_still_named`](crate::Segment::is_still_named).
    pub fn is_still_named(&self) -> Option<bool> {
        self.joined.chan.map.view.is_still_named()
    }

    fn take(&self) -> Result<Option<Sample<'_>>, RecvError> {
        let mut took = self.core.take(&self.joined.chan)?;
        if matches!(took, Take::Full) && self.collect_returned() {
            took = self.core.take(&self.joined.chan)?;
        }
        match took {
            Take::Empty => Ok(None),
            Take::Full => Err(RecvError::TooManyHeld {
                max: self.max_held(),
            }),
            Take::Got {
                seq,
                chunk,
                len,
                slot,
                lost,
            } => {
                if self.joined.chan.overflow == Overflow::Block {
                    // Our cursor moved: a publisher waiting for room may go on.
                    self.joined.chan.space_bell().ring();
                }
                Ok(Some(Sample {
                    sub: self,
                    ptr: self.joined.chan.payload(chunk, len as usize),
                    len: len as usize,
                    slot,
                    seq,
                    lost,
                }))
            }
        }
    }

    fn next(&self, deadline: Deadline) -> Result<Sample<'_>, RecvError> {
        let poll = |deep: bool| -> Option<Result<Sample<'_>, RecvError>> {
            match self.take() {
                Ok(Some(s)) => Some(Ok(s)),
                Err(e) => Some(Err(e)),
                Ok(None) => {
                    let place = self.joined.chan.publisher();
                    let check = deep && self.peer_check.borrow_mut().due();
                    if place.left() || (check && place.gone()) {
                        // Published just before leaving? (Its `leave` is a Release
                        // that our Acquire load saw.)
                        Some(match self.take() {
                            Ok(Some(s)) => Ok(s),
                            Ok(None) => Err(RecvError::Disconnected),
                            Err(e) => Err(e),
                        })
                    } else {
                        None
                    }
                }
            }
        };
        match deadline {
            Deadline::Now => poll(true).unwrap_or(Err(RecvError::Empty)),
            deadline => match poll(false) {
                Some(r) => r,
                None => self
                    .joined
                    .chan
                    .data_bell()
                    .wait_for(deadline, poll)
                    .unwrap_or(Err(RecvError::Empty)),
            },
        }
    }

    /// The next sample, read in place, without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`] (the publisher left or died
    /// and everything it sent has been received), [`RecvError::TooManyHeld`],
    /// [`RecvError::Corrupt`].
    pub fn try_recv(&self) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::Now)
    }

    /// The next sample, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`], without `Empty`.
    pub fn recv(&self) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::Never)
    }

    /// The next sample, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`]; `Empty` when nothing came in time.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        self.next(Deadline::after(timeout))
    }

    /// Copies the next sample into `buf` (replacing its contents) and releases it,
    /// without waiting; returns how many messages were lost just before it.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`].
    pub fn try_recv_into(&self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        let s = self.try_recv()?;
        buf.clear();
        buf.extend_from_slice(&s);
        Ok(s.lost)
    }

    /// As [`Subscriber::try_recv_into`], waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    pub fn recv_into(&self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        let s = self.recv()?;
        buf.clear();
        buf.extend_from_slice(&s);
        Ok(s.lost)
    }

    /// As [`Subscriber::try_recv_into`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Subscriber::recv_timeout`].
    pub fn recv_into_timeout(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, RecvError> {
        let s = self.recv_timeout(timeout)?;
        buf.clear();
        buf.extend_from_slice(&s);
        Ok(s.lost)
    }
}

/// Async send (block mode): the try-call plus an async wait on the space bell.
impl Publisher {
    /// Publishes a copy of `msg`, waiting for room (block mode) as a future:
    /// [`Publisher::send`] without blocking a thread. In overwrite mode it does not
    /// wait (but for the moment a subscriber's cursor is contended, as `send`).
    ///
    /// Cancel-safe: the message is published only when the future completes (a
    /// chunk is loaned, filled and published within one poll); dropping it while
    /// pending publishes nothing and holds no chunk.
    ///
    /// # Errors
    /// As [`Publisher::send`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            // A copy of the word accessor, so the bell does not borrow `self`.
            let words = self.chan.words;
            let bell = words.bell(offset_of!(Control, space_bell));
            bell.poll_async(&mut pending, cx, || match self.try_send(msg) {
                Err(TrySendError::Full(())) => None,
                r => Some(r.map_err(|e| match e {
                    TrySendError::Full(()) | TrySendError::Disconnected(()) => {
                        SendError::Disconnected(())
                    }
                    TrySendError::TooLarge { len, max } => SendError::TooLarge { len, max },
                    TrySendError::Corrupt(c) => SendError::Corrupt(c),
                })),
            })
        })
        .await
    }
}

/// The WaitSet/async protocol, through a shared reference (the receives take
/// `&self`): sleep on the data bell (see `crate::waitset`).
impl Subscriber {
    fn announce_data(&self) -> u32 {
        self.joined.chan.data_bell().announce()
    }

    /// Ready when a take would find something (`SubscriberCore::has_next`: a
    /// message, a skip to report, or words to validate) or the publisher is gone.
    fn arm_data(&self, token: u32) -> crate::waitset::Arm<'_> {
        self.joined.chan.data_bell().arm(token, || {
            if self.core.has_next(&self.joined.chan) {
                return true;
            }
            let place = self.joined.chan.publisher();
            let mut check = self.peer_check.borrow_mut();
            if place.left() || (check.due() && place.gone()) {
                // Let the receive that follows look at once.
                check.force();
                true
            } else {
                false
            }
        })
    }
}

/// The WaitSet/async protocol: sleep on the data bell (see `crate::waitset`).
impl crate::waitset::sealed::Sealed for Subscriber {
    fn announce(&mut self) -> (bool, u32) {
        (true, self.announce_data())
    }

    fn arm(&mut self, token: u32) -> crate::waitset::Arm<'_> {
        self.arm_data(token)
    }

    fn disarm(&mut self, token: u32) {
        self.joined.chan.data_bell().take_back(token);
    }
}

/// Async receives: plain futures, any executor (see `crate::waitset`).
impl Subscriber {
    /// The next sample, read in place, as a future: [`Subscriber::recv`] without
    /// blocking a thread.
    ///
    /// Cancel-safe: a message is taken (and a hold slot used) only by the poll that
    /// completes the future; dropping it while pending loses nothing.
    ///
    /// The future borrows the subscriber, which is `Send` but not `Sync`, so it is
    /// not `Send`: await it on a current-thread runtime or a local task set, or use
    /// [`Subscriber::recv_into_async`], whose future is.
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    pub async fn recv_async(&self) -> Result<Sample<'_>, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(move |cx| {
            self.joined
                .chan
                .data_bell()
                .poll_async(&mut pending, cx, || match self.next(Deadline::Now) {
                    Err(RecvError::Empty) => None,
                    r => Some(r),
                })
        })
        .await
    }

    /// As [`Subscriber::recv_into`], as a future: the sample is copied into `buf`
    /// (replacing its contents) and released when it completes; returns how many
    /// messages were lost just before it.
    ///
    /// Takes `&mut self` so that the future is `Send` (for multi-threaded
    /// runtimes); cancel-safe like [`Subscriber::recv_async`].
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        // Held as `&mut`, which is `Send` where `&Subscriber` is not.
        let this = &mut *self;
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(move |cx| {
            let this = &*this;
            this.joined
                .chan
                .data_bell()
                .poll_async(&mut pending, cx, || match this.next(Deadline::Now) {
                    Ok(s) => {
                        buf.clear();
                        buf.extend_from_slice(&s);
                        Some(Ok(s.lost))
                    }
                    Err(RecvError::Empty) => None,
                    Err(e) => Some(Err(e)),
                })
        })
        .await
    }
}

/// A received sample, read in place in the channel's shared memory. Its chunk
/// stays the subscriber's (no correct publisher writes it) until the sample is
/// dropped; see the module doc for what a hostile peer can do.
pub struct Sample<'a> {
    sub: &'a Subscriber,
    ptr: *const u8,
    len: usize,
    slot: u32,
    seq: u64,
    lost: u64,
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("seq", &self.seq)
            .field("lost", &self.lost)
            .field("len", &self.len)
            .finish()
    }
}

impl Sample<'_> {
    /// Messages this subscriber lost just before this one (overwritten before it
    /// started them; 0 in block mode except while joining).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The message's number (from 0, in publishing order).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The sample as a `T`, if it is exactly `size_of::<T>()` bytes.
    pub fn pod<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the sample out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }

    /// The same sample, no longer borrowing the subscriber: still read in place
    /// (no copy), `'static`, `Send` and `Sync`, and released when it is dropped, on
    /// any thread. For handing a sample to code that must own its buffer (a
    /// network library's send queue, another thread) without copying it.
    ///
    /// It counts against [`Options::max_held`] until dropped, like a sample. It
    /// also keeps the subscriber joined: a subscriber dropped while owned samples
    /// of it live leaves the channel when the last of them is dropped (meanwhile
    /// its cursor stays where it was, so in [`Overflow::Block`] mode it holds the
    /// publisher back once the ring fills). The zero-copy contract is a sample's
    /// (module doc).
    ///
    /// ```
    /// use shmipc::channel::pubsub::{Options, OwnedSample, Subscriber};
    /// # let name = format!("doc-pubsub-owned-{}", std::process::id());
    /// let mut publisher = Options::new().create_publisher(&name)?;
    /// let sub = Subscriber::open(&name)?;
    /// publisher.send(b"frame")?;
    /// let owned: OwnedSample = sub.recv()?.detach();
    /// let other = std::thread::spawn(move || owned.to_vec()); // dropped there
    /// assert_eq!(other.join().unwrap(), b"frame");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn detach(self) -> OwnedSample {
        let this = std::mem::ManuallyDrop::new(self);
        OwnedSample {
            joined: Arc::clone(&this.sub.joined),
            ptr: this.ptr,
            len: this.len,
            slot: this.slot,
            seq: this.seq,
            lost: this.lost,
        }
    }
}

/// A received sample that owns its hold on the chunk ([`Sample::detach`]): read in
/// place, `'static`, `Send` and `Sync`; the chunk goes back to the pool when it is
/// dropped, on whichever thread.
pub struct OwnedSample {
    joined: Arc<Joined>,
    ptr: *const u8,
    len: usize,
    slot: u32,
    seq: u64,
    lost: u64,
}

// SAFETY: `ptr` points into the mapping that `joined` keeps alive (the mapping is
// `Send + Sync`); the bytes are only read, through `&self`, under the same
// zero-copy contract as a `Sample`'s. Dropping releases the hold with atomic
// stores only (`Joined::returned`, the hold word), so it may happen on any thread.
unsafe impl Send for OwnedSample {}
// SAFETY: as above: `&OwnedSample` only reads.
unsafe impl Sync for OwnedSample {}

impl fmt::Debug for OwnedSample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSample")
            .field("seq", &self.seq)
            .field("lost", &self.lost)
            .field("len", &self.len)
            .finish()
    }
}

impl OwnedSample {
    /// As [`Sample::lost`].
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// As [`Sample::seq`].
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// As [`Sample::pod`].
    pub fn pod<T: Pod>(&self) -> Option<&T> {
        bytemuck::try_from_bytes(self).ok()
    }

    /// Copies the sample out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for OwnedSample {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: as `Sample::deref`: `ptr` is `len` payload bytes of a chunk inside
        // the mapping `joined` keeps alive, and our hold slot names the chunk until
        // this is dropped.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for OwnedSample {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for OwnedSample {
    fn drop(&mut self) {
        let joined = &self.joined;
        // Release: our reads of the chunk happen before the publisher, seeing the
        // slot empty (Acquire in `reclaim`), frees and rewrites it.
        joined
            .chan
            .hold(joined.index, self.slot as usize)
            .store(0, Ordering::Release);
        // Release pairs with the subscriber's Acquire in `collect_returned`: the
        // store above comes before its reuse of the slot.
        joined
            .returned
            .fetch_or(1 << self.slot, std::sync::atomic::Ordering::Release);
    }
}

impl Deref for Sample<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at the `len` (<= chunk size, checked by `take`)
        // payload bytes of a chunk inside the mapping (`Words::bytes` checked). The
        // pool protocol (pubsub_pool.rs) keeps a correct publisher from writing the
        // chunk while our hold slot names it, i.e. until this sample drops; what an
        // incorrect one can do is documented on the module (the zero-copy contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for Sample<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Sample<'_> {
    #[inline]
    fn drop(&mut self) {
        self.sub.core.release(&self.sub.joined.chan, self.slot);
    }
}

/// For `channel::fuzzing`: endpoints over one mapping made once per process,
/// through every check an open makes (`Mapped::again`).
impl Publisher {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }

    pub(super) fn fuzz_mapped(&self) -> &Mapped {
        &self.chan.map
    }

    /// Where the ring entries and the chunks start.
    pub(super) fn fuzz_regions(&self) -> (usize, usize) {
        (self.chan.entries, self.chan.chunks_off)
    }
}

impl Subscriber {
    pub(super) fn fuzz_over(map: &Mapped, history: u64) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?, history)
    }
}
