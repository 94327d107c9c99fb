//! Whether the user a valid token names exists in the store.
//!
//! A correctly signed token can still name a user the store does not have (the store was
//! reset under the same signing secret, or another deployment shares it), whose every
//! write the store would refuse after the actor had acknowledged it. So each user is
//! looked up once per process, and remembered once found (users are never deleted).
//!
//! At an on-sale's opening thousands of buyers this process has not seen arrive at once;
//! their lookups are batched ([`Loader`]: `Store::existing_users`, `WHERE id = ANY($1)`),
//! so five thousand new buyers cost a few queries, not five thousand trips through the
//! connection pool. A request waits for its user's answer at most [`CHECK_WAIT`] from when
//! the lookup began, then trusts the token (holds go on while the database is slow or
//! down); the lookup goes on, and its answer serves the user's next requests.

use crate::batch::{Found, Loader};
use crate::metrics::HttpMetrics;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tiketi_engine::UserId;
use tiketi_persistence::{Store, StoreError};

/// How long a request waits for the store to say whether its user exists.
const CHECK_WAIT: Duration = Duration::from_millis(250);
/// How long one batch of user lookups may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(4);

/// The users known to exist, and their lookups. Cheap to clone.
#[derive(Clone)]
pub struct UserCheck {
    known: Arc<RwLock<HashSet<UserId>>>,
    lookups: Loader<UserId, ()>,
}

impl UserCheck {
    /// A check against `store`, counting its lookups in `metrics`; `batched` as in
    /// [`Loader::new`].
    pub fn new(store: Arc<dyn Store>, batched: bool, metrics: HttpMetrics) -> Self {
        let known: Arc<RwLock<HashSet<UserId>>> = Arc::default();
        let remember = known.clone();
        let lookups = Loader::new(
            "users behind tokens",
            batched,
            // Looked up even once nobody waits: the answer is remembered below.
            true,
            Box::new(move |ids: Vec<UserId>| {
                let (store, metrics, known) = (store.clone(), metrics.clone(), remember.clone());
                Box::pin(async move {
                    // Its own bound, inside the loader's, so that a timeout is counted too.
                    let query = tokio::time::timeout(LOOKUP_TIMEOUT, store.existing_users(&ids)).await;
                    let found = query
                        .unwrap_or_else(|_| Err(StoreError::Unavailable("timed out".into())))
                        .inspect_err(|_| ids.iter().for_each(|_| metrics.user_lookup("failed")))?;
                    let found: HashSet<UserId> = found.into_iter().collect();
                    for id in &ids {
                        metrics.user_lookup(if found.contains(id) { "found" } else { "missing" });
                    }
                    // Known before any waiter hears: a request that misses the set and
                    // then the lookup sees the set again under the loader's lock.
                    known.write().unwrap_or_else(|e| e.into_inner()).extend(found.iter().copied());
                    Ok(found.into_iter().map(|id| (id, ())).collect())
                })
            }),
        );
        Self { known, lookups }
    }

    /// Whether `id` is a user of the store: false only when the store says it is not.
    pub async fn exists(&self, id: UserId) -> bool {
        let known = || self.known.read().unwrap_or_else(|e| e.into_inner()).contains(&id);
        if known() {
            return true;
        }
        // Unknown (still looking, or the lookup failed and said so in the log): trusted.
        self.lookups.load(id, CHECK_WAIT, known).await != Found::No
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
        let check = UserCheck::new(store, true, HttpMetrics::default());
        assert!(check.exists(user.id).await);
        assert!(!check.exists(UserId(uuid::Uuid::new_v4())).await);
        // Remembered: asked again, it is known without a lookup.
        assert!(check.known.read().unwrap().contains(&user.id));
    }
}
