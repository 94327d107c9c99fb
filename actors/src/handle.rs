//! [`EventHandle`]: the typed way to talk to an event's actor, with a timeout on every
//! call and a bound on requests in flight.

mod payments;

pub(crate) use payments::{
    Begun, LateCaptureFinding, RECONCILE_RETRY, look_for_late_captures, reconcile, refund_owed, settled,
};
pub use payments::{ConfirmCmd, PrepareCmd, Provider, RefundCmd, SettleOwedCmd};

use crate::event_actor::{Envelope, EventMsg};
use crate::stream::{Resume, Subscription};
use crate::views::{ActorInfo, EventView, SeatsSnapshot};
use crate::{ActorConfig, ActorError};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tiketi_engine::{
    EventId, QueueSettings, QueueStanding, QueueView, Reservation, ReservationId, TicketTypeId, Timestamp, UserId,
};
use tiketi_persistence::{EventRecord, Fence};

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user: UserId,
    /// Whether the user is an admin (may act on anyone's reservation).
    pub admin: bool,
}

/// An `Idempotency-Key` with the fingerprint of the request that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key, scoped to the caller.
    pub key: String,
    /// Hex SHA-256 of method, path and body.
    pub fingerprint: String,
}

/// What to hold, as the buyer named it; the actor resolves names against its seat map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectionInput {
    /// Specific seat ids.
    Seats(Vec<String>),
    /// General admission.
    General {
        /// Ticket type.
        ticket_type: TicketTypeId,
        /// How many.
        quantity: u32,
    },
    /// Best available.
    BestAvailable {
        /// How many seats.
        quantity: u32,
        /// Only this section.
        section: Option<String>,
        /// Side by side in one row.
        adjacent: bool,
    },
}

/// Hold seats for a buyer.
#[derive(Debug, Clone)]
pub struct HoldCmd {
    /// Id for the new reservation.
    pub id: ReservationId,
    /// The buyer.
    pub user: UserId,
    /// What to hold.
    pub selection: SelectionInput,
    /// Idempotency key, if the request carried one.
    pub idempotency: Option<IdempotencyKey>,
    /// The buyer showed a valid admission token for this event (checked by the caller);
    /// on a queue-gated event the actor also checks that the buyer is admitted now.
    pub admitted: bool,
}

/// Cancel a reservation.
#[derive(Debug, Clone)]
pub struct CancelCmd {
    /// Which reservation.
    pub reservation: ReservationId,
    /// Who asks (the owner or an admin).
    pub caller: Caller,
    /// Idempotency key, if the request carried one.
    pub idempotency: Option<IdempotencyKey>,
}

/// An admin sets a reservation's status by hand: `confirmed` (paid outside the provider) or
/// `cancelled` (a paid one is refunded instead, see [`EventHandle::refund_payment`]).
#[derive(Debug, Clone)]
pub struct SetStatusCmd {
    /// The reservation.
    pub reservation: ReservationId,
    /// The status to set.
    pub to: tiketi_engine::ReservationStatus,
    /// The admin, for the audit trail.
    pub admin: UserId,
    /// Why, for the audit trail.
    pub reason: String,
}

/// An admin's edit of an event; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EventPatch {
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Venue.
    pub venue: Option<String>,
    /// Artist.
    pub artist: Option<String>,
    /// Event date.
    pub event_date: Option<Timestamp>,
    /// Sale start.
    pub sale_start: Option<Timestamp>,
    /// Sale end.
    pub sale_end: Option<Timestamp>,
    /// Per-user limit (0: none).
    pub per_user_limit: Option<u32>,
    /// Hold TTL.
    pub hold_ttl: Option<Duration>,
    /// Largest reservation.
    pub max_per_reservation: Option<u32>,
    /// Admission-queue settings.
    pub queue: Option<QueueSettings>,
}

impl EventPatch {
    /// Applies the patch, refusing one that leaves the sale window empty.
    pub fn apply(self, record: &mut EventRecord) -> Result<(), ActorError> {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { record.$field = v; })* };
        }
        set!(
            title,
            description,
            venue,
            artist,
            event_date,
            sale_start,
            sale_end,
            per_user_limit,
            hold_ttl,
            max_per_reservation,
            queue
        );
        if record.sale_end <= record.sale_start {
            return Err(ActorError::Invalid { field: "saleEnd".into(), message: "must be after saleStart".into() });
        }
        Ok(())
    }
}

/// A cloneable, typed reference to one event's actor.
#[derive(Clone)]
pub struct EventHandle {
    event: EventId,
    actor: ActorRef<Envelope>,
    in_flight: Arc<AtomicUsize>,
    config: Arc<ActorConfig>,
    fence: Option<Fence>,
}

/// A slot among the actor's in-flight requests, released on drop: it travels in the
/// request's envelope and is dropped when the actor has handled it (or when the message
/// never reached the mailbox), so the count is the mailbox's depth. A reply the caller has
/// yet to pick up (a busy runtime) or a durable reply parked for its commit takes none.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EventHandle {
    pub(crate) fn new(
        event: EventId,
        actor: ActorRef<Envelope>,
        config: Arc<ActorConfig>,
        fence: Option<Fence>,
    ) -> Self {
        Self { event, actor, in_flight: Arc::default(), config, fence }
    }

    /// The shard epoch this actor writes under (in a cluster).
    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// The event.
    pub fn event(&self) -> EventId {
        self.event
    }

    /// Requests sent to the actor and not yet handled: its mailbox depth as we count it
    /// (ractor keeps no such figure).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn is_alive(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ractor::ActorStatus::Starting | ractor::ActorStatus::Running | ractor::ActorStatus::Upgrading
        )
    }

    /// The id of the actor behind this handle: two handles with the same id talk to the
    /// same actor, and a re-activated event gets a new one.
    pub fn actor_id(&self) -> ractor::ActorId {
        self.actor.get_id()
    }

    /// Kills the actor at once, as a crash would: the message it is handling is its last,
    /// queued ones are dropped and nothing is drained. The supervisor forgets it and the
    /// next request re-activates the event from the store. For fault drills and tests;
    /// a normal stop is [`Directory::evict`](crate::Directory::evict).
    pub fn kill(&self) {
        self.actor.kill();
    }

    /// Holds seats; answers as soon as the actor decided.
    pub async fn hold(&self, cmd: HoldCmd) -> Result<Reservation, ActorError> {
        self.call(|r| EventMsg::Hold(cmd, r), self.config.call_timeout).await?
    }

    /// An admin sets a reservation's status, with an audit record; durable.
    pub async fn set_status(&self, cmd: SetStatusCmd) -> Result<Reservation, ActorError> {
        self.call(|r| EventMsg::SetStatus(cmd, r), self.config.durable_timeout).await?
    }

    /// Cancels a reservation; answers once the cancellation is durable.
    pub async fn cancel(&self, cmd: CancelCmd) -> Result<Reservation, ActorError> {
        self.call(|r| EventMsg::Cancel(cmd, r), self.config.durable_timeout).await?
    }

    /// The event with live counts.
    pub async fn view(&self) -> Result<EventView, ActorError> {
        self.call(EventMsg::View, self.config.call_timeout).await
    }

    /// The whole seat map at the current seq.
    pub async fn seats(&self) -> Result<Arc<SeatsSnapshot>, ActorError> {
        self.call(EventMsg::Seats, self.config.call_timeout).await
    }

    /// Joins the admission queue; joining again is a heartbeat and answers where the buyer
    /// stands.
    pub async fn join_queue(&self, user: UserId) -> Result<QueueStanding, ActorError> {
        self.call(|r| EventMsg::QueueJoin(user, r), self.config.call_timeout).await?
    }

    /// Where a buyer stands in the queue; also the buyer's heartbeat.
    pub async fn queue_status(&self, user: UserId) -> Result<QueueStanding, ActorError> {
        self.call(|r| EventMsg::QueueStatus(user, r), self.config.call_timeout).await
    }

    /// Leaves the queue (frees an admitted slot at once).
    pub async fn leave_queue(&self, user: UserId) -> Result<(), ActorError> {
        self.call(|r| EventMsg::QueueLeave(user, r), self.config.call_timeout).await?
    }

    /// The admin's view of the queue.
    pub async fn queue_view(&self) -> Result<QueueView, ActorError> {
        self.call(EventMsg::QueueView, self.config.call_timeout).await
    }

    /// Empties the queue (admin); durable.
    pub async fn clear_queue(&self) -> Result<QueueView, ActorError> {
        self.call(EventMsg::QueueClear, self.config.durable_timeout).await?
    }

    /// Joins the event's live stream: from a snapshot, or from `resume` when the actor's
    /// replay buffer still covers it.
    pub async fn subscribe(&self, resume: Option<Resume>) -> Result<Subscription, ActorError> {
        self.call(|r| EventMsg::Subscribe(resume, r), self.config.call_timeout).await
    }

    /// A live reservation of this event (held or confirmed), as the actor sees it now.
    pub async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, ActorError> {
        self.call(|r| EventMsg::Reservation(id, r), self.config.call_timeout).await
    }

    /// Blocks or unblocks seats (admin); durable.
    pub async fn set_blocked(&self, seat_ids: Vec<String>, blocked: bool) -> Result<EventView, ActorError> {
        self.call(|reply| EventMsg::SetBlocked { seat_ids, blocked, reply }, self.config.durable_timeout).await?
    }

    /// Edits the event (admin); durable.
    pub async fn update(&self, patch: EventPatch) -> Result<EventView, ActorError> {
        self.call(|r| EventMsg::Update(Box::new(patch), r), self.config.durable_timeout).await?
    }

    /// Cancels the event (admin); durable.
    pub async fn cancel_event(&self) -> Result<EventView, ActorError> {
        self.call(EventMsg::CancelEvent, self.config.durable_timeout).await?
    }

    /// What an operator sees of the actor.
    pub async fn inspect(&self) -> Result<ActorInfo, ActorError> {
        self.call(EventMsg::Inspect, self.config.call_timeout).await
    }

    /// Answers once everything the actor decided so far is committed to the store.
    pub async fn persist(&self) -> Result<ActorInfo, ActorError> {
        self.call(EventMsg::Persist, self.config.durable_timeout).await?
    }

    /// Asks the actor to stop if nothing pins it in memory (if `force`, only a sale in
    /// progress or changes in flight do); the reason if something does.
    pub(crate) async fn passivate(&self, force: bool) -> Result<Result<(), &'static str>, ActorError> {
        self.call(|r| EventMsg::Passivate(force, r), self.config.call_timeout).await
    }

    /// Tells the actor its change sets up to `seq` are durable.
    pub(crate) fn committed(&self, seq: u64) {
        let _ = self.actor.cast(Envelope::internal(EventMsg::Committed(seq)));
    }

    /// Waits until the actor has stopped (it stops itself when passivated).
    pub(crate) async fn wait_stopped(&self) {
        while self.is_alive() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Stops the actor after the message it is handling and waits until it has stopped.
    pub(crate) async fn stop_and_wait(&self, reason: &str) {
        let _ = self.actor.stop_and_wait(Some(reason.into()), None).await;
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> EventMsg,
        timeout: Duration,
    ) -> Result<T, ActorError> {
        let slot = self.acquire()?;
        self.send_call(build, timeout, Some(slot)).await
    }

    /// [`EventHandle::call`] without taking an in-flight slot: for reporting what already
    /// happened outside the actor (a capture, a refund), which must never be refused as
    /// busy.
    async fn call_unbounded<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> EventMsg,
        timeout: Duration,
    ) -> Result<T, ActorError> {
        self.send_call(build, timeout, None).await
    }

    async fn send_call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> EventMsg,
        timeout: Duration,
        slot: Option<Slot>,
    ) -> Result<T, ActorError> {
        let span = tracing::Span::current();
        match self.actor.call(|reply| Envelope { msg: build(reply), span: Some(span), slot }, Some(timeout)).await {
            Ok(CallResult::Success(v)) => Ok(v),
            Ok(CallResult::Timeout) => Err(ActorError::Timeout),
            Ok(CallResult::SenderError) => Err(ActorError::Stopped { event: self.event }),
            Err(e) => Err(ActorError::Unavailable(e.to_string())),
        }
    }

    /// Takes an in-flight slot or refuses with `Busy`: the mailbox never grows past the
    /// configured bound.
    fn acquire(&self) -> Result<Slot, ActorError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.in_flight.clone());
        if before >= self.config.max_in_flight {
            return Err(ActorError::Busy { retry_after: self.config.busy_retry_after });
        }
        Ok(slot)
    }
}
