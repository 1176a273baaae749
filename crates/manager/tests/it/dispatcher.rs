//! The dispatcher alone over a real store (no control loop): sessions,
//! long-polled assignments, status batching and the heartbeat monitor.

use crate::support::{description, status, FakeAgent, Harness, TIMEOUT};
use api::dispatch::{DispatchError, Dispatcher, TaskStatusUpdate};
use api::{Meta, NodeRole, NodeState, Op, Task, TaskSpec, TaskState};
use manager::dispatcher::HEARTBEAT_FAILURE;
use std::time::Duration;
use tokio::time::Instant;

/// A task as the scheduler leaves it: placed on `node`, status Assigned.
fn assigned_task(node: &str) -> Task {
    Task {
        meta: Meta::new(api::new_id()),
        service_id: "no-service".into(),
        slot: 1,
        node_id: Some(node.into()),
        spec: TaskSpec::exec(["sleep", "1000"]),
        spec_version: 1,
        desired_state: TaskState::Running,
        status: status(TaskState::Assigned),
        restarts: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_creates_a_ready_node_and_reregistration_keeps_it() {
    let h = Harness::start(Duration::from_millis(1500), false).await;
    let d = &h.dispatcher;
    let first = d
        .register(None, description("host-a"))
        .await
        .expect("register");
    assert_eq!(
        first.heartbeat_period,
        Duration::from_millis(1500),
        "period from the cluster object"
    );
    let node = h
        .store
        .view(|s| s.node(&first.node_id).cloned())
        .expect("node stored");
    assert_eq!(node.spec.role, NodeRole::Manager);
    assert_eq!(node.status.state, NodeState::Ready);
    assert_eq!(node.description.hostname, "host-a");

    // The agent restarts and comes back with its node id: same node, new
    // session, and the old session is no longer served.
    let second = d
        .register(Some(first.node_id.clone()), description("host-a2"))
        .await
        .expect("re-register");
    assert_eq!(second.node_id, first.node_id);
    assert_ne!(second.session_id, first.session_id);
    assert_eq!(
        h.store.view(|s| s
            .node(&first.node_id)
            .map(|n| n.description.hostname.clone())),
        Some("host-a2".into())
    );
    let stale = d.assignments(&first, None, Duration::ZERO).await;
    assert!(
        matches!(stale, Err(DispatchError::InvalidSession(_))),
        "{stale:?}"
    );
    d.assignments(&second, None, Duration::ZERO)
        .await
        .expect("new session is served");

    // An id the cluster does not know gets a new node.
    let other = d
        .register(Some("unknown-node".into()), description("host-b"))
        .await
        .expect("register unknown");
    assert_ne!(other.node_id, "unknown-node");
    assert_eq!(h.store.view(|s| s.nodes().count()), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_wait_for_news_of_the_node_or_the_timeout() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let d = &h.dispatcher;
    let session = d.register(None, description("n1")).await.expect("register");
    let first = d
        .assignments(&session, None, Duration::ZERO)
        .await
        .expect("first set");
    assert!(first.tasks.is_empty());

    // Nothing changes for this node: the poll returns the same set at the timeout.
    let start = Instant::now();
    let same = d
        .assignments(&session, Some(first.index), Duration::from_millis(200))
        .await
        .expect("timed out poll");
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(same.tasks.is_empty());

    // A task for another node is no news; a task for this one ends the wait.
    let poll = {
        let d = d.clone();
        let session = session.clone();
        let after = same.index;
        tokio::spawn(async move { d.assignments(&session, Some(after), TIMEOUT).await })
    };
    h.store
        .update(vec![Op::Create(assigned_task("other-node").into())])
        .await
        .expect("task elsewhere");
    let mine = assigned_task(&session.node_id);
    h.store
        .update(vec![Op::Create(mine.clone().into())])
        .await
        .expect("task here");
    let got = poll.await.expect("poll task").expect("assignments");
    assert_eq!(got.tasks.len(), 1);
    assert_eq!(got.tasks[0].meta.id, mine.meta.id);

    // The agent's own progress report is no news to it; a stop order is.
    d.update_task_status(
        &session,
        vec![TaskStatusUpdate {
            task_id: mine.meta.id.clone(),
            status: status(TaskState::Running),
        }],
    )
    .await
    .expect("report running");
    let poll = {
        let d = d.clone();
        let session = session.clone();
        let after = got.index;
        tokio::spawn(async move { d.assignments(&session, Some(after), TIMEOUT).await })
    };
    let mut stop = h
        .store
        .view(|s| s.task(&mine.meta.id).cloned())
        .expect("task");
    assert_eq!(stop.status.state, TaskState::Running);
    stop.desired_state = TaskState::Shutdown;
    h.store
        .update(vec![Op::Update(stop.into())])
        .await
        .expect("order stop");
    let got = poll.await.expect("poll task").expect("assignments");
    assert_eq!(got.tasks.len(), 1);
    assert_eq!(got.tasks[0].desired_state, TaskState::Shutdown);

    // Once the task is shut down it leaves the set.
    d.update_task_status(
        &session,
        vec![TaskStatusUpdate {
            task_id: mine.meta.id.clone(),
            status: status(TaskState::Shutdown),
        }],
    )
    .await
    .expect("report shutdown");
    let got = d
        .assignments(&session, Some(got.index), TIMEOUT)
        .await
        .expect("assignments");
    assert!(got.tasks.is_empty(), "{:?}", got.tasks);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_are_taken_only_from_the_tasks_node() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let d = &h.dispatcher;
    let owner = d
        .register(None, description("owner"))
        .await
        .expect("register");
    let intruder = d
        .register(None, description("intruder"))
        .await
        .expect("register");
    let task = assigned_task(&owner.node_id);
    h.store
        .update(vec![Op::Create(task.clone().into())])
        .await
        .expect("task");
    let report = |state| {
        vec![TaskStatusUpdate {
            task_id: task.meta.id.clone(),
            status: status(state),
        }]
    };
    d.update_task_status(&intruder, report(TaskState::Failed))
        .await
        .expect("ignored, not refused");
    assert_eq!(
        h.store
            .view(|s| s.task(&task.meta.id).map(|t| t.status.state)),
        Some(TaskState::Assigned)
    );
    d.update_task_status(&owner, report(TaskState::Running))
        .await
        .expect("report");
    assert_eq!(
        h.store
            .view(|s| s.task(&task.meta.id).map(|t| t.status.state)),
        Some(TaskState::Running),
        "the report is stored when the call returns"
    );
    let mut bad = owner.clone();
    bad.session_id = "forged".into();
    assert!(matches!(
        d.update_task_status(&bad, report(TaskState::Failed)).await,
        Err(DispatchError::InvalidSession(_))
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_status_reports_share_store_entries() {
    const N: usize = 200;
    let h = Harness::start(Duration::from_secs(5), false).await;
    let d = &h.dispatcher;
    let session = d.register(None, description("n1")).await.expect("register");
    let tasks: Vec<Task> = (0..N).map(|_| assigned_task(&session.node_id)).collect();
    h.store
        .update(tasks.iter().map(|t| Op::Create(t.clone().into())).collect())
        .await
        .expect("tasks");
    let before = h.store.view(|s| s.index());
    let calls: Vec<_> = tasks
        .iter()
        .map(|t| {
            let d = d.clone();
            let session = session.clone();
            let update = TaskStatusUpdate {
                task_id: t.meta.id.clone(),
                status: status(TaskState::Running),
            };
            tokio::spawn(async move { d.update_task_status(&session, vec![update]).await })
        })
        .collect();
    for c in calls {
        c.await.expect("call").expect("report");
    }
    let (running, entries) = h.store.view(|s| {
        let running = tasks
            .iter()
            .filter(|t| {
                s.task(&t.meta.id)
                    .is_some_and(|t| t.status.state == TaskState::Running)
            })
            .count();
        (running, s.index() - before)
    });
    assert_eq!(running, N);
    assert!(
        entries < (N / 4) as u64,
        "{N} concurrent reports took {entries} store entries"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_heartbeats_is_marked_down_and_recovers() {
    let h = Harness::start(Duration::from_millis(100), false).await;
    let agent = FakeAgent::start(&h.dispatcher, "flaky").await;
    let node = agent.node_id.clone();
    let node_state = |s: &api::State| {
        s.node(&node)
            .map(|n| (n.status.state, n.status.message.clone()))
    };

    // While the agent heartbeats, the node stays ready well past the deadline.
    let steady = Instant::now() + Duration::from_millis(600);
    while Instant::now() < steady {
        assert_eq!(
            h.store.view(node_state).map(|s| s.0),
            Some(NodeState::Ready)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    agent.set_heartbeats(false);
    h.wait_for("the node marked down", |s| {
        (node_state(s) == Some((NodeState::Down, HEARTBEAT_FAILURE.to_string()))).then_some(())
    })
    .await;

    agent.set_heartbeats(true);
    h.wait_for("the node ready again", |s| {
        (node_state(s).map(|s| s.0) == Some(NodeState::Ready)).then_some(())
    })
    .await;
    agent.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_node_that_never_reconnects_is_marked_down() {
    // A node the store holds as ready from before this dispatcher started
    // (a manager restart) must come back within the grace period.
    let h = Harness::start(Duration::from_millis(100), false).await;
    let node = api::Node {
        meta: Meta::new(api::new_id()),
        spec: api::NodeSpec::default(),
        description: description("gone"),
        status: api::NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: "127.0.0.1".into(),
            ..Default::default()
        },
        manager_status: None,
    };
    let id = node.meta.id.clone();
    h.store
        .update(vec![Op::Create(node.into())])
        .await
        .expect("node from before");
    h.wait_for("the silent node marked down", |s| {
        s.node(&id)
            .filter(|n| n.status.state == NodeState::Down && n.status.message == HEARTBEAT_FAILURE)
            .map(|_| ())
    })
    .await;
    // Re-registering makes it ready again, keeping its spec.
    let session = h
        .dispatcher
        .register(Some(id.clone()), description("gone"))
        .await
        .expect("re-register");
    assert_eq!(session.node_id, id);
    let back = h.store.view(|s| s.node(&id).cloned()).expect("node");
    assert_eq!(back.status.state, NodeState::Ready);
    assert_eq!(
        back.spec.role,
        NodeRole::Worker,
        "a known node keeps its role"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_keeps_the_address_a_node_joined_with() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let node = api::Node {
        meta: Meta::new(api::new_id()),
        spec: api::NodeSpec::default(),
        description: description("joined"),
        status: api::NodeStatus {
            state: NodeState::Unknown,
            message: "joined, waiting for its agent".into(),
            addr: "127.3.0.21".into(),
            gossip_addr: "127.3.0.21:7946".into(),
            ..Default::default()
        },
        manager_status: None,
    };
    let id = node.meta.id.clone();
    h.store
        .update(vec![Op::Create(node.into())])
        .await
        .expect("joined node");
    h.dispatcher
        .register(Some(id.clone()), description("joined"))
        .await
        .expect("register");
    let status = h
        .store
        .view(|s| s.node(&id).map(|n| n.status.clone()))
        .expect("node");
    assert_eq!(status.state, NodeState::Ready);
    assert_eq!(status.message, "");
    assert_eq!(status.addr, "127.3.0.21");
    assert_eq!(status.gossip_addr, "127.3.0.21:7946");
    h.stop().await;
}
