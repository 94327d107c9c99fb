//! Browsing: layouts, the event list, one event with its availability, the seat map.

use crate::support::{expect_error, rfc3339_from_now, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

/// A two-section layout: `VIP` (rows A, B of 4 seats, tier 0) and `FLOOR` (row A of 6 seats,
/// tier 1, with row B in tier 2 overriding the section's tier).
fn venue_layout(name: &str) -> Value {
    json!({
        "name": name,
        "tiers": [
            { "name": "VIP", "price": 15000 },
            { "name": "Standard", "price": 8000 },
            { "name": "Budget", "price": 3000 },
        ],
        "sections": [
            { "name": "VIP", "tier": 0, "rows": [
                { "label": "A", "seats": 4 },
                { "label": "B", "seats": 4 },
            ]},
            { "name": "FLOOR", "tier": 1, "rows": [
                { "label": "A", "seats": 6 },
                { "label": "B", "seats": 6, "tier": 2 },
            ]},
        ],
    })
}

fn event_body(title: &str, extra: Value) -> Value {
    let mut body = json!({
        "title": title,
        "venue": "Olympic Hall",
        "artist": "The Testers",
        "eventDate": rfc3339_from_now(Duration::days(30)),
        "saleStart": rfc3339_from_now(Duration::minutes(-1)),
        "saleEnd": rfc3339_from_now(Duration::days(29)),
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn an_admin_creates_a_layout_template_that_is_listed_and_an_event_copies_it() {
    let app = spawn_app().await;
    let res = app.post("/admin/layouts", Some(&app.admin), &venue_layout("Olympic Hall")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let layout: Value = res.json().await.unwrap();
    assert_eq!(layout["name"], "Olympic Hall");
    assert_eq!(layout["seatCount"], 20);
    assert_eq!(
        layout["tiers"],
        json!([
            { "name": "VIP", "price": 15000 },
            { "name": "Standard", "price": 8000 },
            { "name": "Budget", "price": 3000 },
        ])
    );
    let layout_id = layout["id"].as_str().unwrap().to_owned();

    let layouts: Value = app.get("/layouts", None).await.json().await.unwrap();
    let layouts = layouts.as_array().unwrap();
    assert_eq!(layouts.len(), 1);
    assert_eq!(layouts[0]["id"], layout_id.as_str());
    assert_eq!(layouts[0]["seatCount"], 20);
    assert_eq!(layouts[0]["sections"][1]["name"], "FLOOR");
    assert_eq!(layouts[0]["sections"][1]["rows"][1]["tier"], 2);

    let res = app
        .post("/admin/events", Some(&app.admin), &event_body("From Template", json!({ "layoutId": layout_id })))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let event: Value = res.json().await.unwrap();
    assert_eq!(event["layoutId"], layout_id.as_str());
    assert_eq!(event["seatCount"], 20);
    assert_eq!(event["sections"], json!(["VIP", "FLOOR"]));
    assert_eq!(event["status"], "on_sale");
    assert_eq!(event["availability"], json!({ "available": 20, "held": 0, "sold": 0, "blocked": 0, "total": 20 }));

    // The seat prices follow the tiers, including a row's own tier.
    let seats = app.seat_map(event["id"].as_str().unwrap()).await;
    let price_of =
        |id: &str| seats["seats"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["price"].clone();
    assert_eq!(price_of("VIP-B-4"), 15000);
    assert_eq!(price_of("FLOOR-A-6"), 8000);
    assert_eq!(price_of("FLOOR-B-1"), 3000);
    app.stop().await;
}

#[tokio::test]
async fn an_event_with_an_unknown_layout_template_is_refused_naming_layout_id() {
    let app = spawn_app().await;
    let body = event_body("Nowhere", json!({ "layoutId": uuid::Uuid::new_v4() }));
    let error = expect_error(
        app.post("/admin/events", Some(&app.admin), &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["details"]["field"], "layoutId");
    let list: Value = app.get("/events", None).await.json().await.unwrap();
    assert_eq!(list["pagination"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn an_event_with_an_inline_layout_and_ticket_types_shows_counts_that_add_up() {
    let app = spawn_app().await;
    let created = app.create_event(2, 2, 5, 50, json!({ "perUserLimit": 10, "holdTtlSeconds": 120 })).await;
    let id = created["id"].as_str().unwrap();
    let event = app.event(id).await;
    assert_eq!(event["title"], "Test Concert");
    assert_eq!(event["status"], "on_sale");
    assert_eq!(event["seatCount"], 20);
    assert_eq!(event["generalCapacity"], 50);
    assert_eq!(event["perUserLimit"], 10);
    assert_eq!(event["holdTtlSeconds"], 120);
    assert_eq!(event["layoutId"], Value::Null);
    assert_eq!(event["tiers"], json!([{ "name": "T1", "price": 2000 }, { "name": "T2", "price": 1000 }]));
    assert_eq!(event["availability"], json!({ "available": 20, "held": 0, "sold": 0, "blocked": 0, "total": 20 }));
    let ticket_type = &event["ticketTypes"][0];
    assert_eq!(ticket_type["name"], "Standing");
    assert_eq!((ticket_type["capacity"].as_u64(), ticket_type["available"].as_u64()), (Some(50), Some(50)));

    let buyer = app.register("ann@example.com").await;
    app.hold_ok(&buyer, id, &json!({ "seatIds": ["S1-A-1", "S2-B-5"] })).await;
    app.hold_ok(&buyer, id, &json!({ "ticketTypeId": ticket_type["id"], "quantity": 4 })).await;

    let event = app.event(id).await;
    let a = &event["availability"];
    assert_eq!(*a, json!({ "available": 18, "held": 2, "sold": 0, "blocked": 0, "total": 20 }));
    let t = &event["ticketTypes"][0];
    assert_eq!((t["available"].as_u64(), t["held"].as_u64(), t["sold"].as_u64()), (Some(46), Some(4), Some(0)));
    assert!(event["version"].as_u64().unwrap() >= 2, "{event}");
    app.stop().await;
}

#[tokio::test]
async fn the_event_list_filters_by_status_and_search_and_paginates() {
    let app = spawn_app().await;
    for (i, title) in ["Spring Gala", "Summer Jam", "Autumn Strings", "Winter Choir"].iter().enumerate() {
        let date = rfc3339_from_now(Duration::days(10 + i as i64));
        app.create_event(1, 1, 4, 0, json!({ "title": title, "eventDate": date })).await;
    }
    let upcoming = json!({
        "title": "Future Fest", "artist": "Nobody Yet",
        "saleStart": rfc3339_from_now(Duration::days(1)), "eventDate": rfc3339_from_now(Duration::days(40)),
    });
    app.create_event(1, 1, 4, 0, upcoming).await;
    let cancelled = app.create_event(1, 1, 4, 0, json!({ "title": "Called Off", "venue": "Jam Cellar" })).await;
    let res = app
        .post(&format!("/admin/events/{}/cancel", cancelled["id"].as_str().unwrap()), Some(&app.admin), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let list = |query: &'static str| {
        let app = &app;
        async move {
            let res = app.get(&format!("/events{query}"), None).await;
            assert_eq!(res.status(), StatusCode::OK, "{query}");
            let body: Value = res.json().await.unwrap();
            let titles: Vec<String> =
                body["data"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect();
            (titles, body["pagination"].clone())
        }
    };

    let (all, pagination) = list("").await;
    assert_eq!(all.len(), 6);
    assert_eq!(pagination, json!({ "total": 6, "page": 1, "limit": 20, "totalPages": 1 }));

    let (titles, pagination) = list("?status=upcoming").await;
    assert_eq!(titles, ["Future Fest"]);
    assert_eq!(pagination["total"], 1);
    let (titles, _) = list("?status=cancelled").await;
    assert_eq!(titles, ["Called Off"]);
    let (titles, _) = list("?status=on_sale").await;
    assert_eq!(titles, ["Spring Gala", "Summer Jam", "Autumn Strings", "Winter Choir"]);

    // `q` matches title, artist or venue, case-insensitively.
    let (titles, _) = list("?q=jam").await;
    assert_eq!(titles.iter().map(String::as_str).collect::<Vec<_>>(), ["Summer Jam", "Called Off"]);
    let (titles, _) = list("?q=NOBODY").await;
    assert_eq!(titles, ["Future Fest"]);
    let (titles, pagination) = list("?q=no-such-thing").await;
    assert!(titles.is_empty());
    assert_eq!(pagination, json!({ "total": 0, "page": 1, "limit": 20, "totalPages": 0 }));
    let (titles, _) = list("?status=on_sale&q=summer").await;
    assert_eq!(titles, ["Summer Jam"]);

    // Pages of 4 over the 4 on-sale events, then of 4 over all six, ordered by event date.
    let (page1, pagination) = list("?limit=4&page=1").await;
    assert_eq!(pagination, json!({ "total": 6, "page": 1, "limit": 4, "totalPages": 2 }));
    assert_eq!(page1, ["Spring Gala", "Summer Jam", "Autumn Strings", "Winter Choir"]);
    let (page2, pagination) = list("?limit=4&page=2").await;
    assert_eq!(pagination, json!({ "total": 6, "page": 2, "limit": 4, "totalPages": 2 }));
    assert_eq!(page2.len(), 2);
    let mut seen: Vec<String> = page1.into_iter().chain(page2).collect();
    seen.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(seen, expected);
    let (page3, pagination) = list("?limit=4&page=3").await;
    assert!(page3.is_empty());
    assert_eq!(pagination["total"], 6);
    app.stop().await;
}

#[tokio::test]
async fn the_seat_map_lists_every_seat_with_its_status_and_a_version_that_moves() {
    let app = spawn_app().await;
    let event = app.create_event(2, 2, 3, 0, json!({})).await;
    let id = event["id"].as_str().unwrap();
    let map = app.seat_map(id).await;
    let seats = map["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 12);
    let first_version = map["version"].as_u64().expect("a numeric version");
    assert_eq!(
        seats[0],
        json!({ "id": "S1-A-1", "section": "S1", "row": "A", "number": 1, "price": 2000, "status": "available" })
    );
    assert_eq!(
        seats[11],
        json!({ "id": "S2-B-3", "section": "S2", "row": "B", "number": 3, "price": 1000, "status": "available" })
    );
    let mut ids: Vec<&str> = seats.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12, "seat ids are unique");

    let buyer = app.register("ann@example.com").await;
    app.hold_ok(&buyer, id, &json!({ "seatIds": ["S2-A-2"] })).await;
    let map = app.seat_map(id).await;
    assert!(map["version"].as_u64().unwrap() > first_version, "{map}");
    let held: Vec<&str> = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "held")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(held, ["S2-A-2"]);
    // The seat map and the event agree on the version.
    assert_eq!(app.event(id).await["version"], map["version"]);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_event_is_not_found_everywhere() {
    let app = spawn_app().await;
    let buyer = app.register("ann@example.com").await;
    let missing = uuid::Uuid::new_v4();
    expect_error(app.get(&format!("/events/{missing}"), None).await, StatusCode::NOT_FOUND, "event_not_found").await;
    expect_error(app.get(&format!("/events/{missing}/seats"), None).await, StatusCode::NOT_FOUND, "event_not_found")
        .await;
    let res = app.hold(&buyer, &missing.to_string(), &json!({ "seatIds": ["S1-A-1"] })).await;
    expect_error(res, StatusCode::NOT_FOUND, "event_not_found").await;
    app.stop().await;
}

#[tokio::test]
async fn the_seat_map_is_cached_per_version_with_an_etag_and_has_a_compact_form() {
    let app = spawn_app().await;
    let event = app.create_event(1, 2, 3, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let buyer = app.register("etag@example.com").await;
    let seats = format!("/events/{event}/seats");
    let get = |path: String, etag: Option<String>| {
        let app = &app;
        async move {
            let mut req = app.client.get(app.url(&path));
            if let Some(tag) = etag {
                req = req.header("If-None-Match", tag);
            }
            req.send().await.unwrap()
        }
    };

    let first = get(seats.clone(), None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    let full: Value = first.json().await.unwrap();
    assert_eq!(tag, format!("\"f{}\"", full["version"]));
    // Unchanged: 304 with the same tag and no body.
    let again = get(seats.clone(), Some(tag.clone())).await;
    assert_eq!((again.status(), again.headers()["etag"].to_str().unwrap()), (StatusCode::NOT_MODIFIED, tag.as_str()));
    assert!(again.bytes().await.unwrap().is_empty());

    // The compact form: one letter per seat, in the full form's order.
    app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-A-2", "S1-B-3"] })).await;
    let res = get(seats.clone(), Some(tag.clone())).await;
    assert_eq!(res.status(), StatusCode::OK, "a new version is not 304");
    let full: Value = res.json().await.unwrap();
    let compact: Value = get(format!("{seats}?view=status"), None).await.json().await.unwrap();
    assert_eq!(compact["version"], full["version"]);
    let letters: String = full["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().chars().next().unwrap())
        .collect();
    assert_eq!(compact["statuses"], json!(letters));
    assert_eq!(letters, "ahaaah");
    let ctag = format!("\"s{}\"", full["version"]);
    assert_eq!(get(format!("{seats}?view=status"), Some(ctag)).await.status(), StatusCode::NOT_MODIFIED);

    let res = get(format!("{seats}?view=tiny"), None).await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await["details"]["field"],
        "view"
    );
    app.stop().await;
}
