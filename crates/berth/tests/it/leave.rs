//! `berth leave` with the real binary, as `docker swarm leave`: a running
//! worker asked through its control socket stops its tasks, forgets its
//! state and exits, and shows as down until removed; a manager is refused
//! without --force; a node killed with -9 leaves in place (its leftover tasks
//! stopped); a data dir that left can join again.

use crate::multiproc::{Cluster, T};
use crate::support::*;
use api::NodeState;
use std::time::Instant;

fn leave(c: &Cluster, name: &str, force: bool) -> (bool, String, String) {
    let dir = c.dir.join(name);
    let mut args = vec!["leave", "--data-dir", dir.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    cli(&c.config, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leaves_running_or_stopped_and_a_manager_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(dir.path());
    // Another /16 than the other multi-process tests of this process.
    c.net = c.net.wrapping_add(4);
    c.form(1, 1).await;
    let secs = unique_sleep(91);
    let argv = ["sleep", secs.as_str()];
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
    wait_for(T, "tasks of web running on both nodes", || async {
        let running = c.running("web").await;
        let on_w1 = running
            .iter()
            .filter(|t| t.node_id.as_deref() == Some(w1.meta.id.as_str()))
            .count();
        (running.len() == 4 && on_w1 > 0 && on_w1 < 4).then_some(())
    })
    .await;

    // The manager refuses without --force, and nothing changes.
    let (ok, _, err) = leave(&c, "m1", false);
    assert!(!ok);
    assert!(err.contains("--force") && err.contains("manager"), "{err}");
    assert!(dir.path().join("m1/node/identity.json").exists());

    // The running worker leaves: its process ends by itself, its tasks are
    // stopped, its state is gone, and the cluster shows it down.
    let (ok, out, err) = leave(&c, "w1", false);
    assert!(ok, "{out}{err}");
    let deadline = Instant::now() + T;
    let status = loop {
        let p = c.procs.iter_mut().find(|p| p.name == "w1").unwrap();
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "w1 did not exit after leaving");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{}", c.log("w1"));
    assert!(!dir.path().join("w1/node/identity.json").exists());
    assert!(!dir.path().join("w1/exec").exists());
    wait_for(T, "w1 down and its tasks running on m1", || async {
        let down = c
            .node("w1")
            .await
            .is_some_and(|n| n.status.state == NodeState::Down);
        let running = c.running("web").await;
        let moved = running.len() == 4
            && running
                .iter()
                .all(|t| t.node_id.as_deref() != Some(w1.meta.id.as_str()));
        (down && moved).then_some(())
    })
    .await;
    assert_eq!(
        pids_running(&argv).len(),
        4,
        "w1's task processes outlived it"
    );
    let (ok, _, err) = c.cli(&["node", "rm", "w1"]).await;
    assert!(ok, "{err}");

    // The data dir joins again, as a new node.
    let (ok, token, err) = c.cli(&["join-token", "--quiet", "worker"]).await;
    assert!(ok, "{err}");
    c.procs.retain(|p| p.name != "w1");
    let (ip, join) = (c.ip(21), format!("{}:7377", c.ip(11)));
    c.spawn(
        "w1",
        &[
            "join",
            "--token",
            token.trim(),
            "--advertise-addr",
            &ip,
            &join,
        ],
    );
    let again = wait_for(T, "w1 back as a new node", || async {
        c.node("w1")
            .await
            .filter(|n| n.status.state == NodeState::Ready)
    })
    .await;
    assert_ne!(again.meta.id, w1.meta.id);
    let (ok, _, err) = c.cli(&["service", "scale", "-d", "web=6"]).await;
    assert!(ok, "{err}");
    wait_for(T, "a task of web on the new w1", || async {
        c.running("web")
            .await
            .iter()
            .any(|t| t.node_id.as_deref() == Some(again.meta.id.as_str()))
            .then_some(())
    })
    .await;

    // Killed with -9, its tasks go on running; leaving in place stops them.
    c.kill_9("w1");
    let (ok, out, err) = leave(&c, "w1", false);
    assert!(ok, "{out}{err}");
    assert!(out.contains("not running"), "{out}");
    assert!(!dir.path().join("w1/node/identity.json").exists());
    wait_for(T, "only m1's tasks left running", || async {
        let on_m1 = c
            .running("web")
            .await
            .iter()
            .filter(|t| t.node_id.as_deref() != Some(again.meta.id.as_str()))
            .count();
        // Every process of web is on m1 now: none was left behind by w1.
        (pids_running(&argv).len() == on_m1).then_some(())
    })
    .await;
    let _ = c.cli(&["service", "rm", "web"]).await;
}
