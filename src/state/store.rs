//! The store: one redb file of a target identity's records ([`SyncState`]), what it holds
//! for each ([`Stored`]), why it can fail ([`StateError`]), and how it tidies its file at
//! close. Pure storage, with no knowledge of the pipeline or of where the file came from.

use std::fmt;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle,
};

use super::identity::TargetIdentity;
use super::keys::{decode_id, encode_id, owner_hash};
use super::lock::{PidFile, pid_path, read_pid};

/// Target id (encoded by [`encode_id`]) → [`Stored`] (16 to 28 bytes).
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// Where [`SyncState::repack`] builds the records' new B-tree, within its transaction.
const REPACKED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records-repacked");
/// Records matched by a search: where each was found, `search key \0 [source] key column \0
/// the record's key` → target id. (The record's key is in the ledger too; the value searched
/// for is not kept.)
const FOUND: TableDefinition<&[u8], &str> = TableDefinition::new("found");
/// Records a `[mirror]` run settled: target id (encoded by [`encode_id`]) → the 8-byte xxh3-64 of the
/// `[mirror] owner` that last settled it (big-endian), then the record's `[source] key`. Only
/// mirror runs write it; deletion candidates are read from it ([`SyncState::owned_by`]).
const OWNED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("owned");
/// What the file is: `format`, `kind`, `scope`.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The on-disk layout version, written at creation and checked on open.
const FORMAT: &str = "1";
/// redb's page cache (reads and writes together). redb's default is 1 GiB, which would let
/// memory grow with the file. 4 MiB holds the branch pages of a 1M-record tree (about 100
/// pages once packed) many times over, and is full already at 100,000 records, so a run's
/// memory does not grow from 100k to 1M records (with 16 MiB a 1M-record night peaked at
/// 53 MB, 29 MB now; `bench/nightly.sh`); a leaf not cached is one `pread` of 4 KiB from the
/// OS's page cache.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// [`SyncState::close`] tidies the file only when at least this much of it is wasted (free
/// pages and unused room inside the records' pages together), and an eighth of it.
pub const TIDY_MIN_WASTE_BYTES: u64 = 64 * 1024;

/// How a state file's space is used ([`SyncState::disk_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Records held.
    pub records: u64,
    /// The file's size.
    pub file_bytes: u64,
    /// Bytes in pages in use (the rest of the file is free pages).
    pub allocated_bytes: u64,
    /// Bytes of keys and values, without the B-tree's overhead.
    pub stored_bytes: u64,
    /// Bytes in the pages of the records' B-tree.
    pub table_bytes: u64,
    /// Of them, room no entry uses (redb's `fragmented_bytes` of the records table).
    pub sparse_bytes: u64,
}

/// What the state holds for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// [`payload_hash`](super::payload_hash) of the payload the target last accepted (or was found to hold).
    pub hash: u128,
    /// The record's last-modified time on the target then, in epoch milliseconds (Connect
    /// users' `LastModifiedTime`); `None` for targets that have none.
    pub last_modified: Option<i64>,
    /// When the target last accepted a write of ours for the record (system clock, seconds
    /// since the epoch), for targets whose records expire when nobody writes them; `None`
    /// when we never wrote it (it was found holding the payload: someone else wrote it,
    /// perhaps long ago).
    pub written_at: Option<u32>,
}

impl Stored {
    /// A record the target holds this payload for, neither timed nor written by us.
    pub fn hash(hash: u128) -> Stored {
        Stored {
            hash,
            last_modified: None,
            written_at: None,
        }
    }

    /// 16 bytes of hash, then 8 of `last_modified` if any, then 4 of `written_at` if any,
    /// all big-endian: 16, 20, 24 or 28 bytes, the length telling which are there.
    fn encode(&self) -> ([u8; 28], usize) {
        let mut bytes = [0u8; 28];
        bytes[..16].copy_from_slice(&self.hash.to_be_bytes());
        let mut len = 16;
        if let Some(millis) = self.last_modified {
            bytes[len..len + 8].copy_from_slice(&millis.to_be_bytes());
            len += 8;
        }
        if let Some(secs) = self.written_at {
            bytes[len..len + 4].copy_from_slice(&secs.to_be_bytes());
            len += 4;
        }
        (bytes, len)
    }

    fn decode(bytes: &[u8]) -> Option<Stored> {
        let hash = u128::from_be_bytes(bytes.get(..16)?.try_into().ok()?);
        let (timed, written) = match bytes.len() {
            16 => (false, false),
            20 => (false, true),
            24 => (true, false),
            28 => (true, true),
            _ => return None,
        };
        let last_modified = timed
            .then(|| bytes[16..24].try_into().ok().map(i64::from_be_bytes))
            .flatten();
        let written_at = written
            .then(|| {
                bytes[bytes.len() - 4..]
                    .try_into()
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .flatten();
        Some(Stored {
            hash,
            last_modified,
            written_at,
        })
    }
}

/// Why the sync state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process has the file open.
    #[error(
        "sync state {} is in use by another profilesync run{}; wait for it to end, or give this run its own --state",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The holder's process id, when it could be read.
        pid: Option<u32>,
    },
    /// The file describes another target.
    #[error(
        "sync state {} belongs to {found}, not to {expected}: it is not used; give this target its own --state",
        path.display()
    )]
    WrongIdentity {
        /// The state file.
        path: PathBuf,
        /// The identity stored in the file.
        found: String,
        /// The identity of this run's target.
        expected: String,
    },
    /// The file has a layout this version does not know (or no identity at all).
    #[error("sync state {} has format {found:?}; this profilesync reads format {FORMAT}", path.display())]
    Format {
        /// The state file.
        path: PathBuf,
        /// The format found.
        found: String,
    },
    /// A stored value does not have the documented size.
    #[error("sync state {} holds a malformed record ({len} bytes)", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The value's size.
        len: usize,
    },
    /// The file or its directory could not be created or read.
    #[error("sync state {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// redb refused (not a redb file, a storage error, ...).
    #[error("sync state {}: {source}", path.display())]
    Store {
        /// The state file.
        path: PathBuf,
        /// redb's error.
        source: redb::Error,
    },
}

/// An open sync state for one target identity.
pub struct SyncState {
    db: Database,
    path: PathBuf,
    identity: TargetIdentity,
    pid_file: Option<PidFile>,
}

impl fmt::Debug for SyncState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncState")
            .field("path", &self.path)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl SyncState {
    /// Opens (creating it and `dir` if needed) the state of `identity` in the directory `dir`,
    /// as the file [`TargetIdentity::file_name`].
    pub fn open(dir: &Path, identity: &TargetIdentity) -> Result<SyncState, StateError> {
        create_private_dir(dir)?;
        SyncState::open_file(&dir.join(identity.file_name()), identity)
    }

    /// Opens (creating it if needed) the state file `path`, which must belong to `identity`
    /// or be new; the directory must exist.
    pub fn open_file(path: &Path, identity: &TargetIdentity) -> Result<SyncState, StateError> {
        create_private_file(path)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StateError::Locked {
                    path: path.to_path_buf(),
                    pid: read_pid(&pid_path(path)),
                },
                other => store_error(path, other),
            })?;
        let mut state = SyncState {
            db,
            path: path.to_path_buf(),
            identity: identity.clone(),
            pid_file: None,
        };
        state.check_identity()?;
        state.pid_file = PidFile::write(path);
        Ok(state)
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The identity the file belongs to.
    pub fn identity(&self) -> &TargetIdentity {
        &self.identity
    }

    /// Writes the identity into a new file, or checks the one it holds.
    fn check_identity(&self) -> Result<(), StateError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            let found = |key: &str| -> Result<Option<String>, StateError> {
                Ok(meta
                    .get(key)
                    .map_err(|e| self.error(e))?
                    .map(|v| v.value().to_string()))
            };
            let format = found("format")?;
            let kind = found("kind")?;
            let scope = found("scope")?;
            match (format, kind, scope) {
                (None, None, None) => {
                    let expected = &self.identity;
                    for (key, value) in [
                        ("format", FORMAT),
                        ("kind", expected.kind()),
                        ("scope", expected.scope()),
                    ] {
                        meta.insert(key, value).map_err(|e| self.error(e))?;
                    }
                }
                (Some(format), Some(kind), Some(scope)) if format == FORMAT => {
                    let found = TargetIdentity::new(kind, scope);
                    if found != self.identity {
                        return Err(StateError::WrongIdentity {
                            path: self.path.clone(),
                            found: found.to_string(),
                            expected: self.identity.to_string(),
                        });
                    }
                }
                (format, _, _) => {
                    return Err(StateError::Format {
                        path: self.path.clone(),
                        found: format.unwrap_or_else(|| "(none)".to_string()),
                    });
                }
            }
            // Created here so that readers always find it.
            txn.open_table(RECORDS).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// What the state holds for `id`, if anything.
    pub fn get(&self, id: &str) -> Result<Option<Stored>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
        let key = encode_id(id);
        match table.get(key.as_slice()).map_err(|e| self.error(e))? {
            Some(value) => self.decode(value.value()).map(Some),
            None => Ok(None),
        }
    }

    /// What the state holds for each of `ids`, in order, read in one transaction (one
    /// consistent snapshot).
    pub fn get_many(&self, ids: &[&str]) -> Result<Vec<Option<Stored>>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
        ids.iter()
            .map(|id| {
                let key = encode_id(id);
                match table.get(key.as_slice()).map_err(|e| self.error(e))? {
                    Some(value) => self.decode(value.value()).map(Some),
                    None => Ok(None),
                }
            })
            .collect()
    }

    /// Stores every item (replacing what was there) in one transaction, durable when this
    /// returns; on an error nothing of the batch is stored.
    pub fn put_many(&self, items: &[(&str, Stored)]) -> Result<(), StateError> {
        self.write(|table| {
            for (id, stored) in items {
                let key = encode_id(id);
                let (bytes, len) = stored.encode();
                table.insert(key.as_slice(), &bytes[..len])?;
            }
            Ok(())
        })
    }

    /// Stores one item, durable when this returns.
    pub fn put(&self, id: &str, stored: Stored) -> Result<(), StateError> {
        self.put_many(&[(id, stored)])
    }

    /// Forgets `ids` (a failed write, a record gone from the target or deleted), with their
    /// owner, in one durable transaction; ids the state does not hold are ignored.
    pub fn remove_many(&self, ids: &[&str]) -> Result<(), StateError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
            let mut owned = txn.open_table(OWNED).map_err(|e| self.error(e))?;
            for id in ids {
                let key = encode_id(id);
                records.remove(key.as_slice()).map_err(|e| self.error(e))?;
                owned.remove(key.as_slice()).map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Stores who settled each record: `(target id, [mirror] owner, [source] key)`, replacing
    /// what was there (the last owner to settle a record owns it), in one durable
    /// transaction. The owner is kept as its 64-bit hash; the key is an id the ledger holds
    /// too, never a field value.
    pub fn put_owned_many(&self, items: &[(&str, &str, &str)]) -> Result<(), StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(OWNED).map_err(|e| self.error(e))?;
            let mut value = Vec::new();
            for (id, owner, key) in items {
                value.clear();
                value.extend_from_slice(&owner_hash(owner).to_be_bytes());
                value.extend_from_slice(key.as_bytes());
                table
                    .insert(encode_id(id).as_slice(), value.as_slice())
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// The target id each of `keys` (`[source] key` values) was last synced from by any
    /// `[mirror]` owner, in order; one pass over the owners' table (for `erase`, whose
    /// requests are short).
    pub fn ids_of_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StateError> {
        let mut ids = vec![None; keys.len()];
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(OWNED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(ids),
            Err(e) => return Err(self.error(e)),
        };
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (id, value) = entry.map_err(|e| self.error(e))?;
            let value = value.value();
            let Some(stored) = value.get(8..) else {
                continue;
            };
            if let Some(at) = keys.iter().position(|k| k.as_bytes() == stored) {
                ids[at] = Some(decode_id(id.value()));
            }
        }
        Ok(ids)
    }

    /// Whether the state already keeps `id` as `owner`'s, synced from `key`.
    pub fn owner_is(&self, id: &str, owner: &str, key: &str) -> Result<bool, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(OWNED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(self.error(e)),
        };
        let found = table
            .get(encode_id(id).as_slice())
            .map_err(|e| self.error(e))?;
        Ok(found.is_some_and(|value| {
            let value = value.value();
            value.len() >= 8
                && value[..8] == owner_hash(owner).to_be_bytes()
                && &value[8..] == key.as_bytes()
        }))
    }

    /// The records `owner` settled last: how many there are, and `(target id, [source]
    /// key)` of those `keep` accepts, in id order. Reads one snapshot, streaming: memory
    /// holds only what `keep` accepts.
    pub fn owned_by(
        &self,
        owner: &str,
        mut keep: impl FnMut(&str, &str) -> bool,
    ) -> Result<(u64, Vec<(String, String)>), StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(OWNED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, Vec::new())),
            Err(e) => return Err(self.error(e)),
        };
        let wanted = owner_hash(owner).to_be_bytes();
        let (mut total, mut kept) = (0, Vec::new());
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (id, value) = entry.map_err(|e| self.error(e))?;
            let value = value.value();
            if value.len() < 8 || value[..8] != wanted {
                continue;
            }
            total += 1;
            let id = decode_id(id.value());
            let key = String::from_utf8_lossy(&value[8..]);
            if keep(&id, &key) {
                kept.push((id, key.into_owned()));
            }
        }
        Ok((total, kept))
    }

    /// Forgets `id`, durably.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        self.remove_many(&[id])
    }

    /// The target id a record matched by a search was found at, under its [`found_key`](super::found_key).
    pub fn found(&self, key: &str) -> Result<Option<String>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(FOUND) {
            Ok(table) => table,
            // A state that never held a searched record.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let found = table.get(key.as_bytes()).map_err(|e| self.error(e))?;
        Ok(found.map(|id| id.value().to_owned()))
    }

    /// Stores where each record was found (`(found key, target id)`, replacing what was
    /// there) in one transaction, durable when this returns.
    pub fn put_found_many(&self, items: &[(&str, &str)]) -> Result<(), StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(FOUND).map_err(|e| self.error(e))?;
            for (key, id) in items {
                table
                    .insert(key.as_bytes(), *id)
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// How many records the state holds.
    pub fn len(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
        table.len().map_err(|e| self.error(e))
    }

    /// True when the state holds no record.
    pub fn is_empty(&self) -> Result<bool, StateError> {
        Ok(self.len()? == 0)
    }

    /// How the file's space is used.
    pub fn disk_usage(&self) -> Result<DiskUsage, StateError> {
        let file_bytes = std::fs::metadata(&self.path)
            .map_err(|source| StateError::Io {
                path: self.path.clone(),
                source,
            })?
            .len();
        let (records, table) = {
            let txn = self.db.begin_read().map_err(|e| self.error(e))?;
            let table = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
            (
                table.len().map_err(|e| self.error(e))?,
                table.stats().map_err(|e| self.error(e))?,
            )
        };
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let stats = txn.stats().map_err(|e| self.error(e))?;
        txn.abort().map_err(|e| self.error(e))?;
        let page_size = stats.page_size() as u64;
        Ok(DiskUsage {
            records,
            file_bytes,
            allocated_bytes: stats.allocated_pages() * page_size,
            stored_bytes: stats.stored_bytes(),
            table_bytes: (table.leaf_pages() + table.branch_pages()) * page_size,
            sparse_bytes: table.fragmented_bytes(),
        })
    }

    /// Closes the state, tidying the file first when an eighth of it or more (and at least
    /// [`TIDY_MIN_WASTE_BYTES`]) is wasted: free pages, which copy-on-write commits leave
    /// behind, or unused room inside the B-tree's pages, which inserts leave (a leaf that
    /// splits keeps half of its room empty, and an export in id order never comes back to
    /// fill it: about 50% full after such a first night, 89 bytes per record). Sparse pages
    /// are first rewritten full ([`SyncState::repack`]); then redb's compaction moves every
    /// page to the front of the file and truncates it (it moves pages, it does not fill them).
    /// Returns whether it tidied.
    pub fn close(mut self) -> Result<bool, StateError> {
        let usage = self.disk_usage()?;
        let free = usage.file_bytes.saturating_sub(usage.allocated_bytes);
        let waste = free + usage.sparse_bytes;
        if waste < TIDY_MIN_WASTE_BYTES || waste * 8 < usage.file_bytes {
            return Ok(false);
        }
        if usage.sparse_bytes * 8 >= usage.table_bytes {
            self.repack()?;
        }
        let path = self.path.clone();
        while self.db.compact().map_err(|e| store_error(&path, e))? {}
        Ok(true)
    }

    /// Rewrites every page of the records' B-tree full, in one durable transaction: the
    /// records, in key order, into a new table (each key greater than all before it, so redb
    /// leaves each leaf packed and starts the next), which then replaces the old one. A crash
    /// before the commit leaves the old table as it was; memory stays within redb's cache
    /// (its write buffer spills to the file). The old pages become free pages, for
    /// [`Database::compact`] to drop.
    pub fn repack(&self) -> Result<(), StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        self.repack_table(&txn, RECORDS)?;
        // The owners' table (`[mirror]` runs) fills the same way, when there is one.
        if txn
            .list_tables()
            .map_err(|e| self.error(e))?
            .any(|t| t.name() == OWNED.name())
        {
            self.repack_table(&txn, OWNED)?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// Within `txn`: copies `table` in key order into [`REPACKED`], which then replaces it.
    fn repack_table(
        &self,
        txn: &redb::WriteTransaction,
        table: TableDefinition<&[u8], &[u8]>,
    ) -> Result<(), StateError> {
        txn.delete_table(REPACKED).map_err(|e| self.error(e))?;
        {
            let old = txn.open_table(table).map_err(|e| self.error(e))?;
            let mut new = txn.open_table(REPACKED).map_err(|e| self.error(e))?;
            for entry in old.iter().map_err(|e| self.error(e))? {
                let (key, value) = entry.map_err(|e| self.error(e))?;
                new.insert(key.value(), value.value())
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.delete_table(table).map_err(|e| self.error(e))?;
        txn.rename_table(REPACKED, table)
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(|e| self.error(e))?;
            f(&mut table).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Stored, StateError> {
        Stored::decode(bytes).ok_or_else(|| StateError::Corrupt {
            path: self.path.clone(),
            len: bytes.len(),
        })
    }

    fn error(&self, e: impl Into<redb::Error>) -> StateError {
        store_error(&self.path, e)
    }
}

fn store_error(path: &Path, e: impl Into<redb::Error>) -> StateError {
    StateError::Store {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates an empty file readable by its owner only, unless it exists (redb initializes an
/// empty file as a new database).
fn create_private_file(path: &Path) -> Result<(), StateError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::found_key;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    const P1: &str = "0123456789abcdef0123456789abcdef";
    const P2: &str = "ffffffffffffffffffffffffffffffff";

    const AWS: &str = "https://profile.us-east-1.amazonaws.com";

    fn domain(name: &str) -> TargetIdentity {
        TargetIdentity::customer_profiles("123456789012", "us-east-1", AWS, name)
    }

    fn stored(hash: u128) -> Stored {
        Stored::hash(hash)
    }

    #[test]
    fn owners_keep_their_own_records_and_a_forgotten_record_leaves_its_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        assert_eq!(
            state.owned_by("crm", |_, _| true).expect("reads"),
            (0, vec![])
        );
        state
            .put_many(&[(P1, stored(1)), (P2, stored(2)), ("g-1", stored(3))])
            .expect("put");
        state
            .put_owned_many(&[
                (P1, "crm", "c-1"),
                (P2, "crm", "c-2"),
                ("g-1", "erp", "e-1"),
            ])
            .expect("owners");
        assert!(state.owner_is(P1, "crm", "c-1").expect("reads"));
        assert!(!state.owner_is(P1, "erp", "c-1").expect("reads"));
        assert!(!state.owner_is(P1, "crm", "c-9").expect("reads"));
        let (total, kept) = state.owned_by("crm", |_, key| key != "c-1").expect("reads");
        assert_eq!((total, kept), (2, vec![(P2.to_owned(), "c-2".to_owned())]));
        // Another owner settling a record takes it over.
        state.put_owned_many(&[(P2, "erp", "e-2")]).expect("owners");
        assert_eq!(state.owned_by("crm", |_, _| true).expect("reads").0, 1);
        state.remove_many(&[P1]).expect("removes");
        assert_eq!(state.owned_by("crm", |_, _| true).expect("reads").0, 0);
        assert_eq!(state.get(P1).expect("get"), None);
        assert_eq!(state.owned_by("erp", |_, _| true).expect("reads").0, 2);
    }

    #[test]
    fn round_trip_of_every_kind_of_id_and_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        assert!(state.is_empty().expect("len"));
        let user = "87654321-2222-1234-1234-111234567891";
        let with_time = Stored {
            hash: u128::MAX - 1,
            last_modified: Some(-1_700_000_000_123),
            written_at: None,
        };
        let written = Stored {
            written_at: Some(1_800_000_000),
            ..stored(5)
        };
        let both = Stored {
            written_at: Some(7),
            ..with_time
        };
        state
            .put_many(&[
                (P1, stored(1)),
                (user, with_time),
                ("00027a52JCGY000M", stored(3)),
                ("0123456789ABCDEF0123456789ABCDEF", stored(4)),
                ("written", written),
                ("both", both),
            ])
            .expect("put");
        assert_eq!(state.get("written").expect("get"), Some(written));
        assert_eq!(state.get("both").expect("get"), Some(both));
        assert_eq!(state.get(P1).expect("get"), Some(stored(1)));
        assert_eq!(state.get(user).expect("get"), Some(with_time));
        assert_eq!(state.get("00027a52JCGY000M").expect("get"), Some(stored(3)));
        assert_eq!(
            state.get("0123456789ABCDEF0123456789ABCDEF").expect("get"),
            Some(stored(4)),
            "upper-case hex is another id, kept as text"
        );
        assert_eq!(state.get(P2).expect("get"), None);
        assert_eq!(
            state.get_many(&[P2, P1]).expect("get_many"),
            [None, Some(stored(1))]
        );
        state.put(P1, stored(9)).expect("replace");
        assert_eq!(state.get(P1).expect("get"), Some(stored(9)));
        state.remove(P1).expect("remove");
        state.remove(P2).expect("removing an absent id is fine");
        assert_eq!(state.get(P1).expect("get"), None);
        assert_eq!(state.len().expect("len"), 5);
    }

    /// The file at `path` holds `n` records in 64 bytes a record or less.
    fn assert_within_goal(path: &Path, n: u64) {
        let size = std::fs::metadata(path).expect("metadata").len();
        assert!(
            size <= 64 * n,
            "{} bytes per record",
            size as f64 / n as f64
        );
    }

    #[test]
    fn where_a_searched_record_was_found_is_kept_apart_from_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        let key = found_key("_email", "crm_id", "C7");
        assert_eq!(state.found(&key).expect("reads"), None, "no table yet");
        state
            .put_found_many(&[(&key, P1), (&found_key("_email", "crm_id", "C8"), P2)])
            .expect("writes");
        assert_eq!(state.found(&key).expect("reads").as_deref(), Some(P1));
        assert_eq!(
            state
                .found(&found_key("_email", "email", "C7"))
                .expect("reads"),
            None,
            "another key column is another record"
        );
        assert!(state.is_empty().expect("len"), "no hash is implied");
        state.put_found_many(&[(&key, P2)]).expect("replaces");
        drop(state);
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        assert_eq!(state.found(&key).expect("reads").as_deref(), Some(P2));
    }

    #[test]
    fn reopen_after_drop_keeps_the_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        let path = state.path().to_path_buf();
        state.put(P1, stored(42)).expect("put");
        drop(state);
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        assert_eq!(state.path(), path);
        assert_eq!(state.get(P1).expect("get"), Some(stored(42)));
    }

    #[test]
    fn each_identity_has_its_own_file_and_refuses_another_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SyncState::open(dir.path(), &domain("DomainA")).expect("opens");
        a.put(P1, stored(1)).expect("put");
        let b = SyncState::open(dir.path(), &domain("DomainB")).expect("opens");
        assert_ne!(a.path(), b.path());
        assert_eq!(b.get(P1).expect("get"), None, "another domain starts empty");
        let a_path = a.path().to_path_buf();
        drop((a, b));
        assert_eq!(
            a_path.file_name().and_then(|n| n.to_str()),
            Some(domain("DomainA").file_name().as_str())
        );
        assert!(
            domain("DomainA")
                .file_name()
                .starts_with("customer-profiles-")
        );

        // The file of DomainA, named explicitly for DomainB (or for another kind), is refused.
        let connect = TargetIdentity::connect_user("arn:aws:connect:us-east-1:1:instance/i", AWS);
        for other in [domain("DomainB"), connect] {
            let err = SyncState::open_file(&a_path, &other).expect_err("wrong identity");
            assert!(matches!(err, StateError::WrongIdentity { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains("domain=DomainA\""), "{message}");
            assert!(message.contains(&a_path.display().to_string()), "{message}");
        }
        // ... and left as it was.
        let a = SyncState::open_file(&a_path, &domain("DomainA")).expect("its own identity");
        assert_eq!(a.get(P1).expect("get"), Some(stored(1)));
    }

    #[test]
    fn a_file_that_is_not_a_state_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.jsonl");
        let text = "{\"record\":1}\n".repeat(400);
        std::fs::write(&path, &text).expect("written");
        let err = SyncState::open_file(&path, &domain("D")).expect_err("not redb");
        assert!(matches!(err, StateError::Store { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn an_uncommitted_write_is_not_there_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        state.put(P1, stored(1)).expect("put");
        {
            let txn = state.db.begin_write().expect("write");
            {
                let mut table = txn.open_table(RECORDS).expect("table");
                let (bytes, len) = stored(2).encode();
                table
                    .insert(encode_id(P2).as_slice(), &bytes[..len])
                    .expect("insert");
            }
            // Dropped without commit: redb aborts it.
        }
        drop(state);
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        assert_eq!(state.get(P1).expect("get"), Some(stored(1)));
        assert_eq!(state.get(P2).expect("get"), None);
    }

    #[test]
    fn close_compacts_a_file_that_is_mostly_free_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        state.put(P1, stored(1)).expect("put");
        assert!(!state.close().expect("closes"), "nothing to gain");

        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        let ids: Vec<String> = (0..40_000u32).map(|i| format!("{i:032x}")).collect();
        let items: Vec<(&str, Stored)> = ids.iter().map(|id| (id.as_str(), stored(7))).collect();
        state.put_many(&items).expect("put");
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        state.remove_many(&refs).expect("remove");
        let before = state.disk_usage().expect("usage");
        assert_eq!(before.records, 1);
        assert!(before.file_bytes > before.allocated_bytes + TIDY_MIN_WASTE_BYTES);
        assert!(state.close().expect("closes"), "compacted");
        let path = dir.path().join(domain("D").file_name());
        let after = std::fs::metadata(&path).expect("metadata").len();
        assert!(after < before.file_bytes / 2, "{after} vs {before:?}");
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        assert_eq!(state.get(P1).expect("get"), Some(stored(1)));
        assert_eq!(state.len().expect("len"), 1);
    }

    /// The ids of `n` records as a run's writer commits them: an export in id order, settled
    /// by 32 record tasks at once (so each window of 32 in some order), in batches of 64.
    fn put_as_a_run_does(state: &SyncState, n: u64, hash: u128) {
        let mut order: Vec<u64> = Vec::with_capacity(n as usize);
        for window in (0..n).collect::<Vec<u64>>().chunks(32) {
            // A fixed shuffle of the window: settled out of order, as requests answer.
            let mut window = window.to_vec();
            let len = window.len() as u64;
            for i in (1..len).rev() {
                let j = (i * 7 + window[0]) % (i + 1);
                window.swap(i as usize, j as usize);
            }
            order.extend(window);
        }
        for batch in order.chunks(64) {
            let ids: Vec<String> = batch.iter().map(|i| format!("{i:032x}")).collect();
            let items: Vec<(&str, Stored)> =
                ids.iter().map(|id| (id.as_str(), stored(hash))).collect();
            state.put_many(&items).expect("put");
        }
    }

    #[test]
    fn close_repacks_the_sparse_pages_a_first_run_leaves_to_64_bytes_a_record_or_less() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = 30_000u64;
        let state = SyncState::open(dir.path(), &domain("D")).expect("opens");
        put_as_a_run_does(&state, n, 5);
        let before = state.disk_usage().expect("usage");
        assert_eq!(before.records, n);
        // What a first night leaves: leaves about half full, well over the goal.
        assert!(before.file_bytes > 80 * n, "{before:?}");
        assert!(before.sparse_bytes * 3 > before.table_bytes, "{before:?}");
        assert!(state.close().expect("closes"), "tidied");

        let path = dir.path().join(domain("D").file_name());
        assert_within_goal(&path, n);
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        let after = state.disk_usage().expect("usage");
        assert_eq!(after.records, n);
        assert!(after.sparse_bytes * 8 < after.table_bytes, "{after:?}");
        for i in [0, 1, n / 2, n - 1] {
            assert_eq!(
                state.get(&format!("{i:032x}")).expect("get"),
                Some(stored(5))
            );
        }
        // A second night (1% changed, each in its own copy-on-write leaf: the file grows by
        // the pages of the last few commits) is within the goal again once closed.
        let changed: Vec<String> = (0..n).step_by(100).map(|i| format!("{i:032x}")).collect();
        for batch in changed.chunks(64) {
            let items: Vec<(&str, Stored)> =
                batch.iter().map(|id| (id.as_str(), stored(6))).collect();
            state.put_many(&items).expect("put");
        }
        state.close().expect("closes");
        assert_within_goal(&path, n);
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens");
        assert_eq!(
            state.get(&format!("{:032x}", 100)).expect("get"),
            Some(stored(6))
        );
        assert_eq!(
            state.get(&format!("{:032x}", 101)).expect("get"),
            Some(stored(5))
        );
        assert_eq!(state.len().expect("len"), n);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_and_its_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let state = SyncState::open(&state_dir, &domain("D")).expect("opens");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(state.path()), 0o600);
        assert_eq!(mode(&state_dir), 0o700);
    }

    // ---- Another process: the lock, and a crash in the middle of a transaction ----

    const CHILD_ENV: &str = "PROFILESYNC_STATE_TEST_CHILD";

    /// Runs `child_process` in a new process of this test binary, in `mode`, on `dir`.
    fn spawn_child(mode: &str, dir: &Path) -> std::process::Child {
        let exe = std::env::current_exe().expect("test binary");
        Command::new(exe)
            .args([
                "--exact",
                "state::store::tests::child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts")
    }

    /// Reads the child's stdout until `marker`, then drains the rest in the background (the
    /// test harness in the child still prints its result).
    fn wait_for(child: &mut std::process::Child, marker: &str) {
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(marker) => {
                    std::thread::spawn(move || lines.for_each(drop));
                    return;
                }
                Some(Ok(_)) => continue,
                _ => panic!("the child ended before saying {marker}"),
            }
        }
    }

    /// Not a test by itself: the other process of the two tests below (it does nothing
    /// unless they start it).
    #[test]
    #[ignore]
    fn child_process() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let (mode, dir) = spec.split_once(':').expect("mode:dir");
        let state = SyncState::open(Path::new(dir), &domain("D")).expect("child opens");
        match mode {
            "hold" => {
                println!("CHILD-HOLDS");
                let _ = std::io::stdout().flush();
                // Until the parent closes our stdin.
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                drop(state);
            }
            "crash" => {
                state.put(P1, stored(1)).expect("committed");
                let txn = state.db.begin_write().expect("write");
                {
                    let mut table = txn.open_table(RECORDS).expect("table");
                    // Written, never committed: the process dies first.
                    for i in 0..20_000u32 {
                        let (bytes, len) = stored(2).encode();
                        let id = format!("{i:032x}");
                        table
                            .insert(encode_id(&id).as_slice(), &bytes[..len])
                            .expect("insert");
                    }
                }
                println!("CHILD-CRASHES");
                let _ = std::io::stdout().flush();
                std::process::abort();
            }
            other => panic!("unknown mode {other}"),
        }
    }

    #[test]
    fn a_second_process_is_refused_with_the_file_and_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_child("hold", dir.path());
        wait_for(&mut child, "CHILD-HOLDS");
        let err = SyncState::open(dir.path(), &domain("D")).expect_err("locked");
        let StateError::Locked { path, pid } = &err else {
            panic!("expected Locked, got {err:?}");
        };
        assert_eq!(path, &dir.path().join(domain("D").file_name()));
        assert_eq!(*pid, Some(child.id()));
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("pid {}", child.id())),
            "{message}"
        );
        drop(child.stdin.take());
        assert!(child.wait().expect("child ends").success());
        let state = SyncState::open(dir.path(), &domain("D")).expect("free again");
        drop(state);
        assert!(
            !pid_path(&dir.path().join(domain("D").file_name())).exists(),
            "a closed state leaves no pid file behind"
        );
    }

    #[test]
    fn a_crash_in_the_middle_of_a_transaction_keeps_only_what_was_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_child("crash", dir.path());
        wait_for(&mut child, "CHILD-CRASHES");
        let status = child.wait().expect("child ends");
        assert!(!status.success(), "the child aborted");
        let state = SyncState::open(dir.path(), &domain("D")).expect("reopens after a crash");
        assert_eq!(state.get(P1).expect("get"), Some(stored(1)));
        assert_eq!(state.get(&format!("{:032x}", 7)).expect("get"), None);
        assert_eq!(state.len().expect("len"), 1);
    }

    #[test]
    fn in_one_process_a_second_open_is_refused_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = SyncState::open(dir.path(), &domain("D")).expect("opens");
        let err = SyncState::open(dir.path(), &domain("D")).expect_err("second open");
        assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    }
}
