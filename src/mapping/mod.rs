//! Mapping: one source row in, the target fields it sets out. Pure: no I/O, no clocks.
//!
//! The config compiles into a list of [`FieldRule`]s (target field, input, transforms, empty
//! policy). Once the input's columns are known, [`Plan::bind`] resolves every column name to
//! a [`ColumnRef`] (a CSV index or a JSON path), so that mapping a row is only lookups and
//! transforms. [`map_row`] collects every problem of a row instead of stopping at the first,
//! so the ledger can report them together.

pub mod transform;

use std::borrow::Cow;

use serde::Deserialize;

use crate::schema::TargetField;
use crate::source::{Cell, ColumnRef, Row};
pub use transform::{DateFormat, Failure, PhoneRegion, Transform};

/// What an empty source value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    /// Leave the target's current value alone.
    #[default]
    Keep,
    /// Remove the target's current value.
    Clear,
}

/// One `[fields]` entry, compiled.
#[derive(Debug, Clone)]
pub struct FieldRule {
    /// The target field it sets.
    pub target: TargetField,
    /// The target field's name, as in the config and the ledger.
    pub name: String,
    /// Where the value comes from.
    pub input: Input,
    /// Transforms, applied in order.
    pub transforms: Vec<Transform>,
    /// What an empty result means.
    pub empty: EmptyPolicy,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A source column (CSV header name, or JSONL dotted path).
    Column(String),
    /// A constant.
    Constant(String),
    /// A template such as `{first_name} {last_name}`.
    Template(Vec<TemplatePart>),
}

/// How a record's `[match]` search value is made: an input and transforms, like a field
/// mapping, so that a record searches by what it writes.
///
/// `search_column = "email"` borrows the transforms of the field that column fills among
/// those the search key indexes (`EmailAddress` with `trim`/`lowercase` for `_email`) and
/// also searches the raw value when it differs (a profile another tool wrote with capitals
/// is still found); a table (`{ from, transform }`) derives a value of its own and searches
/// only that.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRule {
    /// Where the value comes from.
    pub input: Input,
    /// Transforms, applied in order.
    pub transforms: Vec<Transform>,
    /// Whether the value as read (trimmed) is searched too when the transforms change it.
    pub also_raw: bool,
}

impl SearchRule {
    /// A search by a column's value as read (trimmed), with no transforms.
    pub fn column(name: &str) -> SearchRule {
        SearchRule {
            input: Input::Column(name.to_owned()),
            transforms: Vec::new(),
            also_raw: false,
        }
    }

    /// The column it reads, when it reads one column.
    pub fn column_name(&self) -> Option<&str> {
        match &self.input {
            Input::Column(c) => Some(c),
            _ => None,
        }
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// The value of a source column.
    Column(String),
}

/// Parses a template: `{column}` inserts a column, `{{` and `}}` are literal braces.
pub fn parse_template(template: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut column = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    column.push(c);
                }
                if !closed || column.is_empty() || column.contains('{') {
                    return Err(format!(
                        "template `{template}` has an empty or unclosed {{}}"
                    ));
                }
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Column(column));
            }
            '}' => {
                return Err(format!(
                    "template `{template}` has a lone }}; write }}}} for a brace"
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Column(_))) {
        return Err(format!(
            "template `{template}` uses no column; use `value` for a constant"
        ));
    }
    Ok(parts)
}

/// A value to send for one target field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Set the field to this value.
    Set(String),
    /// Remove the field's current value (`""` in UpdateProfile).
    Clear,
    /// Several values (multi-valued Genesys attributes).
    Many(Vec<String>),
}

/// Something wrong with one field of one record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The target field (or `[source] key`, `[match] id`, ...).
    pub field: String,
    /// The source column, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Short rule name: `max_length`, `e164`, `enum`, `required`, ...
    pub rule: &'static str,
    /// What was wrong, in words; never the value itself.
    pub message: String,
}

impl Problem {
    /// A problem with a target field.
    pub fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            column: None,
            rule,
            message: message.into(),
        }
    }

    /// Names the source column the value came from.
    pub fn in_column(mut self, column: Option<&str>) -> Self {
        self.column = column.map(str::to_owned);
        self
    }
}

/// A record after mapping: what to send, and what was wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// The `[source] key` value.
    pub key: String,
    /// The `[match] id` value, when matching by id.
    pub target_id: Option<String>,
    /// The `[match] search_column` value, when matching by search: what the record writes
    /// (after the transforms of the field it fills), which names the record.
    pub search_value: Option<String>,
    /// The value as read, also searched when it differs from `search_value` (see
    /// [`SearchRule::also_raw`]).
    pub search_raw: Option<String>,
    /// `(index into the rules, value)`, in rule order; fields kept as they are are absent.
    pub fields: Vec<(usize, Value)>,
    /// Every problem found; the record is invalid when this is not empty.
    pub problems: Vec<Problem>,
    /// With `when_missing = "create"`: what stops the record from being *created* (a create
    /// takes no empty members and may require some), found before the network. The record
    /// can still update an existing target record.
    pub create_problems: Vec<Problem>,
}

/// Where `[source] key` and `[match]` read from, resolved against the input's columns.
#[derive(Debug, Clone)]
pub struct Plan {
    key: (String, ColumnRef),
    id: Option<(String, ColumnRef)>,
    search: Option<(SearchRule, BoundInput)>,
    inputs: Vec<BoundInput>,
}

#[derive(Debug, Clone)]
enum BoundInput {
    Column(String, ColumnRef),
    Constant(String),
    Template(Vec<BoundPart>),
}

#[derive(Debug, Clone)]
enum BoundPart {
    Literal(String),
    Column(ColumnRef),
}

impl Plan {
    /// Resolves every column the config names; returns all the unknown ones at once.
    pub fn bind(
        key: &str,
        id: Option<&str>,
        search: Option<&SearchRule>,
        rules: &[FieldRule],
        mut resolve: impl FnMut(&str) -> Option<ColumnRef>,
    ) -> Result<Plan, Vec<String>> {
        let mut missing = Vec::new();
        let mut lookup = |name: &str| {
            resolve(name).unwrap_or_else(|| {
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_owned());
                }
                ColumnRef::Index(usize::MAX)
            })
        };
        let key = (key.to_owned(), lookup(key));
        let id = id.map(|c| (c.to_owned(), lookup(c)));
        let search = search.map(|rule| (rule.clone(), bind_input(&rule.input, &mut lookup)));
        let inputs = rules
            .iter()
            .map(|rule| bind_input(&rule.input, &mut lookup))
            .collect();
        if missing.is_empty() {
            Ok(Plan {
                key,
                id,
                search,
                inputs,
            })
        } else {
            Err(missing)
        }
    }

    /// The row's `[source] key` value, trimmed, when it has one.
    pub fn key(&self, row: &dyn Row) -> Option<String> {
        match single_text(row.cell(&self.key.1)) {
            Ok(Some(key)) if !key.trim().is_empty() => Some(key.trim().to_owned()),
            _ => None,
        }
    }
}

/// Resolves the columns one input reads.
fn bind_input(input: &Input, lookup: &mut impl FnMut(&str) -> ColumnRef) -> BoundInput {
    match input {
        Input::Column(c) => BoundInput::Column(c.clone(), lookup(c)),
        Input::Constant(v) => BoundInput::Constant(v.clone()),
        Input::Template(parts) => BoundInput::Template(
            parts
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(l) => BoundPart::Literal(l.clone()),
                    TemplatePart::Column(c) => BoundPart::Column(lookup(c)),
                })
                .collect(),
        ),
    }
}

/// Maps one row: reads the key and match columns, runs each rule's transforms, and applies
/// the empty policy. `multi_valued` says whether the target takes several values per field.
pub fn map_row(plan: &Plan, rules: &[FieldRule], row: &dyn Row, multi_valued: bool) -> Mapped {
    let mut mapped = Mapped::default();
    mapped.key = match plan.key(row) {
        Some(key) => key,
        None => {
            let why = match row.cell(&plan.key.1) {
                Cell::Many(_) | Cell::Invalid(_) => {
                    ("type", "the record's key is not a single value")
                }
                _ => ("required", "the record's key is empty"),
            };
            mapped
                .problems
                .push(Problem::new("[source] key", why.0, why.1).in_column(Some(&plan.key.0)));
            String::new()
        }
    };
    mapped.target_id = match_value(plan.id.as_ref(), "[match] id", row, &mut mapped.problems);
    if let Some((rule, input)) = &plan.search {
        match search_values(rule, input, row) {
            Ok((value, raw)) => {
                mapped.search_value = Some(value);
                mapped.search_raw = raw;
            }
            Err(problem) => mapped.problems.push(problem),
        }
    }

    for (index, (rule, input)) in rules.iter().zip(&plan.inputs).enumerate() {
        match map_field(rule, input, row, multi_valued) {
            Ok(Some(value)) => mapped.fields.push((index, value)),
            Ok(None) => {}
            Err(problem) => mapped.problems.push(problem),
        }
    }
    mapped
}

fn match_value(
    column: Option<&(String, ColumnRef)>,
    what: &str,
    row: &dyn Row,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let (name, col) = column?;
    match single_text(row.cell(col)) {
        Ok(Some(v)) if !v.trim().is_empty() => Some(v.trim().to_owned()),
        Ok(_) => {
            problems.push(Problem::new(what, "required", "is empty").in_column(Some(name)));
            None
        }
        Err(why) => {
            problems.push(Problem::new(what, "type", why).in_column(Some(name)));
            None
        }
    }
}

/// The record's search value (after the rule's transforms) and, when the rule says so and
/// it differs, the value as read (trimmed).
fn search_values(
    rule: &SearchRule,
    input: &BoundInput,
    row: &dyn Row,
) -> Result<(String, Option<String>), Problem> {
    const WHAT: &str = "[match] search_column";
    let column = rule.column_name();
    let problem = |name, message: String| Problem::new(WHAT, name, message).in_column(column);
    let read = match input {
        BoundInput::Constant(v) => Some(v.clone()),
        BoundInput::Column(_, col) => single_text(row.cell(col))
            .map_err(|why| problem("type", why))?
            .map(Cow::into_owned),
        BoundInput::Template(parts) => {
            match render(parts, row).map_err(|why| problem("type", why))? {
                Some(Work::One(text)) => Some(text),
                _ => None,
            }
        }
    };
    let read = read.map(|v| v.trim().to_owned()).unwrap_or_default();
    if read.is_empty() {
        return Err(problem("required", "is empty".to_owned()));
    }
    let value = match apply_all(&rule.transforms, Work::One(read.clone()))
        .map_err(|f| problem(f.rule, f.message))?
    {
        Work::One(v) if !v.trim().is_empty() => v.trim().to_owned(),
        Work::One(_) => {
            return Err(problem(
                "required",
                "is empty after its transforms".to_owned(),
            ));
        }
        Work::Many(_) => {
            return Err(problem(
                "single_value",
                "several values given, but a search takes one".to_owned(),
            ));
        }
    };
    let raw = (rule.also_raw && read != value).then_some(read);
    Ok((value, raw))
}

/// A working value inside a transform chain.
enum Work {
    One(String),
    Many(Vec<String>),
}

fn map_field(
    rule: &FieldRule,
    input: &BoundInput,
    row: &dyn Row,
    multi_valued: bool,
) -> Result<Option<Value>, Problem> {
    let column = match input {
        BoundInput::Column(name, _) => Some(name.as_str()),
        _ => None,
    };
    let problem = |rule_name, message: String| {
        Problem::new(rule.name.clone(), rule_name, message).in_column(column)
    };
    let raw = match input {
        BoundInput::Constant(v) => Some(Work::One(v.clone())),
        BoundInput::Column(_, col) => match row.cell(col) {
            Cell::Absent => None,
            Cell::Text(t) => Some(Work::One(t.into_owned())),
            Cell::Many(values) => Some(Work::Many(values)),
            Cell::Invalid(why) => return Err(problem("type", why.to_owned())),
        },
        BoundInput::Template(parts) => render(parts, row).map_err(|why| problem("type", why))?,
    };
    // An absent value (JSON null, missing member) keeps the current value, unless a
    // `default` transform supplies one.
    let work = match raw {
        Some(work) => work,
        None if rule
            .transforms
            .iter()
            .any(|t| matches!(t, Transform::Default(_))) =>
        {
            Work::One(String::new())
        }
        None => return Ok(None),
    };
    let work = apply_all(&rule.transforms, work).map_err(|f| problem(f.rule, f.message))?;
    match work {
        Work::One(v) if v.is_empty() => Ok(empty_value(rule.empty)),
        Work::One(v) => Ok(Some(Value::Set(v))),
        Work::Many(values) if values.is_empty() => Ok(empty_value(rule.empty)),
        Work::Many(_) if !multi_valued => Err(problem(
            "single_value",
            "several values given, but this target field takes one".to_owned(),
        )),
        Work::Many(values) => Ok(Some(Value::Many(values))),
    }
}

fn empty_value(policy: EmptyPolicy) -> Option<Value> {
    match policy {
        EmptyPolicy::Keep => None,
        EmptyPolicy::Clear => Some(Value::Clear),
    }
}

fn apply_all(transforms: &[Transform], mut work: Work) -> Result<Work, Failure> {
    for t in transforms {
        work = match (t, work) {
            (Transform::Split(sep), Work::One(v)) => {
                Work::Many(v.split(sep.as_str()).map(str::to_owned).collect())
            }
            (_, Work::One(v)) => Work::One(t.apply(v)?),
            (_, Work::Many(values)) => Work::Many(
                values
                    .into_iter()
                    .map(|v| t.apply(v))
                    .filter(|r| !matches!(r, Ok(v) if v.is_empty()))
                    .collect::<Result<_, _>>()?,
            ),
        };
    }
    Ok(match work {
        Work::Many(values) => Work::Many(values.into_iter().filter(|v| !v.is_empty()).collect()),
        one => one,
    })
}

/// Renders a template: absent when every column it reads is absent (so it keeps, like any
/// absent value), empty when they are all empty.
fn render(parts: &[BoundPart], row: &dyn Row) -> Result<Option<Work>, String> {
    let mut out = String::new();
    let (mut present, mut filled) = (false, false);
    for part in parts {
        match part {
            BoundPart::Literal(l) => out.push_str(l),
            BoundPart::Column(col) => {
                if let Some(text) = single_text(row.cell(col))? {
                    present = true;
                    filled |= !text.is_empty();
                    out.push_str(&text);
                }
            }
        }
    }
    Ok(match (present, filled) {
        (false, _) => None,
        (true, false) => Some(Work::One(String::new())),
        (true, true) => Some(Work::One(out)),
    })
}

fn single_text(cell: Cell<'_>) -> Result<Option<Cow<'_, str>>, String> {
    match cell {
        Cell::Absent => Ok(None),
        Cell::Text(t) => Ok(Some(t)),
        Cell::Many(_) => Err("a list where one value was expected".to_owned()),
        Cell::Invalid(why) => Err(why.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{TargetKind, resolve};
    use crate::source::{Cell, ColumnRef, Row};

    /// A row of named text cells; a `None` value is an absent cell.
    struct TestRow(Vec<(&'static str, Option<&'static str>)>);

    impl Row for TestRow {
        fn cell(&self, col: &ColumnRef) -> Cell<'_> {
            match col {
                ColumnRef::Index(i) => match self.0.get(*i) {
                    Some((_, Some(v))) => Cell::Text(Cow::Borrowed(v)),
                    _ => Cell::Absent,
                },
                ColumnRef::Path(_) => Cell::Absent,
            }
        }
    }

    impl TestRow {
        fn resolve(&self) -> impl Fn(&str) -> Option<ColumnRef> + '_ {
            |name| {
                self.0
                    .iter()
                    .position(|(n, _)| *n == name)
                    .map(ColumnRef::Index)
            }
        }
    }

    fn rule(
        field: &str,
        input: Input,
        transforms: Vec<Transform>,
        empty: EmptyPolicy,
    ) -> FieldRule {
        FieldRule {
            target: resolve(TargetKind::CustomerProfiles, field).unwrap(),
            name: field.to_owned(),
            input,
            transforms,
            empty,
        }
    }

    fn col(name: &str) -> Input {
        Input::Column(name.to_owned())
    }

    #[test]
    fn maps_columns_constants_and_templates() {
        let row = TestRow(vec![
            ("id", Some("C1")),
            ("first", Some(" Ana ")),
            ("last", Some("Lopez")),
        ]);
        let rules = vec![
            rule(
                "FirstName",
                col("first"),
                vec![Transform::Trim],
                EmptyPolicy::Keep,
            ),
            rule(
                "Attributes.Source",
                Input::Constant("crm".into()),
                vec![],
                EmptyPolicy::Keep,
            ),
            rule(
                "AdditionalInformation",
                Input::Template(parse_template("{first}/{last}").unwrap()),
                vec![Transform::CollapseWhitespace],
                EmptyPolicy::Keep,
            ),
        ];
        let plan = Plan::bind("id", None, None, &rules, row.resolve()).unwrap();
        let mapped = map_row(&plan, &rules, &row, false);
        assert_eq!(mapped.key, "C1");
        assert!(mapped.problems.is_empty());
        assert_eq!(
            mapped.fields,
            vec![
                (0, Value::Set("Ana".into())),
                (1, Value::Set("crm".into())),
                (2, Value::Set("Ana /Lopez".into())),
            ]
        );
    }

    #[test]
    fn empty_policy_keeps_or_clears() {
        let row = TestRow(vec![
            ("id", Some("C1")),
            ("city", Some("  ")),
            ("gone", None),
        ]);
        let rules = vec![
            rule(
                "Address.City",
                col("city"),
                vec![Transform::Trim],
                EmptyPolicy::Keep,
            ),
            rule(
                "Address.State",
                col("city"),
                vec![Transform::Trim],
                EmptyPolicy::Clear,
            ),
            rule("Address.County", col("gone"), vec![], EmptyPolicy::Clear),
            rule(
                "Address.Country",
                col("gone"),
                vec![Transform::Default("US".into())],
                EmptyPolicy::Keep,
            ),
        ];
        let plan = Plan::bind("id", None, None, &rules, row.resolve()).unwrap();
        let mapped = map_row(&plan, &rules, &row, false);
        // Absent values always keep; "" follows the policy; a default fills both.
        assert_eq!(
            mapped.fields,
            vec![(1, Value::Clear), (3, Value::Set("US".into()))]
        );
    }

    #[test]
    fn a_template_over_absent_columns_keeps() {
        let row = TestRow(vec![("id", Some("C1")), ("a", None), ("b", Some(""))]);
        let rules = vec![
            rule(
                "MiddleName",
                Input::Template(parse_template("{a}-").unwrap()),
                vec![],
                EmptyPolicy::Clear,
            ),
            rule(
                "LastName",
                Input::Template(parse_template("{b}-").unwrap()),
                vec![],
                EmptyPolicy::Clear,
            ),
        ];
        let plan = Plan::bind("id", None, None, &rules, row.resolve()).unwrap();
        let mapped = map_row(&plan, &rules, &row, false);
        assert_eq!(mapped.fields, vec![(1, Value::Clear)]);
    }

    #[test]
    fn collects_every_problem_of_a_row() {
        let row = TestRow(vec![
            ("id", Some("")),
            ("phone", Some("555-01")),
            ("dob", Some("02/30/1985")),
        ]);
        let us = PhoneRegion::parse("US").unwrap();
        let rules = vec![
            rule(
                "PhoneNumber",
                col("phone"),
                vec![Transform::E164(us)],
                EmptyPolicy::Keep,
            ),
            rule(
                "BirthDate",
                col("dob"),
                vec![Transform::Date(
                    DateFormat::new("%m/%d/%Y", "%Y-%m-%d").unwrap(),
                )],
                EmptyPolicy::Keep,
            ),
        ];
        let plan = Plan::bind("id", Some("id"), None, &rules, row.resolve()).unwrap();
        let mapped = map_row(&plan, &rules, &row, false);
        let got: Vec<_> = mapped
            .problems
            .iter()
            .map(|p| (p.field.as_str(), p.rule))
            .collect();
        assert_eq!(
            got,
            vec![
                ("[source] key", "required"),
                ("[match] id", "required"),
                ("PhoneNumber", "e164"),
                ("BirthDate", "date"),
            ]
        );
        assert_eq!(mapped.problems[2].column.as_deref(), Some("phone"));
    }

    #[test]
    fn split_makes_many_values_only_where_allowed() {
        let row = TestRow(vec![
            ("id", Some("C1")),
            ("emails", Some("A@x.com; ;b@x.com")),
        ]);
        let rules = vec![FieldRule {
            target: resolve(TargetKind::GenesysUcs, "EmailAddress").unwrap(),
            name: "EmailAddress".into(),
            input: col("emails"),
            transforms: vec![
                Transform::Split(";".into()),
                Transform::Trim,
                Transform::Lowercase,
            ],
            empty: EmptyPolicy::Keep,
        }];
        let plan = Plan::bind("id", None, None, &rules, row.resolve()).unwrap();
        let mapped = map_row(&plan, &rules, &row, true);
        assert_eq!(
            mapped.fields,
            vec![(0, Value::Many(vec!["a@x.com".into(), "b@x.com".into()]))]
        );
        let single = map_row(&plan, &rules, &row, false);
        assert_eq!(single.problems[0].rule, "single_value");
    }

    #[test]
    fn unknown_columns_are_reported_together() {
        let row = TestRow(vec![("id", Some("C1"))]);
        let rules = vec![
            rule("FirstName", col("first"), vec![], EmptyPolicy::Keep),
            rule("LastName", col("last"), vec![], EmptyPolicy::Keep),
        ];
        let missing = Plan::bind("id", Some("pid"), None, &rules, row.resolve()).unwrap_err();
        assert_eq!(missing, vec!["pid", "first", "last"]);
    }

    #[test]
    fn templates_parse_and_reject_mistakes() {
        assert_eq!(
            parse_template("{{x}} {a}").unwrap(),
            vec![
                TemplatePart::Literal("{x} ".into()),
                TemplatePart::Column("a".into())
            ]
        );
        assert!(parse_template("{a").is_err());
        assert!(parse_template("a}").is_err());
        assert!(parse_template("no columns").is_err());
    }
}
