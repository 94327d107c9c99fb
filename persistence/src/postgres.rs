//! The PostgreSQL store (tokio-postgres over a deadpool pool): Tiketi's system of record.
//!
//! Event state arrives only through [`Store::append`], from the write-behind journal: one
//! transaction per batch, a fixed handful of multi-row statements (`UNNEST` arrays)
//! however many change sets the batch carries. The schema (see `migrations/`) enforces the
//! invariants on its own: a partial unique index keeps a seat in at most one live
//! reservation, `CHECK`s keep GA counters within capacity.

mod append;
pub mod cluster;
mod reports;
mod rows;

use crate::records::{
    AuditRecord, EventFilter, EventRecord, EventSnapshot, IdempotencyRecord, JournalEntry, LayoutRecord, NewUser, Page,
    RefreshTokenRecord, ReservationFilter, UserRecord,
};
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rows::{
    at, audit_from_row, event_from_row, idempotency_from_row, layout_from_row, payment_from_row, reservation_from_row,
    ts, user_from_row,
};
use std::time::Duration;
use tiketi_engine::{
    EventId, OwedRefund, Payment, QueueMember, Reservation, ReservationId, SeatIndex, SeatMap, Timestamp, UserId,
};

refinery::embed_migrations!("../migrations");

/// A PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

/// Maps a driver error: constraint violations are conflicts (the database refused the
/// write); everything else means the database is not reachable or failed.
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("23") => {
            StoreError::Conflict(format!("{} ({})", db.message(), db.constraint().unwrap_or("no constraint")))
        }
        Some(db) => StoreError::Unavailable(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl PgStore {
    /// Connects a pool of `size` connections to `url` (nothing is opened until first use).
    pub fn connect(url: &str, size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("bad database url: {e}")))?;
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            // A database that does not answer is reported as unavailable, not waited for.
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// Applies the embedded migrations (`migrations/V*.sql`) that have not run yet; returns
    /// the versions applied. Nodes starting together (a cluster's first deploy) take turns:
    /// a session-level advisory lock is held around the run, so the second finds the work
    /// done instead of racing for the history table.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        /// Any fixed key; "tiketi" in ASCII.
        const MIGRATION_LOCK: i64 = 0x7469_6b65_7469;
        let mut client = self.client().await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_err)?;
        let report = migrations::runner().run_async(&mut **client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        let report = report.map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        unlocked.map_err(db_err)?;
        Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await.map_err(db_err)?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        let id = UserId(uuid::Uuid::new_v4());
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO users (id, email, password_hash, name, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING id, email, password_hash, name, role, created_at",
                &[&id.uuid(), &user.email, &user.password_hash, &user.name, &user.role.as_str(), &at(user.created_at)],
            )
            .await
            .map_err(db_err)?;
        user_from_row(&row)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, email, password_hash, name, role, created_at FROM users WHERE email = lower($1)",
                &[&email],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn existing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.uuid()).collect();
        let rows =
            self.client().await?.query("SELECT id FROM users WHERE id = ANY($1)", &[&ids]).await.map_err(db_err)?;
        Ok(rows.iter().map(|row| UserId(row.get(0))).collect())
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT id, email, password_hash, name, role, created_at FROM users WHERE id = $1",
                &[&id.uuid()],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES ($1, $2, $3)",
                &[&token.hash, &token.user.uuid(), &at(token.expires_at)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn take_refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("DELETE FROM refresh_tokens WHERE hash = $1 RETURNING hash, user_id, expires_at", &[&hash])
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| RefreshTokenRecord { hash: r.get(0), user: UserId(r.get(1)), expires_at: ts(r.get(2)) }))
    }

    async fn create_layout(&self, layout: LayoutRecord) -> Result<(), StoreError> {
        let spec = serde_json::to_value(&layout.spec).map_err(|e| StoreError::Conflict(e.to_string()))?;
        self.client()
            .await?
            .execute(
                "INSERT INTO layouts (id, name, spec, seat_count, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&layout.id, &layout.name, &spec, &(layout.seat_count as i32), &at(layout.created_at)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn layouts(&self) -> Result<Vec<LayoutRecord>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT id, name, spec, seat_count, created_at FROM layouts ORDER BY created_at, id", &[])
            .await
            .map_err(db_err)?;
        rows.iter().map(layout_from_row).collect()
    }

    async fn layout(&self, id: uuid::Uuid) -> Result<Option<LayoutRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT id, name, spec, seat_count, created_at FROM layouts WHERE id = $1", &[&id])
            .await
            .map_err(db_err)?;
        row.as_ref().map(layout_from_row).transpose()
    }

    async fn create_event(&self, e: EventRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let layout =
            e.layout.as_ref().map(serde_json::to_value).transpose().map_err(|e| StoreError::Conflict(e.to_string()))?;
        tx.execute(
            "INSERT INTO events (id, title, description, venue, artist, event_date, sale_start, sale_end, layout,
                layout_id, per_user_limit, hold_ttl_ms, max_per_reservation, status, created_at, updated_at,
                queue_enabled, queue_rate, queue_max_active, queue_admission_ttl_ms, queue_heartbeat_ttl_ms, queue_seed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                $22)",
            &[
                &e.id.uuid(),
                &e.title,
                &e.description,
                &e.venue,
                &e.artist,
                &at(e.event_date),
                &at(e.sale_start),
                &at(e.sale_end),
                &layout,
                &e.layout_id,
                &(e.per_user_limit as i32),
                &(e.hold_ttl.as_millis() as i64),
                &(e.max_per_reservation as i32),
                &e.status.as_str(),
                &at(e.created_at),
                &at(e.updated_at),
                &e.queue.enabled,
                &(e.queue.rate_per_second as i32),
                &(e.queue.max_active as i32),
                &(e.queue.admission_ttl.as_millis() as i64),
                &(e.queue.heartbeat_ttl.as_millis() as i64),
                &&e.queue_seed[..],
            ],
        )
        .await
        .map_err(db_err)?;
        for (position, t) in e.ticket_types.iter().enumerate() {
            tx.execute(
                "INSERT INTO ticket_types (id, event_id, position, name, price, capacity) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&t.id.uuid(), &e.id.uuid(), &(position as i32), &t.name, &t.price, &(t.capacity as i32)],
            )
            .await
            .map_err(db_err)?;
        }
        if let Some(layout) = &e.layout {
            let map = SeatMap::new(layout).map_err(|err| StoreError::Conflict(err.to_string()))?;
            let n = map.len() as usize;
            let (mut index, mut id, mut section, mut row, mut number, mut price) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            map.for_each(|seat, info| {
                index.push(seat.0 as i32);
                id.push(map.seat_id(seat));
                section.push(info.section.to_owned());
                row.push(info.row.to_owned());
                number.push(info.number as i32);
                price.push(info.price);
            });
            tx.execute(
                "INSERT INTO event_seats (event_id, seat_index, seat_id, section, row_label, number, price)
                 SELECT $1, * FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[])",
                &[&e.id.uuid(), &index, &id, &section, &row, &number, &price],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        let client = self.client().await?;
        let Some(row) = client.query_opt(rows::EVENT_SELECT, &[&id.uuid()]).await.map_err(db_err)? else {
            return Ok(None);
        };
        let types = client.query(rows::TICKET_TYPES_SELECT, &[&id.uuid()]).await.map_err(db_err)?;
        event_from_row(&row, &types).map(Some)
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Page<EventRecord>, StoreError> {
        let client = self.client().await?;
        let pattern = filter.query.as_ref().map(|q| {
            let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        });
        let status = filter.status.map(|s| s.as_str());
        let offset = i64::from(filter.page.saturating_sub(1)) * i64::from(filter.limit);
        // Statuses move with the clock, so the filter evaluates them at `now` like
        // `EventRecord::status_at` does.
        const SHOWN: &str = "WITH shown AS (
               SELECT id, event_date,
                      CASE WHEN status = 'cancelled' THEN 'cancelled'
                           WHEN $1 >= sale_end THEN 'ended'
                           WHEN $1 < sale_start THEN 'upcoming'
                           WHEN status = 'sold_out' THEN 'sold_out'
                           ELSE 'on_sale' END AS shown_status
               FROM events
               WHERE ($2::text IS NULL OR title ILIKE $2 OR artist ILIKE $2 OR venue ILIKE $2))";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&at(filter.now), &pattern, &status];
        let total: i64 = client
            .query_one(
                &format!("{SHOWN} SELECT count(*) FROM shown WHERE $3::text IS NULL OR shown_status = $3"),
                &params,
            )
            .await
            .map_err(db_err)?
            .get(0);
        let (limit, offset) = (i64::from(filter.limit), offset);
        let rows = client
            .query(
                &format!(
                    "{SHOWN} SELECT id FROM shown WHERE $3::text IS NULL OR shown_status = $3
                     ORDER BY event_date, id LIMIT $4 OFFSET $5"
                ),
                &[&at(filter.now), &pattern, &status, &limit, &offset],
            )
            .await
            .map_err(db_err)?;
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.get(0)).collect();
        let events = client
            .query(&rows::EVENT_SELECT.replace("WHERE id = $1", "WHERE id = ANY($1)"), &[&ids])
            .await
            .map_err(db_err)?;
        let types = client
            .query(&rows::TICKET_TYPES_SELECT.replace("WHERE event_id = $1", "WHERE event_id = ANY($1)"), &[&ids])
            .await
            .map_err(db_err)?;
        let mut items = Vec::with_capacity(ids.len());
        // Keep the page's order.
        for id in &ids {
            let event = events.iter().find(|r| r.get::<_, uuid::Uuid>("id") == *id).ok_or(StoreError::NotFound)?;
            let own: Vec<_> = types.iter().filter(|t| t.get::<_, uuid::Uuid>("event_id") == *id).cloned().collect();
            items.push(event_from_row(event, &own)?);
        }
        let total = total as u64;
        Ok(Page { items, total })
    }

    async fn delete_event(&self, id: EventId) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let has: bool = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM reservations WHERE event_id = $1)", &[&id.uuid()])
            .await
            .map_err(db_err)?
            .get(0);
        if has {
            return Err(StoreError::Conflict("event has reservations".into()));
        }
        let deleted = tx.execute("DELETE FROM events WHERE id = $1", &[&id.uuid()]).await.map_err(db_err)?;
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(db_err)
    }

    async fn load_event(&self, id: EventId) -> Result<Option<EventSnapshot>, StoreError> {
        let mut client = self.client().await?;
        // One consistent snapshot of everything the actor rebuilds from.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(db_err)?;
        let Some(row) = tx.query_opt(rows::EVENT_SELECT, &[&id.uuid()]).await.map_err(db_err)? else {
            return Ok(None);
        };
        let types = tx.query(rows::TICKET_TYPES_SELECT, &[&id.uuid()]).await.map_err(db_err)?;
        let event = event_from_row(&row, &types)?;
        let seq: i64 = row.get("seq");
        let serial: i32 = row.get("serial");
        let blocked = tx
            .query("SELECT seat_index FROM event_seats WHERE event_id = $1 AND blocked", &[&id.uuid()])
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| SeatIndex(r.get::<_, i32>(0) as u32))
            .collect();
        let live_sql = format!(
            "{} WHERE r.event_id = $1 AND r.status IN ('held', 'confirmed') GROUP BY r.id",
            rows::RESERVATION_SELECT
        );
        let live = read_rows(&tx, &live_sql, &[&id.uuid()], reservation_from_row).await?;
        let idempotency_sql = format!("{} WHERE event_id = $1", rows::IDEMPOTENCY_SELECT);
        let idempotency = read_rows(&tx, &idempotency_sql, &[&id.uuid()], idempotency_from_row).await?;
        let queue = tx
            .query(
                "SELECT user_id, ticket, joined_at, admitted_until FROM queue_members WHERE event_id = $1",
                &[&id.uuid()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| QueueMember {
                user: UserId(r.get("user_id")),
                ticket: r.get::<_, Option<i64>>("ticket").map(|t| t as u64),
                joined_at: ts(r.get("joined_at")),
                admitted_until: r.get::<_, Option<time::OffsetDateTime>>("admitted_until").map(ts),
            })
            .collect();
        let queue_opened = row.get("queue_opened");
        // The latest attempt of each live reservation.
        let payments_sql = format!(
            "{} WHERE order_id IN (SELECT DISTINCT ON (p.reservation_id) p.order_id FROM payments p
                 JOIN reservations r ON r.id = p.reservation_id
                 WHERE p.event_id = $1 AND r.status IN ('held', 'confirmed')
                 ORDER BY p.reservation_id, p.attempt DESC)",
            rows::PAYMENT_SELECT
        );
        let payments = read_rows(&tx, &payments_sql, &[&id.uuid()], payment_from_row).await?;
        let owed_refunds = tx
            .query(
                "SELECT order_id, payment_key, captured_at, since FROM owed_refunds
                 WHERE event_id = $1 AND refunded_at IS NULL",
                &[&id.uuid()],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| OwedRefund {
                order_id: r.get("order_id"),
                payment_key: r.get("payment_key"),
                captured_at: ts(r.get("captured_at")),
                since: ts(r.get("since")),
            })
            .collect();
        // The code written out, so the plan always uses the partial index.
        let uncaptured_sql = format!(
            "{} WHERE event_id = $1 AND failure_code = 'NOT_CAPTURED'
               AND NOT EXISTS (SELECT 1 FROM owed_refunds o WHERE o.payment_key = payments.payment_key)
             ORDER BY updated_at",
            rows::PAYMENT_SELECT
        );
        let uncaptured = read_rows(&tx, &uncaptured_sql, &[&id.uuid()], payment_from_row).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(EventSnapshot {
            event,
            blocked,
            live,
            seq: seq as u64,
            serial: serial as u32,
            idempotency,
            queue,
            queue_opened,
            payments,
            owed_refunds,
            uncaptured,
        }))
    }

    async fn append(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        append::apply(&tx, entries).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(&format!("{} WHERE r.id = $1 GROUP BY r.id", rows::RESERVATION_SELECT), &[&id.uuid()])
            .await
            .map_err(db_err)?;
        row.as_ref().map(reservation_from_row).transpose()
    }

    async fn reservations_of(&self, user: UserId) -> Result<Vec<Reservation>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "{} WHERE r.user_id = $1 GROUP BY r.id ORDER BY r.created_at DESC, r.serial DESC",
                    rows::RESERVATION_SELECT
                ),
                &[&user.uuid()],
            )
            .await
            .map_err(db_err)?;
        rows.iter().map(reservation_from_row).collect()
    }

    async fn find_reservations(&self, filter: &ReservationFilter) -> Result<Page<Reservation>, StoreError> {
        let client = self.client().await?;
        let event = filter.event.map(|e| e.uuid());
        let status = filter.status.map(|s| s.as_str());
        let user = filter.user.map(|u| u.uuid());
        let matching = "($1::uuid IS NULL OR r.event_id = $1) AND ($2::text IS NULL OR r.status = $2)
            AND ($3::uuid IS NULL OR r.user_id = $3)";
        let total: i64 = client
            .query_one(&format!("SELECT count(*) FROM reservations r WHERE {matching}"), &[&event, &status, &user])
            .await
            .map_err(db_err)?
            .get(0);
        let offset = i64::from(filter.page.max(1) - 1) * i64::from(filter.limit);
        let rows = client
            .query(
                &format!(
                    "{} WHERE {matching} GROUP BY r.id ORDER BY r.created_at DESC, r.serial DESC, r.id DESC
                     LIMIT $4 OFFSET $5",
                    rows::RESERVATION_SELECT
                ),
                &[&event, &status, &user, &i64::from(filter.limit), &offset],
            )
            .await
            .map_err(db_err)?;
        let items = rows.iter().map(reservation_from_row).collect::<Result<_, _>>()?;
        Ok(Page { items, total: total as u64 })
    }

    async fn idempotency(&self, user: UserId, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(&format!("{} WHERE user_id = $1 AND key = $2", rows::IDEMPOTENCY_SELECT), &[&user.uuid(), &key])
            .await
            .map_err(db_err)?;
        row.as_ref().map(idempotency_from_row).transpose()
    }

    async fn idempotency_fingerprints(
        &self,
        keys: &[(UserId, String)],
    ) -> Result<Vec<((UserId, String), String)>, StoreError> {
        let (users, names): (Vec<uuid::Uuid>, Vec<&str>) = keys.iter().map(|(u, k)| (u.uuid(), k.as_str())).unzip();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT i.user_id, i.key, i.fingerprint FROM idempotency_keys i
                 JOIN unnest($1::uuid[], $2::text[]) AS k(user_id, key) ON i.user_id = k.user_id AND i.key = k.key",
                &[&users, &names],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| ((UserId(r.get(0)), r.get(1)), r.get(2))).collect())
    }

    async fn payment(&self, order_id: &str) -> Result<Option<Payment>, StoreError> {
        let sql = format!("{} WHERE order_id = $1", rows::PAYMENT_SELECT);
        let row = self.client().await?.query_opt(&sql, &[&order_id]).await.map_err(db_err)?;
        row.as_ref().map(payment_from_row).transpose()
    }

    async fn payments_by_key(&self, payment_key: &str) -> Result<Vec<Payment>, StoreError> {
        let sql = format!("{} WHERE payment_key = $1 ORDER BY updated_at DESC, attempt DESC", rows::PAYMENT_SELECT);
        let rows = self.client().await?.query(&sql, &[&payment_key]).await.map_err(db_err)?;
        rows.iter().map(payment_from_row).collect()
    }

    async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, StoreError> {
        let sql = format!("{} WHERE user_id = $1 ORDER BY created_at DESC, attempt DESC", rows::PAYMENT_SELECT);
        let rows = self.client().await?.query(&sql, &[&user.uuid()]).await.map_err(db_err)?;
        rows.iter().map(payment_from_row).collect()
    }

    async fn unsettled_payment_events(&self, declined_since: Timestamp) -> Result<Vec<EventId>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT event_id FROM payments WHERE status IN ('in_progress', 'cancelling')
                 UNION SELECT event_id FROM owed_refunds WHERE refunded_at IS NULL
                 UNION SELECT event_id FROM payments WHERE failure_code = 'NOT_CAPTURED' AND updated_at >= $1",
                &[&at(declined_since)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| EventId(r.get(0))).collect())
    }

    async fn audit_of(&self, reservation: ReservationId) -> Result<Vec<AuditRecord>, StoreError> {
        let sql = format!("{} WHERE reservation_id = $1 ORDER BY at, id", rows::AUDIT_SELECT);
        let rows = self.client().await?.query(&sql, &[&reservation.uuid()]).await.map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn overview_report(&self, now: tiketi_engine::Timestamp) -> Result<crate::OverviewReport, StoreError> {
        self.report_overview(now).await
    }

    async fn event_report(&self, event: EventId) -> Result<Option<crate::EventReport>, StoreError> {
        self.report_event(event).await
    }

    async fn daily_report(
        &self,
        event: Option<EventId>,
        days: crate::DayRange,
    ) -> Result<Vec<crate::DayReport>, StoreError> {
        self.report_daily(event, days).await
    }
}

/// Every row `sql` returns in `tx`, each read by `read`.
async fn read_rows<T>(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    read: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    tx.query(sql, params).await.map_err(db_err)?.iter().map(read).collect()
}
