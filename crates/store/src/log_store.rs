//! The Raft log and vote, durable in the WAL ([`crate::wal`]).
//!
//! All writes go through one writer thread that folds whatever has queued
//! up while the previous write was syncing into the next: one frame of the
//! WAL, one `pwrite` and one `fdatasync`. openraft 0.9 waits for each append
//! to be flushed before it appends again, so concurrent writers are batched
//! earlier, into one entry (see [`Proposal`](crate::types::Proposal)); the
//! writer's grouping mostly saves the committed-id writes a sync of their
//! own. Operations are processed strictly in the order they were queued,
//! which is the ordering openraft requires of log and vote I/O, and the WAL
//! replays its records in the order they were written.
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
//! - `append`: the callback fires after the entries are on disk.
//! - `save_vote`, `truncate`, `purge`: return after their record is on disk.
//! - `save_committed`: queued behind the appends it covers and written with
//!   the next durable write (an append, or anything else the writer writes)
//!   or at a clean stop, never in a write of its own. A committed id lost in
//!   a crash only means fewer entries are re-applied while openraft starts;
//!   `Store::open` then waits for a barrier entry, whose commit applies the
//!   rest.
//!
//! The directory is locked (`flock`) while the log is open, so two stores
//! never share it. A directory with the redb log of earlier builds is moved
//! to the WAL first ([`crate::migrate`]).

use crate::migrate::{self, MigrateError};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::wal::{Contents, Wal, WalError, WalOptions};
use nix::fcntl::{Flock, FlockArg};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::File;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The WAL's directory, inside the store's.
pub(crate) const WAL_DIR: &str = "wal";

/// Most operations folded into one frame, so that a flood of appends
/// still sees its callbacks in bounded time.
const MAX_GROUP: usize = 4096;

/// Errors opening the log. Later I/O errors go to openraft as `StorageError`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("{0} is in use by another store (another berth process, or one still closing)")]
    InUse(String),
    #[error("locking {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Migrate(MigrateError),
    #[error("opening the raft log: {0}")]
    Wal(#[from] WalError),
    #[error("starting the log writer thread: {0}")]
    Thread(std::io::Error),
}

impl From<MigrateError> for OpenError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::InUse(path) => OpenError::InUse(path),
            e => OpenError::Migrate(e),
        }
    }
}

/// The log as openraft sees it, kept in memory; the WAL holds the durable copy.
type LogCache = Contents;

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
    /// Finish what is queued before it, close the log and exit.
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
    /// Lets queued writes finish, then closes the log. Returns once its
    /// files and the directory's lock are released, so the directory can be
    /// opened again.
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
    /// Opens (creating if new) the log in the store directory `dir`: locks
    /// the directory, moves a redb log of earlier builds to the WAL, replays
    /// the WAL into memory and starts the writer thread.
    pub(crate) fn open(dir: &Path, options: WalOptions) -> Result<(LogStore, Writer), OpenError> {
        let lock = lock_dir(dir)?;
        migrate::from_redb(dir, WAL_DIR, options)?;
        let (wal, cache) = Wal::open(&dir.join(WAL_DIR), options)?;
        let (tx, rx) = mpsc::channel();
        let halted = Arc::new(AtomicBool::new(false));
        let writer_halted = halted.clone();
        let appended_bytes = Arc::new(AtomicU64::new(0));
        let writer_bytes = appended_bytes.clone();
        std::thread::Builder::new()
            .name("store-log-writer".into())
            .spawn(move || run_writer(wal, lock, rx, writer_halted, writer_bytes))
            .map_err(OpenError::Thread)?;
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

/// Takes the store directory's lock: held by the writer thread for as long
/// as the log is open, released if the process dies.
fn lock_dir(dir: &Path) -> Result<Flock<File>, OpenError> {
    let lock_err = |source| OpenError::Lock {
        path: dir.display().to_string(),
        source,
    };
    let file = File::open(dir).map_err(lock_err)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            Err(OpenError::InUse(dir.display().to_string()))
        }
        Err((_, e)) => Err(lock_err(e.into())),
    }
}

/// The writer thread: takes the first queued op, everything queued behind it
/// (up to [`MAX_GROUP`]), writes them in order as one frame, durably, then
/// reports each op's outcome.
fn run_writer(
    mut wal: Wal,
    lock: Flock<File>,
    rx: mpsc::Receiver<WriteOp>,
    halted: Arc<AtomicBool>,
    appended_bytes: Arc<AtomicU64>,
) {
    let mut stop: Option<oneshot::Sender<()>> = None;
    // The committed id of a group that had nothing else, not yet written:
    // it goes into the next durable write (see `write_group`).
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
            // Only committed ids: nobody waits for them, and a write of
            // their own would cost an fdatasync on every entry of every
            // manager. The last one rides with the next durable write.
            pending_committed = group.pop();
            continue;
        }
        if let Some(committed) = pending_committed.take() {
            // Older than any committed id in the group, so written first.
            group.insert(0, committed);
        }
        let result = write_group(&mut wal, &group, &appended_bytes).map_err(|e| e.to_string());
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
            if let Err(e) = write_group(&mut wal, &[committed], &appended_bytes) {
                tracing::error!(error = %e, "final raft log write failed");
            }
        }
    }
    drop(wal);
    // Released once the WAL's files are closed, and before anyone waiting
    // for the stop hears of it.
    drop(lock);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// Writes `group` as one frame of the WAL, returning once it is durable
/// (one `fdatasync`). The writer never writes a group of only committed
/// ids: the last of them waits for the next group that has something
/// durable to write (in a lone writer's cluster, the very next append), or
/// for a clean stop; losing it in a crash is harmless (see the module
/// comment). That spares every entry of a lone writer a second sync on
/// each manager.
fn write_group(
    wal: &mut Wal,
    group: &[WriteOp],
    appended_bytes: &AtomicU64,
) -> Result<(), WalError> {
    wal.begin()?;
    let mut bytes = 0;
    for op in group {
        match op {
            WriteOp::Append { entries, .. } => {
                for entry in entries {
                    bytes += wal.add_entry(entry)?;
                }
            }
            WriteOp::Truncate { since, .. } => wal.add_truncate(*since),
            WriteOp::Purge { upto, .. } => wal.add_purge(*upto)?,
            WriteOp::SaveVote { vote, .. } => wal.add_vote(vote)?,
            WriteOp::SaveCommitted { committed } => wal.add_committed(*committed)?,
            WriteOp::Stop { .. } => {}
        }
    }
    wal.commit()?;
    appended_bytes.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
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
                c.append(e.clone());
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
        lock(&self.cache).truncate(log_id.index);
        let since = log_id.index;
        self.send_and_wait(
            |done| WriteOp::Truncate { since, done },
            ErrorSubject::Logs,
            ErrorVerb::Delete,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        lock(&self.cache).purge(log_id);
        self.send_and_wait(
            |done| WriteOp::Purge { upto: log_id, done },
            ErrorSubject::Logs,
            ErrorVerb::Delete,
        )
        .await
    }
}

/// What the log holds on disk, for tests that check purging really deletes:
/// the index of every entry record still in a segment, the last purged id
/// and the number of segments.
#[cfg(test)]
pub(crate) fn disk_log_indexes(dir: &Path) -> Result<(Vec<u64>, Option<LogId>, usize), WalError> {
    crate::wal::disk_indexes(&dir.join(WAL_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::{Shared, StateMachine};
    use openraft::testing::{StoreBuilder, Suite};

    /// A log store and a state machine in a fresh directory, for openraft's
    /// storage suite. The directory and the writer live as long as the test.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, (tempfile::TempDir, Writer)> for Builder {
        async fn build(
            &self,
        ) -> Result<((tempfile::TempDir, Writer), LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let options = WalOptions {
                segment_bytes: 4 << 10,
                preallocate: false,
            };
            let (log, writer) = LogStore::open(dir.path(), options)
                .map_err(|e| StorageIOError::write(AnyError::error(e)))?;
            let shared = Arc::new(Shared::new(Default::default(), 16));
            let sm = StateMachine::new(shared, dir.path().to_path_buf());
            Ok(((dir, writer), log, sm))
        }
    }

    /// openraft's own checks of a log store (appends, reads, truncation,
    /// purges, the vote) with small segments, so that they roll over.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("openraft's storage suite");
    }
}
