//! The only module that talks to shmipc: local topics as a [`Source`] (the bridge
//! subscribes, for `--export`) and a [`Sink`] (the bridge publishes, for `--import`).
//!
//! Today this uses the copying forms of the pubsub API (`Subscriber::recv_into`,
//! `Publisher::send_timeout`). When publishers loan samples and subscribers read them
//! in place, only this file changes: [`Source::next`] hands out the received bytes
//! (zenoh takes the `Vec` without copying it) and [`Sink::send`] writes one sample.

use std::time::Duration;

use shmipc::channel::pubsub::{Options, Overflow, Publisher, Subscriber};
use shmipc::channel::{ChannelError, RecvError, SendError};
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

/// One sample read from a local topic.
#[derive(Debug)]
pub struct Received {
    /// The topic's number for this sample (0 for the first published on the topic).
    pub seq: u64,
    /// Samples overwritten just before this one, unread by the bridge.
    pub lost: u64,
    /// The bytes, owned: handed to zenoh as they are.
    pub data: Vec<u8>,
}

/// What [`Source::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A sample.
    Sample(Received),
    /// Nothing within the timeout.
    Idle,
    /// The topic has no publisher now (and everything it sent was read).
    NoPublisher,
}

/// The bridge as a subscriber of a local topic.
#[derive(Debug)]
pub struct Source {
    sub: Subscriber,
    last_len: usize,
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
        Ok(Self { sub, last_len: 64 })
    }

    /// The next sample, waiting up to `timeout`.
    ///
    /// # Errors
    /// The topic's shared memory is corrupt.
    pub fn next(&mut self, timeout: Duration) -> Result<Next, RecvError> {
        // A fresh buffer each time, sized like the last sample: zenoh keeps it.
        let mut data = Vec::with_capacity(self.last_len);
        match self.sub.recv_into_timeout(&mut data, timeout) {
            Ok(lost) => {
                self.last_len = data.len().max(16);
                let seq = self.sub.next_seq().wrapping_sub(1);
                Ok(Next::Sample(Received { seq, lost, data }))
            }
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

    /// Live subscribers of the topic.
    pub fn subscribers(&self) -> usize {
        self.publisher.subscribers()
    }

    /// Publishes a copy of `data`, waiting up to `timeout` for room in block mode.
    ///
    /// # Errors
    /// The topic's shared memory is corrupt.
    pub fn send(&mut self, data: &[u8], timeout: Duration) -> Result<Sent, SendError> {
        match self.publisher.send_timeout(data, timeout) {
            Ok(()) => Ok(Sent::Yes),
            Err(SendError::Timeout(())) => Ok(Sent::Full),
            Err(SendError::TooLarge { max, .. }) => Ok(Sent::TooLarge { max }),
            Err(e) => Err(e),
        }
    }
}
