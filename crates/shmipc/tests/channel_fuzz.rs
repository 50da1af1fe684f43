//! The fuzz entry points of `fuzz/` (which need `cargo fuzz`) run here over random
//! bytes with proptest, on stable: corrupt headers, indices, stamps, lengths, pool
//! offsets, hold slots and slot states must give errors, never a panic, a hang or a crash. The
//! input: a scenario byte, a placement byte (bit 0: word patches instead of a run
//! of bytes), then the bytes (`channel::fuzzing`).

use proptest::prelude::*;

/// A run of bytes from the offset the scenario byte picks.
fn run(mode: u8, pos: usize, bytes: [u8; 8]) -> Vec<u8> {
    let mut data = vec![mode, 0];
    data.resize(2 + pos, 0);
    data.extend_from_slice(&bytes);
    data
}

/// Word patches: (index, value) pairs anywhere in the segment.
fn patches(mode: u8, words: &[(u16, u64)]) -> Vec<u8> {
    let mut data = vec![mode, 1];
    for (at, value) in words {
        data.extend_from_slice(&at.to_le_bytes());
        data.extend_from_slice(&value.to_le_bytes());
    }
    data
}

/// Values that reach deep: small counts and indices, the pool's FREE and FREEING
/// marks, mpmc slot states (a lap, a phase and an endpoint: `mpmc_ring.rs`), values
/// near the top of u64, and noise.
fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..16,
        (0u64..4, 0u64..4, 0u64..4).prop_map(|(lap, phase, ep)| lap << 19 | phase << 17 | ep),
        Just(u64::MAX),
        (0u64..16).prop_map(|n| n | 1 << 63),
        (0u64..16).prop_map(|n| u64::MAX - n),
        (0u64..16).prop_map(|n| n + (1 << 62)),
        any::<u64>(),
    ]
}

/// Found by `pubsub_subscriber`: block mode, `head` patched one ahead of the
/// publisher's count and a place held by a garbage token. A subscriber attached
/// then starts past the next message the publisher numbers; it must get the ones
/// after it (the harness's deafness check allows the two below its start).
#[test]
fn pubsub_head_ahead_of_the_publisher() {
    shmipc::channel::fuzzing::pubsub(&[
        0xb5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2e, 0x2e, 0x2e, 0x2e, 0x3a, 0x00, 0x00,
        0x03, 0xe0, 0x00, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x56, 0x40,
        0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0xc0, 0x06,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x2e, 0x2e, 0x91, 0x91,
    ]);
}

/// Found by `pubsub_subscriber`: the capacity in the header rewritten (4 to 8)
/// under the kept publisher; a subscriber attached after it was deaf to the
/// publisher's messages. The publisher now reports the change.
#[test]
fn pubsub_header_rewritten_under_the_publisher() {
    shmipc::channel::fuzzing::pubsub(&[0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn spsc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        shmipc::channel::fuzzing::spsc(&data);
    }

    /// Mostly-valid memory: a few bytes changed reach deeper than pure noise.
    #[test]
    fn spsc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..600, bytes in any::<[u8; 8]>()) {
        shmipc::channel::fuzzing::spsc(&run(mode, pos, bytes));
    }

    #[test]
    fn spsc_survives_word_patches(mode in any::<u8>(), words in proptest::collection::vec((0u16..80, word()), 1..4)) {
        shmipc::channel::fuzzing::spsc(&patches(mode, &words));
    }

    #[test]
    fn pubsub_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..900)) {
        shmipc::channel::fuzzing::pubsub(&data);
    }

    #[test]
    fn pubsub_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1200, bytes in any::<[u8; 8]>()) {
        shmipc::channel::fuzzing::pubsub(&run(mode, pos, bytes));
    }

    /// The pool: entries, chunk seq/len words, cursors and hold slots.
    #[test]
    fn pubsub_survives_word_patches(mode in any::<u8>(), words in proptest::collection::vec((0u16..700, word()), 1..4)) {
        shmipc::channel::fuzzing::pubsub(&patches(mode, &words));
    }

    #[test]
    fn mpmc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
        shmipc::channel::fuzzing::mpmc(&data);
    }

    #[test]
    fn mpmc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1000, bytes in any::<[u8; 8]>()) {
        shmipc::channel::fuzzing::mpmc(&run(mode, pos, bytes));
    }

    #[test]
    fn mpmc_survives_word_patches(mode in any::<u8>(), words in proptest::collection::vec((0u16..150, word()), 1..4)) {
        shmipc::channel::fuzzing::mpmc(&patches(mode, &words));
    }

    #[test]
    fn rpc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        shmipc::channel::fuzzing::rpc(&data);
    }

    #[test]
    fn rpc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1300, bytes in any::<[u8; 8]>()) {
        shmipc::channel::fuzzing::rpc(&run(mode, pos, bytes));
    }

    #[test]
    fn rpc_survives_word_patches(mode in any::<u8>(), words in proptest::collection::vec((0u16..200, word()), 1..4)) {
        shmipc::channel::fuzzing::rpc(&patches(mode, &words));
    }
}
