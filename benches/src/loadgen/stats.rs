//! Recording what happened: per-request latency histograms (HdrHistogram: fixed memory, 3
//! significant digits at any count), counts by outcome, errors by status and code, and a
//! per-second series. Recorders are sharded (see [`Shards`]) and merged once at the end, so
//! recording a request costs one uncontended lock and a few additions.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::latency::{MAX_MICROS, histogram};

/// Which request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Create a reservation.
    Hold,
    /// Prepare a payment.
    Prepare,
    /// Confirm a payment.
    Confirm,
    /// Read the seat map (`browse`).
    SeatMap,
    /// Read one event (`browse`).
    Event,
    /// Read the event list (`browse`).
    EventList,
    /// Join the admission queue.
    QueueJoin,
    /// Poll the queue status.
    QueueStatus,
    /// Read the seat map to learn whether the event sold out (and refresh the buyers' map).
    Probe,
}

impl Kind {
    const COUNT: usize = 9;
    const ALL: [Kind; Kind::COUNT] = [
        Kind::Hold,
        Kind::Prepare,
        Kind::Confirm,
        Kind::SeatMap,
        Kind::Event,
        Kind::EventList,
        Kind::QueueJoin,
        Kind::QueueStatus,
        Kind::Probe,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hold => "hold",
            Kind::Prepare => "prepare",
            Kind::Confirm => "confirm",
            Kind::SeatMap => "seat_map",
            Kind::Event => "event",
            Kind::EventList => "event_list",
            Kind::QueueJoin => "queue_join",
            Kind::QueueStatus => "queue_status",
            Kind::Probe => "probe",
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// 409 on a hold: someone else got there first (expected at an on-sale).
    Conflict,
    /// 429, or 503 with `Retry-After`: the server shed the request.
    Shed,
    /// Any other status.
    Status(u16),
    /// No answer (connect error, timeout, reset).
    Transport,
}

/// A coarser histogram (2 significant digits) for one second of the series.
fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS)
}

/// One request kind's figures.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Latency of every answered request, in microseconds.
    pub latency: Histogram<u64>,
    /// Requests sent.
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 409s on holds.
    pub conflicts: u64,
    /// Shed (429, 503).
    pub shed: u64,
    /// Other statuses and transport errors.
    pub errors: u64,
}

/// One second of the series.
#[derive(Debug, Clone)]
pub struct Second {
    /// Requests answered (or failed) in this second.
    pub requests: u64,
    /// Successful holds.
    pub holds: u64,
    /// Seats those holds took.
    pub seats_held: u64,
    /// Seats confirmed (paid).
    pub seats_sold: u64,
    /// 409s on holds.
    pub conflicts: u64,
    /// Shed requests and errors.
    pub errors: u64,
    /// Latency of the requests answered in this second.
    pub latency: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            requests: 0,
            holds: 0,
            seats_held: 0,
            seats_sold: 0,
            conflicts: 0,
            errors: 0,
            latency: second_histogram(),
        }
    }

    fn add(&mut self, o: &Second) {
        self.requests += o.requests;
        self.holds += o.holds;
        self.seats_held += o.seats_held;
        self.seats_sold += o.seats_sold;
        self.conflicts += o.conflicts;
        self.errors += o.errors;
        self.latency.add(&o.latency).expect("same bounds");
    }
}

/// Everything recorded by one shard (or, merged, by the run).
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    kinds: [Option<KindStats>; Kind::COUNT],
    /// Whole transactions (a buyer's action: hold with its retries; hold-prepare-confirm;
    /// queue-join-to-hold), from the intended start.
    pub transactions: Histogram<u64>,
    /// From joining the queue to admission.
    pub queue_wait: Histogram<u64>,
    /// Open loop: how late the dispatcher started each transaction.
    pub schedule_lag: Histogram<u64>,
    /// Failures by `"{kind} {status} {code}"`.
    pub errors: BTreeMap<String, u64>,
    /// Per second since the start.
    pub series: Vec<Second>,
    /// The first and last successful hold.
    pub first_hold: Option<Instant>,
    /// See `first_hold`.
    pub last_hold: Option<Instant>,
    /// The last confirmed payment.
    pub last_sale: Option<Instant>,
    /// Successful holds and the seats they took.
    pub holds: u64,
    /// Seats held.
    pub seats_held: u64,
    /// Seats confirmed.
    pub seats_sold: u64,
    /// Each granted hold: when (since the start) and how many seats.
    pub held_at: Vec<(Duration, u32)>,
    /// Each confirmed payment: when and how many seats.
    pub sold_at: Vec<(Duration, u32)>,
}

impl Recorder {
    /// An empty recorder whose series counts seconds from `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            kinds: Default::default(),
            transactions: histogram(),
            queue_wait: histogram(),
            schedule_lag: histogram(),
            errors: BTreeMap::new(),
            series: Vec::new(),
            first_hold: None,
            last_hold: None,
            last_sale: None,
            holds: 0,
            seats_held: 0,
            seats_sold: 0,
            held_at: Vec::new(),
            sold_at: Vec::new(),
        }
    }

    fn second(&mut self, at: Instant) -> &mut Second {
        let i = at.saturating_duration_since(self.start).as_secs() as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, Second::new);
        }
        &mut self.series[i]
    }

    /// A request of `kind` that ended at `done` with `outcome`, `latency` after it was due.
    pub fn request(&mut self, kind: Kind, outcome: Outcome, latency: Duration, done: Instant) {
        let us = micros(latency);
        let stats = self.kinds[kind as usize].get_or_insert_with(|| KindStats {
            latency: histogram(),
            sent: 0,
            ok: 0,
            conflicts: 0,
            shed: 0,
            errors: 0,
        });
        stats.sent += 1;
        if outcome != Outcome::Transport {
            stats.latency.saturating_record(us);
        }
        match outcome {
            Outcome::Ok => stats.ok += 1,
            Outcome::Conflict => stats.conflicts += 1,
            Outcome::Shed => stats.shed += 1,
            Outcome::Status(_) | Outcome::Transport => stats.errors += 1,
        }
        let second = self.second(done);
        second.requests += 1;
        if outcome != Outcome::Transport {
            second.latency.saturating_record(us);
        }
        match outcome {
            Outcome::Ok => {}
            Outcome::Conflict => second.conflicts += 1,
            _ => second.errors += 1,
        }
    }

    /// A failed request, counted by kind, status (or `transport`) and error code.
    pub fn error(&mut self, kind: Kind, status: Option<u16>, code: &str) {
        let status = status.map_or_else(|| "transport".to_owned(), |s| s.to_string());
        let key = if code.is_empty() {
            format!("{} {status}", kind.name())
        } else {
            format!("{} {status} {code}", kind.name())
        };
        *self.errors.entry(key).or_default() += 1;
    }

    /// A successful hold of `seats` seats answered at `at`.
    pub fn held(&mut self, seats: u64, at: Instant) {
        self.holds += 1;
        self.seats_held += seats;
        self.first_hold = Some(self.first_hold.map_or(at, |t| t.min(at)));
        self.last_hold = Some(self.last_hold.map_or(at, |t| t.max(at)));
        self.held_at.push((at.saturating_duration_since(self.start), seats as u32));
        let second = self.second(at);
        second.holds += 1;
        second.seats_held += seats;
    }

    /// A confirmed payment for `seats` seats answered at `at`.
    pub fn sold(&mut self, seats: u64, at: Instant) {
        self.seats_sold += seats;
        self.last_sale = Some(self.last_sale.map_or(at, |t| t.max(at)));
        self.sold_at.push((at.saturating_duration_since(self.start), seats as u32));
        self.second(at).seats_sold += seats;
    }

    /// A whole transaction, from its intended start.
    pub fn transaction(&mut self, latency: Duration) {
        self.transactions.saturating_record(micros(latency));
    }

    /// One kind's figures, if any request of it was sent.
    pub fn kind(&self, kind: Kind) -> Option<&KindStats> {
        self.kinds[kind as usize].as_ref()
    }

    /// Every kind with requests, in a stable order.
    pub fn kinds(&self) -> impl Iterator<Item = (Kind, &KindStats)> {
        Kind::ALL.into_iter().filter_map(|k| Some((k, self.kind(k)?)))
    }

    /// Every request's latency together.
    pub fn all_latency(&self) -> Histogram<u64> {
        let mut all = histogram();
        for (_, k) in self.kinds() {
            all.add(&k.latency).expect("same bounds");
        }
        all
    }

    /// Requests sent, of every kind.
    pub fn requests(&self) -> u64 {
        self.kinds().map(|(_, k)| k.sent).sum()
    }

    /// Adds `other` in (same start).
    pub fn merge(&mut self, other: &Recorder) {
        for kind in Kind::ALL {
            let Some(o) = other.kind(kind) else { continue };
            match &mut self.kinds[kind as usize] {
                Some(k) => {
                    k.latency.add(&o.latency).expect("same bounds");
                    k.sent += o.sent;
                    k.ok += o.ok;
                    k.conflicts += o.conflicts;
                    k.shed += o.shed;
                    k.errors += o.errors;
                }
                slot => *slot = Some(o.clone()),
            }
        }
        self.transactions.add(&other.transactions).expect("same bounds");
        self.queue_wait.add(&other.queue_wait).expect("same bounds");
        self.schedule_lag.add(&other.schedule_lag).expect("same bounds");
        for (key, n) in &other.errors {
            *self.errors.entry(key.clone()).or_default() += n;
        }
        if self.series.len() < other.series.len() {
            self.series.resize_with(other.series.len(), Second::new);
        }
        for (mine, theirs) in self.series.iter_mut().zip(&other.series) {
            mine.add(theirs);
        }
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let latest = |a: Option<Instant>, b: Option<Instant>| a.max(b);
        self.first_hold = earliest(self.first_hold, other.first_hold);
        self.last_hold = latest(self.last_hold, other.last_hold);
        self.last_sale = latest(self.last_sale, other.last_sale);
        self.holds += other.holds;
        self.seats_held += other.seats_held;
        self.seats_sold += other.seats_sold;
        self.held_at.extend_from_slice(&other.held_at);
        self.sold_at.extend_from_slice(&other.sold_at);
    }
}

/// The cumulative curve of `events` (when, how many): `[seconds, total so far]`, in time
/// order, thinned to at most `max_points` (the last point always kept).
pub fn cumulative(events: &[(Duration, u32)], max_points: usize) -> Vec<[f64; 2]> {
    let mut sorted = events.to_vec();
    sorted.sort_unstable();
    let step = sorted.len().div_ceil(max_points.max(1)).max(1);
    let mut total = 0u64;
    let mut curve = Vec::with_capacity(sorted.len() / step + 2);
    for (i, (at, n)) in sorted.iter().enumerate() {
        total += u64::from(*n);
        if i % step == step - 1 || i + 1 == sorted.len() {
            curve.push([at.as_secs_f64(), total as f64]);
        }
    }
    curve
}

/// Recorders behind locks, one per shard: a task records into shard `n % len`, so two
/// tasks rarely wait for each other, and no channel or allocation is involved.
pub struct Shards {
    shards: Vec<Mutex<Recorder>>,
}

impl Shards {
    /// `n` empty recorders from `start`.
    pub fn new(n: usize, start: Instant) -> Self {
        Self { shards: (0..n.max(1)).map(|_| Mutex::new(Recorder::new(start))).collect() }
    }

    /// Runs `f` on shard `n % len`.
    pub fn with<T>(&self, n: u64, f: impl FnOnce(&mut Recorder) -> T) -> T {
        let shard = &self.shards[(n % self.shards.len() as u64) as usize];
        f(&mut shard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every shard merged.
    pub fn merged(&self) -> Recorder {
        let mut shards = self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all = shards.next().expect("at least one shard").clone();
        for shard in shards {
            all.merge(&shard);
        }
        all
    }
}

/// `count` per second over `elapsed` (0 for an empty window).
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// `part / whole` (0 when `whole` is 0).
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_are_counted_by_outcome_and_second() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.request(Kind::Hold, Outcome::Ok, ms(5), start + ms(100));
        r.request(Kind::Hold, Outcome::Conflict, ms(6), start + ms(1100));
        r.request(Kind::Hold, Outcome::Transport, ms(30_000), start + ms(2100));
        r.request(Kind::Probe, Outcome::Status(500), ms(1), start + ms(2200));
        r.held(2, start + ms(100));
        let hold = r.kind(Kind::Hold).unwrap();
        assert_eq!((hold.sent, hold.ok, hold.conflicts, hold.errors), (3, 1, 1, 1));
        // A transport failure has no latency to record.
        assert_eq!(hold.latency.len(), 2);
        assert_eq!(r.requests(), 4);
        let per_second: Vec<_> = r.series.iter().map(|s| (s.requests, s.holds, s.conflicts, s.errors)).collect();
        assert_eq!(per_second, [(1, 1, 0, 0), (1, 0, 1, 0), (2, 0, 0, 2)]);
        assert_eq!(r.series[0].seats_held, 2);
    }

    #[test]
    fn merging_shards_adds_counts_and_keeps_the_sell_out_window() {
        let start = Instant::now();
        let shards = Shards::new(3, start);
        for n in 0..30u64 {
            shards.with(n, |r| {
                r.request(Kind::Hold, Outcome::Ok, ms(n + 1), start + ms(n * 100));
                r.held(1, start + ms(n * 100));
                r.error(Kind::Hold, Some(409), "seats_unavailable");
            });
        }
        let all = shards.merged();
        assert_eq!(all.holds, 30);
        assert_eq!(all.seats_held, 30);
        assert_eq!(all.kind(Kind::Hold).unwrap().latency.len(), 30);
        assert_eq!(all.errors["hold 409 seats_unavailable"], 30);
        assert_eq!(all.first_hold, Some(start));
        assert_eq!(all.last_hold, Some(start + ms(2900)));
        assert_eq!(all.series.iter().map(|s| s.holds).collect::<Vec<_>>(), [10, 10, 10]);
        assert_eq!(all.all_latency().len(), 30);
    }

    #[test]
    fn the_cumulative_curve_is_in_time_order_and_thinned() {
        let events: Vec<(Duration, u32)> = (0..10).rev().map(|i| (ms(i * 10), 2)).collect();
        let curve = cumulative(&events, 100);
        assert_eq!(curve.len(), 10);
        assert_eq!(curve[0], [0.0, 2.0]);
        assert_eq!(curve[9], [0.09, 20.0]);
        let thin = cumulative(&events, 3);
        assert!(thin.len() <= 4, "{thin:?}");
        assert_eq!(*thin.last().unwrap(), [0.09, 20.0]);
        assert!(cumulative(&[], 5).is_empty());
    }

    #[test]
    fn rates_and_ratios_handle_empty_windows() {
        assert_eq!(rate(10, Duration::from_millis(500)), 20.0);
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(ratio(1, 4), 0.25);
        assert_eq!(ratio(1, 0), 0.0);
    }

    #[test]
    fn errors_are_keyed_by_kind_status_and_code() {
        let mut r = Recorder::new(Instant::now());
        r.error(Kind::Confirm, Some(402), "payment_declined");
        r.error(Kind::Hold, None, "timeout");
        r.error(Kind::Probe, Some(500), "");
        let keys: Vec<_> = r.errors.keys().cloned().collect();
        assert_eq!(keys, ["confirm 402 payment_declined", "hold transport timeout", "probe 500"]);
    }
}
