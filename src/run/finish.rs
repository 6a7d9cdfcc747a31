//! The end of a `plan` or `apply` run: the diff report's page, the summary on standard
//! output, and the exit code.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use super::{
    EXIT_ABORTED, EXIT_DELETIONS_WITHHELD, EXIT_OK, EXIT_RECORDS_FAILED, Failure, Finished,
    SyncRequest,
};
use crate::pipeline::SyncResult;
use crate::report::{self, ReportPaths, RunEnd, RunInfo};
use crate::source::{Notes, Paths};

/// Writes the report's page (which tells the exit code), prints the summary, and says how
/// to continue a run that stopped.
pub(super) fn finish(
    request: &SyncRequest,
    info: &RunInfo,
    result: Result<(SyncResult, PathBuf), String>,
    started: Instant,
    resume_hint: Option<&str>,
) -> Result<Finished, Failure> {
    let (mut result, ledger) = result.map_err(Failure::aborted)?;
    let mut code = exit_code(&result);
    let report = match write_report(&mut result, info, &ledger, started, code) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("profilesync: {message}");
            code = EXIT_ABORTED;
            None
        }
    };
    if !request.quiet {
        let mut out = io::stdout().lock();
        let _ = report::summary(
            &mut out,
            &request.label,
            &result.tally,
            result.carried,
            started.elapsed(),
            &result.fields,
            &ledger,
        );
        let _ = report::costs(
            &mut out,
            result.unchanged_by_state,
            result.duplicates,
            &result.calls,
            &result.reasons,
        );
        if let Some(report) = &report {
            let _ = report.write_to(&mut out);
        }
    }
    // The mirror's line: on standard error when deletions are withheld (exit 4), else with
    // the summary.
    match &result.mirror {
        Some(mirror) if mirror.withheld() => eprintln!("profilesync: {}", mirror.line()),
        Some(mirror) if !request.quiet => println!("{}", mirror.line()),
        _ => {}
    }
    print_warnings(&result.warnings);
    print_warnings(&result.notices);
    if let Some(reason) = &result.aborted {
        let then = resume_hint.map_or(String::new(), |hint| format!("; continue with: {hint}"));
        eprintln!(
            "profilesync: {} aborted: {reason}. Records not in the ledger were not sent{then}",
            request.label
        );
    }
    Ok(Finished {
        code,
        result,
        ledger,
        report,
    })
}

/// The exit code of a finished `plan` or `apply` run: 3 stopped, 4 the `[mirror]` guard
/// withheld the deletions (whatever else happened: they wait for a person), 1 some records
/// invalid or failed or a warning about the run as a whole (nothing matched), else 0.
pub fn exit_code(result: &SyncResult) -> i32 {
    if result.aborted.is_some() {
        EXIT_ABORTED
    } else if result.mirror.as_ref().is_some_and(|m| m.withheld()) {
        EXIT_DELETIONS_WITHHELD
    } else if result.tally.failures() > 0 || !result.warnings.is_empty() {
        EXIT_RECORDS_FAILED
    } else {
        EXIT_OK
    }
}

/// Writes the page of the run's diff report, if it has one, and returns the report's files.
/// An error says which file could not be written.
fn write_report(
    result: &mut SyncResult,
    info: &RunInfo,
    ledger: &std::path::Path,
    started: Instant,
    exit_code: i32,
) -> Result<Option<ReportPaths>, String> {
    let Some(report) = result.report.take() else {
        return Ok(None);
    };
    let html = report.paths().html.clone();
    let end = RunEnd {
        duration: started.elapsed(),
        exit_code,
        stopped: result.aborted.as_deref(),
        tally: &result.tally,
        carried: result.carried,
        duplicates: result.duplicates,
        fields: &result.fields,
        ledger,
    };
    report
        .finish(info, &end)
        .map(Some)
        .map_err(|e| format!("cannot write the report {}: {e}", html.display()))
}

/// What a run that read its whole input must warn about: each configured JSONL path that
/// no record had (a typo, or a flat `"a.b"` key in some other file), which would otherwise
/// keep that field unsynced every night without a word. Such a run exits 1.
pub(super) fn input_warnings(paths: &Paths, input: &str) -> Vec<String> {
    paths
        .unseen()
        .into_iter()
        .map(|path| {
            format!(
                "no record of `{input}` has the path `{path}` the config reads, so that field \
                 was never synced: check its spelling (a key that holds dots is read as it is \
                 written before it is read as a path)"
            )
        })
        .collect()
}

/// Prints the run's warnings on standard error, after its summary.
pub(super) fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("profilesync: warning: {warning}");
    }
}

/// Prints what the input's reader noticed about the input as a whole (rows swallowed by an
/// unclosed quote), under the summary.
pub(super) fn print_notes(notes: &Notes, quiet: bool) {
    let notes = notes.take();
    if quiet || notes.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    for note in notes {
        let _ = writeln!(out, "note: {note}");
    }
}
