//! Ownership hints over Redis: a node that released shards, or is leaving, says so on one
//! channel, and every node runs its heartbeat round at once instead of at its next tick, so
//! a hand-off takes milliseconds rather than a heartbeat interval. Only a hint: a node that
//! misses it (Redis down) acts on its next heartbeat, and authority stays in PostgreSQL.

use crate::Cluster;
use std::time::Duration;
use tokio::sync::OnceCell;

const CHANNEL: &str = "tiketi:cluster";

pub(crate) struct Hints {
    client: Option<redis::Client>,
    node: String,
    publisher: OnceCell<redis::aio::MultiplexedConnection>,
}

impl Hints {
    pub(crate) fn new(url: &str, node: &str) -> Self {
        let client = match url {
            "" => None,
            url => match redis::Client::open(url) {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::error!(error = %e, "cluster.redis_url is not a Redis URL; running without hints");
                    None
                }
            },
        };
        Self { client, node: node.to_owned(), publisher: OnceCell::new() }
    }

    /// Tells every node that ownership changed. Best effort.
    pub(crate) async fn publish(&self) {
        let Some(client) = &self.client else { return };
        let connection = self.publisher.get_or_try_init(|| client.get_multiplexed_async_connection()).await;
        let mut connection = match connection {
            Ok(c) => c.clone(),
            Err(e) => {
                tracing::debug!(error = %e, "no Redis for ownership hints");
                return;
            }
        };
        let sent: redis::RedisResult<i64> =
            redis::cmd("PUBLISH").arg(CHANNEL).arg(&self.node).query_async(&mut connection).await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "ownership hint not sent");
        }
    }

    /// Wakes the heartbeat loop on every hint from another node; reconnects with backoff.
    pub(crate) fn listen(&self, cluster: Cluster) {
        let Some(client) = self.client.clone() else { return };
        let me = self.node.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while !cluster.is_leaving() {
                match listen_once(&client, &cluster, &me).await {
                    Ok(()) => backoff = Duration::from_millis(200),
                    Err(e) => tracing::debug!(error = %e, retry_in = ?backoff, "ownership hints unavailable"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

async fn listen_once(client: &redis::Client, cluster: &Cluster, me: &str) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let from: String = message.get_payload().unwrap_or_default();
        if from != me {
            cluster.inner.wake.notify_one();
        }
    }
    Ok(())
}
