//! The embedded in-memory store: Tiketi's zero-setup default. It keeps exactly what the
//! PostgreSQL store keeps, for as long as the process lives.

use crate::records::{
    AuditRecord, EventFilter, EventRecord, EventSnapshot, IdempotencyRecord, JournalEntry, LayoutRecord, NewUser, Page,
    RefreshTokenRecord, ReservationFilter, UserRecord,
};
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use tiketi_engine::{
    Change, EventId, OwedRefund, Payment, QueueChange, QueueMember, Reservation, ReservationId, SeatIndex, SeatStatus,
    Timestamp, UserId,
};

/// An in-process store behind one mutex. Every operation is a few map lookups, so the
/// lock is held for microseconds; the write-behind journal is its only hot writer.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, UserRecord>,
    user_by_email: HashMap<String, UserId>,
    refresh_tokens: HashMap<String, RefreshTokenRecord>,
    layouts: Vec<LayoutRecord>,
    events: HashMap<EventId, EventState>,
    reservations: HashMap<ReservationId, Reservation>,
    reservations_by_user: HashMap<UserId, Vec<ReservationId>>,
    idempotency: HashMap<(UserId, String), IdempotencyRecord>,
    /// Payment attempts by order id, and each user's in the order they were made.
    payments: HashMap<String, Payment>,
    payments_by_user: HashMap<UserId, Vec<String>>,
    /// Each reservation's attempts, latest last.
    payments_by_reservation: HashMap<ReservationId, Vec<String>>,
    audit: Vec<AuditRecord>,
}

struct EventState {
    record: EventRecord,
    blocked: BTreeSet<SeatIndex>,
    live: HashSet<ReservationId>,
    seq: u64,
    serial: u32,
    ever_reserved: bool,
    queue: BTreeMap<UserId, QueueMember>,
    queue_opened: bool,
    /// Buyers who ever joined the queue.
    queue_joins: u64,
    /// Captures owed back, by payment key, and whether refunded (kept, as PostgreSQL keeps
    /// the row: a repeated report of a refunded one changes nothing).
    owed_refunds: BTreeMap<String, (OwedRefund, bool)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still consistent per
        // operation; keep serving rather than poisoning every later request.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn apply(&mut self, entry: &JournalEntry) -> Result<(), StoreError> {
        let Inner {
            events,
            reservations,
            reservations_by_user,
            idempotency,
            payments,
            payments_by_user,
            payments_by_reservation,
            audit,
            ..
        } = self;
        let state = events.get_mut(&entry.event).ok_or(StoreError::NotFound)?;
        if let Some(record) = &entry.event_record {
            state.record = (**record).clone();
        }
        let at = entry.changes.at;
        for change in &entry.changes.changes {
            match change {
                Change::Seat { seat, status: SeatStatus::Blocked } => {
                    state.blocked.insert(*seat);
                }
                Change::Seat { seat, .. } => {
                    state.blocked.remove(seat);
                }
                Change::General { .. } => {}
                Change::ReservationCreated(r) => {
                    state.live.insert(r.id);
                    state.serial = state.serial.max(r.number.serial);
                    state.ever_reserved = true;
                    reservations_by_user.entry(r.user).or_default().push(r.id);
                    reservations.insert(r.id, (**r).clone());
                }
                Change::ReservationStatus { id, status, .. } => {
                    if let Some(r) = reservations.get_mut(id) {
                        r.status = *status;
                        r.updated_at = at;
                    }
                    if !status.is_live() {
                        state.live.remove(id);
                    }
                }
                Change::EventStatus(status) => state.record.status = *status,
                Change::Queue(QueueChange::Joined { user, ticket, at }) => {
                    let member = QueueMember { user: *user, ticket: *ticket, joined_at: *at, admitted_until: None };
                    state.queue.insert(*user, member);
                    state.queue_joins += 1;
                }
                Change::Queue(QueueChange::Admitted { user, until }) => {
                    if let Some(member) = state.queue.get_mut(user) {
                        member.admitted_until = Some(*until);
                    }
                }
                Change::Queue(QueueChange::Left { user, .. }) => {
                    state.queue.remove(user);
                }
                Change::Queue(QueueChange::Opened) => state.queue_opened = true,
                Change::Payment(p) => {
                    if !payments.contains_key(&p.order_id) {
                        payments_by_user.entry(p.user).or_default().push(p.order_id.clone());
                        payments_by_reservation.entry(p.reservation).or_default().push(p.order_id.clone());
                    }
                    payments.insert(p.order_id.clone(), (**p).clone());
                }
                Change::RefundOwed(owed) => {
                    state.owed_refunds.entry(owed.payment_key.clone()).or_insert_with(|| ((**owed).clone(), false));
                }
                Change::RefundPaid { payment_key, .. } => {
                    if let Some((_, refunded)) = state.owed_refunds.get_mut(payment_key) {
                        *refunded = true;
                    }
                }
            }
        }
        audit.extend(entry.audit.iter().cloned());
        state.seq = state.seq.max(entry.changes.seq);
        for record in &entry.idempotency {
            idempotency.insert((record.user, record.key.clone()), record.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        let mut inner = self.lock();
        if inner.user_by_email.contains_key(&user.email) {
            return Err(StoreError::Conflict("email already registered".into()));
        }
        let record = UserRecord {
            id: UserId(uuid::Uuid::new_v4()),
            email: user.email,
            password_hash: user.password_hash,
            name: user.name,
            role: user.role,
            created_at: user.created_at,
        };
        inner.user_by_email.insert(record.email.clone(), record.id);
        inner.users.insert(record.id, record.clone());
        Ok(record)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner.user_by_email.get(&email.to_lowercase()).and_then(|id| inner.users.get(id)).cloned())
    }

    async fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn existing_users(&self, ids: &[UserId]) -> Result<Vec<UserId>, StoreError> {
        let inner = self.lock();
        Ok(ids.iter().copied().filter(|id| inner.users.contains_key(id)).collect())
    }

    async fn put_refresh_token(&self, token: RefreshTokenRecord) -> Result<(), StoreError> {
        self.lock().refresh_tokens.insert(token.hash.clone(), token);
        Ok(())
    }

    async fn take_refresh_token(&self, hash: &str) -> Result<Option<RefreshTokenRecord>, StoreError> {
        Ok(self.lock().refresh_tokens.remove(hash))
    }

    async fn create_layout(&self, layout: LayoutRecord) -> Result<(), StoreError> {
        self.lock().layouts.push(layout);
        Ok(())
    }

    async fn layouts(&self) -> Result<Vec<LayoutRecord>, StoreError> {
        Ok(self.lock().layouts.clone())
    }

    async fn layout(&self, id: uuid::Uuid) -> Result<Option<LayoutRecord>, StoreError> {
        Ok(self.lock().layouts.iter().find(|l| l.id == id).cloned())
    }

    async fn create_event(&self, event: EventRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.events.contains_key(&event.id) {
            return Err(StoreError::Conflict("event exists".into()));
        }
        inner.events.insert(
            event.id,
            EventState {
                record: event,
                blocked: BTreeSet::new(),
                live: HashSet::new(),
                seq: 0,
                serial: 0,
                ever_reserved: false,
                queue: BTreeMap::new(),
                queue_opened: false,
                queue_joins: 0,
                owed_refunds: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        Ok(self.lock().events.get(&id).map(|s| s.record.clone()))
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Page<EventRecord>, StoreError> {
        let inner = self.lock();
        let query = filter.query.as_deref().map(str::to_lowercase);
        let mut matching: Vec<&EventRecord> = inner
            .events
            .values()
            .map(|s| &s.record)
            .filter(|e| filter.status.is_none_or(|s| e.status_at(filter.now) == s))
            .filter(|e| {
                query.as_deref().is_none_or(|q| {
                    [&e.title, &e.artist, &e.venue].iter().any(|field| field.to_lowercase().contains(q))
                })
            })
            .collect();
        matching.sort_by_key(|e| (e.event_date, e.id));
        let total = matching.len() as u64;
        let skip = (filter.page.saturating_sub(1) as usize).saturating_mul(filter.limit as usize);
        let items = matching.into_iter().skip(skip).take(filter.limit as usize).cloned().collect();
        Ok(Page { items, total })
    }

    async fn delete_event(&self, id: EventId) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match inner.events.get(&id) {
            None => Err(StoreError::NotFound),
            Some(s) if s.ever_reserved => Err(StoreError::Conflict("event has reservations".into())),
            Some(_) => {
                inner.events.remove(&id);
                Ok(())
            }
        }
    }

    async fn load_event(&self, id: EventId) -> Result<Option<EventSnapshot>, StoreError> {
        let inner = self.lock();
        let Some(state) = inner.events.get(&id) else { return Ok(None) };
        Ok(Some(EventSnapshot {
            event: state.record.clone(),
            blocked: state.blocked.iter().copied().collect(),
            live: state.live.iter().filter_map(|r| inner.reservations.get(r)).cloned().collect(),
            seq: state.seq,
            serial: state.serial,
            idempotency: inner.idempotency.values().filter(|r| r.event == id).cloned().collect(),
            queue: state.queue.values().cloned().collect(),
            queue_opened: state.queue_opened,
            payments: state
                .live
                .iter()
                .filter_map(|r| inner.payments_by_reservation.get(r)?.last())
                .filter_map(|order| inner.payments.get(order))
                .cloned()
                .collect(),
            owed_refunds: state
                .owed_refunds
                .values()
                .filter(|(_, refunded)| !refunded)
                .map(|(o, _)| o.clone())
                .collect(),
            uncaptured: {
                let found = |p: &Payment| p.payment_key.as_ref().is_some_and(|k| state.owed_refunds.contains_key(k));
                let mut declined: Vec<Payment> = inner
                    .payments
                    .values()
                    .filter(|p| p.event == id && not_captured(p) && !found(p))
                    .cloned()
                    .collect();
                declined.sort_by_key(|p| p.updated_at);
                declined
            },
        }))
    }

    async fn append(&self, entries: &[JournalEntry]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // All or nothing: refuse the whole batch before touching anything.
        if let Some(missing) = entries.iter().find(|e| !inner.events.contains_key(&e.event)) {
            return Err(StoreError::Conflict(format!("event {} does not exist", missing.event)));
        }
        for entry in entries {
            inner.apply(entry)?;
        }
        Ok(())
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.lock().reservations.get(&id).cloned())
    }

    async fn reservations_of(&self, user: UserId) -> Result<Vec<Reservation>, StoreError> {
        let inner = self.lock();
        let ids = inner.reservations_by_user.get(&user).map(Vec::as_slice).unwrap_or_default();
        Ok(ids.iter().rev().filter_map(|id| inner.reservations.get(id)).cloned().collect())
    }

    async fn find_reservations(&self, filter: &ReservationFilter) -> Result<Page<Reservation>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<&Reservation> = inner
            .reservations
            .values()
            .filter(|r| filter.event.is_none_or(|e| r.event == e))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.user.is_none_or(|u| r.user == u))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.number.serial, r.id)));
        let skip = (filter.page.max(1) as usize - 1) * filter.limit as usize;
        let items = found.iter().skip(skip).take(filter.limit as usize).map(|r| (*r).clone()).collect();
        Ok(Page { items, total: found.len() as u64 })
    }

    async fn idempotency(&self, user: UserId, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.lock().idempotency.get(&(user, key.to_owned())).cloned())
    }

    async fn idempotency_fingerprints(
        &self,
        keys: &[(UserId, String)],
    ) -> Result<Vec<((UserId, String), String)>, StoreError> {
        let inner = self.lock();
        Ok(keys.iter().filter_map(|k| Some((k.clone(), inner.idempotency.get(k)?.fingerprint.clone()))).collect())
    }

    async fn payment(&self, order_id: &str) -> Result<Option<Payment>, StoreError> {
        Ok(self.lock().payments.get(order_id).cloned())
    }

    async fn payments_by_key(&self, payment_key: &str) -> Result<Vec<Payment>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<Payment> =
            inner.payments.values().filter(|p| p.payment_key.as_deref() == Some(payment_key)).cloned().collect();
        found.sort_by_key(|p| std::cmp::Reverse((p.updated_at, p.attempt)));
        Ok(found)
    }

    async fn payments_of(&self, user: UserId) -> Result<Vec<Payment>, StoreError> {
        let inner = self.lock();
        let orders = inner.payments_by_user.get(&user).map(Vec::as_slice).unwrap_or_default();
        Ok(orders.iter().rev().filter_map(|o| inner.payments.get(o)).cloned().collect())
    }

    async fn unsettled_payment_events(&self, declined_since: Timestamp) -> Result<Vec<EventId>, StoreError> {
        let inner = self.lock();
        let in_flight = inner
            .payments
            .values()
            .filter(|p| p.status.is_in_flight() || (not_captured(p) && p.updated_at >= declined_since))
            .map(|p| p.event);
        let owing = inner
            .events
            .iter()
            .filter(|(_, e)| e.owed_refunds.values().any(|(_, refunded)| !refunded))
            .map(|(id, _)| *id);
        let events: BTreeSet<EventId> = in_flight.chain(owing).collect();
        Ok(events.into_iter().collect())
    }

    async fn audit_of(&self, reservation: ReservationId) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.lock().audit.iter().filter(|a| a.reservation == reservation).cloned().collect())
    }

    // The reports scan every reservation and payment under the lock: the embedded store
    // keeps no per-event or per-day index of them, and reports are rare admin reads.
    async fn overview_report(&self, now: tiketi_engine::Timestamp) -> Result<crate::OverviewReport, StoreError> {
        let inner = self.lock();
        let events = inner.events.values().map(|s| &s.record);
        Ok(crate::OverviewReport::tally(events, inner.reservations.values(), inner.payments.values(), now))
    }

    async fn event_report(&self, event: EventId) -> Result<Option<crate::EventReport>, StoreError> {
        let inner = self.lock();
        let Some(state) = inner.events.get(&event) else { return Ok(None) };
        Ok(Some(crate::EventReport::tally(
            &state.record,
            state.blocked.len() as u64,
            state.queue_joins,
            inner.reservations.values().filter(|r| r.event == event),
            inner.payments.values().filter(|p| p.event == event),
        )))
    }

    async fn daily_report(
        &self,
        event: Option<EventId>,
        days: crate::DayRange,
    ) -> Result<Vec<crate::DayReport>, StoreError> {
        let inner = self.lock();
        let ours = |e: EventId| event.is_none_or(|wanted| wanted == e);
        let reservations = inner.reservations.values().filter(|r| ours(r.event));
        Ok(crate::DayReport::tally(days, reservations, inner.payments.values().filter(|p| ours(p.event))))
    }
}

/// Whether an attempt was declined for want of a capture (see [`Store::unsettled_payment_events`]).
fn not_captured(p: &Payment) -> bool {
    p.failure.as_ref().is_some_and(|f| f.is_not_captured())
}
