//! `profilesync check`: every broken input ends in the ledger with its reason and line, and
//! the exit code tells the truth.

use std::io::Write;

use serde_json::Value;

use crate::support::{
    Dir, Run, SyncChild, feed, pid, profiles_config, read_ledger, records, run_args, sample,
    statuses,
};

const FIELDS: &str = r#"FirstName = { from = "first", transform = ["trim", "nfc"] }
EmailAddress = { from = "email", transform = ["trim", "lowercase", "email"] }
PhoneNumber = { from = "phone", transform = ["e164"] }
BirthDate = { from = "dob", transform = [{ date = { from = "%m/%d/%Y", to = "%Y-%m-%d" } }] }
Gender = { from = "gender", transform = [{ map = { M = "MALE", F = "FEMALE" } }] }
"#;

fn check(dir: &Dir, input: &str) -> Run {
    dir.write("c.toml", profiles_config(FIELDS));
    dir.run(&run_args("check", "c.toml", input, "l.jsonl", &[]))
}

/// [`check`] of `input`, which must exit with `code`; the run and its ledger.
fn checked(dir: &Dir, input: &str, code: i32) -> (Run, Vec<Value>) {
    let run = check(dir, input);
    run.assert_exit(code);
    let ledger = run.ledger("l.jsonl");
    (run, ledger)
}

/// `check` reading standard input (the format comes from the config), into `s.jsonl`, with
/// `flags` (`--quiet` or logging).
fn check_stdin(dir: &Dir, flags: &[&str]) -> SyncChild {
    let config =
        profiles_config(FIELDS).replace("key = \"crm_id\"", "key = \"crm_id\"\nformat = \"csv\"");
    dir.write("stdin.toml", config);
    let mut args = vec![
        "check",
        "--config",
        "stdin.toml",
        "-",
        "--ledger",
        "s.jsonl",
    ];
    args.extend(flags);
    dir.command(&args).stdin_piped().spawn_sync()
}

#[test]
fn clean_csv_is_valid_and_exits_0() {
    let dir = Dir::new();
    let csv = format!(
        "\u{feff}crm_id,profile_id,first,email,phone,dob,gender\r\n\
         C1,{},Jose\u{301},  Ana@Example.COM ,(206) 555-0147,07/12/1980,M\r\n\
         C2,{},\"Lopez, Ana\",b@example.com,,,\r\n",
        pid(1),
        pid(2)
    );
    dir.write("in.csv", csv);
    let (run, ledger) = checked(&dir, "in.csv", 0);
    assert_eq!(statuses(&ledger), ["valid", "valid"]);
    assert_eq!(ledger[0]["record"], 1);
    assert_eq!(ledger[0]["line"], 2);
    assert_eq!(ledger[0]["key"], "C1");
    assert_eq!(ledger[0]["target_id"], pid(1));
    run.assert_prints("valid");
    assert!(run.stdout().contains("ledger: l.jsonl"));
}

#[test]
fn each_broken_csv_case_is_invalid_with_line_and_reason() {
    let dir = Dir::new();
    let mut csv = b"crm_id,profile_id,first,email,phone,dob,gender\n".to_vec();
    csv.extend(
        format!(
            "C1,{},Ana,a@example.com,206-555-0147,07/12/1980,F\n",
            pid(1)
        )
        .as_bytes(),
    );
    // 2: one column short.
    csv.extend(format!("C2,{},Ana,a@example.com,206-555-0147,07/12/1980\n", pid(2)).as_bytes());
    // 3: invalid UTF-8 (Latin-1 é) in the first name.
    csv.extend(format!("C3,{},", pid(3)).as_bytes());
    csv.extend(b"Jos\xE9,a@example.com,,,\n");
    // 4: a quoted field with a newline and a comma, then a phone that is not a number.
    csv.extend(format!("C4,{},\"Ana,\nMaria\",a@example.com,555-01,,\n", pid(4)).as_bytes());
    // 6: a field over the size limit.
    csv.extend(format!("C5,{},{},a@example.com,,,\n", pid(5), "x".repeat(70_000)).as_bytes());
    // 7: several problems at once.
    csv.extend(b"C6,NOT-A-PROFILE-ID,Ana,no-at-sign,,02/30/1985,X\n");
    // 8: empty key.
    csv.extend(format!(",{},Ana,,,,\n", pid(7)).as_bytes());
    dir.write("in.csv", &csv);
    let (_, ledger) = checked(&dir, "in.csv", 1);
    assert_eq!(
        statuses(&ledger),
        [
            "valid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid"
        ]
    );
    let lines: Vec<u64> = ledger.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 3, 4, 5, 7, 8, 9]);
    let code = |i: usize| ledger[i]["error"]["code"].as_str().unwrap().to_owned();
    let message = |i: usize| ledger[i]["error"]["message"].as_str().unwrap().to_owned();
    assert_eq!(code(1), "column_count");
    assert_eq!(
        message(1),
        "in.csv:3: record 2 has 6 fields, the header has 7"
    );
    assert_eq!(code(2), "invalid_utf8");
    assert!(
        message(2).contains("field 3 is not valid UTF-8"),
        "{}",
        message(2)
    );
    assert_eq!(code(3), "invalid_record");
    assert_eq!(
        message(3),
        "in.csv:5: PhoneNumber (column phone): not a valid phone number (default region US)"
    );
    assert_eq!(code(4), "too_large");
    let rules: Vec<(&str, &str)> = ledger[5]["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["field"].as_str().unwrap(), p["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        [
            ("BirthDate", "date"),
            ("EmailAddress", "email"),
            ("[match] id (ProfileId)", "pattern"),
            ("Gender", "enum"),
        ]
    );
    assert_eq!(ledger[6]["error"]["problems"][0]["rule"], "required");
    // Values never reach the ledger.
    let text = std::fs::read_to_string(dir.path("l.jsonl")).unwrap();
    for value in ["no-at-sign", "555-01", "02/30/1985", "Jos"] {
        assert!(!text.contains(value), "the ledger leaks {value}");
    }
}

#[test]
fn broken_jsonl_lines_are_invalid_and_the_run_goes_on() {
    let dir = Dir::new();
    let jsonl = format!(
        "{{\"crm_id\":\"J1\",\"profile_id\":\"{}\",\"first\":\"Ana\",\"phone\":null}}\n\
         \n\
         {{\"crm_id\":\"J2\",\"profile_id\":\"{}\",\"first\":\n\
         [1,2]\n\
         {{\"crm_id\":\"J4\",\"profile_id\":\"{}\",\"first\":{{\"x\":1}}}}\n\
         {{\"crm_id\":\"J5\",\"profile_id\":\"{}\",\"first\":\"Ana\",\"email\":\"\"}}\n",
        pid(1),
        pid(2),
        pid(4),
        pid(5)
    );
    dir.write("in.jsonl", jsonl);
    let (_, ledger) = checked(&dir, "in.jsonl", 1);
    assert_eq!(
        statuses(&ledger),
        ["valid", "invalid", "invalid", "invalid", "valid"]
    );
    assert_eq!(ledger[1]["line"], 3);
    assert_eq!(ledger[1]["error"]["code"], "invalid_json");
    assert_eq!(
        ledger[2]["error"]["message"],
        "in.jsonl:4: record 3 the line is JSON but not an object"
    );
    assert_eq!(ledger[3]["error"]["problems"][0]["rule"], "type");
    assert_eq!(ledger[3]["key"], "J4");
}

#[test]
fn gzip_and_stdin_inputs() {
    let dir = Dir::new();
    let csv = format!(
        "crm_id,profile_id,first,email,phone,dob,gender\nC1,{},Ana,,,,\n",
        pid(1)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    dir.write("in.csv.gz", gz.finish().unwrap());
    let run = check(&dir, "in.csv.gz");
    run.assert_exit(0);
    assert_eq!(statuses(&run.ledger("l.jsonl")), ["valid"]);

    // Standard input needs the format from the config.
    let mut child = check_stdin(&dir, &["--quiet"]);
    child.stdin().write_all(csv.as_bytes()).unwrap();
    child.wait().assert_exit(0);
    assert_eq!(statuses(&dir.ledger("s.jsonl")), ["valid"]);
}

#[test]
fn delimiters_ndjson_and_extra_columns() {
    let dir = Dir::new();
    // A semicolon export whose third record has one column too many.
    dir.write(
        "in.csv",
        format!(
            "crm_id;profile_id;first;email;phone;dob;gender\n\
             C1;{};Ana, Maria;;;;\n\
             C2;{};Bo;;;;\n\
             C3;{};Cy;;;;;extra\n",
            pid(1),
            pid(2),
            pid(3)
        ),
    );
    dir.write(
        "c.toml",
        profiles_config(FIELDS).replace("key = \"crm_id\"", "key = \"crm_id\"\ndelimiter = \";\""),
    );
    let run = dir.run(&[
        "check", "--config", "c.toml", "in.csv", "--ledger", "l.jsonl",
    ]);
    run.assert_exit(1);
    let ledger = run.ledger("l.jsonl");
    assert_eq!(statuses(&ledger), ["valid", "valid", "invalid"]);
    assert_eq!(ledger[2]["error"]["code"], "column_count");
    assert_eq!(
        ledger[2]["error"]["message"],
        "in.csv:4: record 3 has 8 fields, the header has 7"
    );

    // `.ndjson` is read as JSON Lines.
    dir.write(
        "in.ndjson",
        format!(
            "{{\"crm_id\":\"J1\",\"profile_id\":\"{}\",\"first\":\"Ana\"}}\n",
            pid(1)
        ),
    );
    std::fs::remove_file(dir.path("l.jsonl")).unwrap();
    let run = check(&dir, "in.ndjson");
    // The config reads paths (`email`, `phone`, ...) that no record has: a warning, exit 1.
    run.assert_exit(1).assert_says("has the path `email`");
    assert_eq!(statuses(&run.ledger("l.jsonl")), ["valid"]);
}

#[test]
fn config_errors_exit_2_and_name_file_line_and_expected() {
    let dir = Dir::new();
    dir.write("in.csv", "crm_id,profile_id\n");
    dir.write("bad.toml", profiles_config("Firstname = \"first\"\nEmailAddress = { from = \"email\", transform = [\"trim\", \"lowercse\"] }\n"));
    let run = dir.run(&[
        "check", "--config", "bad.toml", "in.csv", "--ledger", "l.jsonl",
    ]);
    assert_eq!(run.code(), 2);
    let err = run.stderr();
    assert!(err.contains("bad.toml:12: unknown target field"), "{err}");
    assert!(err.contains("expected one of: AccountNumber"), "{err}");
    assert!(
        err.contains("bad.toml:13:") && err.contains("unknown transform `lowercse`"),
        "{err}"
    );
    assert!(
        !dir.path("l.jsonl").exists(),
        "nothing is processed on a config error"
    );

    // A column the input does not have is also a configuration error.
    dir.write("c.toml", profiles_config("FirstName = \"first\""));
    let run = dir.run(&[
        "check", "--config", "c.toml", "in.csv", "--ledger", "l.jsonl",
    ]);
    assert_eq!(run.code(), 2);
    run.assert_says("does not have: first");

    let run = dir.run(&["check", "--config", "c.toml", "missing.csv"]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("cannot open `missing.csv`"));
}

/// Issue 19: `{ default = "{first}" }` would send the braces; it is a config error that
/// points to `template` and `from = [...]`, before any record is read.
#[test]
fn a_constant_naming_a_column_is_a_config_error_pointing_to_template() {
    let dir = Dir::new();
    dir.write("in.csv", "crm_id,profile_id,first,nick\nC1,,Ana,\n");
    dir.write(
        "c.toml",
        profiles_config(
            "FirstName = { from = \"nick\", transform = [{ default = \"{first}\" }] }\n\
             \"Attributes.Greeting\" = { value = \"Dear {first}\" }\n",
        ),
    );
    let run = dir.run(&[
        "check", "--config", "c.toml", "in.csv", "--ledger", "l.jsonl",
    ]);
    assert_eq!(run.code(), 2);
    let err = run.stderr();
    for (line, key) in [(12, "default"), (13, "value")] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("c.toml:{line}:"))
                    && l.contains(&format!("`{key}` is sent as written"))),
            "{key}: {err}"
        );
    }
    assert!(err.contains("template = \"...{first}...\""), "{err}");
    assert!(!dir.path("l.jsonl").exists());
}

#[test]
fn bundled_samples_check_as_documented() {
    // samples/README.md lists the deliberately broken records of each file.
    let cases: [(&str, &str, &[u64]); 5] = [
        (
            "config/customer-profiles.toml",
            "samples/customers.csv",
            &[17, 46, 83, 121, 158, 199, 236, 274],
        ),
        (
            "config/customer-profiles-jsonl.toml",
            "samples/customers.jsonl",
            &[17, 46, 83, 121, 158, 199, 236, 274],
        ),
        (
            "config/connect-user.toml",
            "samples/agents.csv",
            &[7, 22, 35],
        ),
        ("config/genesys-ucs.toml", "samples/genesys.csv", &[41]),
        (
            "config/customer-profiles.toml",
            "samples/customers.csv",
            &[17, 46, 83, 121, 158, 199, 236, 274],
        ),
    ];
    for (config, input, invalid) in cases {
        let dir = Dir::new();
        let (config_path, input_path) = (sample(config), sample(input));
        let run = dir.run(&run_args(
            "check",
            &config_path,
            &input_path,
            "l.jsonl",
            &["--quiet"],
        ));
        assert_eq!(run.code(), 1, "{config}: {}", run.stderr());
        let ledger = run.ledger("l.jsonl");
        let got: Vec<u64> = ledger
            .iter()
            .filter(|e| e["status"] == "invalid")
            .map(|e| e["record"].as_u64().unwrap())
            .collect();
        assert_eq!(got, invalid, "{config} on {input}");
        let in_order: Vec<u64> = ledger
            .iter()
            .map(|e| e["record"].as_u64().unwrap())
            .collect();
        assert_eq!(in_order, records(&ledger), "in order");
        assert_eq!(
            in_order,
            (1..=ledger.len() as u64).collect::<Vec<_>>(),
            "every record, in order"
        );
    }
}

#[test]
fn default_ledger_goes_under_ledgers() {
    let dir = Dir::new();
    dir.write(
        "in.csv",
        format!(
            "crm_id,profile_id,first,email,phone,dob,gender\nC1,{},Ana,,,,\n",
            pid(1)
        ),
    );
    let run = check_default_ledger(&dir);
    run.assert_exit(0);
    let path = run.printed("ledger: ");
    assert!(
        path.starts_with("ledgers/") && path.ends_with("-check.jsonl"),
        "{path}"
    );
    assert_eq!(run.ledger(&path).len(), 1);
}

fn check_default_ledger(dir: &Dir) -> Run {
    dir.write("c.toml", profiles_config(FIELDS));
    dir.run(&["check", "--config", "c.toml", "in.csv", "--no-progress"])
}

#[test]
fn skeleton_prints_a_config_per_target() {
    let dir = Dir::new();
    for target in ["customer-profiles", "connect-user", "genesys-ucs"] {
        let run = dir.run(&["skeleton", target]);
        assert_eq!(run.code(), 0);
        assert!(run.stdout().contains(&format!("kind = \"{target}\"")));
    }
    let run = dir.run(&["skeleton", "customer-profiles"]);
    assert!(run.stdout().contains("# \"BillingAddress.PostalCode\""));
    assert_eq!(dir.run(&["skeleton", "zendesk"]).code(), 2);
    assert_eq!(dir.run(&["frobnicate"]).code(), 2);
}

#[test]
fn an_oversized_jsonl_line_is_invalid_and_reading_resumes_after_it() {
    let dir = Dir::new();
    let huge = "x".repeat(1_100_000);
    let jsonl = format!(
        "{{\"crm_id\":\"J1\",\"profile_id\":\"{}\",\"first\":\"{huge}\"}}\n\
         {{\"crm_id\":\"J2\",\"profile_id\":\"{}\",\"first\":\"Ana\"}}\n",
        pid(1),
        pid(2)
    );
    dir.write("in.jsonl", jsonl);
    let (_, ledger) = checked(&dir, "in.jsonl", 1);
    assert_eq!(statuses(&ledger), ["invalid", "valid"]);
    assert_eq!(ledger[0]["error"]["code"], "too_large");
    assert_eq!(
        (ledger[1]["line"].as_u64(), ledger[1]["key"].as_str()),
        (Some(2), Some("J2"))
    );
}

#[test]
fn an_unclosed_quote_stops_the_run_instead_of_reading_the_file_into_memory() {
    let dir = Dir::new();
    let mut csv = format!(
        "crm_id,profile_id,first,email,phone,dob,gender\nC1,{},Ana,,,,\n",
        pid(1)
    );
    csv.push_str(&format!("C2,{},\"Ana,,,,\n", pid(2)));
    let row = format!("C3,{},Ana,,,,\n", pid(3));
    while csv.len() < 20 * 1024 * 1024 {
        csv.push_str(&row);
    }
    dir.write("in.csv", csv);
    let run = check(&dir, "in.csv");
    run.assert_exit(3);
    run.assert_says("line 3 is over 16 MiB: an unclosed quote?");
    assert_eq!(statuses(&run.ledger("l.jsonl")), ["valid"]);
}

#[test]
fn bad_concurrency_is_a_usage_error() {
    let dir = Dir::new();
    let run = dir.run(&["apply", "--config", "c.toml", "--concurrency", "100000"]);
    assert_eq!(run.code(), 2);
    // The usage error itself, not the missing config (which exits 2 too).
    assert!(
        run.stderr()
            .contains("invalid value '100000' for '--concurrency <CONCURRENCY>'")
            && run.stderr().contains("not in 1..=1024"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("c.toml"), "{}", run.stderr());
}

#[test]
fn ctrl_c_stops_check_with_exit_3_and_keeps_what_was_read() {
    let dir = Dir::new();
    let mut child = check_stdin(&dir, &["--quiet"]);
    let mut stdin = child.stdin();
    assert!(feed(
        &mut stdin,
        "crm_id,profile_id,first,email,phone,dob,gender\n"
    ));
    for i in 1..=3 {
        assert!(feed(&mut stdin, &format!("C{i},{},Ana,,,,\n", pid(i))));
    }
    // The ledger exists once the header is read; the Ctrl-C handler comes right after it.
    for _ in 0..200 {
        if dir.path("s.jsonl").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.signal("-INT");
    // The reader notices the signal when the next record comes: keep them coming, slowly,
    // until the process has stopped.
    for i in 4..100 {
        if child.has_ended() || !feed(&mut stdin, &format!("C{i},{},Ana,,,,\n", pid(i))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(stdin);
    let out = child.wait();
    out.assert_exit(3).assert_says("interrupted");
    let ledger = read_ledger(&dir.path("s.jsonl"));
    let keys: Vec<&str> = ledger.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert!(keys.len() >= 3 && keys.len() < 99, "{keys:?}");
    assert_eq!(keys[..3], ["C1", "C2", "C3"]);
    assert!(statuses(&ledger).iter().all(|s| *s == "valid"));
}

/// A `check` without a terminal logs its progress at `-v` too, like `plan` and `apply`: here
/// the input comes slowly, and the records that settle after 10 s bring one line.
#[test]
fn without_a_terminal_v_check_logs_its_progress() {
    let dir = Dir::new();
    let mut child = check_stdin(&dir, &["-v", "--log-format", "json"]);
    let mut stdin = child.stdin();
    assert!(feed(
        &mut stdin,
        "crm_id,profile_id,first,email,phone,dob,gender\n"
    ));
    for i in 1..=5 {
        assert!(feed(
            &mut stdin,
            &format!("C{i},{},Ana,not-an-email,,,\n", pid(i))
        ));
    }
    std::thread::sleep(std::time::Duration::from_millis(10_500));
    for i in 6..=10 {
        assert!(feed(&mut stdin, &format!("C{i},{},Ana,,,,\n", pid(i))));
    }
    drop(stdin);
    let out = child.wait();
    out.assert_exit(1);
    let err = out.stderr();
    let lines = out.progress_lines();
    assert_eq!(lines.len(), 1, "one line after 10 s: {err}");
    assert_eq!(lines[0]["settled"], 10, "{err}");
    assert_eq!(lines[0]["statuses"], "5 invalid", "{err}");
}
