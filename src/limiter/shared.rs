//! `[limits] shared = "redis://HOST:PORT/DB"`: one account-wide quota in Redis, so that every
//! process and host running against one AWS account (or Genesys tenant) draws from one bucket
//! per operation.
//!
//! - **The bucket** is a GCRA ([`GCRA`], a Lua script run by Redis on its own clock,
//!   `redis.call('TIME')`, so the hosts' clocks never matter) over one key per account, region
//!   and operation ([`gcra_key`], from `TargetIdentity::quota_scope`). It keeps one number, the bucket's
//!   theoretical arrival time, which expires once the bucket is full again. It answers "go
//!   now" or "wait N µs" ([`Verdict`]); the waiter sleeps on tokio time and asks again.
//! - **Before the account is known** (the preflight's one or two requests, `GetCallerIdentity`
//!   included) requests use the local fallback buckets silently; [`SharedQuota::bind`] names
//!   the account once the target told it.
//! - **Redis at start:** [`SharedQuota::connect`] connects, pings and loads the script before
//!   the run sends anything; failing that the run stops (exit 3) naming Redis.
//! - **Redis lost during the run:** the first failed call marks the quota lost and warns once
//!   ([`Health`]); every operation then takes its tokens from a local bucket at
//!   `rate / shared_peers`. Every [`RETRY_AFTER`] one request tries Redis again; when that
//!   works the run is back on the shared bucket (and says so). Whether to fall back is decided
//!   here, how long to wait by the script: the two never mix.
//!
//! URLs in messages go through [`redacted`]: a password in the URL is never printed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

/// The GCRA, run atomically by Redis. `KEYS[1]`: the bucket; `ARGV[1]`: the emission
/// interval (one token) in microseconds; `ARGV[2]`: the burst. Returns 0 when the request may
/// go now (and takes its token), else how many microseconds to wait before asking again.
///
/// The key holds the theoretical arrival time `tat` (µs on Redis' clock): a request at `now`
/// conforms when `max(tat, now) + interval - now <= burst × interval`, i.e. at most `burst`
/// requests at once and `1 / interval` per second after that.
pub const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst * interval
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// How long a lost Redis is left alone before one request tries it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long connecting (and each answer) may take before Redis counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What the script said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The token is taken: send now.
    Go,
    /// The bucket is empty: ask again after this long.
    Wait(Duration),
}

impl Verdict {
    /// The script's answer, microseconds to wait (0: go).
    pub fn from_reply(micros: i64) -> Verdict {
        match u64::try_from(micros) {
            Ok(0) | Err(_) => Verdict::Go,
            Ok(us) => Verdict::Wait(Duration::from_micros(us)),
        }
    }
}

/// Redis could not be reached or used at the start of a run.
#[derive(Debug, thiserror::Error)]
#[error("Redis at {url} ([limits] shared) is unreachable: {reason}")]
pub struct Unreachable {
    /// The URL, password removed.
    pub url: String,
    /// What failed.
    pub reason: String,
}

/// Whether the shared bucket is in use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// Every request takes its token from Redis.
    Up,
    /// Redis failed at `since`: local buckets until `retry_at`, when one request tries again.
    Lost {
        /// When Redis was lost.
        since: Instant,
        /// When the next request tries Redis again.
        retry_at: Instant,
    },
}

impl Health {
    /// Whether a request at `now` asks Redis (up, or lost long enough to try again).
    pub fn asks_redis(&self, now: Instant) -> bool {
        match self {
            Health::Up => true,
            Health::Lost { retry_at, .. } => now >= *retry_at,
        }
    }

    /// After a failed call at `now`: lost since the first failure, next try after
    /// [`RETRY_AFTER`].
    pub fn failed(self, now: Instant) -> Health {
        let since = match self {
            Health::Up => now,
            Health::Lost { since, .. } => since,
        };
        Health::Lost {
            since,
            retry_at: now + RETRY_AFTER,
        }
    }
}

/// The connection to the account-wide quota, shared by every operation's limiter.
pub struct SharedQuota {
    url: String,
    peers: u32,
    connection: ConnectionManager,
    script: redis::Script,
    /// The account scope (`TargetIdentity::quota_scope`), once the target told it.
    scope: OnceLock<String>,
    health: Mutex<Health>,
    /// Times Redis was lost.
    losses: AtomicU64,
    /// Requests let through by a local fallback bucket after a loss.
    by_fallback: AtomicU64,
}

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota")
            .field("url", &self.url)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl SharedQuota {
    /// Connects to `url`, pings it and loads the script, within a few seconds; `peers` is
    /// `[limits] shared_peers`, the number of processes the budget is split into when Redis
    /// is lost.
    pub async fn connect(url: &str, peers: u32) -> Result<SharedQuota, Unreachable> {
        let unreachable = |reason: String| Unreachable {
            url: redacted(url),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let script = redis::Script::new(GCRA);
        let ready = async {
            let mut connection = ConnectionManager::new_with_config(client, config).await?;
            let _: String = redis::cmd("PING").query_async(&mut connection).await?;
            script.load_async(&mut connection).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        // Connecting, PING and the script's load: a timeout each.
        let limit = 3 * TIMEOUT;
        let connection = match tokio::time::timeout(limit, ready).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer in {limit:?}"))),
        };
        Ok(SharedQuota {
            url: redacted(url),
            peers: peers.max(1),
            connection,
            script,
            scope: OnceLock::new(),
            health: Mutex::new(Health::Up),
            losses: AtomicU64::new(0),
            by_fallback: AtomicU64::new(0),
        })
    }

    /// From now on requests draw from the buckets of `scope` (`TargetIdentity::quota_scope`). Only
    /// the first call counts.
    pub fn bind(&self, scope: &str) {
        let _ = self.scope.set(scope.to_owned());
    }

    /// `[limits] shared_peers`.
    pub fn peers(&self) -> u32 {
        self.peers
    }

    /// Takes a token of `operation` (one per `interval`, at most `burst` at once) from Redis:
    /// `None` when Redis is not to be asked (the account is not known yet, or Redis was lost
    /// and it is not yet time to try again, or this call found it lost): the caller then uses
    /// its local fallback bucket.
    pub async fn take(&self, operation: &str, interval: Duration, burst: u32) -> Option<Verdict> {
        let scope = self.scope.get()?;
        let now = Instant::now();
        if !self.health().asks_redis(now) {
            return None;
        }
        let micros = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut connection = self.connection.clone();
        let reply: Result<i64, _> = self
            .script
            .key(gcra_key(scope, operation))
            .arg(micros)
            .arg(burst.max(1))
            .invoke_async(&mut connection)
            .await;
        match reply {
            Ok(micros) => {
                self.on_answer();
                Some(Verdict::from_reply(micros))
            }
            Err(e) => {
                self.on_failure(&e);
                None
            }
        }
    }

    /// Notes a request let through by a local fallback bucket.
    pub fn note_fallback(&self) {
        if self.scope.get().is_some() {
            self.by_fallback.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What to tell at the end of the run: nothing if Redis was never lost.
    pub fn notice(&self) -> Option<String> {
        let losses = self.losses.load(Ordering::Relaxed);
        if losses == 0 {
            return None;
        }
        let back = match self.health() {
            Health::Up => "; it was back by the end of the run",
            Health::Lost { .. } => "",
        };
        Some(format!(
            "Redis at {} ([limits] shared) was lost during the run ({losses} time{}): {} \
             requests went through local buckets at each operation's rate / {} ([limits] \
             shared_peers){back}",
            self.url,
            if losses == 1 { "" } else { "s" },
            self.by_fallback.load(Ordering::Relaxed),
            self.peers,
        ))
    }

    fn on_answer(&self) {
        let mut health = self.lock();
        if let Health::Lost { since, .. } = *health {
            *health = Health::Up;
            tracing::warn!(
                url = %self.url,
                lost_for_ms = since.elapsed().as_millis() as u64,
                "Redis is back: requests take their tokens from the shared quota again"
            );
        }
    }

    fn on_failure(&self, error: &redis::RedisError) {
        let mut health = self.lock();
        if *health == Health::Up {
            self.losses.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                url = %self.url,
                error = %error,
                peers = self.peers,
                "lost Redis ([limits] shared): going on with local buckets at each operation's \
                 rate / shared_peers, trying Redis again every {} s",
                RETRY_AFTER.as_secs()
            );
        }
        *health = health.failed(Instant::now());
    }

    fn health(&self) -> Health {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The key of one operation's bucket.
pub fn gcra_key(account_scope: &str, operation: &str) -> String {
    format!("profilesync:gcra:{account_scope}:{operation}")
}

/// `url` without its password (`redis://user:secret@host` → `redis://user:***@host`).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Checks `[limits] shared`: a `redis://` or `rediss://` URL the client can read.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must be a redis:// or rediss:// URL, such as redis://HOST:6379/0".into());
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|_| "is not a Redis URL the client can read".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_answer_is_go_or_wait() {
        assert_eq!(Verdict::from_reply(0), Verdict::Go);
        assert_eq!(Verdict::from_reply(-5), Verdict::Go);
        assert_eq!(
            Verdict::from_reply(12_500),
            Verdict::Wait(Duration::from_micros(12_500))
        );
    }

    #[test]
    fn one_key_per_account_scope_and_operation() {
        assert_eq!(
            gcra_key("customer-profiles:111122223333:eu-west-2", "UpdateProfile"),
            "profilesync:gcra:customer-profiles:111122223333:eu-west-2:UpdateProfile"
        );
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redacted("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redacted("rediss://app:s3cret@cache:6380/1"),
            "rediss://app:***@cache:6380/1"
        );
        assert_eq!(redacted("redis://cache:6379/0"), "redis://cache:6379/0");
    }

    #[test]
    fn only_redis_urls_are_accepted() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://cache.example:6380/2").is_ok());
        assert!(check_url("http://cache:6379").is_err());
        assert!(check_url("cache:6379").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_redis_is_tried_again_after_a_while_and_stays_lost_since_the_first_failure() {
        let start = Instant::now();
        let health = Health::Up;
        assert!(health.asks_redis(start));
        let lost = health.failed(start);
        assert!(!lost.asks_redis(start));
        tokio::time::advance(RETRY_AFTER - Duration::from_millis(1)).await;
        assert!(!lost.asks_redis(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(lost.asks_redis(Instant::now()));
        // A second failure pushes the next try back but keeps when the loss began.
        let again = lost.failed(Instant::now());
        assert_eq!(
            again,
            Health::Lost {
                since: start,
                retry_at: Instant::now() + RETRY_AFTER
            }
        );
    }
}
