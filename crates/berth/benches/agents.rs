//! A leader with 1,000 agents: the CPU and memory of the real binary's
//! leader while 1,000 simulated nodes keep their sessions alive.
//!
//! `berth init` (the release binary) runs on 127.76.0.1 in a temporary
//! directory; the worker join token comes from the CLI (`berth join-token
//! --quiet worker`); 1,000 node identities are made through the real join
//! RPC (`NodeCa/IssueNodeCertificate`, after checking the manager's root
//! against the token, as `berth join` does), each with its own key and
//! certificate. Then 1,000 lightweight agents run in this process, each a
//! real client of the cluster RPC over mutual TLS with its own certificate,
//! doing what a node's agent and cluster follower do on the wire: register
//! with the dispatcher, keep the assignments stream open (through
//! `agent::remote::RemoteDispatcher`, as the real agent does), heartbeat at
//! the period the dispatcher gives, and keep a `NodeCa/WatchCluster` stream
//! open. No tasks run, and the agents take no part in gossip (UDP SWIM):
//! this measures the sessions alone, not the leader's share of gossip.
//!
//! The leader's CPU (utime + stime from /proc/PID/stat) and memory (VmRSS
//! from /proc/PID/status) are printed for each phase: idle before any
//! agent, the joins, the registration burst (until every agent has its first
//! assignment set), a settling window, and the steady state (60 s by
//! default). Then `berth node ls --format json` must show every agent Ready;
//! any agent told its session was invalid (what a node marked down hears),
//! any failed heartbeat, and any node not Ready are reported, and make the
//! program fail.
//!
//! Run: `cargo bench -p berth --bench agents` (builds the release profile).
//! `BERTH_BENCH_AGENTS` (default 1000) and `BERTH_BENCH_SECONDS` (the steady
//! window, default 60) change the size and the length.
//! `BERTH_BENCH_LEADER_WRAPPER` runs the leader under a profiler (words
//! split on whitespace and put before the binary, e.g. `heaptrack -o
//! /tmp/leader` or `valgrind --tool=massif`): the figures are then of the
//! leader under the profiler (the process found under the wrapper that runs
//! `init`), and the leader is killed (SIGKILL) at the end before the agents
//! stop, so that a heap profiler's record shows what was live then.

// A benchmark program: an unwrap is a failed measurement.
#![allow(clippy::unwrap_used)]

use agent::remote::RemoteDispatcher;
use api::dispatch::{DispatchError, Dispatcher, Session};
use api::rpc::node::node_ca_client::NodeCaClient;
use api::rpc::node::{GetRootCaRequest, IssueNodeCertificateRequest, WatchClusterRequest};
use api::rpc::Connector;
use api::{NodeDescription, NodeState};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

const LEADER_IP: &str = "127.76.0.1";
const RPC_PORT: u16 = 7377;
const IDLE: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(10);
const DEFAULT_STEADY: Duration = Duration::from_secs(60);
/// Joins in flight at once.
const JOIN_CONCURRENCY: usize = 16;
/// How long one agent's assignments long-poll waits (the agent's default).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the leader's RSS is sampled during the steady window.
const TREND_EVERY: Duration = Duration::from_secs(10);
/// Bound of every wait for a phase to complete.
const WAIT: Duration = Duration::from_secs(180);

struct Leader {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Leader {
    /// Kills the leader (SIGKILL) and waits for the child. The leader
    /// itself, not a wrapper around it: a profiler wrapping it must live on
    /// to write its record.
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.pid();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            if pid != self.child.id() {
                // Let the wrapper finish its record, within bounds.
                let deadline = Instant::now() + WAIT;
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The leader's process: the child, or under a wrapper the deepest
    /// process below it that runs `init`.
    fn pid(&self) -> u32 {
        let mut pid = self.child.id();
        // Bounded: a process tree is not deeper than this here.
        for _ in 0..8 {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let next = children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .find(|c| {
                    std::fs::read(format!("/proc/{c}/cmdline"))
                        .map(|argv| argv.split(|b| *b == 0).any(|a| a == b"init"))
                        .unwrap_or(false)
                });
            match next {
                Some(c) => pid = c,
                None => break,
            }
        }
        pid
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

    fn nodes(&self) -> Option<Vec<api::Node>> {
        let (ok, out) = self.cli(&["node", "ls", "--format", "json"]);
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(nodes) = self.nodes() {
                if nodes.iter().any(|n| {
                    n.status.state == NodeState::Ready
                        && n.manager_status.as_ref().is_some_and(|m| m.leader)
                }) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the leader was not ready within 60 s; see {}",
                self.dir.join("leader.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What /proc says of a process at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    /// utime + stime, in clock ticks.
    ticks: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn sample(pid: &str) -> Sample {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are fields 14 and 15 of the line.
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        at: Instant::now(),
        ticks,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One row of the report: CPU over [from, to] in % of one core.
fn report(phase: &str, from: Sample, to: Sample, me_from: Sample, me_to: Sample, hz: f64) {
    let secs = (to.at - from.at).as_secs_f64();
    let cpu = (to.ticks - from.ticks) as f64 / hz;
    let me = (me_to.ticks - me_from.ticks) as f64 / hz;
    println!(
        "| {phase} | {secs:.1} s | {:.1} % ({cpu:.2} s) | {:.1} MB | {:.1} % |",
        100.0 * cpu / secs,
        to.rss_kb as f64 / 1024.0,
        100.0 * me / secs,
    );
}

/// A node made through the join RPC, ready to be an agent.
struct Joined {
    node_id: String,
    connector: Arc<dyn Connector>,
}

/// Makes `n` worker identities through `NodeCa/IssueNodeCertificate`, as
/// `berth join` does: the root CA fetched over an unverified connection and
/// checked against the token, then the token and a CSR sent over a
/// connection that trusts that root only.
async fn join_all(token: &str, manager: &str, n: usize) -> Vec<Joined> {
    use std::str::FromStr;
    let parsed = ca::JoinToken::from_str(token).unwrap();
    let (bootstrap, seen) = ca::bootstrap_client_config().unwrap();
    let channel = ca::MtlsConnector::new(bootstrap).channel(manager).unwrap();
    let root_pem = NodeCaClient::new(channel)
        .get_root_ca(GetRootCaRequest {})
        .await
        .unwrap()
        .into_inner()
        .trust_pem;
    let presented = seen.latest().unwrap();
    let (trust, manager_peer) =
        ca::verify_bootstrap_root(&parsed, &root_pem, &presented, SystemTime::now()).unwrap();
    let verified = ca::client_config(
        None,
        &trust,
        ca::ExpectedPeer::manager(&manager_peer.cluster_id),
    )
    .unwrap();
    let channel = ca::MtlsConnector::new(verified).channel(manager).unwrap();
    let trust = Arc::new(trust);
    let cluster_id = manager_peer.cluster_id.clone();
    let permits = Arc::new(tokio::sync::Semaphore::new(JOIN_CONCURRENCY));
    let mut handles = Vec::new();
    for i in 0..n {
        let (channel, token, trust, cluster_id, permits) = (
            channel.clone(),
            token.to_string(),
            trust.clone(),
            cluster_id.clone(),
            permits.clone(),
        );
        handles.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            let key = ca::NodeKey::generate().unwrap();
            // Addresses of hosts that do not exist: these nodes serve
            // nothing (a worker serves no RPC, and gossip is not started).
            let host = format!("127.76.{}.{}", 1 + i / 250, 1 + i % 250);
            let cert = NodeCaClient::new(channel)
                .issue_node_certificate(IssueNodeCertificateRequest {
                    token,
                    csr_pem: key.csr_pem().unwrap(),
                    hostname: agent_name(i),
                    rpc_addr: format!("{host}:{RPC_PORT}"),
                    gossip_addr: format!("{host}:7946"),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(cert.role, "worker");
            let identity = ca::NodeIdentity::from_pem(&cert.cert_pem, &key.key_pem()).unwrap();
            let tls = ca::client_config(
                Some(&identity),
                &trust,
                ca::ExpectedPeer::manager(&cluster_id),
            )
            .unwrap();
            Joined {
                node_id: cert.node_id,
                connector: Arc::new(ca::MtlsConnector::new(tls)),
            }
        }));
    }
    let mut joined = Vec::new();
    for h in handles {
        joined.push(h.await.unwrap());
    }
    joined
}

fn agent_name(i: usize) -> String {
    format!("agent-{i:04}")
}

/// What the agents saw, all together.
#[derive(Default)]
struct Counters {
    registered: AtomicU64,
    /// Agents that received their first complete assignment set.
    established: AtomicU64,
    registration_retries: AtomicU64,
    heartbeats: AtomicU64,
    heartbeat_errors: AtomicU64,
    /// `InvalidSession` from a heartbeat or the assignments feed: the
    /// dispatcher forgot the session (as when it marks the node down).
    invalid_sessions: AtomicU64,
    assignment_errors: AtomicU64,
    watch_messages: AtomicU64,
    watch_errors: AtomicU64,
}

async fn register(
    d: &RemoteDispatcher,
    node_id: &str,
    i: usize,
    counters: &Counters,
) -> Result<Session, DispatchError> {
    let description = NodeDescription {
        hostname: agent_name(i),
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
        resources: Default::default(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let deadline = Instant::now() + WAIT;
    loop {
        match d
            .register(Some(node_id.to_string()), description.clone())
            .await
        {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                counters
                    .registration_retries
                    .fetch_add(1, Ordering::Relaxed);
                eprintln!("agent {i}: registration failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One agent: its session with the dispatcher and its cluster follower's
/// stream, until `stop` turns true.
async fn run_agent(
    i: usize,
    node: Joined,
    leader: String,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let watch_channel = node.connector.channel(&leader).unwrap();
    let d = RemoteDispatcher::new(node.connector.clone(), vec![leader.clone()]);
    let Ok(mut session) = register(&d, &node.node_id, i, &counters).await else {
        eprintln!("agent {i}: gave up registering");
        return;
    };
    counters.registered.fetch_add(1, Ordering::Relaxed);

    let follower = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut client = NodeCaClient::new(watch_channel);
            match client.watch_cluster(WatchClusterRequest {}).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => {
                                counters.watch_messages.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(None) => break,
                            Err(_) => {
                                counters.watch_errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                Err(_) => {
                    counters.watch_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut after = None;
    let mut beat = tokio::time::interval(session.heartbeat_period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await; // the first tick is immediate: registering was the first sign of life
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = beat.tick() => match d.heartbeat(&session).await {
                Ok(()) => {
                    counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                }
                Err(DispatchError::InvalidSession(why)) => {
                    counters.invalid_sessions.fetch_add(1, Ordering::Relaxed);
                    eprintln!("agent {i}: heartbeat: invalid session: {why}");
                    match register(&d, &node.node_id, i, &counters).await {
                        Ok(s) => session = s,
                        Err(_) => break,
                    }
                }
                Err(e) => {
                    counters.heartbeat_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("agent {i}: heartbeat failed: {e}");
                }
            },
            set = d.assignments(&session, after, POLL_TIMEOUT) => match set {
                Ok(set) => {
                    if after.is_none() {
                        counters.established.fetch_add(1, Ordering::Relaxed);
                    }
                    after = Some(set.index);
                }
                Err(DispatchError::InvalidSession(why)) => {
                    counters.invalid_sessions.fetch_add(1, Ordering::Relaxed);
                    eprintln!("agent {i}: assignments: invalid session: {why}");
                    match register(&d, &node.node_id, i, &counters).await {
                        Ok(s) => session = s,
                        Err(_) => break,
                    }
                }
                Err(e) => {
                    counters.assignment_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("agent {i}: assignments: {e}");
                    // The remote dispatcher backs off by itself; do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    follower.abort();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let agents: usize = std::env::var("BERTH_BENCH_AGENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let steady = std::env::var("BERTH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_STEADY);
    let hz = clock_ticks_per_second();
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("leader.log")).unwrap();
    let config = dir.path().join("config");
    let wrapper: Vec<String> = std::env::var("BERTH_BENCH_LEADER_WRAPPER")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_berth"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_berth")),
    };
    let child = command
        .args([
            "init",
            "--advertise-addr",
            LEADER_IP,
            "--hostname",
            "leader",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("leader"))
        .env("BERTH_CONFIG_DIR", &config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut leader = Leader {
        child,
        dir: dir.path().to_path_buf(),
        config,
    };
    leader.wait_ready();
    let pid = leader.pid().to_string();
    let (ok, token) = leader.cli(&["join-token", "--quiet", "worker"]);
    assert!(ok, "berth join-token worker failed");
    let token = token.trim().to_string();
    let rpc = format!("{LEADER_IP}:{RPC_PORT}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{agents} agents against one leader (`berth init` on {LEADER_IP}, release build), \
         each with its own certificate, over mutual TLS; steady window {steady:?}"
    );

    if !wrapper.is_empty() {
        println!(
            "the leader runs under `{}` (pid {pid}): its figures are not comparable with a plain run",
            wrapper.join(" ")
        );
    }
    let me = "self";
    let idle_from = (sample(&pid), sample(me));
    std::thread::sleep(IDLE);
    let idle_to = (sample(&pid), sample(me));

    let joined = rt.block_on(join_all(&token, &rpc, agents));
    let joins_to = (sample(&pid), sample(me));
    let joins_took = joins_to.0.at - idle_to.0.at;

    let counters = Arc::new(Counters::default());
    let (stop, stopped) = watch::channel(false);
    let mut handles = Vec::new();
    for (i, node) in joined.into_iter().enumerate() {
        handles.push(rt.spawn(run_agent(
            i,
            node,
            rpc.clone(),
            counters.clone(),
            stopped.clone(),
        )));
    }
    wait_for(
        "every agent registered with its first assignment set",
        || counters.established.load(Ordering::Relaxed) as usize >= agents,
    );
    let burst_to = (sample(&pid), sample(me));
    let burst_took = burst_to.0.at - joins_to.0.at;
    let fds_burst = open_fds(&pid);

    std::thread::sleep(SETTLE);
    let settle_to = (sample(&pid), sample(me));
    let heartbeats_before = counters.heartbeats.load(Ordering::Relaxed);
    // The leader's RSS through the window, to tell a plateau from a leak.
    let mut trend = Vec::new();
    let steady_end = Instant::now() + steady;
    while Instant::now() < steady_end {
        std::thread::sleep(TREND_EVERY.min(steady_end - Instant::now()));
        trend.push(format!("{:.1}", sample(&pid).rss_kb as f64 / 1024.0));
    }
    let steady_to = (sample(&pid), sample(me));
    let heartbeats_steady = counters.heartbeats.load(Ordering::Relaxed) - heartbeats_before;

    // Every agent must be Ready in the cluster's own view, agents still running.
    let nodes = leader.nodes().expect("berth node ls --format json failed");
    let agent_nodes: Vec<&api::Node> = nodes
        .iter()
        .filter(|n| n.description.hostname.starts_with("agent-"))
        .collect();
    let ready = agent_nodes
        .iter()
        .filter(|n| n.status.state == NodeState::Ready)
        .count();
    let not_ready: Vec<String> = agent_nodes
        .iter()
        .filter(|n| n.status.state != NodeState::Ready)
        .map(|n| {
            format!(
                "{} {:?} {}",
                n.description.hostname, n.status.state, n.status.message
            )
        })
        .collect();

    if !wrapper.is_empty() {
        // A heap profiler's record then shows the leader with every agent
        // connected, not half of them gone.
        leader.kill();
    }
    stop.send(true).unwrap();
    rt.block_on(async {
        for h in handles {
            let _ = h.await;
        }
    });

    println!();
    println!("| phase | length | leader CPU (of one core) | leader RSS at its end | bench process CPU (the agents) |");
    println!("|---|---|---|---|---|");
    report(
        "idle, no agent",
        idle_from.0,
        idle_to.0,
        idle_from.1,
        idle_to.1,
        hz,
    );
    report(
        &format!("{agents} joins ({JOIN_CONCURRENCY} at a time)"),
        idle_to.0,
        joins_to.0,
        idle_to.1,
        joins_to.1,
        hz,
    );
    report(
        "registration burst (all register, open their streams, get their first set)",
        joins_to.0,
        burst_to.0,
        joins_to.1,
        burst_to.1,
        hz,
    );
    report(
        "settling, right after",
        burst_to.0,
        settle_to.0,
        burst_to.1,
        settle_to.1,
        hz,
    );
    report(
        "steady state",
        settle_to.0,
        steady_to.0,
        settle_to.1,
        steady_to.1,
        hz,
    );
    println!();
    let c = &counters;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "joins took {joins_took:.2?}; the registration burst {burst_took:.2?}; leader peak RSS (VmHWM) {:.1} MB; \
         leader open fds after the burst {fds_burst}",
        steady_to.0.hwm_kb as f64 / 1024.0
    );
    println!(
        "steady state: {heartbeats_steady} heartbeats in {:.1} s ({:.0}/s); registered {} (retries {}), \
         established {}, heartbeat errors {}, invalid sessions {}, assignment errors {}, \
         WatchCluster messages {} (stream errors {})",
        (steady_to.0.at - settle_to.0.at).as_secs_f64(),
        heartbeats_steady as f64 / (steady_to.0.at - settle_to.0.at).as_secs_f64(),
        load(&c.registered),
        load(&c.registration_retries),
        load(&c.established),
        load(&c.heartbeat_errors),
        load(&c.invalid_sessions),
        load(&c.assignment_errors),
        load(&c.watch_messages),
        load(&c.watch_errors),
    );
    println!(
        "leader RSS through the steady window, every {TREND_EVERY:?}: {} MB",
        trend.join(", ")
    );
    println!(
        "berth node ls: {} agent nodes, {ready} ready{}",
        agent_nodes.len(),
        if not_ready.is_empty() {
            String::new()
        } else {
            format!("; NOT ready: {}", not_ready.join(", "))
        }
    );
    let healthy = agent_nodes.len() == agents
        && ready == agents
        && load(&c.invalid_sessions) == 0
        && load(&c.heartbeat_errors) == 0;
    if !healthy {
        eprintln!(
            "FAILED: not every agent stayed ready (leader log: {})",
            leader.dir.join("leader.log").display()
        );
        // Keep the directory for a look at the leader's log.
        let kept = dir.keep();
        eprintln!("kept {}", kept.display());
        drop(leader);
        std::process::exit(1);
    }
    drop(leader);
}
