//! `shmipc`: named shared memory from the command line. See `shmipc --help`.

mod cli;
mod command;
mod output;
mod report;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A segment truncated by another program under one of our mappings (or a
    // sparse one on a full /dev/shm) is reported by name, not a raw SIGBUS death.
    #[cfg(unix)]
    let _ = shmipc::os::unix::install_sigbus_handler();
    match cli::Cli::try_parse() {
        Ok(cli) => match command::run(cli.command) {
            Ok(code) => code,
            Err(e) => output::fail(&e),
        },
        Err(e) => output::usage(&e),
    }
}
