//! How a segment is shown: the stable JSON object of `info --json` / `ls --json`, and
//! the words for people.

use serde::Serialize;
use serde_json::{json, Value};
use shmipc::channel::pubsub::Overflow;
use shmipc::sync::EventReset;
use shmipc::{Backing, Contents, ObjectState, Origin, Persistence, SegmentInfo};

/// One segment as JSON. The keys are documented in `shmipc info --help`; keep them
/// stable (add keys, never rename or drop one).
#[derive(Debug, Serialize)]
pub struct SegmentJson {
    /// The segment's name.
    pub name: String,
    /// Size in bytes, or null where it could not be looked at.
    pub size: Option<u64>,
    /// `memory`, `file`, `unnamed` or `other`.
    pub backing: &'static str,
    /// The backing file's path, for `backing == "file"`.
    pub file: Option<String>,
    /// `shmipc` or `foreign`.
    pub origin: &'static str,
    /// `until-last-close` or `until-removed`.
    pub persistence: &'static str,
    /// Octal permission bits, e.g. `0600`.
    pub mode: Option<String>,
    /// Owner's user id.
    pub owner: Option<u32>,
    /// Live holders' process ids, where the OS can tell.
    pub holders: Option<Vec<u32>>,
    /// `segment`, `mutex`, `semaphore`, … (see [`Contents::kind_name`]), or null
    /// where the segment could not be opened to look.
    pub kind: Option<&'static str>,
    /// A sync object's state snapshot, or null.
    pub state: Option<Value>,
}

impl SegmentJson {
    /// The OS facts of a segment and what it holds (`None`: not known).
    pub fn new(i: &SegmentInfo, contents: Option<&Contents>) -> Self {
        Self {
            kind: contents.map(Contents::kind_name),
            state: contents.and_then(state_json),
            ..Self::from(i)
        }
    }
}

/// What the segment holds, or `None` where it cannot be opened to look (e.g. another
/// user's, permission denied). Read-only and never waits.
pub fn contents(name: &str) -> Option<Contents> {
    shmipc::inspect(name).ok()
}

/// The state of a sync object as JSON (keys in `shmipc info --help`).
pub fn state_json(c: &Contents) -> Option<Value> {
    let Contents::Object {
        state: Some(state), ..
    } = c
    else {
        return None;
    };
    Some(match *state {
        ObjectState::Mutex {
            locked,
            owner_thread,
            owner_alive,
            consistent,
        } => json!({
            "locked": locked,
            "owner_thread": owner_thread,
            "owner_process": owner_thread.and_then(process_of_thread),
            "owner_alive": owner_alive,
            "consistent": consistent,
        }),
        ObjectState::Semaphore { value, max } => json!({ "value": value, "max": max }),
        ObjectState::Event { set, reset } => json!({ "set": set, "reset": reset_key(reset) }),
        ObjectState::Spsc {
            capacity,
            max_message,
            producer,
            consumer,
            queued,
        } => json!({
            "capacity": capacity,
            "max_message": max_message,
            "producer": producer,
            "consumer": consumer,
            "queued": queued,
        }),
        ObjectState::PubSub {
            capacity,
            max_message,
            overflow,
            publisher,
            subscribers,
            max_subscribers,
            published,
            max_lag,
        } => json!({
            "capacity": capacity,
            "max_message": max_message,
            "overflow": overflow_key(overflow),
            "publisher": publisher,
            "subscribers": subscribers,
            "max_subscribers": max_subscribers,
            "published": published,
            "max_lag": max_lag,
        }),
        ObjectState::Mpmc {
            capacity,
            max_message,
            producers,
            consumers,
            max_endpoints,
            queued,
        } => json!({
            "capacity": capacity,
            "max_message": max_message,
            "producers": producers,
            "consumers": consumers,
            "max_endpoints": max_endpoints,
            "queued": queued,
        }),
        ObjectState::Rpc {
            capacity,
            max_message,
            server,
            clients,
            max_clients,
            queued,
        } => json!({
            "capacity": capacity,
            "max_message": max_message,
            "server": server,
            "clients": clients,
            "max_clients": max_clients,
            "queued": queued,
        }),
        _ => return None,
    })
}

/// The JSON word for a pubsub overflow policy.
fn overflow_key(o: Overflow) -> &'static str {
    match o {
        Overflow::Overwrite => "overwrite",
        Overflow::Block => "block",
    }
}

/// `process 42`, or `none`.
fn peer(pid: Option<u32>) -> String {
    match pid {
        None => "none".to_owned(),
        // A live endpoint whose pid means nothing here (the library says 0).
        Some(0) => "a process in another PID namespace".to_owned(),
        Some(p) => format!("process {p}"),
    }
}

/// `5 of 256 queued`, or `? of 256 queued` where unknown.
fn fill(queued: Option<u64>, capacity: u64) -> String {
    let q = queued.map_or_else(|| "?".to_owned(), |q| q.to_string());
    format!("{q} of {capacity} queued")
}

/// `N messages of up to SIZE`.
fn ring(capacity: u64, max_message: u64) -> String {
    format!(
        "{capacity} messages of up to {}",
        crate::units::human_size(max_message)
    )
}

/// The state of a sync object in a few words for people (`locked by process 42
/// (sh)`, `count 3 of 10`, `set, auto reset`).
pub fn state_words(c: &Contents) -> Option<String> {
    let Contents::Object {
        state: Some(state), ..
    } = c
    else {
        return None;
    };
    Some(match *state {
        ObjectState::Mutex {
            locked,
            owner_thread,
            owner_alive,
            consistent,
        } => {
            let mut s = if !locked {
                "unlocked".to_owned()
            } else {
                match owner_thread {
                    Some(tid) => {
                        let pid = process_of_thread(tid).unwrap_or(tid);
                        let mut who = format!("locked by process {pid}");
                        if let Some(comm) = process_name(pid) {
                            who.push_str(&format!(" ({comm})"));
                        }
                        if pid != tid {
                            who.push_str(&format!(", thread {tid}"));
                        }
                        who
                    }
                    None => "locked".to_owned(),
                }
            };
            if owner_alive == Some(false) {
                s.push_str(", which died: the next locker takes over");
            }
            if !consistent {
                s.push_str("; inconsistent (a holder died inside)");
            }
            s
        }
        ObjectState::Semaphore { value, max } => format!("count {value} of at most {max}"),
        ObjectState::Event { set, reset } => format!(
            "{}, {} reset",
            if set { "set" } else { "unset" },
            reset_key(reset)
        ),
        ObjectState::Spsc {
            capacity,
            max_message,
            producer,
            consumer,
            queued,
        } => format!(
            "producer {}, consumer {}, {}; {}",
            peer(producer),
            peer(consumer),
            fill(queued, capacity),
            ring(capacity, max_message)
        ),
        ObjectState::PubSub {
            capacity,
            max_message,
            overflow,
            publisher,
            subscribers,
            max_subscribers,
            published,
            max_lag,
        } => {
            let lag = max_lag.map_or_else(String::new, |l| format!(", slowest {l} behind"));
            format!(
                "publisher {}, {subscribers} of {max_subscribers} subscribers, {published} published{lag}; {}, {} when full",
                peer(publisher),
                ring(capacity, max_message),
                match overflow {
                    Overflow::Overwrite => "overwrite oldest",
                    Overflow::Block => "block",
                }
            )
        }
        ObjectState::Mpmc {
            capacity,
            max_message,
            producers,
            consumers,
            max_endpoints,
            queued,
        } => format!(
            "{producers} producers, {consumers} consumers (of {max_endpoints}), {}; {}",
            fill(queued, capacity),
            ring(capacity, max_message)
        ),
        ObjectState::Rpc {
            capacity,
            max_message,
            server,
            clients,
            max_clients,
            queued,
        } => format!(
            "server {}, {clients} of {max_clients} clients, {} requests; {}",
            peer(server),
            fill(queued, capacity),
            ring(capacity, max_message)
        ),
        _ => return None,
    })
}

/// The JSON word for an event's reset mode.
fn reset_key(r: EventReset) -> &'static str {
    match r {
        EventReset::Manual => "manual",
        EventReset::Auto => "auto",
    }
}

/// The process a thread belongs to (`Tgid` in `/proc/TID/status`), where the OS tells.
fn process_of_thread(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl From<&SegmentInfo> for SegmentJson {
    fn from(i: &SegmentInfo) -> Self {
        Self {
            name: i.name.clone(),
            size: i.size,
            backing: backing_key(&i.backing),
            file: match &i.backing {
                Backing::File(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            },
            origin: origin_key(i.origin),
            persistence: persistence_key(i.persistence),
            mode: i.mode.map(|m| format!("{m:04o}")),
            owner: i.owner,
            holders: i.holders.clone(),
            kind: None,
            state: None,
        }
    }
}

/// The JSON word for a backing.
pub fn backing_key(b: &Backing) -> &'static str {
    match b {
        Backing::Memory => "memory",
        Backing::File(_) => "file",
        Backing::Unnamed => "unnamed",
        _ => "other",
    }
}

/// The JSON word for an origin.
pub fn origin_key(o: Origin) -> &'static str {
    match o {
        Origin::Shmipc => "shmipc",
        Origin::Foreign => "foreign",
    }
}

/// The JSON word for a persistence.
pub fn persistence_key(p: Persistence) -> &'static str {
    match p {
        Persistence::UntilLastClose => "until-last-close",
        Persistence::UntilRemoved => "until-removed",
    }
}

/// A user's login name from `/etc/passwd`, where there is one.
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// A process's command name (`/proc/PID/comm`), where the OS tells.
pub fn process_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    // Any process may name itself anything: never a raw control character.
    Some(crate::output::printable(comm.trim_end()))
}

/// Pretty JSON text of any serializable value.
/// Bidirectional-text controls (which can only be inside strings) are written as
/// `\uXXXX` escapes: the same JSON value, never reordering a terminal's text.
pub fn json(value: &impl Serialize) -> crate::output::Result<String> {
    Ok(bidi_escaped(serde_json::to_string_pretty(value)?))
}

/// JSON `text` with its bidirectional-text controls (inside strings) written as
/// `\uXXXX`: the same value, never reordering a terminal's text.
pub fn bidi_escaped(text: String) -> String {
    if !text.chars().any(crate::output::is_bidi_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if crate::output::is_bidi_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}
