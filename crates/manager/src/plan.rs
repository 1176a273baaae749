//! What a component hands back: the store ops to submit and when to run again.
//!
//! Also the vocabulary every component shares about tasks and slots, so that the
//! orchestrator, updater and reaper agree on what "live", "ended" and "newest"
//! mean; if two of them disagreed they would undo each other's writes.

use api::{Kind, Node, NodeState, Op, Service, State, Task, TaskState, TaskStatus, Timestamp};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub ops: Vec<api::Op>,
    /// The earliest time this component must run again even if nothing changes (restart delay, update delay, monitor period).
    pub wake_at: Option<api::Timestamp>,
}

impl Plan {
    /// Asks to run again no later than `at`.
    pub fn wake(&mut self, at: Timestamp) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.wake_at.is_none()
    }
}

/// Swarm's default for `task_history_limit` when no Cluster object exists.
pub const DEFAULT_TASK_HISTORY_LIMIT: u64 = 5;

pub(crate) fn history_limit(state: &State) -> u64 {
    state
        .cluster()
        .map_or(DEFAULT_TASK_HISTORY_LIMIT, |c| c.task_history_limit)
}

/// Where a task belongs within its service: a replica number, or for a global
/// service the node it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SlotKey<'a> {
    Replica(u64),
    Node(&'a str),
}

pub(crate) fn slot_key(t: &Task) -> SlotKey<'_> {
    if t.slot > 0 {
        SlotKey::Replica(t.slot)
    } else {
        SlotKey::Node(t.node_id.as_deref().unwrap_or(""))
    }
}

/// The task is meant to run and has not ended: it occupies its slot.
pub(crate) fn is_live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running && !t.status.state.is_terminal()
}

/// The task stopped on its own (exit, crash, refusal), as opposed to being
/// stopped because we asked (`Shutdown`) or lost with its node (`Orphaned`).
/// Only such an end is subject to the restart policy. This relies on the agent
/// reporting `Shutdown` for a task it stopped because its desired state said so.
pub(crate) fn ended_by_itself(t: &Task) -> bool {
    matches!(
        t.status.state,
        TaskState::Complete | TaskState::Failed | TaskState::Rejected
    )
}

/// The task's node is gone or down, so the task cannot be observed any more.
pub(crate) fn node_lost(state: &State, t: &Task) -> bool {
    match &t.node_id {
        Some(id) => state
            .node(id)
            .is_none_or(|n| n.status.state == NodeState::Down),
        None => false,
    }
}

/// The task will not run again and nothing more will be heard of it: ended,
/// never handed to a node, or stranded on a lost node with a stop requested.
pub(crate) fn is_finished(state: &State, t: &Task) -> bool {
    t.status.state.is_terminal()
        || (t.desired_state > TaskState::Running
            && (t.status.state < TaskState::Assigned || node_lost(state, t)))
}

/// The most recently created task; ties (one batch) are broken by id so that
/// every manager picks the same one.
pub(crate) fn newest<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Option<&'a Task> {
    tasks.into_iter().max_by(|a, b| {
        (a.meta.created_at, a.meta.version, &a.meta.id).cmp(&(
            b.meta.created_at,
            b.meta.version,
            &b.meta.id,
        ))
    })
}

/// A new task of `service` for a slot, waiting for the scheduler.
pub(crate) fn new_task(
    service: &Service,
    slot: u64,
    node_id: Option<&str>,
    restarts: Vec<Timestamp>,
    now: Timestamp,
) -> Task {
    Task {
        meta: api::Meta::new(api::new_id()),
        service_id: service.meta.id.clone(),
        slot,
        node_id: node_id.map(str::to_string),
        spec: service.spec.task_template.clone(),
        spec_version: service.spec_version,
        desired_state: TaskState::Running,
        status: TaskStatus {
            state: TaskState::Pending,
            timestamp: now,
            message: "pending task scheduling".into(),
            ..TaskStatus::default()
        },
        restarts,
    }
}

/// An Update op that sets a task's desired state, carrying its stored version.
pub(crate) fn set_desired(t: &Task, desired: TaskState) -> Op {
    let mut t = t.clone();
    t.desired_state = desired;
    Op::Update(t.into())
}

pub(crate) fn delete_task(t: &Task) -> Op {
    Op::Delete {
        kind: Kind::Task,
        id: t.meta.id.clone(),
        version: Some(t.meta.version),
    }
}

/// The node accepts new tasks at all (constraints and resources aside).
pub(crate) fn node_available(n: &Node) -> bool {
    n.status.state == NodeState::Ready && n.spec.availability == api::Availability::Active
}

/// Builders of plain states for the components' unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use api::*;
    use std::time::Duration;

    pub const T0: Timestamp = Timestamp(1_700_000_000_000);

    pub fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    pub fn at(s: u64) -> Timestamp {
        T0.plus(secs(s))
    }

    /// A state plus the next log index, so tests apply batches like the store.
    pub struct World {
        pub state: State,
        pub index: u64,
    }

    impl World {
        pub fn new() -> World {
            World {
                state: State::default(),
                index: 0,
            }
        }

        pub fn apply(&mut self, time: Timestamp, ops: Vec<Op>) {
            if ops.is_empty() {
                return;
            }
            self.index += 1;
            if let Err(e) = self.state.apply(self.index, &Batch { time, ops }) {
                panic!("plan refused: {e}");
            }
        }

        pub fn create(&mut self, time: Timestamp, obj: impl Into<Object>) {
            self.apply(time, vec![Op::Create(obj.into())]);
        }

        pub fn add_node(&mut self, id: &str) {
            self.create(T0, node(id));
        }

        pub fn update_node(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
            let mut n = self.state.node(id).expect("node exists").clone();
            f(&mut n);
            self.apply(T0, vec![Op::Update(n.into())]);
        }

        pub fn update_service(&mut self, time: Timestamp, id: &str, f: impl FnOnce(&mut Service)) {
            let mut s = self.state.service(id).expect("service exists").clone();
            f(&mut s);
            self.apply(time, vec![Op::Update(s.into())]);
        }

        /// What an agent reports.
        pub fn set_status(
            &mut self,
            time: Timestamp,
            id: &str,
            state: TaskState,
            exit: Option<i32>,
        ) {
            self.apply(
                time,
                vec![Op::SetTaskStatus {
                    id: id.into(),
                    status: TaskStatus {
                        state,
                        timestamp: time,
                        exit_code: exit,
                        ..TaskStatus::default()
                    },
                }],
            );
        }

        pub fn tasks(&self, service: &str) -> Vec<Task> {
            let mut v: Vec<Task> = self.state.tasks_by_service(service).cloned().collect();
            v.sort_by_key(|t| (t.slot, t.meta.created_at, t.meta.version));
            v
        }

        /// Live tasks (desired running, not ended) of a service, by slot.
        pub fn live(&self, service: &str) -> Vec<Task> {
            self.tasks(service)
                .into_iter()
                .filter(super::is_live)
                .collect()
        }
    }

    pub type Component = fn(&State, Timestamp) -> crate::plan::Plan;

    /// Every component, in the order the runtime runs them.
    pub const ALL: [Component; 4] = [
        crate::orchestrator::reconcile,
        crate::scheduler::reconcile,
        crate::updater::reconcile,
        crate::reaper::reconcile,
    ];

    impl World {
        /// A perfect agent on every node that is not down: starts what is
        /// assigned and should run, stops what should not. Returns whether it
        /// changed anything.
        pub fn agent(&mut self, now: Timestamp) -> bool {
            let mut ops = Vec::new();
            for t in self.state.tasks() {
                let Some(node) = t.node_id.as_deref().and_then(|n| self.state.node(n)) else {
                    continue;
                };
                if node.status.state == NodeState::Down {
                    continue;
                }
                let s = t.status.state;
                let to = if t.desired_state <= TaskState::Running
                    && s >= TaskState::Assigned
                    && s < TaskState::Running
                {
                    TaskState::Running
                } else if t.desired_state > TaskState::Running
                    && s >= TaskState::Assigned
                    && !s.is_terminal()
                {
                    TaskState::Shutdown
                } else {
                    continue;
                };
                ops.push(Op::SetTaskStatus {
                    id: t.meta.id.clone(),
                    status: TaskStatus {
                        state: to,
                        timestamp: now,
                        ..TaskStatus::default()
                    },
                });
            }
            let changed = !ops.is_empty();
            self.apply(now, ops);
            changed
        }

        /// Runs the components (and the agent, if `agent`) until nothing
        /// changes; returns the earliest wake-up asked for. Panics if it does
        /// not settle.
        pub fn settle(
            &mut self,
            now: Timestamp,
            components: &[Component],
            agent: bool,
        ) -> Option<Timestamp> {
            for _ in 0..100 {
                let mut changed = false;
                let mut wake: Option<Timestamp> = None;
                for c in components {
                    let plan = c(&self.state, now);
                    if let Some(w) = plan.wake_at {
                        wake = Some(wake.map_or(w, |x| x.min(w)));
                    }
                    if !plan.ops.is_empty() {
                        changed = true;
                        self.apply(now, plan.ops);
                    }
                }
                if agent && self.agent(now) {
                    changed = true;
                }
                if !changed {
                    return wake;
                }
            }
            panic!("components did not settle");
        }

        /// Running tasks of a service that should run, by slot key.
        pub fn running(&self, service: &str) -> Vec<Task> {
            self.live(service)
                .into_iter()
                .filter(|t| t.status.state == TaskState::Running)
                .collect()
        }
    }

    pub fn node(id: &str) -> Node {
        Node {
            meta: Meta::new(id),
            spec: NodeSpec::default(),
            description: NodeDescription {
                hostname: format!("host-{id}"),
                resources: Resources {
                    nano_cpus: 4_000_000_000,
                    memory_bytes: 8 << 30,
                },
                ..NodeDescription::default()
            },
            status: NodeStatus {
                state: NodeState::Ready,
                ..NodeStatus::default()
            },
            manager_status: None,
        }
    }

    pub fn service(id: &str, mode: ServiceMode) -> Service {
        Service::new(
            id,
            ServiceSpec {
                name: format!("svc-{id}"),
                labels: Default::default(),
                mode,
                task_template: TaskSpec::exec(["sleep", "1000"]),
                update_config: Default::default(),
                rollback_config: Default::default(),
            },
        )
    }

    pub fn replicated(id: &str, replicas: u64) -> Service {
        service(id, ServiceMode::Replicated { replicas })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_keeps_the_earliest_time() {
        let mut p = Plan::default();
        assert!(p.is_empty());
        p.wake(Timestamp(20));
        p.wake(Timestamp(10));
        p.wake(Timestamp(30));
        assert_eq!(p.wake_at, Some(Timestamp(10)));
    }
}
