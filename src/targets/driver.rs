//! The decision tree every target shares, over the small [`Remote`] trait.
//!
//! One record goes through it like this:
//!
//! ```text
//! a twin (an earlier row naming the same record) with duplicates = "fail" ──▶ failed
//! find ── by id: the id column (empty → when_missing) ──────────────▶ read ──┬─ found ──▶ merge (pure)
//!      ├─ by search key, a twin found or created it: read by its id ─────────┤              │
//!      └─ by search key: search the written value (and the raw one) ─────────┘   refused → failed / invalid
//!                  ── 0 → when_missing      ── 2+ → failed, ambiguous (ids)    nothing differs ─┬─ refresh due → write → refreshed
//!                                                                                              │   (plan: would_refresh)
//!                                                                                              └─ else unchanged
//!                                                                             plan → would_update
//!                                                                             apply → write (gone → when_missing)
//! when_missing: skip → skipped (plan: not_found) · fail → failed · create → would_create / create
//! create: an answer lost (transient) → search again: found → created; none → create again
//! a record the sync state called synced that is gone → `expired_or_deleted`
//! ```
//!
//! Everything a target does not say is decided here, once, for every target; a target never
//! builds a ledger status itself. (The local sync state comes before all this: a record whose
//! payload the target already accepted, recently enough, never reaches the driver; see
//! `pipeline`. What the pipeline knows of a record beyond its values comes in [`Known`].)

use std::future::Future;

use super::{
    Desired, FieldChange, LastChange, Mode, Outcome, Pace, Settled, changes, desired, errored,
    failed, missing, settled, unread,
};
use crate::config::{Config, Duplicates, MatchBy, WhenMissing};
use crate::ledger::Status;
use crate::mapping::{Mapped, Problem};
use crate::retry::{ApiError, ErrorClass, RetryReason};

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

    /// Every record whose `key` is one of `values` (the record's search value, then the
    /// value as read when it differs), with its id, each record once. A target that finds
    /// records by id only keeps this default (the config refuses `search_key` for it, so it
    /// is never called).
    fn search(
        &self,
        key: &str,
        values: &[&str],
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<Vec<(String, Self::Current)>, ApiError>> + Send {
        let _ = (key, values, pace);
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

    /// What to write to renew a record that already holds what the record says, for a
    /// target that expires records nobody writes (Customer Profiles); `None` (the default)
    /// for a target whose records do not expire. Pure.
    fn refresh(&self, desired: &Desired<'_>) -> Option<Self::Write> {
        let _ = desired;
        None
    }

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

    /// Deletes the record with this id (`[mirror] deletes = "delete"`, `erase`). An error
    /// [`Remote::is_gone`] calls missing means it was already gone, which [`delete`] counts as
    /// deleted. By default the target does not delete records: a permanent
    /// `delete_not_supported` error, with no request.
    fn delete(
        &self,
        id: &str,
        pace: &Pace<'_>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        let _ = (id, pace);
        async {
            Err(ApiError {
                class: ErrorClass::Permanent,
                code: "delete_not_supported".to_owned(),
                message: format!("this target does not delete {}s", Self::NOUN),
                status: None,
                retry_after: None,
            })
        }
    }
}

/// Deletes one target record a mirror run found absent from the source: `would_delete` in a
/// plan (no request); in an apply `deleted` when the target confirms, or says it no longer
/// has the record (already gone is the state we want), else `failed` (an error that is not
/// about the record stops the run).
pub async fn delete<R: Remote>(remote: &R, id: &str, mode: Mode, pace: &Pace<'_>) -> Outcome {
    if mode == Mode::Plan {
        return settled(Status::WouldDelete, Some(id.to_owned()), Vec::new(), 0);
    }
    match remote.delete(id, pace).await {
        Ok(()) => settled(
            Status::Deleted,
            Some(id.to_owned()),
            Vec::new(),
            pace.attempts(),
        ),
        Err(e) if remote.is_gone(&e) => settled(
            Status::Deleted,
            Some(id.to_owned()),
            Vec::new(),
            pace.attempts(),
        ),
        Err(e) => failed(e, Some(id.to_owned()), pace.attempts()),
    }
}

/// What the pipeline knows of a record beyond its mapped values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// An earlier row of this run's input that names the same target record, settled.
    pub twin: Option<&'a Twin>,
    /// Our last write of the record is old enough (or unknown) that the target may expire
    /// it: write it even when nothing differs.
    pub refresh_due: bool,
    /// The sync state holds the record as synced: if the target no longer has it, it expired
    /// or was deleted by hand (`expired_or_deleted`).
    pub synced: bool,
}

/// An earlier row of the input naming the same target record (the same id or search
/// value), as it settled (see `pipeline::twins`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// The record number of the first row of the input naming the target record.
    pub first: u64,
    /// How it settled; `unchanged` stands for any outcome but a create once the row is no
    /// longer in flight (only creates are kept for the rest of the run).
    pub status: Status,
    /// The target record it found or created, if known.
    pub target_id: Option<String>,
}

/// Syncs one mapped, valid record through `remote`. `read` is the record's read by id when
/// it was made ahead, in a batch with others (the pipeline's read-ahead stage); without it,
/// a record matched by id is read here.
pub async fn sync<R: Remote>(
    remote: &R,
    config: &Config,
    mapped: &Mapped,
    mode: Mode,
    known: Known<'_>,
    pace: &Pace<'_>,
    read: Option<Result<Option<R::Current>, ApiError>>,
) -> Outcome {
    let outcome = settle(remote, config, mapped, mode, known, pace, read).await;
    if known.synced {
        gone_since_synced(outcome, R::NOUN)
    } else {
        outcome
    }
}

/// Whether [`sync`] starts with a read of the record by its own id, which the pipeline may
/// then make ahead, in a batch with others: a record matched by id, unless it is a twin that
/// `[match] duplicates = "fail"` fails unread.
pub fn reads_by_id(config: &Config, twin: bool) -> bool {
    matches!(config.matching.by, MatchBy::Id(_))
        && !(twin && config.matching.duplicates == Duplicates::Fail)
}

/// A record the sync state called synced that the target no longer has (`not_found`,
/// `skipped`, or `failed` as `not_found`): it says so, `expired_or_deleted`.
fn gone_since_synced(outcome: Outcome, noun: &str) -> Outcome {
    let Outcome::Settled(mut settled) = outcome else {
        return outcome;
    };
    let missing = match (&settled.status, &settled.error) {
        (Status::NotFound | Status::Skipped, None) => true,
        (Status::Failed, Some(e)) => e.code == "not_found",
        _ => false,
    };
    if missing {
        let why = format!(
            "the {noun} an earlier run synced is gone: it expired in the target or was deleted"
        );
        let message = match settled.error.take() {
            Some(e) => format!("{why}; {}", e.message),
            None => why,
        };
        settled.error = Some(crate::ledger::EntryError {
            code: "expired_or_deleted".to_owned(),
            message,
            problems: Vec::new(),
        });
    }
    Outcome::Settled(settled)
}

/// [`sync`] before what the sync state knows is added to the outcome.
#[allow(clippy::too_many_arguments)]
async fn settle<R: Remote>(
    remote: &R,
    config: &Config,
    mapped: &Mapped,
    mode: Mode,
    known: Known<'_>,
    pace: &Pace<'_>,
    read: Option<Result<Option<R::Current>, ApiError>>,
) -> Outcome {
    let desired = desired(config, mapped);
    let when = config.matching.when_missing;
    let id_name = config.target.kind().id_name();
    let noun = R::NOUN;
    if let Some(twin) = known.twin
        && config.matching.duplicates == Duplicates::Fail
    {
        return Outcome::Settled(errored(
            Status::Failed,
            twin.target_id.clone(),
            Vec::new(),
            0,
            "duplicate_in_input",
            format!(
                "record {} of the input names the same {noun}; [match] duplicates = \"fail\"",
                twin.first
            ),
        ));
    }
    let (id, current) = match &config.matching.by {
        MatchBy::Id(_) => {
            let Some(id) = mapped.target_id.as_deref() else {
                // Mapping reports an empty id as a problem, so valid records have one.
                return missing(when, mode, &format!("the record has no {id_name}"), 0);
            };
            let read = match read {
                Some(read) => read,
                None => remote.read(id, pace).await,
            };
            match read {
                Ok(Some(current)) => (id.to_owned(), current),
                Ok(None) => {
                    let why = format!("no {noun} has this {id_name}");
                    return absent(remote, config, mapped, &desired, mode, pace, &why).await;
                }
                Err(e) => return failed(e, Some(id.to_owned()), pace.attempts()),
            }
        }
        MatchBy::Search { key, .. } => {
            // An earlier row found (or created) the record: read it by its id, which a
            // search may not show yet.
            match known.twin.map(|t| (t.status, t.target_id.as_deref())) {
                Some((_, Some(id))) => match remote.read(id, pace).await {
                    Ok(Some(current)) => (id.to_owned(), current),
                    Ok(None) => {
                        let why = format!("the {noun} an earlier row named is gone");
                        return absent(remote, config, mapped, &desired, mode, pace, &why).await;
                    }
                    Err(e) => return failed(e, Some(id.to_owned()), pace.attempts()),
                },
                // `plan`: an earlier row would create it; this one would then update it.
                Some((Status::WouldCreate, None)) => {
                    return settled(
                        Status::WouldUpdate,
                        None,
                        unread(&changes(&desired)),
                        pace.attempts(),
                    );
                }
                _ => match search(remote, key, mapped, pace).await {
                    Ok(Some(one)) => one,
                    Ok(None) => {
                        let why = format!("no {noun} has {key} = this record's value");
                        return absent(remote, config, mapped, &desired, mode, pace, &why).await;
                    }
                    Err(outcome) => return outcome,
                },
            }
        }
    };
    let seen = R::modified(&current);
    let merged = match remote.merge(current, &desired) {
        Ok(merged) => merged,
        Err(refusal) => return refused(refusal, id, pace.attempts()),
    };
    let refresh = (merged.changed.is_empty() && known.refresh_due)
        .then(|| remote.refresh(&desired))
        .flatten();
    let outcome = match (merged.changed.is_empty(), mode, refresh) {
        (true, Mode::Plan, Some(_)) => {
            settled(Status::WouldRefresh, Some(id), Vec::new(), pace.attempts())
        }
        (true, Mode::Apply, Some(write)) => {
            let gone = format!("the {noun} expired or was deleted (expired_or_deleted)");
            let refreshed = Merged {
                write,
                changed: Vec::new(),
            };
            match write_merged(remote, &id, refreshed, when, pace, &gone).await {
                Outcome::Settled(s) if s.status == Status::Updated => Outcome::Settled(Settled {
                    status: Status::Refreshed,
                    ..s
                }),
                other => other,
            }
        }
        (true, _, _) => settled(Status::Unchanged, Some(id), merged.changed, pace.attempts()),
        (false, Mode::Plan, _) => settled(
            Status::WouldUpdate,
            Some(id),
            merged.changed,
            pace.attempts(),
        ),
        (false, Mode::Apply, _) => {
            let gone = format!("the {noun} was deleted while it was being updated");
            write_merged(remote, &id, merged, when, pace, &gone).await
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

/// The one record whose search key holds the record's search value (or its value as read):
/// `None` when there is none; two or more fail the record as ambiguous, naming them.
async fn search<R: Remote>(
    remote: &R,
    key: &str,
    mapped: &Mapped,
    pace: &Pace<'_>,
) -> Result<Option<(String, R::Current)>, Outcome> {
    let values: Vec<&str> = mapped
        .search_value
        .iter()
        .chain(&mapped.search_raw)
        .map(String::as_str)
        .collect();
    let mut found = remote
        .search(key, &values, pace)
        .await
        .map_err(|e| failed(e, None, pace.attempts()))?;
    if found.len() > 1 {
        let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        return Err(failed(ambiguous(&ids, R::NOUN, key), None, pace.attempts()));
    }
    Ok(found.pop())
}

/// Writes a merged record; a target's "no such record" answer follows `when_missing`.
async fn write_merged<R: Remote>(
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
    let search_key = match &config.matching.by {
        MatchBy::Search { key, .. } => Some(key.as_str()),
        MatchBy::Id(_) => None,
    };
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match remote.create(id.as_deref(), &creation.write, pace).await {
            Ok(new_id) => {
                return settled(
                    Status::Created,
                    Some(new_id),
                    creation.changed,
                    pace.attempts(),
                );
            }
            Err(e) => e,
        };
        // A create whose answer was lost (a dropped connection, a timeout, a 5xx) may have
        // been applied: look before sending it again, never create blind.
        let Some(key) = search_key.filter(|_| error.class == ErrorClass::Transient) else {
            return failed(error, id, pace.attempts());
        };
        match search(remote, key, mapped, pace).await {
            Ok(Some((found, _))) => {
                return settled(
                    Status::Created,
                    Some(found),
                    creation.changed,
                    pace.attempts(),
                );
            }
            Ok(None) if tries < pace.policy.max_attempts.max(1) => {
                let wait = pace
                    .policy
                    .backoff
                    .ceiling(RetryReason::Transient, tries - 1);
                tokio::time::sleep(wait).await;
            }
            Ok(None) => return failed(error, id, pace.attempts()),
            Err(outcome) => return outcome,
        }
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

/// Two or more records match: the record fails, naming them (ids, never the value).
fn ambiguous(ids: &[&str], noun: &str, key: &str) -> ApiError {
    const NAMED: usize = 5;
    let mut named = ids[..ids.len().min(NAMED)].join(", ");
    if ids.len() > NAMED {
        named.push_str(&format!(" and {} more", ids.len() - NAMED));
    }
    ApiError {
        class: ErrorClass::Permanent,
        code: "ambiguous".to_owned(),
        message: format!("ambiguous: {} {noun}s match {key}: {named}", ids.len()),
        status: None,
        retry_after: None,
    }
}
