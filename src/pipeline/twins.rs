//! Twins: rows of one input that name the same target record (the same id, or the same
//! search value). They are one record to the target, applied one after another in input
//! order, never in parallel, so the last row wins every time; a later row updates the
//! record an earlier one found or created instead of creating another.
//!
//! The reader calls [`Twins::enter`] for each valid record, in input order, before the
//! record goes on (to the read-ahead stage, which holds a waiting twin back until its turn
//! came, then to the dispatcher). A row whose key is still in flight gets a [`Turn`] that waits
//! for the earlier row's settlement; a row whose earlier twin settled already gets what
//! that twin left behind (the record it created, or in `plan` that it would create one).
//! When its task ends, [`Turn::finish`] hands its own settlement to the next twin.
//!
//! Memory: every key of the run is remembered as a 64-bit hash with its first record
//! number, so that twins far apart in the input are still seen and counted, and a create's
//! settlement (its target id) is kept for the rest of the run. The keys since the last spill
//! live in memory ([`SPILL_AT`] of them at most, about 3 MB, with the creates settled since);
//! then they go to a scratch file, [`Spilled`], so that memory stays flat for an input of
//! millions of rows. A scratch file that cannot be made leaves every key in memory (with a
//! warning); one that fails once made stops the run, which can no longer tell twins apart.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::backends::FileBackend;
use redb::{Database, ReadOnlyTable, ReadableDatabase, StorageBackend, TableDefinition};
use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_64;

use crate::ledger::Status;
use crate::targets::driver::Twin;

/// Keys kept in memory before they are written to the scratch file.
pub const SPILL_AT: usize = 100_000;

/// The run's book of keys.
pub struct Twins {
    /// The reader's alone ([`Twins::enter`]): which keys the input named, and first where.
    keys: Mutex<Keys>,
    /// Shared with the record tasks ([`Turn::finish`]).
    book: Mutex<Book>,
}

impl Default for Twins {
    /// Spills every [`SPILL_AT`] keys into `TMPDIR`.
    fn default() -> Twins {
        Twins::new(SPILL_AT, std::env::temp_dir())
    }
}

/// Every key seen this run → the record number of its first row.
struct Keys {
    /// The keys since the last spill.
    recent: HashMap<u64, u64>,
    /// The keys before it, with the creates settled before it.
    spilled: Option<Spilled>,
    spill_at: usize,
    /// Where the scratch file goes.
    dir: PathBuf,
    /// A spill failed: every key stays in memory from then on (a warning said so).
    in_memory: bool,
}

#[derive(Default)]
struct Book {
    /// Keys whose row created (or, in `plan`, would create) the target record, since the
    /// last spill.
    created: HashMap<u64, Box<Twin>>,
    /// The last row of each key still in flight, and where its settlement will come.
    in_flight: HashMap<u64, (u64, watch::Receiver<Option<Twin>>)>,
    /// Rows whose key an earlier row of the input had.
    duplicates: u64,
}

/// One row's place among its twins.
pub struct Turn {
    twins: Arc<Twins>,
    key: u64,
    record: u64,
    /// The record number of the first row with this key.
    first: u64,
    /// The earlier twin still in flight, to wait for.
    wait: Option<watch::Receiver<Option<Twin>>>,
    /// What an earlier twin that settled already left behind.
    before: Option<Twin>,
    /// Whether an earlier row of the input has this key.
    pub seen: bool,
    done: watch::Sender<Option<Twin>>,
}

impl Twins {
    /// A book that writes its keys to a scratch file in `dir` every `spill_at` new keys.
    pub fn new(spill_at: usize, dir: PathBuf) -> Twins {
        Twins {
            keys: Mutex::new(Keys {
                recent: HashMap::new(),
                spilled: None,
                spill_at: spill_at.max(1),
                dir,
                in_memory: false,
            }),
            book: Mutex::default(),
        }
    }

    /// Takes the next valid row, in input order: its key is its target id or search value.
    /// Fails only when the scratch file fails (a read, or a spill's write): the run cannot
    /// tell twins apart then.
    pub fn enter(self: &Arc<Self>, key: &str, record: u64) -> io::Result<Turn> {
        let key = xxh3_64(key.as_bytes());
        let mut keys = lock(&self.keys);
        let (first, spilled) = match keys.recent.get(&key) {
            Some(first) => (*first, None),
            None => match keys
                .spilled
                .as_ref()
                .map(|s| s.get(key))
                .transpose()?
                .flatten()
            {
                Some(twin) => (twin.first, Some(twin)),
                None => {
                    keys.recent.insert(key, record);
                    (record, None)
                }
            },
        };
        let seen = first != record;
        let (done, rx) = watch::channel(None);
        let mut book = lock(&self.book);
        if seen {
            book.duplicates += 1;
        }
        let wait = book.in_flight.insert(key, (record, rx)).map(|(_, rx)| rx);
        let before = (wait.is_none() && seen).then(|| {
            let created = book.created.get(&key).map(|twin| (**twin).clone());
            created.or(spilled).unwrap_or(Twin {
                first,
                status: Status::Unchanged,
                target_id: None,
            })
        });
        if keys.recent.len() >= keys.spill_at && !keys.in_memory {
            self.spill(&mut keys, book)?;
        }
        Ok(Turn {
            twins: Arc::clone(self),
            key,
            record,
            first,
            wait,
            before,
            seen,
            done,
        })
    }

    /// Writes the recent keys and the creates settled since the last spill to the scratch
    /// file. The record tasks settle on meanwhile: `book` is let go while the file is written.
    fn spill(&self, keys: &mut Keys, mut book: MutexGuard<'_, Book>) -> io::Result<()> {
        let created = std::mem::take(&mut book.created);
        drop(book);
        if !keys.spill(&created)? {
            let mut book = lock(&self.book);
            for (key, twin) in created {
                book.created.entry(key).or_insert(twin);
            }
        }
        Ok(())
    }

    /// Rows whose key an earlier row of the input had.
    pub fn duplicates(&self) -> u64 {
        lock(&self.book).duplicates
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Keys {
    /// Writes the recent keys and `created` to the scratch file and forgets them here: `true`.
    /// `false` when no scratch file can be made: a warning says so, and every key stays in
    /// memory from then on. An error when the file fails once made: a redb file whose write
    /// failed refuses to be read from then on, so the run must stop.
    fn spill(&mut self, created: &Created) -> io::Result<bool> {
        let spilled = match self.spilled.take() {
            Some(spilled) => spilled,
            None => match Spilled::create(&self.dir) {
                Ok(spilled) => spilled,
                Err(e) => {
                    eprintln!(
                        "profilesync: warning: no scratch file for the run's keys could be \
                         made in {} ({e}); they stay in memory, which now grows with the input",
                        self.dir.display()
                    );
                    self.in_memory = true;
                    return Ok(false);
                }
            },
        };
        self.spilled.insert(spilled).write(&self.recent, created)?;
        self.recent.clear();
        Ok(true)
    }
}

/// Settled creates by key.
type Created = HashMap<u64, Box<Twin>>;

/// The keys of the run before the last spill and the creates settled before it: a redb
/// table in an anonymous scratch file (in `TMPDIR`, readable by its owner only; the system
/// removes it when the run ends, however it ends). Each value is the first row's record
/// number, then for a create its status and target id.
struct Spilled {
    /// Declared first, so dropped before the database.
    table: ReadOnlyTable<u64, &'static [u8]>,
    db: Database,
}

const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("keys");
/// The scratch file's page cache: lookups of keys not in it read the file.
const CACHE_BYTES: usize = 4 << 20;

impl Spilled {
    fn create(dir: &Path) -> io::Result<Spilled> {
        let file = tempfile::tempfile_in(dir)?;
        // No name leads to it; its mode says the same, for whoever holds the descriptor.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Spilled::on(FileBackend::new(file).map_err(io::Error::other)?)
    }

    /// A scratch database on `backend` (a file; a test's backend that fails on demand).
    fn on(backend: impl StorageBackend) -> io::Result<Spilled> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(io::Error::other)?;
        let txn = db.begin_write().map_err(io::Error::other)?;
        txn.open_table(KEYS).map_err(io::Error::other)?;
        txn.commit().map_err(io::Error::other)?;
        let table = Spilled::read(&db)?;
        Ok(Spilled { table, db })
    }

    fn read(db: &Database) -> io::Result<ReadOnlyTable<u64, &'static [u8]>> {
        let txn = db.begin_read().map_err(io::Error::other)?;
        txn.open_table(KEYS).map_err(io::Error::other)
    }

    /// Adds `recent` keys (in key order, which writes fewer pages) and `created`.
    fn write(&mut self, recent: &HashMap<u64, u64>, created: &Created) -> io::Result<()> {
        let mut keys: Vec<(u64, u64)> = recent
            .iter()
            .filter(|(key, _)| !created.contains_key(key))
            .map(|(key, first)| (*key, *first))
            .collect();
        keys.sort_unstable();
        let txn = self.db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = txn.open_table(KEYS).map_err(io::Error::other)?;
            for (key, first) in keys {
                table
                    .insert(key, first.to_le_bytes().as_slice())
                    .map_err(io::Error::other)?;
            }
            for (key, twin) in created {
                table
                    .insert(*key, encode(twin).as_slice())
                    .map_err(io::Error::other)?;
            }
        }
        txn.commit().map_err(io::Error::other)?;
        self.table = Spilled::read(&self.db)?;
        Ok(())
    }

    /// What the scratch file holds of `key`: its first row, and what a create left.
    fn get(&self, key: u64) -> io::Result<Option<Twin>> {
        let Some(found) = self.table.get(key).map_err(io::Error::other)? else {
            return Ok(None);
        };
        let damaged = || io::Error::new(io::ErrorKind::InvalidData, "a damaged entry");
        decode(found.value()).map(Some).ok_or_else(damaged)
    }
}

/// A settled twin as the scratch file holds it: the first row's record number (8 bytes),
/// then, for a create, its status (1 created, 2 would create) and its target id.
fn encode(twin: &Twin) -> Vec<u8> {
    let mut bytes = twin.first.to_le_bytes().to_vec();
    debug_assert!(matches!(twin.status, Status::Created | Status::WouldCreate));
    bytes.push(if twin.status == Status::WouldCreate {
        2
    } else {
        1
    });
    bytes.extend_from_slice(twin.target_id.as_deref().unwrap_or_default().as_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Twin> {
    let (first, rest) = bytes.split_first_chunk::<8>()?;
    let first = u64::from_le_bytes(*first);
    let Some((status, id)) = rest.split_first() else {
        return Some(Twin {
            first,
            status: Status::Unchanged,
            target_id: None,
        });
    };
    let id = std::str::from_utf8(id).ok()?;
    Some(Twin {
        first,
        status: if *status == 2 {
            Status::WouldCreate
        } else {
            Status::Created
        },
        target_id: (!id.is_empty()).then(|| id.to_string()),
    })
}

impl Turn {
    /// Whether an earlier twin was still in flight when this row entered: it waits for it.
    pub fn waits(&self) -> bool {
        self.wait.is_some()
    }

    /// The earlier twin, once it settled; `Err` when it never will (the run stopped before
    /// it settled: this row must not settle either, so that a resumed run sends both in
    /// order).
    pub async fn earlier(&mut self) -> Result<Option<Twin>, ()> {
        let Some(rx) = &mut self.wait else {
            return Ok(self.before.clone());
        };
        match rx.wait_for(Option::is_some).await {
            Ok(twin) => Ok(twin.clone()),
            Err(_) => Err(()),
        }
    }

    /// Hands this row's settlement to its next twin (none when it did not settle).
    pub fn finish(self, settled: Option<(Status, Option<String>)>) {
        let mut book = lock(&self.twins.book);
        if let Some((status, target_id)) = &settled
            && matches!(status, Status::Created | Status::WouldCreate)
        {
            book.created.insert(
                self.key,
                Box::new(Twin {
                    first: self.first,
                    status: *status,
                    target_id: target_id.clone(),
                }),
            );
        }
        if book
            .in_flight
            .get(&self.key)
            .is_some_and(|(r, _)| *r == self.record)
        {
            book.in_flight.remove(&self.key);
        }
        drop(book);
        if let Some((status, target_id)) = settled {
            let _ = self.done.send(Some(Twin {
                first: self.first,
                status,
                target_id,
            }));
        }
        // Dropping `done` without a value tells a waiting twin that this row never settled.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_twin_waits_for_the_row_before_it_and_gets_what_it_created() {
        let twins = Arc::new(Twins::default());
        let first = twins.enter("ada@example.com", 1).unwrap();
        let mut second = twins.enter("ada@example.com", 2).unwrap();
        let mut other = twins.enter("bob@example.com", 3).unwrap();
        assert!(!first.seen && second.seen && !other.seen);
        assert_eq!(other.earlier().await, Ok(None));
        let waiting = tokio::spawn(async move { (second.earlier().await, second) });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second row waits for the first");
        first.finish(Some((Status::Created, Some("p1".into()))));
        let (twin, second) = waiting.await.unwrap();
        let twin = twin.unwrap().expect("a twin");
        assert_eq!((twin.first, twin.target_id.as_deref()), (1, Some("p1")));
        second.finish(Some((Status::Updated, Some("p1".into()))));
        // A third row, after both settled, still finds the created record.
        let mut third = twins.enter("ada@example.com", 4).unwrap();
        let twin = third.earlier().await.unwrap().expect("a twin");
        assert_eq!(twin.target_id.as_deref(), Some("p1"));
        assert_eq!(twins.duplicates(), 2);
    }

    #[tokio::test]
    async fn a_row_that_never_settles_stops_its_twin() {
        let twins = Arc::new(Twins::default());
        let first = twins.enter("k", 1).unwrap();
        let mut second = twins.enter("k", 2).unwrap();
        first.finish(None);
        assert_eq!(second.earlier().await, Err(()));
    }

    #[tokio::test]
    async fn keys_and_creates_written_to_the_scratch_file_are_still_known() {
        let twins = Arc::new(Twins::new(2, std::env::temp_dir()));
        let ada = twins.enter("ada@example.com", 1).unwrap();
        ada.finish(Some((Status::Created, Some("p1".into()))));
        let bob = twins.enter("bob@example.com", 2).unwrap(); // the second key: a spill
        assert!(twins.keys.lock().unwrap().recent.is_empty(), "written out");
        bob.finish(Some((Status::Updated, Some("p2".into()))));
        let mut ada = twins.enter("ada@example.com", 3).unwrap();
        let mut bob = twins.enter("bob@example.com", 4).unwrap();
        assert!(ada.seen && bob.seen);
        let twin = ada.earlier().await.unwrap().expect("a twin");
        assert_eq!((twin.first, twin.status), (1, Status::Created));
        assert_eq!(twin.target_id.as_deref(), Some("p1"));
        let twin = bob.earlier().await.unwrap().expect("a twin");
        assert_eq!(
            (twin.first, twin.status, twin.target_id),
            (2, Status::Unchanged, None)
        );
        assert_eq!(twins.duplicates(), 2);
    }

    #[tokio::test]
    async fn memory_holds_at_most_the_keys_since_the_last_spill() {
        let twins = Arc::new(Twins::new(100, std::env::temp_dir()));
        for round in 0..2u64 {
            for i in 0..1_000u64 {
                let turn = twins.enter(&format!("c{i}@example.com"), round * 1_000 + i + 1);
                let turn = turn.unwrap();
                assert_eq!(turn.seen, round == 1, "row {i} of round {round}");
                assert_eq!(turn.first, i + 1);
                let created = (round == 0 && i % 3 == 0).then(|| format!("p{i}"));
                let status = if created.is_some() {
                    Status::WouldCreate
                } else {
                    Status::WouldUpdate
                };
                turn.finish(Some((status, created)));
                assert!(twins.keys.lock().unwrap().recent.len() < 100);
            }
        }
        assert_eq!(twins.duplicates(), 1_000);
        let mut again = twins.enter("c300@example.com", 3_000).unwrap();
        let twin = again.earlier().await.unwrap().expect("a twin");
        assert_eq!(twin.status, Status::WouldCreate);
        assert_eq!(twin.target_id.as_deref(), Some("p300"));
    }

    #[test]
    fn a_settled_twin_reads_back_as_written() {
        for (status, target_id) in [
            (Status::Created, Some("p1".to_string())),
            (Status::WouldCreate, None),
        ] {
            let twin = Twin {
                first: 42,
                status,
                target_id,
            };
            assert_eq!(decode(&encode(&twin)), Some(twin));
        }
        let plain = decode(&7u64.to_le_bytes()).expect("a first row");
        assert_eq!((plain.first, plain.status), (7, Status::Unchanged));
        assert_eq!(decode(&[1, 2, 3]), None);
    }

    #[tokio::test]
    async fn a_scratch_file_that_cannot_be_made_leaves_every_key_in_memory() {
        let nowhere = std::env::temp_dir().join("profilesync-no-such-directory/below");
        let twins = Arc::new(Twins::new(2, nowhere));
        for (record, key) in [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "c")] {
            let turn = twins.enter(key, record).unwrap();
            assert_eq!(turn.seen, record > 3, "row {record}");
            turn.finish(Some((Status::Updated, None)));
        }
        let keys = twins.keys.lock().unwrap();
        assert!(keys.in_memory && keys.spilled.is_none());
        assert_eq!(keys.recent.len(), 3);
        drop(keys);
        assert_eq!(twins.duplicates(), 2);
    }

    /// A scratch file whose writes fail once `fail` is set (a disk that filled up).
    #[derive(Debug)]
    struct Failing {
        inner: redb::backends::InMemoryBackend,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Failing {
        fn check(&self) -> io::Result<()> {
            match self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err(io::Error::other("no space left on device")),
                false => Ok(()),
            }
        }
    }

    impl StorageBackend for Failing {
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    #[test]
    fn a_scratch_file_that_fails_a_write_stops_the_run() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let twins = Arc::new(Twins::new(2, std::env::temp_dir()));
        let backend = Failing {
            inner: redb::backends::InMemoryBackend::new(),
            fail: Arc::clone(&fail),
        };
        twins.keys.lock().unwrap().spilled = Some(Spilled::on(backend).unwrap());
        twins.enter("a", 1).unwrap().finish(None);
        twins.enter("b", 2).unwrap().finish(None); // spilled
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        twins.enter("c", 3).unwrap().finish(None);
        let failed = twins
            .enter("d", 4)
            .err()
            .expect("the spill's failure stops the run");
        assert!(failed.to_string().contains("no space left"), "{failed}");
    }
}
