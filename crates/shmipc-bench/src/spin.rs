//! Busy-waiting with a deadline, so a dead or hung peer ends the run with an error
//! instead of a hang.

use std::time::{Duration, Instant};

use crate::Result;

/// How long any wait for the peer may take before the run gives up.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A spin loop's state: call [`Spinner::tick`] once per unsuccessful poll.
#[derive(Debug)]
pub struct Spinner {
    what: &'static str,
    polls: u32,
    since: Option<Instant>,
}

impl Spinner {
    /// A spinner for a wait described by `what` (used in the error message).
    #[inline]
    pub fn new(what: &'static str) -> Self {
        Spinner {
            what,
            polls: 0,
            since: None,
        }
    }

    /// One more unsuccessful poll: a pause hint, and every few thousand polls a look
    /// at the clock (the clock is not read at all on the fast path).
    #[inline]
    pub fn tick(&mut self) -> Result<()> {
        std::hint::spin_loop();
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(4096) {
            return self.check();
        }
        Ok(())
    }

    #[cold]
    fn check(&mut self) -> Result<()> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > PATIENCE {
            return Err(format!(
                "waited {PATIENCE:?} for {}: the peer process died or hung",
                self.what
            )
            .into());
        }
        Ok(())
    }
}

/// Spins until `ready()` returns true, or fails after [`PATIENCE`].
#[inline]
pub fn until(what: &'static str, mut ready: impl FnMut() -> bool) -> Result<()> {
    let mut spinner = Spinner::new(what);
    loop {
        if ready() {
            return Ok(());
        }
        spinner.tick()?;
    }
}
