//! Applying a batch of journal entries in one transaction with a fixed number of
//! multi-row statements.
//!
//! The batch is first folded into its final state (each reservation's last status, each
//! seat's last status, each GA counter's last value), then written in an order the
//! partial unique index accepts: reservations that ended release their seats before new
//! ones claim them. Seat status is not stored (the `seats` view derives it), so a hold
//! costs two inserts: its reservation and its seats.

use super::db_err;
use super::rows::at;
use crate::records::{Fence, JournalEntry};
use crate::store::StoreError;
use std::collections::HashMap;
use tiketi_engine::{
    Change, EventId, OwedRefund, Payment, PaymentStatus, QueueChange, QueueMember, Reservation, ReservationId,
    ReservationItems, ReservationStatus, SeatStatus, SettledByHand, Timestamp, UserId,
};
use tokio_postgres::Transaction;
use uuid::Uuid;

/// The fencing check (DESIGN "Cluster"): the epochs of the shards this batch writes are read
/// `FOR KEY SHARE`, so a node taking one of them (which locks its row `FOR UPDATE`) waits for
/// this transaction, and this one sees the epoch of any take that committed first. Entries
/// written under another epoch than the shard's current one come from a node that lost the
/// shard: the whole batch is refused (and rolled back by the caller) naming those fences.
/// `KEY SHARE` does not conflict with the owner's lease renewals (`NO KEY UPDATE`), so a slow
/// batch never holds up a heartbeat. Rows are locked in shard order, as takes lock them.
async fn check_fences(tx: &Transaction<'_>, entries: &[JournalEntry]) -> Result<(), StoreError> {
    let mut held: Vec<(u16, u64)> = entries.iter().filter_map(|e| e.fence).map(|f| (f.shard, f.epoch)).collect();
    if held.is_empty() {
        return Ok(());
    }
    held.sort_unstable();
    held.dedup();
    let mut shards: Vec<i32> = held.iter().map(|&(shard, _)| i32::from(shard)).collect();
    shards.dedup();
    let rows = tx
        .query("SELECT shard, epoch FROM shard_owner WHERE shard = ANY($1) ORDER BY shard FOR KEY SHARE", &[&shards])
        .await
        .map_err(db_err)?;
    let current: HashMap<u16, u64> =
        rows.iter().map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1) as u64)).collect();
    let stale: Vec<Fence> = held
        .iter()
        .filter(|&&(shard, epoch)| current.get(&shard) != Some(&epoch))
        .map(|&(shard, epoch)| Fence { shard, epoch })
        .collect();
    if stale.is_empty() { Ok(()) } else { Err(StoreError::Fenced(stale)) }
}

#[derive(Default)]
struct Folded<'a> {
    /// Reservations created in this batch, in order, with their final status.
    created: Vec<Reservation>,
    created_at: HashMap<ReservationId, usize>,
    /// Final status of reservations that existed before the batch.
    updated: HashMap<ReservationId, (ReservationStatus, Timestamp)>,
    seats: HashMap<(EventId, u32), SeatStatus>,
    general: HashMap<Uuid, (u32, u32)>,
    /// Per event: highest seq, highest serial, final status.
    events: HashMap<EventId, (u64, u32, Option<&'static str>)>,
    records: Vec<&'a crate::records::EventRecord>,
    idempotency: Vec<&'a crate::records::IdempotencyRecord>,
    /// Each queue member's final state in this batch.
    queue: HashMap<(EventId, UserId), MemberOp>,
    /// Events whose pre-queue was drawn.
    opened: Vec<EventId>,
    /// Queue joins per event.
    joins: HashMap<EventId, i64>,
    /// Each payment attempt's final state in this batch.
    payments: HashMap<&'a str, &'a Payment>,
    /// Captures found owed back in this batch, and those refunded (by payment key).
    owed: Vec<(EventId, &'a OwedRefund)>,
    /// ... with who settled them by hand and why, if the provider did not refund them.
    refunded: Vec<(&'a str, Timestamp, Option<&'a SettledByHand>)>,
    audit: Vec<&'a crate::records::AuditRecord>,
}

/// What a batch does to one queue member, folded to its last state.
enum MemberOp {
    /// Joined in this batch (maybe admitted too): insert, or replace an older row.
    Upsert(QueueMember),
    /// Already a member before the batch, admitted in it.
    Admit(Timestamp),
    /// Left.
    Delete,
}

fn fold(entries: &[JournalEntry]) -> Folded<'_> {
    let mut f = Folded::default();
    for entry in entries {
        let event = f.events.entry(entry.event).or_insert((0, 0, None));
        event.0 = event.0.max(entry.changes.seq);
        if let Some(record) = &entry.event_record {
            f.records.push(record);
        }
        let at = entry.changes.at;
        for change in &entry.changes.changes {
            match change {
                Change::Seat { seat, status } => {
                    f.seats.insert((entry.event, seat.0), *status);
                }
                Change::General { ticket_type, held, sold } => {
                    f.general.insert(ticket_type.uuid(), (*held, *sold));
                }
                Change::ReservationCreated(r) => {
                    let event = f.events.entry(entry.event).or_insert((0, 0, None));
                    event.1 = event.1.max(r.number.serial);
                    f.created_at.insert(r.id, f.created.len());
                    f.created.push((**r).clone());
                }
                Change::ReservationStatus { id, status, .. } => match f.created_at.get(id) {
                    Some(&i) => {
                        f.created[i].status = *status;
                        f.created[i].updated_at = at;
                    }
                    None => {
                        f.updated.insert(*id, (*status, at));
                    }
                },
                Change::EventStatus(status) => {
                    f.events.entry(entry.event).or_insert((0, 0, None)).2 = Some(status.as_str());
                }
                Change::Queue(change) => fold_queue(&mut f, entry.event, change),
                Change::Payment(p) => {
                    f.payments.insert(p.order_id.as_str(), p);
                }
                Change::RefundOwed(owed) => f.owed.push((entry.event, owed)),
                Change::RefundPaid { payment_key, at, by_hand } => {
                    f.refunded.push((payment_key, *at, by_hand.as_deref()));
                }
            }
        }
        f.idempotency.extend(entry.idempotency.iter());
        f.audit.extend(entry.audit.iter());
    }
    f
}

fn fold_queue(f: &mut Folded<'_>, event: EventId, change: &QueueChange) {
    match change {
        QueueChange::Joined { user, ticket, at } => {
            *f.joins.entry(event).or_default() += 1;
            let member = QueueMember { user: *user, ticket: *ticket, joined_at: *at, admitted_until: None };
            f.queue.insert((event, *user), MemberOp::Upsert(member));
        }
        QueueChange::Admitted { user, until } => match f.queue.get_mut(&(event, *user)) {
            Some(MemberOp::Upsert(member)) => member.admitted_until = Some(*until),
            Some(op) => *op = MemberOp::Admit(*until),
            None => {
                f.queue.insert((event, *user), MemberOp::Admit(*until));
            }
        },
        QueueChange::Left { user, .. } => {
            f.queue.insert((event, *user), MemberOp::Delete);
        }
        QueueChange::Opened => f.opened.push(event),
    }
}

/// Writes the folded queue changes: leavers out, joiners in, admissions marked.
async fn apply_queue(tx: &Transaction<'_>, f: &Folded<'_>) -> Result<(), StoreError> {
    let (mut gone_events, mut gone_users) = (Vec::new(), Vec::new());
    let (mut events, mut users, mut tickets, mut joined, mut until) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut admit_events, mut admit_users, mut admit_until) = (Vec::new(), Vec::new(), Vec::new());
    for ((event, user), op) in &f.queue {
        match op {
            MemberOp::Delete => {
                gone_events.push(event.uuid());
                gone_users.push(user.uuid());
            }
            MemberOp::Upsert(m) => {
                events.push(event.uuid());
                users.push(user.uuid());
                tickets.push(m.ticket.map(|t| t as i64));
                joined.push(at(m.joined_at));
                until.push(m.admitted_until.map(at));
            }
            MemberOp::Admit(t) => {
                admit_events.push(event.uuid());
                admit_users.push(user.uuid());
                admit_until.push(at(*t));
            }
        }
    }
    if !gone_events.is_empty() {
        tx.execute(
            "DELETE FROM queue_members q USING unnest($1::uuid[], $2::uuid[]) AS g(event_id, user_id)
             WHERE q.event_id = g.event_id AND q.user_id = g.user_id",
            &[&gone_events, &gone_users],
        )
        .await
        .map_err(db_err)?;
    }
    if !events.is_empty() {
        tx.execute(
            "INSERT INTO queue_members (event_id, user_id, ticket, joined_at, admitted_until)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
             ON CONFLICT (event_id, user_id) DO UPDATE
             SET ticket = EXCLUDED.ticket, joined_at = EXCLUDED.joined_at, admitted_until = EXCLUDED.admitted_until",
            &[&events, &users, &tickets, &joined, &until],
        )
        .await
        .map_err(db_err)?;
    }
    if !admit_events.is_empty() {
        tx.execute(
            "UPDATE queue_members q SET admitted_until = a.until
             FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS a(event_id, user_id, until)
             WHERE q.event_id = a.event_id AND q.user_id = a.user_id",
            &[&admit_events, &admit_users, &admit_until],
        )
        .await
        .map_err(db_err)?;
    }
    if !f.joins.is_empty() {
        let (events, joins): (Vec<Uuid>, Vec<i64>) = f.joins.iter().map(|(e, n)| (e.uuid(), *n)).unzip();
        tx.execute(
            "UPDATE events e SET queue_joins = e.queue_joins + j.n FROM unnest($1::uuid[], $2::bigint[]) AS j(id, n)
             WHERE e.id = j.id",
            &[&events, &joins],
        )
        .await
        .map_err(db_err)?;
    }
    if !f.opened.is_empty() {
        let opened: Vec<Uuid> = f.opened.iter().map(|e| e.uuid()).collect();
        tx.execute("UPDATE events SET queue_opened = true WHERE id = ANY($1)", &[&opened]).await.map_err(db_err)?;
    }
    Ok(())
}

/// Writes `entries` inside `tx`.
pub(crate) async fn apply(tx: &Transaction<'_>, entries: &[JournalEntry]) -> Result<(), StoreError> {
    check_fences(tx, entries).await?;
    let f = fold(entries);

    // 1. Admin edits of event records (rare; one statement each).
    for e in &f.records {
        tx.execute(
            "UPDATE events SET title = $2, description = $3, venue = $4, artist = $5, event_date = $6,
                 sale_start = $7, sale_end = $8, per_user_limit = $9, hold_ttl_ms = $10,
                 max_per_reservation = $11, status = $12, updated_at = $13, queue_enabled = $14,
                 queue_rate = $15, queue_max_active = $16, queue_admission_ttl_ms = $17, queue_heartbeat_ttl_ms = $18
             WHERE id = $1",
            &[
                &e.id.uuid(),
                &e.title,
                &e.description,
                &e.venue,
                &e.artist,
                &at(e.event_date),
                &at(e.sale_start),
                &at(e.sale_end),
                &(e.per_user_limit as i32),
                &(e.hold_ttl.as_millis() as i64),
                &(e.max_per_reservation as i32),
                &e.status.as_str(),
                &at(e.updated_at),
                &e.queue.enabled,
                &(e.queue.rate_per_second as i32),
                &(e.queue.max_active as i32),
                &(e.queue.admission_ttl.as_millis() as i64),
                &(e.queue.heartbeat_ttl.as_millis() as i64),
            ],
        )
        .await
        .map_err(db_err)?;
    }

    // 2. Status changes of existing reservations; ended ones release their seats first.
    if !f.updated.is_empty() {
        let (mut ids, mut statuses, mut ats, mut ended) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, (status, at_)) in &f.updated {
            ids.push(id.uuid());
            statuses.push(status.as_str());
            ats.push(at(*at_));
            if !status.is_live() {
                ended.push(id.uuid());
            }
        }
        tx.execute(
            "UPDATE reservations r SET status = u.status, updated_at = u.at
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, status, at) WHERE r.id = u.id",
            &[&ids, &statuses, &ats],
        )
        .await
        .map_err(db_err)?;
        if !ended.is_empty() {
            tx.execute("UPDATE reservation_items SET live = false WHERE reservation_id = ANY($1)", &[&ended])
                .await
                .map_err(db_err)?;
        }
    }

    // 3. New reservations with their final status, and their seats.
    if !f.created.is_empty() {
        let n = f.created.len();
        let mut cols = Created::with_capacity(n);
        for r in &f.created {
            cols.push(r);
        }
        tx.execute(
            "INSERT INTO reservations (id, event_id, user_id, number, serial, status, amount, ticket_type_id,
                 quantity, created_at, expires_at, updated_at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[],
                 $7::bigint[], $8::uuid[], $9::int[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[])",
            &[
                &cols.id,
                &cols.event,
                &cols.user,
                &cols.number,
                &cols.serial,
                &cols.status,
                &cols.amount,
                &cols.ticket_type,
                &cols.quantity,
                &cols.created,
                &cols.expires,
                &cols.updated,
            ],
        )
        .await
        .map_err(db_err)?;
        if !cols.item_reservation.is_empty() {
            tx.execute(
                "INSERT INTO reservation_items (reservation_id, event_id, seat_index, live)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int[], $4::bool[])",
                &[&cols.item_reservation, &cols.item_event, &cols.item_seat, &cols.item_live],
            )
            .await
            .map_err(db_err)?;
        }
    }

    // 4. Admin blocks. Seat status is derived (the `seats` view), so only the blocked flag
    //    is stored: seats whose last status in the batch is blocked, or available (which
    //    may be an unblock; the filter skips the rows whose flag does not change, so a
    //    released hold writes nothing here).
    let (mut events, mut seats, mut blocked) = (Vec::new(), Vec::new(), Vec::new());
    for ((event, seat), status) in &f.seats {
        if matches!(status, SeatStatus::Blocked | SeatStatus::Available) {
            events.push(event.uuid());
            seats.push(*seat as i32);
            blocked.push(*status == SeatStatus::Blocked);
        }
    }
    if !events.is_empty() {
        tx.execute(
            "UPDATE event_seats s SET blocked = u.blocked
             FROM UNNEST($1::uuid[], $2::int[], $3::bool[]) AS u(eid, idx, blocked)
             WHERE s.event_id = u.eid AND s.seat_index = u.idx AND s.blocked <> u.blocked",
            &[&events, &seats, &blocked],
        )
        .await
        .map_err(db_err)?;
    }

    // 5. GA counters (absolute values; the CHECK keeps them within capacity).
    if !f.general.is_empty() {
        let (mut ids, mut held, mut sold) = (Vec::new(), Vec::new(), Vec::new());
        for (id, (h, s)) in &f.general {
            ids.push(*id);
            held.push(*h as i32);
            sold.push(*s as i32);
        }
        tx.execute(
            "UPDATE ticket_types t SET held = u.held, sold = u.sold
             FROM UNNEST($1::uuid[], $2::int[], $3::int[]) AS u(id, held, sold) WHERE t.id = u.id",
            &[&ids, &held, &sold],
        )
        .await
        .map_err(db_err)?;
    }

    // 6. Per event: how far the journal got, and the lifecycle status.
    let (mut ids, mut seqs, mut serials, mut statuses) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (event, (seq, serial, status)) in &f.events {
        ids.push(event.uuid());
        seqs.push(*seq as i64);
        serials.push(*serial as i32);
        statuses.push(*status);
    }
    let updated = tx
        .execute(
            "UPDATE events e SET seq = GREATEST(e.seq, u.seq), serial = GREATEST(e.serial, u.serial),
                 status = COALESCE(u.status, e.status)
             FROM UNNEST($1::uuid[], $2::bigint[], $3::int[], $4::text[]) AS u(id, seq, serial, status)
             WHERE e.id = u.id",
            &[&ids, &seqs, &serials, &statuses],
        )
        .await
        .map_err(db_err)?;
    if updated as usize != ids.len() {
        return Err(StoreError::Conflict("journal entry for an event that does not exist".into()));
    }

    // 7. Idempotency records, with the change they describe.
    if !f.idempotency.is_empty() {
        let (mut users, mut keys, mut prints, mut events, mut seqs, mut outcomes, mut ats) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in &f.idempotency {
            users.push(r.user.uuid());
            keys.push(r.key.as_str());
            prints.push(r.fingerprint.as_str());
            events.push(r.event.uuid());
            seqs.push(r.seq as i64);
            outcomes.push(serde_json::to_value(&r.outcome).map_err(|e| StoreError::Conflict(e.to_string()))?);
            ats.push(at(r.created_at));
        }
        tx.execute(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, event_id, seq, outcome, created_at)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::jsonb[],
                 $7::timestamptz[])
             ON CONFLICT (user_id, key) DO NOTHING",
            &[&users, &keys, &prints, &events, &seqs, &outcomes, &ats],
        )
        .await
        .map_err(db_err)?;
    }

    // 8. The admission queue.
    apply_queue(tx, &f).await?;

    // 9. Payment attempts (after their reservations exist), captures owed back, then the
    // admins' audit trail.
    apply_payments(tx, &f).await?;
    apply_owed_refunds(tx, &f).await?;
    if !f.audit.is_empty() {
        let (mut ids, mut events, mut admins, mut froms, mut tos, mut reasons, mut ats) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for a in &f.audit {
            ids.push(a.reservation.uuid());
            events.push(a.event.uuid());
            admins.push(a.admin.uuid());
            froms.push(a.from.as_str());
            tos.push(a.to.as_str());
            reasons.push(a.reason.as_str());
            ats.push(at(a.at));
        }
        tx.execute(
            "INSERT INTO reservation_audit (reservation_id, event_id, admin_id, from_status, to_status, reason, at)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                 $7::timestamptz[])",
            &[&ids, &events, &admins, &froms, &tos, &reasons, &ats],
        )
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Upserts each payment attempt's final state in the batch, in two statements: first the
/// attempts outside the states the one-paid-attempt index guards (in progress, done,
/// cancelling), then those inside them. A batch may carry a declined attempt and the next
/// one in flight for the same reservation; unique indexes are checked row by row, so the
/// declined one must be written first.
async fn apply_payments(tx: &Transaction<'_>, f: &Folded<'_>) -> Result<(), StoreError> {
    if f.payments.is_empty() {
        return Ok(());
    }
    let guarded = |p: &Payment| p.status.is_in_flight() || p.status == PaymentStatus::Done;
    let (leaving, entering): (Vec<&Payment>, Vec<&Payment>) = f.payments.values().copied().partition(|p| !guarded(p));
    for batch in [leaving, entering] {
        if batch.is_empty() {
            continue;
        }
        let mut c = PaymentColumns::default();
        for p in batch {
            c.push(p);
        }
        tx.execute(
            "INSERT INTO payments (order_id, attempt, reservation_id, event_id, user_id, amount, status, payment_key,
                 method, failure_code, failure_message, created_at, updated_at, approved_at, cancelled_at)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[], $7::text[],
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[],
                 $14::timestamptz[], $15::timestamptz[])
             ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, payment_key = EXCLUDED.payment_key,
                 method = EXCLUDED.method, failure_code = EXCLUDED.failure_code,
                 failure_message = EXCLUDED.failure_message, updated_at = EXCLUDED.updated_at,
                 approved_at = EXCLUDED.approved_at, cancelled_at = EXCLUDED.cancelled_at",
            &[
                &c.order_id,
                &c.attempt,
                &c.reservation,
                &c.event,
                &c.user,
                &c.amount,
                &c.status,
                &c.payment_key,
                &c.method,
                &c.failure_code,
                &c.failure_message,
                &c.created,
                &c.updated,
                &c.approved,
                &c.cancelled,
            ],
        )
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Records captures owed back, then marks those refunded (a capture may be both in one
/// batch). A repeat of either changes nothing.
async fn apply_owed_refunds(tx: &Transaction<'_>, f: &Folded<'_>) -> Result<(), StoreError> {
    if !f.owed.is_empty() {
        let (mut keys, mut orders, mut events, mut captured, mut since) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (event, o) in &f.owed {
            keys.push(o.payment_key.as_str());
            orders.push(o.order_id.as_str());
            events.push(event.uuid());
            captured.push(at(o.captured_at));
            since.push(at(o.since));
        }
        tx.execute(
            "INSERT INTO owed_refunds (payment_key, order_id, event_id, captured_at, since)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::timestamptz[], $5::timestamptz[])
             ON CONFLICT (payment_key) DO NOTHING",
            &[&keys, &orders, &events, &captured, &since],
        )
        .await
        .map_err(db_err)?;
    }
    if !f.refunded.is_empty() {
        let keys: Vec<&str> = f.refunded.iter().map(|(k, _, _)| *k).collect();
        let ats: Vec<_> = f.refunded.iter().map(|(_, t, _)| at(*t)).collect();
        let admins: Vec<Option<uuid::Uuid>> = f.refunded.iter().map(|(_, _, by)| by.map(|b| b.admin.uuid())).collect();
        let reasons: Vec<Option<&str>> = f.refunded.iter().map(|(_, _, by)| by.map(|b| b.reason.as_str())).collect();
        tx.execute(
            "UPDATE owed_refunds o SET refunded_at = u.at, settled_by = u.admin, settle_reason = u.reason
             FROM UNNEST($1::text[], $2::timestamptz[], $3::uuid[], $4::text[]) AS u(key, at, admin, reason)
             WHERE o.payment_key = u.key AND o.refunded_at IS NULL",
            &[&keys, &ats, &admins, &reasons],
        )
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// Column arrays for upserting payment attempts.
#[derive(Default)]
struct PaymentColumns<'a> {
    order_id: Vec<&'a str>,
    attempt: Vec<i32>,
    reservation: Vec<Uuid>,
    event: Vec<Uuid>,
    user: Vec<Uuid>,
    amount: Vec<i64>,
    status: Vec<&'static str>,
    payment_key: Vec<Option<&'a str>>,
    method: Vec<Option<&'a str>>,
    failure_code: Vec<Option<&'a str>>,
    failure_message: Vec<Option<&'a str>>,
    created: Vec<time::OffsetDateTime>,
    updated: Vec<time::OffsetDateTime>,
    approved: Vec<Option<time::OffsetDateTime>>,
    cancelled: Vec<Option<time::OffsetDateTime>>,
}

impl<'a> PaymentColumns<'a> {
    fn push(&mut self, p: &'a Payment) {
        self.order_id.push(&p.order_id);
        self.attempt.push(p.attempt as i32);
        self.reservation.push(p.reservation.uuid());
        self.event.push(p.event.uuid());
        self.user.push(p.user.uuid());
        self.amount.push(p.amount);
        self.status.push(p.status.as_str());
        self.payment_key.push(p.payment_key.as_deref());
        self.method.push(p.method.as_deref());
        self.failure_code.push(p.failure.as_ref().map(|f| f.code.as_str()));
        self.failure_message.push(p.failure.as_ref().map(|f| f.message.as_str()));
        self.created.push(at(p.created_at));
        self.updated.push(at(p.updated_at));
        self.approved.push(p.approved_at.map(at));
        self.cancelled.push(p.cancelled_at.map(at));
    }
}

/// Column arrays for inserting reservations and their seats.
struct Created {
    id: Vec<Uuid>,
    event: Vec<Uuid>,
    user: Vec<Uuid>,
    number: Vec<String>,
    serial: Vec<i32>,
    status: Vec<&'static str>,
    amount: Vec<i64>,
    ticket_type: Vec<Option<Uuid>>,
    quantity: Vec<i32>,
    created: Vec<time::OffsetDateTime>,
    expires: Vec<time::OffsetDateTime>,
    updated: Vec<time::OffsetDateTime>,
    item_reservation: Vec<Uuid>,
    item_event: Vec<Uuid>,
    item_seat: Vec<i32>,
    item_live: Vec<bool>,
}

impl Created {
    fn with_capacity(n: usize) -> Self {
        Self {
            id: Vec::with_capacity(n),
            event: Vec::with_capacity(n),
            user: Vec::with_capacity(n),
            number: Vec::with_capacity(n),
            serial: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            amount: Vec::with_capacity(n),
            ticket_type: Vec::with_capacity(n),
            quantity: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            expires: Vec::with_capacity(n),
            updated: Vec::with_capacity(n),
            item_reservation: Vec::with_capacity(n),
            item_event: Vec::with_capacity(n),
            item_seat: Vec::with_capacity(n),
            item_live: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, r: &Reservation) {
        self.id.push(r.id.uuid());
        self.event.push(r.event.uuid());
        self.user.push(r.user.uuid());
        self.number.push(r.number.to_string());
        self.serial.push(r.number.serial as i32);
        self.status.push(r.status.as_str());
        self.amount.push(r.amount);
        self.quantity.push(r.items.quantity() as i32);
        self.created.push(at(r.created_at));
        self.expires.push(at(r.expires_at));
        self.updated.push(at(r.updated_at));
        match &r.items {
            ReservationItems::Seats(seats) => {
                self.ticket_type.push(None);
                for seat in seats {
                    self.item_reservation.push(r.id.uuid());
                    self.item_event.push(r.event.uuid());
                    self.item_seat.push(seat.0 as i32);
                    self.item_live.push(r.status.is_live());
                }
            }
            ReservationItems::General { ticket_type, .. } => self.ticket_type.push(Some(ticket_type.uuid())),
        }
    }
}
