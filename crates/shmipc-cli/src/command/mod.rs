//! One file per verb; [`run`] dispatches. Each verb is a thin shell over the
//! `shmipc` library: parse nothing here (clap did), call the library, print.

mod create;
mod demo;
mod gc;
mod info;
mod ls;
mod read;
mod rm;
mod write;

use crate::cli::Command;
use crate::output::Result;

/// Runs one verb.
pub fn run(command: Command) -> Result {
    match command {
        Command::Demo(args) => demo::run(&args),
        Command::DemoProcess1(args) => demo::process1(&args),
        Command::DemoProcess2(args) => demo::process2(&args),
        Command::Create(args) => create::run(&args),
        Command::Write(args) => write::run(&args),
        Command::Read(args) => read::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Ls(args) => ls::run(&args),
        Command::Rm(args) => rm::run(&args),
        Command::Gc(args) => gc::run(&args),
    }
}
