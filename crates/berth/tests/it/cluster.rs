//! A cluster of real processes on 127.x.y.z, formed as on separate machines
//! with `berth init` and `berth join`: 3 managers and 2 workers; kill -9 of
//! the leader (a new leader, writes accepted, nothing acknowledged lost); a
//! worker killed (marked down by gossip and its closed stream, its tasks run
//! elsewhere); a removed node's certificate
//! refused; a worker's certificate refused by a manager-only RPC.

use crate::multiproc::{Cluster, T};
use crate::support::*;
use api::{Node, NodeState};
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_and_two_workers_survive_losing_the_leader_and_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path());
    let m1 = c.ip(11);
    c.spawn("m1", &["init", "--advertise-addr", &m1]);
    c.wait_ready(1).await;
    let (ok, manager_token, err) = c.cli(&["join-token", "--quiet", "manager"]).await;
    assert!(ok, "{err}");
    let (ok, worker_token, err) = c.cli(&["join-token", "--quiet", "worker"]).await;
    assert!(ok, "{err}");
    assert_ne!(manager_token.trim(), worker_token.trim());
    let join = format!("{m1}:7377");

    // A wrong token is refused with a clear message, and nothing joins.
    let bad = format!("{}x", &worker_token.trim()[..worker_token.trim().len() - 1]);
    let out = Command::new(berth_bin())
        .args(["join", "--token", &bad, "--advertise-addr", &c.ip(29)])
        .arg("--data-dir")
        .arg(dir.path().join("bad"))
        .arg(&join)
        .env("BERTH_CONFIG_DIR", &c.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid join token"), "{err}");

    for (i, name) in ["m2", "m3"].iter().enumerate() {
        let ip = c.ip(12 + i as u8);
        c.spawn(
            name,
            &[
                "join",
                "--token",
                manager_token.trim(),
                "--advertise-addr",
                &ip,
                &join,
            ],
        );
        c.wait_ready(2 + i).await;
    }
    for (i, name) in ["w1", "w2"].iter().enumerate() {
        let ip = c.ip(21 + i as u8);
        c.spawn(
            name,
            &[
                "join",
                "--token",
                worker_token.trim(),
                "--advertise-addr",
                &ip,
                &join,
            ],
        );
    }
    c.wait_ready(5).await;
    let nodes = c.nodes().await;
    let managers: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.manager_status.is_some())
        .collect();
    assert_eq!(managers.len(), 3, "{nodes:#?}");
    let leaders: Vec<&Node> = managers
        .iter()
        .copied()
        .filter(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
        .collect();
    assert_eq!(leaders.len(), 1, "{nodes:#?}");
    let leader = leaders[0].description.hostname.clone();

    // A worker's certificate cannot call a manager-only RPC (Raft).
    let w2: berth::node::Identity =
        serde_json::from_slice(&std::fs::read(dir.path().join("w2/node/identity.json")).unwrap())
            .unwrap();
    let tls = ca::client_config(
        Some(&w2.tls_identity().unwrap()),
        &w2.trust().unwrap(),
        ca::ExpectedPeer::manager(&w2.cluster_id),
    )
    .unwrap();
    let channel = api::rpc::Connector::channel(&ca::MtlsConnector::new(tls), &join).unwrap();
    let err = api::rpc::raft::raft_client::RaftClient::new(channel)
        .ping(api::rpc::raft::PingRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // Tasks spread over the five nodes.
    let secs = unique_sleep(70);
    let (ok, _, err) = c
        .cli(&[
            "service",
            "create",
            "--name",
            "web",
            "--replicas",
            "6",
            "-d",
            "--",
            "sleep",
            &secs,
        ])
        .await;
    assert!(ok, "{err}");
    wait_for(T, "6 tasks running", || async {
        (c.running("web").await.len() == 6).then_some(())
    })
    .await;

    // Writes acknowledged before the leader dies must all survive it.
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let name = format!("ack{i}");
        let (ok, err) = c.write(&name).await;
        assert!(ok, "{err}");
        acknowledged.push(name);
    }

    c.kill_9(&leader);
    let killed = Instant::now();
    let failover = wait_for(T, "a write accepted after the leader died", || async {
        let (ok, _, _) = c.cli(&["service", "scale", "-d", "web=5"]).await;
        ok.then(|| killed.elapsed())
    })
    .await;
    eprintln!("leader killed → first write accepted through another manager: {failover:?}");
    let (ok, out, err) = c.cli(&["service", "ls"]).await;
    assert!(ok, "{err}");
    for name in &acknowledged {
        assert!(
            out.contains(name.as_str()),
            "{name} lost after the failover:\n{out}"
        );
    }
    let nodes = c.nodes().await;
    let new_leader = nodes
        .iter()
        .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
        .expect("a new leader");
    assert_ne!(new_leader.description.hostname, leader);

    // A worker dies: once it is marked down, its tasks run elsewhere. Gossip
    // and a second signal (its closed assignments stream, or a late
    // heartbeat) mark it down, well before the heartbeat grace would.
    c.kill_9("w1");
    let killed = Instant::now();
    let message = wait_for(
        Duration::from_secs(90),
        "w1's tasks running elsewhere",
        || async {
            let nodes = c.nodes().await;
            let w1 = nodes.iter().find(|n| n.description.hostname == "w1")?;
            let w1_id = w1.meta.id.clone();
            let running = c.running("web").await;
            (w1.status.state == NodeState::Down
                && running.len() == 5
                && running
                    .iter()
                    .all(|t| t.node_id.as_deref() != Some(w1_id.as_str())))
            .then(|| w1.status.message.clone())
        },
    )
    .await;
    eprintln!(
        "worker killed → its tasks running elsewhere: {:?} (marked down: {message})",
        killed.elapsed()
    );
    assert!(
        message.starts_with("gossip: down; "),
        "w1 was not marked down by gossip and a second signal: {message:?}"
    );

    // Removed, w1 cannot come back with its certificate.
    let (ok, _, err) = c.cli(&["node", "rm", "w1"]).await;
    assert!(ok, "{err}");
    let w1_ip = c.ip(21);
    c.spawn(
        "w1",
        &[
            "join",
            "--token",
            worker_token.trim(),
            "--advertise-addr",
            &w1_ip,
            &join,
        ],
    );
    let deadline = Instant::now() + T;
    let status = loop {
        let p = c.procs.iter_mut().find(|p| p.name == "w1").unwrap();
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "w1's restart was not refused: {}",
            c.log("w1")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = c.log("w1");
    assert!(!status.success(), "{log}");
    assert!(log.contains("certificate is refused"), "{log}");
    let nodes = c.nodes().await;
    assert!(
        nodes.iter().all(|n| n.description.hostname != "w1"),
        "the removed node came back: {nodes:#?}"
    );
    let _ = c.cli(&["service", "rm", "web"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_quorum_refuses_writes_fast_and_force_new_cluster_recovers_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path());
    // Another /16 than the other test of this process.
    c.net = c.net.wrapping_add(1);
    let m1 = c.ip(11);
    c.spawn("m1", &["init", "--advertise-addr", &m1]);
    c.wait_ready(1).await;
    let (ok, token, err) = c.cli(&["join-token", "--quiet", "manager"]).await;
    assert!(ok, "{err}");
    let join = format!("{m1}:7377");
    for (i, name) in ["m2", "m3"].iter().enumerate() {
        let ip = c.ip(12 + i as u8);
        c.spawn(
            name,
            &[
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &ip,
                &join,
            ],
        );
        c.wait_ready(2 + i).await;
    }
    let (ok, err) = c.write("kept").await;
    assert!(ok, "{err}");

    // Two of three managers gone: a write is refused quickly, naming the
    // cause, and reads of the local copy still answer.
    c.kill_9("m2");
    c.kill_9("m3");
    let refused = wait_for(T, "a write refused for lost quorum", || async {
        let started = Instant::now();
        let (ok, err) = c.write("lost").await;
        (!ok && err.contains("quorum")).then(|| (started.elapsed(), err))
    })
    .await;
    assert!(
        refused.0 < Duration::from_secs(5),
        "took {:?}: {}",
        refused.0,
        refused.1
    );
    eprintln!("write refused after {:?}: {}", refused.0, refused.1.trim());
    let (ok, out, err) = c.cli(&["service", "ls"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("kept"), "{out}");

    // The survivor restarts alone with everything it had.
    c.kill_9("m1");
    c.spawn(
        "m1",
        &["init", "--force-new-cluster", "--advertise-addr", &m1],
    );
    wait_for(T, "a write accepted after --force-new-cluster", || async {
        let (ok, _) = c.write("after").await;
        ok.then_some(())
    })
    .await;
    let (ok, out, err) = c.cli(&["service", "ls"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("kept") && out.contains("after"), "{out}");
    let nodes = c.nodes().await;
    let managers = nodes.iter().filter(|n| n.manager_status.is_some()).count();
    assert_eq!(managers, 1, "{nodes:#?}");
}
