//! The write-behind journal's metrics, read back through a registry as Prometheus text.

use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tiketi_engine::{
    ChangeSet, EventEngine, EventId, EventStatus, HoldRequest, LayoutSpec, ReservationId, SeatMap, Selection,
    Timestamp, UserId,
};
use tiketi_persistence::journal::{Journal, JournalConfig};
use tiketi_persistence::{EventRecord, JournalEntry, MemoryStore, Store};
use uuid::Uuid;

const T0: Timestamp = Timestamp(1_767_225_600_000); // 2026-01-01

fn event_record() -> EventRecord {
    EventRecord {
        id: EventId(Uuid::new_v4()),
        title: "Concert".into(),
        description: String::new(),
        venue: "Hall".into(),
        artist: "Band".into(),
        event_date: T0.plus(Duration::from_secs(86_400 * 30)),
        sale_start: T0,
        sale_end: T0.plus(Duration::from_secs(86_400)),
        layout: Some(LayoutSpec::grid(1, 1, 10, 100)),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        hold_ttl: Duration::from_secs(60),
        max_per_reservation: 10,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::OnSale,
        created_at: T0,
        updated_at: T0,
    }
}

fn entry(event: EventId, changes: ChangeSet) -> JournalEntry {
    JournalEntry { event, fence: None, changes, idempotency: Vec::new(), event_record: None, audit: Vec::new() }
}

fn hold(engine: &mut EventEngine, quantity: u32, now: Timestamp) -> (ReservationId, ChangeSet) {
    hold_for(engine, UserId(Uuid::new_v4()), quantity, now)
}

fn hold_for(engine: &mut EventEngine, user: UserId, quantity: u32, now: Timestamp) -> (ReservationId, ChangeSet) {
    let id = ReservationId(Uuid::new_v4());
    let selection = Selection::BestAvailable { quantity, section: None, adjacent: true };
    (id, engine.hold(HoldRequest { id, user, selection, admitted: false }, now).unwrap())
}

/// The value of the one sample named `name` with exactly `labels` (e.g. `{outcome="created"}`
/// or empty).
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{labels} ");
    let values: Vec<f64> =
        text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().expect("a number")).collect();
    assert_eq!(values.len(), 1, "one sample {prefix}in:\n{text}");
    values[0]
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test]
async fn committed_change_sets_are_counted_by_outcome_with_batch_and_lag_figures() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let record = event_record();
    store.create_event(record.clone()).await.unwrap();
    let (journal, _flusher) = Journal::spawn(store, JournalConfig::default(), Arc::new(|_: &[(EventId, u64)]| {}));
    let mut registry = Registry::with_prefix("t");
    journal.register_metrics(registry.sub_registry_with_prefix("journal"));

    let mut engine =
        EventEngine::new(record.id, record.rules(), SeatMap::new(record.layout.as_ref().unwrap()).unwrap(), vec![], T0);
    let now = T0.plus(Duration::from_secs(1));
    let (cancelled, cs) = hold(&mut engine, 2, now);
    journal.send(entry(record.id, cs)).await;
    journal.send(entry(record.id, engine.cancel(cancelled, now).unwrap())).await;
    let (sold, cs) = hold(&mut engine, 3, now);
    journal.try_reserve().unwrap().send(entry(record.id, cs));
    journal.send(entry(record.id, engine.confirm(sold, now).unwrap().unwrap())).await;
    let (_, cs) = hold(&mut engine, 1, now);
    journal.send(entry(record.id, cs)).await;
    journal.send(entry(record.id, engine.tick(now.plus(Duration::from_secs(61))).unwrap())).await;
    journal.flushed().await;

    let text = encode(&registry);
    assert_eq!(sample(&text, "t_journal_reservations_total", r#"{outcome="created"}"#), 3.0);
    assert_eq!(sample(&text, "t_journal_reservations_total", r#"{outcome="cancelled"}"#), 1.0);
    assert_eq!(sample(&text, "t_journal_reservations_total", r#"{outcome="confirmed"}"#), 1.0);
    assert_eq!(sample(&text, "t_journal_reservations_total", r#"{outcome="expired"}"#), 1.0);
    assert_eq!(sample(&text, "t_journal_seats_sold_total", ""), 3.0);
    assert_eq!(sample(&text, "t_journal_backlog", ""), 0.0);
    assert_eq!(sample(&text, "t_journal_append_failures_total", ""), 0.0);
    assert_eq!(sample(&text, "t_journal_rejected_total", ""), 0.0);
    assert_eq!(sample(&text, "t_journal_lag_seconds_count", ""), 6.0);
    assert_eq!(sample(&text, "t_journal_batch_size_sum", ""), 6.0);
    let batches = journal.stats().batches.load(std::sync::atomic::Ordering::Acquire) as f64;
    assert_eq!(sample(&text, "t_journal_batch_size_count", ""), batches);
    assert_eq!(sample(&text, "t_journal_commit_seconds_count", ""), batches);
}

#[tokio::test]
async fn a_rejected_change_set_is_not_counted_and_leaves_no_backlog() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let record = event_record(); // never created in the store: its entries are refused
    let (journal, _flusher) = Journal::spawn(store, JournalConfig::default(), Arc::new(|_: &[(EventId, u64)]| {}));
    let mut registry = Registry::default();
    journal.register_metrics(&mut registry);

    let mut engine =
        EventEngine::new(record.id, record.rules(), SeatMap::new(record.layout.as_ref().unwrap()).unwrap(), vec![], T0);
    let (_, cs) = hold(&mut engine, 2, T0);
    journal.send(entry(record.id, cs)).await;
    journal.flushed().await;

    let text = encode(&registry);
    assert_eq!(sample(&text, "rejected_total", ""), 1.0);
    assert_eq!(sample(&text, "reservations_total", r#"{outcome="created"}"#), 0.0);
    assert_eq!(sample(&text, "backlog", ""), 0.0);
    assert_eq!(sample(&text, "lag_seconds_count", ""), 0.0);
    assert_eq!(sample(&text, "batch_size_count", ""), 1.0);
}

/// A batch with entries of a shard another node took: those entries are dropped (counted as
/// fenced, the shard announced), the others commit, and only the others are reported.
#[tokio::test]
async fn fenced_entries_are_dropped_and_announced_while_the_rest_of_the_batch_commits() {
    let pg = tiketi_persistence::PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    pg.migrate().await.unwrap();
    let lease = Duration::from_secs(30);
    pg.join_cluster("old", "http://old", lease).await.unwrap();
    pg.join_cluster("new", "http://new", lease).await.unwrap();
    let stale = pg.acquire_shards("old", &[3], lease).await.unwrap()[0].1;
    pg.release_shards("old", &[(3, stale)]).await.unwrap();
    let current = pg.acquire_shards("new", &[3], lease).await.unwrap()[0].1;
    let store: Arc<dyn Store> = Arc::new(pg);
    let (zombie, owned) = (event_record(), event_record());
    store.create_event(zombie.clone()).await.unwrap();
    store.create_event(owned.clone()).await.unwrap();
    let committed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let on_commit = {
        let committed = committed.clone();
        Arc::new(move |seqs: &[(EventId, u64)]| committed.lock().unwrap().extend_from_slice(seqs))
    };
    let (journal, _flusher) = Journal::spawn(store.clone(), JournalConfig::default(), on_commit);
    let mut announced = journal.stats().fenced_shards();
    let engine = |r: &EventRecord| {
        EventEngine::new(r.id, r.rules(), SeatMap::new(r.layout.as_ref().unwrap()).unwrap(), vec![], T0)
    };
    let buyer = tiketi_persistence::NewUser {
        email: "fenced@example.com".into(),
        password_hash: "x".into(),
        name: "B".into(),
        role: tiketi_persistence::Role::User,
        created_at: T0,
    };
    let buyer = store.create_user(buyer).await.unwrap().id;
    let (lost, cs) = hold_for(&mut engine(&zombie), buyer, 1, T0);
    let fence = |epoch| Some(tiketi_persistence::Fence { shard: 3, epoch });
    // Queued together, so they ride one batch.
    let (first, second) = (journal.try_reserve().unwrap(), journal.try_reserve().unwrap());
    first.send(JournalEntry { fence: fence(stale), ..entry(zombie.id, cs) });
    let (kept, cs) = hold_for(&mut engine(&owned), buyer, 1, T0);
    second.send(JournalEntry { fence: fence(current), ..entry(owned.id, cs) });
    journal.flushed().await;

    assert_eq!(announced.recv().await.unwrap(), vec![3]);
    assert_eq!(journal.stats().fenced.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(store.reservation(lost).await.unwrap().is_none(), "the zombie's hold was written");
    assert!(store.reservation(kept).await.unwrap().is_some(), "the owner's hold was dropped with it");
    let committed = committed.lock().unwrap().clone();
    assert_eq!(committed, vec![(owned.id, 1)], "only the owner's change set is reported committed");
}
