//! The admission queue: order, pre-queue draw, rate, cap, heartbeats, sold-out pauses,
//! closing, the gate on holds and restore, each with exact expectations. Every change set
//! is also folded into a journal the way a store would keep it, and the journal must match
//! the engine's own members after every command.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use tiketi_engine::{
    ADMISSION_INTERVAL, Change, ChangeSet, EngineError, EventEngine, EventId, EventRules, EventStatus, HoldRequest,
    LayoutSpec, LeaveReason, Persisted, PriceTier, QueueChange, QueueMember, QueueSettings, QueueStanding,
    ReservationId, SeatMap, Selection, TicketTypeId, TicketTypeSpec, Timestamp, UserId,
};
use uuid::Uuid;

/// 2026-01-05T08:00:00Z.
const OPEN: Timestamp = Timestamp::from_millis(1_767_600_000_000);
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const CLOSE: Timestamp = ms(60 * MINUTE);

/// `offset` milliseconds after the sale opens (negative: before).
const fn ms(offset: i64) -> Timestamp {
    Timestamp::from_millis(OPEN.millis() + offset)
}

fn seed() -> [u8; 32] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
}

fn user(n: u128) -> UserId {
    UserId(Uuid::from_u128(0x5eed_0000 + n))
}

fn users(range: std::ops::RangeInclusive<u128>) -> Vec<UserId> {
    range.map(user).collect()
}

fn rid(n: u128) -> ReservationId {
    ReservationId(Uuid::from_u128(1_000 + n))
}

fn ga() -> TicketTypeId {
    TicketTypeId(Uuid::from_u128(7))
}

fn queue(rate_per_second: u32, max_active: u32) -> QueueSettings {
    QueueSettings { enabled: true, rate_per_second, max_active, ..QueueSettings::default() }
}

fn rules(queue: QueueSettings) -> EventRules {
    EventRules {
        sale_start: OPEN,
        sale_end: CLOSE,
        per_user_limit: 0,
        hold_ttl: Duration::from_secs(10 * 60),
        max_per_reservation: 10,
        cancelled: false,
        queue,
        queue_seed: seed(),
    }
}

/// A general-admission-only event with `capacity` tickets.
fn parts(capacity: u32) -> (SeatMap, Vec<TicketTypeSpec>) {
    let layout = LayoutSpec { tiers: vec![PriceTier { name: "GA".into(), price: 0 }], sections: vec![] };
    let seats = SeatMap::new(&layout).expect("an empty layout with one tier is valid");
    (seats, vec![TicketTypeSpec { id: ga(), name: "Standing".into(), price: 50, capacity }])
}

/// SHA-256(seed ‖ user id bytes), the documented pre-queue key.
fn draw_key(seed: &[u8], user: UserId) -> Vec<u8> {
    Sha256::new().chain_update(seed).chain_update(user.uuid().as_bytes()).finalize().to_vec()
}

/// `users` in the order the documented rule draws them.
fn drawn(seed: &[u8], users: &[UserId]) -> Vec<UserId> {
    let mut keyed: Vec<(Vec<u8>, UserId)> = users.iter().map(|&u| (draw_key(seed, u), u)).collect();
    keyed.sort();
    keyed.into_iter().map(|(_, u)| u).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits")).collect()
}

fn queue_changes(cs: Option<&ChangeSet>) -> Vec<QueueChange> {
    cs.map_or_else(Vec::new, |cs| {
        cs.changes
            .iter()
            .filter_map(|c| match c {
                Change::Queue(q) => Some(q.clone()),
                _ => None,
            })
            .collect()
    })
}

fn admitted(cs: Option<&ChangeSet>) -> Vec<UserId> {
    queue_changes(cs)
        .into_iter()
        .filter_map(|q| match q {
            QueueChange::Admitted { user, .. } => Some(user),
            _ => None,
        })
        .collect()
}

fn without_estimate(standing: QueueStanding) -> QueueStanding {
    match standing {
        QueueStanding::Waiting { position, .. } => QueueStanding::Waiting { position, estimated_wait: None },
        other => other,
    }
}

fn left(user: UserId, reason: LeaveReason) -> Change {
    Change::Queue(QueueChange::Left { user, reason })
}

fn admission(user: UserId, until: Timestamp) -> Change {
    Change::Queue(QueueChange::Admitted { user, until })
}

/// What a store keeps of the queue, folded from change sets alone, with a model of the
/// line's order to check every admission and position against.
#[derive(Debug, Clone, Default)]
struct Journal {
    members: BTreeMap<UserId, QueueMember>,
    opened: bool,
    seq: u64,
    /// Waiting buyers in the order they must be admitted (after opening).
    line: Vec<UserId>,
    /// The pre-queue before the draw.
    pre: Vec<UserId>,
}

impl Journal {
    fn apply(&mut self, cs: &ChangeSet) {
        assert!(cs.seq > self.seq, "change sets are stamped in order");
        self.seq = cs.seq;
        for change in &cs.changes {
            let Change::Queue(q) = change else { continue };
            match *q {
                QueueChange::Joined { user, ticket, at } => {
                    let member = QueueMember { user, ticket, joined_at: at, admitted_until: None };
                    assert!(self.members.insert(user, member).is_none(), "{user} joined twice");
                    match ticket {
                        Some(t) => {
                            assert!(self.opened, "a FIFO ticket only after opening");
                            let last = self.line.iter().filter_map(|u| self.members[u].ticket).max();
                            assert!(last.is_none_or(|last| t > last), "tickets increase");
                            self.line.push(user);
                        }
                        None => {
                            assert!(!self.opened, "the pre-queue closes at opening");
                            self.pre.push(user);
                        }
                    }
                }
                QueueChange::Opened => {
                    assert!(!self.opened, "opens once");
                    self.opened = true;
                    let mut line = drawn(&seed(), &std::mem::take(&mut self.pre));
                    line.append(&mut self.line);
                    self.line = line;
                }
                QueueChange::Admitted { user, until } => {
                    assert_eq!(self.line.first(), Some(&user), "admitted from the front");
                    self.line.remove(0);
                    self.members.get_mut(&user).expect("admits a member").admitted_until = Some(until);
                }
                QueueChange::Left { user, .. } => {
                    assert!(self.members.remove(&user).is_some(), "{user} left without being in");
                    self.line.retain(|&u| u != user);
                    self.pre.retain(|&u| u != user);
                }
            }
        }
    }

    fn persisted(&self, status: EventStatus) -> Persisted {
        Persisted {
            seq: self.seq,
            status,
            queue: self.members.values().cloned().collect(),
            queue_opened: self.opened,
            ..Persisted::default()
        }
    }

    /// The journal agrees with the engine: same members, same opening, same positions.
    fn check(&self, e: &EventEngine) {
        assert_eq!(self.members.values().cloned().collect::<Vec<_>>(), e.queue_members());
        assert_eq!(self.opened, e.queue_opened());
        for (i, &u) in self.line.iter().enumerate() {
            assert_eq!(e.queue_position(u), Some(i as u64 + 1), "position of {u}");
        }
        for &u in &self.pre {
            assert_eq!(e.queue_position(u), None, "no position before the draw");
        }
        let view = e.queue_view(OPEN);
        assert_eq!(view.waiting, (self.line.len() + self.pre.len()) as u64);
        assert_eq!(view.pre_queue, self.pre.len() as u64);
        assert_eq!(view.active, self.members.values().filter(|m| m.admitted_until.is_some()).count() as u64);
    }
}

/// An event with a queue, driven through the engine's commands, every change set folded
/// into a [`Journal`].
struct Room {
    e: EventEngine,
    journal: Journal,
}

impl Room {
    fn new(settings: QueueSettings, capacity: u32, now: Timestamp) -> Self {
        let (seats, types) = parts(capacity);
        let e = EventEngine::new(EventId(Uuid::from_u128(1)), rules(settings), seats, types, now);
        Self { e, journal: Journal::default() }
    }

    fn record(&mut self, cs: Option<ChangeSet>) -> Option<ChangeSet> {
        if let Some(cs) = &cs {
            self.journal.apply(cs);
        }
        self.journal.check(&self.e);
        cs
    }

    fn join(&mut self, who: u128, now: Timestamp) -> QueueStanding {
        self.join_with_changes(who, now).0
    }

    fn join_with_changes(&mut self, who: u128, now: Timestamp) -> (QueueStanding, Option<ChangeSet>) {
        let (standing, cs) = self.e.join_queue(user(who), now).expect("the queue takes joiners");
        (standing, self.record(cs))
    }

    fn tick(&mut self, now: Timestamp) -> Option<ChangeSet> {
        let cs = self.e.tick(now);
        self.record(cs)
    }

    fn leave(&mut self, who: u128, now: Timestamp) -> Option<ChangeSet> {
        self.leave_user(user(who), now)
    }

    fn leave_user(&mut self, u: UserId, now: Timestamp) -> Option<ChangeSet> {
        let cs = self.e.leave_queue(u, now);
        self.record(cs)
    }

    fn poll(&mut self, who: u128, now: Timestamp) -> QueueStanding {
        self.e.queue_status(user(who), now)
    }

    /// One general-admission ticket for `who`, showing an admission token.
    fn reserve(&mut self, n: u128, who: u128, now: Timestamp) -> Result<ChangeSet, EngineError> {
        self.hold(n, who, 1, true, now)
    }

    fn hold(
        &mut self,
        n: u128,
        who: u128,
        quantity: u32,
        admitted: bool,
        now: Timestamp,
    ) -> Result<ChangeSet, EngineError> {
        let selection = Selection::General { ticket_type: ga(), quantity };
        let cs = self.e.hold(HoldRequest { id: rid(n), user: user(who), selection, admitted }, now)?;
        Ok(self.record(Some(cs)).expect("a hold changes something"))
    }

    /// The engine rebuilt from the journal at `now`, in a room of its own.
    fn restored(&self, now: Timestamp) -> (Room, Option<ChangeSet>) {
        let (seats, types) = parts(self.e.ticket_types()[0].spec.capacity);
        let persisted = self.journal.persisted(self.e.status());
        let (e, cs) = EventEngine::restore(self.e.event(), self.e.rules().clone(), seats, types, persisted, now);
        let mut room = Room { e, journal: self.journal.clone() };
        let cs = room.record(cs);
        (room, cs)
    }
}

#[test]
fn queue_settings_default_to_disabled_100_a_second_no_cap_ten_minutes_to_reserve_and_a_minute_of_silence() {
    let d = QueueSettings::default();
    assert_eq!(
        (d.enabled, d.rate_per_second, d.max_active, d.admission_ttl, d.heartbeat_ttl),
        (false, 100, 0, Duration::from_secs(600), Duration::from_secs(60))
    );
}

#[test]
fn with_the_queue_disabled_joining_is_refused_and_holds_need_no_admission() {
    let mut room = Room::new(QueueSettings::default(), 10, OPEN);

    assert_eq!(room.e.join_queue(user(1), OPEN), Err(EngineError::QueueDisabled));
    assert_eq!(room.e.queue_status(user(1), OPEN), QueueStanding::NotQueued);
    assert!(room.hold(1, 1, 2, false, OPEN).is_ok());
    assert_eq!(room.e.queue_view(OPEN).seed, None, "a disabled queue never opens");
    assert_eq!(room.tick(ms(1)), None);
}

#[test]
fn a_buyer_who_finds_room_is_admitted_on_joining() {
    let mut room = Room::new(queue(0, 0), 10, ms(-MINUTE));

    // No tick has run since sale start: the join moves the status, opens and admits.
    let (standing, cs) = room.join_with_changes(1, OPEN);

    let until = ms(10 * MINUTE);
    assert_eq!(standing, QueueStanding::Admitted { until });
    let cs = cs.unwrap();
    let [Change::EventStatus(EventStatus::OnSale), Change::Queue(QueueChange::Opened), Change::Queue(joined), admitted] =
        &cs.changes[..]
    else {
        panic!("status, opening, join and admission, got {:?}", cs.changes)
    };
    assert!(matches!(joined, QueueChange::Joined { user: u, ticket: Some(_), at } if *u == user(1) && *at == OPEN));
    assert_eq!(admitted, &admission(user(1), until));
    assert_eq!(room.e.queue_admission(user(1), OPEN), Some(until));
}

#[test]
fn joining_again_changes_nothing_and_counts_as_a_heartbeat() {
    let mut room = Room::new(queue(0, 1), 10, OPEN);
    room.join(1, OPEN);
    // One admission observed in the first second: one second a place.
    let expected = QueueStanding::Waiting { position: Some(1), estimated_wait: Some(Duration::from_secs(1)) };
    assert_eq!(room.join(2, OPEN), expected);
    let seq = room.e.seq();

    let (again, cs) = room.join_with_changes(2, ms(50 * SECOND));

    assert_eq!(cs, None);
    assert_eq!(room.e.seq(), seq);
    assert!(matches!(again, QueueStanding::Waiting { position: Some(1), .. }));
    // Seen at 50 s, so still in at 60 s and gone at 110 s.
    assert_eq!(room.tick(ms(60 * SECOND)), None);
    assert_eq!(room.tick(ms(110 * SECOND)).unwrap().changes, [left(user(2), LeaveReason::Dropped)]);
}

#[test]
fn a_buyer_whose_admission_lapsed_joins_again_at_the_back() {
    let mut room = Room::new(QueueSettings { admission_ttl: Duration::from_secs(60), ..queue(0, 1) }, 10, OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);
    room.poll(2, ms(50 * SECOND));

    // The lapse is due but no tick has run.
    let (standing, cs) = room.join_with_changes(1, ms(MINUTE));

    assert!(matches!(standing, QueueStanding::Waiting { position: Some(1), .. }));
    let changes = queue_changes(cs.as_ref());
    assert_eq!(changes[0], QueueChange::Left { user: user(1), reason: LeaveReason::Lapsed });
    assert!(matches!(changes[1], QueueChange::Joined { user: u, at, .. } if u == user(1) && at == ms(MINUTE)));
    assert_eq!(
        changes[2..],
        [QueueChange::Admitted { user: user(2), until: ms(2 * MINUTE) }],
        "the one ahead goes first"
    );
    assert_eq!(room.e.queue_position(user(1)), Some(1));
}

#[test]
fn buyers_are_admitted_first_come_first_served() {
    let mut room = Room::new(queue(0, 1), 10, ms(-MINUTE));
    assert_eq!(
        room.tick(OPEN).unwrap().changes,
        [Change::EventStatus(EventStatus::OnSale), Change::Queue(QueueChange::Opened)]
    );
    let mut order = Vec::new();
    for who in 1..=5 {
        let (standing, cs) = room.join_with_changes(who, ms(who as i64));
        order.extend(admitted(cs.as_ref()));
        let expected = if who == 1 { None } else { Some(who as u64 - 1) };
        assert_eq!(room.e.queue_position(user(who)), expected);
        assert_eq!(matches!(standing, QueueStanding::Admitted { .. }), who == 1);
    }

    for n in 1..=5 {
        let now = ms(n as i64 * SECOND);
        let current = *order.last().unwrap();
        let who = (1..=5).find(|&w| user(w) == current).unwrap();
        let cs = room.reserve(n, who, now).unwrap();
        assert!(cs.changes.contains(&left(current, LeaveReason::Reserved)));
        assert!(admitted(Some(&cs)).is_empty(), "the next buyer goes in at the following tick");
        order.extend(admitted(room.tick(now).as_ref()));
    }

    assert_eq!(order, users(1..=5));
    assert_eq!(room.e.queue_view(ms(5 * SECOND)).active, 0);
}

#[test]
fn the_pre_queue_is_drawn_from_the_seed_and_anyone_can_check_it() {
    let settings = QueueSettings { heartbeat_ttl: Duration::from_secs(3600), ..queue(1, 0) };
    let mut room = Room::new(settings, 10, ms(-10 * MINUTE));
    let view = room.e.queue_view(ms(-10 * MINUTE));
    assert_eq!((view.seed.as_deref(), view.opened), (None, false), "the seed stays secret until opening");
    assert_eq!(view.seed_hash, hex(&Sha256::digest(seed())));

    for who in 1..=20 {
        let now = ms(-10 * MINUTE + who as i64 * SECOND);
        let standing = room.join(who, now);
        assert_eq!(standing, QueueStanding::Waiting { position: None, estimated_wait: Some(now.until(OPEN)) });
    }
    assert_eq!((room.e.queue_view(ms(-1)).pre_queue, room.e.queue_view(ms(-1)).waiting), (20, 20));

    let opened = room.tick(OPEN).unwrap();

    assert_eq!(opened.changes, [Change::EventStatus(EventStatus::OnSale), Change::Queue(QueueChange::Opened)]);
    let view = room.e.queue_view(OPEN);
    let revealed = unhex(view.seed.as_deref().expect("revealed at opening"));
    assert_eq!(hex(&Sha256::digest(&revealed)), view.seed_hash, "the revealed seed matches the published hash");
    let expected = drawn(&revealed, &users(1..=20));
    assert_ne!(expected, users(1..=20), "the draw shuffles");
    for (i, &u) in expected.iter().enumerate() {
        assert_eq!(room.e.queue_position(u), Some(i as u64 + 1));
    }
    room.join(21, ms(1));
    assert_eq!(room.e.queue_position(user(21)), Some(21), "a joiner after opening goes behind the pre-queue");

    let mut order = Vec::new();
    for s in 1..=21 {
        order.extend(admitted(room.tick(ms(s * SECOND)).as_ref()));
    }
    let mut expected = expected;
    expected.push(user(21));
    assert_eq!(order, expected);
}

#[test]
fn admissions_keep_to_the_rate_over_simulated_time() {
    let mut room = Room::new(queue(10, 0), 200, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=100 {
        assert!(matches!(room.join(who, OPEN), QueueStanding::Waiting { position: Some(p), .. } if p == who as u64));
    }

    let mut total = 0;
    for step in 1..=500 {
        let t = step * 10;
        total += admitted(room.tick(ms(t)).as_ref()).len() as i64;
        // One admission per 100 ms from an empty bucket at opening, never more than the rate
        // times the time plus one bucket.
        assert_eq!(total, t / 100, "at {t} ms");
        assert!(total <= 10 * t / 1000 + 10);
    }
    assert_eq!(total, 50);
    assert_eq!(room.e.queue_view(ms(5 * SECOND)).admitted_total, 50);
}

#[test]
fn an_idle_queue_saves_up_at_most_one_second_of_admissions() {
    let mut room = Room::new(queue(10, 0), 200, ms(-MINUTE));
    room.tick(OPEN);

    let mut at_once = 0;
    for who in 1..=30 {
        if matches!(room.join(who, ms(MINUTE)), QueueStanding::Admitted { .. }) {
            at_once += 1;
        }
    }

    assert_eq!(at_once, 10, "one full bucket");
    assert_eq!(room.e.queue_position(user(11)), Some(1));
    assert_eq!(admitted(room.tick(ms(MINUTE + 99)).as_ref()), []);
    assert_eq!(admitted(room.tick(ms(MINUTE + 100)).as_ref()), [user(11)]);
}

#[test]
fn admissions_go_out_in_batches_at_the_admission_interval() {
    let mut room = Room::new(queue(100, 0), 200, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=50 {
        room.join(who, OPEN);
    }
    assert_eq!(ADMISSION_INTERVAL, Duration::from_millis(50));

    assert_eq!(room.e.next_deadline(OPEN), Some(ms(10)), "the first credit");
    assert_eq!(admitted(room.tick(ms(10)).as_ref()), [user(1)]);
    assert_eq!(room.e.next_deadline(ms(10)), Some(ms(60)), "not before the interval");
    assert_eq!(admitted(room.tick(ms(60)).as_ref()), users(2..=6));
    assert_eq!(room.e.next_deadline(ms(60)), Some(ms(110)));
    assert_eq!(admitted(room.tick(ms(110)).as_ref()), users(7..=11));
}

#[test]
fn an_active_cap_of_three_admits_three_until_a_slot_frees() {
    let mut room = Room::new(queue(0, 3), 10, ms(-MINUTE));
    room.tick(OPEN);

    let standings: Vec<QueueStanding> = (1..=6).map(|who| room.join(who, OPEN)).collect();

    let until = ms(10 * MINUTE);
    assert_eq!(standings[..3], [QueueStanding::Admitted { until }; 3]);
    for (i, standing) in standings[3..].iter().enumerate() {
        assert!(matches!(standing, QueueStanding::Waiting { position: Some(p), .. } if *p == i as u64 + 1));
    }
    let view = room.e.queue_view(OPEN);
    assert_eq!((view.active, view.waiting), (3, 3));
    assert_eq!(room.tick(ms(SECOND)), None);
    assert_eq!(room.e.next_deadline(ms(SECOND)), Some(ms(MINUTE)), "only the waiters' heartbeats are due");
}

#[test]
fn a_slot_freed_by_reserving_leaving_or_lapsing_goes_to_the_next_buyer() {
    let settings = QueueSettings {
        admission_ttl: Duration::from_secs(120),
        heartbeat_ttl: Duration::from_secs(600),
        ..queue(0, 3)
    };
    let mut room = Room::new(settings, 10, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=6 {
        room.join(who, OPEN);
    }

    // Reserving: the slot frees in the hold's own change set, the next buyer goes in at the
    // following tick.
    let reserved = room.reserve(1, 1, ms(SECOND)).unwrap();
    assert_eq!(reserved.changes.last(), Some(&left(user(1), LeaveReason::Reserved)));
    assert_eq!(room.e.queue_view(ms(SECOND)).active, 2);
    assert_eq!(room.e.next_deadline(ms(SECOND)), Some(ms(SECOND)), "an admission is due");
    assert_eq!(room.tick(ms(SECOND)).unwrap().changes, [admission(user(4), ms(SECOND + 120 * SECOND))]);

    // Leaving.
    assert_eq!(room.leave(2, ms(2 * SECOND)).unwrap().changes, [left(user(2), LeaveReason::Left)]);
    assert_eq!(room.tick(ms(2 * SECOND)).unwrap().changes, [admission(user(5), ms(122 * SECOND))]);

    // Lapsing: user 3 was admitted at opening for two minutes.
    assert_eq!(room.e.next_deadline(ms(2 * SECOND)), Some(ms(120 * SECOND)));
    assert_eq!(
        room.tick(ms(120 * SECOND)).unwrap().changes,
        [left(user(3), LeaveReason::Lapsed), admission(user(6), ms(240 * SECOND))]
    );
    assert_eq!(room.e.queue_status(user(3), ms(120 * SECOND)), QueueStanding::NotQueued);
    assert!(matches!(room.join(7, ms(121 * SECOND)), QueueStanding::Waiting { position: Some(1), .. }));
}

#[test]
fn a_waiter_who_stops_polling_drops_out_and_one_who_polls_stays() {
    let mut room = Room::new(queue(0, 1), 10, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=3 {
        room.join(who, OPEN);
    }
    assert_eq!(room.e.next_deadline(OPEN), Some(ms(MINUTE)));

    assert!(matches!(room.poll(2, ms(30 * SECOND)), QueueStanding::Waiting { position: Some(1), .. }));
    assert_eq!(room.tick(ms(MINUTE - 1)), None);
    assert_eq!(room.tick(ms(MINUTE)).unwrap().changes, [left(user(3), LeaveReason::Dropped)]);

    assert_eq!(room.e.queue_position(user(2)), Some(1));
    assert_eq!(room.e.next_deadline(ms(MINUTE)), Some(ms(90 * SECOND)), "seen at 30 s");
    room.poll(2, ms(80 * SECOND));
    assert_eq!(room.tick(ms(90 * SECOND)), None);
    assert_eq!(room.e.next_deadline(ms(90 * SECOND)), Some(ms(140 * SECOND)));
    assert_eq!(room.tick(ms(140 * SECOND)).unwrap().changes, [left(user(2), LeaveReason::Dropped)]);
    // An admitted buyer need not poll.
    assert_eq!(room.e.queue_status(user(1), ms(140 * SECOND)), QueueStanding::Admitted { until: ms(10 * MINUTE) });
}

#[test]
fn sold_out_pauses_admission_and_a_release_resumes_it() {
    let mut room = Room::new(queue(0, 1), 1, ms(-MINUTE));
    room.tick(OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);

    let sold_out = room.reserve(1, 1, ms(SECOND)).unwrap();

    assert_eq!(sold_out.event_status(), Some(EventStatus::SoldOut));
    assert!(sold_out.changes.contains(&left(user(1), LeaveReason::Reserved)));
    assert_eq!(room.tick(ms(SECOND)), None, "the slot is free but nothing is left to sell");
    let (standing, cs) = room.join_with_changes(3, ms(2 * SECOND));
    assert_eq!(standing, QueueStanding::SoldOut { position: Some(2) });
    assert_eq!(admitted(cs.as_ref()), []);
    assert_eq!(room.poll(2, ms(2 * SECOND)), QueueStanding::SoldOut { position: Some(1) });
    assert_eq!(room.e.next_deadline(ms(2 * SECOND)), Some(ms(MINUTE)), "no admission is scheduled");

    let released = room.e.cancel(rid(1), ms(3 * SECOND)).unwrap();
    room.record(Some(released.clone()));

    assert_eq!(released.event_status(), Some(EventStatus::OnSale));
    assert_eq!(room.e.next_deadline(ms(3 * SECOND)), Some(ms(3 * SECOND)));
    assert_eq!(room.tick(ms(3 * SECOND)).unwrap().changes, [admission(user(2), ms(3 * SECOND + 10 * MINUTE))]);
}

#[test]
fn the_queue_closes_when_the_sale_ends() {
    let long = Duration::from_secs(2 * 60 * 60);
    let mut room = Room::new(QueueSettings { admission_ttl: long, heartbeat_ttl: long, ..queue(0, 1) }, 10, OPEN);
    for who in 1..=3 {
        room.join(who, OPEN);
    }

    let ended = room.tick(CLOSE).unwrap();

    assert_eq!(
        ended.changes,
        [
            Change::EventStatus(EventStatus::Ended),
            left(user(1), LeaveReason::Closed),
            left(user(2), LeaveReason::Closed),
            left(user(3), LeaveReason::Closed),
        ]
    );
    assert_eq!(room.e.queue_status(user(2), CLOSE), QueueStanding::Closed);
    assert_eq!(room.e.join_queue(user(4), CLOSE), Err(EngineError::NotOnSale(EventStatus::Ended)));
    let view = room.e.queue_view(CLOSE);
    assert_eq!((view.waiting, view.active), (0, 0));
    assert_eq!(room.e.next_deadline(CLOSE), None);
}

#[test]
fn cancelling_the_event_closes_the_queue() {
    let mut room = Room::new(queue(0, 1), 10, OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);

    let cancelled = room.e.cancel_event(ms(SECOND)).unwrap();
    room.record(Some(cancelled.clone()));

    assert_eq!(
        cancelled.changes,
        [
            Change::EventStatus(EventStatus::Cancelled),
            left(user(1), LeaveReason::Closed),
            left(user(2), LeaveReason::Closed)
        ]
    );
    assert_eq!(room.e.queue_status(user(1), ms(SECOND)), QueueStanding::Closed);
    assert_eq!(room.e.join_queue(user(3), ms(SECOND)), Err(EngineError::NotOnSale(EventStatus::Cancelled)));
}

#[test]
fn a_hold_without_admission_is_refused_and_changes_nothing() {
    let mut room = Room::new(queue(0, 1), 10, OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);
    let (seq, members, counters) = (room.e.seq(), room.e.queue_members(), room.e.ticket_types().to_vec());

    let refused = [
        room.hold(1, 3, 1, true, ms(1)),           // not queued
        room.hold(2, 2, 1, true, ms(1)),           // waiting
        room.hold(3, 1, 1, false, ms(1)),          // admitted, but showed no token
        room.hold(4, 1, 1, true, ms(10 * MINUTE)), // the admission lapsed (no tick yet)
    ];

    assert_eq!(refused, [const { Err(EngineError::AdmissionRequired) }; 4]);
    assert_eq!((room.e.seq(), room.e.queue_members(), room.e.ticket_types().to_vec()), (seq, members, counters));
}

#[test]
fn a_refused_hold_keeps_the_admission_and_a_successful_one_ends_it() {
    let mut room = Room::new(queue(0, 1), 5, OPEN);
    room.join(1, OPEN);

    assert_eq!(room.hold(1, 1, 6, true, ms(1)), Err(EngineError::InsufficientInventory { available: 5 }));
    assert_eq!(room.e.queue_admission(user(1), ms(1)), Some(ms(10 * MINUTE)));

    let held = room.hold(2, 1, 2, true, ms(2)).unwrap();
    assert_eq!(held.changes.last(), Some(&left(user(1), LeaveReason::Reserved)));
    assert_eq!(room.e.queue_admission(user(1), ms(2)), None);
    assert_eq!(room.hold(3, 1, 1, true, ms(3)), Err(EngineError::AdmissionRequired), "one admission, one hold");
}

#[test]
fn disabling_the_queue_clears_it_and_keeps_the_seed() {
    let mut room = Room::new(queue(0, 1), 10, OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);

    let mut rules = room.e.rules().clone();
    rules.queue.enabled = false;
    rules.queue_seed = [0; 32];
    let cs = room.e.set_rules(rules, ms(SECOND));
    let cs = room.record(cs).unwrap();

    assert_eq!(cs.changes, [left(user(1), LeaveReason::Cleared), left(user(2), LeaveReason::Cleared)]);
    assert_eq!(room.e.rules().queue_seed, seed(), "the seed is fixed at creation");
    assert!(room.hold(1, 2, 1, false, ms(2 * SECOND)).is_ok(), "no admission needed any more");
    assert_eq!(room.e.join_queue(user(3), ms(2 * SECOND)), Err(EngineError::QueueDisabled));
}

#[test]
fn an_admin_clears_the_queue() {
    let mut room = Room::new(queue(0, 1), 10, OPEN);
    for who in 1..=3 {
        room.join(who, OPEN);
    }

    let cs = room.e.clear_queue(ms(SECOND));
    let cs = room.record(cs).unwrap();

    assert_eq!(
        cs.changes,
        [left(user(1), LeaveReason::Cleared), left(user(2), LeaveReason::Cleared), left(user(3), LeaveReason::Cleared)]
    );
    assert_eq!(room.e.clear_queue(ms(SECOND)), None);
    assert_eq!(room.e.queue_view(ms(SECOND)).waiting, 0);
    assert!(matches!(room.join(2, ms(2 * SECOND)), QueueStanding::Admitted { .. }), "the cap is free again");
}

#[test]
fn a_new_rate_applies_from_the_next_tick() {
    let mut room = Room::new(queue(1, 0), 10, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=10 {
        room.join(who, OPEN);
    }
    assert_eq!(admitted(room.tick(ms(SECOND)).as_ref()), [user(1)]);

    let mut rules = room.e.rules().clone();
    rules.queue.rate_per_second = 10;
    assert_eq!(room.e.set_rules(rules, ms(SECOND)), None, "settings alone change no inventory or queue");

    assert_eq!(admitted(room.tick(ms(SECOND + 99)).as_ref()), []);
    assert_eq!(admitted(room.tick(ms(SECOND + 100)).as_ref()), [user(2)]);
}

#[test]
fn the_wait_estimate_uses_the_observed_rate_and_else_the_configured_one() {
    let mut room = Room::new(queue(2, 0), 100, ms(-MINUTE));
    room.tick(OPEN);
    for who in 1..=30 {
        let expected = Some(Duration::from_millis(500 * who as u64));
        assert_eq!(
            room.join(who, OPEN),
            QueueStanding::Waiting { position: Some(who as u64), estimated_wait: expected }
        );
    }
    for step in 1..=20 {
        room.tick(ms(step * 500));
        for who in 21..=30 {
            room.poll(who, ms(step * 500));
        }
    }
    // A faster configured rate does not change an estimate made from what was observed.
    let mut rules = room.e.rules().clone();
    rules.queue.rate_per_second = 10;
    room.e.set_rules(rules, ms(10 * SECOND));

    let view = room.e.queue_view(ms(10 * SECOND));
    assert_eq!((view.admitted_total, view.observed_rate), (20, 2.0));
    assert_eq!(
        room.poll(21, ms(10 * SECOND)),
        QueueStanding::Waiting { position: Some(1), estimated_wait: Some(Duration::from_millis(500)) }
    );
    assert_eq!(
        room.poll(30, ms(10 * SECOND)),
        QueueStanding::Waiting { position: Some(10), estimated_wait: Some(Duration::from_secs(5)) }
    );
}

#[test]
fn with_neither_rate_nor_observations_the_wait_is_unknown() {
    let mut room = Room::new(queue(0, 1), 10, ms(-MINUTE));
    room.tick(OPEN);
    room.join(1, OPEN);
    room.join(2, OPEN);
    // The one admission on joining was observed, so look after it leaves the window.
    room.poll(2, ms(61 * SECOND));
    assert_eq!(room.tick(ms(61 * SECOND)), None);

    assert_eq!(room.poll(2, ms(61 * SECOND)), QueueStanding::Waiting { position: Some(1), estimated_wait: None });
}

#[test]
fn restoring_from_the_persisted_queue_reproduces_positions_and_admissions() {
    let settings = QueueSettings { heartbeat_ttl: Duration::from_secs(3600), ..queue(2, 3) };
    let mut room = Room::new(settings, 100, ms(-10 * MINUTE));
    for who in 1..=8 {
        room.join(who, ms(-5 * MINUTE + who as i64));
    }
    room.tick(OPEN);
    for who in 9..=13 {
        room.join(who, ms(100 + who as i64));
    }
    for step in 1..=4 {
        room.tick(ms(step * 500));
    }
    let first = room.journal.line[0];
    let admitted_now: Vec<UserId> =
        room.e.queue_members().iter().filter(|m| m.admitted_until.is_some()).map(|m| m.user).collect();
    assert_eq!(admitted_now.len(), 3, "the cap is full");
    let pre_waiter = (1..=8).find(|&w| room.journal.line.contains(&user(w)) && user(w) != first).unwrap();
    room.leave(pre_waiter, ms(2_100));
    room.leave(11, ms(2_200));
    let reserver = (1..=13).find(|&w| user(w) == admitted_now[0]).unwrap();
    room.reserve(1, reserver, ms(2_300)).unwrap();
    let now = ms(2_300);
    assert_eq!(admitted(room.tick(now).as_ref()).len(), 1, "the freed slot is taken");

    let (mut restored, changed) = room.restored(now);

    assert_eq!(changed, None, "nothing was due");
    assert_eq!(restored.e.queue_members(), room.e.queue_members());
    for who in 1..=13 {
        let u = user(who);
        assert_eq!(restored.e.queue_position(u), room.e.queue_position(u), "position of user {who}");
        assert_eq!(restored.e.queue_admission(u, now), room.e.queue_admission(u, now));
        // The observed rate is not persisted, so only the estimate may differ.
        assert_eq!(
            without_estimate(restored.e.queue_standing(u, now)),
            without_estimate(room.e.queue_standing(u, now))
        );
    }
    let (a, b) = (restored.e.queue_view(now), room.e.queue_view(now));
    assert_eq!(
        (a.waiting, a.pre_queue, a.active, a.opened, &a.seed),
        (b.waiting, b.pre_queue, b.active, b.opened, &b.seed)
    );

    // Both go on to admit the same buyers in the same order.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for step in 5..=30 {
        let t = ms(step * 500);
        for who in 1..=13 {
            room.poll(who, t);
            restored.poll(who, t);
        }
        // A slot frees every 2 s; by then both buckets are full again, so both admit at once.
        if step % 4 == 0 {
            for r in [&mut room, &mut restored] {
                let first = r.e.queue_members().into_iter().find(|m| m.admitted_until.is_some()).unwrap();
                r.leave_user(first.user, t);
            }
        }
        ours.extend(admitted(room.tick(t).as_ref()));
        theirs.extend(admitted(restored.tick(t).as_ref()));
    }
    assert!(ours.len() >= 5);
    assert_eq!(ours, theirs);
}

#[test]
fn a_pre_queue_restored_before_opening_is_drawn_the_same_at_opening() {
    let settings = QueueSettings { heartbeat_ttl: Duration::from_secs(3600), ..queue(1, 0) };
    let mut room = Room::new(settings, 10, ms(-10 * MINUTE));
    for who in 1..=12 {
        room.join(who, ms(-5 * MINUTE));
    }
    room.leave(5, ms(-4 * MINUTE));

    let (mut restored, changed) = room.restored(ms(-MINUTE));
    assert_eq!(changed, None);
    let (a, b) = (room.tick(OPEN).unwrap(), restored.tick(OPEN).unwrap());

    assert_eq!(a.changes, b.changes);
    for who in 1..=12 {
        assert_eq!(restored.e.queue_position(user(who)), room.e.queue_position(user(who)));
    }
    assert_eq!(room.e.queue_position(user(5)), None);
    let remaining: Vec<UserId> = users(1..=12).into_iter().filter(|&u| u != user(5)).collect();
    for (i, u) in drawn(&seed(), &remaining).into_iter().enumerate() {
        assert_eq!(restored.e.queue_position(u), Some(i as u64 + 1));
    }
}

#[test]
fn a_restore_after_the_sale_started_opens_the_queue_it_missed() {
    let mut room = Room::new(queue(1, 0), 10, ms(-10 * MINUTE));
    for who in 1..=6 {
        room.join(who, ms(-5 * MINUTE));
    }

    let (restored, changed) = room.restored(ms(SECOND / 2));

    assert_eq!(
        changed.unwrap().changes,
        [Change::EventStatus(EventStatus::OnSale), Change::Queue(QueueChange::Opened)]
    );
    for (i, u) in drawn(&seed(), &users(1..=6)).into_iter().enumerate() {
        assert_eq!(restored.e.queue_position(u), Some(i as u64 + 1));
    }
}

#[test]
fn next_deadline_always_moves_forward_when_ticked() {
    let settings =
        QueueSettings { admission_ttl: Duration::from_secs(2), heartbeat_ttl: Duration::from_secs(3), ..queue(7, 3) };
    let mut room = Room::new(settings, 1_000, ms(-SECOND));
    for who in 1..=10 {
        room.join(who, ms(-SECOND));
    }
    let mut now = ms(-SECOND);
    let (mut ticks, mut admitted_total, mut reserved) = (0, 0, 0);
    while now < ms(10 * SECOND) {
        let next = room.e.next_deadline(now).expect("there is always work ahead");
        assert!(next > now, "deadline {next:?} is not after {now:?}");
        now = next;
        ticks += 1;
        // Some keep polling, some never do; one joins at every tick, and every other tick
        // an admitted buyer reserves while the others let their admission lapse.
        for who in (1..=10 + ticks).filter(|w| w % 3 == 0) {
            room.poll(who, now);
        }
        let (_, joined) = room.join_with_changes(10 + ticks, now);
        admitted_total += admitted(joined.as_ref()).len() as i64;
        let first_admitted = room.e.queue_members().into_iter().find(|m| m.admitted_until.is_some_and(|t| t > now));
        if let Some(m) = first_admitted.filter(|_| ticks % 2 == 0) {
            room.reserve(ticks, m.user.uuid().as_u128() - user(0).uuid().as_u128(), now).unwrap();
            reserved += 1;
        }
        admitted_total += admitted(room.tick(now).as_ref()).len() as i64;
        assert!(admitted_total <= 7 * (now.millis() - OPEN.millis()) / 1000 + 7);
    }
    assert!(ticks < 2_000, "{ticks} ticks in 11 s");
    assert!(admitted_total > 30 && reserved > 10, "{ticks} ticks, {admitted_total} admitted, {reserved} reserved");
}

#[derive(Debug, Clone)]
enum Command {
    Join(u128),
    Leave(u128),
    Poll(u128),
    Reserve(u128),
    Tick(i64),
}

fn command() -> impl Strategy<Value = Command> {
    let who = 1..=12u128;
    prop_oneof![
        4 => who.clone().prop_map(Command::Join),
        1 => who.clone().prop_map(Command::Leave),
        2 => who.clone().prop_map(Command::Poll),
        2 => who.prop_map(Command::Reserve),
        4 => (0..1_500i64).prop_map(Command::Tick),
    ]
}

fn settings() -> impl Strategy<Value = QueueSettings> {
    (0..4u32, 0..4u32, 300..3_000u64, 500..4_000u64).prop_map(|(rate, cap, admission_ms, heartbeat_ms)| QueueSettings {
        admission_ttl: Duration::from_millis(admission_ms),
        heartbeat_ttl: Duration::from_millis(heartbeat_ms),
        ..queue(rate, cap)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The journal checks, on every admission, that it is the front of the line in ticket
    /// order (the pre-queue drawn by the seed first), and after every command that the
    /// engine's members and positions match it; a restore reproduces them.
    #[test]
    fn admissions_follow_ticket_order_for_any_join_and_leave_sequence(
        settings in settings(),
        opens_in in 0..3_000i64,
        commands in prop::collection::vec(command(), 1..=80),
    ) {
        let mut now = ms(-opens_in);
        let mut room = Room::new(settings, 1_000, now);
        for (n, command) in commands.iter().enumerate() {
            match *command {
                Command::Join(who) => {
                    room.join(who, now);
                }
                Command::Leave(who) => {
                    room.leave(who, now);
                }
                Command::Poll(who) => {
                    room.poll(who, now);
                }
                Command::Reserve(who) => {
                    let admitted = room.e.queue_admission(user(who), now).is_some();
                    let got = room.reserve(n as u128, who, now);
                    if now < OPEN {
                        prop_assert_eq!(got, Err(EngineError::NotOnSale(EventStatus::Upcoming)));
                    } else if admitted {
                        prop_assert!(got.is_ok());
                    } else {
                        prop_assert_eq!(got, Err(EngineError::AdmissionRequired));
                    }
                }
                Command::Tick(ms) => {
                    now = Timestamp::from_millis(now.millis() + ms);
                    room.tick(now);
                    let next = room.e.next_deadline(now);
                    prop_assert!(next.is_none_or(|next| next > now));
                }
            }
            if settings.max_active > 0 {
                prop_assert!(room.e.queue_view(now).active <= u64::from(settings.max_active));
            }
        }
        // Caught up first, the restored queue has nothing left to do and stands the same.
        room.tick(now);
        let (restored, changed) = room.restored(now);
        prop_assert_eq!(changed, None);
        for who in 1..=12 {
            prop_assert_eq!(restored.e.queue_position(user(who)), room.e.queue_position(user(who)));
        }
    }
}
