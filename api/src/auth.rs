//! Passwords (argon2id, via the RustCrypto `argon2` crate rather than anything
//! hand-rolled) and tokens: HS256 access JWTs with `iss`, `aud` and `exp` checked
//! (`jsonwebtoken`), and opaque single-use refresh tokens stored only as SHA-256 hashes.

use crate::error::ApiError;
use crate::extract::AuthUser;
use crate::settings::AuthSettings;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tiketi_engine::{EventId, Timestamp, UserId};
use tiketi_persistence::{Role, UserRecord};

/// Access-token claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: uuid::Uuid,
    role: Role,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Admission-token claims: who may reserve in which event, until when.
#[derive(Debug, Serialize, Deserialize)]
struct AdmissionClaims {
    sub: uuid::Uuid,
    evt: uuid::Uuid,
    iss: String,
    aud: String,
    exp: i64,
}

/// The `aud` of admission tokens: never accepted as an access token, and the reverse.
const ADMISSION_AUDIENCE: &str = "tiketi-admission";

/// Everything needed to hash passwords and issue and verify tokens.
pub struct AuthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    admission_validation: Validation,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    params: Params,
}

impl AuthKeys {
    /// From settings; an empty secret becomes a random per-process one.
    pub fn new(settings: &AuthSettings) -> Result<Self, String> {
        let secret = if settings.jwt_secret.is_empty() {
            tracing::warn!("auth.jwt_secret is not set: using a random secret; tokens will not survive a restart");
            random_token()
        } else {
            settings.jwt_secret.clone()
        };
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let mut admission_validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        admission_validation.set_issuer(&[&settings.issuer]);
        admission_validation.set_audience(&[ADMISSION_AUDIENCE]);
        admission_validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        admission_validation.leeway = 0;
        let params = Params::new(settings.argon2_memory_kib, settings.argon2_iterations, 1, None)
            .map_err(|e| format!("auth.argon2_*: {e}"))?;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            admission_validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            access_ttl: Duration::from_secs(settings.access_ttl_secs),
            refresh_ttl: Duration::from_secs(settings.refresh_ttl_secs),
            params,
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a password (CPU-heavy: call from a blocking thread).
    pub fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
    }

    /// Checks a password against its hash (CPU-heavy: call from a blocking thread).
    pub fn verify_password(&self, password: &str, hash: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|parsed| self.argon2().verify_password(password.as_bytes(), &parsed).is_ok())
    }

    /// A signed access token for `user`.
    pub fn issue_access(&self, user: &UserRecord, now: Timestamp) -> Result<String, ApiError> {
        let iat = now.millis() / 1000;
        let claims = Claims {
            sub: user.id.uuid(),
            role: user.role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat + self.access_ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(jsonwebtoken::Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("token signing failed: {e}")))
    }

    /// Verifies an access token: signature, algorithm, `exp`, `iss` and `aud`.
    pub fn verify_access(&self, token: &str) -> Result<AuthUser, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token"))?;
        Ok(AuthUser { id: UserId(data.claims.sub), role: data.claims.role })
    }

    /// A signed admission token: `user` may reserve in `event` until `until` (rounded up to
    /// the second).
    pub fn issue_admission(&self, user: UserId, event: EventId, until: Timestamp) -> Result<String, ApiError> {
        let claims = AdmissionClaims {
            sub: user.uuid(),
            evt: event.uuid(),
            iss: self.issuer.clone(),
            aud: ADMISSION_AUDIENCE.into(),
            exp: (until.millis() + 999) / 1000,
        };
        jsonwebtoken::encode(&Header::new(jsonwebtoken::Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("token signing failed: {e}")))
    }

    /// Whether `token` is a valid, unexpired admission token for this buyer and event.
    pub fn verify_admission(&self, token: &str, user: UserId, event: EventId) -> bool {
        jsonwebtoken::decode::<AdmissionClaims>(token, &self.decoding, &self.admission_validation)
            .is_ok_and(|data| data.claims.sub == user.uuid() && data.claims.evt == event.uuid())
    }

    /// A new refresh token and the hash to store for it.
    pub fn new_refresh_token(&self) -> (String, String) {
        let token = random_token();
        let hash = hash_token(&token);
        (token, hash)
    }

    /// How long refresh tokens last.
    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }
}

/// Hex SHA-256 of a token or request: what the store keeps instead of the secret itself.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// 256 random bits from the OS, hex-encoded.
pub fn random_token() -> String {
    hex(&random_seed())
}

/// 256 random bits from the OS (an admission queue's draw seed).
pub fn random_seed() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}
