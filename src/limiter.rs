//! Rate limiting: one token bucket per API operation, shared by all workers of a run.
//!
//! AWS quotas are per operation and account (Customer Profiles 100 TPS for each of
//! SearchProfiles, UpdateProfile, CreateProfile; Connect 2/s, burst 5, for each of
//! DescribeUser, UpdateUserIdentityInfo, ListUsers, SearchUsers), so a read-modify-write
//! record takes a token from its read operation's bucket and one from its write operation's:
//! reads never slow writes down, and `rate = "auto"` adapts each bucket on its own.
//! [`Limiters`] holds one [`Limiter`] per operation of the run's target.
//!
//! # Design
//!
//! A [`Limiter`] wraps a [`governor`] GCRA rate limiter (a token bucket of `rate` tokens per
//! second holding at most `burst`) read on a [`TokioClock`], so that tests drive it with
//! `tokio::time::pause` / `advance` and never sleep for real. [`Limiter::acquire`] waits with
//! `tokio::time::sleep` (governor's own `until_ready` uses `futures_timer`, which ignores
//! paused time); waiters queue in FIFO order behind a tokio mutex, so only the first one
//! sleeps on the bucket. All methods take `&self`; the limiter is `Send + Sync` and shared
//! by `Arc`.
//!
//! With [`RateSetting::Fixed`] the bucket never changes, so the limit is exact: over any
//! interval `t` at most `rate × t + burst` requests are let through.
//!
//! With [`RateSetting::Auto`] the rate adapts to an unknown server quota ([`AutoRate`], a
//! pure state machine on an explicit clock reading):
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
//!
//! A governor quota cannot be changed in place, so a rate change builds a new governor
//! limiter and swaps it in behind a mutex. After an increase the new bucket is given the old
//! one's fill, rounded to whole tokens, so a swap neither grants a fresh burst nor loses the
//! pacing phase; after a decrease it starts empty, like the server's bucket that throttled.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The lowest rate auto mode goes down to, requests per second.
const MIN_AUTO_RATE: f64 = 1.0;
/// The lowest fixed rate accepted (one request per ~17 minutes), requests per second.
const MIN_FIXED_RATE: f64 = 0.001;
/// The highest rate of either mode, requests per second (a 1 µs replenish interval).
const MAX_RATE: f64 = 1_000_000.0;

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

/// How fast requests may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSetting {
    /// A fixed sustained rate with a burst.
    Fixed {
        /// Requests per second.
        rate: f64,
        /// Bucket size.
        burst: u32,
    },
    /// Adapt to an unknown quota: multiplicative decrease on throttles, additive increase.
    Auto {
        /// Starting rate.
        start: f64,
        /// Bucket size.
        burst: u32,
    },
}

/// A governor [`Clock`] over tokio time: readings are the time elapsed since the clock was
/// made, so `tokio::time::pause` and `advance` control it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose zero is now.
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// Counters of a limiter since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimiterStats {
    /// Requests let through by [`Limiter::acquire`].
    pub acquired: u64,
    /// Calls of [`Limiter::on_success`].
    pub succeeded: u64,
    /// Calls of [`Limiter::on_throttle`].
    pub throttled: u64,
    /// Times a waiter went to sleep until the bucket would have a token.
    pub sleeps: u64,
}

/// The requests one API operation made in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationCalls {
    /// The operation's name.
    pub operation: &'static str,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Of them, throttled.
    pub throttled: u64,
}

/// One [`Limiter`] per API operation of a target.
#[derive(Debug)]
pub struct Limiters {
    by_operation: Vec<(&'static str, Limiter)>,
    /// For an operation the target did not declare (a programming error, not a panic).
    other: Limiter,
}

impl Limiters {
    /// A limiter for each operation, with its setting; `other` serves undeclared names.
    pub fn new(
        operations: impl IntoIterator<Item = (&'static str, RateSetting)>,
        other: RateSetting,
    ) -> Limiters {
        Limiters {
            by_operation: operations
                .into_iter()
                .map(|(name, setting)| (name, Limiter::new(setting)))
                .collect(),
            other: Limiter::new(other),
        }
    }

    /// The limiter of `operation`.
    pub fn get(&self, operation: &str) -> &Limiter {
        self.by_operation
            .iter()
            .find(|(name, _)| *name == operation)
            .map_or(&self.other, |(_, limiter)| limiter)
    }

    /// The requests of each operation that sent any, in the target's order.
    pub fn calls(&self) -> Vec<OperationCalls> {
        self.iter()
            .map(|(operation, limiter)| {
                let stats = limiter.stats();
                OperationCalls {
                    operation,
                    requests: stats.acquired,
                    throttled: stats.throttled,
                }
            })
            .filter(|c| c.requests > 0)
            .collect()
    }

    /// Every operation's limiter, in the target's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Limiter)> {
        self.by_operation.iter().map(|(name, l)| (*name, l))
    }

    /// The busiest operation (most requests let through) and its current rate, for the
    /// progress line.
    pub fn busiest(&self) -> Option<(&'static str, f64)> {
        self.iter()
            .filter(|(_, l)| l.stats().acquired > 0)
            .max_by_key(|(_, l)| l.stats().acquired)
            .map(|(name, l)| (name, l.current_rate()))
    }

    /// For the progress line: each operation that sent requests, with its limiter's current
    /// rate and the throttles so far, such as `DescribeUser 2/s, UpdateUserIdentityInfo 2/s
    /// (3 throttled)`; `None` before then. An operation sent once and not throttled (the
    /// preflight's `GetDomain`, a one-page `ListUsers`) has no rate to speak of and is left
    /// out.
    pub fn progress(&self) -> Option<String> {
        let parts: Vec<String> = self
            .iter()
            .filter_map(|(name, l)| {
                let stats = l.stats();
                (stats.acquired > 1 || stats.throttled > 0).then(|| {
                    let rate = l.current_rate();
                    let mut part = if rate >= 10.0 || rate.fract() == 0.0 {
                        format!("{name} {rate:.0}/s")
                    } else {
                        format!("{name} {rate:.1}/s")
                    };
                    if stats.throttled > 0 {
                        part.push_str(&format!(" ({} throttled)", stats.throttled));
                    }
                    part
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// The governor limiter type used here.
type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A token bucket shared by all workers of a run.
#[derive(Debug)]
pub struct Limiter {
    clock: TokioClock,
    burst: NonZeroU32,
    state: Mutex<State>,
    /// Waiters line up here, first come first served, so that only the one at the front
    /// watches the bucket: without it, every waiter would wake at each new token and all but
    /// one would go back to sleep.
    queue: tokio::sync::Mutex<()>,
    acquired: AtomicU64,
    sleeps: AtomicU64,
    succeeded: AtomicU64,
    throttled: AtomicU64,
}

/// What the mutex guards: the current bucket and how its rate is chosen.
#[derive(Debug)]
struct State {
    bucket: Arc<Bucket>,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Fixed(f64),
    Auto(AutoRate),
}

impl Mode {
    fn rate(&self) -> f64 {
        match self {
            Mode::Fixed(rate) => *rate,
            Mode::Auto(auto) => auto.rate(),
        }
    }
}

impl Limiter {
    /// A limiter on the tokio clock.
    ///
    /// Rates are clamped to a sane range (a non-finite or non-positive rate becomes the
    /// lowest one) and a burst of 0 counts as 1; the config is expected to reject those.
    pub fn new(setting: RateSetting) -> Limiter {
        let clock = TokioClock::new();
        let (mode, burst) = match setting {
            RateSetting::Fixed { rate, burst } => {
                (Mode::Fixed(clamp_rate(rate, MIN_FIXED_RATE)), burst)
            }
            RateSetting::Auto { start, burst } => {
                let start = clamp_rate(start, MIN_FIXED_RATE);
                (Mode::Auto(AutoRate::new(start, clock.now())), burst)
            }
        };
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let bucket = Arc::new(new_bucket(mode.rate(), burst, clock));
        Limiter {
            clock,
            burst,
            state: Mutex::new(State { bucket, mode }),
            queue: tokio::sync::Mutex::new(()),
            acquired: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Waits until one request may be sent. Waiters are served in the order they came.
    pub async fn acquire(&self) {
        let _front = self.queue.lock().await;
        loop {
            let bucket = self.current_bucket();
            match bucket.check() {
                Ok(()) => {
                    self.acquired.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    self.sleeps.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A request was throttled by the server.
    pub fn on_throttle(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let mut state = self.lock();
        let changed = match &mut state.mode {
            Mode::Fixed(_) => false,
            Mode::Auto(auto) => auto.on_throttle(now),
        };
        if changed {
            // The server's bucket is empty now: ours starts empty too.
            self.replace_bucket(&mut state, 0.0);
        }
    }

    /// A request went through the server's quota (it was not throttled).
    pub fn on_success(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        if let Mode::Auto(auto) = &mut self.lock().mode {
            auto.on_success(now);
        }
    }

    /// The current sustained rate, requests per second.
    pub fn current_rate(&self) -> f64 {
        self.lock().mode.rate()
    }

    /// Requests throttled so far (calls of [`Limiter::on_throttle`]).
    pub fn throttled_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// All counters so far.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            acquired: self.acquired.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            sleeps: self.sleeps.load(Ordering::Relaxed),
        }
    }

    /// The bucket to take a token from, after letting auto mode grow the rate.
    fn current_bucket(&self) -> Arc<Bucket> {
        let now = self.clock.now();
        let acquired = self.acquired.load(Ordering::Relaxed);
        let mut state = self.lock();
        let changed = match &mut state.mode {
            Mode::Fixed(_) => false,
            Mode::Auto(auto) => auto.tick(now, acquired),
        };
        if changed {
            let fill = remaining_tokens(&state.bucket, self.clock, self.burst);
            self.replace_bucket(&mut state, fill);
        }
        Arc::clone(&state.bucket)
    }

    /// Swaps in a bucket at the mode's current rate holding `fill` tokens.
    fn replace_bucket(&self, state: &mut State, fill: f64) {
        let bucket = new_bucket(state.mode.rate(), self.burst, self.clock);
        // Rounding keeps the pacing phase unbiased: a bucket at 0.6 of its next token gets it.
        let keep = (fill.round() as u32).min(self.burst.get());
        if let Some(take) = NonZeroU32::new(self.burst.get() - keep) {
            // `take` never exceeds the burst, so there is no capacity error to handle.
            let _ = bucket.check_n(take);
        }
        state.bucket = Arc::new(bucket);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A governor limiter for `rate` requests per second and `burst`, full.
fn new_bucket(rate: f64, burst: NonZeroU32, clock: TokioClock) -> Bucket {
    let period = Duration::from_secs_f64(1.0 / rate);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst);
    RateLimiter::direct_with_clock(quota, clock)
}

/// Tokens left in `bucket`, fractional part included, found by taking them (the bucket is
/// about to be dropped).
fn remaining_tokens(bucket: &Bucket, clock: TokioClock, burst: NonZeroU32) -> f64 {
    let mut whole = 0u32;
    while whole < burst.get() {
        match bucket.check() {
            Ok(()) => whole += 1,
            Err(not_until) => {
                let period = not_until.quota().replenish_interval().as_secs_f64();
                let wait = not_until.wait_time_from(clock.now()).as_secs_f64();
                let partial = (1.0 - wait / period).clamp(0.0, 1.0);
                return f64::from(whole) + partial;
            }
        }
    }
    f64::from(whole)
}

/// `rate` within `[min, MAX_RATE]`; anything not a positive finite number becomes `min`.
fn clamp_rate(rate: f64, min: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate.clamp(min, MAX_RATE)
    } else {
        min
    }
}

/// The auto-rate state machine: all decisions of [`RateSetting::Auto`], on explicit clock
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
        }
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
        self.rate = additive.max(slow_start).min(MAX_RATE);
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

    #[tokio::test(start_paused = true)]
    async fn each_operation_has_its_own_bucket() {
        let fixed = RateSetting::Fixed {
            rate: 2.0,
            burst: 5,
        };
        let limiters = Limiters::new([("Read", fixed), ("Write", fixed)], fixed);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiters.get("Read").acquire().await;
        }
        // The reads emptied their bucket, not the writes'.
        for _ in 0..5 {
            limiters.get("Write").acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiters.get("Read").acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        assert_eq!(limiters.get("Read").stats().acquired, 6);
        assert_eq!(limiters.get("Write").stats().acquired, 5);
        assert_eq!(limiters.busiest().map(|(name, _)| name), Some("Read"));
        limiters.get("Write").on_throttle();
        limiters.get("Write").on_throttle();
        assert_eq!(
            limiters.progress().as_deref(),
            Some("Read 2/s, Write 2/s (2 throttled)")
        );
        let auto = Limiters::new(
            [(
                "Put",
                RateSetting::Auto {
                    start: 2.5,
                    burst: 1,
                },
            )],
            fixed,
        );
        assert_eq!(auto.progress(), None, "nothing sent yet");
        auto.get("Put").acquire().await;
        assert_eq!(auto.progress(), None, "one request is no rate");
        auto.get("Put").acquire().await;
        assert_eq!(auto.progress().as_deref(), Some("Put 2.5/s"));
        // A name the target did not declare gets the default bucket, never a panic.
        limiters.get("Other").acquire().await;
        assert_eq!(limiters.get("Other").stats().acquired, 1);
    }
    use tokio::time::Instant;

    /// A server-side quota on the same paused clock: `rate` tokens per second, at most
    /// `burst`, `Err` when empty.
    struct ServerQuota {
        tokens: f64,
        rate: f64,
        burst: f64,
        last: Instant,
    }

    impl ServerQuota {
        fn new(rate: f64, burst: u32) -> Mutex<ServerQuota> {
            Mutex::new(ServerQuota {
                tokens: f64::from(burst),
                rate,
                burst: f64::from(burst),
                last: Instant::now(),
            })
        }

        fn take(&mut self) -> bool {
            let now = Instant::now();
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// Outcome of a simulated run.
    struct Run {
        elapsed: Duration,
        throttles: u64,
        limiter: Arc<Limiter>,
    }

    /// Sends `records` requests from `workers` tasks through `limiter` to `server`, each
    /// taking `rtt`; a throttled request is sent again until it goes through.
    async fn simulate(
        limiter: Arc<Limiter>,
        server: Arc<Mutex<ServerQuota>>,
        records: u64,
        workers: usize,
        rtt: Duration,
    ) -> Run {
        let start = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (limiter, server, next) = (limiter.clone(), server.clone(), next.clone());
            tasks.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < records {
                    loop {
                        limiter.acquire().await;
                        tokio::time::sleep(rtt / 2).await;
                        let ok = server.lock().unwrap_or_else(|e| e.into_inner()).take();
                        tokio::time::sleep(rtt / 2).await;
                        if ok {
                            limiter.on_success();
                            break;
                        }
                        limiter.on_throttle();
                    }
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            assert!(joined.is_ok(), "a worker panicked");
        }
        Run {
            elapsed: start.elapsed(),
            throttles: limiter.throttled_count(),
            limiter,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_paces_after_the_burst() {
        let limiter = Limiter::new(RateSetting::Fixed {
            rate: 10.0,
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        // 5 at once, then 95 at 10 per second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(9_490), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(9_510), "{elapsed:?}");
        assert_eq!(limiter.stats().acquired, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_the_order_they_came() {
        let limiter = Arc::new(Limiter::new(RateSetting::Fixed {
            rate: 10.0,
            burst: 1,
        }));
        limiter.acquire().await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..5 {
            let (limiter, served) = (Arc::clone(&limiter), Arc::clone(&served));
            tasks.spawn(async move {
                limiter.acquire().await;
                served.lock().unwrap().push(i);
            });
            // Let this waiter line up before the next one comes.
            tokio::task::yield_now().await;
        }
        while tasks.join_next().await.is_some() {}
        assert_eq!(*served.lock().unwrap(), [0, 1, 2, 3, 4]);
        // One sleep per token: only the waiter at the front watches the bucket (without the
        // queue, every waiter would wake at each token: 5 + 4 + 3 + 2 + 1 sleeps).
        assert_eq!(limiter.stats().sleeps, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_never_exceeds_rate_times_t_plus_burst() {
        let (rate, burst) = (20.0, 4);
        let limiter = Arc::new(Limiter::new(RateSetting::Fixed { rate, burst }));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let mut times = Vec::new();
                for _ in 0..10 {
                    limiter.acquire().await;
                    times.push(start.elapsed());
                }
                times
            });
        }
        let mut times: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
        times.sort();
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), burst as usize);
        for (i, from) in times.iter().enumerate() {
            for (j, to) in times.iter().enumerate().skip(i) {
                let allowed = rate * (*to - *from).as_secs_f64() + f64::from(burst);
                // `j - i + 1` requests happened within [from, to].
                assert!((j - i + 1) as f64 <= allowed + 1e-6, "{from:?}..{to:?}");
            }
        }
        // 160 requests: 4 at once, the rest at 20/s.
        assert_eq!(
            *times.last().unwrap_or(&Duration::ZERO),
            Duration::from_millis(7_800)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fixed_rate_ignores_throttles() {
        let limiter = Limiter::new(RateSetting::Fixed {
            rate: 50.0,
            burst: 1,
        });
        for _ in 0..10 {
            limiter.on_throttle();
        }
        assert_eq!(limiter.current_rate(), 50.0);
        assert_eq!(limiter.throttled_count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_converges_near_the_quota_from_far_above() {
        // The apply bench: 6,000 records, quota 200/s burst 10, start 1000/s, 16 workers.
        let limiter = Arc::new(Limiter::new(RateSetting::Auto {
            start: 1000.0,
            burst: 10,
        }));
        let server = Arc::new(ServerQuota::new(200.0, 10));
        let run = simulate(limiter, server, 6_000, 16, Duration::from_millis(2)).await;
        let secs = run.elapsed.as_secs_f64();
        // Ideal is 30 s; the bench allows 1.15 × 30 + 5 = 39.5 s and < 5 % throttled.
        assert!(secs < 33.0, "took {secs} s");
        assert!(run.throttles < 150, "{} throttles", run.throttles);
        let rate = run.limiter.current_rate();
        assert!((170.0..=230.0).contains(&rate), "ended at {rate}/s");
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_copes_with_a_slow_network() {
        // 40 ms round trips and 32 workers: many requests in flight when the quota bites.
        let limiter = Arc::new(Limiter::new(RateSetting::Auto {
            start: 1000.0,
            burst: 10,
        }));
        let server = Arc::new(ServerQuota::new(200.0, 10));
        let run = simulate(limiter, server, 6_000, 32, Duration::from_millis(40)).await;
        let secs = run.elapsed.as_secs_f64();
        assert!(secs < 1.15 * 30.0, "took {secs} s");
        assert!(run.throttles < 300, "{} throttles", run.throttles);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_climbs_from_a_low_start() {
        let limiter = Arc::new(Limiter::new(RateSetting::Auto {
            start: 20.0,
            burst: 10,
        }));
        let server = Arc::new(ServerQuota::new(200.0, 10));
        let run = simulate(limiter, server, 6_000, 16, Duration::from_millis(2)).await;
        let secs = run.elapsed.as_secs_f64();
        assert!(secs < 40.0, "took {secs} s");
        assert!(run.throttles < 150, "{} throttles", run.throttles);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_fits_a_small_quota() {
        // Connect user APIs: 2 requests per second, burst 5.
        let limiter = Arc::new(Limiter::new(RateSetting::Auto {
            start: 10.0,
            burst: 5,
        }));
        let server = Arc::new(ServerQuota::new(2.0, 5));
        let run = simulate(limiter, server, 200, 4, Duration::from_millis(50)).await;
        let secs = run.elapsed.as_secs_f64();
        assert!(secs < 1.05 * 100.0, "took {secs} s");
        // Probing a quota this small costs about one throttle per 15 requests.
        assert!(run.throttles < 25, "{} throttles", run.throttles);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_never_stalls_and_recovers_after_an_outage() {
        let limiter = Arc::new(Limiter::new(RateSetting::Auto {
            start: 500.0,
            burst: 10,
        }));
        // An outage: almost nothing gets through for 20 s.
        let server = Arc::new(ServerQuota::new(0.05, 1));
        let outage = tokio::spawn(simulate(
            limiter.clone(),
            server.clone(),
            u64::MAX,
            16,
            Duration::from_millis(2),
        ));
        let mut acquired = limiter.stats().acquired;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(limiter.current_rate() >= MIN_AUTO_RATE);
            let now = limiter.stats().acquired;
            assert!(now > acquired, "no request in 2 s");
            acquired = now;
        }
        assert!(limiter.current_rate() < 2.0, "{}", limiter.current_rate());
        // The service comes back with 100/s: within 30 s the rate is near it again.
        {
            let mut quota = server.lock().unwrap_or_else(|e| e.into_inner());
            quota.rate = 100.0;
            quota.burst = 10.0;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        let rate = limiter.current_rate();
        assert!((80.0..=120.0).contains(&rate), "rate {rate}");
        outage.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn auto_rate_does_not_grow_when_the_rate_is_not_used() {
        let limiter = Limiter::new(RateSetting::Auto {
            start: 100.0,
            burst: 10,
        });
        for _ in 0..50 {
            limiter.acquire().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(limiter.current_rate(), 100.0);
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
