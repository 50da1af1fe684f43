//! What the named objects share: names, permissions and lifetime as for segments.
//! Where the OS file says `NATIVE_NAMED` (Windows) they are kernel objects;
//! elsewhere each is a small segment of its own holding one object at offset 0.

use std::time::Duration;

use crate::error::OpenError;
use crate::segment::{Access, Disposition, Persistence, Segment};
use crate::view::View;

use super::error::ObjectError;
use super::imp;
use super::region::OBJECT_SIZE;

/// How long an opener waits for a creator that is still writing the header.
pub(crate) const PATIENCE: Duration = Duration::from_secs(2);

/// Permissions and lifetime of a named synchronization object, as for a segment
/// (see [`SegmentOptions`](crate::SegmentOptions)).
///
/// ```
/// use shmipc::sync::{NamedMutex, ObjectOptions};
/// # let name = format!("doc-objopts-{}", std::process::id());
/// let opts = ObjectOptions::new().mode(0o660);
/// let m = NamedMutex::create_with(&name, &opts)?;
/// drop(m); // gone with its last holder
/// // POSIX only (Windows refuses it: a kernel object goes with its last handle).
/// #[cfg(unix)]
/// {
///     use shmipc::{Persistence, Segment};
///     let opts = opts.persistence(Persistence::UntilRemoved);
///     drop(NamedMutex::create_with(&name, &opts)?);
///     Segment::remove(&name)?; // a persistent object lives until removed
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectOptions {
    pub(crate) mode: u32,
    pub(crate) persistence: Persistence,
}

impl Default for ObjectOptions {
    fn default() -> Self {
        Self {
            mode: 0o600,
            persistence: Persistence::UntilLastClose,
        }
    }
}

impl ObjectOptions {
    /// Owner-only (0600), living until its last holder closes it or dies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Unix permission bits for creating (read/write bits; default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long a created object lives (default
    /// [`Persistence::UntilLastClose`]; [`Persistence::UntilRemoved`] keeps it until
    /// [`Segment::remove`]). Windows has no persistent kernel objects: creating one
    /// with `UntilRemoved` there is a [`CreateError::Unsupported`](crate::CreateError)
    /// error.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }
}

/// What to do with the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    Create,
    Open,
    CreateOrOpen,
}

/// Creates and/or opens the object's segment and maps it; says whether this call
/// created it (and so must initialise it).
pub(crate) fn segment(
    name: &str,
    how: How,
    opts: &ObjectOptions,
    kind: &'static str,
) -> Result<(View, Disposition), ObjectError> {
    if !imp::SUPPORTED {
        return Err(ObjectError::Unsupported { kind });
    }
    let create = || {
        Segment::options()
            .size(OBJECT_SIZE as u64)
            .mode(opts.mode)
            .persistence(opts.persistence)
    };
    let (seg, disp) = match how {
        How::Create => (create().create(name)?, Disposition::Created),
        How::Open => (open(name)?, Disposition::Opened),
        How::CreateOrOpen => create().create_or_open(name)?,
    };
    Ok((seg.map_all()?, disp))
}

fn open(name: &str) -> Result<Segment, OpenError> {
    Segment::options().access(Access::ReadWrite).open(name)
}
