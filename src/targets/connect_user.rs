//! Amazon Connect users: the identity info (names, e-mails, mobile) of agents, through
//! Connect's REST-JSON API, signed with the official `aws-sigv4` crate and sent with
//! `reqwest` (the `aws-sdk-connect` crate would cost minutes of build and gigabytes of
//! memory for 400 operations, of which this target needs five; see ARCHITECTURE.md).
//!
//! This file is the target's own logic; [`super::driver`] decides what happens to a record:
//!
//! - **read** is `DescribeUser`; **search** by `Username` looks the name up in an index of
//!   the instance's users, built once per run from `ListUsers` pages of 1,000 (instead of
//!   one `SearchUsers` per record at 2/s), then reads the user. A name the index does not
//!   know is looked up once with `SearchUsers`, in case the user was added during the run.
//! - **last change**: the same index holds each user's `LastModifiedTime`, which the sync
//!   state compares with the time stored when the user was last read, so that a user
//!   changed in Connect since (by anyone) is read again, and only such a user (plus those
//!   whose record changed). The time stored is the one DescribeUser gave *before* our own
//!   write, which changes it: a user we wrote is read once more the next run.
//! - **merge** ([`merge`], pure) puts the mapped members into the user's current
//!   `IdentityInfo`; **write** sends the *complete* result with `UpdateUserIdentityInfo`,
//!   which replaces the whole structure, so an unmapped Email, SecondaryEmail or Mobile is
//!   never erased. Users are never created.
//! - The merge refuses what Connect's rules forbid, before anything is sent: a changed login
//!   `Email` unless `[target] allow_email_change = true` (it can hand the account to whoever
//!   owns the new address); any `Email` on an instance that uses SAML (the identity provider
//!   owns it); a changed FirstName, LastName or Email on an instance whose identities live in
//!   an existing directory. The preflight's `DescribeInstance` says which applies.
//!
//! Credentials and region come from the AWS configuration chain (`aws-config`), the
//! endpoint from `[target] endpoint_url`, `AWS_ENDPOINT_URL_CONNECT` or `AWS_ENDPOINT_URL`,
//! else `https://connect.<region>.amazonaws.com`. Errors are read from `x-amzn-ErrorType` /
//! `__type` exactly as the SDKs read them ([`super::aws`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_types::SdkConfig;
use reqwest::{Client, Method};
use serde::{Deserialize, Serialize};

use super::driver::{Merged, Refusal, Remote};
use super::{
    Desired, FieldChange, LastChange, Pace, PreflightError, aws, changes, describe, diff,
    path_segment, transport,
};
use crate::config::{Config, ConnectUserTarget};
use crate::ledger::Status;
use crate::retry::{ApiError, ErrorClass};
use crate::schema::op::{
    DESCRIBE_INSTANCE, DESCRIBE_USER, LIST_USERS, SEARCH_USERS, UPDATE_USER_IDENTITY_INFO,
};
use crate::sigv4::Signer;
use crate::state::TargetIdentity;

/// The service id the AWS configuration knows Connect by (`AWS_ENDPOINT_URL_CONNECT`).
const SERVICE_ID: &str = "Connect";
/// The SigV4 signing name.
const SIGNING_NAME: &str = "connect";
/// Users per ListUsers page (the model's maximum).
const LIST_PAGE: u32 = 1000;

/// The members of `UserIdentityInfo` this target reads and writes.
pub const MEMBERS: [&str; 5] = ["FirstName", "LastName", "Email", "SecondaryEmail", "Mobile"];
/// The members an existing directory manages.
const DIRECTORY_MEMBERS: [&str; 3] = ["FirstName", "LastName", "Email"];

/// How the instance manages identities (`DescribeInstance`'s `IdentityManagementType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdentityManagement {
    /// Users are stored in Connect: every member may be written.
    #[default]
    ConnectManaged,
    /// A SAML identity provider owns the login: `Email` is never sent.
    Saml,
    /// An existing directory owns FirstName, LastName and Email.
    ExistingDirectory,
}

impl IdentityManagement {
    fn name(self) -> &'static str {
        match self {
            Self::ConnectManaged => "CONNECT_MANAGED",
            Self::Saml => "SAML",
            Self::ExistingDirectory => "EXISTING_DIRECTORY",
        }
    }
}

/// A user's `IdentityInfo`: member name → value; an absent member is unset.
pub type IdentityInfo = BTreeMap<String, String>;

/// The rules a merge follows, from the config and the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    /// `[target] allow_email_change`.
    pub allow_email_change: bool,
    /// The instance's identity management.
    pub management: IdentityManagement,
}

/// A Connect instance, ready to take records.
pub struct ConnectUser {
    http: Client,
    endpoint: String,
    signer: Signer,
    instance_id: String,
    allow_email_change: bool,
    /// Set by the preflight.
    management: OnceLock<IdentityManagement>,
    /// The instance's ARN, from the preflight's DescribeInstance.
    instance_arn: OnceLock<String>,
    /// The instance's users, from ListUsers on first use.
    users: tokio::sync::OnceCell<Arc<Directory>>,
    /// Set when ListUsers failed for the sync state: every later record is read instead,
    /// without listing again.
    unlisted: AtomicBool,
}

/// What ListUsers tells of the instance's users, read once per run.
#[derive(Debug, Default)]
struct Directory {
    /// Username → UserId.
    ids: HashMap<String, String>,
    /// UserId → `LastModifiedTime`, in epoch milliseconds.
    modified: HashMap<String, i64>,
}

/// A user as DescribeUser reads it: its identity, its name and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The `IdentityInfo`.
    pub info: IdentityInfo,
    /// `Username`, when Connect gives it.
    pub username: Option<String>,
    /// `LastModifiedTime`, in epoch milliseconds, when Connect gives it.
    pub last_modified: Option<i64>,
}

/// What `UpdateUserIdentityInfo` sends (the whole `IdentityInfo`), and the members it clears
/// by leaving them out, which [`Remote::write`] reads back: the documentation does not say
/// that the service clears an absent member rather than keeping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityWrite {
    /// The complete `IdentityInfo`.
    pub info: IdentityInfo,
    /// Members the user had and this write leaves out.
    pub cleared: Vec<String>,
}

impl ConnectUser {
    /// A client from the AWS configuration chain with `[target] region` and `endpoint_url`
    /// on top. Refuses a plain `http://` endpoint to anything but loopback, wherever it was
    /// configured, and a run without a region.
    pub fn new(sdk: &SdkConfig, target: &ConnectUserTarget) -> Result<ConnectUser, String> {
        let region = aws::region(sdk, &target.aws).ok_or_else(|| {
            "no AWS region: set AWS_REGION, a profile's region, or [target] region".to_owned()
        })?;
        let endpoint = aws::url_used(
            aws::endpoint(sdk, &target.aws, SERVICE_ID)?.as_deref(),
            "connect",
            &region,
        );
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(3100))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))?;
        Ok(ConnectUser {
            http,
            endpoint,
            signer: Signer::new(SIGNING_NAME, &region, sdk.credentials_provider()),
            instance_id: target.instance_id.clone(),
            allow_email_change: target.allow_email_change,
            management: OnceLock::new(),
            instance_arn: OnceLock::new(),
            users: tokio::sync::OnceCell::new(),
            unlisted: AtomicBool::new(false),
        })
    }

    /// `DescribeInstance`: the instance exists (else exit 2) and the credentials work (else
    /// exit 3); its identity management decides which members may be written.
    pub async fn preflight(
        &self,
        config: &Config,
        pace: &Pace<'_>,
    ) -> Result<Vec<String>, PreflightError> {
        let path = format!("/instance/{}", path_segment(&self.instance_id));
        let answer: Result<DescribeInstance, ApiError> = self
            .call(DESCRIBE_INSTANCE, Method::GET, &path, None, pace)
            .await;
        let instance = match answer {
            Ok(answer) => answer.instance,
            Err(e) if e.code == NOT_FOUND => {
                return Err(PreflightError::config(format!(
                    "the Connect instance {} does not exist ({}); is [target] instance_id right?",
                    self.instance_id, e.message
                )));
            }
            Err(e) => return Err(PreflightError::unreachable(&e, pace.attempts())),
        };
        let management = instance.identity_management_type.unwrap_or_default();
        let _ = self.management.set(management);
        if let Some(arn) = instance.arn {
            let _ = self.instance_arn.set(arn);
        }
        let mapped = |member: &str| config.rules.iter().any(|r| r.name == member);
        let mut warnings = Vec::new();
        if management == IdentityManagement::Saml && mapped("Email") {
            warnings.push(format!(
                "the instance {} uses SAML: its identity provider owns each user's Email, so \
                 records that map Email end invalid; remove Email from [fields]",
                self.instance_id
            ));
        }
        if management == IdentityManagement::ExistingDirectory
            && DIRECTORY_MEMBERS.iter().any(|m| mapped(m))
        {
            warnings.push(format!(
                "the instance {} uses an existing directory, which owns FirstName, LastName \
                 and Email: records that would change them fail",
                self.instance_id
            ));
        }
        Ok(warnings)
    }

    /// The region the requests are signed for.
    pub fn region(&self) -> &str {
        self.signer.region()
    }

    /// The sync state's identity: the instance's ARN from the preflight (its account,
    /// region and id) and the endpoint. An answer without an ARN (the model does not require
    /// one) stands in `region` and the instance id for it.
    pub fn identity(&self) -> TargetIdentity {
        let arn = self.instance_arn.get().cloned().unwrap_or_else(|| {
            format!(
                "arn:aws:connect:{}:unknown-account:instance/{}",
                self.signer.region(),
                self.instance_id
            )
        });
        TargetIdentity::connect_user(&arn, &self.endpoint)
    }

    fn rules(&self) -> Rules {
        Rules {
            allow_email_change: self.allow_email_change,
            management: self.management.get().copied().unwrap_or_default(),
        }
    }

    /// Every user of the instance, by Username and with its `LastModifiedTime`, from
    /// ListUsers (once per run, for matching by Username and for the sync state).
    async fn index(&self, pace: &Pace<'_>) -> Result<Arc<Directory>, ApiError> {
        self.users
            .get_or_try_init(|| async {
                let mut index = Directory::default();
                let mut token: Option<String> = None;
                loop {
                    let mut path = format!(
                        "/users-summary/{}?maxResults={LIST_PAGE}",
                        path_segment(&self.instance_id)
                    );
                    if let Some(token) = &token {
                        path.push_str("&nextToken=");
                        path.push_str(&query_value(token));
                    }
                    let page: ListUsers = self
                        .call(LIST_USERS, Method::GET, &path, None, pace)
                        .await?;
                    for user in page.user_summary_list {
                        let Some(id) = user.id else { continue };
                        if let Some(time) = user.last_modified_time.and_then(epoch_millis) {
                            index.modified.insert(id.clone(), time);
                        }
                        if let Some(name) = user.username {
                            index.ids.insert(name, id);
                        }
                    }
                    match page.next_token {
                        Some(next) if !next.is_empty() => token = Some(next),
                        _ => return Ok(Arc::new(index)),
                    }
                }
            })
            .await
            .cloned()
    }

    /// The ids of the users named `username`, asked of SearchUsers (for a user the index,
    /// a snapshot from the start of the run, does not know).
    async fn search_users(&self, username: &str, pace: &Pace<'_>) -> Result<Vec<String>, ApiError> {
        let body = serde_json::json!({
            "InstanceId": self.instance_id,
            "MaxResults": 100,
            "SearchCriteria": {"StringCondition": {
                "FieldName": "Username", "Value": username, "ComparisonType": "EXACT"
            }},
        });
        let found: SearchUsers = self
            .call(
                SEARCH_USERS,
                Method::POST,
                "/search-users",
                Some(body.to_string().into_bytes()),
                pace,
            )
            .await?;
        Ok(found
            .users
            .into_iter()
            .filter(|u| u.username.as_deref() == Some(username))
            .filter_map(|u| u.id)
            .collect())
    }

    /// Sends one signed request of `operation` and reads its JSON answer.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        pace: &Pace<'_>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.endpoint);
        let body = body.unwrap_or_default();
        let bytes = pace
            .send(operation, || self.send_signed(&method, &url, &body))
            .await?;
        let text = if bytes.is_empty() { &b"{}"[..] } else { &bytes };
        serde_json::from_slice(text).map_err(|e| ApiError {
            class: ErrorClass::Permanent,
            code: "unexpected_response".to_owned(),
            message: format!("{operation} answered something that is not its JSON shape: {e}"),
            status: None,
            retry_after: None,
        })
    }

    /// One attempt: sign with the current credentials, send, classify the answer.
    async fn send_signed(
        &self,
        method: &Method,
        url: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let content_type = [("content-type", "application/json")];
        let headers = if body.is_empty() {
            &content_type[..0]
        } else {
            &content_type[..]
        };
        let signed = self
            .signer
            .sign(method.as_str(), url, headers, body)
            .await
            .map_err(aws::configuration)?;
        let mut request = self.http.request(method.clone(), url);
        for (name, value) in headers.iter().copied() {
            request = request.header(name, value);
        }
        for (name, value) in &signed {
            request = request.header(name, value);
        }
        let response = request
            .body(body.to_vec())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (error_type, retry_after) = (header("x-amzn-errortype"), header("retry-after"));
        let bytes = response.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) {
            Ok(bytes.to_vec())
        } else {
            Err(aws::from_response(
                status,
                error_type.as_deref(),
                retry_after.as_deref(),
                &bytes,
            ))
        }
    }
}

impl Remote for ConnectUser {
    const NOUN: &'static str = "user";
    type Current = User;
    type Write = IdentityWrite;
    type Create = ();

    async fn read(&self, id: &str, pace: &Pace<'_>) -> Result<Option<User>, ApiError> {
        let path = format!(
            "/users/{}/{}",
            path_segment(&self.instance_id),
            path_segment(id)
        );
        match self
            .call::<DescribeUser>(DESCRIBE_USER, Method::GET, &path, None, pace)
            .await
        {
            Ok(answer) => Ok(Some(User {
                info: answer.user.identity_info.into_map(),
                username: answer.user.username,
                last_modified: answer.user.last_modified_time.and_then(epoch_millis),
            })),
            Err(e) if e.code == NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Users by `Username` (the only search key the config takes for this target).
    async fn search(
        &self,
        _key: &str,
        usernames: &[&str],
        pace: &Pace<'_>,
    ) -> Result<Vec<(String, User)>, ApiError> {
        let index = self.index(pace).await?;
        let mut ids: Vec<String> = Vec::new();
        for username in usernames {
            let listed = match index.ids.get(*username) {
                Some(id) => vec![id.clone()],
                None => self.search_users(username, pace).await?,
            };
            for id in listed {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut found = Vec::new();
        for id in ids {
            if let Some(user) = self.read(&id, pace).await? {
                // The index is a snapshot from the start of the run: a user renamed since is
                // someone else now, and is never written for this row.
                check_username(&id, user.username.as_deref(), usernames)?;
                found.push((id, user));
            }
        }
        Ok(found)
    }

    fn merge(
        &self,
        current: User,
        desired: &Desired<'_>,
    ) -> Result<Merged<IdentityWrite>, Refusal> {
        let merged = merge(current.info, desired, self.rules())?;
        let cleared = merged
            .changed
            .iter()
            .filter(|c| c.to.is_empty())
            .map(|c| c.field.clone())
            .collect();
        Ok(Merged {
            write: IdentityWrite {
                info: merged.write,
                cleared,
            },
            changed: merged.changed,
        })
    }

    /// `UpdateUserIdentityInfo` with the whole `IdentityInfo`; when it clears a member by
    /// leaving it out, DescribeUser reads the user back, and a member still there is
    /// `clear_not_applied` (a service that keeps absent members would otherwise be
    /// `updated` again every night, never cleared).
    async fn write(
        &self,
        id: &str,
        write: &IdentityWrite,
        pace: &Pace<'_>,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/users/{}/{}/identity-info",
            path_segment(&self.instance_id),
            path_segment(id)
        );
        let body = serde_json::json!({ "IdentityInfo": write.info }).to_string();
        self.call::<serde_json::Value>(
            UPDATE_USER_IDENTITY_INFO,
            Method::POST,
            &path,
            Some(body.into_bytes()),
            pace,
        )
        .await?;
        if write.cleared.is_empty() {
            return Ok(());
        }
        let after = self.read(id, pace).await?;
        let kept = after.map_or_else(Vec::new, |user| still_there(&write.cleared, &user.info));
        if kept.is_empty() {
            Ok(())
        } else {
            Err(ApiError {
                class: ErrorClass::Permanent,
                code: "clear_not_applied".to_owned(),
                message: format!(
                    "UpdateUserIdentityInfo was accepted, but a read-back shows {} still set: \
                     the service keeps members left out of IdentityInfo, so they cannot be \
                     cleared this way; clear them in Connect",
                    kept.join(", ")
                ),
                status: None,
                retry_after: None,
            })
        }
    }

    /// Users are not created: the config refuses `when_missing = "create"` for Connect.
    fn creation(&self, _id: Option<&str>, _desired: &Desired<'_>) -> Option<Merged<()>> {
        None
    }

    async fn create(
        &self,
        _id: Option<&str>,
        _create: &(),
        _pace: &Pace<'_>,
    ) -> Result<String, ApiError> {
        Err(aws::configuration("Connect users are not created"))
    }

    fn is_gone(&self, error: &ApiError) -> bool {
        error.code == NOT_FOUND
    }

    fn modified(current: &User) -> Option<i64> {
        current.last_modified
    }

    /// The user's `LastModifiedTime` from ListUsers (the index read once per run). Our own
    /// UpdateUserIdentityInfo changes it too; the state keeps the time read before the write,
    /// so the next run reads a user we wrote once more (see ARCHITECTURE.md, "Sync state").
    async fn last_change(&self, id: &str, pace: &Pace<'_>) -> Result<LastChange, ApiError> {
        if self.unlisted.load(Ordering::Relaxed) {
            return Ok(LastChange::Unknown);
        }
        let index = match self.index(pace).await {
            Ok(index) => index,
            // Access denied stops the run (the caller says to allow ListUsers or use --full).
            Err(e) if e.class == ErrorClass::Fatal => return Err(e),
            // A listing that failed after its retries is not tried again for every record:
            // the records are read, as without a state.
            Err(_) => {
                self.unlisted.store(true, Ordering::Relaxed);
                return Ok(LastChange::Unknown);
            }
        };
        Ok(match index.modified.get(id) {
            Some(time) => LastChange::At(*time),
            None => LastChange::Unknown,
        })
    }
}

/// The members of `cleared` that `now` still holds. Pure.
fn still_there(cleared: &[String], now: &IdentityInfo) -> Vec<String> {
    cleared
        .iter()
        .filter(|member| now.contains_key(member.as_str()))
        .cloned()
        .collect()
}

/// Checks that the user DescribeUser read under `id` has one of the row's `Username`s (the
/// value searched for, and its raw text; ASCII case aside); a user renamed since the
/// ListUsers index was read is `username_mismatch`. No name is repeated in the message.
fn check_username(id: &str, described: Option<&str>, row: &[&str]) -> Result<(), ApiError> {
    match described {
        Some(name) if !row.iter().any(|r| name.eq_ignore_ascii_case(r)) => Err(ApiError {
            class: ErrorClass::Permanent,
            code: "username_mismatch".to_owned(),
            message: format!(
                "the user found for this Username (UserId {id}) has another Username in \
                 DescribeUser (renamed since the run listed the users?); nothing was written"
            ),
            status: None,
            retry_after: None,
        }),
        _ => Ok(()),
    }
}

/// An AWS timestamp (epoch seconds, with a fraction) in epoch milliseconds.
fn epoch_millis(seconds: f64) -> Option<i64> {
    let millis = (seconds * 1000.0).round();
    // Within ±2^53, where an f64 holds every integer exactly.
    (millis.is_finite() && millis.abs() < 9.0e15).then_some(millis as i64)
}

/// The error code of a missing instance or user.
const NOT_FOUND: &str = "ResourceNotFoundException";

/// Merges the mapped members into the user's current `IdentityInfo`. Pure.
///
/// Returns the complete `IdentityInfo` to send (UpdateUserIdentityInfo replaces the whole
/// structure) and the members that differ, or refuses the record:
/// - SAML: a mapped `Email` is `invalid` (the identity provider owns it), and the `Email`
///   read from Connect is not sent back either;
/// - an existing directory: a change to FirstName, LastName or Email `failed`;
/// - a change to `Email` `failed` unless `allow_email_change` (the e-mail guard).
///
/// Values compare after the mapping's transforms (trim, lowercase, NFC, E.164).
pub fn merge(
    mut current: IdentityInfo,
    desired: &Desired<'_>,
    rules: Rules,
) -> Result<Merged<IdentityInfo>, Refusal> {
    let wanted = changes(desired);
    let changed = diff(&current, &wanted);
    let differs = |member: &str| changed.iter().any(|c| c.field == member);
    let refuse = |status, code, message: String| Refusal {
        status,
        code,
        message,
        changed: changed.clone(),
    };
    if rules.management == IdentityManagement::Saml && wanted.contains_key("Email") {
        return Err(refuse(
            Status::Invalid,
            "email_managed_by_saml",
            "Email: the instance uses SAML, whose identity provider owns each user's Email, \
             so it cannot be sent; remove Email from [fields]"
                .to_owned(),
        ));
    }
    if rules.management == IdentityManagement::ExistingDirectory {
        let managed: Vec<&str> = DIRECTORY_MEMBERS
            .into_iter()
            .filter(|m| differs(m))
            .collect();
        if !managed.is_empty() {
            return Err(refuse(
                Status::Failed,
                "managed_by_directory",
                format!(
                    "{} would change, but the instance's existing directory manages them \
                     (IdentityManagementType {}); change them in the directory, or remove \
                     them from [fields]",
                    managed.join(", "),
                    rules.management.name()
                ),
            ));
        }
    }
    if differs("Email") && !rules.allow_email_change {
        return Err(refuse(
            Status::Failed,
            "email_change_guarded",
            "Email: the user's login e-mail would change, which can hand the account to \
             whoever owns the new address; nothing was sent. Review the change, then set \
             [target] allow_email_change = true to allow it"
                .to_owned(),
        ));
    }
    for FieldChange { field, to, .. } in &changed {
        if to.is_empty() {
            current.remove(field);
        } else {
            current.insert(field.clone(), to.clone());
        }
    }
    if rules.management == IdentityManagement::Saml {
        current.remove("Email");
    }
    Ok(Merged {
        write: current,
        changed,
    })
}

/// A query-string value, percent-encoded.
fn query_value(text: &str) -> String {
    path_segment(text)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstance {
    instance: Instance,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instance {
    identity_management_type: Option<IdentityManagement>,
    arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeUser {
    user: WireUser,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireUser {
    #[serde(default)]
    identity_info: WireIdentity,
    username: Option<String>,
    last_modified_time: Option<f64>,
}

/// `UserIdentityInfo` on the wire.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireIdentity {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    secondary_email: Option<String>,
    mobile: Option<String>,
}

impl WireIdentity {
    fn into_map(self) -> IdentityInfo {
        [
            ("FirstName", self.first_name),
            ("LastName", self.last_name),
            ("Email", self.email),
            ("SecondaryEmail", self.secondary_email),
            ("Mobile", self.mobile),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value.filter(|v| !v.is_empty())?)))
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUsers {
    #[serde(default)]
    user_summary_list: Vec<UserSummary>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserSummary {
    id: Option<String>,
    username: Option<String>,
    #[serde(default)]
    last_modified_time: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SearchUsers {
    #[serde(default)]
    users: Vec<UserSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Value;

    fn info(pairs: &[(&str, &str)]) -> IdentityInfo {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rules(allow: bool, management: IdentityManagement) -> Rules {
        Rules {
            allow_email_change: allow,
            management,
        }
    }

    #[test]
    fn a_renamed_user_and_a_kept_member_are_told() {
        assert!(check_username("u1", Some("Agent1"), &["agent1"]).is_ok());
        assert!(check_username("u1", Some("agent1"), &["Agent1 ", "agent1"]).is_ok());
        assert!(check_username("u1", None, &["agent1"]).is_ok());
        let err = check_username("u1", Some("agent9"), &["agent1"]).unwrap_err();
        assert_eq!(err.code, "username_mismatch");
        assert!(!err.message.contains("agent"), "{}", err.message);
        let now = info(&[("FirstName", "Mary"), ("Mobile", "+12062340147")]);
        let cleared = ["Mobile".to_owned(), "SecondaryEmail".to_owned()];
        assert_eq!(still_there(&cleared, &now), ["Mobile"]);
    }

    #[test]
    fn last_modified_times_are_read_as_epoch_milliseconds() {
        let page: ListUsers = serde_json::from_str(
            r#"{"UserSummaryList": [
                {"Id": "u1", "Username": "a", "LastModifiedTime": 1.700000000123E9,
                 "LastModifiedRegion": "us-east-1"},
                {"Id": "u2", "Username": "b", "LastModifiedTime": 1700000001},
                {"Id": "u3", "Username": "c"}
            ]}"#,
        )
        .expect("the ListUsers shape");
        let times: Vec<Option<i64>> = page
            .user_summary_list
            .iter()
            .map(|u| u.last_modified_time.and_then(epoch_millis))
            .collect();
        assert_eq!(
            times,
            [Some(1_700_000_000_123), Some(1_700_000_001_000), None]
        );
        let user: DescribeUser = serde_json::from_str(
            r#"{"User": {"Id": "u1", "IdentityInfo": {"FirstName": "A"},
                "LastModifiedTime": 1.5E9, "LastModifiedRegion": "eu-west-2"}}"#,
        )
        .expect("the DescribeUser shape");
        assert_eq!(
            user.user.last_modified_time.and_then(epoch_millis),
            Some(1_500_000_000_000)
        );
        assert_eq!(epoch_millis(f64::NAN), None);
        assert_eq!(epoch_millis(1e300), None);
    }

    #[test]
    fn merge_keeps_unmapped_members_and_sends_the_whole_identity() {
        let current = info(&[
            ("FirstName", "Mary"),
            ("LastName", "Major"),
            ("Email", "mary@example.com"),
            ("Mobile", "+14155550100"),
        ]);
        let last = Value::Set("Majör".into());
        let secondary = Value::Set("m@example.org".into());
        let desired = [
            ("LastName".to_owned(), &last),
            ("SecondaryEmail".to_owned(), &secondary),
        ];
        let merged = merge(current, &desired, Rules::default()).expect("no rule broken");
        assert_eq!(
            merged.write,
            info(&[
                ("FirstName", "Mary"),
                ("LastName", "Majör"),
                ("Email", "mary@example.com"),
                ("SecondaryEmail", "m@example.org"),
                ("Mobile", "+14155550100"),
            ])
        );
        let fields: Vec<&str> = merged.changed.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["LastName", "SecondaryEmail"]);
    }

    #[test]
    fn a_cleared_member_is_removed_and_nothing_differs_means_no_change() {
        let current = info(&[("FirstName", "Mary"), ("Mobile", "+14155550100")]);
        let clear = Value::Clear;
        let same = Value::Set("Mary".into());
        let desired = [
            ("FirstName".to_owned(), &same),
            ("Mobile".to_owned(), &clear),
        ];
        let merged = merge(current.clone(), &desired, Rules::default()).expect("allowed");
        assert_eq!(merged.write, info(&[("FirstName", "Mary")]));
        let desired = [("FirstName".to_owned(), &same)];
        let merged = merge(current.clone(), &desired, Rules::default()).expect("allowed");
        assert!(merged.changed.is_empty());
        assert_eq!(merged.write, current);
    }

    #[test]
    fn the_email_guard_refuses_a_changed_login_unless_allowed() {
        let current = info(&[("Email", "mary@example.com")]);
        let new = Value::Set("mallory@example.net".into());
        let desired = [("Email".to_owned(), &new)];
        let refused = merge(
            current.clone(),
            &desired,
            rules(false, IdentityManagement::ConnectManaged),
        )
        .expect_err("guarded");
        assert_eq!(refused.code, "email_change_guarded");
        assert_eq!(refused.status, Status::Failed);
        assert!(refused.message.contains("allow_email_change"));
        assert!(
            !refused.message.contains("mallory"),
            "no values in messages"
        );
        let allowed = merge(
            current.clone(),
            &desired,
            rules(true, IdentityManagement::ConnectManaged),
        )
        .expect("allowed");
        assert_eq!(allowed.write["Email"], "mallory@example.net");
        // The same e-mail is not a change, so it is not guarded.
        let same = Value::Set("mary@example.com".into());
        let desired = [("Email".to_owned(), &same)];
        assert!(merge(current, &desired, Rules::default()).is_ok());
    }

    #[test]
    fn saml_never_sends_email_and_a_directory_keeps_its_members() {
        let current = info(&[("FirstName", "Mary"), ("Email", "mary@example.com")]);
        let email = Value::Set("mary@example.com".into());
        let desired = [("Email".to_owned(), &email)];
        let refused = merge(
            current.clone(),
            &desired,
            rules(true, IdentityManagement::Saml),
        )
        .expect_err("SAML owns Email");
        assert_eq!(refused.status, Status::Invalid);
        let mobile = Value::Set("+14155550100".into());
        let desired = [("Mobile".to_owned(), &mobile)];
        let merged = merge(
            current.clone(),
            &desired,
            rules(false, IdentityManagement::Saml),
        )
        .expect("Mobile is fine");
        assert!(
            !merged.write.contains_key("Email"),
            "SAML: Email is never sent"
        );

        let first = Value::Set("Maria".into());
        let desired = [
            ("FirstName".to_owned(), &first),
            ("Mobile".to_owned(), &mobile),
        ];
        let refused = merge(
            current.clone(),
            &desired,
            rules(true, IdentityManagement::ExistingDirectory),
        )
        .expect_err("the directory owns FirstName");
        assert_eq!(refused.code, "managed_by_directory");
        assert!(refused.message.contains("FirstName"));
        let desired = [("Mobile".to_owned(), &mobile)];
        let merged = merge(
            current,
            &desired,
            rules(false, IdentityManagement::ExistingDirectory),
        )
        .expect("Mobile is not the directory's");
        assert_eq!(
            merged.write["Email"], "mary@example.com",
            "sent back unchanged"
        );
    }
}
