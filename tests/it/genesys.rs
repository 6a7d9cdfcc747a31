//! `plan` and `apply` for Genesys UCS, with reqwest against the emulator: read, merge, and
//! PUT the whole profile, so nothing unmapped is lost.

use profilesync::emulator::EmulatorConfig;
use serde_json::{Value, json};

use crate::support::{
    Dir, Run, assert_stopped_before_any_record, faults, genesys_profile as profile, repo, run_args,
    sample, sample_seed, start_emulator, statuses, stderr, sync_args, tally,
};

const FIELDS: &str = r#"FirstName = "first"
LastName = "last"
EmailAddress = { from = "emails", transform = [{ split = ";" }, "trim", "lowercase"] }
VIP = "vip"
"#;

/// A config for the emulator at `url`, with extra `[match]` lines and `[source]` lines.
fn config(url: &str, matching: &str, source: &str) -> String {
    format!(
        r#"[source]
key = "customer_id"
{source}

[target]
kind = "genesys-ucs"
base_url = "{url}"
tenant_id = 1

[match]
id = "customer_id"
{matching}

[limits]
rate = 100
concurrency = 4

[fields]
{FIELDS}"#
    )
}

const INPUT: &str = "customer_id,first,last,emails,vip\n\
                     G1,Ana,Lopez,ana@example.com; ana.l@example.net,Y\n\
                     G2,Bo,Same,bo@example.com,N\n\
                     G3,Cy,New,cy@example.com,N\n";

/// G1 differs (last name, e-mail list) and has an unmapped attribute and an extension;
/// G2 already holds what the input says; G3 does not exist.
fn seed() -> Value {
    json!({"genesys": {"tenant_id": 1, "profiles": {
        "G1": {"FirstName": "Ana", "LastName": "Lopes", "EmailAddress": ["ana@example.com"],
               "VIP": "Y", "Segment": "retail", "contacts": [{"phone": "+15550100"}]},
        "G2": {"FirstName": "Bo", "LastName": "Same", "EmailAddress": ["bo@example.com"], "VIP": "N"},
    }}})
}

/// Runs `profilesync ARGS` in `dir` with the Genesys preset and `env`.
async fn run(dir: &Dir, args: &[&str], env: &[(&str, &str)]) -> Run {
    dir.command(args).genesys(env).output().await
}

/// `COMMAND --config c.toml in.csv --ledger LEDGER --no-progress` with the Genesys preset.
async fn sync(dir: &Dir, command: &str, ledger: &str, env: &[(&str, &str)]) -> Run {
    run(dir, &sync_args(command, "c.toml", ledger, &[]), env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_merges_into_the_whole_profile_and_keeps_what_it_does_not_map() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed())).await;
    let dir = Dir::new();
    dir.write("in.csv", INPUT);
    dir.write("c.toml", config(&emulator.endpoint_url(), "", ""));

    let out = sync(&dir, "plan", "plan.jsonl", &[]).await;
    out.assert_exit(0);
    let plan = dir.ledger_by_record("plan.jsonl");
    assert_eq!(statuses(&plan), ["would_update", "unchanged", "not_found"]);
    assert_eq!(plan[0]["changed"], json!(["EmailAddress", "LastName"]));
    assert_eq!(emulator.stats().operation("GenesysPutProfile").requests, 0);

    let out = sync(&dir, "apply", "apply.jsonl", &[]).await;
    out.assert_exit(0);
    let apply = dir.ledger_by_record("apply.jsonl");
    assert_eq!(statuses(&apply), ["updated", "unchanged", "skipped"]);
    assert_eq!(apply[0]["target_id"], "G1");
    assert_eq!(apply[0]["attempts"], 2, "one GET, one PUT");
    assert_eq!(
        profile(&emulator, "G1"),
        json!({"FirstName": "Ana", "LastName": "Lopez",
               "EmailAddress": ["ana@example.com", "ana.l@example.net"], "VIP": "Y",
               "Segment": "retail", "contacts": [{"phone": "+15550100"}]}),
        "the unmapped attribute and the extension survive the PUT"
    );
    assert_eq!(
        emulator.stats().operation("GenesysPutProfile").requests,
        1,
        "unchanged profiles are not written"
    );
    assert!(emulator.state()["genesys"]["profiles"]["G3"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_profiles_are_created_when_asked_and_empty_cells_clear_when_asked() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed())).await;
    let dir = Dir::new();
    dir.write(
        "in.csv",
        "customer_id,first,last,emails,vip\nG1,Ana,Lopes,ana@example.com,\nG3,Cy,New,cy@example.com,\n",
    );
    dir.write(
        "c.toml",
        config(
            &emulator.endpoint_url(),
            "when_missing = \"create\"",
            "empty = \"clear\"",
        ),
    );
    let out = sync(&dir, "plan", "plan.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger_by_record("plan.jsonl")),
        ["would_update", "would_create"]
    );
    assert!(emulator.state()["genesys"]["profiles"]["G3"].is_null());

    let out = sync(&dir, "apply", "apply.jsonl", &[]).await;
    out.assert_exit(0);
    let apply = dir.ledger_by_record("apply.jsonl");
    assert_eq!(statuses(&apply), ["updated", "created"]);
    assert_eq!(apply[0]["changed"], json!(["VIP"]));
    assert_eq!(
        profile(&emulator, "G1"),
        json!({"FirstName": "Ana", "LastName": "Lopes", "EmailAddress": ["ana@example.com"],
               "Segment": "retail", "contacts": [{"phone": "+15550100"}]}),
        "the blank VIP cell removed the attribute"
    );
    assert_eq!(
        profile(&emulator, "G3"),
        json!({"FirstName": "Cy", "LastName": "New", "EmailAddress": ["cy@example.com"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_environment_and_failing_ones_stop_the_run() {
    let seeded = EmulatorConfig::default().with_seed(seed());
    let emulator = start_emulator(seeded.with_genesys_auth("sync", "s3cret")).await;
    let dir = Dir::new();
    dir.write("in.csv", INPUT);
    dir.write("c.toml", config(&emulator.endpoint_url(), "", ""));

    for (ledger, env) in [
        ("none.jsonl", vec![]),
        (
            "wrong.jsonl",
            vec![
                ("GENESYS_UCS_USERNAME", "sync"),
                ("GENESYS_UCS_PASSWORD", "guess"),
            ],
        ),
    ] {
        let out = sync(&dir, "apply", ledger, &env).await;
        assert_stopped_before_any_record(&out, 3, "GENESYS_UCS_USERNAME", &dir.path(ledger));
        assert!(!stderr(&out).contains("guess"), "no password in the logs");
    }

    let half = [("GENESYS_UCS_USERNAME", "sync")];
    let out = sync(&dir, "apply", "half.jsonl", &half).await;
    out.assert_exit(2);

    let env = [
        ("GENESYS_UCS_USERNAME", "sync"),
        ("GENESYS_UCS_PASSWORD", "s3cret"),
    ];
    let out = sync(&dir, "apply", "ok.jsonl", &env).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger_by_record("ok.jsonl")),
        ["updated", "unchanged", "skipped"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_wrong_for_every_record_stops_the_run() {
    // A wrong tenant: a configuration error, before the ledger exists.
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed())).await;
    let dir = Dir::new();
    dir.write("in.csv", INPUT);
    dir.write(
        "c.toml",
        config(&emulator.endpoint_url(), "", "").replace("tenant_id = 1", "tenant_id = 2"),
    );
    let out = sync(&dir, "apply", "tenant.jsonl", &[]).await;
    assert_stopped_before_any_record(&out, 2, "tenant_id", &dir.path("tenant.jsonl"));

    // A server without a profile schema refuses every write (403): the first one stops
    // the run instead of failing each record.
    let mut no_schema = seed();
    no_schema["genesys"]["schema"] = json!(false);
    let emulator = start_emulator(EmulatorConfig::default().with_seed(no_schema)).await;
    dir.write(
        "c.toml",
        config(&emulator.endpoint_url(), "", "").replace("concurrency = 4", "concurrency = 1"),
    );
    let out = sync(&dir, "apply", "schema.jsonl", &[]).await;
    out.assert_exit(3);
    out.assert_says("prior to the definition of a profile schema");
    let ledger = dir.ledger("schema.jsonl");
    assert!(ledger.iter().all(|e| e["status"] != "failed"), "{ledger:?}");
    assert_eq!(emulator.stats().operation("GenesysPutProfile").requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_path_is_a_configuration_error_not_missing_profiles() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(seed())).await;
    let dir = Dir::new();
    dir.write("in.csv", INPUT);
    let url = format!("{}/no/such/path", emulator.endpoint_url());
    dir.write("c.toml", config(&url, "", ""));
    let out = sync(&dir, "apply", "l.jsonl", &[]).await;
    assert_stopped_before_any_record(&out, 2, "is base_url right?", &dir.path("l.jsonl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_and_server_errors_are_retried_and_ids_are_encoded() {
    // 30 profiles, the last with an id that needs percent-encoding.
    let ids: Vec<String> = (1..30)
        .map(|i| format!("G{i}"))
        .chain(["G 30+x".to_owned()])
        .collect();
    let profiles: serde_json::Map<String, Value> = ids
        .iter()
        .map(|id| (id.clone(), json!({"FirstName": "Old", "Segment": "retail"})))
        .collect();
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(json!({"genesys": {"tenant_id": 1, "profiles": profiles}}))
            .with_quota("GenesysPutProfile", 20.0, 2)
            .with_faults(faults(0.1, 0.0, 3)),
    )
    .await;
    let dir = Dir::new();
    let mut csv = String::from("customer_id,first,last,emails,vip\n");
    for id in &ids {
        csv.push_str(&format!("{id},New,,,\n"));
    }
    dir.write("in.csv", csv);
    dir.write("c.toml", config(&emulator.endpoint_url(), "", ""));
    let out = sync(&dir, "apply", "l.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger_by_record("l.jsonl")),
        vec!["updated"; 30]
    );
    for id in &ids {
        assert_eq!(
            profile(&emulator, id),
            json!({"FirstName": "New", "Segment": "retail"}),
            "{id}"
        );
    }
    let stats = emulator.stats();
    let (gets, puts) = (
        stats.operation("GenesysGetProfile"),
        stats.operation("GenesysPutProfile"),
    );
    assert!(puts.status(429) > 0, "{puts:?}");
    assert!(gets.status(500) + puts.status(500) > 0, "{gets:?} {puts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_column_sets_the_primary_value_and_keeps_the_others() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(
        json!({"genesys": {"profiles": {
            "G1": {"PhoneNumber": ["+12065550100", "+12065550101"]},
            "G2": {"PhoneNumber": ["+12065550200", "+12065550201"]},
        }}}),
    ))
    .await;
    let dir = Dir::new();
    dir.write(
        "in.csv",
        "customer_id,phone\nG1,+12065550100\nG2,+12065550299\n",
    );
    let text = config(&emulator.endpoint_url(), "", "")
        .replace("tenant_id = 1\n", "")
        .replace(FIELDS, "PhoneNumber = \"phone\"\n");
    dir.write("c.toml", text);
    let out = sync(&dir, "apply", "l.jsonl", &[]).await;
    out.assert_exit(0);
    assert_eq!(
        statuses(&dir.ledger_by_record("l.jsonl")),
        ["unchanged", "updated"]
    );
    assert_eq!(
        profile(&emulator, "G2"),
        json!({"PhoneNumber": ["+12065550299", "+12065550201"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_genesys_sample_plans_as_documented_and_applies_without_loss() {
    // samples/README.md: 1 invalid, 29 unchanged, 21 would_update, 9 not_found.
    let emulator = start_emulator(EmulatorConfig::default().with_seed(sample_seed())).await;
    let dir = Dir::new();
    let text = std::fs::read_to_string(repo().join("config/genesys-ucs.toml")).unwrap();
    let text = text.replace(
        "base_url = \"http://127.0.0.1:8080\"",
        &format!("base_url = \"{}\"", emulator.endpoint_url()),
    );
    dir.write("c.toml", text);
    let input = sample("samples/genesys.csv");
    let mut args = run_args("plan", "c.toml", &input, "p.jsonl", &["--rate", "200"]);
    let out = run(&dir, &args, &[]).await;
    out.assert_exit_because(1, "the invalid row");
    let planned = ["invalid", "unchanged", "would_update", "not_found"];
    assert_eq!(tally(&dir.ledger("p.jsonl"), &planned), [1, 29, 21, 9]);

    // Applied, the differing profiles change, and the attributes the config does not map
    // (Segment, PreferredLanguage) survive the PUT.
    args[0] = "apply";
    args[5] = "a.jsonl";
    let out = run(&dir, &args, &[]).await;
    out.assert_exit(1);
    assert_eq!(
        emulator.stats().operation("GenesysPutProfile").status(200),
        21
    );
    let changed = profile(&emulator, "0002d173VRZN0002");
    assert_eq!(changed["LastName"], "Carter");
    assert_eq!(changed["Segment"], "retail");
    assert_eq!(changed["PreferredLanguage"], "es");
}
