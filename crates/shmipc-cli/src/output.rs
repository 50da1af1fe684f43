//! Writing to stdout and stderr without panicking, and the one-line error report.
//!
//! `println!` panics when stdout is closed (`shmipc ls | head -1`); everything here
//! returns the I/O error instead, and a closed pipe ends the command quietly.

use std::io::{self, Write};
use std::process::ExitCode;

/// What a command fails with; its `Display` is the one line the user sees.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A command's result.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// Exit code for a failed command.
const FAILURE: u8 = 1;
/// Exit code for a command line that does not parse (as clap and BSD `sysexits` use).
const USAGE: u8 = 2;

/// Writes `text` and a newline to stdout, and flushes (so a parent reading our
/// output line by line sees each line at once).
pub fn line(text: impl AsRef<str>) -> Result {
    let mut out = io::stdout().lock();
    out.write_all(text.as_ref().as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Writes bytes to stdout as they are.
pub fn bytes(data: &[u8]) -> Result {
    let mut out = io::stdout().lock();
    out.write_all(data)?;
    out.flush()?;
    Ok(())
}

/// Writes `shmipc: <text>` to stderr as one line; errors are ignored (there is no
/// one left to tell).
pub fn warn(text: impl AsRef<str>) {
    let one_line = text.as_ref().replace(['\n', '\r'], " ");
    let _ = writeln!(io::stderr().lock(), "shmipc: {one_line}");
}

/// Reports a failed command and gives its exit code. A closed stdout is not a
/// failure worth a message: whoever read our output has what they wanted.
pub fn fail(e: &Error) -> ExitCode {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        if io.kind() == io::ErrorKind::BrokenPipe {
            return ExitCode::SUCCESS;
        }
    }
    warn(e.to_string());
    ExitCode::from(FAILURE)
}

/// Reports a command line that does not parse, as one line, or prints the help or
/// version that was asked for.
pub fn usage(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(USAGE);
        }
        _ => {}
    }
    // clap's message: "error: <what>" possibly continued on indented lines, a blank
    // line, then usage. Keep the first paragraph, joined into one line.
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = first.join(" ");
    let what = joined.strip_prefix("error: ").unwrap_or(&joined);
    warn(format!("{what} (see `{}`)", help_hint()));
    ExitCode::from(USAGE)
}

/// `shmipc VERB --help` when the command line names a verb, else `shmipc --help`.
fn help_hint() -> String {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    std::env::args_os()
        .skip(1)
        .find(|a| !a.to_string_lossy().starts_with('-'))
        .and_then(|a| {
            let verb = a.to_str()?;
            let sub = cli.find_subcommand(verb)?;
            (!sub.is_hide_set()).then(|| format!("shmipc {verb} --help"))
        })
        .unwrap_or_else(|| "shmipc --help".to_owned())
}
