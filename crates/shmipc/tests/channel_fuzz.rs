//! The fuzz entry points of `fuzz/` (which need nightly `cargo fuzz`) run here over
//! random bytes with proptest, on stable: corrupt headers, indices, stamps and
//! lengths must give errors, never a panic, a hang or a crash.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn spsc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..700)) {
        shmipc::channel::fuzzing::spsc(&data);
    }

    /// Mostly-valid memory: a few bytes changed reach deeper than pure noise.
    #[test]
    fn spsc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..600, bytes in any::<[u8; 8]>()) {
        let mut data = vec![mode];
        data.resize(1 + pos, 0);
        data.extend_from_slice(&bytes);
        shmipc::channel::fuzzing::spsc(&data);
    }

    #[test]
    fn pubsub_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..900)) {
        shmipc::channel::fuzzing::pubsub(&data);
    }

    #[test]
    fn pubsub_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1200, bytes in any::<[u8; 8]>()) {
        let mut data = vec![mode];
        data.resize(1 + pos, 0);
        data.extend_from_slice(&bytes);
        shmipc::channel::fuzzing::pubsub(&data);
    }

    #[test]
    fn mpmc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
        shmipc::channel::fuzzing::mpmc(&data);
    }

    #[test]
    fn mpmc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1000, bytes in any::<[u8; 8]>()) {
        let mut data = vec![mode];
        data.resize(1 + pos, 0);
        data.extend_from_slice(&bytes);
        shmipc::channel::fuzzing::mpmc(&data);
    }

    #[test]
    fn rpc_survives_corrupt_memory(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        shmipc::channel::fuzzing::rpc(&data);
    }

    #[test]
    fn rpc_survives_small_corruptions(mode in any::<u8>(), pos in 0usize..1300, bytes in any::<[u8; 8]>()) {
        let mut data = vec![mode];
        data.resize(1 + pos, 0);
        data.extend_from_slice(&bytes);
        shmipc::channel::fuzzing::rpc(&data);
    }
}
