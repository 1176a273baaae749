//! The managers' Raft group: founding it, adding and removing managers, who
//! leads and who is reachable, the quorum check that makes writes fail fast,
//! and forcing a new one-manager group out of a survivor's directory.
//!
//! Raft ids: openraft names members by `u64`, berth nodes by a 25-character
//! id. A manager's Raft id is [`raft_id`] of its berth node id — a hash, so
//! that every manager computes any other's id without a table, and stable
//! across restarts because the node id is. The store records the id in its
//! directory at first open (`raft_id`) and refuses to open it under another.
//! A single node (`berth up`) keeps the id 1, which no hash yields.
//!
//! Membership changes go one at a time, on the leader: a new manager is
//! added as a learner, waited for until its log has caught up with the entry
//! that added it, then made a voter (openraft goes through a joint
//! configuration). A call on a follower is carried out by the leader
//! (`ChangeManagers` RPC).

use crate::proposer::{out_of_reach, watch_forward, Failure};
use crate::snapshot;
use crate::state_machine::apply_entries;
use crate::types::{NodeId, SnapshotMeta, StoredMembership};
use crate::{write_error, Core, Metrics, Store, StoreConfig, StoreError};
use api::rpc::raft::ChangeManagersRequest;
use api::rpc::raft::{change_managers_reply::Outcome, change_managers_request, AddManager};
use api::rpc::Connector;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{BasicNode, ChangeMembers, Membership};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The Raft id of the manager whose berth node id is `node_id`: the first
/// eight bytes of its SHA-256, big-endian, kept to 53 bits so that it is
/// exact in JSON for any client (a JavaScript number), and never 0 or 1 (1 is
/// a single node's id). Two of a cluster's few managers colliding is a
/// 2^-50 event; `add_manager` refuses an id already in use at another address.
pub fn raft_id(node_id: &str) -> u64 {
    let digest = Sha256::digest(node_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) & ((1 << 53) - 1)).max(2)
}

/// One manager of the group, as this manager sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerInfo {
    pub raft_id: u64,
    /// Its cluster RPC address.
    pub addr: String,
    /// A voter counts for the quorum; a learner is still catching up.
    pub voter: bool,
    /// The leader this manager follows.
    pub leader: bool,
    /// Whether it answered this manager within the last election timeout:
    /// every manager probes every other each heartbeat, so this is known on
    /// followers too, from their own point of view. `None` while the store
    /// has just opened (nobody was asked yet) or has no network (single node).
    pub reachable: Option<bool>,
}

/// The leader in `m` and its address, if there is one that has an address.
pub(crate) fn leader_in(m: &Metrics) -> Option<(NodeId, String)> {
    let id = m.current_leader?;
    let node = m.membership_config.membership().get_node(&id)?;
    Some((id, node.addr.clone()))
}

/// What a write that found no leader in `waited` answers.
pub(crate) fn no_leader(core: &Core, waited: Duration) -> String {
    let (reachable, voters) = core.reachable_voters();
    format!("no leader elected within {waited:?} ({reachable} of {voters} managers reachable)")
}

impl Core {
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        leader_in(&self.metrics.borrow())
    }

    /// How many voters this manager reaches (itself included), of how many.
    fn reachable_voters(&self) -> (usize, usize) {
        let m = self.metrics.borrow();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let reachable = voters
            .iter()
            .filter(|id| self.peers.reachable(**id))
            .count();
        (reachable, voters.len())
    }

    /// Whether a write can succeed soon: this manager reaches a majority of
    /// every voter configuration (two of them while the membership changes).
    /// The error names the cause. Reachability comes from the probes, so a
    /// follower of a lost quorum knows it without waiting for an election,
    /// and a leader that lost its followers knows it although openraft 0.9
    /// keeps it leader.
    pub(crate) fn quorum(&self) -> Result<(), String> {
        let m = self.metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.is_empty() {
            return Err(
                "this manager is not in a Raft group yet: it waits until the leader adds it".into(),
            );
        }
        if voters.len() == 1 && voters.contains(&self.me) {
            return Ok(());
        }
        if self.peers.too_early_to_judge() {
            return Ok(());
        }
        let majority_everywhere = membership.get_joint_config().iter().all(|config| {
            let reachable = config
                .iter()
                .filter(|id| self.peers.reachable(**id))
                .count();
            reachable * 2 > config.len()
        });
        if majority_everywhere {
            return Ok(());
        }
        let reachable = voters
            .iter()
            .filter(|id| self.peers.reachable(**id))
            .count();
        let role = if m.current_leader == Some(self.me) {
            "no quorum: this manager leads but"
        } else {
            "no leader:"
        };
        Err(format!(
            "{role} lost contact with a majority of managers ({reachable} of {} reachable)",
            voters.len()
        ))
    }
}

/// A change of the managers.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Add { id: NodeId, addr: String },
    Remove(NodeId),
}

impl Change {
    pub(crate) fn from_request(request: ChangeManagersRequest) -> Option<Change> {
        match request.change? {
            change_managers_request::Change::Add(a) => Some(Change::Add {
                id: a.raft_id,
                addr: a.addr,
            }),
            change_managers_request::Change::Remove(id) => Some(Change::Remove(id)),
        }
    }

    fn to_request(&self) -> ChangeManagersRequest {
        let change = match self {
            Change::Add { id, addr } => change_managers_request::Change::Add(AddManager {
                raft_id: *id,
                addr: addr.clone(),
            }),
            Change::Remove(id) => change_managers_request::Change::Remove(*id),
        };
        ChangeManagersRequest {
            change: Some(change),
        }
    }
}

fn change_failure(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Failure {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            Failure::NotLeader(f.leader_id)
        }
        e => Failure::Store(write_error(e)),
    }
}

impl Store {
    /// Founds the group on the first manager (`berth init`): a new directory
    /// becomes a one-voter group whose only member is this manager at
    /// `self_addr` (its cluster RPC address), and this manager leads it. On a
    /// reopened directory it leads again if it is still the only voter (and
    /// records `self_addr` if that changed); in a group of several it does
    /// nothing, the group elects its leader itself.
    pub async fn initialize(&self, self_addr: &str) -> Result<(), StoreError> {
        let core = &self.inner.core;
        let me = core.me;
        let initialized = core.raft.is_initialized().await.map_err(crate::fatal)?;
        if !initialized {
            let members = BTreeMap::from([(me, BasicNode::new(self_addr))]);
            match core.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StoreError::Storage(format!("initializing raft: {e}"))),
            }
        }
        let m = self.membership_known().await?;
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters != vec![me] {
            return Ok(());
        }
        self.lead_alone().await?;
        let known = membership.get_node(&me).map(|n| n.addr.clone());
        if known.as_deref() != Some(self_addr) {
            // Safe with one voter: nobody else could be using the old address.
            let set = ChangeMembers::SetNodes(BTreeMap::from([(me, BasicNode::new(self_addr))]));
            core.raft
                .change_membership(set, false)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// Adds the manager `raft_id` at `addr` (its cluster RPC address) to the
    /// group: as a learner, then, once it has caught up, as a voter. Returns
    /// once it votes. Run on any manager; a follower has the leader do it.
    /// Adding a manager that already votes at `addr` does nothing; an id that
    /// is a member at another address is refused. A manager that does not
    /// catch up within `catch_up_timeout` stays a learner (it does not count
    /// for the quorum) and the call fails; calling again resumes.
    pub async fn add_manager(&self, raft_id: u64, addr: &str) -> Result<(), StoreError> {
        self.change_at_leader(Change::Add {
            id: raft_id,
            addr: addr.to_string(),
        })
        .await
    }

    /// Removes the manager `raft_id` from the group (a voter or a learner).
    /// Removing one that is not a member does nothing; removing the last
    /// voter is refused. A leader that removes itself steps down once the
    /// change is committed, and the others elect a new one.
    pub async fn remove_manager(&self, raft_id: u64) -> Result<(), StoreError> {
        self.change_at_leader(Change::Remove(raft_id)).await
    }

    /// The leader this manager knows of, and its cluster RPC address. `None`
    /// during an election, and on a manager cut off from the leader once it
    /// has called an election of its own.
    pub fn leader(&self) -> Option<(u64, String)> {
        self.inner.core.leader()
    }

    /// The cluster RPC addresses of the managers, the leader first: where a
    /// node should go to join or to reach the dispatcher.
    pub fn manager_addrs(&self) -> Vec<String> {
        let mut members = self.members();
        members.sort_by_key(|m| !m.leader);
        members.into_iter().map(|m| m.addr).collect()
    }

    /// The members of the group (voters and learners), ordered by Raft id,
    /// with their reachability from this manager.
    pub fn members(&self) -> Vec<ManagerInfo> {
        let core = &self.inner.core;
        let m = core.metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let judge = core.peers.has_network() && !core.peers.too_early_to_judge();
        membership
            .nodes()
            .map(|(id, node)| ManagerInfo {
                raft_id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                leader: m.current_leader == Some(*id),
                reachable: if *id == core.me {
                    Some(true)
                } else if judge {
                    Some(core.peers.reachable(*id))
                } else {
                    None
                },
            })
            .collect()
    }

    /// Carries out `change` on the leader, wherever it is.
    async fn change_at_leader(&self, change: Change) -> Result<(), StoreError> {
        let core = self.inner.core.clone();
        let budget = core.config.catch_up_timeout + core.config.write_timeout;
        let deadline = Instant::now() + budget;
        let mut metrics = core.metrics.clone();
        let mut refused_by: Option<NodeId> = None;
        loop {
            if self.inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("the store is shut down".into()));
            }
            core.quorum().map_err(StoreError::Unavailable)?;
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(no_leader(&core, budget)));
            }
            match core.leader() {
                Some((id, _)) if id == core.me && refused_by != Some(id) => {
                    match self.change_here(change.clone()).await {
                        Ok(()) => return Ok(()),
                        Err(Failure::NotLeader(_)) => refused_by = Some(id),
                        Err(Failure::Store(e)) => return Err(e),
                    }
                }
                Some((id, _)) if refused_by != Some(id) && out_of_reach(&core, id) => {
                    // As for a write: nothing is sent to a leader this
                    // manager has not heard from; wait for the next one.
                    refused_by = Some(id);
                }
                Some((id, addr)) if refused_by != Some(id) => {
                    let sent =
                        core.peers
                            .change_managers(id, &addr, change.to_request(), deadline - now);
                    let what = "the change of managers";
                    let sent =
                        watch_forward(&core, id, &addr, what, sent)
                            .await
                            .map_err(|why| {
                                StoreError::Unavailable(format!(
                                    "{why}; the change of managers may still happen"
                                ))
                            })?;
                    match sent {
                        Ok(reply) => match reply.outcome {
                            Some(Outcome::Done(_)) => return Ok(()),
                            Some(Outcome::NotLeader(_)) => refused_by = Some(id),
                            Some(Outcome::Unavailable(why)) => {
                                return Err(StoreError::Unavailable(why))
                            }
                            None => {
                                return Err(StoreError::Unavailable(format!(
                                    "the leader (manager {id} at {addr}) sent an empty answer"
                                )))
                            }
                        },
                        Err(crate::network::ForwardFailure::NotSent(_)) => refused_by = Some(id),
                        Err(e) => {
                            return Err(StoreError::Unavailable(format!(
                                "the leader (manager {id} at {addr}) did not answer the change of managers: {e:?}; it may still happen"
                            )))
                        }
                    }
                }
                _ => {}
            }
            let wait = core
                .config
                .heartbeat_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            let changed = tokio::time::timeout(
                wait,
                metrics.wait_for(|m| leader_in(m).is_some_and(|(id, _)| Some(id) != refused_by)),
            )
            .await;
            match changed {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Err(StoreError::Unavailable("raft is stopped".into())),
                Err(_) => refused_by = None,
            }
        }
    }

    /// Carries out `change` on this manager, which must be the leader.
    pub(crate) async fn change_here(&self, change: Change) -> Result<(), Failure> {
        let core = &self.inner.core;
        let _one_at_a_time = self.inner.membership.lock().await;
        if !core.is_leader() {
            return Err(Failure::NotLeader(core.metrics.borrow().current_leader));
        }
        let membership = core.metrics.borrow().membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        match change {
            Change::Add { id, addr } => {
                if let Some(node) = membership.get_node(&id) {
                    if node.addr != addr {
                        return Err(Failure::Store(StoreError::Unavailable(format!(
                            "raft id {id} is already a member at {}; remove it before adding it at {addr}",
                            node.addr
                        ))));
                    }
                    if voters.contains(&id) {
                        return Ok(());
                    }
                }
                let added = core
                    .raft
                    .add_learner(id, BasicNode::new(&addr), false)
                    .await
                    .map_err(change_failure)?;
                let since = added.log_id.index;
                let timeout = core.config.catch_up_timeout;
                core.raft
                    .wait(Some(timeout))
                    .metrics(
                        |m| {
                            m.replication
                                .as_ref()
                                .and_then(|r| r.get(&id).copied().flatten())
                                .is_some_and(|matched| matched.index >= since)
                        },
                        "the new manager catches up",
                    )
                    .await
                    .map_err(|e| {
                        Failure::Store(StoreError::Unavailable(format!(
                            "manager {id} at {addr} did not catch up within {timeout:?} ({e}); it stays a learner"
                        )))
                    })?;
                core.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(change_failure)?;
                tracing::info!(raft_id = id, %addr, "manager added to the raft group");
                Ok(())
            }
            Change::Remove(id) => {
                let change = if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(Failure::Store(StoreError::Unavailable(format!(
                            "manager {id} is the last voter of the group; it cannot be removed"
                        ))));
                    }
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else if membership.get_node(&id).is_some() {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    return Ok(());
                };
                core.raft
                    .change_membership(change, false)
                    .await
                    .map_err(change_failure)?;
                tracing::info!(raft_id = id, "manager removed from the raft group");
                Ok(())
            }
        }
    }

    /// Reopens a surviving manager's directory as a new group whose only
    /// voter is this manager at `self_addr`, after the others were lost for
    /// good (Swarm's `--force-new-cluster`). Nothing is lost that this
    /// manager had: the state becomes the last snapshot with every entry of
    /// the local log applied on top — every entry, also those this manager
    /// had not yet learnt were committed, since nobody is left to say (as
    /// etcd and SwarmKit do). Entries that a majority had committed but this
    /// manager never received are lost with the others; that is the price
    /// of a forced recovery.
    ///
    /// Method: that state is written as a snapshot at the last local log id,
    /// with a membership of this manager alone; the log is purged up to that
    /// id; then the store opens as a member and, being the only voter, elects
    /// itself and commits a barrier entry. Log indexes (object versions)
    /// carry on from where they were. Interrupted, it can be run again. The
    /// other managers must not come back with their old directories: they
    /// join again, empty, through `add_manager`.
    pub async fn force_new_cluster(
        config: StoreConfig,
        connector: Arc<dyn Connector>,
        self_addr: &str,
    ) -> Result<Store, StoreError> {
        rewrite_as_sole_voter(&config, self_addr).await?;
        let store = Store::open_member(config, connector).await?;
        if let Err(e) = store.lead_alone().await {
            let _ = store.shutdown().await;
            return Err(e);
        }
        Ok(store)
    }
}

/// The rewrite of [`Store::force_new_cluster`], done before Raft starts.
async fn rewrite_as_sole_voter(config: &StoreConfig, self_addr: &str) -> Result<(), StoreError> {
    let dir = config.dir.clone();
    let me = config.node_id;
    let wal_options = config.wal_options();
    let (mut log, writer, mut applied) = tokio::task::spawn_blocking(move || {
        crate::claim_dir(&dir, me)?;
        snapshot::remove_leftovers(&dir)
            .map_err(|e| StoreError::Storage(format!("cleaning {}: {e}", dir.display())))?;
        let (applied, _) = crate::load_snapshot(&dir)?;
        let (log, writer) = crate::open_log(&dir, wal_options)?;
        Ok::<_, StoreError>((log, writer, applied))
    })
    .await
    .map_err(|e| StoreError::Storage(format!("opening the store: {e}")))??;

    let result = async {
        let after = applied.last_applied.map(|l| l.index + 1).unwrap_or(0);
        let entries = log
            .try_get_log_entries(after..)
            .await
            .map_err(|e| StoreError::Storage(format!("reading the raft log: {e}")))?;
        apply_entries(&mut applied, entries, false);
        let Some(last) = applied.last_applied else {
            return Err(StoreError::Storage(format!(
                "{} holds no state to recover",
                config.dir.display()
            )));
        };
        let membership = Membership::new(
            vec![BTreeSet::from([me])],
            BTreeMap::from([(me, BasicNode::new(self_addr))]),
        );
        applied.membership = StoredMembership::new(Some(last), membership);
        let meta = SnapshotMeta {
            last_log_id: Some(last),
            last_membership: applied.membership.clone(),
            snapshot_id: format!(
                "{}-{}-{}-forced",
                last.leader_id.term, last.leader_id.node_id, last.index
            ),
        };
        let bytes = snapshot::encode(&meta, &applied.state)
            .map_err(|e| StoreError::Storage(format!("encoding the new snapshot: {e}")))?;
        let dir = config.dir.clone();
        tokio::task::spawn_blocking(move || snapshot::write_atomic(&dir, &bytes))
            .await
            .map_err(|e| StoreError::Storage(format!("writing the new snapshot: {e}")))?
            .map_err(|e| StoreError::Storage(format!("writing the new snapshot: {e}")))?;
        // Only now that the snapshot holds every entry's effect may they go.
        log.purge(last)
            .await
            .map_err(|e| StoreError::Storage(format!("purging the old log: {e}")))?;
        log.save_committed(Some(last))
            .await
            .map_err(|e| StoreError::Storage(format!("recording the committed index: {e}")))?;
        tracing::warn!(
            raft_id = me,
            index = last.index,
            "forced a new one-manager raft group from the local state"
        );
        Ok(())
    }
    .await;
    // Also on failure: release the log so the directory can be reopened.
    writer.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_fit_in_53_bits() {
        // Pinned: a manager's Raft id must never change between builds.
        assert_eq!(
            raft_id("nkz7w6u3l0m1q2r3s4t5u6v7w"),
            raft_id("nkz7w6u3l0m1q2r3s4t5u6v7w")
        );
        let pinned = raft_id("n0000000000000000000000001");
        // sha256("n0000000000000000000000001")[..8], masked to 53 bits.
        assert_eq!(pinned, 0x000b_dbcb_2344_0d78, "{pinned:#x}");
        for id in ["a", "b", "manager-1", "manager-2"] {
            let r = raft_id(id);
            assert!(r > 1 && r < (1 << 53), "{id}: {r}");
        }
        assert_ne!(raft_id("manager-1"), raft_id("manager-2"));
    }
}
