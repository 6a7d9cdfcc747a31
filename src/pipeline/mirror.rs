//! Mirror mode (`[mirror]`): the target records this sync's owner settled in an earlier run
//! that tonight's input no longer names are deleted, or listed, at the end of a complete run.
//!
//! ```text
//! writer (every entry) ──▶ Named (hashes of each row's key and target id)
//!                                 │
//! end of the run ── considered? ──┴─▶ candidates: state records of this owner not named
//!                                       ──▶ guard ──▶ plan / report / withheld: would_delete
//!                                                 └─▶ apply: delete ──▶ deleted / failed
//! ```
//!
//! The decisions are pure functions ([`not_considered`], [`guard`]); [`run`] only wires
//! them to the sync state, the target ([`crate::targets::Target::delete`], whose driver turns
//! a 404 into `deleted`) and the ledger. A record's state entry is removed only after the
//! target confirmed the delete and its ledger line is written.

use std::io;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::parts::{Sender, StateUse};
use crate::config::{Deletes, Mirror};
use crate::ledger::{Deletion, Entry, Ledger, Status, Tally};
use crate::report::DiffReport;
use crate::retry::Halt;
use crate::targets::{Mode, Outcome};

/// Why a deletion candidate is one.
const ABSENT: &str = "absent_from_source";
/// State removals per durable transaction.
const REMOVE_BATCH: usize = 64;

/// What tonight's input named: a 64-bit hash of each row's `[source] key` and of its target
/// id when it has one, valid or invalid rows alike. A sorted `Vec<u64>`, 8 bytes per name
/// (at most 16 bytes a row, 16 MB for a million rows whose key is not their id; half that
/// when it is), searched by bisection; kept only when `[mirror]` is on. Two names sharing a
/// hash would spare a record from deletion, never delete one.
#[derive(Debug, Default)]
pub struct Named {
    hashes: Vec<u64>,
    sorted: bool,
}

impl Named {
    /// Notes the key and target id of one ledger entry.
    pub fn add(&mut self, entry: &Entry) {
        if let Some(key) = entry.key.as_deref() {
            self.hashes.push(key_hash(key));
        }
        if let Some(id) = entry.target_id.as_deref() {
            self.hashes.push(id_hash(id));
        }
        self.sorted = false;
    }

    /// Sorts the names for [`Named::names`].
    pub fn seal(&mut self) {
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.sorted = true;
    }

    /// Whether a row named the record with this target id or `[source] key`.
    pub fn names(&self, id: &str, key: &str) -> bool {
        debug_assert!(self.sorted, "sealed before asking");
        let has = |hash: u64| self.hashes.binary_search(&hash).is_ok();
        has(id_hash(id)) || has(key_hash(key))
    }
}

fn key_hash(key: &str) -> u64 {
    xxh3_64_with_seed(key.as_bytes(), 1)
}

fn id_hash(id: &str) -> u64 {
    xxh3_64_with_seed(id.as_bytes(), 2)
}

/// What a run knows, at its end, of whether its input was whole.
#[derive(Debug, Clone, Copy)]
pub struct Completeness<'a> {
    /// The run sent every record of the input (not `--resume` nor `--retry-failed`).
    pub every_record: bool,
    /// Why the run stopped early (a read error included), if it did.
    pub aborted: Option<&'a str>,
    /// Rows read.
    pub records: u64,
}

/// Why no deletion is considered after this run, or `None` when deletions are considered:
/// only a run that read the whole input without an error, holding at least one record, and
/// sent all of it, may tell what left the source. Pure.
pub fn not_considered(run: Completeness<'_>) -> Option<String> {
    if !run.every_record {
        return Some("the run sent a part of the input (--resume or --retry-failed)".into());
    }
    if let Some(reason) = run.aborted {
        return Some(format!("the run did not finish ({reason})"));
    }
    if run.records == 0 {
        return Some("the input holds no record".into());
    }
    None
}

/// The guard's verdict on a night's candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within `max_deletes` or `max_delete_percent`: delete them.
    Within,
    /// Beyond both: every deletion is withheld.
    Withheld,
    /// Beyond both, but `--approve-deletes` named exactly this count: delete them.
    Approved,
}

/// The guard: `candidates` of the owner's `owned` records exceed both `max_deletes` and
/// `max_delete_percent` of `owned` → withheld, unless `approved` is exactly `candidates`.
/// Pure.
pub fn guard(candidates: u64, owned: u64, mirror: &Mirror, approved: Option<u64>) -> Verdict {
    let over_count = candidates > mirror.max_deletes;
    let over_share = percent(candidates, owned) > mirror.max_delete_percent;
    match (over_count && over_share, approved == Some(candidates)) {
        (false, _) => Verdict::Within,
        (true, true) => Verdict::Approved,
        (true, false) => Verdict::Withheld,
    }
}

/// `part` as a percentage of `whole` (0 of 0 is 0%).
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// What the mirror stage did, for the summary, `--summary-json` and the exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorResult {
    /// Why no deletion was considered, if none was.
    pub not_considered: Option<String>,
    /// Records of this owner in the sync state before the run's deletions.
    pub owned: u64,
    /// Of them, not named by tonight's input.
    pub candidates: u64,
    /// The guard's verdict (`None` when not considered).
    pub verdict: Option<Verdict>,
    /// A deletion's error that is not about its record (access denied): the run stops
    /// (exit 3), and the records it did not delete stay candidates for the next night.
    pub stopped: Option<String>,
}

impl MirrorResult {
    /// The summary's line: how many records left the source and what became of them.
    pub fn line(&self) -> String {
        if let Some(why) = &self.not_considered {
            return format!("deletions: none considered: {why}");
        }
        let share = percent(self.candidates, self.owned);
        match self.verdict {
            Some(Verdict::Withheld) => format!(
                "deletions withheld: {} of {} ({share:.1}%) exceed both [mirror] max_deletes \
                 and max_delete_percent; review the plan, then apply --approve-deletes {}",
                self.candidates, self.owned, self.candidates
            ),
            _ => format!(
                "deletions: {} of {} ({share:.1}%) absent from the source",
                self.candidates, self.owned
            ),
        }
    }

    /// Whether the guard withheld the deletions (exit 4).
    pub fn withheld(&self) -> bool {
        self.verdict == Some(Verdict::Withheld)
    }
}

/// Where the mirror stage writes: the ledger, the diff report if any, the run's counts.
pub struct Out<'a> {
    /// The run's ledger.
    pub ledger: &'a mut Ledger,
    /// The run's diff report.
    pub report: Option<&'a mut DiffReport>,
    /// The run's counts per status.
    pub tally: &'a mut Tally,
}

impl Out<'_> {
    /// Writes one deletion to the ledger and the report, and counts it.
    fn write(&mut self, deletion: &Deletion<'_>, line: &mut Vec<u8>) -> io::Result<()> {
        line.clear();
        deletion.write_line(line);
        self.ledger.write_lines(line)?;
        if let Some(report) = self.report.as_deref_mut() {
            report.write_deletion(deletion)?;
        }
        self.tally.add(deletion.status);
        Ok(())
    }
}

/// What the mirror stage works with.
pub struct MirrorRun<'a> {
    /// `[mirror]`.
    pub mirror: &'a Mirror,
    /// Plan or apply.
    pub mode: Mode,
    /// `--approve-deletes N`.
    pub approved: Option<u64>,
    /// Deletions in flight at once.
    pub concurrency: usize,
}

/// The mirror stage, after every row settled: finds the candidates, applies the guard,
/// and lists (`would_delete`) or deletes them, writing one ledger line each and counting
/// them in `tally`.
pub async fn run(
    how: MirrorRun<'_>,
    run: Completeness<'_>,
    named: &Named,
    state: &Arc<StateUse>,
    sender: &Arc<Sender>,
    mut out: Out<'_>,
    halt: Halt,
) -> io::Result<MirrorResult> {
    let result = decide_and_delete(how, run, named, state, sender, &mut out, halt).await?;
    if let Some(report) = out.report {
        report.deletions_line(result.line());
    }
    Ok(result)
}

async fn decide_and_delete(
    how: MirrorRun<'_>,
    run: Completeness<'_>,
    named: &Named,
    state: &Arc<StateUse>,
    sender: &Arc<Sender>,
    out: &mut Out<'_>,
    halt: Halt,
) -> io::Result<MirrorResult> {
    if let Some(why) = not_considered(run) {
        return Ok(MirrorResult {
            not_considered: Some(why),
            owned: 0,
            candidates: 0,
            verdict: None,
            stopped: None,
        });
    }
    let owner = how.mirror.owner.as_str();
    let (owned, candidates) = tokio::task::block_in_place(|| {
        state.state.owned_by(owner, |id, key| !named.names(id, key))
    })
    .map_err(|e| io::Error::other(format!("reading the sync state failed: {e}")))?;
    // `report` deletes nothing, so it has nothing to withhold.
    let verdict = match how.mirror.deletes {
        Deletes::Delete => guard(candidates.len() as u64, owned, how.mirror, how.approved),
        Deletes::Report | Deletes::Off => Verdict::Within,
    };
    let mut result = MirrorResult {
        not_considered: None,
        owned,
        candidates: candidates.len() as u64,
        verdict: Some(verdict),
        stopped: None,
    };
    let deleting = how.mode == Mode::Apply
        && how.mirror.deletes == Deletes::Delete
        && verdict != Verdict::Withheld;
    if !deleting {
        let mut line = Vec::new();
        for (id, key) in &candidates {
            let deletion = Deletion {
                status: Status::WouldDelete,
                target_id: id,
                key,
                owner,
                reason: ABSENT,
                attempts: None,
                error: None,
            };
            out.write(&deletion, &mut line)?;
        }
        return Ok(result);
    }
    result.stopped =
        delete_all(candidates, owner, how.concurrency, state, sender, out, halt).await?;
    Ok(result)
}

/// Deletes every candidate, `concurrency` at a time, each through the run's limiter and
/// retry policy; writes each one's ledger line as it settles, then forgets the deleted ones
/// in the state, in durable batches. Returns why the run must stop, if a deletion said so
/// (that deletion gets no ledger line, like a record that did not settle).
async fn delete_all(
    candidates: Vec<(String, String)>,
    owner: &str,
    concurrency: usize,
    state: &Arc<StateUse>,
    sender: &Arc<Sender>,
    out: &mut Out<'_>,
    halt: Halt,
) -> io::Result<Option<String>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (id, key) in candidates {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (sender, halt) = (Arc::clone(sender), halt.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let outcome = sender
                .target
                .delete(&id, Mode::Apply, &sender.pace(halt))
                .await;
            (id, key, outcome)
        });
    }
    let mut forget: Vec<String> = Vec::new();
    let mut line = Vec::new();
    let mut stopped = None;
    while let Some(done) = tasks.join_next().await {
        let (id, key, outcome) = done.map_err(io::Error::other)?;
        let (status, attempts, error) = match outcome {
            Outcome::Settled(settled) => (settled.status, Some(settled.attempts), settled.error),
            // Not about this record (access denied): it stays, and the run says why.
            Outcome::Abort(reason) => {
                stopped.get_or_insert(reason);
                continue;
            }
        };
        let deletion = Deletion {
            status,
            target_id: &id,
            key: &key,
            owner,
            reason: ABSENT,
            attempts,
            error,
        };
        out.write(&deletion, &mut line)?;
        if status == Status::Deleted {
            forget.push(id);
            if forget.len() >= REMOVE_BATCH {
                remove(state, &mut forget)?;
            }
        }
    }
    remove(state, &mut forget)?;
    Ok(stopped)
}

/// Forgets deleted records in the state, durably, after their ledger lines.
fn remove(state: &StateUse, ids: &mut Vec<String>) -> io::Result<()> {
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    tokio::task::block_in_place(|| state.state.remove_many(&refs))
        .map_err(|e| io::Error::other(format!("writing the sync state failed: {e}")))?;
    ids.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(max_deletes: u64, max_delete_percent: f64) -> Mirror {
        Mirror {
            deletes: Deletes::Delete,
            owner: "crm".into(),
            max_deletes,
            max_delete_percent,
        }
    }

    #[test]
    fn the_guard_withholds_only_beyond_both_limits() {
        let m = mirror(50, 5.0);
        // 30 of 1,000: under both.
        assert_eq!(guard(30, 1_000, &m, None), Verdict::Within);
        // 60 of 10,000 (0.6%): over the count, under the share.
        assert_eq!(guard(60, 10_000, &m, None), Verdict::Within);
        // 40 of 100 (40%): over the share, under the count.
        assert_eq!(guard(40, 100, &m, None), Verdict::Within);
        // 60 of 100: over both.
        assert_eq!(guard(60, 100, &m, None), Verdict::Withheld);
        assert_eq!(guard(60, 100, &m, Some(59)), Verdict::Withheld);
        assert_eq!(guard(60, 100, &m, Some(60)), Verdict::Approved);
        assert_eq!(guard(0, 0, &m, None), Verdict::Within);
    }

    #[test]
    fn only_a_whole_input_read_to_its_end_is_considered() {
        let whole = Completeness {
            every_record: true,
            aborted: None,
            records: 3,
        };
        assert_eq!(not_considered(whole), None);
        let part = Completeness {
            every_record: false,
            ..whole
        };
        assert!(not_considered(part).unwrap().contains("--resume"));
        let empty = Completeness {
            records: 0,
            ..whole
        };
        assert!(not_considered(empty).unwrap().contains("no record"));
        let cut = Completeness {
            aborted: Some("reading the input failed: unexpected end of file"),
            ..whole
        };
        assert!(not_considered(cut).unwrap().contains("did not finish"));
    }

    #[test]
    fn a_row_names_its_record_by_key_or_by_id() {
        let mut named = Named::default();
        let entry = |key: Option<&str>, id: Option<&str>| Entry {
            record: 1,
            line: 2,
            key: key.map(str::to_owned),
            target_id: id.map(str::to_owned),
            status: Status::Invalid,
            changed: vec![],
            attempts: None,
            error: None,
            basis: None,
        };
        named.add(&entry(Some("c-1"), None));
        named.add(&entry(Some("c-2"), Some("p-2")));
        named.seal();
        assert!(named.names("p-1", "c-1"));
        assert!(named.names("p-2", "moved"));
        assert!(!named.names("p-3", "c-3"));
        // An id is not a key: "c-1" as an id names nothing.
        assert!(!named.names("c-1", "c-9"));
    }
}
