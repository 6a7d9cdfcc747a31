//! Server-side validation in the style of AWS: every broken constraint is collected and the
//! message reads `2 validation errors detected: Value at 'firstName' failed to satisfy
//! constraint: Member must have length less than or equal to 255; ...`.
//!
//! Values are never echoed (the members are sensitive); the member path and the rule are.

use serde_json::Value;
use unicode_normalization::is_nfc;

/// The constraints broken by one request, in the order they were found.
#[derive(Debug, Default)]
pub struct Violations {
    found: Vec<String>,
}

impl Violations {
    /// Records that the member at `path` broke `rule`.
    pub fn add(&mut self, path: &str, rule: &str) {
        self.found.push(format!(
            "Value at '{path}' failed to satisfy constraint: {rule}"
        ));
    }

    /// Records a missing required member.
    pub fn missing(&mut self, path: &str) {
        self.found.push(format!(
            "Value null at '{path}' failed to satisfy constraint: Member must not be null"
        ));
    }

    /// Checks that `value` is a string of `min..=max` characters and returns it.
    pub fn string<'a>(
        &mut self,
        path: &str,
        value: &'a Value,
        min: usize,
        max: usize,
    ) -> Option<&'a str> {
        let Some(text) = value.as_str() else {
            self.add(path, "Member must be a string");
            return None;
        };
        self.length(path, text, min, max);
        Some(text)
    }

    /// Checks that `text` has `min..=max` characters.
    pub fn length(&mut self, path: &str, text: &str, min: usize, max: usize) {
        let count = text.chars().count();
        if count < min {
            self.add(
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        } else if count > max {
            self.add(
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    /// Checks that `text` is one of `allowed`.
    pub fn one_of(&mut self, path: &str, text: &str, allowed: &[&str]) {
        if !allowed.contains(&text) {
            let list = allowed.join(", ");
            self.add(
                path,
                &format!("Member must satisfy enum value set: [{list}]"),
            );
        }
    }

    /// Records a pattern failure unless `matches`.
    pub fn pattern(&mut self, path: &str, matches: bool, pattern: &str) {
        if !matches {
            self.add(
                path,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    /// Checks that `text` is in Unicode Normalization Form C.
    pub fn nfc(&mut self, path: &str, text: &str) {
        if !is_nfc(text) {
            self.add(path, "Member must be in Unicode Normalization Form C (NFC)");
        }
    }

    /// The AWS-style message, or `None` when nothing was broken.
    pub fn message(&self) -> Option<String> {
        match self.found.len() {
            0 => None,
            1 => Some(format!("1 validation error detected: {}", self.found[0])),
            n => Some(format!(
                "{n} validation errors detected: {}",
                self.found.join("; ")
            )),
        }
    }
}

/// The lowerCamelCase name AWS uses for a member in validation messages (`FirstName` →
/// `firstName`).
pub fn camel(member: &str) -> String {
    let mut chars = member.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `[a-f0-9]{32}`: a Customer Profiles ProfileId.
pub fn is_profile_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'a'..=b'f' | b'0'..=b'9'))
}

/// `^[a-zA-Z0-9_-]+$` with 1–64 characters: a domain or search key name.
pub fn is_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub use crate::validate::is_e164;

/// `(?=^.{0,265}$)[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,63}`, matched whole.
pub fn is_connect_email(text: &str) -> bool {
    if text.chars().count() > 265 {
        return false;
    }
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let tld_ok = (2..=63).contains(&tld.len()) && tld.bytes().all(|b| b.is_ascii_alphabetic());
    local_ok && host_ok && tld_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(is_profile_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_profile_id("0123456789ABCDEF0123456789abcdef"));
        assert!(is_e164("+14155550100"));
        assert!(!is_e164("+04155550100"));
        assert!(!is_e164("4155550100"));
        assert!(!is_e164("+1"));
        assert!(is_connect_email("a.b+c@example.co.uk"));
        assert!(!is_connect_email("a@b"));
        assert!(!is_connect_email("a@@b.com"));
        assert!(!is_connect_email("a@b.c0m"));
        assert!(is_name("ExampleDomainName"));
        assert!(!is_name("bad name"));
    }

    #[test]
    fn message_counts_violations() {
        let mut v = Violations::default();
        assert_eq!(v.message(), None);
        v.length("firstName", &"x".repeat(256), 0, 255);
        assert_eq!(
            v.message().as_deref(),
            Some(
                "1 validation error detected: Value at 'firstName' failed to satisfy constraint: Member must have length less than or equal to 255"
            )
        );
        v.missing("profileId");
        assert!(
            v.message()
                .is_some_and(|m| m.starts_with("2 validation errors detected"))
        );
        assert_eq!(camel("FirstName"), "firstName");
    }
}
