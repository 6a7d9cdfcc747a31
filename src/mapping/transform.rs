//! The value transforms a `[fields]` entry can chain: pure functions from text to text.
//!
//! Each transform takes one value and returns the new value or a [`Failure`] that says which
//! rule the value broke, without repeating the value itself (values are personal data and stay
//! out of ledgers and logs). Empty values pass through every transform untouched except
//! `default`, so that the `empty` policy sees them afterwards.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use chrono::format::{Item, Parsed, StrftimeItems};
use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// One step of a field's transform chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Strip leading and trailing whitespace.
    Trim,
    /// Lowercase (Unicode-aware).
    Lowercase,
    /// Uppercase (Unicode-aware).
    Uppercase,
    /// Trim, and turn every run of whitespace into one space.
    CollapseWhitespace,
    /// Unicode Normalization Form C (Connect rejects decomposed names).
    Nfc,
    /// Parse a phone number and write it as E.164, checking it is a valid number.
    E164(PhoneRegion),
    /// Check that the value is an e-mail address (`local@domain.tld`).
    Email,
    /// Reformat a date-only value; never goes through a time zone.
    Date(DateFormat),
    /// Replace values found in the table; `fallback` (the `"*"` key) replaces the rest.
    Map {
        /// Exact source value → target value.
        table: HashMap<String, String>,
        /// Replacement for values not in the table; `None` leaves them as they are.
        fallback: Option<String>,
    },
    /// Use this value when the source value is empty.
    Default(String),
    /// Split one value into several (multi-valued Genesys attributes).
    Split(String),
}

/// A value a transform rejected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short machine-readable rule name, such as `e164` or `date`.
    pub rule: &'static str,
    /// What was wrong, without the value.
    pub message: String,
}

impl Failure {
    fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

impl Transform {
    /// Applies the transform to one (non-split) value.
    pub fn apply(&self, value: String) -> Result<String, Failure> {
        if value.is_empty() {
            return Ok(match self {
                Self::Default(default) => default.clone(),
                _ => value,
            });
        }
        match self {
            Self::Trim => Ok(trim(value)),
            Self::Lowercase => Ok(lowercase(value)),
            Self::Uppercase => Ok(uppercase(value)),
            Self::CollapseWhitespace => Ok(collapse_whitespace(value)),
            Self::Nfc => Ok(nfc(value)),
            Self::E164(region) => region.to_e164(&value),
            Self::Email => check_email(&value).map(|()| value),
            Self::Date(format) => format.reformat(&value),
            Self::Map { table, fallback } => Ok(match (table.get(&value), fallback) {
                (Some(mapped), _) => mapped.clone(),
                (None, Some(fallback)) => fallback.clone(),
                (None, None) => value,
            }),
            Self::Default(_) => Ok(value),
            Self::Split(_) => Ok(value),
        }
    }
}

fn trim(value: String) -> String {
    let trimmed = value.trim();
    if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    }
}

fn lowercase(mut value: String) -> String {
    if value.is_ascii() {
        value.make_ascii_lowercase();
        value
    } else {
        value.to_lowercase()
    }
}

fn uppercase(mut value: String) -> String {
    if value.is_ascii() {
        value.make_ascii_uppercase();
        value
    } else {
        value.to_uppercase()
    }
}

fn collapse_whitespace(value: String) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn nfc(value: String) -> String {
    match is_nfc_quick(value.chars()) {
        IsNormalized::Yes => value,
        _ => value.nfc().collect(),
    }
}

/// The region used for phone numbers written without a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(Region);

impl PhoneRegion {
    /// Parses an ISO 3166 region code such as `US` or `GB`.
    pub fn parse(code: &str) -> Option<Self> {
        code.parse::<Region>().ok().map(Self)
    }

    /// The region code.
    pub fn code(&self) -> String {
        self.0.to_string()
    }

    /// Parses `value` as a phone number of this region (or any, with a `+` prefix), checks
    /// that it is a valid number, and writes it as E.164.
    pub fn to_e164(&self, value: &str) -> Result<String, Failure> {
        let number = PhoneNumber::parse(value, Some(self.0)).map_err(|_| {
            Failure::new(
                "e164",
                format!("not a phone number (default region {})", self.code()),
            )
        })?;
        if !number.is_valid() {
            return Err(Failure::new(
                "e164",
                format!("not a valid phone number (default region {})", self.code()),
            ));
        }
        Ok(number.format_as(PhoneNumberFormat::E164).into_owned())
    }
}

/// A date reformatting, such as `%m/%d/%Y` → `%Y-%m-%d`.
///
/// `%Y` reads exactly four digits (chrono's own parser takes one to four, which would turn
/// `07/12/80` into the year 80); a two-digit year is `%y`, with chrono's pivot: `00`–`69` are
/// 20xx, `70`–`99` are 19xx. `from` may carry a time of day (`%H:%M`, `%p`, ...) that is read
/// and dropped: the date is the one written, never shifted through a time zone; `to` is
/// date-only, and neither takes a zone or a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    /// chrono `strftime` pattern the source uses.
    pub from: String,
    /// chrono `strftime` pattern to write.
    pub to: String,
    /// `from`, parsed once.
    items: Vec<Item<'static>>,
}

impl DateFormat {
    /// Checks both patterns: they must parse, `from` may hold a time of day but no zone, and
    /// `to` is date-only, so a date can never shift through a time zone.
    pub fn new(from: &str, to: &str) -> Result<Self, String> {
        check_date_pattern(from, Reads::DateAndTime)
            .map_err(|why| format!("date `from` pattern: {why}"))?;
        check_date_pattern(to, Reads::DateOnly)
            .map_err(|why| format!("date `to` pattern: {why}"))?;
        let items = StrftimeItems::new(from).parse_to_owned().map_err(|_| {
            format!("date `from` pattern: `{from}` is not a valid strftime pattern")
        })?;
        Ok(Self {
            from: from.to_owned(),
            to: to.to_owned(),
            items,
        })
    }

    fn reformat(&self, value: &str) -> Result<String, Failure> {
        let date = parse_date(value, &self.items).map_err(|why| {
            Failure::new(
                "date",
                format!("not a date in the format {} ({why})", self.from),
            )
        })?;
        let mut out = String::with_capacity(self.to.len() + 4);
        // The pattern was checked in `new` to hold only date items, so formatting cannot fail.
        write!(out, "{}", date.format(&self.to))
            .map_err(|_| Failure::new("date", format!("cannot write the date as {}", self.to)))?;
        Ok(out)
    }
}

/// Parses `value` item by item with chrono, except that `%Y` (and `%G`) take exactly four
/// digits; a time of day is read (and range-checked) but only the date is kept. The error
/// says what was wrong without the value.
fn parse_date(value: &str, items: &[Item<'static>]) -> Result<NaiveDate, String> {
    use chrono::format::Numeric::{IsoYear, Year};
    let mut parsed = Parsed::new();
    let mut rest = value;
    for item in items {
        rest = match item {
            Item::Numeric(which @ (Year | IsoYear), _) => {
                let s = rest.trim_start();
                let four = s
                    .as_bytes()
                    .get(..4)
                    .filter(|d| d.iter().all(u8::is_ascii_digit));
                let Some(digits) = four else {
                    return Err(
                        "the year is not four digits: `%Y` takes exactly four; write `%y` for \
                         two-digit years"
                            .to_owned(),
                    );
                };
                let year = digits
                    .iter()
                    .fold(0i64, |year, d| year * 10 + i64::from(d - b'0'));
                match which {
                    Year => parsed.set_year(year),
                    _ => parsed.set_isoyear(year),
                }
                .map_err(|e| e.to_string())?;
                &s[4..]
            }
            item => chrono::format::parse_and_remainder(&mut parsed, rest, std::iter::once(item))
                .map_err(|e| e.to_string())?,
        };
    }
    if !rest.is_empty() {
        return Err("trailing input".to_owned());
    }
    parsed.to_naive_date().map_err(|e| e.to_string())
}

/// What a date pattern may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// A date only (what is written).
    DateOnly,
    /// A date with a time of day, which is dropped (what is read).
    DateAndTime,
}

fn check_date_pattern(pattern: &str, reads: Reads) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    let mut has_time = false;
    for item in StrftimeItems::new(pattern) {
        match item {
            Item::Error => return Err(format!("`{pattern}` is not a valid strftime pattern")),
            Item::Numeric(chrono::format::Numeric::Timestamp, _) => {
                return Err(format!(
                    "`{pattern}` has a timestamp; dates are read and written as dates"
                ));
            }
            Item::Numeric(n, _) if is_time_numeric(&n) => has_time = true,
            Item::Fixed(f) if is_time_of_day_fixed(&f) => has_time = true,
            Item::Fixed(f) if !is_date_fixed(&f) => {
                return Err(format!(
                    "`{pattern}` has a time zone; dates are read and written without one"
                ));
            }
            _ => {}
        }
    }
    if has_time && reads == Reads::DateOnly {
        return Err(format!(
            "`{pattern}` has a time of day; dates are written date-only"
        ));
    }
    let probe = NaiveDate::from_ymd_opt(2001, 2, 3)
        .and_then(|d| d.and_hms_opt(4, 5, 6))
        .expect("a valid date and time");
    let mut out = String::new();
    write!(out, "{}", probe.format(pattern))
        .map_err(|_| format!("`{pattern}` cannot format a date"))
}

fn is_time_numeric(n: &chrono::format::Numeric) -> bool {
    use chrono::format::Numeric::*;
    matches!(n, Hour | Hour12 | Minute | Second | Nanosecond)
}

fn is_time_of_day_fixed(f: &chrono::format::Fixed) -> bool {
    use chrono::format::Fixed::*;
    matches!(
        f,
        LowerAmPm | UpperAmPm | Nanosecond | Nanosecond3 | Nanosecond6 | Nanosecond9
    )
}

fn is_date_fixed(f: &chrono::format::Fixed) -> bool {
    use chrono::format::Fixed::*;
    matches!(
        f,
        ShortMonthName | LongMonthName | ShortWeekdayName | LongWeekdayName
    )
}

/// A practical e-mail check: one `@`, a non-empty local part of allowed characters, and a
/// dotted domain whose last label is 2–63 letters (Connect's documented pattern).
pub fn check_email(value: &str) -> Result<(), Failure> {
    let fail = |why: &str| {
        Err(Failure::new(
            "email",
            format!("not an e-mail address: {why}"),
        ))
    };
    let Some((local, domain)) = value.split_once('@') else {
        return fail("no @");
    };
    if local.is_empty()
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c))
    {
        return fail(
            "the part before @ is empty or has characters other than letters, digits, ._%+-",
        );
    }
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return fail("the domain has no dot");
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
    {
        return fail("the domain has characters other than letters, digits, . and -");
    }
    if !(2..=63).contains(&tld.len()) || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
        return fail("the top-level domain is not 2-63 letters");
    }
    if value.len() > 265 {
        return fail("longer than 265 characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &Transform, v: &str) -> Result<String, Failure> {
        t.apply(v.to_owned())
    }

    #[test]
    fn trim_and_case() {
        assert_eq!(run(&Transform::Trim, "  Ana  ").unwrap(), "Ana");
        assert_eq!(run(&Transform::Trim, "Ana").unwrap(), "Ana");
        assert_eq!(
            run(&Transform::Lowercase, "Ana.Lopez@Example.COM").unwrap(),
            "ana.lopez@example.com"
        );
        assert_eq!(run(&Transform::Lowercase, "ÉLODIE").unwrap(), "élodie");
        assert_eq!(run(&Transform::Uppercase, "straße").unwrap(), "STRASSE");
        assert_eq!(run(&Transform::Uppercase, "us").unwrap(), "US");
    }

    #[test]
    fn collapse_whitespace_joins_runs() {
        assert_eq!(
            run(&Transform::CollapseWhitespace, " 21  Jump\t\nStreet ").unwrap(),
            "21 Jump Street"
        );
    }

    #[test]
    fn nfc_composes_decomposed_accents() {
        let decomposed = "Jose\u{301}";
        let out = run(&Transform::Nfc, decomposed).unwrap();
        assert_eq!(out, "Jos\u{e9}");
        assert_eq!(run(&Transform::Nfc, "José").unwrap(), "José");
    }

    #[test]
    fn e164_normalizes_us_formats() {
        let us = Transform::E164(PhoneRegion::parse("US").unwrap());
        for input in [
            "(206) 555-0147",
            "206-555-0147",
            "+1 206.555.0147",
            "2065550147",
        ] {
            assert_eq!(run(&us, input).unwrap(), "+12065550147", "{input}");
        }
        let gb = Transform::E164(PhoneRegion::parse("GB").unwrap());
        assert_eq!(run(&gb, "020 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn e164_rejects_non_numbers_without_echoing_them() {
        let us = Transform::E164(PhoneRegion::parse("US").unwrap());
        let err = run(&us, "555-01").unwrap_err();
        assert_eq!(err.rule, "e164");
        assert!(!err.message.contains("555"), "{}", err.message);
        assert!(run(&us, "n/a").is_err());
        assert!(PhoneRegion::parse("ZZZ").is_none());
    }

    #[test]
    fn date_reformats_without_time_zones() {
        let t = Transform::Date(DateFormat::new("%m/%d/%Y", "%Y-%m-%d").unwrap());
        assert_eq!(run(&t, "07/12/1980").unwrap(), "1980-07-12");
        // The last day of a year stays the last day: there is no zone to shift through.
        assert_eq!(run(&t, "12/31/1999").unwrap(), "1999-12-31");
        assert_eq!(run(&t, "02/30/1985").unwrap_err().rule, "date");
        assert!(run(&t, "1985-02-03").is_err());
    }

    #[test]
    fn date_patterns_are_checked_up_front() {
        assert!(DateFormat::new("%m/%d/%Y", "%Y-%m-%dT%H:%M").is_err());
        assert!(DateFormat::new("%Q", "%Y").is_err());
        assert!(DateFormat::new("", "%Y").is_err());
        assert!(DateFormat::new("%d %B %Y", "%Y-%m-%d").is_ok());
    }

    #[test]
    fn a_four_digit_year_pattern_refuses_shorter_years() {
        // Issue 20, item 1: chrono alone reads `80` as the year 80 and `1.2.3` as 0003-02-01.
        let t = Transform::Date(DateFormat::new("%m/%d/%Y", "%Y-%m-%d").unwrap());
        let err = run(&t, "07/12/80").unwrap_err();
        assert_eq!(err.rule, "date");
        assert!(err.message.contains("four digits"), "{}", err.message);
        assert!(!err.message.contains("80"), "{}", err.message);
        let dotted = Transform::Date(DateFormat::new("%d.%m.%Y", "%Y-%m-%d").unwrap());
        assert_eq!(run(&dotted, "1.2.3").unwrap_err().rule, "date");
        assert_eq!(run(&dotted, "1.2.2003").unwrap(), "2003-02-01");
        assert!(run(&t, "07/12/19800").is_err());
        assert!(run(&t, "07/12/+1980").is_err());
        let packed = Transform::Date(DateFormat::new("%Y%m%d", "%Y-%m-%d").unwrap());
        assert_eq!(run(&packed, "19800712").unwrap(), "1980-07-12");
    }

    #[test]
    fn a_two_digit_year_pattern_pivots_at_70() {
        let t = Transform::Date(DateFormat::new("%m/%d/%y", "%Y-%m-%d").unwrap());
        assert_eq!(run(&t, "07/12/80").unwrap(), "1980-07-12");
        assert_eq!(run(&t, "07/12/69").unwrap(), "2069-07-12");
        assert_eq!(run(&t, "07/12/00").unwrap(), "2000-07-12");
    }

    #[test]
    fn a_time_of_day_in_from_is_dropped_without_a_zone_shift() {
        // Issue 19: `from` may hold a time of day when `to` is date-only.
        let t = Transform::Date(DateFormat::new("%Y-%m-%d %H:%M", "%Y-%m-%d").unwrap());
        assert_eq!(run(&t, "2024-03-05 14:22").unwrap(), "2024-03-05");
        assert_eq!(run(&t, "2024-12-31 23:59").unwrap(), "2024-12-31");
        assert_eq!(run(&t, "2024-03-05 25:22").unwrap_err().rule, "date");
        assert_eq!(run(&t, "2024-03-05").unwrap_err().rule, "date");
        let pm = Transform::Date(DateFormat::new("%m/%d/%Y %I:%M %p", "%d.%m.%Y").unwrap());
        assert_eq!(run(&pm, "03/05/2024 11:59 PM").unwrap(), "05.03.2024");
        // Zones and timestamps stay refused on both sides.
        assert!(DateFormat::new("%Y-%m-%dT%H:%M%z", "%Y-%m-%d").is_err());
        assert!(DateFormat::new("%s", "%Y-%m-%d").is_err());
    }

    #[test]
    fn email_check() {
        assert!(check_email("ana.lopez@example.com").is_ok());
        assert!(check_email("a+tag@sub.example.co").is_ok());
        for bad in [
            "ana.example.com",
            "@example.com",
            "ana@example",
            "ana@exa mple.com",
            "ana@example.c0m",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn map_with_and_without_fallback() {
        let table: HashMap<String, String> =
            [("M".into(), "MALE".into()), ("F".into(), "FEMALE".into())].into();
        let plain = Transform::Map {
            table: table.clone(),
            fallback: None,
        };
        assert_eq!(run(&plain, "M").unwrap(), "MALE");
        assert_eq!(run(&plain, "X").unwrap(), "X");
        let caught = Transform::Map {
            table,
            fallback: Some("UNSPECIFIED".into()),
        };
        assert_eq!(run(&caught, "X").unwrap(), "UNSPECIFIED");
    }

    #[test]
    fn empty_values_only_meet_default() {
        let us = Transform::E164(PhoneRegion::parse("US").unwrap());
        assert_eq!(run(&us, "").unwrap(), "");
        assert_eq!(run(&Transform::Email, "").unwrap(), "");
        assert_eq!(run(&Transform::Default("none".into()), "").unwrap(), "none");
        assert_eq!(run(&Transform::Default("none".into()), "x").unwrap(), "x");
    }
}
