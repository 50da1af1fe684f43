//! The command line as clap definitions: one `Args` struct per verb. What a verb
//! does lives in `command/<verb>.rs`; a new verb is a variant here plus a file there.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::units::{
    parse_count, parse_count_u32, parse_count_usize, parse_duration, parse_mode, parse_size,
};

/// The JSON keys of `info --json` and `ls --json`, for their help.
macro_rules! json_keys {
    () => {
        "\
JSON keys (stable):
  name         string
  size         integer, bytes, or null where it could not be looked at
               (another user's link to a file, not followed)
  backing      \"memory\" | \"file\" | \"unnamed\" | \"other\"
  file         string (path of the backing file) or null
  origin       \"shmipc\" | \"foreign\" (made by another program)
  persistence  \"until-last-close\" | \"until-removed\"
  mode         string, octal permission bits such as \"0600\", or null
  owner        integer, user id, or null
  holders      array of process ids holding it, or null where the OS cannot tell
  kind         \"segment\" (plain bytes) | \"mutex\" | \"semaphore\" | \"event\" |
               a channel kind (\"spsc\", \"pubsub\", \"mpmc\", \"rpc\") | \"invalid\"
               (a shmipc header this build cannot read), or null where it could
               not be opened to look (e.g. permission denied)
  state        object or null, a snapshot for sync objects and channels:
               mutex:     {\"locked\": bool, \"owner_thread\": int|null,
                           \"owner_process\": int|null, \"owner_alive\": bool|null,
                           \"consistent\": bool}
               semaphore: {\"value\": int, \"max\": int}
               event:     {\"set\": bool, \"reset\": \"manual\"|\"auto\"}
               and for channels (peers: process ids of live endpoints, or counts;
               capacity in messages, max_message in bytes):
               spsc:   {\"capacity\", \"max_message\", \"producer\": int|null,
                        \"consumer\": int|null, \"queued\": int|null}
               pubsub: {\"capacity\", \"max_message\", \"overflow\": \"overwrite\"|\"block\",
                        \"publisher\": int|null, \"subscribers\": int,
                        \"max_subscribers\": int, \"published\": int,
                        \"max_lag\": int|null (messages the slowest subscriber
                        has still to start)}
               mpmc:   {\"capacity\", \"max_message\", \"producers\": int,
                        \"consumers\": int, \"max_endpoints\": int, \"queued\": int|null}
               rpc:    {\"capacity\", \"max_message\", \"server\": int|null,
                        \"clients\": int, \"max_clients\": int, \"queued\": int|null}"
    };
}

const LONG_DEMO: &str = "\
Run the seed's example for real, as two separate OS processes (this program run
twice). Process 1 creates a 1024-byte segment (CreateFileMapping), maps it
(MapViewOfFile) and writes \"Hello from Process 1\"; it keeps holding the segment
until Process 2 has read it, because the segment dies with its last holder. Process 2
opens it read-only (OpenFileMapping with FILE_MAP_READ), maps it and prints
\"Received message from Process 1: Hello from Process 1\". Then both close their
views and handles, and nothing is left behind.";

const LONG_CREATE: &str = "\
Create a named segment, zero-filled. Fails if the name exists.

A command-line process cannot hold a segment after it exits, so by default the
segment persists (POSIX style) until `shmipc rm NAME` or a reboot; --persist says so
explicitly. With --hold the command keeps holding it (Win32 style) until Ctrl-C or
SIGTERM, and the segment goes when the last holder, this command or a program that
opened it meanwhile, lets go. A held segment removed meanwhile (`shmipc rm NAME`),
which no one can open by name any more, ends the command within about a second (exit
status 1), leaving alone anything made under the name since.";

const LONG_WRITE: &str = "\
Write into an existing segment at an offset. TEXT (or stdin, with `-`) is written
followed by a NUL byte, like the seed's strcpy_s, so that `shmipc read` shows exactly
it; --no-nul leaves the NUL out. --from FILE copies the file's bytes exactly, with no
NUL added; --from - copies stdin's. FILE is a regular file or a pipe already open
(`--from <(command)`); a directory, device, socket or named pipe (FIFO) is refused
before it is opened, since opening a device can act on it (arm a watchdog, take over a
terminal) and a FIFO with no writer would wait for ever: redirect such a one to stdin
(`--from - < FILE`) if you mean it. The data must fit between the offset and the end of the segment.
A shmipc mutex, semaphore, event or channel is refused: bytes written into it would
corrupt it for every process using it (use `lock`, `sem`, `event` or `pub`).";

const LONG_READ: &str = "\
Print a segment's contents from an offset. By default the bytes up to the first NUL
are printed as text with a newline, like the seed's reader; text that is not UTF-8 is
shown with U+FFFD replacement characters and a warning (use --hex or --raw). --hex
prints a hex dump (offsets from the start of the segment; repeated lines shown as
`*`), --raw writes the bytes exactly, NULs included, with nothing added. --len N
reads at most N bytes: where fewer are left before the end, it reads to the end.
The bytes are copied with pread, not through a mapping: a segment that another
program truncates meanwhile is reported by name (exit status 1), never a crash.";

const LONG_INFO: &str = concat!(
    "\
Show what the OS knows about a named segment and what it holds: plain bytes or a
shmipc object (mutex, semaphore, event, channel), with a snapshot of its state (a
channel's capacity, connected peers and fill). The OS facts are read without opening the segment; to see what it holds its
bytes are copied with pread (Linux; elsewhere it is opened read-only for a moment and
copied from a mapping): never locked, never waiting for another process's lock, and never
killed by a segment that another program truncates. An object or link owned by another
user is shown as `foreign`; a link in /dev/shm owned by another user is not followed.

",
    json_keys!()
);

const LONG_LS: &str = concat!(
    "\
List named segments, sorted by name: by default those made by shmipc, with --all also
those made by other programs (shm_open, Python's multiprocessing.shared_memory, …).
Stale segments (whose holders all died) are not listed: see `shmipc gc`. KIND says what
each holds (`segment` for plain bytes, `mutex`, `semaphore`, `event`, a channel kind;
`?` where it could not be opened to look) and STATE a snapshot of a sync object's state
or of a channel's peers and fill, read without taking any lock.

--json prints an array of objects with these keys:
",
    json_keys!()
);

const LONG_RM: &str = "\
Remove segments by name, including ones made by other programs (you asked). Processes
that hold a segment keep their mappings; nobody can open it by name any more. For a
file-backed segment the name goes and the file stays. All names are tried; if any
fails, the exit status is 1 and one line says which.

Removing a mutex that a `shmipc lock` (or a program) holds does not stop it: the
holder keeps its lock on the removed mutex, and the next `shmipc lock NAME` makes a
new mutex and runs beside it, as flock(1) does on a lock file deleted under it. `rm`
says so on stderr when it removes a locked mutex.";

const LONG_GC: &str = "\
Remove stale segments: those shmipc made to die with their last holder, whose holders
have all died without closing them (e.g. killed with SIGKILL), temporary objects of an
interrupted create, and half-made objects that an older shmipc's creator left when it
was killed before writing the header (yours only). Live, persistent and other
programs' or users' segments are never touched, and no lock is ever waited for.

--json prints {\"dry_run\": bool, \"segments\": [names]}.";

const LONG_LOCK: &str = "\
Run COMMAND while holding the named mutex NAME, like flock(1) with a lock file. The
mutex is created if it does not exist and then stays until `shmipc rm NAME` (a command
that ends cannot hold it). Invocations on one name run their commands one at a time,
across processes and users that may open it.

Exit status: COMMAND's exit status; 128+N if it was killed by signal N; 1 (with one
line on stderr) if the mutex could not be opened or --timeout passed; 126 if COMMAND
could not be run, 127 if it was not found.

If a previous holder died holding the mutex (killed inside its critical section),
one line on stderr says so, the command runs anyway with SHMIPC_OWNER_DIED=1 in its
environment (so that it can repair what the dead holder left half done), and if it
exits 0 the mutex is marked consistent; otherwise the next locker is told again.

Ctrl-C, SIGTERM and SIGHUP received while COMMAND runs are passed on to it as
SIGTERM; the mutex is released when it has ended. If this command is killed itself
(SIGKILL), the next locker is told that the holder died.

`shmipc rm NAME` while a command holds the mutex removes the name only: the holder
keeps its lock on the removed mutex, and the next `shmipc lock NAME` makes a new one
and runs at once, beside it (as flock(1) on a deleted lock file). Remove a mutex only
when nothing uses it.

COMMAND never outlives the lock: if `shmipc lock` dies (even by SIGKILL, which
releases the mutex), COMMAND is killed with it (Linux: PR_SET_PDEATHSIG SIGKILL;
Windows: a job object that kills it when `shmipc lock` ends), so the next locker
never runs beside it. On Linux that is COMMAND's own process only: the processes it
starts (in the background, or the commands of a shell script: `sh -c 'a; b'`) are
not covered (as with flock(1)), so let COMMAND be the process that does the work
(`sh -c 'prepare; exec work'`); nor is a set-user-id COMMAND started by another user
(the kernel drops the signal when it changes the credentials). Windows covers the
processes COMMAND starts too (they join its job). Other Unix systems have no such
signal: there COMMAND may go on after `shmipc lock` is killed.";

const LONG_SEM: &str = "\
A named counting semaphore. `create` makes it (failing if the name exists) and it stays
until `shmipc rm NAME`; `post` adds a unit (fails at the maximum); `wait` takes one,
waiting for a post if the count is 0 (at most --timeout, then exit status 1). `post` and
`wait` need an existing semaphore: create it first. The count is shown by `shmipc info
NAME`. A semaphore removed (`shmipc rm NAME`) while `wait` waits on it, even one made
again under the name since, ends the wait within about a second (exit status 1): no
post through the name can reach it any more.";

const LONG_EVENT: &str = "\
A named event (Win32 CreateEvent). `create` makes it unset (failing if the name exists),
manual-reset unless --auto, and it stays until `shmipc rm NAME`. `set` sets it: a
manual-reset event releases every waiter and stays set until `reset`; an auto-reset
event releases one waiter, which resets it (with nobody waiting it stays set until one
comes). `wait` waits until it is set (at most --timeout, then exit status 1). `set`,
`reset` and `wait` need an existing event: create it first. Its state is shown by
`shmipc info NAME`. An event removed (`shmipc rm NAME`) while `wait` waits on it, even
one made again under the name since, ends the wait within about a second (exit status
1): no set through the name can reach it any more.";

const LONG_PUB: &str = "\
Publish messages on a pubsub channel (a topic): one message per MESSAGE argument, or,
with none, one per line of stdin (the line without its \\n or \\r\\n), each published
as soon as it is read, so `tail -f log | shmipc pub TOPIC` works.

The topic is created if it does not exist, with the settings below (ignored for an
existing topic, which keeps its own): a ring of 256 messages of up to 4 KiB, 16
subscribers, lossless: a publisher waits for a live subscriber that has not kept up
(at most --timeout), so `seq 1 1000 | shmipc pub T` reaches a running `shmipc sub T`
whole and in order; a subscriber that dies is noticed within milliseconds and never
holds the publisher up. --overwrite makes an overwrite-oldest topic instead: the
publisher never waits, and a subscriber that falls a whole ring behind loses the oldest
messages and is told so. It stays until `shmipc rm TOPIC` (on Windows, which removes
a section with its last handle: while a `pub` or `sub` holds it). A `pub` reading
stdin whose topic is removed meanwhile, even one made again under the name since,
stops once no subscriber of it is left (exit status 1), within about a second even
while no line comes (Windows: at its next line): what it publishes could reach no
one.

Messages are zero-copy samples: `pub` writes each into a chunk of the topic's shared
memory and every `sub` reads it there.

Pub/sub semantics: a message reaches the subscribers attached when it is published. A
`shmipc sub` started before is attached (once `shmipc info TOPIC` counts it, it gets
every message published after); a message published with no subscriber is lost, unless
a later `shmipc sub --history N` picks it up from the ring.

A topic has one publisher at a time: if another process publishes, this command waits
for it to finish, at most --timeout. A message larger than the topic's maximum is an
error; with MESSAGE arguments nothing is published then. A command that fails leaves
nothing new behind: the arguments are checked before the topic is created, and a topic
this command created is removed again if it fails with no subscriber attached.";

const LONG_SUB: &str = "\
Print the messages published on a pubsub channel (a topic) as they arrive, one line
each, starting with the next message published (--history N: up to N earlier ones
still in the ring, which keeps the last capacity - 1: none on a --capacity 1 topic,
whose one slot the next message takes). The topic is created if it does not exist (settings as for `shmipc
pub`; it stays until `shmipc rm TOPIC`), so that `sub` may start before any `pub`.
Publishers may come and go: `sub` keeps waiting for the next one. A topic removed
(`shmipc rm TOPIC`) while `sub` reads it, even one made again under the name since,
is an error within about a second of its last publisher leaving (exit status 1):
what is published under the name then can no longer reach it. (`sub` compares the
object itself, on Linux its device and inode; macOS can tell only a name that is
gone.)

Text output: the message as UTF-8 (invalid bytes shown as U+FFFD), with \\n, \\r and
other control characters (but tab) escaped as \\n, \\r, \\xNN, and bidirectional-text
controls (U+202A-E, U+2066-9, U+200E/F, U+061C) as \\u{NNNN}, so that one message
is one line; use --json for the exact bytes. On an --overwrite topic, messages lost
because this subscriber fell a whole ring behind are reported on stderr (`shmipc: lost
N messages …`); a lossless topic loses none.

Output to a terminal is flushed after every message; to a file or a pipe it is
written in batches, flushed whenever no message is waiting, also once the publisher
has left (so a reader never waits for a line that has arrived).

--json prints one object per line: {\"seq\": int (the message's number on the topic,
from 0), \"lost\": int (messages lost just before it), \"len\": int (bytes), \"text\":
string (the message, when it is UTF-8) or null, \"hex\": string (its bytes in hex,
when it is not UTF-8) or null}.

Exit status: 0 after --count messages, or when the reader of its output has gone
(`shmipc sub T | head -1`: noticed within about a second even while no message
comes, and the subscriber's place is freed); 1 with one line on
stderr when nothing arrives for --timeout (counted afresh after each message), or on
an error. Without --count it runs until interrupted.";

const AFTER_HELP: &str = "\
Sizes and offsets: 4096, 64K, 1M, 1GiB, 1.5M, 0x1000. Suffixes are powers of 1024
(K = KiB = 1024); KB/MB are refused as ambiguous.

Names starting with `-`: put `--` before the name, and options before that:
`shmipc rm -- -x`, `shmipc create --size 4K -- -x`, `shmipc sem -- -x post`,
`shmipc lock -- -x -- COMMAND`; the same for a semaphore or event named like one of
its actions (`shmipc sem -- post wait`). The commands shmipc suggests do so.

Lifetime: a segment made by a shmipc program lives while some process holds it and
goes when the last holder closes it or dies (Win32 semantics). A command such as
`shmipc create` ends at once and cannot hold anything, so its segments stay until
`shmipc rm` (or a reboot), unless you ask it to --hold them while it runs.

Synchronization: `lock`, `sem` and `event` use shmipc's inter-process mutex, semaphore
and event (Linux only for now; elsewhere they fail with one line saying so). Objects
they create stay until `shmipc rm NAME`. Durations: 500ms, 2s, 1m, 1.5s.

Channels: `pub` and `sub` publish and print messages on a pubsub channel (a topic),
created when missing and kept until `shmipc rm TOPIC`; `ls` and `info` show the
channels of every kind with their capacity, connected peers and fill.

Exit status: 0 on success, 1 when the operation failed (or a --timeout passed), 2 when
the command line is wrong, including a value nothing can be made with (`--size 0`,
`--capacity 0`) (`lock`: the command's own status); a failure prints one
line `shmipc: <what happened and what to do>` on stderr.";

/// The verbs whose NAME comes before an action (`shmipc sem NAME post`).
const NAME_THEN_ACTION: [&str; 2] = ["sem", "event"];

/// What clap is given for the NAME of `shmipc sem -- NAME …` ([`parse`]): no
/// option, no action.
const NAME_STAND_IN: &str = "NAME";

/// Parses the command line `args` (the program's name first) with `command`
/// (built from [`Cli`]). clap takes every word after `--` for an operand, so it
/// would match no action in `shmipc sem -- -x post`, the one way to name a
/// semaphore or event `-x`, `--help` or `post` (`shmipc sem post post` takes the
/// name for the action): such a NAME is parsed as a stand-in and put back after.
/// And in `shmipc lock -- -x -- COMMAND` (a name starting with `-`, then the
/// usual `--`), clap passes the second `--` on as the command: it is dropped
/// (no program is called `--`).
pub fn parse(command: clap::Command, mut args: Vec<OsString>) -> Result<Cli, clap::Error> {
    help_over_name(&mut args);
    let escaped = take_escaped_name(&mut args);
    let mut cli = command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))?;
    match &mut cli.command {
        Command::Sem(a) => a.name = escaped.unwrap_or_else(|| a.name.clone()),
        Command::Event(a) => a.name = escaped.unwrap_or_else(|| a.name.clone()),
        Command::Lock(a) if a.command.first().is_some_and(|c| c == "--") => {
            a.command.remove(0);
        }
        _ => {}
    }
    Ok(cli)
}

/// `shmipc demo --name --help` (or `-h`) asks for help, as `--help` does
/// anywhere else, rather than for a segment called `--help`: `--name` takes
/// values that start with `-` (`--name -x`), but not these two; `--name=--help`
/// still names one. Drops that `--name` from `args`, for clap to print the help.
fn help_over_name(args: &mut Vec<OsString>) {
    if args.get(1).is_none_or(|verb| verb != "demo") {
        return;
    }
    let asks_help = |w: &[OsString]| w[0] == "--name" && (w[1] == "--help" || w[1] == "-h");
    if let Some(at) = args.windows(2).position(asks_help) {
        args.remove(at);
    }
}

/// The NAME of `shmipc sem|event -- NAME …`, replaced in `args` by
/// [`NAME_STAND_IN`] (a NAME that is not Unicode is left for clap to refuse).
fn take_escaped_name(args: &mut Vec<OsString>) -> Option<String> {
    let verb = args.get(1)?.to_str()?;
    if !NAME_THEN_ACTION.contains(&verb) || args.get(2).is_none_or(|a| a != "--") {
        return None;
    }
    let name = args.get(3)?.to_str()?.to_owned();
    args.splice(2..4, [OsString::from(NAME_STAND_IN)]);
    Some(name)
}

/// Whether `word` is an action of `verb` (`post` and `help` of `sem`), which
/// clap takes for the action where the verb expects a NAME.
pub fn is_action(verb: &str, word: &str) -> bool {
    if !NAME_THEN_ACTION.contains(&verb) {
        return false;
    }
    let mut cli = Cli::command();
    // Adds the `help` actions.
    cli.build();
    cli.find_subcommand(verb)
        .is_some_and(|v| v.find_subcommand(word).is_some())
}

/// Named shared memory from the command line: create, inspect, read, write and clean
/// up segments made by shmipc and by other programs.
#[derive(Debug, Parser)]
#[command(name = "shmipc", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the seed's example: Process 1 writes "Hello from Process 1" into a named
    /// segment, Process 2 opens it read-only and prints it
    #[command(long_about = LONG_DEMO)]
    Demo(DemoArgs),
    /// Create a named segment (kept until `shmipc rm`, or held while this runs with --hold)
    #[command(long_about = LONG_CREATE)]
    Create(CreateArgs),
    /// Write text, a file or stdin into a segment
    #[command(long_about = LONG_WRITE)]
    Write(WriteArgs),
    /// Print a segment's contents (text up to the first NUL, --hex, or --raw bytes)
    #[command(long_about = LONG_READ)]
    Read(ReadArgs),
    /// Show what the OS knows about a segment: size, backing, lifetime, mode, owner, holders
    #[command(long_about = LONG_INFO)]
    Info(InfoArgs),
    /// List segments (shmipc's; --all adds other programs')
    #[command(long_about = LONG_LS)]
    Ls(LsArgs),
    /// Remove segments by name (processes holding them keep their memory)
    #[command(long_about = LONG_RM)]
    Rm(RmArgs),
    /// Remove stale segments: shmipc segments whose holders have all died
    #[command(long_about = LONG_GC)]
    Gc(GcArgs),
    /// Run a command while holding a named mutex (created if needed), like flock(1)
    #[command(long_about = LONG_LOCK)]
    Lock(LockArgs),
    /// A named semaphore: create, post, wait
    #[command(long_about = LONG_SEM)]
    Sem(SemArgs),
    /// A named event: create, set, reset, wait
    #[command(long_about = LONG_EVENT)]
    Event(EventArgs),
    /// Publish messages (arguments or stdin lines) on a pubsub topic, created if needed
    #[command(long_about = LONG_PUB)]
    Pub(PubArgs),
    /// Print the messages published on a pubsub topic as they arrive
    #[command(long_about = LONG_SUB)]
    Sub(SubArgs),
    /// Process 1 of `shmipc demo` (run by the demo, not by hand)
    #[command(name = "demo-process1", hide = true)]
    DemoProcess1(RoleArgs),
    /// Process 2 of `shmipc demo` (run by the demo, not by hand)
    #[command(name = "demo-process2", hide = true)]
    DemoProcess2(RoleArgs),
}

impl Command {
    /// The object names on this command line (none for `ls`, `gc`, or a `demo`
    /// that makes up its own).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Command::Demo(a) => a.name.iter().map(String::as_str).collect(),
            Command::DemoProcess1(a) | Command::DemoProcess2(a) => vec![&a.name],
            Command::Create(a) => vec![&a.name],
            Command::Write(a) => vec![&a.name],
            Command::Read(a) => vec![&a.name],
            Command::Info(a) => vec![&a.name],
            Command::Rm(a) => a.names.iter().map(String::as_str).collect(),
            Command::Lock(a) => vec![&a.name],
            Command::Sem(a) => vec![&a.name],
            Command::Event(a) => vec![&a.name],
            Command::Pub(a) => vec![&a.topic],
            Command::Sub(a) => vec![&a.topic],
            Command::Ls(_) | Command::Gc(_) => Vec::new(),
        }
    }
}

/// `shmipc demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Segment name [default: MyFileMapping-PID, so that demos running at once do
    /// not collide]
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub name: Option<String>,
    /// Give up (and stop both processes) if the demo takes longer than this
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
}

/// Arguments of the demo's hidden roles.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Segment name
    pub name: String,
}

/// `shmipc create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Segment name (the POSIX shm object /NAME)
    pub name: String,
    /// Size in bytes: 4096, 64K, 1M, 1GiB… (with --file: default the file's size, and
    /// a larger size extends the file)
    #[arg(long, short, value_name = "SIZE", value_parser = parse_size, required_unless_present = "file")]
    pub size: Option<u64>,
    /// Back the segment by this file instead of system memory (the seed's hFile):
    /// the data stays in the file after the segment is removed
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Permission bits in octal (read/write bits only)
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
    /// Keep the segment until `shmipc rm` (the default for a command that exits)
    #[arg(long, conflicts_with = "hold")]
    pub persist: bool,
    /// Hold the segment while this command runs; it goes away at Ctrl-C or SIGTERM
    /// (for --file, its name goes and the file stays)
    #[arg(long)]
    pub hold: bool,
    /// Do not allocate the memory now (it is by default, so that a full /dev/shm
    /// fails here; with --file, the file's blocks): a sparse segment, for huge ones
    /// mostly never touched; on a full /dev/shm (or file system), a later `write` to
    /// it fails and a program touching it through a mapping dies of SIGBUS
    #[arg(long, conflicts_with = "reserve")]
    pub sparse: bool,
    /// Allocate all memory now (the default; kept for scripts)
    #[arg(long, hide = true)]
    pub reserve: bool,
}

/// `shmipc write`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["text", "from"])))]
#[command(override_usage = "shmipc write [OPTIONS] <NAME> <TEXT | - | --from FILE>")]
pub struct WriteArgs {
    /// Segment name
    pub name: String,
    /// Text to write, or `-` to read it from stdin
    pub text: Option<OsString>,
    /// Write the bytes of this file instead (exactly, no NUL added; `-`: stdin's);
    /// a regular file or an open pipe
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub from: Option<PathBuf>,
    /// Where to write, in bytes from the start of the segment
    #[arg(long, short, value_name = "N", default_value = "0", value_parser = parse_size)]
    pub offset: u64,
    /// Do not add a NUL byte after TEXT or stdin
    #[arg(long)]
    pub no_nul: bool,
}

/// `shmipc read`
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Segment name
    pub name: String,
    /// Where to start, in bytes from the start of the segment
    #[arg(long, short, value_name = "N", default_value = "0", value_parser = parse_size)]
    pub offset: u64,
    /// How many bytes to read at most: a range past the end stops at the end
    /// [default: to the end; 0 also means to the end]
    #[arg(long, short, value_name = "N", value_parser = parse_size)]
    pub len: Option<u64>,
    /// Print a hex dump
    #[arg(long, short = 'x', conflicts_with = "raw")]
    pub hex: bool,
    /// Write the bytes exactly as they are
    #[arg(long)]
    pub raw: bool,
}

/// `shmipc info`
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Segment name
    pub name: String,
    /// Print one JSON object (keys above)
    #[arg(long)]
    pub json: bool,
}

/// `shmipc ls`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print a JSON array (keys above)
    #[arg(long)]
    pub json: bool,
    /// Include segments made by other programs (on Linux, a last line counts the
    /// objects in /dev/shm whose names shmipc does not take, such as names with
    /// control characters, and says how to see and remove them; not in --json)
    #[arg(long, short)]
    pub all: bool,
}

/// `shmipc rm`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Segment names
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

/// `shmipc gc`
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only list what would be removed
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// `shmipc lock`
#[derive(Debug, Args)]
#[command(override_usage = "shmipc lock [--timeout DURATION] <NAME> -- <COMMAND> [ARGS]...")]
pub struct LockArgs {
    /// Mutex name (created if it does not exist; stays until `shmipc rm NAME`)
    pub name: String,
    /// Give up (exit status 1) if the mutex stays held this long [default: wait for ever]
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,
    /// The command to run while holding the mutex, and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// `shmipc sem`
#[derive(Debug, Args)]
pub struct SemArgs {
    /// Semaphore name
    pub name: String,
    /// What to do
    #[command(subcommand)]
    pub action: SemAction,
}

/// What `shmipc sem NAME` does.
#[derive(Debug, Subcommand)]
pub enum SemAction {
    /// Create the semaphore (fails if the name exists); it stays until `shmipc rm NAME`
    Create {
        /// Units available at first
        #[arg(long, value_name = "N", default_value = "0", value_parser = parse_count_u32)]
        initial: u32,
        /// Most units it may hold (`post` fails above it)
        #[arg(long, value_name = "N", default_value = "4294967295", value_parser = parse_count_u32)]
        max: u32,
        /// Permission bits in octal (read/write bits only)
        #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Add a unit, waking one waiter
    Post,
    /// Take a unit, waiting for one if there is none
    Wait {
        /// Give up (exit status 1) after this long [default: wait for ever]
        #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        timeout: Option<Duration>,
    },
}

/// `shmipc event`
#[derive(Debug, Args)]
pub struct EventArgs {
    /// Event name
    pub name: String,
    /// What to do
    #[command(subcommand)]
    pub action: EventAction,
}

/// What `shmipc event NAME` does.
#[derive(Debug, Subcommand)]
pub enum EventAction {
    /// Create the event, unset (fails if the name exists); it stays until `shmipc rm NAME`
    Create {
        /// Auto-reset: each `set` releases one waiter, which resets it [default: manual reset]
        #[arg(long)]
        auto: bool,
        /// Permission bits in octal (read/write bits only)
        #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
        mode: u32,
    },
    /// Set it: release every waiter (manual reset) or one (auto reset)
    Set,
    /// Reset it (unset)
    Reset,
    /// Wait until it is set
    Wait {
        /// Give up (exit status 1) after this long [default: wait for ever]
        #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
        timeout: Option<Duration>,
    },
}

/// How `pub` and `sub` create a topic that does not exist yet.
#[derive(Debug, Args)]
pub struct TopicOptions {
    /// Creating: messages the ring holds (rounded up to a power of two)
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_count_usize)]
    pub capacity: usize,
    /// Creating: largest message in bytes
    #[arg(long, value_name = "SIZE", default_value = "4K", value_parser = parse_size)]
    pub max_size: u64,
    /// Creating: most subscribers at a time
    #[arg(long, value_name = "N", default_value = "16", value_parser = parse_count_usize)]
    pub max_subscribers: usize,
    /// Creating: overwrite-oldest instead of lossless: the publisher never waits,
    /// and a subscriber that falls a ring behind loses the oldest messages (and is
    /// told how many)
    #[arg(long)]
    pub overwrite: bool,
    /// Creating: permission bits in octal (read/write bits only)
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
}

/// `shmipc pub`
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Topic name (a pubsub channel; created if it does not exist)
    pub topic: String,
    /// Messages to publish, one each [default: one per line of stdin]
    #[arg(value_name = "MESSAGE")]
    pub messages: Vec<OsString>,
    /// Give up (exit status 1) if another publisher holds the topic this long, or
    /// (a lossless topic) a live subscriber makes no room for this long
    #[arg(long, short = 't', value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Duration,
    #[command(flatten)]
    pub create: TopicOptions,
}

/// `shmipc sub`
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topic name (a pubsub channel; created if it does not exist)
    pub topic: String,
    /// Exit (status 0) after this many messages; 0 exits at once, creating and attaching to nothing [default: run until interrupted]
    #[arg(long, short = 'n', value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,
    /// Fail (exit status 1) when no message arrives for this long [default: wait for ever]
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: Option<Duration>,
    /// Start with up to N messages published before, if still in the ring (it keeps the last capacity - 1)
    #[arg(long, value_name = "N", default_value = "0", value_parser = parse_count_usize)]
    pub history: usize,
    /// Print one JSON object per message (keys above)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub create: TopicOptions,
}
