//! Shared memory: segments (named, unnamed, file-backed), their mappings, names
//! and lifetime rules; one backend per OS, picked here.
//!
//! Items every shared-memory backend exports:
//! * `MAX_NAME_LEN`, `granularity()` (the offset alignment a mapping needs);
//! * `Handle`: an open segment (its OS object plus what is needed to honour the
//!   lifetime rules when it is dropped), with `size()`, `backing()`;
//! * `create`, `open`, `create_unnamed`, `remove`, `list`, `info`, `gc`;
//! * `Mapping` (unmapped on drop), `map`, `flush`.
//!
//! The backends fail with [`Error`], which says what went wrong but not to which
//! object: the public error of each operation (`crate::error`) is built from it in
//! one place above `sys`, which adds the name.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "unsupported.rs"]
mod imp;

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod unix_map;

#[cfg(unix)]
pub(crate) mod fd;

pub(crate) use imp::*;

use std::io;

/// How a shared-memory call failed: the kinds the public errors distinguish, with
/// what each needs besides the object's name (the caller knows that).
///
/// Each backend reports only the kinds its OS has (Linux: all but `Unsupported`).
#[derive(Debug)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum Error {
    /// Nothing live has the name (or only a stale object, now removed).
    NotFound,
    /// A live object has the name.
    AlreadyExists,
    /// The OS refused access.
    PermissionDenied(io::Error),
    /// Held exclusively by another process past the patience.
    Busy,
    /// The object has size 0.
    Empty,
    /// The backing store cannot hold `size` bytes.
    NoSpace {
        size: u64,
        available: u64,
        store: String,
    },
    /// The store has no room for another object (its limit of files is reached),
    /// whatever the size.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    TooManyObjects { store: String },
    /// The disk quota of the object's owner on `store` is used up (`EDQUOT`: a
    /// file system, or a tmpfs mounted with quotas), whatever is free there.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Quota { store: String, source: io::Error },
    /// The size is refused.
    InvalidSize { size: u64, reason: &'static str },
    /// Not available on this OS; `hint` says what to use instead.
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    Unsupported {
        what: &'static str,
        hint: &'static str,
    },
    /// The step `op` failed.
    Os { op: &'static str, source: io::Error },
    /// Reading the directory (or registry) `place` failed while listing.
    List { place: String, source: io::Error },
}

impl From<Error> for io::Error {
    /// The OS error itself, or one of the matching kind.
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound => io::ErrorKind::NotFound.into(),
            Error::AlreadyExists => io::ErrorKind::AlreadyExists.into(),
            Error::Busy => io::ErrorKind::WouldBlock.into(),
            Error::Empty => io::ErrorKind::UnexpectedEof.into(),
            Error::NoSpace { store, .. } => io::Error::other(format!("no space left in {store}")),
            Error::TooManyObjects { store } => {
                io::Error::other(format!("no room for another object in {store}"))
            }
            Error::InvalidSize { reason, .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, reason)
            }
            Error::Unsupported { what, .. } => io::Error::new(io::ErrorKind::Unsupported, what),
            Error::PermissionDenied(source)
            | Error::Quota { source, .. }
            | Error::Os { source, .. }
            | Error::List { source, .. } => source,
        }
    }
}

// The name rules (`name.rs`, below `sys/`) state each OS's limit; the backend says why.
const _: () = assert!(crate::name::Name::MAX_LEN == imp::MAX_NAME_LEN);
