//! Wall-clock instants as plain milliseconds, passed into the engine by its caller.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since the Unix epoch (UTC). The engine never reads a clock; callers pass
/// `now` in, which makes every decision reproducible in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Time from `self` until `later`, zero if `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    /// The UTC calendar date as `YYYYMMDD`, used in reservation numbers.
    pub fn yyyymmdd(self) -> u32 {
        let dt = ::time::OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000))
            .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH);
        let year = u32::try_from(dt.year().clamp(0, 9999)).unwrap_or(0);
        year * 10_000 + u32::from(u8::from(dt.month())) * 100 + u32::from(dt.day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_date_is_utc() {
        // 2026-01-05T23:59:59.999Z
        assert_eq!(Timestamp(1_767_657_599_999).yyyymmdd(), 20260105);
        assert_eq!(Timestamp(1_767_657_600_000).yyyymmdd(), 20260106);
    }

    #[test]
    fn until_never_goes_negative() {
        assert_eq!(Timestamp(10).until(Timestamp(5)), Duration::ZERO);
        assert_eq!(Timestamp(5).until(Timestamp(10)), Duration::from_millis(5));
    }
}
