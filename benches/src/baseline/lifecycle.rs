//! How a hold ends: confirmed (its seats sold), cancelled or expired (its seats released).
//!
//! Each is one statement, so one round trip and its own transaction: change the
//! reservation's status if it is in a state that allows it, lock its seats in `seat_id`
//! order (the order holds wait in, so the two never deadlock), and update them. The
//! reservation's row lock decides races between them: a confirm and the expiry sweeper
//! cannot both win.

use super::BaselineError;
use super::store::{Reservation, Retry, SeatStore, reservation_columns, reservation_on};
use serde_json::json;
use uuid::Uuid;

/// One statement that moves the caller's reservation `$1` (owned by `$2`) to `$to` if
/// `$from` holds, sets its seats with `$seats`, and returns it.
macro_rules! finish {
    ($from:literal, $to:literal, $seats:literal) => {
        concat!(
            "WITH r AS (
                UPDATE rowlock.reservations SET status = ",
            $to,
            ", updated_at = now() WHERE id = $1 AND user_id = $2 AND ",
            $from,
            " RETURNING *
            ), locked AS (
                SELECT s.event_id, s.seat_id FROM rowlock.seats s
                JOIN rowlock.reservation_seats rs ON rs.event_id = s.event_id AND rs.seat_id = s.seat_id
                JOIN r ON rs.reservation_id = r.id
                WHERE s.reservation_id = r.id
                ORDER BY s.seat_id FOR UPDATE OF s
            ), changed AS (
                UPDATE rowlock.seats s SET ",
            $seats,
            " FROM locked l WHERE s.event_id = l.event_id AND s.seat_id = l.seat_id
            )
            SELECT ",
            reservation_columns!(),
            " FROM r"
        )
    };
}

/// A paid reservation may be cancelled too (the baseline has no refunds to wait for).
const CANCEL: &str =
    finish!("status IN ('held', 'confirmed')", "'cancelled'", "status = 'available', reservation_id = NULL");

/// Only a hold that has not lapsed can be paid for, even if the sweeper has not run yet.
const CONFIRM: &str = finish!("status = 'held' AND expires_at > now()", "'confirmed'", "status = 'sold'");

/// Expire up to `$1` lapsed holds (skipping any a confirm or cancel is deciding right
/// now), release their seats in `(event_id, seat_id)` order, and count them.
const EXPIRE: &str = "WITH r AS (
        UPDATE rowlock.reservations SET status = 'expired', updated_at = now()
        WHERE id IN (
            SELECT id FROM rowlock.reservations WHERE status = 'held' AND expires_at < now()
            ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        RETURNING id
    ), locked AS (
        SELECT s.event_id, s.seat_id FROM rowlock.seats s
        JOIN rowlock.reservation_seats rs ON rs.event_id = s.event_id AND rs.seat_id = s.seat_id
        JOIN r ON rs.reservation_id = r.id
        WHERE s.reservation_id = r.id
        ORDER BY s.event_id, s.seat_id FOR UPDATE OF s
    ), released AS (
        UPDATE rowlock.seats s SET status = 'available', reservation_id = NULL
        FROM locked l WHERE s.event_id = l.event_id AND s.seat_id = l.seat_id
    )
    SELECT count(*) FROM r";

/// Where a reservation is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Cancel,
    Confirm,
}

impl SeatStore {
    /// Cancels the caller's reservation and releases its seats. Cancelling a cancelled
    /// reservation changes nothing; an expired one is a conflict.
    pub(crate) async fn cancel(&self, id: Uuid, user: Uuid) -> Result<Reservation, BaselineError> {
        self.finish(id, user, Ending::Cancel).await
    }

    /// Confirms (pays for) the caller's hold: its seats become sold.
    pub(crate) async fn confirm(&self, id: Uuid, user: Uuid) -> Result<Reservation, BaselineError> {
        self.finish(id, user, Ending::Confirm).await
    }

    /// Expires up to `batch` lapsed holds; returns how many.
    pub(crate) async fn expire_due(&self, batch: i64) -> Result<i64, BaselineError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(EXPIRE).await?;
        let mut retry = Retry::default();
        loop {
            let attempt = client.query_one(&stmt, &[&batch]).await.map_err(BaselineError::from);
            if let Some(done) = retry.settle(attempt.and_then(|row| Ok(row.try_get(0)?))) {
                return done;
            }
        }
    }

    async fn finish(&self, id: Uuid, user: Uuid, ending: Ending) -> Result<Reservation, BaselineError> {
        let sql = match ending {
            Ending::Cancel => CANCEL,
            Ending::Confirm => CONFIRM,
        };
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await?;
        let mut retry = Retry::default();
        let row = loop {
            if let Some(done) = retry.settle(client.query_opt(&stmt, &[&id, &user]).await.map_err(Into::into)) {
                break done?;
            }
        };
        if let Some(row) = row {
            return Reservation::from_row(&row);
        }
        // Refused: say why, from the reservation as it is now.
        let current = reservation_on(&client, id).await?.filter(|r| r.user_id == user);
        let current = current.ok_or(BaselineError::NotFound { what: "reservation" })?;
        match (ending, current.status.as_str()) {
            (Ending::Cancel, "cancelled") => Ok(current),
            (Ending::Confirm, "held") => Err(BaselineError::Conflict {
                code: "reservation_expired",
                message: "the hold has expired".into(),
                details: json!({}),
            }),
            (_, status) => {
                let to = if ending == Ending::Cancel { "cancelled" } else { "confirmed" };
                Err(BaselineError::Conflict {
                    code: "invalid_state",
                    message: format!("reservation is {status}, cannot become {to}"),
                    details: json!({ "status": status, "requested": to }),
                })
            }
        }
    }
}
