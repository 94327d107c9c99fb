//! The after-load consistency check, through the API only: the seat map, every buyer's
//! reservations, and what the generator was told it got must agree. No seat may be in two
//! live reservations, every live reservation's seats must show its status on the map,
//! every hold the server granted must be listed, and (on an event the generator created)
//! every seat the map shows taken must belong to a listed reservation.

use super::api::{strings_at, text_at};
use super::config::Endpoints;
use super::error::LoadgenError;
use super::run::{Ledger, Run};
use super::setup::seat_map;
use super::template::Vars;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest list of examples kept per problem.
const EXAMPLES: usize = 50;

/// A reservation as a buyer's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Id.
    pub id: String,
    /// Status.
    pub status: String,
    /// Seat ids.
    pub seats: Vec<String>,
}

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Consistency {
    /// No problem found.
    pub ok: bool,
    /// Seats on the map.
    pub seats_total: u64,
    /// Seats the map shows available.
    pub available: u64,
    /// Seats the map shows held.
    pub held: u64,
    /// Seats the map shows sold.
    pub sold: u64,
    /// Seats in any other status (blocked).
    pub other: u64,
    /// The buyers' reservations in this event that are held.
    pub held_reservations: u64,
    /// ... and confirmed.
    pub confirmed_reservations: u64,
    /// Seats in held reservations.
    pub seats_in_held_reservations: u64,
    /// Seats in confirmed reservations.
    pub seats_in_confirmed_reservations: u64,
    /// Holds the server granted (201) during the run.
    pub granted_holds: u64,
    /// Seats taken on the map but in no listed live reservation.
    pub unaccounted_seats: u64,
    /// Seats in two live reservations (sold twice).
    pub double_sold: Vec<String>,
    /// Seats granted to two holds that are both still live.
    pub double_granted: Vec<String>,
    /// A live reservation whose seat shows another status on the map.
    pub status_mismatches: Vec<String>,
    /// Granted holds missing from their buyer's list.
    pub missing_reservations: Vec<String>,
    /// One line per kind of problem, with counts.
    pub problems: Vec<String>,
}

/// Checks the seat map (`(id, status)`), the buyers' listed reservations in the event, and
/// the ledger against each other. `expected_seats` is the seat count of an event the
/// generator created (then every taken seat must be accounted for).
pub fn check(
    map: &[(String, String)],
    listed: &[Listed],
    ledger: &Ledger,
    e: &Endpoints,
    expected_seats: Option<u64>,
) -> Consistency {
    let mut c =
        Consistency { seats_total: map.len() as u64, granted_holds: ledger.holds.len() as u64, ..Default::default() };
    let status: HashMap<&str, &str> = map.iter().map(|(id, s)| (id.as_str(), s.as_str())).collect();
    for (_, s) in map {
        match s.as_str() {
            s if s == e.seat_available => c.available += 1,
            s if s == e.seat_held => c.held += 1,
            s if s == e.seat_sold => c.sold += 1,
            _ => c.other += 1,
        }
    }
    let is_live = |s: &str| s == e.reservation_held || s == e.reservation_confirmed;
    let by_id: HashMap<&str, &Listed> = listed.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let (mut double, mut mismatches) = (Vec::new(), Vec::new());
    for r in listed.iter().filter(|r| is_live(&r.status)) {
        let confirmed = r.status == e.reservation_confirmed;
        if confirmed {
            c.confirmed_reservations += 1;
            c.seats_in_confirmed_reservations += r.seats.len() as u64;
        } else {
            c.held_reservations += 1;
            c.seats_in_held_reservations += r.seats.len() as u64;
        }
        let want = if confirmed { &e.seat_sold } else { &e.seat_held };
        for seat in &r.seats {
            if let Some(first) = owner.insert(seat, &r.id) {
                double.push(format!("{seat}: reservations {first} and {}", r.id));
            }
            let on_map = status.get(seat.as_str()).copied().unwrap_or("missing");
            if on_map != want {
                mismatches.push(format!("{seat}: reservation {} is {} but the map says {on_map}", r.id, r.status));
            }
        }
    }
    for id in &ledger.confirmed {
        match by_id.get(id.as_str()) {
            Some(r) if r.status != e.reservation_confirmed => {
                mismatches.push(format!("reservation {id}: its payment was confirmed but it is {}", r.status));
            }
            _ => {}
        }
    }
    // A granted hold that is not listed counts as live: it may hold its seats unseen.
    let mut granted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut missing = Vec::new();
    for g in &ledger.holds {
        let live = match by_id.get(g.reservation.as_str()) {
            Some(r) => is_live(&r.status),
            None => {
                missing.push(format!("{} (buyer {})", g.reservation, g.buyer));
                true
            }
        };
        if live {
            for seat in &g.seats {
                granted.entry(seat).or_default().push(&g.reservation);
            }
        }
    }
    let double_granted: Vec<String> = granted
        .iter()
        .filter(|(_, holds)| holds.len() > 1)
        .map(|(seat, holds)| format!("{seat}: granted to {}", holds.join(", ")))
        .collect();
    let accounted = owner.keys().filter(|s| status.get(*s).is_some_and(|st| *st != e.seat_available)).count() as u64;
    c.unaccounted_seats = (c.held + c.sold).saturating_sub(accounted);
    let mut problem = |list: &[String], what: &str| {
        if !list.is_empty() {
            c.problems.push(format!("{} {what}", list.len()));
        }
    };
    problem(&double, "seats in two live reservations");
    problem(&double_granted, "seats granted to two live holds");
    problem(&mismatches, "seat statuses that disagree with their reservation");
    problem(&missing, "granted holds missing from the buyers' lists");
    if let Some(expected) = expected_seats {
        if c.unaccounted_seats > 0 {
            c.problems.push(format!("{} taken seats belong to no listed reservation", c.unaccounted_seats));
        }
        if c.seats_total != expected {
            c.problems.push(format!("the map has {} seats, the event was created with {expected}", c.seats_total));
        }
    }
    let cap = |mut v: Vec<String>| {
        v.truncate(EXAMPLES);
        v
    };
    c.double_sold = cap(double);
    c.double_granted = cap(double_granted);
    c.status_mismatches = cap(mismatches);
    c.missing_reservations = cap(missing);
    c.ok = c.problems.is_empty();
    c
}

/// Reads the map and every buyer's reservations through the API and checks them. The lists
/// may trail the holds (Tiketi's store trails its actors by one group commit, and after a
/// burst against PostgreSQL by the write-behind backlog), so a granted hold missing from a
/// list is looked for again for up to a minute.
pub async fn verify(run: &Arc<Run>, expected_seats: Option<u64>) -> Result<Consistency, LoadgenError> {
    let map = seat_map(&run.api, &run.event).await?;
    let mut lists: Vec<Vec<Listed>> = vec![Vec::new(); run.buyers.len()];
    let mut todo: Vec<usize> = (0..run.buyers.len()).collect();
    const ATTEMPTS: u32 = 120;
    for attempt in 0..ATTEMPTS {
        for (buyer, list) in fetch(run, &todo).await? {
            lists[buyer] = list;
        }
        todo = unlisted(run, &lists);
        if todo.is_empty() || attempt == ATTEMPTS - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let listed: Vec<Listed> = lists.into_iter().flatten().collect();
    let ledger = run.ledger.lock().unwrap_or_else(|e| e.into_inner());
    Ok(check(&map, &listed, &ledger, &run.api.endpoints, expected_seats))
}

/// The buyers with a granted hold missing from their list.
fn unlisted(run: &Run, lists: &[Vec<Listed>]) -> Vec<usize> {
    let listed: HashSet<&str> = lists.iter().flatten().map(|r| r.id.as_str()).collect();
    let ledger = run.ledger.lock().unwrap_or_else(|e| e.into_inner());
    let mut buyers: Vec<usize> =
        ledger.holds.iter().filter(|g| !listed.contains(g.reservation.as_str())).map(|g| g.buyer).collect();
    buyers.sort_unstable();
    buyers.dedup();
    buyers
}

/// The reservations in this event of each buyer in `buyers`.
async fn fetch(run: &Arc<Run>, buyers: &[usize]) -> Result<Vec<(usize, Vec<Listed>)>, LoadgenError> {
    let gate = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for &buyer in buyers {
        let (run, gate) = (run.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            let url =
                run.api.url(&run.api.templates.my_reservations_path, &Vars { event: &run.event, ..Vars::default() });
            let auth = Some(&run.buyers[buyer]);
            let (_, json) = run.api.setup_call("listing a buyer's reservations", Method::GET, url, auth, None).await?;
            Ok::<_, LoadgenError>((buyer, parse_list(&json, &run.api.endpoints, &run.event)))
        });
    }
    let mut out = Vec::with_capacity(buyers.len());
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.map_err(|e| LoadgenError::Config(format!("a listing task failed: {e}")))??);
    }
    Ok(out)
}

/// The reservations of `event` in a my-reservations answer.
fn parse_list(json: &Value, e: &Endpoints, event: &str) -> Vec<Listed> {
    let Some(items) = json.pointer(&e.reservations_pointer).and_then(Value::as_array) else { return Vec::new() };
    items
        .iter()
        .filter(|r| text_at(r, &e.reservation_event_pointer).is_none_or(|ev| ev == event))
        .filter_map(|r| {
            Some(Listed {
                id: text_at(r, &e.reservation_id_pointer)?,
                status: text_at(r, &e.reservation_status_pointer).unwrap_or_default(),
                seats: strings_at(r, &e.reservation_seats_pointer),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::run::Granted;
    use serde_json::json;

    fn map(statuses: &[(&str, &str)]) -> Vec<(String, String)> {
        statuses.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn listed(id: &str, status: &str, seats: &[&str]) -> Listed {
        Listed { id: id.into(), status: status.into(), seats: seats.iter().map(|s| s.to_string()).collect() }
    }

    fn granted(buyer: usize, id: &str, seats: &[&str]) -> Granted {
        Granted { buyer, reservation: id.into(), seats: seats.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn a_consistent_sell_out_passes() {
        let e = Endpoints::default();
        let m = map(&[("A", "held"), ("B", "sold"), ("C", "held"), ("D", "available")]);
        let l = [listed("r1", "held", &["A", "C"]), listed("r2", "confirmed", &["B"]), listed("r3", "expired", &["D"])];
        let ledger = Ledger {
            holds: vec![granted(0, "r1", &["A", "C"]), granted(1, "r2", &["B"]), granted(1, "r3", &["D"])],
            confirmed: ["r2".to_owned()].into(),
        };
        let c = check(&m, &l, &ledger, &e, Some(4));
        assert!(c.ok, "{c:?}");
        assert_eq!((c.available, c.held, c.sold), (1, 2, 1));
        assert_eq!((c.held_reservations, c.seats_in_held_reservations), (1, 2));
        assert_eq!((c.confirmed_reservations, c.seats_in_confirmed_reservations), (1, 1));
        assert_eq!(c.unaccounted_seats, 0);
    }

    #[test]
    fn a_seat_in_two_live_reservations_is_a_double_sale() {
        let e = Endpoints::default();
        let m = map(&[("A", "held")]);
        let l = [listed("r1", "held", &["A"]), listed("r2", "held", &["A"])];
        let ledger = Ledger { holds: vec![granted(0, "r1", &["A"]), granted(1, "r2", &["A"])], ..Ledger::default() };
        let c = check(&m, &l, &ledger, &e, Some(1));
        assert!(!c.ok);
        assert_eq!(c.double_sold.len(), 1);
        assert_eq!(c.double_granted.len(), 1);
    }

    #[test]
    fn a_seat_held_again_after_its_first_hold_lapsed_is_not_a_double_sale() {
        let e = Endpoints::default();
        let m = map(&[("A", "held")]);
        let l = [listed("r1", "expired", &["A"]), listed("r2", "held", &["A"])];
        let ledger = Ledger { holds: vec![granted(0, "r1", &["A"]), granted(1, "r2", &["A"])], ..Ledger::default() };
        assert!(check(&m, &l, &ledger, &e, Some(1)).ok);
    }

    #[test]
    fn a_map_that_disagrees_with_a_reservation_is_reported() {
        let e = Endpoints::default();
        let m = map(&[("A", "available"), ("B", "held")]);
        let l = [listed("r1", "confirmed", &["A", "B"])];
        let ledger = Ledger { holds: vec![granted(0, "r1", &["A", "B"])], confirmed: ["r1".to_owned()].into() };
        let c = check(&m, &l, &ledger, &e, Some(2));
        assert!(!c.ok);
        assert_eq!(c.status_mismatches.len(), 2, "{c:?}");
    }

    #[test]
    fn a_granted_hold_missing_from_the_lists_is_reported() {
        let e = Endpoints::default();
        let m = map(&[("A", "held")]);
        let ledger = Ledger { holds: vec![granted(3, "r9", &["A"])], ..Ledger::default() };
        let c = check(&m, &[], &ledger, &e, Some(1));
        assert_eq!(c.missing_reservations, ["r9 (buyer 3)"]);
        assert_eq!(c.unaccounted_seats, 1);
        assert!(!c.ok);
    }

    #[test]
    fn taken_seats_nobody_holds_fail_only_on_an_event_the_generator_created() {
        let e = Endpoints::default();
        let m = map(&[("A", "held"), ("B", "available")]);
        let c = check(&m, &[], &Ledger::default(), &e, None);
        assert!(c.ok && c.unaccounted_seats == 1, "{c:?}");
        assert!(!check(&m, &[], &Ledger::default(), &e, Some(2)).ok);
    }

    #[test]
    fn lists_are_filtered_to_the_event() {
        let e = Endpoints::default();
        let json = json!({"data": [
            {"id": "r1", "eventId": "e1", "status": "held", "seatIds": ["A"]},
            {"id": "r2", "eventId": "e2", "status": "held", "seatIds": ["B"]},
        ]});
        assert_eq!(parse_list(&json, &e, "e1"), [listed("r1", "held", &["A"])]);
    }
}
