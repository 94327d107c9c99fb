//! The live seat stream over WebSocket, with a real client: a snapshot plus every frame
//! applied in order is the REST seat map; `resume` sends exactly what was missed; a client
//! that stops reading is resynced or dropped without touching anyone else.

use crate::support::{TestApp, rfc3339_from_now, spawn_app, spawn_app_with};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A stream subscriber that keeps its own copy of the seat map.
struct Live {
    socket: Socket,
    seats: BTreeMap<String, String>,
    seq: u64,
    stream: String,
    snapshots: usize,
    batches: usize,
    /// Every message other than snapshots and seat batches, in order.
    others: Vec<Value>,
}

impl Live {
    async fn connect(app: &TestApp, event: &str, query: &str) -> Self {
        let url = format!("{}/events/{event}/ws{query}", app.url("").replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
        Self { socket, seats: BTreeMap::new(), seq: 0, stream: String::new(), snapshots: 0, batches: 0, others: vec![] }
    }

    /// The next message, failing after 10 s.
    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10)).await.expect("a message within 10 s")
    }

    async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(limit, self.socket.next()).await.ok()?;
            match message.expect("the stream stays open").expect("a WebSocket message") {
                Message::Text(text) => return Some(serde_json::from_str(&text).expect("JSON")),
                Message::Close(frame) => panic!("closed by the server: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Applies one server message, checking the order of seqs.
    fn apply(&mut self, message: &Value) {
        match message["type"].as_str().unwrap() {
            "snapshot" => {
                self.seats = message["seats"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
                    .collect();
                self.seq = message["seq"].as_u64().unwrap();
                self.stream = message["stream"].as_str().unwrap().to_owned();
                self.snapshots += 1;
            }
            "seats" => {
                let seq = message["seq"].as_u64().unwrap();
                assert!(seq > self.seq, "seq {seq} after {}: {message}", self.seq);
                self.seq = seq;
                for change in message["changes"].as_array().unwrap() {
                    let id = change["id"].as_str().unwrap();
                    assert!(self.seats.contains_key(id), "unknown seat {id}");
                    self.seats.insert(id.to_owned(), change["status"].as_str().unwrap().to_owned());
                }
                self.batches += 1;
            }
            _ => self.others.push(message.clone()),
        }
    }

    /// Reads and applies messages until the map is at `seq`.
    async fn catch_up(&mut self, seq: u64) {
        while self.seq < seq {
            let message = self.next().await;
            self.apply(&message);
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::text(message.to_string())).await.expect("sent");
    }
}

/// The REST seat map: its version and each seat's status.
async fn rest_map(app: &TestApp, event: &str) -> (u64, BTreeMap<String, String>) {
    let map = app.seat_map(event).await;
    let seats = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
        .collect();
    (map["version"].as_u64().unwrap(), seats)
}

/// Buyers who take `rounds` best-available holds each, concurrently; returns the statuses seen.
async fn burst(app: &Arc<TestApp>, event: &str, buyers: usize, rounds: usize) -> Vec<Duration> {
    let mut tokens = Vec::new();
    for i in 0..buyers {
        tokens.push(app.register(&format!("burst-{}-{i}@example.com", uuid::Uuid::new_v4().simple())).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for token in tokens {
        let (app, event) = (app.clone(), event.to_owned());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..rounds {
                let start = Instant::now();
                let res = app.hold(&token, &event, &json!({ "bestAvailable": { "quantity": 2 } })).await;
                latencies.push(start.elapsed());
                assert!(
                    matches!(res.status(), StatusCode::CREATED | StatusCode::CONFLICT),
                    "hold: {} {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                );
            }
            latencies
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// The sum of a metric's samples (all label sets) in `GET /metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_plus_every_batch_in_order_equals_the_rest_seat_map_through_holds_and_expiries() {
    every_batch_in_order(1).await;
}

/// The same with the stream's runtime on two threads: a connection's task and the sweeper
/// that writes its frames then run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_arrives_in_order_with_the_stream_on_two_threads() {
    every_batch_in_order(2).await;
}

async fn every_batch_in_order(stream_workers: usize) {
    let app = Arc::new(spawn_app_with(|s| s.stream.workers = stream_workers).await);
    let event = app.create_event(2, 4, 10, 0, json!({ "perUserLimit": 0, "holdTtlSeconds": 1 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    // One subscriber checked in detail; more on the same sweeper, each pinged throughout, so
    // their tasks write pongs into the outboxes the sweeper writes frames into, from either
    // thread.
    let mut others = Vec::new();
    for _ in 0..8 {
        let mut other = Live::connect(&app, &id, "").await;
        let snapshot = other.next().await;
        other.apply(&snapshot);
        others.push(other);
    }
    let mut live = Live::connect(&app, &id, "").await;
    let first = live.next().await;
    assert_eq!(first["type"], "snapshot", "{first}");
    live.apply(&first);
    assert_eq!(live.seats.len(), 80);
    assert_eq!(first["status"], "on_sale");

    // Holds from eight buyers while their earlier holds lapse (1 s TTL), read concurrently.
    let done = Arc::new(AtomicBool::new(false));
    let holds = {
        let (app, id, done) = (app.clone(), id.clone(), done.clone());
        tokio::spawn(async move {
            for _ in 0..3 {
                burst(&app, &id, 8, 10).await;
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut pings = 0u8;
    while !done.load(Ordering::Acquire) {
        if let Some(message) = live.next_within(Duration::from_millis(100)).await {
            live.apply(&message);
        }
        for other in &mut others {
            pings = pings.wrapping_add(1);
            other.socket.send(Message::Ping(vec![pings].into())).await.expect("a ping is sent");
        }
    }
    holds.await.unwrap();
    // Every hold lapses within a second of the burst.
    app.eventually("every hold expired", || async { (app.availability(&id).await["held"] == 0).then_some(()) }).await;

    let (version, rest) = rest_map(&app, &id).await;
    live.catch_up(version).await;
    assert_eq!(live.seq, version, "the stream is at the REST map's version");
    assert_eq!(live.seats, rest, "the streamed map equals the REST map");
    assert!(live.seats.values().all(|s| s == "available"));
    assert!(live.batches > 1, "batches: {}", live.batches);
    assert_eq!(live.snapshots, 1, "one snapshot, then only batches");
    for other in &mut others {
        // `apply` checks each seq is past the last; pongs are skipped by `next`.
        other.catch_up(version).await;
        assert_eq!(other.seats, rest, "every subscriber's map equals the REST map");
        assert_eq!(other.snapshots, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_sends_exactly_the_missed_changes_and_a_snapshot_when_it_cannot() {
    let app = Arc::new(spawn_app_with(|s| s.stream.replay_frames = 4).await);
    let event = app.create_event(1, 2, 10, 0, json!({ "perUserLimit": 0 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let buyer = app.register("resumer@example.com").await;

    let mut live = Live::connect(&app, &id, "").await;
    let snapshot = live.next().await;
    live.apply(&snapshot);
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    live.catch_up(rest_map(&app, &id).await.0).await;
    let (since, stream, mut seen) = (live.seq, live.stream.clone(), live.seats.clone());
    drop(live);

    // Two holds while disconnected, each its own frame.
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-2", "S1-A-3"] })).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-B-1"] })).await;
    let (version, rest) = rest_map(&app, &id).await;

    let mut back = Live::connect(&app, &id, &format!("?since={since}&stream={stream}")).await;
    (back.seq, back.seats) = (since, seen.clone());
    let mut missed = Vec::new();
    while back.seq < version {
        let message = back.next().await;
        assert_eq!(message["type"], "seats", "a resume starts without a snapshot: {message}");
        for change in message["changes"].as_array().unwrap() {
            missed.push((change["id"].as_str().unwrap().to_owned(), change["status"].as_str().unwrap().to_owned()));
        }
        back.apply(&message);
    }
    let held = |id: &str| (id.to_owned(), "held".to_owned());
    assert_eq!(missed, [held("S1-A-2"), held("S1-A-3"), held("S1-B-1")], "exactly the missed changes");
    seen.extend(missed);
    assert_eq!(seen, rest, "the old map plus the missed changes is the REST map");
    assert!(back.next_within(Duration::from_millis(200)).await.is_none(), "nothing else was sent");

    // Too old for the replay buffer (4 frames): a snapshot instead.
    for seat in ["S1-B-2", "S1-B-3", "S1-B-4", "S1-B-5", "S1-B-6"] {
        app.hold_ok(&buyer, &id, &json!({ "seatIds": [seat] })).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    back.send(json!({ "type": "resume", "since": since })).await;
    let answer = loop {
        let message = back.next().await;
        if message["type"] == "snapshot" {
            break message;
        }
        back.apply(&message);
    };
    back.apply(&answer);
    assert_eq!(back.seats, rest_map(&app, &id).await.1);

    // A seq from another stream (say, before the actor restarted) also gets a snapshot.
    let other = uuid::Uuid::new_v4();
    let mut stranger = Live::connect(&app, &id, &format!("?since={}&stream={other}", back.seq)).await;
    assert_eq!(stranger.next().await["type"], "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_resynced_or_dropped_and_others_hold_as_before() {
    let app = Arc::new(
        spawn_app_with(|s| {
            s.stream.channel_capacity = 4;
            s.stream.send_timeout_ms = 500;
            s.stream.tick_ms = 5;
        })
        .await,
    );
    // 40,000 seats: every snapshot is a few megabytes.
    let event = app.create_event(4, 20, 500, 0, json!({ "perUserLimit": 0, "holdTtlSeconds": 1 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let mut healthy = Live::connect(&app, &id, "").await;
    let snapshot = healthy.next().await;
    healthy.apply(&snapshot);

    let without = p99(burst(&app, &id, 8, 25).await);

    // The stalled client asks for snapshots and never reads another byte.
    let url = format!("{}/events/{id}/ws", app.url("").replacen("http", "ws", 1));
    let (mut stalled, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for _ in 0..4 {
        stalled.send(Message::text(json!({ "type": "resume", "since": 0 }).to_string())).await.unwrap();
    }
    let with = p99(burst(&app, &id, 8, 25).await);
    println!("hold p99 without a stalled client {without:?}, with one {with:?}");

    let (resyncs, dropped) = app
        .eventually("the stalled client resynced or dropped", || async {
            let (resyncs, dropped) =
                (metric(&app, "tiketi_ws_resyncs_total").await, metric(&app, "tiketi_ws_dropped_total").await);
            (resyncs + dropped > 0.0).then_some((resyncs, dropped))
        })
        .await;
    println!("resyncs {resyncs}, dropped {dropped}");

    // The healthy subscriber missed nothing: its map is the REST map.
    let (version, rest) = rest_map(&app, &id).await;
    healthy.catch_up(version).await;
    assert_eq!(healthy.seats, rest);
    assert_eq!(healthy.snapshots, 1, "the healthy subscriber was never resynced");
    drop(stalled);
}

#[tokio::test]
async fn the_holder_is_told_when_a_hold_lapses_and_nobody_else_is() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 10, 0, json!({ "holdTtlSeconds": 1 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let holder = app.register("holder@example.com").await;
    let other = app.register("other@example.com").await;

    let mut mine = Live::connect(&app, &id, &format!("?token={holder}")).await;
    let first = mine.next().await;
    mine.apply(&first);
    // The other buyer authenticates with a first message instead of the query.
    let mut theirs = Live::connect(&app, &id, "").await;
    let first = theirs.next().await;
    theirs.apply(&first);
    theirs.send(json!({ "type": "auth", "token": other })).await;

    let reservation = app.hold_ok(&holder, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    let expired = loop {
        let message = mine.next().await;
        mine.apply(&message);
        if message["type"] == "reservation_expired" {
            break message;
        }
    };
    assert_eq!(expired["reservationId"], reservation["id"]);
    assert_eq!(mine.seats["S1-A-1"], "available");
    theirs.catch_up(mine.seq).await;
    assert!(theirs.next_within(Duration::from_millis(200)).await.is_none());
    assert!(theirs.others.is_empty(), "the other buyer got: {:?}", theirs.others);
}

#[tokio::test]
async fn bad_messages_get_an_error_and_the_stream_goes_on() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let mut live = Live::connect(&app, &id, "").await;
    let first = live.next().await;
    live.apply(&first);

    live.send(json!({ "type": "subscribe", "everything": true })).await;
    let error = live.next().await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("bad_message")), "{error}");
    live.send(json!({ "type": "auth", "token": "not-a-token" })).await;
    let error = live.next().await;
    assert_eq!(error["code"], "unauthorized", "{error}");

    let buyer = app.register("after-errors@example.com").await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-2"] })).await;
    let batch = live.next().await;
    assert_eq!(batch["type"], "seats", "{batch}");
    assert_eq!(batch["changes"], json!([{ "id": "S1-A-2", "status": "held" }]));
    assert_eq!(batch["counts"]["held"], 1);
}

#[tokio::test]
async fn the_upgrade_refuses_a_malformed_handshake_a_bad_token_an_unknown_event_and_connections_past_the_limit() {
    let app = spawn_app_with(|s| s.stream.max_connections = 1).await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let refused = |query: String| {
        let url = format!("{}/events/{query}", app.url("").replacen("http", "ws", 1));
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
                    (response.status().as_u16(), body["error"]["code"].as_str().unwrap().to_owned(), response)
                }
                other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r.status())),
            }
        }
    };
    let (status, code, _) = refused(format!("{id}/ws?token=forged")).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, code, _) = refused(format!("{}/ws", uuid::Uuid::new_v4())).await;
    assert_eq!((status, code.as_str()), (404, "event_not_found"));
    // A malformed handshake is refused, naming the header: (headers sent, status, header named).
    let ws = app.url(&format!("/events/{id}/ws"));
    let key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, StatusCode, &str); 3] = [
        (&[], StatusCode::BAD_REQUEST, "connection:"),
        (
            &[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket"), ("sec-websocket-version", "8"), key],
            StatusCode::UPGRADE_REQUIRED,
            "sec-websocket-version:",
        ),
        (
            &[("connection", "upgrade"), ("upgrade", "websocket"), ("sec-websocket-version", "13")],
            StatusCode::BAD_REQUEST,
            "sec-websocket-key:",
        ),
    ];
    for (headers, status, named) in cases {
        let request = headers.iter().fold(app.client.get(&ws), |r, (name, value)| r.header(*name, *value));
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{headers:?}");
        if status == StatusCode::UPGRADE_REQUIRED {
            assert_eq!(response.headers()["sec-websocket-version"], "13", "the version this server speaks");
        }
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().starts_with(named), "{body}");
    }

    let mut first = Live::connect(&app, &id, "").await;
    assert_eq!(first.next().await["type"], "snapshot");
    let (status, code, response) = refused(format!("{id}/ws")).await;
    assert_eq!((status, code.as_str()), (503, "service_unavailable"));
    assert!(response.headers().contains_key("retry-after"), "{:?}", response.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_follow_the_event_when_its_actor_stops_and_comes_back() {
    let app = spawn_app().await;
    // Not on sale yet, so that an admin may passivate it.
    let later = json!({ "saleStart": rfc3339_from_now(time::Duration::hours(1)) });
    let event = app.create_event(1, 2, 5, 0, later).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let block = |seat: &str| json!({ "seatIds": [seat] });
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut live = Live::connect(&app, &id, "").await;
        let snapshot = live.next().await;
        live.apply(&snapshot);
        watchers.push(live);
    }
    let res = app.post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &block("S1-A-1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (version, _) = rest_map(&app, &id).await;
    for live in &mut watchers {
        live.catch_up(version).await;
    }
    let first_stream = watchers[0].stream.clone();

    let res = app.post(&format!("/admin/actors/{id}/passivate"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK, "passivated");
    let res = app.post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &block("S1-B-5")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let (version, rest) = rest_map(&app, &id).await;
    assert_eq!(rest["S1-B-5"], "blocked");
    for live in &mut watchers {
        live.catch_up(version).await;
        assert_eq!(live.seats, rest, "each watcher followed the event to its new actor");
        assert_ne!(live.stream, first_stream, "from the new actor's stream");
        assert_eq!(live.snapshots, 2, "one snapshot from each actor");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_every_connection_and_none_keeps_the_actor_once_they_are_gone() {
    let app = spawn_app().await;
    // Not on sale, no holds: only its subscribers keep the actor in memory, and no frame
    // comes that would show their sweeper they left.
    let later = json!({ "saleStart": rfc3339_from_now(time::Duration::hours(1)) });
    let event = app.create_event(1, 1, 5, 0, later).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let actor =
        || async { app.get(&format!("/admin/actors/{id}"), Some(&app.admin)).await.json::<Value>().await.unwrap() };
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut live = Live::connect(&app, &id, "").await;
        assert_eq!(live.next().await["type"], "snapshot");
        watchers.push(live);
    }
    let seen =
        app.eventually("three subscribers", || async { (actor().await["subscribers"] == 3).then_some(()) }).await;
    assert_eq!(seen, ());
    assert_eq!(actor().await["pinned"], "subscribers");

    for mut live in watchers {
        live.socket.close(None).await.unwrap();
    }
    let after = app
        .eventually("no subscriber left", || async {
            let actor = actor().await;
            (actor["subscribers"] == 0 && actor["pinned"].is_null()).then_some(actor)
        })
        .await;
    assert_eq!(after["subscribers"], 0, "{after}");
    let res = app.post(&format!("/admin/actors/{id}/passivate"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK, "nothing keeps the actor now");
}

#[tokio::test]
async fn a_client_that_closes_gets_the_closing_handshake_back() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let mut live = Live::connect(&app, event["id"].as_str().unwrap(), "").await;
    assert_eq!(live.next().await["type"], "snapshot");
    live.socket.close(None).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), live.socket.next()).await.expect("an answer");
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "the server answers the close: {reply:?}");
}

#[tokio::test]
async fn pings_are_answered_in_between_whole_frames() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 40, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let mut live = Live::connect(&app, &id, "").await;
    let first = live.next().await;
    live.apply(&first);
    // Pings while frames are written: the server's pongs and its own frames share the wire,
    // and the client's reader fails on a frame cut into by another.
    for n in 1..=20u8 {
        live.socket.send(Message::Ping(vec![n].into())).await.expect("a ping");
        let buyer = app.register(&format!("pinger{n}@example.com")).await;
        app.hold_ok(&buyer, &id, &json!({ "seatIds": [format!("S1-A-{n}")] })).await;
    }
    let mut pongs = Vec::new();
    while live.seq < 20 || pongs.len() < 20 {
        let message = tokio::time::timeout(Duration::from_secs(10), live.socket.next()).await.expect("a message");
        match message.expect("the stream stays open").expect("a well-formed WebSocket message") {
            Message::Text(text) => live.apply(&serde_json::from_str(&text).expect("JSON")),
            Message::Pong(payload) => pongs.push(payload[0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pongs, (1..=20).collect::<Vec<u8>>(), "each ping answered once, in order");
    assert_eq!(live.seats.values().filter(|s| *s == "held").count(), 20);
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_hold_up_the_shutdown() {
    let app = spawn_app_with(|s| {
        s.stream.send_timeout_ms = 300;
        s.server.shutdown_deadline_secs = 10;
    })
    .await;
    // 300,000 seats: a snapshot of ~12 MB, more than both ends' socket buffers hold (4 MB
    // to send and 6 MB to receive at most, by Linux's defaults).
    let event = app.create_event(24, 25, 500, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let url = format!("{}/events/{id}/ws", app.url("").replacen("http", "ws", 1));
    let (_stuck, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
    let mut live = Live::connect(&app, &id, "").await;
    assert_eq!(live.next().await["type"], "snapshot");
    // The shutdown waits for every live stream's slot, the stuck one's included (its
    // writes give up after the send timeout), then flushes: a hang past the deadline
    // would make it unclean.
    app.stop().await;
}

#[tokio::test]
async fn shutting_down_closes_live_connections_and_exits_cleanly() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let mut live = Live::connect(&app, &id, "").await;
    assert_eq!(live.next().await["type"], "snapshot");
    let stopping = tokio::spawn(app.stop());
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match live.socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
    .expect("the server closes the stream when it shuts down");
    assert_eq!(closed, Some(1001), "going away");
    stopping.await.unwrap();
}
