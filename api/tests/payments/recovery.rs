//! When the provider cannot be reached, and when the application stops mid-payment: nothing
//! is decided without the provider's word, and a restart settles what was left in flight.

use crate::shop::{Config, SEAT_PRICE, Shop, ok, retry_after, sleep_past, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// An address nothing listens on.
fn dead_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_unreachable_provider_makes_the_confirm_pending_and_keeps_the_seats_pinned() {
    let shop = Shop::with(Config { provider_url: Some(dead_address()), ..Config::default() }).await;
    let event = shop.event(6, json!({ "holdTtlSeconds": 1 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let held = shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await;
    let rid = str_of(&held, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();

    let res = shop.confirm(&buyer, &order, "tpk_nobody_answers", 2 * SEAT_PRICE).await;
    assert!(retry_after(&res) >= 1);
    let error = expect_error(res, StatusCode::SERVICE_UNAVAILABLE, "payment_pending").await;
    assert!(error["details"]["retryAfterSeconds"].as_u64().is_some_and(|s| s >= 1), "{error}");

    // The money may have been taken: the payment stays in flight (durably), and the hold
    // keeps its seats past its time, refusing cancellation.
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.payment_key.as_deref()), ("in_progress", Some("tpk_nobody_answers")));
    sleep_past(str_of(&held, "expiresAt"), Duration::from_millis(300)).await;
    assert_eq!(shop.payment(&buyer, &order).await["status"], "in_progress");
    assert_eq!(shop.reservation(&buyer, &rid).await["status"], "held");
    let res = shop.cancel_reservation(&buyer, &rid).await;
    expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
    let res = shop.confirm(&buyer, &order, "tpk_another_try", 2 * SEAT_PRICE).await;
    expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "held").await;
    assert_eq!(shop.reservation_status(&rid).await, "held");
    assert!(shop.fake.payments().is_empty());
}

#[tokio::test]
async fn a_capture_cut_short_by_a_restart_is_reconciled_when_the_application_starts_again() {
    // The provider captures and never answers in time; the request gives up; the
    // application stops with the payment in flight, after the hold's time is up.
    let config = Config {
        toss_timeout_ms: 30_000,
        reconcile_after_secs: 600,
        request_timeout_ms: Some(1_500),
        ..Config::default()
    };
    let shop = Shop::with(config).await;
    shop.fake.set_hold_after_capture(Duration::from_secs(60));
    let event = shop.event(6, json!({ "holdTtlSeconds": 1 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();

    let res = shop.confirm(&buyer, &order, "tpk_cut_short", 2 * SEAT_PRICE).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment_row_of(&order).await.status, "in_progress");
    let shop = shop.restart().await;

    // The restarted application asks the provider, which has the capture: paid and sold.
    shop.app
        .eventually("the capture to be reconciled", || async {
            (shop.payment_row(&order).await?.status == "done").then_some(())
        })
        .await;
    let payment = shop.payment(&buyer, &order).await;
    assert_eq!(
        (payment["status"].as_str(), payment["reservation"]["status"].as_str()),
        (Some("done"), Some("confirmed"))
    );
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    // The buyer's retry now answers the outcome.
    let again = shop.confirm_ok(&buyer, &order, "tpk_cut_short", 2 * SEAT_PRICE).await;
    assert_eq!(again["status"], "done");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_refund_left_pending_by_a_restart_is_finished_when_the_application_starts_again() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-1"], "tpk_refund_over_restart").await;
    let (order, rid) = (str_of(&paid, "orderId").to_owned(), str_of(&paid, "reservationId").to_owned());

    shop.fake.fail_next_cancel_with_500();
    let res = shop.refund(&buyer, "tpk_refund_over_restart", &json!({})).await;
    expect_error(res, StatusCode::SERVICE_UNAVAILABLE, "payment_pending").await;
    assert_eq!(shop.payment_row_of(&order).await.status, "cancelling");
    let shop = shop.restart().await;

    shop.app
        .eventually("the refund to be finished", || async {
            (shop.payment_row(&order).await?.status == "cancelled").then_some(())
        })
        .await;
    shop.assert_money(&order, 1, 1);
    assert_eq!(shop.reservation_status(&rid).await, "cancelled");
    let again = ok(shop.refund(&buyer, "tpk_refund_over_restart", &json!({})).await, "refund again").await;
    assert_eq!(again["status"], "cancelled");
    shop.assert_money(&order, 1, 1);
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}
