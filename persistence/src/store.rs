//! The store interface: everything Tiketi keeps, behind one async trait so the embedded
//! store and PostgreSQL are interchangeable.

use crate::records::{
    AuditRecord, EventFilter, EventRecord, EventSnapshot, IdempotencyRecord, JournalEntry, LayoutRecord, NewUser, Page,
    RefreshTokenRecord, ReservationFilter, UserRecord,
};
use async_trait::async_trait;
use tiketi_engine::{EventId, Payment, Reservation, ReservationId, Timestamp, UserId};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write (e.g. an e-mail already registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The thing to change does not exist.
    #[error("not found")]
    NotFound,
    /// The store cannot be reached or failed; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A journal batch carried entries written under these fences (shard, epoch), whose
    /// shards another node has taken since. Nothing of the batch was written; its other
    /// entries may be retried.
    #[error("fenced: {0:?} are stale, another node owns those shards now")]
    Fenced(Vec<crate::records::Fence>),
}

/// Everything Tiketi keeps. Event state is written only through [`Store::append`], by the
/// write-behind journal; everything else is written directly by the facade.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers a user; `Conflict` if the e-mail is taken.
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError>;
    /// A user by e-mail (compared case-insensitively).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by id.
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Which of `ids` are users (in no particular order): one query for many, for checking
    /// the users behind a burst of new tokens.
    async fn existing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError>;

    /// Stores a refresh token (by hash).
    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), StoreError>;
    /// Removes and returns a refresh token: each one can be used once.
    async fn take_refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// Saves a layout template.
    async fn create_layout(&self, layout: LayoutRecord) -> Result<(), StoreError>;
    /// All layout templates, oldest first.
    async fn layouts(&self) -> Result<Vec<LayoutRecord>, StoreError>;
    /// One layout template.
    async fn layout(&self, id: uuid::Uuid) -> Result<Option<LayoutRecord>, StoreError>;

    /// Creates an event (its seats all available).
    async fn create_event(&self, event: EventRecord) -> Result<(), StoreError>;
    /// One event's record.
    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError>;
    /// Events matching a filter, newest event date last.
    async fn list_events(&self, filter: &EventFilter) -> Result<Page<EventRecord>, StoreError>;
    /// Deletes an event that never had a reservation; `Conflict` otherwise.
    async fn delete_event(&self, id: EventId) -> Result<(), StoreError>;

    /// Everything an event actor needs to rebuild its state.
    async fn load_event(&self, id: EventId) -> Result<Option<EventSnapshot>, StoreError>;
    /// Applies journal entries atomically, in order: all of them or none.
    async fn append(&self, entries: &[JournalEntry]) -> Result<(), StoreError>;

    /// One reservation, whatever its status.
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError>;
    /// A user's reservations, newest first.
    async fn reservations_of(&self, user: UserId) -> Result<Vec<Reservation>, StoreError>;
    /// Reservations matching a filter, newest first (the admin's list).
    async fn find_reservations(&self, filter: &ReservationFilter) -> Result<Page<Reservation>, StoreError>;
    /// A stored idempotency record.
    async fn idempotency(&self, user: UserId, key: &str) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// The request fingerprints stored for those of `keys` (user, key) that have a record,
    /// in no particular order: one query for many.
    async fn idempotency_fingerprints(
        &self,
        keys: &[(UserId, String)],
    ) -> Result<Vec<((UserId, String), String)>, StoreError>;

    /// One payment attempt by its order id.
    async fn payment(&self, order_id: &str) -> Result<Option<Payment>, StoreError>;
    /// The payment attempts made with a provider's payment key, latest first (a key should
    /// be used once, but nothing stops a buyer from sending someone else's).
    async fn payments_by_key(&self, payment_key: &str) -> Result<Vec<Payment>, StoreError>;
    /// A user's payment attempts, newest first.
    async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, StoreError>;
    /// Events with a payment whose capture or refund was in flight when last written, a
    /// capture still owed back ([`OwedRefund`](tiketi_engine::OwedRefund)), or an attempt
    /// declined for want of a capture ([`NOT_CAPTURED`](tiketi_engine::NOT_CAPTURED)) last
    /// written at or after `declined_since`: each must be reconciled with the provider.
    async fn unsettled_payment_events(&self, declined_since: Timestamp) -> Result<Vec<EventId>, StoreError>;
    /// The admin status changes of a reservation, oldest first.
    async fn audit_of(&self, reservation: ReservationId) -> Result<Vec<AuditRecord>, StoreError>;

    /// Sales across every event (the definitions are in `reports.rs`): event statuses as
    /// of `now`, "today" the UTC day of `now`.
    async fn overview_report(&self, now: tiketi_engine::Timestamp) -> Result<crate::OverviewReport, StoreError>;
    /// One event's sales; `None` for an unknown event.
    async fn event_report(&self, event: EventId) -> Result<Option<crate::EventReport>, StoreError>;
    /// One entry per UTC day of `days`, oldest first, zeros included: one event's activity,
    /// or every event's with `None`.
    async fn daily_report(
        &self,
        event: Option<EventId>,
        days: crate::DayRange,
    ) -> Result<Vec<crate::DayReport>, StoreError>;
}
