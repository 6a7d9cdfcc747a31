//! SigV4 signing with the AWS chain's credentials, for the requests we sign ourselves over
//! `reqwest` rather than through an SDK client: Connect's REST-JSON (`targets/connect_user.rs`)
//! and the sync state's S3 objects (`state/s3.rs`). The official `aws-sigv4` crate signs;
//! this only keeps the credentials (loaded from the chain, cached until shortly before they
//! expire, never logged) and the service's signing settings in one place.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Signs one service's requests in one region.
pub struct Signer {
    name: &'static str,
    region: String,
    settings: fn() -> SigningSettings,
    provider: Option<SharedCredentialsProvider>,
    cached: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for a service other than S3 (`name` is its signing name, such as `connect`):
    /// the default settings, the double-encoded path every SDK but S3's uses.
    pub fn new(
        name: &'static str,
        region: &str,
        provider: Option<SharedCredentialsProvider>,
    ) -> Signer {
        Signer {
            name,
            region: region.to_owned(),
            settings: SigningSettings::default,
            provider,
            cached: Mutex::new(None),
        }
    }

    /// A signer for S3: the path encoded once and not normalized, and the payload's SHA-256
    /// in `x-amz-content-sha256`, as S3 requires.
    pub fn s3(region: &str, provider: Option<SharedCredentialsProvider>) -> Signer {
        Signer {
            settings: s3_settings,
            ..Signer::new("s3", region, provider)
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The headers that sign a request of `method` to `url` carrying `headers` and `body`
    /// (the caller sends `headers` too). The error says why, never a credential.
    pub async fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let credentials = self.credentials().await?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.name)
            .time(SystemTime::now())
            .settings((self.settings)())
            .build()
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("cannot sign the request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }

    /// The credentials to sign with, from the AWS chain, kept until shortly before they
    /// expire. Never logged.
    async fn credentials(&self) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE)
        };
        if let Some(c) = self.lock_cache().as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or("no AWS credentials: the AWS configuration chain found none")?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials: {}", describe(&e)))?;
        *self.lock_cache() = Some(credentials.clone());
        Ok(credentials)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// S3's signing settings: single encoding, no path normalization, `x-amz-content-sha256`.
fn s3_settings() -> SigningSettings {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings
}

/// An error and its sources, on one line.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
