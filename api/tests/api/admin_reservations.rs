//! `GET /admin/reservations` and an admin's status changes, with their audit trail.

use crate::support::{expect_error, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn ok(res: reqwest::Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn admins_list_reservations_filtered_and_paged_newest_first() {
    let app = spawn_app().await;
    let one = app.create_event(1, 1, 10, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let two = app.create_event(1, 1, 10, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let alice = app.register("alice@list.test").await;
    let bob = app.register("bob@list.test").await;
    // Apart by more than the millisecond reservations are stamped with, so "newest first"
    // has one answer.
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(5));
    let a1 = app.hold_ok(&alice, &one, &json!({ "seatIds": ["S1-A-1"] })).await;
    pause().await;
    let b1 = app.hold_ok(&bob, &one, &json!({ "seatIds": ["S1-A-2"] })).await;
    pause().await;
    let a2 = app.hold_ok(&alice, &two, &json!({ "seatIds": ["S1-A-1"] })).await;
    let cancelled =
        app.post(&format!("/reservations/{}/cancel", b1["id"].as_str().unwrap()), Some(&bob), &json!({})).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let id = |r: &Value| r["id"].as_str().unwrap().to_owned();
    let list = |query: String| {
        let app = &app;
        async move { ok(app.get(&format!("/admin/reservations{query}"), Some(&app.admin)).await).await }
    };

    // Each filtered list waits for the store, which trails the actor by one commit.
    let all = app
        .eventually("all three in the store", || async {
            let page = list(String::new()).await;
            (page["pagination"]["total"] == 3).then_some(page)
        })
        .await;
    assert_eq!(ids(&all), [id(&a2), id(&b1), id(&a1)], "newest first");
    assert_eq!(ids(&list(format!("?eventId={one}")).await), [id(&b1), id(&a1)]);
    let cancelled_only = list(format!("?eventId={one}&status=cancelled")).await;
    assert_eq!(ids(&cancelled_only), [id(&b1)]);
    assert_eq!(cancelled_only["data"][0]["status"], "cancelled");
    let alices = list(format!("?userId={}", a1["userId"].as_str().unwrap())).await;
    assert_eq!(ids(&alices), [id(&a2), id(&a1)]);
    let page2 = list("?limit=2&page=2".into()).await;
    assert_eq!(ids(&page2), [id(&a1)]);
    assert_eq!(page2["pagination"], json!({ "total": 3, "page": 2, "limit": 2, "totalPages": 2 }));

    let bad = app.get("/admin/reservations?status=lost", Some(&app.admin)).await;
    assert_eq!(
        expect_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await["details"]["field"],
        "status"
    );
    let bad = app.get("/admin/reservations?limit=0", Some(&app.admin)).await;
    assert_eq!(
        expect_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await["details"]["field"],
        "limit"
    );
    expect_error(app.get("/admin/reservations", Some(&alice)).await, StatusCode::FORBIDDEN, "forbidden").await;
    expect_error(app.get("/admin/reservations", None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn an_admin_confirms_or_cancels_by_hand_and_each_change_is_audited() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 10, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let buyer = app.register("buyer@audit.test").await;
    let admin_id = ok(app.get("/auth/me", Some(&app.admin)).await).await["id"].clone();

    // Paid at the box office: held -> confirmed, the seat sold.
    let offline = app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-A-1"] })).await;
    let offline_id = offline["id"].as_str().unwrap();
    let body = json!({ "status": "confirmed", "reason": "paid cash at the box office" });
    let confirmed =
        ok(app.post(&format!("/admin/reservations/{offline_id}/status"), Some(&app.admin), &body).await).await;
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(app.seat_statuses(&event).await["S1-A-1"], "sold");

    // Paid through the provider, then cancelled by an admin: refunded, the seat back on sale.
    let paid = app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-A-2"] })).await;
    let paid_id = paid["id"].as_str().unwrap();
    let order = ok(app.post("/payments/prepare", Some(&buyer), &json!({ "reservationId": paid_id })).await).await;
    let confirm = json!({ "orderId": order["orderId"], "paymentKey": "pk-admin-1", "amount": order["amount"] });
    ok(app.post("/payments/confirm", Some(&buyer), &confirm).await).await;
    let body = json!({ "status": "cancelled", "reason": "duplicate order" });
    let refunded = ok(app.post(&format!("/admin/reservations/{paid_id}/status"), Some(&app.admin), &body).await).await;
    assert_eq!(refunded["status"], "cancelled");
    assert_eq!(app.seat_statuses(&event).await["S1-A-2"], "available");
    let payment = ok(app.get(&format!("/payments/{}", order["orderId"].as_str().unwrap()), Some(&buyer)).await).await;
    assert_eq!(payment["status"], "cancelled");

    let audit = |id: String| {
        let app = &app;
        async move { ok(app.get(&format!("/admin/reservations/{id}/audit"), Some(&app.admin)).await).await }
    };
    let trail = audit(offline_id.to_owned()).await;
    assert_eq!(trail["data"].as_array().unwrap().len(), 1);
    let entry = &trail["data"][0];
    assert_eq!(
        (&entry["adminId"], &entry["from"], &entry["to"], &entry["reason"]),
        (&admin_id, &json!("held"), &json!("confirmed"), &json!("paid cash at the box office"))
    );
    let trail = audit(paid_id.to_owned()).await;
    let entry = &trail["data"][0];
    assert_eq!(
        (&entry["from"], &entry["to"], &entry["reason"]),
        (&json!("confirmed"), &json!("cancelled"), &json!("duplicate order"))
    );

    // What an admin may not do changes nothing and is not audited.
    let url = format!("/admin/reservations/{offline_id}/status");
    let res = app.post(&url, Some(&app.admin), &json!({ "status": "expired", "reason": "x" })).await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await["details"]["field"],
        "status"
    );
    let res = app.post(&url, Some(&app.admin), &json!({ "status": "cancelled", "reason": "  " })).await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await["details"]["field"],
        "reason"
    );
    let res = app.post(&url, Some(&buyer), &json!({ "status": "cancelled", "reason": "mine" })).await;
    expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let ended = format!("/admin/reservations/{paid_id}/status");
    let res = app.post(&ended, Some(&app.admin), &json!({ "status": "confirmed", "reason": "undo" })).await;
    expect_error(res, StatusCode::CONFLICT, "invalid_state").await;
    let unknown = format!("/admin/reservations/{}/status", uuid::Uuid::new_v4());
    let res = app.post(&unknown, Some(&app.admin), &json!({ "status": "cancelled", "reason": "x" })).await;
    expect_error(res, StatusCode::NOT_FOUND, "reservation_not_found").await;
    assert_eq!(audit(offline_id.to_owned()).await["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.seat_statuses(&event).await["S1-A-1"], "sold");
    app.stop().await;
}
