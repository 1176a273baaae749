//! The dispatcher over gRPC on loopback: the manager's `DispatcherService`
//! over the real store and `LocalDispatcher`, reached with the agent's
//! `RemoteDispatcher` (or the raw client where the wire itself is the point),
//! and a real `agent::Agent` whose node is lost and comes back.
//!
//! Servers run in a runtime of their own, so that killing one cuts every
//! connection at once, as a crashed manager would.

use crate::support::{description, sleep_service, status, FakeAgent, Harness, TIMEOUT};
use agent::remote::{RemoteConfig, RemoteDispatcher};
use agent::{
    Agent, AgentConfig, Driver, DriverError, TaskConfig, TaskExit, TaskInfo, TaskRunState,
};
use api::dispatch::{DispatchError, Dispatcher, LogLine, Session, TaskStatusUpdate};
use api::rpc::dispatcher as pb;
use api::rpc::dispatcher::dispatcher_client::DispatcherClient;
use api::rpc::{Connector, PeerIdentity, PeerInfo, PeerRole, PlainConnector};
use api::{Meta, NodeState, Op, Task, TaskSpec, TaskState, Timestamp};
use manager::dispatcher::HEARTBEAT_FAILURE;
use manager::rpc::{DispatcherService, LeaderHint, LEADER_METADATA_KEY};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

/// The identity a test server claims its callers proved (none: no certificate).
type Identity = Arc<Mutex<Option<PeerIdentity>>>;

/// A dispatcher service served on loopback in a runtime of its own.
struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Serves on `addr` (port 0: any free port). With `identity`, every
    /// request carries the `PeerInfo` that the mutual-TLS server would put in.
    fn start(service: DispatcherService, addr: SocketAddr, identity: Option<Identity>) -> Server {
        let deadline = std::time::Instant::now() + TIMEOUT;
        // The killed server's socket may take a moment to be released.
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("binding {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("binding {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local addr");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let server = service.into_server();
            let router = match identity {
                Some(identity) => tonic::transport::Server::builder().add_service(
                    tonic::service::interceptor::InterceptedService::new(
                        server,
                        move |mut req: tonic::Request<()>| {
                            let identity = identity.lock().expect("identity").clone();
                            req.extensions_mut().insert(PeerInfo {
                                remote_addr: None,
                                identity,
                            });
                            Ok(req)
                        },
                    ),
                ),
                None => tonic::transport::Server::builder().add_service(server),
            };
            if let Err(e) = router.serve_with_incoming(incoming).await {
                eprintln!("test server on {addr}: {e}");
            }
        });
        Server {
            addr,
            runtime: Some(runtime),
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Ends the server and every connection to it.
    async fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(5)))
                .await
                .expect("server shutdown");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

/// A service over the harness's dispatcher that trusts callers without a
/// certificate (plain loopback), with a short keepalive.
fn open_service(h: &Harness) -> DispatcherService {
    DispatcherService::new(Arc::new(h.dispatcher.clone()))
        .allow_unauthenticated_for_tests()
        .with_keepalive(Duration::from_millis(200))
}

fn quick_config() -> RemoteConfig {
    RemoteConfig {
        call_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        stream_idle_timeout: Duration::from_secs(2),
    }
}

fn remote(managers: &[String]) -> RemoteDispatcher {
    RemoteDispatcher::with_config(Arc::new(PlainConnector), managers.to_vec(), quick_config())
}

fn raw_client(addr: &str) -> DispatcherClient<tonic::transport::Channel> {
    DispatcherClient::new(PlainConnector.channel(addr).expect("channel"))
}

fn session_ref(s: &Session) -> Option<pb::SessionRef> {
    Some(pb::SessionRef {
        node_id: s.node_id.clone(),
        session_id: s.session_id.clone(),
    })
}

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

fn report(task_id: &str, state: TaskState) -> Vec<TaskStatusUpdate> {
    vec![TaskStatusUpdate {
        task_id: task_id.into(),
        status: status(state),
    }]
}

/// Waits until the dispatcher's assignments satisfy `f`, long-polling.
async fn wait_assignments(
    d: &dyn Dispatcher,
    session: &Session,
    what: &str,
    f: impl Fn(&[Task]) -> bool,
) -> api::dispatch::Assignments {
    let deadline = Instant::now() + TIMEOUT;
    let mut after = None;
    loop {
        match d
            .assignments(session, after, Duration::from_millis(500))
            .await
        {
            Ok(a) if f(&a.tasks) => return a,
            Ok(a) => after = Some(a.index),
            Err(DispatchError::Unavailable(e)) => eprintln!("assignments unavailable: {e}"),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

fn ids(tasks: &[Task]) -> Vec<String> {
    let mut ids: Vec<String> = tasks.iter().map(|t| t.meta.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_heartbeat_assignments_and_status_travel_over_grpc() {
    let h = Harness::start(Duration::from_millis(1500), false).await;
    let server = Server::start(open_service(&h), loopback(), None);
    let d = remote(&[server.addr()]);

    let session = d
        .register(None, description("remote-1"))
        .await
        .expect("register");
    assert_eq!(session.heartbeat_period, Duration::from_millis(1500));
    let node = h
        .store
        .view(|s| s.node(&session.node_id).cloned())
        .expect("node stored");
    assert_eq!(node.status.state, NodeState::Ready);
    assert_eq!(node.description.hostname, "remote-1");
    d.heartbeat(&session).await.expect("heartbeat");

    let first = d
        .assignments(&session, None, TIMEOUT)
        .await
        .expect("first set");
    assert!(first.tasks.is_empty());
    let task = assigned_task(&session.node_id);
    h.store
        .update(vec![Op::Create(task.clone().into())])
        .await
        .expect("task");
    let got = d
        .assignments(&session, Some(first.index), TIMEOUT)
        .await
        .expect("assignments");
    assert_eq!(ids(&got.tasks), vec![task.meta.id.clone()]);
    assert!(got.index > first.index);

    // Reports land in the store by the time the call returns.
    d.update_task_status(&session, report(&task.meta.id, TaskState::Running))
        .await
        .expect("report");
    assert_eq!(
        h.store
            .view(|s| s.task(&task.meta.id).map(|t| t.status.state)),
        Some(TaskState::Running)
    );

    // Re-registering opens a new session; the old one is refused.
    let again = d
        .register(Some(session.node_id.clone()), description("remote-1"))
        .await
        .expect("register again");
    assert_eq!(again.node_id, session.node_id);
    assert!(matches!(
        d.heartbeat(&session).await,
        Err(DispatchError::InvalidSession(_))
    ));
    let stale = d.assignments(&session, None, TIMEOUT).await;
    assert!(
        matches!(stale, Err(DispatchError::InvalidSession(_))),
        "{stale:?}"
    );
    let set = d
        .assignments(&again, None, TIMEOUT)
        .await
        .expect("new session's set");
    assert_eq!(ids(&set.tasks), vec![task.meta.id.clone()]);
    drop(server);
    h.stop().await;
}

/// The next message that changes the set (keepalives skipped).
async fn next_change(
    stream: &mut tonic::Streaming<pb::AssignmentsMessage>,
) -> pb::AssignmentsMessage {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("a change in time")
            .expect("stream message")
            .expect("stream open");
        if !msg.tasks_json.is_empty() || !msg.removed.is_empty() {
            return msg;
        }
    }
}

fn decode(msg: &pb::AssignmentsMessage) -> Vec<Task> {
    msg.tasks_json
        .iter()
        .map(|b| serde_json::from_slice(b).expect("task json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_the_complete_set_then_increments() {
    use pb::assignments_message::Kind;
    let h = Harness::start(Duration::from_secs(5), false).await;
    let server = Server::start(open_service(&h), loopback(), None);
    let mut client = raw_client(&server.addr());
    let r = client
        .register(pb::RegisterRequest {
            node_id: String::new(),
            description_json: serde_json::to_vec(&description("raw")).expect("json"),
        })
        .await
        .expect("register")
        .into_inner();
    let session = Session {
        node_id: r.node_id.clone(),
        session_id: r.session_id.clone(),
        heartbeat_period: Duration::from_millis(r.heartbeat_period_ms),
    };
    let a = assigned_task(&session.node_id);
    h.store
        .update(vec![Op::Create(a.clone().into())])
        .await
        .expect("task a");
    let mut stream = client
        .assignments(pb::AssignmentsRequest {
            session: session_ref(&session),
        })
        .await
        .expect("open stream")
        .into_inner();

    let first = stream
        .message()
        .await
        .expect("first message")
        .expect("open");
    assert_eq!(first.kind, Kind::Complete as i32);
    assert_eq!(ids(&decode(&first)), vec![a.meta.id.clone()]);
    assert!(first.removed.is_empty());

    // A new task: only it travels.
    let b = assigned_task(&session.node_id);
    h.store
        .update(vec![
            Op::Create(b.clone().into()),
            Op::Create(assigned_task("another-node").into()),
        ])
        .await
        .expect("task b");
    let msg = next_change(&mut stream).await;
    assert_eq!(msg.kind, Kind::Incremental as i32);
    assert_eq!(ids(&decode(&msg)), vec![b.meta.id.clone()]);
    assert!(msg.index > first.index);

    // A stop order: the changed task travels.
    let mut stop = h
        .store
        .view(|s| s.task(&a.meta.id).cloned())
        .expect("task a");
    stop.desired_state = TaskState::Shutdown;
    h.store
        .update(vec![Op::Update(stop.into())])
        .await
        .expect("stop a");
    let msg = next_change(&mut stream).await;
    let changed = decode(&msg);
    assert_eq!(ids(&changed), vec![a.meta.id.clone()]);
    assert_eq!(changed[0].desired_state, TaskState::Shutdown);

    // Once shut down, it leaves the set: only its id travels.
    let h_d: &dyn Dispatcher = &h.dispatcher;
    h_d.update_task_status(&session, report(&a.meta.id, TaskState::Shutdown))
        .await
        .expect("report shutdown");
    let msg = next_change(&mut stream).await;
    assert_eq!(msg.removed, vec![a.meta.id.clone()]);
    assert!(msg.tasks_json.is_empty());

    // The agent's client rebuilds the same set.
    let d = remote(&[server.addr()]);
    let set = d
        .assignments(&session, None, TIMEOUT)
        .await
        .expect("rebuilt set");
    assert_eq!(ids(&set.tasks), vec![b.meta.id.clone()]);
    drop(server);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sends_the_agent_to_the_leader() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let leader = Server::start(open_service(&h), loopback(), None);
    let leader_addr = leader.addr();
    // A manager that leads at first and then loses the leadership; both serve
    // the same dispatcher here, so sessions survive the move.
    let hint = Arc::new(Mutex::new(LeaderHint::Leader));
    let follower = {
        let hint = hint.clone();
        Server::start(
            open_service(&h).with_leader_hint(move || hint.lock().expect("hint").clone()),
            loopback(),
            None,
        )
    };

    // A follower that knows the leader says so on the wire.
    *hint.lock().expect("hint") = LeaderHint::Follower {
        leader_addr: Some(leader_addr.clone()),
    };
    let refused = raw_client(&follower.addr())
        .register(pb::RegisterRequest {
            node_id: String::new(),
            description_json: serde_json::to_vec(&description("x")).expect("json"),
        })
        .await
        .expect_err("a follower refuses");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(
        refused
            .metadata()
            .get(LEADER_METADATA_KEY)
            .and_then(|v| v.to_str().ok()),
        Some(leader_addr.as_str())
    );

    // The agent's client follows the hint.
    let d = remote(&[follower.addr()]);
    let session = d
        .register(None, description("follows"))
        .await
        .expect("register through the follower");
    assert_eq!(d.target(), Some(leader_addr.clone()));
    d.heartbeat(&session)
        .await
        .expect("heartbeat at the leader");

    // A stream open on a manager that stops leading ends with the hint, and
    // the client reopens it at the leader.
    *hint.lock().expect("hint") = LeaderHint::Leader;
    let d = remote(&[follower.addr()]);
    let first = d
        .assignments(&session, None, TIMEOUT)
        .await
        .expect("set from the first manager");
    assert_eq!(d.target(), Some(follower.addr()));
    *hint.lock().expect("hint") = LeaderHint::Follower {
        leader_addr: Some(leader_addr.clone()),
    };
    let task = assigned_task(&session.node_id);
    h.store
        .update(vec![Op::Create(task.clone().into())])
        .await
        .expect("task");
    let got = wait_assignments(&d, &session, "the task through the leader", |t| {
        ids(t) == vec![task.meta.id.clone()]
    })
    .await;
    assert!(got.index > first.index);
    assert_eq!(d.target(), Some(leader_addr));
    drop((leader, follower));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_manager_is_unavailable_until_it_returns() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let mut server = Server::start(open_service(&h), loopback(), None);
    let addr = server.addr;
    let d = remote(&[server.addr()]);
    let session = d
        .register(None, description("patient"))
        .await
        .expect("register");
    let first = d
        .assignments(&session, None, TIMEOUT)
        .await
        .expect("first set");

    server.kill().await;
    let started = Instant::now();
    let beat = d.heartbeat(&session).await;
    assert!(
        matches!(beat, Err(DispatchError::Unavailable(_))),
        "{beat:?}"
    );
    assert!(
        started.elapsed() <= quick_config().call_timeout + Duration::from_secs(1),
        "a call gives up within its timeout: {:?}",
        started.elapsed()
    );
    // The long-poll says so too once the stream is found broken.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match d
            .assignments(&session, Some(first.index), Duration::from_millis(200))
            .await
        {
            Err(DispatchError::Unavailable(_)) => break,
            Ok(a) => assert_eq!(a.index, first.index),
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the broken stream was never noticed"
        );
    }

    // The manager comes back on the same address, with its sessions.
    let server = Server::start(open_service(&h), addr, None);
    let deadline = Instant::now() + TIMEOUT;
    while let Err(e) = d.heartbeat(&session).await {
        assert!(
            matches!(e, DispatchError::Unavailable(_)),
            "only unavailable while it returns: {e}"
        );
        assert!(Instant::now() < deadline, "never recovered: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = started.elapsed();
    let task = assigned_task(&session.node_id);
    h.store
        .update(vec![Op::Create(task.clone().into())])
        .await
        .expect("task");
    wait_assignments(&d, &session, "the task after the return", |t| {
        ids(t) == vec![task.meta.id.clone()]
    })
    .await;
    eprintln!("recovered after {recovered:?}");
    drop(server);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_can_only_speak_for_itself() {
    let h = Harness::start(Duration::from_secs(5), false).await;
    let local: &dyn Dispatcher = &h.dispatcher;
    // Two member nodes, as the CA would have certified them.
    let mine = local
        .register(None, description("mine"))
        .await
        .expect("register");
    let other = local
        .register(None, description("other"))
        .await
        .expect("register");
    let identity: Identity = Arc::new(Mutex::new(None));
    let service = DispatcherService::new(Arc::new(h.dispatcher.clone()));
    let server = Server::start(service, loopback(), Some(identity.clone()));
    let mut client = raw_client(&server.addr());
    let register = |node_id: &str| pb::RegisterRequest {
        node_id: node_id.into(),
        description_json: serde_json::to_vec(&description("mine")).expect("json"),
    };

    // No certificate: refused.
    let e = client.register(register("")).await.expect_err("refused");
    assert_eq!(e.code(), Code::Unauthenticated);

    let certify = |node_id: &str| {
        *identity.lock().expect("identity") = Some(PeerIdentity {
            node_id: node_id.into(),
            role: PeerRole::Worker,
            cluster_id: "test".into(),
        })
    };
    certify(&mine.node_id);
    // The certificate names the node, whether or not the agent remembers it.
    let r = client
        .register(register(""))
        .await
        .expect("register as itself")
        .into_inner();
    assert_eq!(r.node_id, mine.node_id);
    let mine = Session {
        node_id: r.node_id,
        session_id: r.session_id,
        heartbeat_period: Duration::from_millis(r.heartbeat_period_ms),
    };
    let e = client
        .register(register(&other.node_id))
        .await
        .expect_err("register as another");
    assert_eq!(e.code(), Code::PermissionDenied);

    // The other node's (valid) session, used with this node's certificate.
    let other = local
        .register(Some(other.node_id.clone()), description("other"))
        .await
        .expect("other's session");
    let e = client
        .heartbeat(pb::HeartbeatRequest {
            session: session_ref(&other),
        })
        .await
        .expect_err("heartbeat for another");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .update_task_status(pb::UpdateTaskStatusRequest {
            session: session_ref(&other),
            updates: vec![],
        })
        .await
        .expect_err("report for another");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = client
        .assignments(pb::AssignmentsRequest {
            session: session_ref(&other),
        })
        .await
        .expect_err("assignments of another");
    assert_eq!(e.code(), Code::PermissionDenied);
    client
        .heartbeat(pb::HeartbeatRequest {
            session: session_ref(&mine),
        })
        .await
        .expect("its own heartbeat");

    // The agent's client takes a refusal as a session to renew.
    let d = remote(&[server.addr()]);
    let beat = d.heartbeat(&other).await;
    assert!(
        matches!(beat, Err(DispatchError::InvalidSession(_))),
        "{beat:?}"
    );

    // A certificate of a node the cluster does not know (removed since).
    certify("removed-node");
    let e = client
        .register(register(""))
        .await
        .expect_err("not a member");
    assert_eq!(e.code(), Code::PermissionDenied);
    drop(server);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_marked_down_registers_again_without_the_tasks_that_moved() {
    let h = Harness::start(Duration::from_millis(200), true).await;
    let server = Server::start(open_service(&h), loopback(), None);
    let d = remote(&[server.addr()]);
    let session = d
        .register(None, description("lost"))
        .await
        .expect("register");
    let node = session.node_id.clone();
    let helper = FakeAgent::start(&h.dispatcher, "helper").await;

    let service = h.create_service(sleep_service("web", 2)).await;
    // This node runs its share (reported by hand: no agent here).
    let mine = wait_assignments(&d, &session, "a task for this node", |t| !t.is_empty()).await;
    let moved: Vec<String> = ids(&mine.tasks);
    for id in &moved {
        d.update_task_status(&session, report(id, TaskState::Running))
            .await
            .expect("report running");
    }

    // No heartbeat any more: the node goes down and its tasks move.
    h.wait_for("the node marked down", |s| {
        s.node(&node)
            .filter(|n| n.status.state == NodeState::Down && n.status.message == HEARTBEAT_FAILURE)
            .map(|_| ())
    })
    .await;
    h.wait_for("both replicas running on the helper", |s| {
        let running = s
            .tasks_by_service(&service)
            .filter(|t| {
                t.node_id.as_deref() == Some(helper.node_id.as_str())
                    && t.desired_state == TaskState::Running
                    && t.status.state == TaskState::Running
            })
            .count();
        (running == 2).then_some(())
    })
    .await;

    // The agent comes back and registers again: ready, and its set no
    // longer asks it to run what moved.
    let back = d
        .register(Some(node.clone()), description("lost"))
        .await
        .expect("register again");
    assert_eq!(back.node_id, node);
    assert_eq!(
        h.store.view(|s| s.node(&node).map(|n| n.status.state)),
        Some(NodeState::Ready)
    );
    let set = d
        .assignments(&back, None, TIMEOUT)
        .await
        .expect("set after coming back");
    assert!(
        set.tasks
            .iter()
            .all(|t| t.desired_state > TaskState::Running && moved.contains(&t.meta.id)),
        "only stop orders for the moved tasks: {:?}",
        set.tasks
            .iter()
            .map(|t| (&t.meta.id, t.desired_state))
            .collect::<Vec<_>>()
    );
    // Once it reports them stopped, the set is empty.
    for t in &set.tasks {
        d.update_task_status(&back, report(&t.meta.id, TaskState::Shutdown))
            .await
            .expect("report shutdown");
    }
    wait_assignments(&d, &back, "an empty set", |t| t.is_empty()).await;
    helper.stop().await;
    drop(server);
    h.stop().await;
}

/// A driver that runs nothing: it keeps each task's state in memory, so the
/// agent's reconcile and supervisors run for real without processes.
#[derive(Default)]
struct MemoryDriver {
    tasks: Mutex<BTreeMap<String, TaskRunState>>,
    /// Bumped at every change, for `wait`.
    changes: tokio::sync::watch::Sender<u64>,
    stops: Mutex<Vec<String>>,
}

impl MemoryDriver {
    fn set(&self, id: &str, state: TaskRunState) {
        self.tasks.lock().expect("tasks").insert(id.into(), state);
        self.changes.send_modify(|n| *n += 1);
    }

    fn state(&self, id: &str) -> Option<TaskRunState> {
        self.tasks.lock().expect("tasks").get(id).cloned()
    }

    fn running(&self) -> Vec<String> {
        self.tasks
            .lock()
            .expect("tasks")
            .iter()
            .filter(|(_, s)| matches!(s, TaskRunState::Running { .. }))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl Driver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn prepare(&self, config: &TaskConfig) -> Result<(), DriverError> {
        if self.state(&config.task_id).is_none() {
            self.set(&config.task_id, TaskRunState::Created);
        }
        Ok(())
    }

    async fn start(&self, task_id: &str) -> Result<u32, DriverError> {
        match self.state(task_id) {
            Some(TaskRunState::Created) => {
                self.set(task_id, TaskRunState::Running { pid: Some(4242) });
                Ok(4242)
            }
            Some(_) => Err(DriverError::InvalidState {
                task_id: task_id.into(),
                state: "started",
                op: "start",
            }),
            None => Err(DriverError::NotFound(task_id.into())),
        }
    }

    async fn wait(&self, task_id: &str) -> Result<TaskExit, DriverError> {
        let mut changes = self.changes.subscribe();
        loop {
            match self.state(task_id) {
                Some(TaskRunState::Exited(exit)) => return Ok(exit),
                Some(_) => {}
                None => return Err(DriverError::NotFound(task_id.into())),
            }
            if changes.changed().await.is_err() {
                return Err(DriverError::Runtime("driver gone".into()));
            }
        }
    }

    async fn stop(&self, task_id: &str, _grace: Duration) -> Result<TaskRunState, DriverError> {
        let state = self
            .state(task_id)
            .ok_or_else(|| DriverError::NotFound(task_id.into()))?;
        if !matches!(state, TaskRunState::Running { .. }) {
            return Ok(state);
        }
        self.stops.lock().expect("stops").push(task_id.into());
        let exited = TaskRunState::Exited(TaskExit {
            exit_code: 143,
            signal: Some(15),
            error: None,
            finished_at: Timestamp::now(),
        });
        self.set(task_id, exited.clone());
        Ok(exited)
    }

    async fn remove(&self, task_id: &str) -> Result<(), DriverError> {
        self.tasks.lock().expect("tasks").remove(task_id);
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn inspect(&self, task_id: &str) -> Result<TaskInfo, DriverError> {
        let state = self
            .state(task_id)
            .ok_or_else(|| DriverError::NotFound(task_id.into()))?;
        Ok(TaskInfo {
            task_id: task_id.into(),
            state,
        })
    }

    async fn list(&self) -> Result<Vec<TaskInfo>, DriverError> {
        Ok(self
            .tasks
            .lock()
            .expect("tasks")
            .iter()
            .map(|(id, state)| TaskInfo {
                task_id: id.clone(),
                state: state.clone(),
            })
            .collect())
    }

    async fn logs(
        &self,
        _task_id: &str,
        _tail: Option<usize>,
        _since: Option<Timestamp>,
    ) -> Result<Vec<LogLine>, DriverError> {
        Ok(vec![])
    }
}

/// Polls a condition on something other than the store, with a deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_from_the_manager_stops_its_moved_tasks_when_it_returns() {
    let h = Harness::start(Duration::from_millis(200), true).await;
    let mut server = Server::start(open_service(&h), loopback(), None);
    let addr = server.addr;
    let helper = FakeAgent::start(&h.dispatcher, "helper").await;

    let dir = tempfile::tempdir().expect("temp dir");
    let driver = Arc::new(MemoryDriver::default());
    let remote: Arc<dyn Dispatcher> = Arc::new(remote(&[server.addr()]));
    let mut config = AgentConfig::new(dir.path().join("agent"));
    config.hostname = Some("remote".into());
    config.poll_timeout = Duration::from_secs(1);
    config.resync_interval = Duration::from_millis(200);
    config.status_batch_interval = Duration::from_millis(20);
    let agent = Agent::start(remote, driver.clone(), config)
        .await
        .expect("agent over gRPC");
    let node = agent.node_id();

    let service = h.create_service(sleep_service("web", 2)).await;
    let on_node = |s: &api::State, node: &str| -> Vec<String> {
        s.tasks_by_service(&service)
            .filter(|t| {
                t.node_id.as_deref() == Some(node)
                    && t.desired_state == TaskState::Running
                    && t.status.state == TaskState::Running
            })
            .map(|t| t.meta.id.clone())
            .collect()
    };
    // Spread: one replica here, one on the helper, both reported running.
    let mine = h
        .wait_for("a replica running on the remote agent", |s| {
            let mine = on_node(s, &node);
            (mine.len() == 1 && on_node(s, &helper.node_id).len() == 1).then_some(mine)
        })
        .await;
    assert_eq!(driver.running(), mine, "the agent runs its task");

    // The manager becomes unreachable: the node is marked down and its
    // replica moves to the helper, while the agent keeps it running.
    server.kill().await;
    h.wait_for("the node marked down", |s| {
        s.node(&node)
            .filter(|n| n.status.state == NodeState::Down)
            .map(|_| ())
    })
    .await;
    h.wait_for("both replicas on the helper", |s| {
        (on_node(s, &helper.node_id).len() == 2).then_some(())
    })
    .await;
    assert_eq!(driver.running(), mine, "cut off, the agent cannot know yet");

    // The manager is reachable again: the node is ready, and the agent
    // stops the stale replica and reports it.
    let server = Server::start(open_service(&h), addr, None);
    h.wait_for("the node ready again", |s| {
        s.node(&node)
            .filter(|n| n.status.state == NodeState::Ready)
            .map(|_| ())
    })
    .await;
    h.wait_for("the stale replica reported shut down", |s| {
        s.task(&mine[0])
            .is_none_or(|t| t.status.state == TaskState::Shutdown)
            .then_some(())
    })
    .await;
    eventually("the stale replica stopped", || driver.running().is_empty()).await;
    assert_eq!(*driver.stops.lock().expect("stops"), mine);
    h.store.view(|s| {
        assert_eq!(on_node(s, &helper.node_id).len(), 2);
        assert!(on_node(s, &node).is_empty());
    });

    agent.shutdown().await.expect("agent shutdown");
    helper.stop().await;
    drop(server);
    h.stop().await;
}
