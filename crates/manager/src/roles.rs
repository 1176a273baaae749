//! The role manager (SwarmKit's `roleManager`): on the leader, it takes out
//! of the Raft group every manager whose node was demoted or removed, as long
//! as the group keeps its quorum without it. Promotion needs no help here: a
//! promoted node renews its certificate as a manager and asks to be added.
//!
//! The decision is [`removals`], a pure function of the group and the nodes;
//! [`run`] applies it whenever the store changes (and every second, since
//! reachability changes without a store change).

use api::{NodeRole, State};
use std::collections::BTreeSet;
use std::time::Duration;
use store::{ManagerInfo, Store};

/// How often the role manager looks again without a store change.
const RECHECK: Duration = Duration::from_secs(1);

/// What to do about one member of the group that should not be in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Remove it now.
    Remove { raft_id: u64, addr: String },
    /// Leave it for now: without it the reachable managers would not be a
    /// majority of the group that remains.
    WouldLoseQuorum { raft_id: u64, addr: String },
}

/// Members of the Raft group whose node is no longer a manager (demoted, or
/// removed from the store), in Raft id order. `raft_id` maps a node id to its
/// member id (`store::raft_id`). Removals are judged one at a time, each as
/// if the ones before it were done, and the last voter is never removed.
pub fn removals(
    members: &[ManagerInfo],
    state: &State,
    raft_id: impl Fn(&str) -> u64,
) -> Vec<Removal> {
    let managers: BTreeSet<u64> = state
        .nodes()
        .filter(|n| n.spec.role == NodeRole::Manager)
        .map(|n| raft_id(&n.meta.id))
        .collect();
    let mut voters: Vec<&ManagerInfo> = members.iter().filter(|m| m.voter).collect();
    let mut out = Vec::new();
    for m in members {
        if managers.contains(&m.raft_id) {
            continue;
        }
        if !m.voter {
            // A learner does not count for the quorum: removing it is safe.
            out.push(Removal::Remove {
                raft_id: m.raft_id,
                addr: m.addr.clone(),
            });
            continue;
        }
        let remaining: Vec<&ManagerInfo> = voters
            .iter()
            .copied()
            .filter(|v| v.raft_id != m.raft_id)
            .collect();
        // Unknown reachability (just started) counts as reachable: the store
        // refuses the change itself if it cannot commit it.
        let reachable = remaining
            .iter()
            .filter(|v| v.reachable != Some(false))
            .count();
        if remaining.is_empty() || reachable * 2 <= remaining.len() {
            out.push(Removal::WouldLoseQuorum {
                raft_id: m.raft_id,
                addr: m.addr.clone(),
            });
        } else {
            voters = remaining;
            out.push(Removal::Remove {
                raft_id: m.raft_id,
                addr: m.addr.clone(),
            });
        }
    }
    out
}

/// Runs the role manager until the store closes. Only the leader acts.
pub async fn run(store: Store) {
    let mut changes = store.watch();
    let mut warned: BTreeSet<u64> = BTreeSet::new();
    loop {
        if store.is_leader() {
            let members = store.members();
            let todo = store.view(|s| removals(&members, s, store::raft_id));
            for r in todo {
                match r {
                    Removal::Remove { raft_id, addr } => {
                        tracing::info!(manager = %addr, "removing a demoted manager from the Raft group");
                        if let Err(e) = store.remove_manager(raft_id).await {
                            tracing::warn!(manager = %addr, error = %e, "could not remove a demoted manager from the Raft group; retrying");
                        }
                        warned.remove(&raft_id);
                    }
                    Removal::WouldLoseQuorum { raft_id, addr } => {
                        if warned.insert(raft_id) {
                            tracing::warn!(manager = %addr, "a demoted manager stays in the Raft group for now: without it the reachable managers are no majority");
                        }
                    }
                }
            }
        }
        match tokio::time::timeout(RECHECK, changes.recv()).await {
            Err(_) | Ok(Ok(_)) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Meta, Node, NodeSpec, Op};

    fn member(raft_id: u64, voter: bool, reachable: Option<bool>) -> ManagerInfo {
        ManagerInfo {
            raft_id,
            addr: format!("m{raft_id}:7377"),
            voter,
            leader: raft_id == 1,
            reachable,
        }
    }

    /// A state whose nodes "1", "2", … have the given roles; node "k" has
    /// Raft id k.
    fn state(roles: &[NodeRole]) -> State {
        let mut s = State::default();
        let ops = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                Op::Create(
                    Node {
                        meta: Meta::new((i + 1).to_string()),
                        spec: NodeSpec {
                            role: *role,
                            ..NodeSpec::default()
                        },
                        description: Default::default(),
                        status: Default::default(),
                        manager_status: None,
                    }
                    .into(),
                )
            })
            .collect();
        s.apply(1, &api::Batch::new(ops)).expect("nodes");
        s
    }

    fn id(node: &str) -> u64 {
        node.parse().expect("numeric node id")
    }

    use NodeRole::{Manager as M, Worker as W};

    /// What a case is about, the group, the nodes' roles, the removals wanted.
    type Case = (&'static str, Vec<ManagerInfo>, Vec<NodeRole>, Vec<Removal>);

    #[test]
    fn decides_removals_from_roles_reachability_and_quorum() {
        let up = Some(true);
        let down = Some(false);
        let cases: Vec<Case> = vec![
            (
                "all managers: nothing to do",
                vec![
                    member(1, true, up),
                    member(2, true, up),
                    member(3, true, up),
                ],
                vec![M, M, M],
                vec![],
            ),
            (
                "a demoted, reachable voter of three goes",
                vec![
                    member(1, true, up),
                    member(2, true, up),
                    member(3, true, up),
                ],
                vec![M, M, W],
                vec![Removal::Remove {
                    raft_id: 3,
                    addr: "m3:7377".into(),
                }],
            ),
            (
                "a demoted, dead voter goes when the rest are a majority",
                vec![
                    member(1, true, up),
                    member(2, true, up),
                    member(3, true, down),
                ],
                vec![M, M, W],
                vec![Removal::Remove {
                    raft_id: 3,
                    addr: "m3:7377".into(),
                }],
            ),
            (
                "a demoted voter stays when the rest would have no majority",
                vec![
                    member(1, true, up),
                    member(2, true, down),
                    member(3, true, up),
                ],
                vec![M, M, W],
                vec![Removal::WouldLoseQuorum {
                    raft_id: 3,
                    addr: "m3:7377".into(),
                }],
            ),
            (
                "a node gone from the store goes too; a learner always",
                vec![
                    member(1, true, up),
                    member(2, true, up),
                    member(4, false, down),
                ],
                vec![M, M],
                vec![Removal::Remove {
                    raft_id: 4,
                    addr: "m4:7377".into(),
                }],
            ),
            (
                "the last voter is never removed",
                vec![member(1, true, up)],
                vec![W],
                vec![Removal::WouldLoseQuorum {
                    raft_id: 1,
                    addr: "m1:7377".into(),
                }],
            ),
            (
                "two demotions of five: each judged after the one before",
                vec![
                    member(1, true, up),
                    member(2, true, up),
                    member(3, true, down),
                    member(4, true, up),
                    member(5, true, up),
                ],
                vec![M, M, M, W, W],
                vec![
                    Removal::Remove {
                        raft_id: 4,
                        addr: "m4:7377".into(),
                    },
                    // 1, 2, 3 remain with 3 down: 2 of 3 reachable, still a
                    // majority, so 5 goes too.
                    Removal::Remove {
                        raft_id: 5,
                        addr: "m5:7377".into(),
                    },
                ],
            ),
        ];
        for (what, members, roles, want) in cases {
            assert_eq!(removals(&members, &state(&roles), id), want, "{what}");
        }
    }
}
