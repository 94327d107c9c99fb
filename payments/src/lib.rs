//! Payment providers for Tiketi: the [`PaymentProvider`] interface, an in-process [`mock`] provider, a real
//! HTTP adapter shaped like Toss Payments v1 ([`toss`]) and, behind the `fake` feature, a fake Toss server for
//! tests (`fake`).
//!
//! Money moves outside our database, so every call can end in three ways: it happened, it was refused
//! ([`ProviderError::Declined`]), or nobody knows ([`ProviderError::Unknown`]: a timeout, a dropped connection,
//! a 5xx). [`confirm_resolved`] and [`cancel_resolved`] turn most unknown outcomes into known ones by asking the
//! provider what it has for the order before answering.
//!
//! # Features
//!
//! - `tls` (off by default): HTTPS for the Toss adapter, through reqwest's rustls with the *ring* crypto provider.
//!   Production Toss (`https://api.tosspayments.com`) needs `--features tls`; without it
//!   [`toss::TossProvider::new`] refuses an `https` base URL with [`toss::ConfigError::TlsDisabled`].
//! - `fake`: `fake::FakeToss`, an axum server on `127.0.0.1:0` speaking the Toss endpoints, for tests.
//!
//! This crate must not depend on any other Tiketi crate: the engine, actors and API depend on it, not the
//! other way round.
#![forbid(unsafe_code)]

pub mod codes;
#[cfg(feature = "fake")]
pub mod fake;
pub mod mock;
mod resolve;
pub mod toss;
mod wire;

pub use resolve::{cancel_resolved, confirm_resolved};

/// A request to capture (Toss "confirm") a payment the buyer authorized in the provider's widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmRequest {
    /// The provider's key for the authorized payment, handed to us by the widget's success redirect.
    pub payment_key: String,
    /// Our order id, unique per order.
    pub order_id: String,
    /// The amount to capture, in the smallest currency unit (KRW has no minor unit).
    pub amount: i64,
}

/// A payment's state at the provider, with Toss's spelling on the wire (`"DONE"`, `"IN_PROGRESS"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProviderStatus {
    /// Created, not yet authorized by the buyer.
    Ready,
    /// Authorized by the buyer, not yet confirmed (captured).
    InProgress,
    /// A virtual-account payment waiting for the buyer's transfer.
    WaitingForDeposit,
    /// Captured: the money is taken.
    Done,
    /// Cancelled in full (refunded, or voided before capture).
    Canceled,
    /// Part of the amount was refunded.
    PartialCanceled,
    /// The confirm failed at the provider.
    Aborted,
    /// The authorization expired before it was confirmed.
    Expired,
}

/// What the provider knows about one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPayment {
    /// The provider's key for the payment.
    pub payment_key: String,
    /// Our order id.
    pub order_id: String,
    /// The payment's state at the provider.
    pub status: ProviderStatus,
    /// The amount of the payment (not reduced by refunds).
    pub total_amount: i64,
    /// The payment method as the provider names it (Toss says `"카드"` for a card), if any.
    pub method: Option<String>,
    /// When the payment was captured, if it was.
    pub approved_at: Option<time::OffsetDateTime>,
}

/// Why a provider call did not give an answer we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered and refused: nothing was captured (or cancelled). Definitive.
    #[error("{code}: {message}")]
    Declined {
        /// The provider's error code, e.g. `REJECT_CARD_PAYMENT` (see [`codes`]).
        code: String,
        /// The provider's human-readable explanation.
        message: String,
    },
    /// Timeout, connection failure, 5xx, unreadable answer: the outcome is unknown.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

impl ProviderError {
    /// A [`ProviderError::Declined`] with this code and message.
    pub fn declined(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Declined { code: code.into(), message: message.into() }
    }

    /// The provider's code when the call was declined.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Declined { code, .. } => Some(code),
            Self::Unknown(_) => None,
        }
    }
}

/// A payment provider: the few calls Tiketi makes to move money.
///
/// Implementations answer [`ProviderError::Declined`] only when the provider definitively refused, and
/// [`ProviderError::Unknown`] whenever the money may or may not have moved.
#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// "mock" or "toss".
    fn name(&self) -> &'static str;

    /// Capture (Toss "confirm") an authorized payment.
    async fn confirm(&self, req: &ConfirmRequest) -> Result<ProviderPayment, ProviderError>;

    /// Cancel (refund, or void if not yet captured) a payment in full. `idempotency_key` is sent so a retried
    /// cancel never refunds twice.
    async fn cancel(
        &self,
        payment_key: &str,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<ProviderPayment, ProviderError>;

    /// The payment the provider has for an order, if any (Toss: GET /v1/payments/orders/{orderId}); Ok(None) on
    /// NOT_FOUND_PAYMENT.
    async fn payment_for_order(&self, order_id: &str) -> Result<Option<ProviderPayment>, ProviderError>;
}
