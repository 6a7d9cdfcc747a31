//! The decision tree every target shares, over the small [`Remote`] trait.
//!
//! One record goes through it like this:
//!
//! ```text
//! find ── by id: the id column (empty → when_missing) ──▶ read ──┬─ found ──▶ merge (pure)
//!      └─ by search key: search (paged) ── 0 → when_missing      │              │
//!                                       ── 2+ → failed, ambiguous │   refused → failed / invalid
//!                                       ── 1 ─────────────────────┘   nothing differs → unchanged
//!                                                                     plan → would_update
//!                                                                     apply → write (gone → when_missing)
//! when_missing: skip → skipped (plan: not_found) · fail → failed · create → would_create / create
//! ```
//!
//! Everything a target does not say is decided here, once, for every target; a target never
//! builds a ledger status itself. (The local sync state comes before all this: a record whose
//! payload the target already accepted never reaches the driver; see `pipeline`.)

use std::future::Future;

use super::{
    Desired, FieldChange, LastChange, Mode, Outcome, Pace, Settled, desired, errored, failed,
    missing, settled,
};
use crate::config::{Config, MatchBy, WhenMissing};
use crate::ledger::Status;
use crate::mapping::{Mapped, Problem};
use crate::retry::{ApiError, ErrorClass};

/// What a merge or a create decides: the payload to send and the fields it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged<W> {
    /// What the write (or create) sends.
    pub write: W,
    /// The fields that differ.
    pub changed: Vec<FieldChange>,
}

/// A record the target's rules refuse to write (Connect's e-mail guard, a member a
/// directory manages). Nothing is sent for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `failed`, or `invalid` when the record can never be written as it is.
    pub status: Status,
    /// Machine-readable reason, for the ledger's `error.code`.
    pub code: &'static str,
    /// What is wrong and what to do about it; names fields, never values.
    pub message: String,
    /// The fields the record would have changed.
    pub changed: Vec<FieldChange>,
}

/// One target's own logic: how to find a record, how to merge into it, how to write it.
///
/// Every request a method makes goes through the [`Pace`] it is given, with its API
/// operation's name, which counts its attempts.
pub trait Remote: Sync {
    /// What the target calls one of its records, for messages ("profile", "user").
    const NOUN: &'static str;
    /// A record as read from the target.
    type Current: Send;
    /// What a write sends.
    type Write: Send + Sync;
    /// What a create sends.
    type Create: Send + Sync;

    /// The record with this id, or `None` when it does not exist.
    fn read(
        &self,
        id: &str,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<Option<Self::Current>, ApiError>> + Send;

    /// Every record whose `key` is `value`, with its id. A target that finds records by id
    /// only keeps this default (the config refuses `search_key` for it, so it is never called).
    fn search(
        &self,
        key: &str,
        value: &str,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<Vec<(String, Self::Current)>, ApiError>> + Send {
        let _ = (key, value, pace);
        async {
            Err(ApiError {
                class: ErrorClass::Fatal,
                code: "configuration".to_owned(),
                message: format!("this target finds each {} by [match] id only", Self::NOUN),
                status: None,
                retry_after: None,
            })
        }
    }

    /// Merges the mapped values into the current record. Pure.
    fn merge(
        &self,
        current: Self::Current,
        desired: &Desired<'_>,
    ) -> Result<Merged<Self::Write>, Refusal>;

    /// Writes a merged record.
    fn write(
        &self,
        id: &str,
        write: &Self::Write,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// What creating the record would send; `None` when the target does not create records.
    /// `id` is the record's own id, when it has one. Pure.
    fn creation(&self, id: Option<&str>, desired: &Desired<'_>) -> Option<Merged<Self::Create>>;

    /// Creates a record; returns its id.
    fn create(
        &self,
        id: Option<&str>,
        create: &Self::Create,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// Whether this error, answering a write, says the record does not exist.
    fn is_gone(&self, error: &ApiError) -> bool;

    /// The record's last-modified time as read (epoch milliseconds), for a target whose
    /// [`Remote::last_change`] tracks changes; the sync state stores it with the payload
    /// hash. `None` by default.
    fn modified(current: &Self::Current) -> Option<i64> {
        let _ = current;
        None
    }

    /// The record's last change as the target tells it without reading the record, from an
    /// index read at most once per run (Connect's ListUsers). The pipeline skips a record by
    /// its sync state only when the stored payload hash matches and, for a target that
    /// tracks changes, the stored last-modified time is this one. By default
    /// [`LastChange::NotTracked`], with no request.
    fn last_change(
        &self,
        id: &str,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<LastChange, ApiError>> + Send {
        let _ = (id, pace);
        async { Ok(LastChange::NotTracked) }
    }
}

/// Syncs one mapped, valid record through `remote`.
pub async fn sync<R: Remote>(
    remote: &R,
    config: &Config,
    mapped: &Mapped,
    mode: Mode,
    pace: &Pace<'_>,
) -> Outcome {
    let desired = desired(config, mapped);
    let when = config.matching.when_missing;
    let id_name = config.target.kind().id_name();
    let noun = R::NOUN;
    let (id, current) = match &config.matching.by {
        MatchBy::Id(_) => {
            let Some(id) = mapped.target_id.as_deref() else {
                // Mapping reports an empty id as a problem, so valid records have one.
                return missing(when, mode, &format!("the record has no {id_name}"), 0);
            };
            match remote.read(id, pace).await {
                Ok(Some(current)) => (id.to_owned(), current),
                Ok(None) => {
                    let why = format!("no {noun} has this {id_name}");
                    return absent(remote, config, mapped, &desired, mode, pace, &why).await;
                }
                Err(e) => return failed(e, Some(id.to_owned()), pace.attempts()),
            }
        }
        MatchBy::Search { key, .. } => {
            let value = mapped.search_value.as_deref().unwrap_or_default();
            let mut found = match remote.search(key, value, pace).await {
                Ok(found) => found,
                Err(e) => return failed(e, None, pace.attempts()),
            };
            match (found.pop(), found.len()) {
                (None, _) => {
                    let why = format!("no {noun} has {key} = this record's value");
                    return absent(remote, config, mapped, &desired, mode, pace, &why).await;
                }
                (Some(one), 0) => one,
                (Some(_), others) => {
                    return failed(ambiguous(others + 1, noun, key), None, pace.attempts());
                }
            }
        }
    };
    let seen = R::modified(&current);
    let merged = match remote.merge(current, &desired) {
        Ok(merged) => merged,
        Err(refusal) => return refused(refusal, id, pace.attempts()),
    };
    let outcome = match (merged.changed.is_empty(), mode) {
        (true, _) => settled(Status::Unchanged, Some(id), merged.changed, pace.attempts()),
        (false, Mode::Plan) => settled(
            Status::WouldUpdate,
            Some(id),
            merged.changed,
            pace.attempts(),
        ),
        (false, Mode::Apply) => {
            let gone = format!("the {noun} was deleted while it was being updated");
            write(remote, &id, merged, when, pace, &gone).await
        }
    };
    // The time as read, before our own write changed it: the next run that finds another
    // time reads the record once more, so nobody else's change made after this read is
    // missed (see ARCHITECTURE.md, "Sync state").
    match outcome {
        Outcome::Settled(settled) if settled.error.is_none() => Outcome::Settled(Settled {
            last_modified: seen,
            ..settled
        }),
        other => other,
    }
}

/// Writes a merged record; a target's "no such record" answer follows `when_missing`.
async fn write<R: Remote>(
    remote: &R,
    id: &str,
    merged: Merged<R::Write>,
    when: WhenMissing,
    pace: &Pace<'_>,
    gone: &str,
) -> Outcome {
    match remote.write(id, &merged.write, pace).await {
        Ok(()) => settled(
            Status::Updated,
            Some(id.to_owned()),
            merged.changed,
            pace.attempts(),
        ),
        Err(e) if remote.is_gone(&e) => missing(when, Mode::Apply, gone, pace.attempts()),
        Err(e) => failed(e, Some(id.to_owned()), pace.attempts()),
    }
}

/// No target record matches: `when_missing` decides; `create` creates (or, in `plan`,
/// says it would), unless the record breaks the create rules found before the network.
#[allow(clippy::too_many_arguments)]
async fn absent<R: Remote>(
    remote: &R,
    config: &Config,
    mapped: &Mapped,
    desired: &Desired<'_>,
    mode: Mode,
    pace: &Pace<'_>,
    why: &str,
) -> Outcome {
    let when = config.matching.when_missing;
    let creation = match when {
        WhenMissing::Create => remote.creation(mapped.target_id.as_deref(), desired),
        WhenMissing::Skip | WhenMissing::Fail => None,
    };
    let Some(creation) = creation else {
        return missing(when, mode, why, pace.attempts());
    };
    if !mapped.create_problems.is_empty() {
        return invalid_for_create(&mapped.create_problems, pace.attempts());
    }
    let id = mapped.target_id.clone();
    if mode == Mode::Plan {
        return settled(Status::WouldCreate, id, creation.changed, pace.attempts());
    }
    match remote.create(id.as_deref(), &creation.write, pace).await {
        Ok(new_id) => settled(
            Status::Created,
            Some(new_id),
            creation.changed,
            pace.attempts(),
        ),
        Err(e) => failed(e, id, pace.attempts()),
    }
}

/// A record that cannot be created as it is: `invalid`, with every problem.
fn invalid_for_create(problems: &[Problem], attempts: u32) -> Outcome {
    let message = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    let mut settled = errored(
        Status::Invalid,
        None,
        Vec::new(),
        attempts,
        "invalid_for_create",
        format!("cannot create the record: {message}"),
    );
    if let Some(error) = &mut settled.error {
        error.problems = problems.to_vec();
    }
    Outcome::Settled(settled)
}

/// A record the target's rules refuse, as its outcome.
fn refused(refusal: Refusal, id: String, attempts: u32) -> Outcome {
    Outcome::Settled(errored(
        refusal.status,
        Some(id),
        refusal.changed,
        attempts,
        refusal.code,
        refusal.message,
    ))
}

fn ambiguous(count: usize, noun: &str, key: &str) -> ApiError {
    ApiError {
        class: ErrorClass::Permanent,
        code: "ambiguous".to_owned(),
        message: format!("ambiguous: {count} {noun}s match {key}"),
        status: None,
        retry_after: None,
    }
}
