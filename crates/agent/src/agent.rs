//! The agent: registers the node with the dispatcher, keeps its session alive,
//! long-polls its assignments, reconciles the driver to them (see
//! [`crate::reconcile`]) and reports task status back in batches.
//!
//! Background work is split into small loops that share the current session:
//! heartbeats, the assignment poll, the status reporter, and the reconcile
//! loop that owns every task supervisor. Whoever meets `InvalidSession` asks
//! the session keeper to register again and waits for the new session.
//! Dropping an [`Agent`] without [`Agent::shutdown`] aborts all of it at once
//! and leaves the tasks running under their shims, as a kill -9 would: the
//! next agent over the same data dir adopts them.

use crate::driver::{Driver, DriverError, TaskRunState};
use crate::reconcile::{self, Action, View};
use crate::supervisor::{Outcome, Supervisor};
use api::dispatch::{DispatchError, Dispatcher, LogLine, Session, TaskStatusUpdate};
use api::{NodeDescription, Resources, Task, TaskState, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the agent keeps its node id (`node-id`).
    pub data_dir: PathBuf,
    /// Reported instead of the machine's hostname (several nodes on one machine).
    pub hostname: Option<String>,
    /// Status updates arriving within this interval travel in one call.
    pub status_batch_interval: Duration,
    /// How long one assignments long-poll may wait on the dispatcher.
    pub poll_timeout: Duration,
    /// How often the agent re-reads the driver even without a new assignment set.
    pub resync_interval: Duration,
    /// Ended tasks whose directories (and logs) are kept; older ones are deleted.
    pub keep_ended_tasks: usize,
    /// How long `shutdown` waits for the last status updates to be delivered.
    pub shutdown_flush_timeout: Duration,
}

impl AgentConfig {
    pub fn new(data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            data_dir,
            hostname: None,
            status_batch_interval: Duration::from_millis(50),
            poll_timeout: Duration::from_secs(10),
            resync_interval: Duration::from_secs(5),
            keep_ended_tasks: 100,
            shutdown_flush_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("dispatcher: {0}")]
    Dispatch(#[from] DispatchError),
    #[error("driver: {0}")]
    Driver(#[from] DriverError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The agent's loops ended (it is shutting down).
    #[error("the agent has stopped")]
    Stopped,
}

/// How long registration keeps retrying an unavailable dispatcher in `start`.
const REGISTER_PATIENCE: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Grace given to tasks the agent stops without knowing their spec.
const UNASSIGNED_STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Agent {
    node_id: String,
    driver: Arc<dyn Driver>,
    control: mpsc::Sender<oneshot::Sender<()>>,
    reconciler: Option<JoinHandle<()>>,
    reporter: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    flush_timeout: Duration,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Without shutdown: end every loop and supervisor now, leave the tasks
        // to their shims (what a kill -9 of the agent does).
        for h in self
            .background
            .iter()
            .chain(&self.reconciler)
            .chain(&self.reporter)
        {
            h.abort();
        }
    }
}

/// The current session, and the way to ask for a new one.
#[derive(Clone)]
struct Sessions {
    current: watch::Receiver<Session>,
    invalid: mpsc::UnboundedSender<String>,
}

impl Sessions {
    fn get(&self) -> Session {
        self.current.borrow().clone()
    }

    /// Reports `stale` as rejected and waits until a different session is current.
    async fn renew(&mut self, stale: &Session) -> Session {
        let _ = self.invalid.send(stale.session_id.clone());
        loop {
            let now = self.current.borrow_and_update().clone();
            if now.session_id != stale.session_id {
                return now;
            }
            if self.current.changed().await.is_err() {
                // The keeper is gone: the agent is going down; never return a stale session.
                std::future::pending::<()>().await;
            }
        }
    }
}

fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(BACKOFF_MAX)
}

async fn register(
    dispatcher: &dyn Dispatcher,
    node_id: Option<String>,
    description: &NodeDescription,
    patience: Option<Duration>,
) -> Result<Session, DispatchError> {
    let deadline = patience.map(|p| tokio::time::Instant::now() + p);
    let mut backoff = BACKOFF_MIN;
    loop {
        match dispatcher
            .register(node_id.clone(), description.clone())
            .await
        {
            Ok(s) => return Ok(s),
            Err(DispatchError::Unavailable(e)) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() + backoff > d) {
                    return Err(DispatchError::Unavailable(e));
                }
                tracing::debug!(error = %e, "dispatcher unavailable; registering again");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
            Err(e) => return Err(e),
        }
    }
}

fn describe(config: &AgentConfig) -> NodeDescription {
    let hostname = config.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0);
    NodeDescription {
        hostname,
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        resources: Resources {
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes,
        },
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

impl Agent {
    /// Registers with the dispatcher (re-using the node id saved in
    /// `data_dir/node-id` if any), then runs the session: heartbeats at the
    /// session's period, long-polls assignments, reconciles the driver to them,
    /// reports task status.
    pub async fn start(
        dispatcher: Arc<dyn Dispatcher>,
        driver: Arc<dyn Driver>,
        config: AgentConfig,
    ) -> Result<Agent, AgentError> {
        let io = |context: String| move |source| AgentError::Io { context, source };
        std::fs::create_dir_all(&config.data_dir)
            .map_err(io(format!("creating {}", config.data_dir.display())))?;
        let id_path = config.data_dir.join("node-id");
        let saved = std::fs::read_to_string(&id_path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let description = describe(&config);
        let session = register(
            &*dispatcher,
            saved.clone(),
            &description,
            Some(REGISTER_PATIENCE),
        )
        .await?;
        let node_id = session.node_id.clone();
        if saved.as_deref() != Some(node_id.as_str()) {
            let tmp = config.data_dir.join("node-id.tmp");
            std::fs::write(&tmp, &node_id).map_err(io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &id_path)
                .map_err(io(format!("writing {}", id_path.display())))?;
        }
        tracing::info!(node = %node_id, "agent registered");

        let (session_tx, session_rx) = watch::channel(session);
        let (invalid_tx, invalid_rx) = mpsc::unbounded_channel();
        let sessions = Sessions {
            current: session_rx,
            invalid: invalid_tx,
        };
        let (assign_tx, assign_rx) = mpsc::channel(4);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(1);

        let background = vec![
            tokio::spawn(keep_session(
                dispatcher.clone(),
                session_tx,
                invalid_rx,
                description,
            )),
            tokio::spawn(heartbeat(dispatcher.clone(), sessions.clone())),
            tokio::spawn(poll_assignments(
                dispatcher.clone(),
                sessions.clone(),
                assign_tx,
                config.poll_timeout,
            )),
        ];
        let reporter = tokio::spawn(report(
            dispatcher,
            sessions,
            report_rx,
            config.status_batch_interval,
        ));
        let reconciler = Reconciler {
            driver: driver.clone(),
            reports: report_tx,
            assigned: Vec::new(),
            supervised: BTreeMap::new(),
            settled: BTreeSet::new(),
            workers: JoinSet::new(),
            keep_ended: config.keep_ended_tasks,
        };
        let reconciler =
            tokio::spawn(reconciler.run(assign_rx, control_rx, config.resync_interval));
        Ok(Agent {
            node_id,
            driver,
            control: control_tx,
            reconciler: Some(reconciler),
            reporter: Some(reporter),
            background,
            flush_timeout: config.shutdown_flush_timeout,
        })
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone()
    }

    /// A task's output lines (tail = last N lines, since = only lines written at
    /// or after that time), from the driver's log files. Works for ended tasks
    /// as long as their directories are kept (the newest `keep_ended_tasks`).
    pub async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        since: Option<Timestamp>,
    ) -> Result<Vec<LogLine>, AgentError> {
        Ok(self.driver.logs(task_id, tail, since).await?)
    }

    /// Stops every task it runs (reporting Shutdown), delivers the last status
    /// updates (waiting at most `shutdown_flush_timeout`), then ends the session.
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.control
            .send(done_tx)
            .await
            .map_err(|_| AgentError::Stopped)?;
        done_rx.await.map_err(|_| AgentError::Stopped)?;
        if let Some(r) = self.reconciler.take() {
            // It has finished its work; its end drops the last report sender.
            let _ = r.await;
        }
        if let Some(r) = self.reporter.take() {
            if tokio::time::timeout(self.flush_timeout, r).await.is_err() {
                tracing::warn!("some task status updates were not delivered before shutdown");
            }
        }
        Ok(())
        // Drop aborts the session loops.
    }
}

/// Registers again whenever a loop reports the current session invalid.
async fn keep_session(
    dispatcher: Arc<dyn Dispatcher>,
    current: watch::Sender<Session>,
    mut invalid: mpsc::UnboundedReceiver<String>,
    description: NodeDescription,
) {
    while let Some(stale) = invalid.recv().await {
        let session = current.borrow().clone();
        if session.session_id != stale {
            continue; // Already renewed after an earlier report.
        }
        let mut backoff = BACKOFF_MIN;
        loop {
            match register(
                &*dispatcher,
                Some(session.node_id.clone()),
                &description,
                None,
            )
            .await
            {
                Ok(s) => {
                    tracing::info!(node = %s.node_id, "session renewed");
                    current.send_replace(s);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registering again failed");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                }
            }
        }
    }
}

async fn heartbeat(dispatcher: Arc<dyn Dispatcher>, mut sessions: Sessions) {
    let mut session = sessions.get();
    loop {
        tokio::time::sleep(session.heartbeat_period).await;
        session = match dispatcher.heartbeat(&session).await {
            Ok(()) => sessions.get(),
            Err(DispatchError::InvalidSession(_)) => sessions.renew(&session).await,
            Err(DispatchError::Unavailable(e)) => {
                tracing::debug!(error = %e, "heartbeat failed");
                sessions.get()
            }
        };
    }
}

async fn poll_assignments(
    dispatcher: Arc<dyn Dispatcher>,
    mut sessions: Sessions,
    out: mpsc::Sender<Vec<Task>>,
    timeout: Duration,
) {
    let mut after: Option<u64> = None;
    let mut session = sessions.get();
    let mut backoff = BACKOFF_MIN;
    loop {
        let now = sessions.get();
        if now.session_id != session.session_id {
            // A new session starts from the full set.
            session = now;
            after = None;
        }
        match dispatcher.assignments(&session, after, timeout).await {
            Ok(a) => {
                backoff = BACKOFF_MIN;
                if after != Some(a.index) || after.is_none() {
                    after = Some(a.index);
                    if out.send(a.tasks).await.is_err() {
                        return;
                    }
                }
            }
            Err(DispatchError::InvalidSession(_)) => {
                session = sessions.renew(&session).await;
                after = None;
            }
            Err(DispatchError::Unavailable(e)) => {
                tracing::debug!(error = %e, "assignments unavailable");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
            }
        }
    }
}

/// Sends status updates in batches: everything that arrives within `interval`
/// of the first one goes in one call, retried until the dispatcher takes it.
/// Ends when every sender is gone and the last batch is delivered.
async fn report(
    dispatcher: Arc<dyn Dispatcher>,
    mut sessions: Sessions,
    mut updates: mpsc::UnboundedReceiver<TaskStatusUpdate>,
    interval: Duration,
) {
    while let Some(first) = updates.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + interval;
        while let Ok(Some(u)) = tokio::time::timeout_at(deadline, updates.recv()).await {
            batch.push(u);
        }
        let mut session = sessions.get();
        let mut backoff = BACKOFF_MIN;
        loop {
            match dispatcher.update_task_status(&session, batch.clone()).await {
                Ok(()) => break,
                Err(DispatchError::InvalidSession(_)) => session = sessions.renew(&session).await,
                Err(DispatchError::Unavailable(e)) => {
                    tracing::debug!(error = %e, "status update unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                    session = sessions.get();
                }
            }
        }
    }
}

/// Owns every task supervisor; reconciles on each new assignment set, on each
/// supervisor's end, and every resync interval.
struct Reconciler {
    driver: Arc<dyn Driver>,
    reports: mpsc::UnboundedSender<TaskStatusUpdate>,
    assigned: Vec<Task>,
    /// The stop signal of every supervisor at work.
    supervised: BTreeMap<String, watch::Sender<bool>>,
    settled: BTreeSet<String>,
    workers: JoinSet<(String, Outcome)>,
    keep_ended: usize,
}

/// How long the reconciler gathers news before a pass.
const COALESCE: Duration = Duration::from_millis(20);

impl Reconciler {
    async fn run(
        mut self,
        mut assignments: mpsc::Receiver<Vec<Task>>,
        mut control: mpsc::Receiver<oneshot::Sender<()>>,
        resync: Duration,
    ) {
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                Some(tasks) = assignments.recv() => self.assigned = tasks,
                Some(joined) = self.workers.join_next() => self.finished(joined),
                _ = tick.tick() => {}
                msg = control.recv() => break msg,
            }
            // A pass reads every task directory, so one pass serves a burst of
            // news: a thousand tasks stopping at once would otherwise cost a
            // thousand passes over every directory (quadratic, and it delays
            // the start of new tasks behind it). Gather what arrives within the
            // window, keep only the newest assignment set, then reconcile once.
            tokio::time::sleep(COALESCE).await;
            while let Ok(tasks) = assignments.try_recv() {
                self.assigned = tasks;
            }
            while let Some(joined) = self.workers.try_join_next() {
                self.finished(joined);
            }
            self.reconcile().await;
        };
        // Shutdown: every assigned task is to be stopped and reported Shutdown,
        // everything else the driver runs is stopped too.
        for t in &mut self.assigned {
            t.desired_state = TaskState::Shutdown;
        }
        self.reconcile().await;
        while let Some(joined) = self.workers.join_next().await {
            self.finished(joined);
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn finished(&mut self, joined: Result<(String, Outcome), tokio::task::JoinError>) {
        match joined {
            Ok((id, outcome)) => {
                self.supervised.remove(&id);
                if outcome == Outcome::Settled {
                    self.settled.insert(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "a task supervisor failed"),
        }
    }

    async fn reconcile(&mut self) {
        let found: BTreeMap<String, TaskRunState> = match self.driver.list().await {
            Ok(list) => list.into_iter().map(|t| (t.task_id, t.state)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing the driver's tasks failed");
                return;
            }
        };
        // Forget settled tasks once the dispatcher no longer lists them.
        let assigned_ids: BTreeSet<&str> =
            self.assigned.iter().map(|t| t.meta.id.as_str()).collect();
        self.settled.retain(|id| assigned_ids.contains(id.as_str()));
        let supervised: BTreeMap<String, bool> = self
            .supervised
            .iter()
            .map(|(id, tx)| (id.clone(), *tx.borrow()))
            .collect();
        let view = View {
            assigned: &self.assigned,
            found: &found,
            supervised: &supervised,
            settled: &self.settled,
        };
        let actions = reconcile::plan(&view);
        let prune = reconcile::prune_ended(&view, self.keep_ended);
        for action in actions {
            self.execute(action);
        }
        for id in prune {
            if let Err(e) = self.driver.remove(&id).await {
                tracing::warn!(task = %id, error = %e, "deleting an ended task failed");
            }
        }
    }

    fn execute(&mut self, action: Action) {
        let driver = self.driver.clone();
        match action {
            Action::Supervise { task, found, stop } => {
                let id = task.meta.id.clone();
                let (tx, rx) = watch::channel(stop);
                self.supervised.insert(id.clone(), tx);
                let supervisor = Supervisor {
                    driver,
                    reports: self.reports.clone(),
                    task: *task,
                    stop: rx,
                };
                self.workers
                    .spawn(async move { (id, supervisor.run(found).await) });
            }
            Action::Stop { task_id } => {
                if let Some(tx) = self.supervised.get(&task_id) {
                    tx.send_replace(true);
                }
            }
            Action::StopUnassigned { task_id } => {
                self.supervised
                    .insert(task_id.clone(), watch::channel(true).0);
                self.workers.spawn(async move {
                    if let Err(e) = driver.stop(&task_id, UNASSIGNED_STOP_GRACE).await {
                        tracing::warn!(task = %task_id, error = %e, "stopping an unassigned task failed");
                    }
                    (task_id, Outcome::Cleaned)
                });
            }
            Action::Remove { task_id } => {
                self.supervised
                    .insert(task_id.clone(), watch::channel(true).0);
                self.workers.spawn(async move {
                    if let Err(e) = driver.remove(&task_id).await {
                        tracing::warn!(task = %task_id, error = %e, "removing an unassigned task failed");
                    }
                    (task_id, Outcome::Cleaned)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records update calls; fails the first ones as told.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<(String, Vec<String>)>>,
        unavailable: Mutex<usize>,
        valid_session: Mutex<String>,
    }

    #[async_trait::async_trait]
    impl Dispatcher for Recorder {
        async fn register(
            &self,
            _: Option<String>,
            _: NodeDescription,
        ) -> Result<Session, DispatchError> {
            let s = session("s2");
            *self.valid_session.lock().expect("lock") = s.session_id.clone();
            Ok(s)
        }
        async fn assignments(
            &self,
            _: &Session,
            _: Option<u64>,
            _: Duration,
        ) -> Result<api::dispatch::Assignments, DispatchError> {
            Err(DispatchError::Unavailable("not in this test".into()))
        }
        async fn update_task_status(
            &self,
            s: &Session,
            updates: Vec<TaskStatusUpdate>,
        ) -> Result<(), DispatchError> {
            if *self.valid_session.lock().expect("lock") != s.session_id {
                return Err(DispatchError::InvalidSession(s.session_id.clone()));
            }
            let mut left = self.unavailable.lock().expect("lock");
            if *left > 0 {
                *left -= 1;
                return Err(DispatchError::Unavailable("busy".into()));
            }
            let ids = updates.into_iter().map(|u| u.task_id).collect();
            self.calls
                .lock()
                .expect("lock")
                .push((s.session_id.clone(), ids));
            Ok(())
        }
        async fn heartbeat(&self, _: &Session) -> Result<(), DispatchError> {
            Ok(())
        }
    }

    fn session(id: &str) -> Session {
        Session {
            node_id: "n1".into(),
            session_id: id.into(),
            heartbeat_period: Duration::from_secs(5),
        }
    }

    fn update(id: &str) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: id.into(),
            status: api::TaskStatus::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reporter_batches_retries_and_renews_the_session() {
        let recorder = Arc::new(Recorder::default());
        *recorder.valid_session.lock().expect("lock") = "s1".into();
        *recorder.unavailable.lock().expect("lock") = 2;
        let (session_tx, session_rx) = watch::channel(session("s1"));
        let (invalid_tx, invalid_rx) = mpsc::unbounded_channel();
        let sessions = Sessions {
            current: session_rx,
            invalid: invalid_tx,
        };
        let keeper = tokio::spawn(keep_session(
            recorder.clone(),
            session_tx,
            invalid_rx,
            NodeDescription::default(),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report(
            recorder.clone(),
            sessions,
            rx,
            Duration::from_millis(50),
        ));

        // Updates sent together travel together, after two refusals.
        for id in ["a", "b", "c"] {
            tx.send(update(id)).expect("send");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Later ones form the next batch; the session is then rejected once and renewed.
        *recorder.valid_session.lock().expect("lock") = "expired".into();
        tx.send(update("d")).expect("send");
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(update("e")).expect("send");
        drop(tx);
        tokio::time::timeout(Duration::from_secs(60), reporter)
            .await
            .expect("the reporter ends once its senders are gone")
            .expect("reporter");
        let calls = recorder.calls.lock().expect("lock").clone();
        assert_eq!(
            calls,
            vec![
                (
                    "s1".to_string(),
                    vec!["a".to_string(), "b".into(), "c".into()]
                ),
                ("s2".to_string(), vec!["d".to_string(), "e".into()]),
            ]
        );
        keeper.abort();
    }
}
