//! When a record is written again, though unchanged, so that the target does not expire it.
//!
//! Customer Profiles removes a profile nobody updated within its domain's
//! `DefaultExpirationDays`. The sync state keeps when the target last accepted a write of
//! ours for each record; a record whose write is older than its refresh age (or unknown:
//! found equal on first sight, written by someone else perhaps long ago) is written again.
//! Each record's age lies between 5/8 and all of the maximum (by default 80% of the
//! expiration, so 50-80% of it), spread deterministically by its id, so that the records of
//! one first night come due over many nights instead of on one. Pure: the clock is read by
//! the caller.

use xxhash_rust::xxh3::xxh3_64;

use crate::config::RefreshSetting;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// The refresh rule of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// The longest a record may go without a write of ours, in seconds.
    max_age: u64,
    /// Now, in seconds since the epoch.
    now: u64,
}

impl Refresh {
    /// The rule for a target whose records expire after `expiration_days` (none: records
    /// never expire, so no rule), as `[state]` sets it, at `now`.
    pub fn new(setting: RefreshSetting, expiration_days: Option<u32>, now: u64) -> Option<Refresh> {
        let expiration = u64::from(expiration_days?);
        let max_days = match setting {
            RefreshSetting::Off => return None,
            RefreshSetting::Default => expiration * 4 / 5,
            RefreshSetting::Days(days) => u64::from(days),
        };
        Some(Refresh {
            max_age: max_days.max(1) * DAY,
            now,
        })
    }

    /// Now, in seconds since the epoch, as the state stores it.
    pub fn now(&self) -> u32 {
        u32::try_from(self.now).unwrap_or(u32::MAX)
    }

    /// How old our last write of the record `id` may grow before it is refreshed: between
    /// 5/8 and all of the maximum, the same for an id every night.
    pub fn age_of(&self, id: &str) -> u64 {
        let spread = self.max_age * 3 / 8;
        self.max_age - spread + xxh3_64(id.as_bytes()) % (spread + 1)
    }

    /// Whether the record `id`, last written by us at `written_at` (unknown: `None`), is due.
    pub fn due(&self, id: &str, written_at: Option<u32>) -> bool {
        match written_at {
            None => true,
            Some(at) => self.now.saturating_sub(u64::from(at)) >= self.age_of(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn ages_spread_between_half_and_four_fifths_of_the_expiration() {
        let rule = Refresh::new(RefreshSetting::Default, Some(365), NOW).unwrap();
        let ages: Vec<u64> = (0..2_000)
            .map(|i| rule.age_of(&format!("{i:032x}")) / DAY)
            .collect();
        assert!(ages.iter().all(|d| (182..=292).contains(d)), "{ages:?}");
        let early = ages.iter().filter(|d| **d < 237).count();
        assert!(
            (800..1_200).contains(&early),
            "spread evenly: {early} of 2000"
        );
        assert_eq!(rule.age_of("p1"), rule.age_of("p1"));
    }

    #[test]
    fn unknown_writes_are_due_at_once_and_recent_ones_are_not() {
        let rule = Refresh::new(RefreshSetting::Days(100), Some(365), NOW).unwrap();
        assert!(rule.due("p1", None));
        assert!(!rule.due("p1", Some((NOW - 62 * DAY) as u32)));
        assert!(rule.due("p1", Some((NOW - 100 * DAY) as u32)));
    }

    #[test]
    fn no_rule_without_expiry_or_when_off() {
        assert_eq!(Refresh::new(RefreshSetting::Default, None, NOW), None);
        assert_eq!(Refresh::new(RefreshSetting::Off, Some(365), NOW), None);
    }
}
