//! SIGTERM on the real `tiketi` binary with PostgreSQL: it stops accepting, flushes the
//! write-behind journal, exits 0, and nothing it acknowledged is lost.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "shutdown-test-secret-at-least-32-bytes!";
const ADMIN_PASSWORD: &str = "shutdown-admin-password";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(database_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tiketi"))
        .arg("serve")
        .env("TIKETI_ENV", "test")
        .env("TIKETI_CONFIG_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/../config"))
        .env("TIKETI_STORE__KIND", "postgres")
        .env("TIKETI_STORE__DATABASE_URL", database_url)
        .env("TIKETI_SERVER__PORT", port.to_string())
        .env("TIKETI_AUTH__JWT_SECRET", SECRET)
        .env("TIKETI_AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TIKETI_SERVER__SHUTDOWN_DEADLINE_SECS", "10")
        .stdout(Stdio::null())
        .spawn()
        .expect("start tiketi")
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/health/ready")).send().await
            && res.status() == StatusCode::OK
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_everything_acknowledged_and_exits_zero() {
    let url = tiketi_testkit::fresh_database().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let api = format!("{base}/api/v1");
    let client = reqwest::Client::new();
    let mut server = start(&url, port);
    wait_ready(&client, &base).await;

    let (_, login) = post(
        &client,
        format!("{api}/auth/login"),
        None,
        json!({"email": "admin@tiketi.local", "password": ADMIN_PASSWORD}),
    )
    .await;
    let admin = login["token"].as_str().unwrap().to_owned();
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let event = json!({
        "title": "Shutdown", "venue": "Hall",
        "eventDate": fmt(now + time::Duration::days(2)), "saleStart": fmt(now - time::Duration::minutes(1)),
        "saleEnd": fmt(now + time::Duration::days(1)), "perUserLimit": 0, "maxPerReservation": 50,
        "layout": {"tiers": [{"name": "A", "price": 100}], "sections": [{"name": "S", "tier": 0, "rows": [{"label": "A", "seats": 200}]}]}
    });
    let (status, event) = post(&client, format!("{api}/admin/events"), Some(&admin), event).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    let event_id = event["id"].as_str().unwrap().to_owned();
    let (_, buyer) = post(
        &client,
        format!("{api}/auth/register"),
        None,
        json!({"email": "b@example.com", "password": "pass-word-1", "name": "B"}),
    )
    .await;
    let token = buyer["token"].as_str().unwrap().to_owned();

    // Holds in flight from several clients while SIGTERM arrives.
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, api, event_id, token) = (client.clone(), api.clone(), event_id.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..50 {
                let seat = format!("S-A-{}", worker * 50 + n + 1);
                let res = client
                    .post(format!("{api}/events/{event_id}/reservations"))
                    .bearer_auth(&token)
                    .json(&json!({"seatIds": [seat]}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let body: Value = r.json().await.unwrap();
                        acknowledged.push(body["id"].as_str().unwrap().to_owned());
                    }
                    // Refused or cut off by the shutdown: not acknowledged, nothing to check.
                    _ => {}
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let term = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(term.success());
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }

    let exit = tokio::task::spawn_blocking(move || server.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "tiketi exited with {exit}");

    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = db.query("SELECT id::text FROM reservations WHERE status = 'held'", &[]).await.unwrap();
    let stored: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(!acknowledged.is_empty(), "some holds were acknowledged before the shutdown");
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged hold {id} was lost");
    }
    let held: i64 = db.query_one("SELECT count(*) FROM seats WHERE status = 'held'", &[]).await.unwrap().get(0);
    assert_eq!(held as usize, stored.len());
}
