//! The frame sink (the live stream's way to other nodes): every actor announces its stream,
//! and every frame it sends its own subscribers goes to the sink too, with a `prev_seq` that
//! chains frame to frame from where the stream began to be watched.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tiketi_actors::{ActorConfig, Clock, Frame, FrameSink, HoldCmd, Runtime, SelectionInput, Start};
use tiketi_engine::{EventId, EventStatus, LayoutSpec, ReservationId, Timestamp, UserId};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{EventRecord, MemoryStore, Store};
use tokio::time::advance;
use uuid::Uuid;

const T0: Timestamp = Timestamp::from_millis(1_767_600_000_000);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sunk {
    Started { stream: Uuid, seq: u64 },
    Frame { stream: Uuid, prev_seq: u64, seq: u64 },
}

/// Records what it is handed.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Sunk>>);

impl Recorder {
    fn take(&self) -> Vec<Sunk> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl FrameSink for Recorder {
    fn started(&self, _: EventId, stream: Uuid, seq: u64) {
        self.0.lock().unwrap().push(Sunk::Started { stream, seq });
    }

    fn publish(&self, _: EventId, stream: Uuid, prev_seq: u64, frame: &Arc<Frame>) {
        self.0.lock().unwrap().push(Sunk::Frame { stream, prev_seq, seq: frame.seq });
    }
}

fn on_sale() -> EventRecord {
    let hour = Duration::from_secs(3600);
    EventRecord {
        id: EventId(Uuid::from_u128(1)),
        title: "Night Concert".into(),
        description: String::new(),
        venue: "Olympic Hall".into(),
        artist: "The Band".into(),
        event_date: T0.plus(hour * 2),
        sale_start: Timestamp::from_millis(T0.millis() - 60_000),
        sale_end: T0.plus(hour),
        layout: Some(LayoutSpec::grid(1, 4, 10, 100)),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        hold_ttl: Duration::from_secs(600),
        max_per_reservation: 10,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: [7; 32],
        status: EventStatus::OnSale,
        created_at: T0,
        updated_at: T0,
    }
}

fn hold(n: u128, seat: &str) -> HoldCmd {
    HoldCmd {
        id: ReservationId(Uuid::from_u128(1_000 + n)),
        user: UserId(Uuid::from_u128(100 + n)),
        selection: SelectionInput::Seats(vec![seat.to_owned()]),
        idempotency: None,
        admitted: false,
    }
}

/// Lets the actor and its timers run, the stream's tick included.
async fn tick() {
    advance(Duration::from_millis(25)).await;
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_frame_goes_to_the_sink_chained_by_prev_seq_and_each_actor_announces_its_stream() {
    let sink = Arc::new(Recorder::default());
    let config = ActorConfig { frame_sink: Some(sink.clone()), ..ActorConfig::default() };
    let store = Arc::new(MemoryStore::new());
    let record = on_sale();
    store.create_event(record.clone()).await.unwrap();
    let runtime = Runtime::start(store, JournalConfig::default(), config, Clock::starting_at(T0), None).await.unwrap();

    let handle = runtime.directory().get(record.id).await.unwrap();
    // Unwatched: the hold builds no frame.
    handle.hold(hold(1, "S1-A-1")).await.unwrap();
    tick().await;
    let [Sunk::Started { stream, seq: 0 }] = sink.take()[..] else { panic!("one start at seq 0") };

    let mut subscription = handle.subscribe(None).await.unwrap();
    assert_eq!(subscription.stream, stream);
    let Start::Snapshot(snapshot) = &subscription.start else { panic!("a snapshot") };
    assert_eq!(snapshot.seq, 1);
    handle.hold(hold(2, "S1-A-2")).await.unwrap();
    tick().await;
    handle.hold(hold(3, "S1-A-3")).await.unwrap();
    handle.hold(hold(4, "S1-A-4")).await.unwrap();
    tick().await;
    assert_eq!(
        sink.take(),
        [Sunk::Frame { stream, prev_seq: 1, seq: 2 }, Sunk::Frame { stream, prev_seq: 2, seq: 4 }],
        "frames reach back to the snapshot and to each other"
    );
    // The same frames as the actor's own subscribers get.
    assert_eq!(subscription.frames.try_recv().map(|f| f.seq), Ok(2));
    assert_eq!(subscription.frames.try_recv().map(|f| f.seq), Ok(4));

    // A new actor for the event is a new stream, announced at its first seq.
    runtime.directory().evict(record.id).await;
    runtime.directory().get(record.id).await.unwrap();
    let [Sunk::Started { stream: next, seq: 4 }] = sink.take()[..] else { panic!("one start at seq 4") };
    assert_ne!(next, stream);
}
