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

    say_out(&format!(
        "berth is up: a single-node cluster (manager and worker).\n  \
         node id:      {}\n  \
         API:          https://{}\n  \
         data dir:     {}\n  \
         credentials:  {} (the CLI reads them from there)\n\
         Try `berth node ls` or `berth service create --name web --replicas 3 -- sleep 1000` in another terminal.\n\
         Press Ctrl-C to stop (running tasks are stopped).",
        node.node_id,
        node.api_addr,
        data_dir.display(),
        credentials_file.display()
    ));

    wait_for_signal().await?;
    say_err("stopping: tasks first, then the manager and the store …");
    node.shutdown().await?;
    say_err("stopped.");
    Ok(ExitCode::SUCCESS)
}

/// Prints a line, ignoring a closed output: Ctrl-C in a terminal also ends a
/// `| tee` reading our output, and the node must still stop its tasks then
/// (println! would panic on the broken pipe and skip the clean stop).
fn say_out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
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
