//! The emulator's clock: the system clock plus an offset in whole days that a test can move
//! (`--clock-offset-days`, `POST /_emulator/clock`, [`super::EmulatorHandle::set_clock_offset_days`]),
//! so that a year of nights runs in seconds.
//!
//! Everything the emulator stamps with a time reads it here: a Customer Profiles profile's
//! last update (which decides when it expires) and a Connect user's `LastModifiedTime`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds in a day.
pub const DAY: i64 = 86_400;
/// The largest offset accepted either way: 100 years.
pub const MAX_OFFSET_DAYS: i64 = 36_500;

/// System time plus an offset; the moment it was made is the emulator's start.
#[derive(Debug)]
pub struct Clock {
    offset_days: AtomicI64,
    started: i64,
}

/// One reading of the clock, with what it needs to age a profile the seed gave no time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Now, in seconds since the epoch, on the emulator's clock.
    pub now: i64,
    /// The emulator's start on its own clock: the last update of a profile with no time.
    pub started: i64,
}

impl Clock {
    /// A clock `offset_days` ahead of the system clock (behind when negative).
    pub fn new(offset_days: i64) -> Result<Clock, String> {
        check_offset(offset_days)?;
        let started = system_millis() / 1000 + offset_days * DAY;
        Ok(Clock {
            offset_days: AtomicI64::new(offset_days),
            started,
        })
    }

    /// The offset, in days.
    pub fn offset_days(&self) -> i64 {
        self.offset_days.load(Ordering::SeqCst)
    }

    /// Moves the clock to `offset_days` from the system clock (not by that much).
    pub fn set_offset_days(&self, offset_days: i64) -> Result<(), String> {
        check_offset(offset_days)?;
        self.offset_days.store(offset_days, Ordering::SeqCst);
        Ok(())
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_millis(&self) -> i64 {
        system_millis() + self.offset_days() * DAY * 1000
    }

    /// Now, in whole seconds since the epoch.
    pub fn now(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }

    /// Now and the start, read together.
    pub fn moment(&self) -> Moment {
        Moment {
            now: self.now(),
            started: self.started,
        }
    }
}

fn check_offset(offset_days: i64) -> Result<(), String> {
    if offset_days.abs() <= MAX_OFFSET_DAYS {
        Ok(())
    } else {
        Err(format!(
            "clock offset {offset_days} days is out of range (at most {MAX_OFFSET_DAYS} either way)"
        ))
    }
}

fn system_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_now_but_not_the_start() {
        let clock = Clock::new(-2).expect("in range");
        let start = clock.moment();
        assert!((start.now - start.started).abs() <= 1);
        clock.set_offset_days(30).expect("in range");
        let later = clock.moment();
        assert_eq!(later.started, start.started);
        assert!((later.now - start.now - 32 * DAY).abs() <= 1);
        assert_eq!(clock.offset_days(), 30);
    }

    #[test]
    fn offsets_beyond_a_century_are_refused() {
        assert!(Clock::new(MAX_OFFSET_DAYS + 1).is_err());
        let clock = Clock::new(0).expect("in range");
        assert!(clock.set_offset_days(-MAX_OFFSET_DAYS - 1).is_err());
        assert_eq!(clock.offset_days(), 0);
    }
}
