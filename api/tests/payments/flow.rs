//! The ordinary flow: prepare, confirm, look up; and a declined card tried again.

use crate::shop::{SEAT_PRICE, Shop, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::json;
use tiketi_payments::ProviderStatus;

#[tokio::test]
async fn paying_for_a_hold_captures_once_confirms_it_and_sells_its_seats() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let held = shop.hold(&buyer, &event, &["S1-A-1", "S1-A-2"]).await;
    let rid = str_of(&held, "id");

    // The server fixes the amount from the reservation; preparing again is the same order.
    let prepared = shop.prepare_ok(&buyer, rid).await;
    let order = str_of(&prepared, "orderId").to_owned();
    assert_eq!(prepared["amount"], 2 * SEAT_PRICE, "{prepared}");
    assert_eq!(prepared["amount"], held["amount"]);
    assert_eq!((prepared["status"].as_str(), prepared["reservationId"].as_str()), (Some("ready"), Some(rid)));
    assert_eq!(prepared["eventId"], event.as_str());
    assert!(prepared["paymentKey"].is_null(), "{prepared}");
    assert_eq!(shop.prepare_ok(&buyer, rid).await, prepared);
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.amount, row.payment_key), ("ready", 2 * SEAT_PRICE, None));
    shop.assert_money(&order, 0, 0);

    let paid = shop.confirm_ok(&buyer, &order, "tpk_happy_path_1", 2 * SEAT_PRICE).await;
    assert_eq!((paid["status"].as_str(), paid["orderId"].as_str()), (Some("done"), Some(order.as_str())), "{paid}");
    assert_eq!(paid["paymentKey"], "tpk_happy_path_1");
    assert_eq!(paid["amount"], 2 * SEAT_PRICE);
    assert!(paid["approvedAt"].is_string() && paid["method"].is_string(), "{paid}");
    assert_eq!(paid["reservation"]["status"], "confirmed", "{paid}");
    assert_eq!(paid["reservation"]["id"], rid);
    assert_eq!(paid["reservation"]["seatIds"], json!(["S1-A-1", "S1-A-2"]));

    // The provider took the money once, for the server's amount.
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.fake.confirm_calls(), 1);
    let at_provider = shop.fake.payment(&order).expect("the provider has the payment");
    assert_eq!((at_provider.total_amount, at_provider.status), (2 * SEAT_PRICE, ProviderStatus::Done));

    // Durable before the answer: the database already says so.
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.payment_key.as_deref()), ("done", Some("tpk_happy_path_1")));
    assert!(row.approved && !row.cancelled, "{row:?}");
    assert_eq!(shop.reservation_status(rid).await, "confirmed");

    // Read back.
    let looked_up = shop.payment(&buyer, &order).await;
    assert_eq!(
        (looked_up["status"].as_str(), looked_up["reservation"]["status"].as_str()),
        (Some("done"), Some("confirmed"))
    );
    assert_eq!(looked_up["approvedAt"], paid["approvedAt"]);
    let mine = crate::shop::ok(shop.app.get("/payments/my", Some(&buyer)).await, "my payments").await;
    let mine = mine["data"].as_array().unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!((mine[0]["orderId"].as_str(), mine[0]["status"].as_str()), (Some(order.as_str()), Some("done")));
    assert_eq!(shop.reservation(&buyer, rid).await["status"], "confirmed");

    // Preparing a paid reservation answers its payment; it is not a new order.
    let again = shop.prepare_ok(&buyer, rid).await;
    assert_eq!((again["orderId"].as_str(), again["status"].as_str()), (Some(order.as_str()), Some("done")));

    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_declined_card_charges_nothing_and_another_card_pays_a_new_order() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let held = shop.hold(&buyer, &event, &["S1-A-3", "S1-A-4"]).await;
    let rid = str_of(&held, "id");
    let order = str_of(&shop.prepare_ok(&buyer, rid).await, "orderId").to_owned();

    shop.fake.decline_next("REJECT_CARD_PAYMENT", "한도초과 혹은 잔액부족으로 결제에 실패했습니다.");
    let res = shop.confirm(&buyer, &order, "tpk_declined_card", 2 * SEAT_PRICE).await;
    let error = expect_error(res, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    assert_eq!(error["details"]["providerCode"], "REJECT_CARD_PAYMENT", "{error}");

    // Nothing taken, nothing sold: the hold stands, the attempt is failed.
    shop.assert_money(&order, 0, 0);
    assert_eq!(shop.fake.confirm_calls(), 1);
    assert_eq!(shop.reservation(&buyer, rid).await["status"], "held");
    let failed = shop.payment(&buyer, &order).await;
    assert_eq!(
        (failed["status"].as_str(), failed["failureCode"].as_str()),
        (Some("failed"), Some("REJECT_CARD_PAYMENT"))
    );
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.failure_code.as_deref()), ("failed", Some("REJECT_CARD_PAYMENT")));
    shop.assert_seats(&event, &["S1-A-3", "S1-A-4"], "held").await;
    shop.assert_books().await;

    // The declined order is closed (one key per order): another card needs a new order.
    let res = shop.confirm(&buyer, &order, "tpk_second_card", 2 * SEAT_PRICE).await;
    expect_error(res, StatusCode::CONFLICT, "order_declined").await;
    assert_eq!(shop.fake.confirm_calls(), 1, "refused before the provider");
    let second = str_of(&shop.prepare_ok(&buyer, rid).await, "orderId").to_owned();
    assert_ne!(second, order);
    let paid = shop.confirm_ok(&buyer, &second, "tpk_second_card", 2 * SEAT_PRICE).await;
    assert_eq!((paid["status"].as_str(), paid["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    assert!(paid["failureCode"].is_null(), "{paid}");
    shop.assert_money(&order, 0, 0);
    shop.assert_money(&second, 1, 0);
    assert_eq!(shop.fake.confirm_calls(), 2);
    let row = shop.payment_row_of(&second).await;
    assert_eq!((row.status.as_str(), row.payment_key.as_deref()), ("done", Some("tpk_second_card")));
    shop.assert_seats(&event, &["S1-A-3", "S1-A-4"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn after_a_decline_preparing_again_opens_a_new_order_and_the_old_one_is_gone() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let first = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    shop.fake.decline_next("INVALID_CARD_EXPIRATION", "카드 정보를 다시 확인해주세요.");
    let res = shop.confirm(&buyer, &first, "tpk_expired_card", SEAT_PRICE).await;
    expect_error(res, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;

    let second = shop.prepare_ok(&buyer, &rid).await;
    let second_order = str_of(&second, "orderId").to_owned();
    assert_ne!(second_order, first);
    assert_eq!((second["status"].as_str(), second["amount"].as_i64()), (Some("ready"), Some(SEAT_PRICE)));

    // The first order can no longer be paid; the second can.
    let res = shop.confirm(&buyer, &first, "tpk_late_retry", SEAT_PRICE).await;
    expect_error(res, StatusCode::NOT_FOUND, "payment_not_found").await;
    let paid = shop.confirm_ok(&buyer, &second_order, "tpk_new_order", SEAT_PRICE).await;
    assert_eq!(paid["reservation"]["status"], "confirmed");
    shop.assert_money(&first, 0, 0);
    shop.assert_money(&second_order, 1, 0);
    assert_eq!(shop.payment_row_of(&first).await.status, "failed");
    assert_eq!(shop.payment_row_of(&second_order).await.status, "done");
    let mine = crate::shop::ok(shop.app.get("/payments/my", Some(&buyer)).await, "my payments").await;
    let orders: Vec<&str> = mine["data"].as_array().unwrap().iter().map(|p| p["orderId"].as_str().unwrap()).collect();
    assert_eq!(orders, [second_order.as_str(), first.as_str()], "newest first");
    shop.assert_seats(&event, &["S1-A-1"], "sold").await;
    shop.assert_consistent(&event).await;
}
