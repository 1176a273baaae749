//! The Raft log and vote, durable in redb.
//!
//! redb takes one write transaction at a time and every durable commit costs an
//! fsync, so all writes go through one writer thread that folds whatever has
//! queued up while the previous commit was syncing into the next transaction.
//! openraft 0.9 waits for each append to be flushed before it appends again, so
//! concurrent writers are batched earlier, into one entry (see
//! [`Proposal`](crate::types::Proposal)); the writer's grouping mostly saves the
//! committed-id writes a sync of their own. Operations are processed strictly in
//! the order they were queued, which is the ordering openraft requires of log
//! and vote I/O.
//!
//! Reads are served from an in-memory copy of the log kept in step with what
//! openraft appended, truncated and purged: openraft requires appended entries
//! to be readable as soon as `append` returns, before they are durable. The log
//! is purged after every snapshot, and a snapshot is taken after
//! `snapshot_every` entries or once the entries appended since the last one
//! pass `snapshot_log_bytes` (the writer counts them in [`LogStore::appended_bytes`]),
//! so the copy stays bounded even when batching makes entries large.
//!
//! Durability of each call:
//! - `append`: the callback fires after the entries are committed to disk.
//! - `save_vote`, `truncate`, `purge`: return after their commit is on disk.
//! - `save_committed`: queued behind the appends it covers and written with
//!   the next durable write (an append, or anything else the writer commits)
//!   or at a clean stop, never in a transaction of its own. A committed id lost in a crash only means fewer entries are
//!   re-applied while openraft starts; `Store::open` then waits for a barrier
//!   entry, whose commit applies the rest.

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Log entries by index, each the JSON of an openraft entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, committed id, last purged id and the format version, by name.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_FORMAT: &str = "format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
/// Version of the table layout and entry encoding above.
const FORMAT_VERSION: &[u8] = b"1";

/// Most operations folded into one transaction, so that a flood of appends
/// still sees its callbacks in bounded time.
const MAX_GROUP: usize = 4096;

/// Errors opening the log. Later I/O errors go to openraft as `StorageError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{0} is in use by another store (another berth process, or one still closing)")]
    InUse(String),
    #[error("opening {path}: {source}")]
    Database {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("reading the raft log: {0}")]
    Read(String),
    #[error("raft log format version {0:?} is not supported by this build (it reads version 1)")]
    UnsupportedFormat(String),
}

/// The log as openraft sees it, kept in memory; redb holds the durable copy.
#[derive(Default)]
struct LogCache {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// One queued write. Ops are applied in queue order.
enum WriteOp {
    Append {
        entries: Vec<Entry>,
        callback: LogFlushed<TypeConfig>,
    },
    Truncate {
        since: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Purge {
        upto: LogId,
        done: oneshot::Sender<Result<(), String>>,
    },
    SaveVote {
        vote: Vote,
        done: oneshot::Sender<Result<(), String>>,
    },
    SaveCommitted {
        committed: Option<LogId>,
    },
    /// Finish what is queued before it, close the database and exit.
    Stop {
        done: oneshot::Sender<()>,
    },
}

/// Handle on the writer thread, kept by the store to stop it.
pub(crate) struct Writer {
    tx: mpsc::Sender<WriteOp>,
    /// Set to make the writer drop everything not yet committed and exit, as a
    /// power cut would (tests only).
    #[cfg(test)]
    halted: Arc<AtomicBool>,
}

impl Writer {
    /// Lets queued writes finish, then closes the database. Returns once the
    /// redb file is closed, so the directory can be opened again.
    pub(crate) async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(WriteOp::Stop { done }).is_ok() {
            let _ = wait.await;
        }
    }

    /// Asks the writer to stop without waiting (used when the store is dropped).
    pub(crate) fn stop_in_background(&self) {
        let (done, _wait) = oneshot::channel();
        let _ = self.tx.send(WriteOp::Stop { done });
    }

    /// Simulates a crash of the writer: nothing queued reaches the disk.
    #[cfg(test)]
    pub(crate) async fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
        self.stop().await;
    }
}

/// redb's page cache for the log database.
const LOG_DB_CACHE_BYTES: usize = 16 << 20;

/// openraft's log storage; cloned readers share its cache.
pub(crate) struct LogStore {
    cache: Arc<Mutex<LogCache>>,
    tx: mpsc::Sender<WriteOp>,
    appended_bytes: Arc<AtomicU64>,
    appends: Arc<Appends>,
}

/// The leader's proposals whose fate the proposer must know, by
/// [`Proposal::tag`](crate::types::Proposal): registered before each is
/// proposed, marked once the log appends it. openraft answers "forward to
/// the leader" both to a write it refused (never proposed: safe to send to
/// the new leader) and to one it appended and later deleted because a new
/// leader's entries replaced it (proposed: it may have reached other
/// managers, which could still commit it); this tells the two apart.
#[derive(Default)]
pub(crate) struct Appends {
    last_tag: AtomicU64,
    watched: Mutex<HashMap<u64, bool>>,
}

impl Appends {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, bool>> {
        // Each critical section is one map operation.
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a proposal about to be made; it carries the returned tag.
    pub(crate) fn watch(self: &Arc<Self>) -> Watched {
        let tag = self.last_tag.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(tag, false);
        Watched {
            appends: self.clone(),
            tag,
        }
    }

    fn mark(&self, tag: u64) {
        if let Some(appended) = self.lock().get_mut(&tag) {
            *appended = true;
        }
    }
}

/// One registered proposal; dropping it forgets it.
pub(crate) struct Watched {
    appends: Arc<Appends>,
    pub(crate) tag: u64,
}

impl Watched {
    /// Whether the log appended the proposal (it may have been deleted
    /// since).
    pub(crate) fn appended(&self) -> bool {
        self.appends.lock().get(&self.tag).copied().unwrap_or(false)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.appends.lock().remove(&self.tag);
    }
}

#[derive(Clone)]
pub(crate) struct LogReader {
    cache: Arc<Mutex<LogCache>>,
}

fn lock(cache: &Mutex<LogCache>) -> MutexGuard<'_, LogCache> {
    // A panic while holding the lock cannot leave the cache half-updated in a
    // way later readers could not use: each update is a single map operation.
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

impl LogStore {
    /// Opens (creating if new) the log database at `path`, loads it into
    /// memory and starts the writer thread.
    pub(crate) fn open(path: &Path) -> Result<(LogStore, Writer), OpenError> {
        // redb caches up to 1 GiB of pages by default, and pages we write stay
        // cached. The log is read from disk only at open (the in-memory copy
        // serves openraft), so a small cache costs nothing.
        let db = Database::builder()
            .set_cache_size(LOG_DB_CACHE_BYTES)
            .create(path)
            .map_err(|source| match source {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    OpenError::InUse(path.display().to_string())
                }
                source => OpenError::Database {
                    path: path.display().to_string(),
                    source,
                },
            })?;
        let cache = load(&db)?;
        let (tx, rx) = mpsc::channel();
        let halted = Arc::new(AtomicBool::new(false));
        let writer_halted = halted.clone();
        let appended_bytes = Arc::new(AtomicU64::new(0));
        let writer_bytes = appended_bytes.clone();
        std::thread::Builder::new()
            .name("store-log-writer".into())
            .spawn(move || run_writer(db, rx, writer_halted, writer_bytes))
            .map_err(|e| OpenError::Read(format!("starting the log writer thread: {e}")))?;
        let store = LogStore {
            cache: Arc::new(Mutex::new(cache)),
            tx: tx.clone(),
            appended_bytes,
            appends: Arc::default(),
        };
        Ok((
            store,
            Writer {
                tx,
                #[cfg(test)]
                halted,
            },
        ))
    }

    /// Bytes of log entries written since this store opened; the store takes
    /// a snapshot (and so purges the log) when they pass its budget.
    pub(crate) fn appended_bytes(&self) -> Arc<AtomicU64> {
        self.appended_bytes.clone()
    }

    /// The register of the proposals the proposer watches.
    pub(crate) fn appends(&self) -> Arc<Appends> {
        self.appends.clone()
    }

    // The error type is openraft's, fixed by the trait methods that return it.
    #[allow(clippy::result_large_err)]
    fn send(&self, op: WriteOp) -> Result<(), StorageError> {
        self.tx.send(op).map_err(|_| {
            StorageIOError::write_logs(AnyError::error("the log writer has stopped")).into()
        })
    }

    async fn send_and_wait(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), String>>) -> WriteOp,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
    ) -> Result<(), StorageError> {
        let (done, wait) = oneshot::channel();
        self.send(op(done))?;
        let result = match wait.await {
            Ok(r) => r,
            Err(_) => Err("the log writer stopped before the write was durable".into()),
        };
        result.map_err(|e| StorageIOError::new(subject, verb, AnyError::error(e)).into())
    }
}

fn read_err(e: impl std::fmt::Display) -> OpenError {
    OpenError::Read(e.to_string())
}

fn load(db: &Database) -> Result<LogCache, OpenError> {
    // Create the tables (and stamp the format) on first open, so that reads
    // below never meet a missing table.
    let txn = db.begin_write().map_err(read_err)?;
    {
        let mut meta = txn.open_table(META).map_err(read_err)?;
        let format = meta
            .get(KEY_FORMAT)
            .map_err(read_err)?
            .map(|v| v.value().to_vec());
        match format {
            None => {
                meta.insert(KEY_FORMAT, FORMAT_VERSION).map_err(read_err)?;
            }
            Some(v) if v == FORMAT_VERSION => {}
            Some(v) => {
                return Err(OpenError::UnsupportedFormat(
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            }
        }
        txn.open_table(LOG).map_err(read_err)?;
    }
    txn.commit().map_err(read_err)?;

    let txn = db.begin_read().map_err(read_err)?;
    let meta = txn.open_table(META).map_err(read_err)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, OpenError> {
        Ok(meta.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
    };
    let decode_opt = |bytes: Option<Vec<u8>>, what: &str| -> Result<Option<LogId>, OpenError> {
        match bytes {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| OpenError::Read(format!("decoding {what}: {e}"))),
        }
    };
    let mut cache = LogCache {
        vote: match get(KEY_VOTE)? {
            None => None,
            Some(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| OpenError::Read(format!("decoding the vote: {e}")))?,
            ),
        },
        committed: decode_opt(get(KEY_COMMITTED)?, "the committed log id")?,
        last_purged: decode_opt(get(KEY_PURGED)?, "the last purged log id")?,
        entries: BTreeMap::new(),
    };
    let log = txn.open_table(LOG).map_err(read_err)?;
    for item in log.iter().map_err(read_err)? {
        let (k, v) = item.map_err(read_err)?;
        let entry: Entry = serde_json::from_slice(v.value())
            .map_err(|e| OpenError::Read(format!("decoding log entry {}: {e}", k.value())))?;
        cache.entries.insert(k.value(), entry);
    }
    Ok(cache)
}

/// The writer thread: takes the first queued op, everything queued behind it
/// (up to [`MAX_GROUP`]), applies them in order in one transaction, commits
/// durably, then reports each op's outcome.
fn run_writer(
    db: Database,
    rx: mpsc::Receiver<WriteOp>,
    halted: Arc<AtomicBool>,
    appended_bytes: Arc<AtomicU64>,
) {
    let mut stop: Option<oneshot::Sender<()>> = None;
    // The committed id of a group that had nothing else, not yet written:
    // it goes into the next durable transaction (see `write_group`).
    let mut pending_committed: Option<WriteOp> = None;
    while stop.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut group = Vec::with_capacity(64);
        let mut next = Some(first);
        while let Some(op) = next.take() {
            if let WriteOp::Stop { done } = op {
                stop = Some(done);
                break;
            }
            group.push(op);
            if group.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if halted.load(Ordering::SeqCst) {
            // A simulated crash: nothing of the group reaches the disk and no
            // one hears back.
            break;
        }
        if group.is_empty() {
            continue;
        }
        let durable = group
            .iter()
            .any(|op| !matches!(op, WriteOp::SaveCommitted { .. }));
        if !durable {
            // Only committed ids: nobody waits for them, and a transaction
            // of their own would cost a commit (a dozen page writes) on every
            // entry of every manager. The last one rides with the next
            // durable write.
            pending_committed = group.pop();
            continue;
        }
        if let Some(committed) = pending_committed.take() {
            // Older than any committed id in the group, so written first.
            group.insert(0, committed);
        }
        let result = write_group(&db, &group, &appended_bytes);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        for op in group {
            let r = result.clone();
            match op {
                WriteOp::Append { callback, .. } => {
                    callback.log_io_completed(r.map_err(std::io::Error::other))
                }
                WriteOp::Truncate { done, .. }
                | WriteOp::Purge { done, .. }
                | WriteOp::SaveVote { done, .. } => {
                    let _ = done.send(r);
                }
                WriteOp::SaveCommitted { .. } | WriteOp::Stop { .. } => {}
            }
        }
    }
    if let Some(committed) = pending_committed {
        if stop.is_some() && !halted.load(Ordering::SeqCst) {
            // A clean stop makes the last committed id durable too.
            if let Err(e) = write_group(&db, &[committed], &appended_bytes) {
                tracing::error!(error = %e, "final raft log write failed");
            }
        }
    }
    drop(db);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Writes `group` in one transaction, committed with redb's default
/// `Durability::Immediate`: the commit returns after fdatasync. The writer
/// never commits a group of only committed ids: the last of them waits for
/// the next group that has something durable to write (in a lone writer's
/// cluster, the very next append), or for a clean stop; losing it in a
/// crash is harmless (see the module comment). That spares every entry of a
/// lone writer a second transaction on each manager.
fn write_group(db: &Database, group: &[WriteOp], appended_bytes: &AtomicU64) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let txn = db.begin_write().map_err(|e| s(&e))?;
    {
        let mut log = txn.open_table(LOG).map_err(|e| s(&e))?;
        let mut meta = txn.open_table(META).map_err(|e| s(&e))?;
        for op in group {
            match op {
                WriteOp::Append { entries, .. } => {
                    for entry in entries {
                        let bytes = serde_json::to_vec(entry).map_err(|e| s(&e))?;
                        log.insert(entry.log_id.index, bytes.as_slice())
                            .map_err(|e| s(&e))?;
                        appended_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                }
                WriteOp::Truncate { since, .. } => {
                    log.retain_in(*since.., |_, _| false).map_err(|e| s(&e))?;
                }
                WriteOp::Purge { upto, .. } => {
                    log.retain_in(..=upto.index, |_, _| false)
                        .map_err(|e| s(&e))?;
                    let bytes = serde_json::to_vec(upto).map_err(|e| s(&e))?;
                    meta.insert(KEY_PURGED, bytes.as_slice())
                        .map_err(|e| s(&e))?;
                }
                WriteOp::SaveVote { vote, .. } => {
                    let bytes = serde_json::to_vec(vote).map_err(|e| s(&e))?;
                    meta.insert(KEY_VOTE, bytes.as_slice()).map_err(|e| s(&e))?;
                }
                WriteOp::SaveCommitted { committed } => {
                    let bytes = serde_json::to_vec(committed).map_err(|e| s(&e))?;
                    meta.insert(KEY_COMMITTED, bytes.as_slice())
                        .map_err(|e| s(&e))?;
                }
                WriteOp::Stop { .. } => {}
            }
        }
    }
    txn.commit().map_err(|e| s(&e))
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

fn read_range(cache: &Mutex<LogCache>, range: impl RangeBounds<u64>) -> Vec<Entry> {
    // As a half-open [lo, hi): BTreeMap::range panics on an inverted range, and
    // openraft may ask for an empty one such as 5..5.
    let lo = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return Vec::new(),
        },
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    let c = lock(cache);
    match hi {
        Some(hi) if lo >= hi => Vec::new(),
        Some(hi) => c.entries.range(lo..hi).map(|(_, e)| e.clone()).collect(),
        None => c.entries.range(lo..).map(|(_, e)| e.clone()).collect(),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_range(&self.cache, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let c = lock(&self.cache);
        let last = c.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: c.last_purged,
            last_log_id: last.or(c.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            cache: self.cache.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let v = *vote;
        self.send_and_wait(
            |done| WriteOp::SaveVote { vote: v, done },
            ErrorSubject::Vote,
            ErrorVerb::Write,
        )
        .await?;
        lock(&self.cache).vote = Some(v);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.cache).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        lock(&self.cache).committed = committed;
        self.send(WriteOp::SaveCommitted { committed })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.cache).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut c = lock(&self.cache);
            for e in &entries {
                c.entries.insert(e.log_id.index, e.clone());
            }
        }
        // Marked before openraft can learn of the append, and so before it
        // could delete the entry again.
        for e in &entries {
            if let EntryPayload::Normal(p) = &e.payload {
                if p.tag != 0 {
                    self.appends.mark(p.tag);
                }
            }
        }
        self.send(WriteOp::Append { entries, callback })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.cache).entries.split_off(&log_id.index);
        let since = log_id.index;
        self.send_and_wait(
            |done| WriteOp::Truncate { since, done },
            ErrorSubject::Logs,
            ErrorVerb::Delete,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut c = lock(&self.cache);
            c.entries = c.entries.split_off(&(log_id.index + 1));
            c.last_purged = Some(log_id);
        }
        self.send_and_wait(
            |done| WriteOp::Purge { upto: log_id, done },
            ErrorSubject::Logs,
            ErrorVerb::Delete,
        )
        .await
    }
}

/// What the log holds on disk, for tests that check purging really deletes.
#[cfg(test)]
pub(crate) fn disk_log_indexes(path: &Path) -> Result<(Vec<u64>, Option<LogId>), String> {
    let db = Database::open(path).map_err(|e| e.to_string())?;
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let log = txn.open_table(LOG).map_err(|e| e.to_string())?;
    let mut indexes = Vec::new();
    for item in log.iter().map_err(|e| e.to_string())? {
        let (k, _) = item.map_err(|e| e.to_string())?;
        indexes.push(k.value());
    }
    let meta = txn.open_table(META).map_err(|e| e.to_string())?;
    let purged = match meta.get(KEY_PURGED).map_err(|e| e.to_string())? {
        Some(v) => serde_json::from_slice(v.value()).map_err(|e| e.to_string())?,
        None => None,
    };
    Ok((indexes, purged))
}
