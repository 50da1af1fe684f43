//! Corrupt pubsub headers, cursors, stamps and lengths fed to subscribers and to a
//! publisher: `cargo +nightly fuzz run pubsub_subscriber`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::pubsub(data);
});
