//! Admin sales reports: an overview of every event, one event's inventory, money and
//! conversion funnel, and a daily series. Every route requires the admin role.
//!
//! Reports read the store, which trails the live event actors by one group commit
//! (write-behind). Each route first waits, briefly, for what the journal holds to commit,
//! so a report taken right after a sale includes it; a hold the actor has decided but not
//! yet handed to the journal may still be missing. The definitions (what counts as
//! revenue, a paid reservation, a day) are `tiketi_persistence`'s `reports` module's.

use crate::error::ApiError;
use crate::extract::{AdminUser, ApiPath, ApiQuery};
use crate::routes::reservations::caught_up;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tiketi_engine::EventId;
use tiketi_persistence::{
    DayRange, DayRangeError, DayReport, EventReport, MAX_REPORT_DAYS, OverviewReport, ReservationCounts, utc_date,
};
use time::Date;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Days in the daily series when `from` is not given.
const DEFAULT_DAYS: u32 = 30;

const DAY_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// The report routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stats_overview)).routes(routes!(stats_event)).routes(routes!(stats_daily))
}

/// Events by status (as of now); the keys are the status spellings.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsByStatusDto {
    /// Not on sale yet.
    pub upcoming: u64,
    /// On sale.
    pub on_sale: u64,
    /// On sale, nothing left.
    pub sold_out: u64,
    /// Past sale end.
    pub ended: u64,
    /// Cancelled by an admin.
    pub cancelled: u64,
}

/// Events, all and by status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTotalsDto {
    /// All events.
    pub total: u64,
    /// By status, as of now.
    pub by_status: EventsByStatusDto,
}

/// Reservations by their current status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationCountsDto {
    /// Awaiting payment.
    pub held: u64,
    /// Paid (or confirmed by an admin).
    pub confirmed: u64,
    /// Lapsed unpaid.
    pub expired: u64,
    /// Cancelled, refunded ones included.
    pub cancelled: u64,
}

impl From<ReservationCounts> for ReservationCountsDto {
    fn from(c: ReservationCounts) -> Self {
        Self { held: c.held, confirmed: c.confirmed, expired: c.expired, cancelled: c.cancelled }
    }
}

/// Today's activity (the current UTC day).
#[derive(Debug, Serialize, ToSchema)]
pub struct TodayDto {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// Reservations created today.
    pub reservations: u64,
    /// Payments captured today, refunded since or not.
    pub confirmed: u64,
    /// The amounts captured today and not refunded, in minor units.
    pub revenue: i64,
}

/// `GET /admin/stats/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverviewDto {
    /// Events.
    pub events: EventTotalsDto,
    /// Reservations by status.
    pub reservations: ReservationCountsDto,
    /// Captured and not refunded (payments `done` or `cancelling`), in minor units.
    pub revenue: i64,
    /// Refunded (payments `cancelled`), in minor units.
    pub refunded: i64,
    /// The current UTC day.
    pub today: TodayDto,
}

impl From<OverviewReport> for OverviewDto {
    fn from(r: OverviewReport) -> Self {
        let e = r.events;
        Self {
            events: EventTotalsDto {
                total: e.total,
                by_status: EventsByStatusDto {
                    upcoming: e.upcoming,
                    on_sale: e.on_sale,
                    sold_out: e.sold_out,
                    ended: e.ended,
                    cancelled: e.cancelled,
                },
            },
            reservations: r.reservations.into(),
            revenue: r.revenue,
            refunded: r.refunded,
            today: TodayDto {
                date: day(r.today.date),
                reservations: r.today.reservations,
                confirmed: r.today.confirmed,
                revenue: r.today.revenue,
            },
        }
    }
}

/// An event's seated inventory (GA tickets are counted apart, under `tickets`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SeatsDto {
    /// Seats in the layout (0 for a GA-only event).
    pub total: u64,
    /// In confirmed reservations.
    pub sold: u64,
    /// In reservations awaiting payment.
    pub held: u64,
    /// On sale.
    pub available: u64,
    /// Taken off sale by an admin.
    pub blocked: u64,
}

/// An event's general-admission tickets, every ticket type together.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketsDto {
    /// Tickets in all (0 without ticket types).
    pub capacity: u64,
    /// Sold.
    pub sold: u64,
    /// Held by reservations awaiting payment.
    pub held: u64,
    /// On sale.
    pub available: u64,
}

/// Conversion from queue join to reservation to payment. Ratios have 4 decimals and are
/// `null` when their denominator is 0 (e.g. an event without a queue has no joins).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunnelDto {
    /// Joins of the admission queue (a buyer who leaves and joins again counts twice).
    pub queue_joins: u64,
    /// Reservations ever created.
    pub reservations: u64,
    /// Payments ever confirmed (captured), refunded ones included: one per reservation
    /// that was ever paid.
    pub confirmed_payments: u64,
    /// `reservations / queueJoins` (may exceed 1: a buyer may reserve more than once).
    pub queue_to_reservation: Option<f64>,
    /// `confirmedPayments / reservations`.
    pub reservation_to_payment: Option<f64>,
    /// `confirmedPayments / queueJoins`.
    pub queue_to_payment: Option<f64>,
}

/// `GET /admin/stats/events/{eventId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStatsDto {
    /// The event.
    pub event_id: Uuid,
    /// Its title.
    pub title: String,
    /// Seated inventory.
    pub seats: SeatsDto,
    /// General-admission inventory.
    pub tickets: TicketsDto,
    /// Reservations by status.
    pub reservations: ReservationCountsDto,
    /// Captured and not refunded (payments `done` or `cancelling`), in minor units.
    pub revenue: i64,
    /// Refunded (payments `cancelled`), in minor units.
    pub refunded: i64,
    /// Queue -> reservation -> payment.
    pub funnel: FunnelDto,
    /// Reservations cancelled, refunded ones included.
    pub cancellations: u64,
    /// Payments refunded.
    pub refunds: u64,
}

impl From<EventReport> for EventStatsDto {
    fn from(r: EventReport) -> Self {
        let (s, t, f) = (r.seats, r.tickets, r.funnel);
        Self {
            event_id: r.event.uuid(),
            title: r.title,
            seats: SeatsDto { total: s.total, sold: s.sold, held: s.held, available: s.available, blocked: s.blocked },
            tickets: TicketsDto { capacity: t.capacity, sold: t.sold, held: t.held, available: t.available },
            reservations: r.reservations.into(),
            revenue: r.revenue,
            refunded: r.refunded,
            funnel: FunnelDto {
                queue_joins: f.queue_joins,
                reservations: f.reservations,
                confirmed_payments: f.paid_reservations,
                queue_to_reservation: f.queue_to_reservation(),
                reservation_to_payment: f.reservation_to_payment(),
                queue_to_payment: f.queue_to_payment(),
            },
            cancellations: r.cancellations,
            refunds: r.refunds,
        }
    }
}

/// One UTC day of `GET /admin/stats/daily`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayDto {
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// Reservations created that day.
    pub reservations: u64,
    /// Payments captured that day.
    pub confirmed: u64,
    /// The amounts captured that day, gross (a refund counts on the day it happens).
    pub revenue: i64,
    /// Payments refunded that day.
    pub refunds: u64,
    /// The amounts refunded that day.
    pub refunded: i64,
}

impl From<DayReport> for DayDto {
    fn from(d: DayReport) -> Self {
        Self {
            date: day(d.date),
            reservations: d.reservations,
            confirmed: d.confirmed,
            revenue: d.revenue,
            refunds: d.refunds,
            refunded: d.refunded,
        }
    }
}

/// `GET /admin/stats/daily` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DailyQuery {
    /// Only this event's activity (default: every event's).
    pub event_id: Option<Uuid>,
    /// First day, `YYYY-MM-DD` (UTC; default: 29 days before `to`).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC; default: today).
    pub to: Option<String>,
}

fn day(date: Date) -> String {
    date.format(DAY_FORMAT).unwrap_or_default()
}

fn parse_day(field: &str, value: Option<&str>) -> Result<Option<Date>, ApiError> {
    value
        .map(|v| Date::parse(v, DAY_FORMAT).map_err(|_| ApiError::invalid(field, "must be a date, YYYY-MM-DD")))
        .transpose()
}

impl DailyQuery {
    /// The days asked for: `from` to `to` inclusive; `to` defaults to `today`, `from` to
    /// 29 days before `to`.
    fn days(&self, today: Date) -> Result<DayRange, ApiError> {
        let to = parse_day("to", self.to.as_deref())?;
        let from = parse_day("from", self.from.as_deref())?;
        let last = to.unwrap_or(today);
        let range = match from {
            Some(first) => DayRange::new(first, last),
            None => DayRange::ending(last, DEFAULT_DAYS),
        };
        range.map_err(|e| match e {
            DayRangeError::Reversed => ApiError::invalid("from", "must not be after to (today by default)"),
            // Blame the bound that was given; with both given, the end.
            DayRangeError::TooLong => ApiError::invalid(
                if to.is_some() { "to" } else { "from" },
                format!("the range from..to must span at most {MAX_REPORT_DAYS} days"),
            ),
        })
    }
}

/// Sales across every event: events by status, reservations by status, revenue, refunds,
/// and today's activity (UTC). Read from the store, which trails the live actors by one
/// group commit.
#[utoipa::path(get, path = "/admin/stats/overview", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = OverviewDto), (status = 401, description = "not signed in"),
        (status = 403, description = "not an admin")))]
async fn stats_overview(State(state): State<AppState>, _: AdminUser) -> Result<Json<OverviewDto>, ApiError> {
    // The store includes sales made a moment ago (bounded: a slow database reports what
    // it has).
    caught_up(&state).await;
    Ok(Json(state.store().overview_report(state.now()).await?.into()))
}

/// One event's sales: seats and GA tickets by status, reservations by status, revenue,
/// refunds, and the conversion funnel from queue join to reservation to payment. Read from
/// the store, which trails the live actors by one group commit.
#[utoipa::path(get, path = "/admin/stats/events/{eventId}", tag = "admin", security(("bearer" = [])),
    params(("eventId" = Uuid, Path)),
    responses((status = 200, body = EventStatsDto), (status = 401, description = "not signed in"),
        (status = 403, description = "not an admin"), (status = 404, description = "no such event")))]
async fn stats_event(
    State(state): State<AppState>,
    _: AdminUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EventStatsDto>, ApiError> {
    // The store includes sales made a moment ago (bounded: a slow database reports what
    // it has).
    caught_up(&state).await;
    let report = state.store().event_report(EventId(id)).await?.ok_or(ApiError::NotFound { what: "event" })?;
    Ok(Json(report.into()))
}

/// Activity per UTC day, one entry per day of `from..=to` (zeros included, at most 366
/// days; the last 30 by default), for one event or all. Read from the store, which trails
/// the live actors by one group commit.
#[utoipa::path(get, path = "/admin/stats/daily", tag = "admin", security(("bearer" = [])), params(DailyQuery),
    responses((status = 200, body = Vec<DayDto>), (status = 401, description = "not signed in"),
        (status = 403, description = "not an admin"), (status = 404, description = "no such event"),
        (status = 422, description = "invalid or too long a range (the field is named)")))]
async fn stats_daily(
    State(state): State<AppState>,
    _: AdminUser,
    ApiQuery(q): ApiQuery<DailyQuery>,
) -> Result<Json<Vec<DayDto>>, ApiError> {
    let days = q.days(utc_date(state.now()))?;
    let event = q.event_id.map(EventId);
    if let Some(id) = event
        && state.store().event(id).await?.is_none()
    {
        return Err(ApiError::NotFound { what: "event" });
    }
    // The store includes sales made a moment ago (bounded: a slow database reports what
    // it has).
    caught_up(&state).await;
    let series = state.store().daily_report(event, days).await?;
    Ok(Json(series.into_iter().map(DayDto::from).collect()))
}
