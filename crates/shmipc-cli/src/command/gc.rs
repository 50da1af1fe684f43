//! `shmipc gc [--dry-run] [--json]`

use serde::Serialize;
use shmipc::Segment;

use crate::cli::GcArgs;
use crate::output::{self, Result};
use crate::report;

/// `gc --json` output. Keys are stable.
#[derive(Debug, Serialize)]
struct GcJson<'a> {
    dry_run: bool,
    segments: &'a [String],
}

pub fn run(args: &GcArgs) -> Result {
    let names = Segment::collect_garbage(args.dry_run)?;
    if args.json {
        return output::line(report::json(&GcJson {
            dry_run: args.dry_run,
            segments: &names,
        })?);
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut lines: Vec<String> = names
        .iter()
        .map(|n| format!("{verb} stale segment `{n}`"))
        .collect();
    lines.push(match names.len() {
        0 => "no stale segments".to_owned(),
        1 => format!("{verb} 1 stale segment"),
        n => format!("{verb} {n} stale segments"),
    });
    output::line(lines.join("\n"))
}
