//! The business errors the engine decides. None of them is a fault: they travel back to the
//! caller inside the reply and change nothing.

use crate::{EventStatus, ReservationStatus};

/// Why the engine refused a command. A refused command has changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EngineError {
    /// Seat ids that do not exist in this event's seat map.
    #[error("unknown seat ids: {0:?}")]
    UnknownSeats(Vec<String>),
    /// Seats that exist but are not available (held, sold or blocked).
    #[error("seats unavailable: {0:?}")]
    SeatsUnavailable(Vec<String>),
    /// The same seat was named twice in one request.
    #[error("seat named twice: {0}")]
    DuplicateSeat(String),
    /// Not enough general-admission tickets of a type left.
    #[error("only {available} tickets left")]
    InsufficientInventory {
        /// How many are still available.
        available: u32,
    },
    /// No run of adjacent seats (or not enough seats) matched a best-available request.
    #[error("no {quantity} seats available together")]
    NoSeatsTogether {
        /// How many seats were asked for.
        quantity: u32,
    },
    /// The ticket type does not belong to this event.
    #[error("unknown ticket type")]
    UnknownTicketType,
    /// The section named in a best-available request does not exist.
    #[error("unknown section {0}")]
    UnknownSection(String),
    /// The hold would take the buyer past the per-user limit of seats held + sold.
    #[error("limit of {limit} seats per buyer exceeded ({current} held or bought, {requested} requested)")]
    LimitExceeded {
        /// The event's per-user limit.
        limit: u32,
        /// Seats the buyer already holds or bought.
        current: u32,
        /// Seats requested now.
        requested: u32,
    },
    /// Holds are taken only while the event is on sale.
    #[error("event is {0}, not on sale")]
    NotOnSale(EventStatus),
    /// No live reservation with this id in this event.
    #[error("reservation not found")]
    ReservationNotFound,
    /// The reservation is not in a state that allows the command.
    #[error("reservation is {from}, cannot become {to}")]
    InvalidTransition {
        /// Its current status.
        from: ReservationStatus,
        /// The status asked for.
        to: ReservationStatus,
    },
    /// A request for more seats than one reservation may carry, or for zero.
    #[error("quantity must be between 1 and {max}")]
    InvalidQuantity {
        /// The largest quantity allowed.
        max: u32,
    },
    /// The event has no admission queue enabled.
    #[error("this event has no admission queue")]
    QueueDisabled,
    /// The queue gates this event and the buyer is not admitted (or showed no admission).
    #[error("admission required: join the queue and wait to be admitted")]
    AdmissionRequired,
    /// The hold lapsed before it was paid for.
    #[error("the hold has expired")]
    HoldExpired,
    /// No payment with this order id for a live reservation here.
    #[error("payment not found")]
    PaymentNotFound,
    /// The amount to confirm differs from the order's.
    #[error("amount must be {expected}, the order's amount")]
    AmountMismatch {
        /// The order's amount.
        expected: i64,
    },
    /// The provider is already capturing or refunding this reservation's payment.
    #[error("a payment for this reservation is in progress")]
    PaymentInProgress,
    /// The reservation is already paid with another payment key.
    #[error("this order is already paid")]
    AlreadyPaid,
    /// There is no captured payment to refund.
    #[error("this reservation has no captured payment")]
    NotPaid,
    /// The provider declined this order; paying again takes a new one (prepare again), so
    /// each order id carries exactly one payment key.
    #[error("this order was declined: prepare a new payment to try again")]
    OrderDeclined,
    /// A paid reservation is cancelled only by refunding its payment.
    #[error("this reservation is paid: cancel it by refunding the payment")]
    RefundRequired,
}
