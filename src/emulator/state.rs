//! The emulator's data: Customer Profiles domains, Connect instances and Genesys profiles,
//! read from a seed and written back in the same shape.
//!
//! ```json
//! {"domains":   {"<DomainName>": {"profiles": {"<32 hex ProfileId>": {"FirstName": "..."}}}},
//!  "instances": {"<InstanceId>": {"users": {"<UserId>": {"Username": "...", "IdentityInfo": {}}}}},
//!  "genesys":   {"tenant_id": 1, "profiles": {"<customer_id>": {"FirstName": "..."}}}}
//! ```
//!
//! Every map is ordered, so the state reads back the same way every time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rules;

/// A record: member name to JSON value (a profile, a user, a Genesys profile body).
pub type Record = BTreeMap<String, Value>;

/// The Customer Profiles domain that exists when no seed is given.
pub const DEFAULT_DOMAIN: &str = "ExampleDomainName";
/// The Connect instance that exists when no seed is given (the id of the AWS examples).
pub const DEFAULT_INSTANCE: &str = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";

/// Everything the emulator stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    /// Customer Profiles domains by DomainName.
    pub domains: BTreeMap<String, Domain>,
    /// Connect instances by InstanceId.
    pub instances: BTreeMap<String, Instance>,
    /// The Genesys UCS tenant.
    pub genesys: Genesys,
}

/// One Customer Profiles domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Domain {
    /// Profiles by ProfileId; members as in UpdateProfile (no `ProfileId` member inside).
    pub profiles: BTreeMap<String, Record>,
}

/// One Connect instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Instance {
    /// How the instance manages identities, as DescribeInstance says:
    /// `CONNECT_MANAGED` (when absent), `SAML` or `EXISTING_DIRECTORY`.
    #[serde(
        rename = "IdentityManagementType",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity_management_type: Option<String>,
    /// Users by UserId; members as in DescribeUser's `User` (`Id` and `Arn` are derived).
    pub users: BTreeMap<String, Record>,
    /// `"merge"`: UpdateUserIdentityInfo keeps a member left out of `IdentityInfo` instead of
    /// clearing it (`"replace"`, the default). The documentation does not say which the
    /// service does; the option lets a client's read-back be tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_update: Option<String>,
    /// UserId → the `Username` ListUsers gives that user instead of its own: a listing read
    /// before the user was renamed (DescribeUser and SearchUsers give the current name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub listed_usernames: BTreeMap<String, String>,
}

/// The identity management types DescribeInstance knows.
pub const IDENTITY_MANAGEMENT_TYPES: [&str; 3] = ["CONNECT_MANAGED", "SAML", "EXISTING_DIRECTORY"];

impl Instance {
    /// The instance's identity management type (`CONNECT_MANAGED` when the seed gives none).
    pub fn identity_management(&self) -> &str {
        self.identity_management_type
            .as_deref()
            .unwrap_or("CONNECT_MANAGED")
    }
}

/// The Genesys tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Genesys {
    /// When set, `X-Genesys-TenantId` must carry this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<i64>,
    /// Profiles by customer_id, as their JSON bodies (without `customer_id`).
    pub profiles: BTreeMap<String, Record>,
    /// Whether a profile schema is defined; without one, UCS answers 403 to every write.
    /// Seeded as `"schema": false`; absent means defined.
    #[serde(skip_serializing_if = "is_true")]
    pub schema: bool,
    /// The status of a `POST /profiles` whose customer_id exists: UCS documents 400 (its
    /// general error) and no 409, which is the default; a seed's `"duplicate_status": 409`
    /// answers as other servers do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_status: Option<u16>,
    /// How many `POST /profiles`, from the next one, create the profile and then answer 500,
    /// as a response lost after the commit (seeded as `"lost_creates": N`).
    #[serde(skip_serializing_if = "is_zero")]
    pub lost_creates: u32,
}

impl Default for Genesys {
    fn default() -> Self {
        Genesys {
            tenant_id: None,
            profiles: BTreeMap::new(),
            schema: true,
            duplicate_status: None,
            lost_creates: 0,
        }
    }
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

fn is_true(value: &bool) -> bool {
    *value
}

impl State {
    /// The state used when no seed is given: one empty domain `ExampleDomainName`, one
    /// empty instance `a1b2c3d4-5678-90ab-cdef-EXAMPLE11111`, Genesys with no tenant check.
    pub fn default_seed() -> State {
        let mut state = State::default();
        state
            .domains
            .insert(DEFAULT_DOMAIN.to_string(), Domain::default());
        state
            .instances
            .insert(DEFAULT_INSTANCE.to_string(), Instance::default());
        state
    }

    /// Reads a seed, checking its shape and ids.
    pub fn from_seed(seed: Value) -> Result<State, String> {
        let state: State = serde_json::from_value(seed).map_err(|e| e.to_string())?;
        state.check()?;
        Ok(state)
    }

    /// The state as JSON, in the seed's shape.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn check(&self) -> Result<(), String> {
        for (name, domain) in &self.domains {
            if !rules::is_name(name) {
                return Err(format!(
                    "domain name {name:?} must match ^[a-zA-Z0-9_-]+$ (1-64)"
                ));
            }
            if let Some(id) = domain.profiles.keys().find(|id| !rules::is_profile_id(id)) {
                return Err(format!(
                    "profile id {id:?} in domain {name} must be 32 lowercase hex characters"
                ));
            }
        }
        for (id, instance) in &self.instances {
            if id.is_empty() || id.chars().count() > 100 {
                return Err(format!("instance id {id:?} must have 1-100 characters"));
            }
            if let Some(kind) = &instance.identity_management_type
                && !IDENTITY_MANAGEMENT_TYPES.contains(&kind.as_str())
            {
                return Err(format!(
                    "instance {id}: IdentityManagementType {kind:?} must be one of {}",
                    IDENTITY_MANAGEMENT_TYPES.join(", ")
                ));
            }
            if instance.users.keys().any(String::is_empty) {
                return Err(format!("instance {id} has a user with an empty id"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_round_trips() {
        let seed = json!({
            "domains": {"D": {"profiles": {"0123456789abcdef0123456789abcdef": {"FirstName": "A", "Address": {"City": "B"}}}}},
            "instances": {"i": {"users": {"u": {"Username": "x", "IdentityInfo": {"FirstName": "A"}}}}},
            "genesys": {"tenant_id": 1, "profiles": {"c1": {"EmailAddress": ["a@x.com"]}}}
        });
        let state = State::from_seed(seed.clone()).expect("valid seed");
        assert_eq!(state.to_json(), seed);
    }

    #[test]
    fn bad_seeds_are_refused() {
        assert!(State::from_seed(json!({"domain": {}})).is_err());
        assert!(State::from_seed(json!({"domains": {"D": {"profiles": {"xyz": {}}}}})).is_err());
        assert!(State::from_seed(json!({})).is_ok());
    }
}
