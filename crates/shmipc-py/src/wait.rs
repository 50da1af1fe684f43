//! Waiting with the GIL released, in slices, so that other Python threads run and
//! Ctrl-C (or any signal handler that raises) interrupts the wait.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The longest stretch spent in Rust before Python gets to run its signal handlers.
const SLICE: Duration = Duration::from_millis(50);

/// A timeout as Python passes it: `None` waits for ever, a number of seconds >= 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeout {
    deadline: Option<Instant>,
    secs: f64,
}

impl Timeout {
    pub(crate) fn new(timeout: Option<f64>) -> PyResult<Self> {
        let Some(secs) = timeout else {
            return Ok(Self {
                deadline: None,
                secs: f64::INFINITY,
            });
        };
        if secs.is_nan() || secs < 0.0 || !secs.is_finite() {
            return Err(PyValueError::new_err(format!(
                "timeout must be None (wait for ever) or a finite number of seconds >= 0, not {secs}"
            )));
        }
        let d = Duration::try_from_secs_f64(secs)
            .map_err(|e| PyValueError::new_err(format!("timeout {secs} s is not usable: {e}")))?;
        Ok(Self {
            // Past Instant's range: wait for ever.
            deadline: Instant::now().checked_add(d),
            secs,
        })
    }

    /// Seconds as given (for messages).
    pub(crate) fn secs(&self) -> f64 {
        self.secs
    }
}

/// Runs `attempt(slice)` with the GIL released until it returns `Some`, the deadline
/// passes (`Ok(None)`), or a signal handler raises (that exception). `attempt`
/// waits at most `slice` (zero for a last, non-blocking try).
pub(crate) fn slices<T, F>(py: Python<'_>, timeout: Timeout, mut attempt: F) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> Option<T> + Send,
{
    loop {
        let slice = match timeout.deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(v) = py.detach(|| attempt(slice)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if let Some(d) = timeout.deadline {
            if Instant::now() >= d {
                return Ok(None);
            }
        }
    }
}
