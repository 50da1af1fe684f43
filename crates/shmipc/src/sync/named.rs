//! What the named objects share: names, permissions and lifetime as for segments.
//! Where the OS file says `NATIVE_NAMED` (Windows) they are kernel objects;
//! elsewhere each is a small segment of its own holding one object at offset 0.

use std::time::Duration;

use crate::error::{CreateError, OpenError};
use crate::segment::{Access, Disposition, InitError, Persistence, Segment};
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

    /// Unix permission bits for creating: read/write bits within `0o666` (default
    /// `0o600`); any other bit is refused at create time (`CreateError::InvalidMode`).
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
/// created it. A created object is initialised by `init` before it gets its name
/// (see `SegmentOptions::create_init`), so nobody ever opens it half made.
pub(crate) fn segment(
    name: &str,
    how: How,
    opts: &ObjectOptions,
    kind: &'static str,
    init: impl Fn(&View) -> Result<(), ObjectError>,
) -> Result<(View, Disposition), ObjectError> {
    if !imp::SUPPORTED {
        return Err(ObjectError::Unsupported { kind });
    }
    let options = Segment::options()
        .size(OBJECT_SIZE as u64)
        .mode(opts.mode)
        .persistence(opts.persistence);
    // `init` runs once per attempt: a create_or_open that finds the name taken at
    // the end of a create (after `init`) and then gone at the open creates again.
    let create = || {
        options
            .create_init(name, &init)
            .map(|(_, view)| (view, Disposition::Created))
            .map_err(|e| match e {
                InitError::Create(e) => ObjectError::Create(e),
                InitError::Map(e) => ObjectError::Map(e),
                InitError::Init(e) => e,
            })
    };
    match how {
        How::Create => create(),
        How::Open => Ok((open_mapped(name, kind)?, Disposition::Opened)),
        How::CreateOrOpen => {
            // The name may vanish between a failed create and the open (its last
            // holder left): try again, a bounded number of times.
            for _ in 0..100 {
                match create() {
                    Err(ObjectError::Create(CreateError::AlreadyExists { .. })) => {}
                    r => return r,
                }
                match open_mapped(name, kind) {
                    Ok(view) => return Ok((view, Disposition::Opened)),
                    Err(ObjectError::Open(OpenError::NotFound { .. })) => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok((open_mapped(name, kind)?, Disposition::Opened))
        }
    }
}

fn open(name: &str) -> Result<Segment, OpenError> {
    Segment::options().access(Access::ReadWrite).open(name)
}

/// Opens and maps an existing object, its header checked with `pread` first (see
/// `layout::check_unmapped`).
fn open_mapped(name: &str, kind: &'static str) -> Result<View, ObjectError> {
    let seg = open(name)?;
    crate::layout::check_unmapped(&seg, PATIENCE)
        .map_err(|source| ObjectError::named(kind, name, source))?;
    let view = seg.map_all()?;
    // Its words have memory before anything is written through the mapping.
    let need = OBJECT_SIZE as u64;
    view.back_holes(need).map_err(|e| {
        let reason = e.to_string();
        ObjectError::named(
            kind,
            name,
            crate::layout::LayoutError::NoMemory { need, reason },
        )
    })?;
    Ok(view)
}
