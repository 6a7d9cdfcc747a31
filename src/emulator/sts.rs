//! AWS Security Token Service: `GetCallerIdentity`, in the query protocol the SDKs and the
//! AWS CLI speak to STS: `POST /` with the form body
//! `Action=GetCallerIdentity&Version=2011-06-15`, answered with XML
//! (`<GetCallerIdentityResponse>` holding `Arn`, `UserId` and `Account`).
//!
//! The account is the state's (`"account"` in the seed, or `--account`; default
//! [`super::state::DEFAULT_ACCOUNT`]); the caller is always the user `emulator` of that
//! account. Another action, or another version, is a 400 `InvalidAction`. Like every AWS
//! route it needs a SigV4-shaped `Authorization` header and can be denied with `--deny
//! GetCallerIdentity` (403 `AccessDenied`, as a service control policy would).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;

use super::operation::Operation;
use super::server::{App, Shared};
use super::wire::{self, ApiError, REQUEST_ID, STS_NAMESPACE};

/// The API version every STS request names.
const VERSION: &str = "2011-06-15";
/// The caller's unique id (an IAM user's `AIDA...` id).
const USER_ID: &str = "AIDAEMULATOREXAMPLE0001";

/// The STS route.
pub fn routes() -> Router<App> {
    Router::new().route("/", post(query))
}

async fn query(Extract(app): Extract<App>, headers: HeaderMap, body: Bytes) -> Response {
    app.serve(Operation::GetCallerIdentity, &headers, |app| {
        get_caller_identity(app, &body)
    })
    .await
}

fn get_caller_identity(app: &Shared, body: &[u8]) -> Result<Response, ApiError> {
    let action = form_value(body, "Action").unwrap_or_default();
    let version = form_value(body, "Version").unwrap_or_default();
    if action != "GetCallerIdentity" || version != VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        ));
    }
    let account = app.with_state(|state| state.account().to_string());
    Ok(wire::xml_response(StatusCode::OK, identity_xml(&account)))
}

/// The answer for `account`.
fn identity_xml(account: &str) -> String {
    format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_NAMESPACE}\"><GetCallerIdentityResult>\
         <Arn>arn:aws:iam::{account}:user/emulator</Arn><UserId>{USER_ID}</UserId>\
         <Account>{account}</Account></GetCallerIdentityResult><ResponseMetadata>\
         <RequestId>{REQUEST_ID}</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
}

/// The value of `name` in a form-encoded body (`+` and `%XX` decoded).
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (byte, None) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_found_and_decoded() {
        let body = b"Action=GetCallerIdentity&Version=2011-06-15&X=a+b%2Fc%";
        assert_eq!(
            form_value(body, "Action").as_deref(),
            Some("GetCallerIdentity")
        );
        assert_eq!(form_value(body, "Version").as_deref(), Some("2011-06-15"));
        assert_eq!(form_value(body, "X").as_deref(), Some("a b/c%"));
        assert_eq!(form_value(body, "Missing"), None);
    }

    #[test]
    fn the_answer_names_the_account() {
        let xml = identity_xml("210987654321");
        assert!(xml.contains("<Account>210987654321</Account>"));
        assert!(xml.contains("<Arn>arn:aws:iam::210987654321:user/emulator</Arn>"));
    }
}
