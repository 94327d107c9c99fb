//! The live stream between nodes over a real Redis: what one node's actors publish reaches
//! another node's followers in order, and whatever breaks the chain (a dropped frame, a new
//! stream, Redis going away) makes the followers resync instead of showing wrong seats.
//!
//! Starts `redis-server` from the machine (`scripts/test.sh` installs it); the tests fail,
//! rather than skip, without it.

use bytes::Bytes;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{Frame, FrameSink, Notice};
use tiketi_cluster::{ClusterMetrics, Fanout};
use tiketi_engine::{EventId, UserId};
use tiketi_testkit::RedisServer;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, timeout};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

/// One node's end of the stream, with its own metrics.
struct Node {
    fanout: Fanout,
    metrics: ClusterMetrics,
}

impl Node {
    fn new(redis: &RedisServer) -> Self {
        let metrics = ClusterMetrics::default();
        let fanout = Fanout::new(&redis.url(), 64, &metrics).expect("a Redis URL");
        Self { fanout, metrics }
    }

    fn sink(&self) -> Arc<dyn FrameSink> {
        self.fanout.sink()
    }

    /// The value of one of its `tiketi_cluster_*` counters.
    fn counter(&self, name: &str) -> u64 {
        let mut registry = Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoding to a String");
        let line = format!("{name}_total ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in\n{text}"))
    }
}

fn frame(seq: u64) -> Arc<Frame> {
    Arc::new(Frame::new(
        seq,
        vec![Bytes::from(format!(r#"{{"type":"seats","seq":{seq},"changes":[]}}"#))],
        vec![Notice::ReservationExpired { user: UserId(Uuid::nil()), reservation: Uuid::from_u128(7).into() }],
    ))
}

async fn next(feed: &mut tiketi_cluster::fanout::Feed) -> Result<Arc<Frame>, RecvError> {
    timeout(WAIT, feed.recv()).await.expect("a frame or a close within the deadline")
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn frames_published_for_an_event_reach_another_nodes_follower_in_order() {
    let redis = RedisServer::start();
    let (owner, follower) = (Node::new(&redis), Node::new(&redis));
    let (event, stream) = (EventId(Uuid::new_v4()), Uuid::new_v4());
    let other_event = EventId(Uuid::new_v4());

    let mut feed = follower.fanout.hub().subscribe(event).await.expect("subscribed");
    // The owner's start point: seq 3 of its stream.
    assert!(feed.bind(stream, 3));
    let sink = owner.sink();
    sink.publish(other_event, Uuid::new_v4(), 0, &frame(1));
    // A frame from before the start is passed on too (the connection skips it by seq).
    for (prev, seq) in [(2, 3), (3, 5), (5, 6), (6, 9)] {
        sink.publish(event, stream, prev, &frame(seq));
    }
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let frame = next(&mut feed).await.expect("a frame");
        assert_eq!(frame.messages, self::frame(frame.seq).messages);
        assert_eq!(frame.notices, self::frame(frame.seq).notices);
        seqs.push(frame.seq);
    }
    assert_eq!(seqs, [3, 5, 6, 9]);
    assert!(feed.try_recv().is_err(), "the other event's frame is not this feed's");
    eventually("the publisher counting its frames", || owner.counter("stream_frames_published") >= 5).await;
    assert_eq!(follower.counter("stream_resyncs"), 0);

    // A second follower of the same event shares the subscription; the last one to go
    // unsubscribes.
    let second = follower.fanout.hub().subscribe(event).await.expect("subscribed");
    assert!(second.bind(stream, 9));
    assert_eq!(follower.fanout.hub().followed(), 1);
    drop((feed, second));
    eventually("the hub forgetting the event", || follower.fanout.hub().followed() == 0).await;
}

#[tokio::test]
async fn a_frame_that_does_not_continue_the_stream_makes_the_followers_resync() {
    let redis = RedisServer::start();
    let (owner, follower) = (Node::new(&redis), Node::new(&redis));
    let (event, stream) = (EventId(Uuid::new_v4()), Uuid::new_v4());
    let sink = owner.sink();

    let mut feed = follower.fanout.hub().subscribe(event).await.expect("subscribed");
    assert!(feed.bind(stream, 10));
    sink.publish(event, stream, 10, &frame(11));
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Ok(11));
    // Frame 12 was lost: 13 names 12 as the frame before it.
    sink.publish(event, stream, 12, &frame(13));
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Err(RecvError::Closed));
    assert_eq!(follower.counter("stream_resyncs"), 1);

    // Starting over: a new feed bound to the owner's new start follows again.
    let mut feed = follower.fanout.hub().subscribe(event).await.expect("subscribed");
    assert!(feed.bind(stream, 13));
    sink.publish(event, stream, 13, &frame(14));
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Ok(14));

    // The event's actor restarts (here or on another node): a new stream cuts again.
    sink.started(event, Uuid::new_v4(), 14);
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Err(RecvError::Closed));
    assert_eq!(follower.counter("stream_resyncs"), 2);
}

#[tokio::test]
async fn losing_redis_makes_the_followers_resync_and_following_resumes_when_it_is_back() {
    let redis = RedisServer::start();
    let port = redis.port();
    let (owner, follower) = (Node::new(&redis), Node::new(&redis));
    let (event, stream) = (EventId(Uuid::new_v4()), Uuid::new_v4());
    let sink = owner.sink();

    let mut feed = follower.fanout.hub().subscribe(event).await.expect("subscribed");
    assert!(feed.bind(stream, 0));
    sink.publish(event, stream, 0, &frame(1));
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Ok(1));

    drop(redis);
    assert_eq!(next(&mut feed).await.map(|f| f.seq), Err(RecvError::Closed));
    assert!(!follower.fanout.hub().is_connected());
    drop(feed);

    let _redis = RedisServer::on(port);
    eventually("the hub reconnecting", || follower.fanout.hub().is_connected()).await;
    let mut feed = follower.fanout.hub().subscribe(event).await.expect("subscribed again");
    assert!(feed.bind(stream, 1));
    // The publisher reconnects on its own; frames it could not publish meanwhile are
    // dropped (and counted), so keep publishing until one arrives.
    let deadline = Instant::now() + WAIT;
    let mut seq = 1;
    let received = loop {
        assert!(Instant::now() < deadline, "no frame arrived after Redis came back");
        sink.publish(event, stream, seq, &frame(seq + 1));
        seq += 1;
        if let Ok(received) = timeout(Duration::from_millis(200), feed.recv()).await {
            break received;
        }
    };
    // The first frame through may follow dropped ones: then it is a gap, and the follower
    // is told to resync; either way it is never shown a frame out of order.
    match received {
        Ok(frame) => assert_eq!(frame.seq, 2),
        Err(e) => assert_eq!(e, RecvError::Closed),
    }
}
