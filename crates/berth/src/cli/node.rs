//! `berth node ls|inspect`.

use super::output::{self, Format};
use crate::client::Client;
use api::Node;
use clap::Subcommand;
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
    }
    Ok(ExitCode::SUCCESS)
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
