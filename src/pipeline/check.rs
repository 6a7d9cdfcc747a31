//! `check`: the CPU-bound pipeline, on plain threads.
//!
//! ```text
//! reader thread ──batches──▶ N workers (map + validate + serialize) ──▶ writer (caller's thread)
//! ```
//!
//! Batches carry a sequence number; the writer puts them back in input order, so the ledger
//! follows the input. Shutdown is by dropping senders: the reader's end closes the workers'
//! input, the workers' ends close the writer's.

use std::collections::BTreeMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use super::signals::Interrupts;
use super::{Context, check_record};
use crate::ledger::{Ledger, Tally};
use crate::report::Progress;
use crate::source::SourceRecord;

/// Records per batch: large enough to make channel traffic negligible, small enough to keep
/// the ledger close behind the input.
const BATCH: usize = 512;

struct Batch {
    seq: u64,
    records: Vec<SourceRecord>,
}

struct Done {
    seq: u64,
    lines: Vec<u8>,
    tally: Tally,
    /// The byte offset just past the batch's last record, for the progress.
    end: u64,
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
    let (done_tx, done_rx) = sync_channel::<Result<Done, String>>(workers * 2);
    let cx = Arc::new(cx);
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let interrupted = interrupt_flag();

    let reader = thread::spawn(move || read_batches(records, batch_tx, &interrupted));
    for _ in 0..workers {
        let (cx, rx, tx) = (Arc::clone(&cx), Arc::clone(&batch_rx), done_tx.clone());
        thread::spawn(move || check_batches(&cx, &rx, &tx));
    }
    // Only the stages hold channel ends now: when one stops, the others see it.
    drop((batch_rx, done_tx));

    let tally = write_in_order(done_rx, ledger, progress);
    let read = reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")));
    let tally = tally?;
    read.map(|()| tally)
}

/// A flag that turns true on Ctrl-C or SIGTERM, for the threads of `check`; a second signal
/// exits at once with code 3. A small thread waits for the signals; the handlers are in
/// place when this returns.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    if let Ok(runtime) = runtime {
        let interrupts = {
            let _inside = runtime.enter();
            Interrupts::register()
        };
        if let Ok(interrupts) = interrupts {
            thread::spawn(move || {
                runtime.block_on(interrupts.watch(|_| set.store(true, Ordering::Relaxed)));
            });
        }
    }
    flag
}

/// The reader stage: groups records into batches. Stops at the first I/O error.
fn read_batches(
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
    tx: SyncSender<Batch>,
    interrupted: &AtomicBool,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut seq = 0;
    for record in records {
        let record = match record {
            Ok(_) if interrupted.load(Ordering::Relaxed) => {
                Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"))
            }
            other => other,
        };
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                // Stop reading; what was read still gets its entries.
                let _ = tx.send(Batch {
                    seq,
                    records: batch,
                });
                return Err(e);
            }
        };
        batch.push(record);
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
    // A Ctrl-C that also ended the input (it reaches the producer of a pipe too) still
    // makes the run an interrupted one, not a complete one.
    if interrupted.load(Ordering::Relaxed) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}

/// A worker: takes batches until the reader is done, checks each record. A panic (a bug)
/// is reported to the writer, which stops the run rather than leave a hole in the ledger.
fn check_batches(cx: &Context, rx: &Mutex<Receiver<Batch>>, tx: &SyncSender<Result<Done, String>>) {
    loop {
        let next = rx.lock().map(|rx| rx.recv());
        let Ok(Ok(batch)) = next else { return };
        let seq = batch.seq;
        let done = panic::catch_unwind(AssertUnwindSafe(|| check_batch(cx, batch)))
            .map_err(|_| format!("internal error while checking batch {seq}"));
        if tx.send(done).is_err() {
            return;
        }
    }
}

fn check_batch(cx: &Context, batch: Batch) -> Done {
    let mut done = Done {
        seq: batch.seq,
        lines: Vec::with_capacity(batch.records.len() * 96),
        tally: Tally::default(),
        end: batch.records.last().map_or(0, |r| r.end),
    };
    for record in &batch.records {
        let entry = check_record(cx, record);
        done.tally.add(entry.status);
        entry.write_line(&mut done.lines);
    }
    done
}

/// The writer stage: writes finished batches to the ledger in input order.
fn write_in_order(
    rx: Receiver<Result<Done, String>>,
    ledger: &mut Ledger,
    progress: &Progress,
) -> io::Result<Tally> {
    let mut pending = BTreeMap::new();
    let mut next = 0;
    let mut tally = Tally::default();
    for done in rx {
        let done = done.map_err(io::Error::other)?;
        pending.insert(done.seq, done);
        while let Some(done) = pending.remove(&next) {
            ledger.write_lines(&done.lines)?;
            tally.merge(&done.tally);
            progress.advance(done.tally.total(), &tally, None, done.end);
            progress.log_if_due();
            next += 1;
        }
    }
    Ok(tally)
}
