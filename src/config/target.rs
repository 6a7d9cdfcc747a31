//! `[target]`, compiled: one struct per target with its own keys, checks and defaults.
//!
//! The file's `[target]` table is one flat serde mirror ([`RawTarget`]), so that a key set for
//! the wrong target gets an error naming the target it belongs to, with its line. Compiled,
//! it is a [`Target`] enum: a Customer Profiles target has a domain, a Connect-users target an
//! instance id, a Genesys target a base URL, and a key of one target cannot be represented in
//! another's. Each struct's `compile` holds its checks; the problems come back with the byte
//! span they are about, for [`super::compile`] to turn into file and line.

use std::ops::Range;

use toml::Spanned;

use super::raw::RawTarget;
use crate::schema::TargetKind;

/// A problem found in `[target]`: the byte span it is about, and what is wrong.
pub(super) type Problem = (Range<usize>, String);

/// `[target]`, compiled: which API, and what names the records in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Amazon Connect Customer Profiles.
    CustomerProfiles(CustomerProfilesTarget),
    /// Amazon Connect users.
    ConnectUser(ConnectUserTarget),
    /// Genesys Context Services (UCS).
    GenesysUcs(GenesysUcsTarget),
}

/// `[target]` of `customer-profiles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfilesTarget {
    /// The Customer Profiles domain (`DomainName`).
    pub domain: String,
    /// Region and endpoint overrides.
    pub aws: AwsTarget,
}

/// `[target]` of `connect-user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUserTarget {
    /// The Connect instance id.
    pub instance_id: String,
    /// Whether a changed login e-mail may be written (default no).
    pub allow_email_change: bool,
    /// Region and endpoint overrides.
    pub aws: AwsTarget,
}

/// `[target]` of `genesys-ucs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysUcsTarget {
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// The tenant, sent as `X-Genesys-TenantId` when set.
    pub tenant_id: Option<i64>,
    /// The profile extensions the UCS schema declares: a mapped attribute of the same name
    /// (in any case) would be written over the extension, so it is a config error.
    pub extensions: Vec<String>,
}

/// What both AWS targets may override of the AWS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsTarget {
    /// The region (default: the AWS configuration's).
    pub region: Option<String>,
    /// The endpoint (default: the AWS configuration's, else the service's own).
    pub endpoint_url: Option<String>,
}

impl Target {
    /// Compiles `[target]`: the struct of its `kind`, and every problem found. With problems,
    /// the target is a placeholder that is never used.
    pub(super) fn compile(raw: RawTarget) -> (Target, Vec<Problem>) {
        let kind = *raw.kind.get_ref();
        let mut problems = foreign_keys(&raw, kind);
        let target = match kind {
            TargetKind::CustomerProfiles => {
                Target::CustomerProfiles(CustomerProfilesTarget::compile(raw, &mut problems))
            }
            TargetKind::ConnectUser => {
                Target::ConnectUser(ConnectUserTarget::compile(raw, &mut problems))
            }
            TargetKind::GenesysUcs => {
                Target::GenesysUcs(GenesysUcsTarget::compile(raw, &mut problems))
            }
        };
        (target, problems)
    }

    /// Which API.
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::CustomerProfiles(_) => TargetKind::CustomerProfiles,
            Target::ConnectUser(_) => TargetKind::ConnectUser,
            Target::GenesysUcs(_) => TargetKind::GenesysUcs,
        }
    }

    /// The AWS overrides of an AWS target; `None` for Genesys.
    pub fn aws(&self) -> Option<&AwsTarget> {
        match self {
            Target::CustomerProfiles(t) => Some(&t.aws),
            Target::ConnectUser(t) => Some(&t.aws),
            Target::GenesysUcs(_) => None,
        }
    }

    /// Points the target at `url`: an AWS target's endpoint (in `region`), Genesys' base URL.
    pub fn point_at(&mut self, url: &str, region: &str) {
        let aws = match self {
            Target::CustomerProfiles(t) => &mut t.aws,
            Target::ConnectUser(t) => &mut t.aws,
            Target::GenesysUcs(t) => {
                t.base_url = url.trim_end_matches('/').to_owned();
                return;
            }
        };
        aws.endpoint_url = Some(url.to_owned());
        aws.region = Some(region.to_owned());
    }

    /// What names the target's records, beyond its kind, as `key=value` words: the domain,
    /// instance or base URL and tenant, and an AWS target's region (`[target] region`, else
    /// `region`, the AWS configuration's). Run files record it (`--resume` checks it); the
    /// sync state is kept under the fuller identity the target itself gives once connected
    /// (`Target::identity`: account, endpoint, instance ARN).
    pub fn scope(&self, region: Option<&str>) -> String {
        let mut scope = Vec::new();
        match self {
            Target::CustomerProfiles(t) => scope.push(format!("domain={}", t.domain)),
            Target::ConnectUser(t) => scope.push(format!("instance_id={}", t.instance_id)),
            Target::GenesysUcs(t) => {
                scope.push(format!("base_url={}", t.base_url));
                if let Some(tenant) = t.tenant_id {
                    scope.push(format!("tenant_id={tenant}"));
                }
            }
        }
        if let Some(region) = self.aws().and_then(|a| a.region.as_deref().or(region)) {
            scope.push(format!("region={region}"));
        }
        scope.join(" ")
    }

    /// The target for people (the report's header): its kind and what names it, and the
    /// region and endpoint when the config sets them.
    pub fn describe(&self) -> String {
        let mut text = self.kind().name().to_owned();
        match self {
            Target::CustomerProfiles(t) => text.push_str(&format!(", domain {}", t.domain)),
            Target::ConnectUser(t) => text.push_str(&format!(", instance {}", t.instance_id)),
            Target::GenesysUcs(t) => text.push_str(&format!(" at {}", t.base_url)),
        }
        if let Some(aws) = self.aws() {
            if let Some(region) = &aws.region {
                text.push_str(&format!(", region {region}"));
            }
            if let Some(url) = &aws.endpoint_url {
                text.push_str(&format!(", endpoint {url}"));
            }
        }
        text
    }
}

impl CustomerProfilesTarget {
    /// Its keys, for "is for" errors.
    const KEYS: &[&str] = &["domain", "region", "endpoint_url"];

    fn compile(raw: RawTarget, problems: &mut Vec<Problem>) -> Self {
        let domain = required(&raw.kind, raw.domain, "domain", problems);
        if let Some(domain) = &domain {
            let name = domain.get_ref();
            let ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                problems.push((
                    domain.span(),
                    "[target] domain must be 1-64 characters of letters, digits, _ and - \
                     (DomainName)"
                        .to_owned(),
                ));
            }
        }
        CustomerProfilesTarget {
            domain: value(domain),
            aws: AwsTarget::compile(raw.region, raw.endpoint_url, problems),
        }
    }
}

impl ConnectUserTarget {
    /// Its keys, for "is for" errors.
    const KEYS: &[&str] = &[
        "instance_id",
        "allow_email_change",
        "region",
        "endpoint_url",
    ];

    fn compile(raw: RawTarget, problems: &mut Vec<Problem>) -> Self {
        let instance = required(&raw.kind, raw.instance_id, "instance_id", problems);
        if let Some(instance) = &instance
            && !(1..=100).contains(&instance.get_ref().len())
        {
            problems.push((
                instance.span(),
                "[target] instance_id must be 1-100 characters".to_owned(),
            ));
        }
        ConnectUserTarget {
            instance_id: value(instance),
            allow_email_change: raw.allow_email_change.is_some_and(|b| *b.get_ref()),
            aws: AwsTarget::compile(raw.region, raw.endpoint_url, problems),
        }
    }
}

impl GenesysUcsTarget {
    /// Its keys, for "is for" errors.
    const KEYS: &[&str] = &["base_url", "tenant_id", "extensions"];

    fn compile(raw: RawTarget, problems: &mut Vec<Problem>) -> Self {
        let url = required(&raw.kind, raw.base_url, "base_url", problems);
        if let Some(url) = &url {
            checked_url(url, problems);
        }
        GenesysUcsTarget {
            base_url: value(url).trim_end_matches('/').to_owned(),
            tenant_id: raw.tenant_id.map(Spanned::into_inner),
            extensions: raw.extensions.map(Spanned::into_inner).unwrap_or_default(),
        }
    }
}

impl AwsTarget {
    fn compile(
        region: Option<Spanned<String>>,
        endpoint_url: Option<Spanned<String>>,
        problems: &mut Vec<Problem>,
    ) -> Self {
        if let Some(url) = &endpoint_url {
            checked_url(url, problems);
        }
        AwsTarget {
            region: region.map(Spanned::into_inner),
            endpoint_url: endpoint_url.map(Spanned::into_inner),
        }
    }
}

/// A key the target needs: its value, else a problem at the `kind` line.
fn required(
    kind: &Spanned<TargetKind>,
    value: Option<Spanned<String>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Spanned<String>> {
    if value.is_none() {
        let name = kind.get_ref();
        problems.push((kind.span(), format!("{name} needs [target] {key}")));
    }
    value
}

/// A required key's value; empty when it is missing (a problem already says so, and the
/// config is not used).
fn value(key: Option<Spanned<String>>) -> String {
    key.map(Spanned::into_inner).unwrap_or_default()
}

fn checked_url(url: &Spanned<String>, problems: &mut Vec<Problem>) {
    if let Err(why) = check_url(url.get_ref()) {
        problems.push((url.span(), why));
    }
}

/// Every key of `raw` set but not `kind`'s, with the target it belongs to.
fn foreign_keys(raw: &RawTarget, kind: TargetKind) -> Vec<Problem> {
    let set: [(&str, Option<Range<usize>>); 7] = [
        ("domain", raw.domain.as_ref().map(Spanned::span)),
        ("instance_id", raw.instance_id.as_ref().map(Spanned::span)),
        (
            "allow_email_change",
            raw.allow_email_change.as_ref().map(Spanned::span),
        ),
        ("base_url", raw.base_url.as_ref().map(Spanned::span)),
        ("tenant_id", raw.tenant_id.as_ref().map(Spanned::span)),
        ("extensions", raw.extensions.as_ref().map(Spanned::span)),
        ("endpoint_url", raw.endpoint_url.as_ref().map(Spanned::span)),
    ];
    let region = ("region", raw.region.as_ref().map(Spanned::span));
    let mut problems = Vec::new();
    for (key, span) in set.into_iter().chain([region]) {
        let Some(span) = span else { continue };
        if keys(kind).contains(&key) {
            continue;
        }
        let owners: Vec<TargetKind> = TargetKind::ALL
            .into_iter()
            .filter(|k| keys(*k).contains(&key))
            .collect();
        let message = match owners.as_slice() {
            [owner] => format!("[target] {key} is for {owner}, not {kind}"),
            _ => format!("[target] {key} is for the AWS targets; {kind} uses base_url"),
        };
        problems.push((span, message));
    }
    problems
}

/// The keys of a target's `[target]` table, `kind` aside.
fn keys(kind: TargetKind) -> &'static [&'static str] {
    match kind {
        TargetKind::CustomerProfiles => CustomerProfilesTarget::KEYS,
        TargetKind::ConnectUser => ConnectUserTarget::KEYS,
        TargetKind::GenesysUcs => GenesysUcsTarget::KEYS,
    }
}

/// Plain `http://` is only allowed to loopback; credentials would travel in clear otherwise.
/// Also applied to endpoints that come from the AWS configuration rather than the file.
pub fn check_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` is not a URL; expected https://host[:port][/path]"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "`{url}`: plain http:// is refused for any host but loopback; use https://"
        )),
        _ => Err(format!("`{url}`: expected an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("http://127.0.0.1:4566").is_ok());
        assert!(check_url("http://localhost:8080/ucs").is_ok());
        assert!(check_url("http://[::1]:8080").is_ok());
        assert!(check_url("https://ucs.example.com:8080/path").is_ok());
        assert!(check_url("http://ucs.example.com:8080/path").is_err());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("nonsense").is_err());
    }

    /// Compiles `[target]` alone (the rest of a config does not matter here).
    fn target(toml_text: &str) -> (Target, Vec<String>) {
        #[derive(serde::Deserialize)]
        struct Only {
            target: RawTarget,
        }
        let only: Only = toml::from_str(toml_text).expect("a [target] table");
        let (target, problems) = Target::compile(only.target);
        (target, problems.into_iter().map(|(_, m)| m).collect())
    }

    #[test]
    fn each_target_gets_its_own_struct() {
        let (cp, problems) = target(
            "[target]\nkind = \"customer-profiles\"\ndomain = \"D\"\nregion = \"eu-west-2\"",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            cp,
            Target::CustomerProfiles(CustomerProfilesTarget {
                domain: "D".to_owned(),
                aws: AwsTarget {
                    region: Some("eu-west-2".to_owned()),
                    endpoint_url: None,
                },
            })
        );
        let (ucs, problems) = target(
            "[target]\nkind = \"genesys-ucs\"\nbase_url = \"https://ucs.example.com/\"\ntenant_id = 7",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            ucs,
            Target::GenesysUcs(GenesysUcsTarget {
                base_url: "https://ucs.example.com".to_owned(),
                tenant_id: Some(7),
                extensions: Vec::new(),
            })
        );
        assert!(ucs.aws().is_none());
    }

    #[test]
    fn a_key_of_another_target_names_its_owner() {
        let (_, problems) = target(
            "[target]\nkind = \"genesys-ucs\"\nbase_url = \"https://u.example\"\n\
             region = \"us-east-1\"\nallow_email_change = true",
        );
        assert_eq!(
            problems,
            [
                "[target] allow_email_change is for connect-user, not genesys-ucs",
                "[target] region is for the AWS targets; genesys-ucs uses base_url",
            ]
        );
        let (_, problems) = target("[target]\nkind = \"connect-user\"\ntenant_id = 1");
        assert_eq!(
            problems,
            [
                "[target] tenant_id is for genesys-ucs, not connect-user",
                "connect-user needs [target] instance_id",
            ]
        );
    }

    #[test]
    fn scope_names_the_records_and_describe_says_it_for_people() {
        let (connect, _) = target(
            "[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\
             endpoint_url = \"http://127.0.0.1:4566\"",
        );
        assert_eq!(
            connect.scope(Some("us-west-2")),
            "instance_id=i-1 region=us-west-2"
        );
        assert_eq!(connect.scope(None), "instance_id=i-1");
        assert_eq!(
            connect.describe(),
            "connect-user, instance i-1, endpoint http://127.0.0.1:4566"
        );
        let (mut ucs, _) = target(
            "[target]\nkind = \"genesys-ucs\"\nbase_url = \"https://u.example\"\ntenant_id = 3",
        );
        assert_eq!(
            ucs.scope(Some("us-west-2")),
            "base_url=https://u.example tenant_id=3",
            "a Genesys target has no region"
        );
        ucs.point_at("http://127.0.0.1:9/", "us-east-1");
        assert_eq!(ucs.describe(), "genesys-ucs at http://127.0.0.1:9");
    }
}
