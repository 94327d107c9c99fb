//! Turning unknown outcomes into known ones by asking the provider what it has for the order.

use std::time::Duration;

use crate::{ConfirmRequest, PaymentProvider, ProviderError, ProviderPayment, ProviderStatus, codes};

/// The wait before each lookup. The first one gives a provider that was slow to answer a moment to finish.
const LOOKUP_BACKOFF: [Duration; 3] =
    [Duration::from_millis(50), Duration::from_millis(100), Duration::from_millis(200)];

/// Confirm, and when the outcome is unknown (timeout etc.) resolve it by asking the provider before answering.
///
/// The order is looked up (up to 3 tries, backoff 50/100/200 ms): DONE with this paymentKey -> `Ok(payment)`;
/// found but not DONE (aborted, expired, another key's) -> `Err(Declined { code: "NOT_CAPTURED", .. })`; the lookup
/// failing every time -> `Err(Unknown)`. A confirm answered `ALREADY_PROCESSED_PAYMENT` (a retried confirm after a
/// lost answer) is resolved the same way.
///
/// Not settled yet is unknown, never `NOT_CAPTURED`: no payment for the order (the confirm may still be on its way
/// to the provider), or one of ours still `IN_PROGRESS` (a confirm still running there), after the last try ->
/// `Err(Unknown)`. A capture that lands later must find its payment still in flight.
///
/// `Ok` carries the provider's `total_amount`; callers should check it against the amount they asked for.
pub async fn confirm_resolved(
    provider: &dyn PaymentProvider,
    req: &ConfirmRequest,
) -> Result<ProviderPayment, ProviderError> {
    // Whether the provider answered at all: "already processed" is an answer (the key was
    // confirmed before), so an order it has no payment for was not captured with that key.
    let (cause, answered) = match provider.confirm(req).await {
        Ok(payment) => return Ok(payment),
        Err(ProviderError::Declined { code, message }) if code == codes::ALREADY_PROCESSED_PAYMENT => {
            (format!("{code}: {message}"), true)
        }
        Err(ProviderError::Unknown(cause)) => (cause, false),
        Err(declined) => return Err(declined),
    };
    let ours = |p: &ProviderPayment| p.payment_key == req.payment_key;
    let in_progress = |p: &ProviderPayment| ours(p) && p.status == ProviderStatus::InProgress;
    // Settled once the provider shows a payment for the order that is not still running
    // (or, after an answer, none at all).
    let settled = |found: Option<&ProviderPayment>| match found {
        Some(p) => !in_progress(p),
        None => answered,
    };
    let found = match look_up(provider, &req.order_id, settled).await {
        Ok(found) => found,
        Err(e) => {
            return Err(ProviderError::Unknown(format!(
                "confirm of order {}: {cause}; lookup failed: {e}",
                req.order_id
            )));
        }
    };
    match found {
        Some(p) if ours(&p) && p.status == ProviderStatus::Done => {
            tracing::info!(order_id = %req.order_id, %cause, "confirm outcome resolved by lookup: captured");
            Ok(p)
        }
        Some(p) if in_progress(&p) => Err(ProviderError::Unknown(format!(
            "confirm of order {}: {cause}; the payment is still in progress at the provider",
            req.order_id
        ))),
        // The request may still be on its way to, or queued at, the provider: "not yet" is
        // not "never". The caller keeps the payment in flight and asks again later.
        None if !answered => Err(ProviderError::Unknown(format!(
            "confirm of order {}: {cause}; the provider has no payment for the order yet",
            req.order_id
        ))),
        found => {
            let seen = match found {
                None => "no payment".to_owned(),
                Some(p) if ours(&p) => format!("the payment in status {:?}", p.status),
                Some(p) => format!("another payment in status {:?}", p.status),
            };
            tracing::info!(order_id = %req.order_id, %cause, %seen, "confirm outcome resolved by lookup: not captured");
            Err(ProviderError::declined(
                codes::NOT_CAPTURED,
                // The cause (which may name our provider's address) goes to the log, not
                // to whoever reads this message.
                format!("order {} was not captured: the provider has {seen}", req.order_id),
            ))
        }
    }
}

/// Cancel, resolving unknown outcomes by lookup.
///
/// CANCELED -> `Ok`; `ALREADY_CANCELED_PAYMENT` -> resolved by lookup -> `Ok` if CANCELED; still DONE (or anything
/// else) after a failed/unknown cancel -> `Err(Unknown)`; a lookup failing every time -> `Err(Unknown)`; any other
/// `Declined` refusal is returned as is.
pub async fn cancel_resolved(
    provider: &dyn PaymentProvider,
    payment_key: &str,
    order_id: &str,
    reason: &str,
    idempotency_key: &str,
) -> Result<ProviderPayment, ProviderError> {
    let (cause, refusal) = match provider.cancel(payment_key, reason, idempotency_key).await {
        Ok(payment) => return Ok(payment),
        Err(refusal @ ProviderError::Declined { .. }) if refusal.code() == Some(codes::ALREADY_CANCELED_PAYMENT) => {
            (refusal.to_string(), Some(refusal))
        }
        Err(ProviderError::Unknown(cause)) => (cause, None),
        Err(declined) => return Err(declined),
    };
    let ours = |p: &ProviderPayment| p.payment_key == payment_key;
    // A DONE payment may be a cancel still landing at the provider: ask again.
    let still_done = |p: &ProviderPayment| ours(p) && p.status == ProviderStatus::Done;
    let found = match look_up(provider, order_id, |found| !found.is_some_and(still_done)).await {
        Ok(found) => found,
        Err(e) => {
            return Err(ProviderError::Unknown(format!(
                "cancel of payment {payment_key}: {cause}; lookup failed: {e}"
            )));
        }
    };
    match (found, refusal) {
        (Some(p), _) if ours(&p) && p.status == ProviderStatus::Canceled => {
            tracing::info!(%order_id, %cause, "cancel outcome resolved by lookup: canceled");
            Ok(p)
        }
        (_, Some(refusal)) => Err(refusal),
        (found, None) => {
            let seen = match found {
                None => format!("no payment for order {order_id}"),
                Some(p) if ours(&p) => format!("the payment in status {:?}", p.status),
                Some(p) => format!("another payment ({}) for order {order_id}", p.payment_key),
            };
            Err(ProviderError::Unknown(format!("cancel of payment {payment_key}: {cause}; the provider has {seen}")))
        }
    }
}

/// Looks the order up until `settled` accepts the answer, at most [`LOOKUP_BACKOFF`]`.len()` times. Returns the
/// last answer seen (settled or not), or the last error when no lookup succeeded.
async fn look_up(
    provider: &dyn PaymentProvider,
    order_id: &str,
    settled: impl Fn(Option<&ProviderPayment>) -> bool,
) -> Result<Option<ProviderPayment>, ProviderError> {
    let mut seen = None;
    let mut error = ProviderError::Unknown("no lookup made".to_owned());
    for wait in LOOKUP_BACKOFF {
        tokio::time::sleep(wait).await;
        match provider.payment_for_order(order_id).await {
            Ok(found) if settled(found.as_ref()) => return Ok(found),
            Ok(found) => seen = Some(found),
            Err(e) => error = e,
        }
    }
    seen.ok_or(error)
}
