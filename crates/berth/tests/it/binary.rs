//! The real binary, as a user runs it: `berth up` in the foreground, the CLI
//! from another process, kill -9 and a restart on the same data dir.

use crate::support::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

struct Up {
    child: Child,
    /// Kills what the node left running if the test fails; `None` once the
    /// test wants the tasks to outlive this process (the kill -9 case).
    reaper: Option<TaskReaper>,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn up(data: &std::path::Path, config: &std::path::Path, port: u16) -> Up {
    let child = Command::new(berth_bin())
        .args(["up", "--data-dir"])
        .arg(data)
        .args(["--api-addr", &format!("127.0.0.1:{port}"), "--log", "warn"])
        .env("BERTH_CONFIG_DIR", config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start berth up");
    Up {
        child,
        reaper: Some(TaskReaper(data.to_path_buf())),
    }
}

async fn wait_ready(config: &std::path::Path) {
    wait_for(T, "berth up to answer", || async {
        let (ok, _, _) = cli_async(config, &["node", "ls"]).await;
        ok.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_state_and_never_doubles_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let port = free_port();
    let secs = unique_sleep(3);
    let argv = ["sleep", secs.as_str()];

    let mut node = up(&data, &config, port);
    wait_ready(&config).await;
    let (ok, out, err) = cli_async(&config, &["node", "ls"]).await;
    assert!(ok && out.contains("Ready"), "{out}\n{err}");
    let (ok, out, err) = cli_async(
        &config,
        &[
            "service",
            "create",
            "--name",
            "durable",
            "--replicas",
            "3",
            "--",
            "sleep",
            &secs,
        ],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    let (ok, _, err) = cli_async(
        &config,
        &[
            "service", "create", "--name", "second", "-d", "--", "sleep", "1",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let before = pids_running(&argv);
    assert_eq!(before.len(), 3);

    // kill -9: the node dies at once; its task processes are supervised by
    // their shims and keep running.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    assert_eq!(pids_running(&argv), before, "tasks outlive a crashed node");

    let _node = {
        // The tasks must outlive this process: the restarted node adopts them.
        std::mem::forget(node.reaper.take());
        drop(node);
        up(&data, &config, port)
    };
    wait_ready(&config).await;
    // Every acknowledged change is there.
    let (ok, out, _) = cli_async(&config, &["service", "ls"]).await;
    assert!(
        ok && out.contains("durable") && out.contains("second"),
        "{out}"
    );
    // The tasks are reconciled: the same three processes, adopted, none doubled.
    wait_for(T, "3 running tasks after the restart", || async {
        let (ok, out, _) = cli_async(&config, &["service", "ls", "--format", "json"]).await;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let durable = v
            .as_array()?
            .iter()
            .find(|s| s["spec"]["name"] == "durable")?;
        (ok && durable["service_status"]["running_tasks"] == 3).then_some(())
    })
    .await;
    assert_eq!(
        pids_running(&argv),
        before,
        "the same processes were adopted, none started twice"
    );

    // Ctrl-C stops the node and its tasks: nothing is orphaned.
    let mut node = _node;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for(T, "berth up to exit after SIGINT", || {
        let s = node.child.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(status.success(), "berth up exited with {status}");
    assert!(
        pids_running(&argv).is_empty(),
        "no task outlives a clean stop"
    );

    // Started again after a clean stop, the node brings its services back, as
    // Docker does after a daemon restart.
    let _node = up(&data, &config, port);
    wait_ready(&config).await;
    wait_for(
        T,
        "the 3 replicas to run again after a clean restart",
        || async { (pids_running(&argv).len() == 3).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let _first = up(&data, &config, free_port());
    wait_ready(&config).await;
    let out = Command::new(berth_bin())
        .args(["up", "--data-dir"])
        .arg(&data)
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port())])
        .env("BERTH_CONFIG_DIR", dir.path().join("other-config"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another berth node is running"), "{err}");
}

#[test]
fn cli_without_credentials_says_where_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(dir.path(), &["service", "ls"]);
    assert!(!ok);
    assert!(err.contains("berth up"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_tasks_even_when_the_output_is_gone() {
    // As with `berth up | tee log` in a terminal: Ctrl-C ends the reader too,
    // and the node must still stop its tasks cleanly.
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("config"));
    let secs = unique_sleep(4);
    let argv = ["sleep", secs.as_str()];
    let mut child = Command::new(berth_bin())
        .args(["up", "--data-dir"])
        .arg(&data)
        .args([
            "--api-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--log",
            "warn",
        ])
        .env("BERTH_CONFIG_DIR", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _reaper = TaskReaper(data.clone());
    wait_ready(&config).await;
    let (ok, _, err) = cli_async(
        &config,
        &[
            "service",
            "create",
            "--name",
            "s",
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
    wait_for(T, "2 task processes", || async {
        (pids_running(&argv).len() == 2).then_some(())
    })
    .await;

    drop(child.stdout.take());
    drop(child.stderr.take());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_for(T, "berth up to exit", || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(status.success(), "berth up exited with {status}");
    assert!(pids_running(&argv).is_empty(), "tasks outlived the node");
}
