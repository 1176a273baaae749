//! `berth cluster inspect|update`: the cluster's settings, as `docker swarm
//! update` changes them (certificate expiry, dispatcher heartbeat, task
//! history).

use super::output;
use crate::client::Client;
use clap::Subcommand;
use controller::wire::{ClusterSettings, UpdateCluster};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster's settings (JSON).
    Inspect,
    /// Change the cluster's settings.
    Update {
        /// How long node certificates are valid, e.g. 2160h (at least 1h);
        /// each node's next renewal takes it.
        #[arg(long)]
        cert_expiry: Option<String>,
        /// How often agents heartbeat, e.g. 5s (500ms to 1h); a node missing
        /// three in a row is down.
        #[arg(long)]
        dispatcher_heartbeat: Option<String>,
        /// Terminated tasks kept per slot for `service ps`.
        #[arg(long)]
        task_history_limit: Option<u64>,
        /// How often the leader replaces the gossip network's key, e.g. 12h
        /// (10m to 1 year; 0 never rotates).
        #[arg(long)]
        gossip_key_rotation: Option<String>,
    },
}

pub async fn run(cmd: ClusterCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Inspect => {
            let s: ClusterSettings = c.get("/api/v1/cluster").await?;
            println!("{}", output::json(&s)?);
        }
        ClusterCommand::Update {
            cert_expiry,
            dispatcher_heartbeat,
            task_history_limit,
            gossip_key_rotation,
        } => {
            if cert_expiry.is_none()
                && dispatcher_heartbeat.is_none()
                && task_history_limit.is_none()
                && gossip_key_rotation.is_none()
            {
                anyhow::bail!(
                    "nothing to change: give --cert-expiry, --dispatcher-heartbeat, --task-history-limit or --gossip-key-rotation"
                );
            }
            let req = UpdateCluster {
                version: None,
                task_history_limit,
                dispatcher_heartbeat,
                cert_expiry,
                gossip_key_rotation,
            };
            let _: ClusterSettings = c.post("/api/v1/cluster/update", &req).await?;
            println!("Cluster updated.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
