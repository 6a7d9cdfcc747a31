//! A sync state kept in S3 (`[state] path = "s3://BUCKET/PREFIX/"`): the same redb file as
//! a local state, stored as the object `<PREFIX><kind>-<16 hex>.redb` and worked on as a
//! local copy.
//!
//! A run:
//! 1. **probes** the endpoint ([`probe`]): a second `If-None-Match: *` PUT of a key of its
//!    own must get 412, else the endpoint ignores conditional writes and nothing below would
//!    hold: the run stops (exit 2) naming it;
//! 2. takes the **lease** (`lease.rs`), or stops (exit 2) naming its holder;
//! 3. **downloads** the state (404: a first night) into a private local directory, keeping
//!    its ETag;
//! 4. uploads **checkpoints** between the writer's transactions, every
//!    `[state] checkpoint_records` records or `checkpoint_minutes` minutes, whichever comes
//!    first ([`RemoteState::checkpoint_due`]), and the **final** file after the store closed,
//!    each with `If-Match` on the ETag it last saw (`If-None-Match: *` for the first). A 412
//!    means someone else wrote a newer state: the run stops (exit 3) and never overwrites it;
//! 5. **releases** the lease.
//!
//! The state learns only what the target accepted (the writer's invariant is unchanged), so a
//! crash loses at most the work since the last checkpoint, which the next run reads again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::lease::{Lease, LeaseError};
use super::s3::{Condition, S3, S3Error, S3Location, Written};

/// When checkpoints are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    /// After this many records the state learnt since the last upload.
    pub records: u64,
    /// Or after this long since the last upload.
    pub every: Duration,
}

impl Default for Checkpoints {
    fn default() -> Checkpoints {
        Checkpoints {
            records: 10_000,
            every: Duration::from_secs(5 * 60),
        }
    }
}

/// Whether a checkpoint is due after `records` learnt over `elapsed` since the last one. Pure.
pub fn due(rule: Checkpoints, records: u64, elapsed: Duration) -> bool {
    records > 0 && (records >= rule.records || elapsed >= rule.every)
}

/// Why a state in S3 could not be used (the exit code is the caller's: 2 for
/// [`RemoteError::Unsafe`] and [`RemoteError::Lease`]'s `Held`, 3 otherwise).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The endpoint does not honour conditional writes.
    #[error(
        "the S3 endpoint {endpoint} ignores conditional writes (a second If-None-Match: * PUT \
         of {key} was not refused with 412): a lease there would not keep two runs apart, so \
         the state is not kept there"
    )]
    Unsafe {
        /// The endpoint.
        endpoint: String,
        /// The probe's key.
        key: String,
    },
    /// The bucket `[state] path` names does not exist.
    #[error(
        "the bucket {bucket} of the sync state ([state] path / --state) does not exist at \
         {endpoint}: create it, or name another"
    )]
    NoBucket {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
    },
    /// The lease.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Someone else stored a newer state.
    #[error(
        "the sync state {url} was changed by another run since this one downloaded it (412 on \
         If-Match): this run's state is not uploaded, and the newer one is kept"
    )]
    Newer {
        /// The state object.
        url: String,
    },
    /// The lease was lost earlier in the run: nothing more is uploaded.
    #[error("the sync state {url} is not uploaded: this run lost its lease")]
    LeaseLost {
        /// The state object.
        url: String,
    },
    /// S3 failed.
    #[error(transparent)]
    S3(#[from] S3Error),
    /// The local copy.
    #[error("the local copy of the sync state {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl RemoteError {
    /// Whether the run must stop as a usage error (exit 2): nothing was sent, someone must
    /// look (another holder, an unsafe endpoint).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            RemoteError::Unsafe { .. }
                | RemoteError::NoBucket { .. }
                | RemoteError::Lease(LeaseError::Held { .. })
        )
    }
}

/// Probes `s3` for conditional writes under `key`: the first `If-None-Match: *` PUT must
/// be stored, the second refused; the probe object is then removed. A bucket that does not
/// exist is said so here, the first request of a run to it.
pub async fn probe(s3: &S3, key: &str) -> Result<(), RemoteError> {
    let first = match s3.put(key, b"probe".to_vec(), Condition::Absent).await {
        Err(e) if e.code() == Some("NoSuchBucket") => {
            return Err(RemoteError::NoBucket {
                bucket: e.bucket,
                endpoint: e.endpoint,
            });
        }
        first => first?,
    };
    let second = s3.put(key, b"probe".to_vec(), Condition::Absent).await?;
    let _ = s3.delete(key, None).await;
    match (first, second) {
        (Written::Done(_), Written::Refused) => Ok(()),
        _ => Err(RemoteError::Unsafe {
            endpoint: s3.endpoint().to_owned(),
            key: key.to_owned(),
        }),
    }
}

/// A run's state in S3, with its lease.
#[derive(Debug)]
pub struct RemoteState {
    s3: Arc<S3>,
    key: String,
    url: String,
    lease: Arc<Lease>,
    rule: Checkpoints,
    /// The ETag of the object as we last saw it; `None` while there is none.
    etag: Mutex<Option<String>>,
    /// Records learnt since the last upload, and when it was.
    learnt: AtomicU64,
    last: Mutex<Instant>,
    /// Set once the lease is lost or an upload was refused: nothing more is uploaded.
    stopped: AtomicBool,
    /// The local copy's directory, removed at the end.
    dir: PathBuf,
}

impl RemoteState {
    /// Probes the endpoint, takes the lease on `file_name` under `at`, and downloads the
    /// state into `dir` (created private). Returns the state and the local file's path.
    pub async fn open(
        s3: Arc<S3>,
        at: &S3Location,
        file_name: &str,
        lease_seconds: u64,
        rule: Checkpoints,
        dir: &Path,
    ) -> Result<(RemoteState, PathBuf), RemoteError> {
        let key = at.key(file_name);
        let url = format!("s3://{}/{key}", at.bucket);
        let lease_key = format!("{key}.lease");
        probe(&s3, &format!("{key}.probe-{:016x}", rand::random::<u64>())).await?;
        let lease = Lease::acquire(Arc::clone(&s3), lease_key, lease_seconds, &url).await?;
        let lease = Arc::new(lease);
        let remote = RemoteState {
            s3: Arc::clone(&s3),
            key,
            url,
            lease,
            rule,
            etag: Mutex::new(None),
            learnt: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
            stopped: AtomicBool::new(false),
            dir: dir.to_path_buf(),
        };
        match remote.download(file_name).await {
            Ok(path) => Ok((remote, path)),
            Err(e) => {
                let _ = remote.lease.release().await;
                Err(e)
            }
        }
    }

    async fn download(&self, file_name: &str) -> Result<PathBuf, RemoteError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RemoteError::Io { path, source }
        };
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(file_name);
        let _ = std::fs::remove_file(&path);
        if let Some(object) = self.s3.get(&self.key).await? {
            write_private(&path, &object.body).map_err(io(&path))?;
            *self.lock_etag() = Some(object.etag);
            tracing::info!(bytes = object.body.len(), "sync state downloaded");
        }
        Ok(path)
    }

    /// The state's location, `s3://BUCKET/KEY`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The lease this run holds.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Says that the lease was lost: nothing more is uploaded.
    pub fn lease_lost(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Counts `records` the state just learnt (committed), and says whether a checkpoint is
    /// due now.
    pub fn checkpoint_due(&self, records: u64) -> bool {
        let learnt = self.learnt.fetch_add(records, Ordering::SeqCst) + records;
        let elapsed = self.last.lock().map(|t| t.elapsed()).unwrap_or_default();
        !self.stopped.load(Ordering::SeqCst) && due(self.rule, learnt, elapsed)
    }

    /// Uploads the file at `path` (consistent: no write transaction is open) with `If-Match`
    /// on the last ETag seen (`If-None-Match: *` if there was none). A refusal stops every
    /// later upload.
    pub async fn upload(&self, path: &Path) -> Result<(), RemoteError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(RemoteError::LeaseLost {
                url: self.url.clone(),
            });
        }
        let body = std::fs::read(path).map_err(|source| RemoteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bytes = body.len();
        let etag = self.lock_etag().clone();
        let condition = etag.as_deref().map_or(Condition::Absent, Condition::Is);
        match self.s3.put(&self.key, body, condition).await? {
            Written::Done(new) => {
                *self.lock_etag() = Some(new);
                self.learnt.store(0, Ordering::SeqCst);
                if let Ok(mut last) = self.last.lock() {
                    *last = Instant::now();
                }
                tracing::info!(bytes, "sync state uploaded");
                Ok(())
            }
            Written::Refused => {
                self.stopped.store(true, Ordering::SeqCst);
                Err(RemoteError::Newer {
                    url: self.url.clone(),
                })
            }
        }
    }

    /// The end of the run: uploads the final file (unless the run lost its lease or was
    /// refused), then releases the lease and removes the local copy.
    pub async fn finish(&self, path: &Path) -> Result<(), RemoteError> {
        let uploaded = self.upload(path).await;
        if !matches!(uploaded, Err(RemoteError::LeaseLost { .. }))
            && let Err(e) = self.lease.release().await
        {
            tracing::warn!("releasing the sync state's lease failed: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        uploaded
    }

    /// Gives up without uploading (the run could not start): releases the lease.
    pub async fn abandon(&self) {
        let _ = self.lease.release().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn lock_etag(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.etag.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes the lease whose id is `lease_id` among the leases under `at` (`profilesync
/// state unlock`). Returns the lease's key, or `None` when no lease has that id.
pub async fn unlock(s3: &S3, at: &S3Location, lease_id: &str) -> Result<Option<String>, S3Error> {
    for key in s3.list(&at.prefix).await? {
        if !key.ends_with(".lease") {
            continue;
        }
        let Some(object) = s3.get(&key).await? else {
            continue;
        };
        let holds = super::lease::read_body(&object, &key).is_ok_and(|b| b.lease_id == lease_id);
        if holds {
            s3.delete(&key, Some(&object.etag)).await?;
            return Ok(Some(key));
        }
    }
    Ok(None)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_its_records_or_its_time() {
        let rule = Checkpoints {
            records: 100,
            every: Duration::from_secs(60),
        };
        assert!(!due(rule, 99, Duration::from_secs(59)));
        assert!(due(rule, 100, Duration::ZERO));
        assert!(due(rule, 1, Duration::from_secs(60)));
        assert!(!due(rule, 0, Duration::from_secs(600)), "nothing new");
    }
}
