//! gRPC over mutual TLS: who gets through the handshake, what the handler
//! sees, and role checks on routes.

use std::sync::Arc;
use std::time::Duration;

use api::rpc::health::health_server::HealthServer;
use api::rpc::{PeerIdentity, PeerRole};
use ca::{require_node, require_role, ExpectedPeer, ServeOptions};
use tokio::io::AsyncReadExt;
use tonic::service::Routes;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn a_node_calls_a_manager_and_the_handler_sees_who() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let worker = cluster.node("w1", PeerRole::Worker);
    let server = start(&manager, &cluster.trust(), admit_all()).await;

    let answer = ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();
    assert_eq!(answer, "m1");
    let seen = server.seen.last();
    assert_eq!(
        seen.identity,
        Some(PeerIdentity {
            node_id: "w1".into(),
            role: PeerRole::Worker,
            cluster_id: "c1".into()
        })
    );
    assert_eq!(seen.remote_addr.unwrap().ip().to_string(), "127.0.0.1");
}

#[tokio::test]
async fn without_a_client_certificate_the_handler_sees_no_identity() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;

    let answer = ping(
        None,
        &cluster.trust(),
        ExpectedPeer::any_node("c1"),
        server.addr,
    )
    .await
    .unwrap();
    assert_eq!(answer, "m1");
    assert_eq!(server.seen.last().identity, None);
}

/// A refused handshake surfaces as a transport failure; the handler never runs.
///
/// When the client refuses the server, the call fails to connect
/// (`Unavailable`). When the server refuses the client's certificate, TLS 1.3
/// has already let the client consider the handshake done and send its
/// request, so the server's alert arrives as an error on that request
/// (`Unknown`, "transport error").
pub fn assert_refused(result: Result<String, tonic::Status>, server: &Server) {
    let status = result.expect_err("the connection is refused");
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Unknown),
        "{status:?}"
    );
    assert!(
        status.code() == Code::Unavailable || format!("{status:?}").contains("fatal alert"),
        "{status:?}"
    );
    assert_eq!(server.seen.calls(), 0, "the handler must not run");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;
    // Same cluster id and node names, but another root: the chain does not lead
    // to this cluster's root.
    let impostor = Cluster::new("c1").node("w1", PeerRole::Worker);

    let result = ping(
        Some(&impostor),
        &cluster.trust(),
        ExpectedPeer::any_node("c1"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
}

#[tokio::test]
async fn a_client_certificate_of_another_cluster_is_refused() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;
    // The right root, but the certificate names another cluster.
    let stranger = ca_issue(&cluster, "w1", "c2");

    let result = ping(
        Some(&stranger),
        &cluster.trust(),
        ExpectedPeer::any_node("c1"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
}

fn ca_issue(cluster: &Cluster, node_id: &str, cluster_id: &str) -> ca::NodeIdentity {
    issue(&cluster.root, node_id, PeerRole::Worker, cluster_id, "")
}

#[tokio::test]
async fn a_node_that_admit_refuses_is_refused_at_the_handshake() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    // The store would say: w-removed is no longer a member.
    let admit: ca::Admit = Arc::new(|id: &PeerIdentity| id.node_id != "w-removed");
    let server = start(&manager, &cluster.trust(), admit).await;

    let removed = cluster.node("w-removed", PeerRole::Worker);
    let result = ping(
        Some(&removed),
        &cluster.trust(),
        ExpectedPeer::any_node("c1"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);

    let member = cluster.node("w2", PeerRole::Worker);
    ping(
        Some(&member),
        &cluster.trust(),
        ExpectedPeer::any_node("c1"),
        server.addr,
    )
    .await
    .unwrap();
    assert_eq!(server.seen.calls(), 1);
}

#[tokio::test]
async fn a_user_client_certificate_is_not_a_node_certificate() {
    // Even signed by the cluster root, a certificate with the client marker
    // is not accepted as a node's.
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;
    let key = ca::NodeKey::generate().unwrap();
    let cert = cluster
        .root
        .issue_client_certificate(
            &key.csr_pem().unwrap(),
            "alice",
            ca::DEFAULT_CLIENT_CERT_VALIDITY,
            std::time::SystemTime::now(),
        )
        .unwrap();
    // NodeIdentity refuses it outright, so present it through a configuration
    // made by hand: the bootstrap one (it trusts any server) plus this cert.
    assert!(ca::NodeIdentity::new(&cert, &key).is_err());
    let (bootstrap, _) = ca::bootstrap_client_config().unwrap();
    let mut config = (*bootstrap).clone();
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key_der =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.key_pem().as_bytes()).unwrap();
    let provider = rustls::crypto::ring::default_provider();
    let certified = rustls::sign::CertifiedKey::from_der(chain, key_der, &provider).unwrap();
    config.client_auth_cert_resolver = Arc::new(rustls::sign::SingleCertAndKey::from(certified));
    let result = ping_with(&ca::MtlsConnector::new(Arc::new(config)), server.addr).await;
    assert_refused(result, &server);
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn a_worker_cannot_call_a_manager_only_route() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let seen = Seen::default();
    let pinger = Pinger {
        node_id: "m1".into(),
        reply: None,
        seen: seen.clone(),
    };
    let routes = Routes::new(HealthServer::with_interceptor(
        pinger,
        require_role(PeerRole::Manager),
    ));
    let server = start_routes(
        &manager,
        &cluster.trust(),
        admit_all(),
        routes,
        seen,
        ServeOptions::default(),
    )
    .await;
    let expect = ExpectedPeer::manager("c1");

    let worker = cluster.node("w1", PeerRole::Worker);
    let status = ping(Some(&worker), &cluster.trust(), expect.clone(), server.addr)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let status = ping(None, &cluster.trust(), expect.clone(), server.addr)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(server.seen.calls(), 0);

    let other_manager = cluster.node("m2", PeerRole::Manager);
    ping(Some(&other_manager), &cluster.trust(), expect, server.addr)
        .await
        .unwrap();
    assert_eq!(server.seen.calls(), 1);
}

#[tokio::test]
async fn require_node_refuses_anonymous_callers_only() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let seen = Seen::default();
    let pinger = Pinger {
        node_id: "m1".into(),
        reply: None,
        seen: seen.clone(),
    };
    let routes = Routes::new(HealthServer::with_interceptor(pinger, require_node()));
    let server = start_routes(
        &manager,
        &cluster.trust(),
        admit_all(),
        routes,
        seen,
        ServeOptions::default(),
    )
    .await;
    let expect = ExpectedPeer::any_node("c1");

    let status = ping(None, &cluster.trust(), expect.clone(), server.addr)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let worker = cluster.node("w1", PeerRole::Worker);
    ping(Some(&worker), &cluster.trust(), expect, server.addr)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_server_from_another_ca() {
    let cluster = Cluster::new("c1");
    let impostor = Cluster::new("c1");
    let fake_manager = impostor.node("m1", PeerRole::Manager);
    let server = start(&fake_manager, &impostor.trust(), admit_all()).await;

    let worker = cluster.node("w1", PeerRole::Worker);
    let result = ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
}

#[tokio::test]
async fn the_client_refuses_a_server_of_the_wrong_role_or_cluster() {
    let cluster = Cluster::new("c1");
    let worker_server = cluster.node("w9", PeerRole::Worker);
    let server = start(&worker_server, &cluster.trust(), admit_all()).await;
    let worker = cluster.node("w1", PeerRole::Worker);

    // An agent looking for its dispatcher wants a manager.
    let result = ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
    let result = ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::any_node("c2"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
    let result = ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::node("c1", "w8"),
        server.addr,
    )
    .await;
    assert_refused(result, &server);
    // The right expectations get through.
    ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::node("c1", "w9"),
        server.addr,
    )
    .await
    .unwrap();
}

async fn start_with(options: ServeOptions) -> (Cluster, Server) {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let seen = Seen::default();
    let pinger = Pinger {
        node_id: "m1".into(),
        reply: None,
        seen: seen.clone(),
    };
    let server = start_routes(
        &manager,
        &cluster.trust(),
        admit_all(),
        Routes::new(HealthServer::new(pinger)),
        seen,
        options,
    )
    .await;
    (cluster, server)
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others() {
    let (cluster, server) = start_with(ServeOptions {
        handshake_timeout: Duration::from_secs(600),
        ..ServeOptions::default()
    })
    .await;
    // Connects but never says hello; its handshake would wait 10 minutes.
    let _silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let worker = cluster.node("w1", PeerRole::Worker);
    let trust = cluster.trust();
    let call = ping(
        Some(&worker),
        &trust,
        ExpectedPeer::manager("c1"),
        server.addr,
    );
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("served while the silent client waits")
        .unwrap();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout_and_frees_its_slot() {
    let (cluster, server) = start_with(ServeOptions {
        handshake_timeout: Duration::from_millis(300),
        // One handshake at a time: the silent client holds the only slot until
        // its timeout, and the real client must get it afterwards.
        max_concurrent_handshakes: 1,
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let worker = cluster.node("w1", PeerRole::Worker);
    ping(
        Some(&worker),
        &cluster.trust(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();

    // The server has closed the silent connection: the read ends (EOF or
    // reset) instead of waiting forever.
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the server hangs up on a silent client");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
