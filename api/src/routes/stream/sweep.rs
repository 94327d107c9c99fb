//! The sweeper: one task per stream of a local event that writes the frames of every
//! caught-up connection, so that a frame costs each subscriber a visit (a lock, a copy, one
//! `write`) rather than a task's wake-up, poll and channel receive.
//!
//! A connection that has sent its start point joins its event's sweeper ([`Sweepers::join`]);
//! the first to join hands over its own subscription, which the sweeper then follows for
//! all. The sweeper takes every frame waiting, then visits each connection in turn and
//! gathers what it lacks into its outbox, written with one non-blocking write: a connection
//! that falls behind gathers several frames per visit, as it did on its own. It never waits
//! for a client: bytes a socket does not take stay in the connection's outbox for its own
//! task to write, and one that falls more than `stream.channel_capacity` frames behind is
//! handed back to be resynced ([`Handback`]). When the event's frames end (its actor
//! stopped) every connection is handed back to follow it again; the sweeper ends with its
//! last connection.
//!
//! A connection to another node's event keeps reading its own feed (`source.rs`).

use super::link::{Control, Handback, Link};
use super::outbox;
use crate::state::AppState;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tiketi_actors::Frame;
use tiketi_engine::EventId;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use uuid::Uuid;

/// Connections visited between two looks for new frames.
const TAKE_EVERY: usize = 64;
/// Connections visited before the sweeper lets the other tasks of its thread run.
const YIELD_EVERY: usize = 512;

/// A stream of an event: its id changes when the event's actor starts again.
type Key = (EventId, Uuid);

/// A connection handed to a sweeper, with the ticket of that join.
type Joining = (Arc<Link>, u64);

/// This node's sweepers, one per stream of a local event with caught-up connections.
#[derive(Default)]
pub(crate) struct Sweepers(Mutex<HashMap<Key, Entry>>);

/// A running sweeper: where to reach it, and how many connections it serves.
struct Entry {
    control: UnboundedSender<Control>,
    connections: Arc<AtomicUsize>,
}

impl Sweepers {
    /// Hands a connection to its event's sweeper, starting one with `frames` (the
    /// connection's own subscription, which has every frame after the link's seq) if there
    /// is none. The link is marked joined already, with `ticket`.
    pub(super) fn join(
        &self,
        state: &AppState,
        event: EventId,
        stream: Uuid,
        link: Arc<Link>,
        ticket: u64,
        frames: Receiver<Arc<Frame>>,
    ) {
        let key = (event, stream);
        let mut sweepers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Sent under the lock: a sweeper retires under it too, only with no join pending.
        if let Some(entry) = sweepers.get(&key) {
            link.lock().sweeper = Some(entry.control.clone());
            if entry.control.send(Control::Join(link.clone(), ticket)).is_ok() {
                return;
            }
        }
        let (control, joins) = unbounded_channel();
        let floor = {
            let mut joining = link.lock();
            joining.sweeper = Some(control.clone());
            joining.seq
        };
        let capacity = state.settings().stream.channel_capacity.max(1);
        let connections = Arc::new(AtomicUsize::new(1));
        let sweeper = Sweeper {
            state: state.clone(),
            key,
            frames,
            control: joins,
            links: vec![(link, ticket)],
            connections: connections.clone(),
            recent: VecDeque::with_capacity(capacity.min(64)),
            capacity,
            floor,
            latest: floor,
            swept: floor,
            newcomers: false,
            departures: false,
            end: None,
        };
        sweepers.insert(key, Entry { control, connections });
        state.spawn_stream(tokio::task::unconstrained(sweeper.run()));
    }

    /// How many of `event`'s subscriptions its sweepers hold, and how many connections they
    /// serve with them.
    pub(crate) fn serving(&self, event: EventId) -> (usize, usize) {
        let sweepers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sweepers
            .iter()
            .filter(|((of, _), _)| *of == event)
            .fold((0, 0), |(held, served), (_, entry)| (held + 1, served + entry.connections.load(Ordering::Relaxed)))
    }
}

struct Sweeper {
    state: AppState,
    key: Key,
    frames: Receiver<Arc<Frame>>,
    control: UnboundedReceiver<Control>,
    links: Vec<Joining>,
    /// `links.len()`, for the operators' view.
    connections: Arc<AtomicUsize>,
    /// The frames after `floor`, oldest first, at most `capacity`.
    recent: VecDeque<Arc<Frame>>,
    capacity: usize,
    /// The sweeper has every frame after this seq.
    floor: u64,
    /// The seq of the newest frame taken.
    latest: u64,
    /// Every connection had every frame up to this seq at the end of the last sweep.
    swept: u64,
    /// A connection joined that lacks some of the frames taken.
    newcomers: bool,
    /// A connection left: let go of those no longer joined.
    departures: bool,
    /// Why the frames stopped, if they did.
    end: Option<Handback>,
}

impl Sweeper {
    async fn run(mut self) {
        loop {
            while let Ok(control) = self.control.try_recv() {
                self.obey(control);
            }
            if std::mem::take(&mut self.departures) {
                // Once for every departure so far: ten thousand leaving at once cost one pass.
                self.links.retain(|(link, ticket)| {
                    let state = link.lock();
                    state.joined && state.ticket == *ticket
                });
                self.connections.store(self.links.len(), Ordering::Relaxed);
            }
            self.take_frames();
            if self.swept < self.latest || self.newcomers {
                self.sweep().await;
                continue;
            }
            if let Some(why) = self.end {
                self.finish(why);
                return;
            }
            if self.links.is_empty() && self.retire() {
                return;
            }
            tokio::select! {
                frame = self.frames.recv() => match frame {
                    Ok(frame) => self.take(frame),
                    Err(RecvError::Lagged(_)) => self.end = Some(Handback::Behind),
                    Err(RecvError::Closed) => self.end = Some(Handback::Ended),
                },
                Some(control) = self.control.recv() => self.obey(control),
            }
        }
    }

    fn obey(&mut self, control: Control) {
        match control {
            Control::Join(link, ticket) => self.admit((link, ticket)),
            Control::Left => self.departures = true,
        }
    }

    /// Takes a connection from its seq, if the sweeper has every frame after it.
    fn admit(&mut self, (link, ticket): Joining) {
        let state = link.lock();
        if !state.joined || state.ticket != ticket {
            return;
        }
        if state.seq < self.floor {
            link.hand_back(state, Handback::Behind);
            return;
        }
        self.newcomers |= state.seq < self.latest;
        drop(state);
        self.links.push((link, ticket));
        self.connections.store(self.links.len(), Ordering::Relaxed);
    }

    /// Takes every frame waiting.
    fn take_frames(&mut self) {
        while self.end.is_none() {
            match self.frames.try_recv() {
                Ok(frame) => self.take(frame),
                Err(TryRecvError::Empty) => return,
                // The sweeper itself fell behind the channel (its thread starved): everyone
                // starts again from where they are, from the actor's replay.
                Err(TryRecvError::Lagged(_)) => self.end = Some(Handback::Behind),
                Err(TryRecvError::Closed) => self.end = Some(Handback::Ended),
            }
        }
    }

    fn take(&mut self, frame: Arc<Frame>) {
        if frame.seq <= self.latest {
            return;
        }
        // Encoded here, once, rather than by the first visit.
        frame.encoded(outbox::encode_all);
        self.latest = frame.seq;
        self.recent.push_back(frame);
        while self.recent.len() > self.capacity {
            if let Some(oldest) = self.recent.pop_front() {
                self.floor = oldest.seq;
            }
        }
    }

    /// Visits every connection once, gathering and writing what it lacks.
    async fn sweep(&mut self) {
        let target = self.latest;
        self.newcomers = false;
        let mut messages = 0;
        let mut i = 0;
        let mut visited = 0;
        while i < self.links.len() {
            visited += 1;
            if visited % TAKE_EVERY == 0 {
                self.take_frames();
                if visited % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if self.visit(i, &mut messages) {
                i += 1;
            } else {
                self.links.swap_remove(i);
            }
        }
        self.swept = target;
        self.connections.store(self.links.len(), Ordering::Relaxed);
        self.state.metrics().ws.messages.inc_by(messages);
    }

    /// Gathers and writes what connection `i` lacks; false when it is no longer the
    /// sweeper's.
    fn visit(&self, i: usize, messages: &mut u64) -> bool {
        let (link, ticket) = &self.links[i];
        let mut state = link.lock();
        if !state.joined || state.ticket != *ticket {
            return false;
        }
        if state.seq >= self.latest {
            return true;
        }
        if state.seq < self.floor {
            link.hand_back(state, Handback::Behind);
            return false;
        }
        let idle = state.outbox.is_empty();
        let from = self.recent.partition_point(|frame| frame.seq <= state.seq);
        let (event, auth) = (self.key.0, self.state.auth());
        for frame in self.recent.range(from..) {
            *messages += state.gather(frame, event, auth);
        }
        if state.behind > self.capacity {
            link.hand_back(state, Handback::Lagged);
            return false;
        }
        // Bytes waiting already are the task's to write (it was told, or is at it).
        if idle {
            match state.try_flush() {
                Ok(true) => {}
                Ok(false) => {
                    drop(state);
                    link.wake.notify_one();
                }
                Err(_) => {
                    link.hand_back(state, Handback::Failed);
                    return false;
                }
            }
        }
        true
    }

    /// Leaves the registry unless a connection is joining: true when it did.
    fn retire(&mut self) -> bool {
        let sweepers = self.state.sweepers();
        let mut map = sweepers.0.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match self.control.try_recv() {
                Ok(Control::Join(link, ticket)) => {
                    drop(map);
                    self.admit((link, ticket));
                    return false;
                }
                Ok(Control::Left) => {}
                Err(_) => break,
            }
        }
        map.remove(&self.key);
        true
    }

    /// The frames ended: hands every connection back, and those still joining.
    fn finish(&mut self, why: Handback) {
        {
            let sweepers = self.state.sweepers();
            let mut map = sweepers.0.lock().unwrap_or_else(PoisonError::into_inner);
            map.remove(&self.key);
        }
        // Nobody can send any more: what was sent is here.
        self.control.close();
        while let Ok(control) = self.control.try_recv() {
            if let Control::Join(link, ticket) = control {
                self.links.push((link, ticket));
            }
        }
        for (link, ticket) in self.links.drain(..) {
            let state = link.lock();
            if state.joined && state.ticket == ticket {
                link.hand_back(state, why);
            }
        }
    }
}
