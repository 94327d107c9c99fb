//! Liveness and readiness probes (outside `/api/v1`, for orchestrators).

use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

/// `/health/live` and `/health/ready`.
pub fn router() -> Router<AppState> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready))
}

/// The process is up.
async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The node can serve: the store answers, the actor system runs, and it is not draining.
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store().ping().await;
    let draining = state.is_draining();
    let running = state.directory().is_running();
    // In a cluster: joined, and heartbeating within the lease (a node cut off from
    // PostgreSQL stops serving).
    let cluster = state.cluster().map(|c| c.is_ready());
    let ok = store.is_ok() && !draining && running && cluster != Some(false);
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "checks": {
            "store": if store.is_ok() { "ok" } else { "unavailable" },
            "actors": if draining { "draining" } else if running { "ok" } else { "stopped" },
            "cluster": match cluster { None => "off", Some(true) => "ok", Some(false) => "not_joined" },
        }
    });
    (status, Json(body))
}
