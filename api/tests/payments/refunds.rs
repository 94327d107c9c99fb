//! Refunds: by payment key or by cancelling the reservation, repeated, failing at the
//! provider, and refused for what was never paid.

use crate::shop::{SEAT_PRICE, SECRET, Shop, ok, retry_after, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn refunding_a_payment_cancels_the_reservation_frees_the_seats_and_refunds_once() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-1", "S1-A-2"], "tpk_to_refund").await;
    let (order, rid) = (str_of(&paid, "orderId").to_owned(), str_of(&paid, "reservationId").to_owned());

    let refunded = ok(shop.refund(&buyer, "tpk_to_refund", &json!({ "reason": "cannot come" })).await, "refund").await;
    assert_eq!(refunded["status"], "cancelled", "{refunded}");
    assert_eq!(
        (refunded["orderId"].as_str(), refunded["amount"].as_i64()),
        (Some(order.as_str()), Some(2 * SEAT_PRICE))
    );
    assert!(refunded["cancelledAt"].is_string(), "{refunded}");
    assert_eq!(refunded["reservation"]["status"], "cancelled", "{refunded}");
    shop.assert_money(&order, 1, 1);
    // Durable before the answer.
    let row = shop.payment_row_of(&order).await;
    assert_eq!((row.status.as_str(), row.cancelled), ("cancelled", true));
    assert_eq!(shop.reservation_status(&rid).await, "cancelled");

    // Again: the same outcome, and no second refund.
    let again = ok(shop.refund(&buyer, "tpk_to_refund", &json!({})).await, "second refund").await;
    assert_eq!(
        (again["status"].as_str(), again["reservation"]["status"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    assert_eq!(again["cancelledAt"], refunded["cancelledAt"]);
    // Without a body too.
    let bare = shop.app.client.post(shop.app.url("/payments/tpk_to_refund/cancel")).bearer_auth(&buyer).send().await;
    assert_eq!(ok(bare.unwrap(), "bodiless refund").await["status"], "cancelled");
    shop.assert_money(&order, 1, 1);
    assert_eq!(shop.payment(&buyer, &order).await["status"], "cancelled");
    assert_eq!(shop.reservation(&buyer, &rid).await["status"], "cancelled");
    // A refunded order cannot be confirmed again.
    let res = shop.confirm(&buyer, &order, "tpk_to_refund", 2 * SEAT_PRICE).await;
    let status = res.status();
    assert!(status == StatusCode::NOT_FOUND || status == StatusCode::CONFLICT, "{status}");
    shop.assert_money(&order, 1, 1);

    // The seats are for sale again.
    shop.assert_seats(&event, &[], "available").await;
    let other = shop.app.register("bob@example.com").await;
    shop.hold(&other, &event, &["S1-A-1", "S1-A-2"]).await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn cancelling_a_paid_reservation_refunds_it_once() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-3"], "tpk_cancel_reservation").await;
    let (order, rid) = (str_of(&paid, "orderId").to_owned(), str_of(&paid, "reservationId").to_owned());

    let cancelled = ok(shop.cancel_reservation(&buyer, &rid).await, "cancel").await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    shop.assert_money(&order, 1, 1);
    assert_eq!(shop.payment_row_of(&order).await.status, "cancelled");
    assert_eq!(shop.reservation_status(&rid).await, "cancelled");
    assert_eq!(shop.payment(&buyer, &order).await["status"], "cancelled");

    // Cancelling again, or refunding by key, changes nothing more.
    let again = ok(shop.cancel_reservation(&buyer, &rid).await, "second cancel").await;
    assert_eq!(again["status"], "cancelled");
    let refunded = ok(shop.refund(&buyer, "tpk_cancel_reservation", &json!({})).await, "refund").await;
    assert_eq!(refunded["status"], "cancelled");
    shop.assert_money(&order, 1, 1);
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn a_refund_the_provider_fails_is_pending_and_then_reconciled_to_one_refund() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-1", "S1-A-2"], "tpk_flaky_refund").await;
    let (order, rid) = (str_of(&paid, "orderId").to_owned(), str_of(&paid, "reservationId").to_owned());

    shop.fake.fail_next_cancel_with_500();
    let res = shop.refund(&buyer, "tpk_flaky_refund", &json!({})).await;
    assert!(retry_after(&res) >= 1);
    let error = expect_error(res, StatusCode::SERVICE_UNAVAILABLE, "payment_pending").await;
    assert!(error["details"]["retryAfterSeconds"].as_u64().is_some_and(|s| s >= 1), "{error}");

    // Meanwhile the refund is in flight: nothing refunded, the seats still sold, and the
    // reservation cannot be cancelled under it.
    shop.assert_money(&order, 1, 0);
    assert_eq!(shop.payment_row_of(&order).await.status, "cancelling");
    assert_eq!(shop.payment(&buyer, &order).await["status"], "cancelling");
    let res = shop.cancel_reservation(&buyer, &rid).await;
    expect_error(res, StatusCode::CONFLICT, "payment_in_progress").await;
    assert_eq!(shop.app.seat_statuses(&event).await["S1-A-1"], "sold");

    // Reconciled without anyone asking again.
    shop.app
        .eventually("the refund to be reconciled", || async {
            (shop.payment_row(&order).await?.status == "cancelled").then_some(())
        })
        .await;
    shop.assert_money(&order, 1, 1);
    assert_eq!(shop.reservation_status(&rid).await, "cancelled");
    assert_eq!(shop.payment(&buyer, &order).await["status"], "cancelled");
    // Asking again now answers the outcome.
    let again = ok(shop.refund(&buyer, "tpk_flaky_refund", &json!({})).await, "refund again").await;
    assert_eq!(
        (again["status"].as_str(), again["reservation"]["status"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    shop.assert_money(&order, 1, 1);
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn refunding_what_was_never_paid_is_not_paid_and_cancelling_an_unpaid_hold_aborts_its_order() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let rid = str_of(&shop.hold(&buyer, &event, &["S1-A-1"]).await, "id").to_owned();
    let order = str_of(&shop.prepare_ok(&buyer, &rid).await, "orderId").to_owned();
    shop.fake.decline_next("REJECT_CARD_PAYMENT", "잔액부족");
    let res = shop.confirm(&buyer, &order, "tpk_declined_then_refunded", SEAT_PRICE).await;
    expect_error(res, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;

    // A declined payment has nothing to refund.
    let res = shop.refund(&buyer, "tpk_declined_then_refunded", &json!({})).await;
    expect_error(res, StatusCode::CONFLICT, "not_paid").await;
    assert_eq!(shop.fake.refunds(&order), 0);

    // Cancelling the unpaid hold frees the seat and aborts the order for good.
    let cancelled = ok(shop.cancel_reservation(&buyer, &rid).await, "cancel").await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(shop.payment_row_of(&order).await.status, "aborted");
    assert_eq!(shop.payment(&buyer, &order).await["status"], "aborted");
    let res = shop.confirm(&buyer, &order, "tpk_after_cancel", SEAT_PRICE).await;
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(shop.fake.confirm_calls(), 1);
    shop.assert_money(&order, 0, 0);
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn the_buyers_refund_reason_reaches_the_provider() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-1"], "tpk_with_reason").await;
    let order = str_of(&paid, "orderId").to_owned();

    let reason = "Double booked, sorry";
    ok(shop.refund(&buyer, "tpk_with_reason", &json!({ "reason": reason })).await, "refund").await;
    shop.assert_money(&order, 1, 1);
    let url = format!("{}/v1/payments/orders/{order}", shop.fake.base_url());
    let res = shop.app.client.get(url).basic_auth(SECRET, Some("")).send().await.unwrap();
    let toss: Value = ok(res, "the fake's lookup").await;
    assert_eq!(toss["cancels"][0]["cancelReason"], reason, "{toss}");
}

#[tokio::test]
async fn a_stranger_confirming_with_my_payment_key_cannot_block_my_refund() {
    let shop = Shop::open().await;
    let event = shop.event(6, json!({})).await;
    let ann = shop.app.register("ann@example.com").await;
    let bob = shop.app.register("bob@example.com").await;
    let paid = shop.buy(&ann, &event, &["S1-A-1"], "tpk_ann_receipt_key").await;
    let order = str_of(&paid, "orderId").to_owned();

    // Bob saw Ann's payment key (it is on her receipt) and uses it for his own order. He is
    // not charged, whatever he is answered (a decline, or pending until the provider is sure).
    let bobs = str_of(&shop.hold(&bob, &event, &["S1-A-2"]).await, "id").to_owned();
    let bobs_order = str_of(&shop.prepare_ok(&bob, &bobs).await, "orderId").to_owned();
    let res = shop.confirm(&bob, &bobs_order, "tpk_ann_receipt_key", SEAT_PRICE).await;
    assert_ne!(res.status(), StatusCode::OK);
    shop.assert_money(&bobs_order, 0, 0);

    // Ann can still get her money back.
    let refunded = ok(shop.refund(&ann, "tpk_ann_receipt_key", &json!({})).await, "Ann's refund").await;
    assert_eq!((refunded["orderId"].as_str(), refunded["status"].as_str()), (Some(order.as_str()), Some("cancelled")));
    shop.assert_money(&order, 1, 1);
    assert_eq!(shop.payment_row_of(&order).await.status, "cancelled");
    assert_eq!(shop.seats(&event).await["S1-A-1"], "available");
}

/// Rounds of each refund race, and requests racing the first in each round, sent 1 ms apart:
/// the window between a refund settled in memory and its commit is a few milliseconds.
const ROUNDS: usize = 6;
const RACERS: u64 = 12;

/// An event of [`ROUNDS`] seats without a per-buyer limit, a buyer, and each seat bought
/// alone: `(shop, event, buyer, [(seat, order id, reservation id, payment key)])`.
async fn bought_one_by_one() -> (Shop, String, String, Vec<(String, String, String, String)>) {
    let shop = Shop::open().await;
    let event = shop.event(ROUNDS as u32, json!({ "perUserLimit": 0 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let mut bought = Vec::new();
    for n in 1..=ROUNDS {
        let (seat, key) = (format!("S1-A-{n}"), format!("tpk_refund_race_{n}"));
        let paid = shop.buy(&buyer, &event, &[&seat], &key).await;
        bought.push((seat, str_of(&paid, "orderId").to_owned(), str_of(&paid, "reservationId").to_owned(), key));
    }
    (shop, event, buyer, bought)
}

/// `request` sent [`RACERS`] times, 1 ms apart; the answers as `(status, code, body)`.
async fn staggered<F, Fut>(request: F) -> Vec<(StatusCode, String, Value)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let racers = (0..RACERS).map(|i| {
        let sent = request();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(i)).await;
            crate::support::error_code(sent.await).await
        }
    });
    futures_util::future::join_all(racers).await
}

#[tokio::test]
async fn concurrent_refunds_of_one_payment_all_answer_cancelled_and_refund_once() {
    let (shop, event, buyer, bought) = bought_one_by_one().await;
    let empty = json!({});
    for (seat, order, rid, key) in &bought {
        let (first, others) =
            tokio::join!(shop.refund(&buyer, key, &empty), staggered(|| shop.refund(&buyer, key, &empty)));
        assert_eq!(ok(first, "refund").await["status"], "cancelled");
        for (status, code, body) in &others {
            assert_eq!(
                (*status, code.as_str(), body["status"].as_str()),
                (StatusCode::OK, "", Some("cancelled")),
                "refund of {seat}: {body}"
            );
        }
        shop.assert_money(order, 1, 1);
        assert_eq!(shop.reservation_status(rid).await, "cancelled");
    }
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}

#[tokio::test]
async fn cancelling_a_reservation_while_its_refund_finishes_never_says_it_is_still_confirmed() {
    let (shop, event, buyer, bought) = bought_one_by_one().await;
    let empty = json!({});
    for (seat, order, rid, key) in &bought {
        let (refund, cancels) =
            tokio::join!(shop.refund(&buyer, key, &empty), staggered(|| shop.cancel_reservation(&buyer, rid)));
        assert_eq!(ok(refund, "refund").await["status"], "cancelled");
        // Each cancellation found the refund in flight, or its outcome.
        for (status, code, body) in &cancels {
            match *status {
                StatusCode::OK => assert_eq!(body["status"], "cancelled", "{seat}: {body}"),
                _ => assert_eq!(
                    (*status, code.as_str()),
                    (StatusCode::CONFLICT, "payment_in_progress"),
                    "{seat}: {body}"
                ),
            }
        }
        shop.assert_money(order, 1, 1);
        assert_eq!(shop.reservation_status(rid).await, "cancelled");
    }
    shop.assert_seats(&event, &[], "available").await;
    shop.assert_consistent(&event).await;
}
