//! Token buckets, one per operation, that decide whether a request is within its quota.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::operation::Operation;

/// A rate with a burst: `rate` tokens per second refill a bucket that holds at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Sustained requests per second; must be positive.
    pub rate: f64,
    /// Bucket size: how many requests may arrive at once; at least 1.
    pub burst: u32,
}

impl Quota {
    /// A quota of `rate` requests per second with a bucket of `burst`.
    pub fn new(rate: f64, burst: u32) -> Quota {
        Quota { rate, burst }
    }

    /// Checks that the quota can be served (positive finite rate, burst of at least 1).
    pub fn check(&self) -> Result<(), String> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(format!("rate must be a positive number, got {}", self.rate));
        }
        if self.burst == 0 {
            return Err("burst must be at least 1".to_string());
        }
        Ok(())
    }
}

/// A token bucket; starts full.
#[derive(Debug)]
pub struct TokenBucket {
    quota: Quota,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `quota`, as of `now`.
    pub fn new(quota: Quota, now: Instant) -> TokenBucket {
        TokenBucket {
            quota,
            tokens: f64::from(quota.burst),
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        Err(Duration::from_secs_f64(missing / self.quota.rate))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let capacity = f64::from(self.quota.burst);
        self.tokens = (self.tokens + elapsed * self.quota.rate).min(capacity);
    }
}

/// The buckets of all operations that have a quota.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: BTreeMap<Operation, TokenBucket>,
}

impl Quotas {
    /// Builds the buckets: the documented defaults unless `no_defaults`, then `overrides`.
    pub fn new(overrides: &BTreeMap<Operation, Quota>, no_defaults: bool, now: Instant) -> Quotas {
        let mut buckets = BTreeMap::new();
        if !no_defaults {
            for op in Operation::ALL {
                if let Some((rate, burst)) = op.default_quota() {
                    buckets.insert(op, TokenBucket::new(Quota::new(rate, burst), now));
                }
            }
        }
        for (op, quota) in overrides {
            buckets.insert(*op, TokenBucket::new(*quota, now));
        }
        Quotas { buckets }
    }

    /// Takes a token for `op`; operations without a quota always pass.
    pub fn try_take(&mut self, op: Operation, now: Instant) -> Result<(), Duration> {
        match self.buckets.get_mut(&op) {
            Some(bucket) => bucket.try_take(now),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Quota::new(2.0, 3), start);
        for _ in 0..3 {
            assert!(bucket.try_take(start).is_ok());
        }
        let wait = bucket.try_take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.try_take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.try_take(start + Duration::from_millis(600)).is_err());
    }

    #[test]
    fn bucket_never_holds_more_than_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(Quota::new(100.0, 2), start);
        let later = start + Duration::from_secs(60);
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_err());
    }
}
