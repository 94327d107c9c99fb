//! The owner's side: every frame an event actor flushes is queued, never waited for, and one
//! task per node publishes the queue to the events' channels.
//!
//! The queue is bounded: when Redis is slow or down it fills and further frames are dropped
//! (and counted). Nothing else is needed to recover: the next frame that does go out names a
//! `prev_seq` its followers never saw, and they resync from the owner.
//!
//! Stream starts are the exception: a new actor builds no frames until someone subscribes
//! to it, so if its start were lost, followers of the previous actor would wait on a stream
//! that has ended. Starts (one per activation: rare) have their own queue, and one that
//! could not be published is kept, per event, and published once Redis is back.

use super::wire::{Envelope, channel};
use crate::metrics::FanoutMetrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{Frame, FrameSink};
use tiketi_engine::EventId;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Frames waiting for the publisher: at most 50 a second per busy event (the 20 ms tick),
/// so a second of three hundred busy events while Redis stalls.
const QUEUE: usize = 16_384;
/// Stream starts waiting for the publisher, or kept after a failure.
const STARTS: usize = 4_096;
/// Most envelopes sent in one pipeline (one round trip).
const BATCH: usize = 256;
/// How long Redis may take to answer one pipeline before the connection is given up.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The [`FrameSink`] the event actors hand their frames to: it only queues them.
#[derive(Debug)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<Envelope>,
    starts: mpsc::Sender<Envelope>,
    metrics: FanoutMetrics,
}

impl Publisher {
    /// The sink, and the task that publishes what it queues (it ends when the sink is
    /// dropped).
    pub(crate) fn new(
        client: redis::Client,
        metrics: FanoutMetrics,
    ) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let (queue, frames) = mpsc::channel(QUEUE);
        let (starts, started) = mpsc::channel(STARTS);
        let publisher = Arc::new(Self { queue, starts, metrics: metrics.clone() });
        (publisher, run(client, Queues { started, frames }, metrics))
    }

    fn offer(&self, queue: &mpsc::Sender<Envelope>, envelope: Envelope) {
        // Never waits: the caller is an event actor.
        if queue.try_send(envelope).is_err() {
            self.metrics.dropped.inc();
        }
    }
}

impl FrameSink for Publisher {
    fn started(&self, event: EventId, stream: Uuid, seq: u64) {
        self.offer(&self.starts, Envelope::Started { event, stream, seq });
    }

    fn publish(&self, event: EventId, stream: Uuid, prev_seq: u64, frame: &Arc<Frame>) {
        self.offer(&self.queue, Envelope::Frame { event, stream, prev_seq, frame: frame.clone() });
    }
}

struct Queues {
    started: mpsc::Receiver<Envelope>,
    frames: mpsc::Receiver<Envelope>,
}

impl Queues {
    /// The next envelopes, waiting for some; none once the sink is gone.
    async fn next(&mut self, batch: &mut Vec<Envelope>) -> usize {
        if self.fill(batch) > 0 {
            return batch.len();
        }
        tokio::select! {
            biased;
            Some(start) = self.started.recv() => {
                batch.push(start);
                1
            }
            n = self.frames.recv_many(batch, BATCH) => n,
        }
    }

    /// Whatever is waiting, starts first, without waiting.
    fn fill(&mut self, batch: &mut Vec<Envelope>) -> usize {
        for queue in [&mut self.started, &mut self.frames] {
            while batch.len() < BATCH {
                match queue.try_recv() {
                    Ok(envelope) => batch.push(envelope),
                    Err(_) => break,
                }
            }
        }
        batch.len()
    }

    /// Whether the sink is gone and everything it queued was taken.
    fn finished(&self) -> bool {
        self.frames.is_closed() && self.frames.is_empty() && self.started.is_empty()
    }
}

/// Publishes everything queued, a pipeline at a time, in queue order (so each event's frames
/// reach Redis in seq order); reconnects with backoff.
async fn run(client: redis::Client, mut queues: Queues, metrics: FanoutMetrics) {
    let mut connection: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = MIN_BACKOFF;
    let mut batch = Vec::with_capacity(BATCH);
    // Starts that could not be published, latest per event.
    let mut kept: HashMap<EventId, Envelope> = HashMap::new();
    loop {
        if kept.is_empty() {
            if queues.next(&mut batch).await == 0 {
                return;
            }
        } else if queues.fill(&mut batch) == 0 && queues.finished() {
            // Shutting down: nobody is left to follow the kept starts.
            return;
        }
        // A newer start of an event supersedes a kept one.
        for envelope in &batch {
            if let Envelope::Started { event, .. } = envelope {
                kept.remove(event);
            }
        }
        batch.splice(0..0, kept.drain().map(|(_, envelope)| envelope));
        let count = batch.len() as u64;
        let mut pipe = redis::pipe();
        for envelope in &batch {
            pipe.cmd("PUBLISH").arg(channel(envelope.event())).arg(envelope.encode().as_ref()).ignore();
        }
        let outcome = match &mut connection {
            Some(connection) => publish(&pipe, connection).await,
            None => match tokio::time::timeout(PUBLISH_TIMEOUT, client.get_multiplexed_async_connection()).await {
                Ok(Ok(mut fresh)) => {
                    tracing::info!("live-stream publisher connected to Redis");
                    let outcome = publish(&pipe, &mut fresh).await;
                    connection = Some(fresh);
                    outcome
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connecting timed out".into()),
            },
        };
        match outcome {
            Ok(()) => {
                metrics.published.inc_by(count);
                batch.clear();
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                for envelope in batch.drain(..) {
                    match envelope {
                        Envelope::Started { event, .. } if kept.len() < STARTS || kept.contains_key(&event) => {
                            kept.insert(event, envelope);
                        }
                        _ => {
                            metrics.dropped.inc();
                        }
                    }
                }
                if connection.take().is_some() || backoff == MIN_BACKOFF {
                    tracing::warn!(error = %e, unsent = count, "cannot publish the live stream to Redis; retrying");
                } else {
                    tracing::debug!(error = %e, unsent = count, retry_in = ?backoff, "Redis still unavailable");
                }
                // Meanwhile the queue fills and what does not fit is dropped: followers
                // resync from the owner once frames flow again.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn publish(pipe: &redis::Pipeline, connection: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(connection)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("publishing timed out".into()),
    }
}
