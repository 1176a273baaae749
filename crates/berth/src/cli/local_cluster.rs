//! `berth up --managers N --workers M`: a whole cluster on this machine, one
//! process per node on its own loopback address (managers on 127.0.0.11, .12,
//! …, workers on 127.0.0.21, …), formed with `berth init` and `berth join`
//! exactly as on separate machines — for trying HA (kill a manager, watch
//! another take over) without a second machine.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Managers get 127.0.0.11 and up, workers 127.0.0.21 and up.
const FIRST_MANAGER_HOST: u8 = 11;
const FIRST_WORKER_HOST: u8 = 21;
/// How long each node may take to start and be listed ready.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct LocalCluster {
    pub managers: u8,
    pub workers: u8,
    pub data_dir: PathBuf,
}

struct Proc {
    name: String,
    child: Child,
}

pub async fn run(c: LocalCluster) -> anyhow::Result<ExitCode> {
    if c.managers == 0 {
        bail!("--managers must be at least 1");
    }
    if c.managers > 9 || c.workers > 9 {
        bail!("at most 9 managers and 9 workers on one machine");
    }
    if c.managers & 1 == 0 {
        super::say_err(&format!(
            "warning: {} managers tolerate no more failures than {}: use an odd number",
            c.managers,
            c.managers - 1
        ));
    }
    let program = std::env::current_exe().context("finding the berth binary")?;
    std::fs::create_dir_all(&c.data_dir)
        .with_context(|| format!("creating {}", c.data_dir.display()))?;
    let mut procs: Vec<Proc> = Vec::new();
    let result = start_all(&c, &program, &mut procs).await;
    if let Err(e) = result {
        stop_all(&mut procs);
        return Err(e);
    }
    super::say_out(&format!(
        "berth is up: {} manager(s) and {} worker(s), one process each.\n  \
         data and logs: {}\n  \
         Try `berth node ls`, then kill a manager (`kill -9` its pid) and run it again.\n\
         Press Ctrl-C to stop every node.",
        c.managers,
        c.workers,
        c.data_dir.display()
    ));
    for p in &procs {
        super::say_out(&format!("  {:<10} pid {}", p.name, p.child.id()));
    }
    let waited = super::up::wait_for_signal().await;
    super::say_err("stopping: workers first, then the managers …");
    stop_all(&mut procs);
    super::say_err("stopped.");
    waited.map(|_| ExitCode::SUCCESS)
}

async fn start_all(c: &LocalCluster, program: &Path, procs: &mut Vec<Proc>) -> anyhow::Result<()> {
    let first = format!("127.0.0.{FIRST_MANAGER_HOST}");
    procs.push(spawn(
        program,
        &c.data_dir,
        "manager-1",
        &["init", "--advertise-addr", &first],
    )?);
    wait_nodes(program, 1, procs).await?;
    let token = |role: &str| -> anyhow::Result<String> {
        let out = Command::new(program)
            .args(["join-token", "--quiet", role])
            .output()
            .context("running berth join-token")?;
        if !out.status.success() {
            bail!(
                "berth join-token {role}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let manager_token = token("manager")?;
    let worker_token = token("worker")?;
    let join_addr = format!("{first}:7377");
    let mut expected = 1;
    for i in 1..c.managers {
        let ip = format!("127.0.0.{}", FIRST_MANAGER_HOST + i);
        procs.push(spawn(
            program,
            &c.data_dir,
            &format!("manager-{}", i + 1),
            &[
                "join",
                "--token",
                &manager_token,
                "--advertise-addr",
                &ip,
                &join_addr,
            ],
        )?);
        // One manager at a time: each joins a group that already has quorum.
        expected += 1;
        wait_nodes(program, expected, procs).await?;
    }
    for i in 0..c.workers {
        let ip = format!("127.0.0.{}", FIRST_WORKER_HOST + i);
        procs.push(spawn(
            program,
            &c.data_dir,
            &format!("worker-{}", i + 1),
            &[
                "join",
                "--token",
                &worker_token,
                "--advertise-addr",
                &ip,
                &join_addr,
            ],
        )?);
    }
    wait_nodes(program, expected + usize::from(c.workers), procs).await
}

/// Starts one node with its own data dir, host name and log file.
fn spawn(program: &Path, base: &Path, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
    let dir = base.join(name);
    let log_path = base.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(program)
        .args(args)
        .arg("--data-dir")
        .arg(&dir)
        .args(["--hostname", name])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name: name.to_string(),
        child,
    })
}

/// Waits until `berth node ls` lists `n` ready nodes, failing early if a
/// node's process died (its log says why).
async fn wait_nodes(program: &Path, n: usize, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + NODE_START_TIMEOUT;
    loop {
        for p in procs.iter_mut() {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited ({status}) while the cluster was forming: see its log",
                    p.name
                );
            }
        }
        let out = Command::new(program)
            .args(["node", "ls", "--format", "json"])
            .stderr(Stdio::null())
            .output();
        if let Ok(out) = out {
            let ready = serde_json::from_slice::<Vec<api::Node>>(&out.stdout)
                .map(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n.status.state == api::NodeState::Ready)
                        .count()
                })
                .unwrap_or(0);
            if ready >= n {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{n} node(s) were not ready after {NODE_START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ctrl-C to every node, workers first (last started), then waits for each.
fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter_mut().rev() {
        if let Ok(pid) = i32::try_from(p.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let _ = p.child.wait();
    }
}
