//! What a Customer Profiles profile holds under each search key, and a domain's index over it.
//!
//! [`key_values`] is the one definition of the values a profile holds under a SearchProfiles
//! key: `_email` (the three e-mail members), `_phone` (the four phone members), `_account`
//! (AccountNumber), `_fullName` (First Middle Last), `_profileId` (its id), any key that does
//! not start with `_` in `Attributes`; other predefined keys hold nothing.
//!
//! [`SearchIndex`] maps (key, value) to the ids of the profiles holding it, in ProfileId
//! order, so that a search costs the matches, not the domain. It is built from
//! [`key_values`] alone (every key but `_profileId`, which is a direct lookup in the domain),
//! so search and index cannot disagree about what a profile holds. The domain
//! ([`super::state::Domain`]) keeps it in step with every change of its profiles: an entry
//! is removed with the record it was made from before the record changes, and made again
//! from the new record.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde_json::Value;

use super::state::Record;

const EMAIL_MEMBERS: [&str; 3] = [
    "EmailAddress",
    "PersonalEmailAddress",
    "BusinessEmailAddress",
];
const PHONE_MEMBERS: [&str; 4] = [
    "PhoneNumber",
    "MobilePhoneNumber",
    "HomePhoneNumber",
    "BusinessPhoneNumber",
];
/// The predefined keys the index holds (`_profileId` is looked up directly).
const PREDEFINED: [&str; 4] = ["_email", "_phone", "_account", "_fullName"];

/// The values profile `id` holds under search key `key`.
pub fn key_values(id: &str, profile: &Record, key: &str) -> Vec<String> {
    let text = |member: &str| {
        profile
            .get(member)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match key {
        "_profileId" => vec![id.to_string()],
        "_email" => EMAIL_MEMBERS.iter().filter_map(|m| text(m)).collect(),
        "_phone" => PHONE_MEMBERS.iter().filter_map(|m| text(m)).collect(),
        "_account" => text("AccountNumber").into_iter().collect(),
        "_fullName" => full_name(profile).into_iter().collect(),
        custom if !custom.starts_with('_') => profile
            .get("Attributes")
            .and_then(|attributes| attributes.get(custom))
            .and_then(Value::as_str)
            .map(str::to_string)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn full_name(profile: &Record) -> Option<String> {
    let parts: Vec<&str> = ["FirstName", "MiddleName", "LastName"]
        .iter()
        .filter_map(|m| profile.get(*m).and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The keys, `_profileId` aside, under which a profile may hold values: the predefined ones
/// and its attributes' names.
fn indexed_keys(profile: &Record) -> impl Iterator<Item = &str> {
    let attributes = profile
        .get("Attributes")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|attributes| attributes.keys().map(String::as_str));
    PREDEFINED.into_iter().chain(attributes)
}

/// One index entry: (key, value, ProfileId).
type Entry = (String, String, String);

/// The index entries of profile `id` (pure; duplicates are dropped by the set).
fn entries(id: &str, profile: &Record) -> Vec<Entry> {
    indexed_keys(profile)
        .flat_map(|key| {
            key_values(id, profile, key)
                .into_iter()
                .map(move |value| (key.to_string(), value, id.to_string()))
        })
        .collect()
}

/// (key, value) → ProfileIds of a domain's profiles, as one ordered set of entries: the ids
/// holding a value are a range of it, in ProfileId order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchIndex {
    entries: BTreeSet<Entry>,
}

impl SearchIndex {
    /// The index of `profiles`.
    pub fn build<'a>(profiles: impl IntoIterator<Item = (&'a String, &'a Record)>) -> Self {
        let mut index = SearchIndex::default();
        for (id, profile) in profiles {
            index.insert(id, profile);
        }
        index
    }

    /// Adds what profile `id` holds.
    pub fn insert(&mut self, id: &str, profile: &Record) {
        self.entries.extend(entries(id, profile));
    }

    /// Removes what profile `id` holds (`profile` as it was indexed).
    pub fn remove(&mut self, id: &str, profile: &Record) {
        for entry in entries(id, profile) {
            self.entries.remove(&entry);
        }
    }

    /// The ids of the profiles holding `value` under `key` (not `_profileId`), in order.
    pub fn ids<'a>(&'a self, key: &'a str, value: &'a str) -> impl Iterator<Item = &'a str> {
        let start = (key.to_string(), value.to_string(), String::new());
        self.entries
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |(k, v, _)| k == key && v == value)
            .map(|(_, _, id)| id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Record {
        serde_json::from_value(value).expect("an object")
    }

    #[test]
    fn a_profile_is_found_under_each_value_it_holds() {
        let ann = record(json!({
            "FirstName": "Ann", "LastName": "Lee",
            "EmailAddress": "a@x.com", "BusinessEmailAddress": "a@x.com",
            "Attributes": {"tier": "gold", "_hidden": "h"}
        }));
        let bob = record(json!({"FirstName": "Bob", "Attributes": {"tier": "gold"}}));
        let mut index = SearchIndex::build([(&"b".to_string(), &bob), (&"a".to_string(), &ann)]);
        let ids = |index: &SearchIndex, key: &str, value: &str| -> Vec<String> {
            index.ids(key, value).map(str::to_string).collect()
        };
        assert_eq!(ids(&index, "_email", "a@x.com"), ["a"]);
        assert_eq!(ids(&index, "_fullName", "Ann Lee"), ["a"]);
        assert_eq!(ids(&index, "tier", "gold"), ["a", "b"]);
        assert!(ids(&index, "_hidden", "h").is_empty());
        assert!(ids(&index, "tier", "gol").is_empty());
        index.remove("a", &ann);
        assert_eq!(ids(&index, "tier", "gold"), ["b"]);
        assert!(ids(&index, "_email", "a@x.com").is_empty());
        index.remove("b", &bob);
        assert_eq!(index, SearchIndex::default());
    }
}
