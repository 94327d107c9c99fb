//! [`BaselineError`]: every error the baseline returns, mapped to HTTP in one place in
//! Tiketi's format, `{"error": {"code", "message", "details"}}`. 5xx details are logged,
//! never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Unparseable request (malformed JSON, wrong types, unknown fields).
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
    /// Missing or malformed bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No such thing (or not the caller's).
    #[error("{what} not found")]
    NotFound {
        /// `event`, `reservation`, `route`.
        what: &'static str,
    },
    /// Some of the named seats are held, sold or blocked.
    #[error("seats unavailable: {0:?}")]
    SeatsUnavailable(Vec<String>),
    /// Best-available found no `quantity` seats (together, if asked).
    #[error("no {quantity} seats available together")]
    NoSeatsTogether {
        /// Seats asked for.
        quantity: u32,
    },
    /// Any other conflict with the current state.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// Human-readable message.
        message: String,
        /// Structured details.
        details: Value,
    },
    /// PostgreSQL kept aborting the transaction (deadlock, serialization failure) after
    /// it had been retried.
    #[error("contention: {0}")]
    Contention(String),
    /// The database cannot be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A database error; [`BaselineError::is_retryable`] tells the transaction loop whether
    /// running the transaction again may succeed.
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl BaselineError {
    /// A validation error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    /// Whether running the same transaction again may succeed: PostgreSQL aborted it to
    /// break a deadlock or a serialization conflict.
    pub fn is_retryable(&self) -> bool {
        let Self::Database(e) = self else { return false };
        e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::SeatsUnavailable(_) | Self::NoSeatsTogether { .. } | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Contention(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(e) if self.is_retryable() || is_connection_error(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> String {
        match self {
            Self::BadRequest(_) => "bad_request".into(),
            Self::Validation { .. } => "validation_failed".into(),
            Self::Unauthorized(_) => "unauthorized".into(),
            Self::NotFound { what } => format!("{what}_not_found"),
            Self::SeatsUnavailable(_) | Self::NoSeatsTogether { .. } => "seats_unavailable".into(),
            Self::Conflict { code, .. } => (*code).into(),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => "service_unavailable".into(),
            _ => "internal_error".into(),
        }
    }

    fn details(&self) -> Value {
        match self {
            Self::Validation { field, .. } => json!({ "field": field }),
            Self::SeatsUnavailable(ids) => json!({ "seatIds": ids }),
            Self::NoSeatsTogether { quantity } => json!({ "quantity": quantity }),
            Self::Conflict { details, .. } => details.clone(),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => json!({ "retryAfterSeconds": RETRY_AFTER_SECS }),
            _ => json!({}),
        }
    }
}

/// The connection is gone or the server is shutting down: worth retrying later.
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            c.code().starts_with("08") || *c == SqlState::ADMIN_SHUTDOWN || *c == SqlState::CANNOT_CONNECT_NOW
        })
}

impl From<deadpool_postgres::PoolError> for BaselineError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::Database(e),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for BaselineError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(error = %self, "service unavailable");
                "temporarily unavailable, retry later".to_owned()
            } else {
                tracing::error!(error = %self, "internal error");
                "internal error".to_owned()
            }
        } else {
            self.to_string()
        };
        let body = json!({ "error": { "code": self.code(), "message": message, "details": self.details() } });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
