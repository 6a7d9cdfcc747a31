//! What a `plan` or `apply` run is handed, for the stages that send and those that keep the
//! sync state ([`super::sync`], and the mirror stage after it): the [`Sender`] (the target,
//! its limiters, the retry policy) and the [`StateUse`] (the open state and how the run uses
//! it). Its own file so that both stages import it, neither from the other.

use std::sync::Arc;

use super::refresh::Refresh;
use crate::config::Config;
use crate::limiter::Limiters;
use crate::retry::{Halt, RetryPolicy};
use crate::state::remote::{RemoteError, RemoteState};
use crate::state::{SyncState, TargetIdentity};
use crate::targets::{Pace, PreflightError, Target};

/// The local sync state of a run and how the run uses it.
pub struct StateUse {
    /// The target's state file, open (and so locked) for the run.
    pub state: SyncState,
    /// `--full`: classify no record by the state (read everything), but refresh it.
    pub full: bool,
    /// When a record is written again before the target expires it; `None` for a target
    /// whose records do not expire, or with `[state] refresh = false`.
    pub refresh: Option<Refresh>,
    /// A state kept in S3: the writer uploads its checkpoints; `None` for a local state.
    pub remote: Option<Arc<RemoteState>>,
}

impl StateUse {
    /// After the writer committed `records` changes: a state in S3 uploads a checkpoint when
    /// one is due (no write transaction is open, so the file is consistent). `Err` with the
    /// reason the run must stop (another run stored a newer state, or the lease is lost); an
    /// upload that merely failed is said and tried again at the next checkpoint.
    pub async fn checkpoint(&self, records: usize) -> Result<(), String> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if !remote.checkpoint_due(records as u64) {
            return Ok(());
        }
        match remote.upload(self.state.path()).await {
            Ok(()) => Ok(()),
            Err(e @ (RemoteError::Newer { .. } | RemoteError::LeaseLost { .. })) => {
                Err(e.to_string())
            }
            Err(e) => {
                eprintln!("profilesync: warning: a checkpoint of the sync state failed: {e}");
                Ok(())
            }
        }
    }
}

/// What sends records: the target, the limiters its requests wait on (one per API
/// operation), the retry policy.
pub struct Sender {
    /// The target's client.
    pub target: Target,
    /// The run's token buckets, one per API operation (the ledger writer reads their rates).
    pub limiters: Arc<Limiters>,
    /// The run's retry policy.
    pub policy: RetryPolicy,
}

impl Sender {
    /// The pacing of requests that give up, unsent, when `halt` comes.
    pub fn pace(&self, halt: Halt) -> Pace<'_> {
        Pace {
            limiters: &self.limiters,
            policy: &self.policy,
            halt,
            attempts: Default::default(),
        }
    }

    /// Checks what every record depends on; see [`Target::preflight`].
    pub async fn preflight(&self, config: &Config) -> Result<Vec<String>, PreflightError> {
        self.target
            .preflight(config, &self.pace(Halt::never()))
            .await
    }

    /// The identity the target's sync state is kept under; see [`Target::identity`].
    pub async fn identity(&self) -> Result<TargetIdentity, PreflightError> {
        self.target.identity(&self.pace(Halt::never())).await
    }
}
