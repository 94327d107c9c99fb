//! What a live-stream connection has yet to write, as WebSocket frames (RFC 6455 §5.2),
//! gathered and written together: one system call for what a visit gathers, as a rule (a
//! new one past [`FRAGMENT`], and for a long frame).
//!
//! A frame of the event's stream is the same for every subscriber, so its messages are
//! encoded once ([`encode_all`], kept on the frame) and each connection only copies the
//! encoded bytes, or for a long frame points at them. The connection's own messages are
//! framed here; the control frames tungstenite answers with (pong, close) come in whole.
//! Everything goes through the one outbox (`link.rs`), so frames never interleave on the
//! wire.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;

/// Largest frame a long text message is cut into, and the most an outbox copies before it
/// writes or, for a client not keeping up, points at the frames instead (what it copies last
/// may take it past, to under twice this): its buffer keeps its largest size, so it stays
/// that small.
pub(super) const FRAGMENT: usize = 16 * 1024;

/// Most pieces of a backlog written with one system call.
const MAX_SLICES: usize = 64;

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;

/// `text` as one WebSocket text message, in fragments of at most [`FRAGMENT`] bytes cut at
/// character boundaries (one frame when it fits): `(first byte of the header, payload)` each.
pub(super) fn fragments(text: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = text;
    let mut opcode = TEXT;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        // A fragment may split a character (RFC 6455 §5.6), but strict clients reject it: the
        // cut moves back to the character's start, at most 3 bytes (a character is at most 4).
        let mut cut = rest.len().min(FRAGMENT);
        let end = cut;
        while cut < rest.len() && end - cut < 3 && (rest[cut] & 0b1100_0000) == 0b1000_0000 {
            cut -= 1;
        }
        if cut < rest.len() && (rest[cut] & 0b1100_0000) == 0b1000_0000 {
            // Not UTF-8 there: cut where the bound says rather than search further.
            cut = end;
        }
        let (part, tail) = rest.split_at(cut);
        rest = tail;
        done = rest.is_empty();
        let first = opcode | if done { FIN } else { 0 };
        opcode = CONTINUATION;
        Some((first, part))
    })
}

/// Appends one frame: the header of a server's (unmasked) frame, then the payload.
fn push_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    out.push(first);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// `messages` (UTF-8 text each) as WebSocket text messages, one after the other.
pub(super) fn encode_all(messages: &[Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 10).sum());
    for message in messages {
        for (first, payload) in fragments(message) {
            push_frame(&mut out, first, payload);
        }
    }
    Bytes::from(out)
}

/// The bytes a connection has yet to write, in order: the only way bytes reach its socket
/// (tungstenite's pongs and closes included), so frames never interleave on the wire. A
/// stream frame is copied while the outbox is short; a long one, or any once the outbox has
/// a fragment's worth waiting (a client not keeping up), is pointed at rather than copied,
/// so a stalled connection holds references to the shared frames, not copies.
#[derive(Default)]
pub(super) struct Outbox {
    /// Gathered before the tail: shared frames, and a copied run that came before one.
    queued: VecDeque<Bytes>,
    /// Gathered last, copied; `written` of it is written (only while `queued` is empty).
    tail: Vec<u8>,
    written: usize,
    /// Bytes written since the outbox was made.
    progress: u64,
}

impl Outbox {
    /// Bytes not written yet.
    pub(super) fn len(&self) -> usize {
        self.queued.iter().map(Bytes::len).sum::<usize>() + self.tail.len() - self.written
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queued.is_empty() && self.written == self.tail.len()
    }

    /// Bytes written since the outbox was made: a write that waits is making progress while
    /// this grows.
    pub(super) fn progress(&self) -> u64 {
        self.progress
    }

    /// Gathers one fragment of a text message (see [`fragments`]).
    pub(super) fn push_fragment(&mut self, first: u8, payload: &[u8]) {
        push_frame(&mut self.tail, first, payload);
    }

    /// Gathers a stream frame encoded already (by [`encode_all`]): copied while the outbox is
    /// short, else pointed at.
    pub(super) fn push_encoded(&mut self, encoded: &Bytes) {
        if self.queued.is_empty() && encoded.len() <= FRAGMENT && self.tail.len() - self.written < FRAGMENT {
            self.tail.extend_from_slice(encoded);
            return;
        }
        if self.written < self.tail.len() {
            // Handed over as it is, not copied; the tail starts a new buffer.
            let mut run = Bytes::from(std::mem::take(&mut self.tail));
            run.advance(self.written);
            self.queued.push_back(run);
        }
        self.tail.clear();
        self.written = 0;
        self.queued.push_back(encoded.clone());
    }

    /// Gathers bytes that are whole WebSocket frames already, copied.
    pub(super) fn push_raw(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
    }

    /// Whether the connection should write before gathering more.
    pub(super) fn is_full(&self) -> bool {
        !self.queued.is_empty() || self.tail.len() - self.written >= FRAGMENT
    }

    /// Writes everything gathered to `io`: `Ready(Ok)` once it is all written, `Pending` (with
    /// `cx` woken when `io` can take more) while some is left. What it wrote stays written,
    /// and the next call goes on from there, so a frame is never cut short.
    pub(super) fn poll_write_to<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = if self.queued.is_empty() {
                ready!(Pin::new(&mut *io).poll_write(cx, &self.tail[self.written..]))?
            } else {
                // A backlog of shared frames goes out in one system call, not one each.
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for chunk in self.queued.iter().take(MAX_SLICES) {
                    slices[count] = IoSlice::new(chunk);
                    count += 1;
                }
                if count < MAX_SLICES && self.written < self.tail.len() {
                    slices[count] = IoSlice::new(&self.tail[self.written..]);
                    count += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        self.tail.clear();
        self.written = 0;
        // A buffer keeps its largest size: one that a stalled client made large is let go.
        if self.tail.capacity() > 4 * FRAGMENT {
            self.tail = Vec::new();
        }
        Pin::new(io).poll_flush(cx)
    }

    /// Marks `n` bytes written, from the front.
    fn consume(&mut self, mut n: usize) {
        self.progress += n as u64;
        while n > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.written += n;
                break;
            };
            let taken = n.min(front.len());
            front.advance(taken);
            n -= taken;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
        // What a slow reader took of the tail is let go, rather than kept until it all is.
        if self.written >= FRAGMENT && self.queued.is_empty() {
            self.tail.drain(..self.written);
            self.written = 0;
        }
    }

    /// [`Outbox::poll_write_to`] as a future (cancel-safe the same way).
    #[cfg(test)]
    pub(super) async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_to(io, cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{FRAGMENT, Outbox, encode_all, fragments};
    use bytes::Bytes;
    use futures_util::StreamExt;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    fn text(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect::<String>())
    }

    /// Gathers `message` as fragments.
    fn push_text(outbox: &mut Outbox, message: &[u8]) {
        for (first, payload) in fragments(message) {
            outbox.push_fragment(first, payload);
        }
    }

    /// Reads `n` unmasked frames off the wire: (fin, opcode, payload) each.
    async fn frames(wire: &mut DuplexStream, n: usize) -> Vec<(bool, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        for _ in 0..n {
            let (b0, b1) = (wire.read_u8().await.unwrap(), wire.read_u8().await.unwrap());
            assert_eq!(b1 & 0x80, 0, "a server's frames are not masked");
            let len = match b1 & 0x7f {
                126 => usize::from(wire.read_u16().await.unwrap()),
                127 => wire.read_u64().await.unwrap() as usize,
                len => usize::from(len),
            };
            let mut payload = vec![0; len];
            wire.read_exact(&mut payload).await.unwrap();
            frames.push((b0 & 0x80 != 0, b0 & 0x0f, payload));
        }
        frames
    }

    #[tokio::test]
    async fn a_long_message_goes_out_in_fragments_of_at_most_the_bound() {
        let (mut ours, mut wire) = tokio::io::duplex(1 << 20);
        let message = text(2 * FRAGMENT + 100);
        let mut outbox = Outbox::default();
        push_text(&mut outbox, &message);
        outbox.write_to(&mut ours).await.unwrap();
        let frames = frames(&mut wire, 3).await;
        let shape: Vec<(bool, u8, usize)> = frames.iter().map(|(fin, op, p)| (*fin, *op, p.len())).collect();
        // Text (0x1), then continuations (0x0); only the last is final.
        assert_eq!(shape, [(false, 1, FRAGMENT), (false, 0, FRAGMENT), (true, 0, 100)]);
        assert_eq!(frames.into_iter().flat_map(|(_, _, payload)| payload).collect::<Vec<u8>>(), message);
    }

    #[test]
    fn a_character_is_never_split_between_fragments() {
        let message = format!("{}é{}", "a".repeat(FRAGMENT - 1), "b".repeat(10));
        let parts: Vec<(u8, &[u8])> = fragments(message.as_bytes()).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1.len(), FRAGMENT - 1, "the cut moves back to the character's start");
        for (_, payload) in &parts {
            assert!(std::str::from_utf8(payload).is_ok(), "each fragment is UTF-8 on its own");
        }
        let whole: Vec<u8> = parts.into_iter().flat_map(|(_, payload)| payload.iter().copied()).collect();
        assert_eq!(whole, message.as_bytes());
    }

    #[test]
    fn a_run_that_is_not_utf8_is_still_cut_at_the_bound() {
        // Continuation bytes only: no character start to move back to.
        let junk = vec![0b1000_0000u8; 2 * FRAGMENT + 5];
        let sizes: Vec<usize> = fragments(&junk).map(|(_, payload)| payload.len()).collect();
        assert_eq!(sizes, [FRAGMENT, FRAGMENT, 5]);
    }

    #[tokio::test]
    async fn a_frame_past_64_kib_has_the_long_length() {
        let (mut ours, wire) = tokio::io::duplex(1 << 20);
        let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
        let message = text(70_000);
        let mut outbox = Outbox::default();
        outbox.push_fragment(0x81, &message);
        assert_eq!(outbox.tail[1], 127, "a 64-bit length follows");
        outbox.write_to(&mut ours).await.unwrap();
        let Some(Ok(Message::Text(got))) = client.next().await else { panic!("a text message") };
        assert_eq!(got.as_bytes(), &message[..]);
    }

    #[test]
    fn an_empty_message_is_one_empty_final_frame() {
        let parts: Vec<(u8, &[u8])> = fragments(b"").collect();
        assert_eq!(parts, [(0x81, &b""[..])]);
    }

    #[tokio::test]
    async fn a_client_reads_every_length_encoding_as_its_message() {
        let (mut ours, wire) = tokio::io::duplex(1 << 20);
        let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
        // 7-bit and 16-bit lengths, a message past 64 KiB (fragmented), and a long shared
        // frame among them.
        let messages = [text(5), text(125), text(126), text(FRAGMENT), text(70_000)];
        let shared = encode_all(&[text(3 * FRAGMENT), Bytes::from_static(b"{\"after\":1}")]);
        let mut outbox = Outbox::default();
        for message in &messages[..3] {
            push_text(&mut outbox, message);
        }
        outbox.write_to(&mut ours).await.unwrap();
        outbox.push_encoded(&shared);
        assert!(outbox.is_full(), "a long shared frame is written before anything else is gathered");
        outbox.write_to(&mut ours).await.unwrap();
        for message in &messages[3..] {
            push_text(&mut outbox, message);
        }
        outbox.write_to(&mut ours).await.unwrap();
        let expected = [&messages[..3], &[text(3 * FRAGMENT), Bytes::from_static(b"{\"after\":1}")], &messages[3..]];
        for message in expected.concat() {
            let Some(Ok(Message::Text(got))) = client.next().await else { panic!("a text message") };
            assert_eq!(got.as_bytes(), &message[..]);
        }
    }

    #[tokio::test]
    async fn a_stalled_outbox_points_at_frames_rather_than_copying_them() {
        let (mut ours, wire) = tokio::io::duplex(1 << 20);
        let frames: Vec<Bytes> = (0..60).map(|i| encode_all(&[text(1000 + i)])).collect();
        let mut outbox = Outbox::default();
        // A client not reading: frames gather. The first fragment's worth is copied...
        let mut copied = 0;
        while outbox.tail.len() < FRAGMENT {
            outbox.push_encoded(&frames[copied]);
            copied += 1;
        }
        assert!(outbox.queued.is_empty());
        // ...and every frame after it is shared, as is a message of the connection's own.
        for frame in &frames[copied..40] {
            outbox.push_encoded(frame);
        }
        push_text(&mut outbox, b"{\"own\":1}");
        for frame in &frames[40..] {
            outbox.push_encoded(frame);
        }
        let shared = outbox.queued.iter().filter(|chunk| frames.iter().any(|f| f.as_ptr() == chunk.as_ptr())).count();
        assert_eq!(shared, frames.len() - copied, "each frame past the first fragment is pointed at");
        assert!(outbox.tail.is_empty(), "nothing copied after them");

        let before = outbox.progress();
        let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
        outbox.write_to(&mut ours).await.unwrap();
        let own = encode_all(&[Bytes::from_static(b"{\"own\":1}")]);
        let all = frames.iter().map(Bytes::len).sum::<usize>() + own.len();
        assert_eq!(outbox.progress() - before, all as u64, "progress counts every byte written");
        for i in 0..frames.len() {
            let Some(Ok(Message::Text(got))) = client.next().await else { panic!("a text message") };
            assert_eq!(got.as_bytes(), &text(1000 + i)[..], "frame {i} in order");
            if i == 39 {
                let Some(Ok(Message::Text(own))) = client.next().await else { panic!("a text message") };
                assert_eq!(own.as_str(), "{\"own\":1}", "the connection's own message where it was gathered");
            }
        }
    }

    /// A socket that takes every piece offered and counts the calls.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        calls: usize,
        /// Most bytes taken per call, and then the next call waits (`Pending`).
        limit: Option<usize>,
        waits: bool,
    }

    impl tokio::io::AsyncWrite for Recorder {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[std::io::IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            slices: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if self.limit.is_some() {
                self.waits = !self.waits;
                if !self.waits {
                    return std::task::Poll::Pending;
                }
            }
            self.calls += 1;
            let mut room = self.limit.unwrap_or(usize::MAX);
            let before = self.bytes.len();
            for slice in slices {
                let take = slice.len().min(room);
                self.bytes.extend_from_slice(&slice[..take]);
                room -= take;
            }
            std::task::Poll::Ready(Ok(self.bytes.len() - before))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_backlog_goes_out_in_one_call_in_order_and_a_trickle_keeps_little() {
        let frames: Vec<Bytes> = (0..40).map(|i| encode_all(&[text(1000 + i)])).collect();
        let mut outbox = Outbox::default();
        for frame in &frames {
            outbox.push_encoded(frame);
        }
        push_text(&mut outbox, b"last");
        assert!(!outbox.queued.is_empty(), "a backlog");
        let mut socket = Recorder::default();
        outbox.write_to(&mut socket).await.unwrap();
        assert_eq!(socket.calls, 1, "the whole backlog in one call");
        let mut expected: Vec<u8> = frames.concat();
        expected.extend_from_slice(&encode_all(&[Bytes::from_static(b"last")]));
        assert_eq!(socket.bytes, expected, "in the order gathered");

        // A reader that takes about a frame per visit, a little behind: what it took of the
        // tail is let go as it goes, not kept until it has it all.
        let frame = &frames[0];
        let mut slow = Recorder { limit: Some(frame.len() - 10), ..Recorder::default() };
        let mut outbox = Outbox::default();
        for _ in 0..200 {
            outbox.push_encoded(frame);
            let visit = std::future::poll_fn(|cx| std::task::Poll::Ready(outbox.poll_write_to(&mut slow, cx))).await;
            assert!(visit.is_pending(), "the reader is always a little behind");
            assert!(outbox.queued.is_empty(), "less than a fragment waits: copied, not queued");
            assert!(outbox.tail.len() < 2 * FRAGMENT, "tail {} bytes", outbox.tail.len());
        }
        assert_eq!(slow.bytes, frame.repeat(200)[..slow.bytes.len()], "what it read is in order");
    }

    #[tokio::test]
    async fn a_write_cut_short_goes_on_where_it_stopped() {
        // Room for part of the message and nobody reading: the first write stalls midway.
        let (mut ours, wire) = tokio::io::duplex(1000);
        let message = text(5000);
        let encoded = encode_all(std::slice::from_ref(&message));
        let mut outbox = Outbox::default();
        outbox.push_encoded(&encoded);
        let stalled = tokio::time::timeout(Duration::from_millis(50), outbox.write_to(&mut ours)).await;
        assert!(stalled.is_err(), "the write waits for the reader");
        assert!(outbox.len() < encoded.len() && !outbox.is_empty(), "part is written, the rest is kept");
        let mut client = WebSocketStream::from_raw_socket(wire, Role::Client, None).await;
        let (written, read) = tokio::join!(outbox.write_to(&mut ours), client.next());
        written.unwrap();
        let Some(Ok(Message::Text(got))) = read else { panic!("a text message") };
        assert_eq!(got.as_bytes(), &message[..], "the message arrives whole");
        assert!(outbox.is_empty());
    }
}
