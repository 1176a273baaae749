//! Root rotation: while nodes move from the old root to the new one, a node
//! trusting only the old root, only the new one, or both can still talk to
//! every other, thanks to the new root cross-signed by the old.

use api::rpc::PeerRole;
use ca::{ExpectedPeer, RootCa, TrustBundle};

use crate::support::*;

struct Rotation {
    old: Cluster,
    new: RootCa,
    cross_pem: String,
}

impl Rotation {
    fn new() -> Rotation {
        let old = Cluster::new("c1");
        // Swarm keeps the same root name across rotations; so do we, which
        // makes the chain builder tell the roots apart by key, not by name.
        let new = Cluster::new("c1").root;
        let cross_pem = old.root.cross_sign(&new).unwrap();
        Rotation {
            old,
            new,
            cross_pem,
        }
    }

    /// A node renewed under the new root, presenting the cross-signed cert too.
    fn renewed(&self, node_id: &str, role: PeerRole) -> ca::NodeIdentity {
        issue(&self.new, node_id, role, "c1", &self.cross_pem)
    }

    fn old_only(&self) -> TrustBundle {
        TrustBundle::from_root(&self.old.root)
    }

    fn new_only(&self) -> TrustBundle {
        TrustBundle::from_root(&self.new)
    }

    fn both(&self) -> TrustBundle {
        let mut t = self.old_only();
        t.add_root(&self.new);
        t
    }
}

#[tokio::test]
async fn a_renewed_server_is_accepted_by_old_new_and_mixed_trust() {
    let r = Rotation::new();
    let server = start(&r.renewed("m1", PeerRole::Manager), &r.both(), admit_all()).await;
    let worker = r.old.node("w1", PeerRole::Worker);
    for trust in [r.old_only(), r.new_only(), r.both()] {
        let answer = ping(
            Some(&worker),
            &trust,
            ExpectedPeer::manager("c1"),
            server.addr,
        )
        .await
        .unwrap_or_else(|e| panic!("trusting {trust:?}: {e:?}"));
        assert_eq!(answer, "m1");
    }
}

#[tokio::test]
async fn a_renewed_client_is_accepted_by_a_server_that_trusts_only_the_old_root() {
    let r = Rotation::new();
    let server = start(
        &r.old.node("m1", PeerRole::Manager),
        &r.old_only(),
        admit_all(),
    )
    .await;
    let worker = r.renewed("w1", PeerRole::Worker);
    ping(
        Some(&worker),
        &r.both(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();
    assert_eq!(server.seen.last().identity.unwrap().node_id, "w1");
}

#[tokio::test]
async fn a_not_yet_renewed_client_is_accepted_by_a_server_that_trusts_both() {
    let r = Rotation::new();
    let server = start(&r.renewed("m1", PeerRole::Manager), &r.both(), admit_all()).await;
    let worker = r.old.node("w1", PeerRole::Worker);
    ping(
        Some(&worker),
        &r.old_only(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();
    assert_eq!(server.seen.last().identity.unwrap().node_id, "w1");
}

#[tokio::test]
async fn without_the_cross_signed_certificate_old_trust_refuses_a_new_leaf() {
    let r = Rotation::new();
    let bare = issue(&r.new, "m1", PeerRole::Manager, "c1", "");
    let server = start(&bare, &r.both(), admit_all()).await;
    let worker = r.old.node("w1", PeerRole::Worker);
    let status = ping(
        Some(&worker),
        &r.old_only(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    // Once the worker trusts the new root, the bare leaf is enough.
    ping(
        Some(&worker),
        &r.new_only(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn roots_reloaded_from_the_store_can_cross_sign() {
    let r = Rotation::new();
    let old = RootCa::from_stored(&r.old.root.to_stored()).unwrap();
    let new = RootCa::from_stored(&r.new.to_stored()).unwrap();
    let cross = old.cross_sign(&new).unwrap();
    let manager = issue(&new, "m1", PeerRole::Manager, "c1", &cross);
    let server = start(&manager, &r.both(), admit_all()).await;
    ping(
        None,
        &r.old_only(),
        ExpectedPeer::manager("c1"),
        server.addr,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_reloads_its_certificate_and_trust_without_restarting() {
    let r = Rotation::new();
    let manager_old = r.old.node("m1", PeerRole::Manager);
    let server = start(&manager_old, &r.old_only(), admit_all()).await;
    // A node that has already moved to the new root and trusts only it.
    let worker = issue(&r.new, "w1", PeerRole::Worker, "c1", "");
    let expect = ExpectedPeer::manager("c1");
    assert!(
        ping(Some(&worker), &r.new_only(), expect.clone(), server.addr)
            .await
            .is_err()
    );

    // The manager renews under the new root and trusts both roots.
    let renewed = r.renewed("m1", PeerRole::Manager);
    server
        .reload
        .send(ca::server_config(&renewed, &r.both(), admit_all()).unwrap())
        .unwrap();
    ping(Some(&worker), &r.new_only(), expect, server.addr)
        .await
        .unwrap();
    assert_eq!(server.seen.last().identity.unwrap().node_id, "w1");
}

#[tokio::test]
async fn a_reloading_connector_reconnects_with_the_new_trust() {
    use api::rpc::health::health_client::HealthClient;
    use api::rpc::health::PingRequest;
    use api::rpc::Connector;

    let r = Rotation::new();
    // The manager's certificate is from the new root only (no cross-signed cert).
    let manager = issue(&r.new, "m1", PeerRole::Manager, "c1", "");
    let server = start(&manager, &r.both(), admit_all()).await;
    let worker = r.old.node("w1", PeerRole::Worker);
    let config = |trust: &TrustBundle| {
        ca::client_config(Some(&worker), trust, ExpectedPeer::manager("c1")).unwrap()
    };
    let (update, configs) = tokio::sync::watch::channel(config(&r.old_only()));
    let channel = ca::MtlsConnector::reloading(configs)
        .channel(&server.addr.to_string())
        .unwrap();
    let mut client = HealthClient::new(channel);
    assert!(client.ping(PingRequest {}).await.is_err());

    // The worker learns the new root; the same channel reconnects with it.
    update.send(config(&r.both())).unwrap();
    let mut answered = false;
    for _ in 0..20 {
        if client.ping(PingRequest {}).await.is_ok() {
            answered = true;
            break;
        }
    }
    assert!(
        answered,
        "the channel reconnected with the new configuration"
    );
}

#[test]
fn issued_by_tells_the_roots_apart_by_key_not_by_name() {
    let r = Rotation::new();
    let old_leaf = r.old.node("n1", PeerRole::Worker);
    let new_leaf = r.renewed("n1", PeerRole::Worker);
    let old_pem = r.old.root.cert_pem();
    let new_pem = r.new.cert_pem();
    assert!(ca::issued_by(old_leaf.chain_pem(), old_pem).unwrap());
    assert!(!ca::issued_by(old_leaf.chain_pem(), new_pem).unwrap());
    // The new leaf's chain carries the cross-signed certificate after the
    // leaf; only the leaf is judged.
    assert!(ca::issued_by(new_leaf.chain_pem(), new_pem).unwrap());
    assert!(!ca::issued_by(new_leaf.chain_pem(), old_pem).unwrap());
    assert!(ca::issued_by("not a certificate", old_pem).is_err());
}
