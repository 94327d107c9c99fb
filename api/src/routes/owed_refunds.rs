//! Admin: the captures an event owes back (they landed too late to sell anything) and the
//! provider has not refunded yet, and settling one by hand when the provider will not.
//!
//! The event's actor asks the provider for each refund until it is done (again after 5 s
//! when the outcome is unknown, after 5 minutes when the provider refuses). A refusal that
//! lasts (the card's account is closed, the provider's refund window has passed) needs a
//! person: they refund the buyer by other means, then settle the debt here with a reason,
//! and the actor stops asking. The gauge `tiketi_event_owed_refunds` says which events to
//! look at.

use crate::dto::iso;
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiJson, ApiPath};
use crate::routes::admin_reservations::admin_reason;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tiketi_actors::SettleOwedCmd;
use tiketi_engine::{EventId, OwedRefund};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The owed-refund routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(settle))
}

/// A capture owed back.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwedRefundDto {
    /// The order the capture was made for.
    pub order_id: String,
    /// The provider's key of the capture.
    pub payment_key: String,
    /// When the provider captured it.
    pub captured_at: String,
    /// Since when it is owed.
    pub since: String,
}

impl From<&OwedRefund> for OwedRefundDto {
    fn from(o: &OwedRefund) -> Self {
        Self {
            order_id: o.order_id.clone(),
            payment_key: o.payment_key.clone(),
            captured_at: iso(o.captured_at),
            since: iso(o.since),
        }
    }
}

/// An event's captures still owed back.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwedRefundList {
    /// Oldest debt first.
    pub data: Vec<OwedRefundDto>,
}

/// `POST /admin/events/{eventId}/owed-refunds/{paymentKey}/settle`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleRequest {
    /// How the buyer got the money back (required): kept with the debt.
    pub reason: String,
}

/// A debt settled by hand.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettledDto {
    /// The debt as it was.
    #[serde(flatten)]
    pub owed: OwedRefundDto,
    /// The admin who settled it.
    pub settled_by: Uuid,
    /// Their reason.
    pub reason: String,
}

/// The captures the event owes back and the provider has not refunded yet (asks the live
/// actor, starting it if needed).
#[utoipa::path(get, path = "/admin/events/{eventId}/owed-refunds", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = OwedRefundList), (status = 401, description = "not signed in"),
        (status = 403, description = "not an admin"), (status = 404, description = "no such event")))]
async fn list(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath(event): ApiPath<Uuid>,
) -> Result<Json<OwedRefundList>, ApiError> {
    let mut owed = state.event(EventId(event)).await?.owed_refunds().await?;
    owed.sort_by(|a, b| (a.since, &a.payment_key).cmp(&(b.since, &b.payment_key)));
    Ok(Json(OwedRefundList { data: owed.iter().map(OwedRefundDto::from).collect() }))
}

/// Settle a capture owed back by hand, after refunding the buyer by other means: it is no
/// longer owed and the provider is no longer asked to refund it. Recorded with the admin and
/// the reason; answered once durable. Settle only a capture the provider has refused to
/// refund: one whose last request had an unknown outcome may still be refunded by it.
#[utoipa::path(post, path = "/admin/events/{eventId}/owed-refunds/{paymentKey}/settle", tag = "admin",
    security(("bearer" = [])),
    params(("eventId" = Uuid, Path), ("paymentKey" = String, Path)),
    request_body = SettleRequest,
    responses((status = 200, body = SettledDto), (status = 401, description = "not signed in"),
        (status = 403, description = "not an admin"),
        (status = 404, description = "no such event, or the event owes no such capture: refunded (the provider \
            is asked first, and a refund it made is recorded as its) or settled already"),
        (status = 409, description = "payment_in_progress: the provider is being asked to refund it right now; \
            look again in a few seconds"),
        (status = 422, description = "reason missing or too long"),
        (status = 503, description = "the provider could not be asked whether it refunded (nothing was settled), \
            or the settlement is waiting for its commit (list the debts to see)")))]
async fn settle(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiPath((event, payment_key)): ApiPath<(Uuid, String)>,
    ApiJson(req): ApiJson<SettleRequest>,
) -> Result<Json<SettledDto>, ApiError> {
    let reason = admin_reason(&req.reason)?;
    let handle = state.event(EventId(event)).await?;
    let cmd = SettleOwedCmd { payment_key, admin: admin.id, reason: reason.clone() };
    let owed = handle.settle_owed(cmd).await?;
    Ok(Json(SettledDto { owed: OwedRefundDto::from(&owed), settled_by: admin.id.uuid(), reason }))
}
