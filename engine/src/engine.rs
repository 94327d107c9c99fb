//! [`EventEngine`]: one event's inventory and lifecycle as a synchronous state machine.
//!
//! Every command either refuses with an [`EngineError`] and changes nothing, or applies
//! completely and returns the [`ChangeSet`] it made. Holds are all-or-nothing.

mod payment;

pub use payment::{
    CaptureOutcome, ConfirmFinish, ConfirmStart, RefundOutcome, RefundStart, order_id, order_reservation,
};

use crate::layout::TicketTypeSpec;
use crate::queue::Queue;
use crate::{
    Change, ChangeSet, EngineError, EventId, EventStatus, LeaveReason, OwedRefund, Payment, PaymentStatus, QueueMember,
    QueueSettings, QueueStanding, QueueView, Reservation, ReservationId, ReservationItems, ReservationNumber,
    ReservationStatus, SeatCounts, SeatIndex, SeatMap, SeatStatus, TicketTypeId, Timestamp, UserId,
};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

/// The rules an event sells by; an admin may change them while the event is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRules {
    /// Holds are taken from this instant...
    pub sale_start: Timestamp,
    /// ...until this one.
    pub sale_end: Timestamp,
    /// Seats (and GA tickets) one buyer may hold and own in this event; 0 is no limit.
    pub per_user_limit: u32,
    /// How long an unpaid hold lasts.
    pub hold_ttl: Duration,
    /// Largest number of seats or tickets in one reservation.
    pub max_per_reservation: u32,
    /// Cancelled by an admin.
    pub cancelled: bool,
    /// The admission queue.
    pub queue: QueueSettings,
    /// Orders the pre-queue at opening; fixed when the event is created, its hash published
    /// before opening and the seed itself after (see [`QueueView::seed`]).
    pub queue_seed: [u8; 32],
}

/// A general-admission ticket type with its live counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTypeState {
    /// Its definition.
    pub spec: TicketTypeSpec,
    /// Tickets held by reservations awaiting payment.
    pub held: u32,
    /// Tickets sold.
    pub sold: u32,
}

impl TicketTypeState {
    /// Tickets still on sale.
    pub fn available(&self) -> u32 {
        self.spec.capacity - self.held - self.sold
    }
}

/// What a buyer asks to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These seats, all or none.
    Seats(Vec<SeatIndex>),
    /// A quantity of a general-admission ticket type.
    General {
        /// The ticket type.
        ticket_type: TicketTypeId,
        /// How many.
        quantity: u32,
    },
    /// The best `quantity` seats the engine can find.
    BestAvailable {
        /// How many seats.
        quantity: u32,
        /// Only in this section (an index from [`SeatMap::section`]).
        section: Option<u16>,
        /// All in one row, side by side.
        adjacent: bool,
    },
}

impl Selection {
    fn quantity(&self) -> u32 {
        match self {
            Self::Seats(s) => s.len() as u32,
            Self::General { quantity, .. } | Self::BestAvailable { quantity, .. } => *quantity,
        }
    }
}

/// A hold command. The reservation id comes from the caller: the engine makes no ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    /// Id for the new reservation.
    pub id: ReservationId,
    /// The buyer.
    pub user: UserId,
    /// What to hold.
    pub selection: Selection,
    /// The caller checked a valid admission token for this user and event. When the queue
    /// is enabled a hold needs it, and the user must still be admitted.
    pub admitted: bool,
}

/// What the store keeps of an event's inventory: enough to rebuild its engine exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Seats blocked by an admin.
    pub blocked: Vec<SeatIndex>,
    /// Held and confirmed reservations (others are ignored).
    pub live: Vec<Reservation>,
    /// Sequence number of the last persisted change set.
    pub seq: u64,
    /// Highest reservation serial handed out.
    pub serial: u32,
    /// The event status last persisted.
    pub status: EventStatus,
    /// Queue members, waiting and admitted.
    pub queue: Vec<QueueMember>,
    /// Whether the queue had opened (its pre-queue ordered).
    pub queue_opened: bool,
    /// The current payment attempt of each live reservation that has one.
    pub payments: Vec<Payment>,
    /// Captures not refunded yet (see [`OwedRefund`]).
    pub owed_refunds: Vec<OwedRefund>,
}

/// One event's seat map, GA inventory, live reservations and lifecycle.
#[derive(Debug, Clone)]
pub struct EventEngine {
    event: EventId,
    rules: EventRules,
    seats: SeatMap,
    ticket_types: Vec<TicketTypeState>,
    /// Live reservations only (held or confirmed); ended ones live in the store.
    reservations: HashMap<ReservationId, Reservation>,
    /// Hold expiries, earliest first. Entries of reservations that were confirmed or
    /// cancelled meanwhile are skipped when they surface.
    expiries: BinaryHeap<Reverse<(Timestamp, ReservationId)>>,
    /// Seats and tickets each buyer holds or owns, for the per-user limit.
    per_user: HashMap<UserId, u32>,
    status: EventStatus,
    seq: u64,
    serial: u32,
    queue: Queue,
    /// The current payment attempt of each live reservation that has one.
    payments: HashMap<ReservationId, Payment>,
    /// Captures to refund, by payment key.
    owed_refunds: BTreeMap<String, OwedRefund>,
}

impl EventEngine {
    /// A fresh event: every seat available, nothing held.
    pub fn new(
        event: EventId,
        rules: EventRules,
        seats: SeatMap,
        ticket_types: Vec<TicketTypeSpec>,
        now: Timestamp,
    ) -> Self {
        let mut engine = Self {
            event,
            rules,
            seats,
            ticket_types: ticket_types.into_iter().map(|spec| TicketTypeState { spec, held: 0, sold: 0 }).collect(),
            reservations: HashMap::new(),
            expiries: BinaryHeap::new(),
            per_user: HashMap::new(),
            status: EventStatus::Upcoming,
            seq: 0,
            serial: 0,
            queue: Queue::new(),
            payments: HashMap::new(),
            owed_refunds: BTreeMap::new(),
        };
        engine.status = engine.status_at(now);
        engine
    }

    /// Rebuilds an event from what the store kept (see [`Persisted`]). `seq` and `serial`
    /// continue where they were. What changed while nobody was looking (holds that lapsed,
    /// a sale that ended) comes back as the returned change set, which the caller must
    /// persist like any other.
    pub fn restore(
        event: EventId,
        rules: EventRules,
        seats: SeatMap,
        ticket_types: Vec<TicketTypeSpec>,
        persisted: Persisted,
        now: Timestamp,
    ) -> (Self, Option<ChangeSet>) {
        let mut engine = Self::new(event, rules, seats, ticket_types, now);
        engine.seq = persisted.seq;
        engine.serial = persisted.serial;
        engine.queue = Queue::restore(persisted.queue, persisted.queue_opened, &engine.rules.queue_seed, now);
        for seat in persisted.blocked {
            engine.seats.set(seat, SeatStatus::Blocked);
        }
        for r in persisted.live.into_iter().filter(|r| r.status.is_live()) {
            let status = if r.status == ReservationStatus::Held { SeatStatus::Held } else { SeatStatus::Sold };
            engine.transfer(&r.items, SeatStatus::Available, status, &mut Vec::new());
            *engine.per_user.entry(r.user).or_default() += r.items.quantity();
            if r.status == ReservationStatus::Held {
                engine.expiries.push(Reverse((r.expires_at, r.id)));
            }
            engine.serial = engine.serial.max(r.number.serial);
            engine.reservations.insert(r.id, r);
        }
        // An attempt that ended (aborted by an offline confirmation, or refunded) is history,
        // as it would be had the engine never stopped.
        for p in persisted.payments {
            let ended = matches!(p.status, PaymentStatus::Aborted | PaymentStatus::Cancelled);
            if !ended && engine.reservations.contains_key(&p.reservation) {
                engine.payments.insert(p.reservation, p);
            }
        }
        engine.owed_refunds = persisted.owed_refunds.into_iter().map(|o| (o.payment_key.clone(), o)).collect();
        // Start from the status last persisted, so a move that happened while the actor was
        // down is reported (and persisted) like any other.
        engine.status = persisted.status;
        let changed = engine.tick(now);
        (engine, changed)
    }

    /// The event this engine sells.
    pub fn event(&self) -> EventId {
        self.event
    }

    /// The rules in force.
    pub fn rules(&self) -> &EventRules {
        &self.rules
    }

    /// The seat map.
    pub fn seats(&self) -> &SeatMap {
        &self.seats
    }

    /// Seats by status.
    pub fn counts(&self) -> SeatCounts {
        self.seats.counts()
    }

    /// General-admission ticket types with their counters.
    pub fn ticket_types(&self) -> &[TicketTypeState] {
        &self.ticket_types
    }

    /// The lifecycle status as of the last command or tick.
    pub fn status(&self) -> EventStatus {
        self.status
    }

    /// Sequence number of the last change set.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The highest reservation serial handed out.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// A live (held or confirmed) reservation.
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// All live reservations, in no particular order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// Seats and tickets `user` holds or owns here.
    pub fn user_quantity(&self, user: UserId) -> u32 {
        self.per_user.get(&user).copied().unwrap_or(0)
    }

    /// Whether anything at all is left to sell (seats or GA tickets).
    fn has_inventory(&self) -> bool {
        self.seats.counts().available > 0 || self.ticket_types.iter().any(|t| t.available() > 0)
    }

    /// The status the rules and inventory give at `now`.
    pub fn status_at(&self, now: Timestamp) -> EventStatus {
        if self.rules.cancelled {
            EventStatus::Cancelled
        } else if now >= self.rules.sale_end {
            EventStatus::Ended
        } else if now < self.rules.sale_start {
            EventStatus::Upcoming
        } else if self.has_inventory() {
            EventStatus::OnSale
        } else {
            EventStatus::SoldOut
        }
    }

    /// The next instant at which [`EventEngine::tick`] has work: a hold expiry, sale start
    /// or sale end, or queue work (an admission expiry, a heartbeat deadline, the next
    /// admission). The caller arms one timer for it. Right after `tick(now)` it is always
    /// later than `now`.
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let lifecycle = [self.rules.sale_start, self.rules.sale_end].into_iter().filter(|&t| t > now).min();
        let expiry = self.expiries.peek().map(|Reverse((t, _))| *t);
        let queue = self.queue.next_deadline(&self.rules.queue, self.status, now);
        [lifecycle, expiry, queue].into_iter().flatten().min()
    }

    /// Resolves seat ids, naming every unknown one and refusing duplicates.
    pub fn resolve_seats<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<SeatIndex>, EngineError> {
        let mut seats = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match self.seats.resolve(id.as_ref()) {
                Some(s) if seats.contains(&s) => return Err(EngineError::DuplicateSeat(id.as_ref().to_owned())),
                Some(s) => seats.push(s),
                None => unknown.push(id.as_ref().to_owned()),
            }
        }
        if unknown.is_empty() { Ok(seats) } else { Err(EngineError::UnknownSeats(unknown)) }
    }

    /// Lets time pass: expires lapsed holds, moves the lifecycle, then runs the queue: opens
    /// the pre-queue once the sale starts, drops silent waiters, lapses admissions, closes
    /// the queue when the event ends, and admits while on sale. `None` when nothing changed.
    pub fn tick(&mut self, now: Timestamp) -> Option<ChangeSet> {
        let mut changes = Vec::new();
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            // Skip entries whose reservation was confirmed, cancelled or re-timed since.
            // A hold whose payment is being captured is pinned: the capture's outcome decides.
            let due =
                self.reservations.get(&id).is_some_and(|r| r.status == ReservationStatus::Held && r.expires_at <= now)
                    && !self.payment_in_flight(id);
            if due {
                self.end(id, ReservationStatus::Expired, now, &mut changes);
            }
        }
        self.refresh_status(now, &mut changes);
        self.queue.tick(&self.rules.queue, &self.rules.queue_seed, self.status, now, &mut changes);
        self.commit(now, changes)
    }

    /// Holds seats or tickets for a buyer, all or nothing. When the queue is enabled the
    /// buyer must be admitted, and a successful hold ends the admission (the slot passes
    /// on); a refused one keeps it.
    pub fn hold(&mut self, req: HoldRequest, now: Timestamp) -> Result<ChangeSet, EngineError> {
        // Ids come from the caller; reusing a live one would orphan that reservation's seats.
        if let Some(live) = self.reservations.get(&req.id) {
            return Err(EngineError::InvalidTransition { from: live.status, to: ReservationStatus::Held });
        }
        let status = self.status_at(now);
        if matches!(status, EventStatus::Upcoming | EventStatus::Ended | EventStatus::Cancelled) {
            return Err(EngineError::NotOnSale(status));
        }
        if self.rules.queue.enabled
            && !(req.admitted && self.queue.admitted_until(req.user).is_some_and(|until| until > now))
        {
            return Err(EngineError::AdmissionRequired);
        }
        let quantity = req.selection.quantity();
        let max = self.rules.max_per_reservation;
        if quantity == 0 || quantity > max {
            return Err(EngineError::InvalidQuantity { max });
        }
        let current = self.user_quantity(req.user);
        let limit = self.rules.per_user_limit;
        if limit > 0 && current + quantity > limit {
            return Err(EngineError::LimitExceeded { limit, current, requested: quantity });
        }
        let (items, amount) = match req.selection {
            Selection::Seats(seats) => {
                if let Some(&bad) = seats.iter().find(|s| s.0 >= self.seats.len()) {
                    return Err(EngineError::UnknownSeats(vec![format!("#{}", bad.0)]));
                }
                let mut unavailable = Vec::new();
                for (i, &s) in seats.iter().enumerate() {
                    if seats[..i].contains(&s) {
                        return Err(EngineError::DuplicateSeat(self.seats.seat_id(s)));
                    }
                    if self.seats.status(s) != SeatStatus::Available {
                        unavailable.push(self.seats.seat_id(s));
                    }
                }
                if !unavailable.is_empty() {
                    return Err(EngineError::SeatsUnavailable(unavailable));
                }
                let amount = seats.iter().fold(0i64, |sum, &s| sum.saturating_add(self.seats.price(s)));
                (ReservationItems::Seats(seats), amount)
            }
            Selection::BestAvailable { quantity, section, adjacent } => {
                let seats = self
                    .seats
                    .find_best(quantity, section, adjacent)
                    .ok_or(EngineError::NoSeatsTogether { quantity })?;
                let amount = seats.iter().fold(0i64, |sum, &s| sum.saturating_add(self.seats.price(s)));
                (ReservationItems::Seats(seats), amount)
            }
            Selection::General { ticket_type, quantity } => {
                let tt = self
                    .ticket_types
                    .iter()
                    .find(|t| t.spec.id == ticket_type)
                    .ok_or(EngineError::UnknownTicketType)?;
                if tt.available() < quantity {
                    return Err(EngineError::InsufficientInventory { available: tt.available() });
                }
                (ReservationItems::General { ticket_type, quantity }, tt.spec.price.saturating_mul(i64::from(quantity)))
            }
        };

        // Decided: from here on nothing can fail.
        let mut changes = Vec::with_capacity(quantity as usize + 2);
        self.transfer(&items, SeatStatus::Available, SeatStatus::Held, &mut changes);
        *self.per_user.entry(req.user).or_default() += quantity;
        self.serial += 1;
        let expires_at = now.plus(self.rules.hold_ttl);
        let reservation = Reservation {
            id: req.id,
            number: ReservationNumber { date: now.yyyymmdd(), serial: self.serial },
            event: self.event,
            user: req.user,
            items,
            status: ReservationStatus::Held,
            amount,
            created_at: now,
            expires_at,
            updated_at: now,
        };
        changes.push(Change::ReservationCreated(Box::new(reservation.clone())));
        self.expiries.push(Reverse((expires_at, req.id)));
        self.reservations.insert(req.id, reservation);
        if self.rules.queue.enabled {
            self.queue.leave(req.user, LeaveReason::Reserved, &mut changes);
        }
        self.refresh_status(now, &mut changes);
        Ok(self.commit(now, changes).expect("a hold always changes something"))
    }

    /// Marks a held reservation paid outside the payment provider (an admin's offline
    /// payment): its seats become sold, and a payment attempt it had is aborted. Confirming
    /// a confirmed reservation changes nothing and succeeds (a retried confirmation is not
    /// an error). Payments through the provider go through [`EventEngine::begin_confirm`].
    pub fn confirm(&mut self, id: ReservationId, now: Timestamp) -> Result<Option<ChangeSet>, EngineError> {
        if self.payment_in_flight(id) {
            return Err(EngineError::PaymentInProgress);
        }
        let r = self.reservations.get_mut(&id).ok_or(EngineError::ReservationNotFound)?;
        match r.status {
            ReservationStatus::Confirmed => return Ok(None),
            ReservationStatus::Held if r.expires_at > now => {}
            // A hold past its expiry is expired even if the tick that ends it has not run yet.
            _ => {
                let from = ReservationStatus::Expired;
                return Err(EngineError::InvalidTransition { from, to: ReservationStatus::Confirmed });
            }
        }
        r.status = ReservationStatus::Confirmed;
        r.updated_at = now;
        let (items, user) = (r.items.clone(), r.user);
        let mut changes = Vec::with_capacity(items.quantity() as usize + 2);
        // Paid outside the provider: an attempt prepared meanwhile will never be captured.
        self.end_payment(id, now, &mut changes);
        self.transfer(&items, SeatStatus::Held, SeatStatus::Sold, &mut changes);
        changes.push(Change::ReservationStatus { id, user, status: ReservationStatus::Confirmed });
        Ok(self.commit(now, changes))
    }

    /// Cancels a held or confirmed reservation (a confirmed one is being refunded); its
    /// seats go back on sale.
    pub fn cancel(&mut self, id: ReservationId, now: Timestamp) -> Result<ChangeSet, EngineError> {
        if !self.reservations.contains_key(&id) {
            return Err(EngineError::ReservationNotFound);
        }
        match self.payments.get(&id).map(|p| p.status) {
            Some(PaymentStatus::InProgress | PaymentStatus::Cancelling) => return Err(EngineError::PaymentInProgress),
            Some(PaymentStatus::Done) => return Err(EngineError::RefundRequired),
            _ => {}
        }
        let mut changes = Vec::new();
        self.end(id, ReservationStatus::Cancelled, now, &mut changes);
        self.refresh_status(now, &mut changes);
        Ok(self.commit(now, changes).expect("a cancellation always changes something"))
    }

    /// Takes seats off sale, all or none: every seat must be available or already blocked.
    pub fn block(&mut self, seats: &[SeatIndex], now: Timestamp) -> Result<Option<ChangeSet>, EngineError> {
        if let Some(&bad) = seats.iter().find(|s| s.0 >= self.seats.len()) {
            return Err(EngineError::UnknownSeats(vec![format!("#{}", bad.0)]));
        }
        let taken: Vec<String> = seats
            .iter()
            .filter(|&&s| matches!(self.seats.status(s), SeatStatus::Held | SeatStatus::Sold))
            .map(|&s| self.seats.seat_id(s))
            .collect();
        if !taken.is_empty() {
            return Err(EngineError::SeatsUnavailable(taken));
        }
        Ok(self.set_seats(seats, SeatStatus::Available, SeatStatus::Blocked, now))
    }

    /// Puts blocked seats back on sale; seats that are not blocked are left alone.
    pub fn unblock(&mut self, seats: &[SeatIndex], now: Timestamp) -> Option<ChangeSet> {
        let seats: Vec<SeatIndex> = seats.iter().copied().filter(|s| s.0 < self.seats.len()).collect();
        let seats = seats.as_slice();
        self.set_seats(seats, SeatStatus::Blocked, SeatStatus::Available, now)
    }

    /// Replaces the rules (sale window, limits, TTL, queue settings); `cancelled` and
    /// `queue_seed` stay as they are. Existing holds keep their expiry and admitted buyers
    /// theirs. Disabling the queue clears it; a new rate or cap applies from the next tick.
    pub fn set_rules(&mut self, rules: EventRules, now: Timestamp) -> Option<ChangeSet> {
        // Credit earned so far was earned at the old rate.
        self.queue.accrue(self.rules.queue.rate_per_second, now);
        self.rules = EventRules { cancelled: self.rules.cancelled, queue_seed: self.rules.queue_seed, ..rules };
        let mut changes = Vec::new();
        self.refresh_status(now, &mut changes);
        self.queue.settle(&self.rules.queue, &self.rules.queue_seed, self.status, now, &mut changes);
        self.commit(now, changes)
    }

    /// Cancels the event: no more sales, every unpaid hold is released and the queue closes.
    /// Confirmed reservations stay confirmed until they are refunded one by one.
    pub fn cancel_event(&mut self, now: Timestamp) -> Option<ChangeSet> {
        self.rules.cancelled = true;
        let mut changes = Vec::new();
        // A hold whose payment is being captured is left to the capture's outcome.
        let held: Vec<ReservationId> = self
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Held && !self.payment_in_flight(r.id))
            .map(|r| r.id)
            .collect();
        for id in held {
            self.end(id, ReservationStatus::Cancelled, now, &mut changes);
        }
        self.refresh_status(now, &mut changes);
        self.queue.settle(&self.rules.queue, &self.rules.queue_seed, self.status, now, &mut changes);
        self.commit(now, changes)
    }

    /// Puts a buyer in the queue and says where they stand. Before sale start they join the
    /// pre-queue (ordered at opening); after it, the back of the line. A join that finds
    /// room under the cap and rate credit is admitted at once: the same change set carries
    /// `Joined` then `Admitted` (and admits anyone ahead first, in order). Joining again
    /// changes nothing, counts as a heartbeat and returns the current standing.
    pub fn join_queue(
        &mut self,
        user: UserId,
        now: Timestamp,
    ) -> Result<(QueueStanding, Option<ChangeSet>), EngineError> {
        if !self.rules.queue.enabled {
            return Err(EngineError::QueueDisabled);
        }
        let status = self.status_at(now);
        if matches!(status, EventStatus::Ended | EventStatus::Cancelled) {
            return Err(EngineError::NotOnSale(status));
        }
        let mut changes = Vec::new();
        match self.queue.admitted_until(user) {
            // A lapsed admission the tick has not ended yet: end it and queue again.
            Some(until) if until <= now => {
                self.queue.leave(user, LeaveReason::Lapsed, &mut changes);
            }
            _ if self.queue.contains(user) => {
                self.queue.heartbeat(user, now);
                return Ok((self.queue_standing(user, now), None));
            }
            _ => {}
        }
        self.refresh_status(now, &mut changes);
        self.queue.settle(&self.rules.queue, &self.rules.queue_seed, self.status, now, &mut changes);
        self.queue.join(user, now, &mut changes);
        self.queue.admit(&self.rules.queue, self.status == EventStatus::OnSale, now, &mut changes);
        Ok((self.queue_standing(user, now), self.commit(now, changes)))
    }

    /// Where a buyer stands, as a status poll: it is also the buyer's heartbeat. Changes
    /// nothing that is persisted.
    pub fn queue_status(&mut self, user: UserId, now: Timestamp) -> QueueStanding {
        self.queue.heartbeat(user, now);
        self.queue_standing(user, now)
    }

    /// Where a buyer stands, without counting as a heartbeat (for pushing positions).
    pub fn queue_standing(&self, user: UserId, now: Timestamp) -> QueueStanding {
        self.queue.standing(user, &self.rules.queue, self.status_at(now), self.rules.sale_start, now)
    }

    /// Takes a buyer out of the queue, waiting or admitted; an admitted slot frees at once
    /// (the next buyer goes in at the following tick). `None` if they were not queued.
    pub fn leave_queue(&mut self, user: UserId, now: Timestamp) -> Option<ChangeSet> {
        let mut changes = Vec::new();
        self.queue.leave(user, LeaveReason::Left, &mut changes);
        self.commit(now, changes)
    }

    /// An admin empties the queue: everyone waiting or admitted leaves with `Cleared`.
    pub fn clear_queue(&mut self, now: Timestamp) -> Option<ChangeSet> {
        let mut changes = Vec::new();
        self.queue.clear(LeaveReason::Cleared, &mut changes);
        self.commit(now, changes)
    }

    /// The admin's view of the queue.
    pub fn queue_view(&self, now: Timestamp) -> QueueView {
        self.queue.view(&self.rules.queue, &self.rules.queue_seed, now)
    }

    /// A waiting buyer's 1-based place in line; `None` if not waiting, or in the pre-queue
    /// before the draw.
    pub fn queue_position(&self, user: UserId) -> Option<u64> {
        self.queue.position(user)
    }

    /// When a buyer's admission lapses, if they are admitted at `now`.
    pub fn queue_admission(&self, user: UserId, now: Timestamp) -> Option<Timestamp> {
        self.queue.admitted_until(user).filter(|&until| until > now)
    }

    /// Whether a buyer is in the queue, waiting or admitted.
    pub fn in_queue(&self, user: UserId) -> bool {
        self.queue.contains(user)
    }

    /// Every queue member as the store keeps it (see [`Persisted::queue`]), by user id.
    pub fn queue_members(&self) -> Vec<QueueMember> {
        self.queue.members()
    }

    /// Whether the queue has opened (see [`Persisted::queue_opened`]).
    pub fn queue_opened(&self) -> bool {
        self.queue.opened()
    }

    fn set_seats(
        &mut self,
        seats: &[SeatIndex],
        from: SeatStatus,
        to: SeatStatus,
        now: Timestamp,
    ) -> Option<ChangeSet> {
        let mut changes = Vec::new();
        for &seat in seats {
            if self.seats.status(seat) == from {
                self.seats.set(seat, to);
                changes.push(Change::Seat { seat, status: to });
            }
        }
        self.refresh_status(now, &mut changes);
        self.commit(now, changes)
    }

    /// Ends a live reservation: releases its inventory, aborts an unpaid payment, and drops
    /// both from memory.
    fn end(&mut self, id: ReservationId, status: ReservationStatus, now: Timestamp, changes: &mut Vec<Change>) {
        let Some(r) = self.reservations.remove(&id) else { return };
        self.end_payment(id, now, changes);
        let from = if r.status == ReservationStatus::Held { SeatStatus::Held } else { SeatStatus::Sold };
        self.transfer(&r.items, from, SeatStatus::Available, changes);
        if let Some(n) = self.per_user.get_mut(&r.user) {
            *n -= r.items.quantity();
            if *n == 0 {
                self.per_user.remove(&r.user);
            }
        }
        changes.push(Change::ReservationStatus { id, user: r.user, status });
    }

    /// Moves a reservation's inventory from one status to another (available, held or
    /// sold), recording each change. GA counters move between `held` and `sold` as a whole
    /// reservation: its tickets are never split across statuses.
    fn transfer(&mut self, items: &ReservationItems, from: SeatStatus, to: SeatStatus, changes: &mut Vec<Change>) {
        match items {
            ReservationItems::Seats(seats) => {
                for &seat in seats {
                    self.seats.set(seat, to);
                    changes.push(Change::Seat { seat, status: to });
                }
            }
            ReservationItems::General { ticket_type, quantity } => {
                let Some(tt) = self.ticket_types.iter_mut().find(|t| t.spec.id == *ticket_type) else { return };
                for (status, delta) in [(from, -i64::from(*quantity)), (to, i64::from(*quantity))] {
                    let counter = match status {
                        SeatStatus::Held => &mut tt.held,
                        SeatStatus::Sold => &mut tt.sold,
                        SeatStatus::Available | SeatStatus::Blocked => continue,
                    };
                    *counter = u32::try_from(i64::from(*counter) + delta).expect("GA counters stay within capacity");
                }
                changes.push(Change::General { ticket_type: *ticket_type, held: tt.held, sold: tt.sold });
            }
        }
    }

    fn refresh_status(&mut self, now: Timestamp, changes: &mut Vec<Change>) {
        let status = self.status_at(now);
        if status != self.status {
            self.status = status;
            changes.push(Change::EventStatus(status));
        }
    }

    fn commit(&mut self, now: Timestamp, changes: Vec<Change>) -> Option<ChangeSet> {
        if changes.is_empty() {
            return None;
        }
        self.seq += 1;
        Some(ChangeSet { seq: self.seq, at: now, changes })
    }
}
