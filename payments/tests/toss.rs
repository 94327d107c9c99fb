//! The Toss adapter against the fake Toss server: what the money did, not just what the adapter said.

use std::time::Duration;

use tiketi_payments::fake::FakeToss;
use tiketi_payments::toss::{TossProvider, TossSettings};
use tiketi_payments::{
    ConfirmRequest, PaymentProvider, ProviderError, ProviderStatus, cancel_resolved, codes, confirm_resolved,
};
use time::OffsetDateTime;

const SECRET: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";

fn toss_for(fake: &FakeToss, secret_key: &str, timeout: Duration) -> TossProvider {
    TossProvider::new(TossSettings { base_url: fake.base_url(), secret_key: secret_key.to_owned(), timeout })
        .expect("valid settings")
}

fn toss(fake: &FakeToss) -> TossProvider {
    toss_for(fake, fake.secret_key(), Duration::from_secs(10))
}

fn order(n: u32) -> ConfirmRequest {
    ConfirmRequest {
        payment_key: format!("tgen_pk_{n}"),
        order_id: format!("order-{n}"),
        amount: 15_000 + i64::from(n),
    }
}

fn declined_code<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> String {
    match result {
        Err(ProviderError::Declined { code, .. }) => code,
        other => panic!("expected a decline, got {other:?}"),
    }
}

fn assert_unknown<T: std::fmt::Debug>(result: Result<T, ProviderError>) {
    assert!(matches!(result, Err(ProviderError::Unknown(_))), "expected an unknown outcome, got {result:?}");
}

#[tokio::test]
async fn a_confirmed_payment_is_read_back_done_with_its_amount_and_approval_time() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    // Toss timestamps have whole seconds.
    let before = OffsetDateTime::now_utc() - Duration::from_secs(1);

    let payment = toss.confirm(&order(1)).await.expect("captured");

    assert_eq!(payment.status, ProviderStatus::Done);
    assert_eq!(payment.payment_key, "tgen_pk_1");
    assert_eq!(payment.order_id, "order-1");
    assert_eq!(payment.total_amount, 15_001);
    assert_eq!(payment.method.as_deref(), Some("카드"));
    let approved_at = payment.approved_at.expect("a captured payment has an approval time");
    assert!(approved_at >= before && approved_at <= OffsetDateTime::now_utc(), "{approved_at}");
    assert_eq!(approved_at.offset(), time::macros::offset!(+9), "Toss answers in Korean time");
    assert_eq!(fake.captures("order-1"), 1);
    assert_eq!(fake.payment("order-1").as_ref(), Some(&payment));
    assert_eq!(toss.payment_for_order("order-1").await, Ok(Some(payment)));
}

#[tokio::test]
async fn a_wrong_secret_key_is_declined_as_unauthorized_and_captures_nothing() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss_for(&fake, "test_sk_wrong", Duration::from_secs(10));

    assert_eq!(declined_code(toss.confirm(&order(1)).await), codes::UNAUTHORIZED_KEY);
    assert_eq!(declined_code(toss.payment_for_order("order-1").await), codes::UNAUTHORIZED_KEY);
    assert_eq!(declined_code(toss.cancel("tgen_pk_1", "r", "idem").await), codes::UNAUTHORIZED_KEY);
    assert_eq!(fake.captures("order-1"), 0);
    assert_eq!(fake.confirm_calls(), 0);
}

#[tokio::test]
async fn a_decline_carries_tosss_code_and_message_and_captures_nothing() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);

    fake.decline_next("REJECT_CARD_PAYMENT", "한도초과 혹은 잔액부족으로 결제에 실패했습니다.");
    let declined = toss.confirm(&order(1)).await;
    assert_eq!(
        declined,
        Err(ProviderError::declined("REJECT_CARD_PAYMENT", "한도초과 혹은 잔액부족으로 결제에 실패했습니다."))
    );
    assert_eq!(fake.captures("order-1"), 0);

    fake.decline_next("INVALID_CARD_EXPIRATION", "카드 정보를 다시 확인해주세요.");
    assert_eq!(declined_code(confirm_resolved(&toss, &order(1)).await), "INVALID_CARD_EXPIRATION");
    assert_eq!(fake.captures("order-1"), 0);

    // A decline is for one confirm only.
    assert!(toss.confirm(&order(1)).await.is_ok());
    assert_eq!(fake.captures("order-1"), 1);
    assert_eq!(fake.confirm_calls(), 3);
}

#[tokio::test]
async fn a_confirm_slower_than_the_timeout_is_unknown_and_the_late_capture_is_found_by_a_retry() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss_for(&fake, SECRET, Duration::from_millis(200));
    fake.set_confirm_delay(Duration::from_secs(2));

    assert_unknown(toss.confirm(&order(1)).await);
    assert_eq!(fake.captures("order-1"), 0, "the slow provider has not captured yet");

    // The provider finishes what it started although nobody is listening any more.
    assert!(fake.wait_for_capture("order-1", Duration::from_secs(20)).await);
    fake.set_confirm_delay(Duration::ZERO);
    let payment = confirm_resolved(&toss, &order(1)).await.expect("the retry resolves to the late capture");
    assert_eq!(payment.status, ProviderStatus::Done);
    assert_eq!(payment.total_amount, 15_001);
    assert_eq!(fake.captures("order-1"), 1);
}

#[tokio::test]
async fn a_held_capture_lands_when_released_and_not_before() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss_for(&fake, SECRET, Duration::from_millis(200));
    fake.hold_captures(true);

    assert_unknown(toss.confirm(&order(1)).await);
    assert_eq!(toss.payment_for_order("order-1").await, Ok(None), "nothing captured, nothing to find");
    assert!(!fake.wait_for_capture("order-1", Duration::from_millis(500)).await, "held");
    fake.hold_captures(false);
    assert!(fake.wait_for_capture("order-1", Duration::from_secs(5)).await, "released");
    let found = toss.payment_for_order("order-1").await.expect("a lookup").expect("the capture");
    assert_eq!((found.status, fake.captures("order-1")), (ProviderStatus::Done, 1));
}

#[tokio::test]
async fn a_capture_whose_answer_was_lost_resolves_to_the_captured_payment() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss_for(&fake, SECRET, Duration::from_millis(300));
    fake.set_hold_after_capture(Duration::from_secs(5));

    assert_unknown(toss.confirm(&order(1)).await);
    assert_eq!(fake.captures("order-1"), 1, "captured although the answer was lost");

    let payment = confirm_resolved(&toss, &order(2)).await.expect("resolved by lookup");
    assert_eq!(payment.status, ProviderStatus::Done);
    assert_eq!(payment.payment_key, "tgen_pk_2");
    assert_eq!(payment.total_amount, 15_002);
    assert_eq!(fake.captures("order-2"), 1);
}

#[tokio::test]
async fn a_retried_confirm_is_already_processed_and_resolves_to_the_one_capture() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    let first = toss.confirm(&order(1)).await.expect("captured");

    assert_eq!(declined_code(toss.confirm(&order(1)).await), codes::ALREADY_PROCESSED_PAYMENT);
    assert_eq!(confirm_resolved(&toss, &order(1)).await, Ok(first));
    assert_eq!(fake.captures("order-1"), 1);
    assert_eq!(fake.confirm_calls(), 3);
}

#[tokio::test]
async fn another_payment_key_for_a_paid_order_is_not_captured() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    toss.confirm(&order(1)).await.expect("captured");

    let other = ConfirmRequest { payment_key: "tgen_pk_other".to_owned(), ..order(1) };
    assert_eq!(declined_code(toss.confirm(&other).await), codes::ALREADY_PROCESSED_PAYMENT);
    assert_eq!(declined_code(confirm_resolved(&toss, &other).await), codes::NOT_CAPTURED);
    assert_eq!(fake.captures("order-1"), 1);
    assert_eq!(fake.payment("order-1").map(|p| p.payment_key).as_deref(), Some("tgen_pk_1"));
}

#[tokio::test]
async fn a_cancel_refunds_once_however_often_it_is_retried() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    toss.confirm(&order(1)).await.expect("captured");

    let canceled = toss.cancel("tgen_pk_1", "고객 변심", "cancel-order-1").await.expect("canceled");
    assert_eq!(canceled.status, ProviderStatus::Canceled);
    assert_eq!(canceled.total_amount, 15_001);
    // Same idempotency key: the same answer, no second refund.
    assert_eq!(toss.cancel("tgen_pk_1", "고객 변심", "cancel-order-1").await, Ok(canceled.clone()));
    // Another key: Toss says it is cancelled already, and cancel_resolved turns that into the payment.
    assert_eq!(declined_code(toss.cancel("tgen_pk_1", "again", "another-key").await), codes::ALREADY_CANCELED_PAYMENT);
    let resolved = cancel_resolved(&toss, "tgen_pk_1", "order-1", "again", "yet-another-key").await;
    assert_eq!(resolved.map(|p| p.status), Ok(ProviderStatus::Canceled));

    assert_eq!(fake.refunds("order-1"), 1);
    assert_eq!(
        toss.payment_for_order("order-1").await.map(|p| p.map(|p| p.status)),
        Ok(Some(ProviderStatus::Canceled))
    );
}

#[tokio::test]
async fn a_cancel_answered_500_is_unknown_while_the_payment_is_still_done() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    toss.confirm(&order(1)).await.expect("captured");

    fake.fail_next_cancel_with_500();
    assert_unknown(toss.cancel("tgen_pk_1", "r", "cancel-order-1").await);
    fake.fail_next_cancel_with_500();
    assert_unknown(cancel_resolved(&toss, "tgen_pk_1", "order-1", "r", "cancel-order-1").await);
    assert_eq!(fake.refunds("order-1"), 0);
    assert_eq!(fake.payment("order-1").map(|p| p.status), Some(ProviderStatus::Done));

    // The failed attempts were not remembered under the key: retrying it really cancels, once.
    let canceled = cancel_resolved(&toss, "tgen_pk_1", "order-1", "r", "cancel-order-1").await;
    assert_eq!(canceled.map(|p| p.status), Ok(ProviderStatus::Canceled));
    assert_eq!(fake.refunds("order-1"), 1);
}

#[tokio::test]
async fn cancelling_an_unknown_payment_is_declined_not_found() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);

    assert_eq!(declined_code(toss.cancel("tgen_pk_nope", "r", "k").await), codes::NOT_FOUND_PAYMENT);
    assert_eq!(declined_code(cancel_resolved(&toss, "tgen_pk_nope", "order-9", "r", "k2").await), "NOT_FOUND_PAYMENT");
}

#[tokio::test]
async fn looking_up_an_unknown_order_finds_nothing() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    toss.confirm(&order(1)).await.expect("captured");

    assert_eq!(toss.payment_for_order("order-2").await, Ok(None));
    assert_eq!(toss.payment_for_order("order/../1").await, Ok(None), "the order id is one path segment");
}

#[tokio::test]
async fn an_unreachable_toss_is_an_unknown_outcome_even_after_resolution() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    drop(fake);

    assert_unknown(toss.confirm(&order(1)).await);
    assert_unknown(confirm_resolved(&toss, &order(1)).await);
    assert_unknown(cancel_resolved(&toss, "tgen_pk_1", "order-1", "r", "k").await);
}

#[tokio::test]
async fn dropping_the_fake_cuts_a_held_answer() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss_for(&fake, SECRET, Duration::from_secs(120));
    fake.set_hold_after_capture(Duration::from_secs(120));
    let confirm = tokio::spawn(async move { toss.confirm(&order(1)).await });

    assert!(fake.wait_for_capture("order-1", Duration::from_secs(20)).await);
    drop(fake);

    // A deadline far below the hold: the answer can only come from the cut connection.
    let answer = tokio::time::timeout(Duration::from_secs(30), confirm).await.expect("cut, not held").expect("joined");
    assert_unknown(answer);
}

#[tokio::test]
async fn waiting_for_a_capture_that_never_comes_gives_up() {
    let fake = FakeToss::start(SECRET).await;
    assert!(!fake.wait_for_capture("order-1", Duration::from_millis(100)).await);
    assert!(fake.payments().is_empty());
}

#[tokio::test]
async fn the_fake_lists_every_payment() {
    let fake = FakeToss::start(SECRET).await;
    let toss = toss(&fake);
    for n in [2, 1] {
        toss.confirm(&order(n)).await.expect("captured");
    }
    let orders: Vec<_> = fake.payments().into_iter().map(|p| p.order_id).collect();
    assert_eq!(orders, ["order-1", "order-2"]);
}
