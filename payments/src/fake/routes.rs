//! The three Toss endpoints Tiketi calls, with Toss's authentication and error shapes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};

use super::state::{Confirm, Reply, Shared};
use crate::codes;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/{payment_key}/cancel", post(cancel))
        .route("/v1/payments/orders/{order_id}", get(lookup))
        .with_state(shared)
}

/// Toss accepts `Basic base64("{secret_key}:")` and nothing else.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Reply> {
    if headers.get(header::AUTHORIZATION).is_some_and(|value| value.as_bytes() == shared.authorization.as_bytes()) {
        Ok(())
    } else {
        Err(Reply::error(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED_KEY,
            "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
        ))
    }
}

async fn confirm(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Result<Reply, Reply> {
    authorize(&shared, &headers)?;
    let req: Confirm = serde_json::from_slice(&body).map_err(Reply::invalid_request)?;
    let (delay, hold) = {
        let mut ledger = shared.ledger();
        ledger.confirm_calls += 1;
        if let Some((code, message)) = ledger.decline_next.take() {
            return Err(Reply::error(StatusCode::BAD_REQUEST, &code, &message));
        }
        ledger.check_confirm(&req)?;
        (ledger.confirm_delay, ledger.hold_after_capture)
    };
    let captured = if delay.is_zero() && !*shared.captures_held.borrow() {
        shared.capture(&req)?
    } else {
        // A task of its own, so the capture still happens after a client that timed out has hung up and hyper
        // has dropped this handler: a slow provider finishes what it started.
        let shared = Arc::clone(&shared);
        let mut shutdown = shared.shutdown.subscribe();
        let mut held = shared.captures_held.subscribe();
        let delayed = tokio::spawn(async move {
            let ready = async {
                tokio::time::sleep(delay).await;
                let _ = held.wait_for(|held| !*held).await;
            };
            tokio::select! {
                () = ready => Some(shared.capture(&req)),
                _ = shutdown.wait_for(|down| *down) => None,
            }
        });
        match delayed.await {
            Ok(Some(captured)) => captured?,
            _ => return Err(Reply::error(StatusCode::SERVICE_UNAVAILABLE, "PROVIDER_ERROR", "shutting down")),
        }
    };
    tokio::time::sleep(hold).await;
    Ok(captured)
}

#[derive(serde::Deserialize)]
struct CancelBody {
    #[serde(rename = "cancelReason")]
    cancel_reason: String,
}

async fn cancel(
    State(shared): State<Arc<Shared>>,
    Path(payment_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Reply, Reply> {
    authorize(&shared, &headers)?;
    let body: CancelBody = serde_json::from_slice(&body).map_err(Reply::invalid_request)?;
    let idempotency_key = match headers.get("Idempotency-Key").map(|value| value.to_str()) {
        Some(Ok(key)) => Some(key),
        Some(Err(_)) => return Err(Reply::invalid_request("Idempotency-Key is not text")),
        None => None,
    };
    let mut held = shared.cancels_held.subscribe();
    let _ = held.wait_for(|held| !*held).await;
    Ok(shared.ledger().cancel(&payment_key, &body.cancel_reason, idempotency_key))
}

async fn lookup(
    State(shared): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Result<Reply, Reply> {
    authorize(&shared, &headers)?;
    Ok(shared.ledger().lookup(&order_id))
}
