//! [`ApiError`]: every error the facade returns, mapped to HTTP in one place as
//! `{"error": {"code", "message", "details"}}`. 5xx details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;
use tiketi_actors::ActorError;
use tiketi_engine::EngineError;
use tiketi_persistence::StoreError;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unparseable request (malformed JSON, wrong types, missing fields).
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed request with an invalid field.
    #[error("{field}: {message}")]
    Validation {
        /// The field, in the request's spelling.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// Missing or invalid credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The event's admission queue gates reservations and no valid admission was shown.
    #[error("{0}")]
    AdmissionRequired(&'static str),
    /// No such thing (or not yours).
    #[error("{what} not found")]
    NotFound {
        /// `event`, `reservation`, `layout`, ...
        what: &'static str,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
        /// Structured details.
        details: Value,
    },
    /// The request body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// Too many requests for one event; retry after the delay.
    #[error("too many requests")]
    TooManyRequests(Duration),
    /// Temporarily unable to serve; retry after the delay.
    #[error("service unavailable: {0}")]
    Unavailable(String, Duration),
    /// The payment provider declined; nothing was charged.
    #[error("payment declined by the provider: {message}")]
    PaymentDeclined {
        /// The provider's code.
        provider_code: String,
        /// The provider's message.
        message: String,
    },
    /// The provider's answer is not known yet; the payment is reconciled with the provider.
    /// Retrying with the same payment key answers the outcome.
    #[error("the payment provider has not answered yet; retry to learn the outcome")]
    PaymentPending(Duration),
    /// The event (of this shard) is owned by another node, or moving between nodes, and the
    /// request was not carried out here. In a cluster the facade reroutes it
    /// ([`crate::forward`]); a client sees this only when the move outlasts the reroute
    /// budget.
    #[error("the event is moving between nodes")]
    Moving(u16),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A validation error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::AdmissionRequired(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(..) | Self::PaymentPending(_) | Self::Moving(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::PaymentDeclined { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> String {
        match self {
            Self::BadRequest(_) => "bad_request".into(),
            Self::Validation { .. } => "validation_failed".into(),
            Self::Unauthorized(_) => "unauthorized".into(),
            Self::Forbidden(_) => "forbidden".into(),
            Self::AdmissionRequired(_) => "admission_required".into(),
            Self::NotFound { what } => format!("{what}_not_found"),
            Self::Conflict { code, .. } => (*code).into(),
            Self::PayloadTooLarge => "payload_too_large".into(),
            Self::TooManyRequests(_) => "too_many_requests".into(),
            Self::Unavailable(..) => "service_unavailable".into(),
            Self::PaymentDeclined { .. } => "payment_declined".into(),
            Self::PaymentPending(_) => "payment_pending".into(),
            Self::Moving(_) => "event_moving".into(),
            Self::Internal(_) => "internal_error".into(),
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::Validation { field, .. } => json!({ "field": field }),
            Self::Conflict { details, .. } => details.clone(),
            Self::TooManyRequests(d) | Self::Unavailable(_, d) | Self::PaymentPending(d) => {
                json!({ "retryAfterSeconds": d.as_secs().max(1) })
            }
            Self::Moving(_) => json!({ "retryAfterSeconds": 1 }),
            Self::PaymentDeclined { provider_code, .. } => json!({ "providerCode": provider_code }),
            _ => json!({}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            Self::Unavailable(detail, _) => {
                tracing::warn!(error = %detail, "service unavailable");
                "temporarily unavailable, retry later".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({ "error": { "code": self.code(), "message": message, "details": self.details() } });
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyRequests(d) | Self::Unavailable(_, d) | Self::PaymentPending(d) = &self {
            let secs = d.as_secs().max(1).to_string();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&secs).expect("digits"));
        }
        if let Self::Moving(shard) = &self {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            // Tells the facade (this node's, or the node that forwarded here) which shard to
            // reroute to; it never reaches a client.
            headers.insert(crate::forward::REROUTE, HeaderValue::from(*shard));
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::UnknownSeats(ids) => {
                Self::Validation { field: "seatIds".into(), message: format!("unknown seat ids: {}", ids.join(", ")) }
            }
            EngineError::DuplicateSeat(id) => Self::invalid("seatIds", format!("seat {id} named twice")),
            EngineError::UnknownTicketType => Self::invalid("ticketTypeId", "no such ticket type in this event"),
            EngineError::UnknownSection(s) => Self::invalid("bestAvailable.section", format!("no section {s}")),
            EngineError::InvalidQuantity { max } => Self::invalid("quantity", format!("must be between 1 and {max}")),
            EngineError::SeatsUnavailable(ids) => {
                Self::Conflict { code: "seats_unavailable", message, details: json!({ "seatIds": ids }) }
            }
            EngineError::InsufficientInventory { available } => {
                Self::Conflict { code: "seats_unavailable", message, details: json!({ "available": available }) }
            }
            EngineError::NoSeatsTogether { quantity } => {
                Self::Conflict { code: "seats_unavailable", message, details: json!({ "quantity": quantity }) }
            }
            EngineError::LimitExceeded { limit, current, requested } => Self::Conflict {
                code: "limit_exceeded",
                message,
                details: json!({ "limit": limit, "current": current, "requested": requested }),
            },
            EngineError::NotOnSale(status) => {
                Self::Conflict { code: "not_on_sale", message, details: json!({ "status": status }) }
            }
            EngineError::ReservationNotFound => Self::NotFound { what: "reservation" },
            EngineError::InvalidTransition { from, to } => {
                Self::Conflict { code: "invalid_state", message, details: json!({ "status": from, "requested": to }) }
            }
            EngineError::QueueDisabled => Self::Conflict { code: "queue_disabled", message, details: json!({}) },
            EngineError::HoldExpired => Self::Conflict { code: "reservation_expired", message, details: json!({}) },
            EngineError::PaymentNotFound => Self::NotFound { what: "payment" },
            EngineError::AmountMismatch { expected } => Self::Validation {
                field: "amount".into(),
                message: format!("must be {expected}, the order's amount (from POST /payments/prepare)"),
            },
            EngineError::PaymentInProgress => {
                Self::Conflict { code: "payment_in_progress", message, details: json!({}) }
            }
            EngineError::AlreadyPaid => Self::Conflict { code: "already_paid", message, details: json!({}) },
            EngineError::NotPaid => Self::Conflict { code: "not_paid", message, details: json!({}) },
            EngineError::RefundRequired => Self::Conflict { code: "refund_required", message, details: json!({}) },
            EngineError::OrderDeclined => Self::Conflict { code: "order_declined", message, details: json!({}) },
            EngineError::AdmissionRequired => Self::AdmissionRequired(
                "this event's queue gates reservations: join it and reserve with the admission token while admitted",
            ),
        }
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Engine(e) => e.into(),
            ActorError::EventNotFound => Self::NotFound { what: "event" },
            ActorError::Invalid { field, message } => Self::Validation { field, message },
            ActorError::Busy { retry_after } => Self::TooManyRequests(retry_after),
            ActorError::Overloaded { retry_after } => {
                Self::Unavailable("write-behind backlog full".into(), retry_after)
            }
            ActorError::Timeout => Self::Unavailable("event actor timed out".into(), Duration::from_secs(1)),
            ActorError::Unavailable(why) => Self::Unavailable(why, Duration::from_secs(1)),
            ActorError::NotOwner { event } | ActorError::Stopped { event } => {
                Self::Moving(tiketi_cluster::shard_of(event))
            }
            ActorError::Pinned(reason) => Self::Conflict {
                code: "actor_pinned",
                message: format!("the event's actor must stay in memory: {reason}"),
                details: json!({ "reason": reason }),
            },
            ActorError::IdempotencyMismatch => Self::invalid(
                "Idempotency-Key",
                "this key was already used with a different request; use a new key for a new request",
            ),
            ActorError::IdempotencyInFlight => Self::Conflict {
                code: "idempotency_in_flight",
                message: "the first request with this Idempotency-Key is still in progress; retry shortly".into(),
                details: json!({}),
            },
            ActorError::PaymentDeclined(f) => Self::PaymentDeclined { provider_code: f.code, message: f.message },
            ActorError::PaymentPending { retry_after } => Self::PaymentPending(retry_after),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => Self::Conflict { code: "conflict", message, details: json!({}) },
            StoreError::NotFound => Self::NotFound { what: "resource" },
            StoreError::Unavailable(why) => Self::Unavailable(why, Duration::from_secs(2)),
            fenced @ StoreError::Fenced(_) => Self::Unavailable(fenced.to_string(), Duration::from_secs(1)),
        }
    }
}
