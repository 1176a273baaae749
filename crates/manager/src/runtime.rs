//! The manager's control loop: runs the pure components (orchestrator,
//! scheduler, updater, reaper) over the store while this manager leads.
//!
//! Each pass reads the state once per component, asks it for a [`Plan`] and
//! submits the plan's ops as one store update. The components are pure and
//! idempotent over the state, so the loop needs no memory between passes: when a
//! plan is refused because the state moved under it, the change that moved it
//! wakes the loop and the next pass plans again from the new state. Between
//! passes the loop sleeps until the store changes or the earliest `wake_at` a
//! component asked for, whichever comes first. A burst of changes (hundreds of
//! task status reports) is coalesced into one pass.

use crate::plan::Plan;
use api::{State, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// Tuning of the control loop; the defaults suit a real cluster.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// After a change wakes the loop, how long it waits for more changes before
    /// running a pass, so that a burst costs one pass instead of one per change.
    pub coalesce: Duration,
    /// While not the leader, how often to check whether this manager became it
    /// (the store has no leadership notification).
    pub leader_poll: Duration,
    /// First and largest wait before retrying when the store is unavailable.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A pass runs at least this often even when nothing changed, as a safety
    /// net against a missed wake-up.
    pub resync: Duration,
    /// The time between two steps of a gossip key rotation (see
    /// [`crate::gossip_keys`]); the period is the cluster's.
    pub gossip_key_grace: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            coalesce: Duration::from_millis(10),
            leader_poll: Duration::from_millis(200),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            resync: Duration::from_secs(30),
            gossip_key_grace: crate::gossip_keys::DEFAULT_GRACE,
        }
    }
}

/// Counters of the control loop, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManagerStats {
    /// Passes run (each runs every component once).
    pub passes: u64,
    /// Plans the store accepted.
    pub plans_applied: u64,
    /// Plans the store refused because the state had moved.
    pub plans_refused: u64,
    /// Store updates that failed for another reason (unavailable, storage).
    pub store_errors: u64,
    /// The store index the last completed pass started from: every change
    /// up to it has been acted on.
    pub seen_index: u64,
}

#[derive(Default)]
struct Counters {
    passes: AtomicU64,
    plans_applied: AtomicU64,
    plans_refused: AtomicU64,
    store_errors: AtomicU64,
    seen_index: AtomicU64,
}

/// The running control loop of one manager.
pub struct Manager {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

/// A component: a pure function from the state to the changes it wants.
type Component = fn(&State, Timestamp) -> Plan;

/// A component, or the gossip key rotation (which takes its grace and a
/// key maker as well), as a pass runs it.
type Planner<'a> = dyn Fn(&State, Timestamp) -> Plan + Sync + 'a;

/// The components in the order a pass runs them: the orchestrator creates and
/// retires tasks, the scheduler places the new ones in the same pass, the
/// updater replaces stale ones, and the reaper clears what is finished.
const COMPONENTS: [(&str, Component); 4] = [
    ("orchestrator", crate::orchestrator::reconcile),
    ("scheduler", crate::scheduler::reconcile),
    ("updater", crate::updater::reconcile),
    ("reaper", crate::reaper::reconcile),
];

impl Manager {
    /// Starts the control loop on the current tokio runtime. It does nothing
    /// while this manager is not the leader.
    pub async fn start(store: Store, config: ManagerConfig) -> Manager {
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(control_loop(store, config, stop_rx, counters.clone()));
        Manager {
            stop,
            task,
            counters,
        }
    }

    pub fn stats(&self) -> ManagerStats {
        let c = &self.counters;
        ManagerStats {
            passes: c.passes.load(Ordering::Relaxed),
            plans_applied: c.plans_applied.load(Ordering::Relaxed),
            plans_refused: c.plans_refused.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
            seen_index: c.seen_index.load(Ordering::Relaxed),
        }
    }

    /// Stops the loop and waits for it; an update in flight is abandoned (the
    /// next leader's pass redoes whatever it was for).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            if e.is_panic() {
                tracing::error!("manager control loop panicked: {e}");
            }
        }
    }
}

/// What a pass asks of the loop afterwards.
#[derive(Debug, PartialEq)]
enum Next {
    /// Sleep until a change or the given wall-clock time, if any.
    Wait(Option<Timestamp>),
    /// The store is unavailable: retry after a back-off.
    Backoff,
}

async fn control_loop(
    store: Store,
    config: ManagerConfig,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut changes = store.watch();
    let mut backoff = config.min_backoff;
    loop {
        if *stop.borrow() {
            return;
        }
        if !store.is_leader() {
            // Followers keep draining the watch so that they do not start
            // leading with a backlog of stale wake-ups.
            let deadline = Instant::now() + config.leader_poll;
            if wait(&mut changes, &mut stop, Some(deadline), Duration::ZERO).await == Woke::Stop {
                return;
            }
            continue;
        }

        let next = tokio::select! {
            next = run_pass(&store, &counters, &config) => next,
            _ = stop.changed() => return,
        };
        let deadline = match next {
            Next::Wait(wake_at) => {
                backoff = config.min_backoff;
                let now = Instant::now();
                let resync = now + config.resync;
                // A wake-up time is honoured no more finely than the coalescing
                // window, so that a component asking again and again for "now"
                // cannot spin the loop.
                Some(wake_at.map_or(resync, |t| {
                    to_instant(t).max(now + config.coalesce).min(resync)
                }))
            }
            Next::Backoff => {
                let d = backoff;
                backoff = (backoff * 2).min(config.max_backoff);
                Some(Instant::now() + d)
            }
        };
        match wait(&mut changes, &mut stop, deadline, config.coalesce).await {
            Woke::Stop => return,
            Woke::Closed => {
                tracing::info!("store closed; manager control loop ends");
                return;
            }
            Woke::Change | Woke::Deadline => {}
        }
    }
}

/// Runs every component once, submitting each non-empty plan as its own batch.
async fn run_pass(store: &Store, counters: &Counters, config: &ManagerConfig) -> Next {
    counters.passes.fetch_add(1, Ordering::Relaxed);
    // Wall-clock time goes into the plans: it is stored in objects and compared
    // with timestamps the store holds.
    let now = Timestamp::now();
    let start_index = store.view(|s| s.index());
    let mut wake_at: Option<Timestamp> = None;
    let gossip_keys = |state: &State, now| {
        crate::gossip_keys::plan(
            state,
            now,
            config.gossip_key_grace,
            &mut crate::gossip_keys::new_key,
        )
    };
    let components = COMPONENTS
        .iter()
        .map(|(name, c)| (*name, c as &Planner<'_>))
        .chain([("gossip keys", &gossip_keys as &Planner<'_>)]);
    for (name, component) in components {
        let plan = store.view(|state| component(state, now));
        wake_at = earliest(wake_at, plan.wake_at);
        if plan.ops.is_empty() {
            continue;
        }
        let n = plan.ops.len();
        match store.update(plan.ops).await {
            Ok(change) => {
                counters.plans_applied.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    component = name,
                    ops = n,
                    index = change.index,
                    "plan applied"
                );
            }
            Err(StoreError::Apply(e)) => {
                // The state moved between the view and the update; the change
                // that moved it wakes the loop, and the next pass plans again.
                counters.plans_refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(component = name, "plan refused, state moved: {e}");
            }
            Err(e) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(component = name, "store update failed: {e}");
                return Next::Backoff;
            }
        }
    }
    counters.seen_index.store(start_index, Ordering::Relaxed);
    Next::Wait(wake_at)
}

#[derive(Debug, PartialEq, Eq)]
enum Woke {
    Change,
    Deadline,
    Stop,
    Closed,
}

/// Sleeps until a change arrives (then up to `coalesce` more for the rest of a
/// burst, draining it), the deadline passes, or the loop is stopped.
async fn wait(
    changes: &mut broadcast::Receiver<Arc<api::Change>>,
    stop: &mut watch::Receiver<bool>,
    deadline: Option<Instant>,
    coalesce: Duration,
) -> Woke {
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    loop {
        let first = tokio::select! {
            r = changes.recv() => r,
            _ = &mut sleep => return Woke::Deadline,
            _ = stop.changed() => return Woke::Stop,
        };
        match first {
            // An entry that changed no object (a refused batch, a blank or
            // membership entry) gives no component anything new to do;
            // waking for it would let a refused plan retry in a busy loop.
            Ok(change) if change.events.is_empty() => continue,
            // A lagged receiver has lost changes; a pass reads the whole
            // state anyway, so being woken is all it needs.
            Ok(_) | Err(RecvError::Lagged(_)) => break,
            Err(RecvError::Closed) => return Woke::Closed,
        }
    }
    if !coalesce.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(coalesce) => {}
            _ = stop.changed() => return Woke::Stop,
        }
    }
    loop {
        match changes.try_recv() {
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty) => return Woke::Change,
            Err(TryRecvError::Closed) => return Woke::Closed,
        }
    }
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The tokio instant at which the wall clock reads `t` (now, if `t` is past).
fn to_instant(t: Timestamp) -> Instant {
    Instant::now() + Timestamp::now().until(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_ignores_absent_times() {
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(Timestamp(5)), None), Some(Timestamp(5)));
        assert_eq!(earliest(None, Some(Timestamp(7))), Some(Timestamp(7)));
        assert_eq!(
            earliest(Some(Timestamp(9)), Some(Timestamp(7))),
            Some(Timestamp(7))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_past_wake_time_is_now() {
        let before = Instant::now();
        assert!(to_instant(Timestamp(0)) <= before + Duration::from_millis(1));
        let later = to_instant(Timestamp::now().plus(Duration::from_secs(60)));
        assert!(later >= before + Duration::from_secs(59));
    }

    fn change(index: u64) -> Arc<api::Change> {
        let cluster = api::Cluster::new("test");
        Arc::new(api::Change {
            index,
            events: vec![api::Event::Created(cluster.into())],
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_that_changed_nothing_does_not_wake_the_loop() {
        let (tx, mut rx) = broadcast::channel(4);
        let (_stop_tx, mut stop) = watch::channel(false);
        let _ = tx.send(Arc::new(api::Change {
            index: 1,
            events: vec![],
        }));
        let deadline = Instant::now() + Duration::from_secs(1);
        let woke = wait(&mut rx, &mut stop, Some(deadline), Duration::ZERO).await;
        assert_eq!(woke, Woke::Deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_wakes_the_loop_once() {
        let (tx, mut rx) = broadcast::channel(16);
        let (_stop_tx, mut stop) = watch::channel(false);
        let sender = tokio::spawn(async move {
            for i in 0..5 {
                let _ = tx.send(change(i));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tx
        });
        let woke = wait(&mut rx, &mut stop, None, Duration::from_millis(10)).await;
        assert_eq!(woke, Woke::Change);
        let tx = sender.await.expect("sender task");
        // The whole burst was drained: nothing is left to wake the next wait.
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagged_receiver_still_wakes_and_drains() {
        let (tx, mut rx) = broadcast::channel(2);
        let (_stop_tx, mut stop) = watch::channel(false);
        for i in 0..10 {
            let _ = tx.send(change(i));
        }
        let woke = wait(&mut rx, &mut stop, None, Duration::ZERO).await;
        assert_eq!(woke, Woke::Change);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_and_the_stop_signal_end_a_wait() {
        let (_tx, mut rx) = broadcast::channel::<Arc<api::Change>>(2);
        let (stop_tx, mut stop) = watch::channel(false);
        let start = Instant::now();
        let woke = wait(
            &mut rx,
            &mut stop,
            Some(start + Duration::from_secs(3)),
            Duration::ZERO,
        )
        .await;
        assert_eq!(woke, Woke::Deadline);
        assert!(Instant::now() >= start + Duration::from_secs(3));
        let _ = stop_tx.send(true);
        let woke = wait(&mut rx, &mut stop, None, Duration::ZERO).await;
        assert_eq!(woke, Woke::Stop);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_store_ends_the_wait() {
        let (tx, mut rx) = broadcast::channel::<Arc<api::Change>>(2);
        let (_stop_tx, mut stop) = watch::channel(false);
        drop(tx);
        assert_eq!(
            wait(&mut rx, &mut stop, None, Duration::ZERO).await,
            Woke::Closed
        );
    }
}
