//! Validation: check a mapped record against the target API's own constraints. Pure.
//!
//! The rules come from [`crate::schema`] (lengths, enums, patterns, NFC) plus the identifier
//! rules of each target (`ProfileId` is 32 lowercase hex characters, a Genesys `customer_id`
//! at most 16 characters). Every problem of a record is returned, so the ledger can name
//! each broken field and rule at once. A record with problems is never sent.

use unicode_normalization::{IsNormalized, is_nfc_quick};

use crate::mapping::{FieldRule, Mapped, Problem, Value};
use crate::schema::{
    ADDRESS_PART, ATTRIBUTE_MAX, FieldSpec, GENESYS_CUSTOMER_ID_MAX, Shape, TargetField, TargetKind,
};

/// Whether the request will update an existing record or create a new one; `CreateProfile`
/// has stricter minimum lengths (no empty strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Update an existing record.
    Update,
    /// Create a new record.
    Create,
}

/// What stops a valid record from being created: a create takes no empty members, so
/// cleared ones are left out, and what is left is checked against the create rules.
pub fn create_problems(kind: TargetKind, rules: &[FieldRule], mapped: &Mapped) -> Vec<Problem> {
    let mut check = mapped.clone();
    check.fields.retain(|(_, v)| *v != Value::Clear);
    check.problems.clear();
    validate(kind, rules, &mut check, Operation::Create);
    check.problems
}

/// Adds to `mapped.problems` every constraint the record breaks.
pub fn validate(kind: TargetKind, rules: &[FieldRule], mapped: &mut Mapped, op: Operation) {
    if let Some(id) = &mapped.target_id
        && let Err(problem) = check_id(kind, id)
    {
        mapped.problems.push(problem);
    }
    if let Some(value) = &mapped.search_value
        && let Err(problem) = check_search_value(kind, value)
    {
        mapped.problems.push(problem);
    }
    // The value as read is searched only as well as the written one: one the search cannot
    // take is left out rather than failing the record.
    if let Some(raw) = &mapped.search_raw
        && check_search_value(kind, raw).is_err()
    {
        mapped.search_raw = None;
    }
    for (index, value) in &mapped.fields {
        let rule = &rules[*index];
        let column = rule.input.column_label();
        for message in check_field(&rule.target, value, op) {
            mapped.problems.push(Problem {
                column: column.clone(),
                ..message.at(&rule.name)
            });
        }
    }
}

/// A broken rule, before it is attached to a field name.
struct Broken {
    rule: &'static str,
    message: String,
}

impl Broken {
    fn at(self, field: &str) -> Problem {
        Problem::new(field, self.rule, self.message)
    }
}

/// Checks the `[match] search_column` value against what the search operation takes:
/// SearchProfiles `Values` are 1–255 characters; SearchUsers matches a `Username`, which is
/// at most 100 characters.
pub fn check_search_value(kind: TargetKind, value: &str) -> Result<(), Problem> {
    let max = match kind {
        TargetKind::CustomerProfiles => 255,
        TargetKind::ConnectUser => 100,
        TargetKind::GenesysUcs => return Ok(()),
    };
    if value.chars().count() > max {
        return Err(Problem::new(
            "[match] search_column",
            "max_length",
            format!("must be at most {max} characters to search by"),
        ));
    }
    Ok(())
}

/// Checks the `[match] id` value against the target's identifier format.
pub fn check_id(kind: TargetKind, id: &str) -> Result<(), Problem> {
    let field = format!("[match] id ({})", kind.id_name());
    match kind {
        TargetKind::CustomerProfiles => {
            let ok = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if ok {
                Ok(())
            } else {
                Err(Problem::new(
                    field,
                    "pattern",
                    "must be 32 lowercase hexadecimal characters ([a-f0-9]{32})",
                ))
            }
        }
        TargetKind::ConnectUser => {
            if id.len() <= 256 && id.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(())
            } else {
                Err(Problem::new(
                    field,
                    "pattern",
                    "must be a user id: up to 256 printable ASCII characters, no spaces",
                ))
            }
        }
        TargetKind::GenesysUcs => {
            if id.chars().count() > GENESYS_CUSTOMER_ID_MAX {
                Err(Problem::new(
                    field,
                    "max_length",
                    format!("must be at most {GENESYS_CUSTOMER_ID_MAX} characters"),
                ))
            } else if id.contains('/')
                || id.chars().any(char::is_control)
                || id.trim_matches('.').is_empty()
            {
                // `.` and `..` would be read as path steps, not as an id.
                Err(Problem::new(
                    field,
                    "pattern",
                    "must not contain / or control characters, nor be only dots",
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn check_field(target: &TargetField, value: &Value, op: Operation) -> Vec<Broken> {
    match target {
        TargetField::Known(spec) => check_value(spec, value, op),
        TargetField::Address { .. } => check_value(&ADDRESS_PART, value, op),
        TargetField::Attribute(_) => {
            let spec = FieldSpec {
                max: ATTRIBUTE_MAX,
                ..ADDRESS_PART
            };
            check_value(&spec, value, op)
        }
        TargetField::Genesys(_) => match value {
            Value::Clear if op == Operation::Create => vec![Broken {
                rule: "min_length",
                message: "cannot be empty when creating a profile".into(),
            }],
            _ => vec![],
        },
    }
}

fn check_value(spec: &FieldSpec, value: &Value, op: Operation) -> Vec<Broken> {
    let min = match op {
        Operation::Update => spec.min_update,
        Operation::Create => spec.min_create,
    };
    let text = match value {
        Value::Set(text) => text.as_str(),
        Value::Clear if min > 0 => {
            let why = match op {
                Operation::Create => "cannot be empty when creating a profile",
                Operation::Update => "is required and cannot be cleared",
            };
            return vec![Broken {
                rule: "min_length",
                message: why.into(),
            }];
        }
        Value::Clear => return vec![],
        Value::Many(_) => {
            return vec![Broken {
                rule: "single_value",
                message: "takes one value, not a list".into(),
            }];
        }
    };
    let mut broken = Vec::new();
    let len = text.chars().count();
    if len < min {
        broken.push(Broken {
            rule: "min_length",
            message: format!("must be at least {min} characters"),
        });
    }
    if len > spec.max {
        broken.push(Broken {
            rule: "max_length",
            message: format!("is {len} characters, over the limit of {}", spec.max),
        });
    }
    match spec.shape {
        Shape::Text => {}
        Shape::NfcText => {
            if is_nfc_quick(text.chars()) != IsNormalized::Yes
                && !unicode_normalization::is_nfc(text)
            {
                broken.push(Broken {
                    rule: "nfc",
                    message: "is not in Unicode Normalization Form C (add the \"nfc\" transform)"
                        .into(),
                });
            }
        }
        Shape::Enum(values) => {
            if !values.contains(&text) {
                broken.push(Broken {
                    rule: "enum",
                    message: format!("must be one of {}", values.join(", ")),
                });
            }
        }
        Shape::E164 => {
            if !is_e164(text) {
                broken.push(Broken {
                    rule: "e164",
                    message: "must be E.164: + then 2-15 digits, not starting with 0 (add the \"e164\" transform)".into(),
                });
            }
        }
        Shape::Email => {
            if let Err(f) = crate::mapping::transform::check_email(text) {
                broken.push(Broken {
                    rule: "email",
                    message: f.message,
                });
            }
        }
    }
    broken
}

/// `^\+[1-9]\d{1,14}$`.
pub fn is_e164(text: &str) -> bool {
    let Some(digits) = text.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{EmptyPolicy, Input};
    use crate::schema::resolve;

    fn rules(kind: TargetKind, names: &[&str]) -> Vec<FieldRule> {
        names
            .iter()
            .map(|n| FieldRule {
                target: resolve(kind, n).unwrap(),
                name: (*n).to_owned(),
                input: Input::Column(n.to_lowercase()),
                transforms: vec![],
                empty: EmptyPolicy::Keep,
            })
            .collect()
    }

    fn problems(
        kind: TargetKind,
        id: Option<&str>,
        fields: &[(&str, Value)],
        op: Operation,
    ) -> Vec<(String, &'static str)> {
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        let rules = rules(kind, &names);
        let mut mapped = Mapped {
            key: "k".into(),
            target_id: id.map(str::to_owned),
            fields: fields
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (i, v.clone()))
                .collect(),
            ..Mapped::default()
        };
        validate(kind, &rules, &mut mapped, op);
        mapped
            .problems
            .into_iter()
            .map(|p| (p.field, p.rule))
            .collect()
    }

    fn set(s: &str) -> Value {
        Value::Set(s.to_owned())
    }

    const PID: Option<&str> = Some("0123456789abcdef0123456789abcdef");

    #[test]
    fn search_values_fit_the_search_operation() {
        let kind = TargetKind::CustomerProfiles;
        let mut mapped = Mapped {
            search_value: Some("x".repeat(255)),
            ..Mapped::default()
        };
        validate(kind, &[], &mut mapped, Operation::Update);
        assert!(mapped.problems.is_empty());
        mapped.search_value = Some("é".repeat(256));
        validate(kind, &[], &mut mapped, Operation::Update);
        assert_eq!(mapped.problems.len(), 1);
        assert_eq!(mapped.problems[0].field, "[match] search_column");
        assert_eq!(mapped.problems[0].rule, "max_length");
    }

    #[test]
    fn profile_id_pattern() {
        let kind = TargetKind::CustomerProfiles;
        assert!(problems(kind, PID, &[], Operation::Update).is_empty());
        for bad in [
            "0123456789ABCDEF0123456789ABCDEF",
            "01234567-89ab-cdef-0123-456789abcdef",
            "abc",
        ] {
            assert_eq!(
                problems(kind, Some(bad), &[], Operation::Update)[0].1,
                "pattern",
                "{bad}"
            );
        }
    }

    #[test]
    fn lengths_255_and_1000() {
        let kind = TargetKind::CustomerProfiles;
        let long = "x".repeat(256);
        let got = problems(
            kind,
            PID,
            &[
                ("FirstName", set(&long)),
                ("AdditionalInformation", set(&long)),
            ],
            Operation::Update,
        );
        assert_eq!(got, vec![("FirstName".to_owned(), "max_length")]);
        let longer = "x".repeat(1001);
        let got = problems(
            kind,
            PID,
            &[("AdditionalInformation", set(&longer))],
            Operation::Update,
        );
        assert_eq!(
            got,
            vec![("AdditionalInformation".to_owned(), "max_length")]
        );
        // Characters, not bytes: 255 two-byte characters fit.
        assert!(
            problems(
                kind,
                PID,
                &[("LastName", set(&"é".repeat(255)))],
                Operation::Update
            )
            .is_empty()
        );
    }

    #[test]
    fn enums() {
        let kind = TargetKind::CustomerProfiles;
        assert!(
            problems(
                kind,
                PID,
                &[("Gender", set("MALE")), ("PartyType", set("BUSINESS"))],
                Operation::Update
            )
            .is_empty()
        );
        let got = problems(
            kind,
            PID,
            &[
                ("Gender", set("X")),
                ("PartyType", set("person")),
                ("ProfileType", set("PROFILE")),
            ],
            Operation::Update,
        );
        assert_eq!(
            got,
            vec![
                ("Gender".to_owned(), "enum"),
                ("PartyType".to_owned(), "enum")
            ]
        );
    }

    #[test]
    fn attributes_and_addresses() {
        let kind = TargetKind::CustomerProfiles;
        let long = "x".repeat(256);
        let got = problems(
            kind,
            PID,
            &[
                ("Attributes.Tier", set(&long)),
                ("Address.City", set(&long)),
            ],
            Operation::Update,
        );
        assert_eq!(got.len(), 2);
        assert!(
            problems(
                kind,
                PID,
                &[("Attributes.Tier", Value::Clear)],
                Operation::Update
            )
            .is_empty()
        );
    }

    #[test]
    fn empty_strings_are_not_allowed_on_create() {
        let kind = TargetKind::CustomerProfiles;
        let fields = [
            ("FirstName", Value::Clear),
            ("Address.City", Value::Clear),
            ("Attributes.Tier", Value::Clear),
        ];
        assert!(problems(kind, None, &fields, Operation::Update).is_empty());
        let got = problems(kind, None, &fields, Operation::Create);
        assert_eq!(got.iter().filter(|(_, r)| *r == "min_length").count(), 3);
    }

    #[test]
    fn connect_identity_rules() {
        let kind = TargetKind::ConnectUser;
        let uid = Some("2b1f6c1e-5c3a-4a9e-9d43-0f4f0c7f5a11");
        let ok = [
            ("FirstName", set("José")),
            ("LastName", set("Núñez")),
            ("Mobile", set("+12065550147")),
            ("SecondaryEmail", set("jose@example.com")),
        ];
        assert!(problems(kind, uid, &ok, Operation::Update).is_empty());
        let bad = [
            ("FirstName", set("Jose\u{301}")),
            ("LastName", set(&"y".repeat(257))),
            ("Mobile", set("2065550147")),
            ("SecondaryEmail", set("jose@example")),
            ("Email", Value::Clear),
        ];
        let got = problems(kind, uid, &bad, Operation::Update);
        let rules: Vec<_> = got.iter().map(|(_, r)| *r).collect();
        assert_eq!(rules, vec!["nfc", "max_length", "e164", "email"]);
        let cleared = problems(kind, uid, &[("FirstName", Value::Clear)], Operation::Update);
        assert_eq!(cleared, vec![("FirstName".to_owned(), "min_length")]);
    }

    #[test]
    fn genesys_customer_id_is_at_most_16() {
        let kind = TargetKind::GenesysUcs;
        assert!(problems(kind, Some("00027a52JCGY000M"), &[], Operation::Update).is_empty());
        assert_eq!(
            problems(kind, Some("00027a52JCGY000M1234"), &[], Operation::Update)[0].1,
            "max_length"
        );
        for path_like in [".", "..", "a/b"] {
            assert_eq!(
                problems(kind, Some(path_like), &[], Operation::Update)[0].1,
                "pattern",
                "{path_like}"
            );
        }
        assert!(problems(kind, Some("a.b c"), &[], Operation::Update).is_empty());
    }

    #[test]
    fn e164_shape() {
        assert!(is_e164("+12065550147"));
        assert!(is_e164("+44"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+1 206"));
    }
}
