//! Registration, login, refresh and the current user.

use crate::support::{error_code, spawn_app};
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
