//! The `shmipc` Python package: named shared memory with Win32 lifetime, robust
//! inter-process locks and zero-copy channels, over the `shmipc` Rust library.
//!
//! Built by maturin (`pip install ./crates/shmipc-py`); the Python-facing docs
//! are the docstrings here and the stubs in `python/shmipc/__init__.pyi`. Unsafe
//! code lives in the modules that need it (the buffer protocol, and keeping Rust
//! guards/loans/samples beside the objects they borrow), each saying why.
#![deny(unsafe_code)]

use pyo3::prelude::*;

mod args;
mod buffer;
mod channel;
mod errors;
mod segment;
mod sync;
mod wait;

/// Named shared memory with Win32 lifetime, robust locks and zero-copy channels.
#[pymodule]
fn _shmipc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Touching memory of a segment that another process truncated raises SIGBUS,
    // which would kill Python without a word; shmipc's handler (faults in its own
    // mappings only, the rest go to the previous handler) names the segment and
    // exits with status 1 instead, as the CLI does.
    #[cfg(unix)]
    shmipc::os::unix::install_sigbus_handler().map_err(|e| {
        pyo3::exceptions::PyOSError::new_err(format!(
            "installing shmipc's SIGBUS handler (which names a truncated segment instead of dying silently) failed: {e}"
        ))
    })?;
    errors::register(m)?;
    m.add_class::<segment::Segment>()?;
    m.add_class::<segment::View>()?;
    m.add_class::<sync::Mutex>()?;
    m.add_class::<sync::Semaphore>()?;
    m.add_class::<sync::Event>()?;
    m.add_class::<channel::Producer>()?;
    m.add_class::<channel::Consumer>()?;
    m.add_class::<channel::Publisher>()?;
    m.add_class::<channel::Subscriber>()?;
    m.add_class::<channel::Loan>()?;
    m.add_class::<channel::Sample>()?;
    Ok(())
}
