//! `shmipc`: named shared memory from the command line. See `shmipc --help`.

mod cli;
mod command;
mod output;
mod report;
mod units;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::try_parse() {
        Ok(cli) => match command::run(cli.command) {
            Ok(code) => code,
            Err(e) => output::fail(&e),
        },
        Err(e) => output::usage(&e),
    }
}
