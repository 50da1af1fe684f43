//! Starting test children, shared by `common` and `chan_common`.

use std::process::{Child, Command};

/// Starts `cmd` (`label` names it in a failure). Under Wine, `CreateProcess` now and
/// then fails with `ERROR_INTERNAL_ERROR` (1359) on a loaded machine (seen in a
/// pubsub kill storm and in a race of processes starting at once); that start is
/// tried again, up to five times. Any other failure, or the fifth, fails the test.
pub fn spawn_retrying(cmd: &mut Command, label: &str) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if cfg!(windows) && e.raw_os_error() == Some(1359) && tries < 4 => {
                tries += 1;
                eprintln!("starting child {label}: {e} (Wine); trying again");
            }
            Err(e) => panic!("starting child {label}: {e}"),
        }
    }
}

/// [`spawn_retrying`] as a method, for `Command` builder chains.
pub trait SpawnRetrying {
    /// Starts the command, trying a Wine 1359 failure again (see [`spawn_retrying`]).
    fn spawn_retrying(&mut self) -> Child;
}

impl SpawnRetrying for Command {
    fn spawn_retrying(&mut self) -> Child {
        let label = format!("{:?}", self.get_program());
        spawn_retrying(self, &label)
    }
}
