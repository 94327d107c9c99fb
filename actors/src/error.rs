//! Why a call to an event actor did not produce its answer.

use std::time::Duration;
use tiketi_engine::{EngineError, EventId, PaymentFailure};

/// The error every [`EventHandle`](crate::EventHandle) call may return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The engine refused the command; nothing changed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// No such event.
    #[error("event not found")]
    EventNotFound,
    /// A field of an admin edit is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// Which field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Too many requests are waiting for this event's actor; try again shortly.
    #[error("event is busy")]
    Busy {
        /// When to retry.
        retry_after: Duration,
    },
    /// The store is behind by more than the backlog bound; writes are refused until it
    /// catches up.
    #[error("persistence backlog is full")]
    Overloaded {
        /// When to retry.
        retry_after: Duration,
    },
    /// The actor did not answer within the call timeout (for a durable command: the store
    /// has not committed yet; the command may still take effect, so retry with the same
    /// idempotency key).
    #[error("event actor timed out")]
    Timeout,
    /// The actor stopped or could not be started.
    #[error("event actor unavailable: {0}")]
    Unavailable(String),
    /// Another node owns the event's shard, or it is moving between nodes; the request was
    /// not carried out here. The facade sends it to the owner.
    #[error("this node does not own the event")]
    NotOwner {
        /// The event.
        event: EventId,
    },
    /// The actor stopped (a hand-off, an eviction) with the request still in its mailbox,
    /// or before a durable answer's commit was reported. Retry: a command that did commit
    /// is answered from its idempotency record when it carries an Idempotency-Key.
    #[error("event actor stopped before answering")]
    Stopped {
        /// The event.
        event: EventId,
    },
    /// The actor may not be passivated now, for this reason (`on_sale`, `live_holds`,
    /// `queue`, `subscribers`, `unflushed`).
    #[error("the event's actor must stay in memory: {0}")]
    Pinned(&'static str),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyMismatch,
    /// The first request with this idempotency key is still being processed.
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyInFlight,
    /// The provider declined the payment; nothing was charged.
    #[error("payment declined: {} ({})", .0.message, .0.code)]
    PaymentDeclined(PaymentFailure),
    /// The provider's answer is not known yet; the payment stays in flight and is
    /// reconciled with the provider. Retry (with the same payment key) for the outcome.
    #[error("the payment provider's answer is pending")]
    PaymentPending {
        /// When to retry.
        retry_after: Duration,
    },
}
