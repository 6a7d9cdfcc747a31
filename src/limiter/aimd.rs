//! `rate = "auto"`: the AIMD state machine ([`AutoRate`]) that adapts one bucket's rate to an
//! unknown server quota, on explicit clock readings and without I/O; [`super::Limiter`] asks it
//! for the rate and swaps its local bucket when the rate changes.
//!
//! With [`super::RateSetting::Auto`]:
//!
//! - **Decrease on a throttle, once per episode.** Many in-flight requests come back throttled
//!   together; the first one decreases the rate and starts a cool-down of
//!   `max(150 ms, 2 request intervals)` during which further throttles are only counted.
//!   The new rate is `0.95 × min(rate, accepted)`, where `accepted` is the rate of successes
//!   since the previous decrease, over at most the last `max(1 s, 16 request intervals)`
//!   (10 s at most): the server's bucket was empty at that decrease, so what it let through
//!   since is its refill rate, the quota. With too few successes for that estimate (fewer
//!   than 8, or under 100 ms) the rate is multiplied by 0.7 instead.
//! - **Increase while throttle-free.** After the cool-down the rate grows by 3 % per second
//!   (at least 0.05 req/s per second), decided every `max(100 ms, 4 request intervals)`,
//!   and only when the workers used at least 75 % of the current rate, so that an idle or
//!   concurrency-bound run does not inflate it. Probing is slow on purpose: each probe above
//!   the quota costs a throttle, so a slower climb means fewer of them.
//! - **Slow start.** Before the first throttle the rate grows by 50 % per second, so a low
//!   start is corrected quickly. After 10 s without a decrease it does so again, but only up
//!   to `0.95 ×` the last accepted-rate estimate (unbounded if there is none), so the end of
//!   an outage is recovered from in seconds without overshooting the known quota.
//! - **Never stall.** The rate never goes below 1 req/s (or the start rate, if lower).
//!
//! In a simulation of the apply bench (6,000 requests, quota 200/s with burst 10, start
//! 1000/s, 16 workers, through `retry::send`; see its tests) the run takes 30.0 s with 41
//! throttles (0.7 %); at a fixed 200/s it takes 29.95 s with none.

use std::collections::VecDeque;
use std::time::Duration;

use super::local::{MAX_RATE, MIN_FIXED_RATE, clamp_rate};

/// The lowest rate auto mode goes down to, requests per second.
pub(super) const MIN_AUTO_RATE: f64 = 1.0;
/// Multiplicative decrease when the accepted rate is unknown.
const DECREASE: f64 = 0.7;
/// Share of the accepted rate aimed at after a throttle.
const ACCEPTED_MARGIN: f64 = 0.95;
/// Shortest cool-down after a decrease.
const MIN_COOLDOWN: Duration = Duration::from_millis(150);
/// Cool-down in request intervals at the new rate, when longer than [`MIN_COOLDOWN`].
const COOLDOWN_INTERVALS: f64 = 2.0;
/// Additive increase per second, as a share of the current rate.
const INCREASE_SHARE: f64 = 0.03;
/// Smallest additive increase, requests per second per second.
const MIN_INCREASE: f64 = 0.05;
/// Growth per second in slow start, as a share of the current rate.
const SLOW_START_SHARE: f64 = 0.5;
/// Throttle-free time after which slow start resumes.
const SLOW_START_AFTER: Duration = Duration::from_secs(10);
/// Shortest interval between two increase decisions.
const MIN_TICK: Duration = Duration::from_millis(100);
/// Interval between increase decisions in request intervals, when longer than [`MIN_TICK`].
const TICK_INTERVALS: f64 = 4.0;
/// The rate grows only when the workers used at least this share of it.
const BUSY_SHARE: f64 = 0.75;
/// Fewest successes for a meaningful accepted rate.
const MIN_SAMPLES: usize = 8;
/// Shortest span for a meaningful accepted rate.
const MIN_SPAN: Duration = Duration::from_millis(100);
/// Shortest window over which the accepted rate is measured.
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Longest window over which the accepted rate is measured.
const MAX_WINDOW: Duration = Duration::from_secs(10);
/// Most success times kept (bounds memory at very high rates).
const MAX_KEPT: usize = 4096;
/// The auto-rate state machine: all decisions of [`super::RateSetting::Auto`], on explicit clock
/// readings (time since the limiter was made), without I/O.
#[derive(Debug)]
pub struct AutoRate {
    rate: f64,
    floor: f64,
    /// Throttles before this time belong to the last decrease.
    quiet_until: Duration,
    /// When the last decrease happened, if any.
    last_decrease: Option<Duration>,
    /// The last meaningful accepted rate: the best estimate of the quota.
    ceiling: Option<f64>,
    /// Start of the current increase interval and the acquire count then.
    tick_start: Duration,
    acquired_at_tick: u64,
    successes: SuccessWindow,
    /// The highest rate it grows to ([`MAX_RATE`], or the shared quota's rate).
    cap: f64,
}

impl AutoRate {
    /// Starts at `start` requests per second at clock reading `now`.
    pub fn new(start: f64, now: Duration) -> AutoRate {
        let rate = clamp_rate(start, MIN_FIXED_RATE);
        AutoRate {
            rate,
            floor: MIN_AUTO_RATE.min(rate),
            quiet_until: now,
            last_decrease: None,
            ceiling: None,
            tick_start: now,
            acquired_at_tick: 0,
            successes: SuccessWindow::new(now),
            cap: MAX_RATE,
        }
    }

    /// Never grows above `cap` (with `[limits] shared`: the account-wide rate, so that the
    /// local rate stays below it).
    pub fn cap(&mut self, cap: f64) {
        self.cap = clamp_rate(cap, MIN_FIXED_RATE);
        self.rate = self.rate.min(self.cap);
    }

    /// The current rate, requests per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Notes a request that went through.
    pub fn on_success(&mut self, now: Duration) {
        self.successes.record(now);
    }

    /// Notes a throttled request; returns whether the rate was decreased.
    pub fn on_throttle(&mut self, now: Duration) -> bool {
        if now < self.quiet_until {
            return false;
        }
        let window = self.window();
        let accepted = self.successes.rate(now, window);
        let target = match accepted {
            Some(accepted) => accepted.min(self.rate) * ACCEPTED_MARGIN,
            None => self.rate * DECREASE,
        };
        self.ceiling = accepted.or(self.ceiling);
        self.rate = target.max(self.floor);
        self.last_decrease = Some(now);
        self.quiet_until = now + self.cooldown();
        self.successes.restart(now);
        true
    }

    /// Grows the rate if an increase interval has passed throttle-free with the rate in use;
    /// `acquired` is the total number of requests let through so far. Returns whether the
    /// rate changed.
    pub fn tick(&mut self, now: Duration, acquired: u64) -> bool {
        if now < self.quiet_until {
            self.tick_start = self.quiet_until;
            self.acquired_at_tick = acquired;
            return false;
        }
        let elapsed = now.saturating_sub(self.tick_start);
        if elapsed < self.tick_interval() {
            return false;
        }
        let used = acquired.saturating_sub(self.acquired_at_tick) as f64;
        self.tick_start = now;
        self.acquired_at_tick = acquired;
        let secs = elapsed.as_secs_f64();
        if used < BUSY_SHARE * self.rate * secs {
            return false;
        }
        let additive = self.rate + (self.rate * INCREASE_SHARE).max(MIN_INCREASE) * secs;
        let slow_start = match self.slow_start_limit(now) {
            Some(limit) => (self.rate * (1.0 + SLOW_START_SHARE * secs)).min(limit),
            None => additive,
        };
        self.rate = additive.max(slow_start).min(self.cap);
        true
    }

    /// How far slow start may take the rate now, if it applies: before the first throttle
    /// without limit; after a long throttle-free time up to just below the last estimate of
    /// the quota (so an outage is recovered from quickly, without overshooting).
    fn slow_start_limit(&self, now: Duration) -> Option<f64> {
        let Some(at) = self.last_decrease else {
            return Some(MAX_RATE);
        };
        if now.saturating_sub(at) < SLOW_START_AFTER {
            return None;
        }
        Some(self.ceiling.map_or(MAX_RATE, |c| c * ACCEPTED_MARGIN))
    }

    /// One request interval at the current rate.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    fn cooldown(&self) -> Duration {
        MIN_COOLDOWN.max(self.interval().mul_f64(COOLDOWN_INTERVALS))
    }

    fn tick_interval(&self) -> Duration {
        MIN_TICK.max(self.interval().mul_f64(TICK_INTERVALS))
    }

    /// How far back the accepted rate is measured: about `2 × MIN_SAMPLES` successes.
    fn window(&self) -> Duration {
        self.interval()
            .mul_f64(2.0 * MIN_SAMPLES as f64)
            .clamp(MIN_WINDOW, MAX_WINDOW)
    }
}

/// Times of recent successes, for the accepted rate.
#[derive(Debug)]
struct SuccessWindow {
    times: VecDeque<Duration>,
    /// Every success after this time is in `times`.
    since: Duration,
}

impl SuccessWindow {
    fn new(now: Duration) -> SuccessWindow {
        SuccessWindow {
            times: VecDeque::new(),
            since: now,
        }
    }

    fn record(&mut self, now: Duration) {
        self.times.push_back(now);
        if self.times.len() > MAX_KEPT
            && let Some(oldest) = self.times.pop_front()
        {
            self.since = self.since.max(oldest);
        }
    }

    /// Forgets everything before `now`.
    fn restart(&mut self, now: Duration) {
        self.times.clear();
        self.since = now;
    }

    /// Successes per second over the last `window` (or since the restart, if later), when
    /// there are enough of them over a long enough span to mean something.
    fn rate(&mut self, now: Duration, window: Duration) -> Option<f64> {
        let from = self.since.max(now.saturating_sub(window));
        while self.times.front().is_some_and(|&t| t <= from) {
            self.times.pop_front();
        }
        self.since = from;
        let span = now.saturating_sub(from);
        let count = self.times.len();
        (span >= MIN_SPAN && count >= MIN_SAMPLES).then(|| count as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_rate_never_grows_above_its_cap() {
        let mut auto = AutoRate::new(10.0, Duration::ZERO);
        auto.cap(10.0);
        // Slow start, fully used: it would grow by half every second.
        let mut acquired = 0;
        for ms in (0..=5_000).step_by(10) {
            acquired += 1;
            auto.tick(Duration::from_millis(ms), acquired);
        }
        assert_eq!(auto.rate(), 10.0);
        assert!(auto.on_throttle(Duration::from_secs(6)));
        assert_eq!(auto.rate(), 7.0);
    }

    #[test]
    fn throttles_within_the_cooldown_count_once() {
        let mut auto = AutoRate::new(1000.0, Duration::ZERO);
        assert!(auto.on_throttle(Duration::from_millis(10)));
        assert_eq!(auto.rate(), 700.0);
        for ms in 11..150 {
            assert!(!auto.on_throttle(Duration::from_millis(ms)));
        }
        assert_eq!(auto.rate(), 700.0);
    }

    #[test]
    fn a_throttle_aims_just_below_the_accepted_rate() {
        let mut auto = AutoRate::new(1000.0, Duration::ZERO);
        assert!(auto.on_throttle(Duration::ZERO));
        // 200 successes per second since the decrease.
        for i in 1..=60 {
            auto.on_success(Duration::from_millis(5 * i));
        }
        assert!(auto.on_throttle(Duration::from_millis(300)));
        assert!((auto.rate() - 190.0).abs() < 1.0, "{}", auto.rate());
    }

    #[test]
    fn the_rate_never_goes_below_the_floor() {
        let mut auto = AutoRate::new(50.0, Duration::ZERO);
        for s in 0..100 {
            auto.on_throttle(Duration::from_secs(s));
        }
        assert_eq!(auto.rate(), MIN_AUTO_RATE);
    }

    #[test]
    fn the_rate_grows_additively_after_a_decrease() {
        let mut auto = AutoRate::new(100.0, Duration::ZERO);
        assert!(auto.on_throttle(Duration::ZERO));
        assert_eq!(auto.rate(), 70.0);
        // Fully used for 2 s after the cool-down: about 5 % per second.
        let mut acquired = 0;
        for ms in (150..=2_150).step_by(10) {
            acquired += 1;
            auto.tick(Duration::from_millis(ms), acquired);
        }
        let rate = auto.rate();
        assert!((74.0..=74.5).contains(&rate), "{rate}");
    }

    #[test]
    fn slow_start_resumes_after_a_long_quiet_time_up_to_the_estimate() {
        let mut auto = AutoRate::new(1000.0, Duration::ZERO);
        assert!(auto.on_throttle(Duration::ZERO));
        for i in 1..=60 {
            auto.on_success(Duration::from_millis(5 * i));
        }
        // 200/s accepted: the estimate of the quota.
        assert!(auto.on_throttle(Duration::from_millis(300)));
        // Then a throttle with nothing accepted: multiplicative decrease.
        assert!(auto.on_throttle(Duration::from_secs(1)));
        assert!((auto.rate() - 133.0).abs() < 1.0, "{}", auto.rate());
        let mut acquired = 0;
        let mut rates = Vec::new();
        for ms in (1_000..=12_000).step_by(10) {
            acquired += 10;
            auto.tick(Duration::from_millis(ms), acquired);
            rates.push(auto.rate());
        }
        // Additive for 10 s (3 % of the rate per second), then slow start up to 0.95 × 200.
        let at_11s = rates[999];
        assert!((170.0..185.0).contains(&at_11s), "{at_11s}");
        let at_12s = rates[1099];
        assert!((190.0..196.0).contains(&at_12s), "{at_12s}");
    }
}
