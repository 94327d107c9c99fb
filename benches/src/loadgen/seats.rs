//! The seat map as the buyers see it: which seats look available. Buyers pick from it
//! without coordinating (two may pick the same seat and one gets a conflict, as at a real
//! on-sale); it learns from holds granted, from conflicts, from re-reading the map, and from
//! the live seat stream when one is followed.
//!
//! Statuses are atomics, so picking and updating never lock; seat ids are fixed at creation.

use super::config::Pick;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The buyers' shared view of the seat map.
pub struct SeatView {
    ids: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    taken: Vec<AtomicBool>,
    available: AtomicUsize,
    /// No seat before this index is available (a hint that keeps front picks cheap once the
    /// front has sold; lowered when a seat there comes back).
    first_free: AtomicUsize,
}

impl SeatView {
    /// From `(id, available)` in map order (best seats first).
    pub fn new(seats: impl IntoIterator<Item = (String, bool)>) -> Self {
        let mut ids = Vec::new();
        let mut taken = Vec::new();
        let mut index = HashMap::new();
        for (id, available) in seats {
            let id: Box<str> = id.into();
            if index.insert(id.clone(), ids.len() as u32).is_none() {
                ids.push(id);
                taken.push(AtomicBool::new(!available));
            }
        }
        let available = taken.iter().filter(|t| !t.load(Ordering::Relaxed)).count();
        Self { ids, index, taken, available: AtomicUsize::new(available), first_free: AtomicUsize::new(0) }
    }

    /// Every seat id, in map order.
    pub fn ids(&self) -> &[Box<str>] {
        &self.ids
    }

    /// Seats that look available.
    pub fn available(&self) -> usize {
        self.available.load(Ordering::Relaxed)
    }

    /// Records what is known of one seat by index.
    pub fn set_index(&self, i: usize, available: bool) {
        let was_taken = self.taken[i].swap(!available, Ordering::Relaxed);
        match (was_taken, available) {
            (true, true) => {
                self.available.fetch_add(1, Ordering::Relaxed);
                self.first_free.fetch_min(i, Ordering::Relaxed);
            }
            (false, false) => {
                self.available.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Records what is known of one seat by id (an unknown id is ignored).
    pub fn set(&self, id: &str, available: bool) {
        if let Some(&i) = self.index.get(id) {
            self.set_index(i as usize, available);
        }
    }

    /// Marks seats taken by index.
    pub fn take(&self, picks: &[u32]) {
        for &i in picks {
            self.set_index(i as usize, false);
        }
    }

    /// Whether a seat looks available.
    pub fn is_available(&self, i: usize) -> bool {
        !self.taken[i].load(Ordering::Relaxed)
    }

    /// Picks `quantity` seats that look available: with [`Pick::Front`] one of the first
    /// `window` available seats, with [`Pick::Random`] any, and then the next available
    /// ones in map order (beside it, in a map listed row by row). `None` when fewer than
    /// `quantity` look available. `rng` is a fresh random number.
    pub fn pick(&self, how: Pick, quantity: u32, window: usize, rng: u64) -> Option<Vec<u32>> {
        let quantity = quantity as usize;
        let total = self.ids.len();
        if total == 0 || self.available() < quantity {
            return None;
        }
        let first = match how {
            Pick::Front => self.front(window.max(1), rng)?,
            Pick::Random | Pick::Best => self.next_available((rng % total as u64) as usize)?,
        };
        let mut picks = Vec::with_capacity(quantity);
        picks.push(first as u32);
        let mut i = first;
        for _ in 1..total {
            if picks.len() == quantity {
                break;
            }
            i = (i + 1) % total;
            if self.is_available(i) {
                picks.push(i as u32);
            }
        }
        (picks.len() == quantity).then_some(picks)
    }

    /// The `k`-th available seat from the front, `k` drawn from `0..window`; advances the
    /// front hint past seats found taken.
    fn front(&self, window: usize, rng: u64) -> Option<usize> {
        let start = self.first_free.load(Ordering::Relaxed).min(self.ids.len());
        let window = window.min(self.available().max(1));
        let mut k = (rng % window as u64) as usize;
        let mut first_found = None;
        let mut last_found = None;
        for i in (start..self.ids.len()).chain(0..start) {
            if !self.is_available(i) {
                continue;
            }
            if first_found.is_none() {
                first_found = Some(i);
                if i > start {
                    let _ = self.first_free.compare_exchange(start, i, Ordering::Relaxed, Ordering::Relaxed);
                }
            }
            last_found = Some(i);
            if k == 0 {
                return Some(i);
            }
            k -= 1;
        }
        last_found
    }

    /// The first available seat at or after `from`, wrapping around.
    fn next_available(&self, from: usize) -> Option<usize> {
        let total = self.ids.len();
        (0..total).map(|d| (from + d) % total).find(|&i| self.is_available(i))
    }
}

/// A small, fast pseudo-random number from a counter and a seed (splitmix64): seat choices
/// need to be spread, not secret.
pub fn mix(n: u64, seed: u64) -> u64 {
    let mut z = n.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: usize) -> SeatView {
        SeatView::new((0..n).map(|i| (format!("S-{i}"), true)))
    }

    #[test]
    fn front_picks_come_from_the_first_available_seats() {
        let v = view(100);
        for r in 0..50 {
            let p = v.pick(Pick::Front, 1, 10, mix(r, 7)).unwrap();
            assert!(p[0] < 10, "{p:?}");
        }
        v.take(&(0..20).collect::<Vec<_>>());
        for r in 0..50 {
            let p = v.pick(Pick::Front, 1, 10, mix(r, 7)).unwrap();
            assert!((20..30).contains(&p[0]), "{p:?}");
        }
    }

    #[test]
    fn a_pick_of_several_takes_the_next_available_seats() {
        let v = view(10);
        v.take(&[1, 3]);
        let p = v.pick(Pick::Front, 3, 1, 0).unwrap();
        assert_eq!(p, [0, 2, 4]);
    }

    #[test]
    fn nothing_is_picked_when_too_few_seats_look_available() {
        let v = view(4);
        v.take(&[0, 1, 2]);
        assert_eq!(v.available(), 1);
        assert_eq!(v.pick(Pick::Random, 2, 4, 9), None);
        assert_eq!(v.pick(Pick::Random, 1, 4, 9), Some(vec![3]));
    }

    #[test]
    fn a_seat_that_comes_back_can_be_picked_again() {
        let v = view(50);
        v.take(&(0..50).collect::<Vec<_>>());
        assert_eq!(v.available(), 0);
        assert_eq!(v.pick(Pick::Front, 1, 5, 1), None);
        v.set("S-3", true);
        assert_eq!(v.available(), 1);
        assert_eq!(v.pick(Pick::Front, 1, 5, 1), Some(vec![3]));
    }

    #[test]
    fn counts_stay_right_when_the_same_news_arrives_twice() {
        let v = view(5);
        v.set("S-1", false);
        v.set("S-1", false);
        v.set("nope", false);
        assert_eq!(v.available(), 4);
        v.set("S-1", true);
        v.set("S-1", true);
        assert_eq!(v.available(), 5);
    }

    #[test]
    fn random_picks_spread_over_the_map() {
        let v = view(100);
        let firsts: std::collections::HashSet<u32> =
            (0..200).map(|r| v.pick(Pick::Random, 1, 0, mix(r, 1)).unwrap()[0]).collect();
        assert!(firsts.len() > 50, "{}", firsts.len());
    }
}
