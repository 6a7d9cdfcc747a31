//! The local sync state: for each target record, a hash of the last payload the target
//! accepted, so that the next run can tell an unchanged record without asking the target.
//!
//! Pure storage, with no knowledge of the pipeline. One [redb] file per target identity
//! ([`TargetIdentity`]: the target kind and what tells its records apart from every other
//! target's: for Customer Profiles the AWS account, region, endpoint and domain; for Connect
//! users the instance ARN and endpoint; for Genesys the base URL and tenant), named
//! `<kind>-<16 hex>.redb` under the state directory (default `./state/`), and the identity
//! written inside the file, checked on every open: a file that belongs to another identity
//! is refused ([`StateError::WrongIdentity`]), never used, even when the user names it
//! explicitly. So a rehearsal against an emulator or a staging account and the production
//! run from the same working directory keep two files, and neither reads the other's.
//!
//! # Records
//!
//! The key is the target id ([`encode_id`]): a 32-hex ProfileId is stored as its 16 bytes,
//! a lower-case UUID (a Connect UserId) as its 16 bytes, anything else (a Genesys
//! `customer_id`) as its text; one tag byte in front keeps the three apart. The value is a
//! [`Stored`]: the 128-bit [`payload_hash`] of the mapped payload (16 bytes) and, for Connect
//! users, the user's `LastModifiedTime` then (8 more bytes), and, for a record we wrote, when the
//! target accepted our last write (4 more bytes, seconds since the epoch), which tells when
//! a Customer Profiles record is due for a refresh before it expires. A first run leaves redb's
//! leaves half to two thirds full (71-89 bytes per record); [`SyncState::close`] rewrites
//! them full and drops the free pages, to about 43 bytes per record (see `bench/state.sh`,
//! `bench/nightly.sh` and ARCHITECTURE.md).
//!
//! Records matched by a search have a second table ([`SyncState::found`]): under the
//! record's own key ([`found_key`]: the search key, the `[source] key` column and the
//! record's value of it, which the ledger holds too; never the value searched for), the
//! target id it was found at, so that the next run finds its [`Stored`] without a search.
//! It is written after the records' batch ([`SyncState::put_found_many`]): a crash between
//! the two only makes the next run search again.
//!
//! A `[mirror]` run also keeps who settled each record ([`SyncState::put_owned_many`]):
//! in a third table, target id (encoded as in the records table) → a 64-bit hash of the
//! `[mirror] owner` and the record's `[source] key` (an id the ledger holds too, never a
//! field value), which is where its
//! deletion candidates come from ([`SyncState::owned_by`]). It is a table of its own so that
//! a state without mirror runs keeps its size (the key's length would otherwise grow every
//! record's value); a record forgotten is forgotten there too.
//!
//! # Durability and order
//!
//! [`SyncState::put_many`] writes its whole batch in one redb write transaction committed
//! with [`Durability::Immediate`](redb::Durability::Immediate): when it returns, the batch is on disk (fsync), and a crash
//! before that leaves none of it (redb's copy-on-write commit is atomic). So a caller that
//! stores a hash only after the target accepted the write, and after the ledger line is
//! flushed, never marks an unsent record as synced. [`SyncState::remove`] forgets a record
//! (its write failed, or the target no longer has it) the same way.
//!
//! # Sharing
//!
//! [`SyncState`] is `Send + Sync`: share it with `Arc` and read from any number of tasks
//! through `&self` (each read is one redb read transaction, a few microseconds, taking no
//! lock a writer waits on). Writes from several threads are serialized by redb. Nothing is
//! loaded into memory but redb's page cache, capped at [`CACHE_BYTES`], so memory stays flat
//! whatever the number of records.
//!
//! # Locking
//!
//! redb holds a lock on the open file, so a second process that opens the same state file
//! gets [`StateError::Locked`], which names the file and, when it can, the pid of the run
//! that holds it (the holder writes it to `<file>.pid` once it has the lock).
//!
//! # Privacy
//!
//! The store holds ids and hashes, never values, but a hash of a guessable payload can be
//! checked against guesses, so the file (and its directory, when created here) is readable
//! by its owner only (mode 0600 / 0700 on Unix).
//!
//! # Files
//!
//! - `identity.rs`: [`TargetIdentity`], which target a file describes, and its file name;
//! - `keys.rs`: what the store keys and hashes ([`encode_id`], [`payload_hash`], ...), pure;
//! - `store.rs`: the redb file itself ([`SyncState`], [`Stored`], [`StateError`]);
//! - `lock.rs`: the pid file beside a locked local state;
//! - `s3.rs`: the S3 requests (path-style, SigV4, conditional PUT);
//! - `lease.rs`: the lease on a state in S3 (take, renew, take over, release);
//! - `remote.rs`: a state in S3: the start probe, download, checkpoints and the final upload.

mod identity;
mod keys;
pub mod lease;
mod lock;
pub mod remote;
pub mod s3;
mod store;

pub use identity::TargetIdentity;
pub use keys::{
    EncodedId, PayloadValue, decode_id, encode_id, found_key, owner_hash, payload_hash,
};
pub use s3::S3Location;
pub use store::{CACHE_BYTES, DiskUsage, StateError, Stored, SyncState, TIDY_MIN_WASTE_BYTES};

/// Where a sync state lives, from `--state` or `[state] path`: the one place the backend is
/// chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (one file per target identity, locked while open).
    Local(std::path::PathBuf),
    /// `s3://BUCKET/PREFIX/`: downloaded, worked on locally, uploaded under a lease.
    S3(S3Location),
}

impl Location {
    /// `s3://…` is S3, anything else a local directory. Pure.
    pub fn parse(text: &str) -> Result<Location, String> {
        if text.starts_with("s3://") {
            S3Location::parse(text).map(Location::S3)
        } else {
            Ok(Location::Local(std::path::PathBuf::from(text)))
        }
    }
}
