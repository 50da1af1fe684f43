//! The only place with FFI. One file per OS, each exporting the same items; this
//! module picks one. Everything above `sys` is OS-neutral.
//!
//! Items every backend exports:
//! * `MAX_NAME_LEN`, `granularity()` (the offset alignment a mapping needs);
//! * `Handle`: an open segment (its OS object plus what is needed to honour the
//!   lifetime rules when it is dropped), with `size()`, `backing()`;
//! * `create`, `open`, `create_unnamed`, `remove`, `list`, `info`, `gc`;
//! * `Mapping` (unmapped on drop), `map`, `flush`.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
#[path = "unsupported.rs"]
mod imp;

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod unix_map;

pub(crate) use imp::*;
