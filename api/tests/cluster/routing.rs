//! Requests for many events, sent to random nodes, all succeed and land on one owner per
//! event; a WebSocket on one node sees holds made through another, for an event a third
//! node owns.

use crate::nodes::{Nodes, node_id, seat_ids};
use crate::support::{Rng, eventually, register};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const EVENTS: usize = 15;
const BUYERS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_to_random_nodes_land_on_one_owner_per_event_and_streams_cross_nodes() {
    let nodes = Nodes::start(3, "routing").await;
    let mut rng = Rng::new(7);
    let mut events = Vec::new();
    for i in 0..EVENTS {
        events.push(nodes.create_event(i % 3, 2, serde_json::json!({ "perUserLimit": 0 })).await);
    }
    let mut tokens = Vec::new();
    for b in 0..BUYERS {
        tokens.push(register(&nodes.client, nodes.node(b % 3), &format!("routing{b}@example.com")).await);
    }

    // Every buyer holds one seat of every event, each request through a random node.
    for &event in &events {
        let seats = seat_ids(&nodes, event).await;
        for (b, token) in tokens.iter().enumerate() {
            nodes.hold(rng.below(3) as usize, token, event, &[&seats[b]]).await;
        }
        // Reads through any node show every hold at once (the owner answers them).
        for via in 0..3 {
            let res = nodes.client.get(nodes.node(via).url(&format!("/events/{event}"))).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["availability"]["held"].as_u64(), Some(BUYERS as u64), "event {event} via node {via}");
        }
    }
    // A buyer's own reservations, looked up through any node (from the store, which trails
    // the owners by a group commit).
    for (b, token) in tokens.iter().enumerate() {
        let url = nodes.node((b + 1) % 3).url("/reservations/my");
        eventually(&format!("buyer {b}'s reservations"), Duration::from_secs(10), || async {
            let res = nodes.client.get(&url).bearer_auth(token).send().await.ok()?;
            let mine: Value = res.json().await.ok()?;
            (mine["data"].as_array()?.len() == EVENTS).then_some(())
        })
        .await;
    }

    // Every event was created once, whichever node the admin asked (the owner may be another).
    let db = crate::support::sql(&nodes.db).await;
    let created: i64 = db.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(created, EVENTS as i64, "events created through a non-owner were created again at the owner");

    // One owner per event: exactly one node has its actor, and it is the owner of record.
    let view = nodes.view(0).await;
    let mut hosts: HashMap<Uuid, Vec<String>> = HashMap::new();
    for i in 0..3 {
        for event in nodes.live_events(i).await {
            hosts.entry(event).or_default().push(node_id(i));
        }
    }
    for &event in &events {
        let owner = Nodes::owner(&view, event);
        assert_eq!(hosts.get(&event), Some(&vec![owner.clone()]), "event {event} (owner {owner})");
    }
    let mut forwarded = 0.0;
    for i in 0..3 {
        forwarded += nodes.metric(i, "tiketi_cluster_forwarded_requests_total").await;
    }
    assert!(forwarded > 0.0, "requests were spread over three nodes, yet none was forwarded");

    // The live stream across nodes: an event node B owns, watched on node A, held through C.
    let event = events[0];
    let owner: usize = Nodes::owner(&view, event).trim_start_matches("node-").parse().unwrap();
    let (a, c) = ((owner + 1) % 3, (owner + 2) % 3);
    let url = format!("{}/events/{event}/ws", nodes.node(a).url("").replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects on node A");
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let seq = snapshot["seq"].as_u64().unwrap();
    let seats = seat_ids(&nodes, event).await;
    let seat = &seats[BUYERS];
    nodes.hold(c, &tokens[0], event, &[seat]).await;
    loop {
        let message = next_json(&mut socket).await;
        if message["type"] != "seats" {
            continue;
        }
        assert!(message["seq"].as_u64().unwrap() > seq, "a batch after the snapshot: {message}");
        let changes = message["changes"].as_array().unwrap();
        if changes.iter().any(|c| c["id"] == seat.as_str() && c["status"] == "held") {
            break;
        }
    }
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the stream stays open")
            .expect("a WebSocket message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Close(frame) => panic!("closed by the server: {frame:?}"),
            _ => {}
        }
    }
}
