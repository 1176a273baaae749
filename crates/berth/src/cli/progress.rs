//! Waiting for a service to converge after create/update/scale/rollback, with
//! per-replica progress as `docker service create` shows it.

use crate::client::Client;
use anyhow::bail;
use api::{ServiceMode, Task, TaskState, UpdateState};
use controller::wire::ServiceWithStatus;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Per-replica lines are drawn up to this many replicas; above, only totals.
const MAX_LINES: usize = 20;

/// What the tasks of a service amount to at one look.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    pub desired: u64,
    pub running: u64,
    /// Tasks of an older spec, or beyond the replica count, still not stopped.
    pub stopping: u64,
    /// slot (or node for global) → state of its current task, with its error.
    pub slots: BTreeMap<String, (TaskState, Option<String>)>,
}

impl Progress {
    pub fn of(s: &ServiceWithStatus, tasks: &[Task]) -> Progress {
        let v = s.service.spec_version;
        let mut slots = BTreeMap::new();
        let mut running = 0;
        let mut stopping = 0;
        for t in tasks {
            if super::service::is_current(t, v) {
                if t.status.state == TaskState::Running {
                    running += 1;
                }
                let key = if t.slot > 0 {
                    format!("{:>5}", t.slot)
                } else {
                    api::id::short(t.node_id.as_deref().unwrap_or("?")).to_string()
                };
                // Several tasks of one slot: the newest speaks for it.
                slots.insert(key, (t.status.state, t.status.err.clone()));
            } else if !t.status.state.is_terminal() && t.status.state >= TaskState::Assigned {
                stopping += 1;
            }
        }
        let desired = match s.service.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::Global => slots.len() as u64,
        };
        Progress {
            desired,
            running,
            stopping,
            slots,
        }
    }

    pub fn converged(&self) -> bool {
        self.running == self.desired
            && self.stopping == 0
            && self.slots.len() as u64 == self.desired
    }

    fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "overall progress: {} out of {} tasks",
            self.running, self.desired
        )];
        if self.slots.len() <= MAX_LINES {
            for (slot, (state, err)) in &self.slots {
                let bar = bar(*state);
                let err = err.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                out.push(format!(
                    "{}/{}: {:<10} {bar}{err}",
                    slot.trim(),
                    self.desired,
                    state.as_str()
                ));
            }
        } else {
            let mut by_state: BTreeMap<TaskState, u64> = BTreeMap::new();
            for (s, _) in self.slots.values() {
                *by_state.entry(*s).or_default() += 1;
            }
            let parts: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
            out.push(format!("tasks: {}", parts.join(", ")));
        }
        if self.stopping > 0 {
            out.push(format!("stopping: {} old tasks", self.stopping));
        }
        out
    }
}

fn bar(state: TaskState) -> String {
    let step = match state {
        TaskState::New | TaskState::Pending => 1,
        TaskState::Assigned => 2,
        TaskState::Accepted => 3,
        TaskState::Preparing => 4,
        TaskState::Ready => 5,
        TaskState::Starting => 6,
        TaskState::Running => 8,
        _ => 0,
    };
    format!("[{}{}]", "=".repeat(step * 5), " ".repeat(40 - step * 5))
}

/// What the caller changed, so that only news about its own change counts.
pub struct Expect {
    /// The service's update status before the change (a status equal to it is old news).
    pub before: Option<api::UpdateStatus>,
    /// The change is a rollback: its completion is success, not failure.
    pub rollback: bool,
}

/// Polls the service until it converged; fails when the update this command
/// started paused or was rolled back. Prints nothing with `quiet`.
pub async fn wait_converged(
    c: &Client,
    id: &str,
    expect: Expect,
    quiet: bool,
) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut drawn = 0usize;
    let mut last_summary = String::new();
    loop {
        let s: ServiceWithStatus = c.get(&format!("/api/v1/services/{id}")).await?;
        let tasks: Vec<Task> = c.get(&format!("/api/v1/tasks?service={id}")).await?;
        let p = Progress::of(&s, &tasks);
        if !quiet {
            let lines = p.lines();
            let mut err = std::io::stderr().lock();
            if tty {
                for _ in 0..drawn {
                    let _ = write!(err, "\x1b[1A\x1b[2K");
                }
                for l in &lines {
                    let _ = writeln!(err, "{l}");
                }
                drawn = lines.len();
            } else if lines[0] != last_summary {
                let _ = writeln!(err, "{}", lines[0]);
                last_summary = lines[0].clone();
            }
        }
        if let Some(u) = s
            .service
            .update_status
            .as_ref()
            .filter(|u| Some(*u) != expect.before.as_ref())
        {
            match u.state {
                UpdateState::Paused => bail!("update paused: {}", u.message),
                UpdateState::RollbackPaused => bail!("rollback paused: {}", u.message),
                UpdateState::RollbackCompleted if !expect.rollback => {
                    bail!("update rolled back: {}", u.message)
                }
                _ => {}
            }
        }
        if p.converged() {
            if !quiet {
                eprintln!("verify: Service {} converged", s.service.spec.name);
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
