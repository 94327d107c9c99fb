//! The load generator end to end: the real application in process (test settings: the
//! embedded store, cheap password hashing, the mock payment provider with no delay) on
//! port 0, driven through `loadgen::run` as the binary drives it. Small runs, asserting
//! that the report's numbers agree with each other and with the server: every seat sold
//! once, nothing unexpected.

use std::path::PathBuf;
use std::time::Duration;
use tiketi_api::{Application, Settings};
use tiketi_benches::loadgen::{self, Config, Load, Pick, Report, Scenario};

const ADMIN_EMAIL: &str = "admin@loadgen-test.local";
const ADMIN_PASSWORD: &str = "admin-password-for-loadgen-tests";
const BUYERS: usize = 50;
const SEATS: u32 = 100;

/// The application on port 0; it stops when the returned sender is dropped.
async fn spawn_app() -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut settings = Settings::for_tests();
    settings.auth.admin_email = ADMIN_EMAIL.into();
    settings.auth.admin_password = ADMIN_PASSWORD.into();
    let app = Application::build(settings).await.expect("the application builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

fn out_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("loadgen-{name}"))
}

/// A tiny run: 50 buyers, 100 seats in rows of 10, 8 workers.
fn config(scenario: Scenario, base: &str) -> Config {
    let mut config = Config::new(scenario, base);
    config.admin_email = ADMIN_EMAIL.into();
    config.admin_password = ADMIN_PASSWORD.into();
    config.buyers = BUYERS;
    config.seats = SEATS;
    config.row_size = 10;
    config.load = Load::Closed { concurrency: 8 };
    // A bound, not the expected time: a run ends when the event sells out.
    config.duration = Duration::from_secs(60);
    config.out = Some(out_dir(scenario.name()));
    config
}

/// What every seat run must satisfy.
fn assert_adds_up(report: &Report) {
    assert_eq!(report.unexpected_errors, 0, "errors: {:?}", report.errors);
    assert_eq!(report.shed, 0, "errors: {:?}", report.errors);
    let kinds: u64 = report.by_kind.values().map(|k| k.sent).sum();
    assert_eq!(report.requests, kinds);
    let hold = &report.by_kind["hold"];
    assert_eq!(report.hold_attempts, hold.sent);
    assert_eq!(hold.sent, hold.ok + hold.conflicts, "every hold is granted or a conflict");
    assert_eq!(report.holds, hold.ok);
    let conflicts: u64 = report.errors.iter().filter(|(k, _)| k.starts_with("hold 409")).map(|(_, n)| n).sum();
    assert_eq!(conflicts, report.conflicts, "{:?}", report.errors);
    assert_eq!(report.latency.count, report.requests, "every request was answered");
    assert!(report.latency.p50_ms <= report.latency.p99_ms && report.latency.p99_ms <= report.latency.max_ms);
    let last = report.series.last().expect("a series");
    assert_eq!(last.seats_held_total, report.seats_held);
    assert!(report.time_to_sell_out_s.is_some_and(|s| s <= report.elapsed_s));
    let c = report.consistency.as_ref().expect("a consistency check");
    assert!(c.ok, "{c:?}");
    assert!(c.double_sold.is_empty() && c.double_granted.is_empty());
    assert_eq!(c.seats_total, u64::from(SEATS));
    assert_eq!(c.available, 0);
    assert_eq!(c.granted_holds, report.holds);
    assert_eq!(c.held_reservations + c.confirmed_reservations, report.holds);
}

fn assert_files(scenario: Scenario) {
    let dir = out_dir(scenario.name());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).expect("report.json")).expect("JSON");
    assert_eq!(json["scenario"], scenario.name());
    let csv = std::fs::read_to_string(dir.join("series.csv")).expect("series.csv");
    assert!(csv.starts_with("second,requests_per_s,holds_per_s"), "{csv}");
    let svg = std::fs::read_to_string(dir.join("chart.svg")).expect("chart.svg");
    assert!(svg.contains("<svg") && svg.contains("sell-out curve"));
    std::fs::read(dir.join("endpoints.json")).expect("endpoints.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_sells_every_seat_exactly_once() {
    let (base, _stop) = spawn_app().await;
    let report = loadgen::run(config(Scenario::Burst, &base)).await.expect("the run completes");
    assert!(report.sold_out, "{report}");
    assert_eq!(report.seats_held, u64::from(SEATS), "{report}");
    assert_eq!(report.holds, u64::from(SEATS), "one seat per hold");
    assert_adds_up(&report);
    let c = report.consistency.as_ref().unwrap();
    assert_eq!((c.held, c.sold, c.seats_in_held_reservations), (u64::from(SEATS), 0, u64::from(SEATS)));
    assert_files(Scenario::Burst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_run_pays_for_every_seat_exactly_once() {
    let (base, _stop) = spawn_app().await;
    let mut config = config(Scenario::Purchase, &base);
    config.quantity = 2;
    config.pick = Pick::Best;
    let report = loadgen::run(config).await.expect("the run completes");
    assert!(report.sold_out, "{report}");
    assert_eq!(report.holds, u64::from(SEATS) / 2, "{report}");
    assert_eq!((report.seats_held, report.seats_sold), (u64::from(SEATS), u64::from(SEATS)), "{report}");
    assert_eq!(report.by_kind["prepare"].ok, report.holds);
    assert_eq!(report.by_kind["confirm"].ok, report.holds);
    assert!(report.time_to_sell_out_paid_s.is_some());
    assert_adds_up(&report);
    let c = report.consistency.as_ref().unwrap();
    assert_eq!((c.held, c.sold, c.confirmed_reservations), (0, u64::from(SEATS), report.holds));
    assert_files(Scenario::Purchase);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_gated_run_admits_buyers_and_sells_out() {
    let (base, _stop) = spawn_app().await;
    let mut config = config(Scenario::Queue, &base);
    config.quantity = 2;
    config.queue.rate_per_second = 200;
    config.queue.poll_interval = Duration::from_millis(50);
    let report = loadgen::run(config).await.expect("the run completes");
    assert!(report.sold_out, "{report}");
    assert_eq!(report.seats_held, u64::from(SEATS), "{report}");
    let waits = report.queue_wait.as_ref().expect("queue waits");
    assert!(waits.count >= report.holds, "every hold was admitted first: {report}");
    assert!(report.by_kind["queue_join"].ok >= waits.count, "{report}");
    assert_adds_up(&report);
}
