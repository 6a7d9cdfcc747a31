//! `plan` and `apply` for Amazon Connect users against the emulator, over real HTTP with
//! requests signed by `aws-sigv4`: the binary runs as a user would run it, configured only by
//! the standard AWS environment (`AWS_ENDPOINT_URL_CONNECT`).

use profilesync::emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use serde_json::{Map, Value, json};

use crate::support::{
    Dir, Run, assert_every_record_once, assert_has, assert_stopped_before_any_record, by_record,
    read_ledger, run_args, sample, sample_seed, start_emulator, statuses, stderr, sync_args, tally,
    wait_for_entries,
};

const INSTANCE: &str = "i-1";

/// User `u{i}`, named `agent{i}`, with every IdentityInfo member set.
fn user(i: u32) -> Value {
    json!({
        "Username": format!("agent{i}"),
        "IdentityInfo": {
            "FirstName": format!("First{i}"),
            "LastName": "Old",
            "Email": format!("agent{i}@example.com"),
            "SecondaryEmail": format!("agent{i}@example.org"),
            "Mobile": "+12062340147",
        }
    })
}

/// An instance with users 1..=n and the given identity management type.
fn seed(n: u32, management: Option<&str>) -> Value {
    let users: Map<String, Value> = (1..=n).map(|i| (format!("u{i}"), user(i))).collect();
    let mut instance = json!({ "users": users });
    if let Some(kind) = management {
        instance["IdentityManagementType"] = json!(kind);
    }
    json!({ "instances": { INSTANCE: instance } })
}

/// A roster of users 1..=n: `user_id,username,last,mobile,email`; odd users get a new last
/// name, the rest keep theirs.
fn roster(n: u32) -> String {
    let mut csv = String::from("user_id,username,last,mobile,email\n");
    for i in 1..=n {
        let last = if i % 2 == 1 { "New" } else { "Old" };
        csv.push_str(&format!(
            "u{i},agent{i},{last},(206) 234-0147,agent{i}@example.com\n"
        ));
    }
    csv
}

fn config(fields: &str, matching: &str, extra_target: &str, limits: &str) -> String {
    format!(
        r#"[source]
key = "user_id"

[target]
kind = "connect-user"
instance_id = "{INSTANCE}"
{extra_target}

[match]
{matching}

[limits]
{limits}

[fields]
{fields}
"#
    )
}

const BY_ID: &str = r#"id = "user_id""#;

/// An emulator with this configuration.
async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    start_emulator(config).await
}

/// An emulator with this seed and no quotas.
async fn unthrottled(seed: Value) -> EmulatorHandle {
    emulator(EmulatorConfig::default().with_seed(seed).without_quotas()).await
}

/// An emulator with this configuration and no quotas.
async fn unthrottled_with(config: EmulatorConfig) -> EmulatorHandle {
    emulator(config.without_quotas()).await
}

/// A config that maps only LastName, by UserId, with these `[limits]`.
fn last_names(limits: &str) -> String {
    config(r#"LastName = "last""#, BY_ID, "", limits)
}

/// A roster of users 1..=n that gives user i the last name `last(i)`.
fn renamed(n: u32, last: impl Fn(u32) -> String) -> String {
    let mut csv = String::from("user_id,username,last,mobile,email\n");
    for i in 1..=n {
        csv.push_str(&format!("u{i},agent{i},{},,\n", last(i)));
    }
    csv
}
const LAST_AND_MOBILE: &str = r#"LastName = "last"
Mobile = { from = "mobile", transform = ["e164"] }"#;
/// Fast enough for tests; the emulator's own quotas are off unless a test sets them.
const FAST: &str = "rate = 200\nburst = 20\nconcurrency = 4";

/// `profilesync COMMAND --config c.toml in.csv --ledger LEDGER --no-progress EXTRA...`.
async fn sync(
    dir: &Dir,
    emulator: &EmulatorHandle,
    command: &str,
    ledger: &str,
    extra: &[&str],
) -> Run {
    dir.command(&sync_args(command, "c.toml", ledger, extra))
        .connect(emulator)
        .output()
        .await
}

fn identity(emulator: &EmulatorHandle, user: &str) -> Value {
    emulator.state()["instances"][INSTANCE]["users"][user]["IdentityInfo"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_members_survive_and_only_what_differs_is_written() {
    let emulator = unthrottled(seed(6, None)).await;
    let dir = Dir::new();
    dir.write("in.csv", roster(6));
    dir.write("c.toml", config(LAST_AND_MOBILE, BY_ID, "", FAST));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        [
            "updated",
            "unchanged",
            "updated",
            "unchanged",
            "updated",
            "unchanged"
        ]
    );
    assert_eq!(ledger[0]["changed"], json!(["LastName"]));
    // UpdateUserIdentityInfo replaces the whole structure: what the roster does not map is
    // sent back as it was read.
    assert_eq!(
        identity(&emulator, "u1"),
        json!({"FirstName": "First1", "LastName": "New", "Email": "agent1@example.com",
               "SecondaryEmail": "agent1@example.org", "Mobile": "+12062340147"})
    );
    assert_eq!(identity(&emulator, "u2")["LastName"], "Old");
    let stats = emulator.stats();
    assert_eq!(stats.operation("DescribeUser").requests, 6);
    assert_eq!(
        stats.operation("UpdateUserIdentityInfo").requests,
        3,
        "unchanged users are not written"
    );
    assert!(
        out.stdout().contains("UpdateUserIdentityInfo 3"),
        "the summary counts requests per operation: {}",
        out.stdout()
    );

    // plan reads and diffs, and writes nothing.
    emulator.reset_stats();
    let out = sync(&dir, &emulator, "plan", "p.jsonl", &[]).await;
    out.assert_exit(0);
    let plan = dir.ledger("p.jsonl");
    assert!(plan.iter().all(|e| e["status"] == "unchanged"), "{plan:?}");
    assert_eq!(
        emulator
            .stats()
            .operation("UpdateUserIdentityInfo")
            .requests,
        0
    );
}

/// Issue 19: a preferred name, else the first name; a last name cut out of a full name by a
/// regex; a record neither column fills keeps its first name, and one the regex does not
/// match is invalid (its column named, not its value) and never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_values_first_non_blank_column_and_regex_reach_connect() {
    let emulator = unthrottled(seed(4, None)).await;
    let dir = Dir::new();
    dir.write(
        "in.csv",
        "user_id,preferred,first,full\n\
         u1,Annie,Ana,Ana Lopez Garcia\n\
         u2, ,Bob,Bob Stone\n\
         u3,,,Cy Young\n\
         u4,Dee,Deirdre,Madonna\n",
    );
    let fields = r#"FirstName = { from = ["preferred", "first"], transform = ["trim"] }
LastName = { from = "full", transform = [{ regex = { pattern = '^\S+\s+(.+)$', replace = "$1" } }] }"#;
    dir.write("c.toml", config(fields, BY_ID, "", FAST));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        ["updated", "updated", "updated", "invalid"]
    );
    assert_eq!(identity(&emulator, "u1")["FirstName"], "Annie");
    assert_eq!(identity(&emulator, "u1")["LastName"], "Lopez Garcia");
    assert_eq!(identity(&emulator, "u2")["FirstName"], "Bob");
    assert_eq!(
        identity(&emulator, "u3")["FirstName"],
        "First3",
        "kept: both blank"
    );
    assert_eq!(identity(&emulator, "u3")["LastName"], "Young");
    assert_eq!(identity(&emulator, "u4"), user(4)["IdentityInfo"]);
    let problem = &ledger[3]["error"]["problems"][0];
    assert_eq!(
        (&problem["field"], &problem["column"], &problem["rule"]),
        (&json!("LastName"), &json!("full"), &json!("regex"))
    );
    assert!(!ledger[3].to_string().contains("Madonna"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_email_guard_stops_a_changed_login_unless_allowed() {
    let emulator = unthrottled(seed(2, None)).await;
    let dir = Dir::new();
    // Agent 2's login e-mail changes (after trim and lowercase); agent 1's does not.
    dir.write(
        "in.csv",
        "user_id,username,last,mobile,email\n\
         u1,agent1,Old,, Agent1@Example.com \n\
         u2,agent2,Old,,mallory@example.net\n",
    );
    let fields = r#"Email = { from = "email", transform = ["trim", "lowercase", "email"] }
LastName = "last""#;
    dir.write("c.toml", config(fields, BY_ID, "", FAST));
    for command in ["plan", "apply"] {
        let ledger = format!("{command}.jsonl");
        let out = sync(&dir, &emulator, command, &ledger, &[]).await;
        out.assert_exit_because(1, command);
        let ledger = dir.ledger_by_record(&ledger);
        assert_eq!(statuses(&ledger), ["unchanged", "failed"], "{command}");
        assert_eq!(ledger[1]["error"]["code"], "email_change_guarded");
        let message = ledger[1]["error"]["message"].as_str().unwrap();
        assert!(message.contains("allow_email_change"), "{message}");
        assert!(
            !message.contains("mallory"),
            "no values in the ledger: {message}"
        );
        let summary = out.stdout();
        assert!(summary.contains("email_change_guarded 1"), "{summary}");
    }
    assert_eq!(
        emulator
            .stats()
            .operation("UpdateUserIdentityInfo")
            .requests,
        0
    );
    assert_eq!(identity(&emulator, "u2")["Email"], "agent2@example.com");

    dir.write(
        "c.toml",
        config(fields, BY_ID, "allow_email_change = true", FAST),
    );
    let out = sync(&dir, &emulator, "apply", "allowed.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger("allowed.jsonl")),
        ["unchanged", "updated"]
    );
    assert_eq!(identity(&emulator, "u2")["Email"], "mallory@example.net");
    assert_eq!(identity(&emulator, "u2")["Mobile"], "+12062340147");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_must_be_nfc_before_anything_is_sent() {
    let emulator = unthrottled(seed(2, None)).await;
    let dir = Dir::new();
    // "Jose\u{301}" is NFD: without the nfc transform the record is invalid, locally.
    dir.write(
        "in.csv",
        "user_id,username,last,mobile,email\nu1,agent1,Jose\u{301},,\nu2,agent2,Jos\u{e9},,\n",
    );
    dir.write("c.toml", last_names(FAST));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(statuses(&ledger), ["invalid", "updated"]);
    assert_has(&ledger[0]["error"]["message"], "LastName");
    assert_eq!(emulator.stats().operation("DescribeUser").requests, 1);
    assert_eq!(identity(&emulator, "u2")["LastName"], "Jos\u{e9}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_never_gets_an_email_and_a_directory_keeps_its_members() {
    // SAML: a mapped Email makes the record invalid (with a warning at the start).
    let mut saml = seed(2, Some("SAML"));
    for i in 1..=2 {
        let info = &mut saml["instances"][INSTANCE]["users"][format!("u{i}")]["IdentityInfo"];
        info.as_object_mut().unwrap().remove("Email");
    }
    let emulator_saml = unthrottled(saml).await;
    let dir = Dir::new();
    dir.write("in.csv", roster(2));
    let with_email = format!("{LAST_AND_MOBILE}\nEmail = \"email\"");
    dir.write("c.toml", config(&with_email, BY_ID, "", FAST));
    let out = sync(&dir, &emulator_saml, "apply", "l.jsonl", &[]).await;
    out.assert_exit(1);
    out.assert_says("uses SAML");
    let ledger = dir.ledger("l.jsonl");
    assert!(
        ledger.iter().all(|e| e["status"] == "invalid"),
        "{ledger:?}"
    );
    assert_eq!(ledger[0]["error"]["code"], "email_managed_by_saml");
    // Without Email, the same roster applies, and no Email is ever sent.
    dir.write("c.toml", config(LAST_AND_MOBILE, BY_ID, "", FAST));
    let out = sync(&dir, &emulator_saml, "apply", "l2.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(identity(&emulator_saml, "u1")["LastName"], "New");
    assert!(identity(&emulator_saml, "u1").get("Email").is_none());

    // An existing directory owns FirstName, LastName and Email: a record that changes one
    // fails, naming it; one that changes only Mobile is written with the rest as read.
    let emulator_dir = unthrottled(seed(2, Some("EXISTING_DIRECTORY"))).await;
    dir.write(
        "in.csv",
        "user_id,username,last,mobile,email\nu1,agent1,New,,\nu2,agent2,Old,(206) 234-0148,\n",
    );
    let out = sync(&dir, &emulator_dir, "apply", "l3.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l3.jsonl");
    assert_eq!(statuses(&ledger), ["failed", "updated"]);
    assert_eq!(ledger[0]["error"]["code"], "managed_by_directory");
    assert_has(&ledger[0]["error"]["message"], "LastName");
    assert_eq!(identity(&emulator_dir, "u1")["LastName"], "Old");
    assert_eq!(identity(&emulator_dir, "u2")["Mobile"], "+12062340148");
    assert_eq!(identity(&emulator_dir, "u2")["FirstName"], "First2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_by_username_pages_list_users_once() {
    let n = 2_345;
    let emulator = unthrottled(seed(n, None)).await;
    let dir = Dir::new();
    dir.write(
        "in.csv",
        "user_id,username,last,mobile,email\n\
         r1,agent7,New,,\n\
         r2,agent2001,New,,\n\
         r3,nobody,New,,\n\
         r4,agent2345,Old,,\n",
    );
    let matching =
        "search_key = \"Username\"\nsearch_column = \"username\"\nwhen_missing = \"fail\"";
    dir.write("c.toml", config(r#"LastName = "last""#, matching, "", FAST));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        ["updated", "updated", "failed", "unchanged"]
    );
    assert_eq!(ledger[0]["target_id"], "u7");
    assert_eq!(ledger[1]["target_id"], "u2001");
    assert_eq!(ledger[2]["error"]["code"], "not_found");
    assert_eq!(identity(&emulator, "u2001")["LastName"], "New");
    let stats = emulator.stats();
    assert_eq!(
        stats.operation("ListUsers").requests,
        3,
        "2,345 users in pages of 1,000, read once for the whole run"
    );
    assert_eq!(
        stats.operation("SearchUsers").requests,
        1,
        "the unknown name, once"
    );
    assert_eq!(stats.operation("DescribeUser").requests, 3);
    out.assert_prints("ListUsers 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_at_two_per_second_nothing_is_lost() {
    // Connect's default quota (2/s, burst 5, per operation); the client asks for more.
    let n = 12;
    let emulator = emulator(EmulatorConfig::default().with_seed(seed(n, None))).await;
    let dir = Dir::new();
    dir.write("in.csv", renamed(n, |_| "New".to_owned()));
    dir.write("c.toml", last_names("rate = 6\nburst = 6\nconcurrency = 6"));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(ledger.len(), n as usize);
    assert!(
        ledger.iter().all(|e| e["status"] == "updated"),
        "{ledger:?}"
    );
    for i in 1..=n {
        assert_eq!(identity(&emulator, &format!("u{i}"))["LastName"], "New");
    }
    let stats = emulator.stats();
    let throttled = stats.operation("DescribeUser").status(429)
        + stats.operation("UpdateUserIdentityInfo").status(429);
    assert!(throttled > 0, "the client's 6/s is over the quota");
    assert_eq!(
        stats.operation("UpdateUserIdentityInfo").status(200),
        n as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_and_ends_exact() {
    let n = 10;
    let emulator = emulator(EmulatorConfig::default().with_seed(seed(n, None))).await;
    let dir = Dir::new();
    dir.write("in.csv", renamed(n, |i| format!("New{i}")));
    dir.write("c.toml", last_names("rate = 2\nburst = 1\nconcurrency = 2"));
    let args = sync_args("apply", "c.toml", "l.jsonl", &[]);
    let mut child = dir.command(&args).connect(&emulator).spawn();
    wait_for_entries(&dir.path("l.jsonl"), 2).await;
    child.kill().await;
    let before = dir.ledger("l.jsonl").len();
    assert!(before < n as usize, "killed mid-run: {before} settled");
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &["--resume"]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_every_record_once(&ledger, u64::from(n));
    for i in 1..=n {
        assert_eq!(
            identity(&emulator, &format!("u{i}"))["LastName"],
            format!("New{i}")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_checks_the_instance_and_the_access() {
    let emulator = emulator(EmulatorConfig::default().with_seed(seed(1, None))).await;
    let dir = Dir::new();
    dir.write("in.csv", roster(1));
    dir.write("c.toml", last_names(FAST).replace(INSTANCE, "i-missing"));
    let out = sync(&dir, &emulator, "apply", "l.jsonl", &[]).await;
    assert_stopped_before_any_record(&out, 2, "instance_id right?", &dir.path("l.jsonl"));

    let denied = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(1, None))
            .with_denied("DescribeInstance"),
    )
    .await;
    dir.write("c.toml", last_names(FAST));
    let out = sync(&dir, &denied, "apply", "l.jsonl", &[]).await;
    assert_stopped_before_any_record(&out, 3, "AccessDeniedException", &dir.path("l.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_agents_plan_as_documented() {
    let emulator = unthrottled(sample_seed()).await;
    let dir = Dir::new();
    let (config, input) = (
        sample("config/connect-user.toml"),
        sample("samples/agents.csv"),
    );
    let args = run_args("plan", &config, &input, "p.jsonl", &["--rate", "100"]);
    dir.command(&args)
        .connect(&emulator)
        .output()
        .await
        .assert_exit(1);
    let ledger = dir.ledger_by_record("p.jsonl");
    // samples/README.md: 3 invalid, 24 unchanged, 12 would_update, 1 guarded Email change.
    let planned = ["invalid", "unchanged", "would_update", "failed"];
    assert_eq!(tally(&ledger, &planned), [3, 24, 12, 1]);
    assert_eq!(
        ledger[28]["error"]["code"], "email_change_guarded",
        "record 29"
    );
    assert_eq!(
        emulator
            .stats()
            .operation("UpdateUserIdentityInfo")
            .requests,
        0
    );
}

/// One night of `apply` over `in.csv` (`records` rows): the ledger's `unchanged` records by
/// basis (`(state, target)`), and the requests of ListUsers, DescribeUser and
/// UpdateUserIdentityInfo.
async fn night(
    dir: &Dir,
    emulator: &EmulatorHandle,
    ledger: &str,
    records: u64,
) -> ((usize, usize), [u64; 3]) {
    emulator.reset_stats();
    let out = sync(dir, emulator, "apply", ledger, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let entries = read_ledger(&dir.path(ledger));
    assert_every_record_once(&entries, records);
    let unchanged = |basis: &str| {
        entries
            .iter()
            .filter(|e| e["status"] == "unchanged" && e["basis"] == basis)
            .count()
    };
    let stats = emulator.stats();
    let requests = |op: &str| stats.operation(op).requests;
    (
        (unchanged("state"), unchanged("target")),
        [
            requests("ListUsers"),
            requests("DescribeUser"),
            requests("UpdateUserIdentityInfo"),
        ],
    )
}

/// An unthrottled instance of users 1..=n, and a folder with their [`roster`] mapped by
/// UserId (LastName and Mobile).
async fn rostered(n: u32) -> (EmulatorHandle, Dir) {
    let emulator = unthrottled(seed(n, None)).await;
    let dir = Dir::new();
    dir.write("in.csv", roster(n));
    dir.write("c.toml", config(LAST_AND_MOBILE, BY_ID, "", FAST));
    (emulator, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_reads_only_the_users_changed_in_connect_since_it_last_read_them() {
    let (emulator, dir) = rostered(8).await;
    let written_at = |user: &str| {
        emulator.state()["instances"][INSTANCE]["users"][user]["LastModifiedTime"].as_f64()
    };

    // Night 1, no state yet: every user read, the odd ones written (which moves their
    // LastModifiedTime; the state keeps the time read before the write).
    let ((by_state, _), [_, described, updated]) = night(&dir, &emulator, "n1.jsonl", 8).await;
    assert_eq!((by_state, described, updated), (0, 8, 4));
    assert!(written_at("u1").is_some() && written_at("u2").is_none());

    // Night 2, the same export: ListUsers once; the 4 users we wrote are read once more
    // (their time moved), found unchanged; the 4 others are unchanged by the state, unread.
    let counts = night(&dir, &emulator, "n2.jsonl", 8).await;
    assert_eq!(counts, ((4, 4), [1, 4, 0]));

    // Someone else changes user 2 in Connect (another tool: its own state, its own export).
    let other = Dir::new();
    other.write(
        "in.csv",
        roster(8).replace("u2,agent2,Old,", "u2,agent2,Drift,"),
    );
    other.write("c.toml", config(LAST_AND_MOBILE, BY_ID, "", FAST));
    let out = sync(&other, &emulator, "apply", "o.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(identity(&emulator, "u2")["LastName"], "Drift");

    // Night 3, the same export again: exactly user 2 is read, and repaired; no other user
    // is read.
    let counts = night(&dir, &emulator, "n3.jsonl", 8).await;
    assert_eq!(counts, ((7, 0), [1, 1, 1]));
    let n3 = by_record(&read_ledger(&dir.path("n3.jsonl")));
    assert_eq!(n3[1]["status"], "updated");
    assert_eq!(n3[1]["changed"], json!(["LastName"]));
    assert_eq!(identity(&emulator, "u2")["LastName"], "Old");

    // Night 4: the user we repaired is read once more; night 5: nobody is.
    assert_eq!(
        night(&dir, &emulator, "n4.jsonl", 8).await,
        ((7, 1), [1, 1, 0])
    );
    assert_eq!(
        night(&dir, &emulator, "n5.jsonl", 8).await,
        ((8, 0), [1, 0, 0])
    );

    // --full reads every user, and ListUsers is not needed for it.
    emulator.reset_stats();
    let out = sync(&dir, &emulator, "apply", "full.jsonl", &["--full"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stats = emulator.stats();
    assert_eq!(stats.operation("DescribeUser").requests, 8);
    assert_eq!(stats.operation("ListUsers").requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_another_account_at_the_same_endpoint_never_reads_this_state() {
    let (first, dir) = rostered(8).await;
    let ((by_state, _), [_, _, updated]) = night(&dir, &first, "n1.jsonl", 8).await;
    assert_eq!((by_state, updated), (0, 4));
    // The same instance id, users and endpoint, in another account (the ARN DescribeInstance
    // gives differs): every user is read again and the odd ones written there too.
    let port = first.addr().port();
    first.shutdown().await;
    let mut other_seed = seed(8, None);
    other_seed["account"] = json!("210987654321");
    let other = EmulatorConfig {
        port,
        ..EmulatorConfig::default()
    };
    let other = unthrottled_with(other.with_seed(other_seed)).await;
    let ((by_state, _), [_, described, updated]) = night(&dir, &other, "n2.jsonl", 8).await;
    assert_eq!((by_state, described, updated), (0, 8, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_list_users_the_state_stops_the_run_and_names_full() {
    let (emulator, dir) = rostered(3).await;
    let out = sync(&dir, &emulator, "apply", "n1.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The next night, the credentials may no longer list users: the state cannot tell who
    // changed, so nothing is skipped silently; the run stops, saying what to do. (The same
    // instance at the same endpoint: the same sync state.)
    let port = emulator.addr().port();
    emulator.shutdown().await;
    let denied = Emulator::start(
        EmulatorConfig {
            port,
            ..EmulatorConfig::default()
        }
        .with_seed(seed(3, None))
        .without_quotas()
        .with_denied("ListUsers"),
    )
    .await
    .unwrap();
    let out = sync(&dir, &denied, "apply", "n2.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AccessDeniedException"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--full"), "{}", stderr(&out));
    // --full needs no ListUsers.
    let out = sync(&dir, &denied, "apply", "full.jsonl", &["--full"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_every_record_once(&read_ledger(&dir.path("full.jsonl")), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_fails_is_not_repeated_for_every_user() {
    // 1,200 users: ListUsers takes two pages, and its quota lets only the first through.
    let emulator = emulator(
        EmulatorConfig::default()
            .with_seed(seed(1_200, None))
            .without_quotas()
            .with_quota("ListUsers", 0.001, 1),
    )
    .await;
    let dir = Dir::new();
    dir.write("in.csv", renamed(40, |_| "Old".to_owned()));
    dir.write(
        "c.toml",
        last_names("rate = 200\nburst = 20\nconcurrency = 4\nmax_attempts = 1"),
    );
    // Night 1 has no state to check: no ListUsers.
    let ((by_state, by_target), [listed, described, _]) =
        night(&dir, &emulator, "n1.jsonl", 40).await;
    assert_eq!((by_state, by_target, listed, described), (0, 40, 0, 40));
    // Night 2: the listing is throttled on its second page and gives up; every user is read
    // instead, and the listing is not tried again by each of the 40 records.
    let ((by_state, by_target), [listed, described, _]) =
        night(&dir, &emulator, "n2.jsonl", 40).await;
    assert_eq!((by_state, by_target, described), (0, 40, 40));
    assert!(listed <= 2 + 4, "{listed} ListUsers requests");
}
