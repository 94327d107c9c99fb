//! The results of a run: the figures (as JSON), the per-second series (as CSV), the chart
//! (SVG), and a summary for people.

use super::config::{Config, Endpoints, Load, Pick};
use super::consistency::Consistency;
use super::error::LoadgenError;
use super::latency::Latency;
use super::stats::{Recorder, Second, cumulative, rate, ratio};
use super::stream::WatchReport;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the load was offered.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Closed loop: workers.
    pub concurrency: Option<usize>,
    /// Open loop: transactions per second.
    pub rate: Option<f64>,
    /// Open loop: most in flight.
    pub max_in_flight: Option<usize>,
}

/// One request kind's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Sent.
    pub sent: u64,
    /// 2xx.
    pub ok: u64,
    /// 409 on holds.
    pub conflicts: u64,
    /// 429 / 503 with `Retry-After`.
    pub shed: u64,
    /// Other statuses and transport failures.
    pub errors: u64,
    /// From when each request was due (open loop: the first request of a transaction from
    /// its intended start).
    pub latency: Latency,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the load started (this point covers `[second, second + 1)`).
    pub second: u64,
    /// Requests answered (or failed) per second.
    pub requests_per_s: f64,
    /// Successful holds per second.
    pub holds_per_s: f64,
    /// Hold conflicts per second.
    pub conflicts_per_s: f64,
    /// Other failures per second.
    pub errors_per_s: f64,
    /// Seats held since the start (the sell-out curve).
    pub seats_held_total: u64,
    /// Seats paid for since the start.
    pub seats_sold_total: u64,
    /// Median latency of the requests answered in this second.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Live-stream frames received per second (`watch`).
    pub frames_per_s: f64,
}

/// What the generator itself cost.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorCost {
    /// CPU seconds (user + system) during the load.
    pub cpu_s: f64,
    /// Cores busy on average during the load.
    pub cpu_cores: f64,
    /// CPU per request, in microseconds.
    pub cpu_us_per_request: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario.
    pub scenario: &'static str,
    /// Server.
    pub base_url: String,
    /// Event id.
    pub event: String,
    /// Whether the generator created the event.
    pub event_created: bool,
    /// Seats on the map at the start.
    pub seats: u64,
    /// Buyers used (none for `browse`).
    pub buyers: usize,
    /// Load.
    pub load: LoadSummary,
    /// Seat choice.
    pub pick: Pick,
    /// Seats per hold.
    pub quantity: u32,
    /// Set-up time (registration, event, map), seconds.
    pub setup_s: f64,
    /// From the start of the load until the last transaction ended, seconds.
    pub elapsed_s: f64,
    /// Requests sent during the load.
    pub requests: u64,
    /// Per second.
    pub requests_per_s: f64,
    /// Hold requests (retries included).
    pub hold_attempts: u64,
    /// Holds granted.
    pub holds: u64,
    /// Per second.
    pub holds_per_s: f64,
    /// Hold conflicts (409).
    pub conflicts: u64,
    /// Conflicts per hold attempt.
    pub conflict_rate: f64,
    /// Seats those holds took.
    pub seats_held: u64,
    /// Seats paid for (`purchase`).
    pub seats_sold: u64,
    /// Whether the event sold out (or what is left cannot be held `quantity` at a time).
    pub sold_out: bool,
    /// From the first hold granted to the last one, if it sold out.
    pub time_to_sell_out_s: Option<f64>,
    /// From the first hold granted to the last payment confirmed (`purchase`).
    pub time_to_sell_out_paid_s: Option<f64>,
    /// Every request.
    pub latency: Latency,
    /// By request kind.
    pub by_kind: BTreeMap<&'static str, KindReport>,
    /// Whole transactions from their due (intended) start.
    pub transactions: Latency,
    /// From joining the queue to admission (`queue`).
    pub queue_wait: Option<Latency>,
    /// Open loop: how late transactions started against the schedule (the generator's own
    /// lag; large values mean it could not keep up).
    pub schedule_lag: Option<Latency>,
    /// Failures by `"{kind} {status} {code}"`, conflicts included.
    pub errors: BTreeMap<String, u64>,
    /// Shed requests (429, 503 with `Retry-After`).
    pub shed: u64,
    /// Failures other than hold conflicts and shed requests.
    pub unexpected_errors: u64,
    /// The watchers (`watch`).
    pub watch: Option<WatchReport>,
    /// The consistency check.
    pub consistency: Option<Consistency>,
    /// The generator's own CPU.
    pub generator: GeneratorCost,
    /// Per second.
    pub series: Vec<Point>,
    /// Seats held so far at each granted hold, `[seconds since the start, seats]` (thinned
    /// to 1,000 points): the sell-out curve at full resolution.
    pub held_curve: Vec<[f64; 2]>,
    /// Seats paid so far at each confirmed payment, likewise.
    pub sold_curve: Vec<[f64; 2]>,
    /// The API's shape (reusable with `--config`).
    pub endpoints: Endpoints,
}

/// What the report is built from besides the recorders.
pub(crate) struct Inputs<'a> {
    pub config: &'a Config,
    pub event: String,
    pub event_created: bool,
    pub seats: u64,
    pub buyers: usize,
    pub setup: Duration,
    pub start: Instant,
    pub end: Instant,
    pub sold_out: bool,
    pub watch: Option<(WatchReport, Vec<u64>)>,
    pub consistency: Option<Consistency>,
    pub cpu_s: f64,
}

impl Report {
    /// Builds the report from the merged recorder.
    pub(crate) fn build(rec: &Recorder, i: Inputs<'_>) -> Self {
        let c = i.config;
        let elapsed = i.end.saturating_duration_since(i.start);
        let requests = rec.requests();
        let by_kind: BTreeMap<&'static str, KindReport> = rec
            .kinds()
            .map(|(kind, k)| {
                let report = KindReport {
                    sent: k.sent,
                    ok: k.ok,
                    conflicts: k.conflicts,
                    shed: k.shed,
                    errors: k.errors,
                    latency: Latency::of(&k.latency),
                };
                (kind.name(), report)
            })
            .collect();
        let hold = by_kind.get("hold");
        let (hold_attempts, conflicts) = hold.map_or((0, 0), |h| (h.sent, h.conflicts));
        let window = |last: Option<Instant>| match (i.sold_out, rec.first_hold, last) {
            (true, Some(first), Some(last)) => Some(last.saturating_duration_since(first).as_secs_f64()),
            _ => None,
        };
        let (watch, frames) = match i.watch {
            Some((w, frames)) => (Some(w), frames),
            None => (None, Vec::new()),
        };
        let load = match c.load {
            Load::Closed { concurrency } => {
                LoadSummary { mode: "closed", concurrency: Some(concurrency), rate: None, max_in_flight: None }
            }
            Load::Open { rate, max_in_flight } => {
                LoadSummary { mode: "open", concurrency: None, rate: Some(rate), max_in_flight: Some(max_in_flight) }
            }
        };
        let optional = |h: &hdrhistogram::Histogram<u64>| (!h.is_empty()).then(|| Latency::of(h));
        Self {
            scenario: c.scenario.name(),
            base_url: c.base_url.clone(),
            event: i.event,
            event_created: i.event_created,
            seats: i.seats,
            buyers: i.buyers,
            load,
            pick: c.pick,
            quantity: c.quantity,
            setup_s: i.setup.as_secs_f64(),
            elapsed_s: elapsed.as_secs_f64(),
            requests,
            requests_per_s: rate(requests, elapsed),
            hold_attempts,
            holds: rec.holds,
            holds_per_s: rate(rec.holds, elapsed),
            conflicts,
            conflict_rate: ratio(conflicts, hold_attempts),
            seats_held: rec.seats_held,
            seats_sold: rec.seats_sold,
            sold_out: i.sold_out,
            time_to_sell_out_s: window(rec.last_hold),
            time_to_sell_out_paid_s: if rec.seats_sold > 0 { window(rec.last_sale) } else { None },
            latency: Latency::of(&rec.all_latency()),
            unexpected_errors: by_kind.values().map(|k| k.errors).sum(),
            shed: by_kind.values().map(|k| k.shed).sum(),
            by_kind,
            transactions: Latency::of(&rec.transactions),
            queue_wait: optional(&rec.queue_wait),
            schedule_lag: optional(&rec.schedule_lag),
            errors: rec.errors.clone(),
            watch,
            consistency: i.consistency,
            generator: GeneratorCost {
                cpu_s: i.cpu_s,
                cpu_cores: rate_f(i.cpu_s, elapsed),
                cpu_us_per_request: if requests > 0 { i.cpu_s * 1e6 / requests as f64 } else { 0.0 },
            },
            series: series(&rec.series, &frames, elapsed),
            held_curve: cumulative(&rec.held_at, 1000),
            sold_curve: cumulative(&rec.sold_at, 1000),
            endpoints: c.endpoints.clone(),
        }
    }

    /// Whether nothing went wrong that a correct server under this load should not do:
    /// the consistency check (if run) passed.
    pub fn consistent(&self) -> bool {
        self.consistency.as_ref().is_none_or(|c| c.ok)
    }

    /// Writes `report.json`, `series.csv`, `chart.svg` and `endpoints.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), LoadgenError> {
        std::fs::create_dir_all(dir).map_err(|e| LoadgenError::io(dir, e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| LoadgenError::io(&path, e))
        };
        write("report.json", &serde_json::to_vec_pretty(self).expect("the report serialises"))?;
        write("endpoints.json", &serde_json::to_vec_pretty(&self.endpoints).expect("endpoints serialise"))?;
        write("series.csv", self.csv().as_bytes())?;
        super::chart::draw(self, &dir.join("chart.svg"))
    }

    /// The series as CSV, one line per second.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "second,requests_per_s,holds_per_s,conflicts_per_s,errors_per_s,seats_held_total,seats_sold_total,\
             p50_ms,p99_ms,frames_per_s\n",
        );
        for p in &self.series {
            let _ = writeln!(
                out,
                "{},{:.1},{:.1},{:.1},{:.1},{},{},{:.3},{:.3},{:.1}",
                p.second,
                p.requests_per_s,
                p.holds_per_s,
                p.conflicts_per_s,
                p.errors_per_s,
                p.seats_held_total,
                p.seats_sold_total,
                p.p50_ms,
                p.p99_ms,
                p.frames_per_s
            );
        }
        out
    }
}

fn rate_f(amount: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { amount / secs } else { 0.0 }
}

/// Per-second points; the last second of the load counts only the part of it the load
/// lasted, so a run that ends 0.3 s into a second does not show a dip.
pub fn series(seconds: &[Second], frames: &[u64], elapsed: Duration) -> Vec<Point> {
    let len = seconds.len().max(frames.iter().rposition(|&f| f > 0).map_or(0, |i| i + 1));
    let (mut held, mut sold) = (0, 0);
    (0..len)
        .map(|i| {
            let span = (elapsed.as_secs_f64() - i as f64).clamp(0.05, 1.0);
            let per_s = |n: u64| n as f64 / span;
            let s = seconds.get(i);
            held += s.map_or(0, |s| s.seats_held);
            sold += s.map_or(0, |s| s.seats_sold);
            let quantile = |q: f64| {
                s.filter(|s| !s.latency.is_empty()).map_or(0.0, |s| s.latency.value_at_quantile(q) as f64 / 1e3)
            };
            Point {
                second: i as u64,
                requests_per_s: per_s(s.map_or(0, |s| s.requests)),
                holds_per_s: per_s(s.map_or(0, |s| s.holds)),
                conflicts_per_s: per_s(s.map_or(0, |s| s.conflicts)),
                errors_per_s: per_s(s.map_or(0, |s| s.errors)),
                seats_held_total: held,
                seats_sold_total: sold,
                p50_ms: quantile(0.5),
                p99_ms: quantile(0.99),
                frames_per_s: per_s(frames.get(i).copied().unwrap_or(0)),
            }
        })
        .collect()
}

/// CPU time (user + system) this process has used, in seconds (Linux; 0 elsewhere).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 14th, stime the 15th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux the generator runs on.
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::stats::{Kind, Outcome};

    #[test]
    fn the_series_accumulates_the_sell_out_curve_and_scales_the_last_partial_second() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        for i in 0..10u64 {
            let at = start + Duration::from_millis(i * 250);
            r.request(Kind::Hold, Outcome::Ok, Duration::from_millis(i + 1), at);
            r.held(2, at);
        }
        // 10 holds at 0, 0.25, ... 2.25 s; the load lasted 2.5 s.
        let s = series(&r.series, &[], Duration::from_millis(2500));
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().map(|p| p.seats_held_total).collect::<Vec<_>>(), [8, 16, 20]);
        assert_eq!(s[0].holds_per_s, 4.0);
        // The last second holds 2 holds in its first half second: 4 a second, not 2.
        assert_eq!(s[2].holds_per_s, 4.0);
        assert!(s[0].p99_ms >= 4.0 && s[0].p99_ms < 4.1, "{:?}", s[0]);
    }

    #[test]
    fn frames_extend_the_series_past_the_last_request() {
        let s = series(&[], &[5, 7, 0], Duration::from_secs(3));
        assert_eq!(s.iter().map(|p| p.frames_per_s).collect::<Vec<_>>(), [5.0, 7.0]);
    }

    #[test]
    fn the_report_adds_up() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        let at = start + Duration::from_millis(500);
        for _ in 0..6 {
            r.request(Kind::Hold, Outcome::Ok, Duration::from_millis(2), at);
            r.held(1, at + Duration::from_millis(500));
        }
        for _ in 0..2 {
            r.request(Kind::Hold, Outcome::Conflict, Duration::from_millis(2), at);
            r.error(Kind::Hold, Some(409), "seats_unavailable");
        }
        r.request(Kind::Hold, Outcome::Shed, Duration::from_millis(2), at);
        r.request(Kind::Probe, Outcome::Status(500), Duration::from_millis(2), at);
        let config = Config::new(super::super::config::Scenario::Burst, "http://x");
        let inputs = Inputs {
            config: &config,
            event: "e".into(),
            event_created: true,
            seats: 6,
            buyers: 1,
            setup: Duration::ZERO,
            start,
            end: start + Duration::from_secs(2),
            sold_out: true,
            watch: None,
            consistency: None,
            cpu_s: 0.5,
        };
        let report = Report::build(&r, inputs);
        assert_eq!((report.requests, report.hold_attempts, report.holds, report.conflicts), (10, 9, 6, 2));
        assert_eq!(report.requests_per_s, 5.0);
        assert_eq!(report.holds_per_s, 3.0);
        assert!((report.conflict_rate - 2.0 / 9.0).abs() < 1e-12);
        assert_eq!((report.shed, report.unexpected_errors), (1, 1));
        assert_eq!(report.time_to_sell_out_s, Some(0.0));
        assert_eq!(report.generator.cpu_cores, 0.25);
        assert_eq!(report.generator.cpu_us_per_request, 50_000.0);
        let csv = report.csv();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(report.to_string().contains("6 holds"));
    }
}
