//! shmipc's errors as Python exceptions: the built-in class where one fits
//! (`FileNotFoundError`, `FileExistsError`, `PermissionError`, `ValueError`,
//! `TimeoutError`, `OSError`), a `shmipc.Error` subclass for the rest; always with
//! shmipc's own message, which names the object and says what to do.

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyTimeoutError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};
use shmipc::channel::{ChannelError, RecvError, SendError};
use shmipc::sync::{ObjectError, PostError};
use shmipc::{AccessError, CreateError, FlushError, MapError, OpenError, RemoveError};

create_exception!(
    shmipc,
    Error,
    pyo3::exceptions::PyException,
    "Base class of shmipc's own errors (built-in classes are used where one fits)."
);
create_exception!(
    shmipc,
    OwnerDied,
    Error,
    "The previous owner of the mutex died holding it. The lock IS held now: repair the shared data, then call mark_consistent() (or release())."
);
create_exception!(
    shmipc,
    Disconnected,
    Error,
    "The other side of the channel has gone (and everything it sent was received)."
);
create_exception!(
    shmipc,
    Busy,
    Error,
    "The channel endpoint (producer, consumer, publisher) is held by another live process."
);
create_exception!(
    shmipc,
    Corrupt,
    Error,
    "The shared memory holds something no correct peer writes (or not a shmipc object of this kind)."
);
create_exception!(
    shmipc,
    TooManyHeld,
    Error,
    "The subscriber already holds as many samples as it may (its max_held): release one (sample.release(), the end of its with block, or del) before receiving another, or copy with Subscriber.recv_bytes()."
);

/// `ENOSPC` (28 on Linux, macOS and in the Windows CRT's `errno.h`).
const ENOSPC: i32 = 28;
/// `EDQUOT` (Linux's number; only Linux reports it to us).
const EDQUOT: i32 = 122;

fn msg(e: &impl std::fmt::Display) -> String {
    e.to_string()
}

pub(crate) fn create(e: CreateError) -> PyErr {
    let m = msg(&e);
    match e {
        CreateError::AlreadyExists { .. } => PyFileExistsError::new_err(m),
        CreateError::InvalidName(_)
        | CreateError::InvalidSize { .. }
        | CreateError::InvalidMode { .. } => PyValueError::new_err(m),
        CreateError::PermissionDenied { .. } => PyPermissionError::new_err(m),
        CreateError::TooSmall { .. } => PyValueError::new_err(m),
        // A full store is what Python code (and `multiprocessing.shared_memory`)
        // knows as `OSError(ENOSPC)`: catchable as such, `errno` set.
        CreateError::NoSpace { .. } | CreateError::TooManyObjects { .. } => {
            PyOSError::new_err((ENOSPC, m))
        }
        CreateError::QuotaExceeded { .. } => PyOSError::new_err((EDQUOT, m)),
        CreateError::Os { .. } => PyOSError::new_err(m),
        _ => Error::new_err(m),
    }
}

pub(crate) fn open(e: OpenError) -> PyErr {
    let m = msg(&e);
    match e {
        OpenError::NotFound { .. } => PyFileNotFoundError::new_err(m),
        OpenError::InvalidName(_) => PyValueError::new_err(m),
        OpenError::PermissionDenied { .. } => PyPermissionError::new_err(m),
        OpenError::Os { .. } => PyOSError::new_err(m),
        _ => Error::new_err(m),
    }
}

pub(crate) fn map(e: MapError) -> PyErr {
    let m = msg(&e);
    match e {
        MapError::OutOfRange { .. } | MapError::Overflow { .. } => PyValueError::new_err(m),
        MapError::ReadOnly { .. } => PyPermissionError::new_err(m),
        _ => PyOSError::new_err(m),
    }
}

pub(crate) fn access(e: AccessError) -> PyErr {
    let m = msg(&e);
    match e {
        AccessError::ReadOnly => PyPermissionError::new_err(m),
        _ => PyValueError::new_err(m),
    }
}

pub(crate) fn flush(e: FlushError) -> PyErr {
    match e {
        FlushError::Range(a) => access(a),
        e => PyOSError::new_err(msg(&e)),
    }
}

pub(crate) fn remove(e: RemoveError) -> PyErr {
    let m = msg(&e);
    match e {
        RemoveError::NotFound { .. } => PyFileNotFoundError::new_err(m),
        RemoveError::InvalidName(_) => PyValueError::new_err(m),
        RemoveError::PermissionDenied { .. } => PyPermissionError::new_err(m),
        RemoveError::Os { .. } => PyOSError::new_err(m),
        _ => Error::new_err(m),
    }
}

pub(crate) fn object(e: ObjectError) -> PyErr {
    match e {
        ObjectError::Create(c) => create(c),
        ObjectError::Open(o) => open(o),
        ObjectError::Map(m) => map(m),
        e @ (ObjectError::InvalidParameter { .. }
        | ObjectError::Misaligned { .. }
        | ObjectError::NotWritable { .. }) => PyValueError::new_err(msg(&e)),
        e @ ObjectError::Invalid { .. } => Corrupt::new_err(msg(&e)),
        e => Error::new_err(msg(&e)),
    }
}

pub(crate) fn post(e: PostError) -> PyErr {
    PyValueError::new_err(msg(&e))
}

pub(crate) fn channel(e: ChannelError) -> PyErr {
    match e {
        ChannelError::Create(c) => create(c),
        ChannelError::Open(o) => open(o),
        ChannelError::Map(m) => map(m),
        e @ ChannelError::InvalidParameter { .. } => PyValueError::new_err(msg(&e)),
        e @ ChannelError::Busy { .. } => Busy::new_err(msg(&e)),
        e @ (ChannelError::Layout { .. } | ChannelError::Corrupt { .. }) => {
            Corrupt::new_err(msg(&e))
        }
        e => Error::new_err(msg(&e)),
    }
}

/// A send error other than a slice's timeout (which the wait loop handles).
pub(crate) fn send(e: SendError) -> PyErr {
    let m = msg(&e);
    match e {
        SendError::Timeout(()) => PyTimeoutError::new_err(m),
        SendError::Disconnected(()) => Disconnected::new_err(
            "the receiving side of the channel has gone: nobody will read this message",
        ),
        SendError::TooLarge { .. } => PyValueError::new_err(m),
        SendError::Corrupt(_) => Corrupt::new_err(m),
        _ => Error::new_err(m),
    }
}

/// A receive error other than `Empty` (which the wait loop handles).
pub(crate) fn recv(e: RecvError) -> PyErr {
    let m = msg(&e);
    match e {
        RecvError::Disconnected => Disconnected::new_err(
            "the sending side of the channel has gone and every message it sent has been received",
        ),
        RecvError::Empty => PyTimeoutError::new_err(m),
        RecvError::Corrupt(_) => Corrupt::new_err(m),
        RecvError::TooManyHeld { max } => TooManyHeld::new_err(format!(
            "this subscriber already holds {max} samples, the most it may (max_held): release one (sample.release(), the end of its with block, or del) before receiving another, copy with recv_bytes(), or subscribe to a topic created with a larger max_held"
        )),
        _ => Error::new_err(m),
    }
}

pub(crate) fn timeout(what: &str, secs: f64) -> PyErr {
    PyTimeoutError::new_err(format!(
        "timed out after {secs} s waiting for {what}: retry, wait longer, or check the process that should signal"
    ))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("OwnerDied", py.get_type::<OwnerDied>())?;
    m.add("Disconnected", py.get_type::<Disconnected>())?;
    m.add("Busy", py.get_type::<Busy>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("TooManyHeld", py.get_type::<TooManyHeld>())?;
    Ok(())
}
