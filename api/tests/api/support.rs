//! The `spawn_app` harness: the real [`Application`] on port 0, driven over HTTP.

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tiketi_api::{Application, Settings};

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A running application and a client pointed at it.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub admin: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts the application with test settings, adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::for_tests();
    settings.auth.admin_email = ADMIN_EMAIL.into();
    settings.auth.admin_password = ADMIN_PASSWORD.into();
    settings.auth.jwt_secret = "a-test-secret-that-is-at-least-32-bytes-long".into();
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut test = TestApp { base, client, admin: String::new(), shutdown: Some(tx), task: Some(task) };
    test.admin = test.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    test
}

/// Starts the application with test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.put(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    /// A POST carrying an `Idempotency-Key`.
    pub async fn post_with_key(&self, path: &str, token: &str, key: &str, body: &Value) -> Response {
        let req = self.client.post(self.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(body);
        req.send().await.expect("request sent")
    }

    /// A POST with a raw body sent as `application/json`, well-formed or not.
    pub async fn post_raw(&self, path: &str, token: &str, body: impl Into<reqwest::Body>) -> Response {
        let req = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        req.send().await.expect("request sent")
    }

    /// `POST /events/{event}/reservations` as `token`.
    pub async fn hold(&self, token: &str, event: &str, body: &Value) -> Response {
        self.post(&format!("/events/{event}/reservations"), Some(token), body).await
    }

    /// Holds `body` and insists on a 201, returning the reservation.
    pub async fn hold_ok(&self, token: &str, event: &str, body: &Value) -> Value {
        let res = self.hold(token, event, body).await;
        let status = res.status();
        let reservation: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "hold {body}: {reservation}");
        reservation
    }

    /// `GET /events/{event}` (public).
    pub async fn event(&self, event: &str) -> Value {
        let res = self.get(&format!("/events/{event}"), None).await;
        assert_eq!(res.status(), StatusCode::OK, "GET /events/{event}");
        res.json().await.unwrap()
    }

    /// The event's `availability` object.
    pub async fn availability(&self, event: &str) -> Value {
        self.event(event).await["availability"].clone()
    }

    /// `GET /events/{event}/seats`.
    pub async fn seat_map(&self, event: &str) -> Value {
        let res = self.get(&format!("/events/{event}/seats"), None).await;
        assert_eq!(res.status(), StatusCode::OK, "GET /events/{event}/seats");
        res.json().await.unwrap()
    }

    /// Each seat's status by seat id.
    pub async fn seat_statuses(&self, event: &str) -> std::collections::BTreeMap<String, String> {
        self.seat_map(event).await["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
            .collect()
    }

    /// Polls `GET /reservations/{id}` as `token` until it answers 200 (the store trails the
    /// actor by one group commit) and `accept` likes the reservation.
    pub async fn reservation_when(&self, token: &str, id: &str, accept: impl Fn(&Value) -> bool) -> Value {
        self.eventually(&format!("reservation {id}"), || async {
            let res = self.get(&format!("/reservations/{id}"), Some(token)).await;
            if res.status() != StatusCode::OK {
                return None;
            }
            let r: Value = res.json().await.ok()?;
            accept(&r).then_some(r)
        })
        .await
    }

    /// Registers a buyer and returns its access token.
    pub async fn register(&self, email: &str) -> String {
        let res = self
            .post(
                "/auth/register",
                None,
                &json!({ "email": email, "password": "correct horse battery", "name": "Buyer" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "register {email}");
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let res = self.post("/auth/login", None, &json!({ "email": email, "password": password })).await;
        assert_eq!(res.status(), StatusCode::OK, "login {email}");
        res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// Creates an on-sale event with a `sections` x `rows` x `seats` grid (section `S1`
    /// best) and, if `general` > 0, a GA ticket type of that capacity. `extra` fields are
    /// merged into the request.
    pub async fn create_event(&self, sections: u32, rows: u32, seats: u32, general: u32, extra: Value) -> Value {
        let now = time::OffsetDateTime::now_utc();
        let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
        let tiers: Vec<Value> =
            (0..sections).map(|s| json!({ "name": format!("T{}", s + 1), "price": 1000 * (sections - s) })).collect();
        let sections: Vec<Value> = (0..sections)
            .map(|s| {
                let rows: Vec<Value> = (0..rows)
                    .map(|r| json!({ "label": ((b'A' + r as u8) as char).to_string(), "seats": seats }))
                    .collect();
                json!({ "name": format!("S{}", s + 1), "tier": s, "rows": rows })
            })
            .collect();
        let mut body = json!({
            "title": "Test Concert",
            "venue": "Test Hall",
            "artist": "Test Artist",
            "eventDate": fmt(now + time::Duration::days(30)),
            "saleStart": fmt(now - time::Duration::minutes(1)),
            "saleEnd": fmt(now + time::Duration::days(29)),
            "layout": { "tiers": tiers, "sections": sections },
        });
        if general > 0 {
            body["ticketTypes"] = json!([{ "name": "Standing", "price": 500, "capacity": general }]);
        }
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let res = self.post("/admin/events", Some(&self.admin), &body).await;
        let status = res.status();
        let event: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{event}");
        event
    }

    /// Polls `check` every 20 ms until it returns `Some`, failing after 10 s.
    pub async fn eventually<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        tiketi_testkit::eventually(what, Duration::from_secs(10), check).await
    }

    /// Stops the application gracefully and checks it shut down cleanly.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("clean shutdown");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The error code of an error response.
pub async fn error_code(res: Response) -> (StatusCode, String, Value) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned(), body)
}

/// Asserts an error response: the status, the code, and the `{"error":{"code","message",
/// "details"}}` shape with a non-empty message and an object of details. Returns `error`.
pub async fn expect_error(res: Response, status: StatusCode, code: &str) -> Value {
    let (actual, actual_code, body) = error_code(res).await;
    assert_eq!((actual, actual_code.as_str()), (status, code), "{body}");
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {body}");
    assert!(error["details"].is_object(), "details: {body}");
    error.clone()
}

/// An RFC 3339 instant `offset` from now.
pub fn rfc3339_from_now(offset: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + offset).format(&time::format_description::well_known::Rfc3339).unwrap()
}
