//! The HTTP routes under `/api/v1`. Each module owns its router and its request types.

pub mod actors;
pub mod admin;
pub mod admin_reservations;
pub mod auth;
pub mod cluster;
pub mod events;
pub mod health;
pub mod internal;
pub mod owed_refunds;
pub mod payments;
pub mod queue;
pub mod reports;
pub mod reservations;
pub mod stream;

use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;

/// Every `/api/v1` route, with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(events::router())
        .merge(reservations::router())
        .merge(payments::router())
        .merge(stream::router())
        .merge(queue::router())
        .merge(admin::router())
        .merge(admin_reservations::router())
        .merge(owed_refunds::router())
        .merge(actors::router())
        .merge(cluster::router())
        .merge(reports::router())
}
