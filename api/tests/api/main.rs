//! End-to-end tests: the real application on port 0, over HTTP.

mod actors;
mod admin;
mod admin_reservations;
mod auth;
mod bad_input;
mod concurrency;
mod events;
mod metrics;
mod queue;
mod reports;
mod reservations;
mod stream;
mod support;
