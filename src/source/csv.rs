//! CSV: a header row, then one record per row (quoted fields may span lines).
//!
//! Reading goes through the `csv` crate's `ByteRecord`s: the crate handles quoting and the
//! UTF-8 byte-order mark, and reports the line each record starts on. Records end at `\n`
//! only, and a `\r` before it is dropped here: with the crate's default CRLF terminator, the
//! `\n` of a `\r\n` is only consumed with the next record, which would report every record
//! of a Windows file one line too early. This module also adds the checks that turn bad rows
//! into [`Broken`] records instead of errors.
//!
//! An unclosed quote is found by following the quoting as the bytes are read ([`Tap`]): at
//! the end of the input the `csv` crate ends the open quoted field and returns it as the last
//! record, which would otherwise read as a row with too few fields, the rows after the quote
//! silently inside it. That record becomes `unclosed_quote`, naming the line of the quote and
//! the lines it swallowed; a malformed record that spans lines says so too.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use csv::{ByteRecord, ReaderBuilder, Terminator};

use super::{Body, Broken, MAX_FIELD_BYTES, SourceRecord};

/// The most bytes one record may take. The `csv` crate holds a whole record in memory, so an
/// unclosed quote would otherwise pull the rest of the file into one field; past this, the
/// input is reported as unreadable from that record on.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Reads the header and returns it with an iterator over the records. Notes about the input
/// as a whole (rows swallowed by an unclosed quote) are pushed to `notes`.
pub fn open(
    reader: Box<dyn Read + Send>,
    delimiter: u8,
    notes: Arc<Mutex<Vec<String>>>,
) -> io::Result<(
    Vec<String>,
    impl Iterator<Item = io::Result<SourceRecord>> + Send,
)> {
    let tap = Arc::new(TapState::default());
    let reader = Tap {
        inner: reader,
        state: Arc::clone(&tap),
        quotes: Quotes::new(delimiter),
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
            let (line, byte) = (csv.position().line(), csv.position().byte());
            tap.used.store(0, Ordering::Relaxed);
            match csv.read_byte_record(&mut record) {
                Ok(true) if is_blank(&record) => continue,
                Ok(true) => break,
                Ok(false) => return None,
                Err(e) => return Some(Err(read_error(to_io(e), line, byte))),
            }
        }
        strip_cr(&mut record);
        number += 1;
        let line = record.position().map_or(0, |p| p.line());
        // The line after the record's end, and the byte offset just past it.
        let (next_line, end) = (csv.position().line(), csv.position().byte());
        let unclosed = tap.unclosed.load(Ordering::Relaxed);
        let body = if unclosed > 0 {
            let last = tap.last_line.load(Ordering::Relaxed);
            let swallowed = last.saturating_sub(unclosed);
            push_note(
                &notes,
                format!(
                    "record {number}: an unclosed quote at line {unclosed} swallowed the {swallowed} \
                     input lines after it (up to line {last}, the end of the input) into one \
                     invalid record"
                ),
            );
            Body::Broken(Broken {
                code: "unclosed_quote",
                message: format!(
                    "has an unclosed quote starting at line {unclosed}: its quoted field runs to \
                     the end of the input, swallowing the {swallowed} lines after it \
                     (to line {last}); close the quote and run again"
                ),
            })
        } else if swallowed_lines(&record) {
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the record starting at line {line} has a field over {MAX_FIELD_BYTES} bytes \
                     that spans lines: an unclosed quote? Nothing after it can be read reliably"
                ),
            )));
        } else {
            match check(&record, width) {
                Ok(()) => Body::Csv(record),
                Err(mut broken) => {
                    // A malformed record over several lines: probably a quote that swallowed
                    // the rows in between.
                    let last = next_line.saturating_sub(1);
                    if broken.code == "column_count" && last > line {
                        broken.message.push_str(&format!(
                            "; it spans lines {line}-{last}: an unclosed quote at line {line}?"
                        ));
                        push_note(
                            &notes,
                            format!(
                                "record {number} spans lines {line}-{last} and has the wrong \
                                 number of fields: a quote there may have swallowed {} input \
                                 lines",
                                last - line
                            ),
                        );
                    }
                    Body::Broken(broken)
                }
            }
        };
        Some(Ok(SourceRecord {
            record: number,
            line,
            end,
            body,
        }))
    });
    Ok((names, records))
}

fn push_note(notes: &Mutex<Vec<String>>, note: String) {
    if let Ok(mut notes) = notes.lock() {
        notes.push(note);
    }
}

/// What the [`Tap`] tells the record iterator.
#[derive(Default)]
struct TapState {
    /// Bytes read since the iterator reset it (before each record).
    used: AtomicUsize,
    /// Once the input has ended inside a quoted field: the line where that quote opened.
    unclosed: AtomicU64,
    /// Once the input has ended: its last line.
    last_line: AtomicU64,
}

/// Where the quoting of CSV fields stands, byte by byte, as the `csv` crate (not strict,
/// `"` quotes, doubled to escape) reads it: a quote opens a field only at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field.
    Start,
    /// In an unquoted field.
    Field,
    /// In a quoted field.
    Quoted,
    /// In a quoted field, just after a quote (it closes the field, or escapes a quote).
    QuoteInQuoted,
}

/// A reader that follows the quoting of the bytes read through it, and fails once more than
/// [`MAX_RECORD_BYTES`] were read since `used` was reset (before each record).
struct Tap {
    inner: Box<dyn Read + Send>,
    state: Arc<TapState>,
    quotes: Quotes,
}

/// Follows the quoting of a CSV stream, chunk by chunk, and counts its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quotes {
    delimiter: u8,
    quoting: Quoting,
    /// The line being read (1-based).
    line: u64,
    /// The line where the open quoted field started, when in one.
    open_line: u64,
    /// Whether the last byte read was a newline.
    ended_with_newline: bool,
}

fn newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&c| c == b'\n').count() as u64
}

impl Quotes {
    fn new(delimiter: u8) -> Quotes {
        Quotes {
            delimiter,
            quoting: Quoting::Start,
            line: 1,
            open_line: 0,
            ended_with_newline: false,
        }
    }

    fn is_boundary(&self, b: u8) -> bool {
        b == self.delimiter || b == b'\n'
    }

    /// Follows `bytes`, jumping from quote to quote: only a quote can change whether a field
    /// is quoted, and it opens one only at the start of a field.
    fn follow(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match self.quoting {
                Quoting::QuoteInQuoted => {
                    let b = rest[0];
                    self.quoting = if b == b'"' {
                        Quoting::Quoted
                    } else if self.is_boundary(b) {
                        Quoting::Start
                    } else {
                        Quoting::Field
                    };
                    self.line += u64::from(b == b'\n');
                    i += 1;
                }
                Quoting::Quoted => match memchr::memchr(b'"', rest) {
                    Some(at) => {
                        self.line += newlines(&rest[..at]);
                        self.quoting = Quoting::QuoteInQuoted;
                        i += at + 1;
                    }
                    None => {
                        self.line += newlines(rest);
                        i = bytes.len();
                    }
                },
                Quoting::Start | Quoting::Field => match memchr::memchr(b'"', rest) {
                    Some(at) => {
                        let opens = match at {
                            0 => self.quoting == Quoting::Start,
                            _ => self.is_boundary(rest[at - 1]),
                        };
                        self.line += newlines(&rest[..at]);
                        if opens {
                            self.open_line = self.line;
                            self.quoting = Quoting::Quoted;
                        } else {
                            self.quoting = Quoting::Field;
                        }
                        i += at + 1;
                    }
                    None => {
                        self.line += newlines(rest);
                        if let Some(&last) = rest.last() {
                            self.quoting = if self.is_boundary(last) {
                                Quoting::Start
                            } else {
                                Quoting::Field
                            };
                        }
                        i = bytes.len();
                    }
                },
            }
        }
        if let Some(&last) = bytes.last() {
            self.ended_with_newline = last == b'\n';
        }
    }

    /// The same, one byte at a time: the reference [`Quotes::follow`] is tested against.
    #[cfg(test)]
    fn follow_bytewise(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.quoting = match (self.quoting, b) {
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::Start, b'"') => {
                    self.open_line = self.line;
                    Quoting::Quoted
                }
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                _ if self.is_boundary(b) => Quoting::Start,
                _ => Quoting::Field,
            };
            self.line += u64::from(b == b'\n');
            self.ended_with_newline = b == b'\n';
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.state.used.load(Ordering::Relaxed) > MAX_RECORD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, OVER_BUDGET));
        }
        let n = self.inner.read(buf)?;
        self.state.used.fetch_add(n, Ordering::Relaxed);
        let quotes = &mut self.quotes;
        if n == 0 {
            // The end of the input: a last line that ends with a newline is not one more.
            let last = quotes.line - u64::from(quotes.ended_with_newline && quotes.line > 1);
            self.state.last_line.store(last, Ordering::Relaxed);
            if quotes.quoting == Quoting::Quoted {
                self.state
                    .unclosed
                    .store(quotes.open_line, Ordering::Relaxed);
            }
        } else {
            quotes.follow(&buf[..n]);
        }
        Ok(n)
    }
}

const OVER_BUDGET: &str = "record too large";

/// Says where reading stopped: at an oversized record, or at an I/O error (a truncated gzip
/// stream) in the record after the last one read.
fn read_error(e: io::Error, line: u64, byte: u64) -> io::Error {
    if e.kind() == io::ErrorKind::InvalidData && e.to_string() == OVER_BUDGET {
        return io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the record starting at line {line} is over {} MiB: an unclosed quote? \
                 Nothing after it can be read reliably",
                MAX_RECORD_BYTES >> 20
            ),
        );
    }
    io::Error::new(
        e.kind(),
        format!(
            "{e}, in the record starting at line {line} (byte {byte} of the input, \
             decompressed); every record before it was read"
        ),
    )
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Jumping from quote to quote, in chunks of any size, ends where following every
        /// byte ends.
        #[test]
        fn quotes_follow_like_the_bytewise_reference(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), Just(b'a')],
                0..200,
            ),
            chunk in 1usize..17,
        ) {
            let mut fast = Quotes::new(b',');
            for part in bytes.chunks(chunk) {
                fast.follow(part);
            }
            let mut reference = Quotes::new(b',');
            reference.follow_bytewise(&bytes);
            prop_assert_eq!(fast, reference);
        }
    }

    fn read_all(text: &str) -> (Vec<(u64, Body)>, Vec<String>) {
        let notes = Arc::new(Mutex::new(Vec::new()));
        let (_, records) = open(
            Box::new(io::Cursor::new(text.as_bytes().to_vec())),
            b',',
            Arc::clone(&notes),
        )
        .unwrap();
        let records = records.map(|r| {
            let r = r.unwrap();
            (r.line, r.body)
        });
        let records = records.collect();
        let notes = notes.lock().unwrap().clone();
        (records, notes)
    }

    #[test]
    fn a_quote_open_at_the_end_is_one_unclosed_quote_record() {
        let (records, notes) = read_all("a,b\n1,2\n3,\"x\n5,6\n7,8\n");
        assert_eq!(records.len(), 2);
        let (line, Body::Broken(broken)) = &records[1] else {
            panic!("{records:?}")
        };
        assert_eq!(*line, 3);
        assert_eq!(broken.code, "unclosed_quote");
        assert!(broken.message.contains("line 3") && broken.message.contains("2 lines"));
        assert_eq!(notes.len(), 1);
        // Closed quotes, quotes inside fields and a last line without a newline are fine.
        let (records, notes) = read_all("a,b\n1,\"x\ny\"\n2,a\"b\n3,\"\"\"\"");
        assert_eq!(records.len(), 3, "{records:?}");
        assert!(records.iter().all(|(_, b)| matches!(b, Body::Csv(_))));
        assert!(notes.is_empty());
    }
}
