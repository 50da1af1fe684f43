//! What every channel kind shares: creating or opening its segment with a checked
//! header, the message type identity, the range rules of layout parameters
//! ([`Rule`], [`Bad`]) and the extent check ([`fits`]) from which each kind's
//! `validate` is built (the one check of creators, opening endpoints and
//! `shmipc info`), the `#[repr(C)]` words every layout is built of
//! ([`PeerWords`], [`BellWords`]), and typed access to words at offsets taken from
//! those structs with `offset_of!`.
#![allow(unsafe_code)]

use std::mem::offset_of;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::layout::{self, Header, Kind, LayoutError};
use crate::segment::{Access, InitError, Persistence, Segment};
use crate::view::View;

use super::notify::Bell;
use super::peer::{Place, Scope};
use super::ChannelError;

/// How long an opener waits for a creator that is still initialising the channel.
const INIT_PATIENCE: Duration = Duration::from_secs(2);

/// What a message is: raw bytes, or a `bytemuck::Pod` type, identified by size,
/// alignment and a hash of its type name (so a reader built with another type of
/// the same size is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MsgType {
    pub(crate) size: u32,
    pub(crate) align: u32,
    pub(crate) hash: u64,
}

impl MsgType {
    /// Variable-length byte messages.
    pub(crate) const BYTES: Self = Self {
        size: 0,
        align: 0,
        hash: 0,
    };

    pub(crate) fn of<T>() -> Self {
        // FNV-1a over the type's name: stable across processes built from the same code.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in std::any::type_name::<T>().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            size: u32::try_from(size_of::<T>()).unwrap_or(u32::MAX),
            align: u32::try_from(align_of::<T>()).unwrap_or(u32::MAX),
            hash: h | 1,
        }
    }

    pub(crate) fn packed(&self) -> u64 {
        u64::from(self.size) | (u64::from(self.align) << 32)
    }

    /// Refuses a channel made for another message type.
    pub(crate) fn check(&self, kind: Kind, packed: u64, hash: u64) -> Result<(), LayoutError> {
        if packed != self.packed() {
            return Err(LayoutError::Mismatch {
                kind: kind.as_str(),
                what: Self::PACKED,
                found: packed,
                expected: self.packed(),
            });
        }
        if hash != self.hash {
            return Err(LayoutError::Mismatch {
                kind: kind.as_str(),
                what: Self::HASH,
                found: hash,
                expected: self.hash,
            });
        }
        Ok(())
    }

    /// Refuses type words that no message type has, whoever opens: neither bytes
    /// (both zero) nor a type's size and alignment (a power of two, at most
    /// `max_align`) with its odd name hash. Which type they are is each opener's
    /// to check ([`MsgType::check`]).
    pub(crate) fn check_any(
        kind: Kind,
        packed: u64,
        hash: u64,
        max_align: u64,
    ) -> Result<(), LayoutError> {
        if packed == 0 && hash == 0 {
            return Ok(());
        }
        let align = packed >> 32;
        if !align.is_power_of_two() || align > max_align {
            return Err(Bad::header(Self::PACKED, packed).layout(kind));
        }
        if hash & 1 == 0 {
            return Err(Bad::header(Self::HASH, hash).layout(kind));
        }
        Ok(())
    }

    /// What a header's first type word is, in errors.
    const PACKED: &str = "message type size and alignment (size | align << 32; 0 = bytes)";
    /// What its second is.
    const HASH: &str = "message type (hash of its type name; 0 = bytes)";
}

/// A range rule on one layout parameter of a channel, written once per kind and
/// checked both on the options a creator gives ([`Rule::option`]) and on the value
/// a header holds ([`Rule::check`]: an opening endpoint and `shmipc info` alike).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    /// The parameter as a creator's options name it (`"slot size"`).
    pub(crate) what: &'static str,
    /// What a header holding a value out of range is refused for (`"slot size
    /// (over 2^31)"`).
    pub(crate) header: &'static str,
    /// The rule in words, for the creator (`"it must be at most 2^31 bytes"`).
    pub(crate) reason: &'static str,
    /// Smallest value a header may hold.
    pub(crate) min: u64,
    /// Largest value (a power of two where `pow2`).
    pub(crate) max: u64,
    /// A header holds a power of two; a creator's value is rounded up to one.
    pub(crate) pow2: bool,
}

impl Rule {
    /// A header's `value`, if the rule allows it.
    pub(crate) fn check(&self, value: u64) -> Result<u64, Bad> {
        let ok = (!self.pow2 || value.is_power_of_two()) && (self.min..=self.max).contains(&value);
        if ok {
            Ok(value)
        } else {
            Err(self.bad(value))
        }
    }

    /// The header value for a creator's `value`: rounded up to a power of two (and
    /// to `min`) where the rule says so. Refused when 0 for a parameter with a
    /// minimum, or above `max` (checked before rounding, which so cannot overflow);
    /// what it gives passes [`Rule::check`].
    pub(crate) fn option(&self, value: u64) -> Result<u64, Bad> {
        if (value == 0 && self.min > 0) || value > self.max {
            return Err(self.bad(value));
        }
        let value = if self.pow2 {
            value.next_power_of_two().max(self.min)
        } else {
            value
        };
        self.check(value)
    }

    /// `value` breaks this rule.
    pub(crate) fn bad(&self, value: u64) -> Bad {
        Bad {
            what: self.what,
            header: self.header,
            reason: self.reason,
            value,
        }
    }
}

/// A layout parameter out of range (a [`Rule`] broken, or a layout too large for
/// the address space), told to a creator as [`ChannelError::InvalidParameter`] and
/// to an opener (or `shmipc info`) as [`LayoutError::Mismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bad {
    pub(crate) what: &'static str,
    pub(crate) header: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) value: u64,
}

impl Bad {
    /// A header parameter that only a header has (no creator sets it wrong).
    pub(crate) const fn header(header: &'static str, value: u64) -> Self {
        Self {
            what: header,
            header,
            reason: "",
            value,
        }
    }

    /// As a creator's error.
    pub(crate) fn invalid(self, name: &str) -> ChannelError {
        ChannelError::InvalidParameter {
            name: name.to_owned(),
            what: self.what,
            value: self.value,
            reason: self.reason,
        }
    }

    /// As an opener's error (the header of a `kind` channel holds it): no creator
    /// writes a value that breaks the rules, so the header is damaged.
    pub(crate) fn layout(self, kind: Kind) -> LayoutError {
        LayoutError::Corrupt {
            kind: kind.as_str(),
            what: self.header,
            found: self.value,
        }
    }
}

/// The bytes a channel's layout needs, if a segment of `len` bytes (from the
/// channel's start) holds them: the extent check of an opening endpoint and of
/// `shmipc info`, `what` naming the layout in the error.
pub(crate) fn fits(what: &'static str, size: u64, len: usize) -> Result<usize, LayoutError> {
    match usize::try_from(size) {
        Ok(need) if need <= len => Ok(need),
        _ => Err(LayoutError::TooSmall {
            what,
            len,
            need: usize::try_from(size).unwrap_or(usize::MAX),
        }),
    }
}

/// Creation settings every channel kind has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common {
    pub(crate) mode: u32,
    pub(crate) persistence: Persistence,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            mode: 0o600,
            persistence: Persistence::UntilLastClose,
        }
    }
}

/// A channel's mapped segment.
#[derive(Debug)]
pub(crate) struct Mapped {
    /// Shared only by `Mapped::again` (the fuzz harness's endpoints over one
    /// mapping); an endpoint opened by name has its own.
    pub(crate) view: Arc<View>,
    pub(crate) name: String,
}

impl Mapped {
    /// Another handle on this mapping, its header read and checked again as an
    /// opener does (without waiting for an unfinished creator): for
    /// `channel::fuzzing`, whose endpoints attach to one mapping per process and
    /// so go through every check of an open but make no system call.
    pub(crate) fn again(&self, kind: Kind) -> Result<(Mapped, Header), ChannelError> {
        let header = layout::expect(&self.view, 0, kind, Duration::ZERO).map_err(|source| {
            ChannelError::Layout {
                name: self.name.clone(),
                source,
            }
        })?;
        Ok((
            Mapped {
                view: Arc::clone(&self.view),
                name: self.name.clone(),
            },
            header,
        ))
    }
}

impl Mapped {
    /// Gives memory to the pages of the first `need` bytes (what the kind's
    /// validation found the layout uses) that have none, before anything is
    /// written through the mapping (`View::back_holes`).
    pub(crate) fn back_holes(&self, need: u64) -> Result<(), LayoutError> {
        self.view
            .back_holes(need)
            .map_err(|e| LayoutError::NoMemory {
                need,
                reason: e.to_string(),
            })
    }

    /// Typed access to the first `size` bytes of the mapping (a size the kind's
    /// `validate` checked against it); refused for a mapping that is not
    /// read-write.
    pub(crate) fn words(&self, kind: Kind, size: u64) -> Result<Words, LayoutError> {
        usize::try_from(size)
            .ok()
            .and_then(|len| Words::new(&self.view, len))
            .ok_or(Bad::header("segment access", 0).layout(kind))
    }
}

/// How to get the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    Create,
    Open,
    CreateOrOpen,
}

/// Creates (and initialises, with `init` then the header) or opens a channel
/// segment of `kind`. `size` and `params` are used when creating; an opener gets
/// the header found, after `check`.
pub(crate) fn get(
    name: &str,
    how: How,
    kind: Kind,
    common: &Common,
    size: u64,
    params: [u64; 4],
    init: impl Fn(&View) -> Result<(), crate::error::AccessError>,
) -> Result<(Mapped, Header), ChannelError> {
    // Asymmetric fences for this process's ringers (notify.rs), off the data path.
    super::notify::prepare();
    let opts = Segment::options()
        .size(size)
        .mode(common.mode)
        .persistence(common.persistence);
    let layout_err = |source| ChannelError::Layout {
        name: name.to_owned(),
        source,
    };
    // Built unnamed and named only once initialised (see `SegmentOptions::create_init`);
    // once per attempt: a create_or_open that finds the name taken at the end of a
    // create (after the init) and then gone at the open creates again.
    let init = |view: &View| init(view).and_then(|()| layout::init(view, 0, kind, params));
    let mut create = |opts: &crate::SegmentOptions| {
        opts.create_init(name, init)
            .map(|(_, view)| view)
            .map_err(|e| match e {
                InitError::Create(e) => ChannelError::from(e),
                InitError::Map(e) => e.into(),
                InitError::Init(e) => layout_err(LayoutError::Access(e)),
            })
    };
    let open = |opts: &crate::SegmentOptions| -> Result<View, ChannelError> {
        let seg = opts.clone().access(Access::ReadWrite).open(name)?;
        // The header read with pread before anything is mapped (no SIGBUS).
        layout::check_unmapped(&seg, INIT_PATIENCE).map_err(layout_err)?;
        Ok(seg.map_all()?)
    };
    let view = match how {
        How::Create => create(&opts)?,
        How::Open => open(&opts)?,
        How::CreateOrOpen => create_or_open(&opts, &mut create, &open)?,
    };
    let header = layout::expect(&view, 0, kind, INIT_PATIENCE).map_err(layout_err)?;
    Ok((
        Mapped {
            view: Arc::new(view),
            name: name.to_owned(),
        },
        header,
    ))
}

/// Creates the channel's segment, or opens the existing one whatever its size: an
/// existing channel keeps its own parameters (the header check decides whether they
/// fit), unlike `SegmentOptions::create_or_open`, which refuses a smaller segment.
fn create_or_open(
    opts: &crate::SegmentOptions,
    create: &mut impl FnMut(&crate::SegmentOptions) -> Result<View, ChannelError>,
    open: &impl Fn(&crate::SegmentOptions) -> Result<View, ChannelError>,
) -> Result<View, ChannelError> {
    // The name may vanish between a failed create and the open (its last holder
    // left): try again, a bounded number of times.
    for _ in 0..100 {
        match create(opts) {
            Ok(view) => return Ok(view),
            Err(ChannelError::Create(crate::CreateError::AlreadyExists { .. })) => {}
            Err(e) => return Err(e),
        }
        match open(opts) {
            Ok(view) => return Ok(view),
            Err(ChannelError::Open(crate::OpenError::NotFound { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    open(opts)
}

/// An endpoint's registration (`peer.rs`'s [`Place`]): the holder's liveness
/// token (0: free), then how many holders it has had.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PeerWords {
    pub(crate) token: u64,
    pub(crate) attaches: u64,
}

/// A bell's words (`notify.rs`'s [`Bell`]): the sequence sleepers wait on, and how
/// many sleep.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BellWords {
    pub(crate) seq: u32,
    pub(crate) sleepers: u32,
}

const _: () = {
    assert!(size_of::<PeerWords>() == 16);
    assert!(offset_of!(PeerWords, token) == 0);
    assert!(offset_of!(PeerWords, attaches) == 8);
    assert!(size_of::<BellWords>() == 8);
    assert!(offset_of!(BellWords, seq) == 0);
    assert!(offset_of!(BellWords, sleepers) == 4);
};

/// Typed access to the words of a mapped channel at offsets validated once.
///
/// # Safety (of the users)
/// A `Words` is only made for a view whose length was checked to cover every
/// offset later passed to it, and it must not outlive that view (channel
/// endpoints keep both in the same struct).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Words {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `Words` is a pointer into a shared mapping accessed only through atomics
// and raw copies; which thread holds it does not matter.
unsafe impl Send for Words {}
// SAFETY: as above; every access through `&Words` is atomic or a raw copy.
unsafe impl Sync for Words {}

impl Words {
    /// Covers the first `len` bytes of `view` (`len <= view.len()`).
    pub(crate) fn new(view: &View, len: usize) -> Option<Self> {
        if len > view.len() || view.access() != Access::ReadWrite {
            return None;
        }
        Some(Self {
            base: NonNull::new(view.as_mut_ptr())?,
            len,
        })
    }

    /// The `AtomicU64` at `off`, which callers keep 8-aligned and in range (fixed
    /// layout offsets, or slot offsets bounded by the validated geometry).
    #[inline]
    pub(crate) fn u64(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "channel layout offset out of range"
        );
        // SAFETY: in range and aligned (asserted; the mapping base is page aligned),
        // inside a live read-write mapping (struct contract); atomics may be shared
        // with other processes.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The `AtomicU32` at `off`; as [`Words::u64`].
    #[inline]
    pub(crate) fn u32(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "channel layout offset out of range"
        );
        // SAFETY: as in `u64`.
        unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The endpoint registration ([`PeerWords`]) at `off`, its liveness asked on
    /// the object of `scope`.
    #[inline]
    pub(crate) fn place<'a>(&'a self, off: usize, scope: Scope<'a>) -> Place<'a> {
        Place {
            token: self.u64(off + offset_of!(PeerWords, token)),
            attaches: self.u64(off + offset_of!(PeerWords, attaches)),
            scope,
        }
    }

    /// The bell ([`BellWords`]) at `off`.
    #[inline]
    pub(crate) fn bell(&self, off: usize) -> Bell<'_> {
        Bell {
            seq: self.u32(off + offset_of!(BellWords, seq)),
            sleepers: self.u32(off + offset_of!(BellWords, sleepers)),
        }
    }

    /// A raw pointer to `len` bytes at `off`, in range.
    #[inline]
    pub(crate) fn bytes(&self, off: usize, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|e| e <= self.len),
            "channel payload out of range"
        );
        // SAFETY: in range (asserted) of the live mapping.
        unsafe { self.base.as_ptr().add(off) }
    }
}

/// Rounds up to a multiple of 64 (a cache line), or None on overflow.
pub(crate) fn line_up(n: u64) -> Option<u64> {
    n.checked_add(63).map(|v| v & !63)
}
