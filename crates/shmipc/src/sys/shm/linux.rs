//! Linux backend: POSIX shared memory under `/dev/shm`, memfd, `mmap`, and the
//! lifetime protocol built on `flock`.
//!
//! # Lifetime protocol (Win32 semantics on POSIX shm)
//!
//! * Every holder keeps a **shared** `flock` on its own descriptor of the object.
//!   The kernel drops it when the descriptor closes, whether the process exits,
//!   crashes or is killed with SIGKILL.
//! * A closing holder tries to take the lock **exclusively** without blocking. Only
//!   the last holder can; it unlinks the name (if the name still names its object).
//!   A failed non-blocking upgrade drops the shared lock in the same kernel step, so
//!   of two holders closing at once, the second always succeeds.
//! * An opener first tries the exclusive lock: if it gets it, nobody holds the
//!   object. If this user's shmipc created it to die with its last holder, it is stale (its
//!   holders were killed): the opener unlinks it and reports "not found". Otherwise
//!   the opener takes the shared lock and then checks (`st_nlink`) that the object
//!   is still linked, so it never joins an object a closing holder just unlinked.
//! * The lock belongs to the open file, which a forked child shares: only the
//!   process that took it runs the close protocol; a forked child's close just
//!   closes its descriptor. (A forked child that outlives its parent holds the
//!   segment without a lock of its own: the parent's close may unlink the name,
//!   and the child's memory stays valid.)
//! * Creation builds the object unnamed (`O_TMPFILE` in `/dev/shm`), sizes it,
//!   allocates its pages (`fallocate`, unless a sparse segment was asked for), marks
//!   it, locks it, and only then links it under its name with `linkat`, which fails
//!   rather than replace: nobody ever sees it half made. With `defer_publish` the
//!   link waits for [`publish`], so that the layer above can initialise a structured
//!   object (mutex, channel…) in between. Where `O_TMPFILE` or `/proc` is missing, a
//!   temporary name plus `link(2)` does the same.
//!
//! # Markers
//!
//! shmipc marks the objects it creates in their mode bits, so the mark is set
//! atomically with creation and costs no extra call to read: the sticky bit
//! (`S_ISVTX`, meaningless on a regular file) says "made by shmipc", and the owner
//! execute bit, meaningless for shared memory, added to it says "dies with its last
//! holder". Objects without the sticky bit were made by other programs and are never
//! removed unless asked. The set-group-id bit (meaningless without group execute, and
//! kept by the kernel across writes) added to the sticky bit says "made by a shmipc
//! that names objects only once complete"; an object with the sticky bit but without
//! it comes from an older shmipc, which named objects before writing their header:
//! one of this user's, persistent, without a holder and whose header is all zero or
//! never marked ready, is a creator's half-made leftover, removed by the next
//! creator of the name and by `gc`. Marks on another user's object prove nothing
//! (anyone can set them on their own files): such objects are reported as foreign,
//! and never removed as stale, not even by root.
//!
//! # Inspection, reads and writes
//!
//! `peek`, `read_at` and `write_at` use `pread`/`pwrite` and take no lock: a tmpfs
//! allocates a page on the first touch through a mapping, even a read, so reading
//! through a mapping kills the reader with SIGBUS on a full `/dev/shm`, and so does
//! a page lost to another program's `ftruncate`; `pread` of a hole reads zeros
//! without allocating, and a truncated object reads short.
//!
//! # Links
//!
//! A file-backed segment's link in `/dev/shm`, and a backing-file path whose last
//! component is a link, are followed only under the `protected_symlinks` rule
//! (applied here whatever the sysctl says): a link this user owns, or one owned by
//! the directory's owner, or any link in a directory that is not sticky and
//! world-writable. A file-backed named segment is a symbolic link
//! `/dev/shm/NAME -> /path/of/file`, which `shm_open` itself refuses to follow.
//!
//! No `unsafe` here: the mappings (`mmap`, `munmap`, `msync`) are in
//! `unix_map.rs`, shared with macOS, and fork detection is
//! `sys::liveness::ProcessStamp`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::Error;
use crate::name::{Name, RESERVED_PREFIX};
use crate::sys::liveness::ProcessStamp;
use crate::vocab::{
    Access, Backing, CreateParams, Origin, Persistence, SegmentInfo, PERMISSION_BITS,
};

/// Longest name: a file name in `/dev/shm` (`NAME_MAX`).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Where glibc's `shm_open` keeps its objects.
const SHM_DIR: &str = "/dev/shm";

/// Mode bit: made by shmipc.
const MARK_SHMIPC: u32 = 0o1000;
/// Mode bit (with [`MARK_SHMIPC`]): dies with its last holder.
const MARK_TRANSIENT: u32 = 0o100;
/// Mode bit (with [`MARK_SHMIPC`]): made by a shmipc that names objects only once
/// they are complete; without it, an object of an older shmipc may be half made.
/// The set-group-id bit: meaningless without group execute, and unlike set-user-id
/// the kernel keeps it across writes and truncation.
const MARK_COMPLETE: u32 = 0o2000;

/// The liveness file older shmipc builds kept in `/dev/shm` (reserved: no object
/// can take the name, and listings skip it).
const LEGACY_LIVENESS_FILE: &str = ".shmipc-liveness";

/// How long an opener waits for a closing holder that has the object locked
/// exclusively (it holds it for two system calls) before calling it busy.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

fn path_of(name: &Name) -> PathBuf {
    Path::new(SHM_DIR).join(name.as_str())
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// An open segment: a descriptor with a shared `flock` on it, and what to do when
/// it closes.
#[derive(Debug)]
pub(crate) struct Handle {
    fd: OwnedFd,
    size: u64,
    backing: Backing,
    persistence: Persistence,
    /// For a named memory segment that dies with its last holder: what the last
    /// close needs.
    transient: Option<Transient>,
    /// A created object not yet given its name (see [`publish`]).
    pending: std::sync::Mutex<Option<Pending>>,
}

/// What [`publish`] needs to give a built object its name.
#[derive(Debug)]
struct Pending {
    /// The name to link it under.
    target: PathBuf,
    /// Its temporary name, where `O_TMPFILE` was missing.
    temp: Option<PathBuf>,
    size: u64,
}

/// What closing a segment that dies with its last holder needs to know.
#[derive(Debug)]
struct Transient {
    /// The segment's path, to unlink.
    path: PathBuf,
    /// The process that took the lock. A child forked from it shares the
    /// descriptor and the lock (they belong to the open file, not the process), so
    /// its close must not take the lock exclusively: that would succeed, as the
    /// lock is its own, and unlink the name while the parent still holds it.
    origin: ProcessStamp,
}

impl Transient {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            origin: ProcessStamp::now(),
        }
    }
}

impl Handle {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn backing(&self) -> &Backing {
        &self.backing
    }
    pub(crate) fn persistence(&self) -> Persistence {
        self.persistence
    }
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wraps a descriptor received from elsewhere (e.g. inherited from a parent).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let st = rfs::fstat(&fd).map_err(io_err)?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        Ok(Self {
            fd,
            size,
            backing: Backing::Unnamed,
            persistence: Persistence::UntilLastClose,
            transient: None,
            pending: std::sync::Mutex::new(None),
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let pending = self.pending.get_mut().map_or(None, Option::take);
        if let Some(p) = pending {
            // Never named: nothing of ours is under the name; drop the temporary one.
            if let Some(t) = &p.temp {
                unlink_if_same(t, &self.fd);
            }
            return;
        }
        let Some(Transient { path, origin }) = &self.transient else {
            return;
        };
        if *origin != ProcessStamp::now() {
            // A forked child's copy: closing the descriptor leaves the parent's lock.
            return;
        }
        // The last holder is the one that can take the lock exclusively.
        if rfs::flock(&self.fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            // Unlink the name only while it still names this object: a name that
            // was removed and made again since belongs to the new object.
            unlink_if_same(path, &self.fd);
        }
        // Closing the descriptor releases whatever lock is left.
    }
}

/// Unlinks `path` if it still names the object open as `fd`.
fn unlink_if_same(path: &Path, fd: &OwnedFd) {
    let (Ok(ours), Ok(named)) = (rfs::fstat(fd), rfs::lstat(path)) else {
        return;
    };
    if ours.st_nlink > 0 && ours.st_ino == named.st_ino && ours.st_dev == named.st_dev {
        let _ = rfs::unlink(path);
    }
}

/// Whether `name` still names the object `h` holds, compared by device and inode
/// (a file-backed segment's link followed, as an opener follows it): `Some(false)`
/// once the name is gone, leads nowhere, or names another object (removed, then
/// made again); `None` where it cannot be told (the name cannot be looked at).
pub(crate) fn still_named(h: &Handle, name: &Name) -> Option<bool> {
    let ours = rfs::fstat(&h.fd).ok()?;
    if ours.st_nlink == 0 && matches!(h.backing, Backing::Memory) {
        return Some(false); // unlinked: whatever has the name now is another object
    }
    let path = path_of(name);
    let named = match rfs::lstat(&path) {
        Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink => {
            // stat only: no open of whatever the link leads to.
            rfs::stat(&path)
        }
        r => r,
    };
    match named {
        Ok(st) => Some(st.st_dev == ours.st_dev && st.st_ino == ours.st_ino),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Some(false),
        Err(_) => None,
    }
}

/// Takes the shared lock, waiting at most [`LOCK_PATIENCE`] for an exclusive holder.
fn lock_shared(fd: &OwnedFd) -> Result<(), Option<Errno>> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    let mut spins = 0u32;
    loop {
        match rfs::flock(fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return Ok(()),
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                // A closer holds it for two system calls; yield, then back off.
                spins += 1;
                if spins < 64 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            Err(Errno::WOULDBLOCK) => return Err(None),
            Err(e) => return Err(Some(e)),
        }
    }
}

fn is_regular(st: &rfs::Stat) -> bool {
    rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile
}

/// Whether the `lstat` of a name in `/dev/shm` shows something that is neither a
/// shared-memory object nor a file-backed segment's link (a directory, FIFO…).
fn is_no_segment(lst: &rfs::Stat) -> bool {
    !is_regular(lst) && rfs::FileType::from_raw_mode(lst.st_mode) != rfs::FileType::Symlink
}

/// The error for a name that is something other than a shared-memory object (a
/// directory, FIFO or device someone put in `/dev/shm`).
fn not_a_segment(path: &Path) -> Error {
    Error::Os { op: "checking the object",
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{path} is not a shared-memory object (a directory, FIFO or device?), and shmipc removes only those: remove it with the system's `rm` (`rmdir` for a directory), or use another name",
                path = path.display()
            ),
        ),
    }
}

/// The error for a create that finds `path` taken: [`Error::AlreadyExists`], or
/// [`not_a_segment`] where a directory, FIFO or device holds the name (which
/// neither opening nor `rm` can help with).
fn already_exists(path: &Path) -> Error {
    match rfs::lstat(path) {
        Ok(st) if is_no_segment(&st) => not_a_segment(path),
        _ => Error::AlreadyExists,
    }
}

/// Allocates every page of the object now, so that a full store is an error here
/// and never a `SIGBUS` at a later touch (tmpfs allocates a page on first touch,
/// even a read through a mapping). A file system without `fallocate` keeps the
/// object sparse.
fn reserve_pages(fd: &OwnedFd, size: u64) -> Result<(), Errno> {
    match rfs::fallocate(fd, rfs::FallocateFlags::empty(), 0, size) {
        Err(Errno::OPNOTSUPP) => Ok(()),
        r => r,
    }
}

/// Whether this user owns the object: only then do shmipc's marks on it mean
/// anything (anyone can set them on their own files).
fn is_mine(st: &rfs::Stat) -> bool {
    st.st_uid == rustix::process::geteuid().as_raw()
}

/// Whether the object is one of this user's that dies with its last holder: with
/// no holder left, it is stale (removed by `open`, `create`, `gc`). Another user's
/// object with the same mark is never stale to us, even to root: its marks prove
/// nothing, and it is not ours to remove.
fn dies_with_holders(st: &rfs::Stat) -> bool {
    is_transient(st.st_mode) && is_mine(st)
}

/// Made by an older shmipc, which named objects before initialising them.
fn is_legacy(mode: u32) -> bool {
    mode & (MARK_SHMIPC | MARK_COMPLETE) == MARK_SHMIPC
}

/// Whether `fd` (an object of an older shmipc, held exclusively by the caller, so
/// without a live holder) is a structured object its creator died making: its
/// header is all zero, or has the magic and was never marked ready. Reads with
/// `pread` (no mapping, so no `SIGBUS` on a full store). Only objects of this
/// user are judged: another user's are never ours to remove.
fn is_half_made(fd: &OwnedFd, st: &rfs::Stat) -> bool {
    if !is_mine(st) || st.st_size < HEAD_LEN as i64 {
        return false;
    }
    let mut head = [0u8; HEAD_LEN];
    if !matches!(rustix::io::pread(fd, &mut head, 0), Ok(HEAD_LEN)) {
        return false;
    }
    half_made_header(&head)
}

/// [`is_half_made`] for the object at `path`, opened without following links or
/// blocking (the caller found no holder).
fn legacy_half_made(path: &Path) -> bool {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()
    .and_then(|fd| Some((rfs::fstat(&fd).ok()?, fd)))
    .is_some_and(|(st, fd)| is_regular(&st) && is_half_made(&fd, &st))
}

/// Bytes of a structured object's header (see `layout.rs`).
const HEAD_LEN: usize = 64;

/// A header an interrupted creator of an older shmipc left: all zero, or the magic
/// (`layout::MAGIC`) with its ready state (offset 16) still 0.
fn half_made_header(head: &[u8; HEAD_LEN]) -> bool {
    head.iter().all(|&b| b == 0) || (head[..8] == *b"shmipc\0\x01" && head[16..20] == [0, 0, 0, 0])
}

fn is_transient(mode: u32) -> bool {
    mode & (MARK_SHMIPC | MARK_TRANSIENT) == MARK_SHMIPC | MARK_TRANSIENT
}

fn marks(persistence: Persistence) -> u32 {
    match persistence {
        Persistence::UntilLastClose => MARK_SHMIPC | MARK_TRANSIENT,
        Persistence::UntilRemoved => MARK_SHMIPC,
    }
}

/// Free bytes in `/dev/shm`.
fn shm_available(dir: &Path) -> io::Result<u64> {
    let st = rfs::statvfs(dir).map_err(io_err)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// What a `ENOSPC` from making a name in `/dev/shm` (`size` bytes to store
/// there) means: no file left ([`Error::TooManyObjects`]) or no byte
/// ([`Error::NoSpace`]), as `statvfs` tells.
fn shm_full(size: u64) -> Error {
    store_full(Path::new(SHM_DIR), size, SHM_DIR.into())
}

/// What a `ENOSPC` from making a file at `at` (on the file system called
/// `store`, `size` bytes to store there) means, as [`shm_full`] tells it.
fn store_full(at: &Path, size: u64, store: String) -> Error {
    match rfs::statvfs(at) {
        // (A tmpfs without a limit of files reports 0 files and 0 free.)
        Ok(st) if st.f_files > 0 && (st.f_ffree == 0 || st.f_favail == 0) => {
            Error::TooManyObjects { store }
        }
        st => Error::NoSpace {
            size,
            available: st.map_or(0, |st| st.f_bavail.saturating_mul(st.f_frsize)),
            store,
        },
    }
}

/// `EDQUOT` on `store`: the owner's quota there is used up.
fn quota(store: impl Into<String>) -> Error {
    Error::Quota {
        store: store.into(),
        source: io_err(Errno::DQUOT),
    }
}

// ---------------------------------------------------------------------------------
// create

pub(crate) fn create(name: &Name, p: &CreateParams<'_>) -> Result<Handle, Error> {
    match create_new(name, p) {
        // As `O_CREAT | O_EXCL` orders it: a name that exists is reported as such,
        // whatever else would have failed, so that `create_or_open` opens an
        // existing object on a full store (the space check comes first, and a stale
        // object under the name was swept by then).
        Err(Error::NoSpace { .. } | Error::TooManyObjects { .. } | Error::Quota { .. })
            if rfs::lstat(path_of(name)).is_ok() =>
        {
            Err(already_exists(&path_of(name)))
        }
        r => r,
    }
}

fn create_new(name: &Name, p: &CreateParams<'_>) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |e: Errno| Error::Os {
            op,
            source: io_err(e),
        }
    };
    if let Some(file) = p.file {
        return create_file_backed(name, file, p);
    }
    let available = || {
        shm_available(Path::new(SHM_DIR)).map_err(|source| Error::Os {
            op: "statvfs(/dev/shm)",
            source,
        })
    };
    let mut avail = available()?;
    // Space held by objects whose holders all died (killed before the last one
    // could unlink) is reclaimed here, as `shmipc gc` would: a crashed holder
    // never leaves /dev/shm full for the next creator.
    let mut swept = false;
    if p.size > avail {
        swept = true;
        if collect_stale() {
            avail = available()?;
        }
    }
    if p.size > avail {
        return Err(Error::NoSpace {
            size: p.size,
            available: avail,
            store: SHM_DIR.into(),
        });
    }
    let mode = (p.mode & PERMISSION_BITS) | marks(p.persistence);
    let target = path_of(name);

    // Build it unnamed, or under a temporary name where O_TMPFILE is missing.
    let make = || {
        let unnamed = if proc_fd_available() {
            rfs::open(
                SHM_DIR,
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        } else {
            Err(Errno::NOENT)
        };
        match unnamed {
            Ok(fd) => Ok((fd, None)),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
                let temp = temp_path();
                rfs::open(
                    &temp,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::RDWR
                        | OFlags::CLOEXEC
                        | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o600),
                )
                .map(|fd| (fd, Some(temp)))
                .map_err(|e| ("creating a temporary object in /dev/shm", e))
            }
            Err(e) => Err(("open(/dev/shm, O_TMPFILE)", e)),
        }
    };
    let mut made = make();
    // No room for another file (a store's limit of files, e.g. tmpfs nr_inodes):
    // stale objects hold files too.
    if matches!(made, Err((_, Errno::NOSPC))) && !swept && collect_stale() {
        swept = true;
        made = make();
    }
    let (fd, temp) = match made {
        Ok(made) => made,
        Err((_, Errno::ACCESS | Errno::PERM)) => {
            return Err(Error::PermissionDenied(io::Error::from(
                io::ErrorKind::PermissionDenied,
            )))
        }
        Err((_, Errno::NOSPC)) => return Err(shm_full(p.size)),
        Err((_, Errno::DQUOT)) => return Err(quota(SHM_DIR)),
        Err((op, e)) => return Err(os(op)(e)),
    };
    // Whatever fails below, the temporary name must not stay behind.
    let cleanup = |e: Error| {
        if let Some(t) = &temp {
            let _ = rfs::unlink(t);
        }
        e
    };
    let mut prepared = prepare(&fd, p.size, mode, p.reserve);
    if matches!(prepared, Err((_, Errno::NOSPC))) && !swept && collect_stale() {
        prepared = prepare(&fd, p.size, mode, p.reserve);
        if matches!(prepared, Err((_, Errno::NOSPC))) {
            avail = available().unwrap_or(avail);
        }
    }
    prepared
        .map_err(|(op, e)| match e {
            Errno::NOSPC | Errno::FBIG => Error::NoSpace {
                size: p.size,
                available: avail,
                store: SHM_DIR.into(),
            },
            Errno::DQUOT => quota(SHM_DIR),
            e => os(op)(e),
        })
        .map_err(cleanup)?;

    let handle = Handle {
        fd,
        size: p.size,
        backing: Backing::Memory,
        persistence: p.persistence,
        transient: (p.persistence == Persistence::UntilLastClose)
            .then(|| Transient::new(target.clone())),
        pending: std::sync::Mutex::new(Some(Pending {
            target,
            temp,
            size: p.size,
        })),
    };
    if !p.defer_publish {
        publish(&handle)?;
    }
    Ok(handle)
}

/// Gives an object made by [`create`] with `defer_publish` its name: links it
/// without replacing anything (a stale or half-made object under the name is
/// cleared once). Until then nobody can open it; if this fails, or the handle is
/// dropped first, nothing stays behind.
pub(crate) fn publish(h: &Handle) -> Result<(), Error> {
    let mut slot = h
        .pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(p) = slot.as_ref() else {
        return Ok(()); // named already
    };
    let mut cleared_stale = false;
    loop {
        let linked = match &p.temp {
            None => link_unnamed(&h.fd, &p.target),
            Some(t) => rfs::link(t, &p.target),
        };
        match linked {
            Ok(()) => break,
            Err(Errno::EXIST) if !cleared_stale => {
                cleared_stale = true;
                if !clear_if_stale(&p.target) {
                    return Err(already_exists(&p.target));
                }
            }
            Err(Errno::EXIST) => return Err(already_exists(&p.target)),
            Err(Errno::NOSPC) => return Err(shm_full(p.size)),
            Err(Errno::DQUOT) => return Err(quota(SHM_DIR)),
            Err(e) => {
                return Err(Error::Os {
                    op: "link into /dev/shm",
                    source: io_err(e),
                })
            }
        }
    }
    if let Some(t) = &p.temp {
        let _ = rfs::unlink(t);
    }
    *slot = None;
    Ok(())
}

/// Size, mark and lock a fresh object.
fn prepare(fd: &OwnedFd, size: u64, mode: u32, reserve: bool) -> Result<(), (&'static str, Errno)> {
    rfs::fchmod(fd, Mode::from_raw_mode(mode | MARK_COMPLETE)).map_err(|e| ("fchmod", e))?;
    rfs::ftruncate(fd, size).map_err(|e| ("ftruncate", e))?;
    if reserve {
        reserve_pages(fd, size).map_err(|e| ("fallocate", e))?;
    }
    rfs::flock(fd, FlockOperation::LockShared).map_err(|e| ("flock", e))
}

/// Gives the `O_TMPFILE` object `fd` the name `target` (never replacing one).
///
/// `linkat(fd, "", AT_EMPTY_PATH)` skips a walk through procfs, but the kernel
/// allows it only to some callers (`CAP_DAC_READ_SEARCH`, or newer kernels'
/// relaxed rule); where it is refused once, `/proc/self/fd/N` is used from then on.
fn link_unnamed(fd: &OwnedFd, target: &Path) -> Result<(), Errno> {
    static EMPTY_PATH_REFUSED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);
    if !EMPTY_PATH_REFUSED.load(Ordering::Relaxed) {
        match rfs::linkat(fd, "", rfs::CWD, target, rfs::AtFlags::EMPTY_PATH) {
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
                EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rfs::linkat(
        rfs::CWD,
        proc_path.as_str(),
        rfs::CWD,
        target,
        rfs::AtFlags::SYMLINK_FOLLOW,
    )
}

/// Whether `/proc/self/fd` exists, through which an `O_TMPFILE` object gets its name.
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

fn temp_path() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Path::new(SHM_DIR).join(format!(
        "{RESERVED_PREFIX}tmp-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes every stale object: shmipc's objects that die with their last holder
/// and have none left, and abandoned temporaries; true if it removed any. Only
/// objects this process may unlink are touched, and a live object never is (its
/// holders' shared locks say so). Unlike `shmipc gc`, it leaves older builds'
/// persistent objects alone, even ones that look half-made (all-zero header): a
/// full store must never cost a user a persistent segment they did not name.
fn collect_stale() -> bool {
    sweep(false, false).is_ok_and(|removed| !removed.is_empty())
}

/// If `path` is a shmipc object that should have died with its holders and none is
/// left, removes it and returns true.
fn clear_if_stale(path: &Path) -> bool {
    let Ok(fd) = rfs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        // Gone already (or a symlink: a file-backed name, never stale).
        return matches!(rfs::lstat(path), Err(Errno::NOENT));
    };
    let Ok(st) = rfs::fstat(&fd) else {
        return false;
    };
    if !is_regular(&st) || !(dies_with_holders(&st) || is_legacy(st.st_mode)) {
        return false;
    }
    if rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
        && (dies_with_holders(&st) || is_half_made(&fd, &st))
    {
        unlink_if_same(path, &fd);
        return true;
    }
    false
}

fn create_file_backed(name: &Name, file: &Path, p: &CreateParams<'_>) -> Result<Handle, Error> {
    let abs = std::path::absolute(file).map_err(|source| Error::Os {
        op: "resolving the file path",
        source,
    })?;
    let store = format!("the file system of {}", abs.display());
    let open_err = |e: Errno| match e {
        Errno::ACCESS | Errno::PERM => Error::PermissionDenied(io_err(e)),
        // No file (or directory block) left for the new file where it goes.
        Errno::NOSPC => store_full(
            abs.parent().unwrap_or(Path::new("/")),
            p.size,
            store.clone(),
        ),
        Errno::DQUOT => quota(store.clone()),
        Errno::LOOP => Error::Os {
            op: "opening the backing file",
            source: io::Error::other(format!("{}: {UNTRUSTED_LINK}", abs.display())),
        },
        e => Error::Os {
            op: "opening the backing file",
            source: io::Error::new(
                io_err(e).kind(),
                format!("{}: {}", abs.display(), io_err(e)),
            ),
        },
    };
    let not_regular = |why: String| Error::Os {
        op: "opening the backing file",
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} {why}: back the segment with a regular file",
                abs.display()
            ),
        ),
    };
    // Remember whether the file is ours, so that a failed create leaves no file
    // (and no extended file) behind. A new file (`O_EXCL` follows no link) is a
    // regular one; an existing one is opened only once known to be one (a device
    // is never opened: as root, opening a watchdog arms it).
    let (fd, made_file) = match open_trusted(
        &abs,
        OFlags::CREATE
            | OFlags::EXCL
            | OFlags::RDWR
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK
            | OFlags::NOCTTY,
        Mode::from_raw_mode(p.mode & PERMISSION_BITS),
    ) {
        // (A kernel interface that let a file be made is still no storage.)
        Ok(fd) if matches!(pseudo_fs(&fd), Ok(Some(_))) => {
            let _ = rfs::unlink(&abs);
            let fs = pseudo_fs(&fd)
                .ok()
                .flatten()
                .unwrap_or("a kernel interface");
            return Err(not_regular(format!(
                "is a file of {fs}, a kernel interface, not storage"
            )));
        }
        Ok(fd) => (fd, true),
        Err(Errno::EXIST) => match open_regular(&abs, OFlags::RDWR) {
            Ok(fd) => (fd, false),
            Err(Refused::Os(e)) => return Err(open_err(e)),
            Err(Refused::NotRegular) => {
                return Err(not_regular(
                    "is not a regular file (a FIFO, device or directory?)".into(),
                ))
            }
            Err(Refused::Pseudo(fs)) => {
                return Err(not_regular(format!(
                    "is a file of {fs}, a kernel interface, not storage"
                )))
            }
        },
        Err(e) => return Err(open_err(e)),
    };
    // A new file gets exactly the chosen mode, as a memory segment does (umask
    // would otherwise turn e.g. 0o666 into 0o644).
    if made_file {
        if let Err(e) = rfs::fchmod(&fd, Mode::from_raw_mode(p.mode & PERMISSION_BITS)) {
            let _ = rfs::unlink(&abs);
            return Err(Error::Os {
                op: "fchmod",
                source: io_err(e),
            });
        }
    }
    let current = match rfs::fstat(&fd) {
        // A FIFO, device or directory (opened non-blocking, so a FIFO cannot hang
        // us) has no pages to share: say so, rather than what truncating it says.
        Ok(st) if !is_regular(&st) => {
            return Err(not_regular(
                "is not a regular file (a FIFO, device or directory?)".into(),
            ));
        }
        Ok(st) => u64::try_from(st.st_size).unwrap_or(0),
        Err(e) => {
            if made_file {
                let _ = rfs::unlink(&abs);
            }
            return Err(Error::Os {
                op: "fstat",
                source: io_err(e),
            });
        }
    };
    // Never smaller than the file: an opener sees the file's size, and so must the
    // creator (0 = the file's current size; more extends the file).
    let size = p.size.max(current);
    let undo = |e: Error| {
        if made_file {
            let _ = rfs::unlink(&abs);
        } else if size > current {
            let _ = rfs::ftruncate(&fd, current);
        }
        e
    };
    if size == 0 {
        return Err(undo(Error::InvalidSize {
            size: 0,
            reason: "the backing file is empty: give a size to extend it to",
        }));
    }
    // Free bytes where the file lives, for a NoSpace (read before anything of ours
    // is allocated there).
    let available = rfs::fstatvfs(&fd).map_or(0, |st| st.f_bavail.saturating_mul(st.f_frsize));
    let no_space = |op: &'static str| {
        let store = store.clone();
        move |e: Errno| match e {
            Errno::NOSPC | Errno::FBIG => Error::NoSpace {
                size,
                available,
                store,
            },
            Errno::DQUOT => quota(store),
            e => Error::Os {
                op,
                source: io_err(e),
            },
        }
    };
    if size > current {
        rfs::ftruncate(&fd, size)
            .map_err(no_space("extending the backing file"))
            .map_err(undo)?;
    }
    // Allocate the file's blocks now, as a memory segment's pages are: on a full
    // file system this is a NoSpace here, never a SIGBUS at a later touch of a hole
    // through a mapping (the extension, and holes of a sparse file, have no block).
    if p.reserve {
        reserve_pages(&fd, size)
            .map_err(no_space("allocating the backing file"))
            .map_err(undo)?;
    }
    rfs::flock(&fd, FlockOperation::LockShared)
        .map_err(|e| Error::Os {
            op: "flock",
            source: io_err(e),
        })
        .map_err(undo)?;
    let target = path_of(name);
    // The name is a link in /dev/shm: a file there (and, for a long path, a page).
    // A full /dev/shm gets the stale sweep every other create does, once.
    let link_bytes = abs.as_os_str().len() as u64;
    let mut swept = false;
    let mut cleared = false;
    loop {
        match rfs::symlink(&abs, &target) {
            Ok(()) => break,
            Err(Errno::EXIST) if !cleared && clear_if_stale(&target) => cleared = true,
            Err(Errno::EXIST) => return Err(undo(already_exists(&target))),
            Err(Errno::NOSPC) if !swept => {
                swept = true;
                if !collect_stale() {
                    return Err(undo(shm_full(link_bytes)));
                }
            }
            Err(Errno::NOSPC) => return Err(undo(shm_full(link_bytes))),
            Err(Errno::DQUOT) => return Err(undo(quota(SHM_DIR))),
            Err(e) => {
                return Err(undo(Error::Os {
                    op: "symlink into /dev/shm",
                    source: io_err(e),
                }))
            }
        }
    }
    Ok(Handle {
        fd,
        size,
        backing: Backing::File(abs),
        persistence: Persistence::UntilRemoved,
        transient: None,
        pending: std::sync::Mutex::new(None),
    })
}

pub(crate) fn create_unnamed(size: u64, reserve: bool) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |e: Errno| Error::Os {
            op,
            source: io_err(e),
        }
    };
    let fd = rfs::memfd_create(
        "shmipc",
        rfs::MemfdFlags::CLOEXEC | rfs::MemfdFlags::ALLOW_SEALING,
    )
    .map_err(os("memfd_create"))?;
    rfs::ftruncate(&fd, size).map_err(|e| match e {
        Errno::NOSPC | Errno::FBIG | Errno::INVAL => Error::InvalidSize {
            size,
            reason: "the OS refused this size",
        },
        e => os("ftruncate")(e),
    })?;
    if reserve {
        rfs::fallocate(&fd, rfs::FallocateFlags::empty(), 0, size).map_err(os("fallocate"))?;
    }
    // Nobody holding it can shrink it under another holder's mappings (no SIGBUS).
    rfs::fcntl_add_seals(
        &fd,
        rfs::SealFlags::SHRINK | rfs::SealFlags::GROW | rfs::SealFlags::SEAL,
    )
    .map_err(os("sealing the memfd"))?;
    Ok(Handle {
        fd,
        size,
        backing: Backing::Unnamed,
        persistence: Persistence::UntilLastClose,
        transient: None,
        pending: std::sync::Mutex::new(None),
    })
}

// ---------------------------------------------------------------------------------
// open

pub(crate) fn open(name: &Name, access: Access) -> Result<Handle, Error> {
    let path = path_of(name);
    let flags = match access {
        Access::ReadWrite => OFlags::RDWR,
        Access::Read | Access::CopyOnWrite => OFlags::RDONLY,
    };
    // A closing holder may unlink the object between our open and our lock; then
    // the name may already name a new object: start again (bounded).
    for _ in 0..64 {
        // O_NONBLOCK: a FIFO under the name must not block us (no effect on a
        // regular file).
        let fd = match rfs::open(
            &path,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(Error::NotFound),
            Err(Errno::LOOP) => return open_file_backed(&path, flags),
            // A directory; a socket (ENXIO).
            Err(Errno::ISDIR | Errno::NXIO) => return Err(not_a_segment(&path)),
            Err(e @ (Errno::ACCESS | Errno::PERM)) => {
                return Err(Error::PermissionDenied(io_err(e)))
            }
            Err(e) => {
                return Err(Error::Os {
                    op: "shm_open",
                    source: io_err(e),
                })
            }
        };
        let fstat = |fd: &OwnedFd| {
            rfs::fstat(fd).map_err(|e| Error::Os {
                op: "fstat",
                source: io_err(e),
            })
        };
        // (Opened non-blocking, so a FIFO under the name cannot hang us; anything
        // but a regular file is refused once its type is known, below.)
        match rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Nobody holds it.
                let st = fstat(&fd)?;
                if !is_regular(&st) {
                    return Err(not_a_segment(&path));
                }
                if dies_with_holders(&st) {
                    // Its holders died without cleaning up: stale.
                    unlink_if_same(&path, &fd);
                    return Err(Error::NotFound);
                }
                // Persistent or made by another program: join as a holder.
                rfs::flock(&fd, FlockOperation::LockShared).map_err(|e| Error::Os {
                    op: "flock",
                    source: io_err(e),
                })?;
            }
            Err(Errno::WOULDBLOCK) => match lock_shared(&fd) {
                Ok(()) => {}
                Err(None) => return Err(Error::Busy),
                Err(Some(e)) => {
                    return Err(Error::Os {
                        op: "flock",
                        source: io_err(e),
                    })
                }
            },
            Err(e) => {
                return Err(Error::Os {
                    op: "flock",
                    source: io_err(e),
                })
            }
        }
        let st = fstat(&fd)?;
        if !is_regular(&st) {
            return Err(not_a_segment(&path));
        }
        if st.st_nlink == 0 {
            continue; // unlinked by the last holder while we waited: look again
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        if size == 0 {
            return Err(Error::Empty);
        }
        let transient = is_transient(st.st_mode);
        return Ok(Handle {
            fd,
            size,
            backing: Backing::Memory,
            persistence: if transient {
                Persistence::UntilLastClose
            } else {
                Persistence::UntilRemoved
            },
            // Another user's object is never ours to remove, even as its last
            // holder (where the sticky /dev/shm lets us: as root).
            transient: dies_with_holders(&st).then(|| Transient::new(path)),
            pending: std::sync::Mutex::new(None),
        });
    }
    Err(Error::Busy)
}

fn open_file_backed(link: &Path, flags: OFlags) -> Result<Handle, Error> {
    let target = follow_link(link)?;
    let fd = match open_regular(&target, flags) {
        Ok(fd) => fd,
        Err(r @ (Refused::NotRegular | Refused::Pseudo(_))) => {
            return Err(refused_backing(&target, &r))
        }
        Err(Refused::Os(Errno::LOOP)) => {
            return Err(Error::Os {
                op: "opening the backing file",
                source: io::Error::other(format!("{}: {UNTRUSTED_LINK}", target.display())),
            })
        }
        // The name went meanwhile: nothing is there.
        Err(Refused::Os(Errno::NOENT)) if rfs::lstat(link).is_err() => return Err(Error::NotFound),
        // The name is there and its file is not: say so, rather than "not found"
        // about a name that `create` finds taken.
        Err(Refused::Os(Errno::NOENT)) => {
            return Err(Error::Os {
                op: "opening the backing file",
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is gone (deleted or moved): put the file back, or remove the segment's name",
                        target.display()
                    ),
                ),
            })
        }
        Err(Refused::Os(Errno::ISDIR)) => return Err(not_a_segment(&target)),
        Err(Refused::Os(e @ (Errno::ACCESS | Errno::PERM))) => return Err(Error::PermissionDenied(io_err(e))),
        Err(Refused::Os(e)) => {
            return Err(Error::Os {
                op: "opening the backing file",
                source: io_err(e),
            })
        }
    };
    let st = rfs::fstat(&fd).map_err(|e| Error::Os {
        op: "fstat",
        source: io_err(e),
    })?;
    if !is_regular(&st) {
        return Err(not_a_segment(&target));
    }
    match lock_shared(&fd) {
        Ok(()) => {}
        Err(None) => return Err(Error::Busy),
        Err(Some(e)) => {
            return Err(Error::Os {
                op: "flock",
                source: io_err(e),
            })
        }
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size == 0 {
        return Err(Error::Empty);
    }
    Ok(Handle {
        fd,
        size,
        backing: Backing::File(target),
        persistence: Persistence::UntilRemoved,
        transient: None,
        pending: std::sync::Mutex::new(None),
    })
}

// ---------------------------------------------------------------------------------
// remove, list, info, gc

pub(crate) fn remove(name: &Name) -> Result<(), Error> {
    // The name only: a file-backed segment's file stays, as does the memory of
    // processes that still map it (POSIX `shm_unlink` semantics). A FIFO, device
    // or directory someone put under the name is no segment: not ours to remove.
    let path = path_of(name);
    if let Ok(st) = rfs::lstat(&path) {
        if is_no_segment(&st) {
            return Err(not_a_segment(&path));
        }
    }
    match rfs::unlink(&path) {
        Ok(()) => Ok(()),
        Err(Errno::NOENT) => Err(Error::NotFound),
        Err(e @ (Errno::ACCESS | Errno::PERM)) => Err(Error::PermissionDenied(io_err(e))),
        Err(Errno::ISDIR) => Err(not_a_segment(&path)),
        Err(e) => Err(Error::Os {
            op: "shm_unlink",
            source: io_err(e),
        }),
    }
}

/// Which processes hold a lock on the inode (`dev`, `ino`), from `/proc/locks`.
fn lock_holders(locks: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (maj, min) = (rfs::major(dev), rfs::minor(dev));
    let mut pids = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  READ 1234 00:1a:5678 0 EOF"; blocked waiters have "->".
        let mut f = line.split_whitespace();
        let (Some(_), Some(kind)) = (f.next(), f.next()) else {
            continue;
        };
        if kind == "->" || kind != "FLOCK" {
            continue;
        }
        let (Some(_), Some(_), Some(pid), Some(id)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(a), Some(b), Some(i)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let same = u32::from_str_radix(a, 16) == Ok(maj)
            && u32::from_str_radix(b, 16) == Ok(min)
            && i.parse::<u64>() == Ok(ino);
        if let (true, Ok(pid)) = (same, pid.parse::<u32>()) {
            pids.push(pid);
        }
    }
    pids
}

/// Reads `/proc/locks` in as few `read` calls as it takes.
///
/// The kernel builds each call's output under its lock-table lock, so one call is
/// a consistent snapshot (of up to a page). Between calls other processes' locks
/// come and go and shift the position the kernel resumes from, so a line can be
/// skipped: `fs::read_to_string`, which starts with 32-byte reads, lost a live
/// holder's line often enough that `info` called a held segment stale.
fn read_locks() -> Option<String> {
    use std::io::Read;
    let mut file = fs::File::open("/proc/locks").ok()?;
    let mut text = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

/// The processes holding the inode (`dev`, `ino`), by `/proc/locks` alone (taking
/// the lock to find out would let a waiting opener join a dead segment), sorted,
/// each once. `first` is a snapshot already read; with `confirm` (where "nobody"
/// means "stale"), an empty answer is confirmed with fresh reads, since a snapshot
/// longer than a page can miss a line (see [`read_locks`]).
fn holders_of(first: &str, dev: u64, ino: u64, confirm: bool) -> Vec<u32> {
    let mut pids = lock_holders(first, dev, ino);
    for _ in 0..if confirm { 2 } else { 0 } {
        if !pids.is_empty() {
            break;
        }
        let Some(again) = read_locks() else { break };
        pids = lock_holders(&again, dev, ino);
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn info_of(file_name: &OsStr, locks: Option<&str>) -> Option<SegmentInfo> {
    let name = file_name.to_str()?;
    Name::new(name).ok()?;
    let path = Path::new(SHM_DIR).join(file_name);
    let lst = rfs::lstat(&path).ok()?;
    let ftype = rfs::FileType::from_raw_mode(lst.st_mode);
    let mine = lst.st_uid == rustix::process::geteuid().as_raw();
    if ftype == rfs::FileType::Symlink {
        let target = fs::read_link(&path).ok()?;
        // Another user's link is not followed (see `may_follow`), nor called ours.
        let st = may_follow(&lst).then(|| rfs::stat(&target).ok()).flatten();
        return Some(SegmentInfo {
            name: name.to_owned(),
            size: st.as_ref().map(|s| u64::try_from(s.st_size).unwrap_or(0)),
            backing: Backing::File(target),
            origin: if mine {
                Origin::Shmipc
            } else {
                Origin::Foreign
            },
            persistence: Persistence::UntilRemoved,
            mode: st.as_ref().map(|s| s.st_mode & 0o777),
            owner: st.as_ref().map(|s| s.st_uid),
            holders: match (&st, locks) {
                (Some(s), Some(l)) => Some(holders_of(l, s.st_dev, s.st_ino, false)),
                _ => None,
            },
            stale: false,
        });
    }
    if ftype != rfs::FileType::RegularFile {
        return None;
    }
    let mode = lst.st_mode & 0o7777;
    // Anyone can set the marks on their own object: another user's is never ours.
    let shmipc = mode & MARK_SHMIPC != 0 && mine;
    let transient = is_transient(mode);
    let holders =
        locks.map(|l| holders_of(l, lst.st_dev, lst.st_ino, transient || is_legacy(mode)));
    Some(SegmentInfo {
        name: name.to_owned(),
        size: Some(u64::try_from(lst.st_size).unwrap_or(0)),
        backing: Backing::Memory,
        origin: if shmipc {
            Origin::Shmipc
        } else {
            Origin::Foreign
        },
        persistence: if transient {
            Persistence::UntilLastClose
        } else {
            Persistence::UntilRemoved
        },
        // The permission bits only: the set-id and sticky bits of an object in
        // /dev/shm are only ever shmipc's marks (another user's shmipc object, or
        // a program's that set them, shows no more than rwx).
        mode: Some(mode & if shmipc { PERMISSION_BITS } else { 0o777 }),
        owner: Some(lst.st_uid),
        stale: mine
            && holders.as_ref().is_some_and(Vec::is_empty)
            && (transient || (is_legacy(mode) && legacy_half_made(&path))),
        holders,
    })
}

pub(crate) fn list() -> Result<Vec<SegmentInfo>, Error> {
    let dir = fs::read_dir(SHM_DIR).map_err(|source| Error::List {
        place: SHM_DIR.into(),
        source,
    })?;
    let locks = read_locks();
    let mut out: Vec<SegmentInfo> = dir
        .filter_map(Result::ok)
        .filter_map(|e| info_of(&e.file_name(), locks.as_deref()))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) fn info(name: &Name) -> Result<SegmentInfo, Error> {
    info_of(
        OsStr::from_bytes(name.as_str().as_bytes()),
        read_locks().as_deref(),
    )
    .ok_or_else(|| {
        // Something that is no segment (a directory, FIFO, device) holds the name:
        // say so, as opening it does, rather than "not found" (which `create` would
        // then contradict with "already exists").
        let path = path_of(name);
        match rfs::lstat(&path) {
            Ok(_) => not_a_segment(&path),
            Err(_) => Error::NotFound,
        }
    })
}

/// Removes (or with `dry_run`, finds) shmipc segments whose holders all died, and
/// temporary objects left by a creator that died mid-way. Returns their names.
///
/// A dry run must not take the exclusive lock to test for holders: an opener that
/// finds it taken waits for it and, since a dry run unlinks nothing, would then
/// join the dead segment (see the module doc). It reads the holders from
/// `/proc/locks` instead, after it has looked at the candidates, so that a segment
/// created meanwhile (its creator locks it before naming it) is never reported.
/// How old a temporary creation object must be before gc may take it for a leftover.
const TEMP_GRACE: Duration = Duration::from_secs(60);

fn older_than(st: &rfs::Stat, age: Duration) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mtime = u64::try_from(st.st_mtime).unwrap_or(u64::MAX);
    now.saturating_sub(mtime) >= age.as_secs()
}

pub(crate) fn gc(dry_run: bool) -> Result<Vec<String>, Error> {
    sweep(dry_run, true)
}

/// `gc`'s walk over /dev/shm; `legacy`: also older builds' half-made objects.
fn sweep(dry_run: bool, legacy_too: bool) -> Result<Vec<String>, Error> {
    let dir = fs::read_dir(SHM_DIR).map_err(|source| Error::List {
        place: SHM_DIR.into(),
        source,
    })?;
    let mut candidates = Vec::new();
    let mut found_legacy = Vec::new();
    for entry in dir.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(s) = file_name.to_str() else {
            continue;
        };
        if s == LEGACY_LIVENESS_FILE {
            // The liveness file of older shmipc builds: no segment, never stale,
            // never collected (it is removed by hand, if ever, when no process of
            // such a build runs).
            continue;
        }
        let path = entry.path();
        let temp = s.starts_with(RESERVED_PREFIX);
        if !temp && Name::new(s).is_err() {
            continue;
        }
        let Ok(fd) = rfs::open(
            &path,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(st) = rfs::fstat(&fd) else { continue };
        // Another user's objects are never collected, whatever marks they carry.
        if !is_mine(&st) {
            continue;
        }
        let legacy = !temp && !is_transient(st.st_mode) && is_legacy(st.st_mode);
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile
            || !(temp || is_transient(st.st_mode) || legacy)
        {
            continue;
        }
        // A temporary object is locked by its creator a few calls after it appears:
        // leave young ones alone so a creator mid-way never loses it.
        if temp && !older_than(&st, TEMP_GRACE) {
            continue;
        }
        if legacy && !legacy_too {
            continue;
        }
        if legacy {
            // An older shmipc's object whose creator died making it: nobody holds
            // it (the exclusive lock says so; tried without waiting) and its header
            // was never written. The lock is held only for this iteration; an
            // opener that raced us finds the object unlinked and looks again.
            if rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
                && is_half_made(&fd, &st)
            {
                if !dry_run {
                    unlink_if_same(&path, &fd);
                }
                found_legacy.push(s.to_owned());
            }
            continue;
        }
        if dry_run {
            candidates.push((s.to_owned(), st.st_dev, st.st_ino, fd));
        } else if rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            unlink_if_same(&path, &fd);
            candidates.push((s.to_owned(), st.st_dev, st.st_ino, fd));
        }
    }
    let mut found: Vec<String> = if dry_run {
        match read_locks() {
            Some(locks) => candidates
                .into_iter()
                .filter(|(_, dev, ino, _)| holders_of(&locks, *dev, *ino, true).is_empty())
                .map(|(name, ..)| name)
                .collect(),
            // No /proc/locks: the lock test is the only way left.
            None => candidates
                .into_iter()
                .filter(|(.., fd)| rfs::flock(fd, FlockOperation::NonBlockingLockExclusive).is_ok())
                .map(|(name, ..)| name)
                .collect(),
        }
    } else {
        candidates.into_iter().map(|(name, ..)| name).collect()
    };
    found.extend(found_legacy);
    found.sort();
    Ok(found)
}

// ---------------------------------------------------------------------------------
// reads and writes without a mapping

/// Reads up to `buf.len()` bytes at `offset` with `pread`: fewer where the object
/// ends sooner (another program truncated it). A hole of a sparse object reads as
/// zeros without allocating, so a full store is never a `SIGBUS` here.
pub(crate) fn read_at(h: &Handle, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&h.fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(done)
}

/// `write_at`'s refusal: the object is this many bytes now, fewer than the range
/// needs (another process truncated it).
#[derive(Debug)]
pub(crate) struct Shrunk(pub(crate) u64);

impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the object was truncated to {} bytes", self.0)
    }
}

impl std::error::Error for Shrunk {}

/// Gives memory to the pages of the object's first `len` bytes (what its layout
/// uses, checked by the caller) that have none: a sparse file given a shmipc
/// header, or pages another program punched out. An opener writes its words
/// through the mapping, and a page the store cannot provide then kills it
/// (`SIGBUS`); here a full store is an error instead. An object shmipc made is
/// fully backed, which one `fstat` tells (nothing more is done then). On tmpfs
/// (`/dev/shm`) with a size limit, refused at once where its free space cannot
/// hold what is missing (other file systems report free space and usage in ways
/// this cannot compare: compression, ramfs' zeros; `fallocate` tells there).
/// Allocated in pieces of up to 64 MiB, halved on each interruption (tmpfs undoes
/// the piece a signal interrupts, so a process with a profiling timer still
/// progresses); a store that runs out part-way keeps what was allocated (within
/// `len`). A file system without `fallocate` is left as it is, as for `write_at`.
/// (Blocks allocated past the object's end count in `st_blocks`, so a writer can
/// defeat the check, as it can by punching pages out after the open.)
pub(crate) fn back_holes(h: &Handle, len: u64) -> io::Result<()> {
    const PIECE: u64 = 64 << 20;
    const SMALLEST: u64 = 2 << 20;
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    let st = rfs::fstat(&h.fd).map_err(io_err)?;
    let len = len.min(u64::try_from(st.st_size).unwrap_or(0));
    let backed = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512);
    if backed >= len {
        return Ok(());
    }
    if let Ok(fs) = rfs::fstatfs(&h.fd) {
        // `f_type` is a signed or unsigned word by architecture; the magics are 32-bit.
        #[allow(clippy::unnecessary_cast)]
        let tmpfs = fs.f_type as u32 == TMPFS_MAGIC;
        #[allow(clippy::unnecessary_cast)]
        let free = (fs.f_bavail as u64).saturating_mul(fs.f_bsize as u64);
        if tmpfs && fs.f_blocks != 0 && free < len - backed {
            return Err(io_err(Errno::NOSPC));
        }
    }
    let (mut off, mut piece, mut interrupted) = (0, PIECE, 0u32);
    while off < len {
        let n = piece.min(len - off);
        match rfs::fallocate(&h.fd, rfs::FallocateFlags::KEEP_SIZE, off, n) {
            Ok(()) => off += n,
            Err(Errno::INTR) if interrupted < 64 => {
                interrupted += 1;
                piece = (piece / 2).max(SMALLEST);
            }
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => return Ok(()),
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Writes `buf` at `offset` with `pwrite`: a full store is `ENOSPC` here, never a
/// `SIGBUS`; a range past the object's end now is [`Shrunk`].
pub(crate) fn write_at(h: &Handle, offset: u64, buf: &[u8]) -> io::Result<()> {
    // A `pwrite` past the object's end grows it: an object another process has
    // truncated would be quietly grown back (with zeros before the bytes). Refuse
    // instead, as a read of the lost range reports it short. (A truncation racing
    // this check can still be undone by the write; it stays within the size the
    // segment was made with.)
    let now = rfs::fstat(&h.fd).map_err(io_err)?;
    let now = u64::try_from(now.st_size).unwrap_or(0);
    if offset.saturating_add(buf.len() as u64) > now {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, Shrunk(now)));
    }
    // The range's pages first (a sparse segment's holes, on tmpfs or a file), so
    // that a full store fails the write before any byte is written, rather than
    // part-way with the first bytes changed. A file system without `fallocate`
    // goes on to the writes, as before. So does one that signals keep
    // interrupting: tmpfs before Linux 6.14 gives up on any pending signal (and
    // takes back what it had allocated), so a process with a 10 ms profiling timer
    // could retry a large range for ever.
    for _ in 0..4 {
        match rfs::fallocate(
            &h.fd,
            rfs::FallocateFlags::KEEP_SIZE,
            offset,
            buf.len() as u64,
        ) {
            Err(Errno::INTR) => {}
            Err(e @ (Errno::NOSPC | Errno::DQUOT)) => return Err(io_err(e)),
            _ => break,
        }
    }
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pwrite(&h.fd, &buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Reads the first `max` bytes of the named object without holding it: no lock
/// taken or waited for (so another user's lock never stalls an inspection), no
/// mapping (so no `SIGBUS`), and a stale object is left for `gc`. Hands `f` the
/// bytes in chunks with their offsets (fewer than `max` in all for a smaller
/// object, or one truncated meanwhile) and returns the object's size and the
/// descriptor read (to ask about its holders' liveness locks).
pub(crate) fn peek(
    name: &Name,
    max: u64,
    f: &mut dyn FnMut(u64, &[u8]),
) -> Result<(u64, OwnedFd), Error> {
    let path = path_of(name);
    let open = |p: &Path, extra: OFlags| {
        rfs::open(
            p,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | extra,
            Mode::empty(),
        )
    };
    let fd = match open(&path, OFlags::NOFOLLOW) {
        Err(Errno::LOOP) => {
            let target = follow_link(&path)?;
            match open_regular(&target, OFlags::RDONLY) {
                Ok(fd) => Ok(fd),
                Err(Refused::Os(e)) => Err(e),
                Err(r) => return Err(refused_backing(&target, &r)),
            }
        }
        r => r,
    };
    let fd = match fd {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(Error::NotFound),
        // A socket (a directory opens, and is refused below).
        Err(Errno::NXIO) => return Err(not_a_segment(&path)),
        Err(e @ (Errno::ACCESS | Errno::PERM)) => return Err(Error::PermissionDenied(io_err(e))),
        Err(e) => {
            return Err(Error::Os {
                op: "open",
                source: io_err(e),
            })
        }
    };
    let st = rfs::fstat(&fd).map_err(|e| Error::Os {
        op: "fstat",
        source: io_err(e),
    })?;
    if !is_regular(&st) {
        return Err(not_a_segment(&path));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let end = size.min(max);
    let mut buf = vec![0u8; usize::try_from(end.min(256 << 10)).unwrap_or(256 << 10)];
    let mut done = 0u64;
    while done < end {
        let want = usize::try_from((end - done).min(buf.len() as u64)).unwrap_or(buf.len());
        match rustix::io::pread(&fd, &mut buf[..want], done) {
            Ok(0) => break,
            Ok(k) => {
                f(done, &buf[..k]);
                done += k as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => {
                return Err(Error::Os {
                    op: "pread",
                    source: io_err(e),
                })
            }
        }
    }
    Ok((size, fd))
}

/// Whether the kernel's `protected_symlinks` rule lets this process follow the
/// link `lst` in the directory `dir`: a link it owns, or one owned by the
/// directory's owner, or any link where the directory is not sticky and
/// world-writable. shmipc resolves a file-backed segment's link in `/dev/shm`
/// itself and applies the rule itself, whatever the sysctl says: another user's
/// planted link never redirects our reads or writes.
fn may_follow_in(lst: &rfs::Stat, dir: &Path) -> bool {
    let me = rustix::process::geteuid().as_raw();
    if lst.st_uid == me {
        return true;
    }
    match rfs::stat(dir) {
        Ok(dir) => {
            dir.st_uid == lst.st_uid || dir.st_mode & 0o1002 != 0o1002 // sticky + o+w
        }
        Err(_) => false,
    }
}

fn may_follow(lst: &rfs::Stat) -> bool {
    may_follow_in(lst, Path::new(SHM_DIR))
}

/// Opens `path` (a backing file), following a symbolic link as its last component
/// only under the `protected_symlinks` rule ([`may_follow_in`]); a link the rule
/// refuses is `ELOOP`.
fn open_trusted(path: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    match rfs::open(path, flags | OFlags::NOFOLLOW, mode) {
        Err(Errno::LOOP) => {
            let lst = rfs::lstat(path)?;
            let dir = path.parent().unwrap_or(Path::new("/"));
            if rfs::FileType::from_raw_mode(lst.st_mode) == rfs::FileType::Symlink
                && may_follow_in(&lst, dir)
            {
                rfs::open(path, flags, mode)
            } else {
                Err(Errno::LOOP)
            }
        }
        r => r,
    }
}

/// Why [`open_regular`] refused a path.
#[derive(Debug)]
enum Refused {
    Os(Errno),
    /// Not a regular file: a device, FIFO, socket or directory.
    NotRegular,
    /// A file of a kernel interface (`/proc`, `/sys`…), not storage; the name
    /// of its file system.
    Pseudo(&'static str),
}

/// The kernel-interface file systems whose files look regular but are no storage
/// (writing them sets kernel state), by `statfs` magic.
const PSEUDO_FS: &[(u32, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6265_6570, "configfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0xcafe_4a11, "bpffs"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
];

/// The error for a file-backed segment whose link leads to a file
/// [`open_regular`] refused as no storage.
fn refused_backing(target: &Path, r: &Refused) -> Error {
    match r {
        Refused::Pseudo(fs) => Error::Os {
            op: "opening the backing file",
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a file of {fs}, a kernel interface, not a segment's storage: remove the segment's name",
                    target.display()
                ),
            ),
        },
        _ => not_a_segment(target),
    }
}

/// The name of the kernel-interface file system `fd` is on ([`PSEUDO_FS`]), if
/// it is on one.
fn pseudo_fs(fd: &OwnedFd) -> Result<Option<&'static str>, Errno> {
    let fs = rfs::fstatfs(fd)?;
    // `f_type` is a signed or unsigned word by architecture; the magics are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    let magic = fs.f_type as u32;
    Ok(PSEUDO_FS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, what)| *what))
}

/// Opens the existing file `path` with `flags` (links followed as [`open_trusted`]
/// follows them) only once it is known to be a regular file of a real file
/// system. It is first opened with `O_PATH`, which runs no driver's open: a
/// device is never opened (a watchdog armed, a tape rewound, a terminal made the
/// controlling one), a FIFO never waited on. What that names is checked, then
/// reopened through `/proc/self/fd` (without `/proc`: by path again, and checked
/// to be the same file), with `O_NOCTTY | O_NONBLOCK | O_CLOEXEC` added.
fn open_regular(path: &Path, flags: OFlags) -> Result<OwnedFd, Refused> {
    let probe_flags = OFlags::PATH | OFlags::CLOEXEC;
    let mut probe =
        rfs::open(path, probe_flags | OFlags::NOFOLLOW, Mode::empty()).map_err(Refused::Os)?;
    let mut st = rfs::fstat(&probe).map_err(Refused::Os)?;
    if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink {
        let dir = path.parent().unwrap_or(Path::new("/"));
        if !may_follow_in(&st, dir) {
            return Err(Refused::Os(Errno::LOOP));
        }
        probe = rfs::open(path, probe_flags, Mode::empty()).map_err(Refused::Os)?;
        st = rfs::fstat(&probe).map_err(Refused::Os)?;
    }
    if !is_regular(&st) {
        return Err(Refused::NotRegular);
    }
    if let Some(what) = pseudo_fs(&probe).map_err(Refused::Os)? {
        return Err(Refused::Pseudo(what));
    }
    let flags = flags | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = if proc_fd_available() {
        let again = format!("/proc/self/fd/{}", probe.as_raw_fd());
        rfs::open(again.as_str(), flags, Mode::empty())
    } else {
        open_trusted(path, flags, Mode::empty())
    }
    .map_err(Refused::Os)?;
    let now = rfs::fstat(&fd).map_err(Refused::Os)?;
    if now.st_dev != st.st_dev || now.st_ino != st.st_ino || !is_regular(&now) {
        // Replaced between the looks (only possible without /proc).
        return Err(Refused::NotRegular);
    }
    Ok(fd)
}

/// Why an open through a link failed with `ELOOP`.
const UNTRUSTED_LINK: &str = "a symbolic link loop, or a link owned by another user in a shared (sticky, world-writable) directory, which is not followed";

/// The target of the file-backed segment link `link`, if this user may follow it.
fn follow_link(link: &Path) -> Result<PathBuf, Error> {
    let lst = rfs::lstat(link).map_err(|e| match e {
        Errno::NOENT => Error::NotFound,
        e => Error::Os {
            op: "lstat",
            source: io_err(e),
        },
    })?;
    if !may_follow(&lst) {
        return Err(Error::Os { op: "following its link in /dev/shm",
            source: io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is a symbolic link owned by another user (uid {}): not followed; remove it if it is not a segment you trust",
                    link.display(),
                    lst.st_uid
                ),
            ),
        });
    }
    fs::read_link(link).map_err(|source| Error::Os {
        op: "readlink",
        source,
    })
}

// ---------------------------------------------------------------------------------
// mappings

pub(crate) use super::unix_map::{flush, granularity, install_sigbus_handler, Mapping};

/// Maps `len` bytes at `offset` (a multiple of [`granularity`]).
pub(crate) fn map(h: &Handle, offset: u64, len: usize, access: Access) -> io::Result<Mapping> {
    super::unix_map::map(h.fd.as_fd(), offset, len, access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_locks() {
        let dev = rfs::makedev(0, 0x1a);
        let text = "1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 99 00:1a:5678 0 EOF\n\
                    2: FLOCK  ADVISORY  READ  42 00:1a:5678 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 7 00:1a:5678 0 EOF\n\
                    4: FLOCK  ADVISORY  READ  8 00:1b:5678 0 EOF\n";
        assert_eq!(lock_holders(text, dev, 5678), vec![1234, 42]);
        assert!(lock_holders("garbage\n\n1:", dev, 5678).is_empty());
    }
}
