//! The payments harness: the application on a fresh PostgreSQL database, paying through a
//! fake Toss server, and the checks of the books shared by every test.

use crate::support::{TestApp, spawn_app_with};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tiketi_api::settings::{ProviderKind, StoreKind};
use tiketi_payments::ProviderStatus;
use tiketi_payments::fake::FakeToss;

/// The secret key the fake accepts and the application is given.
pub const SECRET: &str = "test_sk_tiketi_payments_end_to_end";

/// The price of one seat of [`Shop::event`]'s single tier.
pub const SEAT_PRICE: i64 = 1000;

/// What a test may change in the application's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `payments.toss_timeout_ms`.
    pub toss_timeout_ms: u64,
    /// `payments.reconcile_after_secs`.
    pub reconcile_after_secs: u64,
    /// `server.request_timeout_ms`, if not the default.
    pub request_timeout_ms: Option<u64>,
    /// Point the application at this provider URL instead of the fake (a dead address).
    pub provider_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self { toss_timeout_ms: 500, reconcile_after_secs: 2, request_timeout_ms: None, provider_url: None }
    }
}

/// The application, the fake provider, and a plain connection to the same database.
pub struct Shop {
    pub app: TestApp,
    pub fake: FakeToss,
    pub db: tokio_postgres::Client,
    url: String,
    config: Config,
}

impl Shop {
    /// With the default [`Config`].
    pub async fn open() -> Self {
        Self::with(Config::default()).await
    }

    pub async fn with(config: Config) -> Self {
        let url = tiketi_testkit::fresh_database().await;
        let fake = FakeToss::start(SECRET).await;
        let app = boot(&url, &fake, &config).await;
        let (db, connection) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect to the test db");
        tokio::spawn(connection);
        Self { app, fake, db, url, config }
    }

    /// Stops the application cleanly and starts a new one on the same database and provider.
    pub async fn restart(self) -> Self {
        let Self { app, fake, db, url, config } = self;
        app.stop().await;
        let app = boot(&url, &fake, &config).await;
        Self { app, fake, db, url, config }
    }

    /// An on-sale event of one row of `seats` seats at [`SEAT_PRICE`] (`S1-A-1`...), with
    /// `extra` fields (e.g. `holdTtlSeconds`, `perUserLimit`).
    pub async fn event(&self, seats: u32, extra: Value) -> String {
        self.app.create_event(1, 1, seats, 0, extra).await["id"].as_str().unwrap().to_owned()
    }

    /// Holds the named seats of `event`, returning the reservation.
    pub async fn hold(&self, token: &str, event: &str, seats: &[&str]) -> Value {
        self.app.hold_ok(token, event, &json!({ "seatIds": seats })).await
    }

    pub async fn prepare(&self, token: &str, reservation: &str) -> Response {
        self.app.post("/payments/prepare", Some(token), &json!({ "reservationId": reservation })).await
    }

    /// Prepares and insists on a 200, returning the payment.
    pub async fn prepare_ok(&self, token: &str, reservation: &str) -> Value {
        ok(self.prepare(token, reservation).await, "prepare").await
    }

    pub async fn confirm(&self, token: &str, order: &str, key: &str, amount: i64) -> Response {
        let body = json!({ "orderId": order, "paymentKey": key, "amount": amount });
        self.app.post("/payments/confirm", Some(token), &body).await
    }

    /// Confirms and insists on a 200, returning the payment.
    pub async fn confirm_ok(&self, token: &str, order: &str, key: &str, amount: i64) -> Value {
        ok(self.confirm(token, order, key, amount).await, "confirm").await
    }

    /// `POST /payments/{key}/cancel` with a body.
    pub async fn refund(&self, token: &str, key: &str, body: &Value) -> Response {
        self.app.post(&format!("/payments/{key}/cancel"), Some(token), body).await
    }

    /// `POST /reservations/{id}/cancel`.
    pub async fn cancel_reservation(&self, token: &str, id: &str) -> Response {
        self.app.post(&format!("/reservations/{id}/cancel"), Some(token), &json!({})).await
    }

    /// `GET /payments/{order}`, insisting on a 200.
    pub async fn payment(&self, token: &str, order: &str) -> Value {
        ok(self.app.get(&format!("/payments/{order}"), Some(token)).await, "GET payment").await
    }

    /// `GET /reservations/{id}`, insisting on a 200.
    pub async fn reservation(&self, token: &str, id: &str) -> Value {
        ok(self.app.get(&format!("/reservations/{id}"), Some(token)).await, "GET reservation").await
    }

    /// Holds, prepares and confirms `seats` with payment key `key`; returns the payment.
    pub async fn buy(&self, token: &str, event: &str, seats: &[&str], key: &str) -> Value {
        let r = self.hold(token, event, seats).await;
        let p = self.prepare_ok(token, r["id"].as_str().unwrap()).await;
        let paid = self.confirm_ok(token, str_of(&p, "orderId"), key, p["amount"].as_i64().unwrap()).await;
        assert_eq!(paid["status"], "done", "{paid}");
        paid
    }

    /// Captures and refunds of `order` at the provider.
    pub fn assert_money(&self, order: &str, captures: u32, refunds: u32) {
        let counted = (self.fake.captures(order), self.fake.refunds(order));
        assert_eq!(counted, (captures, refunds), "order {order}: (captures, refunds) at the provider");
    }

    /// The payment's row, if any.
    pub async fn payment_row(&self, order: &str) -> Option<PaymentRow> {
        let sql = "SELECT status, payment_key, amount, failure_code, approved_at IS NOT NULL, \
                   cancelled_at IS NOT NULL FROM payments WHERE order_id = $1";
        self.db.query_opt(sql, &[&order]).await.expect("query payments").map(|row| PaymentRow {
            status: row.get(0),
            payment_key: row.get(1),
            amount: row.get(2),
            failure_code: row.get(3),
            approved: row.get(4),
            cancelled: row.get(5),
        })
    }

    /// The payment's row, insisting it exists.
    pub async fn payment_row_of(&self, order: &str) -> PaymentRow {
        self.payment_row(order).await.unwrap_or_else(|| panic!("no payments row for order {order}"))
    }

    /// The reservation's status in the database.
    pub async fn reservation_status(&self, id: &str) -> String {
        let id: uuid::Uuid = id.parse().expect("a reservation id");
        let row = self.db.query_one("SELECT status FROM reservations WHERE id = $1", &[&id]).await;
        row.unwrap_or_else(|e| panic!("reservation {id} in the database: {e}")).get(0)
    }

    /// Each seat's status in the database's `seats` view.
    pub async fn db_seats(&self, event: &str) -> BTreeMap<String, String> {
        let id: uuid::Uuid = event.parse().expect("an event id");
        let rows = self.db.query("SELECT seat_id, status FROM seats WHERE event_id = $1", &[&id]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// The seats of `event` by status, as the API and the database agree on them (waiting
    /// for the write-behind journal to catch up).
    pub async fn seats(&self, event: &str) -> BTreeMap<String, String> {
        self.app
            .eventually("the database's seats to match the API's", || async {
                let api = self.app.seat_statuses(event).await;
                (api == self.db_seats(event).await).then_some(api)
            })
            .await
    }

    /// Asserts the named seats have `status` and every other seat is available, in the API
    /// and in the database.
    pub async fn assert_seats(&self, event: &str, seats: &[&str], status: &str) {
        let all = self.seats(event).await;
        for (seat, actual) in &all {
            let expected = if seats.contains(&seat.as_str()) { status } else { "available" };
            assert_eq!(actual, expected, "seat {seat}: {all:?}");
        }
    }

    /// The books balance, at the provider and in the database: see the crate's doc.
    pub async fn assert_books(&self) {
        let rows = self
            .db
            .query(
                "SELECT p.order_id, p.status, p.payment_key, p.amount, r.status FROM payments p \
                 JOIN reservations r ON r.id = p.reservation_id ORDER BY p.order_id",
                &[],
            )
            .await
            .unwrap();
        let mut orders = BTreeSet::new();
        for row in &rows {
            let (order, status, key, amount, reservation): (String, String, Option<String>, i64, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let money = (self.fake.captures(&order), self.fake.refunds(&order));
            let at_provider = self.fake.payment(&order);
            let what = format!("order {order} ({status}, reservation {reservation}): (captures, refunds) {money:?}");
            match status.as_str() {
                "done" => {
                    assert_eq!(money, (1, 0), "{what}");
                    assert_eq!(reservation, "confirmed", "{what}");
                    let p = at_provider.unwrap_or_else(|| panic!("{what}: unknown to the provider"));
                    assert_eq!((Some(p.payment_key), p.total_amount, p.status), (key, amount, ProviderStatus::Done));
                }
                "cancelled" => {
                    assert_eq!(money, (1, 1), "{what}");
                    assert_eq!(reservation, "cancelled", "{what}");
                    let p = at_provider.unwrap_or_else(|| panic!("{what}: unknown to the provider"));
                    assert_eq!((Some(p.payment_key), p.status), (key, ProviderStatus::Canceled), "{what}");
                }
                "ready" | "failed" | "aborted" => assert_eq!(money.0, money.1, "{what}: money kept, nothing sold"),
                _ => panic!("{what}: left in flight"),
            }
            orders.insert(order);
        }
        for p in self.fake.payments() {
            assert!(orders.contains(&p.order_id), "the provider has a payment for unknown order {}", p.order_id);
        }
        // Seats sold only to confirmed reservations paid in full; confirmed reservations
        // own all their seats.
        let sold = self
            .db
            .query(
                "SELECT s.seat_id, r.status, EXISTS (SELECT 1 FROM payments p \
                     WHERE p.reservation_id = r.id AND p.status = 'done') \
                 FROM seats s LEFT JOIN reservations r ON r.id = s.reservation_id WHERE s.status = 'sold'",
                &[],
            )
            .await
            .unwrap();
        for row in &sold {
            let (seat, status, paid): (String, Option<String>, bool) = (row.get(0), row.get(1), row.get(2));
            assert_eq!((status.as_deref(), paid), (Some("confirmed"), true), "sold seat {seat}");
        }
        let confirmed = self
            .db
            .query(
                "SELECT r.id::text, r.quantity, \
                     (SELECT count(*) FROM reservation_items i WHERE i.reservation_id = r.id AND i.live), \
                     (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id AND p.status = 'done') \
                 FROM reservations r WHERE r.status = 'confirmed'",
                &[],
            )
            .await
            .unwrap();
        for row in &confirmed {
            let (id, quantity, live, paid): (String, i32, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
            assert_eq!((i64::from(quantity), paid), (live, 1), "confirmed reservation {id}: (seats, done payments)");
        }
    }

    /// [`Shop::assert_books`] once the database has caught up with the API on `event`.
    pub async fn assert_consistent(&self, event: &str) {
        self.seats(event).await;
        self.assert_books().await;
    }
}

/// A payment as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub status: String,
    pub payment_key: Option<String>,
    pub amount: i64,
    pub failure_code: Option<String>,
    pub approved: bool,
    pub cancelled: bool,
}

async fn boot(url: &str, fake: &FakeToss, config: &Config) -> TestApp {
    spawn_app_with(|s| {
        s.store.kind = StoreKind::Postgres;
        s.store.database_url = url.to_owned();
        s.store.pool_size = 4;
        s.payments.provider = ProviderKind::Toss;
        s.payments.toss_base_url = config.provider_url.clone().unwrap_or_else(|| fake.base_url());
        s.payments.toss_secret_key = SECRET.into();
        s.payments.toss_timeout_ms = config.toss_timeout_ms;
        s.payments.reconcile_after_secs = config.reconcile_after_secs;
        if let Some(ms) = config.request_timeout_ms {
            s.server.request_timeout_ms = ms;
        }
    })
    .await
}

/// Insists on a 200 and returns the body.
pub async fn ok(res: Response, what: &str) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{what}: {body}");
    body
}

/// A string field of a JSON object.
pub fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no string {field} in {v}"))
}

/// The `Retry-After` header of a response, in seconds.
pub fn retry_after(res: &Response) -> u64 {
    let value = res.headers().get(reqwest::header::RETRY_AFTER).expect("a Retry-After header");
    value.to_str().unwrap().parse().expect("Retry-After in seconds")
}

/// Sleeps until `at` (an RFC 3339 instant from the API) plus `margin`.
pub async fn sleep_past(at: &str, margin: Duration) {
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
    let left = at - time::OffsetDateTime::now_utc();
    let left = Duration::try_from(left).unwrap_or_default();
    tokio::time::sleep(left + margin).await;
}
