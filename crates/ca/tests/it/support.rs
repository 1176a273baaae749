//! Fixtures: a cluster's root CA and node identities, a health server that
//! reports who called it, and a client for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use api::rpc::health::health_client::HealthClient;
use api::rpc::health::health_server::{Health, HealthServer};
use api::rpc::health::{PingRequest, PingResponse};
use api::rpc::{Connector, PeerInfo, PeerRole};
use ca::{
    client_config, server_config, Admit, ExpectedPeer, MtlsConnector, NodeIdentity, NodeKey,
    RootCa, ServeOptions, TrustBundle, DEFAULT_NODE_CERT_VALIDITY, DEFAULT_ROOT_CA_VALIDITY,
};
use tokio::sync::{oneshot, watch};
use tonic::service::Routes;

/// A cluster's root CA and id.
pub struct Cluster {
    pub root: RootCa,
    pub id: String,
}

impl Cluster {
    pub fn new(id: &str) -> Cluster {
        Cluster {
            root: RootCa::generate(
                "berth cluster root CA",
                DEFAULT_ROOT_CA_VALIDITY,
                SystemTime::now(),
            )
            .unwrap(),
            id: id.to_owned(),
        }
    }

    pub fn trust(&self) -> TrustBundle {
        TrustBundle::from_root(&self.root)
    }

    /// A node identity from this cluster's root.
    pub fn node(&self, node_id: &str, role: PeerRole) -> NodeIdentity {
        issue(&self.root, node_id, role, &self.id, "")
    }
}

/// A node certificate from `root`, followed by `extra_chain` (PEM).
pub fn issue(
    root: &RootCa,
    node_id: &str,
    role: PeerRole,
    cluster_id: &str,
    extra_chain: &str,
) -> NodeIdentity {
    let key = NodeKey::generate().unwrap();
    let cert = root
        .issue_node_certificate(
            &key.csr_pem().unwrap(),
            node_id,
            role,
            cluster_id,
            DEFAULT_NODE_CERT_VALIDITY,
            SystemTime::now(),
        )
        .unwrap();
    NodeIdentity::new(&format!("{cert}{extra_chain}"), &key).unwrap()
}

/// What the health handler saw of each call.
#[derive(Clone, Default)]
pub struct Seen {
    pub calls: Arc<AtomicUsize>,
    pub last: Arc<Mutex<Option<PeerInfo>>>,
}

impl Seen {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> PeerInfo {
        self.last.lock().unwrap().clone().expect("a call was seen")
    }
}

/// Answers Ping with the server's own node id (or `reply`, if set) and
/// records the caller.
#[derive(Clone)]
pub struct Pinger {
    pub node_id: String,
    pub reply: Option<String>,
    pub seen: Seen,
}

#[tonic::async_trait]
impl Health for Pinger {
    async fn ping(
        &self,
        request: tonic::Request<PingRequest>,
    ) -> Result<tonic::Response<PingResponse>, tonic::Status> {
        self.seen.calls.fetch_add(1, Ordering::SeqCst);
        *self.seen.last.lock().unwrap() = request.extensions().get::<PeerInfo>().cloned();
        Ok(tonic::Response::new(PingResponse {
            node_id: self.reply.clone().unwrap_or_else(|| self.node_id.clone()),
        }))
    }
}

pub fn admit_all() -> Admit {
    Arc::new(|_| true)
}

/// A running server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: Seen,
    /// Replaces the server's TLS configuration for new connections.
    pub reload: watch::Sender<Arc<rustls::ServerConfig>>,
    _stop: oneshot::Sender<()>,
}

/// Serves `routes` with `identity` on 127.0.0.1 (an ephemeral port).
pub async fn start_routes(
    identity: &NodeIdentity,
    trust: &TrustBundle,
    admit: Admit,
    routes: Routes,
    seen: Seen,
    options: ServeOptions,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reload, tls) = watch::channel(server_config(identity, trust, admit).unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        ca::serve_with(
            listener,
            tls,
            routes,
            async {
                let _ = stopped.await;
            },
            options,
        )
        .await
        .unwrap();
    });
    Server {
        addr,
        seen,
        reload,
        _stop: stop,
    }
}

/// A health server open to any node (no interceptor).
pub async fn start(identity: &NodeIdentity, trust: &TrustBundle, admit: Admit) -> Server {
    let seen = Seen::default();
    let pinger = Pinger {
        node_id: identity.peer().node_id.clone(),
        reply: None,
        seen: seen.clone(),
    };
    let routes = Routes::new(HealthServer::new(pinger));
    start_routes(
        identity,
        trust,
        admit,
        routes,
        seen,
        ServeOptions::default(),
    )
    .await
}

/// One Ping over a fresh channel.
pub async fn ping_with(
    connector: &MtlsConnector,
    addr: SocketAddr,
) -> Result<String, tonic::Status> {
    let channel = connector.channel(&addr.to_string()).unwrap();
    let mut client = HealthClient::new(channel);
    // Bound every call so a refused handshake cannot hang a test.
    tokio::time::timeout(Duration::from_secs(10), client.ping(PingRequest {}))
        .await
        .expect("the call ended within 10 s")
        .map(|r| r.into_inner().node_id)
}

/// One Ping as `identity` (or anonymously), expecting `expect` of the server.
pub async fn ping(
    identity: Option<&NodeIdentity>,
    trust: &TrustBundle,
    expect: ExpectedPeer,
    addr: SocketAddr,
) -> Result<String, tonic::Status> {
    let config = client_config(identity, trust, expect).unwrap();
    ping_with(&MtlsConnector::new(config), addr).await
}
