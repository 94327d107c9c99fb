//! The baseline's HTTP routes: Tiketi's paths and JSON shapes, so one load generator
//! drives both.
//!
//! | Route | Answer |
//! |---|---|
//! | `POST /api/v1/auth/register` `{email, password, name}` | 201 `{token, user}` |
//! | `POST /api/v1/auth/login` `{email, password}` | 200 `{token, user}` |
//! | `POST /api/v1/admin/events` (any bearer) `{title, venue, layout, holdTtlSeconds?}` | 201 event |
//! | `GET /api/v1/events/{eventId}` | `{id, title, status: "on_sale", availability}` |
//! | `GET /api/v1/events/{eventId}/seats` | `{version, seats: [{id, section, row, number, price, status}]}` |
//! | `POST /api/v1/events/{eventId}/reservations` `{seatIds}` or `{bestAvailable}` | 201 reservation, 409 |
//! | `GET /api/v1/reservations/{id}` | the caller's reservation |
//! | `POST /api/v1/reservations/{id}/cancel` | 200 reservation, seats released |
//! | `POST /api/v1/reservations/{id}/confirm` | 200 reservation, seats sold |
//! | `GET /health/live`, `GET /health/ready` | 200 `{status: "ok"}` |
//!
//! There are no passwords: the bearer token is the user id that register or login
//! returned, and any bearer token may create events.

use super::SeatStore;
use super::dto::{
    AuthResponse, CreateEventRequest, CreateReservationRequest, EventDto, LoginRequest, RegisterRequest,
    ReservationDto, SeatMapDto, UserDto, email,
};
use super::error::BaselineError;
use super::holds::Selection;
use super::store::NewEvent;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

/// Every route, over `store`.
pub fn router(store: SeatStore) -> Router {
    let api = Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/admin/events", post(create_event))
        .route("/events/{event_id}", get(get_event))
        .route("/events/{event_id}/seats", get(get_seats))
        .route("/events/{event_id}/reservations", post(create_reservation))
        .route("/reservations/{id}", get(get_reservation))
        .route("/reservations/{id}/cancel", post(cancel_reservation))
        .route("/reservations/{id}/confirm", post(confirm_reservation));
    Router::new()
        .nest("/api/v1", api)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(|| async { BaselineError::NotFound { what: "route" } })
        .with_state(store)
}

/// A JSON body; a malformed one is a 400 in the error format.
struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = BaselineError;

    async fn from_request(req: Request, state: &S) -> Result<Self, BaselineError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(e)) => {
                let text = e.body_text();
                let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d);
                Err(BaselineError::BadRequest(format!("invalid request body: {detail}")))
            }
            Err(other) => Err(BaselineError::BadRequest(other.body_text())),
        }
    }
}

/// A path id; a malformed one is a 400 in the error format.
struct ApiPath(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = BaselineError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, BaselineError> {
        Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|e| BaselineError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// The `Authorization: Bearer <token>` value.
fn bearer(parts: &Parts) -> Result<&str, BaselineError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(BaselineError::Unauthorized("missing Authorization header"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(BaselineError::Unauthorized("Authorization must be 'Bearer <token>'"))
}

/// The caller: the user id is the bearer token itself (no signature, no lookup).
struct Buyer(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Buyer {
    type Rejection = BaselineError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, BaselineError> {
        let token = bearer(parts)?;
        Uuid::parse_str(token).map(Self).map_err(|_| BaselineError::Unauthorized("invalid token"))
    }
}

/// Anyone with a bearer token: admin routes need nothing more here.
struct AnyBearer;

impl<S: Send + Sync> FromRequestParts<S> for AnyBearer {
    type Rejection = BaselineError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, BaselineError> {
        bearer(parts).map(|_| Self)
    }
}

async fn register(
    State(store): State<SeatStore>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), BaselineError> {
    let email = email(&req.email)?;
    let id = store.register(&email, req.name.trim()).await?;
    Ok((StatusCode::CREATED, Json(AuthResponse { token: id.to_string(), user: UserDto { id, email } })))
}

async fn login(
    State(store): State<SeatStore>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<AuthResponse>, BaselineError> {
    let email = email(&req.email)?;
    let id = store.login(&email).await?.ok_or(BaselineError::Unauthorized("wrong e-mail or password"))?;
    Ok(Json(AuthResponse { token: id.to_string(), user: UserDto { id, email } }))
}

async fn create_event(
    State(store): State<SeatStore>,
    _: AnyBearer,
    ApiJson(req): ApiJson<CreateEventRequest>,
) -> Result<(StatusCode, Json<EventDto>), BaselineError> {
    let id = store.create_event(NewEvent::try_from(req)?).await?;
    let event = store.event(id).await?.ok_or(BaselineError::NotFound { what: "event" })?;
    Ok((StatusCode::CREATED, Json(event.into())))
}

async fn get_event(State(store): State<SeatStore>, ApiPath(id): ApiPath) -> Result<Json<EventDto>, BaselineError> {
    let event = store.event(id).await?.ok_or(BaselineError::NotFound { what: "event" })?;
    Ok(Json(event.into()))
}

async fn get_seats(State(store): State<SeatStore>, ApiPath(id): ApiPath) -> Result<Json<SeatMapDto>, BaselineError> {
    let seats = store.seat_map(id).await?.ok_or(BaselineError::NotFound { what: "event" })?;
    Ok(Json(SeatMapDto { version: 0, seats: seats.into_iter().map(Into::into).collect() }))
}

async fn create_reservation(
    State(store): State<SeatStore>,
    Buyer(user): Buyer,
    ApiPath(event): ApiPath,
    ApiJson(req): ApiJson<CreateReservationRequest>,
) -> Result<(StatusCode, Json<ReservationDto>), BaselineError> {
    let selection = Selection::try_from(req)?;
    let reservation = store.hold(event, user, &selection).await?;
    Ok((StatusCode::CREATED, Json(reservation.into())))
}

async fn get_reservation(
    State(store): State<SeatStore>,
    Buyer(user): Buyer,
    ApiPath(id): ApiPath,
) -> Result<Json<ReservationDto>, BaselineError> {
    let reservation = store.reservation(id).await?.filter(|r| r.user_id == user);
    Ok(Json(reservation.ok_or(BaselineError::NotFound { what: "reservation" })?.into()))
}

async fn cancel_reservation(
    State(store): State<SeatStore>,
    Buyer(user): Buyer,
    ApiPath(id): ApiPath,
) -> Result<Json<ReservationDto>, BaselineError> {
    Ok(Json(store.cancel(id, user).await?.into()))
}

async fn confirm_reservation(
    State(store): State<SeatStore>,
    Buyer(user): Buyer,
    ApiPath(id): ApiPath,
) -> Result<Json<ReservationDto>, BaselineError> {
    Ok(Json(store.confirm(id, user).await?.into()))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(store): State<SeatStore>) -> Result<Json<Value>, BaselineError> {
    store.client().await?.simple_query("SELECT 1").await?;
    Ok(Json(json!({ "status": "ok" })))
}
