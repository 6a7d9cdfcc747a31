//! Amazon Connect Customer Profiles, through the official `aws-sdk-customerprofiles` client.
//!
//! This file is the target's own logic only; [`super::driver`] decides what happens to a
//! record:
//!
//! - **read** by ProfileId is one `BatchGetProfile` of up to 20 ids ([`CustomerProfiles::read_many`]);
//!   the pipeline's read-ahead stage fills it, and an `Errors` entry is that id's own result;
//!   **search** by a key follows `NextToken` (100 profiles a page);
//! - **merge** compares the mapped members with the profile's, flattened to the config's
//!   names (`Address.City`, `Attributes.Tier`), and keeps the ones that differ;
//! - **write** is one `UpdateProfile` with the differing members only. UpdateProfile is a
//!   partial update (an absent member keeps its value, `""` removes it), so nothing unmapped
//!   can be lost, and a profile that already holds what the record says is not written;
//! - **create** is a `CreateProfile` with the non-empty members (it takes no empty strings);
//! - a 404 `ResourceNotFoundException` on a write means the profile is gone (the domain was
//!   checked by the preflight).
//!
//! The SDK's own retries are switched off: [`crate::retry`] owns them, because the SDK's
//! retry quota is one process-wide bucket that gives up after about 100 throttles.

// `Gender` and `PartyType` are deprecated in the service model in favour of the free-text
// `GenderString` / `PartyTypeString`, but the API still takes them and exports still use them.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_customerprofiles::Client;
use aws_sdk_customerprofiles::config::retry::RetryConfig;
use aws_sdk_customerprofiles::config::timeout::TimeoutConfig;
use aws_sdk_customerprofiles::config::{Builder, Region};
use aws_sdk_customerprofiles::operation::create_profile::builders::CreateProfileFluentBuilder;
use aws_sdk_customerprofiles::operation::update_profile::builders::UpdateProfileFluentBuilder;
use aws_sdk_customerprofiles::types::{
    Address, Gender, PartyType, Profile, ProfileType, UpdateAddress,
};
use aws_types::SdkConfig;

use super::driver::{Merged, Refusal, Remote};
use super::{Changes, Desired, FieldChange, Pace, PreflightError, aws, changes, diff, unread};
use crate::config::CustomerProfilesTarget;
use crate::retry::{ApiError, ErrorClass};
use crate::schema::op::{
    BATCH_GET_PROFILE, CREATE_PROFILE, DELETE_PROFILE, GET_CALLER_IDENTITY, GET_DOMAIN,
    SEARCH_PROFILES, UPDATE_PROFILE,
};
use crate::schema::{ADDRESS_MEMBERS, ADDRESS_PARTS};
use crate::state::TargetIdentity;

/// The service id the AWS configuration knows this service by (`AWS_ENDPOINT_URL_CUSTOMER_PROFILES`).
const SERVICE_ID: &str = "Customer Profiles";
/// The first label of the service's own host, `profile.<region>.amazonaws.com`.
const HOST_PREFIX: &str = "profile";
/// The service id of STS in the AWS configuration (`AWS_ENDPOINT_URL_STS`).
const STS_SERVICE_ID: &str = "STS";
/// Profiles asked for per SearchProfiles page (the model's maximum).
const PAGE_SIZE: i32 = 100;
/// The expiration Customer Profiles gives a domain that sets none (the admin guide's
/// "Customer Profiles data expiration"); assumed when GetDomain cannot be read.
const DEFAULT_EXPIRATION_DAYS: u32 = 365;
/// The error code of a missing domain or profile.
const NOT_FOUND: &str = "ResourceNotFoundException";

/// A Customer Profiles domain, ready to take records.
pub struct CustomerProfiles {
    client: Client,
    /// STS, for the account the sync state is kept under.
    sts: aws_sdk_sts::Client,
    /// The endpoint configured for Customer Profiles (`None`: the service's own).
    endpoint: Option<String>,
    domain: String,
    /// The domain's `DefaultExpirationDays`, once the preflight read it.
    expiration: std::sync::OnceLock<u32>,
}

/// A profile as read: its members, flattened to the config's names (see `flatten`).
pub type FlatProfile = BTreeMap<String, String>;

/// One id's result in a batched read: the profile, `None` when there is none.
pub type ProfileRead = Result<Option<FlatProfile>, ApiError>;

/// Ids per `BatchGetProfile` (the model's maximum).
pub const BATCH_MAX: usize = 20;

impl CustomerProfiles {
    /// A client from the AWS configuration chain, with `[target] region` and
    /// `[target] endpoint_url` applied on top, and SDK retries off. Refuses a plain
    /// `http://` endpoint to anything but loopback, wherever it was configured.
    pub fn new(
        sdk: &SdkConfig,
        target: &CustomerProfilesTarget,
    ) -> Result<CustomerProfiles, String> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let mut builder = Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts.clone());
        let mut sts = aws_sdk_sts::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let Some(region) = &target.aws.region {
            builder = builder.region(Region::new(region.clone()));
            sts = sts.region(Region::new(region.clone()));
        }
        let endpoint = aws::endpoint(sdk, &target.aws, SERVICE_ID)?;
        if let Some(url) = &endpoint {
            builder = builder.endpoint_url(url);
        }
        if let Some(url) = aws::configured(sdk, STS_SERVICE_ID)? {
            sts = sts.endpoint_url(url);
        }
        Ok(CustomerProfiles {
            client: Client::from_conf(builder.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            endpoint,
            domain: target.domain.clone(),
            expiration: std::sync::OnceLock::new(),
        })
    }

    /// The domain's `DefaultExpirationDays` as the preflight read it, else the service's
    /// default (profiles expire whatever we could read).
    pub fn expiration_days(&self) -> Option<u32> {
        Some(
            self.expiration
                .get()
                .copied()
                .unwrap_or(DEFAULT_EXPIRATION_DAYS),
        )
    }

    /// The region the client sends to.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(ToString::to_string)
    }

    /// Checks, once before any record, that the domain exists and the credentials work
    /// (`GetDomain`), so that a wrong domain or missing access stops the run at once. A role
    /// without `profile:GetDomain` gets a warning instead, and the run goes on.
    pub async fn preflight(&self, pace: &Pace<'_>) -> Result<Vec<String>, PreflightError> {
        let result = pace
            .send(GET_DOMAIN, || {
                let request = self.client.get_domain().domain_name(&self.domain);
                async move { request.send().await.map_err(aws::from_sdk) }
            })
            .await;
        let error = match result {
            Ok(domain) => {
                let days = domain
                    .default_expiration_days()
                    .and_then(|d| u32::try_from(d).ok());
                return match days {
                    Some(days) => {
                        let _ = self.expiration.set(days);
                        Ok(Vec::new())
                    }
                    None => Ok(vec![format!(
                        "the domain {} gives no DefaultExpirationDays; profiles are refreshed as if it were {DEFAULT_EXPIRATION_DAYS}",
                        self.domain
                    )]),
                };
            }
            Err(e) => e,
        };
        match error.class {
            _ if error.code == NOT_FOUND => Err(PreflightError {
                config: true,
                message: format!(
                    "the domain {} does not exist ({}); is [target] domain right?",
                    self.domain, error.message
                ),
            }),
            _ if error.code == "AccessDeniedException" => Ok(vec![format!(
                "cannot check the domain {} first (GetDomain: {}); going on without the check, and refreshing profiles as if DefaultExpirationDays were {DEFAULT_EXPIRATION_DAYS}",
                self.domain, error.message
            )]),
            _ => Err(PreflightError::unreachable(&error, pace.attempts())),
        }
    }
}

impl CustomerProfiles {
    /// The sync state's identity: the account the credentials belong to (STS
    /// `GetCallerIdentity`), the region, the endpoint requests go to, and the domain. Exit 3
    /// when STS cannot say: the state of another account must never be read.
    pub async fn identity(&self, pace: &Pace<'_>) -> Result<TargetIdentity, PreflightError> {
        let region = self.region().ok_or_else(|| {
            PreflightError::config(
                "no AWS region: set AWS_REGION, a profile's region, or [target] region",
            )
        })?;
        let answer = pace
            .send(GET_CALLER_IDENTITY, || {
                let request = self.sts.get_caller_identity();
                async move { request.send().await.map_err(aws::from_sdk) }
            })
            .await;
        let account = match answer {
            Ok(answer) => answer.account().map(str::to_owned),
            Err(e) => return Err(identity_unknown(&e, pace.attempts())),
        };
        let account = account.ok_or_else(|| PreflightError {
            config: false,
            message: "STS GetCallerIdentity answered without an account; the sync state is \
                      kept per account, so the run cannot start"
                .to_owned(),
        })?;
        let endpoint = aws::url_used(self.endpoint.as_deref(), HOST_PREFIX, &region);
        Ok(TargetIdentity::customer_profiles(
            &account,
            &region,
            &endpoint,
            &self.domain,
        ))
    }

    /// Reads up to [`BATCH_MAX`] profiles in one `BatchGetProfile`: one result per id, in
    /// order, and the call's requests (every id of the batch counts them as its own). An
    /// entry of the answer's `Errors` is that id's own result: a missing profile is `None`,
    /// another code fails that id only.
    pub async fn read_many(&self, ids: &[String], pace: &Pace<'_>) -> (Vec<ProfileRead>, u32) {
        let (answer, spent) = pace
            .send_shared(BATCH_GET_PROFILE, || {
                let request = self
                    .client
                    .batch_get_profile()
                    .domain_name(&self.domain)
                    .set_profile_ids(Some(ids.to_vec()));
                async move { request.send().await.map_err(aws::from_sdk) }
            })
            .await;
        let reads = ids
            .iter()
            .map(|id| match &answer {
                Err(e) => Err(e.clone()),
                Ok(out) => match out.profiles().iter().find(|p| p.profile_id() == Some(id)) {
                    Some(profile) => Ok(Some(flatten(profile))),
                    None => match out.errors().iter().find(|e| e.profile_id() == id) {
                        Some(e) if e.code() != NOT_FOUND => Err(ApiError {
                            class: ErrorClass::Permanent,
                            code: e.code().to_owned(),
                            message: e.message().to_owned(),
                            status: None,
                            retry_after: None,
                        }),
                        _ => Ok(None),
                    },
                },
            })
            .collect();
        (reads, spent)
    }
}

/// Why the account could not be learnt. A denial names the permission: every principal may
/// call `sts:GetCallerIdentity` unless a service control policy (or a permissions boundary)
/// denies it, and the state of one account must not serve another.
fn identity_unknown(error: &ApiError, attempts: u32) -> PreflightError {
    let denied = error.code.starts_with("AccessDenied");
    let message = if denied {
        format!(
            "cannot learn the AWS account the sync state is kept under: \
             sts:GetCallerIdentity was denied ({}: {}); every principal may call it unless a \
             service control policy or permissions boundary denies it: allow \
             sts:GetCallerIdentity for this role",
            error.code, error.message
        )
    } else {
        format!(
            "cannot learn the AWS account the sync state is kept under (STS \
             GetCallerIdentity; AWS_ENDPOINT_URL_STS or AWS_ENDPOINT_URL points it elsewhere): {}",
            PreflightError::unreachable(error, attempts).message
        )
    };
    PreflightError {
        config: false,
        message,
    }
}

impl Remote for CustomerProfiles {
    const NOUN: &'static str = "profile";
    /// The profile's members, flattened to the config's names.
    type Current = FlatProfile;
    /// The members to send.
    type Write = Vec<FieldChange>;
    /// The members to create the profile with.
    type Create = Vec<FieldChange>;

    /// The profile with this ProfileId, alone in a `BatchGetProfile`. The pipeline reads most
    /// records ahead, 20 a call ([`CustomerProfiles::read_many`]); this is for the others.
    async fn read(&self, id: &str, pace: &Pace<'_>) -> Result<Option<Self::Current>, ApiError> {
        let (mut reads, spent) = self.read_many(&[id.to_owned()], pace).await;
        pace.count(spent);
        reads.pop().unwrap_or(Ok(None))
    }

    /// Every profile that has `key` = one of `values` (one call carries them all),
    /// following `NextToken`.
    async fn search(
        &self,
        key: &str,
        values: &[&str],
        pace: &Pace<'_>,
    ) -> Result<Vec<(String, Self::Current)>, ApiError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = pace
                .send(SEARCH_PROFILES, || {
                    let request = self
                        .client
                        .search_profiles()
                        .domain_name(&self.domain)
                        .key_name(key)
                        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
                        .max_results(PAGE_SIZE)
                        .set_next_token(token.clone());
                    async move { request.send().await.map_err(aws::from_sdk) }
                })
                .await?;
            for profile in page.items() {
                let id = profile.profile_id().unwrap_or_default();
                if !found.iter().any(|(seen, _)| seen == id) {
                    found.push((id.to_owned(), flatten(profile)));
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }

    fn merge(
        &self,
        current: Self::Current,
        desired: &Desired<'_>,
    ) -> Result<Merged<Self::Write>, Refusal> {
        let changed = diff(&current, &changes(desired));
        Ok(Merged {
            write: changed.clone(),
            changed,
        })
    }

    async fn write(&self, id: &str, write: &Self::Write, pace: &Pace<'_>) -> Result<(), ApiError> {
        pace.send(UPDATE_PROFILE, || {
            let request = update_request(
                self.client
                    .update_profile()
                    .domain_name(&self.domain)
                    .profile_id(id),
                write,
            );
            async move { request.send().await.map_err(aws::from_sdk) }
        })
        .await
        .map(drop)
    }

    fn creation(&self, _id: Option<&str>, desired: &Desired<'_>) -> Option<Merged<Self::Create>> {
        let present = create_members(&changes(desired));
        Some(Merged {
            write: present.clone(),
            changed: present,
        })
    }

    async fn create(
        &self,
        _id: Option<&str>,
        create: &Self::Create,
        pace: &Pace<'_>,
    ) -> Result<String, ApiError> {
        // Not retried blind: the driver searches again first (see `driver::absent`).
        let out = pace
            .send_not_idempotent(CREATE_PROFILE, || {
                let request = create_request(
                    self.client.create_profile().domain_name(&self.domain),
                    create,
                );
                async move { request.send().await.map_err(aws::from_sdk) }
            })
            .await?;
        Ok(out.profile_id().to_owned())
    }

    /// Every mapped member again, as they are: UpdateProfile then renews the profile's
    /// last update, which its expiration counts from.
    fn refresh(&self, desired: &Desired<'_>) -> Option<Self::Write> {
        Some(unread(&changes(desired)))
    }

    /// The domain was checked before the run, so a 404 on a write is about the profile.
    fn is_gone(&self, error: &ApiError) -> bool {
        error.code == NOT_FOUND && error.class == ErrorClass::Permanent
    }

    /// `DeleteProfile` (POST `/domains/{DomainName}/profiles/delete`, `{ProfileId}`), its own
    /// bucket.
    async fn delete(&self, id: &str, pace: &Pace<'_>) -> Result<(), ApiError> {
        pace.send(DELETE_PROFILE, || {
            let request = self
                .client
                .delete_profile()
                .domain_name(&self.domain)
                .profile_id(id);
            async move { request.send().await.map_err(aws::from_sdk) }
        })
        .await
        .map(drop)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
