//! Event actors, the directory, the supervisor and the write-behind journal, driven through
//! the public API against the in-memory store, on tokio's paused clock.

use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tiketi_actors::{ActorConfig, ActorError, Caller, CancelCmd, Clock, EventHandle, HoldCmd, Runtime, SelectionInput};
use tiketi_engine::{
    EngineError, EventId, EventStatus, LayoutSpec, Payment, QueueSettings, QueueStanding, Reservation, ReservationId,
    ReservationStatus, SeatStatus, Timestamp, UserId,
};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{
    AuditRecord, EventFilter, EventRecord, EventSnapshot, IdempotencyRecord, JournalEntry, LayoutRecord, MemoryStore,
    NewUser, Page, RefreshTokenRecord, ReservationFilter, Store, StoreError, UserRecord,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::advance;
use uuid::Uuid;

/// 2026-01-05T08:00:00Z: the wall-clock reading of every test's clock at its start.
const T0: Timestamp = Timestamp::from_millis(1_767_600_000_000);
const SECOND: i64 = 1_000;
const HOUR: Duration = Duration::from_secs(3600);

/// `seconds` after the test started (negative: before).
const fn at(seconds: i64) -> Timestamp {
    Timestamp::from_millis(T0.millis() + seconds * SECOND)
}

/// The in-memory store with a gate on `append` (open unless a test closes it) and a count
/// of `load_event` calls.
struct GatedStore {
    inner: MemoryStore,
    open: watch::Sender<bool>,
    loads: AtomicUsize,
}

impl GatedStore {
    fn new() -> Arc<Self> {
        Arc::new(Self { inner: MemoryStore::new(), open: watch::Sender::new(true), loads: AtomicUsize::new(0) })
    }

    /// Holds back every append from now on (one already inside the store completes).
    fn close(&self) {
        self.open.send_replace(false);
    }

    /// Lets appends through again.
    fn open(&self) {
        self.open.send_replace(true);
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        self.inner.create_user(user).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user_by_email(email).await
    }
    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user(id).await
    }
    async fn existing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        self.inner.existing_users(ids).await
    }
    async fn idempotency_fingerprints(
        &self,
        keys: &[(UserId, String)],
    ) -> Result<Vec<((UserId, String), String)>, StoreError> {
        self.inner.idempotency_fingerprints(keys).await
    }
    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), StoreError> {
        self.inner.put_refresh_token(token).await
    }
    async fn take_refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        self.inner.take_refresh_token(hash).await
    }
    async fn create_layout(&self, layout: LayoutRecord) -> Result<(), StoreError> {
        self.inner.create_layout(layout).await
    }
    async fn layouts(&self) -> Result<Vec<LayoutRecord>, StoreError> {
        self.inner.layouts().await
    }
    async fn layout(&self, id: Uuid) -> Result<Option<LayoutRecord>, StoreError> {
        self.inner.layout(id).await
    }
    async fn create_event(&self, event: EventRecord) -> Result<(), StoreError> {
        self.inner.create_event(event).await
    }
    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        self.inner.event(id).await
    }
    async fn list_events(&self, filter: &EventFilter) -> Result<Page<EventRecord>, StoreError> {
        self.inner.list_events(filter).await
    }
    async fn delete_event(&self, id: EventId) -> Result<(), StoreError> {
        self.inner.delete_event(id).await
    }
    async fn load_event(&self, id: EventId) -> Result<Option<EventSnapshot>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_event(id).await
    }
    async fn append(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let mut open = self.open.subscribe();
        open.wait_for(|open| *open).await.expect("the sender lives in the store");
        self.inner.append(entries).await
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        self.inner.reservation(id).await
    }
    async fn reservations_of(&self, user: UserId) -> Result<Vec<Reservation>, StoreError> {
        self.inner.reservations_of(user).await
    }
    async fn find_reservations(&self, filter: &ReservationFilter) -> Result<Page<Reservation>, StoreError> {
        self.inner.find_reservations(filter).await
    }
    async fn idempotency(&self, user: UserId, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency(user, key).await
    }
    async fn payment(&self, order_id: &str) -> Result<Option<Payment>, StoreError> {
        self.inner.payment(order_id).await
    }
    async fn payments_by_key(&self, payment_key: &str) -> Result<Vec<Payment>, StoreError> {
        self.inner.payments_by_key(payment_key).await
    }
    async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, StoreError> {
        self.inner.payments_of(user).await
    }
    async fn unsettled_payment_events(&self, declined_since: Timestamp) -> Result<Vec<EventId>, StoreError> {
        self.inner.unsettled_payment_events(declined_since).await
    }
    async fn audit_of(&self, reservation: ReservationId) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.audit_of(reservation).await
    }
    async fn overview_report(&self, now: Timestamp) -> Result<tiketi_persistence::OverviewReport, StoreError> {
        self.inner.overview_report(now).await
    }
    async fn event_report(&self, event: EventId) -> Result<Option<tiketi_persistence::EventReport>, StoreError> {
        self.inner.event_report(event).await
    }
    async fn daily_report(
        &self,
        event: Option<EventId>,
        days: tiketi_persistence::DayRange,
    ) -> Result<Vec<tiketi_persistence::DayReport>, StoreError> {
        self.inner.daily_report(event, days).await
    }
}

/// An event of one section `S1` with rows `A`-`D` of 10 seats, selling from `sale_start`
/// to `sale_end`, holds lasting `hold_ttl`, stored with its status as of [`T0`].
fn event_record(sale_start: Timestamp, sale_end: Timestamp, hold_ttl: Duration) -> EventRecord {
    let mut record = EventRecord {
        id: EventId(Uuid::from_u128(1)),
        title: "Night Concert".into(),
        description: String::new(),
        venue: "Olympic Hall".into(),
        artist: "The Band".into(),
        event_date: sale_end.plus(HOUR),
        sale_start,
        sale_end,
        layout: Some(LayoutSpec::grid(1, 4, 10, 100)),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        hold_ttl,
        max_per_reservation: 10,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::Upcoming,
        created_at: T0,
        updated_at: T0,
    };
    record.status = record.status_at(T0);
    record
}

/// An event on sale from a minute ago for an hour, with 10-minute holds.
fn on_sale() -> EventRecord {
    event_record(at(-60), at(3600), Duration::from_secs(600))
}

/// Creates `event` in `store` and starts a runtime on it whose clock reads [`T0`] now.
/// Without a group-commit window: these tests run on a paused clock and wait for the store
/// by yielding, so a window would never close.
async fn start(store: Arc<GatedStore>, event: EventRecord, journal: JournalConfig, config: ActorConfig) -> Runtime {
    let journal = JournalConfig { linger: Duration::ZERO, ..journal };
    store.create_event(event).await.expect("event created");
    Runtime::start(store, journal, config, Clock::starting_at(T0), None).await.expect("runtime starts")
}

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(100 + n))
}

fn rid(n: u128) -> ReservationId {
    ReservationId(Uuid::from_u128(1_000 + n))
}

/// Reservation `n` of buyer `n`, holding `seats`.
fn hold(n: u128, seats: &[&str]) -> HoldCmd {
    HoldCmd {
        id: rid(n),
        user: user(n),
        selection: SelectionInput::Seats(seats.iter().map(|s| s.to_string()).collect()),
        idempotency: None,
        admitted: false,
    }
}

/// The id of the `i`-th seat of the layout (0-based): `S1-A-1`, ..., `S1-D-10`.
fn seat(i: usize) -> String {
    format!("S1-{}-{}", ["A", "B", "C", "D"][i / 10], i % 10 + 1)
}

async fn seat_status(handle: &EventHandle, id: &str) -> SeatStatus {
    let seats = handle.seats().await.expect("seat map");
    seats.seats().find(|(s, _)| s.id == id).expect("seat exists").1
}

/// Lets every task that can make progress run (timers that are due, the actor's mailbox,
/// the journal's flusher) without moving the paused clock.
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// Polls the store until reservation `id` is there with `status`; panics if it never is.
async fn stored_as(store: &GatedStore, id: ReservationId, status: ReservationStatus) -> Reservation {
    for _ in 0..1_000 {
        if let Some(r) = store.reservation(id).await.expect("store answers")
            && r.status == status
        {
            return r;
        }
        tokio::task::yield_now().await;
    }
    panic!("reservation {id} never reached the store as {status}: {:?}", store.reservation(id).await);
}

#[tokio::test(start_paused = true)]
async fn a_hold_expires_when_its_ttl_has_passed_and_not_before() {
    let store = GatedStore::new();
    let record = event_record(at(-60), at(3600), Duration::from_secs(60));
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let handle = runtime.directory().get(record.id).await.unwrap();

    let held = handle.hold(hold(1, &["S1-A-1"])).await.unwrap();
    assert_eq!(held.expires_at, at(60));

    advance(Duration::from_millis(59_900)).await;
    settle().await;
    assert_eq!(seat_status(&handle, "S1-A-1").await, SeatStatus::Held);
    assert_eq!(handle.reservation(rid(1)).await.unwrap().map(|r| r.status), Some(ReservationStatus::Held));

    advance(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(seat_status(&handle, "S1-A-1").await, SeatStatus::Available);
    assert_eq!(handle.reservation(rid(1)).await.unwrap(), None);
    assert_eq!(handle.view().await.unwrap().counts.held, 0);
    let stored = stored_as(&store, rid(1), ReservationStatus::Expired).await;
    assert_eq!(stored.updated_at, at(60));
}

#[tokio::test(start_paused = true)]
async fn the_sale_opens_and_ends_on_time_by_the_actors_own_timer() {
    let store = GatedStore::new();
    let record = event_record(at(10), at(70), Duration::from_secs(600));
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let handle = runtime.directory().get(record.id).await.unwrap();

    assert_eq!(handle.view().await.unwrap().status, EventStatus::Upcoming);
    assert_eq!(
        handle.hold(hold(1, &["S1-A-1"])).await,
        Err(ActorError::Engine(EngineError::NotOnSale(EventStatus::Upcoming)))
    );

    advance(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(handle.view().await.unwrap().status, EventStatus::OnSale);
    let held = handle.hold(hold(2, &["S1-A-1"])).await.unwrap();
    assert_eq!(held.status, ReservationStatus::Held);

    advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(handle.view().await.unwrap().status, EventStatus::Ended);
    assert_eq!(
        handle.hold(hold(3, &["S1-A-2"])).await,
        Err(ActorError::Engine(EngineError::NotOnSale(EventStatus::Ended)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_for_a_sleeping_event_start_exactly_one_actor() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    assert!(runtime.directory().live(record.id).is_none());

    let mut gets = JoinSet::new();
    for _ in 0..1_000 {
        let directory = runtime.directory().clone();
        gets.spawn(async move { directory.get(record.id).await });
    }
    let mut actors = HashSet::new();
    while let Some(got) = gets.join_next().await {
        actors.insert(got.expect("task ran").expect("event activates").actor_id());
    }

    assert_eq!(actors.len(), 1);
    assert_eq!(store.loads(), 1);
    let live = runtime.directory().live_events();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].actor_id(), *actors.iter().next().unwrap());
}

/// Holds two reservations and waits until the store has them.
async fn two_holds_committed(store: &GatedStore, handle: &EventHandle) {
    handle.hold(hold(1, &["S1-A-1", "S1-A-2"])).await.unwrap();
    handle.hold(hold(2, &["S1-B-5"])).await.unwrap();
    stored_as(store, rid(1), ReservationStatus::Held).await;
    stored_as(store, rid(2), ReservationStatus::Held).await;
}

#[tokio::test(start_paused = true)]
async fn an_evicted_actor_is_reactivated_from_the_store_with_the_same_state() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let directory = runtime.directory();
    let first = directory.get(record.id).await.unwrap();
    two_holds_committed(&store, &first).await;
    let seats_before = first.seats().await.unwrap();
    let view_before = first.view().await.unwrap();

    directory.evict(record.id).await;
    assert!(directory.live(record.id).is_none());

    let second = directory.get(record.id).await.unwrap();
    assert_ne!(second.actor_id(), first.actor_id());
    let seats_after = second.seats().await.unwrap();
    assert_eq!(seats_after.seq, seats_before.seq);
    assert_eq!(seats_after.statuses, seats_before.statuses);
    let view_after = second.view().await.unwrap();
    assert_eq!((view_after.seq, view_after.counts), (view_before.seq, view_before.counts));
    assert_eq!(view_after.counts.held, 3);
    assert_eq!(second.reservation(rid(1)).await.unwrap().map(|r| r.status), Some(ReservationStatus::Held));
}

#[tokio::test(start_paused = true)]
async fn a_killed_actor_is_reactivated_from_the_store_on_the_next_request() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let directory = runtime.directory();
    let first = directory.get(record.id).await.unwrap();
    two_holds_committed(&store, &first).await;
    let seats_before = first.seats().await.unwrap();

    first.kill();
    settle().await;
    assert!(matches!(first.view().await, Err(ActorError::Unavailable(_))));
    assert!(directory.live(record.id).is_none(), "the supervisor forgot the dead actor");

    let second = directory.get(record.id).await.unwrap();
    assert_ne!(second.actor_id(), first.actor_id());
    let seats_after = second.seats().await.unwrap();
    assert_eq!(seats_after.seq, seats_before.seq);
    assert_eq!(seats_after.statuses, seats_before.statuses);
    // The new actor keeps deciding from where the old one stopped.
    assert_eq!(
        second.hold(hold(3, &["S1-A-1"])).await,
        Err(ActorError::Engine(EngineError::SeatsUnavailable(vec!["S1-A-1".into()])))
    );
    assert_eq!(second.hold(hold(4, &["S1-A-3"])).await.unwrap().number.serial, 3);
}

#[tokio::test(start_paused = true)]
async fn reactivation_waits_until_the_previous_actors_changes_are_in_the_store() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let directory = runtime.directory().clone();
    let first = directory.get(record.id).await.unwrap();
    store.close();
    first.hold(hold(1, &["S1-A-1"])).await.unwrap();
    directory.evict(record.id).await;

    let get = tokio::spawn({
        let directory = directory.clone();
        async move { directory.get(record.id).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!get.is_finished(), "activated before the store had the old actor's hold");

    store.open();
    let second = get.await.unwrap().unwrap();
    assert_eq!(seat_status(&second, "S1-A-1").await, SeatStatus::Held);
    assert_eq!(
        second.hold(hold(2, &["S1-A-1"])).await,
        Err(ActorError::Engine(EngineError::SeatsUnavailable(vec!["S1-A-1".into()])))
    );
}

#[tokio::test(start_paused = true)]
async fn requests_past_the_in_flight_limit_are_refused_as_busy() {
    let store = GatedStore::new();
    let record = on_sale();
    let config = ActorConfig { max_in_flight: 4, busy_retry_after: Duration::from_secs(3), ..ActorConfig::default() };
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), config).await;
    let handle = runtime.directory().get(record.id).await.unwrap();

    // Spawned without yielding: on this single-threaded runtime every call takes (or fails
    // to take) its slot before the actor handles the first one.
    let mut calls = JoinSet::new();
    for _ in 0..100 {
        let handle = handle.clone();
        calls.spawn(async move { handle.view().await.map(|v| v.seq) });
    }
    let (mut answered, mut busy) = (0, 0);
    while let Some(result) = calls.join_next().await {
        match result.expect("task ran") {
            Ok(_) => answered += 1,
            Err(ActorError::Busy { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(3));
                busy += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    assert_eq!((answered, busy), (4, 96));
    assert_eq!(handle.in_flight(), 0);
    assert!(handle.view().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_answers_only_once_it_is_durable_while_the_actor_keeps_serving() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let handle = runtime.directory().get(record.id).await.unwrap();
    handle.hold(hold(1, &["S1-A-1"])).await.unwrap();
    stored_as(&store, rid(1), ReservationStatus::Held).await;

    store.close();
    let cancel = tokio::spawn({
        let handle = handle.clone();
        let caller = Caller { user: user(1), admin: false };
        async move { handle.cancel(CancelCmd { reservation: rid(1), caller, idempotency: None }).await }
    });
    settle().await;
    assert!(!cancel.is_finished());

    // The actor does not wait with the reply: it keeps deciding.
    assert_eq!(seat_status(&handle, "S1-A-1").await, SeatStatus::Available);
    let other = handle.hold(hold(2, &["S1-A-2"])).await.unwrap();
    assert_eq!(other.status, ReservationStatus::Held);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!cancel.is_finished());
    assert_eq!(store.reservation(rid(1)).await.unwrap().unwrap().status, ReservationStatus::Held);

    store.open();
    let cancelled = cancel.await.unwrap().unwrap();
    assert_eq!(cancelled.status, ReservationStatus::Cancelled);
    // No polling: the answer came after the commit.
    assert_eq!(store.reservation(rid(1)).await.unwrap().unwrap().status, ReservationStatus::Cancelled);
}

type Cancellation = tokio::task::JoinHandle<Result<Reservation, ActorError>>;

/// An on-sale event's actor with `config`, three holds committed, then the store stalled
/// and three cancellations sent one at a time (each handled before the next is sent).
async fn cancel_three_while_the_store_stalls(
    config: ActorConfig,
) -> (Arc<GatedStore>, Runtime, EventHandle, Vec<Cancellation>) {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), config).await;
    let handle = runtime.directory().get(record.id).await.unwrap();
    for n in 1..=3 {
        handle.hold(hold(n, &[&seat(n as usize)])).await.unwrap();
    }
    stored_as(&store, rid(3), ReservationStatus::Held).await;
    store.close();
    let mut cancels = Vec::new();
    for n in 1..=3 {
        let handle = handle.clone();
        let caller = Caller { user: user(n), admin: false };
        cancels.push(tokio::spawn(async move {
            handle.cancel(CancelCmd { reservation: rid(n), caller, idempotency: None }).await
        }));
        settle().await;
    }
    (store, runtime, handle, cancels)
}

#[tokio::test(start_paused = true)]
async fn a_reply_parked_for_its_commit_takes_no_in_flight_slot() {
    // Room for three messages in the mailbox (and three replies waiting for their commit).
    let config = ActorConfig { max_in_flight: 3, ..ActorConfig::default() };
    let (store, _runtime, handle, cancels) = cancel_three_while_the_store_stalls(config).await;
    assert!(cancels.iter().all(|c| !c.is_finished()), "no cancellation answers before its commit");
    assert_eq!(handle.in_flight(), 0, "parked replies are out of the mailbox");

    // So the actor still takes holds and reads (SPEC §5: they go on while PostgreSQL is
    // slow), instead of answering Busy because the three waiting cancellations hold every
    // slot.
    assert_eq!(handle.hold(hold(4, &[&seat(4)])).await.unwrap().status, ReservationStatus::Held);
    assert_eq!(handle.view().await.unwrap().counts.held, 1);

    store.open();
    for cancel in cancels {
        assert_eq!(cancel.await.unwrap().unwrap().status, ReservationStatus::Cancelled);
    }
}

#[tokio::test(start_paused = true)]
async fn replies_waiting_for_their_commit_are_bounded_and_the_one_past_the_bound_is_overloaded() {
    let config =
        ActorConfig { max_in_flight: 2, overload_retry_after: Duration::from_secs(7), ..ActorConfig::default() };
    let (store, _runtime, _handle, mut cancels) = cancel_three_while_the_store_stalls(config).await;
    // Two replies wait; the third is refused at once, not acknowledged.
    assert!(!cancels[0].is_finished() && !cancels[1].is_finished());
    let third = cancels.pop().unwrap().await.unwrap();
    assert_eq!(third, Err(ActorError::Overloaded { retry_after: Duration::from_secs(7) }));

    // What it decided still commits with the others once the store is back.
    store.open();
    for cancel in cancels {
        assert_eq!(cancel.await.unwrap().unwrap().status, ReservationStatus::Cancelled);
    }
    stored_as(&store, rid(3), ReservationStatus::Cancelled).await;
}

#[tokio::test(start_paused = true)]
async fn holds_are_refused_as_overloaded_while_the_write_backlog_is_full_and_reads_still_answer() {
    let store = GatedStore::new();
    let record = on_sale();
    let journal = JournalConfig { capacity: 2, ..JournalConfig::default() };
    let config = ActorConfig { overload_retry_after: Duration::from_secs(5), ..ActorConfig::default() };
    let runtime = start(store.clone(), record.clone(), journal, config).await;
    let handle = runtime.directory().get(record.id).await.unwrap();
    store.close();

    let mut acknowledged = Vec::new();
    let mut next = 0;
    let refusal = loop {
        match handle.hold(hold(next as u128, &[&seat(next)])).await {
            Ok(r) => acknowledged.push(r.id),
            Err(e) => break e,
        }
        next += 1;
        assert!(next < 40, "never overloaded");
    };
    assert_eq!(refusal, ActorError::Overloaded { retry_after: Duration::from_secs(5) });
    // One batch inside the store's append, plus a full channel of two.
    assert_eq!(acknowledged.len(), 3);
    let view = handle.view().await.unwrap();
    assert_eq!(view.counts.held, 3);
    assert_eq!(seat_status(&handle, &seat(next)).await, SeatStatus::Available);

    store.open();
    let mut retried = 0;
    let after = loop {
        match handle.hold(hold(next as u128, &[&seat(next)])).await {
            Ok(r) => break r,
            Err(ActorError::Overloaded { .. }) => {
                retried += 1;
                assert!(retried < 1_000, "the backlog never drained");
                tokio::task::yield_now().await;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    };
    acknowledged.push(after.id);
    for id in acknowledged {
        stored_as(&store, id, ReservationStatus::Held).await;
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_once_the_store_has_every_acknowledged_hold() {
    let store = GatedStore::new();
    let record = on_sale();
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let handle = runtime.directory().get(record.id).await.unwrap();
    store.close();
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(handle.hold(hold(n as u128, &[&seat(n)])).await.unwrap().id);
    }

    let shutdown = tokio::spawn(runtime.shutdown());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!shutdown.is_finished());
    assert_eq!(store.reservation(acknowledged[4]).await.unwrap(), None);

    store.open();
    shutdown.await.unwrap();
    for id in acknowledged {
        // No polling: shutdown returned after the commit.
        let stored = store.reservation(id).await.unwrap().expect("hold is in the store");
        assert_eq!(stored.status, ReservationStatus::Held);
    }
}

#[tokio::test(start_paused = true)]
async fn the_admission_queue_survives_a_restart_of_the_events_actor() {
    let store = GatedStore::new();
    let mut record = on_sale();
    record.queue = QueueSettings { enabled: true, rate_per_second: 0, max_active: 2, ..QueueSettings::default() };
    let runtime = start(store.clone(), record.clone(), JournalConfig::default(), ActorConfig::default()).await;
    let directory = runtime.directory();
    let first = directory.get(record.id).await.unwrap();
    let mut before = Vec::new();
    for n in 1..=5 {
        before.push(first.join_queue(user(n)).await.unwrap());
    }
    // Two admitted (the cap), three waiting in order.
    assert!(matches!(before[1], QueueStanding::Admitted { .. }), "{before:?}");
    assert_eq!(before[4], first.queue_status(user(5)).await.unwrap());
    assert!(matches!(before[4], QueueStanding::Waiting { position: Some(3), .. }), "{before:?}");
    directory.journal().flushed().await;

    directory.evict(record.id).await;
    let second = directory.get(record.id).await.unwrap();
    assert_ne!(second.actor_id(), first.actor_id());
    for n in 1..=5 {
        let after = second.queue_status(user(n)).await.unwrap();
        assert_eq!(place(after), place(before[n as usize - 1]), "buyer {n}");
    }
    let view = second.queue_view().await.unwrap();
    assert_eq!((view.waiting, view.active), (3, 2));

    // The restored queue moves on: the first admitted buyer leaves, the next goes in.
    second.leave_queue(user(1)).await.unwrap();
    advance(Duration::from_millis(100)).await;
    assert!(matches!(second.queue_status(user(3)).await.unwrap(), QueueStanding::Admitted { .. }));
}

/// A standing without its wait estimate: positions and admissions survive a restart, while
/// the estimate starts again from the restored actor's own observations.
fn place(standing: QueueStanding) -> QueueStanding {
    match standing {
        QueueStanding::Waiting { position, .. } => QueueStanding::Waiting { position, estimated_wait: None },
        other => other,
    }
}

/// `record` with its own id, so two events can live in one store.
fn another(mut record: EventRecord, n: u128) -> EventRecord {
    record.id = EventId(Uuid::from_u128(n));
    record
}

#[tokio::test(start_paused = true)]
async fn idle_actors_are_passivated_unless_pinned_and_the_live_cap_takes_the_longest_idle() {
    let store = GatedStore::new();
    let selling = on_sale();
    let ended = another(event_record(at(-7200), at(-3600), HOUR), 2);
    let upcoming = another(event_record(at(3600), at(7200), HOUR), 3);
    let config = ActorConfig { idle_timeout: Duration::from_secs(60), max_live: 10, ..ActorConfig::default() };
    let runtime = start(store.clone(), selling.clone(), JournalConfig::default(), config).await;
    store.create_event(ended.clone()).await.unwrap();
    store.create_event(upcoming.clone()).await.unwrap();
    let directory = runtime.directory();
    for event in [selling.id, ended.id, upcoming.id] {
        directory.get(event).await.unwrap();
    }

    advance(Duration::from_secs(30)).await;
    directory.sweep().await;
    assert_eq!(directory.live_events().len(), 3, "nobody is idle long enough yet");
    // Inspection is not use: it does not keep an actor awake.
    directory.live(ended.id).unwrap().inspect().await.unwrap();
    advance(Duration::from_secs(31)).await;
    directory.sweep().await;
    assert!(directory.live(ended.id).is_none() && directory.live(upcoming.id).is_none(), "idle events leave memory");
    let info = directory.live(selling.id).expect("an event on sale stays").inspect().await.unwrap();
    assert_eq!(info.pinned, Some("on_sale"));
}

#[tokio::test(start_paused = true)]
async fn past_the_live_cap_the_longest_idle_unpinned_actor_goes_first() {
    let store = GatedStore::new();
    let selling = on_sale();
    let ended = another(event_record(at(-7200), at(-3600), HOUR), 2);
    let upcoming = another(event_record(at(3600), at(7200), HOUR), 3);
    let config = ActorConfig { idle_timeout: HOUR, max_live: 2, ..ActorConfig::default() };
    let runtime = start(store.clone(), selling.clone(), JournalConfig::default(), config).await;
    store.create_event(ended.clone()).await.unwrap();
    store.create_event(upcoming.clone()).await.unwrap();
    let directory = runtime.directory();
    directory.get(selling.id).await.unwrap();
    let oldest = directory.get(ended.id).await.unwrap();
    advance(Duration::from_secs(5)).await;
    directory.get(upcoming.id).await.unwrap();
    assert_eq!(oldest.inspect().await.unwrap().idle, Duration::from_secs(5));

    directory.sweep().await;
    assert!(directory.live(ended.id).is_none(), "the longest idle went, though not idle for an hour");
    assert!(directory.live(upcoming.id).is_some() && directory.live(selling.id).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_operator_passivates_events_with_holds_or_a_queue_and_they_come_back_the_same() {
    let store = GatedStore::new();
    // Sells for ten more seconds; holds last an hour, so they outlive the sale.
    let closing = event_record(at(-60), at(10), HOUR);
    let mut queued = another(event_record(at(3600), at(7200), HOUR), 2);
    queued.queue = QueueSettings { enabled: true, ..QueueSettings::default() };
    let runtime = start(store.clone(), closing.clone(), JournalConfig::default(), ActorConfig::default()).await;
    store.create_event(queued.clone()).await.unwrap();
    let directory = runtime.directory();

    let first = directory.get(closing.id).await.unwrap();
    two_holds_committed(&store, &first).await;
    first.set_blocked(vec!["S1-D-10".into()], true).await.unwrap();
    assert_eq!(directory.passivate(closing.id, true).await, Err(ActorError::Pinned("on_sale")));
    advance(Duration::from_secs(11)).await;
    // The sale-end timer fires on its own task; let its tick reach the actor.
    while first.view().await.unwrap().status != EventStatus::Ended {
        advance(Duration::from_millis(1)).await;
    }
    let before = (first.seats().await.unwrap(), first.reservation(rid(1)).await.unwrap());
    // Idle passivation leaves an event with holds alone; the operator may passivate it.
    assert_eq!(directory.passivate(closing.id, false).await, Err(ActorError::Pinned("live_holds")));
    assert_eq!(directory.passivate(closing.id, true).await, Ok(true));
    assert!(directory.live(closing.id).is_none());
    let second = directory.get(closing.id).await.unwrap();
    assert_ne!(second.actor_id(), first.actor_id());
    let after = (second.seats().await.unwrap(), second.reservation(rid(1)).await.unwrap());
    assert_eq!((after.0.seq, &after.0.statuses), (before.0.seq, &before.0.statuses));
    assert_eq!(after.1, before.1, "the hold is back with its expiry");

    // A pre-queue comes back with its members, and draws the same order at opening.
    let first = directory.get(queued.id).await.unwrap();
    for n in 1..=4 {
        first.join_queue(user(n)).await.unwrap();
    }
    assert_eq!(directory.passivate(queued.id, false).await, Err(ActorError::Pinned("queue")));
    assert_eq!(directory.passivate(queued.id, true).await, Ok(true));
    let second = directory.get(queued.id).await.unwrap();
    let view = second.queue_view().await.unwrap();
    assert_eq!((view.waiting, view.pre_queue), (4, 4));
    assert_eq!(
        second.queue_status(user(3)).await.unwrap(),
        QueueStanding::Waiting { position: None, estimated_wait: view_wait(&second).await }
    );
}

/// The wait a pre-queue member is quoted: the time until sale start.
async fn view_wait(handle: &EventHandle) -> Option<Duration> {
    match handle.queue_status(user(1)).await.unwrap() {
        QueueStanding::Waiting { estimated_wait, .. } => estimated_wait,
        other => panic!("{other:?}"),
    }
}
