//! A zombie: a node SIGSTOPped past its lease, whose shards move to the others, then
//! SIGCONTed. Every write it attempts for those shards is refused by the epoch check, it
//! stops serving them, and what the new owners decided stands.

use crate::nodes::{Nodes, node_id, seat_ids};
use crate::support::{eventually, register, sql};
use reqwest::StatusCode;
use std::time::Duration;
use uuid::Uuid;

const ZOMBIE: usize = 2;
const HOLD_TTL_SECS: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_node_is_fenced_out_of_the_shards_it_lost_and_stops_serving_them() {
    let nodes = Nodes::start(3, "zombie").await;
    let db = sql(&nodes.db).await;
    let buyer = register(&nodes.client, nodes.node(0), "zombie-buyer@example.com").await;
    let other = register(&nodes.client, nodes.node(1), "zombie-other@example.com").await;

    // Events the zombie-to-be owns.
    let view = nodes.view(0).await;
    let mut theirs: Vec<Uuid> = Vec::new();
    while theirs.len() < 3 {
        let extra = serde_json::json!({ "perUserLimit": 0, "holdTtlSeconds": HOLD_TTL_SECS });
        let event = nodes.create_event(0, 1, extra).await;
        if Nodes::owner(&view, event) == node_id(ZOMBIE) {
            theirs.push(event);
        }
    }
    let epochs: Vec<u64> = theirs.iter().map(|&e| Nodes::epoch(&view, e)).collect();

    // Holds on the zombie's events, through the zombie, lapsing while it is stopped: when it
    // wakes, its actors' timers expire them and it tries to write that.
    let mut first_holds = Vec::new();
    for &event in &theirs {
        let seats = seat_ids(&nodes, event).await;
        first_holds.push(nodes.hold(ZOMBIE, &buyer, event, &[&seats[0], &seats[1]]).await);
    }
    eventually("the holds to be durable", Duration::from_secs(10), || async {
        let n: i64 =
            db.query_one("SELECT count(*) FROM reservations WHERE id = ANY($1)", &[&first_holds]).await.ok()?.get(0);
        (n == first_holds.len() as i64).then_some(())
    })
    .await;

    nodes.node(ZOMBIE).signal("STOP");
    // Its shards move: the others take them at a higher epoch once its lease lapses.
    eventually("the zombie's shards to move", Duration::from_secs(20), || async {
        let view = nodes.view(0).await;
        let moved = theirs.iter().zip(&epochs).all(|(&event, &epoch)| {
            Nodes::owner(&view, event) != node_id(ZOMBIE) && Nodes::epoch(&view, event) > epoch
        });
        moved.then_some(())
    })
    .await;
    // The new owners serve the events: an admin lengthens the hold time and a second buyer
    // holds other seats, through node 0 (the first holds keep their expiry).
    let mut second_holds = Vec::new();
    for &event in &theirs {
        let res = nodes
            .client
            .put(nodes.node(0).url(&format!("/admin/events/{event}")))
            .bearer_auth(&nodes.admin)
            .json(&serde_json::json!({ "holdTtlSeconds": 600 }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
        let seats = seat_ids(&nodes, event).await;
        second_holds.push(nodes.hold(0, &other, event, &[&seats[5]]).await);
    }
    // Let the first holds lapse while the zombie sleeps.
    tokio::time::sleep(Duration::from_secs(HOLD_TTL_SECS + 1)).await;
    let seq_before: Vec<i64> = {
        let mut seqs = Vec::new();
        for event in &theirs {
            seqs.push(db.query_one("SELECT seq FROM events WHERE id = $1", &[event]).await.unwrap().get(0));
        }
        seqs
    };
    nodes.node(ZOMBIE).signal("CONT");
    let cont_at = std::time::Instant::now();

    // It tries to write (its timers expire the first holds) and every such write is
    // refused by the epoch check, and it finds out it lost the leases.
    eventually("the zombie's writes to be fenced", Duration::from_secs(20), || async {
        let fenced = nodes.metric(ZOMBIE, "tiketi_journal_fenced_writes_total").await;
        let lost = nodes.metric(ZOMBIE, "tiketi_cluster_lease_losses_total").await;
        (fenced >= 1.0 && lost >= 1.0).then_some(())
    })
    .await;
    let rejected = nodes.metric(ZOMBIE, "tiketi_journal_rejected_total").await;
    let fenced = nodes.metric(ZOMBIE, "tiketi_journal_fenced_writes_total").await;
    assert_eq!(rejected, fenced, "every write the zombie had refused was refused by the epoch check");
    // It stops serving them from its stale actors: reads through it show what the new
    // owners decided (the second buyer's holds), and a hold sent to it is served under a
    // current epoch. (Once its heartbeat is back it is a member again, and placement may
    // give it the shards back, at a new epoch, loaded from PostgreSQL.)
    for &event in &theirs {
        let seats = seat_ids(&nodes, event).await;
        let map: serde_json::Value = nodes
            .client
            .get(nodes.node(ZOMBIE).url(&format!("/events/{event}/seats")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status =
            |id: &str| map["seats"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"].clone();
        assert_eq!(status(&seats[5]), "held", "the zombie answered from its stale seat map: {event}");
        second_holds.push(nodes.hold(ZOMBIE, &other, event, &[&seats[6]]).await);
    }
    // Its stale actors are gone: any actor of those events live on it now started after it
    // woke up.
    let woke = cont_at.elapsed().as_secs();
    let res = nodes.client.get(nodes.node(ZOMBIE).url("/admin/actors")).bearer_auth(&nodes.admin).send().await;
    let actors: serde_json::Value = res.unwrap().json().await.unwrap();
    for actor in actors["data"].as_array().unwrap() {
        let event: Uuid = actor["eventId"].as_str().unwrap().parse().unwrap();
        if theirs.contains(&event) {
            assert!(actor["uptimeSeconds"].as_u64().unwrap() <= woke, "a stale actor of {event} still runs: {actor}");
        }
    }
    // What the new owners decided stands: their holds are live, the store's seq of each
    // event only moved forward, and the first holds ended (expired by the new owners).
    eventually("the new owners' holds to be durable and live", Duration::from_secs(10), || async {
        let rows = db.query("SELECT status FROM reservations WHERE id = ANY($1)", &[&second_holds]).await.ok()?;
        (rows.len() == second_holds.len() && rows.iter().all(|r| r.get::<_, String>(0) == "held")).then_some(())
    })
    .await;
    for (event, before) in theirs.iter().zip(seq_before) {
        let now: i64 = db.query_one("SELECT seq FROM events WHERE id = $1", &[event]).await.unwrap().get(0);
        assert!(now >= before, "event {event}: seq went back from {before} to {now}");
    }
    eventually("the first holds to have expired", Duration::from_secs(10), || async {
        let rows = db.query("SELECT status FROM reservations WHERE id = ANY($1)", &[&first_holds]).await.ok()?;
        rows.iter().all(|r| r.get::<_, String>(0) == "expired").then_some(())
    })
    .await;
    // And the zombie rejoins as an ordinary member.
    nodes.settled().await;
}
