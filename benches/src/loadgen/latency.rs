//! Latency percentiles: HdrHistograms of microseconds (3 significant digits, fixed memory
//! at any count, mergeable) and the percentiles a report shows.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly, in microseconds (one hour); longer ones are clamped.
pub const MAX_MICROS: u64 = 3_600_000_000;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1e3,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A histogram of microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution_are_where_expected() {
        let mut h = histogram();
        for v in 1..=1000 {
            h.record(v * 1000).unwrap(); // 1..=1000 ms
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        // Three significant digits: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(l.p50_ms, 500.0), "{l:?}");
        assert!(close(l.p95_ms, 950.0), "{l:?}");
        assert!(close(l.p99_ms, 990.0), "{l:?}");
        assert!(close(l.p999_ms, 999.0), "{l:?}");
        assert!(close(l.max_ms, 1000.0), "{l:?}");
        assert!(close(l.mean_ms, 500.5), "{l:?}");
    }

    #[test]
    fn the_tail_is_not_hidden_by_the_bulk() {
        let mut h = histogram();
        for _ in 0..990 {
            h.record(1_000).unwrap();
        }
        for _ in 0..10 {
            h.record(2_000_000).unwrap();
        }
        let l = Latency::of(&h);
        assert!((l.p50_ms - 1.0).abs() < 0.01 && (l.p99_ms - 1.0).abs() < 0.01, "{l:?}");
        assert!((l.p999_ms - 2000.0).abs() < 2.0, "{l:?}");
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        assert_eq!(Latency::of(&histogram()), Latency::default());
    }
}
