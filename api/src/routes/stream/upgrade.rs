//! The WebSocket opening handshake (RFC 6455 §4.2), done here rather than by axum's
//! `WebSocketUpgrade` so that a connection can send one message as several frames.
//!
//! tungstenite formats each frame whole into the connection's write buffer, and the buffer
//! keeps its largest size for the life of the connection. axum's socket sends only whole
//! messages, so the snapshot (~150 KB for a 2,000-seat event, megabytes for a stadium) left
//! that much memory behind on every subscriber: 2 GB resident for 10,000 of them. Sent as
//! fragments of [`FRAGMENT`] bytes, it leaves at most one fragment's worth.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes};

/// The server side of an upgraded connection.
pub(super) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Largest frame a long text message is cut into.
pub(super) const FRAGMENT: usize = 16 * 1024;

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
    /// answer is sent, it hands `serve` the socket.
    pub(super) fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        serve: F,
    ) -> (Response, impl Future<Output = ()> + Send + 'static)
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let connection = async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket =
                        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                    serve(socket).await;
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

/// Queues a text message on `socket`, cut into frames of at most [`FRAGMENT`] bytes (at
/// character boundaries), each written out before the next is formatted (a short one is
/// only queued, as `feed` does). The client reassembles them into one message.
pub(super) async fn feed_text<S>(socket: &mut WebSocketStream<S>, text: Bytes) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = Utf8Bytes::try_from(text).map_err(|e| Error::Utf8(e.to_string()))?;
    if text.len() <= FRAGMENT {
        return socket.feed(Message::Text(text)).await;
    }
    let mut rest = Bytes::from(text);
    let mut opcode = OpCode::Data(Data::Text);
    while !rest.is_empty() {
        // A fragment may split a character (RFC 6455 §5.6), but strict clients reject it.
        let mut cut = rest.len().min(FRAGMENT);
        while cut < rest.len() && (rest[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
        let part = rest.split_to(cut);
        let last = rest.is_empty();
        socket.send(Message::Frame(Frame::message(part, opcode, last))).await?;
        opcode = OpCode::Data(Data::Continue);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::{FRAGMENT, feed_text};
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A server socket writing into one end of an in-memory pipe; the other end is returned.
    async fn server() -> (WebSocketStream<DuplexStream>, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        (WebSocketStream::from_raw_socket(ours, Role::Server, None).await, theirs)
    }

    fn text(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect::<String>())
    }

    /// Reads `n` unmasked frames off the wire: (fin, opcode, payload) each.
    async fn frames(wire: &mut DuplexStream, n: usize) -> Vec<(bool, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        for _ in 0..n {
            let (b0, b1) = (wire.read_u8().await.unwrap(), wire.read_u8().await.unwrap());
            assert_eq!(b1 & 0x80, 0, "a server's frames are not masked");
            let len = match b1 & 0x7f {
                126 => usize::from(wire.read_u16().await.unwrap()),
                127 => wire.read_u64().await.unwrap() as usize,
                len => usize::from(len),
            };
            let mut payload = vec![0; len];
            wire.read_exact(&mut payload).await.unwrap();
            frames.push((b0 & 0x80 != 0, b0 & 0x0f, payload));
        }
        frames
    }

    #[tokio::test]
    async fn a_long_message_goes_out_in_fragments_of_at_most_the_bound() {
        let (mut socket, mut wire) = server().await;
        let message = text(2 * FRAGMENT + 100);
        feed_text(&mut socket, message.clone()).await.unwrap();
        socket.flush().await.unwrap();
        let frames = frames(&mut wire, 3).await;
        let shape: Vec<(bool, u8, usize)> = frames.iter().map(|(fin, op, p)| (*fin, *op, p.len())).collect();
        // Text (0x1), then continuations (0x0); only the last is final.
        assert_eq!(shape, [(false, 1, FRAGMENT), (false, 0, FRAGMENT), (true, 0, 100)]);
        assert_eq!(frames.into_iter().flat_map(|(_, _, payload)| payload).collect::<Vec<u8>>(), message);
    }

    #[tokio::test]
    async fn each_fragment_is_written_before_the_next_is_formatted() {
        // Room for one fragment on the wire and nobody reading: a socket that formatted the
        // whole message into its buffer (and kept that buffer) would return at once.
        let (ours, _theirs) = tokio::io::duplex(FRAGMENT + 64);
        let mut socket = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
        let sending = feed_text(&mut socket, text(5 * FRAGMENT));
        let stalled = tokio::time::timeout(std::time::Duration::from_millis(50), sending).await;
        assert!(stalled.is_err(), "the second fragment waits for the first to be read");
    }

    #[tokio::test]
    async fn a_character_is_never_split_between_fragments() {
        let (mut socket, mut wire) = server().await;
        let message = format!("{}é{}", "a".repeat(FRAGMENT - 1), "b".repeat(10));
        feed_text(&mut socket, Bytes::from(message.clone())).await.unwrap();
        let frames = frames(&mut wire, 2).await;
        assert_eq!(frames[0].2.len(), FRAGMENT - 1, "the cut moves back to the character's start");
        for (_, _, payload) in &frames {
            assert!(std::str::from_utf8(payload).is_ok(), "each fragment is UTF-8 on its own");
        }
        let whole: Vec<u8> = frames.into_iter().flat_map(|(_, _, payload)| payload).collect();
        assert_eq!(whole, message.as_bytes());
    }

    #[tokio::test]
    async fn a_short_message_is_one_frame_and_waits_for_the_flush() {
        let (mut socket, mut wire) = server().await;
        feed_text(&mut socket, text(FRAGMENT)).await.unwrap();
        let mut byte = [0u8];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), wire.read(&mut byte)).await;
        assert!(early.is_err(), "nothing is written before the flush");
        socket.flush().await.unwrap();
        let frames = frames(&mut wire, 1).await;
        assert_eq!((frames[0].0, frames[0].1, frames[0].2.len()), (true, 1, FRAGMENT));
    }

    #[tokio::test]
    async fn a_client_reads_the_fragments_as_one_message() {
        let (mut socket, wire) = server().await;
        let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
        let message = text(5 * FRAGMENT + 7);
        feed_text(&mut socket, message.clone()).await.unwrap();
        feed_text(&mut socket, Bytes::from_static(b"{\"next\":1}")).await.unwrap();
        socket.flush().await.unwrap();
        let Some(Ok(Message::Text(first))) = client.next().await else { panic!("a text message") };
        assert_eq!(first.as_bytes(), &message[..]);
        let Some(Ok(Message::Text(second))) = client.next().await else { panic!("a text message") };
        assert_eq!(second.as_str(), "{\"next\":1}");
    }
}
