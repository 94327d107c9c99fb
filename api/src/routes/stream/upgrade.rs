//! The WebSocket opening handshake (RFC 6455 §4.2), done here rather than by axum's
//! `WebSocketUpgrade` so that a connection can write its own frames (`outbox.rs`): axum's
//! socket sends only whole messages, each formatted by tungstenite into a write buffer of the
//! connection's own. Frames the stream encodes once are then copied, not formatted, for each
//! subscriber, and a snapshot (~150 KB for a 2,000-seat event, megabytes for a stadium) goes
//! out in fragments, so it does not leave its size behind in every subscriber's buffer.

use super::link::{Link, Wire};
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The server side of an upgraded connection, as tungstenite reads it.
pub(super) type Socket = WebSocketStream<Wire>;

/// A valid upgrade request: answer it with [`WsUpgrade::on_upgrade`].
pub struct WsUpgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let headers = &parts.headers;
        if parts.version != Version::HTTP_11 {
            return Err(upgrade_required("a WebSocket upgrade needs HTTP/1.1"));
        }
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(invalid(header::CONNECTION, "must include \"upgrade\""));
        }
        if !is_websocket_upgrade(headers) {
            return Err(invalid(header::UPGRADE, "must be \"websocket\""));
        }
        // RFC 6455 §4.4: an unsupported version is refused with the versions supported.
        if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
            return Err(upgrade_required("sec-websocket-version: must be 13 for a WebSocket upgrade"));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(invalid(header::SEC_WEBSOCKET_KEY, "is missing"));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 is a valid header");
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(upgrade_required("this connection cannot be upgraded"));
        };
        Ok(Self { accept, on_upgrade })
    }
}

/// Whether the request asks for the WebSocket protocol (`Upgrade` lists `websocket`, in any
/// case). The cluster's forwarding middleware serves such requests where they land.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

impl WsUpgrade {
    /// The `101 Switching Protocols` answer, and the connection to run (spawn it): once the
    /// answer is sent, it hands `serve` the socket and its link.
    pub(super) fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        serve: F,
    ) -> (Response, impl Future<Output = ()> + Send + 'static)
    where
        F: FnOnce((Socket, Arc<Link>)) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let connection = async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let link = Link::new(TokioIo::new(upgraded));
                    let wire = Wire(link.clone());
                    let socket = WebSocketStream::from_raw_socket(wire, Role::Server, Some(config)).await;
                    serve((socket, link)).await;
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        };
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept);
        (response, connection)
    }
}

/// Whether `name` lists `token` (comma-separated, any case).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A malformed handshake: 400 (RFC 6455 §4.2.2), naming the header.
fn invalid(name: HeaderName, message: &str) -> Response {
    ApiError::BadRequest(format!("{name}: {message} for a WebSocket upgrade")).into_response()
}

/// 426 Upgrade Required, naming the version this server speaks.
fn upgrade_required(message: &str) -> Response {
    let mut response = ApiError::BadRequest(message.to_owned()).into_response();
    *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
    response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    response
}
