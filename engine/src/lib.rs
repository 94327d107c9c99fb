//! Tiketi's pure domain: seat maps, general-admission inventory, holds and reservations,
//! the admission queue, and the event lifecycle.
//!
//! Everything here is synchronous and deterministic. Time, ids and random seeds are passed
//! in; nothing reads a clock, touches the network or spawns a task. The crate must never
//! depend on tokio, axum, a database driver or Redis (`.ci/run` checks this with
//! `cargo tree`).
//!
//! The one entry point is [`EventEngine`]: commands go in, and every command that changes
//! anything returns a [`ChangeSet`] — the single source for the write-behind journal and
//! the live seat stream.
#![forbid(unsafe_code)]

mod change;
mod engine;
mod error;
mod ids;
mod layout;
mod payment;
mod queue;
mod reservation;
mod seatmap;
mod status;
mod time;

pub use change::{Change, ChangeSet};
pub use engine::{
    CaptureOutcome, ConfirmFinish, ConfirmStart, EventEngine, EventRules, HoldRequest, Persisted, RefundOutcome,
    RefundStart, Selection, TicketTypeState, order_id, order_reservation,
};
pub use error::EngineError;
pub use ids::{EventId, ReservationId, TicketTypeId, UserId};
pub use layout::{LayoutError, LayoutSpec, PriceTier, RowSpec, SectionSpec, TicketTypeSpec};
pub use payment::{CAPTURED_TOO_LATE, NOT_CAPTURED, OwedRefund, Payment, PaymentFailure, PaymentStatus, SettledByHand};
pub use queue::{ADMISSION_INTERVAL, LeaveReason, QueueChange, QueueMember, QueueSettings, QueueStanding, QueueView};
pub use reservation::{Reservation, ReservationItems, ReservationNumber, ReservationStatus};
pub use seatmap::{SeatCounts, SeatIndex, SeatInfo, SeatMap};
pub use status::{EventStatus, SeatStatus};
pub use time::Timestamp;
