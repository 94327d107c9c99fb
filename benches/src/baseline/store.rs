//! [`SeatStore`]: the pool, the transaction retry loop, and the plain reads and writes
//! (users, events, the seat map, one reservation). Holds are in `holds.rs`, the ends of a
//! reservation in `lifecycle.rs`.
//!
//! Every statement is prepared once per connection (`prepare_cached`) and runs in one
//! round trip; multi-row writes send arrays and `UNNEST` them.

use super::BaselineError;
use deadpool_postgres::{GenericClient, Object, Pool};
use std::time::Duration;
use tiketi_engine::LayoutSpec;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// Times a transaction PostgreSQL aborted (deadlock, serialization failure) is run again
/// before the request gets a 503.
const MAX_RETRIES: u32 = 3;

/// The seat database. Cheap to clone.
#[derive(Clone)]
pub struct SeatStore {
    pool: Pool,
    default_hold_ttl: Duration,
}

/// A reservation as stored.
#[derive(Debug, Clone)]
pub(crate) struct Reservation {
    pub id: Uuid,
    pub number: i64,
    pub event_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub seat_ids: Vec<String>,
    pub quantity: i32,
    pub amount: i64,
    pub created_at: time::OffsetDateTime,
    pub updated_at: time::OffsetDateTime,
    pub expires_at: time::OffsetDateTime,
}

/// The columns [`Reservation::from_row`] reads, for a query over `rowlock.reservations r`
/// (a macro, so statements can `concat!` it); its seat ids come last, in seat-map order.
macro_rules! reservation_columns {
    () => {
        "r.id, r.number, r.event_id, r.user_id, r.status, r.quantity, r.amount, r.created_at, r.updated_at, \
         r.expires_at, ARRAY(SELECT rs.seat_id FROM rowlock.reservation_seats rs JOIN rowlock.seats s \
         ON s.event_id = rs.event_id AND s.seat_id = rs.seat_id WHERE rs.reservation_id = r.id ORDER BY s.ordinal)"
    };
}
pub(crate) use reservation_columns;

impl Reservation {
    /// From a row of [`reservation_columns!`].
    pub(crate) fn from_row(row: &Row) -> Result<Self, BaselineError> {
        Ok(Self {
            id: row.try_get(0)?,
            number: row.try_get(1)?,
            event_id: row.try_get(2)?,
            user_id: row.try_get(3)?,
            status: row.try_get(4)?,
            quantity: row.try_get(5)?,
            amount: row.try_get(6)?,
            created_at: row.try_get(7)?,
            updated_at: row.try_get(8)?,
            expires_at: row.try_get(9)?,
            seat_ids: row.try_get(10)?,
        })
    }
}

/// An event with its seat counts.
#[derive(Debug, Clone)]
pub(crate) struct EventView {
    pub id: Uuid,
    pub title: String,
    pub venue: String,
    pub hold_ttl_seconds: i32,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    pub blocked: i64,
}

/// One seat of the seat map.
#[derive(Debug, Clone)]
pub(crate) struct SeatRow {
    pub id: String,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price: i64,
    pub status: String,
}

/// An event to create, its layout already validated.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub title: String,
    pub venue: String,
    pub hold_ttl: Option<Duration>,
    pub layout: LayoutSpec,
}

/// A layout flattened into one array per `seats` column, for one `UNNEST` insert.
#[derive(Debug, Default)]
struct SeatColumns {
    seat_id: Vec<String>,
    section: Vec<String>,
    row_label: Vec<String>,
    number: Vec<i32>,
    price: Vec<i64>,
    row_rank: Vec<i32>,
    ordinal: Vec<i32>,
}

impl SeatColumns {
    /// Seat ids are `SECTION-ROW-NUMBER`, as in Tiketi. A row's rank orders rows best
    /// first, price descending and then layout order, which is what best-available walks.
    fn new(layout: &LayoutSpec) -> Self {
        let mut rows = Vec::new();
        for section in &layout.sections {
            for row in &section.rows {
                let price = layout.tiers[usize::from(row.tier.unwrap_or(section.tier))].price;
                rows.push((section, row, price));
            }
        }
        let mut by_price: Vec<usize> = (0..rows.len()).collect();
        by_price.sort_by_key(|&i| (std::cmp::Reverse(rows[i].2), i));
        let mut rank = vec![0i32; rows.len()];
        for (r, &i) in by_price.iter().enumerate() {
            rank[i] = r as i32;
        }
        let mut columns = Self::default();
        for (i, (section, row, price)) in rows.into_iter().enumerate() {
            for number in 1..=row.seats as i32 {
                columns.ordinal.push(columns.seat_id.len() as i32);
                columns.seat_id.push(format!("{}-{}-{number}", section.name, row.label));
                columns.section.push(section.name.clone());
                columns.row_label.push(row.label.clone());
                columns.number.push(number);
                columns.price.push(price);
                columns.row_rank.push(rank[i]);
            }
        }
        columns
    }
}

/// Decides whether a transaction PostgreSQL aborted is run again. Callers run one whole
/// transaction per attempt on one pooled connection:
///
/// ```text
/// let mut retry = Retry::default();
/// loop {
///     if let Some(done) = retry.settle(attempt(&mut client).await) {
///         return done;
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub(crate) struct Retry {
    retries: u32,
}

impl Retry {
    /// The outcome to return, or `None` to run the transaction again: PostgreSQL aborted
    /// it to break a deadlock or a serialization conflict, and it has been retried fewer
    /// than [`MAX_RETRIES`] times. After that the request gets a 503 with `Retry-After`.
    pub(crate) fn settle<T>(&mut self, outcome: Result<T, BaselineError>) -> Option<Result<T, BaselineError>> {
        match outcome {
            Err(e) if e.is_retryable() && self.retries < MAX_RETRIES => {
                self.retries += 1;
                tracing::debug!(error = %e, retries = self.retries, "transaction aborted by the database; retrying");
                None
            }
            Err(e) if e.is_retryable() => Some(Err(BaselineError::Contention(e.to_string()))),
            other => Some(other),
        }
    }
}

impl SeatStore {
    /// A store over `pool`; holds last `default_hold_ttl` unless their event says otherwise.
    pub fn new(pool: Pool, default_hold_ttl: Duration) -> Self {
        Self { pool, default_hold_ttl }
    }

    /// Closes the pool: connections are dropped as they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    pub(crate) async fn client(&self) -> Result<Object, BaselineError> {
        Ok(self.pool.get().await?)
    }

    /// Registers a user; the token is the user id.
    pub(crate) async fn register(&self, email: &str, name: &str) -> Result<Uuid, BaselineError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("INSERT INTO rowlock.users (id, email, name) VALUES ($1, $2, $3)").await?;
        let id = Uuid::new_v4();
        match client.execute(&stmt, &[&id, &email, &name]).await {
            Ok(_) => Ok(id),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(BaselineError::Conflict {
                code: "email_taken",
                message: "this e-mail is already registered".into(),
                details: serde_json::json!({ "field": "email" }),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The id of the user registered with `email`.
    pub(crate) async fn login(&self, email: &str) -> Result<Option<Uuid>, BaselineError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT id FROM rowlock.users WHERE email = $1").await?;
        Ok(client.query_opt(&stmt, &[&email]).await?.map(|row| row.try_get(0)).transpose()?)
    }

    /// Creates an event and all its seats, available, in one transaction: one insert for
    /// the event, one multi-row insert (`UNNEST`) for the seats.
    pub(crate) async fn create_event(&self, event: NewEvent) -> Result<Uuid, BaselineError> {
        let ttl = event.hold_ttl.unwrap_or(self.default_hold_ttl);
        let ttl = i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX).max(1);
        let seats = SeatColumns::new(&event.layout);
        let id = Uuid::new_v4();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let insert_event = tx
            .prepare_cached("INSERT INTO rowlock.events (id, title, venue, hold_ttl_seconds) VALUES ($1, $2, $3, $4)")
            .await?;
        tx.execute(&insert_event, &[&id, &event.title, &event.venue, &ttl]).await?;
        let insert_seats = tx
            .prepare_cached(
                "INSERT INTO rowlock.seats (event_id, seat_id, section, row_label, number, price, row_rank, ordinal)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int4[], $6::int8[], $7::int4[],
                     $8::int4[])",
            )
            .await?;
        let SeatColumns { seat_id, section, row_label, number, price, row_rank, ordinal } = &seats;
        tx.execute(&insert_seats, &[&id, seat_id, section, row_label, number, price, row_rank, ordinal]).await?;
        tx.commit().await?;
        // A bulk load: refresh the planner's statistics now rather than whenever autovacuum
        // gets to it, or the first holds of the event are planned as if it had no seats
        // (a scan of the whole event per hold).
        client.batch_execute("ANALYZE rowlock.seats").await?;
        Ok(id)
    }

    /// An event and how many of its seats are in each status.
    pub(crate) async fn event(&self, id: Uuid) -> Result<Option<EventView>, BaselineError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT e.id, e.title, e.venue, e.hold_ttl_seconds,
                     count(*) FILTER (WHERE s.status = 'available'), count(*) FILTER (WHERE s.status = 'held'),
                     count(*) FILTER (WHERE s.status = 'sold'), count(*) FILTER (WHERE s.status = 'blocked')
                 FROM rowlock.events e LEFT JOIN rowlock.seats s ON s.event_id = e.id
                 WHERE e.id = $1 GROUP BY e.id",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&id]).await? else { return Ok(None) };
        Ok(Some(EventView {
            id: row.try_get(0)?,
            title: row.try_get(1)?,
            venue: row.try_get(2)?,
            hold_ttl_seconds: row.try_get(3)?,
            available: row.try_get(4)?,
            held: row.try_get(5)?,
            sold: row.try_get(6)?,
            blocked: row.try_get(7)?,
        }))
    }

    /// Every seat of an event in layout order, or `None` if there is no such event.
    pub(crate) async fn seat_map(&self, event: Uuid) -> Result<Option<Vec<SeatRow>>, BaselineError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT seat_id, section, row_label, number, price, status FROM rowlock.seats
                 WHERE event_id = $1 ORDER BY ordinal",
            )
            .await?;
        let rows = client.query(&stmt, &[&event]).await?;
        if rows.is_empty() && !event_exists(&client, event).await? {
            return Ok(None);
        }
        let seat = |row: &Row| -> Result<SeatRow, BaselineError> {
            Ok(SeatRow {
                id: row.try_get(0)?,
                section: row.try_get(1)?,
                row: row.try_get(2)?,
                number: row.try_get(3)?,
                price: row.try_get(4)?,
                status: row.try_get(5)?,
            })
        };
        rows.iter().map(seat).collect::<Result<_, _>>().map(Some)
    }

    /// One reservation, whoever owns it.
    pub(crate) async fn reservation(&self, id: Uuid) -> Result<Option<Reservation>, BaselineError> {
        let client = self.client().await?;
        reservation_on(&client, id).await
    }
}

/// Whether the event exists.
pub(crate) async fn event_exists(client: &impl GenericClient, event: Uuid) -> Result<bool, BaselineError> {
    let stmt = client.prepare_cached("SELECT EXISTS (SELECT 1 FROM rowlock.events WHERE id = $1)").await?;
    Ok(client.query_one(&stmt, &[&event]).await?.try_get(0)?)
}

/// One reservation, read on `client` (inside or outside a transaction).
pub(crate) async fn reservation_on(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Reservation>, BaselineError> {
    let stmt = client
        .prepare_cached(concat!("SELECT ", reservation_columns!(), " FROM rowlock.reservations r WHERE r.id = $1"))
        .await?;
    client.query_opt(&stmt, &[&id]).await?.as_ref().map(Reservation::from_row).transpose()
}
