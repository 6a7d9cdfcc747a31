//! What both AWS targets share: the AWS configuration chain with `[target]` overrides on top,
//! the plain-`http://` check of the endpoint wherever it was set, and one classification of
//! AWS answers into [`ApiError`]s, whether they come through the SDK (Customer Profiles) or
//! from a hand-signed REST-JSON request (Connect users).
//!
//! Error codes are read exactly as the AWS SDKs read them from a rest-json answer: the
//! `x-amzn-ErrorType` header, else the body's `code`, else its `__type`; the code is cut at
//! its first `:` and only what follows a `#` is kept. The message is the body's `message`,
//! `Message` or `errorMessage`.

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_customerprofiles::error::{ProvideErrorMetadata, SdkError};
use aws_types::SdkConfig;
use aws_types::service_config::ServiceConfigKey;
use serde_json::Value as Json;

use super::{describe, parse_retry_after};
use crate::config::AwsTarget;
use crate::config::target::check_url;
use crate::retry::{ApiError, ErrorClass};

/// Loads the AWS configuration chain (environment, shared files, SSO, instance roles).
/// Only AWS targets call it.
pub async fn load() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The endpoint a service gets: `[target] endpoint_url`, else the AWS configuration's
/// (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, a profile's `endpoint_url`), else
/// `None` for the service's own. One from the AWS configuration is held to the same rule as
/// the config file's: plain `http://` only to loopback.
pub fn endpoint(
    sdk: &SdkConfig,
    target: &AwsTarget,
    service_id: &str,
) -> Result<Option<String>, String> {
    if let Some(url) = &target.endpoint_url {
        return Ok(Some(url.clone()));
    }
    configured(sdk, service_id)
}

/// The endpoint the AWS configuration alone gives a service (`AWS_ENDPOINT_URL_<SERVICE>`,
/// `AWS_ENDPOINT_URL`, a profile's `endpoint_url`), held to the config file's rule: plain
/// `http://` only to loopback. For a service the config file does not point anywhere (STS).
pub fn configured(sdk: &SdkConfig, service_id: &str) -> Result<Option<String>, String> {
    let Some(url) = configured_endpoint(sdk, service_id) else {
        return Ok(None);
    };
    check_url(&url).map_err(|why| {
        format!(
            "the endpoint from the AWS configuration (AWS_ENDPOINT_URL*, or endpoint_url in \
             the profile) {why}"
        )
    })?;
    Ok(Some(url))
}

/// The URL requests go to: the configured endpoint, else the service's own in `region`,
/// `https://<host_prefix>.<region>.amazonaws.com` (without a trailing `/`).
pub fn url_used(configured: Option<&str>, host_prefix: &str, region: &str) -> String {
    match configured {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("https://{host_prefix}.{region}.amazonaws.com"),
    }
}

/// The region: `[target] region`, else the AWS configuration's.
pub fn region(sdk: &SdkConfig, target: &AwsTarget) -> Option<String> {
    target
        .region
        .clone()
        .or_else(|| sdk.region().map(|r| r.to_string()))
}

/// What stops an AWS target before its first request: the same for every record, so it is
/// said once, at once, and never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// Neither `[target] region` nor the AWS configuration names a region: a configuration
    /// error (exit 2).
    NoRegion,
    /// The credential chain found nothing: the environment or the machine lacks credentials
    /// (exit 3).
    NoCredentials,
    /// A source of the chain was set up but failed (an expired SSO session, a profile that
    /// names a missing one, an instance role that does not answer): why, in the SDK's
    /// words, which carry no secret. `config` when the configuration itself is wrong.
    Credentials {
        /// The configuration is invalid (exit 2), rather than the source failing (exit 3).
        config: bool,
        /// The SDK's reason.
        why: String,
    },
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::NoRegion => f.write_str(
                "no AWS region: set the AWS_REGION environment variable (or a region in the \
                 AWS profile), or `[target] region` in the config",
            ),
            SetupError::NoCredentials => f.write_str(
                "no AWS credentials: none of the places the AWS credential chain looks had any \
                 (the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables, the profile \
                 AWS_PROFILE names in ~/.aws/credentials or ~/.aws/config, SSO, web identity, a \
                 container's or an EC2 instance's role)",
            ),
            SetupError::Credentials { why, .. } => {
                write!(f, "the AWS credentials could not be loaded: {why}")
            }
        }
    }
}

impl SetupError {
    /// Whether it is the configuration's fault (exit 2) rather than the machine's (exit 3).
    pub fn is_config(&self) -> bool {
        match self {
            SetupError::NoRegion => true,
            SetupError::NoCredentials => false,
            SetupError::Credentials { config, .. } => *config,
        }
    }
}

/// Checks what every request of an AWS target needs before the first one: a region, and
/// credentials the chain can load (loaded once here; the SDK caches its own).
pub async fn check_setup(sdk: &SdkConfig, target: &AwsTarget) -> Result<(), SetupError> {
    if region(sdk, target).is_none() {
        return Err(SetupError::NoRegion);
    }
    let Some(provider) = sdk.credentials_provider() else {
        return Err(SetupError::NoCredentials);
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(credentials_error(&e)),
    }
}

/// What a failed credential load means for the run.
fn credentials_error(error: &CredentialsError) -> SetupError {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => SetupError::NoCredentials,
        CredentialsError::InvalidConfiguration(_) => SetupError::Credentials {
            config: true,
            why: describe(error),
        },
        _ => SetupError::Credentials {
            config: false,
            why: describe(error),
        },
    }
}

/// The endpoint the AWS configuration gives a service, resolved as the SDK resolves it:
/// the service-specific setting first, then the general one.
fn configured_endpoint(sdk: &SdkConfig, service_id: &str) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// What an AWS status and error code mean for the run.
pub fn class_of(status: u16, code: &str) -> ErrorClass {
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

/// An error answer of a rest-json service, read as the SDKs read it.
pub fn from_response(
    status: u16,
    error_type: Option<&str>,
    retry_after: Option<&str>,
    body: &[u8],
) -> ApiError {
    let parsed: Json = serde_json::from_slice(body).unwrap_or(Json::Null);
    let field = |name: &str| parsed.get(name).and_then(Json::as_str);
    let code = error_type
        .or_else(|| field("code"))
        .or_else(|| field("__type"))
        .map(sanitize_code)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = field("message")
        .or_else(|| field("Message"))
        .or_else(|| field("errorMessage"))
        .unwrap_or("no message")
        .to_owned();
    ApiError {
        class: class_of(status, &code),
        code,
        message,
        status: Some(status),
        retry_after: retry_after.and_then(parse_retry_after),
    }
}

/// An error code as the SDKs keep it: cut at the first `:`, then what follows a `#`.
fn sanitize_code(raw: &str) -> String {
    let code = raw.split(':').next().unwrap_or_default();
    let code = code.split_once('#').map_or(code, |(_, after)| after);
    code.trim().to_owned()
}

/// Classifies an SDK error for the retry policy.
pub fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
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

/// An error that is the same for every record: no credentials, no region, a request that
/// cannot be signed.
pub fn configuration(message: impl Into<String>) -> ApiError {
    ApiError {
        class: ErrorClass::Fatal,
        code: "configuration".to_owned(),
        message: message.into(),
        status: None,
        retry_after: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_used_is_the_configured_one_else_the_service_default() {
        assert_eq!(
            url_used(None, "profile", "eu-west-2"),
            "https://profile.eu-west-2.amazonaws.com"
        );
        assert_eq!(
            url_used(Some("http://127.0.0.1:8080/"), "profile", "eu-west-2"),
            "http://127.0.0.1:8080"
        );
    }

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

    #[tokio::test]
    async fn setup_needs_a_region_and_credentials_before_any_request() {
        use aws_credential_types::Credentials;
        use aws_credential_types::provider::SharedCredentialsProvider;
        use aws_types::region::Region;

        let target = AwsTarget {
            region: None,
            endpoint_url: None,
        };
        let keys = SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "test", None, None, "test",
        ));
        let bare = SdkConfig::builder().build();
        assert_eq!(check_setup(&bare, &target).await, Err(SetupError::NoRegion));
        let in_region = AwsTarget {
            region: Some("eu-west-2".into()),
            ..target.clone()
        };
        assert_eq!(
            check_setup(&bare, &in_region).await,
            Err(SetupError::NoCredentials)
        );
        let sdk = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .credentials_provider(keys)
            .build();
        assert_eq!(check_setup(&sdk, &target).await, Ok(()));
        let message = SetupError::NoCredentials.to_string();
        assert!(message.contains("AWS_ACCESS_KEY_ID") && message.contains("AWS_PROFILE"));
        assert!(SetupError::NoRegion.to_string().contains("AWS_REGION"));
        assert!(SetupError::NoRegion.is_config() && !SetupError::NoCredentials.is_config());
    }

    #[test]
    fn codes_are_read_like_the_sdks_read_them() {
        let body =
            br#"{"__type": "com.amazon.coral#ResourceNotFoundException", "Message": "gone"}"#;
        let e = from_response(404, None, None, body);
        assert_eq!(e.code, "ResourceNotFoundException");
        assert_eq!(e.message, "gone");
        assert_eq!(e.class, ErrorClass::Permanent);

        let e = from_response(
            400,
            Some("ThrottlingException:http://internal.amazon.com/"),
            Some("2"),
            br#"{"code": "Other", "message": "slow down"}"#,
        );
        assert_eq!(e.code, "ThrottlingException", "the header wins, cut at ':'");
        assert_eq!(e.class, ErrorClass::Throttled);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(2)));

        let e = from_response(502, None, None, b"<html>bad gateway</html>");
        assert_eq!(e.code, "HTTP 502");
        assert_eq!(e.class, ErrorClass::Transient);
    }
}
