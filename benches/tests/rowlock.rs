//! The row-lock baseline end to end: its router on port 0 against a fresh PostgreSQL
//! database, driven over HTTP like the benchmarks drive it, checked over HTTP and in SQL.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tiketi_benches::baseline::{RowLock, Settings};

struct TestApp {
    base: String,
    http: reqwest::Client,
    db: tokio_postgres::Client,
}

async fn spawn_app() -> TestApp {
    let database_url = tiketi_testkit::fresh_database().await;
    let settings = Settings {
        database_url: database_url.clone(),
        pool_size: 20,
        sweep_interval: Duration::from_millis(100),
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let app = RowLock::build(&settings, listener).await.expect("build the baseline");
    let base = format!("http://127.0.0.1:{}/api/v1", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let (db, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    TestApp { base, http: reqwest::Client::new(), db }
}

impl TestApp {
    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await;
        let response = response.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn buyer(&self, n: usize) -> String {
        let body = json!({ "email": format!("buyer{n}@example.com"), "password": "irrelevant", "name": "Buyer" });
        let (status, body) = self.post("/auth/register", "", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// An event of `sections` (name, price, rows of `seats`), as Tiketi's admin API takes it.
    async fn event(&self, sections: &[(&str, i64, &[&str], u32)], hold_ttl_secs: u64) -> String {
        let tiers: Vec<Value> =
            sections.iter().map(|(name, price, ..)| json!({ "name": name, "price": price })).collect();
        let sections: Vec<Value> = sections
            .iter()
            .enumerate()
            .map(|(tier, (name, _, rows, seats))| {
                let rows: Vec<Value> = rows.iter().map(|label| json!({ "label": label, "seats": seats })).collect();
                json!({ "name": name, "tier": tier, "rows": rows })
            })
            .collect();
        let body = json!({
            "title": "Race night",
            "venue": "Bench Hall",
            "eventDate": "2030-01-01T20:00:00Z",
            "saleStart": "2020-01-01T00:00:00Z",
            "saleEnd": "2030-01-01T19:00:00Z",
            "layout": { "tiers": tiers, "sections": sections },
            "perUserLimit": 0,
            "holdTtlSeconds": hold_ttl_secs,
        });
        let (status, body) = self.post("/admin/events", "admin", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("an event id").to_owned()
    }

    /// 100 seats: section S1, rows A-E of 20 seats.
    async fn hundred_seats(&self) -> String {
        self.event(&[("S1", 1000, &["A", "B", "C", "D", "E"], 20)], 300).await
    }

    async fn hold(&self, event: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/events/{event}/reservations"), token, body).await
    }

    async fn seat_statuses(&self, event: &str) -> HashMap<String, String> {
        let (status, body) = self.get(&format!("/events/{event}/seats"), "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let seats = body["seats"].as_array().expect("seats");
        seats.iter().map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned())).collect()
    }

    /// Seats held or sold by more than one live reservation, and seats whose status
    /// disagrees with the reservations that list them: both must be empty.
    async fn double_holds(&self) -> Vec<String> {
        let rows = self
            .db
            .query(
                "SELECT rs.seat_id FROM rowlock.reservation_seats rs
                 JOIN rowlock.reservations r ON r.id = rs.reservation_id
                 WHERE r.status IN ('held', 'confirmed')
                 GROUP BY rs.event_id, rs.seat_id HAVING count(*) > 1
                 UNION ALL
                 SELECT s.seat_id FROM rowlock.seats s
                 LEFT JOIN rowlock.reservations r ON r.id = s.reservation_id
                 WHERE (s.status = 'held') <> (r.status IS NOT DISTINCT FROM 'held')
                    OR (s.status = 'sold') <> (r.status IS NOT DISTINCT FROM 'confirmed')",
                &[],
            )
            .await
            .expect("query");
        rows.iter().map(|r| r.get(0)).collect()
    }
}

fn seat_ids(reservation: &Value) -> Vec<String> {
    reservation["seatIds"].as_array().expect("seatIds").iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// `S1-A-12` -> (`S1-A`, 12).
fn row_and_number(seat: &str) -> (&str, u32) {
    let (row, number) = seat.rsplit_once('-').expect("SECTION-ROW-NUMBER");
    (row, number.parse().expect("a number"))
}

#[tokio::test]
async fn fifty_buyers_racing_for_ten_seats_get_exactly_ten_holds() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let mut buyers = Vec::new();
    for n in 0..50 {
        buyers.push(app.buyer(n).await);
    }
    let app = std::sync::Arc::new(app);
    let mut races = tokio::task::JoinSet::new();
    for (n, token) in buyers.into_iter().enumerate() {
        let (app, event) = (app.clone(), event.clone());
        races.spawn(async move {
            let seat = format!("S1-A-{}", n % 10 + 1);
            let (status, body) = app.hold(&event, &token, json!({ "seatIds": [seat] })).await;
            (seat, status, body)
        });
    }
    let mut held = Vec::new();
    while let Some(result) = races.join_next().await {
        let (seat, status, body) = result.expect("buyer task");
        match status {
            StatusCode::CREATED => {
                assert_eq!(body["status"], "held");
                assert_eq!(body["amount"], 1000);
                assert!(body["number"].as_str().unwrap().starts_with("TKT-"), "{body}");
                assert_eq!(seat_ids(&body), [seat.as_str()]);
                held.push(seat);
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "seats_unavailable", "{body}");
                assert_eq!(body["error"]["details"]["seatIds"], json!([seat]), "the 409 names the seat");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    held.sort();
    let expected: Vec<String> = {
        let mut all: Vec<String> = (1..=10).map(|n| format!("S1-A-{n}")).collect();
        all.sort();
        all
    };
    assert_eq!(held, expected, "exactly one hold per seat");
    assert!(app.double_holds().await.is_empty(), "no seat is held twice");
    let statuses = app.seat_statuses(&event).await;
    assert_eq!(statuses.values().filter(|s| *s == "held").count(), 10);
    let (_, summary) = app.get(&format!("/events/{event}"), "").await;
    assert_eq!(summary["availability"], json!({ "available": 90, "held": 10, "sold": 0, "blocked": 0, "total": 100 }));
}

#[tokio::test]
async fn overlapping_multi_seat_holds_never_share_a_seat_or_deadlock() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let mut buyers = Vec::new();
    for n in 0..50 {
        buyers.push(app.buyer(n).await);
    }
    let app = std::sync::Arc::new(app);
    let mut races = tokio::task::JoinSet::new();
    for (n, token) in buyers.into_iter().enumerate() {
        let (app, event) = (app.clone(), event.clone());
        races.spawn(async move {
            // Three of the same ten seats, named in different orders.
            let mut seats: Vec<String> = (0..3).map(|k| format!("S1-A-{}", (n + k * 3) % 10 + 1)).collect();
            if n % 2 == 1 {
                seats.reverse();
            }
            let (status, body) = app.hold(&event, &token, json!({ "seatIds": seats })).await;
            (seats, status, body)
        });
    }
    let mut taken = HashSet::new();
    while let Some(result) = races.join_next().await {
        let (seats, status, body) = result.expect("buyer task");
        match status {
            StatusCode::CREATED => {
                for seat in seat_ids(&body) {
                    assert!(taken.insert(seat.clone()), "{seat} held twice");
                }
            }
            StatusCode::CONFLICT => {
                let named = body["error"]["details"]["seatIds"].as_array().expect("named seats");
                assert!(!named.is_empty() && named.iter().all(|s| seats.contains(&s.as_str().unwrap().to_owned())));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!taken.is_empty());
    assert!(app.double_holds().await.is_empty(), "no seat is held twice");
    let statuses = app.seat_statuses(&event).await;
    assert_eq!(statuses.values().filter(|s| *s == "held").count(), taken.len());
}

#[tokio::test]
async fn concurrent_best_available_holds_get_distinct_adjacent_seats() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let mut buyers = Vec::new();
    for n in 0..40 {
        buyers.push(app.buyer(n).await);
    }
    let app = std::sync::Arc::new(app);
    let mut races = tokio::task::JoinSet::new();
    for (n, token) in buyers.into_iter().enumerate() {
        let (app, event) = (app.clone(), event.clone());
        races.spawn(async move {
            let adjacent = n % 4 != 0;
            let body = json!({ "bestAvailable": { "quantity": 3, "adjacent": adjacent } });
            let (status, body) = app.hold(&event, &token, body).await;
            (adjacent, status, body)
        });
    }
    let mut taken = HashSet::new();
    let mut holds = 0;
    while let Some(result) = races.join_next().await {
        let (adjacent, status, body) = result.expect("buyer task");
        match status {
            StatusCode::CREATED => {
                holds += 1;
                let seats = seat_ids(&body);
                assert_eq!(seats.len(), 3, "{body}");
                for seat in &seats {
                    assert!(taken.insert(seat.clone()), "{seat} held twice");
                }
                if adjacent {
                    let (row, first) = row_and_number(&seats[0]);
                    let expected: Vec<String> = (first..first + 3).map(|n| format!("{row}-{n}")).collect();
                    assert_eq!(seats, expected, "side by side in one row");
                }
            }
            StatusCode::CONFLICT => assert_eq!(body["error"]["code"], "seats_unavailable", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // 120 seats asked for, 100 on sale: however the rows end up packed, most holds fit.
    assert!(holds >= 25, "only {holds} of 40 best-available holds succeeded on 100 seats");
    assert!(app.double_holds().await.is_empty(), "no seat is held twice");
    let (_, summary) = app.get(&format!("/events/{event}"), "").await;
    assert_eq!(summary["availability"]["held"], taken.len());
}

#[tokio::test]
async fn best_available_takes_the_dearest_front_seats_first_and_adjacent_ones_together() {
    let app = spawn_app().await;
    // Cheap section first in the layout; best-available must still start with the dear one.
    let event = app.event(&[("CHEAP", 1000, &["A"], 10), ("VIP", 5000, &["A", "B"], 5)], 300).await;
    let buyer = app.buyer(1).await;
    let (status, body) = app.hold(&event, &buyer, json!({ "seatIds": ["VIP-A-2"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Adjacent: VIP-A-1 is alone, so the first run of three is VIP-A-3..5.
    let (status, body) = app.hold(&event, &buyer, json!({ "bestAvailable": { "quantity": 3 } })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(seat_ids(&body), ["VIP-A-3", "VIP-A-4", "VIP-A-5"]);
    assert_eq!(body["amount"], 15000);
    // Not adjacent: the best seats in order, wherever they are.
    let body = json!({ "bestAvailable": { "quantity": 3, "adjacent": false } });
    let (status, body) = app.hold(&event, &buyer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(seat_ids(&body), ["VIP-A-1", "VIP-B-1", "VIP-B-2"]);
    // Four together no longer fit in VIP (B-3..5 is three), so they come from CHEAP.
    let (status, body) = app.hold(&event, &buyer, json!({ "bestAvailable": { "quantity": 4 } })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(seat_ids(&body), ["CHEAP-A-1", "CHEAP-A-2", "CHEAP-A-3", "CHEAP-A-4"]);
    // In a section: only there.
    let body = json!({ "bestAvailable": { "quantity": 2, "section": "CHEAP" } });
    let (status, body) = app.hold(&event, &buyer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(seat_ids(&body), ["CHEAP-A-5", "CHEAP-A-6"]);
    // Seven together do not exist: 409, naming the quantity.
    let (status, body) = app.hold(&event, &buyer, json!({ "bestAvailable": { "quantity": 7 } })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "seats_unavailable");
    assert_eq!(body["error"]["details"]["quantity"], 7);
    let body = json!({ "bestAvailable": { "quantity": 1, "section": "BALCONY" } });
    let (status, body) = app.hold(&event, &buyer, body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "bestAvailable.section");
}

#[tokio::test]
async fn cancelling_a_hold_releases_its_seats() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let (alice, bob) = (app.buyer(1).await, app.buyer(2).await);
    let (status, hold) = app.hold(&event, &alice, json!({ "seatIds": ["S1-B-1", "S1-B-2"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let id = hold["id"].as_str().unwrap();
    let (status, _) = app.hold(&event, &bob, json!({ "seatIds": ["S1-B-2"] })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Only its owner may cancel it.
    let (status, body) = app.post(&format!("/reservations/{id}/cancel"), &bob, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.post(&format!("/reservations/{id}/cancel"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(seat_ids(&body), ["S1-B-1", "S1-B-2"]);
    let statuses = app.seat_statuses(&event).await;
    assert_eq!((statuses["S1-B-1"].as_str(), statuses["S1-B-2"].as_str()), ("available", "available"));
    // Cancelling again changes nothing.
    let (status, body) = app.post(&format!("/reservations/{id}/cancel"), &alice, json!({})).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("cancelled")));
    let (status, body) = app.hold(&event, &bob, json!({ "seatIds": ["S1-B-2"] })).await;
    assert_eq!(status, StatusCode::CREATED, "released seats can be held again: {body}");
    assert!(app.double_holds().await.is_empty());
}

#[tokio::test]
async fn confirming_a_hold_sells_its_seats() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let alice = app.buyer(1).await;
    let (_, hold) = app.hold(&event, &alice, json!({ "seatIds": ["S1-C-5"] })).await;
    let id = hold["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/reservations/{id}/confirm"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "confirmed");
    assert_eq!(app.seat_statuses(&event).await["S1-C-5"], "sold");
    let (status, body) = app.post(&format!("/reservations/{id}/confirm"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "invalid_state");
    let (status, body) = app.get(&format!("/reservations/{id}"), &alice).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("confirmed")));
    assert!(app.double_holds().await.is_empty());
}

#[tokio::test]
async fn lapsed_holds_expire_and_release_their_seats() {
    let app = spawn_app().await;
    let event = app.event(&[("S1", 1000, &["A"], 10)], 1).await;
    let alice = app.buyer(1).await;
    let (status, hold) = app.hold(&event, &alice, json!({ "seatIds": ["S1-A-1"] })).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let id = hold["id"].as_str().unwrap().to_owned();
    let path = format!("/reservations/{id}");
    tiketi_testkit::eventually("the hold to expire", Duration::from_secs(10), || async {
        let (_, body) = app.get(&path, &alice).await;
        (body["status"] == "expired").then_some(())
    })
    .await;
    assert_eq!(app.seat_statuses(&event).await["S1-A-1"], "available");
    let (status, body) = app.post(&format!("{path}/confirm"), &alice, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn bad_requests_get_tiketis_error_format() {
    let app = spawn_app().await;
    let event = app.hundred_seats().await;
    let alice = app.buyer(1).await;
    let (status, body) = app.hold(&event, &alice, json!({ "seatIds": ["S1-A-1", "S1-Z-9"] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "seatIds");
    let (status, body) = app.hold(&event, &alice, json!({ "seatIds": ["S1-A-1", "S1-A-1"] })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = app.hold(&unknown.to_string(), &alice, json!({ "seatIds": ["S1-A-1"] })).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::NOT_FOUND, &json!("event_not_found")));
    let (status, body) = app.hold(&event, "not-a-token", json!({ "seatIds": ["S1-A-1"] })).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::UNAUTHORIZED, &json!("unauthorized")));
    let (status, body) = app.hold(&event, &alice, json!({ "seatIds": ["S1-A-1"], "bestAvailable": {} })).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("bad_request")));
    let (status, body) = app.post("/auth/login", "", json!({ "email": "buyer1@example.com", "password": "x" })).await;
    assert_eq!((status, &body["token"]), (StatusCode::OK, &json!(alice)));
    let (status, body) = app.post("/auth/register", "", json!({ "email": "BUYER1@example.com", "name": "x" })).await;
    assert_eq!((status, &body["error"]["code"]), (StatusCode::CONFLICT, &json!("email_taken")));
}
