//! `GET /metrics`: after a scripted scenario the exposition parses as Prometheus text and
//! its counters and gauges have exactly the expected values; the Grafana dashboard only
//! queries what the node exports.

mod exposition;

use crate::support::{TestApp, spawn_app};
use exposition::Exposition;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const RESERVATIONS: &str = "/api/v1/events/{eventId}/reservations";

#[tokio::test]
async fn after_a_scripted_on_sale_the_metrics_have_exactly_the_expected_values() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 10, 0, json!({ "holdTtlSeconds": 300, "perUserLimit": 0 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let (a, b, c, d) = (
        app.register("a@example.com").await,
        app.register("b@example.com").await,
        app.register("c@example.com").await,
        app.register("d@example.com").await,
    );
    let two = json!({ "bestAvailable": { "quantity": 2 } });

    // A and C hold for 5 minutes; B's hold (after the TTL drops to 1 s) lapses.
    let held_a = app.hold_ok(&a, &id, &two).await;
    let held_c = app.hold_ok(&c, &id, &two).await;
    let res = app.put(&format!("/admin/events/{id}"), Some(&app.admin), &json!({ "holdTtlSeconds": 1 })).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let held_b = app.hold_ok(&b, &id, &two).await;
    // A cancels (durable before the answer).
    let res = app.post(&format!("/reservations/{}/cancel", held_a["id"].as_str().unwrap()), Some(&a), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // D wants C's seats: a conflict.
    let res = app.hold(&d, &id, &json!({ "seatIds": held_c["seatIds"] })).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    // A reservation that does not exist, and a path no route matches.
    let res = app.get(&format!("/reservations/{}", uuid::Uuid::new_v4()), Some(&d)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.client.get(format!("{}/no/such/{id}", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // An admin takes one seat nobody holds off sale.
    let taken: BTreeSet<&str> =
        [&held_b, &held_c].iter().flat_map(|r| r["seatIds"].as_array().unwrap()).filter_map(Value::as_str).collect();
    let statuses = app.seat_statuses(&id).await;
    let free = statuses.keys().find(|s| !taken.contains(s.as_str())).unwrap().clone();
    let res =
        app.post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": [free] })).await;
    assert_eq!(res.status(), StatusCode::OK);

    // C pays (the built-in mock provider): prepared, in progress, done.
    let held_c_id = held_c["id"].as_str().unwrap();
    let order: Value =
        app.post("/payments/prepare", Some(&c), &json!({ "reservationId": held_c_id })).await.json().await.unwrap();
    let confirm = json!({ "orderId": order["orderId"], "paymentKey": "pk-metrics", "amount": order["amount"] });
    let res = app.post("/payments/confirm", Some(&c), &confirm).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let paid = order["amount"].as_f64().unwrap();
    assert!(paid > 0.0);

    // B's hold lapses on the actor's timer; the journal then commits it.
    let outcome = |o: &str| vec![("outcome", o.to_owned())];
    let m = app
        .eventually("B's hold to expire and everything to be committed", || async {
            let m = scrape(&app).await;
            let done = m.get("tiketi_journal_reservations_total", &outcome("expired")) == Some(1.0)
                && m.get("tiketi_journal_backlog", &[]) == Some(0.0);
            done.then_some(m)
        })
        .await;

    // Reservations by outcome and seats sold, as committed.
    assert_eq!(m.value("tiketi_journal_reservations_total", &outcome("created")), 3.0);
    assert_eq!(m.value("tiketi_journal_reservations_total", &outcome("cancelled")), 1.0);
    assert_eq!(m.value("tiketi_journal_reservations_total", &outcome("expired")), 1.0);
    assert_eq!(m.value("tiketi_journal_reservations_total", &outcome("confirmed")), 1.0);
    assert_eq!(m.value("tiketi_journal_seats_sold_total", &[]), 2.0);
    // Payments by status reached, and money, as committed.
    let status = |s: &str| vec![("status", s.to_owned())];
    for (s, n) in [("ready", 1.0), ("in_progress", 1.0), ("done", 1.0), ("failed", 0.0), ("cancelled", 0.0)] {
        assert_eq!(m.value("tiketi_journal_payments_total", &status(s)), n, "payments {s}");
    }
    assert_eq!(m.value("tiketi_journal_revenue_total", &[]), paid);
    assert_eq!(m.value("tiketi_journal_refunded_total", &[]), 0.0);

    // HTTP by route template and status; never a raw path.
    let req = |method: &str, route: &str, status: u16| {
        vec![("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())]
    };
    assert_eq!(m.value("tiketi_http_requests_total", &req("POST", RESERVATIONS, 201)), 3.0);
    assert_eq!(m.value("tiketi_http_requests_total", &req("POST", RESERVATIONS, 409)), 1.0);
    assert_eq!(m.sum("tiketi_http_requests_total", &[("route", RESERVATIONS)]), 4.0);
    assert_eq!(m.value("tiketi_http_requests_total", &req("POST", "/api/v1/reservations/{id}/cancel", 200)), 1.0);
    assert_eq!(m.value("tiketi_http_requests_total", &req("GET", "/api/v1/reservations/{id}", 404)), 1.0);
    assert_eq!(m.value("tiketi_http_requests_total", &req("GET", "unmatched", 404)), 1.0);
    assert_eq!(m.value("tiketi_http_requests_total", &req("PUT", "/api/v1/admin/events/{eventId}", 200)), 1.0);
    let route = vec![("method", "POST".to_owned()), ("route", RESERVATIONS.to_owned())];
    assert_eq!(m.value("tiketi_http_request_duration_seconds_count", &route), 4.0);
    let inf = [route.clone(), vec![("le", "+Inf".to_owned())]].concat();
    assert_eq!(m.value("tiketi_http_request_duration_seconds_bucket", &inf), 4.0);
    for sample in m.samples.iter().filter(|s| s.name.starts_with("tiketi_http_")) {
        let route = sample.labels.get("route").map_or("", String::as_str);
        assert!(!route.contains(&id), "a raw path in a route label: {sample:?}");
    }
    assert_eq!(m.value("tiketi_http_shed_total", &[("reason", "busy".to_owned())]), 0.0);
    assert_eq!(m.value("tiketi_http_shed_total", &[("reason", "overloaded".to_owned())]), 0.0);

    // The live actor, read at scrape time: 10 seats, C bought 2, 1 blocked.
    assert_eq!(m.value("tiketi_live_actors", &[]), 1.0);
    assert_eq!(m.value("tiketi_live_actors_skipped", &[]), 0.0);
    let seats =
        |status: &str| m.value("tiketi_event_seats", &[("event_id", id.clone()), ("status", status.to_owned())]);
    assert_eq!((seats("available"), seats("held"), seats("sold"), seats("blocked")), (7.0, 0.0, 2.0, 1.0));
    let this = vec![("event_id", id.clone())];
    assert_eq!(m.value("tiketi_event_queue_waiting", &this), 0.0);
    assert_eq!(m.value("tiketi_event_queue_active", &this), 0.0);
    assert_eq!(m.value("tiketi_event_in_flight", &this), 0.0);
    assert_eq!(m.value("tiketi_event_owed_refunds", &this), 0.0);
    assert_eq!(m.value("tiketi_event_late_capture_watches", &this), 0.0);
    assert_eq!(m.value("tiketi_journal_captures_owed_total", &[]), 0.0);

    // The journal: batches committed, nothing waiting or failing, every entry's lag seen.
    assert!(m.value("tiketi_journal_batch_size_count", &[]) > 0.0);
    assert_eq!(m.value("tiketi_journal_backlog", &[]), 0.0);
    assert_eq!(m.value("tiketi_journal_append_failures_total", &[]), 0.0);
    assert_eq!(m.value("tiketi_journal_rejected_total", &[]), 0.0);
    assert_eq!(m.value("tiketi_journal_lag_seconds_count", &[]), m.value("tiketi_journal_batch_size_sum", &[]));
    assert_eq!(m.value("tiketi_journal_commit_seconds_count", &[]), m.value("tiketi_journal_batch_size_count", &[]));

    // No WebSocket ever connected.
    assert_eq!(m.value("tiketi_ws_connections", &[]), 0.0);
    assert_eq!(m.sum("tiketi_ws_dropped_total", &[]), 0.0);
    app.stop().await;
}

#[tokio::test]
async fn an_event_whose_actor_stopped_leaves_the_live_actor_gauges() {
    let app = spawn_app().await;
    let first = app.create_event(1, 1, 4, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let second = app.create_event(1, 1, 4, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    app.seat_map(&first).await;
    app.seat_map(&second).await;
    let m = scrape(&app).await;
    assert_eq!(m.value("tiketi_live_actors", &[]), 2.0);
    assert_eq!(m.value("tiketi_event_seats", &[("event_id", second.clone()), ("status", "available".into())]), 4.0);

    let res = app.delete(&format!("/admin/events/{second}"), Some(&app.admin)).await;
    assert!(res.status().is_success(), "{}", res.status());
    let m = app
        .eventually("the deleted event's actor to go", || async {
            let m = scrape(&app).await;
            (m.value("tiketi_live_actors", &[]) == 1.0).then_some(m)
        })
        .await;
    assert_eq!(m.sum("tiketi_event_seats", &[("event_id", second.as_str())]), 0.0);
    assert!(!m.samples.iter().any(|s| s.labels.get("event_id") == Some(&second)), "no series for {second}");
    assert_eq!(m.sum("tiketi_event_seats", &[("event_id", first.as_str())]), 4.0);
    assert_eq!(m.value("tiketi_actors_activations_total", &[]), 2.0);
    assert_eq!(m.value("tiketi_actors_passivations_total", &[]), 0.0);

    // A passivation is counted, and scraping does not keep an actor awake: it is inspection,
    // not use. (An event on sale is never passivated; this one is not on sale yet.)
    let later = json!({ "saleStart": crate::support::rfc3339_from_now(time::Duration::hours(1)) });
    let later = app.create_event(1, 1, 4, 0, later).await["id"].as_str().unwrap().to_owned();
    app.seat_map(&later).await;
    let res = app.post(&format!("/admin/actors/{later}/passivate"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let m = scrape(&app).await;
    assert_eq!(m.value("tiketi_actors_activations_total", &[]), 3.0);
    assert_eq!(m.value("tiketi_actors_passivations_total", &[]), 1.0);
    assert_eq!(m.value("tiketi_live_actors", &[]), 1.0);
    app.stop().await;
}

#[tokio::test]
async fn the_grafana_dashboard_queries_only_metrics_and_labels_the_node_exports() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let buyer = app.register("dash@example.com").await;
    app.hold_ok(&buyer, &event, &json!({ "bestAvailable": { "quantity": 1 } })).await;
    app.eventually("the hold to be committed", || async {
        let m = scrape(&app).await;
        (m.get("tiketi_journal_backlog", &[]) == Some(0.0)).then_some(())
    })
    .await;
    let m = scrape(&app).await;

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/grafana/tiketi-onsale.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"));
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 8, "{queries:?}");
    let mut used = BTreeSet::new();
    for query in &queries {
        let selectors = selectors(query);
        assert!(!selectors.is_empty(), "no tiketi metric in {query}");
        let mut labels_here = BTreeSet::new();
        for (name, keys) in &selectors {
            let known = m.labels_of(name);
            assert!(known.is_some(), "{query}: {name} is not exported");
            let known = known.unwrap();
            for key in keys {
                assert!(known.contains(key), "{query}: {name} has no label {key} (has {known:?})");
            }
            labels_here.extend(known);
            used.insert(name.clone());
        }
        for key in grouping_labels(query) {
            assert!(labels_here.contains(&key), "{query}: grouped by {key}, which none of its metrics has");
        }
    }
    for wanted in [
        "tiketi_journal_reservations_total",
        "tiketi_journal_seats_sold_total",
        "tiketi_event_queue_waiting",
        "tiketi_http_request_duration_seconds_bucket",
        "tiketi_http_shed_total",
        "tiketi_journal_lag_seconds_bucket",
        "tiketi_journal_backlog",
        "tiketi_ws_connections",
    ] {
        assert!(used.contains(wanted), "the dashboard does not show {wanted}");
    }
    app.stop().await;
}

/// Every PromQL string in the dashboard: targets' `expr` and query variables.
fn collect_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => collect_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// Each `tiketi_*` metric name in a query with the label names its matcher uses.
fn selectors(query: &str) -> Vec<(String, Vec<String>)> {
    let bytes = query.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b'$')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let name = &query[start..i];
        if !name.starts_with("tiketi_") {
            continue;
        }
        let mut keys = Vec::new();
        if bytes.get(i) == Some(&b'{') {
            let end = i + query[i..].find('}').expect("a closed matcher");
            for matcher in query[i + 1..end].split(',').filter(|m| !m.trim().is_empty()) {
                let key = matcher.split(['=', '!']).next().unwrap().trim();
                keys.push(key.to_owned());
            }
            i = end + 1;
        }
        found.push((name.to_owned(), keys));
    }
    found
}

/// The labels in every `by (...)` clause of a query.
fn grouping_labels(query: &str) -> Vec<String> {
    query
        .match_indices("by (")
        .flat_map(|(at, _)| {
            let rest = &query[at + 4..];
            rest[..rest.find(')').unwrap()].split(',').map(|l| l.trim().to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

async fn scrape(app: &TestApp) -> Exposition {
    let res = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    Exposition::parse(&res.text().await.unwrap())
}
