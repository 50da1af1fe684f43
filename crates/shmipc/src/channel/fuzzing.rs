//! Entry points that feed corrupt shared memory to channel endpoints, for the
//! `cargo fuzz` targets in `fuzz/` and for the proptest that runs the same code on
//! stable Rust (`tests/channel_fuzz.rs`). Not part of the API.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::segment::{Access, Segment};

use super::mpmc;
use super::pubsub::{Options as PubSubOptions, Overflow, Publisher, Subscriber};
use super::rpc;
use super::spsc::{Consumer, Producer};

fn raw(name: &str) -> Option<crate::view::View> {
    Segment::open(name, Access::ReadWrite)
        .ok()
        .and_then(|s| s.map_all().ok())
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "fz-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes an spsc channel, sends a few messages, overwrites its shared memory with
/// `data` (the first byte chooses where from and whether the producer stays), then
/// drives a consumer and a producer over it. Must never panic, hang or crash.
pub fn spsc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = unique("spsc");
    let Ok(mut tx) = Producer::create(&name, 4, 32) else {
        return;
    };
    for i in 0..(mode >> 4) {
        let _ = tx.try_send(&[i; 20]);
    }
    let Some(raw) = raw(&name) else {
        return;
    };
    // From the header's parameters (magic, version, kind and ready flag stay, so
    // that the opener does not wait for an unfinished creator), or past the header.
    let start = if mode & 1 != 0 { 24 } else { 64 };
    let n = rest.len().min(raw.len() - start);
    let _ = raw.write_at(start, &rest[..n]);
    let keep_producer = mode & 2 == 0;
    if !keep_producer {
        drop(tx);
    }
    if let Ok(mut rx) = Consumer::open(&name) {
        let mut sum = 0u64;
        for _ in 0..8 {
            if let Ok(s) = rx.try_recv() {
                sum = s.iter().fold(sum, |a, &b| a.wrapping_add(u64::from(b)));
            }
        }
        if let Ok(s) = rx.recv_timeout(Duration::from_millis(1)) {
            sum = sum.wrapping_add(s.len() as u64);
        }
        std::hint::black_box(sum);
    }
    if !keep_producer {
        if let Ok(mut tx) = Producer::open(&name) {
            for _ in 0..8 {
                let _ = tx.try_send(b"after corruption");
            }
        }
    }
    let _ = Segment::remove(&name);
}

/// As [`spsc`], for a pubsub channel: the first byte also picks the overflow mode,
/// where the corruption lands (the header, the control words and subscriber
/// records with their cursors and hold slots, the ring entries, or the chunk
/// headers of the pool) and whether a subscriber holds a sample across it; then
/// subscribers take, hold and release samples over the corrupt memory, and a
/// publisher (kept or re-attached, which rebuilds its pool from the shared words)
/// loans and publishes over it.
pub fn pubsub(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = unique("pubsub");
    let overflow = if mode & 4 != 0 {
        Overflow::Block
    } else {
        Overflow::Overwrite
    };
    let Ok(mut publisher) = PubSubOptions::new()
        .capacity(4)
        .slot_size(24)
        .max_subscribers(2)
        .max_held(2)
        .history(3)
        .overflow(overflow)
        .create_publisher(&name)
    else {
        return;
    };
    let early = Subscriber::open_with_history(&name, 3).ok();
    for i in 0..(mode >> 5) {
        let _ = publisher.try_send(&[i; 20]);
    }
    let Some(raw) = raw(&name) else {
        return;
    };
    // Layout (pubsub.rs): records from 320 (2 x 64), entries from 448, chunks
    // (64-byte header, then the payload) from 4096.
    let start = match (mode >> 3) & 3 {
        0 => 24,
        1 => 64,
        2 => 448,
        _ => 4096,
    };
    {
        // A sample held across the corruption and released after it.
        let held = early.as_ref().and_then(|s| s.try_recv().ok());
        let n = rest.len().min(raw.len() - start);
        let _ = raw.write_at(start, &rest[..n]);
        if let Some(h) = &held {
            std::hint::black_box(h.iter().map(|&b| u64::from(b)).sum::<u64>());
        }
    }
    if mode & 2 != 0 {
        drop(publisher);
        if let Ok(mut p) = Publisher::open(&name) {
            for _ in 0..8 {
                let _ = p.try_send(b"after");
            }
            std::hint::black_box(p.free_chunks());
        }
    } else {
        for _ in 0..8 {
            if let Ok(mut loan) = publisher.try_loan(16) {
                loan.fill(7);
                loan.send();
            }
        }
        std::hint::black_box(publisher.free_chunks());
    }
    let mut buf = Vec::new();
    for sub in early
        .into_iter()
        .chain(Subscriber::open_with_history(&name, 2).ok())
    {
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
        let _ = sub.recv_into_timeout(&mut buf, Duration::from_millis(1));
    }
    let _ = Segment::remove(&name);
}

/// As [`spsc`], for an mpmc queue: a consumer pops (and reclaims) over the corrupt
/// memory, and a producer pushes over it.
pub fn mpmc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = unique("mpmc");
    let Ok(mut tx) = mpmc::Options::new()
        .capacity(4)
        .slot_size(24)
        .max_endpoints(3)
        .create_producer(&name)
    else {
        return;
    };
    for i in 0..(mode >> 4) {
        let _ = tx.try_send(&[i; 20]);
    }
    let Some(raw) = raw(&name) else {
        return;
    };
    // From the header, the control words and records, or the slots' state words.
    let start = [24, 64, 384, 512][usize::from(mode >> 2) & 3];
    // A sample held across the corruption (and released after it).
    let early = mpmc::Consumer::open(&name).ok();
    let held = early.as_ref().and_then(|c| c.try_recv().ok());
    let n = rest.len().min(raw.len().saturating_sub(start));
    let _ = raw.write_at(start, &rest[..n]);
    drop(held);
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
    if let Ok(rx) = mpmc::Consumer::open(&name) {
        let mut buf = Vec::new();
        let mut kept = Vec::new();
        for _ in 0..8 {
            if let Ok(s) = rx.try_recv() {
                std::hint::black_box(s.iter().map(|&b| u64::from(b)).sum::<u64>());
                kept.push(s);
            }
        }
        drop(kept);
        let _ = rx.recv_into_timeout(&mut buf, Duration::from_millis(1));
    }
    drop(early);
    let _ = Segment::remove(&name);
}

/// As [`spsc`], for an rpc channel: the server reads requests and answers over the
/// corrupt memory, a client sends and reads responses over it.
pub fn rpc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = unique("rpc");
    let Ok(server) = rpc::Options::new()
        .capacity(4)
        .slot_size(24)
        .max_clients(2)
        .responses(2)
        .create_server(&name)
    else {
        return;
    };
    let Ok(mut client) = rpc::Client::open(&name) else {
        return;
    };
    for i in 0..(mode >> 5) {
        let _ = client.try_send_request(&[i; 10]);
    }
    if let Ok(req) = server.try_recv() {
        let _ = server.respond_timeout(&req, b"answer", Duration::ZERO);
    }
    let Some(raw) = raw(&name) else {
        return;
    };
    let start = if mode & 1 != 0 { 24 } else { 64 };
    let n = rest.len().min(raw.len() - start);
    {
        // A request held across the corruption, answered in place after it.
        let held = server.try_recv().ok();
        let _ = raw.write_at(start, &rest[..n]);
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
    let _ = server.recv_timeout(Duration::from_millis(1));
    let _ = client.recv_response(u64::MAX, Duration::from_millis(1));
    drop(client);
    if let Ok(mut c) = rpc::Client::open(&name) {
        let _ = c.try_recv_response();
    }
    let _ = Segment::remove(&name);
}
