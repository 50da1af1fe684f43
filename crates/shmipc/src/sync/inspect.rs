//! A snapshot of a synchronization object's state for [`crate::inspect`]: its words
//! are copied out of a (possibly read-only) view, never referenced, never locked.
//! The offsets are those of the `#[repr(C)]` word structs in `raw.rs`.

use std::mem::offset_of;

use crate::layout::{Header, Kind, HEADER_LEN};
use crate::view::View;
use crate::vocab::ObjectState;

use super::event::EventReset;
use super::raw::{EventWords, MutexWords, SemaphoreWords, CONTENDED, INCONSISTENT, SET};
use super::{imp, Liveness};

/// The kind and state of the named object `name` where named objects are kernel
/// objects rather than segments (Windows); `None` elsewhere or if it is none.
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub(crate) fn named(name: &str) -> Option<(Kind, ObjectState)> {
    imp::inspect_named(name)
}

/// The state of the object whose validated `header` is at `offset`; `None` if its
/// words cannot be read or its parameters are not those of a valid object.
/// A holder's liveness is asked on the object of `scope`.
pub(crate) fn state(
    view: &View,
    offset: usize,
    header: &Header,
    scope: imp::Scope<'_>,
) -> Option<ObjectState> {
    let words = offset.checked_add(HEADER_LEN)?;
    match header.kind {
        Kind::Mutex => {
            let owner: u64 = view.read_pod(words + offset_of!(MutexWords, owner)).ok()?;
            let flags: u32 = view.read_pod(words + offset_of!(MutexWords, flags)).ok()?;
            let id = owner & !CONTENDED;
            let locked = id != 0;
            Some(ObjectState::Mutex {
                locked,
                owner_thread: if locked { imp::owner_thread(id) } else { None },
                owner_alive: (locked && imp::SUPPORTED)
                    .then(|| imp::liveness(scope, id) == Liveness::Alive),
                consistent: flags & INCONSISTENT == 0,
            })
        }
        Kind::Semaphore => {
            let value: u32 = view
                .read_pod(words + offset_of!(SemaphoreWords, count))
                .ok()?;
            let max = u32::try_from(header.params[0]).ok().filter(|m| *m >= 1)?;
            Some(ObjectState::Semaphore { value, max })
        }
        Kind::Event => {
            let state: u32 = view.read_pod(words + offset_of!(EventWords, state)).ok()?;
            // An auto-reset event's releases owed beyond the bit (`raw.rs`).
            let owed: u32 = view.read_pod(words + offset_of!(EventWords, owed)).ok()?;
            let reset = match header.params[0] {
                0 => EventReset::Manual,
                1 => EventReset::Auto,
                _ => return None,
            };
            Some(ObjectState::Event {
                set: state & SET != 0 || owed != 0,
                reset,
            })
        }
        _ => None,
    }
}
