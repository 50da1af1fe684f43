//! Channels: `shmipc.Producer`/`shmipc.Consumer` (spsc) and
//! `shmipc.Publisher`/`shmipc.Subscriber` (pubsub), with `Loan` (a writable buffer
//! to fill and send) and `Sample` (a received message, a read-only buffer).
//!
//! # Zero copy, and where it comes from
//!
//! * spsc: a `Loan` is the channel's slot itself and a `Sample` reads the slot in
//!   place (the Rust `spsc::Loan` / `spsc::Sample`).
//! * pubsub: the Rust subscriber copies on receive today, so a `Sample` owns its
//!   bytes (`Payload::Owned`) and a publisher's `Loan` is a local buffer sent by
//!   copy. When pubsub hands out loaned samples, `Subscriber.recv` stores that
//!   sample in a new `Payload` variant (see `SWITCH` below); nothing else changes
//!   for Python.
//!
//! # Safety
//!
//! The Rust `Loan`/`Sample` borrow their endpoint mutably, but in Python they are
//! separate objects that outlive the call that made them. So each endpoint lives
//! in a heap cell (`Lender`) beside the one loan or sample it has out: the
//! endpoint is boxed and only reached through a raw pointer, never moved, and the
//! loan/sample field is dropped before the endpoint (`Drop for Lender`). The
//! Python `Loan`/`Sample` reach their Rust counterpart only through the cell's lock
//! and a generation number, so a stale Python object cannot touch a newer one.
//! Exported buffers are counted: the loan/sample is not handed back (sent,
//! released, or the endpoint closed) while a memoryview or array still points
//! into it; `BufferError` says so instead, as Python's `mmap` does.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};

use pyo3::exceptions::{PyBufferError, PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use shmipc::channel::{pubsub, spsc, RecvError, SendError};

use crate::buffer::{self, Dims, Source};
use crate::errors::{self, Disconnected};
use crate::wait::{slices, Timeout};

fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn closed(what: &str) -> PyErr {
    PyValueError::new_err(format!("the {what} is closed"))
}

/// An endpoint `E` and the one borrowed item `L` (a loan or a sample) it has out.
struct Lender<E: 'static, L> {
    /// Declared first; `Drop` drops it before the endpoint it borrows.
    out: Option<L>,
    /// Buffers exported from `out`.
    exports: usize,
    /// Bumped for every new `out`: Python objects name theirs by it.
    gen: u64,
    /// `Box::into_raw` of the endpoint; freed in `Drop`.
    endpoint: NonNull<E>,
}

// SAFETY: the endpoints (spsc `Producer`/`Consumer`) are `Send`; the loan/sample
// (raw pointers into the mapping plus a borrow of the endpoint) may be used and
// dropped on any thread, since handing a slot back is an atomic store and a wake,
// with no thread affinity; all access goes through the `StdMutex` around the
// `Lender`.
unsafe impl<E: Send + 'static, L> Send for Lender<E, L> {}

impl<E: 'static, L> Lender<E, L> {
    fn new(endpoint: E) -> Self {
        Self {
            out: None,
            exports: 0,
            gen: 0,
            endpoint: NonNull::from(Box::leak(Box::new(endpoint))),
        }
    }

    /// The endpoint, to make a new loan or sample from, or for any call while none
    /// is out.
    ///
    /// The `'static` is a promise kept by this type: the result is only stored in
    /// `self.out`, which is dropped before the endpoint.
    fn endpoint(&mut self) -> Option<&'static mut E> {
        if self.out.is_some() {
            return None;
        }
        // SAFETY: `endpoint` came from `Box::leak` and is freed only in `Drop`,
        // after `out`; with `out` empty nothing else borrows it, and `&mut self`
        // (the cell's lock) keeps any other caller out until this borrow ends or
        // is stored in `out`.
        Some(unsafe { &mut *self.endpoint.as_ptr() })
    }

    /// Whether Python object of generation `gen` still owns `out`.
    fn current(&self, gen: u64) -> bool {
        self.gen == gen && self.out.is_some()
    }

    /// Gives `out` back, unless buffers still point into it.
    fn give_back(&mut self, what: &str) -> PyResult<()> {
        if self.out.is_some() && self.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "the {what} is still in use by {} exported buffer(s) (memoryview, NumPy array, …): release them first (del the array, memoryview.release()), or copy with bytes()",
                self.exports
            )));
        }
        self.out = None;
        self.exports = 0;
        Ok(())
    }
}

impl<E: 'static, L> Drop for Lender<E, L> {
    fn drop(&mut self) {
        self.out = None;
        // SAFETY: from `Box::leak` in `new`, freed only here; `out`, the only
        // borrower, was dropped just above.
        drop(unsafe { Box::from_raw(self.endpoint.as_ptr()) });
    }
}

type ConsumerCell = Arc<StdMutex<Option<Lender<spsc::Consumer, spsc::Sample<'static>>>>>;
type ProducerCell = Arc<StdMutex<Option<Lender<spsc::Producer, spsc::Loan<'static>>>>>;
type SubscriberCell = Arc<StdMutex<Option<pubsub::Subscriber>>>;
type PublisherCell = Arc<StdMutex<Option<pubsub::Publisher>>>;

/// Bytes owned by a Python object, writable through a raw pointer (a pubsub loan's
/// local buffer, a copied sample).
struct OwnedBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a uniquely owned heap allocation.
unsafe impl Send for OwnedBytes {}
// SAFETY: Rust only reads it through `as_slice` (while no buffer is exported, for
// loans) and Python writes it only through exported buffers.
unsafe impl Sync for OwnedBytes {}

impl OwnedBytes {
    fn new(v: Vec<u8>) -> Self {
        let b: Box<[u8]> = v.into_boxed_slice();
        let len = b.len();
        let ptr = NonNull::new(Box::into_raw(b).cast::<u8>()).unwrap_or(NonNull::dangling());
        Self { ptr, len }
    }

    /// # Safety
    /// No exported buffer writes the bytes while the slice lives.
    unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation of `len` bytes from `new` (or dangling for 0).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for OwnedBytes {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the boxed slice from `new`.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ))
        });
    }
}

/// What a Python `Sample`'s bytes are.
enum Payload {
    /// A copy it owns (pubsub today), kept for the memory `ptr` points into.
    Owned { _bytes: OwnedBytes },
    /// The slot of an spsc consumer's outstanding sample, generation `gen`.
    Spsc { cell: ConsumerCell, gen: u64 },
    // SWITCH: zero-copy pubsub adds `PubSub(pubsub::Sample)` here: a loaned sample
    // that releases on drop; `getbuffer` then points into it like `Owned`, and its
    // release happens when this Python object is freed (or `release()`).
}

/// A received message: a read-only buffer (``memoryview(s)``,
/// ``numpy.frombuffer(s, ...)``, ``bytes(s)`` for a copy).
///
/// From an spsc ``Consumer`` it is the channel's slot itself, read in place: the
/// slot goes back to the producer when the sample is released (``release()``,
/// ``with``, garbage collection, or the consumer's next ``recv``), which
/// ``BufferError`` refuses while a memoryview or array still uses it. Under the
/// zero-copy contract a correct producer does not write a slot it lent; a buggy or
/// hostile process that maps the channel can, and then you read changing bytes
/// (never memory outside the slot). Validate what you read from untrusted peers.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Sample {
    payload: Payload,
    ptr: usize,
    dims: Dims,
    len: usize,
    /// pubsub: messages overwritten before this one that this subscriber lost.
    #[pyo3(get)]
    lost: u64,
    /// Exports of an `Owned` payload (informational; its memory lives as long as
    /// this object does).
    owned_exports: StdMutex<usize>,
}

impl Sample {
    fn owned(data: Vec<u8>, lost: u64) -> Self {
        let bytes = OwnedBytes::new(data);
        Self {
            ptr: bytes.ptr.as_ptr() as usize,
            len: bytes.len,
            dims: Dims::new(bytes.len),
            payload: Payload::Owned { _bytes: bytes },
            lost,
            owned_exports: StdMutex::new(0),
        }
    }

    fn released() -> PyErr {
        PyValueError::new_err(
            "the sample was released (its slot went back to the producer, by release(), a with block, or the consumer's next recv): copy it with bytes(sample) to keep it",
        )
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        if let Payload::Spsc { cell, gen } = &self.payload {
            if let Some(l) = lock(cell).as_mut() {
                // No buffer can be exported: each one holds a reference to this object.
                if l.current(*gen) {
                    l.out = None;
                    l.exports = 0;
                }
            }
        }
    }
}

#[pymethods]
impl Sample {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Hands the slot back to the producer now (spsc; a no-op for a copy).
    /// ``BufferError`` while a memoryview or array still uses it.
    fn release(&self) -> PyResult<()> {
        if let Payload::Spsc { cell, gen } = &self.payload {
            if let Some(l) = lock(cell).as_mut() {
                if l.current(*gen) {
                    l.give_back("sample")?;
                }
            }
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Sample len={} lost={}>", self.len, self.lost)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let owner = slf.clone().into_any();
        match &this.payload {
            Payload::Owned { .. } => {
                // SAFETY: `ptr` is the `len` bytes this object owns; the buffer
                // references this object, so they outlive it; read-only.
                unsafe { buffer::fill(view, flags, this.ptr as *mut u8, true, &this.dims, owner)? };
                *lock(&this.owned_exports) += 1;
            }
            Payload::Spsc { cell, gen } => {
                let mut g = lock(cell);
                let l = g
                    .as_mut()
                    .filter(|l| l.current(*gen))
                    .ok_or_else(Self::released)?;
                // SAFETY: `ptr` is the slot of the outstanding sample `gen`, which
                // stays lent to this process while `exports > 0` (give_back refuses);
                // read-only.
                unsafe { buffer::fill(view, flags, this.ptr as *mut u8, true, &this.dims, owner)? };
                l.exports += 1;
            }
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        match &self.payload {
            Payload::Owned { .. } => {
                let mut n = lock(&self.owned_exports);
                *n = n.saturating_sub(1);
            }
            Payload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.exports = l.exports.saturating_sub(1);
                    }
                }
            }
        }
    }
}

/// What a Python `Loan`'s bytes are.
enum LoanPayload {
    /// A local buffer, published by copy through this publisher (pubsub today).
    Local {
        publisher: PublisherCell,
        bytes: OwnedBytes,
        state: StdMutex<LocalLoan>,
    },
    /// The slot of an spsc producer's outstanding loan, generation `gen`.
    Spsc { cell: ProducerCell, gen: u64 },
}

#[derive(Default)]
struct LocalLoan {
    exports: usize,
    done: bool,
}

/// A buffer to fill and then ``send()`` (a ``with`` block sends it on success and
/// discards it on an exception). Writable: ``memoryview(loan)[:] = ...``,
/// ``numpy.frombuffer(loan, dtype=...)[:] = ...``. Release memoryviews and arrays
/// before sending (``BufferError`` otherwise): after sending, the bytes belong to
/// the receivers.
///
/// From an spsc ``Producer`` it is the channel's slot itself (zero copy); from a
/// ``Publisher`` it is a local buffer, copied into the channel on ``send()``.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Loan {
    payload: LoanPayload,
    ptr: usize,
    dims: Dims,
    len: usize,
}

fn loan_gone() -> PyErr {
    PyValueError::new_err("the loan was already sent or discarded: loan a new one")
}

#[pymethods]
impl Loan {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Sends the first ``length`` bytes (default: all of them).
    #[pyo3(signature = (length=None, timeout=None))]
    fn send(&self, py: Python<'_>, length: Option<usize>, timeout: Option<f64>) -> PyResult<()> {
        let n = length.unwrap_or(self.len);
        if n > self.len {
            return Err(PyValueError::new_err(format!(
                "length {n} is larger than the loan's {} bytes",
                self.len
            )));
        }
        match &self.payload {
            LoanPayload::Spsc { cell, gen } => {
                let mut g = lock(cell);
                let l = g
                    .as_mut()
                    .filter(|l| l.current(*gen))
                    .ok_or_else(loan_gone)?;
                if l.exports > 0 {
                    return Err(PyBufferError::new_err(format!(
                        "the loan is still in use by {} exported buffer(s): release them (del the array, memoryview.release()) before sending",
                        l.exports
                    )));
                }
                let mut loan = l.out.take().ok_or_else(loan_gone)?;
                loan.truncate(n);
                loan.send();
                Ok(())
            }
            LoanPayload::Local {
                publisher,
                bytes,
                state,
            } => {
                {
                    let mut st = lock(state);
                    if st.done {
                        return Err(loan_gone());
                    }
                    if st.exports > 0 {
                        return Err(PyBufferError::new_err(format!(
                            "the loan is still in use by {} exported buffer(s): release them (del the array, memoryview.release()) before sending",
                            st.exports
                        )));
                    }
                    st.done = true;
                }
                // SAFETY: no buffer is exported (checked above, and `done` refuses new
                // ones), so nothing writes the bytes while this slice lives.
                let data = &unsafe { bytes.as_slice() }[..n];
                publish(py, publisher, data, timeout)
            }
        }
    }

    /// Gives the slot back unsent.
    fn discard(&self) -> PyResult<()> {
        match &self.payload {
            LoanPayload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.give_back("loan")?;
                    }
                }
            }
            LoanPayload::Local { state, .. } => {
                let mut st = lock(state);
                if st.exports > 0 {
                    return Err(PyBufferError::new_err(
                        "the loan is still in use by exported buffers: release them first",
                    ));
                }
                st.done = true;
            }
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some_and(|t| !t.is_none()) {
            self.discard()?;
        } else if !self.done() {
            self.send(py, None, None)?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Loan len={}>", self.len)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let owner = slf.clone().into_any();
        match &this.payload {
            LoanPayload::Spsc { cell, gen } => {
                let mut g = lock(cell);
                let l = g
                    .as_mut()
                    .filter(|l| l.current(*gen))
                    .ok_or_else(loan_gone)?;
                // SAFETY: the slot of loan `gen`, lent to this process alone (the
                // ring's protocol) until sent or discarded, which refuse while
                // `exports > 0`; writable.
                unsafe {
                    buffer::fill(view, flags, this.ptr as *mut u8, false, &this.dims, owner)?
                };
                l.exports += 1;
            }
            LoanPayload::Local { state, .. } => {
                let mut st = lock(state);
                if st.done {
                    return Err(loan_gone());
                }
                // SAFETY: bytes this object owns (the buffer references it); Rust
                // reads them only when no buffer is exported.
                unsafe {
                    buffer::fill(view, flags, this.ptr as *mut u8, false, &this.dims, owner)?
                };
                st.exports += 1;
            }
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        match &self.payload {
            LoanPayload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.exports = l.exports.saturating_sub(1);
                    }
                }
            }
            LoanPayload::Local { state, .. } => {
                let mut st = lock(state);
                st.exports = st.exports.saturating_sub(1);
            }
        }
    }
}

impl Loan {
    fn done(&self) -> bool {
        match &self.payload {
            LoanPayload::Spsc { cell, gen } => {
                !lock(cell).as_ref().is_some_and(|l| l.current(*gen))
            }
            LoanPayload::Local { state, .. } => lock(state).done,
        }
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let LoanPayload::Spsc { cell, gen } = &self.payload {
            if let Some(l) = lock(cell).as_mut() {
                if l.current(*gen) {
                    // Unsent: the Rust loan's drop gives the slot back.
                    l.out = None;
                    l.exports = 0;
                }
            }
        }
    }
}

fn send_err_or_retry(e: SendError) -> Option<Result<(), SendError>> {
    match e {
        SendError::Timeout(()) => None,
        e => Some(Err(e)),
    }
}

/// Publishes `data` on a pubsub publisher, in GIL-released slices.
fn publish(
    py: Python<'_>,
    cell: &PublisherCell,
    data: &[u8],
    timeout: Option<f64>,
) -> PyResult<()> {
    let t = Timeout::new(timeout)?;
    let data = SendSlice(data.as_ptr(), data.len());
    let r = slices(py, t, |slice| {
        let mut g = lock(cell);
        let Some(p) = g.as_mut() else {
            return Some(Err(None));
        };
        // SAFETY: `data` borrows the caller's slice for this whole call.
        let msg = unsafe { data.get() };
        match p.send_timeout(msg, slice) {
            Ok(()) => Some(Ok(())),
            Err(e) => send_err_or_retry(e).map(|r| r.map_err(Some)),
        }
    })?;
    match r {
        None => Err(errors::timeout(
            "room in the channel (a subscriber is slow)",
            t.secs(),
        )),
        Some(Ok(())) => Ok(()),
        Some(Err(None)) => Err(closed("publisher")),
        Some(Err(Some(e))) => Err(errors::send(e)),
    }
}

/// A borrowed byte slice carried into a GIL-released closure on the same thread.
#[derive(Clone, Copy)]
struct SendSlice(*const u8, usize);

// SAFETY: only used within the call that borrowed the slice, on its thread
// (`Python::detach` runs the closure on the calling thread).
unsafe impl Send for SendSlice {}
// SAFETY: as for `Send`: read only, within the borrowing call.
unsafe impl Sync for SendSlice {}

impl SendSlice {
    /// # Safety
    /// The slice this was made from is still borrowed.
    unsafe fn get(&self) -> &[u8] {
        if self.1 == 0 {
            return &[];
        }
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(self.0, self.1) }
    }
}

// ---------------------------------------------------------------- spsc producer

/// The sending end of an spsc channel (one producer, one consumer, zero copy).
/// ``Producer(name, capacity=256, slot_size=4096)`` creates the channel if the name
/// is free and opens it if it exists (then its own sizes apply).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Producer {
    cell: ProducerCell,
    name: String,
    capacity: usize,
    slot_size: usize,
}

impl Producer {
    fn wrap(p: spsc::Producer) -> Self {
        Self {
            name: p.name().to_owned(),
            capacity: p.capacity(),
            slot_size: p.slot_size(),
            cell: Arc::new(StdMutex::new(Some(Lender::new(p)))),
        }
    }
}

fn spsc_opts(capacity: usize, slot_size: usize) -> spsc::Options {
    spsc::Options::new().capacity(capacity).slot_size(slot_size)
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (name, capacity=256, slot_size=4096))]
    fn py_new(py: Python<'_>, name: &str, capacity: usize, slot_size: usize) -> PyResult<Self> {
        let p = py
            .detach(|| spsc_opts(capacity, slot_size).create_or_open_producer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Creates the channel and attaches as its producer.
    #[classmethod]
    #[pyo3(signature = (name, capacity=256, slot_size=4096))]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        name: &str,
        capacity: usize,
        slot_size: usize,
    ) -> PyResult<Self> {
        let p = py
            .detach(|| spsc_opts(capacity, slot_size).create_producer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Opens an existing channel as its producer.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        let p = py
            .detach(|| spsc::Producer::open(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Slots in the ring.
    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest message in bytes.
    #[getter]
    fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Copies ``data`` (any bytes-like object) into the channel, waiting at most
    /// ``timeout`` seconds for room (``None``: for ever). ``shmipc.Disconnected``
    /// if the consumer has gone; ``TimeoutError``; ``ValueError`` if too large.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let src = Source::new(data)?;
        let bytes = src.bytes();
        let t = Timeout::new(timeout)?;
        let cell = &self.cell;
        let r = slices(py, t, |slice| {
            let mut g = lock(cell);
            let Some(l) = g.as_mut() else {
                return Some(Err(None));
            };
            let Some(p) = l.endpoint() else {
                return Some(Err(Some(Err(()))));
            };
            // SAFETY: `src` keeps the buffer alive for this whole call.
            let msg = unsafe { bytes.as_slice() };
            match p.send_timeout(msg, slice) {
                Ok(()) => Some(Ok(())),
                Err(e) => send_err_or_retry(e).map(|r| r.map_err(|e| Some(Ok(e)))),
            }
        })?;
        drop(src);
        match r {
            None => Err(errors::timeout(
                "room in the channel (the consumer is slow)",
                t.secs(),
            )),
            Some(Ok(())) => Ok(()),
            Some(Err(None)) => Err(closed("producer")),
            Some(Err(Some(Err(())))) => Err(outstanding_loan()),
            Some(Err(Some(Ok(e)))) => Err(errors::send(e)),
        }
    }

    /// Loans the next slot for a message of ``size`` bytes, waiting at most
    /// ``timeout`` seconds for room: a writable buffer; fill it, then
    /// ``loan.send()`` (or use ``with``). One loan at a time.
    #[pyo3(signature = (size, timeout=None))]
    fn loan(&self, py: Python<'_>, size: usize, timeout: Option<f64>) -> PyResult<Loan> {
        let t = Timeout::new(timeout)?;
        let cell = &self.cell;
        let r = slices(py, t, |slice| {
            let mut g = lock(cell);
            let Some(l) = g.as_mut() else {
                return Some(Err(None));
            };
            let Some(p) = l.endpoint() else {
                return Some(Err(Some(Err(()))));
            };
            match p.loan_timeout(size, slice) {
                Ok(mut loan) => {
                    let ptr = loan.as_mut_ptr() as usize;
                    l.out = Some(loan);
                    l.exports = 0;
                    l.gen += 1;
                    Some(Ok((ptr, l.gen)))
                }
                Err(e) => send_err_or_retry(e).map(|r| r.map(|()| (0, 0)).map_err(|e| Some(Ok(e)))),
            }
        })?;
        match r {
            None => Err(errors::timeout(
                "room in the channel (the consumer is slow)",
                t.secs(),
            )),
            Some(Ok((ptr, gen))) => Ok(Loan {
                payload: LoanPayload::Spsc {
                    cell: Arc::clone(&self.cell),
                    gen,
                },
                ptr,
                dims: Dims::new(size),
                len: size,
            }),
            Some(Err(None)) => Err(closed("producer")),
            Some(Err(Some(Err(())))) => Err(outstanding_loan()),
            Some(Err(Some(Ok(e)))) => Err(errors::send(e)),
        }
    }

    /// Whether a live consumer is attached.
    fn consumer_present(&self) -> PyResult<bool> {
        let mut g = lock(&self.cell);
        let l = g.as_mut().ok_or_else(|| closed("producer"))?;
        match l.endpoint() {
            Some(p) => Ok(p.consumer_present()),
            None => Err(outstanding_loan()),
        }
    }

    /// Detaches (the consumer then gets ``shmipc.Disconnected`` once it has read
    /// everything). ``BufferError`` while a loan's buffer is exported.
    fn close(&self) -> PyResult<()> {
        let mut g = lock(&self.cell);
        if let Some(l) = g.as_mut() {
            l.give_back("loan")?;
        }
        *g = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Producer name={:?}>", self.name)
    }
}

fn outstanding_loan() -> PyErr {
    PyValueError::new_err("a loan is outstanding: send() or discard() it first")
}

// ---------------------------------------------------------------- spsc consumer

/// The receiving end of an spsc channel. ``Consumer(name, capacity=256,
/// slot_size=4096)`` creates the channel if the name is free and opens it if it
/// exists. Samples are read in place: one at a time (the next ``recv`` releases
/// the previous sample, or raises ``BufferError`` if a memoryview or array still
/// uses it).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Consumer {
    cell: ConsumerCell,
    name: String,
}

impl Consumer {
    fn wrap(c: spsc::Consumer) -> Self {
        Self {
            name: c.name().to_owned(),
            cell: Arc::new(StdMutex::new(Some(Lender::new(c)))),
        }
    }

    fn recv_impl(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        let t = Timeout::new(timeout)?;
        {
            let mut g = lock(&self.cell);
            let l = g.as_mut().ok_or_else(|| closed("consumer"))?;
            l.give_back("previous sample")?;
        }
        let cell = &self.cell;
        let r = slices(py, t, |slice| {
            let mut g = lock(cell);
            let Some(l) = g.as_mut() else {
                return Some(Err(None));
            };
            let Some(c) = l.endpoint() else {
                // Another thread received a sample since the check above.
                return Some(Err(Some(Err(()))));
            };
            match c.recv_timeout(slice) {
                Ok(s) => {
                    let (ptr, len) = (s.as_ptr() as usize, s.len());
                    l.out = Some(s);
                    l.exports = 0;
                    l.gen += 1;
                    Some(Ok((ptr, len, l.gen)))
                }
                Err(RecvError::Empty) => None,
                Err(e) => Some(Err(Some(Ok(e)))),
            }
        })?;
        match r {
            None => Err(errors::timeout("a message", t.secs())),
            Some(Ok((ptr, len, gen))) => Ok(Sample {
                payload: Payload::Spsc {
                    cell: Arc::clone(&self.cell),
                    gen,
                },
                ptr,
                dims: Dims::new(len),
                len,
                lost: 0,
                owned_exports: StdMutex::new(0),
            }),
            Some(Err(None)) => Err(closed("consumer")),
            Some(Err(Some(Err(())))) => Err(PyValueError::new_err(
                "another thread received a sample from this consumer meanwhile: a consumer lends one sample at a time; release it first",
            )),
            Some(Err(Some(Ok(e)))) => Err(errors::recv(e)),
        }
    }
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (name, capacity=256, slot_size=4096))]
    fn py_new(py: Python<'_>, name: &str, capacity: usize, slot_size: usize) -> PyResult<Self> {
        let c = py
            .detach(|| spsc_opts(capacity, slot_size).create_or_open_consumer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(c))
    }

    /// Creates the channel and attaches as its consumer.
    #[classmethod]
    #[pyo3(signature = (name, capacity=256, slot_size=4096))]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        name: &str,
        capacity: usize,
        slot_size: usize,
    ) -> PyResult<Self> {
        let c = py
            .detach(|| spsc_opts(capacity, slot_size).create_consumer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(c))
    }

    /// Opens an existing channel as its consumer.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, name: &str) -> PyResult<Self> {
        let c = py
            .detach(|| spsc::Consumer::open(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(c))
    }

    /// The channel's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The next message as a ``Sample`` (read in place), waiting at most
    /// ``timeout`` seconds (``None``: for ever; the GIL is released and Ctrl-C
    /// interrupts). ``TimeoutError``; ``shmipc.Disconnected`` when the producer has
    /// gone and everything it sent was received.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        self.recv_impl(py, timeout)
    }

    /// Whether a live producer is attached.
    fn producer_present(&self) -> PyResult<bool> {
        let mut g = lock(&self.cell);
        let l = g.as_mut().ok_or_else(|| closed("consumer"))?;
        // With a sample out the endpoint is borrowed; answer through a shared read
        // of the same state is not offered by the Rust API, so say so.
        match l.endpoint() {
            Some(c) => Ok(c.producer_present()),
            None => Err(PyValueError::new_err(
                "a sample is outstanding: release() it first",
            )),
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// ``for msg in consumer``: each message until the producer has gone.
    fn __next__(&self, py: Python<'_>) -> PyResult<Sample> {
        match self.recv_impl(py, None) {
            Err(e) if e.is_instance_of::<Disconnected>(py) => Err(PyStopIteration::new_err(())),
            r => r,
        }
    }

    /// Detaches (the producer then gets ``shmipc.Disconnected``). ``BufferError``
    /// while a sample's buffer is exported.
    fn close(&self) -> PyResult<()> {
        let mut g = lock(&self.cell);
        if let Some(l) = g.as_mut() {
            l.give_back("sample")?;
        }
        *g = None;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Consumer name={:?}>", self.name)
    }
}

// ---------------------------------------------------------------- pubsub

fn pubsub_opts(
    capacity: usize,
    slot_size: usize,
    max_subscribers: usize,
    overflow: &str,
    history: usize,
) -> PyResult<pubsub::Options> {
    let overflow = match overflow {
        "overwrite" => pubsub::Overflow::Overwrite,
        "block" => pubsub::Overflow::Block,
        o => {
            return Err(PyValueError::new_err(format!(
                "overflow {o:?} is not \"overwrite\" (slow subscribers lose the oldest) or \"block\" (the publisher waits)"
            )))
        }
    };
    Ok(pubsub::Options::new()
        .capacity(capacity)
        .slot_size(slot_size)
        .max_subscribers(max_subscribers)
        .overflow(overflow)
        .history(history))
}

/// The publishing end of a pubsub channel (one publisher, many subscribers).
/// ``Publisher(topic, capacity=256, slot_size=4096, max_subscribers=16,
/// overflow="overwrite")`` creates the topic if the name is free and opens it if it
/// exists (then its own parameters apply) — the same defaults as ``shmipc pub``.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Publisher {
    cell: PublisherCell,
    name: String,
    slot_size: usize,
}

impl Publisher {
    fn wrap(p: pubsub::Publisher) -> Self {
        Self {
            name: p.name().to_owned(),
            slot_size: p.slot_size(),
            cell: Arc::new(StdMutex::new(Some(p))),
        }
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (topic, capacity=256, slot_size=4096, max_subscribers=16, overflow="overwrite"))]
    fn py_new(
        py: Python<'_>,
        topic: &str,
        capacity: usize,
        slot_size: usize,
        max_subscribers: usize,
        overflow: &str,
    ) -> PyResult<Self> {
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, 0)?;
        let p = py
            .detach(|| o.create_or_open_publisher(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Creates the topic and attaches as its publisher.
    #[classmethod]
    #[pyo3(signature = (topic, capacity=256, slot_size=4096, max_subscribers=16, overflow="overwrite"))]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        topic: &str,
        capacity: usize,
        slot_size: usize,
        max_subscribers: usize,
        overflow: &str,
    ) -> PyResult<Self> {
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, 0)?;
        let p = py
            .detach(|| o.create_publisher(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Opens an existing topic as its publisher.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, py: Python<'_>, topic: &str) -> PyResult<Self> {
        let p = py
            .detach(|| pubsub::Publisher::open(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// The topic's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Largest message in bytes.
    #[getter]
    fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Live subscribers now.
    fn subscribers(&self) -> PyResult<usize> {
        lock(&self.cell)
            .as_ref()
            .map(pubsub::Publisher::subscribers)
            .ok_or_else(|| closed("publisher"))
    }

    /// Publishes a copy of ``data`` (any bytes-like object); in block mode waits at
    /// most ``timeout`` seconds for slow subscribers (``None``: for ever).
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let src = Source::new(data)?;
        let bytes = src.bytes();
        // SAFETY: `src` lives until the end of this function.
        let r = publish(py, &self.cell, unsafe { bytes.as_slice() }, timeout);
        drop(src);
        r
    }

    /// A writable buffer of ``size`` bytes to fill and ``send()`` (or use
    /// ``with``). Today it is a local buffer copied into the channel on send.
    fn loan(&self, size: usize) -> PyResult<Loan> {
        if size > self.slot_size {
            return Err(PyValueError::new_err(format!(
                "a loan of {size} bytes does not fit a slot of {} bytes: loan less, or recreate the topic with larger slots",
                self.slot_size
            )));
        }
        let bytes = OwnedBytes::new(vec![0; size]);
        Ok(Loan {
            ptr: bytes.ptr.as_ptr() as usize,
            dims: Dims::new(size),
            len: size,
            payload: LoanPayload::Local {
                publisher: Arc::clone(&self.cell),
                bytes,
                state: StdMutex::new(LocalLoan::default()),
            },
        })
    }

    /// Detaches (subscribers get ``shmipc.Disconnected`` once they have read
    /// everything).
    fn close(&self) {
        lock(&self.cell).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Publisher topic={:?}>", self.name)
    }
}

/// A subscribing end of a pubsub channel. ``Subscriber(topic, history=0)``
/// subscribes, creating the topic if it does not exist yet (with the other
/// arguments, as ``Publisher``), and receives the messages published from now on
/// (or up to ``history`` earlier ones still in the ring).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Subscriber {
    cell: SubscriberCell,
    name: String,
}

impl Subscriber {
    fn wrap(s: pubsub::Subscriber) -> Self {
        Self {
            name: s.name().to_owned(),
            cell: Arc::new(StdMutex::new(Some(s))),
        }
    }

    fn recv_impl(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        let t = Timeout::new(timeout)?;
        let cell = &self.cell;
        let r = slices(py, t, |slice| {
            let mut g = lock(cell);
            let Some(s) = g.as_mut() else {
                return Some(Err(None));
            };
            // SWITCH: with zero-copy pubsub, receive a loaned `pubsub::Sample` here
            // and return `Payload::PubSub(sample)` below instead of a copy.
            match s.recv_timeout(slice) {
                Ok(m) => Some(Ok(m)),
                Err(RecvError::Empty) => None,
                Err(e) => Some(Err(Some(e))),
            }
        })?;
        match r {
            None => Err(errors::timeout("a message", t.secs())),
            Some(Ok(m)) => Ok(Sample::owned(m.data, m.lost)),
            Some(Err(None)) => Err(closed("subscriber")),
            Some(Err(Some(e))) => Err(errors::recv(e)),
        }
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (topic, history=0, capacity=256, slot_size=4096, max_subscribers=16, overflow="overwrite"))]
    fn py_new(
        py: Python<'_>,
        topic: &str,
        history: usize,
        capacity: usize,
        slot_size: usize,
        max_subscribers: usize,
        overflow: &str,
    ) -> PyResult<Self> {
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, history)?;
        let s = py
            .detach(|| o.create_or_open_subscriber(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(s))
    }

    /// Subscribes to an existing topic; ``FileNotFoundError`` if there is none.
    #[classmethod]
    #[pyo3(signature = (topic, history=0))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        topic: &str,
        history: usize,
    ) -> PyResult<Self> {
        let s = py
            .detach(|| pubsub::Subscriber::open_with_history(topic, history))
            .map_err(errors::channel)?;
        Ok(Self::wrap(s))
    }

    /// The topic's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether a live publisher is attached now.
    fn publisher_present(&self) -> PyResult<bool> {
        lock(&self.cell)
            .as_ref()
            .map(pubsub::Subscriber::publisher_present)
            .ok_or_else(|| closed("subscriber"))
    }

    /// The next message as a ``Sample``, waiting at most ``timeout`` seconds
    /// (``None``: for ever; the GIL is released and Ctrl-C interrupts).
    /// ``TimeoutError``; ``shmipc.Disconnected`` when the publisher has gone and
    /// everything it sent was received.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        self.recv_impl(py, timeout)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// ``for msg in subscriber``: each message until the publisher has gone.
    fn __next__(&self, py: Python<'_>) -> PyResult<Sample> {
        match self.recv_impl(py, None) {
            Err(e) if e.is_instance_of::<Disconnected>(py) => Err(PyStopIteration::new_err(())),
            r => r,
        }
    }

    /// Unsubscribes.
    fn close(&self) {
        lock(&self.cell).take();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("<shmipc.Subscriber topic={:?}>", self.name)
    }
}
