//! `shmipc ls [--json] [--all]`

use shmipc::{Origin, Segment, SegmentInfo};

use crate::cli::LsArgs;
use crate::output::{self, Result};
use crate::report::{self, SegmentJson};
use crate::units::human_size;

pub fn run(args: &LsArgs) -> Result {
    let segments: Vec<SegmentInfo> = Segment::list()?
        .into_iter()
        .filter(|s| args.all || s.origin == Origin::Shmipc)
        .collect();
    if args.json {
        let json: Vec<SegmentJson> = segments.iter().map(SegmentJson::from).collect();
        return output::line(report::json(&json)?);
    }
    if segments.is_empty() {
        return output::line(if args.all {
            "no segments"
        } else {
            "no shmipc segments (--all also lists other programs' segments)"
        });
    }
    let width = segments
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!(
        "{:<width$}  {:>10}  {:<7}  {:<16}  {:<7}  HOLDERS",
        "NAME", "SIZE", "BACKING", "PERSISTENCE", "ORIGIN"
    );
    for s in &segments {
        let holders = s
            .holders
            .as_ref()
            .map_or_else(|| "?".to_owned(), |h| h.len().to_string());
        text.push('\n');
        text.push_str(&format!(
            "{:<width$}  {:>10}  {:<7}  {:<16}  {:<7}  {holders}",
            s.name,
            human_size(s.size),
            report::backing_key(&s.backing),
            report::persistence_key(s.persistence),
            report::origin_key(s.origin),
        ));
    }
    output::line(text)
}
