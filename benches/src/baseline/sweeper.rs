//! The expiry sweeper: every interval, release the seats of holds whose time is up, in
//! batches so that one statement never locks an unbounded number of rows.

use super::SeatStore;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Holds expired per statement.
const BATCH: i64 = 1_000;

/// Runs until the task is aborted.
pub(super) async fn run(store: SeatStore, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match store.expire_due(BATCH).await {
                Ok(expired) if expired == BATCH => continue,
                Ok(0) => break,
                Ok(expired) => {
                    tracing::debug!(expired, "holds expired");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiring holds failed; retrying next tick");
                    break;
                }
            }
        }
    }
}
