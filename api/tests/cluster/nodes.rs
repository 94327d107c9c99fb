//! A cluster of real `tiketi` nodes for the tests, and the checks they share.

use crate::support::{ADMIN_EMAIL, ADMIN_PASSWORD, Server, event_body, eventually, http, login};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// Heartbeat and lease of the test clusters: short, so moves take about two seconds.
pub const HEARTBEAT_MS: u64 = 200;
pub const LEASE_MS: u64 = 1_500;

/// Nodes `node-0`, `node-1`, ... of one cluster; a slot is `None` while its node is down.
pub struct Nodes {
    pub db: String,
    pub log: PathBuf,
    pub nodes: Vec<Option<Server>>,
    pub client: Client,
    pub admin: String,
}

pub fn node_id(i: usize) -> String {
    format!("node-{i}")
}

fn node_env(i: usize) -> Vec<(&'static str, String)> {
    vec![
        ("TIKETI_CLUSTER__ENABLED", "true".into()),
        ("TIKETI_CLUSTER__NODE_ID", node_id(i)),
        ("TIKETI_CLUSTER__REDIS_URL", tiketi_testkit::redis().to_owned()),
        ("TIKETI_CLUSTER__HEARTBEAT_MS", HEARTBEAT_MS.to_string()),
        ("TIKETI_CLUSTER__LEASE_MS", LEASE_MS.to_string()),
        ("TIKETI_SERVER__SHUTDOWN_DEADLINE_SECS", "15".into()),
    ]
}

impl Nodes {
    /// Starts `n` nodes at once on a fresh database (as a first deploy does: they take turns
    /// at the migrations and the admin account) and waits until every shard has its placed
    /// owner.
    pub async fn start(n: usize, name: &str) -> Self {
        let db = tiketi_testkit::fresh_database().await;
        let log = std::env::temp_dir().join(format!("tiketi-cluster-{name}-{}.log", std::process::id()));
        println!("{name}: server logs in {}", log.display());
        let nodes: Vec<Server> = futures_util::future::join_all((0..n).map(|i| {
            let (db, log) = (db.clone(), log.clone());
            async move { Server::start_with(&db, &log, &node_env(i)).await }
        }))
        .await;
        let client = http();
        let admin = login(&client, &nodes[0], ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let cluster = Self { db, log, nodes: nodes.into_iter().map(Some).collect(), client, admin };
        cluster.settled().await;
        cluster
    }

    /// Starts node `i` again (on a new port) after it stopped.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is still up");
        self.nodes[i] = Some(Server::start_with(&self.db, &self.log, &node_env(i)).await);
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().unwrap_or_else(|| panic!("node {i} is down"))
    }

    /// The nodes that are up.
    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some()).collect()
    }

    /// `GET /admin/cluster` on node `i`.
    pub async fn view(&self, i: usize) -> Value {
        let res = self.client.get(self.node(i).url("/admin/cluster")).bearer_auth(&self.admin).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Waits until every node that is up sees exactly the nodes that are up as live
    /// members, and every shard owned, under a running lease, by the member placement gives
    /// it to.
    pub async fn settled(&self) {
        let up: Vec<String> = self.up().into_iter().map(node_id).collect();
        eventually("the cluster to settle", Duration::from_secs(30), || async {
            for i in self.up() {
                let view = self.view(i).await;
                let mut live: Vec<String> = view["members"]
                    .as_array()?
                    .iter()
                    .filter(|m| m["alive"] == true && m["leaving"] == false)
                    .map(|m| m["nodeId"].as_str().unwrap().to_owned())
                    .collect();
                live.sort();
                let placed = view["shards"].as_array()?.iter().all(|s| {
                    s["owner"].is_string() && s["owner"] == s["placed"] && s["leaseLeftMs"].as_i64() > Some(0)
                });
                if live != up || !placed || view["ready"] != true {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// The owner of `event` in `view`.
    pub fn owner(view: &Value, event: Uuid) -> String {
        let shard = usize::from(tiketi_cluster::shard_of(tiketi_engine::EventId(event)));
        view["shards"][shard]["owner"].as_str().unwrap_or_default().to_owned()
    }

    /// The epoch of `event`'s shard in `view`.
    pub fn epoch(view: &Value, event: Uuid) -> u64 {
        let shard = usize::from(tiketi_cluster::shard_of(tiketi_engine::EventId(event)));
        view["shards"][shard]["epoch"].as_u64().unwrap()
    }

    /// Creates an on-sale event of `rows` x 10 seats and 20 standing tickets through node
    /// `via`; its id.
    pub async fn create_event(&self, via: usize, rows: u32, extra: Value) -> Uuid {
        let body = event_body(1, rows, 10, 20, extra);
        let res =
            self.client.post(self.node(via).url("/admin/events")).bearer_auth(&self.admin).json(&body).send().await;
        let res = res.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_str().unwrap().parse().unwrap()
    }

    /// Holds `seats` of `event` for the buyer with `token`, through node `via`; the
    /// reservation id, after checking the hold was created.
    pub async fn hold(&self, via: usize, token: &str, event: Uuid, seats: &[&str]) -> Uuid {
        let res = self
            .client
            .post(self.node(via).url(&format!("/events/{event}/reservations")))
            .bearer_auth(token)
            .json(&seats_body(seats))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "hold {seats:?} of {event} via node {via}: {body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// The events whose actors are live on node `i`.
    pub async fn live_events(&self, i: usize) -> Vec<Uuid> {
        let res = self.client.get(self.node(i).url("/admin/actors")).bearer_auth(&self.admin).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        body["data"].as_array().unwrap().iter().map(|a| a["eventId"].as_str().unwrap().parse().unwrap()).collect()
    }

    /// A counter or gauge of node `i`'s `/metrics` (summed over labels).
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        let text =
            self.client.get(format!("{}/metrics", self.node(i).base)).send().await.unwrap().text().await.unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Every seat of `event` as PostgreSQL and the API (asked through `via`) see it, once both
/// are at the same seq: they must agree seat by seat, and no seat may be in two live
/// reservations.
pub async fn assert_api_matches_postgres(nodes: &Nodes, db: &tokio_postgres::Client, via: usize, event: Uuid) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = nodes.client.get(nodes.node(via).url(&format!("/events/{event}/seats"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "seat map of {event}");
        let map: Value = res.json().await.unwrap();
        let seq: i64 = db.query_one("SELECT seq FROM events WHERE id = $1", &[&event]).await.unwrap().get(0);
        if map["version"].as_i64() == Some(seq) {
            let stored: BTreeMap<String, String> = db
                .query("SELECT seat_id, status FROM seats WHERE event_id = $1", &[&event])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let api: BTreeMap<String, String> = map["seats"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(api, stored, "event {event} at seq {seq}: the API and PostgreSQL disagree");
            let doubled: i64 = db
                .query_one(
                    "SELECT count(*) FROM (SELECT seat_index FROM reservation_items
                     WHERE event_id = $1 AND live GROUP BY seat_index HAVING count(*) > 1) d",
                    &[&event],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(doubled, 0, "event {event}: seats in two live reservations");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "event {event}: API and PostgreSQL never reached one seq");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The seat ids of `event`.
pub async fn seat_ids(nodes: &Nodes, event: Uuid) -> Vec<String> {
    let res = nodes.client.get(nodes.node(nodes.up()[0]).url(&format!("/events/{event}/seats"))).send().await;
    let map: Value = res.unwrap().json().await.unwrap();
    map["seats"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

/// A hold body for specific seats.
pub fn seats_body(ids: &[&str]) -> Value {
    json!({ "seatIds": ids })
}
