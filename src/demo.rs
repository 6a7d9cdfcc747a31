//! `profilesync demo`: the whole job on the bundled samples, against an in-process emulator.
//!
//! The sample export, its config and the emulator's seed are built into the binary, so the
//! demo runs from any directory. It starts the emulator on a free loopback port, points the
//! config's `endpoint_url` at it (the same key a user would set), and runs `plan`, then
//! `apply`, through exactly the code paths a real run takes; only the credentials are
//! made-up ones, since the emulator checks their shape, not their signature.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_sdk_customerprofiles::config::Credentials;

use crate::cli::{
    EXIT_ABORTED, EXIT_OK, bind, connect, describe_target, exit_code, run_sync, write_report,
};
use crate::config::compile::compile;
use crate::emulator::{Emulator, EmulatorConfig};
use crate::ledger::{self, Ledger};
use crate::pipeline::{Interrupts, Selection, SyncOptions};
use crate::report::{self, DiffReport, Progress, RunInfo, Tally};
use crate::source::{Source, SourceFormat};
use crate::target::Mode;

const CONFIG_NAME: &str = "config/customer-profiles.toml";
const CONFIG: &str = include_str!("../config/customer-profiles.toml");
const INPUT_NAME: &str = "samples/customers.csv";
const INPUT: &[u8] = include_bytes!("../samples/customers.csv");
const SEED: &str = include_str!("../samples/seed.json");

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
    let mut config = compile(Path::new(CONFIG_NAME), CONFIG).map_err(|e| e.to_string())?;
    config.target.endpoint_url = Some(url.clone());
    config.target.region = Some("us-east-1".to_owned());
    let sdk = aws_config::defaults(BehaviorVersion::latest())
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
    println!("profilesync demo: {INPUT_NAME} → Customer Profiles domain ExampleDomainName");
    println!("emulator (seeded with samples/seed.json) at {url}\n");

    for mode in [Mode::Plan, Mode::Apply] {
        let command = match mode {
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        };
        let started = Instant::now();
        let run = RunInfo {
            mode,
            command: format!("profilesync demo ({command})"),
            config: CONFIG_NAME.to_owned(),
            input: INPUT_NAME.to_owned(),
            target: describe_target(&config),
            started: chrono::Local::now(),
        };
        let source = Source::from_reader(
            INPUT_NAME.to_owned(),
            SourceFormat::Csv,
            Box::new(Cursor::new(INPUT)),
            b',',
        )?;
        let (cx, source) = bind(config.clone(), source, CONFIG_NAME)?;
        let sender = connect(&config, &sdk)
            .await
            .map_err(|(_, message)| message)?;
        let path = ledger::default_path_in(&out.join("ledgers"), &format!("demo-{command}"));
        let ledger = Ledger::create(&path).map_err(|e| e.to_string())?;
        let options = SyncOptions {
            mode,
            selection: Selection::All,
            max_errors: None,
            concurrency: config.limits.concurrency,
            carried: Tally::default(),
            report: match mode {
                Mode::Plan => Some(
                    DiffReport::create(&out.join("reports"), "demo-plan", false)
                        .map_err(|e| e.to_string())?,
                ),
                Mode::Apply => None,
            },
        };
        let progress = Progress::new(true, command, source.progress.clone());
        let interrupts =
            Interrupts::register().map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
        let (mut result, path) =
            run_sync(cx, source, ledger, sender, options, progress, interrupts).await?;
        let code = exit_code(&result);
        let report = write_report(&mut result, &run, &path, started, code)?;
        report::summary(
            &mut io::stdout().lock(),
            command,
            &result.tally,
            result.carried,
            started.elapsed(),
            &result.fields,
            &path,
        )
        .map_err(|e| e.to_string())?;
        if let Some(report) = &report {
            report
                .write_to(&mut io::stdout())
                .map_err(|e| e.to_string())?;
            println!("(field names; add --show-values to a plan for values)");
        }
        println!();
        if let Some(reason) = result.aborted {
            return Err(format!("{command} aborted: {reason}"));
        }
    }
    let profiles = emulator.state()["domains"]["ExampleDomainName"]["profiles"]
        .as_object()
        .map_or(0, |p| p.len());
    println!(
        "The domain now holds {profiles} profiles. The 8 `invalid` records are the sample's deliberately \
         broken rows (see samples/README.md); each ledger entry names the line and what is wrong.\n\
         The config matches by ProfileId, so apply sends each valid record's mapped fields in one \
         UpdateProfile without reading the profile first (`updated` = sent and accepted); plan shows what \
         actually differed. To write only what differs, match with search_key = \"_profileId\" \
         (see the README)."
    );
    emulator.shutdown().await;
    Ok(())
}
