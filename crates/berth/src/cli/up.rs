//! `berth up`: a single-node cluster in the foreground until Ctrl-C.

use super::{say_err, say_out};
use crate::node::{Membership, Node, NodeAddrs, NodeConfig};
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Where the node keeps its state [default: /var/lib/berth as root, else ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTPS API (and, later, the web UI and registry).
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub api_addr: SocketAddr,
    /// Host name the node reports [default: the machine's].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Instead of one node: start this many managers as separate processes
    /// on 127.0.0.11, .12, … (formed with `berth init` and `berth join`).
    #[arg(long)]
    pub managers: Option<u8>,
    /// With --managers: this many workers too, on 127.0.0.21, .22, …
    #[arg(long, requires = "managers")]
    pub workers: Option<u8>,
    #[command(flatten)]
    pub admin: super::flags::AdminPassword,
}

pub(crate) fn init_logging(log: &str) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(log).with_context(|| format!("--log {log:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // With stderr closed (the terminal's `| tee` ended by the same
        // Ctrl-C), reporting a failed write would panic on eprintln! and
        // skip the clean stop.
        .log_internal_errors(false)
        .init();
    Ok(())
}

pub async fn run(args: UpArgs, log: &str) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(crate::paths::default_data_dir);
    if let Some(managers) = args.managers {
        return super::local_cluster::run(super::local_cluster::LocalCluster {
            managers,
            workers: args.workers.unwrap_or(0),
            data_dir: data_dir.join("local-cluster"),
        })
        .await;
    }
    init_logging(log)?;
    let admin_password = args.admin.read()?;
    let credentials_file = crate::paths::credentials_file();
    let program =
        std::env::current_exe().context("finding the berth binary (to supervise tasks)")?;
    let node = Node::start(NodeConfig {
        data_dir: data_dir.clone(),
        addrs: NodeAddrs::loopback(args.api_addr),
        hostname: args.hostname,
        shim: agent::ShimCommand {
            program,
            args: vec!["shim".into()],
        },
        credentials_file: Some(credentials_file.clone()),
        admin_password: admin_password.clone(),
        membership: Membership::Up,
    })
    .await?;

    say_out(&format!(
        "berth is up: a single-node cluster (manager and worker).\n  \
         node id:      {}\n  \
         API:          https://{}\n  \
         data dir:     {}\n  \
         credentials:  {} (the CLI reads them from there)\n\
         Try `berth node ls` or `berth service create --name web --replicas 3 -- sleep 1000` in another terminal.\n\
         Press Ctrl-C to stop (running tasks are stopped).",
        node.node_id,
        node.api_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        data_dir.display(),
        credentials_file.display()
    ));
    if let Some(p) = node.initial_admin_password() {
        say_out(&super::flags::AdminPassword::announce(p));
    }

    run_until_stopped(node).await
}

pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Runs a started node until Ctrl-C (or SIGTERM) stops it, or `berth leave`
/// on this machine makes it leave the cluster.
pub(crate) async fn run_until_stopped(node: Node) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(req) = node.leave_request() => {
                if let Some(why) = node.leave_refusal(req.force) {
                    req.answer(Err(why)).await;
                    continue;
                }
                say_err("leaving the cluster: tasks first, then the node's state …");
                let result = node.leave().await;
                let answer = result.as_ref().map(|_| ()).map_err(|e| format!("{e:#}"));
                req.answer(answer).await;
                result?;
                say_err("left the cluster.");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    say_err("stopping: tasks first, then the node …");
    node.shutdown().await?;
    say_err("stopped.");
    Ok(ExitCode::SUCCESS)
}
