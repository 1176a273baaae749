//! Unit tests of the orchestrator and restart supervisor over plain states.

use super::reconcile;
use crate::plan::testutil::*;
use crate::plan::Plan;
use api::*;
use std::collections::BTreeSet;

fn only_orchestrator() -> [Component; 1] {
    [reconcile]
}

fn slots(tasks: &[Task]) -> Vec<u64> {
    tasks.iter().map(|t| t.slot).collect()
}

#[test]
fn creates_one_pending_task_per_replica_and_is_idempotent() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 5));
    let plan = reconcile(&w.state, at(1));
    assert_eq!(plan.ops.len(), 5);
    assert_eq!(plan.wake_at, None);
    w.apply(at(1), plan.ops);
    let tasks = w.tasks("s");
    assert_eq!(slots(&tasks), vec![1, 2, 3, 4, 5]);
    for t in &tasks {
        assert_eq!(t.desired_state, TaskState::Running);
        assert_eq!(t.status.state, TaskState::Pending);
        assert_eq!(t.spec_version, 1);
        assert_eq!(t.node_id, None);
    }
    assert!(reconcile(&w.state, at(2)).ops.is_empty());
}

#[test]
fn scale_down_removes_the_highest_slots_and_the_reaper_deletes_them() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 5));
    w.settle(at(1), &ALL, true);
    assert_eq!(w.running("s").len(), 5);
    w.update_service(at(2), "s", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 3 }
    });
    let plan = reconcile(&w.state, at(3));
    w.apply(at(3), plan.ops);
    let removed: Vec<u64> = w
        .tasks("s")
        .iter()
        .filter(|t| t.desired_state == TaskState::Remove)
        .map(|t| t.slot)
        .collect();
    assert_eq!(removed, vec![4, 5]);
    w.settle(at(4), &ALL, true);
    assert_eq!(
        slots(&w.tasks("s")),
        vec![1, 2, 3],
        "removed tasks are reaped once stopped"
    );
}

#[test]
fn global_service_runs_one_task_per_eligible_node() {
    let mut w = World::new();
    for n in ["n1", "n2", "n3", "n4"] {
        w.add_node(n);
    }
    w.update_node("n4", |n| n.spec.availability = Availability::Pause);
    w.create(T0, service("g", ServiceMode::Global));
    w.settle(at(1), &ALL, true);
    let nodes: BTreeSet<String> = w
        .running("g")
        .into_iter()
        .filter_map(|t| t.node_id)
        .collect();
    assert_eq!(nodes, ["n1", "n2", "n3"].map(String::from).into());
    assert!(w.tasks("g").iter().all(|t| t.slot == 0));

    // Drain n1: its task stops and is not replaced elsewhere.
    w.update_node("n1", |n| n.spec.availability = Availability::Drain);
    // n3 leaves the cluster: its task is removed.
    let n3 = w.state.node("n3").cloned();
    w.apply(
        at(2),
        vec![Op::Delete {
            kind: Kind::Node,
            id: "n3".into(),
            version: n3.map(|n| n.meta.version),
        }],
    );
    let plan = reconcile(&w.state, at(2));
    let desired: Vec<(Option<String>, TaskState)> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Update(Object::Task(t)) => Some((t.node_id.clone(), t.desired_state)),
            _ => None,
        })
        .collect();
    assert!(
        desired.contains(&(Some("n1".into()), TaskState::Shutdown)),
        "{desired:?}"
    );
    assert!(
        desired.contains(&(Some("n3".into()), TaskState::Remove)),
        "{desired:?}"
    );
    w.settle(at(2), &ALL, true);
    let nodes: Vec<String> = w
        .running("g")
        .into_iter()
        .filter_map(|t| t.node_id)
        .collect();
    assert_eq!(nodes, vec!["n2".to_string()]);

    // The paused node becomes active: it gets a task.
    w.update_node("n4", |n| n.spec.availability = Availability::Active);
    w.settle(at(3), &ALL, true);
    assert_eq!(w.running("g").len(), 2);
}

#[test]
fn global_service_respects_constraints() {
    let mut w = World::new();
    for n in ["n1", "n2", "n3"] {
        w.add_node(n);
    }
    w.update_node("n2", |n| {
        n.spec.labels.insert("zone".into(), "east".into());
    });
    let mut svc = service("g", ServiceMode::Global);
    svc.spec.task_template.placement.constraints = vec!["node.labels.zone==east".into()];
    w.create(T0, svc);
    w.settle(at(1), &ALL, true);
    let nodes: Vec<String> = w
        .running("g")
        .into_iter()
        .filter_map(|t| t.node_id)
        .collect();
    assert_eq!(nodes, vec!["n2".to_string()]);
}

#[test]
fn drain_moves_tasks_to_other_nodes() {
    let mut w = World::new();
    w.add_node("n1");
    w.add_node("n2");
    w.create(T0, replicated("s", 4));
    w.settle(at(1), &ALL, true);
    let on_n1 = w
        .running("s")
        .iter()
        .filter(|t| t.node_id.as_deref() == Some("n1"))
        .count();
    assert_eq!(on_n1, 2, "spread over both nodes");
    w.update_node("n1", |n| n.spec.availability = Availability::Drain);
    w.settle(at(2), &ALL, true);
    let running = w.running("s");
    assert_eq!(slots(&running), vec![1, 2, 3, 4]);
    assert!(running.iter().all(|t| t.node_id.as_deref() == Some("n2")));
    // The moved tasks were not restarts.
    assert!(running.iter().all(|t| t.restarts.is_empty()));
}

/// The tasks a plan shuts down on `node`.
fn shut_down_on(plan: &Plan, node: &str) -> usize {
    plan.ops
        .iter()
        .filter(|op| match op {
            Op::Update(Object::Task(t)) => {
                t.node_id.as_deref() == Some(node) && t.desired_state == TaskState::Shutdown
            }
            _ => false,
        })
        .count()
}

#[test]
fn drain_moves_no_more_tasks_at_once_than_the_update_parallelism() {
    for (parallelism, first_pass) in [(1, 1), (2, 2), (0, 3)] {
        let mut w = World::new();
        w.add_node("n1");
        w.add_node("n2");
        w.add_node("n3");
        let mut svc = replicated("s", 9);
        svc.spec.update_config.parallelism = parallelism;
        w.create(T0, svc);
        w.settle(at(1), &ALL, true);
        w.update_node("n1", |n| n.spec.availability = Availability::Drain);
        let plan = reconcile(&w.state, at(2));
        assert_eq!(
            shut_down_on(&plan, "n1"),
            first_pass,
            "parallelism {parallelism}"
        );
        // Whatever the pace, the drain ends with every task off n1.
        w.settle(at(2), &ALL, true);
        let running = w.running("s");
        assert_eq!(slots(&running), (1..=9).collect::<Vec<_>>());
        assert!(running.iter().all(|t| t.node_id.as_deref() != Some("n1")));
    }
}

#[test]
fn a_drain_with_nowhere_to_go_still_stops_every_task() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 3));
    w.settle(at(1), &ALL, true);
    w.update_node("n1", |n| n.spec.availability = Availability::Drain);
    w.settle(at(2), &ALL, true);
    assert!(w.running("s").is_empty());
    let pending = w
        .tasks("s")
        .into_iter()
        .filter(|t| t.desired_state == TaskState::Running)
        .filter(|t| t.status.state == TaskState::Pending && t.status.err.is_some())
        .count();
    assert_eq!(pending, 3, "each slot waits for a node, saying why");
}

#[test]
fn a_lost_node_has_all_its_tasks_replaced_at_once_whatever_the_parallelism() {
    let mut w = World::new();
    w.add_node("n1");
    w.add_node("n2");
    w.add_node("n3");
    w.create(T0, replicated("s", 9));
    w.settle(at(1), &ALL, true);
    w.update_node("n1", |n| n.status.state = NodeState::Down);
    let plan = reconcile(&w.state, at(2));
    assert_eq!(shut_down_on(&plan, "n1"), 3);
}

#[test]
fn paused_node_keeps_its_tasks_but_gets_no_new_ones() {
    let mut w = World::new();
    w.add_node("n1");
    w.add_node("n2");
    w.create(T0, replicated("s", 2));
    w.settle(at(1), &ALL, true);
    w.update_node("n1", |n| n.spec.availability = Availability::Pause);
    w.update_service(at(2), "s", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 4 }
    });
    w.settle(at(2), &ALL, true);
    let running = w.running("s");
    assert_eq!(running.len(), 4);
    let on_n1 = running
        .iter()
        .filter(|t| t.node_id.as_deref() == Some("n1"))
        .count();
    assert_eq!(
        on_n1, 1,
        "the task already on the paused node stays; new ones go to n2"
    );
}

#[test]
fn node_down_gets_its_tasks_replaced_elsewhere() {
    let mut w = World::new();
    w.add_node("n1");
    w.add_node("n2");
    w.create(T0, replicated("s", 4));
    w.settle(at(1), &ALL, true);
    let lost: Vec<String> = w
        .running("s")
        .into_iter()
        .filter(|t| t.node_id.as_deref() == Some("n1"))
        .map(|t| t.meta.id)
        .collect();
    w.update_node("n1", |n| n.status.state = NodeState::Down);
    w.settle(at(2), &ALL, true);
    let running = w.running("s");
    assert_eq!(slots(&running), vec![1, 2, 3, 4]);
    assert!(running.iter().all(|t| t.node_id.as_deref() == Some("n2")));
    // The lost tasks were told to stop; the agent of n1 never confirmed, and
    // the reaper keeps them as history of their slots.
    for id in lost {
        let t = w.state.task(&id).expect("kept as history");
        assert_eq!(t.desired_state, TaskState::Shutdown);
    }
}

#[test]
fn a_stopping_task_holds_its_slot_until_it_has_stopped() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 1));
    w.settle(at(1), &ALL, true);
    let old = w.running("s").remove(0);
    w.apply(
        at(2),
        vec![crate::plan::set_desired(&old, TaskState::Shutdown)],
    );
    assert!(
        reconcile(&w.state, at(3)).ops.is_empty(),
        "old task still running"
    );
    w.set_status(at(4), &old.meta.id, TaskState::Shutdown, None);
    let plan = reconcile(&w.state, at(4));
    assert_eq!(
        plan.ops.len(),
        1,
        "refilled at once: a requested stop is no restart"
    );
    assert_eq!(plan.wake_at, None);
}

/// A slot whose task ended, under each restart policy.
#[test]
fn restart_supervision_table() {
    use RestartCondition as C;
    // (condition, exit state, exit code, delay s, restarted after delay?)
    let cases = [
        (C::Any, TaskState::Complete, 0, 5, true),
        (C::Any, TaskState::Failed, 1, 5, true),
        (C::OnFailure, TaskState::Complete, 0, 5, false),
        (C::OnFailure, TaskState::Failed, 1, 5, true),
        (C::None, TaskState::Complete, 0, 5, false),
        (C::None, TaskState::Failed, 1, 0, false),
        (C::Any, TaskState::Failed, 1, 0, true),
    ];
    for (cond, end, code, delay, restarts) in cases {
        let case = format!("{cond:?} {end:?} delay {delay}");
        let mut w = World::new();
        w.add_node("n1");
        let mut svc = replicated("s", 1);
        svc.spec.task_template.restart_policy = RestartPolicy {
            condition: cond,
            delay: secs(delay),
            max_attempts: 0,
            window: secs(0),
        };
        w.create(T0, svc);
        w.settle(at(1), &ALL, true);
        let first = w.running("s").remove(0);
        w.set_status(at(10), &first.meta.id, end, Some(code));

        let plan = reconcile(&w.state, at(10));
        // The ended task is told to shut down at once.
        assert!(
            plan.ops
                .iter()
                .any(|op| matches!(op, Op::Update(Object::Task(t))
                if t.meta.id == first.meta.id && t.desired_state == TaskState::Shutdown)),
            "{case}"
        );
        let created = |p: &crate::plan::Plan| {
            p.ops
                .iter()
                .filter(|op| matches!(op, Op::Create(_)))
                .count()
        };
        if !restarts {
            assert_eq!(created(&plan), 0, "{case}");
            assert_eq!(plan.wake_at, None, "{case}");
            w.apply(at(10), plan.ops);
            assert_eq!(created(&reconcile(&w.state, at(1000))), 0, "{case}: never");
            continue;
        }
        if delay > 0 {
            assert_eq!(created(&plan), 0, "{case}: waits for the delay");
            assert_eq!(plan.wake_at, Some(at(10 + delay)), "{case}");
            w.apply(at(10), plan.ops.clone());
            let early = reconcile(&w.state, at(10 + delay - 1));
            assert_eq!(
                (created(&early), early.wake_at),
                (0, Some(at(10 + delay))),
                "{case}"
            );
        }
        let now = at(10 + delay);
        let plan = if delay > 0 {
            reconcile(&w.state, now)
        } else {
            plan
        };
        assert_eq!(created(&plan), 1, "{case}");
        w.apply(now, plan.ops);
        let new = w.live("s").remove(0);
        assert_eq!(new.slot, 1);
        assert_eq!(new.restarts, vec![now], "{case}: the restart is recorded");
    }
}

#[test]
fn max_attempts_stop_restarts_of_a_crashing_slot() {
    let mut w = World::new();
    w.add_node("n1");
    let mut svc = replicated("s", 1);
    svc.spec.task_template.restart_policy = RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay: secs(1),
        max_attempts: 2,
        window: secs(0),
    };
    w.create(T0, svc);
    let mut now = 1;
    let mut runs = 0;
    loop {
        w.settle(at(now), &ALL, true);
        let Some(t) = w.running("s").pop() else { break };
        runs += 1;
        assert!(runs <= 3, "1 run + 2 restarts at most");
        now += 1;
        w.set_status(at(now), &t.meta.id, TaskState::Failed, Some(2));
        now += 5;
    }
    assert_eq!(runs, 3);
    assert_eq!(
        reconcile(&w.state, at(now + 100)).wake_at,
        None,
        "gave up for good"
    );
}

#[test]
fn deleted_service_tasks_are_removed_then_reaped() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 3));
    w.settle(at(1), &ALL, true);
    let v = w.state.service("s").map(|s| s.meta.version);
    w.apply(
        at(2),
        vec![Op::Delete {
            kind: Kind::Service,
            id: "s".into(),
            version: v,
        }],
    );
    let plan = reconcile(&w.state, at(2));
    assert_eq!(plan.ops.len(), 3);
    w.apply(at(2), plan.ops);
    assert!(w
        .tasks("s")
        .iter()
        .all(|t| t.desired_state == TaskState::Remove));
    w.settle(at(3), &ALL, true);
    assert_eq!(w.state.task_count(), 0);
}

#[test]
fn duplicate_live_tasks_in_a_slot_are_reduced_to_one() {
    let mut w = World::new();
    w.add_node("n1");
    let svc = replicated("s", 1);
    w.create(T0, svc.clone());
    // Two writers raced and both filled slot 1.
    w.create(at(1), crate::plan::new_task(&svc, 1, None, vec![], at(1)));
    w.create(at(1), crate::plan::new_task(&svc, 1, None, vec![], at(1)));
    w.settle(at(2), &only_orchestrator(), false);
    assert_eq!(w.live("s").len(), 1);
}

/// Orchestrator, scheduler, updater and reaper with a simulated agent converge
/// to exactly `replicas` running tasks, one per slot, whatever happens first.
mod convergence {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Event {
        Scale(u64),
        NodeDown(usize),
        Drain(usize),
        Pause(usize),
        Crash(usize),
        NewSpec,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..12).prop_map(Event::Scale),
            (0usize..6).prop_map(Event::NodeDown),
            (0usize..6).prop_map(Event::Drain),
            (0usize..6).prop_map(Event::Pause),
            (0usize..20).prop_map(Event::Crash),
            Just(Event::NewSpec),
        ]
    }

    /// Settles, following wake-ups, and checks that no slot ever runs twice.
    fn converge(w: &mut World, now: &mut Timestamp) {
        for _ in 0..50 {
            let wake = w.settle(*now, &ALL, true);
            let mut slots: Vec<u64> = w.running("s").iter().map(|t| t.slot).collect();
            let n = slots.len();
            slots.dedup();
            assert_eq!(slots.len(), n, "a slot runs twice");
            match wake {
                Some(t) if t > *now => *now = t,
                Some(_) => *now = now.plus(secs(1)),
                None => return,
            }
        }
        panic!("wake-ups never end");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn converges_to_the_replica_count(
            replicas in 0u64..12,
            nodes in 1usize..6,
            events in proptest::collection::vec(event(), 0..8),
        ) {
            let mut w = World::new();
            let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
            for n in &names {
                w.add_node(n);
            }
            let mut svc = replicated("s", replicas);
            // A crash during an update would pause it (rightly); this property
            // is about convergence, so updates carry on through failures.
            svc.spec.update_config.failure_action = FailureAction::Continue;
            w.create(T0, svc);
            let mut now = at(1);
            converge(&mut w, &mut now);
            let mut want = replicas;
            for e in events {
                match e {
                    Event::Scale(r) => {
                        want = r;
                        w.update_service(now, "s", |s| s.spec.mode = ServiceMode::Replicated { replicas: r });
                    }
                    Event::NodeDown(i) => w.update_node(&names[i % nodes], |n| n.status.state = NodeState::Down),
                    Event::Drain(i) => w.update_node(&names[i % nodes], |n| n.spec.availability = Availability::Drain),
                    Event::Pause(i) => w.update_node(&names[i % nodes], |n| n.spec.availability = Availability::Pause),
                    Event::Crash(i) => {
                        let running = w.running("s");
                        if !running.is_empty() {
                            let t = &running[i % running.len()];
                            w.set_status(now, &t.meta.id, TaskState::Failed, Some(1));
                        }
                    }
                    Event::NewSpec => w.update_service(now, "s", |s| {
                        s.previous_spec = Some(s.spec.clone());
                        s.spec.task_template.args.push("x".into());
                        s.spec_version += 1;
                        s.update_status = None;
                    }),
                }
                converge(&mut w, &mut now);
            }
            // Heal every node: the service must then run exactly as asked.
            for n in &names {
                w.update_node(n, |n| {
                    n.status.state = NodeState::Ready;
                    n.spec.availability = Availability::Active;
                });
            }
            converge(&mut w, &mut now);
            let running = w.running("s");
            let slots: Vec<u64> = running.iter().map(|t| t.slot).collect();
            prop_assert_eq!(slots, (1..=want).collect::<Vec<u64>>());
            let template = w.state.service("s").map(|s| s.spec.task_template.clone());
            prop_assert!(running.iter().all(|t| Some(&t.spec) == template.as_ref()), "all tasks run the current spec");
            prop_assert!(w.live("s").len() as u64 == want, "no extra live tasks");
        }
    }
}
