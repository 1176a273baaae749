//! The harness of the multi-process tests: a cluster of real `berth`
//! processes on 127.N.0.x (one /16 per test, so tests never share addresses),
//! each node with its own data dir and log file, driven through the CLI.

use crate::support::*;
use api::{Node, NodeState, Task, TaskState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const T: Duration = Duration::from_secs(60);

/// One node's process; killed (not stopped) when dropped, so a failing test
/// leaves nothing behind (the reaper kills the tasks).
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// 127.N.0.0/16 of this test run, so runs never share addresses.
    pub net: u8,
    pub procs: Vec<Proc>,
    _reaper: TaskReaper,
}

impl Cluster {
    pub fn new(dir: &Path) -> Cluster {
        Cluster {
            dir: dir.to_path_buf(),
            config: dir.join("config"),
            net: 100 + (std::process::id() % 150) as u8,
            procs: Vec::new(),
            _reaper: TaskReaper(dir.to_path_buf()),
        }
    }

    pub fn ip(&self, host: u8) -> String {
        format!("127.{}.0.{host}", self.net)
    }

    pub fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(berth_bin())
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.join(name))
            .args(["--hostname", name])
            .env("BERTH_CONFIG_DIR", &self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push(Proc {
            name: name.into(),
            child,
        });
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn kill_9(&mut self, name: &str) {
        let i = self.procs.iter().position(|p| p.name == name).unwrap();
        let mut p = self.procs.remove(i);
        p.child.kill().unwrap();
        p.child.wait().unwrap();
    }

    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        cli_async(&self.config, args).await
    }

    pub async fn nodes(&self) -> Vec<Node> {
        let (ok, out, _) = self.cli(&["node", "ls", "--format", "json"]).await;
        if !ok {
            return Vec::new();
        }
        serde_json::from_str(&out).unwrap_or_default()
    }

    pub async fn wait_ready(&self, n: usize) {
        let what = format!("{n} ready nodes");
        wait_for(T, &what, || async {
            let nodes = self.nodes().await;
            (nodes
                .iter()
                .filter(|n| n.status.state == NodeState::Ready)
                .count()
                >= n)
                .then_some(())
        })
        .await;
    }

    /// Forms a cluster as on separate machines: `m1` runs `init` on .11,
    /// then `m2`… join with the manager token on .12…, and `w1`… with the
    /// worker token on .21…; returns once every node is ready. Returns the
    /// join address (m1's cluster RPC).
    pub async fn form(&mut self, managers: u8, workers: u8) -> String {
        let m1 = self.ip(11);
        self.spawn("m1", &["init", "--advertise-addr", &m1]);
        self.wait_ready(1).await;
        let join = format!("{m1}:7377");
        let token = |role: &'static str| {
            let c = &*self;
            async move {
                let (ok, out, err) = c.cli(&["join-token", "--quiet", role]).await;
                assert!(ok, "{err}");
                out.trim().to_string()
            }
        };
        let (manager_token, worker_token) = (token("manager").await, token("worker").await);
        for i in 2..=managers {
            let ip = self.ip(10 + i);
            let name = format!("m{i}");
            let args = [
                "join",
                "--token",
                &manager_token,
                "--advertise-addr",
                &ip,
                &join,
            ];
            self.spawn(&name, &args);
            // One at a time: each new manager is added to the Raft group
            // before the next asks.
            self.wait_ready(usize::from(i)).await;
        }
        for i in 1..=workers {
            let ip = self.ip(20 + i);
            let name = format!("w{i}");
            let args = [
                "join",
                "--token",
                &worker_token,
                "--advertise-addr",
                &ip,
                &join,
            ];
            self.spawn(&name, &args);
        }
        self.wait_ready(usize::from(managers + workers)).await;
        join
    }

    /// One small write through the CLI: a service of no replicas named
    /// `name`. Returns whether it was acknowledged, and the CLI's stderr.
    pub async fn write(&self, name: &str) -> (bool, String) {
        let (ok, _, err) = self
            .cli(&[
                "service",
                "create",
                "--name",
                name,
                "--replicas",
                "0",
                "-d",
                "--",
                "true",
            ])
            .await;
        (ok, err)
    }

    /// The node `name` (its hostname) as `node ls` shows it now.
    pub async fn node(&self, name: &str) -> Option<Node> {
        self.nodes()
            .await
            .into_iter()
            .find(|n| n.description.hostname == name)
    }

    /// The identity a node saved in its data dir.
    pub fn identity(&self, name: &str) -> berth::node::Identity {
        let path = self.dir.join(name).join("node/identity.json");
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    pub async fn running(&self, service: &str) -> Vec<Task> {
        let (ok, out, _) = self
            .cli(&["service", "ps", service, "--format", "json"])
            .await;
        if !ok {
            return Vec::new();
        }
        let tasks: Vec<Task> = serde_json::from_str(&out).unwrap_or_default();
        tasks
            .into_iter()
            .filter(|t| {
                t.desired_state == TaskState::Running && t.status.state == TaskState::Running
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Print every node's log tail when a test fails: the only witness.
        if std::thread::panicking() {
            for p in &self.procs {
                let log = self.log(&p.name);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} (last lines)", p.name);
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
