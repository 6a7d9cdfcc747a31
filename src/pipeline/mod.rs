//! The pipeline: the one module that wires threads, tasks and channels.
//!
//! [`check`] runs on plain threads, since it is CPU-bound; [`sync`] (`plan` and `apply`) is
//! network-bound and runs on tokio. Both follow the same rules: every channel is bounded, so
//! a slow stage holds back the ones before it and memory stays flat whatever the input size;
//! shutdown is by dropping senders; a record becomes its ledger entry through the pure
//! `prepare` (map, then validate) and, for `sync`, the target.

mod check;
pub mod mirror;
mod parts;
#[cfg(test)]
mod props;
mod read_ahead;
pub mod refresh;
mod signals;
mod sync;
mod twins;

pub use check::check;
pub use parts::{Sender, StateUse};
pub use signals::Interrupts;
pub use sync::{Selection, SyncOptions, SyncResult, sync};

use crate::config::{Config, WhenMissing};
use crate::ledger::{Entry, EntryError, Status};
use crate::mapping::{self, Mapped, Plan};
use crate::source::{Body, SourceRecord};
use crate::validate::{self, Operation};

/// What a run needs to turn a record into a ledger entry.
pub struct Context {
    /// The compiled config.
    pub config: Config,
    /// The column bindings for this input.
    pub plan: Plan,
    /// The input's name, for messages.
    pub input: String,
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

pub(crate) fn new_entry(record: &SourceRecord, status: Status) -> Entry {
    Entry {
        record: record.record,
        line: record.line,
        key: None,
        target_id: None,
        status,
        changed: Vec::new(),
        attempts: None,
        error: None,
        basis: None,
    }
}

/// A record that is ready to send, or its `invalid` ledger entry.
pub(crate) fn prepare(cx: &Context, record: &SourceRecord) -> Result<Mapped, Box<Entry>> {
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

/// Maps a readable record and validates it for an update and, with
/// `when_missing = "create"`, for a create.
fn map_and_validate(cx: &Context, record: &SourceRecord) -> Mapped {
    let kind = cx.config.target.kind();
    let rules = &cx.config.rules;
    let mut mapped = mapping::map_row(&cx.plan, rules, record, kind.multi_valued());
    validate::validate(kind, rules, &mut mapped, Operation::Update);
    if mapped.problems.is_empty() && cx.config.matching.when_missing == WhenMissing::Create {
        mapped.create_problems = validate::create_problems(kind, rules, &mapped);
    }
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
