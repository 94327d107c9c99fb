//! [`Application`]: builds the whole node (store, actors, routes), binds the listener, and
//! runs until a shutdown signal, then drains within the configured deadline. `main` and
//! the end-to-end tests boot exactly the same thing.

use crate::auth::{AuthKeys, random_token};
use crate::error::ApiError;
use crate::routes;
use crate::settings::{Settings, StoreKind};
use crate::state::AppState;
use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::serve::{Listener, ListenerExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{Clock, Runtime};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{MemoryStore, PgStore, Role, Store};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A built node, bound to its port, not yet serving.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    state: AppState,
    runtime: Runtime,
    streams: StreamThreads,
    shutdown_deadline: Duration,
}

/// The live stream's own runtime (`stream.workers` threads), stopped when the node is.
struct StreamThreads(Option<tokio::runtime::Runtime>);

impl StreamThreads {
    fn start(workers: usize) -> anyhow::Result<Self> {
        if workers == 0 {
            return Ok(Self(None));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("tiketi-stream")
            .on_thread_start(crate::state::mark_stream_thread)
            .enable_all()
            .build()
            .context("starting the live stream's threads")?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.0.as_ref().map(|runtime| runtime.handle().clone())
    }
}

impl Drop for StreamThreads {
    fn drop(&mut self) {
        // Not waiting: this may run on another runtime's thread.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Application {
    /// Builds a node from settings, with the store they name and the system clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        match settings.store.kind {
            StoreKind::Memory => Self::build_with(settings, Arc::new(MemoryStore::new()), Clock::system()).await,
            StoreKind::Postgres => {
                let store = Arc::new(connect_and_migrate(&settings).await?);
                let cluster = settings.cluster.enabled.then(|| store.clone());
                Self::build_node(settings, store, cluster, Clock::system()).await
            }
        }
    }

    /// Builds a node on a given store and clock (tests).
    pub async fn build_with(settings: Settings, store: Arc<dyn Store>, clock: Clock) -> anyhow::Result<Self> {
        Self::build_node(settings, store, None, clock).await
    }

    /// Builds a node; with `cluster`, one of several, whose membership, leases and fences
    /// live in that PostgreSQL store.
    async fn build_node(
        settings: Settings,
        store: Arc<dyn Store>,
        cluster: Option<Arc<PgStore>>,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        settings.validate().map_err(anyhow::Error::msg)?;
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = listen(&address, settings.server.listen_backlog).await?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.server.port);
        let cluster = cluster.map(|pg| tiketi_cluster::Cluster::new(settings.cluster_config(port), pg));
        let placement = cluster.clone().map(|c| Arc::new(c) as Arc<dyn tiketi_actors::Placement>);
        let auth = AuthKeys::new(&settings.auth).map_err(anyhow::Error::msg)?;
        let journal = JournalConfig {
            capacity: settings.journal.capacity,
            max_batch: settings.journal.max_batch,
            linger: Duration::from_millis(settings.journal.linger_ms),
            ..JournalConfig::default()
        };
        let mut actors = settings.actor_config().map_err(anyhow::Error::msg)?;
        // The live stream between nodes: every actor's frames also go to Redis.
        actors.frame_sink = cluster.as_ref().and_then(|c| c.start_fanout(settings.stream.channel_capacity));
        let runtime =
            Runtime::start(store, journal, actors, clock, placement).await.context("starting the actor system")?;
        if let Some(cluster) = &cluster {
            cluster.start(runtime.directory().clone()).await;
        }
        let streams = StreamThreads::start(settings.stream.workers)?;
        let state = AppState::new(runtime.directory().clone(), cluster, auth, settings.clone(), streams.handle());
        bootstrap_admin(&state).await?;
        if settings.demo.enabled
            && let Some(event) = crate::demo::seed(&state).await.context("seeding demo data")?
        {
            tracing::info!(event_id = %event, "demo event on sale: GET /api/v1/events/{event}");
        }
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
            runtime,
            streams,
            shutdown_deadline: Duration::from_secs(settings.server.shutdown_deadline_secs),
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (tests use it to reach the store and the directory).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then: not ready, stop accepting, let in-flight
    /// requests finish, stop the actors and flush the journal, all within the deadline.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, state, runtime, streams, shutdown_deadline } = self;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(tuned(listener), router)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .into_future(),
        );
        signal.await;
        tracing::info!(deadline = ?shutdown_deadline, "shutting down: draining requests, then flushing");
        state.start_draining();
        let _ = stop_tx.send(());
        let deadline = tokio::time::Instant::now() + shutdown_deadline;
        // Hand the shards off while in-flight requests finish: those for events of this
        // node are answered `Moving` once its actors stop, and rerouted to the next owner.
        let leaving = state.cluster().cloned().map(|cluster| tokio::spawn(async move { cluster.leave().await }));
        match tokio::time::timeout_at(deadline, server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error during shutdown"),
            Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
            Err(_) => tracing::warn!("in-flight requests did not finish before the deadline"),
        }
        // Live streams were told to close when draining began; their threads stop last.
        if tokio::time::timeout_at(deadline, state.live_streams_ended()).await.is_err() {
            tracing::warn!("live-stream connections still open at the deadline");
        }
        if let Some(leaving) = leaving
            && tokio::time::timeout_at(deadline, leaving).await.is_err()
        {
            tracing::warn!("shards not handed off before the deadline; their leases will lapse");
        }
        if tokio::time::timeout_at(deadline, runtime.shutdown()).await.is_err() {
            anyhow::bail!("the write-behind journal was not flushed before the shutdown deadline");
        }
        drop(streams);
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The listener `axum::serve` takes: every connection it accepts has [`no_delay`].
fn tuned(listener: tokio::net::TcpListener) -> impl Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(no_delay)
}

/// Turns Nagle's algorithm off on an accepted connection. The live stream pushes small
/// frames to clients that rarely write back, so their ACKs come delayed (up to 200 ms on a
/// real network); with Nagle a frame written while the last is unacknowledged would wait
/// for that ACK.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
    }
}

/// A listening socket on `address` (host:port, resolved; the first address that binds)
/// with room for `backlog` connections waiting to be accepted. tokio's own `bind` queues
/// 1,024, which an on-sale's opening overflows: the kernel then drops SYNs, and those buyers
/// wait a second or more for their retry.
async fn listen(address: &str, backlog: u32) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = |addr: std::net::SocketAddr| {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }?;
        // As std and tokio do on Unix: a restarted server can bind at once (TIME_WAIT).
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    };
    // Like `TcpListener::bind`: the first resolved address that works (a host whose IPv6
    // address comes first still binds its IPv4 one on a machine without IPv6).
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await.with_context(|| format!("resolving {address}"))? {
        match bind(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("{address} resolves to no address"), anyhow::Error::from))
        .with_context(|| format!("binding {address}"))
}

/// The full router: `/api/v1`, docs, health, and the cross-cutting layers.
fn router(state: AppState) -> Router {
    let settings = state.settings().server.clone();
    let http_metrics = state.metrics().http.clone();
    let (api, doc) =
        OpenApiRouter::with_openapi(crate::openapi::base()).nest("/api/v1", routes::api()).split_for_parts();
    Router::new()
        .merge(api)
        .merge(crate::openapi::router(doc))
        .merge(routes::health::router())
        .merge(routes::internal::router())
        .route("/metrics", axum::routing::get(crate::metrics::serve))
        .fallback(|| async { ApiError::NotFound { what: "route" } })
        .with_state(state.clone())
        // Innermost: a request for another node's event is forwarded there with its body
        // buffered, inside the timeout, the request id, tracing and the HTTP metrics.
        .layer(axum::middleware::from_fn_with_state(state, crate::forward::reroute))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(settings.request_timeout_ms),
        ))
        .layer(CatchPanicLayer::custom(|_| ApiError::Internal("handler panicked".into()).into_response()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The matched route template, never the raw path (ids would explode cardinality).
            let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str());
            let request_id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost, so the timeout's 503s and caught panics' 500s are counted too. Still
        // per route (Router::layer wraps each route), so the matched template is known.
        .layer(axum::middleware::from_fn_with_state(http_metrics, crate::metrics::http::track))
}

/// Connects to PostgreSQL and applies pending migrations (also `tiketi migrate`).
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<PgStore> {
    let store = PgStore::connect(&settings.store.database_url, settings.store.pool_size)
        .map_err(|e| anyhow::anyhow!("store.database_url: {e}"))?;
    let applied = store.migrate().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    for migration in &applied {
        tracing::info!(%migration, "migration applied");
    }
    Ok(store)
}

/// Creates the configured admin account if it does not exist; a generated password is
/// printed once.
async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let auth = &state.settings().auth;
    if state.store().user_by_email(&auth.admin_email).await?.is_some() {
        return Ok(());
    }
    let (password, generated) = if auth.admin_password.is_empty() {
        (random_token()[..20].to_owned(), true)
    } else {
        (auth.admin_password.clone(), false)
    };
    let email = auth.admin_email.trim().to_lowercase();
    match crate::routes::auth::create_user(state, email.clone(), password.clone(), "Administrator".into(), Role::Admin)
        .await
    {
        Ok(_) => {}
        // Another node of the cluster created it first.
        Err(ApiError::Conflict { .. }) => return Ok(()),
        Err(e) => anyhow::bail!("creating the admin account: {e}"),
    }
    if generated {
        // Printed, not logged: it must not end up in a log pipeline.
        println!("Admin account created: {email} / {password}  (shown once; set auth.admin_password to choose it)");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::{StreamThreads, listen, tuned};
    use axum::serve::Listener;
    use std::time::Duration;

    /// Connects `clients` times to `port` without the server accepting: how many
    /// handshakes the kernel completed (queued for accept) within a moment. A SYN the full
    /// queue dropped is retried only after a second, so it does not count.
    async fn queued(port: u16, clients: usize) -> (usize, Vec<tokio::net::TcpStream>) {
        let attempts = (0..clients).map(|_| {
            tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(("127.0.0.1", port)))
        });
        let streams: Vec<_> =
            futures_util::future::join_all(attempts).await.into_iter().filter_map(|r| r.ok()?.ok()).collect();
        (streams.len(), streams)
    }

    #[tokio::test]
    async fn the_listen_backlog_is_what_the_setting_says() {
        // A queue of 16 holds 17 connections on Linux (it is full past its length); the rest
        // wait for a retry.
        let small = listen("127.0.0.1:0", 16).await.unwrap();
        let (n, _held) = queued(small.local_addr().unwrap().port(), 40).await;
        assert!((16..=18).contains(&n), "{n} of 40 connections queued with a backlog of 16");
        let large = listen("127.0.0.1:0", 64).await.unwrap();
        let (n, _held) = queued(large.local_addr().unwrap().port(), 40).await;
        assert_eq!(n, 40, "every connection fits a backlog of 64");
    }

    #[tokio::test]
    async fn an_address_that_cannot_be_bound_is_named() {
        let taken = listen("127.0.0.1:0", 16).await.unwrap();
        let address = format!("127.0.0.1:{}", taken.local_addr().unwrap().port());
        let err = listen(&address, 16).await.unwrap_err();
        assert!(format!("{err:#}").contains(&address), "{err:#}");
    }

    /// Whether a connection `listener` accepts has TCP_NODELAY set.
    async fn accepted_nodelay<L: Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr>>(
        mut listener: L,
    ) -> bool {
        let address = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (stream, _) = listener.accept().await;
        stream.nodelay().unwrap()
    }

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        assert!(!accepted_nodelay(listen("127.0.0.1:0", 16).await.unwrap()).await, "Nagle is on by default");
        assert!(accepted_nodelay(tuned(listen("127.0.0.1:0", 16).await.unwrap())).await);
    }

    #[tokio::test]
    async fn the_stream_threads_run_their_tasks_and_stop_from_async_code() {
        assert!(StreamThreads::start(0).unwrap().handle().is_none(), "0 shares the request runtime");
        let threads = StreamThreads::start(1).unwrap();
        let handle = threads.handle().unwrap();
        let name = handle.spawn(async { std::thread::current().name().map(str::to_owned) }).await.unwrap();
        assert_eq!(name.as_deref(), Some("tiketi-stream"));
        assert!(handle.spawn(async { crate::state::on_stream_thread() }).await.unwrap(), "its threads know it");
        assert!(!crate::state::on_stream_thread(), "the request runtime's do not");
        // Dropping a runtime here would panic if it waited for its threads.
        drop(threads);
        assert!(handle.spawn(async {}).await.is_err(), "nothing runs on stopped threads");
    }
}
