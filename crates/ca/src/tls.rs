//! rustls configurations for the cluster RPC, always with the ring provider
//! passed explicitly (never the process default, which another crate may set
//! to something else or not at all).
//!
//! Identity is in the certificate, not in a host name: nodes are reached by IP
//! address and addresses change, so, as in Swarm, a server is accepted when its
//! chain leads to a trusted root and its subject names the expected cluster
//! (and role, or node); the name the client dialled plays no part.
//!
//! Servers accept connections without a client certificate, because a joining
//! node has none yet and must reach the CA's "issue certificate" call. A
//! certificate that is shown must chain to the trust bundle, name this cluster
//! and pass the `admit` check (which the node backs with the store, so a
//! removed node is refused at the handshake). Handlers then see who called
//! through [`api::rpc::peer`], and [`crate::authz`] guards calls that need a
//! node or a manager.
//!
//! Only TLS 1.3, and no session resumption: a resumed session would skip the
//! certificate checks, so a removed node could come back through one.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use api::rpc::{PeerIdentity, PeerRole};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::root::{digest_of_pem, CaDigest, RootCa};
use crate::subject::identity_of;
use crate::{CaError, JoinToken};

/// The ALPN protocol of the cluster RPC: gRPC is HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// Decides whether a verified node certificate may connect. The node wiring
/// backs it with the store (is the node still a member, with this role?).
/// It runs inside the TLS handshake, on the runtime's threads: it must answer
/// from memory (a store `view`), never wait on I/O. It is asked once per
/// connection, so a node removed while connected is cut off by closing its
/// connections (or its session), not by this check.
pub type Admit = Arc<dyn Fn(&PeerIdentity) -> bool + Send + Sync>;

/// The crypto provider every configuration of this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// A handshake refusal with a reason that rustls carries to the logs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn refuse(reason: impl Into<String>) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        reason.into(),
    )))))
}

fn tls_error(e: impl std::fmt::Display) -> CaError {
    CaError::Tls(rustls::Error::General(e.to_string()))
}

/// The roots a node trusts: normally the cluster root CA; during a rotation
/// both the old and the new root.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    /// Each root's own PEM block and its DER.
    roots: Vec<(String, CertificateDer<'static>)>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.digests()).finish()
    }
}

impl TrustBundle {
    pub fn new() -> TrustBundle {
        TrustBundle::default()
    }

    /// A bundle that trusts `root` only.
    pub fn from_root(root: &RootCa) -> TrustBundle {
        let mut bundle = TrustBundle::new();
        bundle.add_root(root);
        bundle
    }

    /// A bundle from PEM text holding one or more root certificates.
    pub fn from_pem(pem: &str) -> Result<TrustBundle, CaError> {
        let mut bundle = TrustBundle::new();
        bundle.add_pem(pem)?;
        Ok(bundle)
    }

    pub fn add_root(&mut self, root: &RootCa) {
        self.push(root.cert_pem().trim().to_owned(), root.cert_der().clone());
    }

    /// Adds every certificate in `pem`; a root already present is skipped.
    pub fn add_pem(&mut self, pem: &str) -> Result<(), CaError> {
        let blocks = pem_blocks(pem);
        if blocks.is_empty() {
            return Err(CaError::Pem {
                what: "trust bundle",
                reason: "no certificate".into(),
            });
        }
        for block in blocks {
            let der =
                CertificateDer::from_pem_slice(block.as_bytes()).map_err(|e| CaError::Pem {
                    what: "trust bundle",
                    reason: e.to_string(),
                })?;
            self.push(block, der);
        }
        Ok(())
    }

    fn push(&mut self, pem: String, der: CertificateDer<'static>) {
        if !self.roots.iter().any(|(_, d)| *d == der) {
            self.roots.push((pem, der));
        }
    }

    /// The bundle as PEM text, one certificate after another.
    pub fn to_pem(&self) -> String {
        self.roots
            .iter()
            .map(|(pem, _)| format!("{pem}\n"))
            .collect()
    }

    pub fn digests(&self) -> Vec<CaDigest> {
        self.roots
            .iter()
            .map(|(_, der)| CaDigest::of_der(der.as_ref()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    fn root_store(&self) -> Result<Arc<RootCertStore>, CaError> {
        if self.roots.is_empty() {
            return Err(CaError::Pem {
                what: "trust bundle",
                reason: "no root to trust".into(),
            });
        }
        let mut store = RootCertStore::empty();
        for (_, der) in &self.roots {
            store.add(der.clone())?;
        }
        Ok(Arc::new(store))
    }
}

/// The PEM blocks of `text` that hold certificates, each as its own text.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(vec![line]);
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
            if line == "-----END CERTIFICATE-----" {
                blocks.push(lines.join("\n"));
                current = None;
            }
        }
    }
    blocks
}

/// A node's certificate chain (its leaf first, then any cross-signed
/// intermediate during a rotation) and private key, checked to belong
/// together. `Debug` shows who the node is, never the key.
#[derive(Clone)]
pub struct NodeIdentity {
    chain_pem: String,
    key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    peer: PeerIdentity,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer", &self.peer)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A chain issued for `key` (what a node holds right after the CA answered).
    pub fn new(chain_pem: &str, key: &crate::NodeKey) -> Result<NodeIdentity, CaError> {
        NodeIdentity::from_pem(chain_pem, &key.key_pem())
    }

    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<NodeIdentity, CaError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::Pem {
                what: "certificate chain",
                reason: e.to_string(),
            })?;
        let leaf = chain.first().ok_or_else(|| CaError::Pem {
            what: "certificate chain",
            reason: "no certificate".into(),
        })?;
        let peer = identity_of(leaf.as_ref())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CaError::Pem {
            what: "private key",
            reason: e.to_string(),
        })?;
        // Refuse a key that does not match the leaf now, rather than at the
        // first handshake.
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())?
            .keys_match()?;
        Ok(NodeIdentity {
            chain_pem: chain_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            chain,
            key: Arc::new(key),
            peer,
        })
    }

    /// Who this node is, as its certificate says.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key (secret: never log it).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Whether the leaf certificate is due for renewal at `now`.
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        crate::renewal::needs_renewal(&self.chain_pem, now)
    }
}

/// Whom a client accepts as the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedPeer {
    pub cluster_id: String,
    /// `None`: any role.
    pub role: Option<PeerRole>,
    /// `None`: any node.
    pub node_id: Option<String>,
}

impl ExpectedPeer {
    /// Any node of the cluster.
    pub fn any_node(cluster_id: &str) -> ExpectedPeer {
        ExpectedPeer {
            cluster_id: cluster_id.to_owned(),
            role: None,
            node_id: None,
        }
    }

    /// A manager of the cluster (what an agent expects of its dispatcher).
    pub fn manager(cluster_id: &str) -> ExpectedPeer {
        ExpectedPeer {
            role: Some(PeerRole::Manager),
            ..ExpectedPeer::any_node(cluster_id)
        }
    }

    /// One given node (for example a Raft peer known by id).
    pub fn node(cluster_id: &str, node_id: &str) -> ExpectedPeer {
        ExpectedPeer {
            node_id: Some(node_id.to_owned()),
            ..ExpectedPeer::any_node(cluster_id)
        }
    }

    fn check(&self, id: &PeerIdentity) -> Result<(), String> {
        if id.cluster_id != self.cluster_id {
            return Err(format!(
                "server belongs to cluster {:?}, not {:?}",
                id.cluster_id, self.cluster_id
            ));
        }
        if let Some(role) = self.role {
            if id.role != role {
                return Err(format!("server is a {:?}, not a {role:?}", id.role));
            }
        }
        if let Some(node_id) = &self.node_id {
            if &id.node_id != node_id {
                return Err(format!("server is node {:?}, not {node_id:?}", id.node_id));
            }
        }
        Ok(())
    }
}

/// The server side of the cluster RPC: presents `identity`, and checks any
/// client certificate against `trust`, this node's cluster id and `admit`.
pub fn server_config(
    identity: &NodeIdentity,
    trust: &TrustBundle,
    admit: Admit,
) -> Result<Arc<ServerConfig>, CaError> {
    let inner = WebPkiClientVerifier::builder_with_provider(trust.root_store()?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(tls_error)?;
    let verifier = Arc::new(NodeClientVerifier {
        inner,
        cluster_id: identity.peer.cluster_id.clone(),
        admit,
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The client side of the cluster RPC: presents `identity` if given, and
/// accepts a server whose chain leads to `trust` and whose certificate
/// matches `expect`. The server name used to connect is not checked.
pub fn client_config(
    identity: Option<&NodeIdentity>,
    trust: &TrustBundle,
    expect: ExpectedPeer,
) -> Result<Arc<ClientConfig>, CaError> {
    let verifier = Arc::new(NodeServerVerifier {
        roots: trust.root_store()?,
        expect,
        algs: algorithms(),
    });
    finish_client(verifier, identity)
}

fn finish_client(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<&NodeIdentity>,
) -> Result<Arc<ClientConfig>, CaError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The certificate chain the server showed on the last bootstrap handshake.
#[derive(Clone, Default)]
pub struct PresentedChain(Arc<Mutex<Option<Vec<CertificateDer<'static>>>>>);

impl std::fmt::Debug for PresentedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.latest().map(|c| c.len());
        f.debug_struct("PresentedChain").field("len", &len).finish()
    }
}

impl PresentedChain {
    /// The leaf first, then what the server sent after it.
    pub fn latest(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, chain: Vec<CertificateDer<'static>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain);
    }
}

/// A client configuration for a joining node's first call, before it trusts
/// anything: it accepts any server certificate and records the chain in the
/// returned [`PresentedChain`]. Send nothing secret over it. The node fetches
/// the root CA, then checks it with [`verify_bootstrap_root`] before it uses
/// [`client_config`] with the result.
pub fn bootstrap_client_config() -> Result<(Arc<ClientConfig>, PresentedChain), CaError> {
    let seen = PresentedChain::default();
    let verifier = Arc::new(BootstrapVerifier {
        seen: seen.clone(),
        algs: algorithms(),
    });
    Ok((finish_client(verifier, None)?, seen))
}

/// Checks what a joining node learnt over its bootstrap connection: the root
/// CA `root_pem` (the first certificate in it) must be the one `token` pins,
/// and the server it talked to (`presented`, from [`PresentedChain`]) must be a
/// manager whose certificate chains to that root. Returns the trust bundle to
/// use from then on, and who the manager is (so the node learns its cluster id).
pub fn verify_bootstrap_root(
    token: &JoinToken,
    root_pem: &str,
    presented: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<(TrustBundle, PeerIdentity), CaError> {
    let digest = digest_of_pem(root_pem)?;
    if digest != *token.ca_digest() {
        return Err(CaError::RootDigestMismatch);
    }
    let root = pem_blocks(root_pem)
        .into_iter()
        .next()
        .ok_or_else(|| CaError::Pem {
            what: "root CA",
            reason: "no certificate".into(),
        })?;
    let trust = TrustBundle::from_pem(&root)?;
    let (leaf, intermediates) = presented
        .split_first()
        .ok_or_else(|| CaError::ServerNotUnderRoot("the server showed no certificate".into()))?;
    let parsed = ParsedCertificate::try_from(leaf)
        .map_err(|e| CaError::ServerNotUnderRoot(e.to_string()))?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let roots = trust.root_store()?;
    verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        UnixTime::since_unix_epoch(since_epoch),
        algorithms().all,
    )
    .map_err(|e| CaError::ServerNotUnderRoot(e.to_string()))?;
    let manager = identity_of(leaf.as_ref())?;
    if manager.role != PeerRole::Manager {
        return Err(CaError::ServerNotUnderRoot(format!(
            "the server is node {} with role {:?}, not a manager",
            manager.node_id, manager.role
        )));
    }
    Ok((trust, manager))
}

/// rustls's WebPKI client verifier, then berth's checks on the subject.
struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster_id: String,
    admit: Admit,
}

impl std::fmt::Debug for NodeClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClientVerifier")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // A joining node has no certificate yet; authz guards each call.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = identity_of(end_entity.as_ref()).map_err(|e| refuse(e.to_string()))?;
        if id.cluster_id != self.cluster_id {
            return Err(refuse(format!(
                "client certificate of cluster {:?}, this is {:?}",
                id.cluster_id, self.cluster_id
            )));
        }
        if !(self.admit)(&id) {
            return Err(refuse(format!(
                "node {} ({:?}) is not admitted to this cluster",
                id.node_id, id.role
            )));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Chain to the trust bundle and subject check, without a host name.
#[derive(Debug)]
struct NodeServerVerifier {
    roots: Arc<RootCertStore>,
    expect: ExpectedPeer,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let id = identity_of(end_entity.as_ref()).map_err(|e| refuse(e.to_string()))?;
        self.expect.check(&id).map_err(refuse)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Accepts any server certificate and records the chain. It still checks the
/// handshake signature, so the recorded leaf is one the server holds the key of.
#[derive(Debug)]
struct BootstrapVerifier {
    seen: PresentedChain,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for BootstrapVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        self.seen.record(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_split_a_bundle() {
        let a = RootCa::generate("a", crate::DEFAULT_ROOT_CA_VALIDITY, SystemTime::now()).unwrap();
        let b = RootCa::generate("b", crate::DEFAULT_ROOT_CA_VALIDITY, SystemTime::now()).unwrap();
        let text = format!("{}\n{}", a.cert_pem(), b.cert_pem());
        let bundle = TrustBundle::from_pem(&text).unwrap();
        assert_eq!(bundle.digests(), vec![a.digest(), b.digest()]);
        // Round trip, and adding a root twice keeps one copy.
        let mut again = TrustBundle::from_pem(&bundle.to_pem()).unwrap();
        again.add_root(&a);
        assert_eq!(again, bundle);
        assert!(TrustBundle::from_pem("nothing here").is_err());
    }
}
