//! Property tests over the sources, mapping and validation: whatever the bytes, nothing
//! panics, and every record read ends `valid` or `invalid` with a reason and its line.

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;

use super::{Context, check_record};
use crate::ledger::Status;
use crate::mapping::Plan;
use crate::source::{Source, SourceFormat};

const CONFIG: &str = r#"[source]
key = "c0"

[target]
kind = "customer-profiles"
domain = "D"

[match]
id = "c1"

[fields]
FirstName = { from = "c2", transform = ["trim", "nfc"] }
EmailAddress = { from = "c3", transform = ["trim", "lowercase", "email"] }
PhoneNumber = { from = "c4", transform = ["e164"] }
BirthDate = { from = "c4", transform = [{ date = { from = "%m/%d/%Y", to = "%Y-%m-%d" } }] }
"Attributes.Note" = { template = "{c2} / {c3}" }
"#;

const HEADER: &str = "c0,c1,c2,c3,c4\n";

/// Reads `input` and maps and validates every record as `check` does. Returns, per record,
/// its (record number, line, status, error code); asserts what every entry must say.
fn check_all(format: SourceFormat, input: Vec<u8>) -> Vec<(u64, u64, Status, Option<String>)> {
    let config = crate::config::compile::compile(Path::new("c.toml"), CONFIG)
        .expect("the test config compiles");
    let len = input.len() as u64;
    let Ok(source) =
        Source::from_reader("in".to_owned(), format, Box::new(Cursor::new(input)), b',')
    else {
        return Vec::new(); // an unreadable header: a usage error, before any record
    };
    let Ok(plan) = Plan::bind(
        &config.source.key,
        config.matching.id_column(),
        config.matching.search(),
        &config.rules,
        |name| source.resolve(name),
    ) else {
        return Vec::new(); // a missing column: a usage error, before any record
    };
    let cx = Context {
        config,
        plan,
        input: "in".to_owned(),
    };
    let mut seen = Vec::new();
    let (mut last_line, mut last_end) = (0, 0);
    for record in source.records() {
        let Ok(record) = record else { break }; // an I/O error ends the input
        assert_eq!(
            record.record,
            seen.len() as u64 + 1,
            "records are numbered in order"
        );
        assert!(
            record.line >= 1 && record.line > last_line,
            "lines go forward"
        );
        assert!(
            record.end >= last_end && record.end <= len,
            "offsets go forward"
        );
        (last_line, last_end) = (record.line, record.end);
        let entry = check_record(&cx, &record);
        assert_eq!((entry.record, entry.line), (record.record, record.line));
        match entry.status {
            Status::Valid => assert!(entry.key.is_some() && entry.error.is_none()),
            Status::Invalid => {
                let error = entry.error.as_ref().expect("an invalid record says why");
                let at = format!("in:{}: ", record.line);
                assert!(error.message.starts_with(&at), "{}", error.message);
                assert!(!error.code.is_empty());
            }
            other => panic!("check gave {other:?}"),
        }
        let code = entry.error.map(|e| e.code);
        seen.push((record.record, record.line, entry.status, code));
    }
    seen
}

/// A field as an export might hold it: text with quotes, delimiters, line breaks, accents,
/// or bytes that are not UTF-8.
fn field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9 @.()+-]{0,12}".prop_map(String::into_bytes),
        "[a-z\"', \r\n\u{e9}\u{301}]{0,10}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ]
}

/// One row's fields: usually five, sometimes six.
fn row() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        8 => proptest::collection::vec(field(), 5),
        1 => proptest::collection::vec(field(), 6),
    ]
}

/// Writes a field quoted (quotes doubled) when it needs to be, or at random.
fn write_field(out: &mut Vec<u8>, field: &[u8], quote: bool) {
    let special = field
        .iter()
        .any(|b| matches!(b, b'"' | b',' | b'\r' | b'\n'));
    if !(quote || special) {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_bytes_after_a_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut input = HEADER.as_bytes().to_vec();
        input.extend_from_slice(&body);
        check_all(SourceFormat::Csv, input);
    }

    #[test]
    fn any_bytes_at_all_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_all(SourceFormat::Csv, input.clone());
        check_all(SourceFormat::Jsonl, input);
    }

    #[test]
    fn any_json_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            "\\{\"c[0-4]\": ?(\"[^\"\\\\\n\r]{0,8}\"|[0-9]{1,4}|null|true|\\[\\]|\\{\\})\\}",
            "[{}\\[\\]\":,a-z0-9 ]{0,16}",
        ],
        0..12,
    )) {
        let input = lines.join("\n").into_bytes();
        let records = check_all(SourceFormat::Jsonl, input);
        let nonblank = lines.iter().filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(records.len(), nonblank, "one record per non-blank line");
    }

    /// Every delimited record, however its fields are quoted, is read as one record at the
    /// line where it starts, and ends valid, or invalid with a reason and that line.
    #[test]
    fn every_delimited_record_is_mapped_or_invalid_at_its_line(
        rows in proptest::collection::vec((row(), any::<bool>()), 0..12),
        crlf in any::<bool>(),
    ) {
        let newline: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut input = HEADER.trim_end().as_bytes().to_vec();
        input.extend_from_slice(newline);
        let mut expected = Vec::new();
        let mut line = 2u64;
        for (fields, quote) in &rows {
            let start = input.len();
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    input.push(b',');
                }
                write_field(&mut input, field, *quote);
            }
            let spans = input[start..].iter().filter(|&&b| b == b'\n').count() as u64;
            input.extend_from_slice(newline);
            expected.push((line, fields.len()));
            line += spans + 1;
        }
        let records = check_all(SourceFormat::Csv, input.clone());
        prop_assert_eq!(records.len(), rows.len(), "one record per row");
        for ((_, line, status, code), (expected_line, width)) in records.iter().zip(&expected) {
            prop_assert_eq!(line, expected_line);
            prop_assert_ne!(code.as_deref(), Some("unclosed_quote"));
            if *width != 5 {
                prop_assert_eq!(*status, Status::Invalid);
            }
        }
        // A quote opened in a new last row and never closed: that row is one record, an
        // unclosed quote at its line, and nothing before it changes.
        input.extend_from_slice(b"k,\"open");
        input.extend_from_slice(newline);
        input.extend_from_slice(b"more,rows");
        let with_quote = check_all(SourceFormat::Csv, input);
        prop_assert_eq!(with_quote.len(), rows.len() + 1);
        let last = &with_quote[rows.len()];
        prop_assert_eq!(last.1, line);
        prop_assert_eq!(last.3.as_deref(), Some("unclosed_quote"));
        prop_assert_eq!(&with_quote[..rows.len()], &records[..]);
    }
}
