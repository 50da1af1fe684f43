//! Zero-copy message channels in shared memory.
//!
//! * [`spsc`]: one producer, one consumer; variable-length byte messages or
//!   `bytemuck::Pod` values; the producer writes in place into a loaned slot and the
//!   consumer reads in place from a borrowed one.
//! * [`pubsub`]: one publisher, many subscribers each with its own cursor; the
//!   publisher loans a chunk from a pool in the channel, writes the sample in place
//!   and sends its offset to every subscriber, each of which reads it in place as a
//!   [`pubsub::Sample`] until it drops; the publisher waits for slow subscribers or
//!   skips them past messages they have not started and tells them how many they
//!   lost. See the module for what a hostile peer can do to a reader.
//! * [`mpmc`]: a bounded queue for many producers and many consumers; each message
//!   goes to one consumer. A producer loans a slot, writes in place and sends it; a
//!   consumer reads it in place as an [`mpmc::Sample`] until it drops.
//! * [`rpc`]: request/response between clients and one server, with correlation
//!   ids; requests and responses are loaned and read in place the same way.
//!
//! A channel is a named segment (same names, permissions and lifetime rules as
//! [`Segment`](crate::Segment)) that starts with the validated shmipc header of its
//! kind; opening it checks the header and the message type. Only offsets live in
//! shared memory. Every value read from it is validated: a corrupt or hostile peer
//! yields [`Corrupt`] errors, never undefined behaviour, a panic or a hang.
//!
//! Every receive comes as `try_recv` (never waits), `recv` (waits as long as it
//! takes) and `recv_timeout`. Waiting spins for a few microseconds, then sleeps in
//! the kernel (`sys::wait`: a futex on Linux, `__ulock` on macOS, a named kernel
//! semaphore per waited word on Windows, whose `WaitOnAddress` does not cross
//! processes); a sender skips the wake-up system call when nobody sleeps.
//!
//! A peer that dies without closing (SIGKILL, `TerminateProcess`) is noticed by
//! asking the kernel whether the identity it registered with still lives
//! (`sys::liveness`: on Linux a lock byte the kernel drops with the process, so it
//! holds across PID namespaces; on Windows its process id and creation time), so a
//! reused process id is not mistaken for it.
//!
//! `unsafe` is allowed only in the modules that have it (the endpoint files and
//! `shared.rs`, which place samples and words in a mapping; `spsc_ring.rs`), each
//! block with its `// SAFETY:` argument.

/// Byte comparisons for a sample type that derefs to `[u8]` (so that samples
/// compare with literals and vectors as `Vec<u8>` does).
macro_rules! bytes_eq {
    ($t:ident) => {
        impl PartialEq for $t<'_> {
            fn eq(&self, other: &Self) -> bool {
                **self == **other
            }
        }
        impl PartialEq<[u8]> for $t<'_> {
            fn eq(&self, other: &[u8]) -> bool {
                **self == *other
            }
        }
        impl PartialEq<&[u8]> for $t<'_> {
            fn eq(&self, other: &&[u8]) -> bool {
                **self == **other
            }
        }
        impl PartialEq<Vec<u8>> for $t<'_> {
            fn eq(&self, other: &Vec<u8>) -> bool {
                **self == other[..]
            }
        }
        impl<const N: usize> PartialEq<[u8; N]> for $t<'_> {
            fn eq(&self, other: &[u8; N]) -> bool {
                **self == other[..]
            }
        }
        impl<const N: usize> PartialEq<&[u8; N]> for $t<'_> {
            fn eq(&self, other: &&[u8; N]) -> bool {
                **self == other[..]
            }
        }
    };
}

mod error;
mod mpmc_ring;
mod pubsub_pool;
mod shim;
mod spsc_ring;

#[doc(hidden)]
#[cfg(not(loom))]
pub mod fuzzing;
#[cfg(not(loom))]
pub(crate) mod inspect;
#[cfg(not(loom))]
pub mod mpmc;
#[cfg(not(loom))]
pub(crate) mod notify;
#[cfg(not(loom))]
mod peer;
#[cfg(not(loom))]
pub mod pubsub;
#[cfg(not(loom))]
pub mod rpc;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
pub mod spsc;

pub use error::{CallError, ChannelError, Corrupt, RecvError, SendError, TrySendError};
