//! The lease on a sync state in S3: one object, `<state key>.lease`, that says which run
//! holds the state, so that two hosts never work on two copies of it.
//!
//! - **Taken** with `If-None-Match: *` (only one creator wins). A lease already there is
//!   **live** while its age, S3's `Last-Modified` against S3's own `Date` on the same answer
//!   (the server's clock, never ours), is below its duration ([`is_live`]): the run stops
//!   (exit 2) naming its holder and since when. An expired one is **taken over** with
//!   `If-Match` on the ETag just read, so of two runs taking it over one wins.
//! - **Renewed** every third of its duration with `If-Match` ([`keep_renewing`]); a renewal
//!   that fails for a transient reason is tried again until two thirds of the duration have
//!   passed since the last success, then the lease is given up: the run stops sending
//!   (its abort path, as Ctrl-C's) before anyone can take it over, and exits 3. A 412 (someone
//!   took it over or removed it) gives it up at once.
//! - **Released** at the end of the run (DELETE with `If-Match`), or removed by its id with
//!   `profilesync state unlock`.
//!
//! The body is JSON ([`LeaseBody`]): lease id, host, pid, when it started and, by the
//! holder's clock (for people; S3's clock decides), when it expires.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::s3::{Condition, Object, S3, S3Error, Written};

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBody {
    /// The lease's id (what `profilesync state unlock` takes).
    pub lease_id: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When the holder took it (RFC 3339, the holder's clock).
    pub started: String,
    /// When it expires unless renewed (RFC 3339, the holder's clock; S3's decides).
    pub expires: String,
    /// Its duration in seconds (`[state] lease_seconds`).
    pub seconds: u64,
}

impl LeaseBody {
    /// A new lease of `seconds` for this process, started now.
    fn new(seconds: u64) -> LeaseBody {
        let now = Utc::now();
        LeaseBody {
            lease_id: format!("{:016x}", rand::random::<u64>()),
            host: host_name(),
            pid: std::process::id(),
            started: rfc3339(now),
            expires: rfc3339(now + chrono::Duration::seconds(seconds as i64)),
            seconds,
        }
    }

    /// The same lease, renewed now.
    fn renewed(&self) -> LeaseBody {
        LeaseBody {
            expires: rfc3339(Utc::now() + chrono::Duration::seconds(self.seconds as i64)),
            ..self.clone()
        }
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Whether a lease of `seconds` last written at `last_modified` is still live at `now`, both
/// by S3's clock. A lease from the future (clock skew between S3's own servers) is live. Pure.
pub fn is_live(last_modified: SystemTime, now: SystemTime, seconds: u64) -> bool {
    now.duration_since(last_modified)
        .is_ok_and(|age| age < Duration::from_secs(seconds))
        || now < last_modified
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds it (exit 2).
    #[error(
        "the sync state {url} is leased by another run: lease {} of host {} pid {}, since {} \
         (renewed {renewed_ago}s ago by S3's clock; it expires {expires_in}s after its last \
         renewal); wait for it to end, or, if that run is gone, run `profilesync state unlock \
         --config FILE {}`",
        holder.lease_id, holder.host, holder.pid, holder.started, holder.lease_id
    )]
    Held {
        /// The state's location.
        url: String,
        /// Who holds it.
        holder: Box<LeaseBody>,
        /// Seconds since its last renewal, by S3's clock.
        renewed_ago: u64,
        /// Seconds left.
        expires_in: u64,
    },
    /// The lease object is not one of ours.
    #[error("the lease {url} does not hold a profilesync lease ({why}); remove it if it is stale")]
    Malformed {
        /// The lease object.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// S3 failed.
    #[error(transparent)]
    Store(#[from] S3Error),
}

/// Why a renewal failed.
#[derive(Debug)]
pub enum RenewError {
    /// 412 or gone: someone else took it or removed it.
    Lost,
    /// S3 did not answer well; worth another try while time remains.
    Failed(String),
}

/// A lease this run holds.
#[derive(Debug)]
pub struct Lease {
    s3: Arc<S3>,
    key: String,
    body: LeaseBody,
    etag: Mutex<String>,
}

impl Lease {
    /// Takes the lease `key` for `seconds`, or takes over an expired one; `url` names the
    /// state in messages.
    pub async fn acquire(
        s3: Arc<S3>,
        key: String,
        seconds: u64,
        url: &str,
    ) -> Result<Lease, LeaseError> {
        let body = LeaseBody::new(seconds);
        // Twice: a lease released between our create and our read is gone, and worth one
        // more try.
        for _ in 0..2 {
            if let Written::Done(etag) = s3.put(&key, body.to_json(), Condition::Absent).await? {
                return Ok(Lease::held(s3, key, body, etag));
            }
            let Some(current) = s3.get(&key).await? else {
                continue;
            };
            let holder = read_body(&current, &key)?;
            let (Some(modified), Some(now)) = (current.last_modified, current.date) else {
                return Err(LeaseError::Malformed {
                    url: key.clone(),
                    why: "S3 gave no Last-Modified or Date".to_owned(),
                });
            };
            if is_live(modified, now, holder.seconds) {
                let renewed_ago = now.duration_since(modified).map_or(0, |d| d.as_secs());
                return Err(LeaseError::Held {
                    url: url.to_owned(),
                    expires_in: holder.seconds.saturating_sub(renewed_ago),
                    holder: Box::new(holder),
                    renewed_ago,
                });
            }
            // Expired: take it over, unless another run just did.
            match s3
                .put(&key, body.to_json(), Condition::Is(&current.etag))
                .await?
            {
                Written::Done(etag) => {
                    tracing::info!(
                        lease = holder.lease_id.as_str(),
                        "took over an expired lease"
                    );
                    return Ok(Lease::held(s3, key, body, etag));
                }
                Written::Refused => continue,
            }
        }
        // Someone else keeps winning the race: report who holds it now.
        match s3.get(&key).await? {
            Some(current) => Err(LeaseError::Held {
                url: url.to_owned(),
                holder: Box::new(read_body(&current, &key)?),
                renewed_ago: 0,
                expires_in: seconds,
            }),
            None => Err(LeaseError::Malformed {
                url: key,
                why: "it kept changing while this run tried to take it".to_owned(),
            }),
        }
    }

    fn held(s3: Arc<S3>, key: String, body: LeaseBody, etag: String) -> Lease {
        Lease {
            s3,
            key,
            body,
            etag: Mutex::new(etag),
        }
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.body.lease_id
    }

    /// Its duration.
    pub fn seconds(&self) -> u64 {
        self.body.seconds
    }

    /// Renews it once, with `If-Match` on the ETag of our last write.
    pub async fn renew(&self) -> Result<(), RenewError> {
        let etag = self.etag();
        match self
            .s3
            .put(
                &self.key,
                self.body.renewed().to_json(),
                Condition::Is(&etag),
            )
            .await
        {
            Ok(Written::Done(new)) => {
                *self.lock() = new;
                Ok(())
            }
            Ok(Written::Refused) => Err(RenewError::Lost),
            Err(e) if e.status == Some(404) => Err(RenewError::Lost),
            Err(e) => Err(RenewError::Failed(e.to_string())),
        }
    }

    /// Removes it, unless someone else holds it now (`If-Match` on our last ETag).
    pub async fn release(&self) -> Result<(), S3Error> {
        let etag = self.etag();
        self.s3.delete(&self.key, Some(&etag)).await.map(drop)
    }

    fn etag(&self) -> String {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.etag.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads a lease object's body.
pub fn read_body(object: &Object, key: &str) -> Result<LeaseBody, LeaseError> {
    serde_json::from_slice(&object.body).map_err(|e| LeaseError::Malformed {
        url: key.to_owned(),
        why: e.to_string(),
    })
}

/// Renews every `seconds / 3` with `renew` until it fails for good, and returns why. A
/// failure that is worth another try is tried again every `seconds / 12` (at least a
/// second) until two thirds of `seconds` have passed since the last success: the run then
/// stops while the lease is still ours (no one can take it over before it expires).
pub async fn keep_renewing<F, Fut>(seconds: u64, mut renew: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), RenewError>>,
{
    let period = Duration::from_millis(seconds * 1000 / 3);
    let retry = Duration::from_millis((seconds * 1000 / 12).max(1000)).min(period);
    let give_up = Duration::from_millis(seconds * 2000 / 3);
    let mut last_ok = tokio::time::Instant::now();
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        match renew().await {
            Ok(()) => {
                last_ok = tokio::time::Instant::now();
                wait = period;
            }
            Err(RenewError::Lost) => {
                return "the sync state's lease was taken over or removed".to_owned();
            }
            Err(RenewError::Failed(why)) => {
                tracing::warn!("renewing the sync state's lease failed; trying again");
                if last_ok.elapsed() + retry >= give_up {
                    return format!("the sync state's lease could not be renewed: {why}");
                }
                wait = retry;
            }
        }
    }
}

/// This machine's host name (`HOSTNAME`, else the system's), for people reading a lease.
fn host_name() -> String {
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.is_empty()
    {
        return name;
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(0);
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_lease_lives_for_its_duration_by_the_servers_clock() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(is_live(t0, t0 + Duration::from_secs(299), 300));
        assert!(!is_live(t0, t0 + Duration::from_secs(300), 300));
        assert!(
            is_live(t0 + Duration::from_secs(5), t0, 300),
            "from the future"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_runs_every_third_and_gives_up_before_the_lease_expires() {
        let calls = Arc::new(AtomicU32::new(0));
        let start = tokio::time::Instant::now();
        let counted = Arc::clone(&calls);
        // Three renewals work, then S3 stops answering.
        let why = keep_renewing(300, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Ok(())
                } else {
                    Err(RenewError::Failed("HTTP 503".to_owned()))
                }
            }
        })
        .await;
        let elapsed = start.elapsed().as_secs();
        // Last success at 300 s; gives up before 300 + 200 s, long before 300 + 300 s.
        assert!((470..=500).contains(&elapsed), "{elapsed}");
        assert!(why.contains("could not be renewed"), "{why}");
        assert!(calls.load(Ordering::SeqCst) > 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_stops_at_once() {
        let start = tokio::time::Instant::now();
        let why = keep_renewing(30, || async { Err(RenewError::Lost) }).await;
        assert_eq!(start.elapsed().as_secs(), 10);
        assert!(why.contains("taken over"), "{why}");
    }
}
