//! Where a WebSocket connection's event lives, and how it follows it from there: this node's
//! actor (its own subscription), or another node's in a cluster, whose frames come through
//! Redis ([`tiketi_cluster::fanout::Hub`]) and whose start points come from the owner
//! (`routes::internal`). The connection does not tell them apart: a subscription is a start
//! point ([`StreamStart`]) and the [`Frames`] after it either way.

use crate::error::ApiError;
use crate::forward::REROUTE;
use crate::routes::internal::{CLUSTER_KEY, queue_standing_url, stream_start_url};
use crate::state::AppState;
use axum::http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{EventHandle, Frame, Resume, Subscription};
use tiketi_cluster::fanout::{Feed, Hub, StreamStart};
use tiketi_cluster::{Cluster, Route};
use tiketi_engine::{EventId, QueueStanding, UserId};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::Instant;

/// How many times a follower of another node's event starts over when its start point and
/// the frames from Redis disagree (the event's actor restarting meanwhile).
const BIND_ATTEMPTS: usize = 3;
/// How long a queue update waits for the owner: it is asked inline, between frames.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a connection's event lives.
#[derive(Clone)]
pub(super) enum Source {
    /// On this node: its actor.
    Local(EventHandle),
    /// On another node of the cluster.
    Remote(Remote),
}

/// Another node's event, followed through this node's hub.
#[derive(Clone)]
pub(super) struct Remote {
    cluster: Cluster,
    hub: Hub,
}

/// A subscription: where it starts, then every later frame.
pub(super) struct Subscribed {
    pub start: StreamStart,
    pub frames: Frames,
}

/// The frames after a start point.
pub(super) enum Frames {
    /// From this node's actor.
    Local(Receiver<Arc<Frame>>),
    /// From another node's, through Redis.
    Remote(Feed),
}

impl Frames {
    /// The next frame; `Lagged` when the connection fell behind (resync), `Closed` when the
    /// source ended (the actor stopped, or the hub cut the event's channel: follow again).
    pub(super) async fn recv(&mut self) -> Result<Arc<Frame>, RecvError> {
        match self {
            Self::Local(frames) => frames.recv().await,
            Self::Remote(feed) => feed.recv().await,
        }
    }

    /// The next frame if one is waiting.
    pub(super) fn try_recv(&mut self) -> Result<Arc<Frame>, TryRecvError> {
        match self {
            Self::Local(frames) => frames.try_recv(),
            Self::Remote(feed) => feed.try_recv(),
        }
    }
}

// A connection runs on the stream's runtime (`AppState::spawn_stream`); what it asks of
// its source runs on the request runtime: finding the event may start its actor, and
// asking another node opens pooled connections, and both must outlive the stream's threads.
impl Source {
    /// Where `event` lives now: its actor here (activated if needed), or another node.
    pub(super) async fn locate(state: &AppState, event: EventId) -> Result<Self, ApiError> {
        let here = state.clone();
        state.on_request_runtime(async move { Self::find(&here, event).await }).await
    }

    async fn find(state: &AppState, event: EventId) -> Result<Self, ApiError> {
        let Some(cluster) = state.cluster() else { return Ok(Self::Local(state.event(event).await?)) };
        if let Route::Local(_) = cluster.route(event) {
            match state.event(event).await {
                Ok(handle) => return Ok(Self::Local(handle)),
                // Its shard moved on meanwhile.
                Err(ApiError::Moving(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(fanout) = cluster.fanout() else {
            return Err(ApiError::Unavailable(
                "following another node's event needs cluster.redis_url".into(),
                Duration::from_secs(5),
            ));
        };
        Ok(Self::Remote(Remote { cluster: cluster.clone(), hub: fanout.hub().clone() }))
    }

    /// Subscribes from `resume`, or from a snapshot.
    pub(super) async fn subscribe(
        &self,
        state: &AppState,
        event: EventId,
        resume: Option<Resume>,
    ) -> Result<Subscribed, ApiError> {
        let (source, here) = (self.clone(), state.clone());
        state
            .on_request_runtime(async move {
                match source {
                    Self::Local(handle) => {
                        let (start, frames) = subscribe_local(&handle, resume).await?;
                        Ok(Subscribed { start, frames: Frames::Local(frames) })
                    }
                    Self::Remote(remote) => remote.subscribe(&here, event, resume).await,
                }
            })
            .await
    }

    /// Where `user` stands in the event's queue (asking is their heartbeat).
    pub(super) async fn queue_status(
        &self,
        state: &AppState,
        event: EventId,
        user: UserId,
    ) -> Result<QueueStanding, ApiError> {
        let (source, here) = (self.clone(), state.clone());
        state
            .on_request_runtime(async move {
                match source {
                    Self::Local(handle) => Ok(handle.queue_status(user).await?),
                    Self::Remote(remote) => remote.queue_status(&here, event, user).await,
                }
            })
            .await
    }
}

impl Remote {
    /// Subscribes to the event's channel first, then asks the owner where to start, then
    /// binds the two: every frame after the start reaches the feed.
    async fn subscribe(
        &self,
        state: &AppState,
        event: EventId,
        resume: Option<Resume>,
    ) -> Result<Subscribed, ApiError> {
        for _ in 0..BIND_ATTEMPTS {
            let feed = self
                .hub
                .subscribe(event)
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string(), Duration::from_secs(1)))?;
            let start = self.start(state, event, resume).await?;
            if feed.bind(start.stream, start.seq) {
                return Ok(Subscribed { start, frames: Frames::Remote(feed) });
            }
        }
        Err(ApiError::Unavailable("the event's stream kept changing".into(), Duration::from_secs(1)))
    }

    /// The start point, from the owner, following the event while it moves (within
    /// `cluster.reroute_budget_ms`).
    async fn start(&self, state: &AppState, event: EventId, resume: Option<Resume>) -> Result<StreamStart, ApiError> {
        let settings = &state.settings().cluster;
        let deadline = Instant::now() + Duration::from_millis(settings.reroute_budget_ms);
        let timeout = Duration::from_millis(settings.forward_timeout_ms);
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.cluster.route(event) {
                // It came here meanwhile: the local actor cuts the start; its frames reach
                // the feed through Redis like any owner's.
                Route::Local(_) => match state.event(event).await {
                    Ok(handle) => return Ok(subscribe_local(&handle, resume).await?.0),
                    Err(ApiError::Moving(_)) => {}
                    Err(e) => return Err(e),
                },
                Route::Remote { node, address } => {
                    let request = state
                        .http_client()
                        .get(stream_start_url(&address, event, resume))
                        .header(CLUSTER_KEY, state.cluster_key())
                        .timeout(timeout);
                    match request.send().await {
                        Ok(answer) if answer.status() == StatusCode::OK => {
                            let body = answer.bytes().await.map_err(|e| unavailable(&node, e))?;
                            return StreamStart::decode(body).map_err(|e| ApiError::Internal(e.to_string()));
                        }
                        Ok(answer) if answer.status() == StatusCode::NOT_FOUND => {
                            return Err(ApiError::NotFound { what: "event" });
                        }
                        Ok(answer) if answer.status() == StatusCode::UNAUTHORIZED => {
                            return Err(ApiError::Internal(format!(
                                "node {node} refused this node's cluster key: do their auth.jwt_secret differ?"
                            )));
                        }
                        // Moving on (503 with REROUTE), busy, or unreachable: ask again.
                        Ok(answer) => {
                            let rerouted = answer.headers().contains_key(&REROUTE);
                            tracing::debug!(%node, status = %answer.status(), rerouted, "no stream start yet");
                        }
                        Err(e) => tracing::debug!(%node, error = %e, "no stream start yet"),
                    }
                }
                Route::Moving => {}
            }
            if Instant::now() + backoff >= deadline {
                return Err(moving());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Where `user` stands, asked wherever the event lives now. One attempt: the next
    /// update asks again.
    async fn queue_status(&self, state: &AppState, event: EventId, user: UserId) -> Result<QueueStanding, ApiError> {
        let (node, address) = match self.cluster.route(event) {
            Route::Local(_) => return Ok(state.event(event).await?.queue_status(user).await?),
            Route::Remote { node, address } => (node, address),
            Route::Moving => return Err(moving()),
        };
        let answer = state
            .http_client()
            .get(queue_standing_url(&address, event, user))
            .header(CLUSTER_KEY, state.cluster_key())
            .timeout(QUEUE_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(&node, e))?;
        answer.json().await.map_err(|e| unavailable(&node, e))
    }
}

/// Subscribes to this node's actor.
async fn subscribe_local(
    handle: &EventHandle,
    resume: Option<Resume>,
) -> Result<(StreamStart, Receiver<Arc<Frame>>), ApiError> {
    let Subscription { stream, start, frames } = handle.subscribe(resume).await?;
    Ok((StreamStart::new(stream, start, resume.map_or(0, |r| r.since)), frames))
}

fn moving() -> ApiError {
    ApiError::Unavailable("the event is moving between nodes".into(), Duration::from_secs(1))
}

fn unavailable(node: &str, e: reqwest::Error) -> ApiError {
    ApiError::Unavailable(format!("node {node}: {e}"), Duration::from_secs(1))
}
