//! `shmipc`: named shared memory from the command line. See `shmipc --help`.

mod cli;
mod command;
mod input;
mod output;
mod report;
mod units;

use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    // A segment truncated by another program under one of our mappings (or a
    // sparse one on a full /dev/shm) is reported by name, not a raw SIGBUS death.
    #[cfg(unix)]
    let _ = shmipc::os::unix::install_sigbus_handler();
    // `--size -1` reaches the size parser, which says why it is wrong, instead of
    // clap calling `-1` an unknown flag.
    let command = allow_negative_numbers(cli::Cli::command());
    match cli::parse(command, std::env::args_os().collect()) {
        Ok(cli) => match command::run(cli.command) {
            Ok(code) => code,
            Err(e) => output::fail(&e),
        },
        Err(e) => output::usage(&e),
    }
}

/// `c` and every subcommand below it (`shmipc sem NAME create --initial -1`) take
/// a negative number as a value, for the value's parser to refuse by name.
fn allow_negative_numbers(c: clap::Command) -> clap::Command {
    c.allow_negative_numbers(true)
        .mut_subcommands(allow_negative_numbers)
}
