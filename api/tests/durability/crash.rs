//! SIGKILL during an on-sale burst, ten times, at seeded random moments: after each restart
//! on the same database every acknowledged cancel is still cancelled, no seat is in two
//! live reservations, the seat map the API serves is exactly the one PostgreSQL holds, the
//! counts add up, and holds past their expiry are released.

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Rng, Server, event_body, eventually, http, login, register, sql};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const BUYERS: usize = 20;
const ROUNDS: usize = 10;
const SECTIONS: u32 = 3;
const ROWS: u32 = 5;
const SEATS_PER_ROW: u32 = 10;
const SEATS: usize = (SECTIONS * ROWS * SEATS_PER_ROW) as usize;
const GENERAL: u64 = 60;
const HOLD_TTL_SECS: u64 = 2;

/// The run's seed: `TIKETI_CRASH_SEED`, or the clock. Printed so a failure reproduces.
fn seed() -> u64 {
    let seed = match std::env::var("TIKETI_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("TIKETI_CRASH_SEED must be an unsigned integer"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
    };
    println!("crash test seed: {seed} (reproduce with TIKETI_CRASH_SEED={seed})");
    seed
}

/// What one buyer saw during a burst.
#[derive(Default)]
struct Seen {
    /// Holds answered 201, with their reservation serial.
    holds: Vec<(Uuid, u32)>,
    /// Cancels answered 200.
    cancels: Vec<Uuid>,
    /// Answers no buyer should ever get.
    unexpected: Vec<String>,
    requests: usize,
}

/// An overload answer must say when to come back.
fn check_overload(res: &Response, seen: &mut Seen, what: &str) {
    if res.headers().get(reqwest::header::RETRY_AFTER).is_none() {
        seen.unexpected.push(format!("{what}: {} without Retry-After", res.status()));
    }
}

struct Burst {
    client: Client,
    base: String,
    event: String,
    ticket_type: String,
    seat_ids: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
}

impl Burst {
    /// One buyer: holds (specific seats, best available, standing) and cancels its own
    /// holds, as fast as it can, until the server dies.
    async fn buyer(self: Arc<Self>, token: String, mut rng: Rng) -> Seen {
        let mut seen = Seen::default();
        let mut mine: Vec<Uuid> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            seen.requests += 1;
            if !mine.is_empty() && rng.chance(35) {
                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                let url = format!("{}/api/v1/reservations/{id}/cancel", self.base);
                let Ok(res) = self.client.post(url).bearer_auth(&token).send().await else { break };
                match res.status() {
                    StatusCode::OK => {
                        // The status line is the acknowledgement, whether or not the body
                        // makes it out before the kill.
                        seen.cancels.push(id);
                        if let Ok(body) = res.json::<Value>().await
                            && body["status"] != "cancelled"
                        {
                            seen.unexpected.push(format!("cancel {id} answered 200 with {body}"));
                        }
                    }
                    // Expired meanwhile; anything else is a bug (a 404 would be a hold the
                    // live server acknowledged and then lost).
                    StatusCode::CONFLICT => {
                        let body = res.json::<Value>().await.unwrap_or_default();
                        if body["error"]["code"] != "invalid_state" {
                            seen.unexpected.push(format!("cancel {id}: 409 {body}"));
                        }
                    }
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                        check_overload(&res, &mut seen, "cancel")
                    }
                    other => {
                        seen.unexpected.push(format!("cancel {id}: {other} {}", res.text().await.unwrap_or_default()))
                    }
                }
            } else {
                let body = match rng.below(10) {
                    0..=4 => {
                        let n = rng.between(1, 3) as usize;
                        let mut ids: Vec<&String> = Vec::with_capacity(n);
                        while ids.len() < n {
                            let id = &self.seat_ids[rng.below(self.seat_ids.len() as u64) as usize];
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                        json!({ "seatIds": ids })
                    }
                    5..=7 => json!({ "bestAvailable": { "quantity": rng.between(1, 4) } }),
                    _ => json!({ "ticketTypeId": self.ticket_type, "quantity": rng.between(1, 3) }),
                };
                let url = format!("{}/api/v1/events/{}/reservations", self.base, self.event);
                let Ok(res) = self.client.post(url).bearer_auth(&token).json(&body).send().await else { break };
                match res.status() {
                    StatusCode::CREATED => {
                        let Ok(r) = res.json::<Value>().await else { break };
                        let id: Uuid = r["id"].as_str().and_then(|s| s.parse().ok()).expect("reservation id");
                        // TKT-YYYYMMDD-NNNNN
                        let serial = r["number"].as_str().and_then(|n| n.rsplit('-').next()?.parse().ok());
                        seen.holds.push((id, serial.expect("reservation number")));
                        mine.push(id);
                    }
                    StatusCode::CONFLICT => {
                        let answer = res.json::<Value>().await.unwrap_or_default();
                        if answer["error"]["code"] != "seats_unavailable" {
                            seen.unexpected.push(format!("hold {body}: 409 {answer}"));
                        }
                    }
                    StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                        check_overload(&res, &mut seen, "hold")
                    }
                    other => {
                        seen.unexpected.push(format!("hold {body}: {other} {}", res.text().await.unwrap_or_default()))
                    }
                }
            }
        }
        seen
    }
}

/// The operator's view of the event, read in one consistent snapshot.
struct SqlView {
    seq: i64,
    /// seat id -> (status in `seats`, status of the live reservation holding it, if any).
    seats: BTreeMap<String, (String, Option<String>)>,
    /// `ticket_types` counters.
    ga_held: i64,
    ga_sold: i64,
    /// The same, summed from live GA reservations.
    ga_live_held: i64,
    ga_live_sold: i64,
    /// Items whose `live` flag disagrees with their reservation's status.
    stale_items: i64,
}

async fn sql_view(db: &mut tokio_postgres::Client, event: Uuid) -> SqlView {
    let tx = db
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .unwrap();
    let seq: i64 = tx.query_one("SELECT seq FROM events WHERE id = $1", &[&event]).await.unwrap().get(0);
    let seats = tx
        .query(
            "SELECT s.seat_id, s.status, r.status FROM seats s
             LEFT JOIN reservation_items i ON i.event_id = s.event_id AND i.seat_index = s.seat_index AND i.live
             LEFT JOIN reservations r ON r.id = i.reservation_id
             WHERE s.event_id = $1",
            &[&event],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), (r.get::<_, String>(1), r.get::<_, Option<String>>(2))))
        .collect();
    let ga = tx.query_one("SELECT held, sold FROM ticket_types WHERE event_id = $1", &[&event]).await.unwrap();
    let live = tx
        .query_one(
            "SELECT COALESCE(SUM(quantity) FILTER (WHERE status = 'held'), 0)::bigint,
                    COALESCE(SUM(quantity) FILTER (WHERE status = 'confirmed'), 0)::bigint
             FROM reservations WHERE event_id = $1 AND ticket_type_id IS NOT NULL",
            &[&event],
        )
        .await
        .unwrap();
    let stale_items: i64 = tx
        .query_one(
            "SELECT count(*) FROM reservation_items i JOIN reservations r ON r.id = i.reservation_id
             WHERE i.event_id = $1 AND i.live <> (r.status IN ('held', 'confirmed'))",
            &[&event],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    SqlView {
        seq,
        seats,
        ga_held: i64::from(ga.get::<_, i32>(0)),
        ga_sold: i64::from(ga.get::<_, i32>(1)),
        ga_live_held: live.get(0),
        ga_live_sold: live.get(1),
        stale_items,
    }
}

async fn get_json(client: &Client, url: String) -> Value {
    let res = client.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(res.status(), StatusCode::OK, "GET {url}");
    res.json().await.unwrap()
}

/// The availability counts add up: seats to the layout's size, standing to its capacity.
fn assert_counts_add_up(event: &Value, round: usize) {
    let a = &event["availability"];
    let n = |v: &Value| v.as_u64().unwrap();
    assert_eq!(
        n(&a["available"]) + n(&a["held"]) + n(&a["sold"]) + n(&a["blocked"]),
        n(&a["total"]),
        "round {round}: {a}"
    );
    assert_eq!(n(&a["total"]), SEATS as u64, "round {round}: {a}");
    let t = &event["ticketTypes"][0];
    assert_eq!(n(&t["available"]) + n(&t["held"]) + n(&t["sold"]), GENERAL, "round {round}: {t}");
    assert_eq!(n(&t["capacity"]), GENERAL, "round {round}: {t}");
}

/// Waits until the API and PostgreSQL are at the same seq, then compares them seat by seat.
async fn assert_api_matches_postgres(
    client: &Client,
    server: &Server,
    db: &mut tokio_postgres::Client,
    event: Uuid,
    round: usize,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let before = get_json(client, server.url(&format!("/events/{event}"))).await;
        let map = get_json(client, server.url(&format!("/events/{event}/seats"))).await;
        let view = sql_view(db, event).await;
        let version = map["version"].as_i64().unwrap();
        if version == view.seq && before["version"].as_i64() == Some(version) {
            assert_counts_add_up(&before, round);
            assert_eq!(view.stale_items, 0, "round {round}: reservation_items.live disagrees with the reservation");
            let api: BTreeMap<String, String> = map["seats"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(api.len(), SEATS);
            assert_eq!(view.seats.len(), SEATS);
            for (seat, (table_status, live)) in &view.seats {
                let expected = match live.as_deref() {
                    None => "available",
                    Some("held") => "held",
                    Some("confirmed") => "sold",
                    Some(other) => panic!("round {round}: seat {seat} live in a {other} reservation"),
                };
                assert_eq!(table_status, expected, "round {round}: seats.status of {seat} at seq {version}");
                assert_eq!(api[seat], expected, "round {round}: API status of {seat} at seq {version}");
            }
            let held = api.values().filter(|s| *s == "held").count() as u64;
            assert_eq!(before["availability"]["held"].as_u64(), Some(held), "round {round}");
            let ga = &before["ticketTypes"][0];
            assert_eq!((view.ga_held, view.ga_sold), (view.ga_live_held, view.ga_live_sold), "round {round}: GA");
            assert_eq!(ga["held"].as_i64(), Some(view.ga_held), "round {round}: GA held");
            assert_eq!(ga["sold"].as_i64(), Some(view.ga_sold), "round {round}: GA sold");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "round {round}: API (seq {version}) and PostgreSQL (seq {}) never agreed",
            view.seq
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn assert_cancels_durable(db: &tokio_postgres::Client, cancels: &[Uuid], round: usize) {
    let rows = db.query("SELECT id, status FROM reservations WHERE id = ANY($1)", &[&cancels]).await.unwrap();
    let found: BTreeMap<Uuid, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for id in cancels {
        assert_eq!(
            found.get(id).map(String::as_str),
            Some("cancelled"),
            "round {round}: reservation {id} was acknowledged as cancelled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_cancel_and_never_double_sells() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let url = tiketi_testkit::fresh_database().await;
    let mut db = sql(&url).await;
    let log = std::env::temp_dir().join(format!("tiketi-crash-{seed}-{}.log", std::process::id()));
    println!("server log: {}", log.display());
    let client = http();

    let mut server = Server::start(&url, &log).await;
    let admin = login(&client, &server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let body = event_body(
        SECTIONS,
        ROWS,
        SEATS_PER_ROW,
        GENERAL as u32,
        json!({ "holdTtlSeconds": HOLD_TTL_SECS, "perUserLimit": 0, "maxPerReservation": 4 }),
    );
    let res = client.post(server.url("/admin/events")).bearer_auth(&admin).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let event: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let ticket_type = created["ticketTypes"][0]["id"].as_str().unwrap().to_owned();
    let seat_ids: Arc<Vec<String>> = Arc::new(
        get_json(&client, server.url(&format!("/events/{event}/seats"))).await["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect(),
    );
    let mut tokens = Vec::with_capacity(BUYERS);
    for i in 0..BUYERS {
        tokens.push(register(&client, &server, &format!("crash-buyer{i}@example.com")).await);
    }

    let mut acked_cancels: Vec<Uuid> = Vec::new();
    let mut acked_holds: HashSet<Uuid> = HashSet::new();
    let (mut requests, mut vanished) = (0, 0);
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.between(100, 2_500));
        let burst = Arc::new(Burst {
            client: http(),
            base: server.base.clone(),
            event: event.to_string(),
            ticket_type: ticket_type.clone(),
            seat_ids: seat_ids.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        });
        let mut buyers = tokio::task::JoinSet::new();
        for token in &tokens {
            buyers.spawn(burst.clone().buyer(token.clone(), Rng::new(rng.next_u64())));
        }
        tokio::time::sleep(kill_after).await;
        server.kill();
        burst.stop.store(true, Ordering::Release);
        let mut round_holds = Vec::new();
        for seen in buyers.join_all().await {
            assert!(seen.unexpected.is_empty(), "round {round}: {:?}", seen.unexpected);
            requests += seen.requests;
            acked_cancels.extend(seen.cancels);
            round_holds.extend(seen.holds);
        }

        server = Server::start(&url, &log).await;
        // Straight from PostgreSQL, before the event's actor is even activated.
        assert_cancels_durable(&db, &acked_cancels, round).await;
        let doubled = db
            .query("SELECT seat_index, count(*) FROM reservation_items WHERE live GROUP BY 1 HAVING count(*) > 1", &[])
            .await
            .unwrap();
        assert!(doubled.is_empty(), "round {round}: seats in two live reservations: {doubled:?}");
        let ids: Vec<Uuid> = round_holds.iter().map(|&(id, _)| id).collect();
        let persisted: HashSet<Uuid> = db
            .query("SELECT id FROM reservations WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Holds may be acknowledged before they are durable: those lost in the crash are
        // allowed (their seats are simply on sale again), and counted for the record.
        // But the journal is ordered and each group commit atomic, so what survived is a
        // prefix: every lost hold came after (by serial) every surviving one.
        let (kept, lost): (Vec<_>, Vec<_>) = round_holds.iter().partition(|(id, _)| persisted.contains(id));
        let last_kept = kept.iter().map(|&&(_, serial)| serial).max().unwrap_or(0);
        let first_lost = lost.iter().map(|&&(_, serial)| serial).min().unwrap_or(u32::MAX);
        assert!(
            last_kept < first_lost,
            "round {round}: hold #{first_lost} was lost although the later hold #{last_kept} survived"
        );
        vanished += lost.len();
        acked_holds.extend(ids);

        // Activates the event's actor from the store and compares it with the store.
        assert_api_matches_postgres(&client, &server, &mut db, event, round).await;

        // Every hold lapses within its TTL: all of them end up expired (or cancelled) and
        // every seat and ticket is on sale again, in the API and in PostgreSQL.
        let wait = Duration::from_secs(HOLD_TTL_SECS + 20);
        eventually(&format!("round {round}: every hold released"), wait, || async {
            let held: i64 = db
                .query_one("SELECT count(*) FROM reservations WHERE event_id = $1 AND status = 'held'", &[&event])
                .await
                .unwrap()
                .get(0);
            let e = get_json(&client, server.url(&format!("/events/{event}"))).await;
            let a = &e["availability"];
            let free = held == 0
                && a["available"].as_u64() == Some(SEATS as u64)
                && e["ticketTypes"][0]["available"].as_u64() == Some(GENERAL);
            free.then_some(())
        })
        .await;
        assert_api_matches_postgres(&client, &server, &mut db, event, round).await;
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE status NOT IN ('expired', 'cancelled')),
                        count(*) FILTER (WHERE status = 'expired' AND expires_at > updated_at)
                 FROM reservations WHERE event_id = $1",
                &[&event],
            )
            .await
            .unwrap();
        let (live, early): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!((live, early), (0, 0), "round {round}: live or prematurely expired reservations remain");
        assert_cancels_durable(&db, &acked_cancels, round).await;
        println!(
            "round {round}: killed after {kill_after:?}; {} cancels acknowledged so far, {vanished} of {} \
             acknowledged holds lost to crashes so far",
            acked_cancels.len(),
            acked_holds.len()
        );
    }
    assert!(requests > 0, "the bursts sent no requests");
    assert!(!acked_holds.is_empty(), "no hold was ever acknowledged: the burst did not exercise anything");
    server.kill();
    let _ = std::fs::remove_file(&log);
}
