//! The ledger: one JSON line per input record, saying how it ended. The only writer of it.
//!
//! Entries are written as records settle and flushed batch by batch, so a crash loses at
//! most the records still in flight. Values (names, e-mails, phone numbers) never appear:
//! entries hold the record's position, key, target id, status, field names and errors.
//!
//! Beside each ledger `L`, a run file `L.run.json` ([`RunFile`]) says which run the ledger
//! belongs to (command, config and a hash of its text, target, input) and which process holds
//! it; `--resume` continues a ledger only for the same run. A run holds an OS lock
//! (`flock`) on its ledger from opening to exit, so two runs never write one ledger.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::mapping::Problem;

/// How a record ended. The names are the contract's; see `product.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `check`: the record maps and validates.
    Valid,
    /// The record cannot be read, mapped or validated; it is never sent.
    Invalid,
    /// `plan`: the target record would change.
    WouldUpdate,
    /// `plan`: a target record would be created.
    WouldCreate,
    /// The target record already holds these values.
    Unchanged,
    /// `plan`: no target record matches.
    NotFound,
    /// `apply`: the target record was changed.
    Updated,
    /// `apply`: a target record was created.
    Created,
    /// `plan`: the target record holds these values, but our last write of it is old
    /// enough that the target may expire it: it would be written again.
    WouldRefresh,
    /// `apply`: the target record held these values and was written again so that the
    /// target does not expire it (Customer Profiles removes profiles nobody updates).
    Refreshed,
    /// `apply`: nothing matched and `when_missing = "skip"`.
    Skipped,
    /// The target refused the record, or it could not be sent.
    Failed,
    /// `plan` with `[mirror]`: a target record this owner synced that tonight's input no
    /// longer names would be deleted (an entry without `record`/`line`).
    WouldDelete,
    /// `apply` with `[mirror]`: such a record was deleted (or was already gone).
    Deleted,
}

impl Status {
    /// Every status, in the order summaries print them.
    pub const ALL: [Status; 14] = [
        Self::Valid,
        Self::WouldUpdate,
        Self::WouldCreate,
        Self::WouldRefresh,
        Self::Updated,
        Self::Created,
        Self::Refreshed,
        Self::Unchanged,
        Self::NotFound,
        Self::Skipped,
        Self::WouldDelete,
        Self::Deleted,
        Self::Invalid,
        Self::Failed,
    ];

    /// The name written in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::WouldUpdate => "would_update",
            Self::WouldCreate => "would_create",
            Self::Unchanged => "unchanged",
            Self::NotFound => "not_found",
            Self::Updated => "updated",
            Self::Created => "created",
            Self::WouldRefresh => "would_refresh",
            Self::Refreshed => "refreshed",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::WouldDelete => "would_delete",
            Self::Deleted => "deleted",
        }
    }

    /// Whether this status makes the run exit 1.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Invalid | Self::Failed)
    }
}

/// Counts of records per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; Status::ALL.len()],
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, status: Status) {
        self.counts[index(status)] += 1;
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    /// Records with this status.
    pub fn get(&self, status: Status) -> u64 {
        self.counts[index(status)]
    }

    /// All records counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records that make the run exit 1.
    pub fn failures(&self) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_failure())
            .map(|s| self.get(*s))
            .sum()
    }
}

fn index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL")
}

/// Why a record is `invalid` or `failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryError {
    /// Machine-readable code: `invalid_record`, `column_count`, `invalid_json`, an API error
    /// code such as `BadRequestException`, ...
    pub code: String,
    /// A sentence a person can act on: file, line, field and what was wrong.
    pub message: String,
    /// Each broken field rule, for `invalid` records.
    #[serde(default, skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub problems: Vec<Problem>,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1-based record number in the input.
    pub record: u64,
    /// Line of the input where the record starts.
    pub line: u64,
    /// The `[source] key` value, when it could be read.
    pub key: Option<String>,
    /// ProfileId / UserId / customer_id, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// How the record ended.
    pub status: Status,
    /// Names of the fields that differ or were sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Requests made for this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Why, for `invalid` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EntryError>,
    /// For `unchanged`: what says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
}

/// One ledger line of a mirror run's deletion: a target record, not an input row, so it has
/// no `record` or `line`. `key` is the `[source] key` the state kept for it (an id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deletion<'a> {
    /// `would_delete`, `deleted` or `failed`.
    pub status: Status,
    /// The target record.
    pub target_id: &'a str,
    /// The `[source] key` it was last synced from.
    pub key: &'a str,
    /// The `[mirror] owner` that synced it.
    pub owner: &'a str,
    /// Why it is a candidate: `absent_from_source`.
    pub reason: &'static str,
    /// Requests made for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Why, for `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<EntryError>,
}

impl Deletion<'_> {
    /// Appends the entry as one JSON line.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("ledger entries serialize");
        out.push(b'\n');
    }
}

/// What an `unchanged` record was found unchanged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The record was read from the target and compared.
    Target,
    /// The local sync state holds the hash of this very payload, accepted by the target
    /// earlier: nothing was read or written.
    State,
}

impl Entry {
    /// Appends the entry as one JSON line.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        // Serializing plain strings and numbers into memory cannot fail.
        serde_json::to_writer(&mut *out, self).expect("ledger entries serialize");
        out.push(b'\n');
    }
}

/// Appends entries to a ledger file. It holds the ledger's lock until it is dropped (or the
/// process ends, however it ends).
pub struct Ledger {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Which run a ledger belongs to, written beside it (`<ledger>.run.json`) when the ledger is
/// created. Only paths, a hash and the target's names: no values, no credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFile {
    /// `check`, `plan` or `apply`.
    pub command: String,
    /// The config file, as an absolute path when it can be resolved.
    pub config: String,
    /// SHA-256 of the config file's text, in hex.
    pub config_sha256: String,
    /// The target: kind, domain / instance / base URL and tenant, region.
    pub target: String,
    /// The input, as an absolute path when it can be resolved (`<stdin>` for `-`).
    pub input: String,
    /// What the input file was when the run started (none for standard input, nor in run
    /// files written before issue 20): `--resume` refuses an input that changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_file: Option<InputFile>,
    /// For a `--retry-failed` run: the earlier ledger whose failed records it sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_failed: Option<String>,
    /// The process that holds, or last held, the ledger.
    pub pid: u32,
}

/// What identifies the content of an input file, cheaply: its size, its modification time
/// and a SHA-256 of its first MiB. A re-export replaced under the same name changes at least
/// one of them (a file rewritten to the same size within the same clock tick whose changes
/// are all past its first MiB would not; nothing short of hashing it all would tell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, RFC 3339 in UTC with nanoseconds.
    pub modified: String,
    /// SHA-256 of the first [`InputFile::HEAD_BYTES`] bytes (all of a smaller file), in hex.
    pub head_sha256: String,
}

impl InputFile {
    /// How much of the file is hashed.
    pub const HEAD_BYTES: u64 = 1 << 20;

    /// Reads the input file's size, modification time and first MiB.
    pub fn of(path: &Path) -> io::Result<InputFile> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let modified: chrono::DateTime<chrono::Utc> = meta.modified()?.into();
        let mut head = Vec::with_capacity(meta.len().min(Self::HEAD_BYTES) as usize);
        file.take(Self::HEAD_BYTES).read_to_end(&mut head)?;
        Ok(InputFile {
            size: meta.len(),
            modified: modified.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            head_sha256: sha256_hex(&head),
        })
    }

    /// What differs between the input as it was (`self`) and as it is (`now`), in words;
    /// `None` when nothing does.
    pub fn changes(&self, now: &InputFile) -> Option<String> {
        let mut changed = Vec::new();
        if self.size != now.size {
            changed.push(format!(
                "its size (was {} bytes, now {})",
                self.size, now.size
            ));
        }
        if self.modified != now.modified {
            changed.push(format!(
                "its modification time (was {}, now {})",
                self.modified, now.modified
            ));
        }
        if self.head_sha256 != now.head_sha256 {
            changed.push("the content of its first MiB (SHA-256)".to_owned());
        }
        (!changed.is_empty()).then(|| changed.join(", "))
    }
}

impl RunFile {
    /// The run file of the ledger at `ledger`.
    pub fn path_of(ledger: &Path) -> PathBuf {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".run.json");
        PathBuf::from(name)
    }

    /// Reads a ledger's run file; `None` when there is none.
    pub fn read(ledger: &Path) -> io::Result<Option<RunFile>> {
        let path = Self::path_of(ledger);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a run file: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// Writes the run file of `ledger`, replacing it whole (through a temporary file), with
    /// this process as its holder.
    fn write(&self, ledger: &Path) -> io::Result<()> {
        let path = Self::path_of(ledger);
        let run = RunFile {
            pid: std::process::id(),
            ..self.clone()
        };
        let mut text = serde_json::to_vec_pretty(&run).map_err(io::Error::other)?;
        text.push(b'\n');
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
    }

    /// Why a ledger written by run `self` cannot be continued by run `now`, if it cannot.
    pub fn mismatch(&self, now: &RunFile) -> Option<String> {
        if self.command != now.command {
            return Some(format!(
                "it was written by `{}`, and this run is `{}`",
                self.command, now.command
            ));
        }
        if self.retry_failed != now.retry_failed {
            let name = |r: &Option<String>| {
                r.as_ref().map_or("no --retry-failed".to_owned(), |p| {
                    format!("--retry-failed {p}")
                })
            };
            return Some(format!(
                "it was written with {}, and this run has {}",
                name(&self.retry_failed),
                name(&now.retry_failed)
            ));
        }
        for (what, then, this) in [
            ("input", &self.input, &now.input),
            ("target", &self.target, &now.target),
            ("config", &self.config, &now.config),
        ] {
            if then != this {
                return Some(format!(
                    "it was written for the {what} {then}, and this run's {what} is {this}"
                ));
            }
        }
        if let (Some(then), Some(this)) = (&self.input_file, &now.input_file)
            && let Some(changes) = then.changes(this)
        {
            return Some(format!(
                "the input {} has changed since the ledger was written: {changes} (a \
                 re-exported file is a new run: start one without --resume)",
                now.input
            ));
        }
        if self.config_sha256 != now.config_sha256 {
            return Some(format!(
                "the config {} has changed since the ledger was written (to change only the \
                 pace, keep the config and use --rate or --concurrency)",
                now.config
            ));
        }
        None
    }
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the ledger's exclusive lock without waiting; a held lock names its holder.
fn lock(file: &File, path: &Path) -> io::Result<()> {
    match try_lock(file) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let holder = RunFile::read(path)
                .ok()
                .flatten()
                .map_or("another process".to_owned(), |run| {
                    format!("pid {}", run.pid)
                });
            Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the ledger {} is in use by another profilesync run ({holder}): wait for \
                     it to end, or stop it, then resume",
                    path.display()
                ),
            ))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot lock the ledger {}: {e}", path.display()),
        )),
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file holds the lock. The lock
/// goes with the file: it is released when the file is closed or the process ends.
#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock takes a file descriptor that `file` keeps open for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Without `flock`, ledgers are not locked.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Ok(true)
}

impl Ledger {
    /// Creates the ledger file (and its folder), locked; refuses to overwrite an existing one.
    pub fn create(path: &Path) -> io::Result<Ledger> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create the ledger {}: {e}", path.display()),
                )
            })?;
        lock(&file, path)?;
        Ok(Ledger {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// Creates the ledger of `run`, locked, and its run file beside it.
    pub fn create_for(path: &Path, run: &RunFile) -> io::Result<Ledger> {
        let ledger = Self::create(path)?;
        run.write(path)?;
        Ok(ledger)
    }

    /// Reopens the ledger of an interrupted run to append to it, once it is locked and its
    /// run file says it is a ledger of the same run as `run` (same command, config and its
    /// text, target, input). The run file then names this process as the holder.
    pub fn resume(path: &Path, run: &RunFile) -> io::Result<Ledger> {
        let refuse = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot resume {}: {why}; resume with the same command, config and input, \
                     or start a new run",
                    path.display()
                ),
            )
        };
        let file = Self::open_locked(path)?;
        match RunFile::read(path)? {
            None => {
                return Err(refuse(format!(
                    "it has no run file {} saying which command, config, target and input it \
                     belongs to (ledgers written before run files existed, or by `demo`, \
                     cannot be resumed)",
                    RunFile::path_of(path).display()
                )));
            }
            Some(then) => {
                if let Some(why) = then.mismatch(run) {
                    return Err(refuse(why));
                }
            }
        }
        run.write(path)?;
        Self::append_to(path, file)
    }

    /// Opens an existing ledger for reading and writing, and locks it.
    fn open_locked(path: &Path) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open the ledger {}: {e}", path.display()),
                )
            })?;
        lock(&file, path)?;
        Ok(file)
    }

    /// Reopens a ledger to append to it, locked, without looking at its run file (runs go
    /// through [`Ledger::resume`]).
    #[cfg(test)]
    fn append(path: &Path) -> io::Result<Ledger> {
        let file = Self::open_locked(path)?;
        Self::append_to(path, file)
    }

    /// Appends to an opened, locked ledger. A last line cut short by a crash is removed
    /// first (its record was not settled, so it will be sent again).
    fn append_to(path: &Path, mut file: File) -> io::Result<Ledger> {
        let len = file.metadata()?.len();
        // Entries are far shorter than this window, so the last newline is inside it.
        let window = len.min(1 << 20);
        file.seek(SeekFrom::Start(len - window))?;
        let mut tail = Vec::with_capacity(window as usize);
        (&mut file).take(window).read_to_end(&mut tail)?;
        let complete = tail
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(len - window, |i| len - window + i as u64 + 1);
        if complete < len {
            file.set_len(complete)?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok(Ledger {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// The ledger's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes already-serialized entries (whole lines) and flushes them to the file.
    pub fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        self.out.write_all(lines)?;
        self.out.flush()
    }
}

/// The largest record number a ledger may name (4 billion records), which bounds the memory
/// a corrupt ledger line could make [`RecordSet`] take (512 MB).
pub const MAX_RECORD: u64 = 1 << 32;

/// A set of record numbers, one bit each: a million records take 125 KB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    bits: Vec<u64>,
    len: u64,
}

impl RecordSet {
    /// Adds a record number.
    pub fn insert(&mut self, record: u64) {
        let (word, bit) = ((record / 64) as usize, record % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) == 0 {
            self.bits[word] |= 1 << bit;
            self.len += 1;
        }
    }

    /// Whether a record number is in the set.
    pub fn contains(&self, record: u64) -> bool {
        let (word, bit) = ((record / 64) as usize, record % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Removes every record number that `other` holds.
    pub fn remove_all(&mut self, other: &RecordSet) {
        for (word, remove) in self.bits.iter_mut().zip(&other.bits) {
            *word &= !remove;
        }
        self.len = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// How many record numbers the set holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The `key` of each record of an earlier ledger, hashed, to check that a resumed run reads
/// the same input: record numbers alone would silently skip the wrong records of a re-export.
/// Four bytes a record (a 32-bit hash, never 0), in pages of 4,096 records by
/// record number: 4 MB for a million records, and one page for a stray record number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyIndex {
    pages: HashMap<u64, Box<[u32]>>,
}

impl KeyIndex {
    /// Records a page holds.
    const PAGE: u64 = 4096;

    fn hash(key: &str) -> u32 {
        (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32).max(1)
    }

    /// Remembers a record's key.
    pub fn insert(&mut self, record: u64, key: &str) {
        let page = self
            .pages
            .entry(record / Self::PAGE)
            .or_insert_with(|| vec![0; Self::PAGE as usize].into_boxed_slice());
        page[(record % Self::PAGE) as usize] = Self::hash(key);
    }

    /// Whether `key` is the key remembered for `record` (true when none is remembered).
    pub fn matches(&self, record: u64, key: &str) -> bool {
        let known = self
            .pages
            .get(&(record / Self::PAGE))
            .map_or(0, |page| page[(record % Self::PAGE) as usize]);
        known == 0 || known == Self::hash(key)
    }
}

/// What an earlier ledger says: which records settled, which failed, and the counts.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    /// Records with an entry.
    pub settled: RecordSet,
    /// The key of each settled record.
    pub keys: KeyIndex,
    /// Records whose entry is `failed`.
    pub failed: RecordSet,
    /// Entries per status.
    pub tally: Tally,
}

/// Reads an earlier ledger, streaming. A last line cut short by a crash is ignored; any
/// other unreadable line is an error, since the file is then not a ledger.
pub fn read_previous(path: &Path) -> io::Result<Previous> {
    #[derive(Deserialize)]
    struct Brief {
        /// `None` for a mirror run's deletions, which name no input row.
        record: Option<u64>,
        key: Option<String>,
        status: Status,
    }
    let file = File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read the ledger {}: {e}", path.display()),
        )
    })?;
    let mut previous = Previous::default();
    let mut lines = BufReader::new(file).split(b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line = line?;
        match serde_json::from_slice::<Brief>(&line) {
            Ok(Brief { record: None, .. }) => {}
            Ok(Brief {
                record: Some(record),
                ..
            }) if record > MAX_RECORD => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}:{}: record number {} is out of range",
                        path.display(),
                        index + 1,
                        record
                    ),
                ));
            }
            Ok(Brief {
                record: Some(record),
                key,
                status,
            }) => {
                if !previous.settled.contains(record) {
                    previous.settled.insert(record);
                    previous.tally.add(status);
                }
                if let Some(key) = &key {
                    previous.keys.insert(record, key);
                }
                if status == Status::Failed {
                    previous.failed.insert(record);
                }
            }
            Err(_) if lines.peek().is_none() => {} // a torn last line
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: not a ledger line: {e}", path.display(), index + 1),
                ));
            }
        }
    }
    Ok(previous)
}

/// The newest ledger of a command under `dir` (`./ledgers/`), for `--resume` without
/// `--ledger`: the newest of the names [`default_path_in`] gives that command (so `apply`
/// never picks a `demo-apply` ledger).
pub fn newest(dir: &Path, command: &str) -> Option<PathBuf> {
    newest_first(dir, command).into_iter().next()
}

/// Every ledger of a command under `dir` that [`newest`] considers, the newest first.
pub fn newest_first(dir: &Path, command: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|path| {
            let order = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| default_name_order(n, command))?;
            Some((order, path))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found.into_iter().map(|(_, path)| path).collect()
}

/// For a name `default_path(command)` could have made (`STAMP-COMMAND[-N].jsonl`), its
/// place in time: the stamp, then the collision number.
fn default_name_order(name: &str, command: &str) -> Option<(String, u32)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (stamp, rest) = stem.split_at_checked(STAMP_LEN)?;
    let stamp_ok = stamp.bytes().enumerate().all(|(i, b)| {
        if i == 8 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    if !stamp_ok {
        return None;
    }
    let rest = rest.strip_prefix('-')?.strip_prefix(command)?;
    let n = match rest.strip_prefix('-') {
        None if rest.is_empty() => 1,
        Some(n) => n.parse().ok().filter(|n| *n >= 2)?,
        None => return None,
    };
    Some((stamp.to_owned(), n))
}

/// `YYYYmmdd-HHMMSS`.
const STAMP_LEN: usize = 15;

/// A new ledger path under `./ledgers/`, named by time and command.
pub fn default_path(command: &str) -> PathBuf {
    default_path_in(Path::new("ledgers"), command)
}

/// A new ledger path under `base`, named by time and command.
pub fn default_path_in(base: &Path, command: &str) -> PathBuf {
    stamped_path(base, command, "jsonl")
}

/// A path under `dir` that does not exist yet: `STAMP-NAME.EXT`, or `STAMP-NAME-N.EXT`
/// (N from 2) when several runs start within the same second.
pub fn stamped_path(dir: &Path, name: &str, ext: &str) -> PathBuf {
    let [path] = stamped_paths(dir, [(name, ext)]);
    path
}

/// Paths under `dir` for files of one run, `(NAME, EXT)` each, sharing one time stamp (and
/// one `-N`): none of them exists yet.
pub fn stamped_paths<const N: usize>(dir: &Path, names: [(&str, &str); N]) -> [PathBuf; N] {
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let mut n = 1;
    loop {
        let paths = names.map(|(name, ext)| match n {
            1 => dir.join(format!("{stamp}-{name}.{ext}")),
            n => dir.join(format!("{stamp}-{name}-{n}.{ext}")),
        });
        if !paths.iter().any(|p| p.exists()) {
            return paths;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_reads_only_the_commands_own_names() {
        let order = |n| default_name_order(n, "apply");
        assert_eq!(
            order("20261130-101500-apply.jsonl"),
            Some(("20261130-101500".into(), 1))
        );
        assert_eq!(
            order("20261130-101500-apply-3.jsonl"),
            Some(("20261130-101500".into(), 3))
        );
        for other in [
            "20261130-101500-demo-apply.jsonl",
            "20261130-101500-apply-x.jsonl",
            "20261130-101500-applyx.jsonl",
            "20261130-101500-plan.jsonl",
            "notes-apply.jsonl",
            "20261130-101500-apply.csv",
        ] {
            assert_eq!(order(other), None, "{other}");
        }
        assert!(order("20261130-101500-apply-2.jsonl") > order("20261130-101500-apply.jsonl"));
        assert!(order("20261130-101501-apply.jsonl") > order("20261130-101500-apply-9.jsonl"));
    }

    #[test]
    fn entries_are_one_json_line_with_contract_members() {
        let entry = Entry {
            record: 3,
            line: 4,
            key: Some("C0003".into()),
            target_id: None,
            status: Status::Invalid,
            changed: vec![],
            attempts: None,
            error: Some(EntryError {
                code: "invalid_record".into(),
                message: "x.csv:4: PhoneNumber (column phone): not a phone number".into(),
                problems: vec![
                    Problem::new("PhoneNumber", "e164", "not a phone number")
                        .in_column(Some("phone")),
                ],
            }),
            basis: None,
        };
        let mut out = Vec::new();
        entry.write_line(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["record"], 3);
        assert_eq!(v["status"], "invalid");
        assert_eq!(v["error"]["problems"][0]["rule"], "e164");
        assert!(v.get("target_id").is_none());
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.status, Status::Invalid);
    }

    #[test]
    fn previous_ledgers_survive_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        fs::write(
            &path,
            "{\"record\":1,\"line\":2,\"key\":\"a\",\"status\":\"updated\"}\n\
             {\"record\":3,\"line\":4,\"key\":\"c\",\"status\":\"failed\"}\n\
             {\"record\":2,\"li",
        )
        .unwrap();
        let previous = read_previous(&path).unwrap();
        assert!(previous.settled.contains(1) && previous.settled.contains(3));
        assert!(!previous.settled.contains(2));
        assert_eq!(previous.failed.len(), 1);
        assert_eq!(previous.tally.get(Status::Updated), 1);
        let mut ledger = Ledger::append(&path).unwrap();
        ledger
            .write_lines(b"{\"record\":2,\"line\":3,\"key\":\"b\",\"status\":\"updated\"}\n")
            .unwrap();
        let previous = read_previous(&path).unwrap();
        assert_eq!(previous.settled.len(), 3);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn a_broken_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        fs::write(
            &path,
            "nonsense\n{\"record\":1,\"line\":2,\"key\":null,\"status\":\"updated\"}\n",
        )
        .unwrap();
        assert!(
            read_previous(&path)
                .unwrap_err()
                .to_string()
                .contains("l.jsonl:1")
        );
    }

    #[test]
    fn key_index_tells_a_different_input_apart() {
        let mut keys = KeyIndex::default();
        keys.insert(3, "C0003");
        assert!(keys.matches(3, "C0003"));
        assert!(!keys.matches(3, "C0004"));
        assert!(keys.matches(4, "anything"), "no key known");
        keys.insert(MAX_RECORD, "last");
        assert!(!keys.matches(MAX_RECORD, "other"));
        assert!(keys.matches(MAX_RECORD - 1, "anything"));
        assert_eq!(
            keys.pages.len(),
            2,
            "a page for each stretch of records named"
        );
    }

    #[test]
    fn record_sets() {
        let mut set = RecordSet::default();
        for n in [1, 64, 65, 1_000_000, 64] {
            set.insert(n);
        }
        assert_eq!(set.len(), 4);
        assert!(set.contains(64) && set.contains(1_000_000) && !set.contains(2));
        let mut other = RecordSet::default();
        other.insert(64);
        other.insert(7);
        set.remove_all(&other);
        assert_eq!(set.len(), 3);
        assert!(!set.contains(64) && set.contains(65));
    }

    fn run(command: &str) -> RunFile {
        RunFile {
            command: command.into(),
            config: "/c.toml".into(),
            config_sha256: sha256_hex(b"[source]\n"),
            target: "customer-profiles domain=D region=us-east-1".into(),
            input: "/in.csv".into(),
            input_file: None,
            retry_failed: None,
            pid: 1,
        }
    }

    #[test]
    fn an_input_file_names_each_thing_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        fs::write(&path, "a,b\n1,2\n").unwrap();
        let then = InputFile::of(&path).unwrap();
        assert_eq!(then.size, 8);
        assert_eq!(then.head_sha256, sha256_hex(b"a,b\n1,2\n"));
        assert_eq!(then.changes(&InputFile::of(&path).unwrap()), None);
        let now = InputFile {
            size: 9,
            head_sha256: sha256_hex(b"x"),
            ..then.clone()
        };
        let changes = then.changes(&now).unwrap();
        assert!(
            changes.starts_with("its size (was 8 bytes, now 9)"),
            "{changes}"
        );
        assert!(
            changes.ends_with("the content of its first MiB (SHA-256)"),
            "{changes}"
        );
        assert!(!changes.contains("modification time"), "{changes}");
        // A run file without the input's fingerprint (written before issue 20) still reads.
        let old = r#"{"command":"apply","config":"/c","config_sha256":"00","target":"t","input":"/in.csv","pid":1}"#;
        let run: RunFile = serde_json::from_str(old).unwrap();
        assert_eq!(run.input_file, None);
    }

    #[test]
    fn a_ledger_is_locked_by_its_run_and_resumed_only_by_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        let apply = run("apply");
        let mut ledger = Ledger::create_for(&path, &apply).unwrap();
        ledger
            .write_lines(b"{\"record\":1,\"line\":2,\"key\":\"a\",\"status\":\"updated\"}\n")
            .unwrap();
        let written = RunFile::read(&path).unwrap().unwrap();
        assert_eq!(written.pid, std::process::id());
        // Held: a second open (a second run) is refused, naming the holder.
        let busy = Ledger::resume(&path, &apply).err().unwrap().to_string();
        assert!(
            busy.contains(&format!(
                "in use by another profilesync run (pid {})",
                std::process::id()
            )),
            "{busy}"
        );
        drop(ledger);
        let check = Ledger::resume(&path, &run("check"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            check.contains("it was written by `apply`, and this run is `check`"),
            "{check}"
        );
        let mut changed = run("apply");
        changed.config_sha256 = sha256_hex(b"[source]\nkey = \"x\"\n");
        let changed = Ledger::resume(&path, &changed).err().unwrap().to_string();
        assert!(changed.contains("has changed"), "{changed}");
        let mut other = run("apply");
        other.input = "/other.csv".into();
        assert!(other.mismatch(&apply).unwrap().contains("input /other.csv"));
        assert!(Ledger::resume(&path, &apply).is_ok());
        fs::remove_file(RunFile::path_of(&path)).unwrap();
        let old = Ledger::resume(&path, &apply).err().unwrap().to_string();
        assert!(old.contains("it has no run file"), "{old}");
    }

    #[test]
    fn create_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/l.jsonl");
        let mut ledger = Ledger::create(&path).unwrap();
        ledger.write_lines(b"{}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
        assert!(Ledger::create(&path).is_err());
    }
}
