//! `GET /events/{eventId}/ws`: the live seat stream over WebSocket (SPEC §4).
//!
//! Each connection subscribes to its event's actor: a snapshot first (or, with `?since=`,
//! only the frames missed), then every frame in order. Frames are serialised once by the
//! actor, encoded as WebSocket frames once, and shared; a connection only copies the bytes
//! into its outbox (`outbox.rs`). The stream is public; a buyer who authenticates
//! (`?token=` or an `auth` message) also gets their own notices: queue position, admission
//! with its token, and the lapse of their holds.
//!
//! Once a connection to a local event has sent its start point it joins the event's
//! sweeper (`sweep.rs`): one task that visits every caught-up connection and writes what it
//! lacks, so a frame does not wake ten thousand tasks. The connection's own task then only
//! reads the client, sends the buyer's queue updates, and acts on what the sweeper hands
//! back (`link.rs`: the socket and outbox they share).
//!
//! A slow client never slows anyone else. A connection that falls more than
//! `stream.channel_capacity` frames behind is resynced (the missed frames from the replay
//! buffer, or a snapshot), and one that needs more than `stream.max_resyncs_per_minute`
//! resyncs, or takes less than a fragment (16 KB) of what it is owed within
//! `stream.send_timeout_ms`, is closed. Both are counted in `tiketi_ws_resyncs_total` and
//! `tiketi_ws_dropped_total{reason}`.
//!
//! In a cluster a connection is served by the node it reached, whichever owns the event
//! ([`source`]): an event of another node is followed through Redis, with the owner's seqs,
//! by each connection reading its own feed, and the connection follows the event wherever
//! it moves.

mod link;
mod outbox;
mod source;
mod sweep;
mod upgrade;

pub(crate) use sweep::Sweepers;

pub(crate) use upgrade::is_websocket_upgrade;

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::metrics::DropLabels;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{FutureExt, SinkExt, StreamExt};
use link::{Handback, Link};
use serde::Deserialize;
use serde_json::json;
use source::{Frames, Source, Subscribed};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{Frame, Resume};
use tiketi_cluster::fanout::{StartPoint, StreamStart};
use tiketi_engine::{EventId, QueueStanding};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use upgrade::{Socket, WsUpgrade};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Most frames gathered for one write when a connection has fallen behind.
const MAX_BATCH: usize = 64;

/// The stream route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(subscribe))
}

/// Query of the upgrade request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// An access token: the buyer's own notices come only to an authenticated connection.
    pub token: Option<String>,
    /// Resume after this seq instead of starting from a snapshot.
    pub since: Option<u64>,
    /// The stream id from the snapshot the `since` seq came from.
    pub stream: Option<Uuid>,
}

/// A message from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    /// Send what was missed since `since` (or a snapshot when that is too old).
    Resume { since: u64, stream: Option<Uuid> },
    /// Authenticate this connection.
    Auth { token: String },
}

/// Live seat stream (WebSocket upgrade).
///
/// Server messages: `snapshot` first, then `seats` batches with strictly increasing `seq`,
/// `event_status`; to an authenticated buyer also `queue`, `admitted` and
/// `reservation_expired`. Client messages: `{"type":"resume","since":N}` and
/// `{"type":"auth","token":"..."}`.
#[utoipa::path(
    get,
    path = "/events/{eventId}/ws",
    tag = "stream",
    params(("eventId" = Uuid, Path, description = "Event id"), StreamQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Malformed handshake; the message names the header"),
        (status = 401, description = "Invalid token"),
        (status = 404, description = "No such event"),
        (status = 426, description = "Unsupported WebSocket version (Sec-WebSocket-Version: 13 says which)"),
        (status = 503, description = "Connection limit reached; see Retry-After")
    )
)]
pub async fn subscribe(
    State(state): State<AppState>,
    ApiPath(event): ApiPath<Uuid>,
    Query(query): Query<StreamQuery>,
    upgrade: WsUpgrade,
) -> Result<Response, ApiError> {
    let user = match &query.token {
        Some(token) => Some(state.auth().verify_access(token)?.id),
        None => None,
    };
    let event = EventId(event);
    let source = Source::locate(&state, event).await?;
    let Some(slot) = state.ws_slot() else {
        state.metrics().ws.refused.inc();
        return Err(ApiError::Unavailable("too many live-stream connections".into(), Duration::from_secs(5)));
    };
    let resume = query.since.map(|since| Resume { since, stream: query.stream });
    // Another node's event is subscribed to before the upgrade, so that an unknown one is a
    // 404 (its owner says so), as it is for this node's.
    let first = match &source {
        Source::Remote(_) => Some(source.subscribe(&state, event, resume).await?),
        Source::Local(_) => None,
    };
    let limits = &state.settings().stream;
    // Clients send a few small messages; a small read buffer keeps ten thousand idle
    // connections cheap (the default 128 KiB is allocated, and cleared on every poll).
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
        .read_buffer_size(limits.max_message_bytes.max(4096))
        // tungstenite writes only its answers to the client (pong, close): at once.
        .write_buffer_size(0);
    let spawner = state.clone();
    let (response, connection) = upgrade.on_upgrade(config, move |socket| async move {
        let _slot = slot;
        let metrics = &state.metrics().ws;
        metrics.connections.inc();
        let (socket, link) = socket;
        link.lock().user = user;
        let mut connection = Connection::new(state.clone(), event, source, socket, link);
        if let Err(Some(reason)) = connection.run(resume, first).await {
            state.metrics().ws.dropped.get_or_create(&DropLabels { reason }).inc();
        }
        state.metrics().ws.connections.dec();
    });
    spawner.spawn_stream(connection);
    Ok(response)
}

/// Why a connection ended early: `Some(reason)` when the server dropped it (counted by
/// reason), `None` when the client went away.
type DropReason = Option<&'static str>;

struct Connection {
    state: AppState,
    event: EventId,
    /// Where the event lives, as of the last (re)subscription.
    source: Source,
    /// tungstenite, reading the client (its pongs and closes go through the link).
    socket: Socket,
    /// The socket, what is to be written to it, and where the connection is in the stream:
    /// shared with the event's sweeper while the connection is caught up.
    link: Arc<Link>,
    resyncs: VecDeque<Instant>,
    send_timeout: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The sweeper lets the link go, and the socket closes now rather than with the
        // sweeper's last reference.
        self.link.lock().end();
    }
}

impl Connection {
    fn new(state: AppState, event: EventId, source: Source, socket: Socket, link: Arc<Link>) -> Self {
        let send_timeout = Duration::from_millis(state.settings().stream.send_timeout_ms);
        Self { state, event, source, socket, link, resyncs: VecDeque::new(), send_timeout }
    }

    /// Serves the connection, from `first` if it was subscribed already, until the client
    /// leaves (`Ok`), the server drops it, or the node shuts down.
    async fn run(&mut self, resume: Option<Resume>, first: Option<Subscribed>) -> Result<(), DropReason> {
        // Watched once for the whole connection, not once per frame: the watch is shared by
        // every connection of the node, and each wait takes its lock.
        let mut draining = self.state.draining();
        let served = tokio::select! {
            served = self.serve(resume, first) => Some(served),
            _ = draining.wait_for(|&draining| draining) => None,
        };
        match served {
            Some(served) => served,
            None => {
                // A frame cut short stays whole on the wire (the outbox keeps what it did
                // not write, and `close` writes it first).
                self.close(CloseCode::Away, "server shutting down").await;
                Err(Some("shutdown"))
            }
        }
    }

    /// Follows the stream: a connection to a local event is served by the event's sweeper
    /// once it has sent its start point, and this task only answers the client and acts on
    /// what the sweeper hands back; one to another node's event reads its own feed.
    async fn serve(&mut self, resume: Option<Resume>, first: Option<Subscribed>) -> Result<(), DropReason> {
        let mut frames = Some(match first {
            Some(subscribed) => self.begin(subscribed).await?,
            None => self.start(resume).await?,
        });
        let queue_every = Duration::from_secs(self.state.settings().stream.queue_update_secs.max(1));
        let mut queue_tick = tokio::time::interval_at(Instant::now() + queue_every, queue_every);
        loop {
            if let Some(Frames::Local(_)) = &frames
                && let Some(Frames::Local(receiver)) = frames.take()
            {
                self.join(receiver);
            }
            let authenticated = self.link.lock().user.is_some();
            tokio::select! {
                frame = next_frame(&mut frames) => {
                    // Take every frame already waiting (up to a bound) and write them with
                    // one flush: a connection that fell behind catches up in few syscalls.
                    let mut next = frame;
                    for _ in 0..MAX_BATCH {
                        match next {
                            Ok(frame) => self.send_frame(&frame).await?,
                            Err(RecvError::Lagged(_)) => {
                                frames = Some(self.resync().await?);
                                break;
                            }
                            Err(RecvError::Closed) => {
                                frames = Some(self.follow().await?);
                                break;
                            }
                        }
                        let Some(source) = frames.as_mut() else { break };
                        next = match source.try_recv() {
                            Ok(frame) => Ok(frame),
                            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                            Err(TryRecvError::Closed) => Err(RecvError::Closed),
                            Err(TryRecvError::Empty) => break,
                        };
                    }
                }
                () = self.link.wake.notified() => {
                    // Bytes left to write (below), or the sweeper let the connection go.
                    let handback = self.link.lock().handback.take();
                    frames = match handback {
                        None => frames,
                        Some(Handback::Lagged) => Some(self.resync().await?),
                        Some(Handback::Ended) => Some(self.follow().await?),
                        Some(Handback::Behind) => Some(self.restart().await?),
                        Some(Handback::Failed) => return Ok(()),
                    };
                }
                message = self.socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(resume) = self.client_message(&text).await? {
                            self.leave();
                            frames = Some(self.start(Some(resume)).await?);
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite gathered the closing handshake's reply: send it, after
                        // what was waiting before it (tungstenite's flush stops short of
                        // the outbox once the handshake is done).
                        let _ = tokio::time::timeout(self.send_timeout, self.socket.flush()).await;
                        let _ = self.write_out().await;
                        return Ok(());
                    }
                    None | Some(Err(_)) => return Ok(()),
                    // tungstenite gathered a pong as it read the ping: written below.
                    // Binary is not part of the protocol.
                    Some(Ok(_)) => {}
                },
                _ = queue_tick.tick(), if authenticated => self.queue_update().await?,
            }
            self.write_out().await?;
        }
    }

    /// Hands the connection to its event's sweeper, with its subscription (which the
    /// sweeper follows if it is the first).
    fn join(&mut self, frames: Receiver<Arc<Frame>>) {
        let (stream, ticket) = {
            let mut link = self.link.lock();
            link.ticket += 1;
            link.joined = true;
            link.handback = None;
            (link.stream, link.ticket)
        };
        self.state.sweepers().join(&self.state, self.event, stream, self.link.clone(), ticket, frames);
    }

    /// Takes the connection back from the sweeper, to send what it alone should.
    fn leave(&mut self) {
        self.link.lock().leave();
    }

    /// The connection fell behind the event's frames: resync it (replay or snapshot),
    /// or drop it if it keeps falling behind.
    async fn resync(&mut self) -> Result<Frames, DropReason> {
        self.state.metrics().ws.resyncs.inc();
        if self.too_slow() {
            self.close(CloseCode::Again, "too slow: resynced too often").await;
            return Err(Some("slow"));
        }
        self.restart().await
    }

    /// Subscribes again from where the connection is.
    async fn restart(&mut self) -> Result<Frames, DropReason> {
        let (since, stream) = {
            let link = self.link.lock();
            (link.seq, link.stream)
        };
        self.start(Some(Resume { since, stream: Some(stream) })).await
    }

    /// The event's actor stopped (passivated, moved, restarted), or the event's frames from
    /// another node broke off: follow it again, wherever it lives now, from where this
    /// connection is.
    async fn follow(&mut self) -> Result<Frames, DropReason> {
        if self.state.is_draining() {
            self.close(CloseCode::Away, "server shutting down").await;
            return Err(Some("shutdown"));
        }
        self.source = match Source::locate(&self.state, self.event).await {
            Ok(source) => source,
            Err(_) => {
                self.close(CloseCode::Again, "event unavailable").await;
                return Err(Some("unavailable"));
            }
        };
        self.restart().await
    }

    /// Subscribes (from `resume` or a snapshot) and sends the starting frames.
    async fn start(&mut self, resume: Option<Resume>) -> Result<Frames, DropReason> {
        let Ok(subscribed) = self.source.subscribe(&self.state, self.event, resume).await else {
            self.close(CloseCode::Again, "event unavailable").await;
            return Err(Some("unavailable"));
        };
        self.begin(subscribed).await
    }

    /// Sends a subscription's starting frames; the frames after them follow.
    async fn begin(&mut self, subscribed: Subscribed) -> Result<Frames, DropReason> {
        let Subscribed { start: StreamStart { stream, seq, start }, frames } = subscribed;
        self.link.lock().stream = stream;
        match start {
            StartPoint::Snapshot(message) => {
                self.link.lock().seq = seq;
                self.send_text(&message).await?;
            }
            StartPoint::Replay(missed) => {
                for frame in &missed {
                    self.send_frame(frame).await?;
                }
                // Frames from another node may include some from before the start point.
                let mut link = self.link.lock();
                link.seq = link.seq.max(seq);
            }
        }
        self.write_out().await?;
        Ok(frames)
    }

    /// Records a resync; true when this connection needed too many within a minute.
    fn too_slow(&mut self) -> bool {
        let now = Instant::now();
        self.resyncs.push_back(now);
        while self.resyncs.front().is_some_and(|&t| now.duration_since(t) > Duration::from_secs(60)) {
            self.resyncs.pop_front();
        }
        self.resyncs.len() > self.state.settings().stream.max_resyncs_per_minute as usize
    }

    /// Gathers a frame (unless this connection has it already), writing first if the outbox
    /// is full.
    async fn send_frame(&mut self, frame: &Frame) -> Result<(), DropReason> {
        let (gathered, full) = {
            let mut link = self.link.lock();
            let gathered = link.gather(frame, self.event, self.state.auth());
            (gathered, link.outbox.is_full())
        };
        self.state.metrics().ws.messages.inc_by(gathered);
        if full {
            self.write_out().await?;
        }
        Ok(())
    }

    async fn send_json(&mut self, message: &serde_json::Value) -> Result<(), DropReason> {
        self.send_text(message.to_string().as_bytes()).await
    }

    /// Gathers a text message, which [`Connection::write_out`] writes. A long one (a
    /// snapshot) is written as it is cut into fragments, so the outbox stays about a
    /// fragment's size, unless the sweeper serves the connection: then it is gathered whole,
    /// so that no frame comes between its fragments.
    async fn send_text(&mut self, text: &[u8]) -> Result<(), DropReason> {
        let whole = {
            let mut link = self.link.lock();
            let whole = link.joined || text.len() <= outbox::FRAGMENT;
            if whole {
                link.push_text(text);
            }
            whole
        };
        if !whole {
            for (first, payload) in outbox::fragments(text) {
                let full = {
                    let mut link = self.link.lock();
                    link.outbox.push_fragment(first, payload);
                    link.outbox.is_full()
                };
                if full {
                    self.write_out().await?;
                }
            }
        }
        self.state.metrics().ws.messages.inc();
        Ok(())
    }

    /// Writes the outbox (the sweeper's bytes, tungstenite's and this task's), for as long as
    /// the client takes some of it within each send timeout.
    async fn write_out(&mut self) -> Result<(), DropReason> {
        let link = &self.link;
        let flush = || std::future::poll_fn(|cx| link.lock().poll_flush(cx));
        // Most writes are taken at once, with no timer to set and cancel; only one that has
        // to wait is timed. What each try wrote stays written.
        if let Some(written) = flush().now_or_never() {
            return written.map_err(|_| None);
        }
        loop {
            // Each send timeout the client must take a fragment's worth (or all there is): a
            // client that reads slowly but keeps falling behind is handed back by the
            // sweeper and resynced; one that takes nothing, or a trickle, is dropped.
            let (progress, due) = {
                let link = link.lock();
                (link.outbox.progress(), link.outbox.len().clamp(1, outbox::FRAGMENT) as u64)
            };
            match tokio::time::timeout(self.send_timeout, flush()).await {
                Ok(written) => return written.map_err(|_| None),
                Err(_) if link.lock().outbox.progress() - progress < due => return Err(Some("send_timeout")),
                Err(_) => {}
            }
        }
    }

    /// Handles a client message: a resume to serve, an auth to apply, or an error to report.
    async fn client_message(&mut self, text: &str) -> Result<Option<Resume>, DropReason> {
        match serde_json::from_str::<ClientMessage>(text) {
            // A resume may cost a snapshot: it counts against the same budget as a resync.
            Ok(ClientMessage::Resume { since, stream }) => {
                if self.too_slow() {
                    self.close(CloseCode::Policy, "too many resumes").await;
                    return Err(Some("resume_flood"));
                }
                Ok(Some(Resume { since, stream }))
            }
            Ok(ClientMessage::Auth { token }) => match self.state.auth().verify_access(&token) {
                Ok(user) => {
                    self.link.lock().user = Some(user.id);
                    Ok(None)
                }
                Err(_) => {
                    self.send_json(&json!({"type": "error", "code": "unauthorized", "message": "invalid token"}))
                        .await?;
                    Ok(None)
                }
            },
            Err(e) => {
                let message = format!("expected {{\"type\":\"resume\",\"since\":N}} or an auth message: {e}");
                self.send_json(&json!({"type": "error", "code": "bad_message", "message": message})).await?;
                Ok(None)
            }
        }
    }

    /// Pushes the buyer's place in the admission queue, if they are in it. Asking is also
    /// the buyer's heartbeat: a waiting buyer with the stream open stays in line.
    async fn queue_update(&mut self) -> Result<(), DropReason> {
        let Some(user) = self.link.lock().user else { return Ok(()) };
        let Ok(standing) = self.source.queue_status(&self.state, self.event, user).await else { return Ok(()) };
        let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let message = match standing {
            QueueStanding::NotQueued => return Ok(()),
            QueueStanding::Waiting { position, estimated_wait } => json!({
                "type": "queue", "status": "waiting", "position": position,
                "estimatedWaitSeconds": estimated_wait.map(seconds),
            }),
            QueueStanding::SoldOut { position } => {
                json!({ "type": "queue", "status": "sold_out", "position": position, "estimatedWaitSeconds": null })
            }
            QueueStanding::Closed => json!({ "type": "queue", "status": "closed", "position": null }),
            QueueStanding::Admitted { until } => {
                match self.link.lock().admission_message(self.event, self.state.auth(), until) {
                    Some(message) => message,
                    None => return Ok(()),
                }
            }
        };
        self.send_json(&message).await
    }

    /// Closes the connection with a reason, waiting at most the send timeout. What the
    /// outbox holds goes first, so the close does not land inside a frame; a connection that
    /// cannot take it gets no close frame.
    async fn close(&mut self, code: CloseCode, reason: &'static str) {
        self.leave();
        if self.write_out().await.is_err() {
            return;
        }
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        let _ = tokio::time::timeout(self.send_timeout, self.socket.send(Message::Close(Some(frame)))).await;
    }
}

/// The next frame of the connection's own subscription; never, while the sweeper serves it.
async fn next_frame(frames: &mut Option<Frames>) -> Result<Arc<Frame>, RecvError> {
    match frames {
        Some(frames) => frames.recv().await,
        None => std::future::pending().await,
    }
}
