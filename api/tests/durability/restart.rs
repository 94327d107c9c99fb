//! A 100,000-seat event with 20,000 seats sold and 5,000 held, written through the store's
//! journal path, reloads into an actor whose state is identical to the engine that made it.

use crate::support::Rng;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tiketi_actors::{ActorConfig, Clock, Runtime};
use tiketi_engine::{
    EventEngine, EventId, EventStatus, HoldRequest, LayoutSpec, ReservationId, ReservationStatus, SeatCounts,
    SeatIndex, SeatMap, Selection, Timestamp, UserId,
};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{EventRecord, JournalEntry, NewUser, PgStore, Role, Store};
use uuid::Uuid;

const SOLD: usize = 20_000;
const HELD: usize = 5_000;
/// Seats held then cancelled, and seats whose hold expired: on sale again after the reload.
const CANCELLED: usize = 2_000;
const EXPIRED: usize = 1_000;
const BATCH: usize = 1_000;

/// Cuts `seats` into reservations of 1-10 seats (sorted, as the store returns them).
fn groups(seats: &[u32], rng: &mut Rng) -> Vec<Vec<SeatIndex>> {
    let mut out = Vec::new();
    let mut rest = seats;
    while !rest.is_empty() {
        let n = (rng.between(1, 10) as usize).min(rest.len());
        let mut group: Vec<SeatIndex> = rest[..n].iter().map(|&s| SeatIndex(s)).collect();
        group.sort();
        out.push(group);
        rest = &rest[n..];
    }
    out
}

/// Holds `seats` for a random user at `at`.
fn hold(
    engine: &mut EventEngine,
    users: &[UserId],
    seats: Vec<SeatIndex>,
    at: Timestamp,
    rng: &mut Rng,
) -> (ReservationId, tiketi_engine::ChangeSet) {
    let id = ReservationId(Uuid::new_v4());
    let user = users[rng.below(users.len() as u64) as usize];
    (id, engine.hold(HoldRequest { id, user, selection: Selection::Seats(seats), admitted: false }, at).unwrap())
}

fn wall_clock() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_seat_event_reloads_with_identical_state() {
    let store = PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);

    let now = wall_clock();
    let hour = Duration::from_secs(3600);
    let mut users = Vec::new();
    for i in 0..25 {
        let new = NewUser {
            email: format!("restart-buyer{i}@example.com"),
            password_hash: "x".into(),
            name: "Buyer".into(),
            role: Role::User,
            created_at: now,
        };
        users.push(store.create_user(new).await.unwrap().id);
    }
    // 10 sections x 100 rows x 100 seats.
    let layout = LayoutSpec::grid(10, 100, 100, 1_000);
    let record = EventRecord {
        id: EventId(Uuid::new_v4()),
        title: "Stadium".into(),
        description: String::new(),
        venue: "Big Stadium".into(),
        artist: "Everyone".into(),
        event_date: now.plus(hour * 24 * 30),
        sale_start: Timestamp(now.0 - 3 * 3_600_000),
        sale_end: now.plus(hour * 24 * 29),
        layout: Some(layout.clone()),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        // Long enough that no hold lapses between writing and reloading.
        hold_ttl: hour,
        max_per_reservation: 10,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::OnSale,
        created_at: now,
        updated_at: now,
    };
    store.create_event(record.clone()).await.unwrap();
    let mut engine = EventEngine::new(record.id, record.rules(), SeatMap::new(&layout).unwrap(), Vec::new(), now);
    assert_eq!(engine.seats().len(), 100_000);

    // Seats in a seeded random order, cut into reservations of 1-10 seats: scattered seat
    // indexes make a wrong mapping between the engine and the rows show.
    let mut rng = Rng::new(0x0713_57E7);
    let mut order: Vec<u32> = (0..engine.seats().len()).collect();
    rng.shuffle(&mut order);
    let (sold, rest) = order.split_at(SOLD);
    let (held, rest) = rest.split_at(HELD);
    let expired = &rest[..EXPIRED];
    // Held and cancelled first, then sold to someone else: the partial unique index must
    // accept a seat's second live reservation once the first one ended.
    let cancelled = &sold[..CANCELLED];

    let mut entries = Vec::new();
    let mut live = Vec::new();
    let mut ended = Vec::new();
    let entry = |changes| JournalEntry {
        event: record.id,
        fence: None,
        changes,
        idempotency: Vec::new(),
        event_record: None,
        audit: Vec::new(),
    };
    // Two hours ago: holds that expired an hour ago.
    let long_ago = Timestamp(now.0 - 2 * 3_600_000);
    for seats in groups(expired, &mut rng) {
        let (id, changes) = hold(&mut engine, &users, seats, long_ago, &mut rng);
        entries.push(entry(changes));
        ended.push(id);
    }
    entries.push(entry(engine.tick(now).expect("the old holds expire")));
    for seats in groups(cancelled, &mut rng) {
        let (id, changes) = hold(&mut engine, &users, seats, now, &mut rng);
        entries.push(entry(changes));
        entries.push(entry(engine.cancel(id, now).unwrap()));
        ended.push(id);
    }
    let mut to_confirm = Vec::new();
    for seats in groups(sold, &mut rng) {
        let (id, changes) = hold(&mut engine, &users, seats, now, &mut rng);
        entries.push(entry(changes));
        to_confirm.push(id);
    }
    for seats in groups(held, &mut rng) {
        let (id, changes) = hold(&mut engine, &users, seats, now, &mut rng);
        entries.push(entry(changes));
        live.push(id);
    }
    for id in to_confirm {
        entries.push(entry(engine.confirm(id, now).unwrap().expect("a held reservation confirms")));
        live.push(id);
    }
    let expected =
        SeatCounts { available: 100_000 - (SOLD + HELD) as u32, held: HELD as u32, sold: SOLD as u32, blocked: 0 };
    assert_eq!(engine.counts(), expected);

    let started = Instant::now();
    for batch in entries.chunks(BATCH) {
        store.append(batch).await.unwrap();
    }
    println!("wrote {} change sets in batches of {BATCH} in {:?}", entries.len(), started.elapsed());

    let runtime =
        Runtime::start(store.clone(), JournalConfig::default(), ActorConfig::default(), Clock::system(), None)
            .await
            .unwrap();
    let started = Instant::now();
    let handle = runtime.directory().get(record.id).await.unwrap();
    let activation = started.elapsed();
    println!("activated a 100,000-seat event (20,000 sold, 5,000 held) in {activation:?}");

    let view = handle.view().await.unwrap();
    assert_eq!(view.counts, expected);
    assert_eq!(view.counts, engine.counts());
    // Nothing lapsed or changed on activation: the actor continues at the engine's seq.
    assert_eq!(view.seq, engine.seq());
    let snapshot = handle.seats().await.unwrap();
    assert_eq!(snapshot.seq, engine.seq());
    assert_eq!(snapshot.statuses.len(), engine.seats().len() as usize);
    for (i, (seat, status)) in snapshot.seats().enumerate() {
        let index = SeatIndex(i as u32);
        assert_eq!(seat.id, engine.seats().seat_id(index), "seat #{i}");
        assert_eq!(status, engine.seats().status(index), "seat {}", seat.id);
    }
    for &id in &live {
        let reloaded = handle.reservation(id).await.unwrap();
        assert_eq!(reloaded.as_ref(), engine.reservation(id), "reservation {id}");
    }
    for &id in &ended {
        assert_eq!(handle.reservation(id).await.unwrap(), None, "reservation {id} ended");
        let stored = store.reservation(id).await.unwrap().expect("ended reservations are kept");
        assert!(matches!(stored.status, ReservationStatus::Expired | ReservationStatus::Cancelled), "{id}");
    }
    // The next reservation continues the numbering instead of reusing a serial.
    let next = ReservationId(Uuid::new_v4());
    let free = snapshot.statuses.iter().position(|&s| s == tiketi_engine::SeatStatus::Available).unwrap();
    let r = handle
        .hold(tiketi_actors::HoldCmd {
            id: next,
            user: users[0],
            selection: tiketi_actors::SelectionInput::Seats(vec![
                snapshot.layout.seat_id(tiketi_engine::SeatIndex(free as u32)),
            ]),
            idempotency: None,
            admitted: false,
        })
        .await
        .unwrap();
    assert_eq!(r.number.serial, engine.serial() + 1);
    let distinct: HashSet<ReservationId> = live.iter().chain(&ended).copied().collect();
    assert_eq!(distinct.len(), live.len() + ended.len());
    runtime.shutdown().await;
}
