//! JSON Lines: one JSON object per line; blank lines are skipped.
//!
//! Lines are read into one reused buffer with a size cap, so a runaway line cannot take the
//! memory; each becomes a record whose values are looked up by dotted paths.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read};

use serde_json::{Map, Value};

use super::{Body, Broken, Cell, JsonPath, MAX_LINE_BYTES, SourceRecord};

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

/// Finds a configured field in a JSON object: the whole name as a key first (a flat
/// `"contact.email"`), else the dotted path. `Ok(None)`: no such member (or a `null` on the
/// way); `Err`: the path goes through a value that is not an object.
fn lookup<'a>(
    object: &'a Map<String, Value>,
    path: &JsonPath,
) -> Result<Option<&'a Value>, &'static str> {
    if let Some(value) = object.get(&path.name) {
        return Ok(Some(value));
    }
    let Some((first, rest)) = path.segments.split_first() else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let mut value = match object.get(first) {
        Some(v) => v,
        None => return Ok(None),
    };
    for segment in rest {
        value = match value {
            Value::Object(o) => match o.get(segment) {
                Some(v) => v,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            _ => return Err("a path goes through a value that is not an object"),
        };
    }
    Ok(Some(value))
}

/// Whether the object has the field at all (`null` included): what tells a path no record
/// has from a value that is absent in some records.
pub fn has(object: &Map<String, Value>, path: &JsonPath) -> bool {
    !matches!(lookup(object, path), Ok(None))
}

/// Reads a configured field of a JSON object. Numbers are their text as read (serde_json's
/// `arbitrary_precision`: never through f64), booleans `true`/`false`.
pub fn cell<'a>(object: &'a Map<String, Value>, path: &JsonPath) -> Cell<'a> {
    let value = match lookup(object, path) {
        Ok(Some(value)) => value,
        Ok(None) => return Cell::Absent,
        Err(why) => return Cell::Invalid(why),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(o)) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn a_flat_dotted_key_is_read_before_the_path() {
        let flat = object(r#"{"contact.email": "a@x.com", "contact": {"email": "b@x.com"}}"#);
        let path = JsonPath::new("contact.email");
        assert_eq!(cell(&flat, &path), Cell::Text(Cow::Borrowed("a@x.com")));
        let nested = object(r#"{"contact": {"email": "b@x.com"}}"#);
        assert_eq!(cell(&nested, &path), Cell::Text(Cow::Borrowed("b@x.com")));
        let null = object(r#"{"contact": {"email": null}}"#);
        assert!(has(&null, &path));
        assert_eq!(cell(&null, &path), Cell::Absent);
        assert!(!has(&object(r#"{"contact": {}}"#), &path));
        assert!(
            has(&object(r#"{"contact": 3}"#), &path),
            "a wrong shape is reported"
        );
    }

    #[test]
    fn numbers_are_their_text() {
        let o = object(r#"{"a": 98765432109876543210, "b": -0, "c": 0.12345678901234567890}"#);
        let text = |name: &str| cell(&o, &JsonPath::new(name));
        assert_eq!(text("a"), Cell::Text(Cow::Borrowed("98765432109876543210")));
        assert_eq!(text("b"), Cell::Text(Cow::Borrowed("-0")));
        assert_eq!(
            text("c"),
            Cell::Text(Cow::Borrowed("0.12345678901234567890"))
        );
    }
}
