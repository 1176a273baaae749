//! The rolling updater: replaces tasks whose spec is not the service's current
//! task template, a few at a time, and rolls back when that goes wrong.
//!
//! It is stateless between passes: each pass derives the update's progress from
//! the tasks themselves. A task is *stale* when its spec differs from the
//! service's task template. Only the spec counts, not `spec_version`: after a
//! rollback the tasks that were never updated already run the restored spec
//! and must not be restarted.
//!
//! Per pass and service (skipped while the update is paused):
//! 1. Failures: a task of the new spec, created since the update started, that
//!    ended on its own within `monitor` of its creation is a failure. When
//!    failures exceed `max_failure_ratio` of the slots, apply `failure_action`:
//!    pause (`Paused`), continue, or rollback (swap `spec` and `previous_spec`,
//!    bump `spec_version`, `RollbackStarted`). A failing rollback pauses
//!    (`RollbackPaused`).
//! 2. Progress: a slot is *in flight* while its replacement is not yet Running.
//!    Up to `parallelism` slots (0: all) are in flight at once, and a new slot
//!    starts only `delay` after the last replacement reached Running.
//! 3. Order. stop-first: the updater sets the stale task's desired state to
//!    Shutdown; the orchestrator refills the slot with the current template once
//!    the old task has stopped. start-first: the updater creates the new task in
//!    the same slot, and shuts the stale one down once the new one is Running.
//! 4. Done when no slot is stale or in flight and `monitor` has passed since the
//!    last replacement started: `Completed` (or `RollbackCompleted`).
//!
//! The updater writes `service.update_status` (and `spec`/`previous_spec` for an
//! automatic rollback), creates tasks (start-first) and raises desired states.

use crate::plan::{self, is_live, Plan, SlotKey};
use crate::restart;
use crate::scheduler::{constraints_match, parse_constraints};
use api::{
    FailureAction, Op, Service, ServiceMode, State, Task, TaskState, Timestamp, UpdateConfig,
    UpdateOrder, UpdateState, UpdateStatus,
};
use std::collections::BTreeMap;

/// Advances the rolling update (or rollback) of every service.
pub fn reconcile(state: &State, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    for svc in state.services() {
        update_service(state, svc, now, &mut plan);
    }
    plan
}

/// The service's tasks grouped by the slots it should have (replicas
/// 1..=replicas, or nodes a global service runs on). Tasks elsewhere are the
/// orchestrator's to retire, not this updater's to replace.
fn slots<'a>(state: &'a State, svc: &'a Service) -> BTreeMap<SlotKey<'a>, Vec<&'a Task>> {
    let mut slots: BTreeMap<SlotKey<'a>, Vec<&'a Task>> = BTreeMap::new();
    match svc.spec.mode {
        ServiceMode::Replicated { replicas } => {
            for t in state.tasks_by_service(&svc.meta.id) {
                if (1..=replicas).contains(&t.slot) {
                    slots.entry(plan::slot_key(t)).or_default().push(t);
                }
            }
        }
        ServiceMode::Global => {
            let Ok(constraints) = parse_constraints(&svc.spec.task_template.placement.constraints)
            else {
                return slots;
            };
            for t in state.tasks_by_service(&svc.meta.id) {
                let eligible = t.slot == 0
                    && t.node_id
                        .as_deref()
                        .and_then(|n| state.node(n))
                        .is_some_and(|n| {
                            plan::node_available(n) && constraints_match(&constraints, n)
                        });
                if eligible {
                    slots.entry(plan::slot_key(t)).or_default().push(t);
                }
            }
        }
    }
    slots
}

fn set_status(svc: &Service, status: UpdateStatus) -> Op {
    let mut s = svc.clone();
    s.update_status = Some(status);
    Op::Update(s.into())
}

fn update_service(state: &State, svc: &Service, now: Timestamp, plan: &mut Plan) {
    let current = svc.update_status.as_ref().map(|s| s.state);
    if matches!(
        current,
        Some(UpdateState::Paused | UpdateState::RollbackPaused)
    ) {
        return;
    }
    let rolling_back = current == Some(UpdateState::RollbackStarted);
    let in_progress = matches!(
        current,
        Some(UpdateState::Updating | UpdateState::RollbackStarted)
    );
    let cfg: &UpdateConfig = if rolling_back {
        &svc.spec.rollback_config
    } else {
        &svc.spec.update_config
    };
    let template = &svc.spec.task_template;
    let started_at = match (&svc.update_status, in_progress) {
        (Some(s), true) => s.started_at,
        _ => now,
    };
    // A task of the current spec created by this update (or restarted during it).
    let fresh_since_start = |t: &Task| &t.spec == template && t.meta.created_at >= started_at;

    let slots = slots(state, svc);

    // 1. Failures of new tasks within the monitor period.
    if in_progress && cfg.failure_action != FailureAction::Continue {
        let failed: Vec<&Task> = state
            .tasks_by_service(&svc.meta.id)
            .filter(|t| {
                fresh_since_start(t)
                    && plan::ended_by_itself(t)
                    && t.status.timestamp <= t.meta.created_at.plus(cfg.monitor)
            })
            .collect();
        let total = slots.len().max(1) as f64;
        if !failed.is_empty() && failed.len() as f64 > cfg.max_failure_ratio * total {
            let culprit = plan::newest(failed.iter().copied())
                .map(|t| t.meta.id.clone())
                .unwrap_or_default();
            plan.ops.push(on_failure(
                svc,
                cfg.failure_action,
                rolling_back,
                &culprit,
                now,
            ));
            return;
        }
    }

    // 2. Where each slot stands.
    let mut candidates: Vec<(SlotKey<'_>, Vec<&Task>)> = Vec::new();
    let mut handoffs: Vec<&Task> = Vec::new();
    let mut in_flight = 0usize;
    let mut last_ready: Option<Timestamp> = None;
    for (key, tasks) in &slots {
        let (stale, fresh): (Vec<&Task>, Vec<&Task>) = tasks
            .iter()
            .copied()
            .filter(|t| is_live(t))
            .partition(|t| &t.spec != template);
        let fresh_running = fresh.iter().any(|t| t.status.state == TaskState::Running);
        for t in fresh
            .iter()
            .filter(|t| fresh_since_start(t) && t.status.state == TaskState::Running)
        {
            last_ready = Some(last_ready.map_or(t.status.timestamp, |l| l.max(t.status.timestamp)));
        }
        if !stale.is_empty() {
            if fresh_running {
                handoffs.extend(stale);
            } else if !fresh.is_empty() {
                in_flight += 1;
            } else {
                candidates.push((*key, stale));
            }
        } else if fresh.is_empty() {
            // Empty slot whose last task is stale: in flight until the
            // orchestrator refills it with the current spec, which it does
            // once a stopped task is gone, or after the restart delay for a
            // task that ended on its own (never, if its policy gives up).
            let last = plan::newest(
                tasks
                    .iter()
                    .copied()
                    .filter(|t| t.desired_state != TaskState::Remove),
            );
            if last.is_some_and(|t| {
                &t.spec != template
                    && (!plan::ended_by_itself(t)
                        || matches!(
                            restart::decide(&t.spec.restart_policy, t, now),
                            restart::Decision::At(_)
                        ))
            }) {
                in_flight += 1;
            }
        } else if !fresh_running && fresh.iter().any(|t| fresh_since_start(t)) {
            in_flight += 1;
        }
    }

    if !in_progress {
        // Only a stale task starts an update; new tasks in flight without one
        // are a service being created or scaled.
        if candidates.is_empty() && handoffs.is_empty() {
            return;
        }
        plan.ops.push(set_status(
            svc,
            UpdateStatus {
                state: UpdateState::Updating,
                started_at: now,
                completed_at: None,
                message: "update in progress".into(),
            },
        ));
    }

    for t in &handoffs {
        plan.ops.push(plan::set_desired(t, TaskState::Shutdown));
    }

    // 3. Start the next slots, within parallelism and after the delay.
    let mut room = if cfg.parallelism == 0 {
        candidates.len()
    } else {
        (cfg.parallelism as usize).saturating_sub(in_flight)
    };
    if let Some(ready) = last_ready {
        let next = ready.plus(cfg.delay);
        if !candidates.is_empty() && room > 0 && now < next {
            plan.wake(next);
            room = 0;
        }
    }
    let started = room.min(candidates.len());
    for (key, stale) in candidates.iter().take(started) {
        match cfg.order {
            UpdateOrder::StopFirst => {
                for t in stale {
                    plan.ops.push(plan::set_desired(t, TaskState::Shutdown));
                }
            }
            UpdateOrder::StartFirst => {
                let (slot, node) = match key {
                    SlotKey::Replica(s) => (*s, None),
                    SlotKey::Node(n) => (0, Some(*n)),
                };
                let restarts = stale
                    .first()
                    .map(|t| restart::carry(&t.spec.restart_policy, &t.restarts, now))
                    .unwrap_or_default();
                let task = plan::new_task(svc, slot, node, restarts, now);
                plan.ops.push(Op::Create(task.into()));
            }
        }
    }

    // 4. Completion, once everything settled and the last new task has been
    // watched for the monitor period.
    let remaining = candidates.len() - started;
    if in_progress && remaining == 0 && started == 0 && in_flight == 0 && handoffs.is_empty() {
        let done_at = last_ready.map_or(now, |t| t.plus(cfg.monitor));
        if now < done_at {
            plan.wake(done_at);
            return;
        }
        let (state, message) = if rolling_back {
            (UpdateState::RollbackCompleted, "rollback completed")
        } else {
            (UpdateState::Completed, "update completed")
        };
        plan.ops.push(set_status(
            svc,
            UpdateStatus {
                state,
                started_at,
                completed_at: Some(now),
                message: message.into(),
            },
        ));
    }
}

/// The service write that `failure_action` calls for.
fn on_failure(
    svc: &Service,
    action: FailureAction,
    rolling_back: bool,
    culprit: &str,
    now: Timestamp,
) -> Op {
    let why = format!("due to failure or early termination of task {culprit}");
    let paused = |state: UpdateState, what: &str| {
        set_status(
            svc,
            UpdateStatus {
                state,
                started_at: svc.update_status.as_ref().map_or(now, |s| s.started_at),
                completed_at: None,
                message: format!("{what} {why}"),
            },
        )
    };
    if rolling_back {
        // A rollback that fails has nothing left to roll back to.
        return paused(UpdateState::RollbackPaused, "rollback paused");
    }
    match (action, &svc.previous_spec) {
        (FailureAction::Rollback, Some(previous)) => {
            let mut s = svc.clone();
            s.spec = previous.clone();
            s.previous_spec = Some(svc.spec.clone());
            s.spec_version += 1;
            s.update_status = Some(UpdateStatus {
                state: UpdateState::RollbackStarted,
                started_at: now,
                completed_at: None,
                message: format!("rollback started {why}"),
            });
            Op::Update(s.into())
        }
        (FailureAction::Rollback, None) => paused(
            UpdateState::Paused,
            "update paused (no previous spec to roll back to)",
        ),
        _ => paused(UpdateState::Paused, "update paused"),
    }
}

#[cfg(test)]
mod tests;
