//! One berth node, wired: on a manager the store (its replica of the Raft
//! group), the manager's control loops, the dispatcher, the CA and the API;
//! on every node the agent with its runtime driver, talking to the managers
//! over the cluster RPC (gRPC over mutual TLS). `berth up`, `init` and `join`
//! run one of these until Ctrl-C; the tests start it in process.
//!
//! A node starts in one of three ways: it founds a cluster (`up`, `init`: a
//! cluster id, both root CAs, the join tokens, its own manager certificate, a
//! one-voter Raft group), joins one (`join`: the token pins the cluster CA, a
//! manager signs the node's certificate, a manager is then added to the Raft
//! group), or resumes the identity saved in its data dir by an earlier start.

mod ca_service;
mod directory;
mod follow;
mod gossip;
mod identity;
pub mod ipc;
mod leave;
mod manager;

use manager::{start_manager, ManagerParts};

pub use identity::{Identity, Role};
pub use leave::leave_stopped;

use crate::credentials::Credentials;
use anyhow::{anyhow, bail, Context};
use api::rpc::node::node_ca_client::NodeCaClient;
use api::rpc::node::{GetRootCaRequest, IssueNodeCertificateRequest};
use api::rpc::{Connector, PeerRole};
use api::{CaKeys, ClusterSecurity, JoinTokens};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The cluster RPC port (Raft, dispatcher, CA; mutual TLS).
pub const RPC_PORT: u16 = 7377;
/// The HTTPS API port of managers.
pub const API_PORT: u16 = 7443;
/// The gossip port (UDP).
pub const GOSSIP_PORT: u16 = 7946;

/// How long a joining node keeps trying to reach the manager it was given,
/// and a new manager to be added to the Raft group.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long each server (cluster RPC, API) may take to stop at shutdown.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a node listens, and the address it gives others.
#[derive(Clone, Debug)]
pub struct NodeAddrs {
    pub advertise: IpAddr,
    /// Cluster RPC (managers only). Port 0: any free port.
    pub rpc: SocketAddr,
    /// HTTPS API (managers only). Port 0: any free port.
    pub api: SocketAddr,
    /// Gossip (UDP).
    pub gossip: SocketAddr,
}

impl NodeAddrs {
    /// Everything on one loopback address with free ports: a node that only
    /// this machine talks to (`berth up`, tests).
    pub fn loopback(api: SocketAddr) -> NodeAddrs {
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        NodeAddrs {
            advertise: ip,
            rpc: SocketAddr::new(ip, 0),
            api,
            gossip: SocketAddr::new(ip, 0),
        }
    }
}

/// How the node becomes part of a cluster on its first start. On later
/// starts the identity in the data dir decides, and this only matters for
/// `--force-new-cluster`.
#[derive(Clone, Debug)]
pub enum Membership {
    /// `berth up`: found a single-node cluster (or resume it).
    Up,
    /// `berth init`: found a cluster (or resume); with `force_new_cluster`,
    /// restart this manager's data as the only member of a new Raft group.
    Init { force_new_cluster: bool },
    /// `berth join`: join through the manager at `manager` (cluster RPC
    /// address) with `token`.
    Join { token: String, manager: String },
}

pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub addrs: NodeAddrs,
    /// Reported hostname; the machine's when unset.
    pub hostname: Option<String>,
    /// How the exec driver starts a task's shim: the berth binary and `shim`.
    pub shim: agent::ShimCommand,
    /// Where to write the admin credential for the CLI; none: keep it in memory only.
    pub credentials_file: Option<PathBuf>,
    pub membership: Membership,
    /// The password of the first admin user (`admin`), made when a cluster
    /// is founded; `None` makes a random one, shown once
    /// ([`Node::initial_admin_password`]).
    pub admin_password: Option<String>,
}

pub struct Node {
    pub node_id: String,
    pub cluster_id: String,
    shared: Arc<Shared>,
    agent: agent::Agent,
    follower: tokio::task::JoinHandle<()>,
    credentials: Option<Credentials>,
    initial_admin_password: Option<String>,
    /// Requests from `berth leave` on this machine, through the control socket.
    leave_requests: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<ipc::LeaveRequest>>,
    _control: AbortOnDrop,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the node's parts share: the identity (saved on every change), the
/// TLS configuration of its RPC client, the agent's dispatcher, and the
/// manager parts, which come and go with the node's role.
pub(crate) struct Shared {
    cfg: NodeConfig,
    identity: std::sync::Mutex<Identity>,
    client_tls: tokio::sync::watch::Sender<Arc<rustls::ClientConfig>>,
    connector: Arc<dyn Connector>,
    /// The agent's: held weakly, so that its connections close with the
    /// agent (the RPC server would otherwise wait for them at shutdown).
    dispatcher: std::sync::Weak<agent::remote::RemoteDispatcher>,
    driver: Arc<dyn agent::Driver>,
    manager: tokio::sync::Mutex<Option<ManagerParts>>,
    view: std::sync::Mutex<View>,
    role: tokio::sync::watch::Sender<Role>,
    /// The node's gossip member; none if it could not start.
    gossip: Option<gossip::NodeGossip>,
}

/// What the node's accessors answer without waiting for a role change.
#[derive(Clone, Default)]
struct View {
    store: Option<store::Store>,
    api_addr: Option<SocketAddr>,
    /// The advertised cluster RPC address; port 0 on a worker.
    rpc_addr: Option<SocketAddr>,
}

impl Node {
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Node> {
        let data_dir = cfg.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let lock = lock_data_dir(&data_dir)?;
        let hostname = cfg.hostname.clone().unwrap_or_else(crate::hostname);

        // Managers listen before anything else: a joining manager's address
        // goes into its join request, and a port 0 must be resolved first.
        let existing = Identity::load(&data_dir)?;
        let will_manage = match (&existing, &cfg.membership) {
            (Some(id), _) => id.role == Role::Manager,
            (None, Membership::Join { .. }) => true, // decided by the token; bound anyway
            (None, _) => true,
        };
        let rpc_listener = if will_manage {
            Some(bind_rpc(&cfg).await?)
        } else {
            None
        };
        let rpc_adv = match &rpc_listener {
            Some(l) => SocketAddr::new(cfg.addrs.advertise, l.local_addr()?.port()),
            None => SocketAddr::new(cfg.addrs.advertise, 0),
        };
        // Gossip's port goes into the join request too.
        let gossip_socket = gossip::BoundGossip::bind(&cfg.addrs)?;

        let (identity, founded) = match existing {
            Some(id) => {
                if let Membership::Join { .. } = cfg.membership {
                    tracing::warn!(
                        "this node is already part of cluster {}: resuming it (the token is not used)",
                        id.cluster_id
                    );
                }
                (id, None)
            }
            None => match &cfg.membership {
                Membership::Up | Membership::Init { .. } => {
                    if data_dir.join("store").exists() {
                        bail!(
                            "{} holds a store but no node identity (made by an older berth?): \
                             start with an empty --data-dir",
                            data_dir.display()
                        );
                    }
                    let (id, sec) = found_cluster(&rpc_adv)?;
                    id.save(&data_dir)?;
                    (id, Some(sec))
                }
                Membership::Join { token, manager } => {
                    let gossip_adv = gossip_socket.advertised();
                    let id = join_cluster(token, manager, &hostname, &rpc_adv, gossip_adv).await?;
                    id.save(&data_dir)?;
                    (id, None)
                }
            },
        };
        let rpc_listener = if identity.role == Role::Manager {
            rpc_listener
        } else {
            None // a worker serves no RPC: its listener is closed here
        };

        let (client_tls, client_tls_rx) =
            tokio::sync::watch::channel(client_tls_config(&identity)?);
        let connector: Arc<dyn Connector> = Arc::new(
            ca::MtlsConnector::reloading(client_tls_rx).with_source_ip(cfg.addrs.advertise),
        );
        // The agent talks to the dispatcher over the cluster RPC even on a
        // manager: one code path, and it follows the leader wherever it is.
        let driver: Arc<dyn agent::Driver> = Arc::new(
            agent::ExecDriver::new(data_dir.join("exec"), cfg.shim.clone())
                .context("starting the exec driver")?,
        );
        let dispatcher = Arc::new(agent::remote::RemoteDispatcher::new(
            connector.clone(),
            agent_managers(&identity.managers, Some(rpc_adv).filter(|a| a.port() != 0)),
        ));
        let gossip = gossip::start(gossip_socket, &identity).await;
        let shared = Arc::new(Shared {
            gossip,
            identity: std::sync::Mutex::new(identity.clone()),
            client_tls,
            connector,
            dispatcher: Arc::downgrade(&dispatcher),
            driver: driver.clone(),
            manager: tokio::sync::Mutex::new(None),
            view: std::sync::Mutex::new(View {
                rpc_addr: Some(rpc_adv),
                ..View::default()
            }),
            role: tokio::sync::watch::channel(identity.role).0,
            cfg,
        });

        let mut manager = match identity.role {
            Role::Manager => {
                let listener =
                    rpc_listener.ok_or_else(|| anyhow!("a manager without its RPC listener"))?;
                let join_via = match &shared.cfg.membership {
                    Membership::Join { manager, .. } => Some(manager.clone()),
                    _ => identity.managers.first().cloned(),
                };
                Some(
                    shared
                        .start_manager_parts(founded, listener, rpc_adv, join_via.as_deref())
                        .await?,
                )
            }
            Role::Worker => None,
        };

        let agent_dir = data_dir.join("agent");
        std::fs::create_dir_all(&agent_dir)?;
        // The agent registers as the node its certificate names.
        std::fs::write(agent_dir.join("node-id"), &identity.node_id)
            .context("writing the agent's node id")?;
        let mut agent_cfg = agent::AgentConfig::new(agent_dir);
        agent_cfg.hostname = Some(hostname);
        let agent = match agent::Agent::start(dispatcher, driver, agent_cfg).await {
            Ok(a) => a,
            Err(e) => {
                if let Some(m) = manager {
                    m.shutdown().await;
                }
                return Err(e).context(
                    "starting the agent (no manager accepted this node: if it was removed from \
                     the cluster, its certificate is refused; empty its data dir and join again)",
                );
            }
        };
        let mut credentials = None;
        let mut initial_admin_password = None;
        if let Some(m) = manager.as_mut() {
            if let Err(e) = shared.serve_api(m, &identity, rpc_adv).await {
                let _ = agent.shutdown().await;
                if let Some(m) = manager {
                    m.shutdown().await;
                }
                return Err(e);
            }
            credentials = m.credentials.clone();
            initial_admin_password = m.initial_admin_password.take();
        }
        if let Some(m) = manager {
            shared.set_manager_view(&m, rpc_adv);
            *shared.manager.lock().await = Some(m);
        }
        let follower = tokio::spawn(follow::run(shared.clone()));

        let (leave_tx, leave_rx) = tokio::sync::mpsc::channel(1);
        let control = ipc::serve(&data_dir, leave_tx).with_context(|| {
            format!(
                "serving the control socket {}",
                ipc::socket_path(&data_dir).display()
            )
        })?;
        Ok(Node {
            node_id: identity.node_id.clone(),
            cluster_id: identity.cluster_id.clone(),
            shared,
            agent,
            follower,
            credentials,
            initial_admin_password,
            leave_requests: tokio::sync::Mutex::new(leave_rx),
            _control: AbortOnDrop(control),
            _lock: lock,
        })
    }

    pub fn is_manager(&self) -> bool {
        *self.shared.role.borrow() == Role::Manager
    }

    /// The role the node acts in, as it changes: a promotion takes effect
    /// once the manager parts run, a demotion once they stopped.
    pub fn role(&self) -> tokio::sync::watch::Receiver<Role> {
        self.shared.role.subscribe()
    }

    /// The password made for the `admin` user when this node founded the
    /// cluster without being given one: shown once, never stored.
    pub fn initial_admin_password(&self) -> Option<&str> {
        self.initial_admin_password.as_deref()
    }

    /// The admin credential for the CLI, on the manager that founded the
    /// cluster (or resumed it with the credentials file in place).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// This manager's replica of the store (none on a worker).
    pub fn store(&self) -> Option<store::Store> {
        self.shared.view().store
    }

    /// The HTTPS API's address (managers only).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.shared.view().api_addr
    }

    /// The advertised cluster RPC address: a manager's, or the advertised IP
    /// with port 0 on a worker (workers serve no RPC).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.shared
            .view()
            .rpc_addr
            .unwrap_or_else(|| SocketAddr::new(self.shared.cfg.addrs.advertise, 0))
    }

    /// The identity as this node holds it now (its certificate, roots,
    /// managers), for tests and diagnostics.
    pub fn identity(&self) -> Identity {
        self.shared.identity()
    }

    /// Stops the node cleanly: the agent stops every task (nothing is left
    /// running), then the manager, the API, the cluster RPC and the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Node {
            shared,
            agent,
            follower,
            ..
        } = self;
        // No role change may start while the node stops.
        follower.abort();
        let _ = follower.await;
        let agent_result = agent.shutdown().await.context("stopping tasks");
        if let Some(g) = &shared.gossip {
            g.leave().await;
        }
        if let Some(m) = shared.manager.lock().await.take() {
            m.shutdown().await;
        }
        agent_result
    }
}

/// The warning for an even number of managers: it tolerates no more
/// failures than one fewer, and a split in half leaves no majority.
pub fn even_managers_warning(managers: usize) -> Option<String> {
    (managers > 0 && managers.is_multiple_of(2)).then(|| {
        format!(
            "WARNING: the cluster now has {managers} managers. An even number tolerates no more \
             failures than {} would ({} may be lost), and a split in half leaves neither side a \
             majority: use an odd number of managers (1, 3, 5, 7).",
            managers - 1,
            (managers - 1) / 2
        )
    })
}

/// The agent's list of managers: a manager tries itself first.
fn agent_managers(managers: &[String], me: Option<SocketAddr>) -> Vec<String> {
    let mut list = managers.to_vec();
    if let Some(me) = me {
        let me = me.to_string();
        list.retain(|m| m != &me);
        list.insert(0, me);
    }
    list
}

async fn bind_rpc(cfg: &NodeConfig) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(cfg.addrs.rpc)
        .await
        .with_context(|| format!("listening for the cluster RPC on {}", cfg.addrs.rpc))
}

fn client_tls_config(identity: &Identity) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    ca::client_config(
        Some(&identity.tls_identity()?),
        &identity.trust()?,
        ca::ExpectedPeer::manager(&identity.cluster_id),
    )
    .context("building the cluster RPC client configuration")
}

impl Shared {
    fn identity(&self) -> Identity {
        self.identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Points the agent's dispatcher at `managers` (while the agent runs).
    fn set_agent_managers(&self, managers: Vec<String>) {
        if let Some(d) = self.dispatcher.upgrade() {
            d.set_managers(managers);
        }
    }

    fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_manager_view(&self, m: &ManagerParts, rpc_adv: SocketAddr) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.store = Some(m.store.clone());
        v.api_addr = Some(m.api_addr);
        v.rpc_addr = Some(rpc_adv);
    }

    fn clear_manager_view(&self) {
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.store = None;
        v.api_addr = None;
        v.rpc_addr = Some(SocketAddr::new(self.cfg.addrs.advertise, 0));
    }

    /// Changes the identity and saves it before anything uses the change.
    fn update_identity(&self, change: impl FnOnce(&mut Identity)) -> anyhow::Result<Identity> {
        let mut guard = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        change(&mut next);
        next.save(&self.cfg.data_dir)?;
        *guard = next.clone();
        Ok(next)
    }

    async fn start_manager_parts(
        &self,
        founded: Option<ClusterSecurity>,
        listener: tokio::net::TcpListener,
        rpc_adv: SocketAddr,
        join_via: Option<&str>,
    ) -> anyhow::Result<ManagerParts> {
        let identity = self.identity();
        start_manager(
            &self.cfg,
            &identity,
            founded,
            listener,
            rpc_adv,
            &identity.tls_identity()?,
            &identity.trust()?,
            self.connector.clone(),
            join_via,
            self.gossip.as_ref(),
        )
        .await
    }

    async fn serve_api(
        &self,
        m: &mut ManagerParts,
        identity: &Identity,
        rpc_adv: SocketAddr,
    ) -> anyhow::Result<()> {
        m.serve_api(&self.cfg, identity, rpc_adv, self.driver.clone())
            .await
    }
}

/// Makes a new cluster: its id, both root CAs, the join tokens, a gossip
/// key, and this node's identity as its first manager.
fn found_cluster(rpc_adv: &SocketAddr) -> anyhow::Result<(Identity, ClusterSecurity)> {
    let now = SystemTime::now();
    let validity = ca::renewal::DEFAULT_ROOT_CA_VALIDITY;
    let root = ca::RootCa::generate("berth cluster root CA", validity, now)
        .context("making the cluster root CA")?;
    let client = ca::RootCa::generate("berth client root CA", validity, now)
        .context("making the client root CA")?;
    let cluster_id = api::new_id();
    let node_id = api::new_id();
    let key = ca::NodeKey::generate().context("making the node key")?;
    let cert_pem = root
        .issue_node_certificate(
            &key.csr_pem()?,
            &node_id,
            PeerRole::Manager,
            &cluster_id,
            ca::renewal::DEFAULT_NODE_CERT_VALIDITY,
            now,
        )
        .context("signing this node's certificate")?;
    let keys = |r: &ca::RootCa| {
        let s = r.to_stored();
        CaKeys {
            cert_pem: s.cert_pem,
            key_pem: s.key_pem,
        }
    };
    let gossip_key = hex::encode(rand::random::<[u8; 32]>());
    let sec = ClusterSecurity {
        cluster_id: cluster_id.clone(),
        root_ca: keys(&root),
        client_ca: keys(&client),
        join_tokens: JoinTokens {
            worker: ca::JoinToken::generate(&root.digest()).to_string(),
            manager: ca::JoinToken::generate(&root.digest()).to_string(),
        },
        gossip_keys: vec![gossip_key.clone()],
        admin_token_sha256: String::new(),
        root_rotation: None,
        gossip_key_stage: Default::default(),
        registry_key_pem: registry::token::SigningKey::generate()
            .map(|k| k.to_pkcs8_pem())
            .map_err(|e| anyhow::anyhow!("making the registry's signing key: {e}"))?,
    };
    let identity = Identity {
        node_id,
        cluster_id,
        role: Role::Manager,
        cert_pem,
        key_pem: key.key_pem(),
        trust_pem: root.cert_pem().to_string(),
        managers: vec![rpc_adv.to_string()],
        gossip_keys: vec![gossip_key],
        gossip_seeds: Vec::new(),
    };
    Ok((identity, sec))
}

/// Joins the cluster of the manager at `manager`: fetch its root CA over a
/// connection that trusts nothing yet, check the root against the digest in
/// the token (so a man in the middle is caught before anything secret is
/// sent), then send the token and a CSR over a connection that trusts that
/// root only.
async fn join_cluster(
    token: &str,
    manager: &str,
    hostname: &str,
    rpc_adv: &SocketAddr,
    gossip: SocketAddr,
) -> anyhow::Result<Identity> {
    use std::str::FromStr;
    let parsed = ca::JoinToken::from_str(token.trim())
        .map_err(|e| anyhow!("the join token is malformed: {e}"))?;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let (bootstrap, seen) = ca::bootstrap_client_config()?;
    let channel = ca::MtlsConnector::new(bootstrap).channel(manager)?;
    let root_pem = loop {
        match NodeCaClient::new(channel.clone())
            .get_root_ca(GetRootCaRequest {})
            .await
        {
            Ok(r) => break r.into_inner().trust_pem,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(
                    manager,
                    "waiting for the manager to answer: {}",
                    e.message()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("cannot reach the manager at {manager}: {}", e.message()),
        }
    };
    let presented = seen
        .latest()
        .ok_or_else(|| anyhow!("the manager at {manager} showed no certificate"))?;
    let (trust, manager_peer) =
        ca::verify_bootstrap_root(&parsed, &root_pem, &presented, SystemTime::now()).map_err(
            |e| {
                anyhow!(
            "the manager at {manager} is not the cluster this token is for ({e}): nothing was sent"
        )
            },
        )?;
    let verified = ca::client_config(
        None,
        &trust,
        ca::ExpectedPeer::manager(&manager_peer.cluster_id),
    )?;
    let channel = ca::MtlsConnector::new(verified).channel(manager)?;
    let key = ca::NodeKey::generate()?;
    let cert = NodeCaClient::new(channel)
        .issue_node_certificate(IssueNodeCertificateRequest {
            token: token.trim().to_string(),
            csr_pem: key.csr_pem()?,
            hostname: hostname.to_string(),
            rpc_addr: rpc_adv.to_string(),
            gossip_addr: gossip.to_string(),
        })
        .await
        .map_err(|e| anyhow!("joining through {manager} was refused: {}", e.message()))?
        .into_inner();
    let role = Role::parse(&cert.role)
        .ok_or_else(|| anyhow!("the manager gave an unknown role {:?}", cert.role))?;
    let mut managers = cert.managers.clone();
    if !managers.iter().any(|m| m == manager) {
        managers.push(manager.to_string());
    }
    tracing::info!(node = %cert.node_id, role = role.name(), "joined the cluster");
    Ok(Identity {
        node_id: cert.node_id,
        cluster_id: cert.cluster_id,
        role,
        cert_pem: cert.cert_pem,
        key_pem: key.key_pem(),
        trust_pem: cert.trust_pem,
        managers,
        gossip_keys: cert.gossip_keys,
        gossip_seeds: cert.gossip_seeds,
    })
}

fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("berth.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            bail!("another berth node is running with the data dir {} (use --data-dir to start a second one)", dir.display())
        }
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn even_manager_counts_are_warned_about() {
        for (n, warned) in [
            (0, false),
            (1, false),
            (2, true),
            (3, false),
            (4, true),
            (7, false),
        ] {
            assert_eq!(super::even_managers_warning(n).is_some(), warned, "{n}");
        }
        let w = super::even_managers_warning(4).unwrap_or_default();
        assert!(
            w.contains("4 managers") && w.contains("than 3") && w.contains("1 may be lost"),
            "{w}"
        );
    }
}
