//! The conversation between an agent and the dispatcher.
//!
//! The agent never touches the store: it registers its node, waits for the set
//! of tasks assigned to it, and reports what it observes. [`Dispatcher`] is the
//! manager's side of that conversation. On a single node the agent calls it in
//! process; across machines the same calls travel over mTLS RPC.

use crate::object::{NodeDescription, Task, TaskStatus};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An open session of one agent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub node_id: String,
    pub session_id: String,
    /// How often the agent must heartbeat to stay ready.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    #[serde(with = "crate::duration")]
    pub heartbeat_period: Duration,
}

/// The full set of tasks the node must account for: every task assigned to it
/// whose desired state is not yet reached (run it, or stop it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    /// Store index this set was taken at; pass it back to wait for the next change.
    pub index: u64,
    pub tasks: Vec<Task>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusUpdate {
    pub task_id: String,
    pub status: TaskStatus,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DispatchError {
    /// The session is unknown or expired: register again.
    #[error("session is not valid: {0}")]
    InvalidSession(String),
    /// The manager cannot serve now (no leader, store unavailable): retry with backoff.
    #[error("dispatcher unavailable: {0}")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Registers (or re-registers, with its previous `node_id`) a node and opens a session.
    async fn register(
        &self,
        node_id: Option<String>,
        description: NodeDescription,
    ) -> Result<Session, DispatchError>;

    /// Returns the node's assignments once the store has moved past `after`
    /// (at once when `after` is `None`), or the unchanged set after `timeout`.
    async fn assignments(
        &self,
        session: &Session,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Assignments, DispatchError>;

    /// Records observed task states; the dispatcher may batch them.
    async fn update_task_status(
        &self,
        session: &Session,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), DispatchError>;

    /// Keeps the session (and the node's ready state) alive.
    async fn heartbeat(&self, session: &Session) -> Result<(), DispatchError>;
}

/// One line of a task's output.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub task_id: String,
    pub time: crate::Timestamp,
    /// "stdout" or "stderr".
    pub stream: String,
    pub line: String,
}
