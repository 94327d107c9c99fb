//! `loadgen`: the on-sale load generator. An HTTP and WebSocket client pointed at a running
//! Tiketi server (or anything with the same endpoint meanings) that simulates buyers,
//! measures what they experience, checks through the API that nothing was sold twice, and
//! writes the results. The binary is `src/bin/loadgen.rs`; `run` is the whole of it as a
//! library call (the integration test `tests/loadgen.rs` uses it against the app in
//! process).
//!
//! # Scenarios
//!
//! - `burst`: N buyers, an event of M seats. Each transaction is one buyer's hold: pick
//!   seats from the live map (`--pick front`: one of the first available seats, as everyone
//!   wants the front; `random`: any) or let the server choose (`--pick best`,
//!   `bestAvailable`), hold them, and on a 409 learn which seats went and retry (up to
//!   `--retries`). Ends when the event sells out or at `--duration`. `--idempotency-keys`
//!   sends a fresh `Idempotency-Key` with every hold, as a careful client does.
//! - `browse`: anonymous reads of the seat map, the event and the event list
//!   (`--browse-mix 2:1:1`), bodies read and dropped.
//! - `purchase`: hold, `POST /payments/prepare`, `POST /payments/confirm` with a made-up
//!   payment key (Tiketi's default mock provider accepts any); reports seats paid and the
//!   time to pay out.
//! - `queue`: the event is created queue-gated (`--queue-rate`, `--queue-max-active`). A
//!   session joins, polls the status every `--poll-interval` until admitted, then holds with
//!   `X-Admission-Token`. Each session has its own buyer; reports the wait for admission.
//! - `watch`: `--watchers` WebSocket connections on the live seat stream count `seats`
//!   frames and their staleness (now minus the frame's `at`: one machine, one clock) while
//!   holds run as in `burst`, open loop at `--rate` (default 50/s), for `--duration`.
//!
//! # Closed and open loop
//!
//! `--concurrency C` (default) runs C workers, each starting its next transaction when its
//! last one ended. `--rate R` starts transaction `i` at `i / R` seconds whatever the others
//! are doing (at most `--max-in-flight` at once; a start that waits for a slot still counts
//! from its intended time), and every latency is measured from that *intended* time, so a
//! server that stalls is charged for the whole queue behind the stall rather than for one
//! slow request (coordinated omission avoided). The report's `schedule_lag` says how late
//! the generator itself started transactions; if it is large the generator, not the
//! server, was the limit.
//!
//! # Set-up
//!
//! Not measured. Unless `--event ID` is given, the admin logs in (`--admin-email`,
//! `--admin-password`, default from `TIKETI_AUTH__ADMIN_EMAIL` / `TIKETI_AUTH__ADMIN_PASSWORD`)
//! and creates an event on sale since a minute ago: M seats in rows of `--row-size`, 20
//! rows a section, no per-user limit, holds lasting `--hold-ttl` seconds. Buyers
//! `loadgen-{i}@loadgen.test` register concurrently (`--register-concurrency`; registering
//! hashes a password, so it is slow on purpose; already-registered ones log in), and their
//! tokens are cached in `--token-cache` (default `target/loadgen/tokens.json`) for the next
//! run against the same server, while younger than `--token-max-age`. The seat map is read
//! once; buyers then keep it current from granted holds, conflicts, re-reads when it looks
//! empty, and (unless `--no-live-map`) one WebSocket on the live seat stream.
//!
//! # Results
//!
//! Printed as a summary, and written to `--out` (default `target/loadgen/{scenario}-{time}`):
//! `report.json` (everything: holds/s, requests/s, conflict rate, p50/p95/p99/p99.9 by
//! request kind and per transaction, errors by kind/status/code, time to sell out from the
//! first hold granted to the last, the consistency check, the generator's own CPU, the
//! series and the endpoints used), `series.csv` (per second: requests/s, holds/s,
//! conflicts/s, errors/s, seats held and paid so far, p50 and p99 of the requests answered
//! in that second, frames/s), `chart.svg` (throughput, latency and the sell-out curve over
//! time) and `endpoints.json` (the API shape, reusable with `--config`). A progress bar
//! shows on a terminal unless `--quiet`.
//!
//! The consistency check reads the seat map and every buyer's reservations after the load:
//! no seat in two live reservations (nor granted to two live holds), every live
//! reservation's seats showing its status, every granted hold listed, and on a created
//! event every taken seat belonging to a listed reservation. The binary exits 1 when it
//! fails.
//!
//! # Another server
//!
//! Every path, body and answer field the generator uses is a field of [`Endpoints`]:
//! paths and JSON bodies are templates with placeholders (`{event}`, `{seat}`, `{seats}`,
//! `{quantity}`, `{reservation}`, `{order}`, `{amount}`, `{paymentKey}`, `{email}`,
//! `{password}`, `{name}`, `{buyer}`; see [`template`]), answers are read with JSON
//! pointers. Override them one by one on the command line (`--hold-path
//! "/api/v1/events/{event}/reservations"`, `--hold-seats-body '{"seatIds":[{seats}]}'`, ...)
//! or all at once with `--config api.json`, a JSON object with any subset of the fields
//! (each run writes the full set as `endpoints.json` to start from). Event creation uses
//! Tiketi's body; elsewhere create the event by hand and pass `--event`. The live map and
//! `watch` use Tiketi's WebSocket messages; `--ws-path ""` turns them off.
//!
//! # Cost
//!
//! The generator shares the machine with the server, so it is built to be cheap per
//! request: one `reqwest` client (one pool, idle connections kept, Nagle off), a
//! multi-threaded tokio runtime, URLs parsed once and cloned, constant bodies shared as
//! `Bytes`, each buyer's `Authorization` header built once, picked-seat bodies rendered in
//! one pass into one `String`, recorders sharded so recording is an uncontended lock and a
//! few additions, and the live-stream watchers read frames with a substring scan.
//!
//! Measured on this project's 2-core machine (while other builds ran: load average ~4.5),
//! against `loadgen null-server` (`browse --event x --concurrency 64`): about 41,000
//! requests/s, at 12 µs of the generator's CPU per request (0.5 cores; the rest of the
//! machine went to the null server and the other load). Holds against Tiketi cost more
//! (a JSON body out, the answer parsed, the buyers' map and ledger updated): 18 µs of CPU
//! per request in the closed loop. The open loop costs more again, 75 µs per hold at
//! 5,000 holds/s (0.4 cores) with the live map followed over a WebSocket, because its
//! dispatcher sleeps on a thread of its own and wakes the runtime for every start: tokio's
//! millisecond timer would otherwise add up to a millisecond of the generator's lateness to
//! every latency (measured: schedule lag p50 0.66 ms on tokio's timer, 0.08 ms on the
//! thread, against a server answering in 0.2 ms). Every report carries the generator's own CPU
//! (`generator.cpu_cores`, `cpu_us_per_request`; for `watch` it includes the watchers) and,
//! in the open loop, its `schedule_lag`.
//!
//! # Crates added for it
//!
//! - `hdrhistogram`: latency percentiles with bounded error (3 significant digits) and
//!   fixed memory however many requests, mergeable across shards and seconds; sorting raw
//!   samples would cost memory per request and a sort per second of the series.
//! - `indicatif`: the progress bar (drawn on stderr, hidden off a terminal or with
//!   `--quiet`), without writing terminal handling by hand. No default features.
//! - `plotters`: the SVG chart, with only `svg_backend` and `line_series` (no fonts, no
//!   bitmap encoders).

mod api;
mod browse;
mod chart;
mod config;
mod consistency;
mod driver;
mod error;
mod hold;
mod latency;
mod null_server;
mod progress;
mod purchase;
mod queue;
mod report;
mod run;
mod schedule;
mod seats;
mod setup;
mod stats;
mod stream;
mod summary;
pub mod template;

pub use config::{Config, Endpoints, Load, Pick, QueueOptions, Scenario};
pub use consistency::Consistency;
pub use error::LoadgenError;
pub use latency::Latency;
pub use null_server::serve as null_server;
pub use report::{GeneratorCost, KindReport, LoadSummary, Point, Report};
pub use schedule::Schedule;
pub use stream::WatchReport;

use api::Api;
use run::Run;
use seats::SeatView;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use stream::Watchers;
use template::Vars;

/// Runs `config` against its server: set-up, load, consistency check, report (written to
/// `config.out` if set).
pub async fn run(config: Config) -> Result<Report, LoadgenError> {
    config.validate().map_err(LoadgenError::Config)?;
    let setup_started = Instant::now();
    let connections = config.concurrency().max(config.register_concurrency).min(20_000) + 16;
    let api = Arc::new(Api::new(&config.base_url, config.endpoints.clone(), config.timeout, connections)?);
    let (event, created) = match &config.event {
        Some(event) => (event.clone(), false),
        None => (setup::create_event(&api, &config).await?, true),
    };
    let tokens = if config.scenario == Scenario::Browse {
        Vec::new()
    } else {
        let bar = progress::bar(config.progress, config.buyers as u64, "buyers");
        let tokens = setup::buyers(&api, &config, &bar).await?;
        bar.finish_and_clear();
        tokens
    };
    let buyers = tokens.iter().map(|t| Api::bearer(t)).collect();
    // Browsing needs no map; a server that has none can still be browsed (or a trivial
    // server used to measure the generator).
    let map = match setup::seat_map(&api, &event).await {
        Ok(map) => map,
        Err(_) if !config.scenario.holds() => Vec::new(),
        Err(e) => return Err(e),
    };
    let seats = map.len() as u64;
    let available = config.endpoints.seat_available.clone();
    let view = config
        .scenario
        .holds()
        .then(|| Arc::new(SeatView::new(map.into_iter().map(|(id, status)| (id, status == available)))));
    let ws_url = (!config.endpoints.ws_path.is_empty())
        .then(|| api.ws_url(&api.templates.ws_path, &Vars { event: &event, ..Vars::default() }));
    let frames = Arc::new(AtomicU64::new(0));
    let watchers = match (&ws_url, config.scenario) {
        (Some(url), Scenario::Watch) => {
            let seconds = config.duration.as_secs() as usize;
            Some(Watchers::connect(url, config.watchers, seconds, frames.clone()).await)
        }
        (None, Scenario::Watch) => return Err(LoadgenError::Config("the watch scenario needs a --ws-path".into())),
        _ => None,
    };
    let setup = setup_started.elapsed();

    let cpu_before = report::cpu_seconds();
    let mut run = Run::new(config.clone(), api, event.clone(), buyers, view.clone());
    run.live.frames = frames;
    let run = Arc::new(run);
    if let Some(w) = &watchers {
        w.begin(run.start);
    }
    let (follow_done, follow_stop) = tokio::sync::oneshot::channel::<()>();
    let follower = match (&ws_url, &view) {
        (Some(url), Some(view)) if config.live_map && run.picks_seats() => {
            let done = async move {
                let _ = follow_stop.await;
            };
            Some(tokio::spawn(stream::follow(view.clone(), url.clone(), available.clone(), done)))
        }
        _ => None,
    };
    let seat_bar = config.scenario.holds() && config.scenario != Scenario::Watch;
    let len = if seat_bar { seats } else { config.duration.as_secs() };
    let bar = progress::bar(config.progress, len, config.scenario.name());
    let ticker = progress::follow(run.clone(), bar.clone(), seat_bar);
    match config.scenario {
        Scenario::Burst => run.drive(hold::burst).await,
        Scenario::Browse => run.drive(browse::browse).await,
        Scenario::Purchase => run.drive(purchase::purchase).await,
        Scenario::Queue => run.drive(queue::session).await,
        Scenario::Watch => {
            // The holds may sell out early; the watchers keep watching for the duration.
            tokio::join!(run.drive(hold::burst), tokio::time::sleep_until(run.deadline.into()));
        }
    }
    let end = Instant::now();
    let cpu = report::cpu_seconds() - cpu_before;
    let watch = match watchers {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    ticker.abort();
    bar.finish_and_clear();
    let _ = follow_done.send(());
    if let Some(follower) = follower {
        let _ = follower.await;
    }

    let consistency = if config.check && config.scenario.holds() {
        Some(consistency::verify(&run, created.then_some(seats)).await?)
    } else {
        None
    };
    let inputs = report::Inputs {
        config: &config,
        event,
        event_created: created,
        seats,
        buyers: run.buyers.len(),
        setup,
        start: run.start,
        end,
        sold_out: run.sold_out(),
        watch,
        consistency,
        cpu_s: cpu,
    };
    let report = Report::build(&run.stats.merged(), inputs);
    if let Some(dir) = &config.out {
        report.write(dir)?;
    }
    Ok(report)
}
