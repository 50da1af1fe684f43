//! `mmap`-based views, shared by the Linux and macOS backends.
//!
//! # Safety
//!
//! This module holds the `mmap`, `munmap` and `msync` calls; each says why it is
//! sound.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use rustix::mm::{self, MapFlags, MsyncFlags, ProtFlags};

use crate::segment::Access;

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
}

impl Mapping {
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
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
    Ok(Mapping { ptr, len })
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
