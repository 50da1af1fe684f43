//! # shmipc
//!
//! Named shared memory for Rust programs, done the way the Win32 file-mapping API
//! does it, on every OS: create or open a named [`Segment`] backed by system memory
//! or a file, map [`View`]s of it at any offset, share it between processes, and let
//! it disappear when nobody holds it any more, even when the last holder crashed.
//!
//! ```
//! use shmipc::{Access, Segment};
//! # let name = format!("doc-lib-{}", std::process::id());
//! // Process 1: CreateFileMapping + MapViewOfFile + write.
//! let seg = Segment::create(&name, 1024)?;
//! let view = seg.map_all()?;
//! view.write_at(0, b"Hello from Process 1\0")?;
//!
//! // Process 2: OpenFileMapping(FILE_MAP_READ) + MapViewOfFile + read.
//! let reader = Segment::open(&name, Access::Read)?.map(0, 1024)?;
//! let mut buf = vec![0u8; 1024];
//! reader.read_at(0, &mut buf)?;
//! let text = buf.split(|&b| b == 0).next().unwrap_or_default();
//! assert_eq!(text, b"Hello from Process 1");
//! // Dropping the last Segment/View removes the segment (UnmapViewOfFile, CloseHandle).
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Lifetime
//!
//! A segment lives while any process holds it (a [`Segment`] or a [`View`]) and is
//! gone when the last holder closes it **or dies** (see [`Persistence`]). Segments
//! made by other programs are never removed unless asked ([`Segment::remove`]).
//!
//! ## Synchronization
//!
//! [`sync`] has the mutex, semaphore and event the seed asks for, named
//! ([`NamedMutex`], [`NamedSemaphore`], [`NamedEvent`]) or placed in your own
//! segment, correct when a process dies at the worst moment: a mutex whose holder
//! died is taken over by the next locker, who is told so (`OwnerDied`).
//!
//! ## Soundness
//!
//! No safe function returns a reference into memory another process may write:
//! [`View`] copies bytes and plain-data values in and out, and hands out atomics.
//! Raw access is `unsafe` with a written contract.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
mod deadline;
mod error;
#[cfg(not(loom))]
mod inspect;
mod layout;
mod name;
mod segment;
mod shim;
pub mod sync;
mod sys;
mod view;
mod vocab;
#[cfg(not(loom))]
mod waitset;

pub mod os;

pub use error::{
    AccessError, CreateError, FlushError, ListError, MapError, OpenError, RemoveError,
};
#[cfg(not(loom))]
pub use inspect::{inspect, Contents, ObjectState};
pub use layout::{Kind, LayoutError};
pub use name::{Name, NameError};
pub use segment::{
    Access, Backing, Disposition, Origin, Persistence, Segment, SegmentInfo, SegmentOptions,
};
pub use view::View;
#[cfg(not(loom))]
pub use waitset::{WaitSet, Waitable};

#[cfg(not(loom))]
pub use sync::{NamedEvent, NamedMutex, NamedSemaphore};
