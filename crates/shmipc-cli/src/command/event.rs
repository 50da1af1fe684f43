//! `shmipc event NAME create [--auto] [--mode OCTAL] | set | reset | wait [--timeout DUR]`

use shmipc::sync::{EventReset, NamedEvent};

use super::object;
use crate::cli::{EventAction, EventArgs};
use crate::output::{self, Result};
use crate::units;

const KIND: &str = "event";

pub fn run(args: &EventArgs) -> Result {
    let name = &args.name;
    if let EventAction::Create { auto, mode } = args.action {
        let (reset, words) = if auto {
            (EventReset::Auto, "auto-reset")
        } else {
            (EventReset::Manual, "manual-reset")
        };
        NamedEvent::create_with(name, reset, false, &object::persistent(mode))
            .map_err(|e| object::error(e, name, KIND, None))?;
        return output::line(format!(
            "created {words} event `{name}` (unset); it stays until `{rm}`",
            rm = crate::output::suggest("rm", name)
        ));
    }
    let event = NamedEvent::open(name).map_err(|e| object::error(e, name, KIND, Some("event")))?;
    match args.action {
        EventAction::Create { .. } => unreachable!("handled above"),
        EventAction::Set => event.set(),
        EventAction::Reset => event.reset(),
        EventAction::Wait { timeout } => {
            let done = object::wait_watching(
                name,
                KIND,
                "event",
                timeout,
                |t| event.wait_timeout(t).is_ok(),
                || event.is_still_named(),
            )?;
            if !done {
                return Err(format!(
                    "timed out after {} waiting for event `{name}` to be set: wait longer or check the setter",
                    units::human_duration(timeout.unwrap_or_default())
                )
                .into());
            }
        }
    }
    Ok(())
}
