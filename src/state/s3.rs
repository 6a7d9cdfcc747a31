//! The few S3 requests the sync state needs, signed with SigV4 (`crate::sigv4`) and sent
//! over `reqwest`, as the Connect client does (ARCHITECTURE.md says why not `aws-sdk-s3`):
//! GET, PUT with a condition (`If-None-Match: *` to create, `If-Match: "<etag>"` to replace;
//! 412 means the object is not what we last saw), DELETE (with `If-Match` when we know the
//! ETag) and a one-page ListObjectsV2.
//!
//! Addressing is path-style (`<endpoint>/<bucket>/<key>`) everywhere: a custom endpoint
//! (`AWS_ENDPOINT_URL_S3`, MinIO, a test server) needs it, and AWS still serves it for
//! every bucket whose name has no dot, so one form covers both and a bucket name never has
//! to be a valid host name. Errors name the endpoint, the bucket and key, the status and S3's
//! error code; never a credential, never a body we sent.

use std::time::{Duration, SystemTime};

use crate::sigv4::{Signer, describe};
use reqwest::{Client, Method};

/// Where a sync state lives in S3: `s3://BUCKET/PREFIX/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending with `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET/PREFIX/` (the prefix may be empty; a missing trailing `/` is
    /// added). Pure.
    pub fn parse(text: &str) -> Result<S3Location, String> {
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{text:?} is not an s3://BUCKET/PREFIX/ location"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
            return Err(format!(
                "{text:?}: the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.'"
            ));
        }
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// An S3 request that failed (not a refused condition, which is an answer).
#[derive(Debug, thiserror::Error)]
#[error("S3 {operation} s3://{bucket}/{key} at {endpoint}: {why}")]
pub struct S3Error {
    /// `GetObject`, `PutObject`, ...
    pub operation: &'static str,
    /// The endpoint asked.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The status and S3's error code, or the transport's error.
    pub why: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
}

impl S3Error {
    /// S3's error code (`NoSuchBucket`, `AccessDenied`, ...), when the answer had one: the
    /// word after the status in [`S3Error::why`].
    pub fn code(&self) -> Option<&str> {
        self.status?;
        self.why.split_whitespace().nth(2)
    }
}

/// What a conditional PUT asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    /// `If-None-Match: *`: only if there is no such object.
    Absent,
    /// `If-Match: <etag>`: only if the object is still the one we last saw.
    Is(&'a str),
}

/// The answer to a conditional PUT or DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Done; the object's new ETag (empty after a DELETE).
    Done(String),
    /// 412: the condition did not hold (someone else wrote the object, or it is gone).
    Refused,
}

/// An object read: its bytes, its ETag, and S3's own clock (`Last-Modified`, `Date`).
#[derive(Debug, Clone)]
pub struct Object {
    /// The body.
    pub body: Vec<u8>,
    /// The ETag, quotes included, as S3 wants it back in `If-Match`.
    pub etag: String,
    /// When S3 last stored it, by S3's clock.
    pub last_modified: Option<SystemTime>,
    /// When S3 answered, by S3's clock.
    pub date: Option<SystemTime>,
}

/// A bucket's S3 client.
#[derive(Debug)]
pub struct S3 {
    http: Client,
    endpoint: String,
    bucket: String,
    signer: Signer,
}

impl S3 {
    /// A client for `bucket` at `endpoint` (no trailing `/`), signing with `signer`.
    pub fn new(endpoint: &str, bucket: &str, signer: Signer) -> Result<S3, String> {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(3100))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(S3 {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
            signer,
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// GetObject; `None` for 404.
    pub async fn get(&self, key: &str) -> Result<Option<Object>, S3Error> {
        let answer = self
            .send("GetObject", Method::GET, key, "", &[], Vec::new())
            .await?;
        match answer.status {
            200 => Ok(Some(Object {
                etag: answer.header("etag").unwrap_or_default(),
                last_modified: answer.time("last-modified"),
                date: answer.time("date"),
                body: answer.body,
            })),
            404 => Ok(None),
            _ => Err(self.failed("GetObject", key, &answer)),
        }
    }

    /// PutObject under `condition`.
    pub async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: Condition<'_>,
    ) -> Result<Written, S3Error> {
        let header = match condition {
            Condition::Absent => ("if-none-match", "*"),
            Condition::Is(etag) => ("if-match", etag),
        };
        let answer = self
            .send("PutObject", Method::PUT, key, "", &[header], body)
            .await?;
        match answer.status {
            200 => Ok(Written::Done(answer.header("etag").unwrap_or_default())),
            // 409 ConditionalRequestConflict: a concurrent conditional write won the race;
            // 404 under If-Match: the object we last saw is gone.
            412 | 409 => Ok(Written::Refused),
            404 if matches!(condition, Condition::Is(_)) => Ok(Written::Refused),
            _ => Err(self.failed("PutObject", key, &answer)),
        }
    }

    /// DeleteObject, with `If-Match` when `etag` is given (a 404 is done: nothing is there).
    pub async fn delete(&self, key: &str, etag: Option<&str>) -> Result<Written, S3Error> {
        let headers: Vec<(&str, &str)> = etag.map(|e| ("if-match", e)).into_iter().collect();
        let answer = self
            .send(
                "DeleteObject",
                Method::DELETE,
                key,
                "",
                &headers,
                Vec::new(),
            )
            .await?;
        match answer.status {
            200 | 204 | 404 => Ok(Written::Done(String::new())),
            412 | 409 => Ok(Written::Refused),
            _ => Err(self.failed("DeleteObject", key, &answer)),
        }
    }

    /// The keys under `prefix` (ListObjectsV2, its first page: up to 1,000 keys).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let query = format!("list-type=2&prefix={}", encode(prefix, false));
        let answer = self
            .send("ListObjectsV2", Method::GET, "", &query, &[], Vec::new())
            .await?;
        if answer.status != 200 {
            return Err(self.failed("ListObjectsV2", prefix, &answer));
        }
        Ok(xml_values(&String::from_utf8_lossy(&answer.body), "Key"))
    }

    /// One signed request; an answer of any status is `Ok`.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        key: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, S3Error> {
        let mut url = format!("{}/{}/{}", self.endpoint, self.bucket, encode(key, true));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let error = |why: String| S3Error {
            operation,
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            why,
            status: None,
        };
        let signed = self
            .signer
            .sign(method.as_str(), &url, headers, &body)
            .await
            .map_err(&error)?;
        let mut request = self.http.request(method, &url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        for (name, value) in &signed {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| error(describe(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| error(describe(&e)))?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn failed(&self, operation: &'static str, key: &str, answer: &Answer) -> S3Error {
        let code = xml_values(&String::from_utf8_lossy(&answer.body), "Code")
            .into_iter()
            .next()
            .unwrap_or_default();
        S3Error {
            operation,
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            why: format!("HTTP {} {code}", answer.status)
                .trim_end()
                .to_owned(),
            status: Some(answer.status),
        }
    }
}

/// An S3 answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn time(&self, name: &str) -> Option<SystemTime> {
        http_date(&self.header(name)?)
    }
}

/// An HTTP date (`Mon, 07 Dec 2026 15:36:12 GMT`) as a time. Pure.
pub fn http_date(text: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc2822(text.trim()).ok()?;
    let secs = u64::try_from(parsed.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Percent-encodes a key for a URL path (`/` kept when `keep_slash`) or a query value:
/// everything but unreserved characters. Pure.
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The text of every `<tag>…</tag>` in `xml`, entities decoded. Pure; enough for S3's
/// flat answers (`Key`, `Code`).
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_with_their_prefix_ending_in_a_slash() {
        let at = S3Location::parse("s3://my-bucket/nightly/crm").expect("parses");
        assert_eq!(at.bucket, "my-bucket");
        assert_eq!(at.prefix, "nightly/crm/");
        assert_eq!(at.key("x.redb"), "nightly/crm/x.redb");
        assert_eq!(at.to_string(), "s3://my-bucket/nightly/crm/");
        assert_eq!(S3Location::parse("s3://b12").expect("bare").prefix, "");
        assert!(S3Location::parse("state/").is_err());
        assert!(S3Location::parse("s3://No_Such/x").is_err());
    }

    #[test]
    fn keys_and_queries_are_percent_encoded() {
        assert_eq!(encode("a b/c+d.redb", true), "a%20b/c%2Bd.redb");
        assert_eq!(encode("p/q", false), "p%2Fq");
    }

    #[test]
    fn s3_dates_and_xml_are_read() {
        let t = http_date("Mon, 07 Dec 2026 15:36:12 GMT").expect("date");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after")
                .as_secs(),
            1_796_657_772
        );
        let xml = "<R><Contents><Key>a&amp;b</Key></Contents><Contents><Key>c</Key></Contents></R>";
        assert_eq!(xml_values(xml, "Key"), ["a&b", "c"]);
    }
}
