//! Logs on standard error, for finding out why a night's run failed: `-v`, `-vv`,
//! `RUST_LOG` and `--log-format`, with `tracing`.
//!
//! # Levels
//!
//! - default: `warn` for profilesync's own modules and nothing from other crates, so a run
//!   prints what it always printed;
//! - `-v`: `info` for profilesync's own modules: run start and end, the preflight's result,
//!   why a run stopped; other crates' warnings (the AWS SDK's) too;
//! - `-vv`: `debug` for them: one line per request (operation, record number and key, HTTP
//!   status or error code, attempt, the backoff chosen) and one per settled record;
//! - `RUST_LOG`: directives added on top (`RUST_LOG=aws_smithy_runtime=debug`), winning over
//!   `-v` for the same target. The AWS SDK, `hyper` and `reqwest` stay at `warn` unless
//!   `RUST_LOG` names them: their debug logs may carry request details.
//!
//! # What is never logged
//!
//! Field values, credentials, headers and URLs. The per-request line carries only the
//! operation's name, ids (record number, line, the `[source] key` and the target's id, which
//! the ledger holds too), the API's error code and status, and the retry decision; the
//! API's message stays in the ledger. `tests/it/secrets.rs` runs every failure path with
//! `-vv` and checks the output for the credentials and the input's values.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{ArgAction, Args, ValueEnum};
use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// The target of the per-request lines (a child of `profilesync`, so `-vv` enables it).
pub const REQUEST: &str = "profilesync::request";
/// The target of the per-record lines.
pub const RECORD: &str = "profilesync::record";

/// The logging options, valid with every command.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log more on standard error: -v the run's steps, -vv also one line per request.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// How log lines are written: text, or json (one JSON object per line).
    #[arg(
        long,
        value_enum,
        default_value_t = LogFormat::Text,
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Whether logging is more verbose than the default (then the progress line is off, so
/// that it does not garble the log lines).
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Whether standard error is for JSON log lines only (`--log-format json`).
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether standard error carries JSON log lines only (`--log-format json`): then the run's
/// plain notes (which sync state file it uses) are left out, so that every line parses.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Whether `-v`, `-vv` or `RUST_LOG` asked for more than the default logs.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// The filter for `verbose` (the count of `-v`) and `RUST_LOG`'s text. Returns, beside it,
/// the `RUST_LOG` directives that could not be parsed (they are ignored).
pub fn filter(verbose: u8, rust_log: Option<&str>) -> (EnvFilter, Vec<String>) {
    // Without -v, other crates' warnings (the AWS SDK's about a missing config file, say)
    // stay off, so that standard error says what it always said.
    let (others, own) = match verbose {
        0 => ("off", "warn"),
        1 => ("warn", "info"),
        2 => ("warn", "debug"),
        _ => ("warn", "trace"),
    };
    let mut filter = EnvFilter::new(format!("{others},profilesync={own}"));
    let mut ignored = Vec::new();
    for text in rust_log
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        match text.parse::<Directive>() {
            Ok(directive) => filter = filter.add_directive(directive),
            Err(e) => ignored.push(format!("{text} ({e})")),
        }
    }
    (filter, ignored)
}

/// Installs the log subscriber for the process, writing to standard error. Call once, first
/// thing; a second call changes nothing.
pub fn init(args: &LogArgs) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, ignored) = filter(args.verbose, rust_log.as_deref());
    for directive in ignored {
        eprintln!("profilesync: warning: RUST_LOG: ignoring {directive}");
    }
    VERBOSE.store(
        args.verbose > 0 || rust_log.is_some_and(|r| !r.trim().is_empty()),
        Ordering::Relaxed,
    );
    JSON.store(args.log_format == LogFormat::Json, Ordering::Relaxed);
    let ansi = args.log_format == LogFormat::Text && io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(ansi);
    // Already installed (a second call): keep the first.
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// The span of one API request with its retries.
pub fn request_span(operation: &'static str) -> Span {
    tracing::debug_span!(target: REQUEST, "request", operation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{ApiError, ErrorClass, log_attempt};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Log lines written under `filter` while `emit` runs, as text.
    fn captured(filter: EnvFilter, json: bool, emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false);
        if json {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn emit_one_of_each() {
        tracing::debug!(target: "aws_smithy_runtime::client", "sdk debug");
        tracing::warn!(target: "aws_config::imds", "sdk warn");
        tracing::info!(target: "profilesync::cli", "own info");
        let _span = request_span("UpdateProfile").entered();
        let throttled = ApiError {
            class: ErrorClass::Throttled,
            code: "ThrottlingException".to_owned(),
            message: "Rate exceeded".to_owned(),
            status: Some(429),
            retry_after: None,
        };
        log_attempt(1, Some(&throttled), Some(Duration::from_millis(137)));
        log_attempt(2, None, None);
    }

    #[test]
    fn each_v_opens_profilesync_s_own_logs_and_leaves_the_sdk_at_warn() {
        let quiet = captured(filter(0, None).0, false, emit_one_of_each);
        assert_eq!(quiet, "", "nothing new on standard error by default");

        let info = captured(filter(1, None).0, false, emit_one_of_each);
        assert!(
            info.contains("own info") && info.contains("sdk warn") && !info.contains("attempt=1"),
            "{info}"
        );

        let debug = captured(filter(2, None).0, false, emit_one_of_each);
        assert!(
            !debug.contains("sdk debug"),
            "the SDK stays at warn: {debug}"
        );
        assert!(
            debug.contains("request{operation=\"UpdateProfile\"}")
                && debug.contains("attempt=1 outcome=\"retry\" class=\"throttled\"")
                && debug.contains("code=\"ThrottlingException\" status=429 wait_ms=137")
                && debug.contains("attempt=2 outcome=\"ok\""),
            "{debug}"
        );
        assert!(!debug.contains("Rate exceeded"), "no API message: {debug}");
    }

    #[test]
    fn rust_log_adds_directives_and_wins_over_v() {
        let (sdk, ignored) = filter(0, Some("aws_smithy_runtime=debug, not a directive=="));
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        let out = captured(sdk, false, emit_one_of_each);
        assert!(
            out.contains("sdk debug") && !out.contains("own info"),
            "{out}"
        );

        let out = captured(
            filter(2, Some("profilesync=warn")).0,
            false,
            emit_one_of_each,
        );
        assert!(!out.contains("attempt="), "{out}");
    }

    #[test]
    fn json_lines_carry_the_event_and_its_spans() {
        let out = captured(filter(2, None).0, true, emit_one_of_each);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        let retry = lines
            .iter()
            .find(|l| l["outcome"] == "retry")
            .expect("the retry line");
        assert_eq!(retry["attempt"], 1);
        assert_eq!(retry["status"], 429);
        assert_eq!(retry["wait_ms"], 137);
        assert_eq!(retry["level"], "DEBUG");
        assert_eq!(retry["spans"][0]["operation"], "UpdateProfile");
        assert!(retry["timestamp"].is_string());
    }
}
