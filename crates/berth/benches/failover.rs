//! Leader failover with the real binary: three managers formed with `berth
//! init` and `berth join` on 127.77.0.11-13; ten times, kill -9 the leader's
//! process and time the first write the CLI gets accepted (the CLI moves on
//! to a manager it can reach), then restart the killed manager (it resumes its
//! identity) and wait until all three are reachable again. Prints each time,
//! the median and the goal.
//!
//! Run: `cargo bench -p berth --bench failover` (builds the release profile).

// A benchmark program: an unwrap is a failed measurement.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const NET: &str = "127.77.0";
const GOAL: Duration = Duration::from_secs(1);

struct Bench {
    dir: PathBuf,
    config: PathBuf,
    procs: Vec<(String, Child)>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Bench {
    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
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
        self.procs.push((name.to_string(), child));
    }

    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_CONFIG_DIR", &self.config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn nodes(&self) -> Vec<api::Node> {
        let (ok, out) = self.cli(&["node", "ls", "--format", "json"]);
        if !ok {
            return Vec::new();
        }
        serde_json::from_str(&out).unwrap_or_default()
    }

    /// Waits until `n` managers are members and reachable, one of them leader.
    fn wait_managers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let nodes = self.nodes();
            let reachable = nodes
                .iter()
                .filter_map(|n| n.manager_status.as_ref())
                .filter(|m| m.reachability == "reachable")
                .count();
            let leaders = nodes
                .iter()
                .filter(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
                .count();
            if reachable >= n && leaders == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} reachable managers not seen within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The leader, once every manager's own view names the same one (a
    /// manager that has just restarted may still name a stale leader: killing
    /// a follower by mistake would time nothing).
    fn leader(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let views: Vec<Option<String>> = [11, 12, 13]
                .iter()
                .map(|h| {
                    let host = format!("{}:7443", ip(*h));
                    let (ok, out) = self.cli(&["--host", &host, "node", "ls", "--format", "json"]);
                    let nodes: Vec<api::Node> = if ok {
                        serde_json::from_str(&out).unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    nodes
                        .into_iter()
                        .find(|n| n.manager_status.as_ref().is_some_and(|m| m.leader))
                        .map(|n| n.description.hostname)
                })
                .collect();
            if let Some(Some(first)) = views.first() {
                if views.iter().all(|v| v.as_deref() == Some(first.as_str())) {
                    return first.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the managers do not agree on a leader: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ip(host: u8) -> String {
    format!("{NET}.{host}")
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bench {
        dir: dir.path().to_path_buf(),
        config: dir.path().join("config"),
        procs: Vec::new(),
    };
    b.spawn("m1", &["init", "--advertise-addr", &ip(11)]);
    b.wait_managers(1);
    let (ok, token) = b.cli(&["join-token", "--quiet", "manager"]);
    assert!(ok);
    let join = format!("{}:7377", ip(11));
    let args = |name: &str| -> Vec<String> {
        let host = match name {
            "m1" => 11,
            "m2" => 12,
            _ => 13,
        };
        if name == "m1" {
            vec!["init".into(), "--advertise-addr".into(), ip(host)]
        } else {
            vec![
                "join".into(),
                "--token".into(),
                token.trim().to_string(),
                "--advertise-addr".into(),
                ip(host),
                join.clone(),
            ]
        }
    };
    for (i, name) in ["m2", "m3"].iter().enumerate() {
        let a = args(name);
        b.spawn(name, &a.iter().map(String::as_str).collect::<Vec<_>>());
        b.wait_managers(2 + i);
    }
    let (ok, _) = b.cli(&[
        "service",
        "create",
        "--name",
        "probe",
        "--replicas",
        "0",
        "-d",
        "--",
        "true",
    ]);
    assert!(ok);

    let mut times = Vec::new();
    for run in 1..=RUNS {
        let leader = b.leader();
        let i = b.procs.iter().position(|(n, _)| *n == leader).unwrap();
        let (_, mut child) = b.procs.remove(i);
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        let replicas = (run % 2).to_string();
        loop {
            let (ok, _) = b.cli(&["service", "scale", "-d", &format!("probe={replicas}")]);
            if ok {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "no write accepted"
            );
        }
        let t = killed.elapsed();
        println!("run {run:2}: leader {leader} killed → write accepted in {t:?}");
        times.push(t);
        let a = args(&leader);
        b.spawn(&leader, &a.iter().map(String::as_str).collect::<Vec<_>>());
        b.wait_managers(3);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "leader kill -9 → first write accepted through another manager (real binary, CLI included): \
         median of {RUNS} {median:?} (min {:?}, max {:?}); goal ≤ {GOAL:?}; SwarmKit's defaults 10–20 s",
        times[0],
        times[times.len() - 1]
    );
}
