//! What a bridge adds to each sample it puts to zenoh, as the zenoh attachment (the
//! payload stays the application's bytes, so zenoh's own clients read it as is):
//!
//! ```text
//!   0  "SHB1"            magic and version
//!   4  origin, 16 bytes  the putting bridge's zenoh session id
//!  20  seq, u64 LE       the local topic's number of the sample
//! ```
//!
//! The sequence number is the exporting topic's own sample number, so it survives a
//! restart of the exporting bridge (the topic lives on while its publisher holds it):
//! the receiving bridge reports every gap, whether from an overwrite on the exporting
//! host, a congestion drop, or samples published while a bridge was down.

use std::collections::HashMap;

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
