//! [`Segment`]: the named mapping object (Win32 `CreateFileMapping` /
//! `OpenFileMapping`, POSIX `shm_open`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{CreateError, ListError, MapError, OpenError, RemoveError};
use crate::name::Name;
use crate::sys;
pub(crate) use crate::view::Inner;
use crate::view::{self, View};
pub(crate) use crate::vocab::CreateParams;
use crate::vocab::PERMISSION_BITS;
pub use crate::vocab::{Access, Backing, Disposition, Origin, Persistence, SegmentInfo};

/// A named (or unnamed) shared-memory segment: the mapping object itself.
///
/// Holding a `Segment` (or any [`View`] of it) keeps the segment alive; see
/// [`Persistence`]. Map views of it with [`Segment::map`].
///
/// ```
/// use shmipc::{Access, Segment};
/// # let name = format!("doc-segment-{}", std::process::id());
/// let seg = Segment::create(&name, 4096)?;               // CreateFileMapping
/// seg.map_all()?.write_at(0, b"Hello from Process 1\0")?; // MapViewOfFile + write
///
/// let other = Segment::open(&name, Access::Read)?;       // OpenFileMapping
/// let mut buf = [0u8; 20];
/// other.map(0, 20)?.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"Hello from Process 1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Segment {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.inner.name)
            .field("size", &self.size())
            .field("access", &self.inner.access)
            .field("backing", self.inner.handle.backing())
            .field("persistence", &self.inner.handle.persistence())
            .finish()
    }
}

fn check_size(name: &str, size: u64) -> Result<(), CreateError> {
    if size == 0 {
        return Err(CreateError::InvalidSize {
            name: name.into(),
            size,
            reason: "a segment needs at least one byte",
        });
    }
    if size > i64::MAX as u64 {
        return Err(CreateError::InvalidSize {
            name: name.into(),
            size,
            reason: "it is larger than any OS allows",
        });
    }
    Ok(())
}

/// Refuses a creator's `mode` with bits beyond read/write ([`PERMISSION_BITS`]),
/// which the OS would otherwise be handed or we would drop in silence.
pub(crate) fn check_mode(name: &str, mode: u32) -> Result<(), CreateError> {
    if mode & !PERMISSION_BITS != 0 {
        return Err(CreateError::InvalidMode {
            name: name.into(),
            mode,
        });
    }
    Ok(())
}

impl Segment {
    /// What lock owners and endpoints on this segment prove their liveness on.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn liveness(&self) -> sys::liveness::Scope<'_> {
        self.inner.liveness()
    }

    /// Creates a segment of `size` bytes in system memory, owner-only (0600), that
    /// lives until its last holder closes it. Fails if the name exists.
    ///
    /// # Errors
    /// [`CreateError::AlreadyExists`] if a live segment has the name; invalid names
    /// and sizes, lack of space and OS failures as their variants.
    #[doc(alias = "CreateFileMapping")]
    #[doc(alias = "CreateFileMappingW")]
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: u64) -> Result<Self, CreateError> {
        Self::options().size(size).create(name)
    }

    /// Opens an existing segment with `access`; the size is the segment's own.
    ///
    /// [`Access::Read`] and [`Access::CopyOnWrite`] need only read permission.
    ///
    /// # Errors
    /// [`OpenError::NotFound`] if no live segment has the name.
    #[doc(alias = "OpenFileMapping")]
    #[doc(alias = "OpenFileMappingW")]
    pub fn open(name: &str, access: Access) -> Result<Self, OpenError> {
        Self::options().access(access).open(name)
    }

    /// Creates the segment, or opens it read-write if it exists, and says which
    /// (Win32 `CreateFileMapping` + `ERROR_ALREADY_EXISTS`). Of many processes racing,
    /// exactly one creates.
    ///
    /// # Errors
    /// As [`Segment::create`]; [`CreateError::TooSmall`] if the existing segment is
    /// smaller than `size`.
    pub fn create_or_open(name: &str, size: u64) -> Result<(Self, Disposition), CreateError> {
        Self::options().size(size).create_or_open(name)
    }

    /// A builder for the less common choices: file backing, mode, persistence,
    /// access, unnamed segments.
    pub fn options() -> SegmentOptions {
        SegmentOptions::default()
    }

    /// Removes the name. Processes that hold the segment keep their views; nobody can
    /// open it by name any more. A file-backed segment's file stays.
    ///
    /// # Errors
    /// [`RemoveError::NotFound`] if nothing has the name.
    #[doc(alias = "shm_unlink")]
    pub fn remove(name: &str) -> Result<(), RemoveError> {
        let name = Name::new(name)?;
        sys::remove(&name).map_err(|e| RemoveError::from_sys(name.as_str(), e))
    }

    /// Every named segment on the machine, shmipc's and other programs' (see
    /// [`SegmentInfo::origin`]), without stale ones.
    ///
    /// # Errors
    /// [`ListError::Unsupported`] where the OS cannot enumerate named objects.
    pub fn list() -> Result<Vec<SegmentInfo>, ListError> {
        Ok(sys::list()?.into_iter().filter(|s| !s.stale).collect())
    }

    /// What the OS says about one named segment.
    ///
    /// # Errors
    /// [`OpenError::NotFound`] if nothing has the name or it is stale.
    pub fn info(name: &str) -> Result<SegmentInfo, OpenError> {
        let name = Name::new(name)?;
        match sys::info(&name).map_err(|e| OpenError::from_sys(name.as_str(), e))? {
            i if i.stale => Err(OpenError::NotFound {
                name: name.to_string(),
            }),
            i => Ok(i),
        }
    }

    /// Removes shmipc segments whose holders have all died (with `dry_run`, only
    /// finds them) and returns their names. Other programs' segments and persistent
    /// ones are never touched.
    ///
    /// # Errors
    /// As [`Segment::list`].
    pub fn collect_garbage(dry_run: bool) -> Result<Vec<String>, ListError> {
        Ok(sys::gc(dry_run)?)
    }

    /// The name, or `None` for an unnamed segment.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_ref().map(Name::as_str)
    }

    /// Whether the segment's name still names this very segment: `Some(false)`
    /// once the name was removed ([`Segment::remove`], `shmipc rm`), even where
    /// another segment has taken the name since, which an opener of the name then
    /// reaches instead of this one. Compared by the object's identity, not its
    /// holders: Linux compares device and inode (a file-backed segment's link
    /// followed, as an opener follows it). Windows answers `Some(true)` while the
    /// segment is held: a section's name goes only with its last handle. `None`
    /// where it cannot be told: an unnamed segment, and macOS, whose POSIX
    /// shared-memory objects have no inode to compare.
    pub fn is_still_named(&self) -> Option<bool> {
        self.inner.is_still_named()
    }

    /// The size in bytes, as created (an opener learns the creator's size). On
    /// Windows, a section made by another program, or a handle taken with
    /// `os::windows::from_handle`, has its size rounded up to whole pages: the OS
    /// tells no more.
    pub fn size(&self) -> u64 {
        self.inner.handle.size()
    }

    /// The access this handle was opened with.
    pub fn access(&self) -> Access {
        self.inner.access
    }

    /// What stores the bytes.
    pub fn backing(&self) -> &Backing {
        self.inner.handle.backing()
    }

    /// How long the segment lives.
    pub fn persistence(&self) -> Persistence {
        self.inner.handle.persistence()
    }

    /// Copies up to `buf.len()` bytes from `offset` into `buf` without mapping
    /// anything (Linux: `pread`), and returns how many were copied: fewer than
    /// asked where the segment ends sooner, including when another program
    /// truncated it since it was opened. Unlike reading through a [`View`], this
    /// can never die by `SIGBUS` (a truncated segment, or a sparse one on a full
    /// `/dev/shm`). Elsewhere it maps the range for the copy.
    ///
    /// # Errors
    /// An OS error, or [`std::io::ErrorKind::InvalidInput`] for an offset past the
    /// end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self
            .size()
            .checked_sub(offset)
            .ok_or_else(|| past_end(&self.inner.display_name(), offset, self.size()))?
            .min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        #[cfg(target_os = "linux")]
        {
            sys::read_at(&self.inner.handle, offset, &mut buf[..want])
        }
        #[cfg(not(target_os = "linux"))]
        {
            let view = self
                .map_with(offset, want, Access::Read)
                .map_err(std::io::Error::other)?;
            view.read_at(0, &mut buf[..want])
                .map_err(std::io::Error::other)?;
            Ok(want)
        }
    }

    /// Copies `data` to `offset` without mapping anything (Linux: `pwrite`, so a
    /// full `/dev/shm` is an error here, never a `SIGBUS`); elsewhere through a
    /// mapping. Needs a read-write handle. On Linux the range's memory is reserved
    /// first (`fallocate`, where the file system has it), so a full store fails the
    /// write before any byte of it is written.
    ///
    /// # Errors
    /// An OS error (`ENOSPC` for a full store),
    /// [`std::io::ErrorKind::InvalidInput`] where `data` does not fit, or (Linux)
    /// [`std::io::ErrorKind::UnexpectedEof`] where another process truncated the
    /// object below the range (the write would have grown it back; nothing is
    /// written).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let fits = offset
            .checked_add(data.len() as u64)
            .is_some_and(|end| end <= self.size());
        if !fits {
            return Err(past_end(
                &self.inner.display_name(),
                offset.saturating_add(data.len() as u64),
                self.size(),
            ));
        }
        if self.inner.access != Access::ReadWrite {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "segment `{}` was opened read-only: open it with Access::ReadWrite to write",
                    self.inner.display_name()
                ),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            sys::write_at(&self.inner.handle, offset, data).map_err(|e| {
                match e.get_ref().and_then(|e| e.downcast_ref::<sys::Shrunk>()) {
                    Some(sys::Shrunk(now)) => std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "segment `{}` was truncated by another process to {now} bytes: the range {offset}..{} reaches past its end now (it was made with {} bytes); nothing was written. Check which process resizes it, or recreate it",
                            self.inner.display_name(),
                            offset.saturating_add(data.len() as u64),
                            self.size()
                        ),
                    ),
                    None => e,
                }
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let view = self
                .map_with(offset, data.len(), Access::ReadWrite)
                .map_err(std::io::Error::other)?;
            view.write_at(0, data).map_err(std::io::Error::other)
        }
    }

    /// Maps `len` bytes from `offset` (`len == 0`: to the end) with this handle's
    /// access. Offsets need no alignment.
    ///
    /// # Errors
    /// [`MapError::OutOfRange`] / [`MapError::Overflow`] for a bad range.
    #[doc(alias = "MapViewOfFile")]
    #[doc(alias = "mmap")]
    pub fn map(&self, offset: u64, len: usize) -> Result<View, MapError> {
        self.map_with(offset, len, self.inner.access)
    }

    /// Maps the whole segment with this handle's access.
    ///
    /// # Errors
    /// As [`Segment::map`].
    pub fn map_all(&self) -> Result<View, MapError> {
        self.map(0, 0)
    }

    /// Maps a range with another access: [`Access::Read`] or
    /// [`Access::CopyOnWrite`] work on any handle; [`Access::ReadWrite`] needs a
    /// read-write handle.
    ///
    /// # Errors
    /// [`MapError::ReadOnly`] for a write view of a read-only handle; as
    /// [`Segment::map`] otherwise.
    pub fn map_with(&self, offset: u64, len: usize, access: Access) -> Result<View, MapError> {
        view::map(&self.inner, offset, len, access)
    }
}

/// Choices for creating or opening a segment; start with [`Segment::options`].
///
/// ```
/// use shmipc::{Persistence, Segment};
/// # let name = format!("doc-options-{}", std::process::id());
/// # #[cfg(unix)] { // Windows: memory segments go with their last handle
/// let seg = Segment::options()
///     .size(1 << 20)
///     .mode(0o600)
///     .persistence(Persistence::UntilRemoved)
///     .create(&name)?;
/// assert_eq!(seg.size(), 1 << 20);
/// Segment::remove(&name)?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    size: u64,
    mode: u32,
    persistence: Persistence,
    file: Option<PathBuf>,
    access: Access,
    reserve: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            size: 0,
            mode: 0o600,
            persistence: Persistence::UntilLastClose,
            file: None,
            access: Access::ReadWrite,
            reserve: true,
        }
    }
}

impl SegmentOptions {
    /// Size in bytes for creating. For a file-backed segment, 0 means "the file's
    /// current size" and a larger size extends the file.
    pub fn size(mut self, size: u64) -> Self {
        self.size = size;
        self
    }

    /// Unix permission bits for creating: read/write bits only (within `0o666`;
    /// default `0o600`). Any other bit (execute, set-id, sticky) is refused at
    /// create time with [`CreateError::InvalidMode`].
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// How long a created segment lives (default [`Persistence::UntilLastClose`]).
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Back the segment by this file (the seed's `hFile` case) instead of system
    /// memory. The data persists with the file; the name lasts until removed.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Access for `open` (default [`Access::ReadWrite`]).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Commit the memory at creation (like Win32 `SEC_COMMIT`; the default), so
    /// that a full `/dev/shm` is a [`CreateError::NoSpace`] now rather than a
    /// `SIGBUS` at the first touch later (tmpfs allocates a page on first touch,
    /// even a read through a mapping). Costs the time to allocate every page. For a
    /// file-backed segment it allocates the file's blocks (its extension and any
    /// holes), so that a full file system is a `NoSpace` too.
    ///
    /// `reserve(false)` makes a sparse segment, whose pages are allocated as they
    /// are first touched: for huge segments that are mostly never used. Then a
    /// full `/dev/shm` kills whoever touches an unallocated page with `SIGBUS`
    /// (see [`crate::os::unix::install_sigbus_handler`] for a clear message
    /// instead of a raw signal death).
    pub fn reserve(mut self, reserve: bool) -> Self {
        self.reserve = reserve;
        self
    }

    /// What [`create`](Self::create) refuses before asking the OS: a size no
    /// segment can have, a mode with bits beyond read/write.
    fn check(&self, name: &str) -> Result<(), CreateError> {
        // A file-backed segment may take the file's size (0); any other needs one.
        if self.file.is_none() || self.size > i64::MAX as u64 {
            check_size(name, self.size)?;
        }
        check_mode(name, self.mode)
    }

    fn params(&self) -> CreateParams<'_> {
        CreateParams {
            size: self.size,
            mode: self.mode,
            persistence: self.persistence,
            file: self.file.as_deref(),
            reserve: self.reserve,
            defer_publish: false,
        }
    }

    /// Creates the named segment; fails if the name exists.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create(&self, name: &str) -> Result<Segment, CreateError> {
        let name = Name::new(name)?;
        self.check(name.as_str())?;
        let handle = sys::create(&name, &self.params())
            .map_err(|e| CreateError::from_sys(name.as_str(), e))?;
        Ok(Segment {
            inner: Arc::new(Inner {
                anchor: sys::liveness::Anchor::new(),
                name: Some(name),
                handle,
                access: Access::ReadWrite,
            }),
        })
    }

    /// Creates the named segment and runs `init` on a read-write view of all of it
    /// before anybody can open it: the name appears only once `init` has
    /// succeeded, so an opener never sees a half-initialised object, and a
    /// creator that dies (or fails) on the way leaves nothing under the name.
    /// Returns the segment and the view `init` had.
    ///
    /// Where the OS cannot name an object after creating it (Windows, macOS) the
    /// name appears at once, and openers wait (bounded) for the header's ready
    /// state; an abandoned object there dies with its last handle.
    pub(crate) fn create_init<E>(
        &self,
        name: &str,
        init: impl FnOnce(&View) -> Result<(), E>,
    ) -> Result<(Segment, View), InitError<E>> {
        let name = Name::new(name).map_err(|e| InitError::Create(e.into()))?;
        self.check(name.as_str()).map_err(InitError::Create)?;
        let mut params = self.params();
        params.defer_publish = true;
        let handle = sys::create(&name, &params)
            .map_err(|e| InitError::Create(CreateError::from_sys(name.as_str(), e)))?;
        let seg = Segment {
            inner: Arc::new(Inner {
                anchor: sys::liveness::Anchor::new(),
                name: Some(name),
                handle,
                access: Access::ReadWrite,
            }),
        };
        let view = seg.map_all().map_err(InitError::Map)?;
        init(&view).map_err(InitError::Init)?;
        if let Some(name) = &seg.inner.name {
            sys::publish(&seg.inner.handle)
                .map_err(|e| InitError::Create(CreateError::from_sys(name.as_str(), e)))?;
        }
        Ok((seg, view))
    }

    /// Opens the named segment with the configured access.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(&self, name: &str) -> Result<Segment, OpenError> {
        let name = Name::new(name)?;
        let handle =
            sys::open(&name, self.access).map_err(|e| OpenError::from_sys(name.as_str(), e))?;
        Ok(Segment {
            inner: Arc::new(Inner {
                anchor: sys::liveness::Anchor::new(),
                name: Some(name),
                handle,
                access: self.access,
            }),
        })
    }

    /// Creates the named segment, or opens it if it exists, and says which.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_or_open(&self, name: &str) -> Result<(Segment, Disposition), CreateError> {
        // A segment can vanish between a failed create and the open (its last holder
        // closed it): then create again. Bounded, so hostile churn cannot spin forever.
        for _ in 0..100 {
            match self.create(name) {
                Ok(seg) => return Ok((seg, Disposition::Created)),
                Err(CreateError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            match self.clone().access(Access::ReadWrite).open(name) {
                Ok(seg) if seg.size() < self.size => {
                    return Err(CreateError::TooSmall {
                        name: name.into(),
                        existing: seg.size(),
                        requested: self.size,
                    });
                }
                Ok(seg) => return Ok((seg, Disposition::Opened)),
                Err(OpenError::NotFound { .. }) => continue,
                Err(e) => return Err(open_to_create(name, e)),
            }
        }
        Err(CreateError::AlreadyExists { name: name.into() })
    }

    /// Creates an unnamed segment (Linux: a memfd sealed against resizing), shared
    /// by handing its handle to another process (see [`crate::os`]).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub fn create_unnamed(&self) -> Result<Segment, CreateError> {
        check_size("(unnamed)", self.size)?;
        let handle = sys::create_unnamed(self.size, self.reserve)
            .map_err(|e| CreateError::from_sys("(unnamed)", e))?;
        Ok(Segment {
            inner: Arc::new(Inner {
                anchor: sys::liveness::Anchor::new(),
                name: None,
                handle,
                access: Access::ReadWrite,
            }),
        })
    }
}

fn past_end(name: &str, end: u64, size: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("offset {end} is past the end of segment `{name}` ({size} bytes)"),
    )
}

/// Why [`SegmentOptions::create_init`] failed.
#[derive(Debug)]
pub(crate) enum InitError<E> {
    Create(CreateError),
    Map(MapError),
    Init(E),
}

fn open_to_create(name: &str, e: OpenError) -> CreateError {
    match e {
        OpenError::InvalidName(n) => CreateError::InvalidName(n),
        OpenError::PermissionDenied { name, source } => {
            CreateError::PermissionDenied { name, source }
        }
        OpenError::Unsupported { name, what, hint } => {
            CreateError::Unsupported { name, what, hint }
        }
        OpenError::Os { name, op, source } => CreateError::Os { name, op, source },
        other => {
            let msg = other.to_string();
            CreateError::Os {
                name: name.strip_prefix('/').unwrap_or(name).into(),
                op: "opening the existing segment",
                source: std::io::Error::other(msg),
            }
        }
    }
}
