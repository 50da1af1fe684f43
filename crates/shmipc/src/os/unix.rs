//! Unix extras: descriptors of segments, for handing an unnamed segment to a child.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! use shmipc::Segment;
//! use shmipc::os::unix::SegmentExt;
//!
//! let seg = Segment::options().size(4096).create_unnamed()?;
//! let fd = seg.inheritable_fd()?; // no close-on-exec: a child inherits it
//! std::process::Command::new("child").env("SHM_FD", fd.as_raw_fd().to_string()).status()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! The child takes it back with [`from_fd`].
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::segment::{Access, Inner, Segment};
use crate::sys;

/// Unix-only methods of [`Segment`].
pub trait SegmentExt {
    /// The segment's descriptor.
    fn as_fd(&self) -> BorrowedFd<'_>;
    /// A duplicate of the descriptor, close-on-exec.
    ///
    /// # Errors
    /// The OS error of `fcntl(F_DUPFD_CLOEXEC)`.
    fn try_clone_fd(&self) -> io::Result<OwnedFd>;
    /// A duplicate of the descriptor that child processes inherit (no close-on-exec).
    ///
    /// # Errors
    /// The OS error of `dup`/`fcntl`.
    fn inheritable_fd(&self) -> io::Result<OwnedFd>;
}

impl SegmentExt for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.handle.fd()
    }

    fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.as_fd().try_clone_to_owned()
    }

    fn inheritable_fd(&self) -> io::Result<OwnedFd> {
        let fd = rustix::io::dup(self.as_fd())?;
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())?;
        Ok(fd)
    }
}

/// Makes a [`Segment`] of a descriptor received from another process (inherited,
/// or passed over a Unix socket). Its size is the object's current size.
///
/// # Errors
/// The OS error of `fstat`.
pub fn from_fd(fd: OwnedFd, access: Access) -> io::Result<Segment> {
    // The descriptor must support fstat; anything mmap-able does.
    let _ = fd.as_fd();
    let handle = sys::Handle::from_fd(fd)?;
    Ok(Segment {
        inner: Arc::new(Inner {
            name: None,
            handle,
            access,
        }),
    })
}
