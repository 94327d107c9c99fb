//! The live stream's metrics (`tiketi_ws_*`), updated by `routes::stream`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a WebSocket connection was closed by the server.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `slow` (too many resyncs), `send_timeout`, `shutdown`, `unavailable` (the event's
    /// actor went away), `resume_flood`, `internal`.
    pub reason: &'static str,
}

/// Every reason the server closes a connection, exported from the start.
const DROP_REASONS: [&str; 6] = ["slow", "send_timeout", "shutdown", "unavailable", "resume_flood", "internal"];

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

impl WsMetrics {
    /// Registers into `registry` (the caller prefixes it with `ws`).
    pub fn register(&self, registry: &mut Registry) {
        for reason in DROP_REASONS {
            let _ = self.dropped.get_or_create(&DropLabels { reason });
        }
        registry.register("connections", "Open WebSocket connections", self.connections.clone());
        registry.register("refused", "WebSocket connections refused at the connection limit", self.refused.clone());
        registry.register("messages", "WebSocket messages sent", self.messages.clone());
        registry.register("resyncs", "WebSocket subscribers resynced after falling behind", self.resyncs.clone());
        registry.register("dropped", "WebSocket connections closed by the server", self.dropped.clone());
    }
}
