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
    /// Ids of the current tasks that run, sorted.
    pub running_ids: Vec<String>,
}

impl Progress {
    pub fn of(s: &ServiceWithStatus, tasks: &[Task]) -> Progress {
        let v = s.service.spec_version;
        // Slots above the replica count are on their way out (scale down).
        let max_slot = match s.service.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::Global => u64::MAX,
        };
        let mut slots = BTreeMap::new();
        let mut running_ids = Vec::new();
        let mut stopping = 0;
        for t in tasks {
            if super::service::is_current(t, v) && t.slot <= max_slot {
                if t.status.state == TaskState::Running {
                    running_ids.push(t.meta.id.clone());
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
        running_ids.sort();
        let desired = match s.service.spec.mode {
            ServiceMode::Replicated { replicas } => replicas,
            ServiceMode::Global => slots.len() as u64,
        };
        Progress {
            desired,
            running: running_ids.len() as u64,
            stopping,
            slots,
            running_ids,
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
    let mut stable_since: Option<(Vec<String>, std::time::Instant)> = None;
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
        let fresh = s
            .service
            .update_status
            .as_ref()
            .filter(|u| Some(*u) != expect.before.as_ref());
        let mut update_running = false;
        if let Some(u) = fresh {
            match u.state {
                UpdateState::Paused => bail!("update paused: {}", u.message),
                UpdateState::RollbackPaused => bail!("rollback paused: {}", u.message),
                UpdateState::RollbackCompleted if !expect.rollback => {
                    bail!("update rolled back: {}", u.message)
                }
                UpdateState::Updating | UpdateState::RollbackStarted => update_running = true,
                _ => {}
            }
        }
        // As docker does: once every task runs, the same tasks must keep running
        // for the monitor period before the service counts as converged, so that
        // a task crashing a moment after its start is not reported as a success.
        if p.converged() && !update_running {
            let monitor = s.service.spec.update_config.monitor;
            match &stable_since {
                Some((ids, since)) if *ids == p.running_ids => {
                    if since.elapsed() >= monitor {
                        if !quiet {
                            eprintln!("verify: Service {} converged", s.service.spec.name);
                        }
                        return Ok(());
                    }
                }
                _ => {
                    if !quiet && !monitor.is_zero() {
                        eprintln!(
                            "verify: Waiting {} to verify that tasks are stable...",
                            humantime::format_duration(monitor)
                        );
                        // The verify line sits below the drawn block: draw anew under it.
                        drawn = 0;
                    }
                    stable_since = Some((p.running_ids.clone(), std::time::Instant::now()));
                }
            }
        } else {
            stable_since = None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
