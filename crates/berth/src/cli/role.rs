//! `berth role create|ls|inspect|rm`: roles, the sets of operations a grant
//! gives (UCP's built-in roles, and custom ones named by operation,
//! `service.create`).

use super::output::{self, Format};
use crate::client::{encode, Client};
use anyhow::anyhow;
use clap::Subcommand;
use controller::wire::{CreateRole, RoleView};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Create a custom role: `berth role create deployer --allow service.view,service.update`.
    Create {
        name: String,
        /// Operations the role allows, comma-separated or repeated (see
        /// `berth role ls --operations`).
        #[arg(long, required = true, value_delimiter = ',', value_name = "OP,…")]
        allow: Vec<String>,
    },
    /// List roles, built-in and custom.
    #[command(alias = "list")]
    Ls {
        /// List every operation a custom role may name instead.
        #[arg(long)]
        operations: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a role and its operations (JSON).
    Inspect { name: String },
    /// Remove custom roles (no grant may use them).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(cmd: RoleCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        RoleCommand::Create { name, allow } => {
            let operations = allow
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect();
            let r: RoleView = c
                .post("/api/v1/roles", &CreateRole { name, operations })
                .await?;
            println!("{}", r.name);
        }
        RoleCommand::Ls {
            operations: true,
            format,
            ..
        } => {
            let ops: Vec<String> = c.get("/api/v1/roles/operations").await?;
            if format == Format::Json {
                println!("{}", output::json(&ops)?);
            } else {
                ops.iter().for_each(|o| println!("{o}"));
            }
        }
        RoleCommand::Ls { format, quiet, .. } => {
            let roles: Vec<RoleView> = c.get("/api/v1/roles").await?;
            if quiet {
                roles.iter().for_each(|r| println!("{}", r.name));
            } else if format == Format::Json {
                println!("{}", output::json(&roles)?);
            } else {
                let rows = roles
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.clone(),
                            if r.builtin { "built-in" } else { "custom" }.into(),
                            r.operations.len().to_string(),
                        ]
                    })
                    .collect();
                println!("{}", output::table(&["NAME", "TYPE", "OPERATIONS"], rows));
            }
        }
        RoleCommand::Inspect { name } => {
            let roles: Vec<RoleView> = c.get("/api/v1/roles").await?;
            let role = roles
                .into_iter()
                .find(|r| r.name == name)
                .ok_or_else(|| anyhow!("role {name} not found"))?;
            println!("{}", output::json(&role)?);
        }
        RoleCommand::Rm { names } => {
            for name in names {
                c.delete(&format!("/api/v1/roles/{}", encode(&name)))
                    .await?;
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
