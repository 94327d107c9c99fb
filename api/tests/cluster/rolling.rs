//! A rolling restart of all three nodes under load, as Kubernetes does it: a node leaves
//! the load balancer (preStop), gets SIGTERM, hands its shards off, exits, and comes back.
//! Clients see no error at all: every move is absorbed by the facade's own rerouting.

use crate::nodes::{Nodes, assert_api_matches_postgres, seat_ids, seats_body};
use crate::support::{Rng, http, register, sql};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use uuid::Uuid;

const EVENTS: usize = 8;
const BUYERS: usize = 8;

#[derive(Default)]
struct Seen {
    requests: usize,
    errors: Vec<String>,
}

struct Load {
    client: Client,
    /// The nodes in service (behind the load balancer).
    in_service: RwLock<Vec<String>>,
    events: Vec<(Uuid, Vec<String>)>,
    stop: AtomicBool,
}

impl Load {
    /// One buyer: holds a seat of its own in a random event, reads the event, cancels the
    /// hold (a durable command, with an Idempotency-Key), again and again.
    async fn buyer(self: Arc<Self>, b: usize, token: String, mut rng: Rng) -> Seen {
        let mut seen = Seen::default();
        while !self.stop.load(Ordering::Acquire) {
            let (event, seats) = &self.events[rng.below(self.events.len() as u64) as usize];
            let seat = &seats[b];
            let base = self.pick(&mut rng);
            seen.requests += 1;
            let res = self
                .client
                .post(format!("{base}/api/v1/events/{event}/reservations"))
                .bearer_auth(&token)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&seats_body(&[seat]))
                .send()
                .await;
            let id = match res {
                Ok(res) if res.status() == StatusCode::CREATED => {
                    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
                }
                Ok(res) => {
                    seen.errors.push(format!(
                        "hold via {base}: {} {}",
                        res.status(),
                        res.text().await.unwrap_or_default()
                    ));
                    continue;
                }
                Err(e) => {
                    seen.errors.push(format!("hold via {base}: {e}"));
                    continue;
                }
            };
            seen.requests += 1;
            let base = self.pick(&mut rng);
            match self.client.get(format!("{base}/api/v1/events/{event}")).send().await {
                Ok(res) if res.status() == StatusCode::OK => {}
                Ok(res) => seen.errors.push(format!("read via {base}: {}", res.status())),
                Err(e) => seen.errors.push(format!("read via {base}: {e}")),
            }
            seen.requests += 1;
            let base = self.pick(&mut rng);
            let res = self
                .client
                .post(format!("{base}/api/v1/reservations/{id}/cancel"))
                .bearer_auth(&token)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .send()
                .await;
            match res {
                Ok(res) if res.status() == StatusCode::OK => {}
                Ok(res) => seen.errors.push(format!(
                    "cancel via {base}: {} {}",
                    res.status(),
                    res.text().await.unwrap_or_default()
                )),
                Err(e) => seen.errors.push(format!("cancel via {base}: {e}")),
            }
        }
        seen
    }

    fn pick(&self, rng: &mut Rng) -> String {
        let bases = self.in_service.read().unwrap();
        bases[rng.below(bases.len() as u64) as usize].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_load_shows_clients_no_error() {
    let mut nodes = Nodes::start(3, "rolling").await;
    let db = sql(&nodes.db).await;
    let mut events = Vec::new();
    for i in 0..EVENTS {
        let event = nodes.create_event(i % 3, 1, serde_json::json!({ "perUserLimit": 0, "holdTtlSeconds": 600 })).await;
        events.push((event, seat_ids(&nodes, event).await));
    }
    let mut tokens = Vec::new();
    for b in 0..BUYERS {
        tokens.push(register(&nodes.client, nodes.node(b % 3), &format!("rolling{b}@example.com")).await);
    }
    let load = Arc::new(Load {
        client: http(),
        in_service: RwLock::new((0..3).map(|i| nodes.node(i).base.clone()).collect()),
        events: events.clone(),
        stop: AtomicBool::new(false),
    });
    let mut buyers = tokio::task::JoinSet::new();
    for (b, token) in tokens.iter().enumerate() {
        buyers.spawn(load.clone().buyer(b, token.clone(), Rng::new(b as u64 + 1)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        // preStop: out of the load balancer first, then SIGTERM.
        let base = nodes.node(i).base.clone();
        load.in_service.write().unwrap().retain(|b| *b != base);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut node = nodes.nodes[i].take().unwrap();
        node.signal("TERM");
        let status = node.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "node-{i} exited with {status}");
        nodes.restart(i).await;
        nodes.settled().await;
        load.in_service.write().unwrap().push(nodes.node(i).base.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.stop.store(true, Ordering::Release);
    let mut requests = 0;
    for seen in buyers.join_all().await {
        let first: Vec<&String> = seen.errors.iter().take(10).collect();
        assert!(
            seen.errors.is_empty(),
            "clients saw {} errors during the rolling restart: {first:?}",
            seen.errors.len()
        );
        requests += seen.requests;
    }
    println!("rolling restart: {requests} requests, no error");
    assert!(requests > 100, "the load sent only {requests} requests");
    for (event, _) in &events {
        assert_api_matches_postgres(&nodes, &db, 0, *event).await;
    }
}
