//! Holding seats: the row-lock design under test.
//!
//! Every hold is one READ COMMITTED transaction: lock the seats, check them, then one
//! statement inserts the reservation, marks the seats held and lists them, then `COMMIT`:
//! four round trips (more only while best-available looks for adjacent seats).
//!
//! Lock discipline, which keeps holds free of deadlocks among themselves: a transaction
//! that waits for seat locks takes them in `seat_id` order, and one that takes them in
//! another order never waits (`SKIP LOCKED`). The expiry sweeper, cancel and confirm lock
//! seats in the same order (see `lifecycle.rs`). A deadlock with anything else is broken
//! by PostgreSQL, and the transaction is run again.
//!
//! - **Named seats** (`seatIds`): `SELECT … ORDER BY seat_id FOR UPDATE` waits for
//!   concurrent holds of the same seats, then sees their outcome: one buyer wins, the
//!   others find the seats held and get a 409 naming them.
//! - **Best available**: `SELECT … WHERE status = 'available' ORDER BY row_rank, number
//!   LIMIT n FOR UPDATE SKIP LOCKED`, i.e. price descending, front rows first, skipping
//!   seats another transaction has locked. Concurrent buyers therefore lock disjoint
//!   windows of seats at once instead of queueing for (or racing to) the same best seats;
//!   the price is that a seat locked by a transaction about to fail is passed over, so a
//!   buyer may get a 409 in the last moments of a sell-out while another's hold is still
//!   undecided. Not adjacent, the first window is the answer.
//! - **Adjacent** (the default): the same statement, continued from the last seat seen in
//!   windows that double in size (n, 2n, 4n, … at most [`MAX_WINDOW`]), until `n` locked
//!   seats in a row have consecutive numbers; the other seats the transaction locked on the
//!   way are released at its commit, a few milliseconds later. A seat someone else has
//!   locked breaks a run, as a held one does. After [`MAX_SCAN`] seats without a run the
//!   answer is a 409. (Looking for the run first and locking it afterwards, instead, sends
//!   every concurrent buyer to the same run: all but one lose and try the next, which
//!   collapsed throughput to a few hundred holds a second in a 20,000-seat event.)

use super::BaselineError;
use super::store::{Reservation, Retry, SeatStore, event_exists};
use deadpool_postgres::{GenericClient, Object, Transaction};
use std::collections::HashMap;
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

/// Largest window of seats one best-available statement locks.
const MAX_WINDOW: i64 = 256;
/// Most available seats an adjacent hold looks through for a run before it answers 409.
const MAX_SCAN: usize = 4096;

/// Lock the named seats, in `seat_id` order, waiting for other holders.
const LOCK_NAMED: &str = "SELECT seat_id, status, price FROM rowlock.seats
    WHERE event_id = $1 AND seat_id = ANY($2) ORDER BY seat_id FOR UPDATE";

/// Lock the `$2` best available seats after position (`$4`, `$5`), skipping seats other
/// transactions have locked.
const LOCK_BEST: &str = "SELECT seat_id, price, row_rank, number FROM rowlock.seats
    WHERE event_id = $1 AND status = 'available' AND ($3::text IS NULL OR section = $3)
        AND (row_rank, number) > ($4, $5)
    ORDER BY row_rank, number LIMIT $2 FOR UPDATE SKIP LOCKED";

/// Before every seat: row ranks start at 0, seat numbers at 1.
const START: (i32, i32) = (-1, 0);

/// Insert the reservation (its expiry from the event's hold TTL), mark its seats held and
/// list them, in one statement. The seats are locked and checked by the caller.
const WRITE_HOLD: &str = "WITH r AS (
        INSERT INTO rowlock.reservations
            (id, event_id, user_id, status, quantity, amount, created_at, updated_at, expires_at)
        SELECT $1, e.id, $3, 'held', cardinality($4::text[]), $5, now(), now(),
            now() + make_interval(secs => e.hold_ttl_seconds)
        FROM rowlock.events e WHERE e.id = $2
        RETURNING number, created_at, expires_at
    ), held AS (
        UPDATE rowlock.seats SET status = 'held', reservation_id = $1 WHERE event_id = $2 AND seat_id = ANY($4)
    ), listed AS (
        INSERT INTO rowlock.reservation_seats (reservation_id, event_id, seat_id) SELECT $1, $2, unnest($4::text[])
    )
    SELECT number, created_at, expires_at FROM r";

/// What a buyer asks to hold.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    /// These seats, all or none.
    Seats(Vec<String>),
    /// The best `quantity` seats, optionally in one section, side by side in one row if
    /// `adjacent`.
    BestAvailable { quantity: u32, section: Option<String>, adjacent: bool },
}

impl SeatStore {
    /// Holds seats for `user`, all or none.
    pub(crate) async fn hold(
        &self,
        event: Uuid,
        user: Uuid,
        selection: &Selection,
    ) -> Result<Reservation, BaselineError> {
        let mut client = self.client().await?;
        let mut retry = Retry::default();
        loop {
            let attempt = match selection {
                Selection::Seats(ids) => hold_named(&mut client, event, user, ids).await,
                Selection::BestAvailable { quantity, section, adjacent } => {
                    hold_best(&mut client, event, user, *quantity, section.as_deref(), *adjacent).await
                }
            };
            if let Some(done) = retry.settle(attempt) {
                return done;
            }
        }
    }
}

async fn begin(client: &mut Object) -> Result<Transaction<'_>, BaselineError> {
    Ok(client.build_transaction().isolation_level(IsolationLevel::ReadCommitted).start().await?)
}

async fn hold_named(
    client: &mut Object,
    event: Uuid,
    user: Uuid,
    ids: &[String],
) -> Result<Reservation, BaselineError> {
    let tx = begin(client).await?;
    let lock = tx.prepare_cached(LOCK_NAMED).await?;
    let rows = tx.query(&lock, &[&event, &ids]).await?;
    let mut status = HashMap::with_capacity(rows.len());
    let mut amount = 0i64;
    for row in &rows {
        status.insert(row.try_get::<_, &str>(0)?, row.try_get::<_, &str>(1)? == "available");
        amount += row.try_get::<_, i64>(2)?;
    }
    if status.len() < ids.len() {
        if status.is_empty() && !event_exists(&tx, event).await? {
            return Err(BaselineError::NotFound { what: "event" });
        }
        let unknown: Vec<&str> = ids.iter().map(String::as_str).filter(|id| !status.contains_key(id)).collect();
        return Err(BaselineError::invalid("seatIds", format!("unknown seat ids: {}", unknown.join(", "))));
    }
    let unavailable: Vec<String> = ids.iter().filter(|id| !status[id.as_str()]).cloned().collect();
    if !unavailable.is_empty() {
        return Err(BaselineError::SeatsUnavailable(unavailable));
    }
    let reservation = write_hold(&tx, event, user, ids.to_vec(), amount).await?;
    tx.commit().await?;
    Ok(reservation)
}

/// A seat best-available has locked.
struct Locked {
    id: String,
    price: i64,
    row_rank: i32,
    number: i32,
}

async fn hold_best(
    client: &mut Object,
    event: Uuid,
    user: Uuid,
    quantity: u32,
    section: Option<&str>,
    adjacent: bool,
) -> Result<Reservation, BaselineError> {
    let n = quantity as usize;
    let tx = begin(client).await?;
    let lock = tx.prepare_cached(LOCK_BEST).await?;
    let mut window = i64::from(quantity);
    let mut after = START;
    let mut seen = 0;
    // The seats being gathered: any `n` if not adjacent, else consecutive ones of one row.
    let mut run: Vec<Locked> = Vec::with_capacity(n);
    loop {
        let rows = tx.query(&lock, &[&event, &window, &section, &after.0, &after.1]).await?;
        for row in &rows {
            let seat = Locked {
                id: row.try_get(0)?,
                price: row.try_get(1)?,
                row_rank: row.try_get(2)?,
                number: row.try_get(3)?,
            };
            after = (seat.row_rank, seat.number);
            let continues = run.last().is_none_or(|l| l.row_rank == seat.row_rank && l.number + 1 == seat.number);
            if adjacent && !continues {
                run.clear();
            }
            run.push(seat);
            if run.len() == n {
                let amount = run.iter().map(|s| s.price).sum();
                let ids = run.into_iter().map(|s| s.id).collect();
                let reservation = write_hold(&tx, event, user, ids, amount).await?;
                tx.commit().await?;
                return Ok(reservation);
            }
        }
        seen += rows.len();
        if rows.len() < window as usize || seen >= MAX_SCAN {
            return Err(no_seats(&tx, event, quantity, section).await);
        }
        window = (window * 2).min(MAX_WINDOW);
    }
}

/// Writes a hold of `seat_ids`, which the caller has locked and found available.
async fn write_hold(
    tx: &Transaction<'_>,
    event: Uuid,
    user: Uuid,
    seat_ids: Vec<String>,
    amount: i64,
) -> Result<Reservation, BaselineError> {
    let id = Uuid::new_v4();
    let write = tx.prepare_cached(WRITE_HOLD).await?;
    let row = tx.query_one(&write, &[&id, &event, &user, &seat_ids, &amount]).await?;
    let created_at = row.try_get(1)?;
    Ok(Reservation {
        id,
        number: row.try_get(0)?,
        event_id: event,
        user_id: user,
        status: "held".into(),
        quantity: seat_ids.len() as i32,
        seat_ids,
        amount,
        created_at,
        updated_at: created_at,
        expires_at: row.try_get(2)?,
    })
}

/// Why best-available found nothing: no such event (404), no such section (422), or not
/// enough seats (409).
async fn no_seats(client: &impl GenericClient, event: Uuid, quantity: u32, section: Option<&str>) -> BaselineError {
    let check = async {
        let stmt = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM rowlock.events WHERE id = $1),
                     $2::text IS NULL OR EXISTS (SELECT 1 FROM rowlock.seats WHERE event_id = $1 AND section = $2)",
            )
            .await?;
        let row = client.query_one(&stmt, &[&event, &section]).await?;
        Ok::<_, BaselineError>((row.try_get::<_, bool>(0)?, row.try_get::<_, bool>(1)?))
    };
    match check.await {
        Ok((false, _)) => BaselineError::NotFound { what: "event" },
        Ok((true, false)) => {
            BaselineError::invalid("bestAvailable.section", format!("no section {}", section.unwrap_or_default()))
        }
        Ok((true, true)) => BaselineError::NoSeatsTogether { quantity },
        Err(e) => e,
    }
}
