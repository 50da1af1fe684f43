//! Publish/subscribe channels: one [`Publisher`], up to a bound of [`Subscriber`]s
//! fixed at creation, each with its own cursor.
//!
//! ```
//! use shmipc::channel::pubsub::{Options, Overflow, Subscriber};
//! # let name = format!("doc-pubsub-{}", std::process::id());
//! let mut publisher = Options::new()
//!     .capacity(64)
//!     .slot_size(128)
//!     .overflow(Overflow::Overwrite)
//!     .create_publisher(&name)?;
//! let mut a = Subscriber::open(&name)?; // usually other processes
//! let mut b = Subscriber::open(&name)?;
//! publisher.send(b"tick")?;
//! assert_eq!(a.recv()?.data, b"tick");
//! assert_eq!(b.recv()?.data, b"tick");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * A subscriber starts at the next message published after it joins, or up to
//!   `history` messages earlier ([`Subscriber::open_with_history`]) if they are
//!   still in the ring.
//! * [`Overflow::Overwrite`]: the publisher never waits; a subscriber that falls a
//!   ring behind loses the oldest messages and is told how many
//!   ([`Message::lost`]). [`Overflow::Block`]: the publisher waits until every live
//!   subscriber has read the message it would overwrite.
//! * A subscriber never returns a torn message: every slot is guarded by a sequence
//!   lock (`pubsub_ring.rs`), and payloads are copied in and out with atomic word
//!   accesses, so messages are copied, not loaned, on both sides.
//! * A subscriber that dies (even by SIGKILL) stops counting: in block mode the
//!   publisher notices when it waits on it, frees its place and goes on; its place
//!   is reused by the next subscriber. A publisher that leaves or dies makes
//!   subscribers' receives return [`RecvError::Disconnected`] once they have read
//!   everything; a new publisher carries on the numbering and existing subscribers
//!   pick it up.
//!
//! # Layout of the segment
//!
//! ```text
//!   0  layout header (kind pubsub; params: capacity | max subscribers << 32,
//!      slot size | overflow << 32, type size | align << 32, type hash)
//!  64  publisher token, attaches
//! 128  head: messages published                       (publisher writes)
//! 192  data bell: seq, sleepers                       (subscribers sleep)
//! 256  space bell: seq, sleepers                      (block mode: publisher sleeps)
//! 320  subscriber records, 64 bytes each: token, attaches, cursor
//!  S   slots (S = 128-aligned): stamp, length, payload words; stride a multiple of 64
//! ```

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::layout::{Kind, LayoutError};
use crate::segment::Persistence;

use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::pubsub_ring::{Geometry, PubSubSlots, PublisherCore, Read, SubscriberCore};
use super::shared::{self, line_up, Common, How, Mapped, MsgType, Words};
use super::shim::AtomicU64;
use super::{ChannelError, RecvError, SendError, TrySendError};

const OFF_PUBLISHER: usize = 64;
const OFF_HEAD: usize = 128;
const OFF_DATA_BELL: usize = 192;
const OFF_SPACE_BELL: usize = 256;
const OFF_SUBS: usize = 320;
const SUB_LEN: usize = 64;
const SLOT_HEADER: usize = 16;
const MAX_SLOT: u64 = 1 << 31;
const MAX_CAPACITY: u64 = 1 << 31;
const MAX_SUBSCRIBERS: u64 = 1 << 16;
const PEER_CHECK: Duration = Duration::from_millis(10);

/// What the publisher does when the ring is full of messages some subscriber has
/// not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Overwrite the oldest; the slow subscriber is told how many it lost.
    #[default]
    Overwrite,
    /// Wait until every live subscriber has read the oldest.
    Block,
}

/// Settings for creating a pubsub channel.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    capacity: u64,
    slot_size: u64,
    max_subscribers: u64,
    overflow: Overflow,
    history: u64,
    common: Common,
    msg: MsgType,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: 256 slots of 1024 bytes, 16 subscribers, overwrite, no history.
    pub fn new() -> Self {
        Self {
            capacity: 256,
            slot_size: 1024,
            max_subscribers: 16,
            overflow: Overflow::Overwrite,
            history: 0,
            common: Common::default(),
            msg: MsgType::BYTES,
        }
    }

    /// Slots in the ring, rounded up to a power of two (2 to 2^31).
    pub fn capacity(mut self, slots: usize) -> Self {
        self.capacity = slots as u64;
        self
    }

    /// Largest message in bytes (at most 2^31).
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.slot_size = bytes as u64;
        self
    }

    /// Most subscribers at a time (1 to 65536).
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n as u64;
        self
    }

    /// What a full ring does to the publisher.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// For subscribers made with these options: how many already published
    /// messages to start with, if still in the ring (at most capacity - 1).
    pub fn history(mut self, messages: usize) -> Self {
        self.history = messages as u64;
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

    /// Creates the channel or opens it and attaches as a subscriber.
    ///
    /// # Errors
    /// As [`Options::create_publisher`] and [`Subscriber::open`].
    pub fn create_or_open_subscriber(&self, name: &str) -> Result<Subscriber, ChannelError> {
        Subscriber::attach(Chan::get(name, How::CreateOrOpen, self)?, self.history)
    }

    fn validate(&self, name: &str) -> Result<Params, ChannelError> {
        let invalid = |what, value, reason| ChannelError::InvalidParameter {
            name: name.to_owned(),
            what,
            value,
            reason,
        };
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(invalid(
                "capacity",
                self.capacity,
                "it must be 1 to 2^31 slots",
            ));
        }
        if self.slot_size > MAX_SLOT {
            return Err(invalid(
                "slot size",
                self.slot_size,
                "it must be at most 2^31 bytes",
            ));
        }
        if self.max_subscribers == 0 || self.max_subscribers > MAX_SUBSCRIBERS {
            return Err(invalid(
                "max subscribers",
                self.max_subscribers,
                "it must be 1 to 65536",
            ));
        }
        let p = Params {
            capacity: self.capacity.next_power_of_two().max(2),
            slot_size: self.slot_size,
            max_subscribers: self.max_subscribers,
            overflow: self.overflow,
        };
        p.sizes().ok_or_else(|| {
            invalid(
                "capacity x slot size",
                self.capacity,
                "the ring would not fit in memory",
            )
        })?;
        Ok(p)
    }
}

#[derive(Debug, Clone, Copy)]
struct Params {
    capacity: u64,
    slot_size: u64,
    max_subscribers: u64,
    overflow: Overflow,
}

impl Params {
    /// Offset of the slots, slot stride, segment size; None on overflow.
    fn sizes(&self) -> Option<(u64, u64, u64)> {
        let subs_end =
            (OFF_SUBS as u64).checked_add(self.max_subscribers.checked_mul(SUB_LEN as u64)?)?;
        let slots = subs_end.checked_add(127)? & !127;
        let words = self.slot_size.checked_add(7)? / 8;
        let stride = line_up((SLOT_HEADER as u64).checked_add(words.checked_mul(8)?)?)?;
        let size = stride.checked_mul(self.capacity)?.checked_add(slots)?;
        (size <= isize::MAX as u64).then_some((slots, stride, size))
    }

    fn pack(&self, msg: &MsgType) -> [u64; 4] {
        let overflow = match self.overflow {
            Overflow::Overwrite => 0u64,
            Overflow::Block => 1,
        };
        [
            self.capacity | (self.max_subscribers << 32),
            self.slot_size | (overflow << 32),
            msg.packed(),
            msg.hash,
        ]
    }
}

/// A mapped and validated pubsub segment.
#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    geo: Geometry,
    overflow: Overflow,
    max_subscribers: usize,
    slots: usize,
    stride: usize,
}

impl Chan {
    fn get(name: &str, how: How, opts: &Options) -> Result<Self, ChannelError> {
        let (params, size) = if how == How::Open {
            (opts.validate(name)?, 0)
        } else {
            let p = opts.validate(name)?;
            let size = p.sizes().map_or(0, |s| s.2);
            (p, size)
        };
        let (map, header) = shared::get(
            name,
            how,
            Kind::PubSub,
            &opts.common,
            size,
            params.pack(&opts.msg),
            |_| Ok(()),
        )?;
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let [p0, p1, packed, hash] = header.params;
        opts.msg.check(Kind::PubSub, packed, hash).map_err(layout)?;
        let bad = |what, value| {
            layout(LayoutError::Mismatch {
                kind: "pubsub",
                what,
                found: value,
                expected: 0,
            })
        };
        let capacity = p0 & 0xffff_ffff;
        let max_subscribers = p0 >> 32;
        let slot_size = p1 & 0xffff_ffff;
        let overflow = match p1 >> 32 {
            0 => Overflow::Overwrite,
            1 => Overflow::Block,
            v => return Err(bad("overflow policy", v)),
        };
        if !capacity.is_power_of_two() || !(2..=MAX_CAPACITY).contains(&capacity) {
            return Err(bad(
                "capacity (not a power of two from 2 to 2^31)",
                capacity,
            ));
        }
        if slot_size > MAX_SLOT {
            return Err(bad("slot size (over 2^31)", slot_size));
        }
        if max_subscribers == 0 || max_subscribers > MAX_SUBSCRIBERS {
            return Err(bad("max subscribers (not 1 to 65536)", max_subscribers));
        }
        let found = Params {
            capacity,
            slot_size,
            max_subscribers,
            overflow,
        };
        let (slots, stride, size) = found.sizes().ok_or_else(|| bad("ring size", capacity))?;
        let len = usize::try_from(size).map_err(|_| bad("ring size", size))?;
        if len > map.view.len() {
            return Err(layout(LayoutError::TooSmall {
                what: "pubsub ring",
                len: map.view.len(),
                need: len,
            }));
        }
        let words = Words::new(&map.view, len).ok_or_else(|| bad("segment access", 0))?;
        Ok(Self {
            map,
            words,
            geo: Geometry {
                capacity,
                max_len: slot_size as u32,
            },
            overflow,
            max_subscribers: max_subscribers as usize,
            slots: slots as usize,
            stride: stride as usize,
        })
    }

    fn publisher(&self) -> Place<'_> {
        Place {
            token: self.words.u64(OFF_PUBLISHER),
            attaches: self.words.u64(OFF_PUBLISHER + 8),
        }
    }

    fn subscriber(&self, i: usize) -> Place<'_> {
        let off = OFF_SUBS + i * SUB_LEN;
        Place {
            token: self.words.u64(off),
            attaches: self.words.u64(off + 8),
        }
    }

    fn cursor(&self, i: usize) -> &AtomicU64 {
        self.words.u64(OFF_SUBS + i * SUB_LEN + 16)
    }

    fn bell(&self, off: usize) -> Bell<'_> {
        Bell {
            seq: self.words.u32(off),
            sleepers: self.words.u32(off + 4),
        }
    }

    fn slot_off(&self, slot: usize) -> usize {
        self.slots + slot * self.stride
    }

    /// See `spsc::Chan::touch`.
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
}

impl PubSubSlots for Chan {
    #[inline]
    fn stamp(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot))
    }
    #[inline]
    fn len(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot) + 8)
    }
    #[inline]
    fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot) + SLOT_HEADER + 8 * i)
    }
    #[inline]
    fn head(&self) -> &AtomicU64 {
        self.words.u64(OFF_HEAD)
    }
}

/// The publishing end of a pubsub channel.
pub struct Publisher {
    chan: Chan,
    core: PublisherCore,
    /// Block mode: messages up to this number may be written without looking at
    /// the subscribers' cursors again.
    free_until: u64,
    peer_check: Every,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("name", &self.chan.map.name)
            .field("capacity", &self.chan.geo.capacity)
            .field("slot_size", &self.chan.geo.max_len)
            .field("overflow", &self.chan.overflow)
            .field("next", &self.core.head())
            .finish()
    }
}

impl Publisher {
    /// Creates a channel of `capacity` slots of `slot_size` bytes (overwrite mode,
    /// 16 subscribers; see [`Options`]) and attaches as its publisher.
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
    /// not a byte pubsub channel, [`ChannelError::Busy`] if a live publisher holds it.
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
        let core = PublisherCore::attach(chan.geo, &chan);
        Ok(Self {
            free_until: core.head(),
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

    /// The overflow policy the channel was created with.
    pub fn overflow(&self) -> Overflow {
        self.chan.overflow
    }

    /// Live subscribers now (a SIGKILLed one counts until noticed).
    pub fn subscribers(&self) -> usize {
        (0..self.chan.max_subscribers)
            .filter(|&i| self.chan.subscriber(i).token.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Block mode: whether the next message may be written. Rescans the cursors
    /// when the cached bound is reached, and at least every half ring so that a
    /// subscriber that joined since is taken into account. With `reap`, frees the
    /// places of dead subscribers that hold the publisher up.
    fn has_room(&mut self, reap: bool) -> bool {
        let head = self.core.head();
        if self.chan.overflow == Overflow::Overwrite || head < self.free_until {
            return true;
        }
        let cap = self.chan.geo.capacity;
        let mut until = head.wrapping_add((cap / 2).max(1));
        let mut blocked = false;
        for i in 0..self.chan.max_subscribers {
            let place = self.chan.subscriber(i);
            let tok = place.token.load(Ordering::Acquire);
            if tok == 0 {
                continue;
            }
            // Acquire pairs with the subscriber's Release store after reading.
            let c = self.chan.cursor(i).load(Ordering::Acquire);
            if self.core.blocks(c) {
                if reap && !peer::alive(tok) {
                    // Dead: free its place (unless it changed hands meanwhile).
                    let _ =
                        place
                            .token
                            .compare_exchange(tok, 0, Ordering::AcqRel, Ordering::Relaxed);
                    continue;
                }
                blocked = true;
            } else if head.wrapping_sub(c) < cap {
                until = until.min(c.wrapping_add(cap));
            }
        }
        if blocked {
            return false;
        }
        self.free_until = until;
        true
    }

    fn send_with(
        &mut self,
        msg: &[u8],
        deadline: Option<Option<Instant>>,
    ) -> Result<(), SendError> {
        if msg.len() > self.chan.geo.max_len as usize {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.slot_size(),
            });
        }
        if !self.has_room(false) {
            let reap_now = self.peer_check.due();
            if !self.has_room(reap_now) {
                let Some(deadline) = deadline else {
                    return Err(SendError::Timeout(()));
                };
                // A copy of the word accessor, so the bell does not borrow `self`.
                let words = self.chan.words;
                let bell = Bell {
                    seq: words.u32(OFF_SPACE_BELL),
                    sleepers: words.u32(OFF_SPACE_BELL + 4),
                };
                let ok = bell.wait_for(deadline, |deep| {
                    let reap = deep && self.peer_check.due();
                    self.has_room(reap).then_some(())
                });
                if ok.is_none() {
                    return Err(SendError::Timeout(()));
                }
            }
        }
        self.core.write(&self.chan, msg);
        self.chan.bell(OFF_DATA_BELL).ring();
        Ok(())
    }

    /// Publishes a copy of `msg` without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] (block mode: a live subscriber has not read the
    /// oldest message), [`TrySendError::TooLarge`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.send_with(msg, None).map_err(|e| match e {
            SendError::Timeout(()) => TrySendError::Full(()),
            SendError::Disconnected(()) => TrySendError::Disconnected(()),
            SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
            SendError::Corrupt(c) => TrySendError::Corrupt(c),
        })
    }

    /// Publishes a copy of `msg`, waiting as long as it takes in block mode.
    ///
    /// # Errors
    /// [`SendError::TooLarge`].
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_with(msg, Some(None))
    }

    /// Publishes a copy of `msg`, waiting up to `timeout` in block mode.
    ///
    /// # Errors
    /// [`SendError::Timeout`], [`SendError::TooLarge`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_with(msg, Some(Some(Instant::now() + timeout)))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.chan.publisher().leave();
        self.chan.bell(OFF_DATA_BELL).ring_always();
    }
}

/// A message received from a pubsub channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Messages overwritten before this subscriber read them, just before this one
    /// (always 0 in block mode, except while joining).
    pub lost: u64,
    /// The message.
    pub data: Vec<u8>,
}

/// A subscribing end of a pubsub channel.
pub struct Subscriber {
    chan: Chan,
    core: SubscriberCore,
    index: usize,
    peer_check: Every,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.chan.map.name)
            .field("index", &self.index)
            .field("next", &self.core.cursor())
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

    /// As [`Subscriber::open`], starting up to `history` messages back if they are
    /// still in the ring.
    ///
    /// # Errors
    /// As [`Subscriber::open`].
    pub fn open_with_history(name: &str, history: usize) -> Result<Self, ChannelError> {
        Self::attach(Chan::get(name, How::Open, &Options::new())?, history as u64)
    }

    fn attach(chan: Chan, history: u64) -> Result<Self, ChannelError> {
        // The starting point is read before the place is taken: whoever sees this
        // subscriber registered (an inspector, then a publisher it tells) sees its
        // messages delivered, never one published between the two steps skipped.
        let core = SubscriberCore::attach(chan.geo, &chan, history);
        let Some(index) =
            (0..chan.max_subscribers).find(|&i| chan.subscriber(i).claim() == Claim::Taken)
        else {
            return Err(ChannelError::Full {
                name: chan.map.name.clone(),
                max: chan.max_subscribers as u32,
            });
        };
        // Release pairs with the publisher's Acquire load in `has_room`.
        chan.cursor(index).store(core.cursor(), Ordering::Release);
        Ok(Self {
            chan,
            core,
            index,
            peer_check: Every::new(PEER_CHECK),
        })
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.chan.map.name
    }

    /// The overflow policy the channel was created with.
    pub fn overflow(&self) -> Overflow {
        self.chan.overflow
    }

    /// The number of the next message this subscriber will receive: messages are
    /// numbered from 0 in the order published since the channel was created.
    pub fn next_seq(&self) -> u64 {
        self.core.cursor()
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    /// Whether a live publisher is attached now.
    pub fn publisher_present(&self) -> bool {
        let tok = self.chan.publisher().token.load(Ordering::Acquire);
        tok != 0 && peer::alive(tok)
    }

    fn next(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Option<Instant>>,
    ) -> Result<u64, RecvError> {
        let Self {
            chan,
            core,
            index,
            peer_check,
        } = self;
        let mut poll = |deep: bool| -> Option<Result<u64, RecvError>> {
            match core.read(&*chan, buf) {
                Ok(Read::Got { lost }) => Some(Ok(lost)),
                Err(c) => Some(Err(RecvError::Corrupt(c))),
                Ok(Read::Empty) => {
                    chan.touch(chan.geo.slot(core.cursor()));
                    let place = chan.publisher();
                    if place.left() || (deep && peer_check.due() && place.gone()) {
                        // Published just before leaving? (Its `leave` is a Release
                        // that our Acquire load saw.)
                        Some(match core.read(&*chan, buf) {
                            Ok(Read::Got { lost }) => Ok(lost),
                            Ok(Read::Empty) => Err(RecvError::Disconnected),
                            Err(c) => Err(RecvError::Corrupt(c)),
                        })
                    } else {
                        None
                    }
                }
            }
        };
        let r = match deadline {
            None => poll(true).unwrap_or(Err(RecvError::Empty)),
            Some(deadline) => {
                let first = poll(false);
                match first {
                    Some(r) => r,
                    None => chan
                        .bell(OFF_DATA_BELL)
                        .wait_for(deadline, poll)
                        .unwrap_or(Err(RecvError::Empty)),
                }
            }
        };
        if r.is_ok() && chan.overflow == Overflow::Block {
            // Release pairs with the publisher's Acquire load in `has_room`: our
            // copy of the slot is done before the publisher may overwrite it.
            chan.cursor(*index).store(core.cursor(), Ordering::Release);
            chan.bell(OFF_SPACE_BELL).ring();
        }
        r
    }

    /// Copies the next message into `buf` (replacing its contents), without
    /// waiting; returns how many messages were lost just before it.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`] (the publisher left or died
    /// and everything it sent has been read), [`RecvError::Corrupt`].
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        self.next(buf, None)
    }

    /// As [`Subscriber::try_recv_into`], waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv_into`], without `Empty`.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        self.next(buf, Some(None))
    }

    /// As [`Subscriber::try_recv_into`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv_into`]; `Empty` when nothing came in time.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, RecvError> {
        self.next(buf, Some(Some(Instant::now() + timeout)))
    }

    /// The next message, without waiting.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv_into`].
    pub fn try_recv(&mut self) -> Result<Message, RecvError> {
        let mut data = Vec::new();
        let lost = self.try_recv_into(&mut data)?;
        Ok(Message { lost, data })
    }

    /// The next message, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Subscriber::recv_into`].
    pub fn recv(&mut self) -> Result<Message, RecvError> {
        let mut data = Vec::new();
        let lost = self.recv_into(&mut data)?;
        Ok(Message { lost, data })
    }

    /// The next message, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Subscriber::recv_into_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message, RecvError> {
        let mut data = Vec::new();
        let lost = self.recv_into_timeout(&mut data, timeout)?;
        Ok(Message { lost, data })
    }
}

/// Async send (block mode): the try-call plus an async wait on the space bell.
impl Publisher {
    /// Publishes a copy of `msg`, waiting for room (block mode) as a future:
    /// [`Publisher::send`] without blocking a thread. In overwrite mode it never
    /// waits.
    ///
    /// Cancel-safe: the message is published only when the future completes;
    /// dropping it while pending publishes nothing.
    ///
    /// # Errors
    /// As [`Publisher::send`].
    pub async fn send_async(&mut self, msg: &[u8]) -> Result<(), SendError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell = Bell {
                seq: words.u32(OFF_SPACE_BELL),
                sleepers: words.u32(OFF_SPACE_BELL + 4),
            };
            bell.poll_async(&mut pending, cx, || match self.send_with(msg, None) {
                Err(SendError::Timeout(())) => None,
                r => Some(r),
            })
        })
        .await
    }
}

/// The WaitSet/async protocol: sleep on the data bell (see `crate::waitset`).
impl crate::waitset::sealed::Sealed for Subscriber {
    fn announce(&mut self) -> bool {
        self.chan.bell(OFF_DATA_BELL).announce();
        true
    }

    fn arm(&mut self) -> crate::waitset::Arm<'_> {
        let Self {
            chan,
            core,
            peer_check,
            ..
        } = self;
        let chan = &*chan;
        chan.bell(OFF_DATA_BELL).arm(|| {
            if core.has_next(chan) {
                return true;
            }
            let place = chan.publisher();
            if place.left() || (peer_check.due() && place.gone()) {
                // Let the receive that follows look at once.
                peer_check.force();
                true
            } else {
                false
            }
        })
    }
}

/// Async receives: plain futures, any executor (see `crate::waitset`).
impl Subscriber {
    /// As [`Subscriber::recv_into`], as a future: the message is copied into `buf`
    /// when it completes; returns how many messages were lost just before it.
    ///
    /// Cancel-safe: a message is taken only when the future completes; dropping it
    /// while pending loses nothing.
    ///
    /// # Errors
    /// As [`Subscriber::recv_into`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| loop {
            pending.clear();
            match self.next(buf, None) {
                Err(RecvError::Empty) => {}
                r => return std::task::Poll::Ready(r),
            }
            match crate::waitset::announce_and_arm(self) {
                crate::waitset::Arm::Ready => {}
                crate::waitset::Arm::Sleep(s) => {
                    pending.register(&s, cx);
                    return std::task::Poll::Pending;
                }
            }
        })
        .await
    }

    /// The next message, as a future (cancel-safe like
    /// [`Subscriber::recv_into_async`]).
    ///
    /// # Errors
    /// As [`Subscriber::recv`].
    pub async fn recv_async(&mut self) -> Result<Message, RecvError> {
        let mut data = Vec::new();
        let lost = self.recv_into_async(&mut data).await?;
        Ok(Message { lost, data })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.chan.subscriber(self.index).leave();
        // A publisher waiting on this subscriber may go on.
        self.chan.bell(OFF_SPACE_BELL).ring_always();
    }
}
