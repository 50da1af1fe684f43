//! [`View`]: one mapped range of a segment (Win32 `MapViewOfFile`), and safe access
//! to its bytes.
//!
//! Another process may write the mapped memory at any moment, so no safe method hands
//! out a `&[u8]` or `&T` into it: bytes and plain-data values are copied in and out,
//! and atomics are the only references given.
//!
//! # Safety
//!
//! This module turns the mapping's base pointer into in-bounds accesses; every
//! `unsafe` block checks bounds first and says so.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;

use bytemuck::{AnyBitPattern, NoUninit};

use crate::error::{AccessError, FlushError, MapError};
use crate::name::Name;
use crate::sys;
use crate::vocab::Access;

/// Where a requested range lands once page alignment is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Aligned offset to map from.
    pub(crate) map_offset: u64,
    /// Bytes to map from `map_offset`.
    pub(crate) map_len: usize,
    /// Bytes between `map_offset` and the requested offset.
    pub(crate) lead: usize,
    /// The requested length (resolved when 0 was asked).
    pub(crate) len: usize,
}

/// Why a range cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanError {
    /// `offset + len` overflows `u64`.
    Overflow,
    /// The range ends past `size` (or is empty); carries the resolved length.
    OutOfRange(u64),
}

/// Resolves `offset`/`len` (0 = to the end) against a segment of `size` bytes and a
/// mapping granularity `gran` (a power of two). Pure arithmetic, no panics.
pub(crate) fn span(offset: u64, len: usize, size: u64, gran: usize) -> Result<Span, SpanError> {
    let gran = u64::try_from(gran.max(1)).unwrap_or(4096);
    let len64 = u64::try_from(len).map_err(|_| SpanError::Overflow)?;
    let len64 = if len64 == 0 {
        size.saturating_sub(offset)
    } else {
        len64
    };
    let end = offset.checked_add(len64).ok_or(SpanError::Overflow)?;
    if len64 == 0 || end > size {
        return Err(SpanError::OutOfRange(len64));
    }
    let lead = offset % gran;
    let map_offset = offset - lead;
    let map_len = len64.checked_add(lead).ok_or(SpanError::Overflow)?;
    Ok(Span {
        map_offset,
        map_len: usize::try_from(map_len).map_err(|_| SpanError::OutOfRange(len64))?,
        lead: usize::try_from(lead).map_err(|_| SpanError::Overflow)?,
        len: usize::try_from(len64).map_err(|_| SpanError::OutOfRange(len64))?,
    })
}

pub(crate) fn map(
    inner: &Arc<Inner>,
    offset: u64,
    len: usize,
    access: Access,
) -> Result<View, MapError> {
    let name = || inner.display_name();
    if access == Access::ReadWrite && inner.access != Access::ReadWrite {
        return Err(MapError::ReadOnly { name: name() });
    }
    let size = inner.handle.size();
    let s = span(offset, len, size, sys::granularity()).map_err(|e| match e {
        SpanError::Overflow => MapError::Overflow {
            name: name(),
            offset,
            len: len as u64,
        },
        SpanError::OutOfRange(len) => MapError::OutOfRange {
            name: name(),
            offset,
            len,
            size,
        },
    })?;
    let mapping = sys::map(&inner.handle, s.map_offset, s.map_len, access).map_err(|source| {
        MapError::Os {
            name: name(),
            op: "mmap",
            source,
        }
    })?;
    mapping.label(&name());
    // Words in the view can now be waited on across processes (Windows: doorbells).
    sys::wait::view_mapped(
        mapping.ptr().as_ptr(),
        s.map_len,
        &inner.handle,
        s.map_offset,
    );
    Ok(View {
        mapping,
        seg: Arc::clone(inner),
        lead: s.lead,
        len: s.len,
        offset,
        access,
    })
}

/// The shared state of a segment: the OS handle, kept open while a [`Segment`](crate::Segment) or
/// any of its [`View`]s lives.
pub(crate) struct Inner {
    pub(crate) name: Option<Name>,
    pub(crate) handle: sys::Handle,
    pub(crate) access: Access,
    /// Where this handle's holders prove that they live (`sys::liveness`).
    pub(crate) anchor: sys::liveness::Anchor,
}

impl Inner {
    /// What lock owners and endpoints on this segment prove their liveness on.
    pub(crate) fn liveness(&self) -> sys::liveness::Scope<'_> {
        sys::liveness::Scope::of(&self.handle, &self.anchor)
    }

    /// [`Segment::is_still_named`](crate::Segment::is_still_named).
    pub(crate) fn is_still_named(&self) -> Option<bool> {
        sys::still_named(&self.handle, self.name.as_ref()?)
    }

    pub(crate) fn display_name(&self) -> String {
        self.name
            .as_ref()
            .map_or_else(|| "(unnamed)".to_owned(), Name::to_string)
    }
}

/// One mapped range of a [`Segment`](crate::Segment). Dropping it unmaps it
/// (`UnmapViewOfFile`). A view keeps its segment alive.
pub struct View {
    // Declared first so it is unmapped before the segment handle closes.
    mapping: sys::Mapping,
    seg: Arc<Inner>,
    lead: usize,
    len: usize,
    offset: u64,
    access: Access,
}

impl Drop for View {
    fn drop(&mut self) {
        // Before the mapping (a field) is unmapped.
        sys::wait::view_unmapping(self.mapping.ptr().as_ptr());
    }
}

impl fmt::Debug for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("segment", &self.seg.name)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("access", &self.access)
            .finish()
    }
}

impl View {
    /// Gives memory to the pages of the segment's first `len` bytes that have none
    /// (`sys::back_holes`), for a read-write view of a structured object about to
    /// be written through: Linux; elsewhere nothing to do.
    ///
    /// # Errors
    /// The OS error (`ENOSPC`, `EDQUOT`) where the store cannot hold them.
    pub(crate) fn back_holes(&self, len: u64) -> std::io::Result<()> {
        if self.access != Access::ReadWrite {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        {
            sys::back_holes(&self.seg.handle, len)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = len;
            Ok(())
        }
    }

    /// What lock owners and endpoints in this view prove their liveness on.
    pub(crate) fn liveness(&self) -> crate::sys::liveness::Scope<'_> {
        self.seg.liveness()
    }

    /// [`Segment::is_still_named`](crate::Segment::is_still_named) of the view's
    /// segment.
    pub(crate) fn is_still_named(&self) -> Option<bool> {
        self.seg.is_still_named()
    }

    /// The name of the view's segment, if it has one (for messages).
    pub(crate) fn segment_name(&self) -> Option<String> {
        self.seg.name.as_ref().map(Name::to_string)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a view has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the view's first byte in the segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The view's access.
    pub fn access(&self) -> Access {
        self.access
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(AccessError::OutOfBounds {
                offset,
                len,
                view_len: self.len,
            }),
        }
    }

    fn check_write(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        if self.access == Access::Read {
            return Err(AccessError::ReadOnly);
        }
        self.check(offset, len)
    }

    /// Copies `buf.len()` bytes from `offset` in the view into `buf`.
    ///
    /// Without synchronization another process may be writing the same bytes, and
    /// the copy may then mix old and new data; it is never undefined behaviour.
    ///
    /// # Errors
    /// [`AccessError::OutOfBounds`] if the range leaves the view.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        self.check(offset, buf.len())?;
        // SAFETY: `offset + buf.len() <= self.len` (checked), so the source range is
        // inside the live mapping. `ptr::copy` allows overlap (should `buf` come from
        // `as_mut_slice`), and only raw pointers touch the shared memory.
        unsafe { std::ptr::copy(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the view at `offset`.
    ///
    /// # Errors
    /// [`AccessError::ReadOnly`] on a read view; [`AccessError::OutOfBounds`] if the
    /// range leaves the view.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        self.check_write(offset, data.len())?;
        // SAFETY: the range is inside the mapping (checked) and the mapping is
        // writable (checked: not `Access::Read`). `ptr::copy` allows `data` to
        // overlap the destination.
        unsafe { std::ptr::copy(data.as_ptr(), self.as_mut_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Sets `len` bytes from `offset` to `byte`.
    ///
    /// # Errors
    /// As [`View::write_at`].
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), AccessError> {
        self.check_write(offset, len)?;
        // SAFETY: the range is inside the writable mapping (checked above).
        unsafe { std::ptr::write_bytes(self.as_mut_ptr().add(offset), byte, len) };
        Ok(())
    }

    /// Copies a plain-data value out of the view (no alignment needed).
    ///
    /// # Errors
    /// [`AccessError::OutOfBounds`] if the value leaves the view.
    pub fn read_pod<T: AnyBitPattern>(&self, offset: usize) -> Result<T, AccessError> {
        self.check(offset, size_of::<T>())?;
        // SAFETY: `size_of::<T>()` bytes at `offset` are inside the mapping (checked);
        // `read_unaligned` needs no alignment, and `T: AnyBitPattern` is valid for any
        // bytes another process may have put there.
        Ok(unsafe { self.as_ptr().add(offset).cast::<T>().read_unaligned() })
    }

    /// Copies a plain-data value into the view (no alignment needed).
    ///
    /// # Errors
    /// As [`View::write_at`].
    pub fn write_pod<T: NoUninit>(&self, offset: usize, value: &T) -> Result<(), AccessError> {
        self.write_at(offset, bytemuck::bytes_of(value))
    }

    fn atomic_ptr<A>(&self, offset: usize) -> Result<*const A, AccessError> {
        let align = align_of::<A>();
        self.check_write(offset, size_of::<A>())?;
        let addr = self.as_ptr() as usize + offset;
        if addr % align != 0 {
            return Err(AccessError::Misaligned { offset, align });
        }
        // SAFETY: in bounds (checked).
        Ok(unsafe { self.as_ptr().add(offset) }.cast())
    }

    /// The `AtomicU32` at `offset` (4-byte aligned), shared with every process that
    /// maps the same bytes. Needs a writable view (an atomic can store).
    ///
    /// # Errors
    /// [`AccessError::Misaligned`], [`AccessError::OutOfBounds`] or
    /// [`AccessError::ReadOnly`].
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, AccessError> {
        let p = self.atomic_ptr::<AtomicU32>(offset)?;
        // SAFETY: `p` is in bounds, aligned and writable; the mapping lives as long as
        // `&self`. Atomics may be accessed concurrently by other processes: that is
        // what they are for, and any bit pattern is a valid `u32`.
        Ok(unsafe { &*p })
    }

    /// The `AtomicU64` at `offset` (8-byte aligned); as [`View::atomic_u32`].
    ///
    /// # Errors
    /// As [`View::atomic_u32`].
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, AccessError> {
        let p = self.atomic_ptr::<AtomicU64>(offset)?;
        // SAFETY: as in `atomic_u32`.
        Ok(unsafe { &*p })
    }

    /// Writes the view's dirty pages back to its backing store (`FlushViewOfFile`,
    /// `msync`). Meaningful for file-backed segments.
    ///
    /// # Errors
    /// [`FlushError::Os`] if the OS fails.
    #[doc(alias = "FlushViewOfFile")]
    #[doc(alias = "msync")]
    pub fn flush(&self) -> Result<(), FlushError> {
        self.flush_range(0, self.len)
    }

    /// Flushes `len` bytes from `offset`.
    ///
    /// # Errors
    /// [`FlushError::Range`] if the range leaves the view; [`FlushError::Os`].
    pub fn flush_range(&self, offset: usize, len: usize) -> Result<(), FlushError> {
        self.check(offset, len)?;
        sys::flush(&self.mapping, self.lead + offset, len)
            .map_err(|source| FlushError::Os { source })
    }

    /// A pointer to the view's first byte. Always valid for `len()` bytes while the
    /// view lives.
    ///
    /// Dereferencing it is `unsafe`: other processes may write the memory at any
    /// time, so never make a `&`/`&mut` reference over bytes another process may
    /// write concurrently; use raw-pointer or atomic accesses, and synchronize.
    /// Writing through it on a [`Access::Read`] view crashes the process.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_mut_ptr().cast_const()
    }

    /// A mutable pointer to the view's first byte; see [`View::as_ptr`].
    pub fn as_mut_ptr(&self) -> *mut u8 {
        // `lead < granularity <= map_len`: `span` made the mapping `lead` bytes longer.
        self.mapping.ptr().as_ptr().wrapping_add(self.lead)
    }

    /// The view's bytes as a slice.
    ///
    /// # Safety
    /// While the slice lives, no process (this one included) may write the bytes
    /// (e.g. they are a finished message, handed over with proper synchronization,
    /// or the view is copy-on-write and private to this process).
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: pointer and length describe the live mapping; the caller promises
        // the bytes do not change while the slice lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The view's bytes as a mutable slice.
    ///
    /// # Safety
    /// While the slice lives, no other process or thread may read or write the
    /// bytes, and the view must be writable (not [`Access::Read`]).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: pointer and length describe the live mapping; the caller promises
        // exclusive access and a writable view.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn span_aligns_inside() {
        let s = span(5000, 100, 10_000, 4096).unwrap();
        assert_eq!(
            s,
            Span {
                map_offset: 4096,
                map_len: 1004,
                lead: 904,
                len: 100
            }
        );
        let s = span(0, 0, 10_000, 4096).unwrap();
        assert_eq!((s.map_offset, s.len), (0, 10_000));
        let s = span(70_000, 0, 140_000, 65_536).unwrap();
        assert_eq!((s.map_offset, s.lead, s.len), (65_536, 4464, 70_000));
    }

    #[test]
    fn span_refuses_bad_ranges() {
        assert_eq!(span(10_000, 0, 10_000, 4096), Err(SpanError::OutOfRange(0)));
        assert_eq!(span(9_999, 2, 10_000, 4096), Err(SpanError::OutOfRange(2)));
        assert_eq!(span(u64::MAX, 1, 10_000, 4096), Err(SpanError::Overflow));
        assert_eq!(
            span(u64::MAX - 10, usize::MAX, u64::MAX, 4096),
            Err(SpanError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn span_is_exact_or_refused(offset in any::<u64>(), len in any::<usize>(), size in any::<u64>(), shift in 12u32..17) {
            let gran = 1usize << shift;
            match span(offset, len, size, gran) {
                Ok(s) => {
                    prop_assert_eq!(s.map_offset % gran as u64, 0);
                    prop_assert_eq!(s.map_offset + s.lead as u64, offset);
                    prop_assert!((s.lead) < gran);
                    prop_assert_eq!(s.map_len, s.lead + s.len);
                    prop_assert!(s.len > 0);
                    prop_assert!(offset + s.len as u64 <= size);
                    if len != 0 { prop_assert_eq!(s.len, len); } else { prop_assert_eq!(s.len as u64, size - offset); }
                }
                Err(SpanError::Overflow) => {
                    let resolved = if len == 0 { size.saturating_sub(offset) } else { len as u64 };
                    let overflows = offset.checked_add(resolved).is_none()
                        || resolved.checked_add(offset % gran as u64).is_none();
                    prop_assert!(overflows, "overflow reported for a range that does not overflow");
                }
                Err(SpanError::OutOfRange(l)) => {
                    let outside = l == 0 || offset.saturating_add(l) > size
                        || usize::try_from(l + offset % gran as u64).is_err();
                    prop_assert!(outside, "refused a range inside the segment");
                }
            }
        }

        #[test]
        fn small_ranges_inside_are_accepted(size in 1u64..1 << 40, a in any::<u64>(), b in any::<u64>()) {
            let offset = a % size;
            let len = 1 + (b % (size - offset)).min(1 << 30);
            let s = span(offset, len as usize, size, 4096).unwrap();
            prop_assert_eq!(s.len as u64, len);
        }
    }
}
