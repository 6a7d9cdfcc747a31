//! Genesys Context Services / UCS profile resources: `GET`/`PUT /profiles/{customer_id}` and
//! `POST /profiles`.
//!
//! A profile is a JSON object. *Attributes* are top-level members whose value is a string,
//! number, boolean, or an array of those (the first element is the primary value);
//! *extensions* are members whose value is an object (single-valued) or an array of objects
//! (multi-valued). Anything else (`null`, mixed arrays) is a 400.
//!
//! - `GET` answers `customer_id` and every attribute; extensions only when named in
//!   `?extensions=a,b`, as UCS does.
//! - `PUT` replaces every attribute; extensions are replaced (the complete set) only when the
//!   body carries at least one, otherwise they are kept. 200 with an empty body.
//! - `POST` needs `customer_id` (1–16 characters); an existing id is a 400 (UCS documents 400
//!   as its general error and no 409; the seed's `"duplicate_status": 409` answers 409, as
//!   other servers do). 201 with `{"customer_id": ...}`. The seed's `"lost_creates": N` makes
//!   the next N POSTs create the profile and answer 500, a response lost after the commit.
//!
//! Checks, in order: basic authentication when configured (401), `X-Genesys-TenantId` when
//! the state has a tenant (400 `Invalid tenant specified : N`), `Content-Type:
//! application/json` on PUT and POST (415), the body (400), the profile (404). A method a
//! resource does not support is a 405.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::operation::Operation;
use super::server::{App, Shared};
use super::state::{Genesys, Record};
use super::wire::{self, ApiError};

/// The longest customer_id UCS accepts.
const MAX_CUSTOMER_ID: usize = 16;
/// The tenant header.
const TENANT_HEADER: &str = "X-Genesys-TenantId";

/// The Genesys routes.
pub fn routes() -> Router<App> {
    Router::new().route("/profiles", post(create)).route(
        "/profiles/{customer_id}",
        get(read).put(replace).delete(remove),
    )
}

/// The query of `GET /profiles/{id}`.
#[derive(Debug, Default, Deserialize)]
struct ReadQuery {
    extensions: Option<String>,
}

async fn read(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::GenesysGetProfile, &headers, |app| {
        get_profile(app, &id, &query, &headers)
    })
    .await
}

async fn replace(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.serve(Operation::GenesysPutProfile, &headers, |app| {
        put_profile(app, &id, &headers, &body)
    })
    .await
}

async fn remove(
    Extract(app): Extract<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    app.serve(Operation::GenesysDeleteProfile, &headers, |app| {
        delete_profile(app, &id, &headers)
    })
    .await
}

async fn create(Extract(app): Extract<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.serve(Operation::GenesysCreateProfile, &headers, |app| {
        create_profile(app, &headers, &body)
    })
    .await
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ProfileNotFoundException",
        format!("Customer profile {id} does not exist"),
    )
}

/// The tenant check; the error is the one Context Services documents.
fn check_tenant(genesys: &Genesys, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(tenant) = genesys.tenant_id else {
        return Ok(());
    };
    let given = headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if given == tenant.to_string() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "ContextServicesExceptionResource",
        format!("Invalid tenant specified : {given}"),
    ))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = value.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaTypeException",
        "Content-Type must be application/json",
    ))
}

/// A request body split into attributes and extensions.
#[derive(Debug, Default)]
struct Body {
    customer_id: Option<String>,
    attributes: Record,
    extensions: Record,
}

fn parse_body(body: &[u8]) -> Result<Body, ApiError> {
    let object = wire::parse_object(body).map_err(bad_request)?;
    let mut parsed = Body::default();
    for (name, value) in object {
        if name == "customer_id" {
            let id = value
                .as_str()
                .ok_or_else(|| bad_request("customer_id must be a string"))?;
            parsed.customer_id = Some(id.to_string());
        } else if is_attribute(&value) {
            parsed.attributes.insert(name, value);
        } else if is_extension(&value) {
            parsed.extensions.insert(name, value);
        } else {
            return Err(bad_request(format!(
                "Parameter value of unexpected type for '{name}'"
            )));
        }
    }
    Ok(parsed)
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn is_attribute(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().all(is_scalar),
        other => is_scalar(other),
    }
}

fn is_extension(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_object),
        _ => false,
    }
}

fn get_profile(
    app: &Shared,
    id: &str,
    query: &ReadQuery,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let wanted: Vec<&str> = query
        .extensions
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let body = app.with_state(|state| {
        check_tenant(&state.genesys, headers)?;
        let stored = state
            .genesys
            .profiles
            .get(id)
            .ok_or_else(|| not_found(id))?;
        Ok::<_, ApiError>(profile_view(id, stored, &wanted))
    })?;
    Ok(wire::json_response(StatusCode::OK, &body))
}

/// `customer_id`, every attribute, and the extensions named in `wanted`.
fn profile_view(id: &str, stored: &Record, wanted: &[&str]) -> Value {
    let mut view = Map::new();
    view.insert("customer_id".to_string(), Value::String(id.to_string()));
    for (name, value) in stored {
        if is_attribute(value) || wanted.contains(&name.as_str()) {
            view.insert(name.clone(), value.clone());
        }
    }
    Value::Object(view)
}

fn put_profile(
    app: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    app.with_state(|state| {
        check_tenant(&state.genesys, headers)?;
        check_schema(&state.genesys)?;
        check_content_type(headers)?;
        let body = parse_body(body)?;
        if body.customer_id.as_deref().is_some_and(|given| given != id) {
            return Err(bad_request(
                "customer_id in the body does not match the URI",
            ));
        }
        let stored = state
            .genesys
            .profiles
            .get_mut(id)
            .ok_or_else(|| not_found(id))?;
        *stored = overwrite(stored, body);
        Ok(())
    })?;
    let mut response = Response::default();
    if let Ok(location) = HeaderValue::from_str(&format!("/profiles/{id}")) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

/// `DELETE /profiles/{customer_id}`: 200 with an empty body, or the UCS 404 when there is
/// no such profile.
fn delete_profile(app: &Shared, id: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    app.with_state(|state| {
        check_tenant(&state.genesys, headers)?;
        state
            .genesys
            .profiles
            .remove(id)
            .map(drop)
            .ok_or_else(|| not_found(id))
    })?;
    Ok(Response::default())
}

/// The profile after a PUT: the body's attributes, and the body's extensions if it has any,
/// else the stored ones.
fn overwrite(stored: &Record, body: Body) -> Record {
    let mut result = body.attributes;
    if body.extensions.is_empty() {
        for (name, value) in stored {
            if !is_attribute(value) && !result.contains_key(name) {
                result.insert(name.clone(), value.clone());
            }
        }
    } else {
        result.extend(body.extensions);
    }
    result
}

/// UCS refuses writes before a profile schema exists (403).
fn check_schema(genesys: &Genesys) -> Result<(), ApiError> {
    if genesys.schema {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "Attempt to add customer profiles prior to the definition of a profile schema",
        ))
    }
}

fn create_profile(app: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let id = app.with_state(|state| {
        check_tenant(&state.genesys, headers)?;
        check_schema(&state.genesys)?;
        check_content_type(headers)?;
        let body = parse_body(body)?;
        let id = check_new_id(body.customer_id.as_deref())?;
        if state.genesys.profiles.contains_key(&id) {
            let status = state
                .genesys
                .duplicate_status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::BAD_REQUEST);
            return Err(ApiError::new(
                status,
                "ProfileAlreadyExistsException",
                format!("Customer profile {id} already exists"),
            ));
        }
        let mut profile = body.attributes;
        profile.extend(body.extensions);
        state.genesys.profiles.insert(id.clone(), profile);
        if state.genesys.lost_creates > 0 {
            state.genesys.lost_creates -= 1;
            return Err(ApiError::internal(super::operation::Api::Genesys));
        }
        Ok(id)
    })?;
    Ok(wire::json_response(
        StatusCode::CREATED,
        &json!({ "customer_id": id }),
    ))
}

fn check_new_id(id: Option<&str>) -> Result<String, ApiError> {
    let Some(id) = id else {
        return Err(bad_request("Missing required parameter: customer_id"));
    };
    let length = id.chars().count();
    if length == 0 || length > MAX_CUSTOMER_ID {
        return Err(bad_request(format!(
            "customer_id must have 1 to {MAX_CUSTOMER_ID} characters"
        )));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: Value) -> Record {
        match value {
            Value::Object(map) => map.into_iter().collect(),
            _ => Record::new(),
        }
    }

    #[test]
    fn put_without_extensions_keeps_them() {
        let stored = record(json!({"FirstName": "A", "LastName": "B", "Address": {"City": "X"}}));
        let body = parse_body(br#"{"FirstName": "C"}"#).expect("valid body");
        assert_eq!(
            overwrite(&stored, body),
            record(json!({"FirstName": "C", "Address": {"City": "X"}}))
        );
    }

    #[test]
    fn put_with_extensions_replaces_the_set() {
        let stored = record(json!({"A": "1", "Address": {"City": "X"}, "Phones": [{"n": "1"}]}));
        let body = parse_body(br#"{"A": "2", "Phones": [{"n": "2"}]}"#).expect("valid body");
        assert_eq!(
            overwrite(&stored, body),
            record(json!({"A": "2", "Phones": [{"n": "2"}]}))
        );
    }

    #[test]
    fn null_values_are_refused() {
        assert!(parse_body(br#"{"A": null}"#).is_err());
        assert!(parse_body(br#"{"A": ["x", {"b": 1}]}"#).is_err());
    }
}
