//! The managers' certificate authority and membership RPCs (`node.proto`):
//! a joining node shows its token and a CSR and gets its node id and
//! certificate; a node renews its certificate (with the role the cluster now
//! gives it); a new manager asks to be added to the Raft group.
//!
//! The CA's key lives in the store (the `Cluster` object's security), so any
//! manager can sign. The node record is written before the certificate is
//! returned: a certificate whose node is not in the store is refused at the
//! handshake, so a node removed from the cluster cannot come back with it.

use api::rpc::node::membership_server::{Membership, MembershipServer};
use api::rpc::node::node_ca_server::{NodeCa, NodeCaServer};
use api::rpc::node::{
    ClusterInfo, GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest,
    JoinManagersRequest, JoinManagersResponse, NodeCertificate, RenewNodeCertificateRequest,
    WatchClusterRequest,
};
use api::rpc::PeerRole;
use api::{ClusterSecurity, Node, NodeRole, NodeState, Op};
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use store::Store;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How often the managers' addresses are looked at again for the
/// `WatchCluster` streams: the leader (first of them) can change without a
/// store change.
const WATCH_RECHECK: Duration = Duration::from_secs(1);

/// Attempts at a read-modify-write of a node record before giving up.
const NODE_WRITE_ATTEMPTS: usize = 5;

/// A signed certificate, and the digest of the root that signed it.
struct Signed {
    cert: NodeCertificate,
    root_digest: String,
}

/// The root that signs node certificates now (the new one during a rotation).
pub(super) fn signing_root(sec: &ClusterSecurity) -> Result<ca::RootCa, ca::CaError> {
    let keys = sec.signing_root();
    ca::RootCa::from_stored(&ca::StoredRootCa {
        cert_pem: keys.cert_pem.clone(),
        key_pem: keys.key_pem.clone(),
    })
}

#[derive(Clone)]
pub struct CaService {
    store: Store,
    /// The managers' addresses, leader first, looked at by one task for all
    /// the `WatchCluster` streams (one per node) rather than by each.
    managers: watch::Receiver<Vec<String>>,
}

impl CaService {
    /// Must be called within a tokio runtime: it starts the task that
    /// follows the managers' addresses, which ends with the last clone.
    pub fn new(store: Store) -> CaService {
        let (tx, managers) = watch::channel(store.manager_addrs());
        tokio::spawn(follow_managers(store.clone(), tx));
        CaService { store, managers }
    }

    pub fn node_ca(&self) -> NodeCaServer<CaService> {
        NodeCaServer::new(self.clone())
    }

    pub fn membership(&self) -> MembershipServer<CaService> {
        MembershipServer::new(self.clone())
    }

    fn security(&self) -> Result<ClusterSecurity, Status> {
        self.store
            .view(|s| s.cluster().and_then(|c| c.security.clone()))
            .ok_or_else(|| {
                Status::unavailable("this manager has not caught up with the cluster yet")
            })
    }

    /// Signs a certificate for `node_id` with the root that signs now (the
    /// new one during a rotation, followed in the chain by its cross-signed
    /// certificate), valid as long as the cluster says.
    fn sign(
        &self,
        sec: &ClusterSecurity,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
    ) -> Result<Signed, Status> {
        let root = signing_root(sec).map_err(|e| {
            tracing::error!(error = %e, "the cluster root CA in the store is unusable");
            Status::internal("the cluster root CA is unusable")
        })?;
        let peer_role = match role {
            NodeRole::Manager => PeerRole::Manager,
            NodeRole::Worker => PeerRole::Worker,
        };
        let validity = self
            .store
            .view(|s| s.cluster().map(|c| c.node_cert_validity))
            .filter(|v| !v.is_zero())
            .unwrap_or(ca::renewal::DEFAULT_NODE_CERT_VALIDITY);
        let leaf = root
            .issue_node_certificate(
                csr_pem,
                node_id,
                peer_role,
                &sec.cluster_id,
                validity,
                SystemTime::now(),
            )
            .map_err(|e| Status::invalid_argument(format!("certificate request refused: {e}")))?;
        let cert_pem = match sec.chain_suffix() {
            "" => leaf,
            suffix => format!("{}\n{}", leaf.trim_end(), suffix),
        };
        Ok(Signed {
            cert: NodeCertificate {
                node_id: node_id.to_string(),
                role: role_name(role).to_string(),
                cluster_id: sec.cluster_id.clone(),
                cert_pem,
                trust_pem: sec.trust_pem(),
                managers: self.store.manager_addrs(),
                gossip_keys: sec.gossip_keys.clone(),
                gossip_seeds: self.store.view(gossip_seeds),
            },
            root_digest: root.digest().to_string(),
        })
    }

    /// Records which root issued `node_id`'s certificate now, retrying
    /// when a concurrent write (the dispatcher's) moved the node.
    async fn record_cert_root(&self, node_id: &str, digest: &str) -> Result<(), Status> {
        for _ in 0..NODE_WRITE_ATTEMPTS {
            let Some(mut node) = self.store.view(|s| s.node(node_id).cloned()) else {
                return Err(Status::permission_denied(format!(
                    "node {node_id} was removed from the cluster"
                )));
            };
            if node.status.cert_root == digest {
                return Ok(());
            }
            node.status.cert_root = digest.to_string();
            match self.store.update(vec![Op::Update(node.into())]).await {
                Ok(_) => return Ok(()),
                Err(store::StoreError::Apply(_)) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(Status::unavailable(format!(
            "node {node_id} kept changing; renew again"
        )))
    }

    /// What `node_id` must follow of the cluster now, with `managers` as
    /// its stream last took them from `CaService::managers`; `None` once
    /// the node is no longer a member (or this manager has not caught up).
    fn cluster_info(&self, node_id: &str, managers: Vec<String>) -> Option<ClusterInfo> {
        self.store.view(|s| {
            let sec = s.cluster()?.security.as_ref()?;
            let node = s.node(node_id)?;
            Some(ClusterInfo {
                managers,
                trust_pem: sec.trust_pem(),
                signing_root_pem: sec.signing_root().cert_pem.clone(),
                gossip_keys: sec.gossip_keys.clone(),
                gossip_seeds: gossip_seeds(s),
                role: role_name(node.spec.role).to_string(),
            })
        })
    }
}

/// The gossip address a joining node sent, if it is one (`host:port`).
fn gossip_addr(sent: &str) -> String {
    match sent.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => a.to_string(),
        _ => String::new(),
    }
}

/// Whether a store event may change a `ClusterInfo`: the cluster object
/// (roots, keys) or a node (roles, gossip addresses).
fn concerns_cluster_info(event: &api::Event) -> bool {
    let relevant = |o: &api::Object| matches!(o, api::Object::Cluster(_) | api::Object::Node(_));
    match event {
        api::Event::Created(o) | api::Event::Deleted(o) => relevant(o),
        api::Event::Updated { new, .. } => relevant(new),
    }
}

/// The gossip addresses of the managers, the seeds a node joins gossip through.
fn gossip_seeds(s: &api::State) -> Vec<String> {
    s.nodes()
        .filter(|n| n.spec.role == NodeRole::Manager && !n.status.gossip_addr.is_empty())
        .map(|n| n.status.gossip_addr.clone())
        .collect()
}

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

fn unavailable(e: store::StoreError) -> Status {
    match e {
        store::StoreError::Apply(e) => Status::aborted(e.to_string()),
        e => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl NodeCa for CaService {
    async fn get_root_ca(
        &self,
        _request: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        let sec = self.security()?;
        Ok(Response::new(GetRootCaResponse {
            trust_pem: sec.trust_pem(),
        }))
    }

    async fn issue_node_certificate(
        &self,
        request: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<NodeCertificate>, Status> {
        let remote = request.remote_addr().or_else(|| {
            request
                .extensions()
                .get::<api::rpc::PeerInfo>()
                .and_then(|p| p.remote_addr)
        });
        let req = request.into_inner();
        let sec = self.security()?;
        // Never echo the token: a typo'd secret is still most of a secret.
        let shown = ca::JoinToken::from_str(req.token.trim())
            .map_err(|e| Status::invalid_argument(format!("the join token is malformed: {e}")))?;
        let matches =
            |stored: &str| ca::JoinToken::from_str(stored).is_ok_and(|t| t.secret_matches(&shown));
        let role = if matches(&sec.join_tokens.manager) {
            NodeRole::Manager
        } else if matches(&sec.join_tokens.worker) {
            NodeRole::Worker
        } else {
            tracing::warn!(from = ?remote, "join refused: the token is not this cluster's (or was rotated)");
            return Err(Status::permission_denied(
                "invalid join token: it is not this cluster's, or it was rotated",
            ));
        };
        let hostname = if req.hostname.is_empty() {
            "unknown".to_string()
        } else {
            req.hostname.clone()
        };
        let node_id = api::new_id();
        let ip = req
            .rpc_addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .or_else(|| remote.map(|r| r.ip().to_string()))
            .unwrap_or_default();
        let node = Node {
            meta: api::Meta::new(node_id.clone()),
            spec: api::NodeSpec {
                role,
                ..api::NodeSpec::default()
            },
            description: api::NodeDescription {
                hostname,
                ..api::NodeDescription::default()
            },
            status: api::NodeStatus {
                state: NodeState::Unknown,
                message: "joined, waiting for its agent".into(),
                addr: ip,
                // Where the node gossips (a manager's is a seed for others).
                gossip_addr: gossip_addr(&req.gossip_addr),
                ..Default::default()
            },
            manager_status: None,
        };
        // Sign first (a bad CSR writes nothing), then record the node, then
        // answer: a certificate is only ever handed out for a recorded node.
        let signed = self.sign(&sec, &req.csr_pem, &node_id, role)?;
        let mut node = node;
        node.status.cert_root = signed.root_digest;
        self.store
            .update(vec![Op::Create(node.into())])
            .await
            .map_err(unavailable)?;
        tracing::info!(node = %node_id, role = role_name(role), from = ?remote, "node joined");
        if role == NodeRole::Manager {
            let managers = self.store.view(|s| {
                s.nodes()
                    .filter(|n| n.spec.role == NodeRole::Manager)
                    .count()
            });
            if let Some(warning) = super::even_managers_warning(managers) {
                tracing::warn!("{warning}");
            }
        }
        Ok(Response::new(signed.cert))
    }

    async fn renew_node_certificate(
        &self,
        request: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<NodeCertificate>, Status> {
        let caller = ca::check_peer(&request, None)?.node_id.clone();
        let req = request.into_inner();
        let sec = self.security()?;
        let role = self
            .store
            .view(|s| s.node(&caller).map(|n| n.spec.role))
            .ok_or_else(|| {
                Status::permission_denied(format!("node {caller} was removed from the cluster"))
            })?;
        let signed = self.sign(&sec, &req.csr_pem, &caller, role)?;
        // Recorded before the answer: a rotation must not end while a node
        // still holds only a certificate of the old root.
        self.record_cert_root(&caller, &signed.root_digest).await?;
        tracing::info!(node = %caller, role = role_name(role), "node certificate renewed");
        Ok(Response::new(signed.cert))
    }

    type WatchClusterStream = ReceiverStream<Result<ClusterInfo, Status>>;

    async fn watch_cluster(
        &self,
        request: Request<WatchClusterRequest>,
    ) -> Result<Response<Self::WatchClusterStream>, Status> {
        let caller = ca::check_peer(&request, None)?.node_id.clone();
        // Subscribed before the first message is taken, so no change falls
        // between the two.
        let mut changes = self.store.watch();
        // The managers as published for every stream, and marked seen as
        // they are taken: every later change of them wakes this stream,
        // whatever store changes came between.
        let mut managers = self.managers.clone();
        let first = self
            .cluster_info(&caller, managers.borrow_and_update().clone())
            .ok_or_else(|| {
                Status::permission_denied(format!("node {caller} is not a member of the cluster"))
            })?;
        let (tx, rx) = mpsc::channel(4);
        let service = self.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            let mut followed = true;
            loop {
                // Only a change of the cluster object or of a node can
                // change the answer, and without any change only the
                // leader can (followed by one task for every stream): with
                // a stream per node, the many task updates must not each
                // recompute every answer, nor each stream wake on a timer.
                let relevant = tokio::select! {
                    _ = tx.closed() => return,
                    r = changes.recv() => match r {
                        Ok(change) => change.events.iter().any(concerns_cluster_info),
                        Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                    r = managers.changed(), if followed => match r {
                        Ok(()) => true,
                        // The follower ended with the service: store
                        // changes alone from now on.
                        Err(_) => {
                            followed = false;
                            false
                        }
                    },
                };
                if !relevant {
                    continue;
                }
                let now = managers.borrow_and_update().clone();
                match service.cluster_info(&caller, now) {
                    Some(info) if info == last => {}
                    Some(info) => {
                        last = info;
                        if tx.send(Ok(last.clone())).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = tx
                            .send(Err(Status::permission_denied(format!(
                                "node {caller} was removed from the cluster"
                            ))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Publishes the managers' addresses (leader first) when they change,
/// looking every [`WATCH_RECHECK`], until no `CaService` is left.
async fn follow_managers(store: Store, tx: watch::Sender<Vec<String>>) {
    let mut tick = tokio::time::interval(WATCH_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = tick.tick() => {}
        }
        let now = store.manager_addrs();
        tx.send_if_modified(|m| {
            let changed = *m != now;
            if changed {
                *m = now;
            }
            changed
        });
    }
}

#[tonic::async_trait]
impl Membership for CaService {
    async fn join_managers(
        &self,
        request: Request<JoinManagersRequest>,
    ) -> Result<Response<JoinManagersResponse>, Status> {
        let caller = ca::check_peer(&request, Some(PeerRole::Manager))?
            .node_id
            .clone();
        let req = request.into_inner();
        let is_manager = self
            .store
            .view(|s| s.node(&caller).map(|n| n.spec.role == NodeRole::Manager));
        match is_manager {
            Some(true) => {}
            Some(false) => {
                return Err(Status::permission_denied(format!(
                    "node {caller} is not a manager of the cluster (any more)"
                )))
            }
            None => {
                return Err(Status::permission_denied(format!(
                    "node {caller} was removed"
                )))
            }
        }
        if req.rpc_addr.is_empty() {
            return Err(Status::invalid_argument("rpc_addr is empty"));
        }
        let raft_id = store::raft_id(&caller);
        self.store
            .add_manager(raft_id, &req.rpc_addr)
            .await
            .map_err(unavailable)?;
        tracing::info!(node = %caller, addr = %req.rpc_addr, "manager added to the Raft group");
        Ok(Response::new(JoinManagersResponse { raft_id }))
    }
}

/// How long a rotation whose every node holds a certificate of the new root
/// waits before it ends: the last node to renew is given time to start using
/// its certificate before the old root stops being trusted.
const ROTATION_SETTLE: Duration = Duration::from_secs(3);

/// On the leader, ends a root CA rotation once every node in the cluster
/// holds a certificate of the new root: the new root becomes the only one
/// trusted, and the join tokens are made anew (they pin the root's digest,
/// so the old ones could not be used anyway).
pub(super) async fn finish_root_rotations(store: Store) {
    let mut changes = store.watch();
    let mut complete_since: Option<tokio::time::Instant> = None;
    loop {
        let complete = store.is_leader()
            && store
                .view(controller::ca_status)
                .and_then(Result::ok)
                .and_then(|s| s.rotation)
                .is_some_and(|r| r.renewed == r.nodes);
        if !complete {
            complete_since = None;
        } else {
            let since = *complete_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= ROTATION_SETTLE {
                match end_rotation(&store).await {
                    Ok(true) => tracing::info!("cluster root CA rotation complete: every node holds a certificate of the new root"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "ending the root CA rotation; retrying"),
                }
                complete_since = None;
            }
        }
        // Rechecked every second too: the settle time passes without a change.
        let _ = tokio::time::timeout(WATCH_RECHECK, changes.recv()).await;
    }
}

async fn end_rotation(store: &Store) -> Result<bool, String> {
    let Some(mut cluster) = store.view(|s| s.cluster().cloned()) else {
        return Ok(false);
    };
    let Some(sec) = cluster.security.as_mut() else {
        return Ok(false);
    };
    let Some(rotation) = sec.root_rotation.take() else {
        return Ok(false);
    };
    let digest = ca::digest_of_pem(&rotation.new_root.cert_pem).map_err(|e| e.to_string())?;
    sec.root_ca = rotation.new_root;
    sec.join_tokens = api::JoinTokens {
        worker: ca::JoinToken::generate(&digest).to_string(),
        manager: ca::JoinToken::generate(&digest).to_string(),
    };
    // Against the version read: a node that joined meanwhile (with a
    // certificate of the new root, since it signs) makes this retry.
    store
        .update(vec![Op::Update(cluster.into())])
        .await
        .map(|_| true)
        .map_err(|e| e.to_string())
}
