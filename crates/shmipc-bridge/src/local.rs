//! The only module that talks to shmipc: local topics as a [`Source`] (the bridge
//! subscribes, for `--export`) and a [`Sink`] (the bridge publishes, for `--import`).
//!
//! Zero-copy on both sides: [`Source::next`] hands out each sample read in place in
//! the topic's shared memory, which the export either hands to zenoh as it is
//! ([`Received::into_bytes`]: the topic's chunk backs zenoh's buffer until zenoh
//! has sent it) or copies into a buffer with others (small samples), and
//! [`Sink::send`] copies zenoh's received slices straight into a loaned chunk (the
//! only copy on the import side).

use std::ops::Deref;
use std::time::Duration;

use bytes::Bytes;

use shmipc::channel::pubsub::{Loan, Options, Overflow, Publisher, Sample, Subscriber};
use shmipc::channel::{ChannelError, RecvError, SendError, TrySendError};
use shmipc::OpenError;

/// How the bridge creates the local topics it needs (an existing topic keeps its own
/// settings).
#[derive(Debug, Clone, Copy)]
pub struct TopicSettings {
    /// Block mode (a full ring makes the publisher wait) instead of overwrite-oldest.
    pub lossless: bool,
    /// Slots in the ring.
    pub capacity: usize,
    /// Largest sample in bytes.
    pub slot_size: usize,
    /// Subscriber places.
    pub max_subscribers: usize,
}

impl TopicSettings {
    fn options(&self) -> Options {
        Options::new()
            .capacity(self.capacity)
            .slot_size(self.slot_size)
            .max_subscribers(self.max_subscribers)
            .overflow(if self.lossless {
                Overflow::Block
            } else {
                Overflow::Overwrite
            })
    }

    fn check_mode(&self, topic: &str, found: Overflow) {
        if self.lossless && found == Overflow::Overwrite {
            tracing::warn!(
                topic,
                "topic exists in overwrite mode: its subscribers may lose samples although \
                 --lossless was asked; recreate it in block mode (remove it and let the bridge \
                 create it) to make it lossless"
            );
        }
    }
}

/// Opens first (an existing topic keeps its settings), creates where missing; retried
/// a few times for a topic created by someone else at the same moment.
fn open_or_create<T>(
    open: impl Fn() -> Result<T, ChannelError>,
    create: impl Fn() -> Result<T, ChannelError>,
) -> Result<T, ChannelError> {
    let mut last = None;
    for _ in 0..3 {
        match open() {
            Err(ChannelError::Open(OpenError::NotFound { .. })) => {}
            r => return r,
        }
        match create() {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("the loop ran at least once"))
}

/// One sample of a local topic, read in place in its shared memory (zero-copy: the
/// bytes are the publisher's, not a copy). Its slot stays held, so a block-mode
/// publisher cannot reuse it, until this is dropped: copy what you need and drop it.
#[derive(Debug)]
pub struct Received<'a>(Sample<'a>);

impl Received<'_> {
    /// The topic's number for this sample (0 for the first published on the topic).
    pub fn seq(&self) -> u64 {
        self.0.seq()
    }

    /// Samples overwritten just before this one, unread by the bridge.
    pub fn lost(&self) -> u64 {
        self.0.lost()
    }

    /// The sample as a buffer zenoh can own, without a copy: its chunk stays held
    /// (counting against the topic's holds, see [`Source::can_keep`]) until the last
    /// clone of the `Bytes` is dropped, on whichever thread.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self.0.detach())
    }
}

impl Deref for Received<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// What [`Source::next`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A sample.
    Sample(Received<'a>),
    /// Nothing within the timeout.
    Idle,
    /// The topic has no publisher now (and everything it sent was read).
    NoPublisher,
}

/// The bridge as a subscriber of a local topic.
#[derive(Debug)]
pub struct Source {
    sub: Subscriber,
}

impl Source {
    /// Subscribes to `topic`, creating it with `settings` where missing.
    ///
    /// # Errors
    /// The topic cannot be opened or created (another kind of object, all subscriber
    /// places taken, bad sizes).
    pub fn open(topic: &str, settings: &TopicSettings) -> Result<Self, ChannelError> {
        let options = settings.options();
        let sub = open_or_create(
            || Subscriber::open(topic),
            || options.create_or_open_subscriber(topic),
        )?;
        settings.check_mode(topic, sub.overflow());
        Ok(Self { sub })
    }

    /// Whether the topic read is still the one its name names (`Some(false)` once
    /// removed, even if made again since); `None` where the OS cannot tell.
    pub fn is_still_named(&self) -> Option<bool> {
        self.sub.is_still_named()
    }

    /// Whether one more sample may be kept past the next receive
    /// ([`Received::into_bytes`]): keeping it still leaves a hold for the receive
    /// after. Counts the sample just received, if any is alive.
    pub fn can_keep(&self) -> bool {
        self.sub.held() < self.sub.max_held()
    }

    /// The next sample, read in place, waiting up to `timeout` (zero: not at all).
    ///
    /// # Errors
    /// The topic's shared memory is corrupt.
    pub fn next(&self, timeout: Duration) -> Result<Next<'_>, RecvError> {
        let got = if timeout.is_zero() {
            self.sub.try_recv()
        } else {
            self.sub.recv_timeout(timeout)
        };
        match got {
            Ok(s) => Ok(Next::Sample(Received(s))),
            Err(RecvError::Empty) => Ok(Next::Idle),
            Err(RecvError::Disconnected) => Ok(Next::NoPublisher),
            Err(e) => Err(e),
        }
    }
}

/// The bridge as the publisher of a local topic.
#[derive(Debug)]
pub struct Sink {
    publisher: Publisher,
}

/// What [`Sink::send`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Published.
    Yes,
    /// Still full after the timeout (block mode): try again.
    Full,
    /// Larger than the topic's slots: dropped.
    TooLarge {
        /// The topic's slot size.
        max: usize,
    },
}

impl Sink {
    /// Becomes the publisher of `topic`, creating it with `settings` where missing.
    /// Also returns the topic's number of the first sample this sink will publish.
    ///
    /// # Errors
    /// The topic cannot be opened or created, or has a live publisher already
    /// ([`ChannelError::Busy`]).
    pub fn open(topic: &str, settings: &TopicSettings) -> Result<(Self, u64), ChannelError> {
        let options = settings.options();
        let publisher = open_or_create(
            || Publisher::open(topic),
            || options.create_or_open_publisher(topic),
        )?;
        settings.check_mode(topic, publisher.overflow());
        // A subscriber that joins now starts at the next sample published: the number of
        // ours. (We are the only publisher, and have published nothing yet.)
        let first = Subscriber::open(topic)?.next_seq();
        Ok((Self { publisher }, first))
    }

    /// Whether the topic published on is still the one its name names (`Some(false)`
    /// once removed, even if made again since); `None` where the OS cannot tell.
    pub fn is_still_named(&self) -> Option<bool> {
        self.publisher.is_still_named()
    }

    /// Live subscribers of the topic.
    pub fn subscribers(&self) -> usize {
        self.publisher.subscribers()
    }

    /// Publishes one sample of `len` bytes made of `parts` (in order; they must add
    /// up to `len`), copied straight into a loaned chunk of the topic: the only copy.
    /// Waits up to `timeout` for room in block mode. `parts` is only read once a
    /// chunk is loaned.
    ///
    /// # Errors
    /// The topic's shared memory is corrupt.
    pub fn send<'p>(
        &mut self,
        len: usize,
        parts: impl IntoIterator<Item = &'p [u8]>,
        timeout: Duration,
    ) -> Result<Sent, SendError> {
        // Without waiting first: only a full topic reads the clock for a deadline.
        match self.publisher.try_loan(len) {
            Ok(loan) => return Ok(fill(loan, len, parts)),
            Err(TrySendError::TooLarge { max, .. }) => return Ok(Sent::TooLarge { max }),
            Err(TrySendError::Corrupt(c)) => return Err(SendError::Corrupt(c)),
            // Full, or anything else: the waiting loan says what it is.
            Err(_) => {}
        }
        match self.publisher.loan_timeout(len, timeout) {
            Ok(loan) => Ok(fill(loan, len, parts)),
            Err(SendError::Timeout(())) => Ok(Sent::Full),
            Err(SendError::TooLarge { max, .. }) => Ok(Sent::TooLarge { max }),
            Err(e) => Err(e),
        }
    }
}

/// Copies `parts` (adding up to `len` bytes) into `loan` and publishes it.
fn fill<'p>(mut loan: Loan<'_>, len: usize, parts: impl IntoIterator<Item = &'p [u8]>) -> Sent {
    let mut at = 0;
    for part in parts {
        let n = part.len().min(len - at);
        loan[at..at + n].copy_from_slice(&part[..n]);
        at += n;
    }
    // Parts shorter than announced: send what came (never stale bytes).
    loan.truncate(at);
    loan.send();
    Sent::Yes
}
