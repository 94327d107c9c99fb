//! Test support for Tiketi: real PostgreSQL, never a mock.
//!
//! [`fresh_database`] returns the URL of a new, empty database. The first call in a test
//! process starts a throwaway PostgreSQL cluster from the machine's own binaries (initdb +
//! pg_ctl, as the `postgres` user when running as root, in a temporary folder, on a free
//! loopback port) and a watchdog that stops it when the test process exits. Set
//! `TIKETI_TEST_DATABASE_URL` to an admin URL to use an existing server instead.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A running PostgreSQL server the tests may create databases in.
#[derive(Debug)]
pub struct Cluster {
    host: String,
    port: u16,
    user: String,
    data_dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

impl Cluster {
    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{}@{}:{}/{}", self.user, self.host, self.port, name)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (tests of "the database went away"); [`Cluster::start_again`]
    /// brings it back on the same port with the same data.
    pub fn stop(&self) {
        let (Some(data), Some(bin)) = (&self.data_dir, &self.bin_dir) else {
            panic!("cannot stop a server this process did not start");
        };
        run_as_postgres(&bin.join("pg_ctl"), &["-D", path(data), "-m", "fast", "-w", "stop"]);
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn start_again(&self) {
        let (Some(data), Some(bin)) = (&self.data_dir, &self.bin_dir) else {
            panic!("cannot start a server this process did not start");
        };
        start_server(bin, data, self.port);
    }
}

/// The shared cluster of this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var("TIKETI_TEST_DATABASE_URL") {
        Ok(url) => parse_admin_url(&url),
        Err(_) => start_cluster(),
    })
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let cluster = cluster();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect to test cluster");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    cluster.url(&name)
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test after `limit`. Tests
/// wait for asynchronous effects with this instead of sleeping for a guessed time.
pub async fn eventually<T, F, Fut>(what: &str, limit: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn parse_admin_url(url: &str) -> Cluster {
    let config: tokio_postgres::Config = url.parse().expect("TIKETI_TEST_DATABASE_URL is a PostgreSQL URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    Cluster {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or("postgres").into(),
        data_dir: None,
        bin_dir: None,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (the server refuses
/// to run as root).
fn run_as_postgres(program: &Path, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let status = command
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(status.success(), "{} {args:?} failed: {status}", program.display());
}

fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL server binaries (initdb, pg_ctl) are installed")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn start_server(bin: &Path, data: &Path, port: u16) {
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        path(data)
    );
    let log = data.join("server.log");
    run_as_postgres(&bin.join("pg_ctl"), &["-D", path(data), "-l", path(&log), "-o", &options, "-w", "start"]);
}

fn start_cluster() -> Cluster {
    let bin = bin_dir();
    let data = std::env::temp_dir().join(format!("tiketi-pg-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).expect("create the cluster folder");
    if is_root() {
        let ok =
            Command::new("chown").args(["-R", "postgres:postgres", path(&data)]).status().is_ok_and(|s| s.success());
        assert!(ok, "chown the cluster folder to postgres");
    }
    run_as_postgres(
        &bin.join("initdb"),
        &["-D", path(&data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
    );
    let port = free_port();
    start_server(&bin, &data, port);
    // Stop the server and remove its files when this test process exits, however it exits.
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {runas}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {data}",
        pid = std::process::id(),
        runas = if is_root() { "runuser -u postgres -- " } else { "" },
        pg_ctl = path(&bin.join("pg_ctl")),
        data = path(&data),
    );
    // Deliberately never waited for: the watchdog must outlive this process.
    #[allow(clippy::zombie_processes)]
    Command::new("sh").args(["-c", &watchdog]).spawn().expect("start the cluster watchdog");
    Cluster { host: "127.0.0.1".into(), port, user: "postgres".into(), data_dir: Some(data), bin_dir: Some(bin) }
}

static REDIS: OnceLock<String> = OnceLock::new();

/// The URL of a throwaway Redis server shared by this test process (`redis-server` from
/// the machine, on a free loopback port, nothing persisted), started on first use and
/// stopped by a watchdog when the test process exits. Set `TIKETI_TEST_REDIS_URL` to use
/// an existing server instead.
pub fn redis() -> &'static str {
    REDIS.get_or_init(|| match std::env::var("TIKETI_TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let server = RedisServer::start();
            let watchdog = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {server} 2>/dev/null",
                pid = std::process::id(),
                server = server.child.id(),
            );
            #[allow(clippy::zombie_processes)]
            Command::new("sh").args(["-c", &watchdog]).spawn().expect("start the redis watchdog");
            let url = server.url();
            // The watchdog stops it, not this handle.
            std::mem::forget(server);
            url
        }
    })
}

/// A `redis-server` of a test's own (one it may stop and start again), on a loopback port,
/// nothing persisted; killed on drop. Fails the test if `redis-server` is not installed
/// (`scripts/test.sh` installs it): never a skip.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: std::process::Child,
}

impl RedisServer {
    /// Starts one on a free port and waits until it listens.
    pub fn start() -> Self {
        Self::on(free_port())
    }

    /// Starts one on `port` (e.g. again, after [`Drop`]) and waits until it listens.
    pub fn on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting redis-server (apt-get install redis-server, or run scripts/test.sh): {e}")
            });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not listen on {port} within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { port, child }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
