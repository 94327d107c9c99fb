//! Admin: every reservation, filtered and paged, and changing one's status by hand with an
//! audit record of who did it and why.

use crate::dto::{ReservationDto, iso};
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiJson, ApiPath, ApiQuery};
use crate::routes::events::Pagination;
use crate::routes::reservations::stored_reservation;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tiketi_actors::{ActorError, RefundCmd, SetStatusCmd};
use tiketi_engine::{EngineError, EventId, ReservationId, ReservationStatus, UserId};
use tiketi_persistence::ReservationFilter;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Longest reason an admin may give.
const MAX_REASON: usize = 500;

/// An admin's reason for the record, trimmed: required, at most [`MAX_REASON`] bytes.
pub(crate) fn admin_reason(raw: &str) -> Result<String, ApiError> {
    let reason = raw.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return Err(ApiError::invalid("reason", format!("required, at most {MAX_REASON} bytes")));
    }
    Ok(reason.to_owned())
}

/// The admin reservation routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(set_status)).routes(routes!(audit))
}

/// `GET /admin/reservations` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Only this event's.
    pub event_id: Option<Uuid>,
    /// Only in this status: `held`, `confirmed`, `expired` or `cancelled`.
    pub status: Option<String>,
    /// Only this buyer's.
    pub user_id: Option<Uuid>,
    /// Page, from 1.
    pub page: Option<u32>,
    /// Page size, 1-100 (default 20).
    pub limit: Option<u32>,
}

/// A page of reservations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationPage {
    /// Newest first.
    pub data: Vec<ReservationDto>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// `POST /admin/reservations/{id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatusRequest {
    /// `confirmed` (paid outside the provider, e.g. at the box office) or `cancelled` (a
    /// paid reservation is refunded through the provider).
    pub status: String,
    /// Why, for the audit trail (required).
    pub reason: String,
}

/// One admin status change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditDto {
    /// The admin who made it.
    pub admin_id: Uuid,
    /// Status before.
    pub from: String,
    /// Status after.
    pub to: String,
    /// The admin's reason.
    pub reason: String,
    /// When.
    pub at: String,
}

/// A reservation's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Oldest first.
    pub data: Vec<AuditDto>,
}

/// Every reservation, newest first, filtered by event, status and buyer. Reads the store,
/// which trails the live actors by at most one group commit.
#[utoipa::path(get, path = "/admin/reservations", tag = "admin", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = ReservationPage), (status = 422, description = "invalid filter")))]
async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ReservationPage>, ApiError> {
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(20);
    if page == 0 {
        return Err(ApiError::invalid("page", "must be at least 1"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1-100"));
    }
    let status = match q.status.as_deref() {
        Some(s) => Some(
            ReservationStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "must be held, confirmed, expired or cancelled"))?,
        ),
        None => None,
    };
    let filter = ReservationFilter { event: q.event_id.map(EventId), status, user: q.user_id.map(UserId), page, limit };
    let found = state.store().find_reservations(&filter).await?;
    let mut data = Vec::with_capacity(found.items.len());
    for r in &found.items {
        data.push(ReservationDto::build(&state, r).await?);
    }
    let total_pages = found.total.div_ceil(u64::from(limit));
    Ok(Json(ReservationPage { data, pagination: Pagination { total: found.total, page, limit, total_pages } }))
}

/// Set a live reservation's status by hand: `confirmed` (paid outside the provider) or
/// `cancelled` (its seats go back on sale; a paid one is refunded through the provider
/// first). Recorded with the admin and the reason; answered once durable.
#[utoipa::path(post, path = "/admin/reservations/{id}/status", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = SetStatusRequest,
    responses((status = 200, body = ReservationDto), (status = 404, description = "no such reservation"),
        (status = 409, description = "invalid_state (it has ended) or payment_in_progress"),
        (status = 422, description = "invalid status or reason")))]
async fn set_status(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SetStatusRequest>,
) -> Result<Json<ReservationDto>, ApiError> {
    let to = match ReservationStatus::parse(&req.status) {
        Some(s @ (ReservationStatus::Confirmed | ReservationStatus::Cancelled)) => s,
        _ => return Err(ApiError::invalid("status", "an admin may set confirmed or cancelled")),
    };
    let reason = admin_reason(&req.reason)?;
    let stored =
        stored_reservation(&state, ReservationId(id)).await?.ok_or(ApiError::NotFound { what: "reservation" })?;
    let handle = state.event(stored.event).await?;
    let cmd = SetStatusCmd { reservation: stored.id, to, admin: admin.id, reason: reason.clone() };
    let reservation = match handle.set_status(cmd).await {
        Ok(r) => r,
        // Paid: cancelling is refunding, audited when the refund begins.
        Err(ActorError::Engine(EngineError::RefundRequired)) if to == ReservationStatus::Cancelled => {
            let cmd = RefundCmd {
                reservation: stored.id,
                caller: admin.caller(),
                reason: reason.clone(),
                idempotency: None,
                audit: Some(reason),
            };
            handle.refund_payment(cmd).await?;
            state.store().reservation(stored.id).await?.unwrap_or(stored)
        }
        // Ended already: its final status is in the store.
        Err(ActorError::Engine(EngineError::ReservationNotFound)) => {
            let latest = state.store().reservation(stored.id).await?.unwrap_or(stored);
            return Err(EngineError::InvalidTransition { from: latest.status, to }.into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(ReservationDto::build(&state, &reservation).await?))
}

/// A reservation's admin status changes, oldest first.
#[utoipa::path(get, path = "/admin/reservations/{id}/audit", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AuditList), (status = 404, description = "no such reservation")))]
async fn audit(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AuditList>, ApiError> {
    let id = ReservationId(id);
    stored_reservation(&state, id).await?.ok_or(ApiError::NotFound { what: "reservation" })?;
    let data = state
        .store()
        .audit_of(id)
        .await?
        .into_iter()
        .map(|a| AuditDto {
            admin_id: a.admin.uuid(),
            from: a.from.as_str().into(),
            to: a.to.as_str().into(),
            reason: a.reason,
            at: iso(a.at),
        })
        .collect();
    Ok(Json(AuditList { data }))
}
