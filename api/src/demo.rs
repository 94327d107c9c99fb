//! Demo data for zero-setup runs: a 2,000-seat hall and an event on sale now with a
//! standing-room ticket type.

use crate::state::AppState;
use std::time::Duration;
use tiketi_engine::{EventId, EventStatus, LayoutSpec, TicketTypeId, TicketTypeSpec};
use tiketi_persistence::{EventFilter, EventRecord, LayoutRecord, StoreError};
use uuid::Uuid;

/// Seeds the demo venue and event unless the store already has events.
pub async fn seed(state: &AppState) -> Result<Option<EventId>, StoreError> {
    let now = state.now();
    let existing = state.store().list_events(&EventFilter { page: 1, limit: 1, now, ..Default::default() }).await?;
    if existing.total > 0 {
        return Ok(None);
    }
    // 4 sections x 10 rows x 50 seats; section S1 is the most expensive.
    let spec = LayoutSpec::grid(4, 10, 50, 40_000);
    let layout = LayoutRecord {
        id: Uuid::new_v4(),
        name: "Demo Hall".into(),
        seat_count: 2_000,
        spec: spec.clone(),
        created_at: now,
    };
    state.store().create_layout(layout.clone()).await?;
    let day = Duration::from_secs(24 * 3600);
    let event = EventRecord {
        id: EventId(Uuid::new_v4()),
        title: "Tiketi Live: Demo Night".into(),
        description: "A demo on-sale: 2,000 numbered seats and 500 standing tickets.".into(),
        venue: "Demo Hall".into(),
        artist: "The Actors".into(),
        event_date: now.plus(day * 30),
        sale_start: now,
        sale_end: now.plus(day * 29),
        layout: Some(spec),
        layout_id: Some(layout.id),
        ticket_types: vec![TicketTypeSpec {
            id: TicketTypeId(Uuid::new_v4()),
            name: "Standing".into(),
            price: 30_000,
            capacity: 500,
        }],
        per_user_limit: 4,
        hold_ttl: Duration::from_secs(300),
        max_per_reservation: 4,
        queue: tiketi_engine::QueueSettings::default(),
        queue_seed: crate::auth::random_seed(),
        status: EventStatus::OnSale,
        created_at: now,
        updated_at: now,
    };
    state.store().create_event(event.clone()).await?;
    Ok(Some(event.id))
}
