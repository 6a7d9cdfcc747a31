//! CSV: a header row, then one record per row (quoted fields may span lines).
//!
//! Reading goes through the `csv` crate's `ByteRecord`s: the crate handles quoting and the
//! UTF-8 byte-order mark, and reports the line each record starts on. Records end at `\n`
//! only, and a `\r` before it is dropped here: with the crate's default CRLF terminator, the
//! `\n` of a `\r\n` is only consumed with the next record, which would report every record
//! of a Windows file one line too early. This module also adds the checks that turn bad rows
//! into [`Broken`] records instead of errors.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use csv::{ByteRecord, ReaderBuilder, Terminator};

use super::{Body, Broken, MAX_FIELD_BYTES, SourceRecord};

/// The most bytes one record may take. The `csv` crate holds a whole record in memory, so an
/// unclosed quote would otherwise pull the rest of the file into one field; past this, the
/// input is reported as unreadable from that record on.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Reads the header and returns it with an iterator over the records.
pub fn open(
    reader: Box<dyn Read + Send>,
    delimiter: u8,
) -> io::Result<(
    Vec<String>,
    impl Iterator<Item = io::Result<SourceRecord>> + Send,
)> {
    let budget = Arc::new(AtomicUsize::new(0));
    let reader = Budgeted {
        inner: reader,
        used: Arc::clone(&budget),
    };
    let mut csv = ReaderBuilder::new()
        .delimiter(delimiter)
        .terminator(Terminator::Any(b'\n'))
        .flexible(true)
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_reader(reader);
    let header = csv.byte_headers().map_err(to_io)?.clone();
    let names = header
        .iter()
        .map(|h| {
            let name = String::from_utf8_lossy(h);
            name.trim_start_matches('\u{feff}').trim().to_owned()
        })
        .collect::<Vec<_>>();
    let width = names.len();
    let mut number = 0u64;
    let records = std::iter::from_fn(move || {
        let mut record = ByteRecord::new();
        loop {
            let line = csv.position().line();
            budget.store(0, Ordering::Relaxed);
            match csv.read_byte_record(&mut record) {
                Ok(true) if is_blank(&record) => continue,
                Ok(true) => break,
                Ok(false) => return None,
                Err(e) => return Some(Err(over_budget(to_io(e), line))),
            }
        }
        strip_cr(&mut record);
        number += 1;
        let line = record.position().map_or(0, |p| p.line());
        if swallowed_lines(&record) {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the record starting at line {line} has a field over {MAX_FIELD_BYTES} bytes \
                     that spans lines: an unclosed quote? Nothing after it can be read reliably"
                ),
            )));
        }
        let body = match check(&record, width) {
            Ok(()) => Body::Csv(record),
            Err(broken) => Body::Broken(broken),
        };
        Some(Ok(SourceRecord {
            record: number,
            line,
            body,
        }))
    });
    Ok((names, records))
}

/// A reader that fails once more than [`MAX_RECORD_BYTES`] were read since `used` was reset
/// (before each record).
struct Budgeted {
    inner: Box<dyn Read + Send>,
    used: Arc<AtomicUsize>,
}

impl Read for Budgeted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.used.load(Ordering::Relaxed) > MAX_RECORD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, OVER_BUDGET));
        }
        let n = self.inner.read(buf)?;
        self.used.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

const OVER_BUDGET: &str = "record too large";

/// Says where an oversized record starts.
fn over_budget(e: io::Error, line: u64) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidData && e.to_string() == OVER_BUDGET {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the record starting at line {line} is over {} MiB: an unclosed quote? \
                 Nothing after it can be read reliably",
                MAX_RECORD_BYTES >> 20
            ),
        )
    } else {
        e
    }
}

/// An oversized field that spans lines is an unclosed quote that swallowed the rows after
/// it: reporting it as one invalid record would silently drop those rows.
fn swallowed_lines(record: &ByteRecord) -> bool {
    record
        .iter()
        .any(|field| field.len() > MAX_FIELD_BYTES && field.contains(&b'\n'))
}

/// A `\r\n` blank line reads as one field holding `\r`.
fn is_blank(record: &ByteRecord) -> bool {
    record.len() == 1 && record[0] == *b"\r"
}

/// Drops the `\r` of a `\r\n` line end from the last field.
fn strip_cr(record: &mut ByteRecord) {
    let Some(last) = record.iter().next_back() else {
        return;
    };
    if let Some(kept) = last.strip_suffix(b"\r") {
        let kept = kept.to_vec();
        record.truncate(record.len() - 1);
        record.push_field(&kept);
    }
}

fn check(record: &ByteRecord, width: usize) -> Result<(), Broken> {
    if record.len() != width {
        return Err(Broken {
            code: "column_count",
            message: format!("has {} fields, the header has {width}", record.len()),
        });
    }
    for (index, field) in record.iter().enumerate() {
        if field.len() > MAX_FIELD_BYTES {
            return Err(Broken {
                code: "too_large",
                message: format!(
                    "field {} is {} bytes, over the {MAX_FIELD_BYTES}-byte limit \
                     (an unclosed quote?)",
                    index + 1,
                    field.len()
                ),
            });
        }
    }
    if let Err(e) = std::str::from_utf8(record.as_slice()) {
        let bad = e.valid_up_to();
        let column = (0..record.len())
            .find(|&i| record.range(i).is_some_and(|r| r.end > bad))
            .map_or(0, |i| i + 1);
        return Err(Broken {
            code: "invalid_utf8",
            message: format!(
                "field {column} is not valid UTF-8 (is the file in another encoding?)"
            ),
        });
    }
    Ok(())
}

fn to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}
