//! The shared vocabulary of segments: how they are accessed, how long they live,
//! what stores them, who made them, what the OS says of them. It sits below `sys/`
//! (whose backends speak it) and `segment.rs` (which re-exports it), so neither
//! reaches up to the other.

use std::path::{Path, PathBuf};

/// The permission bits a creator may choose (read and write for owner, group and
/// others): execute bits mean nothing for shared memory, and the other bits are
/// shmipc's marks on Unix.
pub(crate) const PERMISSION_BITS: u32 = 0o666;

/// How a segment or a view may be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only (`FILE_MAP_READ`, `PROT_READ`). Writing is an error, not a crash.
    Read,
    /// Read and write, shared with every other holder (`FILE_MAP_WRITE`).
    ReadWrite,
    /// Private copy-on-write (`FILE_MAP_COPY`, `MAP_PRIVATE`): writes stay in this
    /// view and are never seen by others or written back.
    CopyOnWrite,
}

/// How long a named segment lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Persistence {
    /// Win32 semantics (the default): the segment lives while any process holds it
    /// (a [`Segment`](crate::Segment) or a [`View`](crate::View)) and is gone when the last holder closes it or
    /// dies, even by SIGKILL.
    #[default]
    UntilLastClose,
    /// POSIX kernel persistence: the segment lives until [`Segment::remove`](crate::Segment::remove) (or
    /// `shmipc rm`) or a reboot.
    UntilRemoved,
}

/// What stores a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backing {
    /// System memory (POSIX shm, the Windows paging file).
    Memory,
    /// A file at this path: the data persists with the file.
    File(PathBuf),
    /// An unnamed segment (memfd / unnamed section), shared by handing on its handle.
    Unnamed,
}

/// Who made a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// shmipc made it, and follows its lifetime rules.
    Shmipc,
    /// Another program made it (e.g. with `shm_open` or Python); shmipc never removes
    /// it unless asked.
    Foreign,
}

/// What the OS says about a named segment (for `shmipc ls` / `info`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: String,
    /// Its size in bytes (page-rounded where the OS cannot tell more); `None`
    /// where it could not be looked at (another user's link to a backing file,
    /// which is not followed).
    pub size: Option<u64>,
    /// What stores it.
    pub backing: Backing,
    /// Who made it.
    pub origin: Origin,
    /// How long it lives.
    pub persistence: Persistence,
    /// Unix permission bits, where the OS has them.
    pub mode: Option<u32>,
    /// Owner's user id, where the OS has one.
    pub owner: Option<u32>,
    /// Process ids of the live holders, where the OS can tell.
    pub holders: Option<Vec<u32>>,
    /// True when it should have died with its holders, who are all gone (removed
    /// by the next `open`, `create` or `shmipc gc`).
    pub stale: bool,
}

/// Whether [`Segment::create_or_open`](crate::Segment::create_or_open) created the segment or opened an existing one
/// (the seed's `GetLastError() == ERROR_ALREADY_EXISTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// This call created it.
    Created,
    /// It existed already and was opened.
    Opened,
}

/// Parameters a backend needs to create a segment.
#[derive(Debug, Clone)]
pub(crate) struct CreateParams<'a> {
    pub(crate) size: u64,
    pub(crate) mode: u32,
    pub(crate) persistence: Persistence,
    pub(crate) file: Option<&'a Path>,
    pub(crate) reserve: bool,
    /// Build the object but leave it unnamed until `sys::publish` (where the OS
    /// can; elsewhere it is named at once).
    pub(crate) defer_publish: bool,
}

/// How an event resets (Win32 `bManualReset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReset {
    /// `set` releases every waiter and the event stays set until `reset`.
    Manual,
    /// `set` releases one waiter, which resets it; with nobody waiting it stays set
    /// until one comes.
    Auto,
}

/// What a [`pubsub`](crate::channel::pubsub) publisher does when the ring is full of messages some subscriber has
/// not started reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Skip the slow subscriber past the oldest messages it has not started (never
    /// one it holds); it is told how many it lost.
    #[default]
    Overwrite,
    /// Wait until every live subscriber has started the oldest.
    Block,
}

/// A snapshot of a shmipc object's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectState {
    /// A [`Mutex`](crate::sync::Mutex) or [`NamedMutex`](crate::NamedMutex).
    Mutex {
        /// Whether some thread holds it (or held it when it died).
        locked: bool,
        /// The holder's thread id (for a single-threaded program, its process id),
        /// where the OS has one.
        owner_thread: Option<u32>,
        /// Whether that holder still runs; `Some(false)`: it died holding the lock,
        /// and the next locker will be told so.
        owner_alive: Option<bool>,
        /// `false` after a holder died inside and nobody has called
        /// [`mark_consistent`](crate::sync::MutexGuard::mark_consistent) since.
        consistent: bool,
    },
    /// A [`Semaphore`](crate::sync::Semaphore) or
    /// [`NamedSemaphore`](crate::NamedSemaphore).
    Semaphore {
        /// Units available now.
        value: u32,
        /// Its maximum.
        max: u32,
    },
    /// An [`Event`](crate::sync::Event) or [`NamedEvent`](crate::NamedEvent).
    Event {
        /// Whether it is set.
        set: bool,
        /// How it resets.
        reset: EventReset,
    },
    /// An [`spsc`](crate::channel::spsc) channel.
    Spsc {
        /// Slots in the ring.
        capacity: u64,
        /// Largest message, in bytes.
        max_message: u64,
        /// The live producer's process id, if one is attached.
        producer: Option<u32>,
        /// The live consumer's process id, if one is attached.
        consumer: Option<u32>,
        /// Messages sent and not yet handed back by the consumer (which hands slots
        /// back in batches, so this may count up to a sixteenth of the ring that
        /// it has already read); `None` for a ring too large to scan.
        queued: Option<u64>,
    },
    /// A [`pubsub`](crate::channel::pubsub) channel.
    PubSub {
        /// Slots in the ring.
        capacity: u64,
        /// Largest message, in bytes.
        max_message: u64,
        /// What the publisher does when the ring is full.
        overflow: Overflow,
        /// The live publisher's process id, if one is attached.
        publisher: Option<u32>,
        /// Live subscribers attached.
        subscribers: u32,
        /// Most subscribers at a time.
        max_subscribers: u32,
        /// Messages published since the channel was created.
        published: u64,
        /// Messages the slowest live subscriber has still to start (`None` with no
        /// subscriber).
        max_lag: Option<u64>,
    },
    /// An [`mpmc`](crate::channel::mpmc) queue.
    Mpmc {
        /// Slots in the queue.
        capacity: u64,
        /// Largest message, in bytes.
        max_message: u64,
        /// Live producers attached.
        producers: u32,
        /// Live consumers attached.
        consumers: u32,
        /// Most producers and consumers together.
        max_endpoints: u32,
        /// Messages waiting for a consumer (`None` if the positions read make no
        /// sense).
        queued: Option<u64>,
    },
    /// An [`rpc`](crate::channel::rpc) channel.
    Rpc {
        /// Requests that may wait for the server.
        capacity: u64,
        /// Largest request or response, in bytes.
        max_message: u64,
        /// The live server's process id, if one is attached.
        server: Option<u32>,
        /// Live clients attached.
        clients: u32,
        /// Most clients at a time.
        max_clients: u32,
        /// Requests waiting for the server (`None` if the positions read make no
        /// sense).
        queued: Option<u64>,
    },
}
