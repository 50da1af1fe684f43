//! Shared memory: segments (named, unnamed, file-backed), their mappings, names
//! and lifetime rules; one backend per OS, picked here.
//!
//! Items every shared-memory backend exports:
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

#[cfg(unix)]
pub(crate) mod fd;

pub(crate) use imp::*;

// The name rules (`name.rs`, below `sys/`) state each OS's limit; the backend says why.
const _: () = assert!(crate::name::Name::MAX_LEN == imp::MAX_NAME_LEN);
