//! Genesys Context Services (UCS) customer profiles, through `reqwest`.
//!
//! `PUT /profiles/{customer_id}` replaces every attribute of a profile, so each record is a
//! read-merge-write, as the API's own documentation asks:
//!
//! 1. `GET /profiles/{customer_id}` reads every attribute (and, by default, no extension);
//! 2. the mapped attributes are merged into what was read, by a pure function (`merge`): a
//!    `split` list replaces the attribute, a single value sets it (on a list, its primary,
//!    first value), a cleared one removes it, anything unmapped is sent back as it was read;
//! 3. `PUT` sends the complete result, only when something differs (else `unchanged`). The
//!    body never carries extensions, so UCS keeps them as they are.
//!
//! This file is the target's own logic ([`Remote`]); [`super::driver`] decides what happens
//! to a record. A profile that does not exist (404 with a UCS error body) follows
//! `when_missing`; `create` uses `POST /profiles` with the record's `customer_id`. `plan`
//! stops after step 2. A 404 without a UCS error body means `base_url` has no UCS behind
//! it: every record would get it, so it stops the run.
//!
//! Credentials come from `GENESYS_UCS_USERNAME` / `GENESYS_UCS_PASSWORD` (HTTP Basic), never
//! from the config file, and are never logged. Redirects are not followed, so credentials
//! go nowhere but `base_url`. What is the same for every record (401, the 403 of a server
//! without a profile schema, a wrong tenant, a wrong base path, 405, 415) stops the run
//! instead of failing each record.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Map, Value as Json};

use super::driver::{Merged, Refusal, Remote};
use super::{
    Desired, FieldChange, Pace, PreflightError, describe, parse_retry_after, path_segment,
    transport,
};
use crate::config::GenesysUcsTarget;
use crate::mapping::Value;
use crate::retry::{ApiError, ErrorClass};
use crate::schema::op::{
    GENESYS_CREATE_PROFILE, GENESYS_DELETE_PROFILE, GENESYS_GET_PROFILE, GENESYS_PUT_PROFILE,
};
use crate::state::TargetIdentity;

/// The environment variables that hold the Basic-auth credentials.
pub const USERNAME_VAR: &str = "GENESYS_UCS_USERNAME";
/// See [`USERNAME_VAR`].
pub const PASSWORD_VAR: &str = "GENESYS_UCS_PASSWORD";
/// The tenant header.
const TENANT_HEADER: &str = "X-Genesys-TenantId";
/// A customer_id no real profile is expected to have, read once by the preflight.
const PROBE_ID: &str = "profilesync-0";

/// A profile's attributes, by name.
type Attributes = Map<String, Json>;

/// A Genesys UCS server, ready to take records.
pub struct GenesysUcs {
    http: Client,
    base_url: String,
    tenant_id: Option<i64>,
    credentials: Option<(String, String)>,
}

impl GenesysUcs {
    /// A client for `[target] base_url` with the tenant header, and credentials from
    /// `env` (the process environment in production).
    pub fn new(
        target: &GenesysUcsTarget,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let credentials = match (env(USERNAME_VAR), env(PASSWORD_VAR)) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                return Err(format!(
                    "set both {USERNAME_VAR} and {PASSWORD_VAR}, or neither"
                ));
            }
        };
        let mut headers = HeaderMap::new();
        if let Some(tenant) = target.tenant_id {
            headers.insert(TENANT_HEADER, HeaderValue::from(tenant));
        }
        let http = Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))?;
        let base_url = target.base_url.trim_end_matches('/').to_owned();
        Ok(GenesysUcs {
            http,
            base_url,
            tenant_id: target.tenant_id,
            credentials,
        })
    }

    /// The sync state's identity: the base URL and the tenant.
    pub fn identity(&self) -> TargetIdentity {
        TargetIdentity::genesys_ucs(&self.base_url, self.tenant_id)
    }

    /// Reads one made-up profile before any record, so that an unreachable server, wrong
    /// credentials, a wrong tenant or a base path without UCS behind it (a 404 without a
    /// Context Services error body) stop the run at once.
    pub async fn preflight(&self, pace: &Pace<'_>) -> Result<Vec<String>, PreflightError> {
        match self.get(PROBE_ID, pace).await {
            Ok(_) => Ok(Vec::new()),
            Err(e) if is_tenant_error(&e) => Err(PreflightError::config(format!(
                "{}; is [target] tenant_id right?",
                e.message
            ))),
            Err(e) if e.code == WRONG_PATH => Err(PreflightError::config(e.message)),
            Err(e) => Err(PreflightError::unreachable(&e, pace.attempts())),
        }
    }
}

impl Remote for GenesysUcs {
    const NOUN: &'static str = "profile";
    /// The profile's attributes as read, without `customer_id` and extensions.
    type Current = Attributes;
    /// The complete profile to PUT.
    type Write = Attributes;
    /// The profile to POST, without its `customer_id`.
    type Create = Attributes;

    async fn read(&self, id: &str, pace: &Pace<'_>) -> Result<Option<Attributes>, ApiError> {
        self.get(id, pace).await
    }

    fn merge(
        &self,
        current: Attributes,
        desired: &Desired<'_>,
    ) -> Result<Merged<Attributes>, Refusal> {
        let (write, changed) = merge(current, desired);
        Ok(Merged { write, changed })
    }

    async fn write(&self, id: &str, write: &Attributes, pace: &Pace<'_>) -> Result<(), ApiError> {
        let body = Json::Object(write.clone());
        self.send_json(Method::PUT, &profile_path(id), &body, pace)
            .await
    }

    fn creation(&self, _id: Option<&str>, desired: &Desired<'_>) -> Option<Merged<Attributes>> {
        let (write, changed) = merge(Attributes::new(), desired);
        Some(Merged { write, changed })
    }

    /// `POST /profiles` with the record's customer_id and its set attributes. A retried POST
    /// whose first attempt was committed after all finds the profile there (UCS's 400, or
    /// the 409 of servers that answer a duplicate so): if it holds what this record says
    /// (read back), the record was created.
    async fn create(
        &self,
        id: Option<&str>,
        create: &Attributes,
        pace: &Pace<'_>,
    ) -> Result<String, ApiError> {
        // Mapping reports an empty id as a problem, so valid records have one.
        let id = id.unwrap_or_default().to_owned();
        let mut body = create.clone();
        body.insert("customer_id".to_owned(), Json::String(id.clone()));
        let body = Json::Object(body);
        let before = pace.attempts();
        let result = self.send_json(Method::POST, "/profiles", &body, pace).await;
        let retried = pace.attempts() - before > 1;
        match result {
            Ok(()) => Ok(id),
            Err(e) if retried && matches!(e.status, Some(400 | 409)) => {
                match self.get(&id, pace).await {
                    Ok(Some(now)) if holds(&now, create) => Ok(id),
                    Err(read) if read.class == ErrorClass::Fatal => Err(read),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// UCS's own 404 (with its error body); one without it is a wrong base path, which
    /// stops the run instead.
    fn is_gone(&self, error: &ApiError) -> bool {
        error.status == Some(404) && error.code != WRONG_PATH
    }

    /// `DELETE /profiles/{customer_id}`; a 404 with a UCS error is "no such profile"
    /// ([`Remote::is_gone`]), one without is a wrong base path.
    async fn delete(&self, id: &str, pace: &Pace<'_>) -> Result<(), ApiError> {
        let url = format!("{}{}", self.base_url, profile_path(id));
        pace.send(GENESYS_DELETE_PROFILE, || {
            let request = self.authorized(self.http.delete(&url));
            async move { no_content(request.send().await.map_err(transport)?, false).await }
        })
        .await
    }
}

impl GenesysUcs {
    /// The profile's attributes, or `None` when it does not exist.
    async fn get(&self, id: &str, pace: &Pace<'_>) -> Result<Option<Attributes>, ApiError> {
        let url = format!("{}{}", self.base_url, profile_path(id));
        pace.send(GENESYS_GET_PROFILE, || {
            let request = self.authorized(self.http.get(&url));
            async move {
                let response = request.send().await.map_err(transport)?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await.map_err(transport)?;
                if status == StatusCode::NOT_FOUND && is_ucs_error(&body) {
                    return Ok(None);
                }
                if status == StatusCode::NOT_FOUND {
                    return Err(wrong_path());
                }
                if !status.is_success() {
                    return Err(status_error(status, &headers, &body));
                }
                match serde_json::from_slice::<Json>(&body) {
                    Ok(Json::Object(profile)) => Ok(Some(attributes_of(profile))),
                    _ => Err(ApiError {
                        class: ErrorClass::Permanent,
                        code: "unexpected_response".to_owned(),
                        message: "GET answered something that is not a JSON profile".to_owned(),
                        status: Some(status.as_u16()),
                        retry_after: None,
                    }),
                }
            }
        })
        .await
    }

    /// Sends a JSON body; any 2xx is success.
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &Json,
        pace: &Pace<'_>,
    ) -> Result<(), ApiError> {
        let url = format!("{}{path}", self.base_url);
        let body = body.to_string();
        let is_post = method == Method::POST;
        let operation = if is_post {
            GENESYS_CREATE_PROFILE
        } else {
            GENESYS_PUT_PROFILE
        };
        pace.send(operation, || {
            let request = self.authorized(
                self.http
                    .request(method.clone(), &url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone()),
            );
            // `/profiles` always exists: any 404 of a POST is a wrong base path.
            async move { no_content(request.send().await.map_err(transport)?, is_post).await }
        })
        .await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }
}

/// The answer of a write or delete whose body does not matter: any 2xx is success; a 404
/// without a UCS error body (any 404 when `path_exists`) is a wrong base path.
async fn no_content(response: reqwest::Response, path_exists: bool) -> Result<(), ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    if status == StatusCode::NOT_FOUND && (path_exists || !is_ucs_error(&body)) {
        return Err(wrong_path());
    }
    Err(status_error(status, &headers, &body))
}

/// `/profiles/{customer_id}`, with the id percent-encoded as one path segment.
fn profile_path(id: &str) -> String {
    format!("/profiles/{}", path_segment(id))
}

/// A profile as read, without what a PUT must not carry: `customer_id` (it is in the URI)
/// and extensions (objects, or lists of objects), which UCS keeps when the body has none.
fn attributes_of(profile: Map<String, Json>) -> Attributes {
    profile
        .into_iter()
        .filter(|(name, value)| name != "customer_id" && !is_extension(value))
        .collect()
}

fn is_extension(value: &Json) -> bool {
    match value {
        Json::Object(_) => true,
        Json::Array(items) => items.first().is_some_and(Json::is_object),
        _ => false,
    }
}

/// Merges the mapped values into the current attributes. Returns the complete profile to
/// PUT and the attributes that changed. Pure.
///
/// - `Many` (a `split` field) replaces the attribute with that list of strings;
/// - `Set` sets a single value. On a multi-valued attribute it sets the *primary* (first)
///   value and keeps the others, so one CRM column never wipes the rest of a list;
/// - `Clear` removes the attribute;
/// - a value that already matches ([`same`]) is left exactly as it was read, so a number
///   stays a number and a one-element list stays a list.
fn merge(mut current: Attributes, desired: &Desired<'_>) -> (Attributes, Vec<FieldChange>) {
    let mut changed = Vec::new();
    for (name, value) in desired {
        let before = current.get(name.as_str());
        if same(before, value) {
            continue;
        }
        let from = before.map_or_else(String::new, text_of);
        let after = match (value, before) {
            (Value::Set(text), Some(Json::Array(items))) => {
                Some(Json::Array(with_primary(items, text)))
            }
            (Value::Set(text), _) => Some(Json::String(text.clone())),
            (Value::Many(values), _) => Some(Json::Array(
                values.iter().cloned().map(Json::String).collect(),
            )),
            (Value::Clear, _) => None,
        };
        let to = after.as_ref().map_or_else(String::new, text_of);
        match after {
            Some(after) => current.insert(name.clone(), after),
            None => current.remove(name.as_str()),
        };
        changed.push(FieldChange {
            field: name.clone(),
            from: Some(from),
            to,
        });
    }
    (current, changed)
}

/// A list with `primary` first and the other values after it, in their order (`primary`
/// replaces the old first value, and is not repeated further down).
fn with_primary(items: &[Json], primary: &str) -> Vec<Json> {
    let rest = items
        .iter()
        .skip(1)
        .filter(|item| text_of(item) != primary)
        .cloned();
    std::iter::once(Json::String(primary.to_owned()))
        .chain(rest)
        .collect()
}

/// Whether a profile read back holds every attribute of `body` (as [`same`] compares them).
fn holds(now: &Attributes, body: &Attributes) -> bool {
    body.iter().all(|(name, value)| {
        let wanted = match value {
            Json::Array(items) => Value::Many(items.iter().map(text_of).collect()),
            other => Value::Set(text_of(other)),
        };
        same(now.get(name), &wanted)
    })
}

/// Whether an attribute already holds the mapped value. Values compare as text (UCS may
/// store `5` for `"5"`). A single value matches a list whose primary (first) value it is; a
/// `split` list must match the whole list, in order. An empty string, an empty list and no
/// attribute at all are all "cleared".
fn same(current: Option<&Json>, desired: &Value) -> bool {
    let texts: Vec<String> = match current {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(text_of).collect(),
        Some(other) => vec![text_of(other)],
    };
    let texts: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .collect();
    match desired {
        Value::Clear => texts.is_empty(),
        Value::Set(text) => texts.first() == Some(&text.as_str()),
        Value::Many(values) => texts == values.iter().map(String::as_str).collect::<Vec<_>>(),
    }
}

/// An attribute value as the diff report shows it: strings as they are, lists as JSON.
fn text_of(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a 404 body is UCS saying "no such profile" (its JSON error, with `message` and
/// `exception`), rather than a server or proxy that has no `/profiles` at this path.
fn is_ucs_error(body: &[u8]) -> bool {
    serde_json::from_slice::<Json>(body).ok().is_some_and(|v| {
        v.get("message").is_some_and(Json::is_string)
            && v.get("exception").is_some_and(Json::is_string)
    })
}

/// A 404 that is not UCS's own: every record would get it.
fn wrong_path() -> ApiError {
    ApiError {
        class: ErrorClass::Fatal,
        code: WRONG_PATH.to_owned(),
        message: "the server has no UCS profile resource at [target] base_url (404 without a \
                  Context Services error); is base_url right?"
            .to_owned(),
        status: Some(404),
        retry_after: None,
    }
}

/// The code of [`wrong_path`].
const WRONG_PATH: &str = "not_a_ucs_path";

fn is_tenant_error(error: &ApiError) -> bool {
    error.message.starts_with("Invalid tenant specified")
}

/// An HTTP error answer, classified. UCS error bodies are `{"message", "exception"}`; the
/// code is the exception's class name.
fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let parsed: Option<Json> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Json::as_str)
            .map(str::to_owned)
    };
    let code = field("exception")
        .map(|e| e.rsplit('.').next().unwrap_or_default().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let message = field("message")
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned());
    let mut error = ApiError {
        class: class_of(status.as_u16()),
        code,
        message,
        status: Some(status.as_u16()),
        retry_after: headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after),
    };
    if is_tenant_error(&error) {
        error.class = ErrorClass::Fatal;
    }
    if status.as_u16() == 401 {
        error.message = format!(
            "{} (credentials come from {USERNAME_VAR} and {PASSWORD_VAR})",
            error.message
        );
    }
    error
}

/// What an HTTP status means for the run. 401 (credentials), 403 (UCS refuses writes before a
/// profile schema exists), 405 and 415 are the same for every record, so they stop the run.
/// UCS documents no rate limit; an overloaded server (or the load balancer in front of it)
/// answers 503, so 503 counts as a throttle: it is retried, and `rate = "auto"` slows down.
fn class_of(status: u16) -> ErrorClass {
    match status {
        429 | 503 => ErrorClass::Throttled,
        408 | 500.. => ErrorClass::Transient,
        401 | 403 | 405 | 415 => ErrorClass::Fatal,
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(value: Json) -> Attributes {
        match value {
            Json::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn set(text: &str) -> Value {
        Value::Set(text.to_owned())
    }

    #[test]
    fn merge_keeps_what_is_not_mapped_and_reports_only_differences() {
        let current = attrs(json!({
            "FirstName": "Ana", "LastName": "Lopez", "Segment": "Gold", "Score": 5,
            "EmailAddress": ["ana@example.com", "old@example.com"]
        }));
        let many = Value::Many(vec!["ana@example.com".to_owned()]);
        let first = set("Ana");
        let last = set("López");
        let score = set("5");
        let phone = Value::Clear;
        let desired = [
            ("FirstName".to_owned(), &first),
            ("LastName".to_owned(), &last),
            ("Score".to_owned(), &score),
            ("EmailAddress".to_owned(), &many),
            ("PhoneNumber".to_owned(), &phone),
        ];
        let (merged, changed) = merge(current, &desired);
        assert_eq!(
            Json::Object(merged),
            json!({"FirstName": "Ana", "LastName": "López", "Segment": "Gold", "Score": 5,
                   "EmailAddress": ["ana@example.com"]})
        );
        let fields: Vec<&str> = changed.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["LastName", "EmailAddress"]);
        assert_eq!(changed[0].from.as_deref(), Some("Lopez"));
        assert_eq!(
            changed[1].from.as_deref(),
            Some(r#"["ana@example.com","old@example.com"]"#)
        );
        assert_eq!(changed[1].to, r#"["ana@example.com"]"#);
    }

    #[test]
    fn a_single_value_sets_the_primary_of_a_list_and_keeps_the_rest() {
        let current = attrs(json!({"PhoneNumber": ["+1", "+2", "+3"], "Tags": ["a"]}));
        let phone = set("+3");
        let tag = set("b");
        let (merged, changed) = merge(
            current,
            &[
                ("PhoneNumber".to_owned(), &phone),
                ("Tags".to_owned(), &tag),
            ],
        );
        assert_eq!(
            Json::Object(merged),
            json!({"PhoneNumber": ["+3", "+2"], "Tags": ["b"]}),
            "the new primary replaces the old one and is not repeated"
        );
        assert_eq!(changed[0].from.as_deref(), Some(r#"["+1","+2","+3"]"#));
        assert_eq!(changed[0].to, r#"["+3","+2"]"#);
    }

    #[test]
    fn clearing_removes_the_attribute() {
        let current = attrs(json!({"VIP": "Y", "FirstName": "Bo"}));
        let clear = Value::Clear;
        let (merged, changed) = merge(current, &[("VIP".to_owned(), &clear)]);
        assert_eq!(Json::Object(merged), json!({"FirstName": "Bo"}));
        assert_eq!(changed[0].from.as_deref(), Some("Y"));
        assert_eq!(changed[0].to, "");
    }

    #[test]
    fn sameness_compares_text_and_treats_one_element_lists_as_their_element() {
        assert!(same(Some(&json!("x")), &set("x")));
        assert!(same(Some(&json!(["x"])), &set("x")));
        assert!(same(Some(&json!(7)), &set("7")));
        assert!(same(Some(&json!(true)), &set("true")));
        assert!(
            same(Some(&json!(["x", "y"])), &set("x")),
            "x is the primary"
        );
        assert!(!same(Some(&json!(["y", "x"])), &set("x")));
        assert!(!same(None, &set("x")));
        assert!(same(None, &Value::Clear));
        assert!(same(Some(&json!("")), &Value::Clear));
        assert!(same(Some(&json!([])), &Value::Clear));
        assert!(!same(Some(&json!("x")), &Value::Clear));
        let many = Value::Many(vec!["a".into(), "b".into()]);
        assert!(same(Some(&json!(["a", "b"])), &many));
        assert!(
            !same(Some(&json!(["b", "a"])), &many),
            "the first is primary"
        );
    }

    #[test]
    fn reads_drop_the_id_and_extensions() {
        let profile = attrs(json!({
            "customer_id": "C1", "FirstName": "Ana", "Tags": ["a", "b"],
            "contacts": [{"phone": "1"}], "preferences": {"lang": "en"}
        }));
        assert_eq!(
            Json::Object(attributes_of(profile)),
            json!({"FirstName": "Ana", "Tags": ["a", "b"]})
        );
    }

    #[test]
    fn errors_are_classified_by_status_and_tenant() {
        let error = |status: u16, body: Json| {
            status_error(
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                body.to_string().as_bytes(),
            )
        };
        let bad = error(
            400,
            json!({"message": "Parameter value of unexpected type for 'X'",
                   "exception": "com.genesyslab.x.BadRequestException"}),
        );
        assert_eq!(bad.class, ErrorClass::Permanent);
        assert_eq!(bad.code, "BadRequestException");
        let tenant = error(400, json!({"message": "Invalid tenant specified : 2"}));
        assert!(is_ucs_error(
            br#"{"message": "Customer profile G9 does not exist", "exception": "x.ProfileNotFoundException"}"#
        ));
        assert!(!is_ucs_error(
            br#"{"status": 404, "error": "Not Found", "message": "No message available"}"#
        ));
        assert!(!is_ucs_error(b"<html>Not Found</html>"));
        assert_eq!(tenant.class, ErrorClass::Fatal);
        assert_eq!(tenant.code, "HTTP 400");
        let auth = error(401, json!({}));
        assert_eq!(auth.class, ErrorClass::Fatal);
        assert!(auth.message.contains(USERNAME_VAR), "{}", auth.message);
        assert_eq!(error(429, json!({})).class, ErrorClass::Throttled);
        assert_eq!(error(503, json!({})).class, ErrorClass::Throttled);
        assert_eq!(error(502, json!({})).class, ErrorClass::Transient);
        assert_eq!(error(403, json!({})).class, ErrorClass::Fatal);
    }

    #[test]
    fn ids_are_one_encoded_path_segment() {
        assert_eq!(
            profile_path("00027a52JCGY000M"),
            "/profiles/00027a52JCGY000M"
        );
        assert_eq!(profile_path("a b/c?"), "/profiles/a%20b%2Fc%3F");
    }
}
