//! The open-loop schedule: when each transaction is *meant* to start, whatever the earlier
//! ones are doing.
//!
//! A closed-loop client waits for an answer before it sends again, so a server that stalls
//! for a second gets fewer requests in that second and the stall shows up as one slow
//! request instead of a second's worth of slow ones ("coordinated omission"). The open loop
//! sends the `i`-th transaction at `start + i / rate` and measures its latency from that
//! intended time, so time spent waiting to be sent (behind a full connection pool, the
//! in-flight cap, or a late dispatcher) counts against the server as a real buyer would
//! feel it.

use std::time::{Duration, Instant};

/// Fixed-rate send times from a start instant.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    /// `rate` transactions per second from `start`; `rate` must be positive and finite.
    pub fn new(start: Instant, rate: f64) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "an open-loop rate must be positive, got {rate}");
        Self { start, rate }
    }

    /// When the `i`-th transaction (from 0) is meant to start. Computed from `start` each
    /// time rather than by adding periods, so rounding never drifts.
    pub fn intended(&self, i: u64) -> Instant {
        self.start + self.offset(i)
    }

    /// The `i`-th intended send time as an offset from the start.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many transactions are meant to start within `window` of the start.
    pub fn count_within(&self, window: Duration) -> u64 {
        (window.as_secs_f64() * self.rate).ceil() as u64
    }

    /// How late a transaction sent at `sent` is against its intended time (zero if early).
    pub fn lag(&self, i: u64, sent: Instant) -> Duration {
        sent.saturating_duration_since(self.intended(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_from_the_start() {
        let start = Instant::now();
        let s = Schedule::new(start, 4.0);
        assert_eq!(s.intended(0), start);
        assert_eq!(s.offset(1), Duration::from_millis(250));
        assert_eq!(s.offset(4), Duration::from_secs(1));
        assert_eq!(s.offset(10), Duration::from_millis(2500));
    }

    #[test]
    fn intended_times_do_not_drift_over_a_long_run() {
        let s = Schedule::new(Instant::now(), 3.0);
        // One third of a second is not exact in binary; a running sum would drift.
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        for i in 0..1000 {
            assert!(s.intended(i + 1) > s.intended(i));
        }
    }

    #[test]
    fn the_count_within_a_window_includes_the_first_send_at_zero() {
        let s = Schedule::new(Instant::now(), 5000.0);
        assert_eq!(s.count_within(Duration::from_secs(20)), 100_000);
        assert_eq!(s.count_within(Duration::from_millis(1)), 5);
        let sends = (0..).take_while(|&i| s.offset(i) < Duration::from_millis(1)).count();
        assert_eq!(sends, 5);
    }

    #[test]
    fn lag_is_measured_from_the_intended_time_not_the_previous_send() {
        let start = Instant::now();
        let s = Schedule::new(start, 10.0);
        // The 5th send was meant for 500 ms; sent at 800 ms it is 300 ms late, however
        // late the ones before it were.
        assert_eq!(s.lag(5, start + Duration::from_millis(800)), Duration::from_millis(300));
        assert_eq!(s.lag(5, start + Duration::from_millis(100)), Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn a_zero_rate_is_refused() {
        Schedule::new(Instant::now(), 0.0);
    }
}
