//! `shmipc rm NAME...`

use shmipc::{Contents, Kind, ObjectState, Segment};

use crate::cli::RmArgs;
use crate::output::{self, Result};

pub fn run(args: &RmArgs) -> Result {
    let mut failures = Vec::new();
    for name in &args.names {
        let held = held_mutex(name);
        match Segment::remove(name) {
            Ok(()) => {
                output::line(format!("removed segment `{name}`"))?;
                if held {
                    output::warn(format!(
                        "mutex `{name}` was locked by a live process, which keeps its lock on the removed mutex: the next `{lock}` makes a new mutex and runs beside it (as flock(1) on a deleted lock file does)",
                        lock = output::command("lock", "", name, "-- COMMAND")
                    ));
                }
            }
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

/// Whether `name` is a mutex that a live process holds locked.
fn held_mutex(name: &str) -> bool {
    matches!(
        shmipc::inspect(name),
        Ok(Contents::Object {
            kind: Kind::Mutex,
            state: Some(ObjectState::Mutex {
                locked: true,
                owner_alive: Some(true) | None,
                ..
            }),
        })
    )
}
