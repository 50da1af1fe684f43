//! What `lock`, `sem` and `event` share: the lifetime of the objects they create, and
//! their open errors in words that name the object and say what to do; and what
//! they, `pub` and `sub` share: telling that an object held was removed.

use shmipc::sync::{ObjectError, ObjectOptions};
use shmipc::{LayoutError, OpenError, Persistence};

use std::time::{Duration, Instant};

use super::words;
use crate::output::Error;

/// What a command holding an object under `name` tells from the object's
/// `is_still_named()` (`still_named`): `None` while the name still names it (or the
/// OS cannot tell and the name is still there); else it was removed (`shmipc rm`),
/// and the words to add to a message saying so (whether another object has the name
/// now). What `sub`, `pub` and the waits of `sem` and `event` share.
pub fn removed(still_named: Option<bool>, name: &str) -> Option<&'static str> {
    let exists = || !matches!(shmipc::Segment::info(name), Err(OpenError::NotFound { .. }));
    match still_named {
        Some(true) => None,
        Some(false) if exists() => Some(", and another object now has its name"),
        Some(false) => Some(""),
        None if exists() => None,
        None => Some(""),
    }
}

/// How often a waiting `sem` or `event` looks whether its name still names the
/// object it waits on.
const NAME_CHECK: Duration = Duration::from_secs(1);

/// Waits with `wait_for` (true: done) at most `timeout` (`None`: for ever), in
/// slices, looking between them whether the name still names the object
/// (`still_named`): one removed (`shmipc rm`) while waited on, or made again
/// under the name since, can never be posted or set through the name, and the
/// wait would go on for ever. True: done; false: timed out.
pub fn wait_watching(
    name: &str,
    kind: &str,
    verb: &str,
    timeout: Option<Duration>,
    wait_for: impl Fn(Duration) -> bool,
    still_named: impl Fn() -> Option<bool>,
) -> Result<bool, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let now = Instant::now();
        let slice = deadline.map_or(NAME_CHECK, |d| {
            d.saturating_duration_since(now).min(NAME_CHECK)
        });
        if wait_for(slice) {
            return Ok(true);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
        // Only a removal the OS can tell (`Some(false)`); where it cannot, the
        // wait goes on.
        if let Some(what) = still_named()
            .filter(|n| !n)
            .and_then(|n| removed(Some(n), name))
        {
            return Err(format!(
                "{kind} `{name}` was removed (`{rm}`) while this command waited on it{what}: nothing done through the name reaches it any more; start `{wait}` again",
                rm = crate::output::suggest("rm", name), wait = crate::output::command(verb, "", name, "wait")
            )
            .into());
        }
    }
}

/// A command that ends cannot hold what it creates: it stays until `shmipc rm`.
pub fn persistent(mode: u32) -> ObjectOptions {
    ObjectOptions::new()
        .mode(mode)
        .persistence(Persistence::UntilRemoved)
}

/// One line for a failed create or open of the `kind` called `name`; `verb` is the
/// CLI verb that creates one (`sem`, `event`), if any.
pub fn error(e: ObjectError, name: &str, kind: &str, verb: Option<&str>) -> Error {
    match e {
        ObjectError::Open(OpenError::NotFound { .. }) => match verb {
            Some(verb) => format!(
                "{kind} `{name}` does not exist: create it first with `{create}`", create = crate::output::command(verb, "", name, "create")),
            None => format!("{kind} `{name}` does not exist"),
        }
        .into(),
        ObjectError::Invalid {
            source: LayoutError::Kind { found, .. },
            ..
        } => format!(
            "`{name}` is {} {found}, not {} {kind}: use another name, or `{rm}` if it is no longer needed",
            words::article(&found),
            words::article(kind), rm = crate::output::suggest("rm", name))
        .into(),
        ObjectError::Invalid {
            source: LayoutError::NotShmipc | LayoutError::NotReady | LayoutError::TooSmall { .. },
            ..
        } => format!(
            "`{name}` is not {} {kind}: it is a plain segment (or an object whose creator died while making it); see `{info}`, use another name, or `{rm}`",
            words::article(kind), rm = crate::output::suggest("rm", name), info = crate::output::suggest("info", name))
        .into(),
        ObjectError::Invalid { source, .. } => {
            format!("`{name}` is not a usable {kind}: {source}").into()
        }
        ObjectError::InvalidParameter { what, reason, .. } => {
            crate::output::Usage(format!("{kind} `{name}`: {what} is invalid: {reason}")).into()
        }
        ObjectError::Create(e) => match words::create_failure(kind, name, &e) {
            Some(line) => line.into(),
            None => ObjectError::Create(e).into(),
        },
        ObjectError::Open(e) => match words::open_failure(kind, name, "use", &e) {
            Some(line) => line.into(),
            None => ObjectError::Open(e).into(),
        },
        e => e.into(),
    }
}
