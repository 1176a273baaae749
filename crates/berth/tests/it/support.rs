//! Helpers shared by the end-to-end tests: starting a node, calling the API
//! and the CLI, waiting on conditions, finding a test's processes.

use berth::client::Client;
use berth::node::{Membership, Node, NodeAddrs, NodeConfig};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

pub struct TestNode {
    pub node: Node,
    pub client: Client,
    _reaper: TaskReaper,
    pub dir: tempfile::TempDir,
}

/// Kills every task process (and its shim) whose shim works under `dir`: a
/// test that fails drops its node without a clean stop, which leaves tasks
/// running by design (as after kill -9); this keeps them from outliving the test.
pub fn kill_tasks_under(dir: &Path) {
    let needle = dir.as_os_str().as_encoded_bytes();
    if needle.len() < 8 {
        return; // never match broadly
    }
    let mut shims = vec![];
    let mut parents = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.windows(needle.len()).any(|w| w == needle) && cmd.windows(4).any(|w| w == b"shim") {
            shims.push(pid);
        }
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok())
            });
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    for (pid, ppid) in parents {
        if shims.contains(&ppid) {
            // Each task leads its own process group.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    for shim in shims {
        let _ = kill(Pid::from_raw(shim), Signal::SIGKILL);
    }
}

/// Kills the tasks under its directory when dropped (see [`kill_tasks_under`]).
pub struct TaskReaper(pub PathBuf);

impl Drop for TaskReaper {
    fn drop(&mut self) {
        kill_tasks_under(&self.0);
    }
}

impl TestNode {
    pub async fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(NodeConfig {
            data_dir: dir.path().join("data"),
            addrs: NodeAddrs::loopback("127.0.0.1:0".parse().unwrap()),
            hostname: Some("test-node".into()),
            shim: agent::ShimCommand {
                program: berth_bin(),
                args: vec!["shim".into()],
            },
            credentials_file: Some(dir.path().join("config/credentials.json")),
            admin_password: None,
            membership: Membership::Up,
        })
        .await
        .expect("node starts");
        let client = Client::new(node.credentials().unwrap()).unwrap();
        TestNode {
            node,
            client,
            _reaper: TaskReaper(dir.path().to_path_buf()),
            dir,
        }
    }

    /// The admin credential the node wrote.
    pub fn creds(&self) -> &berth::credentials::Credentials {
        self.node.credentials().unwrap()
    }

    pub fn store(&self) -> store::Store {
        self.node.store().unwrap()
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }
}

/// Waits until `check` returns Some, polling; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pids of live processes whose argv is exactly `argv`.
pub fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd == want && !is_zombie(pid) {
                pids.push(pid);
            }
        }
    }
    pids.sort();
    pids
}

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A sleep duration no other test uses, so a test can count its own processes.
pub fn unique_sleep(seed: u32) -> String {
    format!("{}", 100_000 + seed * 1000 + std::process::id() % 1000)
}

/// Runs the berth CLI with the given config dir; returns (success, stdout, stderr).
pub fn cli(config_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(berth_bin())
        .args(args)
        .env("BERTH_CONFIG_DIR", config_dir)
        .env_remove("BERTH_HOST")
        .env_remove("BERTH_TOKEN")
        .output()
        .expect("run berth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Async wrapper so the CLI does not block the runtime that serves it.
pub async fn cli_async(config_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = config_dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, &a)
    })
    .await
    .unwrap()
}
