//! A service's life on one node, end to end through the control loop: create,
//! scale, rolling update, restart of a failed task, delete.

use crate::support::{sleep_service, status, tasks_of, FakeAgent, Harness, TIMEOUT};
use api::dispatch::{Dispatcher, TaskStatusUpdate};
use api::{Event, Object, Op, ServiceMode, TaskState, UpdateState};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

const HEARTBEAT: Duration = Duration::from_secs(5);

fn running(state: &api::State, service_id: &str) -> usize {
    tasks_of(state, service_id)
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .count()
}

async fn wait_running(h: &Harness, id: &str, n: usize) {
    h.wait_for(&format!("{n} running tasks"), |s| {
        let tasks = tasks_of(s, id);
        (tasks.len() == n
            && tasks.iter().all(|t| {
                t.status.state == TaskState::Running && t.desired_state == TaskState::Running
            }))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_service_runs_and_scales_down() {
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let id = h.create_service(sleep_service("web", 5)).await;
    wait_running(&h, &id, 5).await;
    h.store.view(|s| {
        let tasks = tasks_of(s, &id);
        let slots: HashSet<u64> = tasks.iter().map(|t| t.slot).collect();
        assert_eq!(slots, (1..=5).collect(), "one task per slot");
        assert!(tasks
            .iter()
            .all(|t| t.node_id.as_deref() == Some(agent.node_id.as_str())));
    });

    let mut changes = h.store.watch();
    h.modify_service(&id, |svc| {
        svc.spec.mode = ServiceMode::Replicated { replicas: 2 }
    })
    .await;
    wait_running(&h, &id, 2).await;

    // The three retired tasks were told to go away (desired Remove) and then
    // deleted once the agent reported them shut down.
    let mut removed = HashSet::new();
    let mut deleted = HashSet::new();
    while let Ok(change) = changes.try_recv() {
        for event in &change.events {
            match event {
                Event::Updated {
                    new: Object::Task(t),
                    ..
                } if t.service_id == id && t.desired_state == TaskState::Remove => {
                    removed.insert(t.meta.id.clone());
                }
                Event::Deleted(Object::Task(t)) if t.service_id == id => {
                    assert!(
                        t.status.state.is_terminal(),
                        "task {} deleted while {}",
                        t.meta.id,
                        t.status.state
                    );
                    deleted.insert(t.meta.id.clone());
                }
                _ => {}
            }
        }
    }
    assert_eq!(removed.len(), 3, "three tasks retired: {removed:?}");
    h.wait_for("the retired tasks to be reaped", |s| {
        removed.iter().all(|t| s.task(t).is_none()).then_some(())
    })
    .await;

    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_one_task_at_a_time() {
    const REPLICAS: usize = 3;
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let id = h
        .create_service(sleep_service("api", REPLICAS as u64))
        .await;
    wait_running(&h, &id, REPLICAS).await;

    // Replay every change on a copy of the service's tasks, so that no
    // intermediate state is missed however fast the update goes.
    let mut changes = h.store.watch();
    let (mut tasks, mut index) = h.store.view(|s| {
        let tasks: HashMap<String, api::Task> = tasks_of(s, &id)
            .into_iter()
            .map(|t| (t.meta.id.clone(), t.clone()))
            .collect();
        (tasks, s.index())
    });
    h.modify_service(&id, |svc| {
        svc.previous_spec = Some(svc.spec.clone());
        svc.spec.task_template.args = vec!["2000".into()];
        svc.spec_version += 1;
        svc.update_status = None;
    })
    .await;

    let deadline = Instant::now() + TIMEOUT;
    let mut fewest_running = REPLICAS;
    let mut replay = |change: &api::Change| {
        if change.index <= index {
            return;
        }
        index = change.index;
        for event in &change.events {
            match event {
                Event::Created(Object::Task(t))
                | Event::Updated {
                    new: Object::Task(t),
                    ..
                } if t.service_id == id => {
                    tasks.insert(t.meta.id.clone(), t.clone());
                }
                Event::Deleted(Object::Task(t)) => {
                    tasks.remove(&t.meta.id);
                }
                _ => {}
            }
        }
        let now_running = tasks
            .values()
            .filter(|t| t.status.state == TaskState::Running)
            .count();
        fewest_running = fewest_running.min(now_running);
        assert!(
            now_running + 1 >= REPLICAS,
            "only {now_running} of {REPLICAS} tasks running at index {index}: one at a time means at least {}",
            REPLICAS - 1
        );
    };
    loop {
        let change = tokio::time::timeout_at(deadline, changes.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the update did not complete in {TIMEOUT:?}; tasks:\n{}",
                    h.store.view(crate::support::describe_tasks)
                )
            })
            .expect("the watch kept up with the update");
        replay(&change);
        let done = h.store.view(|s| {
            let svc = s.service(&id).expect("service");
            let current = tasks_of(s, &id)
                .iter()
                .filter(|t| {
                    t.status.state == TaskState::Running && t.spec_version == svc.spec_version
                })
                .count();
            current == REPLICAS
                && running(s, &id) == REPLICAS
                && svc
                    .update_status
                    .as_ref()
                    .is_some_and(|u| u.state == UpdateState::Completed)
        });
        if done {
            // Replay what was applied before the state was read as well.
            while let Ok(change) = changes.try_recv() {
                replay(&change);
            }
            break;
        }
    }
    assert_eq!(
        fewest_running,
        REPLICAS - 1,
        "stop-first takes a task down before its replacement runs"
    );
    h.store.view(|s| {
        let svc = s.service(&id).expect("service");
        for t in tasks_of(s, &id)
            .iter()
            .filter(|t| t.status.state == TaskState::Running)
        {
            assert_eq!(
                t.spec.args,
                vec!["2000".to_string()],
                "task {} runs the new spec",
                t.meta.id
            );
            assert_eq!(t.spec_version, svc.spec_version);
        }
    });

    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_is_replaced_after_its_restart_delay() {
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let id = h.create_service(sleep_service("worker", 2)).await;
    wait_running(&h, &id, 2).await;
    let victim = h.store.view(|s| tasks_of(s, &id)[0].clone());

    // What the agent reports when the process exits with an error.
    let mut failed = status(TaskState::Failed);
    failed.exit_code = Some(1);
    failed.err = Some("exit status 1".into());
    h.dispatcher
        .update_task_status(
            &agent.session(),
            vec![TaskStatusUpdate {
                task_id: victim.meta.id.clone(),
                status: failed,
            }],
        )
        .await
        .expect("report failure");

    let replacement = h
        .wait_for("a replacement task running in the failed slot", |s| {
            tasks_of(s, &id)
                .into_iter()
                .find(|t| {
                    t.slot == victim.slot
                        && t.meta.id != victim.meta.id
                        && t.status.state == TaskState::Running
                })
                .cloned()
        })
        .await;
    assert_eq!(replacement.node_id.as_deref(), Some(agent.node_id.as_str()));
    assert!(
        !replacement.restarts.is_empty(),
        "the restart is recorded in the slot's history"
    );
    h.store.view(|s| {
        assert_eq!(running(s, &id), 2);
        if let Some(old) = s.task(&victim.meta.id) {
            assert_eq!(
                old.status.state,
                TaskState::Failed,
                "the failed task stays failed"
            );
        }
    });

    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_service_leaves_no_tasks() {
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let id = h.create_service(sleep_service("gone", 3)).await;
    wait_running(&h, &id, 3).await;
    h.store
        .update(vec![Op::Delete {
            kind: api::Kind::Service,
            id: id.clone(),
            version: None,
        }])
        .await
        .expect("delete service");
    h.wait_for("the service's tasks to be gone", |s| {
        (s.tasks_by_service(&id).count() == 0).then_some(())
    })
    .await;

    agent.stop().await;
    h.stop().await;
}

/// The end-to-end goal of the single node: 500 replicas running well within
/// seconds, with bursts of status reports coalesced into few control passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_replicas_all_run() {
    const N: usize = 500;
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let start = Instant::now();
    let id = h.create_service(sleep_service("many", N as u64)).await;
    wait_running(&h, &id, N).await;
    let stats = h.manager.as_ref().expect("manager").stats();
    eprintln!(
        "{N} replicas running after {:?}; {stats:?}",
        start.elapsed()
    );
    // One pass per status report would be thousands; coalescing keeps the
    // count to a handful per wave of reports.
    assert!(stats.passes < 100, "{stats:?}");

    agent.stop().await;
    h.stop().await;
}

/// After the manager restarts, the agent re-registers under its node id and
/// keeps its tasks: nothing is started twice, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_manager_keeps_the_running_tasks() {
    let h = Harness::start(HEARTBEAT, true).await;
    let agent = FakeAgent::start(&h.dispatcher, "node-1").await;
    let id = h.create_service(sleep_service("steady", 3)).await;
    wait_running(&h, &id, 3).await;
    let before: HashSet<String> = h
        .store
        .view(|s| tasks_of(s, &id).iter().map(|t| t.meta.id.clone()).collect());
    let node_id = agent.node_id.clone();
    agent.stop().await;

    let h = h.restart().await;
    let agent = FakeAgent::start_as(&h.dispatcher, "node-1", Some(node_id.clone())).await;
    assert_eq!(agent.node_id, node_id, "the node keeps its identity");
    // Wait until the new control loop has acted on the state with the
    // re-registration in it, then check nothing moved.
    let registered = h.store.view(|s| s.index());
    let manager = h.manager.as_ref().expect("manager");
    crate::support::eventually("a control pass after the re-registration", || {
        manager.stats().seen_index >= registered
    })
    .await;
    wait_running(&h, &id, 3).await;
    let after: HashSet<String> = h
        .store
        .view(|s| tasks_of(s, &id).iter().map(|t| t.meta.id.clone()).collect());
    assert_eq!(after, before, "the same tasks run after the restart");

    agent.stop().await;
    h.stop().await;
}
