//! Node commands on an in-process node: labels and availability through the
//! CLI, a drain stopping the node's tasks and an activation restarting them,
//! and the refusals (demoting the last manager, removing a manager, a bad label).

use crate::support::*;
use api::{Availability, Node, Task, TaskState};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

async fn running(n: &TestNode, service: &str) -> usize {
    let tasks: Vec<Task> = n
        .client
        .get(&format!("/api/v1/tasks?service={service}"))
        .await
        .unwrap();
    tasks
        .iter()
        .filter(|t| t.desired_state == TaskState::Running && t.status.state == TaskState::Running)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_update_drain_and_refusals() {
    let n = TestNode::start().await;
    let dir = n.config_dir();
    let nodes: Vec<Node> = n.client.get("/api/v1/nodes").await.unwrap();
    let id = nodes[0].meta.id.clone();
    let host = nodes[0].description.hostname.clone();

    // Labels through the CLI, by hostname.
    let (ok, _, err) = cli_async(
        &dir,
        &[
            "node",
            "update",
            "--label-add",
            "zone=east",
            "--label-add",
            "ssd=yes",
            &host,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli_async(&dir, &["node", "update", "--label-rm", "ssd", &host]).await;
    assert!(ok, "{err}");
    let node: Node = n.client.get(&format!("/api/v1/nodes/{id}")).await.unwrap();
    assert_eq!(
        node.spec.labels.into_iter().collect::<Vec<_>>(),
        vec![("zone".to_string(), "east".to_string())]
    );

    // A service constrained to the label runs; draining the only node stops
    // its tasks (there is nowhere else to go) and `service ps` says why.
    let secs = unique_sleep(40);
    let (ok, _, err) = cli_async(
        &dir,
        &[
            "service",
            "create",
            "--name",
            "zoned",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.zone==east",
            "-d",
            "--",
            "sleep",
            &secs,
        ],
    )
    .await;
    assert!(ok, "{err}");
    wait_for(T, "2 tasks running", || async {
        (running(&n, "zoned").await == 2).then_some(())
    })
    .await;
    let (ok, _, err) = cli_async(&dir, &["node", "update", "--availability", "drain", &id]).await;
    assert!(ok, "{err}");
    let node: Node = n.client.get(&format!("/api/v1/nodes/{id}")).await.unwrap();
    assert_eq!(node.spec.availability, Availability::Drain);
    wait_for(T, "the drained node's processes to stop", || async {
        (pids_running(&["sleep", secs.as_str()]).is_empty()).then_some(())
    })
    .await;
    let (ok, out, _) = cli_async(&dir, &["service", "ps", "zoned"]).await;
    assert!(ok);
    assert!(out.contains("no suitable node"), "{out}");
    let (ok, _, err) = cli_async(&dir, &["node", "update", "--availability", "active", &id]).await;
    assert!(ok, "{err}");
    wait_for(T, "2 tasks running again", || async {
        (running(&n, "zoned").await == 2).then_some(())
    })
    .await;

    // Refusals, each with a clear message and nothing changed.
    let (ok, _, err) = cli_async(&dir, &["node", "demote", &id]).await;
    assert!(!ok);
    assert!(err.contains("last manager"), "{err}");
    let (ok, _, err) = cli_async(&dir, &["node", "rm", "--force", &id]).await;
    assert!(!ok);
    assert!(err.contains("is a manager"), "{err}");
    let (ok, _, err) = cli_async(&dir, &["node", "update", "--label-add", "bad key=1", &id]).await;
    assert!(!ok);
    assert!(err.contains("spec.labels"), "{err}");
    let (ok, _, err) =
        cli_async(&dir, &["node", "update", "--availability", "drain", "nope"]).await;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    let node: Node = n.client.get(&format!("/api/v1/nodes/{id}")).await.unwrap();
    assert_eq!(node.spec.availability, Availability::Active);
    assert_eq!(node.spec.role, api::NodeRole::Manager);

    let (ok, _, _) = cli_async(&dir, &["service", "rm", "zoned"]).await;
    assert!(ok);
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_moves_on_to_a_manager_it_can_reach() {
    let n = TestNode::start().await;
    // A port nobody listens on: bind one, then free it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut creds = n.creds().clone();
    creds.managers = vec![creds.host.clone()];
    creds.host = dead.to_string();
    let c = berth::client::Client::new(&creds).unwrap();
    let info: controller::wire::Info = c.get("/api/v1/info").await.unwrap();
    assert!(info.leader);
    assert_eq!(c.base(), format!("https://{}", n.creds().host));

    // With no manager reachable, the error names each address tried.
    creds.managers.clear();
    let c = berth::client::Client::new(&creds).unwrap();
    let err = c
        .get::<controller::wire::Info>("/api/v1/info")
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(&dead.to_string()), "{err:#}");
    n.node.shutdown().await.unwrap();
}
