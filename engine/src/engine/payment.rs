//! A reservation's payment, decided in the engine so every race between a confirmation,
//! a cancellation and the expiry sweep is settled in one place, in order.
//!
//! The provider is called outside the engine, between [`EventEngine::begin_confirm`] and
//! [`EventEngine::finish_confirm`] (or [`EventEngine::begin_refund`] and
//! [`EventEngine::finish_refund`]). While a confirmation is in flight its reservation is
//! pinned: the expiry sweep passes it by, and a cancellation is refused, so a captured
//! payment always finds its seats still held.

use super::EventEngine;
use crate::{
    Change, ChangeSet, EngineError, OwedRefund, Payment, PaymentFailure, PaymentStatus, ReservationId,
    ReservationStatus, SeatStatus, SettledByHand, Timestamp,
};

/// What the provider said about a capture (a Toss "confirm").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// The money was taken.
    Captured {
        /// When the provider approved it.
        approved_at: Timestamp,
        /// The means of payment, as the provider names it.
        method: Option<String>,
    },
    /// Definitively not taken.
    Declined(PaymentFailure),
}

/// What the provider said about a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The money went back.
    Refunded {
        /// When.
        at: Timestamp,
    },
    /// Definitively not refunded; the payment stays done.
    Failed(PaymentFailure),
}

/// How [`EventEngine::begin_confirm`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmStart {
    /// The payment is now in flight: call the provider, then
    /// [`EventEngine::finish_confirm`]. Persist the change set first, so a crash during the
    /// provider call leaves a record to reconcile.
    Started(ChangeSet),
    /// The same confirmation (same payment key) is already in flight: wait for its outcome.
    InFlight,
    /// Already confirmed with this payment key: the same answer again, and no second charge.
    Done,
}

/// How [`EventEngine::finish_confirm`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmFinish {
    /// The reservation is confirmed (its seats sold); the payment is done.
    Confirmed(ChangeSet),
    /// The provider declined; the reservation stays held until its expiry (or expires now
    /// if that has passed: the change set then carries the expiry too).
    Declined(ChangeSet),
    /// The outcome for this order was already recorded (a second report of the same
    /// confirmation, e.g. from a reconciliation); nothing changed.
    AlreadySettled,
    /// Money was captured for an order this engine no longer confirms (its attempt was
    /// settled otherwise, or its reservation ended): the capture is now an
    /// [`OwedRefund`], recorded by this change set. Refund it, then
    /// [`EventEngine::refund_paid`].
    Orphaned(ChangeSet),
}

/// How [`EventEngine::begin_refund`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStart {
    /// The refund is in flight: persist, call the provider, then
    /// [`EventEngine::finish_refund`].
    Started(ChangeSet),
    /// A refund of this payment is already in flight: wait for its outcome.
    InFlight,
}

/// The order id of a reservation's `attempt`-th payment: the reservation id (32 hex digits)
/// and the attempt, so the event that owns an order can be found from the id alone. Fits
/// Toss's rule for order ids (6-64 of `[A-Za-z0-9_-]`).
pub fn order_id(reservation: ReservationId, attempt: u32) -> String {
    format!("{}-{attempt}", reservation.0.simple())
}

/// The reservation an order id belongs to, if it is one of ours.
pub fn order_reservation(order_id: &str) -> Option<ReservationId> {
    let (hex, attempt) = order_id.split_once('-')?;
    if hex.len() != 32 || attempt.is_empty() || !attempt.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    uuid::Uuid::try_parse(hex).ok().map(ReservationId)
}

impl EventEngine {
    /// The current payment of a live reservation, if one was prepared.
    pub fn payment(&self, reservation: ReservationId) -> Option<&Payment> {
        self.payments.get(&reservation)
    }

    /// Payments whose provider call was in flight when last persisted: after a restart
    /// each must be reconciled with the provider (see [`EventEngine::finish_confirm`] and
    /// [`EventEngine::finish_refund`]).
    pub fn unsettled_payments(&self) -> impl Iterator<Item = &Payment> {
        self.payments.values().filter(|p| p.status.is_in_flight())
    }

    /// Starts paying for a held reservation: the amount comes from the reservation, never
    /// from the buyer. Preparing again returns the payment already prepared (or in flight,
    /// or done); after a declined attempt it prepares a new one with a new order id.
    pub fn prepare(&mut self, id: ReservationId, now: Timestamp) -> Result<(Payment, Option<ChangeSet>), EngineError> {
        let r = self.reservations.get(&id).ok_or(EngineError::ReservationNotFound)?;
        let previous = self.payments.get(&id);
        let unpaid = r.status == ReservationStatus::Held && !previous.is_some_and(|p| p.status.is_in_flight());
        if unpaid && self.rules.cancelled {
            return Err(EngineError::NotOnSale(crate::EventStatus::Cancelled));
        }
        // Past its expiry even if the sweep has not ended it yet.
        if unpaid && r.expires_at <= now {
            return Err(EngineError::HoldExpired);
        }
        if let Some(p) = previous.filter(|p| p.status != PaymentStatus::Failed) {
            return Ok((p.clone(), None));
        }
        if r.status != ReservationStatus::Held {
            return Err(EngineError::InvalidTransition { from: r.status, to: ReservationStatus::Confirmed });
        }
        let attempt = previous.map_or(1, |p| p.attempt + 1);
        let payment = Payment {
            order_id: order_id(id, attempt),
            attempt,
            reservation: id,
            event: self.event,
            user: r.user,
            amount: r.amount,
            status: PaymentStatus::Ready,
            payment_key: None,
            method: None,
            failure: None,
            created_at: now,
            updated_at: now,
            approved_at: None,
            cancelled_at: None,
        };
        self.payments.insert(id, payment.clone());
        let changes = self.commit(now, vec![Change::Payment(Box::new(payment.clone()))]);
        Ok((payment, changes))
    }

    /// A buyer asks to capture `amount` with the provider's `payment_key` for `order_id`.
    /// Checks the amount against the order, refuses a hold past its expiry, and marks the
    /// payment in flight, which pins the reservation until [`EventEngine::finish_confirm`].
    pub fn begin_confirm(
        &mut self,
        order_id: &str,
        payment_key: &str,
        amount: i64,
        now: Timestamp,
    ) -> Result<(Payment, ConfirmStart), EngineError> {
        let id = order_reservation(order_id).ok_or(EngineError::PaymentNotFound)?;
        let held = self.reservations.get(&id).map(|r| (r.status, r.expires_at));
        let p = self.payments.get_mut(&id).filter(|p| p.order_id == order_id).ok_or(EngineError::PaymentNotFound)?;
        if amount != p.amount {
            return Err(EngineError::AmountMismatch { expected: p.amount });
        }
        let same_key = p.payment_key.as_deref() == Some(payment_key);
        match p.status {
            PaymentStatus::Done | PaymentStatus::Cancelling | PaymentStatus::Cancelled if same_key => {
                return Ok((p.clone(), ConfirmStart::Done));
            }
            PaymentStatus::InProgress if same_key => return Ok((p.clone(), ConfirmStart::InFlight)),
            PaymentStatus::InProgress => return Err(EngineError::PaymentInProgress),
            PaymentStatus::Done | PaymentStatus::Cancelling | PaymentStatus::Cancelled => {
                return Err(EngineError::AlreadyPaid);
            }
            PaymentStatus::Aborted => return Err(EngineError::HoldExpired),
            // One key per order: a provider asked about the order later must not find a
            // declined attempt's key beside the one being captured.
            PaymentStatus::Failed => return Err(EngineError::OrderDeclined),
            PaymentStatus::Ready => {}
        }
        if self.rules.cancelled {
            return Err(EngineError::NotOnSale(crate::EventStatus::Cancelled));
        }
        match held {
            Some((ReservationStatus::Held, expires_at)) if expires_at > now => {}
            // Past its expiry even if the sweep has not ended it yet.
            Some((ReservationStatus::Held, _)) | None => return Err(EngineError::HoldExpired),
            Some((from, _)) => return Err(EngineError::InvalidTransition { from, to: ReservationStatus::Confirmed }),
        }
        p.status = PaymentStatus::InProgress;
        p.payment_key = Some(payment_key.to_owned());
        p.failure = None;
        p.updated_at = now;
        let payment = p.clone();
        let changes = self.commit(now, vec![Change::Payment(Box::new(payment.clone()))]).expect("a change");
        Ok((payment, ConfirmStart::Started(changes)))
    }

    /// Records the provider's answer to the confirmation in flight for `order_id` with
    /// `payment_key`. A capture confirms the reservation even if its hold time has passed
    /// meanwhile (it was pinned); a decline leaves it held, or expires it if its time is up.
    pub fn finish_confirm(
        &mut self,
        order_id: &str,
        payment_key: &str,
        outcome: CaptureOutcome,
        now: Timestamp,
    ) -> (Option<Payment>, ConfirmFinish) {
        let id = order_reservation(order_id);
        let current = id.and_then(|id| self.payments.get(&id)).filter(|p| p.order_id == order_id);
        let in_flight = current
            .is_some_and(|p| p.status == PaymentStatus::InProgress && p.payment_key.as_deref() == Some(payment_key));
        let Some(id) = id.filter(|_| in_flight) else {
            let settled = current.cloned();
            // This exact capture was already recorded: a second report of it.
            let recorded = settled.as_ref().is_some_and(|p| {
                p.payment_key.as_deref() == Some(payment_key)
                    && matches!(p.status, PaymentStatus::Done | PaymentStatus::Cancelling | PaymentStatus::Cancelled)
            });
            return match outcome {
                // A second report of an orphaned capture: its refund is owed already.
                CaptureOutcome::Captured { approved_at, .. }
                    if !recorded && !self.owed_refunds.contains_key(payment_key) =>
                {
                    let owed = OwedRefund {
                        order_id: order_id.to_owned(),
                        payment_key: payment_key.to_owned(),
                        captured_at: approved_at,
                        since: now,
                    };
                    self.owed_refunds.insert(owed.payment_key.clone(), owed.clone());
                    let changes = self.commit(now, vec![Change::RefundOwed(Box::new(owed))]).expect("a change");
                    (settled, ConfirmFinish::Orphaned(changes))
                }
                _ => (settled, ConfirmFinish::AlreadySettled),
            };
        };
        let mut changes = Vec::new();
        let finish = match outcome {
            CaptureOutcome::Captured { approved_at, method } => {
                let r = self.reservations.get_mut(&id).expect("an in-flight payment pins its reservation");
                r.status = ReservationStatus::Confirmed;
                r.updated_at = now;
                let (items, user) = (r.items.clone(), r.user);
                self.transfer(&items, SeatStatus::Held, SeatStatus::Sold, &mut changes);
                changes.push(Change::ReservationStatus { id, user, status: ReservationStatus::Confirmed });
                let p = self.payments.get_mut(&id).expect("checked above");
                p.status = PaymentStatus::Done;
                p.approved_at = Some(approved_at);
                p.method = method;
                p.updated_at = now;
                changes.push(Change::Payment(Box::new(p.clone())));
                ConfirmFinish::Confirmed
            }
            CaptureOutcome::Declined(failure) => {
                let p = self.payments.get_mut(&id).expect("checked above");
                p.status = PaymentStatus::Failed;
                p.failure = Some(failure);
                p.updated_at = now;
                changes.push(Change::Payment(Box::new(p.clone())));
                // The sweep (or the event's cancellation) passed this hold by while it was
                // pinned: end it now.
                let ended = if self.reservations.get(&id).is_some_and(|r| r.expires_at <= now) {
                    Some(ReservationStatus::Expired)
                } else {
                    self.rules.cancelled.then_some(ReservationStatus::Cancelled)
                };
                if let Some(status) = ended {
                    self.end(id, status, now, &mut changes);
                    self.refresh_status(now, &mut changes);
                }
                ConfirmFinish::Declined
            }
        };
        let payment = self.payment_record(id, &changes);
        let changes = self.commit(now, changes).expect("a finished confirmation changes something");
        (Some(payment), finish(changes))
    }

    /// Starts refunding a confirmed reservation's payment. The reservation stays confirmed
    /// (its seats sold) until the provider has refunded.
    pub fn begin_refund(&mut self, id: ReservationId, now: Timestamp) -> Result<(Payment, RefundStart), EngineError> {
        let r = self.reservations.get(&id).ok_or(EngineError::ReservationNotFound)?;
        let status = r.status;
        let p = self.payments.get_mut(&id).ok_or(EngineError::PaymentNotFound)?;
        match p.status {
            PaymentStatus::Cancelling => return Ok((p.clone(), RefundStart::InFlight)),
            PaymentStatus::Done if status == ReservationStatus::Confirmed => {}
            PaymentStatus::InProgress => return Err(EngineError::PaymentInProgress),
            _ => return Err(EngineError::NotPaid),
        }
        p.status = PaymentStatus::Cancelling;
        p.failure = None;
        p.updated_at = now;
        let payment = p.clone();
        let changes = self.commit(now, vec![Change::Payment(Box::new(payment.clone()))]).expect("a change");
        Ok((payment, RefundStart::Started(changes)))
    }

    /// Records the provider's answer to the refund in flight for `reservation`. A refund
    /// cancels the reservation and puts its seats back on sale; a refusal leaves the
    /// payment done. `None` if no refund was in flight (a second report).
    pub fn finish_refund(
        &mut self,
        id: ReservationId,
        outcome: RefundOutcome,
        now: Timestamp,
    ) -> Option<(Payment, ChangeSet)> {
        let p = self.payments.get_mut(&id).filter(|p| p.status == PaymentStatus::Cancelling)?;
        let mut changes = Vec::new();
        match outcome {
            RefundOutcome::Refunded { at } => {
                p.status = PaymentStatus::Cancelled;
                p.cancelled_at = Some(at);
                p.updated_at = now;
                let payment = p.clone();
                changes.push(Change::Payment(Box::new(payment.clone())));
                self.end(id, ReservationStatus::Cancelled, now, &mut changes);
                self.refresh_status(now, &mut changes);
                let changes = self.commit(now, changes).expect("a refund changes something");
                Some((payment, changes))
            }
            RefundOutcome::Failed(failure) => {
                p.status = PaymentStatus::Done;
                p.failure = Some(failure);
                p.updated_at = now;
                let payment = p.clone();
                changes.push(Change::Payment(Box::new(payment.clone())));
                Some((payment, self.commit(now, changes).expect("a change")))
            }
        }
    }

    /// Captures to refund, by payment key (see [`OwedRefund`]). After a restart each must be
    /// asked for again (the provider's idempotency key makes a repeat harmless).
    pub fn owed_refunds(&self) -> impl Iterator<Item = &OwedRefund> {
        self.owed_refunds.values()
    }

    /// The provider refunded the owed capture `payment_key` at `at`. `None` if it was not
    /// owed (a second report).
    pub fn refund_paid(&mut self, payment_key: &str, at: Timestamp, now: Timestamp) -> Option<ChangeSet> {
        self.owed_refunds.remove(payment_key)?;
        self.commit(now, vec![Change::RefundPaid { payment_key: payment_key.to_owned(), at, by_hand: None }])
    }

    /// An admin settled the owed capture `payment_key` by hand at `now` (the provider would
    /// not refund it): it is no longer owed. The debt as it was; `None` if it was not owed.
    pub fn settle_owed(
        &mut self,
        payment_key: &str,
        by: SettledByHand,
        now: Timestamp,
    ) -> Option<(OwedRefund, ChangeSet)> {
        let owed = self.owed_refunds.remove(payment_key)?;
        let change = Change::RefundPaid { payment_key: payment_key.to_owned(), at: now, by_hand: Some(Box::new(by)) };
        Some((owed, self.commit(now, vec![change]).expect("a change")))
    }

    /// Whether a reservation's payment is in the provider's hands (confirming or
    /// refunding): the reservation must not end under it.
    pub(super) fn payment_in_flight(&self, id: ReservationId) -> bool {
        self.payments.get(&id).is_some_and(|p| p.status.is_in_flight())
    }

    /// When a reservation ends, or is confirmed without the provider (an admin's offline
    /// payment), its prepared (or declined) payment is aborted. A finished refund already
    /// recorded its payment.
    pub(super) fn end_payment(&mut self, id: ReservationId, now: Timestamp, changes: &mut Vec<Change>) {
        let Some(mut p) = self.payments.remove(&id) else { return };
        if matches!(p.status, PaymentStatus::Ready | PaymentStatus::Failed) {
            p.status = PaymentStatus::Aborted;
            p.updated_at = now;
            changes.push(Change::Payment(Box::new(p)));
        }
    }

    /// The latest record of the payment in `changes` (it may since have left the map).
    fn payment_record(&self, id: ReservationId, changes: &[Change]) -> Payment {
        changes
            .iter()
            .rev()
            .find_map(|c| match c {
                Change::Payment(p) if p.reservation == id => Some((**p).clone()),
                _ => None,
            })
            .expect("a settled payment records itself")
    }
}
