//! Inter-process synchronization that survives a dead peer: [`Mutex`],
//! [`Semaphore`], [`Event`] (manual or auto reset), each either placed in your own
//! segment at an offset (`init_at` / `open_at`, `SIZE` bytes) or as a named object
//! of its own ([`NamedMutex`], [`NamedSemaphore`], [`NamedEvent`]) with the names,
//! permissions (0600) and lifetime (dies with its last holder;
//! [`Persistence::UntilRemoved`](crate::Persistence) on request, except on Windows)
//! of a segment. On Windows a named object is the Win32 kernel object `Local\NAME`
//! itself, so programs calling `OpenMutexW` & co. share it.
//!
//! ```
//! use shmipc::sync::{LockError, NamedMutex};
//! # let name = format!("doc-sync-{}", std::process::id());
//! let (m, _) = NamedMutex::create_or_open(&name)?;
//! match m.lock() {
//!     Ok(_guard) => { /* critical section */ }
//!     Err(LockError::OwnerDied(guard)) => {
//!         // A holder was killed inside: repair the shared data, then:
//!         guard.mark_consistent();
//!     }
//!     Err(e) => return Err(e.to_string().into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a dead owner is found
//!
//! Three designs were weighed:
//!
//! * Linux robust futexes (`FUTEX_OWNER_DIED`): the kernel walks a per-thread list
//!   at exit. glibc owns that list (`set_robust_list`), and a second owner would
//!   break glibc's own robust mutexes. Rejected.
//! * glibc's `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST`
//!   placed in the segment: kernel-assisted, but glibc-only, an opaque layout that
//!   a hostile peer can corrupt into undefined behaviour, and no state machine of
//!   ours to check with loom. Rejected.
//! * **Ours, chosen:** the lock word holds the owner's identity, and waiters ask
//!   the kernel whether that owner still lives. The identity (`sys::liveness`) is
//!   packed in the same 64-bit word as the lock state, so taking the lock and naming
//!   the taker are one CAS: there is no instant at which a holder can die unnamed.
//!   On Linux it is a random nonce whose byte *of the mutex's own segment* the
//!   owner's process holds an open-file-description lock on (`F_OFD_SETLK`) while
//!   the thread lives: the kernel drops it when the process dies, in any PID
//!   namespace, so neither pid reuse nor containers fool it, and only users who
//!   can open the segment can lock its bytes (so no other user can make a dead
//!   owner look alive, and nobody can make a live one look dead; see
//!   `sys/liveness/linux.rs`). A thread proves itself there before it first names
//!   itself in the mutex's lock word. On Windows it is the
//!   thread id and creation time. The check is conservative: only an owner the
//!   kernel says is gone counts as dead.
//!
//! The algorithm is std's futex mutex (UNLOCKED / LOCKED / CONTENDED: an inlined
//! CAS to lock, a swap to unlock, a wake system call only when the CONTENDED bit
//! says somebody may sleep), with the owner in the lock word; waiters spin briefly,
//! then sleep on a separate 32-bit futex word (futexes are 32-bit) in slices that
//! start at 1 ms and grow to 100 ms, asking after each whether the owner lives. A
//! dead owner therefore blocks nobody for more than 100 ms, including waiters that
//! were already asleep when it died, and costs no CPU while it lives.
//!
//! # Owner death and consistency
//!
//! The waiter that finds the owner dead takes the lock over and gets
//! [`LockError::OwnerDied`] carrying the guard: the lock is held, the data may be
//! half-updated. It repairs the data and calls [`MutexGuard::mark_consistent`].
//! If it unlocks without doing so (or dies, or panics), the mutex stays usable and
//! the *next* locker gets `OwnerDied` again, until somebody marks it consistent:
//! nobody ever loses the news, and the mutex never becomes unusable (unlike
//! pthread's `ENOTRECOVERABLE`, which would leave a named object dead until
//! removed). A guard dropped while its thread panics marks the data inconsistent,
//! like std's poisoning.
//!
//! A thread that ends while holding the lock (a leaked guard) counts as dead too.
//! Processes in different PID namespaces (containers sharing `/dev/shm`) share
//! mutexes like any others; only an opener that sees another `/dev/shm` than the
//! creator (e.g. through a file-backed segment), where the kernel's answer cannot
//! reach, is refused ([`ObjectError::ForeignNamespace`]).
//!
//! A mutex is not recursive, on every OS: a thread that locks a mutex it holds gets
//! [`LockError::WouldDeadlock`] ([`LockTimeoutError::WouldDeadlock`] at once;
//! `try_lock`: [`TryLockError::WouldBlock`]) instead of hanging, and the guard is not
//! `Send` (it unlocks on the thread that locked, as a Windows kernel mutex requires).
//!
//! Semaphores and events have no owner: a process that dies after taking a unit
//! does not return it (as with POSIX semaphores). Their waiters sleep in 100 ms
//! slices too, so a wake-up lost with a process killed while being woken delays the
//! others by 100 ms at most.
//!
//! # Trust
//!
//! Every word may be written by a broken or hostile peer. Any value is a state:
//! garbage in a mutex word reads as an owner, which is checked and found dead
//! (on Linux, unless it is marked as one whose liveness could not be proven:
//! then it holds until the caller's timeout, as a hostile peer holding the lock
//! would; see `sys/liveness/linux.rs`); in a
//! semaphore or event, as units or a set event. Headers are validated on open
//! (kind, version, parameters). Nothing read from shared memory can cause undefined
//! behaviour, a panic, or a wait past the caller's timeout.
//!
//! # Layers and platforms
//!
//! * `raw.rs`: the state machines on plain atomics (loom-checked through the
//!   crate's one shim, `crate::shim`);
//! * below, in `sys/`: the OS wait on a 32-bit word (`sys::wait`: shared futex on
//!   Linux, `__ulock` on macOS, a 200 µs sleep-poll on Windows, whose
//!   `WaitOnAddress` does not cross processes) and the owner identity and liveness
//!   check (`sys::liveness`: a kernel-held lock byte on Linux, thread id +
//!   creation time on Windows);
//! * the named-object backend: on Windows `windows.rs` (named objects are Win32
//!   kernel objects, `WAIT_ABANDONED` is `OwnerDied`); elsewhere named objects are
//!   segments (`named.rs`) and `native_none.rs` gives uninhabited stand-ins, so
//!   that the public types hold either lock words or a native object without an OS
//!   switch of their own. Where `sys::liveness` cannot name owners (macOS for now),
//!   objects return [`ObjectError::Unsupported`].
//! * `mutex.rs`, `semaphore.rs`, `event.rs`: the public types; `region.rs` places
//!   words in a view; `named.rs` makes the named objects' segments.

#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod event;
#[cfg(not(loom))]
pub(crate) mod inspect;
#[cfg(not(loom))]
mod mutex;
#[cfg(not(loom))]
mod named;
pub(crate) mod raw;
#[cfg(not(loom))]
mod region;

// The named objects: Win32 kernel objects on Windows (`windows.rs`); elsewhere
// segments holding lock words (`named.rs`), with uninhabited stand-ins for the
// native types (`native_none.rs`).
#[cfg(all(windows, not(loom)))]
#[path = "windows.rs"]
mod native;
#[cfg(all(not(windows), not(loom)))]
#[path = "native_none.rs"]
mod native;

/// What the public types need from below: who owns a lock and whether it lives
/// (`sys::liveness`), and the native named objects.
#[allow(unused_imports)] // under loom only the state machines are built
mod imp {
    pub(crate) use crate::sys::liveness::{
        current_owner, namespaces, owner_liveness as liveness, owner_thread, Scope, SUPPORTED,
    };

    #[cfg(not(loom))]
    pub(crate) use super::native::{
        inspect_named, NativeEvent, NativeMutex, NativeSemaphore, NativeWaitError, NATIVE_NAMED,
    };
}

#[cfg(not(loom))]
pub use error::{
    LockError, LockTimeoutError, ObjectError, PostError, TryLockError, TryWaitError,
    WaitTimeoutError,
};
#[cfg(not(loom))]
pub use event::{Event, EventReset, NamedEvent};
#[cfg(not(loom))]
pub use mutex::{Mutex, MutexGuard, NamedMutex};
#[cfg(not(loom))]
pub use named::ObjectOptions;
#[cfg(not(loom))]
pub use semaphore::{NamedSemaphore, Semaphore};
#[cfg(not(loom))]
mod semaphore;

pub(crate) use crate::sys::liveness::Liveness;
