//! Engine micro-benchmarks: the hold decision on a 50,000-seat and a 2,000-seat event, the
//! expiry sweep, seat-id resolution, and the admission queue (joining it, and the tick that
//! admits a batch).
//!
//! Every timed hold is a real decision on seats nobody has touched: each benchmark walks
//! through its event's seats on a copy of a pristine engine and swaps in a fresh copy when
//! they run out. Cloning, building requests and dropping change sets stay outside the
//! timed region, and every timed hold is checked to have succeeded. The queue benchmarks
//! work the same way: joins and admission ticks run on a copy of a prepared engine, swapped
//! for a fresh copy after 10,000 joins or once its line is empty, and every timed join and
//! tick is checked to have queued or admitted as intended.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tiketi_engine::{
    ADMISSION_INTERVAL, Change, ChangeSet, EngineError, EventEngine, EventId, EventRules, HoldRequest, LayoutSpec,
    QueueChange, QueueSettings, QueueStanding, ReservationId, SeatIndex, SeatMap, Selection, Timestamp, UserId,
};
use uuid::Uuid;

/// 2026-01-05T08:00:00Z, well inside the sale window.
const NOW: Timestamp = Timestamp::from_millis(1_767_600_000_000);
const HOLD_TTL: Duration = Duration::from_secs(10 * 60);
const DAY_MS: i64 = 86_400_000;
/// A prime, so it is coprime with every venue size here (whose factors are 2 and 5).
const STRIDE: usize = 7_919;

/// A benchmark venue: its label and layout.
struct Venue {
    name: &'static str,
    layout: LayoutSpec,
}

fn venues() -> [Venue; 2] {
    [
        Venue { name: "50k_seats", layout: LayoutSpec::grid(10, 100, 50, 100) },
        Venue { name: "2k_seats", layout: LayoutSpec::grid(4, 10, 50, 100) },
    ]
}

/// An event on sale for a month around [`NOW`] with no per-user limit.
fn pristine(layout: &LayoutSpec) -> EventEngine {
    with_queue(layout, QueueSettings::default())
}

/// [`pristine`], selling through an admission queue with `queue` settings.
fn with_queue(layout: &LayoutSpec, queue: QueueSettings) -> EventEngine {
    let rules = EventRules {
        sale_start: Timestamp::from_millis(NOW.millis() - DAY_MS),
        sale_end: Timestamp::from_millis(NOW.millis() + 30 * DAY_MS),
        per_user_limit: 0,
        hold_ttl: HOLD_TTL,
        max_per_reservation: 10,
        cancelled: false,
        queue,
        queue_seed: [0; 32],
    };
    let seats = SeatMap::new(layout).expect("grid layouts are valid");
    EventEngine::new(EventId(Uuid::from_u128(1)), rules, seats, Vec::new(), NOW)
}

/// The `i`-th of `n` indices in a scattered order that visits each once, so consecutive
/// holds do not land on neighbouring seats; indices repeat from `i = n` on.
fn scattered(i: usize, n: usize) -> usize {
    (i % n) * STRIDE % n
}

/// The `i`-th hold of a cycle, each by a different buyer.
fn request(i: usize, selection: Selection) -> HoldRequest {
    let (id, user) = (ReservationId(Uuid::from_u128(i as u128)), UserId(Uuid::from_u128(i as u128)));
    HoldRequest { id, user, selection, admitted: false }
}

/// Holds `selection(0)`, `selection(1)`, ... on a copy of a pristine engine, starting over
/// on a fresh copy after the last hold that can succeed. State carries over between
/// criterion's samples, so every sample sees the same mix of empty and full venues.
struct HoldCycle<F> {
    pristine: EventEngine,
    engine: EventEngine,
    /// How many holds succeed on a pristine engine.
    len: usize,
    next: usize,
    selection: F,
}

impl<F: Fn(usize) -> Selection> HoldCycle<F> {
    fn new(pristine: EventEngine, selection: F) -> Self {
        let mut probe = pristine.clone();
        let len = (0..).take_while(|&i| probe.hold(request(i, selection(i)), NOW).is_ok()).count();
        assert!(len > 0, "at least one hold fits");
        Self { engine: pristine.clone(), pristine, len, next: 0, selection }
    }

    /// Makes `iters` holds and returns the time spent inside `EventEngine::hold` alone.
    fn run(&mut self, iters: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = usize::try_from(iters).expect("iteration count fits usize");
        while left > 0 {
            if self.next == self.len {
                self.engine = self.pristine.clone();
                self.next = 0;
            }
            let n = left.min(self.len - self.next);
            let mut requests: Vec<HoldRequest> =
                (self.next..self.next + n).map(|i| request(i, (self.selection)(i))).collect();
            let mut results: Vec<Result<ChangeSet, EngineError>> = Vec::with_capacity(n);
            let start = Instant::now();
            for req in requests.drain(..) {
                results.push(self.engine.hold(req, NOW));
            }
            elapsed += start.elapsed();
            assert!(results.iter().all(Result::is_ok), "every timed hold is a successful decision");
            self.next += n;
            left -= n;
        }
        elapsed
    }
}

fn holds(c: &mut Criterion) {
    let mut group = c.benchmark_group("hold");
    // One element is one hold decision, so criterion's elem/s reads as holds per second.
    group.throughput(Throughput::Elements(1));
    for venue in venues() {
        let engine = pristine(&venue.layout);
        let seats = engine.seats().len() as usize;

        let mut single =
            HoldCycle::new(engine.clone(), |i| Selection::Seats(vec![SeatIndex(scattered(i, seats) as u32)]));
        group.bench_function(BenchmarkId::new("single_seat", venue.name), |b| b.iter_custom(|n| single.run(n)));

        let groups = seats / 4;
        let mut four = HoldCycle::new(engine.clone(), |i| {
            let first = scattered(i, groups) as u32 * 4;
            Selection::Seats((first..first + 4).map(SeatIndex).collect())
        });
        group.bench_function(BenchmarkId::new("four_seats", venue.name), |b| b.iter_custom(|n| four.run(n)));

        // Averages over a venue filling from empty until no row has four seats together.
        let mut best =
            HoldCycle::new(engine, |_| Selection::BestAvailable { quantity: 4, section: None, adjacent: true });
        group.bench_function(BenchmarkId::new("best_available_4_adjacent", venue.name), |b| {
            b.iter_custom(|n| best.run(n))
        });
    }
    group.finish();
}

fn expiry(c: &mut Criterion) {
    const HOLDS: usize = 10_000;
    let [venue, _] = venues();
    let mut engine = pristine(&venue.layout);
    let seats = engine.seats().len() as usize;
    for i in 0..HOLDS {
        let selection = Selection::Seats(vec![SeatIndex(scattered(i, seats) as u32)]);
        let at = Timestamp::from_millis(NOW.millis() + i as i64);
        engine.hold(request(i, selection), at).expect("scattered seats are free");
    }
    let all_lapsed = Timestamp::from_millis(NOW.millis() + HOLDS as i64).plus(HOLD_TTL);

    let mut group = c.benchmark_group("expiry");
    group.throughput(Throughput::Elements(HOLDS as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("tick_expiring_10k_holds", venue.name), |b| {
        // The engine and its change set are returned so that dropping them is not timed.
        b.iter_batched(
            || engine.clone(),
            |mut e| {
                let expired = e.tick(all_lapsed);
                (e, expired)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn resolution(c: &mut Criterion) {
    let [venue, _] = venues();
    let engine = pristine(&venue.layout);
    let seats = engine.seats().len() as usize;
    let ids: Vec<String> = (0..1024).map(|i| engine.seats().seat_id(SeatIndex(scattered(i, seats) as u32))).collect();

    let mut group = c.benchmark_group("resolve");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function(BenchmarkId::new("seat_id", venue.name), |b| {
        b.iter(|| {
            for id in &ids {
                black_box(engine.seats().resolve(black_box(id)));
            }
        })
    });
    // A request's four ids, checked for unknown and duplicate seats as a hold request is.
    let request: Vec<&str> = ids[..4].iter().map(String::as_str).collect();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("request_of_4_ids", venue.name), |b| {
        b.iter(|| engine.resolve_seats(black_box(&request)))
    });
    group.finish();
}

/// Buyers in line when a queue benchmark starts, and joins made on one copy of its engine.
const WAITING: usize = 10_000;

/// Buyer `i` of the queue benchmarks.
fn buyer(i: usize) -> UserId {
    UserId(Uuid::from_u128(i as u128))
}

/// Queue settings admitting `rate_per_second` buyers a second with at most `max_active` in at
/// once. Waiters never miss a heartbeat and admissions never lapse within a benchmark, so
/// a tick's only queue work is admitting.
fn queue_settings(rate_per_second: u32, max_active: u32) -> QueueSettings {
    let day = Duration::from_millis(DAY_MS as u64);
    QueueSettings { enabled: true, rate_per_second, max_active, admission_ttl: day, heartbeat_ttl: day }
}

/// The 2,000-seat event selling through a queue with `settings`, opened at [`NOW`], with
/// `waiting` buyers who joined at `NOW`. Rate credit starts from zero at opening, so under a
/// rate limit all of them are still in line.
fn queued(settings: QueueSettings, waiting: usize) -> EventEngine {
    let [_, venue] = venues();
    let mut engine = with_queue(&venue.layout, settings);
    engine.tick(NOW).expect("the queue opens at the first tick of the sale");
    for i in 0..waiting {
        let (standing, _) = engine.join_queue(buyer(i), NOW).expect("the queue takes joiners");
        assert!(matches!(standing, QueueStanding::Waiting { position: Some(_), .. }), "no credit at opening");
    }
    engine
}

/// Joins by new buyers on a copy of a prepared engine, starting over on a fresh copy every
/// [`WAITING`] joins. Join `k` on a copy is made at `at(k)`, and must leave its buyer in a
/// standing `expected` accepts.
struct JoinCycle {
    pristine: EventEngine,
    engine: EventEngine,
    next: usize,
    at: fn(usize) -> Timestamp,
    expected: fn(&QueueStanding) -> bool,
}

impl JoinCycle {
    fn new(pristine: EventEngine, at: fn(usize) -> Timestamp, expected: fn(&QueueStanding) -> bool) -> Self {
        Self { engine: pristine.clone(), pristine, next: 0, at, expected }
    }

    /// Makes `iters` joins and returns the time spent inside `EventEngine::join_queue` alone.
    fn run(&mut self, iters: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = usize::try_from(iters).expect("iteration count fits usize");
        while left > 0 {
            if self.next == WAITING {
                self.engine = self.pristine.clone();
                self.next = 0;
            }
            let n = left.min(WAITING - self.next);
            // Buyers `0..WAITING` may be in line already; joiners come after them.
            let joins: Vec<(UserId, Timestamp)> =
                (self.next..self.next + n).map(|k| (buyer(WAITING + k), (self.at)(k))).collect();
            let mut results = Vec::with_capacity(n);
            let start = Instant::now();
            for &(user, at) in &joins {
                results.push(self.engine.join_queue(user, at));
            }
            elapsed += start.elapsed();
            let joined = |r: &Result<(QueueStanding, Option<ChangeSet>), EngineError>| {
                r.as_ref().is_ok_and(|(standing, changes)| changes.is_some() && (self.expected)(standing))
            };
            assert!(results.iter().all(joined), "every timed join queues a new buyer as expected");
            self.next += n;
            left -= n;
        }
        elapsed
    }
}

/// Admission ticks [`ADMISSION_INTERVAL`] apart on a copy of an engine with [`WAITING`]
/// buyers in line, each earning the rate credit for exactly `batch` admissions, starting
/// over on a fresh copy once the line is empty.
struct AdmitCycle {
    pristine: EventEngine,
    engine: EventEngine,
    batch: usize,
    next: usize,
}

impl AdmitCycle {
    fn new(batch: usize) -> Self {
        assert_eq!(WAITING % batch, 0, "the line empties on a tick boundary");
        let per_second = u32::try_from(1_000 / ADMISSION_INTERVAL.as_millis()).expect("ticks a second fit u32");
        // The cap is set, but never reached: the line holds no more than it allows.
        let settings = queue_settings(batch as u32 * per_second, WAITING as u32);
        let pristine = queued(settings, WAITING);
        Self { engine: pristine.clone(), pristine, batch, next: 0 }
    }

    /// Makes `iters` ticks and returns the time spent inside `EventEngine::tick` alone.
    fn run(&mut self, iters: u64) -> Duration {
        let ticks = WAITING / self.batch;
        let mut elapsed = Duration::ZERO;
        let mut left = usize::try_from(iters).expect("iteration count fits usize");
        while left > 0 {
            if self.next == ticks {
                self.engine = self.pristine.clone();
                self.next = 0;
            }
            let n = left.min(ticks - self.next);
            let times: Vec<Timestamp> =
                (self.next..self.next + n).map(|k| NOW.plus(ADMISSION_INTERVAL * (k as u32 + 1))).collect();
            let mut results = Vec::with_capacity(n);
            let start = Instant::now();
            for &at in &times {
                results.push(self.engine.tick(at));
            }
            elapsed += start.elapsed();
            assert!(results.iter().all(|r| admissions(r) == self.batch), "every timed tick admits a full batch");
            self.next += n;
            left -= n;
        }
        elapsed
    }
}

/// How many buyers a tick's change set admitted.
fn admissions(changes: &Option<ChangeSet>) -> usize {
    let admitted = |c: &&Change| matches!(c, Change::Queue(QueueChange::Admitted { .. }));
    changes.iter().flat_map(|c| &c.changes).filter(admitted).count()
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1));
    let rate = 1_000;

    // Everyone joins at opening, before any rate credit: each new buyer goes to the back of a
    // line of 10,000 to 20,000.
    let mut behind = JoinCycle::new(
        queued(queue_settings(rate, 0), WAITING),
        |_| NOW,
        |s| matches!(s, QueueStanding::Waiting { position: Some(_), .. }),
    );
    group.bench_function(BenchmarkId::new("join", "behind_10k_waiting"), |b| b.iter_custom(|n| behind.run(n)));

    // An empty line and joins 1 ms apart at 1,000 a second: each join earns the credit for
    // one admission, so the same change set carries `Joined` and `Admitted`.
    let mut through = JoinCycle::new(
        queued(queue_settings(rate, 0), 0),
        |k| NOW.plus(Duration::from_millis(k as u64 + 1)),
        |s| matches!(s, QueueStanding::Admitted { .. }),
    );
    group.bench_function(BenchmarkId::new("join", "admitted_at_once"), |b| b.iter_custom(|n| through.run(n)));

    // One element is one admission, so elem/s reads as admissions per second of engine time.
    for batch in [1, 50, 500] {
        let mut admit = AdmitCycle::new(batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("admit_tick", format!("batch_{batch}")), |b| {
            b.iter_custom(|n| admit.run(n))
        });
    }
    group.finish();
}

criterion_group!(benches, holds, expiry, resolution, queue);
criterion_main!(benches);
