//! One berth node, wired: store (the Raft group), manager (orchestrator,
//! scheduler, updater, reaper, dispatcher), agent with its runtime driver, and
//! the controller's API. `berth up` runs one of these until Ctrl-C; the tests
//! start it in process.

use crate::credentials::Credentials;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Where the API listens (port 0: any free port).
    pub api_addr: SocketAddr,
    /// Reported hostname; the machine's when unset.
    pub hostname: Option<String>,
    /// How the exec driver starts a task's shim: the berth binary and `shim`.
    pub shim: agent::ShimCommand,
    /// Where to write the admin credential for the CLI; none: keep it in memory only.
    pub credentials_file: Option<PathBuf>,
}

pub struct Node {
    pub api_addr: SocketAddr,
    pub credentials: Credentials,
    pub node_id: String,
    store: store::Store,
    manager: manager::Manager,
    agent: agent::Agent,
    api_stop: tokio::sync::oneshot::Sender<()>,
    api_task: tokio::task::JoinHandle<()>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Serves `service logs` from the driver's log files on this node.
struct DriverLogs(Arc<dyn agent::Driver>);

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

impl Node {
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Node> {
        let data_dir = &cfg.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let lock = lock_data_dir(data_dir)?;

        let store = store::Store::open(store::StoreConfig::new(data_dir.join("store")))
            .await
            .with_context(|| {
                format!("opening the store in {}", data_dir.join("store").display())
            })?;
        if store.view(|s| s.cluster().is_none()) {
            store
                .update(vec![api::Op::Create(api::Cluster::new("berth").into())])
                .await
                .context("creating the cluster")?;
        }

        let manager =
            manager::Manager::start(store.clone(), manager::ManagerConfig::default()).await;
        let dispatcher: Arc<dyn api::dispatch::Dispatcher> = Arc::new(
            manager::LocalDispatcher::new(store.clone(), api::NodeRole::Manager),
        );

        let driver: Arc<dyn agent::Driver> = Arc::new(
            agent::ExecDriver::new(data_dir.join("exec"), cfg.shim.clone())
                .context("starting the exec driver")?,
        );
        let mut agent_cfg = agent::AgentConfig::new(data_dir.join("agent"));
        agent_cfg.hostname = cfg.hostname.clone();
        let agent = agent::Agent::start(dispatcher, driver.clone(), agent_cfg)
            .await
            .context("starting the agent")?;
        let node_id = agent.node_id();

        // The API: a self-signed certificate for now (the cluster CA replaces it
        // with the HA issue) and one admin token, of which only the hash is kept.
        let api_dir = data_dir.join("api");
        let hostname = cfg.hostname.clone().unwrap_or_else(crate::hostname);
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".into(),
            "::1".into(),
            hostname,
        ];
        if !cfg.api_addr.ip().is_unspecified() {
            names.push(cfg.api_addr.ip().to_string());
        }
        let tls_files = controller::tls::load_or_create(&api_dir, &names)?;
        let tls = controller::tls::server_config(&tls_files)?;
        let listener = tokio::net::TcpListener::bind(cfg.api_addr)
            .await
            .with_context(|| format!("listening for the API on {}", cfg.api_addr))?;
        let api_addr = listener.local_addr()?;
        let host_ip = if api_addr.ip().is_unspecified() {
            "127.0.0.1".parse()?
        } else {
            api_addr.ip()
        };
        let host = SocketAddr::new(host_ip, api_addr.port()).to_string();
        let credentials = admin_credentials(
            &api_dir,
            cfg.credentials_file.as_deref(),
            host,
            &tls_files.cert_pem,
        )?;

        let state = controller::AppState {
            store: store.clone(),
            logs: Arc::new(DriverLogs(driver)),
            admin_token_sha256: controller::auth::token_hash(&credentials.token),
        };
        let (api_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let api_task = tokio::spawn(controller::serve(
            listener,
            tls,
            controller::app(state),
            async {
                let _ = stop_rx.await;
            },
        ));

        Ok(Node {
            api_addr,
            credentials,
            node_id,
            store,
            manager,
            agent,
            api_stop,
            api_task,
            _lock: lock,
        })
    }

    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// Stops the node cleanly: the agent stops every task (nothing is left
    /// running), then the manager, the API and the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Node {
            store,
            manager,
            agent,
            api_stop,
            api_task,
            ..
        } = self;
        let agent_result = agent.shutdown().await.context("stopping tasks");
        manager.shutdown().await;
        let _ = api_stop.send(());
        let _ = api_task.await;
        store.shutdown().await.context("closing the store")?;
        agent_result
    }
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

/// The admin credential: kept when the CLI's credential file still holds the
/// token whose hash the node knows; otherwise a new token is made (whoever can
/// start the node with this data dir is its admin) and the file rewritten.
fn admin_credentials(
    api_dir: &std::path::Path,
    file: Option<&std::path::Path>,
    host: String,
    ca_pem: &str,
) -> anyhow::Result<Credentials> {
    let hash_path = api_dir.join("admin-token.sha256");
    let known = std::fs::read_to_string(&hash_path)
        .ok()
        .map(|s| s.trim().to_string());
    if let (Some(file), Some(known)) = (file, known.as_deref()) {
        if let Ok(existing) = Credentials::load(file) {
            if hex::encode(controller::auth::token_hash(&existing.token)) == known {
                let creds = Credentials {
                    host,
                    managers: Vec::new(),
                    token: existing.token,
                    ca_pem: ca_pem.to_string(),
                };
                creds.save(file)?;
                return Ok(creds);
            }
        }
    }
    let token = format!("berth-admin-{}", hex::encode(rand::random::<[u8; 32]>()));
    controller::tls::write_private(
        &hash_path,
        hex::encode(controller::auth::token_hash(&token)).as_bytes(),
    )
    .with_context(|| format!("writing {}", hash_path.display()))?;
    let creds = Credentials {
        host,
        managers: Vec::new(),
        token,
        ca_pem: ca_pem.to_string(),
    };
    if let Some(file) = file {
        creds.save(file)?;
    }
    Ok(creds)
}
