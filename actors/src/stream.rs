//! The live stream of one event (SPEC §4): the actor's change sets, coalesced on a short
//! tick into frames that are serialised once and shared by every subscriber.
//!
//! The stream lives inside the event's actor, so a snapshot and the frames after it are cut
//! at the same point of the actor's history: a subscriber who applies its first frame and
//! then every frame it receives, in order, holds exactly the actor's seat map. A slow
//! subscriber never slows the actor: frames go out on a bounded broadcast channel, and a
//! subscriber that falls behind it misses frames (the receiver reports the lag) and must
//! resubscribe, getting the missed frames from the replay buffer or a fresh snapshot.
//!
//! In a cluster every frame is also handed to a [`FrameSink`], which carries it to the
//! other nodes (Redis pub/sub), so a client connected to any node follows any event.

use crate::views::SeatsSnapshot;
use bytes::Bytes;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tiketi_engine::{
    Change, ChangeSet, EventEngine, EventId, EventStatus, QueueChange, ReservationId, ReservationStatus, SeatCounts,
    SeatIndex, SeatStatus, TicketTypeId, Timestamp, UserId,
};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Tuning of the live stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Changes are gathered for this long, then sent as one frame.
    pub tick: Duration,
    /// Frames a subscriber may fall behind before it misses some and must resync.
    pub channel_capacity: usize,
    /// Recent frames kept for `resume`; older ones are answered with a snapshot.
    pub replay_frames: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self { tick: Duration::from_millis(20), channel_capacity: 256, replay_frames: 1024 }
    }
}

/// Something only one buyer is told, carried beside a frame's shared messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The buyer's hold lapsed unpaid.
    ReservationExpired {
        /// Whose hold it was.
        user: UserId,
        /// The reservation.
        reservation: ReservationId,
    },
    /// The buyer was let in by the admission queue.
    Admitted {
        /// Who.
        user: UserId,
        /// Until when they may reserve.
        until: Timestamp,
    },
}

impl Notice {
    /// The buyer it is meant for.
    pub fn user(&self) -> UserId {
        match self {
            Self::ReservationExpired { user, .. } | Self::Admitted { user, .. } => *user,
        }
    }
}

/// One step of the stream: the messages every subscriber gets (JSON text, serialised once),
/// and the notices for single buyers.
#[derive(Debug)]
pub struct Frame {
    /// The seq of the last change folded in; strictly increasing from frame to frame.
    pub seq: u64,
    /// WebSocket text messages, in order.
    pub messages: Vec<Bytes>,
    /// Per-buyer notices.
    pub notices: Vec<Notice>,
    /// The messages as a transport writes them, encoded once and shared. A frame kept for
    /// replay keeps both forms: frames are small, and each is encoded once, not once per
    /// subscriber.
    encoded: OnceLock<Bytes>,
}

impl Frame {
    /// A frame of `messages` (in order) and `notices` at `seq`.
    pub fn new(seq: u64, messages: Vec<Bytes>, notices: Vec<Notice>) -> Self {
        Self { seq, messages, notices, encoded: OnceLock::new() }
    }

    /// The messages as the transport writes them (WebSocket frames, say): encoded by the
    /// first subscriber that asks, with `encode`, and shared with every other. Every caller
    /// must pass the same encoding.
    pub fn encoded(&self, encode: impl FnOnce(&[Bytes]) -> Bytes) -> &Bytes {
        self.encoded.get_or_init(|| encode(&self.messages))
    }
}

/// The whole seat map at one seq, as the first message of a subscription. The actor only
/// copies the seat statuses; the message is serialised outside it, by the first subscriber
/// that needs it, and shared with every other subscriber at the same seq.
#[derive(Debug)]
pub struct Snapshot {
    /// The seq of the last change folded in.
    pub seq: u64,
    stream: Uuid,
    status: EventStatus,
    counts: SeatCounts,
    ticket_types: Vec<WireTicketType>,
    seats: Arc<SeatsSnapshot>,
    message: OnceLock<Bytes>,
}

impl Snapshot {
    /// The `snapshot` message.
    pub fn message(&self) -> Bytes {
        self.message
            .get_or_init(|| {
                to_bytes(&WireSnapshot {
                    kind: "snapshot",
                    stream: self.stream,
                    seq: self.seq,
                    status: self.status.as_str(),
                    seats: self
                        .seats
                        .seats()
                        .map(|(s, status)| WireSeat {
                            id: s.id,
                            section: s.section,
                            row: s.row,
                            number: s.number,
                            price: s.price,
                            status: status.as_str(),
                        })
                        .collect(),
                    counts: self.counts,
                    ticket_types: &self.ticket_types,
                })
            })
            .clone()
    }
}

/// Where an event's frames go besides its own node's subscribers: in a cluster, to the other
/// nodes, whose WebSocket clients follow the event too (SPEC §4).
///
/// Called from inside the event's actor, so an implementation must never block or await:
/// it hands the frame off (to a bounded queue, say) and returns, dropping it when it cannot
/// keep up. A receiver detects what was dropped from `prev_seq` and resyncs.
pub trait FrameSink: std::fmt::Debug + Send + Sync + 'static {
    /// An actor of `event` began a new stream, `stream`, at `seq`: frames of any earlier
    /// stream of the event are void (the actor restarted, here or on another node).
    fn started(&self, event: EventId, stream: Uuid, seq: u64);

    /// A frame of `stream` went out. `prev_seq` is the seq through which the stream's
    /// earlier frames reach: the previous frame's seq, or where the stream began to be
    /// watched. A receiver whose last frame of `stream` has another seq missed some.
    fn publish(&self, event: EventId, stream: Uuid, prev_seq: u64, frame: &Arc<Frame>);
}

/// Where a subscriber starts from.
#[derive(Debug)]
pub enum Start {
    /// The whole seat map.
    Snapshot(Arc<Snapshot>),
    /// The frames missed since the seq asked for (possibly none).
    Replay(Vec<Arc<Frame>>),
}

/// What a subscriber receives: where to start, then every later frame.
pub struct Subscription {
    /// This incarnation of the stream. Seqs are only comparable within one: after the
    /// event's actor restarts (a crash may lose holds that were never stored), a resume
    /// naming another stream gets a snapshot.
    pub stream: Uuid,
    /// The first frame(s) to send.
    pub start: Start,
    /// Every frame after `start`; reports a lag if the subscriber falls behind.
    pub frames: broadcast::Receiver<Arc<Frame>>,
}

/// A resume request: the last seq the subscriber applied, and the stream it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Last seq applied.
    pub since: u64,
    /// The stream id from its snapshot, if the subscriber kept it.
    pub stream: Option<Uuid>,
}

/// The stream state an event actor keeps.
pub(crate) struct LiveStream {
    id: Uuid,
    event: EventId,
    config: StreamConfig,
    /// Where frames also go (the other nodes of a cluster).
    sink: Option<Arc<dyn FrameSink>>,
    tx: broadcast::Sender<Arc<Frame>>,
    /// Seat changes since the last frame, in first-change order, each with its latest status.
    pending: Vec<(SeatIndex, SeatStatus)>,
    pending_index: HashMap<SeatIndex, usize>,
    pending_general: bool,
    pending_status: Option<EventStatus>,
    pending_notices: Vec<Notice>,
    /// When the oldest change waiting for the next frame was decided.
    pending_since: Option<Timestamp>,
    /// Seq of the last change set recorded.
    last_seq: u64,
    /// Every change up to this seq went out in a frame (or before anyone watched): the
    /// `prev_seq` of the next frame.
    framed: u64,
    /// Every frame with a seq above this is in `replay`.
    replay_from: u64,
    replay: VecDeque<Arc<Frame>>,
    snapshot: Option<Arc<Snapshot>>,
    /// Whether anyone ever subscribed: until then no frames are built at all.
    watched: bool,
}

impl LiveStream {
    /// A new stream of `event` at `seq`, announced to the sink if there is one.
    pub(crate) fn new(config: StreamConfig, event: EventId, seq: u64, sink: Option<Arc<dyn FrameSink>>) -> Self {
        let (tx, _) = broadcast::channel(config.channel_capacity.max(1));
        let id = Uuid::new_v4();
        if let Some(sink) = &sink {
            sink.started(event, id, seq);
        }
        Self {
            id,
            event,
            config,
            sink,
            tx,
            pending: Vec::new(),
            pending_index: HashMap::new(),
            pending_general: false,
            pending_status: None,
            pending_notices: Vec::new(),
            pending_since: None,
            last_seq: seq,
            framed: seq,
            replay_from: seq,
            replay: VecDeque::new(),
            snapshot: None,
            watched: false,
        }
    }

    /// How long to gather changes before a frame goes out.
    pub(crate) fn tick(&self) -> Duration {
        self.config.tick
    }

    /// Live subscribers.
    pub(crate) fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Whether changes wait for the next frame.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
            || self.pending_general
            || self.pending_status.is_some()
            || !self.pending_notices.is_empty()
    }

    /// Folds a change set into the next frame. An event nobody ever watched builds no
    /// frames; once watched, frames are built even while nobody is connected, so a client
    /// that reconnects can resume.
    pub(crate) fn record(&mut self, changes: &ChangeSet) {
        if changes.changes.is_empty() {
            return;
        }
        self.last_seq = changes.seq;
        self.snapshot = None;
        if !self.watched {
            self.replay_from = changes.seq;
            self.framed = changes.seq;
            return;
        }
        self.pending_since.get_or_insert(changes.at);
        for change in &changes.changes {
            match change {
                Change::Seat { seat, status } => match self.pending_index.get(seat) {
                    Some(&i) => self.pending[i].1 = *status,
                    None => {
                        self.pending_index.insert(*seat, self.pending.len());
                        self.pending.push((*seat, *status));
                    }
                },
                Change::General { .. } => self.pending_general = true,
                Change::EventStatus(status) => self.pending_status = Some(*status),
                Change::ReservationStatus { id, user, status: ReservationStatus::Expired } => {
                    self.pending_notices.push(Notice::ReservationExpired { user: *user, reservation: *id });
                }
                Change::Queue(QueueChange::Admitted { user, until }) => {
                    self.pending_notices.push(Notice::Admitted { user: *user, until: *until });
                }
                Change::ReservationCreated(_)
                | Change::ReservationStatus { .. }
                | Change::Queue(_)
                | Change::Payment(_)
                | Change::RefundOwed(_)
                | Change::RefundPaid { .. } => {}
            }
        }
    }

    /// Sends what was gathered as one frame (if anything was).
    pub(crate) fn flush(&mut self, engine: &EventEngine) {
        if !self.has_pending() {
            return;
        }
        let mut messages = Vec::with_capacity(2);
        if !self.pending.is_empty() || self.pending_general {
            let map = engine.seats();
            let changes = self
                .pending
                .iter()
                .map(|&(seat, status)| WireSeatChange { id: map.seat_id(seat), status: status.as_str() })
                .collect();
            let general = if self.pending_general { Some(ticket_types(engine)) } else { None };
            let message = WireSeats {
                kind: "seats",
                seq: self.last_seq,
                at: self.pending_since.map_or(0, |t| t.millis()),
                changes,
                counts: engine.counts(),
                ticket_types: general,
            };
            messages.push(to_bytes(&message));
        }
        if let Some(status) = self.pending_status {
            messages.push(to_bytes(&WireStatus { kind: "event_status", seq: self.last_seq, status: status.as_str() }));
        }
        let frame = Arc::new(Frame::new(self.last_seq, messages, std::mem::take(&mut self.pending_notices)));
        self.clear_pending();
        let prev_seq = std::mem::replace(&mut self.framed, frame.seq);
        if let Some(sink) = &self.sink {
            sink.publish(self.event, self.id, prev_seq, &frame);
        }
        // Nobody listening is not an error: the frame still goes to the replay buffer.
        let _ = self.tx.send(frame.clone());
        self.replay.push_back(frame);
        while self.replay.len() > self.config.replay_frames {
            let evicted = self.replay.pop_front().expect("longer than the bound");
            self.replay_from = evicted.seq;
        }
    }

    /// Subscribes at the actor's current point: what is gathered goes out first, then the
    /// subscriber starts from `resume` if the replay buffer still covers it, else from a
    /// snapshot.
    pub(crate) fn subscribe(
        &mut self,
        engine: &EventEngine,
        seats: impl FnOnce() -> Arc<SeatsSnapshot>,
        resume: Option<Resume>,
    ) -> Subscription {
        self.watched = true;
        self.flush(engine);
        let frames = self.tx.subscribe();
        let covered = resume.filter(|r| {
            r.stream.is_none_or(|s| s == self.id) && r.since >= self.replay_from && r.since <= self.last_seq
        });
        let start = match covered {
            Some(r) => Start::Replay(self.replay.iter().filter(|f| f.seq > r.since).cloned().collect()),
            None => Start::Snapshot(self.snapshot(engine, seats)),
        };
        Subscription { stream: self.id, start, frames }
    }

    fn snapshot(&mut self, engine: &EventEngine, seats: impl FnOnce() -> Arc<SeatsSnapshot>) -> Arc<Snapshot> {
        if let Some(cached) = &self.snapshot {
            return cached.clone();
        }
        let seats = seats();
        let snapshot = Arc::new(Snapshot {
            seq: seats.seq,
            stream: self.id,
            status: engine.status(),
            counts: engine.counts(),
            ticket_types: ticket_types(engine),
            seats,
            message: OnceLock::new(),
        });
        self.snapshot = Some(snapshot.clone());
        snapshot
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_index.clear();
        self.pending_general = false;
        self.pending_status = None;
        self.pending_notices.clear();
        self.pending_since = None;
    }
}

fn ticket_types(engine: &EventEngine) -> Vec<WireTicketType> {
    engine
        .ticket_types()
        .iter()
        .map(|t| WireTicketType { id: t.spec.id, held: t.held, sold: t.sold, available: t.available() })
        .collect()
}

fn to_bytes(message: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("wire messages always serialise"))
}

// The wire format of SPEC §4.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSnapshot<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    stream: Uuid,
    seq: u64,
    status: &'static str,
    seats: Vec<WireSeat<'a>>,
    counts: SeatCounts,
    ticket_types: &'a [WireTicketType],
}

#[derive(Serialize)]
struct WireSeat<'a> {
    id: String,
    section: &'a str,
    row: &'a str,
    number: u32,
    price: i64,
    status: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSeats {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    /// When the oldest change in the batch was decided (ms since the Unix epoch): how stale
    /// the batch is on arrival.
    at: i64,
    changes: Vec<WireSeatChange>,
    counts: SeatCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_types: Option<Vec<WireTicketType>>,
}

#[derive(Serialize)]
struct WireSeatChange {
    id: String,
    status: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTicketType {
    id: TicketTypeId,
    held: u32,
    sold: u32,
    available: u32,
}

#[derive(Serialize)]
struct WireStatus {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    status: &'static str,
}
