//! Toss Payments v1 bodies as they travel on the wire (camelCase JSON; unknown fields ignored).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ProviderPayment, ProviderStatus};

/// The fields Tiketi reads from a Toss `Payment` object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TossPayment {
    pub(crate) payment_key: String,
    pub(crate) order_id: String,
    pub(crate) status: ProviderStatus,
    pub(crate) total_amount: i64,
    #[serde(default)]
    pub(crate) method: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) approved_at: Option<OffsetDateTime>,
}

impl From<TossPayment> for ProviderPayment {
    fn from(p: TossPayment) -> Self {
        Self {
            payment_key: p.payment_key,
            order_id: p.order_id,
            status: p.status,
            total_amount: p.total_amount,
            method: p.method,
            approved_at: p.approved_at,
        }
    }
}

/// Toss's error body: `{"code": "...", "message": "..."}`.
#[derive(Debug, Deserialize)]
pub(crate) struct TossErrorBody {
    pub(crate) code: String,
    pub(crate) message: String,
}

/// `POST /v1/payments/confirm`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfirmBody<'a> {
    pub(crate) payment_key: &'a str,
    pub(crate) order_id: &'a str,
    pub(crate) amount: i64,
}

/// `POST /v1/payments/{paymentKey}/cancel`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelBody<'a> {
    pub(crate) cancel_reason: &'a str,
}
