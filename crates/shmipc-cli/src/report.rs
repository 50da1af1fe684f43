//! How a segment is shown: the stable JSON object of `info --json` / `ls --json`, and
//! the words for people.

use serde::Serialize;
use shmipc::{Backing, Origin, Persistence, SegmentInfo};

/// One segment as JSON. The keys are documented in `shmipc info --help`; keep them
/// stable (add keys, never rename or drop one).
#[derive(Debug, Serialize)]
pub struct SegmentJson {
    /// The segment's name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
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
    Some(comm.trim_end().to_owned())
}

/// Pretty JSON text of any serializable value.
pub fn json(value: &impl Serialize) -> crate::output::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}
