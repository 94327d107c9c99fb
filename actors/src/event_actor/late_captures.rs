//! Looking for captures that land after their attempt was declined.
//!
//! An attempt declined [`NOT_CAPTURED`](tiketi_engine::NOT_CAPTURED) was not refused by the
//! provider: the provider had no capture when asked (past `payments.capture_window_secs`).
//! One may still land: a request stuck in flight, or a late answer that nobody was left to
//! report (the call timed out, the process died before recording it). So the actor asks the
//! provider about each such order for `payments.late_capture_watch_secs` after its decline,
//! 5 s after it and then less often (up to once a minute); a watch comes back with the
//! actor, from the `payments` rows, after a passivation or a crash. A capture found goes
//! through [`EventEngine::finish_confirm`](tiketi_engine::EventEngine::finish_confirm) like
//! a reported one: it sells nothing and becomes a durable debt, refunded.

use super::{Envelope, EventMsg, EventState};
use crate::handle::{RECONCILE_RETRY, look_for_late_capture};
use ractor::ActorRef;
use std::collections::HashMap;
use std::time::Duration;
use tiketi_engine::{Payment, Timestamp};
use tokio::time::Instant;

/// The longest wait between two looks at one order.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The declined orders being watched, by order id.
#[derive(Default)]
pub(super) struct LateCaptures {
    watched: HashMap<String, Watched>,
    /// When the next [`EventMsg::LookForLateCaptures`] is due, if one is scheduled.
    armed: Option<Instant>,
}

struct Watched {
    payment_key: String,
    /// When the attempt was declined (the attempt's last change, after a restart).
    declined_at: Timestamp,
    /// When to look next.
    next: Instant,
    /// The wait after that look.
    interval: Duration,
}

impl LateCaptures {
    /// The watches to resume at activation: declined `uncaptured` attempts from the store
    /// that are still within `horizon` of their decline, each looked at once.
    pub(super) fn resume(uncaptured: Vec<Payment>, now: Timestamp, horizon: Duration) -> Self {
        let mut late = Self::default();
        for p in uncaptured {
            let Some(payment_key) = p.payment_key else { continue };
            if !expired(p.updated_at, now, horizon) {
                late.watch(p.order_id, payment_key, p.updated_at, Duration::ZERO);
            }
        }
        late
    }

    fn watch(&mut self, order_id: String, payment_key: String, declined_at: Timestamp, first: Duration) {
        let next = Instant::now() + first;
        self.watched.insert(order_id, Watched { payment_key, declined_at, next, interval: RECONCILE_RETRY });
    }

    /// Stops watching an order: its capture was found or reported, or it can never be
    /// captured.
    pub(super) fn forget(&mut self, order_id: &str) {
        self.watched.remove(order_id);
    }

    /// How many orders are watched.
    pub(super) fn len(&self) -> usize {
        self.watched.len()
    }

    /// Schedules the next look, unless one is scheduled as early already.
    fn arm(&mut self, myself: &ActorRef<Envelope>) {
        let Some(next) = self.watched.values().map(|w| w.next).min() else { return };
        if self.armed.is_some_and(|armed| armed <= next) {
            return;
        }
        self.armed = Some(next);
        let wait = next.saturating_duration_since(Instant::now());
        myself.send_after(wait, || Envelope::internal(EventMsg::LookForLateCaptures));
    }
}

/// Whether a decline at `declined_at` is past the watch at `now`.
fn expired(declined_at: Timestamp, now: Timestamp, horizon: Duration) -> bool {
    now.millis() - declined_at.millis() > horizon.as_millis() as i64
}

impl EventState {
    /// Starts watching an attempt just declined for want of a capture; the first look is
    /// [`RECONCILE_RETRY`] from now.
    pub(super) fn watch_for_late_capture(
        &mut self,
        myself: &ActorRef<Envelope>,
        order_id: String,
        payment_key: String,
    ) {
        tracing::info!(%order_id, "declined for want of a capture; watching for a late one");
        self.late_captures.watch(order_id, payment_key, self.clock.now(), RECONCILE_RETRY);
        self.late_captures.arm(myself);
    }

    /// The timer: drops the watches past their horizon, asks the provider about the orders
    /// due, and schedules the next look.
    pub(super) fn look_for_late_captures(&mut self, myself: &ActorRef<Envelope>) {
        self.late_captures.armed = None;
        let (now, instant) = (self.clock.now(), Instant::now());
        let horizon = self.config.late_capture_watch;
        self.late_captures.watched.retain(|order_id, w| {
            let keep = !expired(w.declined_at, now, horizon);
            if !keep {
                tracing::info!(%order_id, "no late capture within the watch; stopped looking");
            }
            keep
        });
        let handle = self.handle(myself);
        for (order_id, w) in self.late_captures.watched.iter_mut().filter(|(_, w)| w.next <= instant) {
            tokio::spawn(look_for_late_capture(handle.clone(), order_id.clone(), w.payment_key.clone()));
            w.next = instant + w.interval;
            w.interval = (w.interval * 2).min(MAX_INTERVAL);
        }
        self.late_captures.arm(myself);
    }

    /// Arms the first look after activation, for the watches resumed from the store.
    pub(super) fn arm_late_captures(&mut self, myself: &ActorRef<Envelope>) {
        self.late_captures.arm(myself);
    }
}
