//! Issue 15, expiry: Customer Profiles deletes a profile nobody updates within the domain's
//! `DefaultExpirationDays`. Nights on a moved clock (the emulator's `set_clock_offset_days`
//! and profilesync's `PROFILESYNC_CLOCK_OFFSET_DAYS`, moved together) show that an unchanged
//! export keeps every profile alive, with few refresh writes spread over the nights.

use std::collections::BTreeMap;

use profilesync::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};

use crate::support::{DOMAIN, Dir, Run, count, pid, profiles_config, start_emulator};

const DAY: i64 = 86_400;

/// `n` profiles last updated 350 days ago in a domain that expires them after 365; the even
/// ones already hold what the export says.
fn old_profiles(emulator_now: i64, n: u32) -> Value {
    let profiles: serde_json::Map<String, Value> = (1..=n)
        .map(|i| {
            let first = if i % 2 == 0 {
                format!("First{i}")
            } else {
                format!("Old{i}")
            };
            (pid(i), json!({ "FirstName": first }))
        })
        .collect();
    let updated: serde_json::Map<String, Value> = (1..=n)
        .map(|i| (pid(i), json!(emulator_now - 350 * DAY)))
        .collect();
    json!({"domains": {DOMAIN: {"profiles": profiles, "expiration_days": 365, "updated": updated}}})
}

fn export(n: u32) -> String {
    let mut csv = String::from("crm_id,profile_id,first\n");
    for i in 1..=n {
        csv.push_str(&format!("K{i},{},First{i}\n", pid(i)));
    }
    csv
}

/// `COMMAND` of `in.csv` with `c.toml` into `ledger`, on profilesync's clock moved `days`.
async fn run_at(
    dir: &Dir,
    emulator: &EmulatorHandle,
    command: &str,
    ledger: &str,
    days: i64,
) -> Run {
    let args = [
        command,
        "--config",
        "c.toml",
        "in.csv",
        "--ledger",
        ledger,
        "--no-progress",
    ];
    dir.command(&args)
        .profiles(emulator)
        .env("PROFILESYNC_CLOCK_OFFSET_DAYS", days.to_string())
        .output()
        .await
}

/// One night `days` after the first, on both clocks.
async fn night(dir: &Dir, emulator: &EmulatorHandle, days: i64, ledger: &str) -> Vec<Value> {
    emulator
        .set_clock_offset_days(days)
        .expect("the clock moves");
    run_at(dir, emulator, "apply", ledger, days)
        .await
        .assert_exit(0);
    dir.ledger(ledger)
}

fn alive(emulator: &EmulatorHandle) -> usize {
    emulator.state()["domains"][DOMAIN]["profiles"]
        .as_object()
        .map_or(0, serde_json::Map::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_years_of_nights_keep_every_unchanged_profile_alive() {
    let n = 200;
    let probe = start_emulator(EmulatorConfig::default()).await;
    let now = probe.now();
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(old_profiles(now, n))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("in.csv", export(n));
    dir.write("c.toml", profiles_config("FirstName = \"first\""));
    // Night 1: the odd profiles differ and are updated; the even ones are equal, but nobody
    // knows when they were written (350 days ago): refreshed at once.
    let first = night(&dir, &emulator, 0, "n0.jsonl").await;
    assert_eq!(count(&first, "updated", None), (n / 2) as usize);
    assert_eq!(count(&first, "refreshed", None), (n / 2) as usize);
    let mut refreshes: BTreeMap<String, u32> = BTreeMap::new();
    for k in 1..=24 {
        let days = 30 * k;
        let ledger = night(&dir, &emulator, days, &format!("n{k}.jsonl")).await;
        assert_eq!(
            alive(&emulator),
            n as usize,
            "every profile alive on day {days}"
        );
        let refreshed: Vec<&Value> = ledger
            .iter()
            .filter(|e| e["status"] == "refreshed")
            .collect();
        assert!(
            refreshed.len() * 100 <= 45 * n as usize,
            "day {days}: {} of {n} refreshed in one night",
            refreshed.len()
        );
        assert_eq!(count(&ledger, "updated", None), 0, "day {days}");
        for entry in refreshed {
            *refreshes
                .entry(entry["key"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let most = refreshes.values().max().copied().unwrap_or(0);
    assert!(
        most <= 5,
        "at most 5 refresh writes per record in two years: {most}"
    );
    assert!(
        refreshes.len() == n as usize,
        "every record was refreshed at least once in two years: {}",
        refreshes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_profile_that_expired_says_so_and_is_forgotten() {
    let n = 12;
    let probe = start_emulator(EmulatorConfig::default()).await;
    let now = probe.now();
    let emulator = start_emulator(EmulatorConfig::default().with_seed(old_profiles(now, n))).await;
    let dir = Dir::new();
    dir.write("in.csv", export(n));
    dir.write(
        "c.toml",
        profiles_config("FirstName = \"first\"").replace(
            "id = \"profile_id\"",
            "id = \"profile_id\"\nwhen_missing = \"fail\"",
        ),
    );
    night(&dir, &emulator, 0, "n0.jsonl").await;
    // A year and more with no night between: the domain expires every profile, and the next
    // night finds none of those the state called synced.
    emulator
        .set_clock_offset_days(400)
        .expect("the clock moves");
    assert_eq!(alive(&emulator), 0);
    let out = run_at(&dir, &emulator, "apply", "n1.jsonl", 400).await;
    out.assert_exit(1);
    let ledger = dir.ledger("n1.jsonl");
    assert_eq!(count(&ledger, "failed", None), n as usize);
    for entry in &ledger {
        assert_eq!(entry["error"]["code"], "expired_or_deleted", "{entry}");
    }
    // Forgotten: the night after reads them again rather than skipping them by the state.
    let out = run_at(&dir, &emulator, "plan", "p.jsonl", 401).await;
    out.assert_exit_because(1, "nothing matched");
    let plan = dir.ledger("p.jsonl");
    assert_eq!(count(&plan, "not_found", None), n as usize);
}
