//! Node-to-node routes under `/internal/v1`: not part of the public API (nor its OpenAPI
//! document), served only in a cluster, and only to callers that show the cluster key
//! ([`CLUSTER_KEY`]: a digest of the JWT secret every node shares).
//!
//! They serve WebSocket connections that follow an event another node owns
//! (`routes::stream`): the start point of a subscription (the owner's actor cuts it; the
//! frames after it come through Redis) and a buyer's standing in the event's queue. A node
//! that does not own the event answers 503 with [`REROUTE`](crate::forward::REROUTE), and
//! the facade forwards the request to the owner like any other.

use crate::auth::hash_token;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::settings::Settings;
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tiketi_actors::{Resume, Subscription};
use tiketi_cluster::fanout::StreamStart;
use tiketi_engine::{EventId, QueueStanding, UserId};
use uuid::Uuid;

/// The header a node shows to another node's internal routes.
pub const CLUSTER_KEY: HeaderName = HeaderName::from_static("x-tiketi-cluster-key");
/// The media type of a [`StreamStart`] (a JSON header line, then the messages it counts).
pub const STREAM_START_TYPE: &str = "application/vnd.tiketi.stream-start";

/// The internal routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/events/{eventId}/stream-start", get(stream_start))
        .route("/internal/v1/events/{eventId}/queue/{userId}", get(queue_standing))
}

/// The URL of an event's stream start on the node at `address`, resuming from `resume`.
pub fn stream_start_url(address: &str, event: EventId, resume: Option<Resume>) -> String {
    let url = format!("{address}/internal/v1/events/{event}/stream-start");
    match resume {
        None => url,
        Some(Resume { since, stream: None }) => format!("{url}?since={since}"),
        Some(Resume { since, stream: Some(stream) }) => format!("{url}?since={since}&stream={stream}"),
    }
}

/// The URL of a buyer's queue standing on the node at `address`.
pub fn queue_standing_url(address: &str, event: EventId, user: UserId) -> String {
    format!("{address}/internal/v1/events/{event}/queue/{user}")
}

/// The key every node of a cluster shows another: hex SHA-256 of `tiketi-cluster:` and the
/// JWT secret, which a cluster requires every node to share.
pub fn cluster_key(settings: &Settings) -> String {
    hash_token(&format!("tiketi-cluster:{}", settings.auth.jwt_secret))
}

/// A request from another node of the cluster. Outside a cluster the internal routes do
/// not exist (404); without the right key they are refused (401).
pub struct ClusterPeer;

impl FromRequestParts<AppState> for ClusterPeer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.cluster().is_none() {
            return Err(ApiError::NotFound { what: "route" });
        }
        if state.from_peer(&parts.headers) {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("this route is for the nodes of the cluster"))
        }
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right. (The length is not secret: every key is 64 hex digits.)
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Query of a stream start: resume after `since` of `stream`, or start from a snapshot.
#[derive(Debug, Deserialize)]
pub struct StartQuery {
    /// The last seq the follower applied.
    pub since: Option<u64>,
    /// The stream that seq belongs to.
    pub stream: Option<Uuid>,
}

/// Where a follower on another node starts: the event's actor cuts a subscription (a
/// snapshot, or the frames missed since `since`) and the frames after it go through Redis,
/// so the subscription's own receiver is dropped at once.
async fn stream_start(
    State(state): State<AppState>,
    _: ClusterPeer,
    ApiPath(event): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<StartQuery>,
) -> Result<Response, ApiError> {
    let handle = state.event(EventId(event)).await?;
    let resume = query.since.map(|since| Resume { since, stream: query.stream });
    let Subscription { stream, start, frames } = handle.subscribe(resume).await?;
    drop(frames);
    let body = StreamStart::new(stream, start, query.since.unwrap_or(0)).encode();
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_START_TYPE))], body).into_response())
}

/// A buyer's standing in the event's queue; asking is the buyer's heartbeat, as on the
/// buyer's own node.
async fn queue_standing(
    State(state): State<AppState>,
    _: ClusterPeer,
    ApiPath((event, user)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<QueueStanding>, ApiError> {
    let handle = state.event(EventId(event)).await?;
    Ok(Json(handle.queue_status(UserId(user)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"abcd"));
    }

    #[test]
    fn a_queue_standing_crosses_between_nodes_unchanged() {
        let standings = [
            QueueStanding::NotQueued,
            QueueStanding::Waiting { position: Some(7), estimated_wait: Some(std::time::Duration::from_millis(1_500)) },
            QueueStanding::Admitted { until: tiketi_engine::Timestamp(1_767_225_600_000) },
            QueueStanding::SoldOut { position: None },
            QueueStanding::Closed,
        ];
        for standing in standings {
            let wire = serde_json::to_vec(&standing).unwrap();
            assert_eq!(serde_json::from_slice::<QueueStanding>(&wire).unwrap(), standing);
        }
    }
}
