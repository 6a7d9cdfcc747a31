//! Issue 15, "never silently wrong": one customer, one profile. Each test is a sync that
//! looked green on the code before it and was wrong: duplicate customers from a search by the
//! raw cell, rows of one export racing each other, creates retried blind, and a wrong match
//! column that quietly matched nothing.

use profilesync::emulator::{EmulatorConfig, EmulatorHandle, FaultConfig};
use serde_json::{Value, json};

use crate::support::{
    DOMAIN, Dir, assert_every_record_once, assert_has, count, pid, profile, profiles_config,
    start_emulator, statuses,
};

/// Existing customers, new ones, and new ones exported twice (Salesforce-style).
const EXISTING: u32 = 100;
const NEW: u32 = 30;
const NEW_TWICE: u32 = 5;

/// The e-mail of customer i as the domain holds it (written by another tool, lower case).
fn email(i: u32) -> String {
    format!("c{i}@example.com")
}

/// 100 customers the domain already has, by e-mail.
fn existing_seed() -> Value {
    let profiles: serde_json::Map<String, Value> = (1..=EXISTING)
        .map(|i| {
            (
                pid(i),
                json!({"FirstName": format!("Old{i}"), "EmailAddress": email(i)}),
            )
        })
        .collect();
    json!({"domains": {DOMAIN: {"profiles": profiles}}})
}

/// The export: the 100 existing customers, 30 of them with capitals or padding in their
/// e-mail, then 30 new ones, 5 of whom appear twice (the second time with capitals).
fn export() -> String {
    let mut csv = String::from("crm_id,first,email\n");
    for i in 1..=EXISTING {
        let cell = match i % 10 {
            1 | 2 => format!("  C{i}@Example.COM "),
            3 => format!("c{i}@EXAMPLE.com"),
            _ => email(i),
        };
        csv.push_str(&format!("K{i},First{i},{cell}\n"));
    }
    for i in EXISTING + 1..=EXISTING + NEW {
        csv.push_str(&format!("K{i},First{i},{}\n", email(i)));
    }
    for i in EXISTING + 1..=EXISTING + NEW_TWICE {
        csv.push_str(&format!("K{i}b,Second{i},C{i}@EXAMPLE.COM\n"));
    }
    csv
}

/// Matched by e-mail, creating what is missing; the e-mail is written trimmed and lower case.
fn by_email() -> String {
    profiles_config(
        "FirstName = \"first\"\nEmailAddress = { from = \"email\", transform = [\"trim\", \"lowercase\"] }",
    )
    .replace(
        "id = \"profile_id\"",
        "search_key = \"_email\"\nsearch_column = \"email\"\nwhen_missing = \"create\"",
    )
}

/// The profiles of the domain, each with its e-mail.
fn profiles(emulator: &EmulatorHandle) -> Vec<(String, String)> {
    let state = emulator.state();
    state["domains"][DOMAIN]["profiles"]
        .as_object()
        .expect("the domain's profiles")
        .iter()
        .map(|(id, p)| {
            (
                id.clone(),
                p["EmailAddress"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Asserts one profile per customer: 130, each e-mail once.
fn assert_one_profile_per_customer(emulator: &EmulatorHandle, night: &str) {
    let profiles = profiles(emulator);
    let mut emails: Vec<&str> = profiles.iter().map(|(_, e)| e.as_str()).collect();
    emails.sort_unstable();
    emails.dedup();
    assert_eq!(
        (profiles.len(), emails.len()),
        ((EXISTING + NEW) as usize, (EXISTING + NEW) as usize),
        "{night}: one profile per customer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_capitals_and_twins_leaves_one_profile_per_customer() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(existing_seed())
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("in.csv", export());
    dir.write("c.toml", by_email());
    let out = dir.apply(&emulator, "l1.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l1.jsonl");
    assert_every_record_once(&ledger, u64::from(EXISTING + NEW + NEW_TWICE));
    assert_one_profile_per_customer(&emulator, "night 1");
    assert_eq!(count(&ledger, "created", None), NEW as usize);
    // A customer's twin row updated the profile its first row created: the last row wins.
    let twin = ledger
        .iter()
        .find(|e| e["key"] == "K101b")
        .expect("the twin row");
    assert_eq!(twin["status"], "updated");
    let created = ledger
        .iter()
        .find(|e| e["key"] == "K101")
        .expect("the first row");
    assert_eq!(twin["target_id"], created["target_id"]);
    let id = created["target_id"].as_str().unwrap();
    assert_eq!(profile(&emulator, id)["FirstName"], "Second101");
    assert_eq!(
        profile(&emulator, &pid(11))["EmailAddress"],
        "c11@example.com"
    );
    out.assert_prints("duplicate keys in the input: 5 rows");

    // A --full night reads everything again and creates nothing.
    let out = dir.apply(&emulator, "l2.jsonl", &["--full"]).await;
    out.assert_exit(0);
    assert_eq!(count(&dir.ledger("l2.jsonl"), "created", None), 0);
    assert_one_profile_per_customer(&emulator, "--full night");

    // A second source (another working directory: no state) writes the same customers.
    let other = Dir::new();
    other.write("in.csv", export());
    other.write("c.toml", by_email());
    let out = other.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit_because(0, "nothing is ambiguous");
    let ledger = other.ledger("l.jsonl");
    assert_eq!(count(&ledger, "created", None), 0);
    assert_eq!(count(&ledger, "failed", None), 0);
    assert_one_profile_per_customer(&emulator, "second source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_whose_answers_were_lost_are_found_not_made_twice() {
    let lost = FaultConfig {
        lose_answer_rate: 0.3,
        seed: 15,
        ..FaultConfig::default()
    };
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(existing_seed())
            .without_quotas()
            .with_faults(lost),
    )
    .await;
    let dir = Dir::new();
    dir.write("in.csv", export());
    dir.write("c.toml", by_email());
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_every_record_once(&ledger, u64::from(EXISTING + NEW + NEW_TWICE));
    assert_eq!(count(&ledger, "created", None), NEW as usize);
    assert_one_profile_per_customer(&emulator, "30% of answers lost");
    let dropped = emulator.stats().operation("CreateProfile").dropped;
    assert!(dropped > 0, "some create answers were lost: {dropped}");
}

/// Ten rows for one profile, each with another first name.
fn ten_rows_for_one_profile() -> String {
    let mut csv = String::from("crm_id,profile_id,first\n");
    for i in 1..=10 {
        csv.push_str(&format!("K{i},{},V{i}\n", pid(1)));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_for_one_record_are_applied_in_input_order_and_the_last_wins() {
    for run in 0..3 {
        let seed = json!({"domains": {DOMAIN: {"profiles": {pid(1): {"FirstName": "Old"}}}}});
        let emulator =
            start_emulator(EmulatorConfig::default().with_seed(seed).without_quotas()).await;
        let dir = Dir::new();
        dir.write("in.csv", ten_rows_for_one_profile());
        dir.write("c.toml", profiles_config("FirstName = \"first\""));
        let out = dir.apply(&emulator, "l.jsonl", &[]).await;
        out.assert_exit(0);
        assert_eq!(profile(&emulator, &pid(1))["FirstName"], "V10", "run {run}");
        let ledger = dir.ledger_by_record("l.jsonl");
        assert_eq!(statuses(&ledger), vec!["updated"; 10], "run {run}");
        assert_eq!(emulator.stats().operation("UpdateProfile").status(200), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_fail_names_the_first_row() {
    let seed = json!({"domains": {DOMAIN: {"profiles": {pid(1): {"FirstName": "Old"}}}}});
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let dir = Dir::new();
    dir.write("in.csv", ten_rows_for_one_profile());
    let config = profiles_config("FirstName = \"first\"").replace(
        "id = \"profile_id\"",
        "id = \"profile_id\"\nduplicates = \"fail\"",
    );
    dir.write("c.toml", config);
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(ledger[0]["status"], "updated");
    for entry in &ledger[1..] {
        assert_eq!(entry["status"], "failed");
        assert_eq!(entry["error"]["code"], "duplicate_in_input");
        assert_has(&entry["error"]["message"], "record 1 of the input");
    }
    assert_eq!(profile(&emulator, &pid(1))["FirstName"], "V1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_never_shows_two_creates_for_one_customer() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(existing_seed())).await;
    let dir = Dir::new();
    dir.write("in.csv", export());
    dir.write("c.toml", by_email());
    let out = dir.plan(&emulator, "p.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("p.jsonl");
    assert_eq!(count(&ledger, "would_create", None), NEW as usize);
    let twin = ledger.iter().find(|e| e["key"] == "K101b").expect("twin");
    assert_eq!(twin["status"], "would_update");
    // The 30 e-mails with capitals or padding found their profiles: nothing to create.
    for i in [1, 2, 3, 11, 12, 13] {
        let key = format!("K{i}");
        let entry = ledger.iter().find(|e| e["key"] == key).expect("row");
        assert_eq!(entry["target_id"], pid(i), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_column_table_searches_a_derived_value() {
    // Customers found by an attribute that holds the e-mail's local part.
    let seed = json!({"domains": {DOMAIN: {"profiles": {
        pid(1): {"FirstName": "Old", "Attributes": {"login": "ada"}},
    }}}});
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let dir = Dir::new();
    dir.write("in.csv", "crm_id,first,email\nK1,Ada,ada@example.com\n");
    let config = profiles_config("FirstName = \"first\"").replace(
        "id = \"profile_id\"",
        "search_key = \"login\"\nsearch_column = { template = \"{email}\", transform = [{ map = { \"ada@example.com\" = \"ada\" } }] }",
    );
    dir.write("c.toml", config);
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(ledger[0]["status"], "updated");
    assert_eq!(ledger[0]["target_id"], pid(1));
    assert_eq!(profile(&emulator, &pid(1))["FirstName"], "Ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_where_nothing_matched_is_not_green() {
    let emulator = start_emulator(EmulatorConfig::default()).await;
    let dir = Dir::new();
    let mut csv = String::from("crm_id,profile_id,first\n");
    for i in 1..=12 {
        csv.push_str(&format!("K{i},{},First{i}\n", pid(i)));
    }
    dir.write("in.csv", csv);
    dir.write("c.toml", profiles_config("FirstName = \"first\""));
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit_because(1, "none of 12 records matched");
    out.assert_says("none of the 12 records matched a target record");
    out.assert_says("[match] id = \"profile_id\"");
    assert_eq!(count(&dir.ledger("l.jsonl"), "skipped", None), 12);
}
