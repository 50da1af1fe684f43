//! macOS backend: POSIX shared memory (`shm_open`), `mmap`, and a lifetime protocol
//! built on `flock` of a per-segment **lock file**, because macOS cannot `flock` a
//! shared-memory descriptor.
//!
//! **Type-checked only**: CI builds this file for `aarch64-apple-darwin` and
//! `x86_64-apple-darwin` but has no Mac to run it on. Nothing here has been executed;
//! treat the lifetime protocol on macOS as untested.
//!
//! # What differs from Linux
//!
//! * Names: `PSHMNAMLEN` is 31 bytes *including* the leading `/` that `shm_open` gets,
//!   so a name has at most 30 bytes ([`MAX_NAME_LEN`]); longer names are refused by
//!   `Name::new` with a message that gives the limit.
//! * `ftruncate` works only once on a shared-memory object: it is called exactly once,
//!   at creation, before the object is announced. The OS reports the size rounded to
//!   pages, so the exact size lives in the lock file's record.
//! * No `O_TMPFILE`, `linkat` or `memfd`: an unnamed segment is a `shm_open` object
//!   unlinked at once; creation is made atomic by the lock file instead (below).
//!
//! # Lifetime protocol
//!
//! Every segment made by shmipc has a lock file `/tmp/shmipc-UID/NAME.lock` (UID of
//! the creator; the directory belongs to that user and is checked to) holding one
//! text record: kind, exact size, whether it dies with its last holder, the creator's
//! pid, and for file-backed segments the file's path.
//!
//! * Every holder keeps a **shared** `flock` on the lock file; the kernel drops it when
//!   the process exits or is killed.
//! * Creating takes the lock **exclusively** (without waiting: if anyone holds it, the
//!   name is in use), then `shm_open(O_CREAT | O_EXCL)`, `ftruncate` once, writes the
//!   record, and turns the lock into a shared one.
//! * A closing holder that can take the lock exclusively is the last: it empties the
//!   record and `shm_unlink`s the name.
//! * An opener that can take the lock exclusively sees nobody holds the segment: if the
//!   record says it dies with its holders, it is stale and the opener removes it.
//!   Otherwise the opener takes the shared lock and only then opens the object for use,
//!   so it never joins an object a closer just unlinked.
//! * BSD `flock` turns an exclusive lock into a shared one in two steps. In between,
//!   another process could take it exclusively and think the fresh segment stale; so
//!   "stale" also requires the creator's pid to be dead. (The cost: a segment whose
//!   creator is alive but let go, and whose other holders all died, is removed only once
//!   the creator exits or by `Segment::remove`.)
//! * Segments made by other programs have no lock file: they are opened as they are,
//!   with their page-rounded size, and never removed unless asked.
//! * A descriptor handed to another process (`os::unix`) is not a holder here: the
//!   lock is on the lock file, not on the descriptor. The memory stays valid for it,
//!   but the name may go when the holders in the protocol are gone.
//! * Lock files are left behind, emptied, and reused by the next segment of that name.
//!   Another user can open a segment whose mode allows it, but only the creator's user
//!   can create under that name's lock file.
//!
//! # Safety
//!
//! The mappings (`mmap`, `munmap`, `msync`) are in `unix_map.rs`, shared with
//! Linux.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::shm;

use super::Error;
use crate::name::{Name, RESERVED_PREFIX};
use crate::vocab::{
    Access, Backing, CreateParams, Origin, Persistence, SegmentInfo, PERMISSION_BITS,
};

/// Longest name: `PSHMNAMLEN` (31) less the leading `/`.
pub(crate) const MAX_NAME_LEN: usize = 30;

/// How long an opener waits for a creator or closer holding the lock exclusively.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

/// Permission bits as the OS's `mode_t` (16 bits on macOS).
fn perm(bits: u32) -> Mode {
    Mode::from_raw_mode(rfs::RawMode::try_from(bits & PERMISSION_BITS).unwrap_or(0o600))
}

fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn shm_name(name: &Name) -> String {
    format!("/{}", name.as_str())
}

fn lock_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/shmipc-{uid}"))
}

fn lock_path(uid: u32, name: &Name) -> PathBuf {
    lock_dir(uid).join(format!("{}.lock", name.as_str()))
}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Creates this user's lock directory if needed and checks that it is a real
/// directory owned by this user (not a link or another user's trap).
fn ensure_lock_dir() -> io::Result<PathBuf> {
    let uid = my_uid();
    let dir = lock_dir(uid);
    match rfs::mkdir(&dir, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err(e)),
    }
    let st = rfs::lstat(&dir).map_err(io_err)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Directory || st.st_uid != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory owned by you: remove it",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

// ---------------------------------------------------------------------------------
// the record in the lock file

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    file: Option<PathBuf>,
    size: u64,
    transient: bool,
    pid: i32,
}

const RECORD_MAX: usize = 4096;

impl Record {
    fn to_text(&self) -> String {
        let kind = if self.file.is_some() {
            "file"
        } else {
            "memory"
        };
        let mut s = format!(
            "shmipc 1 {kind} {} {} {}",
            self.size,
            u8::from(self.transient),
            self.pid
        );
        if let Some(p) = &self.file {
            s.push(' ');
            s.push_str(&p.to_string_lossy());
        }
        s.push('\n');
        s
    }

    /// Parses a record; `None` for anything malformed (treated as "no record").
    fn parse(text: &str) -> Option<Self> {
        let line = text.strip_suffix('\n')?;
        let mut parts = line.splitn(7, ' ');
        if parts.next()? != "shmipc" || parts.next()? != "1" {
            return None;
        }
        let kind = parts.next()?;
        let size = parts.next()?.parse::<u64>().ok().filter(|&s| s > 0)?;
        let transient = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let pid = parts.next()?.parse::<i32>().ok().filter(|&p| p > 0)?;
        let file = match (kind, parts.next()) {
            ("memory", None) => None,
            ("file", Some(p)) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => return None,
        };
        Some(Self {
            file,
            size,
            transient,
            pid,
        })
    }
}

fn read_record(fd: &OwnedFd) -> Option<Record> {
    let mut buf = vec![0u8; RECORD_MAX];
    let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
    Record::parse(std::str::from_utf8(&buf[..n]).ok()?)
}

fn write_record(fd: &OwnedFd, r: &Record) -> io::Result<()> {
    let text = r.to_text();
    if text.len() > RECORD_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the backing file's path is too long to record",
        ));
    }
    rfs::ftruncate(fd, 0).map_err(io_err)?;
    let n = rustix::io::pwrite(fd, text.as_bytes(), 0).map_err(io_err)?;
    if n != text.len() {
        return Err(io::Error::other("short write of the lock record"));
    }
    Ok(())
}

fn clear_record(fd: &OwnedFd) {
    let _ = rfs::ftruncate(fd, 0);
}

fn pid_alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

/// Whether `fd` is still the file named `path`.
fn same_file(fd: &OwnedFd, path: &Path) -> bool {
    match (rfs::fstat(fd), rfs::lstat(path)) {
        (Ok(a), Ok(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
        _ => false,
    }
}

/// A record that should have died with its holders, whose creator is gone too.
fn is_stale(r: &Record) -> bool {
    r.file.is_none() && r.transient && !pid_alive(r.pid)
}

/// Takes the shared lock, waiting at most [`LOCK_PATIENCE`] for an exclusive holder.
fn lock_shared(fd: &OwnedFd) -> Result<(), Option<Errno>> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match rfs::flock(fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return Ok(()),
            Err(Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(Errno::WOULDBLOCK) => return Err(None),
            Err(e) => return Err(Some(e)),
        }
    }
}

// ---------------------------------------------------------------------------------
// Handle

/// An open segment: its descriptor, and the lock file that carries the lifetime.
#[derive(Debug)]
pub(crate) struct Handle {
    fd: OwnedFd,
    /// The lock file (shared lock held), for segments made by shmipc.
    lock: Option<OwnedFd>,
    size: u64,
    backing: Backing,
    persistence: Persistence,
    /// For a memory segment that dies with its last holder: its name.
    transient_name: Option<String>,
}

/// Whether `name` still names the object `h` holds: macOS cannot tell (a POSIX
/// shared-memory object has no path to `stat`, and its `fstat` gives no inode to
/// compare).
pub(crate) fn still_named(_h: &Handle, _name: &Name) -> Option<bool> {
    None
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
    /// Its size is what `fstat` says (page-rounded for shared memory on macOS).
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let st = rfs::fstat(&fd).map_err(io_err)?;
        Ok(Self {
            fd,
            lock: None,
            size: u64::try_from(st.st_size).unwrap_or(0),
            backing: Backing::Unnamed,
            persistence: Persistence::UntilLastClose,
            transient_name: None,
        })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let (Some(name), Some(lock)) = (&self.transient_name, &self.lock) else {
            return;
        };
        // The last holder is the one that can take the lock exclusively.
        if rfs::flock(lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
            clear_record(lock);
            let _ = shm::unlink(name.as_str());
        }
        // Closing the lock file releases whatever lock is left.
    }
}

// ---------------------------------------------------------------------------------
// create

/// Opens this user's lock file for `name` and locks it exclusively, or says the name
/// is held.
fn lock_for_create(name: &Name, mode: u32) -> Result<(OwnedFd, PathBuf), Error> {
    let os = |op: &'static str| move |source: io::Error| Error::Os { op, source };
    ensure_lock_dir().map_err(os("preparing the lock directory"))?;
    let path = lock_path(my_uid(), name);
    for _ in 0..16 {
        let lfd = rfs::open(
            &path,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            perm((mode & 0o644) | 0o600),
        )
        .map_err(|e| os("opening the lock file")(io_err(e)))?;
        match rfs::flock(&lfd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => return Err(Error::AlreadyExists),
            Err(e) => return Err(os("flock")(io_err(e))),
        }
        if same_file(&lfd, &path) {
            return Ok((lfd, path));
        }
    }
    Err(Error::AlreadyExists)
}

pub(crate) fn create(name: &Name, p: &CreateParams<'_>) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |e: Errno| Error::Os {
            op,
            source: io_err(e),
        }
    };
    if let Some(file) = p.file {
        return create_file_backed(name, file, p);
    }
    // macOS has no `fallocate` for shared memory: `reserve` is not honoured here.
    let _ = p.reserve;
    let mode = p.mode & PERMISSION_BITS;
    let (lock, _) = lock_for_create(name, mode)?;
    let sname = shm_name(name);
    let mut cleared_stale = false;
    let fd = loop {
        match shm::open(
            sname.as_str(),
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            perm(mode),
        ) {
            Ok(fd) => break fd,
            Err(Errno::EXIST) if !cleared_stale => {
                // Nobody holds it (we have the lock exclusively): stale, or not ours.
                match read_record(&lock) {
                    Some(r) if is_stale(&r) => {
                        let _ = shm::unlink(sname.as_str());
                        clear_record(&lock);
                        cleared_stale = true;
                    }
                    _ => return Err(Error::AlreadyExists),
                }
            }
            Err(Errno::EXIST) => return Err(Error::AlreadyExists),
            Err(e @ (Errno::ACCESS | Errno::PERM)) => {
                return Err(Error::PermissionDenied(io_err(e)))
            }
            Err(e) => return Err(os("shm_open")(e)),
        }
    };
    // Once only: macOS refuses a second ftruncate of a shared-memory object.
    if let Err(e) = rfs::ftruncate(&fd, p.size) {
        let _ = shm::unlink(sname.as_str());
        return Err(match e {
            Errno::NOSPC | Errno::FBIG | Errno::NOMEM | Errno::INVAL => Error::InvalidSize {
                size: p.size,
                reason: "the OS refused this size",
            },
            e => os("ftruncate")(e),
        });
    }
    let transient = p.persistence == Persistence::UntilLastClose;
    let record = Record {
        file: None,
        size: p.size,
        transient,
        pid: rustix::process::getpid().as_raw_nonzero().get(),
    };
    if let Err(source) = write_record(&lock, &record) {
        let _ = shm::unlink(sname.as_str());
        return Err(Error::Os {
            op: "writing the lock record",
            source,
        });
    }
    // Exclusive to shared: two steps on BSD (see the module doc for why it is safe).
    rfs::flock(&lock, FlockOperation::LockShared).map_err(os("flock"))?;
    Ok(Handle {
        fd,
        lock: Some(lock),
        size: p.size,
        backing: Backing::Memory,
        persistence: p.persistence,
        transient_name: transient.then_some(sname),
    })
}

fn create_file_backed(name: &Name, file: &Path, p: &CreateParams<'_>) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |e: Errno| Error::Os {
            op,
            source: io_err(e),
        }
    };
    let abs = std::path::absolute(file).map_err(|source| Error::Os {
        op: "resolving the file path",
        source,
    })?;
    let (lock, _) = lock_for_create(name, p.mode)?;
    // The name is taken by a live record, or by a shared-memory object.
    if read_record(&lock).is_some_and(|r| !is_stale(&r))
        || shm::open(shm_name(name).as_str(), shm::OFlags::RDONLY, Mode::empty()).is_ok()
    {
        return Err(Error::AlreadyExists);
    }
    let fd = rfs::open(
        &abs,
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        perm(p.mode & PERMISSION_BITS),
    )
    .map_err(|e| match e {
        Errno::ACCESS | Errno::PERM => Error::PermissionDenied(io_err(e)),
        e => os("opening the backing file")(e),
    })?;
    let current = rfs::fstat(&fd)
        .map(|s| u64::try_from(s.st_size).unwrap_or(0))
        .map_err(os("fstat"))?;
    let size = if p.size == 0 { current } else { p.size };
    if size == 0 {
        return Err(Error::InvalidSize {
            size: 0,
            reason: "the backing file is empty: give a size to extend it to",
        });
    }
    if size > current {
        rfs::ftruncate(&fd, size).map_err(os("extending the backing file"))?;
    }
    let record = Record {
        file: Some(abs.clone()),
        size,
        transient: false,
        pid: rustix::process::getpid().as_raw_nonzero().get(),
    };
    write_record(&lock, &record).map_err(|source| Error::Os {
        op: "writing the lock record",
        source,
    })?;
    rfs::flock(&lock, FlockOperation::LockShared).map_err(os("flock"))?;
    Ok(Handle {
        fd,
        lock: Some(lock),
        size,
        backing: Backing::File(abs),
        persistence: Persistence::UntilRemoved,
        transient_name: None,
    })
}

/// Names an object made with `defer_publish`: here objects are named when they
/// are made (the OS cannot name one later), so there is nothing left to do.
pub(crate) fn publish(_h: &Handle) -> Result<(), Error> {
    Ok(())
}

pub(crate) fn create_unnamed(size: u64, _reserve: bool) -> Result<Handle, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let os = |op: &'static str| {
        move |e: Errno| Error::Os {
            op,
            source: io_err(e),
        }
    };
    // A fresh object unlinked at once: only descriptors reach it.
    let temp = format!(
        "/{RESERVED_PREFIX}u{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let fd = shm::open(
        temp.as_str(),
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::from_raw_mode(0o600),
    )
    .map_err(os("shm_open"))?;
    let _ = shm::unlink(temp.as_str());
    rfs::ftruncate(&fd, size).map_err(|e| match e {
        Errno::NOSPC | Errno::FBIG | Errno::NOMEM | Errno::INVAL => Error::InvalidSize {
            size,
            reason: "the OS refused this size",
        },
        e => os("ftruncate")(e),
    })?;
    Ok(Handle {
        fd,
        lock: None,
        size,
        backing: Backing::Unnamed,
        persistence: Persistence::UntilLastClose,
        transient_name: None,
    })
}

// ---------------------------------------------------------------------------------
// open

pub(crate) fn open(name: &Name, access: Access) -> Result<Handle, Error> {
    let os = |op: &'static str| {
        move |e: Errno| match e {
            Errno::ACCESS | Errno::PERM => Error::PermissionDenied(io_err(e)),
            e => Error::Os {
                op,
                source: io_err(e),
            },
        }
    };
    let flags = match access {
        Access::ReadWrite => shm::OFlags::RDWR,
        Access::Read | Access::CopyOnWrite => shm::OFlags::RDONLY,
    };
    let sname = shm_name(name);
    for _ in 0..16 {
        let probe = match shm::open(sname.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return open_file_backed(name, access),
            Err(e) => return Err(os("shm_open")(e)),
        };
        let st = rfs::fstat(&probe).map_err(os("fstat"))?;
        let lpath = lock_path(st.st_uid, name);
        let mine = st.st_uid == my_uid();
        let lflags = if mine { OFlags::RDWR } else { OFlags::RDONLY };
        let Ok(lock) = rfs::open(
            &lpath,
            lflags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        ) else {
            // No lock file: made by another program.
            return Ok(foreign(probe, &st));
        };
        match rfs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // Nobody holds it.
                if read_record(&lock).is_some_and(|r| is_stale(&r)) {
                    let _ = shm::unlink(sname.as_str());
                    if mine {
                        clear_record(&lock);
                    }
                    return Err(Error::NotFound);
                }
                rfs::flock(&lock, FlockOperation::LockShared).map_err(os("flock"))?;
            }
            Err(Errno::WOULDBLOCK) => match lock_shared(&lock) {
                Ok(()) => {}
                Err(None) => return Err(Error::Busy),
                Err(Some(e)) => return Err(os("flock")(e)),
            },
            Err(e) => return Err(os("flock")(e)),
        }
        if !same_file(&lock, &lpath) {
            continue;
        }
        // Holding the shared lock, nobody can unlink it: open the current object.
        let fd = match shm::open(sname.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(Error::NotFound),
            Err(e) => return Err(os("shm_open")(e)),
        };
        drop(probe);
        let st = rfs::fstat(&fd).map_err(os("fstat"))?;
        let Some(r) = read_record(&lock).filter(|r| r.file.is_none()) else {
            return Ok(foreign(fd, &st));
        };
        if r.size > u64::try_from(st.st_size).unwrap_or(0) {
            return Err(Error::Os {
                op: "checking the lock record",
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the recorded size is larger than the object",
                ),
            });
        }
        return Ok(Handle {
            fd,
            lock: Some(lock),
            size: r.size,
            backing: Backing::Memory,
            persistence: if r.transient {
                Persistence::UntilLastClose
            } else {
                Persistence::UntilRemoved
            },
            transient_name: r.transient.then_some(sname),
        });
    }
    Err(Error::Busy)
}

fn foreign(fd: OwnedFd, st: &rfs::Stat) -> Handle {
    Handle {
        fd,
        lock: None,
        size: u64::try_from(st.st_size).unwrap_or(0),
        backing: Backing::Memory,
        persistence: Persistence::UntilRemoved,
        transient_name: None,
    }
}

fn open_file_backed(name: &Name, access: Access) -> Result<Handle, Error> {
    let not_found = || Error::NotFound;
    let lpath = lock_path(my_uid(), name);
    let lock = rfs::open(
        &lpath,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|_| not_found())?;
    match lock_shared(&lock) {
        Ok(()) => {}
        Err(None) => return Err(Error::Busy),
        Err(Some(e)) => {
            return Err(Error::Os {
                op: "flock",
                source: io_err(e),
            })
        }
    }
    let Some(path) = read_record(&lock).and_then(|r| r.file) else {
        return Err(not_found());
    };
    let flags = match access {
        Access::ReadWrite => OFlags::RDWR,
        Access::Read | Access::CopyOnWrite => OFlags::RDONLY,
    };
    let fd = rfs::open(&path, flags | OFlags::CLOEXEC, Mode::empty()).map_err(|e| match e {
        Errno::NOENT => not_found(),
        Errno::ACCESS | Errno::PERM => Error::PermissionDenied(io_err(e)),
        e => Error::Os {
            op: "opening the backing file",
            source: io_err(e),
        },
    })?;
    let st = rfs::fstat(&fd).map_err(|e| Error::Os {
        op: "fstat",
        source: io_err(e),
    })?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size == 0 {
        return Err(Error::Empty);
    }
    Ok(Handle {
        fd,
        lock: Some(lock),
        size,
        backing: Backing::File(path),
        persistence: Persistence::UntilRemoved,
        transient_name: None,
    })
}

// ---------------------------------------------------------------------------------
// remove, list, info, gc

pub(crate) fn remove(name: &Name) -> Result<(), Error> {
    let lock = rfs::open(
        lock_path(my_uid(), name),
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .ok();
    let record = lock.as_ref().and_then(read_record);
    let unlinked = match shm::unlink(shm_name(name).as_str()) {
        Ok(()) => true,
        Err(Errno::NOENT) => false,
        Err(e @ (Errno::ACCESS | Errno::PERM)) => return Err(Error::PermissionDenied(io_err(e))),
        Err(e) => {
            return Err(Error::Os {
                op: "shm_unlink",
                source: io_err(e),
            })
        }
    };
    if let Some(l) = &lock {
        clear_record(l);
    }
    if unlinked || record.is_some() {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// The segments this user made with shmipc (macOS cannot enumerate shared-memory
/// objects; the lock directory is the registry).
fn scan(dry_run: Option<bool>) -> Result<(Vec<SegmentInfo>, Vec<String>), Error> {
    let dir = lock_dir(my_uid());
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => {
            return Err(Error::List {
                place: dir.display().to_string(),
                source,
            })
        }
    };
    let mut infos = Vec::new();
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(stem) = file_name.to_str().and_then(|s| s.strip_suffix(".lock")) else {
            continue;
        };
        let Ok(name) = Name::new(stem) else { continue };
        let Ok(lock) = rfs::open(
            entry.path(),
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        ) else {
            continue;
        };
        let Some(r) = read_record(&lock) else {
            continue;
        };
        let free = rfs::flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok();
        let stale = free && is_stale(&r);
        if stale {
            if dry_run == Some(false) {
                let _ = shm::unlink(shm_name(&name).as_str());
                clear_record(&lock);
            }
            removed.push(name.to_string());
        }
        infos.push(SegmentInfo {
            name: name.to_string(),
            size: Some(r.size),
            backing: r.file.clone().map_or(Backing::Memory, Backing::File),
            origin: Origin::Shmipc,
            persistence: if r.transient {
                Persistence::UntilLastClose
            } else {
                Persistence::UntilRemoved
            },
            mode: None,
            owner: Some(my_uid()),
            holders: None,
            stale,
        });
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    removed.sort();
    Ok((infos, removed))
}

pub(crate) fn list() -> Result<Vec<SegmentInfo>, Error> {
    Ok(scan(None)?.0)
}

pub(crate) fn info(name: &Name) -> Result<SegmentInfo, Error> {
    let h = open(name, Access::Read)?;
    let st = rfs::fstat(&h.fd).ok();
    Ok(SegmentInfo {
        name: name.to_string(),
        size: Some(h.size),
        backing: h.backing.clone(),
        origin: if h.lock.is_some() {
            Origin::Shmipc
        } else {
            Origin::Foreign
        },
        persistence: h.persistence,
        mode: st.as_ref().map(|s| u32::from(s.st_mode) & 0o777),
        owner: st.as_ref().map(|s| s.st_uid),
        holders: None,
        stale: false,
    })
}

pub(crate) fn gc(dry_run: bool) -> Result<Vec<String>, Error> {
    Ok(scan(Some(dry_run))?.1)
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
    fn records_round_trip_and_garbage_is_refused() {
        let r = Record {
            file: None,
            size: 1000,
            transient: true,
            pid: 42,
        };
        assert_eq!(Record::parse(&r.to_text()), Some(r));
        let f = Record {
            file: Some(PathBuf::from("/tmp/a b")),
            size: 7,
            transient: false,
            pid: 1,
        };
        assert_eq!(Record::parse(&f.to_text()), Some(f));
        for bad in [
            "",
            "shmipc 1 memory 0 1 42\n",
            "shmipc 2 memory 5 1 42\n",
            "x",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }
}
