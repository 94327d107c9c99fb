//! The admission queue (virtual waiting room): who waits, in what order, who is admitted,
//! and when the next buyer may go in.
//!
//! [`crate::EventEngine`] drives it and wraps what it changes into change sets. Before sale
//! start joiners form a pre-queue whose order is drawn at opening from the event's seed
//! (see [`QueueView::seed`]); after that the line is first come, first served. Admission
//! is limited by a token bucket (`rate_per_second`) and by a cap on admitted buyers
//! (`max_active`).

use crate::{Change, EventStatus, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write;
use std::time::Duration;

/// The shortest gap [`crate::EventEngine::next_deadline`] leaves between two admission
/// ticks, so that at high rates buyers are admitted in batches (a few per tick) rather than
/// one timer per buyer. A tick that runs for another reason still admits whatever the rate
/// credit and the cap allow.
pub const ADMISSION_INTERVAL: Duration = Duration::from_millis(50);

/// FIFO tickets start here, so every pre-queue ticket (`1..=P`, drawn at opening) sorts
/// before them.
const FIFO_BASE: u64 = 1 << 32;
/// Rate credit is kept in milli-admissions: one admission costs this much.
const ADMISSION_COST: u64 = 1_000;
/// The observed admission rate is measured over this many one-second buckets.
const WINDOW_SECS: i64 = 60;
/// An admission lasts at least this long, so a zero TTL cannot re-arm a tick for `now`.
const MIN_ADMISSION: Duration = Duration::from_millis(1);

/// An event's admission-queue settings; an admin may change them while the event is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Whether buyers must queue (and be admitted) before they may reserve.
    pub enabled: bool,
    /// Buyers admitted per second; 0 is no rate limit (the active cap alone gates).
    pub rate_per_second: u32,
    /// Most buyers admitted and not yet done at once; 0 is no cap.
    pub max_active: u32,
    /// How long an admitted buyer has to reserve before the slot passes on.
    pub admission_ttl: Duration,
    /// A waiting buyer who neither polls status nor heartbeats within this drops out.
    pub heartbeat_ttl: Duration,
}

impl Default for QueueSettings {
    /// Disabled; 100 a second, no cap, 10 minutes to reserve, 60 seconds between heartbeats.
    fn default() -> Self {
        Self {
            enabled: false,
            rate_per_second: 100,
            max_active: 0,
            admission_ttl: Duration::from_secs(10 * 60),
            heartbeat_ttl: Duration::from_secs(60),
        }
    }
}

/// One change to the queue. Folded in order, these rebuild every [`QueueMember`] and
/// whether the queue has opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueChange {
    /// A buyer joined. `ticket` orders FIFO joiners; `None` is the pre-queue (ordered at
    /// opening by the seed).
    Joined {
        /// Who.
        user: UserId,
        /// Place in the FIFO line; `None` for the pre-queue.
        ticket: Option<u64>,
        /// When.
        at: Timestamp,
    },
    /// The pre-queue was ordered and the seed may be revealed.
    Opened,
    /// A buyer was admitted until `until`.
    Admitted {
        /// Who.
        user: UserId,
        /// The admission lapses at this instant unless the buyer reserves first.
        until: Timestamp,
    },
    /// A buyer left the queue (waiting or admitted) for `reason`.
    Left {
        /// Who.
        user: UserId,
        /// Why.
        reason: LeaveReason,
    },
}

/// Why a buyer left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The buyer left.
    Left,
    /// A waiting buyer stopped heartbeating.
    Dropped,
    /// An admitted buyer did not reserve within the admission TTL.
    Lapsed,
    /// An admitted buyer reserved: the slot is free for the next one.
    Reserved,
    /// An admin cleared the queue or disabled it.
    Cleared,
    /// The event ended or was cancelled.
    Closed,
}

/// Where a buyer stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueStanding {
    /// Not in the queue.
    NotQueued,
    /// Waiting. `position` is 1-based; `None` in the pre-queue before opening (order not
    /// drawn yet).
    Waiting {
        /// 1-based place in line.
        position: Option<u64>,
        /// Time until admission at the observed (or else configured) rate; before opening,
        /// the time until sale start. `None` when no rate is known.
        estimated_wait: Option<Duration>,
    },
    /// Admitted until `until`: may reserve now.
    Admitted {
        /// The admission lapses at this instant.
        until: Timestamp,
    },
    /// In line, but the event is sold out: admission is paused (resumes if seats come back).
    SoldOut {
        /// 1-based place in line.
        position: Option<u64>,
    },
    /// The event ended or was cancelled: the queue is closed.
    Closed,
}

/// The admin's view of an event's queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueView {
    /// The settings in force.
    pub settings: QueueSettings,
    /// Buyers in line, not admitted yet (the pre-queue included).
    pub waiting: u64,
    /// Of those, buyers who joined before opening and await the draw (0 once opened).
    pub pre_queue: u64,
    /// Buyers admitted and not yet done.
    pub active: u64,
    /// Admissions since this engine was built or restored (not persisted).
    pub admitted_total: u64,
    /// Admissions per second over the last 60 s (over the time since opening or restore,
    /// if shorter).
    pub observed_rate: f64,
    /// Lower-case hex SHA-256 of the 32-byte seed, published before opening.
    pub seed_hash: String,
    /// The seed in lower-case hex, revealed once the queue has opened. The pre-queue's
    /// order is ascending SHA-256(seed ‖ user id), where the user id is the UUID's 16 bytes
    /// in RFC 4122 (big-endian, as in its text form) order and the digests compare as
    /// bytes; anyone holding the seed and the user ids can check it.
    pub seed: Option<String>,
    /// Whether the pre-queue has been ordered.
    pub opened: bool,
}

/// What the store keeps of one queue member: enough, with whether the queue has opened,
/// to rebuild the queue exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMember {
    /// The buyer.
    pub user: UserId,
    /// Place in the FIFO line; `None` for the pre-queue (ordered by the seed).
    pub ticket: Option<u64>,
    /// When the buyer joined.
    pub joined_at: Timestamp,
    /// Set while admitted: the admission lapses at this instant.
    pub admitted_until: Option<Timestamp>,
}

/// The key the pre-queue is ordered by (see [`QueueView::seed`]).
pub(crate) fn draw_key(seed: &[u8; 32], user: UserId) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(user.uuid().as_bytes());
    hash.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[derive(Debug, Clone)]
struct Member {
    /// Order key: `None` in the pre-queue before opening, below [`FIFO_BASE`] for a
    /// pre-queue member after the draw, and the FIFO ticket otherwise.
    ticket: Option<u64>,
    joined_at: Timestamp,
    admitted_until: Option<Timestamp>,
    /// The last join or status poll.
    last_seen: Timestamp,
    /// The key of this member's one live heartbeat-heap entry; others are stale.
    heap_key: Timestamp,
}

/// Counts per slot with O(log n) prefix sums, growing one slot at a time.
#[derive(Debug, Clone, Default)]
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn len(&self) -> usize {
        self.tree.len()
    }

    /// Appends a slot holding `value`.
    fn push(&mut self, value: i64) {
        let i = self.tree.len() + 1;
        // Node `i` covers slots `i - lowbit(i) .. i`; all but the new one exist already.
        let covered = self.prefix(i - 1) - self.prefix(i - (i & i.wrapping_neg()));
        self.tree.push(value + covered);
    }

    fn add(&mut self, slot: usize, delta: i64) {
        let mut i = slot + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// The sum of the first `n` slots.
    fn prefix(&self, n: usize) -> i64 {
        let (mut i, mut sum) = (n, 0);
        while i > 0 {
            sum += self.tree[i - 1];
            i &= i - 1;
        }
        sum
    }
}

/// One event's queue. Settings, seed and event status come in with each call, so an
/// admin's change applies from the next call.
#[derive(Debug, Clone)]
pub(crate) struct Queue {
    members: HashMap<UserId, Member>,
    /// Waiting members with a ticket, in admission order.
    line: BTreeMap<u64, UserId>,
    /// The same members counted by slot, for positions in O(log n). Pre-queue ticket `t`
    /// is slot `t - 1`; FIFO ticket `t` is slot `pre_slots + t - fifo_start`.
    ranks: Fenwick,
    pre_slots: u64,
    fifo_start: u64,
    next_ticket: u64,
    /// Pre-queue members before the draw.
    undrawn: u64,
    active: u64,
    opened: bool,
    /// `(last_seen, user)`, earliest first; checked lazily against the member.
    heartbeats: BinaryHeap<Reverse<(Timestamp, UserId)>>,
    /// `(admitted_until, user)`, earliest first; checked lazily against the member.
    expiries: BinaryHeap<Reverse<(Timestamp, UserId)>>,
    /// Token bucket in milli-admissions, as of `credited_at`.
    credit: u64,
    credited_at: Timestamp,
    last_admission: Option<Timestamp>,
    /// Admissions per second of the clock: `(second, count)` at `second % 60`.
    buckets: [(i64, u64); WINDOW_SECS as usize],
    observed_since: Timestamp,
    admitted_total: u64,
}

impl Queue {
    /// An empty, unopened queue.
    pub(crate) fn new() -> Self {
        Self {
            members: HashMap::new(),
            line: BTreeMap::new(),
            ranks: Fenwick::default(),
            pre_slots: 0,
            fifo_start: FIFO_BASE,
            next_ticket: FIFO_BASE,
            undrawn: 0,
            active: 0,
            opened: false,
            heartbeats: BinaryHeap::new(),
            expiries: BinaryHeap::new(),
            credit: 0,
            credited_at: Timestamp::default(),
            last_admission: None,
            buckets: [(i64::MIN, 0); WINDOW_SECS as usize],
            observed_since: Timestamp::default(),
            admitted_total: 0,
        }
    }

    /// Rebuilds a queue from its persisted members. Waiters count as seen at `now`;
    /// pre-queue members of an opened queue are re-drawn by the seed, ahead of every FIFO
    /// ticket, which gives the same relative order as before.
    pub(crate) fn restore(members: Vec<QueueMember>, opened: bool, seed: &[u8; 32], now: Timestamp) -> Self {
        let mut queue = Self::new();
        // Only FIFO tickets are persisted; anything below them would collide with the draw.
        let members: Vec<QueueMember> =
            members.into_iter().map(|m| QueueMember { ticket: m.ticket.filter(|&t| t >= FIFO_BASE), ..m }).collect();
        // A FIFO ticket is only ever handed out after opening.
        queue.opened = opened || members.iter().any(|m| m.ticket.is_some());
        (queue.credited_at, queue.observed_since) = (now, now);
        queue.next_ticket = members.iter().filter_map(|m| m.ticket).map(|t| t + 1).max().unwrap_or(0).max(FIFO_BASE);
        let mut undrawn = Vec::new();
        let mut fifo = Vec::new();
        for m in members {
            if queue.members.contains_key(&m.user) {
                continue;
            }
            let member = Member {
                ticket: m.ticket,
                joined_at: m.joined_at,
                admitted_until: m.admitted_until,
                last_seen: now,
                heap_key: now,
            };
            match (m.admitted_until, m.ticket) {
                (Some(until), _) => {
                    queue.active += 1;
                    queue.expiries.push(Reverse((until, m.user)));
                }
                (None, ticket) => {
                    queue.heartbeats.push(Reverse((now, m.user)));
                    match ticket {
                        Some(t) => fifo.push((t, m.user)),
                        None => undrawn.push(m.user),
                    }
                }
            }
            queue.members.insert(m.user, member);
        }
        if !queue.opened {
            queue.undrawn = undrawn.len() as u64;
            return queue;
        }
        queue.draw(undrawn, seed);
        fifo.sort_unstable();
        queue.fifo_start = fifo.first().map_or(queue.next_ticket, |&(t, _)| t);
        let mut fifo = fifo.into_iter().peekable();
        for ticket in queue.fifo_start..queue.next_ticket {
            let waiting = fifo.next_if(|&(t, _)| t == ticket);
            queue.ranks.push(i64::from(waiting.is_some()));
            if let Some((t, user)) = waiting {
                queue.line.insert(t, user);
            }
        }
        queue
    }

    /// Whether the pre-queue has been ordered.
    pub(crate) fn opened(&self) -> bool {
        self.opened
    }

    /// Whether `user` is waiting or admitted.
    pub(crate) fn contains(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }

    /// When `user`'s admission lapses, if admitted (lapsed or not).
    pub(crate) fn admitted_until(&self, user: UserId) -> Option<Timestamp> {
        self.members.get(&user).and_then(|m| m.admitted_until)
    }

    /// 1-based place in line of a waiting member with a drawn or FIFO ticket.
    pub(crate) fn position(&self, user: UserId) -> Option<u64> {
        let m = self.members.get(&user).filter(|m| m.admitted_until.is_none())?;
        let slot = self.slot(m.ticket?);
        Some(self.ranks.prefix(slot + 1) as u64)
    }

    /// Every member as the store keeps it, sorted by user id.
    pub(crate) fn members(&self) -> Vec<QueueMember> {
        let mut members: Vec<QueueMember> = self
            .members
            .iter()
            .map(|(&user, m)| QueueMember {
                user,
                ticket: m.ticket.filter(|&t| t >= FIFO_BASE),
                joined_at: m.joined_at,
                admitted_until: m.admitted_until,
            })
            .collect();
        members.sort_unstable_by_key(|m| m.user);
        members
    }

    /// Records a sign of life from a waiting member.
    pub(crate) fn heartbeat(&mut self, user: UserId, now: Timestamp) {
        if let Some(m) = self.members.get_mut(&user) {
            m.last_seen = m.last_seen.max(now);
        }
    }

    /// Puts a new member at the back of the line (or in the pre-queue before opening).
    pub(crate) fn join(&mut self, user: UserId, now: Timestamp, changes: &mut Vec<Change>) {
        let ticket = self.opened.then(|| {
            let t = self.next_ticket;
            self.next_ticket += 1;
            t
        });
        match ticket {
            Some(t) => {
                debug_assert_eq!(self.slot(t), self.ranks.len());
                self.ranks.push(1);
                self.line.insert(t, user);
            }
            None => self.undrawn += 1,
        }
        self.heartbeats.push(Reverse((now, user)));
        let member = Member { ticket, joined_at: now, admitted_until: None, last_seen: now, heap_key: now };
        self.members.insert(user, member);
        changes.push(Change::Queue(QueueChange::Joined { user, ticket, at: now }));
    }

    /// Takes `user` out of the queue for `reason`; an admitted slot frees at once.
    pub(crate) fn leave(&mut self, user: UserId, reason: LeaveReason, changes: &mut Vec<Change>) -> bool {
        let Some(m) = self.members.remove(&user) else { return false };
        match (m.admitted_until, m.ticket) {
            (Some(_), _) => self.active -= 1,
            (None, Some(t)) => self.unline(t),
            (None, None) => self.undrawn -= 1,
        }
        changes.push(Change::Queue(QueueChange::Left { user, reason }));
        true
    }

    /// Everyone leaves for `reason`: admitted members by expiry, then the line in order,
    /// then the undrawn pre-queue by user id.
    pub(crate) fn clear(&mut self, reason: LeaveReason, changes: &mut Vec<Change>) {
        if self.members.is_empty() {
            return;
        }
        let mut admitted: Vec<(Timestamp, UserId)> =
            self.members.iter().filter_map(|(&u, m)| m.admitted_until.map(|t| (t, u))).collect();
        admitted.sort_unstable();
        let mut undrawn: Vec<UserId> = self
            .members
            .iter()
            .filter(|(_, m)| m.ticket.is_none() && m.admitted_until.is_none())
            .map(|(&u, _)| u)
            .collect();
        undrawn.sort_unstable();
        let line = self.line.values().copied();
        for user in admitted.into_iter().map(|(_, u)| u).chain(line).chain(undrawn) {
            changes.push(Change::Queue(QueueChange::Left { user, reason }));
        }
        self.members.clear();
        self.line.clear();
        self.reset_ranks();
        (self.undrawn, self.active) = (0, 0);
        self.heartbeats.clear();
        self.expiries.clear();
    }

    /// What a change of settings, seed or status requires at once: clearing a disabled
    /// queue, closing an ended one, opening a started one.
    pub(crate) fn settle(
        &mut self,
        settings: &QueueSettings,
        seed: &[u8; 32],
        status: EventStatus,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        if !settings.enabled {
            self.clear(LeaveReason::Cleared, changes);
        } else if matches!(status, EventStatus::Ended | EventStatus::Cancelled) {
            self.clear(LeaveReason::Closed, changes);
        } else {
            self.open_if_due(seed, status, now, changes);
        }
    }

    /// Lets time pass: opens, drops silent waiters, lapses admissions, closes, and admits,
    /// in that order.
    pub(crate) fn tick(
        &mut self,
        settings: &QueueSettings,
        seed: &[u8; 32],
        status: EventStatus,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        if !settings.enabled {
            self.clear(LeaveReason::Cleared, changes);
            return;
        }
        self.open_if_due(seed, status, now, changes);
        self.drop_silent(settings.heartbeat_ttl, now, changes);
        self.lapse(now, changes);
        if matches!(status, EventStatus::Ended | EventStatus::Cancelled) {
            self.clear(LeaveReason::Closed, changes);
            return;
        }
        self.admit(settings, status == EventStatus::OnSale, now, changes);
    }

    /// Accrues rate credit to `now` and, if `admitting`, admits from the front while the
    /// cap and the credit allow.
    pub(crate) fn admit(
        &mut self,
        settings: &QueueSettings,
        admitting: bool,
        now: Timestamp,
        changes: &mut Vec<Change>,
    ) {
        if !self.opened {
            return;
        }
        self.accrue(settings.rate_per_second, now);
        if !admitting {
            return;
        }
        let cap = u64::from(settings.max_active);
        let limited = settings.rate_per_second > 0;
        let until = now.plus(settings.admission_ttl.max(MIN_ADMISSION));
        let mut admitted = false;
        while let Some((&ticket, &user)) = self.line.first_key_value() {
            if (cap > 0 && self.active >= cap) || (limited && self.credit < ADMISSION_COST) {
                break;
            }
            if limited {
                self.credit -= ADMISSION_COST;
            }
            self.unline(ticket);
            if let Some(m) = self.members.get_mut(&user) {
                m.admitted_until = Some(until);
            }
            self.active += 1;
            self.expiries.push(Reverse((until, user)));
            self.observe(now);
            admitted = true;
            changes.push(Change::Queue(QueueChange::Admitted { user, until }));
        }
        if admitted {
            self.last_admission = Some(now);
        }
    }

    /// Adds the credit earned since the last accrual at `rate`, up to one second's worth.
    pub(crate) fn accrue(&mut self, rate: u32, now: Timestamp) {
        if !self.opened {
            return;
        }
        let elapsed = u64::try_from(now.millis() - self.credited_at.millis()).unwrap_or(0);
        let full = (u64::from(rate) * ADMISSION_COST).max(ADMISSION_COST);
        self.credit = self.credit.saturating_add(elapsed.saturating_mul(u64::from(rate))).min(full);
        self.credited_at = self.credited_at.max(now);
    }

    /// The next instant [`Queue::tick`] has work: an admission expiry, a heartbeat
    /// deadline, the opening, or the next admission (no sooner than [`ADMISSION_INTERVAL`]
    /// after the last one). After a tick at `now` it is always later than `now`.
    pub(crate) fn next_deadline(
        &self,
        settings: &QueueSettings,
        status: EventStatus,
        now: Timestamp,
    ) -> Option<Timestamp> {
        if !settings.enabled {
            return None;
        }
        let expiry = self.expiries.peek().map(|Reverse((t, _))| *t);
        let heartbeat = self.heartbeats.peek().map(|Reverse((t, _))| t.plus(settings.heartbeat_ttl));
        let opening = (!self.opened && matches!(status, EventStatus::OnSale | EventStatus::SoldOut)).then_some(now);
        let admission = self.next_admission(settings, status, now);
        [expiry, heartbeat, opening, admission].into_iter().flatten().min()
    }

    /// When the next buyer can go in (`now` if already due), if anyone can.
    fn next_admission(&self, settings: &QueueSettings, status: EventStatus, now: Timestamp) -> Option<Timestamp> {
        let cap = u64::from(settings.max_active);
        if !self.opened || status != EventStatus::OnSale || self.line.is_empty() || (cap > 0 && self.active >= cap) {
            return None;
        }
        let rate = u64::from(settings.rate_per_second);
        let credited = if rate == 0 || self.credit >= ADMISSION_COST {
            self.credited_at
        } else {
            let ms = (ADMISSION_COST - self.credit).div_ceil(rate);
            self.credited_at.plus(Duration::from_millis(ms))
        };
        let ready = self.last_admission.map_or(credited, |last| credited.max(last.plus(ADMISSION_INTERVAL)));
        Some(ready.max(now))
    }

    /// Where `user` stands, given the event's status at `now`.
    pub(crate) fn standing(
        &self,
        user: UserId,
        settings: &QueueSettings,
        status: EventStatus,
        sale_start: Timestamp,
        now: Timestamp,
    ) -> QueueStanding {
        if matches!(status, EventStatus::Ended | EventStatus::Cancelled) {
            return QueueStanding::Closed;
        }
        let Some(m) = self.members.get(&user) else { return QueueStanding::NotQueued };
        match m.admitted_until {
            Some(until) if until > now => return QueueStanding::Admitted { until },
            // Lapsed; the next tick takes it out.
            Some(_) => return QueueStanding::NotQueued,
            None => {}
        }
        let position = self.position(user);
        if status == EventStatus::SoldOut {
            return QueueStanding::SoldOut { position };
        }
        let estimated_wait = match position {
            None => Some(now.until(sale_start)),
            Some(p) => self.estimate(p, settings.rate_per_second, now),
        };
        QueueStanding::Waiting { position, estimated_wait }
    }

    /// The admin's view.
    pub(crate) fn view(&self, settings: &QueueSettings, seed: &[u8; 32], now: Timestamp) -> QueueView {
        let (count, window_ms) = self.observed(now);
        QueueView {
            settings: *settings,
            waiting: self.line.len() as u64 + self.undrawn,
            pre_queue: self.undrawn,
            active: self.active,
            admitted_total: self.admitted_total,
            observed_rate: count as f64 * 1000.0 / window_ms as f64,
            seed_hash: hex(&Sha256::digest(seed)),
            seed: self.opened.then(|| hex(seed)),
            opened: self.opened,
        }
    }

    fn open_if_due(&mut self, seed: &[u8; 32], status: EventStatus, now: Timestamp, changes: &mut Vec<Change>) {
        if self.opened || !matches!(status, EventStatus::OnSale | EventStatus::SoldOut) {
            return;
        }
        let undrawn: Vec<UserId> = self
            .members
            .iter()
            .filter(|(_, m)| m.ticket.is_none() && m.admitted_until.is_none())
            .map(|(&u, _)| u)
            .collect();
        self.draw(undrawn, seed);
        self.opened = true;
        (self.credit, self.credited_at, self.observed_since) = (0, now, now);
        changes.push(Change::Queue(QueueChange::Opened));
    }

    /// Orders the pre-queue by the seed into tickets `1..=P`, ahead of an empty FIFO line.
    fn draw(&mut self, undrawn: Vec<UserId>, seed: &[u8; 32]) {
        let mut drawn: Vec<([u8; 32], UserId)> = undrawn.into_iter().map(|u| (draw_key(seed, u), u)).collect();
        drawn.sort_unstable();
        self.ranks = Fenwick::default();
        self.pre_slots = drawn.len() as u64;
        self.fifo_start = self.next_ticket;
        self.undrawn = 0;
        for (t, (_, user)) in (1..).zip(drawn) {
            self.ranks.push(1);
            self.line.insert(t, user);
            if let Some(m) = self.members.get_mut(&user) {
                m.ticket = Some(t);
            }
        }
    }

    fn drop_silent(&mut self, ttl: Duration, now: Timestamp, changes: &mut Vec<Change>) {
        while let Some(&Reverse((key, user))) = self.heartbeats.peek() {
            if key.plus(ttl) > now {
                break;
            }
            self.heartbeats.pop();
            let Some(m) = self.members.get_mut(&user) else { continue };
            if m.admitted_until.is_some() || m.heap_key != key {
                continue;
            }
            if m.last_seen.plus(ttl) <= now {
                self.leave(user, LeaveReason::Dropped, changes);
            } else {
                m.heap_key = m.last_seen;
                self.heartbeats.push(Reverse((m.last_seen, user)));
            }
        }
    }

    fn lapse(&mut self, now: Timestamp, changes: &mut Vec<Change>) {
        while let Some(&Reverse((until, user))) = self.expiries.peek() {
            if until > now {
                break;
            }
            self.expiries.pop();
            if self.admitted_until(user) == Some(until) {
                self.leave(user, LeaveReason::Lapsed, changes);
            }
        }
    }

    fn slot(&self, ticket: u64) -> usize {
        let slot = if ticket < FIFO_BASE { ticket - 1 } else { self.pre_slots + ticket - self.fifo_start };
        slot as usize
    }

    /// Takes a waiting ticket out of the line.
    fn unline(&mut self, ticket: u64) {
        self.line.remove(&ticket);
        self.ranks.add(self.slot(ticket), -1);
        if self.line.is_empty() {
            self.reset_ranks();
        }
    }

    /// Starts the slot numbering afresh; only while the line is empty.
    fn reset_ranks(&mut self) {
        self.ranks = Fenwick::default();
        self.pre_slots = 0;
        self.fifo_start = self.next_ticket;
    }

    fn observe(&mut self, now: Timestamp) {
        let second = now.millis().div_euclid(1000);
        let bucket = &mut self.buckets[second.rem_euclid(WINDOW_SECS) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
        self.admitted_total += 1;
    }

    /// Admissions in the last minute, and the window they count over in milliseconds (the
    /// time since opening if shorter, at least one second).
    fn observed(&self, now: Timestamp) -> (u64, u64) {
        let second = now.millis().div_euclid(1000);
        let count =
            self.buckets.iter().filter(|(s, _)| *s > second - WINDOW_SECS && *s <= second).map(|(_, c)| c).sum();
        let since = u64::try_from(now.millis() - self.observed_since.millis()).unwrap_or(0);
        (count, since.clamp(1_000, WINDOW_SECS as u64 * 1_000))
    }

    /// Time for `position` admissions at the observed rate, else at the configured one.
    fn estimate(&self, position: u64, rate: u32, now: Timestamp) -> Option<Duration> {
        let (count, window_ms) = self.observed(now);
        let observed = position.saturating_mul(window_ms).checked_div(count);
        let ms = observed.or_else(|| position.saturating_mul(1_000).checked_div(u64::from(rate)))?;
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenwick_prefix_sums_match_a_plain_count() {
        let mut f = Fenwick::default();
        let mut plain = Vec::new();
        for i in 0..100i64 {
            let v = i % 3;
            f.push(v);
            plain.push(v);
            if i % 7 == 0 {
                f.add((i / 2) as usize, 5);
                plain[(i / 2) as usize] += 5;
            }
            for n in 0..=plain.len() {
                assert_eq!(f.prefix(n), plain[..n].iter().sum::<i64>(), "prefix {n} after {i} pushes");
            }
        }
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0, 0x0f, 0xab]), "000fab");
    }
}
