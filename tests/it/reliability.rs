//! Reliability: nothing vanishes, nothing leaks, two runs never collide. One regression test
//! per fault of issue 10, named after it, plus lone-CR inputs.

use profilesync::emulator::EmulatorHandle;
use serde_json::Value;

use crate::support::{
    APPLY, BY_ID, Dir, Run, assert_every_record_once, command, config, customers, customers_dir,
    pid, profiles_config, run, run_args, seeded, slow_emulator, stderr, sync, wait_for_entries,
};

const FIELDS: &str = r#"FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase", "email"] }
PhoneNumber = { from = "phone", transform = ["e164"] }
"#;

/// Data rows as a CRM export writes them, with personal data in every column.
fn rows(n: u32) -> Vec<[String; 6]> {
    (0..n)
        .map(|i| {
            [
                format!("CRM{i:06}"),
                pid(i + 1),
                format!("Lena{i}"),
                format!("O'Neil{i}"),
                format!("Lena.ONeil{i}@Example.COM"),
                format!("(253) 724-{:04}", 7000 + i),
            ]
        })
        .collect()
}

const HEADER: &str = "crm_id,profile_id,first,last,email,phone";

fn csv(header: bool, rows: &[[String; 6]], newline: &str) -> String {
    let mut text = String::new();
    if header {
        text.push_str(HEADER);
        text.push_str(newline);
    }
    for row in rows {
        text.push_str(&row.join(","));
        text.push_str(newline);
    }
    text
}

fn check(dir: &Dir, input: &str) -> Run {
    dir.write("c.toml", profiles_config(FIELDS));
    dir.run(&run_args("check", "c.toml", input, "l.jsonl", &[]))
}

/// Asserts that none of the values of `rows` appears in `text`, ids included.
fn assert_no_values(rows: &[[String; 6]], text: &str) {
    assert_no_personal_data(rows, text);
    for row in rows {
        for value in &row[..2] {
            assert!(
                !text.contains(value.as_str()),
                "{value:?} leaked in: {text}"
            );
        }
    }
}

/// Asserts that none of the names, e-mails and phones of `rows` appears in `text` (a ledger
/// holds the key and the target id).
fn assert_no_personal_data(rows: &[[String; 6]], text: &str) {
    for row in rows {
        for value in &row[2..] {
            assert!(
                !text.contains(value.as_str()),
                "{value:?} leaked in: {text}"
            );
        }
    }
    assert!(!text.contains("Lena") && !text.contains("Neil"), "{text}");
}

#[test]
fn fault_1_no_personal_data_when_header_looks_like_data() {
    let data = rows(20);
    for newline in ["\n", "\r\n", "\r"] {
        let dir = Dir::new();
        dir.write("in.csv", csv(false, &data, newline));
        let run = check(&dir, "in.csv");
        let stderr = run.stderr();
        assert_eq!(run.code(), 2, "{newline:?}: {stderr}");
        assert!(
            stderr.contains("crm_id") && stderr.contains("profile_id"),
            "names the missing columns: {stderr}"
        );
        assert!(
            stderr.contains("looks like data") && stderr.contains("header row missing"),
            "{stderr}"
        );
        assert_no_values(&data, &stderr);
        assert_no_values(&data, &run.stdout());
        assert!(!dir.path("l.jsonl").exists());
    }
    // A real header with a misspelt column still lists its columns, to help fix the config.
    let dir = Dir::new();
    dir.write(
        "in.csv",
        csv(true, &data, "\n").replace("profile_id", "profileid"),
    );
    let run = check(&dir, "in.csv");
    assert_eq!(run.code(), 2);
    run.assert_says("its columns are: crm_id, profileid, first");
    assert_no_values(&data, &run.stderr());
}

#[test]
fn lone_cr_line_endings_read_like_crlf() {
    let data = rows(5);
    let dir = Dir::new();
    // A quoted field over two lines, its line break a lone CR too.
    let text = csv(true, &data, "\r").replace("Lena2,", "\"Lena\r2\",");
    dir.write("in.csv", text);
    let run = check(&dir, "in.csv");
    run.assert_exit(0);
    let ledger = run.ledger("l.jsonl");
    let lines: Vec<u64> = ledger.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 4, 6, 7], "{ledger:?}");
    assert!(ledger.iter().all(|e| e["status"] == "valid"), "{ledger:?}");
    assert_eq!(ledger[4]["key"], "CRM000004");
}

#[test]
fn fault_5_an_unclosed_quote_near_the_end_is_invalid_and_says_what_it_swallowed() {
    let data = rows(20);
    let mut text = csv(true, &data, "\n");
    // Record 18 (line 19) opens a quote that nothing closes.
    text = text.replace("Lena17,", "\"Lena17,");
    let dir = Dir::new();
    dir.write("in.csv", &text);
    let run = check(&dir, "in.csv");
    run.assert_exit(1);
    let ledger = run.ledger("l.jsonl");
    assert_eq!(ledger.len(), 18, "{ledger:?}");
    assert!(ledger[..17].iter().all(|e| e["status"] == "valid"));
    let last = &ledger[17];
    assert_eq!(last["record"], 18);
    assert_eq!(last["line"], 19);
    assert_eq!(last["status"], "invalid");
    assert_eq!(last["error"]["code"], "unclosed_quote");
    let message = last["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unclosed quote starting at line 19") && message.contains("2 lines"),
        "{message}"
    );
    run.assert_prints("unclosed quote at line 19 swallowed the 2 input lines");
    assert_no_values(&data, &run.stdout());
    assert_no_personal_data(
        &data,
        &std::fs::read_to_string(dir.path("l.jsonl")).unwrap(),
    );

    // Further up, a quote that a later quoted field closes: the malformed record says which
    // lines it spans, and reading goes on after it.
    let mut text = csv(true, &data, "\n").replace("Lena4,", "\"Lena4,");
    text = text.replace("Lena8,O'Neil8", "\"Smith, J\",O'Neil8");
    dir.write("mid.csv", &text);
    let run = dir.run(&run_args("check", "c.toml", "mid.csv", "mid.jsonl", &[]));
    run.assert_exit(1);
    let ledger = run.ledger("mid.jsonl");
    let broken = &ledger[4];
    assert_eq!(broken["status"], "invalid");
    assert_eq!(broken["error"]["code"], "column_count");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(message.contains("spans lines 6-10"), "{message}");
    assert_eq!(ledger.last().unwrap()["key"], "CRM000019");
    run.assert_prints("spans lines 6-10");
}

/// UpdateProfile requests the emulator has answered 200.
fn updates(emulator: &EmulatorHandle) -> u64 {
    emulator.stats().operation("UpdateProfile").status(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_2_resume_refuses_a_ledger_of_another_command_config_or_input() {
    let n = 20;
    let emulator = seeded(n).await;
    let dir = customers_dir(n, "rate = 100");
    let refused = |out: &Run, says: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("cannot resume") && err.contains(says),
            "{says:?} in: {err}"
        );
    };

    // A check or plan ledger is not an apply ledger: nothing is sent.
    let check = dir.run(&run_args(
        "check",
        "c.toml",
        "in.csv",
        "check.jsonl",
        &["--quiet"],
    ));
    check.assert_exit(0);
    let out = dir.apply(&emulator, "check.jsonl", &["--resume"]).await;
    refused(&out, "it was written by `check`, and this run is `apply`");
    let out = dir.plan(&emulator, "plan.jsonl", &[]).await;
    out.assert_exit(0);
    let out = dir.apply(&emulator, "plan.jsonl", &["--resume"]).await;
    refused(&out, "it was written by `plan`, and this run is `apply`");
    // Nor is a check ledger one to re-drive failed records from.
    let out = dir
        .apply(&emulator, "r.jsonl", &["--retry-failed", "check.jsonl"])
        .await;
    out.assert_exit(2);
    out.assert_says("it is a `check` ledger, which has no failed records");
    assert!(!dir.path("r.jsonl").exists());
    assert_eq!(updates(&emulator), 0);

    // A ledger without a run file (older versions) is refused with a clear reason.
    std::fs::copy(dir.path("plan.jsonl"), dir.path("old.jsonl")).unwrap();
    let out = dir.plan(&emulator, "old.jsonl", &["--resume"]).await;
    refused(&out, "it has no run file");

    // Another input, or a changed config: refused; the same run resumes.
    let out = dir.apply(&emulator, "l.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(updates(&emulator), n as u64);
    dir.write("other.csv", customers(n));
    let mut args = APPLY.to_vec();
    args[3] = "other.csv";
    args.push("--resume");
    let out = run(&dir, &emulator, &args).await;
    refused(&out, "it was written for the input");
    out.assert_says("other.csv");
    dir.write("c2.toml", config("rate = 100", BY_ID));
    let out = sync(
        &dir,
        &emulator,
        "apply",
        "c2.toml",
        "l.jsonl",
        &["--resume"],
    )
    .await;
    refused(&out, "it was written for the config");
    dir.write("c.toml", config("rate = 100\nburst = 3", BY_ID));
    let out = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    refused(&out, "has changed since the ledger was written");
    assert_eq!(updates(&emulator), n as u64, "nothing was sent");
    dir.write("c.toml", config("rate = 100", BY_ID));
    let out = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    out.assert_exit(0);
    assert!(out.stdout().contains("20 more settled earlier"));
    let run_file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("l.jsonl.run.json")).unwrap())
            .unwrap();
    assert_eq!(run_file["command"], "apply");
    assert!(run_file["input"].as_str().unwrap().ends_with("in.csv"));
    assert_eq!(
        run_file["target"],
        "customer-profiles domain=ExampleDomainName region=us-east-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_3_a_second_run_on_a_ledger_in_use_exits_2_naming_the_holder() {
    let n = 60;
    let emulator = slow_emulator(n, 30).await;
    let dir = customers_dir(n, "rate = 50\nburst = 2\nconcurrency = 2");
    let first = command(&dir, &emulator, &APPLY).spawn();
    let holder = first.id();
    wait_for_entries(&dir.path("l.jsonl"), 3).await;
    let second = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(
        err.contains("in use by another profilesync run") && err.contains(&format!("pid {holder}")),
        "{err}"
    );
    let first = first.wait().await;
    first.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_every_record_once(&ledger, n as u64);
    assert_eq!(updates(&emulator), n as u64, "no record was sent twice");
    // Once the holder has ended, the ledger can be resumed (there is nothing left to send).
    let out = dir.apply(&emulator, "l.jsonl", &["--resume"]).await;
    out.assert_exit(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_4_every_complete_record_before_a_read_error_settles() {
    use std::io::Write;
    let n = 400;
    let emulator = slow_emulator(n, 2).await;
    let dir = Dir::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(customers(n).as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    dir.write("in.csv.gz", &gz[..gz.len() * 3 / 5]);
    dir.write(
        "c.toml",
        config("rate = 500\nburst = 10\nconcurrency = 4", BY_ID),
    );
    let check = dir.run(&run_args(
        "check",
        "c.toml",
        "in.csv.gz",
        "check.jsonl",
        &["--quiet"],
    ));
    check.assert_exit(3);
    let readable = check.ledger("check.jsonl").len();
    assert!(readable > 100 && readable < n as usize, "{readable}");

    let mut args = APPLY.to_vec();
    args[3] = "in.csv.gz";
    let out = run(&dir, &emulator, &args).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("reading the input failed")
            && err.contains(&format!("in the record starting at line {}", readable + 2)),
        "{err}"
    );
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(ledger.len(), readable, "every complete record settled");
    assert!(ledger.iter().all(|e| e["status"] == "updated"));
    assert_eq!(updates(&emulator), readable as u64);

    // A resume reads as far as the file allows again: nothing more to send, the same error.
    args.push("--resume");
    let out = run(&dir, &emulator, &args).await;
    out.assert_exit(3);
    out.assert_says("reading the input failed");
    assert_eq!(dir.ledger("l.jsonl").len(), readable);
    assert_eq!(
        updates(&emulator),
        readable as u64,
        "nothing was sent twice"
    );
}
