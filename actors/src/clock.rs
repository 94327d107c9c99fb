//! The wall clock as the actors read it.

use std::time::Duration;
use tiketi_engine::Timestamp;

/// Wall-clock time derived from tokio's monotonic clock: a wall-clock reading taken once,
/// plus the monotonic time elapsed since. Under `tokio::time::pause()` it advances exactly
/// as far as the test advances tokio's clock, so timers and timestamps agree.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_wall: Timestamp,
    base: tokio::time::Instant,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self::starting_at(Timestamp(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)))
    }

    /// A clock that reads `start` now and advances with tokio's clock.
    pub fn starting_at(start: Timestamp) -> Self {
        Self { base_wall: start, base: tokio::time::Instant::now() }
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        self.base_wall.plus(self.base.elapsed())
    }

    /// Time from now until `at` (zero if it has passed).
    pub fn until(&self, at: Timestamp) -> Duration {
        self.now().until(at)
    }
}
