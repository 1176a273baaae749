//! berth's certificate authorities and the mutual TLS of the cluster RPC
//! (Swarm's `ca` package; UCP's ucp-cluster-root-ca and ucp-client-root-ca).
//!
//! - [`RootCa`]: a root of trust. The cluster root CA signs node certificates,
//!   whose subject carries the node id, its role and the cluster id
//!   ([`subject`] is the one place that defines that format); the client root CA
//!   signs users' client bundles. Rotation cross-signs the new root with the old.
//! - [`NodeKey`]: a node's (or a user's) private key and its signing request.
//! - [`JoinToken`]: `BERTH-1-<root digest>-<secret>`; pins the cluster CA so a
//!   joining node can check the manager before it sends the secret.
//! - [`tls`]: rustls configurations (ring provider, always explicit) that check
//!   the chain, the cluster id and the role instead of a host name.
//! - [`transport`]: tonic over those configurations — a lazy
//!   [`api::rpc::Connector`] for clients and [`serve`] for servers, whose
//!   requests carry the caller's [`api::rpc::PeerInfo`].
//! - [`authz`]: interceptors that refuse a call from the wrong kind of peer.
//!
//! The crate is pure library code: the store keeps the CA material
//! ([`StoredRootCa`]) and the tokens, the node wiring decides when to renew.

pub mod authz;
mod base36;
mod error;
pub mod key;
pub mod renewal;
pub mod root;
pub mod subject;
pub mod tls;
pub mod token;
pub mod transport;

pub use authz::{check_peer, require_node, require_role, RequirePeer};
pub use error::CaError;
pub use key::NodeKey;
pub use renewal::{
    needs_renewal, not_after, renewal_time, DEFAULT_CLIENT_CERT_VALIDITY,
    DEFAULT_NODE_CERT_VALIDITY, DEFAULT_ROOT_CA_VALIDITY,
};
pub use root::{digest_of_pem, issued_by, CaDigest, RootCa, StoredRootCa};
pub use subject::{client_identity_of, identity_of, ClientIdentity};
pub use tls::{
    bootstrap_client_config, client_config, server_config, verify_bootstrap_root, Admit,
    ExpectedPeer, NodeIdentity, PresentedChain, TrustBundle,
};
pub use token::{JoinToken, TokenError};
pub use transport::{serve, serve_with, MtlsConnector, ServeOptions};
