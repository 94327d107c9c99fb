//! `tiketi_cluster_*`: shard moves, lease renewals and losses, heartbeats, requests
//! forwarded between nodes, and the live stream between nodes over Redis. Fenced writes are
//! the journal's (`tiketi_journal_fenced_writes`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Shards this node took and gave up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Moves {
    pub acquired: Counter,
    pub released: Counter,
}

/// The live stream between nodes ([`crate::fanout`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct FanoutMetrics {
    /// Envelopes (frames and stream starts) this node published.
    pub published: Counter,
    /// Envelopes this node dropped instead of publishing: its queue was full, or Redis failed.
    pub dropped: Counter,
    /// Envelopes received for events this node's clients follow.
    pub received: Counter,
    /// Times this node's followers of an event were cut off to resync: a frame missing, the
    /// event's stream changing, or the Redis connection dropping.
    pub resyncs: Counter,
}

/// How a forwarded request ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// `ok` (the owner answered), `rerouted` (the owner had moved on: asked again),
    /// `unreachable` (no answer from the owner).
    pub outcome: &'static str,
}

/// The cluster's counters. Cheap to clone; clones share values.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    pub(crate) moves: Moves,
    pub(crate) lease_renewals: Counter,
    pub(crate) lease_losses: Counter,
    pub(crate) heartbeat_failures: Counter,
    pub(crate) owned: Gauge,
    pub(crate) members: Gauge,
    /// Requests this node sent to another node, by outcome.
    pub forwarded: Family<ForwardLabels, Counter>,
    pub(crate) fanout: FanoutMetrics,
}

impl ClusterMetrics {
    /// Registers every metric into `registry`, which the caller has prefixed.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "shards_acquired",
            "Shards this node took (each at a new epoch)",
            self.moves.acquired.clone(),
        );
        registry.register(
            "shards_released",
            "Shards this node handed off gracefully (actors stopped, journal flushed, lease released)",
            self.moves.released.clone(),
        );
        registry.register("lease_renewals", "Shard leases renewed", self.lease_renewals.clone());
        registry.register(
            "lease_losses",
            "Shard leases lost: another node took the shard, or the lease ran out without a heartbeat",
            self.lease_losses.clone(),
        );
        registry.register(
            "heartbeat_failures",
            "Heartbeats PostgreSQL did not answer",
            self.heartbeat_failures.clone(),
        );
        registry.register("shards_owned", "Shards this node owns", self.owned.clone());
        registry.register("members", "Live members that take shards, as this node sees them", self.members.clone());
        registry.register(
            "forwarded_requests",
            "Requests forwarded to the owning node, by outcome",
            self.forwarded.clone(),
        );
        registry.register(
            "stream_frames_published",
            "Live-stream envelopes (frames and stream starts) published to Redis for other nodes",
            self.fanout.published.clone(),
        );
        registry.register(
            "stream_publish_drops",
            "Live-stream envelopes dropped instead of published (queue full or Redis failing); followers resync",
            self.fanout.dropped.clone(),
        );
        registry.register(
            "stream_frames_received",
            "Live-stream envelopes received from Redis for events this node's clients follow",
            self.fanout.received.clone(),
        );
        registry.register(
            "stream_resyncs",
            "Times followers of another node's event were made to resync (a gap, a new stream, Redis lost)",
            self.fanout.resyncs.clone(),
        );
    }
}
