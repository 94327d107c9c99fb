//! Registration, login, token refresh and the current user.

use crate::auth::hash_token;
use crate::error::ApiError;
use crate::extract::{ApiJson, AuthUser};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tiketi_persistence::{NewUser, RefreshTokenRecord, Role, StoreError, UserRecord};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The auth routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(login)).routes(routes!(refresh)).routes(routes!(me))
}

/// `POST /auth/register`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// E-mail (unique, case-insensitive).
    pub email: String,
    /// 8-128 characters.
    pub password: String,
    /// Display name.
    pub name: String,
}

/// `POST /auth/login`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// E-mail.
    pub email: String,
    /// Password.
    pub password: String,
}

/// `POST /auth/refresh`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    /// A refresh token from login, register or a previous refresh (each works once).
    pub refresh_token: String,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    /// Id.
    pub id: Uuid,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// `user` or `admin`.
    pub role: String,
    /// Registration time.
    pub created_at: String,
}

impl From<&UserRecord> for UserDto {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.uuid(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().into(),
            created_at: crate::dto::iso(u.created_at),
        }
    }
}

/// Tokens and the user they belong to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    /// Access token (Bearer).
    pub token: String,
    /// Single-use refresh token.
    pub refresh_token: String,
    /// The user.
    pub user: UserDto,
}

/// A new token pair.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// Access token.
    pub token: String,
    /// Single-use refresh token.
    pub refresh_token: String,
}

/// A checked, normalised e-mail address.
fn email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid { Ok(email) } else { Err(ApiError::invalid("email", "must be a valid e-mail address")) }
}

/// Creates a user with a hashed password; shared with the admin bootstrap.
pub async fn create_user(
    state: &AppState,
    email: String,
    password: String,
    name: String,
    role: Role,
) -> Result<UserRecord, ApiError> {
    let auth_state = state.clone();
    let password_hash = tokio::task::spawn_blocking(move || auth_state.auth().hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let user = NewUser { email, password_hash, name, role, created_at: state.now() };
    state.store().create_user(user).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::Conflict {
            code: "email_taken",
            message: "this e-mail is already registered".into(),
            details: serde_json::json!({ "field": "email" }),
        },
        other => other.into(),
    })
}

async fn tokens_for(state: &AppState, user: &UserRecord) -> Result<TokenPair, ApiError> {
    let now = state.now();
    let token = state.auth().issue_access(user, now)?;
    let (refresh_token, hash) = state.auth().new_refresh_token();
    let expires_at = now.plus(state.auth().refresh_ttl());
    state.store().put_refresh_token(RefreshTokenRecord { hash, user: user.id, expires_at }).await?;
    Ok(TokenPair { token, refresh_token })
}

/// Register a buyer account.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 409, description = "e-mail taken"), (status = 422, description = "invalid field")))]
async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthResponse>), ApiError> {
    let email = email(&req.email)?;
    if !(8..=128).contains(&req.password.chars().count()) {
        return Err(ApiError::invalid("password", "must be 8-128 characters"));
    }
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1-100 characters"));
    }
    let user = create_user(&state, email, req.password, name, Role::User).await?;
    let TokenPair { token, refresh_token } = tokens_for(&state, &user).await?;
    Ok((StatusCode::CREATED, Json(AuthResponse { token, refresh_token, user: (&user).into() })))
}

/// Log in with e-mail and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, description = "wrong credentials")))]
async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<AuthResponse>, ApiError> {
    const WRONG: ApiError = ApiError::Unauthorized("wrong e-mail or password");
    let user = state.store().user_by_email(req.email.trim()).await?;
    // Verify against a real hash even for unknown e-mails, so timing does not reveal
    // which addresses are registered.
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => dummy_hash(&state).await?,
    };
    let check = state.clone();
    let ok = tokio::task::spawn_blocking(move || check.auth().verify_password(&req.password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = user.filter(|_| ok).ok_or(WRONG)?;
    let TokenPair { token, refresh_token } = tokens_for(&state, &user).await?;
    Ok(Json(AuthResponse { token, refresh_token, user: (&user).into() }))
}

async fn dummy_hash(state: &AppState) -> Result<String, ApiError> {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let state = state.clone();
    DUMMY
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || state.auth().hash_password("not-a-real-password"))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        })
        .await
        .cloned()
}

/// Exchange a refresh token for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, description = "unknown, used or expired refresh token")))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    const INVALID: ApiError = ApiError::Unauthorized("invalid or expired refresh token");
    let record = state.store().take_refresh_token(&hash_token(&req.refresh_token)).await?.ok_or(INVALID)?;
    if record.expires_at <= state.now() {
        return Err(INVALID);
    }
    let user = state.store().user(record.user).await?.ok_or(INVALID)?;
    Ok(Json(tokens_for(&state, &user).await?))
}

/// The authenticated user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserDto), (status = 401, description = "not authenticated")))]
async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserDto>, ApiError> {
    let record = state.store().user(user.id).await?.ok_or(ApiError::Unauthorized("user no longer exists"))?;
    Ok(Json((&record).into()))
}
