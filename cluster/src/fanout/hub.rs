//! The follower's side: one Redis subscription per event this node's clients follow on
//! another node, its frames republished on a local broadcast channel that every local
//! follower of the event reads.
//!
//! The hub keeps, per event, the *chain* of frames it has passed on: the stream they belong
//! to and the seq of the last one. A frame that does not continue the chain (its `prev_seq`
//! is not the last seq: something was dropped), a frame or start of another stream (the
//! event's actor restarted, here or elsewhere), or the Redis connection dropping all *cut*
//! the channel: its broadcast sender is replaced, so every follower's receiver reports
//! `Closed` once it has read what was sent before, and the follower starts over from the
//! owner (a replay or a snapshot).
//!
//! A follower subscribes in this order, which is what makes the hand-over exact:
//! 1. [`Hub::subscribe`]: Redis confirmed the subscription, and the follower's receiver
//!    exists, before
//! 2. the follower asks the owner where to start (`stream`, `seq`): so every frame after
//!    that seq reaches the receiver;
//! 3. [`Feed::bind`]: the hub checks that its chain is of that stream and covers every frame
//!    after that seq; if not, the channel is cut and the follower starts over.

use super::FanoutError;
use super::wire::{Envelope, channel};
use crate::metrics::FanoutMetrics;
use redis::aio::PubSubSink;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tiketi_actors::Frame;
use tiketi_engine::EventId;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// How long [`Hub::subscribe`] waits for Redis (a connection, a confirmation).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
/// How often an idle subscription connection is pinged, so a dead one is noticed.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long Redis may take to answer a ping or an unsubscribe.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// This node's subscriptions to other nodes' events. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    /// Frames a follower may fall behind before it misses some and must resync.
    capacity: usize,
    channels: Mutex<HashMap<EventId, Channel>>,
    /// The subscription connection's command half, while connected. Every SUBSCRIBE and
    /// UNSUBSCRIBE is sent holding this lock, so they reach Redis in the order the channel
    /// table decided them.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    connected: watch::Sender<bool>,
    metrics: FanoutMetrics,
    /// The runtime the hub was made on: the one its connection task runs on, and where an
    /// unsubscription is sent from, whichever runtime drops the last feed.
    runtime: Option<tokio::runtime::Handle>,
    /// Dropped with the hub: stops its connection task.
    _stop: oneshot::Sender<()>,
}

/// One followed event.
struct Channel {
    /// Live [`Feed`]s (and subscriptions in progress).
    refs: usize,
    /// Whether Redis confirmed the subscription on the current connection.
    subscribed: bool,
    /// Bumped by every cut: a feed of an earlier generation reads a closed channel.
    generation: u64,
    capacity: usize,
    frames: broadcast::Sender<Arc<Frame>>,
    chain: Option<Chain>,
}

/// What the current generation of a channel has passed on.
#[derive(Debug, Clone, Copy)]
struct Chain {
    stream: Uuid,
    /// Every frame of `stream` with a higher seq has been or will be passed on (`None`:
    /// nobody bound and nothing passed on yet).
    from: Option<u64>,
    /// The seq of the last frame passed on.
    last: Option<u64>,
}

impl Hub {
    /// A hub for `client`'s Redis; the returned task keeps its connection (it ends when
    /// the hub is dropped).
    pub(crate) fn new(
        client: redis::Client,
        capacity: usize,
        metrics: FanoutMetrics,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = oneshot::channel();
        let inner = Arc::new(HubInner {
            capacity: capacity.max(1),
            channels: Mutex::default(),
            sink: tokio::sync::Mutex::new(None),
            connected: watch::Sender::new(false),
            metrics,
            runtime: tokio::runtime::Handle::try_current().ok(),
            _stop: stop,
        });
        let task = run(Arc::downgrade(&inner), client, stopped);
        (Self { inner }, task)
    }

    /// Follows `event`'s frames: subscribes to its channel unless this node already does,
    /// and returns once Redis confirmed the subscription. Then ask the owner where to start,
    /// and [`Feed::bind`] to that.
    pub async fn subscribe(&self, event: EventId) -> Result<Feed, FanoutError> {
        let interest = Interest::new(self.inner.clone(), event);
        let deadline = Instant::now() + SUBSCRIBE_WAIT;
        loop {
            self.inner.ensure_subscribed(event, deadline).await?;
            // The receiver is taken while the subscription is known to stand: a later
            // disconnection cuts it.
            if let Some((generation, frames)) = self.inner.receiver(event) {
                return Ok(Feed { interest, generation, frames });
            }
        }
    }

    /// Whether the hub has a connection to Redis now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Events followed now.
    pub fn followed(&self) -> usize {
        self.inner.lock().len()
    }
}

/// One follower's view of an event's channel. Dropping it unsubscribes from Redis when it
/// was the event's last.
pub struct Feed {
    interest: Interest,
    generation: u64,
    frames: broadcast::Receiver<Arc<Frame>>,
}

impl Feed {
    /// Binds this follower to where the owner said it starts: `stream`, at `seq`. True when
    /// every later frame of that stream will reach this feed; false when the channel was
    /// cut meanwhile or carries another stream (it is cut now): the receiver is closed, and
    /// the follower must start over.
    pub fn bind(&self, stream: Uuid, seq: u64) -> bool {
        let hub = &self.interest.hub;
        let mut channels = hub.lock();
        let Some(channel) = channels.get_mut(&self.interest.event) else { return false };
        let (bound, cut) = channel.bind(self.generation, stream, seq);
        if cut {
            hub.metrics.resyncs.inc();
        }
        bound
    }

    /// The next frame; `Lagged` when this follower fell behind the channel, `Closed` when the
    /// channel was cut (start over).
    pub async fn recv(&mut self) -> Result<Arc<Frame>, RecvError> {
        self.frames.recv().await
    }

    /// The next frame if one is waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Frame>, TryRecvError> {
        self.frames.try_recv()
    }

    /// The event followed.
    pub fn event(&self) -> EventId {
        self.interest.event
    }
}

/// A reference on an event's channel: created first, so the channel outlives a
/// subscription in progress; released on drop.
struct Interest {
    hub: Arc<HubInner>,
    event: EventId,
}

impl Interest {
    fn new(hub: Arc<HubInner>, event: EventId) -> Self {
        let capacity = hub.capacity;
        hub.lock().entry(event).or_insert_with(|| Channel::new(capacity)).refs += 1;
        Self { hub, event }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        self.hub.release(self.event);
    }
}

impl HubInner {
    fn lock(&self) -> MutexGuard<'_, HashMap<EventId, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure Redis confirmed the subscription to `event`'s channel on the current
    /// connection, waiting for a connection until `deadline`.
    async fn ensure_subscribed(&self, event: EventId, deadline: Instant) -> Result<(), FanoutError> {
        let unavailable = || FanoutError::Unavailable("no connection to Redis".into());
        loop {
            let mut connected = self.connected.subscribe();
            tokio::time::timeout_at(deadline, connected.wait_for(|&up| up))
                .await
                .map_err(|_| unavailable())?
                .map_err(|_| unavailable())?;
            let mut sink = tokio::time::timeout_at(deadline, self.sink.lock()).await.map_err(|_| unavailable())?;
            if self.lock().get(&event).is_some_and(|c| c.subscribed) {
                return Ok(());
            }
            // Disconnected since: wait for the next connection.
            let Some(sink) = sink.as_mut() else { continue };
            match tokio::time::timeout_at(deadline, sink.subscribe(channel(event))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(FanoutError::Unavailable(format!("subscribing: {e}"))),
                Err(_) => {
                    return Err(FanoutError::Unavailable("Redis did not confirm the subscription in time".into()));
                }
            }
            if let Some(channel) = self.lock().get_mut(&event) {
                channel.subscribed = true;
            }
            return Ok(());
        }
    }

    /// A receiver on `event`'s channel, if its subscription stands.
    fn receiver(&self, event: EventId) -> Option<(u64, broadcast::Receiver<Arc<Frame>>)> {
        let channels = self.lock();
        let channel = channels.get(&event).filter(|c| c.subscribed)?;
        Some((channel.generation, channel.frames.subscribe()))
    }

    /// Drops a reference; the last one unsubscribes (off the caller's path: this runs in a
    /// destructor).
    fn release(self: &Arc<Self>, event: EventId) {
        let last = self.lock().get_mut(&event).is_some_and(|c| {
            c.refs -= 1;
            c.refs == 0
        });
        if !last {
            return;
        }
        match self.runtime.clone().or_else(|| tokio::runtime::Handle::try_current().ok()) {
            Some(runtime) => {
                runtime.spawn(self.clone().unsubscribe(event));
            }
            // No runtime, so no connection task either: nothing to tell Redis.
            None => {
                let mut channels = self.lock();
                if channels.get(&event).is_some_and(|c| c.refs == 0) {
                    channels.remove(&event);
                }
            }
        }
    }

    /// Forgets `event`'s channel and unsubscribes, unless it was taken up again meanwhile.
    async fn unsubscribe(self: Arc<Self>, event: EventId) {
        let mut sink = self.sink.lock().await;
        let subscribed = {
            let mut channels = self.lock();
            match channels.get(&event) {
                Some(c) if c.refs == 0 => channels.remove(&event).is_some_and(|c| c.subscribed),
                _ => return,
            }
        };
        let Some(sink) = sink.as_mut().filter(|_| subscribed) else { return };
        // A failure leaves a subscription whose messages are ignored, until the next
        // reconnection drops it.
        match tokio::time::timeout(ANSWER_TIMEOUT, sink.unsubscribe(channel(event))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(event_id = %event, error = %e, "unsubscribing failed"),
            Err(_) => tracing::debug!(event_id = %event, "unsubscribing timed out"),
        }
    }

    /// A message from Redis.
    fn deliver(&self, payload: &[u8]) {
        let envelope = match Envelope::decode(bytes::Bytes::copy_from_slice(payload)) {
            Ok(envelope) => envelope,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a live-stream envelope");
                return;
            }
        };
        let mut channels = self.lock();
        let Some(channel) = channels.get_mut(&envelope.event()) else { return };
        self.metrics.received.inc();
        let cut = match envelope {
            Envelope::Started { stream, .. } => channel.started(stream),
            Envelope::Frame { stream, prev_seq, frame, .. } => channel.frame(stream, prev_seq, frame),
        };
        if cut {
            self.metrics.resyncs.inc();
        }
    }

    /// A new subscription connection is up.
    async fn connected(&self, sink: PubSubSink) {
        *self.sink.lock().await = Some(sink);
        self.connected.send_replace(true);
    }

    /// The subscription connection is gone: every subscription with it, and whatever was
    /// published meanwhile. Every follower starts over.
    async fn disconnected(&self) {
        self.connected.send_replace(false);
        let mut sink = self.sink.lock().await;
        *sink = None;
        for channel in self.lock().values_mut() {
            channel.subscribed = false;
            if channel.cut() {
                self.metrics.resyncs.inc();
            }
        }
    }
}

impl Channel {
    fn new(capacity: usize) -> Self {
        let frames = broadcast::channel(capacity).0;
        Self { refs: 0, subscribed: false, generation: 0, capacity, frames, chain: None }
    }

    /// Replaces the broadcast sender: every receiver reads `Closed` after what it has.
    /// Returns whether any receiver was cut off.
    fn cut(&mut self) -> bool {
        let cut_off = self.frames.receiver_count() > 0;
        self.frames = broadcast::channel(self.capacity).0;
        self.generation += 1;
        self.chain = None;
        cut_off
    }

    /// The event's actor began `stream`. Returns whether followers were cut off.
    fn started(&mut self, stream: Uuid) -> bool {
        match self.chain {
            Some(chain) if chain.stream == stream => false,
            // Nobody bound, nothing passed on: the followers waiting for a start bind to
            // the new stream, or find out theirs is older.
            None => {
                self.chain = Some(Chain { stream, from: None, last: None });
                false
            }
            Some(_) => {
                let cut_off = self.cut();
                self.chain = Some(Chain { stream, from: None, last: None });
                cut_off
            }
        }
    }

    /// A frame of `stream` after `prev_seq`. Returns whether followers were cut off.
    fn frame(&mut self, stream: Uuid, prev_seq: u64, frame: Arc<Frame>) -> bool {
        let continues = match self.chain {
            None => true,
            Some(chain) if chain.stream != stream => false,
            Some(Chain { last: Some(last), .. }) => prev_seq == last,
            // The first frame: it must reach back to every bound follower's start.
            Some(Chain { from, last: None, .. }) => from.is_none_or(|from| prev_seq <= from),
        };
        if !continues {
            let cut_off = self.cut();
            // The next generation's chain begins here: a follower binding to it must start
            // at or after `prev_seq`.
            self.chain = Some(Chain { stream, from: Some(prev_seq), last: Some(frame.seq) });
            return cut_off;
        }
        let chain = self.chain.get_or_insert(Chain { stream, from: None, last: None });
        if chain.last.is_none() {
            chain.from = Some(prev_seq);
        }
        chain.last = Some(frame.seq);
        // Nobody listening is not an error.
        let _ = self.frames.send(frame);
        false
    }

    /// Binds a feed of `generation` to a start at `seq` of `stream`. Returns whether it is
    /// bound, and whether followers were cut off.
    fn bind(&mut self, generation: u64, stream: Uuid, seq: u64) -> (bool, bool) {
        if generation != self.generation {
            return (false, false);
        }
        match &mut self.chain {
            None => {
                self.chain = Some(Chain { stream, from: Some(seq), last: None });
                (true, false)
            }
            Some(chain) if chain.stream == stream => match chain.last {
                // Nothing passed on yet: the first frame must reach back to every start.
                None => {
                    chain.from = Some(chain.from.map_or(seq, |from| from.min(seq)));
                    (true, false)
                }
                Some(_) if chain.from.is_some_and(|from| from <= seq) => (true, false),
                // The chain began after this start (frames were dropped in between).
                Some(_) => (false, self.cut()),
            },
            // The start and the chain disagree about the stream: one of them is stale.
            Some(_) => (false, self.cut()),
        }
    }
}

/// Keeps the subscription connection: connects, passes messages on, pings, and on any
/// failure cuts every channel and reconnects with backoff. Ends with the hub.
async fn run(hub: Weak<HubInner>, client: redis::Client, mut stop: oneshot::Receiver<()>) {
    use futures_util::StreamExt;
    let mut backoff = MIN_BACKOFF;
    loop {
        let connecting = tokio::time::timeout(SUBSCRIBE_WAIT, client.get_async_pubsub());
        let connection = tokio::select! {
            connection = connecting => connection,
            _ = &mut stop => return,
        };
        match connection {
            Ok(Ok(pubsub)) => {
                let (mut sink, mut messages) = pubsub.split();
                let Some(inner) = hub.upgrade() else { return };
                inner.connected(sink.clone()).await;
                drop(inner);
                tracing::info!("live-stream hub connected to Redis");
                backoff = MIN_BACKOFF;
                let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
                let why = loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => match hub.upgrade() {
                                Some(inner) => inner.deliver(message.get_payload_bytes()),
                                None => return,
                            },
                            None => break "connection closed".to_owned(),
                        },
                        _ = keepalive.tick() => {
                            match tokio::time::timeout(ANSWER_TIMEOUT, sink.ping::<redis::Value>()).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => break format!("ping failed: {e}"),
                                Err(_) => break "ping timed out".to_owned(),
                            }
                        }
                        _ = &mut stop => return,
                    }
                };
                tracing::warn!(reason = %why, "live-stream hub lost Redis; followers resync");
                let Some(inner) = hub.upgrade() else { return };
                inner.disconnected().await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, retry_in = ?backoff, "live-stream hub cannot reach Redis"),
            Err(_) => tracing::debug!(retry_in = ?backoff, "live-stream hub: connecting to Redis timed out"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Arc<Frame> {
        Arc::new(Frame::new(seq, Vec::new(), Vec::new()))
    }

    #[test]
    fn frames_that_continue_the_chain_pass_and_a_gap_cuts() {
        let mut channel = Channel::new(8);
        let mut rx = channel.frames.subscribe();
        let stream = Uuid::new_v4();
        assert_eq!(channel.bind(0, stream, 10), (true, false));
        assert!(!channel.frame(stream, 9, frame(11)));
        assert!(!channel.frame(stream, 11, frame(12)));
        assert!(channel.frame(stream, 13, frame(14)), "12 -> 14 skips a frame");
        assert_eq!(rx.try_recv().map(|f| f.seq), Ok(11));
        assert_eq!(rx.try_recv().map(|f| f.seq), Ok(12));
        assert_eq!(rx.try_recv().map(|f| f.seq), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_first_frame_that_does_not_reach_back_to_a_start_cuts() {
        let mut channel = Channel::new(8);
        let _rx = channel.frames.subscribe();
        let stream = Uuid::new_v4();
        assert_eq!(channel.bind(0, stream, 10), (true, false));
        assert_eq!(channel.bind(0, stream, 8), (true, false));
        assert!(channel.frame(stream, 9, frame(12)), "frames 9..=8 were never seen");
        assert_eq!(channel.generation, 1);
        // The new chain covers frames after 9: a start at 9 or later binds, 8 does not.
        let _rx = channel.frames.subscribe();
        assert_eq!(channel.bind(1, stream, 12), (true, false));
        assert_eq!(channel.bind(1, stream, 8), (false, true));
    }

    #[test]
    fn another_stream_cuts_and_stale_feeds_do_not_bind() {
        let mut channel = Channel::new(8);
        let _rx = channel.frames.subscribe();
        let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(channel.bind(0, old, 5), (true, false));
        assert!(!channel.frame(old, 5, frame(6)));
        assert!(!channel.started(old));
        assert!(channel.started(new), "the actor restarted");
        assert_eq!(channel.bind(0, new, 3), (false, false), "a feed of the cut generation");
        assert_eq!(channel.bind(1, new, 3), (true, false));
        let _rx = channel.frames.subscribe();
        assert_eq!(channel.bind(1, old, 7), (false, true), "a start from the old stream");
    }
}
