//! The per-buyer limit counts held and paid seats alike, across reservations, and a refund
//! gives the allowance back.

use crate::shop::{Shop, ok, str_of};
use crate::support::expect_error;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn the_per_user_limit_counts_held_and_confirmed_seats_across_reservations() {
    let shop = Shop::open().await;
    let event = shop.event(10, json!({ "perUserLimit": 4 })).await;
    let buyer = shop.app.register("ann@example.com").await;
    let paid = shop.buy(&buyer, &event, &["S1-A-1", "S1-A-2"], "tpk_first_two").await;
    let held = shop.hold(&buyer, &event, &["S1-A-3", "S1-A-4"]).await;

    let res = shop.app.hold(&buyer, &event, &json!({ "seatIds": ["S1-A-5"] })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(error["details"], json!({ "limit": 4, "current": 4, "requested": 1 }), "{error}");

    // Paying for the held pair keeps the count; refunding the first pair frees two.
    let order = str_of(&shop.prepare_ok(&buyer, str_of(&held, "id")).await, "orderId").to_owned();
    shop.confirm_ok(&buyer, &order, "tpk_second_two", 2000).await;
    let res = shop.app.hold(&buyer, &event, &json!({ "seatIds": ["S1-A-5"] })).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    ok(shop.refund(&buyer, "tpk_first_two", &json!({})).await, "refund").await;
    shop.hold(&buyer, &event, &["S1-A-5", "S1-A-6"]).await;
    let res = shop.app.hold(&buyer, &event, &json!({ "seatIds": ["S1-A-7"] })).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;

    // Another buyer has an allowance of their own.
    let bob = shop.app.register("bob@example.com").await;
    shop.hold(&bob, &event, &["S1-A-7", "S1-A-8", "S1-A-9", "S1-A-10"]).await;

    shop.assert_money(str_of(&paid, "orderId"), 1, 1);
    shop.assert_money(&order, 1, 0);
    let seats = shop.seats(&event).await;
    let by_status =
        |s: &str| seats.iter().filter(|(_, v)| v.as_str() == s).map(|(k, _)| k.as_str()).collect::<Vec<_>>();
    assert_eq!(by_status("sold"), ["S1-A-3", "S1-A-4"]);
    assert_eq!(by_status("available"), ["S1-A-1", "S1-A-2"]);
    assert_eq!(by_status("held"), ["S1-A-10", "S1-A-5", "S1-A-6", "S1-A-7", "S1-A-8", "S1-A-9"]);
    shop.assert_consistent(&event).await;
}
