//! Corrupt pubsub headers, cursors, hold slots, ring entries and chunk headers fed
//! to subscribers holding samples and to a (re-attached) publisher: `cargo +nightly fuzz run pubsub_subscriber`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::pubsub(data);
});
