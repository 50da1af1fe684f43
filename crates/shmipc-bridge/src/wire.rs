//! What travels on zenoh: samples one by one for zenoh's own clients, and packed,
//! many to a zenoh message, between bridges.
//!
//! **One by one**, on the export's key (`shmipc/news`): each put's payload is the
//! sample's bytes, as an application's own put would be, so any zenoh client reads
//! it as is; what the bridge adds goes in the zenoh attachment:
//!
//! ```text
//!   0  "SHB1"            magic and version
//!   4  origin, 16 bytes  the putting bridge's zenoh session id
//!  20  seq, u64 LE       the local topic's number of the sample
//! ```
//!
//! **Packed**, on the same key plus the chunk [`PACKED`] (`shmipc/news/@shmipc`): one
//! put carries every sample an export took from its topic at one wake-up. zenoh
//! routes, batches and decodes a message at a cost per message, not per byte, so at
//! small sizes this is what lets a bridge keep up with an application's own put loop.
//! A chunk that starts with `@` is verbatim in zenoh: only the same chunk matches it,
//! never `*` or `**`, so a zenoh client subscribed to `shmipc/**` never sees packed
//! puts. The attachment is `"SHP1"` and the origin (20 bytes); the payload is records
//! back to back:
//!
//! ```text
//!   0  seq, u64 LE       the local topic's number of the sample
//!   8  len, u32 LE       the sample's length
//!  12  the sample's bytes
//! ```
//!
//! Every exporting bridge declares the liveliness token [`exporter_token`] for as long
//! as it runs, so that an importing bridge knows its samples come packed (see
//! `bridge.rs`).
//!
//! The sequence number is the exporting topic's own sample number, so it survives a
//! restart of the exporting bridge (the topic lives on while its publisher holds it):
//! the receiving bridge reports every gap, whether from an overwrite on the exporting
//! host, a congestion drop, or samples published while a bridge was down.

use std::collections::HashMap;
use std::fmt;

/// The key chunk that marks a key of packed puts (see the module's doc).
pub const PACKED: &str = "@shmipc";

/// The key of the packed puts of `key` (a key expression; wildcards stay wildcards).
pub fn packed_key(key: &str) -> String {
    format!("{key}/{PACKED}")
}

/// The liveliness token an exporting bridge declares for `key`.
pub fn exporter_token(key: &str, origin: &Origin) -> String {
    let hex: String = origin.iter().map(|b| format!("{b:02x}")).collect();
    format!("{key}/{PACKED}/exporter/{hex}")
}

/// The liveliness key expression of every exporting bridge of a key matching `key`.
pub fn exporter_tokens(key: &str) -> String {
    format!("{key}/{PACKED}/exporter/*")
}

/// Length of the attachment.
pub const LEN: usize = 28;
const MAGIC: &[u8; 4] = b"SHB1";

/// A bridge's identity on the wire.
pub type Origin = [u8; 16];

/// The attachment of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Which bridge put it.
    pub origin: Origin,
    /// The exporting topic's number of the sample.
    pub seq: u64,
}

impl Tag {
    /// The attachment's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..20].copy_from_slice(&self.origin);
        b[20..].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Reads an attachment; `None` for one that is not a bridge's (a zenoh client's
    /// own put may carry anything, or nothing).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != LEN || &b[..4] != MAGIC {
            return None;
        }
        let origin = b[4..20].try_into().ok()?;
        let seq = u64::from_le_bytes(b[20..].try_into().ok()?);
        Some(Self { origin, seq })
    }
}

/// Length of a packed put's attachment.
pub const PACKED_TAG_LEN: usize = 20;
const PACKED_MAGIC: &[u8; 4] = b"SHP1";
/// Length of a packed record's header.
pub const RECORD_HEADER: usize = 12;

/// The attachment of a packed put by `origin`.
pub fn packed_tag(origin: &Origin) -> [u8; PACKED_TAG_LEN] {
    let mut b = [0u8; PACKED_TAG_LEN];
    b[..4].copy_from_slice(PACKED_MAGIC);
    b[4..].copy_from_slice(origin);
    b
}

/// The origin of a packed put's attachment; `None` for anything else.
pub fn packed_origin(b: &[u8]) -> Option<Origin> {
    if b.len() != PACKED_TAG_LEN || &b[..4] != PACKED_MAGIC {
        return None;
    }
    b[4..].try_into().ok()
}

/// A packed record's header, to be followed by the sample's `len` bytes.
///
/// # Panics
/// If `len` does not fit in 32 bits (a topic's slots are smaller: callers check).
pub fn record_header(seq: u64, len: usize) -> [u8; RECORD_HEADER] {
    let len = u32::try_from(len).expect("a sample's length fits in 32 bits");
    let mut b = [0u8; RECORD_HEADER];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..].copy_from_slice(&len.to_le_bytes());
    b
}

/// A packed payload that does not parse: where, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The record's index.
    pub record: usize,
    /// Its offset in the payload.
    pub at: usize,
    /// Bytes left from there.
    pub left: usize,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "packed record {} at byte {} runs past the end ({} bytes left)",
            self.record, self.at, self.left
        )
    }
}

/// A packed payload as zenoh hands it over: one slice, or several when the put came
/// in fragments. Records are read across slice boundaries without gathering them
/// into one buffer first (a 64 KiB sample is copied once, into the topic's chunk).
#[derive(Debug)]
pub struct Packed<'a> {
    slices: Vec<&'a [u8]>,
    len: usize,
}

/// One record of a [`Packed`] payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The exporting topic's number of the sample.
    pub seq: u64,
    /// Where its bytes start in the payload.
    pub start: usize,
    /// How many.
    pub len: usize,
}

impl<'a> Packed<'a> {
    /// The payload made of `slices`, in order.
    pub fn new(slices: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let slices: Vec<&[u8]> = slices.into_iter().filter(|s| !s.is_empty()).collect();
        let len = slices.iter().map(|s| s.len()).sum();
        Self { slices, len }
    }

    /// The payload's bytes from `start` on, `len` of them, as slices of the payload's
    /// own. The caller keeps within a record (`records` checked it).
    pub fn parts(&self, start: usize, len: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        let mut skip = start;
        let mut left = len;
        self.slices.iter().filter_map(move |s| {
            if skip >= s.len() {
                skip -= s.len();
                return None;
            }
            if left == 0 {
                return None;
            }
            let take = (s.len() - skip).min(left);
            let part = &s[skip..skip + take];
            skip = 0;
            left -= take;
            Some(part)
        })
    }

    /// Copies the `N` bytes at `at` (a record header); `None` past the end.
    fn read<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        if at.checked_add(N)? > self.len {
            return None;
        }
        let mut out = [0u8; N];
        let mut filled = 0;
        for part in self.parts(at, N) {
            out[filled..filled + part.len()].copy_from_slice(part);
            filled += part.len();
        }
        Some(out)
    }

    /// Every record, checked whole first: a payload that runs short anywhere
    /// yields none.
    ///
    /// # Errors
    /// The first record whose header or bytes run past the end.
    pub fn records(&self) -> Result<Vec<Record>, Malformed> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.len {
            let bad = Malformed {
                record: out.len(),
                at,
                left: self.len - at,
            };
            let header: [u8; RECORD_HEADER] = self.read(at).ok_or(bad)?;
            let seq = u64::from_le_bytes(header[..8].try_into().map_err(|_| bad)?);
            let len = u32::from_le_bytes(header[8..].try_into().map_err(|_| bad)?) as usize;
            let start = at + RECORD_HEADER;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= self.len)
                .ok_or(bad)?;
            out.push(Record { seq, start, len });
            at = end;
        }
        Ok(out)
    }
}

/// The records of a packed payload in one slice, each `(seq, bytes)`.
///
/// # Errors
/// As [`Packed::records`].
#[cfg(test)]
pub fn unpack(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, Malformed> {
    let records = Packed::new([payload]).records()?;
    Ok(records
        .iter()
        .map(|r| (r.seq, &payload[r.start..r.start + r.len]))
        .collect())
}

/// What the receiving side makes of a sample's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first sample of a stream (a key this bridge had not heard from).
    First,
    /// The next one, as expected.
    InOrder,
    /// `lost` samples are missing just before this one.
    Gap {
        /// How many.
        lost: u64,
        /// The sample expected.
        expected: u64,
        /// Whether another bridge put the previous sample (the exporting bridge was
        /// restarted, or another one took over).
        new_origin: bool,
    },
    /// Numbering went back: the exporting topic was recreated (or two bridges export
    /// to the same key).
    Restarted {
        /// The sample expected.
        expected: u64,
    },
}

/// The last sample seen per key, to report gaps.
#[derive(Debug, Default)]
pub struct Gaps {
    last: HashMap<String, Tag>,
}

impl Gaps {
    /// The last sample seen on `key`.
    pub fn last(&self, key: &str) -> Option<Tag> {
        self.last.get(key).copied()
    }

    /// Accounts for a sample on `key`.
    pub fn see(&mut self, key: &str, tag: Tag) -> Seen {
        // Looked up before inserting: no allocation per sample.
        let Some(slot) = self.last.get_mut(key) else {
            self.last.insert(key.to_owned(), tag);
            return Seen::First;
        };
        let prev = std::mem::replace(slot, tag);
        let expected = prev.seq.wrapping_add(1);
        let new_origin = prev.origin != tag.origin;
        if tag.seq == expected {
            Seen::InOrder
        } else if tag.seq > expected {
            Seen::Gap {
                lost: tag.seq - expected,
                expected,
                new_origin,
            }
        } else {
            Seen::Restarted { expected }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_round_trips_and_rejects_foreign_attachments() {
        let t = Tag {
            origin: [7; 16],
            seq: 0x0102_0304_0506_0708,
        };
        assert_eq!(Tag::decode(&t.encode()), Some(t));
        assert_eq!(Tag::decode(b""), None);
        assert_eq!(Tag::decode(&[0u8; LEN]), None);
        assert_eq!(Tag::decode(&t.encode()[..LEN - 1]), None);
    }

    #[test]
    fn packed_records_round_trip_and_short_payloads_are_refused() {
        let mut p = Vec::new();
        for (seq, bytes) in [(7u64, &b"hello"[..]), (8, b""), (10, &[0xff; 300][..])] {
            p.extend_from_slice(&record_header(seq, bytes.len()));
            p.extend_from_slice(bytes);
        }
        let got = unpack(&p).expect("well formed");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (7, &b"hello"[..]));
        assert_eq!(got[1], (8, &b""[..]));
        assert_eq!(got[2].0, 10);
        assert_eq!(got[2].1.len(), 300);
        assert_eq!(unpack(&[]), Ok(Vec::new()));
        // Every truncation of a well-formed payload is refused, none panics.
        for cut in 1..p.len() {
            let r = unpack(&p[..cut]);
            let ends_on_record = [17, 29].contains(&cut);
            assert_eq!(r.is_ok(), ends_on_record, "cut at {cut}: {r:?}");
        }
        // A length field near u32::MAX must not wrap around.
        let mut huge = record_header(1, 0).to_vec();
        huge[8..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            unpack(&huge),
            Err(Malformed {
                record: 0,
                at: 0,
                left: 12
            })
        );
        // The same payload in two slices, split anywhere (a fragmented put): the
        // same records, and each record's parts add up to its bytes.
        let whole = Packed::new([&p[..]]).records().expect("well formed");
        for cut in 0..=p.len() {
            let split = Packed::new([&p[..cut], &p[cut..]]);
            assert_eq!(split.records().as_ref(), Ok(&whole), "split at {cut}");
            for r in &whole {
                let joined: Vec<u8> = split.parts(r.start, r.len).flatten().copied().collect();
                assert_eq!(joined, &p[r.start..r.start + r.len], "split at {cut}");
            }
            let short = Packed::new([
                &p[..cut.min(p.len() - 1)],
                &p[cut.min(p.len() - 1)..p.len() - 1],
            ]);
            assert!(short.records().is_err(), "one byte short, split at {cut}");
        }
        let o = [9u8; 16];
        assert_eq!(packed_origin(&packed_tag(&o)), Some(o));
        assert_eq!(packed_origin(&Tag { origin: o, seq: 1 }.encode()), None);
        assert_eq!(Tag::decode(&packed_tag(&o)), None);
    }

    #[test]
    fn gaps_are_counted_per_key() {
        let mut g = Gaps::default();
        let a = |seq| Tag {
            origin: [1; 16],
            seq,
        };
        let b = |seq| Tag {
            origin: [2; 16],
            seq,
        };
        assert_eq!(g.see("k", a(5)), Seen::First);
        assert_eq!(g.see("k", a(6)), Seen::InOrder);
        assert_eq!(g.see("j", a(0)), Seen::First);
        assert_eq!(
            g.see("k", a(10)),
            Seen::Gap {
                lost: 3,
                expected: 7,
                new_origin: false
            }
        );
        assert_eq!(
            g.see("k", b(12)),
            Seen::Gap {
                lost: 1,
                expected: 11,
                new_origin: true
            }
        );
        assert_eq!(g.see("k", b(0)), Seen::Restarted { expected: 13 });
        assert_eq!(g.see("k", b(1)), Seen::InOrder);
    }
}
