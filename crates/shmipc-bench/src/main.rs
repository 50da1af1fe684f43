//! The `shmipc-bench` binary: see the library's documentation (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    shmipc_bench::main()
}
