//! Holding seats, as every seat scenario does it, and the `burst` scenario (which does only
//! that): pick seats from the live map (or ask for the best available), hold them, and on a
//! conflict learn which seats were taken and try again, up to `retries` more times.

use super::api::{Api, strings_at, text_at};
use super::config::Pick;
use super::run::{Flow, Granted, Run, classify};
use super::seats::mix;
use super::stats::{Kind, Outcome};
use super::template::{SeatList, Vars};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What a hold came to.
#[derive(Debug)]
pub enum Held {
    /// Granted.
    Yes {
        /// The reservation id.
        reservation: String,
        /// The seats.
        seats: Vec<String>,
    },
    /// Not enough seats left.
    SoldOut,
    /// Refused, failed, or gave up after the retries.
    No(Flow),
}

/// One buyer's hold, with retries after conflicts. `due` is when the transaction was meant
/// to start (the first request's latency counts from it); `admission` is the queue's token.
pub async fn hold(run: &Run, n: u64, due: Instant, buyer: usize, admission: Option<&HeaderValue>) -> Held {
    let auth = &run.buyers[buyer];
    let quantity = run.config.quantity;
    let mut due = due;
    for attempt in 0..=u64::from(run.config.retries) {
        if attempt > 0 && !run.running() {
            return if run.sold_out() { Held::SoldOut } else { Held::No(Flow::Next) };
        }
        let picks = if run.picks_seats() {
            let view = run.view.as_deref().expect("picks_seats has a view");
            let rng = mix(n.wrapping_mul(64).wrapping_add(attempt), run.config.seed);
            match view.pick(run.config.pick, quantity, run.window, rng) {
                Some(picks) => Some(picks),
                None if run.probe_sold_out(n).await => return Held::SoldOut,
                None => match view.pick(run.config.pick, quantity, run.window, rng) {
                    Some(picks) => Some(picks),
                    None => return Held::No(Flow::Next),
                },
            }
        } else {
            None
        };
        let body = match (&picks, &run.view) {
            (Some(picks), Some(view)) => {
                let seats = SeatList::Indexed { ids: view.ids(), picks };
                let vars = Vars { event: &run.event, seats, quantity, buyer, ..Vars::default() };
                Api::body(&run.api.templates.hold_seats_body, &vars)
            }
            _ => run.pre.best_body.clone(),
        };
        let mut extra = Vec::with_capacity(2);
        if let Some(token) = admission {
            extra.push((&run.api.admission_header, token.clone()));
        }
        if run.config.idempotency_keys {
            // Fresh per attempt: a retry after a conflict is a new request (other seats).
            let key = format!("loadgen-{}-{}-{n}-{attempt}", run.event, run.nonce());
            extra.push((&IDEMPOTENCY_KEY, HeaderValue::from_str(&key).expect("ASCII")));
        }
        let url = run.pre.hold.clone();
        let Some(reply) = run.call(Kind::Hold, n, due, Method::POST, url, Some(auth), Some(body), &extra).await else {
            return Held::No(Flow::Next);
        };
        match classify(Kind::Hold, &reply) {
            Outcome::Ok => {
                run.conflict_streak.store(0, Ordering::Relaxed);
                let e = &run.api.endpoints;
                let json = reply.json();
                let reservation = text_at(&json, &e.reservation_id_pointer).unwrap_or_default();
                let mut seats = strings_at(&json, &e.reservation_seats_pointer);
                if let (true, Some(picks), Some(view)) = (seats.is_empty(), &picks, &run.view) {
                    seats = picks.iter().map(|&i| view.ids()[i as usize].to_string()).collect();
                }
                granted(run, n, buyer, &reservation, &seats);
                if run.view.as_ref().is_some_and(|v| v.available() < quantity as usize) {
                    run.probe_sold_out(n).await;
                }
                return Held::Yes { reservation, seats };
            }
            Outcome::Conflict => {
                run.learn_conflict(&reply, picks.as_deref());
                let streak = run.conflict_streak.fetch_add(1, Ordering::Relaxed) + 1;
                let view_empty = run.view.as_ref().is_some_and(|v| v.available() < quantity as usize);
                if (picks.is_none() || view_empty) && run.probe_sold_out(n).await {
                    return Held::SoldOut;
                }
                // Best-available conflicts in a row with no hold granted in between: what is
                // left cannot be sold in this quantity (say, single seats when buyers want
                // adjacent pairs), so the event is as sold out as it gets.
                if run.config.pick == Pick::Best && streak > 20 + 2 * run.config.concurrency() as u64 {
                    run.mark_sold_out();
                    return Held::SoldOut;
                }
            }
            Outcome::Shed => return Held::No(Flow::Backoff(reply.retry_after.unwrap_or(Duration::from_millis(100)))),
            Outcome::Status(_) | Outcome::Transport => return Held::No(Flow::Next),
        }
        due = Instant::now();
    }
    Held::No(Flow::Next)
}

/// Records a granted hold: the recorders, the progress counters, the buyers' map and the
/// ledger the consistency check reads.
fn granted(run: &Run, n: u64, buyer: usize, reservation: &str, seats: &[String]) {
    let count = if seats.is_empty() { u64::from(run.config.quantity) } else { seats.len() as u64 };
    let done = Instant::now();
    run.stats.with(n, |r| r.held(count, done));
    run.live.holds.fetch_add(1, Ordering::Relaxed);
    run.live.seats_held.fetch_add(count, Ordering::Relaxed);
    if let Some(view) = &run.view {
        for id in seats {
            view.set(id, false);
        }
    }
    let granted = Granted { buyer, reservation: reservation.to_owned(), seats: seats.to_vec() };
    run.ledger.lock().unwrap_or_else(|e| e.into_inner()).holds.push(granted);
}

/// The `burst` transaction: one buyer's hold (with its retries).
pub async fn burst(run: Arc<Run>, n: u64, due: Instant) -> Flow {
    let (buyer, _) = run.buyer(n);
    let flow = match hold(&run, n, due, buyer, None).await {
        Held::Yes { .. } | Held::SoldOut => Flow::Next,
        Held::No(flow) => flow,
    };
    run.stats.with(n, |r| r.transaction(due.elapsed()));
    flow
}
