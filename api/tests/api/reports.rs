//! Admin sales reports over HTTP: a scripted on-sale (queue joins, holds, payments with the
//! built-in mock provider, a refund, a cancellation, a blocked seat) across events in every
//! status, then every field of the overview, per-event and daily reports; and who may ask,
//! and with what.

use crate::support::{TestApp, expect_error, rfc3339_from_now, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Today and `days` from it (UTC), as `YYYY-MM-DD`.
fn utc_day(days: i64) -> String {
    let day = time::OffsetDateTime::now_utc().date() + Duration::days(days);
    day.format(time::macros::format_description!("[year]-[month]-[day]")).unwrap()
}

/// Insists on a 2xx and returns the body.
async fn ok(res: reqwest::Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// `GET path` as the admin.
async fn report(app: &TestApp, path: &str) -> Value {
    ok(app.get(path, Some(&app.admin)).await).await
}

/// Joins an event's queue (admitted at once: no rate limit, no cap) and returns the
/// admission token.
async fn join(app: &TestApp, token: &str, event: &str) -> String {
    let standing = ok(app.post(&format!("/events/{event}/queue/join"), Some(token), &json!({})).await).await;
    standing["admissionToken"].as_str().unwrap_or_else(|| panic!("admitted: {standing}")).to_owned()
}

/// Reserves with an admission token.
async fn reserve_admitted(app: &TestApp, token: &str, event: &str, admission: &str, body: &Value) -> Value {
    let url = app.url(&format!("/events/{event}/reservations"));
    let req = app.client.post(url).bearer_auth(token).header("X-Admission-Token", admission).json(body);
    ok(req.send().await.unwrap()).await
}

/// Prepares the reservation's payment and confirms it with the mock provider.
async fn pay(app: &TestApp, token: &str, reservation: &Value, key: &str) {
    let order =
        ok(app.post("/payments/prepare", Some(token), &json!({ "reservationId": id_of(reservation) })).await).await;
    let confirm = json!({ "orderId": order["orderId"], "paymentKey": key, "amount": order["amount"] });
    let paid = ok(app.post("/payments/confirm", Some(token), &confirm).await).await;
    assert_eq!(paid["status"], "done", "{paid}");
}

/// The sale the reports are checked against (all today, UTC):
///
/// "Queued" (10 seats at 1000 in S1 rows A-B, 20 GA tickets at 500, queue on): six buyers
/// join the queue; ann buys S1-A-1 and S1-A-2 (2000); bob buys 3 GA tickets (1500) and has
/// them refunded; cat holds S1-B-1 (1000) unpaid; dan holds S1-B-2 and S1-B-3 (2000) and
/// cancels; eve and fay never reserve; the admin blocks S1-B-5.
///
/// "Plain" (4 seats at 1000, no queue): ann buys S1-A-1 (1000); bob holds S1-A-2 and S1-A-3
/// (2000) and prepares a payment he never confirms.
///
/// "Tiny" (1 seat at 1000): cat buys it, and the event is sold out. Three more without
/// sales: one upcoming, one ended, one cancelled.
///
/// Returns the ids of "Queued" and "Plain".
async fn scripted_sale(app: &TestApp) -> (String, String) {
    let open = json!({ "perUserLimit": 0 });
    let queue = json!({ "enabled": true, "ratePerSecond": 0, "maxActive": 0, "admissionTtlSeconds": 600 });
    let queued = id_of(&app.create_event(1, 2, 5, 20, json!({ "perUserLimit": 0, "queue": queue })).await);
    let plain = id_of(&app.create_event(1, 1, 4, 0, open.clone()).await);
    let tiny = id_of(&app.create_event(1, 1, 1, 0, open.clone()).await);
    let later =
        json!({ "saleStart": rfc3339_from_now(Duration::days(1)), "saleEnd": rfc3339_from_now(Duration::days(2)) });
    app.create_event(1, 1, 2, 0, later).await;
    let past =
        json!({ "saleStart": rfc3339_from_now(Duration::days(-2)), "saleEnd": rfc3339_from_now(Duration::days(-1)) });
    app.create_event(1, 1, 2, 0, past).await;
    let cancelled = id_of(&app.create_event(1, 1, 2, 0, open).await);
    ok(app.post(&format!("/admin/events/{cancelled}/cancel"), Some(&app.admin), &json!({})).await).await;

    let [ann, bob, cat, dan, eve, fay] = ["ann", "bob", "cat", "dan", "eve", "fay"].map(|n| format!("{n}@example.com"));
    let (ann, bob, cat, dan) =
        (app.register(&ann).await, app.register(&bob).await, app.register(&cat).await, app.register(&dan).await);
    let (eve, fay) = (app.register(&eve).await, app.register(&fay).await);

    let mut admissions = Vec::new();
    for buyer in [&ann, &bob, &cat, &dan, &eve, &fay] {
        admissions.push(join(app, buyer, &queued).await);
    }
    let seats = |ids: &[&str]| json!({ "seatIds": ids });
    let r1 = reserve_admitted(app, &ann, &queued, &admissions[0], &seats(&["S1-A-1", "S1-A-2"])).await;
    pay(app, &ann, &r1, "pk-ann").await;
    let ga = app.event(&queued).await["ticketTypes"][0]["id"].clone();
    let r2 = reserve_admitted(app, &bob, &queued, &admissions[1], &json!({ "ticketTypeId": ga, "quantity": 3 })).await;
    pay(app, &bob, &r2, "pk-bob").await;
    let refund = ok(app.post("/payments/pk-bob/cancel", Some(&bob), &json!({})).await).await;
    assert_eq!(refund["status"], "cancelled", "{refund}");
    reserve_admitted(app, &cat, &queued, &admissions[2], &seats(&["S1-B-1"])).await;
    let r4 = reserve_admitted(app, &dan, &queued, &admissions[3], &seats(&["S1-B-2", "S1-B-3"])).await;
    ok(app.post(&format!("/reservations/{}/cancel", id_of(&r4)), Some(&dan), &json!({})).await).await;
    let block = json!({ "seatIds": ["S1-B-5"] });
    ok(app.post(&format!("/admin/events/{queued}/seats/block"), Some(&app.admin), &block).await).await;

    let r5 = app.hold_ok(&ann, &plain, &seats(&["S1-A-1"])).await;
    pay(app, &ann, &r5, "pk-plain").await;
    let r6 = app.hold_ok(&bob, &plain, &seats(&["S1-A-2", "S1-A-3"])).await;
    ok(app.post("/payments/prepare", Some(&bob), &json!({ "reservationId": id_of(&r6) })).await).await;

    let r7 = app.hold_ok(&cat, &tiny, &seats(&["S1-A-1"])).await;
    pay(app, &cat, &r7, "pk-tiny").await;
    assert_eq!(app.event(&tiny).await["status"], "sold_out");
    (queued, plain)
}

/// A day with no activity.
fn quiet(date: String) -> Value {
    json!({ "date": date, "reservations": 0, "confirmed": 0, "revenue": 0, "refunds": 0, "refunded": 0 })
}

#[tokio::test]
async fn the_reports_add_up_a_scripted_on_sale() {
    let app = spawn_app().await;
    let (queued, plain) = scripted_sale(&app).await;

    // Revenue is captured money not refunded: ann's 2000 and 1000, cat's 1000. Today's
    // confirmations count bob's refunded payment too; today's revenue does not.
    let overview = report(&app, "/admin/stats/overview").await;
    assert_eq!(
        overview,
        json!({
            "events": {
                "total": 6,
                "byStatus": { "upcoming": 1, "on_sale": 2, "sold_out": 1, "ended": 1, "cancelled": 1 },
            },
            "reservations": { "held": 2, "confirmed": 3, "expired": 0, "cancelled": 2 },
            "revenue": 4000,
            "refunded": 1500,
            "today": { "date": utc_day(0), "reservations": 7, "confirmed": 4, "revenue": 4000 },
        })
    );

    let stats = report(&app, &format!("/admin/stats/events/{queued}")).await;
    assert_eq!(
        stats,
        json!({
            "eventId": queued,
            "title": "Test Concert",
            "seats": { "total": 10, "sold": 2, "held": 1, "available": 6, "blocked": 1 },
            "tickets": { "capacity": 20, "sold": 0, "held": 0, "available": 20 },
            "reservations": { "held": 1, "confirmed": 1, "expired": 0, "cancelled": 2 },
            "revenue": 2000,
            "refunded": 1500,
            "funnel": {
                "queueJoins": 6,
                "reservations": 4,
                "confirmedPayments": 2,
                "queueToReservation": 0.6667,
                "reservationToPayment": 0.5,
                "queueToPayment": 0.3333,
            },
            "cancellations": 2,
            "refunds": 1,
        })
    );

    let stats = report(&app, &format!("/admin/stats/events/{plain}")).await;
    assert_eq!(
        stats,
        json!({
            "eventId": plain,
            "title": "Test Concert",
            "seats": { "total": 4, "sold": 1, "held": 2, "available": 1, "blocked": 0 },
            "tickets": { "capacity": 0, "sold": 0, "held": 0, "available": 0 },
            "reservations": { "held": 1, "confirmed": 1, "expired": 0, "cancelled": 0 },
            "revenue": 1000,
            "refunded": 0,
            "funnel": {
                "queueJoins": 0,
                "reservations": 2,
                "confirmedPayments": 1,
                "queueToReservation": null,
                "reservationToPayment": 0.5,
                "queueToPayment": null,
            },
            "cancellations": 0,
            "refunds": 0,
        })
    );

    // By default the last 30 days, today last; revenue is gross (bob's 1500 included, his
    // refund counted apart).
    let all = report(&app, "/admin/stats/daily").await;
    let mut expected: Vec<Value> = (-29..0).map(|d| quiet(utc_day(d))).collect();
    expected.push(json!({
        "date": utc_day(0), "reservations": 7, "confirmed": 4, "revenue": 5500, "refunds": 1, "refunded": 1500,
    }));
    assert_eq!(all, Value::Array(expected));

    let path = format!("/admin/stats/daily?eventId={queued}&from={}&to={}", utc_day(-2), utc_day(1));
    assert_eq!(
        report(&app, &path).await,
        json!([
            quiet(utc_day(-2)),
            quiet(utc_day(-1)),
            { "date": utc_day(0), "reservations": 4, "confirmed": 2, "revenue": 3500, "refunds": 1, "refunded": 1500 },
            quiet(utc_day(1)),
        ])
    );
    let path = format!("/admin/stats/daily?eventId={plain}&from={}&to={}", utc_day(0), utc_day(0));
    assert_eq!(
        report(&app, &path).await,
        json!([{ "date": utc_day(0), "reservations": 2, "confirmed": 1, "revenue": 1000, "refunds": 0, "refunded": 0 }])
    );
}

#[tokio::test]
async fn a_hold_made_a_moment_ago_is_in_the_next_report() {
    let app = spawn_app().await;
    let event = id_of(&app.create_event(1, 1, 3, 0, json!({})).await);
    let buyer = app.register("quick@example.com").await;
    app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-A-1"] })).await;
    // No polling: the report waits for the write-behind journal to commit the hold.
    let stats = report(&app, &format!("/admin/stats/events/{event}")).await;
    assert_eq!(stats["seats"], json!({ "total": 3, "sold": 0, "held": 1, "available": 2, "blocked": 0 }));
    assert_eq!(report(&app, "/admin/stats/overview").await["today"]["reservations"], 1);
}

#[tokio::test]
async fn the_reports_are_for_admins_only() {
    let app = spawn_app().await;
    let event = id_of(&app.create_event(1, 1, 2, 0, json!({})).await);
    let buyer = app.register("nosy@example.com").await;
    for path in
        ["/admin/stats/overview".to_owned(), format!("/admin/stats/events/{event}"), "/admin/stats/daily".into()]
    {
        let error = expect_error(app.get(&path, Some(&buyer)).await, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(error["message"].as_str().unwrap().contains("admin"), "{path}: {error}");
        expect_error(app.get(&path, None).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        expect_error(app.get(&path, Some("not-a-jwt")).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn an_unknown_event_is_not_found_and_a_bad_range_names_its_field() {
    let app = spawn_app().await;
    let nobody = Uuid::new_v4();
    let res = app.get(&format!("/admin/stats/events/{nobody}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = app.get(&format!("/admin/stats/daily?eventId={nobody}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;
    let res = app.get("/admin/stats/events/not-a-uuid", Some(&app.admin)).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;
    let res = app.get("/admin/stats/daily?eventId=not-a-uuid", Some(&app.admin)).await;
    expect_error(res, StatusCode::BAD_REQUEST, "bad_request").await;

    let invalid = [
        ("from=2026-13-01".to_owned(), "from"),
        ("to=yesterday".to_owned(), "to"),
        ("from=2026-01-05&to=2026-01-04".to_owned(), "from"),
        // From tomorrow to the default end, today.
        (format!("from={}", utc_day(1)), "from"),
        // 367 days: the end is blamed when given, else the start.
        ("from=2025-01-01&to=2026-01-02".to_owned(), "to"),
        (format!("from={}", utc_day(-366)), "from"),
    ];
    for (query, field) in invalid {
        let res = app.get(&format!("/admin/stats/daily?{query}"), Some(&app.admin)).await;
        let error = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error["details"]["field"], field, "{query}: {error}");
    }

    // The longest range allowed, and a single day.
    let year = report(&app, "/admin/stats/daily?from=2025-01-01&to=2026-01-01").await;
    let year = year.as_array().unwrap();
    assert_eq!((year.len(), &year[0], &year[365]), (366, &quiet("2025-01-01".into()), &quiet("2026-01-01".into())));
    assert_eq!(
        report(&app, &format!("/admin/stats/daily?from={}", utc_day(-365))).await.as_array().unwrap().len(),
        366
    );
    assert_eq!(
        report(&app, "/admin/stats/daily?from=2026-02-03&to=2026-02-03").await,
        json!([quiet("2026-02-03".into())])
    );
}
