//! `Idempotency-Key` on prepare and confirm: a repeat gets the stored answer, a reused key
//! with another body is refused, and a repeat while the first is in flight is told so.

use crate::shop::{Config, SEAT_PRICE, Shop, ok, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn confirm_body(order: &str, key: &str, amount: i64) -> Value {
    json!({ "orderId": order, "paymentKey": key, "amount": amount })
}

#[tokio::test]
async fn a_repeated_idempotent_confirm_gets_the_stored_answer_and_charges_once() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    let body = confirm_body(&order, "tpk_idempotent", 2 * SEAT_PRICE);

    let first = ok(shop.app.post_with_key("/payments/confirm", &buyer, "confirm-1", &body).await, "confirm").await;
    assert_eq!((first["status"].as_str(), first["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    let again = ok(shop.app.post_with_key("/payments/confirm", &buyer, "confirm-1", &body).await, "repeat").await;
    assert_eq!(again, first);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.fake.confirm_calls(), 1);

    // The same key with another body is a mistake, named as such.
    let other = confirm_body(&order, "tpk_other_card", 2 * SEAT_PRICE);
    let res = shop.app.post_with_key("/payments/confirm", &buyer, "confirm-1", &other).await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "Idempotency-Key", "{error}");
    let res = shop.app.post_with_key("/payments/prepare", &buyer, "confirm-1", &json!({ "reservationId": rid })).await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "Idempotency-Key", "{error}");
    // Another buyer's keys are their own.
    let bob = shop.app.register("bob@example.com").await;
    let res = shop.app.post_with_key("/payments/confirm", &bob, "confirm-1", &body).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;

    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment_row_of(&order).await.status, "done");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn an_idempotent_confirm_repeated_while_the_first_is_capturing_is_in_flight() {
    let shop = Shop::with(Config { toss_timeout_ms: 5_000, ..Config::default() }).await;
    shop.fake.set_hold_after_capture(Duration::from_secs(1));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    let body = confirm_body(&order, "tpk_in_flight", SEAT_PRICE);

    let repeating = async {
        assert!(shop.fake.wait_for_capture(&order, Duration::from_secs(5)).await, "never captured");
        let res = shop.app.post_with_key("/payments/confirm", &buyer, "confirm-slow", &body).await;
        expect_error(res, StatusCode::CONFLICT, "idempotency_in_flight").await;
        let other = confirm_body(&order, "tpk_in_flight_other", SEAT_PRICE);
        let res = shop.app.post_with_key("/payments/confirm", &buyer, "confirm-slow", &other).await;
        let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error["details"]["field"], "Idempotency-Key", "{error}");
    };
    let (first, ()) =
        tokio::join!(shop.app.post_with_key("/payments/confirm", &buyer, "confirm-slow", &body), repeating);
    let first = ok(first, "the first confirm").await;
    assert_eq!(first["reservation"]["status"], "confirmed");

    // Once answered, the repeat gets the stored answer.
    let again = ok(shop.app.post_with_key("/payments/confirm", &buyer, "confirm-slow", &body).await, "repeat").await;
    assert_eq!(again, first);
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    shop.assert_seats(&event, &["S1-A-1"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_repeated_idempotent_prepare_is_the_same_order() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let other = str_of(&shop.hold(&buyer, &event, &["S1-A-2"]).await, "id").to_owned();
    let body = json!({ "reservationId": rid });

    let first = ok(shop.app.post_with_key("/payments/prepare", &buyer, "prepare-1", &body).await, "prepare").await;
    let again = ok(shop.app.post_with_key("/payments/prepare", &buyer, "prepare-1", &body).await, "repeat").await;
    assert_eq!(again, first);
    assert_eq!(first["status"], "ready");
    let res =
        shop.app.post_with_key("/payments/prepare", &buyer, "prepare-1", &json!({ "reservationId": other })).await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "Idempotency-Key", "{error}");

    // The order is the one a plain prepare sees, and it pays.
    let order = str_of(&first, "orderId");
    assert_eq!(str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId"), order);
    assert!(shop.payment_row(&format!("{}-1", other.replace('-', ""))).await.is_none());
    shop.confirm_ok(&buyer, order, "tpk_after_idempotent_prepare", SEAT_PRICE).await;
    shop.assert_money(order, 1, 0);
    let seats = shop.seats(&event).await;
    assert_eq!((seats["S1-A-1"].as_str(), seats["S1-A-2"].as_str()), ("sold", "held"));
    shop.assert_consistent(&event).await;
}
