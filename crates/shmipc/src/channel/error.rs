//! Channel errors: one enum per operation, messages that say what to do.

use crate::error::{CreateError, MapError, OpenError};
use crate::layout::LayoutError;

/// Shared memory of a channel holds a value no correct peer writes: the other side
/// is broken or hostile, or something else wrote into the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the channel's shared memory is corrupt: {what} = {value}: remove the channel and recreate it, and check the processes that map it")]
pub struct Corrupt {
    /// Which value is wrong.
    pub what: &'static str,
    /// The value found.
    pub value: u64,
}

/// Why a channel endpoint could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Creating the segment failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening the segment failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Mapping the segment failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The segment is not this kind of channel, or has other parameters.
    #[error("channel `{name}`: {source}")]
    Layout {
        /// The channel's name.
        name: String,
        /// What the header check found.
        source: LayoutError,
    },
    /// A parameter is out of range.
    #[error("channel `{name}`: {what} {value} is invalid: {reason}")]
    InvalidParameter {
        /// The channel's name.
        name: String,
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: u64,
        /// What the rule is.
        reason: &'static str,
    },
    /// The endpoint exists already in a live process (one producer per spsc, one
    /// consumer per spsc, one publisher per pubsub…).
    #[error("channel `{name}` already has a live {role} (process {pid}): close it there first")]
    Busy {
        /// The channel's name.
        name: String,
        /// The endpoint asked for.
        role: &'static str,
        /// The process holding it.
        pid: u32,
    },
    /// Every subscriber place is taken by a live process.
    #[error("channel `{name}` has all its {max} subscriber places taken: close a subscriber, or recreate the channel with more")]
    Full {
        /// The channel's name.
        name: String,
        /// The bound set at creation.
        max: u32,
    },
    /// The segment's contents are corrupt.
    #[error("channel `{name}`: {source}")]
    Corrupt {
        /// The channel's name.
        name: String,
        /// What is wrong.
        source: Corrupt,
    },
}

/// Why a message could not be sent (or a slot loaned) without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError<T = ()> {
    /// The ring is full; the message is handed back.
    #[error("the channel is full: retry later, or use a blocking send")]
    Full(T),
    /// The receiving side has gone; the message is handed back.
    #[error("the receiving side of the channel has gone")]
    Disconnected(T),
    /// The message is larger than a slot.
    #[error("a message of {len} bytes does not fit a slot of {max} bytes: send less, or recreate the channel with larger slots")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The shared memory is corrupt.
    #[error(transparent)]
    Corrupt(Corrupt),
}

/// Why a blocking send (or loan) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError<T = ()> {
    /// The deadline passed with the ring still full; the message is handed back.
    #[error("timed out: the channel stayed full")]
    Timeout(T),
    /// The receiving side has gone; the message is handed back.
    #[error("the receiving side of the channel has gone")]
    Disconnected(T),
    /// The message is larger than a slot.
    #[error("a message of {len} bytes does not fit a slot of {max} bytes: send less, or recreate the channel with larger slots")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The shared memory is corrupt.
    #[error(transparent)]
    Corrupt(Corrupt),
}

/// Why a receive returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing waiting (`try_recv`) or nothing came before the deadline.
    #[error("no message (the channel is empty, or nothing came in time)")]
    Empty,
    /// The sending side has gone and every message it sent has been received. A new
    /// sender may attach later; receiving again then works.
    #[error("the sending side of the channel has gone")]
    Disconnected,
    /// The buffer given to `recv_into` is too small; the message stays queued.
    #[error("a message of {len} bytes does not fit the {buf} byte buffer: pass a larger one")]
    BufferTooSmall {
        /// The message's length.
        len: usize,
        /// The buffer's length.
        buf: usize,
    },
    /// The subscriber holds as many samples as it may (set at creation); the next
    /// one stays queued.
    #[error("this subscriber already holds {max} samples, the most it may: drop one before receiving another (or recreate the channel with a larger max held)")]
    TooManyHeld {
        /// The bound.
        max: usize,
    },
    /// The shared memory is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

/// Why an rpc client's [`call`](super::rpc::Client::call) or wait for a response
/// ([`recv_response`](super::rpc::Client::recv_response)) returned none: in rpc
/// terms, naming the channel (the other channel kinds' [`RecvError`] and
/// [`SendError`] speak of senders and receivers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No response came within the timeout. A late response is dropped.
    #[error("no response from the server of `{name}` within {timeout:?}: is the server serving? retry, or wait longer")]
    Timeout {
        /// The channel's name.
        name: String,
        /// The timeout given.
        timeout: std::time::Duration,
    },
    /// The request queue stayed full for the whole timeout: no request was sent.
    /// The server is attached but is not taking requests as fast as they come.
    #[error("the request queue of `{name}` stayed full for {timeout:?}: nothing was sent; the server is not keeping up (is it serving?): retry, or wait longer")]
    QueueFull {
        /// The channel's name.
        name: String,
        /// The timeout given.
        timeout: std::time::Duration,
    },
    /// No server is attached: it left or died (or none has started yet). A server
    /// that attaches later is picked up: calling again then works.
    #[error("the server of `{name}` is not running (it left or died, or none has started): start one, then call again (this client reaches it once it is attached)")]
    ServerGone {
        /// The channel's name.
        name: String,
    },
    /// The request is larger than a slot.
    #[error("a request of {len} bytes does not fit a slot of {max} bytes of `{name}`: send less, or recreate the channel with larger slots")]
    TooLarge {
        /// The channel's name.
        name: String,
        /// The request's length.
        len: usize,
        /// The slot size.
        max: usize,
    },
    /// The shared memory is corrupt.
    #[error("rpc channel `{name}`: {source}")]
    Corrupt {
        /// The channel's name.
        name: String,
        /// What is wrong.
        source: Corrupt,
    },
}

impl<T> From<Corrupt> for TrySendError<T> {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}

impl<T> From<Corrupt> for SendError<T> {
    fn from(c: Corrupt) -> Self {
        Self::Corrupt(c)
    }
}
