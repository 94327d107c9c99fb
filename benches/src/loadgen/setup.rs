//! Before the load (not measured): the admin creates the event, buyers register (or log in)
//! and their tokens are cached for the next run, and the seat map is read.
//!
//! Registration hashes a password on the server (argon2: tens of milliseconds of CPU each),
//! so it runs a few at a time with a long timeout, and tokens are kept in a cache file keyed
//! by server and e-mail prefix: a second run against the same server skips it. Cached tokens
//! are used only while younger than `token_max_age` and only if one of them still works
//! (a restarted server has a new signing secret).

use super::api::{Api, text_at};
use super::config::{Config, Scenario};
use super::error::LoadgenError;
use super::template::Vars;
use indicatif::ProgressBar;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Every buyer's password.
const PASSWORD: &str = "loadgen-password-1";
/// Rows per section of a generated event.
const ROWS_PER_SECTION: u32 = 20;

/// The admin's access token.
pub async fn admin_token(api: &Api, config: &Config) -> Result<String, LoadgenError> {
    let t = &api.templates;
    let vars = Vars { email: &config.admin_email, password: &config.admin_password, ..Vars::default() };
    let url = api.url(&t.login_path, &vars);
    let (_, json) =
        api.setup_call("admin login", Method::POST, url, None, Some(Api::body(&t.login_body, &vars))).await?;
    text_at(&json, &api.endpoints.token_pointer)
        .ok_or_else(|| LoadgenError::shape("admin login", format!("no token at {}", api.endpoints.token_pointer)))
}

/// The create-event request: an on-sale event (since a minute ago) of `config.seats` seats in
/// rows of `config.row_size`, 20 rows a section, one price, no per-user limit; queue-gated
/// for the `queue` scenario.
pub fn event_body(config: &Config) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let row_size = config.row_size.min(1000);
    let rows = config.seats.div_ceil(row_size);
    let sections: Vec<Value> = (0..rows.div_ceil(ROWS_PER_SECTION))
        .map(|s| {
            let rows: Vec<Value> = (0..ROWS_PER_SECTION)
                .map(|r| s * ROWS_PER_SECTION + r)
                .take_while(|&r| r < rows)
                .map(|r| {
                    let seats = (config.seats - r * row_size).min(row_size);
                    json!({ "label": format!("R{}", r % ROWS_PER_SECTION + 1), "seats": seats })
                })
                .collect();
            json!({ "name": format!("S{}", s + 1), "tier": 0, "rows": rows })
        })
        .collect();
    let mut body = json!({
        "title": format!("Loadgen {} {}", config.scenario.name(), now.unix_timestamp()),
        "venue": "Loadgen Hall",
        "artist": "Loadgen",
        "eventDate": fmt(now + time::Duration::days(30)),
        "saleStart": fmt(now - time::Duration::minutes(1)),
        "saleEnd": fmt(now + time::Duration::days(29)),
        "layout": { "tiers": [{ "name": "T1", "price": 1000 }], "sections": sections },
        "perUserLimit": 0,
        "holdTtlSeconds": config.hold_ttl_secs,
        "maxPerReservation": config.quantity.max(10),
    });
    if config.scenario == Scenario::Queue {
        body["queue"] = json!({
            "enabled": true,
            "ratePerSecond": config.queue.rate_per_second,
            "maxActive": config.queue.max_active,
            "heartbeatTtlSeconds": 60,
        });
    }
    body
}

/// Creates the event as the admin; returns its id.
pub async fn create_event(api: &Api, config: &Config) -> Result<String, LoadgenError> {
    let admin = Api::bearer(&admin_token(api, config).await?);
    let url = api.url(&api.templates.admin_events_path, &Vars::default());
    let body = bytes::Bytes::from(event_body(config).to_string());
    let (_, json) = api.setup_call("creating the event", Method::POST, url, Some(&admin), Some(body)).await?;
    text_at(&json, &api.endpoints.event_id_pointer).ok_or_else(|| {
        LoadgenError::shape("creating the event", format!("no event id at {}", api.endpoints.event_id_pointer))
    })
}

/// The seat map: `(id, status)` in the server's order.
pub async fn seat_map(api: &Api, event: &str) -> Result<Vec<(String, String)>, LoadgenError> {
    let e = &api.endpoints;
    let url = api.url(&api.templates.seats_path, &Vars { event, ..Vars::default() });
    let (_, json) = api.setup_call("reading the seat map", Method::GET, url, None, None).await?;
    let seats = json
        .pointer(&e.seats_pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| LoadgenError::shape("reading the seat map", format!("no array at {}", e.seats_pointer)))?;
    Ok(seats
        .iter()
        .filter_map(|s| {
            let text = |field: &str| s.get(field).and_then(Value::as_str).map(str::to_owned);
            Some((text(&e.seat_id_field)?, text(&e.seat_status_field)?))
        })
        .collect())
}

/// The buyer's e-mail.
fn email(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}@loadgen.test")
}

/// Tokens for `config.buyers` buyers: from the cache where possible, the rest registered
/// (or, if already registered, logged in).
pub async fn buyers(api: &Arc<Api>, config: &Config, bar: &ProgressBar) -> Result<Vec<String>, LoadgenError> {
    let key = format!("{}|{}", api.base(), config.email_prefix);
    let (saved_at_ms, mut tokens) = match &config.token_cache {
        Some(path) => cached(api, path, &key, config.token_max_age).await,
        None => None,
    }
    .unwrap_or_else(|| (now_ms(), Vec::new()));
    bar.set_length(config.buyers as u64);
    bar.set_position(tokens.len().min(config.buyers) as u64);
    let gate = Arc::new(Semaphore::new(config.register_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in tokens.len()..config.buyers {
        let (api, gate, prefix, bar) = (api.clone(), gate.clone(), config.email_prefix.clone(), bar.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            let token = register(&api, &prefix, i).await;
            bar.inc(1);
            token.map(|t| (i, t))
        });
    }
    let mut fresh = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, token) = joined.map_err(|e| LoadgenError::Config(format!("a registration task failed: {e}")))??;
        fresh.insert(i, token);
    }
    tokens.extend(fresh.into_values());
    // The cache keeps every token it had plus the new ones, dated by the oldest: a cached
    // token is never taken for younger than it is.
    if let Some(path) = &config.token_cache {
        save(path, &key, saved_at_ms, &tokens)?;
    }
    tokens.truncate(config.buyers);
    Ok(tokens)
}

/// Registers buyer `i`, or logs in if the e-mail is taken; retries what looks transient.
async fn register(api: &Api, prefix: &str, i: usize) -> Result<String, LoadgenError> {
    let t = &api.templates;
    let email = email(prefix, i);
    let name = format!("Buyer {i}");
    let vars = Vars { email: &email, password: PASSWORD, name: &name, buyer: i, ..Vars::default() };
    let what = format!("registering {email}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let url = api.url(&t.register_path, &vars);
        let sent = api.setup_call(&what, Method::POST, url, None, Some(Api::body(&t.register_body, &vars))).await;
        let sent = match sent {
            Err(LoadgenError::Refused { status: 409, .. }) => {
                let url = api.url(&t.login_path, &vars);
                api.setup_call(&what, Method::POST, url, None, Some(Api::body(&t.login_body, &vars))).await
            }
            other => other,
        };
        match sent {
            Ok((_, json)) => {
                return text_at(&json, &api.endpoints.token_pointer)
                    .ok_or_else(|| LoadgenError::shape(&what, "no token in the answer"));
            }
            Err(LoadgenError::Refused { status: 429 | 503, .. } | LoadgenError::Http { .. }) if attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenCache {
    entries: BTreeMap<String, CachedTokens>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedTokens {
    saved_at_ms: u64,
    tokens: Vec<String>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn load(path: &Path) -> TokenCache {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// The cached tokens for `key` and when they were saved, if fresh and still accepted by
/// the server.
async fn cached(api: &Api, path: &Path, key: &str, max_age: Duration) -> Option<(u64, Vec<String>)> {
    let entry = load(path).entries.remove(key)?;
    let age = Duration::from_millis(now_ms().saturating_sub(entry.saved_at_ms));
    let first = entry.tokens.first().filter(|_| age < max_age)?;
    let url = api.url(&api.templates.my_reservations_path, &Vars::default());
    let works = api.setup_call("checking a cached token", Method::GET, url, Some(&Api::bearer(first)), None).await;
    works.ok().map(|_| (entry.saved_at_ms, entry.tokens))
}

/// Keeps `tokens` under `key` (other keys stay) as saved at `saved_at_ms`.
fn save(path: &Path, key: &str, saved_at_ms: u64, tokens: &[String]) -> Result<(), LoadgenError> {
    let mut cache = load(path);
    cache.entries.insert(key.to_owned(), CachedTokens { saved_at_ms, tokens: tokens.to_vec() });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LoadgenError::io(dir, e))?;
    }
    let text = serde_json::to_vec_pretty(&cache).expect("tokens serialise");
    std::fs::write(path, text).map_err(|e| LoadgenError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seats_of(body: &Value) -> Vec<u64> {
        body["layout"]["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap().iter().map(|r| r["seats"].as_u64().unwrap()))
            .collect()
    }

    #[test]
    fn the_event_grid_has_exactly_the_seats_asked_for() {
        let mut config = Config::new(Scenario::Burst, "http://x");
        config.seats = 2345;
        config.row_size = 50;
        let body = event_body(&config);
        let rows = seats_of(&body);
        assert_eq!(rows.iter().sum::<u64>(), 2345);
        assert_eq!(rows.len(), 47);
        assert_eq!(*rows.last().unwrap(), 45);
        assert_eq!(body["layout"]["sections"].as_array().unwrap().len(), 3);
        assert!(body.get("queue").is_none());
        assert_eq!(body["perUserLimit"], 0);
    }

    #[test]
    fn a_queue_run_creates_a_gated_event() {
        let mut config = Config::new(Scenario::Queue, "http://x");
        config.seats = 10;
        let body = event_body(&config);
        assert_eq!(seats_of(&body), [10]);
        assert_eq!(body["queue"]["enabled"], true);
    }

    #[test]
    fn the_token_cache_keeps_other_servers_entries() {
        let dir = std::env::temp_dir().join(format!("loadgen-cache-test-{}", std::process::id()));
        let path = dir.join("tokens.json");
        save(&path, "a", 5, &["t1".into()]).unwrap();
        save(&path, "b", 6, &["u1".into()]).unwrap();
        save(&path, "a", 5, &["t1".into(), "t2".into()]).unwrap();
        let cache = load(&path);
        assert_eq!(cache.entries["a"].tokens, ["t1", "t2"]);
        assert_eq!(cache.entries["a"].saved_at_ms, 5);
        assert_eq!(cache.entries["b"].tokens, ["u1"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
