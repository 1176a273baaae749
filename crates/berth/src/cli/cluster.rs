//! `berth init`, `berth join`, `berth join-token`: forming a cluster of
//! several machines, as `docker swarm init|join|join-token`.
//!
//! `init` and `join` run the node in the foreground, as `up` does. Started
//! again with the same data dir, a node resumes its identity and membership:
//! the token and the manager's address are only used on the first start.

use crate::client::Client;
use crate::node::{Membership, NodeAddrs, NodeConfig};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use controller::wire::JoinTokens;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

/// The flags every node has: where it listens and what it tells others.
#[derive(Args, Debug, Clone)]
pub struct NodeFlags {
    /// Where the node keeps its state [default: /var/lib/berth as root, else ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address other nodes reach this one at; alone, it also sets where the
    /// node listens (its cluster RPC on :7377, the API on :7443, gossip on :7946).
    #[arg(long)]
    pub advertise_addr: Option<IpAddr>,
    /// Where the cluster RPC (Raft, dispatcher, CA; mutual TLS) listens [default: ADVERTISE:7377].
    #[arg(long)]
    pub listen_addr: Option<SocketAddr>,
    /// Where the HTTPS API listens, on managers [default: ADVERTISE:7443].
    #[arg(long)]
    pub api_addr: Option<SocketAddr>,
    /// Where gossip listens, UDP [default: ADVERTISE:7946].
    #[arg(long)]
    pub gossip_addr: Option<SocketAddr>,
    /// Host name the node reports [default: the machine's].
    #[arg(long)]
    pub hostname: Option<String>,
}

impl NodeFlags {
    /// Every address, from the flags given: an unset one listens on the
    /// advertised address (or all addresses when none is advertised).
    pub fn addrs(&self) -> NodeAddrs {
        let advertise = self
            .advertise_addr
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let listen_ip = self
            .advertise_addr
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        NodeAddrs {
            advertise,
            rpc: self
                .listen_addr
                .unwrap_or(SocketAddr::new(listen_ip, crate::node::RPC_PORT)),
            api: self
                .api_addr
                .unwrap_or(SocketAddr::new(listen_ip, crate::node::API_PORT)),
            gossip: self
                .gossip_addr
                .unwrap_or(SocketAddr::new(listen_ip, crate::node::GOSSIP_PORT)),
        }
    }
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub node: NodeFlags,
    /// Disaster recovery: restart this manager as the only member of a new
    /// Raft group, keeping all the cluster's state (after losing quorum).
    #[arg(long)]
    pub force_new_cluster: bool,
    #[command(flatten)]
    pub admin: super::flags::AdminPassword,
}

#[derive(Args, Debug)]
pub struct JoinArgs {
    #[command(flatten)]
    pub node: NodeFlags,
    /// The join token (`berth join-token worker|manager` on a manager prints it).
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A manager's cluster RPC address (host:port, port 7377 by default).
    pub manager: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Worker,
    Manager,
}

#[derive(Args, Debug)]
pub struct JoinTokenArgs {
    /// Replace the token: nodes that already joined are not affected, the old
    /// token cannot be used to join any more.
    #[arg(long)]
    pub rotate: bool,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
    pub role: Role,
}

pub async fn init(args: InitArgs, log: &str) -> anyhow::Result<ExitCode> {
    super::up::init_logging(log)?;
    let membership = Membership::Init {
        force_new_cluster: args.force_new_cluster,
    };
    let admin_password = args.admin.read()?;
    run_node(args.node, membership, admin_password).await
}

pub async fn join(args: JoinArgs, log: &str) -> anyhow::Result<ExitCode> {
    super::up::init_logging(log)?;
    let manager = if args.manager.contains(':') {
        args.manager
    } else {
        format!("{}:{}", args.manager, crate::node::RPC_PORT)
    };
    let membership = Membership::Join {
        token: args.token,
        manager,
    };
    run_node(args.node, membership, None).await
}

async fn run_node(
    flags: NodeFlags,
    membership: Membership,
    admin_password: Option<String>,
) -> anyhow::Result<ExitCode> {
    let data_dir = flags
        .data_dir
        .clone()
        .unwrap_or_else(crate::paths::default_data_dir);
    let program =
        std::env::current_exe().context("finding the berth binary (to supervise tasks)")?;
    let credentials_file = crate::paths::credentials_file();
    let node = crate::node::Node::start(NodeConfig {
        data_dir: data_dir.clone(),
        addrs: flags.addrs(),
        hostname: flags.hostname.clone(),
        shim: agent::ShimCommand {
            program,
            args: vec!["shim".into()],
        },
        credentials_file: Some(credentials_file.clone()),
        admin_password: admin_password.clone(),
        membership,
    })
    .await?;
    let role = if node.is_manager() {
        "manager"
    } else {
        "worker"
    };
    let mut lines = vec![format!("berth node {} is up as a {role}.", node.node_id)];
    if node.is_manager() {
        lines.push(format!("  cluster RPC:  {}", node.rpc_addr()));
    }
    lines.push(format!("  data dir:     {}", data_dir.display()));
    if let Some(api) = node.api_addr() {
        lines.push(format!("  API:          https://{api}"));
        lines.push(format!(
            "  credentials:  {} (the CLI reads them from there)",
            credentials_file.display()
        ));
        lines.push(
            "Add nodes with the command `berth join-token worker` (or manager) prints.".into(),
        );
    }
    if let Some(p) = node.initial_admin_password() {
        lines.push(super::flags::AdminPassword::announce(p));
    }
    lines.push("Press Ctrl-C to stop this node (its tasks are stopped).".into());
    super::say_out(&lines.join("\n"));
    super::up::run_until_stopped(node).await
}

#[derive(Args, Debug)]
pub struct LeaveArgs {
    /// The data dir of the node that leaves [default: /var/lib/berth as root, else ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Leave even if this node is a manager (as `docker swarm leave --force`).
    #[arg(short, long)]
    pub force: bool,
}

/// `berth leave`: the node on this machine leaves the cluster — asked
/// through its control socket when it runs, done in place when it does not.
pub async fn leave(args: LeaveArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(crate::paths::default_data_dir);
    match crate::node::ipc::request_leave(&data_dir, args.force).await? {
        Some(()) => println!("Node left the cluster."),
        None => {
            let program =
                std::env::current_exe().context("finding the berth binary (to stop tasks)")?;
            let shim = agent::ShimCommand {
                program,
                args: vec!["shim".into()],
            };
            crate::node::leave_stopped(&data_dir, args.force, shim).await?;
            println!("Node left the cluster (it was not running).");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn join_token(args: JoinTokenArgs, c: &Client) -> anyhow::Result<ExitCode> {
    let role = match args.role {
        Role::Worker => "worker",
        Role::Manager => "manager",
    };
    let tokens: JoinTokens = if args.rotate {
        c.post(
            "/api/v1/cluster/join-tokens/rotate",
            &serde_json::json!({ "role": role }),
        )
        .await?
    } else {
        c.get("/api/v1/cluster/join-tokens").await?
    };
    let token = match args.role {
        Role::Worker => &tokens.worker,
        Role::Manager => &tokens.manager,
    };
    if args.quiet {
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(addr) = tokens.managers.first() else {
        bail!("the cluster lists no manager address to join");
    };
    if args.rotate {
        println!("Successfully rotated the {role} join token.\n");
    }
    println!(
        "To add a {role} to this cluster, run the following command:\n\n    berth join --token {token} {addr}\n"
    );
    Ok(ExitCode::SUCCESS)
}
