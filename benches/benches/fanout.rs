//! Live-stream fan-out (SPEC §4): 10,000 WebSocket subscribers on one event while holds run
//! at a steady rate, against the real release `tiketi` binary with its embedded store. Not a
//! criterion micro-benchmark: three runs, printed as one markdown table of medians.
//!
//! Per run, a fresh server process, on which:
//!
//! 1. Setup (not measured): admin login, 20 buyers, an on-sale event of 2,000 seats (4
//!    sections x 10 rows x 50) with a 2 s hold TTL, so holds lapse and the seats come back
//!    for more holds. 10,000 subscribers connect, 500 at a time, and each reads its snapshot
//!    (~150 KB; a bigger map would make setup push gigabytes over loopback).
//! 2. Load: one thread offers 200 holds/s (or `TIKETI_BENCH_HOLD_RATE`) of
//!    `{"bestAvailable":{"quantity":2}}` over HTTP, open loop (each request spawned at its
//!    scheduled time, whatever earlier ones are doing). After a 2 s warm-up, 10 s are
//!    measured.
//!
//! What is measured, in that window:
//!
//! - frames delivered per second: `seats` messages received by all subscribers together,
//!   over the window (goal >= 200,000/s). The server gathers changes for one tick (20 ms), so
//!   one event yields at most 50 frames/s and 10,000 subscribers at most 500,000 frames/s.
//! - staleness: for every frame received, the subscriber's wall clock minus the frame's `at`
//!   (when the oldest change in it was decided, by the server's wall clock on the same
//!   machine), in whole milliseconds (goal p99 <= 100 ms). It includes up to one tick of
//!   gathering. Also over the first and the last 2 s of the window (a rise is a backlog
//!   building), and of each frame's first receipt by any subscriber (what happened before the
//!   fan-out: the tick, the actor, the first sends). `seq` and `at` are read with a substring
//!   scan (checked against a full JSON parse on each subscriber's first frame), so the client
//!   spends its time in the socket and WebSocket layers, not in JSON.
//! - subscribers that fell behind: as the client sees it (a second snapshot, or the
//!   connection closed), and as the server counts it (`tiketi_ws_resyncs_total` and
//!   `tiketi_ws_dropped_total` from `/metrics`; a resync from the replay buffer is invisible
//!   to the client).
//! - the holds created per second, and the CPU time (in cores) of the server and of this
//!   process, and the server's resident memory.
//!
//! The server runs as a child process because each connection costs a file descriptor at
//! both ends, and 10,000 of each do not fit the usual open-file limit of one process. Client
//! and server share the machine's cores: the 10,000 client connections cost about as much
//! CPU as serving them, so on a small machine the figures are a floor for the server.
//!
//! Run with `cargo bench -p tiketi-benches --bench fanout` (it builds the server first, with
//! `cargo build --release -p tiketi-api`; `ulimit -n` must allow 10,000 sockets), or with
//! `TIKETI_BENCH_SERVER=path/to/tiketi` to run a binary built before, as it is.
//!
//! The subscribers connect and read their snapshot with tokio-tungstenite; then, by default,
//! two threads read every connection on epoll and parse the WebSocket frames in place (the
//! lean client), because client and server share the cores and on a real network the
//! clients are other machines. `TIKETI_BENCH_CLIENT=tungstenite` keeps reading with
//! tokio-tungstenite instead: it needs about a core of its own at this rate, and then sets
//! the staleness itself (a sender that does nothing but write gives it ~120 ms p99:
//! `--bin fanout_floor -- --client websocket`). Server logs (level warn) go to
//! `target/tmp/fanout-server-run{N}.log`.

#[path = "common/event.rs"]
mod event;

use futures_util::StreamExt;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiketi_benches::machine::{clock_ticks_per_second, cpu_seconds, loadavg, nproc, uname_r};
use tiketi_benches::report::{Row, ms, percentile, print_table};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

const RUNS: usize = 3;
const SUBSCRIBERS: usize = 10_000;
/// Subscribers connecting (and reading their snapshot) at once during setup.
const CONNECT_CONCURRENCY: usize = 500;
/// Sections x rows x seats per row: 2,000 seats.
const LAYOUT: (u32, u32, u32) = (4, 10, 50);
/// Holds offered per second: 200 unless `TIKETI_BENCH_HOLD_RATE` says otherwise (2 shows
/// what one wave to every subscriber costs on an almost idle stream).
fn hold_rate() -> u64 {
    positive_env("TIKETI_BENCH_HOLD_RATE", 200)
}
const HOLD_QUANTITY: u32 = 2;
const HOLD_TTL_SECS: u64 = 2;
const BUYERS: usize = 20;
const WARMUP: Duration = Duration::from_secs(2);
const MEASURED: Duration = Duration::from_secs(10);
/// Staleness is also reported for the first and the last this much of the window (the
/// table's labels say 2 s).
const TREND_SPAN: Duration = Duration::from_secs(2);
/// The server's stream tick: its default, 20 ms, unless `TIKETI_BENCH_TICK_MS` says
/// otherwise. The most frames per second one event yields is 1000 / tick.
fn tick_ms() -> u64 {
    positive_env("TIKETI_BENCH_TICK_MS", 20)
}

/// The server's `stream.workers`: `TIKETI_BENCH_STREAM_WORKERS`, else its default.
fn stream_workers() -> String {
    std::env::var("TIKETI_BENCH_STREAM_WORKERS").unwrap_or_else(|_| "default".into())
}

/// Who reads the frames: `TIKETI_BENCH_CLIENT`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ClientKind {
    /// `tungstenite`: tokio-tungstenite, one task per subscriber on a tokio runtime: what a
    /// Rust client would use. On two shared cores it needs a core of its own for 420,000
    /// frames/s, and then sets the staleness itself.
    Tungstenite,
    /// `lean` (the default): after the snapshot, two threads read every connection on epoll
    /// and parse the WebSocket frames in place (`lean_reader`), at about the cost of a bare
    /// `read`, which leaves the server the cores it would have to itself.
    Lean,
}

fn client_kind() -> ClientKind {
    match std::env::var("TIKETI_BENCH_CLIENT").as_deref() {
        Ok("lean") | Err(_) => ClientKind::Lean,
        Ok("tungstenite") => ClientKind::Tungstenite,
        Ok(other) => panic!("TIKETI_BENCH_CLIENT={other}: expected tungstenite or lean"),
    }
}

/// Threads of the lean client.
const LEAN_READERS: usize = 2;

/// The positive number in environment variable `name`, else `default`.
fn positive_env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(default)
}
/// Each client connection's read buffer. tungstenite allocates it up front (128 KiB by
/// default, 1.3 GB for 10,000 clients); frames are well under 1 KB.
const READ_BUFFER: usize = 8 * 1024;
const ADMIN_EMAIL: &str = "admin@bench.local";
const ADMIN_PASSWORD: &str = "admin-password-for-benches";
const JWT_SECRET: &str = "a-bench-secret-that-is-at-least-32-bytes-long";

/// Phases of a run, as the subscribers and the load generator see them.
const SETUP: u8 = 0;
const WARMING_UP: u8 = 1;
const MEASURING: u8 = 2;
const DONE: u8 = 3;

const SNAPSHOT_PREFIX: &str = r#"{"type":"snapshot""#;
const SEATS_PREFIX: &str = r#"{"type":"seats""#;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn main() {
    let limit = open_file_limit();
    assert!(
        limit.is_none_or(|n| n >= SUBSCRIBERS as u64 + 256),
        "the open-file limit ({limit:?}) is too low for {SUBSCRIBERS} sockets: raise `ulimit -n`"
    );
    let server = build_server();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(run(&server));
}

async fn run(server: &Path) {
    let started = Instant::now();
    let seats = LAYOUT.0 * LAYOUT.1 * LAYOUT.2;
    println!("# Tiketi live-stream fan-out benchmark");
    println!();
    println!("machine: nproc = {}, uname -r = {}", nproc(), uname_r());
    println!("load at start (/proc/loadavg): {}", loadavg());
    let readers = match client_kind() {
        ClientKind::Tungstenite => format!("tokio-tungstenite on a {}-worker tokio runtime", nproc()),
        ClientKind::Lean => format!("after the snapshot, the lean client's {LEAN_READERS} threads on epoll"),
    };
    println!(
        "client (this process: the subscribers on {readers}, one thread for the holds) and server ({}) share the \
         same {} cores",
        server.display(),
        nproc()
    );
    println!(
        "{SUBSCRIBERS} subscribers on one event of {seats} seats; {} holds/s of {HOLD_QUANTITY} seats \
         (TTL {HOLD_TTL_SECS} s); stream tick {} ms; stream workers {}; {} s warm-up, {} s measured",
        hold_rate(),
        tick_ms(),
        stream_workers(),
        WARMUP.as_secs(),
        MEASURED.as_secs()
    );
    println!();

    let mut runs = Vec::new();
    for run in 1..=RUNS {
        let result = fanout_run(server, run).await;
        println!(
            "run {run}: setup {:.1} s; {:.0} frames/s; staleness p50 {:.0} / p99 {:.0} / max {:.0} ms; {:.0} holds/s; \
             CPU server {:.2} + client {:.2} + others {:.2} (+ {:.2} stolen) cores",
            result.setup_s,
            result.frames_per_s,
            result.stale_p50_ms,
            result.stale_p99_ms,
            result.stale_max_ms,
            result.holds_per_s,
            result.server_cores,
            result.client_cores,
            result.other_cores,
            result.steal_cores
        );
        runs.push(result);
    }

    let name = format!("fan-out: {SUBSCRIBERS} subscribers, {} holds/s", hold_rate());
    let col = |f: fn(&RunResult) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    let rows = [
        Row::new(&name, "frames delivered/s", col(|r| r.frames_per_s), 0, ">= 200,000"),
        Row::new(&name, "WebSocket messages sent/s (server)", col(|r| r.server_messages_per_s), 0, ""),
        Row::new(&name, "staleness p50 ms", col(|r| r.stale_p50_ms), 0, ""),
        Row::new(&name, "staleness p99 ms", col(|r| r.stale_p99_ms), 0, "<= 100"),
        Row::new(&name, "staleness p99.9 ms", col(|r| r.stale_p999_ms), 0, ""),
        Row::new(&name, "staleness max ms", col(|r| r.stale_max_ms), 0, ""),
        Row::new(&name, "staleness p50 ms, first 2 s of the window", col(|r| r.stale_early_p50_ms), 0, ""),
        Row::new(&name, "staleness p50 ms, last 2 s of the window", col(|r| r.stale_late_p50_ms), 0, ""),
        Row::new(&name, "staleness p50 ms, each frame's first receipt", col(|r| r.first_receipt_p50_ms), 0, ""),
        Row::new(&name, "staleness p99 ms, each frame's first receipt", col(|r| r.first_receipt_p99_ms), 0, ""),
        Row::new(&name, "frames/s the event produced (most any subscriber got)", col(|r| r.produced_per_s), 1, ""),
        Row::new(&name, "frames/s per subscriber, median", col(|r| r.per_subscriber_per_s), 1, ""),
        Row::new(&name, "subscribers resnapshotted or closed (client)", col(|r| r.fell_behind as f64), 0, "0"),
        Row::new(&name, "resyncs (server)", col(|r| r.server_resyncs), 0, ""),
        Row::new(&name, "connections dropped (server)", col(|r| r.server_drops), 0, "0"),
        Row::new(&name, "holds created/s", col(|r| r.holds_per_s), 0, ""),
        Row::new(&name, "hold p99 ms (from scheduled send)", col(|r| r.hold_p99_ms), 1, ""),
        Row::new(&name, "server CPU, cores", col(|r| r.server_cores), 2, ""),
        Row::new(&name, "client CPU, cores", col(|r| r.client_cores), 2, ""),
        Row::new(&name, "other processes' CPU, cores", col(|r| r.other_cores), 2, "~0"),
        Row::new(&name, "stolen by the hypervisor, cores", col(|r| r.steal_cores), 2, "~0"),
        Row::new(&name, "server RSS MB (end of window)", col(|r| r.server_rss_mb), 0, ""),
        Row::new(&name, "setup s (connect + snapshots)", col(|r| r.setup_s), 1, ""),
    ];
    println!();
    print_table(&rows, RUNS);
    println!();
    let ceiling = SUBSCRIBERS as u64 * 1000 / tick_ms();
    println!(
        "ceiling: {SUBSCRIBERS} subscribers x {} frames/s (one per {} ms tick) = {ceiling} frames/s",
        1000 / tick_ms(),
        tick_ms()
    );
    for (i, r) in runs.iter().enumerate() {
        println!(
            "run {}: {} staleness samples; holds refused (409) {}, failed {}; server log: {}",
            i + 1,
            r.samples,
            r.holds_refused,
            r.holds_failed,
            r.log_note
        );
    }
    println!("load at end (/proc/loadavg): {}", loadavg());
    println!("total time: {:.0} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------
// One run

struct RunResult {
    setup_s: f64,
    frames_per_s: f64,
    produced_per_s: f64,
    per_subscriber_per_s: f64,
    stale_p50_ms: f64,
    stale_p99_ms: f64,
    stale_p999_ms: f64,
    stale_max_ms: f64,
    /// Staleness p50 over the first and the last `TREND_SPAN` of the window.
    stale_early_p50_ms: f64,
    stale_late_p50_ms: f64,
    /// Staleness of each frame's first receipt by any subscriber.
    first_receipt_p50_ms: f64,
    first_receipt_p99_ms: f64,
    samples: usize,
    /// Subscribers that got a second snapshot or lost their connection before the run ended.
    fell_behind: usize,
    server_resyncs: f64,
    server_drops: f64,
    server_messages_per_s: f64,
    holds_per_s: f64,
    hold_p99_ms: f64,
    holds_refused: usize,
    holds_failed: usize,
    server_cores: f64,
    client_cores: f64,
    /// CPU time of everything else on the machine (kernel threads included) in the window.
    other_cores: f64,
    /// CPU time the hypervisor gave to other guests while this one wanted it.
    steal_cores: f64,
    server_rss_mb: f64,
    log_note: String,
}

/// What the subscribers and the load generator share.
struct Shared {
    phase: AtomicU8,
    /// When the measured window began (set just before the phase turns to measuring).
    window_start: OnceLock<Instant>,
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// Connections past their snapshot, for the lean client.
    handoff: Mutex<Vec<Handoff>>,
}

async fn fanout_run(bin: &Path, run: usize) -> RunResult {
    let client = Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fanout-server-run{run}.log"));
    let mut server = Server::start(bin, &log);
    server.wait_ready(&client).await;
    let base = format!("{}/api/v1", server.base);
    let login = json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD });
    let admin = token(post(&client, &format!("{base}/auth/login"), None, &login).await, StatusCode::OK);
    let mut buyers = Vec::new();
    for i in 0..BUYERS {
        let body =
            json!({ "email": format!("buyer{i}@bench.local"), "password": "correct horse battery", "name": "B" });
        buyers.push(token(post(&client, &format!("{base}/auth/register"), None, &body).await, StatusCode::CREATED));
    }
    let event = create_event(&client, &base, &admin).await;

    // Setup: every subscriber connected and holding its snapshot.
    let setup = Instant::now();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(SETUP),
        window_start: OnceLock::new(),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        handoff: Mutex::new(Vec::new()),
    });
    let url: Arc<str> = format!("ws://127.0.0.1:{}/api/v1/events/{event}/ws", server.port).into();
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let tasks: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let (url, shared, gate) = (url.clone(), shared.clone(), gate.clone());
            tokio::spawn(async move {
                let outcome = subscriber(&url, &shared, &gate).await;
                if outcome.is_err() {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
                outcome
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < SUBSCRIBERS {
        assert!(Instant::now() < deadline, "subscribers connect within 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup_s = setup.elapsed().as_secs_f64();
    let failed = shared.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = futures_util::future::join_all(tasks).await.into_iter().find_map(|t| t.expect("subscriber").err());
        panic!("{failed} of {SUBSCRIBERS} subscribers could not connect; first error: {}", first.unwrap_or_default());
    }

    let lean = (client_kind() == ClientKind::Lean).then(|| {
        let mut handoffs = std::mem::take(&mut *shared.handoff.lock().expect("not poisoned"));
        let per_thread = handoffs.len().div_ceil(LEAN_READERS);
        (0..LEAN_READERS)
            .map(|_| {
                let (mine, shared) = (handoffs.split_off(handoffs.len().saturating_sub(per_thread)), shared.clone());
                std::thread::spawn(move || lean_reader(mine, shared))
            })
            .collect::<Vec<_>>()
    });

    // Load, warm-up, then the measured window.
    shared.phase.store(WARMING_UP, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(format!("{base}/events/{event}/reservations"), buyers, shared.clone(), stop.clone());
    tokio::time::sleep(WARMUP).await;
    let before = WsCounters::scrape(&client, &server.base).await;
    let cpu = (cpu_seconds(&server.pid().to_string()), cpu_seconds("self"), machine_cpu_seconds());
    let window_start = *shared.window_start.get_or_init(Instant::now);
    shared.phase.store(MEASURING, Ordering::Relaxed);
    tokio::time::sleep(MEASURED).await;
    shared.phase.store(DONE, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    let server_cores = (cpu_seconds(&server.pid().to_string()) - cpu.0) / window;
    let client_cores = (cpu_seconds("self") - cpu.1) / window;
    let machine = machine_cpu_seconds();
    let other_cores = ((machine.0 - cpu.2.0) / window - server_cores - client_cores).max(0.0);
    let steal_cores = (machine.1 - cpu.2.1) / window;
    let server_rss_mb = rss_mb(server.pid());
    let after = WsCounters::scrape(&client, &server.base).await;
    stop.store(true, Ordering::Relaxed);
    let holds = tokio::task::spawn_blocking(move || load.join().expect("the load thread"))
        .await
        .expect("joining the load thread");

    // Killing the server ends every connection; what happens from now on is not counted.
    drop(server);
    let mut subscribers = Vec::with_capacity(SUBSCRIBERS);
    let joined = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(tasks))
        .await
        .expect("subscribers end within a minute of the server");
    for task in joined {
        subscribers.push(task.expect("subscriber task").expect("connected"));
    }
    if let Some(readers) = lean {
        // The tasks handed their connections over: the readers' stats are the subscribers'.
        subscribers = tokio::task::spawn_blocking(move || {
            readers.into_iter().flat_map(|r| r.join().expect("a lean reader")).collect::<Vec<_>>()
        })
        .await
        .expect("joining the lean readers");
        assert_eq!(subscribers.len(), SUBSCRIBERS, "every connection was read");
    }

    let frames: u64 = subscribers.iter().map(|s| u64::from(s.frames)).sum();
    let mut per_subscriber: Vec<u32> = subscribers.iter().map(|s| s.frames).collect();
    per_subscriber.sort_unstable();
    let receipts: Vec<Receipt> = subscribers.iter().flat_map(|s| s.receipts.iter().copied()).collect();
    assert!(!receipts.is_empty(), "frames arrived in the measured window");
    let mut staleness: Vec<u16> = receipts.iter().map(|r| r.staleness_ms).collect();
    staleness.sort_unstable();
    // Staleness early and late in the window: a rise means a backlog building up somewhere.
    let p50_within = |window: std::ops::Range<Duration>| {
        let ms = window.start.as_millis() as u16..window.end.as_millis() as u16;
        let mut v: Vec<u16> = receipts.iter().filter(|r| ms.contains(&r.offset_ms)).map(|r| r.staleness_ms).collect();
        v.sort_unstable();
        if v.is_empty() { f64::NAN } else { f64::from(percentile(&v, 0.5)) }
    };
    // Per frame, its first receipt by any subscriber: the delay before the fan-out (the
    // tick, the actor, the first sends); the rest of the staleness is spent fanning out.
    let mut first_receipt = std::collections::HashMap::<u32, u16>::new();
    for r in &receipts {
        first_receipt.entry(r.seq).and_modify(|s| *s = (*s).min(r.staleness_ms)).or_insert(r.staleness_ms);
    }
    let mut first_receipt: Vec<u16> = first_receipt.into_values().collect();
    first_receipt.sort_unstable();
    let stale_early_p50_ms = p50_within(Duration::ZERO..TREND_SPAN);
    let stale_late_p50_ms = p50_within(MEASURED - TREND_SPAN..MEASURED * 2);
    let out_of_order: u32 = subscribers.iter().map(|s| s.out_of_order).sum();
    assert_eq!(out_of_order, 0, "every subscriber saw seq strictly increase");
    let stale = |q: f64| f64::from(percentile(&staleness, q));

    let measured: Vec<&HoldSample> = holds.iter().filter(|h| h.measured).collect();
    let mut created: Vec<Duration> =
        measured.iter().filter(|h| h.status == Some(StatusCode::CREATED)).map(|h| h.latency).collect();
    created.sort_unstable();
    let holds_refused = measured.iter().filter(|h| h.status == Some(StatusCode::CONFLICT)).count();
    let log_note = match std::fs::read_to_string(&log) {
        Ok(text) if !text.trim().is_empty() => format!("{} lines in {}", text.lines().count(), log.display()),
        _ => "empty".into(),
    };

    RunResult {
        setup_s,
        frames_per_s: frames as f64 / window,
        produced_per_s: f64::from(*per_subscriber.last().expect("subscribers")) / window,
        per_subscriber_per_s: f64::from(percentile(&per_subscriber, 0.5)) / window,
        stale_p50_ms: stale(0.50),
        stale_p99_ms: stale(0.99),
        stale_p999_ms: stale(0.999),
        stale_max_ms: f64::from(*staleness.last().expect("samples")),
        stale_early_p50_ms,
        stale_late_p50_ms,
        first_receipt_p50_ms: f64::from(percentile(&first_receipt, 0.5)),
        first_receipt_p99_ms: f64::from(percentile(&first_receipt, 0.99)),
        samples: staleness.len(),
        fell_behind: subscribers.iter().filter(|s| s.resnapshots > 0 || s.closed.is_some()).count(),
        server_resyncs: after.resyncs - before.resyncs,
        server_drops: after.dropped - before.dropped,
        server_messages_per_s: (after.messages - before.messages) / (after.at - before.at).as_secs_f64(),
        holds_per_s: created.len() as f64 / window,
        hold_p99_ms: if created.is_empty() { f64::NAN } else { ms(percentile(&created, 0.99)) },
        holds_refused,
        holds_failed: measured.len() - created.len() - holds_refused,
        server_cores,
        client_cores,
        other_cores,
        steal_cores,
        server_rss_mb,
        log_note,
    }
}

// ---------------------------------------------------------------------------------------
// Subscribers

/// One frame received in the measured window.
#[derive(Clone, Copy)]
struct Receipt {
    /// The frame's seq.
    seq: u32,
    /// Since the window began, in ms.
    offset_ms: u16,
    /// Now minus the frame's `at`, in ms.
    staleness_ms: u16,
}

/// What one subscriber saw.
#[derive(Default)]
struct SubscriberStats {
    /// `seats` frames received in the measured window.
    frames: u32,
    /// When each arrived, and how stale.
    receipts: Vec<Receipt>,
    /// Snapshots after the first (a resync the replay buffer could not cover).
    resnapshots: u32,
    /// Why the connection ended before the run did.
    closed: Option<String>,
    /// Frames whose seq did not exceed the one before.
    out_of_order: u32,
}

/// Connects (holding a `gate` permit until the snapshot is in), then reads frames until the
/// connection ends.
async fn subscriber(url: &str, shared: &Shared, gate: &Semaphore) -> Result<SubscriberStats, String> {
    let permit = gate.acquire().await.expect("the gate is never closed");
    let mut ws = connect(url).await?;
    let seq = match ws.next().await {
        Some(Ok(Message::Text(text))) if text.starts_with(SNAPSHOT_PREFIX) => {
            number(&text, r#""seq":"#).ok_or("a snapshot without a seq")?
        }
        Some(Ok(other)) => return Err(format!("expected a snapshot first, got {:.200}", other.to_string())),
        Some(Err(e)) => return Err(format!("reading the snapshot: {e}")),
        None => return Err("closed before the snapshot".into()),
    };
    drop(permit);
    if client_kind() == ClientKind::Lean {
        // From here on the lean readers read this connection (see `lean_reader`). Nothing
        // is sent between the snapshot and the load, so tungstenite holds nothing unread.
        let MaybeTlsStream::Plain(socket) = ws.into_inner() else { return Err("not plain TCP".into()) };
        let socket = socket.into_std().map_err(|e| e.to_string())?;
        // Handed over before it counts as ready: the readers start once all are.
        shared.handoff.lock().expect("not poisoned").push(Handoff { socket, seq });
        shared.ready.fetch_add(1, Ordering::Relaxed);
        return Ok(SubscriberStats::default());
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    let mut reading = Reading { seq, ..Reading::default() };
    loop {
        let message = ws.next().await;
        let phase = shared.phase.load(Ordering::Relaxed);
        match message {
            Some(Ok(Message::Text(text))) => reading.text(&text, phase, shared),
            Some(Ok(Message::Close(frame))) => {
                reading.ended(phase, || format!("closed by the server: {frame:?}"));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                reading.ended(phase, || e.to_string());
                break;
            }
            None => {
                reading.ended(phase, || "connection ended".into());
                break;
            }
        }
    }
    Ok(reading.stats)
}

/// What a subscriber has read so far.
#[derive(Default)]
struct Reading {
    /// The last seq received.
    seq: i64,
    /// Whether the scan was checked against a full parse.
    checked: bool,
    stats: SubscriberStats,
}

impl Reading {
    /// Records a text message: a `seats` frame's receipt, or a second snapshot.
    fn text(&mut self, text: &str, phase: u8, shared: &Shared) {
        let stats = &mut self.stats;
        if text.starts_with(SEATS_PREFIX) {
            let (Some(frame_seq), Some(at)) = (number(text, r#""seq":"#), number(text, r#""at":"#)) else {
                panic!("a seats frame without seq or at: {text}");
            };
            if !self.checked {
                check_scan(text, frame_seq, at);
                self.checked = true;
            }
            if frame_seq <= self.seq {
                stats.out_of_order += 1;
            }
            self.seq = self.seq.max(frame_seq);
            if phase == MEASURING {
                stats.frames += 1;
                let offset = shared.window_start.get().map_or(0, |t| t.elapsed().as_millis());
                let offset_ms = offset.min(u128::from(u16::MAX)) as u16;
                let seq = frame_seq.min(i64::from(u32::MAX)) as u32;
                stats.receipts.push(Receipt { seq, offset_ms, staleness_ms: staleness_ms(at) });
            }
        } else if text.starts_with(SNAPSHOT_PREFIX) {
            if phase != DONE {
                stats.resnapshots += 1;
            }
            self.seq = number(text, r#""seq":"#).unwrap_or(self.seq);
        }
    }

    /// The connection ended; before the run did, that counts against it.
    fn ended(&mut self, phase: u8, why: impl FnOnce() -> String) {
        if phase != DONE {
            self.stats.closed = Some(why());
        }
    }
}

/// A subscriber's connection after its snapshot, for the lean readers.
struct Handoff {
    socket: std::net::TcpStream,
    seq: i64,
}

/// A lean reader's connection: bytes read but not yet parsed, and the text message being
/// put together from its fragments.
struct LeanConnection {
    socket: mio::net::TcpStream,
    unparsed: Vec<u8>,
    message: Vec<u8>,
    reading: Reading,
    open: bool,
}

/// Reads connections the way a client doing the least work per frame would (one of
/// `TIKETI_BENCH_CLIENT=lean`'s threads): epoll (mio), reads until one comes back short,
/// WebSocket frames (RFC 6455 §5.2) parsed in place, each text message handled as the
/// tungstenite client handles it. Ends once every connection has, or a while after the run did.
fn lean_reader(handoffs: Vec<Handoff>, shared: Arc<Shared>) -> Vec<SubscriberStats> {
    let mut poll = mio::Poll::new().expect("an epoll instance");
    let mut connections: Vec<LeanConnection> = handoffs
        .into_iter()
        .enumerate()
        .map(|(i, Handoff { socket, seq })| {
            socket.set_nonblocking(true).expect("non-blocking");
            let mut socket = mio::net::TcpStream::from_std(socket);
            poll.registry().register(&mut socket, mio::Token(i), mio::Interest::READABLE).expect("registered");
            let reading = Reading { seq, ..Reading::default() };
            LeanConnection { socket, unparsed: Vec::new(), message: Vec::new(), reading, open: true }
        })
        .collect();
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut open = connections.len();
    let mut done_since = None;
    while open > 0 && done_since.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(30)) {
        poll.poll(&mut events, Some(Duration::from_millis(100))).expect("epoll_wait");
        if done_since.is_none() && shared.phase.load(Ordering::Relaxed) == DONE {
            done_since = Some(Instant::now());
        }
        for event in &events {
            let connection = &mut connections[event.token().0];
            // Edge-triggered: read until a read comes back short.
            while connection.open {
                let n = match connection.socket.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        connection.reading.ended(shared.phase.load(Ordering::Relaxed), || e.to_string());
                        connection.open = false;
                        break;
                    }
                };
                let phase = shared.phase.load(Ordering::Relaxed);
                if n == 0 {
                    connection.reading.ended(phase, || "connection ended".into());
                    connection.open = false;
                    break;
                }
                connection.unparsed.extend_from_slice(&buf[..n]);
                connection.parse(phase, &shared);
                if n < buf.len() {
                    break;
                }
            }
            if !connection.open {
                open -= 1;
                let _ = poll.registry().deregister(&mut connection.socket);
            }
        }
    }
    connections.into_iter().map(|c| c.reading.stats).collect()
}

impl LeanConnection {
    /// Handles every whole frame in `unparsed`.
    fn parse(&mut self, phase: u8, shared: &Shared) {
        let mut at = 0;
        while self.open {
            let data = &self.unparsed[at..];
            if data.len() < 2 {
                break;
            }
            let (fin, opcode) = (data[0] & 0x80 != 0, data[0] & 0x0f);
            assert_eq!(data[1] & 0x80, 0, "a server's frames are not masked");
            let (header, len) = match data[1] & 0x7f {
                126 if data.len() >= 4 => (4, usize::from(u16::from_be_bytes([data[2], data[3]]))),
                127 if data.len() >= 10 => (10, u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")) as usize),
                126 | 127 => break,
                len => (2, usize::from(len)),
            };
            if data.len() < header + len {
                break;
            }
            let payload = &data[header..header + len];
            at += header + len;
            match opcode {
                // Text, or a continuation of it.
                0x1 | 0x0 => {
                    if fin && self.message.is_empty() {
                        let text = std::str::from_utf8(payload).expect("a text message is UTF-8");
                        self.reading.text(text, phase, shared);
                    } else {
                        self.message.extend_from_slice(payload);
                        if fin {
                            let message = std::mem::take(&mut self.message);
                            let text = std::str::from_utf8(&message).expect("a text message is UTF-8");
                            self.reading.text(text, phase, shared);
                        }
                    }
                }
                0x8 => {
                    self.reading.ended(phase, || "closed by the server".into());
                    self.open = false;
                }
                // Ping and pong: the server sends none.
                _ => {}
            }
        }
        self.unparsed.drain(..at);
    }
}

/// Opens a connection, retrying a few times (a burst of connects can overflow the accept
/// backlog).
async fn connect(url: &str) -> Result<Ws, String> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut error = String::new();
    for attempt in 0..5 {
        match connect_async_with_config(url, Some(config), true).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(format!("connecting to {url}: {error}"))
}

/// The unsigned integer after the first occurrence of `key` (e.g. `"at":`). The server
/// writes `type`, `seq` and `at` before any seat or count, so the first occurrence is the
/// top-level field.
fn number(text: &str, key: &str) -> Option<i64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Checks the substring scan against a full parse.
fn check_scan(text: &str, seq: i64, at: i64) {
    let frame: Value = serde_json::from_str(text).expect("a seats frame is JSON");
    assert_eq!((frame["seq"].as_i64(), frame["at"].as_i64()), (Some(seq), Some(at)), "the scan misread {text}");
    assert!(frame["changes"].as_array().is_some_and(|c| !c.is_empty()), "a seats frame carries changes: {text}");
}

/// Now minus `at` (ms since the Unix epoch), in whole ms.
fn staleness_ms(at: i64) -> u16 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
    (now - at).clamp(0, i64::from(u16::MAX)) as u16
}

// ---------------------------------------------------------------------------------------
// Load

/// One hold request: its status (`None`: no response), latency from its scheduled send,
/// and whether its response came in the measured window.
struct HoldSample {
    status: Option<StatusCode>,
    latency: Duration,
    measured: bool,
}

/// Offers [`hold_rate`] holds/s on a thread and runtime of its own, so the subscribers'
/// runtime cannot delay the schedule, until `stop`.
fn start_load(
    url: String,
    buyers: Vec<String>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<HoldSample>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(async move {
            let client = Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
            let (url, buyers) = (Arc::new(url), Arc::new(buyers));
            let body = Arc::new(json!({ "bestAvailable": { "quantity": HOLD_QUANTITY } }));
            let period = Duration::from_secs_f64(1.0 / hold_rate() as f64);
            let start = tokio::time::Instant::now();
            let mut requests = tokio::task::JoinSet::new();
            for i in 0u32.. {
                let intended = start + period * i;
                tokio::time::sleep_until(intended).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (client, url, buyers, body, shared) =
                    (client.clone(), url.clone(), buyers.clone(), body.clone(), shared.clone());
                requests.spawn(async move {
                    let token = &buyers[i as usize % buyers.len()];
                    let res = client.post(url.as_str()).bearer_auth(token).json(&*body).send().await;
                    let status = match res {
                        Ok(res) => {
                            let status = res.status();
                            let _ = res.bytes().await;
                            Some(status)
                        }
                        Err(_) => None,
                    };
                    let measured = shared.phase.load(Ordering::Relaxed) == MEASURING;
                    HoldSample { status, latency: intended.elapsed(), measured }
                });
            }
            requests.join_all().await
        })
    })
}

// ---------------------------------------------------------------------------------------
// The server process

/// The release `tiketi` binary running as a child; killed when dropped (also on a panic).
struct Server {
    child: Child,
    port: u16,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, log: &Path) -> Self {
        let port = free_port();
        let out = File::create(log).expect("the server log file");
        let err = out.try_clone().expect("the server log file");
        let mut command = Command::new(bin);
        command.arg("serve").stdin(Stdio::null()).stdout(out).stderr(err);
        // Only the built-in defaults and what is set here: no inherited TIKETI_* variable,
        // RUST_LOG or config file (there is no config/bench.toml).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TIKETI_") {
                command.env_remove(key);
            }
        }
        command.env_remove("RUST_LOG").envs([
            ("TIKETI_ENV", "bench".to_owned()),
            ("TIKETI_SERVER__HOST", "127.0.0.1".to_owned()),
            ("TIKETI_SERVER__PORT", port.to_string()),
            ("TIKETI_STORE__KIND", "memory".to_owned()),
            ("TIKETI_AUTH__ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
            ("TIKETI_AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("TIKETI_AUTH__JWT_SECRET", JWT_SECRET.to_owned()),
            ("TIKETI_DEMO__ENABLED", "false".to_owned()),
            ("TIKETI_STREAM__MAX_CONNECTIONS", (SUBSCRIBERS + 2_000).to_string()),
            ("TIKETI_STREAM__TICK_MS", tick_ms().to_string()),
            ("TIKETI_EVENTS__MIN_HOLD_TTL_SECS", "1".to_owned()),
            ("TIKETI_LOG__LEVEL", "warn".to_owned()),
        ]);
        if let Ok(workers) = std::env::var("TIKETI_BENCH_STREAM_WORKERS") {
            command.env("TIKETI_STREAM__WORKERS", workers);
        }

        let child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Self { child, port, base: format!("http://127.0.0.1:{port}"), log: log.to_owned() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/health/ready` until it answers 200.
    async fn wait_ready(&mut self, client: &Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("the server exited ({status}) before it was ready:\n{log}");
            }
            let ready = client.get(format!("{}/health/ready", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < deadline, "the server is ready within 30 s (log: {})", self.log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the server binary (a no-op when it is fresh) and returns its path: beside this
/// benchmark's own build, `<target>/release/tiketi`. `TIKETI_BENCH_SERVER` names another
/// binary to run instead, unbuilt.
fn build_server() -> PathBuf {
    if let Some(bin) = std::env::var_os("TIKETI_BENCH_SERVER") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("benches/ sits in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the server: cargo build --release -p tiketi-api --bin tiketi");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "tiketi-api", "--bin", "tiketi"])
        .current_dir(workspace)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the server builds");
    // This benchmark is <target>/release/deps/fanout-<hash>.
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let bin = exe.parent().and_then(Path::parent).expect("a target directory").join("tiketi");
    assert!(bin.exists(), "the server binary at {}", bin.display());
    bin
}

/// A port free a moment ago (the server binds it right after).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// The server's WebSocket counters (`/metrics`).
struct WsCounters {
    /// When the answer came. Under load a scrape waits its turn for a while, so rates are
    /// taken between answers rather than over the measured window.
    at: Instant,
    resyncs: f64,
    dropped: f64,
    messages: f64,
}

impl WsCounters {
    async fn scrape(client: &Client, base: &str) -> Self {
        let res = client.get(format!("{base}/metrics")).send().await.expect("GET /metrics");
        let at = Instant::now();
        let text = res.text().await.expect("metrics text");
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Self {
            at,
            resyncs: sum("tiketi_ws_resyncs_total"),
            dropped: sum("tiketi_ws_dropped_total"),
            messages: sum("tiketi_ws_messages_total"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP setup

async fn create_event(client: &Client, base: &str, admin: &str) -> String {
    let body = event::on_sale_event("Fan-out Concert", LAYOUT, HOLD_TTL_SECS);
    let (status, event) = post(client, &format!("{base}/admin/events"), Some(admin), &body).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().expect("an event id").to_owned()
}

async fn post(client: &Client, url: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("request sent");
    let status = res.status();
    (status, res.json().await.expect("a JSON body"))
}

fn token((status, body): (StatusCode, Value), expected: StatusCode) -> String {
    assert_eq!(status, expected, "auth request: {body}");
    body["token"].as_str().expect("a token").to_owned()
}

// ---------------------------------------------------------------------------------------
// Process figures (/proc)

/// CPU time of the whole machine so far (`/proc/stat`), in seconds: busy (user, nice, system,
/// irq, softirq: what neither the server nor this process used was someone else's) and
/// stolen by the hypervisor.
fn machine_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| l.split_whitespace().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    let steal = ticks.get(7).copied().unwrap_or(0.0);
    (busy / clock_ticks_per_second(), steal / clock_ticks_per_second())
}

/// Resident memory of a process, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// The soft limit on open files (`ulimit -n`), if it can be read.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
