//! Seat and event statuses as the API spells them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The status of one seat. A buyer never learns who holds a seat, only that it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum SeatStatus {
    /// On sale.
    Available = 0,
    /// Held by a reservation awaiting payment.
    Held = 1,
    /// Paid for.
    Sold = 2,
    /// Taken off sale by an admin.
    Blocked = 3,
}

impl SeatStatus {
    /// The API spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Held => "held",
            Self::Sold => "sold",
            Self::Blocked => "blocked",
        }
    }
}

/// The lifecycle of an event: `upcoming -> on_sale <-> sold_out -> ended`, and
/// `cancelled` from anywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Before sale start.
    #[default]
    Upcoming,
    /// Between sale start and sale end with inventory left.
    OnSale,
    /// Between sale start and sale end with nothing available (holds may still lapse).
    SoldOut,
    /// After sale end.
    Ended,
    /// Cancelled by an admin.
    Cancelled,
}

impl EventStatus {
    /// The API spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upcoming => "upcoming",
            Self::OnSale => "on_sale",
            Self::SoldOut => "sold_out",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the API spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "upcoming" => Self::Upcoming,
            "on_sale" => Self::OnSale,
            "sold_out" => Self::SoldOut,
            "ended" => Self::Ended,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SeatStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
