//! `mmap`-based views, shared by the Linux and macOS backends, and the registry
//! of mapped ranges that the optional `SIGBUS` handler reads.
//!
//! # SIGBUS
//!
//! Touching a page of a mapping that the object no longer has (another program
//! truncated it) or that the store cannot allocate (a sparse segment on a full
//! tmpfs) raises `SIGBUS`, whose default action kills the process. shmipc cannot
//! prevent a third party from truncating, so it offers a handler
//! ([`install_sigbus_handler`]) that finds which registered mapping the fault
//! address is in, writes one line naming the segment to stderr, and exits with
//! status 1; a fault outside every registered mapping is left to the handler that
//! was there before (or the default action). The registry is a fixed table of
//! atomics, so the handler reads it without locks or allocation.
//!
//! # Safety
//!
//! This module holds the `mmap`, `munmap`, `msync` and `sigaction` calls; each
//! says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rustix::mm::{self, MapFlags, MsyncFlags, ProtFlags};

use crate::vocab::Access;

fn io_err(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// The alignment a mapping's file offset needs.
pub(crate) fn granularity() -> usize {
    rustix::param::page_size()
}

/// One `mmap`ed range; unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Its slot in the registry, or `NO_SLOT`.
    slot: AtomicUsize,
}

impl Mapping {
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Records the range under the segment's `name`, for the `SIGBUS` handler.
    /// Silently skipped when the table is full (the handler then names no segment).
    pub(crate) fn label(&self, name: &str) {
        if self.slot.load(Ordering::Relaxed) != NO_SLOT {
            return;
        }
        if let Some(i) = register(self.ptr.as_ptr() as usize, self.len, name) {
            self.slot.store(i, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------
// the registry of mapped ranges

const SLOTS: usize = 256;
const NAME_CAP: usize = 256;
const NO_SLOT: usize = usize::MAX;
const FREE: usize = 0;
const WRITING: usize = 1;
const READY: usize = 2;

struct Slot {
    state: AtomicUsize,
    start: AtomicUsize,
    len: AtomicUsize,
    name_len: AtomicUsize,
    name: [AtomicU8; NAME_CAP],
}

#[allow(clippy::declare_interior_mutable_const)] // a template for the array below
const EMPTY_SLOT: Slot = Slot {
    state: AtomicUsize::new(FREE),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    name_len: AtomicUsize::new(0),
    name: [const { AtomicU8::new(0) }; NAME_CAP],
};

static REGISTRY: [Slot; SLOTS] = [EMPTY_SLOT; SLOTS];

fn register(start: usize, len: usize, name: &str) -> Option<usize> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        if slot
            .state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        let bytes = &name.as_bytes()[..name.len().min(NAME_CAP)];
        for (cell, &b) in slot.name.iter().zip(bytes) {
            cell.store(b, Ordering::Relaxed);
        }
        slot.name_len.store(bytes.len(), Ordering::Relaxed);
        slot.start.store(start, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        // Release pairs with the handler's Acquire load of `state`.
        slot.state.store(READY, Ordering::Release);
        return Some(i);
    }
    None
}

fn unregister(i: usize) {
    if let Some(slot) = REGISTRY.get(i) {
        slot.state.store(FREE, Ordering::Release);
    }
}

/// The slot whose range holds `addr`, if any (async-signal-safe: atomics only).
fn find(addr: usize) -> Option<&'static Slot> {
    REGISTRY.iter().find(|slot| {
        slot.state.load(Ordering::Acquire) == READY && {
            let start = slot.start.load(Ordering::Relaxed);
            addr >= start && addr - start < slot.len.load(Ordering::Relaxed)
        }
    })
}

/// The action that was installed before ours, for faults outside our mappings.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Installs the process-wide `SIGBUS` handler described in the module doc (once;
/// later calls do nothing).
pub(crate) fn install_sigbus_handler() -> io::Result<()> {
    let mut result = Ok(());
    PREVIOUS.get_or_init(|| {
        // SAFETY: `sigaction` with a zeroed struct is a valid "no flags, empty
        // mask" action; we fill in an `extern "C"` handler with the SA_SIGINFO
        // signature, which only does async-signal-safe work (atomic loads,
        // `write`, `_exit`, `sigaction`). `old` receives the previous action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut old) != 0 {
                result = Err(io::Error::last_os_error());
            }
            old
        }
    });
    result
}

/// Writes `bytes` to stderr, ignoring failures (async-signal-safe).
fn raw_write(bytes: &[u8]) {
    // SAFETY: `write` on fd 2 with a valid pointer and length.
    let _ = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

/// Formats `v` in decimal into `buf` and returns the digits (no allocation).
fn decimal(mut v: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Only a fault the kernel raised (si_code > 0) has a fault address; a SIGBUS
    // sent with kill/sigqueue (si_code <= 0) carries a pid and uid there instead.
    let slot = if code > 0 { find(addr) } else { None };
    if let Some(slot) = slot {
        let mut name = [0u8; NAME_CAP];
        let len = slot.name_len.load(Ordering::Relaxed).min(NAME_CAP);
        for (b, cell) in name.iter_mut().zip(&slot.name).take(len) {
            *b = cell.load(Ordering::Relaxed);
        }
        let offset = addr - slot.start.load(Ordering::Relaxed);
        let mut digits = [0u8; 20];
        raw_write(b"shmipc: segment `");
        raw_write(&name[..len]);
        raw_write(b"`: SIGBUS at byte ");
        raw_write(decimal(offset, &mut digits));
        raw_write(b" of a mapping of it: the memory is not there any more (another program truncated the segment while it was mapped, or /dev/shm is full and the page could not be allocated); check who resizes it, or free space in /dev/shm\n");
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(1) };
    }
    // Not ours: hand it to what was there before, or die as the default would.
    match PREVIOUS.get() {
        Some(prev)
            if prev.sa_flags & libc::SA_SIGINFO != 0
                && prev.sa_sigaction != libc::SIG_DFL
                && prev.sa_sigaction != libc::SIG_IGN =>
        {
            // SAFETY: an SA_SIGINFO action's `sa_sigaction` is a handler of this
            // signature, installed by this process.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(prev.sa_sigaction) };
            f(sig, info, ctx);
        }
        Some(prev) if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN => {
            // SAFETY: as above, for a plain handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(prev.sa_sigaction) };
            f(sig);
        }
        _ => {
            // SAFETY: restoring the default action; returning re-runs the faulting
            // access, which now kills the process with SIGBUS as before.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigemptyset(&mut dfl.sa_mask);
                libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
            }
        }
    }
}

// SAFETY: a `Mapping` is an address range owned by this value; nothing about it is
// tied to the thread that created it.
unsafe impl Send for Mapping {}
// SAFETY: `Mapping` has no interior state; shared access goes through raw pointers
// whose users follow the rules of `View`.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        let slot = self.slot.load(Ordering::Relaxed);
        if slot != NO_SLOT {
            unregister(slot);
        }
        // SAFETY: `ptr..ptr+len` is exactly the range `mmap` returned in `map`, and it
        // is unmapped only here, once. `View` guarantees no reference into it outlives
        // the `Mapping`.
        let _ = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Maps `len` bytes of `fd` at `offset` (a multiple of [`granularity`]).
pub(crate) fn map(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    access: Access,
) -> io::Result<Mapping> {
    let (prot, flags) = match access {
        Access::Read => (ProtFlags::READ, MapFlags::SHARED),
        Access::ReadWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED),
        Access::CopyOnWrite => (ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE),
    };
    // SAFETY: a null hint lets the kernel choose a fresh range, so no existing memory
    // is replaced; `fd` is open and `offset` is page-aligned (checked by the caller).
    let ptr =
        unsafe { mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) }.map_err(io_err)?;
    let ptr =
        NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(Mapping {
        ptr,
        len,
        slot: AtomicUsize::new(NO_SLOT),
    })
}

/// Writes dirty pages of `ptr..ptr+len` (inside `m`) back to the backing store.
pub(crate) fn flush(m: &Mapping, start: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let page = granularity();
    let aligned = start - start % page;
    // SAFETY: `aligned..start+len` lies inside `m`'s mapping (the caller checked
    // `start + len <= m.len`), which stays mapped while `m` is borrowed.
    unsafe {
        mm::msync(
            m.ptr.as_ptr().add(aligned).cast(),
            start + len - aligned,
            MsyncFlags::SYNC,
        )
    }
    .map_err(io_err)
}
