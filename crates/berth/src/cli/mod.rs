//! The command line, docker-like: `berth up`, `berth node …`, `berth service …`.

mod ca;
mod cluster;
mod flags;
mod local_cluster;
mod node;
mod output;
mod progress;
mod service;
mod settings;
mod up;

use crate::client::Client;
use crate::credentials::Credentials;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A container platform in one binary: Swarm's cluster, UCP's control plane, DTR's registry."
)]
pub struct Cli {
    /// API address of a manager (host:port); the one in the saved credentials by default.
    #[arg(long, global = true, env = "BERTH_HOST")]
    pub host: Option<String>,
    /// API token; the one in the saved credentials by default.
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log filter of a node (e.g. info, debug, store=debug). openraft's own
    /// log is off by default: it repeats every failed RPC to a lost manager, and
    /// the store reports what matters (lost quorum, leader changes) itself.
    #[arg(
        long,
        global = true,
        env = "BERTH_LOG",
        default_value = "info,openraft=off"
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Command {
    /// Start a single-node cluster (manager and worker) and serve the API until
    /// Ctrl-C; with --managers/--workers, a whole cluster of processes on 127.0.0.x.
    Up(up::UpArgs),
    /// Create a cluster with this node as its first manager, and run it until Ctrl-C.
    Init(cluster::InitArgs),
    /// Join a cluster as a worker or a manager (the token says which), and run until Ctrl-C.
    Join(cluster::JoinArgs),
    /// Make the node on this machine leave the cluster (a manager only with --force).
    Leave(cluster::LeaveArgs),
    /// Show (or rotate) the command that adds a worker or a manager.
    JoinToken(cluster::JoinTokenArgs),
    /// Show or change the cluster's settings (certificate expiry, heartbeat).
    #[command(subcommand)]
    Cluster(settings::ClusterCommand),
    /// Show the cluster root CA's certificate, or rotate it (--rotate).
    Ca(ca::CaArgs),
    /// Manage nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Show the CLI's version and, when reachable, the manager's.
    Version,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => up::run(args, &cli.log).await,
        Command::Init(args) => cluster::init(args, &cli.log).await,
        Command::Join(args) => cluster::join(args, &cli.log).await,
        Command::Leave(args) => cluster::leave(args).await,
        Command::JoinToken(args) => {
            cluster::join_token(args, &client(&cli.host, &cli.token)?).await
        }
        Command::Cluster(cmd) => settings::run(cmd, &client(&cli.host, &cli.token)?).await,
        Command::Ca(args) => ca::run(args, &client(&cli.host, &cli.token)?).await,
        Command::Node(cmd) => node::run(cmd, &client(&cli.host, &cli.token)?).await,
        Command::Service(cmd) => service::run(cmd, &client(&cli.host, &cli.token)?).await,
        Command::Version => {
            println!("berth {}", env!("CARGO_PKG_VERSION"));
            if let Ok(c) = client(&cli.host, &cli.token) {
                match c.get::<controller::wire::Info>("/api/v1/info").await {
                    Ok(info) => println!(
                        "manager {} at {} (cluster {})",
                        info.version,
                        c.base(),
                        info.cluster_name
                    ),
                    Err(e) => println!("manager: not reachable ({e:#})"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A client from the saved credentials, with `--host`/`--token` taking precedence.
fn client(host: &Option<String>, token: &Option<String>) -> anyhow::Result<Client> {
    let path = crate::paths::credentials_file();
    let mut creds = Credentials::load(&path).with_context(|| {
        format!(
            "no credentials: `berth up` writes them to {} (set BERTH_CONFIG_DIR to look elsewhere)",
            path.display()
        )
    })?;
    if let Some(h) = host {
        creds.host = h.clone();
    }
    if let Some(t) = token {
        creds.token = t.clone();
    }
    Client::new(&creds)
}

/// Prints a line, ignoring a closed output: Ctrl-C in a terminal also ends a
/// `| tee` reading our output, and the node must still stop its tasks then
/// (println! would panic on the broken pipe and skip the clean stop).
pub(crate) fn say_out(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

pub(crate) fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}
