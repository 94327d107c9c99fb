//! The admin sales reports, run against the embedded store and a real PostgreSQL (a fresh
//! database per test): one scripted sale over two days, journalled from real engines, then
//! every field of every report checked against numbers worked out by hand.

use std::sync::Arc;
use std::time::Duration;
use tiketi_engine::{
    CaptureOutcome, ChangeSet, ConfirmFinish, ConfirmStart, EventEngine, EventId, EventStatus, HoldRequest, LayoutSpec,
    PaymentFailure, QueueSettings, RefundOutcome, RefundStart, ReservationId, SeatMap, Selection, TicketTypeId,
    TicketTypeSpec, Timestamp, UserId,
};
use tiketi_persistence::{
    DayRange, DayRangeError, DayReport, EventCounts, EventRecord, EventReport, Funnel, JournalEntry, MemoryStore,
    NewUser, OverviewReport, PgStore, ReservationCounts, Role, SeatReport, Store, TicketReport, TodayReport,
};
use time::Date;
use time::macros::date;
use uuid::Uuid;

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp(1_767_225_600_000);
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// `hours` after [`T0`].
const fn at(hours: i64) -> Timestamp {
    Timestamp(T0.0 + hours * HOUR)
}

/// When the overview is taken: 2026-01-02T20:00Z, so "today" is 2026-01-02.
const NOW: Timestamp = at(44);

async fn postgres() -> Arc<dyn Store> {
    let store = PgStore::connect(&tiketi_testkit::fresh_database().await, 4).unwrap();
    store.migrate().await.unwrap();
    Arc::new(store)
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

async fn user(store: &dyn Store, n: usize) -> UserId {
    let new = NewUser {
        email: format!("buyer{n}@example.com"),
        password_hash: "x".into(),
        name: "N".into(),
        role: Role::User,
        created_at: T0,
    };
    store.create_user(new).await.unwrap().id
}

/// An event selling from [`T0`] for ten days, 10-minute holds, no per-user limit.
fn event(title: &str, layout: LayoutSpec, general: Option<(i64, u32)>) -> EventRecord {
    EventRecord {
        id: EventId(Uuid::new_v4()),
        title: title.into(),
        description: String::new(),
        venue: "Hall".into(),
        artist: "Band".into(),
        event_date: at(24 * 30),
        sale_start: T0,
        sale_end: at(24 * 10),
        layout: Some(layout),
        layout_id: None,
        ticket_types: general
            .map(|(price, capacity)| TicketTypeSpec {
                id: TicketTypeId(Uuid::new_v4()),
                name: "GA".into(),
                price,
                capacity,
            })
            .into_iter()
            .collect(),
        per_user_limit: 0,
        hold_ttl: Duration::from_secs(600),
        max_per_reservation: 10,
        queue: QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::OnSale,
        created_at: T0,
        updated_at: T0,
    }
}

/// An event's engine and the journal entries its commands produced, not yet appended.
struct Script {
    engine: EventEngine,
    pending: Vec<JournalEntry>,
}

impl Script {
    fn new(record: &EventRecord) -> Self {
        let map = SeatMap::new(record.layout.as_ref().unwrap()).unwrap();
        let engine = EventEngine::new(record.id, record.rules(), map, record.ticket_types.clone(), T0);
        Self { engine, pending: Vec::new() }
    }

    fn push(&mut self, changes: Option<ChangeSet>) {
        let changes = changes.expect("the command changed something");
        let event = self.engine.event();
        self.pending.push(JournalEntry {
            event,
            fence: None,
            changes,
            idempotency: Vec::new(),
            event_record: None,
            audit: Vec::new(),
        });
    }

    /// Appends what the engine decided so far as one batch.
    async fn flush(&mut self, store: &dyn Store) {
        store.append(&std::mem::take(&mut self.pending)).await.unwrap();
    }

    fn seats(&self, ids: &[&str]) -> Selection {
        Selection::Seats(self.engine.resolve_seats(ids).unwrap())
    }

    fn general(&self, quantity: u32) -> Selection {
        Selection::General { ticket_type: self.engine.ticket_types()[0].spec.id, quantity }
    }

    fn join(&mut self, user: UserId, now: Timestamp) {
        let (_, changes) = self.engine.join_queue(user, now).unwrap();
        self.push(changes);
    }

    fn hold(&mut self, user: UserId, selection: Selection, now: Timestamp) -> ReservationId {
        let id = ReservationId(Uuid::new_v4());
        let admitted = self.engine.rules().queue.enabled;
        let changes = self.engine.hold(HoldRequest { id, user, selection, admitted }, now).unwrap();
        self.push(Some(changes));
        id
    }

    /// Prepares a payment and has the provider answer `outcome`.
    fn pay(&mut self, id: ReservationId, key: &str, outcome: CaptureOutcome, now: Timestamp) {
        let (payment, changes) = self.engine.prepare(id, now).unwrap();
        self.push(changes);
        let (_, start) = self.engine.begin_confirm(&payment.order_id, key, payment.amount, now).unwrap();
        let ConfirmStart::Started(changes) = start else { panic!("confirmation started") };
        self.push(Some(changes));
        match self.engine.finish_confirm(&payment.order_id, key, outcome, now).1 {
            ConfirmFinish::Confirmed(changes) | ConfirmFinish::Declined(changes) => self.push(Some(changes)),
            other => panic!("finished: {other:?}"),
        }
    }

    /// Pays, captured by the provider at `approved_at`.
    fn pay_ok(&mut self, id: ReservationId, key: &str, approved_at: Timestamp, now: Timestamp) {
        self.pay(id, key, CaptureOutcome::Captured { approved_at, method: Some("card".into()) }, now);
    }

    /// Starts a refund; `refunded_at` finishes it.
    fn refund(&mut self, id: ReservationId, refunded_at: Option<Timestamp>, now: Timestamp) {
        let (_, start) = self.engine.begin_refund(id, now).unwrap();
        let RefundStart::Started(changes) = start else { panic!("refund started") };
        self.push(Some(changes));
        if let Some(at) = refunded_at {
            let (_, changes) = self.engine.finish_refund(id, RefundOutcome::Refunded { at }, now).unwrap();
            self.push(Some(changes));
        }
    }
}

/// The scripted sale, appended to `store`. Returns the main event (seated + GA + queue),
/// the second one (seated, no queue), and every event created.
///
/// Main event "Main" (10 seats at 100 in S1 rows A-B; 20 GA tickets at 10; queue on):
/// - 2026-01-01 10:00: eight buyers join the queue (8 joins).
///   - r1: buyer 1 holds S1-A-1, S1-A-2 (200), pays (approved 10:00).
///   - r2: buyer 2 holds 3 GA (30); the first attempt is declined, the second is approved
///     at 23:59:59.999, the last moment of the day.
///   - r3: buyer 3 holds S1-A-3 (100), prepares a payment, and lets the hold expire (10:11).
///   - r4: buyer 4 holds S1-B-1, S1-B-2 (200) and cancels.
///   - the admin blocks S1-B-5.
/// - 2026-01-02 10:00:
///   - buyer 1's r1 is refunded (200, refunded 10:00).
///   - r5: buyer 5 joins (9 joins), holds S1-A-4, S1-A-5 (200), pays (approved 10:00), and
///     asks for a refund the provider has not answered yet (cancelling).
///   - r6: buyer 3 joins again (10 joins) and holds 1 GA (10), unpaid.
///
/// Second event "Second" (4 seats at 50):
/// - 2026-01-02 00:00:00.000 (the first moment of the day): r8, buyer 2 holds S1-A-2 (50),
///   pays (approved then), is refunded at 00:30.
/// - 2026-01-02 10:00: r7, buyer 1 holds S1-A-1 (50), pays (approved 10:00).
///
/// Four more events without sales: upcoming, ended, cancelled, sold out.
async fn scripted_sale(store: &dyn Store) -> (EventRecord, EventRecord) {
    let mut buyers = Vec::new();
    for n in 0..9 {
        buyers.push(user(store, n).await);
    }
    let mut main = event("Main", LayoutSpec::grid(1, 2, 5, 100), Some((10, 20)));
    main.queue = QueueSettings { enabled: true, rate_per_second: 0, max_active: 0, ..QueueSettings::default() };
    let second = event("Second", LayoutSpec::grid(1, 1, 4, 50), None);
    store.create_event(main.clone()).await.unwrap();
    store.create_event(second.clone()).await.unwrap();
    for (title, status, sale_start, sale_end) in [
        ("Upcoming", EventStatus::Upcoming, at(24 * 5), at(24 * 6)),
        ("Ended", EventStatus::OnSale, at(-48), at(-24)),
        ("Cancelled", EventStatus::Cancelled, T0, at(24 * 10)),
        ("Sold out", EventStatus::SoldOut, T0, at(24 * 10)),
    ] {
        let record = EventRecord { status, sale_start, sale_end, ..event(title, LayoutSpec::grid(1, 1, 2, 10), None) };
        store.create_event(record).await.unwrap();
    }

    let mut a = Script::new(&main);
    let day1 = at(10);
    for &buyer in &buyers[1..9] {
        a.join(buyer, day1);
    }
    let r1 = a.hold(buyers[1], a.seats(&["S1-A-1", "S1-A-2"]), day1);
    a.pay_ok(r1, "pk-1", day1, day1);
    let r2 = a.hold(buyers[2], a.general(3), day1);
    let declined = PaymentFailure { code: "REJECT_CARD_PAYMENT".into(), message: "declined".into() };
    a.pay(r2, "pk-2a", CaptureOutcome::Declined(declined), day1);
    a.pay_ok(r2, "pk-2b", Timestamp(at(24).0 - 1), day1);
    let r3 = a.hold(buyers[3], a.seats(&["S1-A-3"]), day1);
    let (_, changes) = a.engine.prepare(r3, day1).unwrap();
    a.push(changes);
    let r4 = a.hold(buyers[4], a.seats(&["S1-B-1", "S1-B-2"]), day1);
    let changes = a.engine.cancel(r4, day1).unwrap();
    a.push(Some(changes));
    let blocked = a.engine.resolve_seats(&["S1-B-5"]).unwrap();
    let changes = a.engine.block(&blocked, day1).unwrap();
    a.push(changes);
    a.flush(store).await;
    let expiry = Timestamp(day1.0 + 601_000);
    let changes = a.engine.tick(expiry);
    a.push(changes);
    a.flush(store).await;

    let day2 = at(34);
    a.refund(r1, Some(day2), day2);
    a.join(buyers[5], day2);
    let r5 = a.hold(buyers[5], a.seats(&["S1-A-4", "S1-A-5"]), day2);
    a.pay_ok(r5, "pk-5", day2, day2);
    a.refund(r5, None, day2);
    a.join(buyers[3], day2);
    a.hold(buyers[3], a.general(1), day2);
    a.flush(store).await;

    let mut b = Script::new(&second);
    let midnight = at(24);
    let r8 = b.hold(buyers[2], b.seats(&["S1-A-2"]), midnight);
    b.pay_ok(r8, "pk-8", midnight, midnight);
    b.refund(r8, Some(Timestamp(midnight.0 + HOUR / 2)), midnight);
    let r7 = b.hold(buyers[1], b.seats(&["S1-A-1"]), day2);
    b.pay_ok(r7, "pk-7", day2, day2);
    b.flush(store).await;
    (main, second)
}

fn day(date: Date, counts: (u64, u64, i64, u64, i64)) -> DayReport {
    let (reservations, confirmed, revenue, refunds, refunded) = counts;
    DayReport { date, reservations, confirmed, revenue, refunds, refunded }
}

/// The overview counts events by their status as of `now`, reservations by status, revenue
/// as captured-and-not-refunded money (a refund in flight still counts), and today's
/// activity on the UTC day of `now`.
async fn the_overview_adds_up_every_event(store: Arc<dyn Store>) {
    scripted_sale(&*store).await;
    let overview = store.overview_report(NOW).await.unwrap();
    let expected = OverviewReport {
        events: EventCounts { total: 6, upcoming: 1, on_sale: 2, sold_out: 1, ended: 1, cancelled: 1 },
        reservations: ReservationCounts { held: 1, confirmed: 3, expired: 1, cancelled: 3 },
        // r2 (30, done) + r5 (200, cancelling) + r7 (50, done).
        revenue: 280,
        // r1 (200) + r8 (50).
        refunded: 250,
        // Created: r5, r6, r7, r8 (at midnight). Approved: r5, r7, r8 (refunded since, so
        // not revenue); r2's approval at 23:59:59.999 was yesterday's.
        today: TodayReport { date: date!(2026 - 01 - 02), reservations: 4, confirmed: 3, revenue: 250 },
    };
    assert_eq!(overview, expected);

    // A day later, "today" is quiet, and the time-driven statuses have moved on.
    let later = store.overview_report(at(24 * 9 + 12)).await.unwrap();
    assert_eq!(later.today, TodayReport { date: date!(2026 - 01 - 10), reservations: 0, confirmed: 0, revenue: 0 });
    assert_eq!(later.events, EventCounts { total: 6, upcoming: 0, on_sale: 2, sold_out: 1, ended: 2, cancelled: 1 });
}

/// One event's report: seats and GA tickets by status, reservations by status, money,
/// and the funnel from queue joins to paid reservations.
async fn an_event_report_counts_inventory_money_and_the_funnel(store: Arc<dyn Store>) {
    let (main, second) = scripted_sale(&*store).await;
    let report = store.event_report(main.id).await.unwrap().unwrap();
    let expected = EventReport {
        event: main.id,
        title: "Main".into(),
        // Sold: r5's two seats (confirmed while its refund is in flight). Blocked: S1-B-5.
        seats: SeatReport { total: 10, sold: 2, held: 0, available: 7, blocked: 1 },
        // Sold: r2's three; held: r6's one.
        tickets: TicketReport { capacity: 20, sold: 3, held: 1, available: 16 },
        reservations: ReservationCounts { held: 1, confirmed: 2, expired: 1, cancelled: 2 },
        revenue: 230,
        refunded: 200,
        // Ten joins (buyer 3 joined twice), six reservations, three ever paid: r1
        // (refunded), r2 (done), r5 (refund in flight).
        funnel: Funnel { queue_joins: 10, reservations: 6, paid_reservations: 3 },
        cancellations: 2,
        refunds: 1,
    };
    assert_eq!(report, expected);
    assert_eq!(report.funnel.queue_to_reservation(), Some(0.6));
    assert_eq!(report.funnel.reservation_to_payment(), Some(0.5));
    assert_eq!(report.funnel.queue_to_payment(), Some(0.3));

    let report = store.event_report(second.id).await.unwrap().unwrap();
    let expected = EventReport {
        event: second.id,
        title: "Second".into(),
        seats: SeatReport { total: 4, sold: 1, held: 0, available: 3, blocked: 0 },
        tickets: TicketReport { capacity: 0, sold: 0, held: 0, available: 0 },
        reservations: ReservationCounts { held: 0, confirmed: 1, expired: 0, cancelled: 1 },
        revenue: 50,
        refunded: 50,
        funnel: Funnel { queue_joins: 0, reservations: 2, paid_reservations: 2 },
        cancellations: 1,
        refunds: 1,
    };
    assert_eq!(report, expected);
    // No queue: no ratio from it.
    assert_eq!(report.funnel.queue_to_reservation(), None);
    assert_eq!(report.funnel.queue_to_payment(), None);
    assert_eq!(report.funnel.reservation_to_payment(), Some(1.0));

    assert_eq!(store.event_report(EventId(Uuid::new_v4())).await.unwrap(), None);
}

/// The daily series has one entry per UTC day of the range, zeros included: reservations
/// by creation day, approvals (gross) by approval day, refunds by refund day; for one
/// event or for all.
async fn the_daily_series_buckets_by_utc_day(store: Arc<dyn Store>) {
    let (main, second) = scripted_sale(&*store).await;
    let range = DayRange::new(date!(2025 - 12 - 31), date!(2026 - 01 - 03)).unwrap();
    let quiet = |d| day(d, (0, 0, 0, 0, 0));

    let main_days = store.daily_report(Some(main.id), range).await.unwrap();
    assert_eq!(
        main_days,
        vec![
            quiet(date!(2025 - 12 - 31)),
            // r1-r4; r1 (200) approved at 10:00, r2 (30) at 23:59:59.999.
            day(date!(2026 - 01 - 01), (4, 2, 230, 0, 0)),
            // r5, r6; r5 approved (200); r1 refunded (200).
            day(date!(2026 - 01 - 02), (2, 1, 200, 1, 200)),
            quiet(date!(2026 - 01 - 03)),
        ]
    );

    let second_days = store.daily_report(Some(second.id), range).await.unwrap();
    assert_eq!(
        second_days,
        vec![
            quiet(date!(2025 - 12 - 31)),
            quiet(date!(2026 - 01 - 01)),
            day(date!(2026 - 01 - 02), (2, 2, 100, 1, 50)),
            quiet(date!(2026 - 01 - 03)),
        ]
    );

    let all = store.daily_report(None, range).await.unwrap();
    assert_eq!(
        all,
        vec![
            quiet(date!(2025 - 12 - 31)),
            day(date!(2026 - 01 - 01), (4, 2, 230, 0, 0)),
            day(date!(2026 - 01 - 02), (4, 3, 300, 2, 250)),
            quiet(date!(2026 - 01 - 03)),
        ]
    );

    // One day, the one with everything.
    let one = DayRange::new(date!(2026 - 01 - 02), date!(2026 - 01 - 02)).unwrap();
    assert_eq!(store.daily_report(None, one).await.unwrap(), vec![day(date!(2026 - 01 - 02), (4, 3, 300, 2, 250))]);

    // The longest range allowed, all quiet but for two days.
    let year = DayRange::ending(date!(2026 - 06 - 30), 366).unwrap();
    let series = store.daily_report(Some(main.id), year).await.unwrap();
    assert_eq!(series.len(), 366);
    assert_eq!((series[0].date, series[365].date), (date!(2025 - 06 - 30), date!(2026 - 06 - 30)));
    let busy: Vec<_> = series.iter().filter(|d| **d != quiet(d.date)).map(|d| d.date).collect();
    assert_eq!(busy, [date!(2026 - 01 - 01), date!(2026 - 01 - 02)]);

    // An unknown event has a quiet series (the API answers 404 before asking).
    let nobody = store.daily_report(Some(EventId(Uuid::new_v4())), range).await.unwrap();
    assert!(nobody.iter().all(|d| *d == quiet(d.date)), "{nobody:?}");
}

/// Reports of an empty store are all zeros, with ratios undefined.
async fn an_empty_store_reports_zeros(store: Arc<dyn Store>) {
    let overview = store.overview_report(T0).await.unwrap();
    assert_eq!(overview.events, EventCounts::default());
    assert_eq!(overview.reservations, ReservationCounts::default());
    assert_eq!((overview.revenue, overview.refunded), (0, 0));
    assert_eq!(overview.today, TodayReport { date: date!(2026 - 01 - 01), reservations: 0, confirmed: 0, revenue: 0 });

    let record = event("Quiet", LayoutSpec::grid(1, 1, 3, 10), None);
    store.create_event(record.clone()).await.unwrap();
    let report = store.event_report(record.id).await.unwrap().unwrap();
    assert_eq!(report.seats, SeatReport { total: 3, sold: 0, held: 0, available: 3, blocked: 0 });
    assert_eq!(report.funnel, Funnel { queue_joins: 0, reservations: 0, paid_reservations: 0 });
    assert_eq!(report.funnel.reservation_to_payment(), None);
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

against_both_stores!(
    the_overview_adds_up_every_event,
    an_event_report_counts_inventory_money_and_the_funnel,
    the_daily_series_buckets_by_utc_day,
    an_empty_store_reports_zeros,
);

#[test]
fn a_day_range_is_ordered_and_at_most_366_days_long() {
    let range = DayRange::new(date!(2026 - 01 - 01), date!(2026 - 01 - 03)).unwrap();
    assert_eq!(range.day_count(), 3);
    assert_eq!(range.days().collect::<Vec<_>>(), [date!(2026 - 01 - 01), date!(2026 - 01 - 02), date!(2026 - 01 - 03)]);
    assert_eq!((range.start(), range.end()), (T0, Timestamp(T0.0 + 3 * DAY)));
    assert_eq!(DayRange::new(date!(2026 - 01 - 02), date!(2026 - 01 - 01)), Err(DayRangeError::Reversed));
    assert_eq!(DayRange::new(date!(2025 - 01 - 01), date!(2026 - 01 - 01)).unwrap().day_count(), 366);
    assert_eq!(DayRange::new(date!(2024 - 12 - 31), date!(2026 - 01 - 01)), Err(DayRangeError::TooLong));
    let last30 = DayRange::ending(date!(2026 - 01 - 30), 30).unwrap();
    assert_eq!((last30.from(), last30.to(), last30.day_count()), (date!(2026 - 01 - 01), date!(2026 - 01 - 30), 30));
}

#[test]
fn ratios_are_rounded_to_four_decimals_and_undefined_over_zero() {
    let funnel = Funnel { queue_joins: 3, reservations: 2, paid_reservations: 1 };
    assert_eq!(funnel.queue_to_reservation(), Some(0.6667));
    assert_eq!(funnel.reservation_to_payment(), Some(0.5));
    assert_eq!(funnel.queue_to_payment(), Some(0.3333));
    let none = Funnel { queue_joins: 0, reservations: 0, paid_reservations: 0 };
    assert_eq!(
        (none.queue_to_reservation(), none.reservation_to_payment(), none.queue_to_payment()),
        (None, None, None)
    );
}
