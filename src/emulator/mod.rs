//! Loopback emulator of the three target APIs: Amazon Connect Customer Profiles
//! (UpdateProfile, CreateProfile, SearchProfiles, BatchGetProfile), Amazon Connect users
//! (UpdateUserIdentityInfo, DescribeUser, ListUsers, SearchUsers) and Genesys UCS profiles
//! (`GET`/`PUT /profiles/{customer_id}`, `POST /profiles`), plus STS `GetCallerIdentity`
//! (so that a client learns its account as in production), on 127.0.0.1 only.
//!
//! It speaks the real wire formats (rest-json with `x-amzn-ErrorType` errors, so the
//! unmodified AWS SDKs and the AWS CLI work against it), checks the models' constraints,
//! applies a token-bucket quota per operation, can inject seeded faults, and reads back its
//! state and per-operation statistics.
//!
//! # Use from Rust
//!
//! ```no_run
//! # async fn demo() -> Result<(), profilesync::emulator::EmulatorError> {
//! use profilesync::emulator::{Emulator, EmulatorConfig};
//! let handle = Emulator::start(EmulatorConfig::default().with_quota("UpdateProfile", 5.0, 5)).await?;
//! let url = handle.endpoint_url(); // "http://127.0.0.1:PORT", for endpoint_url / base_url
//! // ... run a client against it ...
//! let state = handle.state(); // same shape as the seed
//! let stats = handle.stats().operation("UpdateProfile");
//! assert!(stats.max_accepted_in_any_second <= 5 + 5);
//! handle.set_clock_offset_days(30)?; // 30 days later: profiles past expiration are gone
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Behaviour worth knowing
//!
//! - **No seed** means one empty Customer Profiles domain `ExampleDomainName`, one empty
//!   Connect instance `a1b2c3d4-5678-90ab-cdef-EXAMPLE11111`, and Genesys with no tenant
//!   check and no profiles.
//! - **Account and region.** STS `GetCallerIdentity` answers the account of the seed's
//!   top-level `"account": "<12 digits>"`, overridden by `--account` /
//!   [`EmulatorConfig::with_account`], default `123456789012`. ARNs (DescribeInstance's
//!   instance, the users') hold that account and the region the request is signed for (its
//!   SigV4 credential scope), as a service in that region would answer. With a seed, exactly what it holds exists; an unknown domain,
//!   instance, user or profile is a 404 `ResourceNotFoundException`.
//! - **Order of checks** for every API request: authentication (AWS: an `Authorization`
//!   header starting `AWS4-HMAC-SHA256 Credential=`, else 403 `AccessDeniedException`;
//!   signatures are not verified. Genesys: basic auth when configured, else 401), then
//!   permissions (`--deny OPERATION`: 403 `AccessDeniedException`, as IAM), then
//!   fault injection (latency, dropped connection, 500), then the quota (429
//!   `ThrottlingException`), then validation (400) and the resource (404).
//! - **Quotas**: Customer Profiles operations 100/s with a bucket of 100 (GetDomain 5/s;
//!   BatchGetProfile, which the quota table leaves out, 100/s like the others); Connect user
//!   operations 2/s with a bucket of 5; Genesys none. `--quota OP=RATE[:BURST]` overrides
//!   one (the burst defaults to the rate, rounded up); `--no-quota` removes the defaults
//!   but keeps explicit `--quota`s. `--retry-after` adds `Retry-After` (seconds) and
//!   `x-amz-retry-after` (milliseconds) to 429s.
//! - **Statistics** count every request per operation by status, plus the *accepted* ones
//!   (past the quota), per one-second window and as the maximum in any sliding second.
//! - **Read-back**: `GET /_emulator/state`, `GET /_emulator/stats`, `DELETE
//!   /_emulator/stats` (reset), `GET /_emulator/clock`. Faults never apply there.
//! - **Clock and expiry.** The emulator's clock is the system clock plus a whole number of
//!   days: `--clock-offset-days N` (or [`EmulatorConfig::with_clock_offset_days`]) at start,
//!   then `POST /_emulator/clock` with `{"offset_days": N}` or
//!   [`EmulatorHandle::set_clock_offset_days`]; both *set* the offset (not add to it) and
//!   answer/read back as `{"offset_days": N, "now": <epoch seconds>}`. CreateProfile and
//!   UpdateProfile stamp the profile's last update on that clock, kept per domain in the
//!   seed's shape, `"updated": {"<ProfileId>": <epoch seconds>}`; a profile it does not list
//!   counts as updated at the emulator's start. A domain's `"expiration_days": N` (1–1098,
//!   default 366) is GetDomain's `DefaultExpirationDays`. A profile not updated for more than
//!   that many days is removed, as the service removes it: at start, whenever the clock is
//!   set, and when a request or the read-back touches it. Connect's `LastModifiedTime` reads
//!   the same clock, and every API answer's `Date` header carries it (as a service's
//!   carries the service's time), so a client that takes "now" from the target sees the
//!   moved clock. For example, a profile seeded 350 days old in a 365-day domain is gone
//!   once the clock is set 30 days ahead, unless it was updated meanwhile:
//!
//! ```json
//! {"domains": {"D": {"profiles": {"0123456789abcdef0123456789abcdef": {"FirstName": "Ann"}},
//!                    "expiration_days": 365,
//!                    "updated": {"0123456789abcdef0123456789abcdef": 1765000000}}}}
//! ```
//!
//! # Layout
//!
//! `server` holds the shared state, the gate every request passes and the connection loop;
//! `customer_profiles`, `connect`, `genesys` and `sts` hold one API each; `state` the seed/state
//! model; `search_index` what a profile holds under each SearchProfiles key and the index
//! over it; `rules` the constraint checks; `wire` the error shapes and authentication;
//! `operation` the operation names; `quota`, `faults` and `stats` the knobs; `clock` the
//! emulator's movable clock.

mod clock;
mod connect;
mod customer_profiles;
mod faults;
mod genesys;
mod operation;
mod quota;
mod rules;
mod search_index;
mod server;
mod state;
mod stats;
mod sts;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use faults::FaultConfig;
pub use operation::{Api, Operation};
pub use quota::Quota;
pub use state::{DEFAULT_ACCOUNT, DEFAULT_DOMAIN, DEFAULT_INSTANCE, State};
pub use stats::{OperationStats, Stats};

/// How to start an emulator; the default is the documented quotas, no faults, no seed.
#[derive(Debug, Clone, Default)]
pub struct EmulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Initial state in the seed shape; `None` gives the default state (see the module doc).
    pub seed: Option<Value>,
    /// Quotas by operation name (`UpdateProfile`, `GenesysPutProfile`, ...), over the defaults.
    pub quotas: BTreeMap<String, Quota>,
    /// Drops the default quotas (explicit `quotas` still apply).
    pub no_quotas: bool,
    /// Fault injection.
    pub faults: FaultConfig,
    /// Genesys basic-auth credentials `(user, password)`; `None` turns authentication off.
    pub genesys_auth: Option<(String, String)>,
    /// Sends `Retry-After` / `x-amz-retry-after` with every 429.
    pub retry_after: bool,
    /// Operations the caller is not allowed to call (by name): 403 to every request, as
    /// `AccessDeniedException` from IAM for the AWS operations, plain for Genesys.
    pub denied: Vec<String>,
    /// ProfileIds that BatchGetProfile answers with an `InternalServerException` entry in
    /// `Errors` (the rest of the call succeeds), whether the profile exists or not.
    pub batch_error_ids: Vec<String>,
    /// Days the emulator's clock runs ahead of the system clock (behind when negative).
    pub clock_offset_days: i64,
    /// The AWS account (12 digits) STS answers and ARNs hold, over the seed's `"account"`.
    pub account: Option<String>,
}

impl EmulatorConfig {
    /// Sets the initial state.
    pub fn with_seed(mut self, seed: Value) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the quota of one operation.
    pub fn with_quota(mut self, operation: &str, rate: f64, burst: u32) -> Self {
        self.quotas
            .insert(operation.to_string(), Quota::new(rate, burst));
        self
    }

    /// Drops the default quotas.
    pub fn without_quotas(mut self) -> Self {
        self.no_quotas = true;
        self
    }

    /// Sets fault injection.
    pub fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Refuses `operation` with 403 `AccessDeniedException`, as IAM does without the permission.
    pub fn with_denied(mut self, operation: &str) -> Self {
        self.denied.push(operation.to_string());
        self
    }

    /// Makes BatchGetProfile answer `profile_id` with an `InternalServerException` entry.
    pub fn with_batch_error(mut self, profile_id: &str) -> Self {
        self.batch_error_ids.push(profile_id.to_string());
        self
    }

    /// Answers for the AWS account `account` (12 digits), whatever the seed says.
    pub fn with_account(mut self, account: &str) -> Self {
        self.account = Some(account.to_string());
        self
    }

    /// Starts the emulator's clock `days` ahead of the system clock.
    pub fn with_clock_offset_days(mut self, days: i64) -> Self {
        self.clock_offset_days = days;
        self
    }

    /// Requires Genesys basic authentication with these credentials.
    pub fn with_genesys_auth(mut self, user: &str, password: &str) -> Self {
        self.genesys_auth = Some((user.to_string(), password.to_string()));
        self
    }
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The seed does not have the documented shape.
    #[error("invalid seed: {0}")]
    Seed(String),
    /// A quota names an operation the emulator does not serve.
    #[error("unknown operation {0:?} (known: {known})", known = known_operations())]
    UnknownOperation(String),
    /// A quota or fault setting is out of range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The requested port.
        port: u16,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn known_operations() -> String {
    Operation::ALL.map(Operation::name).join(", ")
}

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Starts an emulator on 127.0.0.1 and returns once it accepts connections.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        let mut state = match config.seed {
            Some(seed) => State::from_seed(seed).map_err(EmulatorError::Seed)?,
            None => State::default_seed(),
        };
        let overrides = resolve_quotas(&config.quotas)?;
        let denied = config
            .denied
            .iter()
            .map(|name| {
                Operation::from_name(name)
                    .ok_or_else(|| EmulatorError::UnknownOperation(name.clone()))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        config.faults.check().map_err(EmulatorError::Setting)?;
        if let Some(id) = config
            .batch_error_ids
            .iter()
            .find(|id| !rules::is_profile_id(id))
        {
            return Err(EmulatorError::Setting(format!(
                "batch error id {id:?} is not a ProfileId ([a-f0-9]{{32}})"
            )));
        }
        if let Some(account) = config.account {
            state::check_account(&account).map_err(EmulatorError::Setting)?;
            state.account = Some(account);
        }
        let clock = clock::Clock::new(config.clock_offset_days).map_err(EmulatorError::Setting)?;
        state.remove_expired(clock.moment());
        let started = Instant::now();
        let quotas = quota::Quotas::new(&overrides, config.no_quotas, started);
        let genesys_auth = config
            .genesys_auth
            .as_ref()
            .map(|(user, password)| wire::basic_header(user, password));
        let shared = Arc::new(server::Shared::new(
            state,
            quotas,
            faults::Faults::new(config.faults).with_batch_errors(config.batch_error_ids),
            server::Policy {
                genesys_auth,
                retry_after: config.retry_after,
                denied,
            },
            started,
            clock,
        ));
        let (listener, addr) =
            server::bind(config.port)
                .await
                .map_err(|source| EmulatorError::Bind {
                    port: config.port,
                    source,
                })?;
        let (stop, stopped) = watch::channel(false);
        let router = server::router(shared.clone());
        let task = tokio::spawn(server::run(listener, router, stopped));
        Ok(EmulatorHandle {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }
}

fn resolve_quotas(
    quotas: &BTreeMap<String, Quota>,
) -> Result<BTreeMap<Operation, Quota>, EmulatorError> {
    let mut resolved = BTreeMap::new();
    for (name, quota) in quotas {
        let op = Operation::from_name(name)
            .ok_or_else(|| EmulatorError::UnknownOperation(name.clone()))?;
        quota
            .check()
            .map_err(|e| EmulatorError::Setting(format!("quota of {name}: {e}")))?;
        resolved.insert(op, *quota);
    }
    Ok(resolved)
}

/// A running emulator; dropping it stops the server too.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The socket address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for an SDK's `endpoint_url` or a Genesys `base_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The current state, in the seed's shape.
    pub fn state(&self) -> Value {
        self.shared.state_json()
    }

    /// The statistics so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The emulator's clock, in seconds since the epoch.
    pub fn now(&self) -> i64 {
        self.shared.moment().now
    }

    /// How many days the emulator's clock runs ahead of the system clock.
    pub fn clock_offset_days(&self) -> i64 {
        self.shared.clock_offset_days()
    }

    /// Sets the clock to `days` ahead of the system clock (not `days` further), then
    /// removes the profiles that expired by then, as `POST /_emulator/clock` does. Fails only
    /// beyond 36,500 days either way.
    pub fn set_clock_offset_days(&self, days: i64) -> Result<(), EmulatorError> {
        self.shared
            .set_clock_offset_days(days)
            .map_err(EmulatorError::Setting)
    }

    /// Forgets the statistics so far (the state is kept).
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// Stops accepting, closes every connection, and waits for the server to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `OPERATION=RATE[:BURST]` as given to `--quota`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaArg {
    /// The operation.
    pub operation: Operation,
    /// Its quota.
    pub quota: Quota,
}

/// `USER:PASS` as given to `--genesys-auth`.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// Command-line arguments of `profilesync emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Port to listen on, on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Initial state: JSON with `domains`, `instances` and `genesys` (see the README).
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// Quota of one operation, e.g. `UpdateProfile=10:20` (repeatable; BURST defaults to RATE).
    #[arg(long = "quota", value_name = "OPERATION=RATE[:BURST]", value_parser = parse_quota_arg)]
    pub quotas: Vec<QuotaArg>,
    /// No default quotas (explicit --quota still apply).
    #[arg(long)]
    pub no_quota: bool,
    /// Share of API requests answered with a 500 (0.0-1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub error_rate: f64,
    /// Share of API requests whose connection is closed without an answer (0.0-1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub drop_rate: f64,
    /// Share of API requests that are applied, then their connection closed without the
    /// answer (0.0-1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub lose_answer_rate: f64,
    /// Milliseconds added before every API request is handled.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Seed of the fault generator, so that runs repeat.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// A ProfileId that BatchGetProfile answers with an InternalServerException entry in
    /// `Errors`, found or not (repeatable).
    #[arg(long = "batch-error-id", value_name = "PROFILE_ID")]
    pub batch_error_ids: Vec<String>,
    /// Require Genesys basic authentication with these credentials.
    #[arg(long, value_name = "USER:PASS", value_parser = parse_credentials)]
    pub genesys_auth: Option<Credentials>,
    /// Send Retry-After (and x-amz-retry-after) with every 429.
    #[arg(long)]
    pub retry_after: bool,
    /// Answer every request to OPERATION with 403 AccessDeniedException, as IAM does for a
    /// role without the permission (repeatable).
    #[arg(long = "deny", value_name = "OPERATION", value_parser = parse_operation)]
    pub denied: Vec<Operation>,
    /// Run the emulator's clock N days ahead of the system clock (behind when negative);
    /// profiles older than their domain's expiration are removed at start.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_days: i64,
    /// The AWS account (12 digits) STS GetCallerIdentity answers and ARNs hold, over the
    /// seed's `"account"` (default 123456789012).
    #[arg(long, value_name = "ACCOUNT")]
    pub account: Option<String>,
}

fn parse_operation(name: &str) -> Result<Operation, String> {
    Operation::from_name(name)
        .ok_or_else(|| format!("unknown operation {name:?} (known: {})", known_operations()))
}

fn parse_quota_arg(text: &str) -> Result<QuotaArg, String> {
    let (name, spec) = text
        .split_once('=')
        .ok_or_else(|| format!("expected OPERATION=RATE[:BURST], got {text:?}"))?;
    let operation = parse_operation(name)?;
    let (rate, burst) = match spec.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (spec, None),
    };
    let rate: f64 = rate
        .parse()
        .map_err(|_| format!("RATE must be a number, got {rate:?}"))?;
    let burst = match burst {
        Some(burst) => burst
            .parse()
            .map_err(|_| format!("BURST must be a whole number, got {burst:?}"))?,
        None => default_burst(rate),
    };
    let quota = Quota::new(rate, burst);
    quota.check()?;
    Ok(QuotaArg { operation, quota })
}

/// The burst when only a rate is given: the rate rounded up, at least 1.
fn default_burst(rate: f64) -> u32 {
    let rounded = rate.ceil();
    if rounded >= f64::from(u32::MAX) {
        u32::MAX
    } else if rounded >= 1.0 {
        rounded as u32
    } else {
        1
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text
        .parse()
        .map_err(|_| format!("expected a number between 0 and 1, got {text:?}"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("expected a number between 0 and 1, got {share}"))
    }
}

fn parse_credentials(text: &str) -> Result<Credentials, String> {
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        }),
        _ => Err("expected USER:PASS".to_string()),
    }
}

impl EmulatorArgs {
    /// The library configuration these arguments describe (reads the seed file).
    pub fn to_config(&self) -> Result<EmulatorConfig, String> {
        let seed = match &self.seed {
            Some(path) => Some(read_seed(path)?),
            None => None,
        };
        let quotas = self
            .quotas
            .iter()
            .map(|q| (q.operation.name().to_string(), q.quota))
            .collect();
        Ok(EmulatorConfig {
            port: self.port,
            seed,
            quotas,
            no_quotas: self.no_quota,
            faults: FaultConfig {
                error_rate: self.error_rate,
                drop_rate: self.drop_rate,
                lose_answer_rate: self.lose_answer_rate,
                latency: Duration::from_millis(self.latency_ms),
                seed: self.fault_seed,
            },
            batch_error_ids: self.batch_error_ids.clone(),
            genesys_auth: self
                .genesys_auth
                .as_ref()
                .map(|c| (c.user.clone(), c.password.clone())),
            retry_after: self.retry_after,
            denied: self.denied.iter().map(|op| op.name().to_string()).collect(),
            clock_offset_days: self.clock_offset_days,
            account: self.account.clone(),
        })
    }
}

fn read_seed(path: &std::path::Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read seed {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("seed {} is not JSON: {e}", path.display()))
}

/// Runs `profilesync emulator` until Ctrl-C and returns the exit code (2: bad arguments).
pub fn run_cli(args: EmulatorArgs) -> i32 {
    let config = match args.to_config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("profilesync emulator: {message}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("profilesync emulator: cannot start the runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(serve_until_interrupted(config))
}

async fn serve_until_interrupted(config: EmulatorConfig) -> i32 {
    let handle = match Emulator::start(config).await {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("profilesync emulator: {e}");
            return 2;
        }
    };
    println!("listening on {}", handle.endpoint_url());
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_arguments() {
        let arg = parse_quota_arg("UpdateProfile=10:20").expect("valid");
        assert_eq!(arg.operation, Operation::UpdateProfile);
        assert_eq!(arg.quota, Quota::new(10.0, 20));
        assert_eq!(
            parse_quota_arg("DescribeUser=0.5").map(|a| a.quota.burst),
            Ok(1)
        );
        let arg = parse_quota_arg("BatchGetProfile=5").expect("valid");
        assert_eq!(arg.operation, Operation::BatchGetProfile);
        assert_eq!(arg.quota, Quota::new(5.0, 5));
        assert_eq!(
            Operation::BatchGetProfile.default_quota(),
            Operation::SearchProfiles.default_quota()
        );
        assert!(parse_quota_arg("Nope=1").is_err());
        assert!(parse_quota_arg("UpdateProfile=0").is_err());
        assert!(parse_quota_arg("UpdateProfile").is_err());
    }

    #[test]
    fn credentials_and_shares() {
        assert!(parse_credentials("u:p:q").is_ok_and(|c| c.password == "p:q"));
        assert!(parse_credentials("nocolon").is_err());
        assert!(parse_share("1.5").is_err());
    }
}
