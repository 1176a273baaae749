//! The agent against the in-memory dispatcher and the real exec driver.

use crate::fake::FakeDispatcher;
use agent::driver::exec::procfs;
use agent::{Agent, AgentConfig};
use api::TaskState;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Node {
    dispatcher: Arc<FakeDispatcher>,
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            dispatcher: Arc::new(FakeDispatcher::new()),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn start_agent(&self) -> Agent {
        let driver = crate::exec_driver(&self.dir.path().join("exec"));
        let mut config = AgentConfig::new(self.dir.path().join("agent"));
        config.poll_timeout = Duration::from_secs(2);
        config.resync_interval = Duration::from_millis(500);
        Agent::start(self.dispatcher.clone(), driver, config)
            .await
            .expect("agent starts")
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| s.state != 'Z')
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) || !procfs::group_members(pid as i32).is_empty() {
        assert!(Instant::now() < deadline, "process group {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_of(status: &api::TaskStatus) -> u32 {
    status.pid.expect("a running task reports its pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_reports_and_stops_tasks() {
    let node = Node::new();
    let agent = node.start_agent().await;
    let d = &node.dispatcher;
    assert_eq!(d.inner.lock().expect("lock").registrations, vec![None]);

    let sleepers: Vec<String> = (0..3).map(|_| d.assign(&["sleep", "1000"])).collect();
    let ok = d.assign(&["sh", "-c", "echo hello; echo oops >&2"]);
    let bad = d.assign(&["sh", "-c", "exit 1"]);
    let missing = d.assign(&["berth-no-such-program"]);

    let mut pids = Vec::new();
    for id in &sleepers {
        let s = d.wait_state(id, TaskState::Running).await;
        assert!(alive(pid_of(&s)));
        pids.push(pid_of(&s));
        use TaskState::*;
        assert_eq!(
            d.reported(id),
            vec![Accepted, Preparing, Ready, Starting, Running]
        );
    }
    let s = d.wait_state(&ok, TaskState::Complete).await;
    assert_eq!(s.exit_code, Some(0));
    let s = d.wait_state(&bad, TaskState::Failed).await;
    assert_eq!(
        (s.exit_code, s.err.as_deref()),
        (Some(1), Some("task: non-zero exit (1)"))
    );
    let s = d.wait_state(&missing, TaskState::Rejected).await;
    assert!(
        s.err
            .as_deref()
            .is_some_and(|e| e.contains("berth-no-such-program")),
        "{s:?}"
    );

    let logs = agent.logs(&ok, None, None).await.expect("logs");
    let lines: Vec<(&str, &str)> = logs
        .iter()
        .map(|l| (l.stream.as_str(), l.line.as_str()))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.contains(&("stdout", "hello")) && lines.contains(&("stderr", "oops")));
    assert_eq!(agent.logs(&ok, Some(1), None).await.expect("tail").len(), 1);

    // Desired Shutdown: stopped and reported Shutdown.
    d.set_desired(&sleepers[0], TaskState::Shutdown);
    d.wait_state(&sleepers[0], TaskState::Shutdown).await;
    wait_gone(pids[0]).await;
    // Gone from the set (deleted): stopped too.
    d.delete(&sleepers[1]);
    wait_gone(pids[1]).await;
    assert!(alive(pids[2]));

    // Shutdown stops what is left and reports it.
    agent.shutdown().await.expect("shutdown");
    assert_eq!(
        d.status(&sleepers[2]).expect("task").state,
        TaskState::Shutdown
    );
    assert!(!alive(pids[2]));
    assert!(procfs::group_members(pids[2] as i32).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_tasks() {
    let node = Node::new();
    let d = &node.dispatcher;
    let agent = node.start_agent().await;
    let node_id = agent.node_id();
    let long: Vec<String> = (0..2).map(|_| d.assign(&["sleep", "1000"])).collect();
    let gate = node.root().join("gate");
    let gated = d.assign(&[
        "sh",
        "-c",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.02; done; exit 7",
            gate.display()
        ),
    ]);
    let mut pids = Vec::new();
    for id in long.iter().chain([&gated]) {
        pids.push(pid_of(&d.wait_state(id, TaskState::Running).await));
    }
    let reports_before = d.inner.lock().expect("lock").updates.len();

    // As kill -9: no shutdown; every loop stops, the shims and tasks live on.
    drop(agent);
    for pid in &pids {
        assert!(alive(*pid));
    }
    // One task ends while no agent watches.
    std::fs::write(&gate, b"").expect("open the gate");
    wait_gone(pids[2]).await;

    let agent = node.start_agent().await;
    assert_eq!(agent.node_id(), node_id);
    assert_eq!(
        d.inner.lock().expect("lock").registrations,
        vec![None, Some(node_id.clone())]
    );
    let s = d.wait_state(&gated, TaskState::Failed).await;
    assert_eq!(s.exit_code, Some(7));
    // Adopted, not started again: Running is reported anew with the same pids.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let again: Vec<_> = {
            let inner = d.inner.lock().expect("lock");
            inner.updates[reports_before..]
                .iter()
                .filter(|u| u.status.state == TaskState::Running)
                .map(|u| (u.task_id.clone(), u.status.pid))
                .collect()
        };
        if again.len() >= 2 {
            for (id, pid) in long.iter().zip(&pids) {
                assert!(
                    again.contains(&(id.clone(), Some(*pid))),
                    "{id} not adopted with pid {pid}: {again:?}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "adoption not reported: {again:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &long {
        let states = d.reported(id);
        assert_eq!(
            states.iter().filter(|s| **s == TaskState::Starting).count(),
            1,
            "{id} started twice: {states:?}"
        );
    }
    // No duplicates: only the original processes run `sleep 1000` for us.
    for pid in &pids[..2] {
        assert!(alive(*pid));
        assert_eq!(procfs::group_members(*pid as i32), vec![*pid]);
    }

    agent.shutdown().await.expect("shutdown");
    for (id, pid) in long.iter().zip(&pids) {
        assert_eq!(d.status(id).expect("task").state, TaskState::Shutdown);
        wait_gone(*pid).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_survives_an_unavailable_dispatcher_and_a_lost_session() {
    let node = Node::new();
    let d = &node.dispatcher;
    let agent = node.start_agent().await;
    d.with(|s| s.fail_updates = 3);
    let first = d.assign(&["sleep", "1000"]);
    d.wait_state(&first, TaskState::Running).await;

    d.invalidate_session();
    let second = d.assign(&["sleep", "1000"]);
    d.wait_state(&second, TaskState::Running).await;
    let inner_regs = d.inner.lock().expect("lock").registrations.clone();
    assert_eq!(inner_regs.len(), 2, "{inner_regs:?}");
    assert_eq!(inner_regs[1].as_deref(), Some(agent.node_id().as_str()));
    assert!(d.inner.lock().expect("lock").heartbeats > 0);
    agent.shutdown().await.expect("shutdown");
    for id in [&first, &second] {
        assert_eq!(d.status(id).expect("task").state, TaskState::Shutdown);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_tasks_keep_their_logs_within_the_retention_bound() {
    let node = Node::new();
    let d = &node.dispatcher;
    let driver = crate::exec_driver(&node.root().join("exec"));
    let mut config = AgentConfig::new(node.root().join("agent"));
    config.keep_ended_tasks = 2;
    config.resync_interval = Duration::from_millis(200);
    let agent = Agent::start(d.clone(), driver.clone(), config)
        .await
        .expect("start");
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = d.assign(&["echo", &format!("run {i}")]);
        d.wait_state(&id, TaskState::Complete).await;
        ids.push(id);
    }
    // Completed tasks leave the assignment set; only the newest two keep their logs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while driver.list().await.expect("list").len() > 2 {
        assert!(
            Instant::now() < deadline,
            "old task directories were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept: Vec<String> = driver
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    let mut newest = ids[2..].to_vec();
    newest.sort();
    assert_eq!(kept, newest);
    let lines = agent
        .logs(&ids[3], None, None)
        .await
        .expect("logs of an ended task");
    assert_eq!(
        lines.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        vec!["run 3"]
    );
    assert!(agent.logs(&ids[0], None, None).await.is_err());
    agent.shutdown().await.expect("shutdown");
}
