//! The local sync state: a night costs what changed. Real SDK, real emulator, real binary.

use profilesync::emulator::{EmulatorConfig, EmulatorHandle};

use crate::support::{
    APPLY, BY_ID, DOMAIN, Dir, command, config, count, customers, customers_dir, pid, profile,
    read_ledger, seed, seeded, slow_emulator, start_emulator, statuses, stderr, sync,
    wait_for_entries,
};

const LIMITS: &str = "rate = 500\nburst = 50\nconcurrency = 8";

/// The first night: an emulator with profiles 1..=n, and `customers(n)` applied into
/// `ledger` (exit 0).
async fn first_night(n: u32, ledger: &str) -> (EmulatorHandle, Dir) {
    let emulator = seeded(n).await;
    let dir = customers_dir(n, LIMITS);
    dir.apply(&emulator, ledger, &[]).await.assert_exit(0);
    (emulator, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_night_sends_nothing_and_one_changed_row_one_write() {
    let n = 20;
    let (emulator, dir) = first_night(n, "night1.jsonl").await;
    assert_eq!(
        count(&dir.ledger("night1.jsonl"), "updated", None),
        n as usize
    );
    assert!(
        dir.path("state").is_dir(),
        "the state lives in ./state by default"
    );

    // Night 2, the same export: no read, no write.
    emulator.reset_stats();
    let out = dir.apply(&emulator, "night2.jsonl", &[]).await;
    out.assert_exit(0);
    let night2 = dir.ledger("night2.jsonl");
    assert_eq!(
        count(&night2, "unchanged", Some("state")),
        n as usize,
        "{night2:?}"
    );
    assert!(night2.iter().all(|e| e["attempts"] == 0));
    let stats = emulator.stats();
    assert_eq!(stats.operation("UpdateProfile").requests, 0);
    assert_eq!(stats.operation("SearchProfiles").requests, 0);
    let summary = out.stdout();
    assert!(
        summary.contains(&format!("unchanged by the sync state: {n}")),
        "{summary}"
    );

    // Night 3, one row changed: exactly one write.
    emulator.reset_stats();
    dir.write("in.csv", customers(n).replace("First7,", "Seventh,"));
    let out = dir.apply(&emulator, "night3.jsonl", &[]).await;
    out.assert_exit(0);
    let night3 = dir.ledger_by_record("night3.jsonl");
    assert_eq!(night3[6]["status"], "updated");
    assert_eq!(count(&night3, "unchanged", Some("state")), n as usize - 1);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 1);
    assert_eq!(profile(&emulator, &pid(7))["FirstName"], "Seventh");

    // plan uses the state too: nothing read.
    emulator.reset_stats();
    let out = dir.plan(&emulator, "plan.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        count(&dir.ledger("plan.jsonl"), "unchanged", Some("state")),
        n as usize
    );
    assert_eq!(emulator.stats().operation("SearchProfiles").requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_repairs_exactly_the_profile_someone_else_changed() {
    let n = 10;
    let (emulator, dir) = first_night(n, "night1.jsonl").await;

    // Someone else changes profile 4 in the target (another tool, another state).
    let drift = customers_dir(n, LIMITS);
    drift.write("in.csv", customers(n).replace("First4,", "Drift,"));
    let out = drift.apply(&emulator, "d.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(profile(&emulator, &pid(4))["FirstName"], "Drift");

    // Our state does not know: a normal night misses the drift...
    emulator.reset_stats();
    let out = dir.apply(&emulator, "night2.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
    // ...and --full reads every profile and writes exactly the one that drifted.
    emulator.reset_stats();
    let out = dir.apply(&emulator, "full.jsonl", &["--full"]).await;
    out.assert_exit(0);
    let full = dir.ledger_by_record("full.jsonl");
    assert_eq!(full[3]["status"], "updated");
    assert_eq!(full[3]["changed"], serde_json::json!(["FirstName"]));
    assert_eq!(count(&full, "unchanged", Some("target")), n as usize - 1);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 1);
    assert_eq!(profile(&emulator, &pid(4))["FirstName"], "First4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_of_another_domain_is_never_used() {
    let n = 5;
    let (_emulator, dir) = first_night(n, "a.jsonl").await;
    // The same ids in another domain: the state of ExampleDomainName says nothing of it.
    let mut seed = seed(n);
    let profiles = seed["domains"][DOMAIN].clone();
    seed["domains"]["OtherDomain"] = profiles;
    let other = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    dir.write(
        "o.toml",
        config(LIMITS, BY_ID).replace(DOMAIN, "OtherDomain"),
    );
    let out = sync(&dir, &other, "apply", "o.toml", "b.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("b.jsonl");
    assert_eq!(count(&ledger, "updated", None), n as usize, "{ledger:?}");
    assert_eq!(
        other.stats().operation("UpdateProfile").requests,
        u64::from(n)
    );
}

/// The sync state file a run said it uses (`sync state: PATH (...)` on standard error).
fn state_file_named(out: &crate::support::Run) -> String {
    let stderr = out.stderr();
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sync state: "))
        .unwrap_or_else(|| panic!("no `sync state:` line in {stderr}"));
    line.split(" (").next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_endpoint_or_another_account_never_reads_this_state() {
    let n = 12;
    let (first, dir) = first_night(n, "first1.jsonl").await;
    let first_file = state_file_named(&dir.apply(&first, "first-again.jsonl", &[]).await);
    assert!(first_file.contains("customer-profiles-"), "{first_file}");

    // The same domain, ids and account behind another endpoint (a rehearsal, then
    // production): every record reaches it; nothing is skipped by the first one's state.
    let second = seeded(n).await;
    let out = dir.apply(&second, "second.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("second.jsonl");
    assert_eq!(count(&ledger, "updated", None), n as usize, "{ledger:?}");
    assert_eq!(
        second.stats().operation("UpdateProfile").requests,
        u64::from(n)
    );
    let second_file = state_file_named(&out);
    assert_ne!(second_file, first_file);
    assert!(
        out.stderr().contains(&second.endpoint_url()),
        "{}",
        out.stderr()
    );

    // The first target's next night still skips every record by its own state.
    first.reset_stats();
    let out = dir.apply(&first, "first2.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("first2.jsonl");
    assert_eq!(count(&ledger, "unchanged", Some("state")), n as usize);
    assert_eq!(first.stats().operation("UpdateProfile").requests, 0);
    assert_eq!(state_file_named(&out), first_file);

    // Another account at the first endpoint (the same URL, same domain and ids): every
    // record reaches it too.
    let port = first.addr().port();
    first.shutdown().await;
    let mut other_seed = seed(n);
    other_seed["account"] = serde_json::json!("210987654321");
    let other_account = EmulatorConfig {
        port,
        ..EmulatorConfig::default()
    };
    let other_account = start_emulator(other_account.with_seed(other_seed)).await;
    let out = dir.apply(&other_account, "account.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger("account.jsonl");
    assert_eq!(count(&ledger, "updated", None), n as usize, "{ledger:?}");
    assert_eq!(
        other_account.stats().operation("UpdateProfile").requests,
        u64::from(n)
    );
    let account_file = state_file_named(&out);
    assert!(![&first_file, &second_file].contains(&&account_file));
    assert!(
        out.stderr().contains("account=210987654321"),
        "{}",
        out.stderr()
    );
    let files = std::fs::read_dir(dir.path("state")).expect("the state folder");
    let redb = files
        .filter_map(Result::ok)
        .filter(|f| f.path().extension().is_some_and(|e| e == "redb"))
        .count();
    assert_eq!(redb, 3, "one state file per target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_get_caller_identity_stops_the_run_naming_the_permission() {
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(3))
            .with_denied("GetCallerIdentity"),
    )
    .await;
    let dir = customers_dir(3, LIMITS);
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(3);
    out.assert_says("sts:GetCallerIdentity");
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
    assert!(!dir.path("l.jsonl").exists(), "no ledger before the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_reads_give_each_record_its_own_result() {
    // Profiles 1-5 exist; BatchGetProfile answers profile 3 with an error entry; 6 is missing.
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(5))
            .with_batch_error(&pid(3)),
    )
    .await;
    let dir = customers_dir(6, LIMITS);
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(1);
    let ledger = dir.ledger_by_record("l.jsonl");
    assert_eq!(
        statuses(&ledger),
        [
            "updated", "updated", "failed", "updated", "updated", "skipped"
        ]
    );
    assert_eq!(ledger[2]["error"]["code"], "InternalServerException");
    let stats = emulator.stats();
    assert!(
        stats.operation("BatchGetProfile").requests < 6,
        "the records in flight share their reads: {:?}",
        stats.operation("BatchGetProfile")
    );
    assert_eq!(stats.operation("UpdateProfile").requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_never_marks_an_unsent_record_synced() {
    let n = 60;
    let emulator = slow_emulator(n, 30).await;
    let dir = customers_dir(n, "rate = 100\nburst = 4\nconcurrency = 4");
    let mut child = command(&dir, &emulator, &APPLY).spawn();
    wait_for_entries(&dir.path("l.jsonl"), 10).await;
    child.kill().await;
    let settled = dir.ledger("l.jsonl").len();
    assert!(settled < n as usize, "killed mid-run: {settled}");
    // The next night (a new run, not a resume): the state skips only what it recorded, which
    // the ledger holds; every other record is read, and written only if it still differs.
    emulator.reset_stats();
    let out = dir.apply(&emulator, "next.jsonl", &[]).await;
    out.assert_exit(0);
    let next = dir.ledger("next.jsonl");
    let by_state = count(&next, "unchanged", Some("state"));
    assert!(
        by_state <= settled,
        "{by_state} skipped by state, {settled} in the ledger"
    );
    for i in 1..=n {
        assert_eq!(
            profile(&emulator, &pid(i))["FirstName"],
            format!("First{i}")
        );
    }
    // Nothing was written twice but to refresh it: a record the target had accepted, whose
    // write the state had not recorded yet (it commits in batches), is found equal and
    // written once more only because nothing says when it was last written (so that it
    // cannot expire). Every record is skipped by the state, refreshed or updated once.
    let written = emulator.stats().operation("UpdateProfile").status(200);
    let (updated, refreshed) = (
        count(&next, "updated", None),
        count(&next, "refreshed", None),
    );
    assert_eq!(written as usize, updated + refreshed);
    assert_eq!(by_state + updated + refreshed, n as usize);
    assert!(updated <= n as usize - settled, "{updated} updated again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_closes_its_state_packed_to_64_bytes_a_record_or_less() {
    // A first night in id order leaves redb's leaves about half full (89 bytes a record at
    // 100,000); the end of the run must reach SyncState::close, which repacks them.
    let n = 3_000;
    let emulator = profilesync::emulator::Emulator::start(
        profilesync::emulator::EmulatorConfig::default()
            .with_seed(seed(n))
            .without_quotas(),
    )
    .await
    .unwrap();
    let dir = Dir::new();
    dir.write("in.csv", customers(n));
    dir.write(
        "c.toml",
        config("rate = 100000\nburst = 1000\nconcurrency = 32", BY_ID),
    );
    let out = sync(&dir, &emulator, "apply", "c.toml", "night1.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path("state"))
        .expect("the state directory")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one state file and no pid file left: {files:?}"
    );
    let size = std::fs::metadata(&files[0]).expect("metadata").len();
    assert!(
        size <= 64 * u64::from(n),
        "{:.1} bytes per record",
        size as f64 / f64::from(n)
    );
    // ... and holds every record: the next night sends nothing.
    emulator.reset_stats();
    let out = sync(&dir, &emulator, "apply", "c.toml", "night2.jsonl", &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let night2 = read_ledger(&dir.path("night2.jsonl"));
    assert_eq!(count(&night2, "unchanged", Some("state")), n as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_matched_by_a_search_are_found_again_in_the_state() {
    let n = 12;
    let profiles: serde_json::Map<String, serde_json::Value> = (1..=n)
        .map(|i| {
            let profile = serde_json::json!({
                "FirstName": format!("Old{i}"),
                "EmailAddress": format!("c{i}@example.com"),
            });
            (pid(i), profile)
        })
        .collect();
    let seed = serde_json::json!({"domains": {DOMAIN: {"profiles": profiles}}});
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed).without_quotas()).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(n));
    let by_email = "search_key = \"_email\"\nsearch_column = \"email\"\nwhen_missing = \"skip\"";
    dir.write("c.toml", config(LIMITS, by_email));
    let searches =
        |emulator: &EmulatorHandle| emulator.stats().operation("SearchProfiles").requests;
    let writes = |emulator: &EmulatorHandle| emulator.stats().operation("UpdateProfile").requests;

    // Night 1 searches every record, and the state learns where each was found.
    dir.apply(&emulator, "n1.jsonl", &[]).await.assert_exit(0);
    assert_eq!(count(&dir.ledger("n1.jsonl"), "updated", None), n as usize);
    assert_eq!(searches(&emulator), u64::from(n));

    // Night 2, the same export: no search, no write; each record names its profile.
    emulator.reset_stats();
    dir.apply(&emulator, "n2.jsonl", &[]).await.assert_exit(0);
    let night2 = dir.ledger_by_record("n2.jsonl");
    assert_eq!(count(&night2, "unchanged", Some("state")), n as usize);
    for (i, entry) in (1..=n).zip(&night2) {
        assert_eq!(entry["target_id"], pid(i), "{entry}");
    }
    assert_eq!((searches(&emulator), writes(&emulator)), (0, 0));

    // Night 3: record 5 has a new first name, record 9 a new e-mail (which no profile has):
    // those two are searched again, and only record 5 is written.
    emulator.reset_stats();
    let export = customers(n)
        .replace("First5,", "Fifth,")
        .replace("c9@example.com", "new9@example.com");
    dir.write("in.csv", export);
    dir.apply(&emulator, "n3.jsonl", &[]).await.assert_exit(0);
    let night3 = dir.ledger_by_record("n3.jsonl");
    assert_eq!(night3[4]["status"], "updated");
    assert_eq!(night3[8]["status"], "skipped");
    assert_eq!(count(&night3, "unchanged", Some("state")), n as usize - 2);
    assert_eq!((searches(&emulator), writes(&emulator)), (2, 1));

    // --full searches everything again.
    emulator.reset_stats();
    dir.apply(&emulator, "full.jsonl", &["--full"])
        .await
        .assert_exit(0);
    assert_eq!(searches(&emulator), u64::from(n));
}
