//! Targets: the APIs profilesync writes to.
//!
//! Every target runs one record through the same decision tree, [`driver::sync`]: find the
//! target's record (by id, or by a search key, with ambiguity and `when_missing`), merge the
//! mapped values into it with a pure function, and write (or, for `plan`, only report) what
//! differs. A target implements the small [`driver::Remote`] trait with only its own logic:
//! how to read and search, how to merge, how to write and create, and which error on a write
//! means that the record is gone. [`aws`] holds what both AWS targets share: the service
//! configuration from the AWS chain and one classification of AWS errors.
//!
//! Targets do not pace or retry on their own: every request goes through [`Pace::send`],
//! which takes a permit from its API operation's [`crate::limiter::Limiter`] before each
//! attempt and retries as the [`crate::retry::RetryPolicy`] says. A target only classifies
//! what the API answered ([`crate::retry::ApiError`]), so the retry policy lives in one place.

pub mod aws;
pub mod connect_user;
pub mod customer_profiles;
pub mod driver;
pub mod genesys_ucs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::config::{Config, WhenMissing};
use crate::ledger::{EntryError, Status};
use crate::limiter::Limiters;
use crate::mapping::{Mapped, Value};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tracing::Instrument;

use crate::retry::{self, ApiError, ErrorClass, Halt, RetryPolicy};
use crate::state::TargetIdentity;

/// What the run does with the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read current state and report the differences; write nothing.
    Plan,
    /// Write the changes.
    Apply,
}

impl Mode {
    /// The command that runs in this mode: `plan` or `apply`.
    pub fn command(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        }
    }
}

/// How one record settled at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The ledger status.
    pub status: Status,
    /// ProfileId / UserId / customer_id, once known.
    pub target_id: Option<String>,
    /// The fields that differ or were sent.
    pub changed: Vec<FieldChange>,
    /// Requests made for this record.
    pub attempts: u32,
    /// Why, for `failed`.
    pub error: Option<EntryError>,
    /// `failed` because the target gave no usable answer after every retry (no connection,
    /// timeouts, 5xx, 503 included where it counts as a throttle): a run stops after many of
    /// these in a row.
    pub unanswered: bool,
    /// The record's last-modified time on the target as read, before any write (epoch
    /// milliseconds; Connect users' `LastModifiedTime`), for the sync state; `None` when the
    /// target keeps none or the record was not read.
    pub last_modified: Option<i64>,
}

/// One record read ahead of its write, in a batch with others ([`Target::read_batch`]), for
/// [`Target::sync`]. Only Customer Profiles reads in batches.
#[derive(Debug)]
pub struct Prefetched {
    /// The profile, `None` when there is none; an error for this id alone or the whole call.
    profile: customer_profiles::ProfileRead,
    /// Requests the batch's call made; every record of the batch counts them as its own.
    attempts: u32,
}

/// What a target tells of a record's last change without reading the record, for the sync
/// state ([`driver::Remote::last_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastChange {
    /// The target has no cheap index of changes: the stored payload hash alone decides.
    NotTracked,
    /// The record's last-modified time now, in epoch milliseconds.
    At(i64),
    /// The index does not know the record, or gives it no time: read it.
    Unknown,
}

/// The end of one record's trip to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The record settled.
    Settled(Settled),
    /// A failure that is not about this record (access denied, no credentials): stop the
    /// run. The record is not settled, so a resumed run sends it again.
    Abort(String),
}

/// One record's (or the preflight's) pacing: the run's limiters and retry policy, and the
/// requests made so far for it, which the ledger's `attempts` reports.
pub struct Pace<'a> {
    /// The run's token buckets, one per API operation.
    pub limiters: &'a Limiters,
    /// The run's retry policy.
    pub policy: &'a RetryPolicy,
    /// The run's stop signal: requests not yet sent give up when it comes.
    pub halt: Halt,
    /// Requests made through this pace.
    pub attempts: AtomicU32,
}

impl Pace<'_> {
    /// Requests made through this pace so far.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Counts requests made on this pace's behalf elsewhere (a batch another record sent).
    pub fn count(&self, requests: u32) {
        self.attempts.fetch_add(requests, Ordering::Relaxed);
    }

    /// Sends one request of `operation` through that operation's limiter with retries,
    /// counting its attempts.
    pub async fn send<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let (result, attempts) = self.send_shared(operation, call).await;
        self.count(attempts);
        result
    }

    /// [`Pace::send`] for a request that is not idempotent (a create): a transient failure
    /// is returned at once, not retried, since the service may have applied it (see
    /// [`RetryPolicy::not_idempotent`]); the caller looks before it sends again.
    pub async fn send_not_idempotent<T, F, Fut>(
        &self,
        operation: &'static str,
        call: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let policy = self.policy.not_idempotent();
        let pace = Pace {
            policy: &policy,
            halt: self.halt.clone(),
            limiters: self.limiters,
            attempts: AtomicU32::new(0),
        };
        let result = pace.send(operation, call).await;
        self.count(pace.attempts());
        result
    }

    /// [`Pace::send`] for a request made on behalf of several records (a batched read):
    /// returns its attempts instead of counting them, so that each record counts its share.
    pub async fn send_shared<T, F, Fut>(
        &self,
        operation: &'static str,
        call: F,
    ) -> (Result<T, ApiError>, u32)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let limiter = self.limiters.get(operation);
        let sent = retry::send(self.policy, limiter, &mut rng, &self.halt, call)
            .instrument(crate::logging::request_span(operation))
            .await;
        (sent.result, sent.attempts)
    }
}

/// Why a run cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightError {
    /// The configuration is wrong (exit 2), rather than access or reachability (exit 3).
    pub config: bool,
    /// What is wrong.
    pub message: String,
}

impl PreflightError {
    /// A configuration error (exit 2).
    pub fn config(message: impl Into<String>) -> PreflightError {
        PreflightError {
            config: true,
            message: message.into(),
        }
    }

    /// A preflight request that failed for a reason other than the configuration: the
    /// target could not be reached after every retry, or refused the credentials (exit 3).
    pub fn unreachable(error: &ApiError, attempts: u32) -> PreflightError {
        PreflightError {
            config: false,
            message: match error.class {
                ErrorClass::Transient | ErrorClass::Throttled => format!(
                    "the target could not be reached after {attempts} attempts: {}: {}",
                    error.code, error.message
                ),
                ErrorClass::Permanent | ErrorClass::Fatal => {
                    format!("{}: {}", error.code, error.message)
                }
            },
        }
    }
}

/// A connected target.
pub enum Target {
    /// Amazon Connect Customer Profiles.
    CustomerProfiles(customer_profiles::CustomerProfiles),
    /// Amazon Connect users.
    ConnectUser(connect_user::ConnectUser),
    /// Genesys Context Services (UCS) profiles.
    GenesysUcs(genesys_ucs::GenesysUcs),
}

impl Target {
    /// Checks what every record depends on (the domain or instance exists, the credentials
    /// work) before the first record is sent. Returns warnings for what it could not check.
    pub async fn preflight(
        &self,
        config: &Config,
        pace: &Pace<'_>,
    ) -> Result<Vec<String>, PreflightError> {
        match self {
            Self::CustomerProfiles(t) => t.preflight(pace).await,
            Self::ConnectUser(t) => t.preflight(config, pace).await,
            Self::GenesysUcs(t) => t.preflight(pace).await,
        }
    }

    /// The identity the sync state is kept under, learnt from the target once its preflight
    /// passed: Customer Profiles asks STS for the account (a request), Connect users take
    /// the instance ARN the preflight read, Genesys its base URL and tenant.
    pub async fn identity(&self, pace: &Pace<'_>) -> Result<TargetIdentity, PreflightError> {
        match self {
            Self::CustomerProfiles(t) => t.identity(pace).await,
            Self::ConnectUser(t) => Ok(t.identity()),
            Self::GenesysUcs(t) => Ok(t.identity()),
        }
    }

    /// The AWS region the target's requests go to (none for Genesys).
    pub fn region(&self) -> Option<String> {
        match self {
            Self::CustomerProfiles(t) => t.region(),
            Self::ConnectUser(t) => Some(t.region().to_owned()),
            Self::GenesysUcs(_) => None,
        }
    }

    /// Syncs one mapped, valid record; `read`, when the record was read ahead
    /// ([`Target::read_batch`]), stands for the driver's read of it.
    pub async fn sync(
        &self,
        config: &Config,
        mapped: &Mapped,
        mode: Mode,
        known: driver::Known<'_>,
        pace: &Pace<'_>,
        read: Option<Prefetched>,
    ) -> Outcome {
        let read = read.map(|read| {
            pace.count(read.attempts);
            read.profile
        });
        match self {
            Self::CustomerProfiles(t) => {
                driver::sync(t, config, mapped, mode, known, pace, read).await
            }
            Self::ConnectUser(t) => driver::sync(t, config, mapped, mode, known, pace, None).await,
            Self::GenesysUcs(t) => driver::sync(t, config, mapped, mode, known, pace, None).await,
        }
    }

    /// How many ids one batched read takes, for a target that reads several records by id in
    /// one call (Customer Profiles' `BatchGetProfile`: 20); `None` for the others.
    pub fn batch_read(&self) -> Option<usize> {
        match self {
            Self::CustomerProfiles(_) => Some(customer_profiles::BATCH_MAX),
            Self::ConnectUser(_) | Self::GenesysUcs(_) => None,
        }
    }

    /// Reads records by id in one batched call (at most [`Target::batch_read`] ids): one
    /// [`Prefetched`] per id, in order. A target without batched reads reads nothing (an
    /// empty list), and its records are read by the driver.
    pub async fn read_batch(&self, ids: &[String], pace: &Pace<'_>) -> Vec<Prefetched> {
        match self {
            Self::CustomerProfiles(t) => {
                let (reads, attempts) = t.read_many(ids, pace).await;
                reads
                    .into_iter()
                    .map(|profile| Prefetched { profile, attempts })
                    .collect()
            }
            Self::ConnectUser(_) | Self::GenesysUcs(_) => Vec::new(),
        }
    }

    /// How many days the target keeps a record nobody writes (Customer Profiles' domain
    /// `DefaultExpirationDays`, read by the preflight); `None` for targets whose records do
    /// not expire, or when the preflight could not read it.
    pub fn expiration_days(&self) -> Option<u32> {
        match self {
            Self::CustomerProfiles(t) => t.expiration_days(),
            Self::ConnectUser(_) | Self::GenesysUcs(_) => None,
        }
    }

    /// Deletes (apply) or would delete (plan) the record `id`; see [`driver::delete`].
    pub async fn delete(&self, id: &str, mode: Mode, pace: &Pace<'_>) -> Outcome {
        match self {
            Self::CustomerProfiles(t) => driver::delete(t, id, mode, pace).await,
            Self::ConnectUser(t) => driver::delete(t, id, mode, pace).await,
            Self::GenesysUcs(t) => driver::delete(t, id, mode, pace).await,
        }
    }

    /// The ids of the records whose search key `key` holds `value` (see
    /// [`driver::Remote::search`]).
    pub async fn search_ids(
        &self,
        key: &str,
        value: &str,
        pace: &Pace<'_>,
    ) -> Result<Vec<String>, ApiError> {
        use driver::Remote;
        fn ids<C>(found: Vec<(String, C)>) -> Vec<String> {
            found.into_iter().map(|(id, _)| id).collect()
        }
        match self {
            Self::CustomerProfiles(t) => t.search(key, &[value], pace).await.map(ids),
            Self::ConnectUser(t) => t.search(key, &[value], pace).await.map(ids),
            Self::GenesysUcs(t) => t.search(key, &[value], pace).await.map(ids),
        }
    }

    /// What the target tells of the last change of the record `id` without reading it; see
    /// [`driver::Remote::last_change`].
    pub async fn last_change(&self, id: &str, pace: &Pace<'_>) -> Result<LastChange, ApiError> {
        use driver::Remote;
        match self {
            Self::CustomerProfiles(t) => t.last_change(id, pace).await,
            Self::ConnectUser(t) => t.last_change(id, pace).await,
            Self::GenesysUcs(t) => t.last_change(id, pace).await,
        }
    }
}

/// One field a record changes, or would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The target field name.
    pub field: String,
    /// The target's current value (`""` when it has none), when it was read.
    pub from: Option<String>,
    /// The value sent, or to send (`""` clears).
    pub to: String,
}

/// The values a record sets, by target field name (`""` clears).
pub type Changes = BTreeMap<String, String>;

/// A record's mapped values by target field name, in rule order.
pub type Desired<'m> = [(String, &'m Value)];

/// The record's mapped values, by target field name, in rule order.
pub fn desired<'m>(config: &Config, mapped: &'m Mapped) -> Vec<(String, &'m Value)> {
    mapped
        .fields
        .iter()
        .map(|(index, value)| (config.rules[*index].name.clone(), value))
        .collect()
}

/// A single value as text: a `split` list joined by commas, `""` for a cleared field.
pub fn text(value: &Value) -> String {
    match value {
        Value::Set(v) => v.clone(),
        Value::Clear => String::new(),
        Value::Many(values) => values.join(","),
    }
}

/// The changes of a record for a single-valued target: field name → value, `""` to clear.
pub fn changes(desired: &Desired<'_>) -> Changes {
    desired
        .iter()
        .map(|(field, value)| (field.clone(), text(value)))
        .collect()
}

/// The fields whose desired value differs from the current one (absent counts as `""`).
pub fn diff(current: &BTreeMap<String, String>, desired: &Changes) -> Vec<FieldChange> {
    desired
        .iter()
        .filter_map(|(field, to)| {
            let from = current.get(field).map_or("", String::as_str);
            (from != to.as_str()).then(|| FieldChange {
                field: field.clone(),
                from: Some(from.to_owned()),
                to: to.clone(),
            })
        })
        .collect()
}

/// Every desired value as a change whose current value was not read.
pub fn unread(desired: &Changes) -> Vec<FieldChange> {
    desired
        .iter()
        .map(|(field, to)| FieldChange {
            field: field.clone(),
            from: None,
            to: to.clone(),
        })
        .collect()
}

/// A settled record with no error.
pub fn settled(
    status: Status,
    target_id: Option<String>,
    changed: Vec<FieldChange>,
    attempts: u32,
) -> Outcome {
    Outcome::Settled(Settled {
        status,
        target_id,
        changed,
        attempts,
        error: None,
        unanswered: false,
        last_modified: None,
    })
}

/// A `failed` record, or an abort when the error is not about the record.
pub fn failed(error: ApiError, target_id: Option<String>, attempts: u32) -> Outcome {
    if error.class == ErrorClass::Fatal {
        return Outcome::Abort(format!("{}: {}", error.code, error.message));
    }
    let message = match error.class {
        ErrorClass::Throttled | ErrorClass::Transient => {
            format!("{} (gave up after {attempts} attempts)", error.message)
        }
        _ => error.message,
    };
    let unanswered = error.class == ErrorClass::Transient || error.status == Some(503);
    Outcome::Settled(Settled {
        unanswered,
        ..errored(
            Status::Failed,
            target_id,
            Vec::new(),
            attempts,
            error.code,
            message,
        )
    })
}

/// A settled record that did not end well: its status and why (`code`, `message`).
pub fn errored(
    status: Status,
    target_id: Option<String>,
    changed: Vec<FieldChange>,
    attempts: u32,
    code: impl Into<String>,
    message: String,
) -> Settled {
    Settled {
        status,
        target_id,
        changed,
        attempts,
        unanswered: false,
        last_modified: None,
        error: Some(EntryError {
            code: code.into(),
            message,
            problems: Vec::new(),
        }),
    }
}

/// What happens when no target record matches, as a settled outcome (`create` aside). Each
/// says why with the code `not_found` (`failed`, `skipped`, and `plan`'s `not_found` alike),
/// so the ledger and the diff report can list the records nothing was written for.
pub fn missing(when: WhenMissing, mode: Mode, what: &str, attempts: u32) -> Outcome {
    let status = match (mode, when) {
        (Mode::Plan, _) => Status::NotFound,
        (Mode::Apply, WhenMissing::Skip) => Status::Skipped,
        (Mode::Apply, WhenMissing::Fail | WhenMissing::Create) => Status::Failed,
    };
    let message = format!("{what}, and [match] when_missing = \"{}\"", when.name());
    Outcome::Settled(errored(
        status,
        None,
        Vec::new(),
        attempts,
        "not_found",
        message,
    ))
}

/// `Retry-After` in seconds; anything else (a date, a negative or huge number) is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

/// A URI path segment, percent-encoded (ids may hold any character).
pub fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A `reqwest` request that got no answer, classified: timeouts and connection failures are
/// transient, anything else (a request that cannot be built) is the same for every record.
pub fn transport(error: reqwest::Error) -> ApiError {
    let (class, code) = if error.is_timeout() {
        (ErrorClass::Transient, "timeout")
    } else if error.is_connect() || error.is_request() || error.is_body() || error.is_decode() {
        (ErrorClass::Transient, "connection")
    } else {
        (ErrorClass::Fatal, "configuration")
    };
    ApiError {
        class,
        code: code.to_owned(),
        message: describe(&error.without_url()),
        status: None,
        retry_after: None,
    }
}

/// An error and its sources, one clause each, without repeats.
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_one_path_segment() {
        assert_eq!(path_segment("a1b2-c3_d.~"), "a1b2-c3_d.~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn retry_after_takes_only_sane_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        for junk in ["-1", "inf", "NaN", "1e300", "Wed, 21 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(junk), None, "{junk}");
        }
    }

    #[test]
    fn diff_treats_absent_as_empty() {
        let current: BTreeMap<String, String> = [
            ("FirstName".into(), "Ana".into()),
            ("LastName".into(), "Lopez".into()),
        ]
        .into();
        let desired: Changes = [
            ("FirstName".into(), "Ana".into()),
            ("LastName".into(), "López".into()),
            ("MiddleName".into(), String::new()),
            ("Address.City".into(), "Lyon".into()),
        ]
        .into();
        let changes = diff(&current, &desired);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["Address.City", "LastName"]);
        assert_eq!(changes[0].from.as_deref(), Some(""));
        assert_eq!(changes[1].from.as_deref(), Some("Lopez"));
        assert_eq!(changes[1].to, "López");
    }

    #[test]
    fn fatal_errors_abort_and_others_fail_the_record() {
        let error = |class| ApiError {
            class,
            code: "X".into(),
            message: "m".into(),
            status: None,
            retry_after: None,
        };
        assert!(matches!(
            failed(error(ErrorClass::Fatal), None, 1),
            Outcome::Abort(_)
        ));
        let Outcome::Settled(s) = failed(error(ErrorClass::Transient), None, 8) else {
            panic!()
        };
        assert_eq!(s.status, Status::Failed);
        assert!(s.unanswered);
        assert!(s.error.unwrap().message.contains("after 8 attempts"));
    }

    #[test]
    fn only_records_the_target_did_not_answer_count_toward_an_outage() {
        let unanswered = |class, status| {
            let error = ApiError {
                class,
                code: "X".into(),
                message: "m".into(),
                status,
                retry_after: None,
            };
            match failed(error, None, 8) {
                Outcome::Settled(s) => s.unanswered,
                Outcome::Abort(_) => panic!("not fatal"),
            }
        };
        assert!(unanswered(ErrorClass::Transient, None));
        assert!(unanswered(ErrorClass::Transient, Some(502)));
        assert!(unanswered(ErrorClass::Throttled, Some(503)));
        assert!(!unanswered(ErrorClass::Throttled, Some(429)));
        assert!(!unanswered(ErrorClass::Permanent, Some(400)));
    }
}
