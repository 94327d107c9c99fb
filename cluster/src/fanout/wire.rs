//! The bytes that travel between nodes for the live stream: an [`Envelope`] per frame on an
//! event's Redis channel, and the [`StreamStart`] an owner answers a remote subscriber with.
//!
//! Both are a header, one line of JSON, followed by the WebSocket messages it counts, byte for
//! byte. The messages are the actor's JSON text, serialised once: embedding them in a JSON
//! document would escape every quote on the way out and parse them again on the way in, where
//! this way a receiver slices them out of the buffer it received, without copying. The header
//! stays readable (`redis-cli subscribe 'tiketi:ev:…'` shows what moves).

use super::FanoutError;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tiketi_actors::{Frame, Notice, Start};
use tiketi_engine::{EventId, ReservationId, Timestamp, UserId};
use uuid::Uuid;

/// The format's version, in every header, so a node never misreads another version's bytes
/// during a rolling upgrade (it drops them, and its subscribers resync).
const VERSION: u8 = 1;

/// The Redis channel that carries an event's frames.
pub fn channel(event: EventId) -> String {
    format!("tiketi:ev:{event}")
}

/// What a node publishes on an event's channel.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// The event's actor began a new stream ([`tiketi_actors::FrameSink::started`]).
    Started {
        /// The event.
        event: EventId,
        /// The new stream.
        stream: Uuid,
        /// Its first seq.
        seq: u64,
    },
    /// A frame of a stream ([`tiketi_actors::FrameSink::publish`]).
    Frame {
        /// The event.
        event: EventId,
        /// The stream (the actor incarnation) it belongs to.
        stream: Uuid,
        /// The seq through which the stream's earlier frames reach.
        prev_seq: u64,
        /// The frame.
        frame: Arc<Frame>,
    },
}

impl Envelope {
    /// The event it is about.
    pub fn event(&self) -> EventId {
        match self {
            Self::Started { event, .. } | Self::Frame { event, .. } => *event,
        }
    }

    /// The published form.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Started { event, stream, seq } => {
                encode(&EnvelopeHeader::Started { v: VERSION, event: *event, stream: *stream, seq: *seq }, &[])
            }
            Self::Frame { event, stream, prev_seq, frame } => {
                let header = EnvelopeHeader::Frame {
                    v: VERSION,
                    event: *event,
                    stream: *stream,
                    prev: *prev_seq,
                    frame: FrameHeader::of(frame),
                };
                encode(&header, &frame.messages)
            }
        }
    }

    /// Reads a published envelope; its messages are slices of `bytes`.
    pub fn decode(bytes: Bytes) -> Result<Self, FanoutError> {
        let (header, mut body) = split::<EnvelopeHeader>(bytes, "envelope")?;
        match header {
            EnvelopeHeader::Started { v, event, stream, seq } => {
                check_version(v, "envelope")?;
                Ok(Self::Started { event, stream, seq })
            }
            EnvelopeHeader::Frame { v, event, stream, prev, frame } => {
                check_version(v, "envelope")?;
                let frame = frame.read(&mut body, "envelope")?;
                Ok(Self::Frame { event, stream, prev_seq: prev, frame: Arc::new(frame) })
            }
        }
    }
}

/// Where a remote subscriber starts: what the owner's
/// [`EventHandle::subscribe`](tiketi_actors::EventHandle::subscribe) answered.
#[derive(Debug)]
pub struct StreamStart {
    /// The owner's stream (its actor incarnation).
    pub stream: Uuid,
    /// The seq the subscriber is at once it has applied [`StreamStart::start`]: later frames
    /// of the stream carry higher seqs.
    pub seq: u64,
    /// What to send first.
    pub start: StartPoint,
}

/// The first message(s) of a remote subscription.
#[derive(Debug)]
pub enum StartPoint {
    /// The `snapshot` message.
    Snapshot(Bytes),
    /// The frames missed since the seq asked for (possibly none).
    Replay(Vec<Arc<Frame>>),
}

impl StreamStart {
    /// The start of a subscription to `stream`; `since` is the seq a replay continues from.
    pub fn new(stream: Uuid, start: Start, since: u64) -> Self {
        match start {
            Start::Snapshot(snapshot) => {
                Self { stream, seq: snapshot.seq, start: StartPoint::Snapshot(snapshot.message()) }
            }
            Start::Replay(frames) => {
                let seq = frames.last().map_or(since, |f| f.seq);
                Self { stream, seq, start: StartPoint::Replay(frames) }
            }
        }
    }

    /// The form an owner answers with.
    pub fn encode(&self) -> Bytes {
        let (stream, seq) = (self.stream, self.seq);
        match &self.start {
            StartPoint::Snapshot(message) => encode(
                &StartHeader::Snapshot { v: VERSION, stream, seq, size: message.len() },
                std::slice::from_ref(message),
            ),
            StartPoint::Replay(frames) => {
                let header = StartHeader::Replay {
                    v: VERSION,
                    stream,
                    seq,
                    frames: frames.iter().map(|f| FrameHeader::of(f)).collect(),
                };
                let messages: Vec<Bytes> = frames.iter().flat_map(|f| f.messages.iter().cloned()).collect();
                encode(&header, &messages)
            }
        }
    }

    /// Reads an owner's answer; its messages are slices of `bytes`.
    pub fn decode(bytes: Bytes) -> Result<Self, FanoutError> {
        let (header, mut body) = split::<StartHeader>(bytes, "stream start")?;
        match header {
            StartHeader::Snapshot { v, stream, seq, size } => {
                check_version(v, "stream start")?;
                let message = take(&mut body, size, "stream start")?;
                Ok(Self { stream, seq, start: StartPoint::Snapshot(message) })
            }
            StartHeader::Replay { v, stream, seq, frames } => {
                check_version(v, "stream start")?;
                let frames = frames
                    .into_iter()
                    .map(|f| f.read(&mut body, "stream start").map(Arc::new))
                    .collect::<Result<_, _>>()?;
                Ok(Self { stream, seq, start: StartPoint::Replay(frames) })
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum EnvelopeHeader {
    Started { v: u8, event: EventId, stream: Uuid, seq: u64 },
    Frame { v: u8, event: EventId, stream: Uuid, prev: u64, frame: FrameHeader },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StartHeader {
    Snapshot { v: u8, stream: Uuid, seq: u64, size: usize },
    Replay { v: u8, stream: Uuid, seq: u64, frames: Vec<FrameHeader> },
}

/// A frame without its messages' bytes: their sizes, in order, and the notices.
#[derive(Serialize, Deserialize)]
struct FrameHeader {
    seq: u64,
    sizes: Vec<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    notices: Vec<WireNotice>,
}

impl FrameHeader {
    fn of(frame: &Frame) -> Self {
        Self {
            seq: frame.seq,
            sizes: frame.messages.iter().map(Bytes::len).collect(),
            notices: frame.notices.iter().map(WireNotice::from).collect(),
        }
    }

    /// The frame, its messages taken from the front of `body`.
    fn read(self, body: &mut Bytes, what: &'static str) -> Result<Frame, FanoutError> {
        let messages = self.sizes.into_iter().map(|size| take(body, size, what)).collect::<Result<_, _>>()?;
        Ok(Frame::new(self.seq, messages, self.notices.into_iter().map(Notice::from).collect()))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireNotice {
    ReservationExpired { user: UserId, reservation: ReservationId },
    Admitted { user: UserId, until: Timestamp },
}

impl From<&Notice> for WireNotice {
    fn from(notice: &Notice) -> Self {
        match *notice {
            Notice::ReservationExpired { user, reservation } => Self::ReservationExpired { user, reservation },
            Notice::Admitted { user, until } => Self::Admitted { user, until },
        }
    }
}

impl From<WireNotice> for Notice {
    fn from(notice: WireNotice) -> Self {
        match notice {
            WireNotice::ReservationExpired { user, reservation } => Self::ReservationExpired { user, reservation },
            WireNotice::Admitted { user, until } => Self::Admitted { user, until },
        }
    }
}

/// The header's JSON, a newline, then every message.
fn encode(header: &impl Serialize, messages: &[Bytes]) -> Bytes {
    // Ids, integers and fixed strings: serialising them cannot fail.
    let header = serde_json::to_vec(header).expect("wire headers always serialise");
    let mut out = BytesMut::with_capacity(header.len() + 1 + messages.iter().map(Bytes::len).sum::<usize>());
    out.put_slice(&header);
    out.put_u8(b'\n');
    for message in messages {
        out.put_slice(message);
    }
    out.freeze()
}

/// The header, and the bytes after it. Compact JSON never holds a raw newline, so the first
/// one ends the header.
fn split<H: serde::de::DeserializeOwned>(mut bytes: Bytes, what: &'static str) -> Result<(H, Bytes), FanoutError> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| FanoutError::Malformed { what, detail: "no header line".into() })?;
    let header = bytes.split_to(end + 1);
    let header = serde_json::from_slice(&header[..end])
        .map_err(|e| FanoutError::Malformed { what, detail: format!("header: {e}") })?;
    Ok((header, bytes))
}

fn take(body: &mut Bytes, size: usize, what: &'static str) -> Result<Bytes, FanoutError> {
    if size > body.len() {
        return Err(FanoutError::Malformed { what, detail: format!("a message of {size} bytes, {} left", body.len()) });
    }
    Ok(body.split_to(size))
}

fn check_version(v: u8, what: &'static str) -> Result<(), FanoutError> {
    match v {
        VERSION => Ok(()),
        other => Err(FanoutError::Malformed { what, detail: format!("version {other}, expected {VERSION}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Arc<Frame> {
        Arc::new(Frame::new(
            seq,
            vec![
                Bytes::from(format!(r#"{{"type":"seats","seq":{seq},"changes":[{{"id":"A-1-1","status":"held"}}]}}"#)),
                Bytes::from_static(b"{\"type\":\"event_status\",\"note\":\"line\\nbreak\"}"),
            ],
            vec![Notice::Admitted { user: UserId(Uuid::new_v4()), until: Timestamp(42) }],
        ))
    }

    #[test]
    fn an_envelope_reads_back_as_it_was_written() {
        let event = EventId(Uuid::new_v4());
        let stream = Uuid::new_v4();
        let sent = frame(7);
        let envelope = Envelope::Frame { event, stream, prev_seq: 5, frame: sent.clone() };
        let Envelope::Frame { event: e, stream: s, prev_seq, frame } = Envelope::decode(envelope.encode()).unwrap()
        else {
            panic!("not a frame")
        };
        assert_eq!((e, s, prev_seq, frame.seq), (event, stream, 5, 7));
        assert_eq!(frame.messages, sent.messages);
        assert_eq!(frame.notices, sent.notices);

        let started = Envelope::Started { event, stream, seq: 3 }.encode();
        assert!(matches!(Envelope::decode(started), Ok(Envelope::Started { seq: 3, .. })));
    }

    #[test]
    fn a_replay_start_reads_back_as_it_was_written() {
        let stream = Uuid::new_v4();
        let start = StreamStart::new(stream, Start::Replay(vec![frame(4), frame(6)]), 3);
        assert_eq!(start.seq, 6);
        let read = StreamStart::decode(start.encode()).unwrap();
        assert_eq!((read.stream, read.seq), (stream, 6));
        let StartPoint::Replay(frames) = read.start else { panic!("not a replay") };
        assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [4, 6]);
        assert_eq!(frames[1].messages, frame(6).messages);

        let empty = StreamStart::new(stream, Start::Replay(Vec::new()), 9);
        assert_eq!(StreamStart::decode(empty.encode()).unwrap().seq, 9);
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused() {
        let encoded =
            Envelope::Frame { event: EventId(Uuid::new_v4()), stream: Uuid::new_v4(), prev_seq: 1, frame: frame(2) }
                .encode();
        assert!(Envelope::decode(encoded.slice(..encoded.len() - 1)).is_err());
        assert!(Envelope::decode(Bytes::from_static(b"hello")).is_err());
        assert!(Envelope::decode(Bytes::from_static(b"{\"kind\":\"started\",\"v\":9}\n")).is_err());
    }
}
