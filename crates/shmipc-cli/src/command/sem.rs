//! `shmipc sem NAME create [--initial N] [--max N] [--mode OCTAL] | post | wait [--timeout DUR]`

use shmipc::sync::NamedSemaphore;

use super::object;
use crate::cli::{SemAction, SemArgs};
use crate::output::{self, Result};
use crate::units;

const KIND: &str = "semaphore";

pub fn run(args: &SemArgs) -> Result {
    let name = &args.name;
    if let SemAction::Create { initial, max, mode } = args.action {
        NamedSemaphore::create_with(name, initial, max, &object::persistent(mode))
            .map_err(|e| object::error(e, name, KIND, None))?;
        return output::line(format!(
            "created semaphore `{name}` (count {initial}, maximum {max}); it stays until `{rm}`",
            rm = crate::output::suggest("rm", name)
        ));
    }
    let sem = NamedSemaphore::open(name).map_err(|e| object::error(e, name, KIND, Some("sem")))?;
    match args.action {
        SemAction::Create { .. } => unreachable!("handled above"),
        SemAction::Post => sem
            .post()
            .map_err(|e| format!("semaphore `{name}`: {e}").into()),
        SemAction::Wait { timeout } => {
            let done = object::wait_watching(
                name,
                KIND,
                "sem",
                timeout,
                |t| sem.wait_timeout(t).is_ok(),
                || sem.is_still_named(),
            )?;
            if done {
                return Ok(());
            }
            Err(format!(
                "timed out after {} waiting on semaphore `{name}` (count 0): nobody posted; wait longer or check the poster",
                units::human_duration(timeout.unwrap_or_default())
            )
            .into())
        }
    }
}
