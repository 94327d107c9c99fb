//! The `browse` scenario: anonymous reads of the seat map, one event and the event list, in
//! the configured proportions. Bodies are read and dropped, not parsed: the cost measured is
//! the server's.

use super::run::{Flow, Run, classify};
use super::seats::mix;
use super::stats::{Kind, Outcome};
use reqwest::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One read.
pub async fn browse(run: Arc<Run>, n: u64, due: Instant) -> Flow {
    let (kind, url) = match which(run.config.browse_mix, mix(n, run.config.seed)) {
        0 => (Kind::SeatMap, run.pre.seats.clone()),
        1 => (Kind::Event, run.pre.event.clone()),
        _ => (Kind::EventList, run.pre.events.clone()),
    };
    let reply = run.call(kind, n, due, Method::GET, url, None, None, &[]).await;
    run.stats.with(n, |r| r.transaction(due.elapsed()));
    match reply {
        Some(reply) if classify(kind, &reply) == Outcome::Shed => {
            Flow::Backoff(reply.retry_after.unwrap_or(Duration::from_millis(100)))
        }
        _ => Flow::Next,
    }
}

/// Which of the weighted reads `rng` selects.
fn which(weights: [u32; 3], rng: u64) -> usize {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut r = rng % total.max(1);
    for (i, &w) in weights.iter().enumerate() {
        if r < u64::from(w) {
            return i;
        }
        r -= u64::from(w);
    }
    weights.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_the_weights() {
        let mut counts = [0; 3];
        for n in 0..4000 {
            counts[which([2, 1, 1], mix(n, 3))] += 1;
        }
        assert!((1800..2200).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[1]) && (800..1200).contains(&counts[2]), "{counts:?}");
        assert_eq!(which([0, 0, 5], 17), 2);
    }
}
