//! The JSONL diff report: one object per changed record, its changes as `{field, from, to}`
//! (`from` and `to` only with values; `from` is null when the record was not read first),
//! and one per record nothing was written for (invalid, failed, not found, skipped), with
//! no changes and its `error` (`code`, `message`: the ledger's, which hold no value).

use std::fs::File;
use std::io::{self, BufWriter, Write};

use serde::Serialize;

use crate::ledger::{Deletion, Entry, Status};
use crate::targets::FieldChange;

pub(super) struct JsonlDiff {
    out: BufWriter<File>,
    values: bool,
    line: Vec<u8>,
}

#[derive(Serialize)]
struct Line<'a> {
    record: u64,
    line: u64,
    key: Option<&'a str>,
    target_id: Option<&'a str>,
    status: Status,
    changes: Vec<Change<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Reason<'a>>,
}

#[derive(Serialize)]
struct Reason<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Change<'a> {
    field: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

impl JsonlDiff {
    pub(super) fn new(file: File, values: bool) -> JsonlDiff {
        JsonlDiff {
            out: BufWriter::with_capacity(1 << 16, file),
            values,
            line: Vec::with_capacity(256),
        }
    }

    /// Writes the line of one record.
    pub(super) fn write(&mut self, entry: &Entry, changes: &[FieldChange]) -> io::Result<()> {
        let line = Line {
            record: entry.record,
            line: entry.line,
            key: entry.key.as_deref(),
            target_id: entry.target_id.as_deref(),
            status: entry.status,
            changes: changes
                .iter()
                .map(|c| Change {
                    field: &c.field,
                    from: self.values.then_some(c.from.as_deref()),
                    to: self.values.then_some(c.to.as_str()),
                })
                .collect(),
            error: entry.error.as_ref().map(|e| Reason {
                code: &e.code,
                message: &e.message,
            }),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    /// Writes one deletion, as its ledger line says it.
    pub(super) fn write_deletion(&mut self, deletion: &Deletion<'_>) -> io::Result<()> {
        self.line.clear();
        deletion.write_line(&mut self.line);
        self.out.write_all(&self.line)
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn one_object_per_record_values_only_when_asked() {
        let entry = Entry {
            record: 4,
            line: 5,
            key: Some("C4".into()),
            target_id: None,
            status: Status::Updated,
            changed: vec!["FirstName".into(), "Address.City".into()],
            attempts: Some(1),
            error: None,
            basis: None,
        };
        let changes = [
            FieldChange {
                field: "FirstName".into(),
                from: None,
                to: "Anna".into(),
            },
            FieldChange {
                field: "Address.City".into(),
                from: Some("Lyon".into()),
                to: String::new(),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        for values in [false, true] {
            let path = dir.path().join(format!("{values}.jsonl"));
            let mut jsonl = JsonlDiff::new(File::create(&path).unwrap(), values);
            jsonl.write(&entry, &changes).unwrap();
            jsonl.flush().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 1);
            let line: Value = serde_json::from_str(&text).unwrap();
            let changes = if values {
                json!([
                    {"field": "FirstName", "from": null, "to": "Anna"},
                    {"field": "Address.City", "from": "Lyon", "to": ""},
                ])
            } else {
                json!([{"field": "FirstName"}, {"field": "Address.City"}])
            };
            assert_eq!(
                line,
                json!({"record": 4, "line": 5, "key": "C4", "target_id": null,
                       "status": "updated", "changes": changes})
            );
        }
    }
}
