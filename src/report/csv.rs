//! The CSV diff report: one row per changed field, and one per record nothing was written for
//! (invalid, failed, not found, skipped) with its reason; every cell neutralised against
//! formula (CSV) injection the way OWASP recommends.

use std::borrow::Cow;
use std::fs::File;
use std::io;

use crate::ledger::{Deletion, Entry};
use crate::targets::FieldChange;

/// Written in `from` when `apply` sent a change without reading the record first.
pub(super) const NOT_READ: &str = "(not read)";

/// `record,line,key,target_id,status,field`, with values `from,to`, then `code,reason`
/// (empty on a change of a record that was written).
pub(super) struct CsvDiff {
    out: ::csv::Writer<File>,
    values: bool,
}

impl CsvDiff {
    /// Writes the header.
    pub(super) fn new(file: File, values: bool) -> io::Result<CsvDiff> {
        let mut out = ::csv::Writer::from_writer(file);
        let mut header = vec!["record", "line", "key", "target_id", "status", "field"];
        if values {
            header.extend(["from", "to"]);
        }
        header.extend(["code", "reason"]);
        out.write_record(&header)?;
        Ok(CsvDiff { out, values })
    }

    /// Writes the rows of one record: one per changed field, or, when none changed, one
    /// with an empty field and the record's reason.
    pub(super) fn write(&mut self, entry: &Entry, changes: &[FieldChange]) -> io::Result<()> {
        let (record, line) = (entry.record.to_string(), entry.line.to_string());
        let key = neutralise(entry.key.as_deref().unwrap_or(""));
        let target_id = neutralise(entry.target_id.as_deref().unwrap_or(""));
        let (code, reason) = entry
            .error
            .as_ref()
            .map_or(("", ""), |e| (e.code.as_str(), e.message.as_str()));
        let no_change = [FieldChange {
            field: String::new(),
            from: Some(String::new()),
            to: String::new(),
        }];
        let rows = if changes.is_empty() {
            &no_change[..]
        } else {
            changes
        };
        for change in rows {
            let mut row = vec![
                Cow::Borrowed(record.as_str()),
                Cow::Borrowed(line.as_str()),
                key.clone(),
                target_id.clone(),
                Cow::Borrowed(entry.status.name()),
                neutralise(&change.field),
            ];
            if self.values {
                row.push(neutralise(change.from.as_deref().unwrap_or(NOT_READ)));
                row.push(neutralise(&change.to));
            }
            row.push(neutralise(code));
            row.push(neutralise(reason));
            self.out.write_record(row.iter().map(|c| c.as_bytes()))?;
        }
        Ok(())
    }

    /// Writes the row of one deletion: no record, line or field (it names a target record,
    /// not an input row).
    pub(super) fn write_deletion(&mut self, deletion: &Deletion<'_>) -> io::Result<()> {
        let mut row = vec![
            Cow::Borrowed(""),
            Cow::Borrowed(""),
            neutralise(deletion.key),
            neutralise(deletion.target_id),
            Cow::Borrowed(deletion.status.name()),
            Cow::Borrowed(""),
        ];
        if self.values {
            row.extend([Cow::Borrowed(""), Cow::Borrowed("")]);
        }
        // The code and reason columns: why it is deleted, or why its delete failed.
        let (code, reason) = match &deletion.error {
            Some(e) => (neutralise(&e.code), neutralise(&e.message)),
            None => (Cow::Borrowed(deletion.reason), Cow::Borrowed("")),
        };
        row.extend([code, reason]);
        self.out.write_record(row.iter().map(|c| c.as_bytes()))?;
        Ok(())
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A cell that a spreadsheet would read as a formula, made plain text: a cell that starts
/// with `=`, `+`, `-`, `@`, a tab or a carriage return (or the full-width `＝`, `＋`, `－`,
/// `＠`, which some spreadsheets take for them) gets a leading `'`, as OWASP recommends;
/// a number (`-12`, `+3.5`) or an E.164 phone number (`+14155550123`) is kept as it is.
/// Quoting (a cell with a comma, quote or line break) is left to the CSV writer.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠']);
    if risky && !is_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `[+-]DIGITS[.DIGITS]`; E.164 numbers (`+` and up to 15 digits) are of this shape.
fn is_number(cell: &str) -> bool {
    let unsigned = cell.strip_prefix(['+', '-']).unwrap_or(cell);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_numbers_and_phones_kept() {
        for (cell, expected) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("＝1+1", "'＝1+1"),
            ("+", "'+"),
            ("-", "'-"),
            ("+1 206 555 0100", "'+1 206 555 0100"),
            ("-1.", "'-1."),
            ("+14155550123", "+14155550123"),
            ("-12", "-12"),
            ("+3.5", "+3.5"),
            ("Ana", "Ana"),
            ("a=b", "a=b"),
            ("", ""),
            ("'=already", "'=already"),
        ] {
            assert_eq!(neutralise(cell), expected, "{cell:?}");
        }
    }

    #[test]
    fn every_cell_of_a_row_is_neutralised_and_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        let mut csv = CsvDiff::new(File::create(&path).unwrap(), true).unwrap();
        let entry = Entry {
            record: 1,
            line: 2,
            key: Some("=1+1".into()),
            target_id: Some("@x".into()),
            status: crate::ledger::Status::WouldUpdate,
            changed: vec!["FirstName".into()],
            attempts: Some(1),
            error: None,
            basis: None,
        };
        let change = FieldChange {
            field: "FirstName".into(),
            from: None,
            to: "=HYPERLINK(\"http://evil\",\"click\"),x".into(),
        };
        csv.write(&entry, &[change]).unwrap();
        csv.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "1,2,'=1+1,'@x,would_update,FirstName,(not read),\"'=HYPERLINK(\"\"http://evil\"\",\"\"click\"\"),x\",,"
        );
        // Read back, the cell is the value behind one apostrophe.
        let mut reader = ::csv::Reader::from_path(&path).unwrap();
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[7], "'=HYPERLINK(\"http://evil\",\"click\"),x");
    }
}
