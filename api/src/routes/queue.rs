//! The admission queue (virtual waiting room): buyers join, poll (the poll is also their
//! heartbeat) and leave; an admitted buyer gets a short-lived signed admission token that
//! creating a reservation on a queue-gated event requires (`X-Admission-Token`). Admins
//! view, clear and re-tune a queue live. The queue itself lives in the event's actor.

use crate::error::ApiError;
use crate::extract::{AdminUser, ApiJson, ApiPath, AuthUser};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tiketi_actors::{EventHandle, EventPatch};
use tiketi_engine::{EventId, QueueSettings, QueueStanding, QueueView, Timestamp, UserId};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The queue routes (buyers' and admins').
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(join))
        .routes(routes!(status))
        .routes(routes!(leave))
        .routes(routes!(view, settings, clear))
}

/// Queue settings as the API spells them; in an update, only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueSettingsBody {
    /// Buyers must queue and be admitted before they may reserve.
    pub enabled: Option<bool>,
    /// Buyers admitted per second (0: no rate limit; at most 100,000).
    pub rate_per_second: Option<u32>,
    /// Most admitted buyers at once (0: no cap).
    pub max_active: Option<u32>,
    /// Seconds an admitted buyer has to reserve (10-3600).
    pub admission_ttl_seconds: Option<u64>,
    /// Seconds a waiting buyer may go without polling before dropping out (5-3600).
    pub heartbeat_ttl_seconds: Option<u64>,
}

impl QueueSettingsBody {
    /// `base` with the given fields changed, each checked; `field` prefixes error names.
    pub fn apply(&self, base: QueueSettings, field: &str) -> Result<QueueSettings, ApiError> {
        let mut settings = base;
        if let Some(enabled) = self.enabled {
            settings.enabled = enabled;
        }
        if let Some(rate) = self.rate_per_second {
            if rate > 100_000 {
                return Err(ApiError::invalid(format!("{field}ratePerSecond"), "must be 0-100000"));
            }
            settings.rate_per_second = rate;
        }
        if let Some(cap) = self.max_active {
            settings.max_active = cap;
        }
        if let Some(secs) = self.admission_ttl_seconds {
            if !(10..=3600).contains(&secs) {
                return Err(ApiError::invalid(format!("{field}admissionTtlSeconds"), "must be 10-3600"));
            }
            settings.admission_ttl = Duration::from_secs(secs);
        }
        if let Some(secs) = self.heartbeat_ttl_seconds {
            if !(5..=3600).contains(&secs) {
                return Err(ApiError::invalid(format!("{field}heartbeatTtlSeconds"), "must be 5-3600"));
            }
            settings.heartbeat_ttl = Duration::from_secs(secs);
        }
        Ok(settings)
    }
}

/// Queue settings in force.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettingsDto {
    /// Whether the queue gates reservations.
    pub enabled: bool,
    /// Buyers admitted per second (0: no rate limit).
    pub rate_per_second: u32,
    /// Most admitted buyers at once (0: no cap).
    pub max_active: u32,
    /// Seconds an admitted buyer has to reserve.
    pub admission_ttl_seconds: u64,
    /// Seconds a waiting buyer may go without polling.
    pub heartbeat_ttl_seconds: u64,
}

impl From<&QueueSettings> for QueueSettingsDto {
    fn from(s: &QueueSettings) -> Self {
        Self {
            enabled: s.enabled,
            rate_per_second: s.rate_per_second,
            max_active: s.max_active,
            admission_ttl_seconds: s.admission_ttl.as_secs(),
            heartbeat_ttl_seconds: s.heartbeat_ttl.as_secs(),
        }
    }
}

/// Where a buyer stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatusDto {
    /// `waiting`, `admitted`, `sold_out` (in line, admission paused), `closed` (the event
    /// ended or was cancelled) or `not_queued`.
    pub status: &'static str,
    /// 1-based place in line; absent in the pre-queue before sale start (the order is drawn
    /// at opening).
    pub position: Option<u64>,
    /// Estimated seconds until admission, from the observed admission rate; before sale
    /// start, the time until it.
    pub estimated_wait_seconds: Option<u64>,
    /// While admitted: the token to send as `X-Admission-Token` when reserving.
    pub admission_token: Option<String>,
    /// While admitted: when the admission lapses (RFC 3339).
    pub admitted_until: Option<String>,
    /// Hex SHA-256 of the seed the pre-queue's order is drawn from, published before
    /// opening.
    pub seed_hash: String,
    /// The seed itself, once the queue has opened: the pre-queue's order is ascending
    /// SHA-256(seed bytes ‖ user id's 16 bytes).
    pub seed: Option<String>,
}

impl QueueStatusDto {
    /// The answer for `user`, with a fresh admission token when admitted.
    pub fn new(
        state: &AppState,
        event: EventId,
        user: UserId,
        standing: QueueStanding,
        view: &QueueView,
    ) -> Result<Self, ApiError> {
        let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let (status, position, wait, until) = match standing {
            QueueStanding::NotQueued => ("not_queued", None, None, None),
            QueueStanding::Waiting { position, estimated_wait } => {
                ("waiting", position, estimated_wait.map(seconds), None)
            }
            QueueStanding::Admitted { until } => ("admitted", None, Some(0), Some(until)),
            QueueStanding::SoldOut { position } => ("sold_out", position, None, None),
            QueueStanding::Closed => ("closed", None, None, None),
        };
        let admission_token = until.map(|until| state.auth().issue_admission(user, event, until)).transpose()?;
        Ok(Self {
            status,
            position,
            estimated_wait_seconds: wait,
            admission_token,
            admitted_until: until.map(rfc3339),
            seed_hash: view.seed_hash.clone(),
            seed: view.seed.clone(),
        })
    }
}

/// The admin's view of a queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueAdminDto {
    /// Settings in force.
    pub settings: QueueSettingsDto,
    /// Buyers waiting (the pre-queue included).
    pub length: u64,
    /// Of those, buyers awaiting the opening draw.
    pub pre_queue: u64,
    /// Buyers admitted and not done yet.
    pub active: u64,
    /// Admissions since the event's actor started.
    pub admitted: u64,
    /// Admissions per second over the last minute.
    pub observed_rate: f64,
    /// Hex SHA-256 of the draw seed.
    pub seed_hash: String,
    /// The seed, once opened.
    pub seed: Option<String>,
    /// Whether the pre-queue has been drawn.
    pub opened: bool,
}

impl From<&QueueView> for QueueAdminDto {
    fn from(v: &QueueView) -> Self {
        Self {
            settings: (&v.settings).into(),
            length: v.waiting,
            pre_queue: v.pre_queue,
            active: v.active,
            admitted: v.admitted_total,
            observed_rate: v.observed_rate,
            seed_hash: v.seed_hash.clone(),
            seed: v.seed.clone(),
            opened: v.opened,
        }
    }
}

fn rfc3339(t: Timestamp) -> String {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(t.millis());
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A buyer's standing with the queue's published seed (hash), and a token if admitted.
async fn answer(
    state: &AppState,
    handle: &EventHandle,
    user: UserId,
    standing: QueueStanding,
) -> Result<Json<QueueStatusDto>, ApiError> {
    let view = handle.queue_view().await?;
    Ok(Json(QueueStatusDto::new(state, handle.event(), user, standing, &view)?))
}

/// Join the event's admission queue (joining again is a heartbeat).
#[utoipa::path(post, path = "/events/{eventId}/queue/join", tag = "queue", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = QueueStatusDto), (status = 401, description = "not signed in"),
        (status = 404, description = "no such event"), (status = 409, description = "queue_disabled or not_on_sale")))]
async fn join(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<QueueStatusDto>, ApiError> {
    let handle = state.event(EventId(id)).await?;
    let standing = handle.join_queue(user.id).await?;
    answer(&state, &handle, user.id, standing).await
}

/// Where the caller stands in the queue; polling it is the heartbeat that keeps a waiting
/// buyer in line.
#[utoipa::path(get, path = "/events/{eventId}/queue/status", tag = "queue", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = QueueStatusDto), (status = 401, description = "not signed in"),
        (status = 404, description = "no such event")))]
async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<QueueStatusDto>, ApiError> {
    let handle = state.event(EventId(id)).await?;
    let standing = handle.queue_status(user.id).await?;
    answer(&state, &handle, user.id, standing).await
}

/// Leave the queue; an admitted slot passes to the next buyer.
#[utoipa::path(delete, path = "/events/{eventId}/queue", tag = "queue", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 204), (status = 401, description = "not signed in"), (status = 404, description = "no such event")))]
async fn leave(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    state.event(EventId(id)).await?.leave_queue(user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The queue as an operator sees it: length, admitted, active, rate, seed hash.
#[utoipa::path(get, path = "/admin/events/{eventId}/queue", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = QueueAdminDto), (status = 403, description = "not an admin"),
        (status = 404, description = "no such event")))]
async fn view(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<QueueAdminDto>, ApiError> {
    let view = state.event(EventId(id)).await?.queue_view().await?;
    Ok(Json((&view).into()))
}

/// Change the queue's settings live (enable, rate, cap, TTLs); only the fields given change.
#[utoipa::path(put, path = "/admin/events/{eventId}/queue", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)), request_body = QueueSettingsBody,
    responses((status = 200, body = QueueAdminDto), (status = 403, description = "not an admin"),
        (status = 404, description = "no such event"), (status = 422, description = "a setting out of range")))]
async fn settings(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<QueueSettingsBody>,
) -> Result<Json<QueueAdminDto>, ApiError> {
    let handle = state.event(EventId(id)).await?;
    let current = handle.view().await?.record.queue;
    let queue = body.apply(current, "")?;
    handle.update(EventPatch { queue: Some(queue), ..EventPatch::default() }).await?;
    Ok(Json((&handle.queue_view().await?).into()))
}

/// Empty the queue: everyone waiting or admitted leaves.
#[utoipa::path(delete, path = "/admin/events/{eventId}/queue", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = QueueAdminDto), (status = 403, description = "not an admin"),
        (status = 404, description = "no such event")))]
async fn clear(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<QueueAdminDto>, ApiError> {
    let view = state.event(EventId(id)).await?.clear_queue().await?;
    Ok(Json((&view).into()))
}
