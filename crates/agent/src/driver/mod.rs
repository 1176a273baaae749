//! The runtime driver contract: how the agent runs one task, whatever runs it
//! (supervised processes now; the Docker Engine and OCI/runc later).
//!
//! A driver keeps its tasks' state where it survives the agent (on disk, or in
//! the engine it drives), so a new driver instance over the same root finds
//! every task again: [`Driver::list`] is how the agent adopts tasks after a
//! restart. Every implementation must pass [`conformance`].

pub mod conformance;
pub mod exec;

use api::dispatch::LogLine;
use api::{Task, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a driver needs to run one task, taken from its [`api::TaskSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub task_id: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries added to the driver's minimal environment.
    pub env: Vec<String>,
    /// Working directory; the driver's own per-task directory when `None`.
    pub dir: Option<String>,
    /// How long a stop waits after SIGTERM before SIGKILL.
    #[serde(with = "api::duration")]
    pub stop_grace_period: Duration,
}

impl TaskConfig {
    pub fn from_task(task: &Task) -> TaskConfig {
        TaskConfig {
            task_id: task.meta.id.clone(),
            argv: task.spec.argv(),
            env: task.spec.env.clone(),
            dir: task.spec.dir.clone(),
            stop_grace_period: task.spec.stop_grace_period,
        }
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskExit {
    /// The exit code; 128 + n for a task killed by signal n (the shell's convention).
    pub exit_code: i32,
    /// The signal that killed the task, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Set when the task could not start or its end could not be observed;
    /// the exit code is then not the program's own.
    #[serde(default)]
    pub error: Option<String>,
    pub finished_at: Timestamp,
}

impl TaskExit {
    /// The program ran and exited with 0.
    pub fn is_success(&self) -> bool {
        self.exit_code == 0 && self.error.is_none()
    }
}

/// What a driver knows of one of its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskRunState {
    /// Prepared, never started.
    Created,
    /// Started and not ended. `pid` is the task's main process (which leads the
    /// task's process group), when the driver knows it already.
    Running {
        pid: Option<u32>,
    },
    Exited(TaskExit),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub task_id: String,
    pub state: TaskRunState,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The task itself is at fault (its program does not exist, its working
    /// directory is missing, …): the task fails with this message, the node is fine.
    #[error("{0}")]
    Task(String),
    #[error("no task {0} in this driver")]
    NotFound(String),
    /// The operation does not fit the task's state (start twice, …).
    #[error("task {task_id} is {state}: cannot {op}")]
    InvalidState {
        task_id: String,
        state: &'static str,
        op: &'static str,
    },
    /// The node is at fault: its disk, its process table, its runtime.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The driver's helper (the exec driver's shim) misbehaved: the node's fault.
    #[error("runtime: {0}")]
    Runtime(String),
}

impl DriverError {
    /// True when the task, not the node, caused the error: the agent then fails
    /// (or rejects) the task with the message instead of treating the node as broken.
    pub fn is_task_fault(&self) -> bool {
        matches!(self, DriverError::Task(_))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> DriverError {
        DriverError::Io {
            context: context.into(),
            source,
        }
    }
}

/// One runtime. All calls are keyed by task id; a driver never runs two tasks
/// with the same id. Calls for different tasks may run concurrently.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A short name for logs ("exec").
    fn name(&self) -> &'static str;

    /// Creates the task (directory, configuration) without running anything,
    /// and checks what can be checked before start (program found, working
    /// directory exists): such problems are [`DriverError::Task`].
    /// Preparing a task that is already prepared and not started is a no-op.
    async fn prepare(&self, config: &TaskConfig) -> Result<(), DriverError>;

    /// Starts a prepared task and returns the pid of its main process once it runs.
    async fn start(&self, task_id: &str) -> Result<u32, DriverError>;

    /// Waits until the task ends and returns how. Works for tasks this instance
    /// did not start (adopted after a restart) and for tasks that ended already.
    async fn wait(&self, task_id: &str) -> Result<TaskExit, DriverError>;

    /// Stops a running task: SIGTERM to all its processes, then SIGKILL after
    /// `grace`; returns once nothing of the task runs any more, with how it ended.
    /// Stopping a task that is not running returns its state without acting.
    async fn stop(&self, task_id: &str, grace: Duration) -> Result<TaskRunState, DriverError>;

    /// Deletes the task and everything kept for it (logs included); kills it first
    /// if it still runs.
    async fn remove(&self, task_id: &str) -> Result<(), DriverError>;

    async fn inspect(&self, task_id: &str) -> Result<TaskInfo, DriverError>;

    /// Every task the driver holds, found afresh from where it keeps them (so a new
    /// instance over the same root sees what an old one started).
    async fn list(&self) -> Result<Vec<TaskInfo>, DriverError>;

    /// The task's output, oldest first: the last `tail` lines, of those written at
    /// or after `since`.
    async fn logs(
        &self,
        task_id: &str,
        tail: Option<usize>,
        since: Option<Timestamp>,
    ) -> Result<Vec<LogLine>, DriverError>;
}
