//! Payments: what a reservation is paid with, and where each attempt stands.

use crate::{EventId, ReservationId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a payment attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Prepared: the order id and amount are fixed; no money has moved.
    Ready,
    /// The provider is capturing it. Persisted before the provider is called, so a crash
    /// leaves a record to reconcile; the reservation is pinned meanwhile.
    InProgress,
    /// Captured; the reservation is confirmed.
    Done,
    /// The provider declined; the buyer may prepare another attempt while the hold lasts.
    Failed,
    /// The provider is refunding it.
    Cancelling,
    /// Refunded; the reservation is cancelled.
    Cancelled,
    /// Never paid: the reservation ended (expired or cancelled) first.
    Aborted,
}

impl PaymentStatus {
    /// The API (and database) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Aborted => "aborted",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Self::Ready,
            "in_progress" => Self::InProgress,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            "aborted" => Self::Aborted,
            _ => return None,
        })
    }

    /// Whether the provider holds the outcome (a capture or a refund in flight).
    pub const fn is_in_flight(self) -> bool {
        matches!(self, Self::InProgress | Self::Cancelling)
    }
}

/// The failure code of an attempt declined because the provider showed no capture for it
/// when asked (the same string as `tiketi_payments::codes::NOT_CAPTURED`). The provider did
/// not refuse it, so a capture may still land afterwards.
pub const NOT_CAPTURED: &str = "NOT_CAPTURED";

/// The code a buyer is answered with when the provider captured an order whose attempt had
/// already been declined while the reservation is still held: the capture sells nothing and
/// is refunded, and the hold may be paid with a new attempt.
pub const CAPTURED_TOO_LATE: &str = "CAPTURED_TOO_LATE";

impl PaymentFailure {
    /// Whether the attempt was declined for want of a capture, not refused by the provider.
    pub fn is_not_captured(&self) -> bool {
        self.code == NOT_CAPTURED
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the provider refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailure {
    /// The provider's code, e.g. `REJECT_CARD_PAYMENT`.
    pub code: String,
    /// The provider's message.
    pub message: String,
}

/// One payment attempt for a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The order id the provider knows it by (see [`order_id`](crate::order_id)).
    pub order_id: String,
    /// 1 for the first attempt; a new one follows a decline.
    pub attempt: u32,
    /// What it pays for.
    pub reservation: ReservationId,
    /// The reservation's event.
    pub event: EventId,
    /// The buyer.
    pub user: UserId,
    /// In minor units, from the reservation.
    pub amount: i64,
    /// Where it stands.
    pub status: PaymentStatus,
    /// The provider's key, once the buyer asked to confirm.
    pub payment_key: Option<String>,
    /// The means of payment, as the provider named it.
    pub method: Option<String>,
    /// The provider's last refusal.
    pub failure: Option<PaymentFailure>,
    /// When it was prepared.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When the provider captured it.
    pub approved_at: Option<Timestamp>,
    /// When the provider refunded it.
    pub cancelled_at: Option<Timestamp>,
}

/// Money the provider captured for an order that no longer sells anything: its attempt
/// was settled otherwise (declined by a reconciliation that found no capture in time) or
/// its reservation ended first. The capture is refunded; until the provider says it was,
/// the debt is persisted and the refund asked for again, across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedRefund {
    /// The order the capture was made for.
    pub order_id: String,
    /// The provider's key of the capture: what is refunded.
    pub payment_key: String,
    /// When the provider captured it.
    pub captured_at: Timestamp,
    /// When the engine learned of it.
    pub since: Timestamp,
}

/// An owed capture an admin settled by hand (refunded by other means, or found refunded at
/// the provider), so the engine stops asking the provider to refund it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledByHand {
    /// The admin.
    pub admin: UserId,
    /// Why, for the record.
    pub reason: String,
}
