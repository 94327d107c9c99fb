//! Payments: preparing an order, the confirmation in flight that pins its hold, captures,
//! declines, refunds, orphans, and how each races the expiry sweep, cancellations and a
//! restore, each with exact expectations.

use std::time::Duration;
use tiketi_engine::{
    CaptureOutcome, Change, ChangeSet, ConfirmFinish, ConfirmStart, EngineError, EventEngine, EventId, EventRules,
    EventStatus, HoldRequest, LayoutSpec, OwedRefund, Payment, PaymentFailure, PaymentStatus, Persisted, QueueSettings,
    RefundOutcome, RefundStart, ReservationId, ReservationStatus, SeatCounts, SeatIndex, SeatMap, SeatStatus,
    Selection, SettledByHand, TicketTypeId, TicketTypeSpec, Timestamp, UserId, order_id, order_reservation,
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

/// One millisecond before `t`.
const fn just_before(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.millis() - 1)
}

fn event_id() -> EventId {
    EventId(Uuid::from_u128(1))
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

fn layout() -> LayoutSpec {
    LayoutSpec::grid(2, 3, 6, 100)
}

fn standing(capacity: u32) -> Vec<TicketTypeSpec> {
    vec![TicketTypeSpec { id: ga(), name: "Standing".into(), price: 50, capacity }]
}

/// Sections `S1` (200 a seat) and `S2` (100 a seat), rows `A`-`C` of 6 seats each (seat
/// `S1-A-1` is index 0, `S1-B-1` index 6, `S2-A-1` index 18), and `ga_capacity` standing
/// tickets at 50.
fn event_with(layout: LayoutSpec, ga_capacity: u32, rules: EventRules, now: Timestamp) -> EventEngine {
    let seats = SeatMap::new(&layout).expect("valid layout");
    EventEngine::new(event_id(), rules, seats, standing(ga_capacity), now)
}

fn event() -> EventEngine {
    event_with(layout(), 10, rules(), OPEN)
}

fn seats(e: &EventEngine, ids: &[&str]) -> Vec<SeatIndex> {
    e.resolve_seats(ids).expect("known seat ids")
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

fn general_counters(e: &EventEngine) -> (u32, u32) {
    let t = &e.ticket_types()[0];
    (t.held, t.sold)
}

fn counts(available: u32, held: u32, sold: u32) -> SeatCounts {
    SeatCounts { available, held, sold, blocked: 0 }
}

fn failure() -> PaymentFailure {
    PaymentFailure { code: "REJECT_CARD_PAYMENT".into(), message: "The card was refused.".into() }
}

fn captured(approved_at: Timestamp) -> CaptureOutcome {
    CaptureOutcome::Captured { approved_at, method: Some("card".into()) }
}

fn declined() -> CaptureOutcome {
    CaptureOutcome::Declined(failure())
}

/// The change a payment record makes.
fn rec(p: &Payment) -> Change {
    Change::Payment(Box::new(p.clone()))
}

fn seat(index: u32, status: SeatStatus) -> Change {
    Change::Seat { seat: SeatIndex(index), status }
}

fn res(n: u128, who: u128, status: ReservationStatus) -> Change {
    Change::ReservationStatus { id: rid(n), user: user(who), status }
}

/// `p` as it reads after moving to `status` at `now`.
fn moved(p: &Payment, status: PaymentStatus, now: Timestamp) -> Payment {
    Payment { status, updated_at: now, ..p.clone() }
}

/// Prepares reservation `n`'s payment, which must be new.
fn prepare(e: &mut EventEngine, n: u128, now: Timestamp) -> Payment {
    let (p, changes) = e.prepare(rid(n), now).expect("prepared");
    assert!(changes.is_some(), "a new payment");
    p
}

/// Starts a confirmation, which must start.
fn begin(e: &mut EventEngine, p: &Payment, key: &str, now: Timestamp) -> (Payment, ChangeSet) {
    match e.begin_confirm(&p.order_id, key, p.amount, now).expect("begun") {
        (p, ConfirmStart::Started(cs)) => (p, cs),
        (_, other) => panic!("expected a start, got {other:?}"),
    }
}

/// Prepares, begins and captures reservation `n`'s payment with `key`, all at `now`.
fn pay(e: &mut EventEngine, n: u128, key: &str, now: Timestamp) -> Payment {
    let p = prepare(e, n, now);
    let (p, _) = begin(e, &p, key, now);
    match e.finish_confirm(&p.order_id, key, captured(now), now) {
        (Some(done), ConfirmFinish::Confirmed(_)) => done,
        other => panic!("expected a capture, got {other:?}"),
    }
}

fn reservation_status(e: &EventEngine, n: u128) -> Option<ReservationStatus> {
    e.reservation(rid(n)).map(|r| r.status)
}

fn payment_status(e: &EventEngine, n: u128) -> Option<PaymentStatus> {
    e.payment(rid(n)).map(|p| p.status)
}

// 1. prepare

#[test]
fn prepare_takes_the_amount_from_the_reservation_and_names_the_order_after_it() {
    let mut e = event();
    let held = hold_seats(&mut e, 1, 1, &["S1-A-1", "S2-A-1"], OPEN).unwrap();
    assert_eq!(held.seq, 1);

    let (p, changes) = e.prepare(rid(1), at(1)).unwrap();

    let expected = Payment {
        order_id: "000000000000000000000000000003e9-1".into(),
        attempt: 1,
        reservation: rid(1),
        event: event_id(),
        user: user(1),
        amount: 300,
        status: PaymentStatus::Ready,
        payment_key: None,
        method: None,
        failure: None,
        created_at: at(1),
        updated_at: at(1),
        approved_at: None,
        cancelled_at: None,
    };
    assert_eq!(p, expected);
    assert_eq!(p.amount, e.reservation(rid(1)).unwrap().amount);
    assert_eq!(changes, Some(ChangeSet { seq: 2, at: at(1), changes: vec![rec(&expected)] }));
    assert_eq!(e.payment(rid(1)), Some(&expected));
    assert_eq!(e.unsettled_payments().count(), 0, "a prepared payment is not in flight");
    assert_eq!((reservation_status(&e, 1), status_of(&e, "S1-A-1")), (Some(ReservationStatus::Held), SeatStatus::Held));

    // Preparing again hands back the same payment and changes nothing.
    assert_eq!(e.prepare(rid(1), at(2)), Ok((expected.clone(), None)));
    assert_eq!(e.seq(), 2);
    assert_eq!(e.payment(rid(1)).unwrap().updated_at, at(1));
}

#[test]
fn order_ids_are_the_reservation_in_32_hex_digits_and_the_attempt_and_parse_back_strictly() {
    let id = rid(1);
    let hex = "000000000000000000000000000003e9";
    assert_eq!(order_id(id, 1), format!("{hex}-1"));
    assert_eq!(order_id(id, 12), format!("{hex}-12"));
    assert_eq!(order_reservation(&order_id(id, 1)), Some(id));
    assert_eq!(order_reservation(&order_id(id, 12)), Some(id));
    let other = ReservationId(Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210));
    assert_eq!(order_id(other, 3), "0123456789abcdeffedcba9876543210-3");
    assert_eq!(order_reservation("0123456789abcdeffedcba9876543210-3"), Some(other));

    for bad in [
        "3e9-1".to_owned(),                                  // too short
        format!("0{hex}-1"),                                 // 33 digits
        format!("{}-1", &hex[1..]),                          // 31 digits
        hex.to_owned(),                                      // no attempt at all
        format!("{hex}-"),                                   // empty attempt
        format!("{hex}-x"),                                  // not a number
        format!("{hex}-1a"),                                 // not only digits
        format!("{hex}--1"),                                 // a sign is not a digit
        format!("{hex}-+1"),                                 // neither is a plus
        "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-1".to_owned(),     // 32 characters but not hex
        "00000000-0000-0000-0000-0000000003e9-1".to_owned(), // a hyphenated uuid
        String::new(),
    ] {
        assert_eq!(order_reservation(&bad), None, "{bad:?}");
    }
}

#[test]
fn preparing_a_hold_at_or_past_its_expiry_is_hold_expired_and_changes_nothing() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 1, &["S1-A-2"], OPEN).unwrap();
    assert_eq!(e.reservation(rid(1)).unwrap().expires_at, at(10));
    let seq = e.seq();

    assert_eq!(e.prepare(rid(1), at(10)), Err(EngineError::HoldExpired));
    assert_eq!(e.prepare(rid(1), at(11)), Err(EngineError::HoldExpired));
    assert_eq!((e.payment(rid(1)), e.seq()), (None, seq));

    // One millisecond earlier the other hold prepares.
    let (p, changes) = e.prepare(rid(2), just_before(at(10))).unwrap();
    assert_eq!((p.status, p.attempt, changes.map(|cs| cs.seq)), (PaymentStatus::Ready, 1, Some(seq + 1)));
}

#[test]
fn preparing_an_unknown_reservation_is_reservation_not_found() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();

    assert_eq!(e.prepare(rid(9), OPEN), Err(EngineError::ReservationNotFound));
    assert_eq!((e.seq(), e.payment(rid(9))), (1, None));

    // Nor does an ended reservation come back.
    e.cancel(rid(1), OPEN).unwrap();
    assert_eq!(e.prepare(rid(1), OPEN), Err(EngineError::ReservationNotFound));
    assert_eq!(e.seq(), 2);
}

// 2. begin_confirm

#[test]
fn begin_confirm_refuses_a_wrong_amount_or_order_and_pins_the_payment_once_with_one_key() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    assert_eq!((p.amount, e.seq()), (400, 2));

    for amount in [399, 401, 0, -400] {
        assert_eq!(
            e.begin_confirm(&p.order_id, "key-1", amount, at(2)),
            Err(EngineError::AmountMismatch { expected: 400 })
        );
    }
    assert_eq!((e.payment(rid(1)), e.seq()), (Some(&p), 2));

    let not_ours = ["nonsense".to_owned(), order_id(rid(1), 2), order_id(rid(9), 1), p.order_id.to_uppercase()];
    for order in not_ours {
        assert_eq!(e.begin_confirm(&order, "key-1", 400, at(2)), Err(EngineError::PaymentNotFound), "{order}");
    }
    assert_eq!((e.payment(rid(1)), e.seq()), (Some(&p), 2));

    let (in_flight, cs) = begin(&mut e, &p, "key-1", at(2));

    let expected = Payment { payment_key: Some("key-1".into()), ..moved(&p, PaymentStatus::InProgress, at(2)) };
    assert_eq!(in_flight, expected);
    assert_eq!(cs, ChangeSet { seq: 3, at: at(2), changes: vec![rec(&expected)] });
    assert_eq!(e.payment(rid(1)), Some(&expected));
    assert_eq!(e.unsettled_payments().collect::<Vec<_>>(), [&expected]);
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held));
    assert_eq!(e.counts(), counts(34, 2, 0));

    // The same confirmation again: wait for it.
    assert_eq!(e.begin_confirm(&p.order_id, "key-1", 400, at(3)), Ok((expected.clone(), ConfirmStart::InFlight)));
    // Another one meanwhile: refused.
    assert_eq!(e.begin_confirm(&p.order_id, "key-2", 400, at(3)), Err(EngineError::PaymentInProgress));
    // The amount is still checked first.
    assert_eq!(e.begin_confirm(&p.order_id, "key-1", 1, at(3)), Err(EngineError::AmountMismatch { expected: 400 }));
    // Preparing hands back the payment in flight; the plain confirm is refused.
    assert_eq!(e.prepare(rid(1), at(3)), Ok((expected.clone(), None)));
    assert_eq!(e.confirm(rid(1), at(3)), Err(EngineError::PaymentInProgress));
    assert_eq!((e.payment(rid(1)), e.seq()), (Some(&expected), 3));
}

// 3. capture

#[test]
fn a_capture_confirms_the_reservation_sells_its_seats_and_is_reported_once() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(2));
    assert_eq!(e.seq(), 3);

    let outcome = CaptureOutcome::Captured { approved_at: at(3), method: Some("카드".into()) };
    let (paid, finish) = e.finish_confirm(&p.order_id, "key-1", outcome.clone(), at(4));

    let done = Payment {
        approved_at: Some(at(3)),
        method: Some("카드".into()),
        ..moved(&in_flight, PaymentStatus::Done, at(4))
    };
    assert_eq!(paid.as_ref(), Some(&done));
    let expected = ChangeSet {
        seq: 4,
        at: at(4),
        changes: vec![
            seat(0, SeatStatus::Sold),
            seat(1, SeatStatus::Sold),
            res(1, 1, ReservationStatus::Confirmed),
            rec(&done),
        ],
    };
    assert_eq!(finish, ConfirmFinish::Confirmed(expected));
    let r = e.reservation(rid(1)).unwrap();
    assert_eq!((r.status, r.updated_at), (ReservationStatus::Confirmed, at(4)));
    assert_eq!(e.counts(), counts(34, 0, 2));
    assert_eq!((status_of(&e, "S1-A-1"), status_of(&e, "S1-A-2")), (SeatStatus::Sold, SeatStatus::Sold));
    assert_eq!(e.payment(rid(1)), Some(&done));
    assert_eq!(e.unsettled_payments().count(), 0);
    assert_eq!(e.user_quantity(user(1)), 2);

    // The buyer retries with the same key: the same answer, no second charge.
    assert_eq!(e.begin_confirm(&p.order_id, "key-1", 400, at(5)), Ok((done.clone(), ConfirmStart::Done)));
    // Another key for a paid order.
    assert_eq!(e.begin_confirm(&p.order_id, "key-2", 400, at(5)), Err(EngineError::AlreadyPaid));
    // A second report of the same capture, or a stray decline for it, changes nothing.
    assert_eq!(
        e.finish_confirm(&p.order_id, "key-1", outcome, at(6)),
        (Some(done.clone()), ConfirmFinish::AlreadySettled)
    );
    assert_eq!(
        e.finish_confirm(&p.order_id, "key-1", declined(), at(6)),
        (Some(done.clone()), ConfirmFinish::AlreadySettled)
    );
    // Preparing again hands back the paid payment.
    assert_eq!(e.prepare(rid(1), at(6)), Ok((done.clone(), None)));
    assert_eq!(e.seq(), 4);

    // The old expiry passes it by.
    assert_eq!(e.tick(at(10)), None);
    assert_eq!((reservation_status(&e, 1), e.payment(rid(1))), (Some(ReservationStatus::Confirmed), Some(&done)));
    assert_eq!(e.counts(), counts(34, 0, 2));
}

// 4. decline

#[test]
fn a_decline_fails_the_payment_keeps_the_hold_and_a_new_attempt_gets_a_new_order_id() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(2));

    let (failed, finish) = e.finish_confirm(&p.order_id, "key-1", declined(), at(3));

    let expected = Payment { failure: Some(failure()), ..moved(&in_flight, PaymentStatus::Failed, at(3)) };
    assert_eq!(expected.payment_key.as_deref(), Some("key-1"));
    assert_eq!(failed.as_ref(), Some(&expected));
    assert_eq!(finish, ConfirmFinish::Declined(ChangeSet { seq: 4, at: at(3), changes: vec![rec(&expected)] }));
    assert_eq!(e.payment(rid(1)), Some(&expected));
    assert_eq!(e.unsettled_payments().count(), 0);
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held));
    assert_eq!(
        (status_of(&e, "S1-A-1"), e.counts(), e.user_quantity(user(1))),
        (SeatStatus::Held, counts(35, 1, 0), 1)
    );

    let (second, changes) = e.prepare(rid(1), at(4)).unwrap();

    let expected_second = Payment {
        order_id: "000000000000000000000000000003e9-2".into(),
        attempt: 2,
        status: PaymentStatus::Ready,
        payment_key: None,
        failure: None,
        created_at: at(4),
        updated_at: at(4),
        ..p.clone()
    };
    assert_eq!(second, expected_second);
    assert_eq!(order_reservation(&second.order_id), Some(rid(1)));
    assert_eq!(changes, Some(ChangeSet { seq: 5, at: at(4), changes: vec![rec(&expected_second)] }));
    assert_eq!(e.payment(rid(1)), Some(&expected_second));

    // The first order is over.
    assert_eq!(e.begin_confirm(&p.order_id, "key-1", 200, at(5)), Err(EngineError::PaymentNotFound));
    assert_eq!(e.begin_confirm(&p.order_id, "key-2", 200, at(5)), Err(EngineError::PaymentNotFound));
    assert_eq!(e.seq(), 5);

    let (in_flight, cs) = begin(&mut e, &second, "key-2", at(5));
    assert_eq!(
        (in_flight.status, in_flight.payment_key.as_deref(), cs.seq),
        (PaymentStatus::InProgress, Some("key-2"), 6)
    );
    let (_, finish) = e.finish_confirm(&second.order_id, "key-2", captured(at(6)), at(6));
    assert!(matches!(finish, ConfirmFinish::Confirmed(ref cs) if cs.seq == 7));
    assert_eq!(e.payment(rid(1)).map(|p| (p.attempt, p.status)), Some((2, PaymentStatus::Done)));
}

#[test]
fn a_declined_order_is_not_confirmed_again_with_another_key_a_new_attempt_is_prepared() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(2));
    let (failed, _) = e.finish_confirm(&p.order_id, "key-1", declined(), at(3));
    let failed = failed.unwrap();
    let seq = e.seq();

    // One key per order: the declined order is closed, and nothing changes.
    assert_eq!(e.begin_confirm(&p.order_id, "key-2", p.amount, at(4)), Err(EngineError::OrderDeclined));
    assert_eq!((e.payment(rid(1)), e.seq()), (Some(&failed), seq));
    // A new attempt takes the new key.
    let (second, _) = e.prepare(rid(1), at(4)).unwrap();
    assert_eq!((second.attempt, second.status), (2, PaymentStatus::Ready));
    let (retry, _) = begin(&mut e, &second, "key-2", at(5));
    assert_eq!((retry.payment_key.as_deref(), retry.status), (Some("key-2"), PaymentStatus::InProgress));
}

// 5. the pin

#[test]
fn a_confirmation_in_flight_pins_its_hold_past_expiry_and_a_late_capture_still_sells_the_seats() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-3"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p, "key-1", just_before(at(10)));
    let seq = e.seq();
    assert_eq!(seq, 4);

    // The sweep passes the pinned hold by and expires the other one.
    let swept = e.tick(at(10)).expect("the unpinned hold lapses");
    assert_eq!(swept.seq, seq + 1);
    assert_eq!(swept.changes, [seat(2, SeatStatus::Available), res(2, 2, ReservationStatus::Expired)]);
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held));
    assert_eq!((status_of(&e, "S1-A-1"), status_of(&e, "S1-A-2")), (SeatStatus::Held, SeatStatus::Held));
    assert_eq!(e.counts(), counts(34, 2, 0));
    assert_eq!(e.payment(rid(1)), Some(&in_flight));
    assert_eq!(e.user_quantity(user(1)), 2);
    assert_eq!(e.next_deadline(at(10)), Some(CLOSE), "a pinned hold is no deadline");
    assert_eq!(e.tick(at(15)), None);
    assert_eq!(e.reservation(rid(1)).unwrap().expires_at, at(10));

    let (paid, finish) = e.finish_confirm(&p.order_id, "key-1", captured(at(16)), at(16));

    let done = Payment {
        approved_at: Some(at(16)),
        method: Some("card".into()),
        ..moved(&in_flight, PaymentStatus::Done, at(16))
    };
    assert_eq!(paid, Some(done.clone()));
    let expected = ChangeSet {
        seq: seq + 2,
        at: at(16),
        changes: vec![
            seat(0, SeatStatus::Sold),
            seat(1, SeatStatus::Sold),
            res(1, 1, ReservationStatus::Confirmed),
            rec(&done),
        ],
    };
    assert_eq!(finish, ConfirmFinish::Confirmed(expected));
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Confirmed));
    assert_eq!(e.counts(), counts(34, 0, 2));
    assert_eq!(e.tick(at(20)), None);
}

#[test]
fn a_decline_after_the_pinned_hold_lapsed_expires_it_in_the_same_change_set() {
    // Two seats and no standing tickets: holding both sells the event out.
    let mut e = event_with(LayoutSpec::grid(1, 1, 2, 100), 0, rules(), OPEN);
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    assert_eq!(e.status(), EventStatus::SoldOut);
    let p = prepare(&mut e, 1, at(1));
    assert_eq!(p.amount, 200);
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(9));
    assert_eq!(e.tick(at(10)), None, "pinned: nothing lapses");
    assert_eq!((e.counts(), e.status()), (counts(0, 2, 0), EventStatus::SoldOut));
    let seq = e.seq();

    let (last, finish) = e.finish_confirm(&p.order_id, "key-1", declined(), at(12));

    let failed = Payment { failure: Some(failure()), ..moved(&in_flight, PaymentStatus::Failed, at(12)) };
    let aborted = moved(&failed, PaymentStatus::Aborted, at(12));
    assert_eq!(last, Some(aborted.clone()), "the payment ends aborted");
    let expected = ChangeSet {
        seq: seq + 1,
        at: at(12),
        changes: vec![
            rec(&failed),
            rec(&aborted),
            seat(0, SeatStatus::Available),
            seat(1, SeatStatus::Available),
            res(1, 1, ReservationStatus::Expired),
            Change::EventStatus(EventStatus::OnSale),
        ],
    };
    assert_eq!(finish, ConfirmFinish::Declined(expected));
    assert_eq!((e.reservation(rid(1)), e.payment(rid(1))), (None, None));
    assert_eq!((e.counts(), e.status(), e.user_quantity(user(1))), (counts(2, 0, 0), EventStatus::OnSale, 0));
    assert_eq!(e.prepare(rid(1), at(12)), Err(EngineError::ReservationNotFound));
    assert_eq!(e.tick(at(13)), None);
}

#[test]
fn a_decline_after_the_hold_lapsed_expires_it_even_if_no_sweep_ran() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(2));

    let (last, finish) = e.finish_confirm(&p.order_id, "key-1", declined(), at(10));

    let failed = Payment { failure: Some(failure()), ..moved(&in_flight, PaymentStatus::Failed, at(10)) };
    let aborted = moved(&failed, PaymentStatus::Aborted, at(10));
    assert_eq!(last, Some(aborted.clone()));
    let changes =
        vec![rec(&failed), rec(&aborted), seat(0, SeatStatus::Available), res(1, 1, ReservationStatus::Expired)];
    assert_eq!(finish, ConfirmFinish::Declined(ChangeSet { seq: 4, at: at(10), changes }));
    assert_eq!((e.reservation(rid(1)), e.counts()), (None, counts(36, 0, 0)));
    // The stale expiry entry surfaces and is skipped.
    assert_eq!(e.tick(at(11)), None);
    assert_eq!(e.seq(), 4);
}

// 6. expiry with nothing in flight

#[test]
fn the_sweep_aborts_prepared_payments_with_their_holds_and_a_lapsed_hold_cannot_start_a_confirmation() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-2"], OPEN).unwrap();
    let first = prepare(&mut e, 1, at(1));
    let second = prepare(&mut e, 2, at(2));
    let seq = e.seq();

    // Past its expiry, before the sweep: too late to pay.
    assert_eq!(e.begin_confirm(&second.order_id, "key-2", 200, at(10)), Err(EngineError::HoldExpired));
    assert_eq!((e.payment(rid(2)), e.seq()), (Some(&second), seq));
    // Preparing again is too late as well.
    assert_eq!(e.prepare(rid(2), at(10)), Err(EngineError::HoldExpired));

    let swept = e.tick(at(10)).expect("both holds lapse");

    let expected = ChangeSet {
        seq: seq + 1,
        at: at(10),
        changes: vec![
            rec(&moved(&first, PaymentStatus::Aborted, at(10))),
            seat(0, SeatStatus::Available),
            res(1, 1, ReservationStatus::Expired),
            rec(&moved(&second, PaymentStatus::Aborted, at(10))),
            seat(1, SeatStatus::Available),
            res(2, 2, ReservationStatus::Expired),
        ],
    };
    assert_eq!(swept, expected);
    assert_eq!((e.payment(rid(1)), e.payment(rid(2))), (None, None));
    assert_eq!(e.counts(), counts(36, 0, 0));
    assert_eq!(e.begin_confirm(&first.order_id, "key-1", 200, at(11)), Err(EngineError::PaymentNotFound));
    assert_eq!(e.seq(), seq + 1);
}

#[test]
fn the_sweep_aborts_a_declined_payment_keeping_its_failure() {
    let mut e = event();
    hold_general(&mut e, 1, 1, 2, OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(2));
    let (failed, _) = e.finish_confirm(&p.order_id, "key-1", declined(), at(3));
    let failed = failed.unwrap();
    assert_eq!(general_counters(&e), (2, 0));

    let swept = e.tick(at(10)).unwrap();

    let aborted = moved(&failed, PaymentStatus::Aborted, at(10));
    assert_eq!(aborted.failure, Some(failure()));
    assert_eq!(
        swept.changes,
        [rec(&aborted), Change::General { ticket_type: ga(), held: 0, sold: 0 }, res(1, 1, ReservationStatus::Expired)]
    );
    assert_eq!((general_counters(&e), e.user_quantity(user(1))), ((0, 0), 0));
}

// 7. cancellation races

#[test]
fn cancelling_is_refused_while_a_payment_is_in_flight_or_paid_and_aborts_an_unpaid_one() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-2"], OPEN).unwrap();
    hold_seats(&mut e, 3, 3, &["S1-A-3"], OPEN).unwrap();
    hold_seats(&mut e, 4, 4, &["S1-A-4"], OPEN).unwrap();
    let p1 = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p1, "key-1", at(1));
    let done = pay(&mut e, 2, "key-2", at(1));
    let ready = prepare(&mut e, 3, at(1));
    let p4 = prepare(&mut e, 4, at(1));
    begin(&mut e, &p4, "key-4", at(1));
    let (failed, _) = e.finish_confirm(&p4.order_id, "key-4", declined(), at(1));
    let failed = failed.unwrap();
    let seq = e.seq();

    assert_eq!(e.cancel(rid(1), at(2)), Err(EngineError::PaymentInProgress));
    assert_eq!(e.cancel(rid(2), at(2)), Err(EngineError::RefundRequired));
    assert_eq!(e.seq(), seq);
    assert_eq!((reservation_status(&e, 1), e.payment(rid(1))), (Some(ReservationStatus::Held), Some(&in_flight)));
    assert_eq!((reservation_status(&e, 2), e.payment(rid(2))), (Some(ReservationStatus::Confirmed), Some(&done)));
    assert_eq!((status_of(&e, "S1-A-1"), status_of(&e, "S1-A-2")), (SeatStatus::Held, SeatStatus::Sold));

    let cancelled = e.cancel(rid(3), at(2)).unwrap();
    let aborted = moved(&ready, PaymentStatus::Aborted, at(2));
    let changes = vec![rec(&aborted), seat(2, SeatStatus::Available), res(3, 3, ReservationStatus::Cancelled)];
    assert_eq!(cancelled, ChangeSet { seq: seq + 1, at: at(2), changes });
    assert_eq!((e.reservation(rid(3)), e.payment(rid(3))), (None, None));

    let cancelled = e.cancel(rid(4), at(3)).unwrap();
    let aborted = moved(&failed, PaymentStatus::Aborted, at(3));
    let changes = vec![rec(&aborted), seat(3, SeatStatus::Available), res(4, 4, ReservationStatus::Cancelled)];
    assert_eq!(cancelled, ChangeSet { seq: seq + 2, at: at(3), changes });

    // A refund in flight refuses a cancellation too.
    e.begin_refund(rid(2), at(4)).unwrap();
    assert_eq!(e.cancel(rid(2), at(5)), Err(EngineError::PaymentInProgress));
    assert_eq!(e.seq(), seq + 3);
    assert_eq!(e.counts(), counts(34, 1, 1));
}

// 8. refunds

#[test]
fn a_refund_cancels_the_reservation_once_the_provider_has_refunded() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    let done = pay(&mut e, 1, "key-1", at(1));
    assert_eq!((e.user_quantity(user(1)), e.seq()), (2, 4));

    let (cancelling, start) = e.begin_refund(rid(1), at(2)).unwrap();

    let expected = moved(&done, PaymentStatus::Cancelling, at(2));
    assert_eq!(cancelling, expected);
    assert_eq!(start, RefundStart::Started(ChangeSet { seq: 5, at: at(2), changes: vec![rec(&expected)] }));
    assert_eq!(e.unsettled_payments().collect::<Vec<_>>(), [&expected]);
    // Still confirmed, seats still sold, until the provider has refunded.
    assert_eq!((reservation_status(&e, 1), e.counts()), (Some(ReservationStatus::Confirmed), counts(34, 0, 2)));
    assert_eq!(e.begin_refund(rid(1), at(3)), Ok((expected.clone(), RefundStart::InFlight)));
    // The buyer's retried confirmation still gets its answer.
    assert_eq!(e.begin_confirm(&done.order_id, "key-1", 400, at(3)), Ok((expected.clone(), ConfirmStart::Done)));
    assert_eq!(e.begin_confirm(&done.order_id, "key-9", 400, at(3)), Err(EngineError::AlreadyPaid));
    assert_eq!(e.seq(), 5);

    let (refunded, cs) = e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(4) }, at(5)).unwrap();

    let expected = Payment { cancelled_at: Some(at(4)), ..moved(&expected, PaymentStatus::Cancelled, at(5)) };
    assert_eq!(refunded, expected);
    let changes = vec![
        rec(&expected),
        seat(0, SeatStatus::Available),
        seat(1, SeatStatus::Available),
        res(1, 1, ReservationStatus::Cancelled),
    ];
    assert_eq!(cs, ChangeSet { seq: 6, at: at(5), changes });
    assert_eq!((e.reservation(rid(1)), e.payment(rid(1))), (None, None));
    assert_eq!((e.counts(), e.user_quantity(user(1))), (counts(36, 0, 0), 0));
    assert_eq!(e.unsettled_payments().count(), 0);

    // A second report of the refund finds none in flight.
    assert_eq!(e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(4) }, at(6)), None);
    assert_eq!(e.begin_refund(rid(1), at(6)), Err(EngineError::ReservationNotFound));
    assert_eq!(e.seq(), 6);
}

#[test]
fn a_refused_refund_leaves_the_payment_done_with_the_failure_and_may_be_retried() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let done = pay(&mut e, 1, "key-1", at(1));
    e.begin_refund(rid(1), at(2)).unwrap();

    let refusal = PaymentFailure { code: "NOT_CANCELABLE_PAYMENT".into(), message: "Not cancelable.".into() };
    let (still_done, cs) = e.finish_refund(rid(1), RefundOutcome::Failed(refusal.clone()), at(3)).unwrap();

    let expected = Payment { failure: Some(refusal.clone()), ..moved(&done, PaymentStatus::Done, at(3)) };
    assert_eq!(still_done, expected);
    assert_eq!(cs, ChangeSet { seq: 6, at: at(3), changes: vec![rec(&expected)] });
    assert_eq!(
        (reservation_status(&e, 1), status_of(&e, "S1-A-1")),
        (Some(ReservationStatus::Confirmed), SeatStatus::Sold)
    );
    assert_eq!(e.unsettled_payments().count(), 0);
    assert_eq!(e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(4) }, at(4)), None, "none in flight");
    assert_eq!(e.cancel(rid(1), at(4)), Err(EngineError::RefundRequired));

    // A retry starts a new refund, clearing the old refusal.
    let (cancelling, _) = e.begin_refund(rid(1), at(5)).unwrap();
    assert_eq!(cancelling, Payment { failure: None, ..moved(&expected, PaymentStatus::Cancelling, at(5)) });
    let (refunded, _) = e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(6) }, at(6)).unwrap();
    assert_eq!(
        (refunded.status, refunded.cancelled_at, refunded.failure),
        (PaymentStatus::Cancelled, Some(at(6)), None)
    );
    assert_eq!(e.counts(), counts(36, 0, 0));
}

#[test]
fn only_a_captured_payment_of_a_confirmed_reservation_is_refunded() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 1, &["S1-A-2"], OPEN).unwrap();
    hold_seats(&mut e, 3, 1, &["S1-A-3"], OPEN).unwrap();
    hold_seats(&mut e, 4, 1, &["S1-A-4"], OPEN).unwrap();
    prepare(&mut e, 2, OPEN);
    let p3 = prepare(&mut e, 3, OPEN);
    begin(&mut e, &p3, "key-3", OPEN);
    let p4 = prepare(&mut e, 4, OPEN);
    begin(&mut e, &p4, "key-4", OPEN);
    e.finish_confirm(&p4.order_id, "key-4", declined(), OPEN);
    let seq = e.seq();

    assert_eq!(e.begin_refund(rid(9), at(1)), Err(EngineError::ReservationNotFound));
    assert_eq!(e.begin_refund(rid(1), at(1)), Err(EngineError::PaymentNotFound), "held, never prepared");
    assert_eq!(e.begin_refund(rid(2), at(1)), Err(EngineError::NotPaid), "held, prepared");
    assert_eq!(e.begin_refund(rid(3), at(1)), Err(EngineError::PaymentInProgress), "held, capture in flight");
    assert_eq!(e.begin_refund(rid(4), at(1)), Err(EngineError::NotPaid), "held, declined");
    for n in 1..=4 {
        assert_eq!(e.finish_refund(rid(n), RefundOutcome::Refunded { at: at(1) }, at(1)), None, "#{n}");
    }
    assert_eq!(e.finish_refund(rid(9), RefundOutcome::Failed(failure()), at(1)), None);
    assert_eq!(e.seq(), seq);
    assert_eq!(
        (1..=4).map(|n| payment_status(&e, n)).collect::<Vec<_>>(),
        [None, Some(PaymentStatus::Ready), Some(PaymentStatus::InProgress), Some(PaymentStatus::Failed)]
    );

    // Confirmed without a payment (the plain confirm): nothing to refund, cancel instead.
    e.confirm(rid(1), at(1)).unwrap();
    assert_eq!(e.begin_refund(rid(1), at(2)), Err(EngineError::PaymentNotFound));
    assert_eq!(e.cancel(rid(1), at(2)).unwrap().changes.last(), Some(&res(1, 1, ReservationStatus::Cancelled)));
}

// 9. orphans

/// The refund a capture under `key` for `order_id` at `t` is owed.
fn owed(order_id: &str, key: &str, t: Timestamp) -> OwedRefund {
    OwedRefund { order_id: order_id.into(), payment_key: key.into(), captured_at: t, since: t }
}

/// The change set that records `refund` as owed, at `seq`.
fn owing(seq: u64, refund: &OwedRefund) -> ConfirmFinish {
    ConfirmFinish::Orphaned(ChangeSet {
        seq,
        at: refund.since,
        changes: vec![Change::RefundOwed(Box::new(refund.clone()))],
    })
}

#[test]
fn a_capture_reported_for_a_declined_or_superseded_order_is_owed_back_once_and_sells_nothing() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(2));
    let (failed, _) = e.finish_confirm(&p.order_id, "key-1", declined(), at(3));
    let failed = failed.unwrap();
    let seq = e.seq();

    // The provider captured after all: that money is owed back, and the debt is recorded.
    let first = owed(&p.order_id, "key-1", at(4));
    assert_eq!(
        e.finish_confirm(&p.order_id, "key-1", captured(at(4)), at(4)),
        (Some(failed.clone()), owing(seq + 1, &first))
    );
    // A second report of the capture, or a decline, is a second report.
    assert_eq!(
        e.finish_confirm(&p.order_id, "key-1", captured(at(4)), at(5)),
        (Some(failed.clone()), ConfirmFinish::AlreadySettled)
    );
    assert_eq!(
        e.finish_confirm(&p.order_id, "key-1", declined(), at(5)),
        (Some(failed.clone()), ConfirmFinish::AlreadySettled)
    );
    assert_eq!(e.seq(), seq + 1);
    assert_eq!(e.payment(rid(1)), Some(&failed));
    assert_eq!((reservation_status(&e, 1), status_of(&e, "S1-A-1")), (Some(ReservationStatus::Held), SeatStatus::Held));

    // A new attempt is prepared and in flight; a capture under the first order is still
    // the one owed, and leaves the new attempt as it is.
    let (second, _) = e.prepare(rid(1), at(5)).unwrap();
    let (retry, _) = begin(&mut e, &second, "key-2", at(5));
    let seq = e.seq();
    assert_eq!(e.finish_confirm(&p.order_id, "key-1", captured(at(6)), at(6)), (None, ConfirmFinish::AlreadySettled));
    assert_eq!((e.payment(rid(1)), e.seq()), (Some(&retry), seq));

    // A capture for an order id that is not ours, or under another key than the current
    // attempt's: each is owed back on its own.
    let stranger = owed("nonsense", "key-9", at(6));
    assert_eq!(e.finish_confirm("nonsense", "key-9", captured(at(6)), at(6)), (None, owing(seq + 1, &stranger)));
    let wrong_key = owed(&second.order_id, "key-1b", at(7));
    assert_eq!(
        e.finish_confirm(&second.order_id, "key-1b", captured(at(7)), at(7)),
        (Some(retry.clone()), owing(seq + 2, &wrong_key))
    );
    assert_eq!(e.payment(rid(1)), Some(&retry));
    let mut all: Vec<_> = e.owed_refunds().cloned().collect();
    all.sort_by(|a, b| a.since.cmp(&b.since).then(a.payment_key.cmp(&b.payment_key)));
    assert_eq!(all, [first, stranger, wrong_key]);
}

#[test]
fn a_capture_reported_after_the_reservation_ended_is_owed_back() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(2));
    e.finish_confirm(&p.order_id, "key-1", declined(), at(3));
    e.tick(at(10)).expect("the hold lapses");
    let seq = e.seq();

    let refund = owed(&p.order_id, "key-1", at(11));
    assert_eq!(e.finish_confirm(&p.order_id, "key-1", captured(at(11)), at(11)), (None, owing(seq + 1, &refund)));
    assert_eq!(e.finish_confirm(&p.order_id, "key-1", declined(), at(11)), (None, ConfirmFinish::AlreadySettled));
    assert_eq!((e.seq(), e.reservation(rid(1)), e.counts()), (seq + 1, None, counts(36, 0, 0)));
    assert_eq!(e.owed_refunds().collect::<Vec<_>>(), [&refund]);
}

#[test]
fn a_refund_paid_clears_its_debt_once_and_an_unpaid_one_survives_a_restore() {
    let mut e = event();
    for (n, seat) in [(1, "S1-A-1"), (2, "S1-A-2")] {
        hold_seats(&mut e, n, n, &[seat], OPEN).unwrap();
    }
    let mut debts = Vec::new();
    for n in [1, 2] {
        let p = prepare(&mut e, n, at(1));
        let key = format!("key-{n}");
        begin(&mut e, &p, &key, at(2));
        e.finish_confirm(&p.order_id, &key, declined(), at(3));
        e.finish_confirm(&p.order_id, &key, captured(at(4)), at(4));
        debts.push(owed(&p.order_id, &key, at(4)));
    }
    let seq = e.seq();

    let paid = e.refund_paid("key-1", at(5), at(6));
    let expected = ChangeSet {
        seq: seq + 1,
        at: at(6),
        changes: vec![Change::RefundPaid { payment_key: "key-1".into(), at: at(5), by_hand: None }],
    };
    assert_eq!(paid, Some(expected));
    assert_eq!(e.refund_paid("key-1", at(5), at(7)), None, "a second report");
    assert_eq!(e.refund_paid("key-unknown", at(5), at(7)), None);
    assert_eq!((e.seq(), e.owed_refunds().collect::<Vec<_>>()), (seq + 1, vec![&debts[1]]));

    // What the store keeps comes back, and is still owed.
    let persisted = Persisted {
        live: e.reservations().cloned().collect(),
        seq: e.seq(),
        serial: e.serial(),
        status: e.status(),
        owed_refunds: vec![debts[1].clone()],
        ..Persisted::default()
    };
    let (mut restored, _) =
        EventEngine::restore(event_id(), rules(), SeatMap::new(&layout()).unwrap(), standing(10), persisted, at(8));
    assert_eq!(restored.owed_refunds().collect::<Vec<_>>(), [&debts[1]]);
    assert!(restored.refund_paid("key-2", at(9), at(9)).is_some());
    assert_eq!(restored.owed_refunds().count(), 0);
}

#[test]
fn an_admin_settles_a_debt_by_hand_once_and_it_is_no_longer_owed() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(2));
    e.finish_confirm(&p.order_id, "key-1", declined(), at(3));
    e.finish_confirm(&p.order_id, "key-1", captured(at(4)), at(4));
    let seq = e.seq();
    let by = SettledByHand { admin: UserId(Uuid::from_u128(99)), reason: "refunded by bank transfer".into() };

    let settled = e.settle_owed("key-1", by.clone(), at(6));
    let expected = ChangeSet {
        seq: seq + 1,
        at: at(6),
        changes: vec![Change::RefundPaid {
            payment_key: "key-1".into(),
            at: at(6),
            by_hand: Some(Box::new(by.clone())),
        }],
    };
    assert_eq!(settled, Some((owed(&p.order_id, "key-1", at(4)), expected)));
    assert_eq!(e.owed_refunds().count(), 0);
    // Settled once: neither a second settlement nor the provider's late refund changes anything.
    assert_eq!(e.settle_owed("key-1", by.clone(), at(7)), None);
    assert_eq!(e.refund_paid("key-1", at(7), at(7)), None);
    assert_eq!(e.settle_owed("key-unknown", by, at(7)), None);
    assert_eq!(e.seq(), seq + 1);
    // The hold is untouched: a new attempt may still pay for it.
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held));
}

// 10. cancelling the event

#[test]
fn cancelling_the_event_releases_plain_holds_and_leaves_one_in_flight_to_its_capture() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-2"], OPEN).unwrap();
    let p1 = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p1, "key-1", at(1));
    let ready = prepare(&mut e, 2, at(1));
    let seq = e.seq();

    let cs = e.cancel_event(at(2)).expect("cancelling changes the event");

    let changes = vec![
        rec(&moved(&ready, PaymentStatus::Aborted, at(2))),
        seat(1, SeatStatus::Available),
        res(2, 2, ReservationStatus::Cancelled),
        Change::EventStatus(EventStatus::Cancelled),
    ];
    assert_eq!(cs, ChangeSet { seq: seq + 1, at: at(2), changes });
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held));
    assert_eq!(e.payment(rid(1)), Some(&in_flight));
    assert_eq!((status_of(&e, "S1-A-1"), status_of(&e, "S1-A-2")), (SeatStatus::Held, SeatStatus::Available));
    assert_eq!((e.counts(), e.user_quantity(user(1)), e.user_quantity(user(2))), (counts(35, 1, 0), 1, 0));

    let (paid, finish) = e.finish_confirm(&p1.order_id, "key-1", captured(at(3)), at(3));

    let done = Payment {
        approved_at: Some(at(3)),
        method: Some("card".into()),
        ..moved(&in_flight, PaymentStatus::Done, at(3))
    };
    assert_eq!(paid, Some(done.clone()));
    let changes = vec![seat(0, SeatStatus::Sold), res(1, 1, ReservationStatus::Confirmed), rec(&done)];
    assert_eq!(finish, ConfirmFinish::Confirmed(ChangeSet { seq: seq + 2, at: at(3), changes }));
    assert_eq!((reservation_status(&e, 1), e.status()), (Some(ReservationStatus::Confirmed), EventStatus::Cancelled));
    assert_eq!(e.counts(), counts(35, 0, 1));
}

/// FAILS against the engine as written (see the report): `cancel_event` leaves a hold whose
/// capture is in flight to that capture's outcome, but when the outcome is a decline
/// `finish_confirm` only looks at the hold's expiry. The hold stays `Held` in a cancelled
/// event, and the buyer may prepare and pay a new attempt for it.
#[test]
fn a_capture_declined_after_the_event_was_cancelled_releases_the_hold() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    begin(&mut e, &p, "key-1", at(1));
    e.cancel_event(at(2)).expect("the event is cancelled");
    assert_eq!(reservation_status(&e, 1), Some(ReservationStatus::Held), "pinned by the capture in flight");

    let (_, finish) = e.finish_confirm(&p.order_id, "key-1", declined(), at(3));

    // An unpaid hold does not outlive the event's cancellation.
    let ConfirmFinish::Declined(cs) = finish else { panic!("a decline") };
    assert!(cs.changes.contains(&res(1, 1, ReservationStatus::Cancelled)), "{:?}", cs.changes);
    assert_eq!((e.reservation(rid(1)), e.payment(rid(1))), (None, None));
    assert_eq!((status_of(&e, "S1-A-1"), e.user_quantity(user(1))), (SeatStatus::Available, 0));
    assert_eq!(e.prepare(rid(1), at(4)), Err(EngineError::ReservationNotFound));
}

// 11. restore

#[test]
fn a_restore_leaves_out_attempts_that_had_ended() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    // Paid at the box office: the prepared attempt is aborted and leaves the engine.
    e.confirm(rid(1), at(2)).unwrap().expect("confirmed");
    assert_eq!(e.payment(rid(1)), None);
    let aborted = moved(&p, PaymentStatus::Aborted, at(2));

    // The store still hands back that attempt as the reservation's latest.
    let persisted = Persisted {
        live: e.reservations().cloned().collect(),
        seq: e.seq(),
        serial: e.serial(),
        status: e.status(),
        payments: vec![aborted],
        ..Persisted::default()
    };
    let (mut restored, changed) =
        EventEngine::restore(event_id(), rules(), SeatMap::new(&layout()).unwrap(), standing(10), persisted, at(3));

    // As if the engine had never stopped: no payment, and nothing to pay for.
    assert_eq!(changed, None);
    assert_eq!(restored.payment(rid(1)), None);
    let confirmed = ReservationStatus::Confirmed;
    assert_eq!(restored.prepare(rid(1), at(3)), Err(EngineError::InvalidTransition { from: confirmed, to: confirmed }));
    assert_eq!(e.prepare(rid(1), at(3)), Err(EngineError::InvalidTransition { from: confirmed, to: confirmed }));
}

#[test]
fn a_restore_keeps_the_payment_in_flight_pinned_and_expires_a_lapsed_hold_with_its_prepared_payment() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    hold_seats(&mut e, 2, 2, &["S1-A-2", "S1-A-3"], OPEN).unwrap();
    hold_seats(&mut e, 3, 3, &["S1-A-4"], OPEN).unwrap();
    hold_seats(&mut e, 4, 4, &["S1-A-5"], OPEN).unwrap();
    let ready = prepare(&mut e, 1, at(1));
    let p2 = prepare(&mut e, 2, at(1));
    let (in_flight, _) = begin(&mut e, &p2, "key-2", at(2));
    let done = pay(&mut e, 3, "key-3", at(2));
    // An ended reservation's last payment record, which the store may still hand back.
    let p4 = prepare(&mut e, 4, at(2));
    e.cancel(rid(4), at(3)).unwrap();
    let stale = moved(&p4, PaymentStatus::Aborted, at(3));

    let mut live: Vec<_> = e.reservations().cloned().collect();
    live.sort_by_key(|r| r.id);
    assert_eq!(live.iter().map(|r| r.id).collect::<Vec<_>>(), [rid(1), rid(2), rid(3)]);
    let persisted = Persisted {
        live,
        seq: e.seq(),
        serial: e.serial(),
        status: e.status(),
        payments: vec![ready.clone(), in_flight.clone(), done.clone(), stale],
        ..Persisted::default()
    };
    let seq = e.seq();
    assert_eq!(seq, 12);

    let (mut r, changed) =
        EventEngine::restore(event_id(), rules(), SeatMap::new(&layout()).unwrap(), standing(10), persisted, at(12));

    let changes = vec![
        rec(&moved(&ready, PaymentStatus::Aborted, at(12))),
        seat(0, SeatStatus::Available),
        res(1, 1, ReservationStatus::Expired),
    ];
    assert_eq!(changed, Some(ChangeSet { seq: seq + 1, at: at(12), changes }));
    assert_eq!(r.unsettled_payments().collect::<Vec<_>>(), [&in_flight]);
    assert_eq!((r.reservation(rid(1)), r.payment(rid(1))), (None, None));
    assert_eq!((reservation_status(&r, 2), r.payment(rid(2))), (Some(ReservationStatus::Held), Some(&in_flight)));
    assert_eq!((reservation_status(&r, 3), r.payment(rid(3))), (Some(ReservationStatus::Confirmed), Some(&done)));
    assert_eq!(
        (r.reservation(rid(4)), r.payment(rid(4))),
        (None, None),
        "a payment without a live reservation is dropped"
    );
    assert_eq!(r.counts(), counts(33, 2, 1));
    assert_eq!(
        (status_of(&r, "S1-A-2"), status_of(&r, "S1-A-3"), status_of(&r, "S1-A-4")),
        (SeatStatus::Held, SeatStatus::Held, SeatStatus::Sold)
    );
    assert_eq!((r.user_quantity(user(1)), r.user_quantity(user(2)), r.user_quantity(user(3))), (0, 2, 1));
    assert_eq!(r.tick(at(13)), None, "still pinned");
    assert_eq!(r.cancel(rid(2), at(13)), Err(EngineError::PaymentInProgress));
    assert_eq!(r.cancel(rid(3), at(13)), Err(EngineError::RefundRequired));

    // Reconciling with the provider: it had captured.
    let (paid, finish) = r.finish_confirm(&in_flight.order_id, "key-2", captured(at(2)), at(14));
    let paid = paid.unwrap();
    assert_eq!((paid.status, paid.approved_at), (PaymentStatus::Done, Some(at(2))));
    let changes =
        vec![seat(1, SeatStatus::Sold), seat(2, SeatStatus::Sold), res(2, 2, ReservationStatus::Confirmed), rec(&paid)];
    assert_eq!(finish, ConfirmFinish::Confirmed(ChangeSet { seq: seq + 2, at: at(14), changes }));
    assert_eq!((r.counts(), r.unsettled_payments().count()), (counts(33, 0, 3), 0));
}

#[test]
fn a_restored_capture_in_flight_that_the_provider_declined_expires_its_lapsed_hold() {
    let mut e = event();
    hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let p = prepare(&mut e, 1, at(1));
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(2));
    let persisted = Persisted {
        live: e.reservations().cloned().collect(),
        seq: e.seq(),
        serial: e.serial(),
        status: e.status(),
        payments: vec![in_flight.clone()],
        ..Persisted::default()
    };

    let (mut r, changed) =
        EventEngine::restore(event_id(), rules(), SeatMap::new(&layout()).unwrap(), standing(10), persisted, at(30));

    assert_eq!(changed, None, "the pinned hold does not lapse");
    assert_eq!(r.seq(), 3);
    assert_eq!(r.unsettled_payments().collect::<Vec<_>>(), [&in_flight]);
    let (last, finish) = r.finish_confirm(&p.order_id, "key-1", declined(), at(31));
    assert_eq!(last.map(|p| p.status), Some(PaymentStatus::Aborted));
    let ConfirmFinish::Declined(cs) = finish else { panic!("a decline") };
    assert_eq!((cs.seq, cs.changes.last()), (4, Some(&res(1, 1, ReservationStatus::Expired))));
    assert_eq!((r.reservation(rid(1)), r.counts()), (None, counts(36, 0, 0)));
}

// 12. general admission

#[test]
fn a_captured_general_admission_reservation_moves_its_tickets_from_held_to_sold_and_a_refund_puts_them_back() {
    let mut e = event();
    hold_general(&mut e, 1, 1, 3, OPEN).unwrap();
    hold_general(&mut e, 2, 2, 2, OPEN).unwrap();
    assert_eq!(general_counters(&e), (5, 0));
    let p = prepare(&mut e, 1, at(1));
    assert_eq!(p.amount, 150);
    let (in_flight, _) = begin(&mut e, &p, "key-1", at(2));

    let (paid, finish) = e.finish_confirm(&p.order_id, "key-1", captured(at(3)), at(3));

    let done = Payment {
        approved_at: Some(at(3)),
        method: Some("card".into()),
        ..moved(&in_flight, PaymentStatus::Done, at(3))
    };
    assert_eq!(paid, Some(done.clone()));
    let changes = vec![
        Change::General { ticket_type: ga(), held: 2, sold: 3 },
        res(1, 1, ReservationStatus::Confirmed),
        rec(&done),
    ];
    assert_eq!(finish, ConfirmFinish::Confirmed(ChangeSet { seq: 5, at: at(3), changes }));
    assert_eq!((general_counters(&e), e.ticket_types()[0].available()), ((2, 3), 5));
    assert_eq!(e.counts(), counts(36, 0, 0), "no seat moves");

    e.begin_refund(rid(1), at(4)).unwrap();
    let (refunded, cs) = e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(5) }, at(5)).unwrap();
    let changes = vec![
        rec(&refunded),
        Change::General { ticket_type: ga(), held: 2, sold: 0 },
        res(1, 1, ReservationStatus::Cancelled),
    ];
    assert_eq!(cs, ChangeSet { seq: 7, at: at(5), changes });
    assert_eq!((general_counters(&e), e.user_quantity(user(1))), ((2, 0), 0));
}

// 13. the per-user limit

#[test]
fn the_per_user_limit_counts_a_paid_reservation_and_a_hold_until_the_refund() {
    let mut e = event_with(layout(), 10, EventRules { per_user_limit: 4, ..rules() }, OPEN);
    hold_seats(&mut e, 1, 1, &["S1-A-1", "S1-A-2"], OPEN).unwrap();
    pay(&mut e, 1, "key-1", at(1));
    hold_seats(&mut e, 2, 1, &["S1-B-1", "S1-B-2"], at(1)).unwrap();
    assert_eq!(
        (reservation_status(&e, 1), reservation_status(&e, 2)),
        (Some(ReservationStatus::Confirmed), Some(ReservationStatus::Held))
    );
    assert_eq!(e.user_quantity(user(1)), 4);
    let seq = e.seq();

    let refused = hold_seats(&mut e, 3, 1, &["S1-C-1"], at(2));
    assert_eq!(refused, Err(EngineError::LimitExceeded { limit: 4, current: 4, requested: 1 }));
    assert_eq!(
        hold_general(&mut e, 3, 1, 1, at(2)),
        Err(EngineError::LimitExceeded { limit: 4, current: 4, requested: 1 })
    );
    assert_eq!((e.seq(), e.serial(), e.reservation(rid(3))), (seq, 2, None));

    // A pinned hold past its expiry still counts.
    let p2 = prepare(&mut e, 2, at(2));
    begin(&mut e, &p2, "key-2", at(2));
    assert_eq!(e.tick(at(11)), None);
    assert_eq!(e.user_quantity(user(1)), 4);
    assert_eq!(
        hold_seats(&mut e, 3, 1, &["S1-C-1"], at(11)),
        Err(EngineError::LimitExceeded { limit: 4, current: 4, requested: 1 })
    );

    // Refunding the paid pair frees two places.
    e.begin_refund(rid(1), at(12)).unwrap();
    assert_eq!(e.user_quantity(user(1)), 4, "not until the refund is done");
    e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(12) }, at(12)).unwrap();
    assert_eq!(e.user_quantity(user(1)), 2);
    hold_seats(&mut e, 3, 1, &["S1-C-1", "S1-C-2"], at(12)).unwrap();
    assert_eq!(e.user_quantity(user(1)), 4);
}

// Sequence numbers

#[test]
fn every_payment_step_that_changes_something_takes_exactly_the_next_sequence_number() {
    let mut e = event();
    let held = hold_seats(&mut e, 1, 1, &["S1-A-1"], OPEN).unwrap();
    let (p, prepared) = e.prepare(rid(1), at(1)).unwrap();
    let (_, started) = begin(&mut e, &p, "key-1", at(2));
    let (_, ConfirmFinish::Confirmed(confirmed)) = e.finish_confirm(&p.order_id, "key-1", captured(at(3)), at(3))
    else {
        panic!("a capture")
    };
    let (_, RefundStart::Started(refunding)) = e.begin_refund(rid(1), at(4)).unwrap() else { panic!("a refund") };
    let (_, refunded) = e.finish_refund(rid(1), RefundOutcome::Refunded { at: at(5) }, at(5)).unwrap();

    let seqs = [held.seq, prepared.unwrap().seq, started.seq, confirmed.seq, refunding.seq, refunded.seq];
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    let ats = [started.at, confirmed.at, refunding.at, refunded.at];
    assert_eq!(ats, [at(2), at(3), at(4), at(5)]);
    assert_eq!(e.seq(), 6);
}
