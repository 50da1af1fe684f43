//! OSes whose named objects are segments holding lock words (Linux, and the
//! unsupported ones): no native named objects. These types are uninhabited, so that
//! the public types' `Native` arms type-check and compile to nothing.

use std::time::Duration;

use crate::segment::Disposition;

use super::error::ObjectError;
use super::named::{How, ObjectOptions};
use super::raw::Acquired;
use super::EventReset;

/// Named objects are segments here.
pub(crate) const NATIVE_NAMED: bool = false;

/// Why a native wait did not acquire (never happens here).
#[allow(dead_code)] // constructed by the Windows backend only
#[derive(Debug)]
pub(crate) enum NativeWaitError {
    /// The timeout passed.
    TimedOut,
    /// This thread holds the mutex already.
    WouldDeadlock,
    /// The wait failed.
    Os(std::io::Error),
}

/// No named kernel objects to inspect here (named objects are segments).
pub(crate) fn inspect_named(
    _name: &str,
) -> Option<(crate::layout::Kind, crate::vocab::ObjectState)> {
    None
}

/// No native mutex here.
pub(crate) enum NativeMutex {}
/// No native semaphore here.
pub(crate) enum NativeSemaphore {}
/// No native event here.
pub(crate) enum NativeEvent {}

fn unsupported(kind: &'static str) -> ObjectError {
    ObjectError::Unsupported { kind }
}

impl NativeMutex {
    pub(crate) fn get(
        _: &str,
        _: How,
        _: &ObjectOptions,
    ) -> Result<(Self, Disposition), ObjectError> {
        Err(unsupported("mutex"))
    }
    pub(crate) fn lock(&self, _: Option<Duration>) -> Result<Acquired, NativeWaitError> {
        match *self {}
    }
    pub(crate) fn unlock(&self) {
        match *self {}
    }
    pub(crate) fn mark_consistent(&self) {
        match *self {}
    }
    pub(crate) fn mark_inconsistent(&self) {
        match *self {}
    }
}

impl NativeSemaphore {
    pub(crate) fn get(
        _: &str,
        _: How,
        _: &ObjectOptions,
        _: Option<(u32, u32)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        Err(unsupported("semaphore"))
    }
    pub(crate) fn max(&self) -> u32 {
        match *self {}
    }
    pub(crate) fn value(&self) -> u32 {
        match *self {}
    }
    #[allow(clippy::result_unit_err)]
    pub(crate) fn post(&self) -> Result<(), ()> {
        match *self {}
    }
    pub(crate) fn wait(&self, _: Option<Duration>) -> Result<(), NativeWaitError> {
        match *self {}
    }
}

impl NativeEvent {
    pub(crate) fn get(
        _: &str,
        _: How,
        _: &ObjectOptions,
        _: Option<(EventReset, bool)>,
    ) -> Result<(Self, Disposition), ObjectError> {
        Err(unsupported("event"))
    }
    pub(crate) fn reset_mode(&self) -> EventReset {
        match *self {}
    }
    pub(crate) fn is_set(&self) -> bool {
        match *self {}
    }
    pub(crate) fn set(&self) {
        match *self {}
    }
    pub(crate) fn reset(&self) {
        match *self {}
    }
    pub(crate) fn wait(&self, _: Option<Duration>) -> Result<(), NativeWaitError> {
        match *self {}
    }
}
