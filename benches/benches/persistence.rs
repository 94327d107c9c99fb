//! Persistence benchmarks against a real PostgreSQL (a throwaway cluster from
//! `tiketi-testkit`): not criterion micro-benchmarks but four end-to-end measurements, each
//! repeated three times, printed as one markdown table of medians.
//!
//! 1. Flusher throughput: pre-decided 4-seat holds (5 changes each) fed to the
//!    write-behind journal as fast as it takes them, timed from the first send until
//!    `Journal::flushed` returns.
//! 2. Commit lag: holds fed at a steady 10,000/s; per change set, the time from its send to
//!    the journal's commit callback covering its seq.
//! 3. Actor activation: a 100,000-seat event with 20,000 sold and 5,000 held seats,
//!    activated through the directory, evicted and activated again.
//! 4. Hold latency over HTTP: the real application with PostgreSQL and with the embedded
//!    store side by side, 64 concurrent clients each holding single seats one after another.
//! 5. Hold latency over HTTP, open loop: the same two applications offered a fixed arrival
//!    rate of single-seat holds; each request is spawned at its intended send time and its
//!    latency counted from that time, so queueing anywhere (client, server, database) shows.
//!
//! Run with `cargo bench -p tiketi-benches --bench persistence`.

#[path = "common/event.rs"]
mod event;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiketi_actors::{ActorConfig, Clock, Runtime};
use tiketi_api::Application;
use tiketi_api::settings::StoreKind;
use tiketi_benches::machine::{loadavg, nproc, uname_r};
use tiketi_benches::report::{Row, ms, percentile, print_table};
use tiketi_engine::{
    Change, EventEngine, EventId, EventStatus, HoldRequest, LayoutSpec, ReservationId, SeatIndex, SeatMap, Selection,
    Timestamp, UserId,
};
use tiketi_persistence::journal::{Journal, JournalConfig, OnCommit};
use tiketi_persistence::{EventRecord, JournalEntry, NewUser, PgStore, Role, Store};
use uuid::Uuid;

const RUNS: usize = 3;
const HOLD_TTL: Duration = Duration::from_secs(3600);

/// Bench 1: a 50,000-seat event filled by 12,500 holds of 4 seats.
const FLUSH_LAYOUT: (u32, u32, u32) = (10, 100, 50);
/// Bench 2: 10,000 holds/s for 3 s, 4 seats each (120,000 seats), and a rate the flusher
/// can sustain here, to tell saturation from lag per batch.
const LAG_RATES: [u64; 2] = [10_000, 2_000];
const LAG_SECONDS: u64 = 3;
/// Bench 3: 100,000 seats; 20,000 sold and 5,000 held, in 4-seat reservations.
const ACTIVATION_LAYOUT: (u32, u32, u32) = (10, 200, 50);
const SOLD: u32 = 20_000;
const HELD: u32 = 5_000;
/// Bench 5: offered rates (holds/s), each for a warm-up (not recorded) and then the measured
/// time, on a fresh 100,000-seat event (the same layout as bench 4) per run.
const OPEN_RATES: [u64; 2] = [2_000, 4_000];
const OPEN_WARMUP: Duration = Duration::from_millis(500);
const OPEN_SECONDS: u64 = 4;
/// Bench 4: 64 clients for 3 s on a 100,000-seat event (10 sections x 100 rows x 100
/// seats), fresh per run so no client runs out of seats.
const CLIENTS: usize = 64;
const HTTP_SECONDS: u64 = 3;
const HTTP_SECTIONS: u32 = 10;
const HTTP_ROWS: u32 = 100;
const HTTP_SEATS_PER_ROW: u32 = 100;
const BUYERS: usize = 8;
const ADMIN_EMAIL: &str = "admin@bench.local";
const ADMIN_PASSWORD: &str = "admin-password-for-benches";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    // `cargo bench --bench persistence -- lag` runs only the benchmarks whose name contains
    // an argument (flusher, lag, activation, http, http-open; so `http` runs both HTTP
    // benchmarks); cargo's own `--bench` flag is ignored.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let started = Instant::now();
    println!("# Tiketi persistence benchmarks");
    println!();
    println!("machine: nproc = {}, uname -r = {}", nproc(), uname_r());
    println!("load at start (/proc/loadavg): {}", loadavg());
    let cluster = Instant::now();
    let url = tiketi_testkit::fresh_database().await;
    let store = PgStore::connect(&url, 4).expect("a database url");
    store.migrate().await.expect("migrations apply");
    let store: Arc<dyn Store> = Arc::new(store);
    let users = create_users(&*store, 16).await;
    println!("PostgreSQL (tiketi-testkit cluster) ready in {:.1} s", cluster.elapsed().as_secs_f64());

    let mut rows = Vec::new();
    let mut notes = Vec::new();

    if wanted("flusher") {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(flusher_throughput(&store, &users).await);
        }
        let name = "1 flusher -> PG";
        rows.push(Row::new(name, "seat changes/s", runs.iter().map(|r| r.seat_changes_per_s), 0, ">= 50,000"));
        rows.push(Row::new(name, "change sets/s", runs.iter().map(|r| r.change_sets_per_s), 0, ""));
        rows.push(Row::new(name, "avg batch (entries/batches)", runs.iter().map(|r| r.avg_batch), 1, ""));
        rows.push(Row::new(name, "batches", runs.iter().map(|r| r.batches as f64), 0, ""));
        let full: u64 = runs.iter().map(|r| r.full_waits).sum();
        notes.push(format!("flusher: {} change sets per run, journal-full waits: {full}", runs[0].sets));
    }

    if wanted("lag") {
        for rate in LAG_RATES {
            let mut runs = Vec::new();
            for _ in 0..RUNS {
                runs.push(commit_lag(&store, &users, rate).await);
            }
            let name = format!("2 commit lag @ {rate} holds/s ({} seat changes/s)", rate * 4);
            rows.push(Row::new(&name, "p50 ms", runs.iter().map(|r| r.p50_ms), 2, ""));
            rows.push(Row::new(&name, "p99 ms", runs.iter().map(|r| r.p99_ms), 2, "<= 50"));
            rows.push(Row::new(&name, "max ms", runs.iter().map(|r| r.max_ms), 2, ""));
            rows.push(Row::new(&name, "avg batch", runs.iter().map(|r| r.avg_batch), 1, ""));
            let full: u64 = runs.iter().map(|r| r.full_waits).sum();
            notes.push(format!(
                "commit lag @ {rate}/s: {} samples per run, journal-full waits: {full}",
                runs[0].samples
            ));
        }
    }

    if wanted("activation") {
        let act = activation(&store, &users).await;
        let name = "3 activation 100k seats (20k sold, 5k held)";
        rows.push(Row::new(name, "Directory::get ms", act.activations_ms.iter().copied(), 1, "<= 200"));
        rows.push(Row::new(name, "of which Store::load_event ms", act.load_ms.iter().copied(), 1, ""));
        notes.push(format!("activation: first (cold) activation, not in the median: {:.1} ms", act.first_ms));
    }

    if wanted("http") {
        let (pg, memory) = http_holds().await;
        for (name, runs) in [("4 HTTP holds, PostgreSQL", &pg), ("4 HTTP holds, embedded", &memory)] {
            rows.push(Row::new(name, "holds/s", runs.iter().map(|r| r.holds_per_s), 0, ""));
            rows.push(Row::new(name, "p50 ms", runs.iter().map(|r| r.p50_ms), 2, ""));
            rows.push(Row::new(name, "p99 ms", runs.iter().map(|r| r.p99_ms), 2, ""));
            rows.push(Row::new(name, "journal drain after run ms", runs.iter().map(|r| r.drain_ms), 1, ""));
        }
        let ratio = |f: fn(&HttpResult) -> f64| pg.iter().zip(&memory).map(|(p, m)| f(p) / f(m)).collect::<Vec<_>>();
        let name = "4 PG / embedded (per run pair)";
        rows.push(Row::new(name, "holds/s ratio", ratio(|r| r.holds_per_s), 3, ">= 0.90"));
        rows.push(Row::new(name, "p50 ratio", ratio(|r| r.p50_ms), 3, "<= 1.10"));
        rows.push(Row::new(name, "p99 ratio", ratio(|r| r.p99_ms), 3, "<= 1.10"));
        let errors: u64 = pg.iter().chain(&memory).map(|r| r.errors).sum();
        let holds: usize = pg.iter().chain(&memory).map(|r| r.holds).sum();
        let ran_out: usize = pg.iter().chain(&memory).map(|r| r.ran_out).sum();
        notes.push(format!(
            "http: {holds} holds in all, {errors} refused or failed, {ran_out} clients ran out of seats early"
        ));
    }

    if wanted("http-open") {
        for rate in OPEN_RATES {
            let (pg, memory) = open_loop_holds(rate).await;
            let pg_name = format!("5 HTTP open loop @ {rate} holds/s, PostgreSQL");
            let memory_name = format!("5 HTTP open loop @ {rate} holds/s, embedded");
            for (name, runs) in [(&pg_name, &pg), (&memory_name, &memory)] {
                rows.push(Row::new(name, "achieved holds/s", runs.iter().map(|r| r.achieved_per_s), 0, ""));
                rows.push(Row::new(name, "p50 ms", runs.iter().map(|r| r.p50_ms), 2, ""));
                rows.push(Row::new(name, "p99 ms", runs.iter().map(|r| r.p99_ms), 2, ""));
                rows.push(Row::new(name, "p99.9 ms", runs.iter().map(|r| r.p999_ms), 2, ""));
                rows.push(Row::new(name, "journal drain after run ms", runs.iter().map(|r| r.drain_ms), 1, ""));
            }
            let ratio =
                |f: fn(&OpenResult) -> f64| pg.iter().zip(&memory).map(|(p, m)| f(p) / f(m)).collect::<Vec<_>>();
            let name = format!("5 open loop @ {rate}/s PG / embedded (per run pair)");
            rows.push(Row::new(&name, "p50 ratio", ratio(|r| r.p50_ms), 3, "<= 1.10"));
            rows.push(Row::new(&name, "p99 ratio", ratio(|r| r.p99_ms), 3, "<= 1.10"));
            for (store, runs) in [("PostgreSQL", &pg), ("embedded", &memory)] {
                let errors: u64 = runs.iter().map(|r| r.errors).sum();
                let mut kinds = std::collections::BTreeMap::new();
                for (kind, n) in runs.iter().flat_map(|r| &r.error_kinds) {
                    *kinds.entry(kind.as_str()).or_insert(0) += n;
                }
                let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
                let holds: usize = runs.iter().map(|r| r.holds).sum();
                let late = runs.iter().map(|r| r.max_send_late_ms).fold(0.0, f64::max);
                let late_p99 = runs.iter().map(|r| r.p99_send_late_ms).fold(0.0, f64::max);
                notes.push(format!(
                    "open loop @ {rate}/s, {store}: {holds} recorded holds in {RUNS} runs, {errors} refused or \
                     failed{kinds}; scheduler lateness (spawn after intended time) p99 <= {late_p99:.2} ms, max \
                     {late:.2} ms"
                ));
            }
        }
    }

    println!();
    print_table(&rows, RUNS);
    println!();
    for note in notes {
        println!("{note}");
    }
    println!("load at end (/proc/loadavg): {}", loadavg());
    println!("total time: {:.0} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// 1. Flusher throughput

struct FlushResult {
    seat_changes_per_s: f64,
    change_sets_per_s: f64,
    avg_batch: f64,
    batches: u64,
    sets: usize,
    full_waits: u64,
}

async fn flusher_throughput(store: &Arc<dyn Store>, users: &[UserId]) -> FlushResult {
    let record = event_record(grid(FLUSH_LAYOUT));
    store.create_event(record.clone()).await.expect("event created");
    let now = now();
    let mut engine = engine_for(&record, now);
    let holds = (engine.seats().len() / 4) as usize;
    let entries: Vec<JournalEntry> =
        (0..holds).map(|i| hold_entry(&mut engine, users, i, i as u32 * 4, 4, now)).collect();
    let seat_changes = seat_changes(&entries);
    let sets = entries.len();

    let on_commit: OnCommit = Arc::new(|_: &[(EventId, u64)]| {});
    let (journal, flusher) = Journal::spawn(store.clone(), JournalConfig::default(), on_commit);
    let mut full_waits = 0;
    let start = Instant::now();
    for entry in entries {
        send(&journal, entry, &mut full_waits).await;
    }
    journal.flushed().await;
    let seconds = start.elapsed().as_secs_f64();
    let stats = journal.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let committed = stats.entries.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(stats.failures.load(std::sync::atomic::Ordering::Relaxed), 0, "no failed appends");
    assert_eq!(committed as usize, sets, "every change set committed");
    drop(journal);
    flusher.await.expect("flusher ends cleanly");
    FlushResult {
        seat_changes_per_s: seat_changes as f64 / seconds,
        change_sets_per_s: sets as f64 / seconds,
        avg_batch: committed as f64 / batches as f64,
        batches,
        sets,
        full_waits,
    }
}

/// Reserves a journal slot (waiting a little while the journal is full) and sends.
async fn send(journal: &Journal, entry: JournalEntry, full_waits: &mut u64) {
    loop {
        match journal.try_reserve() {
            Ok(permit) => return permit.send(entry),
            Err(_) => {
                *full_waits += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Commit lag

struct LagResult {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    avg_batch: f64,
    samples: usize,
    full_waits: u64,
}

#[derive(Default)]
struct LagState {
    /// Send instant by seq.
    sent: Vec<Option<Instant>>,
    /// Lowest seq not yet reported committed.
    next: usize,
    lags: Vec<Duration>,
}

async fn commit_lag(store: &Arc<dyn Store>, users: &[UserId], rate: u64) -> LagResult {
    let total = (rate * LAG_SECONDS) as usize;
    // Rows of 50 seats in 10 sections: room for every hold.
    let rows = (total as u32 * 4).div_ceil(10 * 50);
    let record = event_record(grid((10, rows, 50)));
    store.create_event(record.clone()).await.expect("event created");
    let now = now();
    let mut engine = engine_for(&record, now);
    let entries: Vec<JournalEntry> =
        (0..total).map(|i| hold_entry(&mut engine, users, i, i as u32 * 4, 4, now)).collect();
    let max_seq = entries.iter().map(|e| e.changes.seq).max().unwrap_or(0) as usize;

    let state = Arc::new(Mutex::new(LagState { sent: vec![None; max_seq + 1], next: 1, lags: Vec::new() }));
    let on_commit: OnCommit = {
        let state = state.clone();
        let event = record.id;
        Arc::new(move |committed: &[(EventId, u64)]| {
            let at = Instant::now();
            let mut st = state.lock().unwrap();
            for &(e, seq) in committed {
                if e != event {
                    continue;
                }
                let seq = seq as usize;
                for s in st.next..=seq {
                    if let Some(sent) = st.sent[s] {
                        st.lags.push(at - sent);
                    }
                }
                st.next = st.next.max(seq + 1);
            }
        })
    };
    let (journal, flusher) = Journal::spawn(store.clone(), JournalConfig::default(), on_commit);
    let mut full_waits = 0;
    let mut entries = entries.into_iter();
    let mut sent = 0usize;
    let start = Instant::now();
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while sent < due {
            let entry = entries.next().expect("an entry per send");
            let seq = entry.changes.seq as usize;
            state.lock().unwrap().sent[seq] = Some(Instant::now());
            send(&journal, entry, &mut full_waits).await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    journal.flushed().await;
    let stats = journal.stats();
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let committed = stats.entries.load(std::sync::atomic::Ordering::Relaxed);
    drop(journal);
    flusher.await.expect("flusher ends cleanly");
    let mut lags = std::mem::take(&mut state.lock().unwrap().lags);
    assert_eq!(lags.len(), total, "a lag for every change set");
    lags.sort();
    LagResult {
        p50_ms: ms(percentile(&lags, 0.50)),
        p99_ms: ms(percentile(&lags, 0.99)),
        max_ms: ms(*lags.last().expect("samples")),
        avg_batch: committed as f64 / batches as f64,
        samples: lags.len(),
        full_waits,
    }
}

// ---------------------------------------------------------------------------------------
// 3. Actor activation

struct ActivationResult {
    /// The cold first activation (not in the median).
    first_ms: f64,
    activations_ms: Vec<f64>,
    load_ms: Vec<f64>,
}

async fn activation(store: &Arc<dyn Store>, users: &[UserId]) -> ActivationResult {
    let record = event_record(grid(ACTIVATION_LAYOUT));
    store.create_event(record.clone()).await.expect("event created");
    let now = now();
    let mut engine = engine_for(&record, now);
    let mut entries = Vec::new();
    for i in 0..(SOLD / 4) as usize {
        entries.push(hold_entry(&mut engine, users, i, i as u32 * 4, 4, now));
        let id = reservation_of(entries.last().expect("just pushed"));
        let confirmed = engine.confirm(id, now).expect("a fresh hold confirms").expect("changes");
        entries.push(JournalEntry {
            event: record.id,
            fence: None,
            changes: confirmed,
            idempotency: Vec::new(),
            event_record: None,
            audit: Vec::new(),
        });
    }
    for i in 0..(HELD / 4) as usize {
        let n = (SOLD / 4) as usize + i;
        entries.push(hold_entry(&mut engine, users, n, n as u32 * 4, 4, now));
    }
    for batch in entries.chunks(2_000) {
        store.append(batch).await.expect("batch appended");
    }
    let counts = engine.counts();
    assert_eq!((counts.sold, counts.held), (SOLD, HELD), "the intended mix");

    let runtime =
        Runtime::start(store.clone(), JournalConfig::default(), ActorConfig::default(), Clock::system(), None)
            .await
            .expect("runtime starts");
    let directory = runtime.directory();
    let mut times = Vec::new();
    for _ in 0..=RUNS {
        directory.evict(record.id).await;
        let start = Instant::now();
        directory.get(record.id).await.expect("the event activates");
        times.push(ms(start.elapsed()));
    }
    directory.evict(record.id).await;
    runtime.shutdown().await;

    let mut load_ms = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let snapshot = store.load_event(record.id).await.expect("loads").expect("exists");
        load_ms.push(ms(start.elapsed()));
        assert_eq!(snapshot.live.len() as u32, (SOLD + HELD) / 4, "every live reservation loaded");
    }
    ActivationResult { first_ms: times[0], activations_ms: times[1..].to_vec(), load_ms }
}

// ---------------------------------------------------------------------------------------
// 4. Hold latency over HTTP

struct HttpResult {
    holds_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    holds: usize,
    errors: u64,
    /// Clients that used up their seats before the time was up.
    ran_out: usize,
    /// Time the journal needed after the run to commit what the run produced.
    drain_ms: f64,
}

struct App {
    name: &'static str,
    base: String,
    admin: String,
    buyers: Vec<String>,
    state: tiketi_api::state::AppState,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

async fn http_holds() -> (Vec<HttpResult>, Vec<HttpResult>) {
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
    let url = tiketi_testkit::fresh_database().await;
    let pg = start_app(&client, "postgres", StoreKind::Postgres, url).await;
    let memory = start_app(&client, "embedded", StoreKind::Memory, String::new()).await;
    let (mut pg_runs, mut memory_runs) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        // Alternate which goes first, so neither always runs on the warmer machine.
        if run % 2 == 0 {
            pg_runs.push(hold_run(&client, &pg).await);
            memory_runs.push(hold_run(&client, &memory).await);
        } else {
            memory_runs.push(hold_run(&client, &memory).await);
            pg_runs.push(hold_run(&client, &pg).await);
        }
    }
    for app in [pg, memory] {
        let _ = app.shutdown.send(());
        app.task.await.expect("app task").unwrap_or_else(|e| panic!("{} shuts down cleanly: {e}", app.name));
    }
    (pg_runs, memory_runs)
}

async fn start_app(client: &Client, name: &'static str, kind: StoreKind, database_url: String) -> App {
    let mut settings = tiketi_api::Settings::for_tests();
    settings.auth.admin_email = ADMIN_EMAIL.into();
    settings.auth.admin_password = ADMIN_PASSWORD.into();
    settings.auth.jwt_secret = "a-bench-secret-that-is-at-least-32-bytes-long".into();
    settings.store.kind = kind;
    settings.store.database_url = database_url;
    let app = Application::build(settings).await.expect("application builds");
    let base = format!("http://127.0.0.1:{}/api/v1", app.port());
    let state = app.state().clone();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = app.run_until(async move {
        let _ = rx.await;
    });
    let task = tokio::spawn(async move { serve.await.map_err(|e| format!("{e:#}")) });
    let login = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    let admin = token(post(client, &format!("{base}/auth/login"), None, &login).await, StatusCode::OK).await;
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        let body =
            json!({ "email": format!("buyer{i}@bench.local"), "password": "correct horse battery", "name": "B" });
        let res = post(client, &format!("{base}/auth/register"), None, &body).await;
        buyers.push(token(res, StatusCode::CREATED).await);
    }
    App { name, base, admin, buyers, state, shutdown, task }
}

async fn hold_run(client: &Client, app: &App) -> HttpResult {
    let event = create_http_event(client, app).await;
    let res = client.get(format!("{}/events/{event}", app.base)).send().await.expect("GET event");
    assert_eq!(res.status(), StatusCode::OK, "the event's actor activates");
    let seats = seat_ids();
    let url = Arc::new(format!("{}/events/{event}/reservations", app.base));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(HTTP_SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mine: Vec<String> = seats.iter().skip(c).step_by(CLIENTS).cloned().collect();
        let (client, url, token) = (client.clone(), url.clone(), app.buyers[c % app.buyers.len()].clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut ran_out) = (Vec::new(), 0u64, true);
            for seat in mine {
                if Instant::now() >= deadline {
                    ran_out = false;
                    break;
                }
                let sent = Instant::now();
                let res =
                    client.post(url.as_str()).bearer_auth(&token).json(&json!({ "seatIds": [seat] })).send().await;
                match res {
                    Ok(res) => {
                        let status = res.status();
                        let _ = res.bytes().await;
                        if status == StatusCode::CREATED {
                            latencies.push(sent.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, ran_out)
        }));
    }
    let (mut latencies, mut errors, mut ran_out) = (Vec::new(), 0, 0);
    for task in tasks {
        let (l, e, out) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
        ran_out += usize::from(out);
    }
    let seconds = start.elapsed().as_secs_f64();
    let drain = Instant::now();
    app.state.directory().journal().flushed().await;
    let drain_ms = ms(drain.elapsed());
    latencies.sort();
    HttpResult {
        holds_per_s: latencies.len() as f64 / seconds,
        p50_ms: ms(percentile(&latencies, 0.50)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        holds: latencies.len(),
        errors,
        ran_out,
        drain_ms,
    }
}

async fn create_http_event(client: &Client, app: &App) -> String {
    let layout = (HTTP_SECTIONS, HTTP_ROWS, HTTP_SEATS_PER_ROW);
    let body = event::on_sale_event("Bench Concert", layout, HOLD_TTL.as_secs());
    let res = post(client, &format!("{}/admin/events", app.base), Some(&app.admin), &body).await;
    let status = res.status();
    let event: Value = res.json().await.expect("a JSON event");
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().expect("an event id").to_owned()
}

/// Every seat id of the HTTP benchmark's layout.
fn seat_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for s in 1..=HTTP_SECTIONS {
        for r in 1..=HTTP_ROWS {
            for n in 1..=HTTP_SEATS_PER_ROW {
                ids.push(format!("S{s}-R{r}-{n}"));
            }
        }
    }
    ids
}

async fn post(client: &Client, url: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("request sent")
}

async fn token(res: reqwest::Response, expected: StatusCode) -> String {
    assert_eq!(res.status(), expected, "auth request");
    let body: Value = res.json().await.expect("a JSON body");
    body["token"].as_str().expect("a token").to_owned()
}

// ---------------------------------------------------------------------------------------
// 5. Hold latency over HTTP, open loop

struct OpenResult {
    /// Recorded holds that succeeded, over the time from the first recorded intended send
    /// to the last recorded response.
    achieved_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    holds: usize,
    errors: u64,
    /// Failed requests by kind: an HTTP status, or "timeout" / "transport".
    error_kinds: std::collections::BTreeMap<String, u64>,
    drain_ms: f64,
    p99_send_late_ms: f64,
    max_send_late_ms: f64,
}

/// Both applications (fresh database for PostgreSQL), offered `rate` holds/s, `RUNS` times
/// each, alternating which goes first.
async fn open_loop_holds(rate: u64) -> (Vec<OpenResult>, Vec<OpenResult>) {
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
    let url = tiketi_testkit::fresh_database().await;
    let pg = start_app(&client, "postgres", StoreKind::Postgres, url).await;
    let memory = start_app(&client, "embedded", StoreKind::Memory, String::new()).await;
    let (mut pg_runs, mut memory_runs) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        if run % 2 == 0 {
            pg_runs.push(open_run(&client, &pg, rate).await);
            memory_runs.push(open_run(&client, &memory, rate).await);
        } else {
            memory_runs.push(open_run(&client, &memory, rate).await);
            pg_runs.push(open_run(&client, &pg, rate).await);
        }
    }
    for app in [pg, memory] {
        let _ = app.shutdown.send(());
        app.task.await.expect("app task").unwrap_or_else(|e| panic!("{} shuts down cleanly: {e}", app.name));
    }
    (pg_runs, memory_runs)
}

/// One request's outcome: when it was meant to go, how late the scheduler spawned it, its
/// latency from the intended time, and whether the hold was created (else why not).
struct Sample {
    intended: Instant,
    late: Duration,
    latency: Duration,
    outcome: Result<(), String>,
}

async fn open_run(client: &Client, app: &App, rate: u64) -> OpenResult {
    let event = create_http_event(client, app).await;
    let res = client.get(format!("{}/events/{event}", app.base)).send().await.expect("GET event");
    assert_eq!(res.status(), StatusCode::OK, "the event's actor activates");
    let warmup = (rate as f64 * OPEN_WARMUP.as_secs_f64()) as usize;
    let total = warmup + (rate * OPEN_SECONDS) as usize;
    let seats = seat_ids();
    assert!(total <= seats.len(), "a distinct seat for every hold");
    let url = Arc::new(format!("{}/events/{event}/reservations", app.base));
    let tokens: Arc<Vec<String>> = Arc::new(app.buyers.clone());
    let period = Duration::from_secs_f64(1.0 / rate as f64);

    // One scheduler on its own thread (a thread sleep is far finer than tokio's 1 ms
    // timer): it spawns each request at its intended time and never waits for responses.
    let handle = tokio::runtime::Handle::current();
    let client = client.clone();
    let start = Instant::now() + Duration::from_millis(20);
    let (done, scheduled) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tasks = Vec::with_capacity(total);
        for (i, seat) in seats.into_iter().take(total).enumerate() {
            let intended = start + period * i as u32;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            let late = Instant::now().saturating_duration_since(intended);
            let (client, url, token) = (client.clone(), url.clone(), tokens[i % tokens.len()].clone());
            tasks.push(handle.spawn(async move {
                let res =
                    client.post(url.as_str()).bearer_auth(&token).json(&json!({ "seatIds": [seat] })).send().await;
                let outcome = match res {
                    Ok(res) => {
                        let status = res.status();
                        let _ = res.bytes().await;
                        if status == StatusCode::CREATED { Ok(()) } else { Err(status.as_u16().to_string()) }
                    }
                    Err(e) if e.is_timeout() => Err("timeout".to_owned()),
                    Err(_) => Err("transport".to_owned()),
                };
                Sample { intended, late, latency: intended.elapsed(), outcome }
            }));
        }
        let _ = done.send(tasks);
    });
    let tasks = scheduled.await.expect("the scheduler finishes");
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        samples.push(task.await.expect("request task"));
    }
    let drain = Instant::now();
    app.state.directory().journal().flushed().await;
    let drain_ms = ms(drain.elapsed());

    let recorded = &samples[warmup..];
    let measure_start = recorded[0].intended;
    let last = recorded.iter().map(|s| s.intended + s.latency).max().expect("samples");
    let mut latencies: Vec<Duration> = recorded.iter().filter(|s| s.outcome.is_ok()).map(|s| s.latency).collect();
    let mut error_kinds = std::collections::BTreeMap::new();
    for kind in recorded.iter().filter_map(|s| s.outcome.as_ref().err()) {
        *error_kinds.entry(kind.clone()).or_insert(0) += 1;
    }
    let errors = error_kinds.values().sum();
    let mut late: Vec<Duration> = samples.iter().map(|s| s.late).collect();
    latencies.sort();
    late.sort();
    OpenResult {
        achieved_per_s: latencies.len() as f64 / (last - measure_start).as_secs_f64(),
        p50_ms: ms(percentile(&latencies, 0.50)),
        p99_ms: ms(percentile(&latencies, 0.99)),
        p999_ms: ms(percentile(&latencies, 0.999)),
        holds: latencies.len(),
        errors,
        error_kinds,
        drain_ms,
        p99_send_late_ms: ms(percentile(&late, 0.99)),
        max_send_late_ms: ms(*late.last().expect("samples")),
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers

fn grid((sections, rows, seats): (u32, u32, u32)) -> LayoutSpec {
    LayoutSpec::grid(sections, rows, seats, 100)
}

fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    Timestamp::from_millis(since_epoch.as_millis() as i64)
}

/// An event on sale for a month around now, with no per-user limit.
fn event_record(layout: LayoutSpec) -> EventRecord {
    let now = now();
    let day = Duration::from_secs(86_400);
    EventRecord {
        id: EventId(Uuid::new_v4()),
        title: "Bench Concert".into(),
        description: String::new(),
        venue: "Bench Hall".into(),
        artist: "Bench Artist".into(),
        event_date: now.plus(day * 30),
        sale_start: Timestamp::from_millis(now.millis() - 86_400_000),
        sale_end: now.plus(day * 29),
        layout: Some(layout),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        hold_ttl: HOLD_TTL,
        max_per_reservation: 10,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::OnSale,
        created_at: now,
        updated_at: now,
    }
}

fn engine_for(record: &EventRecord, now: Timestamp) -> EventEngine {
    let rules = record.rules();
    let map = SeatMap::new(record.layout.as_ref().expect("a seated event")).expect("a valid layout");
    EventEngine::new(record.id, rules, map, Vec::new(), now)
}

/// The `i`-th hold: `quantity` seats from `first`, by one of `users`.
fn hold_entry(
    engine: &mut EventEngine,
    users: &[UserId],
    i: usize,
    first: u32,
    quantity: u32,
    now: Timestamp,
) -> JournalEntry {
    let selection = Selection::Seats((first..first + quantity).map(SeatIndex).collect());
    let req =
        HoldRequest { id: ReservationId(Uuid::new_v4()), user: users[i % users.len()], selection, admitted: false };
    let changes = engine.hold(req, now).expect("the seats are free");
    JournalEntry {
        event: engine.event(),
        fence: None,
        changes,
        idempotency: Vec::new(),
        event_record: None,
        audit: Vec::new(),
    }
}

fn reservation_of(entry: &JournalEntry) -> ReservationId {
    entry
        .changes
        .changes
        .iter()
        .find_map(|c| match c {
            Change::ReservationCreated(r) => Some(r.id),
            _ => None,
        })
        .expect("a hold creates a reservation")
}

fn seat_changes(entries: &[JournalEntry]) -> usize {
    entries.iter().map(|e| e.changes.seats().count()).sum()
}

async fn create_users(store: &dyn Store, n: usize) -> Vec<UserId> {
    let mut users = Vec::new();
    for i in 0..n {
        let new = NewUser {
            email: format!("user{i}@bench.local"),
            password_hash: "x".into(),
            name: "Bench".into(),
            role: Role::User,
            created_at: now(),
        };
        users.push(store.create_user(new).await.expect("user created").id);
    }
    users
}
