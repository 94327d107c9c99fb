//! Holds that run out: paying too late charges nothing, and the expiry sweep never takes
//! the seats of a hold whose payment is being captured.

use crate::shop::{Config, SEAT_PRICE, Shop, ok, sleep_past, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// A one-second hold of `S1-A-1` and `S1-A-2` with a prepared order, waited out until the
/// sweep has expired it: `(shop, event, buyer, reservation id, order id)`.
async fn lapsed_order() -> (Shop, String, String, String, String) {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({ "holdTtlSeconds": 1 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    shop.app.reservation_when(&buyer, &rid, |r| r["status"] == "expired").await;
    (shop, event, buyer, rid, order)
}

#[tokio::test]
async fn confirming_after_the_hold_expired_is_reservation_expired_and_charges_nothing() {
    let (shop, event, buyer, rid, order) = lapsed_order().await;

    let res = shop.confirm(&buyer, &order, "tpk_too_late", 2 * SEAT_PRICE).await;
    expect_error(res, StatusCode::CONFLICT, "reservation_expired").await;
    assert_eq!(shop.fake.confirm_calls(), 0);
    shop.assert_money(&order, 0, 0);
    assert_eq!(shop.payment(&buyer, &order).await["status"], "aborted");
    assert_eq!(shop.payment_row_of(&order).await.status, "aborted");
    assert_eq!(shop.reservation_status(&rid).await, "expired");
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn preparing_after_the_hold_expired_is_reservation_expired() {
    let (shop, event, buyer, rid, order) = lapsed_order().await;

    let res = shop.prepare(&buyer, &rid).await;
    expect_error(res, StatusCode::CONFLICT, "reservation_expired").await;
    assert_eq!(shop.payment_row_of(&order).await.status, "aborted");
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn the_sweep_never_expires_a_hold_whose_capture_is_in_flight() {
    // A one-second hold, and a provider that takes two seconds to capture. (The safety-net
    // reconciliation waits longer than that, so only the capture's own answer settles it.)
    let shop = Shop::with(Config { toss_timeout_ms: 5_000, reconcile_after_secs: 5, ..Config::default() }).await;
    shop.fake.set_confirm_delay(Duration::from_secs(2));
    let event = shop.event(6, json!({ "holdTtlSeconds": 1 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let held = shop.hold(&buyer, &event, &["S1-A-3", "S1-A-4"]).await;
    let rid = str_of(&held, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();

    let watching = async {
        sleep_past(str_of(&held, "expiresAt"), Duration::from_millis(300)).await;
        // Past its time, but pinned by the capture in flight.
        assert_eq!(shop.fake.captures(&order), 0, "captured before the hold's time was up");
        assert_eq!(shop.reservation(&buyer, &rid).await["status"], "held");
        assert_eq!(shop.payment(&buyer, &order).await["status"], "in_progress");
        let seats = shop.app.seat_statuses(&event).await;
        assert_eq!((seats["S1-A-3"].as_str(), seats["S1-A-4"].as_str()), ("held", "held"));
        // Nobody else can take the seats meanwhile.
        let other = shop.app.register("bob@example.com").await;
        let res = shop.app.hold(&other, &event, &json!({ "seatIds": ["S1-A-3"] })).await;
        expect_error(res, StatusCode::CONFLICT, "seats_unavailable").await;
    };
    let (paid, ()) = tokio::join!(shop.confirm(&buyer, &order, "tpk_slow_capture", 2 * SEAT_PRICE), watching);
    let paid = ok(paid, "confirm").await;
    assert_eq!((paid["status"].as_str(), paid["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment_row_of(&order).await.status, "done");
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    shop.assert_seats(&event, &["S1-A-3", "S1-A-4"], "sold").await;
    shop.assert_consistent(&event).await;
}
