//! The parts of a node that only a manager runs: its replica of the store,
//! the manager's control loops, the cluster RPC server (Raft, CA and
//! membership, dispatcher) and the HTTPS API, and how they start and stop.

use super::{ca_service, Identity, Membership, NodeConfig, JOIN_TIMEOUT, SERVER_STOP_TIMEOUT};
use crate::credentials::Credentials;
use anyhow::{bail, Context};
use api::rpc::node::JoinManagersRequest;
use api::rpc::{Connector, PeerRole};
use api::{ClusterSecurity, Op};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The parts only a manager runs.
pub(super) struct ManagerParts {
    pub(super) store: store::Store,
    manager: manager::Manager,
    pub(super) api_addr: SocketAddr,
    pub(super) credentials: Option<Credentials>,
    /// The auth worker (stops when the last handle goes).
    auth_worker: Option<authworker::WorkerHandle>,
    /// The `admin` user's password when this manager just made it at random.
    pub(super) initial_admin_password: Option<String>,
    /// The cluster RPC server's TLS configuration; a renewed certificate or
    /// a new set of trusted roots replaces it for the next connections.
    server_tls: watch::Sender<Arc<rustls::ServerConfig>>,
    admit: ca::tls::Admit,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Servers, awaited at shutdown once told to stop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Background chores, aborted at shutdown.
    chores: Vec<tokio::task::JoinHandle<()>>,
}

/// Serves `service logs` from the driver's log files on this node.
pub(super) struct DriverLogs(Arc<dyn agent::Driver>);

#[async_trait::async_trait]
impl controller::LogSource for DriverLogs {
    async fn task_logs(
        &self,
        task: &api::Task,
        tail: Option<usize>,
        since: Option<api::Timestamp>,
    ) -> Result<Vec<api::dispatch::LogLine>, String> {
        self.0
            .logs(&task.meta.id, tail, since)
            .await
            .map_err(|e| e.to_string())
    }
}

impl ManagerParts {
    /// Serves the cluster RPC with `tls_identity` and `trust` from the next
    /// connection on (connections already open keep theirs).
    pub(super) fn reload_tls(
        &self,
        tls_identity: &ca::NodeIdentity,
        trust: &ca::TrustBundle,
    ) -> anyhow::Result<()> {
        let config = ca::server_config(tls_identity, trust, self.admit.clone())
            .context("building the cluster RPC server configuration")?;
        self.server_tls.send_replace(config);
        Ok(())
    }

    pub(super) async fn shutdown(self) {
        let ManagerParts {
            store,
            manager,
            stops,
            tasks,
            chores,
            auth_worker,
            ..
        } = self;
        if let Some(w) = auth_worker {
            w.stop();
        }
        for c in &chores {
            c.abort();
        }
        manager.shutdown().await;
        for s in stops {
            let _ = s.send(());
        }
        // A server stops gracefully, but a peer that never closes its
        // connection must not hold the node up.
        for mut t in tasks {
            if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut t)
                .await
                .is_err()
            {
                tracing::warn!("a server did not stop within {SERVER_STOP_TIMEOUT:?}; closing it");
                t.abort();
            }
        }
        if let Err(e) = store.shutdown().await {
            tracing::warn!(error = %e, "closing the store");
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn start_manager(
    cfg: &NodeConfig,
    identity: &Identity,
    founded: Option<ClusterSecurity>,
    rpc_listener: tokio::net::TcpListener,
    rpc_adv: SocketAddr,
    tls_identity: &ca::NodeIdentity,
    trust: &ca::TrustBundle,
    connector: Arc<dyn Connector>,
    join_via: Option<&str>,
    gossip: Option<&super::gossip::NodeGossip>,
) -> anyhow::Result<ManagerParts> {
    let data_dir = &cfg.data_dir;
    let mut store_cfg = store::StoreConfig::new(data_dir.join("store"));
    store_cfg.node_id = store::raft_id(&identity.node_id);
    let force = matches!(
        cfg.membership,
        Membership::Init {
            force_new_cluster: true
        }
    );
    let store = if force && founded.is_none() {
        tracing::warn!("--force-new-cluster: this manager becomes the only member of a new Raft group, keeping the cluster's state");
        store::Store::force_new_cluster(store_cfg, connector.clone(), &rpc_adv.to_string())
            .await
            .context("forcing a new cluster")?
    } else {
        store::Store::open_member(store_cfg, connector.clone())
            .await
            .with_context(|| format!("opening the store in {}", data_dir.join("store").display()))?
    };

    // The cluster RPC: Raft for managers, the CA for anyone (a joining node
    // has no certificate yet), the dispatcher for any node of the cluster.
    let admit_store = store.clone();
    let admit: ca::tls::Admit = Arc::new(move |peer: &api::rpc::PeerIdentity| {
        // Until this manager has caught up it cannot tell who was removed;
        // after, only nodes still in the cluster get in.
        admit_store.view(|s| s.cluster().is_none() || s.node(&peer.node_id).is_some())
    });
    let (server_tls, server_tls_rx) =
        watch::channel(ca::server_config(tls_identity, trust, admit.clone())?);
    let ca_service = ca_service::CaService::new(store.clone());
    let mut dispatcher_cfg = manager::DispatcherConfig::new(api::NodeRole::Manager);
    dispatcher_cfg.gossip = gossip.map(|g| g.view());
    let dispatcher: Arc<dyn api::dispatch::Dispatcher> = Arc::new(
        manager::LocalDispatcher::with_config(store.clone(), dispatcher_cfg),
    );
    let hint_store = store.clone();
    let dispatch_service =
        manager::rpc::DispatcherService::new(dispatcher).with_leader_hint(move || {
            if hint_store.is_leader() {
                manager::rpc::LeaderHint::Leader
            } else {
                manager::rpc::LeaderHint::Follower {
                    leader_addr: hint_store.leader().map(|(_, addr)| addr),
                }
            }
        });
    let mut routes = tonic::service::Routes::default();
    routes = routes
        .add_service(tonic::service::interceptor::InterceptedService::new(
            store.raft_service(),
            ca::require_role(PeerRole::Manager),
        ))
        .add_service(ca_service.node_ca())
        .add_service(ca_service.membership())
        .add_service(dispatch_service.into_server());
    let (rpc_stop, rpc_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rpc_task = tokio::spawn(async move {
        let shutdown = async {
            let _ = rpc_stop_rx.await;
        };
        let options = ca::ServeOptions::default();
        if let Err(e) = ca::serve_with(rpc_listener, server_tls_rx, routes, shutdown, options).await
        {
            tracing::error!(error = %e, "the cluster RPC server stopped");
        }
    });

    if let Some(sec) = founded {
        store
            .initialize(&rpc_adv.to_string())
            .await
            .context("founding the Raft group")?;
        let mut cluster = api::Cluster::new("berth");
        cluster.security = Some(sec);
        let mut me = self_node(identity, cfg, rpc_adv);
        me.status.gossip_addr = gossip.map(|g| g.addr().to_string()).unwrap_or_default();
        store
            .update(vec![Op::Create(cluster.into()), Op::Create(me.into())])
            .await
            .context("creating the cluster")?;
    } else if let Some(manager) = join_via {
        // A new manager (joined with a manager token, or promoted), or one
        // that restarted before it was added, asks to be added to the Raft
        // group; adding one that is a member is a no-op.
        if !store.view(|s| s.cluster().is_some()) {
            ask_to_join_managers(&connector, identity, manager, &rpc_adv).await?;
        }
    }

    let manager = manager::Manager::start(store.clone(), manager::ManagerConfig::default()).await;
    Ok(ManagerParts {
        store: store.clone(),
        manager,
        api_addr: cfg.addrs.api,
        credentials: None,
        initial_admin_password: None,
        auth_worker: None,
        server_tls,
        admit,
        stops: vec![rpc_stop],
        tasks: vec![rpc_task],
        chores: vec![
            tokio::spawn(log_leader_changes(store.clone())),
            tokio::spawn(manager::roles::run(store.clone())),
            tokio::spawn(ca_service::finish_root_rotations(store.clone())),
            tokio::spawn(super::gossip::record_gossip_addr(
                store,
                identity.node_id.clone(),
                gossip.map(|g| g.addr()),
            )),
        ],
    })
}

/// The record of the founding manager.
fn self_node(identity: &Identity, cfg: &NodeConfig, rpc_adv: SocketAddr) -> api::Node {
    api::Node {
        meta: api::Meta::new(identity.node_id.clone()),
        spec: api::NodeSpec {
            role: api::NodeRole::Manager,
            ..api::NodeSpec::default()
        },
        description: api::NodeDescription {
            hostname: cfg.hostname.clone().unwrap_or_else(crate::hostname),
            ..api::NodeDescription::default()
        },
        status: api::NodeStatus {
            state: api::NodeState::Unknown,
            message: String::new(),
            addr: rpc_adv.ip().to_string(),
            // The founder's certificate is signed by the one root there is.
            cert_root: ca::digest_of_pem(&identity.trust_pem)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            ..Default::default()
        },
        manager_status: None,
    }
}

/// Asks the managers (the one joined through first) to add this manager to
/// the Raft group, retrying until one does or [`JOIN_TIMEOUT`] passes.
async fn ask_to_join_managers(
    connector: &Arc<dyn Connector>,
    identity: &Identity,
    first: &str,
    rpc_adv: &SocketAddr,
) -> anyhow::Result<()> {
    use api::rpc::node::membership_client::MembershipClient;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut targets = vec![first.to_string()];
    targets.extend(identity.managers.iter().filter(|m| *m != first).cloned());
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        for t in &targets {
            let Ok(channel) = connector.channel(t) else {
                continue;
            };
            match MembershipClient::new(channel)
                .join_managers(JoinManagersRequest {
                    rpc_addr: rpc_adv.to_string(),
                })
                .await
            {
                Ok(_) => {
                    tracing::info!("added to the managers' Raft group");
                    return Ok(());
                }
                Err(e) => last = format!("{t}: {}", e.message()),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "no manager added this one to the Raft group within {JOIN_TIMEOUT:?} (last answer: {last})"
    )
}

impl ManagerParts {
    /// Serves the HTTPS API, once the store holds the cluster (a joined
    /// manager waits until it has caught up), and writes this manager's
    /// addresses into its node record for the CLI and `node ls`.
    pub(super) async fn serve_api(
        &mut self,
        cfg: &NodeConfig,
        identity: &Identity,
        rpc_adv: SocketAddr,
        driver: Arc<dyn agent::Driver>,
    ) -> anyhow::Result<()> {
        let store = self.store.clone();
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        let mut changes = store.watch();
        while store
            .view(|s| s.cluster().and_then(|c| c.security.clone()))
            .is_none()
        {
            if tokio::time::Instant::now() > deadline {
                bail!("this manager did not receive the cluster's state within {JOIN_TIMEOUT:?}");
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changes.recv()).await;
        }
        let hostname = cfg.hostname.clone().unwrap_or_else(crate::hostname);
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".into(),
            "::1".into(),
            hostname,
            cfg.addrs.advertise.to_string(),
        ];
        if !cfg.addrs.api.ip().is_unspecified() {
            names.push(cfg.addrs.api.ip().to_string());
        }
        let api_cert = ApiCert {
            store: store.clone(),
            node_id: identity.node_id.clone(),
            names,
        };
        let tls_files = api_cert.issue()?;
        let (tls, tls_rx) = watch::channel(controller::tls::server_config(&tls_files)?);
        let listener = tokio::net::TcpListener::bind(cfg.addrs.api)
            .await
            .with_context(|| format!("listening for the API on {}", cfg.addrs.api))?;
        let bound = listener.local_addr()?;
        let host_ip = if bound.ip().is_unspecified() {
            cfg.addrs.advertise
        } else {
            bound.ip()
        };
        let api_adv = SocketAddr::new(host_ip, bound.port());
        self.api_addr = bound;

        let founder = matches!(cfg.membership, Membership::Up | Membership::Init { .. });
        let credentials = admin_credentials(
            &store,
            cfg.credentials_file.as_deref(),
            founder,
            api_adv.to_string(),
            &store
                .view(|s| {
                    s.cluster()
                        .and_then(|c| c.security.as_ref())
                        .map(|sec| sec.trust_pem())
                })
                .unwrap_or_default(),
        )
        .await?;
        if founder {
            // A cluster made before users existed, resumed without quorum,
            // cannot record its admin now: it serves with the admin token
            // and makes the user at a later start.
            if let Some(p) = cfg.admin_password.as_deref() {
                controller::password::check_policy(p)
                    .map_err(|m| anyhow::anyhow!("the admin password is refused: {m}"))?;
            }
            match ensure_admin_user(&store, cfg.admin_password.as_deref()).await {
                Ok(p) => self.initial_admin_password = p,
                Err(e) => tracing::warn!("the first admin user is not made yet: {e:#}"),
            }
        }
        let admin_hash = store
            .view(|s| {
                s.cluster()
                    .and_then(|c| c.security.as_ref())
                    .map(|sec| sec.admin_token_sha256.clone())
            })
            .unwrap_or_default();
        let mut admin_token_sha256 = [0u8; 32];
        if let Ok(bytes) = hex::decode(&admin_hash) {
            if bytes.len() == 32 {
                admin_token_sha256.copy_from_slice(&bytes);
            }
        }
        self.credentials = credentials;

        let mut state = controller::AppState::new(
            store.clone(),
            Arc::new(DriverLogs(driver)),
            admin_token_sha256,
        );
        state.api_host = api_adv.to_string();
        // The auth worker: LDAP logins and syncs here, the periodic sync and
        // the cleanup of expired tokens while this manager leads.
        let worker = authworker::Worker::start(store.clone());
        state.ldap = Some(Arc::new(super::directory::LdapDirectory {
            worker: worker.clone(),
        }));
        self.auth_worker = Some(worker);
        self.chores.push(controller::spawn_authz_refresh(&state));
        let audit_dir = cfg.data_dir.join("audit");
        match controller::audit::AuditLog::open(
            &audit_dir,
            identity.node_id.clone(),
            AUDIT_FILE_BYTES,
            AUDIT_FILES,
        ) {
            Ok(log) => state.audit = Some(log),
            Err(e) => tracing::error!(
                dir = %audit_dir.display(),
                error = %e,
                "cannot open the audit log: this manager keeps none"
            ),
        }
        let (api_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // The registry (DTR's role) on the same port, under /v2/ and
        // /auth/token. A cluster made before it had a signing key, resumed
        // without quorum, serves the API without it until a later start.
        let registry = match ensure_registry_key(&store).await {
            Ok(key_pem) => Some(
                controller::registry_auth::router(
                    &state,
                    controller::registry_auth::RegistryParts {
                        key_pem,
                        blob_root: controller::registry_auth::blob_root(&cfg.data_dir),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!(e))?,
            ),
            Err(e) => {
                tracing::warn!("the registry is not served: {e:#}");
                None
            }
        };
        let api = controller::app(state);
        let api = match registry {
            Some(r) => api.merge(r),
            None => api,
        };
        let api_task = tokio::spawn(controller::serve(listener, tls_rx, api, async {
            let _ = stop_rx.await;
        }));
        self.stops.push(api_stop);
        self.tasks.push(api_task);
        self.chores
            .push(tokio::spawn(api_cert.keep_renewed(tls_files.cert_pem, tls)));

        // This manager's addresses, in its node record (retried in the
        // background: a write needs the group's quorum).
        let node_id = identity.node_id.clone();
        let status = api::ManagerStatus {
            leader: false,
            reachability: "reachable".into(),
            addr: rpc_adv.to_string(),
            api_addr: api_adv.to_string(),
        };
        self.chores
            .push(tokio::spawn(record_manager_status(store, node_id, status)));
        Ok(())
    }
}

/// This manager's HTTPS API certificate, signed by the cluster root CA for
/// the names clients dial, so a CLI that trusts the cluster's root reaches
/// every manager. The key lives in memory only: a restart issues a new one.
struct ApiCert {
    store: store::Store,
    node_id: String,
    names: Vec<String>,
}

/// How often the API certificate is checked against the signing root when
/// the store does not change.
const API_CERT_RECHECK: Duration = Duration::from_secs(1);

impl ApiCert {
    /// A new key and certificate from the root that signs now, followed in
    /// the chain by its cross-signed certificate during a rotation (so that
    /// clients trusting only the old root still accept it).
    fn issue(&self) -> anyhow::Result<controller::tls::TlsFiles> {
        let (sec, validity) = self
            .store
            .view(|s| {
                s.cluster()
                    .and_then(|c| c.security.clone().map(|sec| (sec, c.node_cert_validity)))
            })
            .ok_or_else(|| anyhow::anyhow!("the store holds no cluster security"))?;
        let root = ca_service::signing_root(&sec).context("the cluster root CA is unusable")?;
        let key = ca::NodeKey::generate()?;
        let validity = if validity.is_zero() {
            ca::DEFAULT_NODE_CERT_VALIDITY
        } else {
            validity
        };
        let leaf = root
            .issue_api_certificate(
                &key.csr_pem()?,
                &self.node_id,
                &sec.cluster_id,
                &self.names,
                validity,
                std::time::SystemTime::now(),
            )
            .context("signing the API certificate")?;
        let cert_pem = match sec.chain_suffix() {
            "" => leaf,
            suffix => format!("{}\n{}", leaf.trim_end(), suffix),
        };
        Ok(controller::tls::TlsFiles {
            cert_pem,
            key_pem: key.key_pem(),
            client_ca_pem: Some(sec.client_ca.cert_pem.clone()),
        })
    }

    /// Issues a new certificate when the current one is due, or when another
    /// root signs now (a CA rotation), and hands it to the API server.
    async fn keep_renewed(
        self,
        mut cert_pem: String,
        tls: watch::Sender<Arc<rustls::ServerConfig>>,
    ) {
        let mut changes = self.store.watch();
        loop {
            let signing = self.store.view(|s| {
                s.cluster()
                    .and_then(|c| c.security.as_ref())
                    .map(|sec| sec.signing_root().cert_pem.clone())
            });
            let stale = signing
                .is_some_and(|root| !ca::issued_by(&cert_pem, &root).unwrap_or(false))
                || ca::needs_renewal(&cert_pem, std::time::SystemTime::now());
            if stale {
                match self
                    .issue()
                    .and_then(|f| Ok((controller::tls::server_config(&f)?, f)))
                {
                    Ok((config, files)) => {
                        tls.send_replace(config);
                        cert_pem = files.cert_pem;
                        tracing::info!("the API certificate was renewed");
                    }
                    Err(e) => tracing::warn!("renewing the API certificate: {e:#}"),
                }
            }
            let _ = tokio::time::timeout(API_CERT_RECHECK, changes.recv()).await;
        }
    }
}

/// Logs each change of the managers' leader as this manager sees it (the
/// store does not log it, and openraft's own log is off by default).
async fn log_leader_changes(store: store::Store) {
    let mut last: Option<(u64, String)> = None;
    loop {
        let now = store.leader();
        if now != last {
            match &now {
                Some((_, addr)) => tracing::info!(leader = %addr, "the managers have a leader"),
                None => tracing::warn!(
                    "no leader: the managers are electing one, or this manager lost contact with a majority"
                ),
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes `status` into the node's record unless it is there already.
async fn record_manager_status(store: store::Store, node_id: String, status: api::ManagerStatus) {
    for _ in 0..120 {
        let node = store.view(|s| s.node(&node_id).cloned());
        let Some(mut node) = node else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if node.manager_status.as_ref() == Some(&status) {
            return;
        }
        node.manager_status = Some(status.clone());
        match store.update(vec![Op::Update(node.into())]).await {
            Ok(_) => return,
            Err(e) => {
                tracing::debug!(error = %e, "recording this manager's addresses; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    tracing::warn!("could not record this manager's addresses in its node record");
}

/// Whether a credentials file is for the cluster whose roots are `trust_pem`.
fn same_cluster(creds: &Credentials, trust_pem: &str) -> bool {
    trust_pem
        .split_inclusive("-----END CERTIFICATE-----")
        .map(str::trim)
        .filter(|b| b.starts_with("-----BEGIN"))
        .any(|b| creds.ca_pem.contains(b))
}

/// The registry's signing key from the cluster object, made and recorded
/// by the first manager to need it on a cluster founded before there was
/// one (retried while another manager may be writing it too).
async fn ensure_registry_key(store: &store::Store) -> anyhow::Result<String> {
    for attempt in 0..20 {
        let Some(mut cluster) = store.view(|s| s.cluster().cloned()) else {
            bail!("the store holds no cluster");
        };
        let Some(sec) = cluster.security.as_mut() else {
            bail!("the cluster has no security settings");
        };
        if !sec.registry_key_pem.is_empty() {
            return Ok(sec.registry_key_pem.clone());
        }
        sec.registry_key_pem = registry::token::SigningKey::generate()
            .map(|k| k.to_pkcs8_pem())
            .map_err(|e| anyhow::anyhow!("making the registry's signing key: {e}"))?;
        match store.update(vec![Op::Update(cluster.into())]).await {
            Ok(_) => continue, // read back what was stored
            Err(e) if attempt < 19 => {
                tracing::debug!(error = %e, "recording the registry's signing key; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("recording the registry's signing key"),
        }
    }
    bail!("the registry's signing key could not be recorded")
}

/// The audit log rotates at this size and keeps this many files (80 MiB in all).
const AUDIT_FILE_BYTES: u64 = 16 << 20;
const AUDIT_FILES: usize = 5;

/// Makes the first admin user, `admin`, with `password` or a random one
/// (returned, to be shown once), unless it exists; with it the collections
/// every cluster has. Retried while the new cluster elects its leader.
async fn ensure_admin_user(
    store: &store::Store,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let exists = |s: &api::State| {
        s.auth_by_key(&api::auth::account_key(controller::authn::ADMIN_USER))
            .is_some()
    };
    if store.view(exists) {
        let ops = store.view(controller::builtin_collection_ops);
        if !ops.is_empty() {
            store
                .update(ops)
                .await
                .context("creating the built-in collections")?;
        }
        return Ok(None);
    }
    let (password, made) = match password {
        Some(p) => {
            controller::password::check_policy(p)
                .map_err(|m| anyhow::anyhow!("the admin password is refused: {m}"))?;
            (p.to_string(), None)
        }
        None => {
            use rand::Rng;
            const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
            let mut rng = rand::thread_rng();
            let p: String = (0..20)
                .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
                .collect();
            (p.clone(), Some(p))
        }
    };
    let hash = controller::password::hash(&password).map_err(|e| anyhow::anyhow!(e))?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        if store.view(exists) {
            return Ok(None);
        }
        let user = api::auth::User {
            meta: api::Meta::new(api::new_id()),
            name: controller::authn::ADMIN_USER.into(),
            full_name: "Administrator".into(),
            admin: true,
            disabled: false,
            password_hash: Some(hash.clone()),
            source: Default::default(),
            locked_until: None,
        };
        let ops = store.view(|s| controller::new_user_ops(s, user));
        match store.update(ops).await {
            Ok(_) => return Ok(made),
            Err(e) if attempts < 20 => {
                tracing::debug!(error = %e, "creating the admin user; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("creating the admin user"),
        }
    }
}

/// The admin credential. The store keeps only the token's hash, shared by
/// every manager. The manager that founded the cluster (or resumes it) keeps
/// the token in the credentials file when it matches the hash, and otherwise
/// makes a new one (whoever can start the founding manager is its admin).
/// Any manager adds its API address (and any root the file lacks) to a
/// credentials file that holds the cluster's token, so the CLI can reach
/// every manager: their API certificates all come from the cluster root CA.
async fn admin_credentials(
    store: &store::Store,
    file: Option<&Path>,
    founder: bool,
    host: String,
    trust_pem: &str,
) -> anyhow::Result<Option<Credentials>> {
    let known = store
        .view(|s| {
            s.cluster()
                .and_then(|c| c.security.as_ref())
                .map(|sec| sec.admin_token_sha256.clone())
        })
        .unwrap_or_default();
    let existing = file.and_then(|f| Credentials::load(f).ok());
    let matches = |c: &Credentials| {
        !known.is_empty() && hex::encode(controller::authn::token_hash(&c.token)) == known
    };
    match existing {
        Some(mut creds) if matches(&creds) => {
            if founder {
                // The founder is the CLI's first choice.
                if creds.host != host {
                    let old = std::mem::replace(&mut creds.host, host.clone());
                    if !creds.managers.contains(&old) {
                        creds.managers.push(old);
                    }
                }
            } else if creds.host != host && !creds.managers.contains(&host) {
                creds.managers.push(host.clone());
            }
            creds.managers.retain(|m| m != &creds.host);
            creds.trust_roots(trust_pem);
            if let Some(f) = file {
                creds.save(f)?;
            }
            Ok(Some(creds))
        }
        // A file holding another credential (a user logged in from the
        // founder's account) is theirs: kept, and the admin token stays
        // as it is (the admin can log in with its password).
        Some(c) if founder && !known.is_empty() && same_cluster(&c, trust_pem) => Ok(None),
        _ if founder => {
            let token = format!("berth-admin-{}", hex::encode(rand::random::<[u8; 32]>()));
            let hash = hex::encode(controller::authn::token_hash(&token));
            let mut attempts = 0;
            loop {
                attempts += 1;
                let cluster = store.view(|s| s.cluster().cloned());
                let Some(mut cluster) = cluster else {
                    bail!("the store holds no cluster");
                };
                if let Some(sec) = cluster.security.as_mut() {
                    sec.admin_token_sha256 = hash.clone();
                }
                match store.update(vec![Op::Update(cluster.into())]).await {
                    Ok(_) => break,
                    Err(e) if attempts < 20 => {
                        tracing::debug!(error = %e, "recording the admin token's hash; retrying");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => return Err(e).context("recording the admin token's hash"),
                }
            }
            let creds = Credentials {
                host,
                managers: Vec::new(),
                token,
                ca_pem: trust_pem.to_string(),
            };
            if let Some(f) = file {
                creds.save(f)?;
            }
            Ok(Some(creds))
        }
        _ => Ok(None),
    }
}
