//! A joining node's first contact: it trusts nothing yet, fetches the root CA
//! over a bootstrap connection, and checks it against its join token before
//! it trusts the manager with anything.
//!
//! The api crate has no CA service yet, so the health service stands in for
//! "get the root CA certificate": its Ping answers with the root's PEM.

use std::time::SystemTime;

use api::rpc::health::health_server::HealthServer;
use api::rpc::PeerRole;
use ca::{
    bootstrap_client_config, client_config, verify_bootstrap_root, CaError, ExpectedPeer,
    JoinToken, MtlsConnector, NodeIdentity, ServeOptions,
};
use tonic::service::Routes;

use crate::support::*;

/// A server that answers Ping with `root_pem`.
async fn root_server(identity: &NodeIdentity, cluster: &Cluster, root_pem: &str) -> Server {
    let seen = Seen::default();
    let pinger = Pinger {
        node_id: identity.peer().node_id.clone(),
        reply: Some(root_pem.to_owned()),
        seen: seen.clone(),
    };
    start_routes(
        identity,
        &cluster.trust(),
        admit_all(),
        Routes::new(HealthServer::new(pinger)),
        seen,
        ServeOptions::default(),
    )
    .await
}

/// The joining node's first call: what root the server offers and what chain it showed.
async fn first_contact(
    addr: std::net::SocketAddr,
) -> (String, Vec<rustls::pki_types::CertificateDer<'static>>) {
    let (config, presented) = bootstrap_client_config().unwrap();
    let root_pem = ping_with(&MtlsConnector::new(config), addr).await.unwrap();
    (
        root_pem,
        presented
            .latest()
            .expect("the handshake recorded the chain"),
    )
}

#[tokio::test]
async fn a_joining_node_checks_the_root_against_its_token_then_trusts_it() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = root_server(&manager, &cluster, cluster.root.cert_pem()).await;
    // The operator pastes the token shown by `join-token`.
    let token: JoinToken = JoinToken::generate(&cluster.root.digest())
        .to_string()
        .parse()
        .unwrap();

    let (root_pem, chain) = first_contact(server.addr).await;
    let (trust, manager_id) =
        verify_bootstrap_root(&token, &root_pem, &chain, SystemTime::now()).unwrap();
    assert_eq!(manager_id.cluster_id, "c1");
    assert_eq!(manager_id.node_id, "m1");
    assert_eq!(trust.digests(), vec![cluster.root.digest()]);
    // The bootstrap call showed no certificate.
    assert_eq!(server.seen.last().identity, None);

    // From now on the node verifies the manager properly.
    let config =
        client_config(None, &trust, ExpectedPeer::manager(&manager_id.cluster_id)).unwrap();
    ping_with(&MtlsConnector::new(config), server.addr)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_for_another_root_is_detected() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = root_server(&manager, &cluster, cluster.root.cert_pem()).await;
    let other = Cluster::new("c1");
    let token = JoinToken::generate(&other.root.digest());

    let (root_pem, chain) = first_contact(server.addr).await;
    assert!(!token.verifies_ca(&root_pem));
    let err = verify_bootstrap_root(&token, &root_pem, &chain, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CaError::RootDigestMismatch), "{err}");
}

#[tokio::test]
async fn an_impostor_relaying_the_real_root_is_detected() {
    // The impostor knows the real root certificate (it is public) but holds no
    // certificate under it.
    let cluster = Cluster::new("c1");
    let token = JoinToken::generate(&cluster.root.digest());
    let impostor = Cluster::new("c1");
    let fake = impostor.node("m1", PeerRole::Manager);
    let server = root_server(&fake, &impostor, cluster.root.cert_pem()).await;

    let (root_pem, chain) = first_contact(server.addr).await;
    assert!(token.verifies_ca(&root_pem));
    let err = verify_bootstrap_root(&token, &root_pem, &chain, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CaError::ServerNotUnderRoot(_)), "{err}");
}

#[tokio::test]
async fn only_a_manager_can_bootstrap_a_node() {
    let cluster = Cluster::new("c1");
    let worker = cluster.node("w1", PeerRole::Worker);
    let server = root_server(&worker, &cluster, cluster.root.cert_pem()).await;
    let token = JoinToken::generate(&cluster.root.digest());

    let (root_pem, chain) = first_contact(server.addr).await;
    let err = verify_bootstrap_root(&token, &root_pem, &chain, SystemTime::now()).unwrap_err();
    assert!(matches!(err, CaError::ServerNotUnderRoot(_)), "{err}");
}
