//! `shmipc.Segment` and `shmipc.View`: named shared memory with Win32 lifetime, and
//! mapped ranges of it that Python reads through the buffer protocol.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyOSError, PyPermissionError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmipc::{Access, Backing, Disposition, Persistence};

use crate::args;
use crate::buffer::{self, Dims, Source};
use crate::errors;

/// Copies at least this large run with the GIL released.
const BIG_COPY: usize = 64 * 1024;

fn parse_access(access: &str) -> PyResult<Access> {
    match access {
        "r" => Ok(Access::Read),
        "rw" | "w" => Ok(Access::ReadWrite),
        "cow" | "c" => Ok(Access::CopyOnWrite),
        other => Err(PyValueError::new_err(format!(
            "access {other:?} is not one of \"r\" (read-only), \"rw\" (read-write) or \"cow\" (private copy-on-write)"
        ))),
    }
}

fn access_str(a: Access) -> &'static str {
    match a {
        Access::Read => "r",
        Access::ReadWrite => "rw",
        Access::CopyOnWrite => "cow",
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never happens while these locks are held (no user code runs under
    // them); if one did, the state is still consistent, so carry on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A named shared-memory segment (Win32 ``CreateFileMapping``/``OpenFileMapping``,
/// POSIX ``shm_open``).
///
/// It lives while any process holds it (a ``Segment`` or a ``View``), and is gone
/// when the last holder closes it **or dies** (even by SIGKILL), unless created
/// with ``persistent=True``. A name ``demo`` is the POSIX object ``/demo``, so
/// ``multiprocessing.shared_memory.SharedMemory("demo")`` opens the same memory.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Segment {
    seg: Mutex<Option<shmipc::Segment>>,
    /// Whether this object created the segment (``create_or_open`` tells which).
    #[pyo3(get)]
    created: bool,
}

impl Segment {
    fn get(&self) -> PyResult<shmipc::Segment> {
        lock(&self.seg)
            .clone()
            .ok_or_else(|| PyValueError::new_err("the segment is closed"))
    }

    fn new(seg: shmipc::Segment, created: bool) -> Self {
        Self {
            seg: Mutex::new(Some(seg)),
            created,
        }
    }
}

fn options(
    size: u64,
    file: Option<PathBuf>,
    persistent: bool,
    mode: u32,
) -> shmipc::SegmentOptions {
    let mut o = shmipc::Segment::options()
        .size(size)
        .mode(mode)
        .persistence(if persistent {
            Persistence::UntilRemoved
        } else {
            Persistence::UntilLastClose
        });
    if let Some(f) = file {
        o = o.file(f);
    }
    o
}

#[pymethods]
impl Segment {
    /// Creates the segment if the name is free, opens it if it exists
    /// (``seg.created`` says which). See ``create`` for the arguments.
    #[new]
    #[pyo3(signature = (name, size, *, file=None, persistent=false, mode=0o600))]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::size)] size: u64,
        file: Option<PathBuf>,
        persistent: bool,
        #[pyo3(from_py_with = args::mode)] mode: u32,
    ) -> PyResult<Self> {
        let name = name.as_str();
        Self::create_or_open(py, name.to_owned(), size, file, persistent, mode)
    }

    /// Creates a segment of ``size`` bytes; ``FileExistsError`` if the name is taken.
    ///
    /// ``file``: back it by this file (its data stays in the file); ``persistent``:
    /// keep it after the last holder closes (until ``Segment.remove``); ``mode``:
    /// permission bits (default owner-only).
    #[classmethod]
    #[pyo3(signature = (name, size, *, file=None, persistent=false, mode=0o600))]
    fn create(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::size)] size: u64,
        file: Option<PathBuf>,
        persistent: bool,
        #[pyo3(from_py_with = args::mode)] mode: u32,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let o = options(size, file, persistent, mode);
        let seg = py.detach(|| o.create(name)).map_err(errors::create)?;
        Ok(Self::new(seg, true))
    }

    /// Opens an existing segment: ``access`` is ``"r"``, ``"rw"`` (default) or
    /// ``"cow"`` (private copy-on-write); ``FileNotFoundError`` if it does not exist.
    #[classmethod]
    #[pyo3(signature = (name, access="rw", *, file=None))]
    fn open(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        access: &str,
        file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let mut o = shmipc::Segment::options().access(parse_access(access)?);
        if let Some(f) = file {
            o = o.file(f);
        }
        let seg = py.detach(|| o.open(name)).map_err(errors::open)?;
        Ok(Self::new(seg, false))
    }

    /// Creates the segment or opens the existing one (Win32 ``CreateFileMapping`` +
    /// ``ERROR_ALREADY_EXISTS``); ``seg.created`` tells which.
    #[staticmethod]
    #[pyo3(signature = (name, size, *, file=None, persistent=false, mode=0o600))]
    fn create_or_open(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::size)] size: u64,
        file: Option<PathBuf>,
        persistent: bool,
        #[pyo3(from_py_with = args::mode)] mode: u32,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let o = options(size, file, persistent, mode);
        let (seg, d) = py
            .detach(|| o.create_or_open(name))
            .map_err(errors::create)?;
        Ok(Self::new(seg, d == Disposition::Created))
    }

    /// Removes the name now (processes holding the segment keep their memory).
    #[staticmethod]
    fn remove(py: Python<'_>, #[pyo3(from_py_with = args::name)] name: String) -> PyResult<()> {
        let name = name.as_str();
        py.detach(|| shmipc::Segment::remove(name))
            .map_err(errors::remove)
    }

    /// The name (``None`` for an unnamed segment).
    #[getter]
    fn name(&self) -> PyResult<Option<String>> {
        Ok(self.get()?.name().map(str::to_owned))
    }

    /// Size in bytes.
    #[getter]
    fn size(&self) -> PyResult<u64> {
        Ok(self.get()?.size())
    }

    /// ``"r"``, ``"rw"`` or ``"cow"``.
    #[getter]
    fn access(&self) -> PyResult<&'static str> {
        Ok(access_str(self.get()?.access()))
    }

    /// The backing file, or ``None`` for system memory.
    #[getter]
    fn file(&self) -> PyResult<Option<PathBuf>> {
        Ok(match self.get()?.backing() {
            Backing::File(p) => Some(p.clone()),
            _ => None,
        })
    }

    /// Whether it outlives its holders (until ``Segment.remove``).
    #[getter]
    fn persistent(&self) -> PyResult<bool> {
        Ok(self.get()?.persistence() == Persistence::UntilRemoved)
    }

    /// Whether ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.seg).is_none()
    }

    /// Maps ``length`` bytes from ``offset`` (0 = to the end) as a ``View``;
    /// ``access`` defaults to the segment's.
    #[pyo3(signature = (offset=0, length=0, access=None))]
    fn map(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::offset)] offset: u64,
        #[pyo3(from_py_with = args::length)] length: usize,
        access: Option<&str>,
    ) -> PyResult<View> {
        let seg = self.get()?;
        let access = match access {
            Some(a) => parse_access(a)?,
            None => seg.access(),
        };
        let v = py
            .detach(|| seg.map_with(offset, length, access))
            .map_err(errors::map)?;
        Ok(View::new(v, seg))
    }

    /// Copies ``n`` bytes from ``offset`` out (``n=None``: to the end). Reads
    /// with ``pread`` (Linux), never through a mapping, so a segment another
    /// process truncated is an ``OSError`` here, never a ``SIGBUS``.
    #[pyo3(signature = (offset=0, n=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::offset)] offset: u64,
        #[pyo3(from_py_with = args::count)] n: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let seg = self.get()?;
        let n = match n {
            Some(n) => n,
            None => usize::try_from(seg.size().saturating_sub(offset)).unwrap_or(usize::MAX),
        };
        if n == 0 {
            return Ok(PyBytes::new(py, b""));
        }
        in_segment(&seg, offset, n)?;
        PyBytes::new_with(py, n, |buf| {
            let got = if n >= BIG_COPY {
                py.detach(|| seg.read_at(offset, buf))
            } else {
                seg.read_at(offset, buf)
            }
            .map_err(|e| os_error(&seg, "reading", &e))?;
            if got < n {
                return Err(truncated(&seg, offset, offset + n as u64));
            }
            Ok(())
        })
    }

    /// Copies ``data`` (any bytes-like object) in at ``offset`` (with ``pwrite``
    /// on Linux, never through a mapping). Needs a segment opened ``"rw"``.
    #[pyo3(signature = (offset, data))]
    fn write(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::offset)] offset: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let seg = self.get()?;
        let src = Source::new(data)?;
        if src.len() == 0 {
            return Ok(());
        }
        in_segment(&seg, offset, src.len())?;
        match seg.access() {
            Access::ReadWrite => {}
            Access::Read => {
                return Err(PyPermissionError::new_err(format!(
                    "segment `{}` was opened read-only: open it with \"rw\" to write",
                    seg_name(&seg)
                )))
            }
            // A write through a private copy nobody sees would be lost at once.
            Access::CopyOnWrite => {
                return Err(PyPermissionError::new_err(format!(
                    "segment `{}` was opened copy-on-write: Segment.write would change nothing anyone sees; write a view of it (seg.map(), private to that view), or open it with \"rw\"",
                    seg_name(&seg)
                )))
            }
        }
        let bytes = src.bytes();
        let copy = || {
            // SAFETY: `src` (alive until this function returns) keeps the buffer.
            seg.write_at(offset, unsafe { bytes.as_slice() })
        };
        if src.len() >= BIG_COPY {
            py.detach(copy)
        } else {
            copy()
        }
        .map_err(|e| match e.kind() {
            // Another process truncated it (the write would have grown it back).
            std::io::ErrorKind::UnexpectedEof => truncated(&seg, offset, offset + src.len() as u64),
            _ => os_error(&seg, "writing", &e),
        })
    }

    /// Lets go of the segment (views keep it mapped until they are closed). The
    /// segment disappears when its last holder, in any process, lets go.
    fn close(&self) {
        lock(&self.seg).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match &*lock(&self.seg) {
            Some(s) => format!(
                "<shmipc.Segment name={:?} size={} access={:?}>",
                s.name().unwrap_or("(unnamed)"),
                s.size(),
                access_str(s.access())
            ),
            None => "<shmipc.Segment closed>".to_owned(),
        }
    }
}

fn seg_name(seg: &shmipc::Segment) -> &str {
    seg.name().unwrap_or("(unnamed)")
}

/// `ValueError` unless `n` bytes from `offset` lie inside the segment.
fn in_segment(seg: &shmipc::Segment, offset: u64, n: usize) -> PyResult<()> {
    let size = seg.size();
    if offset.checked_add(n as u64).is_some_and(|end| end <= size) {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "segment `{}`: range {offset}..{offset}+{n} is outside its {size} bytes: use a range inside the segment",
        seg_name(seg)
    )))
}

fn os_error(seg: &shmipc::Segment, doing: &str, e: &std::io::Error) -> PyErr {
    let msg = format!("segment `{}`: {doing} failed: {e}", seg_name(seg));
    match e.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, msg)),
        None => PyOSError::new_err(msg),
    }
}

/// The range `start..end` of the segment reaches past its end now: another
/// process truncated it.
fn truncated(seg: &shmipc::Segment, start: u64, end: u64) -> PyErr {
    PyOSError::new_err(format!(
        "segment `{}` was truncated by another process: the range {start}..{end} reaches past its end now (it was created with {} bytes); nothing was copied. Check which process resizes it, or reopen it",
        seg_name(seg),
        seg.size()
    ))
}

fn read_view<'py>(
    py: Python<'py>,
    v: &shmipc::View,
    offset: usize,
    n: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, n, |buf| {
        if n >= BIG_COPY {
            py.detach(|| v.read_at(offset, buf))
        } else {
            v.read_at(offset, buf)
        }
        .map_err(errors::access)
    })
}

fn write_view(py: Python<'_>, v: &shmipc::View, offset: usize, src: &Source) -> PyResult<()> {
    let bytes = src.bytes();
    let copy = move || {
        // SAFETY: `src` (borrowed for this whole function) keeps the buffer alive.
        v.write_at(offset, unsafe { bytes.as_slice() })
    };
    if src.len() >= BIG_COPY {
        py.detach(copy)
    } else {
        copy()
    }
    .map_err(errors::access)
}

/// What a view's lock guards: the mapping, and how many Python buffers point into it.
struct ViewState {
    view: Option<Arc<shmipc::View>>,
    exports: usize,
}

/// One mapped range of a segment (Win32 ``MapViewOfFile``). It supports the buffer
/// protocol: ``memoryview(view)`` and ``numpy.frombuffer(view, ...)`` share the
/// memory, no copy; a read-only view exports read-only buffers.
///
/// Trust: other processes that map the segment may write these bytes at any time,
/// while you read them through a memoryview or array, exactly as with
/// ``multiprocessing.shared_memory`` or ``mmap``. Synchronize (a ``shmipc.Mutex``,
/// an ``Event``, a channel) and validate what you read. No other process can
/// unmap your view, and ``close()`` refuses (``BufferError``) while any
/// memoryview or array still uses it, so memory you hold never disappears.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct View {
    state: Mutex<ViewState>,
    /// The segment, to check that the view's bytes are still there before a copy.
    seg: shmipc::Segment,
    ptr: usize,
    readonly: bool,
    dims: Dims,
    len: usize,
    offset: u64,
    access: Access,
}

impl View {
    fn new(v: shmipc::View, seg: shmipc::Segment) -> Self {
        Self {
            seg,
            ptr: v.as_mut_ptr() as usize,
            readonly: v.access() == Access::Read,
            dims: Dims::new(v.len()),
            len: v.len(),
            offset: v.offset(),
            access: v.access(),
            state: Mutex::new(ViewState {
                view: Some(Arc::new(v)),
                exports: 0,
            }),
        }
    }

    fn get(&self) -> PyResult<Arc<shmipc::View>> {
        lock(&self.state)
            .view
            .clone()
            .ok_or_else(|| PyValueError::new_err("the view is closed"))
    }

    /// Checks, before a copy through the mapping, that the last byte of `n`
    /// bytes from `offset` in the view is still in the segment: another process
    /// may have truncated it, and touching a lost page raises `SIGBUS`. One
    /// `pread` of a byte (Linux). A truncation between this check and the copy is
    /// still a `SIGBUS`, which the handler installed at import reports by name.
    /// Ranges outside the view are left to the copy's own bounds check.
    fn still_backed(&self, offset: usize, n: usize) -> PyResult<()> {
        let Some(end) = offset.checked_add(n).filter(|&e| n > 0 && e <= self.len) else {
            return Ok(());
        };
        if !cfg!(target_os = "linux") {
            return Ok(());
        }
        let end = self.offset + end as u64;
        let mut last = [0u8; 1];
        match self.seg.read_at(end - 1, &mut last) {
            Ok(1) => Ok(()),
            Ok(_) => Err(truncated(&self.seg, self.offset + offset as u64, end)),
            Err(e) => Err(os_error(&self.seg, "checking the view's range", &e)),
        }
    }
}

#[pymethods]
impl View {
    /// Bytes in the view.
    fn __len__(&self) -> usize {
        self.len
    }

    /// Where the view starts in the segment.
    #[getter]
    fn offset(&self) -> u64 {
        self.offset
    }

    /// ``"r"``, ``"rw"`` or ``"cow"``.
    #[getter]
    fn access(&self) -> &'static str {
        access_str(self.access)
    }

    /// Whether buffers of this view are read-only.
    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.state).view.is_none()
    }

    /// Copies ``n`` bytes from ``offset`` out (``n=None``: to the end of the view).
    #[pyo3(signature = (offset=0, n=None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::view_offset)] offset: usize,
        #[pyo3(from_py_with = args::count)] n: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.get()?;
        let n = n.unwrap_or_else(|| self.len.saturating_sub(offset));
        self.still_backed(offset, n)?;
        read_view(py, &v, offset, n)
    }

    /// Copies ``data`` (any bytes-like object) in at ``offset``.
    #[pyo3(signature = (offset, data))]
    fn write(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::view_offset)] offset: usize,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let v = self.get()?;
        let src = Source::new(data)?;
        if !self.readonly {
            self.still_backed(offset, src.len())?;
        }
        write_view(py, &v, offset, &src)
    }

    /// Writes the view's pages back to its file (``FlushViewOfFile``, ``msync``).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let v = self.get()?;
        py.detach(|| v.flush()).map_err(errors::flush)
    }

    /// Unmaps the view (``UnmapViewOfFile``). ``BufferError`` while a memoryview
    /// or array still uses its memory: release those first (``del arr``,
    /// ``mv.release()``), as with ``mmap``.
    fn close(&self) -> PyResult<()> {
        let mut st = lock(&self.state);
        if st.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "cannot close the view: {} exported buffer(s) (memoryview, NumPy array, …) still use its memory; release them first (del the array, memoryview.release())",
                st.exports
            )));
        }
        st.view = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmipc.View offset={} len={} access={:?}{}>",
            self.offset,
            self.len,
            access_str(self.access),
            if self.closed() { " closed" } else { "" }
        )
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let mut st = lock(&this.state);
        if st.view.is_none() {
            return Err(PyValueError::new_err("the view is closed"));
        }
        // SAFETY: `view` comes from CPython; `ptr` is the live mapping of `len`
        // bytes (writable unless `readonly`), kept mapped while `exports > 0`
        // (close refuses) and while this object lives (the buffer references it);
        // `dims` is a field of this frozen object.
        unsafe {
            buffer::fill(
                view,
                flags,
                this.ptr as *mut u8,
                this.readonly,
                &this.dims,
                slf.clone().into_any(),
            )?;
        }
        st.exports += 1;
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut st = lock(&self.state);
        st.exports = st.exports.saturating_sub(1);
    }
}
