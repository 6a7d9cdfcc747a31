//! `plan` and `apply`: the network-bound pipeline, on tokio.
//!
//! ```text
//! reader (blocking thread) ──records──▶ dispatcher ──spawns, one permit each──▶ record tasks
//!                                                                                   │ settlements
//!                                     writer task (ledger + diff report) ◀──────────┘
//! ```
//!
//! The dispatcher takes one of `concurrency` semaphore permits before it starts a record; the
//! permit travels with the task and is freed when the record settles. Every request of a task
//! goes through the shared limiter and retry policy (see [`crate::target`]). A stop (Ctrl-C,
//! `--max-errors`, an error that is not about one record) ends the dispatching; requests on
//! the wire finish and their records settle, those not yet sent give up, the ledger is
//! flushed, and the reader notices its closed channel.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::signals::Interrupts;
use super::{Context, new_entry, prepare};
use crate::ledger::{Entry, EntryError, KeyIndex, Ledger, RecordSet, Status};
use crate::limiter::Limiter;
use crate::report::{DiffReport, FieldCounts, Progress, Tally};
use crate::retry::{Halt, RetryPolicy};
use crate::source::SourceRecord;
use crate::target::{FieldChange, Mode, Outcome, Pace, PreflightError, Target};

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

/// What sends records: the target, the limiter every request waits on, the retry policy.
pub struct Sender {
    /// The target's client.
    pub target: Target,
    /// The run's token bucket.
    pub limiter: Limiter,
    /// The run's retry policy.
    pub policy: RetryPolicy,
}

impl Sender {
    /// The pacing of requests that give up, unsent, when `halt` comes.
    pub fn pace(&self, halt: Halt) -> Pace<'_> {
        Pace {
            limiter: &self.limiter,
            policy: &self.policy,
            halt,
        }
    }

    /// Checks what every record depends on; see [`Target::preflight`].
    pub async fn preflight(&self) -> Result<Vec<String>, PreflightError> {
        self.target.preflight(&self.pace(Halt::never())).await
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
    let (record_tx, record_rx) = mpsc::channel::<SourceRecord>(concurrency * 2);
    let (settled_tx, settled_rx) = mpsc::channel::<Settlement>(concurrency * 2);

    // Ctrl-C or SIGTERM: the first stops the run gently, a second one ends the process at
    // once. Entries are flushed one by one, so the ledger stays whole but for the records in
    // flight, which a resumed run sends again.
    let signals = {
        let stop = stop.clone();
        tokio::spawn(interrupts.watch(move || stop.stop("interrupted".to_owned())))
    };

    // Stage 1: read, on a blocking thread, leaving out what this run does not send.
    let reader = {
        let (cx, stop, selection) = (Arc::clone(&cx), stop.clone(), options.selection);
        tokio::task::spawn_blocking(move || {
            read_records(records, &selection, &cx, &record_tx, &stop)
        })
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
        sender: Arc::clone(&sender),
    };
    let writer = tokio::spawn(writer.run(settled_rx));

    // Stage 2: dispatch records, one permit each, until the input ends or the run stops.
    dispatch(
        &cx,
        &sender,
        record_rx,
        settled_tx,
        options.mode,
        concurrency,
        &stop,
    )
    .await;

    let (tally, fields, report) = writer.await.map_err(io::Error::other)??;
    // A reader error has already stopped the run; say it too when something else stopped it
    // first. A stopped run does not wait long for a reader blocked on a silent stdin.
    let reader = if stop.is_stopped() {
        tokio::time::timeout(READER_GRACE, reader).await.ok()
    } else {
        Some(reader.await)
    };
    signals.abort();
    let mut aborted = stop.reason();
    if let Some(Ok(Err(e))) = reader {
        let also = format!("reading the input failed: {e}");
        if aborted.as_deref() != Some(also.as_str()) {
            aborted = Some(aborted.map_or(also.clone(), |first| format!("{first}; also {also}")));
        }
    }
    Ok(SyncResult {
        tally,
        carried,
        aborted,
        fields,
        report,
    })
}

/// How long a stopped run waits for the reader to notice (it checks between records).
const READER_GRACE: Duration = Duration::from_secs(1);

/// The reader stage. An error (unreadable input, a resumed ledger from another input) stops
/// the run before it is returned.
fn read_records(
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    selection: &Selection,
    cx: &Context,
    tx: &mpsc::Sender<SourceRecord>,
    stop: &Stop,
) -> io::Result<()> {
    for record in records {
        let wanted = record.and_then(|r| Ok((selection.wants(cx, &r)?, r)));
        let (wanted, record) = match wanted {
            Ok(pair) => pair,
            Err(e) => {
                stop.stop(format!("reading the input failed: {e}"));
                return Err(e);
            }
        };
        if stop.is_stopped() || (wanted && tx.blocking_send(record).is_err()) {
            break;
        }
    }
    Ok(())
}

/// The dispatcher: takes a permit, then a record, and spawns the record's task with the
/// permit. Ctrl-C (or any stop) ends the dispatching; the records in flight still settle.
async fn dispatch(
    cx: &Arc<Context>,
    sender: &Arc<Sender>,
    mut records: mpsc::Receiver<SourceRecord>,
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
        let (Ok(permit), Some(record)) = (permit, record) else {
            break;
        };
        while let Some(done) = tasks.try_join_next() {
            note_panic(done, stop);
        }
        let (cx, sender, settled, stop) = (
            Arc::clone(cx),
            Arc::clone(sender),
            settled.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            match settle(
                &cx,
                &sender.target,
                &record,
                mode,
                &sender.pace(stop.halt()),
            )
            .await
            {
                Ok(settlement) => {
                    if settled.send(settlement).await.is_err() {
                        stop.stop("the ledger writer stopped".to_owned());
                    }
                }
                // The record stays unsettled: no entry, so a resumed run sends it.
                Err(reason) => stop.stop(reason),
            }
        });
    }
    drop(records);
    // Let every record in flight settle; those still waiting to send give up on a stop.
    while let Some(done) = tasks.join_next().await {
        note_panic(done, stop);
    }
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
    changes: Vec<FieldChange>,
    /// The target gave no usable answer (see [`crate::target::Settled::unanswered`]).
    unanswered: bool,
}

/// One record's trip: prepare, then the target. `Err` is a reason to stop the run.
async fn settle(
    cx: &Context,
    target: &Target,
    record: &SourceRecord,
    mode: Mode,
    pace: &Pace<'_>,
) -> Result<Settlement, String> {
    let mapped = match prepare(cx, record) {
        Ok(mapped) => mapped,
        Err(invalid) => {
            return Ok(Settlement {
                entry: *invalid,
                changes: Vec::new(),
                unanswered: false,
            });
        }
    };
    match target.sync(&cx.config, &mapped, mode, pace).await {
        Outcome::Settled(settled) => Ok(Settlement {
            entry: Entry {
                key: Some(mapped.key),
                target_id: settled.target_id.or(mapped.target_id),
                status: settled.status,
                changed: settled.changed.iter().map(|c| c.field.clone()).collect(),
                attempts: Some(settled.attempts),
                error: settled.error.map(|e| EntryError {
                    message: format!("{}:{}: {}", cx.input, record.line, e.message),
                    ..e
                }),
                ..new_entry(record, settled.status)
            },
            changes: settled.changed,
            unanswered: settled.unanswered,
        }),
        Outcome::Abort(reason) => Err(reason),
    }
}

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
    sender: Arc<Sender>,
}

impl Writer {
    /// Writes every settlement; an error stops the run, so that nothing more is sent
    /// without its entry.
    async fn run(
        self,
        rx: mpsc::Receiver<Settlement>,
    ) -> io::Result<(Tally, FieldCounts, Option<DiffReport>)> {
        let stop = self.stop.clone();
        let result = self.write_all(rx).await;
        if let Err(e) = &result {
            stop.stop(format!("writing the ledger failed: {e}"));
        }
        result
    }

    async fn write_all(
        mut self,
        mut rx: mpsc::Receiver<Settlement>,
    ) -> io::Result<(Tally, FieldCounts, Option<DiffReport>)> {
        let mut line = Vec::with_capacity(256);
        let (mut failed, mut unanswered) = (0, 0);
        while let Some(Settlement {
            entry,
            changes,
            unanswered: gave_up,
        }) = rx.recv().await
        {
            line.clear();
            entry.write_line(&mut line);
            self.ledger.write_lines(&line)?;
            if let Some(report) = &mut self.report {
                report.write(&entry, &changes)?;
            }
            self.tally.add(entry.status);
            self.fields.add(&entry.changed);
            self.progress
                .advance(1, &self.tally, Some(self.sender.limiter.current_rate()));
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
        if let Some(report) = &mut self.report {
            report.flush()?;
        }
        Ok((self.tally, self.fields, self.report))
    }
}
