//! Gauges of the live event actors on this node, read from the actors at scrape time
//! (`tiketi_live_actors`, `tiketi_event_*`). Nothing is kept between scrapes: each scrape
//! clears the per-event families and refills them, so a passivated or stopped event's
//! series disappear with it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tiketi_actors::{ActorInfo, EventHandle};
use tokio::task::JoinSet;

/// How long a scrape waits for one actor's answer; an actor that does not answer in time
/// is skipped (and counted in `tiketi_live_actors_skipped`), so a stuck actor cannot stall
/// the scrape. Actors are asked concurrently, so this bounds the whole gather.
const ASK_TIMEOUT: Duration = Duration::from_millis(250);

/// One event's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The event id.
    pub event_id: String,
}

/// One event's seats in one status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeatLabels {
    /// The event id.
    pub event_id: String,
    /// `available`, `held`, `sold` or `blocked`.
    pub status: &'static str,
}

/// The live-actor gauges. Cloning shares the values.
#[derive(Clone, Default)]
pub struct LiveMetrics {
    actors: Gauge,
    skipped: Gauge,
    seats: Family<SeatLabels, Gauge>,
    queue_waiting: Family<EventLabels, Gauge>,
    queue_active: Family<EventLabels, Gauge>,
    in_flight: Family<EventLabels, Gauge>,
    owed_refunds: Family<EventLabels, Gauge>,
    late_capture_watches: Family<EventLabels, Gauge>,
}

/// What one actor answered.
struct Sample {
    event_id: String,
    in_flight: usize,
    state: Option<ActorInfo>,
}

impl LiveMetrics {
    /// Registers `live_actors` and `live_actors_skipped` into `root` (the node's registry),
    /// and the per-event gauges into its `event` sub-registry.
    pub fn register(&self, root: &mut Registry) {
        root.register("live_actors", "Event actors live on this node at scrape time", self.actors.clone());
        root.register(
            "live_actors_skipped",
            "Live event actors that did not answer the last scrape in time (their seat and queue series are missing)",
            self.skipped.clone(),
        );
        let event = root.sub_registry_with_prefix("event");
        event.register("seats", "Seats of a live event by status", self.seats.clone());
        event.register("queue_waiting", "Buyers waiting in a live event's admission queue", self.queue_waiting.clone());
        event.register(
            "queue_active",
            "Buyers admitted from a live event's queue and not yet done",
            self.queue_active.clone(),
        );
        event.register(
            "in_flight",
            "Requests sent to a live event's actor and not yet handled (its mailbox depth as counted by the handle)",
            self.in_flight.clone(),
        );
        event.register(
            "owed_refunds",
            "Captures a live event owes back (they landed too late to sell anything) and the provider has not \
             refunded yet; an event that owes one is activated at start-up and never passivated",
            self.owed_refunds.clone(),
        );
        event.register(
            "late_capture_watches",
            "Orders of a live event declined because the provider showed no capture, that it still asks the \
             provider about for payments.late_capture_watch_secs (a capture found is owed back and refunded)",
            self.late_capture_watches.clone(),
        );
    }

    /// Asks every live actor for its counts and replaces the gauges with the answers.
    pub async fn refresh(&self, live: Vec<EventHandle>) {
        let total = live.len();
        let mut asks = JoinSet::new();
        for handle in live {
            asks.spawn(ask(handle));
        }
        let mut samples = Vec::with_capacity(total);
        while let Some(answer) = asks.join_next().await {
            if let Ok(sample) = answer {
                samples.push(sample);
            }
        }
        self.seats.clear();
        self.queue_waiting.clear();
        self.queue_active.clear();
        self.in_flight.clear();
        self.owed_refunds.clear();
        self.late_capture_watches.clear();
        self.actors.set(total as i64);
        let mut skipped = 0;
        for Sample { event_id, in_flight, state } in samples {
            let event = EventLabels { event_id };
            self.in_flight.get_or_create(&event).set(in_flight as i64);
            let Some(info) = state else {
                skipped += 1;
                continue;
            };
            let counts = info.counts;
            for (status, n) in [
                ("available", counts.available),
                ("held", counts.held),
                ("sold", counts.sold),
                ("blocked", counts.blocked),
            ] {
                let labels = SeatLabels { event_id: event.event_id.clone(), status };
                self.seats.get_or_create(&labels).set(i64::from(n));
            }
            self.queue_waiting.get_or_create(&event).set(gauge(info.queue_waiting));
            self.queue_active.get_or_create(&event).set(gauge(info.queue_active));
            self.owed_refunds.get_or_create(&event).set(gauge(info.owed_refunds));
            self.late_capture_watches.get_or_create(&event).set(gauge(info.late_capture_watches));
        }
        self.skipped.set(skipped);
    }
}

async fn ask(handle: EventHandle) -> Sample {
    // Read before asking, so the scrape's own calls are not counted.
    let in_flight = handle.in_flight();
    // Inspection does not count as use, so scrapes never keep an idle actor from passivating.
    let state = tokio::time::timeout(ASK_TIMEOUT, handle.inspect()).await.ok().and_then(Result::ok);
    Sample { event_id: handle.event().to_string(), in_flight, state }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
