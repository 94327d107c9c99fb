//! Prometheus metrics (`GET /metrics`, text format), with the `prometheus-client` crate:
//! typed metric families and the OpenMetrics encoder, rather than hand-formatted text.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// Why a WebSocket connection was closed by the server.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `slow` (too many resyncs), `send_timeout`, `shutdown`.
    pub reason: &'static str,
}

/// The live stream's figures.
#[derive(Default)]
pub struct WsMetrics {
    /// Open connections.
    pub connections: Gauge,
    /// Connections refused at the connection limit.
    pub refused: Counter,
    /// Messages sent to clients.
    pub messages: Counter,
    /// Subscribers that fell behind and were resynced (replay or snapshot).
    pub resyncs: Counter,
    /// Connections the server closed, by reason.
    pub dropped: Family<DropLabels, Counter>,
}

/// Every metric this node exports.
pub struct Metrics {
    registry: Registry,
    /// WebSocket metrics.
    pub ws: WsMetrics,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tiketi");
        let ws = WsMetrics::default();
        registry.register("ws_connections", "Open WebSocket connections", ws.connections.clone());
        registry.register("ws_refused", "WebSocket connections refused at the connection limit", ws.refused.clone());
        registry.register("ws_messages", "WebSocket messages sent", ws.messages.clone());
        registry.register("ws_resyncs", "WebSocket subscribers resynced after falling behind", ws.resyncs.clone());
        registry.register("ws_dropped", "WebSocket connections closed by the server", ws.dropped.clone());
        Self { registry, ws }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /metrics`
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics().encode())
}
