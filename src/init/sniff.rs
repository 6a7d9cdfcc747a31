//! What an export's first bytes say about it: encoding, delimiter, header and sample rows.
//! Pure: bytes in, a [`Sample`] or the reason it cannot be read out.

use std::fmt;

use serde_json::{Map, Value};

/// The delimiters tried, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The first records of a CSV export, as read with the delimiter that fits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Whether the file starts with a UTF-8 byte order mark.
    pub bom: bool,
    /// The field delimiter.
    pub delimiter: u8,
    /// The header's column names (trimmed), in order.
    pub header: Vec<String>,
    /// The sampled records, each as long as the header (short ones padded with empty cells).
    pub rows: Vec<Vec<String>>,
}

/// Why a sample cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SniffError {
    /// A UTF-16 byte order mark (or the NUL bytes of UTF-16 text).
    Utf16,
    /// Bytes that are not UTF-8 (a Latin-1 or Windows-1252 export).
    NotUtf8,
    /// Nothing, or no header line.
    Empty,
}

impl fmt::Display for SniffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SniffError::Utf16 => {
                "the file is UTF-16 (Excel's \"Unicode text\"): save it as \"CSV UTF-8\", or \
                 convert it with `iconv -f UTF-16 -t UTF-8`"
            }
            SniffError::NotUtf8 => {
                "the file is not UTF-8 (a Latin-1 or Windows-1252 export?): save it as \
                 \"CSV UTF-8\", or convert it with `iconv -f WINDOWS-1252 -t UTF-8`"
            }
            SniffError::Empty => "the file has no header line",
        })
    }
}

/// Reads at most `max_rows` records of `bytes` (the start of a file, possibly cut in the
/// middle of a record: the last, incomplete line is dropped when `truncated`).
pub fn sniff(bytes: &[u8], truncated: bool, max_rows: usize) -> Result<Sample, SniffError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(SniffError::Utf16);
    }
    let bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
    let mut body = if bom { &bytes[3..] } else { bytes };
    if truncated && let Some(end) = body.iter().rposition(|&b| b == b'\n') {
        body = &body[..=end];
    }
    if body.iter().take(512).filter(|&&b| b == 0).count() > 2 {
        return Err(SniffError::Utf16);
    }
    let text = std::str::from_utf8(body).map_err(|_| SniffError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(SniffError::Empty);
    }
    let delimiter = DELIMITERS
        .iter()
        .copied()
        .max_by_key(|&d| (score(text, d), std::cmp::Reverse(rank(d))))
        .unwrap_or(b',');
    let mut records = read(text, delimiter, max_rows + 1).into_iter();
    let header: Vec<String> = records
        .next()
        .ok_or(SniffError::Empty)?
        .into_iter()
        .map(|name| name.trim().to_owned())
        .collect();
    let rows = records
        .map(|mut row| {
            row.resize(header.len(), String::new());
            row
        })
        .collect();
    Ok(Sample {
        bom,
        delimiter,
        header,
        rows,
    })
}

/// Reads at most `max_rows` JSON Lines objects: the "header" is every dotted path to a value
/// (`address.city`), in the order first seen (an object's keys in name order); a list gives
/// its first item (the sampled
/// values only feed counts). A line that is not an object is passed over.
pub fn sniff_jsonl(bytes: &[u8], truncated: bool, max_rows: usize) -> Result<Sample, SniffError> {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(SniffError::Utf16);
    }
    let mut body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    if truncated && let Some(end) = body.iter().rposition(|&b| b == b'\n') {
        body = &body[..=end];
    }
    let text = std::str::from_utf8(body).map_err(|_| SniffError::NotUtf8)?;
    let objects: Vec<Map<String, Value>> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| match value {
            Value::Object(object) => Some(object),
            _ => None,
        })
        .take(max_rows)
        .collect();
    let mut header: Vec<String> = Vec::new();
    let mut flat: Vec<Vec<(String, String)>> = Vec::new();
    for object in &objects {
        let mut leaves = Vec::new();
        flatten("", object, &mut leaves);
        for (path, _) in &leaves {
            if !header.contains(path) {
                header.push(path.clone());
            }
        }
        flat.push(leaves);
    }
    if header.is_empty() {
        return Err(SniffError::Empty);
    }
    let rows = flat
        .into_iter()
        .map(|leaves| {
            header
                .iter()
                .map(|h| {
                    leaves
                        .iter()
                        .find(|(p, _)| p == h)
                        .map_or_else(String::new, |(_, v)| v.clone())
                })
                .collect()
        })
        .collect();
    Ok(Sample {
        bom: bytes.starts_with(&[0xEF, 0xBB, 0xBF]),
        delimiter: b',',
        header,
        rows,
    })
}

/// The dotted paths of an object's values, each with its text (a list: its first item).
fn flatten(prefix: &str, object: &Map<String, Value>, out: &mut Vec<(String, String)>) {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let value = match value {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            other => other,
        };
        match value {
            Value::Object(inner) => flatten(&path, inner, out),
            Value::String(text) => out.push((path, text.clone())),
            Value::Null => out.push((path, String::new())),
            other => out.push((path, other.to_string())),
        }
    }
}

fn rank(delimiter: u8) -> usize {
    DELIMITERS.iter().position(|&d| d == delimiter).unwrap_or(0)
}

/// How well a delimiter fits: the header must split into several columns; then the more
/// of the first records have exactly the header's width, and the more columns, the better.
fn score(text: &str, delimiter: u8) -> (usize, usize) {
    let records = read(text, delimiter, 50);
    let Some(width) = records.first().map(Vec::len).filter(|&w| w > 1) else {
        return (0, 0);
    };
    let fitting = records[1..].iter().filter(|r| r.len() == width).count();
    (fitting + 1, width)
}

fn read(text: &str, delimiter: u8, max: usize) -> Vec<Vec<String>> {
    ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .take(max)
        .filter_map(Result::ok)
        .filter(|r| !(r.len() == 1 && r[0].trim().is_empty()))
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_bom_and_header_are_found() {
        let sample = sniff(
            "\u{feff}Id;Name;City\r\n1;\"Lopez; Ana\";Paris\r\n2;Bob;\r\n".as_bytes(),
            false,
            10,
        )
        .unwrap();
        assert!(sample.bom);
        assert_eq!(sample.delimiter, b';');
        assert_eq!(sample.header, ["Id", "Name", "City"]);
        assert_eq!(sample.rows[0], ["1", "Lopez; Ana", "Paris"]);
        assert_eq!(sample.rows.len(), 2);

        let tabs = sniff(b"a\tb\tc\n1\t2\t3\n", false, 10).unwrap();
        assert_eq!(tabs.delimiter, b'\t');
        let header_only = sniff(b"First Name,Last Name,Email\n", false, 10).unwrap();
        assert_eq!(header_only.delimiter, b',');
        assert!(header_only.rows.is_empty());
    }

    #[test]
    fn a_cut_sample_drops_its_last_line_and_keeps_to_the_row_limit() {
        let sample = sniff(b"a,b\n1,2\n3,4\n5,", true, 10).unwrap();
        assert_eq!(sample.rows, [["1", "2"], ["3", "4"]]);
        let sample = sniff(b"a,b\n1,2\n3,4\n5,6\n", false, 2).unwrap();
        assert_eq!(sample.rows.len(), 2);
    }

    #[test]
    fn json_lines_give_their_dotted_paths_as_the_header() {
        let sample = sniff_jsonl(
            b"{\"id\":\"C1\",\"name\":{\"first\":\"Ana\"},\"emails\":[\"a@x.io\"],\"vip\":true}\n\
              not json\n{\"id\":\"C2\",\"address\":{\"city\":null}}\n",
            false,
            10,
        )
        .unwrap();
        assert_eq!(
            sample.header,
            ["emails", "id", "name.first", "vip", "address.city"]
        );
        assert_eq!(sample.rows[0], ["a@x.io", "C1", "Ana", "true", ""]);
        assert_eq!(sample.rows[1], ["", "C2", "", "", ""]);
        assert_eq!(sniff_jsonl(b"[1]\n", false, 10), Err(SniffError::Empty));
    }

    #[test]
    fn utf16_and_latin1_are_refused_with_a_way_out() {
        assert_eq!(
            sniff(&[0xFF, 0xFE, b'a', 0], false, 1),
            Err(SniffError::Utf16)
        );
        assert_eq!(
            sniff(b"a\0,\0b\0\n\0", false, 1),
            Err(SniffError::Utf16),
            "UTF-16 without a BOM"
        );
        assert_eq!(
            sniff(b"name\nJos\xe9\n", false, 1),
            Err(SniffError::NotUtf8)
        );
        assert!(SniffError::NotUtf8.to_string().contains("CSV UTF-8"));
        assert_eq!(sniff(b"\n\n", false, 1), Err(SniffError::Empty));
    }
}
