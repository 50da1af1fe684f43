//! Corrupt mpmc headers, positions, sequences and lengths fed to a consumer and a
//! producer: `RUSTC_BOOTSTRAP=1 cargo fuzz run mpmc_consumer`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::mpmc(data);
});
