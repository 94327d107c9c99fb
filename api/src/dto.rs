//! Response bodies shared by several route modules, and the conversions into them.

use crate::error::ApiError;
use crate::state::AppState;
use serde::Serialize;
use tiketi_actors::EventView;
use tiketi_engine::{Reservation, ReservationItems, SeatCounts, Timestamp};
use tiketi_persistence::EventRecord;
use utoipa::ToSchema;
use uuid::Uuid;

/// RFC 3339 in UTC with milliseconds, e.g. `2026-01-05T10:00:00.000Z`.
pub fn iso(ts: Timestamp) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.millis()) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    dt.format(&format).unwrap_or_default()
}

/// From a parsed RFC 3339 instant.
pub fn timestamp(dt: time::OffsetDateTime) -> Timestamp {
    Timestamp(i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// A reservation as buyers and admins see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationDto {
    /// Id.
    pub id: Uuid,
    /// Order number, `TKT-YYYYMMDD-NNNNN`.
    pub number: String,
    /// Event.
    pub event_id: Uuid,
    /// Buyer.
    pub user_id: Uuid,
    /// `held`, `confirmed`, `expired` or `cancelled`.
    pub status: String,
    /// Seat ids (seated reservations).
    pub seat_ids: Vec<String>,
    /// Ticket type (general admission).
    pub ticket_type_id: Option<Uuid>,
    /// Seats or tickets.
    pub quantity: u32,
    /// Total price in minor units.
    pub amount: i64,
    /// When an unpaid hold lapses.
    pub expires_at: String,
    /// Created.
    pub created_at: String,
    /// Last status change.
    pub updated_at: String,
}

impl ReservationDto {
    /// Builds the DTO, naming seats by id.
    pub async fn build(state: &AppState, r: &Reservation) -> Result<Self, ApiError> {
        let (seat_ids, ticket_type_id) = match &r.items {
            ReservationItems::Seats(seats) => (state.seat_ids(r.event, seats).await?, None),
            ReservationItems::General { ticket_type, .. } => (Vec::new(), Some(ticket_type.uuid())),
        };
        Ok(Self {
            id: r.id.uuid(),
            number: r.number.to_string(),
            event_id: r.event.uuid(),
            user_id: r.user.uuid(),
            status: r.status.as_str().into(),
            seat_ids,
            ticket_type_id,
            quantity: r.items.quantity(),
            amount: r.amount,
            expires_at: iso(r.expires_at),
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        })
    }
}

/// An event in a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSummaryDto {
    /// Id.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Venue.
    pub venue: String,
    /// Artist.
    pub artist: String,
    /// Event date.
    pub event_date: String,
    /// Sale start.
    pub sale_start: String,
    /// Sale end.
    pub sale_end: String,
    /// `upcoming`, `on_sale`, `sold_out`, `ended` or `cancelled`.
    pub status: String,
    /// Seats in the seated layout.
    pub seat_count: u32,
    /// General-admission capacity across ticket types.
    pub general_capacity: u32,
}

impl EventSummaryDto {
    /// From a stored record, with the status as of `now`.
    pub fn new(e: &EventRecord, now: Timestamp) -> Self {
        Self {
            id: e.id.uuid(),
            title: e.title.clone(),
            venue: e.venue.clone(),
            artist: e.artist.clone(),
            event_date: iso(e.event_date),
            sale_start: iso(e.sale_start),
            sale_end: iso(e.sale_end),
            status: e.status_at(now).as_str().into(),
            seat_count: e.layout.as_ref().map_or(0, |l| l.sections.iter().flat_map(|s| &s.rows).map(|r| r.seats).sum()),
            general_capacity: e.ticket_types.iter().map(|t| t.capacity).sum(),
        }
    }
}

/// A price tier.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierDto {
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
}

/// A GA ticket type with live counts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketTypeDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
    /// Capacity.
    pub capacity: u32,
    /// On sale now.
    pub available: u32,
    /// Held.
    pub held: u32,
    /// Sold.
    pub sold: u32,
}

/// Seat counts; they always add up to `total`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityDto {
    /// On sale.
    pub available: u32,
    /// Held.
    pub held: u32,
    /// Sold.
    pub sold: u32,
    /// Blocked.
    pub blocked: u32,
    /// All seats.
    pub total: u32,
}

impl From<SeatCounts> for AvailabilityDto {
    fn from(c: SeatCounts) -> Self {
        Self { available: c.available, held: c.held, sold: c.sold, blocked: c.blocked, total: c.total() }
    }
}

/// An event with ticket types and live availability.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDetailDto {
    /// The list fields.
    #[serde(flatten)]
    pub summary: EventSummaryDto,
    /// Description.
    pub description: String,
    /// Seats plus tickets one buyer may hold and own (0: no limit).
    pub per_user_limit: u32,
    /// How long a hold lasts.
    pub hold_ttl_seconds: u64,
    /// Largest reservation.
    pub max_per_reservation: u32,
    /// Layout template it was created from.
    pub layout_id: Option<Uuid>,
    /// Price tiers, best first.
    pub tiers: Vec<TierDto>,
    /// Section names.
    pub sections: Vec<String>,
    /// GA ticket types.
    pub ticket_types: Vec<TicketTypeDto>,
    /// Live seat counts.
    pub availability: AvailabilityDto,
    /// Admission-queue settings.
    pub queue: crate::routes::queue::QueueSettingsDto,
    /// Sequence number of the last change.
    pub version: u64,
}

impl EventDetailDto {
    /// From the actor's live view.
    pub fn new(v: &EventView, now: Timestamp) -> Self {
        let mut summary = EventSummaryDto::new(&v.record, now);
        summary.status = v.status.as_str().into();
        let layout = v.record.layout.as_ref();
        Self {
            summary,
            description: v.record.description.clone(),
            per_user_limit: v.record.per_user_limit,
            hold_ttl_seconds: v.record.hold_ttl.as_secs(),
            max_per_reservation: v.record.max_per_reservation,
            layout_id: v.record.layout_id,
            tiers: layout
                .map(|l| l.tiers.iter().map(|t| TierDto { name: t.name.clone(), price: t.price }).collect())
                .unwrap_or_default(),
            sections: layout.map(|l| l.sections.iter().map(|s| s.name.clone()).collect()).unwrap_or_default(),
            ticket_types: v
                .ticket_types
                .iter()
                .map(|t| TicketTypeDto {
                    id: t.spec.id.uuid(),
                    name: t.spec.name.clone(),
                    price: t.spec.price,
                    capacity: t.spec.capacity,
                    available: t.available(),
                    held: t.held,
                    sold: t.sold,
                })
                .collect(),
            availability: v.counts.into(),
            queue: (&v.record.queue).into(),
            version: v.seq,
        }
    }
}
