//! Which target a state file describes ([`TargetIdentity`]): the target kind and what tells
//! its records apart from every other target's, and the file name that follows from it.

use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

/// Which target a state file describes: the target kind and, within it, the one place records
/// live, as `key=value` words (the scope). Built by the target once it knows where its
/// requests really go (`Target::identity`): the account from STS, the instance's ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetIdentity {
    kind: String,
    scope: String,
}

impl TargetIdentity {
    /// An identity from its parts; `kind` is a target kind such as `customer-profiles`.
    pub fn new(kind: impl Into<String>, scope: impl Into<String>) -> TargetIdentity {
        TargetIdentity {
            kind: kind.into(),
            scope: scope.into(),
        }
    }

    /// A Customer Profiles domain of the AWS `account` in `region`, reached at `endpoint`
    /// (the URL the client sends to, whether configured or the service's default):
    /// `account=… region=… endpoint=… domain=…`.
    pub fn customer_profiles(
        account: &str,
        region: &str,
        endpoint: &str,
        domain: &str,
    ) -> TargetIdentity {
        TargetIdentity::new(
            "customer-profiles",
            format!(
                "account={account} region={region} endpoint={} domain={domain}",
                endpoint_key(endpoint)
            ),
        )
    }

    /// A Connect instance's users: the instance's ARN (which holds its account and region),
    /// reached at `endpoint`: `instance_arn=… endpoint=…`.
    pub fn connect_user(instance_arn: &str, endpoint: &str) -> TargetIdentity {
        TargetIdentity::new(
            "connect-user",
            format!(
                "instance_arn={instance_arn} endpoint={}",
                endpoint_key(endpoint)
            ),
        )
    }

    /// A Genesys UCS tenant behind `base_url`: `base_url=…` and, when the config names one,
    /// `tenant_id=…` (the scope these files have always had).
    pub fn genesys_ucs(base_url: &str, tenant_id: Option<i64>) -> TargetIdentity {
        let mut scope = format!("base_url={}", endpoint_key(base_url));
        if let Some(tenant) = tenant_id {
            scope.push_str(&format!(" tenant_id={tenant}"));
        }
        TargetIdentity::new("genesys-ucs", scope)
    }

    /// The target kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The domain, instance or `base_url#tenant`.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The account and region (or, for Genesys, the whole scope) this identity's target
    /// lives in, for the keys of `[limits] shared`: the quotas are per account and region,
    /// whatever the domain or instance (`customer-profiles:ACCOUNT:REGION`;
    /// `connect-user:ACCOUNT:REGION` from the instance ARN; `genesys-ucs:<scope>`).
    pub fn quota_scope(&self) -> String {
        let word = |name: &str| {
            self.scope
                .split(' ')
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        };
        let kind = &self.kind;
        match kind.as_str() {
            "customer-profiles" => {
                if let (Some(account), Some(region)) = (word("account"), word("region")) {
                    return format!("{kind}:{account}:{region}");
                }
            }
            "connect-user" => {
                let parts: Vec<&str> = word("instance_arn").unwrap_or("").split(':').collect();
                if let [_, _, _, region, account, ..] = parts[..] {
                    return format!("{kind}:{account}:{region}");
                }
            }
            _ => {}
        }
        format!("{kind}:{}", self.scope)
    }

    /// The file name of this identity's state: `<kind>-<xxh3-64 of the scope, 16 hex>.redb`
    /// (the kind made safe for a file name: anything but ASCII letters, digits and `-`
    /// becomes `_`).
    pub fn file_name(&self) -> String {
        let kind: String = self
            .kind
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{kind}-{:016x}.redb", xxh3_64(self.scope.as_bytes()))
    }
}

/// An endpoint as the identity holds it: without the trailing `/` that names the same place.
fn endpoint_key(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl fmt::Display for TargetIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_quota_scope_per_account_and_region_whatever_the_domain_or_endpoint() {
        let a = TargetIdentity::customer_profiles("111122223333", "eu-west-2", "https://x", "crm");
        let b =
            TargetIdentity::customer_profiles("111122223333", "eu-west-2", "https://y", "other");
        assert_eq!(a.quota_scope(), "customer-profiles:111122223333:eu-west-2");
        assert_eq!(a.quota_scope(), b.quota_scope());
        assert_eq!(
            TargetIdentity::connect_user(
                "arn:aws:connect:us-east-1:444455556666:instance/abc",
                "https://e"
            )
            .quota_scope(),
            "connect-user:444455556666:us-east-1"
        );
        let genesys = TargetIdentity::genesys_ucs("https://g.example", Some(7));
        assert_eq!(
            genesys.quota_scope(),
            format!("genesys-ucs:{}", genesys.scope())
        );
        assert!(genesys.quota_scope().ends_with(" tenant_id=7"));
    }

    const AWS: &str = "https://profile.us-east-1.amazonaws.com";

    fn domain(name: &str) -> TargetIdentity {
        TargetIdentity::customer_profiles("123456789012", "us-east-1", AWS, name)
    }

    #[test]
    fn the_identity_holds_account_region_endpoint_and_domain() {
        let prod = domain("D");
        assert_eq!(
            prod.scope(),
            "account=123456789012 region=us-east-1 \
             endpoint=https://profile.us-east-1.amazonaws.com domain=D"
        );
        let others = [
            TargetIdentity::customer_profiles("210987654321", "us-east-1", AWS, "D"),
            TargetIdentity::customer_profiles("123456789012", "eu-west-2", AWS, "D"),
            TargetIdentity::customer_profiles(
                "123456789012",
                "us-east-1",
                "http://127.0.0.1:1",
                "D",
            ),
        ];
        for other in &others {
            assert_ne!(other.file_name(), prod.file_name(), "{other}");
        }
        // A trailing slash names the same endpoint.
        let slash =
            TargetIdentity::customer_profiles("123456789012", "us-east-1", &format!("{AWS}/"), "D");
        assert_eq!(slash, prod);
        let connect = |arn: &str, url: &str| TargetIdentity::connect_user(arn, url);
        let arn = "arn:aws:connect:us-east-1:123456789012:instance/i-1";
        let url = "https://connect.us-east-1.amazonaws.com";
        assert_eq!(
            connect(arn, url).scope(),
            format!("instance_arn={arn} endpoint={url}")
        );
        assert_ne!(connect(arn, url), connect(arn, "http://127.0.0.1:9"));
        assert_ne!(
            connect(arn, url),
            connect("arn:aws:connect:us-east-1:210987654321:instance/i-1", url)
        );
        assert_eq!(
            TargetIdentity::genesys_ucs("https://ucs.example.com/", Some(7)).scope(),
            "base_url=https://ucs.example.com tenant_id=7"
        );
        assert_eq!(
            TargetIdentity::genesys_ucs("https://ucs.example.com", None).scope(),
            "base_url=https://ucs.example.com"
        );
    }
}
