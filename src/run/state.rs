//! Opens a run's sync state where `--state` / `[state] path` says (the one place the backend
//! is chosen, [`Location`]): a local directory (the file locked for the run), or S3 (the
//! probe, the lease kept renewed, the state downloaded to a private local copy), and at the
//! end of an S3 run uploads the final file and releases the lease. Also `profilesync state
//! unlock`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{EXIT_ABORTED, EXIT_OK, EXIT_USAGE, Failure, SyncRequest, now};
use crate::config::{Config, RefreshSetting};
use crate::pipeline::StateUse;
use crate::pipeline::refresh::Refresh;
use crate::sigv4::Signer;
use crate::state::lease::keep_renewing;
use crate::state::remote::{self, RemoteState};
use crate::state::s3::S3;
use crate::state::{Location, S3Location, SyncState, TargetIdentity};
use crate::targets::aws;

/// The state's location: `--state`, else `[state] path`, else `./state`.
pub fn location(flag: Option<&Path>, config: &Config) -> Result<Location, String> {
    let text = flag
        .map(Path::to_path_buf)
        .or_else(|| config.state.clone())
        .unwrap_or_else(|| PathBuf::from("state"));
    Location::parse(&text.to_string_lossy()).map_err(|why| format!("--state: {why}"))
}

/// A state in S3 while the run uses it: the state, and the task that renews its lease.
pub struct Remote {
    /// The state.
    pub state: Arc<RemoteState>,
    /// The local copy.
    pub path: PathBuf,
    renewal: JoinHandle<()>,
}

impl Remote {
    /// The end of the run: stops renewing, uploads the final file, releases the lease.
    /// `Err` when the state could not be uploaded (the run then exits 3).
    pub async fn finish(self) -> Result<(), String> {
        self.renewal.abort();
        self.state
            .finish(&self.path)
            .await
            .map_err(|e| e.to_string())
    }

    /// The run did not start: stops renewing and releases the lease, uploading nothing.
    pub async fn abandon(self) {
        self.renewal.abort();
        self.state.abandon().await;
    }
}

/// Opens the sync state of `identity`, with the rule for refreshing records the target would
/// expire, and says on standard error which it is (unless `--quiet`): a rehearsal and a
/// production run from one directory use two files. For a state in S3 it also gives the
/// [`Remote`] to finish at the end and the receiver of a lost lease's reason (for the run's
/// stop signal).
pub async fn open(
    request: &SyncRequest,
    config: &Config,
    identity: &TargetIdentity,
    expiration_days: Option<u32>,
) -> Result<(StateUse, Option<(Remote, oneshot::Receiver<String>)>), Failure> {
    let (state, remote) = open_store(
        request.state.as_deref(),
        request.sdk.as_ref(),
        config,
        identity,
        request.quiet,
    )
    .await?;
    if expiration_days.is_some() && config.refresh == RefreshSetting::Off {
        eprintln!(
            "profilesync: warning: [state] refresh = false: profiles this run leaves unchanged are not written, and the target deletes a profile nobody updates within {} days",
            expiration_days.unwrap_or_default()
        );
    }
    let used = StateUse {
        state,
        full: request.full,
        refresh: Refresh::new(config.refresh, expiration_days, now()),
        remote: remote.as_ref().map(|(r, _)| Arc::clone(&r.state)),
    };
    Ok((used, remote))
}

/// The store alone, where `flag` (`--state`), else `[state] path`, says: a local file
/// locked for the run, or a local copy of the S3 state under its lease (with the [`Remote`]
/// and its lost lease's receiver, as [`open`] gives them). For `plan`/`apply` through
/// [`open`], and for `erase`.
pub async fn open_store(
    flag: Option<&Path>,
    sdk: Option<&aws_types::SdkConfig>,
    config: &Config,
    identity: &TargetIdentity,
    quiet: bool,
) -> Result<(SyncState, Option<(Remote, oneshot::Receiver<String>)>), Failure> {
    let location =
        location(flag, config).map_err(|m| Failure::usage(format!("profilesync: {m}")))?;
    let (state, remote, shown) = match location {
        Location::Local(dir) => {
            let state = SyncState::open(&dir, identity)
                .map_err(|e| Failure::usage(format!("profilesync: {e}")))?;
            let shown = state.path().display().to_string();
            (state, None, shown)
        }
        Location::S3(at) => {
            let sdk = match sdk {
                Some(sdk) => sdk.clone(),
                None => aws::load().await,
            };
            let (remote, lost) = open_s3(&sdk, &at, identity, config).await?;
            let state = match SyncState::open_file(&remote.path, identity) {
                Ok(state) => state,
                Err(e) => {
                    remote.abandon().await;
                    return Err(Failure::usage(format!("profilesync: {e}")));
                }
            };
            let shown = format!(
                "{} (lease {})",
                remote.state.url(),
                remote.state.lease().id()
            );
            (state, Some((remote, lost)), shown)
        }
    };
    tracing::info!(kind = identity.kind(), "sync state opened");
    if !quiet && !crate::logging::json() {
        eprintln!(
            "sync state: {shown} ({} {})",
            identity.kind(),
            identity.scope()
        );
    }
    Ok((state, remote))
}

/// The bucket's client: credentials and region from the AWS chain, the endpoint from
/// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / a profile's `endpoint_url` (plain `http://`
/// only to loopback), else `https://s3.<region>.amazonaws.com`.
fn s3_client(sdk: &aws_types::SdkConfig, at: &S3Location) -> Result<S3, Failure> {
    let usage = |m: String| Failure::usage(format!("profilesync: S3 sync state: {m}"));
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| usage("no AWS region: set AWS_REGION or a profile's region".to_owned()))?;
    let endpoint = aws::url_used(
        aws::configured(sdk, "S3").map_err(usage)?.as_deref(),
        "s3",
        &region,
    );
    S3::new(
        &endpoint,
        &at.bucket,
        Signer::s3(&region, sdk.credentials_provider()),
    )
    .map_err(usage)
}

/// Probes, takes the lease, downloads, and starts renewing the lease; a renewal that fails
/// for good marks the state (nothing more is uploaded) and sends its reason.
async fn open_s3(
    sdk: &aws_types::SdkConfig,
    at: &S3Location,
    identity: &TargetIdentity,
    config: &Config,
) -> Result<(Remote, oneshot::Receiver<String>), Failure> {
    let s3 = Arc::new(s3_client(sdk, at)?);
    let dir = std::env::temp_dir().join(format!(
        "profilesync-state-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let settings = config.remote;
    let (state, path) = RemoteState::open(
        s3,
        at,
        &identity.file_name(),
        settings.lease_seconds,
        settings.checkpoints,
        &dir,
    )
    .await
    .map_err(|e| {
        let code = if e.is_usage() {
            EXIT_USAGE
        } else {
            EXIT_ABORTED
        };
        Failure::new(code, format!("profilesync: {e}"))
    })?;
    let state = Arc::new(state);
    let (tx, rx) = oneshot::channel();
    let renewal = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let lease = Arc::clone(state.lease());
            let why = keep_renewing(lease.seconds(), || lease.renew()).await;
            state.lease_lost();
            eprintln!("profilesync: {why}: the run stops");
            let _ = tx.send(why);
        })
    };
    Ok((
        Remote {
            state,
            path,
            renewal,
        },
        rx,
    ))
}

/// `profilesync state unlock [--config FILE] [--state S3_URL] LEASE_ID`, on a runtime of its
/// own: removes the lease with that id under the state's S3 location (`--state`, else the
/// config file's `[state] path`). Exit 0 when removed, 2 when no lease has that id or the
/// state is not in S3, 3 when S3 failed.
pub fn unlock_command(config: Option<&Path>, state: Option<&Path>, lease_id: &str) -> i32 {
    let text = match state {
        Some(state) => Some(state.to_string_lossy().into_owned()),
        None => match config.map(config_state_path).transpose() {
            Ok(text) => text.flatten(),
            Err(e) => {
                eprintln!("profilesync: state unlock: {e}");
                return EXIT_USAGE;
            }
        },
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(unlock(text.as_deref(), lease_id)),
        Err(e) => {
            eprintln!("profilesync: cannot start the async runtime: {e}");
            EXIT_ABORTED
        }
    }
}

/// The `[state] path` of a config file, read from its TOML alone (the command needs no
/// input and no target).
fn config_state_path(file: &Path) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(table
        .get("state")
        .and_then(|s| s.get("path"))
        .and_then(|p| p.as_str())
        .map(str::to_owned))
}

async fn unlock(location: Option<&str>, lease_id: &str) -> i32 {
    let Some(Ok(Location::S3(at))) = location.map(Location::parse) else {
        eprintln!(
            "profilesync: state unlock: the state is not in S3: give --state s3://BUCKET/PREFIX/ \
             or a --config whose [state] path is one"
        );
        return EXIT_USAGE;
    };
    let sdk = aws::load().await;
    let s3 = match s3_client(&sdk, &at) {
        Ok(s3) => s3,
        Err(f) => {
            eprintln!("{}", f.message);
            return f.code;
        }
    };
    match remote::unlock(&s3, &at, lease_id).await {
        Ok(Some(key)) => {
            eprintln!(
                "profilesync: removed lease {lease_id} (s3://{}/{key})",
                at.bucket
            );
            EXIT_OK
        }
        Ok(None) => {
            eprintln!("profilesync: no lease {lease_id} under {at}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("profilesync: state unlock: {e}");
            EXIT_ABORTED
        }
    }
}
