//! Corrupt mpmc headers, positions, endpoint records, slot states and lengths fed
//! to a consumer holding a sample across the corruption, to a producer that loans,
//! sends and cancels over it, and to a consumer taking and holding samples:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run mpmc_consumer`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::mpmc(data);
});
