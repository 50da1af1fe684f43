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
/// output line by line sees each line at once). Control characters (but newline
/// and tab) and bidirectional-text controls are escaped as [`printable`] does.
pub fn line(text: impl AsRef<str>) -> Result {
    let text = text.as_ref();
    let shown: String;
    let text = if text
        .chars()
        .any(|c| c != '\n' && c != '\t' && (c.is_control() || is_bidi_control(c)))
    {
        // Names, link targets and process names are anyone's to choose.
        shown = text
            .split('\n')
            .map(printable)
            .collect::<Vec<_>>()
            .join("\n");
        &shown
    } else {
        text
    };
    raw_line(text)
}

/// Writes `text` and a newline to stdout as they are (data the user asked to
/// see: `read`'s text).
pub fn raw_line(text: impl AsRef<str>) -> Result {
    let mut out = io::stdout().lock();
    out.write_all(text.as_ref().as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes bytes to stdout as they are.
pub fn bytes(data: &[u8]) -> Result {
    let mut out = io::stdout().lock();
    out.write_all(data)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// A failed write to stdout, named as such: a bare `No space left on device (os
/// error 28)` (stdout on a full disk or `/dev/full`) read as if shared memory
/// were full.
#[derive(Debug)]
pub struct StdoutError(pub io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The error of a failed write to stdout.
pub fn stdout_error(e: io::Error) -> Error {
    Box::new(StdoutError(e))
}

/// Writes `shmipc: <text>` to stderr as one line, in one `write` (stderr is not
/// buffered, and `writeln!` would write its pieces one by one: two processes
/// sharing a stderr, a `lock` and the next one, say, could interleave them);
/// errors are ignored (there is no one left to tell).
pub fn warn(text: impl AsRef<str>) {
    let one_line = printable(&text.as_ref().replace(['\n', '\r'], " "));
    let _ = io::stderr()
        .lock()
        .write_all(format!("shmipc: {one_line}\n").as_bytes());
}

/// Whether `c` is a bidirectional-text control (embeddings, overrides, isolates,
/// marks): printed raw, it reorders what a terminal shows after it, so that a
/// name can read as another (the "Trojan Source" trick).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// `text` with its control characters and bidirectional-text controls escaped
/// (`\u{1b}`, `\n`, `\u{202e}`…), for text that another user may have chosen (a
/// name, a link target, a process name, a name echoed in an error): printed raw,
/// it could move the cursor, retitle or clear the terminal, forge lines of our
/// output, or show a name reordered as another.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `name` as a table shows it (`ls`): [`printable`], and in single quotes, as
/// `ls` shows it, where it has whitespace (a name of one space would show as
/// nothing; one with a trailing space, as another name) or a quote; see
/// [`shell_arg`].
pub fn table_name(name: &str) -> String {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        shell_arg(name)
    } else {
        printable(name)
    }
}

/// How many terminal cells `text` takes: East Asian wide characters and emoji
/// two, combining marks and other zero-width characters none.
pub fn display_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// `text` padded with spaces to `width` terminal cells ([`display_width`]), as
/// `{:<width$}` does by characters.
pub fn pad(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(display_width(text));
    format!("{text}{}", " ".repeat(fill))
}

/// `arg` as one shell word, for the commands our messages suggest (`shmipc rm
/// NAME`): as it is when it holds only characters no shell treats specially,
/// else in single quotes (a `'` as `'\''`), or, where it holds a control or
/// bidirectional-text character, ANSI-C quoted (`$'…'`, with `\xNN` / `\uNNNN`;
/// bash, zsh and ksh), so that pasting it runs exactly that command and the line
/// stays printable. A leading `=` is quoted too: zsh expands `=cmd` to the path of
/// `cmd`.
pub fn shell_arg(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:+=@%/".contains(c);
    if !arg.is_empty() && !arg.starts_with('=') && arg.chars().all(plain) {
        return arg.to_owned();
    }
    if !arg.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return format!("'{}'", arg.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for c in arg.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c.is_control() || is_bidi_control(c)) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() || is_bidi_control(c) => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The `shmipc` command line a message suggests, ready to paste: `shmipc VERB
/// NAME AFTER OPTIONS`, NAME quoted for the shell ([`shell_arg`]). Where NAME
/// would not parse as a name there, `--` comes before it and OPTIONS before
/// that (`shmipc create --size SIZE -- -x`): a name that starts with `-`, which
/// clap takes for an option (`shmipc rm -x`: "unexpected argument"), and for
/// `sem` and `event` a name that is also one of their actions (`shmipc sem post
/// post`; see [`crate::cli::parse`]). `options` and `after` are our own words
/// (`--size SIZE`; `post`, `MESSAGE`, `-- COMMAND`): after `--` every word is an
/// operand, so `after` holds no option (but an action of `sem` or `event`).
pub fn command(verb: &str, options: &str, name: &str, after: &str) -> String {
    let escape = name.starts_with('-') || crate::cli::is_action(verb, name);
    let name = shell_arg(name);
    let words = if escape {
        [verb, options, "--", &name, after]
    } else {
        [verb, &name, after, options, ""]
    };
    let words: Vec<&str> = words.into_iter().filter(|w| !w.is_empty()).collect();
    format!("shmipc {}", words.join(" "))
}

/// `shmipc VERB NAME` (`shmipc rm NAME`), as [`command`] writes it.
pub fn suggest(verb: &str, name: &str) -> String {
    command(verb, "", name, "")
}

/// Reports a failed command and gives its exit code. A closed stdout is not a
/// failure worth a message: whoever read our output has what they wanted.
pub fn fail(e: &Error) -> ExitCode {
    let io = e
        .downcast_ref::<StdoutError>()
        .map(|s| &s.0)
        .or_else(|| e.downcast_ref::<io::Error>());
    if io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
        return ExitCode::SUCCESS;
    }
    match advice(e.as_ref()) {
        Some(more) => warn(format!("{e} ({more})")),
        None => warn(e.to_string()),
    }
    ExitCode::from(if is_usage(e.as_ref()) { USAGE } else { FAILURE })
}

/// A value on the command line that parses but that no object can be made with
/// (`--size 0`, `--capacity 0`, an initial count over the maximum; a name, checked
/// by [`crate::command::run`] and refused as a `shmipc::NameError`): a wrong command
/// line, as `shmipc --help` says, whatever the machine's state.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Whether `e` is about the command line's values rather than what happened on the
/// machine (exit status 2, not 1).
fn is_usage(e: &(dyn std::error::Error + 'static)) -> bool {
    use shmipc::channel::ChannelError;
    use shmipc::sync::ObjectError;
    use shmipc::CreateError;
    // A size or mode that no segment can have, whatever object it is under.
    let create = |e: &CreateError| {
        matches!(
            e,
            CreateError::InvalidSize { .. } | CreateError::InvalidMode { .. }
        )
    };
    e.is::<Usage>()
        || e.is::<shmipc::NameError>()
        || e.downcast_ref::<CreateError>().is_some_and(create)
        || match e.downcast_ref::<ChannelError>() {
            Some(ChannelError::InvalidParameter { .. }) => true,
            Some(ChannelError::Create(e)) => create(e),
            _ => false,
        }
        || match e.downcast_ref::<ObjectError>() {
            Some(ObjectError::InvalidParameter { .. }) => true,
            Some(ObjectError::Create(e)) => create(e),
            _ => false,
        }
}

/// The command that helps with a library error, if any: the library's texts say
/// what to do in its own terms; the commands that do it are the CLI's to name.
fn advice(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    use shmipc::{CreateError, ListError, OpenError, RemoveError};
    let create = |e: &CreateError| match e {
        CreateError::AlreadyExists { name } => Some(format!(
            "remove it: `{rm}`",
            rm = crate::output::suggest("rm", name)
        )),
        // (Our commands list and collect /dev/shm, not a backing file's file system.)
        CreateError::TooManyObjects { store, .. } if store == "/dev/shm" => {
            Some("`shmipc ls --all` lists them, `shmipc gc` removes stale ones".to_owned())
        }
        _ => None,
    };
    let open = |e: &OpenError| match e {
        OpenError::NotFound { name } => Some(format!(
            "`{create}` creates it; `shmipc ls` lists names",
            create = crate::output::command("create", "--size SIZE", name, "")
        )),
        OpenError::PermissionDenied { name, .. } => Some(format!(
            "`{info}` shows its owner and mode",
            info = crate::output::suggest("info", name)
        )),
        OpenError::Busy { name } => Some(format!(
            "`{info}` shows who holds it",
            info = crate::output::suggest("info", name)
        )),
        _ => None,
    };
    if let Some(e) = e.downcast_ref::<CreateError>() {
        return create(e);
    }
    if let Some(e) = e.downcast_ref::<OpenError>() {
        return open(e);
    }
    if let Some(RemoveError::NotFound { .. }) = e.downcast_ref::<RemoveError>() {
        return Some("`shmipc ls --all` lists names".to_owned());
    }
    if let (true, Some(ListError::Unsupported { .. })) =
        (cfg!(windows), e.downcast_ref::<ListError>())
    {
        // Windows: no enumeration; one name can still be asked about.
        return Some("`shmipc info NAME`".to_owned());
    }
    match e.downcast_ref::<shmipc::sync::ObjectError>() {
        Some(shmipc::sync::ObjectError::Create(e)) => return create(e),
        Some(shmipc::sync::ObjectError::Open(e)) => return open(e),
        _ => {}
    }
    match e.downcast_ref::<shmipc::channel::ChannelError>() {
        Some(shmipc::channel::ChannelError::Create(e)) => create(e),
        Some(shmipc::channel::ChannelError::Open(e)) => open(e),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::shell_arg;

    #[test]
    fn shell_words_are_plain_only_where_no_shell_expands_them() {
        assert_eq!(shell_arg("news"), "news");
        assert_eq!(shell_arg("a=b"), "a=b");
        assert_eq!(shell_arg("-x"), "-x");
        // zsh's `=cmd` expansion, at the start of a word only.
        assert_eq!(shell_arg("=ls"), "'=ls'");
        assert_eq!(shell_arg(""), "''");
        assert_eq!(shell_arg("it's"), "'it'\\''s'");
        assert_eq!(shell_arg("a\nb"), "$'a\\x0ab'");
    }
}
