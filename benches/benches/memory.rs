//! Resident memory per seat: 100 live events of 10,000 seats each (1,000,000 seats) on the
//! embedded store, each event's actor activated, and each one's seat map read once (so the
//! shared seat layout and one cached snapshot exist, as they do for any event people are
//! looking at) and then again after 1,000 holds per event.
//!
//! `cargo bench -p tiketi-benches --bench memory` prints resident bytes per seat at each
//! step (goal: at most 64 bytes per seat with every event live). RSS comes from
//! `/proc/self/statm`; it is measured as growth over the process before any event exists,
//! after the store already holds the 100 event records.

use std::sync::Arc;
use std::time::Duration;
use tiketi_actors::{ActorConfig, Clock, HoldCmd, Runtime, SelectionInput};
use tiketi_engine::{EventId, EventStatus, LayoutSpec, QueueSettings, ReservationId, Timestamp, UserId};
use tiketi_persistence::journal::JournalConfig;
use tiketi_persistence::{EventRecord, MemoryStore, Store};
use uuid::Uuid;

const EVENTS: usize = 100;
/// 10 sections x 20 rows x 50 seats.
const SEATS_PER_EVENT: usize = 10_000;
const HOLDS_PER_EVENT: usize = 1_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm's resident field");
    pages * 4096
}

fn record(n: usize, now: Timestamp) -> EventRecord {
    let day = Duration::from_secs(86_400);
    EventRecord {
        id: EventId(Uuid::from_u128(n as u128 + 1)),
        title: format!("Event {n}"),
        description: String::new(),
        venue: "Arena".into(),
        artist: "Band".into(),
        event_date: now.plus(day * 30),
        sale_start: Timestamp(now.millis() - 60_000),
        sale_end: now.plus(day * 29),
        layout: Some(LayoutSpec::grid(10, 20, 50, 100)),
        layout_id: None,
        ticket_types: Vec::new(),
        per_user_limit: 0,
        hold_ttl: Duration::from_secs(600),
        max_per_reservation: 10,
        status: EventStatus::OnSale,
        queue: QueueSettings::default(),
        queue_seed: [n as u8; 32],
        created_at: now,
        updated_at: now,
    }
}

fn report(step: &str, base: u64) {
    let grown = resident_bytes().saturating_sub(base);
    let seats = (EVENTS * SEATS_PER_EVENT) as f64;
    println!("{step:<58} {:>8.1} MiB  {:>7.1} bytes/seat", grown as f64 / 1048576.0, grown as f64 / seats);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let now = Clock::system().now();
        let store = Arc::new(MemoryStore::new());
        for n in 0..EVENTS {
            store.create_event(record(n, now)).await.expect("event created");
        }
        let actors =
            Runtime::start(store.clone(), JournalConfig::default(), ActorConfig::default(), Clock::system(), None)
                .await
                .expect("the actor runtime starts");
        let directory = actors.directory().clone();
        let base = resident_bytes();
        println!(
            "{EVENTS} events x {SEATS_PER_EVENT} seats = {} seats; growth over the process at start:",
            EVENTS * SEATS_PER_EVENT
        );

        let mut handles = Vec::with_capacity(EVENTS);
        for n in 0..EVENTS {
            handles.push(directory.get(EventId(Uuid::from_u128(n as u128 + 1))).await.expect("activated"));
        }
        report("every actor live (seat maps in memory)", base);

        for handle in &handles {
            let snapshot = handle.seats().await.expect("a seat map");
            assert_eq!(snapshot.statuses.len(), SEATS_PER_EVENT);
        }
        report("+ each seat map read once (layout + one snapshot cached)", base);

        let buyer = UserId(Uuid::from_u128(7));
        for handle in &handles {
            for i in 0..HOLDS_PER_EVENT {
                let seat = format!("S{}-{}-{}", i % 10 + 1, row_label(i / 10 % 20), i / 200 + 1);
                let cmd = HoldCmd {
                    id: ReservationId(Uuid::new_v4()),
                    user: buyer,
                    selection: SelectionInput::Seats(vec![seat]),
                    idempotency: None,
                    admitted: false,
                };
                handle.hold(cmd).await.expect("a free seat holds");
            }
        }
        // Let the journal catch up, so what is measured is what stays.
        for handle in &handles {
            handle.persist().await.expect("flushed");
        }
        report(&format!("+ {HOLDS_PER_EVENT} holds per event, committed"), base);

        for handle in &handles {
            handle.seats().await.expect("a seat map");
        }
        report("+ each seat map read again at its new version", base);
        actors.shutdown().await;
    });
}

/// Row labels of [`LayoutSpec::grid`]: A, B, C, ...
fn row_label(i: usize) -> String {
    ((b'A' + i as u8) as char).to_string()
}
