//! ucp-reconcile's decisions, without I/O: given the tasks assigned to this
//! node, what the driver holds, and what the agent is already doing, which
//! actions bring the node to its desired state. The agent executes them.

use crate::driver::TaskRunState;
use api::{Task, TaskState, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// What the agent does about a task right now.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Take charge of an assigned task: walk it to Running, adopt it (`found`
    /// running), report how it ended (`found` exited), or, with `stop`, make
    /// sure it does not run and report it shut down.
    Supervise {
        task: Box<Task>,
        found: Option<TaskRunState>,
        stop: bool,
    },
    /// Tell the task's supervisor to stop it (its desired state became terminal).
    Stop { task_id: String },
    /// The driver runs a task nobody assigned (deleted meanwhile, or from before
    /// a restart): stop it. Its directory stays, for its logs.
    StopUnassigned { task_id: String },
    /// A task prepared but never started, no longer assigned: delete it.
    Remove { task_id: String },
}

/// What the agent knows when it plans.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The assignment set from the dispatcher.
    pub assigned: &'a [Task],
    /// Every task the driver holds, and its state.
    pub found: &'a BTreeMap<String, TaskRunState>,
    /// Tasks with a supervisor at work, and whether it was told to stop.
    pub supervised: &'a BTreeMap<String, bool>,
    /// Tasks whose end the agent has reported already: the store may not show
    /// it yet, so the assignment set can still hold them as if alive.
    pub settled: &'a BTreeSet<String>,
}

/// The task should run: its desired state is Running (or an earlier one).
pub fn wants_running(task: &Task) -> bool {
    task.desired_state <= TaskState::Running
}

pub fn plan(view: &View<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    let assigned: BTreeSet<&str> = view.assigned.iter().map(|t| t.meta.id.as_str()).collect();

    for task in view.assigned {
        let id = &task.meta.id;
        let found = view.found.get(id);
        let run = wants_running(task);
        if let Some(&stopping) = view.supervised.get(id) {
            if !run && !stopping {
                actions.push(Action::Stop {
                    task_id: id.clone(),
                });
            }
            continue;
        }
        if view.settled.contains(id) {
            continue;
        }
        if task.status.state.is_terminal() {
            // The store already holds its end; only a process still running
            // against that record needs attention.
            if matches!(found, Some(TaskRunState::Running { .. })) {
                actions.push(Action::StopUnassigned {
                    task_id: id.clone(),
                });
            }
            continue;
        }
        actions.push(Action::Supervise {
            task: Box::new(task.clone()),
            found: found.cloned(),
            stop: !run,
        });
    }

    for (id, &stopping) in view.supervised {
        if !assigned.contains(id.as_str()) && !stopping {
            actions.push(Action::Stop {
                task_id: id.clone(),
            });
        }
    }
    for (id, state) in view.found {
        if assigned.contains(id.as_str()) || view.supervised.contains_key(id) {
            continue;
        }
        match state {
            TaskRunState::Running { .. } => actions.push(Action::StopUnassigned {
                task_id: id.clone(),
            }),
            TaskRunState::Created => actions.push(Action::Remove {
                task_id: id.clone(),
            }),
            // Ended tasks stay for their logs; see `prune_ended`.
            TaskRunState::Exited(_) => {}
        }
    }
    actions
}

/// Which ended tasks to delete so that at most `keep` remain, oldest first.
/// Tasks still assigned or supervised never count as ended here.
pub fn prune_ended(view: &View<'_>, keep: usize) -> Vec<String> {
    let assigned: BTreeSet<&str> = view.assigned.iter().map(|t| t.meta.id.as_str()).collect();
    let mut ended: Vec<(Timestamp, &String)> = view
        .found
        .iter()
        .filter(|(id, _)| !assigned.contains(id.as_str()) && !view.supervised.contains_key(*id))
        .filter_map(|(id, s)| match s {
            TaskRunState::Exited(exit) => Some((exit.finished_at, id)),
            _ => None,
        })
        .collect();
    // Newest first; ties broken by id so the choice is stable.
    ended.sort_by(|a, b| b.cmp(a));
    ended
        .into_iter()
        .skip(keep)
        .map(|(_, id)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::TaskExit;
    use api::{Meta, TaskSpec, TaskStatus};

    fn task(id: &str, desired: TaskState, status: TaskState) -> Task {
        Task {
            meta: Meta::new(id),
            service_id: "svc".into(),
            slot: 1,
            node_id: Some("n1".into()),
            spec: TaskSpec::exec(["sleep", "1000"]),
            spec_version: 1,
            desired_state: desired,
            status: TaskStatus {
                state: status,
                ..TaskStatus::default()
            },
            restarts: vec![],
        }
    }

    fn exited(code: i32, at: u64) -> TaskRunState {
        TaskRunState::Exited(TaskExit {
            exit_code: code,
            signal: None,
            error: None,
            finished_at: Timestamp(at),
        })
    }

    const RUNNING: TaskRunState = TaskRunState::Running { pid: Some(42) };

    struct Case {
        name: &'static str,
        assigned: Vec<Task>,
        found: Vec<(&'static str, TaskRunState)>,
        supervised: Vec<(&'static str, bool)>,
        settled: Vec<&'static str>,
        want: Vec<Action>,
    }

    fn supervise(t: &Task, found: Option<TaskRunState>, stop: bool) -> Action {
        Action::Supervise {
            task: Box::new(t.clone()),
            found,
            stop,
        }
    }

    #[test]
    fn plans_match_the_table() {
        use TaskState::*;
        let new = task("a", Running, Assigned);
        let stopping = task("a", Shutdown, Running);
        let removing = task("a", Remove, Running);
        let done = task("a", Running, Complete);
        let cases = vec![
            Case {
                name: "a new assignment is supervised from scratch",
                assigned: vec![new.clone()],
                found: vec![],
                supervised: vec![],
                settled: vec![],
                want: vec![supervise(&new, None, false)],
            },
            Case {
                name: "a running task found after a restart is adopted",
                assigned: vec![new.clone()],
                found: vec![("a", RUNNING)],
                supervised: vec![],
                settled: vec![],
                want: vec![supervise(&new, Some(RUNNING), false)],
            },
            Case {
                name: "a task that ended unwatched is supervised to report its exit",
                assigned: vec![new.clone()],
                found: vec![("a", exited(3, 5))],
                supervised: vec![],
                settled: vec![],
                want: vec![supervise(&new, Some(exited(3, 5)), false)],
            },
            Case {
                name: "a supervised running task is left alone",
                assigned: vec![new.clone()],
                found: vec![("a", RUNNING)],
                supervised: vec![("a", false)],
                settled: vec![],
                want: vec![],
            },
            Case {
                name: "desired shutdown tells the supervisor to stop, once",
                assigned: vec![stopping.clone()],
                found: vec![("a", RUNNING)],
                supervised: vec![("a", false)],
                settled: vec![],
                want: vec![Action::Stop { task_id: "a".into() }],
            },
            Case {
                name: "a supervisor already stopping is not told twice",
                assigned: vec![removing.clone()],
                found: vec![("a", RUNNING)],
                supervised: vec![("a", true)],
                settled: vec![],
                want: vec![],
            },
            Case {
                name: "desired shutdown of a task nobody supervises yet",
                assigned: vec![removing.clone()],
                found: vec![],
                supervised: vec![],
                settled: vec![],
                want: vec![supervise(&removing, None, true)],
            },
            Case {
                name: "a settled task is not supervised again while the store lags",
                assigned: vec![new.clone()],
                found: vec![("a", exited(0, 5))],
                supervised: vec![],
                settled: vec!["a"],
                want: vec![],
            },
            Case {
                name: "a terminal task still running is stopped without a report",
                assigned: vec![done.clone()],
                found: vec![("a", RUNNING)],
                supervised: vec![],
                settled: vec![],
                want: vec![Action::StopUnassigned { task_id: "a".into() }],
            },
            Case {
                name: "a terminal task that ended is left for its logs",
                assigned: vec![done.clone()],
                found: vec![("a", exited(0, 5))],
                supervised: vec![],
                settled: vec![],
                want: vec![],
            },
            Case {
                name: "unassigned: supervised ones are stopped, running ones stopped, created ones removed, ended ones kept",
                assigned: vec![],
                found: vec![("b", RUNNING), ("c", TaskRunState::Created), ("d", exited(1, 5)), ("e", RUNNING)],
                supervised: vec![("e", false), ("f", true)],
                settled: vec![],
                want: vec![
                    Action::Stop { task_id: "e".into() },
                    Action::StopUnassigned { task_id: "b".into() },
                    Action::Remove { task_id: "c".into() },
                ],
            },
        ];
        for case in cases {
            let found: BTreeMap<String, TaskRunState> = case
                .found
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let supervised: BTreeMap<String, bool> = case
                .supervised
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            let settled: BTreeSet<String> = case.settled.into_iter().map(String::from).collect();
            let view = View {
                assigned: &case.assigned,
                found: &found,
                supervised: &supervised,
                settled: &settled,
            };
            assert_eq!(plan(&view), case.want, "case: {}", case.name);
        }
    }

    #[test]
    fn pruning_keeps_the_newest_ended_tasks() {
        let assigned = vec![task(
            "old-but-assigned",
            TaskState::Running,
            TaskState::Running,
        )];
        let found: BTreeMap<String, TaskRunState> = [
            ("old-but-assigned", exited(0, 1)),
            ("t1", exited(0, 10)),
            ("t2", exited(1, 30)),
            ("t3", exited(0, 20)),
            ("t4", exited(0, 40)),
            ("supervised", exited(0, 2)),
            ("running", RUNNING),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let supervised = [("supervised".to_string(), true)].into_iter().collect();
        let settled = BTreeSet::new();
        let view = View {
            assigned: &assigned,
            found: &found,
            supervised: &supervised,
            settled: &settled,
        };
        assert_eq!(
            prune_ended(&view, 2),
            vec!["t3".to_string(), "t1".to_string()]
        );
        assert!(prune_ended(&view, 4).is_empty());
        assert_eq!(prune_ended(&view, 0).len(), 4);
    }
}
