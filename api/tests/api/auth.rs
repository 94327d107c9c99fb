//! Registration, login, refresh and the current user.

use crate::support::{error_code, expect_error, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn a_buyer_registers_logs_in_refreshes_and_reads_itself() {
    let app = spawn_app().await;
    let res = app
        .post("/auth/register", None, &json!({"email": "Ann@Example.com", "password": "s3cret-pass", "name": "Ann"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let registered: Value = res.json().await.unwrap();
    assert_eq!(registered["user"]["email"], "ann@example.com");
    assert_eq!(registered["user"]["role"], "user");

    let token = app.login("ann@example.com", "s3cret-pass").await;
    let me: Value = app.get("/auth/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(me["id"], registered["user"]["id"]);

    let refresh = registered["refreshToken"].as_str().unwrap();
    let res = app.post("/auth/refresh", None, &json!({"refreshToken": refresh})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let pair: Value = res.json().await.unwrap();
    let me: Value = app.get("/auth/me", Some(pair["token"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(me["email"], "ann@example.com");

    // A refresh token works once.
    let (status, code, _) = error_code(app.post("/auth/refresh", None, &json!({"refreshToken": refresh})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthorized"));
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_password_and_a_duplicate_email_are_refused() {
    let app = spawn_app().await;
    app.register("bob@example.com").await;
    let (status, _, _) = error_code(
        app.post("/auth/login", None, &json!({"email": "bob@example.com", "password": "wrong-password"})).await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = app
        .post("/auth/register", None, &json!({"email": "BOB@example.com", "password": "another-pass", "name": "Bob"}))
        .await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "email_taken"));
    app.stop().await;
}

#[tokio::test]
async fn a_forged_or_missing_token_is_unauthorized() {
    let app = spawn_app().await;
    assert_eq!(app.get("/auth/me", None).await.status(), StatusCode::UNAUTHORIZED);
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    assert_eq!(app.get("/auth/me", Some(forged)).await.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// A correctly signed token for a user this store does not have (the store was reset, or
/// another deployment shares the secret) is refused: the hold it asks for would be
/// acknowledged by the actor and then refused by the store.
#[tokio::test]
async fn a_signed_token_for_a_user_the_store_does_not_have_is_refused() {
    let elsewhere = spawn_app().await;
    let stranger = elsewhere.register("stranger@example.com").await;
    elsewhere.stop().await;
    let app = spawn_app().await;
    let event = app.create_event(1, 1, 4, 0, json!({})).await["id"].as_str().unwrap().to_owned();
    let res = app.hold(&stranger, &event, &json!({ "seatIds": ["S1-A-1"] })).await;
    expect_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.seat_statuses(&event).await["S1-A-1"], "available");
    // A user of this store is served as before.
    let buyer = app.register("buyer@example.com").await;
    app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-A-1"] })).await;
    app.stop().await;
}

/// The value of `tiketi_http_user_lookups_total{outcome="..."}` (0 when not yet exported).
async fn user_lookups(app: &crate::support::TestApp, outcome: &str) -> u64 {
    let text = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    let series = format!("tiketi_http_user_lookups_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.trim().parse().unwrap())
}

/// An on-sale's opening: many requests of a user the node has not checked yet arrive while
/// the database is slow. They are served on trust after the short wait, the store is asked
/// once for all of them (not once per request, which would pile lookups onto a database
/// that is already behind), and the answer is kept for the user's next requests.
#[tokio::test]
async fn a_slow_user_check_is_one_lookup_for_all_the_users_requests_and_its_answer_is_kept() {
    let url = tiketi_testkit::fresh_database().await;
    let app = spawn_app_with({
        let url = url.clone();
        move |s| {
            s.store.kind = tiketi_api::settings::StoreKind::Postgres;
            s.store.database_url = url;
        }
    })
    .await;
    let event = app.create_event(1, 2, 10, 0, json!({ "perUserLimit": 20 })).await["id"].as_str().unwrap().to_owned();
    let buyer = app.register("early@example.com").await;
    // The admin's own check, so far.
    let before = user_lookups(&app, "found").await;

    // The users table is locked: the node's lookup of the buyer waits.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    db.batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let holds = (1..=8).map(|n| {
        let (app, buyer, event) = (&app, &buyer, &event);
        async move { app.hold(buyer, event, &json!({ "seatIds": [format!("S1-A-{n}")] })).await.status() }
    });
    let statuses = futures_util::future::join_all(holds).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "served on trust: {statuses:?}");
    assert_eq!(user_lookups(&app, "found").await, before, "the lookup is still waiting for the lock");

    db.batch_execute("COMMIT").await.unwrap();
    app.eventually("the lookup ends", || async { (user_lookups(&app, "found").await > before).then_some(()) }).await;
    app.hold_ok(&buyer, &event, &json!({ "seatIds": ["S1-B-1"] })).await;
    assert_eq!(user_lookups(&app, "found").await, before + 1, "one lookup for nine requests");
    assert_eq!((user_lookups(&app, "missing").await, user_lookups(&app, "failed").await), (0, 0));
    app.stop().await;
}
