//! The compact per-event seat map.
//!
//! Seats live in flat arrays indexed by [`SeatIndex`]: one status byte and one tier byte
//! per seat, plus one small record per row. A seat id such as `VIP-A-12` is never stored:
//! it is resolved by looking up its `SECTION-ROW` prefix (one hash lookup per row, not per
//! seat) and adding the number to the row's first index. A 100,000-seat event costs about
//! 200 KB of seat state.

use crate::SeatStatus;
use crate::layout::{LayoutError, LayoutSpec, PriceTier};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The position of a seat in its event's seat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeatIndex(pub u32);

impl SeatIndex {
    fn at(self) -> usize {
        self.0 as usize
    }
}

/// How many seats are in each status. `available + held + sold + blocked` is always the
/// number of seats in the map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatCounts {
    /// On sale.
    pub available: u32,
    /// Held by a reservation awaiting payment.
    pub held: u32,
    /// Paid for.
    pub sold: u32,
    /// Off sale.
    pub blocked: u32,
}

impl SeatCounts {
    /// Every seat, whatever its status.
    pub const fn total(&self) -> u32 {
        self.available + self.held + self.sold + self.blocked
    }

    fn slot(&mut self, status: SeatStatus) -> &mut u32 {
        match status {
            SeatStatus::Available => &mut self.available,
            SeatStatus::Held => &mut self.held,
            SeatStatus::Sold => &mut self.sold,
            SeatStatus::Blocked => &mut self.blocked,
        }
    }
}

/// Everything a seat-map page shows about one seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatInfo<'a> {
    /// Section name.
    pub section: &'a str,
    /// Row label.
    pub row: &'a str,
    /// Seat number within the row, from 1.
    pub number: u32,
    /// Price tier index (0 is the best).
    pub tier: u8,
    /// Price in minor units.
    pub price: i64,
    /// Current status.
    pub status: SeatStatus,
}

#[derive(Debug, Clone)]
struct Section {
    name: Box<str>,
}

#[derive(Debug, Clone)]
struct Row {
    section: u16,
    first: u32,
    len: u16,
    tier: u8,
    /// Available seats in this row, so best-available skips full rows without scanning.
    free: u16,
    label: Box<str>,
}

/// A compiled seat layout plus the live status of every seat.
#[derive(Debug, Clone)]
pub struct SeatMap {
    tiers: Vec<PriceTier>,
    sections: Vec<Section>,
    rows: Vec<Row>,
    /// `SECTION-ROW` -> row index.
    row_index: HashMap<Box<str>, u32>,
    /// Row indices grouped by tier, best tier first, front rows first.
    rows_by_tier: Vec<Vec<u32>>,
    status: Vec<SeatStatus>,
    counts: SeatCounts,
}

impl SeatMap {
    /// Compiles a layout; every seat starts available.
    pub fn new(layout: &LayoutSpec) -> Result<Self, LayoutError> {
        let total = layout.validate()?;
        let mut sections = Vec::with_capacity(layout.sections.len());
        let mut rows = Vec::new();
        let mut row_index = HashMap::new();
        let mut rows_by_tier = vec![Vec::new(); layout.tiers.len()];
        let mut first = 0u32;
        for (s, spec) in layout.sections.iter().enumerate() {
            for row in &spec.rows {
                let tier = row.tier.unwrap_or(spec.tier);
                let r = rows.len() as u32;
                row_index.insert(format!("{}-{}", spec.name, row.label).into_boxed_str(), r);
                rows_by_tier[usize::from(tier)].push(r);
                let len = u16::try_from(row.seats).expect("validated: seats per row fit u16");
                rows.push(Row {
                    section: u16::try_from(s).expect("validated: sections fit u16"),
                    first,
                    len,
                    tier,
                    free: len,
                    label: row.label.clone().into_boxed_str(),
                });
                first += row.seats;
            }
            sections.push(Section { name: spec.name.clone().into_boxed_str() });
        }
        debug_assert_eq!(first, total);
        Ok(Self {
            tiers: layout.tiers.clone(),
            sections,
            rows,
            row_index,
            rows_by_tier,
            status: vec![SeatStatus::Available; total as usize],
            counts: SeatCounts { available: total, ..SeatCounts::default() },
        })
    }

    /// Number of seats.
    pub fn len(&self) -> u32 {
        self.status.len() as u32
    }

    /// Whether the map has no seats (a general-admission-only event).
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// Seats by status.
    pub fn counts(&self) -> SeatCounts {
        self.counts
    }

    /// Price tiers, best first.
    pub fn tiers(&self) -> &[PriceTier] {
        &self.tiers
    }

    /// Resolves a seat id like `VIP-A-12`.
    pub fn resolve(&self, id: &str) -> Option<SeatIndex> {
        let (prefix, number) = id.rsplit_once('-')?;
        // One spelling per seat: digits only, no sign, no leading zero.
        if number.starts_with('0') || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u32 = number.parse().ok()?;
        let row = &self.rows[*self.row_index.get(prefix)? as usize];
        (1..=u32::from(row.len)).contains(&number).then(|| SeatIndex(row.first + number - 1))
    }

    /// The seat id of `seat`, e.g. `VIP-A-12`.
    pub fn seat_id(&self, seat: SeatIndex) -> String {
        let mut s = String::with_capacity(12);
        self.write_seat_id(seat, &mut s);
        s
    }

    /// Appends the seat id of `seat` to `out` without allocating a new string.
    pub fn write_seat_id(&self, seat: SeatIndex, out: &mut String) {
        use std::fmt::Write;
        let row = &self.rows[self.row_of(seat)];
        let section = &self.sections[usize::from(row.section)].name;
        let _ = write!(out, "{section}-{}-{}", row.label, seat.0 - row.first + 1);
    }

    /// Index of the section named `name`.
    pub fn section(&self, name: &str) -> Option<u16> {
        self.sections.iter().position(|s| &*s.name == name).map(|i| i as u16)
    }

    /// Section names in layout order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| &*s.name)
    }

    fn row_of(&self, seat: SeatIndex) -> usize {
        // Rows are laid out in seat order, so the row is found by binary search on `first`.
        self.rows.partition_point(|r| r.first <= seat.0) - 1
    }

    /// Every seat's status, by seat index.
    pub fn statuses(&self) -> &[SeatStatus] {
        &self.status
    }

    /// One seat's status.
    pub fn status(&self, seat: SeatIndex) -> SeatStatus {
        self.status[seat.at()]
    }

    /// Price of one seat.
    pub fn price(&self, seat: SeatIndex) -> i64 {
        self.tiers[usize::from(self.rows[self.row_of(seat)].tier)].price
    }

    /// Everything about one seat.
    pub fn info(&self, seat: SeatIndex) -> SeatInfo<'_> {
        let row = &self.rows[self.row_of(seat)];
        SeatInfo {
            section: &self.sections[usize::from(row.section)].name,
            row: &row.label,
            number: seat.0 - row.first + 1,
            tier: row.tier,
            price: self.tiers[usize::from(row.tier)].price,
            status: self.status[seat.at()],
        }
    }

    /// Calls `f` for every seat in order; cheaper than [`SeatMap::info`] per seat because
    /// it walks rows once.
    pub fn for_each(&self, mut f: impl FnMut(SeatIndex, SeatInfo<'_>)) {
        for row in &self.rows {
            let section = &self.sections[usize::from(row.section)].name;
            let price = self.tiers[usize::from(row.tier)].price;
            for n in 0..u32::from(row.len) {
                let seat = SeatIndex(row.first + n);
                f(
                    seat,
                    SeatInfo {
                        section,
                        row: &row.label,
                        number: n + 1,
                        tier: row.tier,
                        price,
                        status: self.status[seat.at()],
                    },
                );
            }
        }
    }

    /// Sets a seat's status, keeping the counts and per-row free counts exact.
    pub(crate) fn set(&mut self, seat: SeatIndex, status: SeatStatus) {
        let old = std::mem::replace(&mut self.status[seat.at()], status);
        if old == status {
            return;
        }
        *self.counts.slot(old) -= 1;
        *self.counts.slot(status) += 1;
        if old == SeatStatus::Available || status == SeatStatus::Available {
            let r = self.row_of(seat);
            if status == SeatStatus::Available {
                self.rows[r].free += 1;
            } else {
                self.rows[r].free -= 1;
            }
        }
    }

    /// Finds `quantity` available seats, best tier first and front rows first. With
    /// `adjacent`, the seats are consecutive in one row (the run closest to the row's
    /// centre); without, they are the first available seats in that order.
    pub fn find_best(&self, quantity: u32, section: Option<u16>, adjacent: bool) -> Option<Vec<SeatIndex>> {
        let n = u16::try_from(quantity).ok().filter(|&n| n > 0)?;
        let in_section = |row: &Row| section.is_none_or(|s| row.section == s);
        if adjacent {
            for tier_rows in &self.rows_by_tier {
                for &r in tier_rows {
                    let row = &self.rows[r as usize];
                    if row.free >= n
                        && in_section(row)
                        && let Some(start) = self.centred_run(row, n)
                    {
                        return Some((start..start + u32::from(n)).map(SeatIndex).collect());
                    }
                }
            }
            None
        } else {
            let mut found = Vec::with_capacity(usize::from(n));
            for tier_rows in &self.rows_by_tier {
                for &r in tier_rows {
                    let row = &self.rows[r as usize];
                    if row.free == 0 || !in_section(row) {
                        continue;
                    }
                    for seat in row.first..row.first + u32::from(row.len) {
                        if self.status[seat as usize] == SeatStatus::Available {
                            found.push(SeatIndex(seat));
                            if found.len() == usize::from(n) {
                                return Some(found);
                            }
                        }
                    }
                }
            }
            None
        }
    }

    /// The first seat of the run of `n` available seats in `row` whose middle is closest to
    /// the row's middle.
    fn centred_run(&self, row: &Row, n: u16) -> Option<u32> {
        let len = u32::from(row.len);
        let n = u32::from(n);
        let ideal = (len - n) / 2;
        let mut best: Option<u32> = None;
        let mut run = 0u32;
        for i in 0..len {
            if self.status[(row.first + i) as usize] == SeatStatus::Available {
                run += 1;
                if run >= n {
                    let start = i + 1 - n;
                    if best.is_none_or(|b| start.abs_diff(ideal) < b.abs_diff(ideal)) {
                        best = Some(start);
                    }
                    if start >= ideal {
                        // Later starts only move further from the centre.
                        break;
                    }
                }
            } else {
                run = 0;
            }
        }
        best.map(|s| row.first + s)
    }

    /// Approximate heap bytes used by this map, for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.status.capacity()
            + self.rows.capacity() * std::mem::size_of::<Row>()
            + self.rows.iter().map(|r| r.label.len()).sum::<usize>()
            + self.row_index.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.row_index.keys().map(|k| k.len()).sum::<usize>()
            + self.rows_by_tier.iter().map(|v| v.capacity() * 4).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> SeatMap {
        SeatMap::new(&LayoutSpec::grid(2, 3, 10, 100)).unwrap()
    }

    #[test]
    fn seat_ids_round_trip() {
        let m = map();
        for i in 0..m.len() {
            let id = m.seat_id(SeatIndex(i));
            assert_eq!(m.resolve(&id), Some(SeatIndex(i)), "{id}");
        }
        assert_eq!(m.seat_id(SeatIndex(0)), "S1-A-1");
        assert_eq!(m.seat_id(SeatIndex(59)), "S2-C-10");
    }

    #[test]
    fn unknown_seat_ids_do_not_resolve() {
        let m = map();
        for id in ["S1-A-0", "S1-A-11", "S3-A-1", "S1-Z-1", "S1-A", "", "S1-A-x", "S1-A--1", "S1-A-01", "S1-A-+1"] {
            assert_eq!(m.resolve(id), None, "{id}");
        }
    }

    #[test]
    fn adjacent_best_available_prefers_the_centre_of_the_best_row() {
        let m = map();
        let seats = m.find_best(4, None, true).unwrap();
        assert_eq!(seats.iter().map(|&s| m.seat_id(s)).collect::<Vec<_>>(), ["S1-A-4", "S1-A-5", "S1-A-6", "S1-A-7"]);
    }

    #[test]
    fn best_available_skips_rows_without_a_long_enough_run() {
        let mut m = map();
        // Break row S1-A into runs of at most 4: seats 1-4 and 7-10.
        m.set(SeatIndex(4), SeatStatus::Sold);
        m.set(SeatIndex(5), SeatStatus::Sold);
        let seats = m.find_best(5, None, true).unwrap();
        assert_eq!(m.seat_id(seats[0]), "S1-B-3");
    }

    #[test]
    fn best_available_respects_the_section() {
        let m = map();
        let s2 = m.section("S2").unwrap();
        let seats = m.find_best(2, Some(s2), true).unwrap();
        assert!(m.seat_id(seats[0]).starts_with("S2-A-"));
    }

    #[test]
    fn counts_follow_every_status_change() {
        let mut m = map();
        m.set(SeatIndex(0), SeatStatus::Held);
        m.set(SeatIndex(1), SeatStatus::Blocked);
        m.set(SeatIndex(0), SeatStatus::Sold);
        assert_eq!(m.counts(), SeatCounts { available: 58, held: 0, sold: 1, blocked: 1 });
    }

    #[test]
    fn a_hundred_thousand_seats_cost_well_under_a_megabyte() {
        let m = SeatMap::new(&LayoutSpec::grid(10, 100, 100, 100)).unwrap();
        assert_eq!(m.len(), 100_000);
        assert!(m.heap_bytes() < 1_000_000, "{}", m.heap_bytes());
    }
}
