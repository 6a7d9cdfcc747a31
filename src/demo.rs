//! `profilesync demo`: the whole job on the bundled samples, against an in-process emulator.
//!
//! The sample exports, their configs and the emulator's seed are built into the binary, so
//! the demo runs from any directory. It starts the emulator on a free loopback port, points
//! each config at it (`endpoint_url` for the AWS targets, `base_url` for Genesys: the same
//! keys a user would set), and runs `plan`, then `apply`, for each of the three targets
//! (customers → Customer Profiles, agents → Connect users, the Genesys export → UCS) through
//! exactly the code paths a real run takes; only the AWS credentials are made-up ones, since
//! the emulator checks their shape, not their signature. It ends with one table, a row per
//! target and run, and where each ledger and report is.

use std::path::PathBuf;

use aws_config::BehaviorVersion;
use aws_sdk_customerprofiles::config::Credentials;

use crate::emulator::{Emulator, EmulatorConfig};
use crate::ledger::Status;
use crate::pipeline::SyncResult;
use crate::report::ReportPaths;
use crate::run::{self, ConfigFrom, EXIT_ABORTED, EXIT_OK, InputFrom, SyncRequest};
use crate::schema::TargetKind;
use crate::summary::RunSummary;
use crate::targets::Mode;

/// One bundled sample: an export and the config that maps it.
struct Sample {
    config_name: &'static str,
    config: &'static str,
    input_name: &'static str,
    input: &'static [u8],
    /// Where it goes, for the table.
    what: &'static str,
    /// Its target.
    kind: TargetKind,
}

const SAMPLES: [Sample; 3] = [
    Sample {
        config_name: "config/customer-profiles.toml",
        config: include_str!("../config/customer-profiles.toml"),
        input_name: "samples/customers.csv",
        input: include_bytes!("../samples/customers.csv"),
        what: "Customer Profiles domain ExampleDomainName",
        kind: TargetKind::CustomerProfiles,
    },
    Sample {
        config_name: "config/connect-user.toml",
        config: include_str!("../config/connect-user.toml"),
        input_name: "samples/agents.csv",
        input: include_bytes!("../samples/agents.csv"),
        what: "Connect users of instance 11111111-…",
        kind: TargetKind::ConnectUser,
    },
    Sample {
        config_name: "config/genesys-ucs.toml",
        config: include_str!("../config/genesys-ucs.toml"),
        input_name: "samples/genesys.csv",
        input: include_bytes!("../samples/genesys.csv"),
        what: "Genesys UCS profiles, tenant 1",
        kind: TargetKind::GenesysUcs,
    },
];
const SEED: &str = include_str!("../samples/seed.json");

/// One run's row of the closing table.
struct Row {
    target: TargetKind,
    command: &'static str,
    requests: u64,
    result: SyncResult,
    ledger: PathBuf,
    report: Option<ReportPaths>,
}

/// Runs the demo and returns the exit code: 0 when both runs completed (the samples'
/// deliberately broken rows end `invalid`, as intended), 3 when a run could not complete.
pub fn run() -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("profilesync demo: cannot start the async runtime: {e}");
            return EXIT_ABORTED;
        }
    };
    match runtime.block_on(demo()) {
        Ok(()) => EXIT_OK,
        Err(message) => {
            eprintln!("profilesync demo: {message}");
            EXIT_ABORTED
        }
    }
}

/// Where the demo writes `ledgers/` and `reports/`: the working directory, like every
/// command, unless it is not writable; then the system's temporary directory.
fn output_dir() -> PathBuf {
    let here = PathBuf::new();
    if std::fs::create_dir_all(here.join("ledgers")).is_ok()
        && std::fs::create_dir_all(here.join("reports")).is_ok()
    {
        return here;
    }
    let elsewhere = std::env::temp_dir().join("profilesync-demo");
    eprintln!(
        "profilesync demo: the working directory is not writable; writing to {}",
        elsewhere.display()
    );
    elsewhere
}

async fn demo() -> Result<(), String> {
    let seed = serde_json::from_str(SEED).map_err(|e| format!("the built-in seed: {e}"))?;
    let emulator = Emulator::start(EmulatorConfig::default().with_seed(seed))
        .await
        .map_err(|e| format!("cannot start the emulator: {e}"))?;
    let url = emulator.endpoint_url();
    // The emulator is every AWS service's endpoint here, STS (the account) included.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&url)
        .region("us-east-1")
        .credentials_provider(Credentials::new(
            "AKIDPROFILESYNCDEMO",
            "demo-secret",
            None,
            None,
            "profilesync-demo",
        ))
        .load()
        .await;
    let out = output_dir();
    // The emulator starts afresh each time, so the demo's sync state does too.
    let state_dir = tempfile_dir()?;
    println!("profilesync demo: the bundled samples → the three targets");
    println!("emulator (seeded with samples/seed.json) at {url}\n");

    let mut rows = Vec::new();
    for sample in &SAMPLES {
        println!("── {} → {} ──", sample.input_name, sample.what);
        // The second apply is the next night's: the same export, which the sync state
        // knows was accepted, so it costs no request.
        for (mode, command) in [
            (Mode::Plan, "plan"),
            (Mode::Apply, "apply"),
            (Mode::Apply, "apply again"),
        ] {
            let request = SyncRequest {
                mode,
                label: command.to_owned(),
                name: format!("demo-{}-{}", sample.kind, command.replace(' ', "-")),
                out_dir: out.clone(),
                config: ConfigFrom::Bundled {
                    name: sample.config_name,
                    text: sample.config,
                    url: url.clone(),
                    region: "us-east-1",
                },
                input: InputFrom::Bundled {
                    name: sample.input_name,
                    bytes: sample.input,
                },
                command_line: format!("profilesync demo ({command})"),
                args: Vec::new(),
                ledger: None,
                resume: false,
                retry_failed: None,
                rate: None,
                concurrency: None,
                max_errors: None,
                report: None,
                show_values: false,
                full: false,
                approve_deletes: None,
                state: Some(state_dir.clone()),
                quiet: false,
                progress: true,
                sdk: Some(sdk.clone()),
            };
            let finished = run::run_sync(request, &mut RunSummary::start("demo"))
                .await
                .map_err(|f| format!("{} {command}: {}", sample.kind, f.reason))?;
            if let Some(reason) = &finished.result.aborted {
                return Err(format!("{} {command} aborted: {reason}", sample.kind));
            }
            if finished.code == EXIT_ABORTED {
                // What could not be written is said above.
                return Err(format!("{} {command} did not complete", sample.kind));
            }
            rows.push(Row {
                target: sample.kind,
                command,
                requests: finished.result.calls.iter().map(|c| c.requests).sum(),
                result: finished.result,
                ledger: finished.ledger,
                report: finished.report,
            });
        }
        println!();
    }
    print_table(&rows);
    println!(
        "\nThe `invalid` records are the samples' deliberately broken rows, and the one Connect \
         `failed` record is an agent whose login Email would change, stopped by the \
         allow_email_change guard (see samples/README.md); each ledger entry names the line \
         and what is wrong. Every target reads (Customer Profiles in batches of up to 20 \
         profiles), merges and writes only what differs. `apply again` is the next night over the same export: the local sync state knows \
         what each target accepted, so it reads and writes nothing for those records; its \
         few requests are the preflight and the records nothing was accepted for (the \
         profiles that do not exist, and the agent the guard stopped), and for Connect one \
         ListUsers, whose LastModifiedTime shows the users the first apply wrote: each is \
         read once more, then skipped on the nights after."
    );
    let _ = std::fs::remove_dir_all(&state_dir);
    emulator.shutdown().await;
    Ok(())
}

/// A new, private directory for the demo's sync state.
fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "profilesync-demo-state-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The closing table: a row per target and run, and where its ledger and report are.
fn print_table(rows: &[Row]) {
    let shown: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| rows.iter().any(|r| r.result.tally.get(*s) > 0))
        .collect();
    let mut header = format!("{:<18} {:<12}", "target", "run");
    for &status in &shown {
        header.push_str(&format!(" {:>12}", status.name()));
    }
    header.push_str(&format!(" {:>9}", "requests"));
    println!("{header}");
    for row in rows {
        let mut line = format!("{:<18} {:<12}", row.target.name(), row.command);
        for &status in &shown {
            line.push_str(&format!(" {:>12}", row.result.tally.get(status)));
        }
        line.push_str(&format!(" {:>9}", row.requests));
        println!("{line}");
    }
    println!();
    for row in rows {
        println!(
            "{} {}: ledger {}",
            row.target.name(),
            row.command,
            row.ledger.display()
        );
        if let Some(report) = &row.report {
            println!(
                "{} {}: report {} (field names; add --show-values to a plan for values)",
                row.target.name(),
                row.command,
                report.html.display()
            );
        }
    }
}
