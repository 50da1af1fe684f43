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

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::segment::{Access, Inner, Segment};
use crate::sys;

/// Makes a `SIGBUS` in a shmipc mapping a one-line report instead of a raw
/// signal death.
///
/// Memory mapped from a segment can vanish under the process: another program
/// may truncate the segment (`ftruncate`) while it is mapped, and a sparse segment
/// (created with [`reserve(false)`](crate::SegmentOptions::reserve)) on a full
/// `/dev/shm` has no page to give at first touch. Either way the kernel sends
/// `SIGBUS` to whoever touches the missing page, through any [`View`](crate::View)
/// or channel, and by default that kills the process without a word. shmipc cannot
/// stop a third party from truncating; what it can do is say what happened.
///
/// Once this is installed (process-wide; later calls do nothing), a `SIGBUS` whose
/// fault address lies in a mapping shmipc made writes one line to stderr naming
/// the segment and the offset, and ends the process with `_exit(1)` (no
/// destructors run: the process cannot go on once its memory is gone). A `SIGBUS`
/// anywhere else goes to the handler installed before this one, or kills the
/// process as it would have. The handler only reads a fixed table of atomics,
/// so it is async-signal-safe. The `shmipc` CLI installs it at start.
///
/// Inspection (`shmipc::inspect`) and [`Segment::read_at`] / [`Segment::write_at`]
/// never map, so they cannot fault this way at all.
///
/// # Errors
/// The OS error of `sigaction`.
pub fn install_sigbus_handler() -> io::Result<()> {
    sys::install_sigbus_handler()
}

/// Unix-only methods of [`Segment`].
pub trait SegmentExt {
    /// The segment's descriptor.
    fn as_fd(&self) -> BorrowedFd<'_>;
    /// A new descriptor of the segment, close-on-exec.
    ///
    /// For a named segment it is a fresh open of the same object with a holder's
    /// lock of its own (Linux), so the process that ends up with it counts as a
    /// holder: the segment outlives this handle while the descriptor is open.
    ///
    /// # Errors
    /// The OS error of reopening or duplicating the descriptor.
    fn try_clone_fd(&self) -> io::Result<OwnedFd>;
    /// As [`SegmentExt::try_clone_fd`], but inherited by child processes (no
    /// close-on-exec).
    ///
    /// # Errors
    /// The OS error of reopening or duplicating the descriptor.
    fn inheritable_fd(&self) -> io::Result<OwnedFd>;
}

impl SegmentExt for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.handle.fd()
    }

    fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        #[cfg(target_os = "linux")]
        if self.name().is_some() && *self.backing() == crate::Backing::Memory {
            return reopen_as_holder(self);
        }
        self.as_fd().try_clone_to_owned()
    }

    fn inheritable_fd(&self) -> io::Result<OwnedFd> {
        let fd = self.try_clone_fd()?;
        sys::shm::fd::set_inheritable(fd.as_fd())?;
        Ok(fd)
    }
}

/// A duplicate (`dup`) would share this handle's open file and so its lock: when
/// this handle closed, it would take the segment for unheld and remove its name.
/// A fresh open through `/proc/self/fd` gets an open file, and a lock, of its own.
#[cfg(target_os = "linux")]
fn reopen_as_holder(seg: &Segment) -> io::Result<OwnedFd> {
    let writable = seg.access() == Access::ReadWrite;
    match sys::shm::fd::reopen_as_holder(seg.as_fd(), writable)? {
        Some(fd) => Ok(fd),
        // No /proc: a duplicate is the best there is.
        None => seg.as_fd().try_clone_to_owned(),
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
            anchor: crate::sys::liveness::Anchor::new(),
            name: None,
            handle,
            access,
        }),
    })
}
