//! Unix descriptor helpers for `shmipc::os::unix`, part of the shared-memory
//! backend.

use std::io;
use std::os::fd::BorrowedFd;

/// Clears close-on-exec on `fd`, so that child processes inherit it.
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
    Ok(())
}

/// A fresh open of the object `fd` names, with a holder's shared `flock` of its
/// own (a `dup` would share the description, and so the lock). `None` where
/// `/proc` is missing: the caller then duplicates.
#[cfg(target_os = "linux")]
pub(crate) fn reopen_as_holder(
    fd: BorrowedFd<'_>,
    writable: bool,
) -> io::Result<Option<std::os::fd::OwnedFd>> {
    use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
    use std::os::fd::{AsFd, AsRawFd};
    let access = if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    };
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    let new = match rfs::open(path.as_str(), access | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    rfs::flock(&new, FlockOperation::NonBlockingLockShared)?;
    Ok(Some(new))
}
