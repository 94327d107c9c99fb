//! Tiketi's HTTP facade: REST routes, auth, admin, health and OpenAPI over axum, and the
//! [`Application`] the `tiketi` binary and the end-to-end tests run.
//!
//! Handlers are thin: extract, convert into a domain request, call the event's
//! [`EventHandle`](tiketi_actors::EventHandle), map the answer to a DTO. Errors become HTTP
//! in one place ([`error::ApiError`]).
#![forbid(unsafe_code)]

pub mod auth;
pub mod batch;
pub mod cli;
pub mod demo;
pub mod dto;
pub mod error;
pub mod extract;
pub mod forward;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod user_check;

pub use settings::Settings;
pub use startup::Application;
