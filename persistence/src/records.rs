//! The records the store keeps, as plain data.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tiketi_engine::{
    ChangeSet, EngineError, EventId, EventRules, EventStatus, LayoutSpec, OwedRefund, Payment, QueueMember,
    QueueSettings, Reservation, ReservationId, ReservationStatus, SeatIndex, TicketTypeSpec, Timestamp, UserId,
};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A buyer.
    User,
    /// An operator with every admin route.
    Admin,
}

impl Role {
    /// The API spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

/// A user to register; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Normalised (trimmed, lower-case) e-mail.
    pub email: String,
    /// PHC-format password hash.
    pub password_hash: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Registration time.
    pub created_at: Timestamp,
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Id.
    pub id: UserId,
    /// Normalised e-mail.
    pub email: String,
    /// PHC-format password hash.
    pub password_hash: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Registration time.
    pub created_at: Timestamp,
}

/// A refresh token, kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// Whose it is.
    pub user: UserId,
    /// When it stops working.
    pub expires_at: Timestamp,
}

/// A reusable seat layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    /// Id.
    pub id: uuid::Uuid,
    /// Name, e.g. `Olympic Hall`.
    pub name: String,
    /// The layout.
    pub spec: LayoutSpec,
    /// Number of seats.
    pub seat_count: u32,
    /// Creation time.
    pub created_at: Timestamp,
}

/// An event as stored: its description, its rules, and its own copy of the seat layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Id.
    pub id: EventId,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Venue.
    pub venue: String,
    /// Performing artist.
    pub artist: String,
    /// When the event takes place.
    pub event_date: Timestamp,
    /// Sale start.
    pub sale_start: Timestamp,
    /// Sale end.
    pub sale_end: Timestamp,
    /// The seated layout, if any (copied from a template at creation).
    pub layout: Option<LayoutSpec>,
    /// The template it was copied from.
    pub layout_id: Option<uuid::Uuid>,
    /// General-admission ticket types.
    pub ticket_types: Vec<TicketTypeSpec>,
    /// Seats + tickets one buyer may hold and own; 0 is no limit.
    pub per_user_limit: u32,
    /// Hold time-to-live.
    pub hold_ttl: Duration,
    /// Largest reservation.
    pub max_per_reservation: u32,
    /// Last status the event's actor persisted (time-driven moves are derived on read).
    pub status: EventStatus,
    /// Admission-queue settings.
    pub queue: QueueSettings,
    /// The secret the pre-queue's order is drawn from; its SHA-256 is published before
    /// opening, the seed itself after. Fixed at creation.
    pub queue_seed: [u8; 32],
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl EventRecord {
    /// The engine rules this record describes.
    pub fn rules(&self) -> EventRules {
        EventRules {
            sale_start: self.sale_start,
            sale_end: self.sale_end,
            per_user_limit: self.per_user_limit,
            hold_ttl: self.hold_ttl,
            max_per_reservation: self.max_per_reservation,
            cancelled: self.status == EventStatus::Cancelled,
            queue: self.queue,
            queue_seed: self.queue_seed,
        }
    }

    /// The status to show for an event whose actor may not be running: the persisted
    /// status, moved along by the clock.
    pub fn status_at(&self, now: Timestamp) -> EventStatus {
        match self.status {
            EventStatus::Cancelled => EventStatus::Cancelled,
            _ if now >= self.sale_end => EventStatus::Ended,
            _ if now < self.sale_start => EventStatus::Upcoming,
            EventStatus::SoldOut => EventStatus::SoldOut,
            _ => EventStatus::OnSale,
        }
    }
}

/// What `GET /events` filters on.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events in this status (as of `now`).
    pub status: Option<EventStatus>,
    /// Case-insensitive substring of title, artist or venue.
    pub query: Option<String>,
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// The instant statuses are evaluated at.
    pub now: Timestamp,
}

/// What `GET /admin/reservations` filters on; newest first.
#[derive(Debug, Clone, Default)]
pub struct ReservationFilter {
    /// Only this event's.
    pub event: Option<EventId>,
    /// Only in this status.
    pub status: Option<ReservationStatus>,
    /// Only this buyer's.
    pub user: Option<UserId>,
    /// 1-based page.
    pub page: u32,
    /// Page size.
    pub limit: u32,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Items matching in all.
    pub total: u64,
}

/// What an event actor is rebuilt from.
#[derive(Debug, Clone)]
pub struct EventSnapshot {
    /// The event.
    pub event: EventRecord,
    /// Seats blocked by an admin.
    pub blocked: Vec<SeatIndex>,
    /// Held and confirmed reservations.
    pub live: Vec<Reservation>,
    /// Sequence number of the last persisted change set.
    pub seq: u64,
    /// Highest reservation serial.
    pub serial: u32,
    /// Idempotency records still within retention.
    pub idempotency: Vec<IdempotencyRecord>,
    /// Who is in the admission queue.
    pub queue: Vec<QueueMember>,
    /// Whether the queue's pre-queue has been drawn.
    pub queue_opened: bool,
    /// The latest payment attempt of each live reservation that has one.
    pub payments: Vec<Payment>,
    /// Captures not refunded yet.
    pub owed_refunds: Vec<OwedRefund>,
    /// Every attempt of the event declined because the provider showed no capture
    /// ([`NOT_CAPTURED`](tiketi_engine::NOT_CAPTURED)), whatever became of its reservation
    /// since, and whose capture was never found owed back (owed, refunded or settled by hand:
    /// looking again would find it and owe it twice): a capture may still land for one of
    /// them, and the actor looks for the recent ones.
    pub uncaptured: Vec<Payment>,
}

/// What an idempotent command answered the first time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredOutcome {
    /// The reservation as the command left it.
    Reservation(Box<Reservation>),
    /// The payment as the command left it.
    Payment(Box<Payment>),
    /// The engine's refusal.
    Refused(EngineError),
}

/// An `Idempotency-Key` with the request it was first used for and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Keys are scoped per user.
    pub user: UserId,
    /// The key.
    pub key: String,
    /// Hex SHA-256 of method, path and body: a reuse with another request is refused.
    pub fingerprint: String,
    /// The event whose actor decided it.
    pub event: EventId,
    /// Sequence number of the change set it rode with (0 for a refusal).
    pub seq: u64,
    /// The answer.
    pub outcome: StoredOutcome,
    /// First use.
    pub created_at: Timestamp,
}

/// The fencing token an entry was decided under in a cluster: the event's shard and the
/// epoch at which the writing node took it. The store refuses the entry unless the shard's
/// epoch is still this one, so a node that lost the shard cannot write to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The virtual shard of the event.
    pub shard: u16,
    /// The epoch the writer holds it at.
    pub epoch: u64,
}

/// One unit of the write-behind journal: an event's change set and what rides with it.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// The event.
    pub event: EventId,
    /// The shard epoch the writer holds (a cluster node); `None` on a single node.
    pub fence: Option<Fence>,
    /// The engine's changes (may be empty when only records ride).
    pub changes: ChangeSet,
    /// Idempotency records decided with these changes.
    pub idempotency: Vec<IdempotencyRecord>,
    /// A new version of the event record (admin edits, cancellation).
    pub event_record: Option<Box<EventRecord>>,
    /// Admins' status changes decided with these changes.
    pub audit: Vec<AuditRecord>,
}

/// An admin's change of a reservation's status, kept for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The reservation.
    pub reservation: ReservationId,
    /// Its event.
    pub event: EventId,
    /// The admin who changed it.
    pub admin: UserId,
    /// Its status before.
    pub from: ReservationStatus,
    /// Its status after.
    pub to: ReservationStatus,
    /// Why, in the admin's words.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}
