//! The event actor: one per live event. It owns the event's [`EventEngine`], decides every
//! command in memory, hands the resulting changes to the write-behind journal, and answers
//! at once, except for commands the spec calls durable, whose replies it parks until the
//! journal reports their change set committed. It never awaits the store while deciding.

mod late_captures;
mod payments;

use crate::handle::{
    Begun, Caller, CancelCmd, ConfirmCmd, EventPatch, HoldCmd, IdempotencyKey, PrepareCmd, RefundCmd, SelectionInput,
    SetStatusCmd,
};
use crate::stream::{LiveStream, Resume, Subscription};
use crate::views::{ActorInfo, EventView, SeatsSnapshot};
use crate::{ActorConfig, ActorError, Clock};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tiketi_engine::{
    CaptureOutcome, ChangeSet, EngineError, EventEngine, EventStatus, HoldRequest, OwedRefund, Payment, Persisted,
    QueueStanding, QueueView, RefundOutcome, Reservation, ReservationId, ReservationStatus, Selection, Timestamp,
    UserId,
};
use tiketi_persistence::journal::{Journal, JournalPermit};
use tiketi_persistence::{
    AuditRecord, EventRecord, EventSnapshot, Fence, IdempotencyRecord, JournalEntry, StoredOutcome,
};
use tokio::time::Instant;

/// The buckets of the hold-expiry histogram in [`ActorInfo::hold_expiries`]: holds whose
/// expiry is at most this far away (the last bucket takes the rest).
const HOLD_EXPIRY_BUCKETS: [(&str, Duration); 5] = [
    ("1m", Duration::from_secs(60)),
    ("2m", Duration::from_secs(120)),
    ("5m", Duration::from_secs(300)),
    ("10m", Duration::from_secs(600)),
    ("later", Duration::MAX),
];

/// How often a full journal is retried for change sets waiting in the overflow.
const DRAIN_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// A reply that may have to wait for durability.
type Reply<T> = RpcReplyPort<Result<T, ActorError>>;

/// Messages an event actor handles. Built only by [`EventHandle`](crate::EventHandle).
pub(crate) enum EventMsg {
    Hold(HoldCmd, Reply<Reservation>),
    Cancel(CancelCmd, Reply<Reservation>),
    View(RpcReplyPort<EventView>),
    Seats(RpcReplyPort<Arc<SeatsSnapshot>>),
    Reservation(ReservationId, RpcReplyPort<Option<Reservation>>),
    /// Join the admission queue (or learn where one stands, as a heartbeat).
    QueueJoin(UserId, Reply<QueueStanding>),
    /// Where a buyer stands; also the buyer's heartbeat.
    QueueStatus(UserId, RpcReplyPort<QueueStanding>),
    /// Leave the queue.
    QueueLeave(UserId, Reply<()>),
    /// The admin's view of the queue.
    QueueView(RpcReplyPort<QueueView>),
    /// An admin empties the queue; durable.
    QueueClear(Reply<QueueView>),
    /// Join the live stream, from a snapshot or from where a subscriber left off.
    Subscribe(Option<Resume>, RpcReplyPort<Subscription>),
    SetBlocked {
        seat_ids: Vec<String>,
        blocked: bool,
        reply: Reply<EventView>,
    },
    Update(Box<EventPatch>, Reply<EventView>),
    CancelEvent(Reply<EventView>),
    /// What an operator sees of the actor.
    Inspect(RpcReplyPort<ActorInfo>),
    /// Stop the actor if nothing pins it in memory; the reason it is pinned otherwise. A
    /// forced passivation (an operator's) is refused only on sale or with changes in flight.
    Passivate(bool, RpcReplyPort<Result<(), &'static str>>),
    /// Answer once everything decided so far is committed.
    Persist(Reply<ActorInfo>),
    /// A timer fired: expire holds, move the lifecycle.
    Tick,
    /// The journal committed this event's change sets up to this seq.
    Committed(u64),
    /// Retry handing the overflow to the journal (it was full).
    Drain,
    /// Send the live-stream changes gathered since the last frame.
    Flush,
    /// Prepare (or return) a reservation's payment; durable.
    Prepare(PrepareCmd, Reply<Payment>),
    /// Mark a payment in flight before the provider captures it; durable.
    BeginConfirm(ConfirmCmd, Reply<Begun>),
    /// The provider's answer to a capture; durable.
    FinishConfirm {
        order_id: String,
        payment_key: String,
        outcome: CaptureOutcome,
        reply: Reply<Payment>,
    },
    /// Mark a payment being refunded before the provider refunds it; durable.
    BeginRefund(RefundCmd, Reply<Begun>),
    /// The provider's answer to a refund; durable.
    FinishRefund {
        reservation: ReservationId,
        outcome: RefundOutcome,
        reply: Reply<Payment>,
    },
    /// Ask the provider what became of a payment still in flight.
    Reconcile(ReservationId),
    /// Ask the provider to refund an owed capture (by payment key), unless just asked.
    RefundOwed(String),
    /// The provider refunded an owed capture; durable.
    OwedRefunded {
        payment_key: String,
        at: Timestamp,
    },
    /// The provider did not refund an owed capture: ask again after this long.
    OwedRefundFailed {
        payment_key: String,
        retry_after: Duration,
    },
    /// The captures owed back, not refunded yet.
    OwedRefunds(RpcReplyPort<Vec<OwedRefund>>),
    /// An admin settles an owed capture by hand; durable.
    SettleOwed(crate::handle::SettleOwedCmd, Reply<OwedRefund>),
    /// Ask the provider about the declined orders due a look for a late capture (the
    /// timer's generation: a superseded timer does nothing).
    LookForLateCaptures(u64),
    /// What a look at the provider found for a declined order.
    LateCaptureFinding {
        order_id: String,
        finding: crate::handle::LateCaptureFinding,
    },
    /// A live reservation's current payment.
    Payment(ReservationId, RpcReplyPort<Option<Payment>>),
    /// An admin sets a reservation's status by hand (confirmed: paid offline; cancelled),
    /// with an audit record; durable.
    SetStatus(SetStatusCmd, Reply<Reservation>),
}

/// A message with the span of the request that sent it, so the actor's span for the
/// message is a child of the request's (and carries its request id), and the request's
/// in-flight slot, released once the actor has handled the message. Timers send neither.
pub(crate) struct Envelope {
    pub msg: EventMsg,
    pub span: Option<tracing::Span>,
    pub slot: Option<crate::handle::Slot>,
}

impl Envelope {
    /// A message the actor sends itself (timers, commits).
    pub(crate) fn internal(msg: EventMsg) -> Self {
        Self { msg, span: None, slot: None }
    }
}

impl EventMsg {
    /// The message's name, for spans and inspection.
    fn name(&self) -> &'static str {
        match self {
            Self::Hold(..) => "hold",
            Self::Cancel(..) => "cancel",
            Self::View(_) => "view",
            Self::Seats(_) => "seats",
            Self::Reservation(..) => "reservation",
            Self::QueueJoin(..) => "queue_join",
            Self::QueueStatus(..) => "queue_status",
            Self::QueueLeave(..) => "queue_leave",
            Self::QueueView(_) => "queue_view",
            Self::QueueClear(_) => "queue_clear",
            Self::Subscribe(..) => "subscribe",
            Self::SetBlocked { .. } => "set_blocked",
            Self::Update(..) => "update",
            Self::CancelEvent(_) => "cancel_event",
            Self::Inspect(_) => "inspect",
            Self::Passivate(..) => "passivate",
            Self::Persist(_) => "persist",
            Self::Tick => "tick",
            Self::Committed(_) => "committed",
            Self::Drain => "drain",
            Self::Flush => "flush",
            Self::Prepare(..) => "prepare",
            Self::BeginConfirm(..) => "begin_confirm",
            Self::FinishConfirm { .. } => "finish_confirm",
            Self::BeginRefund(..) => "begin_refund",
            Self::FinishRefund { .. } => "finish_refund",
            Self::Reconcile(_) => "reconcile",
            Self::RefundOwed(_) => "refund_owed",
            Self::OwedRefunded { .. } => "owed_refunded",
            Self::OwedRefundFailed { .. } => "owed_refund_failed",
            Self::OwedRefunds(_) => "owed_refunds",
            Self::SettleOwed(..) => "settle_owed",
            Self::LookForLateCaptures(_) => "look_for_late_captures",
            Self::LateCaptureFinding { .. } => "late_capture_finding",
            Self::Payment(..) => "payment",
            Self::SetStatus(..) => "set_status",
        }
    }

    /// Whether the message is a buyer's or an admin's use of the event (what keeps an actor
    /// from being idle), rather than timers, commits or inspection.
    fn is_use(&self) -> bool {
        !matches!(
            self,
            Self::Inspect(_)
                | Self::Passivate(..)
                | Self::Tick
                | Self::Committed(_)
                | Self::Drain
                | Self::Flush
                | Self::Reconcile(_)
                | Self::RefundOwed(_)
                | Self::OwedRefunded { .. }
                | Self::OwedRefundFailed { .. }
                | Self::OwedRefunds(_)
                | Self::LookForLateCaptures(_)
                | Self::LateCaptureFinding { .. }
        )
    }
}

/// What an event actor starts from.
pub(crate) struct EventArgs {
    pub fence: Option<Fence>,
    pub placement: Option<Arc<dyn crate::Placement>>,
    pub snapshot: EventSnapshot,
    pub journal: Journal,
    pub clock: Clock,
    pub config: Arc<ActorConfig>,
}

/// The actor's behaviour; all data lives in [`EventState`].
pub(crate) struct EventActor;

pub(crate) struct EventState {
    engine: EventEngine,
    record: EventRecord,
    /// The shard epoch every journal entry is written under (in a cluster).
    fence: Option<Fence>,
    /// Whether this node still holds that epoch's lease (in a cluster).
    placement: Option<Arc<dyn crate::Placement>>,
    journal: Journal,
    clock: Clock,
    config: Arc<ActorConfig>,
    idempotency: HashMap<(UserId, String), IdempotencyRecord>,
    /// Entries that could not be queued because the journal was full; they go first.
    overflow: VecDeque<JournalEntry>,
    /// Whether a [`EventMsg::Drain`] is scheduled.
    drain_armed: bool,
    /// Replies waiting for their change set to commit, in seq order.
    parked: VecDeque<(u64, Box<dyn FnOnce() + Send>)>,
    committed: u64,
    /// When the armed timer fires, if one is armed.
    timer_at: Option<Timestamp>,
    seats_cache: Option<Arc<SeatsSnapshot>>,
    /// The fixed part of every seat, shared by every snapshot.
    layout: Arc<tiketi_engine::SeatMap>,
    stream: LiveStream,
    /// Whether a [`EventMsg::Flush`] is scheduled.
    flush_armed: bool,
    stats: Stats,
    /// Confirmations waiting on a twin already in flight (same order and payment key).
    confirm_waiters: HashMap<String, Vec<Reply<Begun>>>,
    /// Refunds waiting on one already in flight.
    refund_waiters: HashMap<ReservationId, Vec<Reply<Begun>>>,
    /// Idempotency keys whose payment request is still in flight.
    pending_keys: HashMap<(UserId, String), payments::PendingKey>,
    /// When each payment in flight was last looked up at the provider.
    reconciled: HashMap<ReservationId, Instant>,
    /// The owed captures the provider is being asked to refund right now, by payment key.
    refunds_in_flight: HashSet<String>,
    /// Declined orders a capture may still land for.
    late_captures: late_captures::LateCaptures,
}

/// What the actor counts about itself for operators.
struct Stats {
    started: Instant,
    last_use: Instant,
    messages: u64,
    /// Since when a change set has been waiting for its commit, if one is.
    uncommitted_since: Option<Instant>,
    recent_errors: VecDeque<(Timestamp, String)>,
}

/// Errors kept for inspection.
const RECENT_ERRORS: usize = 16;

impl Actor for EventActor {
    type Msg = Envelope;
    type State = EventState;
    type Arguments = EventArgs;

    async fn pre_start(&self, myself: ActorRef<Envelope>, args: EventArgs) -> Result<EventState, ActorProcessingErr> {
        let EventArgs { fence, placement, snapshot, journal, clock, config } = args;
        let now = clock.now();
        let late_capture_watch = config.late_capture_watch;
        let record = snapshot.event;
        let seats = match &record.layout {
            Some(layout) => tiketi_engine::SeatMap::new(layout)?,
            None => empty_map(),
        };
        let (engine, lapsed) = EventEngine::restore(
            record.id,
            record.rules(),
            seats,
            record.ticket_types.clone(),
            Persisted {
                blocked: snapshot.blocked,
                live: snapshot.live,
                seq: snapshot.seq,
                serial: snapshot.serial,
                status: record.status,
                queue: snapshot.queue,
                queue_opened: snapshot.queue_opened,
                payments: snapshot.payments,
                owed_refunds: snapshot.owed_refunds,
            },
            now,
        );
        // A capture already owed back needs no more looking for.
        let owed: std::collections::HashSet<String> = engine.owed_refunds().map(|o| o.payment_key.clone()).collect();
        let retention_start = Timestamp(now.0 - config.idempotency_retention.as_millis() as i64);
        let idempotency = snapshot
            .idempotency
            .into_iter()
            .filter(|r| r.created_at >= retention_start)
            .map(|r| ((r.user, r.key.clone()), r))
            .collect();
        let mut state = EventState {
            committed: engine.seq(),
            stream: LiveStream::new(config.stream.clone(), record.id, engine.seq(), config.frame_sink.clone()),
            stats: Stats {
                started: Instant::now(),
                last_use: Instant::now(),
                messages: 0,
                uncommitted_since: None,
                recent_errors: VecDeque::new(),
            },
            layout: layout_of(engine.seats()),
            flush_armed: false,
            engine,
            record,
            fence,
            placement,
            journal,
            clock,
            config,
            idempotency,
            overflow: VecDeque::new(),
            drain_armed: false,
            parked: VecDeque::new(),
            timer_at: None,
            seats_cache: None,
            confirm_waiters: HashMap::new(),
            refund_waiters: HashMap::new(),
            pending_keys: HashMap::new(),
            reconciled: HashMap::new(),
            refunds_in_flight: HashSet::new(),
            late_captures: late_captures::LateCaptures::resume(
                snapshot.uncaptured,
                |key| owed.contains(key),
                now,
                late_capture_watch,
                Instant::now(),
            ),
        };
        if let Some(changes) = lapsed {
            state.push(state.entry(changes));
        }
        // A crash may have cut a capture or refund short: ask the provider what became of it.
        for payment in state.engine.unsettled_payments() {
            tracing::warn!(order_id = %payment.order_id, status = %payment.status, "reconciling a payment in flight");
            let _ = myself.send_message(Envelope::internal(EventMsg::Reconcile(payment.reservation)));
        }
        for owed in state.engine.owed_refunds() {
            tracing::warn!(order_id = %owed.order_id, "refunding a capture still owed back");
            let _ = myself.send_message(Envelope::internal(EventMsg::RefundOwed(owed.payment_key.clone())));
        }
        state.arm_late_captures(&myself);
        state.arm_timer(&myself);
        state.arm_drain(&myself);
        tracing::info!(event_id = %state.record.id, seq = state.engine.seq(), "event actor activated");
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<Envelope>, state: &mut EventState) -> Result<(), ActorProcessingErr> {
        // Changes decided but not yet queued (the journal was full) must not be lost with
        // the actor: wait for room now.
        while let Some(entry) = state.overflow.pop_front() {
            state.journal.send(entry).await;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Envelope>,
        // The slot is released when this returns: the message has left the mailbox.
        Envelope { msg, span, slot: _slot }: Envelope,
        state: &mut EventState,
    ) -> Result<(), ActorProcessingErr> {
        let event_id = state.record.id.uuid();
        let span = match &span {
            Some(parent) => tracing::info_span!(parent: parent, "event_msg", %event_id, msg = msg.name()),
            None => tracing::info_span!("event_msg", %event_id, msg = msg.name()),
        };
        let _entered = span.enter();
        state.stats.messages += 1;
        // In a cluster: a command is decided only under a running lease. One that arrives
        // after the lease ran out (a slow mailbox, a paused process) is not decided; the
        // actor stops, and every caller still waiting is answered `Stopped` and rerouted
        // to the shard's owner.
        if msg.is_use()
            && let (Some(placement), Some(fence)) = (&state.placement, state.fence)
            && !placement.holds(fence)
        {
            tracing::warn!(shard = fence.shard, epoch = fence.epoch, "lease ended; stopping without deciding");
            myself.stop(Some("shard lease ended".into()));
            return Ok(());
        }
        if msg.is_use() {
            state.stats.last_use = Instant::now();
        }
        state.drain_overflow();
        match msg {
            EventMsg::Hold(cmd, reply) => state.hold(cmd, reply),
            EventMsg::Cancel(cmd, reply) => state.cancel(cmd, reply),
            EventMsg::View(reply) => {
                let _ = reply.send(state.view());
            }
            EventMsg::Seats(reply) => {
                let _ = reply.send(state.seats());
            }
            EventMsg::Reservation(id, reply) => {
                let _ = reply.send(state.engine.reservation(id).cloned());
            }
            EventMsg::QueueJoin(user, reply) => state.join_queue(user, reply),
            EventMsg::QueueStatus(user, reply) => {
                let now = state.clock.now();
                let _ = reply.send(state.engine.queue_status(user, now));
            }
            EventMsg::QueueLeave(user, reply) => state.leave_queue(user, reply),
            EventMsg::QueueView(reply) => {
                let _ = reply.send(state.engine.queue_view(state.clock.now()));
            }
            EventMsg::QueueClear(reply) => state.clear_queue(reply),
            EventMsg::Subscribe(resume, reply) => {
                let EventState { stream, engine, seats_cache, layout, .. } = state;
                let _ = reply.send(stream.subscribe(engine, || seats_of(engine, layout, seats_cache), resume));
            }
            EventMsg::SetBlocked { seat_ids, blocked, reply } => state.set_blocked(&seat_ids, blocked, reply),
            EventMsg::Update(patch, reply) => state.update(*patch, reply),
            EventMsg::CancelEvent(reply) => state.cancel_event(reply),
            EventMsg::Tick => {
                state.timer_at = None;
                if let Some(changes) = state.engine.tick(state.clock.now()) {
                    state.push(state.entry(changes));
                }
            }
            EventMsg::Committed(seq) => state.committed(seq),
            EventMsg::Inspect(reply) => {
                let _ = reply.send(state.info());
            }
            EventMsg::Passivate(force, reply) => {
                match if force { state.pinned_even_if_forced() } else { state.pinned() } {
                    Some(reason) => {
                        let _ = reply.send(Err(reason));
                    }
                    None => {
                        let _ = reply.send(Ok(()));
                        tracing::info!("event actor passivated");
                        myself.stop(Some("passivated".into()));
                    }
                }
            }
            EventMsg::Persist(reply) => {
                // As it will be when the answer goes out: committed through `seq`.
                let seq = state.engine.seq();
                let info = ActorInfo { committed_seq: seq, uncommitted_for: Duration::ZERO, ..state.info() };
                state.answer_when_durable(seq, reply, Ok(info));
            }
            // The overflow was retried above.
            EventMsg::Drain => state.drain_armed = false,
            EventMsg::Flush => {
                state.flush_armed = false;
                state.stream.flush(&state.engine);
            }
            EventMsg::Prepare(cmd, reply) => state.prepare(cmd, reply),
            EventMsg::BeginConfirm(cmd, reply) => state.begin_confirm(&myself, cmd, reply),
            EventMsg::FinishConfirm { order_id, payment_key, outcome, reply } => {
                state.finish_confirm(&myself, order_id, payment_key, outcome, reply)
            }
            EventMsg::BeginRefund(cmd, reply) => state.begin_refund(&myself, cmd, reply),
            EventMsg::FinishRefund { reservation, outcome, reply } => state.finish_refund(reservation, outcome, reply),
            EventMsg::Reconcile(reservation) => state.reconcile(&myself, reservation),
            EventMsg::RefundOwed(payment_key) => state.refund_owed(&myself, payment_key),
            EventMsg::OwedRefunded { payment_key, at } => state.owed_refunded(&payment_key, at),
            EventMsg::OwedRefundFailed { payment_key, retry_after } => {
                state.owed_refund_failed(&myself, payment_key, retry_after)
            }
            EventMsg::OwedRefunds(reply) => {
                let _ = reply.send(state.engine.owed_refunds().cloned().collect());
            }
            EventMsg::SettleOwed(cmd, reply) => state.settle_owed(cmd, reply),
            EventMsg::LookForLateCaptures(generation) => state.look_for_late_captures(&myself, generation),
            EventMsg::LateCaptureFinding { order_id, finding } => {
                state.late_capture_finding(&myself, order_id, finding)
            }
            EventMsg::SetStatus(cmd, reply) => state.set_status(cmd, reply),
            EventMsg::Payment(reservation, reply) => {
                let _ = reply.send(state.engine.payment(reservation).cloned());
            }
        }
        state.arm_timer(&myself);
        state.arm_drain(&myself);
        state.arm_flush(&myself);
        Ok(())
    }
}

pub(crate) fn empty_map() -> tiketi_engine::SeatMap {
    // A GA-only event has no seats: one tier and no sections is a valid empty layout.
    tiketi_engine::SeatMap::new(&tiketi_engine::LayoutSpec {
        tiers: vec![tiketi_engine::PriceTier { name: "GA".into(), price: 0 }],
        sections: vec![],
    })
    .expect("an empty layout with one tier is valid")
}

impl EventState {
    fn entry(&self, changes: ChangeSet) -> JournalEntry {
        JournalEntry {
            event: self.record.id,
            fence: self.fence,
            changes,
            idempotency: Vec::new(),
            event_record: None,
            audit: Vec::new(),
        }
    }

    /// An empty change set at the current seq, for records that ride without changes.
    fn no_changes(&self) -> ChangeSet {
        ChangeSet { seq: self.engine.seq(), at: self.clock.now(), changes: Vec::new() }
    }

    /// Reserves journal room for a write, or refuses it: the backlog bound.
    fn reserve(&mut self) -> Result<JournalPermit, ActorError> {
        if !self.overflow.is_empty() {
            return Err(ActorError::Overloaded { retry_after: self.config.overload_retry_after });
        }
        self.journal.try_reserve().map_err(|_| ActorError::Overloaded { retry_after: self.config.overload_retry_after })
    }

    /// [`EventState::reserve`] for a command with a reply: on refusal the reply is sent
    /// here and the caller simply returns.
    fn reserve_for<T>(&mut self, reply: Reply<T>) -> Option<(JournalPermit, Reply<T>)> {
        match self.reserve() {
            Ok(permit) => Some((permit, reply)),
            Err(e) => {
                self.note_error(&e);
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    /// Keeps the last few refusals for inspection.
    fn note_error(&mut self, error: &ActorError) {
        if self.stats.recent_errors.len() == RECENT_ERRORS {
            self.stats.recent_errors.pop_front();
        }
        self.stats.recent_errors.push_back((self.clock.now(), error.to_string()));
    }

    /// Why the actor must stay in memory, if it must: passivating it would stop a sale,
    /// lapse holds or a queue without their timers, cut off live subscribers, or drop
    /// replies and changes still in flight.
    fn pinned(&self) -> Option<&'static str> {
        let queue = self.engine.queue_view(self.clock.now());
        if matches!(self.engine.status(), EventStatus::OnSale | EventStatus::SoldOut) {
            Some("on_sale")
        } else if self.engine.reservations().any(|r| r.status == ReservationStatus::Held) {
            Some("live_holds")
        } else if queue.waiting + queue.active > 0 {
            Some("queue")
        } else if self.stream.subscribers() > 0 {
            Some("subscribers")
        } else if !self.overflow.is_empty() || !self.parked.is_empty() {
            Some("unflushed")
        } else if self.owes_the_provider() {
            Some("payments")
        } else {
            None
        }
    }

    /// Whether a capture or refund is in flight, a capture is owed back, or a declined
    /// order is watched for a late capture: stopping would leave it until something
    /// reactivates the event.
    fn owes_the_provider(&self) -> bool {
        self.engine.unsettled_payments().next().is_some()
            || self.engine.owed_refunds().next().is_some()
            || self.late_captures.len() > 0
    }

    /// What pins the actor even against an operator's passivation: stopping it would stop a
    /// sale in progress, drop durable replies and changes in flight, or leave a capture or
    /// refund unrecorded until something reactivates the event. Checked on its own, not as
    /// the first of [`EventState::pinned`]'s reasons, which may be a lesser one.
    fn pinned_even_if_forced(&self) -> Option<&'static str> {
        if matches!(self.engine.status(), EventStatus::OnSale | EventStatus::SoldOut) {
            Some("on_sale")
        } else if !self.overflow.is_empty() || !self.parked.is_empty() {
            Some("unflushed")
        } else if self.owes_the_provider() {
            Some("payments")
        } else {
            None
        }
    }

    fn info(&self) -> ActorInfo {
        let now = self.clock.now();
        let queue = self.engine.queue_view(now);
        let mut holds = 0;
        let mut expiries = [0u32; HOLD_EXPIRY_BUCKETS.len()];
        for r in self.engine.reservations().filter(|r| r.status == ReservationStatus::Held) {
            holds += 1;
            let left = Duration::from_millis((r.expires_at.millis() - now.millis()).max(0) as u64);
            let bucket = HOLD_EXPIRY_BUCKETS.iter().position(|&(_, limit)| left <= limit).unwrap_or(expiries.len() - 1);
            expiries[bucket] += 1;
        }
        ActorInfo {
            event: self.record.id,
            title: self.record.title.clone(),
            status: self.engine.status(),
            counts: self.engine.counts(),
            holds,
            queue_waiting: queue.waiting,
            queue_active: queue.active,
            queue_admitted: queue.admitted_total,
            owed_refunds: self.engine.owed_refunds().count() as u64,
            late_capture_watches: self.late_captures.len() as u64,
            seq: self.engine.seq(),
            committed_seq: self.committed,
            uncommitted_for: self.stats.uncommitted_since.map_or(Duration::ZERO, |t| t.elapsed()),
            uptime: self.stats.started.elapsed(),
            idle: self.stats.last_use.elapsed(),
            messages: self.stats.messages,
            subscribers: self.stream.subscribers(),
            pinned: self.pinned(),
            recent_errors: self.stats.recent_errors.iter().cloned().collect(),
            next_deadline: self.engine.next_deadline(now),
            timer_at: self.timer_at,
            overflow: self.overflow.len(),
            parked: self.parked.len(),
            hold_expiries: HOLD_EXPIRY_BUCKETS.iter().map(|&(label, _)| label).zip(expiries).collect(),
        }
    }

    /// Publishes a change set that cannot be refused (time passing), keeping seq order.
    fn push(&mut self, entry: JournalEntry) {
        self.note_changes(&entry.changes);
        self.overflow.push_back(entry);
        self.drain_overflow();
    }

    fn drain_overflow(&mut self) {
        while !self.overflow.is_empty() {
            let Ok(permit) = self.journal.try_reserve() else { return };
            permit.send(self.overflow.pop_front().expect("checked non-empty"));
        }
    }

    /// Everything that must follow any change: invalidate cached reads.
    fn note_changes(&mut self, changes: &ChangeSet) {
        if !changes.changes.is_empty() {
            self.stats.uncommitted_since.get_or_insert_with(Instant::now);
            self.stream.record(changes);
            self.seats_cache = None;
            if let Some(status) = changes.event_status() {
                self.record.status = status;
            }
        }
    }

    fn send(&mut self, permit: JournalPermit, entry: JournalEntry) {
        self.note_changes(&entry.changes);
        permit.send(entry);
    }

    /// Looks up an idempotency key: `Some(answer)` if the request was seen before.
    fn replay(&self, caller: UserId, key: &Option<IdempotencyKey>) -> Option<Result<&IdempotencyRecord, ActorError>> {
        let key = key.as_ref()?;
        let record = self.idempotency.get(&(caller, key.key.clone()))?;
        Some(if record.fingerprint == key.fingerprint { Ok(record) } else { Err(ActorError::IdempotencyMismatch) })
    }

    fn remember(
        &mut self,
        user: UserId,
        key: Option<IdempotencyKey>,
        seq: u64,
        outcome: StoredOutcome,
    ) -> Vec<IdempotencyRecord> {
        let Some(key) = key else { return Vec::new() };
        let record = IdempotencyRecord {
            user,
            key: key.key,
            fingerprint: key.fingerprint,
            event: self.record.id,
            seq,
            outcome,
            created_at: self.clock.now(),
        };
        self.idempotency.insert((user, record.key.clone()), record.clone());
        vec![record]
    }

    fn hold(&mut self, cmd: HoldCmd, reply: Reply<Reservation>) {
        if let Some(seen) = self.replay(cmd.user, &cmd.idempotency) {
            let _ = reply.send(seen.and_then(|r| outcome_result(&r.outcome)));
            return;
        }
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let decided = self.selection(cmd.selection).and_then(|selection| {
            self.engine.hold(HoldRequest { id: cmd.id, user: cmd.user, selection, admitted: cmd.admitted }, now)
        });
        let (changes, result) = match decided {
            Ok(changes) => {
                let r = self.engine.reservation(cmd.id).cloned().expect("a successful hold creates its reservation");
                (changes, Ok(r))
            }
            Err(e) => {
                self.note_error(&e.clone().into());
                (self.no_changes(), Err(e))
            }
        };
        let outcome = match &result {
            Ok(r) => StoredOutcome::Reservation(Box::new(r.clone())),
            Err(e) => StoredOutcome::Refused(e.clone()),
        };
        let idempotency = self.remember(cmd.user, cmd.idempotency, changes.seq, outcome);
        if !changes.changes.is_empty() || !idempotency.is_empty() {
            self.send(permit, JournalEntry { idempotency, ..self.entry(changes) });
        }
        let _ = reply.send(result.map_err(ActorError::from));
    }

    fn join_queue(&mut self, user: UserId, reply: Reply<QueueStanding>) {
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let result = match self.engine.join_queue(user, now) {
            Ok((standing, changes)) => {
                if let Some(changes) = changes {
                    self.send(permit, self.entry(changes));
                }
                Ok(standing)
            }
            Err(e) => Err(e.into()),
        };
        let _ = reply.send(result);
    }

    fn leave_queue(&mut self, user: UserId, reply: Reply<()>) {
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        if let Some(changes) = self.engine.leave_queue(user, self.clock.now()) {
            self.send(permit, self.entry(changes));
        }
        let _ = reply.send(Ok(()));
    }

    fn clear_queue(&mut self, reply: Reply<QueueView>) {
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        match self.engine.clear_queue(now) {
            Some(changes) => {
                let seq = changes.seq;
                self.send(permit, self.entry(changes));
                let view = self.engine.queue_view(now);
                self.answer_when_durable(seq, reply, Ok(view));
            }
            None => {
                let _ = reply.send(Ok(self.engine.queue_view(now)));
            }
        }
    }

    fn selection(&self, input: SelectionInput) -> Result<Selection, EngineError> {
        Ok(match input {
            SelectionInput::Seats(ids) => Selection::Seats(self.engine.resolve_seats(&ids)?),
            SelectionInput::General { ticket_type, quantity } => Selection::General { ticket_type, quantity },
            SelectionInput::BestAvailable { quantity, section, adjacent } => {
                let section = match section {
                    Some(name) => Some(self.engine.seats().section(&name).ok_or(EngineError::UnknownSection(name))?),
                    None => None,
                };
                Selection::BestAvailable { quantity, section, adjacent }
            }
        })
    }

    /// An admin confirms (paid outside the provider) or cancels a live reservation, with an
    /// audit record in the same journal entry; durable. A paid reservation is refused with
    /// `RefundRequired`: cancelling it is a refund.
    fn set_status(&mut self, cmd: SetStatusCmd, reply: Reply<Reservation>) {
        let Some(mut reservation) = self.engine.reservation(cmd.reservation).cloned() else {
            let _ = reply.send(Err(EngineError::ReservationNotFound.into()));
            return;
        };
        let from = reservation.status;
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let decided = match cmd.to {
            ReservationStatus::Confirmed => self.engine.confirm(cmd.reservation, now),
            ReservationStatus::Cancelled => self.engine.cancel(cmd.reservation, now).map(Some),
            to => Err(EngineError::InvalidTransition { from, to }),
        };
        let changes = match decided {
            Ok(Some(changes)) => changes,
            // Already in that status: nothing to change or audit.
            Ok(None) => {
                let _ = reply.send(Ok(reservation));
                return;
            }
            Err(e) => {
                self.note_error(&e.clone().into());
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        reservation.status = cmd.to;
        reservation.updated_at = now;
        let audit = vec![AuditRecord {
            reservation: cmd.reservation,
            event: self.record.id,
            admin: cmd.admin,
            from,
            to: cmd.to,
            reason: cmd.reason,
            at: now,
        }];
        let seq = changes.seq;
        self.send(permit, JournalEntry { audit, ..self.entry(changes) });
        self.answer_when_durable(seq, reply, Ok(reservation));
    }

    /// Cancels a reservation; durable: the reply waits for the commit.
    fn cancel(&mut self, cmd: CancelCmd, reply: Reply<Reservation>) {
        if let Some(seen) = self.replay(cmd.caller.user, &cmd.idempotency) {
            match seen {
                Ok(record) => {
                    let seq = record.seq;
                    let result = outcome_result(&record.outcome);
                    self.answer_when_durable(seq, reply, result);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
            return;
        }
        let owned = self.engine.reservation(cmd.reservation).is_some_and(|r| may_touch(&cmd.caller, r.user));
        if !owned {
            let _ = reply.send(Err(EngineError::ReservationNotFound.into()));
            return;
        }
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let mut reservation = self.engine.reservation(cmd.reservation).cloned().expect("checked above");
        let changes = match self.engine.cancel(cmd.reservation, now) {
            Ok(changes) => changes,
            // A payment in flight, or a paid reservation (cancelled by refunding it).
            Err(e) => {
                self.note_error(&e.clone().into());
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        reservation.status = tiketi_engine::ReservationStatus::Cancelled;
        reservation.updated_at = now;
        let seq = changes.seq;
        let idempotency = self.remember(
            cmd.caller.user,
            cmd.idempotency,
            seq,
            StoredOutcome::Reservation(Box::new(reservation.clone())),
        );
        self.send(permit, JournalEntry { idempotency, ..self.entry(changes) });
        self.answer_when_durable(seq, reply, Ok(reservation));
    }

    fn answer_when_durable<T: Send + 'static>(&mut self, seq: u64, reply: Reply<T>, result: Result<T, ActorError>) {
        if seq <= self.committed {
            let _ = reply.send(result);
        } else if self.parked.len() >= self.config.max_in_flight {
            // As many replies already wait for the store as the mailbox may hold (the store
            // is stalled and callers keep asking: flushes, repeated cancels). This one is
            // not acknowledged; what it decided still commits, and a retry with its
            // Idempotency-Key gets the answer once it has.
            let _ = reply.send(Err(ActorError::Overloaded { retry_after: self.config.overload_retry_after }));
        } else {
            self.parked.push_back((seq, Box::new(move || drop(reply.send(result)))));
        }
    }

    fn committed(&mut self, seq: u64) {
        self.committed = self.committed.max(seq);
        // Still behind: what is left was sent no earlier than this batch's commit.
        self.stats.uncommitted_since = (self.committed < self.engine.seq()).then(Instant::now);
        while self.parked.front().is_some_and(|(s, _)| *s <= self.committed) {
            let (_, answer) = self.parked.pop_front().expect("checked non-empty");
            answer();
        }
    }

    fn set_blocked(&mut self, seat_ids: &[String], blocked: bool, reply: Reply<EventView>) {
        let seats = match self.engine.resolve_seats(seat_ids) {
            Ok(s) => s,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let changes = if blocked { self.engine.block(&seats, now) } else { Ok(self.engine.unblock(&seats, now)) };
        match changes {
            Ok(Some(changes)) => {
                let seq = changes.seq;
                self.send(permit, self.entry(changes));
                let view = self.view();
                self.answer_when_durable(seq, reply, Ok(view));
            }
            Ok(None) => {
                let _ = reply.send(Ok(self.view()));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn update(&mut self, patch: EventPatch, reply: Reply<EventView>) {
        let mut record = self.record.clone();
        if let Err(e) = patch.apply(&mut record) {
            let _ = reply.send(Err(e));
            return;
        }
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        record.updated_at = now;
        let changes = self.engine.set_rules(record.rules(), now).unwrap_or_else(|| self.no_changes());
        if let Some(status) = changes.event_status() {
            record.status = status;
        }
        self.record = record.clone();
        let seq = changes.seq;
        self.send(permit, JournalEntry { event_record: Some(Box::new(record)), ..self.entry(changes) });
        let view = self.view();
        self.answer_when_durable(seq, reply, Ok(view));
    }

    fn cancel_event(&mut self, reply: Reply<EventView>) {
        let Some((permit, reply)) = self.reserve_for(reply) else { return };
        let now = self.clock.now();
        let changes = self.engine.cancel_event(now).unwrap_or_else(|| self.no_changes());
        self.record.status = tiketi_engine::EventStatus::Cancelled;
        self.record.updated_at = now;
        let seq = changes.seq;
        let record = self.record.clone();
        self.send(permit, JournalEntry { event_record: Some(Box::new(record)), ..self.entry(changes) });
        let view = self.view();
        self.answer_when_durable(seq, reply, Ok(view));
    }

    fn view(&self) -> EventView {
        EventView {
            record: self.record.clone(),
            status: self.engine.status(),
            counts: self.engine.counts(),
            ticket_types: self.engine.ticket_types().to_vec(),
            seq: self.engine.seq(),
        }
    }

    fn seats(&mut self) -> Arc<SeatsSnapshot> {
        seats_of(&self.engine, &self.layout, &mut self.seats_cache)
    }

    /// Schedules the next live-stream frame when changes are waiting for one.
    fn arm_flush(&mut self, myself: &ActorRef<Envelope>) {
        if self.flush_armed || !self.stream.has_pending() {
            return;
        }
        self.flush_armed = true;
        myself.send_after(self.stream.tick(), || Envelope::internal(EventMsg::Flush));
    }

    /// While change sets wait in the overflow, retries handing them to the journal on its
    /// own: they must reach the store when it catches up even if no request comes for this
    /// event (its commits are what would otherwise wake it).
    fn arm_drain(&mut self, myself: &ActorRef<Envelope>) {
        if self.overflow.is_empty() || self.drain_armed {
            return;
        }
        self.drain_armed = true;
        myself.send_after(DRAIN_RETRY, || Envelope::internal(EventMsg::Drain));
    }

    /// Arms one timer for the engine's next deadline, unless an earlier one is armed.
    fn arm_timer(&mut self, myself: &ActorRef<Envelope>) {
        let now = self.clock.now();
        let Some(next) = self.engine.next_deadline(now) else { return };
        if self.timer_at.is_some_and(|armed| armed <= next) {
            return;
        }
        self.timer_at = Some(next);
        // Exactly on time: the clock reads tokio's clock, whose sleeps never end early, so
        // the tick sees `now >= next` (deadlines are inclusive). A tick that found nothing
        // due would only re-arm for the same deadline.
        let delay = self.clock.until(next);
        myself.send_after(delay, || Envelope::internal(EventMsg::Tick));
    }
}

/// The whole seat map at the engine's seq, built once per seq: a copy of the status bytes
/// beside the shared fixed part.
fn seats_of(
    engine: &EventEngine,
    layout: &Arc<tiketi_engine::SeatMap>,
    cache: &mut Option<Arc<SeatsSnapshot>>,
) -> Arc<SeatsSnapshot> {
    if let Some(cached) = cache {
        return cached.clone();
    }
    let statuses = engine.seats().statuses().to_vec();
    let snapshot = Arc::new(SeatsSnapshot {
        seq: engine.seq(),
        layout: layout.clone(),
        statuses,
        body: Default::default(),
        compact_body: Default::default(),
    });
    *cache = Some(snapshot.clone());
    snapshot
}

/// The fixed part of every seat: a copy of the seat map (a status byte per seat and a record
/// per row), whose statuses are never read.
fn layout_of(map: &tiketi_engine::SeatMap) -> Arc<tiketi_engine::SeatMap> {
    Arc::new(map.clone())
}

fn may_touch(caller: &Caller, owner: UserId) -> bool {
    caller.admin || caller.user == owner
}

fn outcome_result(outcome: &StoredOutcome) -> Result<Reservation, ActorError> {
    match outcome {
        StoredOutcome::Reservation(r) => Ok((**r).clone()),
        StoredOutcome::Refused(e) => Err(e.clone().into()),
        // The key was used to cancel a paid reservation, which refunded it: the refund
        // answers (it replays under the same key).
        StoredOutcome::Payment(_) => Err(EngineError::RefundRequired.into()),
    }
}
