//! Corrupt spsc headers, indices, stamps and lengths fed to the consumer (and to a
//! producer that re-attaches): `RUSTC_BOOTSTRAP=1 cargo fuzz run spsc_consumer`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::spsc(data);
});
