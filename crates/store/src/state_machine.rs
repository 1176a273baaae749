//! The replicated state machine: [`api::State`] in memory, fed by committed
//! Raft entries, persisted through snapshots.
//!
//! Applying is deterministic and I/O-free: a normal entry goes through
//! [`api::State::apply`] with the entry's index; blank and membership entries
//! only advance the state's index. Durability comes from the log: on restart
//! the last snapshot is loaded and openraft re-applies the committed entries
//! after it. Each applied entry that changed objects is published on the watch
//! channel, in log order, after the state is updated (so a reader that views the
//! state first and then sees an event with a lower or equal index knows the
//! state already contains it).

use crate::snapshot;
use crate::types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use api::{Change, State};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, StorageIOError};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::{broadcast, watch};

/// What the state machine has applied, under one lock so that a snapshot sees
/// the state and the log id it corresponds to together.
#[derive(Clone, Default)]
pub(crate) struct Applied {
    pub(crate) state: State,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// Shared between the state machine (owned by openraft) and the store's readers.
pub(crate) struct Shared {
    applied: RwLock<Applied>,
    pub(crate) events: broadcast::Sender<Arc<Change>>,
    /// The index of the last applied entry, for a follower's `update` that
    /// waits until the leader's entry for it is applied here too.
    pub(crate) applied_index: watch::Sender<u64>,
    /// Size of the last snapshot written or installed, which sets how much
    /// log the next one waits for (see `snapshot_by_size`).
    pub(crate) snapshot_bytes: AtomicU64,
}

impl Shared {
    pub(crate) fn new(applied: Applied, capacity: usize) -> Shared {
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        Shared {
            applied: RwLock::new(applied),
            events: broadcast::channel(capacity).0,
            applied_index: watch::channel(index).0,
            snapshot_bytes: AtomicU64::new(0),
        }
    }

    fn publish_index(&self, index: Option<LogId>) {
        if let Some(l) = index {
            self.applied_index.send_if_modified(|i| {
                let newer = l.index > *i;
                *i = (*i).max(l.index);
                newer
            });
        }
    }

    // Nothing panics while holding this lock (State::apply does not panic), and
    // if it ever did the data is still a whole State: take it rather than fail
    // every later reader.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct StateMachine {
    shared: Arc<Shared>,
    dir: PathBuf,
}

impl StateMachine {
    pub(crate) fn new(shared: Arc<Shared>, dir: PathBuf) -> StateMachine {
        StateMachine { shared, dir }
    }
}

/// Applies entries to `applied` and returns one response per entry, plus the
/// changes to publish (one per entry that changed objects, holding the events
/// of all its batches). Deterministic: no clock, no randomness, no I/O.
pub(crate) fn apply_entries(
    applied: &mut Applied,
    entries: impl IntoIterator<Item = Entry>,
    publish: bool,
) -> (Vec<Response>, Vec<Arc<Change>>) {
    let mut responses = Vec::new();
    let mut published = Vec::new();
    for entry in entries {
        let index = entry.log_id.index;
        applied.last_applied = Some(entry.log_id);
        // Every entry advances the index, also one that only changes
        // membership, is blank, or whose batches were all refused.
        applied.state.advance(index);
        let response = match entry.payload {
            EntryPayload::Blank => vec![],
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m);
                vec![]
            }
            EntryPayload::Normal(proposal) => {
                let mut all_events = Vec::new();
                let response: Response = proposal
                    .batches()
                    .iter()
                    .map(|batch| {
                        applied.state.apply(index, batch).map(|events| {
                            if publish {
                                all_events.extend(events.iter().cloned());
                            }
                            Change { index, events }
                        })
                    })
                    .collect();
                if !all_events.is_empty() {
                    published.push(Arc::new(Change {
                        index,
                        events: all_events,
                    }));
                }
                response
            }
        };
        responses.push(response);
    }
    (responses, published)
}

fn snapshot_id(last: Option<LogId>) -> String {
    match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
        None => "0-0-0".into(),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Building Arc<Change>s for nobody is wasted work (e.g. while a
        // reopened store replays its log before anyone subscribed).
        let publish = self.shared.events.receiver_count() > 0;
        let (responses, published, last) = {
            let mut a = self.shared.write();
            let (responses, published) = apply_entries(&mut a, entries, publish);
            (responses, published, a.last_applied)
        };
        for change in published {
            // An error only means every receiver is gone.
            let _ = self.shared.events.send(change);
        }
        self.shared.publish_index(last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // `State` is made of persistent maps: this clone takes a few
        // reference counts, so applying barely pauses for it.
        SnapshotBuilder {
            applied: self.shared.read().clone(),
            dir: self.dir.clone(),
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let sig = Some(meta.signature());
        let (file_meta, state) = snapshot::decode(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(sig.clone(), AnyError::new(&e)))?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(StorageIOError::read_snapshot(
                sig,
                AnyError::error(format!(
                    "snapshot data is at {:?} but its metadata says {:?}",
                    file_meta.last_log_id, meta.last_log_id
                )),
            )
            .into());
        }
        let dir = self.dir.clone();
        let write_sig = sig.clone();
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || snapshot::write_atomic(&dir, &bytes))
            .await
            .map_err(|e| StorageIOError::write_snapshot(write_sig.clone(), AnyError::new(&e)))?
            .map_err(|e| StorageIOError::write_snapshot(write_sig, AnyError::new(&e)))?;
        self.shared.snapshot_bytes.store(len, Ordering::Relaxed);
        *self.shared.write() = Applied {
            state,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.shared.publish_index(meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.dir.clone();
        let bytes = tokio::task::spawn_blocking(move || snapshot::read(&dir))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        let Some(bytes) = bytes else { return Ok(None) };
        let (meta, _) = snapshot::decode(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// The share of a core a snapshot's encoding takes at most, over time (see
/// [`snapshot::encode_paced`]): a snapshot is background work, and the
/// writes waiting for every manager come first.
const SNAPSHOT_CPU_SHARE: f64 = 0.25;

/// A copy of the applied state taken when openraft asked for a snapshot, so
/// that applying continues while the snapshot is serialized and written.
pub(crate) struct SnapshotBuilder {
    applied: Applied,
    dir: PathBuf,
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
            snapshot_id: snapshot_id(self.applied.last_applied),
        };
        let applied = std::mem::take(&mut self.applied);
        let dir = self.dir.clone();
        let write_meta = meta.clone();
        // Serializing and fsyncing a large state must not stall the runtime.
        let capacity = self.shared.snapshot_bytes.load(Ordering::Relaxed) as usize;
        let capacity = capacity + capacity / 4;
        let bytes = tokio::task::spawn_blocking(move || {
            let bytes =
                snapshot::encode_paced(&write_meta, &applied.state, capacity, SNAPSHOT_CPU_SHARE)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            snapshot::write_atomic(&dir, &bytes)?;
            Ok::<_, std::io::Error>(bytes)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        tracing::info!(snapshot = %meta, bytes = bytes.len(), "store snapshot written");
        self.shared
            .snapshot_bytes
            .store(bytes.len() as u64, Ordering::Relaxed);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Proposal;
    use api::{Batch, Cluster, Op, Timestamp};
    use openraft::{CommittedLeaderId, Entry as RaftEntry, Membership};
    use std::collections::BTreeSet;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn normal(index: u64, batches: Vec<Vec<Op>>) -> Entry {
        RaftEntry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(Proposal::new(
                batches
                    .into_iter()
                    .map(|ops| Batch {
                        time: Timestamp(5),
                        ops,
                    })
                    .collect::<Vec<_>>()
                    .into(),
                0,
            )),
        }
    }

    #[test]
    fn entries_of_every_kind_advance_the_state_and_answer_in_order() {
        let mut a = Applied::default();
        let cluster = || Op::Create(Cluster::new("c").into());
        let entries = vec![
            RaftEntry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], ())),
            },
            RaftEntry {
                log_id: log_id(2),
                payload: EntryPayload::Blank,
            },
            normal(3, vec![vec![cluster()]]),
            normal(4, vec![vec![cluster()]]),
            normal(5, vec![]),
        ];
        let (responses, published) = apply_entries(&mut a, entries, true);
        assert_eq!(responses.len(), 5);
        assert!(responses[0].is_empty() && responses[1].is_empty());
        assert_eq!(responses[2][0].as_ref().map(|c| c.index), Ok(3));
        assert!(matches!(
            responses[3][0],
            Err(api::ApplyError::AlreadyExists { .. })
        ));
        assert_eq!(
            published.iter().map(|c| c.index).collect::<Vec<_>>(),
            vec![3],
            "only entries that changed objects are published"
        );
        assert_eq!(a.state.index(), 5);
        assert_eq!(a.last_applied, Some(log_id(5)));
        assert_eq!(a.membership.log_id(), &Some(log_id(1)));
    }

    #[test]
    fn batches_of_one_entry_apply_independently_in_order() {
        let mut a = Applied::default();
        let svc = |name: &str| {
            let mut s = api::Service::new(
                "s1",
                api::ServiceSpec {
                    name: name.into(),
                    labels: Default::default(),
                    mode: api::ServiceMode::Replicated { replicas: 1 },
                    task_template: api::TaskSpec::exec(["true"]),
                    update_config: Default::default(),
                    rollback_config: Default::default(),
                },
            );
            s.meta.version = 0;
            s
        };
        let entries = vec![normal(
            7,
            vec![
                vec![Op::Create(svc("web").into())],
                // Refused (the id is taken by the batch before it), and its
                // first op is rolled back with it.
                vec![
                    Op::Create(Cluster::new("c").into()),
                    Op::Create(svc("api").into()),
                ],
                // A stale update: expects the version before this entry.
                vec![Op::Update(svc("renamed").into())],
                vec![Op::Create(Cluster::new("c").into())],
            ],
        )];
        let (responses, published) = apply_entries(&mut a, entries, true);
        let r = &responses[0];
        assert_eq!(r.len(), 4);
        assert!(r[0].is_ok());
        assert!(
            matches!(r[1], Err(api::ApplyError::AlreadyExists { .. })),
            "{:?}",
            r[1]
        );
        assert!(
            matches!(
                r[2],
                Err(api::ApplyError::Conflict {
                    expected: 0,
                    actual: 7,
                    ..
                })
            ),
            "{:?}",
            r[2]
        );
        assert!(r[3].is_ok(), "a refused batch does not stop later ones");
        assert_eq!(
            a.state.service("s1").map(|s| s.spec.name.as_str()),
            Some("web")
        );
        assert!(a.state.cluster().is_some());
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].index, 7);
        assert_eq!(
            published[0].events.len(),
            2,
            "events of the accepted batches, in order"
        );
    }
}
