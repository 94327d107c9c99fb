//! Races around a capture: repeated and concurrent confirmations, a cancellation or a refund
//! while the provider is capturing, and a provider slower than the client's timeout.

use crate::shop::{Config, SEAT_PRICE, Shop, ok, str_of};
use crate::support::{error_code, expect_error};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// A held reservation of `seats` with a prepared order: `(reservation id, order id)`.
async fn prepared(shop: &Shop, token: &str, event: &str, seats: &[&str]) -> (String, String) {
    let rid = str_of(&shop.hold(token, event, seats).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(token, &rid).await, "orderId").to_owned();
    (rid, order)
}

#[tokio::test]
async fn confirming_twice_with_the_same_key_answers_the_same_and_charges_once() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-1", "S1-A-2"]).await;

    let first = shop.confirm_ok(&buyer, &order, "tpk_twice", 2 * SEAT_PRICE).await;
    let second = shop.confirm_ok(&buyer, &order, "tpk_twice", 2 * SEAT_PRICE).await;
    assert_eq!(first, second);
    assert_eq!(first["reservation"]["status"], "confirmed");
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.fake.confirm_calls(), 1);

    // Another key for a paid order is refused, and charges nothing.
    let res = shop.confirm(&buyer, &order, "tpk_another_card", 2 * SEAT_PRICE).await;
    expect_error(res, StatusCode::CONFLICT, "already_paid").await;
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn concurrent_confirmations_with_the_same_key_both_succeed_with_one_capture() {
    let shop = Shop::with(Config { toss_timeout_ms: 3_000, ..Config::default() }).await;
    shop.fake.set_hold_after_capture(Duration::from_millis(400));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-1", "S1-A-2"]).await;

    let (a, b) = tokio::join!(
        shop.confirm(&buyer, &order, "tpk_double_click", 2 * SEAT_PRICE),
        shop.confirm(&buyer, &order, "tpk_double_click", 2 * SEAT_PRICE),
    );
    let (a, b) = (ok(a, "first confirm").await, ok(b, "second confirm").await);
    assert_eq!(a, b);
    assert_eq!((a["status"].as_str(), a["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment_row_of(&order).await.status, "done");
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn concurrent_confirmations_with_different_keys_capture_once_and_refuse_the_other() {
    let shop = Shop::with(Config { toss_timeout_ms: 3_000, ..Config::default() }).await;
    shop.fake.set_hold_after_capture(Duration::from_millis(500));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-1"]).await;

    let (a, b) = tokio::join!(
        shop.confirm(&buyer, &order, "tpk_tab_one", SEAT_PRICE),
        shop.confirm(&buyer, &order, "tpk_tab_two", SEAT_PRICE),
    );
    let (a, b) = (error_code(a).await, error_code(b).await);
    let (won, lost) = if a.0 == StatusCode::OK { (a, b) } else { (b, a) };
    assert_eq!(won.0, StatusCode::OK, "{won:?} / {lost:?}");
    assert_eq!((lost.0, lost.1.as_str()), (StatusCode::CONFLICT, "payment_in_progress"), "{lost:?}");
    let key = won.2["paymentKey"].as_str().unwrap().to_owned();
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.fake.payment(&order).unwrap().payment_key, key);
    assert_eq!(shop.payment_row_of(&order).await.payment_key.as_deref(), Some(key.as_str()));
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    shop.assert_seats(&event, &["S1-A-1"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_cancellation_or_refund_while_capturing_is_refused_and_the_capture_wins() {
    let shop = Shop::with(Config { toss_timeout_ms: 5_000, ..Config::default() }).await;
    shop.fake.set_hold_after_capture(Duration::from_secs(1));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-5", "S1-A-6"]).await;

    let meddling = async {
        assert!(shop.fake.wait_for_capture(&order, Duration::from_secs(5)).await, "never captured");
        // The money is taken; the answer is held: the payment is in flight, and durable as such.
        let row = shop.payment_row_of(&order).await;
        assert_eq!((row.status.as_str(), row.payment_key.as_deref()), ("in_progress", Some("tpk_slow_bank")));
        assert_eq!(shop.payment(&buyer, &order).await["status"], "in_progress");
        let res = shop.cancel_reservation(&buyer, &rid).await;
        expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
        let res = shop.refund(&buyer, "tpk_slow_bank", &json!({})).await;
        expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
        let res = shop.confirm(&buyer, &order, "tpk_impatient_other_card", 2 * SEAT_PRICE).await;
        expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
        let res = shop.cancel_reservation(&shop.app.admin, &rid).await;
        expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
        assert_eq!(shop.reservation(&buyer, &rid).await["status"], "held");
        assert_eq!(shop.app.seat_statuses(&event).await["S1-A-5"], "held");
    };
    let (paid, ()) = tokio::join!(shop.confirm(&buyer, &order, "tpk_slow_bank", 2 * SEAT_PRICE), meddling);
    let paid = ok(paid, "confirm").await;
    assert_eq!((paid["status"].as_str(), paid["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");
    shop.assert_seats(&event, &["S1-A-5", "S1-A-6"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_capture_whose_answer_is_lost_to_a_timeout_is_found_by_lookup_and_confirmed() {
    // Toss captures, then holds its answer longer than our 500 ms timeout.
    let shop = Shop::open().await;
    shop.fake.set_hold_after_capture(Duration::from_millis(1_500));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-1", "S1-A-2"]).await;

    let paid = shop.confirm_ok(&buyer, &order, "tpk_lost_answer", 2 * SEAT_PRICE).await;
    assert_eq!((paid["status"].as_str(), paid["reservation"]["status"].as_str()), (Some("done"), Some("confirmed")));
    assert_eq!(paid["paymentKey"], "tpk_lost_answer");
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.approved), ("done", true));
    assert_eq!(shop.reservation_status(&rid).await, "confirmed");

    // Confirming again (the buyer's retry) charges nothing more.
    let again = shop.confirm_ok(&buyer, &order, "tpk_lost_answer", 2 * SEAT_PRICE).await;
    assert_eq!(again["status"], "done");
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 1, 0);
    shop.assert_seats(&event, &["S1-A-1", "S1-A-2"], "sold").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_capture_landing_after_the_timeout_and_the_lookup_is_never_kept_without_seats() {
    // Toss is slower than our 500 ms timeout BEFORE it captures: the lookup after the
    // timeout finds nothing yet, and the capture lands a moment later. Whatever the buyer
    // was answered, the money must end up either paying for the seats or refunded.
    let shop = Shop::open().await;
    shop.fake.set_confirm_delay(Duration::from_millis(1_200));
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let (rid, order) = prepared(&shop, &buyer, &event, &["S1-A-1"]).await;

    let res = shop.confirm(&buyer, &order, "tpk_slow_provider", SEAT_PRICE).await;
    let answered = error_code(res).await;
    assert!(shop.fake.wait_for_capture(&order, Duration::from_secs(5)).await, "the fake never captured");
    shop.assert_money(&order, 1, 0);

    // Well past the safety-net reconciliation (2 s) and the retry of an unknown outcome (5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let settled = loop {
        let row = shop.payment_row_of(&order).await;
        if row.status == "done" || shop.fake.refunds(&order) == 1 {
            break row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "money captured at the provider and kept without seats: the buyer was answered {answered:?}; \
             the payment is {row:?}; reservation {}; (captures, refunds) = ({}, {})",
            shop.reservation_status(&rid).await,
            shop.fake.captures(&order),
            shop.fake.refunds(&order),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    match settled.status.as_str() {
        "done" => {
            assert_eq!(shop.reservation_status(&rid).await, "confirmed", "answered {answered:?}");
            shop.assert_seats(&event, &["S1-A-1"], "sold").await;
        }
        _ => shop.assert_money(&order, 1, 1),
    }
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_confirmation_racing_a_cancellation_never_leaves_money_without_seats() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({ "perUserLimit": 0 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let seats = ["S1-A-1", "S1-A-2", "S1-A-3", "S1-A-4", "S1-A-5", "S1-A-6"];
    let mut outcomes = Vec::new();
    for (i, seat) in seats.iter().enumerate() {
        let (rid, order) = prepared(&shop, &buyer, &event, &[seat]).await;
        let key = format!("tpk_race_{i}");
        let (confirmed, cancelled) =
            tokio::join!(shop.confirm(&buyer, &order, &key, SEAT_PRICE), shop.cancel_reservation(&buyer, &rid));
        let (confirmed, cancelled) = (error_code(confirmed).await, error_code(cancelled).await);
        let money = (shop.fake.captures(&order), shop.fake.refunds(&order));
        let status = shop.reservation_status(&rid).await;
        match (confirmed.0, cancelled.0) {
            // The capture won; the cancellation came while it was in flight.
            (StatusCode::OK, StatusCode::CONFLICT) => {
                assert_eq!(cancelled.1, "payment_in_progress", "{cancelled:?}");
                assert_eq!((money, status.as_str()), ((1, 0), "confirmed"));
            }
            // The capture won; the cancellation came after it and refunded it.
            (StatusCode::OK, StatusCode::OK) => assert_eq!((money, status.as_str()), ((1, 1), "cancelled")),
            // The cancellation won: nothing was charged.
            (_, StatusCode::OK) => {
                assert!(confirmed.0.is_client_error(), "{confirmed:?}");
                assert_eq!((money, status.as_str()), ((0, 0), "cancelled"));
            }
            _ => panic!("confirm {confirmed:?}, cancel {cancelled:?}"),
        }
        outcomes.push((confirmed.0, cancelled.0));
    }
    assert_eq!(shop.fake.confirm_calls() as usize, outcomes.iter().filter(|(c, _)| *c == StatusCode::OK).count());
    shop.assert_consistent(&event).await;
}
