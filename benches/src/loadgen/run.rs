//! One run's shared state, and how every request is sent and recorded (the loops that offer
//! the load are in [`super::driver`]).

use super::api::{Api, Reply, text_at};
use super::config::{Config, Load, Pick};
use super::seats::SeatView;
use super::stats::{Kind, Outcome, Shards};
use super::template::Vars;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a seat-map probe's answer is trusted by other buyers who want one.
const PROBE_REUSE: Duration = Duration::from_millis(100);

/// Live counters for the progress bar (the report is built from the recorders).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered or failed.
    pub requests: AtomicU64,
    /// Successful holds.
    pub holds: AtomicU64,
    /// Seats held.
    pub seats_held: AtomicU64,
    /// Seats confirmed.
    pub seats_sold: AtomicU64,
    /// 409s on holds.
    pub conflicts: AtomicU64,
    /// Other failures.
    pub errors: AtomicU64,
    /// Live-stream frames received (`watch`; shared with the watchers).
    pub frames: Arc<AtomicU64>,
}

/// A hold the server granted: who, which reservation, which seats.
#[derive(Debug, Clone)]
pub struct Granted {
    /// Buyer index.
    pub buyer: usize,
    /// Reservation id.
    pub reservation: String,
    /// Seat ids.
    pub seats: Vec<String>,
}

/// What the generator was told it got.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Every granted hold.
    pub holds: Vec<Granted>,
    /// Reservation ids whose payment was confirmed.
    pub confirmed: HashSet<String>,
}

/// The URLs and bodies that are the same for every request of a run.
pub struct Prebuilt {
    /// Holds.
    pub hold: Url,
    /// The seat map.
    pub seats: Url,
    /// The event.
    pub event: Url,
    /// The event list.
    pub events: Url,
    /// Queue join.
    pub queue_join: Url,
    /// Queue status.
    pub queue_status: Url,
    /// The best-available body (rendered once).
    pub best_body: Bytes,
}

/// What a transaction asks of the loop that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Next,
    /// The server shed it: a closed-loop worker waits this long (capped) first.
    Backoff(Duration),
}

/// One run's shared state.
pub struct Run {
    /// The configuration.
    pub config: Config,
    /// The server.
    pub api: Arc<Api>,
    /// The event id.
    pub event: String,
    /// Per-run URLs and bodies.
    pub pre: Prebuilt,
    /// Each buyer's `Authorization` header.
    pub buyers: Vec<HeaderValue>,
    /// The buyers' seat map (seat scenarios).
    pub view: Option<Arc<SeatView>>,
    /// Recorders.
    pub stats: Shards,
    /// Progress counters.
    pub live: Counters,
    /// What was granted.
    pub ledger: Mutex<Ledger>,
    /// When the load started.
    pub start: Instant,
    /// When it must end.
    pub deadline: Instant,
    /// The front window of [`Pick::Front`].
    pub window: usize,
    /// Hold conflicts since the last hold granted.
    pub conflict_streak: AtomicU64,
    /// Buyers not in a queue session (the `queue` scenario gives each session its own).
    pub idle: Mutex<std::collections::VecDeque<usize>>,
    nonce: u64,
    stop: AtomicBool,
    stopped: Notify,
    sold_out: AtomicBool,
    probe: tokio::sync::Mutex<Option<Instant>>,
    pub(super) next: AtomicU64,
}

impl Run {
    /// A run starting now.
    pub fn new(
        config: Config,
        api: Arc<Api>,
        event: String,
        buyers: Vec<HeaderValue>,
        view: Option<Arc<SeatView>>,
    ) -> Self {
        let vars = Vars { event: &event, quantity: config.quantity, ..Vars::default() };
        let t = &api.templates;
        let pre = Prebuilt {
            hold: api.url(&t.hold_path, &vars),
            seats: api.url(&t.seats_path, &vars),
            event: api.url(&t.event_path, &vars),
            events: api.url(&t.events_path, &vars),
            queue_join: api.url(&t.queue_join_path, &vars),
            queue_status: api.url(&t.queue_status_path, &vars),
            best_body: Api::body(&t.hold_best_body, &vars),
        };
        let start = Instant::now();
        // Buyers who look at the front at once: the workers, or in the open loop the
        // arrivals of about 10 ms.
        let window = match (config.front_window, config.load) {
            (0, Load::Closed { concurrency }) => concurrency.max(1),
            (0, Load::Open { rate, .. }) => ((rate / 100.0).ceil() as usize).max(8),
            (w, _) => w,
        };
        let shards = (2 * crate::machine::nproc()).clamp(4, 32);
        let idle = Mutex::new((0..buyers.len()).collect());
        Self {
            deadline: start + config.duration,
            pre,
            buyers,
            view,
            stats: Shards::new(shards, start),
            live: Counters::default(),
            ledger: Mutex::new(Ledger::default()),
            start,
            window,
            conflict_streak: AtomicU64::new(0),
            idle,
            nonce: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            stop: AtomicBool::new(false),
            stopped: Notify::new(),
            sold_out: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(None),
            next: AtomicU64::new(0),
            config,
            api,
            event,
        }
    }

    /// A number unique to this run (its start in ms since the Unix epoch), for keys that
    /// must not repeat across runs.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Whether new work may start.
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Whether the load was stopped (the deadline aside).
    pub fn stopped_now(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ends the load: no new transaction starts; those in flight finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stopped.notify_waiters();
    }

    /// Sleeps for `d`, or less if the run stops or reaches its deadline first.
    pub async fn sleep(&self, d: Duration) {
        let until = (Instant::now() + d).min(self.deadline);
        let stopped = self.stopped.notified();
        if !self.running() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = stopped => {}
        }
    }

    /// Whether the event was found sold out.
    pub fn sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    /// Marks the event sold out and stops the load.
    pub fn mark_sold_out(&self) {
        self.sold_out.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Buyer `n` round-robin.
    pub fn buyer(&self, n: u64) -> (usize, &HeaderValue) {
        let i = (n % self.buyers.len() as u64) as usize;
        (i, &self.buyers[i])
    }

    /// Sends a request of `kind` for transaction `n`, due at `due`, and records it.
    /// `None` when it got no answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        kind: Kind,
        n: u64,
        due: Instant,
        method: Method,
        url: Url,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
        extra: &[(&HeaderName, HeaderValue)],
    ) -> Option<Reply> {
        let keep_body = !matches!(kind, Kind::SeatMap | Kind::Event | Kind::EventList);
        let sent = self.api.send(method, url, auth, body, extra, keep_body).await;
        let done = Instant::now();
        let latency = done.saturating_duration_since(due);
        self.live.requests.fetch_add(1, Ordering::Relaxed);
        match sent {
            Ok(reply) => {
                let outcome = classify(kind, &reply);
                let code = match outcome {
                    Outcome::Ok => String::new(),
                    _ => text_at(&reply.json(), &self.api.endpoints.error_code_pointer).unwrap_or_default(),
                };
                match outcome {
                    Outcome::Ok => {}
                    Outcome::Conflict => {
                        self.live.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        self.live.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.stats.with(n, |r| {
                    r.request(kind, outcome, latency, done);
                    if outcome != Outcome::Ok {
                        r.error(kind, Some(reply.status), &code);
                    }
                });
                Some(reply)
            }
            Err(e) => {
                self.live.errors.fetch_add(1, Ordering::Relaxed);
                self.stats.with(n, |r| {
                    r.request(kind, Outcome::Transport, latency, done);
                    r.error(kind, None, e.0);
                });
                None
            }
        }
    }

    /// Whether the event is sold out, reading the seat map (at most one read in flight, and
    /// an answer younger than [`PROBE_REUSE`] is shared). The read also refreshes the
    /// buyers' map.
    pub async fn probe_sold_out(&self, n: u64) -> bool {
        if self.sold_out() {
            return true;
        }
        let mut last = self.probe.lock().await;
        if last.is_some_and(|t| t.elapsed() < PROBE_REUSE) || self.sold_out() {
            return self.sold_out();
        }
        let now = Instant::now();
        let reply = self.call(Kind::Probe, n, now, Method::GET, self.pre.seats.clone(), None, None, &[]).await;
        *last = Some(Instant::now());
        let Some(reply) = reply.filter(Reply::ok) else { return false };
        let e = &self.api.endpoints;
        let json = reply.json();
        let Some(seats) = json.pointer(&e.seats_pointer).and_then(|s| s.as_array()) else { return false };
        let mut available = 0;
        for seat in seats {
            let free = seat.get(&e.seat_status_field).and_then(|s| s.as_str()) == Some(e.seat_available.as_str());
            available += usize::from(free);
            if let (Some(view), Some(id)) = (&self.view, seat.get(&e.seat_id_field).and_then(|s| s.as_str())) {
                view.set(id, free);
            }
        }
        if available < self.config.quantity as usize {
            self.mark_sold_out();
        }
        self.sold_out()
    }

    /// Marks the seats a conflict named as taken in the buyers' map; if it named none, the
    /// picked ones.
    pub fn learn_conflict(&self, reply: &Reply, picks: Option<&[u32]>) {
        let Some(view) = &self.view else { return };
        let named = super::api::strings_at(&reply.json(), &self.api.endpoints.conflict_seats_pointer);
        if named.is_empty() {
            if let Some(picks) = picks {
                view.take(picks);
            }
        } else {
            for id in &named {
                view.set(id, false);
            }
        }
    }

    /// Whether seats are picked from the map (rather than by the server).
    pub fn picks_seats(&self) -> bool {
        self.config.pick != Pick::Best && self.view.is_some()
    }
}

/// The outcome of an answer to a request of `kind`.
pub fn classify(kind: Kind, reply: &Reply) -> Outcome {
    match reply.status {
        200..=299 => Outcome::Ok,
        409 if kind == Kind::Hold => Outcome::Conflict,
        429 => Outcome::Shed,
        503 if reply.retry_after.is_some() => Outcome::Shed,
        status => Outcome::Status(status),
    }
}
