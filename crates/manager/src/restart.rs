//! The restart supervisor's rules: whether and when a task that ended on its
//! own is replaced, following its restart policy (condition, delay,
//! max_attempts within window). The orchestrator applies the decision; this
//! module only decides, from the ended task and the time.
//!
//! Restarts are counted per slot: each task carries the times its slot was
//! restarted (`Task::restarts`), and the replacement inherits them plus the new
//! one, pruned to the window, so no memory outside the store is needed.

use api::{RestartCondition, RestartPolicy, Task, TaskState, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Do not replace the task; the string says why (for logs and tests).
    Never(&'static str),
    /// Replace it once the clock reaches this time.
    At(Timestamp),
}

/// The task failed, as opposed to completing: `on-failure` restarts only these.
fn failed(t: &Task) -> bool {
    matches!(t.status.state, TaskState::Failed | TaskState::Rejected)
        || t.status.exit_code.is_some_and(|c| c != 0)
}

/// Restart times still inside the window at `now` (all of them for window 0),
/// oldest first.
fn in_window(policy: &RestartPolicy, restarts: &[Timestamp], now: Timestamp) -> Vec<Timestamp> {
    let mut v: Vec<Timestamp> = restarts
        .iter()
        .copied()
        .filter(|r| policy.window.is_zero() || r.plus(policy.window) > now)
        .collect();
    v.sort();
    v
}

/// Whether and when `ended` (a task that stopped on its own) is replaced.
pub fn decide(policy: &RestartPolicy, ended: &Task, now: Timestamp) -> Decision {
    match policy.condition {
        RestartCondition::None => return Decision::Never("restart condition is none"),
        RestartCondition::OnFailure if !failed(ended) => {
            return Decision::Never("task completed and the restart condition is on-failure")
        }
        _ => {}
    }
    let mut at = ended.status.timestamp.plus(policy.delay);
    if policy.max_attempts > 0 {
        let max = policy.max_attempts as usize;
        let recent = in_window(policy, &ended.restarts, now);
        if recent.len() >= max {
            if policy.window.is_zero() {
                return Decision::Never("restart attempts exhausted");
            }
            // The window slides: once enough of the recent restarts have aged
            // out of it, fewer than max_attempts remain and one more is allowed.
            let frees_at = recent[recent.len() - max].plus(policy.window);
            at = at.max(frees_at);
        }
    }
    Decision::At(at)
}

/// The restart history a replacement carries when it is a restart at `now`.
pub fn record(policy: &RestartPolicy, restarts: &[Timestamp], now: Timestamp) -> Vec<Timestamp> {
    let mut v = in_window(policy, restarts, now);
    v.push(now);
    v
}

/// The restart history a replacement carries when it is not a restart (an
/// update, a move away from a lost node).
pub fn carry(policy: &RestartPolicy, restarts: &[Timestamp], now: Timestamp) -> Vec<Timestamp> {
    in_window(policy, restarts, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::*;
    use api::*;
    use std::time::Duration;

    fn ended(
        state: TaskState,
        exit: Option<i32>,
        end: Timestamp,
        restarts: Vec<Timestamp>,
    ) -> Task {
        let mut t = crate::plan::new_task(&replicated("s", 1), 1, None, restarts, T0);
        t.status = TaskStatus {
            state,
            timestamp: end,
            exit_code: exit,
            ..TaskStatus::default()
        };
        t
    }

    fn policy(condition: RestartCondition, delay: u64, max: u64, window: u64) -> RestartPolicy {
        RestartPolicy {
            condition,
            delay: Duration::from_secs(delay),
            max_attempts: max,
            window: Duration::from_secs(window),
        }
    }

    /// (condition, state, exit code, restarts so far (seconds), max, window, delay, now) → decision.
    type Case = (
        RestartCondition,
        TaskState,
        Option<i32>,
        Vec<u64>,
        u64,
        u64,
        u64,
        u64,
        Decision,
    );

    #[test]
    fn decision_table() {
        use Decision::*;
        use RestartCondition as C;
        use TaskState as S;
        let cases: Vec<Case> = vec![
            (
                C::Any,
                S::Complete,
                Some(0),
                vec![],
                0,
                0,
                5,
                10,
                At(at(15)),
            ),
            (C::Any, S::Failed, Some(1), vec![], 0, 0, 5, 10, At(at(15))),
            (
                C::OnFailure,
                S::Complete,
                Some(0),
                vec![],
                0,
                0,
                5,
                10,
                Never("task completed and the restart condition is on-failure"),
            ),
            (
                C::OnFailure,
                S::Failed,
                Some(1),
                vec![],
                0,
                0,
                5,
                10,
                At(at(15)),
            ),
            (
                C::OnFailure,
                S::Rejected,
                None,
                vec![],
                0,
                0,
                0,
                10,
                At(at(10)),
            ),
            (
                C::None,
                S::Failed,
                Some(1),
                vec![],
                0,
                0,
                5,
                10,
                Never("restart condition is none"),
            ),
            (
                C::None,
                S::Complete,
                Some(0),
                vec![],
                0,
                0,
                5,
                10,
                Never("restart condition is none"),
            ),
            // max_attempts over the slot's whole life
            (
                C::Any,
                S::Failed,
                Some(1),
                vec![1, 2],
                3,
                0,
                1,
                10,
                At(at(11)),
            ),
            (
                C::Any,
                S::Failed,
                Some(1),
                vec![1, 2, 3],
                3,
                0,
                1,
                10,
                Never("restart attempts exhausted"),
            ),
            // max_attempts within a window: old restarts no longer count
            (
                C::Any,
                S::Failed,
                Some(1),
                vec![1, 2, 3],
                3,
                5,
                1,
                10,
                At(at(11)),
            ),
            // ...and when the window is full, wait until the oldest ages out
            (
                C::Any,
                S::Failed,
                Some(1),
                vec![7, 8, 9],
                3,
                5,
                1,
                10,
                At(at(12)),
            ),
            (
                C::Any,
                S::Failed,
                Some(1),
                vec![7, 8, 9],
                2,
                5,
                1,
                10,
                At(at(13)),
            ),
            (
                C::OnFailure,
                S::Complete,
                Some(3),
                vec![],
                0,
                0,
                2,
                10,
                At(at(12)),
            ),
        ];
        for (i, (cond, state, exit, restarts, max, window, delay, now, want)) in
            cases.into_iter().enumerate()
        {
            let p = policy(cond, delay, max, window);
            let t = ended(state, exit, at(now), restarts.into_iter().map(at).collect());
            assert_eq!(decide(&p, &t, at(now)), want, "case {i}");
        }
    }

    #[test]
    fn record_appends_now_and_prunes_to_the_window() {
        let p = policy(RestartCondition::Any, 0, 3, 10);
        assert_eq!(record(&p, &[at(1), at(15)], at(20)), vec![at(15), at(20)]);
        let whole_life = policy(RestartCondition::Any, 0, 3, 0);
        assert_eq!(
            record(&whole_life, &[at(1), at(15)], at(20)),
            vec![at(1), at(15), at(20)]
        );
        assert_eq!(carry(&p, &[at(1), at(15)], at(20)), vec![at(15)]);
    }
}
