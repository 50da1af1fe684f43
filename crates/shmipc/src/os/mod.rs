//! OS-specific extras, for programs that need to hand handles between processes.

#[cfg(unix)]
pub mod unix;

#[cfg(windows)]
pub mod windows;
