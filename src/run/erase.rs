//! `profilesync erase --config FILE KEYS [--dry-run]`: an explicit erasure request (GDPR
//! Art. 17 and 19). Each line of KEYS is a `[source] key` value or a target id; each is
//! resolved to its target record through the sync state (the `[mirror]` owners' table, then
//! where a search found it), else taken as the target's own id when it has an id's form, else
//! (for a config matching by search) searched for by the search key, and deleted through the same
//! limiter, retry policy and `driver::delete` as a mirror run (404: already gone, `deleted`).
//! Its state entry is removed after the target confirmed. The erasure ledger holds one line
//! per key: `{"key","target_id","outcome","time"}`, the evidence. Not subject to the absence
//! rule, but to the same guard (`[mirror] max_deletes` / `max_delete_percent`, or their
//! defaults, over the state's records; exit 4, `--approve-deletes N`). A state in S3 is
//! opened as `apply` opens it (under its lease) and uploaded at the end.

use std::io;
use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use super::{
    EXIT_ABORTED, EXIT_DELETIONS_WITHHELD, EXIT_OK, EXIT_RECORDS_FAILED, EXIT_USAGE,
    connect_and_identify,
};
use crate::config::{
    self, Config, DEFAULT_MAX_DELETE_PERCENT, DEFAULT_MAX_DELETES, Deletes, MatchBy, Mirror,
};
use crate::ledger::{self, Ledger, Status};
use crate::pipeline::Sender;
use crate::pipeline::mirror::{Verdict, guard};
use crate::retry::Halt;
use crate::state::{self, SyncState};
use crate::targets::{Mode, Outcome, Pace, Target};
use crate::validate;

/// What `erase` is asked to do.
#[derive(Debug, Clone)]
pub struct EraseRequest {
    /// The config file.
    pub config: PathBuf,
    /// The file of keys (or ids), one a line.
    pub keys: PathBuf,
    /// Show what would be erased; delete nothing.
    pub dry_run: bool,
    /// The erasure ledger (default: a new file under `./ledgers/`).
    pub ledger: Option<PathBuf>,
    /// The sync state's directory (default `[state] path`, else `./state`).
    pub state: Option<PathBuf>,
    /// Delete beyond the guard when the keys are exactly N.
    pub approve_deletes: Option<u64>,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// One line of the erasure ledger.
#[derive(Debug, Serialize)]
struct Erased<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_id: Option<&'a str>,
    outcome: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The keys of an erasure request: one a line, trimmed, blank lines skipped, each once.
pub fn read_keys(text: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !keys.iter().any(|k| k == line) {
            keys.push(line.to_owned());
        }
    }
    keys
}

/// Runs `erase` on a runtime of its own; returns the exit code.
pub fn erase(request: &EraseRequest) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("profilesync: cannot start the async runtime: {e}");
            return EXIT_ABORTED;
        }
    };
    runtime.block_on(async {
        match run(request).await {
            Ok(code) => code,
            Err((code, message)) => {
                eprintln!("profilesync: erase: {message}");
                code
            }
        }
    })
}

async fn run(request: &EraseRequest) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let config = config::load(&request.config).map_err(|e| usage(e.to_string()))?;
    let text = std::fs::read_to_string(&request.keys)
        .map_err(|e| usage(format!("cannot read {}: {e}", request.keys.display())))?;
    let keys = read_keys(&text);
    if keys.is_empty() {
        return Err(usage(format!("{} holds no key", request.keys.display())));
    }
    let (sender, identity) = connect_and_identify(&config, None)
        .await
        .map_err(|f| (f.code, f.reason))?;
    let (state, remote) = super::state::open_store(
        request.state.as_deref(),
        None,
        &config,
        &identity,
        request.quiet,
    )
    .await
    .map_err(|f| (f.code, f.reason))?;
    let erased = erase_keys(request, &config, &sender, &state, &keys).await;
    // What was removed from the state records deletions the target confirmed: it is kept
    // (and, for a state in S3, uploaded under the lease) whatever stopped the run.
    let closed = tokio::task::block_in_place(|| state.close());
    if let Some((remote, _lost)) = remote {
        if request.dry_run {
            remote.abandon().await;
        } else if let Err(why) = remote.finish().await {
            return Err((EXIT_ABORTED, why));
        }
    }
    closed.map_err(|e| (EXIT_ABORTED, e.to_string()))?;
    erased
}

/// Resolves and erases `keys` (deletes nothing beyond the guard or with `--dry-run`), writes
/// the erasure ledger, removes what the target confirmed from `state`; the exit code.
async fn erase_keys(
    request: &EraseRequest,
    config: &Config,
    sender: &Sender,
    state: &SyncState,
    keys: &[String],
) -> Result<i32, (i32, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let pace = sender.pace(Halt::never());
    let resolved = resolve(config, state, &sender.target, keys, &pace)
        .await
        .map_err(|e| (EXIT_ABORTED, e))?;
    let records = state.len().map_err(|e| (EXIT_ABORTED, e.to_string()))?;
    let limits = config.mirror.clone().unwrap_or(Mirror {
        deletes: Deletes::Delete,
        owner: String::new(),
        max_deletes: DEFAULT_MAX_DELETES,
        max_delete_percent: DEFAULT_MAX_DELETE_PERCENT,
    });
    let verdict = guard(keys.len() as u64, records, &limits, request.approve_deletes);
    let path = request
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::default_path("erase"));
    let mut ledger = Ledger::create(&path).map_err(|e| usage(e.to_string()))?;
    let mode = if request.dry_run || verdict == Verdict::Withheld {
        Mode::Plan
    } else {
        Mode::Apply
    };
    let mut failed = 0;
    let mut line = Vec::new();
    for (key, found) in keys.iter().zip(&resolved) {
        let id = match found {
            Found::Id(id) => id,
            Found::Missing(why) => {
                failed += 1;
                let outcome = match *why {
                    "not_found" => "not_found",
                    _ => "failed",
                };
                write(&mut ledger, &mut line, key, None, outcome, Some(why))
                    .map_err(|e| (EXIT_ABORTED, e.to_string()))?;
                continue;
            }
        };
        let outcome = sender
            .target
            .delete(id, mode, &sender.pace(Halt::never()))
            .await;
        let (status, error) = match outcome {
            Outcome::Settled(settled) => (settled.status, settled.error.map(|e| e.code)),
            Outcome::Abort(reason) => {
                return Err((
                    EXIT_ABORTED,
                    format!(
                        "{reason}; the ledger {} holds the keys erased so far",
                        path.display()
                    ),
                ));
            }
        };
        failed += u32::from(status == Status::Failed);
        write(
            &mut ledger,
            &mut line,
            key,
            Some(id),
            status.name(),
            error.as_deref(),
        )
        .map_err(|e| (EXIT_ABORTED, e.to_string()))?;
        if status == Status::Deleted {
            state
                .remove(id)
                .map_err(|e| (EXIT_ABORTED, e.to_string()))?;
        }
    }
    if !request.quiet {
        println!("erasure ledger: {}", path.display());
    }
    let share = keys.len() as f64 * 100.0 / records.max(1) as f64;
    Ok(match verdict {
        Verdict::Withheld => {
            eprintln!(
                "profilesync: erase: deletions withheld: {} of {records} ({share:.1}%) exceed both \
                 max_deletes and max_delete_percent; review, then erase --approve-deletes {}",
                keys.len(),
                keys.len()
            );
            EXIT_DELETIONS_WITHHELD
        }
        _ if failed > 0 => EXIT_RECORDS_FAILED,
        _ => EXIT_OK,
    })
}

/// Where a key of the request leads.
enum Found {
    /// The target record's id.
    Id(String),
    /// No one record: `not_found`, or `ambiguous` (a `failed` outcome): the ledger's code.
    Missing(&'static str),
}

/// The target id of each key: where the state's owners' table says it was synced from,
/// else where a search found it, else the key itself when it has the form of the target's
/// id, else, for a config matching by search, the one record whose search key holds it (none:
/// `not_found`; several: `ambiguous`, nothing deleted).
async fn resolve(
    config: &Config,
    state: &SyncState,
    target: &Target,
    keys: &[String],
    pace: &Pace<'_>,
) -> Result<Vec<Found>, String> {
    let by_owner = state.ids_of_keys(keys).map_err(|e| e.to_string())?;
    let kind = config.target.kind();
    let mut found = Vec::with_capacity(keys.len());
    for (key, owned) in keys.iter().zip(by_owner) {
        if let Some(id) = owned {
            found.push(Found::Id(id));
            continue;
        }
        let MatchBy::Search { key: search, .. } = &config.matching.by else {
            found.push(Found::Id(key.clone()));
            continue;
        };
        let synced = state
            .found(&state::found_key(search, &config.source.key, key))
            .map_err(|e| e.to_string())?;
        if let Some(id) = synced {
            found.push(Found::Id(id));
        } else if validate::check_id(kind, key).is_ok() {
            found.push(Found::Id(key.clone()));
        } else {
            let ids = target
                .search_ids(search, key, pace)
                .await
                .map_err(|e| format!("searching {search} for a key failed: {}", e.code))?;
            found.push(match <[String; 1]>::try_from(ids) {
                Ok([id]) => Found::Id(id),
                Err(ids) if ids.is_empty() => Found::Missing("not_found"),
                Err(_) => Found::Missing("ambiguous"),
            });
        }
    }
    Ok(found)
}

fn write(
    ledger: &mut Ledger,
    line: &mut Vec<u8>,
    key: &str,
    target_id: Option<&str>,
    outcome: &str,
    error: Option<&str>,
) -> io::Result<()> {
    line.clear();
    let entry = Erased {
        key,
        target_id,
        outcome,
        time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        error,
    };
    serde_json::to_writer(&mut *line, &entry)?;
    line.push(b'\n');
    ledger.write_lines(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_a_line_trimmed_and_each_once() {
        assert_eq!(read_keys(" K1\n\nK2\r\nK1\n  \n"), ["K1", "K2"]);
    }
}
