//! Amazon Connect Customer Profiles, through the official `aws-sdk-customerprofiles` client.
//!
//! - Matched by `[match] id`: one `UpdateProfile` with the mapped members. UpdateProfile is a
//!   partial update (an absent member keeps its value, `""` removes it), so nothing else on
//!   the profile changes, and a re-run sends the same idempotent request.
//! - Matched by `[match] search_key`: `SearchProfiles` (following `NextToken`). One match is
//!   diffed against the mapped values: equal → `unchanged` with no write, else an update of
//!   the differing members. None → `when_missing`. Several → `failed`, ambiguous.
//! - `plan` reads the profile (by `_profileId`, or the search key) and reports the diff.
//!
//! The SDK's own retries are switched off: [`crate::retry`] owns them, because the SDK's
//! retry quota is one process-wide bucket that gives up after about 100 throttles.

// `Gender` and `PartyType` are deprecated in the service model in favour of the free-text
// `GenderString` / `PartyTypeString`, but the API still takes them and exports still use them.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_customerprofiles::Client;
use aws_sdk_customerprofiles::config::retry::RetryConfig;
use aws_sdk_customerprofiles::config::timeout::TimeoutConfig;
use aws_sdk_customerprofiles::config::{Builder, Region};
use aws_sdk_customerprofiles::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_customerprofiles::operation::create_profile::builders::CreateProfileFluentBuilder;
use aws_sdk_customerprofiles::operation::update_profile::builders::UpdateProfileFluentBuilder;
use aws_sdk_customerprofiles::types::{
    Address, Gender, PartyType, Profile, ProfileType, UpdateAddress,
};
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;

use super::{
    Changes, FieldChange, Mode, Outcome, Pace, PreflightError, Settled, changes, describe, diff,
    failed, missing, parse_retry_after, settled, unread,
};
use crate::config::compile::check_url;
use crate::config::{Config, MatchBy, WhenMissing};
use crate::ledger::{EntryError, Status};
use crate::mapping::{Mapped, Value};
use crate::retry::{ApiError, ErrorClass};
use crate::schema::{ADDRESS_MEMBERS, ADDRESS_PARTS};
use crate::validate::{self, Operation};

/// The endpoint the AWS configuration gives this service, resolved as the SDK resolves it:
/// the service-specific setting first, then the general one.
fn configured_endpoint(sdk: &SdkConfig) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id("Customer Profiles")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// Profiles asked for per SearchProfiles page (the model's maximum).
const PAGE_SIZE: i32 = 100;

/// A Customer Profiles domain, ready to take records.
pub struct CustomerProfiles {
    client: Client,
    domain: String,
}

impl CustomerProfiles {
    /// A client from the AWS configuration chain, with `[target] region` and
    /// `[target] endpoint_url` applied on top, and SDK retries off. Refuses a plain
    /// `http://` endpoint to anything but loopback, wherever it was configured.
    pub fn new(sdk: &SdkConfig, config: &Config) -> Result<CustomerProfiles, String> {
        let mut builder = Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(region) = &config.target.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = &config.target.endpoint_url {
            builder = builder.endpoint_url(url);
        } else if let Some(url) = configured_endpoint(sdk) {
            check_url(&url).map_err(|why| {
                format!("the endpoint from the AWS configuration (AWS_ENDPOINT_URL*, or endpoint_url in the profile) {why}")
            })?;
        }
        Ok(CustomerProfiles {
            client: Client::from_conf(builder.build()),
            domain: config.target.domain.clone().unwrap_or_default(),
        })
    }

    /// Checks, once before any record, that the domain exists and the credentials work
    /// (`GetDomain`), so that a wrong domain or missing access stops the run at once. A role
    /// without `profile:GetDomain` gets a warning instead, and the run goes on.
    pub async fn preflight(&self, pace: &Pace<'_>) -> Result<Vec<String>, PreflightError> {
        let mut attempts = 0;
        let result = pace
            .send(&mut attempts, || {
                let request = self.client.get_domain().domain_name(&self.domain);
                async move { request.send().await.map_err(classify) }
            })
            .await;
        let error = match result {
            Ok(_) => return Ok(Vec::new()),
            Err(e) => e,
        };
        let fail = |config, message| Err(PreflightError { config, message });
        match error.class {
            _ if error.code == NOT_FOUND => fail(
                true,
                format!(
                    "the domain {} does not exist ({}); is [target] domain right?",
                    self.domain, error.message
                ),
            ),
            _ if error.code == "AccessDeniedException" => Ok(vec![format!(
                "cannot check the domain {} first (GetDomain: {}); going on without the check",
                self.domain, error.message
            )]),
            ErrorClass::Transient | ErrorClass::Throttled => fail(
                false,
                format!(
                    "the target could not be reached after {attempts} attempts: {}: {}",
                    error.code, error.message
                ),
            ),
            _ => fail(false, format!("{}: {}", error.code, error.message)),
        }
    }

    /// Syncs one mapped, valid record.
    pub async fn sync(
        &self,
        config: &Config,
        mapped: &Mapped,
        mode: Mode,
        pace: &Pace<'_>,
    ) -> Outcome {
        let desired = changes(config, mapped);
        let mut attempts = 0;
        let (key, value, profile_id) = match (&config.matching.by, &mapped.target_id) {
            (MatchBy::Id(_), Some(id)) if mode == Mode::Apply => {
                return self
                    .update(
                        id,
                        unread(&desired),
                        config.matching.when_missing,
                        pace,
                        attempts,
                    )
                    .await;
            }
            (MatchBy::Id(_), Some(id)) => ("_profileId", id.as_str(), Some(id)),
            (MatchBy::Search { key, .. }, _) => (
                key.as_str(),
                mapped.search_value.as_deref().unwrap_or_default(),
                None,
            ),
            (MatchBy::Id(_), None) => {
                // Mapping reports an empty id as a problem, so valid records have one.
                return missing(
                    config.matching.when_missing,
                    mode,
                    "the record has no id",
                    attempts,
                );
            }
        };
        let found = match self.search(key, value, pace, &mut attempts).await {
            Ok(found) => found,
            Err(e) => return failed(e, profile_id.cloned(), attempts),
        };
        match found.as_slice() {
            [] if mode == Mode::Apply && config.matching.when_missing == WhenMissing::Create => {
                self.create(config, mapped, &desired, pace, attempts).await
            }
            [] if mode == Mode::Plan && config.matching.when_missing == WhenMissing::Create => {
                if let Some(invalid) = invalid_for_create(config, mapped, attempts) {
                    return invalid;
                }
                settled(
                    Status::WouldCreate,
                    None,
                    create_members(&desired),
                    attempts,
                )
            }
            [] => missing(
                config.matching.when_missing,
                mode,
                &format!("no profile has {key} = this record's value"),
                attempts,
            ),
            [(id, current)] => {
                let changed = diff(current, &desired);
                match (changed.is_empty(), mode) {
                    (true, _) => settled(Status::Unchanged, Some(id.clone()), changed, attempts),
                    (false, Mode::Plan) => {
                        settled(Status::WouldUpdate, Some(id.clone()), changed, attempts)
                    }
                    (false, Mode::Apply) => {
                        self.update(id, changed, config.matching.when_missing, pace, attempts)
                            .await
                    }
                }
            }
            many => failed(
                ApiError {
                    class: ErrorClass::Permanent,
                    code: "ambiguous".to_owned(),
                    message: format!("ambiguous: {} profiles match {key}", many.len()),
                    status: None,
                    retry_after: None,
                },
                None,
                attempts,
            ),
        }
    }

    async fn update(
        &self,
        id: &str,
        changes: Vec<FieldChange>,
        when_missing: WhenMissing,
        pace: &Pace<'_>,
        mut attempts: u32,
    ) -> Outcome {
        let result = pace
            .send(&mut attempts, || {
                let request = update_request(
                    self.client
                        .update_profile()
                        .domain_name(&self.domain)
                        .profile_id(id),
                    &changes,
                );
                async move { request.send().await.map_err(classify) }
            })
            .await;
        match result {
            Ok(_) => settled(Status::Updated, Some(id.to_owned()), changes, attempts),
            // The domain was checked before the run, so a 404 here is about the profile.
            Err(e) if e.code == NOT_FOUND => missing(
                when_missing,
                Mode::Apply,
                "no profile has this ProfileId",
                attempts,
            ),
            Err(e) => failed(e, Some(id.to_owned()), attempts),
        }
    }

    async fn create(
        &self,
        config: &Config,
        mapped: &Mapped,
        desired: &Changes,
        pace: &Pace<'_>,
        mut attempts: u32,
    ) -> Outcome {
        if let Some(invalid) = invalid_for_create(config, mapped, attempts) {
            return invalid;
        }
        let present = create_members(desired);
        let result = pace
            .send(&mut attempts, || {
                let request = create_request(
                    self.client.create_profile().domain_name(&self.domain),
                    &present,
                );
                async move { request.send().await.map_err(classify) }
            })
            .await;
        match result {
            Ok(out) => settled(
                Status::Created,
                Some(out.profile_id().to_owned()),
                present,
                attempts,
            ),
            Err(e) => failed(e, None, attempts),
        }
    }

    /// Every profile that has `key` = `value`, as (ProfileId, flat members).
    async fn search(
        &self,
        key: &str,
        value: &str,
        pace: &Pace<'_>,
        attempts: &mut u32,
    ) -> Result<Vec<(String, BTreeMap<String, String>)>, ApiError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = pace
                .send(attempts, || {
                    let request = self
                        .client
                        .search_profiles()
                        .domain_name(&self.domain)
                        .key_name(key)
                        .values(value)
                        .max_results(PAGE_SIZE)
                        .set_next_token(token.clone());
                    async move { request.send().await.map_err(classify) }
                })
                .await?;
            found.extend(
                page.items()
                    .iter()
                    .map(|p| (p.profile_id().unwrap_or_default().to_owned(), flatten(p))),
            );
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }
}

const NOT_FOUND: &str = "ResourceNotFoundException";

/// CreateProfile takes no empty strings: cleared members are left out, and what is left is
/// checked against the create rules. A record that breaks them ends `invalid`, in `plan` and
/// `apply` alike, with every problem.
fn invalid_for_create(config: &Config, mapped: &Mapped, attempts: u32) -> Option<Outcome> {
    let mut check = mapped.clone();
    check.fields.retain(|(_, v)| *v != Value::Clear);
    check.problems.clear();
    validate::validate(
        config.target.kind,
        &config.rules,
        &mut check,
        Operation::Create,
    );
    if check.problems.is_empty() {
        return None;
    }
    let message = check
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ");
    Some(Outcome::Settled(Settled {
        status: Status::Invalid,
        target_id: None,
        changed: Vec::new(),
        attempts,
        unanswered: false,
        error: Some(EntryError {
            code: "invalid_for_create".to_owned(),
            message: format!("cannot create the profile: {message}"),
            problems: check.problems,
        }),
    }))
}

/// The members CreateProfile is sent: the non-empty ones (it takes no empty strings).
fn create_members(desired: &Changes) -> Vec<FieldChange> {
    unread(desired)
        .into_iter()
        .filter(|c| !c.to.is_empty())
        .collect()
}

/// Sets one top-level string member on an UpdateProfile or CreateProfile builder.
macro_rules! set_member {
    ($builder:expr, $name:expr, $value:expr) => {
        match $name {
            "AccountNumber" => $builder.account_number($value),
            "AdditionalInformation" => $builder.additional_information($value),
            "PartyType" => $builder.party_type(PartyType::from($value)),
            "BusinessName" => $builder.business_name($value),
            "FirstName" => $builder.first_name($value),
            "MiddleName" => $builder.middle_name($value),
            "LastName" => $builder.last_name($value),
            "BirthDate" => $builder.birth_date($value),
            "Gender" => $builder.gender(Gender::from($value)),
            "PhoneNumber" => $builder.phone_number($value),
            "MobilePhoneNumber" => $builder.mobile_phone_number($value),
            "HomePhoneNumber" => $builder.home_phone_number($value),
            "BusinessPhoneNumber" => $builder.business_phone_number($value),
            "EmailAddress" => $builder.email_address($value),
            "PersonalEmailAddress" => $builder.personal_email_address($value),
            "BusinessEmailAddress" => $builder.business_email_address($value),
            "PartyTypeString" => $builder.party_type_string($value),
            "GenderString" => $builder.gender_string($value),
            "ProfileType" => $builder.profile_type(ProfileType::from($value)),
            _ => $builder,
        }
    };
}

/// Sets one part of an address builder (`UpdateAddress` or `Address`).
macro_rules! set_address_part {
    ($builder:expr, $part:expr, $value:expr) => {
        match $part {
            "Address1" => $builder.address1($value),
            "Address2" => $builder.address2($value),
            "Address3" => $builder.address3($value),
            "Address4" => $builder.address4($value),
            "City" => $builder.city($value),
            "County" => $builder.county($value),
            "State" => $builder.state($value),
            "Province" => $builder.province($value),
            "Country" => $builder.country($value),
            "PostalCode" => $builder.postal_code($value),
            _ => $builder,
        }
    };
}

/// Fills a request builder (update or create) from flat changes; `$address` is the address
/// type's builder constructor.
macro_rules! fill_request {
    ($builder:expr, $changes:expr, $address:path) => {{
        let mut builder = $builder;
        for member in ADDRESS_MEMBERS {
            let prefix = format!("{member}.");
            let parts: Vec<(&str, &str)> = $changes
                .iter()
                .filter_map(|c| Some((c.field.strip_prefix(&prefix)?, c.to.as_str())))
                .collect();
            if parts.is_empty() {
                continue;
            }
            let mut address = $address();
            for (part, value) in parts {
                address = set_address_part!(address, part, value);
            }
            let address = address.build();
            builder = match *member {
                "Address" => builder.address(address),
                "ShippingAddress" => builder.shipping_address(address),
                "MailingAddress" => builder.mailing_address(address),
                _ => builder.billing_address(address),
            };
        }
        for FieldChange { field, to, .. } in $changes {
            if let Some(key) = field.strip_prefix("Attributes.") {
                builder = builder.attributes(key, to.as_str());
            } else if !field.contains('.') {
                builder = set_member!(builder, field.as_str(), to.as_str());
            }
        }
        builder
    }};
}

fn update_request(
    builder: UpdateProfileFluentBuilder,
    changes: &[FieldChange],
) -> UpdateProfileFluentBuilder {
    fill_request!(builder, changes, UpdateAddress::builder)
}

fn create_request(
    builder: CreateProfileFluentBuilder,
    changes: &[FieldChange],
) -> CreateProfileFluentBuilder {
    fill_request!(builder, changes, Address::builder)
}

/// A profile as flat `member → value` pairs, named as in the config.
pub fn flatten(profile: &Profile) -> BTreeMap<String, String> {
    let mut flat = BTreeMap::new();
    let mut put = |name: &str, value: Option<&str>| {
        if let Some(v) = value {
            flat.insert(name.to_owned(), v.to_owned());
        }
    };
    put("AccountNumber", profile.account_number());
    put("AdditionalInformation", profile.additional_information());
    put("PartyType", profile.party_type().map(PartyType::as_str));
    put("BusinessName", profile.business_name());
    put("FirstName", profile.first_name());
    put("MiddleName", profile.middle_name());
    put("LastName", profile.last_name());
    put("BirthDate", profile.birth_date());
    put("Gender", profile.gender().map(Gender::as_str));
    put("PhoneNumber", profile.phone_number());
    put("MobilePhoneNumber", profile.mobile_phone_number());
    put("HomePhoneNumber", profile.home_phone_number());
    put("BusinessPhoneNumber", profile.business_phone_number());
    put("EmailAddress", profile.email_address());
    put("PersonalEmailAddress", profile.personal_email_address());
    put("BusinessEmailAddress", profile.business_email_address());
    put("PartyTypeString", profile.party_type_string());
    put("GenderString", profile.gender_string());
    put(
        "ProfileType",
        profile.profile_type().map(ProfileType::as_str),
    );
    let addresses = [
        ("Address", profile.address()),
        ("ShippingAddress", profile.shipping_address()),
        ("MailingAddress", profile.mailing_address()),
        ("BillingAddress", profile.billing_address()),
    ];
    for (member, address) in addresses {
        let Some(a) = address else { continue };
        let parts = [
            a.address1(),
            a.address2(),
            a.address3(),
            a.address4(),
            a.city(),
            a.county(),
            a.state(),
            a.province(),
            a.country(),
            a.postal_code(),
        ];
        for (part, value) in ADDRESS_PARTS.iter().zip(parts) {
            put(&format!("{member}.{part}"), value);
        }
    }
    for (key, value) in profile.attributes().into_iter().flatten() {
        put(&format!("Attributes.{key}"), Some(value));
    }
    flat
}

/// Classifies an SDK error for the retry policy.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ApiError {
    let (class, code, message, status, retry_after) = match &error {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("UnknownError").to_owned();
            let message = ctx.err().message().unwrap_or("no message").to_owned();
            let retry_after = ctx
                .raw()
                .headers()
                .get("retry-after")
                .and_then(parse_retry_after);
            (
                class_of(status, &code),
                code,
                message,
                Some(status),
                retry_after,
            )
        }
        SdkError::TimeoutError(_) => (
            ErrorClass::Transient,
            "timeout".to_owned(),
            "the request timed out".to_owned(),
            None,
            None,
        ),
        SdkError::DispatchFailure(failure) if !failure.is_user() && !lacks_credentials(&error) => (
            ErrorClass::Transient,
            "connection".to_owned(),
            describe(&error),
            None,
            None,
        ),
        SdkError::ResponseError(_) => (
            ErrorClass::Transient,
            "connection".to_owned(),
            describe(&error),
            None,
            None,
        ),
        // No credentials, no region, a request that cannot be built or signed: the same for
        // every record, so not a per-record failure.
        _ => (
            ErrorClass::Fatal,
            "configuration".to_owned(),
            describe(&error),
            None,
            None,
        ),
    };
    ApiError {
        class,
        code,
        message,
        status,
        retry_after,
    }
}

/// Whether the credential chain found nothing (the SDK reports it as a dispatch failure).
fn lacks_credentials(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

fn class_of(status: u16, code: &str) -> ErrorClass {
    const THROTTLING: &[&str] = &[
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    ];
    const AUTH: &[&str] = &[
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    ];
    if status == 429 || THROTTLING.contains(&code) {
        ErrorClass::Throttled
    } else if status == 403 || status == 401 || AUTH.contains(&code) {
        ErrorClass::Fatal
    } else if status >= 500 {
        ErrorClass::Transient
    } else {
        ErrorClass::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_status_and_code() {
        assert_eq!(class_of(429, "ThrottlingException"), ErrorClass::Throttled);
        assert_eq!(class_of(400, "ThrottlingException"), ErrorClass::Throttled);
        assert_eq!(class_of(503, "ServiceUnavailable"), ErrorClass::Transient);
        assert_eq!(
            class_of(500, "InternalServerException"),
            ErrorClass::Transient
        );
        assert_eq!(class_of(403, "AccessDeniedException"), ErrorClass::Fatal);
        assert_eq!(
            class_of(400, "UnrecognizedClientException"),
            ErrorClass::Fatal
        );
        assert_eq!(class_of(400, "BadRequestException"), ErrorClass::Permanent);
        assert_eq!(
            class_of(404, "ResourceNotFoundException"),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn flatten_names_members_like_the_config() {
        let profile = Profile::builder()
            .profile_id("0123456789abcdef0123456789abcdef")
            .first_name("Ana")
            .gender(Gender::Female)
            .shipping_address(Address::builder().city("Lyon").build())
            .attributes("Tier", "Gold")
            .build();
        let flat = flatten(&profile);
        let expected: BTreeMap<String, String> = [
            ("FirstName", "Ana"),
            ("Gender", "FEMALE"),
            ("ShippingAddress.City", "Lyon"),
            ("Attributes.Tier", "Gold"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(flat, expected);
    }
}
