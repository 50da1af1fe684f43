//! One file per verb; [`run`] dispatches. Each verb is a thin shell over the
//! `shmipc` library: parse nothing here (clap did), call the library, print.

mod create;
mod demo;
mod event;
mod gc;
mod info;
mod lock;
mod ls;
mod object;
mod publish;
mod read;
mod rm;
mod sem;
mod subscribe;
mod topic;
mod words;
mod write;

use std::process::ExitCode;

use crate::cli::Command;
use crate::output::Result;

/// Runs one verb; its exit status on success (`lock` passes on its command's).
pub fn run(command: Command) -> Result<ExitCode> {
    // Every name first, the library's rules: a name no object can have is a wrong
    // command line (exit status 2, as any other bad value), whatever the verb, and
    // a command that refuses one has done nothing yet.
    let names = command.names();
    for name in &names {
        if let Err(e) = shmipc::Name::new(name) {
            if names.len() == 1 {
                return Err(e.into());
            }
            // `rm GOOD BAD`: say that GOOD was left alone too.
            return Err(crate::output::Usage(format!(
                "{e} (nothing was done: every name is checked before any is used)"
            ))
            .into());
        }
    }
    let done = match command {
        Command::Lock(args) => return lock::run(&args),
        Command::Sem(args) => sem::run(&args),
        Command::Event(args) => event::run(&args),
        Command::Pub(args) => publish::run(&args),
        Command::Sub(args) => subscribe::run(&args),
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
    };
    done.map(|()| ExitCode::SUCCESS)
}
