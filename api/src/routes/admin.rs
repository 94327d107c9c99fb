//! Admin: layouts, events, seat blocking. Every route requires the admin role.

use crate::auth::random_seed;
use crate::dto::{EventDetailDto, timestamp};
use crate::error::ApiError;
use crate::extract::{AdminUser, ApiJson, ApiPath};
use crate::routes::events::LayoutDto;
use crate::routes::queue::QueueSettingsBody;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::time::Duration;
use tiketi_actors::EventPatch;
use tiketi_engine::{
    EventId, EventStatus, LayoutSpec, PriceTier, QueueSettings, RowSpec, SectionSpec, TicketTypeId, TicketTypeSpec,
};
use tiketi_persistence::{EventRecord, LayoutRecord};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The admin routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_layout))
        .routes(routes!(create_event))
        .routes(routes!(update_event, delete_event))
        .routes(routes!(cancel_event))
        .routes(routes!(block_seats))
        .routes(routes!(unblock_seats))
}

/// A price tier in a layout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierRequest {
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
}

/// A row in a layout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowRequest {
    /// Label (letters, digits, `_`).
    pub label: String,
    /// Seats, numbered from 1.
    pub seats: u32,
    /// Tier index, if not the section's.
    pub tier: Option<u8>,
}

/// A section in a layout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SectionRequest {
    /// Name (letters, digits, `_`).
    pub name: String,
    /// Default tier index of its rows.
    pub tier: u8,
    /// Rows, front first.
    pub rows: Vec<RowRequest>,
}

/// A seated layout.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutBody {
    /// Price tiers, best first.
    pub tiers: Vec<TierRequest>,
    /// Sections.
    pub sections: Vec<SectionRequest>,
}

/// Highest price of a seat or ticket, in minor units: with at most 50 seats or tickets per
/// reservation, no reservation total can overflow the engine's `i64`.
const MAX_PRICE: i64 = 1_000_000_000_000;

fn price(field: String, price: i64) -> Result<(), ApiError> {
    if (0..=MAX_PRICE).contains(&price) {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("must be 0-{MAX_PRICE}")))
    }
}

impl LayoutBody {
    fn into_spec(self, field: &str) -> Result<(LayoutSpec, u32), ApiError> {
        for (i, t) in self.tiers.iter().enumerate() {
            price(format!("{field}tiers[{i}].price"), t.price)?;
        }
        let spec = LayoutSpec {
            tiers: self.tiers.into_iter().map(|t| PriceTier { name: t.name, price: t.price }).collect(),
            sections: self
                .sections
                .into_iter()
                .map(|s| SectionSpec {
                    name: s.name,
                    tier: s.tier,
                    rows: s
                        .rows
                        .into_iter()
                        .map(|r| RowSpec { label: r.label, seats: r.seats, tier: r.tier })
                        .collect(),
                })
                .collect(),
        };
        let seats = spec.validate().map_err(|e| ApiError::invalid(format!("{field}{}", e.field), e.message))?;
        // A seated layout without seats would make an event with nothing to sell.
        if seats == 0 {
            return Err(ApiError::invalid(format!("{field}sections"), "must not be empty"));
        }
        Ok((spec, seats))
    }
}

/// `POST /admin/layouts`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLayoutRequest {
    /// Name, e.g. the venue.
    pub name: String,
    /// The layout.
    #[serde(flatten)]
    pub layout: LayoutBody,
}

/// A GA ticket type to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketTypeRequest {
    /// Name.
    pub name: String,
    /// Price in minor units.
    pub price: i64,
    /// Tickets in all.
    pub capacity: u32,
}

/// `POST /admin/events`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEventRequest {
    /// Title.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Venue.
    pub venue: String,
    /// Artist.
    #[serde(default)]
    pub artist: String,
    /// When it takes place (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub event_date: time::OffsetDateTime,
    /// Sale start (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub sale_start: time::OffsetDateTime,
    /// Sale end (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub sale_end: time::OffsetDateTime,
    /// Copy the seated layout of this template...
    pub layout_id: Option<Uuid>,
    /// ...or use this one.
    pub layout: Option<LayoutBody>,
    /// General-admission ticket types.
    #[serde(default)]
    pub ticket_types: Vec<TicketTypeRequest>,
    /// Seats + tickets one buyer may hold and own (default 4; 0: no limit).
    pub per_user_limit: Option<u32>,
    /// Hold time-to-live in seconds (default 300).
    pub hold_ttl_seconds: Option<u64>,
    /// Largest reservation (default 10).
    pub max_per_reservation: Option<u32>,
    /// Admission queue (default: disabled, 100 a second, no cap).
    pub queue: Option<QueueSettingsBody>,
}

/// `PUT /admin/events/{eventId}`: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateEventRequest {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Venue.
    pub venue: Option<String>,
    /// Artist.
    pub artist: Option<String>,
    /// Event date.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub event_date: Option<time::OffsetDateTime>,
    /// Sale start.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sale_start: Option<time::OffsetDateTime>,
    /// Sale end.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub sale_end: Option<time::OffsetDateTime>,
    /// Per-user limit.
    pub per_user_limit: Option<u32>,
    /// Hold TTL in seconds.
    pub hold_ttl_seconds: Option<u64>,
    /// Largest reservation.
    pub max_per_reservation: Option<u32>,
    /// Admission queue; only the fields given change.
    pub queue: Option<QueueSettingsBody>,
}

/// `POST /admin/events/{eventId}/seats/block` and `/unblock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeatIdsRequest {
    /// Seat ids.
    pub seat_ids: Vec<String>,
}

fn text(field: &str, value: &str, max: usize, required: bool) -> Result<String, ApiError> {
    let value = value.trim();
    if (required && value.is_empty()) || value.chars().count() > max {
        let range = if required { "1" } else { "0" };
        return Err(ApiError::invalid(field, format!("must be {range}-{max} characters")));
    }
    Ok(value.to_owned())
}

fn hold_ttl(state: &AppState, seconds: u64) -> Result<Duration, ApiError> {
    let min = state.settings().events.min_hold_ttl_secs;
    if (min..=3600).contains(&seconds) {
        Ok(Duration::from_secs(seconds))
    } else {
        Err(ApiError::invalid("holdTtlSeconds", format!("must be {min}-3600")))
    }
}

fn max_per_reservation(n: u32) -> Result<u32, ApiError> {
    if (1..=50).contains(&n) { Ok(n) } else { Err(ApiError::invalid("maxPerReservation", "must be 1-50")) }
}

/// Create a seat layout template.
#[utoipa::path(post, path = "/admin/layouts", tag = "admin", security(("bearer" = [])), request_body = CreateLayoutRequest,
    responses((status = 201, body = LayoutDto), (status = 403, description = "not an admin"), (status = 422, description = "invalid layout")))]
async fn create_layout(
    State(state): State<AppState>,
    _: AdminUser,
    ApiJson(req): ApiJson<CreateLayoutRequest>,
) -> Result<(StatusCode, Json<LayoutDto>), ApiError> {
    let name = text("name", &req.name, 200, true)?;
    let (spec, seat_count) = req.layout.into_spec("")?;
    let record = LayoutRecord { id: Uuid::new_v4(), name, spec, seat_count, created_at: state.now() };
    state.store().create_layout(record.clone()).await?;
    Ok((StatusCode::CREATED, Json(LayoutDto::from(&record))))
}

/// Create an event from a layout template or an inline layout, and/or GA ticket types.
#[utoipa::path(post, path = "/admin/events", tag = "admin", security(("bearer" = [])), request_body = CreateEventRequest,
    responses((status = 201, body = EventDetailDto), (status = 403, description = "not an admin"), (status = 422, description = "invalid field")))]
async fn create_event(
    State(state): State<AppState>,
    _: AdminUser,
    ApiJson(req): ApiJson<CreateEventRequest>,
) -> Result<(StatusCode, Json<EventDetailDto>), ApiError> {
    let record = event_record(&state, req).await?;
    state.store().create_event(record.clone()).await?;
    let view = match state.event(record.id).await {
        Ok(handle) => handle.view().await?,
        // Another node of the cluster owns it. It exists now: answer from its record rather
        // than let the facade run this request again at the owner (a second event).
        Err(ApiError::Moving(_)) => tiketi_actors::EventView::fresh(record, state.now())?,
        Err(e) => return Err(e),
    };
    Ok((StatusCode::CREATED, Json(EventDetailDto::new(&view, state.now()))))
}

async fn event_record(state: &AppState, req: CreateEventRequest) -> Result<EventRecord, ApiError> {
    let (sale_start, sale_end) = (timestamp(req.sale_start), timestamp(req.sale_end));
    if sale_end <= sale_start {
        return Err(ApiError::invalid("saleEnd", "must be after saleStart"));
    }
    let layout = match (req.layout_id, req.layout) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("layout", "give layoutId or layout, not both")),
        (Some(id), None) => {
            Some(state.store().layout(id).await?.ok_or_else(|| ApiError::invalid("layoutId", "no such layout"))?.spec)
        }
        (None, Some(body)) => Some(body.into_spec("layout.")?.0),
        (None, None) => None,
    };
    let mut ticket_types = Vec::with_capacity(req.ticket_types.len());
    for (i, t) in req.ticket_types.into_iter().enumerate() {
        let name = text(&format!("ticketTypes[{i}].name"), &t.name, 100, true)?;
        price(format!("ticketTypes[{i}].price"), t.price)?;
        if !(1..=1_000_000).contains(&t.capacity) {
            return Err(ApiError::invalid(format!("ticketTypes[{i}].capacity"), "must be 1-1000000"));
        }
        ticket_types.push(TicketTypeSpec {
            id: TicketTypeId(Uuid::new_v4()),
            name,
            price: t.price,
            capacity: t.capacity,
        });
    }
    if layout.is_none() && ticket_types.is_empty() {
        return Err(ApiError::invalid("layout", "an event needs a seated layout, ticket types, or both"));
    }
    let now = state.now();
    Ok(EventRecord {
        id: EventId(Uuid::new_v4()),
        title: text("title", &req.title, 200, true)?,
        description: text("description", &req.description, 5000, false)?,
        venue: text("venue", &req.venue, 200, true)?,
        artist: text("artist", &req.artist, 200, false)?,
        event_date: timestamp(req.event_date),
        sale_start,
        sale_end,
        layout,
        layout_id: req.layout_id,
        ticket_types,
        per_user_limit: req.per_user_limit.unwrap_or(4),
        hold_ttl: hold_ttl(state, req.hold_ttl_seconds.unwrap_or(300))?,
        max_per_reservation: max_per_reservation(req.max_per_reservation.unwrap_or(10))?,
        queue: req
            .queue
            .as_ref()
            .map_or(Ok(QueueSettings::default()), |q| q.apply(QueueSettings::default(), "queue."))?,
        queue_seed: random_seed(),
        status: EventStatus::Upcoming,
        created_at: now,
        updated_at: now,
    })
}

/// Edit an event: description, dates, sale window, limits.
#[utoipa::path(put, path = "/admin/events/{eventId}", tag = "admin", security(("bearer" = [])), params(("eventId" = Uuid, Path)),
    request_body = UpdateEventRequest,
    responses((status = 200, body = EventDetailDto), (status = 403, description = "not an admin"), (status = 404, description = "no such event")))]
async fn update_event(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateEventRequest>,
) -> Result<Json<EventDetailDto>, ApiError> {
    let handle = state.event(EventId(id)).await?;
    let queue = match &req.queue {
        Some(body) => Some(body.apply(handle.view().await?.record.queue, "queue.")?),
        None => None,
    };
    let patch = EventPatch {
        title: req.title.as_deref().map(|t| text("title", t, 200, true)).transpose()?,
        description: req.description.as_deref().map(|t| text("description", t, 5000, false)).transpose()?,
        venue: req.venue.as_deref().map(|t| text("venue", t, 200, true)).transpose()?,
        artist: req.artist.as_deref().map(|t| text("artist", t, 200, false)).transpose()?,
        event_date: req.event_date.map(timestamp),
        sale_start: req.sale_start.map(timestamp),
        sale_end: req.sale_end.map(timestamp),
        per_user_limit: req.per_user_limit,
        hold_ttl: req.hold_ttl_seconds.map(|s| hold_ttl(&state, s)).transpose()?,
        max_per_reservation: req.max_per_reservation.map(max_per_reservation).transpose()?,
        queue,
    };
    let view = handle.update(patch).await?;
    Ok(Json(EventDetailDto::new(&view, state.now())))
}

/// Delete an event that never had a reservation.
#[utoipa::path(delete, path = "/admin/events/{eventId}", tag = "admin", security(("bearer" = [])), params(("eventId" = Uuid, Path)),
    responses((status = 204), (status = 403, description = "not an admin"), (status = 404, description = "no such event"),
        (status = 409, description = "the event has reservations; cancel it instead")))]
async fn delete_event(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let id = EventId(id);
    // Stop the actor, then let everything it decided reach the store, so the store's "has
    // reservations" check sees holds made a moment ago.
    state.directory().evict(id).await;
    state.directory().journal().flushed().await;
    state.store().delete_event(id).await.map_err(|e| match e {
        tiketi_persistence::StoreError::NotFound => ApiError::NotFound { what: "event" },
        tiketi_persistence::StoreError::Conflict(_) => ApiError::Conflict {
            code: "event_has_reservations",
            message: "the event has reservations; cancel it instead".into(),
            details: serde_json::json!({}),
        },
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel an event: sales stop and unpaid holds are released.
#[utoipa::path(post, path = "/admin/events/{eventId}/cancel", tag = "admin", security(("bearer" = [])), params(("eventId" = Uuid, Path)),
    responses((status = 200, body = EventDetailDto), (status = 403, description = "not an admin"), (status = 404, description = "no such event")))]
async fn cancel_event(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EventDetailDto>, ApiError> {
    let view = state.event(EventId(id)).await?.cancel_event().await?;
    Ok(Json(EventDetailDto::new(&view, state.now())))
}

/// Take seats off sale (all or none: held and sold seats cannot be blocked).
#[utoipa::path(post, path = "/admin/events/{eventId}/seats/block", tag = "admin", security(("bearer" = [])), params(("eventId" = Uuid, Path)),
    request_body = SeatIdsRequest,
    responses((status = 200, body = EventDetailDto), (status = 403, description = "not an admin"), (status = 409, description = "seats held or sold")))]
async fn block_seats(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SeatIdsRequest>,
) -> Result<Json<EventDetailDto>, ApiError> {
    set_blocked(state, id, req, true).await
}

/// Put blocked seats back on sale.
#[utoipa::path(post, path = "/admin/events/{eventId}/seats/unblock", tag = "admin", security(("bearer" = [])), params(("eventId" = Uuid, Path)),
    request_body = SeatIdsRequest,
    responses((status = 200, body = EventDetailDto), (status = 403, description = "not an admin")))]
async fn unblock_seats(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SeatIdsRequest>,
) -> Result<Json<EventDetailDto>, ApiError> {
    set_blocked(state, id, req, false).await
}

async fn set_blocked(
    state: AppState,
    id: Uuid,
    req: SeatIdsRequest,
    blocked: bool,
) -> Result<Json<EventDetailDto>, ApiError> {
    if req.seat_ids.is_empty() || req.seat_ids.len() > 10_000 {
        return Err(ApiError::invalid("seatIds", "must name 1-10000 seats"));
    }
    let view = state.event(EventId(id)).await?.set_blocked(req.seat_ids, blocked).await?;
    Ok(Json(EventDetailDto::new(&view, state.now())))
}
