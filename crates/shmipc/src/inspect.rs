//! Telling what a named segment holds, for tools (`shmipc ls`, `shmipc info`):
//! plain bytes, or a shmipc object of some [`Kind`] with a snapshot of its state.
//!
//! Inspecting is read-only and never waits: the segment is opened with
//! [`Access::Read`], the header and the object's words are *copied* out
//! ([`View::read_pod`]), and no lock is taken. What it reports is a snapshot, stale at
//! once, for people and scripts to look at, not to synchronise with.
//!
//! Each layer that defines a kind reads its own state: the synchronization objects
//! in `sync/inspect.rs` ([`ObjectState::Mutex`], [`ObjectState::Semaphore`],
//! [`ObjectState::Event`]), the channels in `channel/inspect.rs`
//! ([`ObjectState::Spsc`], [`ObjectState::PubSub`], [`ObjectState::Mpmc`],
//! [`ObjectState::Rpc`]: capacity, connected peers, fill); a new kind adds a variant
//! to [`ObjectState`] and an arm to [`Contents::of`].

use std::time::Duration;

use crate::error::OpenError;
use crate::layout::{self, Header, Kind, LayoutError, HEADER_LEN};
#[cfg(not(target_os = "linux"))]
use crate::segment::Access;
use crate::segment::Segment;
use crate::view::View;
pub use crate::vocab::ObjectState;

/// Bytes of a segment an inspection maps: the header and one cache line of the
/// object's own words.
const INSPECT_LEN: u64 = HEADER_LEN as u64 + 64;

/// What a segment holds, as found by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Contents {
    /// Plain bytes: no shmipc object header (a segment made with
    /// [`Segment::create`], another program's data, or an object whose creator has
    /// not finished writing its header).
    Plain,
    /// A shmipc object.
    Object {
        /// What it is.
        kind: Kind,
        /// A snapshot of its state, for the kinds that have a cheap one; `None`
        /// for the others, or where its words hold values no valid object has.
        state: Option<ObjectState>,
    },
    /// A shmipc header that cannot be read by this build: another layout version, an
    /// unknown kind, a corrupt header.
    Invalid(LayoutError),
}

impl Contents {
    /// What the region of `view` starting at `offset` holds. Never waits: an object
    /// whose creator is still writing its header reads as [`Contents::Plain`]. A
    /// channel's state needs the view to cover the whole channel (its records and
    /// slots); a shorter view reads as [`Contents::Invalid`].
    pub fn of(view: &View, offset: usize) -> Self {
        Self::of_in(view, offset, view.liveness())
    }

    /// As [`Contents::of`], with holders' liveness asked on the object of `scope`
    /// (for a copy of an object's bytes: on the object itself).
    pub(crate) fn of_in(
        view: &View,
        offset: usize,
        scope: crate::sys::liveness::Scope<'_>,
    ) -> Self {
        match layout::read(view, offset, Duration::ZERO) {
            Ok(header) => Self::Object {
                kind: header.kind,
                state: match header.kind {
                    Kind::Mutex | Kind::Semaphore | Kind::Event => {
                        crate::sync::inspect::state(view, offset, &header, scope)
                    }
                    Kind::Spsc | Kind::PubSub | Kind::Mpmc | Kind::Rpc => {
                        match crate::channel::inspect::state(view, offset, &header, scope) {
                            Ok(state) => state,
                            Err(e) => return Self::Invalid(e),
                        }
                    }
                },
            },
            Err(LayoutError::NotShmipc | LayoutError::NotReady | LayoutError::TooSmall { .. }) => {
                Self::Plain
            }
            Err(e) => Self::Invalid(e),
        }
    }

    /// The kind's name (`mutex`, `semaphore`, `spsc`, …), or `segment` for plain
    /// bytes and `invalid` for a header this build cannot read.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Plain => "segment",
            Self::Object { kind, .. } => kind.as_str(),
            Self::Invalid(_) => "invalid",
        }
    }
}

/// What the named segment holds: plain bytes or a shmipc object, with a snapshot of
/// its state. Never takes a lock or waits for one. On Linux the bytes are copied
/// with `pread` (never through a mapping, so no `SIGBUS` from a truncated segment
/// or a sparse one on a full `/dev/shm`) without becoming a holder; elsewhere the
/// segment is opened read-only for a moment (so it briefly counts as a holder) and
/// its first bytes copied out of a mapping.
///
/// ```
/// use shmipc::{inspect, Contents, Kind, NamedSemaphore, ObjectState, Segment};
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let sem = NamedSemaphore::create(&name, 2, 10)?;
/// let found = inspect(&name)?;
/// assert_eq!(found.kind_name(), "semaphore");
/// assert!(matches!(
///     found,
///     Contents::Object { kind: Kind::Semaphore, state: Some(ObjectState::Semaphore { value: 2, max: 10 }) }
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`Segment::open`] (not found, permission denied…).
pub fn inspect(name: &str) -> Result<Contents, OpenError> {
    #[cfg(target_os = "linux")]
    {
        inspect_copy(name)
    }
    #[cfg(not(target_os = "linux"))]
    {
        inspect_mapped(name)
    }
}

impl Segment {
    /// What this open segment holds, as [`inspect`] tells of a name, but of the
    /// very object this handle holds, whatever its name names meanwhile: a check
    /// made here holds for what is then read or written through the handle
    /// (`inspect` then `open` leaves a moment in which the name may come to name
    /// another object). A channel's state is not read (`state: None`); the
    /// header's bytes are copied with [`Segment::read_at`] (on Linux `pread`: no
    /// `SIGBUS` from a truncated or sparse segment).
    pub fn contents(&self) -> Contents {
        let len = usize::try_from(self.size().min(INSPECT_LEN)).unwrap_or(0);
        let mut head = vec![0u8; len];
        let n = self.read_at(0, &mut head).unwrap_or(0);
        head.truncate(n);
        if head.len() < HEADER_LEN {
            return Contents::Plain;
        }
        let Some(view) = Segment::options()
            .size(head.len() as u64)
            .create_unnamed()
            .ok()
            .and_then(|s| s.map_all().ok())
        else {
            return Contents::Plain;
        };
        if view.write_at(0, &head).is_err() {
            return Contents::Plain;
        }
        match layout::read(&view, 0, Duration::ZERO) {
            Ok(Header {
                kind: kind @ (Kind::Spsc | Kind::PubSub | Kind::Mpmc | Kind::Rpc),
                ..
            }) => Contents::Object { kind, state: None },
            _ => Contents::of_in(&view, 0, self.liveness()),
        }
    }
}

/// Largest channel whose state an inspection copies to look at.
#[cfg(target_os = "linux")]
const COPY_LIMIT: u64 = 64 << 20;

/// Linux: the bytes are copied out with `pread` into private memory and looked at
/// there, without holding the segment, taking or waiting for its lock, or mapping
/// it: another user's lock never stalls an inspection, and a sparse segment on a
/// full `/dev/shm` or one truncated meanwhile never kills the inspector with
/// `SIGBUS`.
#[cfg(target_os = "linux")]
fn inspect_copy(name: &str) -> Result<Contents, OpenError> {
    let valid = crate::name::Name::new(name)?;
    let mut head = Vec::new();
    let (size, fd) = crate::sys::peek(&valid, INSPECT_LEN, &mut |_, chunk| {
        head.extend_from_slice(chunk);
    })
    .map_err(|e| OpenError::from_sys(valid.as_str(), e))?;
    // Holders prove their liveness on the object itself, not on the copy.
    let anchor = crate::sys::liveness::Anchor::new();
    let scope = crate::sys::liveness::Scope::asking(std::os::fd::AsFd::as_fd(&fd), &anchor);
    if head.len() < HEADER_LEN {
        return Ok(Contents::Plain);
    }
    let Some(view) = private_memory(head.len() as u64) else {
        return Ok(Contents::Plain);
    };
    if view.write_at(0, &head).is_err() {
        return Ok(Contents::Plain);
    }
    if let Ok(
        header @ Header {
            kind: kind @ (Kind::Spsc | Kind::PubSub | Kind::Mpmc | Kind::Rpc),
            ..
        },
    ) = layout::read(&view, 0, Duration::ZERO)
    {
        // A channel's records and slots span the segment: copy all of it, into
        // sparse private memory (of the channel's size, so that its layout checks
        // out) where only chunks that are not all zero take pages. A larger one:
        // only the part its state is read from (the control block and endpoint
        // records, never more than a few MiB), and an spsc channel's queued count,
        // read from its slots, is not known.
        let whole = size <= COPY_LIMIT;
        let copied = if whole {
            Some(size)
        } else {
            crate::channel::inspect::state_prefix(&header)
                .filter(|&n| n <= COPY_LIMIT)
                .map(|n| n.min(size))
        };
        let all = copied.and_then(|copied| {
            private_memory(size).filter(|all| {
                crate::sys::peek(&valid, copied, &mut |at, chunk| {
                    if chunk.iter().any(|&b| b != 0) {
                        let _ = all.write_at(at as usize, chunk);
                    }
                })
                .is_ok()
            })
        });
        let Some(all) = all else {
            return Ok(Contents::Object { kind, state: None });
        };
        let mut contents = Contents::of_in(&all, 0, scope);
        if let (
            false,
            Contents::Object {
                state: Some(ObjectState::Spsc { queued, .. }),
                ..
            },
        ) = (whole, &mut contents)
        {
            *queued = None; // its slots were not copied
        }
        return Ok(contents);
    }
    Ok(Contents::of_in(&view, 0, scope))
}

/// A view of `len` bytes of private, sparse, zero-filled memory.
#[cfg(target_os = "linux")]
fn private_memory(len: u64) -> Option<View> {
    Segment::options()
        .size(len)
        .reserve(false)
        .create_unnamed()
        .ok()?
        .map_all()
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn inspect_mapped(name: &str) -> Result<Contents, OpenError> {
    let segment = match Segment::open(name, Access::Read) {
        // Windows: a named mutex, semaphore or event is a kernel object, not a segment.
        Err(OpenError::NotFound { .. }) if crate::sync::inspect::named(name).is_some() => {
            let (kind, state) = crate::sync::inspect::named(name).ok_or(OpenError::NotFound {
                name: name.to_owned(),
            })?;
            return Ok(Contents::Object {
                kind,
                state: Some(state),
            });
        }
        r => r?,
    };
    let len = segment.size().min(INSPECT_LEN);
    let Ok(len) = usize::try_from(len) else {
        return Ok(Contents::Plain);
    };
    if len < HEADER_LEN {
        return Ok(Contents::Plain);
    }
    let Ok(view) = segment.map(0, len) else {
        // Nothing mappable (e.g. an empty or truncated file): no object there.
        return Ok(Contents::Plain);
    };
    if let Ok(Header {
        kind: kind @ (Kind::Spsc | Kind::PubSub | Kind::Mpmc | Kind::Rpc),
        ..
    }) = layout::read(&view, 0, Duration::ZERO)
    {
        // A channel's records and slots span the segment: look at all of it (mapped
        // read-only and lazily; only the words inspected are touched).
        return Ok(match segment.map(0, 0) {
            Ok(all) => Contents::of(&all, 0),
            Err(_) => Contents::Object { kind, state: None },
        });
    }
    Ok(Contents::of(&view, 0))
}

#[cfg(all(test, target_os = "linux", not(miri)))]
mod tests {
    use super::*;
    use crate::sync::{EventReset, NamedEvent, NamedMutex, NamedSemaphore};

    fn name(tag: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "t-inspect-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[test]
    fn plain_segments_and_garbage() {
        let n = name("plain");
        let seg = Segment::create(&n, 4096).unwrap();
        assert_eq!(inspect(&n).unwrap(), Contents::Plain);
        let v = seg.map_all().unwrap();
        v.write_at(0, &[0xAB; 128]).unwrap();
        assert_eq!(inspect(&n).unwrap(), Contents::Plain);
        layout::init(&v, 0, Kind::Spsc, [1, 2, 0, 0]).unwrap();
        // A header with the parameters of a small spsc ring of bytes; garbage peer
        // tokens name no live process.
        assert_eq!(
            inspect(&n).unwrap(),
            Contents::Object {
                kind: Kind::Spsc,
                state: Some(ObjectState::Spsc {
                    capacity: 1,
                    max_message: 2,
                    producer: None,
                    consumer: None,
                    queued: Some(0)
                })
            }
        );
        v.write_pod(8, &77u32).unwrap(); // another layout version
        assert!(matches!(
            inspect(&n).unwrap(),
            Contents::Invalid(LayoutError::Version { found: 77, .. })
        ));
        let tiny = name("tiny");
        let _t = Segment::create(&tiny, 16).unwrap();
        assert_eq!(inspect(&tiny).unwrap(), Contents::Plain);
        assert!(matches!(
            inspect(&name("missing")),
            Err(OpenError::NotFound { .. })
        ));
    }

    #[test]
    fn sync_object_states() {
        let n = name("mutex");
        let m = NamedMutex::create(&n).unwrap();
        let unlocked = inspect(&n).unwrap();
        assert_eq!(
            unlocked,
            Contents::Object {
                kind: Kind::Mutex,
                state: Some(ObjectState::Mutex {
                    locked: false,
                    owner_thread: None,
                    owner_alive: None,
                    consistent: true
                })
            }
        );
        let guard = m.lock().unwrap();
        let tid = crate::sys::liveness::current_tid();
        assert_eq!(
            inspect(&n).unwrap(),
            Contents::Object {
                kind: Kind::Mutex,
                state: Some(ObjectState::Mutex {
                    locked: true,
                    owner_thread: Some(tid),
                    owner_alive: Some(true),
                    consistent: true
                })
            }
        );
        drop(guard);

        let n = name("sem");
        let s = NamedSemaphore::create(&n, 3, 5).unwrap();
        s.try_wait().unwrap();
        assert_eq!(
            inspect(&n).unwrap(),
            Contents::Object {
                kind: Kind::Semaphore,
                state: Some(ObjectState::Semaphore { value: 2, max: 5 })
            }
        );

        let n = name("event");
        let e = NamedEvent::create(&n, EventReset::Auto, false).unwrap();
        let state = |c: Contents| match c {
            Contents::Object {
                state: Some(ObjectState::Event { set, reset }),
                ..
            } => (set, reset),
            other => panic!("not an event: {other:?}"),
        };
        assert_eq!(state(inspect(&n).unwrap()), (false, EventReset::Auto));
        e.set();
        assert_eq!(state(inspect(&n).unwrap()), (true, EventReset::Auto));
        assert_eq!(inspect(&n).unwrap().kind_name(), "event");
    }
}
