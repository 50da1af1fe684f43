//! The object-scoped half of the interface for OSes whose identities need no
//! object (ids and creation times, asked of the OS directly): the scope and the
//! anchor are empty, and holding an identity on an object is a no-op.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;

use super::{imp, Liveness};

/// Nothing to keep per object handle here.
#[derive(Debug, Default)]
pub(crate) struct Anchor;

impl Anchor {
    /// Nothing.
    pub(crate) const fn new() -> Self {
        Self
    }
}

/// The object an identity is proven on: nothing here.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a>(PhantomData<&'a ()>);

impl<'a> Scope<'a> {
    /// The scope of an open segment and the anchor kept with it.
    pub(crate) fn of(_handle: &'a crate::sys::Handle, _anchor: &'a Anchor) -> Self {
        Self(PhantomData)
    }
}

thread_local! {
    /// This thread's owner id and the fork generation it was computed in (0: none).
    static ME: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) };
}

/// This thread's owner id, computed once per thread (and again in a forked
/// child); nothing to prove on the object: the OS knows the thread.
#[inline]
pub(crate) fn current_owner(_scope: Scope<'_>) -> io::Result<u64> {
    let generation = imp::fork_generation();
    let (g, id) = ME.with(Cell::get);
    if id != 0 && Some(g) == generation {
        return Ok(id);
    }
    let id = imp::compute_owner()?;
    if let Some(g) = generation {
        ME.with(|me| me.set((g, id)));
    }
    Ok(id)
}

/// Asked of the OS, whatever the object.
pub(crate) fn owner_liveness(_scope: Scope<'_>, id: u64) -> Liveness {
    imp::owner_liveness_of(id)
}

/// Nothing to lock: the OS knows the process.
pub(crate) fn hold_process(_scope: Scope<'_>, tok: u64) -> u64 {
    tok
}

/// Whether `tok` is this process's identity `me`.
pub(crate) fn is_process(tok: u64, me: u64) -> bool {
    tok == me
}

/// Asked of the OS, whatever the object.
pub(crate) fn process_liveness(_scope: Scope<'_>, tok: u64) -> Liveness {
    imp::process_liveness_of(tok)
}
