// Used by the sync and channel layers, which are being built on it.
#![allow(dead_code)]
//! The validated header that structured segments (synchronization objects, channels)
//! carry at their start, so that an opener refuses garbage, another program's bytes,
//! another version, another kind of object or another layout with a clear error.
//!
//! The `#[repr(C)]` struct [`HeaderWords`], checked by the compiler:
//!
//! ```text
//! offset  size  field
//!      0     8  magic    b"shmipc\0\x01"  (written last-but-one; see `state`)
//!      8     4  version  LAYOUT_VERSION
//!     12     4  kind     Kind as u32
//!     16     4  state    0 = being initialised, 1 = ready (Release on init, Acquire on open)
//!     20     4  reserved 0
//!     24    32  params   four u64 describing the layout (capacities, sizes, type id…)
//!     56     8  reserved 0
//! ```
//!
//! The creator writes every field, then sets `state` to READY with Release; an opener
//! waits (bounded) for READY with Acquire, then checks every field. The header is read
//! by copying, never by reference, so a hostile writer can only make validation fail.

use std::mem::offset_of;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::AccessError;
use crate::view::View;

/// The header at the start of a structured segment, as laid out in shared memory
/// (always read by copying: see the module docs).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct HeaderWords {
    /// [`MAGIC`].
    pub(crate) magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub(crate) version: u32,
    /// [`Kind`] as u32.
    pub(crate) kind: u32,
    /// 0 while being initialised, `STATE_READY` once ready.
    pub(crate) state: u32,
    _reserved: u32,
    /// What the kind's layout needs (capacities, sizes, type identity).
    pub(crate) params: [u64; 4],
    _reserved2: u64,
}

const _: () = {
    assert!(size_of::<HeaderWords>() == 64);
    assert!(offset_of!(HeaderWords, magic) == 0);
    assert!(offset_of!(HeaderWords, version) == 8);
    assert!(offset_of!(HeaderWords, kind) == 12);
    assert!(offset_of!(HeaderWords, state) == 16);
    assert!(offset_of!(HeaderWords, params) == 24);
};

/// Bytes the header occupies; what follows starts 64-byte (cache-line) aligned.
pub(crate) const HEADER_LEN: usize = size_of::<HeaderWords>();
pub(crate) const MAGIC: [u8; 8] = *b"shmipc\0\x01";
/// Bumped whenever an object's shared layout or protocol changes, so that builds
/// that would misread each other refuse with a clear error instead.
/// 2: zero-copy mpmc and rpc (slot rings with loans and owners); endpoint and lock
/// owner identities proven by locks on the object's own file (Linux).
pub(crate) const LAYOUT_VERSION: u32 = 2;
const STATE_READY: u32 = 1;

/// What a structured segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Kind {
    /// A mutex.
    Mutex = 1,
    /// A semaphore.
    Semaphore = 2,
    /// An event.
    Event = 3,
    /// A single-producer single-consumer channel.
    Spsc = 16,
    /// A publish/subscribe channel.
    PubSub = 17,
    /// A multi-producer multi-consumer queue.
    Mpmc = 18,
    /// A request/response channel.
    Rpc = 19,
}

impl Kind {
    /// The kind with this code, if any.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Mutex,
            2 => Self::Semaphore,
            3 => Self::Event,
            16 => Self::Spsc,
            17 => Self::PubSub,
            18 => Self::Mpmc,
            19 => Self::Rpc,
            _ => return None,
        })
    }

    /// A lower-case name (`mutex`, `spsc`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::Semaphore => "semaphore",
            Self::Event => "event",
            Self::Spsc => "spsc",
            Self::PubSub => "pubsub",
            Self::Mpmc => "mpmc",
            Self::Rpc => "rpc",
        }
    }
}

/// A header as found, after validation of magic and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: Kind,
    pub(crate) params: [u64; 4],
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The region is too small to hold the header and what it describes.
    #[error("the region is {len} bytes, too small for a shmipc {what} ({need} bytes)")]
    TooSmall {
        /// What was expected.
        what: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// No shmipc header: another program's data, or garbage.
    #[error(
        "no shmipc header here (bad magic): this is not a shmipc object, or it was overwritten"
    )]
    NotShmipc,
    /// Another layout version.
    #[error("the object has layout version {found}, this build reads {expected}: use matching shmipc versions")]
    Version {
        /// Version found.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// Another kind of object.
    #[error("the object is of kind `{found}`, not `{expected}`: use the name of {} {expected}, or another name", article(expected))]
    Kind {
        /// What was found (its name, or a code).
        found: String,
        /// What was asked for.
        expected: &'static str,
    },
    /// Same kind, different parameters (capacity, message type or size…).
    #[error("the {kind} was created with a different {what} ({found}, expected {expected}): open it with the parameters it was created with")]
    Mismatch {
        /// Kind of object.
        kind: &'static str,
        /// Which parameter differs.
        what: &'static str,
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// A header word holds a value that shmipc never writes there: something other
    /// than shmipc changed the object's memory (or it is not what its header says).
    #[error("the {kind}'s header is damaged: {}, a value shmipc never writes (something other than shmipc changed this memory): remove it and create it again", field(what, *found))]
    Corrupt {
        /// Kind of object.
        kind: &'static str,
        /// Which header field, and the rule it breaks.
        what: &'static str,
        /// Value found.
        found: u64,
    },
    /// Part of what the object's layout uses has no memory (another program made
    /// it sparse, or punched pages out of it), and the store cannot give it that:
    /// writing such a page would kill the process (`SIGBUS`).
    #[error("some of the {need} bytes the object's layout uses have no memory (shmipc gives an object all of its memory when it makes it: another program made it sparse or took pages from it), and its store cannot provide them ({reason}): free space there (/dev/shm, or the backing file's file system), or remove the object and create it again")]
    NoMemory {
        /// Bytes its layout uses.
        need: u64,
        /// The OS error of the allocation.
        reason: String,
    },
    /// Its creator did not finish initialising it in time (or died doing so).
    #[error("the object is still being initialised by its creator (or the creator died doing so): retry, or remove it")]
    NotReady,
    /// Reading the header failed.
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// Writes a header at `offset` of `view` and marks it ready (Release: everything the
/// creator wrote before, the object's own fields included, is visible to an opener
/// that saw READY with Acquire).
pub(crate) fn init(
    view: &View,
    offset: usize,
    kind: Kind,
    params: [u64; 4],
) -> Result<(), AccessError> {
    let state = view.atomic_u32(offset + offset_of!(HeaderWords, state))?;
    state.store(0, Ordering::Relaxed);
    view.write_at(offset + offset_of!(HeaderWords, magic), &MAGIC)?;
    view.write_pod(offset + offset_of!(HeaderWords, version), &LAYOUT_VERSION)?;
    view.write_pod(offset + offset_of!(HeaderWords, kind), &(kind as u32))?;
    view.write_pod(offset + offset_of!(HeaderWords, params), &params)?;
    // Release pairs with the Acquire load in `read`.
    state.store(STATE_READY, Ordering::Release);
    Ok(())
}

/// Reads and checks the header at `offset`, waiting up to `patience` for a creator
/// that is still initialising it.
pub(crate) fn read(view: &View, offset: usize, patience: Duration) -> Result<Header, LayoutError> {
    if offset
        .checked_add(HEADER_LEN)
        .is_none_or(|end| end > view.len())
    {
        return Err(LayoutError::TooSmall {
            what: "object header",
            len: view.len().saturating_sub(offset),
            need: HEADER_LEN,
        });
    }
    let deadline = Instant::now() + patience;
    loop {
        // Acquire (via the fence) pairs with the Release store in `init`.
        let state: u32 = view.read_pod(offset + offset_of!(HeaderWords, state))?;
        std::sync::atomic::fence(Ordering::Acquire);
        let magic: [u8; 8] = view.read_pod(offset + offset_of!(HeaderWords, magic))?;
        if state == STATE_READY {
            if magic != MAGIC {
                return Err(LayoutError::NotShmipc);
            }
            break;
        }
        if state != 0 || (magic != MAGIC && magic != [0; 8]) {
            return Err(LayoutError::NotShmipc);
        }
        if Instant::now() >= deadline {
            return Err(LayoutError::NotReady);
        }
        std::thread::yield_now();
    }
    let version: u32 = view.read_pod(offset + offset_of!(HeaderWords, version))?;
    if version != LAYOUT_VERSION {
        return Err(LayoutError::Version {
            found: version,
            expected: LAYOUT_VERSION,
        });
    }
    let code: u32 = view.read_pod(offset + offset_of!(HeaderWords, kind))?;
    let kind = Kind::from_u32(code).ok_or(LayoutError::Kind {
        found: format!("unknown kind {code}"),
        expected: "shmipc object",
    })?;
    let params: [u64; 4] = view.read_pod(offset + offset_of!(HeaderWords, params))?;
    Ok(Header { kind, params })
}

/// Before an opener maps `seg`: reads its header with `pread` (Linux; elsewhere a
/// no-op) and checks that it is a shmipc header marked ready, waiting up to
/// `patience` for a creator that is still writing it (an older shmipc's, which named
/// objects first). A page holding a ready header has been written, so reading it
/// through a mapping afterwards allocates nothing: an opener never takes a SIGBUS
/// from the header of a sparse object on a full `/dev/shm`. Everything else is
/// checked by [`read`] on the mapping, as before.
pub(crate) fn check_unmapped(seg: &crate::Segment, patience: Duration) -> Result<(), LayoutError> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    if seg.size() < HEADER_LEN as u64 {
        return Err(LayoutError::TooSmall {
            what: "object header",
            len: usize::try_from(seg.size()).unwrap_or(0),
            need: HEADER_LEN,
        });
    }
    let deadline = Instant::now() + patience;
    loop {
        let mut head = [0u8; HEADER_LEN];
        let n = seg.read_at(0, &mut head).unwrap_or(0);
        let HeaderWords { state, magic, .. } = bytemuck::pod_read_unaligned(&head);
        if n == HEADER_LEN && state == STATE_READY && magic == MAGIC {
            return Ok(());
        }
        if n == HEADER_LEN && (state != 0 || (magic != MAGIC && magic != [0; 8])) {
            return Err(LayoutError::NotShmipc);
        }
        if Instant::now() >= deadline {
            return Err(if n < HEADER_LEN {
                LayoutError::TooSmall {
                    what: "object header",
                    len: n,
                    need: HEADER_LEN,
                }
            } else {
                LayoutError::NotReady
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads the header and checks that it is a `kind`.
pub(crate) fn expect(
    view: &View,
    offset: usize,
    kind: Kind,
    patience: Duration,
) -> Result<Header, LayoutError> {
    let h = read(view, offset, patience)?;
    if h.kind != kind {
        return Err(LayoutError::Kind {
            found: h.kind.as_str().to_owned(),
            expected: kind.as_str(),
        });
    }
    Ok(h)
}

/// "a" or "an", for a kind's name (`an event`, `a mutex`).
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `capacity 375 (not a power of two from 2 to 2^31)` from a field's description
/// `capacity (not a power of two from 2 to 2^31)` and the value found.
fn field(what: &str, found: u64) -> String {
    match what.split_once(" (") {
        Some((name, rule)) => format!("{name} {found} ({rule}"),
        None => format!("{what} {found}"),
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::Segment;

    fn seg(tag: &str) -> Segment {
        Segment::options()
            .size(4096)
            .create_unnamed()
            .unwrap_or_else(|e| panic!("{tag}: {e}"))
    }

    #[test]
    fn round_trips_and_refuses_mismatch() {
        let s = seg("rt");
        let v = s.map_all().unwrap();
        init(&v, 0, Kind::Spsc, [1, 2, 3, 4]).unwrap();
        let h = expect(&v, 0, Kind::Spsc, Duration::ZERO).unwrap();
        assert_eq!(h.params, [1, 2, 3, 4]);
        assert!(matches!(
            expect(&v, 0, Kind::Mutex, Duration::ZERO),
            Err(LayoutError::Kind { .. })
        ));
    }

    #[test]
    fn refuses_garbage_and_zero() {
        let s = seg("garbage");
        let v = s.map_all().unwrap();
        assert_eq!(
            read(&v, 0, Duration::from_millis(5)),
            Err(LayoutError::NotReady)
        );
        v.write_at(0, &[0xAB; 64]).unwrap();
        assert_eq!(read(&v, 0, Duration::ZERO), Err(LayoutError::NotShmipc));
        init(&v, 0, Kind::Event, [0; 4]).unwrap();
        v.write_pod(offset_of!(HeaderWords, version), &99u32)
            .unwrap();
        assert!(matches!(
            read(&v, 0, Duration::ZERO),
            Err(LayoutError::Version { found: 99, .. })
        ));
        v.write_pod(offset_of!(HeaderWords, version), &LAYOUT_VERSION)
            .unwrap();
        v.write_pod(offset_of!(HeaderWords, kind), &12345u32)
            .unwrap();
        assert!(matches!(
            read(&v, 0, Duration::ZERO),
            Err(LayoutError::Kind { .. })
        ));
        assert!(matches!(
            read(&v, 4090, Duration::ZERO),
            Err(LayoutError::TooSmall { .. })
        ));
        assert!(matches!(
            read(&v, usize::MAX, Duration::ZERO),
            Err(LayoutError::TooSmall { .. })
        ));
    }
}
