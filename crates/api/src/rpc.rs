//! The cluster RPC's wire types and gRPC services, generated from `proto/*.proto`
//! by `build.rs` (one module per proto package).

/// Liveness of a node's cluster RPC endpoint.
pub mod health {
    tonic::include_proto!("berth.health");
}

/// The dispatcher's conversation with agents (`dispatch::Dispatcher` on the wire).
pub mod dispatcher {
    tonic::include_proto!("berth.dispatcher");
}

/// The managers' Raft group: Raft's RPCs and a follower's writes forwarded to
/// the leader (served by the `store` crate).
pub mod raft {
    tonic::include_proto!("berth.raft");
}

/// Node certificates (join, renewal) and managers joining the Raft group.
pub mod node {
    tonic::include_proto!("berth.node");
}

use std::net::SocketAddr;
use tonic::transport::Channel;

/// Makes the gRPC channel to another node's cluster RPC address (`host:port`).
///
/// Channels are lazy: making one does no I/O, the connection is made (and
/// remade after a failure) on first use. The cluster's implementation is the
/// mutual-TLS connector of the `ca` crate; tests of one component may use
/// [`PlainConnector`].
pub trait Connector: Send + Sync + 'static {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error>;
}

/// Plain-text HTTP/2 channels, for tests of a component on loopback only.
/// A node never uses it: every connection between nodes is mutual TLS.
#[derive(Clone, Debug, Default)]
pub struct PlainConnector;

impl Connector for PlainConnector {
    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        Ok(tonic::transport::Endpoint::try_from(format!("http://{addr}"))?.connect_lazy())
    }
}

/// The role a node certificate grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerRole {
    Manager,
    Worker,
}

/// Who is calling, as proven by the client certificate of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: String,
    pub role: PeerRole,
    pub cluster_id: String,
}

/// What a server knows of the connection a request came on. The mutual-TLS
/// server puts it in every request's extensions (tonic's connect info), so a
/// handler reads it with [`peer`].
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// `None` when the client showed no certificate (a node that is joining
    /// and has none yet); a certificate that does not chain to the cluster's
    /// roots never gets this far: the handshake refuses it.
    pub identity: Option<PeerIdentity>,
}

/// The verified identity of the caller of `request`, if it showed a certificate.
pub fn peer<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.identity.as_ref())
}
