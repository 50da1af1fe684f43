//! The only place with FFI, organised by feature as std's `library/std/src/sys`:
//! each feature is a folder with one file per OS exporting the same items, picked in
//! its `mod.rs`. Everything above `sys` is OS-neutral.
//!
//! * [`shm`]: shared memory: segments, mappings, their names and lifetime;
//! * [`wait`]: sleep on a shared 32-bit word until woken, with a timeout;
//! * [`liveness`]: who this thread/process is, and whether a holder still lives;
//! * [`kobj`]: Windows named kernel objects (mutex, semaphore, event).
//!
//! The shared-memory items are re-exported here (`sys::Handle`, `sys::map`, …).

pub(crate) mod kobj;
pub(crate) mod liveness;
pub(crate) mod shm;
pub(crate) mod wait;

pub(crate) use shm::*;
