//! Holding seats and managing one's reservations.

use crate::auth::hex;
use crate::batch::Found;
use crate::dto::ReservationDto;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, AuthUser, IdempotencyHeader};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiketi_actors::{CancelCmd, HoldCmd, IdempotencyKey, RefundCmd, SelectionInput};
use tiketi_engine::{EventId, ReservationId, ReservationStatus, TicketTypeId, UserId};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How long a hold waits for the store's view of an idempotency key before going ahead
/// without it.
const STORE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The header that carries an admission token on a queue-gated event.
const ADMISSION_TOKEN: &str = "x-admission-token";

/// Most seat ids one request may name.
const MAX_SEAT_IDS: usize = 100;

/// The reservation routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_reservation))
        .routes(routes!(my_reservations))
        .routes(routes!(get_reservation))
        .routes(routes!(cancel_reservation))
}

/// Best-available selection.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BestAvailableRequest {
    /// How many seats.
    pub quantity: u32,
    /// Only in this section.
    pub section: Option<String>,
    /// Side by side in one row (default true).
    #[serde(default = "yes")]
    pub adjacent: bool,
}

fn yes() -> bool {
    true
}

/// `POST /events/{eventId}/reservations`: exactly one of `seatIds`, `ticketTypeId` +
/// `quantity`, or `bestAvailable`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReservationRequest {
    /// Specific seats, e.g. `["VIP-A-1", "VIP-A-2"]`.
    pub seat_ids: Option<Vec<String>>,
    /// A general-admission ticket type...
    pub ticket_type_id: Option<Uuid>,
    /// ...and how many tickets of it.
    pub quantity: Option<u32>,
    /// Let the engine pick.
    pub best_available: Option<BestAvailableRequest>,
}

impl TryFrom<CreateReservationRequest> for SelectionInput {
    type Error = ApiError;

    fn try_from(req: CreateReservationRequest) -> Result<Self, ApiError> {
        match (req.seat_ids, req.ticket_type_id, req.quantity, req.best_available) {
            (Some(ids), None, None, None) => {
                if ids.is_empty() || ids.len() > MAX_SEAT_IDS {
                    return Err(ApiError::invalid("seatIds", format!("must name 1-{MAX_SEAT_IDS} seats")));
                }
                if let Some(bad) = ids.iter().find(|id| id.is_empty() || id.len() > 64) {
                    return Err(ApiError::invalid("seatIds", format!("invalid seat id {bad:?}")));
                }
                Ok(Self::Seats(ids))
            }
            (None, Some(ticket_type), quantity, None) => {
                let quantity = quantity.ok_or_else(|| ApiError::invalid("quantity", "required with ticketTypeId"))?;
                if quantity == 0 {
                    return Err(ApiError::invalid("quantity", "must be at least 1"));
                }
                Ok(Self::General { ticket_type: TicketTypeId(ticket_type), quantity })
            }
            (None, None, None, Some(best)) => {
                if best.quantity == 0 {
                    return Err(ApiError::invalid("bestAvailable.quantity", "must be at least 1"));
                }
                Ok(Self::BestAvailable { quantity: best.quantity, section: best.section, adjacent: best.adjacent })
            }
            (None, None, Some(_), None) => Err(ApiError::invalid("ticketTypeId", "required with quantity")),
            _ => Err(ApiError::invalid(
                "seatIds",
                "give exactly one of seatIds, ticketTypeId with quantity, or bestAvailable",
            )),
        }
    }
}

/// A user's reservations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationList {
    /// Newest first.
    pub data: Vec<ReservationDto>,
}

/// The fingerprint an idempotency key is bound to: method, path and the parsed body.
pub(crate) fn fingerprint(method: &str, path: &str, body: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hex(&hasher.finalize())
}

/// Binds an `Idempotency-Key` to this request. The event's actor checks its own event's
/// keys exactly; this extra look at the store catches a key first used on another event.
/// It is best effort and bounded: holds must keep working while the database is slow or
/// down, so a store that does not answer in time is not consulted. Lookups of concurrent
/// requests share one query ([`crate::batch`]): a burst of keyed holds costs the database a
/// few queries, not one each.
pub(crate) async fn idempotency(
    state: &AppState,
    user: UserId,
    key: Option<String>,
    fingerprint: String,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    if let Found::Yes(stored) = state.stored_fingerprint(user, key.clone(), STORE_CHECK_TIMEOUT).await
        && stored != fingerprint
    {
        return Err(tiketi_actors::ActorError::IdempotencyMismatch.into());
    }
    Ok(Some(IdempotencyKey { key, fingerprint }))
}

/// A reservation from the store. The store trails the event actors by one group commit, so
/// a miss may be a reservation created a moment ago: wait for what the journal holds now to
/// commit, then look once more (read-your-writes after a create).
pub(crate) async fn stored_reservation(
    state: &AppState,
    id: ReservationId,
) -> Result<Option<tiketi_engine::Reservation>, ApiError> {
    if let Some(r) = state.store().reservation(id).await? {
        return Ok(Some(r));
    }
    // Not in the store yet: it may be a hold this node's journal has not committed, or, in
    // a cluster, one the owner of its shard decided; only the owner can wait for it.
    if let Some(cluster) = state.cluster() {
        let shard = tiketi_cluster::shard_of_reservation(id);
        if cluster.shard_fence(shard).is_none() {
            return Err(ApiError::Moving(shard));
        }
    }
    caught_up(state).await;
    Ok(state.store().reservation(id).await?)
}

/// Waits until the store has everything the actors decided so far (one group commit), so a
/// read of it after an actor said "no longer live" sees how it ended. Bounded: with the
/// database down, the read goes ahead with what the store has.
pub(crate) async fn caught_up(state: &AppState) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), state.directory().journal().flushed()).await;
}

/// Hold seats: specific ones, a GA quantity, or the best available. All or nothing.
#[utoipa::path(post, path = "/events/{eventId}/reservations", tag = "reservations", security(("bearer" = [])),
    params(("eventId" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = CreateReservationRequest,
    responses((status = 201, body = ReservationDto),
        (status = 409, description = "seats_unavailable, limit_exceeded or not_on_sale"),
        (status = 422, description = "invalid field"), (status = 429, description = "event busy; Retry-After"),
        (status = 503, description = "overloaded; Retry-After")))]
async fn create_reservation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(event): ApiPath<Uuid>,
    IdempotencyHeader(key): IdempotencyHeader,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateReservationRequest>,
) -> Result<(StatusCode, Json<ReservationDto>), ApiError> {
    // A token for another buyer or event, forged or expired, is refused outright; without
    // one, the actor refuses only if the event's queue gates it.
    let admitted = match headers.get(ADMISSION_TOKEN) {
        Some(token) => {
            let token = token.to_str().unwrap_or_default();
            if !state.auth().verify_admission(token, user.id, EventId(event)) {
                return Err(ApiError::AdmissionRequired(
                    "the admission token is invalid, expired, or for another buyer or event",
                ));
            }
            true
        }
        None => false,
    };
    let print = fingerprint("POST", &format!("/events/{event}/reservations"), &req);
    let selection = SelectionInput::try_from(req)?;
    // The engine says "quantity"; name the field this request used for it.
    let quantity_field = match &selection {
        SelectionInput::Seats(_) => "seatIds",
        SelectionInput::General { .. } => "quantity",
        SelectionInput::BestAvailable { .. } => "bestAvailable.quantity",
    };
    let idempotency = idempotency(&state, user.id, key, print).await?;
    let handle = state.event(EventId(event)).await?;
    let cmd = HoldCmd {
        id: tiketi_cluster::new_reservation_id(EventId(event)),
        user: user.id,
        selection,
        idempotency,
        admitted,
    };
    let reservation = handle.hold(cmd).await.map_err(|e| match e {
        tiketi_actors::ActorError::Engine(tiketi_engine::EngineError::InvalidQuantity { max }) => {
            ApiError::invalid(quantity_field, format!("must be between 1 and {max} per reservation"))
        }
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(ReservationDto::build(&state, &reservation).await?)))
}

/// The caller's reservations, newest first.
#[utoipa::path(get, path = "/reservations/my", tag = "reservations", security(("bearer" = [])),
    responses((status = 200, body = ReservationList)))]
async fn my_reservations(State(state): State<AppState>, user: AuthUser) -> Result<Json<ReservationList>, ApiError> {
    let mut data = Vec::new();
    for r in state.store().reservations_of(user.id).await? {
        data.push(ReservationDto::build(&state, &r).await?);
    }
    Ok(Json(ReservationList { data }))
}

/// One reservation (its owner or an admin only; anyone else gets 404).
#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ReservationDto), (status = 404, description = "no such reservation of yours")))]
async fn get_reservation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ReservationDto>, ApiError> {
    let stored = stored_reservation(&state, ReservationId(id)).await?;
    let reservation =
        stored.filter(|r| user.is_admin() || r.user == user.id).ok_or(ApiError::NotFound { what: "reservation" })?;
    let reservation = as_it_stands(&state, reservation).await?;
    Ok(Json(ReservationDto::build(&state, &reservation).await?))
}

/// A stored reservation as it stands now. The store trails the actor by one group commit;
/// a live actor knows the latest status. (If the actor no longer has it, it ended since and
/// the store says how within one commit.)
pub(crate) async fn as_it_stands(
    state: &AppState,
    stored: tiketi_engine::Reservation,
) -> Result<tiketi_engine::Reservation, ApiError> {
    if stored.status.is_live()
        && let Some(handle) = state.directory().live(stored.event)
        && let Some(live) = handle.reservation(stored.id).await?
    {
        return Ok(live);
    }
    Ok(stored)
}

/// Cancel a reservation; the seats go back on sale. Answered once durable.
#[utoipa::path(post, path = "/reservations/{id}/cancel", tag = "reservations", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = ReservationDto), (status = 404, description = "no such reservation of yours"),
        (status = 409, description = "invalid_state: already expired or cancelled")))]
async fn cancel_reservation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    IdempotencyHeader(key): IdempotencyHeader,
) -> Result<Json<ReservationDto>, ApiError> {
    let stored = stored_reservation(&state, ReservationId(id)).await?;
    let stored =
        stored.filter(|r| user.is_admin() || r.user == user.id).ok_or(ApiError::NotFound { what: "reservation" })?;
    let print = fingerprint("POST", &format!("/reservations/{id}/cancel"), &());
    let idempotency = idempotency(&state, user.id, key, print).await?;
    let handle = state.event(stored.event).await?;
    let cmd = CancelCmd { reservation: stored.id, caller: user.caller(), idempotency: idempotency.clone() };
    match handle.cancel(cmd).await {
        Ok(r) => Ok(Json(ReservationDto::build(&state, &r).await?)),
        // Paid: cancelling it is refunding it (answered once the refund is durable).
        Err(tiketi_actors::ActorError::Engine(tiketi_engine::EngineError::RefundRequired)) => {
            let reason = "reservation cancelled".to_owned();
            let cmd = RefundCmd { reservation: stored.id, caller: user.caller(), reason, idempotency, audit: None };
            handle.refund_payment(cmd).await?;
            let latest = state.store().reservation(stored.id).await?.unwrap_or(stored);
            Ok(Json(ReservationDto::build(&state, &latest).await?))
        }
        // Not live any more: cancelling a cancelled reservation is a no-op; an expired one
        // is a conflict.
        Err(tiketi_actors::ActorError::Engine(tiketi_engine::EngineError::ReservationNotFound)) => {
            caught_up(&state).await;
            let latest = state.store().reservation(stored.id).await?.unwrap_or(stored);
            match latest.status {
                ReservationStatus::Cancelled => Ok(Json(ReservationDto::build(&state, &latest).await?)),
                from => {
                    Err(tiketi_engine::EngineError::InvalidTransition { from, to: ReservationStatus::Cancelled }.into())
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}
