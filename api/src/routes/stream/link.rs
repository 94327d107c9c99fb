//! A live-stream connection's socket and what it has yet to write, shared by the
//! connection's own task and, while it is caught up, its event's sweeper (`sweep.rs`).
//!
//! Every byte for the client goes through the one [`Outbox`] under the link's lock:
//! the stream's frames (gathered by the sweeper or the task), the task's own messages, and
//! tungstenite's pongs and closes ([`Wire`]). Whoever finds the outbox empty writes at once;
//! bytes the socket does not take stay for the task, which waits for the socket within
//! `stream.send_timeout_ms`. So frames never interleave on the wire, and the sweeper never
//! waits for a client.

use super::outbox::{self, Outbox};
use crate::auth::AuthKeys;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use tiketi_actors::{Frame, Notice};
use tiketi_engine::{EventId, Timestamp, UserId};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

/// What a sweeper is told.
pub(super) enum Control {
    /// A connection joins, with the ticket of that join.
    Join(Arc<Link>, u64),
    /// A connection left: let it go.
    Left,
}

/// A connection's socket and its state, shared with its event's sweeper.
pub(super) struct Link {
    state: Mutex<LinkState>,
    /// Wakes the connection's task: the sweeper left it bytes to write, or handed the
    /// connection back.
    pub(super) wake: Notify,
}

impl Link {
    pub(super) fn new(io: TokioIo<Upgraded>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(LinkState {
                io: Some(io),
                outbox: Outbox::default(),
                seq: 0,
                stream: Uuid::nil(),
                user: None,
                admitted_until: None,
                behind: 0,
                ticket: 0,
                joined: false,
                sweeper: None,
                closing: false,
                handback: None,
            }),
            wake: Notify::new(),
        })
    }

    /// The state, locked. Nobody holds the lock across an await: it guards a few field
    /// updates and a non-blocking write.
    pub(super) fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the task why the sweeper let the connection go.
    pub(super) fn hand_back(&self, mut state: MutexGuard<'_, LinkState>, why: Handback) {
        state.joined = false;
        state.sweeper = None;
        state.handback = Some(why);
        drop(state);
        self.wake.notify_one();
    }
}

/// Why the sweeper let a connection go; its task acts on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handback {
    /// It fell more than `stream.channel_capacity` frames behind: resync it.
    Lagged,
    /// The event's frames ended (its actor stopped): follow the event again.
    Ended,
    /// The sweeper does not have every frame after the connection's seq: start again from
    /// that seq.
    Behind,
    /// A write failed: the client is gone.
    Failed,
}

pub(super) struct LinkState {
    /// The socket; `None` once the connection ended (dropping it closes the socket).
    io: Option<TokioIo<Upgraded>>,
    pub(super) outbox: Outbox,
    /// The seq of the last frame gathered.
    pub(super) seq: u64,
    /// The stream `seq` counts in.
    pub(super) stream: Uuid,
    /// The buyer, when the connection is authenticated: their notices come to it.
    pub(super) user: Option<UserId>,
    /// The admission last announced, so each is announced once.
    admitted_until: Option<Timestamp>,
    /// Frames gathered since the outbox was last empty.
    pub(super) behind: usize,
    /// Counts joins, so that a sweeper's entry from an earlier one is known as stale.
    pub(super) ticket: u64,
    /// Whether the event's sweeper gathers this connection's frames.
    pub(super) joined: bool,
    /// The sweeper it joined, told when the connection leaves so that it lets it go at
    /// once (and ends with its last connection) rather than at its next frame.
    pub(super) sweeper: Option<UnboundedSender<Control>>,
    /// A close frame was gathered: nothing may follow it.
    pub(super) closing: bool,
    pub(super) handback: Option<Handback>,
}

impl LinkState {
    /// Gathers a frame unless the connection has it already: the shared messages (encoded
    /// once, by the first connection or sweeper that needs them), then this buyer's notices.
    /// Returns how many messages it gathered.
    pub(super) fn gather(&mut self, frame: &Frame, event: EventId, auth: &AuthKeys) -> u64 {
        if frame.seq <= self.seq || self.closing {
            return 0;
        }
        self.seq = frame.seq;
        self.behind += 1;
        let mut gathered = 0;
        if !frame.messages.is_empty() {
            self.outbox.push_encoded(frame.encoded(outbox::encode_all));
            gathered += frame.messages.len() as u64;
        }
        let Some(user) = self.user else { return gathered };
        for notice in frame.notices.iter().filter(|n| n.user() == user) {
            let message = match notice {
                Notice::ReservationExpired { reservation, .. } => {
                    json!({"type": "reservation_expired", "reservationId": reservation})
                }
                Notice::Admitted { until, .. } => match self.admission_message(event, auth, *until) {
                    Some(message) => message,
                    None => continue,
                },
            };
            self.push_text(message.to_string().as_bytes());
            gathered += 1;
        }
        gathered
    }

    /// Gathers a short text message whole (a long one is the task's to send, in fragments
    /// written as they are cut).
    pub(super) fn push_text(&mut self, text: &[u8]) {
        if self.closing {
            return;
        }
        for (first, payload) in outbox::fragments(text) {
            self.outbox.push_fragment(first, payload);
        }
    }

    /// The `admitted` message with an admission token, once per admission.
    pub(super) fn admission_message(
        &mut self,
        event: EventId,
        auth: &AuthKeys,
        until: Timestamp,
    ) -> Option<serde_json::Value> {
        let user = self.user?;
        if self.admitted_until == Some(until) {
            return None;
        }
        let token = auth.issue_admission(user, event, until).ok()?;
        self.admitted_until = Some(until);
        Some(json!({ "type": "admitted", "admissionToken": token, "admittedUntilMs": until.millis() }))
    }

    /// Writes the outbox: `Ready` once all of it is written, `Pending` (with `cx` woken
    /// when the socket can take more) while some is left.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else { return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) };
        ready!(self.outbox.poll_write_to(io, cx))?;
        self.behind = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes now, without waiting: true when the outbox is empty.
    pub(super) fn try_flush(&mut self) -> io::Result<bool> {
        match self.poll_flush(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Ok(true),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(false),
        }
    }

    /// Takes the connection from the sweeper (if it has it), to serve it alone.
    pub(super) fn leave(&mut self) {
        self.joined = false;
        self.handback = None;
        if let Some(sweeper) = self.sweeper.take() {
            // A sweeper that ended meanwhile has let it go already.
            let _ = sweeper.send(Control::Left);
        }
    }

    /// Ends the connection: the sweeper lets it go, the socket closes, and what was left to
    /// write is dropped.
    pub(super) fn end(&mut self) {
        self.leave();
        self.io = None;
        self.outbox = Outbox::default();
    }
}

/// The socket as tungstenite sees it: it reads the client, and what it writes (pongs,
/// closes) joins the outbox like everything else.
pub(super) struct Wire(pub(super) Arc<Link>);

impl AsyncRead for Wire {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.0.lock().io.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            // Ended: end of stream.
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Wire {
    /// Takes all of `buf` (whole frames: tungstenite hands over everything it has, and is
    /// told it was all taken), and writes it at once when nothing is waiting before it.
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.0.lock();
        if state.io.is_none() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if state.closing {
            // A close went out already; tungstenite sends nothing after its own.
            return Poll::Ready(Ok(buf.len()));
        }
        if has_close(buf) {
            // Nothing may follow the close: the sweeper skips the link from now on, and
            // lets go of it when the connection ends (`end` tells it).
            state.closing = true;
            state.joined = false;
        }
        let idle = state.outbox.is_empty();
        state.outbox.push_raw(buf);
        if idle && let Poll::Ready(Err(e)) = state.poll_flush(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.lock().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.0.lock();
        ready!(state.poll_flush(cx))?;
        match state.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Whether `frames` (whole, unmasked WebSocket frames) include a close frame.
fn has_close(mut frames: &[u8]) -> bool {
    const CLOSE: u8 = 0x8;
    while frames.len() >= 2 {
        if frames[0] & 0x0f == CLOSE {
            return true;
        }
        let (header, len): (usize, usize) = match frames[1] & 0x7f {
            126 if frames.len() >= 4 => (4, usize::from(u16::from_be_bytes([frames[2], frames[3]]))),
            127 if frames.len() >= 10 => (10, u64::from_be_bytes(frames[2..10].try_into().expect("8 bytes")) as usize),
            126 | 127 => return false,
            len => (2, usize::from(len)),
        };
        frames = frames.get(header.saturating_add(len)..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::has_close;

    #[test]
    fn a_close_is_found_among_the_frames_tungstenite_writes() {
        let pong = [0x8a, 0x02, b'h', b'i'];
        let close = [0x88, 0x02, 0x03, 0xe8];
        assert!(!has_close(&pong));
        assert!(has_close(&close));
        assert!(has_close(&[&pong[..], &close[..]].concat()), "a close after a pong");
        let mut long_pong = vec![0x8a, 126, 0x00, 200];
        long_pong.extend([0x88; 200]);
        assert!(!has_close(&long_pong), "payload bytes are not read as headers");
        assert!(has_close(&[&long_pong[..], &close[..]].concat()));
    }
}
