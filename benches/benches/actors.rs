//! Actor micro-benchmarks: a message's round trip through an [`EventHandle`] to an event's
//! actor, from one caller and from 64 concurrent callers, and the JSON that the live stream
//! and the REST seat map send for a 50,000-seat event.
//!
//! Round trips run on tokio's multi-threaded runtime with its default worker count (one per
//! core, as the `tiketi` binary runs) against the in-memory store, with no tracing
//! subscriber installed. Each caller is a task, as an HTTP handler would be; its requests
//! are built before the clock starts and every answer is checked after it stops. The time
//! is the wall time from releasing the callers until the last answer, per call: with one
//! caller that is the round-trip latency, with 64 criterion's elem/s reads as the actor's
//! throughput under that load.
//!
//! - `actor_round_trip/reservation/*`: `EventHandle::reservation` of a held reservation of
//!   a general-admission event, a read whose answer is one small clone: the messaging cost.
//! - `actor_round_trip/hold_general/*`: `EventHandle::hold` of one ticket of a
//!   general-admission type of capacity `u32::MAX / 2` (holds never run out), no per-user
//!   limit. Each hold's change set goes to the write-behind journal, whose commit sends the
//!   actor a message of its own: both are part of the cost, as in production. Holds last a
//!   day, so each one stays in the engine and in the store, a few hundred bytes apiece; the
//!   runtime, store and actor are replaced by fresh ones (outside the timed region) every
//!   100,000 holds to bound that growth, and this group keeps its samples few and short.
//! - `stream/snapshot_message/50k_seats`: `Snapshot::message()`, the whole-map `snapshot`
//!   message a new subscriber gets, with 5,000 seats held. The message is built once per
//!   snapshot and then cached, so each iteration takes a fresh snapshot: a general-admission
//!   hold (which invalidates the cached one), then `EventHandle::subscribe(None)`, untimed.
//! - `stream/seats_delta/{1_change,100_changes,1000_changes}`: building a frame's `seats`
//!   message for N changed seats of that map. The stream builds it in `LiveStream::flush`,
//!   which is crate-private, so the timed code is a copy of that build (seat ids from the
//!   seat map, the message struct, `serde_json::to_vec`; only the final `Bytes::from` is
//!   left out), checked first to produce byte for byte the frame the actor sent for the
//!   same N single-seat holds. `LiveStream::record`'s per-change bookkeeping and the
//!   broadcast are not timed.
//! - `rest/seat_map_json/50k_seats` and `rest/seat_statuses_json/50k_seats`: the body of
//!   `GET /events/{id}/seats` and of its compact form (`?view=status`), rendered from the
//!   actor's `SeatsSnapshot`. The handler renders a body once per seat-map version and
//!   answers later readers of that version from `SeatsSnapshot::body`, so this is what each
//!   new version costs: the handler's own renderers (`render_seats`, `render_statuses`),
//!   checked first to be byte for byte what the running application answers. Fetching the
//!   snapshot from the actor is not timed.
//!
//! Run with `cargo bench -p tiketi-benches --bench actors`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tiketi_actors::{
    ActorConfig, ActorError, Clock, EventHandle, HoldCmd, Runtime, SeatsSnapshot, SelectionInput, Snapshot, Start,
};
use tiketi_api::Application;
use tiketi_api::routes::events::{render_seats, render_statuses};
use tiketi_engine::{
    EventId, EventStatus, LayoutSpec, QueueSettings, Reservation, ReservationId, SeatCounts, SeatIndex, SeatMap,
    SeatStatus, TicketTypeId, TicketTypeSpec, Timestamp, UserId,
};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{EventRecord, MemoryStore, Store};
use tokio::sync::{Barrier, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// 2026-01-05T08:00:00Z: every clock here reads this at its start.
const NOW: Timestamp = Timestamp::from_millis(1_767_600_000_000);
const DAY_MS: i64 = 86_400_000;
const DAY: Duration = Duration::from_millis(DAY_MS as u64);
/// How many callers send at once.
const CALLERS: [usize; 2] = [1, 64];
/// Holds one runtime and store take before fresh ones replace them.
const HOLDS_PER_STORE: usize = 100_000;
const GA_EVENT: EventId = EventId(Uuid::from_u128(1));
const MAP_EVENT: EventId = EventId(Uuid::from_u128(2));
const GENERAL: TicketTypeId = TicketTypeId(Uuid::from_u128(3));
/// Seats of the 50,000-seat map held before its benchmarks start.
const PRE_HELD: usize = 5_000;
/// Changed seats in one `seats` message.
const DELTAS: [usize; 3] = [1, 100, 1_000];
/// A prime, so it is coprime with the map's 50,000 seats.
const STRIDE: usize = 7_919;

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime")
}

/// An event on sale from a day before [`NOW`] for a month: holds last a day, no per-user
/// limit, no queue, and a general-admission type that never runs out.
fn event_record(id: EventId, layout: Option<LayoutSpec>) -> EventRecord {
    let general = TicketTypeSpec { id: GENERAL, name: "Standing".into(), price: 100, capacity: u32::MAX / 2 };
    let mut record = EventRecord {
        id,
        title: "Bench Night".into(),
        description: String::new(),
        venue: "Bench Hall".into(),
        artist: "Bench Artist".into(),
        event_date: NOW.plus(DAY * 31),
        sale_start: Timestamp::from_millis(NOW.millis() - DAY_MS),
        sale_end: NOW.plus(DAY * 30),
        layout,
        layout_id: None,
        ticket_types: vec![general],
        per_user_limit: 0,
        hold_ttl: DAY,
        max_per_reservation: 10,
        queue: QueueSettings::default(),
        queue_seed: [0; 32],
        status: EventStatus::Upcoming,
        created_at: NOW,
        updated_at: NOW,
    };
    record.status = record.status_at(NOW);
    record
}

/// Hold `i` on one store: a general-admission ticket for one of 64 buyers.
fn general_hold(i: usize) -> HoldCmd {
    HoldCmd {
        id: ReservationId(Uuid::from_u128(i as u128 + 1)),
        user: UserId(Uuid::from_u128((i % 64) as u128 + 1)),
        selection: SelectionInput::General { ticket_type: GENERAL, quantity: 1 },
        idempotency: None,
        admitted: false,
    }
}

/// The general-admission event's actor on its own actor runtime and in-memory store.
struct Live {
    runtime: Runtime,
    handle: EventHandle,
}

impl Live {
    async fn start() -> Self {
        let record = event_record(GA_EVENT, None);
        let store = Arc::new(MemoryStore::new());
        store.create_event(record).await.expect("the event is stored");
        let clock = Clock::starting_at(NOW);
        let runtime = Runtime::start(store, JournalConfig::default(), ActorConfig::default(), clock, None)
            .await
            .expect("the actor runtime starts");
        let handle = runtime.directory().get(GA_EVENT).await.expect("the event's actor activates");
        Self { runtime, handle }
    }

    async fn stop(self) {
        drop(self.handle);
        self.runtime.shutdown().await;
    }
}

/// Spreads `inputs` over `callers` tasks, each sending its share one call after another
/// with `caller`, and returns the wall time from releasing them all until the last answer,
/// with every answer. Starting the tasks is not timed.
async fn concurrently<I, R, F, Fut>(
    handle: &EventHandle,
    callers: usize,
    inputs: Vec<I>,
    caller: F,
) -> (Duration, Vec<Vec<R>>)
where
    I: Send + 'static,
    R: Send + 'static,
    F: Fn(EventHandle, Vec<I>) -> Fut,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
    let mut shares: Vec<Vec<I>> = (0..callers).map(|_| Vec::with_capacity(inputs.len() / callers + 1)).collect();
    for (i, input) in inputs.into_iter().enumerate() {
        shares[i % callers].push(input);
    }
    let ready = Arc::new(Barrier::new(callers + 1));
    let (go, _) = watch::channel(false);
    let tasks: Vec<JoinHandle<Vec<R>>> = shares
        .into_iter()
        .map(|share| {
            let work = caller(handle.clone(), share);
            let (ready, mut go) = (ready.clone(), go.subscribe());
            tokio::spawn(async move {
                ready.wait().await;
                go.wait_for(|&go| go).await.expect("the sender outlives the callers");
                work.await
            })
        })
        .collect();
    // Every caller is parked before the clock starts, and none sends before it has.
    ready.wait().await;
    let start = Instant::now();
    go.send_replace(true);
    let mut answers = Vec::with_capacity(callers);
    for task in tasks {
        answers.push(task.await.expect("a caller task runs to the end"));
    }
    (start.elapsed(), answers)
}

/// One caller's reads of `ids`, one after another.
async fn read_each(handle: EventHandle, ids: Vec<ReservationId>) -> Vec<Result<Option<Reservation>, ActorError>> {
    let mut answers = Vec::with_capacity(ids.len());
    for id in ids {
        answers.push(handle.reservation(id).await);
    }
    answers
}

/// One caller's holds, one after another.
async fn hold_each(handle: EventHandle, holds: Vec<HoldCmd>) -> Vec<Result<Reservation, ActorError>> {
    let mut answers = Vec::with_capacity(holds.len());
    for hold in holds {
        answers.push(handle.hold(hold).await);
    }
    answers
}

/// Holds on the general-admission event, on a fresh runtime and store every
/// [`HOLDS_PER_STORE`] holds.
struct Holds {
    live: Option<Live>,
    made: usize,
}

impl Holds {
    async fn start() -> Self {
        Self { live: Some(Live::start().await), made: 0 }
    }

    /// Makes `iters` holds from `callers` callers and returns the time they took.
    async fn run(&mut self, callers: usize, iters: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = usize::try_from(iters).expect("iteration count fits usize");
        while left > 0 {
            if self.made == HOLDS_PER_STORE {
                if let Some(old) = self.live.take() {
                    old.stop().await;
                }
                self.live = Some(Live::start().await);
                self.made = 0;
            }
            let n = left.min(HOLDS_PER_STORE - self.made);
            let holds = (self.made..self.made + n).map(general_hold).collect();
            let live = self.live.as_ref().expect("started");
            let (took, answers) = concurrently(&live.handle, callers, holds, hold_each).await;
            if let Some(e) = answers.iter().flatten().find_map(|a| a.as_ref().err()) {
                panic!("every timed hold is taken, but one was refused: {e}");
            }
            elapsed += took;
            self.made += n;
            left -= n;
        }
        elapsed
    }

    async fn stop(mut self) {
        if let Some(live) = self.live.take() {
            live.stop().await;
        }
    }
}

fn callers_label(callers: usize) -> String {
    if callers == 1 { "1_caller".into() } else { format!("{callers}_callers") }
}

fn changes_label(changes: usize) -> String {
    if changes == 1 { "1_change".into() } else { format!("{changes}_changes") }
}

fn round_trips(c: &mut Criterion) {
    let tokio = tokio_runtime();
    let mut group = c.benchmark_group("actor_round_trip");
    // One element is one round trip: with 64 callers elem/s is round trips per second.
    group.throughput(Throughput::Elements(1));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    let held = general_hold(0).id;
    let reads = tokio.block_on(async {
        let live = Live::start().await;
        live.handle.hold(general_hold(0)).await.expect("the reservation to read is held");
        live
    });
    for callers in CALLERS {
        group.bench_function(BenchmarkId::new("reservation", callers_label(callers)), |b| {
            b.iter_custom(|n| {
                let ids = vec![held; usize::try_from(n).expect("iteration count fits usize")];
                let (took, answers) = tokio.block_on(concurrently(&reads.handle, callers, ids, read_each));
                let found = |a: &Result<Option<Reservation>, ActorError>| matches!(a, Ok(Some(r)) if r.id == held);
                assert!(answers.iter().flatten().all(found), "every timed read finds the reservation");
                took
            })
        });
    }

    let mut holds = tokio.block_on(Holds::start());
    for callers in CALLERS {
        group.bench_function(BenchmarkId::new("hold_general", callers_label(callers)), |b| {
            b.iter_custom(|n| tokio.block_on(holds.run(callers, n)))
        });
    }
    group.finish();
    tokio.block_on(async {
        reads.stop().await;
        holds.stop().await;
    });
}

/// `LiveStream::flush`'s `seats` message, as actors/src/stream.rs declares it (`WireSeats`).
/// Its `ticketTypes` field is left out: it is skipped unless general-admission counters
/// changed, and only seats change in these frames.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSeats {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    at: i64,
    changes: Vec<WireSeatChange>,
    counts: SeatCounts,
}

#[derive(Serialize)]
struct WireSeatChange {
    id: String,
    status: &'static str,
}

/// The `seats` message for `pending` changes, built as `LiveStream::flush` builds it.
fn seats_message(map: &SeatMap, pending: &[(SeatIndex, SeatStatus)], seq: u64, at: i64, counts: SeatCounts) -> Vec<u8> {
    let changes = pending
        .iter()
        .map(|&(seat, status)| WireSeatChange { id: map.seat_id(seat), status: status.as_str() })
        .collect();
    let message = WireSeats { kind: "seats", seq, at, changes, counts };
    serde_json::to_vec(&message).expect("wire messages always serialise")
}

/// Renders a seat map response body: the handler's own renderers.
type Render = fn(&SeatsSnapshot) -> bytes::Bytes;

/// What one `seats` frame carried, enough to build it again.
struct Delta {
    pending: Vec<(SeatIndex, SeatStatus)>,
    seq: u64,
    at: i64,
    counts: SeatCounts,
}

/// The 50,000-seat event (10 sections of 100 rows of 50) served by the whole application:
/// HTTP on a local port, the in-memory store, and a live stream whose frames go out only
/// when a subscriber joins (its tick is an hour), so one frame carries exactly the changes
/// made since the last one.
struct MapApp {
    handle: EventHandle,
    base: String,
    map: SeatMap,
    next_seat: usize,
    next_reservation: u128,
    last_snapshot: u64,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), String>>,
}

impl MapApp {
    async fn start() -> Self {
        let layout = LayoutSpec::grid(10, 100, 50, 100);
        let map = SeatMap::new(&layout).expect("grid layouts are valid");
        let store = Arc::new(MemoryStore::new());
        store.create_event(event_record(MAP_EVENT, Some(layout))).await.expect("the event is stored");
        let mut settings = tiketi_api::Settings::for_tests();
        settings.auth.jwt_secret = "a-bench-secret-that-is-at-least-32-bytes-long".into();
        // A chosen password: the application prints one it makes up.
        settings.auth.admin_password = "a-bench-admin-password".into();
        settings.stream.tick_ms = 3_600_000;
        let app = Application::build_with(settings, store, Clock::starting_at(NOW)).await.expect("application builds");
        let base = format!("http://127.0.0.1:{}/api/v1", app.port());
        let handle = app.state().directory().get(MAP_EVENT).await.expect("the event's actor activates");
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = app.run_until(async move {
            let _ = stopped.await;
        });
        let server = tokio::spawn(async move { serve.await.map_err(|e| format!("{e:#}")) });
        let mut app = Self { handle, base, map, next_seat: 0, next_reservation: 0, last_snapshot: 0, stop, server };
        app.hold_seats(PRE_HELD).await;
        app
    }

    fn reservation(&mut self) -> ReservationId {
        self.next_reservation += 1;
        ReservationId(Uuid::from_u128(self.next_reservation))
    }

    /// Holds the next `n` seats in a scattered order, one hold each, and returns them as
    /// the stream records them.
    async fn hold_seats(&mut self, n: usize) -> Vec<(SeatIndex, SeatStatus)> {
        let seats = self.map.len() as usize;
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let seat = SeatIndex((self.next_seat % seats * STRIDE % seats) as u32);
            self.next_seat += 1;
            let hold = HoldCmd {
                id: self.reservation(),
                user: UserId(Uuid::from_u128(1)),
                selection: SelectionInput::Seats(vec![self.map.seat_id(seat)]),
                idempotency: None,
                admitted: false,
            };
            self.handle.hold(hold).await.expect("a seat nobody held is held");
            held.push((seat, SeatStatus::Held));
        }
        held
    }

    /// A snapshot whose message nobody has built yet: a general-admission hold invalidates
    /// the stream's cached snapshot, and the next subscriber gets a new one.
    async fn fresh_snapshot(&mut self) -> Arc<Snapshot> {
        let hold = HoldCmd {
            id: self.reservation(),
            user: UserId(Uuid::from_u128(1)),
            selection: SelectionInput::General { ticket_type: GENERAL, quantity: 1 },
            idempotency: None,
            admitted: false,
        };
        self.handle.hold(hold).await.expect("general admission never runs out");
        let subscription = self.handle.subscribe(None).await.expect("subscribes");
        let Start::Snapshot(snapshot) = subscription.start else {
            panic!("a subscriber without resume starts from a snapshot")
        };
        assert!(snapshot.seq > self.last_snapshot, "each snapshot is a new one");
        self.last_snapshot = snapshot.seq;
        snapshot
    }

    /// Holds `n` more seats and catches the frame the actor sends for them; checks that
    /// [`seats_message`] builds the same bytes and returns what it needs to.
    async fn delta(&mut self, n: usize) -> Delta {
        let mut subscription = self.handle.subscribe(None).await.expect("subscribes");
        let pending = self.hold_seats(n).await;
        // A new subscriber flushes what the stream has gathered as one frame.
        drop(self.handle.subscribe(None).await.expect("subscribes"));
        let frame = subscription.frames.recv().await.expect("the frame of the holds");
        let view = self.handle.view().await.expect("the event's view");
        assert_eq!((frame.seq, frame.messages.len()), (view.seq, 1), "one frame, of seat changes only");
        let sent: Value = serde_json::from_slice(&frame.messages[0]).expect("the frame is JSON");
        let at = sent["at"].as_i64().expect("the frame says when its first change was decided");
        let delta = Delta { pending, seq: view.seq, at, counts: view.counts };
        let built = seats_message(&self.map, &delta.pending, delta.seq, delta.at, delta.counts);
        assert_eq!(built.as_slice(), &frame.messages[0][..], "the copied build sends what the stream sent");
        delta
    }

    /// The actor's seat map snapshot, checked to render as the application's
    /// `GET /events/{id}/seats` answers, in both forms.
    async fn seats_checked(&self) -> Arc<SeatsSnapshot> {
        let snapshot = self.handle.seats().await.expect("the seat map");
        let client = reqwest::Client::new();
        let forms: [(&str, Render); 2] = [("full", render_seats), ("status", render_statuses)];
        for (view, render) in forms {
            let url = format!("{}/events/{}/seats?view={view}", self.base, MAP_EVENT);
            let response = client.get(url).send().await.expect("GET seats");
            assert!(response.status().is_success(), "GET seats?view={view} answers {}", response.status());
            let body = response.bytes().await.expect("the body");
            assert_eq!(render(&snapshot), body, "the rendered {view} body is what the handler sends");
        }
        snapshot
    }

    async fn stop(self) {
        drop(self.handle);
        let _ = self.stop.send(());
        self.server.await.expect("the server task ends").expect("the application shuts down cleanly");
    }
}

/// Checks once that a snapshot message is the whole map with what is held.
fn check_snapshot(message: &[u8], seats: usize, held: usize) {
    let sent: Value = serde_json::from_slice(message).expect("the snapshot is JSON");
    let all = sent["seats"].as_array().expect("the snapshot lists seats");
    assert_eq!(sent["type"], "snapshot");
    assert_eq!(all.len(), seats, "every seat is in the snapshot");
    assert_eq!(all.iter().filter(|s| s["status"] == "held").count(), held, "the held seats show as held");
}

fn stream_and_rest(c: &mut Criterion) {
    let tokio = tokio_runtime();
    let mut app = tokio.block_on(MapApp::start());
    let seats = app.map.len() as usize;

    let mut group = c.benchmark_group("stream");
    group.sample_size(20);
    // One element is one seat in the message.
    group.throughput(Throughput::Elements(seats as u64));
    let probe = tokio.block_on(app.fresh_snapshot());
    check_snapshot(&probe.message(), seats, PRE_HELD);
    group.bench_function(BenchmarkId::new("snapshot_message", "50k_seats"), |b| {
        // The snapshot and its message are returned so that dropping them is not timed.
        b.iter_batched(
            || tokio.block_on(app.fresh_snapshot()),
            |snapshot| {
                let message = snapshot.message();
                (snapshot, message)
            },
            BatchSize::PerIteration,
        )
    });
    for n in DELTAS {
        let delta = tokio.block_on(app.delta(n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("seats_delta", changes_label(n)), |b| {
            b.iter_with_large_drop(|| seats_message(&app.map, &delta.pending, delta.seq, delta.at, delta.counts))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("rest");
    group.sample_size(20);
    group.throughput(Throughput::Elements(seats as u64));
    let snapshot = tokio.block_on(app.seats_checked());
    group.bench_function(BenchmarkId::new("seat_map_json", "50k_seats"), |b| {
        b.iter_with_large_drop(|| render_seats(&snapshot))
    });
    group.bench_function(BenchmarkId::new("seat_statuses_json", "50k_seats"), |b| {
        b.iter_with_large_drop(|| render_statuses(&snapshot))
    });
    group.finish();
    tokio.block_on(app.stop());
}

criterion_group!(benches, round_trips, stream_and_rest);
criterion_main!(benches);
