//! The run's summary for people: what `loadgen` prints at the end (the files have the
//! rest).

use super::latency::Latency;
use super::report::Report;

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let load = match (self.load.concurrency, self.load.rate) {
            (Some(c), _) => format!("closed loop, {c} workers"),
            (_, Some(r)) => format!("open loop, {r} /s (at most {} in flight)", self.load.max_in_flight.unwrap_or(0)),
            _ => String::new(),
        };
        let made = if self.event_created { "created" } else { "given" };
        writeln!(
            f,
            "loadgen {} against {}: event {} ({made}, {} seats)",
            self.scenario, self.base_url, self.event, self.seats
        )?;
        writeln!(
            f,
            "  {load}; {} buyers; pick {} x{}; setup {:.1} s",
            self.buyers,
            format!("{:?}", self.pick).to_lowercase(),
            self.quantity,
            self.setup_s
        )?;
        writeln!(
            f,
            "  {:.2} s: {} requests ({:.0}/s); {} holds ({:.0}/s, {} seats); {} conflicts ({:.1} % of {} hold attempts)",
            self.elapsed_s,
            self.requests,
            self.requests_per_s,
            self.holds,
            self.holds_per_s,
            self.seats_held,
            self.conflicts,
            self.conflict_rate * 100.0,
            self.hold_attempts
        )?;
        if self.seats_sold > 0 {
            writeln!(f, "  {} seats paid for", self.seats_sold)?;
        }
        match (self.sold_out, self.time_to_sell_out_s) {
            (true, Some(s)) => {
                write!(f, "  sold out: {s:.2} s from the first hold to the last")?;
                match self.consistency.as_ref().map_or(0, |c| c.available) {
                    0 => writeln!(f)?,
                    left => writeln!(f, " ({left} seats left that cannot be held {} at a time)", self.quantity)?,
                }
            }
            (true, None) => writeln!(f, "  sold out (no hold of this run)")?,
            (false, _) if self.hold_attempts > 0 => writeln!(f, "  not sold out")?,
            (false, _) => {}
        }
        if let Some(paid) = self.time_to_sell_out_paid_s {
            writeln!(f, "  paid out: {paid:.2} s from the first hold to the last payment")?;
        }
        writeln!(
            f,
            "  {:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "latency ms", "count", "p50", "p95", "p99", "p99.9", "max"
        )?;
        let mut row = |name: &str, l: &Latency| {
            writeln!(
                f,
                "  {name:<14} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms, l.max_ms
            )
        };
        row("all", &self.latency)?;
        for (name, k) in &self.by_kind {
            row(name, &k.latency)?;
        }
        row("transactions", &self.transactions)?;
        if let Some(q) = &self.queue_wait {
            row("queue wait", q)?;
        }
        if let Some(lag) = &self.schedule_lag {
            row("schedule lag", lag)?;
        }
        if let Some(w) = &self.watch {
            row("staleness", &w.staleness)?;
            writeln!(
                f,
                "  watchers: {}/{} connected in {:.1} s, {} frames ({:.0}/s), {} resnapshots, {} closed early",
                w.connected, w.watchers, w.connect_s, w.frames, w.frames_per_s, w.resnapshots, w.closed_early
            )?;
        }
        if !self.errors.is_empty() {
            let errors: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            writeln!(f, "  non-2xx: {}", errors.join("; "))?;
        }
        writeln!(f, "  unexpected errors: {}; shed: {}", self.unexpected_errors, self.shed)?;
        if let Some(c) = &self.consistency {
            let verdict = if c.ok { "ok".to_owned() } else { format!("FAILED: {}", c.problems.join("; ")) };
            writeln!(
                f,
                "  consistency: {verdict} (map: {} available, {} held, {} sold; {} held + {} confirmed reservations)",
                c.available, c.held, c.sold, c.held_reservations, c.confirmed_reservations
            )?;
        }
        let g = &self.generator;
        match self.watch {
            Some(_) => write!(f, "  generator: {:.2} cores (the watchers included)", g.cpu_cores),
            None => write!(f, "  generator: {:.2} cores, {:.0} us CPU per request", g.cpu_cores, g.cpu_us_per_request),
        }
    }
}
