//! berth's replicated store (UCP's `ucp-kv`): the cluster [`api::State`] kept
//! by a Raft group of managers.
//!
//! - [`log_store`]: the Raft log and vote as openraft sees them, kept in
//!   memory and made durable by one group-committing writer thread.
//! - [`wal`]: the log's write-ahead log on disk: segment files of
//!   checksummed frames, one `fdatasync` per group of writes.
//! - [`migrate`]: the one-time move of the redb log of earlier builds to
//!   the WAL.
//! - [`state_machine`]: the in-memory `State`, fed by committed entries through
//!   the deterministic [`api::State::apply`], persisted by snapshots.
//! - [`snapshot`]: the versioned snapshot format and its atomic file.
//! - [`network`]: openraft's RPCs to the other managers over gRPC, and what
//!   this manager knows of their reachability.
//! - [`proposer`]: turns `update()` calls into log entries, on the leader, or
//!   forwards them to it from a follower.
//! - [`cluster`]: forming and changing the group (initialize, add and remove
//!   managers, force a new cluster), and the quorum check.
//! - [`rpc`]: the `berth.raft.Raft` gRPC service a manager serves to the others.
//!
//! Components never call each other; they coordinate through this store:
//! [`Store::view`] to read, [`Store::update`] to change, [`Store::watch`] to
//! follow changes. Updates that wait at the same time travel in one log entry
//! (a [`types::Proposal`]) so that they share one fsync; each is still applied
//! whole or not at all, on its own.
//!
//! Two ways to open a store: [`Store::open`] for a single node (`berth up`),
//! which founds a one-voter group with no network, and [`Store::open_member`]
//! for a manager of a cluster, which starts Raft with a network and founds
//! nothing: the first manager then calls [`Store::initialize`], later ones wait
//! until the leader adds them ([`Store::add_manager`]).

mod cluster;
mod log_store;
mod migrate;
mod network;
mod proposer;
pub mod rpc;
mod snapshot;
mod state_machine;
pub mod types;
mod wal;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;

pub use cluster::{raft_id, ManagerInfo};
pub use network::NetworkFailure;

use crate::log_store::{LogStore, Writer};
use crate::network::{Network, Peers};
use crate::proposer::{Failure, Request};
use crate::state_machine::{Applied, Shared, StateMachine};
use crate::types::{NodeId, Proposal, Raft};
use api::rpc::Connector;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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
/// The file that records which Raft id owns the directory.
const RAFT_ID_FILE: &str = "raft_id";

type Metrics = RaftMetrics<NodeId, openraft::BasicNode>;

#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Data directory of this store: the Raft log (`wal/`), the snapshot and
    /// the `raft_id` that owns it.
    pub dir: PathBuf,
    /// Raft id of this manager: 1 for a single node, [`raft_id`] of the berth
    /// node id for a manager of a cluster. Recorded in the directory at first
    /// open; a later open with another id is refused.
    pub node_id: u64,
    /// Build a snapshot and purge the log every this many applied entries.
    pub snapshot_every: u64,
    /// ... or as soon as the entries written since the last snapshot pass this
    /// many bytes: batching makes entries large (one can carry a thousand
    /// tasks), so a count alone would let the log, and its copy in memory, grow
    /// to gigabytes before the count is reached. Once the last snapshot is
    /// larger than this, its size is the budget instead: a state bigger than
    /// the budget is not rewritten for less log than itself.
    pub snapshot_log_bytes: u64,
    /// How often the leader sends heartbeats and managers probe each other.
    /// openraft also uses it as the timeout of one AppendEntries, so it must
    /// cover a follower's fsync of a batch.
    pub heartbeat_interval: Duration,
    /// A follower that stops hearing from its leader waits
    /// `election_timeout_max` (openraft's leader lease) plus a random time in
    /// `[election_timeout_min, election_timeout_max)` before it stands for
    /// election; a failover takes about that long. `election_timeout_max` is
    /// also how recently a manager must have answered to count as reachable.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How long `update` waits for its write to be committed and applied here.
    pub write_timeout: Duration,
    /// How long `add_manager` waits for a new manager to catch up with the
    /// log before it makes it a voter.
    pub catch_up_timeout: Duration,
    /// Size of a segment file of the Raft log: once the one being written
    /// holds this much, the next is started, and a purge deletes whole
    /// segments. Each is preallocated to this size.
    pub log_segment_bytes: u64,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            node_id: 1,
            snapshot_every: 10_000,
            snapshot_log_bytes: 16 << 20,
            // A failover is lease + election timeout + a tick of 1.5
            // heartbeats: 400 + [200, 400) + 150 ms, under a second, against
            // SwarmKit's 10-20 s. A heartbeat still has 100 ms for a
            // follower's fsync, and a follower misses six heartbeats before
            // it calls an election.
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(200),
            election_timeout_max: Duration::from_millis(400),
            write_timeout: WRITE_TIMEOUT,
            catch_up_timeout: Duration::from_secs(60),
            log_segment_bytes: wal::DEFAULT_SEGMENT_BYTES,
        }
    }

    fn wal_options(&self) -> wal::WalOptions {
        wal::WalOptions {
            segment_bytes: self.log_segment_bytes.max(1),
            ..Default::default()
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, StoreError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "berth".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            // Per snapshot chunk: a chunk travels as JSON (bytes become a
            // number array, about 3.5 times larger) and is fsynced.
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1 << 20,
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
    /// No leader, lost quorum or shutting down (503), found before the write
    /// was proposed or handed to a leader: nothing of it will be applied.
    /// The text names the cause.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write was proposed, or handed to the leader, and then its answer
    /// could not be had (lost quorum, the leader lost or replaced, timed out,
    /// shutting down) (503). It may have been applied, or may be later, once:
    /// a retry is safe only where repeating it is (ids and versions make a
    /// repeated create or update fail rather than apply twice). The text
    /// names the cause.
    #[error("store unavailable: {0}; the write may still be applied")]
    OutcomeUnknown(String),
    /// Disk or corruption: fatal for this node.
    #[error("storage error: {0}")]
    Storage(String),
}

impl StoreError {
    /// Whether the store may take the same request later: it is unavailable
    /// now (503), not refusing the request itself or failing for good. After
    /// [`StoreError::OutcomeUnknown`] the first attempt may have been applied
    /// too; see [`StoreError::outcome_unknown`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)
        )
    }

    /// Whether the write may have been applied, or may still be, although it
    /// was not acknowledged. False for every other error: an
    /// [`StoreError::Unavailable`] or [`StoreError::Apply`] write was surely
    /// not applied.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::OutcomeUnknown(_))
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
            .field("node_id", &self.inner.core.me)
            .field("index", &self.view(|s| s.index()))
            .finish()
    }
}

/// What the proposer, the RPC service and the store share. Holds no sender
/// of the proposal channel, so the proposer ends when the last `Store` goes.
pub(crate) struct Core {
    raft: Raft,
    me: NodeId,
    metrics: watch::Receiver<Metrics>,
    peers: Arc<Peers>,
    shared: Arc<Shared>,
    /// Which of this manager's proposals its log appended.
    appends: Arc<log_store::Appends>,
    config: StoreConfig,
}

struct Inner {
    core: Arc<Core>,
    /// To the proposer task, which turns waiting updates into log entries.
    proposals: mpsc::UnboundedSender<Request>,
    writer: Writer,
    closed: AtomicBool,
    /// One change of the managers at a time (openraft refuses a second one
    /// while the first is in progress; waiting is kinder).
    membership: tokio::sync::Mutex<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped without shutdown (or after it): let the log writer finish what
        // is queued and release the log and its lock, so the directory can be
        // opened again in this process.
        self.writer.stop_in_background();
        self.core.peers.close();
    }
}

impl Store {
    /// Opens (creating if new) the store of a single node; a fresh store
    /// initializes a single-voter Raft group and waits until it is leader. A
    /// reopened store has every entry committed before (including after
    /// kill -9) applied before open returns. A directory still held by
    /// another open store answers [`StoreError::Unavailable`].
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let store = Store::start_raft(config, None).await?;
        // On failure, stop Raft and the writer here rather than leave a
        // half-open store holding the log.
        if let Err(e) = store.found_single_node().await {
            let _ = store.shutdown().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Opens the store of a manager of a cluster, with `connector` to reach
    /// the others, and returns as soon as Raft runs: serve
    /// [`Store::raft_service`] next. A new directory founds nothing: call
    /// [`Store::initialize`] on the first manager; any other waits until the
    /// leader adds it with [`Store::add_manager`]. A reopened directory
    /// rejoins its group; entries it knew committed are applied, later ones
    /// come once a leader is in contact.
    pub async fn open_member(
        config: StoreConfig,
        connector: Arc<dyn Connector>,
    ) -> Result<Store, StoreError> {
        Store::start_raft(config, Some(connector)).await
    }

    async fn start_raft(
        config: StoreConfig,
        connector: Option<Arc<dyn Connector>>,
    ) -> Result<Store, StoreError> {
        let raft_config = Arc::new(config.raft_config()?);
        let dir = config.dir.clone();
        let node_id = config.node_id;
        let wal_options = config.wal_options();
        let (log_store, writer, applied, snapshot_bytes) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Storage(format!("creating {}: {e}", dir.display())))?;
            claim_dir(&dir, node_id)?;
            snapshot::remove_leftovers(&dir)
                .map_err(|e| StoreError::Storage(format!("cleaning {}: {e}", dir.display())))?;
            let (applied, snapshot_bytes) = load_snapshot(&dir)?;
            let (log_store, writer) = open_log(&dir, wal_options)?;
            Ok::<_, StoreError>((log_store, writer, applied, snapshot_bytes))
        })
        .await
        .map_err(|e| StoreError::Storage(format!("opening the store: {e}")))??;

        let log_bytes = log_store.appended_bytes();
        let appends = log_store.appends();
        let shared = Arc::new(Shared::new(applied, WATCH_CAPACITY));
        shared
            .snapshot_bytes
            .store(snapshot_bytes, Ordering::Relaxed);
        let state_machine = StateMachine::new(shared.clone(), config.dir.clone());
        let has_network = connector.is_some();
        let peers = Arc::new(Peers::new(
            config.node_id,
            connector,
            config.election_timeout_max,
        ));
        let raft = match Raft::new(
            config.node_id,
            raft_config,
            Network::new(peers.clone()),
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
        let core = Arc::new(Core {
            metrics: raft.metrics(),
            raft: raft.clone(),
            me: config.node_id,
            peers: peers.clone(),
            shared,
            appends,
            config: config.clone(),
        });
        let (proposals, requests) = mpsc::unbounded_channel();
        tokio::spawn(proposer::run(core.clone(), requests));
        tokio::spawn(snapshot_by_size(
            raft.clone(),
            log_bytes,
            core.shared.clone(),
            config.snapshot_log_bytes,
        ));
        if has_network {
            tokio::spawn(network::probe_peers(
                peers,
                raft.metrics(),
                config.heartbeat_interval,
            ));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                core,
                proposals,
                writer,
                closed: AtomicBool::new(false),
                membership: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Founds a single-voter group in a new directory, then leads it.
    async fn found_single_node(&self) -> Result<(), StoreError> {
        let raft = &self.inner.core.raft;
        if !raft.is_initialized().await.map_err(fatal)? {
            // A new directory: this node founds a single-voter group. The
            // membership entry it appends is what makes a reopen skip this.
            raft.initialize(BTreeSet::from([self.inner.core.me]))
                .await
                .map_err(|e| StoreError::Storage(format!("initializing raft: {e}")))?;
        }
        self.lead_alone().await
    }

    /// Brings this node, the group's only voter, to leadership and applies the
    /// log.
    async fn lead_alone(&self) -> Result<(), StoreError> {
        let core = &self.inner.core;
        let raft = &core.raft;
        let id = core.me;
        let m = self.membership_known().await?;
        let sole_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .collect::<Vec<_>>()
            == vec![id];
        if !sole_voter {
            return Err(StoreError::Unavailable(format!(
                "raft node {id} is not the only voter of its group ({}); open it as a member",
                m.membership_config.membership()
            )));
        }
        if m.state != ServerState::Leader {
            // The only voter need not wait an election timeout to win.
            raft.trigger().elect().await.map_err(fatal)?;
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

    /// The metrics once they show the membership of an initialized node
    /// (openraft publishes them a moment after `initialize` returns).
    async fn membership_known(&self) -> Result<Metrics, StoreError> {
        self.inner
            .core
            .raft
            .wait(Some(OPEN_TIMEOUT))
            .metrics(
                |m| {
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .next()
                        .is_some()
                },
                "the membership is known",
            )
            .await
            .map_err(|e| StoreError::Unavailable(format!("waiting for the membership: {e}")))
    }

    /// This manager's Raft id.
    pub fn raft_id(&self) -> u64 {
        self.inner.core.me
    }

    /// Reads the local state (committed and applied). Runs `f` under a read
    /// lock: keep it short; nothing in it can await.
    pub fn view<R>(&self, f: impl FnOnce(&api::State) -> R) -> R {
        f(&self.inner.core.shared.read().state)
    }

    /// Proposes `ops` as one [`api::Batch`] (stamped with this node's clock),
    /// waits until it is committed and applied locally and returns what it
    /// changed. On a follower the batch is forwarded to the leader, and the
    /// answer waits until this manager has applied the entry too, so a reader
    /// of this manager sees the write. A batch refused by
    /// [`api::State::apply`] comes back as [`StoreError::Apply`] and nothing
    /// of it is applied. Answers [`StoreError::Unavailable`] at once when this
    /// manager cannot reach a majority of the managers (nothing was
    /// proposed), and [`StoreError::OutcomeUnknown`] when a write already
    /// proposed or on its way to the leader cannot be seen through: this
    /// manager or the leader lost the majority, the leader it was sent to
    /// became unreachable or was replaced, or the write timeout (10 s)
    /// passed. Such a write may still be applied, once.
    pub async fn update(&self, ops: Vec<api::Op>) -> Result<api::Change, StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        let timeout = self.inner.core.config.write_timeout;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            batches: vec![api::Batch::new(ops)],
            count: 1,
            forwarded: false,
            deadline: tokio::time::Instant::now() + timeout,
            reply,
        };
        if self.inner.proposals.send(request).is_err() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(StoreError::OutcomeUnknown(format!(
                "no answer within {timeout:?}"
            ))),
            Ok(Err(_)) => Err(StoreError::OutcomeUnknown(
                "the store stopped before answering".into(),
            )),
            Ok(Ok(Ok((index, mut results)))) => match results.pop() {
                Some(result) => result.map_err(StoreError::Apply),
                None => Err(StoreError::OutcomeUnknown(format!(
                    "the entry at index {index} carried no answer for the write"
                ))),
            },
            Ok(Ok(Err(Failure::Store(e)))) => Err(e),
            Ok(Ok(Err(Failure::NotLeader(_)))) => Err(StoreError::Unavailable(
                "this manager is not the leader".into(),
            )),
        }
    }

    /// Every applied entry that changed objects, in log order. Subscribe first,
    /// then [`view`](Store::view): changes with an index at or below the viewed
    /// state's index are already in it. A receiver that falls more than 256
    /// changes behind gets `RecvError::Lagged` and must re-read the whole state.
    pub fn watch(&self) -> broadcast::Receiver<Arc<api::Change>> {
        self.inner.core.shared.events.subscribe()
    }

    /// True while this node is the Raft leader.
    pub fn is_leader(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst) && self.inner.core.is_leader()
    }

    /// Stops Raft, lets the log writer finish and closes the log; later
    /// updates fail with [`StoreError::Unavailable`]. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.inner.core.peers.close();
        let stopped = self.inner.core.raft.shutdown().await;
        self.inner.writer.stop().await;
        stopped.map_err(|e| StoreError::Storage(format!("raft task failed: {e}")))
    }

    /// Simulates kill -9: the log writer drops everything not yet durable and
    /// Raft stops without another write.
    #[cfg(test)]
    async fn crash(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.core.peers.close();
        self.inner.writer.halt().await;
        let _ = self.inner.core.raft.shutdown().await;
    }
}

impl Core {
    fn is_leader(&self) -> bool {
        let m = self.metrics.borrow();
        m.running_state.is_ok()
            && m.state == ServerState::Leader
            && m.current_leader == Some(self.me)
    }
}

/// Records `id` as the owner of `dir`, or checks that it is. A directory
/// opened under two Raft ids would let one log vote as two members.
fn claim_dir(dir: &Path, id: NodeId) -> Result<(), StoreError> {
    let path = dir.join(RAFT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<NodeId>() {
            Ok(owner) if owner == id => Ok(()),
            Ok(owner) => Err(StoreError::Storage(format!(
                "{} belongs to raft node {owner}, not {id}",
                dir.display()
            ))),
            Err(e) => Err(StoreError::Storage(format!("{}: {e}", path.display()))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A directory from before the file existed was always node 1's.
            let had_log =
                dir.join(migrate::REDB_FILE).exists() || dir.join(log_store::WAL_DIR).exists();
            if had_log && id != 1 {
                return Err(StoreError::Storage(format!(
                    "{} belongs to raft node 1, not {id}",
                    dir.display()
                )));
            }
            std::fs::write(&path, format!("{id}\n"))
                .map_err(|e| StoreError::Storage(format!("writing {}: {e}", path.display())))
        }
        Err(e) => Err(StoreError::Storage(format!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

/// The state as of the snapshot in `dir`, or empty, and the snapshot's size.
fn load_snapshot(dir: &Path) -> Result<(Applied, u64), StoreError> {
    match snapshot::read(dir) {
        Ok(None) => Ok((Applied::default(), 0)),
        Ok(Some(bytes)) => {
            let (meta, state) = snapshot::decode(&bytes)
                .map_err(|e| StoreError::Storage(format!("snapshot in {}: {e}", dir.display())))?;
            let applied = Applied {
                state,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            };
            Ok((applied, bytes.len() as u64))
        }
        Err(e) => Err(StoreError::Storage(format!(
            "reading the snapshot in {}: {e}",
            dir.display()
        ))),
    }
}

fn open_log(dir: &Path, options: wal::WalOptions) -> Result<(LogStore, Writer), StoreError> {
    LogStore::open(dir, options).map_err(|e| match e {
        e @ log_store::OpenError::InUse(_) => StoreError::Unavailable(e.to_string()),
        e => StoreError::Storage(e.to_string()),
    })
}

/// Triggers a snapshot whenever `budget` bytes of log, or as many as the
/// last snapshot had if that is more, were written since the last one;
/// openraft purges the log behind each snapshot. Ends with Raft.
///
/// A snapshot rewrites the whole state, so one taken for less log than the
/// state's own size would write more than the log it saves: with the
/// budget scaled to the last snapshot, each byte of log costs at most about
/// one byte of snapshot, however large the state grows, and the log kept
/// (on disk and in memory) stays within the state's size or `budget`.
async fn snapshot_by_size(
    raft: Raft,
    written: Arc<std::sync::atomic::AtomicU64>,
    shared: Arc<Shared>,
    budget: u64,
) {
    let mut at_last_snapshot = written.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(LOG_SIZE_CHECK).await;
        let now = written.load(Ordering::Relaxed);
        let due = budget.max(shared.snapshot_bytes.load(Ordering::Relaxed));
        if now.saturating_sub(at_last_snapshot) < due {
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
