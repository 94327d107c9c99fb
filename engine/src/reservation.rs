//! Reservations: the hold and the order are one resource.

use crate::{EventId, ReservationId, SeatIndex, TicketTypeId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Seats held, awaiting payment until `expires_at`.
    Held,
    /// Paid; its seats are sold.
    Confirmed,
    /// Its hold lapsed unpaid; its seats went back on sale.
    Expired,
    /// Cancelled by the buyer or an admin (refunded if it was confirmed).
    Cancelled,
}

impl ReservationStatus {
    /// The API spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => Self::Held,
            "confirmed" => Self::Confirmed,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the reservation still owns its seats.
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Held | Self::Confirmed)
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human-readable order number, `TKT-YYYYMMDD-NNNNN`: the UTC date of creation and the
/// event's running reservation count (five digits or more). Unique within an event; the
/// reservation id is the global identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationNumber {
    /// `YYYYMMDD`.
    pub date: u32,
    /// 1-based running count within the event.
    pub serial: u32,
}

impl fmt::Display for ReservationNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TKT-{:08}-{:05}", self.date, self.serial)
    }
}

/// What a reservation holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationItems {
    /// Specific seats.
    Seats(Vec<SeatIndex>),
    /// A quantity of one general-admission ticket type.
    General {
        /// The ticket type.
        ticket_type: TicketTypeId,
        /// How many tickets.
        quantity: u32,
    },
}

impl ReservationItems {
    /// Number of seats or tickets.
    pub fn quantity(&self) -> u32 {
        match self {
            Self::Seats(s) => s.len() as u32,
            Self::General { quantity, .. } => *quantity,
        }
    }
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id.
    pub id: ReservationId,
    /// Its order number.
    pub number: ReservationNumber,
    /// The event it belongs to.
    pub event: EventId,
    /// The buyer.
    pub user: UserId,
    /// What it holds.
    pub items: ReservationItems,
    /// Current status.
    pub status: ReservationStatus,
    /// Total price in minor units, computed by the engine from the seat map.
    pub amount: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When an unpaid hold lapses.
    pub expires_at: Timestamp,
    /// When it last changed status.
    pub updated_at: Timestamp,
}
