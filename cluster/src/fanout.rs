//! The live seat stream between nodes (SPEC §4, §6): a WebSocket connected to any node
//! receives the changes of any event. Redis pub/sub carries each event's frames, one channel
//! per event (`tiketi:ev:{event_id}`); the seq stays the owner's.
//!
//! - **Owner side** (`publisher`): the event actors hand every frame to this node's
//!   [`FrameSink`], which queues it without waiting (bounded; overflow is dropped and
//!   counted) for one task that publishes it. Each envelope names the actor's stream and the
//!   seq the previous frame reached (`prev_seq`), so a follower can tell a gap.
//! - **Follower side** ([`Hub`]): one Redis subscription per event with local followers,
//!   reference-counted, its frames republished on a local broadcast channel shaped like the
//!   actor's own. A gap, a new stream (the event's actor restarted or moved) or a lost Redis
//!   connection close every follower's receiver, and each starts over from the owner.
//! - **Start points** ([`StreamStart`]): a follower subscribes first, then asks the owner
//!   where to start (the owner's facade serves that from the actor's own subscription cut),
//!   then [`Feed::bind`]s to it.
//!
//! Redis is only a carrier: without it a node still serves the events it owns, and its
//! clients of other nodes' events are refused. A frame lost on the way is noticed at the
//! next one (or when the connection drops), and the followers resync then; a follower is
//! never handed frames out of order or across a gap.

mod hub;
mod publisher;
mod wire;

pub use hub::{Feed, Hub};
pub use wire::{Envelope, StartPoint, StreamStart, channel};

use crate::metrics::ClusterMetrics;
use std::sync::Arc;
use tiketi_actors::FrameSink;

/// Why the live stream between nodes could not do something.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// Redis is not reachable now, or did not answer in time.
    #[error("Redis unavailable for the live stream: {0}")]
    Unavailable(String),
    /// Bytes that are not a well-formed envelope or start point.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// This node's end of the live stream between nodes: the sink its actors publish through,
/// and the hub its WebSocket connections follow other nodes' events through. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    publisher: Arc<publisher::Publisher>,
    hub: Hub,
}

impl Fanout {
    /// Connects to the Redis at `redis_url` (in the background, reconnecting as needed) and
    /// spawns the publisher and the hub's connection; must be called within a tokio runtime.
    /// `channel_capacity` is how many frames a follower may fall behind before it resyncs
    /// (`stream.channel_capacity`, as for the actors' own channels).
    pub fn new(redis_url: &str, channel_capacity: usize, metrics: &ClusterMetrics) -> Result<Self, FanoutError> {
        let client = redis::Client::open(redis_url).map_err(|e| FanoutError::Unavailable(e.to_string()))?;
        let (publisher, publishing) = publisher::Publisher::new(client.clone(), metrics.fanout.clone());
        let (hub, connection) = Hub::new(client, channel_capacity, metrics.fanout.clone());
        tokio::spawn(publishing);
        tokio::spawn(connection);
        Ok(Self { publisher, hub })
    }

    /// The sink for [`ActorConfig::frame_sink`](tiketi_actors::ActorConfig::frame_sink).
    pub fn sink(&self) -> Arc<dyn FrameSink> {
        self.publisher.clone()
    }

    /// The hub WebSocket connections follow other nodes' events through.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}
