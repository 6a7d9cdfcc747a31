//! Reporting: the progress line while a run goes, the summary at its end, and the diff
//! report of `plan` (and of `apply --report`). The only module that prints run results.

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::{Entry, Status};
use crate::targets::FieldChange;

/// Counts of records per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; Status::ALL.len()],
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, status: Status) {
        self.counts[index(status)] += 1;
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    /// Records with this status.
    pub fn get(&self, status: Status) -> u64 {
        self.counts[index(status)]
    }

    /// All records counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records that make the run exit 1.
    pub fn failures(&self) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_failure())
            .map(|s| self.get(*s))
            .sum()
    }
}

fn index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL")
}

/// A progress line on standard error, shown only on a terminal: a bar with an ETA when the
/// input's size is known, else a spinner; records, records/s, outcomes and the current rate.
///
/// The bar follows the work done, not the reading: its position is how much of the input is
/// behind the records that have settled (their byte offsets), so a reader far ahead of the
/// sending does not show 100% and an ETA of 0 while most records are still to be sent.
pub struct Progress {
    bar: Option<ProgressBar>,
    records: AtomicU64,
    /// The furthest byte offset of a settled record.
    settled: AtomicU64,
}

impl Progress {
    /// A progress line, unless it is switched off or standard error is not a terminal.
    /// `input` is (bytes read so far, total bytes) of the input; the bar measures the total
    /// against the settled records' offsets (see [`Progress::advance`]).
    pub fn new(enabled: bool, command: &str, input: (Arc<AtomicU64>, Option<u64>)) -> Progress {
        let off = Progress {
            bar: None,
            records: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        };
        if !enabled || !io::stderr().is_terminal() {
            return off;
        }
        let (bar, template) = match input.1 {
            Some(size) => (
                ProgressBar::new(size),
                "{prefix} [{wide_bar}] {percent:>3}% ETA {eta:<4} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix} {elapsed} {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(command.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            ..off
        }
    }

    /// Counts settled records and refreshes the line. `end` is the byte offset just past the
    /// furthest of them in the input (`SourceRecord::end`); `rate` is the limiter's current
    /// rate.
    pub fn advance(&self, records: u64, tally: &Tally, rate: Option<f64>, end: u64) {
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let before = self.settled.fetch_max(end, Ordering::Relaxed);
        let Some(bar) = &self.bar else { return };
        if end > before {
            bar.set_position(bar.length().map_or(end, |len| end.min(len)));
            // A resumed run starts far into the input: that jump is not this run's speed.
            if before == 0 {
                bar.reset_eta();
            }
        }
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        let mut msg = format!("{total} records, {:.0}/s", total as f64 / secs);
        for status in Status::ALL {
            let n = tally.get(status);
            if n > 0 && status != Status::Valid {
                msg.push_str(&format!(", {n} {}", status.name()));
            }
        }
        if let Some(rate) = rate {
            msg.push_str(&format!(", limit {rate:.0}/s"));
        }
        bar.set_message(msg);
    }

    /// The furthest byte offset of a settled record so far (0 when the line is off).
    pub fn settled_offset(&self) -> u64 {
        self.settled.load(Ordering::Relaxed)
    }

    /// Removes the progress line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes the end-of-run summary: counts per status, time, rate, and the ledger's path.
/// `carried` of the counted records settled in an earlier run (`--resume`): they are in the
/// counts, but not in this run's records/s.
pub fn summary(
    out: &mut dyn Write,
    command: &str,
    tally: &Tally,
    carried: u64,
    elapsed: Duration,
    ledger: &Path,
) -> io::Result<()> {
    let secs = elapsed.as_secs_f64();
    let done = tally.total().saturating_sub(carried);
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    write!(
        out,
        "{command}: {done} records in {secs:.2} s ({rate:.0} records/s)"
    )?;
    if carried > 0 {
        write!(out, ", {carried} more settled earlier")?;
    }
    writeln!(out)?;
    for status in Status::ALL {
        let n = tally.get(status);
        if n > 0 {
            writeln!(out, "  {:<13}{n:>10}", status.name())?;
        }
    }
    writeln!(out, "ledger: {}", ledger.display())
}

/// Writes what a `plan` or `apply` run cost and why records did not end well: the records
/// the sync state found unchanged, the requests per API operation (throttles included), and
/// the error codes of `failed` and `invalid` records (`email_change_guarded`, ...).
pub fn costs(out: &mut dyn Write, result: &crate::pipeline::SyncResult) -> io::Result<()> {
    let (calls, reasons) = (&result.calls, &result.reasons);
    if result.unchanged_by_state > 0 {
        writeln!(
            out,
            "unchanged by the sync state: {} (nothing read or written; --full reads them)",
            result.unchanged_by_state
        )?;
    }
    if !calls.is_empty() {
        let parts: Vec<String> = calls
            .iter()
            .map(|c| match c.throttled {
                0 => format!("{} {}", c.operation, c.requests),
                t => format!("{} {} ({t} throttled)", c.operation, c.requests),
            })
            .collect();
        writeln!(out, "requests: {}", parts.join(", "))?;
    }
    if !reasons.is_empty() {
        let parts: Vec<String> = reasons
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        writeln!(out, "reasons: {}", parts.join(", "))?;
    }
    Ok(())
}

/// The diff report: one CSV row per changed field of each record that changes (or would).
///
/// Field values are personal data, so the `from` and `to` columns are only written when the
/// user asks for them (`--show-values`); without them the report still says which field of
/// which record changes.
pub struct DiffReport {
    out: csv::Writer<File>,
    path: PathBuf,
    values: bool,
}

impl DiffReport {
    /// Creates `DIR/<time>-<command>-diff.csv` (and `DIR`).
    pub fn create(dir: &Path, command: &str, values: bool) -> io::Result<DiffReport> {
        fs::create_dir_all(dir)?;
        let path = crate::ledger::stamped_path(dir, &format!("{command}-diff"), "csv");
        let file = File::create_new(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create the report {}: {e}", path.display()),
            )
        })?;
        let mut out = csv::Writer::from_writer(file);
        let mut header = vec!["record", "line", "key", "target_id", "status", "field"];
        if values {
            header.extend(["from", "to"]);
        }
        out.write_record(&header)?;
        Ok(DiffReport { out, path, values })
    }

    /// The report's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the rows of one settled record.
    pub fn write(&mut self, entry: &Entry, changes: &[FieldChange]) -> io::Result<()> {
        for change in changes {
            let (record, line) = (entry.record.to_string(), entry.line.to_string());
            let mut row = vec![
                record.as_str(),
                line.as_str(),
                entry.key.as_deref().unwrap_or(""),
                entry.target_id.as_deref().unwrap_or(""),
                entry.status.name(),
                change.field.as_str(),
            ];
            if self.values {
                row.push(change.from.as_deref().unwrap_or("(not read)"));
                row.push(&change.to);
            }
            self.out.write_record(&row)?;
        }
        Ok(())
    }

    /// Flushes the report to its file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_follows_settled_records_not_the_reader() {
        // The reader has read the whole 30,000-byte input; 3 records have settled, out of
        // order, the furthest ending at byte 900.
        let read = Arc::new(AtomicU64::new(30_000));
        let mut progress = Progress::new(false, "apply", (read, Some(30_000)));
        let bar =
            ProgressBar::with_draw_target(Some(30_000), indicatif::ProgressDrawTarget::hidden());
        progress.bar = Some(bar.clone());
        let tally = Tally::default();
        for end in [600, 900, 300] {
            progress.advance(1, &tally, None, end);
        }
        assert_eq!(bar.position(), 900);
        assert_eq!(progress.settled_offset(), 900);
        progress.advance(1, &tally, None, 40_000);
        assert_eq!(bar.position(), 30_000, "never past the end");
    }

    #[test]
    fn diff_reports_show_values_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry {
            record: 2,
            line: 3,
            key: Some("C2".into()),
            target_id: Some("abc".into()),
            status: Status::WouldUpdate,
            changed: vec!["FirstName".into()],
            attempts: Some(1),
            error: None,
            basis: None,
        };
        let changes = [FieldChange {
            field: "FirstName".into(),
            from: Some("Ana".into()),
            to: "Anna".into(),
        }];
        for values in [false, true] {
            let mut report = DiffReport::create(dir.path(), "plan", values).unwrap();
            report.write(&entry, &changes).unwrap();
            report.flush().unwrap();
            let text = fs::read_to_string(report.path()).unwrap();
            if values {
                assert_eq!(
                    text,
                    "record,line,key,target_id,status,field,from,to\n2,3,C2,abc,would_update,FirstName,Ana,Anna\n"
                );
            } else {
                assert_eq!(
                    text,
                    "record,line,key,target_id,status,field\n2,3,C2,abc,would_update,FirstName\n"
                );
            }
        }
    }

    #[test]
    fn summary_lists_nonzero_statuses_and_the_ledger() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.add(Status::Valid);
        }
        tally.add(Status::Invalid);
        assert_eq!(tally.total(), 4);
        assert_eq!(tally.failures(), 1);
        let mut out = Vec::new();
        summary(
            &mut out,
            "check",
            &tally,
            0,
            Duration::from_secs(2),
            Path::new("l.jsonl"),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("check: 4 records in 2.00 s (2 records/s)\n"),
            "{text}"
        );
        let mut resumed = Vec::new();
        summary(
            &mut resumed,
            "apply",
            &tally,
            3,
            Duration::from_secs(2),
            Path::new("l.jsonl"),
        )
        .unwrap();
        let resumed = String::from_utf8(resumed).unwrap();
        assert!(
            resumed
                .starts_with("apply: 1 records in 2.00 s (0 records/s), 3 more settled earlier\n"),
            "{resumed}"
        );
        assert!(text.contains("  valid                 3\n"));
        assert!(text.contains("  invalid               1\n"));
        assert!(!text.contains("failed"));
        assert!(text.ends_with("ledger: l.jsonl\n"));
    }
}
