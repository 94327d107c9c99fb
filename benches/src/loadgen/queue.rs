//! The `queue` scenario: a queue-gated on-sale. A buyer joins the waiting room, polls its
//! status (the poll is also its heartbeat) until admitted, then holds with the admission
//! token; a conflict keeps the admission, so the hold retries as usual. Each session has a
//! buyer of its own (two sessions of one buyer would be one place in line).

use super::api::text_at;
use super::hold::{Held, hold};
use super::run::{Flow, Run, classify};
use super::stats::{Kind, Outcome};
use reqwest::Method;
use reqwest::header::HeaderValue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One buyer's session: join, wait, hold.
pub async fn session(run: Arc<Run>, n: u64, due: Instant) -> Flow {
    let Some(buyer) = run.idle.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
        // More sessions at once than buyers: counted, and the arrival is lost.
        run.stats.with(n, |r| r.error(Kind::QueueJoin, None, "no_idle_buyer"));
        return Flow::Backoff(Duration::from_millis(50));
    };
    let flow = admitted_hold(&run, n, due, buyer).await;
    run.stats.with(n, |r| r.transaction(due.elapsed()));
    run.idle.lock().unwrap_or_else(|e| e.into_inner()).push_back(buyer);
    flow
}

async fn admitted_hold(run: &Run, n: u64, due: Instant, buyer: usize) -> Flow {
    let e = &run.api.endpoints;
    let auth = Some(&run.buyers[buyer]);
    let joined = Instant::now();
    let mut reply = run.call(Kind::QueueJoin, n, due, Method::POST, run.pre.queue_join.clone(), auth, None, &[]).await;
    let token = loop {
        let Some(answer) = reply else { return Flow::Next };
        match classify(Kind::QueueJoin, &answer) {
            Outcome::Ok => {}
            Outcome::Shed => return Flow::Backoff(answer.retry_after.unwrap_or(Duration::from_millis(100))),
            _ => {
                // A queue that refuses joins because the event sold out ends the run.
                if answer.status == 409 {
                    run.probe_sold_out(n).await;
                }
                return Flow::Next;
            }
        }
        let json = answer.json();
        let status = text_at(&json, &e.queue_status_pointer).unwrap_or_default();
        if status == e.queue_admitted {
            break text_at(&json, &e.admission_token_pointer).unwrap_or_default();
        }
        if e.queue_final.contains(&status) {
            run.probe_sold_out(n).await;
            return Flow::Next;
        }
        if !run.running() {
            return Flow::Next;
        }
        run.sleep(run.config.queue.poll_interval).await;
        if !run.running() {
            return Flow::Next;
        }
        // A buyer who dropped out of line (missed heartbeats) joins again.
        let (kind, url) = if status == "not_queued" {
            (Kind::QueueJoin, run.pre.queue_join.clone())
        } else {
            (Kind::QueueStatus, run.pre.queue_status.clone())
        };
        let method = if kind == Kind::QueueJoin { Method::POST } else { Method::GET };
        reply = run.call(kind, n, Instant::now(), method, url, auth, None, &[]).await;
    };
    let waited = joined.elapsed();
    run.stats.with(n, |r| r.queue_wait.saturating_record(waited.as_micros().max(1) as u64));
    let Ok(token) = HeaderValue::from_str(&token) else { return Flow::Next };
    match hold(run, n, Instant::now(), buyer, Some(&token)).await {
        Held::Yes { .. } | Held::SoldOut => Flow::Next,
        Held::No(flow) => flow,
    }
}
