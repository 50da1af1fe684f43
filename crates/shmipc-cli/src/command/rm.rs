//! `shmipc rm NAME...`

use shmipc::Segment;

use crate::cli::RmArgs;
use crate::output::{self, Result};

pub fn run(args: &RmArgs) -> Result {
    let mut failures = Vec::new();
    for name in &args.names {
        match Segment::remove(name) {
            Ok(()) => output::line(format!("removed segment `{name}`"))?,
            Err(e) => failures.push(e.to_string()),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).into()),
        n => Err(format!(
            "{n} of {} segments were not removed: {}",
            args.names.len(),
            failures.join("; ")
        )
        .into()),
    }
}
