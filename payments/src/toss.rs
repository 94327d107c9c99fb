//! The Toss Payments v1 HTTP adapter.
//!
//! Requests are shaped exactly like Toss's: `Authorization: Basic base64("{secret_key}:")`, JSON bodies, and
//! - `POST {base}/v1/payments/confirm` with `{"paymentKey", "orderId", "amount"}`,
//! - `POST {base}/v1/payments/{paymentKey}/cancel` with `{"cancelReason"}` and an `Idempotency-Key` header,
//! - `GET {base}/v1/payments/orders/{orderId}`.
//!
//! Answers map onto [`ProviderError`]: a 4xx with a code is [`ProviderError::Declined`], except the codes in
//! [`codes::OUTCOME_UNKNOWN`]; a 5xx, a timeout, a connection failure or an unreadable body is
//! [`ProviderError::Unknown`]. A lookup answered `NOT_FOUND_PAYMENT` is `Ok(None)`.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::wire::{CancelBody, ConfirmBody, TossErrorBody, TossPayment};
use crate::{ConfirmRequest, PaymentProvider, ProviderError, ProviderPayment, codes};

/// Where and how to reach Toss.
#[derive(Clone)]
pub struct TossSettings {
    /// `https://api.tosspayments.com` in production (needs the `tls` feature); a `fake::FakeToss` in tests.
    pub base_url: String,
    /// The secret key (`test_sk_...` / `live_sk_...`); sent as the Basic-auth user name with an empty password.
    pub secret_key: String,
    /// The whole-request timeout. Toss asks clients to wait up to 60 s for a confirm; a shorter timeout turns
    /// more confirms into unknown outcomes, which [`crate::confirm_resolved`] then resolves by lookup.
    pub timeout: Duration,
}

impl TossSettings {
    /// Toss's production API.
    pub const PRODUCTION_BASE_URL: &str = "https://api.tosspayments.com";
}

impl fmt::Debug for TossSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TossSettings")
            .field("base_url", &self.base_url)
            .field("secret_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a [`TossProvider`] could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The base URL does not parse as an absolute `http` or `https` URL.
    #[error("the Toss base URL {0:?} is not an absolute http(s) URL")]
    InvalidBaseUrl(String),
    /// The base URL is `https` but the crate was built without TLS.
    #[error(
        "the Toss base URL {base_url} is https, but tiketi-payments was built without TLS: \
         build with `--features tiketi-payments/tls`"
    )]
    TlsDisabled {
        /// The refused base URL.
        base_url: String,
    },
    /// The secret key is empty.
    #[error("the Toss secret key is empty")]
    MissingSecretKey,
    /// reqwest refused to build its client.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The Toss Payments adapter. Cheap to share behind an `Arc`; the underlying client pools connections.
pub struct TossProvider {
    client: reqwest::Client,
    base_url: Url,
    secret_key: String,
}

impl fmt::Debug for TossProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TossProvider").field("base_url", &self.base_url.as_str()).finish_non_exhaustive()
    }
}

impl TossProvider {
    /// An adapter for these settings; refuses an `https` base URL when the crate was built without the `tls`
    /// feature.
    pub fn new(settings: TossSettings) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidBaseUrl(settings.base_url.clone());
        let base_url = Url::parse(&settings.base_url).map_err(|_| invalid())?;
        if base_url.cannot_be_a_base() || base_url.host().is_none() {
            return Err(invalid());
        }
        match base_url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => return Err(ConfigError::TlsDisabled { base_url: settings.base_url }),
            _ => return Err(invalid()),
        }
        if settings.secret_key.is_empty() {
            return Err(ConfigError::MissingSecretKey);
        }
        #[cfg(feature = "tls")]
        {
            // reqwest's `rustls-no-provider` needs a process-wide crypto provider. An error only means one is
            // installed already (perhaps another), which serves as well.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|e| ConfigError::Client(error_chain(&e)))?;
        Ok(Self { client, base_url, secret_key: settings.secret_key })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base_url.clone();
        // `new` checked that the base URL can be a base; `extend` percent-encodes each segment.
        url.path_segments_mut().expect("checked in new").pop_if_empty().extend(segments);
        url
    }

    /// Sends the request with Toss's authentication and reads the whole answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, bytes::Bytes), ProviderError> {
        let unknown = |what: &str, e: reqwest::Error| {
            let kind = if e.is_timeout() { "timed out" } else { "failed" };
            ProviderError::Unknown(format!("{what} {kind}: {}", error_chain(&e)))
        };
        let response = request
            .basic_auth(&self.secret_key, None::<&str>)
            .send()
            .await
            .map_err(|e| unknown("request to Toss", e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| unknown("reading Toss's answer", e))?;
        Ok((status, body))
    }
}

#[async_trait::async_trait]
impl PaymentProvider for TossProvider {
    fn name(&self) -> &'static str {
        "toss"
    }

    async fn confirm(&self, req: &ConfirmRequest) -> Result<ProviderPayment, ProviderError> {
        let body = ConfirmBody { payment_key: &req.payment_key, order_id: &req.order_id, amount: req.amount };
        let (status, body) = self.send(self.client.post(self.url(&["v1", "payments", "confirm"])).json(&body)).await?;
        read_payment(status, &body)
    }

    async fn cancel(
        &self,
        payment_key: &str,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<ProviderPayment, ProviderError> {
        let request = self
            .client
            .post(self.url(&["v1", "payments", payment_key, "cancel"]))
            .header("Idempotency-Key", idempotency_key)
            .json(&CancelBody { cancel_reason: reason });
        let (status, body) = self.send(request).await?;
        read_payment(status, &body)
    }

    async fn payment_for_order(&self, order_id: &str) -> Result<Option<ProviderPayment>, ProviderError> {
        let request = self
            .client
            .get(self.url(&["v1", "payments", "orders", order_id]))
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let (status, body) = self.send(request).await?;
        match read_payment(status, &body) {
            Ok(payment) => Ok(Some(payment)),
            Err(declined) if declined.code() == Some(codes::NOT_FOUND_PAYMENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Maps one Toss answer onto a payment or a [`ProviderError`].
fn read_payment(status: StatusCode, body: &[u8]) -> Result<ProviderPayment, ProviderError> {
    if status.is_success() {
        return serde_json::from_slice::<TossPayment>(body)
            .map(ProviderPayment::from)
            .map_err(|e| ProviderError::Unknown(format!("HTTP {status} with an unreadable payment: {e}")));
    }
    let Ok(TossErrorBody { code, message }) = serde_json::from_slice::<TossErrorBody>(body) else {
        return Err(ProviderError::Unknown(format!("HTTP {status} with an unreadable error body")));
    };
    if status.is_client_error() && !codes::OUTCOME_UNKNOWN.contains(&code.as_str()) {
        Err(ProviderError::Declined { code, message })
    } else {
        Err(ProviderError::Unknown(format!("HTTP {status}: {code}: {message}")))
    }
}

/// An error with its causes, `a: b: c`: reqwest's own message rarely says what went wrong.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base_url: &str) -> TossSettings {
        TossSettings {
            base_url: base_url.to_owned(),
            secret_key: "test_sk".to_owned(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_payment_object_is_read_with_its_offset_timestamp() {
        let body = r#"{"mId":"tvivarepublica","paymentKey":"pk","orderId":"o-1","status":"DONE","totalAmount":15000,
            "method":"카드","requestedAt":"2024-02-13T12:17:57+09:00",
            "approvedAt":"2024-02-13T12:18:14+09:00","cancels":null,"card":{"amount":15000}}"#;
        let payment = read_payment(StatusCode::OK, body.as_bytes()).expect("a payment");
        assert_eq!(payment.status, crate::ProviderStatus::Done);
        assert_eq!(payment.total_amount, 15000);
        assert_eq!(payment.method.as_deref(), Some("카드"));
        assert_eq!(payment.approved_at, Some(time::macros::datetime!(2024-02-13 03:18:14 UTC)));
    }

    #[test]
    fn client_errors_decline_but_unknown_codes_and_server_errors_do_not() {
        let body = |code: &str| format!(r#"{{"code":"{code}","message":"m"}}"#).into_bytes();
        let declined = read_payment(StatusCode::BAD_REQUEST, &body("REJECT_CARD_PAYMENT"));
        assert_eq!(declined, Err(ProviderError::declined("REJECT_CARD_PAYMENT", "m")));
        for code in codes::OUTCOME_UNKNOWN {
            assert!(matches!(read_payment(StatusCode::BAD_REQUEST, &body(code)), Err(ProviderError::Unknown(_))));
        }
        let server = read_payment(StatusCode::INTERNAL_SERVER_ERROR, &body("REJECT_CARD_PAYMENT"));
        assert!(matches!(server, Err(ProviderError::Unknown(_))));
        assert!(matches!(read_payment(StatusCode::BAD_REQUEST, b"<html>"), Err(ProviderError::Unknown(_))));
        assert!(matches!(read_payment(StatusCode::OK, b"{}"), Err(ProviderError::Unknown(_))));
    }

    #[test]
    fn https_needs_the_tls_feature_and_other_schemes_are_refused() {
        let https = TossProvider::new(settings(TossSettings::PRODUCTION_BASE_URL));
        if cfg!(feature = "tls") {
            assert!(https.is_ok());
        } else {
            assert!(matches!(https, Err(ConfigError::TlsDisabled { .. })), "{https:?}");
        }
        assert!(matches!(TossProvider::new(settings("ftp://x")), Err(ConfigError::InvalidBaseUrl(_))));
        assert!(matches!(TossProvider::new(settings("not a url")), Err(ConfigError::InvalidBaseUrl(_))));
        let no_key = TossSettings { secret_key: String::new(), ..settings("http://127.0.0.1:1") };
        assert_eq!(TossProvider::new(no_key).err(), Some(ConfigError::MissingSecretKey));
    }

    #[test]
    fn path_segments_are_percent_encoded_under_the_base_path() {
        let toss = TossProvider::new(settings("http://127.0.0.1:1/prefix/")).expect("valid settings");
        let url = toss.url(&["v1", "payments", "orders", "a/b c"]);
        assert_eq!(url.as_str(), "http://127.0.0.1:1/prefix/v1/payments/orders/a%2Fb%20c");
    }
}
