//! The admin request that creates an on-sale event, shared by the end-to-end benchmarks
//! (included with `#[path]`, so the `tiketi-benches` library stays std-only).

use serde_json::{Value, json};

/// `POST /admin/events` for an event on sale since a minute ago: `sections` x `rows` x
/// `seats`, one price tier, no per-user limit, holds lasting `hold_ttl_secs`.
pub fn on_sale_event(title: &str, (sections, rows, seats): (u32, u32, u32), hold_ttl_secs: u64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).expect("formats");
    let sections: Vec<Value> = (1..=sections)
        .map(|s| {
            let rows: Vec<Value> = (1..=rows).map(|r| json!({ "label": format!("R{r}"), "seats": seats })).collect();
            json!({ "name": format!("S{s}"), "tier": 0, "rows": rows })
        })
        .collect();
    json!({
        "title": title,
        "venue": "Bench Hall",
        "artist": "Bench Artist",
        "eventDate": fmt(now + time::Duration::days(30)),
        "saleStart": fmt(now - time::Duration::minutes(1)),
        "saleEnd": fmt(now + time::Duration::days(29)),
        "layout": { "tiers": [{ "name": "T1", "price": 1000 }], "sections": sections },
        "perUserLimit": 0,
        "holdTtlSeconds": hold_ttl_secs,
    })
}
