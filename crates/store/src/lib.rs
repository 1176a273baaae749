//! berth's replicated store (UCP's `ucp-kv`): the cluster [`api::State`] kept
//! by a Raft group of managers.
//!
//! - [`log_store`]: the Raft log and vote, durable in redb, written by one
//!   group-committing thread.
//! - [`state_machine`]: the in-memory `State`, fed by committed entries through
//!   the deterministic [`api::State::apply`], persisted by snapshots.
//! - [`snapshot`]: the versioned snapshot format and its atomic file.
//! - [`network`]: the (absent) network to other managers.
//!
//! Components never call each other; they coordinate through this store:
//! [`Store::view`] to read, [`Store::update`] to change, [`Store::watch`] to
//! follow changes. Updates that wait at the same time travel in one log entry
//! (a [`types::Proposal`]) so that they share one fsync; each is still applied
//! whole or not at all, on its own. The group has a single voter for now (issue 2); adding
//! members needs a real [`network`] and the RPC server that feeds the
//! [`Raft`](openraft::Raft) handle.

mod log_store;
pub mod network;
mod snapshot;
mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use crate::log_store::{LogStore, Writer};
use crate::state_machine::{Applied, Shared, StateMachine};
use crate::types::{NodeId, Proposal, Raft};
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// How long `update` waits for its entry to be committed and applied.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `open` waits for this node to become leader and catch up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Capacity of the watch channel; a receiver further behind gets `Lagged` and
/// re-reads the whole state. Kept small on purpose: a broadcast channel holds
/// its last `capacity` changes until they are overwritten, even once every
/// receiver has read them, and a change can carry the old and new copies of a
/// thousand tasks. A lagging receiver costs one re-read, which is cheap.
const WATCH_CAPACITY: usize = 256;
/// Log entries kept after a snapshot, so that a follower just behind the
/// snapshot can still catch up from the log instead of a whole snapshot.
const LOG_KEPT_AFTER_SNAPSHOT: u64 = 8;
/// How often the log's size is compared with `snapshot_log_bytes`.
const LOG_SIZE_CHECK: Duration = Duration::from_millis(500);
/// Most `update()` batches carried by one log entry; bounds an entry's size.
const MAX_BATCHES_PER_ENTRY: usize = 1024;
/// The redb file holding the Raft log and vote, inside [`StoreConfig::dir`].
const LOG_FILE: &str = "raft.redb";

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Data directory of this store: the redb log file and the snapshot.
    pub dir: PathBuf,
    /// Raft node id (1 for the single node).
    pub node_id: u64,
    /// Build a snapshot and purge the log every this many applied entries.
    pub snapshot_every: u64,
    /// ... or as soon as the entries written since the last snapshot pass this
    /// many bytes: batching makes entries large (one can carry a thousand
    /// tasks), so a count alone would let the log, and its copy in memory, grow
    /// to gigabytes before the count is reached.
    pub snapshot_log_bytes: u64,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            node_id: 1,
            snapshot_every: 10_000,
            snapshot_log_bytes: 16 << 20,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, StoreError> {
        openraft::Config {
            cluster_name: "berth".into(),
            // The group has one voter, so these only matter for a restart that
            // does not resume leadership (and later for managers on a LAN with
            // fsync'd logs): heartbeats well under the election timeout, and an
            // election timeout long enough to ride out a slow fsync.
            heartbeat_interval: 250,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: LOG_KEPT_AFTER_SNAPSHOT,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StoreError::Storage(format!("raft configuration: {e}")))
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Refused by the state machine (404/409 to the user); nothing was applied.
    #[error(transparent)]
    Apply(#[from] api::ApplyError),
    /// No leader, lost quorum, timed out or shutting down (503). Retryable; a
    /// timed-out write may still be applied later, so retries must be safe to
    /// repeat (versions and ids make them so).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Disk or corruption: fatal for this node.
    #[error("storage error: {0}")]
    Storage(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The store of one manager. Cheap to clone; all clones share one Raft node.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("node_id", &self.inner.node_id)
            .field("index", &self.view(|s| s.index()))
            .finish()
    }
}

struct Inner {
    raft: Raft,
    /// To the proposer task, which turns waiting updates into log entries.
    proposals: mpsc::UnboundedSender<Request>,
    metrics: watch::Receiver<RaftMetrics<NodeId, openraft::BasicNode>>,
    shared: Arc<Shared>,
    writer: Writer,
    node_id: NodeId,
    closed: AtomicBool,
    write_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without shutdown (or after it): let the log writer finish what
        // is queued and release the database file, so the directory can be
        // opened again in this process.
        self.writer.stop_in_background();
    }
}

impl Store {
    /// Opens (creating if new) the store; a fresh store initializes a
    /// single-voter Raft group and waits until it is leader. A reopened store
    /// has every entry committed before (including after kill -9) applied
    /// before open returns. A directory still held by another open store
    /// answers [`StoreError::Unavailable`].
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(config, WRITE_TIMEOUT).await
    }

    async fn open_with(config: StoreConfig, write_timeout: Duration) -> Result<Store, StoreError> {
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.dir.clone();
        let (log_store, writer, applied) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
            snapshot::remove_leftovers(&dir)
                .map_err(|e| StoreError::Storage(format!("cleaning {}: {e}", dir.display())))?;
            let applied = match snapshot::read(&dir) {
                Ok(None) => Applied::default(),
                Ok(Some(bytes)) => {
                    let (meta, state) = snapshot::decode(&bytes).map_err(|e| {
                        StoreError::Storage(format!("snapshot in {}: {e}", dir.display()))
                    })?;
                    Applied {
                        state,
                        last_applied: meta.last_log_id,
                        membership: meta.last_membership,
                    }
                }
                Err(e) => {
                    return Err(StoreError::Storage(format!(
                        "reading the snapshot in {}: {e}",
                        dir.display()
                    )))
                }
            };
            let (log_store, writer) = LogStore::open(&dir.join(LOG_FILE)).map_err(|e| match e {
                e @ log_store::OpenError::InUse(_) => StoreError::Unavailable(e.to_string()),
                e => StoreError::Storage(e.to_string()),
            })?;
            Ok((log_store, writer, applied))
        })
        .await
        .map_err(|e| StoreError::Storage(format!("opening the store: {e}")))??;

        let log_bytes = log_store.appended_bytes();
        let shared = Arc::new(Shared::new(applied, WATCH_CAPACITY));
        let state_machine = StateMachine::new(shared.clone(), config.dir.clone());
        let raft = match Raft::new(
            config.node_id,
            raft_config,
            network::NoNetwork,
            log_store,
            state_machine,
        )
        .await
        {
            Ok(raft) => raft,
            Err(e) => {
                writer.stop().await;
                return Err(fatal(e));
            }
        };
        let (proposals, requests) = mpsc::unbounded_channel();
        tokio::spawn(run_proposer(raft.clone(), requests));
        tokio::spawn(snapshot_by_size(
            raft.clone(),
            log_bytes,
            config.snapshot_log_bytes,
        ));
        let store = Store {
            inner: Arc::new(Inner {
                proposals,
                metrics: raft.metrics(),
                raft,
                shared,
                writer,
                node_id: config.node_id,
                closed: AtomicBool::new(false),
                write_timeout,
            }),
        };
        // On failure, stop Raft and the writer here rather than leave a
        // half-open store holding the database file.
        if let Err(e) = store.start().await {
            let _ = store.shutdown().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Brings a freshly built Raft node to leadership and applies the log.
    async fn start(&self) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let id = self.inner.node_id;
        if !raft.is_initialized().await.map_err(fatal)? {
            // A new directory: this node founds a single-voter group. The
            // membership entry it appends is what makes a reopen skip this.
            raft.initialize(BTreeSet::from([id]))
                .await
                .map_err(|e| StoreError::Storage(format!("initializing raft: {e}")))?;
        } else {
            let m = self.inner.metrics.borrow().clone();
            let sole_voter = m
                .membership_config
                .membership()
                .voter_ids()
                .collect::<Vec<_>>()
                == vec![id];
            if sole_voter && m.state != ServerState::Leader {
                // The only voter need not wait an election timeout to win.
                raft.trigger().elect().await.map_err(fatal)?;
            }
        }
        raft.wait(Some(OPEN_TIMEOUT))
            .metrics(
                |m| m.state == ServerState::Leader && m.current_leader == Some(id),
                "this node becomes leader",
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("waiting for leadership: {e}")))?;
        // A barrier: once an entry proposed now is applied, every entry before
        // it is applied too, including ones that were durable in the log but
        // not yet known committed when the previous process died.
        tokio::time::timeout(OPEN_TIMEOUT, raft.client_write(Proposal::default()))
            .await
            .map_err(|_| StoreError::Unavailable("catching up with the log timed out".into()))?
            .map_err(write_error)?;
        Ok(())
    }

    /// Reads the local state (committed and applied). Runs `f` under a read
    /// lock: keep it short; nothing in it can await.
    pub fn view<R>(&self, f: impl FnOnce(&api::State) -> R) -> R {
        f(&self.inner.shared.read().state)
    }

    /// Proposes `ops` as one [`api::Batch`] (stamped with this node's clock),
    /// waits until it is committed and applied locally and returns what it
    /// changed. A batch refused by [`api::State::apply`] comes back as
    /// [`StoreError::Apply`] and nothing of it is applied. Answers
    /// [`StoreError::Unavailable`] if the write is not applied within 10 s; it
    /// may still be applied later.
    pub async fn update(&self, ops: Vec<api::Op>) -> Result<api::Change, StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        let (reply, answer) = oneshot::channel();
        let request = Request {
            batch: api::Batch::new(ops),
            reply,
        };
        if self.inner.proposals.send(request).is_err() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        match tokio::time::timeout(self.inner.write_timeout, answer).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "the write was not applied within {:?}; it may still be",
                self.inner.write_timeout
            ))),
            Ok(Err(_)) => Err(StoreError::Unavailable(
                "the store stopped before answering; the write may be applied".into(),
            )),
            Ok(Ok(result)) => result,
        }
    }

    /// Every applied entry that changed objects, in log order. Subscribe first,
    /// then [`view`](Store::view): changes with an index at or below the viewed
    /// state's index are already in it. A receiver that falls more than 1024
    /// changes behind gets `RecvError::Lagged` and must re-read the whole state.
    pub fn watch(&self) -> broadcast::Receiver<Arc<api::Change>> {
        self.inner.shared.events.subscribe()
    }

    /// True while this node is the Raft leader.
    pub fn is_leader(&self) -> bool {
        if self.inner.closed.load(Ordering::SeqCst) {
            return false;
        }
        let m = self.inner.metrics.borrow();
        m.running_state.is_ok()
            && m.state == ServerState::Leader
            && m.current_leader == Some(self.inner.node_id)
    }

    /// Stops Raft, lets the log writer finish and closes the database; later
    /// updates fail with [`StoreError::Unavailable`]. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let stopped = self.inner.raft.shutdown().await;
        self.inner.writer.stop().await;
        stopped.map_err(|e| StoreError::Storage(format!("raft task failed: {e}")))
    }

    /// Simulates kill -9: the log writer drops everything not yet durable and
    /// Raft stops without another write.
    #[cfg(test)]
    async fn crash(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.writer.halt().await;
        let _ = self.inner.raft.shutdown().await;
    }
}

/// One `update()` waiting for its batch to be applied.
struct Request {
    batch: api::Batch,
    reply: oneshot::Sender<Result<api::Change, StoreError>>,
}

/// Triggers a snapshot whenever `budget` bytes of log were written since the
/// last one; openraft purges the log behind each snapshot. Ends with Raft.
async fn snapshot_by_size(raft: Raft, written: Arc<std::sync::atomic::AtomicU64>, budget: u64) {
    let mut at_last_snapshot = written.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(LOG_SIZE_CHECK).await;
        let now = written.load(Ordering::Relaxed);
        if now.saturating_sub(at_last_snapshot) < budget {
            continue;
        }
        at_last_snapshot = now;
        if let Err(e) = raft.trigger().snapshot().await {
            // Fatal: Raft has stopped (shutdown or a storage failure).
            tracing::debug!(error = %e, "snapshot trigger refused; stopping the size check");
            return;
        }
    }
}

/// Turns waiting updates into log entries, one entry at a time: while an entry
/// is being made durable and applied, the updates that arrive queue up and all
/// go into the next entry. Ends when the store is dropped.
async fn run_proposer(raft: Raft, mut requests: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = requests.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < MAX_BATCHES_PER_ENTRY {
            match requests.try_recv() {
                Ok(r) => waiting.push(r),
                Err(_) => break,
            }
        }
        // A caller that already gave up (timed out) was told its write may or
        // may not be applied; not proposing it is the cheaper of the two.
        waiting.retain(|r| !r.reply.is_closed());
        if waiting.is_empty() {
            continue;
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            waiting.into_iter().map(|r| (r.batch, r.reply)).unzip();
        match raft.client_write(Proposal { batches }).await {
            // The state machine answers one result per batch, in order.
            Ok(resp) => {
                for (reply, result) in replies.into_iter().zip(resp.data) {
                    let _ = reply.send(result.map_err(StoreError::Apply));
                }
            }
            Err(e) => {
                let e = write_error(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn fatal(e: Fatal<NodeId>) -> StoreError {
    match e {
        Fatal::Stopped => StoreError::Unavailable("raft is stopped".into()),
        Fatal::StorageError(e) => StoreError::Storage(e.to_string()),
        Fatal::Panicked => StoreError::Storage("the raft task panicked".into()),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>) -> StoreError {
    match e {
        RaftError::Fatal(f) => fatal(f),
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => StoreError::Unavailable(
            format!("this node is not the leader (leader: {:?})", f.leader_id),
        ),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            StoreError::Unavailable(e.to_string())
        }
    }
}
