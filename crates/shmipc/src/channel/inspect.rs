//! A snapshot of a channel's state for [`crate::inspect`]: capacity, connected
//! peers and fill, copied out of a (possibly read-only) view, never referenced,
//! never locked, never waited for.
//!
//! The offsets are those of the `#[repr(C)]` layout structs of `spsc.rs`,
//! `pubsub.rs`, `mpmc.rs` and `rpc.rs` (taken with `offset_of!`), and the extents
//! come from the same size functions the endpoints use, so there is one layout per
//! kind; words are only copied out here, never referenced. The tests at the end
//! create a channel of each kind with real endpoints and check what is read here.
//!
//! The header's parameters and the segment's extent are validated by each kind's
//! `validate` (`spsc::validate`, `pubsub::validate`, `mpmc::validate`,
//! `rpc::validate`), the very function an opening endpoint calls: parameters out of
//! range, or a segment too small for them, give the [`LayoutError`] opening the
//! channel gives, and what an endpoint refuses is never shown as a channel; words
//! that no correct peer writes (a fill beyond the ring) read as "unknown" (`None`). Peers count only while their process lives
//! (`peer.rs`), so a SIGKILLed endpoint is not shown as connected.

use std::mem::offset_of;

use crate::layout::{Header, Kind, LayoutError};
use crate::view::View;
use crate::vocab::ObjectState;

use super::shared::PeerWords;
use super::{mpmc, peer, pubsub, rpc, spsc, spsc_ring};

/// Most slots whose stamps an spsc inspection scans to count the queued messages.
const SPSC_SCAN: u64 = 1 << 16;

/// The state of the channel whose validated `header` is at `offset` of `view`
/// (`Ok(None)` for a kind that is not a channel).
///
/// # Errors
/// The header's parameters are not those of a valid channel, or the view is too
/// small for the layout they describe. Endpoints' liveness is asked on the
/// object of `scope`.
pub(crate) fn state(
    view: &View,
    offset: usize,
    header: &Header,
    scope: peer::Scope<'_>,
) -> Result<Option<ObjectState>, LayoutError> {
    let r = Reader {
        view,
        offset,
        scope,
    };
    Ok(Some(match header.kind {
        Kind::Spsc => spsc(&r, header.params)?,
        Kind::PubSub => pubsub(&r, header.params)?,
        Kind::Mpmc => mpmc(&r, header.params)?,
        Kind::Rpc => rpc(&r, header.params)?,
        _ => return Ok(None),
    }))
}

/// How many bytes from the channel's start [`state`] reads, but for an spsc
/// channel's slot stamps (its queued count): the control block and the endpoint
/// records, before the ring and slots. `None` for a kind that is not a channel
/// or parameters no valid channel has.
#[cfg(target_os = "linux")]
pub(crate) fn state_prefix(header: &Header) -> Option<u64> {
    let params = header.params;
    Some(match header.kind {
        Kind::Spsc => {
            spsc::validate(params, usize::MAX).ok()?;
            at(spsc::SLOTS_AT)
        }
        Kind::PubSub => {
            let (shape, sizes) = pubsub::validate(params, usize::MAX).ok()?;
            at(pubsub::SUBS_AT).checked_add(shape.max_subscribers.checked_mul(sizes.rec)?)?
        }
        Kind::Mpmc => {
            let (p, _) = mpmc::validate(params, usize::MAX).ok()?;
            at(mpmc::RECORDS_AT).checked_add(p.max_endpoints.checked_mul(at(mpmc::RECORD_LEN))?)?
        }
        Kind::Rpc => {
            let (p, _) = rpc::validate(params, usize::MAX).ok()?;
            at(rpc::CLIENTS_AT).checked_add(p.max_clients.checked_mul(at(rpc::CLIENT_LEN))?)?
        }
        _ => return None,
    })
}

/// Copies words out of the channel's region.
struct Reader<'a> {
    view: &'a View,
    offset: usize,
    scope: peer::Scope<'a>,
}

impl Reader<'_> {
    /// The word at `off` from the channel's start; 0 if out of the view (callers
    /// check the extent first, with the kind's `validate`).
    fn u64(&self, off: u64) -> u64 {
        usize::try_from(off)
            .ok()
            .and_then(|o| o.checked_add(self.offset))
            .and_then(|o| self.view.read_pod(o).ok())
            .unwrap_or(0)
    }

    /// Bytes of the view from the channel's start.
    fn len(&self) -> usize {
        self.view.len().saturating_sub(self.offset)
    }

    /// The process id of the live endpoint whose token is at `off`, if any (0 for
    /// a live endpoint in another PID namespace, whose pid means nothing here).
    fn live(&self, off: u64) -> Option<u32> {
        let tok = self.u64(off);
        (tok != 0 && peer::alive(self.scope, tok)).then(|| peer::pid(tok))
    }

    /// As [`Reader::live`], for the registration ([`PeerWords`]) at `off`.
    fn live_peer(&self, off: usize) -> Option<u32> {
        self.live(at(off + offset_of!(PeerWords, token)))
    }

    /// How many of `n` records of `len` bytes from `first` hold a live token (at
    /// `token` into the record) for which `keep(record offset)` holds.
    fn live_count(
        &self,
        (first, len, token): (usize, usize, usize),
        n: u64,
        keep: impl Fn(u64) -> bool,
    ) -> u32 {
        let live = (0..n)
            .map(|i| at(first) + i * at(len))
            .filter(|&off| keep(off) && self.live(off + at(token)).is_some())
            .count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }
}

/// A layout offset as the `u64` the reader computes in.
const fn at(off: usize) -> u64 {
    off as u64
}

/// `enq - dequeue` of a bounded queue when it makes sense (garbage, or positions
/// read a moment apart, may say otherwise), at most the capacity.
fn queued(enq: u64, deq: u64, capacity: u64) -> Option<u64> {
    let d = enq.wrapping_sub(deq);
    if d > 2 * capacity {
        // Dequeue ahead of enqueue (read apart) or garbage.
        return (deq.wrapping_sub(enq) <= capacity).then_some(0);
    }
    Some(d.min(capacity))
}

// spsc.rs's `Control` (producer, consumer, tail), then the slots from
// `spsc::SLOTS_AT`, each starting with its `SlotHeader` (the stamp).
fn spsc(r: &Reader<'_>, params: [u64; 4]) -> Result<ObjectState, LayoutError> {
    let spsc::Shape {
        capacity,
        slot_size,
        stride,
        ..
    } = spsc::validate(params, r.len())?;
    // Messages published and not yet handed back: the stamps from the consumer's
    // tail on that carry their message's tag.
    let tail = r.u64(at(offset_of!(spsc::Control, tail)));
    let mut n = 0;
    while n < capacity.min(SPSC_SCAN) {
        let seq = tail.wrapping_add(n);
        let slot = at(spsc::SLOTS_AT) + (seq & (capacity - 1)) * stride;
        let stamp = r.u64(slot + at(offset_of!(spsc::SlotHeader, stamp)));
        if stamp as u32 != spsc_ring::tag(seq) {
            break;
        }
        n += 1;
    }
    Ok(ObjectState::Spsc {
        capacity,
        max_message: slot_size,
        producer: r.live_peer(offset_of!(spsc::Control, producer)),
        consumer: r.live_peer(offset_of!(spsc::Control, consumer)),
        queued: (n < SPSC_SCAN || capacity <= SPSC_SCAN).then_some(n),
    })
}

// pubsub.rs's `Control` (publisher, head), then the subscriber records
// (`SubRecord`: registration, cursor; then the holds) from `pubsub::SUBS_AT`.
fn pubsub(r: &Reader<'_>, params: [u64; 4]) -> Result<ObjectState, LayoutError> {
    let (shape, sizes) = pubsub::validate(params, r.len())?;
    let published = r.u64(at(offset_of!(pubsub::Control, head)));
    let mut subscribers = 0u32;
    let mut max_lag: Option<u64> = None;
    for i in 0..shape.max_subscribers {
        let rec = at(pubsub::SUBS_AT) + i * sizes.rec;
        let token = rec + at(offset_of!(pubsub::SubRecord, peer) + offset_of!(PeerWords, token));
        if r.live(token).is_none() {
            continue;
        }
        subscribers += 1;
        let lag = published.wrapping_sub(r.u64(rec + at(offset_of!(pubsub::SubRecord, cursor))));
        if lag <= shape.capacity {
            max_lag = Some(max_lag.map_or(lag, |m| m.max(lag)));
        }
    }
    Ok(ObjectState::PubSub {
        capacity: shape.capacity,
        max_message: shape.slot_size,
        overflow: shape.overflow,
        publisher: r.live_peer(offset_of!(pubsub::Control, publisher)),
        subscribers,
        max_subscribers: shape.max_subscribers as u32,
        published,
        max_lag,
    })
}

// mpmc.rs's `Control` (enqueue and dequeue positions), then the endpoint
// `Record`s (token, attaches, role: 1 producer, 2 consumer) from
// `mpmc::RECORDS_AT`; then the slots.
fn mpmc(r: &Reader<'_>, params: [u64; 4]) -> Result<ObjectState, LayoutError> {
    let (
        mpmc::Params {
            capacity,
            slot_size,
            max_endpoints,
        },
        _,
    ) = mpmc::validate(params, r.len())?;
    let deq = r.u64(at(offset_of!(mpmc::Control, dequeue_pos)));
    let enq = r.u64(at(offset_of!(mpmc::Control, enqueue_pos)));
    let role = |want: u64| move |off: u64| r.u64(off + at(offset_of!(mpmc::Record, role))) == want;
    let records = (
        mpmc::RECORDS_AT,
        mpmc::RECORD_LEN,
        offset_of!(mpmc::Record, token),
    );
    Ok(ObjectState::Mpmc {
        capacity,
        max_message: slot_size,
        producers: r.live_count(records, max_endpoints, role(mpmc::ROLE_PRODUCER)),
        consumers: r.live_count(records, max_endpoints, role(mpmc::ROLE_CONSUMER)),
        max_endpoints: max_endpoints as u32,
        queued: queued(enq, deq, capacity),
    })
}

// rpc.rs's `Control` (server, request enqueue and dequeue positions), then the
// `ClientRecord`s from `rpc::CLIENTS_AT` (registration first), then the request
// slots and response rings.
fn rpc(r: &Reader<'_>, params: [u64; 4]) -> Result<ObjectState, LayoutError> {
    let (
        rpc::Params {
            capacity,
            slot_size,
            max_clients,
            ..
        },
        _,
    ) = rpc::validate(params, r.len())?;
    let deq = r.u64(at(offset_of!(rpc::Control, dequeue_pos)));
    let enq = r.u64(at(offset_of!(rpc::Control, enqueue_pos)));
    let clients = (
        rpc::CLIENTS_AT,
        rpc::CLIENT_LEN,
        offset_of!(rpc::ClientRecord, peer) + offset_of!(PeerWords, token),
    );
    Ok(ObjectState::Rpc {
        capacity,
        max_message: slot_size,
        server: r.live_peer(offset_of!(rpc::Control, server)),
        clients: r.live_count(clients, max_clients, |_| true),
        max_clients: max_clients as u32,
        queued: queued(enq, deq, capacity),
    })
}

#[cfg(all(test, target_os = "linux", not(miri)))]
mod tests {
    use super::*;
    use crate::channel::{mpmc, pubsub, rpc, spsc};
    use crate::inspect::{inspect, Contents};
    use crate::layout;
    use crate::segment::Segment;

    fn name(tag: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "t-chinspect-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn state(n: &str) -> ObjectState {
        match inspect(n).unwrap() {
            Contents::Object { state: Some(s), .. } => s,
            other => panic!("{n}: {other:?}"),
        }
    }

    #[test]
    fn pubsub_peers_and_counts() {
        let n = name("pubsub");
        let me = std::process::id();
        let mut p = pubsub::Options::new()
            .capacity(8)
            .slot_size(100)
            .max_subscribers(4)
            .create_publisher(&n)
            .unwrap();
        let s1 = pubsub::Subscriber::open(&n).unwrap();
        let s2 = pubsub::Subscriber::open(&n).unwrap();
        for _ in 0..3 {
            p.send(b"x").unwrap();
        }
        let want = |subscribers, publisher| ObjectState::PubSub {
            capacity: 8,
            max_message: 100,
            overflow: pubsub::Overflow::Overwrite,
            publisher,
            subscribers,
            max_subscribers: 4,
            published: 3,
            max_lag: Some(3),
        };
        assert_eq!(state(&n), want(2, Some(me)));
        drop(s1);
        drop(p);
        assert_eq!(state(&n), want(1, None));
        drop(s2);

        let b = name("pubsub-block");
        let mut p = pubsub::Options::new()
            .capacity(4)
            .overflow(pubsub::Overflow::Block)
            .create_publisher(&b)
            .unwrap();
        let s = pubsub::Subscriber::open(&b).unwrap();
        p.send(b"1").unwrap();
        p.send(b"2").unwrap();
        let lag = |st| match st {
            ObjectState::PubSub { max_lag, .. } => max_lag,
            other => panic!("{other:?}"),
        };
        assert_eq!(lag(state(&b)), Some(2));
        s.recv().unwrap();
        assert_eq!(lag(state(&b)), Some(1));
    }

    /// A channel larger than what an inspection copies whole still shows its
    /// peers and counts (read from its control block and records); an spsc
    /// channel's queued count, read from its slots, is then unknown. Before, such
    /// a channel had no state at all, and `info` said nothing of why.
    #[test]
    fn channels_over_the_copy_limit_show_their_peers() {
        const SLOT: usize = 5 << 18; // 64 of them: 80 MiB, over the 64 MiB copied whole
        let me = Some(std::process::id());
        let n = name("big-pubsub");
        let mut p = pubsub::Options::new()
            .capacity(64)
            .slot_size(SLOT)
            .create_publisher(&n)
            .unwrap();
        let _s = pubsub::Subscriber::open(&n).unwrap();
        p.send(b"x").unwrap();
        p.send(b"y").unwrap();
        match state(&n) {
            ObjectState::PubSub {
                publisher,
                subscribers,
                published,
                max_lag,
                ..
            } => assert_eq!(
                (publisher, subscribers, published, max_lag),
                (me, 1, 2, Some(2))
            ),
            other => panic!("{other:?}"),
        }
        drop((p, _s));

        let n = name("big-spsc");
        let mut tx = spsc::Producer::create(&n, 64, SLOT).unwrap();
        tx.send(b"hello").unwrap();
        let _rx = spsc::Consumer::open(&n).unwrap();
        match state(&n) {
            ObjectState::Spsc {
                producer,
                consumer,
                queued,
                ..
            } => assert_eq!((producer, consumer, queued), (me, me, None)),
            other => panic!("{other:?}"),
        }
        drop((tx, _rx));

        let n = name("big-mpmc");
        let mut p = mpmc::Options::new()
            .capacity(64)
            .slot_size(SLOT)
            .create_producer(&n)
            .unwrap();
        let _c = mpmc::Consumer::open(&n).unwrap();
        p.send(b"job").unwrap();
        match state(&n) {
            ObjectState::Mpmc {
                producers,
                consumers,
                queued,
                ..
            } => assert_eq!((producers, consumers, queued), (1, 1, Some(1))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spsc_mpmc_rpc_peers_and_fill() {
        let me = Some(std::process::id());
        let n = name("spsc");
        let mut tx = spsc::Producer::create(&n, 16, 32).unwrap();
        let spsc_state = |n: &str| match state(n) {
            ObjectState::Spsc {
                producer,
                consumer,
                queued,
                capacity,
                max_message,
            } => {
                assert_eq!((capacity, max_message), (16, 32));
                (producer, consumer, queued)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(spsc_state(&n), (me, None, Some(0)));
        for _ in 0..5 {
            tx.send(b"hello").unwrap();
        }
        let mut rx = spsc::Consumer::open(&n).unwrap();
        assert_eq!(spsc_state(&n), (me, me, Some(5)));
        for _ in 0..5 {
            rx.recv_vec().unwrap();
        }
        // The consumer hands slots back when it finds the ring empty.
        let mut buf = Vec::new();
        assert!(rx.try_recv_into(&mut buf).is_err());
        assert_eq!(spsc_state(&n), (me, me, Some(0)));

        let n = name("mpmc");
        let mut p = mpmc::Options::new()
            .capacity(8)
            .slot_size(16)
            .max_endpoints(5)
            .create_producer(&n)
            .unwrap();
        let _p2 = mpmc::Producer::open(&n).unwrap();
        let c = mpmc::Consumer::open(&n).unwrap();
        for _ in 0..3 {
            p.send(b"job").unwrap();
        }
        c.recv().unwrap();
        assert_eq!(
            state(&n),
            ObjectState::Mpmc {
                capacity: 8,
                max_message: 16,
                producers: 2,
                consumers: 1,
                max_endpoints: 5,
                queued: Some(2),
            }
        );

        let n = name("rpc");
        let _server = rpc::Server::create(&n, 4, 64).unwrap();
        let mut client = rpc::Client::open(&n).unwrap();
        client.send_request(b"q").unwrap();
        assert_eq!(
            state(&n),
            ObjectState::Rpc {
                capacity: 4,
                max_message: 64,
                server: me,
                clients: 1,
                max_clients: 16,
                queued: Some(1),
            }
        );
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let n = name("garbage");
        let seg = Segment::create(&n, 16384).unwrap();
        let v = seg.map_all().unwrap();
        for (kind, params) in [
            (Kind::PubSub, [3, 0, 0, 0]),
            (Kind::PubSub, [8 | (4 << 32), 9 << 32, 0, 0]),
            (Kind::PubSub, [(1 << 31) | (4 << 32), 1 << 31, 0, 0]),
            (Kind::Spsc, [1 << 40, 8, 0, 0]),
            (Kind::Spsc, [1 << 20, 1 << 20, 0, 0]),
            (Kind::Mpmc, [u64::MAX, u64::MAX, 0, 0]),
            (Kind::Rpc, [4 | (1 << 32), 64, 8, 7]),
            (Kind::Rpc, [4 | (1 << 32), 1 << 30, 1 << 24, 0]),
        ] {
            layout::init(&v, 0, kind, params).unwrap();
            assert!(
                matches!(inspect(&n).unwrap(), Contents::Invalid(_)),
                "{kind:?} {params:?}"
            );
        }
        // Valid parameters, garbage words: a state, never a panic.
        layout::init(&v, 0, Kind::PubSub, [2 | (4 << 32), 8 | (1 << 40), 0, 0]).unwrap();
        v.write_at(64, &[0xFF; 512]).unwrap();
        assert!(matches!(
            inspect(&n).unwrap(),
            Contents::Object {
                state: Some(ObjectState::PubSub { .. }),
                ..
            }
        ));
        layout::init(&v, 0, Kind::Mpmc, [2 | (4 << 32), 8, 0, 0]).unwrap();
        assert!(matches!(
            inspect(&n).unwrap(),
            Contents::Object {
                state: Some(ObjectState::Mpmc { .. }),
                ..
            }
        ));
        drop(v);
        drop(seg);
        let _ = Segment::remove(&n);
    }
}
