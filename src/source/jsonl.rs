//! JSON Lines: one JSON object per line; blank lines are skipped.
//!
//! Lines are read into one reused buffer with a size cap, so a runaway line cannot take the
//! memory; each becomes a record whose values are looked up by dotted paths.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read};

use serde_json::{Map, Value};

use super::{Body, Broken, Cell, MAX_LINE_BYTES, SourceRecord};

/// Iterates over the records of a JSON Lines stream.
pub fn open(reader: Box<dyn Read + Send>) -> impl Iterator<Item = io::Result<SourceRecord>> + Send {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut buf = Vec::with_capacity(4096);
    let mut line = 0u64;
    let mut number = 0u64;
    // Bytes of the input before the current line.
    let mut offset = 0u64;
    std::iter::from_fn(move || {
        loop {
            buf.clear();
            let read = match (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(read_error(e, line + 1, offset))),
            };
            line += 1;
            offset += read as u64;
            let too_long = read > MAX_LINE_BYTES && buf.last() != Some(&b'\n');
            if too_long {
                match skip_line(&mut reader) {
                    Ok(skipped) => offset += skipped,
                    Err(e) => return Some(Err(read_error(e, line, offset))),
                }
            }
            let text = trim_ascii(&buf);
            if text.is_empty() && !too_long {
                continue;
            }
            number += 1;
            let body = if too_long {
                Body::Broken(Broken {
                    code: "too_large",
                    message: format!("the line is over the {MAX_LINE_BYTES}-byte limit"),
                })
            } else {
                parse(text)
            };
            return Some(Ok(SourceRecord {
                record: number,
                line,
                end: offset,
                body,
            }));
        }
    })
}

fn parse(text: &[u8]) -> Body {
    match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(object)) => Body::Json(object),
        Ok(_) => Body::Broken(Broken {
            code: "invalid_json",
            message: "the line is JSON but not an object".to_owned(),
        }),
        Err(e) => Body::Broken(Broken {
            code: if e.to_string().contains("unicode") || std::str::from_utf8(text).is_err() {
                "invalid_utf8"
            } else {
                "invalid_json"
            },
            message: format!("the line is not valid JSON: {}", describe(&e)),
        }),
    }
}

/// serde_json's error without the value it may quote.
fn describe(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "it ends in the middle of a value",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at column {}", e.column())
}

/// Says where reading stopped (a truncated gzip stream, a vanished file).
fn read_error(e: io::Error, line: u64, byte: u64) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "{e}, at line {line} (byte {byte} of the input, decompressed); every line before \
             it was read"
        ),
    )
}

/// Skips the rest of a line; returns how many bytes that was.
fn skip_line(reader: &mut impl BufRead) -> io::Result<u64> {
    let mut skipped = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            reader.consume(pos + 1);
            return Ok(skipped + pos as u64 + 1);
        }
        let len = buf.len();
        reader.consume(len);
        skipped += len as u64;
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.trim_ascii()
}

/// Looks up a dotted path in a JSON object.
pub fn cell<'a>(object: &'a Map<String, Value>, path: &[String]) -> Cell<'a> {
    let Some((first, rest)) = path.split_first() else {
        return Cell::Absent;
    };
    let mut value = match object.get(first) {
        Some(v) => v,
        None => return Cell::Absent,
    };
    for segment in rest {
        value = match value {
            Value::Object(o) => match o.get(segment) {
                Some(v) => v,
                None => return Cell::Absent,
            },
            Value::Null => return Cell::Absent,
            _ => return Cell::Invalid("a path goes through a value that is not an object"),
        };
    }
    match value {
        Value::Null => Cell::Absent,
        Value::String(s) => Cell::Text(Cow::Borrowed(s)),
        Value::Number(n) => Cell::Text(Cow::Owned(n.to_string())),
        Value::Bool(b) => Cell::Text(Cow::Owned(b.to_string())),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map_or(
                Cell::Invalid("a list holding objects, lists or nulls"),
                Cell::Many,
            ),
        Value::Object(_) => Cell::Invalid("an object where a value was expected"),
    }
}
