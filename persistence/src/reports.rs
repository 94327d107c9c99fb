//! Admin sales reports, as plain data, and their definitions.
//!
//! The definitions live here once: the embedded store folds its records through the
//! `tally` functions below, and the PostgreSQL store computes the same numbers with
//! aggregate SQL (`postgres/reports.rs`); the store tests hold both to identical answers.
//!
//! - **Revenue** is money captured and not refunded: the amounts of payments `done` or
//!   `cancelling` (a refund still in flight has not given the money back yet). **Refunded**
//!   is the amounts of payments `cancelled`. A reservation confirmed outside the provider
//!   (an admin's offline payment) has no payment and brings no revenue here.
//! - A **paid reservation** is one that was ever paid: it has a payment `done`,
//!   `cancelling` or `cancelled` (at most one, the database guarantees).
//! - Days are UTC calendar days.

use crate::records::EventRecord;
use std::collections::{BTreeMap, HashSet};
use tiketi_engine::{
    EventId, EventStatus, LayoutSpec, Payment, PaymentStatus, Reservation, ReservationItems, ReservationStatus,
    Timestamp,
};
use time::{Date, OffsetDateTime};

/// The longest daily series one request may ask for, in days.
pub const MAX_REPORT_DAYS: u32 = 366;

/// Whether a payment's money is captured and not given back.
fn is_revenue(p: &Payment) -> bool {
    matches!(p.status, PaymentStatus::Done | PaymentStatus::Cancelling)
}

/// Whether a payment was ever captured.
fn was_paid(p: &Payment) -> bool {
    matches!(p.status, PaymentStatus::Done | PaymentStatus::Cancelling | PaymentStatus::Cancelled)
}

/// The UTC calendar day of an instant.
pub fn utc_date(t: Timestamp) -> Date {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

/// The first instant of a UTC calendar day.
pub(crate) fn day_start(day: Date) -> Timestamp {
    let dt = day.midnight().assume_utc();
    Timestamp(i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
}

/// The instant a UTC calendar day ends (the next one's start), exclusive.
pub(crate) fn day_end(day: Date) -> Timestamp {
    day.next_day().map_or(Timestamp(i64::MAX), day_start)
}

/// Events by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// All events.
    pub total: u64,
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

impl EventCounts {
    fn add(&mut self, status: EventStatus) {
        self.total += 1;
        match status {
            EventStatus::Upcoming => self.upcoming += 1,
            EventStatus::OnSale => self.on_sale += 1,
            EventStatus::SoldOut => self.sold_out += 1,
            EventStatus::Ended => self.ended += 1,
            EventStatus::Cancelled => self.cancelled += 1,
        }
    }
}

/// Reservations by their current status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReservationCounts {
    /// Awaiting payment.
    pub held: u64,
    /// Paid (or confirmed by an admin).
    pub confirmed: u64,
    /// Lapsed unpaid.
    pub expired: u64,
    /// Cancelled by the buyer or an admin, refunded ones included.
    pub cancelled: u64,
}

impl ReservationCounts {
    fn add(&mut self, status: ReservationStatus) {
        match status {
            ReservationStatus::Held => self.held += 1,
            ReservationStatus::Confirmed => self.confirmed += 1,
            ReservationStatus::Expired => self.expired += 1,
            ReservationStatus::Cancelled => self.cancelled += 1,
        }
    }

    /// Every reservation ever created.
    pub fn total(&self) -> u64 {
        self.held + self.confirmed + self.expired + self.cancelled
    }
}

/// The current UTC day's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TodayReport {
    /// The day.
    pub date: Date,
    /// Reservations created today.
    pub reservations: u64,
    /// Payments the provider approved (captured) today, whether refunded since or not.
    pub confirmed: u64,
    /// The amounts of today's approved payments that are not refunded.
    pub revenue: i64,
}

/// Sales across every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverviewReport {
    /// Events by status, as of the report's `now`.
    pub events: EventCounts,
    /// Reservations by status.
    pub reservations: ReservationCounts,
    /// Captured and not refunded, in minor units.
    pub revenue: i64,
    /// Refunded, in minor units.
    pub refunded: i64,
    /// The UTC day of the report's `now`.
    pub today: TodayReport,
}

impl OverviewReport {
    /// The overview of these records: event statuses as of `now` (see
    /// [`EventRecord::status_at`]), "today" the UTC day of `now`.
    pub fn tally<'a>(
        events: impl IntoIterator<Item = &'a EventRecord>,
        reservations: impl IntoIterator<Item = &'a Reservation>,
        payments: impl IntoIterator<Item = &'a Payment>,
        now: Timestamp,
    ) -> Self {
        let date = utc_date(now);
        let (start, end) = (day_start(date), day_end(date));
        let today_range = |t: Timestamp| start <= t && t < end;
        let mut report = Self {
            events: EventCounts::default(),
            reservations: ReservationCounts::default(),
            revenue: 0,
            refunded: 0,
            today: TodayReport { date, reservations: 0, confirmed: 0, revenue: 0 },
        };
        for e in events {
            report.events.add(e.status_at(now));
        }
        for r in reservations {
            report.reservations.add(r.status);
            report.today.reservations += u64::from(today_range(r.created_at));
        }
        for p in payments {
            if is_revenue(p) {
                report.revenue += p.amount;
            } else if p.status == PaymentStatus::Cancelled {
                report.refunded += p.amount;
            }
            if p.approved_at.is_some_and(today_range) {
                report.today.confirmed += 1;
                if is_revenue(p) {
                    report.today.revenue += p.amount;
                }
            }
        }
        report
    }
}

/// An event's seated inventory (general admission is counted apart, in [`TicketReport`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeatReport {
    /// Seats in the layout.
    pub total: u64,
    /// Sold: in a confirmed reservation.
    pub sold: u64,
    /// Held by a reservation awaiting payment.
    pub held: u64,
    /// On sale.
    pub available: u64,
    /// Taken off sale by an admin.
    pub blocked: u64,
}

/// An event's general-admission tickets, all ticket types together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TicketReport {
    /// Tickets in all.
    pub capacity: u64,
    /// Sold.
    pub sold: u64,
    /// Held by reservations awaiting payment.
    pub held: u64,
    /// On sale.
    pub available: u64,
}

/// An event's conversion from queue to reservation to payment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Funnel {
    /// Buyers who ever joined the event's admission queue (0 without a queue).
    pub queue_joins: u64,
    /// Reservations ever created.
    pub reservations: u64,
    /// Reservations that were ever paid.
    pub paid_reservations: u64,
}

impl Funnel {
    /// Reservations per queue join; `None` without joins. May exceed 1: a buyer may
    /// reserve more than once.
    pub fn queue_to_reservation(&self) -> Option<f64> {
        ratio(self.reservations, self.queue_joins)
    }

    /// Paid reservations per reservation; `None` without reservations.
    pub fn reservation_to_payment(&self) -> Option<f64> {
        ratio(self.paid_reservations, self.reservations)
    }

    /// Paid reservations per queue join; `None` without joins.
    pub fn queue_to_payment(&self) -> Option<f64> {
        ratio(self.paid_reservations, self.queue_joins)
    }
}

/// `part / whole` rounded to 4 decimals, `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// One event's sales.
#[derive(Debug, Clone, PartialEq)]
pub struct EventReport {
    /// The event.
    pub event: EventId,
    /// Its title.
    pub title: String,
    /// Seated inventory.
    pub seats: SeatReport,
    /// General-admission inventory.
    pub tickets: TicketReport,
    /// Reservations by status.
    pub reservations: ReservationCounts,
    /// Captured and not refunded, in minor units.
    pub revenue: i64,
    /// Refunded, in minor units.
    pub refunded: i64,
    /// Queue -> reservation -> payment.
    pub funnel: Funnel,
    /// Reservations cancelled (refunded ones included).
    pub cancellations: u64,
    /// Payments refunded.
    pub refunds: u64,
}

/// Seats in a layout.
fn layout_seats(layout: &LayoutSpec) -> u64 {
    layout.sections.iter().flat_map(|s| &s.rows).map(|r| u64::from(r.seats)).sum()
}

impl EventReport {
    /// The report of one event from its record, its blocked seats, its queue-join count
    /// and its own reservations and payments.
    pub fn tally<'a>(
        record: &EventRecord,
        blocked: u64,
        queue_joins: u64,
        reservations: impl IntoIterator<Item = &'a Reservation>,
        payments: impl IntoIterator<Item = &'a Payment>,
    ) -> Self {
        let mut seats =
            SeatReport { total: record.layout.as_ref().map_or(0, layout_seats), blocked, ..Default::default() };
        let capacity = record.ticket_types.iter().map(|t| u64::from(t.capacity)).sum();
        let mut tickets = TicketReport { capacity, ..Default::default() };
        let mut counts = ReservationCounts::default();
        for r in reservations {
            counts.add(r.status);
            let quantity = u64::from(r.items.quantity());
            let (held, sold) = match r.items {
                ReservationItems::Seats(_) => (&mut seats.held, &mut seats.sold),
                ReservationItems::General { .. } => (&mut tickets.held, &mut tickets.sold),
            };
            match r.status {
                ReservationStatus::Held => *held += quantity,
                ReservationStatus::Confirmed => *sold += quantity,
                ReservationStatus::Expired | ReservationStatus::Cancelled => {}
            }
        }
        seats.available = seats.total.saturating_sub(seats.sold + seats.held + seats.blocked);
        tickets.available = tickets.capacity.saturating_sub(tickets.sold + tickets.held);
        let (mut revenue, mut refunded, mut refunds) = (0, 0, 0);
        let mut paid = HashSet::new();
        for p in payments {
            if is_revenue(p) {
                revenue += p.amount;
            } else if p.status == PaymentStatus::Cancelled {
                refunded += p.amount;
                refunds += 1;
            }
            if was_paid(p) {
                paid.insert(p.reservation);
            }
        }
        Self {
            event: record.id,
            title: record.title.clone(),
            seats,
            tickets,
            reservations: counts,
            revenue,
            refunded,
            funnel: Funnel { queue_joins, reservations: counts.total(), paid_reservations: paid.len() as u64 },
            cancellations: counts.cancelled,
            refunds,
        }
    }
}

/// An inclusive range of UTC days, `from` not after `to`, at most [`MAX_REPORT_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    from: Date,
    to: Date,
}

/// Why a [`DayRange`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DayRangeError {
    /// `from` is after `to`.
    #[error("must not be after the end of the range")]
    Reversed,
    /// More than [`MAX_REPORT_DAYS`] days.
    #[error("the range must be at most {MAX_REPORT_DAYS} days")]
    TooLong,
}

impl DayRange {
    /// The days `from` to `to`, both included.
    pub fn new(from: Date, to: Date) -> Result<Self, DayRangeError> {
        if from > to {
            return Err(DayRangeError::Reversed);
        }
        if (to - from).whole_days() >= i64::from(MAX_REPORT_DAYS) {
            return Err(DayRangeError::TooLong);
        }
        Ok(Self { from, to })
    }

    /// The `days` days ending with `last` (1 to [`MAX_REPORT_DAYS`]).
    pub fn ending(last: Date, days: u32) -> Result<Self, DayRangeError> {
        let back = time::Duration::days(i64::from(days.clamp(1, MAX_REPORT_DAYS) - 1));
        Self::new(last.checked_sub(back).unwrap_or(Date::MIN), last)
    }

    /// The first day.
    pub fn from(&self) -> Date {
        self.from
    }

    /// The last day.
    pub fn to(&self) -> Date {
        self.to
    }

    /// How many days it spans.
    pub fn day_count(&self) -> u32 {
        (self.to - self.from).whole_days() as u32 + 1
    }

    /// Its days, in order.
    pub fn days(&self) -> impl Iterator<Item = Date> + use<> {
        let to = self.to;
        std::iter::successors(Some(self.from), move |d| d.next_day().filter(|n| *n <= to))
    }

    /// The first instant of the range.
    pub fn start(&self) -> Timestamp {
        day_start(self.from)
    }

    /// The instant the range ends, exclusive.
    pub fn end(&self) -> Timestamp {
        day_end(self.to)
    }
}

/// One UTC day's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayReport {
    /// The day.
    pub date: Date,
    /// Reservations created that day.
    pub reservations: u64,
    /// Payments the provider approved (captured) that day.
    pub confirmed: u64,
    /// The amounts approved that day, gross: refunds are counted on the day they happen.
    pub revenue: i64,
    /// Payments refunded that day.
    pub refunds: u64,
    /// The amounts refunded that day.
    pub refunded: i64,
}

impl DayReport {
    /// A day without activity.
    pub fn empty(date: Date) -> Self {
        Self { date, reservations: 0, confirmed: 0, revenue: 0, refunds: 0, refunded: 0 }
    }

    /// One entry for each day of `days`, zeros included, from these records.
    pub fn tally<'a>(
        days: DayRange,
        reservations: impl IntoIterator<Item = &'a Reservation>,
        payments: impl IntoIterator<Item = &'a Payment>,
    ) -> Vec<Self> {
        let mut series: BTreeMap<Date, Self> = days.days().map(|d| (d, Self::empty(d))).collect();
        let (start, end) = (days.start(), days.end());
        // The entry of the day `t` falls on, if it is in the range.
        let slot = |t: Timestamp| (start <= t && t < end).then(|| utc_date(t));
        for r in reservations {
            if let Some(d) = slot(r.created_at).and_then(|d| series.get_mut(&d)) {
                d.reservations += 1;
            }
        }
        for p in payments {
            if let Some(d) = p.approved_at.and_then(slot).and_then(|d| series.get_mut(&d)) {
                d.confirmed += 1;
                d.revenue += p.amount;
            }
            if p.status == PaymentStatus::Cancelled
                && let Some(d) = p.cancelled_at.and_then(slot).and_then(|d| series.get_mut(&d))
            {
                d.refunds += 1;
                d.refunded += p.amount;
            }
        }
        series.into_values().collect()
    }
}
