//! Throughput: the peer produces a stream of messages, the harness consumes them and
//! times batches. Every contender implements [`Stream`]; [`CONTENDERS`] lists the
//! two-process ones in running order (the first is the floor), and [`memcpy_batches`]
//! is the single-process reference.

use std::sync::atomic::Ordering::{Acquire, Release};
use std::time::Instant;

use crate::ctx::{Ctx, Side};
use crate::latency::{get_seq, message, put_seq};
use crate::mapped::Mapped;
use crate::{iceoryx, shmipc_channels, spin, Result};

/// The payload sizes of the suite (64 B is counted in messages/s, the rest in bytes/s).
pub const PAYLOADS: [usize; 4] = [64, 4096, 65536, 1 << 20];
/// The payload counted in messages per second.
pub const MSG_PAYLOAD: usize = 64;
/// The largest payload.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The bytes a ring should hold, before the slot-count limits in [`slots_for`].
const RING_BYTES: usize = 2 << 20;

/// How many slots of `len` bytes a ring (or an iceoryx2 subscriber buffer) gets:
/// about 2 MiB worth, at least 4 and at most 1024.
pub fn slots_for(len: usize) -> usize {
    (RING_BYTES / len.max(1)).clamp(4, 1024)
}

/// How many messages of `len` bytes one timed batch has: about `bytes` worth, at
/// most 2048 and at least 1. With 2 MiB that is ~100 µs at the floor's speed: short
/// batches, so that most of them fall between two preemptions of a loaded machine.
pub fn msgs_per_batch(len: usize, bytes: usize) -> usize {
    (bytes / len.max(1)).clamp(1, 2048)
}

/// Untimed warm-up batches at the start of every throughput cell.
pub const WARMUP_BATCHES: usize = 3;

/// One end of a stream contender.
pub trait Stream {
    /// Both sides, before a cell: the messages of this cell are `len` bytes (the
    /// client, the consumer, is called first, before the producer starts).
    fn begin(&mut self, len: usize) -> Result<()>;

    /// Producer: sends all of `msg`, waiting while the stream is full.
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Consumer: waits for the next message and copies all of it into `buf`.
    fn recv(&mut self, buf: &mut [u8]) -> Result<()>;

    /// Producer: `count` messages of `len` bytes numbered 1..=count.
    fn produce(&mut self, len: usize, count: u64) -> Result<()> {
        let mut msg = message(len);
        for seq in 1..=count {
            put_seq(&mut msg, seq);
            self.send(&msg)?;
        }
        Ok(())
    }

    /// Consumer: `batches` batches of `per_batch` messages of `len` bytes, the
    /// first [`WARMUP_BATCHES`] untimed; returns the time of each timed batch in ns.
    fn consume(&mut self, len: usize, per_batch: u64, batches: usize) -> Result<Vec<f64>> {
        let mut buf = vec![0u8; len];
        let mut seq = 0u64;
        let mut times = Vec::with_capacity(batches.saturating_sub(WARMUP_BATCHES));
        for b in 0..batches {
            let t = Instant::now();
            for _ in 0..per_batch {
                self.recv(&mut buf)?;
                seq += 1;
                let got = get_seq(&buf);
                if got != seq {
                    return Err(
                        format!("stream message carries number {got}, expected {seq}").into(),
                    );
                }
            }
            if b >= WARMUP_BATCHES {
                times.push(t.elapsed().as_nanos() as f64);
            }
        }
        Ok(times)
    }
}

/// Sets up this process's end of a stream contender.
pub type OpenFn = fn(&mut Ctx) -> Result<Box<dyn Stream>>;

/// A two-process throughput contender.
#[derive(Debug, Clone, Copy)]
pub struct Contender {
    /// Its name in tables, JSON and `--only`.
    pub name: &'static str,
    /// Its set-up; `None` while it is not wired into this build.
    pub open: Option<OpenFn>,
    /// One line on what it measures.
    pub about: &'static str,
}

/// The two-process throughput contenders, in running order. The first is the floor.
pub const CONTENDERS: [Contender; 3] = [
    Contender {
        name: "floor-ring",
        open: Some(open_floor_ring),
        about: "minimal fixed-slot ring in a shmipc segment, spinning, copy in and out",
    },
    // ---- shmipc channels: wire in shmipc_channels.rs once the channels land ----
    Contender {
        name: "shmipc-spsc",
        open: shmipc_channels::SPSC_STREAM,
        about: "shmipc spsc channel, zero-copy loans",
    },
    Contender {
        name: "iceoryx2",
        open: Some(iceoryx::open_stream),
        about: "iceoryx2 ipc publish-subscribe, loaned slices, retry until delivered",
    },
];

/// The name of the single-process reference row.
pub const MEMCPY: &str = "memcpy";

/// The single-process reference: `batches` batches (the first [`WARMUP_BATCHES`]
/// untimed) of
/// `per_batch` copies of `len` bytes from one buffer to another; returns the time of
/// each timed batch in ns.
pub fn memcpy_batches(len: usize, per_batch: u64, batches: usize) -> Vec<f64> {
    let mut src = message(len);
    let mut dst = vec![0u8; src.len()];
    let mut times = Vec::with_capacity(batches.saturating_sub(WARMUP_BATCHES));
    let mut seq = 0u64;
    for b in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            seq += 1;
            put_seq(&mut src, seq);
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&mut dst);
        }
        if b >= WARMUP_BATCHES {
            times.push(t.elapsed().as_nanos() as f64);
        }
    }
    times
}

// ---------------------------------------------------------------- floor ring

const HEAD: usize = 0;
const TAIL: usize = 1;
/// `head` (messages produced) and `tail` (messages consumed) on separate cache-line
/// pairs, then the slots, page-aligned.
const OFF_HEAD: usize = 0;
const OFF_TAIL: usize = 128;
const OFF_DATA: usize = 4096;
const RING_SEG_LEN: usize = OFF_DATA + 4 * MAX_PAYLOAD;

/// The floor ring: `slots_for(len)` fixed slots of `len` bytes. The producer copies
/// a message into slot `head % slots` and publishes `head + 1` (Release, paired with
/// the consumer's Acquire load of `head`); the consumer copies it out and publishes
/// `tail + 1` (Release, paired with the producer's Acquire load of `tail`, which frees
/// the slot). Each side caches the other's index and reloads it only when it must.
#[derive(Debug)]
struct FloorRing {
    m: Mapped<2>,
    /// The consumer (the harness) resets the indices before each cell.
    consumer: bool,
    len: usize,
    slots: u64,
    /// Producer: next message to write. Consumer: next message to read.
    next: u64,
    /// Producer: the last `tail` seen. Consumer: the last `head` seen.
    other: u64,
}

fn open_floor_ring(ctx: &mut Ctx) -> Result<Box<dyn Stream>> {
    let m = Mapped::open(ctx, "floor-ring", RING_SEG_LEN, [OFF_HEAD, OFF_TAIL])?;
    Ok(Box::new(FloorRing {
        m,
        consumer: ctx.side == Side::Client,
        len: 0,
        slots: 1,
        next: 0,
        other: 0,
    }))
}

impl FloorRing {
    #[inline]
    fn slot(&self, i: u64) -> usize {
        // `i % slots < slots <= 1024` and `slots * len <= 4 * MAX_PAYLOAD`.
        OFF_DATA + (i % self.slots) as usize * self.len
    }
}

impl Stream for FloorRing {
    fn begin(&mut self, len: usize) -> Result<()> {
        let slots = slots_for(len);
        if len == 0 || slots * len > RING_SEG_LEN - OFF_DATA {
            return Err(format!("floor-ring: no room for {slots} slots of {len} bytes").into());
        }
        self.len = len;
        self.slots = slots as u64;
        self.next = 0;
        self.other = 0;
        // Both sides are idle between cells; the consumer (the harness) resets the
        // indices before it tells the peer to start, and the peer starts from 0 too.
        if self.consumer {
            self.m.atomic(HEAD).store(0, Release);
            self.m.atomic(TAIL).store(0, Release);
        }
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.next - self.other >= self.slots {
            let tail = self.m.atomic(TAIL);
            let (next, slots) = (self.next, self.slots);
            let mut seen = self.other;
            spin::until("the floor ring's consumer", || {
                seen = tail.load(Acquire);
                next - seen < slots
            })?;
            self.other = seen;
        }
        self.m.view().write_at(self.slot(self.next), msg)?;
        self.next += 1;
        self.m.atomic(HEAD).store(self.next, Release);
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        if self.next == self.other {
            let head = self.m.atomic(HEAD);
            let next = self.next;
            let mut seen = self.other;
            spin::until("the floor ring's producer", || {
                seen = head.load(Acquire);
                seen > next
            })?;
            self.other = seen;
        }
        self.m.view().read_at(self.slot(self.next), buf)?;
        self.next += 1;
        self.m.atomic(TAIL).store(self.next, Release);
        Ok(())
    }
}
