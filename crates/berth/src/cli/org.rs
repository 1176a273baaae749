//! `berth org create|ls|inspect|rm`: organizations (UCP's), which group
//! teams; a grant to an organization holds for every member of its teams.

use super::output::{self, Format};
use crate::client::{encode, Client};
use clap::Subcommand;
use controller::wire::{CreateNamed, OrgView};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization (its name is shared with users: one namespace).
    Create { name: String },
    /// List organizations.
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show an organization and its teams (JSON).
    Inspect { name: String },
    /// Remove organizations (they must have no teams left), with their grants.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(cmd: OrgCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        OrgCommand::Create { name } => {
            let o: OrgView = c.post("/api/v1/orgs", &CreateNamed { name }).await?;
            println!("{}", o.name);
        }
        OrgCommand::Ls { format, quiet } => {
            let mut orgs: Vec<OrgView> = c.get("/api/v1/orgs").await?;
            orgs.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                orgs.iter().for_each(|o| println!("{}", o.name));
            } else if format == Format::Json {
                println!("{}", output::json(&orgs)?);
            } else {
                let rows = orgs
                    .iter()
                    .map(|o| vec![o.name.clone(), o.teams.join(", ")])
                    .collect();
                println!("{}", output::table(&["NAME", "TEAMS"], rows));
            }
        }
        OrgCommand::Inspect { name } => {
            let o: OrgView = c.get(&format!("/api/v1/orgs/{}", encode(&name))).await?;
            println!("{}", output::json(&o)?);
        }
        OrgCommand::Rm { names } => {
            for name in names {
                c.delete(&format!("/api/v1/orgs/{}", encode(&name))).await?;
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
