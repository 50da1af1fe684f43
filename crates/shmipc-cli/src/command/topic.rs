//! What `pub` and `sub` share: creating a topic (a pubsub channel) with the CLI's
//! settings, refusing a name that holds something else, and open errors in words
//! that name the topic and say what to do.

use shmipc::channel::pubsub::{Options, Overflow};
use shmipc::channel::ChannelError;
use shmipc::{Contents, Kind, LayoutError, OpenError, Persistence};

use super::words;
use crate::cli::TopicOptions;
use crate::output::Error;

/// The channel options for a topic this command may create: lossless (a publisher
/// waits for a live subscriber that has not kept up; a dead one is noticed and
/// dropped) unless `--overwrite`, keeping a ring's worth of history for `sub
/// --history`, kept until `shmipc rm`. Windows removes a section with its last
/// handle, so there a topic lives while a `pub` or `sub` holds it.
pub fn options(o: &TopicOptions) -> Options {
    let persistence = if cfg!(windows) {
        Persistence::UntilLastClose
    } else {
        Persistence::UntilRemoved
    };
    let overflow = if o.overwrite {
        Overflow::Overwrite
    } else {
        Overflow::Block
    };
    Options::new()
        .capacity(o.capacity)
        .slot_size(usize::try_from(o.max_size).unwrap_or(usize::MAX))
        .max_subscribers(o.max_subscribers)
        .overflow(overflow)
        .history(o.capacity.saturating_sub(1))
        .mode(o.mode)
        .persistence(persistence)
}

/// Opens the topic with `open`, or creates it with `create` where it does not
/// exist; says which (true: created). Opening first: an existing topic keeps its
/// own settings (creating with other sizes would be refused), and two commands
/// creating it at once both end up on the same topic.
pub fn open_or_create<T>(
    open: impl Fn() -> Result<T, ChannelError>,
    create: impl Fn() -> Result<T, ChannelError>,
) -> Result<(T, bool), ChannelError> {
    let mut last = None;
    for _ in 0..3 {
        match open() {
            Err(ChannelError::Open(OpenError::NotFound { .. })) => {}
            r => return r.map(|t| (t, false)),
        }
        match create() {
            Ok(t) => return Ok((t, true)),
            // Made by someone else meanwhile (with other settings), or not creatable:
            // look again.
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("the loop ran"))
}

/// Refuses at once a name that holds another kind of object (opening would say so
/// too, but a plain segment would first be waited on as a channel being created).
pub fn check_kind(name: &str) -> Result<(), Error> {
    match shmipc::inspect(name) {
        Ok(Contents::Object {
            kind: Kind::PubSub, ..
        })
        | Ok(Contents::Plain)
        | Err(_) => Ok(()),
        Ok(Contents::Object { kind, .. }) => Err(not_a_topic(name, kind.as_str())),
        Ok(Contents::Invalid(e)) => Err(format!(
            "`{name}` is not a usable pubsub topic: {e}; see `{info}`, or `{rm}` if it is no longer needed", rm = crate::output::suggest("rm", name), info = crate::output::suggest("info", name))
        .into()),
        Ok(_) => Ok(()),
    }
}

fn not_a_topic(name: &str, found: &str) -> Error {
    let article = words::article(found);
    format!(
        "`{name}` is {article} {found}, not a pubsub topic: use another name, or `{rm}` if it is no longer needed", rm = crate::output::suggest("rm", name))
    .into()
}

/// One line for a failed create or open of topic `name`.
pub fn error(e: ChannelError, name: &str) -> Error {
    match e {
        ChannelError::Layout {
            source: LayoutError::Kind { found, .. },
            ..
        } => not_a_topic(name, &found),
        ChannelError::Layout {
            source: LayoutError::NotShmipc | LayoutError::NotReady | LayoutError::TooSmall { .. },
            ..
        } => format!(
            "`{name}` is not a pubsub topic: it is a plain segment (or an object whose creator died while making it); see `{info}`, use another name, or `{rm}`", rm = crate::output::suggest("rm", name), info = crate::output::suggest("info", name))
        .into(),
        ChannelError::Layout { source, .. } => {
            format!("`{name}` is not a usable pubsub topic: {source}").into()
        }
        ChannelError::Full { max, .. } => format!(
            "topic `{name}` has its {max} subscribers connected, the most it takes: stop one, or recreate the topic with a larger --max-subscribers (`{rm}` first)", rm = crate::output::suggest("rm", name))
        .into(),
        ChannelError::Open(OpenError::NotFound { .. }) => {
            format!("topic `{name}` does not exist").into()
        }
        // In the command line's words: the option, not the library's setting.
        ChannelError::InvalidParameter {
            what,
            value,
            reason,
            ..
        } => {
            let option = match what {
                "capacity" => "--capacity",
                "slot size" => "--max-size",
                "max subscribers" => "--max-subscribers",
                other => other,
            };
            crate::output::Usage(format!(
                "topic `{name}`: {option} {value} is invalid: {reason}"
            ))
            .into()
        }
        ChannelError::Create(e) => match words::create_failure("topic", name, &e) {
            Some(line) => line.into(),
            None => ChannelError::Create(e).into(),
        },
        ChannelError::Open(e) => match words::open_failure("topic", name, "use", &e) {
            Some(line) => line.into(),
            None => ChannelError::Open(e).into(),
        },
        e => e.into(),
    }
}
