//! The live seat stream (Tiketi's WebSocket message shapes): one connection that keeps the
//! buyers' seat map current, and the `watch` scenario's many watchers that count frames and
//! measure how stale each one is on arrival.
//!
//! Staleness is the watcher's wall clock minus the frame's `at` (when the oldest change in
//! it was decided, by the server's wall clock), so it means something only with client and
//! server on one machine (or with synchronised clocks). `at` is read with a substring scan,
//! checked once against a full parse, so watchers spend their time in the socket, not JSON.

use super::latency::{Latency, histogram};
use super::seats::SeatView;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const SEATS_PREFIX: &str = r#"{"type":"seats""#;
const SNAPSHOT_PREFIX: &str = r#"{"type":"snapshot""#;
const STATUS_PREFIX: &str = r#"{"type":"event_status""#;
/// Watchers connecting at once (a burst of connects can overflow the accept backlog).
const CONNECT_CONCURRENCY: usize = 200;

/// Opens a connection, retrying a few times.
async fn connect(url: &str) -> Result<Ws, String> {
    // tungstenite allocates its read buffer up front (128 KiB by default); frames are small.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let mut error = String::new();
    for attempt in 0..4 {
        match connect_async_with_config(url, Some(config), true).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(format!("connecting to {url}: {error}"))
}

#[derive(Deserialize)]
struct MapMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    seats: Vec<SeatState<'a>>,
    #[serde(default, borrow)]
    changes: Vec<SeatState<'a>>,
}

#[derive(Deserialize)]
struct SeatState<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
}

/// Applies one stream message to the map; returns whether it was a map message.
pub fn apply(view: &SeatView, text: &str, available: &str) -> bool {
    let Ok(message) = serde_json::from_str::<MapMessage<'_>>(text) else { return false };
    let seats = match message.kind.as_ref() {
        "snapshot" => &message.seats,
        "seats" => &message.changes,
        _ => return false,
    };
    for seat in seats {
        view.set(&seat.id, seat.status == available);
    }
    true
}

/// Keeps `view` current from the stream at `url` until `done` resolves, reconnecting (and
/// so resnapshotting) when the connection drops.
pub async fn follow(view: Arc<SeatView>, url: String, available: String, done: impl Future<Output = ()>) {
    let follow = async {
        loop {
            let Ok(mut ws) = connect(&url).await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    apply(&view, text.as_str(), &available);
                }
            }
        }
    };
    tokio::select! {
        _ = follow => {}
        _ = done => {}
    }
}

/// What the watchers saw.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    /// Watchers asked for.
    pub watchers: usize,
    /// Watchers that connected.
    pub connected: usize,
    /// Watchers that could not connect.
    pub connect_failures: usize,
    /// The first connect error.
    pub first_error: Option<String>,
    /// Seconds until every watcher had connected (or failed).
    pub connect_s: f64,
    /// `seats` frames received, all watchers together.
    pub frames: u64,
    /// Per second of the watch window.
    pub frames_per_s: f64,
    /// `snapshot` messages after the first (the server resynced a watcher that lagged).
    pub resnapshots: u64,
    /// `event_status` messages.
    pub status_messages: u64,
    /// Connections that ended before the watch did.
    pub closed_early: usize,
    /// Frames whose `seq` did not increase.
    pub out_of_order: u64,
    /// Now minus the frame's `at`, in ms.
    pub staleness: Latency,
}

/// The watchers' shared tallies.
struct Tally {
    frames: AtomicU64,
    resnapshots: AtomicU64,
    statuses: AtomicU64,
    out_of_order: AtomicU64,
    connected: AtomicUsize,
    failed: AtomicUsize,
    closed_early: AtomicUsize,
    first_error: Mutex<Option<String>>,
    staleness: Vec<Mutex<Histogram<u64>>>,
    /// When the measured window began; frames before it are read but not counted.
    window: OnceLock<Instant>,
    /// Frames per second of the window, from its start.
    per_second: Vec<AtomicU64>,
    /// Live count for the progress bar.
    live: Arc<AtomicU64>,
}

/// Watchers connected to the live seat stream, reading (so the server never waits on
/// them) until told to stop.
pub struct Watchers {
    tally: Arc<Tally>,
    tasks: tokio::task::JoinSet<()>,
    stop: tokio::sync::watch::Sender<bool>,
    watchers: usize,
    connect_s: f64,
}

impl Watchers {
    /// Connects `watchers` watchers to `url` (each reads its snapshot at once) and returns
    /// when every one has connected or failed. `seconds`: the longest window to count;
    /// `live` counts frames for the progress bar.
    pub async fn connect(url: &str, watchers: usize, seconds: usize, live: Arc<AtomicU64>) -> Self {
        let started = Instant::now();
        let tally = Arc::new(Tally {
            frames: AtomicU64::new(0),
            resnapshots: AtomicU64::new(0),
            statuses: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            closed_early: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            staleness: (0..16).map(|_| Mutex::new(histogram())).collect(),
            window: OnceLock::new(),
            per_second: (0..seconds + 2).map(|_| AtomicU64::new(0)).collect(),
            live,
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let url: Arc<str> = url.into();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..watchers {
            let (url, tally, gate, stopped) = (url.clone(), tally.clone(), gate.clone(), stopped.clone());
            tasks.spawn(async move { watcher(w, &url, &tally, &gate, stopped).await });
        }
        while tally.connected.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < watchers {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { tally, tasks, stop, watchers, connect_s: started.elapsed().as_secs_f64() }
    }

    /// Starts counting frames, from `start`.
    pub fn begin(&self, start: Instant) {
        let _ = self.tally.window.set(start);
    }

    /// Disconnects every watcher and reports what they saw in the window, which ends now;
    /// also the frames of each second of it.
    pub async fn finish(mut self) -> (WatchReport, Vec<u64>) {
        let end = Instant::now();
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        let tally = &self.tally;
        let mut staleness = histogram();
        for shard in &tally.staleness {
            staleness.add(&*shard.lock().unwrap_or_else(|e| e.into_inner())).expect("same bounds");
        }
        let frames = tally.frames.load(Ordering::Relaxed);
        let window = tally.window.get().map_or(Duration::ZERO, |start| end.saturating_duration_since(*start));
        let report = WatchReport {
            watchers: self.watchers,
            connected: tally.connected.load(Ordering::Relaxed),
            connect_failures: tally.failed.load(Ordering::Relaxed),
            first_error: tally.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            connect_s: self.connect_s,
            frames,
            frames_per_s: super::stats::rate(frames, window),
            resnapshots: tally.resnapshots.load(Ordering::Relaxed),
            status_messages: tally.statuses.load(Ordering::Relaxed),
            closed_early: tally.closed_early.load(Ordering::Relaxed),
            out_of_order: tally.out_of_order.load(Ordering::Relaxed),
            staleness: Latency::of(&staleness),
        };
        (report, tally.per_second.iter().map(|c| c.load(Ordering::Relaxed)).collect())
    }
}

async fn watcher(
    w: usize,
    url: &str,
    tally: &Tally,
    gate: &Semaphore,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let connected = {
        let _permit = gate.acquire().await;
        connect(url).await
    };
    let mut ws = match connected {
        Ok(ws) => ws,
        Err(e) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            tally.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            return;
        }
    };
    tally.connected.fetch_add(1, Ordering::Relaxed);
    let (mut seq, mut snapshots, mut checked) = (0i64, 0u32, false);
    let shard = &tally.staleness[w % tally.staleness.len()];
    loop {
        let message = tokio::select! {
            m = ws.next() => m,
            _ = stopped.changed() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                tally.closed_early.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Ok(_)) => continue,
        };
        let text = text.as_str();
        if text.starts_with(SEATS_PREFIX) {
            let (Some(frame_seq), Some(at)) = (number(text, r#""seq":"#), number(text, r#""at":"#)) else { continue };
            if !checked {
                checked = scan_agrees(text, frame_seq, at);
            }
            if frame_seq <= seq {
                tally.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            seq = seq.max(frame_seq);
            let Some(start) = tally.window.get() else { continue };
            let stale_us = (now_ms() - at).max(0) as u64 * 1000;
            shard.lock().unwrap_or_else(|e| e.into_inner()).saturating_record(stale_us.max(1));
            tally.frames.fetch_add(1, Ordering::Relaxed);
            tally.live.fetch_add(1, Ordering::Relaxed);
            if let Some(slot) = tally.per_second.get(start.elapsed().as_secs() as usize) {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        } else if text.starts_with(SNAPSHOT_PREFIX) {
            snapshots += 1;
            if snapshots > 1 {
                tally.resnapshots.fetch_add(1, Ordering::Relaxed);
            }
            seq = number(text, r#""seq":"#).unwrap_or(seq);
        } else if text.starts_with(STATUS_PREFIX) {
            tally.statuses.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = ws.close(None).await;
}

/// The integer after the first occurrence of `key` (e.g. `"at":`). Tiketi writes `type`,
/// `seq` and `at` before any seat, so the first occurrence is the top-level field.
pub fn number(text: &str, key: &str) -> Option<i64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Whether the scan read what a full parse reads (panics if not: the figures would be
/// wrong).
fn scan_agrees(text: &str, seq: i64, at: i64) -> bool {
    let frame: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    assert_eq!((frame["seq"].as_i64(), frame["at"].as_i64()), (Some(seq), Some(at)), "the scan misread {text}");
    true
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_reads_top_level_numbers() {
        let text = r#"{"type":"seats","seq":42,"at":1700000000123,"changes":[{"id":"A-1","status":"held"}]}"#;
        assert_eq!(number(text, r#""seq":"#), Some(42));
        assert_eq!(number(text, r#""at":"#), Some(1_700_000_000_123));
        assert_eq!(number(text, r#""nope":"#), None);
        assert!(scan_agrees(text, 42, 1_700_000_000_123));
    }

    #[test]
    fn snapshots_and_changes_update_the_map() {
        let view = SeatView::new((1..=3).map(|i| (format!("A-{i}"), true)));
        let snapshot = r#"{"type":"snapshot","stream":"x","seq":1,"status":"on_sale","seats":[
            {"id":"A-1","section":"A","row":"1","number":1,"price":1,"status":"held"},
            {"id":"A-2","section":"A","row":"1","number":2,"price":1,"status":"available"},
            {"id":"A-3","section":"A","row":"1","number":3,"price":1,"status":"sold"}],"counts":{}}"#;
        assert!(apply(&view, snapshot, "available"));
        assert_eq!(view.available(), 1);
        let changes = r#"{"type":"seats","seq":2,"at":1,"changes":[{"id":"A-1","status":"available"},
            {"id":"A-2","status":"held"}],"counts":{}}"#;
        assert!(apply(&view, changes, "available"));
        assert!(view.is_available(0) && !view.is_available(1));
        assert!(!apply(&view, r#"{"type":"event_status","seq":3,"status":"sold_out"}"#, "available"));
    }
}
