//! Request extractors: JSON bodies whose errors name the field, the authenticated caller,
//! and the `Idempotency-Key` header.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tiketi_engine::UserId;
use tiketi_persistence::Role;

/// A JSON body; a malformed one is a 400 (413 if too large) in the API's error format,
/// naming the offending field where serde can.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// An optional JSON body: a request without a `Content-Type` has none.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if !req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: quantity: invalid
            // value: integer `-1`, expected u32 at line 1 column 15" -> keep the useful part.
            let text = e.body_text();
            let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d);
            ApiError::BadRequest(format!("invalid request body: {detail}"))
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// The authenticated caller, from `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    /// User id.
    pub id: UserId,
    /// Role.
    pub role: Role,
}

impl AuthUser {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// As the actors' caller.
    pub fn caller(&self) -> tiketi_actors::Caller {
        tiketi_actors::Caller { user: self.id, admin: self.is_admin() }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized("Authorization must be 'Bearer <token>'"))?;
        let user = state.auth().verify_access(token.trim())?;
        if !state.user_known(user.id).await {
            return Err(ApiError::Unauthorized("the token names a user that does not exist"));
        }
        Ok(user)
    }
}

/// An authenticated admin; anyone else gets 403.
#[derive(Debug, Clone, Copy)]
pub struct AdminUser(pub AuthUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.is_admin() { Ok(Self(user)) } else { Err(ApiError::Forbidden("admin role required")) }
    }
}

/// The optional `Idempotency-Key` header: 1-255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else { return Ok(Self(None)) };
        let key =
            value.to_str().ok().filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
        match key {
            Some(k) => Ok(Self(Some(k.to_owned()))),
            None => Err(ApiError::invalid("Idempotency-Key", "must be 1-255 visible ASCII characters")),
        }
    }
}

/// A path parameter; a malformed one (e.g. not a UUID) is a 400 naming the problem.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters; malformed ones are a 400 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}
