//! Reporting: the progress line while a run goes, the summary at its end, and the diff
//! report of `plan` (and of `apply --report`). The only module that prints run results.
//!
//! The diff report is three files of one run, with one time stamp: `csv.rs` writes one row
//! per changed field (cells neutralised against formula injection), `jsonl.rs` one object per
//! changed record, and `html.rs` one self-contained page for the people who sign a change
//! off. The first two are streamed as records settle; the page is written at the end, when
//! the totals, the duration and the exit code are known, from what it kept on the way (the
//! first [`TABLE_LIMIT`] changed records and problems; counts of everything). Values (the
//! `from` and `to` of a change) are kept and written only with `--show-values`, and then
//! every file is created mode 0600.

mod csv;
mod html;
mod jsonl;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::{Deletion, Entry, Status, Tally};
use crate::limiter::OperationCalls;
use crate::targets::{FieldChange, Mode};

pub use csv::neutralise;
pub use html::escape;

/// A progress line on standard error, shown only on a terminal: a bar with an ETA when the
/// input's size is known, else a spinner; records, records/s, outcomes and the current rate.
///
/// The bar follows the work done, not the reading: its position is how much of the input is
/// behind the records that have settled (their byte offsets), so a reader far ahead of the
/// sending does not show 100% and an ETA of 0 while most records are still to be sent.
///
/// With `-v` (where a bar would mix with the log lines, and in cron jobs and containers,
/// which have no terminal) there is no bar: the progress is logged instead, one line every
/// [`PROGRESS_LOG_PERIOD`] while the run goes ([`logging_progress`]).
pub struct Progress {
    bar: Option<ProgressBar>,
    /// What the last settled record left, for the log lines, when they are on.
    log: Option<Mutex<Seen>>,
    records: AtomicU64,
    /// The furthest byte offset of a settled record.
    settled: AtomicU64,
}

/// How often a run without a progress bar logs its progress (at `-v`).
pub const PROGRESS_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The counts behind the progress log lines.
struct Seen {
    started: Instant,
    tally: Tally,
    limits: Option<String>,
    /// The settled count and the time of the previous line.
    last: (u64, Instant),
}

/// One progress log line: settled records, the rate overall and since the previous line,
/// the counts by status and each API operation's rate with its throttles.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressLine {
    /// Records settled so far.
    pub settled: u64,
    /// Records per second since the run started.
    pub per_second: f64,
    /// Records per second since the previous line.
    pub recent_per_second: f64,
    /// `"1200 updated, 4 failed"`.
    pub statuses: String,
    /// `"UpdateProfile 40/s (3 throttled)"`, when any operation was used.
    pub limits: Option<String>,
}

impl fmt::Display for ProgressLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records settled, {:.0}/s (last {} s: {:.0}/s)",
            self.settled,
            self.per_second,
            PROGRESS_LOG_PERIOD.as_secs(),
            self.recent_per_second
        )?;
        if !self.statuses.is_empty() {
            write!(f, ", {}", self.statuses)?;
        }
        if let Some(limits) = &self.limits {
            write!(f, "; {limits}")?;
        }
        Ok(())
    }
}

/// `"1200 updated, 4 failed"`: the statuses with records, but `valid`.
fn status_counts(tally: &Tally) -> String {
    let mut out = String::new();
    for status in Status::ALL {
        let n = tally.get(status);
        if n > 0 && status != Status::Valid {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&format!("{n} {}", status.name()));
        }
    }
    out
}

/// Runs `work`; while it runs, logs the progress every [`PROGRESS_LOG_PERIOD`] when the
/// progress is logged (`-v`, see [`Progress`]). Nothing is spawned: the ticks run beside the
/// work in the same task and stop with it.
pub async fn logging_progress<T>(progress: &Progress, work: impl Future<Output = T>) -> T {
    log_every(progress, PROGRESS_LOG_PERIOD, work, log_line).await
}

/// Logs one progress line, its figures as fields.
fn log_line(line: &ProgressLine) {
    tracing::info!(
        settled = line.settled,
        per_second = line.per_second.round() as u64,
        recent_per_second = line.recent_per_second.round() as u64,
        statuses = %line.statuses,
        limits = line.limits.as_deref().unwrap_or(""),
        "progress: {line}"
    );
}

/// [`logging_progress`] with the period and the writer given (for the tests).
async fn log_every<T>(
    progress: &Progress,
    period: Duration,
    work: impl Future<Output = T>,
    mut emit: impl FnMut(&ProgressLine),
) -> T {
    if progress.log.is_none() {
        return work.await;
    }
    let ticks = async {
        let mut interval = tokio::time::interval_at(Instant::now() + period, period);
        loop {
            interval.tick().await;
            if let Some(line) = progress.line() {
                emit(&line);
            }
        }
    };
    tokio::select! {
        out = work => out,
        _ = ticks => unreachable!("the ticks never end"),
    }
}

impl Progress {
    /// A progress line, unless it is switched off or standard error is not a terminal.
    /// `input` is (bytes read so far, total bytes) of the input; the bar measures the total
    /// against the settled records' offsets (see [`Progress::advance`]).
    /// With `logged` (`-v`) there is no bar, and the progress is logged instead.
    pub fn new(
        enabled: bool,
        logged: bool,
        command: &str,
        input: (Arc<AtomicU64>, Option<u64>),
    ) -> Progress {
        let off = Progress {
            bar: None,
            log: None,
            records: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        };
        if enabled && logged {
            let now = Instant::now();
            return Progress {
                log: Some(Mutex::new(Seen {
                    started: now,
                    tally: Tally::default(),
                    limits: None,
                    last: (0, now),
                })),
                ..off
            };
        }
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
    /// furthest of them in the input (`SourceRecord::end`); `limits` is the limiters' current
    /// rates and throttles (`Limiters::progress`).
    pub fn advance(&self, records: u64, tally: &Tally, limits: Option<&str>, end: u64) {
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        let before = self.settled.fetch_max(end, Ordering::Relaxed);
        if let Some(log) = &self.log {
            let mut seen = log.lock().unwrap_or_else(|e| e.into_inner());
            seen.tally.clone_from(tally);
            seen.limits = limits.map(str::to_owned);
        }
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
        let statuses = status_counts(tally);
        if !statuses.is_empty() {
            msg.push_str(&format!(", {statuses}"));
        }
        if let Some(limits) = limits {
            msg.push_str(&format!(", {limits}"));
        }
        bar.set_message(msg);
    }

    /// The progress as a log line, when it is logged; the next line's recent rate counts
    /// from now.
    fn line(&self) -> Option<ProgressLine> {
        let mut seen = self.log.as_ref()?.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let settled = self.records.load(Ordering::Relaxed);
        let rate = |records: u64, since: Instant| {
            records as f64 / now.duration_since(since).as_secs_f64().max(0.001)
        };
        let line = ProgressLine {
            settled,
            per_second: rate(settled, seen.started),
            recent_per_second: rate(settled.saturating_sub(seen.last.0), seen.last.1),
            statuses: status_counts(&seen.tally),
            limits: seen.limits.clone(),
        };
        seen.last = (settled, now);
        Some(line)
    }

    /// Logs the progress line if [`PROGRESS_LOG_PERIOD`] has passed since the previous one
    /// (or the start), when the progress is logged: for `check`, whose stages are threads
    /// with no task to tick beside them, called as its records settle.
    pub fn log_if_due(&self) {
        let due = self.log.as_ref().is_some_and(|log| {
            let seen = log.lock().unwrap_or_else(|e| e.into_inner());
            seen.last.1.elapsed() >= PROGRESS_LOG_PERIOD
        });
        if let Some(line) = due.then(|| self.line()).flatten() {
            log_line(&line);
        }
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

/// Records that change each field, by field name: every record of the run, not only those
/// the report's page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldCounts {
    counts: BTreeMap<String, u64>,
}

impl FieldCounts {
    /// Counts one record that changes `fields` (each once, even if named twice).
    pub fn add(&mut self, fields: &[String]) {
        for (i, field) in fields.iter().enumerate() {
            if fields[..i].contains(field) {
                continue;
            }
            match self.counts.get_mut(field) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(field.clone(), 1);
                }
            }
        }
    }

    /// Records that change `field`.
    pub fn get(&self, field: &str) -> u64 {
        self.counts.get(field).copied().unwrap_or(0)
    }

    /// Every field with its count, most records first (then by name).
    pub fn ranked(&self) -> Vec<(&str, u64)> {
        let mut ranked: Vec<_> = self.counts.iter().map(|(f, n)| (f.as_str(), *n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked
    }

    /// Whether no record changes any field.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Fields the terminal summary lists; the page lists them all.
const TOP_FIELDS: usize = 5;

/// Writes the end-of-run summary: counts per status, time, rate, the fields most records
/// change (for `plan` and `apply`; `check` has none), and the ledger's path.
/// `carried` of the counted records settled in an earlier run (`--resume`): they are in the
/// counts, but not in this run's records/s.
pub fn summary(
    out: &mut dyn Write,
    command: &str,
    tally: &Tally,
    carried: u64,
    elapsed: Duration,
    fields: &FieldCounts,
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
    if !fields.is_empty() {
        let ranked = fields.ranked();
        let width = ranked
            .iter()
            .take(TOP_FIELDS)
            .map(|(f, _)| f.chars().count())
            .max()
            .unwrap_or(0)
            .max(13);
        writeln!(out, "top fields, by records that change them:")?;
        for (field, n) in ranked.iter().take(TOP_FIELDS) {
            writeln!(out, "  {field:<width$}{n:>10}")?;
        }
        if ranked.len() > TOP_FIELDS {
            writeln!(out, "  and {} more fields", ranked.len() - TOP_FIELDS)?;
        }
    }
    writeln!(out, "ledger: {}", ledger.display())
}

/// Changed records, and failed or invalid ones, that the report's page lists; the JSONL
/// report (and the ledger) hold them all.
pub const TABLE_LIMIT: usize = 5_000;

/// The run, as the report's page tells it: what is known when the run starts.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Plan ("would") or apply ("applied").
    pub mode: Mode,
    /// The command line.
    pub command: String,
    /// The config file.
    pub config: String,
    /// The input.
    pub input: String,
    /// The target: kind and domain, instance or base URL.
    pub target: String,
    /// When the run started.
    pub started: chrono::DateTime<chrono::Local>,
}

/// How the run ended, for the report's page.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    /// How long it took.
    pub duration: Duration,
    /// The exit code.
    pub exit_code: i32,
    /// Why it stopped early, if it did.
    pub stopped: Option<&'a str>,
    /// Records per status: the ledger's counts, carried ones included.
    pub tally: &'a Tally,
    /// How many of them settled in an earlier run (`--resume`).
    pub carried: u64,
    /// Rows whose target record an earlier row of the input named too.
    pub duplicates: u64,
    /// Records that change each field, this run's.
    pub fields: &'a FieldCounts,
    /// The ledger.
    pub ledger: &'a Path,
}

/// The three files of a diff report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// The page for people: `STAMP-COMMAND-report.html`.
    pub html: PathBuf,
    /// One row per changed field: `STAMP-COMMAND-diff.csv`.
    pub csv: PathBuf,
    /// One object per changed record: `STAMP-COMMAND-diff.jsonl`.
    pub jsonl: PathBuf,
}

impl ReportPaths {
    /// The lines of the summary that name the report's files.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "report: {}", self.html.display())?;
        writeln!(out, "diff csv: {}", self.csv.display())?;
        writeln!(out, "diff jsonl: {}", self.jsonl.display())
    }
}

/// Writes what a `plan` or `apply` run cost and why records did not end well: the records
/// the sync state found unchanged, the rows that named a record an earlier row named, the
/// requests per API operation (throttles included), and the error codes of `failed`,
/// `invalid`, `not_found` and `skipped` records (`email_change_guarded`, `not_found`, ...).
pub fn costs(
    out: &mut dyn Write,
    unchanged_by_state: u64,
    duplicates: u64,
    calls: &[OperationCalls],
    reasons: &BTreeMap<String, u64>,
) -> io::Result<()> {
    if unchanged_by_state > 0 {
        writeln!(
            out,
            "unchanged by the sync state: {unchanged_by_state} (nothing read or written; --full reads them)"
        )?;
    }
    if duplicates > 0 {
        writeln!(
            out,
            "duplicate keys in the input: {duplicates} rows name a target record an earlier row named (applied after it, in input order)"
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

/// The diff report of a `plan` (or `apply --report`) run: CSV and JSONL as records settle,
/// the HTML page at the end ([`DiffReport::finish`]).
///
/// Field values are personal data, so they are only kept and written when the user asks for
/// them (`--show-values`); without them the report still says which field of which record
/// changes.
pub struct DiffReport {
    paths: ReportPaths,
    csv: csv::CsvDiff,
    jsonl: jsonl::JsonlDiff,
    page: html::Page,
    html: File,
}

impl std::fmt::Debug for DiffReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffReport")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl DiffReport {
    /// Creates `DIR/STAMP-COMMAND-diff.csv`, `…-diff.jsonl` and `…-report.html` (and `DIR`),
    /// mode 0600 when they will hold values. Until [`DiffReport::finish`], the page says
    /// that the run has not finished.
    pub fn create(dir: &Path, command: &str, values: bool) -> io::Result<DiffReport> {
        fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create the report folder {}: {e}", dir.display()),
            )
        })?;
        let [html, csv, jsonl] = crate::ledger::stamped_paths(
            dir,
            [
                (&format!("{command}-report"), "html"),
                (&format!("{command}-diff"), "csv"),
                (&format!("{command}-diff"), "jsonl"),
            ],
        );
        let paths = ReportPaths { html, csv, jsonl };
        let mut html = create_file(&paths.html, values)?;
        html.write_all(html::UNFINISHED.as_bytes())?;
        Ok(DiffReport {
            csv: csv::CsvDiff::new(create_file(&paths.csv, values)?, values)?,
            jsonl: jsonl::JsonlDiff::new(create_file(&paths.jsonl, values)?, values),
            page: html::Page::new(values),
            html,
            paths,
        })
    }

    /// The report's files.
    pub fn paths(&self) -> &ReportPaths {
        &self.paths
    }

    /// Writes one settled record: its changed fields, or why nothing was written for it
    /// ([`needs_a_look`]), in the CSV and JSONL; and what the page needs.
    pub fn write(&mut self, entry: &Entry, changes: &[FieldChange]) -> io::Result<()> {
        if !changes.is_empty() || needs_a_look(entry.status) {
            self.csv.write(entry, changes)?;
            self.jsonl.write(entry, changes)?;
        }
        self.page.note(entry, changes);
        Ok(())
    }

    /// Writes one deletion line of a `[mirror]` run: a CSV row (no record, line or field),
    /// a JSONL object as in the ledger, and the page's "Deletions" list.
    pub fn write_deletion(&mut self, deletion: &Deletion<'_>) -> io::Result<()> {
        self.csv.write_deletion(deletion)?;
        self.jsonl.write_deletion(deletion)?;
        self.page.note_deletion(deletion);
        Ok(())
    }

    /// The deletions' count and the guard's verdict, for the page.
    pub fn deletions_line(&mut self, line: String) {
        self.page.note_deletions_line(line);
    }

    /// Flushes the CSV and JSONL files.
    pub fn flush(&mut self) -> io::Result<()> {
        self.csv.flush()?;
        self.jsonl.flush()
    }

    /// Writes the page, now that the run is over, and returns the report's files.
    pub fn finish(mut self, run: &RunInfo, end: &RunEnd<'_>) -> io::Result<ReportPaths> {
        self.flush()?;
        self.html.set_len(0)?;
        io::Seek::rewind(&mut self.html)?;
        let mut out = io::BufWriter::with_capacity(1 << 16, &self.html);
        let names = html::Names {
            csv: file_name(&self.paths.csv),
            jsonl: file_name(&self.paths.jsonl),
        };
        self.page.render(&mut out, run, end, &names)?;
        out.flush()?;
        drop(out);
        self.html.sync_all()?;
        Ok(self.paths)
    }
}

/// Whether someone signing a run off should see the record listed with its reason: nothing
/// was (or would be) written for it because it is invalid, failed, matched no target record
/// (`not_found`), or was skipped for that reason.
pub fn needs_a_look(status: Status) -> bool {
    status.is_failure() || matches!(status, Status::NotFound | Status::Skipped)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Creates a new report file, mode 0600 when it holds values (personal data).
fn create_file(path: &Path, values: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if values {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = values;
    options.open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot create the report {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::EntryError;
    use serde_json::{Value, json};

    fn entry(record: u64, status: Status, key: &str, changed: &[&str]) -> Entry {
        Entry {
            record,
            line: record + 1,
            key: Some(key.to_owned()),
            target_id: Some(format!("{record:032x}")),
            status,
            changed: changed.iter().map(|f| (*f).to_owned()).collect(),
            attempts: Some(1),
            error: None,
            basis: None,
        }
    }

    fn change(field: &str, from: Option<&str>, to: &str) -> FieldChange {
        FieldChange {
            field: field.to_owned(),
            from: from.map(str::to_owned),
            to: to.to_owned(),
        }
    }

    fn run_info(mode: Mode) -> RunInfo {
        RunInfo {
            mode,
            command: "profilesync plan --config c.toml in.csv".to_owned(),
            config: "c.toml".to_owned(),
            input: "in.csv".to_owned(),
            target: "customer-profiles, domain D".to_owned(),
            started: chrono::Local::now(),
        }
    }

    /// Writes `records` (entry, changes) into a report in `dir` and finishes it; returns the
    /// paths and the tally and field counts the writer stage would have.
    fn report(
        dir: &Path,
        mode: Mode,
        values: bool,
        records: &[(Entry, Vec<FieldChange>)],
    ) -> (ReportPaths, Tally) {
        let mut report = DiffReport::create(dir, "plan", values).unwrap();
        let (mut tally, mut fields) = (Tally::default(), FieldCounts::default());
        for (entry, changes) in records {
            report.write(entry, changes).unwrap();
            tally.add(entry.status);
            fields.add(&entry.changed);
        }
        let end = RunEnd {
            duration: Duration::from_millis(1500),
            exit_code: 1,
            stopped: None,
            tally: &tally,
            carried: 0,
            duplicates: 0,
            fields: &fields,
            ledger: Path::new("ledgers/l.jsonl"),
        };
        (report.finish(&run_info(mode), &end).unwrap(), tally)
    }

    fn read(paths: &ReportPaths) -> [String; 3] {
        [&paths.csv, &paths.jsonl, &paths.html].map(|p| fs::read_to_string(p).unwrap())
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn progress_follows_settled_records_not_the_reader() {
        // The reader has read the whole 30,000-byte input; 3 records have settled, out of
        // order, the furthest ending at byte 900.
        let read = Arc::new(AtomicU64::new(30_000));
        let mut progress = Progress::new(false, false, "apply", (read, Some(30_000)));
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

    #[tokio::test(start_paused = true)]
    async fn a_logged_progress_says_every_period_what_settled_and_stops_with_the_run() {
        let progress = Progress::new(true, true, "apply", (Arc::new(AtomicU64::new(0)), None));
        assert!(progress.bar.is_none(), "no bar when the progress is logged");
        let mut tally = Tally::default();
        let mut lines = Vec::new();
        let work = async {
            // 20 records in the first 9 s, a stall (throttled) to 25 s, then 5 more; the
            // run ends at 29 s. No record settles on a tick, so the order is certain.
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(450)).await;
                tally.add(if i == 3 {
                    Status::Failed
                } else {
                    Status::Updated
                });
                progress.advance(1, &tally, Some("UpdateProfile 2/s (4 throttled)"), 0);
            }
            tokio::time::sleep(Duration::from_secs(16)).await;
            for _ in 0..5 {
                tally.add(Status::Updated);
                progress.advance(1, &tally, None, 0);
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
            "done"
        };
        let out = log_every(&progress, Duration::from_secs(10), work, |line| {
            lines.push(line.clone());
        })
        .await;
        assert_eq!(out, "done");
        // Lines at 10 s and 20 s (the run ended at 29 s, before a third).
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0].settled, 20);
        assert_eq!(lines[0].statuses, "19 updated, 1 failed");
        assert_eq!(
            lines[0].limits.as_deref(),
            Some("UpdateProfile 2/s (4 throttled)")
        );
        assert_eq!(lines[0].recent_per_second, 2.0);
        assert_eq!(lines[1].settled, 20, "the stall shows");
        assert_eq!(lines[1].recent_per_second, 0.0);
        assert_eq!(lines[1].per_second, 1.0);
        assert_eq!(
            lines[0].to_string(),
            "20 records settled, 2/s (last 10 s: 2/s), 19 updated, 1 failed; \
             UpdateProfile 2/s (4 throttled)"
        );

        // A progress that is drawn or off logs nothing.
        let quiet = Progress::new(false, true, "apply", (Arc::new(AtomicU64::new(0)), None));
        let mut none = 0;
        log_every(
            &quiet,
            Duration::from_secs(10),
            tokio::time::sleep(Duration::from_secs(30)),
            |_| none += 1,
        )
        .await;
        assert_eq!(none, 0);
    }

    #[test]
    fn the_three_files_share_one_stamp_and_show_values_only_when_asked() {
        let records = [(
            entry(2, Status::WouldUpdate, "C2", &["FirstName"]),
            vec![change("FirstName", Some("Ana"), "Annabelle")],
        )];
        for values in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (paths, _) = report(dir.path(), Mode::Plan, values, &records);
            let stem = |p: &Path| file_name(p).split("-plan-").next().unwrap().to_owned();
            assert_eq!(stem(&paths.csv), stem(&paths.html));
            assert_eq!(stem(&paths.jsonl), stem(&paths.html));
            assert!(file_name(&paths.html).ends_with("-plan-report.html"));
            assert!(file_name(&paths.csv).ends_with("-plan-diff.csv"));
            assert!(file_name(&paths.jsonl).ends_with("-plan-diff.jsonl"));
            // A second report in the same second takes `-2` for all three files.
            let again = DiffReport::create(dir.path(), "plan", values).unwrap();
            let again = again.paths();
            if stem(&again.html) == stem(&paths.html) {
                assert!(file_name(&again.html).ends_with("-plan-report-2.html"));
                assert!(file_name(&again.csv).ends_with("-plan-diff-2.csv"));
                assert!(file_name(&again.jsonl).ends_with("-plan-diff-2.jsonl"));
            }
            let [csv, jsonl, html] = read(&paths);
            if values {
                assert_eq!(
                    csv,
                    "record,line,key,target_id,status,field,from,to,code,reason\n\
                     2,3,C2,00000000000000000000000000000002,would_update,FirstName,Ana,Annabelle,,\n"
                );
                assert!(
                    jsonl.contains(r#""from":"Ana","to":"Annabelle""#),
                    "{jsonl}"
                );
                assert!(html.contains("<span class=\"to\">Annabelle</span>"));
            } else {
                assert_eq!(
                    csv,
                    "record,line,key,target_id,status,field,code,reason\n\
                     2,3,C2,00000000000000000000000000000002,would_update,FirstName,,\n"
                );
                for text in [&csv, &jsonl, &html] {
                    assert!(!text.contains("Ana"), "a value leaked: {text}");
                }
                assert!(html.contains("Values are not shown"));
                assert!(
                    jsonl.contains(r#""changes":[{"field":"FirstName"}]"#),
                    "{jsonl}"
                );
            }
            assert!(html.contains("<span class=\"f\">FirstName</span>"));
            #[cfg(unix)]
            if values {
                for path in [&paths.csv, &paths.jsonl, &paths.html] {
                    assert_eq!(mode_of(path), 0o600, "{}", path.display());
                }
            }
        }
    }

    #[test]
    fn the_page_escapes_every_place_a_value_is_shown() {
        // Each place gets its own marker: a tag, both quotes, an ampersand and an attribute
        // breaker, so that a place left unescaped is named by the failure.
        let evil =
            |place: &str| format!("<x-{place} a=\"1\" b='2'>&amp;\" onmouseover=\"x({place})");
        let mut bad = entry(2, Status::Invalid, &evil("pkey"), &[]);
        bad.target_id = Some(evil("ptid"));
        bad.error = Some(EntryError {
            code: evil("code"),
            message: evil("message"),
            problems: Vec::new(),
        });
        let mut good = entry(1, Status::WouldUpdate, &evil("key"), &[]);
        good.target_id = Some(evil("tid"));
        good.changed = vec![evil("field")];
        let records = [
            (
                good,
                vec![change(&evil("field"), Some(&evil("from")), &evil("to"))],
            ),
            (bad, Vec::new()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut report = DiffReport::create(dir.path(), "plan", true).unwrap();
        let (mut tally, mut fields) = (Tally::default(), FieldCounts::default());
        for (entry, changes) in &records {
            report.write(entry, changes).unwrap();
            tally.add(entry.status);
            fields.add(&entry.changed);
        }
        let run = RunInfo {
            command: evil("command"),
            config: evil("config"),
            input: evil("input"),
            target: evil("target"),
            ..run_info(Mode::Plan)
        };
        let ledger = PathBuf::from(evil("ledger"));
        let stopped = evil("stopped");
        let end = RunEnd {
            duration: Duration::from_secs(1),
            exit_code: 3,
            stopped: Some(&stopped),
            tally: &tally,
            carried: 0,
            duplicates: 0,
            fields: &fields,
            ledger: &ledger,
        };
        let paths = report.finish(&run, &end).unwrap();
        let html = fs::read_to_string(&paths.html).unwrap();
        for place in [
            "pkey", "ptid", "code", "message", "key", "tid", "field", "from", "to", "command",
            "config", "input", "target", "ledger", "stopped",
        ] {
            let raw = evil(place);
            let escaped = escape(&raw);
            assert!(!html.contains(&raw), "{place} is not escaped");
            assert!(
                !html.contains(&format!("<x-{place}")),
                "{place} became a tag"
            );
            assert!(html.contains(escaped.as_ref()), "{place} is not shown");
        }
        // No attribute came from a value, and every tag is one the page itself writes.
        assert!(!html.contains("onmouseover=\""));
        assert!(!html.contains("b='"));
        let tags = tag_names(&html);
        for tag in &tags {
            assert!(PAGE_TAGS.contains(&tag.as_str()), "unexpected tag <{tag}>");
        }
        // The field shows in the SVG chart, the field filter and the table, escaped in each.
        let field = escape(&evil("field")).into_owned();
        assert!(html.contains(&format!("<option value=\"{field}\">{field}</option>")));
        assert!(html.contains(&format!("data-field=\"{field}\"")));
        assert!(html.contains(&format!("<span class=\"f\">{field}</span>")));
        assert_eq!(
            escape("<script>alert('&')</script>\""),
            "&lt;script&gt;alert(&#39;&amp;&#39;)&lt;/script&gt;&quot;"
        );
    }

    /// The tags `html.rs` writes.
    const PAGE_TAGS: &[&str] = &[
        "!doctype", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p",
        "code", "section", "dl", "dt", "dd", "span", "table", "thead", "tbody", "tr", "th", "td",
        "ul", "li", "div", "label", "input", "select", "option", "svg", "g", "text", "rect",
        "footer", "script",
    ];

    /// The name of every start tag in `html` (lower case).
    fn tag_names(html: &str) -> Vec<String> {
        let mut names: Vec<String> = html
            .split('<')
            .skip(1)
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '!'))
            .map(|rest| {
                rest.chars()
                    .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                    .collect::<String>()
                    .to_ascii_lowercase()
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    #[test]
    fn the_page_totals_are_the_tally_and_the_fields_count_every_record() {
        let mut records = Vec::new();
        for i in 1..=7 {
            let fields: &[&str] = if i % 2 == 0 {
                &["FirstName", "Address.City"]
            } else {
                &["FirstName"]
            };
            let changes = fields.iter().map(|f| change(f, None, "x")).collect();
            records.push((entry(i, Status::WouldUpdate, "K", fields), changes));
        }
        records.push((entry(8, Status::Unchanged, "K", &[]), Vec::new()));
        let mut invalid = entry(9, Status::Invalid, "K9", &[]);
        invalid.error = Some(EntryError {
            code: "invalid_record".into(),
            message: "in.csv:10: EmailAddress (column email): not an e-mail address".into(),
            problems: Vec::new(),
        });
        records.push((invalid, Vec::new()));
        let dir = tempfile::tempdir().unwrap();
        let (paths, tally) = report(dir.path(), Mode::Plan, false, &records);
        let [_, jsonl, html] = read(&paths);
        for status in [Status::WouldUpdate, Status::Unchanged, Status::Invalid] {
            let cell = format!(
                "id=\"total-{}\" data-count=\"{}\"",
                status.name(),
                tally.get(status)
            );
            assert!(html.contains(&cell), "{cell}");
        }
        assert!(!html.contains("id=\"total-failed\""));
        assert!(html.contains("id=\"total-all\" data-count=\"9\""));
        assert!(html.contains("data-field=\"FirstName\" data-count=\"7\""));
        assert!(html.contains("data-field=\"Address.City\" data-count=\"3\""));
        assert!(html.contains("not an e-mail address"));
        assert!(html.contains("Records not written: failed, invalid, not found, skipped (1)"));
        assert!(html.contains("<span id=\"changed-total\">7</span>"));
        assert!(html.contains("what would change"));
        assert_eq!(
            jsonl.lines().count(),
            8,
            "the changed records and the invalid one"
        );
        assert_eq!(html.matches("<tr data-status=\"would_update\">").count(), 7);
    }

    /// Issue 19: records nothing was written for are listed with their reasons, on the page
    /// and in the CSV and JSONL, so a sign-off sees the new hires missing in the target.
    #[test]
    fn records_not_written_are_listed_with_their_reasons_in_all_three_files() {
        let reasoned = |record: u64, status: Status, code: &str, message: &str| {
            let mut e = entry(record, status, &format!("K{record}"), &[]);
            e.error = Some(EntryError {
                code: code.into(),
                message: message.into(),
                problems: Vec::new(),
            });
            (e, Vec::new())
        };
        let records = [
            (
                entry(1, Status::Updated, "K1", &["FirstName"]),
                vec![change("FirstName", None, "x")],
            ),
            (entry(2, Status::Unchanged, "K2", &[]), Vec::new()),
            reasoned(
                3,
                Status::Skipped,
                "not_found",
                "no user has this UserId, and [match] when_missing = \"skip\"",
            ),
            reasoned(4, Status::Failed, "BadRequestException", "refused"),
            reasoned(
                5,
                Status::Invalid,
                "invalid_record",
                "in.csv:6: Mobile: not E.164",
            ),
        ];
        for values in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (paths, _) = report(dir.path(), Mode::Apply, values, &records);
            let [csv, jsonl, html] = read(&paths);
            let rows: Vec<&str> = csv.lines().skip(1).collect();
            let tail = if values { ",," } else { "" };
            assert_eq!(rows.len(), 4, "{csv}");
            assert!(rows[0].starts_with("1,2,K1,"), "{csv}");
            assert!(rows[1].starts_with("3,4,K3,"), "{csv}");
            assert!(
                rows[1].ends_with(&format!(
                    ",skipped,{tail},not_found,\"no user has this UserId, and [match] \
                     when_missing = \"\"skip\"\"\""
                )),
                "{csv}"
            );
            assert!(rows[2].ends_with(",failed,,BadRequestException,refused") || values);
            assert!(rows[3].contains(",invalid,") && rows[3].contains("not E.164"));
            let lines: Vec<Value> = jsonl
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 4);
            assert_eq!(lines[1]["status"], "skipped");
            assert_eq!(lines[1]["changes"], json!([]));
            assert_eq!(lines[1]["error"]["code"], "not_found");
            assert!(lines[0].get("error").is_none());
            assert!(html.contains("Records not written: failed, invalid, not found, skipped (3)"));
            assert!(html.contains("<span class=\"st st-skipped\">skipped</span>"));
            assert!(html.contains("when_missing = &quot;skip&quot;"));
        }
    }

    #[test]
    fn a_large_run_lists_the_first_records_and_counts_them_all() {
        let n = TABLE_LIMIT as u64 + 3;
        let records: Vec<_> = (1..=n)
            .map(|i| {
                (
                    entry(i, Status::Updated, &format!("C{i}"), &["FirstName"]),
                    vec![change("FirstName", None, "x")],
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let (paths, _) = report(dir.path(), Mode::Apply, false, &records);
        let [csv, jsonl, html] = read(&paths);
        assert_eq!(csv.lines().count() as u64, n + 1);
        assert_eq!(jsonl.lines().count() as u64, n);
        assert_eq!(
            html.matches("<tr data-status=\"updated\">").count(),
            TABLE_LIMIT
        );
        assert!(
            html.contains("id=\"truncated\""),
            "the page says it lists only some"
        );
        assert!(html.contains(&format!(
            "<code>{}</code> holds them all",
            file_name(&paths.jsonl)
        )));
        assert!(html.contains(&format!("data-field=\"FirstName\" data-count=\"{n}\"")));
        assert!(html.contains("<span id=\"changed-total\">5,003</span>"));
        // An apply's page says what was applied.
        assert!(html.contains("what was applied"));
        assert!(!html.contains("what would change"));
        assert!(!html.contains("would change"));
    }

    #[test]
    fn an_unfinished_report_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let report = DiffReport::create(dir.path(), "plan", false).unwrap();
        let html = fs::read_to_string(&report.paths().html).unwrap();
        assert!(html.contains("This report is not finished"));
    }

    #[test]
    fn field_counts_rank_by_records_then_name() {
        let mut fields = FieldCounts::default();
        fields.add(&["B".into(), "A".into(), "B".into()]);
        fields.add(&["C".into()]);
        fields.add(&["C".into()]);
        assert_eq!(fields.ranked(), [("C", 2), ("A", 1), ("B", 1)]);
        assert_eq!(fields.get("B"), 1);
    }

    #[test]
    fn summary_lists_nonzero_statuses_top_fields_and_the_ledger() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.add(Status::Valid);
        }
        tally.add(Status::Invalid);
        assert_eq!(tally.total(), 4);
        assert_eq!(tally.failures(), 1);
        let none = FieldCounts::default();
        let mut out = Vec::new();
        summary(
            &mut out,
            "check",
            &tally,
            0,
            Duration::from_secs(2),
            &none,
            Path::new("l.jsonl"),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("check: 4 records in 2.00 s (2 records/s)\n"),
            "{text}"
        );
        let mut fields = FieldCounts::default();
        for i in 0..7 {
            let names: Vec<String> = (0..=i).map(|f| format!("Field{f}")).collect();
            fields.add(&names);
        }
        let mut resumed = Vec::new();
        summary(
            &mut resumed,
            "apply",
            &tally,
            3,
            Duration::from_secs(2),
            &fields,
            Path::new("l.jsonl"),
        )
        .unwrap();
        let resumed = String::from_utf8(resumed).unwrap();
        assert!(
            resumed
                .starts_with("apply: 1 records in 2.00 s (0 records/s), 3 more settled earlier\n"),
            "{resumed}"
        );
        assert!(
            resumed.contains(
                "  invalid               1\ntop fields, by records that change them:\n  \
                 Field0                7\n  Field1                6\n"
            ),
            "{resumed}"
        );
        assert!(resumed.contains("  Field4                3\n  and 2 more fields\nledger: "));
        assert!(text.contains("  valid                 3\n"));
        assert!(text.contains("  invalid               1\n"));
        assert!(!text.contains("failed"));
        assert!(!text.contains("top fields"));
        assert!(text.ends_with("ledger: l.jsonl\n"));
    }
}
