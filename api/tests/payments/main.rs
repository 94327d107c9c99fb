//! End-to-end tests of paying for reservations: the real application on PostgreSQL, paying
//! through a fake Toss server, with the money counted at the provider and the seats and
//! payments read back with plain SQL.
//!
//! Every test ends by checking the books: no order charged twice, no money kept for an
//! order that sells nothing, no seat sold without a done payment, no done payment without
//! its seats, and the API's seat map equal to the database's.

mod expiry;
mod flow;
mod idempotency;
mod input;
mod limits;
mod races;
mod recovery;
mod refunds;
mod shop;
#[allow(dead_code)]
#[path = "../api/support.rs"]
mod support;
