//! Routing between nodes (SPEC §6): a request for an event another node owns is forwarded
//! to the owner, transparently to the client.
//!
//! Every API request passes through [`reroute`]. A request whose path names an event
//! (`/events/{id}/...`) or a reservation (`/reservations/{id}/...`, whose id carries its
//! event's shard) is forwarded at once when the shard's owner is another node; any other
//! request runs here, and if its handler finds the event is not this node's (an order id
//! in the body led to it, or the shard moved meanwhile) it answers [`ApiError::Moving`]
//! with the shard in the [`REROUTE`] header, and the facade forwards the buffered request
//! to the owner instead. While an event moves (a hand-off, or a dead
//! owner's lease running out) the facade keeps rerouting, with backoff, for up to
//! `cluster.reroute_budget_ms`; the client sees only the final answer.
//!
//! A request is retried after an error only if it was not carried out: the owner said so
//! (`REROUTE`), or the connection was never made. One sent to an owner that then went
//! silent is retried only if it is safe to repeat (a read, or a write with an
//! Idempotency-Key); otherwise the client gets 503 and retries with its own judgement.
//! Forwarded requests carry [`HOPS`]; past `cluster.max_hops` a node answers `REROUTE`
//! instead of forwarding again, so views that disagree cannot bounce a request forever.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tiketi_cluster::{Cluster, Route};
use tiketi_engine::{EventId, ReservationId};
use tokio::time::Instant;

/// Set on an answer that was not carried out because the event is another node's: its
/// value is the event's shard. Stripped before an answer reaches a client.
pub const REROUTE: HeaderName = HeaderName::from_static("x-tiketi-reroute");
/// How many times a request has been forwarded between nodes.
pub const HOPS: HeaderName = HeaderName::from_static("x-tiketi-hops");

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1), plus the ones
/// the client library sets itself.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// A buffered request, so it can be run here, forwarded, or both.
struct Buffered {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Bytes,
    hops: u8,
}

impl Buffered {
    fn request(&self) -> Request {
        let mut request = Request::new(Body::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        request
    }

    /// Only the node the client called follows a moving shard (with backoff, within the
    /// budget); a node a request was forwarded to tries once and otherwise says `REROUTE`,
    /// so budgets never nest and a request is never carried out after its caller gave up.
    fn follows_moves(&self) -> bool {
        self.hops == 0
    }

    /// Whether repeating it cannot do something twice.
    fn repeatable(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
            || self.headers.contains_key("idempotency-key")
    }
}

/// The middleware. Without a cluster it only keeps [`REROUTE`] from reaching clients.
pub async fn reroute(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster().cloned() else {
        return strip(next.run(request).await);
    };
    // A WebSocket is served where it lands: Redis brings the owner's changes.
    if crate::routes::stream::is_websocket_upgrade(request.headers()) {
        return strip(next.run(request).await);
    }
    let (mut parts, body) = request.into_parts();
    let limit = state.settings().server.body_limit_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    // Only another node may say how often a request was forwarded; a client's say is
    // dropped (it could otherwise turn forwarding off, or see internal answers).
    let hops = if state.from_peer(&parts.headers) {
        parts.headers.get(&HOPS).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
    } else {
        parts.headers.remove(&HOPS);
        0
    };
    let buffered = Buffered {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        extensions: parts.extensions,
        body,
        hops,
    };
    let max_hops = state.settings().cluster.max_hops;
    let forwarder = Forwarder { state: &state, cluster: &cluster, buffered: &buffered };

    // The path names the shard: forward without running anything here.
    let mut response = match shard_in_path(buffered.uri.path()) {
        Some(shard) if hops < max_hops && matches!(cluster.route_shard(shard), Route::Remote { .. }) => {
            forwarder.reroute(shard, &next).await
        }
        _ => next.clone().run(buffered.request()).await,
    };
    if let Some(shard) = rerouted_shard(&response)
        && hops < max_hops
    {
        response = forwarder.reroute(shard, &next).await;
    }
    if hops == 0 { strip(response) } else { response }
}

struct Forwarder<'a> {
    state: &'a AppState,
    cluster: &'a Cluster,
    buffered: &'a Buffered,
}

impl Forwarder<'_> {
    /// Serves the request wherever `shard` lives, following it while it moves, until an
    /// answer that was carried out or the reroute budget runs out.
    async fn reroute(&self, mut shard: u16, next: &Next) -> Response {
        let settings = &self.state.settings().cluster;
        let deadline = Instant::now() + Duration::from_millis(settings.reroute_budget_ms);
        let forward_timeout = Duration::from_millis(settings.forward_timeout_ms);
        let mut backoff = Duration::from_millis(20);
        let metrics = &self.cluster.metrics().forwarded;
        loop {
            let response = match self.cluster.route_shard(shard) {
                Route::Local(_) => Some(next.clone().run(self.buffered.request()).await),
                Route::Remote { node, address } => {
                    match self.forward(&address, forward_timeout.min(deadline - Instant::now())).await {
                        Ok(response) => Some(response),
                        Err(Unsent::Refused(e)) => {
                            tracing::debug!(%node, error = %e, "owner unreachable; rerouting");
                            metrics.get_or_create(&outcome("unreachable")).inc();
                            None
                        }
                        Err(Unsent::Lost(e)) => {
                            metrics.get_or_create(&outcome("unreachable")).inc();
                            if !self.buffered.repeatable() {
                                tracing::warn!(%node, error = %e, "the owner did not answer a forwarded request");
                                return ApiError::Unavailable(
                                    format!("node {node} did not answer: {e}"),
                                    Duration::from_secs(1),
                                )
                                .into_response();
                            }
                            None
                        }
                    }
                }
                Route::Moving => None,
            };
            if let Some(response) = response {
                match rerouted_shard(&response) {
                    // The node we asked had moved on: ask again.
                    Some(moved) => {
                        metrics.get_or_create(&outcome("rerouted")).inc();
                        shard = moved;
                    }
                    None => return response,
                }
            }
            if !self.buffered.follows_moves() || Instant::now() + backoff >= deadline {
                return ApiError::Moving(shard).into_response();
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Sends the buffered request to `address` and buffers the answer.
    async fn forward(&self, address: &str, timeout: Duration) -> Result<Response, Unsent> {
        let b = self.buffered;
        let path = b.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = b.headers.clone();
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        headers.insert(HOPS, u16::from(b.hops.saturating_add(1)).into());
        let key = HeaderValue::from_str(self.state.cluster_key()).expect("hex digits");
        headers.insert(crate::routes::internal::CLUSTER_KEY, key);
        let sent = self
            .state
            .http_client()
            .request(b.method.clone(), format!("{address}{path}"))
            .headers(headers)
            .body(b.body.clone())
            .timeout(timeout)
            .send()
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) if e.is_connect() => return Err(Unsent::Refused(e.to_string())),
            Err(e) => return Err(Unsent::Lost(e.to_string())),
        };
        let status = answer.status();
        let mut headers = answer.headers().clone();
        let body = answer.bytes().await.map_err(|e| Unsent::Lost(e.to_string()))?;
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        self.cluster.metrics().forwarded.get_or_create(&outcome("ok")).inc();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// Why a forwarded request has no answer.
enum Unsent {
    /// The connection was refused: the request never left.
    Refused(String),
    /// Sent, but no answer came: it may or may not have been carried out.
    Lost(String),
}

fn outcome(outcome: &'static str) -> tiketi_cluster::ForwardLabels {
    tiketi_cluster::ForwardLabels { outcome }
}

fn rerouted_shard(response: &Response) -> Option<u16> {
    let shard = response.headers().get(&REROUTE)?.to_str().ok()?.parse().ok()?;
    (shard < tiketi_cluster::SHARDS).then_some(shard)
}

fn strip(mut response: Response) -> Response {
    response.headers_mut().remove(&REROUTE);
    response
}

/// The shard a path names: that of the event in `/api/v1/events/{id}/...` (and the admin's
/// `/api/v1/admin/events/{id}/...`), or the one a reservation id in
/// `/api/v1/reservations/{id}/...` carries.
fn shard_in_path(path: &str) -> Option<u16> {
    let id = |rest: &str| rest.split('/').next()?.parse::<uuid::Uuid>().ok();
    if let Some(rest) = path.strip_prefix("/api/v1/events/").or_else(|| path.strip_prefix("/api/v1/admin/events/")) {
        return id(rest).map(|e| tiketi_cluster::shard_of(EventId(e)));
    }
    let rest =
        path.strip_prefix("/api/v1/reservations/").or_else(|| path.strip_prefix("/api/v1/admin/reservations/"))?;
    id(rest).map(|r| tiketi_cluster::shard_of_reservation(ReservationId(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_and_reservation_paths_name_their_shard() {
        let event = EventId(uuid::Uuid::new_v4());
        let shard = tiketi_cluster::shard_of(event);
        assert_eq!(shard_in_path(&format!("/api/v1/events/{event}/reservations")), Some(shard));
        assert_eq!(shard_in_path(&format!("/api/v1/events/{event}")), Some(shard));
        assert_eq!(shard_in_path(&format!("/api/v1/admin/events/{event}/queue")), Some(shard));
        let reservation = tiketi_cluster::new_reservation_id(event);
        assert_eq!(shard_in_path(&format!("/api/v1/reservations/{reservation}/cancel")), Some(shard));
        assert_eq!(shard_in_path("/api/v1/events"), None);
        assert_eq!(shard_in_path("/api/v1/reservations/my"), None);
        assert_eq!(shard_in_path("/api/v1/events/not-a-uuid/seats"), None);
    }
}
