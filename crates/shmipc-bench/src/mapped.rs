//! A mapped view plus the atomics at fixed offsets in it, bounds- and
//! alignment-checked once at set-up rather than on every access in the hot loops.
#![allow(unsafe_code)] // Dereferences pointers that `View::atomic_u64` checked.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use shmipc::{Access, Segment, View};

use crate::ctx::{Ctx, Side};
use crate::Result;

/// A writable view of a shared segment and `N` atomics inside it.
#[derive(Debug)]
pub struct Mapped<const N: usize> {
    view: View,
    atomics: [NonNull<AtomicU64>; N],
}

impl<const N: usize> Mapped<N> {
    /// The client creates the run-unique segment `what` of `len` bytes, the server
    /// opens it; both map all of it and look up the atomics at `offsets`.
    pub fn open(ctx: &Ctx, what: &str, len: usize, offsets: [usize; N]) -> Result<Self> {
        let name = ctx.name(what);
        let seg = match ctx.side {
            Side::Client => Segment::create(&name, u64::try_from(len)?)?,
            Side::Server => Segment::open(&name, Access::ReadWrite)?,
        };
        if seg.size() < u64::try_from(len)? {
            return Err(format!("segment {name} is smaller than {len} bytes").into());
        }
        // The view keeps the segment alive.
        let view = seg.map_all()?;
        let mut atomics = [NonNull::dangling(); N];
        for (slot, &off) in atomics.iter_mut().zip(offsets.iter()) {
            *slot = NonNull::from(view.atomic_u64(off)?);
        }
        Ok(Mapped { view, atomics })
    }

    /// The view.
    #[inline]
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The `i`-th atomic.
    #[inline]
    pub fn atomic(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the pointer came from `View::atomic_u64` on `self.view`, which
        // checked bounds, alignment and write access; the mapping it points into is
        // owned by `self.view` and stays mapped (at the same address, a move of the
        // `View` does not move the mapping) as long as `&self` lives.
        unsafe { self.atomics[i].as_ref() }
    }
}
