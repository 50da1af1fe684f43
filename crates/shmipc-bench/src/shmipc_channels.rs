//! The shmipc channel contenders: **not wired yet**.
//!
//! The channels (`shmipc::channel::{spsc, pubsub}`) are being written on another
//! branch. Once they land, wire each contender by writing one function here and
//! replacing its `None` below with `Some(that_function)`; the harness, the table,
//! the JSON (including `ratio_to_iceoryx2` for every `shmipc-*` row) and the SVG pick
//! it up with no other change. Until then these rows are listed as "not wired" in the
//! output and skipped.
//!
//! What each function must do (see [`crate::latency::RoundTrip`] and
//! [`crate::throughput::Stream`] for the exact contracts):
//!
//! * `SPSC_ROUND_TRIP` (`shmipc-spsc`): like `iceoryx::open_round_trip`. On
//!   `Side::Client` create two spsc channels named `ctx.name("spsc-ping")` and
//!   `ctx.name("spsc-pong")` (capacity for one `MAX_PAYLOAD` message is enough), be the
//!   producer of `ping` and the consumer of `pong`; on `Side::Server` open both the other
//!   way round. `ping`: loan a slot of `msg.len()`, copy `msg` into it, commit; spin
//!   (`spin::Spinner`) on `try_recv` of `pong` and copy the message into `reply`.
//!   `pong`: the mirror image.
//! * `PUBSUB_ROUND_TRIP` (`shmipc-pubsub`): the same with two pubsub channels, one
//!   subscriber each.
//! * `SPSC_BLOCKING_ROUND_TRIP` (`shmipc-spsc-blocking`): as `shmipc-spsc`, but wait
//!   with the channel's blocking receive (its spin-then-futex path) instead of
//!   spinning.
//! * `SPSC_STREAM` (`shmipc-spsc` in the throughput suite): like
//!   `iceoryx::open_stream`. `begin(len)` picks or creates a channel sized for
//!   `throughput::slots_for(len)` messages of `len` bytes (both sides call it with the
//!   same `len` before a cell; the client first); `send` loans, copies, commits (waits
//!   while full); `recv` spins on `try_recv` and copies the message out.
//!
//! Every shared object name must come from `ctx.name(..)` so that it is unique to the
//! run and removed with it.

use crate::{latency, throughput};

/// `shmipc-spsc` round trip (spinning). Not wired yet.
pub const SPSC_ROUND_TRIP: Option<latency::OpenFn> = None;

/// `shmipc-pubsub` round trip (spinning). Not wired yet.
pub const PUBSUB_ROUND_TRIP: Option<latency::OpenFn> = None;

/// `shmipc-spsc-blocking` round trip (sleeping waits). Not wired yet.
pub const SPSC_BLOCKING_ROUND_TRIP: Option<latency::OpenFn> = None;

/// `shmipc-spsc` stream (zero-copy loans) for the throughput suite. Not wired yet.
pub const SPSC_STREAM: Option<throughput::OpenFn> = None;
