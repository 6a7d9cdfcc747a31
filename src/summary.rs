//! `--summary-json PATH`: one JSON object about a `check`, `plan` or `apply` run, written
//! when it ends, for cron jobs and log collectors.
//!
//! The object holds counts, ids and paths, never a field value or a credential:
//!
//! ```json
//! {"command":"apply","exit_code":1,"started":"2026-12-01T02:00:00.120Z",
//!  "finished":"2026-12-01T02:03:10.500Z","duration_seconds":190.38,
//!  "records":{"updated":5810,"unchanged":150,"failed":3,"invalid":37},"records_total":6000,
//!  "settled_earlier":0,
//!  "operations":[{"operation":"UpdateProfile","requests":5830,"throttled":17}],
//!  "reasons":{"BadRequestException":3,"invalid_record":37},
//!  "stop_reason":null,"error":null,"ledger":"/srv/sync/ledgers/20261201-020000-apply.jsonl",
//!  "report":null}
//! ```
//!
//! It is written whatever the exit code, once the arguments parsed: on exit 2 (nothing
//! processed) and on an exit 3 before the ledger exists (the preflight) `ledger` is null,
//! the counts are empty and `error` says why, as standard error did; on an exit 3 during the
//! run `stop_reason` says why and the counts cover what settled. The file is replaced
//! whole (written beside it, then renamed), so a collector never reads half of it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::ledger::{Status, Tally};
use crate::limiter::OperationCalls;
use crate::pipeline::SyncResult;

/// What is known about a run so far; see the module doc.
#[derive(Debug)]
pub struct RunSummary {
    command: &'static str,
    started: DateTime<Utc>,
    clock: Instant,
    tally: Tally,
    carried: u64,
    calls: Vec<OperationCalls>,
    reasons: Option<BTreeMap<String, u64>>,
    stop_reason: Option<String>,
    error: Option<String>,
    ledger: Option<PathBuf>,
    report: Option<PathBuf>,
    duplicates: u64,
    warnings: Vec<String>,
    deletions: Option<String>,
}

/// The JSON object written.
#[derive(Debug, Serialize)]
struct Json<'a> {
    command: &'a str,
    exit_code: i32,
    started: String,
    finished: String,
    duration_seconds: f64,
    records: BTreeMap<&'static str, u64>,
    records_total: u64,
    settled_earlier: u64,
    operations: Vec<Operation<'a>>,
    reasons: Option<&'a BTreeMap<String, u64>>,
    stop_reason: Option<&'a str>,
    error: Option<&'a str>,
    ledger: Option<String>,
    report: Option<String>,
    duplicates: u64,
    warnings: &'a [String],
    /// With `[mirror]`: the deletions' line (withheld, how many, or why none).
    #[serde(skip_serializing_if = "Option::is_none")]
    deletions: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Operation<'a> {
    operation: &'a str,
    requests: u64,
    throttled: u64,
}

impl RunSummary {
    /// A run of `command` starting now.
    pub fn start(command: &'static str) -> RunSummary {
        RunSummary {
            command,
            started: Utc::now(),
            clock: Instant::now(),
            tally: Tally::default(),
            carried: 0,
            calls: Vec::new(),
            reasons: None,
            stop_reason: None,
            error: None,
            ledger: None,
            report: None,
            duplicates: 0,
            warnings: Vec::new(),
            deletions: None,
        }
    }

    /// The command, as the ledger's name has it (`apply --dry-run` is `plan`).
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// The run could not go on: what standard error said (the first error is kept).
    pub fn error(&mut self, message: &str) {
        if self.error.is_none() {
            let message = message.trim();
            let message = message.strip_prefix("profilesync: ").unwrap_or(message);
            self.error = Some(message.to_owned());
        }
    }

    /// Something a `check` run finished with that a person should look at (a JSONL path no
    /// record has); such a run exits 1. (A `plan` or `apply` run's come with its result.)
    pub fn warning(&mut self, message: &str) {
        self.warnings.push(message.to_owned());
    }

    /// The ledger the run writes.
    pub fn ledger(&mut self, path: &Path) {
        self.ledger = Some(absolute(path));
    }

    /// The counts of a `check` run.
    pub fn checked(&mut self, tally: &Tally) {
        self.tally = tally.clone();
    }

    /// How a `plan` or `apply` run ended, or why it stopped.
    pub fn synced(&mut self, result: &Result<(SyncResult, PathBuf), String>) {
        match result {
            Ok((result, ledger)) => {
                self.tally = result.tally.clone();
                self.carried = result.carried;
                self.calls = result.calls.clone();
                self.reasons = Some(result.reasons.clone());
                self.stop_reason = result.aborted.clone();
                self.duplicates = result.duplicates;
                self.warnings = result
                    .warnings
                    .iter()
                    .chain(&result.notices)
                    .cloned()
                    .collect();
                self.deletions = result.mirror.as_ref().map(|m| m.line());
                self.report = result.report.as_ref().map(|r| absolute(&r.paths().html));
                self.ledger(ledger);
            }
            Err(message) => self.error(message),
        }
    }

    /// The JSON text of the summary of a run that exits `exit_code` now.
    pub fn to_json(&self, exit_code: i32) -> String {
        let finished = Utc::now();
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let json = Json {
            command: self.command,
            exit_code,
            started: time(self.started),
            finished: time(finished),
            duration_seconds: (self.clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            records: Status::ALL
                .iter()
                .filter(|s| self.tally.get(**s) > 0)
                .map(|s| (s.name(), self.tally.get(*s)))
                .collect(),
            records_total: self.tally.total(),
            settled_earlier: self.carried,
            operations: self
                .calls
                .iter()
                .map(|c| Operation {
                    operation: c.operation,
                    requests: c.requests,
                    throttled: c.throttled,
                })
                .collect(),
            reasons: self.reasons.as_ref(),
            stop_reason: self.stop_reason.as_deref(),
            error: self.error.as_deref(),
            ledger: self.ledger.as_ref().map(|p| p.display().to_string()),
            report: self.report.as_ref().map(|p| p.display().to_string()),
            duplicates: self.duplicates,
            warnings: &self.warnings,
            deletions: self.deletions.as_deref(),
        };
        let mut text = serde_json::to_string(&json).unwrap_or_else(|_| "{}".to_owned());
        text.push('\n');
        text
    }

    /// Logs the run's end (at info): exit code, duration, records, and why it stopped.
    pub fn log(&self, exit_code: i32) {
        tracing::info!(
            command = self.command,
            exit_code,
            duration_seconds = self.clock.elapsed().as_secs_f64(),
            records = self.tally.total(),
            settled_earlier = self.carried,
            stop_reason = self.stop_reason.as_deref(),
            error = self.error.as_deref(),
            "run finished"
        );
    }

    /// Writes the summary of a run that exits `exit_code` to `path`, replacing it whole.
    pub fn write(&self, path: &Path, exit_code: i32) -> io::Result<()> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let mut temporary = name.to_owned();
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(temporary);
        std::fs::write(&temporary, self.to_json(exit_code))?;
        std::fs::rename(&temporary, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
    }
}

/// Checks, before the run, that the summary can be written where `path` says: its folder
/// exists and is not the file itself. A run whose summary would be lost exits 2 instead.
pub fn check_path(path: &Path) -> Result<(), String> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    if path.is_dir() || path.file_name().is_none() {
        return Err(format!(
            "--summary-json {}: is a folder; give a file path",
            path.display()
        ));
    }
    if !folder.is_dir() {
        return Err(format!(
            "--summary-json {}: the folder {} does not exist",
            path.display(),
            folder.display()
        ));
    }
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_what_settled_and_why_it_stopped() {
        let mut summary = RunSummary::start("apply");
        let mut tally = Tally::default();
        tally.add(Status::Updated);
        tally.add(Status::Updated);
        tally.add(Status::Failed);
        let result = SyncResult {
            tally,
            carried: 1,
            aborted: Some("--max-errors reached: 1 records failed".to_owned()),
            report: None,
            fields: Default::default(),
            unchanged_by_state: 0,
            duplicates: 0,
            warnings: Vec::new(),
            notices: Vec::new(),
            mirror: None,
            reasons: [("BadRequestException".to_owned(), 1)].into(),
            calls: vec![OperationCalls {
                operation: "UpdateProfile",
                requests: 4,
                throttled: 2,
            }],
        };
        summary.synced(&Ok((result, PathBuf::from("l.jsonl"))));
        let json: serde_json::Value = serde_json::from_str(&summary.to_json(3)).unwrap();
        assert_eq!(json["command"], "apply");
        assert_eq!(json["exit_code"], 3);
        assert_eq!(
            json["records"],
            serde_json::json!({"updated": 2, "failed": 1})
        );
        assert_eq!(json["records_total"], 3);
        assert_eq!(json["settled_earlier"], 1);
        assert_eq!(json["operations"][0]["throttled"], 2);
        assert_eq!(json["reasons"]["BadRequestException"], 1);
        assert_eq!(
            json["stop_reason"],
            "--max-errors reached: 1 records failed"
        );
        assert!(json["ledger"].as_str().unwrap().ends_with("/l.jsonl"));
        assert!(json["error"].is_null());
        let started = json["started"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(started).is_ok(), "{started}");
    }

    #[test]
    fn the_first_error_is_kept_without_the_program_name() {
        let mut summary = RunSummary::start("plan");
        summary.error("profilesync: c.toml:3: unknown field\n");
        summary.error("a later one");
        let json: serde_json::Value = serde_json::from_str(&summary.to_json(2)).unwrap();
        assert_eq!(json["error"], "c.toml:3: unknown field");
        assert!(json["ledger"].is_null() && json["reasons"].is_null());
        assert_eq!(json["records_total"], 0);
    }

    #[test]
    fn a_summary_path_in_a_missing_folder_is_refused_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_path(&dir.path().join("s.json")).is_ok());
        assert!(check_path(Path::new("s.json")).is_ok());
        let missing = check_path(&dir.path().join("no/s.json")).unwrap_err();
        assert!(missing.contains("does not exist"), "{missing}");
        assert!(check_path(dir.path()).unwrap_err().contains("folder"));
    }
}
