//! The write-behind journal: event actors hand their change sets to one group-commit
//! flusher per process over a bounded channel, and never wait for the store themselves.
//!
//! The flusher takes everything queued (up to a batch limit), applies it to the store in
//! one [`Store::append`], and then reports "committed up to seq N" per event through the
//! callback it was spawned with. A failed append is retried with backoff, in order, until
//! it succeeds: nothing handed to the journal is dropped because the store was down. The
//! channel bound is the backlog limit: when it is full, [`Journal::try_reserve`] fails and
//! the actor refuses new writes with "overloaded" instead of queueing without bound.
//!
//! Each entry travels with the instant it was handed over, so the flusher can tell how
//! long it waited to become durable ([`JournalMetrics`]).

mod metrics;

pub use metrics::{JournalMetrics, OutcomeLabels};

use crate::records::{Fence, JournalEntry};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tiketi_engine::EventId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An entry and when it was handed to the journal.
type Stamped = (Instant, JournalEntry);

/// Called after every committed batch with the highest committed seq of each event in it.
pub type OnCommit = Arc<dyn Fn(&[(EventId, u64)]) + Send + Sync>;

/// Journal tuning.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Change sets that may wait for the store; past this, writes are refused.
    pub capacity: usize,
    /// Most change sets in one store transaction.
    pub max_batch: usize,
    /// First retry delay after a failed append; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long the flusher waits for more change sets after the first of a batch, unless
    /// the batch fills first: the group commit's window. Fewer, larger transactions cost
    /// the database (which shares the machine with the actors) less per change; durable
    /// replies wait at most this much longer.
    pub linger: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_batch: 4_096,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            linger: Duration::from_millis(10),
        }
    }
}

/// Counters the flusher keeps; read by metrics and the admin endpoints.
#[derive(Debug)]
pub struct JournalStats {
    /// Change sets handed to the journal.
    pub sent: AtomicU64,
    /// Store transactions committed.
    pub batches: AtomicU64,
    /// Change sets committed.
    pub entries: AtomicU64,
    /// Failed append attempts.
    pub failures: AtomicU64,
    /// Entries dropped because the store refused them permanently (a bug or a fenced
    /// write; logged at error level).
    pub rejected: AtomicU64,
    /// Of those, entries refused by the fencing check: written under a shard epoch that
    /// another node had moved on from.
    pub fenced: AtomicU64,
    /// Told the shards of every fenced batch, so the node stops serving them.
    fenced_tx: tokio::sync::broadcast::Sender<Vec<u16>>,
    /// Woken after every batch.
    done: tokio::sync::Notify,
}

impl Default for JournalStats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::default(),
            batches: AtomicU64::default(),
            entries: AtomicU64::default(),
            failures: AtomicU64::default(),
            rejected: AtomicU64::default(),
            fenced: AtomicU64::default(),
            fenced_tx: tokio::sync::broadcast::channel(64).0,
            done: tokio::sync::Notify::default(),
        }
    }
}

impl JournalStats {
    /// The shards of every batch the fencing check refuses from now on.
    pub fn fenced_shards(&self) -> tokio::sync::broadcast::Receiver<Vec<u16>> {
        self.fenced_tx.subscribe()
    }
}

/// The journal is full: the store is behind by `capacity` change sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("write-behind backlog is full")]
pub struct Backlogged;

/// The sending side, cloned into every event actor.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Stamped>,
    capacity: usize,
    stats: Arc<JournalStats>,
    metrics: JournalMetrics,
}

/// A reserved slot in the journal: reserve before deciding, so a decided command can
/// always be journaled.
pub struct JournalPermit(mpsc::OwnedPermit<Stamped>, Arc<JournalStats>);

impl JournalPermit {
    /// Hands an entry to the flusher.
    pub fn send(self, entry: JournalEntry) {
        self.1.sent.fetch_add(1, Ordering::Relaxed);
        self.0.send((Instant::now(), entry));
    }
}

impl Journal {
    /// Starts the flusher. It runs until every [`Journal`] clone is dropped and the queue
    /// is drained, so awaiting the returned handle after dropping them is a full flush.
    pub fn spawn(store: Arc<dyn Store>, config: JournalConfig, on_commit: OnCommit) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.capacity);
        let stats = Arc::new(JournalStats::default());
        let metrics = JournalMetrics::new(stats.clone());
        let flusher =
            Flusher { store, config: config.clone(), on_commit, stats: stats.clone(), metrics: metrics.clone() };
        let task = tokio::spawn(flusher.run(rx));
        (Self { tx, capacity: config.capacity, stats, metrics }, task)
    }

    /// Whether the flusher still takes change sets.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Reserves a slot, or says the backlog is full.
    pub fn try_reserve(&self) -> Result<JournalPermit, Backlogged> {
        let permit = self.tx.clone().try_reserve_owned().map_err(|_| Backlogged)?;
        Ok(JournalPermit(permit, self.stats.clone()))
    }

    /// Queues an entry that must not be refused (a hold expiring, a sale ending), waiting
    /// for room if the backlog is full.
    pub async fn send(&self, entry: JournalEntry) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        // The receiver lives until every sender is gone, so this cannot fail while `self`
        // exists.
        let _ = self.tx.send((Instant::now(), entry)).await;
    }

    /// Waits until everything handed to the journal before this call has been committed
    /// (or permanently rejected and logged).
    pub async fn flushed(&self) {
        let target = self.stats.sent.load(Ordering::Acquire);
        loop {
            let done = self.stats.done.notified();
            if self.stats.entries.load(Ordering::Acquire) + self.stats.rejected.load(Ordering::Acquire) >= target {
                return;
            }
            done.await;
        }
    }

    /// Change sets waiting for the store.
    pub fn backlog(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    /// The flusher's counters.
    pub fn stats(&self) -> &Arc<JournalStats> {
        &self.stats
    }

    /// Registers the journal's metrics (batch sizes, commit latency and lag, backlog,
    /// failures, and reservations and seats sold as committed) into `registry`, which the
    /// caller has prefixed. Every clone of this journal shares the same values.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}

struct Flusher {
    store: Arc<dyn Store>,
    config: JournalConfig,
    on_commit: OnCommit,
    stats: Arc<JournalStats>,
    metrics: JournalMetrics,
}

impl Flusher {
    async fn run(self, mut rx: mpsc::Receiver<Stamped>) {
        let mut stamped = Vec::with_capacity(self.config.max_batch);
        let mut sent_at = Vec::with_capacity(self.config.max_batch);
        let mut batch = Vec::with_capacity(self.config.max_batch);
        while rx.recv_many(&mut stamped, self.config.max_batch).await > 0 {
            // The group commit's window: gather what arrives within `linger` of the first.
            let window = tokio::time::Instant::now() + self.config.linger;
            while stamped.len() < self.config.max_batch {
                let room = self.config.max_batch - stamped.len();
                match tokio::time::timeout_at(window, rx.recv_many(&mut stamped, room)).await {
                    Ok(n) if n > 0 => {}
                    // The window closed, or every sender is gone (the batch still commits).
                    _ => break,
                }
            }
            for (at, entry) in stamped.drain(..) {
                sent_at.push(at);
                batch.push(entry);
            }
            let started = Instant::now();
            let (committed, rejected) = self.commit(&batch).await;
            let now = Instant::now();
            // Metrics before `entries` and the callback: once a caller sees its change set
            // committed (a durable reply, `flushed`), the metrics already count it.
            let durable = batch.iter().enumerate().filter(|(i, _)| !rejected.contains(i));
            self.metrics.batch_committed(
                batch.len(),
                now - started,
                durable.map(|(i, entry)| (now.saturating_duration_since(sent_at[i]), entry)),
            );
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            self.stats.entries.fetch_add((batch.len() - rejected.len()) as u64, Ordering::Release);
            (self.on_commit)(&committed);
            self.stats.done.notify_waiters();
            batch.clear();
            sent_at.clear();
        }
        tracing::debug!("journal closed and drained");
    }

    /// Commits a batch, retrying while the store is unavailable. Returns the highest seq
    /// per event that is now durable, and the positions of the entries that were rejected.
    async fn commit(&self, batch: &[JournalEntry]) -> (Vec<(EventId, u64)>, Vec<usize>) {
        let mut backoff = self.config.backoff;
        loop {
            match self.store.append(batch).await {
                Ok(()) => return (highest_seqs(batch), Vec::new()),
                Err(StoreError::Unavailable(e)) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, entries = batch.len(), retry_in = ?backoff, "journal append failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(StoreError::Fenced(stale)) => return Box::pin(self.commit_unfenced(batch, &stale)).await,
                Err(e) => {
                    // A permanent refusal of the batch: isolate the entries at fault so one
                    // bad entry cannot hold every event's durability hostage.
                    tracing::error!(error = %e, entries = batch.len(), "journal batch refused; retrying entries one by one");
                    return Box::pin(self.commit_each(batch)).await;
                }
            }
        }
    }

    /// Drops the entries written under stale fences (the fencing check refused them: this
    /// node is a zombie for those shards at those epochs) and commits the rest.
    async fn commit_unfenced(&self, batch: &[JournalEntry], stale: &[Fence]) -> (Vec<(EventId, u64)>, Vec<usize>) {
        let is_fenced = |e: &JournalEntry| e.fence.is_some_and(|f| stale.contains(&f));
        let (fenced, kept): (Vec<usize>, Vec<usize>) = (0..batch.len()).partition(|&i| is_fenced(&batch[i]));
        tracing::error!(?stale, entries = fenced.len(), "journal entries fenced: another node owns their shards now");
        self.stats.fenced.fetch_add(fenced.len() as u64, Ordering::Relaxed);
        self.stats.rejected.fetch_add(fenced.len() as u64, Ordering::Release);
        let _ = self.stats.fenced_tx.send(stale.iter().map(|f| f.shard).collect());
        let rest: Vec<JournalEntry> = kept.iter().map(|&i| batch[i].clone()).collect();
        let (committed, rejected) = if rest.is_empty() { (Vec::new(), Vec::new()) } else { self.commit(&rest).await };
        let mut all_rejected = fenced;
        all_rejected.extend(rejected.into_iter().map(|i| kept[i]));
        (committed, all_rejected)
    }

    async fn commit_each(&self, batch: &[JournalEntry]) -> (Vec<(EventId, u64)>, Vec<usize>) {
        let mut committed = Vec::new();
        let mut rejected = Vec::new();
        for (i, entry) in batch.iter().enumerate() {
            let one = std::slice::from_ref(entry);
            let mut backoff = self.config.backoff;
            loop {
                match self.store.append(one).await {
                    Ok(()) => {
                        committed.extend(highest_seqs(one));
                        break;
                    }
                    Err(StoreError::Unavailable(e)) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, retry_in = ?backoff, "journal append failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                    }
                    Err(e) => {
                        rejected.push(i);
                        if let StoreError::Fenced(stale) = &e {
                            self.stats.fenced.fetch_add(1, Ordering::Relaxed);
                            let _ = self.stats.fenced_tx.send(stale.iter().map(|f| f.shard).collect());
                        }
                        self.stats.rejected.fetch_add(1, Ordering::Release);
                        tracing::error!(error = %e, event_id = %entry.event, seq = entry.changes.seq, "journal entry rejected");
                        break;
                    }
                }
            }
        }
        (committed, rejected)
    }
}

fn highest_seqs(batch: &[JournalEntry]) -> Vec<(EventId, u64)> {
    let mut highest: HashMap<EventId, u64> = HashMap::new();
    for e in batch {
        let seq = highest.entry(e.event).or_default();
        *seq = (*seq).max(e.changes.seq);
    }
    highest.into_iter().collect()
}
