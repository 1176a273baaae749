//! `MtlsConnector::with_source_ip`: connections leave from the node's own
//! address, so that on one machine's loopback each node's packets carry its
//! address (as between hosts), and fall back to the kernel's choice where
//! that address cannot be used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use api::rpc::health::health_server::HealthServer;
use api::rpc::PeerRole;
use ca::{client_config, server_config, ExpectedPeer, MtlsConnector};
use tonic::service::Routes;

use crate::support::*;

fn connector(cluster: &Cluster, source: IpAddr) -> MtlsConnector {
    let client = cluster.node("w1", PeerRole::Worker);
    let config =
        client_config(Some(&client), &cluster.trust(), ExpectedPeer::manager("c1")).unwrap();
    MtlsConnector::new(config).with_source_ip(source)
}

#[tokio::test]
async fn a_connection_leaves_from_the_source_ip() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;

    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let answer = ping_with(&connector(&cluster, source), server.addr)
        .await
        .unwrap();
    assert_eq!(answer, "m1");
    assert_eq!(server.seen.last().remote_addr.unwrap().ip(), source);
}

#[tokio::test]
async fn an_unspecified_source_leaves_the_choice_to_the_kernel() {
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;

    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    ping_with(&connector(&cluster, any), server.addr)
        .await
        .unwrap();
    // The kernel's source for 127.0.0.1 is 127.0.0.1.
    assert_eq!(
        server.seen.last().remote_addr.unwrap().ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
}

#[tokio::test]
async fn an_address_this_host_does_not_have_falls_back_to_the_kernels_choice() {
    // With non-local binds allowed the bind would succeed and the test would
    // say nothing about the fallback.
    let nonlocal = std::fs::read_to_string("/proc/sys/net/ipv4/ip_nonlocal_bind")
        .map(|s| s.trim() == "1")
        .unwrap_or(false);
    if nonlocal {
        eprintln!("skipped: net.ipv4.ip_nonlocal_bind is on, so any address can be bound");
        return;
    }
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let server = start(&manager, &cluster.trust(), admit_all()).await;

    // TEST-NET-2 (RFC 5737): an advertised address behind NAT, say.
    let elsewhere = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let answer = ping_with(&connector(&cluster, elsewhere), server.addr)
        .await
        .unwrap();
    assert_eq!(answer, "m1");
    assert_eq!(
        server.seen.last().remote_addr.unwrap().ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    );
}

#[tokio::test]
async fn a_source_of_the_other_family_is_not_used() {
    let listener = match tokio::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback here ({e})");
            return;
        }
    };
    let addr: SocketAddr = listener.local_addr().unwrap();
    let cluster = Cluster::new("c1");
    let manager = cluster.node("m1", PeerRole::Manager);
    let seen = Seen::default();
    let routes = Routes::new(HealthServer::new(Pinger {
        node_id: "m1".into(),
        reply: None,
        seen: seen.clone(),
    }));
    let tls = server_config(&manager, &cluster.trust(), admit_all()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(ca::serve(listener, tls, routes, async {
        let _ = stopped.await;
    }));

    let v4 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let answer = ping_with(&connector(&cluster, v4), addr).await.unwrap();
    assert_eq!(answer, "m1");
    assert_eq!(
        seen.last().remote_addr.unwrap().ip(),
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    );
    drop(stop);
    served.await.unwrap().unwrap();
}
