//! The command line: argument parsing, and each command from arguments to exit code.
//!
//! Exit codes are the contract's: 0 every record ended well, 1 some records are `invalid`
//! or `failed`, 2 usage or configuration error (nothing processed), 3 the run was aborted.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::ledger::{self, Ledger};
use crate::mapping::Plan;
use crate::pipeline::{self, Context};
use crate::report::{self, Progress};
use crate::schema::TargetKind;
use crate::source::Source;

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
    let progress = Progress::new(!args.quiet && !args.no_progress, "check");
    let result = pipeline::check(cx, source.records(), &mut ledger, &progress);
    progress.finish();
    match result {
        Ok(tally) => {
            if !args.quiet {
                let _ = report::summary(
                    &mut io::stdout().lock(),
                    "check",
                    &tally,
                    started.elapsed(),
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

/// Loads the config, opens the input and binds the columns: everything that must work
/// before a single record is processed. Errors here exit 2.
fn prepare(args: &RunArgs) -> Result<(Context, Source), String> {
    let config = config::load(&args.config).map_err(|e| e.to_string())?;
    let input = input_path(args.input.as_deref(), &config, &args.config)?;
    let source = Source::open(&input, config.source.format, config.source.delimiter)
        .map_err(|e| format!("profilesync: {e}"))?;
    let plan = Plan::bind(
        &config.source.key,
        config.matching.id_column(),
        config.matching.search_column(),
        &config.rules,
        |name| source.resolve(name),
    )
    .map_err(|missing| {
        format!(
            "{}: the config names columns that `{}` does not have: {}; its columns are: {}",
            args.config.display(),
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
