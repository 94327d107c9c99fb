//! Support for the durability and cluster tests: a tiny seeded PRNG, the real `tiketi`
//! binary as a child process, a direct PostgreSQL connection, and polling with a deadline.
// Shared by two test binaries (`durability`, `cluster`); each uses part of it.
#![allow(dead_code)]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
pub use tiketi_testkit::eventually;

pub const ADMIN_EMAIL: &str = "admin@durability.local";
pub const ADMIN_PASSWORD: &str = "admin-password-for-durability";
/// Fixed, so tokens issued before a crash still work after the restart.
pub const JWT_SECRET: &str = "durability-tests-secret-at-least-32-bytes";

/// xorshift64* seeded through splitmix64 (so any seed, even 0, gives a good state).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A plain connection to the test database, for the operator's view of the data.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the test db");
    tokio::spawn(connection);
    client
}

/// An HTTP client that never reuses connections across a crash in a confusing way.
pub fn http() -> Client {
    Client::builder().timeout(Duration::from_secs(20)).build().expect("http client")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The real `tiketi serve` as a child process on PostgreSQL.
pub struct Server {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `tiketi serve` on `database_url` (a free port, test settings, demo off) and
    /// waits until it is ready. Its output is appended to `log`.
    pub async fn start(database_url: &str, log: &Path) -> Self {
        Self::start_with(database_url, log, &[]).await
    }

    /// [`Server::start`] with extra `TIKETI_*` settings (e.g. the payment provider's), set
    /// after the defaults so they override them.
    pub async fn start_with(database_url: &str, log: &Path, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the server log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tiketi"));
        command.arg("serve");
        // Nothing of the test's own environment may leak into the server's configuration
        // (an unknown TIKETI_* key stops start-up).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TIKETI_") {
                command.env_remove(key);
            }
        }
        command
            .env("TIKETI_ENV", "test")
            .env("TIKETI_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
            .env("TIKETI_STORE__KIND", "postgres")
            .env("TIKETI_STORE__DATABASE_URL", database_url)
            .env("TIKETI_STORE__POOL_SIZE", "8")
            .env("TIKETI_SERVER__PORT", port.to_string())
            .env("TIKETI_AUTH__JWT_SECRET", JWT_SECRET)
            .env("TIKETI_AUTH__ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TIKETI_AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("TIKETI_DEMO__ENABLED", "false")
            .env("TIKETI_EVENTS__MIN_HOLD_TTL_SECS", "1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out);
        let child = command.spawn().expect("spawn the tiketi binary");
        let mut server = Self { child, base: format!("http://127.0.0.1:{port}"), log: log.to_owned() };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let client = Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("tiketi exited during start-up ({status}); see {}", self.log.display());
            }
            if let Ok(res) = client.get(format!("{}/health/ready", self.base)).send().await
                && res.status() == StatusCode::OK
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "tiketi not ready after 30 s; see {}", self.log.display());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// The server's process id (for signals other than SIGKILL).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {}", self.pid());
    }

    /// Waits up to `limit` for the server to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(tokio::time::Instant::now() < deadline, "tiketi did not exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no drain, no flush, nothing.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Logs in and returns the access token.
pub async fn login(client: &Client, server: &Server, email: &str, password: &str) -> String {
    let res = client
        .post(server.url("/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login sent");
    assert_eq!(res.status(), StatusCode::OK, "login {email}");
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// Registers a buyer and returns the access token.
pub async fn register(client: &Client, server: &Server, email: &str) -> String {
    let res = client
        .post(server.url("/auth/register"))
        .json(&json!({ "email": email, "password": "correct horse battery", "name": "Buyer" }))
        .send()
        .await
        .expect("register sent");
    assert_eq!(res.status(), StatusCode::CREATED, "register {email}");
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

/// An RFC 3339 instant `offset` from now.
pub fn rfc3339_from_now(offset: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + offset).format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The body of `POST /admin/events` for an on-sale `sections` x `rows` x `seats` grid with
/// a GA ticket type of `general` tickets.
pub fn event_body(sections: u32, rows: u32, seats: u32, general: u32, extra: Value) -> Value {
    let tiers: Vec<Value> =
        (0..sections).map(|s| json!({ "name": format!("T{}", s + 1), "price": 1000 * (sections - s) })).collect();
    let sections: Vec<Value> = (0..sections)
        .map(|s| {
            let rows: Vec<Value> =
                (0..rows).map(|r| json!({ "label": ((b'A' + r as u8) as char).to_string(), "seats": seats })).collect();
            json!({ "name": format!("S{}", s + 1), "tier": s, "rows": rows })
        })
        .collect();
    let mut body = json!({
        "title": "Durability Concert",
        "venue": "Crash Hall",
        "artist": "The Kill -9s",
        "eventDate": rfc3339_from_now(time::Duration::days(30)),
        "saleStart": rfc3339_from_now(-time::Duration::minutes(1)),
        "saleEnd": rfc3339_from_now(time::Duration::days(29)),
        "layout": { "tiers": tiers, "sections": sections },
        "ticketTypes": [{ "name": "Standing", "price": 500, "capacity": general }],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}
