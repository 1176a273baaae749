//! Worker death → its tasks running elsewhere, with the real binary: three
//! managers and two workers formed with `berth init` and `berth join` on
//! 127.78.0.11-13 and .21-22, the managers drained so that a service's tasks
//! run on the workers only. Ten times: kill -9 the worker that runs the
//! service's tasks and time until every one of them runs on the other
//! worker (as the CLI sees it), then restart the killed worker (it resumes
//! its identity) and wait until the cluster is calm again (every node
//! ready with no suspicion noted, and every manager's gossip sees the new
//! run of the worker alive). Prints each time with the status message the
//! node was marked down with (which signals did it), the median and the
//! goal, and the false suspicions the nodes' gossip raised against live
//! nodes during the whole run.
//!
//! Run: `cargo bench -p berth --bench worker_death` (builds the release profile).

// A benchmark program: an unwrap is a failed measurement.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;
const NET: &str = "127.78.0";
const GOAL: Duration = Duration::from_secs(3);
const REPLICAS: usize = 4;
const WAIT: Duration = Duration::from_secs(60);

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
        // The tasks' shims outlive a killed node by design: end the ones
        // this bench's nodes started, by the pids they recorded.
        for (pid, group) in task_pids(&self.dir) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = if group {
                nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL)
            } else {
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL)
            };
        }
    }
}

/// The live processes the nodes' exec drivers recorded: each task's
/// process group (`true`) and its shim (`false`).
fn task_pids(dir: &std::path::Path) -> Vec<(i32, bool)> {
    let mut pids = Vec::new();
    for node in ["m1", "m2", "m3", "w1", "w2"] {
        let tasks = dir.join(node).join("exec/tasks");
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            for (file, group) in [("task.pid", true), ("shim.pid", false)] {
                if let Some(pid) = recorded_pid(&task.path().join(file)) {
                    let alive =
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                    if alive {
                        pids.push((pid, group));
                    }
                }
            }
        }
    }
    pids
}

/// The pid in an exec driver's pid file (`{"pid": …, "start_time": …}`).
fn recorded_pid(path: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    i32::try_from(v.get("pid")?.as_u64()?)
        .ok()
        .filter(|p| *p > 1)
}

impl Bench {
    fn spawn(&mut self, name: &str, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
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

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// A node's log as text, without the colours the logger may add.
    fn log(&self, name: &str) -> String {
        strip_ansi(&std::fs::read_to_string(self.log_path(name)).unwrap_or_default())
    }

    fn kill_9(&mut self, name: &str) -> Instant {
        let i = self.procs.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.procs.remove(i);
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        killed
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

    fn running(&self) -> Vec<api::Task> {
        let (ok, out) = self.cli(&["service", "ps", "web", "--format", "json"]);
        if !ok {
            return Vec::new();
        }
        let tasks: Vec<api::Task> = serde_json::from_str(&out).unwrap_or_default();
        tasks
            .into_iter()
            .filter(|t| {
                t.desired_state == api::TaskState::Running
                    && t.status.state == api::TaskState::Running
            })
            .collect()
    }

    /// Waits until `ok` holds, polling; panics with `what` after [`WAIT`].
    fn wait(&self, what: &str, mut ok: impl FnMut(&Bench) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok(self) {
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&self, n: usize) {
        self.wait(&format!("{n} ready nodes"), |b| {
            b.nodes()
                .iter()
                .filter(|n| n.status.state == api::NodeState::Ready)
                .count()
                >= n
        });
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ip(host: u8) -> String {
    format!("{NET}.{host}")
}

/// The node ids gossip raised a suspicion (or a down) against, with how
/// many times, from one node's log; the bridge logs every change it sees.
fn gossip_verdicts(log: &str) -> Vec<(String, &'static str)> {
    log.lines()
        .filter(|l| l.contains(" gossip node="))
        .filter_map(|l| {
            let id = l.split(" node=").nth(1)?.split_whitespace().next()?;
            let state = if l.contains("state=Suspect") {
                "suspect"
            } else if l.contains("state=Down") {
                "down"
            } else {
                return None;
            };
            Some((id.to_string(), state))
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Bench {
        dir: dir.path().to_path_buf(),
        config: dir.path().join("config"),
        procs: Vec::new(),
    };
    b.spawn("m1", &["init".into(), "--advertise-addr".into(), ip(11)]);
    b.wait_ready(1);
    let token = |b: &Bench, role: &str| {
        let (ok, token) = b.cli(&["join-token", "--quiet", role]);
        assert!(ok);
        token.trim().to_string()
    };
    let (manager_token, worker_token) = (token(&b, "manager"), token(&b, "worker"));
    let join = format!("{}:7377", ip(11));
    let args = |token: &str, host: u8| -> Vec<String> {
        vec![
            "join".into(),
            "--token".into(),
            token.to_string(),
            "--advertise-addr".into(),
            ip(host),
            join.clone(),
        ]
    };
    for (i, name) in ["m2", "m3"].iter().enumerate() {
        b.spawn(name, &args(&manager_token, 12 + i as u8));
        b.wait_ready(2 + i);
    }
    let worker_args = |name: &str| args(&worker_token, if name == "w1" { 21 } else { 22 });
    for name in ["w1", "w2"] {
        b.spawn(name, &worker_args(name));
    }
    b.wait_ready(5);
    for m in ["m1", "m2", "m3"] {
        let (ok, _) = b.cli(&["node", "update", "--availability", "drain", m]);
        assert!(ok, "draining {m}");
    }
    let replicas = REPLICAS.to_string();
    let (ok, _) = b.cli(&[
        "service",
        "create",
        "--name",
        "web",
        "--replicas",
        &replicas,
        "-d",
        "--",
        "sleep",
        "100000",
    ]);
    assert!(ok);
    b.wait("the service's tasks running", |b| {
        b.running().len() == REPLICAS
    });

    let mut times = Vec::new();
    for run in 1..=RUNS {
        let nodes = b.nodes();
        let id_of = |name: &str| {
            nodes
                .iter()
                .find(|n| n.description.hostname == name)
                .map(|n| n.meta.id.clone())
                .unwrap()
        };
        // The worker that runs the tasks (all of them, after a previous run).
        let running = b.running();
        let victim = ["w1", "w2"]
            .into_iter()
            .max_by_key(|w| {
                let id = id_of(w);
                running
                    .iter()
                    .filter(|t| t.node_id.as_deref() == Some(id.as_str()))
                    .count()
            })
            .unwrap();
        let victim_id = id_of(victim);
        let on_victim = running
            .iter()
            .filter(|t| t.node_id.as_deref() == Some(victim_id.as_str()))
            .count();

        let killed_at = std::time::SystemTime::now();
        let killed = b.kill_9(victim);
        let deadline = killed + WAIT;
        let elapsed = loop {
            let running = b.running();
            if running.len() == REPLICAS
                && running
                    .iter()
                    .all(|t| t.node_id.as_deref() != Some(victim_id.as_str()))
            {
                break killed.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: {victim}'s tasks not running elsewhere within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let message = b
            .nodes()
            .into_iter()
            .find(|n| n.meta.id == victim_id)
            .map(|n| format!("{:?}: {}", n.status.state, n.status.message))
            .unwrap_or_default();
        // When the leader marked it down, from its log: the detection, apart
        // from the reschedule that follows.
        let marked = ["m1", "m2", "m3"]
            .iter()
            .filter_map(|m| marked_down_at(&b.log(m), &victim_id, killed_at))
            .min()
            .map_or("?".to_string(), |d| format!("{d:?}"));
        println!(
            "run {run:2}: {victim} killed with {on_victim} tasks → marked down after {marked}, all \
             {REPLICAS} running elsewhere in {elapsed:?} ({message})"
        );
        times.push(elapsed);

        // Restart it and wait for calm: every node ready with no note, and
        // every manager's gossip seeing the new run alive.
        let seen_before: Vec<usize> = ["m1", "m2", "m3"]
            .iter()
            .map(|m| alive_lines(&b.log(m), &victim_id))
            .collect();
        b.spawn(victim, &worker_args(victim));
        let calm = |b: &Bench| {
            let nodes = b.nodes();
            let unsettled: Vec<String> = nodes
                .iter()
                .filter(|n| n.status.state != api::NodeState::Ready || !n.status.message.is_empty())
                .map(|n| {
                    format!(
                        "{} {:?} {:?}",
                        n.description.hostname, n.status.state, n.status.message
                    )
                })
                .collect();
            let unaware: Vec<&str> = ["m1", "m2", "m3"]
                .iter()
                .zip(&seen_before)
                .filter(|(m, before)| alive_lines(&b.log(m), &victim_id) <= **before)
                .map(|(m, _)| *m)
                .collect();
            let running = b.running().len();
            (nodes.len() == 5 && unsettled.is_empty() && unaware.is_empty() && running == REPLICAS)
                .then_some(())
                .ok_or(format!(
                    "{} nodes; unsettled {unsettled:?}; gossip of {unaware:?} not seeing the new run alive; {running} tasks running",
                    nodes.len()
                ))
        };
        let deadline = Instant::now() + WAIT;
        loop {
            match calm(&b) {
                Ok(()) => break,
                Err(why) if Instant::now() > deadline => {
                    panic!("{victim} back and the cluster calm: not within {WAIT:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    // Gossip's verdicts against nodes that were alive at the time: every
    // suspect or down line about a node other than the one just killed.
    // The victims' own downs are expected; their suspicions before the down
    // too. Counted across all five nodes' logs.
    let victims: Vec<String> = b
        .nodes()
        .iter()
        .filter(|n| n.description.hostname.starts_with('w'))
        .map(|n| n.meta.id.clone())
        .collect();
    let mut false_suspect = 0;
    let mut false_down = 0;
    for name in ["m1", "m2", "m3", "w1", "w2"] {
        for (id, state) in gossip_verdicts(&b.log(name)) {
            if victims.contains(&id) {
                continue;
            }
            match state {
                "suspect" => false_suspect += 1,
                _ => false_down += 1,
            }
        }
    }
    let notes: usize = ["m1", "m2", "m3"]
        .iter()
        .map(|m| {
            b.log(m)
                .lines()
                .filter(|l| l.contains("node still ready, but"))
                .filter(|l| !victims.iter().any(|v| l.contains(&format!("node={v}"))))
                .count()
        })
        .sum();

    // A clean end: the service's tasks stop before the nodes are killed.
    let (ok, _) = b.cli(&["service", "rm", "web"]);
    assert!(ok, "removing the service");
    b.wait("the service's tasks stopped", |b| {
        task_pids(&b.dir).is_empty()
    });

    times.sort();
    let median = times[times.len() / 2];
    println!(
        "worker kill -9 → all its tasks running elsewhere (real binary, CLI included): \
         median of {RUNS} {median:?} (min {:?}, max {:?}); goal ≤ {GOAL:?}; SwarmKit ≈ 20 s",
        times[0],
        times[times.len() - 1]
    );
    println!(
        "false alarms against the managers (never killed) over the whole run: {false_suspect} \
         gossip suspicions and {false_down} gossip downs seen by any node, {notes} suspicion notes \
         written by a leader's dispatcher"
    );
}

/// How long after `killed` a manager's log says it marked `id` down (the
/// first such line after the kill), by the line's timestamp.
fn marked_down_at(log: &str, id: &str, killed: std::time::SystemTime) -> Option<Duration> {
    let node = format!("node={id}");
    log.lines()
        .filter(|l| l.contains("node marked down") && l.contains(&node))
        .filter_map(|l| {
            humantime::parse_rfc3339_weak(l.split_whitespace().next()?.trim_end_matches('Z')).ok()
        })
        .filter_map(|at| at.duration_since(killed).ok())
        .min()
}

/// How many times a node's log shows gossip seeing `id` alive.
fn alive_lines(log: &str, id: &str) -> usize {
    let needle = format!(" node={id} state=Alive");
    log.matches(&needle).count()
}
