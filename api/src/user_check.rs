//! Whether the user a valid token names exists in the store.
//!
//! A correctly signed token can still name a user the store does not have (the store was
//! reset under the same signing secret, or another deployment shares it), whose every
//! write the store would refuse after the actor had acknowledged it. So each user is
//! looked up once per process, and remembered once found (users are never deleted).
//!
//! At an on-sale's opening thousands of buyers this process has not seen arrive at once.
//! Their lookups are batched: while one query is under way, the users asked about meanwhile
//! queue up, and the next query asks for all of them (`WHERE id = ANY($1)`), so five
//! thousand new buyers cost a few queries, not five thousand trips through the connection
//! pool. A request waits for its user's answer at most [`CHECK_WAIT`], then trusts the
//! token (holds go on while the database is slow or down); the lookup goes on, and its
//! answer serves the user's next requests.

use crate::metrics::HttpMetrics;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tiketi_engine::UserId;
use tiketi_persistence::Store;
use tokio::sync::watch;

/// How long a request waits for the store to say whether its user exists.
const CHECK_WAIT: Duration = Duration::from_millis(250);
/// How long one batch's query may take at all.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Most users asked about in one query.
const MAX_BATCH: usize = 1_000;

/// The users known to exist, and the lookups under way. Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct UserCheck {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    metrics: HttpMetrics,
    known: RwLock<HashSet<UserId>>,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    /// Each user being looked up, since when, and where its answer goes: `Some(exists)`,
    /// or the sender dropped without one if the lookup failed.
    answers: HashMap<UserId, (Instant, watch::Sender<Option<bool>>)>,
    /// Users not yet in a query, in the order asked.
    queued: Vec<UserId>,
    /// Whether the task that runs the queries is running.
    running: bool,
}

impl UserCheck {
    /// A check against `store`, counting its lookups in `metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: HttpMetrics) -> Self {
        let inner = Inner { store, metrics, known: RwLock::default(), waiting: Mutex::default() };
        Self { inner: Arc::new(inner) }
    }

    /// Whether `id` is a user of the store: false only when the store says it is not.
    pub async fn exists(&self, id: UserId) -> bool {
        if self.inner.known.read().unwrap_or_else(|e| e.into_inner()).contains(&id) {
            return true;
        }
        let Some((asked, mut answer)) = self.ask(id) else { return true };
        // A lookup already older than the wait (the store is slow or down) is not waited
        // for again by each of the user's requests: one wait per lookup, then trust.
        let wait = CHECK_WAIT.saturating_sub(asked.elapsed());
        match tokio::time::timeout(wait, answer.wait_for(Option::is_some)).await {
            Ok(Ok(exists)) => exists.unwrap_or(true),
            // Still looking, or the lookup failed (and said so in the log).
            _ => true,
        }
    }

    /// When the lookup of `id` began, and the answer to come, joining the lookup if one
    /// is under way; `None` if the user turned out to be known meanwhile.
    fn ask(&self, id: UserId) -> Option<(Instant, watch::Receiver<Option<bool>>)> {
        let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((asked, answer)) = waiting.answers.get(&id) {
            return Some((*asked, answer.subscribe()));
        }
        // A lookup may have found the user since `exists` looked (`known` is extended
        // before the answers are sent, and they are sent under this lock).
        if self.inner.known.read().unwrap_or_else(|e| e.into_inner()).contains(&id) {
            return None;
        }
        let (tx, rx) = watch::channel(None);
        let asked = Instant::now();
        waiting.answers.insert(id, (asked, tx));
        waiting.queued.push(id);
        if !waiting.running {
            waiting.running = true;
            tokio::spawn(self.clone().look_up());
        }
        Some((asked, rx))
    }

    /// Queries the queued users, a batch at a time, until none are left.
    async fn look_up(self) {
        // Should this task die (a store that panics), the lookups it owed are given up, so
        // their waiters trust the token, and the next user asked about starts a new task.
        struct Abandon<'a>(&'a Inner);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut waiting = self.0.waiting.lock().unwrap_or_else(|e| e.into_inner());
                    waiting.answers.clear();
                    waiting.queued.clear();
                    waiting.running = false;
                }
            }
        }
        let _abandon = Abandon(&self.inner);
        loop {
            let batch: Vec<UserId> = {
                let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
                if waiting.queued.is_empty() {
                    waiting.running = false;
                    return;
                }
                let n = waiting.queued.len().min(MAX_BATCH);
                waiting.queued.drain(..n).collect()
            };
            let found = match tokio::time::timeout(LOOKUP_TIMEOUT, self.inner.store.existing_users(&batch)).await {
                Ok(Ok(found)) => Some(found.into_iter().collect::<HashSet<_>>()),
                Ok(Err(e)) => {
                    tracing::warn!(users = batch.len(), error = %e, "cannot check that users exist; trusting their tokens");
                    None
                }
                Err(_) => {
                    tracing::warn!(users = batch.len(), "checking that users exist timed out; trusting their tokens");
                    None
                }
            };
            if let Some(found) = &found {
                self.inner.known.write().unwrap_or_else(|e| e.into_inner()).extend(found.iter().copied());
            }
            let mut waiting = self.inner.waiting.lock().unwrap_or_else(|e| e.into_inner());
            for id in &batch {
                let exists = found.as_ref().map(|found| found.contains(id));
                self.inner.metrics.user_lookup(match exists {
                    Some(true) => "found",
                    Some(false) => "missing",
                    None => "failed",
                });
                // A failed lookup drops the sender unanswered: its waiters trust the token,
                // and the user's next request asks again.
                if let (Some((_, answer)), Some(exists)) = (waiting.answers.remove(id), exists) {
                    let _ = answer.send(Some(exists));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiketi_persistence::{MemoryStore, NewUser, Role};

    #[tokio::test]
    async fn a_user_of_the_store_exists_and_a_stranger_does_not() {
        let store = Arc::new(MemoryStore::new());
        let user = store
            .create_user(NewUser {
                email: "a@example.com".into(),
                password_hash: "x".into(),
                name: "A".into(),
                role: Role::User,
                created_at: tiketi_engine::Timestamp::from_millis(0),
            })
            .await
            .unwrap();
        let check = UserCheck::new(store, HttpMetrics::default());
        assert!(check.exists(user.id).await);
        assert!(!check.exists(UserId(uuid::Uuid::new_v4())).await);
        // Remembered: asked again, no lookup waits.
        assert!(check.inner.known.read().unwrap().contains(&user.id));
        assert!(check.inner.waiting.lock().unwrap().answers.is_empty());
    }
}
