//! The orchestrator: keeps each service's slots filled, as Swarm's replicated
//! and global orchestrators and its restart supervisor do together.
//!
//! A replicated service has slots 1..=replicas; a global one has a slot on every
//! node that is Ready, Active and satisfies its constraints. A slot is filled
//! when it holds a live task (desired Running, not ended). Otherwise the
//! orchestrator creates one, unless the restart policy of the slot's last task
//! says to wait or give up. It retires tasks by raising their desired state:
//! Shutdown for tasks that ended, sit on a drained or lost node, or duplicate
//! another; Remove for tasks of slots above the replica count, of nodes that
//! left, and of deleted services.
//!
//! Draining moves a replicated service's tasks a few at a time: no more of a
//! service's slots are starting at once than its update parallelism allows
//! (0: all at once), so a drain never takes a whole service down. Tasks of a
//! node that is down are replaced at once: they are lost anyway.
//!
//! Stop before start: a slot whose previous task is still stopping on a
//! healthy node is not refilled until that task has stopped. This is how a
//! stop-first rolling update gets its order without the agent's help: the
//! updater only shuts the stale task down, and this refills the slot with the
//! service's current spec once it is gone.

use crate::plan::{self, newest, Plan, SlotKey};
use crate::restart::{self, Decision};
use crate::scheduler::{constraints_match, parse_constraints};
use api::{
    Availability, Node, NodeState, Op, Service, ServiceMode, State, Task, TaskState, Timestamp,
};
use std::collections::BTreeMap;

/// Creates and retires tasks so that every service has its slots filled.
pub fn reconcile(state: &State, now: Timestamp) -> Plan {
    let mut o = Orchestrator {
        state,
        now,
        desired: BTreeMap::new(),
        drain_budget: None,
        plan: Plan::default(),
    };
    for svc in state.services() {
        match svc.spec.mode {
            ServiceMode::Replicated { replicas } => o.replicated(svc, replicas),
            ServiceMode::Global => o.global(svc),
        }
    }
    for t in state.tasks() {
        if state.service(&t.service_id).is_none() {
            o.retire(t, TaskState::Remove);
        }
    }
    o.finish()
}

struct Orchestrator<'a> {
    state: &'a State,
    now: Timestamp,
    /// New desired states, one per task, so that a task touched by two rules
    /// gets one Update op (two would conflict on the version).
    desired: BTreeMap<&'a str, (&'a Task, TaskState)>,
    /// How many more tasks of the service being filled may leave a drained
    /// node in this pass (`None`: no limit).
    drain_budget: Option<u64>,
    plan: Plan,
}

/// Why a node cannot keep a task.
fn node_unfit(state: &State, t: &Task) -> bool {
    match &t.node_id {
        Some(id) => state.node(id).is_none_or(|n| {
            n.status.state == NodeState::Down || n.spec.availability == Availability::Drain
        }),
        None => false,
    }
}

/// Whether the task's node is lost (down or gone), rather than only drained.
fn node_lost(state: &State, t: &Task) -> bool {
    match &t.node_id {
        Some(id) => state
            .node(id)
            .is_none_or(|n| n.status.state == NodeState::Down),
        None => false,
    }
}

impl<'a> Orchestrator<'a> {
    /// Raises a task's desired state (it never goes back down).
    fn retire(&mut self, t: &'a Task, to: TaskState) {
        if t.desired_state >= to {
            return;
        }
        let e = self.desired.entry(&t.meta.id).or_insert((t, to));
        e.1 = e.1.max(to);
    }

    /// Whether a task on an unfit node may be moved now: always from a lost
    /// node, from a drained one while the service's drain budget lasts.
    fn may_leave(&mut self, t: &Task) -> bool {
        if node_lost(self.state, t) {
            return true;
        }
        match &mut self.drain_budget {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    fn will_retire(&self, t: &Task) -> bool {
        self.desired.contains_key(t.meta.id.as_str())
    }

    fn finish(mut self) -> Plan {
        for (_, (t, to)) in std::mem::take(&mut self.desired) {
            self.plan.ops.push(plan::set_desired(t, to));
        }
        self.plan
    }

    fn replicated(&mut self, svc: &'a Service, replicas: u64) {
        let mut slots: BTreeMap<u64, Vec<&'a Task>> = BTreeMap::new();
        for t in self.state.tasks_by_service(&svc.meta.id) {
            slots.entry(t.slot).or_default().push(t);
        }
        // A drain moves at most `parallelism` tasks at a time: the slots still
        // starting (a live task not yet running) use up the budget. A task the
        // scheduler could place nowhere does not: waiting for it would stall
        // the drain of a cluster with no room left, where Swarm goes on.
        let parallelism = svc.spec.update_config.parallelism;
        self.drain_budget = (parallelism > 0).then(|| {
            let starting = slots
                .values()
                .filter(|tasks| {
                    tasks.iter().any(|t| {
                        t.desired_state <= TaskState::Running
                            && t.status.state < TaskState::Running
                            && t.status.err.is_none()
                    })
                })
                .count() as u64;
            parallelism.saturating_sub(starting)
        });
        for slot in 1..=replicas {
            let tasks = slots.remove(&slot).unwrap_or_default();
            self.fill(svc, SlotKey::Replica(slot), &tasks);
        }
        // What is left: slots above the replica count (a scale-down removes
        // the highest slots), or slot 0 left over from a global mode.
        for t in slots.into_values().flatten() {
            self.retire(t, TaskState::Remove);
        }
        self.drain_budget = None;
    }

    fn global(&mut self, svc: &'a Service) {
        let mut by_node: BTreeMap<&'a str, Vec<&'a Task>> = BTreeMap::new();
        for t in self.state.tasks_by_service(&svc.meta.id) {
            match (&t.node_id, t.slot) {
                (Some(n), 0) => by_node.entry(n).or_default().push(t),
                // A replica left over from a replicated mode, or a task with no node.
                _ => self.retire(t, TaskState::Remove),
            }
        }
        // A constraint that does not parse matches no node; validation keeps
        // such specs out of the store, so this is only a safe fallback.
        let constraints = parse_constraints(&svc.spec.task_template.placement.constraints);
        let wants = |n: &Node| match &constraints {
            Ok(c) => constraints_match(c, n),
            Err(_) => false,
        };
        for node in self.state.nodes() {
            let tasks = by_node.remove(node.meta.id.as_str()).unwrap_or_default();
            if plan::node_available(node) && wants(node) {
                self.fill(svc, SlotKey::Node(&node.meta.id), &tasks);
                continue;
            }
            // Down, drained or no longer matching: stop the task. Paused, or
            // not ready but not known down: keep what runs, start nothing.
            let stop = node.status.state == NodeState::Down
                || node.spec.availability == Availability::Drain
                || !wants(node);
            for t in tasks {
                if t.desired_state <= TaskState::Running && (stop || t.status.state.is_terminal()) {
                    self.retire(t, TaskState::Shutdown);
                }
            }
        }
        // Tasks of nodes that left the cluster.
        for t in by_node.into_values().flatten() {
            self.retire(t, TaskState::Remove);
        }
    }

    /// Keeps one slot filled.
    fn fill(&mut self, svc: &'a Service, key: SlotKey<'a>, tasks: &[&'a Task]) {
        let mut live: Vec<&'a Task> = Vec::new();
        let mut stopping = false;
        for &t in tasks {
            if t.desired_state > TaskState::Running {
                // A task asked to stop holds the slot until it has stopped,
                // unless it never reached a node or its node cannot run it.
                stopping |= !t.status.state.is_terminal()
                    && t.status.state >= TaskState::Assigned
                    && !node_unfit(self.state, t);
            } else if t.status.state.is_terminal() {
                // Ended: the restart policy below decides on a replacement.
                self.retire(t, TaskState::Shutdown);
            } else if node_unfit(self.state, t) && self.may_leave(t) {
                // Drained or lost node: move the task, no restart delay.
                self.retire(t, TaskState::Shutdown);
            } else {
                live.push(t);
            }
        }
        if !live.is_empty() {
            self.dedupe(live);
            return;
        }
        if stopping {
            return;
        }
        let last = newest(
            tasks
                .iter()
                .copied()
                .filter(|t| t.desired_state != TaskState::Remove),
        );
        let restarts = match last {
            None => Vec::new(),
            Some(t) if plan::ended_by_itself(t) => {
                let policy = &t.spec.restart_policy;
                match restart::decide(policy, t, self.now) {
                    Decision::Never(_) => return,
                    Decision::At(when) if when > self.now => {
                        self.plan.wake(when);
                        return;
                    }
                    Decision::At(_) => restart::record(policy, &t.restarts, self.now),
                }
            }
            Some(t) => restart::carry(&t.spec.restart_policy, &t.restarts, self.now),
        };
        let (slot, node) = match key {
            SlotKey::Replica(s) => (s, None),
            SlotKey::Node(n) => (0, Some(n)),
        };
        let task = plan::new_task(svc, slot, node, restarts, self.now);
        self.plan.ops.push(Op::Create(task.into()));
    }

    /// A slot holds one live task per spec. Two with the same spec can only come
    /// from racing writers; keep the most advanced (then newest) and stop the
    /// rest. Tasks with different specs are a start-first update in progress:
    /// the updater resolves those.
    fn dedupe(&mut self, live: Vec<&'a Task>) {
        if live.len() < 2 {
            return;
        }
        let mut groups: Vec<Vec<&'a Task>> = Vec::new();
        for t in live {
            match groups.iter_mut().find(|g| g[0].spec == t.spec) {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
        for g in groups.into_iter().filter(|g| g.len() > 1) {
            let keep = g
                .iter()
                .copied()
                .max_by(|a, b| {
                    (a.status.state, a.meta.created_at, &a.meta.id).cmp(&(
                        b.status.state,
                        b.meta.created_at,
                        &b.meta.id,
                    ))
                })
                .map(|t| t.meta.id.clone());
            for t in g {
                if Some(&t.meta.id) != keep.as_ref() && !self.will_retire(t) {
                    self.retire(t, TaskState::Shutdown);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
