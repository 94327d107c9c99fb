//! Prometheus metrics (`GET /metrics`, text format), with the `prometheus-client` crate:
//! typed metric families and the OpenMetrics encoder, rather than hand-formatted text.
//!
//! One [`Metrics`] per node (per [`AppState`]), never a static, so every test application
//! has its own registry. Each component registers its own metrics into a sub-registry
//! with its prefix under `tiketi`:
//!
//! | prefix | owner | what |
//! |---|---|---|
//! | `tiketi_http_*` | [`http`] (middleware) | requests, latency by route template, sheds |
//! | `tiketi_ws_*` | [`ws`] (`routes::stream`) | connections, messages, resyncs, drops |
//! | `tiketi_journal_*` | the write-behind journal (`tiketi-persistence`) | batch sizes, commit latency and lag, backlog, failures; reservations by outcome and seats sold, counted when durable |
//! | `tiketi_live_actors*`, `tiketi_event_*` | [`live`] | the live event actors, read at scrape time |

pub mod http;
pub mod live;
pub mod ws;

pub use http::HttpMetrics;
pub use live::LiveMetrics;
pub use ws::{DropLabels, WsMetrics};

use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use tiketi_actors::Directory;

/// Every metric this node exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP request metrics (the middleware holds a clone).
    pub http: HttpMetrics,
    /// WebSocket metrics.
    pub ws: WsMetrics,
    /// Live event actor gauges, refreshed on every scrape.
    pub live: LiveMetrics,
    /// One scrape at a time: a scrape clears and refills the live-actor families.
    scrape: tokio::sync::Mutex<()>,
}

impl Metrics {
    /// Builds the registry: each component registers into its own prefixed sub-registry.
    pub fn new(directory: &Directory, cluster: Option<&tiketi_cluster::Cluster>) -> Self {
        let journal = directory.journal();
        let mut registry = Registry::with_prefix("tiketi");
        let http = HttpMetrics::default();
        http.register(registry.sub_registry_with_prefix("http"));
        let ws = WsMetrics::default();
        ws.register(registry.sub_registry_with_prefix("ws"));
        journal.register_metrics(registry.sub_registry_with_prefix("journal"));
        let live = LiveMetrics::default();
        live.register(&mut registry);
        directory.register_metrics(registry.sub_registry_with_prefix("actors"));
        if let Some(cluster) = cluster {
            cluster.metrics().register(registry.sub_registry_with_prefix("cluster"));
        }
        Self { registry, http, ws, live, scrape: tokio::sync::Mutex::new(()) }
    }

    /// The OpenMetrics text exposition of what is recorded now (live-actor gauges as of
    /// the last [`Metrics::scrape`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// Refreshes the live-actor gauges from the node's actors, then encodes.
    pub async fn scrape(&self, state: &AppState) -> String {
        let _one_at_a_time = self.scrape.lock().await;
        self.live.refresh(state.directory().live_events()).await;
        self.encode()
    }
}

/// `GET /metrics`
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics().scrape(&state).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}
