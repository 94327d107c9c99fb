//! SIGKILL between the provider's capture and the durable record of the confirmation, then a
//! restart on the same database and the same provider: start-up reconciliation settles every
//! payment the crash left in flight, so either the sale is confirmed (with its seats) or no
//! money stays taken. Never money taken without seats.
//!
//! The provider is [`FakeToss`], in this process; the real `tiketi` binary talks to it over
//! HTTP with `payments.provider = "toss"`.

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Rng, Server, event_body, eventually, http, login, register, sql};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiketi_payments::ProviderStatus;
use tiketi_payments::fake::FakeToss;
use uuid::Uuid;

const SECRET: &str = "test_sk_durability_payments";

/// The server's `[payments]` settings for the fake provider. `capture_window_secs` bounds how
/// long a payment the provider never received stays in flight after a kill.
fn provider_env(
    fake: &FakeToss,
    timeout_ms: u64,
    reconcile_after_secs: u64,
    capture_window_secs: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("TIKETI_PAYMENTS__CAPTURE_WINDOW_SECS", capture_window_secs.to_string()),
        ("TIKETI_PAYMENTS__PROVIDER", "toss".into()),
        ("TIKETI_PAYMENTS__TOSS_BASE_URL", fake.base_url()),
        ("TIKETI_PAYMENTS__TOSS_SECRET_KEY", fake.secret_key().to_owned()),
        ("TIKETI_PAYMENTS__TOSS_TIMEOUT_MS", timeout_ms.to_string()),
        ("TIKETI_PAYMENTS__RECONCILE_AFTER_SECS", reconcile_after_secs.to_string()),
    ]
}

fn log_path(name: &str, seed: u64) -> std::path::PathBuf {
    let log = std::env::temp_dir().join(format!("tiketi-{name}-{seed}-{}.log", std::process::id()));
    println!("server log: {}", log.display());
    log
}

/// A POST with a bearer token: the status, and the body if it could be read (a server killed
/// mid-answer may have sent the status line only).
async fn post(client: &Client, url: String, token: &str, body: Value) -> reqwest::Result<(StatusCode, Value)> {
    let res = client.post(url).bearer_auth(token).json(&body).send().await?;
    let status = res.status();
    Ok((status, res.json::<Value>().await.unwrap_or(Value::Null)))
}

async fn get_json(client: &Client, url: String, token: &str) -> Value {
    let res = client.get(&url).bearer_auth(token).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    res.json().await.unwrap()
}

/// Creates an on-sale seated event with `hold_ttl_secs` holds; its id and seat ids.
async fn create_event(
    client: &Client,
    server: &Server,
    admin: &str,
    hold_ttl_secs: u64,
    (sections, rows, seats): (u32, u32, u32),
) -> (Uuid, Vec<String>) {
    let extra = json!({ "holdTtlSeconds": hold_ttl_secs, "perUserLimit": 0, "maxPerReservation": 4 });
    let body = event_body(sections, rows, seats, 10, extra);
    let res = client.post(server.url("/admin/events")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "create event");
    let event: Uuid = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let seat_ids = get_json(client, server.url(&format!("/events/{event}/seats")), admin).await["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    (event, seat_ids)
}

/// A buyer's held and prepared order.
#[derive(Clone)]
struct Order {
    token: String,
    event: Uuid,
    reservation: Uuid,
    seats: Vec<String>,
    order_id: String,
    amount: i64,
    payment_key: String,
}

impl Order {
    /// Holds `seats` for the buyer and prepares the payment.
    async fn hold_and_prepare(client: &Client, server: &Server, token: &str, event: Uuid, seats: &[String]) -> Self {
        let url = server.url(&format!("/events/{event}/reservations"));
        let (status, held) = post(client, url, token, json!({ "seatIds": seats })).await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "hold {seats:?}: {held}");
        let reservation: Uuid = held["id"].as_str().unwrap().parse().unwrap();
        let url = server.url("/payments/prepare");
        let (status, prepared) = post(client, url, token, json!({ "reservationId": reservation })).await.unwrap();
        assert_eq!(status, StatusCode::OK, "prepare {reservation}: {prepared}");
        assert_eq!(prepared["status"], "ready", "{prepared}");
        let order_id = prepared["orderId"].as_str().unwrap().to_owned();
        let mut sorted = seats.to_vec();
        sorted.sort();
        Self {
            token: token.to_owned(),
            event,
            reservation,
            seats: sorted,
            amount: prepared["amount"].as_i64().unwrap(),
            payment_key: format!("tgen_{order_id}"),
            order_id,
        }
    }

    fn confirm_body(&self) -> Value {
        json!({ "orderId": self.order_id, "paymentKey": self.payment_key, "amount": self.amount })
    }
}

/// A payment as PostgreSQL has it, with its reservation.
#[derive(Debug)]
struct PgPayment {
    status: String,
    payment_key: Option<String>,
    amount: i64,
    reservation: Uuid,
    reservation_status: String,
    quantity: i64,
    /// Seat ids in live `reservation_items` of the reservation, sorted.
    live_seats: Vec<String>,
    /// How many of those are `sold` in `seats`.
    sold: i64,
    /// The reservation's hold had lapsed when it last changed.
    changed_after_expiry: bool,
}

/// Every payment in PostgreSQL by order id, in one statement (one snapshot).
async fn pg_payments(db: &tokio_postgres::Client) -> HashMap<String, PgPayment> {
    let rows = db
        .query(
            "SELECT p.order_id, p.status, p.payment_key, p.amount, r.id, r.status, r.quantity::bigint,
                    COALESCE((SELECT array_agg(i.seat_id) FROM reservation_seats i
                              WHERE i.reservation_id = r.id AND i.live), '{}'),
                    (SELECT count(*) FROM seats s WHERE s.reservation_id = r.id AND s.status = 'sold'),
                    r.updated_at > r.expires_at
             FROM payments p JOIN reservations r ON r.id = p.reservation_id",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            // Sorted here: PostgreSQL's collation may order seat ids differently.
            let mut live_seats: Vec<String> = r.get(7);
            live_seats.sort();
            let payment = PgPayment {
                status: r.get(1),
                payment_key: r.get(2),
                amount: r.get(3),
                reservation: r.get(4),
                reservation_status: r.get(5),
                quantity: r.get(6),
                live_seats,
                sold: r.get(8),
                changed_after_expiry: r.get(9),
            };
            (r.get(0), payment)
        })
        .collect()
}

/// Seats live in more than one reservation (the partial unique index should make this
/// impossible; checked anyway).
async fn doubly_sold_seats(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT event_id::text || '/' || seat_index::text FROM reservation_items WHERE live
         GROUP BY event_id, seat_index HAVING count(*) > 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Payments PostgreSQL has in the provider's hands (being captured or refunded).
async fn pg_in_flight(db: &tokio_postgres::Client) -> Vec<String> {
    db.query("SELECT order_id FROM payments WHERE status IN ('in_progress', 'cancelling')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Test 1: the deterministic kill point. Every confirmation is captured by the provider and
/// then left unanswered; the server is killed while they all wait; it comes back with the
/// provider answering again, and nobody asks about those events: start-up reconciliation
/// alone must confirm every sale, including two whose hold lapsed while the server was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_the_capture_before_its_commit_is_confirmed_at_start_up() {
    const LONG_ORDERS: usize = 4;
    const SHORT_ORDERS: usize = 2;
    const SHORT_TTL_SECS: u64 = 2;
    let t0 = Instant::now();
    let fake = FakeToss::start(SECRET).await;
    let url = tiketi_testkit::fresh_database().await;
    let db = sql(&url).await;
    let log = log_path("payments-kill-point", 0);
    // A provider timeout far beyond the kill, and no safety-net reconciliation before it:
    // only start-up reconciliation can settle these payments.
    let env = provider_env(&fake, 20_000, 600, 120);
    let client = http();
    let mut server = Server::start_with(&url, &log, &env).await;
    let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (long_event, long_seats) = create_event(&client, &server, &admin, 600, (2, 4, 10)).await;
    let (short_event, short_seats) = create_event(&client, &server, &admin, SHORT_TTL_SECS, (1, 2, 10)).await;
    let mut tokens = Vec::new();
    for i in 0..LONG_ORDERS + SHORT_ORDERS + 2 {
        tokens.push(register(&client, &server, &format!("pay-kill-buyer{i}@example.com")).await);
    }

    // Two witnesses the restart must leave alone: a sale confirmed before the crash, and an
    // order prepared but never confirmed.
    let paid = Order::hold_and_prepare(&client, &server, &tokens[0], long_event, &long_seats[0..2]).await;
    let (status, body) =
        post(&client, server.url("/payments/confirm"), &paid.token, paid.confirm_body()).await.unwrap();
    assert_eq!(status, StatusCode::OK, "the witness confirmation: {body}");
    assert_eq!(body["status"], "done", "{body}");
    let unpaid = Order::hold_and_prepare(&client, &server, &tokens[1], long_event, &long_seats[2..4]).await;

    // The orders the crash will interrupt; those on the short-TTL event last, so their holds
    // are young when confirmed.
    let mut orders = Vec::new();
    for i in 0..LONG_ORDERS {
        let seats = &long_seats[4 + 2 * i..6 + 2 * i];
        orders.push(Order::hold_and_prepare(&client, &server, &tokens[2 + i], long_event, seats).await);
    }
    for i in 0..SHORT_ORDERS {
        let seats = &short_seats[3 * i..3 * i + 3];
        let token = &tokens[2 + LONG_ORDERS + i];
        orders.push(Order::hold_and_prepare(&client, &server, token, short_event, seats).await);
    }

    // The provider captures, then does not answer for 30 s.
    fake.set_hold_after_capture(Duration::from_secs(30));
    let confirms: Vec<_> = orders
        .iter()
        .map(|o| {
            let (client, url, token, body) =
                (client.clone(), server.url("/payments/confirm"), o.token.clone(), o.confirm_body());
            tokio::spawn(async move { post(&client, url, &token, body).await })
        })
        .collect();
    for o in &orders {
        assert!(fake.wait_for_capture(&o.order_id, Duration::from_secs(10)).await, "{} never captured", o.order_id);
    }
    // The in-flight record was committed before the provider was called.
    let before = pg_payments(&db).await;
    for o in &orders {
        let p = &before[&o.order_id];
        assert_eq!(p.status, "in_progress", "{}: the capture happened, so its in-flight record is durable", o.order_id);
        assert_eq!(p.payment_key.as_deref(), Some(o.payment_key.as_str()));
        assert_eq!(p.reservation_status, "held");
    }
    let killed = Instant::now();
    server.kill();
    for confirm in confirms {
        if let Ok((status, body)) = confirm.await.unwrap() {
            panic!("a confirmation was answered although the provider never answered it: {status} {body}");
        }
    }
    // Nothing can have changed since: the commit of the confirmations never happened.
    let after_kill = pg_payments(&db).await;
    for o in &orders {
        assert_eq!(after_kill[&o.order_id].status, "in_progress", "{}", o.order_id);
        assert_eq!(after_kill[&o.order_id].reservation_status, "held", "{}", o.order_id);
    }
    // Down past the short holds' expiry.
    eventually("the short holds lapsed", Duration::from_secs(SHORT_TTL_SECS + 10), || async {
        let lapsed: bool = db
            .query_one(
                "SELECT bool_and(expires_at < now() - interval '300 milliseconds') FROM reservations WHERE event_id = $1",
                &[&short_event],
            )
            .await
            .unwrap()
            .get(0);
        lapsed.then_some(())
    })
    .await;

    // Back, with a provider that answers at once. No request touches the events from here
    // until the reconciliation is seen in PostgreSQL.
    fake.set_hold_after_capture(Duration::ZERO);
    let down_for = killed.elapsed();
    let restarted = Instant::now();
    server = Server::start_with(&url, &log, &env).await;
    let ready_after = restarted.elapsed();
    let settled =
        eventually("start-up reconciliation confirms every captured order", Duration::from_secs(30), || async {
            let pg = pg_payments(&db).await;
            orders
                .iter()
                .all(|o| pg[&o.order_id].status == "done" && pg[&o.order_id].reservation_status == "confirmed")
                .then_some(pg)
        })
        .await;
    let reconciled_after = restarted.elapsed();

    for o in &orders {
        let p = &settled[&o.order_id];
        assert_eq!(p.payment_key.as_deref(), Some(o.payment_key.as_str()), "{}", o.order_id);
        assert_eq!(p.amount, o.amount, "{}", o.order_id);
        assert_eq!(p.reservation, o.reservation, "{}", o.order_id);
        assert_eq!(p.live_seats, o.seats, "{}: its seats are in the live reservation", o.order_id);
        assert_eq!(p.sold, o.seats.len() as i64, "{}: its seats are sold", o.order_id);
        assert_eq!(p.quantity, o.seats.len() as i64, "{}", o.order_id);
        if o.event == short_event {
            assert!(p.changed_after_expiry, "{}: confirmed after its hold's expiry (pinned)", o.order_id);
        }
        assert_eq!(fake.captures(&o.order_id), 1, "{}: captured once", o.order_id);
        assert_eq!(fake.refunds(&o.order_id), 0, "{}: never refunded", o.order_id);
        let at_fake = fake.payment(&o.order_id).expect("the fake has the payment");
        assert_eq!(at_fake.status, ProviderStatus::Done);
        assert_eq!(at_fake.total_amount, o.amount);
    }
    // The witnesses are as they were.
    let (w_paid, w_unpaid) = (&settled[&paid.order_id], &settled[&unpaid.order_id]);
    assert_eq!((w_paid.status.as_str(), w_paid.reservation_status.as_str()), ("done", "confirmed"));
    assert_eq!((w_unpaid.status.as_str(), w_unpaid.reservation_status.as_str()), ("ready", "held"));
    assert_eq!(fake.captures(&paid.order_id), 1);
    assert!(fake.payment(&unpaid.order_id).is_none());
    assert!(pg_in_flight(&db).await.is_empty(), "payments left in flight");
    assert!(doubly_sold_seats(&db).await.is_empty(), "a seat in two live reservations");

    // The API agrees.
    for o in &orders {
        let p = get_json(&client, server.url(&format!("/payments/{}", o.order_id)), &o.token).await;
        assert_eq!(p["status"], "done", "{p}");
        assert_eq!(p["paymentKey"], o.payment_key.as_str(), "{p}");
        let r = &p["reservation"];
        assert_eq!(r["status"], "confirmed", "{p}");
        let mut seats: Vec<String> =
            r["seatIds"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
        seats.sort();
        assert_eq!(seats, o.seats, "{p}");
        let map = get_json(&client, server.url(&format!("/events/{}/seats", o.event)), &o.token).await;
        for seat in map["seats"].as_array().unwrap().iter().filter(|s| o.seats.iter().any(|id| s["id"] == id.as_str()))
        {
            assert_eq!(seat["status"], "sold", "{seat}");
        }
    }
    // And nothing refunds them afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for o in &orders {
        assert_eq!((fake.captures(&o.order_id), fake.refunds(&o.order_id)), (1, 0), "{}", o.order_id);
    }
    println!(
        "kill point: {} captured orders interrupted ({SHORT_ORDERS} past their hold's expiry); down {down_for:?}; \
         ready {ready_after:?} after restart, reconciled {reconciled_after:?} after restart; total {:?}",
        orders.len(),
        t0.elapsed()
    );
    server.kill();
    let _ = std::fs::remove_file(&log);
}

/// A server on a fresh database, talking to a FakeToss of its own, and one buyer's prepared
/// order for two seats of a new event.
struct OneOrder {
    fake: FakeToss,
    url: String,
    db: tokio_postgres::Client,
    log: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
    client: Client,
    server: Server,
    event: Uuid,
    order: Order,
}

impl OneOrder {
    /// `name` names the log and the buyer; `provider` is [`provider_env`]'s timeout (ms),
    /// reconciliation delay (s) and capture window (s).
    async fn start(name: &str, (timeout_ms, reconcile_after_secs, capture_window_secs): (u64, u64, u64)) -> Self {
        let fake = FakeToss::start(SECRET).await;
        let url = tiketi_testkit::fresh_database().await;
        let db = sql(&url).await;
        let log = log_path(name, 0);
        let env = provider_env(&fake, timeout_ms, reconcile_after_secs, capture_window_secs);
        let client = http();
        let server = Server::start_with(&url, &log, &env).await;
        let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let (event, seats) = create_event(&client, &server, &admin, 600, (1, 2, 10)).await;
        let token = register(&client, &server, &format!("{name}-buyer@example.com")).await;
        let order = Order::hold_and_prepare(&client, &server, &token, event, &seats[0..2]).await;
        Self { fake, url, db, log, env, client, server, event, order }
    }
}

/// Test 3: the kill lands after the provider received the confirmation but before it
/// captured (a provider that takes 1.5 s, well within the server's 5 s timeout). The restart
/// reconciles at once, finds no capture yet and records the attempt as failed; the provider
/// then captures. The money must not stay taken without seats: either the late capture is
/// refunded or the sale is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_a_slow_capture_never_keeps_the_late_capture_without_seats() {
    const CONFIRM_DELAY: Duration = Duration::from_millis(1_500);
    let t0 = Instant::now();
    // A capture window longer than the provider's 1.5 s before it captures.
    let OneOrder { fake, url, db, log, env, client, mut server, order, .. } =
        OneOrder::start("payments-late-capture", (5_000, 2, 10)).await;

    fake.set_confirm_delay(CONFIRM_DELAY);
    let confirm = {
        let (client, url, token, body) =
            (client.clone(), server.url("/payments/confirm"), order.token.clone(), order.confirm_body());
        tokio::spawn(async move { post(&client, url, &token, body).await })
    };
    // The confirmation is durable in flight and the provider has the request, not captured yet.
    eventually("the provider received the confirmation", Duration::from_secs(5), || async {
        (fake.confirm_calls() == 1).then_some(())
    })
    .await;
    assert_eq!(pg_payments(&db).await[&order.order_id].status, "in_progress");
    assert_eq!(fake.captures(&order.order_id), 0);
    server.kill();
    assert!(confirm.await.unwrap().is_err(), "the confirmation cannot have been answered");
    fake.set_confirm_delay(Duration::ZERO);
    server = Server::start_with(&url, &log, &env).await;

    // The provider finishes what it started.
    assert!(fake.wait_for_capture(&order.order_id, Duration::from_secs(10)).await, "the late capture");
    let captured_at = Instant::now();
    // Give the server ample time (many reconciliation periods) to notice the late capture.
    let deadline = captured_at + Duration::from_secs(20);
    loop {
        let pg = pg_payments(&db).await;
        let p = &pg[&order.order_id];
        let (captures, refunds) = (fake.captures(&order.order_id), fake.refunds(&order.order_id));
        let sold = p.status == "done" && p.reservation_status == "confirmed" && p.live_seats == order.seats;
        let given_back = refunds == 1 && p.status != "done";
        if captures == 1 && (sold || given_back) {
            println!(
                "late capture settled {:?} after it landed ({}); total {:?}",
                captured_at.elapsed(),
                if sold { "sale confirmed" } else { "refunded" },
                t0.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "MONEY WITHOUT SEATS: order {} captured {captures}x and refunded {refunds}x at the provider {:?} \
             after its late capture, but PostgreSQL has {p:?} (log {})",
            order.order_id,
            captured_at.elapsed(),
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();
    let _ = std::fs::remove_file(&log);
}

/// An owed-back capture in PostgreSQL: (refunded yet, order id), by payment key.
async fn pg_owed_refunds(db: &tokio_postgres::Client) -> HashMap<String, (bool, String)> {
    db.query("SELECT payment_key, refunded_at IS NOT NULL, order_id FROM owed_refunds", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// `Some` once the server's metrics have `line`.
async fn shows(client: &Client, server: &Server, line: String) -> Option<()> {
    let metrics = client.get(format!("{}/metrics", server.base)).send().await.ok()?.text().await.ok()?;
    metrics.lines().any(|l| l == line).then_some(())
}

/// Test 4: a capture that lands after reconciliation declined its attempt (the provider
/// answers after 5 s, within the server's 10 s timeout; the safety net looks the order up at
/// 2 s, past a 1 s capture window, and finds nothing) sells nothing and is owed back. Every
/// refund fails (500: an unknown outcome, asked again), the server is killed with the debt
/// outstanding, and the restarted server refunds it once the provider takes refunds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_owed_back_is_refunded_after_a_crash_even_if_refunds_failed_before() {
    let OneOrder { fake, url, db, log, env, client, mut server, event, order } =
        OneOrder::start("payments-owed-refund", (10_000, 2, 1)).await;

    fake.set_fail_cancels(true);
    fake.set_confirm_delay(Duration::from_secs(5));
    let (status, body) =
        post(&client, server.url("/payments/confirm"), &order.token, order.confirm_body()).await.unwrap();
    // The hold is still live: the buyer is told the capture came too late and may pay again.
    let answer = (status, &body["error"]["code"], &body["error"]["details"]["providerCode"]);
    assert_eq!(
        answer,
        (StatusCode::PAYMENT_REQUIRED, &json!("payment_declined"), &json!("CAPTURED_TOO_LATE")),
        "{body}"
    );
    assert_eq!(fake.captures(&order.order_id), 1);
    // The debt is durable before that answer; the refund was asked for and refused.
    let owed = pg_owed_refunds(&db).await;
    assert_eq!(owed.get(&order.payment_key), Some(&(false, order.order_id.clone())), "{owed:?}");
    eventually("a refund asked for and failed", Duration::from_secs(5), || async {
        (fake.cancel_calls() >= 1).then_some(())
    })
    .await;
    assert_eq!(fake.payment(&order.order_id).map(|p| p.status), Some(ProviderStatus::Done));
    let owing = |n: u32| format!("tiketi_event_owed_refunds{{event_id=\"{event}\"}} {n}");
    eventually("the debt on the event's gauge", Duration::from_secs(5), || shows(&client, &server, owing(1))).await;
    let pg = pg_payments(&db).await;
    let p = &pg[&order.order_id];
    assert_eq!((p.status.as_str(), p.reservation_status.as_str(), p.sold), ("failed", "held", 0), "{p:?}");

    server.kill();
    assert_eq!(fake.refunds(&order.order_id), 0, "still owed when the server died");
    fake.set_fail_cancels(false);
    fake.set_confirm_delay(Duration::ZERO);
    server = Server::start_with(&url, &log, &env).await;

    // Nobody asks about the event: start-up finds the debt and pays it, once.
    let p = refunded_once_and_unsold(&fake, &db, &order, Duration::from_secs(15)).await;
    assert_eq!(p.status, "failed", "the buyer may still pay for the hold with another attempt");
    eventually("the refund counted at its commit", Duration::from_secs(5), || {
        shows(&client, &server, "tiketi_journal_owed_refunded_total 1".into())
    })
    .await;
    eventually("nothing owed on the gauge", Duration::from_secs(5), || shows(&client, &server, owing(0))).await;
    server.kill();
    let _ = std::fs::remove_file(&log);
}

/// Waits up to `within` for the order's capture to be refunded at the provider and recorded
/// so in `owed_refunds`; checks that its seats were never sold and, a second later, that it
/// was refunded exactly once. The attempt as PostgreSQL has it.
async fn refunded_once_and_unsold(
    fake: &FakeToss,
    db: &tokio_postgres::Client,
    order: &Order,
    within: Duration,
) -> PgPayment {
    eventually("the owed capture refunded and recorded", within, || async {
        let refunded = pg_owed_refunds(db).await.get(&order.payment_key).is_some_and(|(done, _)| *done);
        (refunded && fake.refunds(&order.order_id) == 1).then_some(())
    })
    .await;
    assert_eq!(fake.payment(&order.order_id).map(|p| p.status), Some(ProviderStatus::Canceled));
    let p = pg_payments(db).await.remove(&order.order_id).expect("the attempt");
    assert_eq!((p.reservation_status.as_str(), p.sold), ("held", 0), "{p:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!((fake.captures(&order.order_id), fake.refunds(&order.order_id)), (1, 1), "refunded exactly once");
    p
}

/// The failure code PostgreSQL has for an attempt.
async fn pg_failure_code(db: &tokio_postgres::Client, order_id: &str) -> Option<String> {
    db.query_opt("SELECT failure_code FROM payments WHERE order_id = $1", &[&order_id]).await.unwrap()?.get(0)
}

/// Test 5: the provider captures long after the server gave up on the capture, and nobody
/// reports it. The provider holds the capture; the server's call times out after 1 s, and its
/// safety net finds no capture at 2 s, past a 1 s capture window, so the attempt is declined
/// `NOT_CAPTURED`. Then the provider captures, and its answer goes nowhere. The server must
/// find the capture by asking the provider, and refund it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_nobody_reports_is_found_and_refunded() {
    a_capture_nobody_reports("payments-unreported-capture", false).await;
}

/// Test 6: as test 5, with the server killed between the decline and the capture: the
/// restarted server finds the declined attempt in PostgreSQL and keeps looking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_nobody_reports_is_found_after_a_crash_and_refunded() {
    a_capture_nobody_reports("payments-unreported-capture-crash", true).await;
}

async fn a_capture_nobody_reports(name: &str, crash: bool) {
    let OneOrder { fake, url, db, log, env, client, mut server, event, order } =
        OneOrder::start(name, (1_000, 2, 1)).await;
    let watching = |n: u32| format!("tiketi_event_late_capture_watches{{event_id=\"{event}\"}} {n}");

    fake.hold_captures(true);
    let (status, body) =
        post(&client, server.url("/payments/confirm"), &order.token, order.confirm_body()).await.unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("payment_pending")),
        "{body}"
    );
    eventually("the attempt declined for want of a capture", Duration::from_secs(10), || async {
        (pg_failure_code(&db, &order.order_id).await.as_deref() == Some("NOT_CAPTURED")).then_some(())
    })
    .await;
    assert_eq!(fake.captures(&order.order_id), 0, "declined before the provider captured");
    if crash {
        server.kill();
        server = Server::start_with(&url, &log, &env).await;
    }
    // Watched, by the restarted server too (nobody has asked about the event since).
    eventually("the order watched on the gauge", Duration::from_secs(5), || shows(&client, &server, watching(1))).await;

    // The provider captures now; its answer goes to a caller that gave up long ago.
    fake.hold_captures(false);
    assert!(fake.wait_for_capture(&order.order_id, Duration::from_secs(5)).await, "the provider captures");
    // Nobody asks about the event or the order: the server looks for the capture itself.
    let p = refunded_once_and_unsold(&fake, &db, &order, Duration::from_secs(30)).await;
    assert_eq!(p.status, "failed", "the declined attempt stays declined");
    eventually("the debt counted at its commit", Duration::from_secs(5), || {
        shows(&client, &server, "tiketi_journal_captures_owed_total 1".into())
    })
    .await;
    eventually("no longer watched", Duration::from_secs(5), || shows(&client, &server, watching(0))).await;
    server.kill();
    let _ = std::fs::remove_file(&log);
}

/// Test 7: the provider will not refund a capture owed back (every refund fails), so an
/// admin refunds the buyer by other means and settles the debt by hand: refused while a
/// refund request is in flight, then recorded with the admin and the reason; the server
/// stops asking the provider, and a restart does not find the capture owed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_settles_by_hand_a_capture_the_provider_will_not_refund() {
    let OneOrder { fake, url, db, log, env, client, mut server, event, order } =
        OneOrder::start("payments-settle-by-hand", (10_000, 2, 1)).await;
    fake.set_fail_cancels(true);
    fake.hold_cancels(true);
    fake.set_confirm_delay(Duration::from_secs(5));
    let (status, body) =
        post(&client, server.url("/payments/confirm"), &order.token, order.confirm_body()).await.unwrap();
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let owed_url = server.url(&format!("/admin/events/{event}/owed-refunds"));

    let listed = get_json(&client, owed_url.clone(), &admin).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    let first = (&listed["data"][0]["paymentKey"], &listed["data"][0]["orderId"]);
    assert_eq!(first, (&json!(order.payment_key), &json!(order.order_id)));
    let buyer = client.get(owed_url.clone()).bearer_auth(&order.token).send().await.unwrap();
    assert_eq!(buyer.status(), StatusCode::FORBIDDEN);

    let settle_url = |key: &str| server.url(&format!("/admin/events/{event}/owed-refunds/{key}/settle"));
    let (status, body) =
        post(&client, settle_url(&order.payment_key), &admin, json!({ "reason": "  " })).await.unwrap();
    assert_eq!((status, &body["error"]["details"]["field"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("reason")));
    let (status, _) = post(&client, settle_url("no-such-key"), &admin, json!({ "reason": "x" })).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The first refund request is held at the provider: no settlement while it is in flight.
    let reason = "refunded by bank transfer, ticket 4711";
    let (status, body) =
        post(&client, settle_url(&order.payment_key), &admin, json!({ "reason": reason })).await.unwrap();
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("payment_in_progress")), "{body}");
    fake.hold_cancels(false);
    eventually("the refund refused", Duration::from_secs(5), || async { (fake.cancel_calls() >= 1).then_some(()) })
        .await;

    // Between the retries (every 5 s) the settlement goes through.
    let settled = eventually("settled by hand", Duration::from_secs(15), || async {
        let (status, body) =
            post(&client, settle_url(&order.payment_key), &admin, json!({ "reason": reason })).await.ok()?;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!((&settled["paymentKey"], &settled["reason"]), (&json!(order.payment_key), &json!(reason)));
    let row = db
        .query_one(
            "SELECT refunded_at IS NOT NULL, settled_by, settle_reason FROM owed_refunds WHERE payment_key = $1",
            &[&order.payment_key],
        )
        .await
        .unwrap();
    let (done, by, why): (bool, Uuid, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((done, by.to_string(), why), (true, settled["settledBy"].as_str().unwrap().to_owned(), reason.into()));
    assert_eq!(get_json(&client, owed_url.clone(), &admin).await["data"], json!([]));
    let owing = format!("tiketi_event_owed_refunds{{event_id=\"{event}\"}} 0");
    eventually("nothing owed on the gauge", Duration::from_secs(5), || shows(&client, &server, owing.clone())).await;
    eventually("counted at its commit", Duration::from_secs(5), || {
        shows(&client, &server, "tiketi_journal_owed_settled_by_hand_total 1".into())
    })
    .await;

    // The provider is no longer asked (its retry was every 5 s), and refunded nothing.
    let asked = fake.cancel_calls();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!((fake.cancel_calls(), fake.refunds(&order.order_id)), (asked, 0));

    // A restart within the late-capture watch: the provider still shows the capture, and
    // the declined attempt is recent, but the debt, found once and settled, stays settled.
    server.kill();
    server = Server::start_with(&url, &log, &env).await;
    let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let owed_url = server.url(&format!("/admin/events/{event}/owed-refunds"));
    assert_eq!(get_json(&client, owed_url, &admin).await["data"], json!([]));
    eventually("owed nothing again", Duration::from_secs(5), || {
        shows(&client, &server, "tiketi_journal_captures_owed_total 0".into())
    })
    .await;
    assert_eq!((fake.cancel_calls(), fake.refunds(&order.order_id)), (asked, 0));
    server.kill();
    let _ = std::fs::remove_file(&log);
}

// ---------------------------------------------------------------------------------------------
// Test 2: random kill points.

const BUYERS: usize = 12;
const ROUNDS: usize = 10;
const HOLD_TTL_SECS: u64 = 5;
/// Shorter than the longest hold after capture, so some captures time out and are resolved
/// by a lookup.
const TOSS_TIMEOUT_MS: u64 = 2_000;
/// The safety net fires during the bursts too.
const RECONCILE_AFTER_SECS: u64 = 2;
/// The fake captures as soon as a confirm arrives, so a confirm a kill stopped before it was
/// sent never lands: the window only has to outlast a restart. Kept short so such a payment
/// is declined within the round.
const CAPTURE_WINDOW_SECS: u64 = 5;
/// How long the provider keeps the answer after capturing, chosen at random every few
/// hundred milliseconds.
const HOLDS_AFTER_CAPTURE_MS: [u64; 10] = [0, 0, 0, 0, 5, 20, 150, 500, 1_500, 2_500];

/// The run's seed: `TIKETI_PAYMENTS_CRASH_SEED`, or the clock. Printed so a failure reproduces.
fn seed() -> u64 {
    let seed = match std::env::var("TIKETI_PAYMENTS_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("TIKETI_PAYMENTS_CRASH_SEED must be an unsigned integer"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
    };
    println!("payments crash test seed: {seed} (reproduce with TIKETI_PAYMENTS_CRASH_SEED={seed})");
    seed
}

/// What one buyer saw during a burst.
#[derive(Default)]
struct Seen {
    /// Orders prepared.
    prepared: usize,
    /// Confirmations answered 200.
    confirmed: Vec<String>,
    /// Refunds asked for, answered or not.
    refund_asked: Vec<String>,
    /// Refunds answered 200.
    refunded: Vec<String>,
    /// `"<what> <status>"` -> how many.
    answers: BTreeMap<String, usize>,
    /// Answers no buyer should ever get.
    unexpected: Vec<String>,
}

impl Seen {
    fn saw(&mut self, what: &str, status: StatusCode) {
        *self.answers.entry(format!("{what} {}", status.as_u16())).or_default() += 1;
    }
}

struct Shop {
    client: Client,
    base: String,
    event: Uuid,
    seat_ids: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
}

impl Shop {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// One buyer: holds a few seats, prepares, confirms, and now and then refunds one of its
    /// paid orders, as fast as it can, until the server dies.
    async fn buyer(self: Arc<Self>, token: String, mut rng: Rng) -> Seen {
        let mut seen = Seen::default();
        let mut paid: Vec<(String, String)> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            if !paid.is_empty() && rng.chance(20) {
                let (order, key) = paid.swap_remove(rng.below(paid.len() as u64) as usize);
                seen.refund_asked.push(order.clone());
                let url = self.url(&format!("/payments/{key}/cancel"));
                let Ok((status, body)) = post(&self.client, url, &token, json!({ "reason": "crash test" })).await
                else {
                    break;
                };
                seen.saw("refund", status);
                match status {
                    StatusCode::OK => {
                        if !body.is_null() && body["status"] != "cancelled" {
                            seen.unexpected.push(format!("refund {order} answered 200 with {body}"));
                        }
                        seen.refunded.push(order);
                    }
                    StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {}
                    other => seen.unexpected.push(format!("refund {order}: {other} {body}")),
                }
                continue;
            }
            let n = rng.between(1, 3) as usize;
            let mut seats: Vec<&String> = Vec::with_capacity(n);
            while seats.len() < n {
                let id = &self.seat_ids[rng.below(self.seat_ids.len() as u64) as usize];
                if !seats.contains(&id) {
                    seats.push(id);
                }
            }
            let url = self.url(&format!("/events/{}/reservations", self.event));
            let Ok((status, held)) = post(&self.client, url, &token, json!({ "seatIds": seats })).await else { break };
            seen.saw("hold", status);
            match status {
                StatusCode::CREATED => {}
                StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => continue,
                other => {
                    seen.unexpected.push(format!("hold: {other} {held}"));
                    continue;
                }
            }
            let Some(reservation) = held["id"].as_str().map(str::to_owned) else { break };
            let url = self.url("/payments/prepare");
            let Ok((status, prepared)) = post(&self.client, url, &token, json!({ "reservationId": reservation })).await
            else {
                break;
            };
            seen.saw("prepare", status);
            match status {
                StatusCode::OK => {}
                StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => continue,
                other => {
                    seen.unexpected.push(format!("prepare {reservation}: {other} {prepared}"));
                    continue;
                }
            }
            let (Some(order), Some(amount)) = (prepared["orderId"].as_str(), prepared["amount"].as_i64()) else {
                break;
            };
            seen.prepared += 1;
            let order = order.to_owned();
            let key = format!("tgen_{order}");
            let body = json!({ "orderId": order, "paymentKey": key, "amount": amount });
            let Ok((status, confirmed)) = post(&self.client, self.url("/payments/confirm"), &token, body).await else {
                break;
            };
            seen.saw("confirm", status);
            match status {
                StatusCode::OK => {
                    if !confirmed.is_null() && confirmed["status"] != "done" {
                        seen.unexpected.push(format!("confirm {order} answered 200 with {confirmed}"));
                    }
                    seen.confirmed.push(order.clone());
                    paid.push((order, key));
                }
                // Expired meanwhile, overloaded, or the outcome not known yet.
                StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {}
                other => seen.unexpected.push(format!("confirm {order}: {other} {confirmed}")),
            }
        }
        seen
    }
}

/// Changes how long the provider sits on its answer after capturing, until stopped.
async fn vary_the_provider(fake: Arc<FakeToss>, stop: Arc<AtomicBool>, mut rng: Rng) {
    while !stop.load(Ordering::Acquire) {
        let hold = HOLDS_AFTER_CAPTURE_MS[rng.below(HOLDS_AFTER_CAPTURE_MS.len() as u64) as usize];
        fake.set_hold_after_capture(Duration::from_millis(hold));
        tokio::time::sleep(Duration::from_millis(rng.between(50, 300))).await;
    }
}

/// What the buyers were told, over all rounds.
#[derive(Default)]
struct Told {
    confirmed: HashSet<String>,
    refund_asked: HashSet<String>,
    refunded: HashSet<String>,
}

/// Every violation of "never money taken without seats" (and its converse), comparing the
/// provider with PostgreSQL; empty when all holds.
async fn violations(fake: &FakeToss, db: &tokio_postgres::Client, told: &Told) -> Vec<String> {
    let pg = pg_payments(db).await;
    let mut bad = Vec::new();
    // The provider's side: every order it knows.
    let mut kept_per_reservation: HashMap<&str, usize> = HashMap::new();
    let at_fake = fake.payments();
    for p in &at_fake {
        let order = p.order_id.as_str();
        let (captures, refunds) = (fake.captures(order), fake.refunds(order));
        if captures != 1 {
            bad.push(format!("{order}: {captures} captures at the provider"));
        }
        let Some(row) = pg.get(order) else {
            bad.push(format!(
                "{order}: captured, but PostgreSQL has no payment (it must be in flight before the call)"
            ));
            continue;
        };
        if row.payment_key.as_deref() != Some(p.payment_key.as_str()) {
            bad.push(format!("{order}: captured with key {}, PostgreSQL has {:?}", p.payment_key, row.payment_key));
        }
        match p.status {
            ProviderStatus::Done => {
                *kept_per_reservation.entry(&order[..32]).or_default() += 1;
                let seats_ok =
                    row.quantity > 0 && row.live_seats.len() as i64 == row.quantity && row.sold == row.quantity;
                if refunds != 0 || row.status != "done" || row.reservation_status != "confirmed" || !seats_ok {
                    bad.push(format!(
                        "{order}: MONEY WITHOUT SEATS? captured and not refunded ({refunds} refunds), PostgreSQL: {row:?}"
                    ));
                }
                if p.total_amount != row.amount {
                    bad.push(format!("{order}: captured {} but the order is for {}", p.total_amount, row.amount));
                }
            }
            ProviderStatus::Canceled => {
                let ended = matches!(row.status.as_str(), "cancelled" | "failed" | "aborted");
                let seats_back =
                    row.status != "cancelled" || (row.reservation_status == "cancelled" && row.live_seats.is_empty());
                if refunds != 1 || !ended || !seats_back {
                    bad.push(format!("{order}: refunded ({refunds} refunds), PostgreSQL: {row:?}"));
                }
            }
            other => bad.push(format!("{order}: the provider has it {other:?}")),
        }
    }
    for (reservation, kept) in kept_per_reservation {
        if kept > 1 {
            bad.push(format!("reservation {reservation}: charged {kept} times"));
        }
    }
    // PostgreSQL's side: every payment it has.
    for (order, row) in &pg {
        let found = fake.payment(order);
        let status = found.as_ref().map(|p| p.status);
        let ok = match row.status.as_str() {
            "done" => {
                status == Some(ProviderStatus::Done)
                    && found.as_ref().map(|p| &p.payment_key) == row.payment_key.as_ref()
                    && fake.captures(order) == 1
                    && row.reservation_status == "confirmed"
            }
            "cancelled" => status == Some(ProviderStatus::Canceled) && fake.refunds(order) == 1,
            "failed" | "ready" | "aborted" => status != Some(ProviderStatus::Done),
            _ => false,
        };
        if !ok {
            bad.push(format!("{order}: PostgreSQL has {row:?}, the provider {found:?}"));
        }
    }
    // Seats never sold without money.
    let confirmed: Vec<Uuid> = db
        .query("SELECT id FROM reservations WHERE status = 'confirmed'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let paid: HashSet<Uuid> = pg.values().filter(|p| p.status == "done").map(|p| p.reservation).collect();
    for r in confirmed.iter().filter(|r| !paid.contains(r)) {
        bad.push(format!("reservation {r}: confirmed without a done payment"));
    }
    for seat in doubly_sold_seats(db).await {
        bad.push(format!("seat {seat}: in two live reservations"));
    }
    // What the buyers were told stands.
    for order in &told.confirmed {
        let status = pg.get(order).map(|p| p.status.as_str());
        let ok = status == Some("done") || (told.refund_asked.contains(order) && status == Some("cancelled"));
        if !ok {
            bad.push(format!("{order}: confirmation acknowledged, PostgreSQL has {:?}", pg.get(order)));
        }
    }
    for order in &told.refunded {
        if pg.get(order).map(|p| p.status.as_str()) != Some("cancelled") {
            bad.push(format!("{order}: refund acknowledged, PostgreSQL has {:?}", pg.get(order)));
        }
    }
    bad
}

/// Test 2: random kill points during a payment burst, in several rounds; after every restart
/// the provider and PostgreSQL agree on every order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_of_a_payment_burst_never_keeps_money_without_seats() {
    let t0 = Instant::now();
    let seed = seed();
    let mut rng = Rng::new(seed);
    let fake = Arc::new(FakeToss::start(SECRET).await);
    let url = tiketi_testkit::fresh_database().await;
    let db = sql(&url).await;
    let log = log_path("payments-crash", seed);
    let env = provider_env(&fake, TOSS_TIMEOUT_MS, RECONCILE_AFTER_SECS, CAPTURE_WINDOW_SECS);
    let client = http();
    let mut server = Server::start_with(&url, &log, &env).await;
    let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (event, seat_ids) = create_event(&client, &server, &admin, HOLD_TTL_SECS, (4, 10, 25)).await;
    let seat_ids = Arc::new(seat_ids);
    let mut tokens = Vec::with_capacity(BUYERS);
    for i in 0..BUYERS {
        tokens.push(register(&client, &server, &format!("pay-crash-buyer{i}@example.com")).await);
    }

    let mut told = Told::default();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let (mut prepared, mut interrupted, mut interrupted_captured) = (0, 0, 0);
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.between(300, 2_500));
        let stop = Arc::new(AtomicBool::new(false));
        let shop = Arc::new(Shop {
            client: http(),
            base: server.base.clone(),
            event,
            seat_ids: seat_ids.clone(),
            stop: stop.clone(),
        });
        let mut buyers = tokio::task::JoinSet::new();
        for token in &tokens {
            buyers.spawn(shop.clone().buyer(token.clone(), Rng::new(rng.next_u64())));
        }
        let provider = tokio::spawn(vary_the_provider(fake.clone(), stop.clone(), Rng::new(rng.next_u64())));
        tokio::time::sleep(kill_after).await;
        server.kill();
        stop.store(true, Ordering::Release);
        provider.await.unwrap();
        fake.set_hold_after_capture(Duration::ZERO);
        let mut round_confirmed = 0;
        for seen in buyers.join_all().await {
            assert!(seen.unexpected.is_empty(), "round {round} (seed {seed}): {:?}", seen.unexpected);
            prepared += seen.prepared;
            round_confirmed += seen.confirmed.len();
            told.confirmed.extend(seen.confirmed);
            told.refund_asked.extend(seen.refund_asked);
            told.refunded.extend(seen.refunded);
            for (k, v) in seen.answers {
                *answers.entry(k).or_default() += v;
            }
        }
        // What the crash interrupted: in flight in PostgreSQL, and of those, captured already.
        let in_flight = pg_in_flight(&db).await;
        let captured = in_flight.iter().filter(|o| fake.captures(o) > 0).count();
        interrupted += in_flight.len();
        interrupted_captured += captured;

        let restarted = Instant::now();
        server = Server::start_with(&url, &log, &env).await;
        // Nobody asks about the event: start-up reconciliation settles it.
        eventually(
            &format!("round {round} (seed {seed}): nothing left in flight"),
            Duration::from_secs(30),
            || async { pg_in_flight(&db).await.is_empty().then_some(()) },
        )
        .await;
        let reconciled = restarted.elapsed();
        // Allow a moment for any refund of a capture that came too late (none expected).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let bad = violations(&fake, &db, &told).await;
            if bad.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} (seed {seed}, log {}): {} violations:\n{}",
                log.display(),
                bad.len(),
                bad.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "round {round}: killed after {kill_after:?} with {} payments in flight ({captured} captured, not \
             recorded); {round_confirmed} confirmations acknowledged; reconciled {reconciled:?} after restart",
            in_flight.len()
        );
    }
    let captures: usize = fake.payments().len();
    println!(
        "{prepared} orders prepared, {captures} captured, {} confirmations and {} refunds acknowledged; \
         {interrupted} payments interrupted in flight, {interrupted_captured} of them between capture and commit; \
         answers {answers:?}; total {:?}",
        told.confirmed.len(),
        told.refunded.len(),
        t0.elapsed()
    );
    assert!(!told.confirmed.is_empty(), "no confirmation was ever acknowledged: the burst exercised nothing");
    assert!(interrupted_captured > 0, "no kill landed between a capture and its commit (seed {seed})");
    server.kill();
    let _ = std::fs::remove_file(&log);
}
