//! Provider error codes this crate produces or branches on, with Toss Payments' spelling.

/// The payment (or another payment for the same order) was already confirmed.
pub const ALREADY_PROCESSED_PAYMENT: &str = "ALREADY_PROCESSED_PAYMENT";
/// The payment was already cancelled.
pub const ALREADY_CANCELED_PAYMENT: &str = "ALREADY_CANCELED_PAYMENT";
/// The order id was already used by another payment that is not captured (cancelled, aborted...).
pub const DUPLICATED_ORDER_ID: &str = "DUPLICATED_ORDER_ID";
/// No payment with that key, or for that order.
pub const NOT_FOUND_PAYMENT: &str = "NOT_FOUND_PAYMENT";
/// The card issuer refused the payment.
pub const REJECT_CARD_PAYMENT: &str = "REJECT_CARD_PAYMENT";
/// The secret key was not accepted.
pub const UNAUTHORIZED_KEY: &str = "UNAUTHORIZED_KEY";
/// The request was malformed.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
/// The payment is in a state that cannot be cancelled.
pub const NOT_CANCELABLE_PAYMENT: &str = "NOT_CANCELABLE_PAYMENT";
/// Ours, not Toss's: after an unknown outcome the provider was asked and had not captured this payment.
pub const NOT_CAPTURED: &str = "NOT_CAPTURED";

/// Codes Toss sends with a 4xx although the outcome is not known: treated as [`crate::ProviderError::Unknown`].
pub const OUTCOME_UNKNOWN: [&str; 4] = [
    "PROVIDER_ERROR",
    "FAILED_INTERNAL_SYSTEM_PROCESSING",
    "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
    "UNKNOWN_PAYMENT_ERROR",
];
