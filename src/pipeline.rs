//! The pipeline: the one module that wires threads, tasks and channels.
//!
//! `check` runs on plain threads, since it is CPU-bound:
//!
//! ```text
//! reader thread ──batches──▶ N workers (map + validate + serialize) ──▶ writer (this thread)
//! ```
//!
//! Every channel is bounded, so a slow stage holds back the ones before it and memory stays
//! flat whatever the input size. Batches carry a sequence number; the writer puts them back
//! in input order, so the ledger follows the input. Shutdown is by dropping senders: the
//! reader's end closes the workers' input, the workers' ends close the writer's.
//!
//! `plan` and `apply` are network-bound and run on tokio:
//!
//! ```text
//! reader (blocking thread) ──records──▶ dispatcher ──spawns, one permit each──▶ record tasks
//!                                                                                   │ entries
//!                                                   ledger writer task ◀────────────┘
//! ```
//!
//! The dispatcher takes one of `concurrency` semaphore permits before it starts a record; the
//! permit travels with the task and is freed when the record settles. Every request of a task
//! goes through the shared limiter and retry policy (see [`crate::target`]). A stop (Ctrl-C,
//! `--max-errors`, an error that is not about one record) ends the dispatching; the records
//! in flight still settle, the ledger is flushed, and the reader notices its closed channel.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::config::Config;
use crate::ledger::{Entry, EntryError, KeyIndex, Ledger, RecordSet, Status};
use crate::limiter::Limiter;
use crate::mapping::{self, Mapped, Plan};
use crate::report::{DiffReport, Progress, Tally};
use crate::retry::RetryPolicy;
use crate::source::{Body, SourceRecord};
use crate::target::{FieldChange, Mode, Outcome, Pace, Target};
use crate::validate::{self, Operation};

/// Records per batch: large enough to make channel traffic negligible, small enough to keep
/// the ledger close behind the input.
const BATCH: usize = 512;

/// Records that fail to connect, with no record reaching the target before them, after
/// which a run stops (exit 3).
const UNREACHABLE_LIMIT: u32 = 3;

/// What a run needs to turn a record into a ledger entry.
pub struct Context {
    /// The compiled config.
    pub config: Config,
    /// The column bindings for this input.
    pub plan: Plan,
    /// The input's name, for messages.
    pub input: String,
}

struct Batch {
    seq: u64,
    records: Vec<SourceRecord>,
}

struct Done {
    seq: u64,
    lines: Vec<u8>,
    tally: Tally,
}

/// Runs `check`: maps and validates every record, writes one ledger entry per record.
/// Returns the tally, or the I/O error that stopped the input or the ledger.
pub fn check(
    cx: Context,
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    ledger: &mut Ledger,
    progress: &Progress,
) -> io::Result<Tally> {
    let workers = thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (batch_tx, batch_rx) = sync_channel::<Batch>(workers * 2);
    let (done_tx, done_rx) = sync_channel::<Done>(workers * 2);
    let cx = Arc::new(cx);
    let batch_rx = Arc::new(Mutex::new(batch_rx));

    let reader = thread::spawn(move || read_batches(records, batch_tx));
    for _ in 0..workers {
        let (cx, rx, tx) = (Arc::clone(&cx), Arc::clone(&batch_rx), done_tx.clone());
        thread::spawn(move || check_batches(&cx, &rx, &tx));
    }
    drop(done_tx);

    let tally = write_in_order(done_rx, ledger, progress);
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")));
    let tally = tally?;
    read.map(|()| tally)
}

/// The reader stage: groups records into batches. Stops at the first I/O error.
fn read_batches(
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    tx: SyncSender<Batch>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut seq = 0;
    for record in records {
        batch.push(record?);
        if batch.len() == BATCH {
            let records = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(Batch { seq, records }).is_err() {
                return Ok(()); // The writer stopped; its error is reported there.
            }
            seq += 1;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Batch {
            seq,
            records: batch,
        });
    }
    Ok(())
}

/// A worker: takes batches until the reader is done, checks each record.
fn check_batches(cx: &Context, rx: &Mutex<Receiver<Batch>>, tx: &SyncSender<Done>) {
    loop {
        let next = rx.lock().map(|rx| rx.recv());
        let Ok(Ok(batch)) = next else { return };
        let mut done = Done {
            seq: batch.seq,
            lines: Vec::with_capacity(batch.records.len() * 96),
            tally: Tally::default(),
        };
        for record in &batch.records {
            let entry = check_record(cx, record);
            done.tally.add(entry.status);
            entry.write_line(&mut done.lines);
        }
        if tx.send(done).is_err() {
            return;
        }
    }
}

/// The writer stage: writes finished batches to the ledger in input order.
fn write_in_order(
    rx: Receiver<Done>,
    ledger: &mut Ledger,
    progress: &Progress,
) -> io::Result<Tally> {
    let mut pending = BTreeMap::new();
    let mut next = 0;
    let mut tally = Tally::default();
    for done in rx {
        pending.insert(done.seq, done);
        while let Some(done) = pending.remove(&next) {
            ledger.write_lines(&done.lines)?;
            tally.merge(&done.tally);
            progress.advance(done.tally.total(), &tally, None);
            next += 1;
        }
    }
    Ok(tally)
}

/// Maps and validates one record into its `check` ledger entry.
pub fn check_record(cx: &Context, record: &SourceRecord) -> Entry {
    match prepare(cx, record) {
        Ok(mapped) => Entry {
            key: Some(mapped.key),
            target_id: mapped.target_id,
            ..new_entry(record, Status::Valid)
        },
        Err(invalid) => *invalid,
    }
}

fn new_entry(record: &SourceRecord, status: Status) -> Entry {
    Entry {
        record: record.record,
        line: record.line,
        key: None,
        target_id: None,
        status,
        changed: Vec::new(),
        attempts: None,
        error: None,
    }
}

/// A record that is ready to send, or its `invalid` ledger entry.
fn prepare(cx: &Context, record: &SourceRecord) -> Result<Mapped, Box<Entry>> {
    if let Body::Broken(broken) = &record.body {
        return Err(Box::new(Entry {
            error: Some(EntryError {
                code: broken.code.to_owned(),
                message: format!(
                    "{}:{}: record {} {}",
                    cx.input, record.line, record.record, broken.message
                ),
                problems: Vec::new(),
            }),
            ..new_entry(record, Status::Invalid)
        }));
    }
    let mapped = map_and_validate(cx, record);
    if mapped.problems.is_empty() {
        return Ok(mapped);
    }
    Err(Box::new(Entry {
        key: Some(mapped.key.clone()).filter(|k| !k.is_empty()),
        target_id: mapped.target_id.clone(),
        error: Some(invalid_error(&cx.input, record.line, mapped.problems)),
        ..new_entry(record, Status::Invalid)
    }))
}

/// Maps a readable record and validates it for an update.
pub fn map_and_validate(cx: &Context, record: &SourceRecord) -> Mapped {
    let kind = cx.config.target.kind;
    let mut mapped = mapping::map_row(&cx.plan, &cx.config.rules, record, kind.multi_valued());
    validate::validate(kind, &cx.config.rules, &mut mapped, Operation::Update);
    mapped
}

/// The ledger error of an invalid record: one sentence naming each field and rule.
fn invalid_error(input: &str, line: u64, problems: Vec<mapping::Problem>) -> EntryError {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| match &p.column {
            Some(column) => format!("{} (column {column}): {}", p.field, p.message),
            None => format!("{}: {}", p.field, p.message),
        })
        .collect();
    EntryError {
        code: "invalid_record".to_owned(),
        message: format!("{input}:{line}: {}", parts.join("; ")),
        problems,
    }
}

/// What a `plan` or `apply` run does, beyond the config.
pub struct SyncOptions {
    /// Plan or apply.
    pub mode: Mode,
    /// Records to leave out (`--resume`: the ones already settled).
    pub skip: Option<(RecordSet, KeyIndex)>,
    /// The only records to send (`--retry-failed`).
    pub only: Option<RecordSet>,
    /// Stop after this many `failed` records.
    pub max_errors: Option<u64>,
    /// Records in flight at once.
    pub concurrency: usize,
    /// Counts carried over from an earlier ledger (`--resume`).
    pub carried: Tally,
    /// Where to write the diff report, if anywhere.
    pub report: Option<DiffReport>,
}

/// How a `plan` or `apply` run ended.
#[derive(Debug)]
pub struct SyncResult {
    /// Records per status, carried-over counts included.
    pub tally: Tally,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// The diff report written, if any.
    pub report: Option<PathBuf>,
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
}

/// Runs `plan` or `apply`: every wanted record is prepared, sent under the limiter, and
/// settled in the ledger. Returns the tally and, if the run stopped early, why.
#[allow(clippy::too_many_arguments)]
pub async fn sync(
    cx: Arc<Context>,
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    ledger: Ledger,
    target: Arc<Target>,
    limiter: Arc<Limiter>,
    policy: RetryPolicy,
    options: SyncOptions,
    progress: Arc<Progress>,
) -> io::Result<SyncResult> {
    let stop = Stop::new();
    let concurrency = options.concurrency.max(1);
    let (record_tx, mut record_rx) = mpsc::channel::<SourceRecord>(concurrency * 2);
    let (entry_tx, entry_rx) = mpsc::channel::<Settlement>(concurrency * 2);

    // Stage 1: read, on a blocking thread, leaving out what this run does not send.
    let (skip, only) = (options.skip, options.only);
    let (reader_stop, reader_cx) = (stop.clone(), Arc::clone(&cx));
    let reader = tokio::task::spawn_blocking(move || -> io::Result<()> {
        for record in records {
            let record = record?;
            let settled = match &skip {
                Some((settled, keys)) if settled.contains(record.record) => {
                    check_same_input(&reader_cx, &record, keys)?;
                    true
                }
                _ => false,
            };
            let wanted = !settled && only.as_ref().is_none_or(|o| o.contains(record.record));
            if reader_stop.is_stopped() || (wanted && record_tx.blocking_send(record).is_err()) {
                break;
            }
        }
        Ok(())
    });

    // Stage 3: write each entry as it settles.
    let writer = Writer {
        ledger,
        report: options.report,
        tally: options.carried,
        max_errors: options.max_errors,
        stop: stop.clone(),
        progress,
        limiter: Arc::clone(&limiter),
    };
    let writer = tokio::spawn(writer.run(entry_rx));

    // Stage 2: dispatch records, one permit each.
    let permits = Arc::new(Semaphore::new(concurrency));
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    loop {
        let record = tokio::select! {
            biased;
            _ = &mut interrupt => {
                stop.stop("interrupted".to_owned());
                break;
            }
            () = stop.stopped() => break,
            record = record_rx.recv() => match record {
                Some(record) => record,
                None => break,
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (cx, target, limiter, entry_tx, stop) = (
            Arc::clone(&cx),
            Arc::clone(&target),
            Arc::clone(&limiter),
            entry_tx.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let pace = Pace {
                limiter: &limiter,
                policy: &policy,
            };
            match settle(&cx, &target, &record, options.mode, &pace).await {
                Ok(settlement) => {
                    let _ = entry_tx.send(settlement).await;
                }
                Err(reason) => stop.stop(reason),
            }
            drop(permit);
        });
    }
    drop(record_rx);
    // Let every record in flight settle.
    let _ = permits.acquire_many(concurrency as u32).await;
    drop(entry_tx);
    let (tally, report) = writer.await.map_err(io::Error::other)??;
    reader.await.map_err(io::Error::other)??;
    Ok(SyncResult {
        tally,
        aborted: stop.reason(),
        report: report.map(|r| r.path().to_owned()),
    })
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
        }),
        Outcome::Abort(reason) => Err(reason),
    }
}

/// The writer stage: the only place that writes the ledger (and the diff report) during a
/// `plan` or `apply` run. It also counts, shows progress, and stops the run on
/// `--max-errors` or when the target never answers.
struct Writer {
    ledger: Ledger,
    report: Option<DiffReport>,
    tally: Tally,
    max_errors: Option<u64>,
    stop: Stop,
    progress: Arc<Progress>,
    limiter: Arc<Limiter>,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Settlement>,
    ) -> io::Result<(Tally, Option<DiffReport>)> {
        let mut line = Vec::with_capacity(256);
        let mut failed = 0;
        let (mut reached, mut unreachable) = (false, 0);
        while let Some(Settlement { entry, changes }) = rx.recv().await {
            line.clear();
            entry.write_line(&mut line);
            self.ledger.write_lines(&line)?;
            if let Some(report) = &mut self.report {
                report.write(&entry, &changes)?;
            }
            self.tally.add(entry.status);
            self.progress
                .advance(1, &self.tally, Some(self.limiter.current_rate()));
            let code = entry.error.as_ref().map(|e| e.code.as_str());
            let no_answer =
                entry.status == Status::Failed && matches!(code, Some("connection" | "timeout"));
            reached |= entry.status != Status::Invalid && !no_answer;
            if entry.status == Status::Failed {
                failed += 1;
                if self.max_errors.is_some_and(|max| failed >= max) {
                    self.stop
                        .stop(format!("--max-errors reached: {failed} records failed"));
                }
                // A target that never answered is not a per-record problem: stop early rather
                // than retry every record of the input against it.
                if !reached && no_answer {
                    unreachable += 1;
                    if unreachable >= UNREACHABLE_LIMIT {
                        self.stop.stop(format!(
                            "the target could not be reached: the first {unreachable} records \
                             failed to connect after every retry ({})",
                            entry.error.as_ref().map_or("", |e| e.message.as_str())
                        ));
                    }
                }
            }
        }
        if let Some(report) = &mut self.report {
            report.flush()?;
        }
        Ok((self.tally, self.report))
    }
}
