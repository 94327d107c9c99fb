//! Tiketi's persistence: the [`Store`] interface the actors and the facade use, the
//! embedded in-memory store for zero-setup runs, and the write-behind [`journal`] that
//! group-commits the engine's change sets behind the event actors.
//!
//! Depends on the engine for its domain types; must never depend on the actors or the
//! HTTP facade.
#![forbid(unsafe_code)]

pub mod journal;
mod memory;
mod postgres;
mod records;
mod reports;
mod store;

pub use memory::MemoryStore;
pub use postgres::PgStore;
pub use postgres::cluster::{Heartbeat, Member, ShardRow};
pub use records::{
    AuditRecord, EventFilter, EventRecord, EventSnapshot, Fence, IdempotencyRecord, JournalEntry, LayoutRecord,
    NewUser, Page, RefreshTokenRecord, ReservationFilter, Role, StoredOutcome, UserRecord,
};
pub use reports::{
    DayRange, DayRangeError, DayReport, EventCounts, EventReport, Funnel, MAX_REPORT_DAYS, OverviewReport,
    ReservationCounts, SeatReport, TicketReport, TodayReport, utc_date,
};
pub use store::{Store, StoreError};
