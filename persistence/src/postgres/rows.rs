//! Row <-> record conversions for the PostgreSQL store.

use crate::records::{AuditRecord, EventRecord, IdempotencyRecord, LayoutRecord, Role, StoredOutcome, UserRecord};
use crate::store::StoreError;
use std::time::Duration;
use tiketi_engine::{
    EventId, EventStatus, Payment, PaymentFailure, PaymentStatus, QueueSettings, Reservation, ReservationId,
    ReservationItems, ReservationNumber, ReservationStatus, SeatIndex, TicketTypeId, TicketTypeSpec, Timestamp, UserId,
};
use time::OffsetDateTime;
use tokio_postgres::Row;

pub(crate) const EVENT_SELECT: &str = "SELECT id, title, description, venue, artist, event_date, sale_start, sale_end,
    layout, layout_id, per_user_limit, hold_ttl_ms, max_per_reservation, status, seq, serial, created_at, updated_at,
    queue_enabled, queue_rate, queue_max_active, queue_admission_ttl_ms, queue_heartbeat_ttl_ms, queue_seed, queue_opened
    FROM events WHERE id = $1";

pub(crate) const TICKET_TYPES_SELECT: &str =
    "SELECT id, event_id, name, price, capacity FROM ticket_types WHERE event_id = $1 ORDER BY position";

/// Reservations with their seat indexes; callers add `WHERE ... GROUP BY r.id`.
pub(crate) const RESERVATION_SELECT: &str = "SELECT r.id, r.event_id, r.user_id, r.number, r.serial, r.status,
    r.amount, r.ticket_type_id, r.quantity, r.created_at, r.expires_at, r.updated_at,
    array_remove(array_agg(i.seat_index ORDER BY i.seat_index), NULL) AS seats
    FROM reservations r LEFT JOIN reservation_items i ON i.reservation_id = r.id";

/// Payment attempts; callers add `WHERE ...`.
pub(crate) const PAYMENT_SELECT: &str = "SELECT order_id, attempt, reservation_id, event_id, user_id, amount, status,
    payment_key, method, failure_code, failure_message, created_at, updated_at, approved_at, cancelled_at FROM payments";

/// Audit records; callers add `WHERE ...`.
pub(crate) const AUDIT_SELECT: &str =
    "SELECT reservation_id, event_id, admin_id, from_status, to_status, reason, at FROM reservation_audit";

pub(crate) const IDEMPOTENCY_SELECT: &str =
    "SELECT user_id, key, fingerprint, event_id, seq, outcome, created_at FROM idempotency_keys";

/// A timestamp as PostgreSQL `timestamptz`.
pub(crate) fn at(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A `timestamptz` as a timestamp (millisecond precision).
pub(crate) fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unreadable {what} in the database"))
}

pub(crate) fn user_from_row(r: &Row) -> Result<UserRecord, StoreError> {
    let role = match r.get::<_, &str>("role") {
        "admin" => Role::Admin,
        "user" => Role::User,
        _ => return Err(corrupt("user role")),
    };
    Ok(UserRecord {
        id: UserId(r.get("id")),
        email: r.get("email"),
        password_hash: r.get("password_hash"),
        name: r.get("name"),
        role,
        created_at: ts(r.get("created_at")),
    })
}

pub(crate) fn layout_from_row(r: &Row) -> Result<LayoutRecord, StoreError> {
    Ok(LayoutRecord {
        id: r.get("id"),
        name: r.get("name"),
        spec: serde_json::from_value(r.get("spec")).map_err(|_| corrupt("layout"))?,
        seat_count: r.get::<_, i32>("seat_count") as u32,
        created_at: ts(r.get("created_at")),
    })
}

pub(crate) fn event_from_row(r: &Row, ticket_types: &[Row]) -> Result<EventRecord, StoreError> {
    let layout: Option<serde_json::Value> = r.get("layout");
    Ok(EventRecord {
        id: EventId(r.get("id")),
        title: r.get("title"),
        description: r.get("description"),
        venue: r.get("venue"),
        artist: r.get("artist"),
        event_date: ts(r.get("event_date")),
        sale_start: ts(r.get("sale_start")),
        sale_end: ts(r.get("sale_end")),
        layout: layout.map(serde_json::from_value).transpose().map_err(|_| corrupt("event layout"))?,
        layout_id: r.get("layout_id"),
        ticket_types: ticket_types
            .iter()
            .map(|t| TicketTypeSpec {
                id: TicketTypeId(t.get("id")),
                name: t.get("name"),
                price: t.get("price"),
                capacity: t.get::<_, i32>("capacity") as u32,
            })
            .collect(),
        per_user_limit: r.get::<_, i32>("per_user_limit") as u32,
        hold_ttl: Duration::from_millis(r.get::<_, i64>("hold_ttl_ms") as u64),
        max_per_reservation: r.get::<_, i32>("max_per_reservation") as u32,
        queue: QueueSettings {
            enabled: r.get("queue_enabled"),
            rate_per_second: r.get::<_, i32>("queue_rate") as u32,
            max_active: r.get::<_, i32>("queue_max_active") as u32,
            admission_ttl: Duration::from_millis(r.get::<_, i64>("queue_admission_ttl_ms") as u64),
            heartbeat_ttl: Duration::from_millis(r.get::<_, i64>("queue_heartbeat_ttl_ms") as u64),
        },
        queue_seed: r.get::<_, &[u8]>("queue_seed").try_into().map_err(|_| corrupt("queue seed"))?,
        status: EventStatus::parse(r.get("status")).ok_or_else(|| corrupt("event status"))?,
        created_at: ts(r.get("created_at")),
        updated_at: ts(r.get("updated_at")),
    })
}

pub(crate) fn reservation_from_row(r: &Row) -> Result<Reservation, StoreError> {
    let number: &str = r.get("number");
    // TKT-YYYYMMDD-NNNNN
    let date = number.get(4..12).and_then(|d| d.parse().ok()).ok_or_else(|| corrupt("reservation number"))?;
    let ticket_type: Option<uuid::Uuid> = r.get("ticket_type_id");
    let quantity = r.get::<_, i32>("quantity") as u32;
    let items = match ticket_type {
        Some(t) => ReservationItems::General { ticket_type: TicketTypeId(t), quantity },
        None => {
            ReservationItems::Seats(r.get::<_, Vec<i32>>("seats").into_iter().map(|s| SeatIndex(s as u32)).collect())
        }
    };
    Ok(Reservation {
        id: ReservationId(r.get("id")),
        number: ReservationNumber { date, serial: r.get::<_, i32>("serial") as u32 },
        event: EventId(r.get("event_id")),
        user: UserId(r.get("user_id")),
        items,
        status: ReservationStatus::parse(r.get("status")).ok_or_else(|| corrupt("reservation status"))?,
        amount: r.get("amount"),
        created_at: ts(r.get("created_at")),
        expires_at: ts(r.get("expires_at")),
        updated_at: ts(r.get("updated_at")),
    })
}

pub(crate) fn idempotency_from_row(r: &Row) -> Result<IdempotencyRecord, StoreError> {
    let outcome: StoredOutcome =
        serde_json::from_value(r.get("outcome")).map_err(|_| corrupt("idempotency outcome"))?;
    Ok(IdempotencyRecord {
        user: UserId(r.get("user_id")),
        key: r.get("key"),
        fingerprint: r.get("fingerprint"),
        event: EventId(r.get("event_id")),
        seq: r.get::<_, i64>("seq") as u64,
        outcome,
        created_at: ts(r.get("created_at")),
    })
}

pub(crate) fn payment_from_row(r: &Row) -> Result<Payment, StoreError> {
    let status = PaymentStatus::parse(r.get("status")).ok_or_else(|| corrupt("payment status"))?;
    let failure = match (r.get::<_, Option<String>>("failure_code"), r.get::<_, Option<String>>("failure_message")) {
        (Some(code), message) => Some(PaymentFailure { code, message: message.unwrap_or_default() }),
        (None, _) => None,
    };
    Ok(Payment {
        order_id: r.get("order_id"),
        attempt: r.get::<_, i32>("attempt") as u32,
        reservation: ReservationId(r.get("reservation_id")),
        event: EventId(r.get("event_id")),
        user: UserId(r.get("user_id")),
        amount: r.get("amount"),
        status,
        payment_key: r.get("payment_key"),
        method: r.get("method"),
        failure,
        created_at: ts(r.get("created_at")),
        updated_at: ts(r.get("updated_at")),
        approved_at: r.get::<_, Option<OffsetDateTime>>("approved_at").map(ts),
        cancelled_at: r.get::<_, Option<OffsetDateTime>>("cancelled_at").map(ts),
    })
}

pub(crate) fn audit_from_row(r: &Row) -> Result<AuditRecord, StoreError> {
    let status = |col| ReservationStatus::parse(r.get(col)).ok_or_else(|| corrupt("audit status"));
    Ok(AuditRecord {
        reservation: ReservationId(r.get("reservation_id")),
        event: EventId(r.get("event_id")),
        admin: UserId(r.get("admin_id")),
        from: status("from_status")?,
        to: status("to_status")?,
        reason: r.get("reason"),
        at: ts(r.get("at")),
    })
}
