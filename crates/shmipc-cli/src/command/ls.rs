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
    // `--all`: the objects the list cannot show, in a last line (not in JSON).
    let note = if args.all { unnamed_note() } else { None };
    if segments.is_empty() {
        let none = if args.all {
            "no segments"
        } else {
            "no shmipc segments (--all also lists other programs' segments)"
        };
        return output::line(match note {
            Some(note) => format!("{none}\n{note}"),
            None => none.to_owned(),
        });
    }
    // Names as a terminal shows them: quoted where blanks would hide them,
    // aligned by the cells they take (a wide character takes two).
    let names: Vec<String> = segments
        .iter()
        .map(|s| output::table_name(&s.name))
        .collect();
    let width = names
        .iter()
        .map(|n| output::display_width(n))
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!(
        "{}  {:>10}  {:<9}  {:<7}  {:<16}  {:<7}  {:<7}  STATE",
        output::pad("NAME", width),
        "SIZE",
        "KIND",
        "BACKING",
        "PERSISTENCE",
        "ORIGIN",
        "HOLDERS"
    );
    for ((s, c), name) in segments.iter().zip(&contents).zip(&names) {
        let holders = s
            .holders
            .as_ref()
            .map_or_else(|| "?".to_owned(), |h| h.len().to_string());
        let kind = c.as_ref().map_or("?", Contents::kind_name);
        let state = c.as_ref().and_then(report::state_words).unwrap_or_default();
        text.push('\n');
        let line = format!(
            "{}  {:>10}  {kind:<9}  {:<7}  {:<16}  {:<7}  {holders:<7}  {state}",
            output::pad(name, width),
            s.size.map_or_else(|| "?".to_owned(), human_size),
            report::backing_key(&s.backing),
            report::persistence_key(s.persistence),
            report::origin_key(s.origin),
        );
        text.push_str(line.trim_end());
    }
    if let Some(note) = note {
        text.push('\n');
        text.push_str(&note);
    }
    output::line(text)
}

/// `--all` on Linux: how many objects in /dev/shm have names that shmipc does not
/// take (control characters, a `\\`, bytes that are not UTF-8: another program's,
/// or a hostile user's), which the list cannot show and `rm` cannot name, so that
/// the space they hold is not a mystery; `None` if there are none.
fn unnamed_note() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let dir = std::fs::read_dir("/dev/shm").ok()?;
        let n = dir
            .filter_map(std::result::Result::ok)
            .filter(|e| match e.file_name().to_str() {
                None => true,
                Some(name) => matches!(
                    shmipc::Name::new(name),
                    Err(shmipc::NameError::BadChar { .. })
                ),
            })
            .count();
        (n > 0).then(|| {
            format!(
                "({n} more object{s} in /dev/shm ha{ve} a name shmipc does not take: a control \
                 character, a `\\` or bytes that are not UTF-8; see {them} with `ls -b /dev/shm`, \
                 and remove {them} with the system's `rm`)",
                s = if n == 1 { "" } else { "s" },
                ve = if n == 1 { "s" } else { "ve" },
                them = if n == 1 { "it" } else { "them" },
            )
        })
    }
    #[cfg(not(target_os = "linux"))]
    None
}
