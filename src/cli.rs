//! The command line: argument parsing, and each command from its arguments to its exit code.
//!
//! Parsing is all this module does: a command's arguments become a
//! [`run::CheckRequest`] or [`run::SyncRequest`], and [`crate::run`] builds and runs it. Exit
//! codes are the contract's ([`run::EXIT_OK`] and the others).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::logging::{self, LogArgs};
use crate::run::{self, CheckRequest, ConfigFrom, EXIT_OK, EXIT_USAGE, InputFrom, SyncRequest};
use crate::schema::TargetKind;
use crate::summary::{self, RunSummary};
use crate::targets::Mode;

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
    /// Write a first config from an export's header and first records: each column
    /// matched to a target field, with the transforms its values call for. No value of the
    /// file is written into it.
    Init {
        /// customer-profiles, connect-user or genesys-ucs.
        target: String,
        /// The export: .csv (any delimiter) or .jsonl / .ndjson, optionally .gz.
        input: PathBuf,
        /// Write the config to FILE (never over an existing one) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Erase exactly the records of a list of keys (an erasure request), with a ledger as
    /// evidence.
    Erase(EraseArgs),
    /// A local stand-in for the three target APIs, for rehearsals and tests.
    Emulator(crate::emulator::EmulatorArgs),
    /// The sync state kept in S3.
    #[command(subcommand)]
    State(StateCommand),
}

/// `profilesync state …`.
#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Remove a state's lease by its id (after its holder died; the id is in the message of
    /// the run it stopped).
    Unlock {
        /// The config file whose [state] path is the s3:// location.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The s3://BUCKET/PREFIX/ location (overrides the config's [state] path).
        #[arg(long, value_name = "S3_URL")]
        state: Option<PathBuf>,
        /// The lease's id.
        lease_id: String,
    },
}

/// Arguments of `erase`.
#[derive(Debug, Args)]
struct EraseArgs {
    /// The config file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// A file of [source] key values (or target ids), one a line.
    keys: PathBuf,
    /// Show what would be erased (would_delete); delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where to write the erasure ledger (default: a new file under ./ledgers/).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// The sync state: a local directory or s3://BUCKET/PREFIX/ (overrides [state] path; default ./state).
    #[arg(long, value_name = "PATH")]
    state: Option<PathBuf>,
    /// Erase beyond the guard when the keys are exactly N.
    #[arg(long, value_name = "N")]
    approve_deletes: Option<u64>,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
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
    /// [mirror]: delete the records absent from the source even beyond the guard, when they
    /// are exactly N (the count a reviewed plan showed).
    #[arg(long, value_name = "N")]
    approve_deletes: Option<u64>,
    /// The sync state: a local directory or s3://BUCKET/PREFIX/ (overrides [state] path; default ./state).
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
        Command::Check(args) => {
            summarized("check", &args, |s| run::check(&args.check_request(), s))
        }
        Command::Plan(args) => summarized("plan", &args.run, |s| {
            run::sync(args.sync_request(Mode::Plan), s)
        }),
        Command::Apply(args) => {
            let mode = if args.dry_run {
                Mode::Plan
            } else {
                Mode::Apply
            };
            summarized(mode.command(), &args.run, |s| {
                run::sync(args.sync_request(mode), s)
            })
        }
        Command::Erase(args) => run::erase::erase(&run::erase::EraseRequest {
            config: args.config,
            keys: args.keys,
            dry_run: args.dry_run,
            ledger: args.ledger,
            state: args.state,
            approve_deletes: args.approve_deletes,
            quiet: args.quiet,
        }),
        Command::Demo => crate::demo::run(),
        Command::Skeleton { target } => skeleton(&target),
        Command::Init {
            target,
            input,
            output,
        } => crate::init::run(&target, &input, output.as_deref()),
        Command::Emulator(args) => crate::emulator::run_cli(args),
        Command::State(StateCommand::Unlock {
            config,
            state,
            lease_id,
        }) => run::state::unlock_command(config.as_deref(), state.as_deref(), &lease_id),
    }
}

impl RunArgs {
    /// What `check` is asked to do.
    fn check_request(&self) -> CheckRequest {
        CheckRequest {
            config: self.config.clone(),
            input: self.input.clone(),
            ledger: self.ledger.clone(),
            quiet: self.quiet,
            progress: self.progress(),
        }
    }

    /// Whether to show the progress: not with `--quiet` or `--no-progress`. With more logs
    /// (`-v`) it is logged rather than drawn (see [`crate::report::Progress`]).
    fn progress(&self) -> bool {
        !self.quiet && !self.no_progress
    }
}

impl SyncArgs {
    /// What `plan` or `apply` (in `mode`) is asked to do.
    fn sync_request(&self, mode: Mode) -> SyncRequest {
        SyncRequest {
            mode,
            label: mode.command().to_owned(),
            name: mode.command().to_owned(),
            out_dir: PathBuf::new(),
            config: ConfigFrom::File(self.run.config.clone()),
            input: InputFrom::Path(self.run.input.clone()),
            command_line: command_line(),
            args: std::env::args_os()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            ledger: self.run.ledger.clone(),
            resume: self.resume,
            retry_failed: self.retry_failed.clone(),
            rate: self.rate.clone(),
            concurrency: self.concurrency,
            max_errors: self.max_errors,
            report: self.report.clone(),
            show_values: self.show_values,
            full: self.full,
            approve_deletes: self.approve_deletes,
            state: self.state.clone(),
            quiet: self.run.quiet,
            progress: self.run.progress(),
            sdk: None,
        }
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

/// The command line, for the report: arguments with spaces or quotes are quoted.
fn command_line() -> String {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "profilesync".to_owned());
    let args: Vec<String> = args.collect();
    run::shell_line(&program, &args)
}
