//! Before a single record: load the config, open the input and bind the config's columns
//! to the input's. Every error here exits 2.

use std::io::Cursor;
use std::path::Path;

use super::{ConfigFrom, Failure, InputFrom};
use crate::config::{self, Config};
use crate::mapping::Plan;
use crate::pipeline::Context;
use crate::source::{Source, SourceFormat};

/// Loads the config, opens the input and binds the columns.
pub(super) fn open(config: &ConfigFrom, input: &InputFrom) -> Result<(Context, Source), Failure> {
    let config_name = config.name();
    let config = match config {
        ConfigFrom::File(path) => config::load(path),
        ConfigFrom::Bundled {
            name,
            text,
            url,
            region,
        } => config::compile::compile(Path::new(name), text).map(|mut config| {
            config.target.point_at(url, region);
            config
        }),
    }
    .map_err(|e| Failure::usage(e.to_string()))?;
    let source = match input {
        InputFrom::Path(arg) => {
            let path = input_path(arg.as_deref(), &config, &config_name)?;
            Source::open(&path, config.source.format, config.source.delimiter)
        }
        InputFrom::Bundled { name, bytes } => Source::from_reader(
            (*name).to_owned(),
            SourceFormat::Csv,
            Box::new(Cursor::new(*bytes)),
            config.source.delimiter,
        ),
    }
    .map_err(|e| Failure::usage(format!("profilesync: {e}")))?;
    bind(config, source, &config_name).map_err(Failure::usage)
}

/// Binds the config's columns to the input's: a column the input lacks, or one whose name
/// the header repeats, is a config error.
fn bind(config: Config, source: Source, config_name: &str) -> Result<(Context, Source), String> {
    let mut used = Vec::new();
    let plan = Plan::bind(
        &config.source.key,
        config.matching.id_column(),
        config.matching.search(),
        &config.rules,
        |name| {
            used.push(name.to_owned());
            source.resolve(name)
        },
    )
    .map_err(|missing| missing_columns(config_name, &source, &missing))?;
    let repeated = repeated_columns(&source.header, &used);
    if !repeated.is_empty() {
        return Err(format!(
            "{config_name}: the header of `{}` repeats a column the config uses, so which one \
             is meant is unclear (rename one of them): {}",
            source.name,
            repeated.join("; ")
        ));
    }
    let cx = Context {
        config,
        plan,
        input: source.name.clone(),
    };
    Ok((cx, source))
}

/// Each name in `used` that `header` holds more than once, with the 1-based positions of
/// its columns: `` `email` is columns 2 and 5 ``. Names are the config's, never a value.
fn repeated_columns(header: &[String], used: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for name in used {
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let positions: Vec<String> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| *h == name)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if let [first @ .., last] = positions.as_slice()
            && !first.is_empty()
        {
            out.push(format!(
                "`{name}` is columns {} and {last}",
                first.join(", ")
            ));
        }
    }
    out
}

/// The error for columns the config names but the input lacks. The input's header names
/// are listed only when the first row reads as a header: some configured column is there,
/// and every name looks like a column name. Otherwise the first row is probably data (a
/// file without a header row) and its values are personal data, so none is printed.
fn missing_columns(config_name: &str, source: &Source, missing: &[String]) -> String {
    let mut message = format!(
        "{config_name}: the config names columns that `{}` does not have: {}",
        source.name,
        missing.join(", ")
    );
    let found_some =
        source.header.len() > missing.len() && source.header.iter().any(|h| !missing.contains(h));
    let names = source.header.iter().all(|h| looks_like_column_name(h));
    if found_some && names {
        message.push_str(&format!("; its columns are: {}", source.header.join(", ")));
    } else if found_some {
        message.push_str(
            "; its other columns are not listed, as some of its header cells do not look like \
             column names (they may be personal data)",
        );
    } else if source.format == SourceFormat::Csv {
        message.push_str(&format!(
            "; its first row ({} fields) does not look like a header (it looks like data): \
             is the header row missing? Its values are not shown, as they may be personal data",
            source.header.len()
        ));
    }
    message
}

/// Whether a CSV header cell reads as a column name rather than a value: short, no `@`,
/// starting with a letter or `_`, and made of letters, digits, spaces and `_-./#:()&'`.
fn looks_like_column_name(name: &str) -> bool {
    let Some(first) = name.chars().next() else {
        return true;
    };
    name.chars().count() <= 64
        && (first.is_alphabetic() || first == '_')
        && name.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    ' ' | '_' | '-' | '.' | '/' | '#' | ':' | '(' | ')' | '&' | '\''
                )
        })
}

/// The input: the command line's, else `[source] path` relative to the working directory.
fn input_path(arg: Option<&str>, config: &Config, config_name: &str) -> Result<String, Failure> {
    arg.map(str::to_owned)
        .or_else(|| config.source.path.clone())
        .ok_or_else(|| {
            Failure::usage(format!(
                "{config_name}: no input: give INPUT on the command line or set [source] path"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_header_names_are_found_only_where_used() {
        let header: Vec<String> = ["id", "email", "phone", "email", "x", "x", "email"]
            .map(str::to_owned)
            .into();
        let used = ["id", "email", "email", "phone"].map(str::to_owned);
        assert_eq!(
            repeated_columns(&header, &used),
            vec!["`email` is columns 2, 4 and 7"]
        );
        assert!(repeated_columns(&header, &["id".to_owned()]).is_empty());
    }

    #[test]
    fn header_cells_that_look_like_values_are_told_apart() {
        for name in [
            "crm_id",
            "First Name",
            "E-mail (home)",
            "Q&A",
            "x.y/z",
            "Straße",
            "",
        ] {
            assert!(looks_like_column_name(name), "{name:?}");
        }
        for value in [
            "Lena.ONeil0@Example.COM",
            "(253) 724-7794",
            "+12537247794",
            "07/12/1980",
            "12 Main St, Apt 4",
            "db5b\u{2026}; drop",
            "a\r\nb",
        ] {
            assert!(!looks_like_column_name(value), "{value:?}");
        }
    }
}
