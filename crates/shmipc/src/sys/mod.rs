//! The only place with FFI, organised by feature as std's `library/std/src/sys`:
//! each feature is a folder with one file per OS exporting the same items, picked in
//! its `mod.rs`. Everything above `sys` is OS-neutral.
//!
//! * [`wait`]: sleep on a shared 32-bit word until woken, with a timeout;
//! * [`liveness`]: who this thread/process is, and whether a holder still lives;
//! * [`kobj`]: Windows named kernel objects (mutex, semaphore, event);
//! * shared memory (the files below; to move to `shm/`).
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
pub(crate) mod kobj;
pub(crate) mod liveness;
pub(crate) mod wait;

pub(crate) use imp::*;
