//! Unit tests of rolling updates and rollbacks, driving all components and a
//! simulated agent one round at a time with a clock that advances a second per round.

use super::reconcile;
use crate::plan::testutil::*;
use api::*;

/// One pass of every component, then one agent step.
fn round(w: &mut World, now: Timestamp) {
    for c in ALL {
        let plan = c(&w.state, now);
        w.apply(now, plan.ops);
    }
    w.agent(now);
}

fn v2() -> TaskSpec {
    TaskSpec::exec(["sleep", "2000"])
}

/// A running service of `replicas` tasks, then a spec change the way the
/// controller writes it.
fn updated_service(replicas: u64, cfg: UpdateConfig, new_spec: TaskSpec) -> World {
    let mut w = World::new();
    w.add_node("n1");
    w.add_node("n2");
    let mut svc = replicated("s", replicas);
    svc.spec.update_config = cfg.clone();
    svc.spec.rollback_config = cfg;
    w.create(T0, svc);
    w.settle(at(0), &ALL, true);
    assert_eq!(w.running("s").len() as u64, replicas);
    w.update_service(at(1), "s", |s| {
        s.previous_spec = Some(s.spec.clone());
        s.spec.task_template = new_spec;
        s.spec_version += 1;
        s.update_status = None;
    });
    w
}

fn status(w: &World) -> Option<UpdateStatus> {
    w.state.service("s").and_then(|s| s.update_status.clone())
}

struct Trace {
    min_running: usize,
    max_running: usize,
    /// Times at which a task of the new spec was created.
    created: Vec<Timestamp>,
    rounds: u64,
}

/// Rounds until the update status reaches one of `until` (or 200 rounds).
fn run(w: &mut World, until: &[UpdateState], mut each: impl FnMut(&mut World, Timestamp)) -> Trace {
    let mut trace = Trace {
        min_running: usize::MAX,
        max_running: 0,
        created: vec![],
        rounds: 0,
    };
    let template = |w: &World| w.state.service("s").map(|s| s.spec.task_template.clone());
    let mut seen = std::collections::BTreeSet::new();
    for r in 2..200u64 {
        let now = at(r);
        round(w, now);
        each(w, now);
        trace.rounds = r;
        let running = w.running("s").len();
        trace.min_running = trace.min_running.min(running);
        trace.max_running = trace.max_running.max(running);
        for t in w.tasks("s") {
            if Some(&t.spec) == template(w).as_ref() && seen.insert(t.meta.id.clone()) {
                trace.created.push(t.meta.created_at);
            }
        }
        if status(w).is_some_and(|s| until.contains(&s.state)) {
            return trace;
        }
    }
    panic!("update did not reach {until:?}: {:?}", status(w));
}

fn cfg(parallelism: u64, order: UpdateOrder) -> UpdateConfig {
    UpdateConfig {
        parallelism,
        order,
        monitor: secs(3),
        ..UpdateConfig::default()
    }
}

#[test]
fn rolling_update_respects_parallelism_and_order() {
    // (parallelism, order, replicas running at least, at most)
    let cases = [
        (1, UpdateOrder::StopFirst, 3, 4),
        (2, UpdateOrder::StopFirst, 2, 4),
        (1, UpdateOrder::StartFirst, 4, 5),
        (2, UpdateOrder::StartFirst, 4, 6),
    ];
    for (p, order, min, max) in cases {
        let case = format!("parallelism {p} {order:?}");
        let mut w = updated_service(4, cfg(p, order), v2());
        let trace = run(&mut w, &[UpdateState::Completed], |_, _| {});
        assert_eq!((trace.min_running, trace.max_running), (min, max), "{case}");
        let running = w.running("s");
        assert_eq!(running.len(), 4, "{case}");
        assert!(running.iter().all(|t| t.spec == v2()), "{case}");
        let st = status(&w).expect("status");
        assert_eq!(st.message, "update completed", "{case}");
        assert!(
            st.completed_at.is_some_and(|c| c >= st.started_at),
            "{case}"
        );
        // Old tasks remain as history of their slots.
        assert!(w.tasks("s").len() > 4, "{case}");
    }
}

#[test]
fn delay_separates_batches_and_monitor_delays_completion() {
    let mut c = cfg(1, UpdateOrder::StopFirst);
    c.delay = secs(10);
    let mut w = updated_service(3, c, v2());
    let trace = run(&mut w, &[UpdateState::Completed], |_, _| {});
    assert_eq!(trace.created.len(), 3);
    for pair in trace.created.windows(2) {
        assert!(pair[0].until(pair[1]) >= secs(10), "{:?}", trace.created);
    }
    let st = status(&w).expect("status");
    let last_running = w
        .running("s")
        .iter()
        .map(|t| t.status.timestamp)
        .max()
        .expect("tasks");
    assert!(st
        .completed_at
        .is_some_and(|c| c >= last_running.plus(secs(3))));
}

#[test]
fn completion_waits_for_the_monitor_period_with_a_wake_up() {
    let mut w = updated_service(1, cfg(1, UpdateOrder::StopFirst), v2());
    w.settle(at(2), &ALL, true);
    assert_eq!(w.running("s")[0].spec, v2());
    let plan = reconcile(&w.state, at(2));
    assert!(plan.ops.is_empty());
    assert_eq!(plan.wake_at, Some(at(2).plus(secs(3))));
    let plan = reconcile(&w.state, at(5));
    assert_eq!(plan.ops.len(), 1);
}

/// Marks every running task of the new spec failed, as a crashing program would.
fn crash_new_tasks(w: &mut World, now: Timestamp) {
    let failing: Vec<String> = w
        .running("s")
        .into_iter()
        .filter(|t| t.spec == v2())
        .map(|t| t.meta.id)
        .collect();
    for id in failing {
        w.set_status(now, &id, TaskState::Failed, Some(1));
    }
}

#[test]
fn failure_pauses_the_update() {
    let mut w = updated_service(4, cfg(1, UpdateOrder::StopFirst), v2());
    run(&mut w, &[UpdateState::Paused], crash_new_tasks);
    let st = status(&w).expect("status");
    assert!(
        st.message
            .starts_with("update paused due to failure or early termination of task "),
        "{}",
        st.message
    );
    // Paused: nothing more is replaced, however long we wait.
    for r in 0..20 {
        round(&mut w, at(300 + r));
    }
    let old = w.live("s").into_iter().filter(|t| t.spec != v2()).count();
    assert_eq!(old, 3, "only the first slot was updated");
    assert_eq!(status(&w).map(|s| s.state), Some(UpdateState::Paused));
}

#[test]
fn failure_ratio_tolerates_some_failures() {
    let mut c = cfg(0, UpdateOrder::StopFirst);
    c.max_failure_ratio = 0.5;
    let mut w = updated_service(4, c, v2());
    // One slot's new task fails once; 1/4 is within the ratio.
    let mut crashed = false;
    run(
        &mut w,
        &[UpdateState::Completed, UpdateState::Paused],
        |w, now| {
            if !crashed {
                if let Some(t) = w.running("s").into_iter().find(|t| t.spec == v2()) {
                    w.set_status(now, &t.meta.id, TaskState::Failed, Some(1));
                    crashed = true;
                }
            }
        },
    );
    assert!(crashed);
    assert_eq!(status(&w).map(|s| s.state), Some(UpdateState::Completed));
}

#[test]
fn failure_rolls_back_to_the_previous_spec() {
    let mut c = cfg(1, UpdateOrder::StopFirst);
    c.failure_action = FailureAction::Rollback;
    let mut w = updated_service(3, c, v2());
    let old_spec = w
        .state
        .service("s")
        .and_then(|s| s.previous_spec.clone())
        .expect("previous");
    run(&mut w, &[UpdateState::RollbackStarted], crash_new_tasks);
    let svc = w.state.service("s").cloned().expect("service");
    assert_eq!(svc.spec, old_spec);
    assert_eq!(svc.previous_spec.map(|p| p.task_template), Some(v2()));
    assert_eq!(svc.spec_version, 3);
    // The rollback replaces the updated slot; the others already run the old spec.
    run(&mut w, &[UpdateState::RollbackCompleted], |_, _| {});
    let running = w.running("s");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|t| t.spec == old_spec.task_template));
    assert_eq!(
        status(&w).map(|s| s.message),
        Some("rollback completed".to_string())
    );
}

#[test]
fn manual_rollback_uses_the_rollback_config() {
    let mut w = updated_service(2, cfg(1, UpdateOrder::StopFirst), v2());
    run(&mut w, &[UpdateState::Completed], |_, _| {});
    // What the controller writes for `service rollback`.
    w.update_service(at(500), "s", |s| {
        let prev = s.previous_spec.take().expect("previous");
        s.previous_spec = Some(std::mem::replace(&mut s.spec, prev));
        s.spec_version += 1;
        s.spec.rollback_config.parallelism = 0;
        s.update_status = Some(UpdateStatus {
            state: UpdateState::RollbackStarted,
            started_at: at(500),
            completed_at: None,
            message: "manually requested rollback".into(),
        });
    });
    // Parallelism 0 means every slot at once: both stop in the first pass.
    let plan = reconcile(&w.state, at(501));
    let stops = plan
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Update(Object::Task(t)) if t.desired_state == TaskState::Shutdown))
        .count();
    assert_eq!(stops, 2);
}

#[test]
fn nothing_to_do_without_stale_tasks() {
    let mut w = World::new();
    w.add_node("n1");
    w.create(T0, replicated("s", 3));
    w.settle(at(1), &ALL, true);
    assert!(status(&w).is_none(), "creating a service is no update");
    w.update_service(at(2), "s", |s| {
        s.spec.mode = ServiceMode::Replicated { replicas: 5 }
    });
    w.settle(at(3), &ALL, true);
    assert!(status(&w).is_none(), "scaling is no update");
    assert!(reconcile(&w.state, at(4)).is_empty());
}

#[test]
fn global_services_update_node_by_node() {
    let mut w = World::new();
    for n in ["n1", "n2", "n3"] {
        w.add_node(n);
    }
    w.create(T0, service("s", ServiceMode::Global));
    w.settle(at(0), &ALL, true);
    w.update_service(at(1), "s", |s| {
        s.previous_spec = Some(s.spec.clone());
        s.spec.task_template = v2();
        s.spec.update_config = cfg(1, UpdateOrder::StopFirst);
        s.spec_version += 1;
    });
    let trace = run(&mut w, &[UpdateState::Completed], |_, _| {});
    assert_eq!(trace.min_running, 2);
    let running = w.running("s");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|t| t.spec == v2() && t.slot == 0));
}
