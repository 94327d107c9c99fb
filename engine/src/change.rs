//! The changes a command makes: the one record that feeds both the write-behind journal
//! and the live seat (and queue) stream.

use crate::{
    EventStatus, OwedRefund, Payment, QueueChange, Reservation, ReservationId, ReservationStatus, SeatIndex,
    SeatStatus, SettledByHand, TicketTypeId, Timestamp, UserId,
};
use serde::{Deserialize, Serialize};

/// One change. Counters are absolute values, not deltas, so applying a change twice is
/// harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A seat's new status.
    Seat {
        /// Which seat.
        seat: SeatIndex,
        /// Its new status.
        status: SeatStatus,
    },
    /// A general-admission ticket type's new counters.
    General {
        /// Which ticket type.
        ticket_type: TicketTypeId,
        /// Tickets held now.
        held: u32,
        /// Tickets sold now.
        sold: u32,
    },
    /// A new reservation (always `held`).
    ReservationCreated(Box<Reservation>),
    /// A reservation's new status.
    ReservationStatus {
        /// Which reservation.
        id: ReservationId,
        /// Whose it is (the live stream tells the holder when a hold lapses).
        user: UserId,
        /// Its new status.
        status: ReservationStatus,
    },
    /// The event's new lifecycle status.
    EventStatus(EventStatus),
    /// A change to the admission queue.
    Queue(QueueChange),
    /// A payment attempt's new state (the whole record).
    Payment(Box<Payment>),
    /// A capture that must be refunded (see [`OwedRefund`]).
    RefundOwed(Box<OwedRefund>),
    /// An owed capture was refunded: by the provider, or settled by hand by an admin.
    RefundPaid {
        /// The capture's payment key.
        payment_key: String,
        /// When the provider refunded it, or the admin settled it.
        at: Timestamp,
        /// Who settled it by hand and why, if the provider did not refund it.
        by_hand: Option<Box<SettledByHand>>,
    },
}

/// Everything one command changed, stamped with the event's next sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// Strictly increasing per event; the seat map's `version` after these changes.
    pub seq: u64,
    /// When the command was applied.
    pub at: Timestamp,
    /// The changes, in the order they were made.
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// The seat changes only, in order.
    pub fn seats(&self) -> impl Iterator<Item = (SeatIndex, SeatStatus)> + '_ {
        self.changes.iter().filter_map(|c| match c {
            Change::Seat { seat, status } => Some((*seat, *status)),
            _ => None,
        })
    }

    /// The event status this change set moved to, if any.
    pub fn event_status(&self) -> Option<EventStatus> {
        self.changes.iter().rev().find_map(|c| match c {
            Change::EventStatus(s) => Some(*s),
            _ => None,
        })
    }
}
