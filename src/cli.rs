//! The command line: argument parsing, and each command from arguments to exit code.
//!
//! Exit codes are the contract's: 0 every record ended well, 1 some records are `invalid`
//! or `failed`, 2 usage or configuration error (nothing processed), 3 the run was aborted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Local;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Rate};
use crate::ledger::{self, Ledger, RunFile, Tally};
use crate::limiter::{Limiters, RateSetting};
use crate::logging::{self, LogArgs};
use crate::mapping::Plan;
use crate::pipeline::{
    self, Context, Interrupts, Selection, Sender, StateUse, SyncOptions, SyncResult,
};
use crate::report::{self, DiffReport, FieldCounts, Progress, ReportPaths, RunEnd, RunInfo};
use crate::retry::RetryPolicy;
use crate::schema::{self, TargetKind};
use crate::source::Source;
use crate::state::{SyncState, TargetIdentity};
use crate::summary::{self, RunSummary};
use crate::targets::aws;
use crate::targets::connect_user::ConnectUser;
use crate::targets::customer_profiles::CustomerProfiles;
use crate::targets::genesys_ucs::GenesysUcs;
use crate::targets::{Mode, Target};

/// Every record ended well.
pub const EXIT_OK: i32 = 0;
/// The run finished, but some records are `invalid` or `failed`.
pub const EXIT_RECORDS_FAILED: i32 = 1;
/// Usage or configuration error: nothing was processed.
pub const EXIT_USAGE: i32 = 2;
/// The run was aborted.
pub const EXIT_ABORTED: i32 = 3;

/// Bulk-sync customer profiles from CRM exports into contact-center systems.
#[derive(Debug, Parser)]
#[command(name = "profilesync", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse, map and validate every record; no network. The ledger says valid or invalid.
    Check(RunArgs),
    /// Dry run: read each record's current state, diff field by field; write nothing.
    Plan(SyncArgs),
    /// Send the changes, rate-limited, retrying throttles and transient faults.
    Apply(SyncArgs),
    /// The whole job on the bundled samples against an in-process emulator: plan, then apply.
    Demo,
    /// Print a commented config for a target with every field it takes.
    Skeleton {
        /// customer-profiles, connect-user or genesys-ucs.
        target: String,
    },
    /// A local stand-in for the three target APIs, for rehearsals and tests.
    Emulator(crate::emulator::EmulatorArgs),
}

/// Arguments of the commands that read input.
#[derive(Debug, Args)]
struct RunArgs {
    /// The config file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Input file (.csv, .jsonl, .ndjson, optionally .gz) or - for standard input;
    /// overrides [source] path.
    input: Option<String>,
    /// Where to write the ledger (default: a new file under ./ledgers/).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
    /// No progress line.
    #[arg(long)]
    no_progress: bool,
    /// At the end, write a JSON summary of the run to PATH (counts, requests, reasons).
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
}

/// Arguments of `plan` and `apply`.
#[derive(Debug, Args)]
struct SyncArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Same as `plan` (apply only).
    #[arg(long)]
    dry_run: bool,
    /// Continue an interrupted run from its ledger (--ledger, else the newest in ./ledgers/):
    /// records that already settled are not sent again. With --retry-failed, continues an
    /// interrupted re-drive.
    #[arg(long)]
    resume: bool,
    /// Send only the records that failed in this ledger.
    #[arg(long, value_name = "LEDGER")]
    retry_failed: Option<PathBuf>,
    /// Requests per second (overrides [limits] rate); a number or "auto".
    #[arg(long)]
    rate: Option<String>,
    /// Requests in flight, 1-1024 (overrides [limits] concurrency).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Option<u16>,
    /// Abort (exit 3) after this many failed records.
    #[arg(long, value_name = "N")]
    max_errors: Option<u64>,
    /// Write the field-by-field diff report into DIR (plan: default ./reports).
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Put current and new values in the diff report (they are personal data).
    #[arg(long)]
    show_values: bool,
    /// Ignore the local sync state: read every record from the target (still writing only
    /// what differs), and refresh the state.
    #[arg(long)]
    full: bool,
    /// The directory of the local sync state (overrides [state] path; default ./state).
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    logging::init(&cli.log);
    match cli.command {
        Command::Check(args) => summarized("check", &args, |s| check(&args, s)),
        Command::Plan(args) => {
            summarized("plan", &args.run, |s| sync_command(&args, Mode::Plan, s))
        }
        Command::Apply(args) => {
            let mode = if args.dry_run {
                Mode::Plan
            } else {
                Mode::Apply
            };
            summarized(command_name(mode), &args.run, |s| {
                sync_command(&args, mode, s)
            })
        }
        Command::Demo => crate::demo::run(),
        Command::Skeleton { target } => skeleton(&target),
        Command::Emulator(args) => crate::emulator::run_cli(args),
    }
}

/// Runs a command that reads input, and writes its `--summary-json` at the end, whatever
/// the exit code. A summary path in a missing folder exits 2 before anything is done.
fn summarized(
    command: &'static str,
    args: &RunArgs,
    run: impl FnOnce(&mut RunSummary) -> i32,
) -> i32 {
    if let Some(path) = &args.summary_json
        && let Err(message) = summary::check_path(path)
    {
        eprintln!("profilesync: {message}");
        return EXIT_USAGE;
    }
    tracing::info!(
        command,
        config = %args.config.display(),
        input = args.input.as_deref(),
        "run starting"
    );
    let mut summary = RunSummary::start(command);
    let code = run(&mut summary);
    summary.log(code);
    if let Some(path) = &args.summary_json
        && let Err(e) = summary.write(path, code)
    {
        eprintln!(
            "profilesync: cannot write the summary {}: {e}",
            path.display()
        );
    }
    code
}

fn skeleton(target: &str) -> i32 {
    match TargetKind::from_name(target) {
        Some(kind) => {
            print!("{}", config::skeleton::skeleton(kind));
            EXIT_OK
        }
        None => {
            let names: Vec<_> = TargetKind::ALL.iter().map(|k| k.name()).collect();
            eprintln!(
                "profilesync: unknown target `{target}`; expected one of {}",
                names.join(", ")
            );
            EXIT_USAGE
        }
    }
}

fn check(args: &RunArgs, summary: &mut RunSummary) -> i32 {
    let started = Instant::now();
    let (cx, source) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(message) => {
            summary.error(&message);
            eprintln!("{message}");
            return EXIT_USAGE;
        }
    };
    let ledger_path = args
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::default_path("check"));
    let run = run_file("check", &args.config, &cx.config, &cx.input, None, None);
    let mut ledger = match run
        .and_then(|run| Ledger::create_for(&ledger_path, &run).map_err(|e| e.to_string()))
    {
        Ok(ledger) => ledger,
        Err(e) => {
            summary.error(&e);
            eprintln!("profilesync: {e}");
            return EXIT_USAGE;
        }
    };
    summary.ledger(ledger.path());
    let progress = Progress::new(
        !args.quiet && !args.no_progress && !logging::verbose(),
        "check",
        source.progress.clone(),
    );
    let notes = source.notes();
    let result = pipeline::check(cx, source.records(), &mut ledger, &progress);
    progress.finish();
    match result {
        Ok(tally) => {
            summary.checked(&tally);
            if !args.quiet {
                let _ = report::summary(
                    &mut io::stdout().lock(),
                    "check",
                    &tally,
                    0,
                    started.elapsed(),
                    &FieldCounts::default(),
                    ledger.path(),
                );
            }
            print_notes(&notes, args.quiet);
            if tally.failures() > 0 {
                EXIT_RECORDS_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            summary.error(&format!("check aborted: {e}"));
            print_notes(&notes, args.quiet);
            let _ = io::stdout().flush();
            eprintln!(
                "profilesync: check aborted: {e}; the ledger {} holds the records settled so far",
                ledger.path().display()
            );
            EXIT_ABORTED
        }
    }
}

fn command_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Plan => "plan",
        Mode::Apply => "apply",
    }
}

fn sync_command(args: &SyncArgs, mode: Mode, summary: &mut RunSummary) -> i32 {
    let started = Instant::now();
    let started_at = Local::now();
    let command = command_name(mode);
    let (mut cx, source) = match prepare(&args.run) {
        Ok(prepared) => prepared,
        Err(message) => {
            summary.error(&message);
            eprintln!("{message}");
            return EXIT_USAGE;
        }
    };
    if let Err(message) = apply_overrides(&mut cx.config, args) {
        summary.error(&message);
        eprintln!("profilesync: {message}");
        return EXIT_USAGE;
    }
    let run = RunInfo {
        mode,
        command: command_line(),
        config: args.run.config.display().to_string(),
        input: cx.input.clone(),
        target: describe_target(&cx.config),
        started: started_at,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            summary.error(&format!("cannot start the async runtime: {e}"));
            eprintln!("profilesync: cannot start the async runtime: {e}");
            return EXIT_ABORTED;
        }
    };
    let code = runtime.block_on(async {
        // Signals are handled from here on, so that one during the preflight exits 3 too.
        let mut interrupts = match Interrupts::register() {
            Ok(interrupts) => interrupts,
            Err(e) => {
                summary.error(&format!("cannot watch for Ctrl-C: {e}"));
                eprintln!("profilesync: cannot watch for Ctrl-C: {e}");
                return EXIT_ABORTED;
            }
        };
        let connected = tokio::select! {
            connected = connect(&cx.config, None) => connected,
            _ = interrupts.next() => Err((EXIT_ABORTED, "interrupted".to_owned())),
        };
        let sender = match connected {
            Ok(sender) => sender,
            Err((code, message)) => {
                summary.error(&format!("{message}; nothing was sent"));
                eprintln!("profilesync: {command}: {message}; nothing was sent");
                return code;
            }
        };
        let region = sender.target.region();
        let state = match open_state(args, &cx.config, region.as_deref()) {
            Ok(state) => state,
            Err(message) => {
                eprintln!("profilesync: {message}");
                return EXIT_USAGE;
            }
        };
        let opened = run_file(
            command,
            &args.run.config,
            &cx.config,
            &cx.input,
            region.as_deref(),
            args.retry_failed.as_deref(),
        )
        .and_then(|run| open_ledger(args, mode, &cx.config, &run));
        let (ledger, mut options, resume_hint) = match opened {
            Ok(opened) => opened,
            Err(message) => {
                summary.error(&message);
                eprintln!("profilesync: {message}");
                return EXIT_USAGE;
            }
        };
        options.state = Some(state);
        let quiet = args.run.quiet;
        summary.ledger(ledger.path());
        let progress = Progress::new(
            !quiet && !args.run.no_progress && !logging::verbose(),
            command,
            source.progress.clone(),
        );
        let notes = source.notes();
        let result = run_sync(cx, source, ledger, sender, options, progress, interrupts).await;
        summary.synced(&result);
        let code = finish(&run, result, started, quiet, &resume_hint);
        print_notes(&notes, quiet);
        code
    });
    // Do not wait for a reader still blocked on a silent standard input.
    runtime.shutdown_background();
    code
}

/// Prints what the input's reader noticed about the input as a whole (rows swallowed by an
/// unclosed quote), under the summary.
fn print_notes(notes: &crate::source::Notes, quiet: bool) {
    let notes = notes.take();
    if quiet || notes.is_empty() {
        return;
    }
    let mut out = io::stdout().lock();
    for note in notes {
        let _ = writeln!(out, "note: {note}");
    }
}

/// The client for the configured target with the config's limiters and retry policy, once
/// its preflight passed. Errors carry their exit code: 2 for configuration, 3 otherwise.
/// The AWS configuration is loaded only for an AWS target, and only when `sdk` does not
/// already give it.
pub(crate) async fn connect(
    config: &Config,
    sdk: Option<&aws_types::SdkConfig>,
) -> Result<Sender, (i32, String)> {
    let loaded;
    let sdk = match (config.target.kind, sdk) {
        (TargetKind::GenesysUcs, _) => None,
        (_, Some(sdk)) => Some(sdk),
        (_, None) => {
            loaded = aws::load().await;
            Some(&loaded)
        }
    };
    let usage = |e| (EXIT_USAGE, e);
    let target = match (config.target.kind, sdk) {
        (TargetKind::CustomerProfiles, Some(sdk)) => {
            let domain = config.target.domain.as_deref().unwrap_or_default();
            Target::CustomerProfiles(CustomerProfiles::new(sdk, config, domain).map_err(usage)?)
        }
        (TargetKind::ConnectUser, Some(sdk)) => {
            let instance = config.target.instance_id.as_deref().unwrap_or_default();
            Target::ConnectUser(ConnectUser::new(sdk, config, instance).map_err(usage)?)
        }
        _ => Target::GenesysUcs(
            GenesysUcs::new(config, |name| std::env::var(name).ok()).map_err(usage)?,
        ),
    };
    let sender = Sender {
        target,
        limiters: Arc::new(limiters(config)),
        policy: RetryPolicy::new(config.limits.max_attempts),
    };
    let preflight = sender.preflight(config).await;
    match &preflight {
        Ok(warnings) => tracing::info!(warnings = warnings.len(), "preflight passed"),
        Err(e) => tracing::info!(error = %e.message, "preflight failed"),
    }
    match preflight {
        Ok(warnings) => {
            for warning in warnings {
                eprintln!("profilesync: warning: {warning}");
            }
            Ok(sender)
        }
        Err(e) => Err((if e.config { EXIT_USAGE } else { EXIT_ABORTED }, e.message)),
    }
}

/// One limiter per API operation of the target, each at its `[limits]` setting.
fn limiters(config: &Config) -> Limiters {
    let setting = |(rate, burst): (Rate, u32)| match rate {
        Rate::PerSecond(rate) => RateSetting::Fixed { rate, burst },
        Rate::Auto { start } => RateSetting::Auto { start, burst },
    };
    let limits = &config.limits;
    Limiters::new(
        schema::operations(config.target.kind)
            .iter()
            .map(|op| (*op, setting(limits.of(op)))),
        setting((limits.rate, limits.burst)),
    )
}

/// Applies `--rate` and `--concurrency`.
fn apply_overrides(config: &mut Config, args: &SyncArgs) -> Result<(), String> {
    if let Some(rate) = &args.rate {
        config.limits.rate = match rate.as_str() {
            // Start from what the config says: its `start_rate`, or its fixed rate.
            "auto" => Rate::Auto {
                start: match config.limits.rate {
                    Rate::Auto { start } => start,
                    Rate::PerSecond(rate) => rate,
                },
            },
            n => match n.parse::<f64>() {
                Ok(r) if r > 0.0 && r.is_finite() => Rate::PerSecond(r),
                _ => {
                    return Err(format!(
                        "--rate {rate}: expected a positive number or \"auto\""
                    ));
                }
            },
        };
    }
    if let Some(n) = args.concurrency {
        config.limits.concurrency = usize::from(n);
    }
    Ok(())
}

/// The ledger to write, which records to send, and how to continue the run if it stops.
fn open_ledger(
    args: &SyncArgs,
    mode: Mode,
    config: &Config,
    run: &RunFile,
) -> Result<(Ledger, SyncOptions, String), String> {
    let command = command_name(mode);
    let mut options = SyncOptions {
        mode,
        selection: Selection::All,
        max_errors: args.max_errors,
        concurrency: config.limits.concurrency,
        carried: Tally::default(),
        report: None,
        state: None,
    };
    // The resumed ledger is locked, and its run file checked, before it is read.
    let resumed = match args.resume {
        false => None,
        true => {
            let path = args
                .run
                .ledger
                .clone()
                .or_else(|| ledger::newest(command))
                .ok_or_else(|| {
                    "--resume found no ledger: give the interrupted run's ledger with --ledger PATH"
                        .to_owned()
                })?;
            let ledger = Ledger::resume(&path, run).map_err(|e| e.to_string())?;
            let previous = ledger::read_previous(&path).map_err(|e| e.to_string())?;
            if !args.run.quiet {
                eprintln!(
                    "resuming {}: {} records already settled",
                    path.display(),
                    previous.settled.len()
                );
            }
            Some((ledger, previous))
        }
    };
    options.selection = match (&args.retry_failed, &resumed) {
        (Some(earlier), resumed) => {
            check_earlier(earlier, run)?;
            let earlier = ledger::read_previous(earlier).map_err(|e| e.to_string())?;
            let mut failed = earlier.failed;
            if let Some((_, resumed)) = resumed {
                failed.remove_all(&resumed.settled);
            }
            Selection::Failed {
                failed,
                keys: earlier.keys,
            }
        }
        (None, Some((_, resumed))) => Selection::Resume {
            settled: resumed.settled.clone(),
            keys: resumed.keys.clone(),
        },
        (None, None) => Selection::All,
    };
    let ledger = match resumed {
        Some((ledger, resumed)) => {
            options.carried = resumed.tally;
            ledger
        }
        None => Ledger::create_for(
            &args
                .run
                .ledger
                .clone()
                .unwrap_or_else(|| ledger::default_path(command)),
            run,
        )
        .map_err(|e| e.to_string())?,
    };
    let report_dir = match (mode, &args.report) {
        (_, Some(dir)) => Some(dir.clone()),
        (Mode::Plan, None) => Some(PathBuf::from("reports")),
        (Mode::Apply, None) => None,
    };
    if let Some(dir) = report_dir {
        options.report =
            Some(DiffReport::create(&dir, command, args.show_values).map_err(|e| e.to_string())?);
    }
    let hint = match &args.retry_failed {
        Some(earlier) => format!(
            "profilesync {command} --resume --retry-failed {} --ledger {}",
            earlier.display(),
            ledger.path().display()
        ),
        None => format!(
            "profilesync {command} --resume --ledger {}",
            ledger.path().display()
        ),
    };
    Ok((ledger, options, hint))
}

/// `--retry-failed EARLIER` re-drives a `plan` or `apply` ledger of the same input and
/// target: one that says otherwise in its run file is refused. (An older ledger without a
/// run file is taken; its keys are still checked against the input.)
fn check_earlier(earlier: &Path, run: &RunFile) -> Result<(), String> {
    let Some(then) = RunFile::read(earlier).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let why = if then.command != "plan" && then.command != "apply" {
        Some(format!(
            "it is a `{}` ledger, which has no failed records",
            then.command
        ))
    } else if then.input != run.input {
        Some(format!(
            "it was written for the input {}, and this run's is {}",
            then.input, run.input
        ))
    } else if then.target != run.target {
        Some(format!(
            "it was written for the target {}, and this run's is {}",
            then.target, run.target
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("--retry-failed {}: {why}", earlier.display())),
        None => Ok(()),
    }
}

/// What [`RunFile`] says about this run: the command, the config (path and a hash of its
/// text), the target and the input. `region` is the AWS configuration's, when the config
/// sets none.
/// What names the target's records, beyond its kind: the domain, instance or base URL and
/// tenant, and the region of an AWS target.
pub(crate) fn target_scope(config: &Config, region: Option<&str>) -> String {
    let t = &config.target;
    let mut scope = Vec::new();
    for (name, value) in [
        ("domain", t.domain.clone()),
        ("instance_id", t.instance_id.clone()),
        ("base_url", t.base_url.clone()),
        ("tenant_id", t.tenant_id.map(|n| n.to_string())),
    ] {
        if let Some(value) = value {
            scope.push(format!("{name}={value}"));
        }
    }
    if t.kind != TargetKind::GenesysUcs
        && let Some(region) = t.region.as_deref().or(region)
    {
        scope.push(format!("region={region}"));
    }
    scope.join(" ")
}

/// The identity a target's sync state is kept under: its kind and [`target_scope`].
pub(crate) fn state_identity(config: &Config, region: Option<&str>) -> TargetIdentity {
    TargetIdentity::new(config.target.kind.name(), target_scope(config, region))
}

/// Opens the target's sync state (`--state`, else `[state] path`, else `./state`), locked
/// for the run.
fn open_state(args: &SyncArgs, config: &Config, region: Option<&str>) -> Result<StateUse, String> {
    let dir = args
        .state
        .clone()
        .or_else(|| config.state.clone())
        .unwrap_or_else(|| PathBuf::from("state"));
    let state =
        SyncState::open(&dir, &state_identity(config, region)).map_err(|e| e.to_string())?;
    Ok(StateUse {
        state,
        full: args.full,
    })
}

fn run_file(
    command: &str,
    config_path: &Path,
    config: &Config,
    input: &str,
    region: Option<&str>,
    retry_failed: Option<&Path>,
) -> Result<RunFile, String> {
    let absolute = |path: &Path| {
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string()
    };
    let text = std::fs::read(config_path)
        .map_err(|e| format!("cannot read the config {}: {e}", config_path.display()))?;
    let target = format!(
        "{} {}",
        config.target.kind.name(),
        target_scope(config, region)
    );
    Ok(RunFile {
        command: command.to_owned(),
        config: absolute(config_path),
        config_sha256: ledger::sha256_hex(&text),
        target,
        input: if input == "<stdin>" {
            input.to_owned()
        } else {
            absolute(Path::new(input))
        },
        retry_failed: retry_failed.map(absolute),
        pid: std::process::id(),
    })
}

/// Runs `plan` or `apply`.
pub(crate) async fn run_sync(
    cx: Context,
    source: Source,
    ledger: Ledger,
    sender: Sender,
    options: SyncOptions,
    progress: Progress,
    interrupts: Interrupts,
) -> Result<(SyncResult, PathBuf), String> {
    let path = ledger.path().to_owned();
    let progress = Arc::new(progress);
    let records = source.records();
    let result = pipeline::sync(
        Arc::new(cx),
        records,
        ledger,
        Arc::new(sender),
        options,
        Arc::clone(&progress),
        interrupts,
    )
    .await;
    progress.finish();
    match result {
        Ok(result) => Ok((result, path)),
        Err(e) => Err(format!(
            "profilesync: the run stopped: {e}; the ledger {} holds the records settled so far",
            path.display()
        )),
    }
}

/// Prints the summary and picks the exit code of a `plan` or `apply` run; writes the diff
/// report's page, which tells the exit code.
pub(crate) fn finish(
    run: &RunInfo,
    result: Result<(SyncResult, PathBuf), String>,
    started: Instant,
    quiet: bool,
    resume_hint: &str,
) -> i32 {
    let command = command_name(run.mode);
    let (mut result, path) = match result {
        Ok(done) => done,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_ABORTED;
        }
    };
    let mut code = exit_code(&result);
    let report = match write_report(&mut result, run, &path, started, code) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("profilesync: {message}");
            code = EXIT_ABORTED;
            None
        }
    };
    if !quiet {
        let mut out = io::stdout().lock();
        let _ = report::summary(
            &mut out,
            command,
            &result.tally,
            result.carried,
            started.elapsed(),
            &result.fields,
            &path,
        );
        let _ = report::costs(
            &mut out,
            result.unchanged_by_state,
            &result.calls,
            &result.reasons,
        );
        if let Some(report) = &report {
            let _ = report.write_to(&mut out);
        }
    }
    if let Some(reason) = &result.aborted {
        eprintln!(
            "profilesync: {command} aborted: {reason}. Records not in the ledger were not \
             sent; continue with: {resume_hint}"
        );
    }
    code
}

/// The exit code of a finished `plan` or `apply` run: 3 stopped, 1 some records invalid or
/// failed, else 0.
pub(crate) fn exit_code(result: &SyncResult) -> i32 {
    if result.aborted.is_some() {
        EXIT_ABORTED
    } else if result.tally.failures() > 0 {
        EXIT_RECORDS_FAILED
    } else {
        EXIT_OK
    }
}

/// Writes the page of the run's diff report, if it has one, and returns the report's files.
/// An error says which file could not be written.
pub(crate) fn write_report(
    result: &mut SyncResult,
    run: &RunInfo,
    ledger: &Path,
    started: Instant,
    exit_code: i32,
) -> Result<Option<ReportPaths>, String> {
    let Some(report) = result.report.take() else {
        return Ok(None);
    };
    let html = report.paths().html.clone();
    let end = RunEnd {
        duration: started.elapsed(),
        exit_code,
        stopped: result.aborted.as_deref(),
        tally: &result.tally,
        carried: result.carried,
        fields: &result.fields,
        ledger,
    };
    report
        .finish(run, &end)
        .map(Some)
        .map_err(|e| format!("cannot write the report {}: {e}", html.display()))
}

/// The command line, for the report: arguments with spaces or quotes are quoted.
fn command_line() -> String {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args
        .next()
        .and_then(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "profilesync".to_owned());
    let mut line = program;
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains([' ', '"', '\'', '\t', '\n', '\\', '$', '`']) {
            line.push('\'');
            line.push_str(&arg.replace('\'', "'\\''"));
            line.push('\'');
        } else {
            line.push_str(&arg);
        }
    }
    line
}

/// The target, for the report: its kind and what names it (domain, instance, base URL),
/// and the endpoint when it is not the default one.
pub(crate) fn describe_target(config: &Config) -> String {
    let target = &config.target;
    let mut text = target.kind.name().to_owned();
    if let Some(domain) = &target.domain {
        text.push_str(&format!(", domain {domain}"));
    }
    if let Some(instance) = &target.instance_id {
        text.push_str(&format!(", instance {instance}"));
    }
    if let Some(url) = &target.base_url {
        text.push_str(&format!(" at {url}"));
    }
    if let Some(region) = &target.region {
        text.push_str(&format!(", region {region}"));
    }
    if let Some(url) = &target.endpoint_url {
        text.push_str(&format!(", endpoint {url}"));
    }
    text
}

/// Loads the config, opens the input and binds the columns: everything that must work
/// before a single record is processed. Errors here exit 2.
fn prepare(args: &RunArgs) -> Result<(Context, Source), String> {
    let config = config::load(&args.config).map_err(|e| e.to_string())?;
    let input = input_path(args.input.as_deref(), &config, &args.config)?;
    let source = Source::open(&input, config.source.format, config.source.delimiter)
        .map_err(|e| format!("profilesync: {e}"))?;
    bind(config, source, &args.config.display().to_string())
}

/// Binds the config's columns to the input's: a column the input lacks is a config error.
pub(crate) fn bind(
    config: Config,
    source: Source,
    config_name: &str,
) -> Result<(Context, Source), String> {
    let plan = Plan::bind(
        &config.source.key,
        config.matching.id_column(),
        config.matching.search_column(),
        &config.rules,
        |name| source.resolve(name),
    )
    .map_err(|missing| missing_columns(config_name, &source, &missing))?;
    let cx = Context {
        config,
        plan,
        input: source.name.clone(),
    };
    Ok((cx, source))
}

/// The error for columns the config names but the input lacks. The input's header names
/// are listed only when the first row reads as a header: some configured column is there,
/// and every name looks like a column name. Otherwise the first row is probably data (a
/// file without a header row) and its values are personal data, so none is printed.
fn missing_columns(config_name: &str, source: &Source, missing: &[String]) -> String {
    let mut message = format!(
        "{config_name}: the config names columns that `{}` does not have: {}",
        source.name,
        missing.join(", ")
    );
    let found_some =
        source.header.len() > missing.len() && source.header.iter().any(|h| !missing.contains(h));
    let names = source.header.iter().all(|h| looks_like_column_name(h));
    if found_some && names {
        message.push_str(&format!("; its columns are: {}", source.header.join(", ")));
    } else if found_some {
        message.push_str(
            "; its other columns are not listed, as some of its header cells do not look like \
             column names (they may be personal data)",
        );
    } else if source.format == crate::source::SourceFormat::Csv {
        message.push_str(&format!(
            "; its first row ({} fields) does not look like a header (it looks like data): \
             is the header row missing? Its values are not shown, as they may be personal data",
            source.header.len()
        ));
    }
    message
}

/// Whether a CSV header cell reads as a column name rather than a value: short, no `@`,
/// starting with a letter or `_`, and made of letters, digits, spaces and `_-./#:()&'`.
fn looks_like_column_name(name: &str) -> bool {
    let Some(first) = name.chars().next() else {
        return true;
    };
    name.chars().count() <= 64
        && (first.is_alphabetic() || first == '_')
        && name.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    ' ' | '_' | '-' | '.' | '/' | '#' | ':' | '(' | ')' | '&' | '\''
                )
        })
}

/// The input: the command line's, else `[source] path` relative to the working directory.
fn input_path(arg: Option<&str>, config: &Config, config_file: &Path) -> Result<String, String> {
    arg.map(str::to_owned)
        .or_else(|| config.source.path.clone())
        .ok_or_else(|| {
            format!(
                "{}: no input: give INPUT on the command line or set [source] path",
                config_file.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_cells_that_look_like_values_are_told_apart() {
        for name in [
            "crm_id",
            "First Name",
            "E-mail (home)",
            "Q&A",
            "x.y/z",
            "Straße",
            "",
        ] {
            assert!(looks_like_column_name(name), "{name:?}");
        }
        for value in [
            "Lena.ONeil0@Example.COM",
            "(253) 724-7794",
            "+12537247794",
            "07/12/1980",
            "12 Main St, Apt 4",
            "db5b\u{2026}; drop",
            "a\r\nb",
        ] {
            assert!(!looks_like_column_name(value), "{value:?}");
        }
    }
}
