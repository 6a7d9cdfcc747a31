//! Customer Profiles reads by ProfileId, read ahead of the writes 20 ids a call (issue 18).
//! Real SDK, real emulator, real binary; the emulator counts the calls.

use std::time::Duration;

use profilesync::emulator::{EmulatorConfig, EmulatorHandle};

use crate::support::{
    BY_ID, Dir, config, count, customers, feed, pid, profile, seed, start_emulator, statuses,
    wait_for_entries_within,
};

/// 6,000 profiles: enough for 300 full reads.
const N: u32 = 6_000;

/// At most N/20 + 10 BatchGetProfile calls.
const MAX_READS: u64 = N as u64 / 20 + 10;

/// Rate and burst high enough for a test, at the default concurrency (16) and read-ahead.
const FAST: &str = "rate = 2000\nburst = 100";

/// An emulator seeded with profiles 1..=n, without quotas.
async fn unlimited(n: u32) -> EmulatorHandle {
    let mut config = EmulatorConfig::default().with_seed(seed(n));
    config.no_quotas = true;
    start_emulator(config).await
}

/// BatchGetProfile calls since the last reset, and resets the counts.
fn reads(emulator: &EmulatorHandle) -> u64 {
    let calls = emulator.stats().operation("BatchGetProfile").requests;
    emulator.reset_stats();
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn night_one_full_and_plan_full_read_twenty_ids_a_call() {
    let emulator = unlimited(N).await;
    let dir = Dir::new();
    dir.write("in.csv", customers(N));
    dir.write("c.toml", config(FAST, BY_ID));

    // Night 1: every profile differs, so the writes set the pace (one per record).
    let out = dir.apply(&emulator, "night1.jsonl", &[]).await;
    out.assert_exit(0);
    let night1 = dir.ledger("night1.jsonl");
    assert_eq!(count(&night1, "updated", None), N as usize);
    let calls = reads(&emulator);
    assert!(calls <= MAX_READS, "night 1: {calls} BatchGetProfile calls");
    // Each record counts the one read call it shared with 19 others, and its write.
    assert!(
        night1.iter().all(|e| e["attempts"] == 2),
        "one read, one write"
    );

    // --full: every profile read (and found as the export says), none written.
    let out = dir.apply(&emulator, "full.jsonl", &["--full"]).await;
    out.assert_exit(0);
    let full = dir.ledger("full.jsonl");
    assert_eq!(count(&full, "unchanged", Some("target")), N as usize);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
    let calls = reads(&emulator);
    assert!(calls <= MAX_READS, "--full: {calls} BatchGetProfile calls");

    // plan --full, with one profile changed by someone else.
    dir.write("in.csv", customers(N).replace("First77,", "Seventy-seven,"));
    let out = dir.plan(&emulator, "plan.jsonl", &["--full"]).await;
    out.assert_exit(0);
    let plan = dir.ledger("plan.jsonl");
    assert_eq!(count(&plan, "unchanged", Some("target")), N as usize - 1);
    assert_eq!(count(&plan, "would_update", None), 1);
    let calls = reads(&emulator);
    assert!(
        calls <= MAX_READS,
        "plan --full: {calls} BatchGetProfile calls"
    );

    // A night without --full reads only what the state does not settle: that one record.
    let out = dir.apply(&emulator, "night2.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(count(&dir.ledger("night2.jsonl"), "updated", None), 1);
    assert_eq!(reads(&emulator), 1, "a record the state skips is not read");
}

/// `rows` rows for one ProfileId, going back and forth between a new first name and the one
/// the profile has, among rows for other profiles; the last row is the one that must win.
fn back_and_forth(rows: u32) -> String {
    let mut csv = String::from("crm_id,profile_id,first,city,tier,email\n");
    for i in 1..=rows {
        let first = if i % 2 == 1 { "New" } else { "Old1" };
        csv.push_str(&format!(
            "A{i},{},{first},City1,Gold,a@example.com\n",
            pid(1)
        ));
        let other = i + 1;
        csv.push_str(&format!(
            "C{other},{},First{other},City{other},Gold,c@example.com\n",
            pid(other)
        ));
    }
    csv
}

/// Applies [`back_and_forth`] with these limits and checks that every row for profile 1 was
/// read after the one before it was written (each is `updated`) and that the last won.
async fn last_row_wins(rows: u32, limits: &str, run: u32) {
    let emulator = unlimited(rows + 1).await;
    let dir = Dir::new();
    dir.write("in.csv", back_and_forth(rows));
    dir.write("c.toml", config(limits, BY_ID));
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    let ledger = dir.ledger_by_record("l.jsonl");
    let ours: Vec<String> = statuses(&ledger).into_iter().step_by(2).collect();
    assert_eq!(
        ours,
        vec!["updated"; rows as usize],
        "run {run}: each row read fresh"
    );
    let others: Vec<String> = statuses(&ledger).into_iter().skip(1).step_by(2).collect();
    assert_eq!(others, vec!["updated"; rows as usize], "run {run}");
    assert_eq!(
        profile(&emulator, &pid(1))["FirstName"],
        "Old1",
        "run {run}"
    );
    let last = pid(rows + 1);
    assert_eq!(
        profile(&emulator, &last)["FirstName"],
        format!("First{}", rows + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_for_one_profile_are_each_read_after_the_one_before_so_the_last_wins() {
    // A read taken ahead, before the row before it was written, would see "Old1" for an
    // even row and call it unchanged: the profile would end "New".
    for run in 0..4 {
        last_row_wins(10, FAST, run).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_rows_for_one_profile_than_writers_and_window_still_settle_in_turn() {
    // 30 rows for one profile with 2 writers and a window of 4: the rows waiting for their
    // turn fill the window, never the writers, so the row they wait for always gets one.
    let limits = format!("{FAST}\nconcurrency = 2\nread_ahead = 4");
    last_row_wins(30, &limits, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_settles_each_record_without_waiting_for_a_full_batch() {
    let emulator = unlimited(5).await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        config(FAST, BY_ID).replace("key = \"crm_id\"", "key = \"crm_id\"\nformat = \"csv\""),
    );
    let mut child = dir
        .command(&[
            "apply",
            "--config",
            "c.toml",
            "-",
            "--ledger",
            "l.jsonl",
            "--no-progress",
        ])
        .profiles(&emulator)
        .stdin_piped()
        .spawn_sync();
    let mut stdin = child.stdin();
    let rows: Vec<String> = customers(5).lines().map(|l| format!("{l}\n")).collect();
    assert!(feed(&mut stdin, &rows[0]));
    for (i, row) in rows[1..].iter().enumerate() {
        assert!(feed(&mut stdin, row));
        // Settled well before the next record comes, let alone 19 more.
        wait_for_entries_within(&dir.path("l.jsonl"), i + 1, Duration::from_secs(3)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(stdin);
    let out = child.wait();
    out.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(statuses(&ledger), vec!["updated"; 5]);
    assert_eq!(
        emulator.stats().operation("BatchGetProfile").requests,
        5,
        "each record read as it came"
    );
}
