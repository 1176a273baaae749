//! The command line, docker-like: `berth up`, `berth node …`, `berth service …`.

mod flags;
mod node;
mod output;
mod progress;
mod service;
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
    /// Log filter for `berth up` (e.g. info, debug, berth=debug).
    #[arg(
        long,
        global = true,
        env = "BERTH_LOG",
        default_value = "info,openraft=warn"
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Command {
    /// Start a single-node cluster (manager and worker) and serve the API until Ctrl-C.
    Up(up::UpArgs),
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
