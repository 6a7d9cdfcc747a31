//! `plan` and `apply`: the network-bound pipeline, on tokio.
//!
//! ```text
//! reader (blocking thread) ──jobs──▶ dispatcher ──spawns, one permit each──▶ record tasks
//!          │                             ▲                                      │ settlements
//!          └──▶ read-ahead (batched reads)┘  writer task (ledger + diff report) ◀┘
//! ```
//!
//! The reader prepares each record (map and validate, pure) and gives it its turn among its
//! twins ([`super::twins`]), in input order: rows naming the same target record settle one
//! after another. For a target that reads records by id in batches (Customer Profiles by
//! ProfileId), the [`read_ahead`] stage sits between the reader and the dispatcher: it asks
//! the sync state of each record and reads the others 20 ids a call, so that a record
//! reaches its task with its read done (see [`Ahead`]).
//!
//! The dispatcher takes one of `concurrency` semaphore permits before it starts a record; the
//! permit travels with the task and is freed when the record settles. Every request of a task
//! goes through the shared limiter and retry policy (see [`crate::targets`]). A stop (Ctrl-C,
//! `--max-errors`, an error that is not about one record) ends the dispatching; requests on
//! the wire finish and their records settle, those not yet sent give up, the ledger is
//! flushed, and the reader notices its closed channel.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::mirror::{self, Completeness, MirrorResult, MirrorRun, Named};
use super::parts::{Sender, StateUse};
use super::read_ahead;
use super::signals::Interrupts;
use super::twins::{Turn, Twins};
use super::{Context, new_entry, prepare};
use crate::config::MatchBy;
use crate::ledger::{Basis, Entry, EntryError, KeyIndex, Ledger, RecordSet, Status, Tally};
use crate::limiter::{Limiters, OperationCalls};
use crate::logging::RECORD;
use crate::mapping::{Mapped, Value};
use crate::report::{DiffReport, FieldCounts, Progress};
use crate::retry::{ErrorClass, Halt};
use crate::source::SourceRecord;
use crate::state::{self, PayloadValue, Stored, SyncState};
use crate::targets::driver::{self, Known, Twin};
use crate::targets::{FieldChange, LastChange, Mode, Outcome, Pace, Prefetched, Target};

/// Records in a row that fail to connect after every retry, after which a run stops (exit 3).
const UNANSWERED_LIMIT: u32 = 20;

/// What a `plan` or `apply` run does, beyond the config.
pub struct SyncOptions {
    /// Plan or apply.
    pub mode: Mode,
    /// Which records of the input to send.
    pub selection: Selection,
    /// Stop after this many `failed` records.
    pub max_errors: Option<u64>,
    /// Records in flight at once.
    pub concurrency: usize,
    /// Counts carried over from an earlier ledger (`--resume`).
    pub carried: Tally,
    /// Where to write the diff report, if anywhere.
    pub report: Option<DiffReport>,
    /// The local sync state, if the run uses one.
    pub state: Option<StateUse>,
    /// `--approve-deletes N`: delete a mirror run's candidates beyond the guard when they
    /// are exactly N.
    pub approve_deletes: Option<u64>,
}

/// Which records of the input a run sends. Both ledger-based selections check that the
/// input is the one the ledger was written from: a selected record's key must be the key the
/// ledger has for its record number, or the run stops.
pub enum Selection {
    /// Every record.
    All,
    /// All but those already settled in the ledger being resumed (`--resume`).
    Resume {
        /// Records with an entry in the ledger.
        settled: RecordSet,
        /// Their keys.
        keys: KeyIndex,
    },
    /// Only those that failed in an earlier ledger (`--retry-failed`).
    Failed {
        /// Records whose entry is `failed`.
        failed: RecordSet,
        /// Their keys.
        keys: KeyIndex,
    },
}

impl Selection {
    /// Whether to send `record`; an error when the input is not the ledger's.
    fn wants(&self, cx: &Context, record: &SourceRecord) -> io::Result<bool> {
        let (listed, keys, send_listed) = match self {
            Selection::All => return Ok(true),
            Selection::Resume { settled, keys } => (settled, keys, false),
            Selection::Failed { failed, keys } => (failed, keys, true),
        };
        if !listed.contains(record.record) {
            return Ok(!send_listed);
        }
        check_same_input(cx, record, keys)?;
        Ok(send_listed)
    }
}

/// How a `plan` or `apply` run ended.
#[derive(Debug)]
pub struct SyncResult {
    /// Records per status, carried-over counts included.
    pub tally: Tally,
    /// How many of them settled in an earlier run (`--resume`), not this one.
    pub carried: u64,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// Records that change each field, this run's.
    pub fields: FieldCounts,
    /// The diff report, its CSV and JSONL written and flushed; its page is written by
    /// [`DiffReport::finish`] once the exit code is known.
    pub report: Option<DiffReport>,
    /// This run's `failed` and `invalid` records by error code.
    pub reasons: BTreeMap<String, u64>,
    /// This run's requests per API operation, in the target's order.
    pub calls: Vec<OperationCalls>,
    /// Of this run's `unchanged` records, those the local sync state classified without a
    /// request.
    pub unchanged_by_state: u64,
    /// Rows of this run whose target record an earlier row of the input named too (see
    /// `pipeline::twins`).
    pub duplicates: u64,
    /// What the run found wrong as a whole, though no record failed; each makes it exit 1.
    pub warnings: Vec<String>,
    /// What the run must tell about how it went that changes no exit code (Redis lost
    /// during the run: the limiters fell back to local buckets).
    pub notices: Vec<String>,
    /// With `[mirror]`: the deletions considered, and the guard's verdict.
    pub mirror: Option<MirrorResult>,
}

/// Below this many records, a run where none matched is not called suspicious.
const NOTHING_MATCHED_MIN: u64 = 10;

/// A run whose records (10 or more) all ended `not_found` or `skipped` found none of its
/// target records: most likely a wrong `[match]` column or search key, not a quiet night.
fn nothing_matched(cx: &Context, tally: &Tally, carried: u64) -> Option<String> {
    let total = tally.total().saturating_sub(carried);
    let missing = tally.get(Status::NotFound) + tally.get(Status::Skipped);
    if total < NOTHING_MATCHED_MIN || missing < total {
        return None;
    }
    let by = match &cx.config.matching.by {
        MatchBy::Id(column) => format!("[match] id = \"{column}\""),
        MatchBy::Search { key, value } => format!(
            "[match] search_key = \"{key}\" with search_column = \"{}\"",
            value.column_name().unwrap_or("(derived)")
        ),
    };
    Some(format!(
        "none of the {total} records matched a target record (all not_found or skipped): check {by}"
    ))
}

/// The run's stop signal: the first reason given wins.
#[derive(Clone)]
struct Stop(Arc<watch::Sender<Option<String>>>);

impl Stop {
    fn new() -> Stop {
        Stop(Arc::new(watch::channel(None).0))
    }

    fn stop(&self, reason: String) {
        self.0.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                tracing::info!(reason = reason.as_str(), "the run stops");
                *current = Some(reason);
            }
            first
        });
    }

    fn is_stopped(&self) -> bool {
        self.0.borrow().is_some()
    }

    async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// The signal that makes requests not yet sent give up.
    fn halt(&self) -> Halt {
        Halt::on(self.0.subscribe())
    }
}

/// Runs `plan` or `apply`: every selected record is prepared, sent under the limiter, and
/// settled in the ledger. Returns the tally and, if the run stopped early, why.
pub async fn sync(
    cx: Arc<Context>,
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    ledger: Ledger,
    sender: Arc<Sender>,
    options: SyncOptions,
    progress: Arc<Progress>,
    interrupts: Interrupts,
) -> io::Result<SyncResult> {
    let stop = Stop::new();
    let concurrency = options.concurrency.max(1);
    let (record_tx, record_rx) = mpsc::channel::<Job>(concurrency * 2);
    let (settled_tx, settled_rx) = mpsc::channel::<Settlement>(concurrency * 2);

    // Ctrl-C or SIGTERM: the first stops the run gently, a second one ends the process at
    // once. Entries are flushed one by one, so the ledger stays whole but for the records in
    // flight, which a resumed run sends again.
    let signals = {
        let stop = stop.clone();
        tokio::spawn(interrupts.watch(move |reason| stop.stop(reason)))
    };

    let every_record = matches!(options.selection, Selection::All);
    // Stage 1: read, on a blocking thread, leaving out what this run does not send; prepare
    // each record and give it its turn among its twins.
    let twins = Arc::new(Twins::default());
    let reader = {
        let (cx, stop, selection) = (Arc::clone(&cx), stop.clone(), options.selection);
        let twins = Arc::clone(&twins);
        tokio::task::spawn_blocking(move || {
            read_records(records, &selection, &cx, &twins, &record_tx, &stop)
        })
    };

    // The sync state: record tasks read it, the writer records what the target accepted.
    let state = options.state.map(Arc::new);
    let mirroring = cx.config.mirror.as_ref().filter(|_| state.is_some());

    // Between the reader and the dispatcher, for a target with batched reads by id: read
    // ahead of the writes.
    let (jobs, read_ahead) = match read_ahead_batch(&cx, &sender.target) {
        Some(batch) => {
            let (tx, rx) = mpsc::channel::<Job>(concurrency * 2);
            let ahead = Arc::new(Ahead {
                cx: Arc::clone(&cx),
                sender: Arc::clone(&sender),
                state: state.clone(),
                stop: stop.clone(),
                batch,
            });
            let window = cx.config.limits.read_ahead;
            let stage = tokio::spawn(read_ahead::run(ahead, record_rx, tx, window));
            (rx, Some(stage))
        }
        None => (record_rx, None),
    };

    // Stage 3: write each entry as it settles.
    let carried = options.carried.total();
    let writer = Writer {
        ledger,
        report: options.report,
        tally: options.carried,
        fields: FieldCounts::default(),
        max_errors: options.max_errors,
        stop: stop.clone(),
        progress,
        limiters: Arc::clone(&sender.limiters),
        state: state.clone(),
        mirror: mirroring.map(|m| (m.owner.clone(), Named::default())),
    };
    let writer = tokio::spawn(writer.run(settled_rx));

    // Stage 2: dispatch records, one permit each, until the input ends or the run stops.
    dispatch(
        &cx,
        &sender,
        state.as_ref(),
        jobs,
        settled_tx,
        options.mode,
        concurrency,
        &stop,
    )
    .await;
    // A stage that failed has left records unsettled: say so (exit 3), as for a task.
    if let Some(stage) = read_ahead
        && let Err(e) = stage.await
    {
        stop.stop(format!(
            "internal error: the read-ahead stage failed ({e}); resume to send the rest"
        ));
    }

    let Written {
        mut tally,
        fields,
        mut report,
        reasons,
        unchanged_by_state,
        mut ledger,
        named,
    } = writer.await.map_err(io::Error::other)??;
    // A reader error ends the run once what was read has settled; say it too when something
    // else stopped the run first. A stopped run does not wait long for a reader blocked on a
    // silent stdin.
    let reader = if stop.is_stopped() {
        tokio::time::timeout(READER_GRACE, reader).await.ok()
    } else {
        Some(reader.await)
    };
    signals.abort();
    let mut aborted = stop.reason();
    if let Some(Ok(Err(e))) = &reader {
        let also = format!("reading the input failed: {e}");
        if aborted.as_deref() != Some(also.as_str()) {
            aborted = Some(aborted.map_or(also.clone(), |first| format!("{first}; also {also}")));
        }
    }
    // A whole input read to its end: what this owner synced and the input no longer names.
    let mirror = match (mirroring, &state, named) {
        (Some(settings), Some(state), Some(mut named)) => {
            named.seal();
            let how = MirrorRun {
                mirror: settings,
                mode: options.mode,
                approved: options.approve_deletes,
                concurrency,
            };
            let run = Completeness {
                every_record,
                aborted: aborted.as_deref(),
                records: tally.total() - carried,
            };
            let halt = stop.halt();
            let result = mirror::run(
                how,
                run,
                &named,
                state,
                &sender,
                mirror::Out {
                    ledger: &mut ledger,
                    report: report.as_mut(),
                    tally: &mut tally,
                },
                halt,
            )
            .await?;
            if let Some(reason) = &result.stopped {
                aborted.get_or_insert_with(|| format!("deleting failed: {reason}"));
            }
            Some(result)
        }
        _ => None,
    };
    drop(ledger);
    // Every task is done with the state: close it, tidying it (repack, compact) when much of
    // it is wasted. Its records are all committed by now, so a failed tidying loses nothing.
    match state.map(Arc::try_unwrap) {
        Some(Ok(used)) => {
            if let Err(e) = tokio::task::block_in_place(|| used.state.close()) {
                eprintln!("profilesync: warning: tidying the sync state failed: {e}");
            }
        }
        Some(Err(_)) => tracing::debug!("the sync state is still held by a task: not tidied"),
        None => {}
    }
    let calls = sender.limiters.calls();
    let warnings = nothing_matched(&cx, &tally, carried).into_iter().collect();
    Ok(SyncResult {
        tally,
        carried,
        aborted,
        fields,
        report,
        reasons,
        calls,
        unchanged_by_state,
        duplicates: twins.duplicates(),
        warnings,
        notices: sender.limiters.notice().into_iter().collect(),
        mirror,
    })
}

/// How long a stopped run waits for the reader to notice (it checks between records).
const READER_GRACE: Duration = Duration::from_secs(1);

/// The reader stage: each record this run sends is prepared and takes its turn among its
/// twins here, in input order ([`Job::new`]). An input that cannot be read to its end (a truncated gzip stream)
/// ends the reading: the records read before the error are still dispatched and settle, and
/// the run then stops with the error. A resumed ledger from another input stops the run at
/// once, before anything more is sent.
fn read_records(
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    selection: &Selection,
    cx: &Context,
    twins: &Arc<Twins>,
    tx: &mpsc::Sender<Job>,
    stop: &Stop,
) -> io::Result<()> {
    for record in records {
        let record = record?;
        let wanted = match selection.wants(cx, &record) {
            Ok(wanted) => wanted,
            Err(e) => {
                stop.stop(format!("reading the input failed: {e}"));
                return Err(e);
            }
        };
        if stop.is_stopped() {
            break;
        }
        if !wanted {
            continue;
        }
        let job = match Job::new(cx, twins, record) {
            Ok(job) => job,
            // The run ends with this reason (exit 3) once what was sent settles.
            Err(e) => {
                stop.stop(format!(
                    "the run's scratch file of keys failed ({e}), so twins can no longer be \
                     told apart; resume to send the rest"
                ));
                break;
            }
        };
        if tx.blocking_send(job).is_err() {
            break;
        }
    }
    Ok(())
}

/// The dispatcher: takes a permit, then a prepared record, and spawns the record's task with
/// the permit. Ctrl-C (or any stop) ends the dispatching; the records in flight still settle.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    cx: &Arc<Context>,
    sender: &Arc<Sender>,
    state: Option<&Arc<StateUse>>,
    mut records: mpsc::Receiver<Job>,
    settled: mpsc::Sender<Settlement>,
    mode: Mode,
    concurrency: usize,
    stop: &Stop,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.stopped() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let record = tokio::select! {
            biased;
            () = stop.stopped() => break,
            record = records.recv() => record,
        };
        let (Ok(permit), Some(job)) = (permit, record) else {
            break;
        };
        while let Some(done) = tasks.try_join_next() {
            note_panic(done, stop);
        }
        let (cx, sender, settled, stop, state) = (
            Arc::clone(cx),
            Arc::clone(sender),
            settled.clone(),
            stop.clone(),
            state.cloned(),
        );
        let span = record_span(&cx, &job.record);
        let task = async move {
            let _permit = permit;
            let outcome = settle(
                &cx,
                &sender.target,
                state.as_deref(),
                job,
                mode,
                &sender.pace(stop.halt()),
            )
            .await;
            match outcome {
                Ok(settlement) => {
                    log_settled(&settlement.entry);
                    if settled.send(settlement).await.is_err() {
                        stop.stop("the ledger writer stopped".to_owned());
                    }
                }
                // The record stays unsettled: no entry, so a resumed run sends it.
                Err(Unsettled::Stop(reason)) => stop.stop(reason),
                Err(Unsettled::TwinUnsettled) => {}
            }
        };
        tasks.spawn(task.instrument(span));
    }
    drop(records);
    // Let every record in flight settle; those still waiting to send give up on a stop.
    while let Some(done) = tasks.join_next().await {
        note_panic(done, stop);
    }
}

/// What names a record's target record among its twins: its id, or its search value.
fn twin_key(mapped: &Mapped) -> Option<&str> {
    mapped
        .target_id
        .as_deref()
        .or(mapped.search_value.as_deref())
}

/// Why a record task ends without a settlement.
enum Unsettled {
    /// The run must stop, for this reason.
    Stop(String),
    /// An earlier row naming the same target record never settled (the run stopped): this
    /// one waits for a resumed run too.
    TwinUnsettled,
}

/// A record task that panicked left its record unsettled: stop the run (exit 3), so that
/// the record is neither lost silently nor counted.
fn note_panic(done: Result<(), tokio::task::JoinError>, stop: &Stop) {
    if let Err(e) = done {
        stop.stop(format!(
            "internal error: a record's task failed ({e}); resume to send it again"
        ));
    }
}

/// A resumed run must read the input its ledger was written from: a settled record's key
/// must be the one the ledger has for that record number.
fn check_same_input(cx: &Context, record: &SourceRecord, keys: &KeyIndex) -> io::Result<()> {
    let Some(key) = cx.plan.key(record) else {
        return Ok(());
    };
    if keys.matches(record.record, &key) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}:{}: record {} has another key than in the ledger being resumed: \
             resume with the same input, or start a new run",
            cx.input, record.line, record.record
        ),
    ))
}

/// A settled record on its way to the writer: its ledger entry and the fields it changes.
struct Settlement {
    entry: Entry,
    /// The record's byte offset in the input (see [`SourceRecord::end`]), for the progress.
    end: u64,
    changes: Vec<FieldChange>,
    /// The target gave no usable answer (see [`crate::targets::Settled::unanswered`]).
    unanswered: bool,
    /// What the sync state learns from this record, once its entry is in the ledger.
    state: StateChange,
}

/// What a settled record tells the sync state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateChange {
    /// Nothing new (no state, a plan's difference, an invalid record, a skip by state).
    Keep,
    /// The target accepted (or was found to hold) the payload with this hash, and the
    /// record's last-modified time as read before any write; for a record matched by a
    /// search, under which [`state::found_key`] its target id was found.
    Accepted(Stored, Option<String>),
    /// The write failed: whatever the state held for the record may no longer hold.
    Forget,
}

impl Settlement {
    fn invalid(entry: Entry, end: u64) -> Settlement {
        Settlement {
            entry,
            end,
            changes: Vec::new(),
            unanswered: false,
            state: StateChange::Keep,
        }
    }
}

/// A record on its way to its task: prepared, with its turn among its twins, and what the
/// read-ahead stage found out for it.
struct Job {
    record: SourceRecord,
    /// Mapped and valid, or its `invalid` entry.
    prepared: Result<Mapped, Box<Entry>>,
    /// Its turn among its twins (a valid record's).
    turn: Option<Turn>,
    /// What the read-ahead stage asked of the sync state and read; `None`: its task asks.
    asked: Option<Asked>,
}

impl Job {
    /// Prepares the record (map and validate, pure) and gives it its turn among its twins;
    /// the reader calls it in input order.
    fn new(cx: &Context, twins: &Arc<Twins>, record: SourceRecord) -> io::Result<Job> {
        let prepared = prepare(cx, &record);
        let turn = prepared
            .as_ref()
            .ok()
            .and_then(twin_key)
            .map(|key| twins.enter(key, record.record))
            .transpose()?;
        Ok(Job {
            record,
            prepared,
            turn,
            asked: None,
        })
    }

    /// Whether an earlier row of the input named the same target record.
    fn seen(&self) -> bool {
        self.turn.as_ref().is_some_and(|turn| turn.seen)
    }
}

/// What the read-ahead stage found out for a record before its task.
struct Asked {
    /// What the sync state said (or why it could not be read).
    by_state: Result<ByState, String>,
    /// The record's read by id, once its batch came back.
    read: Option<Prefetched>,
    /// The payload's hash and the found key it was asked with ([`payload_hash`],
    /// [`found_key`]; with a sync state), which its task records.
    hash: Option<u128>,
    found: Option<String>,
}

/// One record's trip: its turn among its twins, then the sync state, then the target.
async fn settle(
    cx: &Context,
    target: &Target,
    state: Option<&StateUse>,
    job: Job,
    mode: Mode,
    pace: &Pace<'_>,
) -> Result<Settlement, Unsettled> {
    let Job {
        record,
        prepared,
        turn,
        asked,
    } = job;
    let record = &record;
    let mapped = match prepared {
        Ok(mapped) => mapped,
        Err(invalid) => return Ok(Settlement::invalid(*invalid, record.end)),
    };
    let Some(mut turn) = turn else {
        return settle_mapped(
            cx, target, state, record, mapped, None, false, asked, mode, pace,
        )
        .await;
    };
    let twin = match turn.earlier().await {
        Ok(twin) => twin,
        Err(()) => {
            turn.finish(None);
            return Err(Unsettled::TwinUnsettled);
        }
    };
    let seen = turn.seen;
    let settled = settle_mapped(
        cx,
        target,
        state,
        record,
        mapped,
        twin.as_ref(),
        seen,
        asked,
        mode,
        pace,
    )
    .await;
    turn.finish(
        settled
            .as_ref()
            .ok()
            .map(|s| (s.entry.status, s.entry.target_id.clone())),
    );
    settled
}

/// A valid record's trip: the sync state, then the target. `twin` is the earlier row naming
/// the same target record; `seen` says an earlier row of the input had its key (the state,
/// written behind the ledger, may not know that row's write yet, so it does not decide);
/// `asked`, what the read-ahead stage found out already.
#[allow(clippy::too_many_arguments)]
async fn settle_mapped(
    cx: &Context,
    target: &Target,
    state: Option<&StateUse>,
    record: &SourceRecord,
    mapped: Mapped,
    twin: Option<&Twin>,
    seen: bool,
    asked: Option<Asked>,
    mode: Mode,
    pace: &Pace<'_>,
) -> Result<Settlement, Unsettled> {
    let (by_state, read, hash, found) = match asked {
        Some(Asked {
            by_state,
            read,
            hash,
            found,
        }) => (by_state, read, hash, found),
        None => {
            let hash = state.map(|_| payload_hash(cx, &mapped));
            let found = state.and_then(|_| found_key(cx, &mapped));
            let key = found.as_deref();
            let asked = consult(target, state, &mapped, hash, key, seen, record, pace).await;
            (asked, None, hash, found)
        }
    };
    // What the state holds for the record (under the id it knows it by), and whether it is
    // due for a refresh write.
    let (stored, refresh_due) = match by_state.map_err(Unsettled::Stop)? {
        ByState::Skip(unchanged) => return Ok(*unchanged),
        ByState::Look { held, due } => (held, due),
    };
    let known = Known {
        twin,
        refresh_due,
        synced: stored.is_some(),
    };
    match target
        .sync(&cx.config, &mapped, mode, known, pace, read)
        .await
    {
        Outcome::Settled(settled) => {
            let written_at = match settled.status {
                Status::Updated | Status::Created | Status::Refreshed => {
                    state.and_then(|s| s.refresh).map(|r| r.now())
                }
                // Found holding the payload: our last write stands only if it was this
                // payload; else someone else wrote it, at a time we do not know.
                _ => stored
                    .as_ref()
                    .filter(|(_, s)| Some(s.hash) == hash)
                    .and_then(|(_, s)| s.written_at),
            };
            let learnt = match (settled.status, hash) {
                (
                    Status::Updated | Status::Created | Status::Refreshed | Status::Unchanged,
                    Some(hash),
                ) => StateChange::Accepted(
                    Stored {
                        hash,
                        last_modified: settled.last_modified,
                        written_at,
                    },
                    found,
                ),
                (Status::Failed, Some(_)) => StateChange::Forget,
                // Gone from the target: what the state held of it no longer holds.
                (Status::Skipped | Status::NotFound, Some(_)) if stored.is_some() => {
                    StateChange::Forget
                }
                _ => StateChange::Keep,
            };
            // A record the state held and the target no longer has names the id it had, so
            // that the writer forgets it.
            let gone = stored
                .filter(|_| matches!(learnt, StateChange::Forget))
                .map(|(id, _)| id);
            Ok(Settlement {
                entry: Entry {
                    key: Some(mapped.key),
                    target_id: settled.target_id.or(mapped.target_id).or(gone),
                    status: settled.status,
                    changed: settled.changed.iter().map(|c| c.field.clone()).collect(),
                    attempts: Some(settled.attempts),
                    error: settled.error.map(|e| EntryError {
                        message: format!("{}:{}: {}", cx.input, record.line, e.message),
                        ..e
                    }),
                    basis: (settled.status == Status::Unchanged).then_some(Basis::Target),
                    ..new_entry(record, settled.status)
                },
                end: record.end,
                changes: settled.changed,
                unanswered: settled.unanswered,
                state: learnt,
            })
        }
        Outcome::Abort(reason) => Err(Unsettled::Stop(reason)),
    }
}

/// What the sync state says of a valid record: nothing without a state, nor of a twin
/// (`seen`: an earlier row of the input named its target record, and the state, written
/// behind the ledger, may not know that row's write yet); else see [`by_state`].
#[allow(clippy::too_many_arguments)]
async fn consult(
    target: &Target,
    state: Option<&StateUse>,
    mapped: &Mapped,
    hash: Option<u128>,
    found: Option<&str>,
    seen: bool,
    record: &SourceRecord,
    pace: &Pace<'_>,
) -> Result<ByState, String> {
    match (state, hash, seen) {
        (Some(state), Some(hash), false) => {
            by_state(target, state, mapped, hash, found, record, pace).await
        }
        _ => Ok(ByState::Look {
            held: None,
            due: false,
        }),
    }
}

/// The ids one read-ahead call takes, when the run reads ahead: a target with batched reads
/// by id, records matched by id.
fn read_ahead_batch(cx: &Context, target: &Target) -> Option<usize> {
    target
        .batch_read()
        .filter(|_| driver::reads_by_id(&cx.config, false))
}

/// The read-ahead stage's view of the run ([`read_ahead::Reads`]): a twin waits for its
/// [`Turn`]; a record the driver reads by id ([`driver::reads_by_id`]) is asked of the sync
/// state as in its task ([`consult`]: one the state skips is not read, one due for a refresh
/// is), and the others are read in batches by the target. What it found out travels with
/// the record ([`Asked`]), so that its task asks nothing twice.
struct Ahead {
    cx: Arc<Context>,
    sender: Arc<Sender>,
    state: Option<Arc<StateUse>>,
    stop: Stop,
    batch: usize,
}

impl read_ahead::Reads for Ahead {
    type Item = Job;
    type Read = Prefetched;

    fn batch(&self) -> usize {
        self.batch
    }

    fn waits(job: &Job) -> bool {
        job.turn.as_ref().is_some_and(Turn::waits)
    }

    async fn wait(mut job: Job) -> Job {
        if let Some(turn) = &mut job.turn {
            // Settled or never will: the record's task asks the turn again and learns which.
            let _ = turn.earlier().await;
        }
        job
    }

    async fn wants(&self, job: &mut Job) -> Option<String> {
        let Ok(mapped) = &job.prepared else {
            return None;
        };
        let seen = job.seen();
        let id = mapped
            .target_id
            .clone()
            .filter(|_| driver::reads_by_id(&self.cx.config, seen))?;
        let (target, state) = (&self.sender.target, self.state.as_deref());
        let hash = state.map(|_| payload_hash(&self.cx, mapped));
        let found = state.and_then(|_| found_key(&self.cx, mapped));
        let pace = self.sender.pace(self.stop.halt());
        let record = &job.record;
        let by_state = consult(
            target,
            state,
            mapped,
            hash,
            found.as_deref(),
            seen,
            record,
            &pace,
        )
        .await;
        let wants = matches!(by_state, Ok(ByState::Look { .. }));
        job.asked = Some(Asked {
            by_state,
            read: None,
            hash,
            found,
        });
        wants.then_some(id)
    }

    async fn read(&self, ids: Vec<String>) -> Vec<Prefetched> {
        let pace = self.sender.pace(self.stop.halt());
        // The call is for several records at once: its lines carry a span of their own.
        let span = tracing::debug_span!(target: RECORD, "batch", ids = ids.len());
        self.sender
            .target
            .read_batch(&ids, &pace)
            .instrument(span)
            .await
    }

    fn give(job: &mut Job, read: Prefetched) {
        if let Some(asked) = &mut job.asked {
            asked.read = Some(read);
        }
    }
}

/// What the sync state says of a record.
enum ByState {
    /// It holds this very payload, written recently enough: `unchanged`, no request.
    Skip(Box<Settlement>),
    /// Ask the target: what the state holds for the record, under the id it knows it by
    /// (if anything), and whether our last write is old enough (or unknown) to write it
    /// again though unchanged.
    Look {
        held: Option<(String, Stored)>,
        due: bool,
    },
}

/// Whether the sync state settles the record: it does when it already holds this very
/// payload for its target id (its own, matched by id; or, matched by a search, the one the
/// state says the record was found at), without `--full`, when our last write of it is not
/// due for a refresh, and, for a target that tracks changes, the target's record has not
/// changed since (its last-modified time is the one stored): `unchanged`, with no request
/// for the record itself (a target's index of changes is read once per run, by the first
/// record that asks).
async fn by_state(
    target: &Target,
    state: &StateUse,
    mapped: &Mapped,
    hash: u128,
    found: Option<&str>,
    record: &SourceRecord,
    pace: &Pace<'_>,
) -> Result<ByState, String> {
    let unreadable = |e| format!("the sync state cannot be read: {e}");
    let id = match (&mapped.target_id, found) {
        (Some(id), None) => Some(id.clone()),
        (None, Some(key)) => state.state.found(key).map_err(unreadable)?,
        _ => None,
    };
    let held = match id {
        Some(id) => state
            .state
            .get(&id)
            .map_err(unreadable)?
            .map(|stored| (id, stored)),
        None => None,
    };
    let due = state.refresh.is_some_and(|rule| match &held {
        Some((id, stored)) => rule.due(id, stored.written_at),
        // Nothing of ours on record: due at once.
        None => rule.due(&mapped.key, None),
    });
    let Some((id, entry)) = held.clone() else {
        return Ok(ByState::Look { held, due });
    };
    let look = ByState::Look { held, due };
    if state.full || due || entry.hash != hash {
        return Ok(look);
    }
    match target.last_change(&id, pace).await {
        Ok(LastChange::NotTracked) => {}
        Ok(LastChange::At(time)) if entry.last_modified == Some(time) => {}
        // Changed since (by us or by someone else), or not known: read it.
        Ok(LastChange::At(_) | LastChange::Unknown) => return Ok(look),
        Err(e) if e.class == ErrorClass::Fatal => {
            return Err(format!(
                "the sync state cannot tell which records changed in the target ({}); \
                 allow the listing, or run with --full",
                e.code
            ));
        }
        // The index could not be read: the record is read, as without a state.
        Err(_) => return Ok(look),
    }
    Ok(ByState::Skip(Box::new(Settlement {
        entry: Entry {
            key: Some(mapped.key.clone()),
            target_id: Some(id),
            // No request of its own: a listing it waited on is the run's, counted there.
            attempts: Some(0),
            basis: Some(Basis::State),
            ..new_entry(record, Status::Unchanged)
        },
        end: record.end,
        changes: Vec::new(),
        unanswered: false,
        state: StateChange::Keep,
    })))
}

/// Where the state keeps the target id of a record matched by a search ([`state::found_key`]);
/// `None` for a record matched by id.
fn found_key(cx: &Context, mapped: &Mapped) -> Option<String> {
    match &cx.config.matching.by {
        MatchBy::Search { key, .. } => {
            Some(state::found_key(key, &cx.config.source.key, &mapped.key))
        }
        MatchBy::Id(_) => None,
    }
}

/// The hash of what the record asks of the target: its mapped fields, by target name, as
/// the write would carry them, each with its kind (cleared, one value, a list),
/// and the value a search matches it by (a record whose searched value changed is searched
/// again, even when that value is not written).
fn payload_hash(cx: &Context, mapped: &Mapped) -> u128 {
    let mut fields: Vec<(&str, PayloadValue<'_>)> = Vec::with_capacity(mapped.fields.len() + 1);
    if let Some(value) = &mapped.search_value {
        fields.push(("\0search", PayloadValue::One(value)));
    }
    for (index, value) in &mapped.fields {
        let name = cx.config.rules[*index].name.as_str();
        fields.push((
            name,
            match value {
                Value::Set(text) => PayloadValue::One(text),
                Value::Clear => PayloadValue::Cleared,
                Value::Many(values) => PayloadValue::List(values),
            },
        ));
    }
    state::payload_hash(&fields)
}

/// What the writer hands back.
struct Written {
    tally: Tally,
    /// Records that change each field.
    fields: FieldCounts,
    report: Option<DiffReport>,
    /// `failed` and `invalid` records by error code.
    reasons: BTreeMap<String, u64>,
    /// `unchanged` records the sync state classified.
    unchanged_by_state: u64,
    /// The ledger, for the mirror stage's lines.
    ledger: Ledger,
    /// With `[mirror]`: what the input named.
    named: Option<Named>,
}

/// State changes written in one transaction, at most (a crash loses at most these, which
/// the next run then reads or writes again).
const STATE_BATCH: usize = 64;

/// The writer stage: the only place that writes the ledger (and the diff report) during a
/// `plan` or `apply` run. It also counts, shows progress, and stops the run on
/// `--max-errors` or when the target stops answering.
struct Writer {
    ledger: Ledger,
    report: Option<DiffReport>,
    tally: Tally,
    fields: FieldCounts,
    max_errors: Option<u64>,
    stop: Stop,
    progress: Arc<Progress>,
    limiters: Arc<Limiters>,
    state: Option<Arc<StateUse>>,
    /// With `[mirror]`: the owner its accepted records are kept under, and what the input
    /// names.
    mirror: Option<(String, Named)>,
}

impl Writer {
    /// Writes every settlement; an error stops the run, so that nothing more is sent
    /// without its entry.
    async fn run(self, rx: mpsc::Receiver<Settlement>) -> io::Result<Written> {
        let stop = self.stop.clone();
        let result = self.write_all(rx).await;
        if let Err(e) = &result {
            stop.stop(format!("writing the ledger failed: {e}"));
        }
        result
    }

    async fn write_all(mut self, mut rx: mpsc::Receiver<Settlement>) -> io::Result<Written> {
        let mut line = Vec::with_capacity(256);
        let mut reasons = BTreeMap::new();
        let (mut failed, mut unanswered, mut by_state) = (0, 0, 0);
        let mut learnt = StateBatch {
            owner: self.mirror.as_ref().map(|(owner, _)| owner.clone()),
            ..StateBatch::default()
        };
        while let Some(Settlement {
            entry,
            end,
            changes,
            unanswered: gave_up,
            state: change,
        }) = rx.recv().await
        {
            line.clear();
            entry.write_line(&mut line);
            self.ledger.write_lines(&line)?;
            // Only now that the entry is in the ledger does the state learn what the target
            // accepted, so that a crash never marks a record synced that the ledger lacks.
            if let Some((_, named)) = &mut self.mirror {
                named.add(&entry);
            }
            if let (Some(state), Some(id)) = (&self.state, &entry.target_id) {
                learnt.add(id, change);
                if let (Some(owner), Some(key)) = (&learnt.owner, &entry.key)
                    && settles(entry.status)
                {
                    // Read first: an unchanged night writes nothing for records it owned.
                    let owned =
                        tokio::task::block_in_place(|| state.state.owner_is(id, owner, key))
                            .map_err(|e| {
                                io::Error::other(format!("reading the sync state failed: {e}"))
                            })?;
                    if !owned {
                        learnt.owned.push((id.clone(), key.clone()));
                    }
                }
                if learnt.len() >= STATE_BATCH {
                    let records = learnt.len();
                    learnt.commit(&state.state)?;
                    if let Err(reason) = state.checkpoint(records).await {
                        self.stop.stop(reason);
                    }
                }
            }
            if entry.basis == Some(Basis::State) {
                by_state += 1;
            }
            if let Some(report) = &mut self.report {
                report.write(&entry, &changes)?;
            }
            self.tally.add(entry.status);
            self.fields.add(&entry.changed);
            let limits = self.limiters.progress();
            self.progress
                .advance(1, &self.tally, limits.as_deref(), end);
            if let Some(error) = &entry.error {
                *reasons.entry(error.code.clone()).or_insert(0) += 1;
            }
            if entry.status == Status::Failed {
                failed += 1;
                if self.max_errors.is_some_and(|max| failed >= max) {
                    self.stop
                        .stop(format!("--max-errors reached: {failed} records failed"));
                }
            }
            // A target that stopped answering (or answers only 5xx) is not a per-record
            // problem: stop rather than retry every remaining record against it.
            if gave_up {
                unanswered += 1;
                if unanswered == UNANSWERED_LIMIT {
                    self.stop.stop(format!(
                        "the target stopped answering: the last {unanswered} records got no \
                         usable answer (no connection, timeouts or server errors) after every \
                         retry"
                    ));
                }
            } else if entry.status != Status::Invalid {
                unanswered = 0;
            }
        }
        if let Some(state) = &self.state {
            learnt.commit(&state.state)?;
        }
        if let Some(report) = &mut self.report {
            report.flush()?;
        }
        Ok(Written {
            tally: self.tally,
            fields: self.fields,
            report: self.report,
            reasons,
            unchanged_by_state: by_state,
            ledger: self.ledger,
            named: self.mirror.map(|(_, named)| named),
        })
    }
}

/// State changes waiting for their transaction, in ledger order.
#[derive(Default)]
struct StateBatch {
    accepted: Vec<(String, Stored)>,
    forgotten: Vec<String>,
    /// `(found key, target id)` of records matched by a search.
    found: Vec<(String, String)>,
    /// With `[mirror]`: the owner accepted records are kept under.
    owner: Option<String>,
    /// `(target id, [source] key)` of the records settled under the owner, where the state
    /// did not already say so.
    owned: Vec<(String, String)>,
}

/// Whether a record with this status is one its `[mirror] owner` settled (and so owns).
fn settles(status: Status) -> bool {
    matches!(
        status,
        Status::Updated | Status::Created | Status::Unchanged | Status::Refreshed
    )
}

impl StateBatch {
    fn add(&mut self, id: &str, change: StateChange) {
        match change {
            StateChange::Keep => {}
            StateChange::Accepted(stored, found) => {
                self.accepted.push((id.to_owned(), stored));
                if let Some(key) = found {
                    self.found.push((key, id.to_owned()));
                }
            }
            StateChange::Forget => self.forgotten.push(id.to_owned()),
        }
    }

    fn len(&self) -> usize {
        self.accepted.len() + self.forgotten.len() + self.owned.len()
    }

    /// Writes the batch durably (the state's commit syncs to disk) and empties it.
    fn commit(&mut self, state: &SyncState) -> io::Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let accepted: Vec<(&str, Stored)> = self
            .accepted
            .iter()
            .map(|(id, stored)| (id.as_str(), *stored))
            .collect();
        let forgotten: Vec<&str> = self.forgotten.iter().map(String::as_str).collect();
        let found: Vec<(&str, &str)> = self
            .found
            .iter()
            .map(|(key, id)| (key.as_str(), id.as_str()))
            .collect();
        let owned: Vec<(&str, &str, &str)> = match &self.owner {
            Some(owner) => self
                .owned
                .iter()
                .map(|(id, key)| (id.as_str(), owner.as_str(), key.as_str()))
                .collect(),
            None => Vec::new(),
        };
        // Where a record was found, and who owns it, are written after its hash: a crash
        // between them leaves a hash no search finds (the record is searched again) or a
        // record no owner deletes.
        tokio::task::block_in_place(|| {
            state.put_many(&accepted)?;
            state.remove_many(&forgotten)?;
            if !found.is_empty() {
                state.put_found_many(&found)?;
            }
            if owned.is_empty() {
                Ok(())
            } else {
                state.put_owned_many(&owned)
            }
        })
        .map_err(|e| io::Error::other(format!("writing the sync state failed: {e}")))?;
        self.accepted.clear();
        self.forgotten.clear();
        self.found.clear();
        self.owned.clear();
        Ok(())
    }
}
/// The span of one record's trip to the target: its record number, line and key (an id
/// the ledger holds too). Every request line inside it carries them.
fn record_span(cx: &Context, record: &SourceRecord) -> tracing::Span {
    let span = tracing::debug_span!(
        target: RECORD,
        "record",
        record = record.record,
        line = record.line,
        key = tracing::field::Empty,
    );
    if !span.is_disabled()
        && let Some(key) = cx.plan.key(record)
    {
        span.record("key", key.as_str());
    }
    span
}

/// Logs how a record settled: status, target id, attempts, error code (never the message,
/// which names the file and line and stays in the ledger).
fn log_settled(entry: &Entry) {
    tracing::debug!(
        target: RECORD,
        status = entry.status.name(),
        target_id = entry.target_id.as_deref(),
        attempts = entry.attempts,
        code = entry.error.as_ref().map(|e| e.code.as_str()),
        "settled"
    );
}
