//! `shmipc info NAME [--json]`

use shmipc::{Backing, Contents, Origin, Persistence, Segment, SegmentInfo};

use crate::cli::InfoArgs;
use crate::output::{self, Result};
use crate::report::{self, SegmentJson};
use crate::units;

pub fn run(args: &InfoArgs) -> Result {
    // The OS facts first (holders without us), then a look inside.
    let info = Segment::info(&args.name)?;
    let contents = report::contents(&args.name);
    if args.json {
        return output::line(report::json(&SegmentJson::new(&info, contents.as_ref()))?);
    }
    output::line(human(&info, contents.as_ref()))
}

/// The `key  value` lines for people.
fn human(i: &SegmentInfo, contents: Option<&Contents>) -> String {
    let name = &i.name;
    let backing = match &i.backing {
        Backing::Memory => "system memory".to_owned(),
        // The target of a link in /dev/shm, which anyone may have made.
        Backing::File(path) => format!("file {}", output::printable(&path.to_string_lossy())),
        Backing::Unnamed => "unnamed".to_owned(),
        _ => "other".to_owned(),
    };
    let persistence = match (i.persistence, &i.backing) {
        (Persistence::UntilLastClose, _) => "until its last holder closes it or dies".to_owned(),
        (Persistence::UntilRemoved, Backing::File(_)) => {
            format!(
                "until removed (`{rm}`); the file stays after that",
                rm = crate::output::suggest("rm", name)
            )
        }
        (Persistence::UntilRemoved, _) => format!(
            "until removed (`{rm}`)",
            rm = crate::output::suggest("rm", name)
        ),
    };
    let origin = match i.origin {
        Origin::Shmipc => "shmipc",
        Origin::Foreign => "another program (shmipc removes it only when asked)",
    };
    let mode = i
        .mode
        .map_or_else(|| "unknown".to_owned(), |m| format!("{m:04o}"));
    let owner = match i.owner {
        Some(uid) => match report::user_name(uid) {
            Some(user) => format!("{uid} ({user})"),
            None => uid.to_string(),
        },
        None => "unknown".to_owned(),
    };
    let holders = match &i.holders {
        // Linux tells, unless the object could not be looked at (another user's
        // link, not followed; no /proc/locks).
        None if cfg!(target_os = "linux") => "unknown (it could not be looked at)".to_owned(),
        None => "unknown on this OS".to_owned(),
        Some(pids) if pids.is_empty() => "none".to_owned(),
        Some(pids) => pids
            .iter()
            .map(|&pid| match report::process_name(pid) {
                Some(comm) => format!("{pid} ({comm})"),
                None => pid.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let kind = match contents {
        None => "unknown (it could not be opened to look)".to_owned(),
        Some(Contents::Plain) => "segment (plain bytes)".to_owned(),
        Some(Contents::Invalid(e)) => format!("invalid shmipc object: {e}"),
        Some(c) => c.kind_name().to_owned(),
    };
    let mut lines = vec![
        ("name", output::table_name(name)),
        ("kind", kind),
        (
            "size",
            i.size.map_or_else(
                || "unknown (it could not be looked at)".to_owned(),
                units::bytes,
            ),
        ),
        ("backing", backing),
        ("persistence", persistence),
        ("origin", origin.to_owned()),
        ("mode", mode),
        ("owner", owner),
        ("holders", holders),
    ];
    if let Some(state) = contents.and_then(report::state_words) {
        lines.push(("state", state));
    }
    lines
        .iter()
        .map(|(k, v)| format!("{k:<12} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
