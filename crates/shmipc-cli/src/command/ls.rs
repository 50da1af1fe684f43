//! `shmipc ls [--json] [--all]`

use shmipc::{Contents, Origin, Segment, SegmentInfo};

use crate::cli::LsArgs;
use crate::output::{self, Result};
use crate::report::{self, SegmentJson};
use crate::units::human_size;

pub fn run(args: &LsArgs) -> Result {
    let segments: Vec<SegmentInfo> = Segment::list()?
        .into_iter()
        .filter(|s| args.all || s.origin == Origin::Shmipc)
        .collect();
    // The OS facts were listed first (holders without us); now a look inside each.
    let contents: Vec<_> = segments.iter().map(|s| report::contents(&s.name)).collect();
    if args.json {
        let json: Vec<SegmentJson> = segments
            .iter()
            .zip(&contents)
            .map(|(s, c)| SegmentJson::new(s, c.as_ref()))
            .collect();
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
        .map(|s| output::printable(&s.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!(
        "{:<width$}  {:>10}  {:<9}  {:<7}  {:<16}  {:<7}  {:<7}  STATE",
        "NAME", "SIZE", "KIND", "BACKING", "PERSISTENCE", "ORIGIN", "HOLDERS"
    );
    for (s, c) in segments.iter().zip(&contents) {
        let holders = s
            .holders
            .as_ref()
            .map_or_else(|| "?".to_owned(), |h| h.len().to_string());
        let kind = c.as_ref().map_or("?", Contents::kind_name);
        let state = c.as_ref().and_then(report::state_words).unwrap_or_default();
        text.push('\n');
        let line = format!(
            "{:<width$}  {:>10}  {kind:<9}  {:<7}  {:<16}  {:<7}  {holders:<7}  {state}",
            output::printable(&s.name),
            human_size(s.size),
            report::backing_key(&s.backing),
            report::persistence_key(s.persistence),
            report::origin_key(s.origin),
        );
        text.push_str(line.trim_end());
    }
    output::line(text)
}
