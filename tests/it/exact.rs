//! Issue 20, "exact values, exact runs": one regression test per item, each against the
//! emulator where a target is involved. What reaches the target is what the export says, or
//! the run says why not.

use profilesync::emulator::EmulatorConfig;
use serde_json::json;

use crate::support::{
    Dir, Run, genesys_profile, pid, profiles_config, run_args, start_emulator, statuses,
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
