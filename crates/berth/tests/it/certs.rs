//! Node certificates over time, with two nodes in process (a manager and a
//! worker joined over the cluster RPC): automatic renewal before expiry, and
//! a rotation of the cluster root CA (`berth ca --rotate`), both without
//! interrupting the worker's session or its tasks.

use crate::support::*;
use api::{NodeState, Op};
use berth::node::{Membership, Node, NodeAddrs, NodeConfig};
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A worker joined to `manager` in process, in `dir`.
async fn join_worker(manager: &TestNode, dir: &std::path::Path) -> Node {
    let token = manager.store().view(|s| {
        s.cluster()
            .and_then(|c| c.security.as_ref())
            .map(|sec| sec.join_tokens.worker.clone())
            .unwrap()
    });
    Node::start(NodeConfig {
        data_dir: dir.join("data"),
        addrs: NodeAddrs::loopback("127.0.0.1:0".parse().unwrap()),
        hostname: Some("worker".into()),
        shim: agent::ShimCommand {
            program: berth_bin(),
            args: vec!["shim".into()],
        },
        credentials_file: None,
        admin_password: None,
        membership: Membership::Join {
            token,
            manager: manager.node.rpc_addr().to_string(),
        },
    })
    .await
    .expect("the worker joins")
}

/// Ids of the running tasks on `node_id`.
fn running_on(n: &TestNode, node_id: &str) -> BTreeSet<String> {
    n.store().view(|s| {
        s.tasks_by_node(node_id)
            .filter(|t| t.status.state == api::TaskState::Running)
            .map(|t| t.meta.id.clone())
            .collect()
    })
}

async fn set_cert_validity(n: &TestNode, validity: Duration) {
    let mut cluster = n.store().view(|s| s.cluster().cloned()).unwrap();
    cluster.node_cert_validity = validity;
    n.store()
        .update(vec![Op::Update(cluster.into())])
        .await
        .unwrap();
}

/// Starts two replicas on the worker (the manager is drained) and returns
/// their ids once they run.
async fn tasks_on_worker(n: &TestNode, worker: &Node, seed: u32) -> BTreeSet<String> {
    let (ok, _, err) = cli_async(
        &n.config_dir(),
        &["node", "update", "--availability", "drain", "test-node"],
    )
    .await;
    assert!(ok, "{err}");
    let secs = unique_sleep(seed);
    let (ok, _, err) = cli_async(
        &n.config_dir(),
        &[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "2",
            "-d",
            "--",
            "sleep",
            &secs,
        ],
    )
    .await;
    assert!(ok, "{err}");
    wait_for(T, "2 tasks running on the worker", || async {
        let ids = running_on(n, &worker.node_id);
        (ids.len() == 2).then_some(ids)
    })
    .await
}

fn worker_ready(n: &TestNode, worker: &Node) -> bool {
    n.store().view(|s| {
        s.node(&worker.node_id)
            .is_some_and(|w| w.status.state == NodeState::Ready)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_before_they_expire_without_interruption() {
    let n = TestNode::start().await;
    // Ten seconds: renewal falls between 5 and 8 s after each issue.
    set_cert_validity(&n, Duration::from_secs(10)).await;
    let wdir = tempfile::tempdir().unwrap();
    let _reaper = TaskReaper(wdir.path().to_path_buf());
    let worker = join_worker(&n, wdir.path()).await;
    let tasks = tasks_on_worker(&n, &worker, 81).await;

    let mut seen = vec![worker.identity().cert_pem];
    // Three certificates in a row, each before the one before expired (the
    // test would fail on its session otherwise), with the node ready and
    // its tasks untouched all along.
    wait_for(Duration::from_secs(45), "two automatic renewals", || {
        let pem = worker.identity().cert_pem;
        if seen.last() != Some(&pem) {
            seen.push(pem);
        }
        assert!(
            worker_ready(&n, &worker),
            "the worker went down while renewing"
        );
        let done = seen.len() >= 3;
        async move { done.then_some(()) }
    })
    .await;
    for pair in seen.windows(2) {
        let due = |pem: &str| ca::renewal_time(pem).unwrap();
        assert!(
            due(&pair[1]) > due(&pair[0]),
            "a renewal gave no later certificate"
        );
    }
    assert_eq!(running_on(&n, &worker.node_id), tasks);
    // The saved identity holds the newest certificate: a restart resumes it.
    let saved: berth::node::Identity = serde_json::from_slice(
        &std::fs::read(wdir.path().join("data/node/identity.json")).unwrap(),
    )
    .unwrap();
    assert!(seen.contains(&saved.cert_pem));
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_ca_rotation_moves_every_node_to_the_new_root_without_interruption() {
    let n = TestNode::start().await;
    let wdir = tempfile::tempdir().unwrap();
    let _reaper = TaskReaper(wdir.path().to_path_buf());
    let worker = join_worker(&n, wdir.path()).await;
    let tasks = tasks_on_worker(&n, &worker, 82).await;
    let old_root = n.node.identity().trust_pem;
    // The CLI trusts the cluster root, which signs every manager's API
    // certificate, and nothing else.
    assert_eq!(n.creds().ca_pem.trim(), old_root.trim());
    let old_tokens = n.store().view(|s| {
        s.cluster()
            .and_then(|c| c.security.as_ref())
            .map(|sec| sec.join_tokens.clone())
            .unwrap()
    });

    // The CLI waits until every node renewed and the rotation ended, then
    // prints the new root.
    let (ok, out, err) = cli_async(&n.config_dir(), &["ca", "--rotate"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("rotation complete"), "{err}");
    assert!(out.contains("BEGIN CERTIFICATE"), "{out}");
    let new_root = out.trim().to_string();
    assert_ne!(new_root, old_root.trim());
    let digest = |pem: &str| ca::digest_of_pem(pem).unwrap().to_string();

    // Both nodes end up trusting only the new root, with certificates it
    // signed; the worker stayed ready with the same tasks.
    for (name, node) in [("manager", &n.node), ("worker", &worker)] {
        wait_for(T, &format!("the {name} trusting only the new root"), || {
            let id = node.identity();
            let done = digest(&id.trust_pem) == digest(&new_root)
                && id.trust_pem.matches("BEGIN").count() == 1;
            async move { done.then_some(id) }
        })
        .await;
    }
    assert!(ca::issued_by(&worker.identity().cert_pem, &new_root).unwrap());
    assert!(!ca::issued_by(&worker.identity().cert_pem, &old_root).unwrap());
    assert!(worker_ready(&n, &worker));
    assert_eq!(running_on(&n, &worker.node_id), tasks);
    // A client that trusts only the old root still reaches the API (its
    // certificate's chain carries the cross-signed new root), and the CLI
    // that ran the rotation trusts the new root as well now.
    let status: controller::wire::CaStatus = n.client.get("/api/v1/cluster/ca").await.unwrap();
    let saved =
        berth::credentials::Credentials::load(&n.config_dir().join("credentials.json")).unwrap();
    assert!(saved.ca_pem.contains(new_root.trim()), "{}", saved.ca_pem);
    assert!(saved.ca_pem.contains(old_root.trim()));
    assert!(status.rotation.is_none());
    assert_eq!(status.root_digest, digest(&new_root));

    // The join tokens pin the new root now: the old ones are void.
    let new_tokens = n.store().view(|s| {
        s.cluster()
            .and_then(|c| c.security.as_ref())
            .map(|sec| sec.join_tokens.clone())
            .unwrap()
    });
    let token = |t: &str| t.parse::<ca::JoinToken>().unwrap();
    for (old, new) in [
        (&old_tokens.worker, &new_tokens.worker),
        (&old_tokens.manager, &new_tokens.manager),
    ] {
        assert!(token(new).verifies_ca(&new_root));
        assert!(!token(old).verifies_ca(&new_root));
    }

    // A second rotation cannot start while one is under way; after, it can.
    let (ok, _, err) = cli_async(&n.config_dir(), &["ca", "--rotate", "--detach"]).await;
    assert!(ok, "{err}");
    let again = n
        .client
        .post::<_, controller::wire::CaStatus>("/api/v1/cluster/ca/rotate", &serde_json::json!({}))
        .await;
    assert_eq!(berth::client::status_of(&again.unwrap_err()), Some(409));
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_update_sets_the_certificate_expiry_new_certificates_get() {
    let n = TestNode::start().await;
    let inspect = || async {
        let (ok, out, err) = cli_async(&n.config_dir(), &["cluster", "inspect"]).await;
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    assert_eq!(inspect().await["cert_expiry"], "90d");
    let (ok, _, err) = cli_async(
        &n.config_dir(),
        &["cluster", "update", "--cert-expiry", "10m"],
    )
    .await;
    assert!(!ok && err.contains("cert_expiry"), "{err}");
    let (ok, _, err) = cli_async(&n.config_dir(), &["cluster", "update"]).await;
    assert!(!ok && err.contains("nothing to change"), "{err}");
    let (ok, _, err) = cli_async(
        &n.config_dir(),
        &["cluster", "update", "--cert-expiry", "48h"],
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(inspect().await["cert_expiry"], "2d");
    // A node joining now gets a two-day certificate: due for renewal
    // between one day and 38.4 hours from now.
    let wdir = tempfile::tempdir().unwrap();
    let _reaper = TaskReaper(wdir.path().to_path_buf());
    let worker = join_worker(&n, wdir.path()).await;
    let due = ca::renewal_time(&worker.identity().cert_pem)
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        due > Duration::from_secs(23 * 3600) && due < Duration::from_secs(39 * 3600),
        "{due:?}"
    );
    worker.shutdown().await.unwrap();
}
