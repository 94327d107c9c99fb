//! Paying for reservations: prepare an order, confirm it with the provider's payment key,
//! refund it, look it up. Every decision is the event actor's; the provider is called
//! outside it (see `tiketi_actors`' payments). A buyer sees and touches only their own
//! payments: anyone else's answers 404, as if it did not exist.

use crate::dto::{ReservationDto, iso};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, AuthUser, IdempotencyHeader};
use crate::routes::reservations::{as_it_stands, caught_up, fingerprint, idempotency, stored_reservation};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tiketi_actors::{ConfirmCmd, EventHandle, PrepareCmd, RefundCmd};
use tiketi_engine::{EngineError, Payment, PaymentStatus, Reservation, ReservationId, order_reservation};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Longest payment key or reason accepted (Toss keys are at most 200 characters).
const MAX_KEY_LEN: usize = 200;

/// The payment routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(prepare))
        .routes(routes!(confirm))
        .routes(routes!(my_payments))
        .routes(routes!(get_payment))
        .routes(routes!(cancel))
}

/// `POST /payments/prepare`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrepareRequest {
    /// The held reservation to pay for.
    pub reservation_id: Uuid,
}

/// `POST /payments/confirm`: what the provider's widget hands back on success.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmRequest {
    /// From `POST /payments/prepare`.
    pub order_id: String,
    /// The provider's key for the authorized payment.
    pub payment_key: String,
    /// Must equal the order's amount.
    pub amount: i64,
}

/// `POST /payments/{paymentKey}/cancel` (the body is optional).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, as the provider records it.
    pub reason: Option<String>,
}

/// A payment attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDto {
    /// The order id the provider knows it by.
    pub order_id: String,
    /// The reservation it pays for.
    pub reservation_id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// In minor units, computed by the server from the reservation.
    pub amount: i64,
    /// `ready`, `in_progress`, `done`, `failed`, `cancelling`, `cancelled` or `aborted`.
    pub status: String,
    /// The provider's key, once confirmation began.
    pub payment_key: Option<String>,
    /// The means of payment, as the provider names it.
    pub method: Option<String>,
    /// The provider's last refusal code, if any.
    pub failure_code: Option<String>,
    /// The provider's last refusal message, if any.
    pub failure_message: Option<String>,
    /// When the provider captured it.
    pub approved_at: Option<String>,
    /// When the provider refunded it.
    pub cancelled_at: Option<String>,
    /// Prepared.
    pub created_at: String,
    /// The reservation as it stands (with the confirmation or refund answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationDto>,
}

impl PaymentDto {
    fn new(p: &Payment, reservation: Option<ReservationDto>) -> Self {
        Self {
            order_id: p.order_id.clone(),
            reservation_id: p.reservation.uuid(),
            event_id: p.event.uuid(),
            amount: p.amount,
            status: p.status.as_str().into(),
            payment_key: p.payment_key.clone(),
            method: p.method.clone(),
            failure_code: p.failure.as_ref().map(|f| f.code.clone()),
            failure_message: p.failure.as_ref().map(|f| f.message.clone()),
            approved_at: p.approved_at.map(iso),
            cancelled_at: p.cancelled_at.map(iso),
            created_at: iso(p.created_at),
            reservation,
        }
    }

    /// With the reservation as it stands after a payment command.
    async fn with_reservation(state: &AppState, p: &Payment) -> Result<Self, ApiError> {
        let reservation = match current_reservation(state, p.reservation).await? {
            Some(r) => Some(ReservationDto::build(state, &r).await?),
            None => None,
        };
        Ok(Self::new(p, reservation))
    }
}

/// A user's payment attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    /// Newest first.
    pub data: Vec<PaymentDto>,
}

/// The reservation as it stands: the live actor's view if it still holds it, else the
/// store's (which has every ended reservation once its change committed).
async fn current_reservation(state: &AppState, id: ReservationId) -> Result<Option<Reservation>, ApiError> {
    match stored_reservation(state, id).await? {
        Some(stored) => Ok(Some(as_it_stands(state, stored).await?)),
        None => Ok(None),
    }
}

/// The caller's reservation and its event's actor; 404 for anyone else's.
async fn reservation_of(
    state: &AppState,
    user: &AuthUser,
    id: ReservationId,
) -> Result<(Reservation, EventHandle), ApiError> {
    let r = stored_reservation(state, id)
        .await?
        .filter(|r| user.is_admin() || r.user == user.id)
        .ok_or(ApiError::NotFound { what: "reservation" })?;
    let handle = state.event(r.event).await?;
    Ok((r, handle))
}

fn check_key(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='));
    if ok { Ok(()) } else { Err(ApiError::invalid(field, format!("must be 1-{MAX_KEY_LEN} of [A-Za-z0-9_=-]"))) }
}

/// Prepare the payment of a held reservation: the server fixes the order id and the
/// amount. Preparing again returns the same order. Answered once durable.
#[utoipa::path(post, path = "/payments/prepare", tag = "payments", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = PrepareRequest,
    responses((status = 200, body = PaymentDto), (status = 404, description = "no such reservation of yours"),
        (status = 409, description = "reservation_expired or invalid_state")))]
async fn prepare(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(req): ApiJson<PrepareRequest>,
) -> Result<Json<PaymentDto>, ApiError> {
    let print = fingerprint("POST", "/payments/prepare", &req);
    let idempotency = idempotency(&state, user.id, key, print).await?;
    let (r, handle) = reservation_of(&state, &user, ReservationId(req.reservation_id)).await?;
    let cmd = PrepareCmd { reservation: r.id, caller: user.caller(), idempotency };
    let payment = match handle.prepare_payment(cmd).await {
        Err(tiketi_actors::ActorError::Engine(EngineError::ReservationNotFound)) => {
            return Err(ended(&state, r.id).await);
        }
        other => other?,
    };
    Ok(Json(PaymentDto::new(&payment, None)))
}

/// Confirm a payment: the provider captures the amount, and the reservation becomes
/// `confirmed`. Answered only once the confirmation is durable. Confirming again with the
/// same payment key answers the same, and charges once.
#[utoipa::path(post, path = "/payments/confirm", tag = "payments", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = ConfirmRequest,
    responses((status = 200, body = PaymentDto),
        (status = 402, description = "payment_declined by the provider; or providerCode CAPTURED_TOO_LATE: \
            captured after the order was declined, so refunded, and the hold may be paid with a new attempt"),
        (status = 404, description = "no such order of yours"),
        (status = 409, description = "reservation_expired, payment_in_progress, already_paid, idempotency_in_flight"),
        (status = 422, description = "amount differs from the order's"),
        (status = 503, description = "payment_pending: the provider has not answered; retry")))]
async fn confirm(
    State(state): State<AppState>,
    user: AuthUser,
    IdempotencyHeader(key): IdempotencyHeader,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<PaymentDto>, ApiError> {
    let reservation =
        order_reservation(&req.order_id).ok_or_else(|| ApiError::invalid("orderId", "not an order id of ours"))?;
    check_key("paymentKey", &req.payment_key)?;
    if req.amount <= 0 {
        return Err(ApiError::invalid("amount", "must be positive"));
    }
    let print = fingerprint("POST", "/payments/confirm", &req);
    let idempotency = idempotency(&state, user.id, key, print).await?;
    let (_, handle) = reservation_of(&state, &user, reservation).await.map_err(not_found_as_payment)?;
    let cmd = ConfirmCmd {
        order_id: req.order_id,
        payment_key: req.payment_key,
        amount: req.amount,
        caller: user.caller(),
        idempotency,
    };
    let payment = match handle.confirm_payment(cmd).await {
        Err(tiketi_actors::ActorError::Engine(EngineError::PaymentNotFound)) => {
            return Err(ended(&state, reservation).await);
        }
        other => other?,
    };
    Ok(Json(PaymentDto::with_reservation(&state, &payment).await?))
}

/// Why a reservation the actor no longer holds cannot be paid for: its hold expired, or it
/// ended otherwise; or, if it is somehow still live, that there is no such order.
async fn ended(state: &AppState, id: ReservationId) -> ApiError {
    caught_up(state).await;
    match state.store().reservation(id).await {
        Ok(Some(r)) if r.status == tiketi_engine::ReservationStatus::Expired => EngineError::HoldExpired.into(),
        Ok(Some(r)) if !r.status.is_live() => {
            EngineError::InvalidTransition { from: r.status, to: tiketi_engine::ReservationStatus::Confirmed }.into()
        }
        Ok(_) => EngineError::PaymentNotFound.into(),
        Err(e) => e.into(),
    }
}

/// Refund a payment: the provider refunds it, the reservation becomes `cancelled` and its
/// seats go back on sale. Answered once durable.
#[utoipa::path(post, path = "/payments/{paymentKey}/cancel", tag = "payments", security(("bearer" = [])),
    params(("paymentKey" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Option<CancelRequest>),
    responses((status = 200, body = PaymentDto), (status = 402, description = "the provider refused the refund"),
        (status = 404, description = "no such payment of yours"),
        (status = 409, description = "not_paid or payment_in_progress"),
        (status = 503, description = "payment_pending: the provider has not answered; retry")))]
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(payment_key): ApiPath<String>,
    IdempotencyHeader(key): IdempotencyHeader,
    body: Option<ApiJson<CancelRequest>>,
) -> Result<Json<PaymentDto>, ApiError> {
    check_key("paymentKey", &payment_key)?;
    let req = body.map(|ApiJson(b)| b).unwrap_or_default();
    let reason = req.reason.clone().unwrap_or_else(|| "cancelled by the buyer".into());
    if reason.len() > MAX_KEY_LEN {
        return Err(ApiError::invalid("reason", format!("must be at most {MAX_KEY_LEN} bytes")));
    }
    let print = fingerprint("POST", &format!("/payments/{payment_key}/cancel"), &req);
    let idempotency = idempotency(&state, user.id, key, print).await?;
    // The caller's own payment with this key (someone else may have sent the same key for
    // an order of theirs): the one that was captured, else the latest.
    let mine: Vec<Payment> = state
        .store()
        .payments_by_key(&payment_key)
        .await?
        .into_iter()
        .filter(|p| user.is_admin() || p.user == user.id)
        .collect();
    let captured =
        |p: &&Payment| matches!(p.status, PaymentStatus::Done | PaymentStatus::Cancelling | PaymentStatus::Cancelled);
    let paid = mine.iter().find(captured).or(mine.first()).cloned().ok_or(ApiError::NotFound { what: "payment" })?;
    let handle = state.event(paid.event).await?;
    let cmd = RefundCmd { reservation: paid.reservation, caller: user.caller(), reason, idempotency, audit: None };
    let payment = handle.refund_payment(cmd).await.map_err(|e| match e {
        // Not live any more: refunded already (the same answer), or never paid.
        tiketi_actors::ActorError::Engine(tiketi_engine::EngineError::ReservationNotFound) => {
            ApiError::from(tiketi_engine::EngineError::NotPaid)
        }
        other => other.into(),
    });
    let payment = match payment {
        Ok(p) => p,
        // Refunded already (by a twin that finished first): once the store has it, the
        // same answer.
        Err(e) => {
            caught_up(&state).await;
            match state.store().payment(&paid.order_id).await? {
                Some(p) if p.status == PaymentStatus::Cancelled => p,
                _ => return Err(e),
            }
        }
    };
    Ok(Json(PaymentDto::with_reservation(&state, &payment).await?))
}

/// The caller's payment attempts, newest first.
#[utoipa::path(get, path = "/payments/my", tag = "payments", security(("bearer" = [])),
    responses((status = 200, body = PaymentList)))]
async fn my_payments(State(state): State<AppState>, user: AuthUser) -> Result<Json<PaymentList>, ApiError> {
    let payments = state.store().payments_of(user.id).await?;
    Ok(Json(PaymentList { data: payments.iter().map(|p| PaymentDto::new(p, None)).collect() }))
}

/// One payment attempt by order id (its owner or an admin only).
#[utoipa::path(get, path = "/payments/{orderId}", tag = "payments", security(("bearer" = [])),
    params(("orderId" = String, Path)),
    responses((status = 200, body = PaymentDto), (status = 404, description = "no such payment of yours")))]
async fn get_payment(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(order_id): ApiPath<String>,
) -> Result<Json<PaymentDto>, ApiError> {
    let reservation = order_reservation(&order_id).ok_or(ApiError::NotFound { what: "payment" })?;
    let (r, _) = reservation_of(&state, &user, reservation).await.map_err(not_found_as_payment)?;
    // The live actor knows the latest state of the current attempt; the store has the rest.
    let live = match state.directory().live(r.event) {
        Some(handle) => handle.payment(r.id).await?.filter(|p| p.order_id == order_id),
        None => None,
    };
    let payment = match live {
        Some(p) => p,
        None => state.store().payment(&order_id).await?.ok_or(ApiError::NotFound { what: "payment" })?,
    };
    Ok(Json(PaymentDto::with_reservation(&state, &payment).await?))
}

/// Someone else's (or no) reservation behind an order id is "no such payment".
fn not_found_as_payment(e: ApiError) -> ApiError {
    match e {
        ApiError::NotFound { .. } => ApiError::NotFound { what: "payment" },
        other => other,
    }
}
