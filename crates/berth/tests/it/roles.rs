//! Promotion and demotion with the real binary: a worker promoted to
//! manager joins the Raft group and serves the API with a full copy of the
//! state; demoted, it leaves the group and drops its manager parts while its
//! tasks go on running; the leader itself demoted hands leadership over and
//! comes back when promoted again. Every change is also a certificate
//! change: the node renews its certificate with its new role.

use crate::multiproc::{Cluster, T};
use api::{Node, NodeState};
use std::collections::BTreeSet;

fn is_member(n: &Node) -> bool {
    n.manager_status.is_some()
}

fn task_ids_on(tasks: &[api::Task], node: &Node) -> BTreeSet<String> {
    tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(node.meta.id.as_str()))
        .map(|t| t.meta.id.clone())
        .collect()
}

/// The role a node's saved certificate names ("manager" or "worker").
fn cert_role(c: &Cluster, name: &str) -> api::rpc::PeerRole {
    c.identity(name).tls_identity().unwrap().peer().role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_demote_round_trip_a_worker_and_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path());
    // Another /16 than the other multi-process tests of this process.
    c.net = c.net.wrapping_add(3);
    c.form(3, 1).await;
    let secs = crate::support::unique_sleep(71);
    let (ok, _, err) = c
        .cli(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "4",
            "-d",
            "--",
            "sleep",
            &secs,
        ])
        .await;
    assert!(ok, "{err}");
    let w1 = c.node("w1").await.unwrap();
    let on_w1 = crate::support::wait_for(T, "a task of web running on w1", || async {
        let ids = task_ids_on(&c.running("web").await, &w1);
        (!ids.is_empty()).then_some(ids)
    })
    .await;

    // Promoted: a fourth manager (an even count: the CLI warns), in the
    // Raft group, with a manager certificate and a store of its own.
    let (ok, _, err) = c.cli(&["node", "promote", "w1"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("4 managers"), "no even-count warning: {err}");
    let w1 = crate::support::wait_for(T, "w1 a reachable member of the Raft group", || async {
        let n = c.node("w1").await?;
        let reachable = n
            .manager_status
            .as_ref()
            .is_some_and(|m| m.reachability == "reachable" && !m.api_addr.is_empty());
        reachable.then_some(n)
    })
    .await;
    assert_eq!(cert_role(&c, "w1"), api::rpc::PeerRole::Manager);
    assert!(dir.path().join("w1/store").exists());
    // Its API answers with the whole state, and takes writes.
    let w1_api = w1.manager_status.as_ref().unwrap().api_addr.clone();
    let (ok, out, err) = c.cli(&["--host", &w1_api, "service", "ls"]).await;
    assert!(ok && out.contains("web"), "{out}{err}");
    let (ok, _, err) = c
        .cli(&[
            "--host",
            &w1_api,
            "service",
            "create",
            "--name",
            "via-w1",
            "--replicas",
            "0",
            "-d",
            "--",
            "true",
        ])
        .await;
    assert!(ok, "{err}");
    // Its tasks did not move or restart.
    let still = task_ids_on(&c.running("web").await, &w1);
    assert!(on_w1.is_subset(&still), "{on_w1:?} → {still:?}");

    // Demoted: out of the Raft group, manager parts and their data gone,
    // a worker certificate, the same tasks still running.
    let (ok, _, err) = c.cli(&["node", "demote", "w1"]).await;
    assert!(ok, "{err}");
    crate::support::wait_for(T, "w1 out of the Raft group as a worker", || async {
        let n = c.node("w1").await?;
        let done = !is_member(&n)
            && n.status.state == NodeState::Ready
            && cert_role(&c, "w1") == api::rpc::PeerRole::Worker
            && !dir.path().join("w1/store").exists();
        done.then_some(())
    })
    .await;
    let still = task_ids_on(&c.running("web").await, &w1);
    assert!(on_w1.is_subset(&still), "{on_w1:?} → {still:?}");
    let (ok, out, err) = c.cli(&["service", "ls"]).await;
    assert!(ok && out.contains("via-w1"), "{out}{err}");

    // The leader demoted: another manager leads, writes go on, and the old
    // leader, promoted again, rejoins with the whole state.
    let leader = c
        .nodes()
        .await
        .into_iter()
        .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
        .expect("a leader");
    let old = leader.description.hostname.clone();
    let (ok, _, err) = c.cli(&["node", "demote", &old]).await;
    assert!(ok, "{err}");
    crate::support::wait_for(T, "the old leader out, another leading", || async {
        let nodes = c.nodes().await;
        let gone = nodes
            .iter()
            .any(|n| n.description.hostname == old && !is_member(n));
        let led = nodes.iter().any(|n| {
            n.description.hostname != old && n.manager_status.as_ref().is_some_and(|m| m.leader)
        });
        (gone && led && cert_role(&c, &old) == api::rpc::PeerRole::Worker).then_some(())
    })
    .await;
    crate::support::wait_for(T, "a write after the leader's demotion", || async {
        let (ok, _) = c.write("after").await;
        ok.then_some(())
    })
    .await;
    let (ok, _, err) = c.cli(&["node", "promote", &old]).await;
    assert!(ok, "{err}");
    assert!(!err.contains("WARNING"), "3 managers is odd: {err}");
    crate::support::wait_for(T, "three reachable managers again", || async {
        let nodes = c.nodes().await;
        let managers: Vec<&Node> = nodes.iter().filter(|n| is_member(n)).collect();
        let ok = managers.len() == 3
            && managers.iter().any(|n| n.description.hostname == old)
            && managers
                .iter()
                .all(|n| n.manager_status.as_ref().unwrap().reachability == "reachable");
        ok.then_some(())
    })
    .await;
    let n = c.node(&old).await.unwrap();
    let api = n.manager_status.unwrap().api_addr;
    let (ok, out, err) = c.cli(&["--host", &api, "service", "ls"]).await;
    assert!(
        ok && out.contains("after") && out.contains("via-w1"),
        "{out}{err}"
    );
    let _ = c.cli(&["service", "rm", "web"]).await;
}
