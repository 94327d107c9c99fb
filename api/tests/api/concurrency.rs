//! An on-sale burst: many buyers race for few seats over HTTP. No seat is ever held twice
//! and the counts always add up.

use crate::support::spawn_app;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const BUYERS: usize = 500;
const SEATS: usize = 100;

/// What one buyer's task saw.
#[derive(Default)]
struct Outcome {
    /// The reservation it got, if any.
    reservation: Option<Value>,
    /// Statuses other than 201 and 409 (there should be none).
    unexpected: Vec<(StatusCode, String)>,
    /// 409s received before giving up or succeeding.
    conflicts: usize,
}

/// A random number below `n` (uuid v4 is 122 random bits from the OS).
fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_buyers_racing_for_a_hundred_seats_hold_each_seat_exactly_once() {
    let app = Arc::new(spawn_app().await);
    // 1 section x 2 rows x 50 seats, no per-user limit.
    let event = app.create_event(1, 2, 50, 0, json!({ "perUserLimit": 0 })).await;
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["availability"]["total"], SEATS);

    let mut registrations = tokio::task::JoinSet::new();
    for i in 0..BUYERS {
        let app = app.clone();
        registrations.spawn(async move { app.register(&format!("buyer{i}@example.com")).await });
    }
    let tokens: Vec<String> = registrations.join_all().await;
    assert_eq!(tokens.len(), BUYERS);

    // Everyone waits for the gun, then races.
    let start = Arc::new(tokio::sync::Barrier::new(BUYERS));
    let mut racers = tokio::task::JoinSet::new();
    for token in tokens {
        let (app, event_id, start) = (app.clone(), event_id.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            let mut outcome = Outcome::default();
            loop {
                let res = app.get(&format!("/events/{event_id}/seats"), None).await;
                if res.status() != StatusCode::OK {
                    outcome.unexpected.push((res.status(), res.text().await.unwrap_or_default()));
                    return outcome;
                }
                let map: Value = res.json().await.unwrap();
                let available: Vec<String> = map["seats"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["status"] == "available")
                    .map(|s| s["id"].as_str().unwrap().to_owned())
                    .collect();
                if available.is_empty() {
                    return outcome;
                }
                // One or two random seats (two only while two are left): all or nothing.
                let wanted = (1 + random_below(2)).min(available.len());
                let mut pick = BTreeSet::new();
                while pick.len() < wanted {
                    pick.insert(available[random_below(available.len())].clone());
                }
                let res = app.hold(&token, &event_id, &json!({ "seatIds": pick })).await;
                match res.status() {
                    StatusCode::CREATED => {
                        outcome.reservation = Some(res.json().await.unwrap());
                        return outcome;
                    }
                    StatusCode::CONFLICT => {
                        let body: Value = res.json().await.unwrap();
                        assert_eq!(body["error"]["code"], "seats_unavailable", "{body}");
                        outcome.conflicts += 1;
                    }
                    other => {
                        outcome.unexpected.push((other, res.text().await.unwrap_or_default()));
                        return outcome;
                    }
                }
            }
        });
    }
    let outcomes: Vec<Outcome> = racers.join_all().await;

    let unexpected: Vec<&(StatusCode, String)> = outcomes.iter().flat_map(|o| &o.unexpected).collect();
    assert!(unexpected.is_empty(), "only 201 and 409 may be answered: {unexpected:?}");
    assert!(outcomes.iter().map(|o| o.conflicts).sum::<usize>() > 0, "500 buyers for 100 seats must collide");

    // Every seat appears in exactly one successful reservation.
    let reservations: Vec<&Value> = outcomes.iter().filter_map(|o| o.reservation.as_ref()).collect();
    let mut holder: BTreeMap<String, String> = BTreeMap::new();
    for r in &reservations {
        assert_eq!(r["status"], "held");
        let id = r["id"].as_str().unwrap();
        for seat in r["seatIds"].as_array().unwrap() {
            let seat = seat.as_str().unwrap().to_owned();
            if let Some(other) = holder.insert(seat.clone(), id.to_owned()) {
                panic!("seat {seat} held by both {other} and {id}");
            }
        }
    }
    assert_eq!(holder.len(), SEATS, "every seat is held by some reservation");
    let ids: BTreeSet<&str> = reservations.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), reservations.len(), "reservation ids are unique");
    let numbers: BTreeSet<&str> = reservations.iter().map(|r| r["number"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), reservations.len(), "reservation numbers are unique");

    // The seat map and the counts agree with the reservations.
    let statuses = app.seat_statuses(&event_id).await;
    assert_eq!(statuses.len(), SEATS);
    assert!(statuses.values().all(|s| s == "held"), "{statuses:?}");
    assert_eq!(statuses.keys().cloned().collect::<BTreeSet<_>>(), holder.keys().cloned().collect::<BTreeSet<_>>());
    let event = app.event(&event_id).await;
    assert_eq!(
        event["availability"],
        json!({ "available": 0, "held": SEATS, "sold": 0, "blocked": 0, "total": SEATS })
    );
    assert_eq!(event["status"], "sold_out");

    // The store catches up with exactly these reservations.
    let held_in_store = app
        .eventually("every reservation in the store", || async {
            let mut found = 0;
            for r in &reservations {
                let res = app.get(&format!("/reservations/{}", r["id"].as_str().unwrap()), Some(&app.admin)).await;
                if res.status() != StatusCode::OK {
                    return None;
                }
                let stored: Value = res.json().await.unwrap();
                assert_eq!((&stored["seatIds"], &stored["status"]), (&r["seatIds"], &r["status"]));
                found += 1;
            }
            Some(found)
        })
        .await;
    assert_eq!(held_in_store, reservations.len());
}
