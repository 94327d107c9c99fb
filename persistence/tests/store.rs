//! The store contract, run against the embedded store and against a real PostgreSQL (a
//! fresh database per test in a throwaway cluster).

use std::sync::Arc;
use std::time::Duration;
use tiketi_engine::{
    ChangeSet, EventEngine, EventId, EventStatus, HoldRequest, LayoutSpec, Persisted, QueueSettings, ReservationId,
    ReservationStatus, SeatMap, SeatStatus, Selection, TicketTypeId, TicketTypeSpec, Timestamp, UserId,
};
use tiketi_persistence::{
    EventFilter, EventRecord, IdempotencyRecord, JournalEntry, MemoryStore, NewUser, PgStore, Role, Store, StoreError,
    StoredOutcome,
};
use uuid::Uuid;

const T0: Timestamp = Timestamp(1_767_225_600_000); // 2026-01-01

async fn postgres() -> Arc<dyn Store> {
    let store = PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn user(store: &dyn Store, email: &str) -> UserId {
    let new =
        NewUser { email: email.into(), password_hash: "x".into(), name: "N".into(), role: Role::User, created_at: T0 };
    store.create_user(new).await.unwrap().id
}

fn event_record(seats: LayoutSpec, general: u32) -> EventRecord {
    EventRecord {
        id: EventId(Uuid::new_v4()),
        title: "Concert".into(),
        description: String::new(),
        venue: "Hall".into(),
        artist: "Band".into(),
        event_date: T0.plus(Duration::from_secs(86_400 * 30)),
        sale_start: T0,
        sale_end: T0.plus(Duration::from_secs(86_400)),
        layout: Some(seats),
        layout_id: None,
        ticket_types: (general > 0)
            .then(|| TicketTypeSpec {
                id: TicketTypeId(Uuid::new_v4()),
                name: "GA".into(),
                price: 10,
                capacity: general,
            })
            .into_iter()
            .collect(),
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

fn engine_for(record: &EventRecord) -> EventEngine {
    let rules = record.rules();
    let map = SeatMap::new(record.layout.as_ref().unwrap()).unwrap();
    EventEngine::new(record.id, rules, map, record.ticket_types.clone(), T0)
}

fn entry(event: EventId, changes: ChangeSet) -> JournalEntry {
    JournalEntry { event, fence: None, changes, idempotency: Vec::new(), event_record: None, audit: Vec::new() }
}

fn hold(engine: &mut EventEngine, user: UserId, selection: Selection, now: Timestamp) -> (ReservationId, ChangeSet) {
    let id = ReservationId(Uuid::new_v4());
    (id, engine.hold(HoldRequest { id, user, selection, admitted: false }, now).unwrap())
}

/// A batch that holds, cancels and re-holds the same seat, confirms, holds GA, blocks a seat
/// and stores an idempotency record reloads into an identical engine.
async fn a_journal_batch_reloads_into_the_same_state(store: Arc<dyn Store>) {
    let buyer = user(&*store, "a@example.com").await;
    let other = user(&*store, "b@example.com").await;
    let record = event_record(LayoutSpec::grid(2, 2, 5, 100), 10);
    store.create_event(record.clone()).await.unwrap();
    let mut engine = engine_for(&record);
    let seat = |id: &str| engine_for(&record).resolve_seats(&[id]).unwrap();
    let now = T0.plus(Duration::from_secs(1));

    let mut batch = Vec::new();
    let (first, cs) = hold(&mut engine, buyer, Selection::Seats(seat("S1-A-1")), now);
    batch.push(entry(record.id, cs));
    batch.push(entry(record.id, engine.cancel(first, now).unwrap()));
    // The same seat, held again by someone else in the same batch.
    let (second, cs) = hold(&mut engine, other, Selection::Seats(seat("S1-A-1")), now);
    let idem = IdempotencyRecord {
        user: other,
        key: "k1".into(),
        fingerprint: "f".into(),
        event: record.id,
        seq: cs.seq,
        outcome: StoredOutcome::Reservation(Box::new(engine.reservation(second).unwrap().clone())),
        created_at: now,
    };
    batch.push(JournalEntry { idempotency: vec![idem.clone()], ..entry(record.id, cs) });
    let (sold, cs) =
        hold(&mut engine, buyer, Selection::BestAvailable { quantity: 3, section: None, adjacent: true }, now);
    batch.push(entry(record.id, cs));
    batch.push(entry(record.id, engine.confirm(sold, now).unwrap().unwrap()));
    let ga = record.ticket_types[0].id;
    let (_, cs) = hold(&mut engine, buyer, Selection::General { ticket_type: ga, quantity: 4 }, now);
    batch.push(entry(record.id, cs));
    batch.push(entry(record.id, engine.block(&seat("S2-B-5"), now).unwrap().unwrap()));
    store.append(&batch).await.unwrap();

    let snap = store.load_event(record.id).await.unwrap().unwrap();
    assert_eq!(snap.seq, engine.seq());
    assert_eq!(snap.serial, engine.serial());
    let persisted = Persisted {
        blocked: snap.blocked,
        live: snap.live,
        seq: snap.seq,
        serial: snap.serial,
        status: snap.event.status,
        ..Persisted::default()
    };
    let (restored, changed) = EventEngine::restore(
        record.id,
        engine.rules().clone(),
        SeatMap::new(record.layout.as_ref().unwrap()).unwrap(),
        record.ticket_types.clone(),
        persisted,
        now,
    );
    assert_eq!(changed, None);
    assert_eq!(restored.counts(), engine.counts());
    assert_eq!(restored.ticket_types(), engine.ticket_types());
    for i in 0..engine.seats().len() {
        let s = tiketi_engine::SeatIndex(i);
        assert_eq!(restored.seats().status(s), engine.seats().status(s), "seat {}", engine.seats().seat_id(s));
    }
    assert_eq!(store.reservation(first).await.unwrap().unwrap().status, ReservationStatus::Cancelled);
    assert_eq!(store.reservation(sold).await.unwrap().unwrap().status, ReservationStatus::Confirmed);
    assert_eq!(store.idempotency(other, "k1").await.unwrap(), Some(idem));
    // The batched lookups: a stored key, the same key of another user, an unknown key.
    let asked = [(other, "k1".to_owned()), (buyer, "k1".to_owned()), (other, "k2".to_owned())];
    assert_eq!(store.idempotency_fingerprints(&asked).await.unwrap(), vec![((other, "k1".to_owned()), "f".to_owned())]);
    let mut found = store.existing_users(&[buyer, UserId(uuid::Uuid::new_v4()), other]).await.unwrap();
    found.sort_by_key(|u| u.uuid());
    let mut expected = vec![buyer, other];
    expected.sort_by_key(|u| u.uuid());
    assert_eq!(found, expected);
    assert_eq!(store.reservations_of(buyer).await.unwrap().len(), 3);
    assert_eq!(restored.seats().status(seat("S2-B-5")[0]), SeatStatus::Blocked);
}

/// Events are listed by status as of `now`, searched and paginated.
async fn events_are_filtered_searched_and_paginated(store: Arc<dyn Store>) {
    for title in ["Alpha Tour", "Beta Night", "Gamma Live"] {
        let mut r = event_record(LayoutSpec::grid(1, 1, 2, 10), 0);
        r.title = title.into();
        store.create_event(r).await.unwrap();
    }
    let now = T0.plus(Duration::from_secs(10));
    let page = |query: Option<&str>, status, page, limit| EventFilter {
        status,
        query: query.map(str::to_owned),
        page,
        limit,
        now,
    };
    assert_eq!(store.list_events(&page(None, None, 1, 2)).await.unwrap().items.len(), 2);
    let last = store.list_events(&page(None, None, 2, 2)).await.unwrap();
    assert_eq!((last.items.len(), last.total), (1, 3));
    let found = store.list_events(&page(Some("beta"), None, 1, 10)).await.unwrap();
    assert_eq!(found.items.iter().map(|e| e.title.as_str()).collect::<Vec<_>>(), ["Beta Night"]);
    assert_eq!(store.list_events(&page(None, Some(EventStatus::OnSale), 1, 10)).await.unwrap().total, 3);
    assert_eq!(store.list_events(&page(None, Some(EventStatus::Upcoming), 1, 10)).await.unwrap().total, 0);
    let beyond = store.list_events(&page(None, None, 9, 2)).await.unwrap();
    assert_eq!((beyond.items.len(), beyond.total), (0, 3));
}

/// A journal entry for an event that does not exist is refused as a whole.
async fn a_batch_for_a_missing_event_is_refused(store: Arc<dyn Store>) {
    let record = event_record(LayoutSpec::grid(1, 1, 2, 10), 0);
    let mut engine = engine_for(&record);
    let buyer = user(&*store, "c@example.com").await;
    let seat = engine.resolve_seats(&["S1-A-1"]).unwrap();
    let (_, cs) = hold(&mut engine, buyer, Selection::Seats(seat), T0);
    let err = store.append(&[entry(record.id, cs)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_) | StoreError::NotFound), "{err:?}");
}

/// The admission queue reloads exactly: pre-queue members drawn at opening, FIFO joiners,
/// admissions within the batch that joined and in a later one, leavers, a leaver who
/// rejoins, settings and the seed.
async fn the_admission_queue_reloads_into_the_same_order(store: Arc<dyn Store>) {
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(user(&*store, &format!("q{i}@example.com")).await);
    }
    let mut record = event_record(LayoutSpec::grid(1, 2, 5, 100), 0);
    let opens = T0.plus(Duration::from_secs(60));
    record.sale_start = opens;
    record.status = EventStatus::Upcoming;
    record.queue = QueueSettings { enabled: true, rate_per_second: 2, max_active: 0, ..QueueSettings::default() };
    record.queue_seed = [42; 32];
    store.create_event(record.clone()).await.unwrap();
    let mut engine = engine_for(&record);
    let mut batches: Vec<Vec<JournalEntry>> = vec![Vec::new()];
    let push = |batches: &mut Vec<Vec<JournalEntry>>, cs: Option<ChangeSet>| {
        if let Some(cs) = cs {
            batches.last_mut().unwrap().push(entry(record.id, cs));
        }
    };
    // Five join the pre-queue; one leaves again.
    for &u in &users[..5] {
        push(&mut batches, engine.join_queue(u, T0).unwrap().1);
    }
    push(&mut batches, engine.leave_queue(users[4], T0));
    batches.push(Vec::new());
    // Opening: the draw, then admissions at two a second.
    let mut now = opens;
    push(&mut batches, engine.tick(now));
    now = now.plus(Duration::from_millis(600));
    push(&mut batches, engine.tick(now));
    batches.push(Vec::new());
    // Late joiners go to the back; the leaver rejoins behind them.
    for &u in &users[5..] {
        push(&mut batches, engine.join_queue(u, now).unwrap().1);
    }
    push(&mut batches, engine.join_queue(users[4], now).unwrap().1);
    now = now.plus(Duration::from_millis(600));
    push(&mut batches, engine.tick(now));
    for batch in batches.iter().filter(|b| !b.is_empty()) {
        store.append(batch).await.unwrap();
    }

    let snap = store.load_event(record.id).await.unwrap().unwrap();
    assert_eq!(snap.event.queue, record.queue);
    assert_eq!(snap.event.queue_seed, record.queue_seed);
    assert!(snap.queue_opened);
    let mut stored = snap.queue.clone();
    stored.sort_by_key(|m| m.user);
    let mut expected = engine.queue_members();
    expected.sort_by_key(|m| m.user);
    assert_eq!(stored, expected);
    assert!(expected.iter().any(|m| m.admitted_until.is_some()), "some were admitted");

    let persisted = Persisted {
        seq: snap.seq,
        serial: snap.serial,
        status: snap.event.status,
        queue: snap.queue,
        queue_opened: snap.queue_opened,
        ..Persisted::default()
    };
    let map = SeatMap::new(record.layout.as_ref().unwrap()).unwrap();
    let (restored, _) = EventEngine::restore(record.id, snap.event.rules(), map, Vec::new(), persisted, now);
    for &u in &users {
        assert_eq!(restored.queue_position(u), engine.queue_position(u), "position of {u}");
        assert_eq!(restored.queue_admission(u, now), engine.queue_admission(u, now), "admission of {u}");
    }
}

macro_rules! against_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test]
            async fn $name() { super::$name(super::memory()).await })*
        }
        mod postgres_store {
            $(#[tokio::test]
            async fn $name() { super::$name(super::postgres().await).await })*
        }
    };
}

/// Payment attempts in every state a batch can leave them in (a declined attempt and its
/// successor in flight in one batch, a done one, a refund in flight, an aborted one) reload
/// with their reservations; lookups by order, key and user, the unsettled list and the audit
/// trail answer from what was committed.
async fn payments_and_audit_reload_with_their_reservations(store: Arc<dyn Store>) {
    use tiketi_engine::{CaptureOutcome, PaymentFailure, PaymentStatus};
    use tiketi_persistence::AuditRecord;
    let buyer = user(&*store, "pay@example.com").await;
    let admin = user(&*store, "admin@example.com").await;
    let record = event_record(LayoutSpec::grid(1, 1, 6, 100), 0);
    store.create_event(record.clone()).await.unwrap();
    let mut engine = engine_for(&record);
    let seat = |id: &str| engine_for(&record).resolve_seats(&[id]).unwrap();
    let now = T0.plus(Duration::from_secs(1));
    let captured = || CaptureOutcome::Captured { approved_at: now, method: Some("card".into()) };

    let mut batch = Vec::new();
    let step = |batch: &mut Vec<JournalEntry>, cs: Option<ChangeSet>| batch.push(entry(record.id, cs.unwrap()));
    // 1: declined, then a second attempt in flight (same batch).
    let (r1, cs) = hold(&mut engine, buyer, Selection::Seats(seat("S1-A-1")), now);
    step(&mut batch, Some(cs));
    let (p1, cs) = engine.prepare(r1, now).unwrap();
    step(&mut batch, cs);
    let (_, start) = engine.begin_confirm(&p1.order_id, "key-1a", p1.amount, now).unwrap();
    let tiketi_engine::ConfirmStart::Started(cs) = start else { panic!("started") };
    step(&mut batch, Some(cs));
    let failure = PaymentFailure { code: "REJECT_CARD_PAYMENT".into(), message: "no".into() };
    let (_, finish) = engine.finish_confirm(&p1.order_id, "key-1a", CaptureOutcome::Declined(failure.clone()), now);
    let tiketi_engine::ConfirmFinish::Declined(cs) = finish else { panic!("declined") };
    step(&mut batch, Some(cs));
    let (p1b, cs) = engine.prepare(r1, now).unwrap();
    step(&mut batch, cs);
    let (_, start) = engine.begin_confirm(&p1b.order_id, "key-1b", p1b.amount, now).unwrap();
    let tiketi_engine::ConfirmStart::Started(cs) = start else { panic!("started") };
    step(&mut batch, Some(cs));
    // 2: paid, then a refund in flight.
    let (r2, cs) = hold(&mut engine, buyer, Selection::Seats(seat("S1-A-2")), now);
    step(&mut batch, Some(cs));
    let (p2, cs) = engine.prepare(r2, now).unwrap();
    step(&mut batch, cs);
    let (_, start) = engine.begin_confirm(&p2.order_id, "key-2", p2.amount, now).unwrap();
    let tiketi_engine::ConfirmStart::Started(cs) = start else { panic!("started") };
    step(&mut batch, Some(cs));
    let (_, finish) = engine.finish_confirm(&p2.order_id, "key-2", captured(), now);
    let tiketi_engine::ConfirmFinish::Confirmed(cs) = finish else { panic!("confirmed") };
    step(&mut batch, Some(cs));
    let (_, refund) = engine.begin_refund(r2, now).unwrap();
    let tiketi_engine::RefundStart::Started(cs) = refund else { panic!("refund started") };
    let audit = AuditRecord {
        reservation: r2,
        event: record.id,
        admin,
        from: ReservationStatus::Confirmed,
        to: ReservationStatus::Cancelled,
        reason: "double booking at the box office".into(),
        at: now,
    };
    batch.push(JournalEntry { audit: vec![audit.clone()], ..entry(record.id, cs) });
    // 3: prepared, then cancelled: aborted.
    let (r3, cs) = hold(&mut engine, buyer, Selection::Seats(seat("S1-A-3")), now);
    step(&mut batch, Some(cs));
    let (p3, cs) = engine.prepare(r3, now).unwrap();
    step(&mut batch, cs);
    step(&mut batch, Some(engine.cancel(r3, now).unwrap()));
    store.append(&batch).await.unwrap();

    let snapshot = store.load_event(record.id).await.unwrap().unwrap();
    let mut loaded = snapshot.payments.clone();
    loaded.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let mut expected: Vec<_> = [r1, r2].iter().map(|r| engine.payment(*r).unwrap().clone()).collect();
    expected.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(loaded, expected, "the latest attempt of each live reservation");
    let mut statuses: Vec<&str> = loaded.iter().map(|p| p.status.as_str()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [PaymentStatus::Cancelling.as_str(), PaymentStatus::InProgress.as_str()]);

    let first = store.payment(&p1.order_id).await.unwrap().unwrap();
    assert_eq!((first.status, first.failure), (PaymentStatus::Failed, Some(failure)));
    assert_eq!(store.payment(&p3.order_id).await.unwrap().unwrap().status, PaymentStatus::Aborted);
    let by_key: Vec<String> = store.payments_by_key("key-2").await.unwrap().into_iter().map(|p| p.order_id).collect();
    assert_eq!(by_key, std::slice::from_ref(&p2.order_id));
    assert_eq!(store.payments_by_key("no-such-key").await.unwrap(), vec![]);
    let mine: Vec<String> = store.payments_of(buyer).await.unwrap().into_iter().map(|p| p.order_id).collect();
    assert_eq!(mine.len(), 4);
    assert!([&p1.order_id, &p1b.order_id, &p2.order_id, &p3.order_id].iter().all(|o| mine.contains(o)));
    assert_eq!(store.unsettled_payment_events(now).await.unwrap(), vec![record.id]);
    assert_eq!(store.audit_of(r2).await.unwrap(), vec![audit]);
    // A decline the provider made itself is final: nothing to watch for a late capture.
    assert_eq!(snapshot.uncaptured, vec![]);

    // The admin's list: filters, newest first (same instant: highest serial first), pages.
    use tiketi_persistence::ReservationFilter;
    let find = |filter: ReservationFilter| {
        let store = store.clone();
        async move {
            let page = store.find_reservations(&ReservationFilter { limit: 10, ..filter }).await.unwrap();
            (page.total, page.items.iter().map(|r| r.id).collect::<Vec<_>>())
        }
    };
    assert_eq!(find(ReservationFilter::default()).await, (3, vec![r3, r2, r1]));
    let held = ReservationFilter { status: Some(ReservationStatus::Held), ..Default::default() };
    assert_eq!(find(held).await, (1, vec![r1]));
    let mine = ReservationFilter { user: Some(buyer), event: Some(record.id), ..Default::default() };
    assert_eq!(find(mine).await, (3, vec![r3, r2, r1]));
    let nobody = ReservationFilter { user: Some(admin), ..Default::default() };
    assert_eq!(find(nobody).await, (0, vec![]));
    let page2 = store.find_reservations(&ReservationFilter { page: 2, limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!((page2.total, page2.items.iter().map(|r| r.id).collect::<Vec<_>>()), (3, vec![r1]));
    assert_eq!(store.audit_of(r1).await.unwrap(), vec![]);

    // The engine rebuilt from the snapshot has the same payments, pinned as they were.
    let map = SeatMap::new(record.layout.as_ref().unwrap()).unwrap();
    let persisted = Persisted {
        live: snapshot.live,
        seq: snapshot.seq,
        serial: snapshot.serial,
        status: snapshot.event.status,
        payments: snapshot.payments,
        ..Persisted::default()
    };
    let (restored, changed) = EventEngine::restore(record.id, record.rules(), map, Vec::new(), persisted, now);
    assert_eq!(changed, None);
    assert_eq!(restored.unsettled_payments().count(), 2);
    assert_eq!(restored.payment(r2), engine.payment(r2));
}

/// Captures that landed after their attempt was declined are owed back: the debts reload
/// with the event (and name it among those to reconcile) until each is refunded, including
/// one owed and refunded within a single batch.
async fn captures_owed_back_reload_until_refunded(store: Arc<dyn Store>) {
    use tiketi_engine::{CaptureOutcome, ConfirmFinish, ConfirmStart, OwedRefund, PaymentFailure};
    let buyer = user(&*store, "owed@example.com").await;
    let record = event_record(LayoutSpec::grid(1, 1, 6, 100), 0);
    store.create_event(record.clone()).await.unwrap();
    let mut engine = engine_for(&record);
    let now = T0.plus(Duration::from_secs(1));
    let failure = PaymentFailure { code: "NOT_CAPTURED".into(), message: "no capture in time".into() };
    // Holds a seat, pays under `key`, is declined, then the capture lands after all.
    let orphan = |engine: &mut EventEngine, seat: &str, key: &str| {
        let seats = engine.resolve_seats(&[seat]).unwrap();
        let (r, cs) = hold(engine, buyer, Selection::Seats(seats), now);
        let mut sets = vec![cs];
        let (p, cs) = engine.prepare(r, now).unwrap();
        sets.extend(cs);
        let (_, ConfirmStart::Started(cs)) = engine.begin_confirm(&p.order_id, key, p.amount, now).unwrap() else {
            panic!("started")
        };
        sets.push(cs);
        let (_, ConfirmFinish::Declined(cs)) =
            engine.finish_confirm(&p.order_id, key, CaptureOutcome::Declined(failure.clone()), now)
        else {
            panic!("declined")
        };
        sets.push(cs);
        let captured = CaptureOutcome::Captured { approved_at: now, method: None };
        let (_, ConfirmFinish::Orphaned(cs)) = engine.finish_confirm(&p.order_id, key, captured, now) else {
            panic!("owed back")
        };
        sets.push(cs);
        sets.into_iter().map(|cs| entry(record.id, cs)).collect::<Vec<_>>()
    };
    let owed_now = |engine: &EventEngine| {
        let mut owed: Vec<OwedRefund> = engine.owed_refunds().cloned().collect();
        owed.sort_by(|a, b| a.payment_key.cmp(&b.payment_key));
        owed
    };
    let reloaded = |store: Arc<dyn Store>| async move {
        let mut owed = store.load_event(record.id).await.unwrap().unwrap().owed_refunds;
        owed.sort_by(|a, b| a.payment_key.cmp(&b.payment_key));
        owed
    };

    let mut batch = orphan(&mut engine, "S1-A-1", "key-a");
    let key_a_owed = batch.last().unwrap().clone();
    batch.extend(orphan(&mut engine, "S1-A-2", "key-b"));
    store.append(&batch).await.unwrap();
    assert_eq!(owed_now(&engine).len(), 2);
    assert_eq!(reloaded(store.clone()).await, owed_now(&engine));
    assert_eq!(store.unsettled_payment_events(now).await.unwrap(), vec![record.id], "owed back: to reconcile");

    // One refunded; another owed and refunded in the same batch.
    let later = now.plus(Duration::from_secs(5));
    let mut batch = vec![entry(record.id, engine.refund_paid("key-a", later, later).unwrap())];
    batch.extend(orphan(&mut engine, "S1-A-3", "key-c"));
    batch.push(entry(record.id, engine.refund_paid("key-c", later, later).unwrap()));
    store.append(&batch).await.unwrap();
    let left = owed_now(&engine);
    assert_eq!(left.iter().map(|o| o.payment_key.as_str()).collect::<Vec<_>>(), ["key-b"]);
    assert_eq!(reloaded(store.clone()).await, left);
    // The debt's record written again (a batch retried after an unknown commit outcome)
    // does not make a refunded capture owed again.
    store.append(&[key_a_owed]).await.unwrap();
    assert_eq!(reloaded(store.clone()).await, left);

    store.append(&[entry(record.id, engine.refund_paid("key-b", later, later).unwrap())]).await.unwrap();
    assert_eq!(reloaded(store.clone()).await, vec![]);
    // One the provider would not refund, settled by hand: no longer owed either.
    let mut batch = orphan(&mut engine, "S1-A-4", "key-d");
    assert_eq!(reloaded(store.clone()).await, vec![], "not appended yet");
    let by = tiketi_engine::SettledByHand { admin: buyer, reason: "refunded by bank transfer".into() };
    batch.push(entry(record.id, engine.settle_owed("key-d", by, later).unwrap().1));
    store.append(&batch).await.unwrap();
    assert_eq!(reloaded(store.clone()).await, vec![]);
    // Every decline here was found captured: none is to watch for a capture again, not even
    // the one settled by hand (the provider still shows it captured).
    assert_eq!(store.load_event(record.id).await.unwrap().unwrap().uncaptured, vec![]);
    // Nothing owed: the event is still named while its declines are recent enough to
    // watch for another late capture, and not once they are older than that.
    assert_eq!(store.unsettled_payment_events(now).await.unwrap(), vec![record.id], "declined since `now`");
    assert_eq!(store.unsettled_payment_events(later).await.unwrap(), vec![], "nothing declined since");
}

/// Attempts declined for want of a capture (`NOT_CAPTURED`) reload with the event, whatever
/// became of their reservations since (another attempt, an expiry), oldest decline first,
/// and name their event among those to reconcile while recent: a capture may still land.
async fn declines_for_want_of_a_capture_reload_to_be_watched(store: Arc<dyn Store>) {
    use tiketi_engine::{CaptureOutcome, ConfirmFinish, ConfirmStart, NOT_CAPTURED, PaymentFailure, PaymentStatus};
    let buyer = user(&*store, "uncaptured@example.com").await;
    let record = event_record(LayoutSpec::grid(1, 1, 6, 100), 0);
    store.create_event(record.clone()).await.unwrap();
    let mut engine = engine_for(&record);
    let not_captured = PaymentFailure { code: NOT_CAPTURED.into(), message: "no capture in time".into() };
    let refused = PaymentFailure { code: "REJECT_CARD_PAYMENT".into(), message: "no".into() };
    // Holds a seat at `at` and has its first attempt declined with `failure`.
    let declined = |engine: &mut EventEngine, seat: &str, key: &str, failure: &PaymentFailure, at: Timestamp| {
        let seats = engine.resolve_seats(&[seat]).unwrap();
        let (r, cs) = hold(engine, buyer, Selection::Seats(seats), at);
        let mut batch = vec![entry(record.id, cs)];
        let (p, cs) = engine.prepare(r, at).unwrap();
        batch.extend(cs.map(|cs| entry(record.id, cs)));
        let (_, ConfirmStart::Started(cs)) = engine.begin_confirm(&p.order_id, key, p.amount, at).unwrap() else {
            panic!("started")
        };
        batch.push(entry(record.id, cs));
        let (_, ConfirmFinish::Declined(cs)) =
            engine.finish_confirm(&p.order_id, key, CaptureOutcome::Declined(failure.clone()), at)
        else {
            panic!("declined")
        };
        batch.push(entry(record.id, cs));
        (r, p.order_id, batch)
    };
    let (t1, t2, t3) =
        (T0.plus(Duration::from_secs(1)), T0.plus(Duration::from_secs(2)), T0.plus(Duration::from_secs(3)));
    // The first is declined, and its buyer prepares another attempt.
    let (r1, first, mut batch) = declined(&mut engine, "S1-A-1", "key-late-1", &not_captured, t1);
    let (_, cs) = engine.prepare(r1, t2).unwrap();
    batch.extend(cs.map(|cs| entry(record.id, cs)));
    // The second is declined, then its buyer cancels: the attempt is aborted, its failure kept.
    let (r2, second, more) = declined(&mut engine, "S1-A-2", "key-late-2", &not_captured, t2);
    batch.extend(more);
    batch.push(entry(record.id, engine.cancel(r2, t3).unwrap()));
    // The provider refused the third itself.
    let (_, _, more) = declined(&mut engine, "S1-A-3", "key-refused", &refused, t2);
    batch.extend(more);
    store.append(&batch).await.unwrap();

    let snapshot = store.load_event(record.id).await.unwrap().unwrap();
    let watched: Vec<(&str, PaymentStatus, Option<&str>, Timestamp)> = snapshot
        .uncaptured
        .iter()
        .map(|p| (p.order_id.as_str(), p.status, p.payment_key.as_deref(), p.updated_at))
        .collect();
    assert_eq!(
        watched,
        [
            (first.as_str(), PaymentStatus::Failed, Some("key-late-1"), t1),
            (second.as_str(), PaymentStatus::Aborted, Some("key-late-2"), t3),
        ],
        "oldest last change first"
    );
    assert!(snapshot.uncaptured.iter().all(|p| p.failure.as_ref() == Some(&not_captured)));
    assert_eq!(store.unsettled_payment_events(t3).await.unwrap(), vec![record.id]);
    let after = t3.plus(Duration::from_millis(1));
    assert_eq!(store.unsettled_payment_events(after).await.unwrap(), vec![], "older than the watch");
}

against_both_stores!(
    a_journal_batch_reloads_into_the_same_state,
    declines_for_want_of_a_capture_reload_to_be_watched,
    payments_and_audit_reload_with_their_reservations,
    events_are_filtered_searched_and_paginated,
    a_batch_for_a_missing_event_is_refused,
    the_admission_queue_reloads_into_the_same_order,
    captures_owed_back_reload_until_refunded,
);

#[tokio::test]
async fn postgres_itself_refuses_a_seat_in_two_live_reservations() {
    let store = postgres().await;
    let a = user(&*store, "d@example.com").await;
    let b = user(&*store, "e@example.com").await;
    let record = event_record(LayoutSpec::grid(1, 1, 2, 10), 0);
    store.create_event(record.clone()).await.unwrap();
    // Two engines that disagree (as two pods without fencing would): both hold S1-A-1.
    let mut one = engine_for(&record);
    let rules = one.rules().clone();
    let map = SeatMap::new(record.layout.as_ref().unwrap()).unwrap();
    let apart = Persisted { serial: 10, status: EventStatus::OnSale, ..Persisted::default() };
    let (mut two, _) = EventEngine::restore(record.id, rules, map, Vec::new(), apart, T0);
    let seat = one.resolve_seats(&["S1-A-1"]).unwrap();
    let (_, first) = hold(&mut one, a, Selection::Seats(seat.clone()), T0);
    let (_, second) = hold(&mut two, b, Selection::Seats(seat), T0);
    store.append(&[entry(record.id, first)]).await.unwrap();
    let err = store.append(&[entry(record.id, second)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("one_live_reservation_per_seat")), "{err:?}");
}

#[tokio::test]
async fn migrations_are_applied_once() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let files =
        std::fs::read_dir(dir).unwrap().filter(|f| f.as_ref().unwrap().path().extension() == Some("sql".as_ref()));
    let store = PgStore::connect(&tiketi_testkit::fresh_database().await, 2).unwrap();
    assert_eq!(store.migrate().await.unwrap().len(), files.count(), "every file in migrations/");
    assert!(store.migrate().await.unwrap().is_empty());
}

/// Two nodes and one shard, on the database clock: a live lease keeps the shard from the
/// other node, a lapsed one lets it take the shard at the next epoch, and the first node's
/// renewal then fails (it learns it lost the shard).
#[tokio::test]
async fn a_shard_is_taken_only_when_free_and_every_take_raises_its_epoch() {
    let store = PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    store.migrate().await.unwrap();
    let lease = Duration::from_millis(300);
    store.join_cluster("a", "http://a", lease).await.unwrap();
    store.join_cluster("b", "http://b", lease).await.unwrap();
    let twin = store.join_cluster("a", "http://a-twin", lease).await;
    assert!(matches!(twin, Err(StoreError::Conflict(_))), "a second live process with one id: {twin:?}");
    assert_eq!(store.acquire_shards("a", &[7, 8], lease).await.unwrap(), vec![(7, 1), (8, 1)]);
    assert!(store.acquire_shards("b", &[7], lease).await.unwrap().is_empty(), "a live lease is not taken");
    let beat = store.heartbeat("a", &[(7, 1), (8, 1)], lease, 2).await.unwrap();
    assert_eq!(beat.renewed.len(), 2);
    assert_eq!(beat.members.iter().filter(|m| m.alive).count(), 2);
    assert_eq!(beat.shards.len(), 256);
    assert_eq!(beat.shards[7].owner.as_deref(), Some("a"));
    // Released: free at once. Lapsed: free after the lease.
    assert_eq!(store.release_shards("a", &[(8, 1)]).await.unwrap(), 1);
    assert_eq!(store.acquire_shards("b", &[8], lease).await.unwrap(), vec![(8, 2)]);
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(store.acquire_shards("b", &[7], lease).await.unwrap(), vec![(7, 2)]);
    // Node a, silent past the lease, is dead to b; its renewal at the stale epoch fails.
    let beat = store.heartbeat("b", &[(7, 2), (8, 2)], lease, 0).await.unwrap();
    assert_eq!(beat.renewed.len(), 2);
    let a = beat.members.iter().find(|m| m.node_id == "a").unwrap();
    assert!(!a.alive && a.heartbeat_age_ms >= lease.as_millis() as i64, "{a:?}");
    let beat = store.heartbeat("a", &[(7, 1)], lease, 0).await.unwrap();
    assert!(beat.renewed.is_empty(), "a renewal at a stale epoch must fail");
    // A member that left is gone, and its heartbeat says so.
    store.leave_cluster("a").await.unwrap();
    store.forget_member("a").await.unwrap();
    let beat = store.heartbeat("b", &[(7, 2), (8, 2)], lease, 0).await.unwrap();
    assert_eq!(beat.members.iter().map(|m| m.node_id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    assert!(matches!(store.heartbeat("a", &[], lease, 0).await, Err(StoreError::NotFound)));
}

/// The fencing check: a batch written under a shard epoch another node has moved on from is
/// refused whole, naming the shard, and nothing of it is written; under the current epoch
/// the same change commits.
#[tokio::test]
async fn a_journal_batch_under_a_stale_epoch_is_refused_and_writes_nothing() {
    let pg = PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    pg.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let buyer = user(&*store, "fenced@example.com").await;
    let record = event_record(LayoutSpec::grid(1, 1, 4, 10), 0);
    store.create_event(record.clone()).await.unwrap();
    let shard = 42;
    let lease = Duration::from_secs(30);
    pg.join_cluster("old", "http://old", lease).await.unwrap();
    pg.join_cluster("new", "http://new", lease).await.unwrap();
    let [(_, stale)] = pg.acquire_shards("old", &[shard], lease).await.unwrap()[..] else { panic!("taken") };
    pg.release_shards("old", &[(shard, stale)]).await.unwrap();
    let [(_, current)] = pg.acquire_shards("new", &[shard], lease).await.unwrap()[..] else { panic!("taken") };
    assert_eq!(current, stale + 1);

    let mut engine = engine_for(&record);
    let seat = engine.resolve_seats(&["S1-A-1"]).unwrap();
    let (id, changes) = hold(&mut engine, buyer, Selection::Seats(seat), T0);
    let fenced = |epoch| JournalEntry {
        fence: Some(tiketi_persistence::Fence { shard, epoch }),
        ..entry(record.id, changes.clone())
    };
    // Another event's entry, unfenced, in the same batch: rolled back with it.
    let other = event_record(LayoutSpec::grid(1, 1, 2, 10), 0);
    store.create_event(other.clone()).await.unwrap();
    let mut other_engine = engine_for(&other);
    let other_seat = other_engine.resolve_seats(&["S1-A-1"]).unwrap();
    let (other_id, other_changes) = hold(&mut other_engine, buyer, Selection::Seats(other_seat), T0);
    let err = store.append(&[entry(other.id, other_changes), fenced(stale)]).await.unwrap_err();
    let stale_fence = tiketi_persistence::Fence { shard, epoch: stale };
    assert!(matches!(err, StoreError::Fenced(ref fences) if fences == &[stale_fence]), "{err:?}");
    assert!(store.reservation(id).await.unwrap().is_none(), "a fenced batch wrote its hold");
    assert!(store.reservation(other_id).await.unwrap().is_none(), "a fenced batch is rolled back whole");

    store.append(&[fenced(current)]).await.unwrap();
    assert_eq!(store.reservation(id).await.unwrap().map(|r| r.status), Some(ReservationStatus::Held));
}
