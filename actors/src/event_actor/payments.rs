//! The event actor's side of payments: every race between a confirmation, a refund, a
//! cancellation and the expiry sweep is decided here, one message at a time, by the engine.
//! The provider is never awaited here (see [`crate::handle`]'s payments module).

use super::{Envelope, EventMsg, EventState, Reply, may_touch};
use crate::handle::{
    Begun, ConfirmCmd, IdempotencyKey, PrepareCmd, RECONCILE_RETRY, RefundCmd, SettleOwedCmd, reconcile, refund_owed,
    settled,
};
use crate::{ActorError, EventHandle};
use ractor::ActorRef;
use std::time::Duration;
use tiketi_engine::{
    CAPTURED_TOO_LATE, CaptureOutcome, ConfirmFinish, ConfirmStart, EngineError, OwedRefund, Payment, PaymentFailure,
    RefundOutcome, RefundStart, ReservationId, ReservationStatus, SettledByHand, UserId,
};
use tiketi_persistence::{AuditRecord, IdempotencyRecord, JournalEntry, StoredOutcome};

/// A confirmation or refund in flight under an idempotency key: a second request with the
/// key gets 409 until the first has its answer.
pub(super) struct PendingKey {
    user: UserId,
    key: IdempotencyKey,
    reservation: ReservationId,
}

impl EventState {
    /// A handle to this actor, for the tasks that call the provider.
    pub(super) fn handle(&self, myself: &ActorRef<Envelope>) -> EventHandle {
        EventHandle::new(self.record.id, myself.clone(), self.config.clone(), self.fence)
    }

    /// Answers a repeated idempotent payment request, or refuses a key still in flight;
    /// `None` if the request is new. `Some` means the reply was sent.
    fn replay_payment<T: Send + 'static>(
        &mut self,
        user: UserId,
        key: &Option<IdempotencyKey>,
        reply: Reply<T>,
        answer: impl FnOnce(Payment) -> T,
    ) -> Option<Reply<T>> {
        let in_flight = key.as_ref().and_then(|k| self.pending_keys.get(&(user, k.key.clone())));
        if let Some(pending) = in_flight {
            let same = key.as_ref().is_some_and(|k| k.fingerprint == pending.key.fingerprint);
            let _ =
                reply.send(Err(if same { ActorError::IdempotencyInFlight } else { ActorError::IdempotencyMismatch }));
            return None;
        }
        match self.replay(user, key) {
            None => Some(reply),
            Some(seen) => {
                // The first answer went out only once durable; so does this one.
                let seq = seen.as_ref().map_or(0, |r| r.seq);
                let result = seen.and_then(|r| match &r.outcome {
                    StoredOutcome::Payment(p) => Ok(answer((**p).clone())),
                    StoredOutcome::Refused(e) => Err(e.clone().into()),
                    StoredOutcome::Reservation(_) => Err(ActorError::IdempotencyMismatch),
                });
                self.answer_when_durable(seq, reply, result);
                None
            }
        }
    }

    /// The payment a caller may see: their own (an admin sees any).
    fn own_payment(&self, reservation: ReservationId, caller: &crate::Caller) -> Option<&Payment> {
        self.engine.payment(reservation).filter(|p| may_touch(caller, p.user))
    }

    pub(super) fn prepare(&mut self, cmd: PrepareCmd, reply: Reply<Payment>) {
        let Some(reply) = self.replay_payment(cmd.caller.user, &cmd.idempotency, reply, |p| p) else { return };
        let owned = self.engine.reservation(cmd.reservation).is_some_and(|r| may_touch(&cmd.caller, r.user));
        if !owned {
            let _ = reply.send(Err(EngineError::ReservationNotFound.into()));
            return;
        }
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let (changes, result) = match self.engine.prepare(cmd.reservation, now) {
            Ok((payment, changes)) => (changes.unwrap_or_else(|| self.no_changes()), Ok(payment)),
            Err(e) => (self.no_changes(), Err(e)),
        };
        let outcome = match &result {
            Ok(p) => StoredOutcome::Payment(Box::new(p.clone())),
            Err(e) => StoredOutcome::Refused(e.clone()),
        };
        let seq = changes.seq;
        let idempotency = self.remember(cmd.caller.user, cmd.idempotency, seq, outcome);
        if !changes.changes.is_empty() || !idempotency.is_empty() {
            self.send(permit, JournalEntry { idempotency, ..self.entry(changes) });
        }
        self.answer_when_durable(seq, reply, result.map_err(ActorError::from));
    }

    pub(super) fn begin_confirm(&mut self, myself: &ActorRef<Envelope>, cmd: ConfirmCmd, reply: Reply<Begun>) {
        let Some(reply) = self.replay_payment(cmd.caller.user, &cmd.idempotency, reply, Begun::Settled) else {
            return;
        };
        let reservation = tiketi_engine::order_reservation(&cmd.order_id);
        if reservation.and_then(|r| self.own_payment(r, &cmd.caller)).is_none() {
            let _ = reply.send(Err(EngineError::PaymentNotFound.into()));
            return;
        }
        let reservation = reservation.expect("checked above");
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        match self.engine.begin_confirm(&cmd.order_id, &cmd.payment_key, cmd.amount, now) {
            Ok((payment, ConfirmStart::Started(changes))) => {
                let seq = changes.seq;
                self.send(permit, self.entry(changes));
                self.hold_key(cmd.caller.user, cmd.idempotency, reservation);
                // The safety net: if nobody reports the capture's outcome by then, ask the
                // provider.
                myself.send_after(self.config.reconcile_after, move || {
                    Envelope::internal(EventMsg::Reconcile(reservation))
                });
                self.answer_when_durable(seq, reply, Ok(Begun::Started(payment)));
            }
            Ok((_, ConfirmStart::InFlight)) => {
                self.confirm_waiters.entry(cmd.order_id).or_default().push(reply);
            }
            Ok((payment, ConfirmStart::Done)) => {
                let seq = self.engine.seq();
                self.answer_when_durable(seq, reply, Ok(Begun::Settled(payment)));
            }
            Err(e) => {
                self.note_error(&e.clone().into());
                let idempotency = self.remember(cmd.caller.user, cmd.idempotency, 0, StoredOutcome::Refused(e.clone()));
                if !idempotency.is_empty() {
                    self.send(permit, JournalEntry { idempotency, ..self.entry(self.no_changes()) });
                }
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    pub(super) fn finish_confirm(
        &mut self,
        myself: &ActorRef<Envelope>,
        order_id: String,
        payment_key: String,
        outcome: CaptureOutcome,
        reply: Reply<Payment>,
    ) {
        let now = self.clock.now();
        if let Some(reservation) = tiketi_engine::order_reservation(&order_id) {
            self.reconciled.remove(&reservation);
        }
        if matches!(outcome, CaptureOutcome::Captured { .. }) {
            // Reported or found: no more looking for it.
            self.late_captures.forget(&order_id);
        }
        let (payment, finish) = self.engine.finish_confirm(&order_id, &payment_key, outcome, now);
        let changes = match finish {
            ConfirmFinish::Confirmed(changes) | ConfirmFinish::Declined(changes) => changes,
            ConfirmFinish::AlreadySettled => {
                let result = payment.ok_or_else(|| EngineError::PaymentNotFound.into()).and_then(settled);
                let seq = self.engine.seq();
                self.answer_when_durable(seq, reply, result);
                return;
            }
            ConfirmFinish::Orphaned(changes) => {
                // The debt is recorded before anyone is told; the refund starts now (asking
                // twice is harmless). A crash before the commit loses this report, but an
                // attempt declined for want of a capture is watched (`late_captures`) from
                // the store, which finds the capture again.
                let seq = changes.seq;
                self.push(self.entry(changes));
                self.refund_owed(myself, payment_key);
                // Held and not past its expiry (the sweep may not have ended it yet).
                let held = tiketi_engine::order_reservation(&order_id)
                    .and_then(|r| self.engine.reservation(r))
                    .is_some_and(|r| r.status == ReservationStatus::Held && r.expires_at > now);
                let answer = if held {
                    ActorError::PaymentDeclined(PaymentFailure {
                        code: CAPTURED_TOO_LATE.into(),
                        message: "the payment was captured after this order had been declined: the capture \
                                  will be refunded. The reservation is still held; prepare a new payment to pay for it"
                            .into(),
                    })
                } else {
                    EngineError::HoldExpired.into()
                };
                self.answer_when_durable(seq, reply, Err(answer));
                return;
            }
        };
        let payment = payment.expect("a finished confirmation has its payment");
        if payment.failure.as_ref().is_some_and(|f| f.is_not_captured()) {
            self.watch_for_late_capture(myself, order_id.clone(), payment_key);
        }
        let seq = changes.seq;
        let idempotency = self.settle_keys(payment.reservation, seq, &payment);
        // Recording money that moved can never be refused: no backlog bound here.
        self.push(JournalEntry { idempotency, ..self.entry(changes) });
        for waiter in self.confirm_waiters.remove(&order_id).unwrap_or_default() {
            self.answer_when_durable(seq, waiter, Ok(Begun::Settled(payment.clone())));
        }
        self.answer_when_durable(seq, reply, settled(payment));
    }

    pub(super) fn begin_refund(&mut self, myself: &ActorRef<Envelope>, cmd: RefundCmd, reply: Reply<Begun>) {
        let Some(reply) = self.replay_payment(cmd.caller.user, &cmd.idempotency, reply, Begun::Settled) else {
            return;
        };
        let Some(reservation) = self.engine.reservation(cmd.reservation).filter(|r| may_touch(&cmd.caller, r.user))
        else {
            let _ = reply.send(Err(EngineError::ReservationNotFound.into()));
            return;
        };
        let from = reservation.status;
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        match self.engine.begin_refund(cmd.reservation, now) {
            Ok((payment, RefundStart::Started(changes))) => {
                let seq = changes.seq;
                let audit = cmd
                    .audit
                    .map(|reason| AuditRecord {
                        reservation: cmd.reservation,
                        event: self.record.id,
                        admin: cmd.caller.user,
                        from,
                        to: ReservationStatus::Cancelled,
                        reason,
                        at: now,
                    })
                    .into_iter()
                    .collect();
                self.send(permit, JournalEntry { audit, ..self.entry(changes) });
                self.hold_key(cmd.caller.user, cmd.idempotency, cmd.reservation);
                // The safety net, as for a capture: a refund nobody finished is asked again.
                let reservation = cmd.reservation;
                myself.send_after(self.config.reconcile_after, move || {
                    Envelope::internal(EventMsg::Reconcile(reservation))
                });
                self.answer_when_durable(seq, reply, Ok(Begun::Started(payment)));
            }
            Ok((_, RefundStart::InFlight)) => {
                self.refund_waiters.entry(cmd.reservation).or_default().push(reply);
            }
            Err(e) => {
                self.note_error(&e.clone().into());
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    pub(super) fn finish_refund(&mut self, reservation: ReservationId, outcome: RefundOutcome, reply: Reply<Payment>) {
        let now = self.clock.now();
        self.reconciled.remove(&reservation);
        let Some((payment, changes)) = self.engine.finish_refund(reservation, outcome, now) else {
            // Reported twice: the first report settled it.
            let _ = reply.send(Err(EngineError::NotPaid.into()));
            return;
        };
        let seq = changes.seq;
        let idempotency = self.settle_keys(reservation, seq, &payment);
        self.push(JournalEntry { idempotency, ..self.entry(changes) });
        let result = match (&payment.status, &payment.failure) {
            (tiketi_engine::PaymentStatus::Done, Some(f)) => Err(ActorError::PaymentDeclined(f.clone())),
            _ => Ok(payment.clone()),
        };
        for waiter in self.refund_waiters.remove(&reservation).unwrap_or_default() {
            self.answer_when_durable(seq, waiter, result.clone().map(Begun::Settled));
        }
        self.answer_when_durable(seq, reply, result);
    }

    /// Asks the provider about a payment still in flight (after a restart, or when nobody
    /// reported its outcome in time).
    pub(super) fn reconcile(&mut self, myself: &ActorRef<Envelope>, reservation: ReservationId) {
        let Some(payment) = self.engine.payment(reservation).filter(|p| p.status.is_in_flight()) else { return };
        // Several chains may ask (the safety net, an unknown capture's retry): one look at the
        // provider per payment per half retry interval is enough.
        let now = tokio::time::Instant::now();
        let recent = self.reconciled.get(&reservation).is_some_and(|&at| now - at < RECONCILE_RETRY / 2);
        if recent {
            return;
        }
        self.reconciled.insert(reservation, now);
        tokio::spawn(reconcile(self.handle(myself), payment.clone()));
    }

    /// Asks the provider to refund an owed capture, unless it is being asked already.
    pub(super) fn refund_owed(&mut self, myself: &ActorRef<Envelope>, payment_key: String) {
        let Some(owed) = self.engine.owed_refunds().find(|o| o.payment_key == payment_key) else { return };
        if self.refunds_in_flight.insert(payment_key.clone()) {
            let (handle, owed, actor) = (self.handle(myself), owed.clone(), myself.clone());
            tokio::spawn(async move {
                // The request reports its own outcome; one that panicked still frees the
                // capture for the next request (and for a settlement by hand).
                if tokio::spawn(refund_owed(handle, owed)).await.is_err() {
                    let msg = EventMsg::OwedRefundFailed { payment_key, retry_after: RECONCILE_RETRY };
                    let _ = actor.cast(Envelope::internal(msg));
                }
            });
        }
    }

    /// Records that the provider refunded an owed capture. Money moved: never refused.
    pub(super) fn owed_refunded(&mut self, payment_key: &str, at: tiketi_engine::Timestamp) {
        self.refunds_in_flight.remove(payment_key);
        match self.engine.refund_paid(payment_key, at, self.clock.now()) {
            Some(changes) => self.push(self.entry(changes)),
            None => tracing::error!(%payment_key, "the provider refunded a capture no longer owed (settled by hand?)"),
        }
    }

    /// The provider did not refund an owed capture: ask again after `retry_after`.
    pub(super) fn owed_refund_failed(
        &mut self,
        myself: &ActorRef<Envelope>,
        payment_key: String,
        retry_after: Duration,
    ) {
        self.refunds_in_flight.remove(&payment_key);
        myself.send_after(retry_after, move || Envelope::internal(EventMsg::RefundOwed(payment_key)));
    }

    /// An admin settles an owed capture by hand (refunded by other means): no longer owed,
    /// and no longer asked for. Refused while a refund request is in flight, which could
    /// refund what is being settled. Answered once durable.
    pub(super) fn settle_owed(&mut self, cmd: SettleOwedCmd, reply: Reply<OwedRefund>) {
        if self.refunds_in_flight.contains(&cmd.payment_key) {
            let _ = reply.send(Err(EngineError::PaymentInProgress.into()));
            return;
        }
        let by = SettledByHand { admin: cmd.admin, reason: cmd.reason };
        let Some((owed, changes)) = self.engine.settle_owed(&cmd.payment_key, by, self.clock.now()) else {
            let _ = reply.send(Err(EngineError::PaymentNotFound.into()));
            return;
        };
        tracing::warn!(order_id = %owed.order_id, admin = %cmd.admin, "an owed capture was settled by hand");
        let seq = changes.seq;
        // A record of money: no backlog bound.
        self.push(self.entry(changes));
        self.answer_when_durable(seq, reply, Ok(owed));
    }

    /// Marks an idempotency key in flight until the payment it started has its answer.
    fn hold_key(&mut self, user: UserId, key: Option<IdempotencyKey>, reservation: ReservationId) {
        if let Some(key) = key {
            self.pending_keys.insert((user, key.key.clone()), PendingKey { user, key, reservation });
        }
    }

    /// The idempotency records of the keys waiting on this reservation's payment, now that
    /// it has its answer.
    fn settle_keys(&mut self, reservation: ReservationId, seq: u64, payment: &Payment) -> Vec<IdempotencyRecord> {
        let settled: Vec<(UserId, String)> =
            self.pending_keys.iter().filter(|(_, p)| p.reservation == reservation).map(|(k, _)| k.clone()).collect();
        let mut records = Vec::new();
        for k in settled {
            let pending = self.pending_keys.remove(&k).expect("listed above");
            let outcome = StoredOutcome::Payment(Box::new(payment.clone()));
            records.extend(self.remember(pending.user, Some(pending.key), seq, outcome));
        }
        records
    }
}
