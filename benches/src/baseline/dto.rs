//! Request and response bodies, in Tiketi's JSON shapes, and the conversions that check a
//! request before it reaches the database.
//!
//! Requests Tiketi also accepts (a full `POST /admin/events` with dates, limits and queue
//! settings, a register with a password) parse here too: fields the baseline has no use
//! for are ignored, except in a reservation request, which is as strict as Tiketi's.

use super::BaselineError;
use super::holds::Selection;
use super::store::{EventView, NewEvent, Reservation, SeatRow};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tiketi_engine::LayoutSpec;
use uuid::Uuid;

/// Most seat ids one request may name (as in Tiketi).
const MAX_SEAT_IDS: usize = 100;
/// Most seats one best-available request may ask for (Tiketi's largest per-reservation
/// limit).
const MAX_QUANTITY: u32 = 50;
/// Longest hold an event may ask for.
const MAX_HOLD_TTL_SECS: u64 = 3600;

/// `POST /auth/register`; the password is accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterRequest {
    pub email: String,
    #[serde(default)]
    pub name: String,
}

/// `POST /auth/login`; the password is accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginRequest {
    pub email: String,
}

/// The normalised form of an e-mail address, or a 422.
pub(crate) fn email(raw: &str) -> Result<String, BaselineError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254 && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty());
    if valid { Ok(email) } else { Err(BaselineError::invalid("email", "must be a valid e-mail address")) }
}

/// Register and login answer with the token, which is the user id.
#[derive(Debug, Serialize)]
pub(crate) struct AuthResponse {
    pub token: String,
    pub user: UserDto,
}

/// The user a token belongs to.
#[derive(Debug, Serialize)]
pub(crate) struct UserDto {
    pub id: Uuid,
    pub email: String,
}

/// `POST /admin/events`: a title and a seated layout; `holdTtlSeconds` is honoured.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateEventRequest {
    pub title: String,
    #[serde(default)]
    pub venue: String,
    pub layout: Option<LayoutSpec>,
    pub layout_id: Option<Uuid>,
    pub hold_ttl_seconds: Option<u64>,
}

impl TryFrom<CreateEventRequest> for NewEvent {
    type Error = BaselineError;

    fn try_from(req: CreateEventRequest) -> Result<Self, BaselineError> {
        let title = req.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(BaselineError::invalid("title", "must be 1-200 characters"));
        }
        if req.layout_id.is_some() {
            return Err(BaselineError::invalid("layoutId", "layout templates are not supported; give the layout"));
        }
        let layout = req.layout.ok_or_else(|| BaselineError::invalid("layout", "required: a seated layout"))?;
        // The same rules as Tiketi's layouts, so both systems accept the same events.
        let seats = layout.validate().map_err(|e| BaselineError::invalid(format!("layout.{}", e.field), e.message))?;
        if seats == 0 {
            return Err(BaselineError::invalid("layout.sections", "must not be empty"));
        }
        let hold_ttl = match req.hold_ttl_seconds {
            Some(s) if (1..=MAX_HOLD_TTL_SECS).contains(&s) => Some(Duration::from_secs(s)),
            Some(_) => return Err(BaselineError::invalid("holdTtlSeconds", format!("must be 1-{MAX_HOLD_TTL_SECS}"))),
            None => None,
        };
        Ok(Self { title, venue: req.venue.trim().to_owned(), hold_ttl, layout })
    }
}

/// Best-available selection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BestAvailableRequest {
    pub quantity: u32,
    pub section: Option<String>,
    #[serde(default = "yes")]
    pub adjacent: bool,
}

fn yes() -> bool {
    true
}

/// `POST /events/{eventId}/reservations`: exactly one of `seatIds` or `bestAvailable`
/// (general admission, Tiketi's third form, does not exist here).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateReservationRequest {
    pub seat_ids: Option<Vec<String>>,
    pub ticket_type_id: Option<Uuid>,
    pub quantity: Option<u32>,
    pub best_available: Option<BestAvailableRequest>,
}

impl TryFrom<CreateReservationRequest> for Selection {
    type Error = BaselineError;

    fn try_from(req: CreateReservationRequest) -> Result<Self, BaselineError> {
        match (req.seat_ids, req.ticket_type_id, req.quantity, req.best_available) {
            (Some(ids), None, None, None) => {
                if ids.is_empty() || ids.len() > MAX_SEAT_IDS {
                    return Err(BaselineError::invalid("seatIds", format!("must name 1-{MAX_SEAT_IDS} seats")));
                }
                let mut seen = std::collections::HashSet::with_capacity(ids.len());
                if let Some(twice) = ids.iter().find(|id| !seen.insert(id.as_str())) {
                    return Err(BaselineError::invalid("seatIds", format!("seat {twice} named twice")));
                }
                Ok(Self::Seats(ids))
            }
            (None, None, None, Some(best)) => {
                if !(1..=MAX_QUANTITY).contains(&best.quantity) {
                    return Err(BaselineError::invalid(
                        "bestAvailable.quantity",
                        format!("must be between 1 and {MAX_QUANTITY} per reservation"),
                    ));
                }
                Ok(Self::BestAvailable { quantity: best.quantity, section: best.section, adjacent: best.adjacent })
            }
            (None, Some(_), _, None) | (None, None, Some(_), None) => {
                Err(BaselineError::invalid("ticketTypeId", "general admission is not supported by the baseline"))
            }
            _ => Err(BaselineError::invalid("seatIds", "give exactly one of seatIds or bestAvailable")),
        }
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-01-05T10:00:00.000Z`, as Tiketi writes.
fn iso(t: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// A reservation, as Tiketi shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReservationDto {
    pub id: Uuid,
    /// `TKT-YYYYMMDD-NNNNN`, as Tiketi numbers orders.
    pub number: String,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub seat_ids: Vec<String>,
    pub ticket_type_id: Option<Uuid>,
    pub quantity: i32,
    pub amount: i64,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Reservation> for ReservationDto {
    fn from(r: Reservation) -> Self {
        let date = r.created_at.to_offset(time::UtcOffset::UTC).date();
        let date = date.year() * 10_000 + i32::from(u8::from(date.month())) * 100 + i32::from(date.day());
        Self {
            id: r.id,
            number: format!("TKT-{date:08}-{:05}", r.number),
            event_id: r.event_id,
            user_id: r.user_id,
            status: r.status,
            seat_ids: r.seat_ids,
            ticket_type_id: None,
            quantity: r.quantity,
            amount: r.amount,
            expires_at: iso(r.expires_at),
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
        }
    }
}

/// Seat counts; they add up to `total`.
#[derive(Debug, Serialize)]
pub(crate) struct AvailabilityDto {
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    pub blocked: i64,
    pub total: i64,
}

/// An event with live seat counts. Always on sale: the baseline has no sale windows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventDto {
    pub id: Uuid,
    pub title: String,
    pub venue: String,
    pub status: &'static str,
    pub hold_ttl_seconds: i32,
    pub availability: AvailabilityDto,
}

impl From<EventView> for EventDto {
    fn from(e: EventView) -> Self {
        let total = e.available + e.held + e.sold + e.blocked;
        Self {
            id: e.id,
            title: e.title,
            venue: e.venue,
            status: "on_sale",
            hold_ttl_seconds: e.hold_ttl_seconds,
            availability: AvailabilityDto {
                available: e.available,
                held: e.held,
                sold: e.sold,
                blocked: e.blocked,
                total,
            },
        }
    }
}

/// One seat of the seat map.
#[derive(Debug, Serialize)]
pub(crate) struct SeatDto {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price: i64,
    pub status: String,
}

impl From<SeatRow> for SeatDto {
    fn from(s: SeatRow) -> Self {
        Self { id: s.id, section: s.section, row: s.row, number: s.number, price: s.price, status: s.status }
    }
}

/// The seat map. `version` is always 0: the baseline has no change stream to sync with.
#[derive(Debug, Serialize)]
pub(crate) struct SeatMapDto {
    pub version: u64,
    pub seats: Vec<SeatDto>,
}
