//! The emulator's data: Customer Profiles domains, Connect instances and Genesys profiles,
//! read from a seed and written back in the same shape.
//!
//! ```json
//! {"account":   "123456789012",
//!  "domains":   {"<DomainName>": {"profiles": {"<32 hex ProfileId>": {"FirstName": "..."}},
//!                                 "expiration_days": 366,
//!                                 "updated": {"<32 hex ProfileId>": 1767225600}}},
//!  "instances": {"<InstanceId>": {"users": {"<UserId>": {"Username": "...", "IdentityInfo": {}}}}},
//!  "genesys":   {"tenant_id": 1, "profiles": {"<customer_id>": {"FirstName": "..."}}}}
//! ```
//!
//! Every map is ordered, so the state reads back the same way every time.
//!
//! A domain's `updated` holds each profile's last update (epoch seconds on the emulator's
//! clock, see [`super::clock`]); a profile it does not list counts as updated at the
//! emulator's start. A profile not updated within the domain's `expiration_days` (default
//! [`DEFAULT_EXPIRATION_DAYS`]) is gone, as the service removes it: the pure functions here
//! decide that ([`Domain::is_expired`], [`Domain::remove_expired`]) for a [`Moment`] given to
//! them.
//!
//! A domain also holds what is derived from its profiles and not in the seed: SearchProfiles'
//! index ([`super::search_index`]) and a lower bound of its last updates, with which a sweep
//! costs nothing while no profile can have expired. Both are made when a domain is read
//! (`Domain`'s `From<DomainSeed>`) and kept in step by its methods, the only way to change
//! its profiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::clock::{DAY, Moment};
use super::rules;
use super::search_index::SearchIndex;

/// A record: member name to JSON value (a profile, a user, a Genesys profile body).
pub type Record = BTreeMap<String, Value>;

/// The Customer Profiles domain that exists when no seed is given.
pub const DEFAULT_DOMAIN: &str = "ExampleDomainName";
/// The Connect instance that exists when no seed is given (the id of the AWS examples).
pub const DEFAULT_INSTANCE: &str = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111";

/// The AWS account the emulator answers for when neither the seed nor `--account` names one.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Everything the emulator stores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct State {
    /// The AWS account (12 digits) STS `GetCallerIdentity` answers and ARNs hold
    /// ([`DEFAULT_ACCOUNT`] when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Customer Profiles domains by DomainName.
    pub domains: BTreeMap<String, Domain>,
    /// Connect instances by InstanceId.
    pub instances: BTreeMap<String, Instance>,
    /// The Genesys UCS tenant.
    pub genesys: Genesys,
}

/// A domain's `DefaultExpirationDays` when the seed gives none (what GetDomain answered
/// before domains had their own).
pub const DEFAULT_EXPIRATION_DAYS: u32 = 366;
/// The values the service accepts for `DefaultExpirationDays`.
pub const EXPIRATION_DAYS: std::ops::RangeInclusive<u32> = 1..=1098;

/// One Customer Profiles domain.
///
/// Its profiles and their times are private: every change goes through its methods, which
/// keep the derived data in step (the [`SearchIndex`] and the lower bound of the last
/// updates, neither of them in the seed; both are made again when a domain is read).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "DomainSeed")]
pub struct Domain {
    /// Profiles by ProfileId; members as in UpdateProfile (no `ProfileId` member inside).
    profiles: BTreeMap<String, Record>,
    /// `DefaultExpirationDays` (default [`DEFAULT_EXPIRATION_DAYS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// Last update of profiles by ProfileId, in seconds since the epoch on the emulator's
    /// clock; set by CreateProfile and UpdateProfile. A profile not listed counts as updated
    /// at the emulator's start. Its ids are always ids of `profiles`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    updated: BTreeMap<String, i64>,
    /// SearchProfiles' index over `profiles`.
    #[serde(skip)]
    index: SearchIndex,
    /// At most the oldest time in `updated` (none when it is empty): with the start for the
    /// profiles it does not list, no profile was updated before it, so nothing can have
    /// expired while `now` is within the expiration of it.
    #[serde(skip)]
    oldest: Option<i64>,
}

/// A domain as the seed holds it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DomainSeed {
    profiles: BTreeMap<String, Record>,
    expiration_days: Option<u32>,
    updated: BTreeMap<String, i64>,
}

impl From<DomainSeed> for Domain {
    fn from(seed: DomainSeed) -> Domain {
        Domain {
            index: SearchIndex::build(&seed.profiles),
            oldest: seed.updated.values().copied().min(),
            profiles: seed.profiles,
            expiration_days: seed.expiration_days,
            updated: seed.updated,
        }
    }
}

/// Domains are equal when their seeds are (the rest is derived).
impl PartialEq for Domain {
    fn eq(&self, other: &Domain) -> bool {
        self.profiles == other.profiles
            && self.expiration_days == other.expiration_days
            && self.updated == other.updated
    }
}

impl Domain {
    /// Profiles by ProfileId, expired ones included until they are removed.
    pub fn profiles(&self) -> &BTreeMap<String, Record> {
        &self.profiles
    }

    /// `DefaultExpirationDays`.
    pub fn expiration_days(&self) -> u32 {
        self.expiration_days.unwrap_or(DEFAULT_EXPIRATION_DAYS)
    }

    /// When profile `id` was last updated (the start when the domain has no time for it).
    pub fn last_update(&self, id: &str, at: Moment) -> i64 {
        self.updated.get(id).copied().unwrap_or(at.started)
    }

    /// Whether profile `id` has gone without an update for longer than the expiration.
    pub fn is_expired(&self, id: &str, at: Moment) -> bool {
        self.is_past(self.last_update(id, at), at)
    }

    /// Whether a profile last updated at `updated` has expired at `at`.
    fn is_past(&self, updated: i64, at: Moment) -> bool {
        at.now - updated > i64::from(self.expiration_days()) * DAY
    }

    /// Profile `id` if it exists and has not expired; an expired one is removed here.
    pub fn live_profile(&mut self, id: &str, at: Moment) -> Option<&Record> {
        if self.profiles.contains_key(id) && self.is_expired(id, at) {
            self.remove(id);
        }
        self.profiles.get(id)
    }

    /// Stores a new profile `id` (CreateProfile), written at `at`.
    pub fn create(&mut self, id: &str, profile: Record, at: Moment) {
        self.remove(id);
        self.index.insert(id, &profile);
        self.profiles.insert(id.to_string(), profile);
        self.touch(id, at);
    }

    /// Changes profile `id` with `change` if it exists and has not expired (UpdateProfile),
    /// written at `at`; false when there is no such profile.
    pub fn update(&mut self, id: &str, at: Moment, change: impl FnOnce(&mut Record)) -> bool {
        if self.live_profile(id, at).is_none() {
            return false;
        }
        let Some(profile) = self.profiles.get_mut(id) else {
            return false;
        };
        self.index.remove(id, profile);
        change(profile);
        self.index.insert(id, profile);
        self.touch(id, at);
        true
    }

    /// Records that profile `id` (which exists) was written at `at`.
    fn touch(&mut self, id: &str, at: Moment) {
        self.updated.insert(id.to_string(), at.now);
        self.oldest = Some(self.oldest.map_or(at.now, |oldest| oldest.min(at.now)));
    }

    /// The ids of the profiles holding `value` under search key `key`, in ProfileId order
    /// (expired ones included until they are removed).
    pub fn ids_holding<'a>(&'a self, key: &'a str, value: &'a str) -> Vec<&'a str> {
        if key == "_profileId" {
            return self
                .profiles
                .get_key_value(value)
                .map(|(id, _)| id.as_str())
                .into_iter()
                .collect();
        }
        self.index.ids(key, value).collect()
    }

    /// Whether some profile may have expired at `at`: false when even the oldest possible
    /// last update is within the expiration, so a sweep costs nothing then.
    fn may_have_expired(&self, at: Moment) -> bool {
        let unlisted = (self.profiles.len() > self.updated.len()).then_some(at.started);
        match self.oldest.into_iter().chain(unlisted).min() {
            Some(oldest) => self.is_past(oldest, at),
            None => false,
        }
    }

    /// Removes every expired profile, as the service does; returns how many. It reads every
    /// profile only when one may have expired.
    pub fn remove_expired(&mut self, at: Moment) -> usize {
        if !self.may_have_expired(at) {
            return 0;
        }
        let expired: Vec<String> = self
            .profiles
            .keys()
            .filter(|id| self.is_expired(id, at))
            .cloned()
            .collect();
        for id in &expired {
            self.remove(id);
        }
        self.oldest = self.updated.values().copied().min();
        expired.len()
    }

    /// Removes profile `id` (DeleteProfile, or expiry), if it exists.
    pub fn remove(&mut self, id: &str) {
        if let Some(profile) = self.profiles.remove(id) {
            self.index.remove(id, &profile);
        }
        self.updated.remove(id);
    }

    /// The index as it should be: made again from the profiles (for the tests' checks).
    #[cfg(test)]
    pub fn index_is_in_step(&self) -> bool {
        self.index == SearchIndex::build(&self.profiles)
    }
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
    /// The AWS account.
    pub fn account(&self) -> &str {
        self.account.as_deref().unwrap_or(DEFAULT_ACCOUNT)
    }

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

    /// Removes the expired profiles of every domain; returns how many.
    pub fn remove_expired(&mut self, at: Moment) -> usize {
        self.domains
            .values_mut()
            .map(|domain| domain.remove_expired(at))
            .sum()
    }

    /// The state as JSON, in the seed's shape.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(account) = &self.account {
            check_account(account)?;
        }
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
            if let Some(days) = domain.expiration_days
                && !EXPIRATION_DAYS.contains(&days)
            {
                return Err(format!(
                    "domain {name}: expiration_days {days} must be between {} and {}",
                    EXPIRATION_DAYS.start(),
                    EXPIRATION_DAYS.end()
                ));
            }
            if let Some(id) = domain
                .updated
                .keys()
                .find(|id| !domain.profiles.contains_key(*id))
            {
                return Err(format!(
                    "domain {name}: updated names profile {id:?}, which its profiles lack"
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

/// An AWS account id is 12 digits.
pub fn check_account(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("account {account:?} must be 12 digits"))
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
        assert!(State::from_seed(json!({"domains": {"D": {"expiration_days": 0}}})).is_err());
        assert!(State::from_seed(json!({"domains": {"D": {"expiration_days": 1099}}})).is_err());
        assert!(State::from_seed(json!({"domains": {"D": {"updated": {P: 1}}}})).is_err());
        assert!(State::from_seed(json!({"account": "12345"})).is_err());
        let state = State::from_seed(json!({"account": "210987654321"})).expect("valid");
        assert_eq!(state.account(), "210987654321");
        assert_eq!(State::default_seed().account(), DEFAULT_ACCOUNT);
    }

    const P: &str = "0123456789abcdef0123456789abcdef";
    const Q: &str = "11111111111111111111111111111111";

    fn domain(expiration_days: Option<u32>, updated: &[(&str, i64)]) -> Domain {
        Domain::from(DomainSeed {
            profiles: [P, Q]
                .into_iter()
                .map(|id| (id.to_string(), Record::new()))
                .collect(),
            expiration_days,
            updated: updated.iter().map(|(id, t)| (id.to_string(), *t)).collect(),
        })
    }

    fn at(now_days: i64, started_days: i64) -> Moment {
        Moment {
            now: now_days * DAY,
            started: started_days * DAY,
        }
    }

    #[test]
    fn expiry_counts_from_the_last_update_or_the_start() {
        let domain = domain(None, &[(P, 0)]);
        assert_eq!(domain.expiration_days(), DEFAULT_EXPIRATION_DAYS);
        // P updated on day 0; Q never, so as of the start (day 100).
        assert!(!domain.is_expired(P, at(366, 100)));
        assert!(domain.is_expired(
            P,
            Moment {
                now: 366 * DAY + 1,
                started: 100 * DAY
            }
        ));
        assert!(!domain.is_expired(Q, at(466, 100)));
        assert!(domain.is_expired(Q, at(467, 100)));
    }

    #[test]
    fn remove_expired_drops_the_profile_and_its_time() {
        let mut domain = domain(Some(365), &[(P, 0), (Q, 30 * DAY)]);
        assert_eq!(domain.remove_expired(at(380, 0)), 1);
        assert_eq!(domain.profiles.keys().collect::<Vec<_>>(), [Q]);
        assert_eq!(domain.updated.keys().collect::<Vec<_>>(), [Q]);
        assert_eq!(domain.remove_expired(at(380, 0)), 0);
    }

    #[test]
    fn a_touched_profile_lives_another_expiration() {
        let mut domain = domain(Some(10), &[(P, 0)]);
        domain.touch(P, at(9, 0));
        assert!(domain.live_profile(P, at(19, 0)).is_some());
        assert!(domain.live_profile(P, at(20, 0)).is_none());
        assert!(!domain.profiles.contains_key(P) && !domain.updated.contains_key(P));
    }

    #[test]
    fn the_sweep_reads_the_profiles_only_when_the_oldest_may_have_expired() {
        // P on day 0, Q never (so at the start, day 5), in a 365-day domain.
        let mut domain = domain(Some(365), &[(P, 0)]);
        assert!(!domain.may_have_expired(at(365, 5)));
        assert!(domain.may_have_expired(Moment {
            now: 365 * DAY + 1,
            started: 5 * DAY
        }));
        assert_eq!(domain.remove_expired(at(366, 5)), 1);
        // Q, at the start, is now the oldest.
        assert!(!domain.may_have_expired(at(370, 5)));
        assert!(domain.may_have_expired(at(371, 5)));
        // A shorter expiration counts at once.
        domain.expiration_days = Some(10);
        assert!(domain.may_have_expired(at(16, 5)));
        // Q written on day 20: nothing older is left.
        domain.touch(Q, at(20, 5));
        assert_eq!(domain.remove_expired(at(30, 5)), 0);
        assert!(!domain.may_have_expired(at(30, 5)));
        // A write with the clock set back lowers the bound.
        domain.create(P, Record::new(), at(2, 5));
        assert!(domain.may_have_expired(at(13, 5)));
        assert_eq!(domain.remove_expired(at(13, 5)), 1);
        assert_eq!(domain.profiles().keys().collect::<Vec<_>>(), [Q]);
    }

    #[test]
    fn an_empty_domain_never_sweeps() {
        let mut domain = Domain::default();
        assert!(!domain.may_have_expired(at(10_000, 0)));
        assert_eq!(domain.remove_expired(at(10_000, 0)), 0);
    }

    #[test]
    fn a_seeded_domain_is_indexed() {
        let seed = json!({"domains": {"D": {"profiles": {P: {"EmailAddress": "a@x.com"}}}}});
        let state = State::from_seed(seed).expect("valid seed");
        assert_eq!(state.domains["D"].ids_holding("_email", "a@x.com"), [P]);
        assert_eq!(state.domains["D"].ids_holding("_profileId", P), [P]);
        assert!(state.domains["D"].ids_holding("_profileId", Q).is_empty());
    }

    #[test]
    fn expiration_and_times_round_trip_through_the_seed() {
        let seed = json!({"domains": {"D": {
            "profiles": {P: {"FirstName": "A"}},
            "expiration_days": 30,
            "updated": {P: 1_767_225_600}
        }}});
        let state = State::from_seed(seed.clone()).expect("valid seed");
        assert_eq!(state.domains["D"].expiration_days(), 30);
        assert_eq!(state.to_json()["domains"], seed["domains"]);
    }
}
