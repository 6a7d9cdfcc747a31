//! No credential and no field value ever leaves a run: every failure path we can reach
//! against the emulator runs with `-vv` (and `--log-format json`) and distinctive
//! credentials and values, and stdout, stderr (the logs), the ledger, its run file, the diff
//! report and the `--summary-json` file are searched for them. The debug logs must hold the
//! per-request lines, so that a silent run cannot pass.

use std::path::Path;

use base64::Engine;
use profilesync::emulator::{EmulatorConfig, EmulatorHandle};
use serde_json::{Map, Value, json};

use crate::support::{
    CONNECT_ENDPOINT, Dir, PROFILES_ENDPOINT, Run, TestCommand, assert_has, faults, pid,
    start_emulator,
};

const ACCESS_KEY: &str = "AKIDCANARY7Q3ZLEAK";
const SECRET_KEY: &str = "secret-canary-9f8e7d6c5b4a";
const SESSION_TOKEN: &str = "session-canary-1a2b3c4d";
const UCS_USER: &str = "ucs-canary-user";
const UCS_PASSWORD: &str = "ucs-canary-pass-66";

/// Every string that must never appear (compared case-insensitively): the credentials,
/// the Basic-auth header value they make, and the input's and the seed's values.
fn forbidden() -> Vec<String> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{UCS_USER}:{UCS_PASSWORD}"));
    let mut all: Vec<String> = [
        ACCESS_KEY,
        SECRET_KEY,
        SESSION_TOKEN,
        UCS_USER,
        UCS_PASSWORD,
        // Names, e-mails and phones of the input (raw and as E.164), and the seed's values.
        "Vaelith",
        "Orrimund",
        "canary-mail",
        "(206) 555-01",
        "+1206555",
        "Xanthor",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.push(basic);
    all
}

/// Customers 1..=n with distinctive values, one bad e-mail, one bad phone and one row with
/// the wrong number of fields.
fn customers(n: u32) -> String {
    let mut csv = String::from("crm_id,profile_id,first,last,email,phone\n");
    for i in 1..=n {
        csv.push_str(&format!(
            "C{i},{},Vaelith{i},Orrimund{i},vaelith{i}@canary-mail.example,(206) 555-01{:02}\n",
            pid(i),
            i % 100
        ));
    }
    csv.push_str(&format!(
        "C901,{},Vaelith901,Orrimund901,not-an-email-vaelith,(206) 555-0190\n",
        pid(901)
    ));
    csv.push_str(&format!(
        "C902,{},Vaelith902,Orrimund902,v902@canary-mail.example,555-VAELITH\n",
        pid(902)
    ));
    csv.push_str("C903,Vaelith903,Orrimund903\n");
    csv
}

const FIELDS: &str = r#"FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase", "email"] }
PhoneNumber = { from = "phone", transform = ["e164"] }
"#;

fn profiles_config(domain: &str, limits: &str) -> String {
    format!(
        "[source]\nkey = \"crm_id\"\n\n[target]\nkind = \"customer-profiles\"\n\
         domain = \"{domain}\"\n\n[match]\nid = \"profile_id\"\n\n[limits]\n{limits}\n\n\
         [fields]\n{FIELDS}"
    )
}

/// Profiles 1..=n holding values of their own, which `plan` reads.
fn profiles_seed(n: u32) -> Value {
    let profiles: Map<String, Value> = (1..=n)
        .map(|i| {
            (
                pid(i),
                json!({"FirstName": format!("Xanthor{i}"), "LastName": "Xanthor",
                       "EmailAddress": format!("xanthor{i}@canary-mail.example")}),
            )
        })
        .collect();
    json!({"domains": {"ExampleDomainName": {"profiles": profiles}}})
}

/// The runs of one test: each output is kept to be searched at the end.
struct Runs {
    dir: Dir,
    outputs: Vec<(String, Run)>,
}

impl Runs {
    fn new() -> Runs {
        Runs {
            dir: Dir::new(),
            outputs: Vec::new(),
        }
    }

    /// Runs the binary against the emulator's AWS endpoint with the canary credentials;
    /// returns the exit code and standard error.
    async fn aws(
        &mut self,
        endpoint_var: &str,
        emulator: &EmulatorHandle,
        args: &[&str],
    ) -> (i32, String) {
        self.aws_at(endpoint_var, &emulator.endpoint_url(), args)
            .await
    }

    /// [`Runs::aws`] against any endpoint.
    async fn aws_at(&mut self, endpoint_var: &str, endpoint: &str, args: &[&str]) -> (i32, String) {
        self.aws_with(endpoint_var, endpoint, &[], args).await
    }

    /// [`Runs::aws_at`] with more of the environment (`AWS_ENDPOINT_URL_S3`).
    async fn aws_with(
        &mut self,
        endpoint_var: &str,
        endpoint: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (i32, String) {
        let cmd = self
            .dir
            .command(args)
            .aws(endpoint_var, endpoint)
            .envs(&[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                ("AWS_SESSION_TOKEN", SESSION_TOKEN),
                ("GENESYS_UCS_USERNAME", UCS_USER),
                ("GENESYS_UCS_PASSWORD", UCS_PASSWORD),
            ])
            .envs(env);
        self.keep(args, cmd).await
    }

    /// Runs the binary with the Genesys preset: only PATH and `env`.
    async fn with_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let cmd = self.dir.command(args).genesys(env);
        self.keep(args, cmd).await
    }

    /// Runs `cmd` and keeps its output. Each run here meets a new emulator: none may skip
    /// records by an earlier run's state.
    async fn keep(&mut self, args: &[&str], cmd: TestCommand) -> (i32, String) {
        let _ = std::fs::remove_dir_all(self.dir.path("state"));
        let out = cmd.output().await;
        let result = (out.code(), out.stderr());
        self.outputs.push((args.join(" "), out));
        result
    }

    /// The summary JSON at `name`.
    fn summary(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.dir.path(name))
            .unwrap_or_else(|e| panic!("the summary {name}: {e}"));
        serde_json::from_str(&text).expect("the summary is JSON")
    }

    /// Every output and every file the runs wrote (all but the inputs) that holds a
    /// forbidden string, with the string.
    fn leaks(&self, inputs: &[&str]) -> Vec<(String, String)> {
        let forbidden = forbidden();
        let mut texts: Vec<(String, String)> = Vec::new();
        for (args, out) in &self.outputs {
            texts.push((format!("stdout of `{args}`"), out.stdout()));
            texts.push((format!("stderr of `{args}`"), out.stderr()));
        }
        let mut files = 0;
        collect_files(&self.dir.path(""), inputs, &mut texts, &mut files);
        assert!(
            files >= 2,
            "ledgers, run files and summaries were written: {files}"
        );
        let mut found = Vec::new();
        for (what, text) in &texts {
            let lower = text.to_lowercase();
            for secret in &forbidden {
                if lower.contains(&secret.to_lowercase()) {
                    found.push((what.clone(), secret.clone()));
                }
            }
        }
        found
    }

    /// Asserts that no output and no file holds a forbidden string.
    fn assert_nothing_leaked(&self, inputs: &[&str]) {
        let found = self.leaks(inputs);
        assert!(found.is_empty(), "leaked: {found:?}");
    }
}

fn collect_files(
    dir: &Path,
    inputs: &[&str],
    texts: &mut Vec<(String, String)>,
    files: &mut usize,
) {
    for entry in std::fs::read_dir(dir).expect("read the run folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect_files(&path, inputs, texts, files);
        } else if !inputs
            .iter()
            .any(|i| path.file_name().is_some_and(|n| n == *i))
        {
            *files += 1;
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).expect("read a file")).into_owned();
            texts.push((path.display().to_string(), text));
        }
    }
}

/// `-vv COMMAND --config CONFIG INPUT --ledger LEDGER --summary-json SUMMARY`.
fn verbose<'a>(
    command: &'a str,
    config: &'a str,
    input: &'a str,
    ledger: &'a str,
    summary: &'a str,
) -> Vec<&'a str> {
    vec![
        "-vv",
        command,
        "--config",
        config,
        input,
        "--ledger",
        ledger,
        "--summary-json",
        summary,
    ]
}

/// Asserts that a `-vv` log holds per-request lines for `operation` with attempts.
fn assert_request_lines(log: &str, operation: &str) {
    assert!(
        log.contains(&format!("request{{operation=\"{operation}\"}}"))
            && log.contains("attempt=1")
            && log.contains("profilesync::request"),
        "per-request lines for {operation}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_value_leaves_an_aws_run_on_any_path() {
    const CP: &str = PROFILES_ENDPOINT;
    let mut runs = Runs::new();
    runs.dir.write("in.csv", customers(30));
    runs.dir.write(
        "c.toml",
        profiles_config("ExampleDomainName", "rate = 25\nconcurrency = 8"),
    );

    // Throttles and 500s, retried until the records land; three invalid records.
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(profiles_seed(30))
            .with_quota("UpdateProfile", 20.0, 2)
            .with_faults(faults(0.15, 0.0, 3)),
    )
    .await;
    let apply = verbose("apply", "c.toml", "in.csv", "apply.jsonl", "apply.json");
    let (code, log) = runs.aws(CP, &emulator, &apply).await;
    assert_eq!(code, 1, "{log}");
    assert_request_lines(&log, "UpdateProfile");
    assert_request_lines(&log, "GetDomain");
    for says in [
        "code=\"ThrottlingException\" status=429",
        "code=\"InternalServerException\" status=500",
        "outcome=\"retry\"",
        "wait_ms=",
    ] {
        assert!(
            log.contains(says),
            "throttles and 500s, with their backoff: {log}"
        );
    }
    assert!(log.contains("settled status=\"invalid\""), "{log}");
    let summary = runs.summary("apply.json");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["records_total"], 33);
    assert_eq!(summary["records"]["invalid"], 3);
    let update = summary["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "UpdateProfile")
        .unwrap_or_else(|| panic!("UpdateProfile in {summary}"));
    assert!(update["throttled"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["ledger"].as_str().unwrap().ends_with("apply.jsonl"));

    // plan, logging JSON: every line of standard error is one object.
    let plan = [
        &["--log-format", "json"][..],
        &verbose("plan", "c.toml", "in.csv", "plan.jsonl", "plan.json"),
    ]
    .concat();
    let (code, log) = runs.aws(CP, &emulator, &plan).await;
    assert_eq!(code, 1, "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Reads are made ahead, 20 records a call: their lines carry the batch's span.
    assert!(
        lines.iter().any(|l| l["message"] == "request"
            && l["attempt"] == 1
            && l["spans"][1]["operation"] == "BatchGetProfile"
            && l["spans"][0]["name"] == "batch"
            && l["spans"][0]["ids"].is_u64()),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "settled" && l["spans"][0]["key"].is_string()),
        "{log}"
    );
    assert!(runs.summary("plan.json")["report"].is_string());

    // check, with its summary.
    let check = verbose("check", "c.toml", "in.csv", "check.jsonl", "check.json");
    let (code, log) = runs.aws(CP, &emulator, &check).await;
    assert_eq!(code, 1, "{log}");
    assert_eq!(runs.summary("check.json")["records"]["invalid"], 3);

    // Access denied: the run stops (exit 3) after the ledger exists.
    let denied = start_emulator(
        EmulatorConfig::default()
            .with_seed(profiles_seed(30))
            .with_denied("UpdateProfile"),
    )
    .await;
    let args = verbose("apply", "c.toml", "in.csv", "denied.jsonl", "denied.json");
    let (code, log) = runs.aws(CP, &denied, &args).await;
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("code=\"AccessDeniedException\" status=403"),
        "{log}"
    );
    let summary = runs.summary("denied.json");
    assert_eq!(summary["exit_code"], 3);
    assert_has(&summary["stop_reason"], "AccessDeniedException");
    assert!(summary["ledger"].is_string());

    // A domain that does not exist: exit 2, the summary says why and names no ledger.
    runs.dir
        .write("d.toml", profiles_config("NoSuchDomain", "rate = 100"));
    let args = verbose("apply", "d.toml", "in.csv", "d.jsonl", "domain.json");
    let (code, log) = runs.aws(CP, &emulator, &args).await;
    assert_eq!(code, 2, "{log}");
    let summary = runs.summary("domain.json");
    assert_eq!(summary["exit_code"], 2);
    assert_has(&summary["error"], "NoSuchDomain does not exist");
    assert!(summary["ledger"].is_null() && summary["records_total"] == 0);

    // An endpoint that does not answer: exit 3 before any ledger.
    runs.dir.write(
        "u.toml",
        profiles_config("ExampleDomainName", "max_attempts = 2"),
    );
    let args = verbose("apply", "u.toml", "in.csv", "u.jsonl", "unreachable.json");
    let (code, log) = runs.aws_at(CP, "http://127.0.0.1:9", &args).await;
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("attempt=2 outcome=\"failed\" class=\"transient\""),
        "{log}"
    );
    assert!(
        runs.summary("unreachable.json")["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );

    // Connect users, signed by hand (the session token goes into a header).
    let seed = json!({"instances": {"i-1": {"users": {
        "u1": {"Username": "agent1", "IdentityInfo": {"FirstName": "Xanthor", "LastName": "Xanthor"}},
    }}}});
    let connect = start_emulator(EmulatorConfig::default().with_seed(seed)).await;
    runs.dir.write(
        "agents.csv",
        "user_id,first,last\nu1,Vaelith,Orrimund\nu2,Vaelith2,Orrimund2\n",
    );
    runs.dir.write(
        "connect.toml",
        "[source]\nkey = \"user_id\"\n\n[target]\nkind = \"connect-user\"\ninstance_id = \"i-1\"\n\n\
         [match]\nid = \"user_id\"\nwhen_missing = \"fail\"\n\n[fields]\nFirstName = \"first\"\nLastName = \"last\"\n",
    );
    let args = verbose(
        "apply",
        "connect.toml",
        "agents.csv",
        "connect.jsonl",
        "connect.json",
    );
    let (code, log) = runs.aws(CONNECT_ENDPOINT, &connect, &args).await;
    assert_eq!(code, 1, "u2 does not exist: {log}");
    assert_request_lines(&log, "DescribeUser");
    assert_request_lines(&log, "UpdateUserIdentityInfo");
    assert_eq!(
        connect.state()["instances"]["i-1"]["users"]["u1"]["IdentityInfo"]["FirstName"],
        "Vaelith"
    );

    // A sync state in S3 that does not answer: exit 3 naming it, signed requests tried.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let s3 = format!("http://{down}");
    let mut args = verbose("apply", "c.toml", "in.csv", "s3.jsonl", "s3.json");
    args.extend(["--state", "s3://canary-bucket/crm/"]);
    let (code, log) = runs
        .aws_with(
            CP,
            &emulator.endpoint_url(),
            &[("AWS_ENDPOINT_URL_S3", s3.as_str())],
            &args,
        )
        .await;
    assert_eq!(code, 3, "{log}");
    assert!(log.contains(&s3) && log.contains("PutObject"), "{log}");

    runs.assert_nothing_leaked(&[
        "in.csv",
        "c.toml",
        "d.toml",
        "u.toml",
        "agents.csv",
        "connect.toml",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_value_leaves_a_genesys_run_on_any_path() {
    let seed = json!({"genesys": {"tenant_id": 1, "profiles": {
        "G1": {"FirstName": "Xanthor", "LastName": "Xanthor"},
    }}});
    let emulator = start_emulator(
        EmulatorConfig::default()
            .with_seed(seed)
            .with_genesys_auth(UCS_USER, UCS_PASSWORD),
    )
    .await;
    let mut runs = Runs::new();
    runs.dir.write(
        "in.csv",
        "customer_id,first,last\nG1,Vaelith,Orrimund\nG2,Vaelith2,Orrimund2\nG3,Vaelith3\n",
    );
    runs.dir.write(
        "c.toml",
        format!(
            "[source]\nkey = \"customer_id\"\n\n[target]\nkind = \"genesys-ucs\"\nbase_url = \"{}\"\n\
             tenant_id = 1\n\n[match]\nid = \"customer_id\"\nwhen_missing = \"create\"\n\n\
             [fields]\nFirstName = \"first\"\nLastName = \"last\"\n",
            emulator.endpoint_url()
        ),
    );
    let secrets = [
        ("GENESYS_UCS_USERNAME", UCS_USER),
        ("GENESYS_UCS_PASSWORD", UCS_PASSWORD),
    ];
    let wrong = [
        ("GENESYS_UCS_USERNAME", UCS_USER),
        ("GENESYS_UCS_PASSWORD", "ucs-canary-pass-67"),
    ];

    // A password the server refuses: 401 in the preflight, exit 3, no ledger.
    for (format, name) in [("text", "wrong.json"), ("json", "wrong-json.json")] {
        let args = [
            &["--log-format", format][..],
            &verbose("apply", "c.toml", "in.csv", "wrong.jsonl", name),
        ]
        .concat();
        let (code, log) = runs.with_env(&args, &wrong).await;
        assert_eq!(code, 3, "{log}");
        assert!(
            log.contains("GenesysGetProfile") && log.contains("401"),
            "{log}"
        );
        assert!(!log.contains("ucs-canary-pass-67"), "{log}");
        assert_eq!(runs.summary(name)["exit_code"], 3);
    }

    let args = verbose("apply", "c.toml", "in.csv", "ok.jsonl", "ok.json");
    let (code, log) = runs.with_env(&args, &secrets).await;
    assert_eq!(code, 1, "G3 is invalid: {log}");
    assert_request_lines(&log, "GenesysGetProfile");
    assert_request_lines(&log, "GenesysPutProfile");
    assert_request_lines(&log, "GenesysCreateProfile");
    let summary = runs.summary("ok.json");
    assert_eq!(
        summary["records"],
        json!({"updated": 1, "created": 1, "invalid": 1})
    );

    runs.assert_nothing_leaked(&["in.csv", "c.toml"]);
}

/// The search finds what is there: `--show-values` puts the values in the diff report (and
/// only there), so the scan must name that file and no other output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_finds_values_where_they_were_asked_for() {
    let emulator = start_emulator(EmulatorConfig::default().with_seed(profiles_seed(3))).await;
    let mut runs = Runs::new();
    runs.dir.write("in.csv", customers(3));
    runs.dir
        .write("c.toml", profiles_config("ExampleDomainName", "rate = 100"));
    let args = [
        verbose("plan", "c.toml", "in.csv", "plan.jsonl", "plan.json"),
        vec!["--show-values"],
    ]
    .concat();
    let (code, log) = runs.aws(PROFILES_ENDPOINT, &emulator, &args).await;
    assert_eq!(code, 1, "{log}");
    let found = runs.leaks(&["in.csv", "c.toml"]);
    let secrets: Vec<&str> = found.iter().map(|(_, s)| s.as_str()).collect();
    assert!(
        secrets.contains(&"Vaelith") && secrets.contains(&"Xanthor"),
        "the new and the current values are in the report: {found:?}"
    );
    assert!(
        found.iter().all(|(what, _)| what.contains("/reports/")),
        "only in the diff report's files: {found:?}"
    );
}
