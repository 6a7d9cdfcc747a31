//! Amazon Connect Customer Profiles: GetDomain, UpdateProfile, CreateProfile, SearchProfiles
//! and BatchGetProfile.
//!
//! - UpdateProfile (`PUT /domains/{DomainName}/profiles`): an absent member keeps the stored
//!   value, `""` removes it; the four addresses merge per sub-field and `Attributes` per key
//!   the same way; `EngagementPreferences` is replaced whole.
//! - CreateProfile (`POST /domains/{DomainName}/profiles`): every string needs 1 character at
//!   least; answers a new 32-hex `ProfileId`.
//! - SearchProfiles (`POST /domains/{DomainName}/profiles/search?max-results=&next-token=`):
//!   `_profileId`, `_email` (the three e-mail members), `_phone` (the four phone members),
//!   `_account` (AccountNumber), `_fullName` (First Middle Last); any other key that does not
//!   start with `_` is looked up in `Attributes`; other predefined keys find nothing
//!   ([`key_values`]). Results come in ProfileId order, 20 per page by default. The domain's
//!   index ([`super::search_index`]) names the candidates, so a search costs its matches,
//!   not the domain's size.
//! - BatchGetProfile (`POST /domains/{DomainName}/batch-get-profiles`, body `{"ProfileIds":
//!   [...]}`): 1–20 ids, each `[a-f0-9]{32}` (else 400 naming `profileIds` or
//!   `profileIds.N` and the rule). Answers `{"Profiles": [...], "Errors": [...]}`: the found
//!   profiles in request order, in SearchProfiles' item shape without `FoundByItems`; a
//!   missing id is an `Errors` entry `{"Code": "ResourceNotFoundException", "Message":
//!   "Profile not found", "ProfileId": id}` (the service does not document which code it
//!   uses); an id listed twice is answered once; a missing domain is a 404 for the whole call.
//!   An id given to `--batch-error-id` is answered with an `InternalServerException` entry
//!   instead, found or not, to rehearse per-id errors.
//!
//! **Expiry.** CreateProfile and UpdateProfile set the profile's last update (the domain's
//! `updated`, on the emulator's clock); GetDomain answers the domain's `expiration_days` as
//! `DefaultExpirationDays`. A profile not updated for longer than that is gone, as the
//! service removes it: GetDomain and SearchProfiles first remove every expired profile of the
//! domain (which reads the profiles only when the oldest last update may be past the
//! expiration, [`Domain::remove_expired`]), UpdateProfile and BatchGetProfile treat an
//! expired one as absent (and remove it).

use crate::schema::{ADDRESS_MEMBERS, ADDRESS_PARTS, GENDER, PARTY_TYPE, PROFILE_TYPE};
use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use super::operation::Operation;
use super::rules::{self, Violations, camel};
use super::search_index::key_values;
use super::server::{App, Shared};
use super::state::{Domain, Record};
use super::wire::{self, ApiError};

/// String members with the 0–255 (update) or 1–255 (create) length rule.
const STRING_MEMBERS: [&str; 15] = [
    "AccountNumber",
    "BusinessName",
    "FirstName",
    "MiddleName",
    "LastName",
    "BirthDate",
    "PhoneNumber",
    "MobilePhoneNumber",
    "HomePhoneNumber",
    "BusinessPhoneNumber",
    "EmailAddress",
    "PersonalEmailAddress",
    "BusinessEmailAddress",
    "PartyTypeString",
    "GenderString",
];
/// The one string member with a 1000-character limit.
const LONG_MEMBER: &str = "AdditionalInformation";
/// Enum members and their values, as the model states them.
const ENUM_MEMBERS: [(&str, &[&str]); 3] = [
    ("PartyType", PARTY_TYPE),
    ("Gender", GENDER),
    ("ProfileType", PROFILE_TYPE),
];
const DEFAULT_PAGE: usize = 20;
/// The most ids one BatchGetProfile call takes (`BatchGetProfileIdList`).
const BATCH_MAX: usize = 20;

/// Whether a body is an update (empty strings allowed) or a create (1 character at least).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Update,
    Create,
}

impl Mode {
    fn min(self) -> usize {
        match self {
            Mode::Update => 0,
            Mode::Create => 1,
        }
    }
}

/// The Customer Profiles routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/domains/{domain}", get(describe_domain))
        .route("/domains/{domain}/profiles", put(update).post(create))
        .route("/domains/{domain}/profiles/search", post(search))
        .route("/domains/{domain}/profiles/delete", post(delete))
        .route("/domains/{domain}/batch-get-profiles", post(batch_get))
}

async fn describe_domain(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::GetDomain, &headers, |app| {
        get_domain(app, &domain)
    })
    .await
}

async fn update(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::UpdateProfile, &headers, |app| {
        update_profile(app, &domain, &body)
    })
    .await
}

async fn create(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::CreateProfile, &headers, |app| {
        create_profile(app, &domain, &body)
    })
    .await
}

async fn delete(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::DeleteProfile, &headers, |app| {
        delete_profile(app, &domain, &body)
    })
    .await
}

async fn search(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::SearchProfiles, &headers, |app| {
        search_profiles(app, &domain, &query, &body)
    })
    .await
}

async fn batch_get(
    Extract(app): Extract<App>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::BatchGetProfile, &headers, |app| {
        batch_get_profile(app, &domain, &body)
    })
    .await
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

fn check(violations: &Violations) -> Result<(), ApiError> {
    match violations.message() {
        Some(message) => Err(bad_request(message)),
        None => Ok(()),
    }
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    wire::parse_object(body).map_err(bad_request)
}

fn check_domain_name(domain: &str, violations: &mut Violations) {
    violations.length("domainName", domain, 1, 64);
    violations.pattern("domainName", rules::is_name(domain), "^[a-zA-Z0-9_-]+$");
}

fn domain_mut<'a>(
    domains: &'a mut BTreeMap<String, Domain>,
    name: &str,
) -> Result<&'a mut Domain, ApiError> {
    domains
        .get_mut(name)
        .ok_or_else(|| not_found(format!("Domain {name} does not exist")))
}

/// The emulator's domains were all created at one fixed instant (2026-01-01T00:00:00Z).
const CREATED_AT: i64 = 1_767_225_600;

fn get_domain(app: &Shared, domain: &str) -> Result<Response, ApiError> {
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    check(&violations)?;
    let at = app.moment();
    let (profiles, expiration_days) = app.with_state(|state| {
        let domain = domain_mut(&mut state.domains, domain)?;
        domain.remove_expired(at);
        Ok::<_, ApiError>((domain.profiles().len(), domain.expiration_days()))
    })?;
    Ok(wire::json_response(
        StatusCode::OK,
        &json!({
            "DomainName": domain,
            "DefaultExpirationDays": expiration_days,
            "CreatedAt": CREATED_AT,
            "LastUpdatedAt": CREATED_AT,
            "Stats": {"ProfileCount": profiles},
        }),
    ))
}

fn update_profile(app: &Shared, domain: &str, body: &[u8]) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    let id = check_profile_id(body.get("ProfileId"), &mut violations);
    check_members(&body, Mode::Update, &mut violations);
    check(&violations)?;
    let id = id.unwrap_or_default();
    let at = app.moment();
    app.with_state(|state| {
        let data = domain_mut(&mut state.domains, domain)?;
        if data.update(&id, at, |profile| apply_update(profile, &body)) {
            Ok(())
        } else {
            Err(not_found(format!(
                "Profile {id} does not exist in domain {domain}"
            )))
        }
    })?;
    Ok(wire::json_response(
        StatusCode::OK,
        &json!({ "ProfileId": id }),
    ))
}

/// `DeleteProfile`: `{"ProfileId"}` in, `{"Message"}` out; a profile that does not exist
/// (or expired) is a `ResourceNotFoundException`, as the service answers.
fn delete_profile(app: &Shared, domain: &str, body: &[u8]) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    let id = check_profile_id(body.get("ProfileId"), &mut violations);
    check(&violations)?;
    let id = id.unwrap_or_default();
    let at = app.moment();
    app.with_state(|state| {
        let data = domain_mut(&mut state.domains, domain)?;
        if data.live_profile(&id, at).is_none() {
            return Err(not_found(format!(
                "Profile {id} does not exist in domain {domain}"
            )));
        }
        data.remove(&id);
        Ok(())
    })?;
    Ok(wire::json_response(
        StatusCode::OK,
        &json!({ "Message": "Profile deleted successfully" }),
    ))
}

fn check_profile_id(value: Option<&Value>, violations: &mut Violations) -> Option<String> {
    let Some(value) = value else {
        violations.missing("profileId");
        return None;
    };
    let id = violations.string("profileId", value, 0, usize::MAX)?;
    violations.pattern("profileId", rules::is_profile_id(id), "[a-f0-9]{32}");
    Some(id.to_string())
}

fn create_profile(app: &Shared, domain: &str, body: &[u8]) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    check_members(&body, Mode::Create, &mut violations);
    check(&violations)?;
    let mut profile = Record::new();
    apply_update(&mut profile, &body);
    let at = app.moment();
    let id = app.with_state(|state| {
        let domain = domain_mut(&mut state.domains, domain)?;
        let mut id = app.new_hex_id();
        while domain.live_profile(&id, at).is_some() {
            id = app.new_hex_id();
        }
        domain.create(&id, profile, at);
        Ok::<_, ApiError>(id)
    })?;
    Ok(wire::json_response(
        StatusCode::OK,
        &json!({ "ProfileId": id }),
    ))
}

/// Checks every known member of a profile body against the model's constraints.
fn check_members(body: &Map<String, Value>, mode: Mode, violations: &mut Violations) {
    for member in STRING_MEMBERS {
        if let Some(value) = body.get(member) {
            violations.string(&camel(member), value, mode.min(), 255);
        }
    }
    if let Some(value) = body.get(LONG_MEMBER) {
        violations.string(&camel(LONG_MEMBER), value, mode.min(), 1000);
    }
    for (member, allowed) in ENUM_MEMBERS {
        if let Some(value) = body.get(member) {
            let path = camel(member);
            if let Some(text) = violations.string(&path, value, 0, usize::MAX) {
                violations.one_of(&path, text, allowed);
            }
        }
    }
    for member in ADDRESS_MEMBERS {
        if let Some(value) = body.get(*member) {
            check_address(&camel(member), value, mode, violations);
        }
    }
    if let Some(value) = body.get("Attributes") {
        check_attributes(value, mode, violations);
    }
    if let Some(value) = body.get("EngagementPreferences")
        && !value.is_object()
    {
        violations.add("engagementPreferences", "Member must be a structure");
    }
}

fn check_address(path: &str, value: &Value, mode: Mode, violations: &mut Violations) {
    let Some(address) = value.as_object() else {
        violations.add(path, "Member must be a structure");
        return;
    };
    for field in ADDRESS_PARTS {
        if let Some(value) = address.get(*field) {
            violations.string(&format!("{path}.{}", camel(field)), value, mode.min(), 255);
        }
    }
}

fn check_attributes(value: &Value, mode: Mode, violations: &mut Violations) {
    let Some(attributes) = value.as_object() else {
        violations.add("attributes", "Member must be a map");
        return;
    };
    for (key, value) in attributes {
        let count = key.chars().count();
        if !(1..=255).contains(&count) {
            violations.add(
                "attributes",
                "Map keys must satisfy constraint: [Member must have length between 1 and 255]",
            );
        }
        violations.string(&format!("attributes.{key}"), value, mode.min(), 255);
    }
}

/// Applies a checked body: absent keeps, `""` removes, addresses and attributes merge.
fn apply_update(profile: &mut Record, body: &Map<String, Value>) {
    let scalars = STRING_MEMBERS
        .into_iter()
        .chain([LONG_MEMBER])
        .chain(ENUM_MEMBERS.map(|(member, _)| member));
    for member in scalars {
        if let Some(Value::String(text)) = body.get(member) {
            if text.is_empty() {
                profile.remove(member);
            } else {
                profile.insert(member.to_string(), Value::String(text.clone()));
            }
        }
    }
    for member in ADDRESS_MEMBERS {
        if let Some(Value::Object(fields)) = body.get(*member) {
            let allowed = ADDRESS_PARTS;
            merge_map(profile, member, fields, |key| allowed.contains(&key));
        }
    }
    if let Some(Value::Object(attributes)) = body.get("Attributes") {
        merge_map(profile, "Attributes", attributes, |_| true);
    }
    if let Some(value) = body.get("EngagementPreferences") {
        profile.insert("EngagementPreferences".to_string(), value.clone());
    }
}

fn set_or_remove(record: &mut Map<String, Value>, key: &str, text: &str) {
    if text.is_empty() {
        record.remove(key);
    } else {
        record.insert(key.to_string(), Value::String(text.to_string()));
    }
}

/// Merges string `changes` into the object `member` of `profile`, per key; drops it if empty.
fn merge_map(
    profile: &mut Record,
    member: &str,
    changes: &Map<String, Value>,
    keep_key: impl Fn(&str) -> bool,
) {
    let mut current = match profile.remove(member) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (key, value) in changes {
        if let Value::String(text) = value
            && keep_key(key)
        {
            set_or_remove(&mut current, key, text);
        }
    }
    if !current.is_empty() {
        profile.insert(member.to_string(), Value::Object(current));
    }
}

/// One search key and its values.
#[derive(Debug)]
struct SearchKey {
    name: String,
    values: Vec<String>,
}

fn search_profiles(
    app: &Shared,
    domain: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    let page = check_page(query, &mut violations);
    let keys = check_search_keys(&body, &mut violations);
    let all = check_logical_operator(&body, &mut violations);
    check(&violations)?;
    let (max, offset) = page.unwrap_or((DEFAULT_PAGE, 0));
    let at = app.moment();
    let (items, total) = app.with_state(|state| {
        let domain = domain_mut(&mut state.domains, domain)?;
        domain.remove_expired(at);
        let found = find_profiles(domain, &keys, all);
        let total = found.len();
        let items: Vec<Value> = found
            .into_iter()
            .skip(offset)
            .take(max)
            .map(|(id, profile, hits)| profile_item(id, profile, hits))
            .collect();
        Ok::<_, ApiError>((items, total))
    })?;
    let mut response = json!({ "Items": items });
    if offset + max < total {
        response["NextToken"] = Value::String(page_token(offset + max));
    }
    Ok(wire::json_response(StatusCode::OK, &response))
}

fn batch_get_profile(app: &Shared, domain: &str, body: &[u8]) -> Result<Response, ApiError> {
    let body = parse_body(body)?;
    let mut violations = Violations::default();
    check_domain_name(domain, &mut violations);
    let ids = check_profile_ids(body.get("ProfileIds"), &mut violations);
    check(&violations)?;
    let mut profiles = Vec::new();
    let mut errors = Vec::new();
    let at = app.moment();
    app.with_state(|state| {
        let domain = domain_mut(&mut state.domains, domain)?;
        let mut seen = std::collections::BTreeSet::new();
        for id in &ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            if app.batch_error(id) {
                errors.push(batch_error(id, "InternalServerException", "Internal error"));
            } else if let Some(profile) = domain.live_profile(id, at) {
                profiles.push(profile_json(id, profile));
            } else {
                errors.push(batch_error(
                    id,
                    "ResourceNotFoundException",
                    "Profile not found",
                ));
            }
        }
        Ok::<_, ApiError>(())
    })?;
    Ok(wire::json_response(
        StatusCode::OK,
        &json!({ "Profiles": profiles, "Errors": errors }),
    ))
}

/// Checks `ProfileIds`: a list of 1–20 strings, each `[a-f0-9]{32}`.
fn check_profile_ids(value: Option<&Value>, violations: &mut Violations) -> Vec<String> {
    let Some(value) = value else {
        violations.missing("profileIds");
        return Vec::new();
    };
    let Some(list) = value.as_array() else {
        violations.add("profileIds", "Member must be a list");
        return Vec::new();
    };
    if list.is_empty() {
        violations.add(
            "profileIds",
            "Member must have length greater than or equal to 1",
        );
    } else if list.len() > BATCH_MAX {
        violations.add(
            "profileIds",
            &format!("Member must have length less than or equal to {BATCH_MAX}"),
        );
    }
    let mut ids = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = format!("profileIds.{}", i + 1);
        if let Some(id) = violations.string(&path, item, 0, usize::MAX) {
            violations.pattern(&path, rules::is_profile_id(id), "[a-f0-9]{32}");
            ids.push(id.to_string());
        }
    }
    ids
}

fn batch_error(id: &str, code: &str, message: &str) -> Value {
    json!({ "Code": code, "Message": message, "ProfileId": id })
}

/// Reads `max-results` (1–100, default 20) and `next-token` (from an earlier answer).
fn check_page(
    query: &BTreeMap<String, String>,
    violations: &mut Violations,
) -> Option<(usize, usize)> {
    let max = match query.get("max-results") {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                violations.add("maxResults", "Member must be an integer between 1 and 100");
                return None;
            }
        },
    };
    let offset = match query.get("next-token") {
        None => 0,
        Some(token) => match parse_page_token(token) {
            Some(offset) => offset,
            None => {
                violations.add(
                    "nextToken",
                    "Member must be a token returned by SearchProfiles",
                );
                return None;
            }
        },
    };
    Some((max, offset))
}

/// Page tokens are opaque to clients; here they encode the offset of the next page.
pub(crate) fn page_token(offset: usize) -> String {
    format!("page-{offset:08x}")
}

pub(crate) fn parse_page_token(token: &str) -> Option<usize> {
    let hex = token.strip_prefix("page-")?;
    usize::from_str_radix(hex, 16).ok()
}

fn check_search_keys(body: &Map<String, Value>, violations: &mut Violations) -> Vec<SearchKey> {
    let mut keys = Vec::new();
    if let Some(key) = check_search_key(body, "", violations) {
        keys.push(key);
    }
    let Some(extra) = body.get("AdditionalSearchKeys") else {
        return keys;
    };
    let Some(extra) = extra.as_array() else {
        violations.add("additionalSearchKeys", "Member must be a list");
        return keys;
    };
    if !(1..=4).contains(&extra.len()) {
        violations.add(
            "additionalSearchKeys",
            "Member must have length between 1 and 4",
        );
    }
    for (i, item) in extra.iter().enumerate() {
        let prefix = format!("additionalSearchKeys.{}.", i + 1);
        match item.as_object() {
            Some(item) => keys.extend(check_search_key(item, &prefix, violations)),
            None => violations.add(&prefix, "Member must be a structure"),
        }
    }
    keys
}

fn check_search_key(
    object: &Map<String, Value>,
    prefix: &str,
    violations: &mut Violations,
) -> Option<SearchKey> {
    let name_path = format!("{prefix}keyName");
    let values_path = format!("{prefix}values");
    let name = match object.get("KeyName") {
        None => {
            violations.missing(&name_path);
            None
        }
        Some(value) => violations.string(&name_path, value, 1, 64).map(|name| {
            violations.pattern(&name_path, rules::is_name(name), "^[a-zA-Z0-9_-]+$");
            name.to_string()
        }),
    };
    let values = match object.get("Values") {
        None => {
            violations.missing(&values_path);
            None
        }
        Some(value) => check_values(&values_path, value, violations),
    };
    Some(SearchKey {
        name: name?,
        values: values?,
    })
}

fn check_values(path: &str, value: &Value, violations: &mut Violations) -> Option<Vec<String>> {
    let Some(list) = value.as_array() else {
        violations.add(path, "Member must be a list");
        return None;
    };
    let mut values = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = format!("{path}.{}", i + 1);
        values.extend(violations.string(&path, item, 1, 255).map(str::to_string));
    }
    Some(values)
}

/// True for AND, false for OR (the default).
fn check_logical_operator(body: &Map<String, Value>, violations: &mut Violations) -> bool {
    let Some(value) = body.get("LogicalOperator") else {
        return false;
    };
    match violations.string("logicalOperator", value, 0, usize::MAX) {
        Some(text) => {
            violations.one_of("logicalOperator", text, &["AND", "OR"]);
            text == "AND"
        }
        None => false,
    }
}

/// A profile SearchProfiles found: its id, its record and its `FoundByItems`.
type Found<'a> = (&'a str, &'a Record, Vec<Value>);

/// Every profile matching the keys (all of them when `all`, else any), in ProfileId order,
/// as SearchProfiles returns it: the domain's index names the candidates, and each is
/// checked as a scan of the whole domain would check it ([`matches`]).
fn find_profiles<'a>(domain: &'a Domain, keys: &'a [SearchKey], all: bool) -> Vec<Found<'a>> {
    candidates(domain, keys, all)
        .into_iter()
        .filter_map(|id| {
            let (id, profile) = domain.profiles().get_key_value(id)?;
            let hits = matches(id, profile, keys, all)?;
            Some((id.as_str(), profile, hits))
        })
        .collect()
}

/// The ids of the profiles holding a value of every key (`all`) or of any key, in order:
/// for `all`, those of the key with the fewest, the others checked by [`matches`].
fn candidates<'a>(domain: &'a Domain, keys: &'a [SearchKey], all: bool) -> BTreeSet<&'a str> {
    let per_key = keys.iter().map(|key| {
        key.values
            .iter()
            .flat_map(|value| domain.ids_holding(&key.name, value))
            .collect::<BTreeSet<&str>>()
    });
    if all {
        per_key.min_by_key(BTreeSet::len).unwrap_or_default()
    } else {
        per_key.flatten().collect()
    }
}

/// The `FoundByItems` of a profile if it matches the keys (all of them when `all`, else
/// any); none when it does not, or when there are no keys.
fn matches(id: &str, profile: &Record, keys: &[SearchKey], all: bool) -> Option<Vec<Value>> {
    let hits: Vec<Value> = keys
        .iter()
        .filter_map(|key| found_by(id, profile, key))
        .collect();
    let matched = if all {
        hits.len() == keys.len()
    } else {
        !hits.is_empty()
    };
    (matched && !keys.is_empty()).then_some(hits)
}

fn profile_item(id: &str, profile: &Record, hits: Vec<Value>) -> Value {
    let mut item = profile_json(id, profile);
    item["FoundByItems"] = Value::Array(hits);
    item
}

/// A stored profile as the API returns it (a `Profile` shape): its members and `ProfileId`.
fn profile_json(id: &str, profile: &Record) -> Value {
    let mut item: Map<String, Value> = profile.clone().into_iter().collect();
    item.insert("ProfileId".to_string(), Value::String(id.to_string()));
    Value::Object(item)
}

/// The `FoundByItems` entry for `key` if the profile matches it.
fn found_by(id: &str, profile: &Record, key: &SearchKey) -> Option<Value> {
    let candidates = key_values(id, profile, &key.name);
    let matched: Vec<&String> = key
        .values
        .iter()
        .filter(|value| candidates.iter().any(|c| c == *value))
        .collect();
    if matched.is_empty() {
        return None;
    }
    Some(json!({ "KeyName": key.name, "Values": matched }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn update_keeps_removes_and_merges() {
        let mut profile: Record = object(json!({
            "FirstName": "Ann", "LastName": "Lee",
            "Address": {"City": "Paris", "PostalCode": "75001"},
            "Attributes": {"a": "1", "b": "2"}
        }))
        .into_iter()
        .collect();
        apply_update(
            &mut profile,
            &object(json!({
                "FirstName": "Anne", "LastName": "",
                "Address": {"City": ""},
                "Attributes": {"a": "", "c": "3"}
            })),
        );
        let expected: Record = object(json!({
            "FirstName": "Anne",
            "Address": {"PostalCode": "75001"},
            "Attributes": {"b": "2", "c": "3"}
        }))
        .into_iter()
        .collect();
        assert_eq!(profile, expected);
    }

    #[test]
    fn create_refuses_empty_strings() {
        let mut violations = Violations::default();
        check_members(
            &object(json!({"FirstName": ""})),
            Mode::Create,
            &mut violations,
        );
        assert!(violations.message().is_some());
        let mut violations = Violations::default();
        check_members(
            &object(json!({"FirstName": ""})),
            Mode::Update,
            &mut violations,
        );
        assert!(violations.message().is_none());
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(parse_page_token(&page_token(40)), Some(40));
        assert_eq!(parse_page_token("nonsense"), None);
    }

    /// The indexed search checked against a scan of every profile (the search before the
    /// index), over random creates, updates, deletes, clock moves and expiration changes.
    mod indexed_search {
        use super::super::*;
        use crate::emulator::clock::{DAY, Moment};
        use proptest::prelude::*;

        /// The search as it was: every profile of the domain checked, none skipped.
        fn scan<'a>(domain: &'a Domain, keys: &[SearchKey], all: bool) -> Vec<Found<'a>> {
            domain
                .profiles()
                .iter()
                .filter_map(|(id, profile)| {
                    matches(id, profile, keys, all).map(|hits| (id.as_str(), profile, hits))
                })
                .collect()
        }

        const MEMBERS: [&str; 9] = [
            "FirstName",
            "MiddleName",
            "LastName",
            "EmailAddress",
            "BusinessEmailAddress",
            "PhoneNumber",
            "MobilePhoneNumber",
            "AccountNumber",
            "Attributes",
        ];
        const ATTRIBUTES: [&str; 3] = ["tier", "region", "_hidden"];
        const VALUES: [&str; 8] = ["", "a", "b", "Ann", "Lee", "a b", "Ann Lee", "Ann a Lee"];
        const KEYS: [&str; 9] = [
            "_email",
            "_phone",
            "_account",
            "_fullName",
            "_profileId",
            "tier",
            "region",
            "_hidden",
            "_unknown",
        ];

        fn id(n: usize) -> String {
            format!("{n:032x}")
        }

        /// A body of members set (to one of a few values, so that profiles share them) or
        /// removed (`""`).
        fn body() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec(
                (0..MEMBERS.len(), 0..VALUES.len(), 0..ATTRIBUTES.len()),
                0..5,
            )
            .prop_map(|members| {
                let mut body = Map::new();
                for (member, value, attribute) in members {
                    let text = Value::String(VALUES[value].to_string());
                    let value = match MEMBERS[member] {
                        "Attributes" => json!({ (ATTRIBUTES[attribute]): text }),
                        _ => text,
                    };
                    body.insert(MEMBERS[member].to_string(), value);
                }
                body
            })
        }

        fn search() -> impl Strategy<Value = (Vec<SearchKey>, bool)> {
            let key = (
                0..KEYS.len(),
                prop::collection::vec(0..VALUES.len() + 4, 1..3),
            )
                .prop_map(|(key, values)| SearchKey {
                    name: KEYS[key].to_string(),
                    // Past the values, some ProfileIds.
                    values: values
                        .into_iter()
                        .map(|v| {
                            VALUES
                                .get(v)
                                .map_or_else(|| id(v - VALUES.len()), |t| t.to_string())
                        })
                        .collect(),
                });
            (prop::collection::vec(key, 1..4), any::<bool>())
        }

        #[derive(Debug)]
        enum Op {
            Create(Map<String, Value>),
            /// An update of the n-th profile (or of a missing one).
            Update(usize, Map<String, Value>),
            Delete(usize),
            /// Moves the clock by this many hours (back too).
            Clock(i64),
            Expiration(u32),
            Search(Vec<SearchKey>, bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => body().prop_map(Op::Create),
                3 => (0..8usize, body()).prop_map(|(n, body)| Op::Update(n, body)),
                1 => (0..8usize).prop_map(Op::Delete),
                2 => (-48..72i64).prop_map(Op::Clock),
                1 => (1..4u32).prop_map(Op::Expiration),
                4 => search().prop_map(|(keys, all)| Op::Search(keys, all)),
            ]
        }

        /// A seeded domain: profile 0 holds no time (updated at the start), profile 1 does.
        fn seeded() -> Domain {
            serde_json::from_value(json!({
                "profiles": {
                    id(0): {"FirstName": "Ann", "LastName": "Lee", "EmailAddress": "a"},
                    id(1): {"AccountNumber": "a", "Attributes": {"tier": "b"}}
                },
                "expiration_days": 2,
                "updated": {id(1): -DAY}
            }))
            .expect("a domain")
        }

        /// The sweep removes exactly the profiles a scan finds expired.
        fn sweep(domain: &mut Domain, at: Moment) -> Result<(), TestCaseError> {
            let expired: Vec<String> = domain
                .profiles()
                .keys()
                .filter(|id| domain.is_expired(id, at))
                .cloned()
                .collect();
            prop_assert_eq!(domain.remove_expired(at), expired.len());
            prop_assert!(expired.iter().all(|id| !domain.profiles().contains_key(id)));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn the_index_finds_what_a_scan_finds(ops in prop::collection::vec(op(), 1..40)) {
                let mut domain = seeded();
                let mut at = Moment { now: 0, started: 0 };
                let mut next = 2;
                for op in ops {
                    let nth = |domain: &Domain, n: usize| {
                        domain.profiles().keys().nth(n).cloned().unwrap_or_else(|| id(99))
                    };
                    match op {
                        Op::Create(body) => {
                            let mut profile = Record::new();
                            apply_update(&mut profile, &body);
                            domain.create(&id(next), profile, at);
                            next += 1;
                        }
                        Op::Update(n, body) => {
                            let id = nth(&domain, n);
                            let live = domain.profiles().contains_key(&id) && !domain.is_expired(&id, at);
                            prop_assert_eq!(domain.update(&id, at, |p| apply_update(p, &body)), live);
                        }
                        Op::Delete(n) => {
                            let id = nth(&domain, n);
                            domain.remove(&id);
                            prop_assert!(!domain.profiles().contains_key(&id));
                        }
                        Op::Clock(hours) => at.now += hours * 3600,
                        Op::Expiration(days) => domain.expiration_days = Some(days),
                        Op::Search(keys, all) => {
                            sweep(&mut domain, at)?;
                            let ids = |found: Vec<Found>| -> Vec<(String, Vec<Value>)> {
                                found.into_iter().map(|(id, _, hits)| (id.to_string(), hits)).collect()
                            };
                            prop_assert_eq!(
                                ids(find_profiles(&domain, &keys, all)),
                                ids(scan(&domain, &keys, all))
                            );
                        }
                    }
                    prop_assert!(domain.index_is_in_step());
                }
                sweep(&mut domain, at)?;
                let read_back: Domain =
                    serde_json::from_value(serde_json::to_value(&domain).expect("json")).expect("a domain");
                prop_assert!(read_back.index_is_in_step());
                prop_assert_eq!(read_back, domain);
            }
        }
    }
}
