//! Read models the actor hands out: cheap to share, never borrowed from actor state.

use tiketi_engine::{EventStatus, SeatCounts, SeatStatus, TicketTypeState};
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

/// One seat in a seat-map snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatEntry {
    /// Seat id, e.g. `VIP-A-12`.
    pub id: String,
    /// Section name.
    pub section: String,
    /// Row label.
    pub row: String,
    /// Number in the row.
    pub number: u32,
    /// Price.
    pub price: i64,
    /// Status.
    pub status: SeatStatus,
}

/// The whole seat map at one sequence number. Built once per seq and shared.
#[derive(Debug, Clone)]
pub struct SeatsSnapshot {
    /// The seq of the last change folded in.
    pub seq: u64,
    /// Every seat, in layout order.
    pub seats: Vec<SeatEntry>,
}
