//! Linux: liveness through the kernel, not pids. Every process keeps one open file
//! description of `/dev/shm/.shmipc-liveness` and holds an open-file-description
//! read lock (`F_OFD_SETLK`) on one byte per *live identity*: a byte for the process
//! (channel endpoints) and a byte per thread that has taken a lock (lock owners).
//! The kernel drops those locks when the process dies however it dies (SIGKILL
//! included), in any PID namespace, and a thread's byte is unlocked by its
//! thread-local destructor when it exits. "Is X alive?" is `F_OFD_GETLK` on X's
//! byte: unlocked means dead, **certainly**: no pid is compared, so neither pid
//! reuse nor a container's separate PID namespace can fool it.
//!
//! An identity is 63 bits:
//!
//! ```text
//! bits 62..41  thread id (owners) or process id (endpoints), as its owner sees it
//! bits 40..35  a tag of the owner's PID namespace (1..=62), to tell a foreign id
//! bit  34      UNTRUSTED: its byte lives in a file its holder cannot trust (below)
//! bits 33..0   a random nonce (never 0): the byte offset of its lock
//! ```
//!
//! Only the nonce (and UNTRUSTED) decide liveness; the id and the tag are for
//! people (`shmipc info` shows a thread id only when the tag is ours). Two live
//! identities with the same nonce (a 1 in 2^34 draw) only make a dead one look
//! alive while the other lives: a waiter then waits, two are never let in.
//!
//! # Hostile users (issue 11)
//!
//! * **Replacing the file** would split processes between two inodes, each blind
//!   to the other's locks, so that a live holder is judged dead. Only the file's
//!   owner or root can remove it from the sticky `/dev/shm`; so a file is trusted
//!   only when root or this process's user owns it (and `/dev/shm` is safe), an
//!   identity made in an untrusted file carries UNTRUSTED, and nobody judges such an
//!   identity dead, nor does a process whose own file is untrusted judge anybody
//!   dead. Users who share objects with a non-root user who made the file first
//!   therefore lose crash recovery (waits run to their timeouts), never soundness.
//!   A "dead" verdict is also withheld once the file has lost its name.
//! * **Still open: locking bytes.** The file must be readable by every user whose
//!   processes share objects, so any local user can read-lock every byte of it and
//!   make every dead owner and endpoint of every user look alive (a denial of crash
//!   recovery, never two in a critical section). Closing that needs the lock bytes
//!   on each object's own descriptor (only those who can open the object can lock
//!   them); `tests/hostile_users.rs` holds the reproduction, ignored until then.
//!
//! Everybody sharing the objects must see the same liveness file, i.e. the same
//! `/dev/shm` (which sharing named segments implies). Objects record the device of
//! that file system ([`domain`]) and an opener that sees another refuses them.
//!
//! The file is never emptied or truncated: its bytes are only lock offsets. A
//! process holds a shared `flock` on it, so `shmipc gc` (which removes only what it
//! can lock exclusively) never removes it while anyone uses it, and an opener
//! checks after locking that the name still names the file it opened.
//!
//! Fork: a `pthread_atfork` child handler closes the inherited descriptor (the
//! child must not keep the parent's locks alive) and bumps a generation, so that
//! identities cached before the fork are drawn anew.
//!
//! # Safety
//!
//! `pthread_atfork`, whose handler only does an atomic add, an atomic swap and
//! `close(2)` (async-signal-safe); and `fcntl(F_OFD_SETLK/F_OFD_GETLK)` with a
//! `struct flock` on the stack.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};

use super::Liveness;

/// Lock owners can be named and checked here.
pub(crate) const SUPPORTED: bool = true;

/// The liveness file's name in `/dev/shm` (reserved: no object can take it).
pub(crate) const FILE_NAME: &str = ".shmipc-liveness";
/// The liveness file.
const PATH: &str = "/dev/shm/.shmipc-liveness";
/// The folder it lives in.
const DIR: &str = "/dev/shm";

const ID_SHIFT: u32 = 41;
const ID_MASK: u64 = (1 << 22) - 1;
const TAG_SHIFT: u32 = 35;
const TAG_MASK: u64 = (1 << 6) - 1;
/// Set in an identity whose byte lives in a file this process cannot trust to stay
/// under its name (see [`trusted`]): nobody may ever call such an identity dead.
const UNTRUSTED: u64 = 1 << 34;
const NONCE_MASK: u64 = UNTRUSTED - 1;

// ---------------------------------------------------------------------------------
// fork detection, and the descriptor a forked child must not keep

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK_REGISTERED: OnceLock<bool> = OnceLock::new();
/// The liveness file's descriptor whose open file description holds this
/// process's locks, -1 until opened (and again in a forked child).
static FD: AtomicI32 = AtomicI32::new(-1);
/// A second descriptor of the same file, to ask about locks with: `F_OFD_GETLK`
/// does not report the asking description's own locks, so asking through the
/// holding one would find this process's other threads dead.
static PROBE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn in_forked_child() {
    // Async-signal-safe: atomics and close(2), in the child right after fork.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    PROCESS.store(0, Ordering::Relaxed);
    TRUST.store(TRUST_UNKNOWN, Ordering::Relaxed);
    for slot in [&FD, &PROBE_FD] {
        let fd = slot.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: `fd` is a descriptor this module opened and owns (only this
            // handler closes it, and only in the child); closing the holding one
            // releases the child's share of the parent's locks.
            unsafe { libc::close(fd) };
        }
    }
}

/// No PID-namespace check needed: identities are namespace-free.
pub(crate) fn namespaces() -> [u64; 2] {
    [domain(), 0]
}

/// A number that changes in every forked child (`None` if the `pthread_atfork`
/// handler could not be registered: then nothing may be cached across a fork).
pub(crate) fn fork_generation() -> Option<u64> {
    let registered = *ATFORK_REGISTERED.get_or_init(|| {
        // SAFETY: `pthread_atfork` takes three optional `extern "C" fn()` handlers;
        // ours lives for the whole program and is async-signal-safe.
        unsafe { libc::pthread_atfork(None, None, Some(in_forked_child)) == 0 }
    });
    registered.then(|| FORK_GENERATION.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------
// the liveness file

/// This process's holding descriptor of the liveness file, opened on first use.
fn file() -> io::Result<BorrowedFd<'static>> {
    published(&FD, open_file)
}

/// This process's asking descriptor of the liveness file (see [`PROBE_FD`]).
fn probe_file() -> io::Result<BorrowedFd<'static>> {
    let holder = file()?;
    published(&PROBE_FD, || {
        let fd = rfs::open(
            PATH,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        let (a, b) = (rfs::fstat(&fd)?, rfs::fstat(holder)?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(io::Error::other(format!("{PATH} was replaced")));
        }
        Ok(fd)
    })
}

/// The descriptor in `slot`, opened by `open` and published on first use.
fn published(
    slot: &'static AtomicI32,
    open: impl FnOnce() -> io::Result<OwnedFd>,
) -> io::Result<BorrowedFd<'static>> {
    // Registers the fork handler before any descriptor exists.
    if fork_generation().is_none() {
        return Err(io::Error::other(
            "cannot register a fork handler (pthread_atfork): liveness would be wrong in forked children",
        ));
    }
    let mut fd = slot.load(Ordering::Acquire);
    if fd < 0 {
        let new = open()?.into_raw_fd();
        fd = match slot.compare_exchange(-1, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new,
            Err(theirs) => {
                // Another thread opened it first: keep theirs.
                // SAFETY: `new` is ours, never published.
                unsafe { libc::close(new) };
                theirs
            }
        };
    }
    // SAFETY: `fd` stays open for the rest of the process (only the fork handler
    // closes it, in a child, where this borrow's thread does not exist).
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Opens (creating, world-readable) the liveness file and takes a shared `flock`
/// on it, making sure the name still names the file locked.
fn open_file() -> io::Result<OwnedFd> {
    for _ in 0..100 {
        let fd = rfs::open(
            PATH,
            OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::from_raw_mode(0o444),
        )?;
        let st = rfs::fstat(&fd)?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(io::Error::other(format!("{PATH} is not a regular file")));
        }
        // Readable by every user whose processes share objects with ours (umask
        // may have narrowed the mode we asked for; only the creator can widen it).
        let _ = rfs::fchmod(&fd, Mode::from_raw_mode(0o444));
        if rfs::flock(&fd, FlockOperation::NonBlockingLockShared).is_err() {
            // `shmipc gc` holds it exclusively and is about to remove it: again.
            std::thread::yield_now();
            continue;
        }
        // Removed (by gc) between our open and our lock: open the new one.
        match rfs::stat(PATH) {
            Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => return Ok(fd),
            _ => continue,
        }
    }
    Err(io::Error::other(format!(
        "{PATH} keeps being replaced: cannot set up liveness"
    )))
}

const TRUST_UNKNOWN: u8 = 0;
const TRUST_YES: u8 = 1;
const TRUST_NO: u8 = 2;
/// Whether this process's liveness file is [`trusted`], once judged (per fork
/// generation: a forked child opens its own).
static TRUST: AtomicU8 = AtomicU8::new(TRUST_UNKNOWN);

/// Whether the liveness file this process holds its bytes in can only be removed
/// or replaced by root or by this process's own user: it is owned by one of them,
/// and `/dev/shm` is owned by one of them and sticky (or writable by nobody else).
///
/// A file another user owns can be unlinked and made again by that user at any
/// time (the sticky bit lets a file's owner remove it), which would split the
/// processes between two inodes, each blind to the other's locks: a live holder
/// would be judged dead. So an identity whose byte lives in an untrusted file is
/// marked [`UNTRUSTED`] and never judged dead by anyone, and a process whose own
/// file is untrusted judges nobody dead: crash recovery then waits for the
/// caller's timeout, but two processes are never let into one critical section.
/// (Root, and the holder's own user, are trusted: they can corrupt the objects
/// anyway.)
fn trusted() -> bool {
    match TRUST.load(Ordering::Relaxed) {
        TRUST_YES => return true,
        TRUST_NO => return false,
        _ => {}
    }
    let Ok(fd) = file() else {
        return false; // not cached: the file may appear later
    };
    let euid = rustix::process::geteuid().as_raw();
    let ours = |uid: u32| uid == 0 || uid == euid;
    let yes = match (rfs::fstat(fd), rfs::stat(DIR)) {
        (Ok(f), Ok(d)) => {
            ours(f.st_uid) && ours(d.st_uid) && (d.st_mode & 0o1000 != 0 || d.st_mode & 0o022 == 0)
        }
        _ => false,
    };
    TRUST.store(if yes { TRUST_YES } else { TRUST_NO }, Ordering::Relaxed);
    yes
}

/// The device of the liveness file's file system: processes that see another
/// cannot tell each other's liveness (0 if it cannot be opened).
pub(crate) fn domain() -> u64 {
    file()
        .and_then(|fd| Ok(rfs::fstat(fd)?.st_dev))
        .unwrap_or(0)
}

fn flock_at(nonce: u64, kind: i32) -> libc::flock {
    // SAFETY: `struct flock` is plain data; all zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = i16::try_from(kind).unwrap_or(0);
    fl.l_whence = i16::try_from(libc::SEEK_SET).unwrap_or(0);
    fl.l_start = i64::try_from(nonce).unwrap_or(0);
    fl.l_len = 1;
    fl
}

/// Read-locks (`hold`) or unlocks byte `nonce` of the liveness file.
fn set(fd: BorrowedFd<'_>, nonce: u64, hold: bool) -> io::Result<()> {
    let kind = if hold { libc::F_RDLCK } else { libc::F_UNLCK };
    let fl = flock_at(nonce, kind);
    // SAFETY: `fd` is open; `fl` is a valid `struct flock` for the call.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether some open file description holds a lock on byte `nonce` (`None`: the
/// kernel did not say).
fn held(fd: BorrowedFd<'_>, nonce: u64) -> Option<bool> {
    let mut fl = flock_at(nonce, libc::F_WRLCK);
    // SAFETY: `fd` is open; `fl` is a valid, writable `struct flock`.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw(), libc::F_OFD_GETLK, &mut fl) };
    (rc == 0).then(|| i32::from(fl.l_type) != libc::F_UNLCK)
}

trait AsRaw {
    fn as_raw(&self) -> i32;
}
impl AsRaw for BorrowedFd<'_> {
    fn as_raw(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(self)
    }
}

// ---------------------------------------------------------------------------------
// identities

/// A tag of this process's PID namespace, 1..=62 (1 where it cannot be read).
/// Tags 0 and 63 are never drawn: an identity with one is garbage (so that the
/// likeliest garbage, all ones, reads as dead even with UNTRUSTED set).
fn my_tag() -> u64 {
    static TAG: OnceLock<u64> = OnceLock::new();
    *TAG.get_or_init(|| {
        let ino = rfs::stat("/proc/self/ns/pid").map_or(0, |st| st.st_ino);
        ino % (TAG_MASK - 1) + 1
    })
}

/// A fresh random nonce (never 0), from std's randomly keyed hasher.
fn nonce() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let n = h.finish() & NONCE_MASK;
        if n != 0 {
            return n;
        }
    }
}

fn encode(id: u64, nonce: u64) -> u64 {
    (id & ID_MASK) << ID_SHIFT | my_tag() << TAG_SHIFT | nonce
}

/// Draws an identity for `id` (a thread or process id) and locks its byte.
fn new_identity(id: u64) -> io::Result<u64> {
    let fd = file()?;
    let n = nonce();
    set(fd, n, true)?;
    let untrusted = if trusted() { 0 } else { UNTRUSTED };
    Ok(encode(id, n) | untrusted)
}

/// Whether the identity `x` is alive. `Dead` only when the kernel says nobody
/// holds its byte in a file that both its holder and we trust (see [`trusted`])
/// and that still has its name.
fn identity_liveness(x: u64) -> Liveness {
    let n = x & NONCE_MASK;
    let tag = x >> TAG_SHIFT & TAG_MASK;
    if n == 0 || x >> 63 != 0 || tag == 0 || tag == TAG_MASK {
        return Liveness::Dead; // garbage: no identity has nonce 0, bit 63, tag 0 or 63
    }
    if x & UNTRUSTED != 0 || !trusted() {
        return Liveness::Alive;
    }
    let Ok(fd) = probe_file() else {
        return Liveness::Alive;
    };
    match held(fd, n) {
        // Still named (not removed by root or our user meanwhile, which would let
        // a newcomer hold its bytes in another file).
        Some(false) if rfs::fstat(fd).is_ok_and(|st| st.st_nlink > 0) => Liveness::Dead,
        _ => Liveness::Alive,
    }
}

/// The id in an identity, if its owner sees the same PID namespace as we do.
fn local_id(x: u64) -> Option<u32> {
    if x >> TAG_SHIFT & TAG_MASK != my_tag() {
        return None;
    }
    u32::try_from(x >> ID_SHIFT & ID_MASK)
        .ok()
        .filter(|&t| t != 0)
}

// ---------------------------------------------------------------------------------
// lock owners (threads)

/// This thread's identity; its byte is unlocked when the thread exits.
struct ThreadIdentity {
    generation: Cell<u64>,
    id: Cell<u64>,
}

impl Drop for ThreadIdentity {
    fn drop(&mut self) {
        let id = self.id.get();
        if id != 0 && fork_generation() == Some(self.generation.get()) {
            if let Ok(fd) = file() {
                let _ = set(fd, id & NONCE_MASK, false);
            }
        }
    }
}

thread_local! {
    static THREAD: ThreadIdentity = const {
        ThreadIdentity { generation: Cell::new(0), id: Cell::new(0) }
    };
}

/// This thread's owner id: drawn (and its byte locked) on first use, and again in
/// a forked child.
pub(super) fn compute_owner() -> io::Result<u64> {
    let generation = fork_generation().unwrap_or(u64::MAX);
    let tid = u64::try_from(rustix::thread::gettid().as_raw_nonzero().get()).unwrap_or(0);
    THREAD
        .try_with(|t| {
            if t.id.get() != 0 && t.generation.get() == generation {
                return Ok(t.id.get());
            }
            let id = new_identity(tid)?;
            t.generation.set(generation);
            t.id.set(id);
            Ok(id)
        })
        .map_err(|_| io::Error::other("thread is exiting"))?
}

/// Whether the thread `id` names still runs (its process lives and it has not
/// exited). `Dead` only when that is certain.
pub(crate) fn owner_liveness(id: u64) -> Liveness {
    identity_liveness(id)
}

/// The thread id in an owner id, if the owner is in our PID namespace (`None` for
/// garbage and for owners in other namespaces, whose ids mean nothing here).
pub(crate) fn owner_thread(id: u64) -> Option<u32> {
    local_id(id)
}

// ---------------------------------------------------------------------------------
// processes (endpoints)

/// This process's endpoint identity, 0 until drawn (and again in a forked child).
static PROCESS: AtomicU64 = AtomicU64::new(0);

/// This process's identity (drawn once per process, its byte locked for life).
pub(crate) fn process_identity() -> u64 {
    let cached = PROCESS.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    match new_identity(u64::from(std::process::id())) {
        // Racing threads draw one each; one is published, the others let go of theirs.
        Ok(id) => match PROCESS.compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => id,
            Err(theirs) => {
                if let Ok(fd) = file() {
                    let _ = set(fd, id & NONCE_MASK, false);
                }
                theirs
            }
        },
        // No liveness file (no writable /dev/shm, or another user made it
        // unreadable): an identity whose byte nobody locks, marked untrusted so
        // that no peer ever judges this live process dead.
        Err(_) => encode(u64::from(std::process::id()), NONCE_MASK) | UNTRUSTED,
    }
}

/// Whether the endpoint identity `tok` is alive.
pub(crate) fn process_liveness(tok: u64) -> Liveness {
    identity_liveness(tok)
}

/// The process id in an endpoint identity, if it is in our PID namespace.
pub(crate) fn process_id(tok: u64) -> Option<u32> {
    local_id(tok)
}

/// This thread's kernel thread id (for tests that check what `inspect` shows).
#[cfg(test)]
pub(crate) fn current_tid() -> u32 {
    u32::try_from(rustix::thread::gettid().as_raw_nonzero().get()).unwrap()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn identities_are_alive_while_held() {
        let me = compute_owner().unwrap();
        assert_eq!(compute_owner().unwrap(), me);
        assert_eq!(owner_liveness(me), Liveness::Alive);
        assert_eq!(
            owner_thread(me),
            u32::try_from(rustix::thread::gettid().as_raw_nonzero().get()).ok()
        );
        assert_eq!(me & UNTRUSTED == 0, trusted());
        // Another nonce: nobody holds it (judged only in a trusted file).
        let expect = if trusted() {
            Liveness::Dead
        } else {
            Liveness::Alive
        };
        assert_eq!(owner_liveness(me ^ 1), expect);
        assert_eq!(owner_liveness((me ^ 1) | UNTRUSTED), Liveness::Alive);
        // Tags 0 and 63 are never drawn: garbage, dead even when UNTRUSTED.
        assert_eq!(owner_liveness(me | TAG_MASK << TAG_SHIFT), Liveness::Dead);
        assert_eq!(
            owner_liveness(me & !(TAG_MASK << TAG_SHIFT) | UNTRUSTED),
            Liveness::Dead
        );
        assert!(PATH.ends_with(FILE_NAME) && PATH.starts_with(DIR));
        assert_eq!(owner_liveness(0), Liveness::Dead);
        assert_eq!(owner_liveness(u64::MAX), Liveness::Dead);
        // A thread that exited has unlocked its byte.
        let other = std::thread::spawn(|| compute_owner().unwrap())
            .join()
            .unwrap();
        assert_ne!(other, me);
        assert_eq!(owner_liveness(other), expect);
        // Another namespace's tag: its id is not shown.
        let foreign = me ^ (1 << TAG_SHIFT);
        assert_eq!(owner_thread(foreign), None);
        assert_ne!(domain(), 0);
    }
}
