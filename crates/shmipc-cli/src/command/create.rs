//! `shmipc create NAME --size SIZE [--file PATH] [--mode OCTAL] [--persist | --hold]`

use std::sync::mpsc;
use std::time::Duration;

use shmipc::{Backing, CreateError, Persistence, Segment};

use super::object;
use crate::cli::CreateArgs;
use crate::output::{self, Result};
use crate::units;

pub fn run(args: &CreateArgs) -> Result {
    let persistence = if args.hold {
        Persistence::UntilLastClose
    } else {
        Persistence::UntilRemoved
    };
    // Catch Ctrl-C / SIGTERM before the segment exists, so that no signal can end
    // the command between creating and holding it without cleaning up.
    let released = args.hold.then(release_signal).transpose()?;

    let mut options = Segment::options()
        .size(args.size.unwrap_or(0))
        .mode(args.mode)
        .persistence(persistence)
        .reserve(!args.sparse);
    if let Some(file) = &args.file {
        // The library opens (and may create and size) the file before it finds the
        // name taken, and then leaves the file behind: check the name first.
        if Segment::info(&args.name).is_ok() {
            return Err(CreateError::AlreadyExists {
                name: args.name.clone(),
            }
            .into());
        }
        options = options.file(file);
    }
    let segment = match options.create(&args.name) {
        Ok(segment) => segment,
        // Windows: a memory segment cannot outlive its last handle; say which
        // options of this command keep one.
        Err(e @ CreateError::Unsupported { .. })
            if cfg!(windows) && !args.hold && args.file.is_none() =>
        {
            return Err(format!(
                "{e} (`shmipc create --hold` keeps a holder while it runs; `--file PATH` backs it by a file)"
            )
            .into())
        }
        // The file's owner and mode (or its directory's) keep this user out: name
        // the file, which the library's words for the segment do not.
        Err(CreateError::PermissionDenied { name, .. }) if args.file.is_some() => {
            let file = args.file.as_deref().unwrap_or(std::path::Path::new(""));
            return Err(format!(
                "segment `{name}`: permission denied opening or creating its file {}: check the owner and mode of the file and its directory, or use another file",
                output::printable(&file.to_string_lossy())
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let name = &args.name;
    let what = describe(&segment);

    let Some(released) = released else {
        let after = match segment.backing() {
            Backing::File(_) => " (the file stays after that)",
            _ => "",
        };
        return output::line(format!(
            "created segment `{name}`: {what}; it stays until `{rm}`{after}",
            rm = crate::output::suggest("rm", name)
        ));
    };

    output::line(format!(
        "holding segment `{name}`: {what}; it goes away when this command ends: press Ctrl-C or run `kill {}`",
        std::process::id()
    ))?;
    // Ctrl-C, SIGTERM or SIGHUP. The sender lives in the handler for the rest of the
    // process, so `recv` only returns on a signal; between seconds, whether the name
    // still names this segment: one removed (`shmipc rm`) can be opened by no one
    // any more, and holding it on for ever would only keep its memory.
    while let Err(mpsc::RecvTimeoutError::Timeout) = released.recv_timeout(NAME_CHECK) {
        if let Some(what) = object::removed(segment.is_still_named(), name) {
            drop(segment);
            return Err(format!(
                "segment `{name}` was removed (`{rm}`) while this command held it{what}: nothing can open it by name any more, so it is released",
                rm = output::suggest("rm", name)
            )
            .into());
        }
    }
    // A file-backed name lasts until removed; --hold promised it goes with us. Not
    // when it names another object now (made under the name since: not ours); where
    // the OS cannot tell (macOS: `None`), as before, it is removed.
    if matches!(segment.backing(), Backing::File(_)) && segment.is_still_named() != Some(false) {
        let _ = Segment::remove(name);
    }
    drop(segment);
    output::line(format!("released segment `{name}`"))
}

/// How often a `create --hold` looks whether its name still names its segment.
const NAME_CHECK: Duration = Duration::from_secs(1);

/// A channel that receives a message on Ctrl-C, SIGTERM or SIGHUP.
fn release_signal() -> Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot catch Ctrl-C/SIGTERM to release the segment: {e}"))?;
    Ok(rx)
}

/// `4096 bytes (4 KiB) of system memory, mode 0600`.
fn describe(segment: &Segment) -> String {
    let store = match segment.backing() {
        Backing::File(path) => format!("in file {}", path.display()),
        Backing::Memory => "of system memory".to_owned(),
        _ => "unnamed".to_owned(),
    };
    // The mode as the OS has it: for an existing backing file, --mode did not apply.
    let mode = segment
        .name()
        .and_then(|n| Segment::info(n).ok())
        .and_then(|i| i.mode)
        .map(|m| format!(", mode {m:04o}"))
        .unwrap_or_default();
    format!("{} {store}{mode}", units::bytes(segment.size()))
}
