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

/// A bridge's id as it appears in its liveliness tokens.
pub fn origin_hex(origin: &Origin) -> String {
    origin.iter().map(|b| format!("{b:02x}")).collect()
}

/// The liveliness token an exporting bridge declares for `key`.
pub fn exporter_token(key: &str, origin: &Origin) -> String {
    format!("{key}/{PACKED}/exporter/{}", origin_hex(origin))
}

/// The exporting bridge's id in one of its tokens (its last chunk).
pub fn token_origin(token: &str) -> &str {
    token.rsplit('/').next().unwrap_or_default()
}

/// Whether a key expression has wildcards (then it may match keys of many exporters).
pub fn has_wildcards(key: &str) -> bool {
    key.split('/').any(|chunk| chunk.contains('*'))
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

    /// The record at `at` (the `index`th).
    fn record_at(&self, at: usize, index: usize) -> Result<Record, Malformed> {
        let bad = Malformed {
            record: index,
            at,
            left: self.len.saturating_sub(at),
        };
        let header: [u8; RECORD_HEADER] = self.read(at).ok_or(bad)?;
        let seq = u64::from_le_bytes(header[..8].try_into().map_err(|_| bad)?);
        let len = u32::from_le_bytes(header[8..].try_into().map_err(|_| bad)?) as usize;
        let start = at + RECORD_HEADER;
        start
            .checked_add(len)
            .filter(|&end| end <= self.len)
            .ok_or(bad)?;
        Ok(Record { seq, start, len })
    }

    /// Checks every record without keeping any (nothing allocated, whatever the
    /// payload claims) and counts them.
    ///
    /// # Errors
    /// The first record whose header or bytes run past the end.
    pub fn check(&self) -> Result<usize, Malformed> {
        let mut at = 0;
        let mut n = 0;
        while at < self.len {
            let r = self.record_at(at, n)?;
            at = r.start + r.len;
            n += 1;
        }
        Ok(n)
    }

    /// The records in order, up to the first that does not parse ([`Packed::check`]
    /// first to know there is none).
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        let mut at = 0;
        let mut n = 0;
        std::iter::from_fn(move || {
            if at >= self.len {
                return None;
            }
            let r = self.record_at(at, n).ok()?;
            at = r.start + r.len;
            n += 1;
            Some(r)
        })
    }
}

/// The records of a packed payload in one slice, each `(seq, bytes)`.
///
/// # Errors
/// As [`Packed::records`].
#[cfg(test)]
pub fn unpack(payload: &[u8]) -> Result<Vec<(u64, &[u8])>, Malformed> {
    let packed = Packed::new([payload]);
    packed.check()?;
    Ok(packed
        .records()
        .map(|r| (r.seq, &payload[r.start..r.start + r.len]))
        .collect())
}

/// What an import has published from each bridge's packed puts: per key and bridge,
/// the number of the last sample. While an exporting bridge sees subscribers on both
/// forms it puts each burst packed, then one by one (same transport, same priority,
/// so in that order): a one-by-one put numbered at or below that is a second copy.
/// Bounded: a peer that makes up bridge ids cannot grow it without end (forgetting
/// only lets a second copy through in that moment of both forms).
#[derive(Debug, Default)]
pub struct PackedSeen {
    last: HashMap<String, HashMap<Origin, u64>>,
    entries: usize,
}

/// Most (key, bridge) pairs a [`PackedSeen`] keeps.
const PACKED_SEEN_MAX: usize = 4096;

impl PackedSeen {
    /// Notes that the packed puts of `origin` on `key` got up to `seq`.
    pub fn record(&mut self, key: &str, origin: Origin, seq: u64) {
        if let Some(per) = self.last.get_mut(key) {
            if per.insert(origin, seq).is_none() {
                self.entries += 1;
            }
        } else {
            self.last
                .insert(key.to_owned(), HashMap::from([(origin, seq)]));
            self.entries += 1;
        }
        if self.entries > PACKED_SEEN_MAX {
            self.last.clear();
            self.entries = 0;
        }
    }

    /// Whether a one-by-one put tagged `tag` on `key` is a sample already published
    /// from that bridge's packed puts.
    pub fn covers(&self, key: &str, tag: &Tag) -> bool {
        self.last
            .get(key)
            .and_then(|per| per.get(&tag.origin))
            .is_some_and(|&last| tag.seq <= last)
    }
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
        // The same payload in two slices, split anywhere (a fragmented put): the
        // same records, and each record's parts add up to its bytes.
        let whole: Vec<Record> = Packed::new([&p[..]]).records().collect();
        assert_eq!(whole.len(), 3);
        for cut in 0..=p.len() {
            let split = Packed::new([&p[..cut], &p[cut..]]);
            assert_eq!(split.check(), Ok(3), "split at {cut}");
            assert_eq!(split.records().collect::<Vec<_>>(), whole, "split at {cut}");
            for r in &whole {
                let joined: Vec<u8> = split.parts(r.start, r.len).flatten().copied().collect();
                assert_eq!(joined, &p[r.start..r.start + r.len], "split at {cut}");
            }
            let short = Packed::new([
                &p[..cut.min(p.len() - 1)],
                &p[cut.min(p.len() - 1)..p.len() - 1],
            ]);
            assert!(short.check().is_err(), "one byte short, split at {cut}");
        }
        let o = [9u8; 16];
        assert_eq!(packed_origin(&packed_tag(&o)), Some(o));
        assert_eq!(packed_origin(&Tag { origin: o, seq: 1 }.encode()), None);
        assert_eq!(Tag::decode(&packed_tag(&o)), None);
    }

    proptest::proptest! {
        /// Whatever a peer sends, split however zenoh fragments it: parsing never
        /// panics, a payload either checks whole or is refused, and the records of
        /// one that checks lie inside it, back to back, and read the same bytes as
        /// the payload in one slice.
        #[test]
        fn any_payload_in_any_slices_parses_or_is_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut slices = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                slices.push(&bytes[from..c]);
                from = c;
            }
            let split = Packed::new(slices.iter().copied());
            let whole = Packed::new([&bytes[..]]);
            proptest::prop_assert_eq!(split.check(), whole.check());
            let records: Vec<Record> = split.records().collect();
            proptest::prop_assert_eq!(&records, &whole.records().collect::<Vec<_>>());
            if let Ok(n) = split.check() {
                proptest::prop_assert_eq!(records.len(), n);
                let mut at = 0;
                for r in &records {
                    proptest::prop_assert_eq!(r.start, at + RECORD_HEADER);
                    at = r.start + r.len;
                    let joined: Vec<u8> = split.parts(r.start, r.len).flatten().copied().collect();
                    proptest::prop_assert_eq!(&joined[..], &bytes[r.start..at]);
                }
                proptest::prop_assert_eq!(at, bytes.len());
            }
            // Attachments: anything not exactly a bridge's is refused, never a panic.
            let _ = (Tag::decode(&bytes), packed_origin(&bytes));
        }
    }

    #[test]
    fn second_copies_are_known_per_key_and_bridge() {
        let (a, c) = ([1u8; 16], [3u8; 16]);
        let tag = |origin, seq| Tag { origin, seq };
        let mut seen = PackedSeen::default();
        assert!(!seen.covers("k", &tag(a, 0)));
        seen.record("k", a, 110);
        // Another bridge's packed puts on the same key do not hide a's copies.
        seen.record("k", c, 7);
        assert!(seen.covers("k", &tag(a, 100)));
        assert!(seen.covers("k", &tag(a, 110)));
        assert!(
            !seen.covers("k", &tag(a, 111)),
            "a burst a put one by one only"
        );
        assert!(seen.covers("k", &tag(c, 7)));
        assert!(!seen.covers("k", &tag(c, 8)));
        assert!(!seen.covers("j", &tag(a, 100)), "per key");
        // Made-up ids cannot grow it without end.
        for i in 0..3 * PACKED_SEEN_MAX {
            let mut o = [0u8; 16];
            o[..8].copy_from_slice(&(i as u64).to_le_bytes());
            seen.record("k", o, 1);
        }
        assert!(seen.entries <= PACKED_SEEN_MAX);
    }

    #[test]
    fn tokens_and_wildcards() {
        let o = [0xab; 16];
        let t = exporter_token("shmipc/news", &o);
        assert_eq!(
            t,
            format!("shmipc/news/@shmipc/exporter/{}", "ab".repeat(16))
        );
        assert_eq!(token_origin(&t), origin_hex(&o));
        assert!(has_wildcards("shmipc/**"));
        assert!(has_wildcards("a/*/b"));
        assert!(has_wildcards("a/b$*"));
        assert!(!has_wildcards("shmipc/news"));
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
