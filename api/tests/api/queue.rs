//! A queue-gated on-sale end to end: a thousand buyers join the pre-queue, the order is
//! drawn at opening from the published seed, buyers are admitted in that order at the
//! configured rate, and only an admitted buyer holding their own token can reserve.

use crate::support::{TestApp, expect_error, rfc3339_from_now, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

const BUYERS: usize = 1_000;
const RATE: u64 = 250;

/// Registers a buyer: (access token, user id).
async fn buyer(app: &TestApp, email: &str) -> (String, Uuid) {
    let body = json!({ "email": email, "password": "correct horse battery", "name": "Buyer" });
    let res = app.post("/auth/register", None, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    (body["token"].as_str().unwrap().to_owned(), body["user"]["id"].as_str().unwrap().parse().unwrap())
}

async fn queue_status(app: &TestApp, token: &str, event: &str) -> Value {
    let res = app.get(&format!("/events/{event}/queue/status"), Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn admin_queue(app: &TestApp, event: &str) -> Value {
    let res = app.get(&format!("/admin/events/{event}/queue"), Some(&app.admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// A reservation attempt with an optional admission token.
async fn reserve(app: &TestApp, token: &str, event: &str, admission: Option<&str>, seat: &str) -> reqwest::Response {
    let mut req = app.client.post(app.url(&format!("/events/{event}/reservations"))).bearer_auth(token).json(&json!({
        "seatIds": [seat]
    }));
    if let Some(admission) = admission {
        req = req.header("X-Admission-Token", admission);
    }
    req.send().await.unwrap()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_buyers_are_admitted_in_the_drawn_order_at_the_rate_and_only_they_can_reserve() {
    let app = Arc::new(spawn_app().await);
    let queue =
        json!({ "enabled": true, "ratePerSecond": RATE, "admissionTtlSeconds": 600, "heartbeatTtlSeconds": 600 });
    let extra = json!({ "perUserLimit": 0, "saleStart": rfc3339_from_now(time::Duration::hours(1)), "queue": queue });
    let event = app.create_event(4, 10, 50, 0, extra).await;
    let id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(event["queue"]["enabled"], true);

    // A thousand buyers register and join before sale start: the pre-queue.
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..BUYERS {
        let (app, id) = (app.clone(), id.clone());
        joins.spawn(async move {
            let (token, user) = buyer(&app, &format!("queued{i}@example.com")).await;
            let res = app.post(&format!("/events/{id}/queue/join"), Some(&token), &json!({})).await;
            assert_eq!(res.status(), StatusCode::OK);
            let joined: Value = res.json().await.unwrap();
            (token, user, joined)
        });
    }
    let buyers: Vec<(String, Uuid, Value)> = joins.join_all().await;
    let seed_hash = buyers[0].2["seedHash"].as_str().unwrap().to_owned();
    for (_, _, joined) in &buyers {
        assert_eq!(joined["status"], "waiting", "{joined}");
        assert_eq!(joined["position"], Value::Null, "no position before the draw: {joined}");
        assert_eq!(joined["seed"], Value::Null, "the seed stays secret until opening");
        assert_eq!(joined["seedHash"], seed_hash.as_str());
    }
    let view = admin_queue(&app, &id).await;
    assert_eq!((view["length"].as_u64(), view["preQueue"].as_u64()), (Some(1000), Some(1000)), "{view}");

    // Sale opens now.
    let opened_at = Instant::now();
    let res = app
        .put(
            &format!("/admin/events/{id}"),
            Some(&app.admin),
            &json!({ "saleStart": rfc3339_from_now(time::Duration::seconds(-1)) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // The seed is revealed and matches the published hash; the draw is reproducible.
    let (token0, _, _) = &buyers[0];
    let seed = app
        .eventually("the queue opens", || async {
            queue_status(&app, token0, &id).await["seed"].as_str().map(str::to_owned)
        })
        .await;
    let seed = hex_decode(&seed);
    assert_eq!(hex(&Sha256::digest(&seed)), seed_hash, "the revealed seed matches the published hash");
    let mut order: Vec<usize> = (0..BUYERS).collect();
    let key = |i: usize| {
        let mut h = Sha256::new();
        h.update(&seed);
        h.update(buyers[i].1.as_bytes());
        h.finalize()
    };
    order.sort_by_key(|&i| key(i));

    // The last in line is waiting and cannot reserve, with or without someone else's token.
    let last = &buyers[order[BUYERS - 1]];
    let before = view_admitted(&app, &id).await;
    let standing = queue_status(&app, &last.0, &id).await;
    let after = view_admitted(&app, &id).await;
    assert_eq!(standing["status"], "waiting", "{standing}");
    // Last of a thousand: behind everyone not yet admitted.
    let position = standing["position"].as_u64().unwrap() as usize;
    assert!((BUYERS - after..=BUYERS - before).contains(&position), "{standing} with {before}-{after} admitted");
    expect_error(reserve(&app, &last.0, &id, None, "S1-A-1").await, StatusCode::FORBIDDEN, "admission_required").await;

    // Sweep from the back of the line to the front while admission runs: admissions follow
    // the draw, so once a buyer is seen admitted, everyone ahead of them is too; waiting
    // positions shrink toward the front.
    let mut seen_admitted = false;
    let mut last_position = u64::MAX;
    for &i in order.iter().rev() {
        let standing = queue_status(&app, &buyers[i].0, &id).await;
        match standing["status"].as_str().unwrap() {
            "admitted" => {
                seen_admitted = true;
                assert!(standing["admissionToken"].is_string(), "{standing}");
            }
            "waiting" => {
                assert!(!seen_admitted, "buyer {i} waits behind an admitted buyer who is after them in the draw");
                let position = standing["position"].as_u64().unwrap();
                assert!(
                    position < last_position,
                    "positions shrink toward the front: {position} after {last_position}"
                );
                last_position = position;
            }
            other => panic!("unexpected status {other}: {standing}"),
        }
        // The rate bound: never more than the rate allows since opening (plus one second's burst).
        let admitted = view_admitted(&app, &id).await as u64;
        let allowed = RATE * (opened_at.elapsed().as_millis() as u64) / 1000 + RATE;
        assert!(admitted <= allowed, "{admitted} admitted within {:?} at {RATE}/s", opened_at.elapsed());
    }

    // Everyone gets in.
    app.eventually("all buyers admitted", || async {
        let view = admin_queue(&app, &id).await;
        (view["active"] == BUYERS as u64 && view["length"] == 0).then_some(())
    })
    .await;

    // Only an admitted buyer with their own token for this event can reserve.
    let (first, second) = (&buyers[order[0]], &buyers[order[1]]);
    let first_token = queue_status(&app, &first.0, &id).await["admissionToken"].as_str().unwrap().to_owned();
    let second_token = queue_status(&app, &second.0, &id).await["admissionToken"].as_str().unwrap().to_owned();
    expect_error(
        reserve(&app, &first.0, &id, Some(&second_token), "S1-A-1").await,
        StatusCode::FORBIDDEN,
        "admission_required",
    )
    .await;
    expect_error(
        reserve(&app, &first.0, &id, Some("forged.token.value"), "S1-A-1").await,
        StatusCode::FORBIDDEN,
        "admission_required",
    )
    .await;
    let other = app.create_event(1, 1, 5, 0, json!({ "queue": { "enabled": true } })).await;
    let other = other["id"].as_str().unwrap();
    expect_error(
        reserve(&app, &first.0, other, Some(&first_token), "S1-A-1").await,
        StatusCode::FORBIDDEN,
        "admission_required",
    )
    .await;
    let outsider = buyer(&app, "never-queued@example.com").await;
    expect_error(reserve(&app, &outsider.0, &id, None, "S1-A-1").await, StatusCode::FORBIDDEN, "admission_required")
        .await;

    let res = reserve(&app, &first.0, &id, Some(&first_token), "S1-A-1").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Reserving ends the admission: the slot frees, and the token no longer opens the door.
    assert_eq!(queue_status(&app, &first.0, &id).await["status"], "not_queued");
    expect_error(
        reserve(&app, &first.0, &id, Some(&first_token), "S1-A-2").await,
        StatusCode::FORBIDDEN,
        "admission_required",
    )
    .await;
    assert_eq!(admin_queue(&app, &id).await["active"], BUYERS as u64 - 1);
}

async fn view_admitted(app: &TestApp, event: &str) -> usize {
    admin_queue(app, event).await["admitted"].as_u64().unwrap() as usize
}

#[tokio::test]
async fn admins_tune_and_clear_a_queue_live_and_bad_settings_are_refused() {
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 10, 0, json!({})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let (token, _) = buyer(&app, "early@example.com").await;
    // No queue yet: joining is refused and reserving needs nothing.
    let res = app.post(&format!("/events/{id}/queue/join"), Some(&token), &json!({})).await;
    expect_error(res, StatusCode::CONFLICT, "queue_disabled").await;

    let path = format!("/admin/events/{id}/queue");
    let bad = app.put(&path, Some(&app.admin), &json!({ "admissionTtlSeconds": 1 })).await;
    let error = expect_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["details"]["field"], "admissionTtlSeconds");
    let bad = app.put(&path, Some(&app.admin), &json!({ "rate": 5 })).await;
    let error = expect_error(bad, StatusCode::BAD_REQUEST, "bad_request").await;
    assert!(error["message"].as_str().unwrap().contains("rate"), "{error}");
    let forbidden = app.put(&path, Some(&token), &json!({ "enabled": true })).await;
    expect_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;

    // Enabled with a cap of one: the first joiner is in, the second waits.
    let res = app.put(&path, Some(&app.admin), &json!({ "enabled": true, "maxActive": 1, "ratePerSecond": 0 })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tuned: Value = res.json().await.unwrap();
    assert_eq!(tuned["settings"]["maxActive"], 1);
    let joined: Value =
        app.post(&format!("/events/{id}/queue/join"), Some(&token), &json!({})).await.json().await.unwrap();
    assert_eq!(joined["status"], "admitted", "{joined}");
    let (late, _) = buyer(&app, "late@example.com").await;
    let waiting: Value =
        app.post(&format!("/events/{id}/queue/join"), Some(&late), &json!({})).await.json().await.unwrap();
    assert_eq!((waiting["status"].as_str(), waiting["position"].as_u64()), (Some("waiting"), Some(1)), "{waiting}");

    // Raising the cap lets the second in at the next tick.
    app.put(&path, Some(&app.admin), &json!({ "maxActive": 2 })).await;
    app.eventually("the second buyer is admitted", || async {
        (queue_status(&app, &late, &id).await["status"] == "admitted").then_some(())
    })
    .await;

    // Leaving frees a slot; clearing empties the queue.
    let res = app.delete(&format!("/events/{id}/queue"), Some(&late)).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.delete(&path, Some(&app.admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cleared: Value = res.json().await.unwrap();
    assert_eq!((cleared["length"].as_u64(), cleared["active"].as_u64()), (Some(0), Some(0)), "{cleared}");
    assert_eq!(queue_status(&app, &token, &id).await["status"], "not_queued");
}
