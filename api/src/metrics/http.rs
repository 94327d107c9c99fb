//! Request metrics (`tiketi_http_*`), recorded by the [`track`] middleware around every
//! route. Requests are labelled by the matched route template
//! (`/api/v1/events/{eventId}/reservations`), never by the raw path: ids in a label would
//! make one series per event, reservation and user.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

/// The route label of a request no route matched (404s from the fallback).
pub const UNMATCHED: &str = "unmatched";

/// A request's method, route template and status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `POST`, ... (`OTHER` for extension methods, which are unbounded).
    pub method: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: Arc<str>,
    /// The response status code.
    pub status: u16,
}

/// A request's method and route template.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`RequestLabels`].
    pub method: &'static str,
    /// As in [`RequestLabels`].
    pub route: Arc<str>,
}

/// Why a request was shed.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `busy` (429: an event actor's in-flight bound) or `overloaded` (503: the journal's
    /// backlog is full, an actor timed out, the store is down, the node is draining).
    pub reason: &'static str,
}

/// How a store lookup behind the token check ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `found`, `missing` (the token is refused) or `failed` (error or timeout: trusted).
    pub outcome: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The HTTP figures. Cloning shares the values.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: LatencyFamily,
    shed: Family<ShedLabels, Counter>,
    user_lookups: Family<LookupLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s: a hold answers in well under a millisecond in memory; durable
    // replies wait for a group commit.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let shed = Family::<ShedLabels, Counter>::default();
        for reason in ["busy", "overloaded"] {
            let _ = shed.get_or_create(&ShedLabels { reason });
        }
        Self {
            requests: Family::default(),
            duration: LatencyFamily::new_with_constructor(latency_histogram),
            shed,
            user_lookups: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// Registers into `registry` (the caller prefixes it with `http`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "HTTP requests by method, matched route template and status",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Seconds from receiving a request to sending its response head, by method and route template",
            self.duration.clone(),
        );
        registry.register(
            "shed",
            "Requests refused to protect the node: busy (429) or overloaded (503)",
            self.shed.clone(),
        );
        registry.register(
            "user_lookups",
            "Store lookups of a token's user (once per user and process): found, missing (refused), failed (trusted)",
            self.user_lookups.clone(),
        );
    }

    /// Counts one lookup of a token's user.
    pub fn user_lookup(&self, outcome: &'static str) {
        self.user_lookups.get_or_create(&LookupLabels { outcome }).inc();
    }

    /// Records one answered request.
    pub fn record(&self, method: &'static str, route: Arc<str>, status: StatusCode, took: std::time::Duration) {
        self.duration.get_or_create(&RouteLabels { method, route: route.clone() }).observe(took.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { method, route, status: status.as_u16() }).inc();
        let shed = match status {
            StatusCode::TOO_MANY_REQUESTS => "busy",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded",
            _ => return,
        };
        self.shed.get_or_create(&ShedLabels { reason: shed }).inc();
    }
}

/// Middleware: times the request and counts it by method, route template and status. It
/// sits outside the timeout and panic layers, so their 503s and 500s are counted too.
pub async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route: Arc<str> = req.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED.into(), |p| p.as_str().into());
    let response = next.run(req).await;
    metrics.record(method, route, response.status(), started.elapsed());
    response
}

/// A bounded method label: the standard methods, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(router: &Router, path: &str) -> StatusCode {
        let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
        router.clone().oneshot(req).await.unwrap().status()
    }

    fn encode(metrics: &HttpMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[tokio::test]
    async fn requests_are_labelled_by_route_template_and_sheds_by_status() {
        let metrics = HttpMetrics::default();
        let router = Router::new()
            .route("/things/{id}", get(|| async { StatusCode::OK }))
            .route("/busy", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
            .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), track));
        assert_eq!(call(&router, "/things/1").await, StatusCode::OK);
        assert_eq!(call(&router, "/things/2").await, StatusCode::OK);
        assert_eq!(call(&router, "/busy").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(call(&router, "/down").await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(call(&router, "/nowhere/3").await, StatusCode::NOT_FOUND);

        let text = encode(&metrics);
        for line in [
            r#"requests_total{method="GET",route="/things/{id}",status="200"} 2"#,
            r#"requests_total{method="GET",route="/busy",status="429"} 1"#,
            r#"requests_total{method="GET",route="/down",status="503"} 1"#,
            r#"requests_total{method="GET",route="unmatched",status="404"} 1"#,
            r#"request_duration_seconds_count{method="GET",route="/things/{id}"} 2"#,
            r#"shed_total{reason="busy"} 1"#,
            r#"shed_total{reason="overloaded"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(!text.contains("/things/1") && !text.contains("/nowhere"), "a raw path in:\n{text}");
    }

    #[test]
    fn extension_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"PURGE").unwrap()), "OTHER");
    }
}
