//! Placing the words of a synchronization object in a [`View`]: bounds, alignment
//! and access are checked once, then the words are handed out as references to
//! atomics (the only references into shared memory that the crate gives out).
//!
//! # Safety
//!
//! This module casts a checked, aligned, in-bounds pointer into a mapping to a
//! reference to a `#[repr(C)]` struct made only of atomics, which is valid for any
//! bit pattern another process may write and may be shared across processes.
#![allow(unsafe_code)]

use crate::layout::HEADER_LEN;
use crate::segment::Access;
use crate::view::View;

use super::error::ObjectError;
use super::raw::{EventWords, MutexWords, SemaphoreWords};

/// Bytes an object occupies in a segment: the header, then one cache line of words.
pub(crate) const OBJECT_SIZE: usize = HEADER_LEN + 64;
/// Alignment an object's offset needs (its 64-bit atomics).
pub(crate) const OBJECT_ALIGN: usize = 8;

/// Structs that may be laid over shared memory.
///
/// # Safety
/// Implementors are `#[repr(C)]`, made only of `core` atomics (no padding, every bit
/// pattern valid, interior mutability), at most 64 bytes and aligned to at most 8.
pub(crate) unsafe trait Words: Sized {}
// SAFETY: repr(C) { AtomicU64, AtomicU32, AtomicU32 }: 16 bytes, align 8, no padding.
unsafe impl Words for MutexWords {}
// SAFETY: repr(C) { AtomicU32, AtomicU32 }: 8 bytes, align 4.
unsafe impl Words for SemaphoreWords {}
// SAFETY: repr(C) { AtomicU32, AtomicU32 }: 8 bytes, align 4.
unsafe impl Words for EventWords {}

const _: () = {
    assert!(size_of::<MutexWords>() <= 64 && align_of::<MutexWords>() <= OBJECT_ALIGN);
    assert!(size_of::<SemaphoreWords>() <= 64 && align_of::<SemaphoreWords>() <= OBJECT_ALIGN);
    assert!(size_of::<EventWords>() <= 64 && align_of::<EventWords>() <= OBJECT_ALIGN);
};

/// Checks that an object fits at `offset` of `view`, aligned, in a shared
/// read-write view.
pub(crate) fn check(view: &View, offset: usize, kind: &'static str) -> Result<(), ObjectError> {
    if view.access() != Access::ReadWrite {
        return Err(ObjectError::NotWritable {
            kind,
            access: view.access(),
        });
    }
    if offset
        .checked_add(OBJECT_SIZE)
        .is_none_or(|end| end > view.len())
    {
        return Err(ObjectError::placed(
            kind,
            view,
            offset,
            crate::LayoutError::TooSmall {
                what: kind,
                len: view.len().saturating_sub(offset),
                need: OBJECT_SIZE,
            },
        ));
    }
    if (view.as_ptr() as usize).wrapping_add(offset) % OBJECT_ALIGN != 0 {
        return Err(ObjectError::Misaligned {
            kind,
            offset,
            align: OBJECT_ALIGN,
        });
    }
    Ok(())
}

/// The words of the object at `offset`, checked by [`check`] first.
pub(crate) fn words<'v, T: Words>(
    view: &'v View,
    offset: usize,
    kind: &'static str,
) -> Result<&'v T, ObjectError> {
    check(view, offset, kind)?;
    // SAFETY: `check` proved `offset + OBJECT_SIZE <= view.len()` (so the
    // `HEADER_LEN + size_of::<T>()` bytes are inside the mapping), the address is
    // 8-aligned (and HEADER_LEN is 64), and the view is a shared writable mapping.
    // `T: Words` is valid for any bytes and only accessed atomically. The mapping
    // lives as long as `view`, hence `'v`.
    Ok(unsafe { &*view.as_ptr().add(offset + HEADER_LEN).cast::<T>() })
}

/// The words of an object together with the view that maps them, for the named
/// objects, which own their view.
pub(crate) struct Placed<T: Words + 'static> {
    // Points into `view`'s mapping: valid while `view` lives, and only lent out for
    // borrows of `self`.
    words: &'static T,
    view: View,
}

impl<T: Words + Sync + 'static> Placed<T> {
    /// Places the words of the object at `offset` of `view` (checked as [`words`]).
    pub(crate) fn new(view: View, offset: usize, kind: &'static str) -> Result<Self, ObjectError> {
        let w: &T = words(&view, offset, kind)?;
        // SAFETY: the mapping's address does not change when the `View` value moves
        // into `Self`, and `Self` keeps the view (the mapping) alive as long as the
        // reference; `get` lends it only for borrows of `self`.
        let words = unsafe { &*(w as *const T) };
        Ok(Self { words, view })
    }

    /// The words, for as long as `self` is borrowed.
    pub(crate) fn get(&self) -> &T {
        self.words
    }

    /// The view the words are in.
    pub(crate) fn view(&self) -> &View {
        &self.view
    }
}
