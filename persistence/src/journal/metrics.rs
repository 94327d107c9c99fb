//! The journal's own metrics: what the group-commit flusher sees (batch sizes, commit
//! latency, how long a change set waited to become durable, the backlog) and the business
//! facts that only become true once committed (reservations by outcome, seats sold).
//!
//! The journal registers them itself ([`Journal::register_metrics`](super::Journal)) into
//! whatever (sub-)registry the binary hands it; it never decides the prefix.

use super::JournalStats;
use crate::records::JournalEntry;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tiketi_engine::{Change, PaymentStatus, ReservationStatus, SeatStatus};

/// What became of a reservation, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `created`, `confirmed`, `expired` or `cancelled`.
    pub outcome: &'static str,
}

const OUTCOMES: [&str; 4] = ["created", "confirmed", "expired", "cancelled"];

/// Where a payment attempt went, as a label: the statuses a committed change can record.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PaymentLabels {
    /// A [`PaymentStatus`] spelling: `ready`, `in_progress`, `done`, `failed`, ...
    pub status: &'static str,
}

const PAYMENT_STATUSES: [PaymentStatus; 7] = [
    PaymentStatus::Ready,
    PaymentStatus::InProgress,
    PaymentStatus::Done,
    PaymentStatus::Failed,
    PaymentStatus::Cancelling,
    PaymentStatus::Cancelled,
    PaymentStatus::Aborted,
];

/// The flusher's histograms and the committed-fact counters. Cloning shares the values.
#[derive(Debug, Clone)]
pub struct JournalMetrics {
    batch_size: Histogram,
    commit_seconds: Histogram,
    lag_seconds: Histogram,
    reservations: Family<OutcomeLabels, Counter>,
    seats_sold: Counter,
    payments: Family<PaymentLabels, Counter>,
    revenue: Counter,
    refunded: Counter,
    captures_owed: Counter,
    owed_refunded: Counter,
    owed_settled_by_hand: Counter,
    stats: Arc<JournalStats>,
}

impl JournalMetrics {
    pub(super) fn new(stats: Arc<JournalStats>) -> Self {
        let reservations = Family::<OutcomeLabels, Counter>::default();
        // Every outcome is exported from the start, so a dashboard's rate() has a series.
        for outcome in OUTCOMES {
            let _ = reservations.get_or_create(&OutcomeLabels { outcome });
        }
        let payments = Family::<PaymentLabels, Counter>::default();
        for status in PAYMENT_STATUSES {
            let _ = payments.get_or_create(&PaymentLabels { status: status.as_str() });
        }
        Self {
            // 1 .. 4096 change sets (the default `max_batch`).
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 0.5 ms .. ~8 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            lag_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            reservations,
            seats_sold: Counter::default(),
            payments,
            revenue: Counter::default(),
            refunded: Counter::default(),
            captures_owed: Counter::default(),
            owed_refunded: Counter::default(),
            owed_settled_by_hand: Counter::default(),
            stats,
        }
    }

    /// Registers every journal metric into `registry` (the caller picks the prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "batch_size",
            "Change sets per committed write-behind batch (one store transaction)",
            self.batch_size.clone(),
        );
        registry.register(
            "commit_seconds",
            "Seconds one batch took to commit, Store::append retries included",
            self.commit_seconds.clone(),
        );
        registry.register(
            "lag_seconds",
            "Seconds from a change set being handed to the journal until its batch committed",
            self.lag_seconds.clone(),
        );
        registry.register(
            "backlog",
            "Change sets handed to the journal and not yet committed or rejected",
            StatsView { stats: self.stats.clone(), kind: MetricType::Gauge, read: backlog },
        );
        registry.register(
            "append_failures",
            "Failed Store::append attempts (each is retried with backoff)",
            StatsView {
                stats: self.stats.clone(),
                kind: MetricType::Counter,
                read: |s| s.failures.load(Ordering::Relaxed),
            },
        );
        registry.register(
            "rejected",
            "Change sets the store refused permanently and were dropped (logged at error level)",
            StatsView {
                stats: self.stats.clone(),
                kind: MetricType::Counter,
                read: |s| s.rejected.load(Ordering::Relaxed),
            },
        );
        registry.register(
            "fenced_writes",
            "Change sets refused by the fencing check: written under a shard epoch another node had \
             moved on from (this node was a zombie for that shard)",
            StatsView {
                stats: self.stats.clone(),
                kind: MetricType::Counter,
                read: |s| s.fenced.load(Ordering::Relaxed),
            },
        );
        registry.register(
            "reservations",
            "Reservations by outcome, counted when the change set is durably committed (durable facts, \
             not attempts; trails the actors by at most one group commit)",
            self.reservations.clone(),
        );
        registry.register(
            "seats_sold",
            "Seats that became sold, counted when the change set is durably committed (durable facts; \
             general-admission tickets are not seats)",
            self.seats_sold.clone(),
        );
        registry.register(
            "payments",
            "Payment attempts reaching each status, counted when durably committed (done: captured; \
             failed: declined; cancelled: refunded; aborted: the hold ended unpaid)",
            self.payments.clone(),
        );
        registry.register(
            "revenue",
            "Amount captured, in minor units, counted when the capture is durably committed",
            self.revenue.clone(),
        );
        registry.register(
            "refunded",
            "Amount refunded, in minor units, counted when the refund is durably committed",
            self.refunded.clone(),
        );
        registry.register(
            "captures_owed",
            "Captures that landed for an order already settled otherwise (declined by a reconciliation, or \
             its hold ended), owed back to the buyer; counted when durably committed. Minus \
             owed_refunded and owed_settled_by_hand: those still to refund",
            self.captures_owed.clone(),
        );
        registry.register(
            "owed_refunded",
            "Owed captures the provider has refunded, counted when durably committed",
            self.owed_refunded.clone(),
        );
        registry.register(
            "owed_settled_by_hand",
            "Owed captures an admin settled by hand (the provider would not refund them), counted when \
             durably committed",
            self.owed_settled_by_hand.clone(),
        );
    }

    /// Records one committed batch: its size, how long the commit took, and for every
    /// committed entry its lag and the facts it made durable.
    pub(super) fn batch_committed<'a>(
        &self,
        size: usize,
        took: Duration,
        committed: impl Iterator<Item = (Duration, &'a JournalEntry)>,
    ) {
        self.batch_size.observe(size as f64);
        self.commit_seconds.observe(took.as_secs_f64());
        for (lag, entry) in committed {
            self.lag_seconds.observe(lag.as_secs_f64());
            self.count_facts(entry);
        }
    }

    fn count_facts(&self, entry: &JournalEntry) {
        for change in &entry.changes.changes {
            let outcome = match change {
                Change::ReservationCreated(_) => "created",
                Change::ReservationStatus { status: ReservationStatus::Confirmed, .. } => "confirmed",
                Change::ReservationStatus { status: ReservationStatus::Expired, .. } => "expired",
                Change::ReservationStatus { status: ReservationStatus::Cancelled, .. } => "cancelled",
                Change::Seat { status: SeatStatus::Sold, .. } => {
                    self.seats_sold.inc();
                    continue;
                }
                Change::Payment(p) => {
                    self.payments.get_or_create(&PaymentLabels { status: p.status.as_str() }).inc();
                    let amount = u64::try_from(p.amount).unwrap_or(0);
                    let total = match p.status {
                        PaymentStatus::Done => &self.revenue,
                        PaymentStatus::Cancelled => &self.refunded,
                        _ => continue,
                    };
                    total.inc_by(amount);
                    continue;
                }
                Change::RefundOwed(_) => {
                    self.captures_owed.inc();
                    continue;
                }
                Change::RefundPaid { by_hand: None, .. } => {
                    self.owed_refunded.inc();
                    continue;
                }
                Change::RefundPaid { by_hand: Some(_), .. } => {
                    self.owed_settled_by_hand.inc();
                    continue;
                }
                _ => continue,
            };
            self.reservations.get_or_create(&OutcomeLabels { outcome }).inc();
        }
    }
}

fn backlog(stats: &JournalStats) -> u64 {
    // `sent` is bumped before the entry is queued, so this never underflows in practice;
    // saturate anyway rather than report 2^64 for a racing read.
    let done = stats.entries.load(Ordering::Acquire) + stats.rejected.load(Ordering::Acquire);
    stats.sent.load(Ordering::Acquire).saturating_sub(done)
}

/// A counter or gauge read from [`JournalStats`] at scrape time, so the flusher's hot
/// path keeps only its atomics.
#[derive(Debug)]
struct StatsView {
    stats: Arc<JournalStats>,
    kind: MetricType,
    read: fn(&JournalStats) -> u64,
}

impl EncodeMetric for StatsView {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let value = (self.read)(&self.stats);
        match self.kind {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, u64>(&value, None),
            _ => encoder.encode_gauge(&value),
        }
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}
