//! The buffer protocol, once: filling a `Py_buffer` that points into memory shmipc
//! keeps mapped (a view, a loaned slot, a received sample), and reading the bytes
//! of any bytes-like object passed in.
//!
//! # Safety
//!
//! `fill` writes the `Py_buffer` that CPython handed to `__getbuffer__`. The memory
//! it describes must stay valid until the matching `__releasebuffer__`: every
//! exporter counts its exports and refuses to unmap or hand back the memory while
//! the count is not zero (as Python's `mmap` does), and the buffer holds a reference
//! to the exporter, so the exporter cannot be freed first.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};
use std::ptr;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Fixed fields an exporter keeps in its (frozen, never moving) Python object, so
/// that `shape` and `strides` can point at them for as long as the buffer lives.
#[derive(Debug)]
pub(crate) struct Dims {
    /// `[len]`: the shape of the 1-D buffer.
    shape: ffi::Py_ssize_t,
    /// `[1]`: the stride of bytes.
    stride: ffi::Py_ssize_t,
}

impl Dims {
    pub(crate) fn new(len: usize) -> Self {
        Self {
            // A mapping never exceeds isize::MAX bytes (Rust allocations and
            // mappings cannot), so this never saturates in practice.
            shape: ffi::Py_ssize_t::try_from(len).unwrap_or(ffi::Py_ssize_t::MAX),
            stride: 1,
        }
    }
}

/// Fills `view` to describe `dims.shape` unsigned bytes at `ptr`, owned by `owner`
/// (a new strong reference is stored in `view.obj`).
///
/// # Safety
/// `view` is the pointer CPython passed to `__getbuffer__`; `ptr` is valid for
/// `dims.shape` bytes (writable ones if `!readonly`) until the matching
/// `__releasebuffer__`; `dims` lives inside `owner`'s object.
pub(crate) unsafe fn fill(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    ptr: *mut u8,
    readonly: bool,
    dims: &Dims,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err(
            "the buffer request passed no Py_buffer",
        ));
    }
    if readonly && (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
        return Err(PyBufferError::new_err(
            "this buffer is read-only: it is a received message or a read-only mapping (copy it with bytearray(x) to modify)",
        ));
    }
    // SAFETY: `view` is non-null and points at a Py_buffer CPython owns for this
    // call (the caller's contract); every field is written below.
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = ptr.cast();
        (*view).len = dims.shape;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = 1;
        (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
            // CPython never writes through `format`; the literal lives for ever.
            c"B".as_ptr().cast_mut()
        } else {
            ptr::null_mut::<c_char>()
        };
        (*view).ndim = 1;
        (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
            ptr::from_ref(&dims.shape).cast_mut()
        } else {
            ptr::null_mut()
        };
        (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
            ptr::from_ref(&dims.stride).cast_mut()
        } else {
            ptr::null_mut()
        };
        (*view).suboffsets = ptr::null_mut();
        (*view).internal = ptr::null_mut();
    }
    Ok(())
}

/// The bytes of a bytes-like object (`bytes`, `bytearray`, `memoryview`, a NumPy
/// array, …), held for reading while this value lives.
pub(crate) struct Source {
    buf: PyBuffer<u8>,
}

impl Source {
    pub(crate) fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buf = PyBuffer::<u8>::get(obj).or_else(|_| {
            // Arrays of other item types: view them as bytes.
            let mv = obj
                .py()
                .import("builtins")?
                .getattr("memoryview")?
                .call1((obj,))?;
            let bytes = mv.call_method1("cast", ("B",))?;
            PyBuffer::<u8>::get(&bytes)
        })?;
        if !buf.is_c_contiguous() {
            return Err(PyBufferError::new_err(
                "the data must be C-contiguous bytes (pass bytes(x) or numpy.ascontiguousarray(x))",
            ));
        }
        Ok(Self { buf })
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len_bytes()
    }

    /// The bytes, for copying out with the GIL released.
    ///
    /// As with Python's own `file.write`, another Python thread could modify a
    /// mutable source (a `bytearray`) while the copy runs without the GIL; the copy
    /// then sees some mix of old and new bytes, never memory outside the buffer.
    pub(crate) fn bytes(&self) -> SourceBytes {
        SourceBytes {
            ptr: self.buf.buf_ptr().cast::<u8>().cast_const(),
            len: self.len(),
        }
    }
}

/// A raw view of a [`Source`]'s bytes that may cross into a GIL-released closure.
#[derive(Clone, Copy)]
pub(crate) struct SourceBytes {
    ptr: *const u8,
    len: usize,
}

// SAFETY: a plain pointer and length; the `Source` it came from (a held Python
// buffer) keeps the memory valid, and it is only used on the thread that holds it,
// while the GIL is released (`Python::detach` runs its closure on this thread).
unsafe impl Send for SourceBytes {}
// SAFETY: as for `Send`: read only, on the thread that holds the `Source`.
unsafe impl Sync for SourceBytes {}

impl SourceBytes {
    /// The bytes.
    ///
    /// # Safety
    /// The [`Source`] this came from is still alive.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous buffer of `len` bytes at `ptr`, held by the live
        // `Source` (the caller's contract).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}
