//! Retries: what to do after a failed API call, and how long to wait before the next one.
//!
//! # Design
//!
//! Two questions are kept apart:
//!
//! - **Should we retry?** [`RetryPolicy::decide`] looks only at the error's [`ErrorClass`] and
//!   the attempts made: throttling and transient failures (5xx, timeouts, connection errors)
//!   are retried while attempts remain; a permanent error (400, 404, ...) fails the record at
//!   once with the API's message; a fatal one (403, missing credentials) is never retried.
//! - **How long to wait?** [`Backoff::delay`] is capped exponential backoff with full jitter:
//!   `random(0, min(cap, base × 2^retry))`, `retry` counting from 0. A `Retry-After` from the
//!   server is a floor: the wait is `max(jitter delay, retry_after)`, itself capped at
//!   [`Backoff::max_wait`] so a bogus header cannot park a worker.
//!
//! [`send`] ties them to the [`Limiter`]: it takes a token before *every* attempt, retries
//! included, tells the limiter about throttles and successes, and counts attempts for the
//! ledger.
//!
//! # Constants
//!
//! The AWS Rust SDK's standard mode (api-facts §4.1) uses a base of 1 s for every retryable
//! error, a 20 s cap and 3 attempts; retry behaviour 2.1 uses 1 s for throttling and 50 ms for
//! other errors. Ours are shorter for throttling — **250 ms** ([`THROTTLE_BASE`]) — because
//! our own limiter already paces requests and slows down on every throttle, so the backoff
//! only has to spread the retries of requests throttled together, not to find the quota.
//! Transient failures start at **100 ms** ([`TRANSIENT_BASE`]), the cap is the SDK's **20 s**
//! ([`CAP`]), and `Retry-After` waits are capped at **60 s** ([`MAX_WAIT`]).

use std::future::Future;
use std::time::Duration;

use rand::{Rng, RngExt};
use tokio::sync::watch;

use crate::limiter::Limiter;
use crate::logging::REQUEST;

/// Base delay after a throttle.
pub const THROTTLE_BASE: Duration = Duration::from_millis(250);
/// Base delay after a transient failure.
pub const TRANSIENT_BASE: Duration = Duration::from_millis(100);
/// Longest jittered delay.
pub const CAP: Duration = Duration::from_secs(20);
/// Longest wait of all, `Retry-After` included.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// What kind of failure an API call had; decides whether it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 429 / ThrottlingException: retry, and slow down.
    Throttled,
    /// 5xx, timeout, connection error: retry.
    Transient,
    /// 4xx about this record (400, 404, 409, ...): fail the record at once.
    Permanent,
    /// Not about this record (403 AccessDenied, missing credentials): abort the run.
    Fatal,
}

impl ErrorClass {
    /// The class's name in log lines.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "throttled",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// A failed API call, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// How to react.
    pub class: ErrorClass,
    /// The API's error code (`ThrottlingException`, `BadRequestException`, `timeout`, ...).
    pub code: String,
    /// The API's message.
    pub message: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// Why a request is retried; picks the backoff base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// The server throttled it.
    Throttled,
    /// 5xx, timeout or connection error.
    Transient,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Send the request again, after a backoff.
    Retry(RetryReason),
    /// Keep the error: it is not retryable, or the attempts are used up.
    DontRetry,
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Base delay after a throttle.
    pub throttle_base: Duration,
    /// Base delay after a transient failure.
    pub transient_base: Duration,
    /// Longest jittered delay.
    pub cap: Duration,
    /// Longest wait of all, `Retry-After` included.
    pub max_wait: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            throttle_base: THROTTLE_BASE,
            transient_base: TRANSIENT_BASE,
            cap: CAP,
            max_wait: MAX_WAIT,
        }
    }
}

impl Backoff {
    /// The upper bound of the jittered delay before retry number `retry` (0 for the first
    /// retry): `min(cap, base × 2^retry)`.
    pub fn ceiling(&self, reason: RetryReason, retry: u32) -> Duration {
        let base = match reason {
            RetryReason::Throttled => self.throttle_base,
            RetryReason::Transient => self.transient_base,
        };
        let factor = 1u32 << retry.min(30);
        base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before retry number `retry`: a uniform draw in `[0, ceiling]`, raised to
    /// `retry_after` when the server sent one, and at most `max_wait`.
    pub fn delay<R: Rng + ?Sized>(
        &self,
        reason: RetryReason,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let ceiling = self.ceiling(reason, retry);
        let jitter = ceiling.mul_f64(rng.random_range(0.0..=1.0));
        jitter
            .max(retry_after.unwrap_or(Duration::ZERO))
            .min(self.max_wait)
    }
}

/// The retry policy of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// How long to wait between attempts.
    pub backoff: Backoff,
    /// Whether a transient failure (5xx, timeout, dropped connection) is retried. Not for a
    /// request that is not idempotent (a create): the service may have applied it, so the
    /// caller looks before it sends again ([`RetryPolicy::not_idempotent`]).
    pub transient: bool,
}

impl RetryPolicy {
    /// A policy of `max_attempts` with the default [`Backoff`].
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            backoff: Backoff::default(),
            transient: true,
        }
    }

    /// This policy for a request that is not idempotent: throttles (which the service did
    /// not apply) are still retried, transient failures (whose outcome is unknown) are not.
    pub fn not_idempotent(self) -> RetryPolicy {
        RetryPolicy {
            transient: false,
            ..self
        }
    }

    /// Whether to retry after `error`, with `attempts` requests made so far.
    pub fn decide(&self, error: &ApiError, attempts: u32) -> RetryAction {
        let reason = match error.class {
            ErrorClass::Throttled => RetryReason::Throttled,
            ErrorClass::Transient if self.transient => RetryReason::Transient,
            ErrorClass::Transient | ErrorClass::Permanent | ErrorClass::Fatal => {
                return RetryAction::DontRetry;
            }
        };
        if attempts < self.max_attempts.max(1) {
            RetryAction::Retry(reason)
        } else {
            RetryAction::DontRetry
        }
    }
}

/// The result of one request with its retries.
#[derive(Debug)]
pub struct Sent<T> {
    /// The last outcome.
    pub result: Result<T, ApiError>,
    /// Requests made.
    pub attempts: u32,
}

/// A run's "send nothing more" signal, seen by requests waiting for the limiter or a backoff.
#[derive(Debug, Clone, Default)]
pub struct Halt(Option<watch::Receiver<Option<String>>>);

impl Halt {
    /// A signal that never comes.
    pub fn never() -> Halt {
        Halt(None)
    }

    /// Halts once the watched value is `Some` (a stop reason).
    pub fn on(reason: watch::Receiver<Option<String>>) -> Halt {
        Halt(Some(reason))
    }

    /// Waits for the signal (forever, for [`Halt::never`]).
    async fn halted(&self) {
        match &self.0 {
            Some(rx) => {
                let _ = rx.clone().wait_for(Option::is_some).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// The error of a request that was not sent because the run halted.
pub const HALTED: &str = "halted";

/// Sends one request through the limiter, retrying as the policy says, with the backoff's
/// jitter drawn from `rng` (seed it for deterministic tests). It gives up, without sending,
/// when `halt` comes while it waits for the limiter or a backoff ([`Halt::never`] for a
/// request that never gives up). A request already on the wire is never cancelled: its
/// answer decides the record, so nothing is half-sent.
///
/// Before every attempt it waits for the limiter. A throttled attempt calls
/// [`Limiter::on_throttle`]; an attempt that got past the server's quota, a success or a
/// permanent error (a 400 or 404 still used the quota), calls [`Limiter::on_success`].
pub async fn send<T, F, Fut, R>(
    policy: &RetryPolicy,
    limiter: &Limiter,
    rng: &mut R,
    halt: &Halt,
    mut call: F,
) -> Sent<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
    R: Rng + ?Sized,
{
    let mut attempts = 0;
    loop {
        if !unless_halted(halt, limiter.acquire()).await {
            return halted(attempts);
        }
        attempts += 1;
        let error = match call().await {
            Ok(value) => {
                log_attempt(attempts, None, None);
                limiter.on_success();
                return Sent {
                    result: Ok(value),
                    attempts,
                };
            }
            Err(error) => error,
        };
        report_to_limiter(limiter, error.class);
        match policy.decide(&error, attempts) {
            RetryAction::DontRetry => {
                log_attempt(attempts, Some(&error), None);
                return Sent {
                    result: Err(error),
                    attempts,
                };
            }
            RetryAction::Retry(reason) => {
                let wait = policy
                    .backoff
                    .delay(reason, attempts - 1, error.retry_after, rng);
                log_attempt(attempts, Some(&error), Some(wait));
                if !unless_halted(halt, tokio::time::sleep(wait)).await {
                    return halted(attempts);
                }
            }
        }
    }
}

/// Runs `wait` to its end (true), unless `halt` comes first (false).
async fn unless_halted(halt: &Halt, wait: impl Future<Output = ()>) -> bool {
    tokio::select! {
        biased;
        () = halt.halted() => false,
        () = wait => true,
    }
}

fn halted<T>(attempts: u32) -> Sent<T> {
    log_not_sent(attempts);
    let error = ApiError {
        class: ErrorClass::Fatal,
        code: HALTED.to_owned(),
        message: "the run stopped before this request was sent".to_owned(),
        status: None,
        retry_after: None,
    };
    Sent {
        result: Err(error),
        attempts,
    }
}

/// Tells the limiter what a failed attempt says about the server's quota.
fn report_to_limiter(limiter: &Limiter, class: ErrorClass) {
    match class {
        ErrorClass::Throttled => limiter.on_throttle(),
        ErrorClass::Permanent => limiter.on_success(),
        ErrorClass::Transient | ErrorClass::Fatal => {}
    }
}

/// Logs one attempt of a request: `error` is `None` for an answer that was used, and `wait`
/// the backoff chosen before the next attempt (`None`: no retry).
pub fn log_attempt(attempt: u32, error: Option<&ApiError>, wait: Option<Duration>) {
    let Some(error) = error else {
        tracing::debug!(target: REQUEST, attempt, outcome = "ok", "request");
        return;
    };
    tracing::debug!(
        target: REQUEST,
        attempt,
        outcome = if wait.is_some() { "retry" } else { "failed" },
        class = error.class.name(),
        code = error.code.as_str(),
        status = error.status,
        wait_ms = wait.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        "request"
    );
}

/// Logs a request that was not sent because the run stopped.
fn log_not_sent(attempts: u32) {
    tracing::debug!(
        target: REQUEST,
        attempts,
        outcome = "not_sent",
        "request given up: the run stopped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::RateSetting;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::cell::Cell;
    use tokio::time::Instant;

    fn error(class: ErrorClass) -> ApiError {
        ApiError {
            class,
            code: format!("{class:?}"),
            message: "the API's message".to_string(),
            status: None,
            retry_after: None,
        }
    }

    fn fast_limiter() -> Limiter {
        Limiter::new(RateSetting::Fixed {
            rate: 1000.0,
            burst: 100,
        })
    }

    /// Jitter from a generator seeded from the thread's, as a run draws it.
    fn jitter() -> StdRng {
        StdRng::from_rng(&mut rand::rng())
    }

    /// A call that fails with `failures` in order, then succeeds; counts its calls.
    fn scripted(
        failures: Vec<ApiError>,
        calls: &Cell<u32>,
    ) -> impl FnMut() -> std::future::Ready<Result<u32, ApiError>> + '_ {
        let mut failures = failures.into_iter();
        move || {
            calls.set(calls.get() + 1);
            std::future::ready(match failures.next() {
                Some(error) => Err(error),
                None => Ok(calls.get()),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_halt_stops_requests_waiting_for_the_limiter_but_not_one_on_the_wire() {
        let limiter = Limiter::new(RateSetting::Fixed {
            rate: 1.0,
            burst: 1,
        });
        let policy = RetryPolicy::new(5);
        let (tx, rx) = watch::channel(None);
        let halt = Halt::on(rx);
        let mut rng = StdRng::seed_from_u64(1);
        // The first request takes the only token and is on the wire when the halt comes.
        let first = send(&policy, &limiter, &mut rng, &halt, || async {
            tx.send_replace(Some("stop".to_owned()));
            Ok::<_, ApiError>(1)
        })
        .await;
        assert_eq!((first.result, first.attempts), (Ok(1), 1));
        // The next one would wait a second for a token: it gives up without sending.
        let mut sent = false;
        let second = send(&policy, &limiter, &mut rng, &halt, || {
            sent = true;
            async { Ok::<_, ApiError>(2) }
        })
        .await;
        assert!(!sent);
        assert_eq!(second.attempts, 0);
        assert_eq!(second.result.unwrap_err().code, HALTED);
    }

    #[test]
    fn decide_retries_throttles_and_transients_while_attempts_remain() {
        let policy = RetryPolicy::new(3);
        let throttled = error(ErrorClass::Throttled);
        let transient = error(ErrorClass::Transient);
        assert_eq!(
            policy.decide(&throttled, 1),
            RetryAction::Retry(RetryReason::Throttled)
        );
        assert_eq!(
            policy.decide(&transient, 2),
            RetryAction::Retry(RetryReason::Transient)
        );
        assert_eq!(policy.decide(&transient, 3), RetryAction::DontRetry);
        assert_eq!(
            policy.decide(&error(ErrorClass::Permanent), 1),
            RetryAction::DontRetry
        );
        assert_eq!(
            policy.decide(&error(ErrorClass::Fatal), 1),
            RetryAction::DontRetry
        );
        assert_eq!(
            RetryPolicy::new(0).decide(&throttled, 1),
            RetryAction::DontRetry
        );
        let create = policy.not_idempotent();
        assert_eq!(
            create.decide(&throttled, 1),
            RetryAction::Retry(RetryReason::Throttled)
        );
        assert_eq!(create.decide(&transient, 1), RetryAction::DontRetry);
    }

    #[test]
    fn delays_stay_within_the_capped_ceiling_and_grow() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut previous_mean = Duration::ZERO;
        for retry in 0..12 {
            let ceiling = backoff.ceiling(RetryReason::Throttled, retry);
            assert!(ceiling <= CAP);
            let delays: Vec<Duration> = (0..400)
                .map(|_| backoff.delay(RetryReason::Throttled, retry, None, &mut rng))
                .collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "retry {retry}");
            let mean = delays.iter().sum::<Duration>() / 400;
            if ceiling < CAP {
                assert!(mean > previous_mean, "retry {retry}: {mean:?}");
            }
            previous_mean = mean;
        }
        assert_eq!(
            backoff.ceiling(RetryReason::Throttled, 0),
            Duration::from_millis(250)
        );
        assert_eq!(
            backoff.ceiling(RetryReason::Transient, 3),
            Duration::from_millis(800)
        );
        assert_eq!(backoff.ceiling(RetryReason::Transient, 40), CAP);
    }

    #[test]
    fn retry_after_is_a_floor_and_capped() {
        let backoff = Backoff::default();
        let mut rng = StdRng::seed_from_u64(1);
        let wait = Some(Duration::from_secs(3));
        for _ in 0..100 {
            let delay = backoff.delay(RetryReason::Throttled, 0, wait, &mut rng);
            assert_eq!(delay, Duration::from_secs(3));
        }
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            backoff.delay(RetryReason::Throttled, 0, hour, &mut rng),
            MAX_WAIT
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_are_retried_until_success() {
        let limiter = fast_limiter();
        let calls = Cell::new(0);
        let failures = vec![error(ErrorClass::Throttled), error(ErrorClass::Throttled)];
        let mut rng = StdRng::seed_from_u64(3);
        let sent = send(
            &RetryPolicy::new(5),
            &limiter,
            &mut rng,
            &Halt::never(),
            scripted(failures, &calls),
        )
        .await;
        assert_eq!(sent.result, Ok(3));
        assert_eq!(sent.attempts, 3);
        let stats = limiter.stats();
        assert_eq!(
            (stats.throttled, stats.succeeded, stats.acquired),
            (2, 1, 3)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transients_stop_at_max_attempts() {
        let limiter = fast_limiter();
        let calls = Cell::new(0);
        let failures = vec![error(ErrorClass::Transient); 10];
        let sent = send(
            &RetryPolicy::new(4),
            &limiter,
            &mut jitter(),
            &Halt::never(),
            scripted(failures, &calls),
        )
        .await;
        assert_eq!(sent.result, Err(error(ErrorClass::Transient)));
        assert_eq!(sent.attempts, 4);
        assert_eq!(calls.get(), 4);
        let stats = limiter.stats();
        assert_eq!(
            (stats.throttled, stats.succeeded, stats.acquired),
            (0, 0, 4)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_and_fatal_errors_are_not_retried() {
        for class in [ErrorClass::Permanent, ErrorClass::Fatal] {
            let limiter = fast_limiter();
            let calls = Cell::new(0);
            let sent = send(
                &RetryPolicy::new(5),
                &limiter,
                &mut jitter(),
                &Halt::never(),
                scripted(vec![error(class)], &calls),
            )
            .await;
            assert_eq!(sent.result, Err(error(class)));
            assert_eq!(sent.attempts, 1);
            assert_eq!(calls.get(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let limiter = fast_limiter();
        let calls = Cell::new(0);
        let throttled = ApiError {
            retry_after: Some(Duration::from_secs(3)),
            ..error(ErrorClass::Throttled)
        };
        let start = Instant::now();
        let sent = send(
            &RetryPolicy::new(3),
            &limiter,
            &mut jitter(),
            &Halt::never(),
            scripted(vec![throttled], &calls),
        )
        .await;
        assert_eq!(sent.result, Ok(2));
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(3_100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn waits_follow_the_backoff_of_a_seeded_rng() {
        let limiter = fast_limiter();
        let calls = Cell::new(0);
        let policy = RetryPolicy::new(4);
        let failures = vec![error(ErrorClass::Transient); 3];
        let start = Instant::now();
        let sent = send(
            &policy,
            &limiter,
            &mut StdRng::seed_from_u64(11),
            &Halt::never(),
            scripted(failures, &calls),
        )
        .await;
        assert_eq!(sent.attempts, 4);
        // The same draws, replayed: the run waited exactly their sum (the limiter had tokens).
        let mut rng = StdRng::seed_from_u64(11);
        let expected: Duration = (0..3)
            .map(|retry| {
                policy
                    .backoff
                    .delay(RetryReason::Transient, retry, None, &mut rng)
            })
            .sum();
        let elapsed = start.elapsed();
        assert!(elapsed >= expected, "{elapsed:?} < {expected:?}");
        assert!(
            elapsed <= expected + Duration::from_millis(5),
            "{elapsed:?}"
        );
        assert!(expected <= Duration::from_millis(100 + 200 + 400));
    }

    #[tokio::test(start_paused = true)]
    async fn every_attempt_waits_for_the_limiter() {
        // One token per second and a negligible backoff: 3 attempts need 2 s of tokens.
        let limiter = Limiter::new(RateSetting::Fixed {
            rate: 1.0,
            burst: 1,
        });
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff: Backoff {
                transient_base: Duration::from_millis(1),
                ..Backoff::default()
            },
            transient: true,
        };
        let calls = Cell::new(0);
        let start = Instant::now();
        let failures = vec![error(ErrorClass::Transient); 2];
        let sent = send(
            &policy,
            &limiter,
            &mut jitter(),
            &Halt::never(),
            scripted(failures, &calls),
        )
        .await;
        assert_eq!(sent.attempts, 3);
        assert!(sent.result.is_ok());
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2_010), "{elapsed:?}");
        assert_eq!(limiter.stats().acquired, 3);
    }

    /// The apply bench in paused time: `records` requests from 16 workers through `send`
    /// to a server quota of 200/s with a burst of 10, 2 ms round trip. Returns the time taken
    /// and the throttles.
    async fn bench(setting: RateSetting, records: u64) -> (f64, u64) {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};

        let limiter = Arc::new(Limiter::new(setting));
        // The server's bucket: (tokens, last refill).
        let server = Arc::new(Mutex::new((10.0_f64, Instant::now())));
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (limiter, server, next) = (limiter.clone(), server.clone(), next.clone());
            workers.spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < records {
                    let call = || {
                        let server = server.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            let ok = {
                                let mut bucket = server.lock().unwrap_or_else(|e| e.into_inner());
                                let now = Instant::now();
                                let refill = (now - bucket.1).as_secs_f64() * 200.0;
                                *bucket = ((bucket.0 + refill).min(10.0), now);
                                bucket.0 >= 1.0 && {
                                    bucket.0 -= 1.0;
                                    true
                                }
                            };
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            if ok {
                                Ok(())
                            } else {
                                Err(error(ErrorClass::Throttled))
                            }
                        }
                    };
                    let sent = send(
                        &RetryPolicy::new(10),
                        &limiter,
                        &mut jitter(),
                        &Halt::never(),
                        call,
                    )
                    .await;
                    assert!(sent.result.is_ok(), "gave up after {}", sent.attempts);
                }
            });
        }
        while let Some(joined) = workers.join_next().await {
            assert!(joined.is_ok(), "a worker panicked");
        }
        (start.elapsed().as_secs_f64(), limiter.throttled_count())
    }

    #[tokio::test(start_paused = true)]
    async fn bench_auto_rate_from_far_above_the_quota() {
        let setting = RateSetting::Auto {
            start: 1000.0,
            burst: 10,
        };
        let (secs, throttles) = bench(setting, 6_000).await;
        // Limits: 1.15 × N/Q + 5 s = 39.5 s, under 5 % (300) throttled.
        assert!(secs < 1.15 * 30.0, "took {secs} s");
        assert!(throttles < 150, "{throttles} throttles");
    }

    #[tokio::test(start_paused = true)]
    async fn bench_fixed_rate_at_the_quota() {
        let setting = RateSetting::Fixed {
            rate: 200.0,
            burst: 10,
        };
        let (secs, throttles) = bench(setting, 6_000).await;
        // Limits: 1.05 × N/Q + 2 s = 33.5 s, under 1 % (60) throttled.
        assert!(secs < 1.05 * 30.0, "took {secs} s");
        assert!(throttles < 10, "{throttles} throttles");
    }

    #[test]
    fn the_limiter_and_sending_work_across_tasks() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: &T) {}
        let limiter = fast_limiter();
        assert_send_sync(&limiter);
        let policy = RetryPolicy::new(3);
        let (mut rng, halt) = (jitter(), Halt::never());
        let future = send(&policy, &limiter, &mut rng, &halt, || async {
            Ok::<_, ApiError>(())
        });
        assert_send(&future);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_counts_as_through_the_quota() {
        let limiter = fast_limiter();
        let calls = Cell::new(0);
        let failures = vec![error(ErrorClass::Permanent)];
        let _ = send(
            &RetryPolicy::new(3),
            &limiter,
            &mut jitter(),
            &Halt::never(),
            scripted(failures, &calls),
        )
        .await;
        assert_eq!(limiter.stats().succeeded, 1);
        assert_eq!(limiter.throttled_count(), 0);
    }
}
