//! Typed, layered configuration: the built-in `config/default.toml`, then
//! `config/{TIKETI_ENV}.toml` (from `TIKETI_CONFIG_DIR`, default `./config`), then
//! `TIKETI_<SECTION>__<KEY>` environment variables. Unknown keys and bad values fail
//! start-up with a message naming them.
//!
//! figment does the layering and names the failing key; we only declare the shape.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// Tokens, passwords and the bootstrap admin.
    pub auth: AuthSettings,
    /// Where data lives.
    pub store: StoreSettings,
    /// Event actors.
    pub events: EventSettings,
    /// Write-behind journal.
    pub journal: JournalSettings,
    /// The live seat stream over WebSocket.
    pub stream: StreamSettings,
    /// Demo data.
    pub demo: DemoSettings,
    /// `[payments]`
    pub payments: PaymentSettings,
    /// `[cluster]`
    pub cluster: ClusterSettings,
}

/// `[cluster]`: several nodes serving one cluster (SPEC §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Join a cluster (needs `store.kind = "postgres"`).
    pub enabled: bool,
    /// This node's id, stable across restarts (empty: the host name).
    pub node_id: String,
    /// The base URL other nodes forward to (empty: `http://{server.host}:{server.port}`).
    pub advertise_url: String,
    /// Redis for the live stream between nodes and ownership hints (empty: none).
    pub redis_url: String,
    /// Heartbeat and lease renewal interval.
    pub heartbeat_ms: u64,
    /// How long a heartbeat keeps a member alive and a renewal keeps a shard lease.
    pub lease_ms: u64,
    /// Most times one request is forwarded between nodes.
    pub max_hops: u8,
    /// How long the facade keeps rerouting a request whose event is moving between nodes
    /// before answering 503.
    pub reroute_budget_ms: u64,
    /// How long a forwarded request waits for the owner.
    pub forward_timeout_ms: u64,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port (0: any free port).
    pub port: u16,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Per-request deadline.
    pub request_timeout_ms: u64,
    /// Graceful shutdown deadline.
    pub shutdown_deadline_secs: u64,
    /// Pending connections the kernel queues for accept (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Output format.
    pub format: LogFormat,
    /// tracing filter directive.
    pub level: String,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (>= 32 bytes), or empty for a per-process random one.
    pub jwt_secret: String,
    /// `iss` claim.
    pub issuer: String,
    /// `aud` claim.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// Argon2id memory cost.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Bootstrap admin e-mail.
    pub admin_email: String,
    /// Bootstrap admin password (empty: generated and printed once).
    pub admin_password: String,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Which store.
    pub kind: StoreKind,
    /// PostgreSQL URL (for `postgres`).
    pub database_url: String,
    /// Pool size (for `postgres`).
    pub pool_size: usize,
}

/// The store implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded in-memory store.
    Memory,
    /// PostgreSQL.
    Postgres,
}

/// `[events]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Ordinary call timeout.
    pub call_timeout_ms: u64,
    /// Durable call timeout.
    pub durable_timeout_ms: u64,
    /// In-flight bound per event.
    pub max_in_flight: usize,
    /// `Retry-After` for 429.
    pub busy_retry_after_secs: u64,
    /// `Retry-After` for 503 on backlog.
    pub overload_retry_after_secs: u64,
    /// Idempotency key retention.
    pub idempotency_retention_hours: u64,
    /// Shortest hold TTL an event may have.
    pub min_hold_ttl_secs: u64,
    /// An event actor unused this long is passivated (unless on sale, holding, queueing or
    /// watched).
    pub idle_timeout_secs: u64,
    /// Most live event actors per node; past it the longest-idle unpinned ones go first.
    pub max_live_actors: usize,
}

/// `[journal]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// Backlog bound.
    pub capacity: usize,
    /// Batch size bound.
    pub max_batch: usize,
    /// Group-commit window after a batch's first change set.
    pub linger_ms: u64,
}

/// `[stream]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Changes are gathered this long, then sent as one frame.
    pub tick_ms: u64,
    /// Frames a subscriber may fall behind before it is resynced.
    pub channel_capacity: usize,
    /// Recent frames kept per event for `resume`.
    pub replay_frames: usize,
    /// WebSocket connections this node accepts; past it: 503 + Retry-After.
    pub max_connections: usize,
    /// Largest message a client may send.
    pub max_message_bytes: usize,
    /// A client that takes less than 16 KB of what it is owed (all of it, if less) within
    /// this is dropped: it stopped reading, or reads a trickle.
    pub send_timeout_ms: u64,
    /// Resyncs a connection may need within a minute before it is dropped as too slow.
    pub max_resyncs_per_minute: u32,
    /// How often a buyer waiting in an admission queue gets a position update.
    pub queue_update_secs: u64,
    /// Threads of the stream's own runtime (0: the connections share the request runtime).
    pub workers: usize,
}

/// `[payments]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// Which provider captures and refunds.
    pub provider: ProviderKind,
    /// The mock's delay per call.
    pub mock_latency_ms: u64,
    /// The share of payment keys the mock declines (0.0-1.0), decided by the key's hash.
    pub mock_failure_rate: f64,
    /// The Toss-shaped provider's base URL.
    pub toss_base_url: String,
    /// The Toss secret key (sent as Basic auth).
    pub toss_secret_key: String,
    /// A provider call that takes longer has an unknown outcome (resolved by a lookup).
    pub toss_timeout_ms: u64,
    /// A payment still in flight this long is reconciled with the provider.
    pub reconcile_after_secs: u64,
    /// How long after a confirmation was sent the provider may still capture it.
    pub capture_window_secs: u64,
    /// How long after an attempt was declined because the provider showed no capture the
    /// provider is still asked whether one landed (one found is refunded).
    pub late_capture_watch_secs: u64,
}

/// Which payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in mock.
    Mock,
    /// The Toss Payments-shaped HTTP adapter.
    Toss,
}

/// `[demo]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// Seed demo data into an empty store.
    pub enabled: bool,
}

const DEFAULTS: &str = include_str!("../../config/default.toml");

impl Settings {
    /// Loads the layers for `TIKETI_ENV` (default `development`).
    pub fn load() -> Result<Self, Box<figment::Error>> {
        let env = std::env::var("TIKETI_ENV").unwrap_or_else(|_| "development".into());
        let dir = std::env::var_os("TIKETI_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| "config".into());
        Self::figment(&env, Some(dir)).merge(env_provider()).extract().map_err(Box::new)
    }

    /// The file layers only (built-in defaults, then `{dir}/{env}.toml` if it exists),
    /// without the environment: what tests start from.
    pub fn figment(env: &str, dir: Option<PathBuf>) -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(dir) = dir {
            figment = figment.merge(Toml::file(dir.join(format!("{env}.toml"))));
        }
        figment
    }

    /// Settings for tests: defaults plus `config/test.toml`'s cheap hashing, on port 0.
    pub fn for_tests() -> Self {
        Self::figment("test", None)
            .merge(Toml::string(include_str!("../../config/test.toml")))
            .merge(("server.port", 0))
            .extract()
            .expect("built-in test settings are valid")
    }

    /// Checks what the types cannot say.
    pub fn validate(&self) -> Result<(), String> {
        let p = &self.payments;
        if !(0.0..=1.0).contains(&p.mock_failure_rate) {
            return Err(format!("payments.mock_failure_rate: must be between 0 and 1 (got {})", p.mock_failure_rate));
        }
        if p.provider == ProviderKind::Toss && p.toss_secret_key.is_empty() {
            return Err("payments.toss_secret_key: required with provider = \"toss\"".into());
        }
        let secret = self.auth.jwt_secret.len();
        if secret != 0 && secret < 32 {
            return Err(format!("auth.jwt_secret: must be at least 32 bytes (got {secret})"));
        }
        if self.store.kind == StoreKind::Postgres && self.store.database_url.is_empty() {
            return Err("store.database_url: required when store.kind = \"postgres\"".into());
        }
        if self.store.pool_size == 0 {
            return Err("store.pool_size: must be at least 1".into());
        }
        if self.events.max_in_flight == 0 {
            return Err("events.max_in_flight: must be at least 1".into());
        }
        if self.stream.tick_ms == 0 || self.stream.channel_capacity == 0 || self.stream.max_message_bytes == 0 {
            return Err(
                "stream.tick_ms, stream.channel_capacity and stream.max_message_bytes: must be at least 1".into()
            );
        }
        if self.server.listen_backlog == 0 {
            return Err("server.listen_backlog: must be at least 1".into());
        }
        if self.journal.capacity == 0 || self.journal.max_batch == 0 {
            return Err("journal.capacity and journal.max_batch: must be at least 1".into());
        }
        let c = &self.cluster;
        if c.enabled {
            if self.store.kind != StoreKind::Postgres {
                return Err("cluster.enabled: needs store.kind = \"postgres\" (the cluster's authority)".into());
            }
            if c.heartbeat_ms == 0 || c.lease_ms < 2 * c.heartbeat_ms {
                return Err(format!(
                    "cluster.lease_ms: must be at least twice cluster.heartbeat_ms (got {} and {})",
                    c.lease_ms, c.heartbeat_ms
                ));
            }
            if self.auth.jwt_secret.is_empty() {
                return Err("auth.jwt_secret: required in a cluster (every node must verify every token)".into());
            }
            let wildcard = matches!(self.server.host.as_str(), "0.0.0.0" | "::" | "[::]");
            if c.advertise_url.trim().is_empty() && wildcard {
                return Err(format!(
                    "cluster.advertise_url: required when server.host is {} (other nodes cannot reach a wildcard)",
                    self.server.host
                ));
            }
            if c.max_hops == 0 {
                return Err("cluster.max_hops: must be at least 1".into());
            }
        }
        if self.auth.argon2_memory_kib < 8 * self.auth.argon2_iterations.max(1) {
            return Err("auth.argon2_memory_kib: too small for argon2".into());
        }
        Ok(())
    }
}

/// `TIKETI_SECTION__KEY` variables, minus the ones that choose the layers.
fn env_provider() -> Env {
    Env::prefixed("TIKETI_").ignore(&["ENV", "CONFIG_DIR"]).split("__")
}

impl Settings {
    /// The configured payment provider.
    pub fn provider(&self) -> Result<tiketi_actors::Provider, String> {
        use tiketi_payments::{mock, toss};
        let p = &self.payments;
        let provider: std::sync::Arc<dyn tiketi_payments::PaymentProvider> = match p.provider {
            ProviderKind::Mock => std::sync::Arc::new(mock::MockProvider::new(mock::MockSettings {
                latency: Duration::from_millis(p.mock_latency_ms),
                failure_rate: p.mock_failure_rate,
            })),
            ProviderKind::Toss => std::sync::Arc::new(
                toss::TossProvider::new(toss::TossSettings {
                    base_url: p.toss_base_url.clone(),
                    secret_key: p.toss_secret_key.clone(),
                    timeout: Duration::from_millis(p.toss_timeout_ms),
                })
                .map_err(|e| format!("payments: {e}"))?,
            ),
        };
        Ok(tiketi_actors::Provider(provider))
    }

    /// As the cluster's configuration, with the node id and address defaulted.
    pub fn cluster_config(&self, port: u16) -> tiketi_cluster::ClusterConfig {
        let c = &self.cluster;
        let node_id = match c.node_id.trim() {
            "" => std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("tiketi-{port}")),
            id => id.to_owned(),
        };
        let advertise_url = match c.advertise_url.trim() {
            "" => format!("http://{}:{port}", self.server.host),
            url => url.trim_end_matches('/').to_owned(),
        };
        tiketi_cluster::ClusterConfig {
            node_id,
            advertise_url,
            redis_url: c.redis_url.clone(),
            heartbeat: Duration::from_millis(c.heartbeat_ms),
            lease: Duration::from_millis(c.lease_ms),
        }
    }

    /// As the actors' configuration.
    pub fn actor_config(&self) -> Result<tiketi_actors::ActorConfig, String> {
        let (events, stream) = (&self.events, &self.stream);
        Ok(tiketi_actors::ActorConfig {
            call_timeout: Duration::from_millis(events.call_timeout_ms),
            durable_timeout: Duration::from_millis(events.durable_timeout_ms),
            max_in_flight: events.max_in_flight,
            busy_retry_after: Duration::from_secs(events.busy_retry_after_secs),
            overload_retry_after: Duration::from_secs(events.overload_retry_after_secs),
            idempotency_retention: Duration::from_secs(events.idempotency_retention_hours * 3600),
            idle_timeout: Duration::from_secs(events.idle_timeout_secs),
            max_live: events.max_live_actors,
            stream: tiketi_actors::StreamConfig {
                tick: Duration::from_millis(stream.tick_ms),
                channel_capacity: stream.channel_capacity,
                replay_frames: stream.replay_frames,
            },
            provider: self.provider()?,
            reconcile_after: Duration::from_secs(self.payments.reconcile_after_secs),
            capture_window: Duration::from_secs(self.payments.capture_window_secs),
            late_capture_watch: Duration::from_secs(self.payments.late_capture_watch_secs),
            frame_sink: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_defaults_parse_and_validate() {
        let s: Settings = Settings::figment("development", None).extract().unwrap();
        s.validate().unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.store.kind, StoreKind::Memory);
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let err = Settings::figment("development", None)
            .merge(Toml::string("[server]\nprot = 1"))
            .extract::<Settings>()
            .unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn a_bad_value_is_named_in_the_error() {
        let err = Settings::figment("development", None)
            .merge(Toml::string("[server]\nport = \"eighty\""))
            .extract::<Settings>()
            .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn a_zero_listen_backlog_is_refused() {
        let mut s = Settings::for_tests();
        s.server.listen_backlog = 0;
        assert!(s.validate().unwrap_err().contains("server.listen_backlog"));
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let mut s = Settings::for_tests();
        s.auth.jwt_secret = "short".into();
        assert!(s.validate().unwrap_err().contains("auth.jwt_secret"));
    }
}
