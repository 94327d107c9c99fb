//! An in-process payment provider for development, load tests and tests that need no HTTP.
//!
//! It behaves like Toss where Tiketi can tell: confirm is idempotent per payment key, a second key for a captured
//! order is refused with `ALREADY_PROCESSED_PAYMENT`, and cancel is idempotent. Whether a confirm is declined is
//! decided by the payment key alone, so the same key always gets the same outcome.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{ConfirmRequest, PaymentProvider, ProviderError, ProviderPayment, ProviderStatus, codes};

/// How the mock behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MockSettings {
    /// How long every call takes (slept with `tokio::time::sleep`, so paused test clocks apply).
    pub latency: Duration,
    /// The share of payment keys whose confirm is declined with `REJECT_CARD_PAYMENT`, from 0.0 (none) to 1.0 (all).
    pub failure_rate: f64,
}

impl Default for MockSettings {
    /// No latency, no failures.
    fn default() -> Self {
        Self { latency: Duration::ZERO, failure_rate: 0.0 }
    }
}

/// The in-process provider. Keeps every payment in memory so lookups and cancels work.
#[derive(Debug, Default)]
pub struct MockProvider {
    settings: MockSettings,
    ledger: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    by_order: HashMap<String, ProviderPayment>,
    order_of_key: HashMap<String, String>,
}

impl MockProvider {
    /// A mock provider with these settings.
    pub fn new(settings: MockSettings) -> Self {
        Self { settings, ledger: Mutex::default() }
    }

    /// Whether the order's payment is captured (status DONE) right now.
    pub fn captured(&self, order_id: &str) -> bool {
        self.payment(order_id).is_some_and(|p| p.status == ProviderStatus::Done)
    }

    /// The payment recorded for the order, if any.
    pub fn payment(&self, order_id: &str) -> Option<ProviderPayment> {
        self.ledger().by_order.get(order_id).cloned()
    }

    /// Whether a confirm with this payment key is declined: the first 8 bytes of `sha256(payment_key)`, as a
    /// fraction of `u64::MAX`, fall below `failure_rate`.
    pub fn declines(&self, payment_key: &str) -> bool {
        let digest = Sha256::digest(payment_key.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let draw = u64::from_be_bytes(head) as f64 / u64::MAX as f64;
        self.settings.failure_rate >= 1.0 || draw < self.settings.failure_rate
    }

    async fn wait(&self) {
        // Even a zero sleep waits for the next timer tick; a latency-free mock should not.
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is only touched by short, panic-free sections, so a poisoned lock still holds whole data.
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl PaymentProvider for MockProvider {
    fn name(&self) -> &'static str {
        "mock"
    }

    async fn confirm(&self, req: &ConfirmRequest) -> Result<ProviderPayment, ProviderError> {
        self.wait().await;
        let mut ledger = self.ledger();
        if let Some(existing) = ledger.by_order.get(&req.order_id) {
            return match (existing.payment_key == req.payment_key, existing.status) {
                (true, ProviderStatus::Done) => Ok(existing.clone()),
                (true, _) | (false, ProviderStatus::Done) => Err(ProviderError::declined(
                    codes::ALREADY_PROCESSED_PAYMENT,
                    format!("order {} was already processed", req.order_id),
                )),
                (false, _) => Err(ProviderError::declined(
                    codes::DUPLICATED_ORDER_ID,
                    format!("order {} was already used by another payment", req.order_id),
                )),
            };
        }
        if ledger.order_of_key.contains_key(&req.payment_key) {
            return Err(ProviderError::declined(
                codes::ALREADY_PROCESSED_PAYMENT,
                format!("payment {} was already processed for another order", req.payment_key),
            ));
        }
        if self.declines(&req.payment_key) {
            return Err(ProviderError::declined(codes::REJECT_CARD_PAYMENT, "the card issuer refused the payment"));
        }
        let payment = ProviderPayment {
            payment_key: req.payment_key.clone(),
            order_id: req.order_id.clone(),
            status: ProviderStatus::Done,
            total_amount: req.amount,
            method: Some("CARD".to_owned()),
            approved_at: Some(OffsetDateTime::now_utc()),
        };
        ledger.order_of_key.insert(req.payment_key.clone(), req.order_id.clone());
        ledger.by_order.insert(req.order_id.clone(), payment.clone());
        Ok(payment)
    }

    async fn cancel(
        &self,
        payment_key: &str,
        _reason: &str,
        _idempotency_key: &str,
    ) -> Result<ProviderPayment, ProviderError> {
        self.wait().await;
        let mut ledger = self.ledger();
        let Some(order_id) = ledger.order_of_key.get(payment_key).cloned() else {
            return Err(ProviderError::declined(codes::NOT_FOUND_PAYMENT, format!("no payment {payment_key}")));
        };
        let payment = ledger.by_order.get_mut(&order_id).expect("the key index points at a recorded payment");
        match payment.status {
            ProviderStatus::Done => payment.status = ProviderStatus::Canceled,
            // Idempotent: cancelling a cancelled payment answers with it, nothing is refunded twice.
            ProviderStatus::Canceled => {}
            status => {
                return Err(ProviderError::declined(
                    codes::NOT_CANCELABLE_PAYMENT,
                    format!("payment {payment_key} is {status:?}"),
                ));
            }
        }
        Ok(payment.clone())
    }

    async fn payment_for_order(&self, order_id: &str) -> Result<Option<ProviderPayment>, ProviderError> {
        self.wait().await;
        Ok(self.payment(order_id))
    }
}
