//! An in-memory dispatcher for the agent tests: it holds the tasks, serves the
//! assignment set of its one node, applies status updates as the store would
//! (never backwards), and can be told to fail calls.

use api::dispatch::{Assignments, DispatchError, Dispatcher, Session, TaskStatusUpdate};
use api::{Meta, NodeDescription, Task, TaskSpec, TaskState, TaskStatus};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Default)]
pub struct Inner {
    pub tasks: BTreeMap<String, Task>,
    /// Every update received, in order.
    pub updates: Vec<TaskStatusUpdate>,
    /// Node ids passed to register, in order.
    pub registrations: Vec<Option<String>>,
    pub session_id: Option<String>,
    pub node_id: Option<String>,
    /// The next this many status updates fail with Unavailable.
    pub fail_updates: usize,
    pub heartbeats: usize,
}

pub struct FakeDispatcher {
    pub inner: Mutex<Inner>,
    index: watch::Sender<u64>,
}

impl FakeDispatcher {
    pub fn new() -> FakeDispatcher {
        FakeDispatcher {
            inner: Mutex::new(Inner::default()),
            index: watch::channel(1).0,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = f(&mut self.inner.lock().expect("lock"));
        self.index.send_modify(|i| *i += 1);
        r
    }

    /// Assigns a new task running `argv` to the node; returns its id.
    pub fn assign(&self, argv: &[&str]) -> String {
        let id = api::new_id();
        self.with(|s| {
            let task = Task {
                meta: Meta::new(id.clone()),
                service_id: "svc".into(),
                slot: s.tasks.len() as u64 + 1,
                node_id: s.node_id.clone(),
                spec: TaskSpec::exec(argv.iter().copied()),
                spec_version: 1,
                desired_state: TaskState::Running,
                status: TaskStatus {
                    state: TaskState::Assigned,
                    ..TaskStatus::default()
                },
                restarts: vec![],
            };
            s.tasks.insert(id.clone(), task);
        });
        id
    }

    pub fn set_desired(&self, id: &str, state: TaskState) {
        self.with(|s| s.tasks.get_mut(id).expect("task").desired_state = state);
    }

    pub fn delete(&self, id: &str) {
        self.with(|s| s.tasks.remove(id));
    }

    pub fn status(&self, id: &str) -> Option<TaskStatus> {
        self.inner
            .lock()
            .expect("lock")
            .tasks
            .get(id)
            .map(|t| t.status.clone())
    }

    /// The states reported for a task, in order.
    pub fn reported(&self, id: &str) -> Vec<TaskState> {
        let s = self.inner.lock().expect("lock");
        s.updates
            .iter()
            .filter(|u| u.task_id == id)
            .map(|u| u.status.state)
            .collect()
    }

    /// Waits until the task's status is `state` and returns it.
    pub async fn wait_state(&self, id: &str, state: TaskState) -> TaskStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.status(id) {
                if s.state == state {
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "task {id} is {:?}, not {state:?}; reported {:?}",
                    s,
                    self.reported(id)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn invalidate_session(&self) {
        self.with(|s| s.session_id = None);
    }

    fn check(&self, session: &Session) -> Result<(), DispatchError> {
        let s = self.inner.lock().expect("lock");
        if s.session_id.as_deref() != Some(session.session_id.as_str()) {
            return Err(DispatchError::InvalidSession(session.session_id.clone()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Dispatcher for FakeDispatcher {
    async fn register(
        &self,
        node_id: Option<String>,
        _description: NodeDescription,
    ) -> Result<Session, DispatchError> {
        let session = self.with(|s| {
            s.registrations.push(node_id.clone());
            let node = node_id
                .or_else(|| s.node_id.clone())
                .unwrap_or_else(api::new_id);
            s.node_id = Some(node.clone());
            let session_id = api::new_id();
            s.session_id = Some(session_id.clone());
            Session {
                node_id: node,
                session_id,
                heartbeat_period: Duration::from_millis(200),
            }
        });
        Ok(session)
    }

    async fn assignments(
        &self,
        session: &Session,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Assignments, DispatchError> {
        self.check(session)?;
        let mut rx = self.index.subscribe();
        if let Some(after) = after {
            let _ = tokio::time::timeout(timeout, rx.wait_for(|i| *i > after)).await;
        }
        self.check(session)?;
        let index = *rx.borrow();
        let s = self.inner.lock().expect("lock");
        let tasks = s
            .tasks
            .values()
            .filter(|t| t.node_id.as_deref() == Some(session.node_id.as_str()))
            .filter(|t| !t.status.state.is_terminal())
            .cloned()
            .collect();
        Ok(Assignments { index, tasks })
    }

    async fn update_task_status(
        &self,
        session: &Session,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError> {
        self.check(session)?;
        {
            let mut s = self.inner.lock().expect("lock");
            if s.fail_updates > 0 {
                s.fail_updates -= 1;
                return Err(DispatchError::Unavailable("test says no".into()));
            }
        }
        self.with(|s| {
            for u in updates {
                if let Some(t) = s.tasks.get_mut(&u.task_id) {
                    if u.status.state >= t.status.state {
                        t.status = u.status.clone();
                    }
                }
                s.updates.push(u);
            }
        });
        Ok(())
    }

    async fn heartbeat(&self, session: &Session) -> Result<(), DispatchError> {
        self.check(session)?;
        self.inner.lock().expect("lock").heartbeats += 1;
        Ok(())
    }
}
