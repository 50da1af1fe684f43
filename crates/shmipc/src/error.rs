//! One error enum per operation. Each message says what happened to which object and
//! what to do about it; the OS error, where there is one, is the [`source`].
//!
//! [`source`]: std::error::Error::source

use std::io;

use crate::name::NameError;
use crate::sys;

/// Why [`Segment::create`](crate::Segment::create) (or `create_or_open`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The name broke a naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A live segment with this name exists already.
    #[error("segment `{name}` already exists: open it, remove it, or choose another name")]
    AlreadyExists {
        /// The segment's name.
        name: String,
    },
    /// The requested size is not usable.
    #[error("segment `{name}`: size {size} is invalid: {reason}")]
    InvalidSize {
        /// The segment's name.
        name: String,
        /// The requested size.
        size: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The mode has bits beyond read/write for owner, group and others (`0o666`).
    #[error("segment `{name}`: mode {mode:#o} has bits beyond read/write (0o666: rw-rw-rw-): give read/write permission bits such as 0o600 or 0o660")]
    InvalidMode {
        /// The segment's name.
        name: String,
        /// The requested mode.
        mode: u32,
    },
    /// The backing store cannot hold the requested size.
    #[error("segment `{name}`: {size} bytes do not fit, only {available} bytes are free in {store}: ask for less, or free space there")]
    NoSpace {
        /// The segment's name.
        name: String,
        /// The requested size.
        size: u64,
        /// Bytes free in the backing store.
        available: u64,
        /// The backing store (e.g. `/dev/shm`).
        store: String,
    },
    /// The backing store holds as many objects as it may (its limit of files,
    /// e.g. a tmpfs's `nr_inodes`), whatever their sizes.
    #[error("segment `{name}`: {store} has no room for another object (its limit of files is reached, though bytes may be free): remove objects there, or raise its limit")]
    TooManyObjects {
        /// The segment's name.
        name: String,
        /// The backing store (e.g. `/dev/shm`).
        store: String,
    },
    /// The disk quota of the segment's owner on the backing store is used up
    /// (`EDQUOT`), whatever bytes are free there.
    #[error("segment `{name}`: the disk quota of this user on {store} is used up: free space that this user holds there, or ask for a larger quota")]
    QuotaExceeded {
        /// The segment's name.
        name: String,
        /// The backing store (e.g. `/dev/shm`, or the file system of a file).
        store: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A segment with this name exists and is smaller than requested.
    #[error("segment `{name}` exists with {existing} bytes, fewer than the {requested} requested: open it with its size or remove it first")]
    TooSmall {
        /// The segment's name.
        name: String,
        /// Its actual size.
        existing: u64,
        /// The size asked for.
        requested: u64,
    },
    /// The OS refused access.
    #[error("segment `{name}`: permission denied: check its owner and mode, or use another name")]
    PermissionDenied {
        /// The segment's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The combination of options is not available on this OS.
    #[error("segment `{name}`: {what} is not supported on this OS{hint}")]
    Unsupported {
        /// The segment's name.
        name: String,
        /// What is unsupported.
        what: &'static str,
        /// What to use instead (starts with `: ` or is empty).
        hint: &'static str,
    },
    /// Any other OS failure.
    #[error("segment `{name}`: {op} failed: {source}")]
    Os {
        /// The segment's name.
        name: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why [`Segment::open`](crate::Segment::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name broke a naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No live segment has this name.
    #[error("segment `{name}` does not exist: create it first, or check the name")]
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// The OS refused access.
    #[error("segment `{name}`: permission denied: check its owner and mode, or open it read-only")]
    PermissionDenied {
        /// The segment's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The object exists but has size 0: another program created it and has not
    /// sized it yet, or truncated it.
    #[error("segment `{name}` has size 0: another program created it and has not sized it yet, or truncated it; try again, or check who resizes it")]
    Empty {
        /// The segment's name.
        name: String,
    },
    /// The object is held exclusively by a process that does not let go.
    #[error("segment `{name}` stayed locked by another process past the deadline: check who holds it, then retry")]
    Busy {
        /// The segment's name.
        name: String,
    },
    /// The combination of options is not available on this OS.
    #[error("segment `{name}`: {what} is not supported on this OS{hint}")]
    Unsupported {
        /// The segment's name.
        name: String,
        /// What is unsupported.
        what: &'static str,
        /// What to use instead (starts with `: ` or is empty).
        hint: &'static str,
    },
    /// Any other OS failure.
    #[error("segment `{name}`: {op} failed: {source}")]
    Os {
        /// The segment's name.
        name: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why [`Segment::map`](crate::Segment::map) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// `offset + len` is past the end of the segment.
    #[error("segment `{name}`: range {offset}..{offset}+{len} is outside its {size} bytes: map a range inside the segment")]
    OutOfRange {
        /// The segment's name.
        name: String,
        /// Requested offset.
        offset: u64,
        /// Requested length (resolved when 0 was given).
        len: u64,
        /// Segment size.
        size: u64,
    },
    /// `offset + len` overflows.
    #[error("segment `{name}`: offset {offset} plus length {len} overflows: use a smaller offset or length")]
    Overflow {
        /// The segment's name.
        name: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// A write view was asked of a segment opened read-only.
    #[error("segment `{name}` was opened read-only: open it with `Access::ReadWrite` to map it writable (or map it copy-on-write)")]
    ReadOnly {
        /// The segment's name.
        name: String,
    },
    /// Any other OS failure.
    #[error("segment `{name}`: {op} failed: {source}")]
    Os {
        /// The segment's name.
        name: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a read or write through a [`View`](crate::View) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The access reaches past the end of the view.
    #[error("access at offset {offset} of {len} bytes is outside the view's {view_len} bytes")]
    OutOfBounds {
        /// Offset into the view.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Length of the view.
        view_len: usize,
    },
    /// The view is read-only.
    #[error("the view is read-only: map the segment with `Access::ReadWrite` or `Access::CopyOnWrite` to write")]
    ReadOnly,
    /// An atomic was asked for at an offset that is not aligned for it.
    #[error("offset {offset} is not a multiple of {align}, as an atomic there needs")]
    Misaligned {
        /// Offset into the view.
        offset: usize,
        /// The required alignment.
        align: usize,
    },
}

/// Why [`Segment::remove`](crate::Segment::remove) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The name broke a naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// No segment has this name.
    #[error("segment `{name}` does not exist: check the name")]
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// The OS refused.
    #[error("segment `{name}`: permission denied: only its owner (or root) can remove it")]
    PermissionDenied {
        /// The segment's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The OS cannot remove named segments (Windows: they go with their last handle).
    #[error("segment `{name}`: {what} is not supported on this OS{hint}")]
    Unsupported {
        /// The segment's name.
        name: String,
        /// What is unsupported.
        what: &'static str,
        /// What to use instead (starts with `: ` or is empty).
        hint: &'static str,
    },
    /// Any other OS failure.
    #[error("segment `{name}`: {op} failed: {source}")]
    Os {
        /// The segment's name.
        name: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why listing segments (or collecting stale ones) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// This OS offers no way to enumerate named segments.
    #[error("listing segments is not supported on this OS: {hint}")]
    Unsupported {
        /// What to do instead.
        hint: &'static str,
    },
    /// The OS failed.
    #[error("listing {place} failed: {source}")]
    Os {
        /// What was being listed.
        place: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why [`View::flush`](crate::View::flush) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlushError {
    /// The range is outside the view.
    #[error(transparent)]
    Range(#[from] AccessError),
    /// The OS failed to write the pages back.
    #[error("flushing the view failed: {source}")]
    Os {
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------------
// The one place where the shared-memory backends' failures (`sys::Error`) become the
// public errors above: each operation's enum, named after its object.

impl CreateError {
    /// Creating `name` failed in the backend.
    pub(crate) fn from_sys(name: &str, e: sys::Error) -> Self {
        let name = name.to_owned();
        match e {
            sys::Error::AlreadyExists => Self::AlreadyExists { name },
            sys::Error::PermissionDenied(source) => Self::PermissionDenied { name, source },
            sys::Error::NoSpace {
                size,
                available,
                store,
            } => Self::NoSpace {
                name,
                size,
                available,
                store,
            },
            sys::Error::TooManyObjects { store } => Self::TooManyObjects { name, store },
            sys::Error::Quota { store, source } => Self::QuotaExceeded {
                name,
                store,
                source,
            },
            sys::Error::InvalidSize { size, reason } => Self::InvalidSize { name, size, reason },
            sys::Error::Unsupported { what, hint } => Self::Unsupported { name, what, hint },
            sys::Error::Os { op, source } => Self::Os { name, op, source },
            // Kinds no backend's create reports.
            e => Self::Os {
                name,
                op: "create",
                source: e.into(),
            },
        }
    }
}

impl OpenError {
    /// Opening (or looking at) `name` failed in the backend.
    pub(crate) fn from_sys(name: &str, e: sys::Error) -> Self {
        let name = name.to_owned();
        match e {
            sys::Error::NotFound => Self::NotFound { name },
            sys::Error::PermissionDenied(source) => Self::PermissionDenied { name, source },
            sys::Error::Empty => Self::Empty { name },
            sys::Error::Busy => Self::Busy { name },
            sys::Error::Unsupported { what, hint } => Self::Unsupported { name, what, hint },
            sys::Error::Os { op, source } => Self::Os { name, op, source },
            // Kinds no backend's open reports.
            e => Self::Os {
                name,
                op: "open",
                source: e.into(),
            },
        }
    }
}

impl RemoveError {
    /// Removing `name` failed in the backend.
    pub(crate) fn from_sys(name: &str, e: sys::Error) -> Self {
        let name = name.to_owned();
        match e {
            sys::Error::NotFound => Self::NotFound { name },
            sys::Error::PermissionDenied(source) => Self::PermissionDenied { name, source },
            sys::Error::Unsupported { what, hint } => Self::Unsupported { name, what, hint },
            sys::Error::Os { op, source } => Self::Os { name, op, source },
            // Kinds no backend's remove reports.
            e => Self::Os {
                name,
                op: "remove",
                source: e.into(),
            },
        }
    }
}

impl From<sys::Error> for ListError {
    /// Listing (or collecting) failed in the backend.
    fn from(e: sys::Error) -> Self {
        match e {
            sys::Error::Unsupported { hint, .. } => Self::Unsupported { hint },
            sys::Error::List { place, source } => Self::Os { place, source },
            // Kinds no backend's list reports.
            e => Self::Os {
                place: "segments".into(),
                source: e.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_errors_become_each_operations_error_named() {
        let denied = || io::Error::from(io::ErrorKind::PermissionDenied);
        let e = CreateError::from_sys(
            "seg",
            sys::Error::Os {
                op: "fstat",
                source: denied(),
            },
        );
        assert!(matches!(&e, CreateError::Os { name, op: "fstat", .. } if name == "seg"));
        assert!(
            e.to_string().starts_with("segment `seg`: fstat failed: "),
            "{e}"
        );
        assert!(matches!(
            CreateError::from_sys("seg", sys::Error::AlreadyExists),
            CreateError::AlreadyExists { name } if name == "seg"
        ));
        assert!(matches!(
            OpenError::from_sys("seg", sys::Error::Busy),
            OpenError::Busy { name } if name == "seg"
        ));
        assert!(matches!(
            OpenError::from_sys("seg", sys::Error::PermissionDenied(denied())),
            OpenError::PermissionDenied { name, .. } if name == "seg"
        ));
        assert!(matches!(
            RemoveError::from_sys("seg", sys::Error::NotFound),
            RemoveError::NotFound { name } if name == "seg"
        ));
        let e = ListError::from(sys::Error::List {
            place: "/dev/shm".into(),
            source: denied(),
        });
        assert!(
            e.to_string().starts_with("listing /dev/shm failed: "),
            "{e}"
        );
        // A kind the operation never gets still names the object, as an OS failure.
        let e = CreateError::from_sys("seg", sys::Error::NotFound);
        assert!(matches!(&e, CreateError::Os { op: "create", .. }), "{e}");
    }
}
