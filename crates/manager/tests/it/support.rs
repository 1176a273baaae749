//! The test harness: a one-node store in a temporary directory with the
//! manager's control loop and dispatcher, a fake agent, and waits on store
//! conditions with a deadline.

use api::dispatch::{DispatchError, Dispatcher, Session, TaskStatusUpdate};
use api::{Op, Service, ServiceMode, ServiceSpec, State, Task, TaskSpec, TaskState, TaskStatus};
use manager::{DispatcherConfig, LocalDispatcher, Manager, ManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Store, StoreConfig, StoreError};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long any awaited condition may take; generous, as other builds share
/// the machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub store: Store,
    pub manager: Option<Manager>,
    pub dispatcher: LocalDispatcher,
    dir: tempfile::TempDir,
}

impl Harness {
    /// A leader store holding a cluster object with this heartbeat period,
    /// a dispatcher, and the control loop if `with_manager`.
    pub async fn start(heartbeat_period: Duration, with_manager: bool) -> Harness {
        Harness::start_with(
            heartbeat_period,
            with_manager,
            DispatcherConfig::new(api::NodeRole::Manager),
        )
        .await
    }

    /// As [`Harness::start`], with a dispatcher configured by `config` (a
    /// gossip view, for instance).
    pub async fn start_with(
        heartbeat_period: Duration,
        with_manager: bool,
        config: DispatcherConfig,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_store(&dir).await;
        let mut cluster = api::Cluster::new("test");
        cluster.heartbeat_period = heartbeat_period;
        store
            .update(vec![Op::Create(cluster.into())])
            .await
            .expect("create the cluster object");
        let manager = if with_manager {
            Some(Manager::start(store.clone(), ManagerConfig::default()).await)
        } else {
            None
        };
        let dispatcher = LocalDispatcher::with_config(store.clone(), config);
        Harness {
            store,
            manager,
            dispatcher,
            dir,
        }
    }

    /// Stops the manager and the store and starts them again on the same
    /// data, with a new dispatcher that knows no session, as after a crash.
    pub async fn restart(self) -> Harness {
        let Harness {
            store,
            manager,
            dispatcher,
            dir,
        } = self;
        if let Some(m) = &manager {
            eprintln!("manager before restart: {:?}", m.stats());
        }
        let with_manager = manager.is_some();
        if let Some(m) = manager {
            m.shutdown().await;
        }
        drop(dispatcher);
        store.shutdown().await.expect("store shutdown");
        drop(store);
        let store = open_store(&dir).await;
        let manager = if with_manager {
            Some(Manager::start(store.clone(), ManagerConfig::default()).await)
        } else {
            None
        };
        let dispatcher = LocalDispatcher::new(store.clone(), api::NodeRole::Manager);
        Harness {
            store,
            manager,
            dispatcher,
            dir,
        }
    }

    pub async fn stop(self) {
        if let Some(m) = self.manager {
            m.shutdown().await;
        }
        self.store.shutdown().await.expect("store shutdown");
    }

    /// Waits until `f` returns `Some` on the state, re-checking at every change.
    pub async fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&State) -> Option<T>) -> T {
        let mut changes = self.store.watch();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(v) = self.store.view(&mut f) {
                return v;
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => panic!(
                    "timed out after {TIMEOUT:?} waiting for {what}; tasks:\n{}",
                    self.store.view(describe_tasks)
                ),
                Ok(Err(RecvError::Closed)) => panic!("the store closed while waiting for {what}"),
                Ok(_) => {}
            }
        }
    }

    pub async fn create_service(&self, spec: ServiceSpec) -> String {
        let id = api::new_id();
        let service = Service::new(&id, spec);
        self.store
            .update(vec![Op::Create(service.into())])
            .await
            .expect("create service");
        id
    }

    /// Changes a service as the controller does, retrying if the manager
    /// wrote it in between.
    pub async fn modify_service(&self, id: &str, f: impl Fn(&mut Service)) {
        for _ in 0..20 {
            let mut svc = self
                .store
                .view(|s| s.service(id).cloned())
                .expect("service exists");
            f(&mut svc);
            match self.store.update(vec![Op::Update(svc.into())]).await {
                Ok(_) => return,
                Err(StoreError::Apply(_)) => continue,
                Err(e) => panic!("updating service {id}: {e}"),
            }
        }
        panic!("service {id} kept changing under the test");
    }
}

async fn open_store(dir: &tempfile::TempDir) -> Store {
    // The previous process's lock on the log file may take a moment to go.
    let deadline = Instant::now() + TIMEOUT;
    let store = loop {
        match Store::open(StoreConfig::new(dir.path().join("store"))).await {
            Ok(store) => break store,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("opening the store: {e}"),
        }
    };
    eventually("the store to lead", || store.is_leader()).await;
    store
}

/// Polls a condition that has no change to wait on, with a deadline.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn describe_tasks(s: &State) -> String {
    s.tasks()
        .map(|t| {
            format!(
                "  {} svc={} slot={} node={:?} v{} desired={} status={}\n",
                t.meta.id,
                t.service_id,
                t.slot,
                t.node_id,
                t.spec_version,
                t.desired_state,
                t.status.state
            )
        })
        .collect()
}

/// A replicated service of `sleep 1000` with short delays, so that restarts
/// and updates happen within a test's time.
pub fn sleep_service(name: &str, replicas: u64) -> ServiceSpec {
    let mut task = TaskSpec::exec(["sleep", "1000"]);
    task.restart_policy.delay = Duration::from_millis(100);
    let mut spec = ServiceSpec {
        name: name.into(),
        labels: Default::default(),
        mode: ServiceMode::Replicated { replicas },
        task_template: task,
        update_config: Default::default(),
        rollback_config: Default::default(),
    };
    spec.update_config.monitor = Duration::from_millis(100);
    spec.rollback_config.monitor = Duration::from_millis(100);
    spec
}

pub fn tasks_of<'a>(s: &'a State, service_id: &str) -> Vec<&'a Task> {
    s.tasks_by_service(service_id).collect()
}

pub fn status(state: TaskState) -> TaskStatus {
    TaskStatus {
        state,
        timestamp: api::Timestamp::now(),
        ..TaskStatus::default()
    }
}

pub fn description(hostname: &str) -> api::NodeDescription {
    api::NodeDescription {
        hostname: hostname.into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        resources: api::Resources {
            nano_cpus: 2_000_000_000,
            memory_bytes: 4 << 30,
        },
        version: "test".into(),
    }
}

/// An agent that runs nothing: it long-polls its assignments and reports each
/// task started (Accepted, Starting, Running) or, when asked to stop it,
/// Shutdown, as a real agent would once its processes did so.
pub struct FakeAgent {
    pub node_id: String,
    session: Arc<Mutex<Session>>,
    heartbeats: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    loops: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeAgent {
    pub async fn start(dispatcher: &LocalDispatcher, hostname: &str) -> FakeAgent {
        FakeAgent::start_as(dispatcher, hostname, None).await
    }

    /// An agent that registers with the node id it had before, as a
    /// restarted agent does.
    pub async fn start_as(
        dispatcher: &LocalDispatcher,
        hostname: &str,
        node_id: Option<String>,
    ) -> FakeAgent {
        let d = dispatcher.clone();
        let first = d
            .register(node_id, description(hostname))
            .await
            .expect("register");
        let node_id = first.node_id.clone();
        let session = Arc::new(Mutex::new(first));
        let heartbeats = Arc::new(AtomicBool::new(true));
        let (stop, stop_rx) = watch::channel(false);
        let run = tokio::spawn(run(
            d.clone(),
            session.clone(),
            hostname.to_string(),
            stop_rx.clone(),
        ));
        let beat = tokio::spawn(heartbeat(d, session.clone(), heartbeats.clone(), stop_rx));
        FakeAgent {
            node_id,
            session,
            heartbeats,
            stop,
            loops: vec![run, beat],
        }
    }

    pub fn session(&self) -> Session {
        lock(&self.session).clone()
    }

    pub fn set_heartbeats(&self, on: bool) {
        self.heartbeats.store(on, Ordering::SeqCst);
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for l in self.loops {
            l.await.expect("fake agent loop");
        }
    }
}

fn lock(s: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the fake agent reports for one assigned task.
fn reports(task: &Task) -> Vec<TaskStatusUpdate> {
    let update = |state| TaskStatusUpdate {
        task_id: task.meta.id.clone(),
        status: status(state),
    };
    if task.desired_state > TaskState::Running {
        if task.status.state.is_terminal() {
            vec![]
        } else {
            vec![update(TaskState::Shutdown)]
        }
    } else if task.status.state < TaskState::Running {
        vec![
            update(TaskState::Accepted),
            update(TaskState::Starting),
            update(TaskState::Running),
        ]
    } else {
        vec![]
    }
}

async fn run(
    d: LocalDispatcher,
    session: Arc<Mutex<Session>>,
    hostname: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut after = None;
    loop {
        let s = lock(&session).clone();
        let result = tokio::select! {
            r = d.assignments(&s, after, Duration::from_secs(1)) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(a) => {
                after = Some(a.index);
                let updates: Vec<_> = a.tasks.iter().flat_map(reports).collect();
                if !updates.is_empty() {
                    if let Err(e) = d.update_task_status(&s, updates).await {
                        eprintln!("fake agent: status report failed: {e}");
                    }
                }
            }
            Err(DispatchError::InvalidSession(_)) => {
                match d
                    .register(Some(s.node_id.clone()), description(&hostname))
                    .await
                {
                    Ok(new) => *lock(&session) = new,
                    Err(e) => eprintln!("fake agent: register failed: {e}"),
                }
                after = None;
            }
            Err(DispatchError::Unavailable(e)) => {
                // A real agent backs off here; so does the fake one.
                eprintln!("fake agent: dispatcher unavailable: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn heartbeat(
    d: LocalDispatcher,
    session: Arc<Mutex<Session>>,
    on: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let s = lock(&session).clone();
        tokio::select! {
            _ = tokio::time::sleep(s.heartbeat_period / 3) => {}
            _ = stop.changed() => return,
        }
        if on.load(Ordering::SeqCst) {
            // A failed heartbeat is retried at the next tick, as an agent does.
            let _ = d.heartbeat(&s).await;
        }
    }
}
