//! Bounded multi-producer multi-consumer queues: any number of [`Producer`]s and
//! [`Consumer`]s (up to a bound of endpoints fixed at creation); each message goes
//! to exactly one consumer.
//!
//! ```
//! use shmipc::channel::mpmc::{Consumer, Options, Producer};
//! # let name = format!("doc-mpmc-{}", std::process::id());
//! let mut p1 = Options::new().capacity(64).slot_size(32).create_producer(&name)?;
//! let mut p2 = Producer::open(&name)?;
//! let mut worker = Consumer::open(&name)?;
//! p1.send(b"job 1")?;
//! p2.send(b"job 2")?;
//! assert_eq!(worker.recv()?, b"job 1");
//! assert_eq!(worker.recv()?, b"job 2");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The algorithm (Vyukov's bounded queue, with reclaiming of slots claimed by dead
//! producers) is in `mpmc_ring.rs`. Messages are copied in and out.
//! A consumer's receives return [`RecvError::Disconnected`] once producers have
//! attached, none is attached and alive, and the queue is empty; a producer's
//! sends fail with `Disconnected` when the queue is full and no consumer is left.
//!
//! # Layout of the segment
//!
//! ```text
//!   0  layout header (kind mpmc; params: capacity | max endpoints << 32, slot size,
//!      type size | align << 32, type hash)
//!  64  enqueue position            (own cache line)
//! 128  dequeue position            (own cache line)
//! 192  data bell                   (consumers sleep)
//! 256  space bell                  (producers sleep)
//! 320  producers ever attached, consumers ever attached
//! 384  endpoint records, 32 bytes each: token, attaches, role (1 producer, 2 consumer)
//!  S   slots (128-aligned): seq, length, owner token, payload words
//! ```

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::layout::{Kind, LayoutError};
use crate::segment::Persistence;

use super::mpmc_ring::{self, Geometry, MpmcSlots, Pop, Push};
use super::notify::{Bell, Every};
use super::peer::{self, Claim, Place};
use super::shared::{self, line_up, Common, How, Mapped, MsgType, Words};
use super::shim::AtomicU64;
use super::{ChannelError, Corrupt, RecvError, SendError, TrySendError};

const OFF_ENQ: usize = 64;
const OFF_DEQ: usize = 128;
const OFF_DATA_BELL: usize = 192;
const OFF_SPACE_BELL: usize = 256;
const OFF_PRODUCERS_EVER: usize = 320;
const OFF_CONSUMERS_EVER: usize = 328;
const OFF_RECORDS: usize = 384;
const RECORD_LEN: usize = 32;
const SLOT_HEADER: usize = 24;
const MAX_SLOT: u64 = 1 << 31;
const MAX_CAPACITY: u64 = 1 << 31;
const MAX_ENDPOINTS: u64 = 1 << 16;
const PEER_CHECK: Duration = Duration::from_millis(10);
const ROLE_PRODUCER: u64 = 1;
const ROLE_CONSUMER: u64 = 2;

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

    /// Unix permission bits of the segment (default `0o600`).
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

#[derive(Debug, Clone, Copy)]
struct Params {
    capacity: u64,
    slot_size: u64,
    max_endpoints: u64,
}

impl Params {
    /// Offset of the slots, stride, segment size; None on overflow.
    fn sizes(&self) -> Option<(u64, u64, u64)> {
        let recs =
            (OFF_RECORDS as u64).checked_add(self.max_endpoints.checked_mul(RECORD_LEN as u64)?)?;
        let slots = recs.checked_add(127)? & !127;
        let words = self.slot_size.checked_add(7)? / 8;
        let stride = line_up((SLOT_HEADER as u64).checked_add(words.checked_mul(8)?)?)?;
        let size = stride.checked_mul(self.capacity)?.checked_add(slots)?;
        (size <= isize::MAX as u64).then_some((slots, stride, size))
    }
}

fn validate(name: &str, o: &Options) -> Result<Params, ChannelError> {
    let invalid = |what, value, reason| ChannelError::InvalidParameter {
        name: name.to_owned(),
        what,
        value,
        reason,
    };
    if o.capacity == 0 || o.capacity > MAX_CAPACITY {
        return Err(invalid(
            "capacity",
            o.capacity,
            "it must be 1 to 2^31 slots",
        ));
    }
    if o.slot_size > MAX_SLOT {
        return Err(invalid(
            "slot size",
            o.slot_size,
            "it must be at most 2^31 bytes",
        ));
    }
    if o.max_endpoints == 0 || o.max_endpoints > MAX_ENDPOINTS {
        return Err(invalid(
            "max endpoints",
            o.max_endpoints,
            "it must be 1 to 65536",
        ));
    }
    let p = Params {
        capacity: o.capacity.next_power_of_two().max(2),
        slot_size: o.slot_size,
        max_endpoints: o.max_endpoints,
    };
    p.sizes().ok_or_else(|| {
        invalid(
            "capacity x slot size",
            o.capacity,
            "the queue would not fit in memory",
        )
    })?;
    Ok(p)
}

#[derive(Debug)]
struct Chan {
    map: Mapped,
    words: Words,
    geo: Geometry,
    max_endpoints: usize,
    slots: usize,
    stride: usize,
}

impl Chan {
    fn get(name: &str, how: How, opts: &Options) -> Result<Self, ChannelError> {
        let p = validate(name, opts)?;
        let (slots0, stride0, size) = p.sizes().unwrap_or((0, 0, 0));
        let msg = MsgType::BYTES;
        let params = [
            p.capacity | (p.max_endpoints << 32),
            p.slot_size,
            msg.packed(),
            msg.hash,
        ];
        let init = |view: &crate::view::View| {
            // Vyukov: slot i starts with seq = i (free for position i).
            for i in 0..p.capacity {
                let off = slots0 + i * stride0;
                view.atomic_u64(off as usize)?.store(i, Ordering::Relaxed);
            }
            Ok(())
        };
        let (map, header) = shared::get(name, how, Kind::Mpmc, &opts.common, size, params, init)?;
        let layout = |source| ChannelError::Layout {
            name: name.to_owned(),
            source,
        };
        let [p0, slot_size, packed, hash] = header.params;
        msg.check(Kind::Mpmc, packed, hash).map_err(layout)?;
        let bad = |what, value| {
            layout(LayoutError::Mismatch {
                kind: "mpmc",
                what,
                found: value,
                expected: 0,
            })
        };
        let capacity = p0 & 0xffff_ffff;
        let max_endpoints = p0 >> 32;
        if !capacity.is_power_of_two() || !(2..=MAX_CAPACITY).contains(&capacity) {
            return Err(bad(
                "capacity (not a power of two from 2 to 2^31)",
                capacity,
            ));
        }
        if slot_size > MAX_SLOT {
            return Err(bad("slot size (over 2^31)", slot_size));
        }
        if max_endpoints == 0 || max_endpoints > MAX_ENDPOINTS {
            return Err(bad("max endpoints (not 1 to 65536)", max_endpoints));
        }
        let found = Params {
            capacity,
            slot_size,
            max_endpoints,
        };
        let (slots, stride, size) = found.sizes().ok_or_else(|| bad("queue size", capacity))?;
        let len = usize::try_from(size).map_err(|_| bad("queue size", size))?;
        if len > map.view.len() {
            return Err(layout(LayoutError::TooSmall {
                what: "mpmc queue",
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
            max_endpoints: max_endpoints as usize,
            slots: slots as usize,
            stride: stride as usize,
        })
    }

    fn record(&self, i: usize) -> (Place<'_>, &AtomicU64) {
        let off = OFF_RECORDS + i * RECORD_LEN;
        (
            Place {
                token: self.words.u64(off),
                attaches: self.words.u64(off + 8),
                scope: self.map.view.liveness(),
            },
            self.words.u64(off + 16),
        )
    }

    /// Takes a free endpoint record for `role`.
    fn register(&self, role: u64) -> Result<usize, ChannelError> {
        for i in 0..self.max_endpoints {
            let (place, r) = self.record(i);
            if place.claim() == Claim::Taken {
                r.store(role, Ordering::Release);
                let ever = if role == ROLE_PRODUCER {
                    OFF_PRODUCERS_EVER
                } else {
                    OFF_CONSUMERS_EVER
                };
                self.words.u64(ever).fetch_add(1, Ordering::AcqRel);
                return Ok(i);
            }
        }
        Err(ChannelError::Full {
            name: self.map.name.clone(),
            max: self.max_endpoints as u32,
        })
    }

    /// True when endpoints of `role` have attached and none is attached and alive.
    /// Costs a scan of the records and a liveness check each: rate-limit it.
    fn all_gone(&self, role: u64) -> bool {
        let ever = if role == ROLE_PRODUCER {
            OFF_PRODUCERS_EVER
        } else {
            OFF_CONSUMERS_EVER
        };
        if self.words.u64(ever).load(Ordering::Acquire) == 0 {
            return false;
        }
        !(0..self.max_endpoints).any(|i| {
            let (place, r) = self.record(i);
            let tok = place.token.load(Ordering::Acquire);
            tok != 0 && r.load(Ordering::Acquire) == role && peer::alive(place.scope, tok)
        })
    }

    /// Live endpoints of `role` attached now (a scan, with a liveness check each).
    fn live(&self, role: u64) -> usize {
        (0..self.max_endpoints)
            .filter(|&i| {
                let (place, r) = self.record(i);
                let tok = place.token.load(Ordering::Acquire);
                tok != 0 && r.load(Ordering::Acquire) == role && peer::alive(place.scope, tok)
            })
            .count()
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
}

impl MpmcSlots for Chan {
    #[inline]
    fn seq(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot))
    }
    #[inline]
    fn len(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot) + 8)
    }
    #[inline]
    fn owner(&self, slot: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot) + 16)
    }
    #[inline]
    fn word(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.words.u64(self.slot_off(slot) + SLOT_HEADER + 8 * i)
    }
    #[inline]
    fn enqueue_pos(&self) -> &AtomicU64 {
        self.words.u64(OFF_ENQ)
    }
    #[inline]
    fn dequeue_pos(&self) -> &AtomicU64 {
        self.words.u64(OFF_DEQ)
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

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.chan.geo.max_len as usize
    }

    fn attempt(&mut self, msg: &[u8], deep: bool) -> Option<Result<(), SendError>> {
        match mpmc_ring::push(
            self.chan.geo,
            &self.chan,
            peer::me(self.chan.map.view.liveness()),
            msg,
        ) {
            Push::Done => {
                self.chan.bell(OFF_DATA_BELL).ring();
                Some(Ok(()))
            }
            Push::Reclaimed => Some(Err(SendError::Corrupt(Corrupt {
                what: "slot reclaimed from this live producer",
                value: u64::from(std::process::id()),
            }))),
            Push::Full => (deep && self.peer_check.due() && self.chan.all_gone(ROLE_CONSUMER))
                .then_some(Err(SendError::Disconnected(()))),
        }
    }

    fn send_with(
        &mut self,
        msg: &[u8],
        deadline: Option<Option<Instant>>,
    ) -> Result<(), SendError> {
        if msg.len() > self.slot_size() {
            return Err(SendError::TooLarge {
                len: msg.len(),
                max: self.slot_size(),
            });
        }
        if let Some(r) = self.attempt(msg, false) {
            return r;
        }
        let Some(deadline) = deadline else {
            return self
                .attempt(msg, true)
                .unwrap_or(Err(SendError::Timeout(())));
        };
        let words = self.chan.words;
        let bell = Bell {
            seq: words.u32(OFF_SPACE_BELL),
            sleepers: words.u32(OFF_SPACE_BELL + 4),
        };
        bell.wait_for(deadline, |deep| self.attempt(msg, deep))
            .unwrap_or(Err(SendError::Timeout(())))
    }

    /// Copies `msg` into the queue without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`], [`TrySendError::Disconnected`] (full, and no
    /// consumer left), [`TrySendError::TooLarge`].
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), TrySendError> {
        self.send_with(msg, None).map_err(|e| match e {
            SendError::Timeout(()) => TrySendError::Full(()),
            SendError::Disconnected(()) => TrySendError::Disconnected(()),
            SendError::TooLarge { len, max } => TrySendError::TooLarge { len, max },
            SendError::Corrupt(c) => TrySendError::Corrupt(c),
        })
    }

    /// Copies `msg` into the queue, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`Producer::try_send`], without `Full`.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_with(msg, Some(None))
    }

    /// Copies `msg` into the queue, waiting for room up to `timeout`.
    ///
    /// # Errors
    /// As [`Producer::send`], and [`SendError::Timeout`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_with(msg, Some(Some(Instant::now() + timeout)))
    }
}

/// Async send: the try-call plus an async wait on the space bell.
impl Producer {
    /// Copies `msg` into the queue, waiting for room as a future:
    /// [`Producer::send`] without blocking a thread.
    ///
    /// Cancel-safe: the message is queued only when the future completes; dropping
    /// it while pending queues nothing.
    ///
    /// # Errors
    /// As [`Producer::send`].
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

/// Async receive: the try-call plus an async wait on the data bell.
impl Consumer {
    /// As [`Consumer::recv_into`], as a future.
    ///
    /// Cancel-safe: a message is taken only when the future completes; dropping it
    /// while pending takes nothing (another consumer gets the message).
    ///
    /// # Errors
    /// As [`Consumer::recv_into`].
    pub async fn recv_into_async(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let mut pending = crate::waitset::Pending::default();
        std::future::poll_fn(|cx| {
            let words = self.chan.words;
            let bell = Bell {
                seq: words.u32(OFF_DATA_BELL),
                sleepers: words.u32(OFF_DATA_BELL + 4),
            };
            bell.poll_async(&mut pending, cx, || match self.recv_with(buf, None) {
                Err(RecvError::Empty) => None,
                r => Some(r),
            })
        })
        .await
    }

    /// As [`Consumer::recv`], as a future (cancel-safe like
    /// [`Consumer::recv_into_async`]).
    ///
    /// # Errors
    /// As [`Consumer::recv`].
    pub async fn recv_async(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into_async(&mut v).await.map(|()| v)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.chan.record(self.index).0.leave();
        self.chan.bell(OFF_DATA_BELL).ring_always();
    }
}

/// A consuming end of an mpmc queue.
pub struct Consumer {
    chan: Chan,
    index: usize,
    peer_check: Every,
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
            peer_check: Every::new(PEER_CHECK),
        })
    }

    fn attempt(&mut self, buf: &mut Vec<u8>, deep: bool) -> Option<Result<(), RecvError>> {
        let geo = self.chan.geo;
        let got = match mpmc_ring::pop(geo, &self.chan, buf) {
            Err(c) => return Some(Err(RecvError::Corrupt(c))),
            Ok(Pop::Got) => true,
            Ok(Pop::Stall(owner))
                if deep && owner != 0 && !peer::alive(self.chan.map.view.liveness(), owner) =>
            {
                match mpmc_ring::reclaim(geo, &self.chan, owner, buf) {
                    Ok(Pop::Got) => true,
                    Ok(_) => return None,
                    Err(c) => return Some(Err(RecvError::Corrupt(c))),
                }
            }
            Ok(_) => false,
        };
        if got {
            self.chan.bell(OFF_SPACE_BELL).ring();
            return Some(Ok(()));
        }
        if deep && self.peer_check.due() && self.chan.all_gone(ROLE_PRODUCER) {
            // Look once more: the last producer may have sent just before leaving.
            return Some(match mpmc_ring::pop(geo, &self.chan, buf) {
                Ok(Pop::Got) => {
                    self.chan.bell(OFF_SPACE_BELL).ring();
                    Ok(())
                }
                Ok(_) => Err(RecvError::Disconnected),
                Err(c) => Err(RecvError::Corrupt(c)),
            });
        }
        None
    }

    fn recv_with(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Option<Instant>>,
    ) -> Result<(), RecvError> {
        if let Some(r) = self.attempt(buf, false) {
            return r;
        }
        let Some(deadline) = deadline else {
            return self.attempt(buf, true).unwrap_or(Err(RecvError::Empty));
        };
        let words = self.chan.words;
        let bell = Bell {
            seq: words.u32(OFF_DATA_BELL),
            sleepers: words.u32(OFF_DATA_BELL + 4),
        };
        bell.wait_for(deadline, |deep| self.attempt(buf, deep))
            .unwrap_or(Err(RecvError::Empty))
    }

    /// Copies the next message into `buf` (replacing its contents), without waiting.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Disconnected`], [`RecvError::Corrupt`].
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        self.recv_with(buf, None)
    }

    /// As [`Consumer::try_recv_into`], waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::try_recv_into`], without `Empty`.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        self.recv_with(buf, Some(None))
    }

    /// As [`Consumer::try_recv_into`], waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::try_recv_into`].
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), RecvError> {
        self.recv_with(buf, Some(Some(Instant::now() + timeout)))
    }

    /// The next message, without waiting.
    ///
    /// # Errors
    /// As [`Consumer::try_recv_into`].
    pub fn try_recv(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.try_recv_into(&mut v).map(|()| v)
    }

    /// The next message, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Consumer::recv_into`].
    pub fn recv(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v).map(|()| v)
    }

    /// The next message, waiting up to `timeout`.
    ///
    /// # Errors
    /// As [`Consumer::recv_into_timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into_timeout(&mut v, timeout).map(|()| v)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.chan.record(self.index).0.leave();
        self.chan.bell(OFF_SPACE_BELL).ring_always();
    }
}
