//! Admin routes: role checks on every route, seat blocking, event edits, cancellation,
//! deletion, and events not yet on sale.

use crate::support::{TestApp, expect_error, rfc3339_from_now, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Every admin route with a body that an admin would get a 2xx for.
fn admin_routes(event: &str) -> Vec<(Method, String, Option<Value>)> {
    let layout = json!({
        "name": "Hall",
        "tiers": [{ "name": "A", "price": 100 }],
        "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 2 }] }],
    });
    let new_event = json!({
        "title": "Sneaky", "venue": "Hall",
        "eventDate": rfc3339_from_now(Duration::days(3)),
        "saleStart": rfc3339_from_now(Duration::minutes(-1)),
        "saleEnd": rfc3339_from_now(Duration::days(2)),
        "ticketTypes": [{ "name": "GA", "price": 100, "capacity": 10 }],
    });
    vec![
        (Method::POST, "/admin/layouts".into(), Some(layout)),
        (Method::POST, "/admin/events".into(), Some(new_event)),
        (Method::PUT, format!("/admin/events/{event}"), Some(json!({ "title": "Hijacked" }))),
        (Method::DELETE, format!("/admin/events/{event}"), None),
        (Method::POST, format!("/admin/events/{event}/cancel"), None),
        (Method::POST, format!("/admin/events/{event}/seats/block"), Some(json!({ "seatIds": ["S1-A-1"] }))),
        (Method::POST, format!("/admin/events/{event}/seats/unblock"), Some(json!({ "seatIds": ["S1-A-2"] }))),
    ]
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.expect("request sent")
}

#[tokio::test]
async fn a_non_admin_is_forbidden_on_every_admin_route_and_an_anonymous_caller_is_unauthorized() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    // S1-A-2 blocked by the admin, so an unblock by anyone else would show.
    let res =
        app.post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": ["S1-A-2"] })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let before = app.event(&id).await;
    let buyer = app.register("ann@example.com").await;

    for (method, path, body) in admin_routes(&id) {
        let res = send(&app, method.clone(), &path, Some(&buyer), body.as_ref()).await;
        let error = expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(error["message"].as_str().unwrap().contains("admin"), "{method} {path}: {error}");
        let res = send(&app, method.clone(), &path, None, body.as_ref()).await;
        expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let res = send(&app, method.clone(), &path, Some("not-a-jwt"), body.as_ref()).await;
        expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // Nothing changed: same event, same seats, no new layout or event.
    let after = app.event(&id).await;
    assert_eq!(after, before);
    let statuses = app.seat_statuses(&id).await;
    assert_eq!((statuses["S1-A-1"].as_str(), statuses["S1-A-2"].as_str()), ("available", "blocked"));
    let layouts: Value = app.get("/layouts", None).await.json().await.unwrap();
    assert_eq!(layouts, json!([]));
    let events: Value = app.get("/events", None).await.json().await.unwrap();
    assert_eq!(events["pagination"]["total"], 1);

    // The admin gets through on every one of them (the delete last, it is the 204).
    let mut routes = admin_routes(&id);
    routes.swap(3, 6);
    for (method, path, body) in routes {
        let res = send(&app, method.clone(), &path, Some(&app.admin), body.as_ref()).await;
        assert!(res.status().is_success(), "{method} {path}: {}", res.status());
    }
    app.stop().await;
}

#[tokio::test]
async fn a_blocked_seat_cannot_be_held_and_shows_as_blocked_until_unblocked() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;

    let res = app
        .post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": ["S1-A-1", "S1-A-2"] }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["availability"], json!({ "available": 2, "held": 0, "sold": 0, "blocked": 2, "total": 4 }));
    let statuses = app.seat_statuses(&id).await;
    assert_eq!((statuses["S1-A-1"].as_str(), statuses["S1-A-2"].as_str()), ("blocked", "blocked"));

    let error = expect_error(
        app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-2", "S1-A-3"] })).await,
        StatusCode::CONFLICT,
        "seats_unavailable",
    )
    .await;
    assert_eq!(error["details"]["seatIds"], json!(["S1-A-2"]));
    assert_eq!(app.seat_statuses(&id).await["S1-A-3"], "available");
    // Best available skips blocked seats.
    let r = app.hold_ok(&buyer, &id, &json!({ "bestAvailable": { "quantity": 2 } })).await;
    assert_eq!(r["seatIds"], json!(["S1-A-3", "S1-A-4"]));

    let res = app
        .post(&format!("/admin/events/{id}/seats/unblock"), Some(&app.admin), &json!({ "seatIds": ["S1-A-2"] }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.availability(&id).await, json!({ "available": 1, "held": 2, "sold": 0, "blocked": 1, "total": 4 }));
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-2"] })).await;
    assert_eq!(app.seat_statuses(&id).await["S1-A-1"], "blocked");
    app.stop().await;
}

#[tokio::test]
async fn blocking_a_held_seat_is_a_conflict_that_blocks_nothing() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-3"] })).await;

    let res = app
        .post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": ["S1-A-2", "S1-A-3"] }))
        .await;
    let error = expect_error(res, StatusCode::CONFLICT, "seats_unavailable").await;
    assert_eq!(error["details"]["seatIds"], json!(["S1-A-3"]));
    let statuses = app.seat_statuses(&id).await;
    assert_eq!((statuses["S1-A-2"].as_str(), statuses["S1-A-3"].as_str()), ("available", "held"));
    assert_eq!(app.availability(&id).await, json!({ "available": 3, "held": 1, "sold": 0, "blocked": 0, "total": 4 }));

    // Unknown seats are named, and nothing is blocked either.
    let res = app
        .post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": ["S1-A-1", "S9-Z-9"] }))
        .await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "seatIds");
    assert!(error["message"].as_str().unwrap().contains("S9-Z-9"), "{error}");
    assert_eq!(app.seat_statuses(&id).await["S1-A-1"], "available");
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_event_releases_its_holds_and_refuses_new_ones() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;

    let res = app.post(&format!("/admin/events/{id}/cancel"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["availability"], json!({ "available": 4, "held": 0, "sold": 0, "blocked": 0, "total": 4 }));
    assert_eq!(app.event(&id).await["status"], "cancelled");

    let error = expect_error(
        app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-2"] })).await,
        StatusCode::CONFLICT,
        "not_on_sale",
    )
    .await;
    assert_eq!(error["details"]["status"], "cancelled");
    let error = expect_error(
        app.hold(&buyer, &id, &json!({ "bestAvailable": { "quantity": 1 } })).await,
        StatusCode::CONFLICT,
        "not_on_sale",
    )
    .await;
    assert_eq!(error["details"]["status"], "cancelled");
    let read = app.reservation_when(&buyer, &id_of(&r), |r| r["status"] == "cancelled").await;
    assert_eq!(read["id"], r["id"]);
    assert!(app.seat_statuses(&id).await.values().all(|s| s == "available"));

    let list: Value = app.get("/events?status=cancelled", None).await.json().await.unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn an_event_with_reservations_cannot_be_deleted() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;

    // Straight after the hold: the hold must count even if the store has not caught up.
    let res = app.delete(&format!("/admin/events/{id}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::CONFLICT, "event_has_reservations").await;
    // A cancelled reservation still counts: it was a sale attempt with a number.
    app.reservation_when(&buyer, &id_of(&r), |_| true).await;
    let res = app.post(&format!("/reservations/{}/cancel", id_of(&r)), Some(&buyer), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.delete(&format!("/admin/events/{id}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::CONFLICT, "event_has_reservations").await;

    let event = app.event(&id).await;
    assert_eq!(event["status"], "on_sale");
    assert_eq!(app.seat_statuses(&id).await.len(), 4);
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    app.stop().await;
}

#[tokio::test]
async fn an_event_without_reservations_is_deleted_and_then_not_found() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let keep = app.create_event(1, 1, 4, 0, json!({ "title": "Keeper" })).await;
    let id = id_of(&event);
    let res = app.delete(&format!("/admin/events/{id}"), Some(&app.admin)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.bytes().await.unwrap().len(), 0);

    expect_error(app.get(&format!("/events/{id}"), None).await, StatusCode::NOT_FOUND, "event_not_found").await;
    expect_error(app.get(&format!("/events/{id}/seats"), None).await, StatusCode::NOT_FOUND, "event_not_found").await;
    let buyer = app.register("ann@example.com").await;
    let res = app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = app.delete(&format!("/admin/events/{id}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;

    let list: Value = app.get("/events", None).await.json().await.unwrap();
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(list["data"][0]["id"], keep["id"]);
    app.stop().await;
}

#[tokio::test]
async fn an_event_before_its_sale_start_refuses_holds_as_not_on_sale() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 10, json!({ "saleStart": rfc3339_from_now(Duration::hours(2)) })).await;
    let id = id_of(&event);
    assert_eq!(event["status"], "upcoming");
    let buyer = app.register("ann@example.com").await;
    for body in [
        json!({ "seatIds": ["S1-A-1"] }),
        json!({ "bestAvailable": { "quantity": 1 } }),
        json!({ "ticketTypeId": event["ticketTypes"][0]["id"], "quantity": 1 }),
    ] {
        let error = expect_error(app.hold(&buyer, &id, &body).await, StatusCode::CONFLICT, "not_on_sale").await;
        assert_eq!(error["details"]["status"], "upcoming", "{body}");
    }
    assert_eq!(app.availability(&id).await["available"], 4);

    // Moving the sale start into the past opens the sale.
    let res = app
        .put(
            &format!("/admin/events/{id}"),
            Some(&app.admin),
            &json!({ "saleStart": rfc3339_from_now(Duration::minutes(-1)) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "on_sale");
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_edits_an_event_and_an_empty_sale_window_is_refused() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let res = app
        .put(
            &format!("/admin/events/{id}"),
            Some(&app.admin),
            &json!({ "title": "  Renamed  ", "perUserLimit": 1, "holdTtlSeconds": 60 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let event = app.event(&id).await;
    assert_eq!(
        (event["title"].as_str(), event["perUserLimit"].as_u64(), event["holdTtlSeconds"].as_u64()),
        (Some("Renamed"), Some(1), Some(60))
    );
    assert_eq!(event["venue"], "Test Hall", "fields not given are left alone");

    // The new limit applies at once.
    let buyer = app.register("ann@example.com").await;
    let res = app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2"] })).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;

    let res = app
        .put(
            &format!("/admin/events/{id}"),
            Some(&app.admin),
            &json!({ "saleEnd": rfc3339_from_now(Duration::days(-1)) }),
        )
        .await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "saleEnd");
    let res = app.put(&format!("/admin/events/{id}"), Some(&app.admin), &json!({ "title": "" })).await;
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "title");
    let res =
        app.put(&format!("/admin/events/{}", uuid::Uuid::new_v4()), Some(&app.admin), &json!({ "title": "x" })).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;

    let event = app.event(&id).await;
    assert_eq!((event["title"].as_str(), event["status"].as_str()), (Some("Renamed"), Some("on_sale")));
    app.stop().await;
}

#[tokio::test]
async fn an_admin_cancels_a_buyers_reservation() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await;
    let id = id_of(&event);
    let buyer = app.register("ann@example.com").await;
    let r = app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    app.reservation_when(&buyer, &id_of(&r), |_| true).await;
    let res = app.post(&format!("/reservations/{}/cancel", id_of(&r)), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    assert_eq!(app.seat_statuses(&id).await["S1-A-1"], "available");
    let read = app.reservation_when(&buyer, &id_of(&r), |_| true).await;
    assert_eq!(read["status"], "cancelled");
    app.stop().await;
}
