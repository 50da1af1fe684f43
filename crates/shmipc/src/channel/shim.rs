//! The ring algorithms' atomics: the crate's one loom shim (`crate::shim`), so that
//! the same ring code is model checked.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p shmipc --lib --release channel::`

pub(crate) use crate::shim::{fence, AtomicU64, Ordering};
