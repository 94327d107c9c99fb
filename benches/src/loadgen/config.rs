//! What a run does: the scenario, how the load is offered, the set-up, and the shape of the
//! API it talks to ([`Endpoints`], loadable from a JSON file).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What the simulated buyers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Everyone tries to hold seats at once until the event sells out.
    Burst,
    /// Reads only: the seat map, one event, the event list.
    Browse,
    /// Hold, prepare the payment, confirm it.
    Purchase,
    /// Queue-gated on-sale: join, poll until admitted, hold with the admission token.
    Queue,
    /// WebSocket watchers of the live seat stream, while holds run at a fixed rate.
    Watch,
}

impl Scenario {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Burst => "burst",
            Scenario::Browse => "browse",
            Scenario::Purchase => "purchase",
            Scenario::Queue => "queue",
            Scenario::Watch => "watch",
        }
    }

    /// Whether buyers hold seats (and so the run can sell out and be checked).
    pub fn holds(self) -> bool {
        !matches!(self, Scenario::Browse)
    }
}

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Fixed concurrency: each of `concurrency` workers starts its next transaction when its
    /// last one ended. Latency is from the actual send.
    Closed {
        /// Workers.
        concurrency: usize,
    },
    /// Fixed arrival rate: transaction `i` starts at `i / rate` seconds whatever the others
    /// are doing, and its latency counts from then (see [`super::Schedule`]).
    Open {
        /// Transactions per second.
        rate: f64,
        /// Most transactions in flight; past it, starts wait (and the wait counts).
        max_in_flight: usize,
    },
}

/// How a buyer chooses seats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// From the live map, one of the best (first) available seats: everyone wants the
    /// front, so buyers collide as they would at a real on-sale.
    Front,
    /// From the live map, any available seat.
    Random,
    /// Let the server choose (`bestAvailable`).
    Best,
}

/// The admission queue of an event the generator creates for the `queue` scenario.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    /// Admissions per second.
    pub rate_per_second: u32,
    /// Most admitted buyers at once (0: no cap).
    pub max_active: u32,
    /// Time between status polls while waiting.
    pub poll_interval: Duration,
}

/// One run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the buyers do.
    pub scenario: Scenario,
    /// E.g. `http://127.0.0.1:8080` (endpoint paths are appended).
    pub base_url: String,
    /// Closed or open loop.
    pub load: Load,
    /// Longest the load runs (seat scenarios stop earlier when the event sells out).
    pub duration: Duration,
    /// Buyers to register (or log in) and use round-robin.
    pub buyers: usize,
    /// Seats of the event the generator creates.
    pub seats: u32,
    /// Seats per row of that event.
    pub row_size: u32,
    /// Hold time-to-live of that event, in seconds.
    pub hold_ttl_secs: u64,
    /// Use this event instead of creating one.
    pub event: Option<String>,
    /// Admin credentials, to create the event.
    pub admin_email: String,
    /// Admin password.
    pub admin_password: String,
    /// Buyers are `{prefix}-{i}@loadgen.test`.
    pub email_prefix: String,
    /// Seats per hold.
    pub quantity: u32,
    /// How seats are chosen.
    pub pick: Pick,
    /// With [`Pick::Front`], how many of the first available seats buyers choose among
    /// (0: as many as the closed loop's workers, or the open loop's arrivals in 10 ms).
    pub front_window: usize,
    /// Further holds after a conflict, per transaction.
    pub retries: u32,
    /// Send a fresh `Idempotency-Key` with every hold.
    pub idempotency_keys: bool,
    /// Follow the live seat stream to keep the map buyers pick from current (Tiketi's
    /// WebSocket; without it the map is refreshed by reading it after conflicts).
    pub live_map: bool,
    /// The `queue` scenario's queue.
    pub queue: QueueOptions,
    /// The `watch` scenario's WebSocket connections.
    pub watchers: usize,
    /// The `browse` scenario's mix of seat map : event : event list reads.
    pub browse_mix: [u32; 3],
    /// Per request.
    pub timeout: Duration,
    /// Registrations (or logins) in flight during set-up.
    pub register_concurrency: usize,
    /// Where buyers' tokens are kept between runs (none: always register or log in).
    pub token_cache: Option<PathBuf>,
    /// Cached tokens older than this are not used.
    pub token_max_age: Duration,
    /// Where the results go (none: nowhere; the report is still returned).
    pub out: Option<PathBuf>,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
    /// Check consistency through the API after the load.
    pub check: bool,
    /// Seeds the seat choices.
    pub seed: u64,
    /// The API's shape.
    pub endpoints: Endpoints,
}

impl Config {
    /// A run of `scenario` against `base_url` with the defaults the CLI documents.
    pub fn new(scenario: Scenario, base_url: impl Into<String>) -> Self {
        Self {
            scenario,
            base_url: base_url.into(),
            load: Load::Closed { concurrency: 50 },
            duration: Duration::from_secs(30),
            buyers: 100,
            seats: 1000,
            row_size: 50,
            hold_ttl_secs: 600,
            event: None,
            admin_email: "admin@tiketi.local".into(),
            admin_password: String::new(),
            email_prefix: "loadgen".into(),
            quantity: 1,
            pick: Pick::Front,
            front_window: 0,
            retries: 3,
            idempotency_keys: false,
            live_map: true,
            queue: QueueOptions { rate_per_second: 100, max_active: 0, poll_interval: Duration::from_millis(250) },
            watchers: 100,
            browse_mix: [2, 1, 1],
            timeout: Duration::from_secs(30),
            register_concurrency: 8,
            token_cache: None,
            token_max_age: Duration::from_secs(600),
            out: None,
            progress: false,
            check: true,
            seed: 1,
            endpoints: Endpoints::default(),
        }
    }

    /// Workers, or the in-flight cap of the open loop.
    pub fn concurrency(&self) -> usize {
        match self.load {
            Load::Closed { concurrency } => concurrency,
            Load::Open { max_in_flight, .. } => max_in_flight,
        }
    }

    /// Checks what the types cannot say.
    pub fn validate(&self) -> Result<(), String> {
        match self.load {
            Load::Closed { concurrency: 0 } => return Err("--concurrency must be at least 1".into()),
            Load::Open { rate, max_in_flight } if !(rate.is_finite() && rate > 0.0) || max_in_flight == 0 => {
                return Err("--rate must be positive and --max-in-flight at least 1".into());
            }
            _ => {}
        }
        if self.scenario != Scenario::Browse && self.buyers == 0 {
            return Err(format!("the {} scenario needs --buyers of at least 1", self.scenario.name()));
        }
        if self.event.is_none() && (self.seats == 0 || self.row_size == 0) {
            return Err("--seats and --row-size must be at least 1".into());
        }
        if self.quantity == 0 || self.quantity > 50 {
            return Err("--quantity must be 1-50".into());
        }
        if self.event.is_none() && self.admin_password.is_empty() {
            return Err(
                "creating the event needs --admin-password (or TIKETI_AUTH__ADMIN_PASSWORD), or give --event".into()
            );
        }
        if self.browse_mix.iter().all(|&w| w == 0) {
            return Err("--browse-mix needs a non-zero weight".into());
        }
        Ok(())
    }
}

/// The API's shape: where each endpoint is, what to send, and where to find what the
/// generator needs in the answers (JSON pointers, RFC 6901). Tiketi's by default; another
/// server with the same meanings is driven by changing these, on the command line or in a
/// JSON file of this struct's fields (any subset; see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoints {
    /// `POST`: create a buyer. Placeholders: `{buyer}`.
    pub register_path: String,
    /// Its body: `{email}`, `{password}`, `{name}`, `{buyer}`.
    pub register_body: String,
    /// `POST`: log in (a buyer already registered, or the admin).
    pub login_path: String,
    /// Its body: `{email}`, `{password}`.
    pub login_body: String,
    /// `POST` (admin): create an event (Tiketi's body shape; elsewhere use `--event`).
    pub admin_events_path: String,
    /// `GET`: the event list (`browse`).
    pub events_path: String,
    /// `GET`: one event (`browse`): `{event}`.
    pub event_path: String,
    /// `GET`: the seat map: `{event}`.
    pub seats_path: String,
    /// `POST`: hold seats: `{event}`.
    pub hold_path: String,
    /// The body holding picked seats: `{seat}`, `{seats}`, `{quantity}`, `{event}`, `{buyer}`.
    pub hold_seats_body: String,
    /// The body asking for the best available: `{quantity}`, `{event}`, `{buyer}`.
    pub hold_best_body: String,
    /// `GET` (buyer): the buyer's reservations, for the consistency check.
    pub my_reservations_path: String,
    /// `POST`: prepare a payment: `{event}`, `{reservation}`.
    pub prepare_path: String,
    /// Its body: `{reservation}`, `{event}`, `{buyer}`.
    pub prepare_body: String,
    /// `POST`: confirm a payment: `{event}`, `{reservation}`, `{order}`.
    pub confirm_path: String,
    /// Its body: `{order}`, `{amount}`, `{paymentKey}`, `{reservation}`, `{event}`, `{buyer}`.
    pub confirm_body: String,
    /// `POST`: join the admission queue: `{event}`.
    pub queue_join_path: String,
    /// `GET`: the buyer's place in the queue: `{event}`.
    pub queue_status_path: String,
    /// The header carrying the admission token on a hold.
    pub admission_header: String,
    /// WebSocket: the live seat stream, Tiketi's message shapes (empty: none): `{event}`.
    pub ws_path: String,
    /// The access token in a register or login answer.
    pub token_pointer: String,
    /// The event id in a create-event answer.
    pub event_id_pointer: String,
    /// The seat array in a seat-map answer.
    pub seats_pointer: String,
    /// A seat's id field (relative to the seat).
    pub seat_id_field: String,
    /// A seat's status field (relative to the seat).
    pub seat_status_field: String,
    /// The status of a seat on sale.
    pub seat_available: String,
    /// The status of a held seat.
    pub seat_held: String,
    /// The status of a sold seat.
    pub seat_sold: String,
    /// The reservation id in a hold answer (and in each listed reservation).
    pub reservation_id_pointer: String,
    /// The seat ids in a hold answer (and in each listed reservation).
    pub reservation_seats_pointer: String,
    /// A listed reservation's status.
    pub reservation_status_pointer: String,
    /// A listed reservation's event id.
    pub reservation_event_pointer: String,
    /// The reservation array in the my-reservations answer.
    pub reservations_pointer: String,
    /// The status of a held reservation.
    pub reservation_held: String,
    /// The status of a paid reservation.
    pub reservation_confirmed: String,
    /// The order id in a prepare answer.
    pub order_id_pointer: String,
    /// The amount in a prepare answer.
    pub amount_pointer: String,
    /// The status in a queue answer.
    pub queue_status_pointer: String,
    /// The admission token in a queue answer.
    pub admission_token_pointer: String,
    /// The queue status of an admitted buyer.
    pub queue_admitted: String,
    /// Queue statuses that end the wait without admission (sold out, closed).
    pub queue_final: Vec<String>,
    /// The error code in an error answer (counted by code).
    pub error_code_pointer: String,
    /// The seats a conflict names (marked taken in the buyers' map).
    pub conflict_seats_pointer: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        Self {
            register_path: s("/api/v1/auth/register"),
            register_body: s(r#"{"email":"{email}","password":"{password}","name":"{name}"}"#),
            login_path: s("/api/v1/auth/login"),
            login_body: s(r#"{"email":"{email}","password":"{password}"}"#),
            admin_events_path: s("/api/v1/admin/events"),
            events_path: s("/api/v1/events?status=on_sale"),
            event_path: s("/api/v1/events/{event}"),
            seats_path: s("/api/v1/events/{event}/seats"),
            hold_path: s("/api/v1/events/{event}/reservations"),
            hold_seats_body: s(r#"{"seatIds":[{seats}]}"#),
            hold_best_body: s(r#"{"bestAvailable":{"quantity":{quantity}}}"#),
            my_reservations_path: s("/api/v1/reservations/my"),
            prepare_path: s("/api/v1/payments/prepare"),
            prepare_body: s(r#"{"reservationId":"{reservation}"}"#),
            confirm_path: s("/api/v1/payments/confirm"),
            confirm_body: s(r#"{"orderId":"{order}","paymentKey":"{paymentKey}","amount":{amount}}"#),
            queue_join_path: s("/api/v1/events/{event}/queue/join"),
            queue_status_path: s("/api/v1/events/{event}/queue/status"),
            admission_header: s("x-admission-token"),
            ws_path: s("/api/v1/events/{event}/ws"),
            token_pointer: s("/token"),
            event_id_pointer: s("/id"),
            seats_pointer: s("/seats"),
            seat_id_field: s("id"),
            seat_status_field: s("status"),
            seat_available: s("available"),
            seat_held: s("held"),
            seat_sold: s("sold"),
            reservation_id_pointer: s("/id"),
            reservation_seats_pointer: s("/seatIds"),
            reservation_status_pointer: s("/status"),
            reservation_event_pointer: s("/eventId"),
            reservations_pointer: s("/data"),
            reservation_held: s("held"),
            reservation_confirmed: s("confirmed"),
            order_id_pointer: s("/orderId"),
            amount_pointer: s("/amount"),
            queue_status_pointer: s("/status"),
            admission_token_pointer: s("/admissionToken"),
            queue_admitted: s("admitted"),
            queue_final: vec![s("sold_out"), s("closed")],
            error_code_pointer: s("/error/code"),
            conflict_seats_pointer: s("/error/details/seatIds"),
        }
    }
}

impl Endpoints {
    /// Reads a JSON file of any subset of the fields; the rest keep Tiketi's defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Self, super::LoadgenError> {
        let text = std::fs::read(path).map_err(|e| super::LoadgenError::io(path, e))?;
        serde_json::from_slice(&text).map_err(|e| super::LoadgenError::Config(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoints_file_overrides_only_the_fields_it_names() {
        let e: Endpoints = serde_json::from_str(r#"{"hold_path":"/v2/events/{event}/holds"}"#).unwrap();
        assert_eq!(e.hold_path, "/v2/events/{event}/holds");
        assert_eq!(e.seats_path, Endpoints::default().seats_path);
    }

    #[test]
    fn an_unknown_endpoints_field_is_refused() {
        assert!(serde_json::from_str::<Endpoints>(r#"{"hold_pth":"/x"}"#).is_err());
    }

    #[test]
    fn creating_an_event_needs_the_admin_password() {
        let mut c = Config::new(Scenario::Burst, "http://127.0.0.1:1");
        assert!(c.validate().unwrap_err().contains("admin-password"));
        c.event = Some("e".into());
        assert_eq!(c.validate(), Ok(()));
    }
}
