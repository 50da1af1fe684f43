//! `shmipc pub TOPIC [MESSAGE...] [--timeout DUR] [creation options]`

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::time::{Duration, Instant};

use shmipc::channel::pubsub::Publisher;
use shmipc::channel::{ChannelError, SendError};

use super::topic;
use crate::cli::PubArgs;
use crate::output::Result;
use crate::units;

pub fn run(args: &PubArgs) -> Result {
    let name = &args.topic;
    topic::check_kind(name)?;
    // Everything that can be checked is checked before anything is created: a
    // failed command leaves nothing new behind.
    let options = topic::options(&args.create);
    options.validate(name).map_err(|e| topic::error(e, name))?;
    let messages = args
        .messages
        .iter()
        .map(|m| os_bytes(m))
        .collect::<Result<Vec<_>>>()?;
    if shmipc::inspect(name).is_err() {
        // A topic this command would create: the messages must fit it.
        let creatable = usize::try_from(args.create.max_size).unwrap_or(usize::MAX);
        check_sizes(name, &messages, creatable)?;
    }
    let deadline = Instant::now() + args.timeout;
    let (mut publisher, created) = attach(args, deadline)?;
    let r = publish(args, &mut publisher, &messages);
    if r.is_err() && created && publisher.subscribers() == 0 {
        // Made by this command, which failed, and nobody listens: take it away.
        drop(publisher);
        let _ = shmipc::Segment::remove(name);
    }
    r
}

fn publish(args: &PubArgs, publisher: &mut Publisher, messages: &[Vec<u8>]) -> Result {
    let name = &args.topic;
    let max = publisher.slot_size();
    if !messages.is_empty() {
        // Every message checked before the first is published: all or nothing.
        check_sizes(name, messages, max)?;
        for (sent, m) in (0u64..).zip(messages) {
            send(publisher, name, m, args.timeout, sent)?;
        }
        return Ok(());
    }
    let mut stdin = stdin::lines();
    let mut line = Vec::new();
    let mut sent = 0u64;
    // A line is read up to the largest message and its \r\n: a longer one (say
    // `head -c 100G /dev/zero`) is refused once that much has been read, never held
    // in memory whole.
    let limit = u64::try_from(max).map_or(u64::MAX, |m| m.saturating_add(2));
    let mut next_check = Instant::now();
    loop {
        line.clear();
        // Bytes of the line read so far count towards `limit` across idle seconds.
        let n = loop {
            let left = limit.saturating_sub(u64::try_from(line.len()).unwrap_or(u64::MAX));
            match (&mut stdin).take(left).read_until(b'\n', &mut line) {
                Ok(_) => break line.len(),
                // Stdin idle for a while: a topic removed meanwhile is noticed
                // now, not at the next line, which may never come.
                Err(e) if stdin::is_idle(&e) => {
                    if publisher.subscribers() == 0 {
                        check_named(publisher, name, sent)?;
                    }
                }
                Err(e) => return Err(format!("cannot read stdin: {e}").into()),
            }
        };
        if n == 0 {
            return Ok(());
        }
        let cut = line.last() != Some(&b'\n') && u64::try_from(n).is_ok_and(|n| n == limit);
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if cut || line.len() > max {
            let size = if cut {
                format!("at least {}", count_bytes(line.len()))
            } else {
                count_bytes(line.len())
            };
            return Err(too_large(
                name,
                &format!("line {} of stdin", sent + 1),
                &size,
                max,
                sent,
            ));
        }
        // Subscribers of a removed topic still read it; with none left, what is
        // published reaches no one, while later subs open the name's new topic.
        if publisher.subscribers() == 0 && Instant::now() >= next_check {
            check_named(publisher, name, sent)?;
            next_check = Instant::now() + NAME_CHECK;
        }
        send(publisher, name, &line, args.timeout, sent)?;
        sent += 1;
    }
}

/// How often a `pub` reading stdin with no subscriber looks whether its topic's
/// name still names the topic it publishes on, between lines or while stdin is
/// idle.
const NAME_CHECK: Duration = Duration::from_secs(1);

/// Stdin as `pub` reads it: buffered, and (Unix) a read that waits longer than
/// [`NAME_CHECK`] for data fails with an error [`stdin::is_idle`] tells, so that
/// the loop can look whether its topic was removed and read on. Only a read of
/// the buffer's next fill waits (one `poll` per fill, not per line, while data
/// flows); a regular file is always readable.
mod stdin {
    use std::io::{self, BufReader, Read};

    /// Stdin, read in fills of this many bytes.
    const FILL: usize = 64 * 1024;

    /// What an idle read fails with.
    #[derive(Debug)]
    #[cfg_attr(not(unix), allow(dead_code))]
    struct Idle;

    impl std::fmt::Display for Idle {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "no data on stdin for {:?}", super::NAME_CHECK)
        }
    }

    impl std::error::Error for Idle {}

    /// Whether `e` is an idle read's error (and not the OS's own `ETIMEDOUT`).
    pub fn is_idle(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<Idle>())
    }

    /// Stdin, buffered, its reads waiting at most [`super::NAME_CHECK`].
    #[cfg(unix)]
    pub fn lines() -> BufReader<impl Read> {
        BufReader::with_capacity(FILL, Watched)
    }

    /// Elsewhere (no `poll` on a Windows console or pipe handle) a read waits
    /// for data for as long as it takes: a removed topic is noticed at the next
    /// line.
    #[cfg(not(unix))]
    pub fn lines() -> BufReader<impl Read> {
        BufReader::with_capacity(FILL, io::stdin())
    }

    /// The stdin descriptor, read directly (std's own buffer is never used).
    #[cfg(unix)]
    struct Watched;

    #[cfg(unix)]
    impl Read for Watched {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            use std::os::fd::AsFd;

            let stdin = io::stdin();
            let fd = stdin.as_fd();
            let wait = Timespec {
                tv_sec: super::NAME_CHECK.as_secs().try_into().unwrap_or(1),
                tv_nsec: 0,
            };
            loop {
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                match poll(&mut fds, Some(&wait)) {
                    // Readable, at its end, or in error: the read says which.
                    Ok(n) if n > 0 => {}
                    Ok(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, Idle)),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                loop {
                    match rustix::io::read(fd, &mut *buf) {
                        Ok(n) => return Ok(n),
                        Err(rustix::io::Errno::INTR) => continue,
                        // A non-blocking stdin shared with another reader, who took
                        // what poll saw: wait again.
                        Err(rustix::io::Errno::AGAIN) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}

/// An error when the name no longer names the topic this `pub` publishes on (see
/// `sub`'s check: the object itself is compared).
fn check_named(publisher: &Publisher, name: &str, sent: u64) -> Result {
    let Some(what) = super::object::removed(publisher.is_still_named(), name) else {
        return Ok(());
    };
    let before = match sent {
        1 => " (1 line was published before)".to_owned(),
        n if n > 1 => format!(" ({n} lines were published before)"),
        _ => String::new(),
    };
    Err(format!(
        "topic `{name}` was removed (`{rm}`) while this pub published on it{what}{before}: nothing it publishes reaches a subscriber any more; start `{publish}` again",
        rm = crate::output::suggest("rm", name), publish = crate::output::suggest("pub", name)
    )
    .into())
}

fn check_sizes(name: &str, messages: &[Vec<u8>], max: usize) -> Result {
    for (i, m) in messages.iter().enumerate() {
        if m.len() > max {
            return Err(too_large(
                name,
                &format!("message {}", i + 1),
                &count_bytes(m.len()),
                max,
                0,
            ));
        }
    }
    Ok(())
}

/// Attaches as the topic's publisher (creating it if needed), waiting until
/// `deadline` for another live publisher to finish. True if this command created
/// the topic.
fn attach(args: &PubArgs, deadline: Instant) -> Result<(Publisher, bool)> {
    let name = &args.topic;
    let options = topic::options(&args.create);
    let mut pause = Duration::from_millis(1);
    loop {
        let r = topic::open_or_create(|| Publisher::open(name), || options.create_publisher(name));
        match r {
            Ok(p) => return Ok(p),
            Err(ChannelError::Busy { pid, .. }) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(format!(
                        "topic `{name}` has another publisher (process {pid}) and it did not finish within {}: a topic has one publisher at a time; wait longer (--timeout) or stop it",
                        units::human_duration(args.timeout)
                    )
                    .into());
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(topic::error(e, name)),
        }
    }
}

/// Publishes `msg`, the message after the `sent` this command published: an error
/// says how many went out before it, so that a caller knows what to publish again.
fn send(publisher: &mut Publisher, name: &str, msg: &[u8], timeout: Duration, sent: u64) -> Result {
    let before = published_before(sent);
    match publisher.send_timeout(msg, timeout) {
        Ok(()) => Ok(()),
        Err(SendError::Timeout(())) => Err(format!(
            "timed out after {} publishing on topic `{name}`{before}: it is lossless and a live subscriber has not kept up (it reads too slowly, or is stopped); wait longer (--timeout), check its subscribers (`{info}`), or use a topic created with --overwrite",
            units::human_duration(timeout), info = crate::output::suggest("info", name))
        .into()),
        Err(e) => Err(format!("topic `{name}`{before}: {e}").into()),
    }
}

/// What an error part-way says of the `sent` messages before it.
fn published_before(sent: u64) -> String {
    match sent {
        0 => String::new(),
        1 => " (the 1 message before it was published)".to_owned(),
        n => format!(" (the {n} messages before it were published)"),
    }
}

fn too_large(name: &str, what: &str, size: &str, max: usize, sent: u64) -> crate::output::Error {
    let before = published_before(sent);
    format!(
        "{what} is {size}, larger than the {max}-byte maximum message of topic `{name}`{before}: send less, or recreate the topic with a larger --max-size (`{rm}` first)", rm = crate::output::suggest("rm", name))
    .into()
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
        Err("a message is not valid Unicode: pass it on stdin instead".into())
    }
}

/// `n` bytes, as a count ("1 byte", "70000 bytes").
fn count_bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}
