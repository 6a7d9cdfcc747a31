//! The local token bucket: a [`governor`] GCRA limiter read on a [`TokioClock`], so that
//! tests drive it with `tokio::time::pause` / `advance` and never sleep for real; the helpers
//! that make one at a rate, read how full one is, and keep rates in a sane range.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// The lowest fixed rate accepted (one request per ~17 minutes), requests per second.
pub(super) const MIN_FIXED_RATE: f64 = 0.001;
/// The highest rate of either mode, requests per second (a 1 µs replenish interval).
pub(super) const MAX_RATE: f64 = 1_000_000.0;

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

/// The governor limiter type used here.
pub(super) type Bucket = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A governor limiter for `rate` requests per second and `burst`, full.
pub(super) fn new_bucket(rate: f64, burst: NonZeroU32, clock: TokioClock) -> Bucket {
    let period = Duration::from_secs_f64(1.0 / rate);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst);
    RateLimiter::direct_with_clock(quota, clock)
}

/// Tokens left in `bucket`, fractional part included, found by taking them (the bucket is
/// about to be dropped).
pub(super) fn remaining_tokens(bucket: &Bucket, clock: TokioClock, burst: NonZeroU32) -> f64 {
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
pub(super) fn clamp_rate(rate: f64, min: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 {
        rate.clamp(min, MAX_RATE)
    } else {
        min
    }
}
