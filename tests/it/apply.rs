//! `profilesync apply`, `plan` and `demo` against the emulator, through the real AWS SDK:
//! the binary runs as a user would run it, configured only by the standard AWS environment.

use std::time::Duration;

use profilesync::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Value, json};

use crate::support::{
    APPLY, BY_ID, DOMAIN, Dir, PROFILES_ENDPOINT, Run, assert_every_record_once, assert_has,
    assert_stopped_before_any_record, command, config, count, customers, customers_dir, faults,
    pid, profile, records, run, run_args, sample, sample_seed, seed, seeded, slow_emulator,
    start_emulator, statuses, sync, sync_args, synced_profile, tally, wait_for_entries,
};

/// Applies `customers(n)` by id with these `[limits]`, and checks that the run exits 0 with
/// every record `updated`. Returns the output and the ledger in record order.
async fn apply_all(emulator: &EmulatorHandle, n: u32, limits: &str) -> (Run, Vec<Value>) {
    let dir = customers_dir(n, limits);
    let out = dir.apply(emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(statuses(&ledger), vec!["updated"; n as usize]);
    (out, ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_reaches_the_expected_state_and_keeps_what_it_does_not_map() {
    let emulator = seeded(20).await;
    let (out, ledger) = apply_all(&emulator, 20, "rate = 100\nburst = 10\nconcurrency = 8").await;
    assert_eq!(
        ledger[0]["changed"],
        json!(["Address.City", "Attributes.Tier", "FirstName"])
    );
    // One BatchGetProfile read, shared with the other records in flight, and one write.
    assert_eq!(ledger[0]["attempts"], 2);
    for i in 1..=20 {
        assert_eq!(profile(&emulator, &pid(i)), synced_profile(i));
    }
    let summary = out.stdout();
    assert!(
        summary.contains("updated") && summary.contains("ledger: l.jsonl"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_below_the_rate_slows_the_run_and_loses_nothing() {
    let emulator = with_update_quota(60, 20.0).await;
    let (_, ledger) = apply_all(&emulator, 60, "rate = 100\nburst = 10\nconcurrency = 8").await;
    let stats = emulator.stats().operation("UpdateProfile");
    assert!(stats.status(429) > 0, "the quota was hit: {stats:?}");
    assert_eq!(stats.status(200), 60);
    let attempts: u64 = ledger.iter().map(|e| e["attempts"].as_u64().unwrap()).sum();
    let reads = emulator.stats().operation("BatchGetProfile");
    assert_eq!(reads.status(429), 0, "reads have a bucket of their own");
    assert_eq!(
        attempts,
        stats.requests + 60,
        "every request is counted in the ledger: each write, and each record's batched read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried_until_every_record_lands() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(200))
            .with_faults(faults(0.05, 0.01, 7)),
    )
    .await;
    let (_, ledger) = apply_all(&emulator, 200, "rate = 90\nburst = 10\nconcurrency = 8").await;
    let stats = emulator.stats().operation("UpdateProfile");
    assert!(
        stats.status(500) > 0 && stats.dropped > 0,
        "faults were injected: {stats:?}"
    );
    assert!(ledger.iter().any(|e| e["attempts"].as_u64().unwrap() > 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_sending_settled_records_again() {
    let n = 150;
    let emulator = slow_emulator(n, 20).await;
    let concurrency = 4;
    let dir = customers_dir(
        n,
        &format!("rate = 50\nburst = 5\nconcurrency = {concurrency}"),
    );
    let mut child = command(&dir, &emulator, &APPLY).spawn();
    // Kill it mid-run, once some records have settled.
    let ledger_path = dir.path("l.jsonl");
    wait_for_entries(&ledger_path, 40).await;
    child.kill().await; // SIGKILL
    let first = std::fs::read_to_string(&ledger_path).unwrap();
    let settled_first = first.lines().filter(|l| l.ends_with('}')).count();
    assert!(
        settled_first >= 40 && settled_first < n as usize,
        "killed mid-run: {settled_first} settled"
    );
    let sent_first = emulator.stats().operation("UpdateProfile").status(200);

    let out = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_every_record_once(&ledger, n as u64);
    // A record in flight at the kill, written but not settled, is read on resume and found
    // as the record says: not updated twice. Nothing says when it was written (the state
    // learns only what settled), so it is refreshed: written once more with the same values,
    // so that it cannot expire unnoticed.
    let in_flight = ledger
        .iter()
        .filter(|e| e["status"] == "refreshed" || e["status"] == "unchanged")
        .count();
    assert!(
        ledger
            .iter()
            .all(|e| ["updated", "refreshed", "unchanged"]
                .contains(&e["status"].as_str().unwrap_or(""))),
        "{ledger:?}"
    );
    assert!(in_flight <= concurrency, "{in_flight} were in flight");
    // Only records that had not settled were sent again: none updated twice.
    let sent_total = emulator.stats().operation("UpdateProfile").status(200);
    let refreshed = ledger.iter().filter(|e| e["status"] == "refreshed").count();
    assert_eq!(
        sent_total,
        n as u64 + refreshed as u64,
        "every profile updated once, those in flight at the kill refreshed once more"
    );
    assert!(sent_first >= settled_first as u64);
    for i in 1..=n {
        assert_eq!(
            profile(&emulator, &pid(i))["FirstName"],
            format!("First{i}")
        );
    }
}

/// An emulator seeded with profiles 1..=n whose UpdateProfile quota is `rate` a second,
/// with a burst of 5.
async fn with_update_quota(n: u32, rate: f64) -> EmulatorHandle {
    start_emulator(EmulatorConfig::default().with_seed(seed(n)).with_quota(
        "UpdateProfile",
        rate,
        5,
    ))
    .await
}

/// The statuses of a plan, as samples/README.md counts them.
const PLANNED: [&str; 4] = ["invalid", "would_refresh", "would_update", "not_found"];

/// Upserts by e-mail, creating what is missing.
const UPSERT: &str =
    "search_key = \"_email\"\nsearch_column = \"email\"\nwhen_missing = \"create\"";

/// For `customers(4)` matched by e-mail: c1 has one match, c2 two, c3 none, and c4 one that
/// already holds what the input says.
fn upsert_seed() -> Value {
    json!({"domains": {DOMAIN: {"profiles": {
        pid(1): {"FirstName": "Old", "EmailAddress": "c1@example.com"},
        pid(2): {"FirstName": "Twin", "EmailAddress": "c2@example.com"},
        pid(3): {"FirstName": "Twin", "PersonalEmailAddress": "c2@example.com"},
        pid(4): {"FirstName": "First4", "Address": {"City": "City4"}, "Attributes": {"Tier": "Gold"}, "EmailAddress": "c4@example.com"},
    }}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_update_one_match_create_none_and_refuse_ambiguity() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(upsert_seed())).await;
    let dir = Dir::new();
    // c1: one match; c2: two; c3: none; c4: one match, already equal, written by someone
    // else at a time nobody knows: refreshed, so that it does not expire.
    dir.write("in.csv", customers(4));
    dir.write("c.toml", config("rate = 50", UPSERT));
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit_because(1, "the ambiguous record fails");
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        ["updated", "failed", "created", "refreshed"]
    );
    assert_eq!(ledger[0]["target_id"], pid(1));
    assert_eq!(profile(&emulator, &pid(1))["FirstName"], "First1");
    assert_eq!(ledger[1]["error"]["code"], "ambiguous");
    assert_has(
        &ledger[1]["error"]["message"],
        "ambiguous: 2 profiles match _email",
    );
    let created = ledger[2]["target_id"].as_str().unwrap();
    assert_eq!(created.len(), 32);
    assert_eq!(profile(&emulator, created)["FirstName"], "First3");
    assert_eq!(emulator.stats().operation("CreateProfile").status(200), 1);
    assert_eq!(
        emulator.stats().operation("UpdateProfile").status(200),
        2,
        "the update and the refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_profiles_follow_when_missing() {
    let emulator = seeded(2).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(4));
    dir.write("skip.toml", config("rate = 50", BY_ID));
    let out = sync(&dir, &emulator, "apply", "skip.toml", "skip.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger("skip.jsonl")),
        ["updated", "updated", "skipped", "skipped"]
    );

    dir.write(
        "fail.toml",
        config("rate = 50", &format!("{BY_ID}\nwhen_missing = \"fail\"")),
    );
    let out = sync(&dir, &emulator, "apply", "fail.toml", "fail.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let ledger = dir.ledger_by_record("fail.jsonl");
    // Records 1 and 2 were written by the first run; the sync state knows it.
    assert_eq!(
        statuses(&ledger),
        ["unchanged", "unchanged", "failed", "failed"]
    );
    assert_eq!(ledger[0]["basis"], "state");
    assert_eq!(ledger[2]["error"]["code"], "not_found");

    // --retry-failed sends only those two again.
    emulator.reset_stats();
    let out = sync(
        &dir,
        &emulator,
        "apply",
        "fail.toml",
        "retry.jsonl",
        &["--retry-failed", "fail.jsonl"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(records(&dir.ledger("retry.jsonl")), [3, 4]);
    // Both are read again (and still missing), nothing else is.
    let stats = emulator.stats();
    assert_eq!(stats.operation("UpdateProfile").requests, 0);
    assert!(stats.operation("BatchGetProfile").requests >= 1);

    // --max-errors stops the run: exit 3.
    let out = sync(
        &dir,
        &emulator,
        "apply",
        "fail.toml",
        "max.jsonl",
        &["--max-errors", "1", "--concurrency", "1"],
    )
    .await;
    out.assert_exit(3);
    out.assert_says("--max-errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_about_one_record_aborts_the_run_with_exit_3() {
    let emulator = seeded(50).await;
    let dir = customers_dir(50, "rate = 50");
    // No credentials anywhere in the chain.
    let out = command(&dir, &emulator, &APPLY)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .await;
    assert_stopped_before_any_record(&out, 3, "nothing was sent", &dir.path("l.jsonl"));
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);

    // An endpoint that never answers.
    dir.write(
        "u.toml",
        config("rate = 50\nconcurrency = 2\nmax_attempts = 2", BY_ID),
    );
    let out = command(
        &dir,
        &emulator,
        &sync_args("apply", "u.toml", "u.jsonl", &[]),
    )
    .env(PROFILES_ENDPOINT, "http://127.0.0.1:9")
    .output()
    .await;
    assert_stopped_before_any_record(&out, 3, "could not be reached", &dir.path("u.jsonl"));

    // A domain that does not exist.
    dir.write(
        "d.toml",
        config("rate = 50", BY_ID).replace(DOMAIN, "NoSuchDomain"),
    );
    let out = sync(&dir, &emulator, "apply", "d.toml", "d.jsonl", &[]).await;
    // A configuration error.
    assert_stopped_before_any_record(
        &out,
        2,
        "the domain NoSuchDomain does not exist",
        &dir.path("d.jsonl"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reports_differences_and_writes_nothing() {
    let emulator = seeded(3).await;
    let before = emulator.state();
    let dir = Dir::new();
    let mut csv = customers(4);
    csv = csv.replace("First2", "Old2");
    dir.write("in.csv", csv);
    dir.write(
        "c.toml",
        config("rate = 50", BY_ID).replace(
            "\"Address.City\" = \"city\"\n\"Attributes.Tier\" = \"tier\"\n",
            "",
        ),
    );
    let out = dir.plan(&emulator, "p.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger_by_record("p.jsonl");
    assert_eq!(
        statuses(&ledger),
        ["would_update", "would_refresh", "would_update", "not_found"]
    );
    assert_eq!(ledger[0]["changed"], json!(["FirstName"]));
    assert_eq!(emulator.state(), before);
    // The diff report: field names by default, values when asked.
    let report = out.printed("diff csv: ");
    assert!(report.starts_with("reports/"), "{report}");
    let text = std::fs::read_to_string(dir.path(&report)).unwrap();
    let mut rows: Vec<&str> = text.lines().skip(1).collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "1,2,C1,00000000000000000000000000000001,would_update,FirstName,,",
            "3,4,C3,00000000000000000000000000000003,would_update,FirstName,,",
            "4,5,C4,00000000000000000000000000000004,not_found,,not_found,\"in.csv:5: no profile has this ProfileId, and [match] when_missing = \"\"skip\"\"\""
        ]
    );
    let out = dir
        .plan(&emulator, "p2.jsonl", &["--report", "rep", "--show-values"])
        .await;
    out.assert_exit(0);
    let report = out.printed("diff csv: ");
    let text = std::fs::read_to_string(dir.path(&report)).unwrap();
    assert!(
        text.contains("would_update,FirstName,Old1,First1"),
        "{text}"
    );
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
}

#[test]
fn demo_runs_from_any_directory() {
    let dir = Dir::new();
    let run = dir.run(&["demo"]);
    run.assert_exit(0);
    let out = run.stdout();
    assert!(out.contains("plan: 300 records"), "{out}");
    assert!(out.contains("apply: 300 records"), "{out}");
    assert!(out.contains("plan: 40 records"), "{out}");
    assert!(out.contains("plan: 60 records"), "{out}");
    let ledger_of = |name: &str| {
        let line = out
            .lines()
            .find(|l| l.starts_with(name) && l.contains(": ledger "))
            .unwrap_or_else(|| panic!("no {name} ledger in {out}"));
        run.ledger(line.split(": ledger ").nth(1).unwrap())
    };
    let apply = ledger_of("customer-profiles apply");
    assert_eq!(apply.len(), 300);
    assert_eq!(tally(&apply, &["invalid", "failed"]), [8, 0]);
    // The agents sample: one record is stopped by the e-mail guard, as documented.
    let agents = ledger_of("connect-user apply");
    assert_eq!(agents.len(), 40);
    assert_eq!(tally(&agents, &["failed", "updated"]), [1, 12]);
    let genesys = ledger_of("genesys-ucs apply");
    assert_eq!(genesys.len(), 60);
    assert_eq!(count(&genesys, "failed", None), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_or_sigterm_lets_records_in_flight_settle_and_exits_3() {
    // SIGTERM is what cron wrappers, `timeout` and systemd send; it stops a run like Ctrl-C.
    for signal in ["-INT", "-TERM"] {
        let n = 100;
        let emulator = slow_emulator(n, 50).await;
        let dir = customers_dir(n, "rate = 20\nburst = 2\nconcurrency = 4");
        let child = command(&dir, &emulator, &APPLY).spawn();
        wait_for_entries(&dir.path("l.jsonl"), 10).await;
        child.signal(signal);
        let out = child.wait().await;
        out.assert_exit_because(3, signal);
        out.assert_says("interrupted");
        let ledger = dir.ledger("l.jsonl");
        assert!(
            ledger.len() >= 10 && ledger.len() < n as usize,
            "{signal}: {} settled",
            ledger.len()
        );
        // Every request that reached the emulator belongs to a settled record: in-flight
        // ones finished.
        assert_eq!(
            emulator.stats().operation("UpdateProfile").status(200),
            ledger.len() as u64,
            "{signal}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_against_another_input_is_refused() {
    let emulator = seeded(3).await;
    let dir = customers_dir(3, "rate = 50");
    // Wide rows (18 unmapped columns of 60,000 bytes), so that the first MiB of the file, which
    // the run file hashes, ends inside record 1.
    let pad = format!(",{}", "x".repeat(60_000)).repeat(18);
    let header: String = (1..=18).map(|k| format!(",pad{k}")).collect();
    let csv = customers(3);
    let lines: Vec<String> = csv
        .lines()
        .enumerate()
        .map(|(i, line)| format!("{line}{}", if i == 0 { &header } else { &pad }))
        .collect();
    dir.write("in.csv", lines.join("\n") + "\n");
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    // A re-export in another order that the run file cannot tell (same size, same
    // modification time, every change past the first MiB): records 2 and 3 are now other
    // customers, which the per-record key check refuses.
    let modified = std::fs::metadata(dir.path("in.csv"))
        .and_then(|m| m.modified())
        .expect("mtime");
    dir.write(
        "in.csv",
        format!("{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[3], lines[2]),
    );
    std::fs::File::options()
        .write(true)
        .open(dir.path("in.csv"))
        .and_then(|f| f.set_modified(modified))
        .expect("set mtime");
    emulator.reset_stats();
    let out = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    out.assert_exit(3);
    out.assert_says("another key than in the ledger");
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
    assert_eq!(dir.ledger("l.jsonl").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stops_answering_mid_run_stops_the_run() {
    let n = 300;
    let emulator = seeded(n).await;
    let dir = customers_dir(n, "rate = 40\nburst = 2\nconcurrency = 2\nmax_attempts = 2");
    let child = command(&dir, &emulator, &APPLY).spawn();
    wait_for_entries(&dir.path("l.jsonl"), 20).await;
    emulator.shutdown().await;
    let out = child.wait().await;
    out.assert_exit(3);
    out.assert_says("stopped answering");
    let ledger = dir.ledger("l.jsonl");
    assert!(ledger.len() < 100, "{} records settled", ledger.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_retry_of_failed_records_resumes_with_the_same_selection() {
    let emulator = seeded(2).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(6));
    dir.write(
        "c.toml",
        config("rate = 50", &format!("{BY_ID}\nwhen_missing = \"fail\"")),
    );
    let out = dir.apply(&emulator, "first.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    // Records 3-6 failed. A re-drive settled record 3, then stopped (its ledger says so).
    std::fs::write(
        dir.path("retry.jsonl"),
        "{\"record\":3,\"line\":4,\"key\":\"C3\",\"status\":\"failed\",\"attempts\":1}\n",
    )
    .unwrap();
    // Its run file: the first run's, as a re-drive of first.jsonl.
    let mut run: Value =
        serde_json::from_slice(&std::fs::read(dir.path("first.jsonl.run.json")).unwrap()).unwrap();
    let first = std::fs::canonicalize(dir.path("first.jsonl")).unwrap();
    run["retry_failed"] = json!(first.display().to_string());
    std::fs::write(dir.path("retry.jsonl.run.json"), run.to_string()).unwrap();
    emulator.reset_stats();
    let out = dir
        .apply(
            &emulator,
            "retry.jsonl",
            &["--retry-failed", "first.jsonl", "--resume"],
        )
        .await;
    out.assert_exit(1);
    assert_eq!(
        records(&dir.ledger("retry.jsonl")),
        [3, 4, 5, 6],
        "only the failed records, none twice"
    );
    // Records 4-6 are read again (their profiles are still missing); none is written.
    let stats = emulator.stats();
    assert_eq!(stats.operation("UpdateProfile").requests, 0);
    assert!(stats.operation("BatchGetProfile").requests >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_of_the_bundled_samples_match_their_documented_outcomes() {
    // samples/README.md: 8 invalid, 167 unchanged, 76 would_update, 49 not_found, for the CSV
    // and the JSONL export alike.
    let emulator = start_emulator(EmulatorConfig::default().with_seed(sample_seed())).await;
    for (config, input) in [
        ("config/customer-profiles.toml", "samples/customers.csv"),
        (
            "config/customer-profiles-jsonl.toml",
            "samples/customers.jsonl",
        ),
    ] {
        let dir = Dir::new();
        let (config, input) = (sample(config), sample(input));
        let args = run_args("plan", &config, &input, "p.jsonl", &["--rate", "90"]);
        let out = run(&dir, &emulator, &args).await;
        out.assert_exit_because(1, "the invalid rows");
        let counts = tally(&dir.ledger("p.jsonl"), &PLANNED);
        assert_eq!(counts, [8, 167, 76, 49], "{config}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_aborts_the_run_but_a_denied_preflight_only_warns() {
    let dir = customers_dir(30, "rate = 50\nconcurrency = 2");

    // A role without profile:GetDomain: the run warns and goes on.
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(30))
            .with_denied("GetDomain"),
    )
    .await;
    let out = dir.apply(&emulator, "ok.jsonl", &[]).await;
    out.assert_exit(0);
    out.assert_says("warning: cannot check the domain");
    assert_eq!(statuses(&dir.ledger("ok.jsonl")), vec!["updated"; 30]);

    // Without profile:UpdateProfile either: the first answer stops the run.
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(30))
            .with_denied("GetDomain")
            .with_denied("UpdateProfile"),
    )
    .await;
    // A new emulator: the first run's sync state does not hold for it.
    let out = dir.apply(&emulator, "denied.jsonl", &["--full"]).await;
    out.assert_exit(3);
    out.assert_says("not authorized to perform: profile:UpdateProfile");
    let stats = emulator.stats().operation("UpdateProfile");
    assert_eq!(stats.status(403), stats.requests);
    assert!(
        stats.requests <= 2,
        "only the requests already in flight: {stats:?}"
    );
    let ledger = dir.ledger("denied.jsonl");
    assert!(
        ledger.iter().all(|e| e["status"] != "failed"),
        "records are not failed one by one: {ledger:?}"
    );
    assert_eq!(seed(30)["domains"], emulator.state()["domains"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_endpoints_from_the_aws_configuration_are_refused() {
    let emulator = start_emulator(EmulatorConfig::default()).await;
    let dir = customers_dir(3, "rate = 50");
    for (var, url) in [
        (PROFILES_ENDPOINT, "http://profiles.example.com"),
        ("AWS_ENDPOINT_URL", "http://10.1.2.3:4566"),
    ] {
        let out = command(
            &dir,
            &emulator,
            &[
                "plan", "--config", "c.toml", "in.csv", "--ledger", "l.jsonl",
            ],
        )
        .env_remove(PROFILES_ENDPOINT)
        .env(var, url)
        .output()
        .await;
        assert_stopped_before_any_record(&out, 2, "plain http:// is refused", &dir.path("l.jsonl"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_goes_over_its_own_rate() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(70))
            .without_quotas(),
    )
    .await;
    apply_all(&emulator, 70, "rate = 20\nburst = 5\nconcurrency = 16").await;
    let stats = emulator.stats().operation("UpdateProfile");
    assert_eq!(stats.status(429), 0);
    // The bucket of 5 plus 20 refills a second, measured on arrival at the server, so with
    // some slack for scheduling jitter; without the limiter, all 70 would come at once.
    assert!(stats.max_accepted_in_any_second <= 28, "{stats:?}");
    assert!(stats.max_accepted_in_any_second >= 10, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_auto_finds_an_unknown_quota_and_loses_nothing() {
    let emulator = with_update_quota(80, 40.0).await;
    let (_, ledger) = apply_all(
        &emulator,
        80,
        "rate = \"auto\"\nstart_rate = 400\nburst = 5\nconcurrency = 16",
    )
    .await;
    let stats = emulator.stats().operation("UpdateProfile");
    assert!(stats.status(429) > 0, "the start was too high: {stats:?}");
    assert_eq!(stats.status(200), 80);
    let attempts: u64 = ledger.iter().map(|e| e["attempts"].as_u64().unwrap()).sum();
    assert_eq!(emulator.stats().operation("BatchGetProfile").status(429), 0);
    assert_eq!(
        attempts,
        stats.requests + 80,
        "the writes and one batched read each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguity_counts_matches_across_search_pages() {
    // 105 profiles share c1's e-mail: SearchProfiles answers them in two pages.
    let profiles: serde_json::Map<String, Value> = (1..=105)
        .map(|i| (pid(i), json!({"PersonalEmailAddress": "c1@example.com"})))
        .collect();
    let emulator = start_emulator(
        EmulatorConfig::default().with_seed(json!({"domains": {DOMAIN: {"profiles": profiles}}})),
    )
    .await;
    let dir = Dir::new();
    dir.write("in.csv", customers(1));
    dir.write(
        "c.toml",
        config(
            "rate = 50",
            "search_key = \"_email\"\nsearch_column = \"email\"",
        ),
    );
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger("l.jsonl");
    assert_has(
        &ledger[0]["error"]["message"],
        "ambiguous: 105 profiles match",
    );
    assert_eq!(ledger[0]["attempts"], 2, "two pages");
    assert_eq!(emulator.stats().operation("SearchProfiles").status(200), 2);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_by_search_key_reports_what_apply_would_do() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(upsert_seed())).await;
    let before = emulator.state();
    let dir = Dir::new();
    dir.write("in.csv", customers(4));
    dir.write("c.toml", config("rate = 50", UPSERT));
    let out = dir.plan(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        ["would_update", "failed", "would_create", "would_refresh"]
    );
    assert_eq!(ledger[0]["target_id"], pid(1));
    assert_eq!(
        ledger[0]["changed"],
        json!(["Address.City", "Attributes.Tier", "FirstName"])
    );
    assert_eq!(ledger[1]["error"]["code"], "ambiguous");
    assert_eq!(emulator.state(), before, "plan writes nothing");
    for op in ["UpdateProfile", "CreateProfile"] {
        assert_eq!(emulator.stats().operation(op).requests, 0, "{op}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_cells_keep_or_clear_as_configured() {
    let seed = json!({"domains": {DOMAIN: {"profiles": {
        pid(1): {"FirstName": "Ann", "Address": {"City": "Paris", "Country": "FR"}, "Attributes": {"Tier": "Gold", "Other": "x"}},
    }}}});
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let dir = Dir::new();
    // Every mapped cell is empty.
    dir.write(
        "in.csv",
        format!(
            "crm_id,profile_id,first,city,tier,email\nC1,{},,,,\n",
            pid(1)
        ),
    );
    // Clear by default, but keep the tier.
    let text = config("rate = 50", BY_ID)
        .replace("key = \"crm_id\"", "key = \"crm_id\"\nempty = \"clear\"")
        .replace(
            "\"Attributes.Tier\" = \"tier\"",
            "\"Attributes.Tier\" = { from = \"tier\", empty = \"keep\" }",
        );
    dir.write("c.toml", text);
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(ledger[0]["changed"], json!(["Address.City", "FirstName"]));
    assert_eq!(
        profile(&emulator, &pid(1)),
        json!({"Address": {"Country": "FR"}, "Attributes": {"Tier": "Gold", "Other": "x"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_by_profile_id_search_writes_only_what_differs() {
    let emulator = seeded(3).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(3));
    let matching = "search_key = \"_profileId\"\nsearch_column = \"profile_id\"";
    dir.write("c.toml", config("rate = 50", matching));
    let out = dir.apply(&emulator, "first.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(statuses(&dir.ledger("first.jsonl")), ["updated"; 3]);
    // The nightly re-run of the same export: nothing differs, nothing is written.
    let out = dir.apply(&emulator, "again.jsonl", &[]).await;
    out.assert_exit(0);
    let again = dir.ledger_by_record("again.jsonl");
    assert_eq!(statuses(&again), ["unchanged"; 3]);
    assert_eq!(again[0]["target_id"], pid(1));
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_preflight_exits_3_before_anything_is_written() {
    let emulator = start_emulator(EmulatorConfig::default()).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(3));
    // An endpoint that refuses connections: the preflight retries for many seconds.
    dir.write("c.toml", config("rate = 50\nmax_attempts = 20", BY_ID));
    let child = command(&dir, &emulator, &APPLY)
        .env(PROFILES_ENDPOINT, "http://127.0.0.1:9")
        .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    child.signal("-TERM");
    let out = child.wait().await;
    assert_stopped_before_any_record(
        &out,
        3,
        "interrupted; nothing was sent",
        &dir.path("l.jsonl"),
    );
}

/// Issue 19: no region is a configuration error (exit 2) naming both places to set one, and
/// no credentials a plain sentence naming the chain (exit 3); each at once, with no request
/// sent and no retry, for both AWS targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_or_no_credentials_stops_at_once_without_a_request() {
    let emulator = seeded(2).await;
    let dir = customers_dir(2, "");
    dir.write(
        "u.toml",
        "[source]\nkey = \"crm_id\"\n[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\
         [match]\nid = \"crm_id\"\n[fields]\nFirstName = \"first\"\n",
    );
    for config in ["c.toml", "u.toml"] {
        let args = sync_args("apply", config, "l.jsonl", &[]);
        let started = std::time::Instant::now();
        let out = command(&dir, &emulator, &args)
            .env_remove("AWS_REGION")
            .output()
            .await;
        assert_stopped_before_any_record(&out, 2, "no AWS region", &dir.path("l.jsonl"));
        out.assert_says("AWS_REGION").assert_says("[target] region");

        let out = command(&dir, &emulator, &args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .await;
        assert_stopped_before_any_record(&out, 3, "no AWS credentials", &dir.path("l.jsonl"));
        out.assert_says("AWS_ACCESS_KEY_ID")
            .assert_says("AWS_PROFILE");
        let err = out.stderr();
        assert_eq!(
            err.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "one sentence: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nothing retried: {:?}",
            started.elapsed()
        );
    }
    let stats = emulator.stats();
    assert_eq!(
        stats.operation("GetDomain").requests + stats.operation("DescribeInstance").requests,
        0
    );
}

/// Issue 19: the command printed when a run stops carries `--config`, the input and every
/// option of the run, and runs as printed; `--resume` without `--ledger` takes the newest
/// ledger of the same config and input, not a newer one of another config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_resume_command_runs_as_printed_and_finds_its_own_ledger() {
    let emulator = seeded(2).await;
    let dir = Dir::new();
    // Enough records that each run stops before the end: records read ahead fail `not_found`
    // with no request of their own, so a few more than --max-errors settle before the stop.
    dir.write("in.csv", customers(40));
    let failing = config("rate = 50", &format!("{BY_ID}\nwhen_missing = \"fail\""));
    dir.write("c.toml", &failing);
    dir.write("other.toml", &failing);
    let first = [
        "apply",
        "--config",
        "c.toml",
        "in.csv",
        "--state",
        "st",
        "--full",
        "--rate",
        "40",
        "--concurrency",
        "1",
        "--report",
        "rep",
        "--max-errors",
        "2",
        "--no-progress",
    ];
    let out = command(&dir, &emulator, &first).output().await;
    out.assert_exit(3);
    let err = out.stderr();
    let hint = err
        .split("continue with: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in: {err}"))
        .trim()
        .to_owned();
    let words: Vec<&str> = hint.split(' ').collect();
    assert_eq!(words[0], "profilesync", "{hint}");
    for option in [
        "--config c.toml in.csv",
        "--state st --full --rate 40",
        "--report rep",
        "--resume --ledger ledgers/",
    ] {
        assert!(hint.contains(option), "{option:?} not in {hint}");
    }
    let ledger = words.last().unwrap().to_string();
    let settled = dir.ledger(&ledger).len();

    // A newer run of another config: `--resume` alone passes over its ledger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let other = [
        "apply",
        "--config",
        "other.toml",
        "in.csv",
        "--state",
        "st2",
        "--no-progress",
    ];
    command(&dir, &emulator, &other)
        .output()
        .await
        .assert_exit(1);
    let resume = [
        "apply",
        "--config",
        "c.toml",
        "in.csv",
        "--state",
        "st",
        "--concurrency",
        "1",
        "--max-errors",
        "2",
        "--no-progress",
        "--resume",
    ];
    let out = command(&dir, &emulator, &resume).output().await;
    out.assert_exit(3)
        .assert_says(&format!("resuming {ledger}"));
    let after = dir.ledger(&ledger).len();
    assert!(after > settled, "{settled} then {after}");

    // The printed command, as printed: it continues the same ledger to its end.
    let out = command(&dir, &emulator, &words[1..]).output().await;
    out.assert_says(&format!("resuming {ledger}"));
    assert!(!out.stderr().contains("cannot resume"), "{}", out.stderr());
    let ledger = dir.ledger(&ledger);
    assert!(ledger.len() > after, "{after} then {}", ledger.len());
}

/// Issue 19: a run without a terminal (as under cron or in a container) logs its progress at
/// `-v`, one line every 10 s, with the settled records, the rate and the counts by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_v_logs_the_progress_every_ten_seconds() {
    // 25 records at 2 writes per second: the run lasts about 12 s.
    let emulator = seeded(25).await;
    let dir = customers_dir(25, "rate = 2\nburst = 1\nconcurrency = 2");
    let mut args = APPLY[..6].to_vec();
    args.extend(["-v", "--log-format", "json"]);
    let out = command(&dir, &emulator, &args).output().await;
    out.assert_exit(0);
    let err = out.stderr();
    let lines = out.progress_lines();
    assert_eq!(lines.len(), 1, "one line at 10 s: {err}");
    let fields = &lines[0];
    let settled = fields["settled"].as_u64().unwrap();
    assert!((10..25).contains(&settled), "{fields}");
    assert_eq!(fields["statuses"], format!("{settled} updated"));
    assert!(fields["per_second"].as_u64().is_some(), "{fields}");
    assert!(
        fields["limits"].as_str().unwrap().contains("UpdateProfile"),
        "{fields}"
    );
}
