//! Holds, confirmations, cancellations, blocks and the event lifecycle, each with exact
//! expectations.

use std::time::Duration;
use tiketi_engine::{
    Change, ChangeSet, EngineError, EventEngine, EventId, EventRules, EventStatus, HoldRequest, LayoutSpec, Persisted,
    QueueSettings, Reservation, ReservationId, ReservationItems, ReservationNumber, ReservationStatus, SeatCounts,
    SeatIndex, SeatMap, SeatStatus, Selection, TicketTypeId, TicketTypeSpec, Timestamp, UserId,
};
use uuid::Uuid;

/// 2026-01-05T08:00:00Z.
const OPEN: Timestamp = Timestamp::from_millis(1_767_600_000_000);
const MINUTE: i64 = 60_000;
const CLOSE: Timestamp = at(60);
const TTL: Duration = Duration::from_secs(10 * 60);

/// `minutes` after the sale opens (negative: before).
const fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(OPEN.millis() + minutes * MINUTE)
}

fn ga() -> TicketTypeId {
    TicketTypeId(Uuid::from_u128(7))
}

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(100 + n))
}

fn rid(n: u128) -> ReservationId {
    ReservationId(Uuid::from_u128(1_000 + n))
}

fn rules() -> EventRules {
    EventRules {
        sale_start: OPEN,
        sale_end: CLOSE,
        per_user_limit: 0,
        hold_ttl: TTL,
        max_per_reservation: 10,
        cancelled: false,
        queue: QueueSettings::default(),
        queue_seed: [0; 32],
    }
}

/// Sections `S1` (tier 0, 200) and `S2` (tier 1, 100), rows `A`-`C` of 6 seats each, and
/// `ga_capacity` standing tickets at 50.
fn event_with(layout: LayoutSpec, ga_capacity: u32, rules: EventRules, now: Timestamp) -> EventEngine {
    let seats = SeatMap::new(&layout).expect("valid layout");
    let standing = TicketTypeSpec { id: ga(), name: "Standing".into(), price: 50, capacity: ga_capacity };
    EventEngine::new(EventId(Uuid::from_u128(1)), rules, seats, vec![standing], now)
}

fn event() -> EventEngine {
    event_with(LayoutSpec::grid(2, 3, 6, 100), 10, rules(), OPEN)
}

fn seats(e: &EventEngine, ids: &[&str]) -> Vec<SeatIndex> {
    e.resolve_seats(ids).expect("known seat ids")
}

fn names(e: &EventEngine, seats: &[SeatIndex]) -> Vec<String> {
    seats.iter().map(|&s| e.seats().seat_id(s)).collect()
}

fn status_of(e: &EventEngine, id: &str) -> SeatStatus {
    e.seats().status(seats(e, &[id])[0])
}

fn hold(
    e: &mut EventEngine,
    n: u128,
    who: u128,
    selection: Selection,
    now: Timestamp,
) -> Result<ChangeSet, EngineError> {
    e.hold(HoldRequest { id: rid(n), user: user(who), selection, admitted: false }, now)
}

fn hold_seats(e: &mut EventEngine, n: u128, who: u128, ids: &[&str], now: Timestamp) -> Result<ChangeSet, EngineError> {
    let selection = Selection::Seats(seats(e, ids));
    hold(e, n, who, selection, now)
}

fn hold_general(
    e: &mut EventEngine,
    n: u128,
    who: u128,
    quantity: u32,
    now: Timestamp,
) -> Result<ChangeSet, EngineError> {
    hold(e, n, who, Selection::General { ticket_type: ga(), quantity }, now)
}

fn best(quantity: u32, section: Option<u16>, adjacent: bool) -> Selection {
    Selection::BestAvailable { quantity, section, adjacent }
}

fn created(cs: &ChangeSet) -> &Reservation {
    cs.changes
        .iter()
        .find_map(|c| match c {
            Change::ReservationCreated(r) => Some(&**r),
            _ => None,
        })
        .expect("a hold creates a reservation")
}

fn held_seats(cs: &ChangeSet) -> Vec<SeatIndex> {
    match &created(cs).items {
        ReservationItems::Seats(seats) => seats.clone(),
        ReservationItems::General { .. } => panic!("a seated hold"),
    }
}

fn general_counters(e: &EventEngine) -> (u32, u32) {
    let t = &e.ticket_types()[0];
    (t.held, t.sold)
}

#[test]
fn holding_a_held_seat_is_seats_unavailable_naming_the_seat() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();

    let refused = hold_seats(&mut e, 2, 2, &["S1-A-2", "S1-A-1"], OPEN);

    assert_eq!(refused, Err(EngineError::SeatsUnavailable(vec!["S1-A-1".into()])));
}

#[test]
fn a_four_seat_request_with_one_seat_taken_holds_nothing() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-B-3"], OPEN).unwrap();
    let (counts, seq, serial) = (e.counts(), e.seq(), e.serial());

    let refused = hold_seats(&mut e, 2, 2, &["S1-B-1", "S1-B-2", "S1-B-3", "S1-B-4"], OPEN);

    assert_eq!(refused, Err(EngineError::SeatsUnavailable(vec!["S1-B-3".into()])));
    for id in ["S1-B-1", "S1-B-2", "S1-B-4"] {
        assert_eq!(status_of(&e, id), SeatStatus::Available, "{id}");
    }
    assert_eq!((e.counts(), e.seq(), e.serial()), (counts, seq, serial));
    assert_eq!(e.counts(), SeatCounts { available: 35, held: 1, sold: 0, blocked: 0 });
    assert_eq!(e.user_quantity(user(2)), 0);
    assert!(e.reservation(rid(2)).is_none());
}

#[test]
fn holding_with_the_id_of_a_live_reservation_is_refused_and_changes_nothing() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let (counts, seq) = (e.counts(), e.seq());

    let refused = hold_seats(&mut e, 1, 1, &["S1-A-2"], OPEN);

    let invalid = EngineError::InvalidTransition { from: ReservationStatus::Held, to: ReservationStatus::Held };
    assert_eq!(refused, Err(invalid));
    assert_eq!((e.counts(), e.seq(), e.user_quantity(user(1))), (counts, seq, 1));
    e.cancel(rid(1), OPEN).unwrap();
    assert_eq!(e.counts(), SeatCounts { available: 36, held: 0, sold: 0, blocked: 0 }, "no seat is orphaned");
}

#[test]
fn a_general_admission_hold_beyond_capacity_reports_the_exact_number_left() {
    let mut e = event();
    hold_general(&mut e, 1, 1, 7, OPEN).unwrap();

    assert_eq!(hold_general(&mut e, 2, 2, 4, OPEN), Err(EngineError::InsufficientInventory { available: 3 }));
    assert_eq!(general_counters(&e), (7, 0));

    let cs = hold_general(&mut e, 3, 2, 3, OPEN).unwrap();
    assert!(cs.changes.contains(&Change::General { ticket_type: ga(), held: 10, sold: 0 }));
    assert_eq!(created(&cs).amount, 150);
    assert_eq!(hold_general(&mut e, 4, 3, 1, OPEN), Err(EngineError::InsufficientInventory { available: 0 }));
}

#[test]
fn best_available_adjacent_seats_are_consecutive_in_one_row_of_the_best_tier() {
    let mut e = event();

    let first = hold(&mut e, 1, 1, best(4, None, true), OPEN).unwrap();
    assert_eq!(names(&e, &held_seats(&first)), ["S1-A-2", "S1-A-3", "S1-A-4", "S1-A-5"]);
    assert_eq!(created(&first).amount, 4 * 200);

    // Row A has only seats 1 and 6 left, so the next run is in row B of the same tier.
    let second = hold(&mut e, 2, 2, best(4, None, true), OPEN).unwrap();
    assert_eq!(names(&e, &held_seats(&second)), ["S1-B-2", "S1-B-3", "S1-B-4", "S1-B-5"]);

    let s2 = e.seats().section("S2").unwrap();
    let third = hold(&mut e, 3, 3, best(3, Some(s2), true), OPEN).unwrap();
    assert_eq!(names(&e, &held_seats(&third)), ["S2-A-2", "S2-A-3", "S2-A-4"]);
    assert_eq!(created(&third).amount, 3 * 100);

    for cs in [&first, &second, &third] {
        let seats = held_seats(cs);
        let info: Vec<_> = seats.iter().map(|&s| e.seats().info(s)).collect();
        assert!(info.windows(2).all(|w| (w[0].section, w[0].row) == (w[1].section, w[1].row)));
        assert!(info.windows(2).all(|w| w[1].number == w[0].number + 1));
    }
}

#[test]
fn best_available_moves_to_the_next_tier_when_the_best_tier_has_no_run_long_enough() {
    let mut e = event();
    // Seats 3 and 4 of every S1 row leave runs of two.
    let blocked = seats(&e, &["S1-A-3", "S1-A-4", "S1-B-3", "S1-B-4", "S1-C-3", "S1-C-4"]);
    e.block(&blocked, OPEN).unwrap();

    let cs = hold(&mut e, 1, 1, best(3, None, true), OPEN).unwrap();

    assert_eq!(names(&e, &held_seats(&cs)), ["S2-A-2", "S2-A-3", "S2-A-4"]);
    assert!(held_seats(&cs).iter().all(|&s| e.seats().info(s).tier == 1));
}

#[test]
fn best_available_adjacent_fails_with_no_seats_together_when_the_map_is_fragmented() {
    let mut e = event();
    // Seats 3 and 6 of every row (six rows of six) leave runs of two.
    let blocked: Vec<SeatIndex> = (0..6).flat_map(|row| [row * 6 + 2, row * 6 + 5]).map(SeatIndex).collect();
    e.block(&blocked, OPEN).unwrap();
    assert_eq!(names(&e, &blocked[..2]), ["S1-A-3", "S1-A-6"]);
    let (counts, seq) = (e.counts(), e.seq());

    assert_eq!(hold(&mut e, 1, 1, best(3, None, true), OPEN), Err(EngineError::NoSeatsTogether { quantity: 3 }));
    assert_eq!((e.counts(), e.seq()), (counts, seq));

    let apart = hold(&mut e, 2, 1, best(3, None, false), OPEN).unwrap();
    assert_eq!(names(&e, &held_seats(&apart)), ["S1-A-1", "S1-A-2", "S1-A-4"]);
    // Row A is down to seat 5; of row B's two runs, 4-5 is nearer the centre.
    let pair = hold(&mut e, 3, 1, best(2, None, true), OPEN).unwrap();
    assert_eq!(names(&e, &held_seats(&pair)), ["S1-B-4", "S1-B-5"]);
}

#[test]
fn the_per_user_limit_counts_held_and_confirmed_seats_and_tickets() {
    let mut e = event_with(LayoutSpec::grid(2, 3, 6, 100), 10, EventRules { per_user_limit: 4, ..rules() }, OPEN);
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    e.confirm(rid(1), OPEN).unwrap();
    hold_general(&mut e, 2, 1, 1, OPEN).unwrap();
    assert_eq!(e.user_quantity(user(1)), 3);

    let refused = hold_seats(&mut e, 3, 1, &["S1-B-1", "S1-B-2"], OPEN);
    assert_eq!(refused, Err(EngineError::LimitExceeded { limit: 4, current: 3, requested: 2 }));
    let refused = hold(&mut e, 3, 1, best(2, None, true), OPEN);
    assert_eq!(refused, Err(EngineError::LimitExceeded { limit: 4, current: 3, requested: 2 }));

    // Another buyer is not affected, and the last seat of the limit may be taken.
    hold_seats(&mut e, 4, 2, &["S1-B-1", "S1-B-2", "S1-B-3", "S1-B-4"], OPEN).unwrap();
    hold_seats(&mut e, 5, 1, &["S1-C-1"], OPEN).unwrap();
    assert_eq!(e.user_quantity(user(1)), 4);

    // Cancelling the confirmed pair frees two places under the limit.
    e.cancel(rid(1), OPEN).unwrap();
    assert_eq!(e.user_quantity(user(1)), 2);
    hold_general(&mut e, 6, 1, 2, OPEN).unwrap();
    assert_eq!(e.user_quantity(user(1)), 4);
}

#[test]
fn a_tick_at_exactly_expires_at_releases_the_seats_and_reports_the_reservation_expired() {
    let mut e = event();
    let cs = hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    let expires_at = created(&cs).expires_at;
    assert_eq!(expires_at, at(10));

    assert_eq!(e.tick(Timestamp::from_millis(expires_at.millis() - 1)), None);
    assert_eq!(status_of(&e, "S1-A-1"), SeatStatus::Held);

    let expired = e.tick(expires_at).expect("the hold lapses");
    let [a, b] = [SeatIndex(0), SeatIndex(1)];
    assert_eq!(
        expired.changes,
        [
            Change::Seat { seat: a, status: SeatStatus::Available },
            Change::Seat { seat: b, status: SeatStatus::Available },
            Change::ReservationStatus { id: rid(1), user: user(1), status: ReservationStatus::Expired },
        ]
    );
    assert_eq!((expired.seq, expired.at), (cs.seq + 1, expires_at));
    assert_eq!(e.counts(), SeatCounts { available: 36, held: 0, sold: 0, blocked: 0 });
    assert!(e.reservation(rid(1)).is_none());
    assert_eq!(e.user_quantity(user(1)), 0);
}

#[test]
fn confirming_after_expiry_is_an_invalid_transition() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 1, &["S1-A-2"], OPEN).unwrap();
    let seq = e.seq();

    // Before the tick that ends it, a lapsed hold is still in memory but cannot be paid.
    let refused = e.confirm(rid(1), at(10));
    let invalid = EngineError::InvalidTransition { from: ReservationStatus::Expired, to: ReservationStatus::Confirmed };
    assert_eq!(refused, Err(invalid));
    assert_eq!((status_of(&e, "S1-A-1"), e.seq()), (SeatStatus::Held, seq));

    // One millisecond earlier the other hold confirms.
    let confirmed = e.confirm(rid(2), Timestamp::from_millis(at(10).millis() - 1)).unwrap().unwrap();
    assert!(confirmed.changes.contains(&Change::ReservationStatus {
        id: rid(2),
        user: user(1),
        status: ReservationStatus::Confirmed
    }));

    // Once the tick has ended it, the reservation is no longer live here.
    e.tick(at(10)).unwrap();
    assert_eq!(e.confirm(rid(1), at(10)), Err(EngineError::ReservationNotFound));
    assert_eq!(status_of(&e, "S1-A-2"), SeatStatus::Sold);
}

#[test]
fn confirming_twice_succeeds_and_changes_nothing_the_second_time() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let first = e.confirm(rid(1), OPEN).unwrap().unwrap();
    assert_eq!(first.changes[0], Change::Seat { seat: SeatIndex(0), status: SeatStatus::Sold });

    assert_eq!(e.confirm(rid(1), at(1)), Ok(None));
    assert_eq!(e.seq(), first.seq);
}

#[test]
fn cancelling_a_hold_puts_its_seats_back_on_sale() {
    let mut e = event();
    let held = hold_seats(&mut e, 1, 1, &["S2-C-4", "S2-C-5", "S2-C-6"], OPEN).unwrap();

    let cs = e.cancel(rid(1), at(1)).unwrap();

    let released: Vec<_> = cs.seats().collect();
    assert_eq!(released, held_seats(&held).into_iter().map(|s| (s, SeatStatus::Available)).collect::<Vec<_>>());
    assert_eq!(
        cs.changes.last(),
        Some(&Change::ReservationStatus { id: rid(1), user: user(1), status: ReservationStatus::Cancelled })
    );
    assert_eq!(e.counts(), SeatCounts { available: 36, held: 0, sold: 0, blocked: 0 });
    assert_eq!(e.user_quantity(user(1)), 0);
    assert_eq!(e.cancel(rid(1), at(1)), Err(EngineError::ReservationNotFound));
    hold_seats(&mut e, 2, 2, &["S2-C-5"], at(1)).unwrap();
}

#[test]
fn cancelling_a_confirmed_general_admission_reservation_while_others_are_held_puts_the_counters_back_exactly() {
    let mut e = event();
    hold_general(&mut e, 1, 1, 3, OPEN).unwrap();
    e.confirm(rid(1), OPEN).unwrap();
    hold_general(&mut e, 2, 2, 2, OPEN).unwrap();
    hold_general(&mut e, 3, 3, 4, OPEN).unwrap();
    assert_eq!(general_counters(&e), (6, 3));

    let cs = e.cancel(rid(1), at(1)).unwrap();

    assert!(cs.changes.contains(&Change::General { ticket_type: ga(), held: 6, sold: 0 }));
    assert_eq!(general_counters(&e), (6, 0));
    assert_eq!(e.ticket_types()[0].available(), 4);
    e.confirm(rid(2), at(1)).unwrap();
    assert_eq!(general_counters(&e), (4, 2));
    e.tick(at(10)).unwrap();
    assert_eq!(general_counters(&e), (0, 2));
}

#[test]
fn blocking_refuses_held_and_sold_seats_and_is_all_or_nothing() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 1, &["S1-A-2"], OPEN).unwrap();
    e.confirm(rid(2), OPEN).unwrap();
    let seq = e.seq();

    let refused = e.block(&seats(&e, &["S1-A-3", "S1-A-1", "S1-A-2", "S1-A-4"]), OPEN);

    assert_eq!(refused, Err(EngineError::SeatsUnavailable(vec!["S1-A-1".into(), "S1-A-2".into()])));
    assert_eq!(
        (status_of(&e, "S1-A-3"), status_of(&e, "S1-A-4"), e.seq()),
        (SeatStatus::Available, SeatStatus::Available, seq)
    );

    let two = seats(&e, &["S1-A-3", "S1-A-4"]);
    let cs = e.block(&two, OPEN).unwrap().unwrap();
    assert_eq!(cs.seats().collect::<Vec<_>>(), [(two[0], SeatStatus::Blocked), (two[1], SeatStatus::Blocked)]);
    assert_eq!(e.block(&two[..1], OPEN), Ok(None), "blocking a blocked seat changes nothing");
    assert_eq!(hold_seats(&mut e, 3, 2, &["S1-A-3"], OPEN), Err(EngineError::SeatsUnavailable(vec!["S1-A-3".into()])));

    let cs = e.unblock(&seats(&e, &["S1-A-1", "S1-A-3"]), OPEN).unwrap();
    assert_eq!(cs.seats().collect::<Vec<_>>(), [(two[0], SeatStatus::Available)], "a held seat is left alone");
    assert_eq!(e.counts(), SeatCounts { available: 33, held: 1, sold: 1, blocked: 1 });
}

#[test]
fn holds_before_sale_start_are_refused_as_upcoming_and_the_sale_opens_at_sale_start() {
    let mut e = event_with(LayoutSpec::grid(2, 3, 6, 100), 10, rules(), at(-5));
    assert_eq!(e.status(), EventStatus::Upcoming);

    assert_eq!(hold_seats(&mut e, 1, 1, &["S1-A-1"], at(-1)), Err(EngineError::NotOnSale(EventStatus::Upcoming)));
    assert_eq!(e.tick(Timestamp::from_millis(OPEN.millis() - 1)), None);

    let opened = e.tick(OPEN).expect("the sale opens");
    assert_eq!((opened.seq, opened.changes), (1, vec![Change::EventStatus(EventStatus::OnSale)]));
    assert_eq!(e.status(), EventStatus::OnSale);
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
}

#[test]
fn holding_the_last_seat_and_ticket_sells_out_and_releasing_one_puts_the_event_back_on_sale() {
    let mut e = event_with(LayoutSpec::grid(1, 1, 2, 100), 1, rules(), OPEN);

    let seats_held = hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    assert_eq!((seats_held.event_status(), e.status()), (None, EventStatus::OnSale));
    let last = hold_general(&mut e, 2, 2, 1, OPEN).unwrap();
    assert_eq!(last.event_status(), Some(EventStatus::SoldOut));
    assert_eq!(e.status(), EventStatus::SoldOut);

    // Sold out is still a sale: a hold is refused for want of inventory, not of a sale.
    assert_eq!(hold_general(&mut e, 3, 3, 1, OPEN), Err(EngineError::InsufficientInventory { available: 0 }));

    let released = e.cancel(rid(2), at(1)).unwrap();
    assert_eq!(released.changes.last(), Some(&Change::EventStatus(EventStatus::OnSale)));
    hold_general(&mut e, 3, 3, 1, at(1)).unwrap();
    assert_eq!(e.status(), EventStatus::SoldOut);

    // Expiry releases too: the seats lapse at 10 minutes and the event is back on sale.
    let lapsed = e.tick(at(10)).unwrap();
    assert_eq!(lapsed.event_status(), Some(EventStatus::OnSale));
    assert_eq!(e.counts().available, 2);

    // Confirming moves held to sold and changes nothing about the sale.
    hold_seats(&mut e, 4, 1, &["S1-A-1", "S1-A-2"], at(10)).unwrap();
    assert_eq!(e.status(), EventStatus::SoldOut);
    assert_eq!(e.confirm(rid(4), at(10)).unwrap().unwrap().event_status(), None);
}

#[test]
fn the_event_ends_at_sale_end() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], at(55)).unwrap();
    assert_eq!(e.tick(Timestamp::from_millis(CLOSE.millis() - 1)), None);

    let ended = e.tick(CLOSE).expect("the sale ends");

    assert_eq!(ended.changes, [Change::EventStatus(EventStatus::Ended)]);
    assert_eq!(hold_seats(&mut e, 2, 2, &["S1-A-2"], CLOSE), Err(EngineError::NotOnSale(EventStatus::Ended)));
    // A hold taken before the end lapses as usual.
    let lapsed = e.tick(at(65)).unwrap();
    assert_eq!(
        lapsed.changes.last(),
        Some(&Change::ReservationStatus { id: rid(1), user: user(1), status: ReservationStatus::Expired })
    );
    assert_eq!(e.status(), EventStatus::Ended);
}

#[test]
fn cancelling_the_event_releases_holds_and_keeps_confirmed_reservations() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-2"], OPEN).unwrap();
    e.confirm(rid(2), OPEN).unwrap();
    hold_general(&mut e, 3, 3, 2, OPEN).unwrap();

    let cs = e.cancel_event(at(1)).expect("cancelling changes the event");

    let mut ended: Vec<_> = cs
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::ReservationStatus { id, status, .. } => Some((*id, *status)),
            _ => None,
        })
        .collect();
    ended.sort_by_key(|(id, _)| *id);
    assert_eq!(ended, [(rid(1), ReservationStatus::Cancelled), (rid(3), ReservationStatus::Cancelled)]);
    assert_eq!(cs.changes.last(), Some(&Change::EventStatus(EventStatus::Cancelled)));
    assert_eq!(e.counts(), SeatCounts { available: 35, held: 0, sold: 1, blocked: 0 });
    assert_eq!(general_counters(&e), (0, 0));
    assert_eq!(e.reservation(rid(2)).map(|r| r.status), Some(ReservationStatus::Confirmed));

    assert_eq!(hold_seats(&mut e, 4, 4, &["S1-A-3"], at(1)), Err(EngineError::NotOnSale(EventStatus::Cancelled)));
    assert_eq!(e.set_rules(rules(), at(2)), None, "new rules do not revive a cancelled event");
    assert_eq!(e.tick(CLOSE), None, "a cancelled event does not end");
    assert_eq!(e.status(), EventStatus::Cancelled);
}

#[test]
fn reservation_numbers_read_tkt_date_serial_and_increase() {
    let mut e = event();
    let first = hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    assert!(hold_seats(&mut e, 2, 2, &["S1-A-1"], OPEN).is_err());
    let second = hold_general(&mut e, 3, 2, 1, at(1)).unwrap();

    assert_eq!(created(&first).number.to_string(), "TKT-20260105-00001");
    assert_eq!(created(&second).number.to_string(), "TKT-20260105-00002", "a refused hold takes no number");
    assert_eq!(e.serial(), 2);
    assert_eq!(ReservationNumber { date: 20260105, serial: 123_456 }.to_string(), "TKT-20260105-123456");
}

#[test]
fn reservation_numbers_carry_the_utc_date_and_continue_after_a_restore() {
    // The sale runs across midnight UTC.
    let midnight = Timestamp::from_millis(1_767_657_600_000);
    let rules = EventRules { sale_end: Timestamp::from_millis(midnight.millis() + 60 * MINUTE), ..rules() };
    let (mut e, _) = EventEngine::restore(
        EventId(Uuid::from_u128(1)),
        rules,
        SeatMap::new(&LayoutSpec::grid(1, 1, 4, 100)).unwrap(),
        Vec::new(),
        Persisted { seq: 17, serial: 41, status: EventStatus::OnSale, ..Persisted::default() },
        Timestamp::from_millis(midnight.millis() - 1),
    );

    let before = hold_seats(&mut e, 1, 1, &["S1-A-1"], Timestamp::from_millis(midnight.millis() - 1)).unwrap();
    let after = hold_seats(&mut e, 2, 1, &["S1-A-2"], midnight).unwrap();

    assert_eq!(before.seq, 18);
    assert_eq!(created(&before).number.to_string(), "TKT-20260105-00042");
    assert_eq!(created(&after).number.to_string(), "TKT-20260106-00043");
}

#[test]
fn next_deadline_is_the_earliest_hold_expiry_or_sale_boundary() {
    let mut e = event_with(LayoutSpec::grid(2, 3, 6, 100), 10, rules(), at(-5));
    assert_eq!(e.next_deadline(at(-5)), Some(OPEN));

    e.tick(OPEN).unwrap();
    assert_eq!(e.next_deadline(OPEN), Some(CLOSE));

    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 1, &["S1-A-2"], at(1)).unwrap();
    assert_eq!(e.next_deadline(at(1)), Some(at(10)));

    e.tick(at(10)).unwrap();
    assert_eq!(e.next_deadline(at(10)), Some(at(11)));
    e.tick(at(11)).unwrap();
    assert_eq!(e.next_deadline(at(11)), Some(CLOSE));

    // A hold that outlives the sale: the end comes first, then the expiry.
    hold_seats(&mut e, 3, 1, &["S1-A-3"], at(55)).unwrap();
    assert_eq!(e.next_deadline(at(55)), Some(CLOSE));
    e.tick(CLOSE).unwrap();
    assert_eq!(e.next_deadline(CLOSE), Some(at(65)));
    e.tick(at(65)).unwrap();
    assert_eq!(e.next_deadline(at(65)), None);
}
