//! From a [`Sample`] to a commented config: each column matched to a target field by its
//! normalised name, a synonym or a near name, confirmed or vetoed by the sampled values, with
//! the transforms the values call for; and the config's text. Pure: no I/O.
//!
//! The values decide only through counts (`38 of 40 values are e-mail addresses`) and
//! patterns; no value of the file is ever written into the config (it is personal data).

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::NaiveDate;

use super::sniff::Sample;
use crate::mapping::PhoneRegion;
use crate::mapping::transform::check_email;
use crate::schema::TargetKind;

/// What the values of a field must look like, and the transforms they call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A person's name: trimmed (and NFC for Connect, which refuses decomposed names).
    Name,
    /// An e-mail address: trimmed, lower-cased, checked.
    Email,
    /// A phone number: written as E.164 for the sampled numbers' region.
    Phone,
    /// A date: reformatted to `%Y-%m-%d` from the one pattern every value fits.
    Date,
    /// Any text: trimmed.
    Text,
}

/// A target field and the names exports give it, normalised (see [`normalise`]).
struct Field {
    name: &'static str,
    kind: Kind,
    synonyms: &'static [&'static str],
}

const fn field(name: &'static str, kind: Kind, synonyms: &'static [&'static str]) -> Field {
    Field {
        name,
        kind,
        synonyms,
    }
}

/// Customer Profiles: Salesforce (API names and labels), HubSpot, Dynamics, Zoho, Zendesk,
/// BambooHR and Workday names, normalised.
const PROFILE_FIELDS: &[Field] = &[
    field(
        "FirstName",
        Kind::Name,
        &[
            "first",
            "givenname",
            "fname",
            "forename",
            "legalfirstname",
            "contactfirstname",
        ],
    ),
    field(
        "MiddleName",
        Kind::Name,
        &["middle", "middleinitial", "legalmiddlename"],
    ),
    field(
        "LastName",
        Kind::Name,
        &[
            "last",
            "surname",
            "familyname",
            "lname",
            "legallastname",
            "contactlastname",
        ],
    ),
    field(
        "EmailAddress",
        Kind::Email,
        &[
            "email",
            "mail",
            "emailaddress1",
            "primaryemail",
            "contactemail",
            "email1",
            "emailid",
        ],
    ),
    field(
        "PersonalEmailAddress",
        Kind::Email,
        &[
            "personalemail",
            "homeemail",
            "primaryhomeemail",
            "emailaddress2",
            "privateemail",
        ],
    ),
    field(
        "BusinessEmailAddress",
        Kind::Email,
        &[
            "workemail",
            "businessemail",
            "primaryworkemail",
            "officeemail",
        ],
    ),
    field(
        "PhoneNumber",
        Kind::Phone,
        &[
            "phone",
            "telephone",
            "telephone1",
            "tel",
            "primaryphone",
            "contactphone",
            "phone1",
        ],
    ),
    field(
        "MobilePhoneNumber",
        Kind::Phone,
        &[
            "mobile",
            "mobilephone",
            "cell",
            "cellphone",
            "mobilenumber",
            "cellnumber",
        ],
    ),
    field(
        "HomePhoneNumber",
        Kind::Phone,
        &["homephone", "primaryhomephone", "telephone2", "phone2"],
    ),
    field(
        "BusinessPhoneNumber",
        Kind::Phone,
        &[
            "workphone",
            "businessphone",
            "officephone",
            "primaryworkphone",
            "telephone3",
        ],
    ),
    field(
        "BirthDate",
        Kind::Date,
        &["dateofbirth", "dob", "birthday", "birthdate"],
    ),
    field("GenderString", Kind::Text, &["gender", "sex", "gendercode"]),
    field(
        "AccountNumber",
        Kind::Text,
        &["accountno", "customernumber", "customerno", "membernumber"],
    ),
    field(
        "BusinessName",
        Kind::Text,
        &[
            "company",
            "companyname",
            "accountname",
            "organization",
            "organisation",
            "employer",
        ],
    ),
    field(
        "Address.Address1",
        Kind::Text,
        &[
            "street",
            "address",
            "address1",
            "streetaddress",
            "mailingstreet",
            "addressline1",
            "address1line1",
            "billingstreet",
        ],
    ),
    field(
        "Address.Address2",
        Kind::Text,
        &["address2", "addressline2", "street2", "address1line2"],
    ),
    field(
        "Address.City",
        Kind::Text,
        &["city", "mailingcity", "town", "address1city", "billingcity"],
    ),
    field(
        "Address.State",
        Kind::Text,
        &[
            "state",
            "province",
            "stateregion",
            "mailingstate",
            "address1stateorprovince",
            "stateprovince",
            "billingstate",
            "county",
        ],
    ),
    field(
        "Address.PostalCode",
        Kind::Text,
        &[
            "zip",
            "zipcode",
            "postalcode",
            "postcode",
            "mailingpostalcode",
            "mailingzip",
            "mailingzipcode",
            "address1postalcode",
            "billingpostalcode",
        ],
    ),
    field(
        "Address.Country",
        Kind::Text,
        &[
            "country",
            "countryregion",
            "mailingcountry",
            "address1country",
            "countrycode",
            "billingcountry",
        ],
    ),
];

/// Connect users' `IdentityInfo`: HR (BambooHR, Workday) and CRM names.
const CONNECT_FIELDS: &[Field] = &[
    field(
        "FirstName",
        Kind::Name,
        &["first", "givenname", "fname", "legalfirstname"],
    ),
    field(
        "LastName",
        Kind::Name,
        &["last", "surname", "familyname", "lname", "legallastname"],
    ),
    field(
        "Email",
        Kind::Email,
        &[
            "email",
            "workemail",
            "emailaddress",
            "primaryworkemail",
            "businessemail",
            "mail",
        ],
    ),
    field(
        "SecondaryEmail",
        Kind::Email,
        &[
            "personalemail",
            "homeemail",
            "primaryhomeemail",
            "alternateemail",
            "privateemail",
        ],
    ),
    field(
        "Mobile",
        Kind::Phone,
        &[
            "mobile",
            "mobilephone",
            "cell",
            "cellphone",
            "mobilenumber",
            "phone",
            "workphone",
            "phonenumber",
        ],
    ),
];

/// Genesys UCS: attribute names are free; these are the usual ones.
const GENESYS_FIELDS: &[Field] = &[
    field("FirstName", Kind::Name, &["first", "givenname", "fname"]),
    field(
        "LastName",
        Kind::Name,
        &["last", "surname", "familyname", "lname"],
    ),
    field(
        "EmailAddress",
        Kind::Email,
        &["email", "emails", "mail", "primaryemail"],
    ),
    field(
        "PhoneNumber",
        Kind::Phone,
        &[
            "phone",
            "phones",
            "telephone",
            "mobile",
            "mobilephone",
            "cell",
        ],
    ),
    field("DOB", Kind::Date, &["dateofbirth", "birthdate", "birthday"]),
];

/// Columns that name a record, normalised, best first.
const KEY_NAMES: &[&str] = &[
    "id",
    "recordid",
    "contactid",
    "customerid",
    "employeeid",
    "workerid",
    "userid",
    "externalid",
    "crmid",
    "employeenumber",
    "employeeno",
    "memberid",
    "accountid",
];

/// Columns holding a person's preferred first name, normalised.
const PREFERRED_NAMES: &[&str] = &["preferredname", "preferredfirstname", "nickname", "knownas"];

/// Columns holding a Connect Username, normalised.
const USERNAME_NAMES: &[&str] = &["username", "login", "loginname", "userlogin", "logonname"];

/// The date patterns tried, and the one written.
const DATE_PATTERNS: &[&str] = &[
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%m-%d-%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    "%Y%m%d",
    "%m/%d/%y",
    "%d/%m/%y",
];
const ISO_DATE: &str = "%Y-%m-%d";

/// The regions tried for phone numbers written without a country code.
const REGIONS: &[&str] = &[
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "AU", "IN", "BR", "MX", "JP",
];

/// A column name reduced for comparison: lower case, letters and digits only, `#` read as
/// "id" (`Employee #`), so `First Name`, `first_name`, `firstName` and `FIRST-NAME` agree.
pub fn normalise(name: &str) -> String {
    name.replace('#', "id")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// One `[fields]` line of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldLine {
    /// The target field.
    pub field: String,
    /// The columns it reads (several: the first that is not blank).
    pub columns: Vec<String>,
    /// Transforms, as TOML.
    pub transforms: Vec<String>,
    /// Why it was chosen: the name match and the values' evidence.
    pub why: String,
    /// Written commented out, when the values vetoed it or need a person to decide.
    pub commented: bool,
}

/// How records find their target record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchLine {
    /// `id = column`.
    Id(String, String),
    /// `search_key = key`, `search_column = column`.
    Search(String, String, String),
}

/// The suggested config, before it is written as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// The `[source] key` column and why.
    pub key: (String, String),
    /// `[match]`.
    pub matching: MatchLine,
    /// `[source] phone_region` and why, when the sample has phone numbers.
    pub phone_region: Option<(String, String)>,
    /// `[fields]`.
    pub fields: Vec<FieldLine>,
    /// Columns no field was matched to.
    pub unmatched: Vec<String>,
}

/// Matches the sample's columns to the target's fields.
pub fn suggest(kind: TargetKind, sample: &Sample) -> Suggestion {
    let fields = match kind {
        TargetKind::CustomerProfiles => PROFILE_FIELDS,
        TargetKind::ConnectUser => CONNECT_FIELDS,
        TargetKind::GenesysUcs => GENESYS_FIELDS,
    };
    let columns: Vec<(usize, &str)> = sample
        .header
        .iter()
        .enumerate()
        .filter(|(_, name)| !name.is_empty())
        .map(|(i, name)| (i, name.as_str()))
        .collect();
    let values = |index: usize| -> Vec<&str> {
        sample
            .rows
            .iter()
            .map(|row| row[index].trim())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let key = choose_key(sample, &columns);
    let phones: Vec<&str> = columns
        .iter()
        .filter(|(_, name)| by_name(fields, name).is_some_and(|(f, _)| f.kind == Kind::Phone))
        .flat_map(|(i, _)| values(*i))
        .collect();
    let region = phone_region(&phones);

    let mut used: HashSet<&str> = HashSet::new();
    let mut taken: HashSet<usize> = HashSet::new();
    let mut lines = Vec::new();
    for &(index, name) in &columns {
        let Some((target, how)) = by_name(fields, name) else {
            continue;
        };
        if used.contains(target.name) {
            continue;
        }
        let (transforms, evidence, commented) =
            evidence(kind, target.kind, &values(index), region.as_ref());
        used.insert(target.name);
        taken.insert(index);
        lines.push(FieldLine {
            field: target.name.to_owned(),
            columns: vec![name.to_owned()],
            transforms,
            why: format!("{how}{evidence}"),
            commented,
        });
    }
    // A column whose name says nothing but whose every sampled value is an e-mail address
    // (or a phone number written in full) fills the first such field still free.
    for &(index, name) in &columns {
        if taken.contains(&index) || PREFERRED_NAMES.contains(&normalise(name).as_str()) {
            continue;
        }
        let values = values(index);
        let Some((looks, what)) = kind_of_values(&values, region.as_ref()) else {
            continue;
        };
        let Some(target) = fields
            .iter()
            .find(|f| f.kind == looks && !used.contains(f.name))
        else {
            continue;
        };
        let (transforms, _, _) = evidence(kind, looks, &values, region.as_ref());
        used.insert(target.name);
        taken.insert(index);
        lines.push(FieldLine {
            field: target.name.to_owned(),
            columns: vec![name.to_owned()],
            transforms,
            why: format!(
                "by its values: all {} sampled values are {what}",
                values.len()
            ),
            commented: false,
        });
    }
    // A preferred name, where there is one, comes before the first name.
    if let Some(&(index, preferred)) = columns
        .iter()
        .find(|(_, name)| PREFERRED_NAMES.contains(&normalise(name).as_str()))
        && let Some(first) = lines.iter_mut().find(|l| l.field == "FirstName")
    {
        first.columns.insert(0, preferred.to_owned());
        first.why = format!("{}, preferred name first when it is not blank", first.why);
        taken.insert(index);
    }
    let matching = choose_match(kind, sample, &columns, &key.0, &lines);
    let matched_by: Option<&str> = match &matching {
        MatchLine::Id(column, _) => Some(column),
        MatchLine::Search(..) => None,
    };
    let unmatched = columns
        .iter()
        .filter(|(i, name)| !taken.contains(i) && *name != key.0 && Some(*name) != matched_by)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    Suggestion {
        key,
        matching,
        phone_region: region,
        fields: lines,
        unmatched,
    }
}

/// The field a column's name points to, and how: the field's own name, a synonym, or a near
/// name (Jaro-Winkler 0.93 or more over names of 5 letters or more).
fn by_name(fields: &'static [Field], column: &str) -> Option<(&'static Field, String)> {
    let found = by_whole_name(fields, column);
    match column.rsplit_once('.') {
        // A JSON path (`contact.address.city`): its whole name, else its last part.
        Some((_, last)) if found.is_none() && !last.is_empty() => by_whole_name(fields, last),
        _ => found,
    }
}

fn by_whole_name(fields: &'static [Field], column: &str) -> Option<(&'static Field, String)> {
    let norm = normalise(column);
    if let Some(f) = fields.iter().find(|f| normalise(f.name) == norm) {
        return Some((f, "header match".to_owned()));
    }
    if let Some(f) = fields.iter().find(|f| f.synonyms.contains(&norm.as_str())) {
        return Some((f, format!("synonym of {}", f.name)));
    }
    if norm.len() < 5 {
        return None;
    }
    let norm = norm.as_str();
    fields
        .iter()
        .flat_map(|f| {
            std::iter::once(normalise(f.name))
                .chain(f.synonyms.iter().map(|s| (*s).to_owned()))
                .filter(|s| s.len() >= 5)
                .map(move |s| (strsim::jaro_winkler(norm, &s), f))
        })
        .filter(|(score, _)| *score >= 0.93)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(score, f)| (f, format!("near name of {} ({score:.2})", f.name)))
}

/// What every one of (at least three) sampled values is, when that alone says which field
/// the column fills: e-mail addresses, or phone numbers written in full (ten digits or more,
/// valid in the sample's region), which a postal code or an id is not.
fn kind_of_values(
    values: &[&str],
    region: Option<&(String, String)>,
) -> Option<(Kind, &'static str)> {
    if values.len() < 3 {
        return None;
    }
    if values
        .iter()
        .all(|v| check_email(&v.to_lowercase()).is_ok())
    {
        return Some((Kind::Email, "e-mail addresses"));
    }
    let region = PhoneRegion::parse(region.map_or("US", |(r, _)| r.as_str()))?;
    let full = |v: &&str| v.chars().filter(char::is_ascii_digit).count() >= 10;
    if values.iter().all(|v| full(v) && region.to_e164(v).is_ok()) {
        return Some((Kind::Phone, "phone numbers"));
    }
    None
}

/// The transforms a field's values call for, what the values say (`; 38 of 40 values are
/// e-mail addresses`), and whether the line is better left commented out.
fn evidence(
    target: TargetKind,
    kind: Kind,
    values: &[&str],
    region: Option<&(String, String)>,
) -> (Vec<String>, String, bool) {
    let quoted = |items: &[&str]| items.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>();
    let total = values.len();
    let share = |valid: usize, what: &str| format!("; {valid} of {total} sampled values {what}");
    match kind {
        Kind::Name if target == TargetKind::ConnectUser => {
            (quoted(&["trim", "nfc"]), String::new(), false)
        }
        Kind::Name | Kind::Text => (quoted(&["trim"]), String::new(), false),
        Kind::Email => {
            let valid = values
                .iter()
                .filter(|v| check_email(&v.to_lowercase()).is_ok())
                .count();
            let why = if total == 0 {
                String::new()
            } else {
                share(valid, "are e-mail addresses")
            };
            (
                quoted(&["trim", "lowercase", "email"]),
                why,
                total > 0 && valid * 2 < total,
            )
        }
        Kind::Phone => {
            let region = region.map_or("US", |(r, _)| r.as_str());
            let parser = PhoneRegion::parse(region).expect("a region of REGIONS");
            let valid = values.iter().filter(|v| parser.to_e164(v).is_ok()).count();
            let why = if total == 0 {
                String::new()
            } else {
                share(valid, "are phone numbers")
            };
            (quoted(&["e164"]), why, total > 0 && valid * 2 < total)
        }
        Kind::Date => date_evidence(values),
    }
}

/// The date pattern the sampled values fit: the one every value fits (none when it is
/// already `%Y-%m-%d`), else the one at least 90% fit (the rest, broken dates, will be
/// `invalid`, which the comment says); several equally good (day and month both 12 or less)
/// → commented out, saying so; none → commented out.
fn date_evidence(values: &[&str]) -> (Vec<String>, String, bool) {
    if values.is_empty() {
        return (
            Vec::new(),
            "; no sampled values: add a date transform if the dates are not YYYY-MM-DD".into(),
            false,
        );
    }
    let n = values.len();
    let fitting = |p: &str| {
        values
            .iter()
            .filter(|v| NaiveDate::parse_from_str(v, p).is_ok())
            .count()
    };
    let counts: Vec<(&str, usize)> = DATE_PATTERNS.iter().map(|p| (*p, fitting(p))).collect();
    let best = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let fits: Vec<&str> = counts
        .iter()
        .filter(|(_, c)| *c == best)
        .map(|(p, _)| *p)
        .collect();
    let share = if best == n {
        format!("all {n} sampled values")
    } else {
        format!("{best} of {n} sampled values (the others will be invalid)")
    };
    let transform = |p: &str| {
        vec![format!(
            "{{ date = {{ from = \"{p}\", to = \"{ISO_DATE}\" }} }}"
        )]
    };
    match fits.as_slice() {
        _ if best * 10 < n * 9 => (
            Vec::new(),
            format!("; no date pattern fits 90% of the {n} sampled values: add a date transform"),
            true,
        ),
        [ISO_DATE] => (Vec::new(), format!("; {share} are YYYY-MM-DD"), false),
        [one] => (transform(one), format!("; {share} fit {one}"), false),
        several => (
            transform(several[0]),
            format!(
                "; day/month order is ambiguous: {share} fit {}: pick one",
                several.join(" and ")
            ),
            true,
        ),
    }
}

/// The region under which most sampled phone numbers are valid (numbers with `+` count for
/// all), and why; none without phone numbers.
fn phone_region(phones: &[&str]) -> Option<(String, String)> {
    if phones.is_empty() {
        return None;
    }
    let (region, valid) = REGIONS
        .iter()
        .map(|code| {
            let region = PhoneRegion::parse(code).expect("a region code");
            let valid = phones.iter().filter(|p| region.to_e164(p).is_ok()).count();
            (*code, valid)
        })
        .max_by_key(|(code, valid)| {
            (
                *valid,
                std::cmp::Reverse(REGIONS.iter().position(|r| r == code)),
            )
        })?;
    Some((
        region.to_owned(),
        format!(
            "{valid} of {} sampled phone numbers are valid {region} numbers",
            phones.len()
        ),
    ))
}

/// `[source] key`: a column that names records (by its name, best first), unique and never
/// empty in the sample; else the first such column; else the first column.
fn choose_key(sample: &Sample, columns: &[(usize, &str)]) -> (String, String) {
    let n = sample.rows.len();
    // Unique among the values there are, and empty in at most 1 record in 20 (a broken
    // row or two of a real export); such records are `invalid` on `check`.
    let unique = |index: usize| {
        let mut seen = HashSet::new();
        let mut empty = 0;
        sample.rows.iter().all(|row| {
            let value = row[index].trim();
            empty += usize::from(value.is_empty());
            value.is_empty() || seen.insert(value)
        }) && empty * 20 <= n
    };
    let rank = |name: &str| {
        let norm = normalise(name);
        KEY_NAMES
            .iter()
            .position(|k| *k == norm)
            .or_else(|| norm.ends_with("id").then_some(KEY_NAMES.len()))
    };
    let mut named: Vec<(usize, usize, &str)> = columns
        .iter()
        .filter_map(|&(i, name)| rank(name).map(|r| (r, i, name)))
        .collect();
    named.sort();
    let evidence = if n == 0 {
        "named like an id; no sampled records to confirm it is unique".to_owned()
    } else {
        format!("unique, and empty in at most 1 in 20, of the {n} sampled records")
    };
    if let Some(&(_, _, name)) = named.iter().find(|(_, i, _)| unique(*i)) {
        let why = if n == 0 {
            evidence
        } else {
            format!("named like an id, {evidence}")
        };
        return (name.to_owned(), why);
    }
    if n > 0
        && let Some(&(_, name)) = columns.iter().find(|(i, _)| unique(*i))
    {
        return (name.to_owned(), evidence);
    }
    let name = columns.first().map_or("", |(_, name)| name);
    (
        name.to_owned(),
        "no column is unique in the sample: pick the one that names a record".to_owned(),
    )
}

/// `[match]` for the target.
fn choose_match(
    kind: TargetKind,
    sample: &Sample,
    columns: &[(usize, &str)],
    key: &str,
    lines: &[FieldLine],
) -> MatchLine {
    let all = |index: usize, ok: fn(&str) -> bool| {
        let values: Vec<&str> = sample.rows.iter().map(|r| r[index].trim()).collect();
        !values.is_empty() && values.iter().all(|v| ok(v))
    };
    let named = |names: &[&str]| {
        columns
            .iter()
            .find(|(_, name)| names.contains(&normalise(name).as_str()))
            .copied()
    };
    let column_of = |field: &str| {
        lines
            .iter()
            .find(|l| l.field == field && !l.commented && l.columns.len() == 1)
            .map(|l| l.columns[0].clone())
    };
    match kind {
        TargetKind::CustomerProfiles => {
            if let Some((_, name)) = columns
                .iter()
                .find(|(i, name)| normalise(name).contains("profileid") || all(*i, is_profile_id))
            {
                return MatchLine::Id((*name).to_owned(), "holds ProfileIds".into());
            }
            for (field, search_key) in [
                ("EmailAddress", "_email"),
                ("PhoneNumber", "_phone"),
                ("MobilePhoneNumber", "_phone"),
            ] {
                if let Some(column) = column_of(field) {
                    return MatchLine::Search(
                        search_key.into(),
                        column,
                        format!("no ProfileId column: search profiles by {field}'s column"),
                    );
                }
            }
            MatchLine::Search(
                "_account".into(),
                key.to_owned(),
                "no ProfileId, e-mail or phone column: search by the record's key as AccountNumber"
                    .into(),
            )
        }
        TargetKind::ConnectUser => {
            if let Some((_, name)) = columns.iter().find(|(i, name)| {
                normalise(name) == "userid" && (sample.rows.is_empty() || all(*i, is_uuid))
            }) {
                return MatchLine::Id((*name).to_owned(), "holds Connect UserIds".into());
            }
            if let Some((_, name)) = named(USERNAME_NAMES) {
                return MatchLine::Search(
                    "Username".into(),
                    name.to_owned(),
                    "the login name column".into(),
                );
            }
            let column = column_of("Email").unwrap_or_else(|| key.to_owned());
            MatchLine::Search(
                "Username".into(),
                column,
                "no Username column: Connect usernames are often the e-mail address; if yours are \
                 the part before @, derive it (see the README, [match])"
                    .into(),
            )
        }
        TargetKind::GenesysUcs => {
            let column = named(&["customerid"]).map_or(key, |(_, name)| name);
            MatchLine::Id(
                column.to_owned(),
                "the UCS customer_id, at most 16 characters".into(),
            )
        }
    }
}

fn is_profile_id(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_uuid(value: &str) -> bool {
    value.len() == 36
        && value.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A `[fields]` key: bare when it can be, else quoted (dotted names always are).
fn toml_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        name.to_owned()
    } else {
        toml_string(name)
    }
}

/// The config's text: the suggestion's lines, each with why it was chosen, around the
/// target's own settings (`target_lines`: the skeleton's placeholders).
pub fn render(
    kind: TargetKind,
    input: &str,
    sample: &Sample,
    suggestion: &Suggestion,
    target_lines: &str,
) -> String {
    let mut out = String::new();
    let records = sample.rows.len();
    let _ = writeln!(
        out,
        "# profilesync config for {kind}, written by `profilesync init` from the header of {} and \
         its first {records} records.\n\
         # No value of the file is written here. Each line says why it was chosen: review them,\n\
         # set [target], then run `profilesync check --config THIS_FILE`.\n",
        input.replace('\n', " ")
    );
    let _ = writeln!(out, "[source]\npath = {}", toml_string(input));
    let _ = writeln!(
        out,
        "key = {}   # {}",
        toml_string(&suggestion.key.0),
        suggestion.key.1
    );
    let lower = input.to_lowercase();
    let named = [
        ".csv",
        ".csv.gz",
        ".jsonl",
        ".jsonl.gz",
        ".ndjson",
        ".ndjson.gz",
    ];
    if !named.iter().any(|end| lower.ends_with(end)) {
        out.push_str("format = \"csv\"   # the file's name does not say so\n");
    }
    if sample.delimiter != b',' {
        let _ = writeln!(
            out,
            "delimiter = {}   # the delimiter that splits the header and the records alike",
            toml_string(&(sample.delimiter as char).to_string())
        );
    }
    if let Some((region, why)) = &suggestion.phone_region {
        let _ = writeln!(out, "phone_region = {}   # {why}", toml_string(region));
    }
    let _ = writeln!(out, "\n[target]\nkind = \"{kind}\"\n{target_lines}");
    out.push_str("[match]\n");
    match &suggestion.matching {
        MatchLine::Id(column, why) => {
            let _ = writeln!(out, "id = {}   # {why}", toml_string(column));
        }
        MatchLine::Search(key, column, why) => {
            let _ = writeln!(out, "# {why}");
            let _ = writeln!(
                out,
                "search_key = {}\nsearch_column = {}",
                toml_string(key),
                toml_string(column)
            );
        }
    }
    out.push_str("# when_missing = \"skip\"   # skip | fail");
    if kind != TargetKind::ConnectUser {
        out.push_str(" | create");
    }
    out.push_str("\n\n[fields]\n");
    for line in &suggestion.fields {
        let from = match line.columns.as_slice() {
            [one] => toml_string(one),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|c| toml_string(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let value = if line.transforms.is_empty() {
            format!("{{ from = {from} }}")
        } else {
            format!(
                "{{ from = {from}, transform = [{}] }}",
                line.transforms.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "{}{} = {value}   # {}",
            if line.commented { "# " } else { "" },
            toml_key(&line.field),
            line.why
        );
    }
    if !suggestion.unmatched.is_empty() {
        match kind {
            TargetKind::CustomerProfiles => {
                out.push_str("\n# Columns matched to no field; uncomment a line to keep one as a profile attribute:\n");
                for column in &suggestion.unmatched {
                    let _ = writeln!(
                        out,
                        "# {} = {}",
                        toml_key(&format!("Attributes.{column}")),
                        toml_string(column)
                    );
                }
            }
            TargetKind::GenesysUcs => {
                out.push_str("\n# Columns matched to no field; uncomment a line to send one as an attribute:\n");
                for column in &suggestion.unmatched {
                    let _ = writeln!(
                        out,
                        "# {} = {}",
                        toml_key(&attribute_name(column)),
                        toml_string(column)
                    );
                }
            }
            TargetKind::ConnectUser => {
                out.push_str("\n# Columns matched to no field (Connect users take FirstName, LastName, Email,\n# SecondaryEmail and Mobile):\n");
                for column in &suggestion.unmatched {
                    let _ = writeln!(out, "#   {}", toml_string(column));
                }
            }
        }
    }
    out
}

/// A Genesys attribute name for a column: its words, capitalised and joined.
fn attribute_name(column: &str) -> String {
    let name: String = column
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    if name.is_empty() {
        "Attribute".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_alike() {
        for name in [
            "First Name",
            "first_name",
            "firstName",
            "FIRST-NAME",
            " First.Name ",
        ] {
            assert_eq!(normalise(name), "firstname", "{name}");
        }
        assert_eq!(normalise("Employee #"), "employeeid");
    }

    #[test]
    fn a_column_finds_its_field_by_name_synonym_or_near_name() {
        let find = |name: &str| by_name(PROFILE_FIELDS, name).map(|(f, how)| (f.name, how));
        assert_eq!(
            find("first_name").unwrap(),
            ("FirstName", "header match".into())
        );
        assert_eq!(find("MailingPostalCode").unwrap().0, "Address.PostalCode");
        assert_eq!(find("Mobile Phone Number").unwrap().0, "MobilePhoneNumber");
        assert!(
            find("Emial Address")
                .unwrap()
                .1
                .starts_with("near name of EmailAddress")
        );
        assert!(find("Favourite Colour").is_none());
        assert!(find("Tier").is_none());
    }

    #[test]
    fn a_column_named_for_nothing_is_matched_by_its_values() {
        let sample = Sample {
            bom: false,
            delimiter: b',',
            header: vec!["Ref".into(), "Contact".into(), "Reach".into(), "Zip".into()],
            rows: (0..3)
                .map(|i| {
                    vec![
                        format!("R{i}"),
                        format!("person{i}@example.com"),
                        format!("(206) 555-01{i}7"),
                        format!("9810{i}"),
                    ]
                })
                .collect(),
        };
        let suggestion = suggest(TargetKind::ConnectUser, &sample);
        let field = |name: &str| suggestion.fields.iter().find(|l| l.field == name);
        assert_eq!(field("Email").unwrap().columns, ["Contact"]);
        assert!(
            field("Email")
                .unwrap()
                .why
                .contains("all 3 sampled values are e-mail addresses")
        );
        assert_eq!(field("Mobile").unwrap().columns, ["Reach"]);
        assert!(
            suggestion.unmatched.contains(&"Zip".to_owned()),
            "a postal code is no phone"
        );
    }

    #[test]
    fn dates_take_the_one_pattern_every_value_fits() {
        let (t, why, off) = date_evidence(&["07/12/1980", "12/31/1999"]);
        assert_eq!(t, ["{ date = { from = \"%m/%d/%Y\", to = \"%Y-%m-%d\" } }"]);
        assert!(why.contains("fit %m/%d/%Y") && !off);
        let (t, _, off) = date_evidence(&["31/12/1999", "07/12/1980"]);
        assert!(t[0].contains("%d/%m/%Y") && !off);
        let (_, why, off) = date_evidence(&["01/02/1980", "03/04/1990"]);
        assert!(why.contains("ambiguous") && off);
        let (t, _, off) = date_evidence(&["1980-07-12"]);
        assert!(t.is_empty() && !off);
        let (_, why, off) = date_evidence(&["soon"]);
        assert!(why.contains("no date pattern") && off);
        let mut mostly = vec!["07/31/1980"; 19];
        mostly.push("02/30/1985");
        let (t, why, off) = date_evidence(&mostly);
        assert!(t[0].contains("%m/%d/%Y") && !off, "{why}");
        assert!(
            why.contains("19 of 20 sampled values (the others will be invalid)"),
            "{why}"
        );
    }

    #[test]
    fn the_phone_region_is_where_most_numbers_are_valid() {
        let (region, why) =
            phone_region(&["020 7946 0958", "+44 20 7946 0000", "0161 496 0000"]).unwrap();
        assert_eq!(region, "GB", "{why}");
        assert_eq!(
            phone_region(&["(206) 555-0147", "206-234-0147"]).unwrap().0,
            "US"
        );
        assert!(phone_region(&[]).is_none());
    }
}
