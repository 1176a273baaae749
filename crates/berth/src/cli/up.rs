//! `berth up`: a single-node cluster in the foreground until Ctrl-C.

use crate::node::{Node, NodeConfig};
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
}

pub async fn run(args: UpArgs, log: &str) -> anyhow::Result<ExitCode> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(log).with_context(|| format!("--log {log:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let data_dir = args.data_dir.unwrap_or_else(crate::paths::default_data_dir);
    let credentials_file = crate::paths::credentials_file();
    let program =
        std::env::current_exe().context("finding the berth binary (to supervise tasks)")?;
    let node = Node::start(NodeConfig {
        data_dir: data_dir.clone(),
        api_addr: args.api_addr,
        hostname: args.hostname,
        shim: agent::ShimCommand {
            program,
            args: vec!["shim".into()],
        },
        credentials_file: Some(credentials_file.clone()),
    })
    .await?;

    println!("berth is up: a single-node cluster (manager and worker).");
    println!("  node id:      {}", node.node_id);
    println!("  API:          https://{}", node.api_addr);
    println!("  data dir:     {}", data_dir.display());
    println!(
        "  credentials:  {} (the CLI reads them from there)",
        credentials_file.display()
    );
    println!("Try `berth node ls` or `berth service create --name web --replicas 3 -- sleep 1000` in another terminal.");
    println!("Press Ctrl-C to stop (running tasks are stopped).");

    wait_for_signal().await?;
    eprintln!("stopping: tasks first, then the manager and the store …");
    node.shutdown().await?;
    eprintln!("stopped.");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
