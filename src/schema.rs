//! What each target API accepts: its field names and the constraints of its official model.
//!
//! This is data, not logic: one table per target, transcribed from the service models
//! (`../shared/reference/api-facts.md` §2 and §5). Config compilation uses it to reject unknown
//! field names, [`crate::validate`] to check values, and `skeleton` to print a commented config.

use std::fmt;

/// The three systems profilesync writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// Amazon Connect Customer Profiles, `UpdateProfile` / `CreateProfile` / `SearchProfiles`.
    CustomerProfiles,
    /// Amazon Connect users, `UpdateUserIdentityInfo`.
    ConnectUser,
    /// Genesys Context Services (UCS), `PUT /profiles/{customer_id}`.
    GenesysUcs,
}

impl TargetKind {
    /// Every target, in the order the docs list them.
    pub const ALL: [TargetKind; 3] = [Self::CustomerProfiles, Self::ConnectUser, Self::GenesysUcs];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::CustomerProfiles => "customer-profiles",
            Self::ConnectUser => "connect-user",
            Self::GenesysUcs => "genesys-ucs",
        }
    }

    /// Parses a config / command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The API's name for the record identifier that `[match] id` holds.
    pub fn id_name(self) -> &'static str {
        match self {
            Self::CustomerProfiles => "ProfileId",
            Self::ConnectUser => "UserId",
            Self::GenesysUcs => "customer_id",
        }
    }

    /// Whether a field may carry several values (Genesys attributes are multi-valued).
    pub fn multi_valued(self) -> bool {
        self == Self::GenesysUcs
    }
}

/// Whether the search key `key` finds a record by the value of the field `field` (the
/// e-mail members for `_email`, the phone members for `_phone`, `AccountNumber` for
/// `_account`, `Attributes.<key>` for a custom key); a search value borrows that field's
/// transforms.
pub fn indexed_by(kind: TargetKind, key: &str, field: &str) -> bool {
    match kind {
        TargetKind::CustomerProfiles => match key {
            "_email" => EMAIL_FIELDS.contains(&field),
            "_phone" => PHONE_FIELDS.contains(&field),
            "_account" => field == "AccountNumber",
            custom if !custom.starts_with('_') => field.strip_prefix("Attributes.") == Some(custom),
            _ => false,
        },
        TargetKind::ConnectUser | TargetKind::GenesysUcs => false,
    }
}

/// The profile members SearchProfiles' `_email` key indexes.
pub const EMAIL_FIELDS: [&str; 3] = [
    "EmailAddress",
    "PersonalEmailAddress",
    "BusinessEmailAddress",
];
/// The profile members SearchProfiles' `_phone` key indexes.
pub const PHONE_FIELDS: [&str; 4] = [
    "PhoneNumber",
    "MobilePhoneNumber",
    "HomePhoneNumber",
    "BusinessPhoneNumber",
];

/// The API operations a target calls, each with its own quota and limiter, named as the API
/// names them (Genesys has no operation names, so its resources carry a `Genesys` prefix).
pub fn operations(kind: TargetKind) -> &'static [&'static str] {
    match kind {
        TargetKind::CustomerProfiles => &[
            op::GET_DOMAIN,
            op::BATCH_GET_PROFILE,
            op::SEARCH_PROFILES,
            op::UPDATE_PROFILE,
            op::CREATE_PROFILE,
            op::GET_CALLER_IDENTITY,
            op::DELETE_PROFILE,
        ],
        TargetKind::ConnectUser => &[
            op::DESCRIBE_INSTANCE,
            op::LIST_USERS,
            op::SEARCH_USERS,
            op::DESCRIBE_USER,
            op::UPDATE_USER_IDENTITY_INFO,
        ],
        TargetKind::GenesysUcs => &[
            op::GENESYS_GET_PROFILE,
            op::GENESYS_PUT_PROFILE,
            op::GENESYS_CREATE_PROFILE,
            op::GENESYS_DELETE_PROFILE,
        ],
    }
}

/// API operation names, as `[limits.operations.<Operation>]` and the summary spell them.
pub mod op {
    /// Customer Profiles `GetDomain` (the preflight).
    pub const GET_DOMAIN: &str = "GetDomain";
    /// Customer Profiles `BatchGetProfile` (reads by ProfileId, 20 a call).
    pub const BATCH_GET_PROFILE: &str = "BatchGetProfile";
    /// Customer Profiles `SearchProfiles`.
    pub const SEARCH_PROFILES: &str = "SearchProfiles";
    /// Customer Profiles `UpdateProfile`.
    pub const UPDATE_PROFILE: &str = "UpdateProfile";
    /// Customer Profiles `CreateProfile`.
    pub const CREATE_PROFILE: &str = "CreateProfile";
    /// STS `GetCallerIdentity`: the AWS account a Customer Profiles target's sync state is
    /// kept under (once per run).
    pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";
    /// Connect `DescribeInstance` (the preflight).
    pub const DESCRIBE_INSTANCE: &str = "DescribeInstance";
    /// Connect `ListUsers`.
    pub const LIST_USERS: &str = "ListUsers";
    /// Connect `SearchUsers`.
    pub const SEARCH_USERS: &str = "SearchUsers";
    /// Connect `DescribeUser`.
    pub const DESCRIBE_USER: &str = "DescribeUser";
    /// Connect `UpdateUserIdentityInfo`.
    pub const UPDATE_USER_IDENTITY_INFO: &str = "UpdateUserIdentityInfo";
    /// Genesys UCS `GET /profiles/{customer_id}`.
    pub const GENESYS_GET_PROFILE: &str = "GenesysGetProfile";
    /// Genesys UCS `PUT /profiles/{customer_id}`.
    pub const GENESYS_PUT_PROFILE: &str = "GenesysPutProfile";
    /// Genesys UCS `POST /profiles`.
    pub const GENESYS_CREATE_PROFILE: &str = "GenesysCreateProfile";
    /// Customer Profiles `DeleteProfile` (`[mirror] deletes = "delete"`).
    pub const DELETE_PROFILE: &str = "DeleteProfile";
    /// Genesys UCS `DELETE /profiles/{customer_id}` (`[mirror] deletes = "delete"`).
    pub const GENESYS_DELETE_PROFILE: &str = "GenesysDeleteProfile";
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of value a field holds, beyond its length limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Free text.
    Text,
    /// Free text that must be in Unicode Normalization Form C (Connect names).
    NfcText,
    /// One of a fixed set of values.
    Enum(&'static [&'static str]),
    /// An E.164 phone number, `^\+[1-9]\d{1,14}$`.
    E164,
    /// An e-mail address as Connect's documented pattern describes it.
    Email,
}

/// One settable field of a target and its constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The API's member name; nested members are written `Address.City`.
    pub name: &'static str,
    /// Minimum length, in characters, when updating an existing record.
    pub min_update: usize,
    /// Minimum length when creating a record (`CreateProfile` rejects empty strings).
    pub min_create: usize,
    /// Maximum length in characters (`usize::MAX` when the model gives none).
    pub max: usize,
    /// What the value must look like.
    pub shape: Shape,
    /// One line for the skeleton config.
    pub doc: &'static str,
}

impl FieldSpec {
    const fn text(name: &'static str, max: usize, doc: &'static str) -> Self {
        Self {
            name,
            min_update: 0,
            min_create: 1,
            max,
            shape: Shape::Text,
            doc,
        }
    }

    const fn with_shape(self, shape: Shape) -> Self {
        Self { shape, ..self }
    }

    const fn with_min(self, min_update: usize) -> Self {
        Self { min_update, ..self }
    }
}

/// `Gender` (deprecated in the model in favour of `GenderString`, still accepted).
pub const GENDER: &[&str] = &["MALE", "FEMALE", "UNSPECIFIED"];
/// `PartyType` (deprecated in favour of `PartyTypeString`).
pub const PARTY_TYPE: &[&str] = &["INDIVIDUAL", "BUSINESS", "OTHER"];
/// `ProfileType`.
pub const PROFILE_TYPE: &[&str] = &["ACCOUNT_PROFILE", "PROFILE"];

/// The top-level string members of `UpdateProfile`.
const CUSTOMER_PROFILE_FIELDS: &[FieldSpec] = &[
    FieldSpec::text(
        "AccountNumber",
        255,
        "account number assigned to the customer",
    ),
    FieldSpec::text(
        "AdditionalInformation",
        1000,
        "free text, up to 1,000 characters",
    ),
    FieldSpec::text(
        "PartyType",
        255,
        "INDIVIDUAL | BUSINESS | OTHER (deprecated)",
    )
    .with_shape(Shape::Enum(PARTY_TYPE)),
    FieldSpec::text("BusinessName", 255, "the customer's business name"),
    FieldSpec::text("FirstName", 255, "first name"),
    FieldSpec::text("MiddleName", 255, "middle name"),
    FieldSpec::text("LastName", 255, "last name"),
    FieldSpec::text(
        "BirthDate",
        255,
        "birth date, as text (for example 1980-07-12)",
    ),
    FieldSpec::text("Gender", 255, "MALE | FEMALE | UNSPECIFIED (deprecated)")
        .with_shape(Shape::Enum(GENDER)),
    FieldSpec::text("PhoneNumber", 255, "phone number, not mobile/home/business"),
    FieldSpec::text("MobilePhoneNumber", 255, "mobile phone number"),
    FieldSpec::text("HomePhoneNumber", 255, "home phone number"),
    FieldSpec::text("BusinessPhoneNumber", 255, "business phone number"),
    FieldSpec::text("EmailAddress", 255, "e-mail, not personal/business"),
    FieldSpec::text("PersonalEmailAddress", 255, "personal e-mail"),
    FieldSpec::text("BusinessEmailAddress", 255, "business e-mail"),
    FieldSpec::text("PartyTypeString", 255, "party type as any text"),
    FieldSpec::text("GenderString", 255, "gender as any text"),
    FieldSpec::text("ProfileType", 255, "ACCOUNT_PROFILE | PROFILE")
        .with_shape(Shape::Enum(PROFILE_TYPE)),
];

/// The four address members of `UpdateProfile`, each an `UpdateAddress`.
pub const ADDRESS_MEMBERS: &[&str] = &[
    "Address",
    "ShippingAddress",
    "MailingAddress",
    "BillingAddress",
];

/// The parts of an `UpdateAddress`, each 0–255 characters (1–255 on create).
pub const ADDRESS_PARTS: &[&str] = &[
    "Address1",
    "Address2",
    "Address3",
    "Address4",
    "City",
    "County",
    "State",
    "Province",
    "Country",
    "PostalCode",
];

/// The `UserIdentityInfo` members of `UpdateUserIdentityInfo`. The lengths are the ones for
/// instances that manage identities in Connect (1–255 and 1–256), stricter than the SAML ones.
const CONNECT_USER_FIELDS: &[FieldSpec] = &[
    FieldSpec::text("FirstName", 255, "first name, NFC, 1-255 characters")
        .with_shape(Shape::NfcText)
        .with_min(1),
    FieldSpec::text("LastName", 256, "last name, NFC, 1-256 characters")
        .with_shape(Shape::NfcText)
        .with_min(1),
    FieldSpec::text(
        "Email",
        265,
        "login e-mail; changing it needs [target] allow_email_change",
    )
    .with_shape(Shape::Email),
    FieldSpec::text("SecondaryEmail", 265, "notification e-mail").with_shape(Shape::Email),
    FieldSpec::text(
        "Mobile",
        16,
        "mobile number in E.164, +[1-9] and up to 15 digits",
    )
    .with_shape(Shape::E164),
];

/// Maximum length of a Genesys `customer_id` ("Limited to 16 characters").
pub const GENESYS_CUSTOMER_ID_MAX: usize = 16;
/// Maximum length of a Customer Profiles `Attributes` key or value.
pub const ATTRIBUTE_MAX: usize = 255;

/// A target field as named in a config, resolved against the target's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetField {
    /// A field with a fixed spec (top-level member, identity member).
    Known(FieldSpec),
    /// A part of one of the four addresses, such as `ShippingAddress.City`.
    Address {
        /// `Address`, `ShippingAddress`, `MailingAddress` or `BillingAddress`.
        member: &'static str,
        /// `Address1` … `PostalCode`.
        part: &'static str,
    },
    /// `Attributes.<key>` of a customer profile.
    Attribute(String),
    /// A Genesys profile attribute; Genesys attributes are free-form.
    Genesys(String),
}

impl TargetField {
    /// The field's name as written in the config and the ledger.
    pub fn name(&self) -> String {
        match self {
            Self::Known(spec) => spec.name.to_owned(),
            Self::Address { member, part } => format!("{member}.{part}"),
            Self::Attribute(key) => format!("Attributes.{key}"),
            Self::Genesys(name) => name.clone(),
        }
    }
}

/// Why a config's target field name is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// What was wrong, in a sentence.
    pub reason: String,
    /// The names that would have been accepted (for the error message).
    pub expected: Vec<String>,
}

/// Resolves a config field name such as `Address.City` against a target's schema.
pub fn resolve(kind: TargetKind, name: &str) -> Result<TargetField, UnknownField> {
    match kind {
        TargetKind::CustomerProfiles => resolve_customer_profile(name),
        TargetKind::ConnectUser => find(CONNECT_USER_FIELDS, name)
            .map(TargetField::Known)
            .ok_or_else(|| unknown(kind, name, "is not a member of IdentityInfo")),
        TargetKind::GenesysUcs => resolve_genesys(name),
    }
}

fn resolve_customer_profile(name: &str) -> Result<TargetField, UnknownField> {
    let kind = TargetKind::CustomerProfiles;
    if let Some(key) = name.strip_prefix("Attributes.") {
        return if key.is_empty() || key.chars().count() > ATTRIBUTE_MAX {
            Err(unknown(
                kind,
                name,
                "needs an attribute key of 1-255 characters",
            ))
        } else {
            Ok(TargetField::Attribute(key.to_owned()))
        };
    }
    if let Some(spec) = find(CUSTOMER_PROFILE_FIELDS, name) {
        return Ok(TargetField::Known(spec));
    }
    address_part(name).ok_or_else(|| unknown(kind, name, "is not a member of UpdateProfile"))
}

fn resolve_genesys(name: &str) -> Result<TargetField, UnknownField> {
    let valid = !name.is_empty()
        && name != "customer_id"
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(TargetField::Genesys(name.to_owned()))
    } else {
        Err(UnknownField {
            reason: format!(
                "`{name}` is not a Genesys attribute name: use letters, digits, `_`, `-` or `.`, \
                 and not `customer_id` (that comes from [match] id)"
            ),
            expected: vec!["FirstName".into(), "LastName".into(), "EmailAddress".into()],
        })
    }
}

fn find(fields: &[FieldSpec], name: &str) -> Option<FieldSpec> {
    fields.iter().find(|f| f.name == name).copied()
}

/// `Address.City` and the like.
fn address_part(name: &str) -> Option<TargetField> {
    let (member, part) = name.split_once('.')?;
    let member = ADDRESS_MEMBERS.iter().find(|m| **m == member)?;
    let part = ADDRESS_PARTS.iter().find(|p| **p == part)?;
    Some(TargetField::Address { member, part })
}

/// The constraints of every address part (`string0To255`, `string1To255` on create).
pub const ADDRESS_PART: FieldSpec = FieldSpec::text("address part", 255, "address part");

fn unknown(kind: TargetKind, name: &str, why: &str) -> UnknownField {
    UnknownField {
        reason: format!("`{name}` {why} ({kind})"),
        expected: field_names(kind),
    }
}

/// Every field name a target takes, for error messages and the skeleton config.
pub fn field_names(kind: TargetKind) -> Vec<String> {
    match kind {
        TargetKind::CustomerProfiles => {
            let mut names: Vec<String> = CUSTOMER_PROFILE_FIELDS
                .iter()
                .map(|f| f.name.to_owned())
                .collect();
            for member in ADDRESS_MEMBERS {
                names.push(format!("{member}.{{{}}}", ADDRESS_PARTS.join("|")));
            }
            names.push("Attributes.<key>".to_owned());
            names
        }
        TargetKind::ConnectUser => CONNECT_USER_FIELDS
            .iter()
            .map(|f| f.name.to_owned())
            .collect(),
        TargetKind::GenesysUcs => vec!["<any attribute name>".to_owned()],
    }
}

/// The fixed-spec fields of a target, for the skeleton config.
pub fn fixed_fields(kind: TargetKind) -> &'static [FieldSpec] {
    match kind {
        TargetKind::CustomerProfiles => CUSTOMER_PROFILE_FIELDS,
        TargetKind::ConnectUser => CONNECT_USER_FIELDS,
        TargetKind::GenesysUcs => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_members_addresses_and_attributes() {
        let kind = TargetKind::CustomerProfiles;
        assert!(matches!(resolve(kind, "FirstName"), Ok(TargetField::Known(s)) if s.max == 255));
        assert!(
            matches!(resolve(kind, "AdditionalInformation"), Ok(TargetField::Known(s)) if s.max == 1000)
        );
        let city = resolve(kind, "ShippingAddress.City").unwrap();
        assert_eq!(city.name(), "ShippingAddress.City");
        assert!(matches!(city, TargetField::Address { part: "City", .. }));
        assert_eq!(
            resolve(kind, "Attributes.Loyalty").unwrap(),
            TargetField::Attribute("Loyalty".into())
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = resolve(TargetKind::CustomerProfiles, "Firstname").unwrap_err();
        assert!(err.reason.contains("Firstname"));
        assert!(err.expected.iter().any(|n| n == "FirstName"));
        assert!(resolve(TargetKind::CustomerProfiles, "Address.Street").is_err());
        assert!(resolve(TargetKind::CustomerProfiles, "Attributes.").is_err());
        let err = resolve(TargetKind::ConnectUser, "EmailAddress").unwrap_err();
        assert!(err.expected.iter().any(|n| n == "Email"));
    }

    #[test]
    fn genesys_attributes_are_free_but_not_customer_id() {
        assert!(resolve(TargetKind::GenesysUcs, "VIP").is_ok());
        assert!(resolve(TargetKind::GenesysUcs, "customer_id").is_err());
        assert!(resolve(TargetKind::GenesysUcs, "bad name").is_err());
    }

    #[test]
    fn target_names_round_trip() {
        for kind in TargetKind::ALL {
            assert_eq!(TargetKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(TargetKind::from_name("connect"), None);
    }
}
