//! Seat layouts as admins describe them (sections -> rows -> seats with price tiers) and
//! general-admission ticket types, with the one checking constructor that turns a
//! description into a [`SeatMap`](crate::SeatMap).

use serde::{Deserialize, Serialize};

/// Largest number of seats one event may have.
pub const MAX_SEATS: u32 = 1_000_000;
/// Largest number of seats in one row.
pub const MAX_SEATS_PER_ROW: u32 = 1_000;
/// Longest section name or row label.
pub const MAX_LABEL_LEN: usize = 16;

/// A price tier; tiers are listed best first (index 0 is the best tier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTier {
    /// Display name, e.g. `VIP`.
    pub name: String,
    /// Price of one seat in minor currency units.
    pub price: i64,
}

/// One row: `seats` seats numbered `1..=seats`, all in one price tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSpec {
    /// Row label, unique within its section, e.g. `A`.
    pub label: String,
    /// Number of seats.
    pub seats: u32,
    /// Index into the layout's price tiers; defaults to the section's tier.
    #[serde(default)]
    pub tier: Option<u8>,
}

/// One section of rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSpec {
    /// Section name, unique within the layout, e.g. `VIP`.
    pub name: String,
    /// Default price tier of its rows.
    pub tier: u8,
    /// Rows, front first.
    pub rows: Vec<RowSpec>,
}

/// A seated layout: the template an admin creates once and reuses across events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSpec {
    /// Price tiers, best first.
    pub tiers: Vec<PriceTier>,
    /// Sections, best first.
    pub sections: Vec<SectionSpec>,
}

/// A general-admission ticket type: a price and a capacity, no seat numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketTypeSpec {
    /// Its id.
    pub id: crate::TicketTypeId,
    /// Display name, e.g. `Standing`.
    pub name: String,
    /// Price of one ticket in minor currency units.
    pub price: i64,
    /// Tickets available in all.
    pub capacity: u32,
}

/// What is wrong with a layout; `field` is a JSON-pointer-like path to the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct LayoutError {
    /// Where, e.g. `sections[2].rows[0].seats`.
    pub field: String,
    /// What.
    pub message: String,
}

impl LayoutError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

fn check_label(field: String, label: &str) -> Result<(), LayoutError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LayoutError::new(
            field,
            format!("must be 1-{MAX_LABEL_LEN} letters, digits or '_' (seat ids are SECTION-ROW-NUMBER)"),
        ))
    }
}

impl LayoutSpec {
    /// Checks every rule a seat map relies on: labels usable in seat ids, unique names,
    /// tiers that exist, prices that are not negative, and a bounded size.
    pub fn validate(&self) -> Result<u32, LayoutError> {
        if self.tiers.is_empty() || self.tiers.len() > usize::from(u8::MAX) {
            return Err(LayoutError::new("tiers", "must list 1-255 price tiers"));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if t.name.trim().is_empty() || t.name.len() > 64 {
                return Err(LayoutError::new(format!("tiers[{i}].name"), "must be 1-64 characters"));
            }
            if t.price < 0 {
                return Err(LayoutError::new(format!("tiers[{i}].price"), "must not be negative"));
            }
        }
        let tier_ok = |t: u8| usize::from(t) < self.tiers.len();
        let mut total: u32 = 0;
        let mut names = std::collections::HashSet::new();
        for (s, section) in self.sections.iter().enumerate() {
            check_label(format!("sections[{s}].name"), &section.name)?;
            if !names.insert(section.name.as_str()) {
                return Err(LayoutError::new(format!("sections[{s}].name"), "duplicate section name"));
            }
            if !tier_ok(section.tier) {
                return Err(LayoutError::new(format!("sections[{s}].tier"), "no such price tier"));
            }
            if section.rows.is_empty() {
                return Err(LayoutError::new(format!("sections[{s}].rows"), "must not be empty"));
            }
            let mut labels = std::collections::HashSet::new();
            for (r, row) in section.rows.iter().enumerate() {
                let at = format!("sections[{s}].rows[{r}]");
                check_label(format!("{at}.label"), &row.label)?;
                if !labels.insert(row.label.as_str()) {
                    return Err(LayoutError::new(format!("{at}.label"), "duplicate row label"));
                }
                if row.seats == 0 || row.seats > MAX_SEATS_PER_ROW {
                    return Err(LayoutError::new(format!("{at}.seats"), format!("must be 1-{MAX_SEATS_PER_ROW}")));
                }
                if let Some(t) = row.tier
                    && !tier_ok(t)
                {
                    return Err(LayoutError::new(format!("{at}.tier"), "no such price tier"));
                }
                total = total.saturating_add(row.seats);
            }
        }
        if total > MAX_SEATS {
            return Err(LayoutError::new("sections", format!("at most {MAX_SEATS} seats per event")));
        }
        Ok(total)
    }

    /// A rectangular layout: `sections` sections (named `S1`, `S2`, ...) of `rows` rows of
    /// `seats_per_row` seats, one tier per section. Used by the demo, tests and benchmarks.
    pub fn grid(sections: u32, rows: u32, seats_per_row: u32, base_price: i64) -> Self {
        let tiers = (0..sections)
            .map(|s| PriceTier { name: format!("Tier {}", s + 1), price: base_price * i64::from(sections - s) })
            .collect();
        let sections = (0..sections)
            .map(|s| SectionSpec {
                name: format!("S{}", s + 1),
                tier: u8::try_from(s).unwrap_or(u8::MAX),
                rows: (0..rows).map(|r| RowSpec { label: row_label(r), seats: seats_per_row, tier: None }).collect(),
            })
            .collect();
        Self { tiers, sections }
    }
}

/// Row labels `A`..`Z`, then `AA`, `AB`, ...
fn row_label(mut i: u32) -> String {
    let mut label = Vec::new();
    loop {
        label.push(b'A' + u8::try_from(i % 26).unwrap_or(0));
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    label.reverse();
    String::from_utf8(label).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_layouts_validate_and_count_their_seats() {
        assert_eq!(LayoutSpec::grid(4, 10, 50, 1000).validate(), Ok(2000));
    }

    #[test]
    fn row_labels_continue_past_z() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
        assert_eq!(row_label(27), "AB");
    }

    #[test]
    fn a_dash_in_a_label_is_refused_with_its_path() {
        let mut l = LayoutSpec::grid(1, 1, 1, 10);
        l.sections[0].rows[0].label = "A-1".into();
        assert_eq!(l.validate().unwrap_err().field, "sections[0].rows[0].label");
    }

    #[test]
    fn a_missing_tier_is_refused() {
        let mut l = LayoutSpec::grid(1, 1, 1, 10);
        l.sections[0].rows[0].tier = Some(9);
        assert_eq!(l.validate().unwrap_err().field, "sections[0].rows[0].tier");
    }
}
