//! The agent over gRPC: the in-memory dispatcher served on loopback by the
//! manager's `DispatcherService`, reached with `RemoteDispatcher`, and a real
//! agent with the exec driver running real processes through it.

use crate::fake::FakeDispatcher;
use agent::driver::exec::procfs;
use agent::remote::{RemoteConfig, RemoteDispatcher};
use agent::{Agent, AgentConfig};
use api::dispatch::{DispatchError, Dispatcher};
use api::rpc::PlainConnector;
use api::TaskState;
use manager::rpc::DispatcherService;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Serves `dispatcher` on a free loopback port until the test ends.
async fn serve(dispatcher: Arc<FakeDispatcher>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr").to_string();
    let service = DispatcherService::new(dispatcher)
        .allow_unauthenticated_for_tests()
        .with_keepalive(Duration::from_millis(200));
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("test server: {e}");
        }
    });
    addr
}

/// An address on which nothing listens (a manager that is down).
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    listener.local_addr().expect("local addr").to_string()
}

fn remote(managers: Vec<String>) -> RemoteDispatcher {
    RemoteDispatcher::with_config(
        Arc::new(PlainConnector),
        managers,
        RemoteConfig {
            call_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            stream_idle_timeout: Duration::from_secs(2),
        },
    )
}

fn alive(pid: u32) -> bool {
    procfs::stat(pid).is_some_and(|s| s.state != 'Z')
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_tasks_through_the_grpc_dispatcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Arc::new(FakeDispatcher::new());
    let addr = serve(d.clone()).await;
    let mut config = AgentConfig::new(dir.path().join("agent"));
    config.poll_timeout = Duration::from_secs(2);
    config.resync_interval = Duration::from_millis(500);
    let agent = Agent::start(
        Arc::new(remote(vec![addr])),
        crate::exec_driver(&dir.path().join("exec")),
        config,
    )
    .await
    .expect("agent starts over gRPC");
    assert_eq!(d.inner.lock().expect("lock").registrations, vec![None]);

    let sleeper = d.assign(&["sleep", "1000"]);
    let status = d.wait_state(&sleeper, TaskState::Running).await;
    let pid = status.pid.expect("a running task reports its pid");
    assert!(alive(pid));
    let done = d.assign(&["sh", "-c", "exit 3"]);
    let s = d.wait_state(&done, TaskState::Failed).await;
    assert_eq!(s.exit_code, Some(3));

    // A stop order travels as an increment and the process goes.
    d.set_desired(&sleeper, TaskState::Shutdown);
    d.wait_state(&sleeper, TaskState::Shutdown).await;
    wait_gone(pid).await;

    // The manager forgets the session: the agent registers again with its
    // node id and goes on.
    d.invalidate_session();
    let next = d.assign(&["sleep", "1000"]);
    let s = d.wait_state(&next, TaskState::Running).await;
    let registrations = d.inner.lock().expect("lock").registrations.clone();
    assert_eq!(registrations.len(), 2, "{registrations:?}");
    assert_eq!(registrations[1], Some(agent.node_id()));

    agent.shutdown().await.expect("shutdown");
    assert_eq!(d.status(&next).expect("task").state, TaskState::Shutdown);
    wait_gone(s.pid.expect("pid")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_is_down_is_skipped_and_the_list_can_change() {
    let d = Arc::new(FakeDispatcher::new());
    let live = serve(d.clone()).await;
    let dead = dead_addr().await;

    // The first manager is down: the call goes on to the next.
    let r = remote(vec![dead.clone(), live.clone()]);
    let session = r
        .register(None, api::NodeDescription::default())
        .await
        .expect("register past the dead manager");
    assert_eq!(r.target(), Some(live.clone()));
    r.heartbeat(&session).await.expect("heartbeat");

    // Only dead managers: unavailable, until the list names a live one.
    let r = remote(vec![dead.clone()]);
    let e = r.register(None, api::NodeDescription::default()).await;
    assert!(matches!(e, Err(DispatchError::Unavailable(_))), "{e:?}");
    r.set_managers(vec![live.clone()]);
    assert_eq!(r.managers(), vec![live.clone()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let session = loop {
        match r.register(None, api::NodeDescription::default()).await {
            Ok(s) => break s,
            Err(DispatchError::Unavailable(e)) => {
                assert!(Instant::now() < deadline, "never reached {live}: {e}");
            }
            Err(e) => panic!("register: {e}"),
        }
    };
    let set = r
        .assignments(&session, None, Duration::from_secs(20))
        .await
        .expect("assignments");
    assert!(set.tasks.is_empty());
}
