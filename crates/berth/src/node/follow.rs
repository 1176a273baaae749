//! The node's cluster follower: every node, manager or worker, keeps a
//! `WatchCluster` stream open to a manager (the leader first) and acts on
//! what it hears, as a Swarm node acts on its dispatcher session:
//!
//! - the managers' addresses, for the identity and the agent's dispatcher;
//! - the trusted roots (two during a CA rotation), for every TLS
//!   configuration of the node;
//! - the gossip keys and seeds, saved in the identity;
//! - the role the cluster gives the node: a promoted worker renews its
//!   certificate as a manager, then starts the manager parts and asks to be
//!   added to the Raft group; a demoted manager waits until the leader has
//!   taken it out of the group, then stops its manager parts (its tasks keep
//!   running) and renews its certificate as a worker;
//! - its certificate: renewed when it is due (between half and four fifths of
//!   its validity) or when another root signs now (a CA rotation).
//!
//! Every step is idempotent and judged again on the next message, so a step
//! that fails (a manager gone mid-call) is simply retried on the next stream.

use super::{agent_managers, bind_rpc, client_tls_config, Role, Shared};
use anyhow::{anyhow, Context};
use api::rpc::node::node_ca_client::NodeCaClient;
use api::rpc::node::{ClusterInfo, RenewNodeCertificateRequest, WatchClusterRequest};
use api::rpc::PeerRole;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

/// The first wait after a failed stream; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How often a node whose certificate cannot be renewed yet tries again.
const RENEW_RETRY: Duration = Duration::from_secs(10);

type Client = NodeCaClient<Channel>;

/// Follows the cluster until the node stops (the task is aborted).
pub(super) async fn run(shared: Arc<Shared>) {
    let mut failures: u32 = 0;
    let mut next = 0usize;
    loop {
        let managers = shared.identity().managers;
        if managers.is_empty() {
            tracing::warn!("this node knows no manager to follow");
            tokio::time::sleep(BACKOFF_MAX).await;
            continue;
        }
        let addr = managers[next % managers.len()].clone();
        match follow(&shared, &addr).await {
            Ok(()) => {
                failures = 0;
                next = 0;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                next += 1;
                // A removed node hears the same refusal from every manager.
                if failures % 10 == 1 {
                    tracing::warn!(manager = %addr, "following the cluster: {e:#}");
                } else {
                    tracing::debug!(manager = %addr, "following the cluster: {e:#}");
                }
            }
        }
        let wait = BACKOFF_MIN
            .saturating_mul(1 << failures.min(5))
            .min(BACKOFF_MAX);
        tokio::time::sleep(wait).await;
    }
}

/// One stream: applies every message, and renews the certificate when due.
/// Returns Ok when the manager ended the stream, Err on any failure.
async fn follow(shared: &Shared, addr: &str) -> anyhow::Result<()> {
    let channel = shared
        .connector
        .channel(addr)
        .with_context(|| format!("connecting to {addr}"))?;
    let mut client = NodeCaClient::new(channel);
    let mut stream = client
        .watch_cluster(WatchClusterRequest {})
        .await
        .map_err(|s| anyhow!("{addr}: {}", s.message()))?
        .into_inner();
    let mut waiting_to_leave = false;
    loop {
        let due = renewal_due(&shared.identity().cert_pem);
        tokio::select! {
            message = stream.message() => {
                let Some(info) = message.map_err(|s| anyhow!("{addr}: {}", s.message()))? else {
                    return Ok(());
                };
                apply(shared, &mut client, &info, &mut waiting_to_leave).await?;
            }
            () = tokio::time::sleep_until(due) => {
                renew(shared, &mut client, "the certificate is due for renewal").await?;
            }
        }
    }
}

/// When the certificate is due for renewal, as a tokio instant; soon when
/// it cannot be read (then renewal repairs it).
fn renewal_due(cert_pem: &str) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match ca::renewal_time(cert_pem) {
        Ok(at) => {
            now + at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
        Err(_) => now + RENEW_RETRY,
    }
}

async fn apply(
    shared: &Shared,
    client: &mut Client,
    info: &ClusterInfo,
    waiting_to_leave: &mut bool,
) -> anyhow::Result<()> {
    let before = shared.identity();
    let managers = if info.managers.is_empty() {
        before.managers.clone()
    } else {
        info.managers.clone()
    };
    // Empty fields (a manager that has not caught up) change nothing.
    let trust_changed = !info.trust_pem.is_empty() && info.trust_pem != before.trust_pem;
    let keys_changed = !info.gossip_keys.is_empty() && info.gossip_keys != before.gossip_keys;
    if managers != before.managers
        || trust_changed
        || keys_changed
        || info.gossip_seeds != before.gossip_seeds
    {
        shared.update_identity(|id| {
            id.managers = managers.clone();
            if trust_changed {
                id.trust_pem = info.trust_pem.clone();
            }
            if keys_changed {
                id.gossip_keys = info.gossip_keys.clone();
            }
            id.gossip_seeds = info.gossip_seeds.clone();
        })?;
        shared.apply_gossip(&info.gossip_keys, &info.gossip_seeds);
    }
    if managers != before.managers {
        let me = shared.view().rpc_addr.filter(|a| a.port() != 0);
        shared.set_agent_managers(agent_managers(&managers, me));
    }
    if trust_changed {
        tracing::info!("the cluster's trusted roots changed (a CA rotation); reloading TLS");
        reload_tls(shared).await?;
    }

    let Some(want) = Role::parse(&info.role) else {
        return Err(anyhow!("the manager named an unknown role {:?}", info.role));
    };
    let acting = shared.identity().role;
    match want {
        Role::Manager => {
            if cert_role(shared)? != PeerRole::Manager {
                renew(shared, client, "this node was promoted to manager").await?;
            }
            if acting == Role::Worker {
                become_manager(shared, &managers).await?;
            }
        }
        Role::Worker => {
            if acting == Role::Manager {
                let me = shared.view().rpc_addr.map(|a| a.to_string());
                if me.is_some_and(|me| managers.contains(&me)) {
                    if !*waiting_to_leave {
                        tracing::info!("demoted: waiting for the leader to take this manager out of the Raft group");
                        *waiting_to_leave = true;
                    }
                    return Ok(());
                }
                become_worker(shared).await?;
            }
            *waiting_to_leave = false;
            if cert_role(shared)? != PeerRole::Worker {
                renew(shared, client, "this node was demoted to worker").await?;
            }
        }
    }

    let cert = shared.identity().cert_pem;
    if !info.signing_root_pem.is_empty() && !ca::issued_by(&cert, &info.signing_root_pem)? {
        renew(shared, client, "another root signs node certificates now").await?;
    } else if ca::needs_renewal(&cert, SystemTime::now()) {
        renew(shared, client, "the certificate is due for renewal").await?;
    }
    Ok(())
}

fn cert_role(shared: &Shared) -> anyhow::Result<PeerRole> {
    Ok(shared.identity().tls_identity()?.peer().role)
}

/// A new key and certificate from a manager (with the role the cluster
/// gives the node now), saved, then used for every new connection.
async fn renew(shared: &Shared, client: &mut Client, why: &str) -> anyhow::Result<()> {
    let key = ca::NodeKey::generate().context("making a new node key")?;
    let cert = client
        .renew_node_certificate(RenewNodeCertificateRequest {
            csr_pem: key.csr_pem()?,
        })
        .await
        .map_err(|s| anyhow!("renewing the node certificate: {}", s.message()))?
        .into_inner();
    // Refuse an answer that does not fit the key before anything uses it.
    let issued = ca::NodeIdentity::from_pem(&cert.cert_pem, &key.key_pem())
        .context("the renewed certificate does not fit this node's key")?;
    ca::TrustBundle::from_pem(&cert.trust_pem).context("the roots sent with the certificate")?;
    shared.update_identity(|id| {
        id.cert_pem = cert.cert_pem.clone();
        id.key_pem = key.key_pem();
        id.trust_pem = cert.trust_pem.clone();
    })?;
    reload_tls(shared).await?;
    let role = match issued.peer().role {
        PeerRole::Manager => "manager",
        PeerRole::Worker => "worker",
    };
    tracing::info!(role, "node certificate renewed: {why}");
    Ok(())
}

/// Every TLS configuration of the node from the identity as it is now: the
/// RPC client's (and so the agent's) and, on a manager, the RPC server's.
async fn reload_tls(shared: &Shared) -> anyhow::Result<()> {
    let identity = shared.identity();
    shared
        .client_tls
        .send_replace(client_tls_config(&identity)?);
    if let Some(m) = shared.manager.lock().await.as_ref() {
        m.reload_tls(&identity.tls_identity()?, &identity.trust()?)?;
    }
    Ok(())
}

/// A promoted node starts its manager parts on a fresh store, which joins
/// the Raft group through the leader and catches up, then serves the API.
async fn become_manager(shared: &Shared, managers: &[String]) -> anyhow::Result<()> {
    let mut slot = shared.manager.lock().await;
    if slot.is_some() {
        return Ok(());
    }
    tracing::info!("promoted: starting this node's manager parts");
    // Whatever an earlier membership left is stale: the group sends a
    // snapshot to a new member.
    remove_manager_dirs(shared)?;
    let listener = bind_rpc(&shared.cfg).await?;
    let rpc_adv = SocketAddr::new(shared.cfg.addrs.advertise, listener.local_addr()?.port());
    let join_via = managers.first().map(String::as_str);
    let mut parts = shared
        .start_manager_parts(None, listener, rpc_adv, join_via)
        .await
        .context("starting the manager parts of a promoted node")?;
    let identity = shared.identity();
    if let Err(e) = shared.serve_api(&mut parts, &identity, rpc_adv).await {
        parts.shutdown().await;
        return Err(e.context("serving the API of a promoted node"));
    }
    shared.set_manager_view(&parts, rpc_adv);
    *slot = Some(parts);
    drop(slot);
    shared.update_identity(|id| id.role = Role::Manager)?;
    shared.set_agent_managers(agent_managers(managers, Some(rpc_adv)));
    shared.role.send_replace(Role::Manager);
    tracing::info!(rpc = %rpc_adv, "this node is now a manager");
    Ok(())
}

/// A demoted node, once out of the Raft group, stops its manager parts and
/// drops their data; the agent and its tasks go on.
async fn become_worker(shared: &Shared) -> anyhow::Result<()> {
    let parts = shared.manager.lock().await.take();
    shared.clear_manager_view();
    // Saved first: a node that crashes from here on restarts as a worker.
    let identity = shared.update_identity(|id| id.role = Role::Worker)?;
    shared.role.send_replace(Role::Worker);
    if let Some(parts) = parts {
        tracing::info!("demoted: stopping this node's manager parts");
        parts.shutdown().await;
    }
    remove_manager_dirs(shared)?;
    let managers = identity.managers;
    shared.set_agent_managers(agent_managers(&managers, None));
    tracing::info!("this node is now a worker");
    Ok(())
}

fn remove_manager_dirs(shared: &Shared) -> anyhow::Result<()> {
    for dir in ["store", "api"] {
        let path = shared.cfg.data_dir.join(dir);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}
