//! The auth worker's loop: on the leader only, the LDAP sync every
//! `sync_interval` and the removal of expired tokens every minute; on any
//! manager, the syncs the API asks for ([`WorkerHandle::sync_now`]).
//!
//! A round reads the cluster's auth settings afresh, so a changed interval
//! or directory counts from the next tick. A manager that becomes leader
//! syncs soon after ([`WorkerConfig::first_sync_after`]), since the last
//! sync's time is not in the store and a frequent change of leader must
//! not keep postponing it; a failed sync is tried again after
//! [`WorkerConfig::retry_after_failure`] (or the interval, if shorter).
//! The sync's changes are written in batches of [`WorkerConfig::batch_size`]
//! ops, so a large directory does not make one giant log entry; a batch
//! the store refuses (a concurrent change) stops the sync, and the next one
//! starts over from the state.

use crate::directory::{Directory, DirectoryError};
use crate::sync::{self, Found, SyncReport, SyncSummary};
use api::{Kind, Object, Op, State, Timestamp};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Store, StoreError};
use tokio::time::Instant;

/// The worker's timings and sizes; [`WorkerConfig::default`] is production's.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How often the loop looks at leadership and the settings.
    pub tick: Duration,
    /// How often expired tokens are deleted.
    pub token_cleanup_every: Duration,
    /// How soon after becoming leader (or LDAP being configured) the first
    /// periodic sync runs.
    pub first_sync_after: Duration,
    /// How soon a failed periodic sync is tried again.
    pub retry_after_failure: Duration,
    /// Ops per store write.
    pub batch_size: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            tick: Duration::from_secs(1),
            token_cleanup_every: Duration::from_secs(60),
            first_sync_after: Duration::from_secs(10),
            retry_after_failure: Duration::from_secs(60),
            batch_size: 500,
        }
    }
}

/// Why a sync failed. None carries a password.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SyncError {
    #[error("LDAP is not configured: set the cluster's auth.ldap settings first")]
    NotConfigured,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Part of the changes may be written: the batches before the refused
    /// one. The next sync completes them.
    #[error(
        "the store took {applied} of the sync's {total} changes, then refused the rest: {source}"
    )]
    Store {
        applied: usize,
        total: usize,
        #[source]
        source: StoreError,
    },
}

impl SyncError {
    /// Whether running the sync again may work without a change of
    /// settings (the directory or the store was unavailable, or a
    /// concurrent change got in the way).
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::NotConfigured => false,
            SyncError::Directory(e) => e.is_retryable(),
            SyncError::Store { source, .. } => {
                source.is_retryable() || matches!(source, StoreError::Apply(_))
            }
        }
    }
}

/// What started a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    Periodic,
    OnDemand,
}

/// How a sync ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SyncOutcome {
    Succeeded { summary: SyncSummary },
    Failed { error: String },
}

/// One sync that ran (dry runs are not recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub trigger: SyncTrigger,
    #[serde(flatten)]
    pub outcome: SyncOutcome,
}

/// The worker's status on this manager (it is not kept in the store: a
/// new leader starts with none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The last sync that ran here, if any.
    pub last_sync: Option<SyncRun>,
    /// The last one that succeeded, when the last failed.
    pub last_success: Option<SyncRun>,
}

struct Shared {
    store: Store,
    config: WorkerConfig,
    status: Mutex<SyncStatus>,
    /// One sync at a time on this manager, periodic or on demand.
    sync_lock: tokio::sync::Mutex<()>,
}

/// Aborts the worker's task once the last handle is gone.
struct Stopper(tokio::task::JoinHandle<()>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The API's side of a running worker. Cheap to clone; the worker stops
/// when the last clone is dropped (or at [`WorkerHandle::stop`]).
#[derive(Clone)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stopper: Arc<Stopper>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

/// The auth worker (ucp-auth-worker).
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// Starts the worker's loop on this manager with the default timings.
    /// Needs a tokio runtime.
    pub fn start(store: Store) -> WorkerHandle {
        Worker::start_with(store, WorkerConfig::default())
    }

    pub fn start_with(store: Store, config: WorkerConfig) -> WorkerHandle {
        let shared = Arc::new(Shared {
            store,
            config,
            status: Mutex::new(SyncStatus::default()),
            sync_lock: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(run(shared.clone()));
        WorkerHandle {
            shared,
            stopper: Arc::new(Stopper(task)),
        }
    }
}

impl WorkerHandle {
    /// Runs a sync now, on this manager (its writes go to the leader like
    /// any other), after any sync already running here. A dry run plans
    /// and returns the report without writing anything, and is not
    /// recorded in the status.
    pub async fn sync_now(&self, dry_run: bool) -> Result<SyncReport, SyncError> {
        run_sync(&self.shared, SyncTrigger::OnDemand, dry_run).await
    }

    /// The last sync's time, outcome and summary or error on this manager.
    pub fn status(&self) -> SyncStatus {
        lock(&self.shared.status).clone()
    }

    /// Stops the loop (a sync in progress is abandoned between two writes
    /// or mid-write; what was written stays, the next sync completes it).
    pub fn stop(&self) {
        self.stopper.0.abort();
    }
}

fn lock(m: &Mutex<SyncStatus>) -> std::sync::MutexGuard<'_, SyncStatus> {
    // A status is plain data: a panic elsewhere cannot leave it half-made.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn run(shared: Arc<Shared>) {
    let cfg = shared.config.clone();
    let mut ticker = tokio::time::interval(cfg.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reset whenever this manager (re)gains the lead.
    let mut leader_since: Option<Instant> = None;
    let mut last_cleanup: Option<Instant> = None;
    let mut last_sync: Option<(Instant, bool)> = None;
    loop {
        ticker.tick().await;
        if !shared.store.is_leader() {
            leader_since = None;
            continue;
        }
        let now = Instant::now();
        let since = *leader_since.get_or_insert_with(|| {
            last_cleanup = None;
            last_sync = None;
            now
        });

        if last_cleanup.is_none_or(|t| now >= t + cfg.token_cleanup_every) {
            last_cleanup = Some(now);
            delete_expired_tokens(&shared.store, cfg.batch_size).await;
        }

        let interval = shared.store.view(|s| {
            s.cluster()
                .and_then(|c| c.auth.ldap.as_ref())
                .map(|l| l.sync_interval)
        });
        let Some(interval) = interval.filter(|i| !i.is_zero()) else {
            // No directory, or on-demand syncs only: the first periodic one
            // counts from when that changes.
            last_sync = None;
            continue;
        };
        let due = match last_sync {
            None => since + cfg.first_sync_after,
            Some((at, true)) => at + interval,
            Some((at, false)) => at + interval.min(cfg.retry_after_failure),
        };
        if now >= due {
            let ok = run_sync(&shared, SyncTrigger::Periodic, false)
                .await
                .is_ok();
            last_sync = Some((Instant::now(), ok));
        }
    }
}

/// One sync: connect, search, read the mapped groups, plan, write.
async fn run_sync(
    shared: &Shared,
    trigger: SyncTrigger,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let _one_at_a_time = shared.sync_lock.lock().await;
    let started_at = Timestamp::now();
    let result = sync_once(shared, dry_run).await;
    match &result {
        Ok(report) => tracing::info!(
            ?trigger,
            dry_run,
            summary = ?report.summary(),
            "LDAP sync done"
        ),
        Err(e) => tracing::warn!(?trigger, dry_run, error = %e, "LDAP sync failed"),
    }
    if !dry_run {
        let outcome = match &result {
            Ok(report) => SyncOutcome::Succeeded {
                summary: report.summary(),
            },
            Err(e) => SyncOutcome::Failed {
                error: e.to_string(),
            },
        };
        let run = SyncRun {
            started_at,
            finished_at: Timestamp::now(),
            trigger,
            outcome,
        };
        let mut status = lock(&shared.status);
        if matches!(run.outcome, SyncOutcome::Succeeded { .. }) {
            status.last_success = Some(run.clone());
        }
        status.last_sync = Some(run);
    }
    result
}

async fn sync_once(shared: &Shared, dry_run: bool) -> Result<SyncReport, SyncError> {
    let store = &shared.store;
    let config = store
        .view(|s| s.cluster().and_then(|c| c.auth.ldap.clone()))
        .ok_or(SyncError::NotConfigured)?;
    let mut directory = Directory::connect(&config).await?;
    let mut found = Found {
        users: directory.search_users().await?,
        ..Found::default()
    };
    let group_dns: std::collections::BTreeSet<String> = store.view(|s| {
        s.auth_objects(Kind::Team)
            .filter_map(|o| match o {
                Object::Team(t) => t.ldap_group_dn.clone(),
                _ => None,
            })
            .collect()
    });
    for dn in group_dns {
        match directory.group_members(&dn).await {
            Ok(members) => {
                found.groups.insert(dn, members);
            }
            // A group that is not there (or not readable) leaves its
            // teams alone; a directory gone away ends the sync.
            Err(DirectoryError::Refused { reason, .. }) => {
                found.unreadable_groups.insert(dn, reason);
            }
            Err(e) => return Err(e.into()),
        }
    }
    directory.close().await;

    // A clone of the state is a few reference counts; planning outside
    // the store's lock keeps a large directory from holding up writers.
    let state: State = store.view(|s| s.clone());
    let plan = sync::plan(&state, &found, Timestamp::now(), config.jit_provisioning);
    if !dry_run {
        write_in_batches(store, plan.ops, shared.config.batch_size).await?;
    }
    Ok(plan.report)
}

async fn write_in_batches(store: &Store, ops: Vec<Op>, batch_size: usize) -> Result<(), SyncError> {
    let total = ops.len();
    let mut applied = 0;
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let batch: Vec<Op> = ops.by_ref().take(batch_size.max(1)).collect();
        let n = batch.len();
        store
            .update(batch)
            .await
            .map_err(|source| SyncError::Store {
                applied,
                total,
                source,
            })?;
        applied += n;
    }
    Ok(())
}

/// Deletes of the tokens that expired before `now` (each at its version,
/// so a token renewed meanwhile is not deleted).
pub fn expired_tokens(state: &State, now: Timestamp) -> Vec<Op> {
    state
        .auth_objects(Kind::Token)
        .filter_map(|o| match o {
            Object::Token(t) if t.expires_at.is_some_and(|at| at < now) => Some(Op::Delete {
                kind: Kind::Token,
                id: t.meta.id.clone(),
                version: Some(t.meta.version),
            }),
            _ => None,
        })
        .collect()
}

async fn delete_expired_tokens(store: &Store, batch_size: usize) {
    let ops = store.view(|s| expired_tokens(s, Timestamp::now()));
    if ops.is_empty() {
        return;
    }
    let total = ops.len();
    match write_in_batches(store, ops, batch_size).await {
        Ok(()) => tracing::debug!(count = total, "expired tokens deleted"),
        // A token renewed or removed meanwhile refuses its batch; the next
        // round (a minute on) reads the state afresh.
        Err(e) => tracing::debug!(error = %e, "expired tokens not all deleted; next round retries"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::auth::{Token, TokenPurpose, User};
    use api::{Batch, Meta};

    fn token(id: &str, expires_at: Option<u64>) -> Op {
        Op::Create(
            Token {
                meta: Meta::new(id),
                user_id: "u1".into(),
                name: id.into(),
                purpose: TokenPurpose::Session,
                secret_sha256: format!("sha-{id}"),
                expires_at: expires_at.map(Timestamp),
            }
            .into(),
        )
    }

    #[test]
    fn only_tokens_expired_before_now_are_deleted_at_their_version() {
        let mut s = State::default();
        let user = User {
            meta: Meta::new("u1"),
            name: "alice".into(),
            full_name: String::new(),
            admin: false,
            disabled: false,
            password_hash: None,
            source: Default::default(),
            locked_until: None,
        };
        s.apply(
            1,
            &Batch {
                time: Timestamp(1),
                ops: vec![
                    Op::Create(user.into()),
                    token("old", Some(100)),
                    token("edge", Some(200)),
                    token("new", Some(300)),
                    token("forever", None),
                ],
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ops = expired_tokens(&s, Timestamp(200));
        assert_eq!(
            ops,
            vec![Op::Delete {
                kind: Kind::Token,
                id: "old".into(),
                version: Some(1)
            }]
        );
        assert_eq!(expired_tokens(&s, Timestamp(1000)).len(), 3);
    }

    #[test]
    fn the_status_reads_as_an_api_would_return_it() {
        let run = SyncRun {
            started_at: Timestamp(0),
            finished_at: Timestamp(1000),
            trigger: SyncTrigger::Periodic,
            outcome: SyncOutcome::Failed {
                error: "could not reach any LDAP server (ldap://x: connection refused)".into(),
            },
        };
        let json = serde_json::to_value(&run).unwrap_or_default();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["trigger"], "periodic");
        assert!(json["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")));
        let back: SyncRun = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, run);
    }
}
