//! Browsing: the event list, one event with live availability, its seat map, and the
//! layout templates.

use crate::dto::{EventDetailDto, EventSummaryDto, TierDto, iso};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tiketi_actors::SeatsSnapshot;
use tiketi_engine::{EventId, EventStatus, SeatStatus};
use tiketi_persistence::{EventFilter, LayoutRecord};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The browsing routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(get_seats))
        .routes(routes!(list_layouts))
}

/// `GET /events` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only events in this status.
    pub status: Option<String>,
    /// Search title, artist and venue.
    pub q: Option<String>,
    /// Page, from 1.
    pub page: Option<u32>,
    /// Page size, 1-100 (default 20).
    pub limit: Option<u32>,
}

/// Pagination of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Items matching.
    pub total: u64,
    /// This page.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Pages in all.
    pub total_pages: u64,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// The events.
    pub data: Vec<EventSummaryDto>,
    /// Where this page is.
    pub pagination: Pagination,
}

/// One seat of the seat map.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatDto {
    /// Seat id.
    pub id: String,
    /// Section.
    pub section: String,
    /// Row.
    pub row: String,
    /// Number in the row.
    pub number: u32,
    /// Price in minor units.
    pub price: i64,
    /// `available`, `held`, `sold` or `blocked`.
    pub status: String,
}

/// The seat map at one version.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatMapDto {
    /// Sequence number of the last change folded in (the WebSocket `seq`).
    pub version: u64,
    /// Every seat.
    pub seats: Vec<SeatDto>,
}

/// A layout template.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayoutDto {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Seats.
    pub seat_count: u32,
    /// Price tiers, best first.
    pub tiers: Vec<TierDto>,
    /// Sections with their rows.
    #[schema(value_type = Object)]
    pub sections: serde_json::Value,
    /// Created.
    pub created_at: String,
}

impl From<&LayoutRecord> for LayoutDto {
    fn from(l: &LayoutRecord) -> Self {
        Self {
            id: l.id,
            name: l.name.clone(),
            seat_count: l.seat_count,
            tiers: l.spec.tiers.iter().map(|t| TierDto { name: t.name.clone(), price: t.price }).collect(),
            sections: serde_json::to_value(&l.spec.sections).unwrap_or_default(),
            created_at: iso(l.created_at),
        }
    }
}

/// List events, filtered and paginated.
#[utoipa::path(get, path = "/events", tag = "events", params(ListQuery),
    responses((status = 200, body = EventList), (status = 422, description = "invalid parameter")))]
async fn list_events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<EventList>, ApiError> {
    let status =
        match q.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
                ApiError::invalid("status", "must be upcoming, on_sale, sold_out, ended or cancelled")
            })?),
        };
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(20);
    if page == 0 {
        return Err(ApiError::invalid("page", "must be at least 1"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1-100"));
    }
    if q.q.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::invalid("q", "must be at most 100 characters"));
    }
    let now = state.now();
    let filter = EventFilter { status, query: q.q.filter(|s| !s.trim().is_empty()), page, limit, now };
    let found = state.store().list_events(&filter).await?;
    Ok(Json(EventList {
        data: found.items.iter().map(|e| EventSummaryDto::new(e, now)).collect(),
        pagination: Pagination { total: found.total, page, limit, total_pages: found.total.div_ceil(u64::from(limit)) },
    }))
}

/// One event with its ticket types and live availability.
#[utoipa::path(get, path = "/events/{eventId}", tag = "events", params(("eventId" = Uuid, Path)),
    responses((status = 200, body = EventDetailDto), (status = 404, description = "no such event")))]
async fn get_event(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EventDetailDto>, ApiError> {
    let view = state.event(EventId(id)).await?.view().await?;
    Ok(Json(EventDetailDto::new(&view, state.now())))
}

/// `GET /events/{id}/seats` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SeatsQuery {
    /// `full` (default): every seat with its fixed part and status. `status`: the compact
    /// form, `{"version", "statuses"}` with one letter per seat in the full form's order
    /// (`a`vailable, `h`eld, `s`old, `b`locked), for clients that keep the layout.
    pub view: Option<String>,
}

/// The compact seat map: the layout is fetched once (`view=full`), then only statuses.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatStatusesDto {
    /// Sequence number of the last change folded in (the WebSocket `seq`).
    pub version: u64,
    /// One letter per seat, in the full map's order: `a`, `h`, `s` or `b`.
    pub statuses: String,
}

/// The seat map with every seat's live status. The body is rendered once per version and
/// shared by every reader of that version; `ETag` is the version, so a client that has it
/// gets `304 Not Modified`.
#[utoipa::path(get, path = "/events/{eventId}/seats", tag = "events", params(("eventId" = Uuid, Path), SeatsQuery),
    responses((status = 200, body = SeatMapDto, description = "view=full; view=status answers SeatStatusesDto"),
        (status = 304, description = "If-None-Match names the current version"),
        (status = 404, description = "no such event")))]
async fn get_seats(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SeatsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let compact = match q.view.as_deref() {
        None | Some("full") => false,
        Some("status") => true,
        Some(_) => return Err(ApiError::invalid("view", "must be full or status")),
    };
    let snapshot = state.event(EventId(id)).await?.seats().await?;
    let etag = format!("\"{}{}\"", if compact { "s" } else { "f" }, snapshot.seq);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag));
    let etag = HeaderValue::from_str(&etag).expect("digits and quotes");
    if fresh {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let body = if compact {
        snapshot.compact_body.get_or_init(|| render_statuses(&snapshot))
    } else {
        snapshot.body.get_or_init(|| render_seats(&snapshot))
    };
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), (header::ETAG, etag)];
    Ok((headers, body.clone()).into_response())
}

/// The body of `GET /events/{id}/seats` for `snapshot` (public for the benchmarks).
pub fn render_seats(snapshot: &SeatsSnapshot) -> Bytes {
    let seats = snapshot
        .seats()
        .map(|(s, status)| SeatDto {
            id: s.id,
            section: s.section.into(),
            row: s.row.into(),
            number: s.number,
            price: s.price,
            status: status.as_str().into(),
        })
        .collect();
    Bytes::from(serde_json::to_vec(&SeatMapDto { version: snapshot.seq, seats }).expect("plain data serialises"))
}

/// The body of `GET /events/{id}/seats?view=status` for `snapshot` (public for the
/// benchmarks).
pub fn render_statuses(snapshot: &SeatsSnapshot) -> Bytes {
    let statuses = snapshot
        .statuses
        .iter()
        .map(|s| match s {
            SeatStatus::Available => 'a',
            SeatStatus::Held => 'h',
            SeatStatus::Sold => 's',
            SeatStatus::Blocked => 'b',
        })
        .collect();
    let dto = SeatStatusesDto { version: snapshot.seq, statuses };
    Bytes::from(serde_json::to_vec(&dto).expect("plain data serialises"))
}

/// Seat layout templates.
#[utoipa::path(get, path = "/layouts", tag = "events", responses((status = 200, body = [LayoutDto])))]
async fn list_layouts(State(state): State<AppState>) -> Result<Json<Vec<LayoutDto>>, ApiError> {
    Ok(Json(state.store().layouts().await?.iter().map(LayoutDto::from).collect()))
}
