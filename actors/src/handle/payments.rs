//! Paying for a reservation through its event's actor, with the provider called outside it.
//!
//! A confirmation is three steps: the actor marks the payment in flight and answers once
//! that is durable ([`EventMsg::BeginConfirm`]); the provider captures, here, outside the
//! actor; the actor records the outcome and answers once that is durable
//! ([`EventMsg::FinishConfirm`]). The last two run in a task of their own, so a caller that
//! goes away mid-capture cannot leave a captured payment unrecorded. Refunds go the same
//! way. Whatever a crash interrupts, the actor reconciles with the provider when it next
//! starts ([`reconcile`]).

use super::{Caller, EventHandle, IdempotencyKey};
use crate::ActorError;
use crate::event_actor::EventMsg;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tiketi_engine::{
    CaptureOutcome, OwedRefund, Payment, PaymentFailure, PaymentStatus, RefundOutcome, ReservationId, Timestamp, UserId,
};
use tiketi_payments::{ConfirmRequest, PaymentProvider, ProviderError, ProviderStatus};

/// The payment provider the actors call, shared by every event.
#[derive(Clone)]
pub struct Provider(pub Arc<dyn PaymentProvider>);

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl Default for Provider {
    /// The built-in mock: no latency, never declines.
    fn default() -> Self {
        Self(Arc::new(tiketi_payments::mock::MockProvider::default()))
    }
}

/// Prepare a payment for a reservation.
#[derive(Debug, Clone)]
pub struct PrepareCmd {
    /// The reservation to pay for.
    pub reservation: ReservationId,
    /// Who asks (its owner, or an admin).
    pub caller: Caller,
    /// Idempotency key, if the request carried one.
    pub idempotency: Option<IdempotencyKey>,
}

/// Capture a prepared payment.
#[derive(Debug, Clone)]
pub struct ConfirmCmd {
    /// The order to confirm.
    pub order_id: String,
    /// The provider's key for the buyer's authorized payment.
    pub payment_key: String,
    /// The amount the buyer saw; must equal the order's.
    pub amount: i64,
    /// Who asks (the order's owner, or an admin).
    pub caller: Caller,
    /// Idempotency key, if the request carried one.
    pub idempotency: Option<IdempotencyKey>,
}

/// Refund a confirmed reservation's payment; the reservation is cancelled.
#[derive(Debug, Clone)]
pub struct RefundCmd {
    /// The reservation.
    pub reservation: ReservationId,
    /// Who asks (its owner, or an admin).
    pub caller: Caller,
    /// Why, as the provider will record it.
    pub reason: String,
    /// Idempotency key, if the request carried one.
    pub idempotency: Option<IdempotencyKey>,
    /// An admin's reason for the audit trail, when an admin changes the status by hand.
    pub audit: Option<String>,
}

/// An admin settles an owed capture by hand.
#[derive(Debug, Clone)]
pub struct SettleOwedCmd {
    /// The capture's payment key.
    pub payment_key: String,
    /// The admin.
    pub admin: UserId,
    /// Why (refunded by bank transfer, confirmed refunded in the provider's console...).
    pub reason: String,
}

/// How a begun confirmation or refund continues.
#[derive(Debug)]
pub(crate) enum Begun {
    /// The payment is in flight and durable: call the provider, then finish.
    Started(Payment),
    /// Nothing left to do: the payment as it ended (a repeat, or a wait on a twin).
    Settled(Payment),
}

/// How long to wait before asking the provider again about an unknown outcome.
pub(crate) const RECONCILE_RETRY: Duration = Duration::from_secs(5);
/// How long to wait before asking again for a refund the provider refused outright (an
/// operator may have settled it by hand meanwhile; the provider then reports it refunded).
const REFUSED_REFUND_RETRY: Duration = Duration::from_secs(300);

impl EventHandle {
    /// Prepares (or returns the already prepared) payment for a held reservation; durable.
    pub async fn prepare_payment(&self, cmd: PrepareCmd) -> Result<Payment, ActorError> {
        self.call(|r| EventMsg::Prepare(cmd, r), self.config.durable_timeout).await?
    }

    /// A live reservation's current payment attempt, as the actor sees it now.
    pub async fn payment(&self, reservation: ReservationId) -> Result<Option<Payment>, ActorError> {
        self.call(|r| EventMsg::Payment(reservation, r), self.config.call_timeout).await
    }

    /// The captures this event owes back and the provider has not refunded yet.
    pub async fn owed_refunds(&self) -> Result<Vec<OwedRefund>, ActorError> {
        self.call(EventMsg::OwedRefunds, self.config.call_timeout).await
    }

    /// Settles an owed capture by hand; the debt as it was, once durable. The provider is
    /// asked first: a refund it has made after all (a request whose answer was lost) is
    /// recorded as its refund, and the debt is then not owed (`PaymentNotFound`).
    pub async fn settle_owed(&self, cmd: SettleOwedCmd) -> Result<OwedRefund, ActorError> {
        let owed = self.owed_refunds().await?.into_iter().find(|o| o.payment_key == cmd.payment_key);
        let owed = owed.ok_or(tiketi_engine::EngineError::PaymentNotFound)?;
        match self.config.provider.0.payment_for_order(&owed.order_id).await {
            Ok(Some(p)) if p.payment_key == owed.payment_key && p.status == ProviderStatus::Canceled => {
                tracing::warn!(order_id = %owed.order_id, "not settled by hand: the provider has refunded it");
                let msg = EventMsg::OwedRefunded { payment_key: owed.payment_key, at: now() };
                let _ = self.actor.cast(crate::event_actor::Envelope::internal(msg));
                return Err(tiketi_engine::EngineError::PaymentNotFound.into());
            }
            Ok(_) => {}
            Err(e) => return Err(ActorError::Unavailable(format!("cannot ask the provider whether it refunded: {e}"))),
        }
        self.call(|r| EventMsg::SettleOwed(cmd, r), self.config.durable_timeout).await?
    }

    /// Confirms a payment: the capture and its record, each durable before the next step.
    /// Confirming again with the same payment key answers the same and charges once.
    pub async fn confirm_payment(&self, cmd: ConfirmCmd) -> Result<Payment, ActorError> {
        match self.call(|r| EventMsg::BeginConfirm(cmd, r), self.config.durable_timeout).await?? {
            Begun::Settled(p) => settled(p),
            Begun::Started(p) => {
                let handle = self.clone();
                tokio::spawn(async move { handle.capture(p).await })
                    .await
                    .map_err(|e| ActorError::Unavailable(e.to_string()))?
            }
        }
    }

    /// Refunds a confirmed reservation's payment and cancels the reservation, once the
    /// provider has refunded; durable.
    pub async fn refund_payment(&self, cmd: RefundCmd) -> Result<Payment, ActorError> {
        let reason = cmd.reason.clone();
        match self.call(|r| EventMsg::BeginRefund(cmd, r), self.config.durable_timeout).await?? {
            Begun::Settled(p) => settled(p),
            Begun::Started(p) => {
                let handle = self.clone();
                tokio::spawn(async move { handle.refund(p, &reason).await })
                    .await
                    .map_err(|e| ActorError::Unavailable(e.to_string()))?
            }
        }
    }

    /// Asks the provider to capture `payment`, then records the outcome.
    async fn capture(&self, payment: Payment) -> Result<Payment, ActorError> {
        let key = payment.payment_key.clone().expect("an in-flight payment has its key");
        let req =
            ConfirmRequest { payment_key: key.clone(), order_id: payment.order_id.clone(), amount: payment.amount };
        let outcome = match tiketi_payments::confirm_resolved(&*self.config.provider.0, &req).await {
            Ok(p) => captured(p.approved_at, p.method),
            Err(ProviderError::Declined { code, message }) => {
                CaptureOutcome::Declined(PaymentFailure { code, message })
            }
            // Still unknown after asking: the payment stays in flight (its seats pinned)
            // and the actor asks the provider again later.
            Err(ProviderError::Unknown(why)) => {
                tracing::warn!(order_id = %payment.order_id, %why, "capture outcome unknown; reconciling later");
                self.reconcile_later(payment.reservation);
                return Err(ActorError::PaymentPending { retry_after: RECONCILE_RETRY });
            }
        };
        self.finish_confirm(payment.order_id, key, outcome).await
    }

    /// Asks the provider to refund `payment` for `reason`, then records the outcome.
    async fn refund(&self, payment: Payment, reason: &str) -> Result<Payment, ActorError> {
        let key = payment.payment_key.clone().expect("a refunded payment has its key");
        let provider = &*self.config.provider.0;
        let outcome =
            match tiketi_payments::cancel_resolved(provider, &key, &payment.order_id, reason, &refund_key(&payment))
                .await
            {
                Ok(_) => RefundOutcome::Refunded { at: now() },
                Err(ProviderError::Declined { code, message }) => {
                    RefundOutcome::Failed(PaymentFailure { code, message })
                }
                Err(ProviderError::Unknown(why)) => {
                    tracing::warn!(order_id = %payment.order_id, %why, "refund outcome unknown; reconciling later");
                    self.reconcile_later(payment.reservation);
                    return Err(ActorError::PaymentPending { retry_after: RECONCILE_RETRY });
                }
            };
        let reservation = payment.reservation;
        let finished = self
            .call_unbounded(|reply| EventMsg::FinishRefund { reservation, outcome, reply }, self.config.durable_timeout)
            .await;
        if matches!(finished, Err(ActorError::Timeout | ActorError::Unavailable(_))) {
            // The refund happened; if its record did not make it, the actor asks again.
            self.reconcile_later(reservation);
        }
        finished?
    }

    async fn finish_confirm(
        &self,
        order_id: String,
        payment_key: String,
        outcome: CaptureOutcome,
    ) -> Result<Payment, ActorError> {
        let reservation = tiketi_engine::order_reservation(&order_id);
        let finished = self
            .call_unbounded(
                |reply| EventMsg::FinishConfirm { order_id, payment_key, outcome, reply },
                self.config.durable_timeout,
            )
            .await;
        if let (Err(ActorError::Timeout | ActorError::Unavailable(_)), Some(reservation)) = (&finished, reservation) {
            // The capture's outcome is known; if its record did not make it, the actor asks
            // the provider again.
            self.reconcile_later(reservation);
        }
        finished?
    }

    /// Has the actor reconcile a payment in flight after [`RECONCILE_RETRY`].
    fn reconcile_later(&self, reservation: ReservationId) {
        self.actor.send_after(RECONCILE_RETRY, move || {
            crate::event_actor::Envelope::internal(EventMsg::Reconcile(reservation))
        });
    }
}

/// Settles a payment left in flight by a crash or an unknown outcome: asks the provider
/// what became of it and records that. A capture the provider has is recorded (the seats
/// were pinned for it); one it does not have was never made. An interrupted refund is
/// simply asked for again (the provider's idempotency key makes that safe).
pub(crate) async fn reconcile(handle: EventHandle, payment: Payment) {
    let result = match payment.status {
        PaymentStatus::InProgress => {
            let key = payment.payment_key.clone().unwrap_or_default();
            // Until the capture window has passed, a capture may still land: an order the
            // provider does not know yet (or still runs) is "not yet", not "never".
            let began = Duration::from_millis((now().millis() - payment.updated_at.millis()).max(0) as u64);
            let may_still_land = began < handle.config.capture_window;
            match handle.config.provider.0.payment_for_order(&payment.order_id).await {
                Ok(Some(p)) if p.status == ProviderStatus::Done && p.payment_key == key => {
                    handle.finish_confirm(payment.order_id.clone(), key, captured(p.approved_at, p.method)).await
                }
                // Still running at the provider (whatever the window): its capture may land.
                // Not known there yet: only within the window.
                Ok(found)
                    if found.as_ref().map_or(may_still_land, |p| {
                        p.payment_key == key && matches!(p.status, ProviderStatus::Ready | ProviderStatus::InProgress)
                    }) =>
                {
                    handle.reconcile_later(payment.reservation);
                    Err(ActorError::PaymentPending { retry_after: RECONCILE_RETRY })
                }
                Ok(found) => {
                    let seen = found.map_or_else(|| "no payment".to_owned(), |p| format!("{:?}", p.status));
                    let outcome = CaptureOutcome::Declined(PaymentFailure {
                        code: tiketi_payments::codes::NOT_CAPTURED.into(),
                        message: format!("the provider has no capture for this order ({seen})"),
                    });
                    handle.finish_confirm(payment.order_id.clone(), key, outcome).await
                }
                Err(e) => {
                    handle.reconcile_later(payment.reservation);
                    Err(ActorError::Unavailable(e.to_string()))
                }
            }
        }
        // The first request's reason went to the provider with the first try (the same
        // idempotency key makes this a repeat of it).
        PaymentStatus::Cancelling => handle.refund(payment.clone(), "refund resumed after an interruption").await,
        _ => return,
    };
    match result {
        Ok(p) => tracing::info!(order_id = %p.order_id, status = %p.status, "payment reconciled"),
        Err(e) => tracing::warn!(order_id = %payment.order_id, error = %e, "payment not reconciled yet"),
    }
}

/// Refunds money captured for an order that no longer sells anything (its hold ended
/// first, or another attempt settled it): money is never kept without seats. The debt is
/// already in the journal when this runs and stays until the actor records the refund, so
/// a failure here (or a crash after the debt's commit) only means asking again later.
pub(crate) async fn refund_owed(handle: EventHandle, owed: OwedRefund) {
    let provider = &*handle.config.provider.0;
    let reason = "the reservation was no longer held when the payment was captured";
    // One key per capture: asking again never refunds twice.
    let key = format!("owed-{}", owed.payment_key);
    let OwedRefund { order_id, payment_key, .. } = owed;
    let retry_after = match tiketi_payments::cancel_resolved(provider, &payment_key, &order_id, reason, &key).await {
        Ok(_) => {
            tracing::warn!(%order_id, "refunded a capture that came too late for its reservation");
            let msg = EventMsg::OwedRefunded { payment_key, at: now() };
            let _ = handle.actor.cast(crate::event_actor::Envelope::internal(msg));
            return;
        }
        Err(e @ ProviderError::Declined { .. }) => {
            tracing::error!(
                %order_id, error = %e,
                "the provider refused to refund a capture owed back; it stays owed (asked again every {}s)",
                REFUSED_REFUND_RETRY.as_secs()
            );
            REFUSED_REFUND_RETRY
        }
        Err(e) => {
            tracing::warn!(%order_id, error = %e, "refund of a capture owed back not done yet; asking again");
            RECONCILE_RETRY
        }
    };
    let msg = EventMsg::OwedRefundFailed { payment_key, retry_after };
    let _ = handle.actor.cast(crate::event_actor::Envelope::internal(msg));
}

/// What a look at the provider found for an order declined for want of a capture.
#[derive(Debug)]
pub(crate) enum LateCaptureFinding {
    /// Captured after all (in full or, after a partial refund by hand, in part): selling
    /// nothing, it is owed back.
    Captured { payment_key: String, outcome: CaptureOutcome },
    /// The provider can no longer capture it (cancelled, aborted, expired).
    Never,
    /// No capture yet (or the provider could not be asked): look again later.
    NotYet,
}

/// Asks the provider about each of `orders` (order id, payment key) at once, and tells the
/// actor what each look found (see the actor's `late_captures`).
pub(crate) async fn look_for_late_captures(handle: EventHandle, orders: Vec<(String, String)>) {
    let mut looks = tokio::task::JoinSet::new();
    for (order_id, payment_key) in orders {
        let provider = handle.config.provider.clone();
        looks.spawn(async move {
            let finding = match provider.0.payment_for_order(&order_id).await {
                Ok(Some(p)) => match p.status {
                    ProviderStatus::Done | ProviderStatus::PartialCanceled => {
                        if p.payment_key != payment_key {
                            tracing::warn!(%order_id, "the provider captured the order under another payment key");
                        }
                        let outcome = captured(p.approved_at, p.method);
                        LateCaptureFinding::Captured { payment_key: p.payment_key, outcome }
                    }
                    ProviderStatus::Canceled | ProviderStatus::Aborted | ProviderStatus::Expired => {
                        LateCaptureFinding::Never
                    }
                    ProviderStatus::Ready | ProviderStatus::InProgress | ProviderStatus::WaitingForDeposit => {
                        LateCaptureFinding::NotYet
                    }
                },
                Ok(None) => LateCaptureFinding::NotYet,
                Err(e) => {
                    tracing::debug!(%order_id, error = %e, "cannot look for a late capture yet");
                    LateCaptureFinding::NotYet
                }
            };
            (order_id, finding)
        });
    }
    while let Some(Ok((order_id, finding))) = looks.join_next().await {
        let msg = EventMsg::LateCaptureFinding { order_id, finding };
        let _ = handle.actor.cast(crate::event_actor::Envelope::internal(msg));
    }
}

/// The provider idempotency key of a payment's refund: one per order, so a retried refund
/// never refunds twice.
fn refund_key(payment: &Payment) -> String {
    format!("refund-{}", payment.order_id)
}

fn captured(approved_at: Option<time::OffsetDateTime>, method: Option<String>) -> CaptureOutcome {
    CaptureOutcome::Captured { approved_at: approved_at.map_or_else(now, timestamp), method }
}

/// A settled payment as the caller's answer: a declined capture is an error.
pub(crate) fn settled(p: Payment) -> Result<Payment, ActorError> {
    match (&p.status, &p.failure) {
        (PaymentStatus::Failed, Some(f)) => Err(ActorError::PaymentDeclined(f.clone())),
        _ => Ok(p),
    }
}

fn timestamp(t: time::OffsetDateTime) -> Timestamp {
    Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn now() -> Timestamp {
    timestamp(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    /// The engine recognises the decline the provider adapter and the reconciliation write.
    #[test]
    fn the_engine_and_the_provider_adapter_spell_not_captured_alike() {
        assert_eq!(tiketi_engine::NOT_CAPTURED, tiketi_payments::codes::NOT_CAPTURED);
    }
}
