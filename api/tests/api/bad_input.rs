//! Bad input: every malformed or invalid request is a 4xx in the API's error format that
//! names the field, never a 5xx, and a refused write changes nothing.

use crate::support::{TestApp, expect_error, rfc3339_from_now, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An on-sale event of 6 seats and 10 GA tickets, a buyer, and the event's state to compare
/// with after a refused write.
struct Fixture {
    app: TestApp,
    event: String,
    ticket_type: String,
    buyer: String,
    before: Value,
}

impl Fixture {
    async fn new() -> Self {
        let app = spawn_app().await;
        let event = app.create_event(1, 1, 6, 10, json!({})).await;
        let id = event["id"].as_str().unwrap().to_owned();
        let ticket_type = event["ticketTypes"][0]["id"].as_str().unwrap().to_owned();
        let buyer = app.register("ann@example.com").await;
        let before = app.seat_map(&id).await;
        Self { app, event: id, ticket_type, buyer, before }
    }

    fn path(&self) -> String {
        format!("/events/{}/reservations", self.event)
    }

    async fn hold(&self, body: &Value) -> reqwest::Response {
        self.app.hold(&self.buyer, &self.event, body).await
    }

    /// Nothing was held: the seat map is as before and the GA counters are untouched.
    async fn assert_unchanged(&self) {
        assert_eq!(self.app.seat_map(&self.event).await, self.before);
        let t = &self.app.event(&self.event).await["ticketTypes"][0];
        assert_eq!((t["available"].as_u64(), t["held"].as_u64()), (Some(10), Some(0)));
        let mine: Value = self.app.get("/reservations/my", Some(&self.buyer)).await.json().await.unwrap();
        assert_eq!(mine["data"], json!([]));
    }
}

/// A 400 whose message mentions `needle`.
async fn bad_request_naming(res: reqwest::Response, needle: &str) -> Value {
    let error = expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(error["message"].as_str().unwrap().contains(needle), "{needle} not in {error}");
    error
}

/// A 422 naming `field` in its details.
async fn invalid_field(res: reqwest::Response, field: &str) -> Value {
    let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], field, "{error}");
    error
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_that_holds_nothing() {
    let f = Fixture::new().await;
    for raw in ["{\"seatIds\": [\"S1-A-1\"", "not json at all", "", "[\"S1-A-1\"]"] {
        let res = f.app.post_raw(&f.path(), &f.buyer, raw).await;
        let error = expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(!error["message"].as_str().unwrap().is_empty(), "{raw:?}");
    }
    // A body that is not declared JSON is refused too.
    let res = f
        .app
        .client
        .post(f.app.url(&f.path()))
        .bearer_auth(&f.buyer)
        .header("content-type", "text/plain")
        .body(r#"{"seatIds":["S1-A-1"]}"#)
        .send()
        .await
        .unwrap();
    let status = res.status();
    expect_error(res, status, "bad_request").await;
    assert!(status.is_client_error(), "{status}");
    f.assert_unchanged().await;
}

#[tokio::test]
async fn wrong_types_and_negative_quantities_are_bad_requests_naming_the_field() {
    let f = Fixture::new().await;
    bad_request_naming(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": "two" })).await, "quantity").await;
    bad_request_naming(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": -1 })).await, "quantity").await;
    bad_request_naming(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": 1.5 })).await, "quantity").await;
    bad_request_naming(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": 4294967296u64 })).await, "quantity")
        .await;
    bad_request_naming(f.hold(&json!({ "ticketTypeId": "not-a-uuid", "quantity": 1 })).await, "ticketTypeId").await;
    bad_request_naming(f.hold(&json!({ "seatIds": "S1-A-1" })).await, "seatIds").await;
    bad_request_naming(f.hold(&json!({ "seatIds": [1, 2] })).await, "seatIds").await;
    bad_request_naming(f.hold(&json!({ "bestAvailable": { "quantity": -2 } })).await, "bestAvailable.quantity").await;
    bad_request_naming(f.hold(&json!({ "bestAvailable": { "quantity": 2, "adjacent": "yes" } })).await, "adjacent")
        .await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn unknown_fields_are_bad_requests_naming_the_field() {
    let f = Fixture::new().await;
    bad_request_naming(f.hold(&json!({ "seatIds": ["S1-A-1"], "price": 0 })).await, "price").await;
    bad_request_naming(f.hold(&json!({ "seat_ids": ["S1-A-1"] })).await, "seat_ids").await;
    bad_request_naming(f.hold(&json!({ "bestAvailable": { "quantity": 1, "row": "A" } })).await, "row").await;
    f.assert_unchanged().await;

    // Admin bodies too, including the layout template whose body is flattened.
    let admin = &f.app.admin;
    let res = f
        .app
        .post(
            &format!("/admin/events/{}/seats/block", f.event),
            Some(admin),
            &json!({ "seatIds": ["S1-A-1"], "reason": "x" }),
        )
        .await;
    bad_request_naming(res, "reason").await;
    let layout = json!({
        "name": "Hall", "colour": "red",
        "tiers": [{ "name": "A", "price": 100 }],
        "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 2 }] }],
    });
    bad_request_naming(f.app.post("/admin/layouts", Some(admin), &layout).await, "colour").await;
    let res = f.app.put(&format!("/admin/events/{}", f.event), Some(admin), &json!({ "status": "on_sale" })).await;
    bad_request_naming(res, "status").await;
    assert_eq!(f.app.get("/layouts", None).await.json::<Value>().await.unwrap(), json!([]));
    f.assert_unchanged().await;
}

#[tokio::test]
async fn unknown_seat_ids_are_refused_naming_them_and_hold_nothing() {
    let f = Fixture::new().await;
    let error = invalid_field(f.hold(&json!({ "seatIds": ["S1-A-1", "S1-A-99", "VIP-Z-1"] })).await, "seatIds").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("S1-A-99") && message.contains("VIP-Z-1") && !message.contains("S1-A-1,"), "{message}");
    invalid_field(f.hold(&json!({ "seatIds": ["S1-A-0"] })).await, "seatIds").await;
    invalid_field(f.hold(&json!({ "seatIds": ["nonsense"] })).await, "seatIds").await;
    invalid_field(f.hold(&json!({ "seatIds": [""] })).await, "seatIds").await;
    invalid_field(f.hold(&json!({ "seatIds": ["x".repeat(65)] })).await, "seatIds").await;
    // The same seat twice.
    let error = invalid_field(f.hold(&json!({ "seatIds": ["S1-A-2", "S1-A-2"] })).await, "seatIds").await;
    assert!(error["message"].as_str().unwrap().contains("S1-A-2"), "{error}");
    f.assert_unchanged().await;
}

#[tokio::test]
async fn a_selection_that_is_empty_or_ambiguous_is_refused() {
    let f = Fixture::new().await;
    invalid_field(f.hold(&json!({ "seatIds": [] })).await, "seatIds").await;
    let many: Vec<String> = (1..=101).map(|n| format!("S1-A-{n}")).collect();
    invalid_field(f.hold(&json!({ "seatIds": many })).await, "seatIds").await;
    invalid_field(f.hold(&json!({})).await, "seatIds").await;
    invalid_field(f.hold(&json!({ "seatIds": ["S1-A-1"], "bestAvailable": { "quantity": 1 } })).await, "seatIds").await;
    invalid_field(
        f.hold(&json!({ "seatIds": ["S1-A-1"], "ticketTypeId": f.ticket_type, "quantity": 1 })).await,
        "seatIds",
    )
    .await;
    invalid_field(f.hold(&json!({ "quantity": 2 })).await, "ticketTypeId").await;
    invalid_field(f.hold(&json!({ "ticketTypeId": f.ticket_type })).await, "quantity").await;
    invalid_field(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": 0 })).await, "quantity").await;
    invalid_field(f.hold(&json!({ "ticketTypeId": f.ticket_type, "quantity": 11 })).await, "quantity").await;
    invalid_field(f.hold(&json!({ "ticketTypeId": uuid::Uuid::new_v4(), "quantity": 1 })).await, "ticketTypeId").await;
    invalid_field(f.hold(&json!({ "bestAvailable": { "quantity": 0 } })).await, "bestAvailable.quantity").await;
    invalid_field(
        f.hold(&json!({ "bestAvailable": { "quantity": 1, "section": "NOPE" } })).await,
        "bestAvailable.section",
    )
    .await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn a_reservation_larger_than_the_event_allows_is_refused_naming_the_field_used() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 12, 20, json!({ "maxPerReservation": 3, "perUserLimit": 0 })).await;
    let id = event["id"].as_str().unwrap();
    let buyer = app.register("ann@example.com").await;
    let before = app.seat_map(id).await;
    let seats: Vec<String> = (1..=4).map(|n| format!("S1-A-{n}")).collect();
    let error = invalid_field(app.hold(&buyer, id, &json!({ "seatIds": seats })).await, "seatIds").await;
    assert!(error["message"].as_str().unwrap().contains('3'), "{error}");
    invalid_field(app.hold(&buyer, id, &json!({ "bestAvailable": { "quantity": 4 } })).await, "bestAvailable.quantity")
        .await;
    let ticket_type = &event["ticketTypes"][0]["id"];
    invalid_field(app.hold(&buyer, id, &json!({ "ticketTypeId": ticket_type, "quantity": 4 })).await, "quantity").await;
    assert_eq!(app.seat_map(id).await, before);
    assert_eq!(app.event(id).await["ticketTypes"][0]["held"], 0);
    // Three is fine.
    app.hold_ok(&buyer, id, &json!({ "bestAvailable": { "quantity": 3 } })).await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_as_payload_too_large() {
    let f = Fixture::new().await;
    let padding = "S1-A-1\",\"".repeat(70 * 1024 / 9);
    let raw = format!("{{\"seatIds\":[\"{padding}S1-A-1\"]}}");
    assert!(raw.len() > 64 * 1024);
    let res = f.app.post_raw(&f.path(), &f.buyer, raw.clone()).await;
    let error = expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(error["details"], json!({}));
    let res = f.app.post_raw(&format!("/admin/events/{}/seats/block", f.event), &f.app.admin, raw).await;
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn a_path_id_that_is_not_a_uuid_is_a_bad_request() {
    let f = Fixture::new().await;
    let buyer = Some(f.buyer.as_str());
    for path in ["/events/42", "/events/not-a-uuid/seats", "/reservations/abc"] {
        let error = expect_error(f.app.get(path, buyer).await, StatusCode::BAD_REQUEST, "bad_request").await;
        assert!(error["message"].as_str().unwrap().contains("path"), "{path}: {error}");
    }
    let res = f.app.hold(&f.buyer, "12345", &json!({ "seatIds": ["S1-A-1"] })).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    let res = f.app.post("/reservations/zzz/cancel", buyer, &json!({})).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    let res = f.app.put("/admin/events/zzz", Some(&f.app.admin), &json!({ "title": "x" })).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    let res = f.app.delete("/admin/events/zzz", Some(&f.app.admin)).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused_naming_the_parameter() {
    let f = Fixture::new().await;
    let get = |q: &'static str| f.app.get(q, None);
    invalid_field(get("/events?limit=0").await, "limit").await;
    invalid_field(get("/events?limit=101").await, "limit").await;
    invalid_field(get("/events?page=0").await, "page").await;
    let error = invalid_field(get("/events?status=nope").await, "status").await;
    assert!(error["message"].as_str().unwrap().contains("on_sale"), "{error}");
    invalid_field(f.app.get(&format!("/events?q={}", "a".repeat(101)), None).await, "q").await;
    bad_request_naming(get("/events?limit=ten").await, "limit").await;
    bad_request_naming(get("/events?page=-1").await, "page").await;
    bad_request_naming(get("/events?sort=date").await, "sort").await;
    // Still fine with good ones.
    assert_eq!(get("/events?status=on_sale&page=1&limit=100&q=").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused_and_holds_nothing() {
    let f = Fixture::new().await;
    let body = json!({ "seatIds": ["S1-A-1"] });
    invalid_field(f.app.post_with_key(&f.path(), &f.buyer, &"k".repeat(256), &body).await, "Idempotency-Key").await;
    invalid_field(f.app.post_with_key(&f.path(), &f.buyer, "has space", &body).await, "Idempotency-Key").await;
    invalid_field(f.app.post_with_key(&f.path(), &f.buyer, "", &body).await, "Idempotency-Key").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn invalid_events_and_layouts_are_refused_naming_the_field() {
    let f = Fixture::new().await;
    let admin = Some(f.app.admin.as_str());
    let event = |extra: Value| {
        let mut body = json!({
            "title": "Bad", "venue": "Hall",
            "eventDate": rfc3339_from_now(time::Duration::days(3)),
            "saleStart": rfc3339_from_now(time::Duration::minutes(-1)),
            "saleEnd": rfc3339_from_now(time::Duration::days(2)),
            "ticketTypes": [{ "name": "GA", "price": 100, "capacity": 10 }],
        });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let grid = json!({ "tiers": [{ "name": "A", "price": 100 }], "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 2 }] }] });
    let cases = [
        (event(json!({ "title": "   " })), "title"),
        (event(json!({ "venue": "" })), "venue"),
        (event(json!({ "saleEnd": rfc3339_from_now(time::Duration::days(-1)) })), "saleEnd"),
        (event(json!({ "holdTtlSeconds": 0 })), "holdTtlSeconds"),
        (event(json!({ "holdTtlSeconds": 3601 })), "holdTtlSeconds"),
        (event(json!({ "maxPerReservation": 0 })), "maxPerReservation"),
        (event(json!({ "ticketTypes": [] })), "layout"),
        (event(json!({ "ticketTypes": [{ "name": "GA", "price": -1, "capacity": 10 }] })), "ticketTypes[0].price"),
        (event(json!({ "ticketTypes": [{ "name": "GA", "price": 1, "capacity": 0 }] })), "ticketTypes[0].capacity"),
        (
            event(json!({ "ticketTypes": [{ "name": "GA", "price": i64::MAX, "capacity": 10 }] })),
            "ticketTypes[0].price",
        ),
        (
            event(
                json!({ "layout": { "tiers": [{ "name": "A", "price": i64::MAX }], "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 2 }] }] } }),
            ),
            "layout.tiers[0].price",
        ),
        // A seated layout without seats and no tickets: nothing to sell.
        (
            event(json!({ "ticketTypes": [], "layout": { "tiers": [{ "name": "A", "price": 1 }], "sections": [] } })),
            "layout.sections",
        ),
        (event(json!({ "layoutId": uuid::Uuid::new_v4(), "layout": grid })), "layout"),
        (
            event(
                json!({ "layout": { "tiers": [{ "name": "A", "price": 1 }], "sections": [{ "name": "S", "tier": 3, "rows": [{ "label": "A", "seats": 2 }] }] } }),
            ),
            "layout.sections[0].tier",
        ),
        (
            event(
                json!({ "layout": { "tiers": [{ "name": "A", "price": 1 }], "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A-1", "seats": 2 }] }] } }),
            ),
            "layout.sections[0].rows[0].label",
        ),
        (
            event(
                json!({ "layout": { "tiers": [{ "name": "A", "price": 1 }], "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 0 }] }] } }),
            ),
            "layout.sections[0].rows[0].seats",
        ),
    ];
    for (body, field) in cases {
        invalid_field(f.app.post("/admin/events", admin, &body).await, field).await;
    }
    bad_request_naming(
        f.app.post("/admin/events", admin, &event(json!({ "saleStart": "tomorrow" }))).await,
        "saleStart",
    )
    .await;
    bad_request_naming(f.app.post("/admin/events", admin, &json!({ "venue": "Hall" })).await, "title").await;
    let layout = json!({ "name": "Hall", "tiers": [], "sections": [] });
    invalid_field(f.app.post("/admin/layouts", admin, &layout).await, "tiers").await;
    let layout = json!({ "name": "Hall", "tiers": [{ "name": "A", "price": 1_000_000_000_001i64 }], "sections": [{ "name": "S", "tier": 0, "rows": [{ "label": "A", "seats": 2 }] }] });
    invalid_field(f.app.post("/admin/layouts", admin, &layout).await, "tiers[0].price").await;
    invalid_field(
        f.app.post(&format!("/admin/events/{}/seats/block", f.event), admin, &json!({ "seatIds": [] })).await,
        "seatIds",
    )
    .await;

    // None of them created anything.
    let list: Value = f.app.get("/events", None).await.json().await.unwrap();
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(f.app.get("/layouts", None).await.json::<Value>().await.unwrap(), json!([]));
    f.assert_unchanged().await;
}

#[tokio::test]
async fn an_unknown_route_is_a_404_in_the_error_format() {
    let f = Fixture::new().await;
    expect_error(f.app.get("/nothing-here", None).await, StatusCode::NOT_FOUND, "route_not_found").await;
}
