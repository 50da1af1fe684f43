//! Whole-number arguments: a value out of range or of the wrong type raises
//! `ValueError` / `TypeError` naming the argument and its range, rather than
//! Python's bare `OverflowError: can't convert negative int to unsigned`.
//!
//! Each function is used as `#[pyo3(from_py_with = args::NAME)]` on the argument of
//! that name. Anything with `__index__` (an `int`, a NumPy integer) is accepted, as
//! Python's own integer arguments accept it.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyUnicodeEncodeError, PyValueError};
use pyo3::prelude::*;

/// `o` as a whole number from 0 to `max`, or an error that names `name`. An
/// exception raised by the object's own `__index__` (other than `TypeError`)
/// passes through unchanged.
fn whole(o: &Bound<'_, PyAny>, name: &str, max: u128) -> PyResult<u128> {
    match o.extract::<i128>() {
        Ok(v) if v >= 0 && v.unsigned_abs() <= max => Ok(v.unsigned_abs()),
        Ok(v) => Err(out_of_range(name, max, &v.to_string())),
        Err(e) if e.is_instance_of::<PyOverflowError>(o.py()) => {
            let shown = o.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string());
            Err(out_of_range(name, max, &shown))
        }
        Err(e) if !e.is_instance_of::<PyTypeError>(o.py()) => Err(e),
        Err(_) => {
            let ty = o
                .get_type()
                .name()
                .map_or_else(|_| "?".to_owned(), |n| n.to_string());
            // PyO3 puts "argument 'NAME': " in front of a TypeError.
            Err(PyTypeError::new_err(format!(
                "expected a whole number (an int), not {ty}"
            )))
        }
    }
}

fn out_of_range(name: &str, max: u128, shown: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{name} must be a whole number from 0 to {max}, not {shown}"
    ))
}

macro_rules! whole_args {
    ($($f:ident: $t:ty = $name:literal;)*) => {$(
        #[doc = concat!("The `", $name, "` argument.")]
        pub(crate) fn $f(o: &Bound<'_, PyAny>) -> PyResult<$t> {
            // The range check makes the narrowing exact.
            whole(o, $name, <$t>::MAX as u128).map(|v| v as $t)
        }
    )*};
}

macro_rules! optional_whole_args {
    ($($f:ident: $t:ty = $name:literal;)*) => {$(
        #[doc = concat!("The optional `", $name, "` argument (`None` allowed).")]
        pub(crate) fn $f(o: &Bound<'_, PyAny>) -> PyResult<Option<$t>> {
            if o.is_none() {
                return Ok(None);
            }
            whole(o, $name, <$t>::MAX as u128).map(|v| Some(v as $t))
        }
    )*};
}

whole_args! {
    size: u64 = "size";
    loan_size: usize = "size";
    offset: u64 = "offset";
    view_offset: usize = "offset";
    length: usize = "length";
    capacity: usize = "capacity";
    slot_size: usize = "slot_size";
    max_subscribers: usize = "max_subscribers";
    max_held: usize = "max_held";
    history: usize = "history";
    initial: u32 = "initial";
    maximum: u32 = "maximum";
}

optional_whole_args! {
    count: usize = "n";
    send_length: usize = "length";
}

/// The `mode` argument: read/write permission bits, as the CLI takes them. Bits
/// beyond `0o777` (set-id, sticky, or no mode at all) and execute bits (which mean
/// nothing for shared memory) are refused rather than silently dropped.
pub(crate) fn mode(o: &Bound<'_, PyAny>) -> PyResult<u32> {
    // The range check makes the narrowing exact.
    let mode = whole(o, "mode", u128::from(u32::MAX))? as u32;
    if mode > 0o777 {
        return Err(PyValueError::new_err(format!(
            "mode {mode:#o} has bits beyond 0o777 (rwxrwxrwx): give read/write permission bits such as 0o600 or 0o660"
        )));
    }
    if mode & 0o111 != 0 {
        return Err(PyValueError::new_err(format!(
            "mode {mode:#o} has execute bits, which mean nothing for shared memory: use read/write bits such as {:#o}",
            mode & 0o666
        )));
    }
    Ok(mode)
}

/// A text argument `arg`: a `str` that UTF-8 can encode. A lone surrogate (as
/// `os.fsdecode` makes of a byte that is not UTF-8) raises `ValueError` naming the
/// argument, rather than a bare `UnicodeEncodeError`.
fn text(o: &Bound<'_, PyAny>, arg: &str) -> PyResult<String> {
    match o.extract::<String>() {
        Err(e) if e.is_instance_of::<PyUnicodeEncodeError>(o.py()) => {
            let shown = o.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string());
            Err(PyValueError::new_err(format!(
                "{arg} {shown} is not valid text (it holds a lone surrogate, which UTF-8 cannot encode: a byte that was not UTF-8?): use a {arg} of plain characters"
            )))
        }
        r => r,
    }
}

/// The `name` argument (see `text`).
pub(crate) fn name(o: &Bound<'_, PyAny>) -> PyResult<String> {
    text(o, "name")
}

/// The `topic` argument (see `text`).
pub(crate) fn topic(o: &Bound<'_, PyAny>) -> PyResult<String> {
    text(o, "topic")
}
