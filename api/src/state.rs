//! The state every handler shares.

use crate::auth::AuthKeys;
use crate::batch::{Found, Loader};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::stream::Sweepers;
use crate::settings::Settings;
use crate::user_check::UserCheck;
use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiketi_actors::{Directory, EventHandle};
use tiketi_cluster::Cluster;
use tiketi_engine::{EventId, SeatIndex, SeatMap, Timestamp, UserId};
use tiketi_persistence::Store;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};

thread_local! {
    /// Whether this thread is one of the stream's own runtime ([`mark_stream_thread`]). A
    /// thread-local rather than a task-local: a task-local is swapped in and out on every
    /// poll of every connection.
    static ON_STREAM_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one of the live stream's runtime: that runtime's
/// `on_thread_start`.
pub(crate) fn mark_stream_thread() {
    ON_STREAM_THREAD.set(true);
}

/// Whether the caller runs on the live stream's own runtime.
pub(crate) fn on_stream_thread() -> bool {
    ON_STREAM_THREAD.get()
}

/// Runs `work` as a task on `runtime` and waits for it; dropping the wait aborts the task.
async fn run_on<T: Send + 'static>(
    runtime: &Handle,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(runtime.spawn(work));
    (&mut task.0).await
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Directory,
    /// This node's membership of the cluster, when it is one of several.
    cluster: Option<Cluster>,
    /// Pooled connections to the other nodes, for forwarded requests.
    http: reqwest::Client,
    /// What this node shows the others' internal routes, and checks on requests from them.
    cluster_key: String,
    auth: AuthKeys,
    settings: Settings,
    draining: watch::Sender<bool>,
    labels: Mutex<HashMap<EventId, Arc<SeatMap>>>,
    metrics: Metrics,
    ws_slots: Arc<Semaphore>,
    /// The runtime requests and the event actors run on.
    requests: Handle,
    /// The live stream's own runtime (`stream.workers`), if it has one.
    streams: Option<Handle>,
    /// Whether a valid token's user exists in the store, looked up once per user.
    users: UserCheck,
    /// The fingerprints stored for Idempotency-Keys, looked up in batches.
    idempotency: Loader<(UserId, String), String>,
    /// The live stream's sweepers, one per stream of a local event with subscribers.
    sweepers: Sweepers,
}

impl AppState {
    /// Whether the store has this user (see [`UserCheck`]): false only when the store
    /// says it does not.
    pub async fn user_known(&self, id: UserId) -> bool {
        self.inner.users.exists(id).await
    }

    /// The request fingerprint the store has for `user`'s `key`, waiting at most `wait`
    /// (one query for every key asked about meanwhile).
    pub async fn stored_fingerprint(&self, user: UserId, key: String, wait: Duration) -> Found<String> {
        self.inner.idempotency.load((user, key), wait, || false).await
    }

    /// Assembles the state, on the runtime that serves requests; `streams` runs the live
    /// stream's connections if it is given.
    pub fn new(
        directory: Directory,
        cluster: Option<Cluster>,
        auth: AuthKeys,
        settings: Settings,
        streams: Option<Handle>,
    ) -> Self {
        let metrics = Metrics::new(&directory, cluster.as_ref());
        // The embedded store answers from memory: its lookups gain nothing from batching.
        let batched = settings.store.kind != crate::settings::StoreKind::Memory;
        Self {
            inner: Arc::new(Inner {
                users: UserCheck::new(directory.store().clone(), batched, metrics.http.clone()),
                idempotency: {
                    let store = directory.store().clone();
                    Loader::new(
                        "Idempotency-Keys",
                        batched,
                        // Nobody keeps the answer once its request went on without it.
                        false,
                        Box::new(move |keys: Vec<(UserId, String)>| {
                            let store = store.clone();
                            Box::pin(
                                async move { Ok(store.idempotency_fingerprints(&keys).await?.into_iter().collect()) },
                            )
                        }),
                    )
                },
                metrics,
                cluster_key: crate::routes::internal::cluster_key(&settings),
                directory,
                cluster,
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(256)
                    .tcp_nodelay(true)
                    .build()
                    .expect("an HTTP client without TLS always builds"),
                auth,
                ws_slots: Arc::new(Semaphore::new(settings.stream.max_connections)),
                requests: Handle::current(),
                streams,
                sweepers: Sweepers::default(),
                settings,
                draining: watch::Sender::new(false),
                labels: Mutex::default(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.directory.store()
    }

    /// Token and password handling.
    pub fn auth(&self) -> &AuthKeys {
        &self.inner.auth
    }

    /// The configuration.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Now, on the actors' clock.
    pub fn now(&self) -> Timestamp {
        self.inner.directory.clock().now()
    }

    /// The directory of event actors.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// This node's membership of the cluster, if it is one of several.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// The key nodes of this cluster show each other (see [`crate::routes::internal`]).
    pub fn cluster_key(&self) -> &str {
        &self.inner.cluster_key
    }

    /// Whether a request comes from another node of the cluster (it shows the cluster key).
    pub fn from_peer(&self, headers: &axum::http::HeaderMap) -> bool {
        let shown = headers.get(&crate::routes::internal::CLUSTER_KEY).map_or(&[][..], |v| v.as_bytes());
        self.inner.cluster.is_some() && crate::routes::internal::constant_time_eq(shown, self.cluster_key().as_bytes())
    }

    /// The client forwarded requests go out on.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The event's actor, activated if needed.
    pub async fn event(&self, event: EventId) -> Result<EventHandle, ApiError> {
        Ok(self.inner.directory.get(event).await?)
    }

    /// Whether the node is shutting down (not ready).
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Marks the node as shutting down; long-lived connections watching
    /// [`AppState::draining`] close.
    pub fn start_draining(&self) {
        self.inner.draining.send_replace(true);
    }

    /// Changes to `true` when the node starts shutting down.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.inner.draining.subscribe()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A WebSocket connection slot, or `None` at the configured limit.
    pub fn ws_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.ws_slots.clone().try_acquire_owned().ok()
    }

    /// Waits until every WebSocket connection has ended (their slots are back), and takes
    /// the slots so that no new one starts.
    pub async fn live_streams_ended(&self) {
        let all = u32::try_from(self.settings().stream.max_connections).unwrap_or(u32::MAX);
        if let Ok(slots) = self.inner.ws_slots.acquire_many(all).await {
            slots.forget();
        }
    }

    /// The live stream's sweepers.
    pub(crate) fn sweepers(&self) -> &Sweepers {
        &self.inner.sweepers
    }

    /// Runs a live-stream connection or sweeper: on the stream's own runtime if there is
    /// one, so that writing a frame to thousands of subscribers does not queue in front of
    /// buyers' requests and the event actors.
    pub fn spawn_stream(&self, connection: impl Future<Output = ()> + Send + 'static) {
        match &self.inner.streams {
            Some(streams) => drop(streams.spawn(connection)),
            None => drop(tokio::spawn(connection)),
        }
    }

    /// Runs `work` on the request runtime and waits for it: at once when the caller is
    /// there already, else as a task there that is cancelled if the caller is (as `work`
    /// itself would have been). A stream connection's calls go through here when they may
    /// start an event's actor or open a pooled connection to another node: those belong to
    /// the request runtime, which outlives the stream's.
    pub async fn on_request_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
    ) -> Result<T, ApiError> {
        if !on_stream_thread() {
            return work.await;
        }
        match run_on(&self.inner.requests, work).await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(ApiError::Unavailable("the node is shutting down".into(), Duration::from_secs(1))),
        }
    }

    /// Seat ids for seat indexes of an event. Layouts never change after an event is
    /// created, so each event's compiled map is cached for the life of the process.
    pub async fn seat_ids(&self, event: EventId, seats: &[SeatIndex]) -> Result<Vec<String>, ApiError> {
        if seats.is_empty() {
            return Ok(Vec::new());
        }
        let cached = self.inner.labels.lock().unwrap_or_else(|e| e.into_inner()).get(&event).cloned();
        let map = match cached {
            Some(map) => map,
            None => {
                // From the event's live actor if there is one: this runs after a hold was
                // decided, and must not turn it into a 503 because the store is down.
                let live = match self.inner.directory.live(event) {
                    Some(handle) => handle.view().await.ok().map(|view| view.record.layout),
                    None => None,
                };
                let layout = match live {
                    Some(layout) => layout,
                    None => self.store().event(event).await?.ok_or(ApiError::NotFound { what: "event" })?.layout,
                };
                let layout = layout.ok_or_else(|| ApiError::Internal("seated reservation without layout".into()))?;
                let map = Arc::new(SeatMap::new(&layout).map_err(|e| ApiError::Internal(e.to_string()))?);
                self.inner.labels.lock().unwrap_or_else(|e| e.into_inner()).insert(event, map.clone());
                map
            }
        };
        Ok(seats.iter().map(|&s| map.seat_id(s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::run_on;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Sets its flag when dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn work_run_on_another_runtime_answers_and_is_cancelled_with_its_caller() {
        let other = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let ran_on = run_on(other.handle(), async { std::thread::current().id() }).await.unwrap();
        assert_ne!(ran_on, std::thread::current().id(), "it ran there");

        let (finished, dropped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (done, guard) = (finished.clone(), Dropped(dropped.clone()));
        let work = run_on(other.handle(), async move {
            let _guard = guard;
            tokio::time::sleep(Duration::from_secs(60)).await;
            done.store(true, Ordering::SeqCst);
        });
        assert!(tokio::time::timeout(Duration::from_millis(20), work).await.is_err(), "still running");
        // The caller gave up: the task is aborted, so its future is dropped unfinished.
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!finished.load(Ordering::SeqCst));
        other.shutdown_background();
    }
}
