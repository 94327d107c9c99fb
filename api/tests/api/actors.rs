//! `/admin/actors`: the live actors as an operator sees them, and steering them.

use crate::support::{expect_error, rfc3339_from_now, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn operators_see_each_live_actor_with_its_counts_holds_and_persistence() {
    let app = spawn_app().await;
    let event = app.create_event(1, 2, 10, 0, json!({ "perUserLimit": 0, "holdTtlSeconds": 240 })).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let buyer = app.register("inspected@example.com").await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-A-1", "S1-A-2"] })).await;
    app.hold_ok(&buyer, &id, &json!({ "seatIds": ["S1-B-1"] })).await;
    let refused = app.hold(&buyer, &id, &json!({ "seatIds": ["S1-A-1"] })).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    // Flushing answers once everything is committed.
    let res = app.post(&format!("/admin/actors/{id}/flush"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let flushed: Value = res.json().await.unwrap();
    assert_eq!(flushed["committedSeq"], flushed["seq"], "{flushed}");
    assert_eq!(flushed["persistenceLagSeqs"], 0);

    let res = app.get("/admin/actors", Some(&app.admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = res.json().await.unwrap();
    let actors = list["data"].as_array().unwrap();
    assert_eq!(actors.len(), 1, "{list}");
    let actor = &actors[0];
    assert_eq!(actor["eventId"], id.as_str());
    assert_eq!(actor["status"], "on_sale");
    assert_eq!(actor["seats"], json!({ "available": 17, "held": 3, "sold": 0, "blocked": 0, "total": 20 }));
    assert_eq!(actor["holds"], 2);
    assert_eq!(actor["queue"], json!({ "waiting": 0, "active": 0, "admitted": 0 }));
    // The sale opening on activation, then the two holds (the refusal changes nothing).
    assert_eq!(actor["seq"], 3);
    assert_eq!(actor["committedSeq"], 3);
    assert_eq!(actor["pinned"], "on_sale");
    assert_eq!(actor["subscribers"], 0);
    assert!(actor["messages"].as_u64().unwrap() >= 4, "{actor}");
    for field in ["inFlight", "persistenceLagMs", "uptimeSeconds", "idleSeconds"] {
        assert!(actor[field].is_u64(), "{field}: {actor}");
    }

    let res = app.get(&format!("/admin/actors/{id}"), Some(&app.admin)).await;
    let detail: Value = res.json().await.unwrap();
    assert_eq!(detail["holdExpiries"], json!({ "1m": 0, "2m": 0, "5m": 2, "10m": 0, "later": 0 }), "{detail}");
    let errors = detail["recentErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{detail}");
    assert!(errors[0]["message"].as_str().unwrap().contains("S1-A-1"), "{detail}");
    assert!(detail["nextDeadline"].is_i64(), "the first hold's expiry: {detail}");
    assert_eq!((detail["overflow"].as_u64(), detail["parkedReplies"].as_u64()), (Some(0), Some(0)));

    // An event on sale stays in memory.
    let res = app.post(&format!("/admin/actors/{id}/passivate"), Some(&app.admin), &json!({})).await;
    let error = expect_error(res, StatusCode::CONFLICT, "actor_pinned").await;
    assert_eq!(error["details"]["reason"], "on_sale");
}

#[tokio::test]
async fn a_passivated_actor_comes_back_on_the_next_request_and_only_admins_steer() {
    let app = spawn_app().await;
    let later = json!({ "saleStart": rfc3339_from_now(time::Duration::hours(1)) });
    let event = app.create_event(1, 1, 5, 0, later).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let buyer = app.register("not-an-operator@example.com").await;
    for (path, post) in [("/admin/actors".to_owned(), false), (format!("/admin/actors/{id}/passivate"), true)] {
        let res =
            if post { app.post(&path, Some(&buyer), &json!({})).await } else { app.get(&path, Some(&buyer)).await };
        expect_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let unknown = uuid::Uuid::new_v4();
    let res = app.get(&format!("/admin/actors/{unknown}"), Some(&app.admin)).await;
    expect_error(res, StatusCode::NOT_FOUND, "actor_not_found").await;

    let blocked =
        app.post(&format!("/admin/events/{id}/seats/block"), Some(&app.admin), &json!({ "seatIds": ["S1-A-3"] })).await;
    assert_eq!(blocked.status(), StatusCode::OK);
    let before = app.seat_map(&id).await;
    let res = app.post(&format!("/admin/actors/{id}/passivate"), Some(&app.admin), &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "passivated": true }));
    let list: Value = app.get("/admin/actors", Some(&app.admin)).await.json().await.unwrap();
    assert_eq!(list["data"], json!([]), "no longer live");

    // The next request brings it back from the store, the same.
    assert_eq!(app.seat_map(&id).await, before);
    let list: Value = app.get("/admin/actors", Some(&app.admin)).await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}
