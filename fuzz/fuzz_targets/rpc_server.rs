//! Corrupt rpc headers, queue positions, request slot states, response rings and
//! lengths fed to a server (holding a request across the corruption and answering
//! it in place after) and a client: `RUSTC_BOOTSTRAP=1 cargo fuzz run rpc_server`.
//! The same entry point runs on stable in `crates/shmipc/tests/channel_fuzz.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shmipc::channel::fuzzing::rpc(data);
});
