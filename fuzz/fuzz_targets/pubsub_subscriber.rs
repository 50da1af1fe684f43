//! Corrupt pubsub headers, cursors, hold slots, ring entries, chunk headers and
//! `FREEING` marks fed to subscribers holding samples and to a (re-attached)
//! publisher, and a late subscriber that must not be deaf:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run pubsub_subscriber`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::pubsub(data);
});
