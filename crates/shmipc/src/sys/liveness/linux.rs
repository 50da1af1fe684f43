//! Linux: liveness through the kernel, not pids, on **the object's own file**. A
//! holder (a lock owner thread, a channel endpoint's process) proves that it lives
//! by an open-file-description read lock (`F_OFD_SETLK`) on one byte of the very
//! shared-memory object it uses, taken through a description of that object that
//! only its process has (an [`Anchor`]: a fresh `open` of `/proc/self/fd/N`, not
//! a `dup`). The kernel drops the lock when that description closes: when the
//! process dies however it dies (SIGKILL included), in any PID namespace; a
//! thread's byte is also unlocked by its thread-local destructor when it exits.
//! "Is X alive?" is `F_OFD_GETLK` on X's byte through the asker's own descriptor of
//! the object: unlocked means dead, **certainly**: no pid is compared, so neither
//! pid reuse nor a container's separate PID namespace can fool it.
//!
//! An identity is 63 bits:
//!
//! ```text
//! bits 62..41  thread id (owners) or process id (endpoints), as its owner sees it
//! bits 40..35  a tag of the owner's PID namespace (1..=62), to tell a foreign id
//! bit  34      UNTRUSTED: its holder could not lock its byte (below)
//! bits 33..0   a random nonce (never 0): its byte is at LOCK_BASE + nonce
//! ```
//!
//! Only the nonce (and UNTRUSTED) decide liveness; the id and the tag are for
//! people (`shmipc info` shows a thread id only when the tag is ours). The
//! identities of one process never share a nonce (a random start plus a distinct
//! step per draw: they hold their bytes on the same descriptions, where one's
//! unlock would release the other's). Two live identities of different processes
//! with the same nonce (a 1 in 2^34 draw) only make a dead one look alive while
//! the other lives: a waiter then waits, two are never let in. The
//! bytes lie at `LOCK_BASE` = 2^62, far past any object's data, so that they
//! never meet the byte-range locks a user takes on a file-backed segment's data.
//!
//! # Who can fake what (hostile users, issue 11)
//!
//! Taking or testing a lock on an object's byte needs a descriptor of that
//! object, i.e. the right to open it (its mode, or root, or a descriptor handed
//! over by somebody who could):
//!
//! * **A user who cannot open the object can do nothing to its liveness**: it can
//!   neither lock a byte to make a dead holder look alive, nor unlock one (a lock
//!   belongs to its open file description; nobody else can release it) to make a
//!   live holder look dead. Replacing the object's name changes nothing either:
//!   holders and askers lock and ask on the inode they already hold open.
//!   Before this design, every process kept its bytes in one world-readable file,
//!   `/dev/shm/.shmipc-liveness`, where any local user could read-lock every byte
//!   and so hide every dead owner and endpoint of every user
//!   (`tests/hostile_users.rs` (a)); that file is no longer used (its name stays
//!   reserved and unlisted, for processes of older builds).
//! * **A participant** (a user allowed to open the object, at least for reading)
//!   can read-lock a dead holder's byte and make it look alive for as long as it
//!   likes: a denial of crash recovery, never two in a critical section. It could
//!   as well take the lock and never release it, or leave a live token in a place:
//!   the trust model (DESIGN.md "Soundness and trust") already lets participants
//!   stall each other. A participant with write access can also write-lock a
//!   free byte so that a newcomer drawing that nonce cannot lock it: the newcomer
//!   then fails to lock (an owner gets an error) or is marked UNTRUSTED (an
//!   endpoint, which nobody then judges dead), never judged dead while it lives.
//!   Nobody but root can unlock another description's lock, so **no user can
//!   make a live holder look dead**.
//!
//! A holder that cannot lock its byte (no `/proc` to re-open the object through,
//! no descriptors left, a participant's write lock on it) gets no identity as an
//! owner (the lock attempt fails with the OS error), and as an endpoint an
//! identity marked UNTRUSTED, which nobody ever judges dead.
//!
//! # Descriptors and their lifetime
//!
//! Each open object handle (a `Segment` and its views, which every mutex and
//! channel endpoint sits on) has one [`Anchor`]: a lazily opened description of
//! its object, closed with the handle. The process's endpoint byte is locked on it
//! once (before the identity is first written into the object), a thread's owner
//! byte once per thread (before it first tries to take a lock there; the thread
//! records it and unlocks it when it exits). A lock guard borrows its handle, so
//! the handle, its anchor and the owner's byte outlive the guard (a guard leaked
//! with `mem::forget` whose handle is then dropped makes its owner look dead, as
//! a thread that exits holding a lock does).
//!
//! Fork: OFD locks belong to the description, which a forked child shares, so a
//! child that kept the parent's anchors would keep its locks alive after the
//! parent died. Every anchor's descriptor is registered in a process-wide table
//! that a `pthread_atfork` child handler closes (async-signal-safe: atomics and
//! `close(2)`); the handler also bumps a generation, so that identities cached
//! before the fork are drawn anew, and the child opens fresh anchors on first
//! use. A descriptor is opened and entered in the table under a small spin lock
//! that the prepare handler also takes, so that no fork copies one the table does
//! not list yet. (`posix_spawn`, which runs no fork handlers, execs at once, and
//! anchors are close-on-exec.)
//!
//! # Safety
//!
//! `pthread_atfork`, whose child handler only does atomic operations and
//! `close(2)`;
//! `close(2)` of descriptors this module owns; and `fcntl(F_OFD_SETLK/F_OFD_GETLK)`
//! with a `struct flock` on the stack.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use rustix::fs::{self as rfs, Mode, OFlags};

use super::Liveness;

/// Lock owners can be named and checked here.
pub(crate) const SUPPORTED: bool = true;

const ID_SHIFT: u32 = 41;
const ID_MASK: u64 = (1 << 22) - 1;
const TAG_SHIFT: u32 = 35;
const TAG_MASK: u64 = (1 << 6) - 1;
/// Set in an identity whose holder could not lock its byte: nobody may ever call
/// such an identity dead.
const UNTRUSTED: u64 = 1 << 34;
const NONCE_MASK: u64 = UNTRUSTED - 1;
/// Where the liveness bytes start in an object (far past any data).
const LOCK_BASE: u64 = 1 << 62;

// ---------------------------------------------------------------------------------
// fork detection

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK_REGISTERED: OnceLock<bool> = OnceLock::new();

extern "C" fn in_forked_child() {
    // Async-signal-safe: atomics and close(2), in the child right after fork.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    PROCESS.store(0, Ordering::Relaxed);
    NONCE_BASE.store(0, Ordering::Relaxed);
    OPENING.store(false, Ordering::Release);
    let mut chunk: *const Chunk = &FIRST;
    while !chunk.is_null() {
        // SAFETY: chunks are never freed (`FIRST` is static, the others leaked).
        let c = unsafe { &*chunk };
        for slot in &c.slots {
            slot.process.store(0, Ordering::Relaxed);
            let state = slot.state.swap(0, Ordering::Relaxed);
            if state != 0 {
                // SAFETY: the descriptor in a slot is an anchor's, owned by this
                // table (only it closes it); closing it releases the child's share
                // of the parent's locks. The anchor reopens on its next use.
                unsafe { libc::close(fd_of(state)) };
            }
        }
        chunk = c.next.load(Ordering::Relaxed);
    }
}

/// Nothing to compare: liveness is asked of the object itself, which every opener
/// sees the same (any PID namespace, any mount of it).
pub(crate) fn namespaces() -> [u64; 2] {
    [0, 0]
}

/// A number that changes in every forked child (`None` if the `pthread_atfork`
/// handler could not be registered: then nothing may be cached across a fork).
pub(crate) fn fork_generation() -> Option<u64> {
    let registered = *ATFORK_REGISTERED.get_or_init(|| {
        // SAFETY: `pthread_atfork` takes three optional `extern "C" fn()` handlers;
        // ours live for the whole program; the child's is async-signal-safe.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(in_forked_child),
            ) == 0
        }
    });
    registered.then(|| FORK_GENERATION.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------
// anchors: the descriptions that hold this process's bytes, one per object handle

/// One anchor's descriptor, in a process-wide table the fork handler can walk.
struct Slot {
    /// Taken by an anchor.
    used: AtomicBool,
    /// `epoch << 32 | fd`, 0 while not open. The epoch (never 0) is drawn anew at
    /// every open, so that what was locked through an earlier descriptor of this
    /// slot is never mistaken for what is locked through this one.
    state: AtomicU64,
    /// The epoch whose descriptor holds the process's endpoint byte (0: none).
    process: AtomicU32,
}

const CHUNK: usize = 64;

struct Chunk {
    slots: [Slot; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Self {
        Self {
            slots: [const {
                Slot {
                    used: AtomicBool::new(false),
                    state: AtomicU64::new(0),
                    process: AtomicU32::new(0),
                }
            }; CHUNK],
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

static FIRST: Chunk = Chunk::new();
static EPOCH: AtomicU32 = AtomicU32::new(0);

fn fd_of(state: u64) -> i32 {
    // The low 32 bits are the descriptor, as stored.
    (state & 0xffff_ffff) as u32 as i32
}

fn epoch_of(state: u64) -> u32 {
    (state >> 32) as u32
}

/// Takes a free slot (allocating a chunk if all are taken).
fn claim_slot() -> &'static Slot {
    let mut chunk: &'static Chunk = &FIRST;
    loop {
        for s in &chunk.slots {
            if !s.used.load(Ordering::Relaxed)
                && s.used
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return s;
            }
        }
        let mut next = chunk.next.load(Ordering::Acquire);
        if next.is_null() {
            let new = Box::into_raw(Box::new(Chunk::new()));
            next = match chunk.next.compare_exchange(
                std::ptr::null_mut(),
                new,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => new,
                Err(theirs) => {
                    // SAFETY: `new` is ours, never published.
                    drop(unsafe { Box::from_raw(new) });
                    theirs
                }
            };
        }
        // SAFETY: published chunks are never freed.
        chunk = unsafe { &*next };
    }
}

/// Closes the slot's descriptor (its locks go with it) and frees the slot.
fn release_slot(s: &Slot) {
    s.process.store(0, Ordering::Relaxed);
    let state = s.state.swap(0, Ordering::AcqRel);
    if state != 0 {
        // SAFETY: the descriptor was this slot's (only the table closes it), and
        // the swap took it out, so nobody else closes it.
        unsafe { libc::close(fd_of(state)) };
    }
    s.used.store(false, Ordering::Release);
}

/// A slot, from the address [`key`] made of it.
fn slot_at(addr: usize) -> &'static Slot {
    // SAFETY: `addr` came from `key` of a `&'static Slot` (slots live in chunks
    // that are never freed).
    unsafe { &*(addr as *const Slot) }
}

/// A slot's address, to name it in a thread's records.
fn key(s: &'static Slot) -> usize {
    std::ptr::from_ref(s) as usize
}

/// Held by a thread between opening a new anchor descriptor and publishing it in
/// the table, and by a forking thread (the `pthread_atfork` prepare handler)
/// until the fork is done: so that no child is ever forked holding an anchor
/// descriptor that its fork handler cannot find and close.
static OPENING: AtomicBool = AtomicBool::new(false);

fn lock_opening() {
    while OPENING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

extern "C" fn before_fork() {
    lock_opening();
}

extern "C" fn after_fork_in_parent() {
    OPENING.store(false, Ordering::Release);
}

/// The description through which this process holds its liveness bytes on one
/// object handle's object (see the module docs). Opened on first use, closed
/// with the handle.
#[derive(Debug, Default)]
pub(crate) struct Anchor {
    /// Its slot, null until claimed.
    slot: AtomicPtr<Slot>,
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let s = *self.slot.get_mut();
        if !s.is_null() {
            // SAFETY: slots live in chunks that are never freed.
            release_slot(unsafe { &*s });
        }
    }
}

/// An anchor's open descriptor: where to lock, and which epoch it is.
#[derive(Clone, Copy)]
struct Open {
    slot: &'static Slot,
    fd: BorrowedFd<'static>,
    epoch: u32,
}

impl Anchor {
    /// An anchor whose descriptor is opened on first use.
    pub(crate) const fn new() -> Self {
        Self {
            slot: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Its descriptor, opening a fresh description of `object` if none is open
    /// (first use, or after a fork).
    fn open(&self, object: BorrowedFd<'_>) -> io::Result<Open> {
        // Registers the fork handler before any anchor descriptor exists.
        if fork_generation().is_none() {
            return Err(io::Error::other(
                "cannot register a fork handler (pthread_atfork): liveness would be wrong in forked children",
            ));
        }
        let mut p = self.slot.load(Ordering::Acquire);
        if p.is_null() {
            let mine = std::ptr::from_ref(claim_slot()).cast_mut();
            p = match self.slot.compare_exchange(
                std::ptr::null_mut(),
                mine,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => mine,
                Err(theirs) => {
                    // SAFETY: slots live in chunks that are never freed.
                    release_slot(unsafe { &*mine });
                    theirs
                }
            };
        }
        // SAFETY: slots live in chunks that are never freed.
        let s: &'static Slot = unsafe { &*p };
        let mut state = s.state.load(Ordering::Acquire);
        if state == 0 {
            // No fork may copy the new descriptor before it is in the table.
            lock_opening();
            let opened = reopen(object);
            let published = opened.map(|new| {
                let new = new.into_raw_fd();
                let epoch = loop {
                    let e = EPOCH.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                    if e != 0 {
                        break e;
                    }
                };
                let mine = u64::from(epoch) << 32 | u64::from(new as u32);
                match s
                    .state
                    .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => mine,
                    Err(theirs) => {
                        // Another thread opened it first: keep theirs.
                        // SAFETY: `new` is ours, never published.
                        unsafe { libc::close(new) };
                        theirs
                    }
                }
            });
            OPENING.store(false, Ordering::Release);
            state = published?;
        }
        Ok(Open {
            slot: s,
            // SAFETY: the descriptor stays open until the anchor is dropped (which
            // needs `&mut`, so not while `&self` is borrowed for this call's
            // caller) or the fork handler closes it in a child (where no borrow
            // of this thread survives). Callers use it only within the borrow of
            // the anchor (see `Scope`).
            fd: unsafe { BorrowedFd::borrow_raw(fd_of(state)) },
            epoch: epoch_of(state),
        })
    }
}

/// A new open file description of the object `fd` is open on (the same inode,
/// whatever its name now names), read-only, close-on-exec.
fn reopen(fd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let new = rfs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    // `fd` is open (borrowed) throughout, so its /proc link names its file.
    Ok(new)
}

/// What liveness is asked and proven on: one object, through this process's
/// handle of it (`fd`, where it asks; never holding a liveness lock itself) and
/// that handle's [`Anchor`] (where it holds its own bytes).
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    fd: BorrowedFd<'a>,
    anchor: &'a Anchor,
}

impl<'a> Scope<'a> {
    /// The scope of an open segment and the anchor kept with it.
    pub(crate) fn of(handle: &'a crate::sys::Handle, anchor: &'a Anchor) -> Self {
        Self {
            fd: handle.fd(),
            anchor,
        }
    }

    /// A scope for asking only, through any descriptor of the object (an anchor
    /// is opened only if something is held through the scope).
    pub(crate) fn asking(fd: BorrowedFd<'a>, anchor: &'a Anchor) -> Self {
        Self { fd, anchor }
    }
}

fn flock_at(nonce: u64, kind: i32) -> libc::flock {
    // SAFETY: `struct flock` is plain data; all zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = i16::try_from(kind).unwrap_or(0);
    fl.l_whence = i16::try_from(libc::SEEK_SET).unwrap_or(0);
    fl.l_start = i64::try_from(LOCK_BASE + (nonce & NONCE_MASK)).unwrap_or(0);
    fl.l_len = 1;
    fl
}

/// Read-locks (`hold`) or unlocks byte `nonce` through `fd`.
fn set(fd: BorrowedFd<'_>, nonce: u64, hold: bool) -> io::Result<()> {
    let kind = if hold { libc::F_RDLCK } else { libc::F_UNLCK };
    let fl = flock_at(nonce, kind);
    // SAFETY: `fd` is open; `fl` is a valid `struct flock` for the call.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether some other open file description holds a lock on byte `nonce` (`None`:
/// the kernel did not say).
fn held(fd: BorrowedFd<'_>, nonce: u64) -> Option<bool> {
    let mut fl = flock_at(nonce, libc::F_WRLCK);
    // SAFETY: `fd` is open; `fl` is a valid, writable `struct flock`.
    let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    (rc == 0).then(|| i32::from(fl.l_type) != libc::F_UNLCK)
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

/// This process's random start for its nonces (with bit 63 set; 0 until drawn,
/// and again in a forked child).
static NONCE_BASE: AtomicU64 = AtomicU64::new(0);
/// How many nonces this process has drawn.
static NONCE_COUNT: AtomicU64 = AtomicU64::new(0);
/// An odd step: `k * STEP` modulo 2^34 is a bijection, so the first 2^34 draws of
/// a process are all different.
const NONCE_STEP: u64 = 0x2_9E37_79B9 | 1;

/// A fresh nonce (never 0): a random start per process plus a distinct step per
/// draw, so that no two identities of one process (which hold their bytes on the
/// same descriptions: a thread's exit unlocks its byte) ever share a nonce, and
/// those of different processes differ at random.
fn nonce() -> u64 {
    let mut base = NONCE_BASE.load(Ordering::Acquire);
    if base == 0 {
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let mine = h.finish() | 1 << 63;
        base = match NONCE_BASE.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => mine,
            Err(theirs) => theirs,
        };
    }
    loop {
        let k = NONCE_COUNT.fetch_add(1, Ordering::Relaxed);
        let n = base.wrapping_add(k.wrapping_mul(NONCE_STEP)) & NONCE_MASK;
        if n != 0 {
            return n;
        }
    }
}

fn encode(id: u64, nonce: u64) -> u64 {
    (id & ID_MASK) << ID_SHIFT | my_tag() << TAG_SHIFT | nonce
}

/// Whether the identity `x` is alive on the object of `scope`. `Dead` only when
/// the kernel says no description of the object holds its byte.
fn identity_liveness(scope: Scope<'_>, x: u64) -> Liveness {
    let n = x & NONCE_MASK;
    let tag = x >> TAG_SHIFT & TAG_MASK;
    if n == 0 || x >> 63 != 0 || tag == 0 || tag == TAG_MASK {
        return Liveness::Dead; // garbage: no identity has nonce 0, bit 63, tag 0 or 63
    }
    if x & UNTRUSTED != 0 {
        return Liveness::Alive;
    }
    match held(scope.fd, n) {
        Some(false) => Liveness::Dead,
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

/// This thread's identity, and the anchors it holds its byte on; the bytes are
/// unlocked when the thread exits.
struct ThreadIdentity {
    generation: Cell<u64>,
    id: Cell<u64>,
    /// The last anchor (slot address, epoch) its byte was locked on: the fast path.
    last: Cell<(usize, u32)>,
    /// Every (slot address, epoch) its byte is locked on.
    held: RefCell<Vec<(usize, u32)>>,
}

impl ThreadIdentity {
    /// Unlocks this thread's byte wherever it is still locked (entries whose slot
    /// has been reopened or released since are skipped: their locks are gone).
    fn let_go(&self) {
        let id = self.id.get();
        let Ok(mut held) = self.held.try_borrow_mut() else {
            return;
        };
        if id != 0 && fork_generation() == Some(self.generation.get()) {
            for &(i, epoch) in held.iter() {
                let state = slot_at(i).state.load(Ordering::Acquire);
                if state != 0 && epoch_of(state) == epoch {
                    // SAFETY: the descriptor is open unless its
                    // anchor is being dropped on another thread right now; then
                    // the number may name another file, where unlocking this
                    // exiting thread's own byte range is harmless.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd_of(state)) };
                    let _ = set(fd, id, false);
                }
            }
        }
        held.clear();
        self.last.set((usize::MAX, 0));
    }
}

impl Drop for ThreadIdentity {
    fn drop(&mut self) {
        self.let_go();
    }
}

thread_local! {
    static THREAD: ThreadIdentity = const {
        ThreadIdentity {
            generation: Cell::new(0),
            id: Cell::new(0),
            last: Cell::new((usize::MAX, 0)),
            held: RefCell::new(Vec::new()),
        }
    };
}

/// This thread's owner id: drawn on first use, and again in a forked child. Its
/// byte is locked object by object ([`hold_owner`]).
pub(super) fn compute_owner() -> io::Result<u64> {
    let generation = fork_generation().unwrap_or(u64::MAX);
    let tid = u64::try_from(rustix::thread::gettid().as_raw_nonzero().get()).unwrap_or(0);
    THREAD
        .try_with(|t| {
            if t.id.get() != 0 && t.generation.get() == generation {
                return Ok(t.id.get());
            }
            // A forked child: the parent's bytes are not ours to unlock (the
            // fork handler closed their descriptors); start afresh.
            t.held.borrow_mut().clear();
            t.last.set((usize::MAX, 0));
            let id = encode(tid, nonce());
            t.generation.set(generation);
            t.id.set(id);
            Ok(id)
        })
        .map_err(|_| io::Error::other("thread is exiting"))?
}

/// This thread's owner id, its byte locked on the object of `scope` first (so
/// that it can be named in the object's lock words).
#[inline]
pub(crate) fn current_owner(scope: Scope<'_>) -> io::Result<u64> {
    // Fast path (every lock): the anchor is open and this thread's byte was last
    // locked through this very descriptor (an epoch is never reused; in a forked
    // child the handler emptied every slot, so none matches, and the thread's id
    // is drawn anew on the slow path).
    let p = scope.anchor.slot.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: slots live in chunks that are never freed.
        let state = unsafe { &*p }.state.load(Ordering::Acquire);
        if state != 0 {
            let key = (p as usize, epoch_of(state));
            if let Ok(Some(id)) = THREAD.try_with(|t| (t.last.get() == key).then(|| t.id.get())) {
                return Ok(id);
            }
        }
    }
    hold_owner(scope, compute_owner()?)
}

/// Makes sure this thread's byte (`id`, from [`compute_owner`]) is locked on the
/// object of `scope`, before the thread names itself in any of its lock words.
pub(crate) fn hold_owner(scope: Scope<'_>, id: u64) -> io::Result<u64> {
    let open = scope.anchor.open(scope.fd)?;
    let key = (key(open.slot), open.epoch);
    THREAD
        .try_with(|t| {
            if t.last.get() == key {
                return Ok(id);
            }
            let mut held = t.held.borrow_mut();
            if !held.contains(&key) {
                set(open.fd, id, true).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot lock this thread's liveness byte on the object: {e}"),
                    )
                })?;
                // Forget anchors closed or reopened since.
                held.retain(|&(i, epoch)| {
                    epoch_of(slot_at(i).state.load(Ordering::Relaxed)) == epoch
                });
                held.push(key);
            }
            t.last.set(key);
            Ok(id)
        })
        .map_err(|_| io::Error::other("thread is exiting"))?
}

/// Whether the thread `id` names still runs (its process lives and it has not
/// exited), asked on the object of `scope`. `Dead` only when that is certain.
pub(crate) fn owner_liveness(scope: Scope<'_>, id: u64) -> Liveness {
    identity_liveness(scope, id)
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

/// This process's identity (drawn once per process, and again in a forked child).
pub(crate) fn process_identity() -> u64 {
    let cached = PROCESS.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    let id = encode(u64::from(std::process::id()), nonce());
    match PROCESS.compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => id,
        Err(theirs) => theirs,
    }
}

/// This process's endpoint identity on the object of `scope`, its byte locked
/// there first; marked UNTRUSTED (never judged dead) where it cannot be locked.
pub(crate) fn hold_process(scope: Scope<'_>, tok: u64) -> u64 {
    let Ok(open) = scope.anchor.open(scope.fd) else {
        return tok | UNTRUSTED;
    };
    let s = open.slot;
    if s.process.load(Ordering::Acquire) == open.epoch {
        return tok;
    }
    if set(open.fd, tok, true).is_err() {
        return tok | UNTRUSTED;
    }
    s.process.store(open.epoch, Ordering::Release);
    tok
}

/// Whether endpoint identity `tok` is this process's (locked or UNTRUSTED).
pub(crate) fn is_process(tok: u64, me: u64) -> bool {
    tok & !UNTRUSTED == me
}

/// Whether the endpoint identity `tok` is alive, asked on the object of `scope`.
pub(crate) fn process_liveness(scope: Scope<'_>, tok: u64) -> Liveness {
    identity_liveness(scope, tok)
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
pub(super) mod tests {
    use super::*;
    use crate::Segment;

    /// Forks a child that sleeps until killed (it inherits this process's
    /// anchors, which the fork handler must close); returns its pid once the
    /// child has run that handler (it says so through a pipe: until then it still
    /// shares our anchors' descriptions, and with them our locks).
    pub(in crate::sys::liveness) fn fork_sleeper() -> u32 {
        // Registers the handler (it is, once any anchor is open).
        assert!(fork_generation().is_some());
        let mut ends = [0 as libc::c_int; 2];
        // SAFETY: `ends` has room for the two descriptors `pipe` writes.
        assert_eq!(unsafe { libc::pipe(ends.as_mut_ptr()) }, 0, "pipe");
        let [read_end, write_end] = ends;
        // SAFETY: the child only calls `write`, `close`, `alarm` and `pause` (all
        // async-signal-safe) after the fork handler (atomics and `close`) ran.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: our own pipe's write end, one byte from the stack; closing
            // our copies of stdout and stderr (so that a sleeper a failed test
            // never killed holds no harness pipe open) and an alarm that ends it
            // within two minutes whatever happens.
            unsafe {
                libc::write(write_end, [1u8].as_ptr().cast(), 1);
                libc::close(write_end);
                libc::close(1);
                libc::close(2);
                libc::alarm(120);
            }
            loop {
                // SAFETY: no preconditions.
                unsafe { libc::pause() };
            }
        }
        let mut byte = [0u8];
        // SAFETY: our own pipe's ends; one byte into the stack buffer. The read
        // blocks until the child has written (its handler ran) or died.
        unsafe {
            libc::close(write_end);
            libc::read(read_end, byte.as_mut_ptr().cast(), 1);
            libc::close(read_end);
        }
        u32::try_from(pid).unwrap()
    }

    /// SIGKILLs `pid` (a grandchild: not ours to reap) and waits until it has
    /// exited (its descriptors closed: gone, or a zombie).
    pub(in crate::sys::liveness) fn kill(pid: u32) {
        let p = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let exited = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
                st.rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('Z'))
            });
            if exited {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survives SIGKILL"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_process_never_draws_a_nonce_twice() {
        let drawn: std::collections::HashSet<u64> = (0..100_000).map(|_| nonce()).collect();
        assert_eq!(drawn.len(), 100_000);
        assert!(drawn.iter().all(|&n| n != 0 && n & !NONCE_MASK == 0));
    }

    #[test]
    fn identities_are_alive_while_held() {
        let name = format!("shmipc-liveness-linux-{}", std::process::id());
        let seg = Segment::create(&name, 4096).unwrap();
        let scope = Scope::of(&seg.inner.handle, &seg.inner.anchor);
        let me = hold_owner(scope, compute_owner().unwrap()).unwrap();
        assert_eq!(compute_owner().unwrap(), me);
        assert_eq!(owner_liveness(scope, me), Liveness::Alive);
        assert_eq!(
            owner_thread(me),
            u32::try_from(rustix::thread::gettid().as_raw_nonzero().get()).ok()
        );
        assert_eq!(me & UNTRUSTED, 0);
        // Another nonce: nobody holds it.
        assert_eq!(owner_liveness(scope, me ^ 1), Liveness::Dead);
        assert_eq!(owner_liveness(scope, (me ^ 1) | UNTRUSTED), Liveness::Alive);
        // Tags 0 and 63 are never drawn: garbage, dead even when UNTRUSTED.
        assert_eq!(
            owner_liveness(scope, me | TAG_MASK << TAG_SHIFT),
            Liveness::Dead
        );
        assert_eq!(
            owner_liveness(scope, me & !(TAG_MASK << TAG_SHIFT) | UNTRUSTED),
            Liveness::Dead
        );
        assert_eq!(owner_liveness(scope, 0), Liveness::Dead);
        assert_eq!(owner_liveness(scope, u64::MAX), Liveness::Dead);
        // The byte is held on this object only: another object knows nothing.
        let other = Segment::create(&format!("{name}-2"), 4096).unwrap();
        let elsewhere = Scope::of(&other.inner.handle, &other.inner.anchor);
        assert_eq!(owner_liveness(elsewhere, me), Liveness::Dead);
        // Endpoint identities likewise.
        let tok = hold_process(scope, process_identity());
        assert!(is_process(tok, process_identity()));
        assert_eq!(process_liveness(scope, tok), Liveness::Alive);
        assert_eq!(process_liveness(elsewhere, tok), Liveness::Dead);
        // Dropping the handle (and its anchor) lets go of both bytes.
        let again = Segment::open(&name, crate::Access::Read).unwrap();
        let probe = Scope::of(&again.inner.handle, &again.inner.anchor);
        drop(seg);
        assert_eq!(owner_liveness(probe, me), Liveness::Dead);
        assert_eq!(process_liveness(probe, tok), Liveness::Dead);
        // Another namespace's tag: its id is not shown.
        let foreign = me ^ (1 << TAG_SHIFT);
        assert_eq!(owner_thread(foreign), None);
    }
}
