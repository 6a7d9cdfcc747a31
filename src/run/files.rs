//! The files a `plan` or `apply` run writes, and which records it sends: the ledger (new, or
//! continued with `--resume`) with its run file, the `--retry-failed` selection, and the
//! diff report.

use std::path::{Path, PathBuf};

use super::SyncRequest;
use crate::config::Config;
use crate::ledger::{self, InputFile, Ledger, RunFile, Tally};
use crate::pipeline::{Selection, SyncOptions};
use crate::report::DiffReport;
use crate::targets::Mode;

/// A run's ledger, what it sends, and how to continue it if it stops.
pub(super) struct Opened {
    /// The ledger to write.
    pub ledger: Ledger,
    /// The pipeline's options: mode, selection, carried counts, report (no state yet).
    pub options: SyncOptions,
    /// The command that continues the run (none without a run file: it cannot be resumed).
    pub resume_hint: Option<String>,
}

/// Opens the ledger (continuing it with `--resume`), picks the records to send and creates
/// the diff report.
pub(super) fn open(
    request: &SyncRequest,
    config: &Config,
    run: Option<&RunFile>,
) -> Result<Opened, String> {
    let name = request.name.as_str();
    let ledgers = request.out_dir.join("ledgers");
    let mut options = SyncOptions {
        mode: request.mode,
        selection: Selection::All,
        max_errors: request.max_errors,
        concurrency: config.limits.concurrency,
        carried: Tally::default(),
        report: None,
        state: None,
        approve_deletes: request.approve_deletes,
    };
    // The resumed ledger is locked, and its run file checked, before it is read.
    let resumed = match (request.resume, run) {
        (false, _) => None,
        (true, None) => return Err("a bundled run cannot be resumed".to_owned()),
        (true, Some(run)) => {
            let path = match &request.ledger {
                Some(path) => path.clone(),
                None => newest_of_run(&ledgers, name, run)?,
            };
            let ledger = Ledger::resume(&path, run).map_err(|e| e.to_string())?;
            let previous = ledger::read_previous(&path).map_err(|e| e.to_string())?;
            if !request.quiet {
                eprintln!(
                    "resuming {}: {} records already settled",
                    path.display(),
                    previous.settled.len()
                );
            }
            Some((ledger, previous))
        }
    };
    options.selection = match (&request.retry_failed, &resumed) {
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
        None => {
            let path = request
                .ledger
                .clone()
                .unwrap_or_else(|| ledger::default_path_in(&ledgers, name));
            match run {
                Some(run) => Ledger::create_for(&path, run),
                None => Ledger::create(&path),
            }
            .map_err(|e| e.to_string())?
        }
    };
    let report_dir = match (request.mode, &request.report) {
        (_, Some(dir)) => Some(dir.clone()),
        (Mode::Plan, None) => Some(request.out_dir.join("reports")),
        (Mode::Apply, None) => None,
    };
    if let Some(dir) = report_dir {
        options.report =
            Some(DiffReport::create(&dir, name, request.show_values).map_err(|e| e.to_string())?);
    }
    let resume_hint = run.map(|_| resume_command(&request.args, ledger.path()));
    Ok(Opened {
        ledger,
        options,
        resume_hint,
    })
}

/// For `--resume` without `--ledger`: the newest default-named ledger of the command under
/// `dir` whose run file names the same config, input and `--retry-failed` ledger (a newer
/// one of another config or input is passed over, not refused).
fn newest_of_run(dir: &Path, command: &str, run: &RunFile) -> Result<PathBuf, String> {
    let candidates = ledger::newest_first(dir, command);
    let same = |path: &PathBuf| {
        RunFile::read(path).ok().flatten().is_some_and(|then| {
            then.config == run.config
                && then.input == run.input
                && then.retry_failed == run.retry_failed
        })
    };
    match candidates.iter().find(|path| same(path)) {
        Some(path) => Ok(path.clone()),
        None => Err(format!(
            "--resume found no `{command}` ledger of this config and input under {} ({} of \
             other runs): give the interrupted run's ledger with --ledger PATH",
            dir.display(),
            candidates.len()
        )),
    }
}

/// The command that continues a run: its own arguments, every option kept (`--config`,
/// `--state`, `--full`, `--report`, `--rate`, ...), less any `--resume` and `--ledger`, then
/// `--resume --ledger LEDGER`; quoted for a POSIX shell, so that it runs as printed.
pub(super) fn resume_command(args: &[String], ledger: &Path) -> String {
    let mut kept = Vec::with_capacity(args.len() + 3);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--resume" => {}
            "--ledger" => {
                rest.next();
            }
            a if a.starts_with("--ledger=") => {}
            _ => kept.push(arg.clone()),
        }
    }
    kept.extend([
        "--resume".to_owned(),
        "--ledger".to_owned(),
        ledger.display().to_string(),
    ]);
    shell_line("profilesync", &kept)
}

/// `program` and its arguments as one line for a POSIX shell: an argument that is empty or
/// holds a space, a quote or another character the shell reads is put in single quotes.
pub fn shell_line(program: &str, args: &[String]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            line.push_str(arg);
        } else {
            line.push('\'');
            line.push_str(&arg.replace('\'', "'\\''"));
            line.push('\'');
        }
    }
    line
}

/// `--retry-failed EARLIER` re-drives a `plan` or `apply` ledger of the same input and
/// target: one that says otherwise in its run file is refused. (An older ledger without a
/// run file is taken; its keys are still checked against the input.)
fn check_earlier(earlier: &Path, run: Option<&RunFile>) -> Result<(), String> {
    let (Some(then), Some(run)) = (RunFile::read(earlier).map_err(|e| e.to_string())?, run) else {
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
/// text), the target and the input (path, and its size, modification time and a hash of its
/// first MiB). `region` is the AWS configuration's, when the config
/// sets none.
pub(super) fn run_file(
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
        config.target.kind().name(),
        config.target.scope(region)
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
        input_file: match input {
            "<stdin>" => None,
            path => Some(
                InputFile::of(Path::new(path))
                    .map_err(|e| format!("cannot read the input {path}: {e}"))?,
            ),
        },
        retry_failed: retry_failed.map(absolute),
        pid: std::process::id(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn the_resume_command_keeps_every_option_and_names_the_ledger() {
        let hint = resume_command(
            &args(
                "-v apply --config c.toml in.csv --state st --full --rate 40 --report rep --ledger old.jsonl --resume",
            ),
            Path::new("ledgers/20261207-120000-apply.jsonl"),
        );
        assert_eq!(
            hint,
            "profilesync -v apply --config c.toml in.csv --state st --full --rate 40 --report rep \
             --resume --ledger ledgers/20261207-120000-apply.jsonl"
        );
        let hint = resume_command(
            &args("plan --config=c.toml --ledger=x.jsonl --retry-failed first.jsonl"),
            Path::new("x.jsonl"),
        );
        assert_eq!(
            hint,
            "profilesync plan --config=c.toml --retry-failed first.jsonl --resume --ledger x.jsonl"
        );
    }

    #[test]
    fn shell_lines_quote_what_the_shell_would_read() {
        let line = shell_line(
            "profilesync",
            &[
                "my export.csv".into(),
                "it's".into(),
                String::new(),
                "$HOME".into(),
                "a/b-c_d.e".into(),
            ],
        );
        assert_eq!(
            line,
            "profilesync 'my export.csv' 'it'\\''s' '' '$HOME' a/b-c_d.e"
        );
    }
}
