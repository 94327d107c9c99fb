//! PostgreSQL goes down under load and comes back.
//!
//! This test stops the test process's shared PostgreSQL cluster, so it lives in a test
//! binary of its own: no other test can be running against that cluster meanwhile.

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tiketi_api::settings::StoreKind;
use tiketi_api::{Application, Settings};
use tiketi_testkit::eventually;
use uuid::Uuid;

const ADMIN_EMAIL: &str = "admin@outage.local";
const ADMIN_PASSWORD: &str = "admin-password-for-outage";
const CAPACITY: usize = 64;

struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).bearer_auth(token).json(body).send().await.expect("request sent")
    }

    async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    async fn token(&self, path: &str, body: Value, expected: StatusCode) -> String {
        let res = self.client.post(self.url(path)).json(&body).send().await.expect("request sent");
        assert_eq!(res.status(), expected, "{path}");
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    async fn hold(&self, token: &str, event: &str, body: &Value) -> Response {
        self.post(&format!("/events/{event}/reservations"), token, body).await
    }

    /// An on-sale event: 10 rows of 50 seats and 2,000 standing tickets.
    async fn create_event(&self, admin: &str, hold_ttl_seconds: u64) -> Value {
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
        let rows: Vec<Value> =
            (0..10u8).map(|r| json!({ "label": ((b'A' + r) as char).to_string(), "seats": 50 })).collect();
        let body = json!({
            "title": "Outage Night", "venue": "Hall", "artist": "Band",
            "eventDate": fmt(now + time::Duration::days(30)),
            "saleStart": fmt(now - time::Duration::minutes(1)),
            "saleEnd": fmt(now + time::Duration::days(29)),
            "layout": { "tiers": [{ "name": "T1", "price": 1000 }],
                        "sections": [{ "name": "S1", "tier": 0, "rows": rows }] },
            "ticketTypes": [{ "name": "Standing", "price": 500, "capacity": 2000 }],
            "perUserLimit": 0,
            "holdTtlSeconds": hold_ttl_seconds,
        });
        let res = self.post("/admin/events", admin, &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    async fn cancel(&self, token: &str, id: Uuid) -> Response {
        self.post(&format!("/reservations/{id}/cancel"), token, &json!({})).await
    }
}

/// A 503 must say when to come back.
fn assert_retry_after(res: &Response, what: &str) {
    let value =
        res.headers().get(reqwest::header::RETRY_AFTER).unwrap_or_else(|| panic!("{what}: 503 without Retry-After"));
    let secs: u64 = value.to_str().unwrap().parse().unwrap_or_else(|_| panic!("{what}: Retry-After {value:?}"));
    assert!(secs >= 1, "{what}: Retry-After {secs}");
}

/// A hold of one standing ticket of `event`.
async fn ga_hold_of(api: &Api, event: &str) -> Value {
    let e: Value = api.get(&format!("/events/{event}")).await.json().await.unwrap();
    json!({ "ticketTypeId": e["ticketTypes"][0]["id"], "quantity": 1 })
}

fn reservation_id(body: &Value) -> Uuid {
    body["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no reservation id in {body}"))
}

/// What cancels answered: 200s (acknowledged, so they must be durable) and 503s.
#[derive(Default)]
struct Cancels {
    acked: Vec<Uuid>,
    refused: usize,
}

impl Cancels {
    async fn record(&mut self, id: Uuid, res: Response, what: &str) {
        match res.status() {
            StatusCode::OK => {
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["status"], "cancelled", "{what}: {body}");
                self.acked.push(id);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_retry_after(&res, what);
                self.refused += 1;
            }
            other => panic!("{what}: cancel {id} answered {other}: {}", res.text().await.unwrap_or_default()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_under_load_sheds_with_retry_after_and_loses_nothing_acknowledged() {
    let url = tiketi_testkit::fresh_database().await;
    let mut settings = Settings::for_tests();
    settings.store.kind = StoreKind::Postgres;
    settings.store.database_url = url.clone();
    settings.store.pool_size = 4;
    settings.journal.capacity = CAPACITY;
    settings.journal.max_batch = 16;
    // A cancel parked behind a dead database gives up (503) sooner.
    settings.events.durable_timeout_ms = 1_500;
    settings.auth.admin_email = ADMIN_EMAIL.into();
    settings.auth.admin_password = ADMIN_PASSWORD.into();
    settings.auth.jwt_secret = "outage-tests-secret-that-is-at-least-32-bytes".into();
    settings.demo.enabled = false;
    let app = Application::build(settings).await.expect("application builds on PostgreSQL");
    let state = app.state().clone();
    let api = Arc::new(Api {
        client: Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        base: format!("http://127.0.0.1:{}", app.port()),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let journal = || state.directory().journal();

    // The set-up, with the database up.
    let admin =
        api.token("/auth/login", json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }), StatusCode::OK).await;
    let event = api.create_event(&admin, 300).await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    let ticket_type = event["ticketTypes"][0]["id"].as_str().unwrap().to_owned();
    // A second event, first held while the database is down; and a third whose holds,
    // made before, lapse while it is down and the backlog is full.
    let lapsing = api.create_event(&admin, 2).await["id"].as_str().unwrap().to_owned();
    let idle = api.create_event(&admin, 6).await["id"].as_str().unwrap().to_owned();
    let mut buyers = Vec::new();
    for i in 0..4 {
        let body =
            json!({ "email": format!("outage{i}@example.com"), "password": "correct horse battery", "name": "B" });
        buyers.push(api.token("/auth/register", body, StatusCode::CREATED).await);
    }
    let seat_hold = json!({ "bestAvailable": { "quantity": 2 } });
    let ga_hold = json!({ "ticketTypeId": ticket_type, "quantity": 1 });

    // Acknowledged holds, by owner.
    let mut held: Vec<(usize, Uuid)> = Vec::new();
    let mut cancels = Cancels::default();
    for i in 0..30 {
        let body = if i % 2 == 0 { &seat_hold } else { &ga_hold };
        let res = api.hold(&buyers[i % 4], &event_id, body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        held.push((i % 4, reservation_id(&res.json().await.unwrap())));
    }
    for &(buyer, id) in &held[..6] {
        let res = api.cancel(&buyers[buyer], id).await;
        assert_eq!(res.status(), StatusCode::OK, "cancel with the database up");
        cancels.record(id, res, "cancel with the database up").await;
    }
    eventually("the journal to drain", Duration::from_secs(10), || async { (journal().backlog() == 0).then_some(()) })
        .await;

    // The other events' actors are live before the database goes away.
    assert_eq!(api.get(&format!("/events/{lapsing}")).await.status(), StatusCode::OK);
    let mut idle_holds = Vec::new();
    for buyer in &buyers[..2] {
        let res = api.hold(buyer, &idle, &ga_hold_of(&api, &idle).await).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        idle_holds.push(reservation_id(&res.json().await.unwrap()));
    }
    eventually("the journal to drain", Duration::from_secs(10), || async { (journal().backlog() == 0).then_some(()) })
        .await;
    // Cancels keep coming while the database goes away: each is acknowledged only if it
    // committed, and refused with 503 + Retry-After otherwise.
    let background = {
        let (api, buyers) = (api.clone(), buyers.clone());
        let targets: Vec<(usize, Uuid)> = held[6..18].to_vec();
        tokio::spawn(async move {
            let mut cancels = Cancels::default();
            for (buyer, id) in targets {
                let res = api.cancel(&buyers[buyer], id).await;
                cancels.record(id, res, "cancel while the database stops").await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            cancels
        })
    };
    tokio::time::sleep(Duration::from_millis(120)).await;
    tokio::task::spawn_blocking(|| tiketi_testkit::cluster().stop()).await.unwrap();

    // Reads are served by the event's actor, without the database.
    let res = api.get(&format!("/events/{event_id}")).await;
    assert_eq!(res.status(), StatusCode::OK, "event view with the database down");
    let res = api.get(&format!("/events/{event_id}/seats")).await;
    assert_eq!(res.status(), StatusCode::OK, "seat map with the database down");

    // Two holds in the other event, accepted before the backlog fills; they lapse while
    // it is full.
    let mut lapsing_holds = Vec::new();
    for buyer in &buyers[..2] {
        let res = api.hold(buyer, &lapsing, &seat_hold).await;
        // Its first seated hold: the answer names seats without asking the store.
        assert_eq!(res.status(), StatusCode::CREATED, "hold with the database down");
        lapsing_holds.push(reservation_id(&res.json().await.unwrap()));
    }
    // An idempotent hold too: checking its key must not need the database.
    let res = api
        .client
        .post(api.url(&format!("/events/{lapsing}/reservations")))
        .bearer_auth(&buyers[2])
        .header("idempotency-key", "hold-during-outage")
        .json(&seat_hold)
        .send()
        .await
        .expect("request sent");
    assert_eq!(res.status(), StatusCode::CREATED, "idempotent hold with the database down");
    lapsing_holds.push(reservation_id(&res.json().await.unwrap()));

    // Holds keep succeeding until the backlog is full, then get 503 + Retry-After, and
    // none succeeds after that while the database stays down.
    let mut accepted_while_down = 0;
    let mut refused = 0;
    let mut attempts = 0;
    while refused < 20 {
        attempts += 1;
        assert!(attempts < 10 * CAPACITY, "holds never got refused with the database down");
        let buyer = attempts % 4;
        let body = if attempts % 2 == 0 { &seat_hold } else { &ga_hold };
        let res = api.hold(&buyers[buyer], &event_id, body).await;
        match res.status() {
            StatusCode::CREATED => {
                assert_eq!(refused, 0, "a hold succeeded after the backlog was full, with the database down");
                accepted_while_down += 1;
                held.push((buyer, reservation_id(&res.json().await.unwrap())));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_retry_after(&res, "hold with a full backlog");
                assert_eq!(journal().backlog(), CAPACITY, "503 before the backlog was full");
                refused += 1;
            }
            other => panic!("hold with the database down answered {other}: {}", res.text().await.unwrap_or_default()),
        }
    }
    assert!(accepted_while_down >= 3, "holds stopped being accepted as soon as the database went down");
    println!("with the database down: {accepted_while_down} holds accepted, then {refused} refused with 503");

    // Cancels of committed holds and of holds the database has not seen: none may be
    // acknowledged while it is down.
    let not_yet_durable = held[held.len() - 3..].to_vec();
    for &(buyer, id) in held[18..22].iter().chain(&not_yet_durable) {
        let res = api.cancel(&buyers[buyer], id).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "cancel {id} with the database down");
        cancels.record(id, res, "cancel with the database down").await;
    }
    // The lapsed holds are released in memory even though their expiry cannot be queued.
    for (event, what) in [(&lapsing, "seats"), (&idle, "tickets")] {
        eventually(&format!("the holds of {event} to lapse"), Duration::from_secs(20), || async {
            let e: Value = api.get(&format!("/events/{event}")).await.json().await.ok()?;
            let held = if what == "seats" { &e["availability"]["held"] } else { &e["ticketTypes"][0]["held"] };
            (*held == 0).then_some(())
        })
        .await;
    }
    assert_eq!(journal().backlog(), CAPACITY, "the backlog drained with the database down");
    let during = background.await.unwrap();
    println!("cancels around the stop: {} acknowledged, {} refused with 503", during.acked.len(), during.refused);
    cancels.acked.extend(during.acked);
    assert!(journal().stats().failures.load(Ordering::Relaxed) > 0, "the journal never noticed the outage");

    // The database comes back: the backlog drains by itself.
    tokio::task::spawn_blocking(|| tiketi_testkit::cluster().start_again()).await.unwrap();
    eventually("the backlog to drain", Duration::from_secs(60), || async { (journal().backlog() == 0).then_some(()) })
        .await;
    tokio::time::timeout(Duration::from_secs(30), journal().flushed()).await.expect("everything queued is committed");
    assert_eq!(journal().stats().rejected.load(Ordering::Relaxed), 0, "entries rejected by the store");

    // Every acknowledged hold and cancel is in PostgreSQL.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let ids: Vec<Uuid> = held.iter().map(|&(_, id)| id).collect();
    let stored: BTreeMap<Uuid, String> = db
        .query("SELECT id, status FROM reservations WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for id in &ids {
        assert!(stored.contains_key(id), "acknowledged hold {id} is not in PostgreSQL");
    }
    for id in &cancels.acked {
        assert_eq!(stored[id], "cancelled", "acknowledged cancel {id}");
    }
    for (_, id) in &not_yet_durable {
        assert_eq!(stored[id], "held", "a refused cancel of {id} took effect");
    }
    // The expiries that found the backlog full reach PostgreSQL too, by themselves: nobody
    // touches those events again.
    let lapsed: Vec<Uuid> = lapsing_holds.iter().chain(&idle_holds).copied().collect();
    eventually("the lapsed holds to be expired in PostgreSQL", Duration::from_secs(20), || async {
        let rows = db
            .query("SELECT count(*) FROM reservations WHERE id = ANY($1) AND status = 'expired'", &[&lapsed])
            .await
            .unwrap();
        (rows[0].get::<_, i64>(0) == lapsed.len() as i64).then_some(())
    })
    .await;
    let doubled = db
        .query("SELECT seat_index, count(*) FROM reservation_items WHERE live GROUP BY 1 HAVING count(*) > 1", &[])
        .await
        .unwrap();
    assert!(doubled.is_empty(), "seats in two live reservations: {doubled:?}");

    // And the node serves writes again.
    let res = api.hold(&buyers[0], &event_id, &seat_hold).await;
    assert_eq!(res.status(), StatusCode::CREATED, "hold after recovery");
    let id = reservation_id(&res.json().await.unwrap());
    let res = api.cancel(&buyers[0], id).await;
    assert_eq!(res.status(), StatusCode::OK, "cancel after recovery");
    let (buyer, id) = not_yet_durable[0];
    let res = api.cancel(&buyers[buyer], id).await;
    assert_eq!(res.status(), StatusCode::OK, "cancel after recovery of a hold made during the outage");

    let _ = stop_tx.send(());
    server.await.unwrap().expect("clean shutdown");
}
