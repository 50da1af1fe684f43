//! Backend for targets without one: every operation is a clear `Unsupported` error.

use std::io;
use std::ptr::NonNull;

use super::Error;
use crate::name::Name;
use crate::vocab::{Access, Backing, CreateParams, Persistence, SegmentInfo};

pub(crate) const MAX_NAME_LEN: usize = 255;
const WHAT: &str = "shared memory";
const HINT: &str = ": shmipc supports Linux and Windows (macOS is type-checked only)";

pub(crate) fn granularity() -> usize {
    4096
}

/// Never constructed on this target.
#[derive(Debug)]
pub(crate) enum Handle {}

/// Whether `name` still names the object `h` holds: cannot be told here.
pub(crate) fn still_named(_h: &Handle, _name: &Name) -> Option<bool> {
    None
}

impl Handle {
    pub(crate) fn size(&self) -> u64 {
        match *self {}
    }
    pub(crate) fn backing(&self) -> &Backing {
        match *self {}
    }
    pub(crate) fn persistence(&self) -> Persistence {
        match *self {}
    }
    #[cfg(unix)]
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match *self {}
    }
    #[cfg(unix)]
    pub(crate) fn from_fd(_fd: std::os::fd::OwnedFd) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "shared memory is not supported on this OS",
        ))
    }
}

pub(crate) fn create(_name: &Name, _p: &CreateParams<'_>) -> Result<Handle, Error> {
    Err(Error::Unsupported {
        what: WHAT,
        hint: HINT,
    })
}

/// Names an object made with `defer_publish`: here objects are named when they
/// are made (the OS cannot name one later), so there is nothing left to do.
pub(crate) fn publish(_h: &Handle) -> Result<(), Error> {
    Ok(())
}

pub(crate) fn create_unnamed(_size: u64, _reserve: bool) -> Result<Handle, Error> {
    Err(Error::Unsupported {
        what: WHAT,
        hint: HINT,
    })
}

pub(crate) fn open(_name: &Name, _access: Access) -> Result<Handle, Error> {
    Err(Error::Unsupported {
        what: WHAT,
        hint: HINT,
    })
}

pub(crate) fn remove(_name: &Name) -> Result<(), Error> {
    Err(Error::Unsupported {
        what: WHAT,
        hint: HINT,
    })
}

pub(crate) fn list() -> Result<Vec<SegmentInfo>, Error> {
    Err(Error::Unsupported {
        what: "listing segments",
        hint: "shmipc supports Linux and Windows",
    })
}

pub(crate) fn info(_name: &Name) -> Result<SegmentInfo, Error> {
    Err(Error::Unsupported {
        what: WHAT,
        hint: HINT,
    })
}

pub(crate) fn gc(_dry_run: bool) -> Result<Vec<String>, Error> {
    Err(Error::Unsupported {
        what: "listing segments",
        hint: "shmipc supports Linux and Windows",
    })
}

/// Never constructed on this target.
#[derive(Debug)]
pub(crate) enum Mapping {}

impl Mapping {
    /// Names the range for a fault report: nothing to do here (no SIGBUS).
    pub(crate) fn label(&self, _name: &str) {}

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        match *self {}
    }
}

pub(crate) fn map(h: &Handle, _offset: u64, _len: usize, _access: Access) -> io::Result<Mapping> {
    match *h {}
}

pub(crate) fn flush(m: &Mapping, _start: usize, _len: usize) -> io::Result<()> {
    match *m {}
}

/// Nothing is ever mapped here, so there is no `SIGBUS` to report.
#[allow(dead_code)]
pub(crate) fn install_sigbus_handler() -> io::Result<()> {
    Ok(())
}
