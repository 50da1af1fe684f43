//! [`Deadline`]: when a wait gives up. One type for every blocking call of the
//! library (locks, semaphores, events, channel sends and receives), instead of
//! `Option<Option<Instant>>` (whose two `None`s mean opposite things).

use std::time::{Duration, Instant};

/// When a wait gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Do not wait at all: look once (`try_*`).
    Now,
    /// Wait until this instant (`*_timeout`).
    At(Instant),
    /// Wait as long as it takes (the blocking forms).
    Never,
}

impl Deadline {
    /// `timeout` from now; a timeout too long to represent waits for ever, as std does.
    pub(crate) fn after(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Never, Self::At)
    }

    /// `Some(t)`: until `t`; `None`: for ever.
    pub(crate) fn from_instant(at: Option<Instant>) -> Self {
        at.map_or(Self::Never, Self::At)
    }

    /// Whether it has passed ([`Deadline::Now`] always has).
    pub(crate) fn passed(self) -> bool {
        match self {
            Self::Now => true,
            Self::At(t) => Instant::now() >= t,
            Self::Never => false,
        }
    }

    /// The instant to wait until, `None` for ever ([`Deadline::Now`]: now).
    pub(crate) fn instant(self) -> Option<Instant> {
        match self {
            Self::Now => Some(Instant::now()),
            Self::At(t) => Some(t),
            Self::Never => None,
        }
    }

    /// What is left of it: `None` for ever; zero once passed.
    pub(crate) fn left(self) -> Option<Duration> {
        self.instant()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// The earlier of this deadline and `slice` from now: the end of one sleep
    /// slice of a waiter that re-checks something every `slice`.
    pub(crate) fn capped(self, slice: Duration) -> Self {
        let end = Instant::now() + slice;
        match self {
            Self::Now => Self::Now,
            Self::At(t) => Self::At(t.min(end)),
            Self::Never => Self::At(end),
        }
    }
}

impl From<Option<Instant>> for Deadline {
    /// `None`: for ever.
    fn from(at: Option<Instant>) -> Self {
        Self::from_instant(at)
    }
}

impl From<Instant> for Deadline {
    fn from(at: Instant) -> Self {
        Self::At(at)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert!(Deadline::Now.passed());
        assert!(!Deadline::Never.passed());
        assert_eq!(Deadline::Never.left(), None);
        assert_eq!(Deadline::Now.left(), Some(Duration::ZERO));
        assert_eq!(Deadline::after(Duration::MAX), Deadline::Never);
        let d = Deadline::after(Duration::from_secs(3600));
        assert!(!d.passed() && d.left().unwrap() > Duration::from_secs(3000));
        assert!(d.capped(Duration::from_millis(1)).left().unwrap() <= Duration::from_millis(1));
        assert!(matches!(
            Deadline::Never.capped(Duration::ZERO),
            Deadline::At(_)
        ));
        assert_eq!(Deadline::from(None), Deadline::Never);
    }
}
