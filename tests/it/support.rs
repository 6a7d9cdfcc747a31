//! The one harness of the integration tests: the only file that starts a process.
//!
//! - [`Dir`] is a scratch folder (inputs, configs, ledgers); [`Dir::command`] gives a
//!   [`TestCommand`] for `profilesync ARGS` inside it, and [`Dir::run`] runs one at once.
//! - [`TestCommand`] is a builder with presets for the environments a user runs in:
//!   [`TestCommand::aws`] (only the standard AWS variables: an emulator endpoint, made-up
//!   keys, `us-east-1`, no shared files, no instance metadata) and [`TestCommand::genesys`]
//!   (nothing but `PATH` and the given `GENESYS_UCS_*` variables). It runs from async tests
//!   ([`TestCommand::output`], [`TestCommand::spawn`] for kill and crash tests) and from
//!   sync ones ([`TestCommand::output_sync`], [`TestCommand::spawn_sync`]); either way the
//!   outcome is a [`Run`], which reads as the process's [`Output`].
//! - [`AwsCli`] runs the AWS CLI against an emulator, table-driven by [`CliCase`]s;
//!   [`needs_tool`] skips (or, under `CI`, fails) a test whose tool from outside Cargo is missing;
//!   [`RedisServer`] starts a `redis-server` of the test's own on a [`free_port`].
//! - Shared readers and assertions: [`read_ledger`], [`by_record`], [`statuses`], [`count`],
//!   [`wait_for_entries`], [`assert_every_record_once`], [`assert_stopped_before_any_record`].
//! - The Customer Profiles fixtures most files share: [`customers`], [`seed`], [`config`],
//!   [`seeded`], [`slow_emulator`], [`sync`], [`profile`].
//!
//! Older names kept for branches written against the earlier fixtures: [`aws_command`]
//! (a `tokio::process::Command` from the AWS preset) and [`sync_args`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use profilesync::emulator::{Emulator, EmulatorConfig, EmulatorHandle, FaultConfig};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The repository root, for the bundled samples and configs.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---- The scratch folder ----

/// A scratch folder with helpers to write files and run `profilesync` inside it.
pub struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    /// A new, empty folder, removed when dropped.
    pub fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// `name` inside the folder (`""` for the folder itself).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a fixture");
        path
    }

    /// `profilesync ARGS` with this folder as the working directory and the test's own
    /// environment (a preset replaces it).
    pub fn command(&self, args: &[&str]) -> TestCommand {
        TestCommand::new(env!("CARGO_BIN_EXE_profilesync"), self.dir.path()).args(args)
    }

    /// Runs `profilesync ARGS` with this folder as the working directory.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output_sync()
    }

    /// `apply` of `in.csv` with `c.toml` into `ledger`, against the emulator's Customer
    /// Profiles (see [`sync`]).
    pub async fn apply(&self, emulator: &EmulatorHandle, ledger: &str, extra: &[&str]) -> Run {
        sync(self, emulator, "apply", "c.toml", ledger, extra).await
    }

    /// `plan` of `in.csv` with `c.toml` into `ledger`, against the emulator's Customer
    /// Profiles (see [`sync`]).
    pub async fn plan(&self, emulator: &EmulatorHandle, ledger: &str, extra: &[&str]) -> Run {
        sync(self, emulator, "plan", "c.toml", ledger, extra).await
    }

    /// The entries of the ledger `name` in this folder.
    pub fn ledger(&self, name: &str) -> Vec<Value> {
        read_ledger(&self.path(name))
    }

    /// The entries of the ledger `name` in this folder, in record order.
    pub fn ledger_by_record(&self, name: &str) -> Vec<Value> {
        by_record(&self.ledger(name))
    }
}

// ---- The command builder ----

/// A process to start: `profilesync` (from [`Dir::command`]) or another program
/// ([`TestCommand::program`]), with its arguments, working directory and environment.
pub struct TestCommand {
    program: OsString,
    args: Vec<OsString>,
    dir: PathBuf,
    clear_env: bool,
    env: Vec<(String, Option<String>)>,
    stdin: bool,
}

impl TestCommand {
    fn new(program: impl Into<OsString>, dir: &Path) -> TestCommand {
        TestCommand {
            program: program.into(),
            args: Vec::new(),
            dir: dir.to_owned(),
            clear_env: false,
            env: Vec::new(),
            stdin: false,
        }
    }

    /// Another program than `profilesync` (a browser, the AWS CLI), run in `dir`.
    pub fn program(program: impl Into<OsString>, dir: &Path) -> TestCommand {
        TestCommand::new(program, dir)
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> TestCommand {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<S: Into<OsString> + Clone>(mut self, args: &[S]) -> TestCommand {
        self.args.extend(args.iter().cloned().map(Into::into));
        self
    }

    /// Sets a variable (after any preset).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> TestCommand {
        self.env.push((name.to_owned(), Some(value.into())));
        self
    }

    /// Sets each of `vars`.
    pub fn envs(self, vars: &[(&str, &str)]) -> TestCommand {
        vars.iter()
            .fold(self, |cmd, (name, value)| cmd.env(name, *value))
    }

    /// Removes a variable.
    pub fn env_remove(mut self, name: &str) -> TestCommand {
        self.env.push((name.to_owned(), None));
        self
    }

    /// Starts from an empty environment but for `PATH`.
    pub fn clean_env(mut self) -> TestCommand {
        self.clear_env = true;
        self.env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned()),
        )
    }

    /// The AWS preset: only the standard AWS environment, as an AWS user runs the binary:
    /// made-up keys, `us-east-1`, `endpoint_var` = `endpoint` (the emulator) and STS there
    /// too (`AWS_ENDPOINT_URL_STS`: the account of a Customer Profiles sync state), no
    /// shared files and no instance metadata.
    pub fn aws(self, endpoint_var: &str, endpoint: &str) -> TestCommand {
        self.clean_env()
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret")
            .env("AWS_REGION", "us-east-1")
            .env(STS_ENDPOINT, endpoint)
            .env(endpoint_var, endpoint)
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }

    /// The AWS preset for Customer Profiles, at this emulator.
    pub fn profiles(self, emulator: &EmulatorHandle) -> TestCommand {
        self.aws(PROFILES_ENDPOINT, &emulator.endpoint_url())
    }

    /// The AWS preset for Amazon Connect, at this emulator.
    pub fn connect(self, emulator: &EmulatorHandle) -> TestCommand {
        self.aws(CONNECT_ENDPOINT, &emulator.endpoint_url())
    }

    /// The Genesys preset: nothing but `PATH` and `env` (the `GENESYS_UCS_*` credentials a
    /// test gives; the base URL is in the config).
    pub fn genesys(self, env: &[(&str, &str)]) -> TestCommand {
        self.clean_env().envs(env)
    }

    /// Gives the process a standard input to write to ([`SyncChild::stdin`]).
    pub fn stdin_piped(mut self) -> TestCommand {
        self.stdin = true;
        self
    }

    fn std(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args).current_dir(&self.dir);
        if self.clear_env {
            cmd.env_clear();
        }
        for (name, value) in &self.env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        let stdin = if self.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// The command as a `tokio::process::Command`, killed when dropped.
    pub fn tokio(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.std());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs it to the end from an async test.
    pub async fn output(self) -> Run {
        self.spawn().wait().await
    }

    /// Runs it to the end from a sync test.
    pub fn output_sync(self) -> Run {
        self.spawn_sync().wait()
    }

    /// Starts it from an async test, to interrupt or kill it.
    pub fn spawn(self) -> Child {
        let child = self.tokio().spawn();
        Child {
            child: self.started(child),
            dir: self.dir,
        }
    }

    /// Starts it from a sync test, to feed its standard input or interrupt it.
    pub fn spawn_sync(self) -> SyncChild {
        let child = self.std().spawn();
        SyncChild {
            child: self.started(child),
            dir: self.dir,
        }
    }

    fn started<T>(&self, child: std::io::Result<T>) -> T {
        child.unwrap_or_else(|e| panic!("start {}: {e}", self.describe()))
    }

    fn describe(&self) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        words.join(" ")
    }
}

/// The variable that points the AWS SDK's Customer Profiles client at an endpoint.
pub const PROFILES_ENDPOINT: &str = "AWS_ENDPOINT_URL_CUSTOMER_PROFILES";
/// The variable that points the STS client (the account) at an endpoint.
pub const STS_ENDPOINT: &str = "AWS_ENDPOINT_URL_STS";
/// The variable that points the Connect client at an endpoint.
pub const CONNECT_ENDPOINT: &str = "AWS_ENDPOINT_URL_CONNECT";

/// Sends `signal` (`-INT`, `-TERM`, ...) to the process `pid` with `kill`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A process started from an async test.
pub struct Child {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Child {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// Sends it `signal` (`-INT`, `-TERM`).
    pub fn signal(&self, signal: &str) {
        send_signal(self.id(), signal);
    }

    /// Kills it with SIGKILL and waits until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The first line it prints (the emulator's `listening on URL`).
    pub async fn first_line(&mut self) -> String {
        let stdout = self.child.stdout.as_mut().expect("a piped stdout");
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .expect("a line");
        line
    }

    /// Waits for its end.
    pub async fn wait(self) -> Run {
        let output = self.child.wait_with_output().await.expect("wait for it");
        Run {
            output,
            dir: self.dir,
        }
    }
}

/// A process started from a sync test.
pub struct SyncChild {
    child: std::process::Child,
    dir: PathBuf,
}

impl SyncChild {
    /// Its standard input (with [`TestCommand::stdin_piped`]).
    pub fn stdin(&mut self) -> std::process::ChildStdin {
        self.child.stdin.take().expect("a piped stdin")
    }

    /// Sends it `signal` (`-INT`, `-TERM`).
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Whether it has ended.
    pub fn has_ended(&mut self) -> bool {
        self.child.try_wait().expect("poll the process").is_some()
    }

    /// The first line it prints (the emulator's `listening on URL`).
    pub fn first_line(&mut self) -> String {
        let stdout = self.child.stdout.as_mut().expect("a piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("a line");
        line
    }

    /// Kills it and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for its end.
    pub fn wait(self) -> Run {
        let output = self.child.wait_with_output().expect("wait for it");
        Run {
            output,
            dir: self.dir,
        }
    }
}

/// The outcome of one run; it reads as the process's [`Output`].
pub struct Run {
    /// What the process left: exit status, standard output and error.
    pub output: Output,
    dir: PathBuf,
}

impl Deref for Run {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.output
    }
}

impl Run {
    /// The exit code.
    pub fn code(&self) -> i32 {
        self.output.status.code().expect("an exit code")
    }

    /// Standard output, as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// Standard error, as text.
    pub fn stderr(&self) -> String {
        stderr(&self.output)
    }

    /// Asserts the exit code, showing standard error when it differs.
    pub fn assert_exit(&self, code: i32) -> &Run {
        self.assert_exit_because(code, "exit code")
    }

    /// Asserts the exit code, showing `why` and standard error when it differs.
    pub fn assert_exit_because(&self, code: i32, why: &str) -> &Run {
        assert_eq!(
            self.output.status.code(),
            Some(code),
            "{why}: {}",
            self.stderr()
        );
        self
    }

    /// Asserts that standard error says `says`.
    pub fn assert_says(&self, says: &str) -> &Run {
        let err = self.stderr();
        assert!(err.contains(says), "expected {says:?} in: {err}");
        self
    }

    /// Asserts that standard output says `says`.
    pub fn assert_prints(&self, says: &str) -> &Run {
        let out = self.stdout();
        assert!(out.contains(says), "expected {says:?} in: {out}");
        self
    }

    /// What standard output prints after `label` on the first line that starts with it
    /// (`ledger: `, `diff csv: `).
    pub fn printed(&self, label: &str) -> String {
        let out = self.stdout();
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` line in: {out}"))
            .to_owned()
    }

    /// The progress lines a run logged with `-v --log-format json` (message `progress: …`),
    /// each with its fields.
    pub fn progress_lines(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("progress: "))
            })
            .collect()
    }

    /// The ledger entries in the file at `path` (relative to the run's folder).
    pub fn ledger(&self, path: &str) -> Vec<Value> {
        read_ledger(&self.dir.join(path))
    }
}

/// A process's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- Tools from outside Cargo ----

/// Whether `CI` is set to anything but `""`, `0` or `false`: then a test whose tool is
/// missing fails instead of skipping (`.ci/run` installs every such tool).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// A tool from outside Cargo that the calling test needs (the AWS CLI, Chromium, ...):
/// `found` when it is there. When it is not, outside CI, this writes `SKIPPED <test>:
/// <missing> (<install>; ...)` straight to the standard error (past the harness's capture, so
/// it is seen) and gives `None`, on which the test returns and passes; with `CI` set
/// ([`in_ci`]) the test fails, saying how to install the tool. Call it first thing in the
/// test, on the test's own thread (its name is the test's).
pub fn needs_tool<T>(found: Option<T>, missing: &str, install: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        !in_ci(),
        "{test}: CI is set but {missing}: {install} (.ci/run installs it)"
    );
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {missing} ({install}; with CI set this test fails instead of skipping)"
    );
    None
}

// ---- Redis, for `[limits] shared` ----

/// A loopback port nothing listens on (the OS picked it free an instant ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A `redis-server` of its own on a free loopback port (no snapshot, no append-only file),
/// killed when dropped or by [`RedisServer::kill`] (to lose it in the middle of a run), and
/// started again by [`RedisServer::restart`].
pub struct RedisServer {
    child: std::process::Child,
    program: PathBuf,
    port: u16,
}

impl RedisServer {
    /// Starts one, or, when `redis-server` is not installed, `None` as [`needs_tool`] says
    /// (call it first thing in the test).
    pub fn start() -> Option<RedisServer> {
        let program = needs_tool(
            on_path("redis-server"),
            "no redis-server on PATH",
            "apt-get install redis-server",
        )?;
        let port = free_port();
        let child = RedisServer::spawn(&program, port);
        Some(RedisServer {
            child,
            program,
            port,
        })
    }

    /// Starts it again on the same port after [`RedisServer::kill`] (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        self.child = RedisServer::spawn(&self.program, self.port);
    }

    fn spawn(program: &Path, port: u16) -> std::process::Child {
        let child = std::process::Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL) and waits for its end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `name` in a directory of `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

// ---- The AWS CLI, a client nobody here wrote ----

/// The AWS CLI pointed at one emulator endpoint, with made-up keys and nothing from the
/// machine's own AWS configuration.
#[derive(Clone)]
pub struct AwsCli {
    program: String,
    endpoint: String,
}

/// What one AWS CLI call is expected to do.
pub enum Expect {
    /// Succeed and print JSON in which each pointer (`/Profiles/0/ProfileId`) holds the value.
    Json(Vec<(&'static str, Value)>),
    /// Succeed and print nothing.
    Silent,
    /// Fail, saying each of these on standard error.
    Fails(Vec<&'static str>),
}

/// One row of an AWS CLI table: the arguments and what they must give.
pub struct CliCase {
    args: Vec<String>,
    expect: Expect,
}

impl CliCase {
    /// `aws ARGS`, expected to succeed with these JSON values.
    pub fn json<S: AsRef<str>>(args: &[S], fields: Vec<(&'static str, Value)>) -> CliCase {
        CliCase::new(args, Expect::Json(fields))
    }

    /// `aws ARGS`, expected to succeed silently.
    pub fn silent<S: AsRef<str>>(args: &[S]) -> CliCase {
        CliCase::new(args, Expect::Silent)
    }

    /// `aws ARGS`, expected to fail saying each of `says`.
    pub fn fails<S: AsRef<str>>(args: &[S], says: &[&'static str]) -> CliCase {
        CliCase::new(args, Expect::Fails(says.to_vec()))
    }

    fn new<S: AsRef<str>>(args: &[S], expect: Expect) -> CliCase {
        CliCase {
            args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
            expect,
        }
    }
}

impl AwsCli {
    /// The AWS CLI (`aws` on the `PATH`, or the program `PROFILESYNC_AWS_CLI` names), when it
    /// answers `--version`; else `None` after [`needs_tool`]'s `SKIPPED` line (outside CI).
    /// Call it before starting anything else in the test.
    pub fn find() -> Option<AwsCli> {
        let program = std::env::var("PROFILESYNC_AWS_CLI").unwrap_or_else(|_| "aws".to_owned());
        let answers = std::process::Command::new(&program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        needs_tool(
            answers.then(|| AwsCli {
                program: program.clone(),
                endpoint: String::new(),
            }),
            &format!("no AWS CLI (`{program} --version` does not answer)"),
            "python3 -m pip install awscli, or point PROFILESYNC_AWS_CLI at one",
        )
    }

    /// The same CLI against `endpoint`.
    pub fn at(self, endpoint: &str) -> AwsCli {
        AwsCli {
            endpoint: endpoint.to_owned(),
            ..self
        }
    }

    /// Runs `aws ARGS --endpoint-url ENDPOINT --output json`.
    pub async fn run<S: AsRef<str>>(&self, args: &[S]) -> Run {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        TestCommand::program(&self.program, &std::env::temp_dir())
            .args(&args)
            .args(&["--endpoint-url", &self.endpoint, "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/nonexistent/profilesync-test-config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/profilesync-test-credentials",
            )
            .env("AWS_PAGER", "")
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .await
    }

    /// Runs each case in turn and asserts what it expects; returns the JSON each printed
    /// (`Null` for the others), for the assertions a table cannot hold.
    pub async fn check(&self, cases: Vec<CliCase>) -> Vec<Value> {
        let mut printed = Vec::new();
        for case in cases {
            let run = self.run(&case.args).await;
            let what = case.args.join(" ");
            let (stdout, err) = (run.stdout(), run.stderr());
            match case.expect {
                Expect::Fails(says) => {
                    assert!(!run.status.success(), "`{what}` succeeded: {stdout}");
                    for s in says {
                        assert!(err.contains(s), "`{what}`: {s:?} not in {err}");
                    }
                    printed.push(Value::Null);
                }
                Expect::Silent => {
                    assert!(run.status.success(), "`{what}`: {err}");
                    assert_eq!(stdout.trim(), "", "`{what}`");
                    printed.push(Value::Null);
                }
                Expect::Json(fields) => {
                    assert!(run.status.success(), "`{what}`: {err}");
                    let out: Value = serde_json::from_str(&stdout)
                        .unwrap_or_else(|e| panic!("`{what}`: {e}: {stdout}"));
                    for (pointer, value) in fields {
                        assert_eq!(out.pointer(pointer), Some(&value), "`{what}` {pointer}");
                    }
                    printed.push(out);
                }
            }
        }
        printed
    }
}

/// Starts `profilesync emulator ARGS` from an async test; returns it and its endpoint.
pub async fn emulator_process(dir: &Dir, args: &[&str]) -> (Child, String) {
    let mut child = dir.command(args).spawn();
    let line = child.first_line().await;
    (child, listening_url(&line))
}

/// Starts `profilesync emulator ARGS` from a sync test; returns it and its endpoint.
pub fn emulator_process_sync(dir: &Dir, args: &[&str]) -> (SyncChild, String) {
    let mut child = dir.command(args).spawn_sync();
    let line = child.first_line();
    (child, listening_url(&line))
}

fn listening_url(line: &str) -> String {
    line.trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("a `listening on` line, not {line:?}"))
        .to_owned()
}

// ---- An S3 server: moto's, a server nobody here wrote ----

/// `moto_server` (from PyPI's `moto[server]`) on a free loopback port, killed on drop: a real
/// S3 server for the sync state in S3. Requests of its own (to make a bucket, read or write
/// an object) are plain HTTP with a made-up signature, which moto accepts.
pub struct MotoServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `target/ci-venv/bin/moto_server` (where `.ci/run` installs it), else
    /// `moto_server` on the `PATH`, with a bucket `bucket`; `None` after [`needs_tool`]'s
    /// `SKIPPED` line (outside CI) when there is none.
    pub fn start(bucket: &str) -> Option<MotoServer> {
        let venv = repo().join("target/ci-venv/bin/moto_server");
        let program: OsString = if venv.exists() {
            venv.into()
        } else {
            "moto_server".into()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let child = needs_tool(
            child,
            "no moto_server (an S3 server)",
            "python3 -m pip install 'moto[server]'",
        )?;
        let server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/", &[], b"").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, _, _) = server
            .request("PUT", &format!("/{bucket}"), &[], b"")
            .expect("create the bucket");
        assert_eq!(status, 200, "create bucket {bucket}");
        Some(server)
    }

    /// The object `bucket/key`: its body and ETag, `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        let (status, headers, body) = self
            .request("GET", &format!("/{bucket}/{key}"), &[], b"")
            .expect("moto answers");
        (status == 200).then(|| (body, header(&headers, "etag").unwrap_or_default()))
    }

    /// Stores `body` as `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _, _) = self
            .request("PUT", &format!("/{bucket}/{key}"), &[], body)
            .expect("moto answers");
        assert_eq!(status, 200, "put {key}");
    }

    /// The keys in `bucket`.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (_, _, body) = self
            .request("GET", &format!("/{bucket}?list-type=2"), &[], b"")
            .expect("moto answers");
        profilesync::state::s3::xml_values(&String::from_utf8_lossy(&body), "Key")
    }

    /// One HTTP/1.1 request; `None` when nothing answers.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(u16, String, Vec<u8>)> {
        use std::io::Read;
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        // moto refuses an anonymous GetObject; it reads the access key, not the signature.
        head.push_str(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/20261207/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00\r\n\r\n",
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut body = answer[split + 4..].to_vec();
        if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            body = unchunk(&body);
        }
        Some((status, head, body))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header's value in a response head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A chunked body, joined.
fn unchunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

// ---- Ledgers ----

/// Reads a JSON Lines ledger.
pub fn read_ledger(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON ledger line"))
        .collect()
}

/// Ledger entries in record order.
pub fn by_record(ledger: &[Value]) -> Vec<Value> {
    let mut sorted = ledger.to_vec();
    sorted.sort_by_key(|e| e["record"].as_u64());
    sorted
}

/// The statuses of a ledger's entries, in record order (apply writes entries as records
/// settle).
pub fn statuses(ledger: &[Value]) -> Vec<String> {
    by_record(ledger)
        .iter()
        .map(|e| e["status"].as_str().expect("a status").to_owned())
        .collect()
}

/// How many entries have `status` (and, when given, `basis`).
pub fn count(ledger: &[Value], status: &str, basis: Option<&str>) -> usize {
    ledger
        .iter()
        .filter(|e| e["status"] == status && basis.is_none_or(|b| e["basis"] == b))
        .count()
}

/// How many entries have each of `statuses`, in that order.
pub fn tally(ledger: &[Value], statuses: &[&str]) -> Vec<usize> {
    statuses.iter().map(|s| count(ledger, s, None)).collect()
}

/// The record numbers of a ledger's entries, in record order.
pub fn records(ledger: &[Value]) -> Vec<u64> {
    by_record(ledger)
        .iter()
        .map(|e| e["record"].as_u64().expect("a record number"))
        .collect()
}

/// Asserts that `value` (a ledger's or a summary's field) is a string that says `says`.
pub fn assert_has(value: &Value, says: &str) {
    assert!(
        value.as_str().is_some_and(|v| v.contains(says)),
        "expected {says:?} in {value}"
    );
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

/// How long [`wait_for_entries`] waits: long, for a loaded machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until the ledger at `path` has at least `n` lines; fails the test, saying what it
/// waited for and what it saw, after [`WAIT`].
pub async fn wait_for_entries(path: &Path, n: usize) {
    wait_for_entries_within(path, n, WAIT).await;
}

/// [`wait_for_entries`] with another time limit.
pub async fn wait_for_entries_within(path: &Path, n: usize, limit: Duration) {
    let lines = || std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if lines() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if lines() < n {
        panic!(
            "waited {limit:?} for {n} entries in {}, saw {}",
            path.display(),
            lines()
        );
    }
}

// ---- Customer Profiles fixtures ----

/// The domain of the Customer Profiles fixtures.
pub const DOMAIN: &str = "ExampleDomainName";

/// A valid ProfileId derived from a number.
pub fn pid(n: u32) -> String {
    format!("{n:032x}")
}

/// A Customer Profiles config over the given fields, reading `input`.
pub fn profiles_config(fields: &str) -> String {
    format!(
        r#"[source]
key = "crm_id"

[target]
kind = "customer-profiles"
domain = "{DOMAIN}"

[match]
id = "profile_id"

[fields]
{fields}
"#
    )
}

/// A CSV of `n` customers: record i sets FirstName "First{i}", City "City{i}", and a tier.
pub fn customers(n: u32) -> String {
    let mut csv = String::from("crm_id,profile_id,first,city,tier,email\n");
    for i in 1..=n {
        csv.push_str(&format!(
            "C{i},{},First{i},City{i},Gold,c{i}@example.com\n",
            pid(i)
        ));
    }
    csv
}

/// A seed with profiles 1..=n, each with an old first name and an attribute the CSV does not map.
pub fn seed(n: u32) -> Value {
    let profiles: serde_json::Map<String, Value> = (1..=n)
        .map(|i| (pid(i), json!({"FirstName": format!("Old{i}"), "LastName": "Kept", "Attributes": {"Other": "x"}})))
        .collect();
    json!({"domains": {DOMAIN: {"profiles": profiles}}})
}

/// The profile [`customers`]`(n)` makes of profile i, from [`seed`]`(n)`.
pub fn synced_profile(i: u32) -> Value {
    json!({"FirstName": format!("First{i}"), "LastName": "Kept", "Address": {"City": format!("City{i}")},
           "Attributes": {"Other": "x", "Tier": "Gold"}})
}

/// A scratch folder holding `in.csv` = [`customers`]`(n)` and `c.toml` = [`config`] with
/// these `[limits]`, matching [`BY_ID`].
pub fn customers_dir(n: u32, limits: &str) -> Dir {
    let dir = Dir::new();
    dir.write("in.csv", customers(n));
    dir.write("c.toml", config(limits, BY_ID));
    dir
}

/// Faults that answer `error_rate` of the requests with a 500 and drop `drop_rate` of the
/// connections, picked by a generator seeded with `seed`.
pub fn faults(error_rate: f64, drop_rate: f64, seed: u64) -> FaultConfig {
    FaultConfig {
        error_rate,
        drop_rate,
        seed,
        ..FaultConfig::default()
    }
}

/// A file of the repository (a bundled config or sample), as an argument.
pub fn sample(path: &str) -> String {
    repo().join(path).display().to_string()
}

/// The bundled samples' emulator seed (`samples/seed.json`).
pub fn sample_seed() -> Value {
    serde_json::from_str(include_str!("../../samples/seed.json")).expect("the sample seed")
}

/// A config for [`customers`] with these `[limits]` and `[match]` lines.
pub fn config(limits: &str, matching: &str) -> String {
    let fields =
        "FirstName = \"first\"\n\"Address.City\" = \"city\"\n\"Attributes.Tier\" = \"tier\"";
    profiles_config(fields).replacen(
        "id = \"profile_id\"\n",
        &format!("{matching}\n\n[limits]\n{limits}\n"),
        1,
    )
}

/// Matching by the input's `profile_id` column.
pub const BY_ID: &str = "id = \"profile_id\"";

/// `apply` of `in.csv` with `c.toml` into `l.jsonl`.
pub const APPLY: [&str; 7] = [
    "apply",
    "--config",
    "c.toml",
    "in.csv",
    "--ledger",
    "l.jsonl",
    "--no-progress",
];

/// Starts an emulator.
pub async fn start_emulator(config: EmulatorConfig) -> EmulatorHandle {
    Emulator::start(config).await.expect("start the emulator")
}

/// An emulator seeded with profiles 1..=n (see [`seed`]).
pub async fn seeded(n: u32) -> EmulatorHandle {
    start_emulator(EmulatorConfig::default().with_seed(seed(n))).await
}

/// An emulator seeded with profiles 1..=n that answers every request after `latency_ms`, so
/// that a run lasts long enough to be interrupted.
pub async fn slow_emulator(n: u32, latency_ms: u64) -> EmulatorHandle {
    let faults = FaultConfig {
        latency: Duration::from_millis(latency_ms),
        ..FaultConfig::default()
    };
    start_emulator(
        EmulatorConfig::default()
            .with_seed(seed(n))
            .with_faults(faults),
    )
    .await
}

/// A Customer Profiles profile of [`DOMAIN`] as the emulator holds it.
pub fn profile(emulator: &EmulatorHandle, id: &str) -> Value {
    profile_in(emulator, DOMAIN, id)
}

/// A Customer Profiles profile of `domain` as the emulator holds it.
pub fn profile_in(emulator: &EmulatorHandle, domain: &str, id: &str) -> Value {
    emulator.state()["domains"][domain]["profiles"][id].clone()
}

/// A Genesys profile as the emulator holds it.
pub fn genesys_profile(emulator: &EmulatorHandle, id: &str) -> Value {
    emulator.state()["genesys"]["profiles"][id].clone()
}

/// `profilesync ARGS` in `dir`, with the AWS preset at the emulator's Customer Profiles.
pub fn command(dir: &Dir, emulator: &EmulatorHandle, args: &[&str]) -> TestCommand {
    dir.command(args).profiles(emulator)
}

/// Runs `profilesync ARGS` in `dir` with the AWS environment pointing at the emulator.
pub async fn run(dir: &Dir, emulator: &EmulatorHandle, args: &[&str]) -> Run {
    command(dir, emulator, args).output().await
}

/// `profilesync COMMAND --config CONFIG in.csv --ledger LEDGER --no-progress EXTRA...`
/// against the emulator's Customer Profiles.
pub async fn sync(
    dir: &Dir,
    emulator: &EmulatorHandle,
    command: &str,
    config: &str,
    ledger: &str,
    extra: &[&str],
) -> Run {
    run(dir, emulator, &sync_args(command, config, ledger, extra)).await
}

/// `COMMAND --config CONFIG in.csv --ledger LEDGER --no-progress EXTRA...`: the arguments of a
/// run over the scratch folder's `in.csv`.
pub fn sync_args<'a>(
    command: &'a str,
    config: &'a str,
    ledger: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    run_args(command, config, "in.csv", ledger, extra)
}

/// `COMMAND --config CONFIG INPUT --ledger LEDGER --no-progress EXTRA...`.
pub fn run_args<'a>(
    command: &'a str,
    config: &'a str,
    input: &'a str,
    ledger: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = base_args(command, config, input, ledger);
    args.push("--no-progress");
    args.extend_from_slice(extra);
    args
}

/// `COMMAND --config CONFIG INPUT --ledger LEDGER`.
pub fn base_args<'a>(
    command: &'a str,
    config: &'a str,
    input: &'a str,
    ledger: &'a str,
) -> Vec<&'a str> {
    vec![command, "--config", config, input, "--ledger", ledger]
}

/// The earlier name of the AWS preset: `profilesync ARGS` in `dir` with only the standard
/// AWS environment (`endpoint_var` = `endpoint`), as a `tokio::process::Command`. Kept for
/// tests written against it on other branches; new tests use [`TestCommand::aws`].
#[allow(dead_code)]
pub fn aws_command(
    dir: &Dir,
    endpoint_var: &str,
    endpoint: &str,
    args: &[&str],
) -> tokio::process::Command {
    dir.command(args).aws(endpoint_var, endpoint).tokio()
}

/// Writes `text` to a child's standard input and flushes it; false once the child is gone.
pub fn feed(stdin: &mut impl Write, text: &str) -> bool {
    stdin
        .write_all(text.as_bytes())
        .and_then(|()| stdin.flush())
        .is_ok()
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "for 3 entries in")]
async fn waiting_for_entries_that_never_come_fails_the_test() {
    let dir = Dir::new();
    dir.write("l.jsonl", "{}\n");
    wait_for_entries_within(&dir.path("l.jsonl"), 3, Duration::from_secs(5)).await;
}
