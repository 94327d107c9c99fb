//! The `purchase` scenario: hold, prepare the payment (the server fixes the order and its
//! amount), confirm it with a made-up payment key (Tiketi's mock provider accepts any), as a
//! buyer paying at once would.

use super::api::{Api, Reply, text_at};
use super::hold::{Held, hold};
use super::run::{Flow, Run, classify};
use super::stats::{Kind, Outcome};
use super::template::Vars;
use reqwest::Method;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One buyer's purchase.
pub async fn purchase(run: Arc<Run>, n: u64, due: Instant) -> Flow {
    let (buyer, _) = run.buyer(n);
    let flow = match hold(&run, n, due, buyer, None).await {
        Held::Yes { reservation, seats } => pay(&run, n, buyer, &reservation, seats.len()).await,
        Held::SoldOut => Flow::Next,
        Held::No(flow) => flow,
    };
    run.stats.with(n, |r| r.transaction(due.elapsed()));
    flow
}

/// Prepares and confirms the payment of a held reservation.
async fn pay(run: &Run, n: u64, buyer: usize, reservation: &str, seats: usize) -> Flow {
    let (t, e) = (&run.api.templates, &run.api.endpoints);
    let auth = Some(&run.buyers[buyer]);
    let vars = Vars { event: &run.event, reservation, buyer, ..Vars::default() };
    let (url, body) = (run.api.url(&t.prepare_path, &vars), Api::body(&t.prepare_body, &vars));
    let Some(prepared) = run.call(Kind::Prepare, n, Instant::now(), Method::POST, url, auth, Some(body), &[]).await
    else {
        return Flow::Next;
    };
    if let Some(flow) = refused(Kind::Prepare, &prepared) {
        return flow;
    }
    let json = prepared.json();
    let order = text_at(&json, &e.order_id_pointer).unwrap_or_default();
    let amount = json.pointer(&e.amount_pointer).map(|a| a.to_string()).unwrap_or_default();
    // Unique per payment and per run: a provider keys payments by it.
    let payment_key = format!("lg-{}-{n}", run.nonce());
    let vars = Vars { order: &order, amount: &amount, payment_key: &payment_key, ..vars };
    let (url, body) = (run.api.url(&t.confirm_path, &vars), Api::body(&t.confirm_body, &vars));
    let Some(confirmed) = run.call(Kind::Confirm, n, Instant::now(), Method::POST, url, auth, Some(body), &[]).await
    else {
        return Flow::Next;
    };
    if let Some(flow) = refused(Kind::Confirm, &confirmed) {
        return flow;
    }
    let done = Instant::now();
    run.stats.with(n, |r| r.sold(seats as u64, done));
    run.live.seats_sold.fetch_add(seats as u64, Ordering::Relaxed);
    run.ledger.lock().unwrap_or_else(|e| e.into_inner()).confirmed.insert(reservation.to_owned());
    Flow::Next
}

/// What to do after a refused payment step (`None`: it was not refused).
fn refused(kind: Kind, reply: &Reply) -> Option<Flow> {
    match classify(kind, reply) {
        Outcome::Ok => None,
        Outcome::Shed => Some(Flow::Backoff(reply.retry_after.unwrap_or(Duration::from_millis(100)))),
        _ => Some(Flow::Next),
    }
}
