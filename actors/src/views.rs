//! Read models the actor hands out: cheap to share, never borrowed from actor state.

use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tiketi_engine::{EventId, EventStatus, SeatCounts, SeatIndex, SeatMap, SeatStatus, TicketTypeState, Timestamp};
use tiketi_persistence::EventRecord;

/// An event with its live state.
#[derive(Debug, Clone)]
pub struct EventView {
    /// The event's record as the actor holds it.
    pub record: EventRecord,
    /// Live status.
    pub status: EventStatus,
    /// Seats by status.
    pub counts: SeatCounts,
    /// GA ticket types with live counters.
    pub ticket_types: Vec<TicketTypeState>,
    /// Sequence number of the last change.
    pub seq: u64,
}

impl EventView {
    /// The view of an event nothing has happened to yet, from its record alone: what its
    /// actor would answer on activation. For the node that created an event another node
    /// of the cluster owns (creating it again there would create a second event).
    pub fn fresh(record: EventRecord, now: Timestamp) -> Result<Self, crate::ActorError> {
        let seats = match &record.layout {
            Some(layout) => SeatMap::new(layout).map_err(|e| crate::ActorError::Unavailable(e.to_string()))?,
            None => crate::event_actor::empty_map(),
        };
        let persisted = tiketi_engine::Persisted { status: record.status, ..tiketi_engine::Persisted::default() };
        let (engine, _) = tiketi_engine::EventEngine::restore(
            record.id,
            record.rules(),
            seats,
            record.ticket_types.clone(),
            persisted,
            now,
        );
        Ok(Self {
            status: engine.status(),
            counts: engine.counts(),
            ticket_types: engine.ticket_types().to_vec(),
            seq: engine.seq(),
            record,
        })
    }
}

/// What never changes about a seat (layouts are fixed once an event exists), read from the
/// shared layout as a snapshot is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatEntry<'a> {
    /// Seat id, e.g. `VIP-A-12` (never stored: built from its row as it is read).
    pub id: String,
    /// Section name.
    pub section: &'a str,
    /// Row label.
    pub row: &'a str,
    /// Number in the row.
    pub number: u32,
    /// Price.
    pub price: i64,
}

/// The whole seat map at one sequence number. The actor only copies one status byte per
/// seat into it; the fixed part (sections, rows, prices: a few bytes per row, not per
/// seat) is a copy of the event's seat map taken once per actor and shared.
#[derive(Debug, Clone)]
pub struct SeatsSnapshot {
    /// The seq of the last change folded in.
    pub seq: u64,
    /// The event's seat map as it was when the actor started: only its fixed part (ids,
    /// sections, rows, prices) is read; its statuses are stale, the current ones are
    /// [`SeatsSnapshot::statuses`].
    pub layout: Arc<SeatMap>,
    /// Every seat's status, in the same order.
    pub statuses: Vec<SeatStatus>,
    /// A response body of this snapshot, rendered once by its first reader and shared by
    /// every later one at the same seq (the reader decides the format).
    pub body: OnceLock<Bytes>,
    /// A second rendering (e.g. a compact one), likewise.
    pub compact_body: OnceLock<Bytes>,
}

impl SeatsSnapshot {
    /// Each seat with its status, in layout (seat index) order.
    pub fn seats(&self) -> impl Iterator<Item = (SeatEntry<'_>, SeatStatus)> {
        self.statuses.iter().enumerate().map(|(i, &status)| {
            let seat = SeatIndex(i as u32);
            let info = self.layout.info(seat);
            let entry = SeatEntry {
                id: self.layout.seat_id(seat),
                section: info.section,
                row: info.row,
                number: info.number,
                price: info.price,
            };
            (entry, status)
        })
    }
}

/// What an operator sees of one live event actor.
#[derive(Debug, Clone)]
pub struct ActorInfo {
    /// The event.
    pub event: EventId,
    /// Its title.
    pub title: String,
    /// Live status.
    pub status: EventStatus,
    /// Seats by status.
    pub counts: SeatCounts,
    /// Held reservations awaiting payment.
    pub holds: usize,
    /// Buyers waiting in the admission queue.
    pub queue_waiting: u64,
    /// Buyers admitted and not done.
    pub queue_active: u64,
    /// Admissions since the actor started.
    pub queue_admitted: u64,
    /// Captures owed back and not refunded yet.
    pub owed_refunds: u64,
    /// Orders declined for want of a capture that the actor still asks the provider about.
    pub late_capture_watches: u64,
    /// Seq of the last change set decided.
    pub seq: u64,
    /// Seq the store has committed.
    pub committed_seq: u64,
    /// How long the oldest uncommitted change set has waited (zero when none waits).
    pub uncommitted_for: Duration,
    /// Since activation.
    pub uptime: Duration,
    /// Since the last buyer or admin message (timers, commits and inspection do not count).
    pub idle: Duration,
    /// Messages handled.
    pub messages: u64,
    /// Live-stream subscribers.
    pub subscribers: usize,
    /// Why the actor may not be passivated, if it may not.
    pub pinned: Option<&'static str>,
    /// The last refusals (overload, engine errors), oldest first.
    pub recent_errors: Vec<(Timestamp, String)>,
    /// The engine's next deadline (expiry, sale start or end, queue work).
    pub next_deadline: Option<Timestamp>,
    /// When the armed timer fires.
    pub timer_at: Option<Timestamp>,
    /// Change sets waiting for room in a full journal.
    pub overflow: usize,
    /// Durable replies waiting for their commit.
    pub parked: usize,
    /// Held reservations by time left: `(at most, count)`, the last bucket `later`.
    pub hold_expiries: Vec<(&'static str, u32)>,
}
