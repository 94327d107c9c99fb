//! Looking for captures that land after their attempt was declined.
//!
//! An attempt declined [`NOT_CAPTURED`](tiketi_engine::NOT_CAPTURED) was not refused by the
//! provider: the provider had no capture when asked (past `payments.capture_window_secs`).
//! One may still land: a request stuck in flight, or a late answer that nobody was left to
//! report (the call timed out, the process died before recording it). So the actor asks the
//! provider about each such order for `payments.late_capture_watch_secs` after its decline,
//! 5 s after it and then twice as long each time, up to once a minute; a watch comes back
//! with the actor, from the `payments` rows, after a passivation or a crash. A capture found
//! goes through [`EventEngine::finish_confirm`](tiketi_engine::EventEngine::finish_confirm)
//! like a reported one: it sells nothing and becomes a durable debt, refunded.
//!
//! One look per order at a time, and at most [`LOOKUPS_AT_ONCE`] per actor: after a
//! provider outage an event may watch thousands of orders, and the provider that is
//! recovering should not get them all at once. A finding is acted on only while its order
//! is still watched, so a look that outlives its watch (the capture was reported meanwhile)
//! changes nothing.

use super::{Envelope, EventMsg, EventState, Reply};
use crate::handle::{LateCaptureFinding, RECONCILE_RETRY, look_for_late_captures};
use ractor::ActorRef;
use std::collections::HashMap;
use std::time::Duration;
use tiketi_engine::{Payment, Timestamp};
use tokio::time::Instant;

/// The longest wait between two looks at one order.
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Most provider lookups one actor has in flight.
const LOOKUPS_AT_ONCE: usize = 4;

/// The declined orders being watched, by order id.
#[derive(Default)]
pub(super) struct LateCaptures {
    watched: HashMap<String, Watched>,
    /// When the next [`EventMsg::LookForLateCaptures`] is due, and its generation: a timer
    /// of an older generation was superseded by an earlier one and does nothing.
    armed: Option<(Instant, u64)>,
    generation: u64,
}

#[derive(Debug, PartialEq)]
struct Watched {
    payment_key: String,
    /// When the attempt was declined (its last change, for a watch resumed from the store).
    declined_at: Timestamp,
    /// When to look next.
    next: Instant,
    /// The wait after that look.
    interval: Duration,
    /// Whether a look is in flight.
    looking: bool,
}

impl LateCaptures {
    /// The watches to resume at activation: the store's declined attempts that are still
    /// within `horizon` of their last change, minus those whose capture is already owed
    /// back (`owed`, by payment key); each is looked at `first` from `at`.
    pub(super) fn resume(
        uncaptured: Vec<Payment>,
        owed: impl Fn(&str) -> bool,
        now: Timestamp,
        horizon: Duration,
        at: Instant,
    ) -> Self {
        let mut late = Self::default();
        for p in uncaptured {
            let Some(payment_key) = p.payment_key else { continue };
            if !expired(p.updated_at, now, horizon) && !owed(&payment_key) {
                late.watch(p.order_id, payment_key, p.updated_at, at);
            }
        }
        late
    }

    /// Watches an order declined at `declined_at`; the first look is at `first`.
    fn watch(&mut self, order_id: String, payment_key: String, declined_at: Timestamp, first: Instant) {
        let watched = Watched { payment_key, declined_at, next: first, interval: RECONCILE_RETRY, looking: false };
        self.watched.insert(order_id, watched);
    }

    /// Stops watching an order: its capture was found or reported, or it can never be
    /// captured.
    pub(super) fn forget(&mut self, order_id: &str) -> bool {
        self.watched.remove(order_id).is_some()
    }

    /// How many orders are watched.
    pub(super) fn len(&self) -> usize {
        self.watched.len()
    }

    /// Drops the watches past `horizon` at `now`, and takes the orders due a look at
    /// `instant` (each with its payment key), at most `room` of them, marking them looked
    /// at and moving their next look on by their interval, which doubles up to
    /// [`MAX_INTERVAL`].
    fn due(&mut self, now: Timestamp, instant: Instant, horizon: Duration, room: usize) -> Vec<(String, String)> {
        self.watched.retain(|order_id, w| {
            let keep = !expired(w.declined_at, now, horizon);
            if !keep {
                tracing::info!(%order_id, "no late capture within the watch; stopped looking");
            }
            keep
        });
        let mut due: Vec<(&String, &mut Watched)> =
            self.watched.iter_mut().filter(|(_, w)| !w.looking && w.next <= instant).collect();
        // The longest overdue first, so a cap on looks at once starves no one.
        due.sort_by_key(|(_, w)| w.next);
        due.into_iter()
            .take(room)
            .map(|(order_id, w)| {
                w.looking = true;
                w.next = instant + w.interval;
                w.interval = (w.interval * 2).min(MAX_INTERVAL);
                (order_id.clone(), w.payment_key.clone())
            })
            .collect()
    }

    /// A look at `order_id` is over; `false` if the order is no longer watched.
    fn looked(&mut self, order_id: &str) -> bool {
        self.watched.get_mut(order_id).map(|w| w.looking = false).is_some()
    }

    /// The generation of the timer to schedule for the next look not in flight, unless
    /// one is scheduled as early already.
    fn arm(&mut self) -> Option<(Instant, u64)> {
        let next = self.watched.values().filter(|w| !w.looking).map(|w| w.next).min()?;
        if self.armed.is_some_and(|(armed, _)| armed <= next) {
            return None;
        }
        self.generation += 1;
        self.armed = Some((next, self.generation));
        self.armed
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
        self.late_captures.watch(order_id, payment_key, self.clock.now(), Instant::now() + RECONCILE_RETRY);
        self.arm_late_captures(myself);
    }

    /// The timer of generation `generation`: asks the provider about the orders due (within
    /// the cap on looks at once), and schedules the next look.
    pub(super) fn look_for_late_captures(&mut self, myself: &ActorRef<Envelope>, generation: u64) {
        if self.late_captures.armed.is_none_or(|(_, armed)| armed != generation) {
            return;
        }
        self.late_captures.armed = None;
        let in_flight = self.late_captures.watched.values().filter(|w| w.looking).count();
        let room = LOOKUPS_AT_ONCE.saturating_sub(in_flight);
        let due = self.late_captures.due(self.clock.now(), Instant::now(), self.config.late_capture_watch, room);
        if !due.is_empty() {
            tokio::spawn(look_for_late_captures(self.handle(myself), due));
        }
        self.arm_late_captures(myself);
    }

    /// What a look at the provider found for `order_id`: acted on only while the order is
    /// watched (a capture reported meanwhile ended the watch).
    pub(super) fn late_capture_finding(
        &mut self,
        myself: &ActorRef<Envelope>,
        order_id: String,
        finding: LateCaptureFinding,
    ) {
        if !self.late_captures.looked(&order_id) {
            return;
        }
        match finding {
            LateCaptureFinding::NotYet => {}
            LateCaptureFinding::Never => {
                self.late_captures.forget(&order_id);
            }
            LateCaptureFinding::Captured { payment_key, outcome } => {
                tracing::warn!(%order_id, "found a capture made after its attempt was declined; refunding it");
                // Nobody waits for this answer: a refusal (the capture sells nothing).
                let (reply, _) = tokio::sync::oneshot::channel();
                let reply: Reply<Payment> = reply.into();
                self.finish_confirm(myself, order_id, payment_key, outcome, reply);
            }
        }
        self.arm_late_captures(myself);
    }

    /// Schedules the next look, if one is due and none is scheduled as early.
    pub(super) fn arm_late_captures(&mut self, myself: &ActorRef<Envelope>) {
        if let Some((at, generation)) = self.late_captures.arm() {
            let wait = at.saturating_duration_since(Instant::now());
            myself.send_after(wait, move || Envelope::internal(EventMsg::LookForLateCaptures(generation)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LateCaptures, MAX_INTERVAL, RECONCILE_RETRY};
    use std::time::Duration;
    use tiketi_engine::{
        EventId, NOT_CAPTURED, Payment, PaymentFailure, PaymentStatus, ReservationId, Timestamp, UserId,
    };
    use tokio::time::Instant;

    const T0: Timestamp = Timestamp(1_767_225_600_000);
    const HORIZON: Duration = Duration::from_secs(900);

    fn declined(order_id: &str, key: Option<&str>, at: Timestamp) -> Payment {
        Payment {
            order_id: order_id.into(),
            attempt: 1,
            reservation: ReservationId(uuid::Uuid::nil()),
            event: EventId(uuid::Uuid::nil()),
            user: UserId(uuid::Uuid::nil()),
            amount: 100,
            status: PaymentStatus::Failed,
            payment_key: key.map(Into::into),
            method: None,
            failure: Some(PaymentFailure { code: NOT_CAPTURED.into(), message: "none".into() }),
            created_at: at,
            updated_at: at,
            approved_at: None,
            cancelled_at: None,
        }
    }

    fn after(t: Timestamp, d: Duration) -> Timestamp {
        Timestamp(t.millis() + d.as_millis() as i64)
    }

    #[test]
    fn resumes_recent_keyed_declines_not_owed_yet() {
        let now = after(T0, HORIZON);
        let start = Instant::now();
        let uncaptured = vec![
            declined("old", Some("k-old"), Timestamp(T0.millis() - 1)),
            declined("edge", Some("k-edge"), T0),
            declined("no-key", None, now),
            declined("owed", Some("k-owed"), now),
            declined("recent", Some("k-recent"), now),
        ];
        let late = LateCaptures::resume(uncaptured, |key| key == "k-owed", now, HORIZON, start);
        let mut orders: Vec<&str> = late.watched.keys().map(String::as_str).collect();
        orders.sort_unstable();
        assert_eq!(orders, ["edge", "recent"]);
        assert!(late.watched.values().all(|w| w.next == start && !w.looking));
    }

    #[test]
    fn each_order_is_looked_at_once_at_a_time_ever_less_often() {
        let mut late = LateCaptures::default();
        let start = Instant::now();
        late.watch("o".into(), "k".into(), T0, start + RECONCILE_RETRY);
        assert_eq!(late.due(T0, start, HORIZON, 4), vec![], "not due before its first look");
        let mut at = start + RECONCILE_RETRY;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            assert_eq!(late.due(T0, at, HORIZON, 4), vec![("o".to_owned(), "k".to_owned())]);
            assert_eq!(late.due(T0, at + MAX_INTERVAL, HORIZON, 4), vec![], "a look is in flight");
            assert!(late.looked("o"));
            let next = late.watched["o"].next;
            gaps.push((next - at).as_secs());
            at = next;
        }
        assert_eq!(gaps, [5, 10, 20, 40, 60, 60]);
    }

    #[test]
    fn a_watch_ends_past_its_horizon_and_its_late_finding_is_ignored() {
        let mut late = LateCaptures::default();
        let start = Instant::now();
        late.watch("o".into(), "k".into(), T0, start);
        assert_eq!(late.due(after(T0, HORIZON), start, HORIZON, 4).len(), 1, "due on the horizon itself");
        let past = after(T0, HORIZON + Duration::from_millis(1));
        assert_eq!(late.due(past, start + MAX_INTERVAL, HORIZON, 4), vec![]);
        assert_eq!(late.len(), 0);
        assert!(!late.looked("o"), "the look in flight finds its order no longer watched");
    }

    #[test]
    fn the_longest_overdue_go_first_within_the_room() {
        let mut late = LateCaptures::default();
        let start = Instant::now();
        for (i, order) in ["c", "a", "b"].iter().enumerate() {
            late.watch((*order).into(), format!("k-{order}"), T0, start + Duration::from_secs(i as u64));
        }
        let first: Vec<String> =
            late.due(T0, start + Duration::from_secs(5), HORIZON, 2).into_iter().map(|(o, _)| o).collect();
        assert_eq!(first, ["c", "a"]);
        let rest: Vec<String> =
            late.due(T0, start + Duration::from_secs(5), HORIZON, 2).into_iter().map(|(o, _)| o).collect();
        assert_eq!(rest, ["b"], "the others are in flight");
    }

    #[test]
    fn an_earlier_look_supersedes_the_timer_armed_for_a_later_one() {
        let mut late = LateCaptures::default();
        let start = Instant::now();
        late.watch("later".into(), "k1".into(), T0, start + Duration::from_secs(10));
        let (at, first) = late.arm().expect("armed");
        assert_eq!(at, start + Duration::from_secs(10));
        assert_eq!(late.arm(), None, "armed as early already");
        late.watch("sooner".into(), "k2".into(), T0, start + Duration::from_secs(1));
        let (at, second) = late.arm().expect("re-armed earlier");
        assert_eq!((at, second > first), (start + Duration::from_secs(1), true));
        assert_eq!(late.armed.map(|(_, generation)| generation), Some(second), "the first timer is stale");
    }
}
