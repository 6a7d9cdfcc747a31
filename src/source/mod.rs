//! Sources: stream records out of a CSV or JSON Lines export, one at a time.
//!
//! A source never fails on a bad record: a wrong column count, invalid UTF-8, a line that is
//! not JSON or an oversized field becomes a [`Body::Broken`] record carrying its line and the
//! reason, and reading goes on. Only I/O errors (a truncated gzip stream, a vanished file)
//! stop a source. Memory stays flat: records are read one by one from a buffered reader.

mod csv;
mod jsonl;

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

pub use crate::config::SourceFormat;

/// The largest field accepted, in bytes; the APIs' own limits are far below it.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The largest JSON line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// One input record, as read.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// 1-based record number in the input (the CSV header is not a record).
    pub record: u64,
    /// 1-based line of the input where the record starts.
    pub line: u64,
    /// The record's content, or why it could not be read.
    pub body: Body,
}

/// A record's content.
#[derive(Debug, Clone)]
pub enum Body {
    /// A CSV row; every field is valid UTF-8 and the column count matches the header.
    Csv(::csv::ByteRecord),
    /// A JSON object.
    Json(serde_json::Map<String, serde_json::Value>),
    /// A record that could not be read.
    Broken(Broken),
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// Machine-readable reason: `column_count`, `invalid_utf8`, `invalid_json`, `too_large`.
    pub code: &'static str,
    /// What was wrong, in words.
    pub message: String,
}

/// Where a mapping reads a value from, resolved against the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnRef {
    /// A CSV column index.
    Index(usize),
    /// A JSON field path (`address.city` → `["address", "city"]`).
    Path(Vec<String>),
}

/// A value read from a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell<'a> {
    /// No value: a missing JSON member or `null`. Means "keep".
    Absent,
    /// One value (possibly empty).
    Text(Cow<'a, str>),
    /// A JSON array of values.
    Many(Vec<String>),
    /// A value that cannot be used, and why.
    Invalid(&'static str),
}

/// Read access to one record's values.
pub trait Row {
    /// The value at `col`.
    fn cell(&self, col: &ColumnRef) -> Cell<'_>;
}

impl Row for SourceRecord {
    fn cell(&self, col: &ColumnRef) -> Cell<'_> {
        match (&self.body, col) {
            (Body::Csv(record), ColumnRef::Index(i)) => match record.get(*i) {
                Some(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => Cell::Text(Cow::Borrowed(text)),
                    Err(_) => Cell::Invalid("not valid UTF-8"),
                },
                None => Cell::Absent,
            },
            (Body::Json(object), ColumnRef::Path(path)) => jsonl::cell(object, path),
            _ => Cell::Absent,
        }
    }
}

/// An open input: its name, format, columns and records.
pub struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    /// CSV or JSON Lines.
    pub format: SourceFormat,
    /// CSV header names (empty for JSON Lines).
    pub header: Vec<String>,
    /// How far reading has got: bytes of the file read so far, and the file's size (for a
    /// progress bar and its ETA; compressed bytes for `.gz`). No size for standard input.
    pub progress: (Arc<AtomicU64>, Option<u64>),
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
}

impl Source {
    /// Opens `path` (`-` for standard input), decompressing `.gz`. The format comes from the
    /// file name, else from `format`.
    pub fn open(path: &str, format: Option<SourceFormat>, delimiter: u8) -> Result<Source, String> {
        let format = format_of(path).or(format).ok_or_else(|| {
            format!(
                "cannot tell the format of `{path}`: name it .csv, .jsonl or .ndjson \
                 (optionally .gz), or set [source] format"
            )
        })?;
        let read = Arc::new(AtomicU64::new(0));
        let (name, raw, size): (String, Box<dyn Read + Send>, Option<u64>) = if path == "-" {
            ("<stdin>".to_owned(), Box::new(io::stdin()), None)
        } else {
            let file = File::open(path).map_err(|e| format!("cannot open `{path}`: {e}"))?;
            let size = file.metadata().ok().map(|m| m.len());
            let counted = Counted {
                inner: file,
                read: Arc::clone(&read),
            };
            (path.to_owned(), Box::new(counted), size)
        };
        let reader: Box<dyn Read + Send> = if path.ends_with(".gz") {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)))
        } else {
            raw
        };
        let mut source = Self::from_reader(name, format, reader, delimiter)?;
        source.progress = (read, size);
        Ok(source)
    }

    /// Reads an already open, uncompressed stream (the demo's built-in sample).
    pub fn from_reader(
        name: String,
        format: SourceFormat,
        reader: Box<dyn Read + Send>,
        delimiter: u8,
    ) -> Result<Source, String> {
        match format {
            SourceFormat::Csv => {
                let (header, records) = csv::open(reader, delimiter)
                    .map_err(|e| format!("cannot read the header of `{name}`: {e}"))?;
                Ok(Source {
                    name,
                    format,
                    header,
                    progress: Default::default(),
                    records: Box::new(records),
                })
            }
            SourceFormat::Jsonl => Ok(Source {
                name,
                format,
                header: Vec::new(),
                progress: Default::default(),
                records: Box::new(jsonl::open(reader)),
            }),
        }
    }

    /// Resolves a configured column name: a CSV header name, or a JSON dotted path.
    pub fn resolve(&self, name: &str) -> Option<ColumnRef> {
        match self.format {
            SourceFormat::Csv => self
                .header
                .iter()
                .position(|h| h == name)
                .map(ColumnRef::Index),
            SourceFormat::Jsonl => Some(ColumnRef::Path(
                name.split('.').map(str::to_owned).collect(),
            )),
        }
    }

    /// The records, in input order.
    pub fn records(self) -> Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send> {
        self.records
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The format a file name implies, looking through a `.gz` suffix.
pub fn format_of(path: &str) -> Option<SourceFormat> {
    let name = path.strip_suffix(".gz").unwrap_or(path);
    match Path::new(name)
        .extension()?
        .to_str()?
        .to_ascii_lowercase()
        .as_str()
    {
        "csv" => Some(SourceFormat::Csv),
        "jsonl" | "ndjson" => Some(SourceFormat::Jsonl),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_name() {
        assert_eq!(format_of("a/b.csv"), Some(SourceFormat::Csv));
        assert_eq!(format_of("b.CSV.gz"), Some(SourceFormat::Csv));
        assert_eq!(format_of("b.ndjson"), Some(SourceFormat::Jsonl));
        assert_eq!(format_of("b.jsonl.gz"), Some(SourceFormat::Jsonl));
        assert_eq!(format_of("b.txt"), None);
        assert_eq!(format_of("-"), None);
    }
}
