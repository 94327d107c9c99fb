//! `/admin/actors`: operators inspect and steer the live event actors of this node.
//! Inspection never activates an actor: an event that is not live is a 404 here.

use crate::dto::AvailabilityDto;
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiPath};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::collections::BTreeMap;
use tiketi_actors::{ActorInfo, EventHandle};
use tiketi_engine::{EventId, Timestamp};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The actor routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_actors))
        .routes(routes!(actor_detail))
        .routes(routes!(passivate))
        .routes(routes!(flush))
}

/// The admission queue as an actor holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorQueueDto {
    /// Waiting.
    pub waiting: u64,
    /// Admitted and not done.
    pub active: u64,
    /// Admitted since the actor started.
    pub admitted: u64,
}

/// One live event actor.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorDto {
    /// The event.
    pub event_id: Uuid,
    /// Its title.
    pub title: String,
    /// Live status.
    pub status: String,
    /// Seats by status.
    pub seats: AvailabilityDto,
    /// Held reservations awaiting payment.
    pub holds: usize,
    /// The admission queue.
    pub queue: ActorQueueDto,
    /// Requests sent to the actor and not yet handled (its mailbox depth, as we count it).
    pub in_flight: usize,
    /// Seq of the last change decided.
    pub seq: u64,
    /// Seq committed to the store.
    pub committed_seq: u64,
    /// Change sets decided and not yet committed.
    pub persistence_lag_seqs: u64,
    /// How long the oldest uncommitted change set has waited, in milliseconds.
    pub persistence_lag_ms: u64,
    /// Since activation.
    pub uptime_seconds: u64,
    /// Since the last buyer or admin message.
    pub idle_seconds: u64,
    /// Messages handled.
    pub messages: u64,
    /// Live-stream connections to it on this node (a moment's count: one joining or leaving
    /// may be missed).
    pub subscribers: usize,
    /// Why it may not be passivated now (`on_sale`, `live_holds`, `queue`, `subscribers`,
    /// `unflushed`), or null.
    pub pinned: Option<&'static str>,
}

impl ActorDto {
    /// `serving`: the event's subscriptions its sweepers hold, and the connections they
    /// serve with them (see [`crate::routes::stream::Sweepers::serving`]).
    fn new(info: &ActorInfo, in_flight: usize, serving: (usize, usize)) -> Self {
        Self {
            event_id: info.event.uuid(),
            title: info.title.clone(),
            status: info.status.as_str().into(),
            seats: AvailabilityDto::from(info.counts),
            holds: info.holds,
            queue: ActorQueueDto {
                waiting: info.queue_waiting,
                active: info.queue_active,
                admitted: info.queue_admitted,
            },
            in_flight,
            seq: info.seq,
            committed_seq: info.committed_seq,
            persistence_lag_seqs: info.seq.saturating_sub(info.committed_seq),
            persistence_lag_ms: info.uncommitted_for.as_millis() as u64,
            uptime_seconds: info.uptime.as_secs(),
            idle_seconds: info.idle.as_secs(),
            messages: info.messages,
            subscribers: info.subscribers.saturating_sub(serving.0) + serving.1,
            pinned: info.pinned,
        }
    }
}

/// A refusal the actor noted.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentErrorDto {
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// What.
    pub message: String,
}

/// One live event actor in detail.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorDetailDto {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: ActorDto,
    /// The last refusals (overload, engine errors), oldest first.
    pub recent_errors: Vec<RecentErrorDto>,
    /// The engine's next deadline (ms since the Unix epoch): a hold expiry, sale start or
    /// end, or queue work.
    pub next_deadline: Option<i64>,
    /// When the armed timer fires (ms since the Unix epoch).
    pub timer_at: Option<i64>,
    /// Change sets waiting for room in a full journal.
    pub overflow: usize,
    /// Durable replies waiting for their commit.
    pub parked_replies: usize,
    /// Held reservations by time left until expiry (`1m`, `2m`, `5m`, `10m`, `later`).
    pub hold_expiries: BTreeMap<&'static str, u32>,
}

impl ActorDetailDto {
    fn new(info: &ActorInfo, in_flight: usize, serving: (usize, usize)) -> Self {
        let millis = |t: Option<Timestamp>| t.map(Timestamp::millis);
        Self {
            summary: ActorDto::new(info, in_flight, serving),
            recent_errors: info
                .recent_errors
                .iter()
                .map(|(at, message)| RecentErrorDto { at: at.millis(), message: message.clone() })
                .collect(),
            next_deadline: millis(info.next_deadline),
            timer_at: millis(info.timer_at),
            overflow: info.overflow,
            parked_replies: info.parked,
            hold_expiries: info.hold_expiries.iter().copied().collect(),
        }
    }
}

/// Every live actor on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorList {
    /// One per live event, by event id.
    pub data: Vec<ActorDto>,
}

/// A passivation that happened.
#[derive(Debug, Serialize, ToSchema)]
pub struct PassivatedDto {
    /// Always true: a refusal is a 409 naming what pins the actor.
    pub passivated: bool,
}

fn live(state: &AppState, event: Uuid) -> Result<EventHandle, ApiError> {
    state.directory().live(EventId(event)).ok_or(ApiError::NotFound { what: "actor" })
}

/// Every live event actor on this node.
#[utoipa::path(get, path = "/admin/actors", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = ActorList), (status = 403, description = "not an admin")))]
async fn list_actors(State(state): State<AppState>, _: AdminUser) -> Result<Json<ActorList>, ApiError> {
    let mut data = Vec::new();
    for handle in state.directory().live_events() {
        // An actor that stopped meanwhile is simply not listed.
        if let Ok(info) = handle.inspect().await {
            data.push(ActorDto::new(&info, handle.in_flight(), state.sweepers().serving(info.event)));
        }
    }
    data.sort_by_key(|a| a.event_id);
    Ok(Json(ActorList { data }))
}

/// One live event actor in detail.
#[utoipa::path(get, path = "/admin/actors/{eventId}", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = ActorDetailDto), (status = 403, description = "not an admin"),
        (status = 404, description = "the event's actor is not live on this node")))]
async fn actor_detail(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(event): ApiPath<Uuid>,
) -> Result<Json<ActorDetailDto>, ApiError> {
    let handle = live(&state, event)?;
    let info = handle.inspect().await?;
    Ok(Json(ActorDetailDto::new(&info, handle.in_flight(), state.sweepers().serving(info.event))))
}

/// Passivate an actor now: it leaves memory and the next request brings it back from the
/// store with the same seat map, holds and queue. Refused (409 `actor_pinned`) while the
/// event is on sale or has changes in flight. (Idle passivation is stricter: it also
/// leaves alone events with holds, a queue or live-stream subscribers.)
#[utoipa::path(post, path = "/admin/actors/{eventId}/passivate", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = PassivatedDto), (status = 403, description = "not an admin"),
        (status = 404, description = "the event's actor is not live on this node"),
        (status = 409, description = "actor_pinned: something keeps it in memory")))]
async fn passivate(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(event): ApiPath<Uuid>,
) -> Result<Json<PassivatedDto>, ApiError> {
    live(&state, event)?;
    if state.directory().passivate(EventId(event), true).await? {
        Ok(Json(PassivatedDto { passivated: true }))
    } else {
        Err(ApiError::NotFound { what: "actor" })
    }
}

/// Flush an actor: answers once everything it decided is committed to the store.
#[utoipa::path(post, path = "/admin/actors/{eventId}/flush", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = ActorDetailDto), (status = 403, description = "not an admin"),
        (status = 404, description = "the event's actor is not live on this node"),
        (status = 503, description = "the store did not commit in time")))]
async fn flush(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(event): ApiPath<Uuid>,
) -> Result<Json<ActorDetailDto>, ApiError> {
    let handle = live(&state, event)?;
    let info = handle.persist().await?;
    Ok(Json(ActorDetailDto::new(&info, handle.in_flight(), state.sweepers().serving(info.event))))
}
