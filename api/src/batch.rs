//! Store lookups batched across concurrent requests (the "data loader" pattern).
//!
//! Some checks on the request path ask the store about one key each: does this token's
//! user exist, was this Idempotency-Key first used for another request. At an on-sale's
//! opening thousands of such requests arrive at once, and one query each would queue them
//! on the connection pool (and take the database's CPU from everything else). A [`Loader`]
//! queues the keys asked about while a query runs and asks for all of them in the next one
//! (`= ANY($1)`, or a join on `unnest`); requests asking about the same key share its
//! answer. A request waits for its answer at most a given time (the checks are best
//! effort: they must not stop holds while the database is slow or down). A lookup whose
//! waiters all gave up is still made if the loader keeps answers (the user check remembers
//! who exists), and dropped from the queue if not, so a stalled database does not leave a
//! backlog of questions nobody waits for.

use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiketi_persistence::StoreError;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest one batch's query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most keys asked about in one query.
const MAX_BATCH: usize = 1_000;
/// Most keys waiting for a query; past it, a key is not looked up (its caller goes on
/// without an answer).
const MAX_QUEUED: usize = 100_000;

/// One query for many keys: the values of those it found.
pub type Fetch<K, V> = Box<dyn Fn(Vec<K>) -> BoxFuture<'static, Result<HashMap<K, V>, StoreError>> + Send + Sync>;

/// What a lookup came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<V> {
    /// The store has it.
    Yes(V),
    /// The store does not.
    No,
    /// No answer: the query failed, or took longer than the caller waits.
    Unknown,
}

/// Batched lookups of `K` in the store. Cheap to clone: one `Arc`.
pub struct Loader<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Loader<K, V> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<K, V> {
    /// What the lookups are for, in log lines.
    what: &'static str,
    /// Whether lookups are batched; if not, each caller queries for itself.
    batched: bool,
    /// Whether a key is still looked up once nobody waits for it (the caller keeps answers
    /// some other way, in `fetch`).
    keeps_answers: bool,
    fetch: Fetch<K, V>,
    waiting: Mutex<Waiting<K, V>>,
}

/// Each key being looked up: since when, and where its answer goes (dropped unanswered
/// when the query failed).
type Answers<K, V> = HashMap<K, (Instant, watch::Sender<Option<Option<V>>>)>;

struct Waiting<K, V> {
    answers: Answers<K, V>,
    /// Keys not yet in a query, in the order asked.
    queued: Vec<K>,
    /// Whether the task that runs the queries is running.
    running: bool,
}

impl<K, V> Loader<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A loader whose queries are `fetch`; `what` names the lookups in the log. Unless
    /// `batched`, each caller queries for itself: for a store that answers from memory,
    /// where a batch would only add a task and a channel to every lookup. With
    /// `keeps_answers`, a key is looked up even once nobody waits for it any more.
    pub fn new(what: &'static str, batched: bool, keeps_answers: bool, fetch: Fetch<K, V>) -> Self {
        let waiting = Mutex::new(Waiting { answers: HashMap::new(), queued: Vec::new(), running: false });
        Self { inner: Arc::new(Inner { what, batched, keeps_answers, fetch, waiting }) }
    }

    /// Looks `key` up, waiting at most `wait` from when its lookup began (a request that
    /// joins an older lookup waits less, or not at all). `seen` says whether the answer
    /// came meanwhile by another way (checked under the loader's lock, so an answer that
    /// lands between the caller's own look and this call is not missed).
    pub async fn load(&self, key: K, wait: Duration, seen: impl FnOnce() -> bool) -> Found<V> {
        if !self.inner.batched {
            return match tokio::time::timeout(wait, (self.inner.fetch)(vec![key.clone()])).await {
                Ok(Ok(mut found)) => found.remove(&key).map_or(Found::No, Found::Yes),
                _ => Found::Unknown,
            };
        }
        let Some((asked, mut answer)) = self.ask(key, seen) else { return Found::Unknown };
        let wait = wait.saturating_sub(asked.elapsed());
        match tokio::time::timeout(wait, answer.wait_for(Option::is_some)).await {
            Ok(Ok(found)) => match found.clone() {
                Some(Some(value)) => Found::Yes(value),
                Some(None) => Found::No,
                None => Found::Unknown,
            },
            _ => Found::Unknown,
        }
    }

    fn ask(&self, key: K, seen: impl FnOnce() -> bool) -> Option<(Instant, watch::Receiver<Option<Option<V>>>)> {
        let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((asked, answer)) = waiting.answers.get(&key) {
            return Some((*asked, answer.subscribe()));
        }
        if seen() || waiting.queued.len() >= MAX_QUEUED {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let asked = Instant::now();
        waiting.answers.insert(key.clone(), (asked, tx));
        waiting.queued.push(key);
        if !waiting.running {
            waiting.running = true;
            tokio::spawn(self.clone().run());
        }
        Some((asked, rx))
    }

    /// Queries the queued keys, a batch at a time, until none are left.
    async fn run(self) {
        // Should this task die (a store that panics), the lookups it owed are given up, so
        // their waiters go on without an answer, and the next key asked about starts a new
        // task.
        struct Abandon<'a, K, V>(&'a Mutex<Waiting<K, V>>);
        impl<K, V> Drop for Abandon<'_, K, V> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut waiting = self.0.lock().unwrap_or_else(|e| e.into_inner());
                    waiting.answers.clear();
                    waiting.queued.clear();
                    waiting.running = false;
                }
            }
        }
        let _abandon = Abandon(&self.inner.waiting);
        loop {
            let batch: Vec<K> = {
                let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
                if !self.inner.keeps_answers {
                    // Nobody waits for these any more (their callers went on without).
                    let Waiting { answers, queued, .. } = &mut *waiting;
                    queued.retain(|key| {
                        let waited = answers.get(key).is_some_and(|(_, tx)| tx.receiver_count() > 0);
                        if !waited {
                            answers.remove(key);
                        }
                        waited
                    });
                }
                if waiting.queued.is_empty() {
                    waiting.running = false;
                    return;
                }
                let n = waiting.queued.len().min(MAX_BATCH);
                waiting.queued.drain(..n).collect()
            };
            let what = self.inner.what;
            let found = match tokio::time::timeout(QUERY_TIMEOUT, (self.inner.fetch)(batch.clone())).await {
                Ok(Ok(found)) => Some(found),
                Ok(Err(e)) => {
                    tracing::warn!(keys = batch.len(), error = %e, "cannot look up {what}; going on without");
                    None
                }
                Err(_) => {
                    tracing::warn!(keys = batch.len(), "looking up {what} timed out; going on without");
                    None
                }
            };
            let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
            for key in &batch {
                let Some((_, answer)) = waiting.answers.remove(key) else { continue };
                // A failed query drops the sender unanswered: its waiters go on without, and
                // the next request asks again.
                if let Some(found) = &found {
                    let _ = answer.send(Some(found.get(key).cloned()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batches a loader over the even numbers was asked, each query held at `gate`.
    type Asked = Arc<Mutex<Vec<Vec<u32>>>>;

    fn evens(batched: bool, keeps_answers: bool, gate: Arc<tokio::sync::Semaphore>) -> (Loader<u32, u32>, Asked) {
        let asked = Asked::default();
        let record = asked.clone();
        let loader = Loader::new(
            "even numbers",
            batched,
            keeps_answers,
            Box::new(move |keys: Vec<u32>| {
                let (record, gate) = (record.clone(), gate.clone());
                Box::pin(async move {
                    record.lock().unwrap().push(keys.clone());
                    let _open = gate.acquire().await.expect("never closed");
                    Ok(keys.into_iter().filter(|k| k % 2 == 0).map(|k| (k, k * 10)).collect())
                })
            }),
        );
        (loader, asked)
    }

    fn load(loader: &Loader<u32, u32>, key: u32, wait: Duration) -> tokio::task::JoinHandle<Found<u32>> {
        let loader = loader.clone();
        tokio::spawn(async move { loader.load(key, wait, || false).await })
    }

    #[tokio::test]
    async fn keys_asked_about_during_a_query_share_the_next_one() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (loader, asked) = evens(true, true, gate.clone());
        let wait = Duration::from_secs(10);
        // The first query (for 1) is held at the gate while 2..=6 and another 1 are asked.
        let first = load(&loader, 1, wait);
        while asked.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = [2, 3, 4, 5, 6, 1].into_iter().map(|k| load(&loader, k, wait)).collect();
        tokio::task::yield_now().await;
        gate.add_permits(100);
        assert_eq!(first.await.unwrap(), Found::No);
        let mut answers = Vec::new();
        for r in rest {
            answers.push(r.await.unwrap());
        }
        use Found::{No, Yes};
        assert_eq!(answers, vec![Yes(20), No, Yes(40), No, Yes(60), No]);
        assert_eq!(*asked.lock().unwrap(), vec![vec![1], vec![2, 3, 4, 5, 6]], "1 asked once; the rest together");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_lookup_is_waited_for_once_and_its_answer_still_comes() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (loader, asked) = evens(true, true, gate.clone());
        let wait = Duration::from_millis(250);
        assert_eq!(loader.load(2, wait, || false).await, Found::Unknown);
        // Joining the same lookup after its wait ran out: no second wait, no second query.
        let again = Instant::now();
        assert_eq!(loader.load(2, wait, || false).await, Found::Unknown);
        assert_eq!(again.elapsed(), Duration::ZERO);
        // A caller prepared to wait longer still gets the answer of that same lookup.
        let patient = load(&loader, 2, Duration::from_secs(10));
        tokio::task::yield_now().await;
        gate.add_permits(1);
        assert_eq!(patient.await.unwrap(), Found::Yes(20));
        assert_eq!(asked.lock().unwrap().len(), 1);
        // A caller that learnt the answer some other way (`seen`) does not start another.
        assert_eq!(loader.load(2, wait, || true).await, Found::Unknown);
        assert_eq!(asked.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_kept_answers_a_key_nobody_waits_for_is_not_asked() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (loader, asked) = evens(true, false, gate.clone());
        // 1's query is held; 2 is queued behind it and given up on; 4 is still awaited.
        let first = load(&loader, 1, Duration::from_secs(10));
        while asked.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(loader.load(2, Duration::from_millis(250), || false).await, Found::Unknown);
        let awaited = load(&loader, 4, Duration::from_secs(10));
        tokio::task::yield_now().await;
        gate.add_permits(100);
        assert_eq!(first.await.unwrap(), Found::No);
        assert_eq!(awaited.await.unwrap(), Found::Yes(40));
        assert_eq!(*asked.lock().unwrap(), vec![vec![1], vec![4]]);
        assert!(loader.inner.waiting.lock().unwrap().answers.is_empty());
    }

    #[tokio::test]
    async fn unbatched_each_caller_queries_for_itself() {
        let (loader, asked) = evens(false, true, Arc::new(tokio::sync::Semaphore::new(100)));
        let wait = Duration::from_secs(1);
        assert_eq!(loader.load(4, wait, || false).await, Found::Yes(40));
        assert_eq!(loader.load(4, wait, || false).await, Found::Yes(40));
        assert_eq!(loader.load(5, wait, || false).await, Found::No);
        assert_eq!(asked.lock().unwrap().len(), 3);
        assert!(!loader.inner.waiting.lock().unwrap().running, "no task");
    }
}
