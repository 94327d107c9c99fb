//! The in-process mock provider.

use std::time::Duration;

use tiketi_payments::mock::{MockProvider, MockSettings};
use tiketi_payments::{ConfirmRequest, PaymentProvider, ProviderError, ProviderStatus, codes, confirm_resolved};

fn mock(failure_rate: f64) -> MockProvider {
    MockProvider::new(MockSettings { latency: Duration::ZERO, failure_rate })
}

fn order(n: u32) -> ConfirmRequest {
    ConfirmRequest { payment_key: format!("pk-{n}"), order_id: format!("order-{n}"), amount: 10_000 }
}

fn declined_code<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> String {
    match result {
        Err(ProviderError::Declined { code, .. }) => code,
        other => panic!("expected a decline, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failure_rate_of_zero_never_declines() {
    let provider = mock(0.0);
    for n in 0..500 {
        let payment = provider.confirm(&order(n)).await.expect("never declined");
        assert_eq!(payment.status, ProviderStatus::Done);
        assert!(provider.captured(&format!("order-{n}")));
    }
}

#[tokio::test]
async fn a_failure_rate_of_one_always_declines_and_captures_nothing() {
    let provider = mock(1.0);
    for n in 0..500 {
        assert_eq!(declined_code(provider.confirm(&order(n)).await), codes::REJECT_CARD_PAYMENT);
        assert!(!provider.captured(&format!("order-{n}")));
        assert_eq!(provider.payment_for_order(&format!("order-{n}")).await, Ok(None));
    }
}

#[tokio::test]
async fn the_same_payment_key_always_gets_the_same_outcome() {
    let first = mock(0.5);
    let second = mock(0.5);
    let mut declined = 0;
    for n in 0..200 {
        let a = first.confirm(&order(n)).await.is_ok();
        let b = second.confirm(&order(n)).await.is_ok();
        assert_eq!(a, b, "key pk-{n}");
        assert_eq!(a, !first.declines(&format!("pk-{n}")));
        declined += u32::from(!a);
    }
    // sha256 spreads the keys: a 0.5 rate declines some and accepts some.
    assert!((50..150).contains(&declined), "{declined} of 200 declined");
}

#[tokio::test]
async fn confirming_twice_with_the_same_key_captures_once() {
    let provider = mock(0.0);
    let first = provider.confirm(&order(1)).await.expect("captured");
    assert_eq!(first.method.as_deref(), Some("CARD"));
    assert!(first.approved_at.is_some());
    assert_eq!(provider.confirm(&order(1)).await, Ok(first.clone()));

    let other = ConfirmRequest { payment_key: "pk-other".to_owned(), ..order(1) };
    assert_eq!(declined_code(provider.confirm(&other).await), codes::ALREADY_PROCESSED_PAYMENT);
    assert_eq!(declined_code(confirm_resolved(&provider, &other).await), codes::NOT_CAPTURED);
    assert_eq!(provider.payment("order-1"), Some(first));
}

#[tokio::test]
async fn a_cancel_cancels_a_captured_payment_and_repeats_harmlessly() {
    let provider = mock(0.0);
    provider.confirm(&order(1)).await.expect("captured");

    let canceled = provider.cancel("pk-1", "changed mind", "k1").await.expect("canceled");
    assert_eq!(canceled.status, ProviderStatus::Canceled);
    assert!(!provider.captured("order-1"));
    assert_eq!(provider.cancel("pk-1", "changed mind", "k2").await, Ok(canceled));
    assert_eq!(declined_code(provider.cancel("pk-unknown", "r", "k3").await), codes::NOT_FOUND_PAYMENT);

    // A cancelled payment is not captured again by a retried confirm.
    assert_eq!(declined_code(confirm_resolved(&provider, &order(1)).await), codes::NOT_CAPTURED);
}

#[tokio::test(start_paused = true)]
async fn every_call_takes_the_configured_latency() {
    let latency = Duration::from_millis(250);
    let provider = MockProvider::new(MockSettings { latency, failure_rate: 0.0 });
    let start = tokio::time::Instant::now();
    provider.confirm(&order(1)).await.expect("captured");
    assert_eq!(start.elapsed(), latency);
    provider.payment_for_order("order-1").await.expect("found");
    provider.cancel("pk-1", "r", "k").await.expect("canceled");
    assert_eq!(start.elapsed(), latency * 3);
}
