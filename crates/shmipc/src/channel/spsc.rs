//! Single-producer single-consumer channels: variable-length byte messages
//! ([`Producer`], [`Consumer`]) and typed messages ([`TypedProducer`],
//! [`TypedConsumer`]), zero-copy both ways.
//!
//! ```
//! use shmipc::channel::spsc::{Consumer, Producer};
//! # let name = format!("doc-spsc-{}", std::process::id());
//! let mut tx = Producer::create(&name, 64, 256)?; // 64 slots of 256 bytes
//! let mut rx = Consumer::open(&name)?;             // usually another process
//!
//! let mut loan = tx.loan(5)?;                      // write in place…
//! loan.copy_from_slice(b"hello");
//! loan.send();                                     // …and publish
//! tx.send(b"copied")?;                             // or copy in
//!
//! assert_eq!(&*rx.recv()?, b"hello");              // borrows the slot until dropped
//! assert_eq!(rx.recv()?.to_vec(), b"copied");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Copying forms exist too: [`Producer::send`] copies a slice in, and
//! [`Consumer::recv_into`] / [`Consumer::recv_vec`] copy a message out and hand its
//! slot back at once.
//!
//! # Layout of the segment
//!
//! The `#[repr(C)]` structs `Control` (the first 384 bytes, layout header
//! included) and `SlotHeader` (in this file), checked by the compiler:
//!
//! ```text
//!   0  layout header (kind spsc; params: capacity, slot size, type size|align<<32, type hash)
//!  64  producer token, producer attaches, consumer token, consumer attaches (peer.rs)
//! 128  tail: messages the consumer has finished with      (own cache line, consumer writes)
//! 192  data bell: seq, sleepers                           (consumer sleeps, producer rings)
//! 256  space bell: seq, sleepers                          (producer sleeps, consumer rings)
//! 320  reserved (zero)
//! 384  slots: `capacity` x stride (64-byte multiple): SlotHeader (stamp u64), payload
//! ```
//!
//! The ring algorithm is in `spsc_ring.rs`. The consumer stores `tail` (hands
//! slots back) every sixteenth of the ring, whenever it finds the ring empty, and
//! when it leaves, rather than per message: a producer waiting for room then gets
//! it in batches, and `tail`'s cache line does not travel once per message. A
//! consumer that stops receiving may so hold up to a sixteenth of the ring. The payload starts 8 bytes into its
//! slot, right after the stamp, so a message of up to 56 bytes travels in the
//! stamp's cache line.
//!
//! # Peers
//!
//! Each endpoint registers in the segment (see `peer.rs`); a second live producer
//! (or consumer) is refused with [`ChannelError::Busy`]. A producer that leaves or
//! dies makes the consumer's receives return [`RecvError::Disconnected`] once it has
//! drained what was sent; a consumer that leaves makes sends fail with
//! `Disconnected`; one that dies (SIGKILL) is noticed when the ring fills. A new
//! producer or consumer may attach later and carries on where the old one stopped:
//! messages in the ring are delivered to the next consumer (one that was being
//! read when its consumer died is delivered again; those it had finished with are
//! not, although it hands their slots back in batches: it notes each one for its
//! successor, see `spsc_ring.rs`).
#![allow(unsafe_code)]

use std::fmt;
use std::marker::PhantomData;
use std::mem::offset_of;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytemuck::Pod;

use crate::deadline::Deadline;
use crate::layout::{Header, HeaderWords, Kind, LayoutError};
use crate::segment::Persistence;

use super::notify::{Bell, Every};
use super::peer::{Claim, Place};
use super::shared::{
    self, line_up, Bad, BellWords, Common, How, Mapped, MsgType, PeerWords, Rule, Words,
};
use super::spsc_ring::{ConsumerCore, Geometry, ProducerCore, SpscSlots};
use super::{ChannelError, Corrupt, RecvError, SendError, TrySendError};

/// The words before the slots. Fields that different sides write sit on their own
/// cache lines.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Control {
    /// The layout header (`layout.rs`).
    pub(crate) header: HeaderWords,
    /// The producer's registration.
    pub(crate) producer: PeerWords,
    /// The consumer's registration.
    pub(crate) consumer: PeerWords,
    _peer_line: [u64; 4],
    /// Messages the consumer has finished with (the consumer writes it).
    pub(crate) tail: u64,
    _tail_line: [u64; 7],
    /// Bell the consumer sleeps on (the producer rings it).
    pub(crate) data_bell: BellWords,
    _data_line: [u32; 14],
    /// Bell the producer sleeps on (the consumer rings it).
    pub(crate) space_bell: BellWords,
    _space_line: [u32; 14],
    /// Messages the consumer has finished with, stored per message for the next
    /// consumer (`spsc_ring.rs`); only consumers touch this line.
    pub(crate) resume: u64,
    _resume_line: [u64; 7],
}

/// The words before each slot's payload.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct SlotHeader {
    /// The tag of the message in the slot (`spsc_ring.rs`).
    pub(crate) stamp: u64,
}

const _: () = {
    assert!(size_of::<Control>() == 384);
    assert!(offset_of!(Control, producer) == 64);
    assert!(offset_of!(Control, consumer) == 80);
    assert!(offset_of!(Control, tail) == 128);
    assert!(offset_of!(Control, data_bell) == 192);
    assert!(offset_of!(Control, space_bell) == 256);
    assert!(offset_of!(Control, resume) == 320);
    assert!(size_of::<SlotHeader>() == 8);
    assert!(offset_of!(SlotHeader, stamp) == 0);
};

/// Where the slots start.
pub(crate) const SLOTS_AT: usize = size_of::<Control>();
/// Where a slot's payload starts: right after its stamp.
pub(crate) const STAMP_LEN: usize = size_of::<SlotHeader>();
/// Largest slot payload: lengths travel in 32 bits.
const MAX_SLOT: u64 = 1 << 31;
/// Most slots (a power of two).
const MAX_CAPACITY: u64 = 1 << 31;
/// How often a waiting endpoint checks that its peer process still lives.
const PEER_CHECK: Duration = Duration::from_millis(10);

/// Settings for creating an spsc channel.
///
/// ```
/// use shmipc::channel::spsc::Options;
/// use shmipc::Persistence;
/// # let name = format!("doc-spsc-opt-{}", std::process::id());
/// let tx = Options::new().capacity(1024).slot_size(64).create_producer(&name)?;
/// assert_eq!((tx.capacity(), tx.slot_size()), (1024, 64));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Options {
    capacity: u64,
    slot_size: u64,
    common: Common,
    msg: MsgType,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: 256 slots of 1024 bytes, owner-only, gone with the last holder.
    pub fn new() -> Self {
        Self {
            capacity: 256,
            slot_size: 1024,
            common: Common::default(),
            msg: MsgType::BYTES,
        }
    }

    /// Slots in the ring, rounded up to a power of two (at most 2^31).
    pub fn capacity(mut self, slots: usize) -> Self {
        self.capacity = slots as u64;
        self
    }

    /// Largest message in bytes (at most 2^31).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes as u64;
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

    /// Creates the channel and attaches as its producer.
    ///
    /// # Errors
    /// [`ChannelError::Create`] if the name exists or is invalid,
    /// [`ChannelError::InvalidParameter`] for bad sizes.
    pub fn create_producer(&self, name: &str) -> Result<Producer, ChannelError> {
        Producer::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the channel and attaches as its consumer.
    ///
    /// # Errors
    /// As [`Options::create_producer`].
    pub fn create_consumer(&self, name: &str) -> Result<Consumer, ChannelError> {
        Consumer::attach(Chan::get(name, How::Create, self)?)
    }

    /// Creates the channel, or opens it if it exists (then its own capacity and
    /// slot size apply), and attaches as its producer.
    ///
    /// # Errors
    /// As [`Options::create_producer`] and [`Producer::open`].
    pub fn create_or_open_producer(&self, name: &str) -> Result<Producer, ChannelError> {
        Producer::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }

    /// Creates the channel, or opens it if it exists, and attaches as its consumer.
    ///
    /// # Errors
    /// As [`Options::create_or_open_producer`].
    pub fn create_or_open_consumer(&self, name: &str) -> Result<Consumer, ChannelError> {
        Consumer::attach(Chan::get(name, How::CreateOrOpen, self)?)
    }
}

/// Capacity: slots in the ring.
const CAPACITY: Rule = Rule {
    what: "capacity",
    header: "capacity (not a power of two up to 2^31)",
    reason: "it must be between 1 and 2^31 slots",
    min: 1,
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

/// The layout parameters of an spsc channel (header words 0 and 1; 2 and 3 are
/// the message type), and where they put the parts. Made only by
/// [`Shape::of_options`] and [`validate`], which check the same rules: a creator
/// cannot make what an opener refuses, and `shmipc info` refuses what an opener
/// does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    /// Bytes from one slot to the next.
    pub(crate) stride: u64,
    /// Bytes of the whole channel.
    pub(crate) size: u64,
}

impl Shape {
    /// From a creator's options (capacity rounded up to a power of two).
    fn of_options(o: &Options) -> Result<Self, Bad> {
        Self::new(CAPACITY.option(o.capacity)?, o.slot_size)
    }

    /// Checks the parameters and lays the channel out.
    fn new(capacity: u64, slot_size: u64) -> Result<Self, Bad> {
        let capacity = CAPACITY.check(capacity)?;
        let slot_size = SLOT_SIZE.check(slot_size)?;
        let (stride, size) = sizes(capacity, slot_size).ok_or(Bad {
            what: "capacity x slot size",
            header: "ring size (overflows)",
            reason: "the ring would not fit in memory",
            value: capacity,
        })?;
        Ok(Self {
            capacity,
            slot_size,
            stride,
            size,
        })
    }

    /// The header's parameters, for a channel carrying `msg`.
    fn params(&self, msg: &MsgType) -> [u64; 4] {
        [self.capacity, self.slot_size, msg.packed(), msg.hash]
    }
}

/// Validates an spsc header's layout parameters and that `len` bytes (of the
/// segment, from the channel's start) hold the layout they describe: the one
/// check of an opening endpoint and of `shmipc info` (`channel::inspect`). The
/// message type words must be those of some type an endpoint may carry (bytes,
/// or a `Pod` type aligned to at most 8); whether they are the opener's own type
/// is its to check.
///
/// # Errors
/// [`LayoutError::Mismatch`] naming the parameter out of range,
/// [`LayoutError::TooSmall`] for a segment too small for them.
pub(crate) fn validate(
    [capacity, slot_size, packed, hash]: [u64; 4],
    len: usize,
) -> Result<Shape, LayoutError> {
    MsgType::check_any(Kind::Spsc, packed, hash, STAMP_LEN as u64)?;
    let shape = Shape::new(capacity, slot_size).map_err(|b| b.layout(Kind::Spsc))?;
    shared::fits("spsc ring", shape.size, len)?;
    Ok(shape)
}

/// Stride of a slot and size of the segment, or None on overflow.
fn sizes(capacity: u64, slot_size: u64) -> Option<(u64, u64)> {
    let stride = line_up(slot_size.checked_add(STAMP_LEN as u64)?)?;
    let size = stride.checked_mul(capacity)?.checked_add(SLOTS_AT as u64)?;
    (size <= isize::MAX as u64).then_some((stride, size))
}

/// A mapped and validated spsc segment.
#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    geo: Geometry,
    stride: usize,
}

impl Chan {
    fn get(name: &str, how: How, opts: &Options) -> Result<Self, ChannelError> {
        // An opener takes the channel's own parameters: its options are not checked.
        let (size, params) = if how == How::Open {
            (0, [0; 4])
        } else {
            let shape = Shape::of_options(opts).map_err(|b| b.invalid(name))?;
            (shape.size, shape.params(&opts.msg))
        };
        let (map, header) =
            shared::get(
                name,
                how,
                Kind::Spsc,
                &opts.common,
                size,
                params,
                |_| Ok(()),
            )?;
        Self::checked(name, map, header, opts)
    }

    /// For `channel::fuzzing`: the same checks as an open, over `map` again.
    fn again(map: &Mapped, opts: &Options) -> Result<Self, ChannelError> {
        let (map, header) = map.again(Kind::Spsc)?;
        let name = map.name.clone();
        Self::checked(&name, map, header, opts)
    }

    /// Validates a mapped channel's header parameters and extent.
    fn checked(
        name: &str,
        map: Mapped,
        header: Header,
        opts: &Options,
    ) -> Result<Self, ChannelError> {
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let shape = validate(header.params, map.view.len()).map_err(layout)?;
        let [.., packed, hash] = header.params;
        opts.msg.check(Kind::Spsc, packed, hash).map_err(layout)?;
        // Its pages have memory before anything is written through the mapping.
        map.back_holes(shape.size).map_err(layout)?;
        let words = map.words(Kind::Spsc, shape.size).map_err(layout)?;
        Ok(Self {
            map,
            words,
            geo: Geometry {
                capacity: shape.capacity,
                max_len: shape.slot_size as u32,
            },
            stride: shape.stride as usize,
        })
    }

    fn producer(&self) -> Place<'_> {
        self.words
            .place(offset_of!(Control, producer), self.map.view.liveness())
    }

    fn consumer(&self) -> Place<'_> {
        self.words
            .place(offset_of!(Control, consumer), self.map.view.liveness())
    }

    fn data_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, data_bell))
    }

    fn space_bell(&self) -> Bell<'_> {
        self.words.bell(offset_of!(Control, space_bell))
    }

    fn slot_off(&self, slot: usize) -> usize {
        SLOTS_AT + slot * self.stride
    }

    fn payload(&self, slot: usize, len: usize) -> *mut u8 {
        self.words.bytes(self.slot_off(slot) + STAMP_LEN, len)
    }

    /// While waiting for a slot, also reads the slot's second cache line, so that a
    /// message of up to 120 bytes arrives with two cache misses in parallel rather
    /// than one after the other (the stamp, then the rest of the payload).
    #[inline]
    fn touch(&self, slot: usize) {
        if self.stride > 64 {
            std::hint::black_box(
                self.words
                    .u64(self.slot_off(slot) + 64)
                    .load(Ordering::Relaxed),
            );
        }
    }

    fn busy(&self, role: &'static str, pid: u32) -> ChannelError {
        ChannelError::Busy {
            name: self.map.name.clone(),
            role,
            pid,
        }
    }
}

impl SpscSlots for Chan {
    #[inline]
    fn stamp(&self, slot: usize) -> &super::shim::AtomicU64 {
        self.words
            .u64(self.slot_off(slot) + offset_of!(SlotHeader, stamp))
    }
    #[inline]
    fn tail(&self) -> &super::shim::AtomicU64 {
        self.words.u64(offset_of!(Control, tail))
    }
    #[inline]
    fn resume(&self) -> Option<&super::shim::AtomicU64> {
        Some(self.words.u64(offset_of!(Control, resume)))
    }
}

/// The sending end of an spsc channel of byte messages.
pub struct Producer {
    chan: Chan,
    core: ProducerCore,
    peer_check: Every,
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("name", &self.chan.map.name)
            .field("capacity", &self.chan.geo.capacity)
            .field("slot_size", &self.chan.geo.max_len)
            .field("next", &self.core.head())
            .finish()
    }
}

impl Producer {
    /// Creates a channel of `capacity` slots (rounded up to a power of two) of
    /// `slot_size` bytes and attaches as its producer. See [`Options`] for more.
    ///
    /// # Errors
    /// As [`Options::create_producer`].
    #[doc(alias = "CreateFileMapping")]
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_producer(name)
    }

    /// Opens an existing byte channel and attaches as its producer.
    ///
    /// # Errors
    /// [`ChannelError::Open`] if it does not exist, [`ChannelError::Layout`] if it is
    /// not a byte spsc channel, [`ChannelError::Busy`] if a live producer holds it.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        match chan.producer().claim() {
            Claim::Taken => {}
            Claim::Held(pid) => return Err(chan.busy("producer", pid)),
        }
        let core = ProducerCore::attach(chan.geo, &chan);
        Ok(Self {
            chan,
            core,
            peer_check: Every::new(PEER_CHECK),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.chan.geo.capacity as usize
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    /// Whether a live consumer is attached now.
    pub fn consumer_present(&self) -> bool {
        let tok = self.chan.consumer().token.load(Ordering::Acquire);
        tok != 0 && super::peer::alive(self.chan.map.view.liveness(), tok)
    }

    fn check_len(&self, len: usize) -> Result<u32, (usize, usize)> {
        match u32::try_from(len) {
            Ok(l) if l <= self.chan.geo.max_len => Ok(l),
            _ => Err((len, self.slot_size())),
        }
    }

    /// Whether the consumer left (cheap), or, at most every `PEER_CHECK` when
    /// `deep`, whether it died.
    fn consumer_gone(&mut self, deep: bool) -> bool {
        let place = self.chan.consumer();
        place.left() || (deep && self.peer_check.due() && place.gone())
    }

    fn reserve(&mut self, deadline: Deadline) -> Result<usize, SendError> {
        if self.consumer_gone(false) {
            return Err(SendError::Disconnected(()));
        }
        if let Some(slot) = self.core.try_reserve(&self.chan)? {
            return Ok(slot);
        }
        if deadline == Deadline::Now {
            return Err(if self.consumer_gone(true) {
                SendError::Disconnected(())
            } else {
                SendError::Timeout(())
            });
        };
        let Self {
            chan,
            core,
            peer_check,
        } = self;
        let place = chan.consumer();
        chan.space_bell()
            .wait_for(deadline, |deep| match core.try_reserve(&*chan) {
                Ok(Some(slot)) => Some(Ok(slot)),
                Err(c) => Some(Err(SendError::Corrupt(c))),
                Ok(None) => (place.left() || (deep && peer_check.due() && place.gone()))
                    .then_some(Err(SendError::Disconnected(()))),
            })
            .unwrap_or(Err(SendError::Timeout(())))
    }

    fn loan_with(&mut self, len: usize, deadline: Deadline) -> Result<Loan<'_>, SendError> {
        let len32 = self
            .check_len(len)
            .map_err(|(len, max)| SendError::TooLarge { len, max })?;
        let slot = self.reserve(deadline)?;
        Ok(Loan {
            ptr: self.chan.payload(slot, len),
            len: len32,
            producer: self,
        })
    }

    /// Loans the next slot for a message of `len` bytes, without waiting. Write
    /// the message into it, then [`Loan::send`] it; dropping the loan sends nothing.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`] (the consumer left or
    /// died), [`TrySendError::TooLarge`], [`TrySendError::Corrupt`].
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, TrySendError> {
        self.loan_with(len, Deadline::Now).map_err(to_try)
    }

    /// Loans the next slot, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::try_loan`], without `Full`.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::Never)
    }

    /// Loans the next slot, waiting for room up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::loan`], and [`SendError::Timeout`].
    pub fn loan_timeout(&mut self, len: usize, timeout: Duration) -> Result<Loan<'_>, SendError> {
        self.loan_with(len, Deadline::after(timeout))
    }

    /// Copies `msg` into the channel, without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_loan`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        let mut loan = self.try_loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
    }

    /// Copies `msg` into the channel, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::loan`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
    }

    /// Copies `msg` into the channel, waiting for room up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::loan_timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let mut loan = self.loan_timeout(msg.len(), timeout)?;
        loan.copy_from_slice(msg);
        loan.send();
        Ok(())
    }
}

fn to_try(e: SendError) -> TrySendError {
    match e {
        SendError::Timeout(()) => TrySendError::Full(()),
        SendError::Disconnected(()) => TrySendError::Disconnected(()),
        SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
        SendError::Corrupt(c) => TrySendError::Corrupt(c),
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.chan.producer().leave();
        // Wake a sleeping consumer so that it sees the producer gone.
        self.chan.data_bell().ring_always();
    }
}

/// A slot loaned to the producer: write the message, then [`Loan::send`] it.
/// While the loan lives, the ring gives this slot to this process alone.
pub struct Loan<'a> {
    producer: &'a mut Producer,
    ptr: *mut u8,
    len: u32,
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("len", &self.len).finish()
    }
}

impl Loan<'_> {
    /// Publishes the message.
    #[inline]
    pub fn send(self) {
        self.producer.core.publish(&self.producer.chan, self.len);
        self.producer.chan.data_bell().ring();
    }

    /// Shortens the message to `len` bytes (no effect if longer than it is).
    pub fn truncate(&mut self, len: usize) {
        if let Ok(l) = u32::try_from(len) {
            self.len = self.len.min(l);
        }
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` bytes of a slot's payload, inside the mapping
        // (`Words::bytes` checked); the ring protocol gives the slot to this producer
        // until it is published (the consumer released it: `try_reserve`), and the
        // loan borrows the producer mutably, so nothing else in this process touches it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the mapping is read-write (`Words::new` checked).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len as usize) }
    }
}

/// The receiving end of an spsc channel of byte messages.
pub struct Consumer {
    chan: Chan,
    core: ConsumerCore,
    peer_check: Every,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.chan.map.name)
            .field("capacity", &self.chan.geo.capacity)
            .field("slot_size", &self.chan.geo.max_len)
            .field("next", &self.core.position())
            .finish()
    }
}

impl Consumer {
    /// Creates a channel (see [`Producer::create`]) and attaches as its consumer.
    ///
    /// # Errors
    /// As [`Options::create_consumer`].
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self, ChannelError> {
        Options::new()
            .capacity(capacity)
            .slot_size(slot_size)
            .create_consumer(name)
    }

    /// Opens an existing byte channel and attaches as its consumer.
    ///
    /// # Errors
    /// As [`Producer::open`].
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?)
    }

    fn attach(chan: Chan) -> Result<Self, ChannelError> {
        match chan.consumer().claim() {
            Claim::Taken => {}
            Claim::Held(pid) => return Err(chan.busy("consumer", pid)),
        }
        // Hand slots back in batches of a sixteenth of the ring (module doc).
        let core = ConsumerCore::attach(chan.geo, &chan, chan.geo.capacity / 16);
        Ok(Self {
            chan,
            core,
            peer_check: Every::new(PEER_CHECK),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.chan.geo.capacity as usize
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    /// Whether a live producer is attached now.
    pub fn producer_present(&self) -> bool {
        let tok = self.chan.producer().token.load(Ordering::Acquire);
        tok != 0 && super::peer::alive(self.chan.map.view.liveness(), tok)
    }

    fn next(&mut self, deadline: Deadline) -> Result<(usize, u32), RecvError> {
        if let Some(x) = self.core.peek(&self.chan)? {
            return Ok(x);
        }
        let Self {
            chan,
            core,
            peer_check,
        } = self;
        let place = chan.producer();
        let mut poll = |deep: bool| match core.peek(&*chan) {
            Ok(Some(x)) => Some(Ok(x)),
            Err(c) => Some(Err(RecvError::Corrupt(c))),
            Ok(None) => {
                // Empty: the producer may be waiting for the slots we finished.
                if core.flush(&*chan) {
                    chan.space_bell().ring();
                }
                chan.touch(core.next_slot());
                if place.left() || (deep && peer_check.due() && place.gone()) {
                    // The producer may have published just before leaving: look
                    // again (its `leave` is a Release our Acquire load saw).
                    Some(match core.peek(&*chan) {
                        Ok(Some(x)) => Ok(x),
                        Ok(None) => Err(RecvError::Disconnected),
                        Err(c) => Err(RecvError::Corrupt(c)),
                    })
                } else {
                    None
                }
            }
        };
        match deadline {
            Deadline::Now => poll(true).unwrap_or(Err(RecvError::Empty)),
            deadline => chan
                .data_bell()
                .wait_for(deadline, poll)
                .unwrap_or(Err(RecvError::Empty)),
        }
    }

    fn sample(&mut self, (slot, len): (usize, u32)) -> Sample<'_> {
        Sample {
            ptr: self.chan.payload(slot, len as usize),
            len,
            consumer: self,
        }
    }

    /// The next message, if one is waiting. The [`Sample`] borrows its slot; the
    /// slot goes back to the producer when the sample is dropped.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`] (the producer left or died
    /// and everything it sent has been received), [`RecvError::Corrupt`].
    pub fn try_recv(&mut self) -> Result<Sample<'_>, RecvError> {
        let x = self.next(Deadline::Now)?;
        Ok(self.sample(x))
    }

    /// The next message, waiting as long as it takes (spinning briefly, then
    /// sleeping on the futex).
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], without `Empty`.
    pub fn recv(&mut self) -> Result<Sample<'_>, RecvError> {
        let x = self.next(Deadline::Never)?;
        Ok(self.sample(x))
    }

    /// The next message, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`]; `Empty` when nothing came in time.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Sample<'_>, RecvError> {
        let x = self.next(Deadline::after(timeout))?;
        Ok(self.sample(x))
    }
}

/// Async send: the try-call plus an async wait on the space bell.
impl Producer {
    /// Sends a copy of `msg`, waiting for room as a future: [`Producer::send`]
    /// without blocking a thread.
    ///
    /// Cancel-safe: the message is written only when the future completes; dropping
    /// it while pending sends nothing and holds no slot.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
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

/// The WaitSet/async protocol: sleep on the data bell (see `crate::waitset`).
impl crate::waitset::sealed::Sealed for Consumer {
    fn announce(&mut self) -> (bool, u32) {
        (true, self.chan.data_bell().announce())
    }

    fn disarm(&mut self, token: u32) {
        self.chan.data_bell().take_back(token);
    }

    fn arm(&mut self, token: u32) -> crate::waitset::Arm<'_> {
        let Self {
            chan,
            core,
            peer_check,
        } = self;
        let chan = &*chan;
        chan.data_bell().arm(token, || match core.peek(chan) {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => {
                let place = chan.producer();
                if place.left() || (peer_check.due() && place.gone()) {
                    // Let the receive that follows look at once.
                    peer_check.force();
                    true
                } else {
                    false
                }
            }
        })
    }
}

/// Async receives: plain futures, any executor (see `crate::waitset`).
impl Consumer {
    /// The next message, as a future: [`Consumer::recv`] without blocking a thread.
    ///
    /// Cancel-safe: a message is taken only when the future completes; dropping it
    /// while pending loses nothing.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv_async(&mut self) -> Result<Sample<'_>, RecvError> {
        let x = self.next_async().await?;
        Ok(self.sample(x))
    }

    /// As [`Consumer::recv_into`], as a future (cancel-safe like
    /// [`Consumer::recv_async`]).
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let x = self.next_async().await?;
        self.copy_into(x, buf);
        Ok(())
    }

    async fn next_async(&mut self) -> Result<(usize, u32), RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            // A copy of the word accessor, so the bell does not borrow `self`.
            let words = self.chan.words;
            let bell = words.bell(offset_of!(Control, data_bell));
            bell.poll_async(&mut pending, cx, || match self.next(Deadline::Now) {
                Err(RecvError::Empty) => None,
                r => Some(r),
            })
        })
        .await
    }
}

/// Copying receives, for callers that want the bytes in their own buffer (the
/// same forms as the other channel kinds).
impl Consumer {
    fn copy_into(&mut self, x: (usize, u32), buf: &mut Vec<u8>) {
        let s = self.sample(x);
        buf.clear();
        buf.extend_from_slice(&s);
    }

    /// Copies the next message into `buf` (replacing its contents), if one is
    /// waiting; its slot goes back to the producer at once.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let x = self.next(Deadline::Now)?;
        self.copy_into(x, buf);
        Ok(())
    }

    /// As [`Consumer::try_recv_into`], waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let x = self.next(Deadline::Never)?;
        self.copy_into(x, buf);
        Ok(())
    }

    /// As [`Consumer::try_recv_into`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), RecvError> {
        let x = self.next(Deadline::after(timeout))?;
        self.copy_into(x, buf);
        Ok(())
    }

    /// A copy of the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv_vec(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v)?;
        Ok(v)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.core.flush(&self.chan);
        self.chan.consumer().leave();
        self.chan.space_bell().ring_always();
    }
}

/// A received message, borrowed in place. Its slot returns to the producer when
/// the sample is dropped.
pub struct Sample<'a> {
    consumer: &'a mut Consumer,
    ptr: *const u8,
    len: u32,
}

impl fmt::Debug for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample").field("len", &self.len).finish()
    }
}

impl Sample<'_> {
    /// Copies the message out.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at the `len` (<= slot size, checked by `peek`) payload
        // bytes of a published slot inside the mapping. The ring protocol keeps a
        // correct producer from writing the slot until the consumer releases it
        // (`tail`, stored when the sample drops), so the bytes do not change while
        // this borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }
}

impl Drop for Sample<'_> {
    #[inline]
    fn drop(&mut self) {
        let c = &mut *self.consumer;
        if c.core.release(&c.chan) {
            c.chan.space_bell().ring();
        }
    }
}

/// The sending end of an spsc channel of `T` messages.
pub struct TypedProducer<T: Pod> {
    inner: Producer,
    _t: PhantomData<fn(T)>,
}

impl<T: Pod> fmt::Debug for TypedProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedProducer")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

fn typed_options<T: Pod>(capacity: usize) -> Options {
    Options {
        msg: MsgType::of::<T>(),
        ..Options::new().capacity(capacity).slot_size(size_of::<T>())
    }
}

fn check_align<T>(name: &str) -> Result<(), ChannelError> {
    if align_of::<T>() > STAMP_LEN {
        return Err(ChannelError::InvalidParameter {
            name: name.to_owned(),
            what: "message alignment",
            value: align_of::<T>() as u64,
            reason: "typed messages may be aligned to at most 8 bytes",
        });
    }
    Ok(())
}

impl<T: Pod> TypedProducer<T> {
    /// Creates a channel of `capacity` `T`s and attaches as its producer.
    ///
    /// # Errors
    /// As [`Producer::create`]; `T` may be aligned to at most 8 bytes.
    pub fn create(name: &str, capacity: usize) -> Result<Self, ChannelError> {
        Self::get(name, How::Create, capacity)
    }

    /// Opens an existing channel of `T` and attaches as its producer.
    ///
    /// # Errors
    /// As [`Producer::open`]; [`ChannelError::Layout`] if it carries another type.
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::get(name, How::Open, 1)
    }

    fn get(name: &str, how: How, capacity: usize) -> Result<Self, ChannelError> {
        check_align::<T>(name)?;
        let chan = Chan::get(name, how, &typed_options::<T>(capacity))?;
        Ok(Self {
            inner: Producer::attach(chan)?,
            _t: PhantomData,
        })
    }

    /// Sends a copy of `msg` without waiting.
    ///
    /// # Errors
    /// As [`Producer::try_send`]; `Full` and `Disconnected` hand `msg` back.
    pub fn try_send(&mut self, msg: T) -> Result<(), TrySendError<T>> {
        self.inner
            .try_send(bytemuck::bytes_of(&msg))
            .map_err(|e| match e {
                TrySendError::Full(()) => TrySendError::Full(msg),
                TrySendError::Disconnected(()) => TrySendError::Disconnected(msg),
                TrySendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
                TrySendError::Corrupt(c) => TrySendError::Corrupt(c),
            })
    }

    /// Sends a copy of `msg`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::send`].
    pub fn send(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.inner
            .send(bytemuck::bytes_of(&msg))
            .map_err(|e| with_msg(e, msg))
    }

    /// Sends a copy of `msg`, waiting for room up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::send_timeout`].
    pub fn send_timeout(&mut self, msg: T, timeout: Duration) -> Result<(), SendError<T>> {
        self.inner
            .send_timeout(bytemuck::bytes_of(&msg), timeout)
            .map_err(|e| with_msg(e, msg))
    }

    /// Loans the next slot as a `&mut T` (its old contents are whatever was there),
    /// waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::loan`].
    pub fn loan(&mut self) -> Result<TypedLoan<'_, T>, SendError> {
        Ok(TypedLoan {
            inner: self.inner.loan(size_of::<T>())?,
            _t: PhantomData,
        })
    }

    /// Sends a copy of `msg`, as a future: [`TypedProducer::send`] without blocking
    /// a thread (see [`Producer::send_async`]).
    ///
    /// Cancel-safe: the message is written only when the future completes.
    ///
    /// # Errors
    /// As [`TypedProducer::send`].
    pub async fn send_async(&mut self, msg: T) -> Result<(), SendError<T>> {
        self.inner
            .send_async(bytemuck::bytes_of(&msg))
            .await
            .map_err(|e| with_msg(e, msg))
    }
}

fn with_msg<T>(e: SendError, msg: T) -> SendError<T> {
    match e {
        SendError::Timeout(()) => SendError::Timeout(msg),
        SendError::Disconnected(()) => SendError::Disconnected(msg),
        SendError::TooLarge { len, max } => SendError::TooLarge { len, max },
        SendError::Corrupt(c) => SendError::Corrupt(c),
    }
}

/// A slot loaned as a `T`; see [`Loan`].
pub struct TypedLoan<'a, T: Pod> {
    inner: Loan<'a>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Pod> fmt::Debug for TypedLoan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedLoan").finish_non_exhaustive()
    }
}

impl<T: Pod> TypedLoan<'_, T> {
    /// Publishes the message.
    pub fn send(self) {
        self.inner.send();
    }
}

impl<T: Pod> Deref for TypedLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // The payload is 8-aligned (64-aligned slot + 8) and `align_of::<T>() <= 8`
        // (checked at attach), and exactly `size_of::<T>()` long.
        bytemuck::from_bytes(&self.inner)
    }
}

impl<T: Pod> DerefMut for TypedLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        bytemuck::from_bytes_mut(&mut self.inner)
    }
}

/// The receiving end of an spsc channel of `T` messages.
pub struct TypedConsumer<T: Pod> {
    inner: Consumer,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> fmt::Debug for TypedConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedConsumer")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: Pod> TypedConsumer<T> {
    /// Creates a channel of `capacity` `T`s and attaches as its consumer.
    ///
    /// # Errors
    /// As [`TypedProducer::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self, ChannelError> {
        Self::get(name, How::Create, capacity)
    }

    /// Opens an existing channel of `T` and attaches as its consumer.
    ///
    /// # Errors
    /// As [`TypedProducer::open`].
    pub fn open(name: &str) -> Result<Self, ChannelError> {
        Self::get(name, How::Open, 1)
    }

    fn get(name: &str, how: How, capacity: usize) -> Result<Self, ChannelError> {
        check_align::<T>(name)?;
        let chan = Chan::get(name, how, &typed_options::<T>(capacity))?;
        Ok(Self {
            inner: Consumer::attach(chan)?,
            _t: PhantomData,
        })
    }

    fn typed(s: Sample<'_>) -> Result<TypedSample<'_, T>, RecvError> {
        if s.len() != size_of::<T>() {
            return Err(RecvError::Corrupt(Corrupt {
                what: "typed message length",
                value: s.len() as u64,
            }));
        }
        Ok(TypedSample {
            inner: s,
            _t: PhantomData,
        })
    }

    /// The next message, borrowed in place, if one is waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    pub fn try_recv_ref(&mut self) -> Result<TypedSample<'_, T>, RecvError> {
        Self::typed(self.inner.try_recv()?)
    }

    /// The next message, borrowed in place, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv_ref(&mut self) -> Result<TypedSample<'_, T>, RecvError> {
        Self::typed(self.inner.recv()?)
    }

    /// A copy of the next message, if one is waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`].
    pub fn try_recv(&mut self) -> Result<T, RecvError> {
        Ok(*self.try_recv_ref()?)
    }

    /// A copy of the next message, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub fn recv(&mut self) -> Result<T, RecvError> {
        Ok(*self.recv_ref()?)
    }

    /// A copy of the next message, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvError> {
        Ok(*Self::typed(self.inner.recv_timeout(timeout)?)?)
    }

    /// The next message, borrowed in place, as a future: [`TypedConsumer::recv_ref`]
    /// without blocking a thread (see [`Consumer::recv_async`]).
    ///
    /// Cancel-safe: a message is taken only when the future completes.
    ///
    /// # Errors
    /// As [`TypedConsumer::recv_ref`].
    pub async fn recv_ref_async(&mut self) -> Result<TypedSample<'_, T>, RecvError> {
        Self::typed(self.inner.recv_async().await?)
    }

    /// A copy of the next message, as a future (cancel-safe like
    /// [`TypedConsumer::recv_ref_async`]).
    ///
    /// # Errors
    /// As [`TypedConsumer::recv`].
    pub async fn recv_async(&mut self) -> Result<T, RecvError> {
        Ok(*self.recv_ref_async().await?)
    }
}

/// The WaitSet protocol: as [`Consumer`]'s.
impl<T: Pod> crate::waitset::sealed::Sealed for TypedConsumer<T> {
    fn announce(&mut self) -> (bool, u32) {
        self.inner.announce()
    }

    fn arm(&mut self, token: u32) -> crate::waitset::Arm<'_> {
        self.inner.arm(token)
    }

    fn disarm(&mut self, token: u32) {
        self.inner.disarm(token);
    }
}

/// A received `T`, borrowed in place; see [`Sample`].
pub struct TypedSample<'a, T: Pod> {
    inner: Sample<'a>,
    _t: PhantomData<&'a T>,
}

impl<T: Pod> fmt::Debug for TypedSample<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSample").finish_non_exhaustive()
    }
}

impl<T: Pod> Deref for TypedSample<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Length checked in `typed`; 8-aligned payload and `align_of::<T>() <= 8`.
        bytemuck::from_bytes(&self.inner)
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
}

impl Consumer {
    pub(super) fn fuzz_over(map: &Mapped) -> Result<Self, ChannelError> {
        Self::attach(Chan::again(map, &Options::new())?)
    }
}
