//! The pipeline: the one module that wires threads and channels.
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

use std::collections::BTreeMap;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::config::Config;
use crate::ledger::{Entry, EntryError, Ledger, Status};
use crate::mapping::{self, Mapped, Plan};
use crate::report::{Progress, Tally};
use crate::source::{Body, SourceRecord};
use crate::validate::{self, Operation};

/// Records per batch: large enough to make channel traffic negligible, small enough to keep
/// the ledger close behind the input.
const BATCH: usize = 512;

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
            progress.advance(done.tally.total(), &tally);
            next += 1;
        }
    }
    Ok(tally)
}

/// Maps and validates one record into its `check` ledger entry.
pub fn check_record(cx: &Context, record: &SourceRecord) -> Entry {
    let mut entry = Entry {
        record: record.record,
        line: record.line,
        key: None,
        target_id: None,
        status: Status::Valid,
        changed: Vec::new(),
        attempts: None,
        error: None,
    };
    if let Body::Broken(broken) = &record.body {
        entry.status = Status::Invalid;
        entry.error = Some(EntryError {
            code: broken.code.to_owned(),
            message: format!(
                "{}:{}: record {} {}",
                cx.input, record.line, record.record, broken.message
            ),
            problems: Vec::new(),
        });
        return entry;
    }
    let mapped = map_and_validate(cx, record);
    entry.key = Some(mapped.key.clone()).filter(|k| !k.is_empty());
    entry.target_id = mapped.target_id.clone();
    if !mapped.problems.is_empty() {
        entry.status = Status::Invalid;
        entry.error = Some(invalid_error(&cx.input, record.line, mapped.problems));
    }
    entry
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
