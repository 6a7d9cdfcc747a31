//! The command line: argument parsing, and each command from arguments to exit code.
//!
//! Exit codes are the contract's: 0 every record ended well, 1 some records are `invalid`
//! or `failed`, 2 usage or configuration error (nothing processed), 3 the run was aborted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Local;

use aws_config::BehaviorVersion;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Rate};
use crate::ledger::{self, Ledger};
use crate::limiter::{Limiter, RateSetting};
use crate::mapping::Plan;
use crate::pipeline::{self, Context, Interrupts, Selection, Sender, SyncOptions, SyncResult};
use crate::report::{self, DiffReport, FieldCounts, Progress, ReportPaths, RunEnd, RunInfo, Tally};
use crate::retry::RetryPolicy;
use crate::schema::TargetKind;
use crate::source::Source;
use crate::target::customer_profiles::CustomerProfiles;
use crate::target::genesys_ucs::GenesysUcs;
use crate::target::{Mode, Target};

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
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Plan(args) => sync_command(&args, Mode::Plan),
        Command::Apply(args) => sync_command(
            &args,
            if args.dry_run {
                Mode::Plan
            } else {
                Mode::Apply
            },
        ),
        Command::Demo => crate::demo::run(),
        Command::Skeleton { target } => skeleton(&target),
        Command::Emulator(args) => crate::emulator::run_cli(args),
    }
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

fn check(args: &RunArgs) -> i32 {
    let started = Instant::now();
    let (cx, source) = match prepare(args) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_USAGE;
        }
    };
    let ledger_path = args
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::default_path("check"));
    let mut ledger = match Ledger::create(&ledger_path) {
        Ok(ledger) => ledger,
        Err(e) => {
            eprintln!("profilesync: {e}");
            return EXIT_USAGE;
        }
    };
    let progress = Progress::new(
        !args.quiet && !args.no_progress,
        "check",
        source.progress.clone(),
    );
    let result = pipeline::check(cx, source.records(), &mut ledger, &progress);
    progress.finish();
    match result {
        Ok(tally) => {
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
            if tally.failures() > 0 {
                EXIT_RECORDS_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
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

fn sync_command(args: &SyncArgs, mode: Mode) -> i32 {
    let started = Instant::now();
    let started_at = Local::now();
    let command = command_name(mode);
    let (mut cx, source) = match prepare(&args.run) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_USAGE;
        }
    };
    if let Err(message) = apply_overrides(&mut cx.config, args) {
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
            eprintln!("profilesync: cannot start the async runtime: {e}");
            return EXIT_ABORTED;
        }
    };
    let code = runtime.block_on(async {
        // Signals are handled from here on, so that one during the preflight exits 3 too.
        let mut interrupts = match Interrupts::register() {
            Ok(interrupts) => interrupts,
            Err(e) => {
                eprintln!("profilesync: cannot watch for Ctrl-C: {e}");
                return EXIT_ABORTED;
            }
        };
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let connected = tokio::select! {
            connected = connect(&cx.config, &sdk) => connected,
            _ = interrupts.next() => Err((EXIT_ABORTED, "interrupted".to_owned())),
        };
        let sender = match connected {
            Ok(sender) => sender,
            Err((code, message)) => {
                eprintln!("profilesync: {command}: {message}; nothing was sent");
                return code;
            }
        };
        let (ledger, options, resume_hint) = match open_ledger(args, mode, &cx.config) {
            Ok(opened) => opened,
            Err(message) => {
                eprintln!("profilesync: {message}");
                return EXIT_USAGE;
            }
        };
        let quiet = args.run.quiet;
        let progress = Progress::new(
            !quiet && !args.run.no_progress,
            command,
            source.progress.clone(),
        );
        let result = run_sync(cx, source, ledger, sender, options, progress, interrupts).await;
        finish(&run, result, started, quiet, &resume_hint)
    });
    // Do not wait for a reader still blocked on a silent standard input.
    runtime.shutdown_background();
    code
}

/// The client for the configured target with the config's limiter and retry policy, once
/// its preflight passed. Errors carry their exit code: 2 for configuration, 3 otherwise.
pub(crate) async fn connect(
    config: &Config,
    sdk: &aws_types::SdkConfig,
) -> Result<Sender, (i32, String)> {
    let target = match config.target.kind {
        TargetKind::CustomerProfiles => Target::CustomerProfiles(
            CustomerProfiles::new(sdk, config).map_err(|e| (EXIT_USAGE, e))?,
        ),
        TargetKind::GenesysUcs => Target::GenesysUcs(
            GenesysUcs::new(config, |name| std::env::var(name).ok())
                .map_err(|e| (EXIT_USAGE, e))?,
        ),
        other => {
            return Err((
                EXIT_USAGE,
                format!("plan and apply do not support {other} yet (check does)"),
            ));
        }
    };
    let limits = config.limits;
    let setting = match limits.rate {
        Rate::PerSecond(rate) => RateSetting::Fixed {
            rate,
            burst: limits.burst,
        },
        Rate::Auto { start } => RateSetting::Auto {
            start,
            burst: limits.burst,
        },
    };
    let sender = Sender {
        target,
        limiter: Limiter::new(setting),
        policy: RetryPolicy::new(limits.max_attempts),
    };
    match sender.preflight().await {
        Ok(warnings) => {
            for warning in warnings {
                eprintln!("profilesync: warning: {warning}");
            }
            Ok(sender)
        }
        Err(e) => Err((if e.config { EXIT_USAGE } else { EXIT_ABORTED }, e.message)),
    }
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
) -> Result<(Ledger, SyncOptions, String), String> {
    let command = command_name(mode);
    let mut options = SyncOptions {
        mode,
        selection: Selection::All,
        max_errors: args.max_errors,
        concurrency: config.limits.concurrency,
        carried: Tally::default(),
        report: None,
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
            let previous = ledger::read_previous(&path).map_err(|e| e.to_string())?;
            if !args.run.quiet {
                eprintln!(
                    "resuming {}: {} records already settled",
                    path.display(),
                    previous.settled.len()
                );
            }
            Some((path, previous))
        }
    };
    options.selection = match (&args.retry_failed, &resumed) {
        (Some(earlier), resumed) => {
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
        Some((path, resumed)) => {
            options.carried = resumed.tally;
            Ledger::append(&path)
        }
        None => Ledger::create(
            &args
                .run
                .ledger
                .clone()
                .unwrap_or_else(|| ledger::default_path(command)),
        ),
    }
    .map_err(|e| e.to_string())?;
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
    .map_err(|missing| {
        format!(
            "{config_name}: the config names columns that `{}` does not have: {}; its columns are: {}",
            source.name,
            missing.join(", "),
            source.header.join(", ")
        )
    })?;
    let cx = Context {
        config,
        plan,
        input: source.name.clone(),
    };
    Ok((cx, source))
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
