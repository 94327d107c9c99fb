//! The fake's memory: every payment it captured, the test controls, and the Toss rules it applies.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::offset;
use tokio::sync::watch;

use crate::{ProviderPayment, ProviderStatus, codes};

/// One answer, kept whole so that a repeated `Idempotency-Key` gets exactly the same one.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    fn payment(payment: &FakePayment) -> Self {
        Self { status: StatusCode::OK, body: payment.to_json() }
    }

    /// Toss's error shape, `{"code", "message"}`.
    pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Self { status, body: json!({ "code": code, "message": message }) }
    }

    pub(super) fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::error(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, &format!("잘못된 요청입니다. {detail}"))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// A confirm as the fake received it.
#[derive(Debug, Clone, serde::Deserialize)]
pub(super) struct Confirm {
    #[serde(rename = "paymentKey")]
    pub(super) payment_key: String,
    #[serde(rename = "orderId")]
    pub(super) order_id: String,
    pub(super) amount: i64,
}

#[derive(Debug)]
struct FakePayment {
    payment: ProviderPayment,
    requested_at: OffsetDateTime,
    cancel: Option<(String, OffsetDateTime)>,
}

impl FakePayment {
    /// A Toss `Payment` object (API version 2022-11-16), trimmed to the fields a card payment fills in.
    fn to_json(&self) -> Value {
        let p = &self.payment;
        let cancels = self.cancel.as_ref().map(|(reason, at)| {
            json!([{
                "transactionKey": format!("{}-cancel", p.payment_key),
                "cancelReason": reason,
                "taxExemptionAmount": 0,
                "canceledAt": toss_time(*at),
                "cancelAmount": p.total_amount,
                "refundableAmount": 0,
                "cancelStatus": "DONE",
                "cancelRequestId": null,
            }])
        });
        let balance = if self.cancel.is_some() { 0 } else { p.total_amount };
        json!({
            "mId": "tiketi_fake",
            "version": "2022-11-16",
            "lastTransactionKey": format!("{}-tx", p.payment_key),
            "paymentKey": p.payment_key,
            "orderId": p.order_id,
            "orderName": "Tiketi order",
            "status": p.status,
            "requestedAt": toss_time(self.requested_at),
            "approvedAt": p.approved_at.map(toss_time),
            "type": "NORMAL",
            "method": p.method,
            "currency": "KRW",
            "country": "KR",
            "totalAmount": p.total_amount,
            "balanceAmount": balance,
            "suppliedAmount": balance - balance / 11,
            "vat": balance / 11,
            "taxFreeAmount": 0,
            "taxExemptionAmount": 0,
            "isPartialCancelable": true,
            "useEscrow": false,
            "cultureExpense": false,
            "card": {
                "issuerCode": "61",
                "acquirerCode": "31",
                "number": "43301234****123*",
                "installmentPlanMonths": 0,
                "approveNo": "00000000",
                "cardType": "신용",
                "ownerType": "개인",
                "acquireStatus": "READY",
                "amount": p.total_amount,
            },
            "cancels": cancels,
            "failure": null,
            "receipt": { "url": format!("https://dashboard.tosspayments.com/receipt/{}", p.payment_key) },
        })
    }
}

/// Toss's timestamps: seconds, Korean time, e.g. `2024-02-13T12:18:14+09:00`.
fn toss_time(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("every OffsetDateTime formats as RFC 3339")
}

fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().to_offset(offset!(+9));
    now.replace_nanosecond(0).expect("0 is a valid nanosecond")
}

/// What the fake knows and how the tests told it to behave.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    payments: HashMap<String, FakePayment>,
    key_of_order: HashMap<String, String>,
    captures: HashMap<String, u32>,
    refunds: HashMap<String, u32>,
    cancel_answers: HashMap<String, Reply>,
    pub(super) confirm_calls: u32,
    pub(super) cancel_calls: u32,
    pub(super) decline_next: Option<(String, String)>,
    pub(super) confirm_delay: Duration,
    pub(super) hold_after_capture: Duration,
    pub(super) fail_next_cancel: bool,
    pub(super) fail_cancels: bool,
}

impl Ledger {
    /// Toss's rules for a confirm: a payment key is confirmed once, an order is paid once.
    pub(super) fn check_confirm(&self, req: &Confirm) -> Result<(), Reply> {
        if req.amount <= 0 || req.payment_key.is_empty() || req.order_id.is_empty() {
            return Err(Reply::invalid_request("paymentKey, orderId and a positive amount are required"));
        }
        let already =
            || Reply::error(StatusCode::BAD_REQUEST, codes::ALREADY_PROCESSED_PAYMENT, "이미 처리된 결제 입니다.");
        if self.payments.contains_key(&req.payment_key) {
            return Err(already());
        }
        match self.key_of_order.get(&req.order_id).and_then(|key| self.payments.get(key)) {
            None => Ok(()),
            Some(other) if other.payment.status == ProviderStatus::Done => Err(already()),
            Some(_) => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                codes::DUPLICATED_ORDER_ID,
                "이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.",
            )),
        }
    }

    /// Takes the money: records the payment DONE and counts a capture for the order.
    pub(super) fn capture(&mut self, req: &Confirm) -> Result<Reply, Reply> {
        // Checked again: another confirm with the same key may have captured while this one was delayed.
        self.check_confirm(req)?;
        let at = now();
        let payment = FakePayment {
            payment: ProviderPayment {
                payment_key: req.payment_key.clone(),
                order_id: req.order_id.clone(),
                status: ProviderStatus::Done,
                total_amount: req.amount,
                method: Some("카드".to_owned()),
                approved_at: Some(at),
            },
            requested_at: at,
            cancel: None,
        };
        let reply = Reply::payment(&payment);
        self.key_of_order.insert(req.order_id.clone(), req.payment_key.clone());
        self.payments.insert(req.payment_key.clone(), payment);
        *self.captures.entry(req.order_id.clone()).or_default() += 1;
        Ok(reply)
    }

    /// Cancels in full, once per `Idempotency-Key`.
    pub(super) fn cancel(&mut self, payment_key: &str, reason: &str, idempotency_key: Option<&str>) -> Reply {
        self.cancel_calls += 1;
        if let Some(answer) = idempotency_key.and_then(|key| self.cancel_answers.get(key)) {
            return answer.clone();
        }
        if std::mem::take(&mut self.fail_next_cancel) || self.fail_cancels {
            // Not remembered under the idempotency key: a retry must really be tried again.
            return Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "FAILED_INTERNAL_SYSTEM_PROCESSING",
                "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.",
            );
        }
        let reply = match self.payments.get_mut(payment_key) {
            None => Reply::error(StatusCode::NOT_FOUND, codes::NOT_FOUND_PAYMENT, "존재하지 않는 결제 정보 입니다."),
            Some(p) => match p.payment.status {
                ProviderStatus::Done => {
                    p.payment.status = ProviderStatus::Canceled;
                    p.cancel = Some((reason.to_owned(), now()));
                    *self.refunds.entry(p.payment.order_id.clone()).or_default() += 1;
                    Reply::payment(p)
                }
                ProviderStatus::Canceled => {
                    Reply::error(StatusCode::BAD_REQUEST, codes::ALREADY_CANCELED_PAYMENT, "이미 취소된 결제 입니다.")
                }
                _ => Reply::error(StatusCode::FORBIDDEN, codes::NOT_CANCELABLE_PAYMENT, "취소 할 수 없는 결제 입니다."),
            },
        };
        if let Some(key) = idempotency_key {
            self.cancel_answers.insert(key.to_owned(), reply.clone());
        }
        reply
    }

    /// `GET /v1/payments/orders/{orderId}`.
    pub(super) fn lookup(&self, order_id: &str) -> Reply {
        match self.key_of_order.get(order_id).and_then(|key| self.payments.get(key)) {
            Some(payment) => Reply::payment(payment),
            None => Reply::error(StatusCode::NOT_FOUND, codes::NOT_FOUND_PAYMENT, "존재하지 않는 결제 정보 입니다."),
        }
    }

    pub(super) fn payment(&self, order_id: &str) -> Option<ProviderPayment> {
        self.key_of_order.get(order_id).and_then(|key| self.payments.get(key)).map(|p| p.payment.clone())
    }

    pub(super) fn payments(&self) -> Vec<ProviderPayment> {
        let mut all: Vec<_> = self.payments.values().map(|p| p.payment.clone()).collect();
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        all
    }

    pub(super) fn captures(&self, order_id: &str) -> u32 {
        self.captures.get(order_id).copied().unwrap_or(0)
    }

    pub(super) fn refunds(&self, order_id: &str) -> u32 {
        self.refunds.get(order_id).copied().unwrap_or(0)
    }
}

/// Everything the handlers and the [`super::FakeToss`] handle share.
#[derive(Debug)]
pub(super) struct Shared {
    ledger: Mutex<Ledger>,
    /// The exact `Authorization` header Toss would accept.
    pub(super) authorization: String,
    /// Bumped after every capture, for `wait_for_capture`.
    pub(super) captured: watch::Sender<u64>,
    /// Set when the fake is dropped: delayed captures still waiting are abandoned.
    pub(super) shutdown: watch::Sender<bool>,
    /// While set, confirms received wait before capturing until it is cleared.
    pub(super) captures_held: watch::Sender<bool>,
    /// While set, cancels received wait until it is cleared.
    pub(super) cancels_held: watch::Sender<bool>,
}

impl Shared {
    pub(super) fn new(authorization: String) -> Self {
        Self {
            ledger: Mutex::default(),
            authorization,
            captured: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            captures_held: watch::Sender::new(false),
            cancels_held: watch::Sender::new(false),
        }
    }

    pub(super) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Sections under the lock do not panic midway, so a poisoned ledger is still whole.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn capture(&self, req: &Confirm) -> Result<Reply, Reply> {
        let reply = self.ledger().capture(req)?;
        self.captured.send_modify(|n| *n += 1);
        Ok(reply)
    }
}
