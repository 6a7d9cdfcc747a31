//! Amazon Connect user operations: DescribeInstance, UpdateUserIdentityInfo, DescribeUser,
//! ListUsers and SearchUsers.
//!
//! DescribeInstance answers the seeded `IdentityManagementType`, which UpdateUserIdentityInfo
//! enforces as Connect does: with `SAML` an `Email` member is an error; with
//! `EXISTING_DIRECTORY` FirstName, LastName and Email cannot be changed (sending the current
//! values back is accepted).
//!
//! UpdateUserIdentityInfo is strict: the given `IdentityInfo` replaces the stored one, and a
//! member left out is cleared (an instance seeded with `"identity_update": "merge"` keeps it
//! instead; an instance's `"listed_usernames"` make ListUsers give stale names). Its members are checked as for an instance that manages
//! identities in Connect: FirstName 1–255 and LastName 1–256 characters, both in NFC; Mobile
//! E.164; SecondaryEmail the documented pattern. SearchUsers understands `StringCondition`
//! leaves (Username, FirstName, LastName, resourceId, RoutingProfileId; EXACT, STARTS_WITH,
//! CONTAINS) combined with `AndConditions` / `OrConditions`.
//!
//! DescribeUser's `User` and ListUsers' `UserSummary` carry `LastModifiedTime` (epoch
//! seconds with milliseconds, a JSON number) and `LastModifiedRegion`: a seeded user's own
//! members, else [`SEEDED_MODIFIED_AT`] and [`REGION`]. UpdateUserIdentityInfo sets them to
//! the emulator's clock (the system clock plus its offset, see [`super::clock`], and always at
//! least a millisecond later than before, so every write is seen as a change) and [`REGION`].

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::customer_profiles::{page_token, parse_page_token};
use super::operation::Operation;
use super::rules::{self, Violations};
use super::server::{App, Shared};
use super::state::{Instance, Record};
use super::wire::{self, ApiError};

/// The members of `UserIdentityInfo` that are stored.
const IDENTITY_MEMBERS: [&str; 5] = ["FirstName", "LastName", "Email", "SecondaryEmail", "Mobile"];
/// The Region the emulated instance lives in (`LastModifiedRegion`), and the one ARNs hold
/// when a request's signature names none.
pub const REGION: &str = "us-east-1";
/// `LastModifiedTime` of a seeded user whose seed gives none: 2025-01-01T00:00:00Z.
pub const SEEDED_MODIFIED_AT: f64 = 1_735_689_600.0;

/// The Connect routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/users/{instance}/{user}/identity-info",
            post(update_identity),
        )
        .route("/users/{instance}/{user}", get(describe))
        .route("/instance/{instance}", get(describe_instance_route))
        .route("/users-summary/{instance}", get(list))
        .route("/search-users", post(search))
}

async fn update_identity(
    Extract(app): Extract<App>,
    Path((instance, user)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::UpdateUserIdentityInfo, &headers, |app| {
        update_user_identity_info(app, &instance, &user, &body)
    })
    .await
}

async fn describe(
    Extract(app): Extract<App>,
    Path((instance, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::DescribeUser, &headers, |app| {
        describe_user(app, &Arns::of(app, &headers), &instance, &user)
    })
    .await
}

async fn describe_instance_route(
    Extract(app): Extract<App>,
    Path(instance): Path<String>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::DescribeInstance, &headers, |app| {
        describe_instance(app, &Arns::of(app, &headers), &instance)
    })
    .await
}

async fn list(
    Extract(app): Extract<App>,
    Path(instance): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::ListUsers, &headers, |app| {
        list_users(app, &Arns::of(app, &headers), &instance, &query)
    })
    .await
}

async fn search(Extract(app): Extract<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.serve(Operation::SearchUsers, &headers, |app| {
        search_users(app, &Arns::of(app, &headers), &body)
    })
    .await
}

fn invalid_parameter(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

fn check(violations: &Violations) -> Result<(), ApiError> {
    match violations.message() {
        Some(message) => Err(invalid_parameter(message)),
        None => Ok(()),
    }
}

fn instance_mut<'a>(
    instances: &'a mut BTreeMap<String, Instance>,
    id: &str,
) -> Result<&'a mut Instance, ApiError> {
    instances
        .get_mut(id)
        .ok_or_else(|| not_found(format!("Instance {id} does not exist")))
}

fn user_mut<'a>(instance: &'a mut Instance, id: &str) -> Result<&'a mut Record, ApiError> {
    instance
        .users
        .get_mut(id)
        .ok_or_else(|| not_found(format!("User {id} does not exist")))
}

fn check_instance_id(id: &str, violations: &mut Violations) {
    violations.length("instanceId", id, 1, 100);
}

fn update_user_identity_info(
    app: &Shared,
    instance: &str,
    user: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body = wire::parse_object(body).map_err(invalid_request)?;
    let mut violations = Violations::default();
    check_instance_id(instance, &mut violations);
    let identity = check_identity(body.get("IdentityInfo"), &mut violations);
    check(&violations)?;
    let identity = identity.unwrap_or_default();
    let now = app.now_millis();
    app.with_state(|state| {
        let instance = instance_mut(&mut state.instances, instance)?;
        let management = instance.identity_management().to_owned();
        let merges = instance.identity_update.as_deref() == Some("merge");
        let record = user_mut(instance, user)?;
        check_management(&management, record, &identity)?;
        let identity = if merges {
            let mut merged = record
                .get("IdentityInfo")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            merged.extend(identity);
            merged
        } else {
            identity
        };
        record.insert("IdentityInfo".to_string(), Value::Object(identity));
        touch(record, now);
        Ok::<_, ApiError>(())
    })?;
    Ok(wire::empty_ok())
}

/// What the instance's identity management forbids: any `Email` with SAML; a change of
/// FirstName, LastName or Email with an existing directory.
fn check_management(
    management: &str,
    record: &Record,
    identity: &Map<String, Value>,
) -> Result<(), ApiError> {
    if management == "SAML" && identity.contains_key("Email") {
        return Err(invalid_request(
            "Email cannot be specified for an instance that uses SAML for identity management",
        ));
    }
    if management == "EXISTING_DIRECTORY" {
        let current = record.get("IdentityInfo").and_then(Value::as_object);
        let stored = |m: &str| current.and_then(|c| c.get(m)).cloned();
        for member in ["FirstName", "LastName", "Email"] {
            if identity.get(member).cloned() != stored(member) {
                return Err(invalid_request(format!(
                    "{member} cannot be updated: the instance's directory manages it"
                )));
            }
        }
    }
    Ok(())
}

fn describe_instance(app: &Shared, arns: &Arns, instance: &str) -> Result<Response, ApiError> {
    let mut violations = Violations::default();
    check_instance_id(instance, &mut violations);
    check(&violations)?;
    let body = app.with_state(|state| {
        let data = instance_mut(&mut state.instances, instance)?;
        Ok::<_, ApiError>(json!({ "Instance": {
            "Id": instance,
            "Arn": arns.instance(instance),
            "IdentityManagementType": data.identity_management(),
            "InstanceStatus": "ACTIVE",
            "InboundCallsEnabled": true,
            "OutboundCallsEnabled": true,
        }}))
    })?;
    Ok(wire::json_response(StatusCode::OK, &body))
}

/// Checks an `IdentityInfo` and returns its known members.
fn check_identity(
    value: Option<&Value>,
    violations: &mut Violations,
) -> Option<Map<String, Value>> {
    let Some(value) = value else {
        violations.missing("identityInfo");
        return None;
    };
    let Some(info) = value.as_object() else {
        violations.add("identityInfo", "Member must be a structure");
        return None;
    };
    check_name(
        info.get("FirstName"),
        "identityInfo.firstName",
        255,
        violations,
    );
    check_name(
        info.get("LastName"),
        "identityInfo.lastName",
        256,
        violations,
    );
    if let Some(value) = info.get("Email") {
        violations.string("identityInfo.email", value, 0, usize::MAX);
    }
    if let Some(text) = info
        .get("SecondaryEmail")
        .and_then(|v| violations.string("identityInfo.secondaryEmail", v, 0, usize::MAX))
    {
        violations.pattern(
            "identityInfo.secondaryEmail",
            rules::is_connect_email(text),
            r"(?=^.{0,265}$)[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}",
        );
    }
    if let Some(text) = info
        .get("Mobile")
        .and_then(|v| violations.string("identityInfo.mobile", v, 0, usize::MAX))
    {
        violations.pattern(
            "identityInfo.mobile",
            rules::is_e164(text),
            r"^\+[1-9]\d{1,14}$",
        );
    }
    let known = IDENTITY_MEMBERS
        .iter()
        .filter_map(|m| info.get(*m).map(|v| (m.to_string(), v.clone())))
        .collect();
    Some(known)
}

fn check_name(value: Option<&Value>, path: &str, max: usize, violations: &mut Violations) {
    if let Some(text) = value.and_then(|v| violations.string(path, v, 1, max)) {
        violations.nfc(path, text);
    }
}

/// A user's `LastModifiedTime` (epoch seconds) and `LastModifiedRegion`.
fn last_modified(record: &Record) -> (f64, String) {
    let time = record
        .get("LastModifiedTime")
        .and_then(Value::as_f64)
        .unwrap_or(SEEDED_MODIFIED_AT);
    let region = record
        .get("LastModifiedRegion")
        .and_then(Value::as_str)
        .unwrap_or(REGION);
    (time, region.to_string())
}

/// Marks a user modified now: the emulator's clock to the millisecond, never earlier than a
/// millisecond after the time it had.
fn touch(record: &mut Record, now_millis: i64) {
    let before = (last_modified(record).0 * 1000.0).round() as i64;
    let millis = now_millis.max(before + 1);
    record.insert(
        "LastModifiedTime".to_string(),
        json!(millis as f64 / 1000.0),
    );
    record.insert("LastModifiedRegion".to_string(), json!(REGION));
}

/// Adds `LastModifiedTime` and `LastModifiedRegion` (a seeded user may lack them).
fn with_last_modified(item: &mut Value, record: &Record) {
    let (time, region) = last_modified(record);
    item["LastModifiedTime"] = json!(time);
    item["LastModifiedRegion"] = json!(region);
}

/// The ARNs of one request's answer: the emulator's account and the region the request is
/// signed for (a client that signs for `eu-west-2` talks to Connect in `eu-west-2`).
struct Arns {
    prefix: String,
}

impl Arns {
    fn of(app: &Shared, headers: &HeaderMap) -> Arns {
        let account = app.with_state(|state| state.account().to_string());
        let region = wire::signing_region(headers).unwrap_or(REGION);
        Arns::new(&account, region)
    }

    fn new(account: &str, region: &str) -> Arns {
        Arns {
            prefix: format!("arn:aws:connect:{region}:{account}:instance"),
        }
    }

    /// `arn:aws:connect:REGION:ACCOUNT:instance/ID`.
    fn instance(&self, instance: &str) -> String {
        format!("{}/{instance}", self.prefix)
    }

    /// `arn:aws:connect:REGION:ACCOUNT:instance/ID/agent/USER`.
    fn user(&self, instance: &str, user: &str) -> String {
        format!("{}/{instance}/agent/{user}", self.prefix)
    }
}

/// A stored user as DescribeUser's `User`: the stored members plus `Id` and `Arn`.
fn user_json(arns: &Arns, instance: &str, id: &str, record: &Record) -> Value {
    let mut user: Map<String, Value> = record.clone().into_iter().collect();
    user.insert("Id".to_string(), Value::String(id.to_string()));
    user.insert("Arn".to_string(), Value::String(arns.user(instance, id)));
    Value::Object(user)
}

fn describe_user(
    app: &Shared,
    arns: &Arns,
    instance: &str,
    user: &str,
) -> Result<Response, ApiError> {
    let mut violations = Violations::default();
    check_instance_id(instance, &mut violations);
    check(&violations)?;
    let body = app.with_state(|state| {
        let record = user_mut(instance_mut(&mut state.instances, instance)?, user)?;
        let mut user_value = user_json(arns, instance, user, record);
        with_last_modified(&mut user_value, record);
        Ok::<_, ApiError>(json!({ "User": user_value }))
    })?;
    Ok(wire::json_response(StatusCode::OK, &body))
}

/// Reads a page size (`1..=max`, or `default`) and a token from an earlier answer.
fn check_page(
    size: Option<&Value>,
    token: Option<&Value>,
    (path, max, default): (&str, usize, usize),
    violations: &mut Violations,
) -> (usize, usize) {
    let size = match size {
        None => default,
        Some(value) => match value.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=max).contains(&n) => n,
            _ => {
                violations.add(
                    path,
                    &format!("Member must be an integer between 1 and {max}"),
                );
                default
            }
        },
    };
    let offset = match token.map(|t| t.as_str().and_then(parse_page_token)) {
        None => 0,
        Some(Some(offset)) => offset,
        Some(None) => {
            violations.add(
                "nextToken",
                "Member must be a token returned by this operation",
            );
            0
        }
    };
    (size, offset)
}

/// One page of `items` and the token of the next page, if any.
fn paginate(items: Vec<Value>, size: usize, offset: usize) -> (Vec<Value>, Option<String>) {
    let more = offset + size < items.len();
    let page = items.into_iter().skip(offset).take(size).collect();
    (page, more.then(|| page_token(offset + size)))
}

fn list_users(
    app: &Shared,
    arns: &Arns,
    instance: &str,
    query: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let mut violations = Violations::default();
    check_instance_id(instance, &mut violations);
    let size = query
        .get("maxResults")
        .map(|text| text.parse::<u64>().map(Value::from).unwrap_or(Value::Null));
    let token = query.get("nextToken").map(|t| Value::String(t.clone()));
    let (size, offset) = check_page(
        size.as_ref(),
        token.as_ref(),
        ("maxResults", 1000, 100),
        &mut violations,
    );
    check(&violations)?;
    let summaries = app.with_state(|state| {
        let instance_data = instance_mut(&mut state.instances, instance)?;
        let list: Vec<Value> = instance_data
            .users
            .iter()
            .map(|(id, record)| {
                let mut item = summary(arns, instance, id, record);
                if let Some(listed) = instance_data.listed_usernames.get(id) {
                    item["Username"] = Value::String(listed.clone());
                }
                item
            })
            .collect();
        Ok::<_, ApiError>(list)
    })?;
    let (page, next) = paginate(summaries, size, offset);
    let mut body = json!({ "UserSummaryList": page });
    if let Some(next) = next {
        body["NextToken"] = Value::String(next);
    }
    Ok(wire::json_response(StatusCode::OK, &body))
}

fn summary(arns: &Arns, instance: &str, id: &str, record: &Record) -> Value {
    let mut item = json!({ "Id": id, "Arn": arns.user(instance, id) });
    if let Some(username) = record.get("Username") {
        item["Username"] = username.clone();
    }
    with_last_modified(&mut item, record);
    item
}

fn search_users(app: &Shared, arns: &Arns, body: &[u8]) -> Result<Response, ApiError> {
    let body = wire::parse_object(body).map_err(invalid_request)?;
    let mut violations = Violations::default();
    let instance = match body.get("InstanceId") {
        None => {
            violations.missing("instanceId");
            None
        }
        Some(value) => violations
            .string("instanceId", value, 1, 100)
            .map(str::to_string),
    };
    let (size, offset) = check_page(
        body.get("MaxResults"),
        body.get("NextToken"),
        ("maxResults", 500, 100),
        &mut violations,
    );
    check(&violations)?;
    let instance = instance.unwrap_or_default();
    let criteria = body.get("SearchCriteria").cloned().unwrap_or(Value::Null);
    let found = app.with_state(|state| {
        let data = instance_mut(&mut state.instances, &instance)?;
        let list: Vec<Value> = data
            .users
            .iter()
            .filter(|(id, record)| matches_criteria(&criteria, id, record))
            .map(|(id, record)| search_summary(arns, &instance, id, record))
            .collect();
        Ok::<_, ApiError>(list)
    })?;
    let total = found.len();
    let (page, next) = paginate(found, size, offset);
    let mut body = json!({ "Users": page, "ApproximateTotalCount": total });
    if let Some(next) = next {
        body["NextToken"] = Value::String(next);
    }
    Ok(wire::json_response(StatusCode::OK, &body))
}

/// A `UserSearchSummary`: like `User`, with `IdentityInfo` cut to first and last name.
fn search_summary(arns: &Arns, instance: &str, id: &str, record: &Record) -> Value {
    let mut user = user_json(arns, instance, id, record);
    if let Some(info) = record.get("IdentityInfo").and_then(Value::as_object) {
        let lite: Map<String, Value> = ["FirstName", "LastName"]
            .iter()
            .filter_map(|m| info.get(*m).map(|v| (m.to_string(), v.clone())))
            .collect();
        user["IdentityInfo"] = Value::Object(lite);
    }
    // UserSearchSummary has no LastModifiedTime / LastModifiedRegion.
    if let Some(members) = user.as_object_mut() {
        members.remove("LastModifiedTime");
        members.remove("LastModifiedRegion");
    }
    user
}

/// Evaluates a `UserSearchCriteria`; every part present must hold (none: everything matches).
fn matches_criteria(criteria: &Value, id: &str, record: &Record) -> bool {
    let Some(criteria) = criteria.as_object() else {
        return true;
    };
    let list = |key: &str| criteria.get(key).and_then(Value::as_array);
    let or_ok = list("OrConditions")
        .is_none_or(|items| items.iter().any(|c| matches_criteria(c, id, record)));
    let and_ok = list("AndConditions")
        .is_none_or(|items| items.iter().all(|c| matches_criteria(c, id, record)));
    let leaf_ok = criteria
        .get("StringCondition")
        .is_none_or(|c| matches_string_condition(c, id, record));
    or_ok && and_ok && leaf_ok
}

fn matches_string_condition(condition: &Value, id: &str, record: &Record) -> bool {
    let text = |key: &str| condition.get(key).and_then(Value::as_str).unwrap_or("");
    let Some(field) = user_field(text("FieldName"), id, record) else {
        return false;
    };
    let value = text("Value");
    match text("ComparisonType") {
        "STARTS_WITH" => field.starts_with(value),
        "CONTAINS" => field.contains(value),
        _ => field == value,
    }
}

fn user_field(name: &str, id: &str, record: &Record) -> Option<String> {
    let member = |m: &str| record.get(m).and_then(Value::as_str).map(str::to_string);
    let identity = |m: &str| {
        record
            .get("IdentityInfo")
            .and_then(|info| info.get(m))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match name {
        "Username" => member("Username"),
        "FirstName" => identity("FirstName"),
        "LastName" => identity("LastName"),
        "RoutingProfileId" => member("RoutingProfileId"),
        "resourceId" => Some(id.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules() {
        let mut v = Violations::default();
        let info = json!({"FirstName": "Mary", "LastName": "Major", "Mobile": "+14155550100",
                          "SecondaryEmail": "m@example.com", "Other": "x"});
        let known = check_identity(Some(&info), &mut v);
        assert_eq!(v.message(), None);
        assert_eq!(known.map(|k| k.len()), Some(4));

        let mut v = Violations::default();
        let bad = json!({"FirstName": "", "LastName": "e\u{301}", "Mobile": "555"});
        check_identity(Some(&bad), &mut v);
        let message = v.message().unwrap_or_default();
        assert!(message.starts_with("3 validation errors"), "{message}");
    }

    #[test]
    fn a_write_moves_last_modified_time_forward_even_within_a_millisecond() {
        let mut record = Record::new();
        assert_eq!(
            last_modified(&record),
            (SEEDED_MODIFIED_AT, REGION.to_string())
        );
        // A seeded time in the future: the write still moves it forward, by a millisecond.
        record.insert("LastModifiedTime".to_string(), json!(4_000_000_000.5));
        record.insert("LastModifiedRegion".to_string(), json!("eu-west-2"));
        touch(&mut record, 1_767_225_600_000);
        assert_eq!(
            last_modified(&record),
            (4_000_000_000.501, REGION.to_string())
        );
        let mut record = Record::new();
        touch(&mut record, 1_767_225_600_000);
        let first = last_modified(&record).0;
        touch(&mut record, 1_767_225_600_000);
        assert!(last_modified(&record).0 > first);
        assert!(first > SEEDED_MODIFIED_AT);
        let mut summary = json!({});
        with_last_modified(&mut summary, &record);
        assert_eq!(summary["LastModifiedRegion"], REGION);
        assert!(summary["LastModifiedTime"].is_f64());
    }

    #[test]
    fn criteria_combine() {
        let record: Record = [
            ("Username".to_string(), json!("mary")),
            ("IdentityInfo".to_string(), json!({"FirstName": "Mary"})),
        ]
        .into_iter()
        .collect();
        let exact = json!({"StringCondition": {"FieldName": "Username", "Value": "mary", "ComparisonType": "EXACT"}});
        assert!(matches_criteria(&exact, "u1", &record));
        let or = json!({"OrConditions": [
            {"StringCondition": {"FieldName": "Username", "Value": "bob", "ComparisonType": "EXACT"}},
            {"StringCondition": {"FieldName": "FirstName", "Value": "Ma", "ComparisonType": "STARTS_WITH"}}
        ]});
        assert!(matches_criteria(&or, "u1", &record));
        let and = json!({"AndConditions": [exact, {"StringCondition": {"FieldName": "LastName", "Value": "x"}}]});
        assert!(!matches_criteria(&and, "u1", &record));
    }
}
