//! `shmipc write NAME (TEXT | - | --from FILE) [--offset N] [--no-nul]`

use std::ffi::OsStr;
use std::io::Read;

use shmipc::{Access, Backing, Contents, Kind, Segment};

use super::words;
use crate::cli::WriteArgs;
use crate::input;
use crate::output::{self, Error, Result};
use crate::units;

pub fn run(args: &WriteArgs) -> Result {
    let name = &args.name;
    refuse_objects(name, shmipc::inspect(name))?;
    let segment = Segment::open(name, Access::ReadWrite).map_err(|e| {
        words::open_failure("segment", name, "write to", &e).map_or_else(|| e.into(), Error::from)
    })?;
    // Again on the object opened: the name may have come to name another
    // object since the look above.
    refuse_objects(name, Ok(segment.contents()))?;
    let size = segment.size();
    let offset = args.offset;
    let Some(room) = size.checked_sub(offset) else {
        return Err(format!(
            "offset {offset} is past the end of segment `{name}` ({size} bytes): write at an offset up to {size}"
        )
        .into());
    };
    let (data, what) = load(args, room)?;
    let Some(len) = u64::try_from(data.len()).ok().filter(|&l| l <= room) else {
        return Err(format!(
            "{what} does not fit at offset {offset} of segment `{name}` ({size} bytes), which has {room} bytes from there: write less, or at a smaller offset"
        )
        .into());
    };
    if !data.is_empty() {
        // pwrite (`Segment::write_at`), not a mapping: a full /dev/shm or a segment
        // truncated by another program is an error message, never a SIGBUS.
        segment.write_at(offset, &data).map_err(|e| {
            // ENOSPC, or EDQUOT: the owner's quota on that store is used up (a
            // file system, or a tmpfs mounted with quotas), the same for the user.
            let quota = e.raw_os_error() == Some(122);
            if cfg!(target_os = "linux") && quota {
                format!(
                    "cannot write to segment `{name}`: its owner's disk quota is used up on the store of its memory (it has holes: it was made --sparse, or by another program): free space there or raise the quota"
                )
            } else if cfg!(target_os = "linux") && e.raw_os_error() == Some(28) {
                match segment.backing() {
                    Backing::File(file) => format!(
                        "cannot write to segment `{name}`: no space left on the file system of its file {} (it has holes: it was made --sparse, or by another program): free space there",
                        file.display()
                    ),
                    _ => format!(
                        "cannot write to segment `{name}`: no space left in its store (/dev/shm is full, and this sparse segment had no memory reserved there): free space or recreate it without --sparse"
                    ),
                }
            } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                // Truncated by another process: the library's message names it.
                e.to_string()
            } else {
                format!("cannot write to segment `{name}`: {e}")
            }
        })?;
        if matches!(segment.backing(), Backing::File(_)) {
            segment.map(offset, data.len())?.flush()?;
        }
    }
    output::line(format!(
        "wrote {} to segment `{name}` at offset {offset}",
        units::bytes(len)
    ))
}

/// Refuses a name that holds a shmipc mutex, semaphore, event or channel: raw bytes
/// written there would overwrite its header or its state, breaking it for every
/// process using it (a header that cannot be read is refused too). Plain bytes,
/// another program's data and a name that cannot be looked at go on to the open
/// (`contents`: what `inspect` says of the name, or `Segment::contents` of the
/// object opened).
fn refuse_objects(
    name: &str,
    contents: std::result::Result<Contents, shmipc::OpenError>,
) -> Result {
    let (what, remedy) = match contents {
        Ok(Contents::Object { kind, .. }) => {
            let found = kind.as_str();
            let remedy = match kind {
                Kind::Mutex => format!(
                    "use `{lock}`",
                    lock = crate::output::command("lock", "", name, "-- COMMAND")
                ),
                Kind::Semaphore => format!(
                    "use `{post}` or `wait`",
                    post = crate::output::command("sem", "", name, "post")
                ),
                Kind::Event => format!(
                    "use `{set}`, `reset` or `wait`",
                    set = crate::output::command("event", "", name, "set")
                ),
                Kind::PubSub => format!(
                    "publish with `{publish}`",
                    publish = crate::output::command("pub", "", name, "MESSAGE")
                ),
                _ => format!("use it through its {found} API"),
            };
            (format!("{} {found}", words::article(found)), remedy)
        }
        Ok(Contents::Invalid(e)) => (
            format!("a shmipc object this build cannot read ({e})"),
            format!("see `{info}`", info = crate::output::suggest("info", name)),
        ),
        _ => return Ok(()),
    };
    Err(format!(
        "`{name}` is {what}, not a plain segment: writing bytes into it would corrupt it for every process using it; {remedy}, or `{rm}` if it is no longer needed", rm = crate::output::suggest("rm", name))
    .into())
}

/// The bytes to write and what they are, for messages. Reads at most `room + 1`
/// bytes from a file or stdin: enough to tell that the data does not fit without
/// reading an endless stream.
fn load(args: &WriteArgs, room: u64) -> Result<(Vec<u8>, String)> {
    if let Some(path) = &args.from {
        if path.as_os_str() == "-" {
            let (data, cut) = read_at_most(std::io::stdin().lock(), room)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            let what = format!("the bytes from stdin ({})", amount(&data, cut));
            return Ok((data, what));
        }
        let shown = output::printable(&path.to_string_lossy());
        let file = input::open(path).map_err(|e| match e {
            input::OpenError::NotAFile(what) => not_a_file(&args.name, path, what),
            input::OpenError::Io(e) => format!("cannot read `{shown}`: {e}").into(),
        })?;
        let (data, cut) =
            read_at_most(file, room).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        let what = format!("the file `{shown}` ({})", amount(&data, cut));
        return Ok((data, what));
    }
    let text = args.text.as_deref().unwrap_or_default();
    let (mut data, cut, what) = if text == "-" {
        let (data, cut) = read_at_most(std::io::stdin().lock(), room)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        (data, cut, "the text from stdin")
    } else {
        (os_bytes(text)?, false, "the text")
    };
    let nul = if args.no_nul {
        ""
    } else {
        data.push(0);
        " plus its terminating NUL"
    };
    let what = format!("{what}{nul} ({})", amount(&data, cut));
    Ok((data, what))
}

/// The error for `--from PATH` naming a directory, device, socket or named pipe,
/// which is not opened: what it is, and how to read it anyway if that is meant
/// (the shell opens it for stdin, as the user asked it to).
fn not_a_file(name: &str, path: &std::path::Path, what: input::NotAFile) -> Error {
    let shown = output::printable(&path.to_string_lossy());
    let redirect = format!(
        "{} < {}",
        output::command("write", "--from -", name, ""),
        output::shell_arg(&path.to_string_lossy())
    );
    match what {
        input::NotAFile::Directory => {
            format!("cannot read `{shown}`: it is a directory: --from takes a file").into()
        }
        input::NotAFile::NamedPipe => format!(
            "`{shown}` is a named pipe (FIFO), which --from does not open itself (with no writer the open would wait for ever): redirect it to stdin instead: `{redirect}`"
        )
        .into(),
        input::NotAFile::Socket => format!(
            "`{shown}` is a socket, which is not read by opening it: --from takes a file or an open pipe; have a program read the socket and pipe it in: `COMMAND | {}`",
            output::command("write", "--from -", name, "")
        )
        .into(),
        what => format!(
            "`{shown}` is {}, not a regular file: --from opens only files and open pipes (`<(command)`), since opening a device can act on it (arm a watchdog, take over a terminal); if you mean to copy from it, redirect it to stdin: `{redirect}`",
            what.words()
        )
        .into(),
    }
}

/// Reads up to `room + 1` bytes; true if there was more than `room`.
fn read_at_most(source: impl Read, room: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut data = Vec::new();
    source.take(room.saturating_add(1)).read_to_end(&mut data)?;
    let cut = u64::try_from(data.len()).map_or(true, |l| l > room);
    Ok((data, cut))
}

/// `N bytes`, or `more than N bytes` when reading stopped early.
fn amount(data: &[u8], cut: bool) -> String {
    if cut {
        format!("more than {} bytes", data.len().saturating_sub(1))
    } else {
        format!("{} bytes", data.len())
    }
}

/// The bytes of a command-line argument: exactly as given on Unix; Unicode elsewhere.
fn os_bytes(text: &OsStr) -> Result<Vec<u8>> {
    if let Some(s) = text.to_str() {
        return Ok(s.as_bytes().to_vec());
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(text.as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    {
        Err("the text is not valid Unicode: write it to a file and use --from FILE".into())
    }
}
