//! Read models the actor hands out: cheap to share, never borrowed from actor state.

use std::sync::Arc;
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

/// What never changes about a seat (layouts are fixed once an event exists).
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
}

/// The whole seat map at one sequence number. The actor only copies one status byte per
/// seat into it; the fixed part of each seat is built once per actor and shared.
#[derive(Debug, Clone)]
pub struct SeatsSnapshot {
    /// The seq of the last change folded in.
    pub seq: u64,
    /// Every seat's fixed part, in layout (seat index) order.
    pub layout: Arc<[SeatEntry]>,
    /// Every seat's status, in the same order.
    pub statuses: Vec<SeatStatus>,
}

impl SeatsSnapshot {
    /// Each seat with its status, in layout order.
    pub fn seats(&self) -> impl Iterator<Item = (&SeatEntry, SeatStatus)> {
        self.layout.iter().zip(self.statuses.iter().copied())
    }
}
