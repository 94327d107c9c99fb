//! Tiketi's cluster (SPEC §6, DESIGN "Cluster"): several nodes serve one cluster, each
//! event owned by exactly one node at a time.
//!
//! - **Membership** lives in PostgreSQL (`cluster_members`): every node heartbeats; one
//!   whose heartbeat is older than the lease is dead. A node that cannot heartbeat stops
//!   serving when its leases run out (it may be the one cut off).
//! - **Placement**: event -> one of [`SHARDS`] virtual shards -> owner by rendezvous hashing
//!   over the live members ([`placement`]).
//! - **Authority and fencing**: `shard_owner` holds each shard's owner, epoch and lease on
//!   the database clock. Taking a shard increments its epoch; every journal batch checks
//!   the epochs it writes under (`tiketi-persistence`), so a node that lost a shard cannot
//!   write to it. A node serves an event only while it holds the shard's lease by its own
//!   (conservative) reckoning: [`Cluster`] is the actors' [`Placement`].
//! - **Hand-off**: a shard that should move (a member joined, or this one is leaving) is
//!   released only after its actors stopped and the journal flushed; the next owner takes
//!   it at epoch + 1 and loads it from PostgreSQL.
//!
//! Redis carries hints that ownership changed (so nodes act at once instead of at their
//! next heartbeat) and, in [`fanout`], the live seat stream between nodes. It is never a
//! lock: a node without Redis still places, fences and forwards correctly.

pub mod fanout;
mod hints;
mod metrics;
mod node;
pub mod placement;

pub use fanout::Fanout;
pub use metrics::{ClusterMetrics, ForwardLabels};
pub use node::{ClusterConfig, ClusterStatus, MemberStatus, ShardStatus};
pub use placement::{SHARDS, new_reservation_id, owner_of, shard_of, shard_of_reservation};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tiketi_actors::{Directory, FrameSink, Placement};
use tiketi_engine::EventId;
use tiketi_persistence::{Fence, Member, PgStore, ShardRow};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a request for an event should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here, under this fence.
    Local(Fence),
    /// At another node.
    Remote {
        /// Its id.
        node: String,
        /// Its base URL.
        address: String,
    },
    /// Nobody can serve it this moment (its shard is moving, or this node is about to take
    /// it): retry shortly.
    Moving,
}

/// This node's membership of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    store: Arc<PgStore>,
    view: RwLock<View>,
    /// Wakes the heartbeat loop at once (a hint from Redis, a fenced write, leaving).
    wake: Notify,
    leaving: AtomicBool,
    /// Held through every heartbeat round and through leaving, so the two never interleave
    /// (a round taking shards while the node hands everything off).
    rounds: tokio::sync::Mutex<()>,
    directory: OnceLock<Directory>,
    metrics: ClusterMetrics,
    hints: hints::Hints,
    /// The live stream between nodes, once started.
    fanout: OnceLock<Fanout>,
}

/// What this node knows of the cluster, refreshed by every heartbeat.
#[derive(Default)]
struct View {
    /// Every member row, as of the last heartbeat.
    members: Vec<Member>,
    /// Node ids that take shards: alive and not leaving.
    placing: Vec<String>,
    /// The ownership table, as of the last heartbeat.
    table: Vec<ShardRow>,
    /// Shards this node holds, with the epoch and until when (by this node's clock) it may
    /// serve them.
    owned: HashMap<u16, Held>,
    /// Owned shards being handed off: no longer served, not yet released.
    releasing: HashSet<u16>,
    /// When the last heartbeat that succeeded was sent.
    last_heartbeat: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    valid_until: Instant,
}

impl Cluster {
    /// This node's cluster membership, not yet started: hand it to the actor runtime as its
    /// [`Placement`], then [`Cluster::start`] it with the runtime's directory.
    pub fn new(config: ClusterConfig, store: Arc<PgStore>) -> Self {
        let hints = hints::Hints::new(&config.redis_url, &config.node_id);
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                view: RwLock::default(),
                wake: Notify::new(),
                leaving: AtomicBool::new(false),
                rounds: tokio::sync::Mutex::new(()),
                directory: OnceLock::new(),
                metrics: ClusterMetrics::default(),
                hints,
                fanout: OnceLock::new(),
            }),
        }
    }

    /// Joins the cluster (retrying until PostgreSQL answers) and starts heartbeating.
    pub async fn start(&self, directory: Directory) {
        let _ = self.inner.directory.set(directory);
        node::join(self).await;
        tokio::spawn(node::run(self.clone()));
        self.inner.hints.listen(self.clone());
    }

    /// Starts the live stream between nodes over `cluster.redis_url`, if one is set: returns
    /// the sink to hand the event actors ([`tiketi_actors::ActorConfig::frame_sink`]).
    /// `channel_capacity` bounds how far a follower may fall behind (`stream.channel_capacity`).
    /// Must be called within a tokio runtime; a second call returns the same sink.
    pub fn start_fanout(&self, channel_capacity: usize) -> Option<Arc<dyn FrameSink>> {
        if let Some(fanout) = self.inner.fanout.get() {
            return Some(fanout.sink());
        }
        let url = self.inner.config.redis_url.as_str();
        if url.is_empty() {
            return None;
        }
        match Fanout::new(url, channel_capacity, &self.inner.metrics) {
            Ok(fanout) => Some(self.inner.fanout.get_or_init(|| fanout).sink()),
            Err(e) => {
                tracing::error!(error = %e, "cluster.redis_url is not a Redis URL; no live stream between nodes");
                None
            }
        }
    }

    /// The live stream between nodes, if started ([`Cluster::start_fanout`]).
    pub fn fanout(&self) -> Option<&Fanout> {
        self.inner.fanout.get()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// Where a request for `event` should be served now.
    pub fn route(&self, event: EventId) -> Route {
        self.route_shard(shard_of(event))
    }

    /// Where a request for an event of `shard` should be served now.
    pub fn route_shard(&self, shard: u16) -> Route {
        if let Some(fence) = self.shard_fence(shard) {
            return Route::Local(fence);
        }
        let view = self.view();
        let me = self.node_id();
        let alive = |node: &str| view.members.iter().find(|m| m.node_id == node && m.alive);
        // The owner of record, while its lease runs, then whoever placement says takes it.
        let owner = view
            .table
            .get(usize::from(shard))
            .filter(|row| row.lease_left_ms > 0)
            .and_then(|row| row.owner.as_deref())
            .or_else(|| owner_of(shard, view.placing.iter().map(String::as_str)));
        match owner.filter(|&node| node != me).and_then(alive) {
            Some(member) => Route::Remote { node: member.node_id.clone(), address: member.address.clone() },
            None => Route::Moving,
        }
    }

    /// Whether this node may serve: it has joined, its last heartbeat is within the lease,
    /// and it is not leaving (readiness).
    pub fn is_ready(&self) -> bool {
        self.ready_in(&self.view())
    }

    fn ready_in(&self, view: &View) -> bool {
        view.last_heartbeat.is_some_and(|at| at.elapsed() < self.inner.config.lease) && !self.is_leaving()
    }

    /// Whether this node is shutting down.
    pub fn is_leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::Acquire)
    }

    /// Leaves the cluster gracefully (SIGTERM): stops taking shards, hands off every shard
    /// it owns (stop its actors, flush, release the lease), and removes itself from the
    /// members. Requests for those events are answered `NotOwner` meanwhile and rerouted.
    pub async fn leave(&self) {
        node::leave(self).await;
    }

    /// The cluster as this node sees it (`GET /admin/cluster`).
    pub fn status(&self) -> ClusterStatus {
        node::status(self)
    }

    /// The cluster's metrics.
    pub fn metrics(&self) -> &ClusterMetrics {
        &self.inner.metrics
    }

    fn view(&self) -> RwLockReadGuard<'_, View> {
        self.inner.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.inner.view.write().unwrap_or_else(|e| e.into_inner())
    }

    fn directory(&self) -> Option<&Directory> {
        self.inner.directory.get()
    }
}

impl Cluster {
    /// The fence under which this node may serve `shard` now, if it may.
    pub fn shard_fence(&self, shard: u16) -> Option<Fence> {
        let view = self.view();
        if view.releasing.contains(&shard) {
            return None;
        }
        let held = view.owned.get(&shard)?;
        (held.valid_until > Instant::now()).then_some(Fence { shard, epoch: held.epoch })
    }
}

impl Placement for Cluster {
    fn fence(&self, event: EventId) -> Option<Fence> {
        self.shard_fence(shard_of(event))
    }

    fn holds(&self, fence: Fence) -> bool {
        let view = self.view();
        view.owned.get(&fence.shard).is_some_and(|h| h.epoch == fence.epoch && h.valid_until > Instant::now())
    }
}
