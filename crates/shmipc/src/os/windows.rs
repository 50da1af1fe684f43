//! Windows extras: section handles of segments, for handing an unnamed segment to a
//! child process by handle inheritance, and the `Global\` namespace.
//!
//! ```no_run
//! use std::os::windows::io::AsRawHandle;
//! use shmipc::Segment;
//! use shmipc::os::windows::SegmentExt;
//!
//! let seg = Segment::options().size(4096).create_unnamed()?;
//! let handle = seg.inheritable_handle()?; // children spawned from now on inherit it
//! std::process::Command::new("child")
//!     .env("SHM_HANDLE", (handle.as_raw_handle() as usize).to_string())
//!     .env("SHM_SIZE", seg.size().to_string())
//!     .status()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! The child takes it back with [`from_handle_sized`] (or [`from_handle`]).
//!
//! An inheritable handle is inherited by *every* child the process spawns while it
//! is open (std's `Command` passes `bInheritHandles = TRUE`): drop it once the child
//! is started.
//!
//! # Names
//!
//! Portable names live in the session namespace: `demo` is `Local\demo`. Objects
//! shared across sessions (services and desktop programs) live in `Global\`; use
//! [`create_global`] and [`open_global`] for those. Creating there needs the
//! `SeCreateGlobalPrivilege` privilege on Windows (administrators and services have
//! it); opening does not.

use std::io;
use std::os::windows::io::{BorrowedHandle, OwnedHandle};
use std::sync::Arc;

use crate::error::{CreateError, OpenError};
use crate::name::Name;
use crate::segment::{Access, CreateParams, Inner, Persistence, Segment};
use crate::sys;

/// Windows-only methods of [`Segment`].
pub trait SegmentExt {
    /// The segment's section handle.
    fn as_handle(&self) -> BorrowedHandle<'_>;
    /// A duplicate of the section handle that child processes do not inherit.
    ///
    /// # Errors
    /// The OS error of `DuplicateHandle`.
    fn try_clone_handle(&self) -> io::Result<OwnedHandle>;
    /// A duplicate of the section handle that child processes inherit.
    ///
    /// # Errors
    /// The OS error of `DuplicateHandle`.
    fn inheritable_handle(&self) -> io::Result<OwnedHandle>;
}

impl SegmentExt for Segment {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.inner.handle.section()
    }

    fn try_clone_handle(&self) -> io::Result<OwnedHandle> {
        self.as_handle().try_clone_to_owned()
    }

    fn inheritable_handle(&self) -> io::Result<OwnedHandle> {
        let h = self.try_clone_handle()?;
        sys::set_inheritable(&h)?;
        Ok(h)
    }
}

/// Makes a [`Segment`] of a section handle received from another process (inherited,
/// or duplicated into this one). Its size is the section's size rounded up to whole
/// pages, which is all the OS tells; pass the exact size with [`from_handle_sized`].
///
/// # Errors
/// The OS error of mapping the section to learn its size.
pub fn from_handle(handle: OwnedHandle, access: Access) -> io::Result<Segment> {
    wrap(sys::Handle::from_handle(handle, None)?, access)
}

/// As [`from_handle`], with the exact size (sent along by the parent), checked
/// against the section.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] if `size` is 0 or larger than the section; the OS
/// error of mapping the section to learn its size.
pub fn from_handle_sized(handle: OwnedHandle, size: u64, access: Access) -> io::Result<Segment> {
    wrap(sys::Handle::from_handle(handle, Some(size))?, access)
}

fn wrap(handle: sys::Handle, access: Access) -> io::Result<Segment> {
    Ok(Segment {
        inner: Arc::new(Inner {
            anchor: crate::sys::liveness::Anchor::new(),
            name: None,
            handle,
            access,
        }),
    })
}

/// Creates a memory segment named `Global\NAME` (owner-only, gone with its last handle).
///
/// # Errors
/// As [`Segment::create`]; [`CreateError::PermissionDenied`] without
/// `SeCreateGlobalPrivilege`.
pub fn create_global(name: &str, size: u64) -> Result<Segment, CreateError> {
    let name = Name::new(name)?;
    if size == 0 {
        return Err(CreateError::InvalidSize {
            name: name.to_string(),
            size,
            reason: "a segment needs at least one byte",
        });
    }
    let params = CreateParams {
        size,
        mode: 0o600,
        persistence: Persistence::UntilLastClose,
        file: None,
        reserve: false,
        defer_publish: false,
    };
    let handle = sys::create_in(&name, &params, sys::Namespace::Global)
        .map_err(|e| CreateError::from_sys(name.as_str(), e))?;
    Ok(Segment {
        inner: Arc::new(Inner {
            anchor: crate::sys::liveness::Anchor::new(),
            name: Some(name),
            handle,
            access: Access::ReadWrite,
        }),
    })
}

/// Opens the segment named `Global\NAME`.
///
/// # Errors
/// As [`Segment::open`].
pub fn open_global(name: &str, access: Access) -> Result<Segment, OpenError> {
    let name = Name::new(name)?;
    let handle = sys::open_in(&name, access, sys::Namespace::Global)
        .map_err(|e| OpenError::from_sys(name.as_str(), e))?;
    Ok(Segment {
        inner: Arc::new(Inner {
            anchor: crate::sys::liveness::Anchor::new(),
            name: Some(name),
            handle,
            access,
        }),
    })
}
