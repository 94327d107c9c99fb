//! The row-lock baseline Tiketi is measured against: the design the seed systems use,
//! written well on Tiketi's own stack (axum + deadpool-postgres), and nothing more.
//!
//! Seats live in PostgreSQL and nowhere else. A hold is one READ COMMITTED transaction:
//! `SELECT … FOR UPDATE` on the requested seats, then one statement that inserts the
//! reservation and marks the seats held, then `COMMIT`. PostgreSQL's row locks are the
//! only thing that stops two buyers from holding the same seat. Every route has the same
//! path and JSON shape as Tiketi's, so one load generator drives both: [`routes`] lists
//! them, `holds.rs` explains the locking (and how best-available picks seats), `schema.rs`
//! the tables.
//!
//! It is a benchmark subject, not a product: there are no passwords (the bearer token *is*
//! the user id), any bearer token may create events, and sale windows, per-buyer limits,
//! general admission, queues, payments and the live seat stream do not exist.
//!
//! [`RowLock::build`] connects, creates the `rowlock` schema if it is missing and binds
//! nothing itself: the caller passes the listener, so tests serve on port 0.

mod dto;
mod error;
mod holds;
mod lifecycle;
pub mod routes;
mod schema;
mod store;
mod sweeper;

pub use error::BaselineError;
pub use routes::router;
pub use store::SeatStore;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the baseline needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL URL, e.g. `postgres://postgres@127.0.0.1:5432/rowlock`.
    pub database_url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a hold lasts when the event does not say (`holdTtlSeconds`).
    pub hold_ttl: Duration,
    /// How often expired holds are released.
    pub sweep_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            pool_size: 32,
            hold_ttl: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// A connection pool of `size` connections to `url` (opened lazily). Statements are
/// prepared once per connection and cached, so a pooled connection must not be reset
/// between checkouts: recycling only checks that it is still open.
pub fn connect(url: &str, size: usize) -> Result<Pool, BaselineError> {
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| BaselineError::Unavailable(format!("bad database url: {e}")))?;
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // Waiting for a free connection is the baseline's queue, as in the seed systems;
        // only a database that does not answer at all is reported as unavailable.
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| BaselineError::Unavailable(e.to_string()))
}

/// The baseline server: a migrated database and a bound listener.
pub struct RowLock {
    listener: TcpListener,
    store: SeatStore,
    sweep_interval: Duration,
}

impl RowLock {
    /// Connects to the database, creates the schema if it is missing, and takes the
    /// listener it will serve on.
    pub async fn build(settings: &Settings, listener: TcpListener) -> Result<Self, BaselineError> {
        let pool = connect(&settings.database_url, settings.pool_size)?;
        schema::migrate(&pool).await?;
        Ok(Self { listener, store: SeatStore::new(pool, settings.hold_ttl), sweep_interval: settings.sweep_interval })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The store, for callers that want to look at the database directly.
    pub fn store(&self) -> &SeatStore {
        &self.store
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish, stops the
    /// expiry sweeper and closes the pool.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let sweeper = tokio::spawn(sweeper::run(self.store.clone(), self.sweep_interval));
        let served = axum::serve(self.listener, router(self.store.clone())).with_graceful_shutdown(shutdown).await;
        sweeper.abort();
        self.store.close();
        served
    }
}
