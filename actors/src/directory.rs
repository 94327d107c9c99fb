//! The directory: event id -> the handle of its live actor, activating the actor on first
//! use. This is the one seam that knows where an event's actor lives.

use crate::event_actor::{EventActor, EventArgs};
use crate::stream::{FrameSink, StreamConfig};
use crate::supervisor::EventSupervisor;
use crate::{ActorError, Clock, EventHandle};
use prometheus_client::metrics::counter::Counter;
use ractor::{Actor, ActorCell, ActorId, ActorRef};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tiketi_engine::{EventId, Timestamp};
use tiketi_persistence::journal::{Journal, JournalConfig};
use tiketi_persistence::{Fence, Store, StoreError};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

/// Tuning of the event actors.
#[derive(Debug, Clone)]
pub struct ActorConfig {
    /// How long a caller waits for an ordinary answer.
    pub call_timeout: Duration,
    /// How long a caller waits for a durable answer (the store must commit first).
    pub durable_timeout: Duration,
    /// Requests one event's actor may have in its mailbox before new ones get `Busy`; also
    /// how many durable replies may wait for their commit before new ones get `Overloaded`.
    pub max_in_flight: usize,
    /// `Retry-After` for `Busy`.
    pub busy_retry_after: Duration,
    /// `Retry-After` when the write-behind backlog is full.
    pub overload_retry_after: Duration,
    /// How long idempotency keys are remembered.
    pub idempotency_retention: Duration,
    /// The live seat stream.
    pub stream: StreamConfig,
    /// An actor nobody used for this long is passivated, unless something pins it (see
    /// [`ActorInfo::pinned`](crate::ActorInfo::pinned)).
    pub idle_timeout: Duration,
    /// Most live actors; past it the longest-idle unpinned ones are passivated.
    pub max_live: usize,
    /// The payment provider.
    pub provider: crate::Provider,
    /// A payment still in flight this long after it began is reconciled with the provider
    /// (its capture was lost, or its caller went away).
    pub reconcile_after: Duration,
    /// How long after a confirmation was sent the provider may still capture it. Until then
    /// a reconciliation that finds no capture keeps the payment in flight (its seats
    /// pinned) and asks again; after it, the attempt is declined as never captured.
    pub capture_window: Duration,
    /// How long after an attempt was declined for want of a capture
    /// ([`NOT_CAPTURED`](tiketi_engine::NOT_CAPTURED)) its event's actor keeps asking the
    /// provider whether the capture landed after all (a capture found is refunded).
    pub late_capture_watch: Duration,
    /// Where every event's live-stream frames also go: the other nodes of a cluster
    /// (`None`: only this node's subscribers).
    pub frame_sink: Option<Arc<dyn FrameSink>>,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(2),
            durable_timeout: Duration::from_secs(10),
            max_in_flight: 2_048,
            busy_retry_after: Duration::from_secs(1),
            overload_retry_after: Duration::from_secs(2),
            idempotency_retention: Duration::from_secs(24 * 3600),
            stream: StreamConfig::default(),
            idle_timeout: Duration::from_secs(300),
            max_live: 10_000,
            provider: crate::Provider::default(),
            reconcile_after: Duration::from_secs(60),
            capture_window: Duration::from_secs(120),
            late_capture_watch: Duration::from_secs(900),
            frame_sink: None,
        }
    }
}

/// Where events live when several nodes serve them (the cluster): the directory asks before
/// it serves an event, and its actor writes every change under the fence it was given.
pub trait Placement: Send + Sync + 'static {
    /// The fence under which this node may serve the event now; `None` when another node
    /// owns the event's shard, or the shard is moving.
    fn fence(&self, event: EventId) -> Option<Fence>;
    /// Whether this node still holds the shard at the fence's epoch with a running lease
    /// (also while handing it off). An actor checks it before every command it decides, so
    /// a request that got its handle just before the lease ran out is not decided after.
    fn holds(&self, fence: Fence) -> bool;
}

type Slot = Arc<OnceCell<EventHandle>>;

/// The live actors of this node. Shared by the directory, the supervisor and the
/// journal's commit callback.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<EventId, Slot>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, Slot>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, event: EventId) -> Option<EventHandle> {
        self.lock().get(&event).and_then(|slot| slot.get().cloned())
    }

    fn all(&self) -> Vec<EventHandle> {
        self.lock().values().filter_map(|slot| slot.get().cloned()).collect()
    }

    fn slot(&self, event: EventId) -> Slot {
        self.lock().entry(event).or_default().clone()
    }

    /// Removes `slot` if it is still the entry for `event` (a newer one is left alone).
    fn remove(&self, event: EventId, slot: &Slot) {
        let mut entries = self.lock();
        if entries.get(&event).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            entries.remove(&event);
        }
    }

    /// Forgets the actor with this id; returns its event.
    pub(crate) fn forget(&self, actor: ActorId) -> Option<EventId> {
        let mut entries = self.lock();
        let event = entries
            .iter()
            .find(|(_, slot)| slot.get().is_some_and(|h| h.actor_id() == actor))
            .map(|(event, _)| *event)?;
        entries.remove(&event);
        Some(event)
    }
}

/// Finds or activates the actor of an event. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<Registry>,
    activations: Counter,
    passivations: Counter,
    store: Arc<dyn Store>,
    journal: Journal,
    clock: Clock,
    config: Arc<ActorConfig>,
    supervisor: ActorCell,
    placement: Option<Arc<dyn Placement>>,
}

impl Directory {
    /// The handle of the event's actor, activating it from the store if it is not live.
    /// However many callers race for an event that is not live, exactly one actor starts.
    pub async fn get(&self, event: EventId) -> Result<EventHandle, ActorError> {
        let fence = match &self.inner.placement {
            Some(placement) => Some(placement.fence(event).ok_or(ActorError::NotOwner { event })?),
            None => None,
        };
        // Twice at most: the second round replaces an actor found dead (or one left from an
        // earlier tenure of the shard: it writes under a stale epoch).
        for _ in 0..2 {
            let slot = self.inner.registry.slot(event);
            match slot.get_or_try_init(|| self.activate(event, fence)).await {
                Ok(handle) if handle.is_alive() && handle.fence() == fence => {
                    // The shard may have started moving while the actor loaded: one that
                    // came up after the hand-off stopped its siblings must not serve.
                    if let Some(placement) = &self.inner.placement
                        && placement.fence(event) != fence
                    {
                        handle.stop_and_wait("its shard is moving").await;
                        self.inner.registry.remove(event, &slot);
                        return Err(ActorError::NotOwner { event });
                    }
                    return Ok(handle.clone());
                }
                Ok(handle) if handle.is_alive() => {
                    handle.stop_and_wait("its shard was taken again").await;
                    self.inner.registry.remove(event, &slot);
                }
                Ok(_) => self.inner.registry.remove(event, &slot),
                Err(e) => {
                    // Do not keep slots for events that failed to load (or never
                    // existed): a flood of random ids must not grow the map.
                    if slot.get().is_none() {
                        self.inner.registry.remove(event, &slot);
                    }
                    return Err(e);
                }
            }
        }
        Err(ActorError::Unavailable("event actor keeps stopping".into()))
    }

    async fn activate(&self, event: EventId, fence: Option<Fence>) -> Result<EventHandle, ActorError> {
        // A previous actor of this event (evicted, killed, failed) may have handed the
        // journal changes the store does not have yet. Loading before they commit would
        // rebuild stale state: its acknowledged holds would vanish, its seqs would be
        // reused, and its late commit would put a second live reservation on seats the
        // new actor sold again. So wait until everything queued so far is in the store.
        self.inner.journal.flushed().await;
        let snapshot = match self.inner.store.load_event(event).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(ActorError::EventNotFound),
            Err(StoreError::NotFound) => return Err(ActorError::EventNotFound),
            Err(e) => return Err(ActorError::Unavailable(e.to_string())),
        };
        let args = EventArgs {
            fence,
            placement: self.inner.placement.clone(),
            snapshot,
            journal: self.inner.journal.clone(),
            clock: self.inner.clock,
            config: self.inner.config.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, EventActor, args, self.inner.supervisor.clone())
            .await
            .map_err(|e| ActorError::Unavailable(e.to_string()))?;
        self.inner.activations.inc();
        Ok(EventHandle::new(event, actor, self.inner.config.clone(), fence))
    }

    /// Activates every event with a payment still in flight in the store, a capture owed
    /// back, or an order declined for want of a capture within `late_capture_watch`; each
    /// actor reconciles them with the provider as it starts. Retries while the store is
    /// unreachable.
    async fn activate_unsettled(self) {
        self.activate_unsettled_where(|_| true).await;
    }

    /// [`Directory::activate_unsettled`] for the events `mine` accepts (a cluster node: the
    /// shards it just took).
    pub async fn activate_unsettled_where(&self, mine: impl Fn(EventId) -> bool) {
        let events = loop {
            // Declined for want of a capture within the watch: a late one may still land.
            let declined_since = self.inner.clock.now().0 - self.inner.config.late_capture_watch.as_millis() as i64;
            match self.inner.store.unsettled_payment_events(Timestamp(declined_since)).await {
                Ok(events) => break events,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list payments to reconcile yet; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        for event in events.into_iter().filter(|&e| mine(e)) {
            match self.get(event).await {
                Ok(_) => tracing::info!(event_id = %event, "activated to reconcile its payments"),
                // Its shard is another node's: that node reconciles it.
                Err(ActorError::NotOwner { .. }) => {}
                Err(e) => tracing::error!(event_id = %event, error = %e, "cannot activate to reconcile payments"),
            }
        }
    }

    /// The event's actor if it is live; never activates.
    pub fn live(&self, event: EventId) -> Option<EventHandle> {
        self.inner.registry.live(event)
    }

    /// Stops the event's actor, if live, and forgets it; the next request activates a fresh
    /// one from the store.
    pub async fn evict(&self, event: EventId) {
        if let Some(handle) = self.live(event) {
            handle.stop_and_wait("evicted").await;
            self.inner.registry.forget(handle.actor_id());
        }
    }

    /// Stops the live actors of the events `which` accepts and forgets them (a cluster node
    /// giving up shards). Requests still in their mailboxes are answered `Stopped`, to be
    /// retried at the new owner. Callers wait for [`Journal::flushed`] before letting
    /// another node load these events.
    pub async fn stop_where(&self, which: impl Fn(EventId) -> bool, reason: &str) -> usize {
        let handles: Vec<EventHandle> = self.live_events().into_iter().filter(|h| which(h.event())).collect();
        for handle in &handles {
            handle.stop_and_wait(reason).await;
            self.inner.registry.forget(handle.actor_id());
        }
        handles.len()
    }

    /// Passivates the event's actor: it stops, and the next request re-activates it from
    /// the store with the same state. Refused with the reason when something pins it in
    /// memory (on sale, live holds, a queue, subscribers, unflushed changes); an operator's
    /// `force` overrides all but a sale in progress and changes in flight. `Ok(false)` when
    /// it was not live.
    pub async fn passivate(&self, event: EventId, force: bool) -> Result<bool, ActorError> {
        let Some(handle) = self.live(event) else { return Ok(false) };
        match handle.passivate(force).await? {
            Ok(()) => {
                handle.wait_stopped().await;
                self.inner.registry.forget(handle.actor_id());
                self.inner.passivations.inc();
                Ok(true)
            }
            Err(reason) => Err(ActorError::Pinned(reason)),
        }
    }

    /// Registers the directory's counters (activations, passivations).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("activations", "Event actors activated from the store", self.inner.activations.clone());
        registry.register("passivations", "Idle event actors passivated", self.inner.passivations.clone());
    }

    /// One sweep: passivates unpinned actors idle past the timeout, then, past the live
    /// cap, the longest-idle unpinned ones.
    pub async fn sweep(&self) {
        let mut idle = Vec::new();
        for handle in self.live_events() {
            match handle.inspect().await {
                Ok(info) if info.pinned.is_none() => idle.push((info.idle, info.event)),
                _ => {}
            }
        }
        idle.sort_by_key(|&(for_how_long, _)| std::cmp::Reverse(for_how_long));
        let mut live = self.inner.registry.all().len();
        for (for_how_long, event) in idle {
            if for_how_long < self.inner.config.idle_timeout && live <= self.inner.config.max_live {
                break;
            }
            if matches!(self.passivate(event, false).await, Ok(true)) {
                live -= 1;
            }
        }
    }

    /// Whether the actor system runs: the supervisor is up and the journal's flusher takes
    /// change sets.
    pub fn is_running(&self) -> bool {
        matches!(self.inner.supervisor.get_status(), ractor::ActorStatus::Running) && self.inner.journal.is_running()
    }

    /// Every live actor on this node.
    pub fn live_events(&self) -> Vec<EventHandle> {
        self.inner.registry.all()
    }

    /// The store behind the actors.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock the actors read.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// The write-behind journal.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }
}

/// The actor system of one node: the directory, the supervisor and the journal.
pub struct Runtime {
    directory: Directory,
    supervisor: ActorRef<()>,
    flusher: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl Runtime {
    /// Starts the journal and the supervisor.
    pub async fn start(
        store: Arc<dyn Store>,
        journal: JournalConfig,
        config: ActorConfig,
        clock: Clock,
        placement: Option<Arc<dyn Placement>>,
    ) -> Result<Self, ActorError> {
        let registry = Arc::new(Registry::default());
        let on_commit = {
            let registry = registry.clone();
            Arc::new(move |committed: &[(EventId, u64)]| {
                for &(event, seq) in committed {
                    if let Some(handle) = registry.live(event) {
                        handle.committed(seq);
                    }
                }
            })
        };
        let (journal, flusher) = Journal::spawn(store.clone(), journal, on_commit);
        let (supervisor, _) = Actor::spawn(None, EventSupervisor, registry.clone())
            .await
            .map_err(|e| ActorError::Unavailable(e.to_string()))?;
        let sweep_every = (config.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let directory = Directory {
            inner: Arc::new(Inner {
                registry,
                activations: Counter::default(),
                passivations: Counter::default(),
                store,
                journal,
                clock,
                config: Arc::new(config),
                supervisor: supervisor.get_cell(),
                placement,
            }),
        };
        // Payments a crash left in the provider's hands are settled now, not whenever
        // someone next asks for their event: activating the event reconciles them.
        tokio::spawn(directory.clone().activate_unsettled());
        let sweeper = {
            let directory = directory.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval_at(tokio::time::Instant::now() + sweep_every, sweep_every);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    directory.sweep().await;
                }
            })
        };
        Ok(Self { directory, supervisor, flusher, sweeper })
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Stops every event actor, then waits until the journal has committed everything they
    /// produced. Callers stop sending requests first (the facade stops accepting).
    pub async fn shutdown(self) {
        self.sweeper.abort();
        for handle in self.directory.live_events() {
            handle.stop_and_wait("node shutting down").await;
        }
        self.directory.journal().flushed().await;
        self.supervisor.stop(None);
        if self.flusher.is_finished() {
            tracing::warn!("journal flusher ended before shutdown");
        }
    }
}
