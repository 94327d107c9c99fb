//! The admin sales reports in SQL: one aggregate statement per report, so a report is one
//! round trip and one consistent snapshot. What each number means is defined in
//! `crate::reports`; these statements compute exactly that.
//!
//! No index was added for them. The per-event report and an event's daily series reach
//! their rows through `reservations (event_id, serial)` and `payments_by_event`; the
//! overview and the all-events daily series scan `reservations` and `payments`. An index
//! on `reservations.created_at` would spare that scan but cost every hold an extra index
//! insert on the write-behind hot path (see `V2__derive_seat_status.sql`), for a report an
//! operator runs now and then.

use super::rows::at;
use super::{PgStore, db_err};
use crate::reports::{
    DayRange, DayReport, EventCounts, EventReport, Funnel, OverviewReport, ReservationCounts, SeatReport, TicketReport,
    TodayReport, day_end, day_start, utc_date,
};
use crate::store::StoreError;
use tiketi_engine::{EventId, Timestamp};
use tokio_postgres::Row;

/// Events by status as of `$1` (as `EventRecord::status_at` derives it), reservations by
/// status and those created in `[$2, $3)`, and money.
const OVERVIEW: &str = "
SELECT e.*, r.*, p.* FROM
    (SELECT count(*) AS events,
            count(*) FILTER (WHERE shown = 'upcoming') AS upcoming,
            count(*) FILTER (WHERE shown = 'on_sale') AS on_sale,
            count(*) FILTER (WHERE shown = 'sold_out') AS sold_out,
            count(*) FILTER (WHERE shown = 'ended') AS ended,
            count(*) FILTER (WHERE shown = 'cancelled') AS cancelled
     FROM (SELECT CASE WHEN status = 'cancelled' THEN 'cancelled'
                       WHEN $1 >= sale_end THEN 'ended'
                       WHEN $1 < sale_start THEN 'upcoming'
                       WHEN status = 'sold_out' THEN 'sold_out'
                       ELSE 'on_sale' END AS shown
           FROM events) shown) e,
    (SELECT count(*) FILTER (WHERE status = 'held') AS r_held,
            count(*) FILTER (WHERE status = 'confirmed') AS r_confirmed,
            count(*) FILTER (WHERE status = 'expired') AS r_expired,
            count(*) FILTER (WHERE status = 'cancelled') AS r_cancelled,
            count(*) FILTER (WHERE created_at >= $2 AND created_at < $3) AS today_reservations
     FROM reservations) r,
    (SELECT coalesce(sum(amount) FILTER (WHERE status IN ('done', 'cancelling')), 0)::bigint AS revenue,
            coalesce(sum(amount) FILTER (WHERE status = 'cancelled'), 0)::bigint AS refunded,
            count(*) FILTER (WHERE approved_at >= $2 AND approved_at < $3) AS today_confirmed,
            coalesce(sum(amount) FILTER (WHERE approved_at >= $2 AND approved_at < $3
                                           AND status IN ('done', 'cancelling')), 0)::bigint AS today_revenue
     FROM payments) p";

/// One event (`$1`): its seats (through the `seats` view, which derives their status),
/// its GA counters, its reservations by status and its payments.
const EVENT: &str = "
SELECT e.title, e.queue_joins, s.*, t.*, r.*, p.*
FROM events e
CROSS JOIN LATERAL
    (SELECT count(*) AS seats_total,
            count(*) FILTER (WHERE status = 'sold') AS seats_sold,
            count(*) FILTER (WHERE status = 'held') AS seats_held,
            count(*) FILTER (WHERE status = 'available') AS seats_available,
            count(*) FILTER (WHERE status = 'blocked') AS seats_blocked
     FROM seats WHERE event_id = e.id) s
CROSS JOIN LATERAL
    (SELECT coalesce(sum(capacity), 0)::bigint AS tickets_capacity,
            coalesce(sum(sold), 0)::bigint AS tickets_sold,
            coalesce(sum(held), 0)::bigint AS tickets_held
     FROM ticket_types WHERE event_id = e.id) t
CROSS JOIN LATERAL
    (SELECT count(*) FILTER (WHERE status = 'held') AS r_held,
            count(*) FILTER (WHERE status = 'confirmed') AS r_confirmed,
            count(*) FILTER (WHERE status = 'expired') AS r_expired,
            count(*) FILTER (WHERE status = 'cancelled') AS r_cancelled
     FROM reservations WHERE event_id = e.id) r
CROSS JOIN LATERAL
    (SELECT coalesce(sum(amount) FILTER (WHERE status IN ('done', 'cancelling')), 0)::bigint AS revenue,
            coalesce(sum(amount) FILTER (WHERE status = 'cancelled'), 0)::bigint AS refunded,
            count(*) FILTER (WHERE status = 'cancelled') AS refunds,
            count(DISTINCT reservation_id) FILTER (WHERE status IN ('done', 'cancelling', 'cancelled')) AS paid
     FROM payments WHERE event_id = e.id) p
WHERE e.id = $1";

/// Per UTC day of `[$1, $2)` (the days `$4` to `$4 + $5 - 1`), for one event (`$3`) or
/// all (`$3` null): reservations created, payments approved, payments refunded.
const DAILY: &str = "
WITH made AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
    FROM reservations
    WHERE created_at >= $1 AND created_at < $2 AND ($3::uuid IS NULL OR event_id = $3)
    GROUP BY 1
), approved AS (
    SELECT (approved_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n, sum(amount)::bigint AS amount
    FROM payments
    WHERE approved_at >= $1 AND approved_at < $2 AND ($3::uuid IS NULL OR event_id = $3)
    GROUP BY 1
), refunded AS (
    SELECT (cancelled_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n, sum(amount)::bigint AS amount
    FROM payments
    WHERE status = 'cancelled' AND cancelled_at >= $1 AND cancelled_at < $2 AND ($3::uuid IS NULL OR event_id = $3)
    GROUP BY 1
)
SELECT d.day, coalesce(m.n, 0) AS reservations, coalesce(a.n, 0) AS confirmed, coalesce(a.amount, 0) AS revenue,
       coalesce(f.n, 0) AS refunds, coalesce(f.amount, 0) AS refunded
FROM (SELECT $4::date + g AS day FROM generate_series(0, $5::int - 1) AS g) d
LEFT JOIN made m USING (day)
LEFT JOIN approved a USING (day)
LEFT JOIN refunded f USING (day)
ORDER BY d.day";

/// A non-negative `count(*)` or sum column.
fn count(row: &Row, column: &str) -> u64 {
    row.get::<_, i64>(column).max(0) as u64
}

fn reservation_counts(row: &Row) -> ReservationCounts {
    ReservationCounts {
        held: count(row, "r_held"),
        confirmed: count(row, "r_confirmed"),
        expired: count(row, "r_expired"),
        cancelled: count(row, "r_cancelled"),
    }
}

impl PgStore {
    pub(super) async fn report_overview(&self, now: Timestamp) -> Result<OverviewReport, StoreError> {
        let date = utc_date(now);
        let (start, end) = (day_start(date), day_end(date));
        let row = self.client().await?.query_one(OVERVIEW, &[&at(now), &at(start), &at(end)]).await.map_err(db_err)?;
        Ok(OverviewReport {
            events: EventCounts {
                total: count(&row, "events"),
                upcoming: count(&row, "upcoming"),
                on_sale: count(&row, "on_sale"),
                sold_out: count(&row, "sold_out"),
                ended: count(&row, "ended"),
                cancelled: count(&row, "cancelled"),
            },
            reservations: reservation_counts(&row),
            revenue: row.get("revenue"),
            refunded: row.get("refunded"),
            today: TodayReport {
                date,
                reservations: count(&row, "today_reservations"),
                confirmed: count(&row, "today_confirmed"),
                revenue: row.get("today_revenue"),
            },
        })
    }

    pub(super) async fn report_event(&self, event: EventId) -> Result<Option<EventReport>, StoreError> {
        let Some(row) = self.client().await?.query_opt(EVENT, &[&event.uuid()]).await.map_err(db_err)? else {
            return Ok(None);
        };
        let reservations = reservation_counts(&row);
        let (capacity, sold, held) =
            (count(&row, "tickets_capacity"), count(&row, "tickets_sold"), count(&row, "tickets_held"));
        Ok(Some(EventReport {
            event,
            title: row.get("title"),
            seats: SeatReport {
                total: count(&row, "seats_total"),
                sold: count(&row, "seats_sold"),
                held: count(&row, "seats_held"),
                available: count(&row, "seats_available"),
                blocked: count(&row, "seats_blocked"),
            },
            tickets: TicketReport { capacity, sold, held, available: capacity.saturating_sub(sold + held) },
            reservations,
            revenue: row.get("revenue"),
            refunded: row.get("refunded"),
            funnel: Funnel {
                queue_joins: count(&row, "queue_joins"),
                reservations: reservations.total(),
                paid_reservations: count(&row, "paid"),
            },
            cancellations: reservations.cancelled,
            refunds: count(&row, "refunds"),
        }))
    }

    pub(super) async fn report_daily(
        &self,
        event: Option<EventId>,
        days: DayRange,
    ) -> Result<Vec<DayReport>, StoreError> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&at(days.start()), &at(days.end()), &event.map(|e| e.uuid()), &days.from(), &(days.day_count() as i32)];
        let rows = self.client().await?.query(DAILY, &params).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|row| DayReport {
                date: row.get("day"),
                reservations: count(row, "reservations"),
                confirmed: count(row, "confirmed"),
                revenue: row.get("revenue"),
                refunds: count(row, "refunds"),
                refunded: row.get("refunded"),
            })
            .collect())
    }
}
