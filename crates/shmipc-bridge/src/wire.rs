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

/// The records of a packed payload, each `(seq, bytes)`, checked whole first: a
/// payload that runs short anywhere yields nothing.
///
/// # Errors
/// The first record whose header or bytes run past the end.
pub fn unpack(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let bad = Malformed {
            record: out.len(),
            at,
            left: payload.len() - at,
        };
        let Some(header) = payload.get(at..at + RECORD_HEADER) else {
            return Err(bad);
        };
        let seq = u64::from_le_bytes(header[..8].try_into().map_err(|_| bad)?);
        let len = u32::from_le_bytes(header[8..].try_into().map_err(|_| bad)?) as usize;
        let start = at + RECORD_HEADER;
        let Some(bytes) = start
            .checked_add(len)
            .and_then(|end| payload.get(start..end))
        else {
            return Err(bad);
        };
        out.push((seq, bytes));
        at = start + len;
    }
    Ok(out)
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
