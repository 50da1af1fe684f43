//! Channels: `shmipc.Producer`/`shmipc.Consumer` (spsc) and
//! `shmipc.Publisher`/`shmipc.Subscriber` (pubsub), with `Loan` (a writable buffer
//! to fill and send) and `Sample` (a received message, a read-only buffer).
//!
//! # Zero copy, and where it comes from
//!
//! * spsc: a `Loan` is the channel's slot itself and a `Sample` reads the slot in
//!   place (the Rust `spsc::Loan` / `spsc::Sample`).
//! * pubsub: a `Loan` is a chunk of the topic's pool loaned to the publisher (the
//!   Rust `pubsub::Loan`) and a `Sample` reads the chunk in place (the Rust
//!   `pubsub::Sample`); a subscriber may hold up to its topic's `max_held` samples
//!   at once.
//!
//! # Safety
//!
//! The Rust loans and samples borrow their endpoint, but in Python they are
//! separate objects that outlive the call that made them. So each endpoint lives
//! in a heap cell beside what it has out, and is only reached through that cell's
//! lock:
//!
//! * a `Lender` (spsc producer and consumer, pubsub publisher) holds the one loan
//!   or sample its endpoint lends at a time;
//! * a `Holder` (pubsub subscriber) holds the samples its subscriber lends, up to
//!   `max_held`, each under a key.
//!
//! In both the endpoint is boxed and only reached through a raw pointer, never
//! moved, and the borrowed items are dropped before the endpoint (`Drop`), so the
//! `'static` lifetime they are stored with never outlives what they borrow. The
//! Python `Loan`/`Sample` reach their Rust counterpart only through the cell's lock
//! and a generation number or key, so a stale Python object cannot touch a newer
//! one. Exported buffers are counted: a loan or sample is not handed back (sent,
//! released, or the endpoint closed) while a memoryview or array still points
//! into it; `BufferError` says so instead, as Python's `mmap` does.
//!
//! The Rust pubsub `Sample` is neither `Send` nor `Sync` (it borrows a subscriber
//! that keeps a `RefCell`), so a wait never carries one out of a GIL-released
//! closure: the closure stores it in the `Holder` under the lock and returns plain
//! numbers (pointer, length, key), which are `Send`.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};

use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use shmipc::channel::{pubsub, spsc, RecvError, SendError};

use crate::args;
use crate::buffer::{self, Dims, Source};
use crate::errors::{self, Disconnected};
use crate::wait::{slices, Timeout};

fn lock<T>(m: &StdMutex<T>) -> StdGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn closed(what: &str) -> PyErr {
    PyValueError::new_err(format!("the {what} is closed"))
}

fn still_exported(what: &str, n: usize) -> PyErr {
    PyBufferError::new_err(format!(
        "the {what} is still in use by {n} exported buffer(s) (memoryview, NumPy array, …): release them first (del the array, memoryview.release()), or copy with bytes()"
    ))
}

/// The process that opened an endpoint, and what to call it.
///
/// A child forked from that process inherits copies of the Python objects (the
/// endpoint, its samples and loans) but not the right to use them: the endpoint's
/// place in the channel, the slots and chunks it holds are the parent's. Every
/// operation in another process is refused (`check`), and dropping the copies
/// there hands nothing back (`Lender`/`Holder` leak instead, `Sample`/`Loan` do
/// not touch their cell).
struct Origin {
    pid: u32,
    /// The Python class: `Subscriber`, `Consumer`, …
    kind: &'static str,
    name: String,
}

impl Origin {
    fn new(kind: &'static str, name: &str) -> Arc<Self> {
        Arc::new(Self {
            pid: std::process::id(),
            kind,
            name: name.to_owned(),
        })
    }

    /// Whether this process opened the endpoint.
    fn mine(&self) -> bool {
        self.pid == std::process::id()
    }

    /// Refuses use in a forked child; `item` names a sample or loan of the endpoint.
    fn check(&self, item: Option<&str>) -> PyResult<()> {
        if self.mine() {
            return Ok(());
        }
        let (kind, name, pid) = (self.kind, &self.name, self.pid);
        let this = match item {
            None => format!("this shmipc.{kind} of `{name}`"),
            Some(i) => format!("this {i} (of a shmipc.{kind} of `{name}`)"),
        };
        Err(PyRuntimeError::new_err(format!(
            "{this} belongs to process {pid}, which this process was forked from: a forked child cannot use its parent's channel endpoints or what they lent (the parent still owns them; nothing is handed back from here): open a new endpoint in this process, e.g. shmipc.{kind}({name:?})"
        )))
    }
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
    /// The process that opened it; elsewhere (a forked child) `Drop` leaks.
    pid: u32,
}

// SAFETY: the endpoints (spsc `Producer`/`Consumer`, pubsub `Publisher`) are
// `Send`; the loan/sample (raw pointers into the mapping plus a borrow of the
// endpoint) may be used and dropped on any thread, since handing a slot or chunk
// back is atomic stores and a wake, with no thread affinity; all access goes
// through the `StdMutex` around the `Lender`, one thread at a time.
unsafe impl<E: Send + 'static, L> Send for Lender<E, L> {}

impl<E: 'static, L> Lender<E, L> {
    fn new(endpoint: E) -> Self {
        Self {
            out: None,
            exports: 0,
            gen: 0,
            endpoint: NonNull::from(Box::leak(Box::new(endpoint))),
            pid: std::process::id(),
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
            return Err(still_exported(what, self.exports));
        }
        self.out = None;
        self.exports = 0;
        Ok(())
    }
}

impl<E: 'static, L> Drop for Lender<E, L> {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // A forked child's copy: the loan or sample and the endpoint's place
            // in the channel are the parent's; dropping them would hand the
            // parent's slot or chunk back (or detach it). Leak them here.
            std::mem::forget(self.out.take());
            return;
        }
        self.out = None;
        // SAFETY: from `Box::leak` in `new`, freed only here; `out`, the only
        // borrower, was dropped just above.
        drop(unsafe { Box::from_raw(self.endpoint.as_ptr()) });
    }
}

/// A pubsub sample held by a Python `Sample`.
struct Held {
    key: u64,
    /// Buffers exported from it.
    exports: usize,
    sample: pubsub::Sample<'static>,
}

/// A pubsub subscriber and the samples it has lent out (at most its `max_held`).
struct Holder {
    /// Declared first; `Drop` clears it before freeing the subscriber it borrows.
    held: Vec<Held>,
    /// The last key given out.
    key: u64,
    /// `Box::into_raw` of the subscriber; freed in `Drop`.
    sub: NonNull<pubsub::Subscriber>,
    /// The process that opened it; elsewhere (a forked child) `Drop` leaks.
    pid: u32,
}

// SAFETY: the subscriber is `Send` (it is `!Sync` for its `RefCell`); the held
// samples are a borrow of it plus a raw pointer into the mapping, and releasing
// one is atomic stores with no thread affinity. Every use of the subscriber and of
// the samples goes through the `StdMutex` around the `Holder`, so one thread at a
// time touches them, which is all `!Sync` asks.
unsafe impl Send for Holder {}

impl Holder {
    fn new(sub: pubsub::Subscriber) -> Self {
        Self {
            held: Vec::new(),
            key: 0,
            sub: NonNull::from(Box::leak(Box::new(sub))),
            pid: std::process::id(),
        }
    }

    /// The subscriber.
    ///
    /// The `'static` is a promise kept by this type: samples received through it
    /// are only stored in `self.held`, which is cleared before the subscriber is
    /// freed; other uses end while the caller holds `&mut self` (the cell's lock).
    fn sub(&self) -> &'static pubsub::Subscriber {
        // SAFETY: `sub` came from `Box::leak` and is freed only in `Drop`, after
        // `held` (every sample that borrows it) is cleared; it is only read through
        // shared references, and only by the thread holding the cell's lock.
        unsafe { &*self.sub.as_ptr() }
    }

    fn find(&mut self, key: u64) -> Option<&mut Held> {
        self.held.iter_mut().find(|h| h.key == key)
    }

    /// Releases sample `key` (a no-op if gone), unless buffers still point into it.
    fn release(&mut self, key: u64) -> PyResult<()> {
        if let Some(i) = self.held.iter().position(|h| h.key == key) {
            if self.held[i].exports > 0 {
                return Err(still_exported("sample", self.held[i].exports));
            }
            self.held.swap_remove(i);
        }
        Ok(())
    }

    /// Releases every sample, unless buffers still point into one (then none).
    fn release_all(&mut self) -> PyResult<()> {
        let n: usize = self.held.iter().map(|h| h.exports).sum();
        if n > 0 {
            return Err(still_exported("subscriber's samples", n));
        }
        self.held.clear();
        Ok(())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            // A forked child's copy: the holds are the parent's (dropping a
            // sample would let the publisher overwrite a chunk the parent reads).
            // Leak them and the subscriber here.
            std::mem::forget(std::mem::take(&mut self.held));
            return;
        }
        self.held.clear();
        // SAFETY: from `Box::leak` in `new`, freed only here; the samples, its only
        // borrowers, were dropped just above.
        drop(unsafe { Box::from_raw(self.sub.as_ptr()) });
    }
}

type ConsumerCell = Arc<StdMutex<Option<Lender<spsc::Consumer, spsc::Sample<'static>>>>>;
type ProducerCell = Arc<StdMutex<Option<Lender<spsc::Producer, spsc::Loan<'static>>>>>;
type SubscriberCell = Arc<StdMutex<Option<Holder>>>;
type PublisherCell = Arc<StdMutex<Option<Lender<pubsub::Publisher, pubsub::Loan<'static>>>>>;

/// What a Python `Sample`'s bytes are.
enum Payload {
    /// The slot of an spsc consumer's outstanding sample, generation `gen`.
    Spsc { cell: ConsumerCell, gen: u64 },
    /// The chunk of a pubsub subscriber's held sample `key`.
    PubSub { cell: SubscriberCell, key: u64 },
}

/// A received message: a read-only buffer over the channel's shared memory
/// (``memoryview(s)``, ``numpy.frombuffer(s, ...)`` share it; ``bytes(s)`` is a
/// copy).
///
/// The memory stays lent to this process until the sample is released
/// (``release()``, the end of a ``with`` block, or when the object is freed;
/// for an spsc ``Consumer`` also its next ``recv``, for a pubsub ``Subscriber`` its
/// ``close()``); ``BufferError`` refuses that while a memoryview or array still
/// uses it. A pubsub subscriber may hold up to ``max_held`` samples at once.
///
/// Trust model: under the zero-copy contract a correct publisher or producer does
/// not write memory it lent. A buggy or hostile process that maps the channel
/// can, and then you read bytes that may change while you read them (never memory
/// outside the sample, and shmipc itself validates everything it reads from the
/// channel). Validate what you parse from untrusted peers, or copy with
/// ``bytes(sample)`` first.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Sample {
    payload: Payload,
    origin: Arc<Origin>,
    ptr: usize,
    dims: Dims,
    len: usize,
    /// pubsub: messages this subscriber lost just before this one (overwrite
    /// mode); 0 for spsc.
    #[pyo3(get)]
    lost: u64,
    /// pubsub: the message's number (from 0, in publishing order); None for spsc.
    #[pyo3(get)]
    seq: Option<u64>,
}

impl Sample {
    fn released() -> PyErr {
        PyValueError::new_err(
            "the sample was released (its memory went back to the channel, by release(), a with block, the consumer's next recv or the endpoint's close()): copy it with bytes(sample) to keep it",
        )
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        if !self.origin.mine() {
            // A forked child's copy: the parent's (see `Origin`).
            return;
        }
        // No buffer can be exported: each one holds a reference to this object.
        match &self.payload {
            Payload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.out = None;
                        l.exports = 0;
                    }
                }
            }
            Payload::PubSub { cell, key } => {
                if let Some(h) = lock(cell).as_mut() {
                    if let Some(i) = h.held.iter().position(|s| s.key == *key) {
                        h.held.swap_remove(i);
                    }
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

    /// Hands the memory back to the channel now (a no-op if already released).
    /// ``BufferError`` while a memoryview or array still uses it.
    fn release(&self) -> PyResult<()> {
        self.origin.check(Some("sample"))?;
        match &self.payload {
            Payload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.give_back("sample")?;
                    }
                }
            }
            Payload::PubSub { cell, key } => {
                if let Some(h) = lock(cell).as_mut() {
                    h.release(*key)?;
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
        match self.seq {
            Some(seq) => format!(
                "<shmipc.Sample len={} seq={seq} lost={}>",
                self.len, self.lost
            ),
            None => format!("<shmipc.Sample len={}>", self.len),
        }
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        this.origin.check(Some("sample"))?;
        let owner = slf.clone().into_any();
        match &this.payload {
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
            Payload::PubSub { cell, key } => {
                let mut g = lock(cell);
                let h = g
                    .as_mut()
                    .and_then(|h| h.find(*key))
                    .ok_or_else(Self::released)?;
                // SAFETY: `ptr` is the payload of held sample `key` (`len` bytes
                // inside the mapping, checked by the Rust subscriber), which stays
                // held while `exports > 0` (release, release_all and the subscriber's
                // close refuse; the Python object cannot be freed while a buffer
                // references it); read-only.
                unsafe { buffer::fill(view, flags, this.ptr as *mut u8, true, &this.dims, owner)? };
                h.exports += 1;
            }
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        if !self.origin.mine() {
            return;
        }
        match &self.payload {
            Payload::Spsc { cell, gen } => {
                if let Some(l) = lock(cell).as_mut() {
                    if l.current(*gen) {
                        l.exports = l.exports.saturating_sub(1);
                    }
                }
            }
            Payload::PubSub { cell, key } => {
                if let Some(h) = lock(cell).as_mut().and_then(|h| h.find(*key)) {
                    h.exports = h.exports.saturating_sub(1);
                }
            }
        }
    }
}

/// A Rust loan the Python `Loan` can send.
trait Lent {
    fn cut(&mut self, len: usize);
    fn publish(self);
}

impl Lent for spsc::Loan<'_> {
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
    fn publish(self) {
        self.send();
    }
}

impl Lent for pubsub::Loan<'_> {
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
    fn publish(self) {
        self.send();
    }
}

/// What a Python `Loan`'s bytes are.
enum LoanPayload {
    /// The slot of an spsc producer's outstanding loan, generation `gen`.
    Spsc { cell: ProducerCell, gen: u64 },
    /// The chunk of a pubsub publisher's outstanding loan, generation `gen`.
    PubSub { cell: PublisherCell, gen: u64 },
}

/// Runs `$body` with `$cell`/`$gen` bound to either kind of loan's cell.
macro_rules! on_loan {
    ($payload:expr, |$cell:ident, $gen:ident| $body:expr) => {
        match $payload {
            LoanPayload::Spsc {
                cell: $cell,
                gen: $gen,
            } => $body,
            LoanPayload::PubSub {
                cell: $cell,
                gen: $gen,
            } => $body,
        }
    };
}

/// A buffer to fill and then ``send()`` (a ``with`` block sends it on success and
/// discards it on an exception). Writable: ``memoryview(loan)[:] = ...``,
/// ``numpy.frombuffer(loan, dtype=...)[:] = ...``. Release memoryviews and arrays
/// before sending (``BufferError`` otherwise): after sending, the bytes belong to
/// the receivers.
///
/// It is the channel's memory itself (zero copy): an spsc ``Producer``'s next slot,
/// or a chunk of a ``Publisher``'s pool, lent to this process alone until sent or
/// discarded. Fresh loans are not zeroed: they hold whatever an earlier message
/// left there, so write every byte you send. One loan per endpoint at a time.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Loan {
    payload: LoanPayload,
    origin: Arc<Origin>,
    ptr: usize,
    dims: Dims,
    len: usize,
}

fn loan_gone() -> PyErr {
    PyValueError::new_err("the loan was already sent or discarded: loan a new one")
}

fn loan_send<E, L: Lent>(
    cell: &StdMutex<Option<Lender<E, L>>>,
    gen: u64,
    n: usize,
) -> PyResult<()> {
    let mut g = lock(cell);
    let l = g
        .as_mut()
        .filter(|l| l.current(gen))
        .ok_or_else(loan_gone)?;
    if l.exports > 0 {
        return Err(PyBufferError::new_err(format!(
            "the loan is still in use by {} exported buffer(s): release them (del the array, memoryview.release()) before sending",
            l.exports
        )));
    }
    let mut loan = l.out.take().ok_or_else(loan_gone)?;
    loan.cut(n);
    loan.publish();
    Ok(())
}

#[pymethods]
impl Loan {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Sends the first ``length`` bytes (default: all of them). Never waits: the
    /// room was made when the loan was taken.
    #[pyo3(signature = (length=None, timeout=None))]
    fn send(
        &self,
        #[pyo3(from_py_with = args::send_length)] length: Option<usize>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.origin.check(Some("loan"))?;
        // Kept for compatibility: sending a loan never waits.
        Timeout::new(timeout)?;
        let n = length.unwrap_or(self.len);
        if n > self.len {
            return Err(PyValueError::new_err(format!(
                "length {n} is larger than the loan's {} bytes",
                self.len
            )));
        }
        on_loan!(&self.payload, |cell, gen| loan_send(cell, *gen, n))
    }

    /// Gives the memory back unsent (a no-op if already sent or discarded).
    /// ``BufferError`` while a memoryview or array still uses it.
    fn discard(&self) -> PyResult<()> {
        self.origin.check(Some("loan"))?;
        on_loan!(&self.payload, |cell, gen| {
            if let Some(l) = lock(cell).as_mut() {
                if l.current(*gen) {
                    l.give_back("loan")?;
                }
            }
        });
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.origin.check(Some("loan"))?;
        if exc_type.is_some_and(|t| !t.is_none()) {
            self.discard()?;
        } else if !self.done() {
            self.send(None, None)?;
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
        this.origin.check(Some("loan"))?;
        let owner = slf.clone().into_any();
        on_loan!(&this.payload, |cell, gen| {
            let mut g = lock(cell);
            let l = g
                .as_mut()
                .filter(|l| l.current(*gen))
                .ok_or_else(loan_gone)?;
            // SAFETY: `ptr` is the `len` bytes of loan `gen` (an spsc slot or a pubsub
            // chunk inside the mapping, checked by the Rust endpoint), lent to this
            // process alone (the channel's protocol) until sent or discarded, which
            // refuse while `exports > 0`; writable.
            unsafe { buffer::fill(view, flags, this.ptr as *mut u8, false, &this.dims, owner)? };
            l.exports += 1;
        });
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        if !self.origin.mine() {
            return;
        }
        on_loan!(&self.payload, |cell, gen| {
            if let Some(l) = lock(cell).as_mut() {
                if l.current(*gen) {
                    l.exports = l.exports.saturating_sub(1);
                }
            }
        });
    }
}

impl Loan {
    fn done(&self) -> bool {
        on_loan!(&self.payload, |cell, gen| !lock(cell)
            .as_ref()
            .is_some_and(|l| l.current(*gen)))
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if !self.origin.mine() {
            // A forked child's copy: the parent's (see `Origin`).
            return;
        }
        on_loan!(&self.payload, |cell, gen| {
            if let Some(l) = lock(cell).as_mut() {
                if l.current(*gen) {
                    // Unsent: the Rust loan's drop gives the memory back.
                    l.out = None;
                    l.exports = 0;
                }
            }
        });
    }
}

fn send_err_or_retry(e: SendError) -> Option<Result<(), SendError>> {
    match e {
        SendError::Timeout(()) => None,
        e => Some(Err(e)),
    }
}

// ---------------------------------------------------------------- spsc producer

/// The sending end of an spsc channel (one producer, one consumer, zero copy).
/// ``Producer(name, capacity=256, slot_size=4096)`` creates the channel if the name
/// is free and opens it if it exists (then its own sizes apply).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Producer {
    origin: Arc<Origin>,
    cell: ProducerCell,
    name: String,
    capacity: usize,
    slot_size: usize,
}

impl Producer {
    fn wrap(p: spsc::Producer) -> Self {
        Self {
            origin: Origin::new("Producer", p.name()),
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
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
    ) -> PyResult<Self> {
        let name = name.as_str();
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
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let p = py
            .detach(|| spsc_opts(capacity, slot_size).create_producer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Opens an existing channel as its producer.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
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
        self.origin.check(None)?;
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
    fn loan(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::loan_size)] size: usize,
        timeout: Option<f64>,
    ) -> PyResult<Loan> {
        self.origin.check(None)?;
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
                origin: Arc::clone(&self.origin),
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
        self.origin.check(None)?;
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
        self.origin.check(None)?;
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
    origin: Arc<Origin>,
    cell: ConsumerCell,
    name: String,
}

impl Consumer {
    fn wrap(c: spsc::Consumer) -> Self {
        Self {
            origin: Origin::new("Consumer", c.name()),
            name: c.name().to_owned(),
            cell: Arc::new(StdMutex::new(Some(Lender::new(c)))),
        }
    }

    fn recv_impl(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        self.origin.check(None)?;
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
                origin: Arc::clone(&self.origin),
                payload: Payload::Spsc {
                    cell: Arc::clone(&self.cell),
                    gen,
                },
                ptr,
                dims: Dims::new(len),
                len,
                lost: 0,
                seq: None,
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
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
    ) -> PyResult<Self> {
        let name = name.as_str();
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
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
    ) -> PyResult<Self> {
        let name = name.as_str();
        let c = py
            .detach(|| spsc_opts(capacity, slot_size).create_consumer(name))
            .map_err(errors::channel)?;
        Ok(Self::wrap(c))
    }

    /// Opens an existing channel as its consumer.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
    ) -> PyResult<Self> {
        let name = name.as_str();
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
        self.origin.check(None)?;
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
        self.origin.check(None)?;
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

/// Options to create a topic with, as `shmipc pub` makes them: the ring's worth of
/// messages (`capacity - 1`) kept for late subscribers that ask for history.
fn pubsub_opts(
    capacity: usize,
    slot_size: usize,
    max_subscribers: usize,
    overflow: &str,
    max_held: usize,
) -> PyResult<pubsub::Options> {
    let overflow = match overflow {
        "overwrite" => pubsub::Overflow::Overwrite,
        "block" => pubsub::Overflow::Block,
        o => {
            return Err(PyValueError::new_err(format!(
                "overflow {o:?} is not \"block\" (lossless: the publisher waits for slow subscribers) or \"overwrite\" (slow subscribers lose the oldest)"
            )))
        }
    };
    Ok(pubsub::Options::new()
        .capacity(capacity)
        .slot_size(slot_size)
        .max_subscribers(max_subscribers)
        .max_held(max_held)
        .overflow(overflow)
        .history(capacity.saturating_sub(1).min(0xffff)))
}

/// The Rust default: samples a subscriber may hold at once.
const MAX_HELD: usize = 4;

/// The publishing end of a pubsub channel (one publisher, many subscribers).
/// ``Publisher(topic, capacity=256, slot_size=4096, max_subscribers=16,
/// overflow="block", max_held=4)`` creates the topic if the name is free and
/// opens it if it exists (then its own parameters apply) — the same defaults as
/// ``shmipc pub``: lossless (``"block"``: the publisher waits for a live subscriber
/// that has not kept up); ``overflow="overwrite"`` never waits and slow
/// subscribers lose the oldest messages (``Sample.lost`` counts them). A topic
/// keeps its last ``capacity - 1`` messages in the ring for late subscribers that
/// ask for ``history`` (at no cost: they never hold the publisher up).
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Publisher {
    origin: Arc<Origin>,
    cell: PublisherCell,
    name: String,
    slot_size: usize,
}

impl Publisher {
    fn wrap(p: pubsub::Publisher) -> Self {
        Self {
            origin: Origin::new("Publisher", p.name()),
            name: p.name().to_owned(),
            slot_size: p.slot_size(),
            cell: Arc::new(StdMutex::new(Some(Lender::new(p)))),
        }
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (topic, capacity=256, slot_size=4096, max_subscribers=16, overflow="block", max_held=MAX_HELD))]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::topic)] topic: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
        #[pyo3(from_py_with = args::max_subscribers)] max_subscribers: usize,
        overflow: &str,
        #[pyo3(from_py_with = args::max_held)] max_held: usize,
    ) -> PyResult<Self> {
        let topic = topic.as_str();
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, max_held)?;
        let p = py
            .detach(|| o.create_or_open_publisher(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Creates the topic and attaches as its publisher.
    #[classmethod]
    #[pyo3(signature = (topic, capacity=256, slot_size=4096, max_subscribers=16, overflow="block", max_held=MAX_HELD))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::topic)] topic: String,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
        #[pyo3(from_py_with = args::max_subscribers)] max_subscribers: usize,
        overflow: &str,
        #[pyo3(from_py_with = args::max_held)] max_held: usize,
    ) -> PyResult<Self> {
        let topic = topic.as_str();
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, max_held)?;
        let p = py
            .detach(|| o.create_publisher(topic))
            .map_err(errors::channel)?;
        Ok(Self::wrap(p))
    }

    /// Opens an existing topic as its publisher.
    #[classmethod]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::topic)] topic: String,
    ) -> PyResult<Self> {
        let topic = topic.as_str();
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

    /// Live subscribers now. ``ValueError`` while a loan is outstanding.
    fn subscribers(&self) -> PyResult<usize> {
        self.origin.check(None)?;
        let mut g = lock(&self.cell);
        let l = g.as_mut().ok_or_else(|| closed("publisher"))?;
        match l.endpoint() {
            Some(p) => Ok(p.subscribers()),
            None => Err(outstanding_loan()),
        }
    }

    /// Publishes a copy of ``data`` (any bytes-like object); on a lossless
    /// (``"block"``) topic waits at most ``timeout`` seconds for slow subscribers
    /// (``None``: for ever; the GIL is released and Ctrl-C interrupts).
    /// ``TimeoutError``; ``ValueError`` if larger than ``slot_size``.
    #[pyo3(signature = (data, timeout=None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        self.origin.check(None)?;
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
                "room in the channel (a subscriber is slow)",
                t.secs(),
            )),
            Some(Ok(())) => Ok(()),
            Some(Err(None)) => Err(closed("publisher")),
            Some(Err(Some(Err(())))) => Err(outstanding_loan()),
            Some(Err(Some(Ok(e)))) => Err(errors::send(e)),
        }
    }

    /// Loans a chunk of the topic's shared memory for a message of ``size`` bytes,
    /// waiting at most ``timeout`` seconds for room on a lossless topic: a
    /// writable buffer (zero copy: subscribers read these very bytes); fill it,
    /// then ``loan.send()`` (or use ``with``: sent on success, discarded on an
    /// exception). One loan at a time.
    #[pyo3(signature = (size, timeout=None))]
    fn loan(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::loan_size)] size: usize,
        timeout: Option<f64>,
    ) -> PyResult<Loan> {
        self.origin.check(None)?;
        if size > self.slot_size {
            return Err(PyValueError::new_err(format!(
                "a loan of {size} bytes does not fit a slot of {} bytes: loan less, or recreate the topic with larger slots",
                self.slot_size
            )));
        }
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
                "room in the channel (a subscriber is slow)",
                t.secs(),
            )),
            Some(Ok((ptr, gen))) => Ok(Loan {
                origin: Arc::clone(&self.origin),
                payload: LoanPayload::PubSub {
                    cell: Arc::clone(&self.cell),
                    gen,
                },
                ptr,
                dims: Dims::new(size),
                len: size,
            }),
            Some(Err(None)) => Err(closed("publisher")),
            Some(Err(Some(Err(())))) => Err(outstanding_loan()),
            Some(Err(Some(Ok(e)))) => Err(errors::send(e)),
        }
    }

    /// Detaches (subscribers get ``shmipc.Disconnected`` once they have read
    /// everything). An outstanding loan is discarded; ``BufferError`` while its
    /// buffer is exported.
    fn close(&self) -> PyResult<()> {
        self.origin.check(None)?;
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
        format!("<shmipc.Publisher topic={:?}>", self.name)
    }
}

/// A subscribing end of a pubsub channel. ``Subscriber(topic, history=0)``
/// subscribes, creating the topic if it does not exist yet (with the other
/// arguments, as ``Publisher``), and receives the messages published from now on
/// (or up to ``history`` earlier ones still in the ring).
///
/// Samples are read in place (zero copy) and held until released; a subscriber
/// holds at most ``max_held`` at once (the topic's setting), and ``recv`` raises
/// ``shmipc.TooManyHeld`` beyond that. On a lossless topic a held sample never
/// stops the publisher; an unreceived message does.
#[pyclass(module = "shmipc", frozen)]
pub(crate) struct Subscriber {
    origin: Arc<Origin>,
    cell: SubscriberCell,
    name: String,
    max_held: usize,
}

impl Subscriber {
    fn wrap(s: pubsub::Subscriber) -> Self {
        Self {
            origin: Origin::new("Subscriber", s.name()),
            name: s.name().to_owned(),
            max_held: s.max_held(),
            cell: Arc::new(StdMutex::new(Some(Holder::new(s)))),
        }
    }

    fn recv_impl(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        self.origin.check(None)?;
        let t = Timeout::new(timeout)?;
        let cell = &self.cell;
        // Only plain numbers leave the GIL-released closure: the Rust sample (not
        // `Send`) is stored in the holder under the lock.
        let r = slices(py, t, |slice| {
            let mut g = lock(cell);
            let Some(h) = g.as_mut() else {
                return Some(Err(None));
            };
            match h.sub().recv_timeout(slice) {
                Ok(s) => {
                    let info = (s.as_ptr() as usize, s.len(), s.lost(), s.seq());
                    h.key += 1;
                    let key = h.key;
                    h.held.push(Held {
                        key,
                        exports: 0,
                        sample: s,
                    });
                    Some(Ok((info, key)))
                }
                Err(RecvError::Empty) => None,
                Err(e) => Some(Err(Some(e))),
            }
        })?;
        match r {
            None => Err(errors::timeout("a message", t.secs())),
            Some(Ok(((ptr, len, lost, seq), key))) => Ok(Sample {
                origin: Arc::clone(&self.origin),
                payload: Payload::PubSub {
                    cell: Arc::clone(&self.cell),
                    key,
                },
                ptr,
                dims: Dims::new(len),
                len,
                lost,
                seq: Some(seq),
            }),
            Some(Err(None)) => Err(closed("subscriber")),
            Some(Err(Some(e))) => Err(errors::recv(e)),
        }
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (topic, history=0, capacity=256, slot_size=4096, max_subscribers=16, overflow="block", max_held=MAX_HELD))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::topic)] topic: String,
        #[pyo3(from_py_with = args::history)] history: usize,
        #[pyo3(from_py_with = args::capacity)] capacity: usize,
        #[pyo3(from_py_with = args::slot_size)] slot_size: usize,
        #[pyo3(from_py_with = args::max_subscribers)] max_subscribers: usize,
        overflow: &str,
        #[pyo3(from_py_with = args::max_held)] max_held: usize,
    ) -> PyResult<Self> {
        let topic = topic.as_str();
        let o = pubsub_opts(capacity, slot_size, max_subscribers, overflow, max_held)?;
        let s = py
            .detach(|| o.create_or_open_subscriber_with_history(topic, history))
            .map_err(errors::channel)?;
        Ok(Self::wrap(s))
    }

    /// Subscribes to an existing topic; ``FileNotFoundError`` if there is none.
    #[classmethod]
    #[pyo3(signature = (topic, history=0))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        #[pyo3(from_py_with = args::topic)] topic: String,
        #[pyo3(from_py_with = args::history)] history: usize,
    ) -> PyResult<Self> {
        let topic = topic.as_str();
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

    /// Most samples this subscriber may hold at once (the topic's setting).
    #[getter]
    fn max_held(&self) -> usize {
        self.max_held
    }

    /// Samples this subscriber holds now (received and not yet released).
    #[getter]
    fn held(&self) -> PyResult<usize> {
        self.origin.check(None)?;
        lock(&self.cell)
            .as_ref()
            .map(|h| h.sub().held())
            .ok_or_else(|| closed("subscriber"))
    }

    /// Whether a live publisher is attached now.
    fn publisher_present(&self) -> PyResult<bool> {
        self.origin.check(None)?;
        lock(&self.cell)
            .as_ref()
            .map(|h| h.sub().publisher_present())
            .ok_or_else(|| closed("subscriber"))
    }

    /// The next message as a ``Sample`` read in place, waiting at most
    /// ``timeout`` seconds (``None``: for ever; the GIL is released and Ctrl-C
    /// interrupts). ``TimeoutError``; ``shmipc.Disconnected`` when the publisher has
    /// gone and everything it sent was received; ``shmipc.TooManyHeld`` when this
    /// subscriber already holds ``max_held`` samples (release one first).
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Sample> {
        self.recv_impl(py, timeout)
    }

    /// The next message as ``bytes`` (a copy; the sample is released at once), as
    /// ``recv``.
    #[pyo3(signature = (timeout=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let s = self.recv_impl(py, timeout)?;
        let key = match &s.payload {
            Payload::PubSub { key, .. } => *key,
            Payload::Spsc { .. } => return Err(Sample::released()),
        };
        // Allocated first (which may run Python code), then filled under the lock
        // from the held sample, which is released when `s` drops.
        let b = pyo3::types::PyBytes::new_with(py, s.len, |buf| {
            let mut g = lock(&self.cell);
            let h = g
                .as_mut()
                .and_then(|h| h.find(key))
                .ok_or_else(Sample::released)?;
            buf.copy_from_slice(&h.sample);
            Ok(())
        })?;
        drop(s);
        Ok(b)
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

    /// Unsubscribes, releasing every sample still held (they then raise
    /// ``ValueError`` when read). ``BufferError`` while one's buffer is exported.
    fn close(&self) -> PyResult<()> {
        self.origin.check(None)?;
        let mut g = lock(&self.cell);
        if let Some(h) = g.as_mut() {
            h.release_all()?;
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
        format!("<shmipc.Subscriber topic={:?}>", self.name)
    }
}
