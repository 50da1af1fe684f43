//! The errors of the synchronization objects: one enum per operation, each message
//! saying what to do.

use std::io;
use std::time::Duration;

use crate::error::{CreateError, MapError, OpenError};
use crate::layout::LayoutError;
use crate::segment::Access;
use crate::view::View;

use super::mutex::MutexGuard;

/// Why creating or opening a synchronization object (named, or placed in a view)
/// failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// Creating the named object's segment failed (name taken, bad name, no space…).
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Opening the named object's segment failed (not found, permission…).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Mapping the object failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The region holds no valid object of this kind: garbage, another program's
    /// bytes, another kind of object, another version, or too few bytes.
    #[error("{} is not a usable shmipc {kind}: {source}", object(.name.as_deref(), *.offset))]
    Invalid {
        /// The kind asked for.
        kind: &'static str,
        /// The named object's name; for an object placed in a view, the name of the
        /// view's segment (`None` if it has none).
        name: Option<String>,
        /// Where in its segment's view the object was looked for: `None` for a
        /// named object.
        offset: Option<usize>,
        /// What the header check found.
        #[source]
        source: LayoutError,
    },
    /// The view cannot take part in synchronization.
    #[error("a {kind} needs a read-write view, this one is {access:?}: map the segment with Access::ReadWrite (read-only and copy-on-write views are private or cannot store)")]
    NotWritable {
        /// The kind asked for.
        kind: &'static str,
        /// The view's access.
        access: Access,
    },
    /// The offset is not aligned.
    #[error("a {kind} at offset {offset} is misaligned: place it at a multiple of {align} bytes from an aligned view start")]
    Misaligned {
        /// The kind asked for.
        kind: &'static str,
        /// The offset given.
        offset: usize,
        /// The alignment needed.
        align: usize,
    },
    /// A creation parameter is out of range.
    #[error("{kind}: {what} is invalid: {reason}")]
    InvalidParameter {
        /// The kind asked for.
        kind: &'static str,
        /// Which parameter.
        what: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The mutex was created by a process that sees another `/dev/shm` (another
    /// container without a shared `/dev/shm`, e.g. through a file-backed segment):
    /// owner death is told through a file there, so it is refused.
    #[error("the mutex was created by a process that sees another /dev/shm (a container?): a dead owner cannot be detected between them; share /dev/shm with the creator (e.g. --ipc=host or a shared memory volume)")]
    ForeignNamespace,
    /// This OS has no backend for synchronization objects yet.
    #[error("inter-process {kind} objects are not supported on this OS yet (Linux and Windows only for now)")]
    Unsupported {
        /// The kind asked for.
        kind: &'static str,
    },
}

/// The object of an [`ObjectError::Invalid`], for people.
fn object(name: Option<&str>, offset: Option<usize>) -> String {
    match (name, offset) {
        (Some(name), None) => format!("`{name}`"),
        (Some(name), Some(offset)) => format!("offset {offset} of segment `{name}`"),
        (None, Some(offset)) => format!("offset {offset} of an unnamed segment"),
        (None, None) => "the object".to_owned(),
    }
}

impl ObjectError {
    /// An [`Invalid`](Self::Invalid) object at `offset` of `view`.
    pub(crate) fn placed(
        kind: &'static str,
        view: &View,
        offset: usize,
        source: LayoutError,
    ) -> Self {
        Self::Invalid {
            kind,
            name: view.segment_name(),
            offset: Some(offset),
            source,
        }
    }

    /// An [`Invalid`](Self::Invalid) named object.
    pub(crate) fn named(kind: &'static str, name: &str, source: LayoutError) -> Self {
        Self::Invalid {
            kind,
            name: Some(name.to_owned()),
            offset: None,
            source,
        }
    }

    /// This error of the named object `name` (an invalid object is named by its
    /// name rather than by where its segment holds it).
    pub(crate) fn of_named(self, name: &str) -> Self {
        match self {
            Self::Invalid { kind, source, .. } => Self::named(kind, name, source),
            e => e,
        }
    }
}

/// Why [`Mutex::lock`](super::Mutex::lock) did not return a plain guard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError<'a> {
    /// A holder died (or panicked) holding the mutex: the lock is now held by this
    /// thread (the guard), and the protected data may be half-updated. Repair it and
    /// call [`MutexGuard::mark_consistent`]; until somebody does, every locker gets
    /// this error again.
    #[error("the previous owner of the mutex died while holding it: the lock is held now; repair the shared data, then call mark_consistent()")]
    OwnerDied(MutexGuard<'a>),
    /// This thread holds the mutex already: it is not recursive, so waiting would
    /// never end.
    #[error("this thread holds the mutex already (it is not recursive): drop the guard first")]
    WouldDeadlock,
    /// This thread's identity could not be read from the OS (Linux: is /proc
    /// mounted?), or the OS wait failed.
    #[error("cannot tell this thread's identity or wait on the mutex: {0}")]
    Os(#[source] io::Error),
}

/// Why [`Mutex::try_lock`](super::Mutex::try_lock) did not return a plain guard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryLockError<'a> {
    /// As [`LockError::OwnerDied`].
    #[error("the previous owner of the mutex died while holding it: the lock is held now; repair the shared data, then call mark_consistent()")]
    OwnerDied(MutexGuard<'a>),
    /// A live thread (possibly this one) holds it.
    #[error("the mutex is held by a live thread: retry later, or use lock_timeout")]
    WouldBlock,
    /// As [`LockError::Os`].
    #[error("cannot tell this thread's identity or wait on the mutex: {0}")]
    Os(#[source] io::Error),
}

/// Why [`Mutex::lock_timeout`](super::Mutex::lock_timeout) did not return a plain
/// guard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockTimeoutError<'a> {
    /// As [`LockError::OwnerDied`].
    #[error("the previous owner of the mutex died while holding it: the lock is held now; repair the shared data, then call mark_consistent()")]
    OwnerDied(MutexGuard<'a>),
    /// A live thread held it for the whole timeout.
    #[error(
        "the mutex stayed held by a live thread for {0:?}: retry, wait longer, or find the holder"
    )]
    Timeout(Duration),
    /// As [`LockError::WouldDeadlock`] (returned at once, not after the timeout).
    #[error("this thread holds the mutex already (it is not recursive): drop the guard first")]
    WouldDeadlock,
    /// As [`LockError::Os`].
    #[error("cannot tell this thread's identity or wait on the mutex: {0}")]
    Os(#[source] io::Error),
}

/// Why [`Semaphore::post`](super::Semaphore::post) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// The count is at its maximum.
    #[error("the semaphore is at its maximum count {max}: post only units that were taken, or create it with a higher maximum")]
    Full {
        /// The maximum count.
        max: u32,
    },
}

/// Why [`Semaphore::try_wait`](super::Semaphore::try_wait) took nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TryWaitError {
    /// The count is 0.
    #[error("the semaphore's count is 0: wait, or retry after a post")]
    WouldBlock,
}

/// Why a `wait_timeout` ([`Semaphore`](super::Semaphore), [`Event`](super::Event))
/// returned without the semaphore unit or the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitTimeoutError {
    /// Nobody posted or set it in time.
    #[error("timed out after {0:?} waiting for a post or set: retry, wait longer, or check the peer that should signal")]
    Timeout(Duration),
}
