//! The task reaper: deletes tasks nobody needs any more, as Swarm's does.
//!
//! - A task whose desired state is Remove (scaled away, service deleted, node
//!   gone) is deleted once it is finished: ended, never handed to a node, or
//!   stranded on a node that is down or gone.
//! - Per slot (per node for a global service), at most `task_history_limit`
//!   finished tasks are kept for `service ps`; older ones are deleted.
//!
//! The newest task of a slot that has no live task is always kept, whatever the
//! limit: the restart supervisor reads the slot's restart history and the end
//! time of its last task from it.

use crate::plan::{self, history_limit, is_finished, Plan, SlotKey};
use api::{State, Task, TaskState, Timestamp};
use std::collections::HashMap;

/// Deletes removed and surplus finished tasks.
pub fn reconcile(state: &State, _now: Timestamp) -> Plan {
    let limit = history_limit(state) as usize;
    let mut plan = Plan::default();
    let mut slots: HashMap<(&str, SlotKey<'_>), Vec<&Task>> = HashMap::new();
    for t in state.tasks() {
        if t.desired_state == TaskState::Remove {
            if is_finished(state, t) {
                plan.ops.push(plan::delete_task(t));
            }
            continue;
        }
        slots
            .entry((t.service_id.as_str(), plan::slot_key(t)))
            .or_default()
            .push(t);
    }
    let mut slots: Vec<_> = slots.into_iter().collect();
    // Deterministic op order, whatever the hash order.
    slots.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, tasks) in slots {
        let occupied = tasks.iter().any(|t| t.desired_state <= TaskState::Running);
        let mut history: Vec<&Task> = tasks
            .into_iter()
            .filter(|t| t.desired_state > TaskState::Running && is_finished(state, t))
            .collect();
        let keep = if occupied { limit } else { limit.max(1) };
        if history.len() <= keep {
            continue;
        }
        history.sort_by(|a, b| {
            (b.meta.created_at, b.meta.version, &b.meta.id).cmp(&(
                a.meta.created_at,
                a.meta.version,
                &a.meta.id,
            ))
        });
        for t in &history[keep..] {
            plan.ops.push(plan::delete_task(t));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::*;
    use api::*;

    /// A slot with `n` tasks that were each shut down after the previous.
    fn slot_history(w: &mut World, svc: &Service, slot: u64, n: u64) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let mut t = crate::plan::new_task(svc, slot, Some("n1"), vec![], at(i));
            t.desired_state = TaskState::Shutdown;
            t.status.state = TaskState::Shutdown;
            ids.push(t.meta.id.clone());
            w.create(at(i), t);
        }
        ids
    }

    #[test]
    fn keeps_the_history_limit_per_slot() {
        let mut w = World::new();
        w.add_node("n1");
        let svc = replicated("s", 2);
        w.create(T0, svc.clone());
        let slot1 = slot_history(&mut w, &svc, 1, 8);
        let slot2 = slot_history(&mut w, &svc, 2, 3);
        // A live task in slot 1 does not count as history.
        w.create(at(20), crate::plan::new_task(&svc, 1, None, vec![], at(20)));
        let plan = reconcile(&w.state, at(30));
        w.apply(at(30), plan.ops);
        let left: Vec<String> = w.tasks("s").into_iter().map(|t| t.meta.id).collect();
        for id in &slot1[..3] {
            assert!(!left.contains(id), "oldest history of slot 1 is deleted");
        }
        for id in slot1[3..].iter().chain(&slot2) {
            assert!(left.contains(id), "the newest 5 per slot are kept");
        }
        assert_eq!(left.len(), 5 + 3 + 1);
        assert!(reconcile(&w.state, at(31)).ops.is_empty(), "stable");
    }

    #[test]
    fn cluster_limit_applies_and_the_last_task_of_an_empty_slot_stays() {
        let mut w = World::new();
        w.add_node("n1");
        let mut cluster = Cluster::new("c");
        cluster.task_history_limit = 0;
        w.create(T0, cluster);
        let svc = replicated("s", 1);
        w.create(T0, svc.clone());
        let ids = slot_history(&mut w, &svc, 1, 3);
        let plan = reconcile(&w.state, at(30));
        w.apply(at(30), plan.ops);
        let left: Vec<String> = w.tasks("s").into_iter().map(|t| t.meta.id).collect();
        assert_eq!(left, vec![ids[2].clone()]);
    }

    #[test]
    fn removed_tasks_go_once_finished() {
        let mut w = World::new();
        w.add_node("n1");
        let svc = replicated("s", 1);
        let mk = |state: TaskState, node: Option<&str>| {
            let mut t = crate::plan::new_task(&svc, 1, node, vec![], T0);
            t.desired_state = TaskState::Remove;
            t.status.state = state;
            t
        };
        let cases = [
            (mk(TaskState::Running, Some("n1")), false),
            (mk(TaskState::Shutdown, Some("n1")), true),
            (mk(TaskState::Pending, None), true),
            (mk(TaskState::Running, Some("gone")), true),
        ];
        for (t, _) in &cases {
            w.create(T0, t.clone());
        }
        let plan = reconcile(&w.state, at(1));
        let deleted: Vec<&str> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Delete { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        for (t, gone) in &cases {
            assert_eq!(
                deleted.contains(&t.meta.id.as_str()),
                *gone,
                "{:?}",
                t.status.state
            );
        }
    }
}
