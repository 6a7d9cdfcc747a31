//! What the three APIs look like on the wire: JSON responses, error shapes, authentication.
//!
//! AWS errors carry the status of the model, an `x-amzn-ErrorType: <Code>` header and a JSON
//! body with the message (`message` for Customer Profiles, `Message` for Connect), which is
//! what both the Rust SDK and botocore read to classify an error. Genesys errors are
//! `{"message": ..., "exception": ...}`. STS speaks the query protocol: its errors are XML,
//! `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::operation::{Api, Operation};

/// The Java package Genesys puts in front of exception names in error bodies.
const GENESYS_EXCEPTION_PACKAGE: &str = "com.genesyslab.gsg.services.contextservices.exceptions.";

/// The prefix a SigV4 `Authorization` header starts with.
const SIGV4_PREFIX: &str = "AWS4-HMAC-SHA256 Credential=";

/// An error answer, rendered in the shape of the API that gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Error code (AWS) or exception name (Genesys).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// When set, `Retry-After` (seconds) and `x-amz-retry-after` (milliseconds) are sent.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The 500 of fault injection, named as the API names it.
    pub fn internal(api: Api) -> ApiError {
        let code = match api {
            Api::CustomerProfiles => "InternalServerException",
            Api::Connect => "InternalServiceException",
            Api::Genesys => "InternalServerErrorException",
            Api::Sts => "InternalFailure",
        };
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "Injected fault: internal error",
        )
    }

    /// The 429 of an exhausted quota.
    pub fn throttled(api: Api, wait: Option<Duration>) -> ApiError {
        let message = match api {
            Api::CustomerProfiles => "You exceeded the maximum number of requests.",
            Api::Connect => "The throttling limit has been exceeded.",
            Api::Genesys => "Too many requests.",
            Api::Sts => "Rate exceeded",
        };
        // STS, a query-protocol service, throttles with a 400 `Throttling`.
        let (status, code) = match api {
            Api::Sts => (StatusCode::BAD_REQUEST, "Throttling"),
            _ => (StatusCode::TOO_MANY_REQUESTS, "ThrottlingException"),
        };
        ApiError {
            retry_after: wait,
            ..ApiError::new(status, code, message)
        }
    }

    /// Renders the error for `api`.
    pub fn render(&self, api: Api) -> Response {
        let (body, aws) = match api {
            Api::Sts => {
                let mut response = self.render_xml();
                if let Some(wait) = self.retry_after {
                    insert_retry_after(response.headers_mut(), wait);
                }
                return response;
            }
            Api::CustomerProfiles => (json!({ "message": self.message }), true),
            Api::Connect => (json!({ "Message": self.message }), true),
            Api::Genesys => (
                json!({
                    "message": self.message,
                    "exception": format!("{GENESYS_EXCEPTION_PACKAGE}{}", self.code),
                }),
                false,
            ),
        };
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if aws {
            headers.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        }
        if let Some(wait) = self.retry_after {
            insert_retry_after(headers, wait);
        }
        response
    }
}

impl ApiError {
    /// The query protocol's error document (STS).
    fn render_xml(&self) -> Response {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"{STS_NAMESPACE}\"><Error><Type>{kind}</Type><Code>{}</Code>\
             <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            xml_escape(&self.message),
            REQUEST_ID
        );
        xml_response(self.status, body)
    }
}

/// The XML namespace of STS documents.
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The request id every STS answer carries (the emulator keeps no request log).
pub const REQUEST_ID: &str = "01234567-89ab-cdef-0123-456789abcdef";

/// A response with an XML body.
pub fn xml_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// Escapes text for an XML element.
pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The region a SigV4 `Authorization` header's credential scope names
/// (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`): the region the client signs for,
/// which stands for "the region this endpoint serves".
pub fn signing_region(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scope = value.strip_prefix(SIGV4_PREFIX)?;
    let scope = scope.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    (!region.is_empty()).then_some(region)
}

fn insert_retry_after(headers: &mut HeaderMap, wait: Duration) {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
    headers.insert("x-amz-retry-after", HeaderValue::from(millis));
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 with an empty body, as UpdateUserIdentityInfo answers.
pub fn empty_ok() -> Response {
    Response::new(Body::empty())
}

/// Checks an AWS request for a SigV4-shaped `Authorization` header; signatures are not verified.
pub fn check_sigv4(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if value.starts_with(SIGV4_PREFIX) {
        return Ok(());
    }
    let message = if value.is_empty() {
        "Missing Authentication Token"
    } else {
        "Authorization header is not a valid AWS Signature Version 4 header"
    };
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        message,
    ))
}

/// What IAM answers a signed request whose principal lacks the permission for `op`; for a
/// Genesys operation, the plain 403 UCS documents.
pub fn denied(op: Operation) -> ApiError {
    let action = match op.api() {
        Api::CustomerProfiles => format!("profile:{}", op.name()),
        Api::Connect => format!("connect:{}", op.name()),
        Api::Sts => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!(
                    "User: arn:aws:iam::123456789012:user/emulator is not authorized to perform: \
                     sts:{} with an explicit deny in a service control policy",
                    op.name()
                ),
            );
        }
        Api::Genesys => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                "The operation is forbidden for this user",
            );
        }
    };
    ApiError::new(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        format!(
            "User: arn:aws:iam::123456789012:user/emulator is not authorized to perform: {action}"
        ),
    )
}

/// Checks Genesys basic authentication against the expected `Basic ...` header value.
pub fn check_basic(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(expected) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "AuthenticationException",
        "Credentials are missing or incorrect",
    ))
}

/// The `Authorization` value that basic authentication with `user` and `password` sends.
pub fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Parses a JSON request body that must be an object.
pub fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("The request body must be a JSON object".to_string()),
        Err(e) => Err(format!("The request body is not valid JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_encodes_user_and_password() {
        assert_eq!(
            basic_header("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn sigv4_shape_is_required() {
        let mut headers = HeaderMap::new();
        assert!(check_sigv4(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/profile/aws4_request, SignedHeaders=host, Signature=00"),
        );
        assert!(check_sigv4(&headers).is_ok());
        assert_eq!(signing_region(&headers), Some("us-east-1"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-2/sts/aws4_request,SignedHeaders=host,Signature=00"),
        );
        assert_eq!(signing_region(&headers), Some("eu-west-2"));
    }

    #[test]
    fn sts_errors_are_query_protocol_xml() {
        let denied = denied(Operation::GetCallerIdentity);
        assert_eq!((denied.status.as_u16(), denied.code), (403, "AccessDenied"));
        assert!(denied.message.contains("sts:GetCallerIdentity"));
        let throttled = ApiError::throttled(Api::Sts, None);
        assert_eq!(
            (throttled.status.as_u16(), throttled.code),
            (400, "Throttling")
        );
        assert_eq!(xml_escape("a<b&c>"), "a&lt;b&amp;c&gt;");
    }
}
