//! Entry points that feed corrupt shared memory to channel endpoints, for the
//! `cargo fuzz` targets in `fuzz/` and for the proptest that runs the same code on
//! stable Rust (`tests/channel_fuzz.rs`). Not part of the API.
//!
//! # Fast, and still the real code
//!
//! Each kind's channel is created once per thread (a real segment, made by the
//! real `create`, its name removed at once so that nothing is left in `/dev/shm`
//! whatever happens to the process), and its bytes as they were just after it was
//! made are kept. Every input then puts those bytes back, attaches real endpoints
//! to the same mapping (`Mapped::again`: the header read and checked and the
//! parameters, extent, places and positions validated exactly as by an open, minus
//! the `open`/`mmap` system calls), has them send, overwrites the shared memory
//! with the input, and drives the endpoints' receive and send paths over it. No
//! segment is made per input and nothing waits: every call is a `try_` form or
//! has a zero timeout. Thousands of inputs a second instead of hundreds.
//!
//! The input: a first byte choosing the scenario (below, per kind), a second
//! choosing how the rest lands: bit 0 clear, as one run of bytes from an offset the
//! first byte picks; set, as patches of 10 bytes each (a little-endian `u16` word
//! index, taken modulo the segment's words, then the `u64` stored there), which
//! reach single indices, counts, tags and hold slots anywhere in the segment
//! without disturbing the rest.

use std::cell::OnceCell;
use std::mem::offset_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::LocalKey;
use std::time::Duration;

use crate::layout::{HeaderWords, Kind, HEADER_LEN};
use crate::segment::Segment;

use super::mpmc;
use super::pubsub::{Options as PubSubOptions, Overflow, Publisher, Subscriber};
use super::rpc;
use super::shared::Mapped;
use super::spsc::{Consumer, Producer};
use super::RecvError;

/// Where a run laid over a channel's memory starts: the header's parameters
/// (magic, version, kind and ready flag stay unless patched), or past the header.
const PARAMS_AT: usize = offset_of!(HeaderWords, params);

/// One channel, made once, and its bytes as just made (no endpoint attached).
struct Arena {
    map: Mapped,
    image: Vec<u8>,
}

type Cell = OnceCell<Option<Arena>>;

impl Arena {
    /// Takes over the mapping of a just-made channel; its name goes at once.
    fn new(map: Mapped) -> Option<Self> {
        let mut image = vec![0; map.view.len()];
        map.view.read_at(0, &mut image).ok()?;
        let _ = Segment::remove(&map.name);
        Some(Self { map, image })
    }

    /// Puts the bytes of the new channel back.
    fn reset(&self) {
        let _ = self.map.view.write_at(0, &self.image);
    }

    /// Lays `data` over the channel's memory (module doc): `how` bit 0 clear, as
    /// one run from `start`; set, as word patches anywhere.
    fn corrupt(&self, how: u8, start: usize, data: &[u8]) {
        let view = &self.map.view;
        if how & 1 == 0 {
            let n = data.len().min(view.len().saturating_sub(start));
            let _ = view.write_at(start, &data[..n]);
        } else {
            let words = view.len() / 8;
            for p in data.chunks_exact(10) {
                let at = usize::from(u16::from_le_bytes([p[0], p[1]])) % words;
                let _ = view.write_at(at * 8, &p[2..]);
            }
        }
    }
}

/// Runs `f` over this thread's arena in `cell`, making it with `make` (the
/// mapping of a channel made for the purpose) the first time.
fn with_arena(
    cell: &'static LocalKey<Cell>,
    make: impl FnOnce() -> Option<Mapped>,
    f: impl FnOnce(&Arena),
) {
    cell.with(|c| {
        if let Some(arena) = c.get_or_init(|| make().and_then(Arena::new)) {
            arena.reset();
            f(arena);
        }
    });
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "fz-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The scenario byte and the placement byte, then the bytes to lay.
fn split(data: &[u8]) -> Option<(u8, u8, &[u8])> {
    match data {
        [mode, how, rest @ ..] => Some((*mode, *how, rest)),
        [mode] => Some((*mode, 0, &[])),
        [] => None,
    }
}

thread_local! {
    static SPSC: Cell = const { OnceCell::new() };
    static PUBSUB_OVERWRITE: Cell = const { OnceCell::new() };
    static PUBSUB_BLOCK: Cell = const { OnceCell::new() };
    static MPMC: Cell = const { OnceCell::new() };
    static RPC: Cell = const { OnceCell::new() };
}

/// An spsc channel (4 slots of 32 bytes): a producer sends `mode >> 4` messages,
/// the input is laid over the memory (a run from the header's parameters if `mode`
/// bit 0, else from past the header; magic, version, kind and ready flag stay
/// unless patched), then a consumer receives over it, and a producer (kept, or if
/// `mode` bit 1 re-attached after the first left) sends over it. Must never panic,
/// hang or crash.
pub fn spsc(data: &[u8]) {
    let Some((mode, how, rest)) = split(data) else {
        return;
    };
    let make = || {
        let tx = Producer::create(&unique("spsc"), 4, 32).ok()?;
        tx.fuzz_mapped().again(Kind::Spsc).ok().map(|(m, _)| m)
    };
    with_arena(&SPSC, make, |arena| {
        let Ok(mut tx) = Producer::fuzz_over(&arena.map) else {
            return;
        };
        for i in 0..(mode >> 4) {
            let _ = tx.try_send(&[i; 20]);
        }
        let start = if mode & 1 != 0 { PARAMS_AT } else { HEADER_LEN };
        arena.corrupt(how, start, rest);
        let keep_producer = mode & 2 == 0;
        if !keep_producer {
            drop(tx);
            tx = match Producer::fuzz_over(&arena.map) {
                Ok(tx) => tx,
                Err(_) => return consume(arena),
            };
        }
        for _ in 0..2 {
            let _ = tx.try_send(b"after corruption");
        }
        consume(arena);
        for _ in 0..8 {
            let _ = tx.try_send(b"after corruption");
        }
    });

    fn consume(arena: &Arena) {
        if let Ok(mut rx) = Consumer::fuzz_over(&arena.map) {
            let mut sum = 0u64;
            for _ in 0..8 {
                if let Ok(s) = rx.try_recv() {
                    sum = s.iter().fold(sum, |a, &b| a.wrapping_add(u64::from(b)));
                }
            }
            if let Ok(s) = rx.recv_timeout(Duration::ZERO) {
                sum = sum.wrapping_add(s.len() as u64);
            }
            std::hint::black_box(sum);
        }
    }
}

/// A pubsub channel (4 entries, chunks of 24 bytes, 2 subscribers holding up to 2
/// samples each, history 3; overwrite, or block if `mode` bit 2): a publisher and
/// an early subscriber attach, `mode >> 5` messages are sent, the early subscriber
/// takes one and holds it across the corruption, which lands (as a run) on the
/// header parameters, the control words and subscriber records with their cursors
/// and hold slots, the ring entries or the chunk headers of the pool (`mode` bits
/// 3-4), or (as patches) anywhere. Then the publisher (kept, or if `mode` bit 1
/// re-attached, which rebuilds its pool from the shared words: offsets, counts,
/// holds, `FREEING` marks) loans and publishes over it, and subscribers take,
/// hold (`mode` bit 0) and release samples over it, the publisher reclaiming
/// chunks through the `FREEING` handshake as they do. Last, a subscriber attached
/// after all that must not be deaf: once a message is published after it
/// attached, its receive gives that message or an error, never "empty".
pub fn pubsub(data: &[u8]) {
    let Some((mode, how, rest)) = split(data) else {
        return;
    };
    let overflow = if mode & 4 != 0 {
        Overflow::Block
    } else {
        Overflow::Overwrite
    };
    let make = || {
        let p = PubSubOptions::new()
            .capacity(4)
            .slot_size(24)
            .max_subscribers(2)
            .max_held(2)
            .history(3)
            .overflow(overflow)
            .create_publisher(&unique("pubsub"))
            .ok()?;
        p.fuzz_mapped().again(Kind::PubSub).ok().map(|(m, _)| m)
    };
    let cell = match overflow {
        Overflow::Overwrite => &PUBSUB_OVERWRITE,
        Overflow::Block => &PUBSUB_BLOCK,
    };
    with_arena(cell, make, |arena| {
        let map = &arena.map;
        let Ok(mut publisher) = Publisher::fuzz_over(map) else {
            return;
        };
        let early = Subscriber::fuzz_over(map, 3).ok();
        for i in 0..(mode >> 5) {
            let _ = publisher.try_send(&[i; 20]);
        }
        // Layout (pubsub.rs): control words and subscriber records past the
        // header, then the ring entries, then the chunks (their `ChunkHeader`
        // first).
        let (entries, chunks) = publisher.fuzz_regions();
        let start = match (mode >> 3) & 3 {
            0 => PARAMS_AT,
            1 => HEADER_LEN,
            2 => entries,
            _ => chunks,
        };
        {
            // A sample held across the corruption and released after it.
            let held = early.as_ref().and_then(|s| s.try_recv().ok());
            arena.corrupt(how, start, rest);
            if let Some(h) = &held {
                std::hint::black_box(h.iter().map(|&b| u64::from(b)).sum::<u64>());
            }
        }
        if mode & 2 != 0 {
            drop(publisher);
            publisher = match Publisher::fuzz_over(map) {
                Ok(p) => p,
                Err(_) => {
                    drain(early.as_ref(), mode);
                    return;
                }
            };
            for _ in 0..8 {
                let _ = publisher.try_send(b"after");
            }
        } else {
            for _ in 0..8 {
                if let Ok(mut loan) = publisher.try_loan(16) {
                    loan.fill(7);
                    loan.send();
                }
            }
        }
        std::hint::black_box(publisher.free_chunks());
        drain(early.as_ref(), mode);
        if let Ok(late) = Subscriber::fuzz_over(map, 2) {
            drain(Some(&late), mode);
        }
        let mut buf = Vec::new();
        if let Some(sub) = &early {
            let _ = sub.recv_into_timeout(&mut buf, Duration::ZERO);
        }
        drop(early);
        // Not deaf: messages published after a subscriber attached reach it, or
        // its receive says what is wrong. A corrupt `head` one or two ahead of the
        // publisher's count (the subscriber starts there) costs it the one or two
        // messages numbered below its start, as a subscriber that took the last
        // message by its entry before `head` landed must see "empty" (pubsub_pool:
        // `check_head`); the third is its.
        if let Ok(fresh) = Subscriber::fuzz_over(map, 0) {
            let mut sent = 0;
            for _ in 0..8 {
                if publisher.try_send(b"probe").is_err() {
                    continue;
                }
                sent += 1;
                if !matches!(fresh.try_recv().map(|s| s.seq()), Err(RecvError::Empty)) {
                    break;
                }
                assert!(
                    sent < 3,
                    "a subscriber is deaf: {sent} messages were published after it \
                     attached and its receive says empty"
                );
            }
        }
    });

    /// Takes (holding some, per `mode` bit 0), releases and copies samples.
    fn drain(sub: Option<&Subscriber>, mode: u8) {
        let Some(sub) = sub else { return };
        let mut kept = Vec::new();
        for _ in 0..8 {
            match sub.try_recv() {
                Ok(s) => {
                    std::hint::black_box(s.iter().map(|&b| u64::from(b)).sum::<u64>());
                    if mode & 1 != 0 {
                        kept.push(s);
                    }
                }
                Err(_) => kept.clear(),
            }
        }
        drop(kept);
        let mut buf = Vec::new();
        let _ = sub.try_recv_into(&mut buf);
    }
}

/// An mpmc queue (4 slots of 24 bytes, 3 endpoints): a producer sends `mode >> 4`
/// messages and a consumer takes one, holding the sample across the corruption
/// (and reading it after). The input lands (as a run) on the header parameters,
/// the control words (positions, bells), the endpoint records or the slots'
/// state words (`mode` bits 2-3), or (as patches) anywhere. Then the producer
/// (unless `mode` bit 1 drops it) sends, loans, and sends or cancels loans over
/// it (the census reclaiming what it may), and a consumer takes samples
/// (holding them all if `mode` bit 0, else releasing each at once) and copies
/// one out.
pub fn mpmc(data: &[u8]) {
    let Some((mode, how, rest)) = split(data) else {
        return;
    };
    let make = || {
        let tx = mpmc::Options::new()
            .capacity(4)
            .slot_size(24)
            .max_endpoints(3)
            .create_producer(&unique("mpmc"))
            .ok()?;
        tx.fuzz_mapped().again(Kind::Mpmc).ok().map(|(m, _)| m)
    };
    with_arena(&MPMC, make, |arena| {
        let map = &arena.map;
        let Ok(mut tx) = mpmc::Producer::fuzz_over(map) else {
            return;
        };
        for i in 0..(mode >> 4) {
            let _ = tx.try_send(&[i; 20]);
        }
        // Layout (mpmc.rs): `Control` past the header, the `Record`s, then the
        // slots (their `SlotHeader`, state first, then the payload).
        let start = [PARAMS_AT, HEADER_LEN, mpmc::RECORDS_AT, tx.fuzz_slots_at()]
            [usize::from(mode >> 2) & 3];
        let early = mpmc::Consumer::fuzz_over(map).ok();
        {
            // A sample held across the corruption and released after it.
            let held = early.as_ref().and_then(|c| c.try_recv().ok());
            arena.corrupt(how, start, rest);
            if let Some(h) = &held {
                std::hint::black_box(h.iter().map(|&b| u64::from(b)).sum::<u64>());
            }
        }
        if mode & 2 != 0 {
            drop(tx);
        } else {
            for i in 0..4 {
                let _ = tx.try_send(b"after");
                if let Ok(mut loan) = tx.try_loan(8) {
                    loan.fill(i);
                    if i % 2 == 0 {
                        let _ = loan.send();
                    }
                }
            }
            std::hint::black_box(tx.free_slots());
        }
        if let Ok(rx) = mpmc::Consumer::fuzz_over(map) {
            let mut kept = Vec::new();
            for _ in 0..8 {
                if let Ok(s) = rx.try_recv() {
                    std::hint::black_box(s.iter().map(|&b| u64::from(b)).sum::<u64>());
                    if mode & 1 != 0 {
                        kept.push(s);
                    }
                }
            }
            drop(kept);
            let mut buf = Vec::new();
            let _ = rx.recv_into_timeout(&mut buf, Duration::ZERO);
        }
        drop(early);
    });
}

/// An rpc channel (4 request slots of 24 bytes, 2 clients, 2 responses each): a
/// client sends `mode >> 5` requests and the server answers one, then the server
/// takes a request and holds it across the corruption, which is laid over the
/// memory (as for [`spsc`]), and answers it in place after. Then the server reads
/// requests and answers over it, a client sends and reads responses over it, and
/// a client re-attaches to a place the first left.
pub fn rpc(data: &[u8]) {
    let Some((mode, how, rest)) = split(data) else {
        return;
    };
    let make = || {
        let server = rpc::Options::new()
            .capacity(4)
            .slot_size(24)
            .max_clients(2)
            .responses(2)
            .create_server(&unique("rpc"))
            .ok()?;
        server.fuzz_mapped().again(Kind::Rpc).ok().map(|(m, _)| m)
    };
    with_arena(&RPC, make, |arena| {
        let map = &arena.map;
        let Ok(server) = rpc::Server::fuzz_over(map) else {
            return;
        };
        let Ok(mut client) = rpc::Client::fuzz_over(map) else {
            return;
        };
        for i in 0..(mode >> 5) {
            let _ = client.try_send_request(&[i; 10]);
        }
        if let Ok(req) = server.try_recv() {
            let _ = server.respond_timeout(&req, b"answer", Duration::ZERO);
        }
        {
            // A request held across the corruption, answered in place after it.
            let held = server.try_recv().ok();
            let start = if mode & 1 != 0 { PARAMS_AT } else { HEADER_LEN };
            arena.corrupt(how, start, rest);
            if let Some(req) = held {
                if let Ok(mut loan) = server.loan_response(&req, req.len(), Duration::ZERO) {
                    loan.copy_from_slice(&req);
                    let _ = loan.send();
                }
            }
        }
        for _ in 0..4 {
            let _ = client.try_send_request(b"after");
            let _ = client.try_recv_response().map(|r| r.to_vec());
            if let Ok(req) = server.try_recv() {
                let _ = server.respond_timeout(&req, b"x", Duration::ZERO);
            }
        }
        std::hint::black_box(server.free_request_slots());
        let _ = server.recv_timeout(Duration::ZERO);
        let _ = client.recv_response(u64::MAX, Duration::ZERO);
        drop(client);
        if let Ok(mut c) = rpc::Client::fuzz_over(map) {
            let _ = c.try_recv_response();
        }
    });
}
