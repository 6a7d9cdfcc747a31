//! One place builds a run: from what a `check`, `plan` or `apply` is asked to do to every
//! object it needs, and from its end to the summary and the exit code.
//!
//! A [`CheckRequest`] or [`SyncRequest`] says what to run in plain data, whoever asks: the
//! command line ([`crate::cli`] only parses arguments into one) or the demo (the bundled
//! samples, pointed at its emulator). From it this module loads and binds the input
//! (`input.rs`), makes the target's client with its limiters and retry policy and runs its
//! preflight ([`connect`]), opens the sync state, the ledger with its run file, the resume
//! selection and the diff report (`files.rs`), runs the pipeline, and prints the summary and
//! picks the exit code (`finish.rs`). The AWS configuration is loaded only for an AWS target.
//!
//! Exit codes are the contract's: 0 every record ended well, 1 some records are `invalid`
//! or `failed`, 2 usage or configuration error (nothing processed), 3 the run was aborted.

pub mod erase;
mod files;
mod finish;
mod input;
pub mod state;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Local;

use crate::config::{Config, Rate, Target as TargetConfig};
use crate::ledger::{self, Ledger};
use crate::limiter::{Limiters, RateSetting, SharedQuota, shared};
use crate::logging;
use crate::pipeline::{self, Interrupts, Sender, SyncResult};
use crate::report::{self, FieldCounts, Progress, ReportPaths, RunInfo};
use crate::retry::RetryPolicy;
use crate::schema;
use crate::state::TargetIdentity;
use crate::summary::RunSummary;
use crate::targets::aws;
use crate::targets::connect_user::ConnectUser;
use crate::targets::customer_profiles::CustomerProfiles;
use crate::targets::genesys_ucs::GenesysUcs;
use crate::targets::{Mode, PreflightError, Target};

pub use files::shell_line;
pub use finish::exit_code;

/// Every record ended well.
pub const EXIT_OK: i32 = 0;
/// The run finished, but some records are `invalid` or `failed`.
pub const EXIT_RECORDS_FAILED: i32 = 1;
/// Usage or configuration error: nothing was processed.
pub const EXIT_USAGE: i32 = 2;
/// The run was aborted.
pub const EXIT_ABORTED: i32 = 3;
/// The run finished, but the `[mirror]` guard withheld its deletions.
pub const EXIT_DELETIONS_WITHHELD: i32 = 4;

/// Where a run's config comes from.
#[derive(Debug, Clone)]
pub enum ConfigFrom {
    /// A TOML file.
    File(PathBuf),
    /// Text built into the binary (the demo's), named `name`, its target pointed at `url`
    /// (an AWS target's endpoint, in `region`; Genesys' base URL).
    Bundled {
        /// The name messages and the run file give it.
        name: &'static str,
        /// The TOML text.
        text: &'static str,
        /// The endpoint or base URL.
        url: String,
        /// An AWS target's region.
        region: &'static str,
    },
}

impl ConfigFrom {
    /// The config's name in messages, the report and the run file.
    fn name(&self) -> String {
        match self {
            ConfigFrom::File(path) => path.display().to_string(),
            ConfigFrom::Bundled { name, .. } => (*name).to_owned(),
        }
    }
}

/// Where a run's records come from.
#[derive(Debug, Clone)]
pub enum InputFrom {
    /// The command line's INPUT (a path, or `-` for standard input), else `[source] path`.
    Path(Option<String>),
    /// CSV bytes built into the binary (the demo's samples), named `name`.
    Bundled {
        /// The name the ledger and messages give it.
        name: &'static str,
        /// The CSV text.
        bytes: &'static [u8],
    },
}

/// What a `check` run is asked to do.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// The config file.
    pub config: PathBuf,
    /// The command line's INPUT (a path, or `-` for standard input), else `[source] path`.
    pub input: Option<String>,
    /// Where to write the ledger (default: a new file under `./ledgers/`).
    pub ledger: Option<PathBuf>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Show the progress line (on a terminal).
    pub progress: bool,
}

/// What a `plan` or `apply` run is asked to do.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Plan or apply.
    pub mode: Mode,
    /// The run's name in the summary (`plan`, `apply`, the demo's `apply again`).
    pub label: String,
    /// What the run's default files are named after: `plan`, `apply`, or the demo's
    /// `demo-connect-user-apply`.
    pub name: String,
    /// The directory of the default `ledgers/` and `reports/` (empty: the working one).
    pub out_dir: PathBuf,
    /// The config.
    pub config: ConfigFrom,
    /// The input.
    pub input: InputFrom,
    /// The command line, for the report.
    pub command_line: String,
    /// The command line's arguments after the program's name, from which the command that
    /// resumes the run is made (empty for the demo, whose runs are not resumed).
    pub args: Vec<String>,
    /// The ledger to write (or, with `resume`, to continue).
    pub ledger: Option<PathBuf>,
    /// Continue an interrupted run from its ledger.
    pub resume: bool,
    /// Send only the records that failed in this ledger.
    pub retry_failed: Option<PathBuf>,
    /// `--rate`: a number or `auto`.
    pub rate: Option<String>,
    /// `--concurrency`.
    pub concurrency: Option<u16>,
    /// Abort after this many failed records.
    pub max_errors: Option<u64>,
    /// The diff report's directory (a plan writes one to `reports/` without it).
    pub report: Option<PathBuf>,
    /// Put values in the diff report.
    pub show_values: bool,
    /// Ignore the sync state (read everything) and refresh it.
    pub full: bool,
    /// `--approve-deletes N`: a mirror run deletes beyond its guard when the candidates are
    /// exactly N.
    pub approve_deletes: Option<u64>,
    /// The sync state's directory (default `[state] path`, else `./state`).
    pub state: Option<PathBuf>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Show the progress line (on a terminal).
    pub progress: bool,
    /// The AWS configuration to use instead of loading it (the demo's made-up credentials).
    pub sdk: Option<aws_types::SdkConfig>,
}

/// Why a run could not start or finish: its exit code, the message for standard error, and
/// the reason alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// The whole message, as printed.
    pub message: String,
    /// Why, without the program's or the command's name: what `--summary-json` and the
    /// demo say.
    pub reason: String,
}

impl Failure {
    /// A failure whose reason is its message, less a leading `profilesync: `.
    fn new(code: i32, message: String) -> Failure {
        let reason = message
            .strip_prefix("profilesync: ")
            .unwrap_or(&message)
            .to_owned();
        Failure {
            code,
            message,
            reason,
        }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_USAGE, message.into())
    }

    fn aborted(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_ABORTED, message.into())
    }

    /// Prints the message, tells the summary the reason, and gives the exit code.
    fn report(self, summary: &mut RunSummary) -> i32 {
        summary.error(&self.reason);
        eprintln!("{}", self.message);
        self.code
    }
}

/// A finished `plan` or `apply` run.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code.
    pub code: i32,
    /// How it ended (its diff report already written: see `report`).
    pub result: SyncResult,
    /// Its ledger.
    pub ledger: PathBuf,
    /// Its diff report's files, if it wrote one.
    pub report: Option<ReportPaths>,
}

/// Runs `check`, and returns its exit code.
pub fn check(request: &CheckRequest, summary: &mut RunSummary) -> i32 {
    let started = Instant::now();
    let config = ConfigFrom::File(request.config.clone());
    let (cx, source) = match input::open(&config, &InputFrom::Path(request.input.clone())) {
        Ok(opened) => opened,
        Err(failure) => return failure.report(summary),
    };
    let ledger_path = request
        .ledger
        .clone()
        .unwrap_or_else(|| ledger::default_path("check"));
    let run = files::run_file("check", &request.config, &cx.config, &cx.input, None, None);
    let mut ledger = match run
        .and_then(|run| Ledger::create_for(&ledger_path, &run).map_err(|e| e.to_string()))
    {
        Ok(ledger) => ledger,
        Err(e) => return Failure::usage(format!("profilesync: {e}")).report(summary),
    };
    summary.ledger(ledger.path());
    let progress = Progress::new(
        request.progress,
        logging::verbose(),
        "check",
        source.progress.clone(),
    );
    let notes = source.notes();
    let paths = source.paths();
    let input = cx.input.clone();
    let result = pipeline::check(cx, source.records(), &mut ledger, &progress);
    progress.finish();
    match result {
        Ok(tally) => {
            summary.checked(&tally);
            let warnings = finish::input_warnings(&paths, &input);
            for warning in &warnings {
                summary.warning(warning);
            }
            if !request.quiet {
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
            finish::print_notes(&notes, request.quiet);
            finish::print_warnings(&warnings);
            if tally.failures() > 0 || !warnings.is_empty() {
                EXIT_RECORDS_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            summary.error(&format!("check aborted: {e}"));
            finish::print_notes(&notes, request.quiet);
            let _ = io::stdout().flush();
            eprintln!(
                "profilesync: check aborted: {e}; the ledger {} holds the records settled so far",
                ledger.path().display()
            );
            EXIT_ABORTED
        }
    }
}

/// Runs `plan` or `apply` on a runtime of its own, and returns its exit code.
pub fn sync(request: SyncRequest, summary: &mut RunSummary) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return Failure::aborted(format!("profilesync: cannot start the async runtime: {e}"))
                .report(summary);
        }
    };
    let code = runtime.block_on(async {
        match run_sync(request, summary).await {
            Ok(finished) => finished.code,
            Err(failure) => failure.report(summary),
        }
    });
    // Do not wait for a reader still blocked on a silent standard input.
    runtime.shutdown_background();
    code
}

/// Builds a `plan` or `apply` run, runs it, prints its summary and writes its report's page.
/// A run that could not start is a [`Failure`] (nothing was sent); one that started ends
/// [`Finished`], with its exit code.
pub async fn run_sync(request: SyncRequest, summary: &mut RunSummary) -> Result<Finished, Failure> {
    let started = Instant::now();
    let started_at = Local::now();
    let (mut cx, source) = input::open(&request.config, &request.input)?;
    overrides(&mut cx.config, &request).map_err(|m| Failure::usage(format!("profilesync: {m}")))?;
    let info = RunInfo {
        mode: request.mode,
        command: request.command_line.clone(),
        config: request.config.name(),
        input: cx.input.clone(),
        target: cx.config.target.describe(),
        started: started_at,
    };
    // Signals are handled from here on, so that one during the preflight exits 3 too.
    let mut interrupts = Interrupts::register()
        .map_err(|e| Failure::aborted(format!("profilesync: cannot watch for Ctrl-C: {e}")))?;
    let connected = tokio::select! {
        connected = connect_and_identify(&cx.config, request.sdk.as_ref()) => connected,
        _ = interrupts.next() => Err(Failure::aborted("interrupted")),
    };
    let (sender, identity) = connected.map_err(|f| {
        let reason = format!("{}; nothing was sent", f.reason);
        Failure {
            code: f.code,
            message: format!("profilesync: {}: {reason}", request.label),
            reason,
        }
    })?;
    let region = sender.target.region();
    let expiration = sender.target.expiration_days();
    let (state, remote) = state::open(&request, &cx.config, &identity, expiration).await?;
    let (remote, lost) = remote.unzip();
    if let Some(lost) = lost {
        interrupts = interrupts.also(lost);
    }
    let opened = match open_files(&request, &cx, region.as_deref()) {
        Ok(opened) => opened,
        Err(failure) => {
            if let Some(remote) = remote {
                remote.abandon().await;
            }
            return Err(failure);
        }
    };
    let mut options = opened.options;
    options.state = Some(state);
    summary.ledger(opened.ledger.path());
    let progress = Progress::new(
        request.progress,
        logging::verbose(),
        &request.label,
        source.progress.clone(),
    );
    let notes = source.notes();
    let paths = source.paths();
    let input = cx.input.clone();
    let path = opened.ledger.path().to_owned();
    let progress = Arc::new(progress);
    let run = pipeline::sync(
        Arc::new(cx),
        source.records(),
        opened.ledger,
        Arc::new(sender),
        options,
        Arc::clone(&progress),
        interrupts,
    );
    let mut result = report::logging_progress(&progress, run).await;
    progress.finish();
    // A state in S3: the final upload, then the lease is released. A state that could not
    // be uploaded stops the run (exit 3): the next run redoes what this one did.
    if let Some(remote) = remote
        && let Err(why) = remote.finish().await
    {
        match &mut result {
            Ok(done) => {
                done.aborted = Some(match done.aborted.take() {
                    Some(first) => format!("{first}; also {why}"),
                    None => why,
                })
            }
            Err(e) => *e = std::io::Error::other(format!("{e}; also {why}")),
        }
    }
    let result = result.map(|result| (result, path.clone())).map_err(|e| {
        format!(
            "profilesync: the run stopped: {e}; the ledger {} holds the records settled so far",
            path.display()
        )
    });
    // Only a run that read its whole input can tell that no record has a path.
    let mut result = result;
    if let Ok((result, _)) = &mut result
        && result.aborted.is_none()
    {
        result
            .warnings
            .extend(finish::input_warnings(&paths, &input));
    }
    summary.synced(&result);
    let finished = finish::finish(
        &request,
        &info,
        result,
        started,
        opened.resume_hint.as_deref(),
    );
    finish::print_notes(&notes, request.quiet);
    finished
}

/// The client for the configured target with the config's limiters and retry policy, once
/// its preflight passed. A failure's code is 2 for configuration, 3 otherwise. The AWS
/// configuration is loaded only for an AWS target, and only when `sdk` does not already
/// give it.
pub async fn connect(
    config: &Config,
    sdk: Option<&aws_types::SdkConfig>,
) -> Result<Sender, Failure> {
    let aws = || async {
        match sdk {
            Some(sdk) => sdk.clone(),
            None => aws::load().await,
        }
    };
    // An AWS target's region and credentials are checked before its client is built: what
    // every request needs is said once, at once, and never retried.
    let setup = |e: aws::SetupError| {
        let code = if e.is_config() {
            EXIT_USAGE
        } else {
            EXIT_ABORTED
        };
        Failure::new(code, e.to_string())
    };
    let target = match &config.target {
        TargetConfig::CustomerProfiles(t) => {
            let sdk = aws().await;
            aws::check_setup(&sdk, &t.aws).await.map_err(setup)?;
            CustomerProfiles::new(&sdk, t).map(Target::CustomerProfiles)
        }
        TargetConfig::ConnectUser(t) => {
            let sdk = aws().await;
            aws::check_setup(&sdk, &t.aws).await.map_err(setup)?;
            ConnectUser::new(&sdk, t).map(Target::ConnectUser)
        }
        TargetConfig::GenesysUcs(t) => {
            GenesysUcs::new(t, |name| std::env::var(name).ok()).map(Target::GenesysUcs)
        }
    }
    .map_err(Failure::usage)?;
    // Redis (`[limits] shared`) is reached before the preflight's first request.
    let limiters = limiters(config).await.map_err(|e| {
        tracing::info!(error = %e, "shared quota unreachable");
        Failure::aborted(e.to_string())
    })?;
    let sender = Sender {
        target,
        limiters: Arc::new(limiters),
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
        Err(e) => Err(preflight_failure(e)),
    }
}

/// The run file (a config file's run) and the ledger with the run's options.
fn open_files(
    request: &SyncRequest,
    cx: &pipeline::Context,
    region: Option<&str>,
) -> Result<files::Opened, Failure> {
    // A run of a config file has a run file beside its ledger (what `--resume` checks); the
    // demo's bundled runs are not resumed, and have none.
    let run = match &request.config {
        ConfigFrom::File(path) => Some(
            files::run_file(
                request.mode.command(),
                path,
                &cx.config,
                &cx.input,
                region,
                request.retry_failed.as_deref(),
            )
            .map_err(|m| Failure::usage(format!("profilesync: {m}")))?,
        ),
        ConfigFrom::Bundled { .. } => None,
    };
    files::open(request, &cx.config, run.as_ref())
        .map_err(|m| Failure::usage(format!("profilesync: {m}")))
}

/// [`connect`], then the identity the target's sync state is kept under, which the target
/// tells once connected (see `Target::identity`).
async fn connect_and_identify(
    config: &Config,
    sdk: Option<&aws_types::SdkConfig>,
) -> Result<(Sender, TargetIdentity), Failure> {
    let sender = connect(config, sdk).await?;
    let identity = sender.identity().await.map_err(preflight_failure)?;
    sender.limiters.bind(&identity.quota_scope());
    tracing::info!(kind = identity.kind(), "target identity known");
    Ok((sender, identity))
}

/// A preflight that failed: exit 2 for the configuration, 3 otherwise.
fn preflight_failure(e: PreflightError) -> Failure {
    Failure::new(if e.config { EXIT_USAGE } else { EXIT_ABORTED }, e.message)
}

/// One limiter per API operation of the target, each at its `[limits]` setting: the one
/// place the backend is chosen, local buckets or, with `[limits] shared`, the account-wide
/// quota in Redis (connected to here, so an unreachable Redis stops the run before any
/// request).
async fn limiters(config: &Config) -> Result<Limiters, shared::Unreachable> {
    let setting = |(rate, burst): (Rate, u32)| match rate {
        Rate::PerSecond(rate) => RateSetting::Fixed { rate, burst },
        Rate::Auto { start } => RateSetting::Auto { start, burst },
    };
    let limits = &config.limits;
    let operations = schema::operations(config.target.kind())
        .iter()
        .map(|op| (*op, setting(limits.of(op))));
    let other = setting((limits.rate, limits.burst));
    Ok(match &limits.shared {
        None => Limiters::new(operations, other),
        Some(url) => {
            let quota = SharedQuota::connect(url, limits.shared_peers).await?;
            Limiters::with_shared(operations, other, Arc::new(quota))
        }
    })
}

/// Applies `--rate` and `--concurrency`.
fn overrides(config: &mut Config, request: &SyncRequest) -> Result<(), String> {
    if let Some(rate) = &request.rate {
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
    if let Some(n) = request.concurrency {
        config.limits.concurrency = usize::from(n);
    }
    Ok(())
}

/// The clock the sync state's write times are kept on: the system clock, moved by
/// `PROFILESYNC_CLOCK_OFFSET_DAYS` days when set (to rehearse expiry against a target whose
/// clock was moved the same way, such as the emulator's `--clock-offset-days`).
fn now() -> u64 {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let offset_days = std::env::var("PROFILESYNC_CLOCK_OFFSET_DAYS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    system.saturating_add_signed(offset_days.saturating_mul(86_400))
}
