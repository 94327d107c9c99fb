//! The server as the generator sees it: one HTTP client, the endpoint templates parsed
//! once, and the URLs and bodies that do not change during a run built once per event.
//!
//! Cheap per request by construction: one `reqwest::Client` (one connection pool, Nagle off,
//! idle connections kept), URLs parsed once and cloned, constant bodies shared as `Bytes`
//! (a clone is a reference count), each buyer's `Authorization` header built once.

use super::config::Endpoints;
use super::error::LoadgenError;
use super::template::{Escape, Template, Var, Vars};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Method, Url};
use serde_json::Value;
use std::time::Duration;

/// Placeholders each template may use.
const EVENT: &[Var] = &[Var::Event];
const HOLD_BODY: &[Var] = &[Var::Event, Var::Seat, Var::Seats, Var::Quantity, Var::Buyer];
const PAY_PATH: &[Var] = &[Var::Event, Var::Reservation, Var::Order];
const PREPARE_BODY: &[Var] = &[Var::Event, Var::Reservation, Var::Buyer];
const CONFIRM_BODY: &[Var] = &[Var::Event, Var::Reservation, Var::Order, Var::Amount, Var::PaymentKey, Var::Buyer];
const REGISTER: &[Var] = &[Var::Email, Var::Password, Var::Name, Var::Buyer];
const LOGIN: &[Var] = &[Var::Email, Var::Password];

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body (empty when it was drained unread).
    pub body: Bytes,
    /// `Retry-After`, in seconds, if given.
    pub retry_after: Option<Duration>,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Why a request got no answer: `timeout`, `connect`, `body` or `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportError(pub &'static str);

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        Self(if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if e.is_body() || e.is_decode() {
            "body"
        } else {
            "request"
        })
    }
}

/// Every template of [`Endpoints`], parsed (same names).
#[derive(Debug, Clone)]
pub(crate) struct Templates {
    pub(crate) register_path: Template,
    pub(crate) register_body: Template,
    pub(crate) login_path: Template,
    pub(crate) login_body: Template,
    pub(crate) admin_events_path: Template,
    pub(crate) events_path: Template,
    pub(crate) event_path: Template,
    pub(crate) seats_path: Template,
    pub(crate) hold_path: Template,
    pub(crate) hold_seats_body: Template,
    pub(crate) hold_best_body: Template,
    pub(crate) my_reservations_path: Template,
    pub(crate) prepare_path: Template,
    pub(crate) prepare_body: Template,
    pub(crate) confirm_path: Template,
    pub(crate) confirm_body: Template,
    pub(crate) queue_join_path: Template,
    pub(crate) queue_status_path: Template,
    pub(crate) ws_path: Template,
}

impl Templates {
    /// Parses every template of `e`, naming the first bad one.
    pub(crate) fn parse(e: &Endpoints) -> Result<Self, LoadgenError> {
        let path = |field, text: &str, vars| Template::parse(field, text, Escape::Path, vars);
        let body = |field, text: &str, vars| Template::parse(field, text, Escape::Json, vars);
        Ok(Self {
            register_path: path("register_path", &e.register_path, &[Var::Buyer])?,
            register_body: body("register_body", &e.register_body, REGISTER)?,
            login_path: path("login_path", &e.login_path, &[])?,
            login_body: body("login_body", &e.login_body, LOGIN)?,
            admin_events_path: path("admin_events_path", &e.admin_events_path, &[])?,
            events_path: path("events_path", &e.events_path, EVENT)?,
            event_path: path("event_path", &e.event_path, EVENT)?,
            seats_path: path("seats_path", &e.seats_path, EVENT)?,
            hold_path: path("hold_path", &e.hold_path, EVENT)?,
            hold_seats_body: body("hold_seats_body", &e.hold_seats_body, HOLD_BODY)?,
            hold_best_body: body("hold_best_body", &e.hold_best_body, HOLD_BODY)?,
            my_reservations_path: path("my_reservations_path", &e.my_reservations_path, EVENT)?,
            prepare_path: path("prepare_path", &e.prepare_path, PAY_PATH)?,
            prepare_body: body("prepare_body", &e.prepare_body, PREPARE_BODY)?,
            confirm_path: path("confirm_path", &e.confirm_path, PAY_PATH)?,
            confirm_body: body("confirm_body", &e.confirm_body, CONFIRM_BODY)?,
            queue_join_path: path("queue_join_path", &e.queue_join_path, EVENT)?,
            queue_status_path: path("queue_status_path", &e.queue_status_path, EVENT)?,
            ws_path: path("ws_path", &e.ws_path, EVENT)?,
        })
    }
}

impl Templates {
    /// Checks that every path template makes a URL on `base` (values are escaped, so one
    /// that does with sample values always does): a bad one fails here, not mid-run.
    fn check_paths(&self, base: &str) -> Result<(), LoadgenError> {
        let vars = Vars { event: "e", reservation: "r", order: "o", ..Vars::default() };
        let paths = [
            ("register_path", &self.register_path),
            ("login_path", &self.login_path),
            ("admin_events_path", &self.admin_events_path),
            ("events_path", &self.events_path),
            ("event_path", &self.event_path),
            ("seats_path", &self.seats_path),
            ("hold_path", &self.hold_path),
            ("my_reservations_path", &self.my_reservations_path),
            ("prepare_path", &self.prepare_path),
            ("confirm_path", &self.confirm_path),
            ("queue_join_path", &self.queue_join_path),
            ("queue_status_path", &self.queue_status_path),
            ("ws_path", &self.ws_path),
        ];
        for (field, template) in paths {
            let url = format!("{base}{}", template.render(&vars));
            Url::parse(&url).map_err(|e| LoadgenError::Template { field, message: format!("{url:?}: {e}") })?;
        }
        Ok(())
    }
}

/// The HTTP side of the server.
pub struct Api {
    client: Client,
    base: String,
    /// The shapes.
    pub endpoints: Endpoints,
    /// The shapes, parsed.
    pub(crate) templates: Templates,
    /// The header carrying an admission token.
    pub admission_header: HeaderName,
}

impl Api {
    /// A client for `base_url` with room for `connections` connections.
    pub fn new(
        base_url: &str,
        endpoints: Endpoints,
        timeout: Duration,
        connections: usize,
    ) -> Result<Self, LoadgenError> {
        let templates = Templates::parse(&endpoints)?;
        let admission_header = HeaderName::from_bytes(endpoints.admission_header.as_bytes())
            .map_err(|_| LoadgenError::Config(format!("bad admission_header {:?}", endpoints.admission_header)))?;
        let client = Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .map_err(|e| LoadgenError::Http { what: "building the HTTP client".into(), source: e })?;
        let base = base_url.trim_end_matches('/').to_owned();
        Url::parse(&base).map_err(|e| LoadgenError::Config(format!("--base-url {base_url:?}: {e}")))?;
        templates.check_paths(&base)?;
        Ok(Self { client, base, endpoints, templates, admission_header })
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The URL of a rendered path template.
    pub fn url(&self, template: &Template, vars: &Vars<'_>) -> Url {
        let mut text = String::with_capacity(self.base.len() + 64);
        text.push_str(&self.base);
        template.render_into(vars, &mut text);
        Url::parse(&text).unwrap_or_else(|e| panic!("{text:?} is not a URL: {e}"))
    }

    /// The WebSocket URL of a rendered path template (`ws://` for `http://`).
    pub fn ws_url(&self, template: &Template, vars: &Vars<'_>) -> String {
        let url = self.url(template, vars).to_string();
        match url.strip_prefix("http") {
            Some(rest) => format!("ws{rest}"),
            None => url,
        }
    }

    /// A JSON body from a template.
    pub fn body(template: &Template, vars: &Vars<'_>) -> Bytes {
        Bytes::from(template.render(vars))
    }

    /// `Authorization: Bearer {token}`, built once per buyer.
    pub fn bearer(token: &str) -> HeaderValue {
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(format!("Bearer {token}")))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        value.set_sensitive(true);
        value
    }

    /// Sends a request; with `keep_body` false the body is read and dropped (counted, not
    /// kept).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
        extra: &[(&HeaderName, HeaderValue)],
        keep_body: bool,
    ) -> Result<Reply, TransportError> {
        let mut req = self.client.request(method, url);
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        }
        for (name, value) in extra {
            req = req.header(*name, value.clone());
        }
        let mut res = req.send().await?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = if keep_body {
            res.bytes().await?
        } else {
            while res.chunk().await?.is_some() {}
            Bytes::new()
        };
        Ok(Reply { status, body, retry_after })
    }

    /// A set-up request that must succeed (any 2xx), answered as JSON.
    pub async fn setup_call(
        &self,
        what: &str,
        method: Method,
        url: Url,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> Result<(u16, Value), LoadgenError> {
        let mut req = self.client.request(method, url);
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json")).body(body);
        }
        let res = req.send().await.map_err(|e| LoadgenError::Http { what: what.into(), source: e })?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.map_err(|e| LoadgenError::Http { what: what.into(), source: e })?;
        if !(200..300).contains(&status) {
            return Err(LoadgenError::refused(what, status, &bytes));
        }
        let json = serde_json::from_slice(&bytes)
            .map_err(|e| LoadgenError::shape(what, format!("the answer is not JSON: {e}")))?;
        Ok((status, json))
    }
}

/// The string at `pointer` in `value` (numbers as their text).
pub fn text_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The strings in the array at `pointer` in `value`.
pub fn strings_at(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_endpoints_parse() {
        Templates::parse(&Endpoints::default()).unwrap();
    }

    #[test]
    fn urls_join_the_base_and_the_rendered_path() {
        let api = Api::new("http://127.0.0.1:8080/", Endpoints::default(), Duration::from_secs(1), 4).unwrap();
        let url = api.url(&api.templates.hold_path, &Vars { event: "e1", ..Vars::default() });
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/api/v1/events/e1/reservations");
        let ws = api.ws_url(&api.templates.ws_path, &Vars { event: "e1", ..Vars::default() });
        assert_eq!(ws, "ws://127.0.0.1:8080/api/v1/events/e1/ws");
    }

    #[test]
    fn a_path_that_makes_no_url_is_refused_before_the_run() {
        // Appended to the base, this path makes the port "abc".
        let endpoints = Endpoints { hold_path: ":abc/{event}".into(), ..Endpoints::default() };
        let e = Api::new("http://127.0.0.1", endpoints, Duration::from_secs(1), 1).err().expect("refused");
        assert!(e.to_string().contains("hold_path"), "{e}");
        assert!(Api::new("127.0.0.1:8080", Endpoints::default(), Duration::from_secs(1), 1).is_err());
    }

    #[test]
    fn pointers_read_strings_numbers_and_arrays() {
        let v = json!({"id": "r1", "amount": 2000, "seatIds": ["a", "b"], "error": {"code": "x"}});
        assert_eq!(text_at(&v, "/id").as_deref(), Some("r1"));
        assert_eq!(text_at(&v, "/amount").as_deref(), Some("2000"));
        assert_eq!(text_at(&v, "/error/code").as_deref(), Some("x"));
        assert_eq!(text_at(&v, "/nope"), None);
        assert_eq!(strings_at(&v, "/seatIds"), ["a", "b"]);
        assert!(strings_at(&v, "/id").is_empty());
    }
}
