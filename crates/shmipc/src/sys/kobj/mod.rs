//! Named kernel objects: Win32 mutexes, semaphores and events (`Local\NAME`), and a
//! one-page shared flag beside them. The synchronization layer's named objects are
//! these on Windows (`sync/windows.rs`); elsewhere they are segments holding lock
//! words, and this feature is unsupported (`unsupported.rs`: every call says so).
//!
//! Errors are classified here once ([`Fail`]), so that the layers above build their
//! public errors without knowing Win32 codes.

use std::io;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(not(windows))]
#[path = "unsupported.rs"]
mod imp;

#[allow(unused_imports)] // only Windows uses the objects
pub(crate) use imp::*;

/// Why creating or opening a kernel object failed.
#[allow(dead_code)] // constructed by the Windows backend only
#[derive(Debug)]
pub(crate) enum Fail {
    /// No object has that name (open).
    NotFound,
    /// An object of this kind has that name already (an exclusive create).
    Exists,
    /// An object of another kind has that name (`None`: not a mutex, semaphore or
    /// event, e.g. a section).
    OtherKind(Option<&'static str>),
    /// The object's security refuses us.
    Denied(io::Error),
    /// Building the security descriptor failed.
    Security(io::Error),
    /// Anything else the OS said.
    Os(io::Error),
}

/// Why a wait did not end with the object signalled.
#[allow(dead_code)] // constructed by the Windows backend only
#[derive(Debug)]
pub(crate) enum WaitFail {
    /// The deadline passed.
    TimedOut,
    /// The wait failed.
    Os(io::Error),
}

/// How a wait ended.
#[allow(dead_code)] // constructed by the Windows backend only
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signalled {
    /// The object was signalled (a mutex: now ours).
    Yes,
    /// A mutex whose holder died holding it: now ours (`WAIT_ABANDONED`).
    Abandoned,
}
