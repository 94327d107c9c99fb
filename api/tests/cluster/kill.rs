//! SIGKILL one node during a burst across 20 events, ten times at seeded random moments: its
//! events move to the survivors; afterwards no seat is held or sold twice, every
//! acknowledged cancel is durable, and clients saw only retryable errors during the move.

use crate::nodes::{Nodes, assert_api_matches_postgres, seat_ids, seats_body};
use crate::support::{Rng, http, register, sql};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

const EVENTS: usize = 20;
const BUYERS: usize = 16;
const ROUNDS: usize = 10;

fn seed() -> u64 {
    let seed = match std::env::var("TIKETI_CLUSTER_SEED") {
        Ok(s) => s.trim().parse().expect("TIKETI_CLUSTER_SEED must be an unsigned integer"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1),
    };
    println!("cluster kill test seed: {seed} (reproduce with TIKETI_CLUSTER_SEED={seed})");
    seed
}

/// What one buyer saw.
#[derive(Default)]
struct Seen {
    cancels: Vec<Uuid>,
    holds: usize,
    retries: usize,
    unexpected: Vec<String>,
}

struct Burst {
    client: Client,
    /// Base URLs of the nodes that are up (a killed one is removed once it is found dead).
    bases: RwLock<Vec<String>>,
    events: Vec<(Uuid, Vec<String>)>,
    stop: AtomicBool,
}

/// How one attempt ended.
enum Attempt {
    Done(StatusCode, Value),
    /// A retryable answer (503/429 with Retry-After) or no answer at all.
    Retry,
}

impl Burst {
    fn pick(&self, rng: &mut Rng) -> String {
        let bases = self.bases.read().unwrap();
        bases[rng.below(bases.len() as u64) as usize].clone()
    }

    /// Sends a request to random nodes until it gets an answer that is not retryable. The
    /// same Idempotency-Key goes with every attempt.
    async fn send(
        &self,
        rng: &mut Rng,
        seen: &mut Seen,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Option<(StatusCode, Value)> {
        let key = Uuid::new_v4().to_string();
        for _ in 0..200 {
            let base = self.pick(rng);
            let mut request = self
                .client
                .request(method.clone(), format!("{base}/api/v1{path}"))
                .bearer_auth(token)
                .header("idempotency-key", &key);
            if let Some(body) = body {
                request = request.json(body);
            }
            match self.attempt(request, seen).await {
                Attempt::Done(status, body) => return Some((status, body)),
                Attempt::Retry => {
                    seen.retries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        None
    }

    async fn attempt(&self, request: reqwest::RequestBuilder, seen: &mut Seen) -> Attempt {
        let res = match request.send().await {
            Ok(res) => res,
            // The node is dead (connection refused or cut): retry elsewhere.
            Err(_) => return Attempt::Retry,
        };
        let status = res.status();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            if res.headers().get(reqwest::header::RETRY_AFTER).is_none() {
                seen.unexpected.push(format!("{status} without Retry-After"));
            }
            return Attempt::Retry;
        }
        match res.json::<Value>().await {
            Ok(body) => Attempt::Done(status, body),
            Err(_) => Attempt::Retry,
        }
    }

    async fn buyer(self: Arc<Self>, token: String, mut rng: Rng) -> Seen {
        let mut seen = Seen::default();
        let mut mine: Vec<Uuid> = Vec::new();
        while !self.stop.load(Ordering::Acquire) {
            if !mine.is_empty() && rng.chance(30) {
                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                let path = format!("/reservations/{id}/cancel");
                match self.send(&mut rng, &mut seen, Method::POST, &path, &token, None).await {
                    Some((StatusCode::OK, body)) if body["status"] == "cancelled" => seen.cancels.push(id),
                    // Expired, or lost with the node that held it (holds are not durable).
                    Some((StatusCode::CONFLICT | StatusCode::NOT_FOUND, _)) | None => {}
                    Some((status, body)) => seen.unexpected.push(format!("cancel {id}: {status} {body}")),
                }
            } else {
                let (event, seats) = &self.events[rng.below(self.events.len() as u64) as usize];
                let seat = &seats[rng.below(seats.len() as u64) as usize];
                let path = format!("/events/{event}/reservations");
                let body = seats_body(&[seat]);
                match self.send(&mut rng, &mut seen, Method::POST, &path, &token, Some(&body)).await {
                    Some((StatusCode::CREATED, r)) => {
                        seen.holds += 1;
                        mine.push(r["id"].as_str().and_then(|s| s.parse().ok()).expect("reservation id"));
                    }
                    Some((StatusCode::CONFLICT, r)) if r["error"]["code"] == "seats_unavailable" => {}
                    None => {}
                    Some((status, r)) => seen.unexpected.push(format!("hold: {status} {r}")),
                }
            }
        }
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_node_mid_burst_moves_its_events_and_loses_nothing_acknowledged() {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut nodes = Nodes::start(3, "kill").await;
    let db = sql(&nodes.db).await;
    let mut events = Vec::new();
    for i in 0..EVENTS {
        let event = nodes.create_event(i % 3, 3, serde_json::json!({ "perUserLimit": 0, "holdTtlSeconds": 120 })).await;
        events.push((event, seat_ids(&nodes, event).await));
    }
    let mut tokens = Vec::new();
    for b in 0..BUYERS {
        tokens.push(register(&nodes.client, nodes.node(b % 3), &format!("kill{b}@example.com")).await);
    }
    let mut acked_cancels = Vec::new();
    let (mut holds, mut retries) = (0, 0);
    for round in 0..ROUNDS {
        let victim = rng.below(3) as usize;
        let kill_after = Duration::from_millis(rng.between(100, 1_500));
        let burst = Arc::new(Burst {
            client: http(),
            bases: RwLock::new(nodes.up().into_iter().map(|i| nodes.node(i).base.clone()).collect()),
            events: events.clone(),
            stop: AtomicBool::new(false),
        });
        let mut buyers = tokio::task::JoinSet::new();
        for token in &tokens {
            buyers.spawn(burst.clone().buyer(token.clone(), Rng::new(rng.next_u64())));
        }
        tokio::time::sleep(kill_after).await;
        let dead = nodes.node(victim).base.clone();
        nodes.nodes[victim].as_mut().unwrap().kill();
        nodes.nodes[victim] = None;
        // Clients learn of the death by their connections failing; then they stop using it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        burst.bases.write().unwrap().retain(|b| *b != dead);
        // Keep the burst going through the move: the dead node's lease lapses, the survivors
        // take its shards.
        tokio::time::sleep(Duration::from_millis(crate::nodes::LEASE_MS + 1_500)).await;
        burst.stop.store(true, Ordering::Release);
        for seen in buyers.join_all().await {
            let first: Vec<&String> = seen.unexpected.iter().take(10).collect();
            assert!(
                seen.unexpected.is_empty(),
                "round {round} (seed {seed}): {} unexpected: {first:?}",
                seen.unexpected.len()
            );
            acked_cancels.extend(seen.cancels);
            holds += seen.holds;
            retries += seen.retries;
        }
        // Every acknowledged cancel is durable.
        let rows = db.query("SELECT id, status FROM reservations WHERE id = ANY($1)", &[&acked_cancels]).await.unwrap();
        let stored: BTreeMap<Uuid, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for id in &acked_cancels {
            assert_eq!(
                stored.get(id).map(String::as_str),
                Some("cancelled"),
                "round {round}: cancel of {id} was acknowledged"
            );
        }
        // The survivors serve every event, and agree with PostgreSQL seat by seat.
        for (event, _) in &events {
            assert_api_matches_postgres(&nodes, &db, nodes.up()[0], *event).await;
        }
        nodes.restart(victim).await;
        nodes.settled().await;
        println!(
            "round {round}: node-{victim} killed after {kill_after:?}; {holds} holds, {} cancels acknowledged, {retries} retries so far",
            acked_cancels.len()
        );
    }
    assert!(holds > 0 && !acked_cancels.is_empty(), "the bursts did nothing: {holds} holds");
}
