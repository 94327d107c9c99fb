//! Placement: event id -> one of [`SHARDS`] virtual shards -> its owner by rendezvous
//! (highest-random-weight) hashing over the live members. Every node computes the same
//! owner from the same membership, and when a member leaves only its shards move.
//!
//! The hashes are spelled out (FNV-1a, then the SplitMix64 finaliser) rather than taken
//! from `std`, whose hasher may change between Rust releases: two builds of Tiketi in one
//! cluster during a rolling update must agree on every placement.

use tiketi_engine::{EventId, ReservationId};
use uuid::Uuid;

/// Virtual shards. Fixed: changing it would move every event at once (the `shard_owner`
/// table has exactly this many rows), and a reservation id carries its shard in one byte.
pub const SHARDS: u16 = 256;

/// The shard of an event.
pub fn shard_of(event: EventId) -> u16 {
    (mix(fnv1a(event.uuid().as_bytes())) % u64::from(SHARDS)) as u16
}

/// A new reservation id for `event` that carries the event's shard in its first byte (a
/// random UUIDv4 otherwise, 114 random bits), so a request that names only the reservation
/// (cancel, pay) is routed to the event's owner without reading the store, which trails the
/// owner by a group commit.
pub fn new_reservation_id(event: EventId) -> ReservationId {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[0] = shard_of(event) as u8;
    ReservationId(Uuid::from_bytes(bytes))
}

/// The shard a reservation id names (see [`new_reservation_id`]). Only a hint for ids made
/// before the cluster: the facade falls back to the reservation's event.
pub fn shard_of_reservation(id: ReservationId) -> u16 {
    u16::from(id.uuid().as_bytes()[0])
}

/// The member that should own `shard` among `members` (node ids), or `None` when there are
/// none. Order of `members` does not matter.
pub fn owner_of<'a>(shard: u16, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members.into_iter().max_by_key(|node| (weight(shard, node), *node))
}

/// The rendezvous weight of `node` for `shard`.
fn weight(shard: u16, node: &str) -> u64 {
    mix(fnv1a(node.as_bytes()) ^ mix(u64::from(shard) + 1))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn owners(members: &[&str]) -> Vec<String> {
        (0..SHARDS).map(|s| owner_of(s, members.iter().copied()).expect("members").to_owned()).collect()
    }

    #[test]
    fn every_node_computes_the_same_owner_whatever_the_order() {
        assert_eq!(owners(&["a", "b", "c"]), owners(&["c", "a", "b"]));
        assert_eq!(owner_of(7, std::iter::empty()), None);
    }

    #[test]
    fn shards_spread_over_members() {
        let counts = owners(&["tiketi-0", "tiketi-1", "tiketi-2"]).into_iter().fold(HashMap::new(), |mut m, o| {
            *m.entry(o).or_insert(0) += 1;
            m
        });
        assert_eq!(counts.len(), 3);
        // 256 / 3 ≈ 85 each; rendezvous hashing keeps every share well within a third.
        assert!(counts.values().all(|&n| (55..=115).contains(&n)), "{counts:?}");
    }

    #[test]
    fn when_a_member_leaves_only_its_shards_move() {
        let before = owners(&["a", "b", "c"]);
        let after = owners(&["a", "c"]);
        for (shard, (was, is)) in before.iter().zip(&after).enumerate() {
            if was != "b" {
                assert_eq!(was, is, "shard {shard} moved although its owner stayed");
            }
        }
        // And joining moves shards only to the newcomer.
        let joined = owners(&["a", "b", "c", "d"]);
        for (was, is) in before.iter().zip(&joined) {
            assert!(was == is || is == "d");
        }
    }

    #[test]
    fn a_reservation_id_names_its_events_shard_and_stays_a_uuid_v4() {
        for _ in 0..100 {
            let event = EventId(Uuid::new_v4());
            let id = new_reservation_id(event);
            assert_eq!(shard_of_reservation(id), shard_of(event));
            assert_eq!(id.uuid().get_version_num(), 4);
        }
    }

    #[test]
    fn events_spread_over_shards() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4_000 {
            seen.insert(shard_of(EventId(Uuid::new_v4())));
        }
        assert!(seen.len() > 240, "4,000 events used only {} shards", seen.len());
    }
}
