//! Shared fixtures: run the binary in a scratch folder, write inputs, read the ledger.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root, for the bundled samples and configs.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch folder with helpers to write files and run `profilesync` inside it.
pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a fixture");
        path
    }

    /// Runs `profilesync ARGS` with this folder as the working directory.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_profilesync"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run profilesync");
        Run {
            output,
            dir: self.dir.path().to_owned(),
        }
    }
}

/// The outcome of one run.
pub struct Run {
    pub output: Output,
    dir: PathBuf,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().expect("an exit code")
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The ledger entries in the file at `path` (relative to the run's folder).
    pub fn ledger(&self, path: &str) -> Vec<Value> {
        read_ledger(&self.dir.join(path))
    }
}

/// Asserts that a run stopped before it took on any record: it exited with `code`, said
/// `says` on standard error, and created no ledger at `ledger`.
pub fn assert_stopped_before_any_record(out: &Output, code: i32, says: &str, ledger: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(says), "expected {says:?} in: {stderr}");
    assert!(
        !ledger.exists(),
        "no record is taken on, so no ledger: {}",
        ledger.display()
    );
}

/// Reads a JSON Lines ledger.
pub fn read_ledger(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON ledger line"))
        .collect()
}

/// A Customer Profiles config over the given fields, reading `input`.
pub fn profiles_config(fields: &str) -> String {
    format!(
        r#"[source]
key = "crm_id"

[target]
kind = "customer-profiles"
domain = "ExampleDomainName"

[match]
id = "profile_id"

[fields]
{fields}
"#
    )
}

/// A valid ProfileId derived from a number.
pub fn pid(n: u32) -> String {
    format!("{n:032x}")
}

/// `profilesync ARGS` in `dir` as an AWS user runs it: only the standard AWS environment
/// (made-up keys, `us-east-1`, `endpoint_var` = `endpoint`), no shared files, no instance
/// metadata.
pub fn aws_command(
    dir: &Dir,
    endpoint_var: &str,
    endpoint: &str,
    args: &[&str],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_profilesync"));
    cmd.args(args)
        .current_dir(dir.path(""))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env(endpoint_var, endpoint)
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Waits until the ledger at `path` has at least `n` entries; fails the test after 10 s.
pub async fn wait_for_entries(path: &Path, n: usize) {
    for _ in 0..400 {
        if std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{} never reached {n} entries", path.display());
}

/// Ledger entries in record order.
pub fn by_record(ledger: &[Value]) -> Vec<Value> {
    let mut sorted = ledger.to_vec();
    sorted.sort_by_key(|e| e["record"].as_u64());
    sorted
}

/// A process's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the ledger holds records 1..=n, each exactly once.
pub fn assert_every_record_once(ledger: &[Value], n: u64) {
    let mut records: Vec<u64> = ledger
        .iter()
        .map(|e| e["record"].as_u64().expect("a record number"))
        .collect();
    records.sort_unstable();
    assert_eq!(records, (1..=n).collect::<Vec<_>>(), "every record once");
}

/// `COMMAND --config CONFIG in.csv --ledger LEDGER --no-progress EXTRA...`: the arguments of a
/// run over the scratch folder's `in.csv`.
pub fn sync_args<'a>(
    command: &'a str,
    config: &'a str,
    ledger: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--config",
        config,
        "in.csv",
        "--ledger",
        ledger,
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    args
}
