//! Phase one of config loading: a serde mirror of the TOML file.
//!
//! Every table rejects unknown keys, so a typo is an error that names the expected keys.
//! Values keep their byte spans (`Spanned`) so that phase two, [`super::compile`], can point
//! at the line of each problem. The `[fields]` entries stay as raw TOML values: their many
//! shapes (a column name, a table with `from`/`value`/`template`, transform lists) are
//! interpreted by the compile step, which can say precisely what was expected.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::mapping::EmptyPolicy;
use crate::schema::TargetKind;
use crate::source::SourceFormat;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[source]`: where records come from.
    pub source: RawSource,
    /// `[target]`: which API they go to.
    pub target: RawTarget,
    /// `[match]`: how a record finds its target record.
    #[serde(rename = "match")]
    pub matching: Option<Spanned<RawMatch>>,
    /// `[limits]`: rate, burst, concurrency, attempts, read-ahead.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[state]`: where the local sync state lives.
    #[serde(default)]
    pub state: RawState,
    /// `[mirror]`: delete what left the source (off by default).
    pub mirror: Option<Spanned<RawMirror>>,
    /// `[fields]`: target field name → source mapping.
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// The directory of the sync state files (default `./state/`), or `s3://BUCKET/PREFIX/`.
    pub path: Option<Spanned<String>>,
    /// S3 state: the lease's duration in seconds (default 300).
    pub lease_seconds: Option<Spanned<i64>>,
    /// S3 state: upload a checkpoint after this many records (default 10,000).
    pub checkpoint_records: Option<Spanned<i64>>,
    /// S3 state: or after this many minutes (default 5).
    pub checkpoint_minutes: Option<Spanned<i64>>,
    /// Write a record again, though unchanged, before the target expires it (default true).
    pub refresh: Option<bool>,
    /// The age, in days, of our last write after which a record is refreshed (default 80%
    /// of the domain's `DefaultExpirationDays`).
    pub refresh_days: Option<Spanned<i64>>,
}

/// `[mirror]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    /// `off` (default), `report` or `delete`.
    pub deletes: Option<Spanned<Deletes>>,
    /// This sync's name; required unless `deletes = "off"`.
    pub owner: Option<Spanned<String>>,
    /// The guard's count (default 100).
    pub max_deletes: Option<Spanned<i64>>,
    /// The guard's share of this owner's records, in percent (default 5).
    pub max_delete_percent: Option<Spanned<toml::Value>>,
}

/// What a run does with the target records its owner synced that the input no longer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Deletes {
    /// Nothing: the default.
    #[default]
    Off,
    /// List them (`would_delete`) in `plan` and `apply`; delete nothing.
    Report,
    /// `plan` lists them, `apply` deletes them, within the guard.
    Delete,
}

impl Deletes {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Report => "report",
            Self::Delete => "delete",
        }
    }
}

/// `[source]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Input file; the command line's `INPUT` overrides it.
    pub path: Option<String>,
    /// Column (JSONL: dotted field path) naming the record in the ledger and reports.
    pub key: Spanned<String>,
    /// `csv` or `jsonl`; default from the file name.
    pub format: Option<SourceFormat>,
    /// CSV delimiter, one ASCII character.
    pub delimiter: Option<Spanned<String>>,
    /// What an empty source value means, unless a field says otherwise.
    pub empty: Option<EmptyPolicy>,
    /// Region for phone numbers written without a country code.
    pub phone_region: Option<Spanned<String>>,
}

/// `[target]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Which API.
    pub kind: Spanned<TargetKind>,
    /// Customer Profiles domain.
    pub domain: Option<Spanned<String>>,
    /// Connect instance id.
    pub instance_id: Option<Spanned<String>>,
    /// Genesys base URL.
    pub base_url: Option<Spanned<String>>,
    /// Genesys tenant, sent as `X-Genesys-TenantId`.
    pub tenant_id: Option<Spanned<i64>>,
    /// Genesys: the profile extensions the UCS schema declares (no `[fields]` name may be
    /// one of them, in any case).
    pub extensions: Option<Spanned<Vec<String>>>,
    /// AWS region; default from the AWS configuration.
    pub region: Option<Spanned<String>>,
    /// AWS endpoint override; default from the AWS configuration.
    pub endpoint_url: Option<Spanned<String>>,
    /// Connect users: allow changing a user's login e-mail.
    pub allow_email_change: Option<Spanned<bool>>,
}

/// `[match]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// Column holding the target's own id.
    pub id: Option<Spanned<String>>,
    /// Search key name (`_email`, `Username`, ...).
    pub search_key: Option<Spanned<String>>,
    /// Column whose value is searched for, or a table (`from`, `transform`) deriving it.
    pub search_column: Option<Spanned<toml::Value>>,
    /// What to do when nothing matches.
    pub when_missing: Option<Spanned<WhenMissing>>,
    /// What a second row naming the same target record does.
    pub duplicates: Option<Duplicates>,
}

/// What a row does when an earlier row of the same input names the same target record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    /// Applied after the earlier row, to the record it found or created: the last row wins.
    #[default]
    Update,
    /// Ends `failed` with `duplicate_in_input`, naming the first row.
    Fail,
}

/// What `apply` does when no target record matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenMissing {
    /// The record ends `skipped`.
    #[default]
    Skip,
    /// Create the target record.
    Create,
    /// The record ends `failed`.
    Fail,
}

impl WhenMissing {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Create => "create",
            Self::Fail => "fail",
        }
    }
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests per second, or `"auto"`.
    pub rate: Option<Spanned<toml::Value>>,
    /// With `rate = "auto"`: the rate to start from.
    pub start_rate: Option<Spanned<toml::Value>>,
    /// Token-bucket burst.
    pub burst: Option<Spanned<i64>>,
    /// Requests in flight at once.
    pub concurrency: Option<Spanned<i64>>,
    /// Attempts per request, the first included.
    pub max_attempts: Option<Spanned<i64>>,
    /// `redis://HOST:PORT/DB` (or `rediss://`): one account-wide quota shared by every
    /// process.
    pub shared: Option<Spanned<String>>,
    /// With `shared`: how many processes share the budget, for the rate each falls back to
    /// when Redis is lost.
    pub shared_peers: Option<Spanned<i64>>,
    /// Records read ahead of the writes, for a target with batched reads.
    pub read_ahead: Option<Spanned<i64>>,
    /// `[limits.operations.<Operation>]`: one API operation's own rate and burst.
    pub operations: Option<BTreeMap<Spanned<String>, RawOperationLimits>>,
}

/// `[limits.operations.<Operation>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperationLimits {
    /// Requests per second for this operation, or `"auto"`.
    pub rate: Option<Spanned<toml::Value>>,
    /// With `rate = "auto"`: the rate to start from.
    pub start_rate: Option<Spanned<toml::Value>>,
    /// Token-bucket burst for this operation.
    pub burst: Option<Spanned<i64>>,
}
