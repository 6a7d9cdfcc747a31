//! Sources: stream records out of a CSV or JSON Lines export, one at a time.
//!
//! A source never fails on a bad record: a wrong column count, invalid UTF-8, a line that is
//! not JSON or an oversized field becomes a [`Body::Broken`] record carrying its line and the
//! reason, and reading goes on. Only I/O errors (a truncated gzip stream, a vanished file)
//! stop a source, and every complete record before the error is delivered first. Memory
//! stays flat: records are read one by one from a buffered reader.
//!
//! Line endings are `\n` or `\r\n`; an input whose first line ends with a lone `\r` (old Mac
//! exports) has every `\r` read as `\n` ([`LoneCr`]).

mod csv;
mod jsonl;

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;
use serde::Deserialize;

/// The largest field accepted, in bytes; the APIs' own limits are far below it.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The largest JSON line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// JSON Lines, one object per line.
    #[serde(alias = "ndjson")]
    Jsonl,
}

/// One input record, as read.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// 1-based record number in the input (the CSV header is not a record).
    pub record: u64,
    /// 1-based line of the input where the record starts.
    pub line: u64,
    /// Byte offset just past the record in the input: how much of the input is behind this
    /// record once it settles (for a `.gz` file, estimated in compressed bytes).
    pub end: u64,
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
    /// A JSON field path.
    Path(JsonPath),
}

/// A configured JSON Lines field: the name as written, and its dotted path. A record whose
/// object holds the whole name as a key (an ETL tool's flat `"contact.email"`) is read by
/// that key; otherwise the name is a path (`contact.email` → `contact`, then `email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The name as the config writes it.
    pub name: String,
    /// The name split at its dots.
    pub segments: Vec<String>,
}

impl JsonPath {
    /// The path of a configured name.
    pub fn new(name: &str) -> JsonPath {
        JsonPath {
            name: name.to_owned(),
            segments: name.split('.').map(str::to_owned).collect(),
        }
    }
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
    /// Notes about the input as a whole, filled in as it is read (rows swallowed by an
    /// unclosed quote); see [`Source::notes`].
    notes: Arc<Mutex<Vec<String>>>,
    /// The JSON paths the config resolved, and which of them some record has.
    paths: Paths,
    records: Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send>,
}

/// The JSON Lines paths a config reads, and whether any record read so far has each one
/// (even as `null`): a path no record has is most likely a typo, which would otherwise keep
/// the field unsynced without a word. Shared between the [`Source`] (which registers the
/// paths as the config binds them) and its reader (which looks each unseen one up in every
/// record until all are seen, then stops looking).
#[derive(Clone, Default)]
pub struct Paths(Arc<Mutex<PathsSeen>>);

#[derive(Default)]
struct PathsSeen {
    /// Each registered path, and whether a record had it.
    paths: Vec<(JsonPath, bool)>,
    /// How many JSON records were looked at.
    records: u64,
}

impl Paths {
    fn register(&self, path: &JsonPath) {
        if let Ok(mut seen) = self.0.lock()
            && !seen.paths.iter().any(|(p, _)| p == path)
        {
            seen.paths.push((path.clone(), false));
        }
    }

    fn observe(&self, record: &SourceRecord) {
        let Body::Json(object) = &record.body else {
            return;
        };
        if let Ok(mut seen) = self.0.lock() {
            seen.records += 1;
            for (path, had) in seen.paths.iter_mut().filter(|(_, had)| !*had) {
                *had = jsonl::has(object, path);
            }
        }
    }

    /// The names of the registered paths that no record had, once at least one record was
    /// read (an empty input says nothing about the paths).
    pub fn unseen(&self) -> Vec<String> {
        self.0.lock().map_or_else(
            |_| Vec::new(),
            |seen| {
                if seen.records == 0 {
                    return Vec::new();
                }
                seen.paths
                    .iter()
                    .filter(|(_, had)| !*had)
                    .map(|(path, _)| path.name.clone())
                    .collect()
            },
        )
    }
}

/// The notes a source gathers while it is read; the end-of-run summary prints them.
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    /// The notes so far.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut notes| std::mem::take(&mut *notes))
            .unwrap_or_default()
    }
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
        let gz = path.ends_with(".gz");
        let decoded = Arc::new(AtomicU64::new(0));
        let reader: Box<dyn Read + Send> = if gz {
            Box::new(Counted {
                inner: MultiGzDecoder::new(BufReader::with_capacity(1 << 16, raw)),
                read: Arc::clone(&decoded),
            })
        } else {
            raw
        };
        let mut source = Self::from_reader(name, format, reader, delimiter)?;
        if gz {
            // Record offsets are in decompressed bytes and the size in compressed ones:
            // scale each offset by the compression ratio so far.
            let compressed = Arc::clone(&read);
            source.records = Box::new(source.records.map(move |record| {
                record.map(|mut record| {
                    let (raw, out) = (
                        compressed.load(Ordering::Relaxed),
                        decoded.load(Ordering::Relaxed),
                    );
                    if out > 0 {
                        record.end = (record.end as f64 * raw as f64 / out as f64) as u64;
                    }
                    record
                })
            }));
        }
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
        let reader = LoneCr::detect(reader).map_err(|e| format!("cannot read `{name}`: {e}"))?;
        let notes = Arc::new(Mutex::new(Vec::new()));
        match format {
            SourceFormat::Csv => {
                let (header, records) = csv::open(reader, delimiter, Arc::clone(&notes))
                    .map_err(|e| format!("cannot read the header of `{name}`: {e}"))?;
                Ok(Source {
                    name,
                    format,
                    header,
                    progress: Default::default(),
                    notes,
                    paths: Paths::default(),
                    records: Box::new(records),
                })
            }
            SourceFormat::Jsonl => Ok(Source {
                name,
                format,
                header: Vec::new(),
                progress: Default::default(),
                notes,
                paths: Paths::default(),
                records: Box::new(jsonl::open(reader)),
            }),
        }
    }

    /// The notes this source gathers while it is read (take them after the run).
    pub fn notes(&self) -> Notes {
        Notes(Arc::clone(&self.notes))
    }

    /// Resolves a configured column name: a CSV header name, or a JSON dotted path.
    pub fn resolve(&self, name: &str) -> Option<ColumnRef> {
        match self.format {
            SourceFormat::Csv => self
                .header
                .iter()
                .position(|h| h == name)
                .map(ColumnRef::Index),
            SourceFormat::Jsonl => {
                let path = JsonPath::new(name);
                self.paths.register(&path);
                Some(ColumnRef::Path(path))
            }
        }
    }

    /// The JSON paths resolved so far and which ones the records have (take
    /// [`Paths::unseen`] once the records are read).
    pub fn paths(&self) -> Paths {
        self.paths.clone()
    }

    /// The records, in input order.
    pub fn records(self) -> Box<dyn Iterator<Item = io::Result<SourceRecord>> + Send> {
        match self.format {
            SourceFormat::Csv => self.records,
            SourceFormat::Jsonl => {
                let paths = self.paths;
                Box::new(self.records.inspect(move |record| {
                    if let Ok(record) = record {
                        paths.observe(record);
                    }
                }))
            }
        }
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

/// Lone-CR line endings: when the first line of the input ends with a `\r` that no `\n`
/// follows, every `\r` is read as `\n` (a quoted field's line breaks included, which in such
/// a file are `\r` too). Other inputs pass through untouched.
pub struct LoneCr {
    prefix: io::Cursor<Vec<u8>>,
    inner: Box<dyn Read + Send>,
    translate: bool,
}

/// How far [`LoneCr`] looks for the first line end.
const SNIFF_BYTES: usize = 64 * 1024;

impl LoneCr {
    /// Reads up to the first line end (at most 64 KiB) to tell the line endings apart.
    pub fn detect(mut inner: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
        let mut prefix = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        let translate = loop {
            let n = match inner.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            prefix.extend_from_slice(&chunk[..n]);
            let first_end = prefix.iter().position(|&b| b == b'\n' || b == b'\r');
            match first_end {
                // A `\r` at the very end of what was read may be half of a `\r\n`.
                Some(i) if prefix[i] == b'\r' && i + 1 < prefix.len() => {
                    break prefix[i + 1] != b'\n';
                }
                Some(i) if prefix[i] == b'\n' => break false,
                Some(_) if n == 0 => break true,
                None if n == 0 || prefix.len() >= SNIFF_BYTES => break false,
                _ => {}
            }
        };
        if !translate && prefix.is_empty() {
            return Ok(inner);
        }
        Ok(Box::new(LoneCr {
            prefix: io::Cursor::new(prefix),
            inner,
            translate,
        }))
    }
}

impl Read for LoneCr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = self.prefix.read(buf)?;
        if n == 0 {
            n = self.inner.read(buf)?;
        }
        if self.translate {
            for b in &mut buf[..n] {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
        }
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

    fn read_through(input: &[u8], chunk: usize) -> Vec<u8> {
        struct Trickle(Vec<u8>, usize, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.2.min(buf.len()).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let mut out = Vec::new();
        LoneCr::detect(Box::new(Trickle(input.to_vec(), 0, chunk)))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn lone_cr_files_read_as_lf_and_others_pass_untouched() {
        for chunk in [1, 2, 3, 4096] {
            assert_eq!(read_through(b"a,b\r1,2\r", chunk), b"a,b\n1,2\n");
            assert_eq!(read_through(b"a,b\r", chunk), b"a,b\n");
            assert_eq!(
                read_through(b"a,b\r\n1,\"x\ry\"\r\n", chunk),
                b"a,b\r\n1,\"x\ry\"\r\n"
            );
            assert_eq!(read_through(b"a,b\n1,\r\n", chunk), b"a,b\n1,\r\n");
            assert_eq!(read_through(b"a,b", chunk), b"a,b");
            assert_eq!(read_through(b"", chunk), b"");
        }
    }
}
