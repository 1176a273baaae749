//! Leaving the cluster (`berth leave`, Swarm's `docker swarm leave`): the
//! node stops its tasks and its parts, and forgets its identity and state,
//! so the data dir can join a cluster again. The cluster keeps the node's
//! record (down) until an admin removes it with `berth node rm`.
//!
//! A manager leaves only with `--force`, as in Swarm: it first asks to be
//! demoted and taken out of the Raft group, so that the others keep their
//! quorum without it; if that cannot be done (no quorum), it leaves anyway.
//! A running node is asked through its control socket ([`super::ipc`]); a
//! stopped one is handled in place ([`leave_stopped`]).

use super::{ipc, lock_data_dir, Identity, Node, Role};
use anyhow::{bail, Context};
use api::{NodeRole, Op};
use std::path::Path;
use std::time::Duration;

/// What a node forgets when it leaves (relative to the data dir).
const STATE: [&str; 5] = ["node", "store", "api", "agent", "exec"];

/// How long a leaving manager tries to be demoted and out of the group.
const DEMOTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a node in `role` may not leave as asked, if it may not.
pub fn refusal(role: Role, force: bool) -> Option<String> {
    (role == Role::Manager && !force).then(|| {
        "this node is a manager: leaving takes it out of the managers' Raft group, and \
         leaving the last manager loses the cluster's state. Demote it first (berth node \
         demote NODE), or use --force to leave anyway"
            .to_string()
    })
}

impl Node {
    /// The next request to leave the cluster from `berth leave` on this
    /// machine; `None` once the control socket is gone.
    pub async fn leave_request(&self) -> Option<ipc::LeaveRequest> {
        self.leave_requests.lock().await.recv().await
    }

    /// Why this node may not leave as asked, if it may not.
    pub fn leave_refusal(&self, force: bool) -> Option<String> {
        refusal(self.shared.identity().role, force)
    }

    /// Leaves the cluster: a manager first gets itself demoted and out of
    /// the Raft group (best effort); then the node stops as
    /// [`Node::shutdown`] does (tasks first) and forgets its state.
    pub async fn leave(self) -> anyhow::Result<()> {
        if let Some(store) = self.store() {
            if let Err(e) = tokio::time::timeout(DEMOTE_TIMEOUT, demote_self(&store, &self.node_id))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {DEMOTE_TIMEOUT:?}")))
            {
                tracing::warn!(
                    "leaving without being taken out of the Raft group ({e:#}): the other \
                     managers count this one until it is demoted and removed"
                );
            }
        }
        let data_dir = self.shared.cfg.data_dir.clone();
        self.shutdown().await?;
        forget_state(&data_dir)?;
        tracing::info!("left the cluster");
        Ok(())
    }
}

/// Demotes this manager in the store and takes it out of the Raft group.
async fn demote_self(store: &store::Store, node_id: &str) -> anyhow::Result<()> {
    let others = store.members().iter().filter(|m| m.voter).count() > 1;
    if !others {
        bail!("this is the last manager");
    }
    if let Some(mut node) = store.view(|s| s.node(node_id).cloned()) {
        if node.spec.role == NodeRole::Manager {
            node.spec.role = NodeRole::Worker;
            store
                .update(vec![Op::Update(node.into())])
                .await
                .context("demoting this manager")?;
        }
    }
    store
        .remove_manager(store::raft_id(node_id))
        .await
        .context("leaving the Raft group")
}

/// Removes what made the data dir a member of a cluster.
fn forget_state(data_dir: &Path) -> anyhow::Result<()> {
    for dir in STATE {
        let path = data_dir.join(dir);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    match std::fs::remove_file(ipc::socket_path(data_dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("removing the control socket"),
    }
    Ok(())
}

/// `berth leave` for a node that is not running: stops the tasks it left
/// behind (a node killed with -9 leaves them running by design) and forgets
/// its state. Refused for a manager without `force`.
pub async fn leave_stopped(
    data_dir: &Path,
    force: bool,
    shim: agent::ShimCommand,
) -> anyhow::Result<()> {
    let _lock = lock_data_dir(data_dir)?;
    let Some(identity) = Identity::load(data_dir)? else {
        bail!(
            "{} is not part of a cluster (no node identity)",
            data_dir.display()
        );
    };
    if let Some(why) = refusal(identity.role, force) {
        bail!("{why}");
    }
    let exec = data_dir.join("exec");
    if exec.exists() {
        use agent::Driver;
        let driver = agent::ExecDriver::new(exec, shim).context("opening the exec driver")?;
        for task in driver.list().await.context("listing the node's tasks")? {
            // Stopped at once: nobody waits for a graceful exit of a node
            // that is gone.
            if let Err(e) = driver.stop(&task.task_id, Duration::ZERO).await {
                tracing::warn!(task = %task.task_id, "stopping a task: {e}");
            }
        }
    }
    forget_state(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_manager_without_force_is_refused() {
        assert!(refusal(Role::Worker, false).is_none());
        assert!(refusal(Role::Worker, true).is_none());
        assert!(refusal(Role::Manager, true).is_none());
        let why = refusal(Role::Manager, false).unwrap_or_default();
        assert!(why.contains("--force") && why.contains("demote"), "{why}");
    }
}
