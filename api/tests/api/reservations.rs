//! Holding seats (specific, general admission, best available), conflicts, expiry,
//! cancellation, limits, ownership and idempotency.

use crate::support::{TestApp, expect_error, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

fn seat_ids(r: &Value) -> Vec<String> {
    r["seatIds"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// Seats of `event` in `status`, sorted.
async fn seats_in(app: &TestApp, event: &str, status: &str) -> Vec<String> {
    app.seat_statuses(event).await.into_iter().filter(|(_, s)| s == status).map(|(id, _)| id).collect()
}

#[tokio::test]
async fn holding_specific_seats_creates_a_held_reservation_priced_by_tier() {
    let app = spawn_app().await;
    let event = app.create_event(2, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-2", "S2-A-3"] })).await;
    assert_eq!(r["status"], "held");
    assert_eq!(r["eventId"], id.as_str());
    assert_eq!(seat_ids(&r), ["S1-A-2", "S2-A-3"]);
    assert_eq!(r["quantity"], 2);
    assert_eq!(r["amount"], 2000 + 1000);
    assert_eq!(r["ticketTypeId"], Value::Null);
    let number = r["number"].as_str().unwrap();
    assert!(
        number.len() == 18
            && number.starts_with("TKT-")
            && number[4..12].bytes().all(|b| b.is_ascii_digit())
            && number.ends_with("-00001"),
        "{number}"
    );
    assert!(r["expiresAt"].as_str().unwrap() > r["createdAt"].as_str().unwrap(), "{r}");

    assert_eq!(app.availability(&id).await, json!({ "available": 6, "held": 2, "sold": 0, "blocked": 0, "total": 8 }));
    assert_eq!(seats_in(&app, &id, "held").await, ["S1-A-2", "S2-A-3"]);

    // The owner reads it back (once the store caught up) exactly as it was created.
    let read = app.reservation_when(&buyer, &id_of(&r), |_| true).await;
    assert_eq!(read, r);
    app.stop().await;
}

#[tokio::test]
async fn holding_general_admission_tickets_moves_the_ticket_type_counts() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 2, 30, json!({ "perUserLimit": 0 })).await;
    let id = id_of(&event);
    let ticket_type = event["ticketTypes"][0]["id"].as_str().unwrap().to_owned();
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "ticketTypeId": ticket_type, "quantity": 3 })).await;
    assert_eq!(r["status"], "held");
    assert_eq!(r["ticketTypeId"], ticket_type.as_str());
    assert_eq!(r["quantity"], 3);
    assert_eq!(r["amount"], 3 * 500);
    assert_eq!(r["seatIds"], json!([]));

    let event = app.event(&id).await;
    let t = &event["ticketTypes"][0];
    assert_eq!((t["available"].as_u64(), t["held"].as_u64(), t["sold"].as_u64()), (Some(27), Some(3), Some(0)));
    // Seats are untouched by a GA hold.
    assert_eq!(event["availability"]["available"], 2);

    // More than what is left is a conflict naming what is left, and holds nothing.
    let other = app.register("bob@example.com").await;
    for _ in 0..3 {
        app.hold_ok(&other, &id, &json!({ "ticketTypeId": ticket_type, "quantity": 9 })).await;
    }
    let res = app.hold(&buyer, &id, &json!({ "ticketTypeId": ticket_type, "quantity": 2 })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(error["details"]["available"], 0);
    let t = &app.event(&id).await["ticketTypes"][0];
    assert_eq!((t["available"].as_u64(), t["held"].as_u64()), (Some(0), Some(30)));
    app.stop().await;
}

#[tokio::test]
async fn the_highest_allowed_prices_add_up_without_overflow() {
    const MAX_PRICE: i64 = 1_000_000_000_000;
    let app = spawn_app().await;
    let layout = json!({ "tiers": [{ "name": "Gold", "price": MAX_PRICE }], "sections": [{ "name": "G", "tier": 0, "rows": [{ "label": "A", "seats": 60 }] }] });
    let extra = json!({
        "layout": layout, "maxPerReservation": 50, "perUserLimit": 0,
        "ticketTypes": [{ "name": "Gold GA", "price": MAX_PRICE, "capacity": 100 }],
    });
    let event = app.create_event(1, 1, 1, 0, extra).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let seats = app.hold_ok(&buyer, &id, &json!({ "bestAvailable": { "quantity": 50 } })).await;
    assert_eq!(seats["amount"], 50 * MAX_PRICE);
    let ticket_type = &event["ticketTypes"][0]["id"];
    let tickets = app.hold_ok(&buyer, &id, &json!({ "ticketTypeId": ticket_type, "quantity": 50 })).await;
    assert_eq!(tickets["amount"], 50 * MAX_PRICE);
    assert_eq!(app.availability(&id).await["held"], 50);
    app.stop().await;
}

#[tokio::test]
async fn best_available_holds_adjacent_seats_in_one_row_of_the_best_section() {
    let app = spawn_app().await;
    let event = app.create_event(2, 2, 10, 0, json!({ "perUserLimit": 0 })).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;

    let check_run = |r: &Value, section: &str| {
        let ids = seat_ids(r);
        assert_eq!(ids.len(), 3, "{r}");
        let parts: Vec<(String, String, u32)> = ids
            .iter()
            .map(|s| {
                let mut p = s.split('-');
                (p.next().unwrap().into(), p.next().unwrap().into(), p.next().unwrap().parse().unwrap())
            })
            .collect();
        assert!(parts.iter().all(|(s, row, _)| s == section && *row == parts[0].1), "one row of {section}: {ids:?}");
        let mut numbers: Vec<u32> = parts.iter().map(|p| p.2).collect();
        numbers.sort_unstable();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {ids:?}");
        ids
    };

    let best = app.hold_ok(&buyer, &id, &json!({ "bestAvailable": { "quantity": 3 } })).await;
    let first = check_run(&best, "S1");
    assert_eq!(best["amount"], 3 * 2000);

    let again = app.hold_ok(&buyer, &id, &json!({ "bestAvailable": { "quantity": 3, "adjacent": true } })).await;
    let second = check_run(&again, "S1");
    assert!(second.iter().all(|s| !first.contains(s)), "{first:?} vs {second:?}");

    let cheap = app.hold_ok(&buyer, &id, &json!({ "bestAvailable": { "quantity": 3, "section": "S2" } })).await;
    check_run(&cheap, "S2");
    assert_eq!(cheap["amount"], 3 * 1000);

    let mut expected: Vec<String> = first.into_iter().chain(second).chain(seat_ids(&cheap)).collect();
    expected.sort();
    assert_eq!(seats_in(&app, &id, "held").await, expected);
    assert_eq!(
        app.availability(&id).await,
        json!({ "available": 31, "held": 9, "sold": 0, "blocked": 0, "total": 40 })
    );
    app.stop().await;
}

#[tokio::test]
async fn best_available_without_enough_seats_together_is_a_conflict_that_holds_nothing() {
    let app = spawn_app().await;
    let event = app.create_event(1, 2, 3, 0, json!({ "perUserLimit": 0 })).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    // Break both rows so no 3 seats are side by side.
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-2", "S1-B-2"] })).await;
    let res = app.hold(&buyer, &id, &json!({ "bestAvailable": { "quantity": 3 } })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(error["details"]["quantity"], 3);
    assert_eq!(app.availability(&id).await["held"], 2);
    app.stop().await;
}

#[tokio::test]
async fn holding_a_held_seat_is_a_conflict_naming_the_seat() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let ann = app.register("ann@example.com").await;
    let bob = app.register("bob@example.com").await;
    app.hold_ok(&ann, &id, &json!({ "seatIds": ["S1-A-3"] })).await;

    let error = expect_error(
        app.hold(&bob, &id, &json!({ "seatIds": ["S1-A-3"] })).await,
        StatusCode::CONFLICT,
        "seats_unavailable",
    )
    .await;
    assert_eq!(error["details"]["seatIds"], json!(["S1-A-3"]));
    // The holder cannot hold it twice either.
    let error = expect_error(
        app.hold(&ann, &id, &json!({ "seatIds": ["S1-A-3"] })).await,
        StatusCode::CONFLICT,
        "seats_unavailable",
    )
    .await;
    assert_eq!(error["details"]["seatIds"], json!(["S1-A-3"]));
    assert_eq!(app.availability(&id).await["held"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_four_seat_request_with_one_seat_taken_holds_nothing() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let ann = app.register("ann@example.com").await;
    let bob = app.register("bob@example.com").await;
    app.hold_ok(&ann, &id, &json!({ "seatIds": ["S1-A-4"] })).await;
    let version = app.seat_map(&id).await["version"].clone();

    let res = app.hold(&bob, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2", "S1-A-3", "S1-A-4"] })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(error["details"]["seatIds"], json!(["S1-A-4"]));

    let map = app.seat_map(&id).await;
    assert_eq!(map["version"], version, "a refused hold changes nothing");
    let statuses = app.seat_statuses(&id).await;
    for seat in ["S1-A-1", "S1-A-2", "S1-A-3"] {
        assert_eq!(statuses[seat], "available", "{seat}");
    }
    assert_eq!(statuses["S1-A-4"], "held");
    assert_eq!(app.availability(&id).await, json!({ "available": 5, "held": 1, "sold": 0, "blocked": 0, "total": 6 }));
    // Bob has no reservation.
    let mine: Value = app.get("/reservations/my", Some(&bob)).await.json().await.unwrap();
    assert_eq!(mine["data"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn an_unpaid_hold_expires_and_its_seats_return_to_sale() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({ "holdTtlSeconds": 1 })).await;
    let id = id_of(&event);
    assert_eq!(event["holdTtlSeconds"], 1);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2"] })).await;
    assert_eq!(seats_in(&app, &id, "held").await, ["S1-A-1", "S1-A-2"]);

    app.eventually("the held seats to be available again", || async {
        let statuses = app.seat_statuses(&id).await;
        (statuses.values().all(|s| s == "available")).then_some(())
    })
    .await;
    let expired = app.reservation_when(&buyer, &id_of(&r), |r| r["status"] == "expired").await;
    assert_eq!(expired["seatIds"], json!(["S1-A-1", "S1-A-2"]));
    assert_eq!(app.availability(&id).await, json!({ "available": 4, "held": 0, "sold": 0, "blocked": 0, "total": 4 }));

    // Cancelling an expired reservation is a conflict, not a success.
    let res = app.post(&format!("/reservations/{}/cancel", id_of(&r)), Some(&buyer), &json!({})).await;
    let error = expect_error(res, StatusCode::CONFLICT, "invalid_state").await;
    assert_eq!(error["details"]["status"], "expired");

    // The seats can be held again.
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_reservation_releases_its_seats_and_a_second_cancel_returns_it_again() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2"] })).await;
    let rid = id_of(&r);
    app.reservation_when(&buyer, &rid, |r| r["status"] == "held").await;

    let res = app.post(&format!("/reservations/{rid}/cancel"), Some(&buyer), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.unwrap();
    assert_eq!(cancelled["id"], rid.as_str());
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["seatIds"], json!(["S1-A-1", "S1-A-2"]));
    assert_eq!(app.availability(&id).await, json!({ "available": 4, "held": 0, "sold": 0, "blocked": 0, "total": 4 }));
    assert!(seats_in(&app, &id, "held").await.is_empty());

    // Cancellation is durable before it is answered: the store has it at once.
    let read: Value = app.get(&format!("/reservations/{rid}"), Some(&buyer)).await.json().await.unwrap();
    assert_eq!(read["status"], "cancelled");

    let res = app.post(&format!("/reservations/{rid}/cancel"), Some(&buyer), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    assert_eq!((again["id"].clone(), again["status"].clone()), (json!(rid), json!("cancelled")));

    let mine: Value = app.get("/reservations/my", Some(&buyer)).await.json().await.unwrap();
    let data = mine["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!((data[0]["id"].clone(), data[0]["status"].clone()), (json!(rid), json!("cancelled")));
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_can_be_read_and_cancelled_right_after_it_is_created() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    for seat in ["S1-A-1", "S1-A-2", "S1-A-3"] {
        let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": [seat] })).await;
        let res = app.get(&format!("/reservations/{}", id_of(&r)), Some(&buyer)).await;
        assert_eq!(res.status(), StatusCode::OK, "read right after create");
        let res = app.post(&format!("/reservations/{}/cancel", id_of(&r)), Some(&buyer), &json!({})).await;
        assert_eq!(res.status(), StatusCode::OK, "cancel right after create");
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    }
    assert_eq!(app.availability(&id).await["available"], 4);
    app.stop().await;
}

#[tokio::test]
async fn my_reservations_lists_only_mine_newest_first() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let ann = app.register("ann@example.com").await;
    let bob = app.register("bob@example.com").await;
    let first = app.hold_ok(&ann, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    let second = app.hold_ok(&ann, &id, &json!({ "seatIds": ["S1-A-2"] })).await;
    app.hold_ok(&bob, &id, &json!({ "seatIds": ["S1-A-3"] })).await;
    let mine = app
        .eventually("both of Ann's reservations in the store", || async {
            let mine: Value = app.get("/reservations/my", Some(&ann)).await.json().await.unwrap();
            (mine["data"].as_array().unwrap().len() == 2).then_some(mine)
        })
        .await;
    let ids: Vec<&Value> = mine["data"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&second["id"], &first["id"]]);
    assert_eq!(app.get("/reservations/my", None).await.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn holding_past_the_per_user_limit_is_refused_with_the_counts() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 10, json!({ "perUserLimit": 2 })).await;
    let id = id_of(&event);
    let ticket_type = event["ticketTypes"][0]["id"].clone();
    let buyer = app.register("ann@example.com").await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2"] })).await;

    let res = app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-3"] })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(error["details"], json!({ "limit": 2, "current": 2, "requested": 1 }));
    // GA tickets count against the same limit.
    let res = app.hold(&buyer, &id, &json!({ "ticketTypeId": ticket_type, "quantity": 1 })).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(app.availability(&id).await["held"], 2);
    assert_eq!(app.event(&id).await["ticketTypes"][0]["held"], 0);

    // Three at once from nothing is refused too; another buyer is not affected by Ann's.
    let bob = app.register("bob@example.com").await;
    let res = app.hold(&bob, &id, &json!({ "seatIds": ["S1-A-3", "S1-A-4", "S1-A-5"] })).await;
    let error = expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(error["details"], json!({ "limit": 2, "current": 0, "requested": 3 }));
    app.hold_ok(&bob, &id, &json!({ "seatIds": ["S1-A-3", "S1-A-4"] })).await;
    assert_eq!(app.availability(&id).await["held"], 4);
    app.stop().await;
}

#[tokio::test]
async fn a_buyer_cannot_read_or_cancel_another_buyers_reservation_but_an_admin_can_read_it() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let ann = app.register("ann@example.com").await;
    let bob = app.register("bob@example.com").await;
    let r = app.hold_ok(&ann, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    let rid = id_of(&r);
    app.reservation_when(&ann, &rid, |_| true).await;

    expect_error(
        app.get(&format!("/reservations/{rid}"), Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "reservation_not_found",
    )
    .await;
    let res = app.post(&format!("/reservations/{rid}/cancel"), Some(&bob), &json!({})).await;
    expect_error(res, StatusCode::NOT_FOUND, "reservation_not_found").await;
    assert_eq!(app.get(&format!("/reservations/{rid}"), None).await.status(), StatusCode::UNAUTHORIZED);
    let bobs: Value = app.get("/reservations/my", Some(&bob)).await.json().await.unwrap();
    assert_eq!(bobs["data"], json!([]));

    // Still Ann's and still held.
    let read = app.reservation_when(&ann, &rid, |_| true).await;
    assert_eq!(read["status"], "held");
    assert_eq!(app.seat_statuses(&id).await["S1-A-1"], "held");

    let res = app.get(&format!("/reservations/{rid}"), Some(&app.admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen: Value = res.json().await.unwrap();
    assert_eq!((seen["id"].clone(), seen["userId"].clone()), (json!(rid), r["userId"].clone()));
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_return_the_same_reservation_and_hold_once() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let body = json!({ "seatIds": ["S1-A-1", "S1-A-2"] });
    let path = format!("/events/{id}/reservations");

    let first = app.post_with_key(&path, &buyer, "order-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let retry = app.post_with_key(&path, &buyer, "order-1", &body).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(retry["number"], first["number"]);

    // And again once the store has the key.
    app.reservation_when(&buyer, &id_of(&first), |_| true).await;
    let late: Value = app.post_with_key(&path, &buyer, "order-1", &body).await.json().await.unwrap();
    assert_eq!(late["id"], first["id"]);

    assert_eq!(app.availability(&id).await["held"], 2);
    let mine: Value = app.get("/reservations/my", Some(&buyer)).await.json().await.unwrap();
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_with_a_different_body_is_refused() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let path = format!("/events/{id}/reservations");
    let res = app.post_with_key(&path, &buyer, "order-1", &json!({ "seatIds": ["S1-A-1"] })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let first: Value = res.json().await.unwrap();

    let res = app.post_with_key(&path, &buyer, "order-1", &json!({ "seatIds": ["S1-A-2"] })).await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "Idempotency-Key");
    assert_eq!(app.seat_statuses(&id).await["S1-A-2"], "available");

    // Also once the first use is in the store, and for another event.
    app.reservation_when(&buyer, &id_of(&first), |_| true).await;
    let other = app.create_event(1, 1, 6, 0, json!({})).await;
    let other_path = format!("/events/{}/reservations", id_of(&other));
    let res = app.post_with_key(&other_path, &buyer, "order-1", &json!({ "seatIds": ["S1-A-1"] })).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.post_with_key(&path, &buyer, "order-1", &json!({ "seatIds": ["S1-A-2"] })).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.availability(&id).await["held"], 1);
    assert_eq!(app.availability(&id_of(&other)).await["held"], 0);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_user() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let ann = app.register("ann@example.com").await;
    let bob = app.register("bob@example.com").await;
    let path = format!("/events/{id}/reservations");
    let body = json!({ "bestAvailable": { "quantity": 2 } });
    let a: Value = app.post_with_key(&path, &ann, "same-key", &body).await.json().await.unwrap();
    let res = app.post_with_key(&path, &bob, "same-key", &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["userId"], b["userId"]);
    assert!(seat_ids(&a).iter().all(|s| !seat_ids(&b).contains(s)), "{a} {b}");
    assert_eq!(app.availability(&id).await["held"], 4);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotent_cancel_retry_returns_the_same_result() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 6, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    let rid = id_of(&r);
    app.reservation_when(&buyer, &rid, |_| true).await;
    let path = format!("/reservations/{rid}/cancel");

    let first = app.post_with_key(&path, &buyer, "cancel-1", &json!({})).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "cancelled");
    // Someone else takes the seat in between; the retry must not touch it.
    let other = app.register("bob@example.com").await;
    app.hold_ok(&other, &id, &json!({ "seatIds": ["S1-A-1"] })).await;

    let retry = app.post_with_key(&path, &buyer, "cancel-1", &json!({})).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(app.seat_statuses(&id).await["S1-A-1"], "held");
    assert_eq!(app.availability(&id).await["held"], 1);

    // The key cannot be reused for a hold.
    let res = app
        .post_with_key(&format!("/events/{id}/reservations"), &buyer, "cancel-1", &json!({ "seatIds": ["S1-A-2"] }))
        .await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    app.stop().await;
}
