//! Issue 20, "exact values, exact runs": one regression test per item, each against the
//! emulator where a target is involved. What reaches the target is what the export says, or
//! the run says why not.

use profilesync::emulator::EmulatorConfig;
use serde_json::json;

use crate::support::{
    Dir, Run, assert_has, customers_dir, genesys_profile, pid, profiles_config, run_args, seeded,
    start_emulator, statuses, sync,
};

/// Item 6: a header that repeats a column a mapping uses is a config error naming both
/// columns; one that repeats a column no mapping uses is not.
#[test]
fn a_repeated_header_name_a_mapping_uses_is_a_config_error() {
    let dir = Dir::new();
    dir.write(
        "c.toml",
        profiles_config("EmailAddress = \"email\"\nFirstName = \"first\""),
    );
    dir.write(
        "in.csv",
        format!(
            "crm_id,profile_id,email,first,email,note,note\nC1,{},a@example.com,Ana,b@example.com,x,y\n",
            pid(1)
        ),
    );
    dir.run(&run_args("check", "c.toml", "in.csv", "l.jsonl", &[]))
        .assert_exit(2)
        .assert_says("`email` is columns 3 and 5");
    assert!(!dir.path("l.jsonl").exists(), "nothing was processed");

    dir.write(
        "ok.csv",
        format!(
            "crm_id,profile_id,email,first,note,note\nC1,{},a@example.com,Ana,x,y\n",
            pid(1)
        ),
    );
    dir.run(&run_args("check", "c.toml", "ok.csv", "ok.jsonl", &[]))
        .assert_exit(0);
}

/// A Genesys config at `url` reading `in.jsonl`, matching by `customer_id`, with `fields`.
fn genesys_config(url: &str, fields: &str) -> String {
    format!(
        "[source]\nkey = \"customer_id\"\n\n[target]\nkind = \"genesys-ucs\"\nbase_url = \
         \"{url}\"\ntenant_id = 1\n\n[match]\nid = \"customer_id\"\n\n[limits]\nrate = 100\n\
         concurrency = 4\n\n[fields]\n{fields}\n"
    )
}

/// `COMMAND --config c.toml in.jsonl --ledger LEDGER --no-progress EXTRA` against Genesys.
async fn genesys(dir: &Dir, command: &str, ledger: &str, extra: &[&str]) -> Run {
    dir.command(&run_args(command, "c.toml", "in.jsonl", ledger, extra))
        .genesys(&[])
        .output()
        .await
}

/// Item 4: `x` then `["x"]` are two payloads. The state used to hash them alike, so the second
/// night was `unchanged` (basis state) while `--full` would write the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_and_a_one_element_list_are_different_payloads_for_the_state() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(json!({"genesys": {
        "tenant_id": 1,
        "profiles": {"G1": {"EmailAddress": ["old@x.com", "other@x.com"]}},
    }})))
    .await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        genesys_config(&emulator.endpoint_url(), "EmailAddress = \"email\""),
    );
    dir.write(
        "in.jsonl",
        "{\"customer_id\":\"G1\",\"email\":\"new@x.com\"}\n",
    );
    genesys(&dir, "apply", "1.jsonl", &[]).await.assert_exit(0);
    assert_eq!(statuses(&dir.ledger("1.jsonl")), ["updated"]);
    assert_eq!(
        genesys_profile(&emulator, "G1")["EmailAddress"],
        json!(["new@x.com", "other@x.com"]),
        "one value sets the primary and keeps the others"
    );

    dir.write(
        "in.jsonl",
        "{\"customer_id\":\"G1\",\"email\":[\"new@x.com\"]}\n",
    );
    genesys(&dir, "apply", "2.jsonl", &[]).await.assert_exit(0);
    let night = dir.ledger("2.jsonl");
    assert_eq!(statuses(&night), ["updated"], "{night:?}");
    assert_eq!(
        genesys_profile(&emulator, "G1")["EmailAddress"],
        json!(["new@x.com"]),
        "a list replaces the list"
    );
}

/// Item 2: JSONL numbers reach the target as their text, booleans as `true`/`false`, and a
/// number the full-overwrite GET returns unmapped is PUT back as written (it went through
/// f64: `9.876543210987654e+19`, `1000.0`, `-0.0`, `1.2345678901234567e+20`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_numbers_and_unmapped_numbers_keep_their_exact_text() {
    let seed: serde_json::Value = serde_json::from_str(
        r#"{"genesys": {"tenant_id": 1, "profiles": {"G1": {"Big": 123456789012345678901, "Small": 1.50}}}}"#,
    )
    .expect("the seed");
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    let dir = Dir::new();
    let fields = "Account = \"acct\"\nThousand = \"e\"\nZero = \"z\"\nRatio = \"f\"\nVIP = \"b\"";
    dir.write("c.toml", genesys_config(&emulator.endpoint_url(), fields));
    dir.write(
        "in.jsonl",
        "{\"customer_id\":\"G1\",\"acct\":98765432109876543210,\"e\":1E3,\"z\":-0,\
         \"f\":0.12345678901234567890,\"b\":true}\n",
    );
    genesys(&dir, "apply", "l.jsonl", &[]).await.assert_exit(0);
    assert_eq!(statuses(&dir.ledger("l.jsonl")), ["updated"]);
    let profile = genesys_profile(&emulator, "G1");
    let text = |name: &str| profile[name].to_string();
    assert_eq!(profile["Account"], "98765432109876543210");
    // serde_json writes an exponent in one form (`e`, with its sign): the number, not f64's.
    assert_eq!(profile["Thousand"], "1e+3");
    assert_eq!(profile["Zero"], "-0");
    assert_eq!(profile["Ratio"], "0.12345678901234567890");
    assert_eq!(profile["VIP"], "true");
    assert_eq!(text("Big"), "123456789012345678901", "{profile}");
    assert_eq!(text("Small"), "1.50", "{profile}");
}

/// Item 3: a configured JSONL path that no record has is a warning on standard error and in
/// `--summary-json`, and the run exits 1; a flat key that holds dots is read as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonl_path_no_record_has_is_a_warning_and_exit_1() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(json!({"genesys": {
        "tenant_id": 1,
        "profiles": {"G1": {"FirstName": "Old"}, "G2": {"FirstName": "Old"}},
    }})))
    .await;
    let dir = Dir::new();
    let fields = "FirstName = \"name.first\"\nEmailAddress = \"contact.email\"\nVIP = \"vip\"";
    dir.write("c.toml", genesys_config(&emulator.endpoint_url(), fields));
    // `contact.email` is a flat key in one record and a nested path in the other; `vip`,
    // misspelt `VIP` in the export, is in neither.
    dir.write(
        "in.jsonl",
        "{\"customer_id\":\"G1\",\"name\":{\"first\":\"Ana\"},\"contact.email\":\"a@x.com\",\"VIP\":\"Y\"}\n\
         {\"customer_id\":\"G2\",\"name\":{\"first\":\"Bo\"},\"contact\":{\"email\":\"b@x.com\"},\"VIP\":\"N\"}\n",
    );
    let run = genesys(&dir, "apply", "l.jsonl", &["--summary-json", "s.json"]).await;
    run.assert_exit(1)
        .assert_says("has the path `vip` the config reads");
    assert!(
        !run.stderr().contains("`contact.email`"),
        "{}",
        run.stderr()
    );
    assert_eq!(statuses(&dir.ledger("l.jsonl")), ["updated", "updated"]);
    assert_eq!(
        genesys_profile(&emulator, "G1"),
        json!({"FirstName": "Ana", "EmailAddress": "a@x.com"})
    );
    assert_eq!(
        genesys_profile(&emulator, "G2"),
        json!({"FirstName": "Bo", "EmailAddress": "b@x.com"})
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("s.json")).expect("summary"))
            .expect("JSON");
    assert_eq!(summary["exit_code"], 1);
    let warnings = summary["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_has(&warnings[0], "`vip`");

    // `check` says the same.
    dir.command(&run_args("check", "c.toml", "in.jsonl", "c.jsonl", &[]))
        .output_sync()
        .assert_exit(1)
        .assert_says("`vip`");
}

/// Item 5: `--resume` refuses (exit 2) an input that changed since the run it continues,
/// naming what changed; the same input resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_an_input_that_changed_naming_what_changed() {
    let emulator = seeded(3).await;
    let dir = customers_dir(3, "rate = 100");
    let input = dir.path("in.csv");
    sync(&dir, &emulator, "apply", "c.toml", "l.jsonl", &[])
        .await
        .assert_exit(0);
    let original = std::fs::read(&input).expect("the input");
    let modified = std::fs::metadata(&input)
        .and_then(|m| m.modified())
        .expect("mtime");
    let resume = ["--resume"];

    // Tonight's export: same size, same modification time, another customer in it.
    let tonight = String::from_utf8(original.clone())
        .expect("UTF-8")
        .replace("First2", "Other2");
    std::fs::write(&input, &tonight).expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(&input)
        .expect("open");
    file.set_modified(modified).expect("set mtime");
    drop(file);
    sync(&dir, &emulator, "apply", "c.toml", "l.jsonl", &resume)
        .await
        .assert_exit(2)
        .assert_says("has changed since the ledger was written: the content of its first MiB");

    // A longer export, written now.
    std::fs::write(
        &input,
        format!("{tonight}C4,{},Dee,Town,Gold,d@x.com\n", pid(4)),
    )
    .expect("write");
    let run = sync(&dir, &emulator, "apply", "c.toml", "l.jsonl", &resume).await;
    run.assert_exit(2).assert_says("its size (was ");
    assert!(
        run.stderr().contains("its modification time"),
        "{}",
        run.stderr()
    );

    // The same file as the run's resumes.
    std::fs::write(&input, &original).expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(&input)
        .expect("open");
    file.set_modified(modified).expect("set mtime");
    drop(file);
    sync(&dir, &emulator, "apply", "c.toml", "l.jsonl", &resume)
        .await
        .assert_exit(0);
}

/// Item 7: a mapped attribute named like a declared extension (in any case) is a config
/// error; a retried POST that meets 409 for the record's own customer_id, created by its
/// first attempt whose answer was lost, counts as created (read back and compared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesys_extensions_are_not_overwritten_and_a_409_after_a_retried_post_is_created() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(json!({"genesys": {
        "tenant_id": 1, "duplicate_status": 409, "lost_creates": 1,
        "profiles": {"G1": {"FirstName": "Ana", "contacts": [{"phone": "+15550100"}]}},
    }})))
    .await;
    let dir = Dir::new();
    let url = emulator.endpoint_url();
    let declared = |fields: &str| {
        genesys_config(&url, fields).replace(
            "tenant_id = 1\n",
            "tenant_id = 1\nextensions = [\"contacts\"]\n",
        )
    };
    dir.write(
        "c.toml",
        declared("FirstName = \"first\"\nContacts = \"phone\""),
    );
    dir.write(
        "in.jsonl",
        "{\"customer_id\":\"G1\",\"first\":\"Ana\",\"phone\":\"+15550199\"}\n",
    );
    let run = genesys(&dir, "apply", "x.jsonl", &[]).await;
    run.assert_exit(2)
        .assert_says("declared extension `contacts`");
    assert_eq!(emulator.stats().operation("GenesysPutProfile").requests, 0);

    // The retried POST meets the profile its lost first attempt created: created.
    dir.write(
        "c.toml",
        declared("FirstName = \"first\"").replace(
            "id = \"customer_id\"\n",
            "id = \"customer_id\"\nwhen_missing = \"create\"\n",
        ),
    );
    dir.write("in.jsonl", "{\"customer_id\":\"G2\",\"first\":\"Bo\"}\n");
    genesys(&dir, "apply", "l.jsonl", &[]).await.assert_exit(0);
    let ledger = dir.ledger("l.jsonl");
    assert_eq!(statuses(&ledger), ["created"], "{ledger:?}");
    assert_eq!(
        emulator.stats().operation("GenesysCreateProfile").requests,
        2,
        "the lost answer and the retry's 409"
    );
    assert_eq!(genesys_profile(&emulator, "G2"), json!({"FirstName": "Bo"}));
    assert_eq!(
        genesys_profile(&emulator, "G1")["contacts"],
        json!([{"phone": "+15550100"}])
    );
}

/// Item 8: a member cleared by leaving it out of `IdentityInfo` is read back, and a service
/// that kept it (the emulator's `merge` behaviour) makes the record `failed`
/// (`clear_not_applied`), not `updated`; a user found by Username whose DescribeUser names
/// someone else (renamed since ListUsers) is `failed` and never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_clears_are_read_back_and_a_renamed_user_is_never_written() {
    let emulator = start_emulator(EmulatorConfig::default().without_quotas().with_seed(
        json!({"instances": {"i-1": {
            "identity_update": "merge",
            "listed_usernames": {"u2": "agent2"},
            "users": {
                "u1": {"Username": "agent1", "IdentityInfo": {
                    "FirstName": "Ann", "LastName": "Old", "Mobile": "+12062340147"}},
                "u2": {"Username": "someone-else", "IdentityInfo": {
                    "FirstName": "Bo", "LastName": "Old"}},
            },
        }}}),
    ))
    .await;
    let dir = Dir::new();
    dir.write(
        "c.toml",
        "[source]\nkey = \"row\"\n\n[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\n\
         [match]\nsearch_key = \"Username\"\nsearch_column = \"username\"\n\n[limits]\n\
         rate = 200\nconcurrency = 2\n\n[fields]\nLastName = \"last\"\n\
         Mobile = { from = \"mobile\", empty = \"clear\" }\n",
    );
    dir.write(
        "in.csv",
        "row,username,last,mobile\nr1,agent1,Old,\nr2,agent2,New,\n",
    );
    let run = dir
        .command(&run_args("apply", "c.toml", "in.csv", "l.jsonl", &[]))
        .connect(&emulator)
        .output()
        .await;
    run.assert_exit(1);
    let ledger = crate::support::by_record(&dir.ledger("l.jsonl"));
    assert_eq!(statuses(&ledger), ["failed", "failed"], "{ledger:?}");
    assert_eq!(ledger[0]["error"]["code"], "clear_not_applied");
    assert_has(&ledger[0]["error"]["message"], "Mobile");
    assert_eq!(ledger[1]["error"]["code"], "username_mismatch");
    let users = &emulator.state()["instances"]["i-1"]["users"];
    assert_eq!(users["u1"]["IdentityInfo"]["Mobile"], "+12062340147");
    assert_eq!(
        users["u2"]["IdentityInfo"],
        json!({"FirstName": "Bo", "LastName": "Old"}),
        "another user is never written"
    );
    assert_eq!(
        emulator
            .stats()
            .operation("UpdateUserIdentityInfo")
            .requests,
        1
    );
}
