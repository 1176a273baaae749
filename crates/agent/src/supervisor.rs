//! One task's supervisor: walks a task through Swarm's states on the driver,
//! reporting each one, until the task has ended and its end is reported.

use crate::driver::{Driver, DriverError, TaskConfig, TaskExit, TaskRunState};
use api::dispatch::TaskStatusUpdate;
use api::{Task, TaskState, TaskStatus, Timestamp};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Where a supervisor sends its status updates (the agent's batching reporter).
pub type Reports = mpsc::UnboundedSender<TaskStatusUpdate>;

/// How a supervisor finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The task's terminal state was reported.
    Settled,
    /// The supervisor only stopped or removed a task no longer assigned.
    Cleaned,
}

pub struct Supervisor {
    pub driver: Arc<dyn Driver>,
    pub reports: Reports,
    pub task: Task,
    /// Becomes true when the task must stop.
    pub stop: watch::Receiver<bool>,
}

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        state,
        timestamp: Timestamp::now(),
        message: message.to_string(),
        ..TaskStatus::default()
    }
}

/// The status that reports a task's end.
pub fn exit_status(exit: &TaskExit) -> TaskStatus {
    let mut s = if exit.is_success() {
        status(TaskState::Complete, "finished")
    } else {
        let mut s = status(TaskState::Failed, "started");
        s.err = Some(match &exit.error {
            Some(e) => format!("task: {e}"),
            None => format!("task: non-zero exit ({})", exit.exit_code),
        });
        s
    };
    s.timestamp = exit.finished_at;
    s.exit_code = Some(exit.exit_code);
    s
}

impl Supervisor {
    fn report(&self, status: TaskStatus) {
        // The reporter lives as long as the agent; if it is gone the agent is
        // shutting down and nobody is left to tell.
        let _ = self.reports.send(TaskStatusUpdate {
            task_id: self.task.meta.id.clone(),
            status,
        });
    }

    fn failed(&self, state: TaskState, err: &DriverError) {
        let mut s = status(state, "failed");
        s.err = Some(err.to_string());
        self.report(s);
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    fn report_shutdown(&self, exit: Option<&TaskExit>) {
        let mut s = status(TaskState::Shutdown, "shutdown");
        s.exit_code = exit.map(|e| e.exit_code);
        self.report(s);
    }

    /// Runs the supervisor to its end. `found` is what the driver already
    /// holds of the task (after an agent restart).
    pub async fn run(mut self, found: Option<TaskRunState>) -> Outcome {
        let id = self.task.meta.id.clone();
        match found {
            Some(TaskRunState::Exited(exit)) => {
                self.report(exit_status(&exit));
                return Outcome::Settled;
            }
            Some(TaskRunState::Running { pid }) => {
                let mut s = status(TaskState::Running, "started");
                s.pid = pid;
                self.report(s);
            }
            found @ (None | Some(TaskRunState::Created)) => {
                if self.stopping() {
                    self.report_shutdown(None);
                    return Outcome::Settled;
                }
                if found.is_none() {
                    self.report(status(TaskState::Accepted, "accepted"));
                    self.report(status(TaskState::Preparing, "preparing"));
                    let config = TaskConfig::from_task(&self.task);
                    if let Err(e) = self.driver.prepare(&config).await {
                        tracing::warn!(task = %id, error = %e, "prepare failed");
                        let state = if e.is_task_fault() {
                            TaskState::Rejected
                        } else {
                            TaskState::Failed
                        };
                        self.failed(state, &e);
                        return Outcome::Settled;
                    }
                    self.report(status(TaskState::Ready, "prepared"));
                }
                if self.stopping() {
                    self.report_shutdown(None);
                    return Outcome::Settled;
                }
                self.report(status(TaskState::Starting, "starting"));
                match self.driver.start(&id).await {
                    Ok(pid) => {
                        let mut s = status(TaskState::Running, "started");
                        s.pid = Some(pid);
                        self.report(s);
                    }
                    Err(e) => {
                        tracing::warn!(task = %id, error = %e, "start failed");
                        // A start cut short may still have left a process.
                        let _ = self.driver.stop(&id, std::time::Duration::ZERO).await;
                        self.failed(TaskState::Failed, &e);
                        return Outcome::Settled;
                    }
                }
            }
        }

        // Running: wait for its end, or stop it when told to.
        loop {
            if self.stopping() {
                return self.stop_running(&id).await;
            }
            tokio::select! {
                ended = self.driver.wait(&id) => {
                    match ended {
                        Ok(exit) => self.report(exit_status(&exit)),
                        Err(e) => self.failed(TaskState::Failed, &e),
                    }
                    return Outcome::Settled;
                }
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        // The agent dropped the sender: it is going away
                        // without a shutdown, and the task keeps running.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    async fn stop_running(&self, id: &str) -> Outcome {
        match self.driver.stop(id, self.task.spec.stop_grace_period).await {
            Ok(TaskRunState::Exited(exit)) => self.report_shutdown(Some(&exit)),
            Ok(_) => self.report_shutdown(None),
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "stop failed");
                self.failed(TaskState::Failed, &e);
            }
        }
        Outcome::Settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_swarm() {
        let ok = TaskExit {
            exit_code: 0,
            signal: None,
            error: None,
            finished_at: Timestamp(7),
        };
        let s = exit_status(&ok);
        assert_eq!(
            (s.state, s.exit_code, s.err, s.timestamp),
            (TaskState::Complete, Some(0), None, Timestamp(7))
        );
        let s = exit_status(&TaskExit {
            exit_code: 1,
            ..ok.clone()
        });
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.err.as_deref(), Some("task: non-zero exit (1)"));
        let s = exit_status(&TaskExit {
            exit_code: 255,
            error: Some("the shim never started".into()),
            ..ok
        });
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.err.as_deref(), Some("task: the shim never started"));
    }
}
