//! Refused requests: a wrong amount, malformed or foreign orders, bad input on every payment
//! route, and other buyers' payments. A refused request never reaches the provider and
//! changes nothing.

use crate::shop::{SEAT_PRICE, Shop, str_of};
use crate::support::expect_error;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

/// A 422 naming `field`.
async fn invalid(res: Response, field: &str) -> Value {
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], field, "{error}");
    error
}

/// A 400 whose message mentions `needle`.
async fn bad_request(res: Response, needle: &str) {
    let error = expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(error["message"].as_str().unwrap().contains(needle), "{needle:?} not in {error}");
}

#[tokio::test]
async fn a_wrong_amount_is_refused_before_the_provider_and_the_hold_stands() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();

    for amount in [2 * SEAT_PRICE - 1, 2 * SEAT_PRICE + 1, 1] {
        let error = invalid(shop.confirm(&buyer, &order, "tpk_wrong_amount", amount).await, "amount").await;
        assert!(error["message"].as_str().unwrap().contains(&(2 * SEAT_PRICE).to_string()), "{error}");
    }
    assert_eq!(shop.fake.confirm_calls(), 0);
    shop.assert_money(&order, 0, 0);
    assert_eq!(shop.reservation(&buyer, &rid).await["status"], "held");
    assert_eq!(shop.payment(&buyer, &order).await["status"], "ready");
    assert_eq!(shop.payment_row_of(&order).await.status, "ready");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "held").await;

    // The right amount still pays.
    shop.confirm_ok(&buyer, &order, "tpk_right_amount", 2 * SEAT_PRICE).await;
    shop.assert_money(&order, 1, 0);
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn orders_that_are_not_ours_or_not_yet_prepared_are_refused() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let hex = rid.replace('-', "");

    // Not an order id of ours at all.
    for order in ["nope", "", "order-1", &format!("{hex}-"), &format!("{hex}-x"), &format!("{hex}1"), &rid] {
        invalid(shop.confirm(&buyer, order, "tpk_bad_order", SEAT_PRICE).await, "orderId").await;
    }
    // Well-formed, but never prepared: no such payment.
    let res = shop.confirm(&buyer, &format!("{hex}-1"), "tpk_unprepared", SEAT_PRICE).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let stranger = uuid::Uuid::new_v4().simple().to_string();
    let res = shop.confirm(&buyer, &format!("{stranger}-1"), "tpk_unknown_order", SEAT_PRICE).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    // Prepared, but another attempt number.
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    assert_eq!(order, format!("{hex}-1"));
    let res = shop.confirm(&buyer, &format!("{hex}-2"), "tpk_other_attempt", SEAT_PRICE).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let res = shop.app.get(&format!("/payments/{hex}-2"), Some(&buyer)).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let res = shop.app.get("/payments/not-an-order", Some(&buyer)).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    // Preparing a reservation that does not exist.
    let res = shop.prepare(&buyer, &uuid::Uuid::new_v4().to_string()).await;
    expect_error(res, StatusCode::NOT_FOUND, "reservation_not_found").await;

    assert_eq!(shop.fake.confirm_calls(), 0);
    assert_eq!(shop.payment(&buyer, &order).await["status"], "ready");
    shop.assert_seats(&event, &["S1-A-1"], "held").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_buyer_can_never_see_or_touch_another_buyers_payment() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let ann = shop.app.register("ann@example.com").await;
    let bob = shop.app.register("bob@example.com").await;
    let rid = str_of(&shop.hold(&ann, &event, &["S1-A-1", "S1-A-2"]).await, "id").to_owned();

    // Bob cannot prepare Ann's hold.
    let res = shop.prepare(&bob, &rid).await;
    let (status, _, body) = crate::support::error_code(res).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let order = str_of(&shop.prepare_ok(&ann, &rid).await, "orderId").to_owned();

    // Nor see, confirm, or pay her order.
    let res = shop.app.get(&format!("/payments/{order}"), Some(&bob)).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let res = shop.confirm(&bob, &order, "tpk_bob_pays_for_ann", 2 * SEAT_PRICE).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    // Even with a wrong amount, a stranger learns nothing but "not found".
    let res = shop.confirm(&bob, &order, "tpk_bob_probes", 1).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    assert_eq!(shop.fake.confirm_calls(), 0);

    shop.confirm_ok(&ann, &order, "tpk_ann_pays", 2 * SEAT_PRICE).await;
    // Bob cannot refund her payment, nor cancel her reservation, nor list her payments.
    let res = shop.refund(&bob, "tpk_ann_pays", &json!({ "reason": "mine now" })).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let res = shop.cancel_reservation(&bob, &rid).await;
    expect_error(res, StatusCode::NOT_FOUND, "reservation_not_found").await;
    let res = shop.app.get(&format!("/payments/{order}"), Some(&bob)).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let res = shop.prepare(&bob, &rid).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let bobs = crate::shop::ok(shop.app.get("/payments/my", Some(&bob)).await, "bob's payments").await;
    assert_eq!(bobs["data"], json!([]));

    // Nothing happened to Ann's money or seats; an admin may look.
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment(&ann, &order).await["status"], "done");
    assert_eq!(shop.payment(&shop.app.admin, &order).await["status"], "done");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn bad_input_on_every_payment_route_is_a_4xx_naming_the_problem_and_changes_nothing() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    let app = &shop.app;

    // Malformed JSON.
    for path in ["/payments/prepare", "/payments/confirm", "/payments/tpk_some_key/cancel"] {
        for raw in ["{\"orderId\": ", "not json", "[1, 2]"] {
            let res = app.post_raw(path, &buyer, raw).await;
            expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
        }
    }
    let res = app.post_raw("/payments/confirm", &buyer, "").await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;

    // Unknown fields and wrong types: 400 naming the field (the API's convention).
    let res = app.post("/payments/prepare", Some(&buyer), &json!({ "reservationId": rid, "amount": 1 })).await;
    bad_request(res, "amount").await;
    let res = app.post("/payments/prepare", Some(&buyer), &json!({ "reservationId": "not-a-uuid" })).await;
    bad_request(res, "reservationId").await;
    let res = app.post("/payments/prepare", Some(&buyer), &json!({})).await;
    bad_request(res, "reservationId").await;
    let confirm = |extra: Value| {
        let mut body = json!({ "orderId": order, "paymentKey": "tpk_valid_key", "amount": SEAT_PRICE });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let res = app.post("/payments/confirm", Some(&buyer), &confirm(json!({ "status": "done" }))).await;
    bad_request(res, "status").await;
    let res = app.post("/payments/confirm", Some(&buyer), &confirm(json!({ "amount": "1000" }))).await;
    bad_request(res, "amount").await;
    let res = app.post("/payments/confirm", Some(&buyer), &confirm(json!({ "amount": 1000.5 }))).await;
    bad_request(res, "amount").await;
    let res = app.post("/payments/confirm", Some(&buyer), &json!({ "orderId": order, "amount": SEAT_PRICE })).await;
    bad_request(res, "paymentKey").await;
    let res = shop.refund(&buyer, "tpk_some_key", &json!({ "reason": "x", "refundAmount": 10 })).await;
    bad_request(res, "refundAmount").await;

    // Invalid values: 422 naming the field.
    for amount in [0, -1, -SEAT_PRICE, i64::MIN] {
        invalid(shop.confirm(&buyer, &order, "tpk_valid_key", amount).await, "amount").await;
    }
    let long = "k".repeat(201);
    for key in ["", "has space", "slash/key", "semi;colon", "한글키", "quote\"key", long.as_str()] {
        invalid(shop.confirm(&buyer, &order, key, SEAT_PRICE).await, "paymentKey").await;
    }
    for key in ["has%20space", "semi;colon", "%ED%95%9C", "dot.key", long.as_str()] {
        invalid(shop.refund(&buyer, key, &json!({})).await, "paymentKey").await;
    }
    let res = shop.refund(&buyer, "tpk_some_key", &json!({ "reason": "r".repeat(201) })).await;
    invalid(res, "reason").await;
    let res = app.post_with_key("/payments/confirm", &buyer, &"i".repeat(256), &confirm(json!({}))).await;
    invalid(res, "Idempotency-Key").await;
    // Not a payment of anyone's.
    let res = shop.refund(&buyer, "tpk_nobody_has_this", &json!({})).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;

    // No credentials, or bad ones.
    let routes = [
        ("POST", "/payments/prepare".to_owned(), json!({ "reservationId": rid })),
        ("POST", "/payments/confirm".to_owned(), confirm(json!({}))),
        ("POST", "/payments/tpk_some_key/cancel".to_owned(), json!({})),
        ("GET", format!("/payments/{order}"), Value::Null),
        ("GET", "/payments/my".to_owned(), Value::Null),
    ];
    for (method, path, body) in &routes {
        for token in [None, Some("not.a.jwt")] {
            let res = match *method {
                "GET" => app.get(path, token).await,
                _ => app.post(path, token, body).await,
            };
            expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }

    // Nothing reached the provider; the hold and its order are untouched.
    assert_eq!(shop.fake.confirm_calls(), 0);
    assert!(shop.fake.payments().is_empty());
    assert_eq!(shop.payment(&buyer, &order).await["status"], "ready");
    assert_eq!(shop.payment_row_of(&order).await.status, "ready");
    assert_eq!(shop.reservation(&buyer, &rid).await["status"], "held");
    shop.assert_seats(&event, &["S1-A-1"], "held").await;
    shop.assert_consistent(&event).await;
}
