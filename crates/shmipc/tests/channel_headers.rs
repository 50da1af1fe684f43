//! Hand-corrupted channel headers, on real segments: an opening endpoint and
//! [`shmipc::inspect`] (what `shmipc info` shows) read a header's layout
//! parameters through one validation per kind, so they refuse the same headers
//! with the same error, and accept the same ones. And a creator is refused, by the
//! same rules, the settings no opener would accept.

mod chan_common;

use chan_common::Name;
use shmipc::channel::{mpmc, pubsub, rpc, spsc, ChannelError};
use shmipc::{inspect, Access, Contents, LayoutError, Segment};

/// Where the header's four parameter words start (`layout.rs`: magic, version,
/// kind, state, then the parameters).
const PARAMS_AT: usize = 24;

/// What both readers must say of a header.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A channel.
    Ok,
    /// `LayoutError::Mismatch` naming this parameter (the start of its `what`).
    Bad(&'static str),
    /// `LayoutError::TooSmall`: valid parameters, a segment too small for them.
    TooSmall,
}

fn params(name: &str) -> [u64; 4] {
    let view = Segment::open(name, Access::Read)
        .unwrap()
        .map(0, 64)
        .unwrap();
    std::array::from_fn(|i| view.read_pod(PARAMS_AT + 8 * i).unwrap())
}

fn set_params(name: &str, words: [u64; 4]) {
    let view = Segment::open(name, Access::ReadWrite)
        .unwrap()
        .map(0, 64)
        .unwrap();
    for (i, w) in words.iter().enumerate() {
        view.write_pod(PARAMS_AT + 8 * i, w).unwrap();
    }
}

/// Writes each case's parameters into the header of the live channel `name`
/// (whose creator still holds it), then opens an endpoint with `open` and
/// inspects: both must accept, or both refuse with the same [`LayoutError`], of
/// the kind the case wants.
fn agree(name: &str, open: impl Fn(&str) -> Result<(), ChannelError>, cases: &[([u64; 4], Want)]) {
    let made = params(name);
    for &(words, want) in cases {
        set_params(name, words);
        let opened = match open(name) {
            Ok(()) => Ok(()),
            Err(ChannelError::Layout { source, .. }) => Err(source),
            Err(e) => panic!("{words:x?}: the open failed otherwise: {e}"),
        };
        let inspected = match inspect(name).unwrap() {
            Contents::Object { state: Some(_), .. } => Ok(()),
            Contents::Invalid(e) => Err(e),
            other => panic!("{words:x?}: inspect found {other:?}"),
        };
        assert_eq!(
            opened, inspected,
            "{words:x?}: the open (left) and inspect (right) disagree"
        );
        match (want, &opened) {
            (Want::Ok, Ok(())) | (Want::TooSmall, Err(LayoutError::TooSmall { .. })) => {}
            // A value no creator writes: the header is called damaged, not made
            // with other parameters.
            (Want::Bad(what), Err(LayoutError::Corrupt { what: w, .. })) if w.starts_with(what) => {
            }
            // A message type no Rust type has is damage; another valid one is a
            // creator's other choice.
            (
                Want::Bad(what),
                Err(LayoutError::Corrupt { what: w, .. } | LayoutError::Mismatch { what: w, .. }),
            ) if w.starts_with(what) && what.starts_with("message type") => {}
            _ => panic!("{words:x?}: wanted {want:?}, both said {opened:?}"),
        }
    }
    // Put back, the channel is whole again.
    set_params(name, made);
    open(name).unwrap();
    assert!(matches!(
        inspect(name).unwrap(),
        Contents::Object { state: Some(_), .. }
    ));
}

#[test]
fn spsc_headers_refused_alike() {
    let name = Name::new("hdr-spsc");
    let _tx = spsc::Producer::create(&name.0, 16, 64).unwrap();
    let [cap, slot, ty, hash] = params(&name.0);
    assert_eq!((cap, slot, ty, hash), (16, 64, 0, 0));
    let with = |cap, slot| [cap, slot, ty, hash];
    agree(
        &name.0,
        |n| spsc::Consumer::open(n).map(drop),
        &[
            (with(3, 64), Want::Bad("capacity")),
            (with(0, 64), Want::Bad("capacity")),
            (with(1 << 32, 64), Want::Bad("capacity")),
            (with(16, (1 << 31) + 1), Want::Bad("slot size")),
            (with(1 << 20, 64), Want::TooSmall),
            (with(16, 4096), Want::TooSmall),
            (with(8, 64), Want::Ok),
            (with(1, 0), Want::Ok),
            // Type words no type has (whatever type the opener carries): a size
            // with no alignment, an alignment over 8 (no typed endpoint takes
            // one), an even name hash, a hash without a size.
            ([16, 64, 5, 0x1235], Want::Bad("message type size")),
            (
                [16, 64, 8 | (16 << 32), 0x1235],
                Want::Bad("message type size"),
            ),
            (
                [16, 64, 8 | (8 << 32), 0x1234],
                Want::Bad("message type (hash"),
            ),
            ([16, 64, 0, 7], Want::Bad("message type size")),
        ],
    );
}

#[test]
fn pubsub_headers_refused_alike() {
    let name = Name::new("hdr-pubsub");
    let _p = pubsub::Options::new()
        .capacity(8)
        .slot_size(100)
        .max_subscribers(4)
        .create_publisher(&name.0)
        .unwrap();
    let [p0, p1, ty, hash] = params(&name.0);
    // capacity | max subscribers << 32; slot size | overflow << 32 | max held << 40
    // | kept history << 48.
    assert_eq!((p0, p1 & 0xffff_ffff), (8 | (4 << 32), 100));
    let held = (p1 >> 40) & 0xff;
    let with = |cap: u64, subs: u64, slot: u64, overflow: u64, held: u64, keep: u64| {
        [
            cap | (subs << 32),
            slot | (overflow << 32) | (held << 40) | (keep << 48),
            ty,
            hash,
        ]
    };
    agree(
        &name.0,
        |n| pubsub::Subscriber::open(n).map(drop),
        &[
            (with(8, 4, 100, 2, held, 0), Want::Bad("overflow policy")),
            (with(1, 4, 100, 0, held, 0), Want::Bad("capacity")),
            (with(6, 4, 100, 0, held, 0), Want::Bad("capacity")),
            (with(8, 0, 100, 0, held, 0), Want::Bad("max subscribers")),
            (with(8, 1025, 100, 0, held, 0), Want::Bad("max subscribers")),
            (with(8, 4, 100, 0, 0, 0), Want::Bad("max held")),
            (with(8, 4, 100, 0, 65, 0), Want::Bad("max held")),
            (with(8, 4, 100, 0, held, 8), Want::Bad("kept history")),
            (with(1 << 20, 4, 100, 0, held, 0), Want::TooSmall),
            (with(8, 1024, 100, 0, held, 0), Want::TooSmall),
            (with(8, 2, 100, 1, held, 7), Want::Ok),
            // A pubsub channel carries bytes: its type words are zero.
            (
                [p0, p1, 8 | (8 << 32), 0x1235],
                Want::Bad("message type size"),
            ),
            ([p0, p1, 0, 3], Want::Bad("message type (hash")),
        ],
    );
}

#[test]
fn mpmc_headers_refused_alike() {
    let name = Name::new("hdr-mpmc");
    let _p = mpmc::Options::new()
        .capacity(8)
        .slot_size(16)
        .max_endpoints(5)
        .create_producer(&name.0)
        .unwrap();
    let [p0, slot, ty, hash] = params(&name.0);
    assert_eq!((p0, slot, ty, hash), (8 | (5 << 32), 16, 0, 0));
    let with = |cap: u64, ends: u64, slot: u64| [cap | (ends << 32), slot, 0, 0];
    agree(
        &name.0,
        |n| mpmc::Consumer::open(n).map(drop),
        &[
            (with(1, 5, 16), Want::Bad("capacity")),
            (with(12, 5, 16), Want::Bad("capacity")),
            (with(8, 0, 16), Want::Bad("max endpoints")),
            (with(8, (1 << 16) + 1, 16), Want::Bad("max endpoints")),
            (with(8, 5, (1 << 31) + 1), Want::Bad("slot size")),
            // An mpmc queue carries bytes: its type words are zero.
            (
                [8 | (5 << 32), 16, 8 | (8 << 32), 0],
                Want::Bad("message type"),
            ),
            ([8 | (5 << 32), 16, 0, 0x1235], Want::Bad("message type")),
            (with(1 << 20, 5, 16), Want::TooSmall),
            (with(8, 5000, 16), Want::TooSmall),
            (with(4, 2, 16), Want::Ok),
        ],
    );
}

#[test]
fn rpc_headers_refused_alike() {
    let name = Name::new("hdr-rpc");
    let _server = rpc::Options::new()
        .capacity(4)
        .slot_size(64)
        .max_clients(16)
        .responses(8)
        .create_server(&name.0)
        .unwrap();
    let made = params(&name.0);
    assert_eq!(made, [4 | (16 << 32), 64, 8, 0]);
    let with = |cap: u64, clients: u64, slot: u64, responses: u64| {
        [cap | (clients << 32), slot, responses, 0]
    };
    agree(
        &name.0,
        |n| rpc::Client::open(n).map(drop),
        &[
            ([4 | (16 << 32), 64, 8, 7], Want::Bad("reserved parameter")),
            (with(1, 16, 64, 8), Want::Bad("capacity")),
            // Both wrong: the capacity is named first, by both.
            (with(1, 16, 64, 3), Want::Bad("capacity")),
            (with(1 << 25, 16, 64, 8), Want::Bad("capacity")),
            (with(4, 16, 64, 0), Want::Bad("responses")),
            (with(4, 16, 64, 3), Want::Bad("responses")),
            (with(4, 16, (1 << 30) + 1, 8), Want::Bad("slot size")),
            (with(4, 0, 64, 8), Want::Bad("max clients")),
            (with(4, 4097, 64, 8), Want::Bad("max clients")),
            // Every parameter in range, the layout beyond the address space.
            (
                with(4, 4096, 1 << 30, 1 << 24),
                Want::Bad("capacity x slot size"),
            ),
            (with(1 << 24, 16, 64, 8), Want::TooSmall),
            (with(2, 8, 64, 1), Want::Ok),
        ],
    );
}

/// A creator is held to the same rules: what it may not make is refused with
/// `InvalidParameter` (before any segment exists), never a panic, and a value it
/// rounds up is checked before rounding.
#[test]
fn creators_refuse_what_openers_would() {
    let name = Name::new("hdr-create");
    let invalid = |r: Result<(), ChannelError>, what: &str, value: u64| match r {
        Err(ChannelError::InvalidParameter {
            what: w, value: v, ..
        }) if w == what && v == value => {}
        other => panic!("wanted {what} {value} refused, got {other:?}"),
    };
    let n = &name.0;
    let huge = usize::MAX;
    let spsc = |o: spsc::Options| o.create_producer(n).map(drop);
    invalid(spsc(spsc::Options::new().capacity(0)), "capacity", 0);
    invalid(
        spsc(spsc::Options::new().capacity(huge)),
        "capacity",
        huge as u64,
    );
    invalid(
        spsc(spsc::Options::new().slot_size((1 << 31) + 1)),
        "slot size",
        (1 << 31) + 1,
    );
    let ps = |o: pubsub::Options| o.create_publisher(n).map(drop);
    invalid(ps(pubsub::Options::new().capacity(0)), "capacity", 0);
    invalid(
        ps(pubsub::Options::new().capacity(huge)),
        "capacity",
        huge as u64,
    );
    invalid(
        ps(pubsub::Options::new().max_subscribers(0)),
        "max subscribers",
        0,
    );
    invalid(
        ps(pubsub::Options::new().max_held(65)),
        "max held samples",
        65,
    );
    let mq = |o: mpmc::Options| o.create_producer(n).map(drop);
    invalid(mq(mpmc::Options::new().capacity(0)), "capacity", 0);
    invalid(
        mq(mpmc::Options::new().capacity(huge)),
        "capacity",
        huge as u64,
    );
    invalid(
        mq(mpmc::Options::new().max_endpoints(65537)),
        "max endpoints",
        65537,
    );
    let rq = |o: rpc::Options| o.create_server(n).map(drop);
    invalid(rq(rpc::Options::new().capacity(0)), "capacity", 0);
    invalid(
        rq(rpc::Options::new().capacity(huge)),
        "capacity",
        huge as u64,
    );
    invalid(
        rq(rpc::Options::new().capacity((1 << 24) + 1)),
        "capacity",
        (1 << 24) + 1,
    );
    invalid(rq(rpc::Options::new().responses(0)), "responses", 0);
    invalid(
        rq(rpc::Options::new().responses(huge)),
        "responses",
        huge as u64,
    );
    invalid(
        rq(rpc::Options::new().max_clients(4097)),
        "max clients",
        4097,
    );
    invalid(
        rq(rpc::Options::new()
            .max_clients(4096)
            .slot_size(1 << 30)
            .responses(1 << 24)),
        "capacity x slot size",
        64,
    );
    // Nothing was made.
    assert!(Segment::open(n, Access::Read).is_err());
    // Values in range are rounded up and made.
    rq(rpc::Options::new().capacity(3).responses(1)).unwrap();
}
