//! `berth node ls|inspect|update|promote|demote|rm`.

use super::flags;
use super::output::{self, Format};
use crate::client::{status_of, Client};
use anyhow::bail;
use api::{Availability, Node, NodeRole, NodeSpec};
use clap::{Subcommand, ValueEnum};
use controller::wire::{Created, UpdateNode};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a node in full (JSON).
    Inspect { node: String },
    /// Change a node's availability or labels.
    Update {
        /// active: runs tasks; pause: keeps its tasks, gets no new ones;
        /// drain: its tasks move elsewhere (at each service's update parallelism).
        #[arg(long, value_enum)]
        availability: Option<AvailabilityArg>,
        /// Add or replace a label KEY=VALUE (repeatable).
        #[arg(long, value_parser = flags::key_value)]
        label_add: Vec<(String, String)>,
        /// Remove a label by key (repeatable).
        #[arg(long)]
        label_rm: Vec<String>,
        node: String,
    },
    /// Make nodes managers.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster (a node must be down, or use --force).
    #[command(alias = "remove")]
    Rm {
        /// Remove a node even if it is not down.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AvailabilityArg {
    Active,
    Pause,
    Drain,
}

impl From<AvailabilityArg> for Availability {
    fn from(a: AvailabilityArg) -> Availability {
        match a {
            AvailabilityArg::Active => Availability::Active,
            AvailabilityArg::Pause => Availability::Pause,
            AvailabilityArg::Drain => Availability::Drain,
        }
    }
}

pub async fn run(cmd: NodeCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Ls { format, quiet } => {
            let nodes: Vec<Node> = c.get("/api/v1/nodes").await?;
            if quiet {
                nodes.iter().for_each(|n| println!("{}", n.meta.id));
            } else if format == Format::Json {
                println!("{}", output::json(&nodes)?);
            } else {
                let rows = nodes.iter().map(row).collect();
                println!(
                    "{}",
                    output::table(
                        &[
                            "ID",
                            "HOSTNAME",
                            "STATUS",
                            "AVAILABILITY",
                            "MANAGER STATUS",
                            "VERSION"
                        ],
                        rows
                    )
                );
            }
        }
        NodeCommand::Inspect { node } => {
            let n: Node = c.get(&format!("/api/v1/nodes/{node}")).await?;
            println!("{}", output::json(&n)?);
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            update(c, &node, |spec| {
                if let Some(a) = availability {
                    spec.availability = a.into();
                }
                for k in &label_rm {
                    spec.labels.remove(k);
                }
                for (k, v) in &label_add {
                    spec.labels.insert(k.clone(), v.clone());
                }
            })
            .await?;
            println!("{node}");
        }
        NodeCommand::Promote { nodes } => {
            for node in nodes {
                update(c, &node, |spec| spec.role = NodeRole::Manager).await?;
                println!("Node {node} promoted to a manager in the cluster.");
            }
            warn_if_even_managers(c).await;
        }
        NodeCommand::Demote { nodes } => {
            for node in nodes {
                update(c, &node, |spec| spec.role = NodeRole::Worker).await?;
                println!("Manager {node} demoted in the cluster.");
            }
            warn_if_even_managers(c).await;
        }
        NodeCommand::Rm { force, nodes } => {
            for node in nodes {
                c.delete(&format!("/api/v1/nodes/{node}?force={force}"))
                    .await?;
                println!("{node}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An even number of managers tolerates no more failures than one fewer
/// (4 survive the loss of 1, as 3 do), and splits more easily: say so.
async fn warn_if_even_managers(c: &Client) {
    let Ok(nodes) = c.get::<Vec<Node>>("/api/v1/nodes").await else {
        return;
    };
    let managers = nodes
        .iter()
        .filter(|n| n.spec.role == NodeRole::Manager)
        .count();
    if let Some(warning) = crate::node::even_managers_warning(managers) {
        eprintln!("{warning}");
    }
}

/// Reads a node, changes its spec and writes it back against the version it
/// read, reading again if someone else wrote in between.
async fn update(c: &Client, key: &str, change: impl Fn(&mut NodeSpec)) -> anyhow::Result<()> {
    for attempt in 0..5 {
        let n: Node = c.get(&format!("/api/v1/nodes/{key}")).await?;
        let mut spec = n.spec.clone();
        change(&mut spec);
        let req = UpdateNode {
            version: n.meta.version,
            spec,
        };
        match c
            .post::<_, Created>(&format!("/api/v1/nodes/{}/update", n.meta.id), &req)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(409) && attempt < 4 => continue,
            Err(e) => return Err(e),
        }
    }
    bail!("node {key} keeps changing under this update; try again")
}

fn row(n: &Node) -> Vec<String> {
    let manager = match &n.manager_status {
        Some(m) if m.leader => "Leader".to_string(),
        Some(m) => capitalize(&m.reachability),
        None => String::new(),
    };
    vec![
        n.meta.id.clone(),
        n.description.hostname.clone(),
        capitalize(&format!("{:?}", n.status.state)),
        capitalize(&format!("{:?}", n.spec.availability)),
        manager,
        n.description.version.clone(),
    ]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
