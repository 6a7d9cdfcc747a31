//! Issue 16, mirror mode: the records an owner synced that the CRM export no longer names are
//! listed (`plan`) and deleted (`apply`) at the end of a complete run, within the guard;
//! nothing else is ever deleted.

use std::collections::BTreeSet;
use std::io::Write;

use profilesync::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};

use crate::support::{DOMAIN, Dir, Run, count, pid, profiles_config, run, start_emulator};

/// `[mirror]` with `deletes` and `owner`, and `extra` lines.
fn mirror(deletes: &str, owner: &str, extra: &str) -> String {
    format!("\n[mirror]\ndeletes = \"{deletes}\"\nowner = \"{owner}\"\n{extra}\n")
}

/// A Customer Profiles config matching by `profile_id`, with `[mirror]`.
fn config(mirror_table: &str) -> String {
    profiles_config("FirstName = \"first\"")
        .replace("[fields]", &format!("{mirror_table}\n[fields]"))
}

/// Profiles `1..=n` in the domain, none of them synced yet.
fn seed(n: u32) -> Value {
    let profiles: serde_json::Map<String, Value> = (1..=n)
        .map(|i| (pid(i), json!({"FirstName": format!("Old{i}")})))
        .collect();
    json!({"domains": {DOMAIN: {"profiles": profiles}}})
}

/// An export naming the profiles `ids`, each with first name `{prefix}{i}`.
fn export(ids: impl IntoIterator<Item = u32>, prefix: &str) -> String {
    let mut csv = String::from("crm_id,profile_id,first\n");
    for i in ids {
        csv.push_str(&format!("K{i},{},{prefix}{i}\n", pid(i)));
    }
    csv
}

/// The ProfileIds the domain holds.
fn profiles(emulator: &EmulatorHandle) -> BTreeSet<String> {
    emulator.state()["domains"][DOMAIN]["profiles"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn ids(range: impl IntoIterator<Item = u32>) -> BTreeSet<String> {
    range.into_iter().map(pid).collect()
}

/// The entries with this status: their `target_id`s.
fn targets(ledger: &[Value], status: &str) -> BTreeSet<String> {
    ledger
        .iter()
        .filter(|e| e["status"] == status)
        .map(|e| e["target_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `COMMAND --config CONFIG INPUT --ledger LEDGER --no-progress EXTRA...` against the
/// emulator's Customer Profiles.
async fn night(
    dir: &Dir,
    emulator: &EmulatorHandle,
    command: &str,
    config: &str,
    input: &str,
    ledger: &str,
    extra: &[&str],
) -> Run {
    let mut args = vec![
        command,
        "--config",
        config,
        input,
        "--ledger",
        ledger,
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    run(dir, emulator, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_rows_gone_are_listed_then_deleted_and_nothing_else_is_touched() {
    // 100 profiles the CRM syncs, 200 it never synced.
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(300))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("delete", "crm-contacts", "")));
    dir.write("n1.csv", export(1..=100, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "n1.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    assert_eq!(count(&dir.ledger("n1.jsonl"), "updated", None), 100);

    // Tonight 61..=100 are gone from the export but 61..=70 are there, invalid (a first
    // name too long): they still name their profiles.
    let mut tonight = export(1..=60, "First");
    for i in 61..=70 {
        tonight.push_str(&format!("K{i},{},{}\n", pid(i), "x".repeat(300)));
    }
    dir.write("n2.csv", &tonight);
    let plan = night(
        &dir,
        &emulator,
        "plan",
        "c.toml",
        "n2.csv",
        "plan.jsonl",
        &[],
    )
    .await;
    plan.assert_exit(1); // the ten invalid rows
    plan.assert_prints("deletions: 30 of 100 (30.0%) absent from the source");
    let ledger = dir.ledger("plan.jsonl");
    assert_eq!(count(&ledger, "invalid", None), 10);
    assert_eq!(targets(&ledger, "would_delete"), ids(71..=100));
    let entry = ledger
        .iter()
        .find(|e| e["status"] == "would_delete")
        .expect("a would_delete entry");
    let keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["key", "owner", "reason", "status", "target_id"],
        "{entry}"
    );
    assert_eq!(entry["owner"], "crm-contacts");
    assert_eq!(entry["reason"], "absent_from_source");
    let i: u32 = entry["key"].as_str().unwrap()[1..].parse().unwrap();
    assert_eq!(
        entry["target_id"],
        pid(i),
        "the key is the row's [source] key"
    );
    // The diff report: the page's first screen, the CSV and the JSONL list them too.
    let page = std::fs::read_to_string(dir.path(&plan.printed("report: "))).unwrap();
    let deletions = page
        .find("<h2>Deletions (30)</h2>")
        .expect("a Deletions section");
    assert!(
        deletions < page.find("Records by status").unwrap(),
        "before the totals"
    );
    assert!(page.contains("deletions: 30 of 100 (30.0%) absent from the source"));
    let csv = std::fs::read_to_string(dir.path(&plan.printed("diff csv: "))).unwrap();
    assert_eq!(
        csv.lines().filter(|l| l.contains(",would_delete,")).count(),
        30
    );
    let jsonl = std::fs::read_to_string(dir.path(&plan.printed("diff jsonl: "))).unwrap();
    assert_eq!(
        jsonl
            .lines()
            .filter(|l| l.contains("\"would_delete\""))
            .count(),
        30
    );
    assert_eq!(profiles(&emulator).len(), 300, "a plan deletes nothing");
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 0);

    let apply = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "n2.csv",
        "n2.jsonl",
        &[],
    )
    .await;
    apply.assert_exit(1);
    let ledger = dir.ledger("n2.jsonl");
    assert_eq!(targets(&ledger, "deleted"), ids(71..=100));
    assert_eq!(
        profiles(&emulator),
        ids(1..=70).union(&ids(101..=300)).cloned().collect(),
        "exactly those 30 are gone; the 200 never synced and the invalid rows' remain"
    );
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 30);

    // The next night deletes nothing.
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "n2.csv",
        "n3.jsonl",
        &[],
    )
    .await
    .assert_exit(1);
    let ledger = dir.ledger("n3.jsonl");
    assert_eq!(
        count(&ledger, "deleted", None) + count(&ledger, "would_delete", None),
        0
    );
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gz_an_empty_export_and_a_40_percent_export_delete_nothing() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(100))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        config(&mirror("delete", "crm", "max_deletes = 10")),
    );
    dir.write("all.csv", export(1..=100, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);

    // A gzip cut short: its first rows are read, then the read fails.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(export(1..=100, "First").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    dir.write("cut.csv.gz", &gz[..gz.len() / 2]);
    let cut = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "cut.csv.gz",
        "cut.jsonl",
        &[],
    )
    .await;
    cut.assert_exit(3);
    cut.assert_prints("deletions: none considered: the run did not finish");
    // An export with its header only.
    dir.write("empty.csv", export([], ""));
    let empty = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "empty.csv",
        "empty.jsonl",
        &[],
    )
    .await;
    empty.assert_prints("deletions: none considered: the input holds no record");
    assert_eq!(profiles(&emulator).len(), 100);
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 0);

    // 60 of 100 rows, renamed: 40 candidates (40%) exceed both 10 and 5%: withheld, exit
    // 4, but the 60 upserts are applied.
    dir.write("part.csv", export(1..=60, "New"));
    let part = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "part.csv",
        "part.jsonl",
        &[],
    )
    .await;
    part.assert_exit(4);
    part.assert_says("deletions withheld: 40 of 100 (40.0%)");
    let ledger = dir.ledger("part.jsonl");
    assert_eq!(count(&ledger, "updated", None), 60);
    assert_eq!(count(&ledger, "would_delete", None), 40);
    assert_eq!(count(&ledger, "deleted", None), 0);
    assert_eq!(profiles(&emulator).len(), 100);
    assert_eq!(
        emulator.state()["domains"][DOMAIN]["profiles"][pid(1)]["FirstName"],
        "New1"
    );

    // --approve-deletes with another count is still withheld; with the plan's count it
    // deletes them.
    let wrong = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "part.csv",
        "w.jsonl",
        &["--approve-deletes", "39"],
    )
    .await;
    wrong.assert_exit(4);
    assert_eq!(profiles(&emulator).len(), 100);
    let approved = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "part.csv",
        "a.jsonl",
        &["--approve-deletes", "40"],
    )
    .await;
    approved.assert_exit(0);
    assert_eq!(targets(&dir.ledger("a.jsonl"), "deleted"), ids(61..=100));
    assert_eq!(profiles(&emulator), ids(1..=60));
    let summary_run = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "part.csv",
        "b.jsonl",
        &[],
    )
    .await;
    summary_run.assert_exit(0);
    summary_run.assert_prints("deletions: 0 of 60 (0.0%)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_someone_else_deleted_answers_404_and_counts_as_deleted() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(40))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("delete", "crm", "")));
    dir.write("all.csv", export(1..=40, "First"));
    dir.write("less.csv", export(1..=37, "First"));
    // Two state directories: two machines syncing one domain.
    for state in ["s1", "s2"] {
        night(
            &dir,
            &emulator,
            "apply",
            "c.toml",
            "all.csv",
            &format!("{state}.jsonl"),
            &["--state", state],
        )
        .await
        .assert_exit(0);
    }
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "s2b.jsonl",
        &["--state", "s2"],
    )
    .await
    .assert_exit(0);
    assert_eq!(profiles(&emulator), ids(1..=37));
    let late = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "s1b.jsonl",
        &["--state", "s1"],
    )
    .await;
    late.assert_exit(0);
    let ledger = dir.ledger("s1b.jsonl");
    assert_eq!(
        targets(&ledger, "deleted"),
        ids(38..=40),
        "404: already gone"
    );
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 6);
    // Forgotten: the next night has nothing to delete.
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "s1c.jsonl",
        &["--state", "s1"],
    )
    .await
    .assert_prints("deletions: 0 of 37");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_on_one_domain_never_delete_each_others_records() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(40))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("a.toml", config(&mirror("delete", "crm-a", "")));
    dir.write("b.toml", config(&mirror("delete", "crm-b", "")));
    dir.write("a.csv", export(1..=20, "A"));
    dir.write("b.csv", export(21..=40, "B"));
    night(&dir, &emulator, "apply", "a.toml", "a.csv", "a1.jsonl", &[])
        .await
        .assert_exit(0);
    // B's export does not name A's 20 records: they are not B's to delete.
    let b = night(&dir, &emulator, "apply", "b.toml", "b.csv", "b1.jsonl", &[]).await;
    b.assert_exit(0);
    b.assert_prints("deletions: 0 of 20");
    night(&dir, &emulator, "apply", "b.toml", "b.csv", "b2.jsonl", &[])
        .await
        .assert_exit(0);
    dir.write("a2.csv", export(1..=19, "A"));
    let a = night(
        &dir,
        &emulator,
        "apply",
        "a.toml",
        "a2.csv",
        "a2.jsonl",
        &[],
    )
    .await;
    a.assert_exit(0);
    assert_eq!(targets(&dir.ledger("a2.jsonl"), "deleted"), ids([20]));
    assert_eq!(
        profiles(&emulator),
        ids(1..=19).union(&ids(21..=40)).cloned().collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_without_deleting() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(10))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("report", "crm", "")));
    dir.write("all.csv", export(1..=10, "First"));
    dir.write("less.csv", export(1..=8, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "n2.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    assert_eq!(
        targets(&dir.ledger("n2.jsonl"), "would_delete"),
        ids(9..=10)
    );
    assert_eq!(profiles(&emulator).len(), 10);
}

#[test]
fn connect_user_refuses_delete_in_its_config() {
    let dir = Dir::new();
    dir.write(
        "c.toml",
        "[source]\nkey = \"user_id\"\n\n[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\n\
         [match]\nid = \"user_id\"\n\n[mirror]\ndeletes = \"delete\"\nowner = \"hr\"\n\n\
         [fields]\nFirstName = \"first\"\n",
    );
    dir.write("in.csv", "user_id,first\nu1,Ana\n");
    let out = dir.run(&["check", "--config", "c.toml", "in.csv", "--no-progress"]);
    out.assert_exit(2);
    out.assert_says("c.toml:12:");
    out.assert_says("not available for connect-user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesys_profiles_gone_from_the_export_are_deleted_with_delete() {
    let profiles: serde_json::Map<String, Value> = (1..=10)
        .map(|i| (format!("G{i}"), json!({"FirstName": format!("Old{i}")})))
        .collect();
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(json!({"genesys": {"tenant_id": 1, "profiles": profiles}}))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        format!(
            "[source]\nkey = \"customer_id\"\n\n[target]\nkind = \"genesys-ucs\"\n\
             base_url = \"{}\"\ntenant_id = 1\n\n[match]\nid = \"customer_id\"\n{}\n\
             [fields]\nFirstName = \"first\"\n",
            emulator.endpoint_url(),
            mirror("delete", "crm", "")
        ),
    );
    let csv = |n: u32| {
        let mut csv = String::from("customer_id,first\n");
        for i in 1..=n {
            csv.push_str(&format!("G{i},First{i}\n"));
        }
        csv
    };
    dir.write("all.csv", csv(10));
    dir.write("less.csv", csv(8));
    let genesys = |args: Vec<&str>| dir.command(&args).genesys(&[]).output();
    genesys(vec![
        "apply",
        "--config",
        "c.toml",
        "all.csv",
        "--ledger",
        "n1.jsonl",
        "--no-progress",
    ])
    .await
    .assert_exit(0);
    genesys(vec![
        "plan",
        "--config",
        "c.toml",
        "less.csv",
        "--ledger",
        "p.jsonl",
        "--no-progress",
    ])
    .await
    .assert_exit(0);
    let expected: BTreeSet<String> = ["G10", "G9"].map(String::from).into();
    assert_eq!(targets(&dir.ledger("p.jsonl"), "would_delete"), expected);
    genesys(vec![
        "apply",
        "--config",
        "c.toml",
        "less.csv",
        "--ledger",
        "n2.jsonl",
        "--no-progress",
    ])
    .await
    .assert_exit(0);
    assert_eq!(targets(&dir.ledger("n2.jsonl"), "deleted"), expected);
    let left = emulator.state()["genesys"]["profiles"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(left, 8);
    assert!(emulator.state()["genesys"]["profiles"]["G9"].is_null());
    assert_eq!(
        emulator.stats().operation("GenesysDeleteProfile").requests,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_turned_on_later_owns_the_records_its_state_already_skips() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(10))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("plain.toml", config(""));
    dir.write("c.toml", config(&mirror("delete", "crm", "")));
    dir.write("all.csv", export(1..=10, "First"));
    dir.write("less.csv", export(1..=9, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "plain.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    // Unchanged by the state, no request: owned from now on.
    let on = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n2.jsonl",
        &[],
    )
    .await;
    on.assert_exit(0);
    on.assert_prints("deletions: 0 of 10");
    assert_eq!(
        count(&dir.ledger("n2.jsonl"), "unchanged", Some("state")),
        10
    );
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "n3.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    assert_eq!(targets(&dir.ledger("n3.jsonl"), "deleted"), ids([10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_access_denied_stops_the_run_and_deletes_nothing() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(10))
            .without_quotas()
            .with_denied("DeleteProfile"),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("delete", "crm", "")));
    dir.write("all.csv", export(1..=10, "First"));
    dir.write("less.csv", export(1..=8, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    let denied = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "less.csv",
        "n2.jsonl",
        &[],
    )
    .await;
    denied.assert_exit(3);
    denied.assert_says("deleting failed");
    assert_eq!(count(&dir.ledger("n2.jsonl"), "deleted", None), 0);
    assert_eq!(profiles(&emulator).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_of_three_keys_deletes_exactly_those_and_keeps_the_evidence() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(10))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("delete", "crm", "")));
    dir.write("all.csv", export(1..=10, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    // Two keys the state knows, and one ProfileId given as it is.
    dir.write("keys.txt", format!("K2\nK5\n\n{}\n", pid(7)));
    let dry = run(
        &dir,
        &emulator,
        &[
            "erase",
            "--config",
            "c.toml",
            "keys.txt",
            "--dry-run",
            "--ledger",
            "dry.jsonl",
        ],
    )
    .await;
    dry.assert_exit(0);
    let ledger = dir.ledger("dry.jsonl");
    assert_eq!(
        ledger
            .iter()
            .filter(|e| e["outcome"] == "would_delete")
            .count(),
        3
    );
    assert_eq!(profiles(&emulator).len(), 10, "a dry run deletes nothing");

    let erase = run(
        &dir,
        &emulator,
        &[
            "erase",
            "--config",
            "c.toml",
            "keys.txt",
            "--ledger",
            "erase.jsonl",
        ],
    )
    .await;
    erase.assert_exit(0);
    let ledger = dir.ledger("erase.jsonl");
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger[0]["key"], "K2");
    assert_eq!(ledger[0]["target_id"], pid(2));
    assert_eq!(ledger[2]["key"], pid(7));
    assert!(
        ledger
            .iter()
            .all(|e| e["outcome"] == "deleted" && e["time"].is_string()),
        "{ledger:?}"
    );
    let expected: BTreeSet<String> = [1, 3, 4, 6, 8, 9, 10].map(pid).into();
    assert_eq!(profiles(&emulator), expected);
    // Their state entries are gone: the next mirror night owns the 7 left.
    let next = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n2.jsonl",
        &[],
    )
    .await;
    assert_eq!(
        count(&dir.ledger("n2.jsonl"), "skipped", None),
        3,
        "erased: not found, not recreated"
    );
    next.assert_prints("deletions: 0 of 7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_users_gone_from_the_roster_are_reported_never_deleted() {
    let users: serde_json::Map<String, Value> = (1..=5)
        .map(|i| {
            let user =
                json!({"Username": format!("agent{i}"), "IdentityInfo": {"LastName": "Old"}});
            (format!("u{i}"), user)
        })
        .collect();
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(json!({"instances": {"i-1": {"users": users}}}))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        format!(
            "[source]\nkey = \"user_id\"\n\n[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\n\
             [match]\nid = \"user_id\"\n\n[limits]\nrate = 200\nburst = 20\n{}\n[fields]\nLastName = \"last\"\n",
            mirror("report", "hr", "")
        ),
    );
    let roster = |n: u32| {
        let mut csv = String::from("user_id,last\n");
        for i in 1..=n {
            csv.push_str(&format!("u{i},New\n"));
        }
        csv
    };
    dir.write("all.csv", roster(5));
    dir.write("less.csv", roster(4));
    let connect = |args: Vec<&str>| dir.command(&args).connect(&emulator).output();
    connect(vec![
        "apply",
        "--config",
        "c.toml",
        "all.csv",
        "--ledger",
        "n1.jsonl",
        "--no-progress",
    ])
    .await
    .assert_exit(0);
    connect(vec![
        "apply",
        "--config",
        "c.toml",
        "less.csv",
        "--ledger",
        "n2.jsonl",
        "--no-progress",
    ])
    .await
    .assert_exit(0);
    let expected: BTreeSet<String> = ["u5".to_owned()].into();
    assert_eq!(targets(&dir.ledger("n2.jsonl"), "would_delete"), expected);
    assert!(
        emulator.state()["instances"]["i-1"]["users"]["u5"].is_object(),
        "reported, kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_the_failed_records_considers_no_deletion() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(10))
            .without_quotas(),
    )
    .await;
    let dir = Dir::new();
    dir.write("c.toml", config(&mirror("delete", "crm", "")));
    dir.write("all.csv", export(1..=10, "First"));
    night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n1.jsonl",
        &[],
    )
    .await
    .assert_exit(0);
    // A re-drive of a night's failures (none here) sends a part of the input: no deletion,
    // though no row it sends names the ten records.
    let redrive = night(
        &dir,
        &emulator,
        "apply",
        "c.toml",
        "all.csv",
        "n2.jsonl",
        &["--retry-failed", "n1.jsonl"],
    )
    .await;
    redrive.assert_exit(0);
    redrive.assert_prints("deletions: none considered: the run sent a part of the input");
    assert_eq!(profiles(&emulator).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_finds_a_key_the_state_does_not_know_by_the_search_key() {
    let seed = json!({"domains": {DOMAIN: {"profiles": {
        pid(1): {"FirstName": "Ada", "EmailAddress": "ada@example.com"},
        pid(2): {"FirstName": "Bob", "EmailAddress": "bob@example.com"},
        pid(3): {"FirstName": "Cy", "EmailAddress": "cy@example.com"},
    }}}});
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let dir = Dir::new();
    let config = profiles_config("FirstName = \"first\"").replace(
        "id = \"profile_id\"",
        "search_key = \"_email\"\nsearch_column = \"email\"",
    );
    dir.write("c.toml", config);
    // No run before: the state knows none of them. An e-mail, an unknown one, a ProfileId.
    dir.write(
        "keys.txt",
        format!("ada@example.com\nnobody@example.com\n{}\n", pid(3)),
    );
    let args = [
        "erase", "--config", "c.toml", "keys.txt", "--ledger", "e.jsonl",
    ];
    run(&dir, &emulator, &args)
        .await
        .assert_exit_because(1, "one key matched nothing");
    let ledger = dir.ledger("e.jsonl");
    let outcomes: Vec<(&str, &str)> = ledger
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("ada@example.com", "deleted"),
            ("nobody@example.com", "not_found"),
            (pid(3).as_str(), "deleted"),
        ]
    );
    assert_eq!(ledger[0]["target_id"], pid(1));
    assert_eq!(profiles(&emulator), BTreeSet::from([pid(2)]));
}
