//! Configuration: the TOML file, loaded in two phases.
//!
//! [`raw`] mirrors the file with serde (unknown keys rejected, spans kept); [`compile`] turns
//! it into a [`Config`], checking everything that needs more than the file's shape and
//! returning every problem at once, each with the file and line. Nothing downstream sees
//! the raw form.

pub mod compile;
pub mod raw;
pub mod skeleton;
pub mod target;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use raw::{Deletes, Duplicates, WhenMissing};
pub use target::{AwsTarget, ConnectUserTarget, CustomerProfilesTarget, GenesysUcsTarget, Target};

use crate::mapping::{EmptyPolicy, FieldRule, PhoneRegion, SearchRule};
use crate::source::SourceFormat;

/// A compiled config: everything a run needs to know, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// `[source]`.
    pub source: SourceSettings,
    /// `[target]`.
    pub target: Target,
    /// `[match]`.
    pub matching: Match,
    /// `[limits]`.
    pub limits: Limits,
    /// `[state] path`: the directory of the sync state files, when the config sets it.
    pub state: Option<PathBuf>,
    /// `[state] refresh` and `refresh_days`: when records are written again before the
    /// target expires them.
    pub refresh: RefreshSetting,
    /// `[state] lease_seconds`, `checkpoint_records`, `checkpoint_minutes`: how a state in
    /// S3 is held and uploaded.
    pub remote: RemoteSettings,
    /// `[fields]`, sorted by target field name.
    pub rules: Vec<FieldRule>,
    /// `[mirror]`, when `deletes` is not `off`.
    pub mirror: Option<Mirror>,
}

/// How a sync state in S3 is held and uploaded (`[state]`; unused by a local state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSettings {
    /// The lease's duration in seconds (default 300).
    pub lease_seconds: u64,
    /// When checkpoints are uploaded (default every 10,000 records or 5 minutes).
    pub checkpoints: crate::state::remote::Checkpoints,
}

impl Default for RemoteSettings {
    fn default() -> RemoteSettings {
        RemoteSettings {
            lease_seconds: 300,
            checkpoints: crate::state::remote::Checkpoints::default(),
        }
    }
}

/// `[mirror]`, compiled: which records this sync owns and may delete, and the guard.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// `report` or `delete` (`off` compiles to no `Mirror`).
    pub deletes: Deletes,
    /// This sync's name, kept (hashed) in the sync state beside each record it settles.
    pub owner: String,
    /// The guard: deletions are withheld when the candidates exceed this count...
    pub max_deletes: u64,
    /// ...and this share of the owner's records, in percent.
    pub max_delete_percent: f64,
}

/// `[mirror] max_deletes` when the config does not set it.
pub const DEFAULT_MAX_DELETES: u64 = 100;
/// `[mirror] max_delete_percent` when the config does not set it.
pub const DEFAULT_MAX_DELETE_PERCENT: f64 = 5.0;

/// `[state] refresh` / `refresh_days`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshSetting {
    /// Refresh at the default age (80% of the target's expiration at most).
    #[default]
    Default,
    /// Refresh at this age in days at most.
    Days(u32),
    /// Never refresh (`refresh = false`): records may expire.
    Off,
}

/// `[source]`, compiled.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Input path from the config (the command line may override it).
    pub path: Option<String>,
    /// Column naming each record.
    pub key: String,
    /// Format, when set explicitly.
    pub format: Option<SourceFormat>,
    /// CSV delimiter byte.
    pub delimiter: u8,
    /// Default empty policy.
    pub empty: EmptyPolicy,
    /// Default phone region.
    pub phone_region: PhoneRegion,
}

/// How a record finds its target record.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchBy {
    /// The column holds the target's own id.
    Id(String),
    /// Search the target by `key` for the value the record writes (see [`SearchRule`]).
    Search {
        /// Search key name (`_email`, `Username`, ...).
        key: String,
        /// How the value searched for is made.
        value: SearchRule,
    },
}

/// `[match]`, compiled.
#[derive(Debug, Clone)]
pub struct Match {
    /// By id or by search.
    pub by: MatchBy,
    /// What to do when nothing matches.
    pub when_missing: WhenMissing,
    /// What a second row naming the same target record does.
    pub duplicates: Duplicates,
}

impl Match {
    /// The id column, when matching by id.
    pub fn id_column(&self) -> Option<&str> {
        match &self.by {
            MatchBy::Id(c) => Some(c),
            MatchBy::Search { .. } => None,
        }
    }

    /// How the search value is made, when matching by search.
    pub fn search(&self) -> Option<&SearchRule> {
        match &self.by {
            MatchBy::Id(_) => None,
            MatchBy::Search { value, .. } => Some(value),
        }
    }
}

/// Requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// A fixed sustained rate.
    PerSecond(f64),
    /// Adapt to an unknown quota, starting at this rate.
    Auto {
        /// Requests per second to start from.
        start: f64,
    },
}

/// `[limits]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Sustained request rate of every API operation without its own.
    pub rate: Rate,
    /// Token-bucket burst of every API operation without its own.
    pub burst: u32,
    /// `[limits.operations.<Operation>]`: operations with their own rate or burst.
    pub operations: BTreeMap<String, OperationLimits>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// `[limits] shared`: the Redis URL of the account-wide quota; `rate`/`burst` (and each
    /// operation's) are then the budget of every process of the account together.
    pub shared: Option<String>,
    /// `[limits] shared_peers`: with `shared`, a lost Redis leaves each process at
    /// `rate / shared_peers`.
    pub shared_peers: u32,
    /// Records read ahead of the writes (Customer Profiles by ProfileId: `BatchGetProfile`).
    pub read_ahead: usize,
}

impl Limits {
    /// The rate and burst of one API operation: its own, else the defaults.
    pub fn of(&self, operation: &str) -> (Rate, u32) {
        let own = self.operations.get(operation);
        (
            own.and_then(|o| o.rate).unwrap_or(self.rate),
            own.and_then(|o| o.burst).unwrap_or(self.burst),
        )
    }
}

/// `[limits.operations.<Operation>]`, compiled: what it sets of its own.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OperationLimits {
    /// The operation's own rate.
    pub rate: Option<Rate>,
    /// The operation's own burst.
    pub burst: Option<u32>,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and compiles a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read the config: {e}"),
        }])
    })?;
    compile::compile(path, &text)
}
