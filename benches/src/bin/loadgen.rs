//! `loadgen`: the on-sale load generator's command line. Everything it does is in
//! `tiketi_benches::loadgen` (whose docs describe the scenarios, the results and how to
//! point it at another server); this only turns flags into a `Config`.
//!
//! ```sh
//! cargo run --release -p tiketi-benches --bin loadgen -- burst --base-url http://127.0.0.1:8080 \
//!   --buyers 1000 --seats 2000 --concurrency 50 --out target/loadgen/run1
//! ```
//!
//! Exit status: 0 when the run completed and the consistency check passed, 1 when the
//! check found a problem, 2 when the run could not be set up.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tiketi_benches::loadgen::{self, Config, Endpoints, Load, Pick, Scenario};

/// The on-sale load generator: simulated buyers against a running Tiketi server (or one
/// with the same endpoints), with latency percentiles, a consistency check and a chart.
#[derive(Parser)]
#[command(name = "loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Buyers hold seats (from the live map, or best available) until the event sells out.
    Burst(RunArgs),
    /// Anonymous reads: the seat map, the event, the event list.
    Browse(RunArgs),
    /// Hold, prepare the payment, confirm it (the mock provider accepts any key).
    Purchase(RunArgs),
    /// Queue-gated on-sale: join, poll until admitted, hold with the admission token.
    Queue(RunArgs),
    /// WebSocket watchers of the live seat stream while holds run open loop (--rate, default 50/s).
    Watch(RunArgs),
    /// A trivial HTTP server answering `200 {}` to everything, to measure the generator itself.
    NullServer {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9999")]
        addr: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PickArg {
    /// One of the first available seats on the map (everyone wants the front).
    Front,
    /// Any available seat on the map.
    Random,
    /// The server's best available.
    Best,
}

#[derive(Args)]
struct RunArgs {
    /// The server.
    #[arg(long, env = "LOADGEN_BASE_URL", default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Buyers to register (or log in) and use round-robin.
    #[arg(long, default_value_t = 100)]
    buyers: usize,
    /// Seats of the event to create.
    #[arg(long, default_value_t = 1000)]
    seats: u32,
    /// Use this event instead of creating one.
    #[arg(long)]
    event: Option<String>,
    /// Closed loop: workers, each starting its next transaction when its last ended.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Open loop: transactions started per second, latency counted from the intended start.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most transactions in flight (a start waiting for a slot still counts from its intended time).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Longest the load runs (seat scenarios end earlier when the event sells out): 20s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// Seats per hold.
    #[arg(long, default_value_t = 1)]
    quantity: u32,
    /// How buyers choose seats.
    #[arg(long, value_enum, default_value_t = PickArg::Front)]
    pick: PickArg,
    /// With --pick front: how many of the first available seats buyers choose among (0: the concurrency, or rate/100).
    #[arg(long, default_value_t = 0)]
    front_window: usize,
    /// Further holds after a conflict, per transaction.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Send a fresh Idempotency-Key with every hold, as a careful client does.
    #[arg(long)]
    idempotency_keys: bool,
    /// Seats per row of the created event (20 rows a section).
    #[arg(long, default_value_t = 50)]
    row_size: u32,
    /// Hold time-to-live of the created event, seconds.
    #[arg(long, default_value_t = 600)]
    hold_ttl: u64,
    /// Admin e-mail (to create the event).
    #[arg(long, env = "TIKETI_AUTH__ADMIN_EMAIL", default_value = "admin@tiketi.local")]
    admin_email: String,
    /// Admin password (to create the event).
    #[arg(long, env = "TIKETI_AUTH__ADMIN_PASSWORD", hide_env_values = true, default_value = "")]
    admin_password: String,
    /// Buyers are {prefix}-{i}@loadgen.test.
    #[arg(long, default_value = "loadgen")]
    email_prefix: String,
    /// Registrations (or logins) in flight during set-up.
    #[arg(long, default_value_t = 8)]
    register_concurrency: usize,
    /// Where buyers' tokens are kept between runs.
    #[arg(long, default_value = "target/loadgen/tokens.json")]
    token_cache: PathBuf,
    /// Always register or log in; keep no tokens.
    #[arg(long)]
    no_token_cache: bool,
    /// Cached tokens older than this are not used (Tiketi's access tokens last 15 minutes).
    #[arg(long, default_value = "10m", value_parser = duration)]
    token_max_age: Duration,
    /// queue: admissions per second of the created event's queue.
    #[arg(long, default_value_t = 100)]
    queue_rate: u32,
    /// queue: most buyers admitted at once (0: no cap).
    #[arg(long, default_value_t = 0)]
    queue_max_active: u32,
    /// queue: time between status polls while waiting.
    #[arg(long, default_value = "250ms", value_parser = duration)]
    poll_interval: Duration,
    /// watch: WebSocket connections (mind `ulimit -n` and the server's stream.max_connections).
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// browse: seat map : event : event list weights.
    #[arg(long, default_value = "2:1:1", value_parser = mix)]
    browse_mix: [u32; 3],
    /// Do not follow the live seat stream to keep the buyers' map current.
    #[arg(long)]
    no_live_map: bool,
    /// Per request.
    #[arg(long, default_value = "30s", value_parser = duration)]
    timeout: Duration,
    /// Where the results go (default target/loadgen/{scenario}-{UTC time}).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Skip the consistency check.
    #[arg(long)]
    no_check: bool,
    /// Seeds the seat choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A JSON file of endpoint fields (any subset; see endpoints.json in any run's results).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Endpoint overrides, applied over --config.
#[derive(Args)]
#[command(next_help_heading = "API shape (path and body templates; placeholders like {event}, {seats})")]
struct ApiArgs {
    /// POST: hold seats.
    #[arg(long)]
    hold_path: Option<String>,
    /// Hold body for picked seats, e.g. '{"seatIds":[{seats}]}'.
    #[arg(long)]
    hold_seats_body: Option<String>,
    /// Hold body for best available, e.g. '{"bestAvailable":{"quantity":{quantity}}}'.
    #[arg(long)]
    hold_best_body: Option<String>,
    /// GET: the seat map.
    #[arg(long)]
    seats_path: Option<String>,
    /// GET: one event.
    #[arg(long)]
    event_path: Option<String>,
    /// GET: the event list.
    #[arg(long)]
    events_path: Option<String>,
    /// GET: a buyer's reservations.
    #[arg(long)]
    my_reservations_path: Option<String>,
    /// POST: prepare a payment.
    #[arg(long)]
    prepare_path: Option<String>,
    /// Prepare body.
    #[arg(long)]
    prepare_body: Option<String>,
    /// POST: confirm a payment.
    #[arg(long)]
    confirm_path: Option<String>,
    /// Confirm body.
    #[arg(long)]
    confirm_body: Option<String>,
    /// POST: join the queue.
    #[arg(long)]
    queue_join_path: Option<String>,
    /// GET: queue status.
    #[arg(long)]
    queue_status_path: Option<String>,
    /// Header carrying the admission token.
    #[arg(long)]
    admission_header: Option<String>,
    /// WebSocket: live seat stream ("" for none).
    #[arg(long)]
    ws_path: Option<String>,
    /// POST: register a buyer.
    #[arg(long)]
    register_path: Option<String>,
    /// POST: log in.
    #[arg(long)]
    login_path: Option<String>,
    /// POST (admin): create an event.
    #[arg(long)]
    admin_events_path: Option<String>,
}

impl ApiArgs {
    fn apply(self, e: &mut Endpoints) {
        let fields = [
            (self.hold_path, &mut e.hold_path),
            (self.hold_seats_body, &mut e.hold_seats_body),
            (self.hold_best_body, &mut e.hold_best_body),
            (self.seats_path, &mut e.seats_path),
            (self.event_path, &mut e.event_path),
            (self.events_path, &mut e.events_path),
            (self.my_reservations_path, &mut e.my_reservations_path),
            (self.prepare_path, &mut e.prepare_path),
            (self.prepare_body, &mut e.prepare_body),
            (self.confirm_path, &mut e.confirm_path),
            (self.confirm_body, &mut e.confirm_body),
            (self.queue_join_path, &mut e.queue_join_path),
            (self.queue_status_path, &mut e.queue_status_path),
            (self.admission_header, &mut e.admission_header),
            (self.ws_path, &mut e.ws_path),
            (self.register_path, &mut e.register_path),
            (self.login_path, &mut e.login_path),
            (self.admin_events_path, &mut e.admin_events_path),
        ];
        for (value, field) in fields {
            if let Some(value) = value {
                *field = value;
            }
        }
    }
}

impl RunArgs {
    fn into_config(self, scenario: Scenario) -> Result<Config, loadgen::LoadgenError> {
        let mut endpoints = match &self.config {
            Some(path) => Endpoints::from_file(path)?,
            None => Endpoints::default(),
        };
        self.api.apply(&mut endpoints);
        let load = match (self.rate, scenario) {
            (Some(rate), _) => Load::Open { rate, max_in_flight: self.max_in_flight },
            (None, Scenario::Watch) => Load::Open { rate: 50.0, max_in_flight: self.max_in_flight },
            (None, _) => Load::Closed { concurrency: self.concurrency },
        };
        let out = self.out.unwrap_or_else(|| {
            let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
            let now = time::OffsetDateTime::now_utc().format(&format).unwrap_or_default();
            PathBuf::from(format!("target/loadgen/{}-{now}", scenario.name()))
        });
        let mut config = Config::new(scenario, self.base_url);
        config.load = load;
        config.duration = self.duration;
        config.buyers = self.buyers;
        config.seats = self.seats;
        config.row_size = self.row_size;
        config.hold_ttl_secs = self.hold_ttl;
        config.event = self.event;
        config.admin_email = self.admin_email;
        config.admin_password = self.admin_password;
        config.email_prefix = self.email_prefix;
        config.quantity = self.quantity;
        config.pick = match self.pick {
            PickArg::Front => Pick::Front,
            PickArg::Random => Pick::Random,
            PickArg::Best => Pick::Best,
        };
        config.front_window = self.front_window;
        config.retries = self.retries;
        config.idempotency_keys = self.idempotency_keys;
        config.live_map = !self.no_live_map;
        config.queue.rate_per_second = self.queue_rate;
        config.queue.max_active = self.queue_max_active;
        config.queue.poll_interval = self.poll_interval;
        config.watchers = self.watchers;
        config.browse_mix = self.browse_mix;
        config.timeout = self.timeout;
        config.register_concurrency = self.register_concurrency;
        config.token_cache = (!self.no_token_cache).then_some(self.token_cache);
        config.token_max_age = self.token_max_age;
        config.out = Some(out);
        config.progress = !self.quiet;
        config.check = !self.no_check;
        config.seed = self.seed;
        config.endpoints = endpoints;
        Ok(config)
    }
}

/// `20s`, `500ms`, `2m`, or plain seconds.
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("{text:?}: expected a number with s, ms or m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "m" => value * 60.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use s, ms or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// `2:1:1`.
fn mix(text: &str) -> Result<[u32; 3], String> {
    let parts: Vec<u32> =
        text.split(':').map(|p| p.trim().parse()).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
    <[u32; 3]>::try_from(parts).map_err(|_| format!("{text:?}: expected three weights like 2:1:1"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let scenario = match cli.command {
        Command::NullServer { addr } => return runtime.block_on(null_server(&addr)),
        Command::Burst(args) => (Scenario::Burst, args),
        Command::Browse(args) => (Scenario::Browse, args),
        Command::Purchase(args) => (Scenario::Purchase, args),
        Command::Queue(args) => (Scenario::Queue, args),
        Command::Watch(args) => (Scenario::Watch, args),
    };
    let (scenario, args) = scenario;
    let config = match args.into_config(scenario) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let out = config.out.clone();
    match runtime.block_on(loadgen::run(config)) {
        Ok(report) => {
            println!("{report}");
            if let Some(dir) = out {
                println!("  results: {}/{{report.json,series.csv,chart.svg,endpoints.json}}", dir.display());
            }
            if report.consistent() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

async fn null_server(addr: &str) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loadgen null-server: binding {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "null server on http://{} (Ctrl-C to stop)",
        listener.local_addr().map_or(addr.to_owned(), |a| a.to_string())
    );
    tokio::select! {
        served = loadgen::null_server(listener) => {
            if let Err(e) = served {
                eprintln!("loadgen null-server: {e}");
                return ExitCode::from(2);
            }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(duration("3h").is_err());
    }

    #[test]
    fn the_browse_mix_needs_three_weights() {
        assert_eq!(mix("2:1:1"), Ok([2, 1, 1]));
        assert!(mix("1:1").is_err());
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
